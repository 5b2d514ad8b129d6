//! A synchronous iSCSI initiator over libiscsi.
