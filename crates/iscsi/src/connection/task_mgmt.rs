//! Task management (RFC 7143 11.5 and 11.6): the function codes as a typed enum, what the
//! connection answers by itself (tasks the layer above has not seen, functions ERL 0 cannot
//! do), and the requests it hands up as [`Event::TaskManagement`].

use super::session::AbortedRange;
use super::{is_command, proto, Connection, Phase};
use crate::header::{TmfRequestHeader, TmfResponseHeader};
use crate::pdu::Pdu;
use crate::{seq, Event, ProtocolError, SessionType};
use bytes::Bytes;

/// A task management function the layer above carries out (RFC 7143 11.5.1). TASK
/// REASSIGN (ERL 2) and undefined codes never get here: the connection answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFunction {
    /// 1: ABORT TASK, of the task with this initiator task tag.
    AbortTask {
        /// Referenced task tag.
        referenced_itt: u32,
    },
    /// 2: ABORT TASK SET: every task of the session on the LUN.
    AbortTaskSet,
    /// 3: CLEAR ACA.
    ClearAca,
    /// 4: CLEAR TASK SET: every task on the LUN.
    ClearTaskSet,
    /// 5: LOGICAL UNIT RESET.
    LogicalUnitReset,
    /// 6: TARGET WARM RESET.
    TargetWarmReset,
    /// 7: TARGET COLD RESET.
    TargetColdReset,
}

impl TaskFunction {
    /// Decodes the Function field; `Err` carries the answer the connection gives itself.
    pub fn decode(function: u8, referenced_itt: u32) -> Result<Self, TmfResponse> {
        Ok(match function {
            1 => TaskFunction::AbortTask { referenced_itt },
            2 => TaskFunction::AbortTaskSet,
            3 => TaskFunction::ClearAca,
            4 => TaskFunction::ClearTaskSet,
            5 => TaskFunction::LogicalUnitReset,
            6 => TaskFunction::TargetWarmReset,
            7 => TaskFunction::TargetColdReset,
            // TASK REASSIGN needs ERL 2.
            8 => return Err(TmfResponse::ReassignmentNotSupported),
            _ => return Err(TmfResponse::Rejected),
        })
    }

    /// Which tasks the function ends: one task, the tasks on the request's LUN, every
    /// task of the session, or none.
    pub fn scope(&self) -> TaskScope {
        match self {
            TaskFunction::AbortTask { referenced_itt } => TaskScope::Task(*referenced_itt),
            TaskFunction::AbortTaskSet
            | TaskFunction::ClearTaskSet
            | TaskFunction::LogicalUnitReset => TaskScope::Lun,
            TaskFunction::TargetWarmReset | TaskFunction::TargetColdReset => TaskScope::Session,
            TaskFunction::ClearAca => TaskScope::None,
        }
    }
}

/// The tasks a [`TaskFunction`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskScope {
    /// The task with this initiator task tag.
    Task(u32),
    /// Every task of the session on the request's LUN.
    Lun,
    /// Every task of the session.
    Session,
    /// No task.
    None,
}

/// Task management function responses (RFC 7143 11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TmfResponse {
    /// 0: function complete.
    FunctionComplete = 0,
    /// 1: task does not exist.
    TaskDoesNotExist = 1,
    /// 2: LUN does not exist.
    LunDoesNotExist = 2,
    /// 3: task still allegiant.
    TaskStillAllegiant = 3,
    /// 4: task allegiance reassignment not supported.
    ReassignmentNotSupported = 4,
    /// 5: task management function not supported.
    NotSupported = 5,
    /// 6: function authorization failed.
    AuthorizationFailed = 6,
    /// 255: function rejected.
    Rejected = 255,
}

/// A task management request for the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskManagementRequest {
    /// Tag of the request; echoed in [`Connection::complete_task_management`].
    pub itt: u32,
    /// The function.
    pub function: TaskFunction,
    /// LUN field of the request.
    pub lun: u64,
}

impl Connection {
    pub(super) fn handle_tmf(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let req = TmfRequestHeader::parse(&pdu.bhs);
        let (itt, lun) = (req.itt, req.lun);
        let s = self.session();
        if s.info.session_type == SessionType::Discovery {
            return Err(proto("task management in a discovery session"));
        }
        let function = match TaskFunction::decode(req.function, req.referenced_itt) {
            Ok(f) => f,
            Err(answer) => {
                self.send_tmf_response(itt, answer);
                return Ok(());
            }
        };
        match function.scope() {
            TaskScope::Task(referenced_itt) => {
                // ABORT TASK: answer here for tasks the layer above has not seen.
                if let Some(task) = s.tasks.get(&referenced_itt) {
                    if task.collecting.is_some() {
                        s.forget_task(referenced_itt);
                        self.send_tmf_response(itt, TmfResponse::FunctionComplete);
                        self.solicit_waiting();
                        return Ok(());
                    }
                    // Delivered: the layer above aborts it (abort_command) and answers.
                } else if s
                    .stash
                    .values()
                    .any(|p| is_command(p) && p.bhs.itt() == referenced_itt)
                {
                    // Not yet in CmdSN order: drop it when its turn comes.
                    s.aborted_early.insert(referenced_itt);
                    self.send_tmf_response(itt, TmfResponse::FunctionComplete);
                    return Ok(());
                } else {
                    // RFC 7143 11.5.1: an unknown task whose RefCmdSN is inside the window
                    // and before this request counts as received and aborted; otherwise it
                    // has completed already ("task does not exist").
                    let response = if seq::in_window(req.ref_cmd_sn, s.exp_cmd_sn, s.max_cmd_sn)
                        && seq::lt(req.ref_cmd_sn, req.cmd_sn)
                    {
                        // Should it still come, it is dropped at its turn.
                        s.aborted_ranges.push(AbortedRange {
                            from: req.ref_cmd_sn,
                            below: req.ref_cmd_sn.wrapping_add(1),
                            lun: None,
                        });
                        TmfResponse::FunctionComplete
                    } else {
                        TmfResponse::TaskDoesNotExist
                    };
                    self.send_tmf_response(itt, response);
                    return Ok(());
                }
            }
            scope @ (TaskScope::Lun | TaskScope::Session) => {
                // Drop tasks still collecting data that this function aborts: the layer
                // above has not seen them.
                let only = (scope == TaskScope::Lun).then_some(lun);
                self.abort_collecting(|t| only.is_none_or(|l| t == l));
                // And those still waiting for their CmdSN turn: every command with a CmdSN
                // below the function's is in the task set it aborts (RFC 7143 11.5.1,
                // SAM-5 7), whether it is held out of order here or has not arrived yet
                // (a gap in CmdSN order): dropped at its turn.
                let s = self.session();
                if seq::lt(s.exp_cmd_sn, req.cmd_sn) {
                    let range = AbortedRange {
                        from: s.exp_cmd_sn,
                        below: req.cmd_sn,
                        lun: only,
                    };
                    s.aborted_ranges.push(range);
                }
            }
            TaskScope::None => {}
        }
        self.session().pending_tmf.insert(itt);
        self.events
            .push_back(Event::TaskManagement(TaskManagementRequest {
                itt,
                function,
                lun,
            }));
        Ok(())
    }

    fn send_tmf_response(&mut self, itt: u32, response: TmfResponse) {
        let mut b = TmfResponseHeader {
            response: response as u8,
            itt,
        }
        .bhs();
        self.stamp(&mut b, true);
        self.push(b, Bytes::new());
    }

    /// Answers a task management request the connection handed up.
    pub fn complete_task_management(&mut self, itt: u32, response: TmfResponse) {
        let Phase::FullFeature(s) = &mut self.phase else {
            return;
        };
        if !s.pending_tmf.remove(&itt) {
            tracing::debug!(itt, "task management completion for an unknown request");
            return;
        }
        self.send_tmf_response(itt, response);
    }

    /// Aborts the tasks the layer above has not seen whose LUN field `lun` accepts: those
    /// still collecting their data (waiting for immediate, unsolicited or R2T-solicited
    /// Data-Out) and commands received out of CmdSN order still waiting for their turn.
    /// No response will be sent for them, Data-Out that still comes for them is dropped,
    /// and a waiting command is dropped when its turn comes (it keeps its CmdSN). For the
    /// layer above when it aborts a task set itself (PREEMPT AND ABORT, SPC-4
    /// 5.13.11.2.5: every task of the preempted I_T nexus on the LU, also those whose
    /// data has not all arrived or whose turn has not come). Returns how many.
    pub fn abort_collecting(&mut self, lun: impl Fn(u64) -> bool) -> usize {
        let Phase::FullFeature(s) = &mut self.phase else {
            return 0;
        };
        let doomed: Vec<u32> = s
            .tasks
            .iter()
            .filter(|(_, t)| t.collecting.is_some() && lun(t.lun))
            .map(|(k, _)| *k)
            .collect();
        for &t in &doomed {
            s.forget_task(t);
        }
        let waiting: Vec<u32> = s
            .stash
            .values()
            .filter(|p| is_command(p) && lun(p.bhs.lun()))
            .map(|p| p.bhs.itt())
            .collect();
        let mut aborted = doomed.len();
        for itt in waiting {
            aborted += usize::from(s.aborted_early.insert(itt));
        }
        self.solicit_waiting();
        aborted
    }

    /// Forgets a command the layer above aborted: no response will be sent for it, and a
    /// later `complete_command` for `itt` is ignored. The solicited data it held goes to
    /// waiting writes, whose R2Ts are then among the PDUs `poll_transmit` gives.
    pub fn abort_command(&mut self, itt: u32) {
        let Phase::FullFeature(s) = &mut self.phase else {
            return;
        };
        if s.forget_task(itt).is_some() {
            self.solicit_waiting();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_codes_follow_rfc_7143_table() {
        // RFC 7143 11.5.1 Function field and 11.6.1 Response field, written out.
        let t = 0x1234;
        assert_eq!(
            TaskFunction::decode(1, t),
            Ok(TaskFunction::AbortTask { referenced_itt: t })
        );
        assert_eq!(TaskFunction::decode(2, t), Ok(TaskFunction::AbortTaskSet));
        assert_eq!(TaskFunction::decode(3, t), Ok(TaskFunction::ClearAca));
        assert_eq!(TaskFunction::decode(4, t), Ok(TaskFunction::ClearTaskSet));
        assert_eq!(
            TaskFunction::decode(5, t),
            Ok(TaskFunction::LogicalUnitReset)
        );
        assert_eq!(
            TaskFunction::decode(6, t),
            Ok(TaskFunction::TargetWarmReset)
        );
        assert_eq!(
            TaskFunction::decode(7, t),
            Ok(TaskFunction::TargetColdReset)
        );
        assert_eq!(TaskFunction::decode(8, t).map_err(|r| r as u8), Err(4));
        for undefined in [0u8, 9, 0x33, 0x7f] {
            assert_eq!(
                TaskFunction::decode(undefined, t).map_err(|r| r as u8),
                Err(255)
            );
        }
        let codes = [
            (TmfResponse::FunctionComplete, 0u8),
            (TmfResponse::TaskDoesNotExist, 1),
            (TmfResponse::LunDoesNotExist, 2),
            (TmfResponse::TaskStillAllegiant, 3),
            (TmfResponse::ReassignmentNotSupported, 4),
            (TmfResponse::NotSupported, 5),
            (TmfResponse::AuthorizationFailed, 6),
            (TmfResponse::Rejected, 255),
        ];
        for (response, code) in codes {
            assert_eq!(response as u8, code, "{response:?}");
        }
    }

    #[test]
    fn scopes_follow_sam_task_management_functions() {
        // SAM-5 7: ABORT TASK ends one task; ABORT TASK SET, CLEAR TASK SET and LOGICAL UNIT
        // RESET the tasks on the logical unit; the target resets every task; CLEAR ACA none.
        use TaskFunction::*;
        let expected = [
            (AbortTask { referenced_itt: 7 }, TaskScope::Task(7)),
            (AbortTaskSet, TaskScope::Lun),
            (ClearTaskSet, TaskScope::Lun),
            (LogicalUnitReset, TaskScope::Lun),
            (TargetWarmReset, TaskScope::Session),
            (TargetColdReset, TaskScope::Session),
            (ClearAca, TaskScope::None),
        ];
        for (function, scope) in expected {
            assert_eq!(function.scope(), scope, "{function:?}");
        }
    }
}
