//! Sans-IO SCSI block emulation (SPC-4 / SBC-3).
//!
//! [`ScsiTarget::start`] takes one command (CDB plus any data-out bytes) and answers either
//! at once ([`Start::Done`]) or with a storage request to carry out ([`Start::Io`]). The caller
//! runs the request on the LUN's [`store_api::BlockStore`] and hands the result to
//! [`Pending::finish`], which may ask for another request (multi-step commands) or finish.
//!
//! Architecture invariant: this crate does no I/O, spawns nothing, reads no clock and knows
//! nothing of iSCSI. Only transport-level failures are Rust errors; every SCSI failure is a
//! [`Response`] with CHECK CONDITION and sense data.

use bytes::Bytes;
use store_api::{Capabilities, Geometry, IoRequest, IoResult};

/// Identifies an I_T nexus (initiator port + target port), for per-nexus state such as
/// UNIT ATTENTION conditions and reservations.
pub type NexusId = u64;

/// SCSI status codes (SAM-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Good = 0x00,
    CheckCondition = 0x02,
    ConditionMet = 0x04,
    Busy = 0x08,
    ReservationConflict = 0x18,
    TaskSetFull = 0x28,
    AcaActive = 0x30,
    TaskAborted = 0x40,
}

/// Static identity and shape of one logical unit.
#[derive(Debug, Clone)]
pub struct LuConfig {
    /// T10 vendor identification (INQUIRY, 8 bytes, space padded).
    pub vendor: String,
    /// Product identification (16 bytes, space padded).
    pub product: String,
    /// Product revision level (4 bytes, space padded).
    pub revision: String,
    /// Unit serial number (VPD 0x80).
    pub serial: String,
    /// NAA IEEE Registered Extended designator body (16 bytes, VPD 0x83).
    pub naa_id: [u8; 16],
    pub geometry: Geometry,
    pub capabilities: Capabilities,
    /// Whether the write cache is reported enabled (MODE SENSE caching page, WCE bit).
    pub write_cache: bool,
    pub read_only: bool,
}

/// One SCSI command as the transport delivers it.
#[derive(Debug, Clone)]
pub struct Command {
    pub nexus: NexusId,
    /// The 64-bit LUN as it appears on the wire (SAM-5 format).
    pub lun: u64,
    /// The CDB, 6 to 16 bytes (more with additional CDB AHS).
    pub cdb: Bytes,
    /// Data-out bytes received for this command (empty for non-write commands).
    pub data_out: Bytes,
    /// The initiator's expected data transfer length in bytes.
    pub expected_len: u32,
}

/// The final answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// Data-in bytes as the CDB asked for them (the transport trims to the expected length).
    pub data_in: Bytes,
    /// Fixed-format sense data (SPC-4 4.5.3) when `status` is CHECK CONDITION.
    pub sense: Option<Bytes>,
    /// Bytes the CDB asked to move in either direction, for residual computation.
    pub transfer_len: u32,
}

/// What [`ScsiTarget::start`] or [`Pending::finish`] asks the caller to do next.
#[derive(Debug)]
pub enum Start {
    /// The command is finished.
    Done(Response),
    /// Run `request` on LUN `lun`'s store, then call `pending.finish(result)`.
    Io { lun: u64, request: IoRequest, pending: Pending },
}

/// A command waiting for a storage request.
#[derive(Debug)]
pub struct Pending {
    _private: (),
}

impl Pending {
    /// Continues the command with the outcome of its storage request.
    pub fn finish(self, result: IoResult) -> Start {
        let _ = result;
        todo!()
    }
}

/// The logical units behind one SCSI target port, and the dispatch over them.
#[derive(Debug, Default)]
pub struct ScsiTarget {
    _private: (),
}

impl ScsiTarget {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the logical unit at `lun` (a plain LUN number, 0..=16383).
    pub fn add_lun(&mut self, lun: u16, config: LuConfig) {
        let _ = (lun, config);
        todo!()
    }

    /// Starts one command.
    pub fn start(&self, cmd: Command) -> Start {
        let _ = cmd;
        todo!()
    }
}
