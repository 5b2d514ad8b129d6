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

use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// One target as offered in discovery and accepted at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// The iSCSI qualified name, e.g. `iqn.2026-11.com.example:disk1`.
    pub name: String,
    pub alias: Option<String>,
    /// `TargetAddress` values for SendTargets: `host:port,tpgt`.
    pub addresses: Vec<String>,
}

/// What the target offers in operational negotiation (RFC 7143 section 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// MaxRecvDataSegmentLength we declare (what we accept per PDU).
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// Largest CmdSN window we open (MaxCmdSN - ExpCmdSN + 1).
    pub command_window: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1_048_576,
            first_burst_length: 262_144,
            max_outstanding_r2t: 1,
            immediate_data: true,
            initial_r2t: false,
            command_window: 128,
        }
    }
}

/// Configuration shared by every connection of a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub targets: Vec<TargetInfo>,
    pub limits: Limits,
    /// Target portal group tag returned at login.
    pub portal_group_tag: u16,
}

/// Whether a session is for discovery or for I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    Discovery,
    Normal,
}

/// SAM task attribute from the SCSI Command PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAttr {
    Untagged,
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// A SCSI command whose data-out is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    /// Initiator task tag; echoed in [`Connection::complete_command`].
    pub itt: u32,
    pub lun: u64,
    pub cdb: Bytes,
    pub attr: TaskAttr,
    /// Expected data transfer length from the command PDU.
    pub expected_len: u32,
    pub read: bool,
    pub write: bool,
    /// All data-out bytes, in buffer-offset order (at most `expected_len`).
    pub data_out: Bytes,
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
pub enum Event {
    /// Login reached full feature phase.
    LoggedIn {
        initiator: String,
        /// Empty for discovery sessions.
        target: String,
        session_type: SessionType,
        isid: [u8; 6],
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

/// A task management function request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskManagementRequest {
    pub itt: u32,
    /// Function code (1 = ABORT TASK, 2 = ABORT TASK SET, 5 = LOGICAL UNIT RESET, ...).
    pub function: u8,
    pub lun: u64,
    /// The task to act on, for ABORT TASK.
    pub referenced_itt: u32,
}

/// A protocol violation that ends the connection (ERL 0). The reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed PDU: {0}")]
    Malformed(String),
    #[error("unsupported opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("data segment of {len} bytes exceeds the negotiated {max}")]
    DataSegmentTooLong { len: u32, max: u32 },
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// One iSCSI connection (and, with MaxConnections=1, its session).
#[derive(Debug)]
pub struct Connection {
    _config: Arc<Config>,
}

impl Connection {
    pub fn new(config: Arc<Config>) -> Self {
        Connection { _config: config }
    }

    /// Parses every complete PDU at the front of `input`, consuming its bytes. Incomplete
    /// trailing bytes are left for the next call.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<(), ProtocolError> {
        let _ = input;
        todo!()
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Appends every PDU ready to send to `out`.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) {
        let _ = out;
        todo!()
    }

    /// Answers the command with initiator task tag `itt`.
    pub fn complete_command(&mut self, itt: u32, response: CommandResponse) {
        let _ = (itt, response);
        todo!()
    }

    /// Answers a task management request with a response code (RFC 7143 11.6.1:
    /// 0 = function complete, 1 = task does not exist, 2 = LUN does not exist,
    /// 5 = function not supported, ...).
    pub fn complete_task_management(&mut self, itt: u32, response: u8) {
        let _ = (itt, response);
        todo!()
    }

    /// Forgets a command the layer above aborted: no response will be sent for it, and a
    /// later `complete_command` for `itt` is ignored.
    pub fn abort_command(&mut self, itt: u32) {
        let _ = itt;
        todo!()
    }

    /// True once the connection has nothing more to do (logged out, or login failed) and
    /// the socket may be closed after transmitting what `poll_transmit` gave.
    pub fn is_finished(&self) -> bool {
        todo!()
    }
}
