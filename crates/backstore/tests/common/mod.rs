//! The block-store checks shared by `tests/suite.rs` (memory, file, glfs on the fake
//! libgfapi) and `tests/live.rs` (glfs on a live Gluster volume): one suite, written once
//! over the public API, run on every backend.
//!
//! A check takes an [`Open`] that makes a fresh store of [`SIZE`] bytes for a name; the
//! [`Fixture`] it returns tells, where the backend has one, how to read back the bytes
//! that reached the storage under the store.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use store_api::{
    BlockStore, Completion, ErrorKind, IoReply, IoRequest, IoResult, Op, Segments, StoreError,
};

/// Size of every store the checks open.
pub const SIZE: u64 = 8 << 20;

/// How long a completion may take (a live volume is slower than a local file).
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(60);

/// A store under test.
pub struct Fixture {
    /// The store.
    pub store: Arc<dyn BlockStore>,
    /// Reads back the whole file holding the store's bytes, behind the store (a local
    /// file, or the volume file through another mount); None for memory.
    pub backing: Option<Box<dyn Fn() -> Vec<u8>>>,
    /// Text that `describe()` must contain (the file the store is on).
    pub describes: Option<String>,
    /// Whatever must live as long as the store (a temporary directory, a remover of the
    /// volume file); dropped after it.
    pub keep: Option<Box<dyn std::any::Any>>,
    /// Opens a second store on the same backing, as another gateway would (a store of its
    /// own on the same file; for glfs on a `glfs_t` of its own); None: the store itself
    /// stands for the other gateway too (memory: one process's).
    pub another_gateway: Option<Box<dyn Fn() -> Arc<dyn BlockStore>>>,
}

impl Fixture {
    /// A fixture without backing read-back or description check.
    pub fn new(store: Arc<dyn BlockStore>) -> Fixture {
        Fixture {
            store,
            backing: None,
            describes: None,
            keep: None,
            another_gateway: None,
        }
    }

    /// The store of another gateway on the same backing (see `another_gateway`).
    pub fn another_gateway(&self) -> Arc<dyn BlockStore> {
        match &self.another_gateway {
            Some(open) => open(),
            None => self.store.clone(),
        }
    }

    /// The bytes behind the store. Panics for a backend without backing file.
    pub fn backing_bytes(&self) -> Vec<u8> {
        (self
            .backing
            .as_ref()
            .expect("this backend has no backing file"))()
    }
}

/// Opens a fresh store of [`SIZE`] bytes; the name tells the check it is for.
pub type Open<'a> = &'a dyn Fn(&str) -> Fixture;

/// A shared check.
pub type Check = fn(Open<'_>);

/// Every shared check, by name: what `tests/live.rs` runs in turn. `tests/suite.rs`
/// has one test per check and backend.
pub const CHECKS: &[(&str, Check)] = &[
    (
        "metadata_is_replaced_whole_and_read_back",
        metadata_is_replaced_whole_and_read_back,
    ),
    (
        "metadata_locks_exclude_other_gateways",
        metadata_locks_exclude_other_gateways,
    ),
    (
        "metadata_is_read_through_other_gateways_as_last_written",
        metadata_is_read_through_other_gateways_as_last_written,
    ),
    (
        "geometry_follows_the_create_size",
        geometry_follows_the_create_size,
    ),
    ("read_after_write", read_after_write),
    ("unaligned_and_large_io", unaligned_and_large_io),
    (
        "reads_taken_in_parts_arrive_whole_and_in_order",
        reads_taken_in_parts_arrive_whole_and_in_order,
    ),
    (
        "segmented_writes_land_in_order",
        segmented_writes_land_in_order,
    ),
    (
        "batched_writes_land_as_written",
        batched_writes_land_as_written,
    ),
    (
        "batched_reads_get_each_their_own_bytes",
        batched_reads_get_each_their_own_bytes,
    ),
    (
        "flush_and_fua_writes_complete",
        flush_and_fua_writes_complete,
    ),
    ("discard_reads_back_zeroes", discard_reads_back_zeroes),
    (
        "allocation_follows_writes_and_discards",
        allocation_follows_writes_and_discards,
    ),
    (
        "write_zeroes_zeroes_exactly_the_range",
        write_zeroes_zeroes_exactly_the_range,
    ),
    (
        "out_of_range_requests_are_rejected",
        out_of_range_requests_are_rejected,
    ),
    (
        "concurrent_submits_complete_exactly_once",
        concurrent_submits_complete_exactly_once,
    ),
    (
        "bytes_land_in_the_backing_file",
        bytes_land_in_the_backing_file,
    ),
    (
        "copies_within_and_between_stores",
        copies_within_and_between_stores,
    ),
    (
        "resize_grows_keeping_the_data_and_never_shrinks",
        resize_grows_keeping_the_data_and_never_shrinks,
    ),
    (
        "coherent_writes_are_read_through_other_gateways",
        coherent_writes_are_read_through_other_gateways,
    ),
];

/// The name prefix of fixtures that must be cache-coherent across gateways: a backend
/// opens a store (and its `another_gateway`) for such a name as a LUN shared by gateways
/// (glfs: coherent mode).
pub const COHERENT: &str = "coherent";

// ---- helpers ----

/// Submits and waits, checking the completion runs exactly once.
pub fn run(store: &dyn BlockStore, req: IoRequest) -> IoResult {
    let (tx, rx) = mpsc::channel();
    store.submit(req, Completion::new(move |r| tx.send(r).unwrap()));
    let result = rx
        .recv_timeout(COMPLETION_TIMEOUT)
        .unwrap_or_else(|_| panic!("completion not called within {COMPLETION_TIMEOUT:?}"));
    assert!(
        rx.recv_timeout(Duration::from_millis(1)).is_err(),
        "completion called twice"
    );
    result
}

/// Submits `requests` as one batch ([`BlockStore::submit_batch`]) and waits for every
/// completion, checking each runs exactly once; the results in the requests' order.
pub fn run_batch(store: &dyn BlockStore, requests: Vec<IoRequest>) -> Vec<IoResult> {
    let (tx, rx) = mpsc::channel();
    let n = requests.len();
    let mut batch: Vec<(IoRequest, Completion)> = requests
        .into_iter()
        .enumerate()
        .map(|(i, req)| {
            let tx = tx.clone();
            (req, Completion::new(move |r| tx.send((i, r)).unwrap()))
        })
        .collect();
    store.submit_batch(&mut batch);
    assert!(batch.is_empty(), "the store took the whole batch");
    drop(tx);
    let mut results: Vec<Option<IoResult>> = vec![None; n];
    for _ in 0..n {
        let (i, r) = rx
            .recv_timeout(COMPLETION_TIMEOUT)
            .unwrap_or_else(|_| panic!("a completion of the batch was not called"));
        assert!(results[i].is_none(), "completion {i} called twice");
        results[i] = Some(r);
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(1)).is_err(),
        "a completion called twice"
    );
    results.into_iter().map(Option::unwrap).collect()
}

/// A plain write of `data` at `offset`, as `segments` segments of about equal size.
pub fn write_in(offset: u64, data: &[u8], segments: usize, fua: bool) -> IoRequest {
    let mut parts = Segments::new();
    let step = data.len().div_ceil(segments.max(1)).max(1);
    for chunk in data.chunks(step) {
        parts.push(Bytes::copy_from_slice(chunk));
    }
    IoRequest::Write {
        offset,
        data: parts,
        fua,
    }
}

/// Reads `len` bytes at `offset`, which must succeed.
pub fn read(store: &dyn BlockStore, offset: u64, len: u32) -> Vec<u8> {
    match run(store, IoRequest::Read { offset, len }) {
        Ok(IoReply::Data(d)) => {
            assert_eq!(d.len(), len as usize, "read returned the wrong length");
            d.to_vec()
        }
        other => panic!("read {offset}+{len} failed: {other:?}"),
    }
}

/// What a completion that takes parts was given, in order.
#[derive(Debug)]
pub enum Given {
    Part(Bytes),
    Completed(IoResult),
    Abandoned,
}

/// A sink that records what a completion taking parts is given.
struct PartsSink(std::sync::Mutex<mpsc::Sender<Given>>);

impl store_api::CompletionSink for PartsSink {
    fn complete(&self, _token: u64, result: IoResult) {
        let _ = self.0.lock().unwrap().send(Given::Completed(result));
    }
    fn abandoned(&self, _token: u64) {
        let _ = self.0.lock().unwrap().send(Given::Abandoned);
    }
    fn part(&self, _token: u64, data: Bytes) {
        let _ = self.0.lock().unwrap().send(Given::Part(data));
    }
}

/// Reads `len` bytes at `offset` with a completion that takes the data in parts (as the
/// daemon's does for a plain READ); returns the parts in the order given, and the
/// result, checking that the completion ran exactly once, after every part.
pub fn read_taking_parts(store: &dyn BlockStore, offset: u64, len: u32) -> (Vec<Bytes>, IoResult) {
    let (tx, rx) = mpsc::channel();
    let sink = Arc::new(PartsSink(std::sync::Mutex::new(tx)));
    let done = Completion::to_sink_in_parts(sink, 0);
    assert!(done.takes_parts());
    store.submit(IoRequest::Read { offset, len }, done);
    let mut parts = Vec::new();
    loop {
        match rx.recv_timeout(COMPLETION_TIMEOUT) {
            Ok(Given::Part(data)) => parts.push(data),
            Ok(Given::Completed(result)) => {
                assert!(
                    rx.recv_timeout(Duration::from_millis(1)).is_err(),
                    "nothing after the completion"
                );
                return (parts, result);
            }
            Ok(Given::Abandoned) => panic!("the completion was dropped without a result"),
            Err(_) => panic!("completion not called within {COMPLETION_TIMEOUT:?}"),
        }
    }
}

/// Writes `data` at `offset`, which must succeed.
pub fn write(store: &dyn BlockStore, offset: u64, data: &[u8]) {
    let r = run(
        store,
        IoRequest::Write {
            offset,
            data: Bytes::copy_from_slice(data).into(),
            fua: false,
        },
    );
    assert_eq!(r, Ok(IoReply::Done), "write {offset}+{}", data.len());
}

/// `fence_data` between two gateways' stores `a` and `b` of one shared image (on
/// Gluster: two mounts, a volume with `locks.mandatory-locking`): while `a` holds the
/// fence, `b`'s reads and writes fail with `ErrorKind::Fenced` and change nothing, `a`'s
/// own go through, and `b` cannot take the fence; once `a`'s guard drops, `b` writes and
/// fences `a` in turn. No write through `a` follows `b`'s refused try while `a` holds it:
/// on Gluster 10.3 that try fails `a`'s writes too (docs/fencing.md).
pub fn data_fence_fences(a: &dyn BlockStore, b: &dyn BlockStore) {
    use store_api::{LockError, LockOwner, LockWait, Op, DATA_FENCE};
    let (gw_a, gw_b) = (
        LockOwner::new("gw-a").unwrap(),
        LockOwner::new("gw-b").unwrap(),
    );
    let write_req = |seed| IoRequest::Write {
        offset: 0,
        data: Bytes::from(pattern(4096, seed)).into(),
        fua: false,
    };
    let fenced = |r: IoResult| r.err().map(|e| (e.op, e.kind));
    write(b, 0, &pattern(4096, 1));

    let held = a.fence_data(&gw_a, LockWait::NoWait).unwrap();
    assert_eq!((held.name(), held.owner()), (DATA_FENCE, &gw_a));
    assert_eq!(
        fenced(run(b, write_req(2))),
        Some((Op::Write, ErrorKind::Fenced))
    );
    let b_reads = run(
        b,
        IoRequest::Read {
            offset: 0,
            len: 4096,
        },
    );
    assert_eq!(fenced(b_reads), Some((Op::Read, ErrorKind::Fenced)));
    assert_eq!(
        read(a, 0, 4096),
        pattern(4096, 1),
        "b's write changed nothing"
    );
    write(a, 4096, &pattern(4096, 3));
    assert!(matches!(
        b.fence_data(&gw_b, LockWait::NoWait),
        Err(LockError::Contended { .. })
    ));

    drop(held);
    write(b, 0, &pattern(4096, 4));
    assert_eq!(read(a, 0, 4096), pattern(4096, 4));
    assert_eq!(read(b, 4096, 4096), pattern(4096, 3));
    let by_b = b.fence_data(&gw_b, LockWait::NoWait).unwrap();
    assert_eq!(
        fenced(run(a, write_req(5))),
        Some((Op::Write, ErrorKind::Fenced))
    );
    drop(by_b);
    write(a, 0, &pattern(4096, 6));
    assert_eq!(read(b, 0, 4096), pattern(4096, 6));
}

/// `clear_lock` between two gateways' stores `a` and `b` of one shared image: `a` holds
/// the metadata lock `alua-active` and the data fence and then does nothing (a stalled
/// gateway whose connection lives); `b` cannot take either until it clears them, then
/// takes both, and from then on `a`'s reads and writes fail as fenced and change
/// nothing, also after `a` lets go of what it no longer holds (docs/fencing.md).
pub fn a_stalled_holders_locks_are_cleared_and_taken(a: &dyn BlockStore, b: &dyn BlockStore) {
    use store_api::{LockError, LockMode, LockOwner, LockWait, Op, DATA_FENCE};
    let (gw_a, gw_b) = (
        LockOwner::new("gw-a").unwrap(),
        LockOwner::new("gw-b").unwrap(),
    );
    let fenced = |r: IoResult| r.err().map(|e| (e.op, e.kind));
    // On a thread of its own, as the daemon's refresh thread takes it: gfapi's lock
    // owner is per thread, and the data path's requests must not carry this one
    // (docs/fencing.md).
    let elect = |s: &dyn BlockStore, gw: &LockOwner| {
        std::thread::scope(|t| {
            t.spawn(|| s.lock_metadata("alua-active", gw, LockMode::Exclusive, LockWait::NoWait))
                .join()
                .unwrap()
        })
    };
    // Let go on a thread of its own too: unlocking sets the thread's lock owner as well.
    let let_go = |lock: store_api::MetadataLock| {
        std::thread::scope(|t| {
            t.spawn(move || drop(lock));
        })
    };
    write(a, 0, &pattern(4096, 1));
    let a_election = elect(a, &gw_a).unwrap();
    let a_fence = a.fence_data(&gw_a, LockWait::NoWait).unwrap();
    write(a, 0, &pattern(4096, 2));
    assert!(matches!(elect(b, &gw_b), Err(LockError::Contended { .. })));
    // Nothing held on a range clears nothing.
    assert_eq!(b.clear_lock("nothing-held"), Ok(false));

    assert_eq!(b.clear_lock("alua-active"), Ok(true));
    let b_election = elect(b, &gw_b).unwrap();
    assert_eq!(b.clear_lock(DATA_FENCE), Ok(true));
    let b_fence = b.fence_data(&gw_b, LockWait::NoWait).unwrap();
    write(b, 4096, &pattern(4096, 3));

    // `a` resumes: refused, and nothing it sends lands.
    let a_write = run(
        a,
        IoRequest::Write {
            offset: 0,
            data: Bytes::from(pattern(4096, 4)).into(),
            fua: false,
        },
    );
    assert_eq!(fenced(a_write), Some((Op::Write, ErrorKind::Fenced)));
    let a_read = run(
        a,
        IoRequest::Read {
            offset: 0,
            len: 4096,
        },
    );
    assert_eq!(fenced(a_read), Some((Op::Read, ErrorKind::Fenced)));
    assert!(matches!(elect(a, &gw_a), Err(LockError::Contended { .. })));
    // `a` steps down: letting go of its cleared locks frees nothing of `b`'s.
    drop(a_fence);
    let_go(a_election);

    let a_write = run(
        a,
        IoRequest::Write {
            offset: 0,
            data: Bytes::from(pattern(4096, 5)).into(),
            fua: false,
        },
    );
    assert_eq!(fenced(a_write), Some((Op::Write, ErrorKind::Fenced)));
    assert_eq!(
        read(b, 0, 4096),
        pattern(4096, 2),
        "a's last write before the stall"
    );
    assert_eq!(read(b, 4096, 4096), pattern(4096, 3));
    drop(b_fence);
    let_go(b_election);
    write(a, 0, &pattern(4096, 6));
    assert_eq!(read(b, 0, 4096), pattern(4096, 6));
}

/// `take_lock_over` between three gateways' stores of one shared image: `a` holds the
/// metadata lock `alua-active` and the data fence and stalls; `c` (any client without
/// the fence: `a` itself once resumed, its lock gone) writes all along from a thread of
/// its own; `b` takes both over. Not one of `c`'s writes lands, also those that reach the
/// volume at the very moment of the clearing: `b`'s request waited for the fence before
/// `a`'s lock was cleared and holds it from that moment. Then what the former takeover
/// (clear, then take) leaves open: between `b`'s clearing and its new lock, `c`'s write
/// lands (docs/fencing.md, measured on Gluster 10.3: 1 to 11 writes of four writers per
/// takeover, none with the waiting request).
pub fn a_stalled_holders_fence_is_taken_over_with_no_gap(
    a: &dyn BlockStore,
    b: &dyn BlockStore,
    c: &dyn BlockStore,
) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;
    use store_api::{LockError, LockMode, LockOwner, LockWait, Op, DATA_FENCE};
    let (gw_a, gw_b) = (
        LockOwner::new("gw-a").unwrap(),
        LockOwner::new("gw-b").unwrap(),
    );
    let wait = Duration::from_secs(10);
    let write_req = |seed| IoRequest::Write {
        offset: 0,
        data: Bytes::from(pattern(4096, seed)).into(),
        fua: false,
    };
    // Metadata locks on threads of their own (gfapi's lock owner is per thread).
    let on_thread = |f: &(dyn Fn() -> Result<store_api::MetadataLock, LockError> + Sync)| {
        std::thread::scope(|t| t.spawn(f).join().unwrap())
    };
    write(a, 0, &pattern(4096, 1));
    let a_election =
        on_thread(&|| a.lock_metadata("alua-active", &gw_a, LockMode::Exclusive, LockWait::NoWait))
            .unwrap();
    let a_fence = a.fence_data(&gw_a, LockWait::NoWait).unwrap();
    write(a, 0, &pattern(4096, 2));
    // Nothing in the way: granted at once.
    let free = on_thread(&|| b.take_lock_over("nothing-held", &gw_b, wait)).unwrap();
    // Let go on a thread of its own too: closing an fd with a lock owner sets the
    // thread's lock owner as well, and this thread's writes must not carry it.
    std::thread::scope(|t| {
        t.spawn(move || drop(free));
    });

    let b_election = on_thread(&|| b.take_lock_over("alua-active", &gw_b, wait)).unwrap();
    let (stop, sent, landed) = (
        AtomicBool::new(false),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let b_fence = std::thread::scope(|t| {
        t.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let r = run(c, write_req(9));
                sent.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(_) => {
                        landed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => assert_eq!((e.op, e.kind), (Op::Write, ErrorKind::Fenced)),
                }
            }
        });
        while sent.load(Ordering::Relaxed) < 3 {
            std::thread::yield_now();
        }
        let fence = b.take_lock_over(DATA_FENCE, &gw_b, wait);
        let at_take = sent.load(Ordering::Relaxed);
        while sent.load(Ordering::Relaxed) < at_take + 3 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        fence
    })
    .unwrap();
    assert_eq!(landed.load(Ordering::Relaxed), 0, "a write of c's landed");
    // `a` resumes: refused.
    let r = run(a, write_req(4));
    assert_eq!(
        r.err().map(|e| (e.op, e.kind)),
        Some((Op::Write, ErrorKind::Fenced))
    );
    write(b, 4096, &pattern(4096, 3));
    assert_eq!(
        read(b, 0, 4096),
        pattern(4096, 2),
        "a's last write before the stall"
    );

    // The former takeover: clearing, then taking. `a` (standing in for a standby now)
    // clears `b`'s fence, and before it takes it, `c`'s write lands.
    assert_eq!(a.clear_lock(DATA_FENCE), Ok(true));
    assert!(
        run(c, write_req(5)).is_ok(),
        "the gap between clearing and taking"
    );
    assert_eq!(read(c, 0, 4096), pattern(4096, 5));
    drop(b_fence);
    drop(a_fence);
    std::thread::scope(|t| {
        t.spawn(move || drop((a_election, b_election)));
    });
}

/// A pattern that differs at every byte position and between seeds.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// The message of a glfs store that cannot open `spec` because the file is missing
/// and no create size was given.
pub fn missing_file_message(spec: &str) -> String {
    format!(
        "cannot open glfs {spec}: glfs_open failed: No such file or directory (os error 2) \
         (give a create size to create it)"
    )
}

// ---- the checks ----

/// `IoRequest::Copy` inside one store and from another store of the same kind, inside the
/// storage (copy_file_range, glfs_copy_file_range, memcpy); a source the store cannot
/// copy from is `Unsupported` (the SCSI layer then reads and writes).
pub fn copies_within_and_between_stores(open: Open<'_>) {
    let a = open("copy-a");
    let b = open("copy-b");
    let (a, b) = (&*a.store, &*b.store);
    let foreign = IoRequest::Copy {
        source: store_api::CopySource::new(Arc::new(7u32)),
        source_offset: 0,
        offset: 0,
        len: 512,
    };
    if a.copy_source().is_none() {
        // A store that copies only by reads and writes (glfs without copy-offload, the
        // default on live Gluster): no copy request is carried out.
        assert_eq!(
            run(b, foreign),
            Err(StoreError::new(Op::Copy, ErrorKind::Unsupported))
        );
        return;
    }
    let data = pattern(3 << 20, 41);
    write(a, 4096, &data);
    let copy = |dst: &dyn BlockStore, src: &dyn BlockStore, from: u64, to: u64, len: u64| {
        let source = src
            .copy_source()
            .expect("this store copies inside the storage");
        run(
            dst,
            IoRequest::Copy {
                source,
                source_offset: from,
                offset: to,
                len,
            },
        )
    };
    // Within one store, to ranges apart.
    assert_eq!(copy(a, a, 4096, 4 << 20, 3 << 20), Ok(IoReply::Done));
    assert_eq!(read(a, 4 << 20, 3 << 20), data);
    // From another store, at an unaligned offset.
    assert_eq!(copy(b, a, 4096 + 512, 1000, 1 << 20), Ok(IoReply::Done));
    assert_eq!(read(b, 1000, 1 << 20), &data[512..512 + (1 << 20)]);
    assert_eq!(read(b, 0, 1000), vec![0u8; 1000], "nothing before the copy");
    // Outside either store.
    let past = copy(b, a, SIZE - 512, 0, 1024).unwrap_err();
    assert!(
        matches!(past.kind, ErrorKind::OutOfRange | ErrorKind::ShortTransfer),
        "{past:?}"
    );
    assert_eq!(
        copy(b, a, 0, SIZE - 512, 1024).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    // A source of another kind.
    assert_eq!(
        run(b, foreign),
        Err(StoreError::new(Op::Copy, ErrorKind::Unsupported))
    );
}

/// `resize` grows the store: the data stays, the new blocks read as zeroes and take
/// writes, requests past the new end are still refused; shrinking and a size that is not
/// whole blocks are refused and change nothing.
pub fn resize_grows_keeping_the_data_and_never_shrinks(open: Open<'_>) {
    let f = open("resize");
    let data = pattern(4096, 7);
    write(f.store.as_ref(), SIZE - 4096, &data);
    let bigger = SIZE + (3 << 20);
    let g = f.store.resize(bigger).expect("grow");
    assert_eq!((g.block_size, g.num_blocks), (512, bigger / 512));
    assert_eq!(f.store.geometry(), g);
    assert_eq!(read(f.store.as_ref(), SIZE - 4096, 4096), data);
    assert_eq!(read(f.store.as_ref(), SIZE, 8192), vec![0u8; 8192]);
    write(f.store.as_ref(), bigger - 512, &pattern(512, 9));
    assert_eq!(read(f.store.as_ref(), bigger - 512, 512), pattern(512, 9));
    let past = run(
        f.store.as_ref(),
        IoRequest::Read {
            offset: bigger,
            len: 512,
        },
    );
    assert_eq!(past.unwrap_err().kind, ErrorKind::OutOfRange);
    for bad in [SIZE, bigger - 512 + 1] {
        let err = f.store.resize(bad).unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutOfRange, "resize to {bad}");
    }
    assert_eq!(f.store.geometry().num_blocks, bigger / 512);
    // Growing to the same size is allowed and changes nothing.
    assert_eq!(f.store.resize(bigger).unwrap(), g);
}

/// The geometry is 512-byte blocks of the create size; `describe` names the file.
pub fn geometry_follows_the_create_size(open: Open<'_>) {
    let f = open("geometry");
    let g = f.store.geometry();
    assert_eq!((g.block_size, g.num_blocks), (512, SIZE / 512));
    if let Some(name) = &f.describes {
        let d = f.store.describe();
        assert!(d.contains(name.as_str()), "{d:?} does not name {name:?}");
    }
}

/// Reads see earlier writes, and nothing else changed.
pub fn read_after_write(open: Open<'_>) {
    let f = open("raw");
    let s = &*f.store;
    assert_eq!(
        read(s, 8192, 4096),
        vec![0; 4096],
        "fresh store reads zeroes"
    );
    let data = pattern(4096, 1);
    write(s, 8192, &data);
    assert_eq!(read(s, 8192, 4096), data);
    assert_eq!(read(s, 4096, 4096), vec![0; 4096], "neighbour untouched");
    // Overwrite half of it.
    let second = pattern(2048, 2);
    write(s, 9216, &second);
    let mut expect = data.clone();
    expect[1024..3072].copy_from_slice(&second);
    assert_eq!(read(s, 8192, 4096), expect);
}

/// Byte-granular and multi-MiB I/O at odd offsets, up to the last byte.
pub fn unaligned_and_large_io(open: Open<'_>) {
    let f = open("unaligned");
    let s = &*f.store;
    let small = pattern(1000, 3);
    write(s, 777, &small);
    let got = read(s, 0, 3000);
    assert_eq!(&got[777..1777], &small[..]);
    assert!(got[..777].iter().chain(&got[1777..]).all(|&b| b == 0));
    // 3 MiB + 5 bytes crossing several 1 MiB boundaries, at an odd offset.
    let big = pattern((3 << 20) + 5, 4);
    write(s, 12345, &big);
    assert_eq!(read(s, 12345, big.len() as u32), big);
    // Last byte of the store.
    write(s, SIZE - 1, &[0xAB]);
    assert_eq!(read(s, SIZE - 512, 512)[511], 0xAB);
}

/// A read whose completion takes parts (`Completion::to_sink_in_parts`, what the daemon
/// gives a plain READ) gets exactly the bytes asked for, in order, however the store
/// cuts it: the parts from the read's offset on, each non-empty, then the rest (at least
/// a byte) as the completion's data. A store may give no parts at all.
pub fn reads_taken_in_parts_arrive_whole_and_in_order(open: Open<'_>) {
    let f = open("parts");
    let s = &*f.store;
    let data = pattern((1 << 20) + 5000, 14);
    write(s, 3000, &data);
    for (offset, len) in [
        (3000, data.len() as u32),
        (0, 4 << 20),
        (1 << 20, 64 << 10),
        (SIZE - (1 << 20) - 512, (1 << 20) + 512),
    ] {
        let (parts, result) = read_taking_parts(s, offset, len);
        let rest = match result {
            Ok(IoReply::Data(rest)) => rest,
            other => panic!("read {offset}+{len} in parts failed: {other:?}"),
        };
        assert!(!rest.is_empty(), "the completion carries at least a byte");
        assert!(parts.iter().all(|p| !p.is_empty()), "no empty part");
        let mut got: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        got.extend_from_slice(&rest);
        assert_eq!(got.len(), len as usize, "read {offset}+{len}");
        if offset == 3000 {
            assert!(got == data, "the bytes written, in order");
        }
        assert!(
            got == read(s, offset, len),
            "read {offset}+{len} taken in parts"
        );
    }
    // Out of range: refused as a whole read is, with no part.
    let (parts, result) = read_taking_parts(s, SIZE - 512, 1 << 20);
    assert!(parts.is_empty());
    assert_eq!(result.unwrap_err().kind, ErrorKind::OutOfRange);
}

/// A write given as several segments (the PDUs a write arrived in, handed over without
/// being gathered) lands as one write of their bytes in order: the five segments of a
/// 1 MiB write from an initiator (64 KiB immediate, four 256 KiB Data-Out), more segments
/// than are kept inline, odd sizes at an odd offset, and with FUA.
pub fn segmented_writes_land_in_order(open: Open<'_>) {
    let f = open("segmented");
    let s = &*f.store;
    let segmented = |data: &[u8], cuts: &[usize]| {
        let all = Bytes::copy_from_slice(data);
        let mut out = Segments::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([data.len()].iter()) {
            out.push(all.slice(at..cut));
            at = cut;
        }
        out
    };
    let mib = pattern(1 << 20, 11);
    let cuts = [64 << 10, 320 << 10, 576 << 10, 832 << 10];
    let data = segmented(&mib, &cuts);
    assert_eq!(data.parts().len(), 5);
    let write = |offset: u64, data: Segments, fua: bool| {
        assert_eq!(
            run(s, IoRequest::Write { offset, data, fua }),
            Ok(IoReply::Done)
        );
    };
    write(1 << 20, data, false);
    assert_eq!(read(s, 1 << 20, 1 << 20), mib);
    // 40 segments of odd sizes at an odd offset, then FUA.
    let odd = pattern(40 * 1001, 12);
    let cuts: Vec<usize> = (1..40).map(|i| i * 1001).collect();
    write(3 * (1 << 20) + 3, segmented(&odd, &cuts), false);
    let fua = pattern(3 * 4096, 13);
    write(5 << 20, segmented(&fua, &[4096, 8192]), true);
    let got = read(s, 3 * (1 << 20), 40 * 1001 + 6);
    assert_eq!(&got[3..3 + odd.len()], &odd[..]);
    assert_eq!(got[..3], [0; 3]);
    assert_eq!(got[3 + odd.len()..], [0; 3]);
    assert_eq!(read(s, 5 << 20, fua.len() as u32), fua);
    assert_eq!(
        read(s, 2 << 20, 4096),
        vec![0; 4096],
        "after the 1 MiB untouched"
    );
    if let Some(backing) = &f.backing {
        let bytes = backing();
        assert_eq!(&bytes[1 << 20..2 << 20], &mib[..]);
        assert_eq!(&bytes[(5 << 20)..(5 << 20) + fua.len()], &fua[..]);
    }
}

/// FUA writes and flushes complete and keep the data.
/// A batch of writes ([`BlockStore::submit_batch`], what the daemon hands a store for
/// one socket read) lands as the same writes one by one would, whatever a store joins:
/// adjacent writes, a gap, adjacent writes with another FUA, segmented writes, a read
/// and a refused write between writes, and a run of adjacent writes longer than any
/// joined write may be (20 x 64 KiB). Every request gets its own result; the data reads
/// back as written, and reaches the backing file.
pub fn batched_writes_land_as_written(open: Open<'_>) {
    const K: u64 = 1024;
    let f = open("batched");
    let s = &*f.store;
    // What the first 2 MiB must hold afterwards.
    let mut expected = vec![0u8; 2 << 20];
    let mut requests = Vec::new();
    let mut outcome = Vec::new();
    let mut add = |offset: u64, len: usize, segments: usize, fua: bool| {
        let data = pattern(len, (offset / 512) as u8 ^ 0x5a);
        expected[offset as usize..offset as usize + len].copy_from_slice(&data);
        requests.push(write_in(offset, &data, segments, fua));
        outcome.push(Ok(IoReply::Done));
    };
    // adjacent, one of them in three segments
    add(0, 4096, 1, false);
    add(4 * K, 4096, 1, false);
    add(8 * K, 8192, 3, false);
    // a gap of 4 KiB, then adjacent writes of which the second and third are FUA
    add(20 * K, 4096, 1, false);
    add(24 * K, 4096, 1, true);
    add(28 * K, 4096, 2, true);
    // a read (at 1.5 MiB, which no write here touches) between adjacent writes
    add(32 * K, 4096, 1, false);
    requests.push(IoRequest::Read {
        offset: 3 << 19,
        len: 4096,
    });
    outcome.push(Ok(IoReply::Data(Bytes::from(vec![0u8; 4096]))));
    let mut add = |offset: u64, len: usize, segments: usize, fua: bool| {
        let data = pattern(len, (offset / 512) as u8 ^ 0xa5);
        expected[offset as usize..offset as usize + len].copy_from_slice(&data);
        requests.push(write_in(offset, &data, segments, fua));
        outcome.push(Ok(IoReply::Done));
    };
    add(36 * K, 4096, 1, false);
    // 1.25 MiB of adjacent 64 KiB writes
    for i in 0..20 {
        add(64 * K + i * 64 * K, 65536, 1 + (i as usize % 3), false);
    }
    // a write past the end between adjacent ones fails alone
    requests.push(write_in(SIZE - 2048, &[1; 4096], 1, false));
    outcome.push(Err(StoreError::new(Op::Write, ErrorKind::OutOfRange)));
    let mut add = |offset: u64, len: usize| {
        let data = pattern(len, 77);
        expected[offset as usize..offset as usize + len].copy_from_slice(&data);
        requests.push(write_in(offset, &data, 1, false));
        outcome.push(Ok(IoReply::Done));
    };
    add(64 * K + 20 * 64 * K, 4096);
    let results = run_batch(s, requests);
    for (i, (got, want)) in results.iter().zip(&outcome).enumerate() {
        match (got, want) {
            (Err(got), Err(want)) => assert_eq!(got.kind, want.kind, "request {i}"),
            _ => assert_eq!(got, want, "request {i}"),
        }
    }
    assert!(
        read(s, 0, 2 << 20) == expected,
        "the batch reads back as written"
    );
    assert_eq!(run(s, IoRequest::Flush), Ok(IoReply::Done));
    if f.backing.is_some() {
        assert!(
            f.backing_bytes()[..2 << 20] == expected[..],
            "the batch reached the backing file"
        );
    }
}

/// A batch of reads ([`BlockStore::submit_batch`]; the daemon hands a store that joins
/// reads those of one socket read) answers each read with its own bytes, whatever a
/// store joins: adjacent reads of several sizes, a gap, a write between adjacent reads,
/// a read past the end between adjacent ones (it fails
/// alone), and a run of adjacent 64 KiB reads longer than any joined read may be
/// (12 x 64 KiB).
pub fn batched_reads_get_each_their_own_bytes(open: Open<'_>) {
    const K: u64 = 1024;
    let f = open("batched-reads");
    let s = &*f.store;
    let content = pattern(2 << 20, 0x6b);
    assert_eq!(run(s, write_in(0, &content, 4, false)), Ok(IoReply::Done));
    // (request, the range a read must get)
    let mut batch: Vec<(IoRequest, Option<(usize, usize)>)> = Vec::new();
    let add = |batch: &mut Vec<_>, offset: u64, len: u32| {
        batch.push((
            IoRequest::Read { offset, len },
            Some((offset as usize, len as usize)),
        ));
    };
    // adjacent reads of 4, 4, 8 and 0.5 KiB, then a gap of 4 KiB and two more
    add(&mut batch, 0, 4096);
    add(&mut batch, 4 * K, 4096);
    add(&mut batch, 8 * K, 8192);
    add(&mut batch, 16 * K, 512);
    add(&mut batch, 20 * K + 512, 4096);
    add(&mut batch, 24 * K + 512, 1024);
    // a write (at 1.5 MiB, which no read here touches) between adjacent reads
    add(&mut batch, 32 * K, 4096);
    batch.push((write_in(3 << 19, &pattern(4096, 0x99), 1, false), None));
    add(&mut batch, 36 * K, 4096);
    // a read past the end between adjacent reads fails alone
    add(&mut batch, 40 * K, 4096);
    let past_end = IoRequest::Read {
        offset: SIZE - 2048,
        len: 4096,
    };
    batch.push((past_end, None));
    add(&mut batch, 44 * K, 4096);
    // 768 KiB of adjacent 64 KiB reads
    for i in 0..12 {
        add(&mut batch, 64 * K + i * 64 * K, 65536);
    }
    let (requests, reads): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let results = run_batch(s, requests);
    for (i, (got, read)) in results.iter().zip(&reads).enumerate() {
        match (read, i) {
            (Some((at, len)), _) => assert_eq!(
                got,
                &Ok(IoReply::Data(Bytes::copy_from_slice(
                    &content[*at..at + len]
                ))),
                "read {i} gets its own bytes"
            ),
            (None, 7) => assert_eq!(got, &Ok(IoReply::Done), "the write between"),
            (None, _) => assert_eq!(
                got.as_ref().map_err(|e| e.kind),
                Err(ErrorKind::OutOfRange),
                "the read past the end"
            ),
        }
    }
}

pub fn flush_and_fua_writes_complete(open: Open<'_>) {
    let f = open("flush");
    let s = &*f.store;
    let data = pattern(8192, 5);
    let r = run(
        s,
        IoRequest::Write {
            offset: 0,
            data: Bytes::from(data.clone()).into(),
            fua: true,
        },
    );
    assert_eq!(r, Ok(IoReply::Done));
    assert_eq!(run(s, IoRequest::Flush), Ok(IoReply::Done));
    assert_eq!(read(s, 0, 8192), data);
}

/// Discard is announced, changes only its range, and zeroes it where announced.
pub fn discard_reads_back_zeroes(open: Open<'_>) {
    let f = open("discard");
    let s = &*f.store;
    let caps = s.capabilities();
    assert!(caps.discard, "every backend here announces discard");
    let data = pattern(65536, 6);
    write(s, 65536, &data);
    assert_eq!(
        run(
            s,
            IoRequest::Discard {
                offset: 65536 + 16384,
                len: 16384
            }
        ),
        Ok(IoReply::Done)
    );
    let got = read(s, 65536, 65536);
    assert_eq!(&got[..16384], &data[..16384]);
    if caps.discard_zeroes {
        assert!(
            got[16384..32768].iter().all(|&b| b == 0),
            "discarded range is not zero"
        );
    }
    assert_eq!(&got[32768..], &data[32768..]);
}

/// Allocation queries (SEEK_DATA/SEEK_HOLE): every answer is a non-empty extent inside what
/// was asked; written bytes are mapped; a discarded, aligned 1 MiB reads as a hole on stores
/// that punch holes (memory, files on this machine). A store that cannot tell answers
/// Unsupported, and then always.
pub fn allocation_follows_writes_and_discards(open: Open<'_>) {
    let f = open("allocation");
    let s = &*f.store;
    const MIB: u64 = 1 << 20;
    write(s, 0, &pattern(3 * MIB as usize, 8));
    let ask = |offset: u64, len: u64| run(s, IoRequest::Allocation { offset, len });
    let first = ask(0, 3 * MIB);
    if first == Err(StoreError::new(Op::Allocation, ErrorKind::Unsupported)) {
        assert_eq!(ask(MIB, MIB), first, "Unsupported is for good");
        return;
    }
    assert_eq!(
        first,
        Ok(IoReply::Allocation {
            mapped: true,
            len: 3 * MIB
        })
    );
    assert_eq!(
        run(
            s,
            IoRequest::Discard {
                offset: MIB,
                len: MIB
            }
        ),
        Ok(IoReply::Done)
    );
    assert_eq!(
        ask(0, 3 * MIB),
        Ok(IoReply::Allocation {
            mapped: true,
            len: MIB
        })
    );
    assert_eq!(
        ask(MIB, 2 * MIB),
        Ok(IoReply::Allocation {
            mapped: false,
            len: MIB
        })
    );
    assert_eq!(
        ask(MIB + 4096, 4096),
        Ok(IoReply::Allocation {
            mapped: false,
            len: 4096
        })
    );
    assert_eq!(
        ask(2 * MIB, MIB),
        Ok(IoReply::Allocation {
            mapped: true,
            len: MIB
        })
    );
    assert_eq!(
        ask(0, 0).map_err(|e| e.op),
        Err(Op::Allocation),
        "an empty query is refused"
    );
}

/// Write-zeroes of an unaligned range zeroes exactly that range.
pub fn write_zeroes_zeroes_exactly_the_range(open: Open<'_>) {
    let f = open("zeroes");
    let s = &*f.store;
    let data = pattern(65536, 7);
    write(s, 0, &data);
    // Unaligned range: a zero-range implementation must not round outwards.
    assert_eq!(
        run(
            s,
            IoRequest::WriteZeroes {
                offset: 1000,
                len: 30000
            }
        ),
        Ok(IoReply::Done)
    );
    let got = read(s, 0, 65536);
    assert_eq!(&got[..1000], &data[..1000]);
    assert!(got[1000..31000].iter().all(|&b| b == 0));
    assert_eq!(&got[31000..], &data[31000..]);
}

/// Requests reaching past the end fail OutOfRange and change nothing.
pub fn out_of_range_requests_are_rejected(open: Open<'_>) {
    let f = open("range");
    let s = &*f.store;
    let reqs = [
        IoRequest::Read {
            offset: SIZE,
            len: 512,
        },
        IoRequest::Read {
            offset: SIZE - 512,
            len: 1024,
        },
        IoRequest::Write {
            offset: SIZE - 1,
            data: Bytes::from_static(&[1, 2]).into(),
            fua: false,
        },
        IoRequest::Discard {
            offset: SIZE,
            len: 1,
        },
        IoRequest::WriteZeroes {
            offset: u64::MAX,
            len: 2,
        },
    ];
    for req in reqs {
        let op = req.op();
        let err = run(s, req).unwrap_err();
        assert_eq!((err.op, err.kind), (op, ErrorKind::OutOfRange));
    }
    // Nothing was written by the rejected write.
    assert_eq!(read(s, SIZE - 512, 512), vec![0; 512]);
    if f.backing.is_some() {
        assert_eq!(
            f.backing_bytes().len() as u64,
            SIZE,
            "a rejected write must not grow the file"
        );
    }
}

/// Many writers at once: every completion runs once and every block holds its data.
pub fn concurrent_submits_complete_exactly_once(open: Open<'_>) {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 64;
    let f = open("concurrent");
    let store = f.store.clone();
    let calls: Arc<Vec<AtomicUsize>> = Arc::new(
        (0..THREADS * PER_THREAD)
            .map(|_| AtomicUsize::new(0))
            .collect(),
    );
    let (tx, rx) = mpsc::channel::<(usize, IoResult)>();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (store, calls, tx) = (store.clone(), calls.clone(), tx.clone());
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let id = t * PER_THREAD + i;
                    let (calls, tx) = (calls.clone(), tx.clone());
                    let data = Bytes::from(pattern(4096, id as u8));
                    store.submit(
                        IoRequest::Write {
                            offset: id as u64 * 4096,
                            data: data.into(),
                            fua: false,
                        },
                        Completion::new(move |r| {
                            calls[id].fetch_add(1, Ordering::SeqCst);
                            tx.send((id, r)).unwrap();
                        }),
                    );
                }
            });
        }
    });
    drop(tx);
    for _ in 0..THREADS * PER_THREAD {
        let (id, r) = rx
            .recv_timeout(COMPLETION_TIMEOUT)
            .expect("a completion never came");
        assert_eq!(r, Ok(IoReply::Done), "request {id}");
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "extra completion"
    );
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    // Every 4 KiB block holds its own writer's pattern.
    let all = read(&*store, 0, (THREADS * PER_THREAD * 4096) as u32);
    for (id, chunk) in all.chunks(4096).enumerate() {
        assert_eq!(chunk, &pattern(4096, id as u8)[..], "block {id}");
    }
}

/// After a flush, the written bytes are in the file behind the store (read another way
/// than through the store), and the file has the store's size. Skipped for a backend
/// without backing file.
pub fn bytes_land_in_the_backing_file(open: Open<'_>) {
    let f = open("landed");
    if f.backing.is_none() {
        return;
    }
    let s = &*f.store;
    let data = pattern(5000, 8);
    write(s, 3 << 20, &data);
    assert_eq!(run(s, IoRequest::Flush), Ok(IoReply::Done));
    let on_disk = f.backing_bytes();
    assert_eq!(on_disk.len() as u64, SIZE);
    assert_eq!(&on_disk[3 << 20..(3 << 20) + 5000], &data[..]);
    assert!(on_disk[..3 << 20].iter().all(|&b| b == 0));
}

/// A metadata object (what APTPL reservations are kept in) reads back as last written,
/// replaced whole; a missing one is `None`; names outside `a-z0-9-` are refused; the
/// block data is untouched by it.
pub fn metadata_is_replaced_whole_and_read_back(open: Open<'_>) {
    let f = open("metadata");
    let s = &*f.store;
    write(s, 0, &pattern(4096, 3));
    assert_eq!(s.read_metadata("pr"), Ok(None));
    let long = pattern(3000, 9);
    s.write_metadata("pr", &long).unwrap();
    assert_eq!(s.read_metadata("pr"), Ok(Some(long)));
    s.write_metadata("pr", b"short").unwrap();
    assert_eq!(
        s.read_metadata("pr").unwrap().as_deref(),
        Some(&b"short"[..])
    );
    assert_eq!(s.read_metadata("other"), Ok(None));
    for bad in ["", "../pr", "PR", "a/b"] {
        assert_eq!(
            s.write_metadata(bad, b"x").unwrap_err().kind,
            store_api::ErrorKind::OutOfRange,
            "{bad:?}"
        );
    }
    assert_eq!(read(s, 0, 4096), pattern(4096, 3));
}

/// Gateways share the reservations through metadata objects: one that a gateway wrote
/// is what another gateway reads next, at once, both ways, also where that gateway read
/// the version before just then (which a client-side cache of its own could keep: on
/// Gluster each gateway's mount has md-cache, quick-read and open-behind).
pub fn metadata_is_read_through_other_gateways_as_last_written(open: Open<'_>) {
    let f = open("metadata-shared");
    let (a, b) = (f.store.clone(), f.another_gateway());
    for round in 0..8usize {
        let (from, to) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let before = to.read_metadata("pr").unwrap();
        let text = format!("version {round}\n")
            .repeat(round % 3 + 1)
            .into_bytes();
        assert_ne!(before.as_deref(), Some(&text[..]));
        from.write_metadata("pr", &text).unwrap();
        assert_eq!(
            to.read_metadata("pr").unwrap().as_deref(),
            Some(&text[..]),
            "round {round}: the other gateway does not read what was just written"
        );
    }
}

/// The advisory metadata lock gateways take around a read-modify-write of a metadata
/// object: another gateway (another store on the same backing; on glfs another mount)
/// cannot take it while it is held, at once or within a bounded wait, and takes it once
/// it is let go; every guard is a holder of its own, shared holders exclude only an
/// exclusive one, names are independent, and the data path is not held back by it.
pub fn metadata_locks_exclude_other_gateways(open: Open<'_>) {
    use store_api::{LockError, LockMode, LockOwner, LockWait};
    let f = open("locks");
    let a = f.store.clone();
    let b = f.another_gateway();
    let gw_a = LockOwner::new("gateway-a").unwrap();
    let gw_b = LockOwner::new("gateway-b").unwrap();
    let contended = |r: Result<store_api::MetadataLock, LockError>, what: &str| match r {
        Err(LockError::Contended { name, waited }) => (name, waited),
        other => panic!("{what}: expected Contended, got {other:?}"),
    };
    let bounded = LockWait::AtMost(Duration::from_millis(200));
    let patient = LockWait::AtMost(COMPLETION_TIMEOUT);

    let held = a
        .lock_metadata("pr", &gw_a, LockMode::Exclusive, LockWait::NoWait)
        .unwrap();
    assert_eq!(
        (held.name(), held.owner(), held.mode()),
        ("pr", &gw_a, LockMode::Exclusive)
    );
    let (name, _) = contended(
        b.lock_metadata("pr", &gw_b, LockMode::Exclusive, LockWait::NoWait),
        "another gateway, no wait",
    );
    assert_eq!(name, "pr");
    let (_, waited) = contended(
        b.lock_metadata("pr", &gw_b, LockMode::Shared, bounded),
        "another gateway, shared, bounded wait",
    );
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    contended(
        a.lock_metadata("pr", &gw_a, LockMode::Exclusive, LockWait::NoWait),
        "a second guard of the same gateway",
    );
    // Another object's lock is another lock; the data path does not wait for either.
    let other = b
        .lock_metadata("other", &gw_b, LockMode::Exclusive, LockWait::NoWait)
        .unwrap();
    let data = pattern(4096, 0x5c);
    write(&*b, 8192, &data);
    // Flushed before the other gateway reads: a write one Gluster mount acknowledged may
    // still sit in its write-behind, which another mount does not see (a live CI run read
    // zeros here without the flush). These stores are not opened as a shared LUN; one
    // that is reads it without a flush: `coherent_writes_are_read_through_other_gateways`.
    assert_eq!(run(&*b, IoRequest::Flush), Ok(IoReply::Done));
    assert_eq!(read(&*a, 8192, 4096), data);
    drop(other);
    // Taking the lock creates no metadata object.
    assert_eq!(a.read_metadata("pr"), Ok(None));

    // A waiter takes it as soon as the holder lets go.
    let waiter = {
        let (b, gw_b) = (b.clone(), gw_b.clone());
        std::thread::spawn(move || b.lock_metadata("pr", &gw_b, LockMode::Exclusive, patient))
    };
    drop(held);
    let taken = waiter.join().unwrap().expect("the waiter takes the lock");
    assert_eq!(taken.owner(), &gw_b);
    contended(
        a.lock_metadata("pr", &gw_a, LockMode::Shared, LockWait::NoWait),
        "the first gateway while the waiter holds it",
    );
    drop(taken);

    // Shared holders on both gateways; an exclusive one waits for them all.
    let r1 = a
        .lock_metadata("pr", &gw_a, LockMode::Shared, LockWait::NoWait)
        .unwrap();
    let r2 = b
        .lock_metadata("pr", &gw_b, LockMode::Shared, LockWait::NoWait)
        .unwrap();
    contended(
        b.lock_metadata("pr", &gw_b, LockMode::Exclusive, LockWait::NoWait),
        "exclusive while shared",
    );
    drop(r1);
    contended(
        a.lock_metadata("pr", &gw_a, LockMode::Exclusive, LockWait::NoWait),
        "exclusive while one shared holder is left",
    );
    drop(r2);
    drop(
        a.lock_metadata("pr", &gw_a, LockMode::Exclusive, LockWait::NoWait)
            .expect("free once every holder let go"),
    );

    // A bad name is refused, not locked.
    match a.lock_metadata("../pr", &gw_a, LockMode::Exclusive, LockWait::NoWait) {
        Err(LockError::Store { source, .. }) => {
            assert_eq!((source.op, source.kind), (Op::Lock, ErrorKind::OutOfRange))
        }
        other => panic!("a bad name: {other:?}"),
    }
}

/// A LUN shared by gateways is cache-coherent across them: a write one gateway's store
/// acknowledged (no flush, no FUA) is read back through another gateway's store at once,
/// both ways, also where the other gateway read the old bytes just before (which a
/// read cache could keep). On Gluster each gateway has a mount of its own, whose
/// write-behind would otherwise hold the write (the fake models it for these files).
pub fn coherent_writes_are_read_through_other_gateways(open: Open<'_>) {
    let f = open(COHERENT);
    let (a, b) = (f.store.clone(), f.another_gateway());
    const CHUNK: u64 = 64 << 10;
    for (round, (from, to)) in [(&a, &b), (&b, &a), (&a, &b), (&b, &a)]
        .into_iter()
        .enumerate()
    {
        let round = round as u64;
        // A 4 KiB write inside a range the other side has just read, then a 64 KiB one.
        let at = round * 2 * CHUNK;
        let before = read(&**to, at, CHUNK as u32);
        let small = pattern(4096, round as u8 * 2 + 1);
        write(&**from, at + 8192, &small);
        let mut expect = before;
        expect[8192..8192 + 4096].copy_from_slice(&small);
        assert_eq!(
            read(&**to, at, CHUNK as u32),
            expect,
            "round {round}: an acknowledged 4 KiB write is not read back through the \
             other gateway"
        );
        let large = pattern(CHUNK as usize, round as u8 * 2 + 2);
        write(&**from, at + CHUNK, &large);
        assert_eq!(
            read(&**to, at + CHUNK, CHUNK as u32),
            large,
            "round {round}: an acknowledged 64 KiB write is not read back through the \
             other gateway"
        );
    }
}
