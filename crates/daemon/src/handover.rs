//! Handing a LUN over from one store to the next (a live `lun modify`).
//!
//! Each LUN's requests pass through a [`Lane`], shared by the target versions that keep
//! the same store. A new store under a kept LUN gets a closed lane: its requests wait
//! there (queued, not failed) until every request still in flight on the old store's
//! lane has completed and the old store has been flushed, so no read through the new
//! store overtakes a write still at the old one or sitting in its write-behind cache.
//! The wait runs on a thread of its own; the connections never block.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use store_api::{BlockStore, Completion, IoRequest};

/// The requests of one LUN on one store: how many are in flight, and whether the store
/// serves yet.
pub struct Lane {
    in_flight: AtomicUsize,
    /// Set while a handover waits for this lane to be idle.
    watched: AtomicBool,
    /// Whether requests go to the store at once (the fast path reads only this).
    open: AtomicBool,
    state: Mutex<Waiting>,
    idle: Condvar,
}

type Queued = (Arc<dyn BlockStore>, IoRequest, Completion);

#[derive(Default)]
struct Waiting {
    open: bool,
    queued: Vec<Queued>,
}

/// One request counted in flight on a lane; dropping it (when the store has answered)
/// ends the count.
pub struct Ticket(Arc<Lane>);

impl Drop for Ticket {
    fn drop(&mut self) {
        let lane = &self.0;
        if lane.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && lane.watched.load(Ordering::SeqCst)
        {
            let _guard = lane.state.lock().unwrap_or_else(|e| e.into_inner());
            lane.idle.notify_all();
        }
    }
}

impl Lane {
    /// A lane whose store serves at once.
    pub fn open() -> Arc<Lane> {
        Self::with(true)
    }

    /// A lane whose store waits for [`Lane::release`].
    pub fn closed() -> Arc<Lane> {
        Self::with(false)
    }

    fn with(open: bool) -> Arc<Lane> {
        Arc::new(Lane {
            in_flight: AtomicUsize::new(0),
            watched: AtomicBool::new(false),
            open: AtomicBool::new(open),
            state: Mutex::new(Waiting {
                open,
                queued: Vec::new(),
            }),
            idle: Condvar::new(),
        })
    }

    /// Counts one request in flight until the ticket is dropped; take it before
    /// [`Lane::submit`] and drop it in the request's completion.
    pub fn enter(self: &Arc<Self>) -> Ticket {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Ticket(self.clone())
    }

    /// Sends `request` to `store` now, or once the lane opens.
    pub fn submit(&self, store: &Arc<dyn BlockStore>, request: IoRequest, done: Completion) {
        if !self.open.load(Ordering::Acquire) {
            let mut waiting = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !waiting.open {
                waiting.queued.push((store.clone(), request, done));
                return;
            }
        }
        store.submit(request, done);
    }

    /// Opens the lane: the requests that waited go to their store, in their order.
    pub fn release(&self) {
        let queued = {
            let mut waiting = self.state.lock().unwrap_or_else(|e| e.into_inner());
            waiting.open = true;
            self.open.store(true, Ordering::Release);
            std::mem::take(&mut waiting.queued)
        };
        for (store, request, done) in queued {
            store.submit(request, done);
        }
    }

    /// Blocks until no request is in flight on this lane.
    fn wait_idle(&self) {
        self.watched.store(true, Ordering::SeqCst);
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while self.in_flight.load(Ordering::SeqCst) != 0 {
            guard = self.idle.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Opens `new` once every request in flight on `old` has completed and `old_store` has
/// been flushed; waits on a thread of its own. `what` names the LUN in the log.
pub fn hand_over(old: Arc<Lane>, old_store: Arc<dyn BlockStore>, new: Arc<Lane>, what: String) {
    let opener = new.clone();
    let work = move || {
        old.wait_idle();
        let (tx, rx) = std::sync::mpsc::channel();
        old_store.submit(
            IoRequest::Flush,
            Completion::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        match rx.recv() {
            Ok(Ok(_)) => tracing::info!(lun = %what, store = %old_store.describe(),
                "old store idle and flushed; the new store serves"),
            // Holding the LUN back for good would hang its hosts; the error is the most
            // the administrator can be told.
            Ok(Err(err)) => tracing::error!(lun = %what, store = %old_store.describe(), %err,
                "old store failed its last flush; the new store serves anyway"),
            Err(_) => tracing::error!(lun = %what, store = %old_store.describe(),
                "old store dropped its last flush; the new store serves anyway"),
        }
        new.release();
    };
    if let Err(err) = std::thread::Builder::new()
        .name("lun-handover".into())
        .spawn(work)
    {
        tracing::error!(%err, "cannot start the store handover; the new store serves at once");
        opener.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;
    use store_api::{Capabilities, Geometry, IoReply, IoResult};

    /// One file seen by two clients: `Old` keeps its writes in a write-behind cache until
    /// a flush and answers them only when the test releases them; `New` reads the file.
    #[derive(Default)]
    struct File {
        bytes: Mutex<Vec<u8>>,
        /// What happened, in order.
        log: Mutex<Vec<&'static str>>,
    }

    struct Old {
        file: Arc<File>,
        cache: Mutex<Vec<(u64, bytes::Bytes)>>,
        held: Mutex<Vec<Completion>>,
    }

    struct New(Arc<File>);

    fn geometry() -> Geometry {
        Geometry {
            block_size: 512,
            num_blocks: 8,
        }
    }

    impl BlockStore for Old {
        fn geometry(&self) -> Geometry {
            geometry()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn describe(&self) -> String {
            "old".into()
        }
        fn submit(&self, req: IoRequest, done: Completion) {
            match req {
                IoRequest::Write { offset, data, .. } => {
                    self.cache.lock().unwrap().push((offset, data.to_bytes()));
                    self.held.lock().unwrap().push(done);
                }
                IoRequest::Flush => {
                    let mut bytes = self.file.bytes.lock().unwrap();
                    for (offset, data) in self.cache.lock().unwrap().drain(..) {
                        let at = offset as usize;
                        bytes[at..at + data.len()].copy_from_slice(&data);
                    }
                    self.file.log.lock().unwrap().push("old flushed");
                    drop(bytes);
                    done.complete(Ok(IoReply::Done));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    impl BlockStore for New {
        fn geometry(&self) -> Geometry {
            geometry()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn describe(&self) -> String {
            "new".into()
        }
        fn submit(&self, req: IoRequest, done: Completion) {
            let IoRequest::Read { offset, len } = req else {
                panic!("unexpected {req:?}");
            };
            self.0.log.lock().unwrap().push("new read");
            let bytes = self.0.bytes.lock().unwrap();
            let at = offset as usize;
            let data = bytes::Bytes::copy_from_slice(&bytes[at..at + len as usize]);
            done.complete(Ok(IoReply::Data(data)));
        }
    }

    fn send(
        lane: &Arc<Lane>,
        store: &Arc<dyn BlockStore>,
        req: IoRequest,
    ) -> mpsc::Receiver<IoResult> {
        let (tx, rx) = mpsc::channel();
        let ticket = lane.enter();
        lane.submit(
            store,
            req,
            Completion::new(move |result| {
                drop(ticket);
                let _ = tx.send(result);
            }),
        );
        rx
    }

    #[test]
    fn a_read_on_the_new_store_waits_for_the_old_writes_and_flush_and_sees_the_data() {
        let file = Arc::new(File {
            bytes: Mutex::new(vec![0; 4096]),
            log: Mutex::default(),
        });
        let old = Arc::new(Old {
            file: file.clone(),
            cache: Mutex::default(),
            held: Mutex::default(),
        });
        let old_store: Arc<dyn BlockStore> = old.clone();
        let new_store: Arc<dyn BlockStore> = Arc::new(New(file.clone()));
        let old_lane = Lane::open();
        let written = bytes::Bytes::from(vec![0xA5; 512]);
        let write = send(
            &old_lane,
            &old_store,
            IoRequest::Write {
                offset: 1024,
                data: written.clone().into(),
                fua: false,
            },
        );
        assert_eq!(
            old.held.lock().unwrap().len(),
            1,
            "the write is at the old store"
        );

        let new_lane = Lane::closed();
        hand_over(
            old_lane.clone(),
            old_store.clone(),
            new_lane.clone(),
            "t/0".into(),
        );
        let read = send(
            &new_lane,
            &new_store,
            IoRequest::Read {
                offset: 1024,
                len: 512,
            },
        );
        // Whatever the scheduling, the read cannot have been answered: the old write holds.
        std::thread::sleep(Duration::from_millis(200));
        assert!(read.try_recv().is_err(), "the read overtook the old write");
        assert!(
            file.log.lock().unwrap().is_empty(),
            "{:?}",
            file.log.lock().unwrap()
        );

        // The old write completes; the handover flushes the old store, then the read runs.
        let held = old.held.lock().unwrap().pop().unwrap();
        file.log.lock().unwrap().push("old write done");
        held.complete(Ok(IoReply::Done));
        assert!(matches!(write.recv().unwrap(), Ok(IoReply::Done)));
        let Ok(IoReply::Data(data)) = read.recv().unwrap() else {
            panic!("the read failed");
        };
        assert_eq!(data, written, "the read sees the acknowledged write");
        assert_eq!(
            *file.log.lock().unwrap(),
            ["old write done", "old flushed", "new read"]
        );

        // Once open, the new store serves at once.
        let again = send(
            &new_lane,
            &new_store,
            IoRequest::Read {
                offset: 0,
                len: 512,
            },
        );
        assert!(matches!(again.recv().unwrap(), Ok(IoReply::Data(d)) if d[..] == [0; 512]));
    }
}
