//! Full feature phase state of the session: its tasks, command window and solicited-data
//! budget.

use super::data_out::Collecting;
use super::text::TextContinuation;
use crate::login::LoginOutcome;
use crate::pdu::Pdu;
use crate::TaskAttr;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

#[derive(Debug)]
pub(super) struct Task {
    pub(super) lun: u64,
    pub(super) cdb: Bytes,
    pub(super) attr: TaskAttr,
    pub(super) edtl: u32,
    pub(super) read: bool,
    pub(super) write: bool,
    /// Counts toward the command window (non-immediate).
    pub(super) windowed: bool,
    /// R2TSN of the next R2T.
    pub(super) r2tsn: u32,
    pub(super) collecting: Option<Collecting>,
    /// The write announced more than `Limits::max_command_data_out`: it went up without its
    /// data, and Data-Out PDUs for it are dropped.
    pub(super) discard_data: bool,
    /// Bytes of `Limits::max_solicited_data` this write holds: everything it solicits by
    /// R2T, reserved when its first R2T is due and given back when the task is forgotten.
    pub(super) reserved: u32,
    /// Read data sent ahead of the command's completion (`Connection::send_data_in`).
    pub(super) data_in: DataInSent,
}

/// How far a read's Data-In has gone: the buffer offset of its next byte and the DataSN
/// of its next PDU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DataInSent {
    pub(super) offset: u32,
    pub(super) data_sn: u32,
}

/// Full feature phase state of the (single-connection) session.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) info: LoginOutcome,
    pub(super) exp_cmd_sn: u32,
    pub(super) max_cmd_sn: u32,
    /// Non-immediate SCSI commands received and not yet completed.
    pub(super) outstanding: u32,
    /// By task tag; foldhash, not SipHash: looked up several times per command, and
    /// bounded by the command window, so flooding it buys an initiator nothing.
    pub(super) tasks: foldhash::HashMap<u32, Task>,
    /// Non-immediate PDUs that arrived ahead of ExpCmdSN, by CmdSN.
    pub(super) stash: BTreeMap<u32, Pdu>,
    /// Data-Out PDUs for stashed commands.
    pub(super) early_data: HashMap<u32, Vec<Pdu>>,
    pub(super) pending_tmf: HashSet<u32>,
    /// Stashed (out of CmdSN order) commands aborted before their turn.
    pub(super) aborted_early: HashSet<u32>,
    /// CmdSN ranges aborted before their turn by a task set function (ABORT TASK SET,
    /// CLEAR TASK SET, resets) or an ABORT TASK of a command not yet received: a command
    /// of the range whose LUN matches is dropped when its turn comes. Empty but for the
    /// window after such a function.
    pub(super) aborted_ranges: Vec<AbortedRange>,
    pub(super) next_ttt: u32,
    pub(super) text_cont: Option<TextContinuation>,
    pub(super) text_partial: Vec<u8>,
    /// TTT handed out to acknowledge a partial (C bit) text request.
    pub(super) text_partial_ttt: Option<u32>,
    /// Sum of `Task::reserved` over the tasks.
    pub(super) solicited: u64,
    /// Writes whose R2Ts wait for room in `Limits::max_solicited_data`, in arrival order.
    pub(super) waiting: VecDeque<u32>,
}

impl Session {
    /// The session a login established, with a command window of `window` commands.
    pub(super) fn new(info: LoginOutcome, window: u32) -> Self {
        let exp = info.exp_cmd_sn;
        Session {
            info,
            exp_cmd_sn: exp,
            max_cmd_sn: exp.wrapping_add(window).wrapping_sub(1),
            outstanding: 0,
            tasks: foldhash::HashMap::default(),
            stash: BTreeMap::new(),
            early_data: HashMap::new(),
            pending_tmf: HashSet::new(),
            aborted_early: HashSet::new(),
            aborted_ranges: Vec::new(),
            next_ttt: 1,
            text_cont: None,
            text_partial: Vec::new(),
            text_partial_ttt: None,
            solicited: 0,
            waiting: VecDeque::new(),
        }
    }

    /// A new target transfer tag (never 0 or the reserved tag).
    pub(super) fn take_ttt(&mut self) -> u32 {
        take_tag(&mut self.next_ttt)
    }

    /// Removes a task and gives back what it held: its place in the command window, its
    /// solicited-data reservation, its place in the queue of waiting writes.
    pub(super) fn forget_task(&mut self, itt: u32) -> Option<Task> {
        let task = self.tasks.remove(&itt)?;
        if task.windowed {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        self.solicited -= u64::from(task.reserved);
        self.waiting.retain(|&w| w != itt);
        Some(task)
    }
}

/// Commands with CmdSN in `[from, below)` (serial arithmetic) on `lun` (every LUN for
/// `None`), aborted before their CmdSN turn came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AbortedRange {
    pub(super) from: u32,
    pub(super) below: u32,
    pub(super) lun: Option<u64>,
}

impl AbortedRange {
    pub(super) fn covers(&self, sn: u32, lun: u64) -> bool {
        crate::seq::le(self.from, sn)
            && crate::seq::lt(sn, self.below)
            && self.lun.is_none_or(|l| l == lun)
    }
}

/// Returns `*next` and advances it, skipping 0 and the reserved tag.
pub(super) fn take_tag(next: &mut u32) -> u32 {
    let t = *next;
    *next = next.wrapping_add(1);
    if *next == 0 || *next == crate::pdu::RESERVED_TAG {
        *next = 1;
    }
    t
}
