//! A memory store costs resident memory only for what was written: creating a 256 MiB
//! store and reading every one of its 1 MiB shards takes no page of it, and writes take
//! the pages they write. Counted in pages (`RssAnon` of /proc/self/status), not timed.
//!
//! One test in its own file, so it runs in a process of its own (under `cargo test` too)
//! and no other test's allocations move the count.

use backstore::MemoryStore;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use store_api::{BlockStore, Completion, Geometry, IoReply, IoRequest};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// This process's anonymous resident memory in KiB.
fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `req` on the memory store (which completes inline) and returns its reply.
fn run(store: &MemoryStore, req: IoRequest) -> IoReply {
    let slot = Arc::new(Mutex::new(None));
    let put = slot.clone();
    store.submit(
        req,
        Completion::new(move |r| *put.lock().unwrap() = Some(r)),
    );
    let result = slot.lock().unwrap().take().expect("completed inline");
    result.expect("request succeeded")
}

#[test]
fn a_memory_store_takes_resident_memory_only_for_what_was_written() {
    const SIZE: u64 = 256 * MIB;
    const SHARD: u64 = MIB;
    // Warm up what a first request allocates once (the read buffer pool's first buffer,
    // lazily initialised statics) on a small store, so the counts below are the store's.
    let warm = MemoryStore::new(Geometry {
        block_size: 512,
        num_blocks: 8,
    });
    drop(run(
        &warm,
        IoRequest::Read {
            offset: 0,
            len: 4096,
        },
    ));

    let before = rss_anon_kib();
    let store = MemoryStore::new(Geometry {
        block_size: 512,
        num_blocks: SIZE / 512,
    });
    // Reading one block of every shard maps the kernel's zero page, nothing resident.
    for shard in 0..SIZE / SHARD {
        match run(
            &store,
            IoRequest::Read {
                offset: shard * SHARD + 8192,
                len: 4096,
            },
        ) {
            IoReply::Data(d) => assert!(d.iter().all(|&b| b == 0), "never written: zeroes"),
            other => panic!("read answered {other:?}"),
        }
    }
    let created = rss_anon_kib().saturating_sub(before);
    eprintln!("created {created} KiB");
    // What remains is the shard table (per 1 MiB shard a lock, its mapping's handle and
    // sixteen 64 KiB pieces' read counts: about 40 KiB); a 4 KiB allocator header in
    // every shard would be 1024 KiB. The allocation bitmap (one bit per 512-byte block:
    // 64 KiB) is a zeroed mapping of its own, resident only where blocks were written:
    // as a `Vec` it held 64 KiB from the start (76 KiB measured here with it, 44 without).
    assert!(
        created < 64,
        "a 256 MiB memory store with nothing written holds {created} KiB resident"
    );

    // Writes take their pages (so the count above measures what it claims to): one
    // 4 KiB block into each of 64 shards.
    let data = Bytes::from(vec![0x5a; 4096]);
    for shard in 0..64 {
        let req = IoRequest::Write {
            offset: shard * SHARD + 8192,
            data: data.clone().into(),
            fua: false,
        };
        assert!(matches!(run(&store, req), IoReply::Done));
    }
    let written = rss_anon_kib().saturating_sub(before);
    assert!(
        written >= created + 64 * 4,
        "64 written pages should be resident: {created} KiB before, {written} KiB after"
    );
    match run(
        &store,
        IoRequest::Read {
            offset: 63 * SHARD + 8192,
            len: 4096,
        },
    ) {
        IoReply::Data(d) => assert!(d.iter().all(|&b| b == 0x5a), "the written block"),
        other => panic!("read answered {other:?}"),
    }
}
