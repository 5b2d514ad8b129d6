//! Typed basic header segments (RFC 7143 section 11), one struct per PDU kind the full
//! feature phase reads or writes, so the connection never touches raw byte offsets.
//!
//! Requests are parsed from a [`Bhs`] with `parse`; responses build a [`Bhs`] with `bhs`.
//! StatSN, ExpCmdSN and MaxCmdSN are filled afterwards by the connection (they are the same
//! three fields, at the same offsets, in every target PDU).

use crate::pdu::{off, Bhs, TargetOpcode, RESERVED_TAG};
use crate::TaskAttr;

/// The F bit.
const FINAL: u8 = 0x80;

/// SCSI Command (RFC 7143 11.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiCommandHeader {
    /// I bit: outside the CmdSN window.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out follows.
    pub final_bit: bool,
    /// R bit.
    pub read: bool,
    /// W bit.
    pub write: bool,
    /// ATTR field.
    pub attr: TaskAttr,
    /// LUN.
    pub lun: u64,
    /// Initiator task tag.
    pub itt: u32,
    /// ExpectedDataTransferLength.
    pub edtl: u32,
    /// CmdSN.
    pub cmd_sn: u32,
}

impl ScsiCommandHeader {
    /// Bytes 32..48 hold the CDB (the first 16 bytes of it).
    pub const CDB: std::ops::Range<usize> = 32..48;

    /// Reads the fields of a SCSI Command header.
    pub fn parse(b: &Bhs) -> Self {
        let flags = b.flags();
        ScsiCommandHeader {
            immediate: b.immediate(),
            final_bit: flags & FINAL != 0,
            read: flags & 0x40 != 0,
            write: flags & 0x20 != 0,
            attr: TaskAttr::from_bits(flags),
            lun: b.lun(),
            itt: b.itt(),
            edtl: b.u32_at(off::EDTL),
            cmd_sn: b.u32_at(off::CMDSN),
        }
    }
}

/// SCSI Data-Out (RFC 7143 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOutHeader {
    /// F bit: last PDU of the sequence.
    pub final_bit: bool,
    /// Initiator task tag.
    pub itt: u32,
    /// Target transfer tag (0xffffffff for unsolicited data).
    pub ttt: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer offset.
    pub buffer_offset: u32,
}

impl DataOutHeader {
    /// Reads the fields of a Data-Out header.
    pub fn parse(b: &Bhs) -> Self {
        DataOutHeader {
            final_bit: b.final_bit(),
            itt: b.itt(),
            ttt: b.u32_at(off::TTT),
            data_sn: b.u32_at(off::DATASN),
            buffer_offset: b.u32_at(off::BUFFER_OFFSET),
        }
    }
}

/// Task Management Function Request (RFC 7143 11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmfRequestHeader {
    /// Function code (bits 0..6 of byte 1).
    pub function: u8,
    /// LUN.
    pub lun: u64,
    /// Initiator task tag of this request.
    pub itt: u32,
    /// Referenced task tag (ABORT TASK).
    pub referenced_itt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// RefCmdSN (ABORT TASK).
    pub ref_cmd_sn: u32,
}

impl TmfRequestHeader {
    /// Reads the fields of a task management request header.
    pub fn parse(b: &Bhs) -> Self {
        TmfRequestHeader {
            function: b.flags() & 0x7f,
            lun: b.lun(),
            itt: b.itt(),
            referenced_itt: b.u32_at(20),
            cmd_sn: b.u32_at(off::CMDSN),
            ref_cmd_sn: b.u32_at(32),
        }
    }
}

/// Text Request (RFC 7143 11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRequestHeader {
    /// C bit: the text continues in the next request.
    pub continues: bool,
    /// Initiator task tag.
    pub itt: u32,
    /// Target transfer tag (0xffffffff for a new request).
    pub ttt: u32,
}

impl TextRequestHeader {
    /// Reads the fields of a Text request header.
    pub fn parse(b: &Bhs) -> Self {
        TextRequestHeader {
            continues: b.flags() & 0x40 != 0,
            itt: b.itt(),
            ttt: b.u32_at(off::TTT),
        }
    }
}

/// Logout Request (RFC 7143 11.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutRequestHeader {
    /// Reason code (0 close session, 1 close connection, 2 remove for recovery).
    pub reason: u8,
    /// Initiator task tag.
    pub itt: u32,
    /// CID of the connection to close.
    pub cid: u16,
}

impl LogoutRequestHeader {
    /// Reads the fields of a Logout request header.
    pub fn parse(b: &Bhs) -> Self {
        LogoutRequestHeader {
            reason: b.flags() & 0x7f,
            itt: b.itt(),
            cid: b.u16_at(20),
        }
    }
}

/// NOP-Out (RFC 7143 11.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopOutHeader {
    /// LUN.
    pub lun: u64,
    /// Initiator task tag (0xffffffff: no answer wanted).
    pub itt: u32,
    /// Target transfer tag (echoes a NOP-In's, or 0xffffffff).
    pub ttt: u32,
}

impl NopOutHeader {
    /// Reads the fields of a NOP-Out header.
    pub fn parse(b: &Bhs) -> Self {
        NopOutHeader {
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(off::TTT),
        }
    }
}

/// Residual flags and count of a SCSI Response or final Data-In (RFC 7143 11.4.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Residual {
    /// O bit: more data than expected was asked for.
    pub overflow: bool,
    /// U bit: less data than expected was moved.
    pub underflow: bool,
    /// ResidualCount.
    pub count: u32,
}

impl Residual {
    /// The residual of a transfer of `transfer` bytes against `expected`.
    pub fn of(expected: u32, transfer: u32) -> Self {
        use std::cmp::Ordering::*;
        match transfer.cmp(&expected) {
            Greater => Residual {
                overflow: true,
                underflow: false,
                count: transfer - expected,
            },
            Less => Residual {
                overflow: false,
                underflow: true,
                count: expected - transfer,
            },
            Equal => Residual::default(),
        }
    }

    fn flags(&self) -> u8 {
        (if self.overflow { 0x04 } else { 0 }) | (if self.underflow { 0x02 } else { 0 })
    }
}

/// SCSI Data-In (RFC 7143 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInHeader {
    /// F bit: last PDU of the sequence (burst).
    pub final_bit: bool,
    /// With the S bit: the SCSI status and residual this PDU carries.
    pub status: Option<(u8, Residual)>,
    /// Initiator task tag.
    pub itt: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer offset.
    pub buffer_offset: u32,
}

impl DataInHeader {
    /// The header (Exp/MaxCmdSN and, with status, StatSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::DataIn);
        let mut flags = if self.final_bit { FINAL } else { 0 };
        if let Some((status, residual)) = self.status {
            flags |= 0x01 | residual.flags();
            b.0[3] = status;
            b.set_u32(off::RESIDUAL, residual.count);
        }
        b.set_flags(flags);
        b.set_itt(self.itt);
        b.set_u32(off::TTT, RESERVED_TAG);
        b.set_u32(off::DATASN, self.data_sn);
        b.set_u32(off::BUFFER_OFFSET, self.buffer_offset);
        b
    }
}

/// SCSI Response (RFC 7143 11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiResponseHeader {
    /// Response byte (0: command completed at target).
    pub response: u8,
    /// SCSI status.
    pub status: u8,
    /// Initiator task tag.
    pub itt: u32,
    /// ExpDataSN: Data-In PDUs sent for a read, R2Ts for a write.
    pub exp_data_sn: u32,
    /// Residual.
    pub residual: Residual,
}

impl ScsiResponseHeader {
    /// The header (StatSN, Exp/MaxCmdSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::ScsiResponse);
        b.set_flags(FINAL | self.residual.flags());
        b.0[2] = self.response;
        b.0[3] = self.status;
        b.set_itt(self.itt);
        b.set_u32(off::DATASN, self.exp_data_sn);
        b.set_u32(off::RESIDUAL, self.residual.count);
        b
    }
}

/// Ready To Transfer (RFC 7143 11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2tHeader {
    /// LUN.
    pub lun: u64,
    /// Initiator task tag.
    pub itt: u32,
    /// Target transfer tag the Data-Out PDUs will carry.
    pub ttt: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer offset.
    pub buffer_offset: u32,
    /// Desired data transfer length.
    pub desired_length: u32,
}

impl R2tHeader {
    /// The header (Exp/MaxCmdSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::R2t);
        b.set_flags(FINAL);
        b.set_lun(self.lun);
        b.set_itt(self.itt);
        b.set_u32(off::TTT, self.ttt);
        b.set_u32(off::DATASN, self.r2t_sn);
        b.set_u32(off::BUFFER_OFFSET, self.buffer_offset);
        b.set_u32(off::RESIDUAL, self.desired_length);
        b
    }
}

/// Task Management Function Response (RFC 7143 11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmfResponseHeader {
    /// Response code.
    pub response: u8,
    /// Initiator task tag of the request.
    pub itt: u32,
}

impl TmfResponseHeader {
    /// The header (StatSN, Exp/MaxCmdSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::TaskManagementResponse);
        b.set_flags(FINAL);
        b.0[2] = self.response;
        b.set_itt(self.itt);
        b
    }
}

/// Logout Response (RFC 7143 11.15). Time2Wait and Time2Retain stay 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutResponseHeader {
    /// Response code (0 closed, 1 CID not found, 2 recovery not supported).
    pub response: u8,
    /// Initiator task tag of the request.
    pub itt: u32,
}

impl LogoutResponseHeader {
    /// The header (StatSN, Exp/MaxCmdSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::LogoutResponse);
        b.set_flags(FINAL);
        b.0[2] = self.response;
        b.set_itt(self.itt);
        b
    }
}

/// NOP-In (RFC 7143 11.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopInHeader {
    /// LUN.
    pub lun: u64,
    /// Initiator task tag (the NOP-Out's, or 0xffffffff for a target ping).
    pub itt: u32,
    /// Target transfer tag (0xffffffff unless the target wants an answer).
    pub ttt: u32,
}

impl NopInHeader {
    /// The header (StatSN, Exp/MaxCmdSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::NopIn);
        b.set_flags(FINAL);
        b.set_lun(self.lun);
        b.set_itt(self.itt);
        b.set_u32(off::TTT, self.ttt);
        b
    }
}

/// Text Response (RFC 7143 11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextResponseHeader {
    /// F bit: the response is complete.
    pub final_bit: bool,
    /// C bit: the text continues in the next response.
    pub continues: bool,
    /// Initiator task tag.
    pub itt: u32,
    /// Target transfer tag (0xffffffff on the final response).
    pub ttt: u32,
}

impl TextResponseHeader {
    /// The header (StatSN, Exp/MaxCmdSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::TextResponse);
        let mut flags = 0;
        if self.final_bit {
            flags |= FINAL;
        }
        if self.continues {
            flags |= 0x40;
        }
        b.set_flags(flags);
        b.set_itt(self.itt);
        b.set_u32(off::TTT, self.ttt);
        b
    }
}

/// Reject (RFC 7143 11.17); the data segment is the rejected header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectHeader {
    /// Reason code (RFC 7143 11.17.1).
    pub reason: u8,
}

impl RejectHeader {
    /// The header (StatSN, Exp/MaxCmdSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::Reject);
        b.set_flags(FINAL);
        b.0[2] = self.reason;
        b.set_itt(RESERVED_TAG);
        b
    }
}

/// Asynchronous Message (RFC 7143 11.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncMessageHeader {
    /// AsyncEvent (1: the target requests a logout).
    pub event: u8,
    /// Parameter1.
    pub parameter1: u16,
    /// Parameter2.
    pub parameter2: u16,
    /// Parameter3 (for event 1: seconds the initiator has to log out).
    pub parameter3: u16,
}

impl AsyncMessageHeader {
    /// The header (StatSN, Exp/MaxCmdSN still to fill).
    pub fn bhs(&self) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::AsyncMessage);
        b.set_flags(FINAL);
        b.set_itt(RESERVED_TAG);
        b.0[36] = self.event;
        b.set_u16(38, self.parameter1);
        b.set_u16(40, self.parameter2);
        b.set_u16(42, self.parameter3);
        b
    }
}
