//! Sans-IO iSCSI target protocol (RFC 7143), error recovery level 0.
//!
//! A [`Connection`] is fed received bytes ([`Connection::handle_input`]) and answers with
//! [`Event`]s for the layer above ([`Connection::poll_event`]) and encoded PDUs appended to a
//! caller-owned buffer ([`Connection::poll_transmit`]). SCSI commands leave as
//! [`Event::Command`] once all their data-out has arrived (immediate, unsolicited and
//! R2T-solicited), and come back through [`Connection::complete_command`].
//!
//! Call order after any input or completion: `poll_event` until `None`, then `poll_transmit`.
//!
//! Architecture invariant: no sockets, no async runtime, no clock, no threads.
//!
//! Modules: [`pdu`] (framing, exported for fuzzing: [`pdu::check`], [`pdu::decode`]),
//! [`text`] (key=value), [`negotiation`] (operational keys), [`login`] (login state
//! machine), [`auth`] (ACLs, CHAP credentials and the CHAP exchange), [`seq`] (serial
//! number arithmetic), [`header`] (typed basic header segments), [`connection`] (the
//! connection: one submodule per PDU kind).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use bytes::Bytes;
use std::sync::Arc;

/// One target as offered in discovery and accepted at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// The iSCSI qualified name, e.g. `iqn.2026-11.com.example:disk1`.
    pub name: String,
    /// `TargetAlias` declared at login, if any.
    pub alias: Option<String>,
    /// `TargetAddress` values for SendTargets: `host:port,tpgt`.
    pub addresses: Vec<String>,
}

/// What the target offers in operational negotiation (RFC 7143 section 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// MaxRecvDataSegmentLength we declare (what we accept per PDU).
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength we accept (numerical minimum with the initiator's offer).
    pub max_burst_length: u32,
    /// FirstBurstLength we accept (numerical minimum, never above MaxBurstLength).
    pub first_burst_length: u32,
    /// MaxOutstandingR2T we accept (numerical minimum). The default, 4, lets an initiator
    /// that asks for more than one have four R2Ts of a write open at once; the write's whole
    /// solicited length is reserved in `max_solicited_data` either way.
    pub max_outstanding_r2t: u32,
    /// ImmediateData (boolean AND with the initiator's offer).
    pub immediate_data: bool,
    /// InitialR2T (boolean OR with the initiator's offer).
    pub initial_r2t: bool,
    /// Largest CmdSN window we open (MaxCmdSN - ExpCmdSN + 1). It bounds the non-immediate
    /// tasks outstanding on a connection.
    pub command_window: u32,
    /// Most immediate (I bit) SCSI commands outstanding on a connection; they are outside the
    /// CmdSN window. One more is answered with a Reject PDU, reason 0x06 "Immediate Command
    /// Reject - too many immediate commands" (RFC 7143 11.17.1), which the initiator may
    /// resend later. A connection thus holds at most `command_window + max_immediate_tasks`
    /// tasks.
    pub max_immediate_tasks: u32,
    /// Most data-out one command may carry. A write whose ExpectedDataTransferLength is
    /// larger is handed up at once with [`ScsiCommand::data_out_discarded`] set: none of its
    /// data is solicited or buffered, and immediate or unsolicited data sent for it is
    /// discarded. The default, 8 MiB, is the SCSI layer's largest transfer
    /// (`scsi::MAX_TRANSFER_BYTES` in `crates/scsi/src/sbc.rs`), above which it answers
    /// CHECK CONDITION anyway; keep the two in step.
    pub max_command_data_out: u32,
    /// Most R2T-solicited write data one connection may have asked for at a time. A write
    /// reserves every byte it will solicit when its first R2T is due, and gives the
    /// reservation back when the layer above completes or aborts it (the data is buffered
    /// until then). A write that does not fit waits, without R2Ts, behind the writes that
    /// waited before it (first come, first served); the R2Ts go out as soon as completions
    /// or aborts make room. A write larger than the whole budget still proceeds when no other
    /// write holds any of it, so no command can stall for good. Reserving a write's whole
    /// solicited length at once (rather than R2T by R2T) means two half-admitted writes can
    /// never wait on each other.
    ///
    /// Immediate and unsolicited data are outside this budget; each command's is bounded by
    /// FirstBurstLength. The default, 32 MiB, keeps four maximum-size writes
    /// (`max_command_data_out`) or 32 bursts of the default MaxBurstLength in flight, which
    /// keeps a connection streaming, instead of the ~1.1 GiB a full command window of 8 MiB
    /// writes could otherwise make one connection buffer.
    pub max_solicited_data: u32,
    /// Digests a normal session must use (the operator's choice; default: none required).
    /// With `header` (`data`) set, the target answers HeaderDigest (DataDigest) with CRC32C
    /// whenever the initiator's list holds it, and refuses a login that offers only None or
    /// leaves the key at its default (None) with Initiator error (0x0200), logging which
    /// digest was missing. Discovery sessions are not held to it.
    pub require_digests: pdu::Digests,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1_048_576,
            first_burst_length: 262_144,
            max_outstanding_r2t: 4,
            immediate_data: true,
            initial_r2t: false,
            command_window: 128,
            max_immediate_tasks: 16,
            max_command_data_out: 8 << 20,
            max_solicited_data: 32 << 20,
            require_digests: pdu::Digests {
                header: false,
                data: false,
            },
        }
    }
}

/// Configuration shared by every connection of a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Targets offered by SendTargets and accepted as TargetName at login.
    pub targets: Vec<TargetInfo>,
    /// Operational limits offered at login.
    pub limits: Limits,
    /// Target portal group tag returned at login.
    pub portal_group_tag: u16,
    /// Who may log in to what, and with which CHAP credentials.
    pub access: Arc<auth::AccessPolicy>,
}

/// Whether a session is for discovery or for I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    /// SessionType=Discovery: only Text (SendTargets) and Logout.
    Discovery,
    /// SessionType=Normal (the default): SCSI I/O to one target.
    Normal,
}

/// SAM task attribute from the SCSI Command PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAttr {
    /// 0: untagged.
    Untagged,
    /// 1: simple.
    Simple,
    /// 2: ordered.
    Ordered,
    /// 3: head of queue.
    HeadOfQueue,
    /// 4: ACA.
    Aca,
}

impl TaskAttr {
    /// The ATTR field (bits 0..2 of byte 1 of a SCSI Command); reserved values count as
    /// simple.
    pub fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => TaskAttr::Untagged,
            1 => TaskAttr::Simple,
            2 => TaskAttr::Ordered,
            3 => TaskAttr::HeadOfQueue,
            4 => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        }
    }
}

/// A SCSI command whose data-out is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    /// Initiator task tag; echoed in [`Connection::complete_command`].
    pub itt: u32,
    /// The 8-byte LUN field, big-endian as received (SAM encoding; LUN 0 is 0).
    pub lun: u64,
    /// The CDB: the 16 bytes of the header (zero padded) plus any extended CDB AHS.
    pub cdb: Bytes,
    /// Task attribute.
    pub attr: TaskAttr,
    /// Expected data transfer length from the command PDU.
    pub expected_len: u32,
    /// R bit: data-in expected.
    pub read: bool,
    /// W bit: data-out carried in `data_out`.
    pub write: bool,
    /// All data-out bytes, in buffer-offset order (at most `expected_len`), as the data
    /// segments of the PDUs that carried them (slices of the input, not copied; see
    /// [`bufpool::Segments`]).
    pub data_out: bufpool::Segments,
    /// True when `expected_len` exceeded [`Limits::max_command_data_out`]: the data-out was
    /// not collected and `data_out` is empty. The command must then fail (CHECK CONDITION),
    /// never run as a write of no data.
    pub data_out_discarded: bool,
}

/// Outcome of a SCSI command, to be sent as Data-In and/or SCSI Response PDUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResponse {
    /// SCSI status byte.
    pub status: u8,
    /// Data-in bytes (trimmed to the expected length by the connection).
    pub data_in: Bytes,
    /// Sense data (fixed format) for CHECK CONDITION; sent with its 2-byte length prefix.
    pub sense: Option<Bytes>,
    /// Bytes the CDB asked to move, compared with the expected length for residuals.
    pub transfer_len: u32,
}

/// What the connection tells the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
// A command carries its data segments inline (`bufpool::Segments`); boxing it would cost
// an allocation per command, and events are only moved through the connection's queue.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// Login reached full feature phase.
    LoggedIn {
        /// InitiatorName.
        initiator: String,
        /// Empty for discovery sessions.
        target: String,
        /// Discovery or normal.
        session_type: SessionType,
        /// Initiator session ID from the login request.
        isid: [u8; 6],
        /// Target session identifying handle assigned at login.
        tsih: u16,
    },
    /// A command ready to execute.
    Command(ScsiCommand),
    /// A task management request (RFC 7143 11.5). Answer with
    /// [`Connection::complete_task_management`].
    TaskManagement(TaskManagementRequest),
    /// The initiator logged out; close the socket once transmit is drained.
    LoggedOut,
}

/// A protocol violation that ends the connection (ERL 0). The reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A PDU or its text/AHS could not be parsed.
    #[error("malformed PDU: {0}")]
    Malformed(String),
    /// An opcode an initiator may not send.
    #[error("unsupported opcode {0:#04x}")]
    UnknownOpcode(u8),
    /// A data segment longer than our MaxRecvDataSegmentLength (8192 during login, see
    /// [`connection::LOGIN_MAX_DATA`]; login text split with the C bit is bounded by
    /// [`login::MAX_LOGIN_TEXT`]).
    #[error("data segment of {len} bytes exceeds the negotiated {max}")]
    DataSegmentTooLong {
        /// DataSegmentLength in the header.
        len: u32,
        /// Our limit.
        max: u32,
    },
    /// A header digest that does not match the header (RFC 7143 7.8: the connection ends,
    /// since nothing in the header, not even its length, can be trusted).
    #[error("header digest {received:#010x} does not match the header's CRC32C {computed:#010x}")]
    HeaderDigest {
        /// The digest received, as a little-endian number.
        received: u32,
        /// The digest of the header received.
        computed: u32,
    },
    /// The login or the answer to a NOP-In ping took longer than its time limit
    /// ([`Timers`]).
    #[error("timed out: {0}")]
    TimedOut(String),
    /// A well-formed PDU that breaks the protocol (wrong phase, bad offsets, ...).
    #[error("protocol error: {0}")]
    Protocol(String),
}

pub mod auth;
pub mod connection;
pub mod header;
pub mod login;
pub mod negotiation;
pub mod pdu;
pub mod seq;
pub mod text;
pub mod transmit;

pub use connection::{
    Admission, Connection, TaskFunction, TaskManagementRequest, TaskScope, Timers, TmfResponse,
};
pub use negotiation::Params;
pub use pdu::{check, decode, Bhs, Digests, FrameLimits, Pdu};
pub use transmit::{PduSink, Transmit};

#[cfg(test)]
mod tests;
