//! Reads do not allocate a buffer per command: the stores fill buffers from
//! `store_api::BufferPool`, which come back when the read's `Bytes` is dropped; writes
//! allocate nothing at all. Measured with the workspace's counting global allocator
//! (`alloc_count::count_process`: calls and bytes asked of the allocator by every
//! thread), not with a clock.
//!
//! One check per store kind (memory, file, glfs on the fake libgfapi), run one after the
//! other in a single test (the counter is process-wide, and the file and glfs stores
//! complete on threads of their own). The fake's own allocations are not counted: it is
//! a library with its own allocator, as the real libgfapi is.

use backstore::{open_store, StoreOptions};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use store_api::{BlockStore, BufferPool, Completion, IoReply, IoRequest, IoResult};

const SIZE: u64 = 32 << 20;
const MIB: u32 = 1 << 20;

/// Where the completion leaves the result (a channel would allocate per request itself).
static RESULT: Mutex<Option<IoResult>> = Mutex::new(None);

/// Runs `req` and waits for its result.
fn run(store: &dyn BlockStore, req: IoRequest) -> IoReply {
    store.submit(req, Completion::new(|r| *RESULT.lock().unwrap() = Some(r)));
    let result = loop {
        if let Some(r) = RESULT.lock().unwrap().take() {
            break r;
        }
        std::thread::yield_now();
    };
    result.unwrap_or_else(|e| panic!("request failed: {e:?}"))
}

/// Reads `len` bytes at `offset` and drops them (as the daemon does once the Data-In is
/// written); returns the first byte so the read is used.
fn read_and_drop(store: &dyn BlockStore, offset: u64, len: u32) -> u8 {
    match run(store, IoRequest::Read { offset, len }) {
        IoReply::Data(d) => {
            assert_eq!(d.len(), len as usize);
            d[0]
        }
        other => panic!("read answered {other:?}"),
    }
}

/// Writes `data` at `offset` (the `Bytes` is a reference to the caller's, as the iSCSI
/// core hands over a slice of its input).
fn write(store: &dyn BlockStore, offset: u64, data: &Bytes, fua: bool) {
    let req = IoRequest::Write {
        offset,
        data: data.clone().into(),
        fua,
    };
    assert!(matches!(run(store, req), IoReply::Done));
}

/// Rounds of `n` requests counted; the fewest calls are what a request costs.
const ROUNDS: usize = 3;

/// (allocator calls, bytes) per request over `n` requests of `len` bytes, after a warm-up
/// request that fills the pool: of the [`ROUNDS`] rounds, the one with the fewest calls.
/// The count is process-wide (the stores complete on threads of their own), so a call
/// made once by something else in the process (the test harness's own thread, a thread's
/// first pass through a lazily set up path) can land in a round: it did once under load,
/// 1025 calls for 1024 glfs reads, and never again in 170 runs here, loaded or not. What
/// the test is about, an allocation per request, is in every round.
fn allocated_per_op(
    store: &dyn BlockStore,
    len: u32,
    n: u64,
    mut op: impl FnMut(&dyn BlockStore, u64),
) -> (f64, usize) {
    op(store, 0);
    let rounds: Vec<alloc_count::Totals> = (0..ROUNDS)
        .map(|_| {
            alloc_count::count_process(|| {
                for i in 0..n {
                    op(store, (i * u64::from(len)) % (SIZE - u64::from(len)));
                }
            })
        })
        .collect();
    let fewest = rounds
        .iter()
        .min_by_key(|t| t.calls)
        .expect("at least one round");
    if rounds.iter().any(|t| t.calls != fewest.calls) {
        eprintln!("calls per round of {n} requests of {len} bytes: {rounds:?}");
    }
    (fewest.calls as f64 / n as f64, fewest.bytes / n as usize)
}

/// Allocator calls per command a store may make at most (reads: of 4 KiB; writes: of
/// 4 KiB and 64 KiB, and FUA writes): the memory store none for writes and one for reads (the header `Bytes::from_owner` allocates for the pooled
/// buffer it lends out: the `bytes` crate has no way to hand out a buffer that comes back
/// without it); see the callers for the others.
struct Bound {
    read_calls: f64,
    write_calls: f64,
}

fn check(kind: &str, store: Arc<dyn BlockStore>, bound: Bound) {
    for (len, n) in [(MIB, 64), (64 << 10, 256), (4096, 1024)] {
        let (calls, per_read) = allocated_per_op(&*store, len, n, |s, off| {
            read_and_drop(s, off, len);
        });
        // What remains per read is bookkeeping: far below even a 4 KiB buffer. Before
        // the pool, every read asked the allocator for `len` bytes.
        eprintln!("{kind}: {per_read} bytes in {calls} allocations per read of {len}");
        assert!(
            per_read < 1024,
            "{kind}: {per_read} bytes allocated per read of {len} (the buffer is not reused)"
        );
        if len == 4096 {
            assert!(
                calls <= bound.read_calls,
                "{kind}: {calls} allocations per 4 KiB read, at most {} expected",
                bound.read_calls
            );
        }
    }
    // 4 KiB and 64 KiB writes, and FUA writes (glfs: a write, then an fdatasync).
    for (len, n, fua) in [
        (4096, 1024, false),
        (64 << 10, 256, false),
        (4096, 256, true),
    ] {
        let data = Bytes::from(vec![0x5a; len as usize]);
        let (calls, bytes) = allocated_per_op(&*store, len, n, |s, off| write(s, off, &data, fua));
        eprintln!("{kind}: {bytes} bytes in {calls} allocations per write of {len} (fua {fua})");
        assert!(
            calls <= bound.write_calls,
            "{kind}: {calls} allocations per write of {len} (fua {fua}), at most {} expected",
            bound.write_calls
        );
    }
    assert!(BufferPool::global().idle_bytes() <= BufferPool::KEEP);
}

#[test]
fn reads_reuse_pooled_buffers_instead_of_allocating_one_per_command() {
    let memory = open_store(&StoreOptions {
        bstype: "memory".into(),
        create_size: Some(SIZE),
        ..Default::default()
    })
    .unwrap();
    check(
        "memory",
        memory,
        Bound {
            read_calls: 1.0,
            write_calls: 0.0,
        },
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let file = open_store(&StoreOptions {
        bstype: "file".into(),
        backing_store: path.to_str().unwrap().into(),
        create_size: Some(SIZE),
        ..Default::default()
    })
    .unwrap();
    // The file store: the pooled buffer's header, and now and then a node of its
    // workers' queue.
    check(
        "file",
        file,
        Bound {
            read_calls: 1.5,
            write_calls: 0.5,
        },
    );

    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("alloc")).unwrap();
    std::env::set_var(testkit::fake::ENV_ROOT, root.path());
    let glfs = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: "alloc@localhost:disk.img".into(),
        create_size: Some(SIZE),
        gfapi_library: Some(testkit::fake::fake_library_path()),
        ..Default::default()
    })
    .unwrap();
    // The pooled buffer's header (reads) only: gfapi's request context holds the store's
    // callback inline and its allocation is reused, so a write allocates nothing (it
    // was one call per request while the callback was boxed).
    check(
        "glfs",
        glfs,
        Bound {
            read_calls: 1.0,
            write_calls: 0.0,
        },
    );
}
