//! Handing a LUN over from one store to the next (a live `lun modify`).
//!
//! Each LUN's requests pass through a [`Lane`], shared by the target versions that keep
//! the same store. A new store under a kept LUN gets a closed lane: its requests wait
//! there (queued, not failed) until every request still in flight on the old store's
//! lane has completed and the old store has been flushed, so no read through the new
//! store overtakes a write still at the old one or sitting in its write-behind cache.
//! The wait runs on a thread of its own; the connections never block.
//!
//! A connection may still hold the replaced target version (with the old store and lane)
//! when the handover starts. The old lane is retired first, then waited idle: a request
//! that enters it afterwards is counted on the new lane instead and goes to the new store
//! (queued until it opens), so nothing reaches the old store after its last flush. Entry
//! counts before it looks at the flag and the handover sets the flag before it looks at the
//! count (both sequentially consistent), so each such request is either waited for or
//! moved on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use store_api::{BlockStore, Completion, IoRequest};

/// The requests of one LUN on one store: how many are in flight, and whether the store
/// serves yet.
pub struct Lane {
    in_flight: AtomicUsize,
    /// Set while a handover waits for this lane to be idle.
    watched: AtomicBool,
    /// Whether requests go to the store at once (the fast path reads only this).
    open: AtomicBool,
    /// Set when a handover replaced this lane's store: requests enter `successor` instead.
    retired: AtomicBool,
    /// The lane and store that took over (set before `retired`).
    successor: OnceLock<(Arc<Lane>, Arc<dyn BlockStore>)>,
    state: Mutex<Waiting>,
    idle: Condvar,
    /// Whether `diversion` is set (the fast path reads only this).
    diverted: AtomicBool,
    /// Where the lane's requests go instead of the store they were sent to, while set
    /// ([`Lane::divert`]).
    diversion: Mutex<Option<Arc<dyn BlockStore>>>,
}

type Queued = (Arc<dyn BlockStore>, IoRequest, Completion);

#[derive(Default)]
struct Waiting {
    open: bool,
    queued: Vec<Queued>,
}

/// One request counted in flight on a lane; dropping it (when the store has answered)
/// ends the count.
pub struct Ticket {
    lane: Arc<Lane>,
    /// The store of the lane the request was moved on to, when the lane entered had been
    /// retired (None: the entered lane's own store serves it).
    moved_to: Option<Arc<dyn BlockStore>>,
}

impl Ticket {
    /// Where the request must go when the lane entered had been retired: the successor's
    /// lane and store. None: to the entered lane and the caller's store, as usual.
    pub fn moved_to(&self) -> Option<(&Arc<Lane>, &Arc<dyn BlockStore>)> {
        self.moved_to.as_ref().map(|store| (&self.lane, store))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.lane.leave();
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
            retired: AtomicBool::new(false),
            successor: OnceLock::new(),
            state: Mutex::new(Waiting {
                open,
                queued: Vec::new(),
            }),
            idle: Condvar::new(),
            diverted: AtomicBool::new(false),
            diversion: Mutex::new(None),
        })
    }

    /// Sends the lane's requests to `to` from now on, instead of the store each was sent
    /// to (a LUN being copied, `admin lun clone`: `to` is a `backstore::snapshot::Snapshot`
    /// in front of the lane's store); `None` ends that. Requests already at a store stay
    /// there.
    pub fn divert(&self, to: Option<Arc<dyn BlockStore>>) {
        let mut diversion = self.diversion.lock().unwrap_or_else(|e| e.into_inner());
        self.diverted.store(to.is_some(), Ordering::Release);
        *diversion = to;
    }

    /// Where a request sent to `store` goes: the diversion while one is set.
    fn route<'a>(
        &self,
        store: &'a Arc<dyn BlockStore>,
    ) -> std::borrow::Cow<'a, Arc<dyn BlockStore>> {
        if self.diverted.load(Ordering::Acquire) {
            let diversion = self.diversion.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(to) = &*diversion {
                return std::borrow::Cow::Owned(to.clone());
            }
        }
        std::borrow::Cow::Borrowed(store)
    }

    /// Counts one request in flight until the ticket is dropped; take it before
    /// [`Lane::submit`] and drop it in the request's completion. On a retired lane the
    /// request is counted on its successor instead, and must go where
    /// [`Ticket::moved_to`] says.
    pub fn enter(self: &Arc<Self>) -> Ticket {
        let mut lane = self.clone();
        let mut moved_to = None;
        loop {
            lane.in_flight.fetch_add(1, Ordering::SeqCst);
            if !lane.retired.load(Ordering::SeqCst) {
                return Ticket { lane, moved_to };
            }
            lane.leave();
            let (next, store) = lane
                .successor
                .get()
                .expect("a lane is retired only once its successor is set");
            moved_to = Some(store.clone());
            lane = next.clone();
        }
    }

    /// Ends one count of a request in flight, waking a handover waiting for idle.
    fn leave(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.watched.load(Ordering::SeqCst)
        {
            let _guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.idle.notify_all();
        }
    }

    /// From now on, requests entering this lane go to `lane` and `store`.
    fn retire(&self, lane: Arc<Lane>, store: Arc<dyn BlockStore>) {
        if self.successor.set((lane, store)).is_ok() {
            self.retired.store(true, Ordering::SeqCst);
        }
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
        self.route(store).submit(request, done);
    }

    /// Sends the requests of `batch` (left empty) to `store` with
    /// [`BlockStore::submit_batch`] now, or each once the lane opens.
    pub fn submit_batch(
        &self,
        store: &Arc<dyn BlockStore>,
        batch: &mut Vec<(IoRequest, Completion)>,
    ) {
        if !self.open.load(Ordering::Acquire) {
            let mut waiting = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !waiting.open {
                let queued = batch
                    .drain(..)
                    .map(|(request, done)| (store.clone(), request, done));
                waiting.queued.extend(queued);
                return;
            }
        }
        self.route(store).submit_batch(batch);
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
            self.route(&store).submit(request, done);
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

/// Retires `old` in favour of `new` (serving `new_store`), and opens `new` once every
/// request in flight on `old` has completed and `old_store` has been flushed; waits on a
/// thread of its own. `what` names the LUN in the log.
pub fn hand_over(
    old: Arc<Lane>,
    old_store: Arc<dyn BlockStore>,
    new: Arc<Lane>,
    new_store: Arc<dyn BlockStore>,
    what: String,
) {
    old.retire(new.clone(), new_store);
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

    impl File {
        /// A read of the file by one of the clients, logged as `what`.
        fn read(&self, what: &'static str, offset: u64, len: u32) -> IoReply {
            self.log.lock().unwrap().push(what);
            let bytes = self.bytes.lock().unwrap();
            let at = offset as usize;
            IoReply::Data(bytes::Bytes::copy_from_slice(&bytes[at..at + len as usize]))
        }
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
                IoRequest::Read { offset, len } => {
                    done.complete(Ok(self.file.read("old read", offset, len)));
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
            done.complete(Ok(self.0.read("new read", offset, len)));
        }
    }

    fn send(
        lane: &Arc<Lane>,
        store: &Arc<dyn BlockStore>,
        req: IoRequest,
    ) -> mpsc::Receiver<IoResult> {
        let (tx, rx) = mpsc::channel();
        let ticket = lane.enter();
        // Where the connections send it (see `Connection`'s storage requests).
        let (lane, store) = match ticket.moved_to() {
            Some((lane, store)) => (lane.clone(), store.clone()),
            None => (lane.clone(), store.clone()),
        };
        lane.submit(
            &store,
            req,
            Completion::new(move |result| {
                drop(ticket);
                let _ = tx.send(result);
            }),
        );
        rx
    }

    fn file_with(byte: u8) -> Arc<File> {
        Arc::new(File {
            bytes: Mutex::new(vec![byte; 4096]),
            log: Mutex::default(),
        })
    }

    fn old_store_on(file: &Arc<File>) -> Arc<Old> {
        Arc::new(Old {
            file: file.clone(),
            cache: Mutex::default(),
            held: Mutex::default(),
        })
    }

    /// A connection still holding the replaced target version enters the old lane with
    /// the old store after the handover began: the request is moved on to the new lane
    /// and store, served after the old store's flush, and never reaches the old store.
    #[test]
    fn a_request_entering_the_replaced_lane_goes_to_the_new_store_after_the_flush() {
        let file = file_with(0x11);
        let old_store: Arc<dyn BlockStore> = old_store_on(&file);
        let new_store: Arc<dyn BlockStore> = Arc::new(New(file.clone()));
        let old_lane = Lane::open();
        let new_lane = Lane::closed();
        hand_over(
            old_lane.clone(),
            old_store.clone(),
            new_lane.clone(),
            new_store.clone(),
            "t/0".into(),
        );
        let late = send(
            &old_lane,
            &old_store,
            IoRequest::Read {
                offset: 512,
                len: 512,
            },
        );
        let Ok(IoReply::Data(data)) = late.recv().unwrap() else {
            panic!("the late read failed");
        };
        assert_eq!(data[..], [0x11; 512]);
        assert_eq!(*file.log.lock().unwrap(), ["old flushed", "new read"]);
        assert_eq!(old_lane.in_flight.load(Ordering::SeqCst), 0);
        assert_eq!(new_lane.in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_read_on_the_new_store_waits_for_the_old_writes_and_flush_and_sees_the_data() {
        let file = file_with(0);
        let old = old_store_on(&file);
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
            new_store.clone(),
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

    /// A diverted lane sends what it gets, one by one, in a batch or released from a
    /// closed lane, to the diversion instead of the store it was sent to; ended, to that
    /// store again.
    #[test]
    fn a_diverted_lane_sends_its_requests_to_the_diversion_until_it_ends() {
        let memory = || -> Arc<dyn BlockStore> {
            Arc::new(backstore::MemoryStore::new(Geometry {
                block_size: 512,
                num_blocks: 8,
            }))
        };
        let write = |offset: u64| IoRequest::Write {
            offset,
            data: store_api::Segments::from(vec![0xAB; 512]),
            fua: false,
        };
        let byte_at = |store: &Arc<dyn BlockStore>, offset: u64| {
            let (tx, rx) = mpsc::channel();
            store.submit(
                IoRequest::Read { offset, len: 1 },
                Completion::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            match rx.recv().unwrap() {
                Ok(IoReply::Data(b)) => b[0],
                other => panic!("{other:?}"),
            }
        };
        let (own, other) = (memory(), memory());
        let lane = Lane::open();
        lane.divert(Some(other.clone()));
        assert_eq!(
            send(&lane, &own, write(0)).recv().unwrap(),
            Ok(IoReply::Done)
        );
        let (tx, rx) = mpsc::channel();
        let mut batch = vec![(
            write(512),
            Completion::new(move |r| {
                let _ = tx.send(r);
            }),
        )];
        lane.submit_batch(&own, &mut batch);
        assert_eq!(rx.recv().unwrap(), Ok(IoReply::Done));
        let closed = Lane::closed();
        closed.divert(Some(other.clone()));
        let queued = send(&closed, &own, write(1024));
        closed.release();
        assert_eq!(queued.recv().unwrap(), Ok(IoReply::Done));
        for offset in [0, 512, 1024] {
            assert_eq!((byte_at(&other, offset), byte_at(&own, offset)), (0xAB, 0));
        }
        lane.divert(None);
        assert_eq!(
            send(&lane, &own, write(2048)).recv().unwrap(),
            Ok(IoReply::Done)
        );
        assert_eq!((byte_at(&own, 2048), byte_at(&other, 2048)), (0xAB, 0));
    }
}
