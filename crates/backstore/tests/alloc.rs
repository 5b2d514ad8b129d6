//! Reads do not allocate a buffer per command: the stores fill buffers from
//! `store_api::BufferPool`, which come back when the read's `Bytes` is dropped. Measured
//! with a counting global allocator (bytes asked of the allocator), not with a clock.
//!
//! One test function per store kind, run one after the other in a single test (the
//! counter is process-wide and the file store completes on threads of its own).

use backstore::{open_store, StoreOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use store_api::{BlockStore, BufferPool, Completion, IoReply, IoRequest, IoResult};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZE: u64 = 32 << 20;
const MIB: u32 = 1 << 20;

/// Where the completion leaves the result (a channel would allocate per read itself).
static RESULT: Mutex<Option<IoResult>> = Mutex::new(None);

/// Reads `len` bytes at `offset` and drops them (as the daemon does once the Data-In is
/// written); returns the first byte so the read is used.
fn read_and_drop(store: &dyn BlockStore, offset: u64, len: u32) -> u8 {
    store.submit(
        IoRequest::Read { offset, len },
        Completion::new(|r| *RESULT.lock().unwrap() = Some(r)),
    );
    let result = loop {
        if let Some(r) = RESULT.lock().unwrap().take() {
            break r;
        }
        std::thread::yield_now();
    };
    match result {
        Ok(IoReply::Data(d)) => {
            assert_eq!(d.len(), len as usize);
            d[0]
        }
        other => panic!("read failed: {other:?}"),
    }
}

/// Bytes allocated per read of `len` over `n` reads, after a warm-up read that fills the
/// pool.
fn allocated_per_read(store: &dyn BlockStore, len: u32, n: u64) -> usize {
    read_and_drop(store, 0, len);
    let before = ALLOCATED.load(Ordering::Relaxed);
    for i in 0..n {
        let offset = (i * u64::from(len)) % (SIZE - u64::from(len));
        read_and_drop(store, offset, len);
    }
    (ALLOCATED.load(Ordering::Relaxed) - before) / n as usize
}

fn check(kind: &str, store: Arc<dyn BlockStore>) {
    for (len, n) in [(MIB, 64), (64 << 10, 256), (4096, 1024)] {
        let per_read = allocated_per_read(&*store, len, n);
        // What remains per read is bookkeeping (the completion, the `Bytes` owner box):
        // far below even a 4 KiB buffer. Before the pool, every read asked the allocator
        // for `len` bytes.
        eprintln!("{kind}: {per_read} bytes allocated per read of {len}");
        assert!(
            per_read < 1024,
            "{kind}: {per_read} bytes allocated per read of {len} (the buffer is not reused)"
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
    check("memory", memory);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let file = open_store(&StoreOptions {
        bstype: "file".into(),
        backing_store: path.to_str().unwrap().into(),
        create_size: Some(SIZE),
        ..Default::default()
    })
    .unwrap();
    check("file", file);
}
