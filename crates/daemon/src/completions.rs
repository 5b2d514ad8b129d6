//! Store completions back to their connection task, without an allocation per command
//! and with at most one wake-up per batch.
//!
//! A command waiting on a store parks its continuation (`scsi::Pending`) in a slot of the
//! connection's [`Completions`] and gives the store a token completion
//! (`store_api::Completion::to_sink`) naming the slot. The store completes it on any
//! thread (a gfapi callback thread, the file store's workers, or inline): the slot's
//! continuation and the result join the ready list, and the connection task is woken only
//! if the list was empty, so a burst of completions costs one wake-up. The task swaps the
//! ready list for its own (empty) one and answers the whole batch in one socket write.
//! Slots, the free list and both ready lists keep their capacity, so in steady state
//! nothing is allocated.
//!
//! The continuation stays in its slot until the store lets go of the request (its
//! completion called or dropped), also when the command was aborted or the connection has
//! ended: what it holds (the LBA range interlock of a write) is released only once the
//! store is done with the buffers.

use crate::handover::Ticket;
use scsi::Pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use store_api::{Completion, CompletionSink, IoResult};
use tokio::sync::Notify;

/// A finished storage request of command `itt` (sequence number `seq`), or a part of
/// a read's data that came ahead of it.
pub struct IoDone {
    pub itt: u32,
    /// The command's sequence number on its connection: a completion that arrives after
    /// its command was answered (time limit) or aborted must not finish a newer command
    /// reusing `itt`.
    pub seq: u64,
    pub outcome: Outcome,
}

/// What came back from a store.
// Not boxed: the ready lists keep their capacity, so a completion allocates nothing; a
// box would cost an allocation per command to save some bytes per slot of the list.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// The request finished: the command goes on with its result.
    Finished { pending: Pending, result: IoResult },
    /// The next bytes of a read whose completion takes parts (already counted in the
    /// command's continuation, which stays parked): to be sent on at once.
    Part(bytes::Bytes),
}

/// What waits on a store, per connection.
#[derive(Default)]
pub struct Completions {
    state: Mutex<State>,
    wake: Notify,
    /// Bytes of read data in the ready list, and how many reads carry it: written under
    /// the state's lock, read without it ([`Completions::ready_data`] is asked after
    /// every input PDU, and the lock is contended by the stores' callback threads).
    ready_bytes: AtomicUsize,
    ready_reads: AtomicUsize,
    /// Completions in the ready list (of any kind), written and read as the two above.
    ready_all: AtomicUsize,
}

/// A parked command: its ITT, sequence number, continuation, and (for a request sent
/// through a LUN's lane) the ticket that counts it in flight there until the store answers.
type Parked = (u32, u64, Pending, Option<Ticket>);

#[derive(Default)]
struct State {
    /// Parked continuations by token; `None` for a free slot.
    slots: Vec<Option<Parked>>,
    /// Free slot numbers.
    free: Vec<usize>,
    /// Completed, waiting for the connection task.
    ready: Vec<IoDone>,
    /// The connection is gone: completions are dropped as they come.
    closed: bool,
}

impl Completions {
    pub fn new() -> Arc<Completions> {
        Arc::new(Completions::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks `pending` of command `itt`/`seq` and returns the completion the store gets.
    pub fn park(self: &Arc<Self>, itt: u32, seq: u64, pending: Pending) -> Completion {
        self.park_counted(itt, seq, pending, None)
    }

    /// As [`Completions::park`], holding `ticket` (the request counted in flight on its
    /// LUN's lane) until the store answers or lets go of the request. When the command
    /// can pass its read's data on in parts ([`Pending::takes_parts`]) the completion
    /// takes them too (`Completion::to_sink_in_parts`), and each part joins the ready
    /// list as [`Outcome::Part`], in the order the store gave them, before the completion.
    pub fn park_counted(
        self: &Arc<Self>,
        itt: u32,
        seq: u64,
        pending: Pending,
        ticket: Option<Ticket>,
    ) -> Completion {
        let parts = pending.takes_parts();
        let token = self.slot(itt, seq, pending, ticket);
        if parts {
            Completion::to_sink_in_parts(self.clone(), token)
        } else {
            Completion::to_sink(self.clone(), token)
        }
    }

    /// Parks a continuation in a free slot; returns the slot's token.
    fn slot(&self, itt: u32, seq: u64, pending: Pending, ticket: Option<Ticket>) -> u64 {
        let parked = (itt, seq, pending, ticket);
        let mut st = self.state();
        let slot = match st.free.pop() {
            Some(slot) => {
                st.slots[slot] = Some(parked);
                slot
            }
            None => {
                st.slots.push(Some(parked));
                st.slots.len() - 1
            }
        };
        slot as u64
    }

    /// Waits until completions are ready (returns at once if some came since the last
    /// [`Completions::take`]; may return with none ready).
    pub async fn ready(&self) {
        self.wake.notified().await
    }

    /// Moves the ready completions into `into` (which should be empty; its capacity is
    /// kept for the next batch), oldest first.
    pub fn take(&self, into: &mut Vec<IoDone>) {
        let mut st = self.state();
        self.ready_bytes.store(0, Ordering::Relaxed);
        self.ready_reads.store(0, Ordering::Relaxed);
        self.ready_all.store(0, Ordering::Relaxed);
        std::mem::swap(&mut st.ready, into);
    }

    /// How many ready completions carry read data, and how many bytes of it (so the
    /// connection task can send a large batch before it has worked through all of its
    /// input). Two relaxed loads, no lock: the counts change only under the state's lock
    /// (a completion adds, [`Completions::take`] clears), and a count read a moment early
    /// only moves a flush to the next PDU or the end of the batch.
    pub fn ready_data(&self) -> (usize, usize) {
        (
            self.ready_reads.load(Ordering::Relaxed),
            self.ready_bytes.load(Ordering::Relaxed),
        )
    }

    /// How many completions wait for the connection task, of any kind (a relaxed load, no
    /// lock, as [`Completions::ready_data`]).
    pub fn ready_count(&self) -> usize {
        self.ready_all.load(Ordering::Relaxed)
    }

    /// Whether any completion waits for the connection task (a relaxed load, no lock, as
    /// [`Completions::ready_data`]): the connection stops reading on in a round once
    /// answers are ready, so they are not held back behind more input.
    pub fn any_ready(&self) -> bool {
        self.ready_all.load(Ordering::Relaxed) > 0
    }

    /// The connection ended: from now on completions only release their slots.
    pub fn close(&self) {
        let ready = {
            let mut st = self.state();
            st.closed = true;
            std::mem::take(&mut st.ready)
        };
        drop(ready);
    }

    /// Continuations parked and not yet completed.
    pub fn parked(&self) -> usize {
        let st = self.state();
        st.slots.len() - st.free.len()
    }

    fn release(st: &mut State, token: u64) -> Option<Parked> {
        let slot = usize::try_from(token).ok()?;
        let parked = st.slots.get_mut(slot)?.take()?;
        st.free.push(slot);
        Some(parked)
    }
}

impl CompletionSink for Completions {
    fn complete(&self, token: u64, result: IoResult) {
        let mut st = self.state();
        let Some((itt, seq, pending, ticket)) = Self::release(&mut st, token) else {
            debug_assert!(false, "completion of an unknown token {token}");
            return;
        };
        // The store has answered: the request leaves its lane's count (a lock of the
        // lane's own, never taken while holding it, so no order to keep).
        drop(ticket);
        if st.closed {
            // Drop outside the lock: the result may hold read data.
            drop(st);
            drop((pending, result));
            return;
        }
        if let Ok(store_api::IoReply::Data(data)) = &result {
            self.ready_bytes.fetch_add(data.len(), Ordering::Relaxed);
            self.ready_reads.fetch_add(1, Ordering::Relaxed);
        }
        let outcome = Outcome::Finished { pending, result };
        self.push_ready(st, IoDone { itt, seq, outcome });
    }

    fn abandoned(&self, token: u64) {
        let parked = Self::release(&mut self.state(), token);
        drop(parked);
    }

    /// The next part of a read: counted in its parked continuation (which stays in its
    /// slot until the completion) and queued to be sent on.
    fn part(&self, token: u64, data: bytes::Bytes) {
        let mut st = self.state();
        let parked = usize::try_from(token)
            .ok()
            .and_then(|slot| st.slots.get_mut(slot))
            .and_then(Option::as_mut);
        let Some((itt, seq, pending, _)) = parked else {
            debug_assert!(false, "a part for an unknown token {token}");
            return;
        };
        pending.part(data.len());
        let (itt, seq) = (*itt, *seq);
        if st.closed {
            drop(st);
            drop(data);
            return;
        }
        self.ready_bytes.fetch_add(data.len(), Ordering::Relaxed);
        self.ready_reads.fetch_add(1, Ordering::Relaxed);
        let outcome = Outcome::Part(data);
        self.push_ready(st, IoDone { itt, seq, outcome });
    }
}

impl Completions {
    /// Queues `done` and wakes the connection task if the list was empty.
    fn push_ready(&self, mut st: MutexGuard<'_, State>, done: IoDone) {
        let first = st.ready.is_empty();
        st.ready.push(done);
        self.ready_all.fetch_add(1, Ordering::Relaxed);
        drop(st);
        if first {
            // One wake per batch: later completions find the list non-empty and the task
            // already woken (it takes them all).
            self.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store_api::{IoReply, Op, StoreError};

    /// A continuation to park: what the SCSI layer returns for a READ(10) of one block.
    fn pending() -> Pending {
        pending_for(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    }

    /// The continuation of `cdb` (a command that waits on the store).
    fn pending_for(cdb: &'static [u8]) -> Pending {
        let mut target = scsi::ScsiTarget::new();
        target.add_lun(
            0,
            scsi::LuConfig {
                vendor: "TEST".into(),
                product: "COMPLETIONS".into(),
                revision: "1".into(),
                serial: "1".into(),
                naa_id: [0x60; 16],
                geometry: store_api::Geometry {
                    block_size: 512,
                    num_blocks: 8,
                },
                capabilities: Default::default(),
                write_cache: true,
                read_only: false,
                soft_threshold: None,
            },
        );
        let cdb = bytes::Bytes::from_static(cdb);
        let data_out = if cdb[0] == 0x28 {
            Default::default()
        } else {
            bytes::Bytes::from_static(&[0u8; 512]).into()
        };
        match target.start(scsi::Command {
            nexus: 1,
            lun: 0,
            cdb,
            data_out,
            expected_len: 512,
        }) {
            scsi::Start::Io { pending, .. } => pending,
            _ => panic!("the command should wait on the store"),
        }
    }

    #[test]
    fn a_reads_parts_come_before_its_completion_and_are_counted_in_it() {
        let c = Completions::new();
        let done = c.park_counted(4, 40, pending(), None);
        assert!(done.takes_parts(), "a plain READ takes its data in parts");
        // A WRITE(10) of one block has no read data to pass on.
        let write = c.park_counted(5, 41, pending_for(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]), None);
        assert!(!write.takes_parts());
        let block = bytes::Bytes::from(vec![6u8; 512]);
        std::thread::spawn(move || {
            done.part(block.slice(..100));
            done.part(block.slice(100..300));
            done.complete(Ok(IoReply::Data(block.slice(300..))));
        })
        .join()
        .unwrap();
        assert_eq!(c.ready_data(), (3, 512), "parts count as ready read data");
        assert_eq!(
            c.parked(),
            1,
            "the read left its slot, the write is still parked"
        );
        let mut got = Vec::new();
        c.take(&mut got);
        let mut it = got.into_iter();
        for want in [100, 200] {
            match it.next().map(|d| (d.itt, d.seq, d.outcome)) {
                Some((4, 40, Outcome::Part(data))) => assert_eq!(data.len(), want),
                _ => panic!("expected a part of {want} bytes"),
            }
        }
        let Some(IoDone {
            outcome:
                Outcome::Finished {
                    pending: read,
                    result,
                },
            ..
        }) = it.next()
        else {
            panic!("expected the completion")
        };
        // The continuation knows 300 bytes went ahead: the rest finishes the READ.
        match read.finish(result) {
            scsi::Start::Done(r) => {
                assert_eq!(r.status, scsi::Status::Good);
                assert_eq!((r.data_in.len(), r.transfer_len), (212, 512));
            }
            _ => panic!("the READ should be done"),
        }
        drop(write);
        assert_eq!(c.parked(), 0);
        // After close, a part is dropped and the slot is released at the completion.
        let late = c.park_counted(6, 42, pending(), None);
        c.close();
        late.part(bytes::Bytes::from_static(b"late"));
        late.complete(Ok(IoReply::Data(bytes::Bytes::from(vec![0u8; 508]))));
        assert_eq!(c.parked(), 0);
        c.take(&mut Vec::new());
        assert_eq!(c.ready_data(), (0, 0));
    }

    #[tokio::test]
    async fn completions_come_back_in_order_with_one_wake_and_slots_are_reused() {
        let c = Completions::new();
        let a = c.park(1, 10, pending());
        let b = c.park(2, 11, pending());
        let d = c.park(3, 12, pending());
        assert_eq!(c.parked(), 3);
        // Completed on other threads, in another order than started.
        let threads = [(b, 0u8), (a, 1), (d, 2)].map(|(done, n)| {
            std::thread::spawn(move || {
                let r = if n == 2 {
                    Err(StoreError::new(Op::Read, store_api::ErrorKind::Io))
                } else {
                    Ok(IoReply::Done)
                };
                done.complete(r)
            })
        });
        for t in threads {
            t.join().unwrap();
        }
        c.ready().await;
        let mut got = Vec::new();
        c.take(&mut got);
        let mut tags: Vec<(u32, u64, bool)> = got
            .iter()
            .map(|d| match &d.outcome {
                Outcome::Finished { result, .. } => (d.itt, d.seq, result.is_ok()),
                Outcome::Part(_) => panic!("no part was sent"),
            })
            .collect();
        tags.sort();
        assert_eq!(tags, [(1, 10, true), (2, 11, true), (3, 12, false)]);
        assert_eq!(c.parked(), 0);
        // The three slots are free again: three more commands use them, no new slot.
        got.clear();
        let again: Vec<Completion> = (0..3)
            .map(|i| c.park(i, 20 + u64::from(i), pending()))
            .collect();
        assert_eq!(c.state().slots.len(), 3);
        drop(again);
        assert_eq!(c.parked(), 0, "dropped completions free their slots");
    }

    #[test]
    fn any_ready_says_whether_answers_wait_until_they_are_taken() {
        let c = Completions::new();
        let write = c.park(1, 1, pending());
        let failed = c.park(2, 2, pending());
        assert!(!c.any_ready(), "nothing completed yet");
        // A write's answer carries no read data, but is ready all the same.
        write.complete(Ok(IoReply::Done));
        assert!(c.any_ready());
        assert_eq!(c.ready_data(), (0, 0));
        let mut got = Vec::new();
        c.take(&mut got);
        assert_eq!(got.len(), 1);
        assert!(!c.any_ready(), "taken");
        failed.complete(Err(StoreError::new(Op::Read, store_api::ErrorKind::Io)));
        assert!(c.any_ready(), "an error is an answer too");
        c.take(&mut got);
        assert!(!c.any_ready());
    }

    #[test]
    fn ready_read_data_is_counted_until_taken() {
        let c = Completions::new();
        let reads: Vec<Completion> = (0..3).map(|i| c.park(i, u64::from(i), pending())).collect();
        let write = c.park(9, 9, pending());
        assert_eq!(c.ready_data(), (0, 0));
        for (n, done) in reads.into_iter().enumerate() {
            let data = bytes::Bytes::from(vec![0u8; 65536 * (n + 1)]);
            done.complete(Ok(IoReply::Data(data)));
        }
        // 64 KiB + 128 KiB + 192 KiB of read data; a write carries none.
        write.complete(Ok(IoReply::Done));
        assert_eq!(c.ready_data(), (3, 384 * 1024));
        let mut got = Vec::new();
        c.take(&mut got);
        assert_eq!(got.len(), 4);
        assert_eq!(c.ready_data(), (0, 0));
        // A failed read carries no data either.
        let failed = c.park(10, 10, pending());
        failed.complete(Err(StoreError::new(Op::Read, store_api::ErrorKind::Io)));
        assert_eq!(c.ready_data(), (0, 0));
    }

    #[test]
    fn after_close_completions_release_their_slots_and_keep_nothing() {
        let c = Completions::new();
        let done = c.park(5, 1, pending());
        c.close();
        done.complete(Ok(IoReply::Data(bytes::Bytes::from_static(b"late"))));
        assert_eq!(c.parked(), 0);
        let mut got = Vec::new();
        c.take(&mut got);
        assert!(got.is_empty());
    }
}
