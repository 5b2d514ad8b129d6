//! Task attributes (SAM-5 8.6): the order in which one I_T nexus's commands to a logical
//! unit may run.
//!
//! The standard INQUIRY data says CMDQUE=1, the command management model, in which a
//! device server honours every task attribute the SCSI Command PDU carries; the Control
//! mode page says TST 001b, one task set per I_T nexus (here: per session, which has one
//! connection) and QUEUE ALGORITHM MODIFIER 1, so SIMPLE commands run in any order and
//! at once. The other attributes order them:
//!
//! * **ORDERED**: starts once every command the nexus sent the LU before it has ended,
//!   and every command sent after it (but HEAD OF QUEUE) waits until it has ended;
//! * **HEAD OF QUEUE**: starts at once, ahead of any command waiting here;
//! * SIMPLE and untagged (iSCSI: as SIMPLE) run at once unless an ORDERED command ahead
//!   of them holds them;
//! * **ACA** is refused ([`refusal`]): the standard INQUIRY data says NormACA=0, which
//!   SPC-4 (6.6.2) reads as "the ACA task attribute is not supported", and no ACA
//!   condition is ever established for such a command to run in.
//!
//! Pure bookkeeping, no I/O: the connection asks [`TaskOrder::admit`] for each command,
//! tells [`TaskOrder::left`] of each that ends (answered, aborted or timed out), and
//! starts what [`TaskOrder::next_ready`] hands back. Without an ORDERED command nothing is
//! kept (one comparison per command); a LU gets a gate only while an ORDERED command of
//! this nexus is waiting or running on it, and the commands held behind it are bounded
//! by the session's command window (MaxCmdSN), as every command is.

use iscsi::TaskAttr;
use scsi::sense::{Asc, Sense, SenseKey};
use std::collections::VecDeque;

/// The sense a command with task attribute `attr` is ended with at once, before it is
/// admitted, if it is refused: ACA, which this device server does not support (NormACA=0),
/// with CHECK CONDITION, ILLEGAL REQUEST, INVALID MESSAGE ERROR (49h/00h), the answer to a
/// task attribute the task manager does not take.
pub fn refusal(attr: TaskAttr) -> Option<Sense> {
    match attr {
        TaskAttr::Aca => Some(Sense::new(
            SenseKey::IllegalRequest,
            Asc::INVALID_MESSAGE_ERROR,
        )),
        TaskAttr::Simple | TaskAttr::Untagged | TaskAttr::Ordered | TaskAttr::HeadOfQueue => None,
    }
}

/// One nexus's waiting and ordered commands, per LU; `C` is the command itself.
#[derive(Debug)]
pub struct TaskOrder<C> {
    /// The LUs with an ORDERED command running or waiting (few: usually none).
    gates: Vec<Gate<C>>,
}

#[derive(Debug)]
struct Gate<C> {
    /// The LU, as the wire's 8-byte LUN field.
    lun: u64,
    /// The ORDERED command running on it, by task tag.
    ordered: Option<u32>,
    /// Commands waiting, in the order received.
    held: VecDeque<Held<C>>,
}

#[derive(Debug)]
struct Held<C> {
    itt: u32,
    ordered: bool,
    command: C,
}

impl<C> Default for TaskOrder<C> {
    fn default() -> Self {
        TaskOrder { gates: Vec::new() }
    }
}

impl<C> TaskOrder<C> {
    /// Nothing ordered running and nothing waiting: every command may start at once.
    pub fn is_idle(&self) -> bool {
        self.gates.is_empty()
    }

    /// How many commands wait.
    pub fn held(&self) -> usize {
        self.gates.iter().map(|g| g.held.len()).sum()
    }

    /// A command just received on `lun`: back to start it now, or kept until its turn
    /// (`None`). `running` counts the nexus's commands on `lun` that have started and not
    /// ended; it is asked only for an ORDERED command when no gate is there.
    pub fn admit(
        &mut self,
        lun: u64,
        itt: u32,
        attr: TaskAttr,
        command: C,
        running: impl FnOnce() -> usize,
    ) -> Option<C> {
        let ordered = match attr {
            TaskAttr::HeadOfQueue => return Some(command),
            TaskAttr::Ordered => true,
            // ACA never gets here (`refusal`); were it to, it would run as SIMPLE.
            TaskAttr::Simple | TaskAttr::Untagged | TaskAttr::Aca => false,
        };
        if let Some(gate) = self.gates.iter_mut().find(|g| g.lun == lun) {
            gate.held.push_back(Held {
                itt,
                ordered,
                command,
            });
            return None;
        }
        if !ordered {
            return Some(command);
        }
        if running() == 0 {
            // Starts now; the gate keeps its tag and holds whatever comes after it.
            self.gates.push(Gate {
                lun,
                ordered: Some(itt),
                held: VecDeque::new(),
            });
            return Some(command);
        }
        self.gates.push(Gate {
            lun,
            ordered: None,
            held: VecDeque::from([Held {
                itt,
                ordered,
                command,
            }]),
        });
        None
    }

    /// Command `itt` on `lun` has ended (answered, aborted or timed out).
    pub fn left(&mut self, lun: u64, itt: u32) {
        if let Some(gate) = self.gates.iter_mut().find(|g| g.lun == lun) {
            if gate.ordered == Some(itt) {
                gate.ordered = None;
            }
        }
    }

    /// The next waiting command that may start now, marked started; `running(lun)`
    /// counts the nexus's started and not ended commands on a LU. `None` when none may
    /// (call again after each start: a start can end a command at once).
    pub fn next_ready(&mut self, running: impl Fn(u64) -> usize) -> Option<C> {
        let mut i = 0;
        while i < self.gates.len() {
            let gate = &mut self.gates[i];
            if gate.ordered.is_none() {
                match gate.held.front() {
                    None => {
                        // Nothing ordered runs, nothing waits: the LU is free again.
                        self.gates.swap_remove(i);
                        continue;
                    }
                    Some(front) if !front.ordered || running(gate.lun) == 0 => {
                        let next = gate.held.pop_front().expect("front seen");
                        if next.ordered {
                            gate.ordered = Some(next.itt);
                        }
                        return Some(next.command);
                    }
                    // An ORDERED command waits for those started before it.
                    Some(_) => {}
                }
            }
            i += 1;
        }
        None
    }

    /// Takes waiting command `itt` out (aborted): it never starts.
    pub fn remove(&mut self, itt: u32) -> Option<C> {
        self.gates.iter_mut().find_map(|gate| {
            let at = gate.held.iter().position(|h| h.itt == itt)?;
            gate.held.remove(at).map(|h| h.command)
        })
    }

    /// Takes out every waiting command on the LUs `on` picks (aborted), with its tag.
    pub fn remove_on(&mut self, on: impl Fn(u64) -> bool) -> Vec<(u32, C)> {
        let mut out = Vec::new();
        for gate in self.gates.iter_mut().filter(|g| on(g.lun)) {
            out.extend(gate.held.drain(..).map(|h| (h.itt, h.command)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A nexus's commands as the connection keeps them: started and not ended, by tag
    /// and LU, with the order they started in.
    #[derive(Default)]
    struct Nexus {
        order: TaskOrder<(u64, u32)>,
        running: HashSet<(u64, u32)>,
        started: Vec<u32>,
    }

    impl Nexus {
        fn receive(&mut self, lun: u64, itt: u32, attr: TaskAttr) {
            let running = self.running.iter().filter(|(l, _)| *l == lun).count();
            if let Some(c) = self.order.admit(lun, itt, attr, (lun, itt), || running) {
                self.start(c);
            }
            self.pump();
        }

        fn end(&mut self, lun: u64, itt: u32) {
            assert!(self.running.remove(&(lun, itt)), "{itt} was not running");
            self.order.left(lun, itt);
            self.pump();
        }

        fn start(&mut self, c: (u64, u32)) {
            self.running.insert(c);
            self.started.push(c.1);
        }

        fn pump(&mut self) {
            loop {
                let running = &self.running;
                let next = self
                    .order
                    .next_ready(|lun| running.iter().filter(|(l, _)| *l == lun).count());
                match next {
                    Some(c) => self.start(c),
                    None => break,
                }
            }
        }
    }

    use TaskAttr::{HeadOfQueue, Ordered, Simple};

    #[test]
    fn simple_commands_start_at_once_and_keep_nothing() {
        let mut n = Nexus::default();
        for itt in 1..=4 {
            n.receive(0, itt, Simple);
        }
        assert_eq!(n.started, [1, 2, 3, 4]);
        assert!(n.order.is_idle());
    }

    #[test]
    fn an_ordered_command_waits_for_the_earlier_ones_and_holds_the_later_ones() {
        let mut n = Nexus::default();
        n.receive(0, 1, Simple);
        n.receive(0, 2, Simple);
        n.receive(0, 3, Ordered);
        n.receive(0, 4, Simple);
        n.receive(0, 5, Ordered);
        n.receive(0, 6, Simple);
        assert_eq!(n.started, [1, 2]);
        assert_eq!(n.order.held(), 4);
        n.end(0, 2);
        assert_eq!(n.started, [1, 2], "3 waits for 1 as well");
        n.end(0, 1);
        assert_eq!(n.started, [1, 2, 3]);
        n.end(0, 3);
        assert_eq!(n.started, [1, 2, 3, 4], "5 waits for 4");
        n.end(0, 4);
        assert_eq!(n.started, [1, 2, 3, 4, 5]);
        n.end(0, 5);
        assert_eq!(n.started, [1, 2, 3, 4, 5, 6]);
        n.end(0, 6);
        assert!(n.order.is_idle());
        assert_eq!(n.order.held(), 0);
    }

    #[test]
    fn an_ordered_command_on_an_idle_lu_starts_at_once_and_still_holds_what_follows() {
        let mut n = Nexus::default();
        n.receive(0, 1, Ordered);
        n.receive(0, 2, Simple);
        assert_eq!(n.started, [1]);
        n.end(0, 1);
        assert_eq!(n.started, [1, 2]);
        n.end(0, 2);
        assert!(n.order.is_idle());
    }

    #[test]
    fn head_of_queue_starts_ahead_of_what_waits() {
        let mut n = Nexus::default();
        n.receive(0, 1, Simple);
        n.receive(0, 2, Ordered);
        n.receive(0, 3, HeadOfQueue);
        assert_eq!(n.started, [1, 3]);
        n.end(0, 1);
        assert_eq!(n.started, [1, 3], "2 waits for 3, started before it");
        n.end(0, 3);
        assert_eq!(n.started, [1, 3, 2]);
    }

    #[test]
    fn each_lu_keeps_its_own_order() {
        let mut n = Nexus::default();
        n.receive(0, 1, Simple);
        n.receive(0, 2, Ordered);
        n.receive(1 << 48, 3, Simple);
        n.receive(1 << 48, 4, Ordered);
        n.receive(1 << 48, 5, Simple);
        assert_eq!(n.started, [1, 3], "LU 1's ORDERED waits for LU 1's 3 only");
        n.end(1 << 48, 3);
        assert_eq!(n.started, [1, 3, 4]);
        n.end(1 << 48, 4);
        assert_eq!(n.started, [1, 3, 4, 5]);
        n.end(0, 1);
        assert_eq!(n.started, [1, 3, 4, 5, 2]);
    }

    #[test]
    fn an_aborted_waiting_command_never_starts_and_an_aborted_ordered_one_frees_the_lu() {
        let mut n = Nexus::default();
        n.receive(0, 1, Simple);
        n.receive(0, 2, Ordered);
        n.receive(0, 3, Simple);
        n.receive(0, 4, Simple);
        assert_eq!(n.order.remove(3), Some((0, 3)));
        assert_eq!(n.order.remove(3), None);
        n.end(0, 1);
        assert_eq!(n.started, [1, 2]);
        // The running ORDERED command aborted: it ends like any other.
        n.end(0, 2);
        assert_eq!(n.started, [1, 2, 4]);
        // Everything waiting on a LU aborted at once (ABORT TASK SET, a reset).
        n.receive(0, 5, Ordered);
        n.receive(0, 6, Simple);
        n.receive(1 << 48, 7, Simple);
        let gone = n.order.remove_on(|lun| lun == 0);
        assert_eq!(gone, [(5, (0, 5)), (6, (0, 6))]);
        n.end(0, 4);
        assert_eq!(n.started, [1, 2, 4, 7]);
        assert!(n.order.is_idle());
    }
}
