//! Drives a store at a fixed queue depth with 4 KiB random I/O and prints IOPS.
//!
//! `cargo run -p backstore --example qd -- <bstype> <backing-store> [read|write] [depth] [secs]`
//! (glfs: set `GFAPI_LIBRARY` to the fake or real libgfapi; a missing file is created with
//! 256 MiB). Completions go back to the submitting loop through a channel, as in the daemon.

use backstore::{open_store, StoreOptions};
use bytes::Bytes;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use store_api::{Completion, IoRequest};

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bstype = args.first().cloned().unwrap_or_else(|| "memory".into());
    let backing = args.get(1).cloned().unwrap_or_else(|| "256M".into());
    let write = args.get(2).is_some_and(|m| m == "write");
    let depth: usize = args.get(3).and_then(|d| d.parse().ok()).unwrap_or(32);
    let secs: u64 = args.get(4).and_then(|d| d.parse().ok()).unwrap_or(3);
    let store = open_store(&StoreOptions {
        bstype,
        backing_store: backing,
        create_size: Some(256 << 20),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let blocks = store.geometry().size_bytes() / 4096;
    let data = Bytes::from(vec![0x5a; 4096]);
    let (tx, rx) = mpsc::channel::<bool>();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let submit = |seed: &mut u64| {
        let offset = (next(seed) % blocks) * 4096;
        let req = if write {
            IoRequest::Write {
                offset,
                data: data.clone().into(),
                fua: false,
            }
        } else {
            IoRequest::Read { offset, len: 4096 }
        };
        let tx = tx.clone();
        store.submit(req, Completion::new(move |r| tx.send(r.is_ok()).unwrap()));
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    for _ in 0..depth {
        submit(&mut seed);
    }
    let (mut done, mut errors) = (0u64, 0u64);
    let mut inflight = depth;
    while inflight > 0 {
        let ok = rx.recv().unwrap();
        inflight -= 1;
        done += 1;
        errors += u64::from(!ok);
        if Instant::now() < deadline {
            submit(&mut seed);
            inflight += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}: {done} 4k {} at QD{depth}: {:.0} IOPS, {errors} errors",
        store.describe(),
        if write { "writes" } else { "reads" },
        done as f64 / elapsed,
    );
}
