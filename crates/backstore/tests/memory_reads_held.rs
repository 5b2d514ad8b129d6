//! Reads in flight on a memory store hold no buffer of their own: their data is the
//! store's memory, held by reference until the `Bytes` is dropped (the Data-In written to
//! the socket). So a session's reads waiting for its socket cost the process a small
//! header each, not their length: counted with the workspace's counting global allocator
//! (`alloc_count::count_process`, every thread's allocator calls and bytes), not timed.
//!
//! One test in its own file, so it runs in a process of its own (under `cargo test` too):
//! the count is process-wide.

use backstore::MemoryStore;
use bytes::Bytes;
use std::sync::Mutex;
use store_api::{BlockStore, Completion, Geometry, IoReply, IoRequest, IoResult};

/// Where the completion leaves the result (the memory store completes inline).
static RESULT: Mutex<Option<IoResult>> = Mutex::new(None);

fn run(store: &MemoryStore, req: IoRequest) -> IoReply {
    store.submit(req, Completion::new(|r| *RESULT.lock().unwrap() = Some(r)));
    let result = RESULT.lock().unwrap().take().expect("completed inline");
    result.expect("request succeeded")
}

#[test]
fn reads_in_flight_on_a_memory_store_hold_no_buffer_of_their_own() {
    const LEN: usize = 64 << 10;
    const QD: usize = 32;
    let store = MemoryStore::new(Geometry {
        block_size: 512,
        num_blocks: (QD * LEN / 512) as u64,
    });
    for i in 0..QD {
        let req = IoRequest::Write {
            offset: (i * LEN) as u64,
            data: Bytes::from(vec![i as u8; LEN]).into(),
            fua: false,
        };
        assert!(matches!(run(&store, req), IoReply::Done));
    }
    // A window of QD reads of 64 KiB, all still held (none written to a socket yet).
    let mut held: Vec<Bytes> = Vec::with_capacity(QD);
    let counted = alloc_count::count_process(|| {
        for i in 0..QD {
            let req = IoRequest::Read {
                offset: (i * LEN) as u64,
                len: LEN as u32,
            };
            match run(&store, req) {
                IoReply::Data(d) => held.push(d),
                other => panic!("read answered {other:?}"),
            }
        }
    });
    for (i, d) in held.iter().enumerate() {
        assert_eq!(d.len(), LEN);
        assert!(d.iter().all(|&b| b == i as u8), "read {i} holds its data");
    }
    // One `Bytes` header per read (the owner that holds the store's piece): about 40
    // bytes. A read copied into a buffer of its own would be 64 KiB each, 2 MiB in all.
    eprintln!(
        "{} bytes in {} allocations for {QD} reads held",
        counted.bytes, counted.calls
    );
    assert!(
        counted.bytes <= QD * 64 && counted.calls <= QD,
        "{} bytes in {} allocations for {QD} reads of {LEN} held: a buffer per read",
        counted.bytes,
        counted.calls
    );
}
