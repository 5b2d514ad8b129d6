//! Sans-IO SCSI block emulation (SPC/SBC): CDB decode, sense data, dispatch to a block store
