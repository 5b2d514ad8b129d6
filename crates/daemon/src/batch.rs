//! The writes (and reads) of one batch of a connection's input, sent to their stores
//! together.
//!
//! A connection works through what one socket read brought (a few 64 KiB writes, or
//! dozens of 4 KiB ones) before it sleeps again. Its writes to a store that joins writes
//! ([`BlockStore::joins_writes`]) wait here until the batch is worked through and then
//! go to each store in one [`BlockStore::submit_batch`], so the store can join adjacent
//! ones into one operation of its storage (the glfs store: one `glfs_pwritev_async`,
//! docs/performance.md, seventh round); reads wait likewise for a store that joins
//! reads ([`BlockStore::joins_reads`]: the glfs store, one `glfs_pread_async` for a run
//! of adjacent reads, eighth round); other stores get each request at once. Nothing
//! is reordered:
//! every other request sends the writes waiting before it first, and writes go in
//! their order. The connection sends what waits before it waits for anything itself
//! (the socket, the next input), so a write never waits on the initiator.

use crate::handover::Lane;
use std::sync::Arc;
use store_api::{BlockStore, Completion, IoRequest};

/// Requests waiting for the end of the batch, in their order.
#[derive(Default)]
pub struct Batch {
    waiting: Vec<Waiting>,
    /// Reused for each store's part of the batch.
    group: Vec<(IoRequest, Completion)>,
}

struct Waiting {
    lane: Arc<Lane>,
    store: Arc<dyn BlockStore>,
    request: IoRequest,
    done: Completion,
}

impl Batch {
    /// Sends `request` through `lane` to `store`: a write to a store that joins writes
    /// ([`BlockStore::joins_writes`]), or a read to one that joins reads
    /// ([`BlockStore::joins_reads`]), at the end of the batch ([`Batch::send`]),
    /// anything else at once, after the requests waiting before it.
    pub fn submit(
        &mut self,
        lane: &Arc<Lane>,
        store: &Arc<dyn BlockStore>,
        request: IoRequest,
        done: Completion,
    ) {
        let keep = match request {
            IoRequest::Write { .. } => store.joins_writes(),
            IoRequest::Read { .. } => store.joins_reads(),
            _ => false,
        };
        if keep {
            self.waiting.push(Waiting {
                lane: lane.clone(),
                store: store.clone(),
                request,
                done,
            });
        } else {
            self.send();
            lane.submit(store, request, done);
        }
    }

    /// Whether requests are waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Sends the waiting requests, in order: each run of them for one lane and store
    /// with one [`Lane::submit_batch`] (a single one with [`Lane::submit`]).
    pub fn send(&mut self) {
        let mut waiting = self.waiting.drain(..).peekable();
        while let Some(first) = waiting.next() {
            let same = |w: &Waiting| {
                Arc::ptr_eq(&w.lane, &first.lane)
                    && std::ptr::addr_eq(Arc::as_ptr(&w.store), Arc::as_ptr(&first.store))
            };
            if !waiting.peek().is_some_and(same) {
                first.lane.submit(&first.store, first.request, first.done);
                continue;
            }
            self.group.push((first.request, first.done));
            while let Some(next) = waiting.next_if(same) {
                self.group.push((next.request, next.done));
            }
            first.lane.submit_batch(&first.store, &mut self.group);
            // A store that broke the contract and kept some: they are dropped
            // (abandoned), never sent twice.
            self.group.clear();
        }
    }
}

impl Drop for Batch {
    /// Writes still waiting when the connection ends go to their stores as before.
    fn drop(&mut self) {
        self.send();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use store_api::{Capabilities, Geometry, IoReply, Segments};

    /// Records what reaches it: `submit` as one request, `submit_batch` as a list; says
    /// it joins writes when `.1`, reads when `.2`.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Vec<String>>>, bool, bool);

    fn joining() -> Arc<Recorder> {
        Arc::new(Recorder(Mutex::default(), true, false))
    }

    fn name(req: &IoRequest) -> String {
        match req {
            IoRequest::Write { offset, .. } => format!("w{offset}"),
            IoRequest::Read { offset, .. } => format!("r{offset}"),
            other => format!("{:?}", other.op()),
        }
    }

    impl BlockStore for Recorder {
        fn geometry(&self) -> Geometry {
            Geometry {
                block_size: 512,
                num_blocks: 64,
            }
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn describe(&self) -> String {
            "recorder".into()
        }
        fn submit(&self, req: IoRequest, done: Completion) {
            self.0.lock().unwrap().push(vec![name(&req)]);
            done.complete(Ok(IoReply::Done));
        }
        fn joins_writes(&self) -> bool {
            self.1
        }
        fn joins_reads(&self) -> bool {
            self.2
        }
        fn submit_batch(&self, batch: &mut Vec<(IoRequest, Completion)>) {
            let names = batch.iter().map(|(req, _)| name(req)).collect();
            self.0.lock().unwrap().push(names);
            for (_, done) in batch.drain(..) {
                done.complete(Ok(IoReply::Done));
            }
        }
    }

    fn write(offset: u64) -> IoRequest {
        IoRequest::Write {
            offset,
            data: Segments::from(vec![0u8; 512]),
            fua: false,
        }
    }

    fn completion(log: &Arc<Mutex<Vec<u64>>>, id: u64) -> Completion {
        let log = log.clone();
        Completion::new(move |r| {
            assert_eq!(r, Ok(IoReply::Done));
            log.lock().unwrap().push(id);
        })
    }

    #[test]
    fn writes_wait_for_the_end_of_the_batch_and_go_per_store_in_order() {
        let (a, b) = (joining(), joining());
        let (sa, sb): (Arc<dyn BlockStore>, Arc<dyn BlockStore>) = (a.clone(), b.clone());
        let lane = Lane::open();
        let other_lane = Lane::open();
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut batch = Batch::default();
        batch.submit(&lane, &sa, write(0), completion(&done, 0));
        batch.submit(&lane, &sa, write(512), completion(&done, 1));
        assert!(a.0.lock().unwrap().is_empty(), "writes wait");
        // A read sends the writes before it first (nothing overtakes them).
        let read = IoRequest::Read {
            offset: 0,
            len: 512,
        };
        batch.submit(&lane, &sa, read, completion(&done, 2));
        assert!(batch.is_empty());
        batch.submit(&lane, &sa, write(1024), completion(&done, 3));
        batch.submit(&other_lane, &sb, write(0), completion(&done, 4));
        batch.submit(&lane, &sa, write(1536), completion(&done, 5));
        batch.submit(&lane, &sa, write(2048), completion(&done, 6));
        batch.submit(&lane, &sa, write(2560), completion(&done, 7));
        assert_eq!(a.0.lock().unwrap().len(), 2);
        batch.send();
        assert!(batch.is_empty());
        assert_eq!(
            *a.0.lock().unwrap(),
            [
                vec!["w0", "w512"],
                vec!["r0"],
                vec!["w1024"],
                vec!["w1536", "w2048", "w2560"]
            ]
        );
        assert_eq!(*b.0.lock().unwrap(), [vec!["w0"]]);
        assert_eq!(*done.lock().unwrap(), [0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_closed_lane_keeps_a_batch_until_it_opens_and_a_dropped_batch_sends() {
        let a = joining();
        let sa: Arc<dyn BlockStore> = a.clone();
        let lane = Lane::closed();
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut batch = Batch::default();
        batch.submit(&lane, &sa, write(0), completion(&done, 0));
        batch.submit(&lane, &sa, write(512), completion(&done, 1));
        batch.send();
        assert!(a.0.lock().unwrap().is_empty(), "the lane holds them");
        lane.release();
        assert_eq!(*a.0.lock().unwrap(), [vec!["w0"], vec!["w512"]]);
        let open = Lane::open();
        batch.submit(&open, &sa, write(4096), completion(&done, 2));
        drop(batch);
        assert_eq!(a.0.lock().unwrap().last().unwrap(), &vec!["w4096"]);
        assert_eq!(*done.lock().unwrap(), [0, 1, 2]);
    }

    #[test]
    fn a_store_that_joins_no_writes_gets_each_at_once() {
        let plain = Arc::new(Recorder::default());
        let store: Arc<dyn BlockStore> = plain.clone();
        let lane = Lane::open();
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut batch = Batch::default();
        batch.submit(&lane, &store, write(0), completion(&done, 0));
        batch.submit(&lane, &store, write(512), completion(&done, 1));
        assert!(batch.is_empty());
        assert_eq!(*plain.0.lock().unwrap(), [vec!["w0"], vec!["w512"]]);
        assert_eq!(*done.lock().unwrap(), [0, 1]);
    }

    #[test]
    fn reads_wait_too_for_a_store_that_joins_reads_in_order_with_writes() {
        let both = Arc::new(Recorder(Mutex::default(), true, true));
        let store: Arc<dyn BlockStore> = both.clone();
        let lane = Lane::open();
        let done = Arc::new(Mutex::new(Vec::new()));
        let read = |offset| IoRequest::Read { offset, len: 512 };
        let mut batch = Batch::default();
        batch.submit(&lane, &store, read(0), completion(&done, 0));
        batch.submit(&lane, &store, read(512), completion(&done, 1));
        batch.submit(&lane, &store, write(1024), completion(&done, 2));
        batch.submit(&lane, &store, read(1024), completion(&done, 3));
        assert!(both.0.lock().unwrap().is_empty(), "reads and writes wait");
        // A flush is neither: it sends what waits before it, then goes alone.
        batch.submit(&lane, &store, IoRequest::Flush, completion(&done, 4));
        batch.submit(&lane, &store, read(2048), completion(&done, 5));
        batch.send();
        assert!(batch.is_empty());
        assert_eq!(
            *both.0.lock().unwrap(),
            [
                vec!["r0", "r512", "w1024", "r1024"],
                vec!["Flush"],
                vec!["r2048"]
            ]
        );
        assert_eq!(*done.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
        // A store that joins writes only gets each read at once.
        let writes_only = joining();
        let store: Arc<dyn BlockStore> = writes_only.clone();
        batch.submit(&lane, &store, read(0), completion(&done, 6));
        assert!(batch.is_empty());
        assert_eq!(*writes_only.0.lock().unwrap(), [vec!["r0"]]);
    }
}
