//! What the SCSI core allocates per command on the data path: READ(10) and WRITE(10) of
//! 4 KiB from start to GOOD, counted with the counting allocator of `alloc-count` on this test's
//! thread (never with a clock). The commands, their data and the store's read buffers are
//! made before counting; the store's side is the test's own (the daemon's stores are
//! counted in `backstore/tests/alloc.rs`).

mod common;

use bytes::Bytes;
use common::*;
use scsi::{Command, ScsiTarget, Start, Status};
use store_api::{IoReply, IoRequest};

use alloc_count::count;

const N: usize = 1000;
/// 4 KiB in blocks of [`BS`] (512) bytes.
const BLOCKS_4K: u16 = 8;

/// `N` commands of opcode `op` (READ(10) 28h or WRITE(10) 2Ah, SBC-3 tables 97 and 219),
/// 4 KiB each at spread LBAs, from nexus 1, with `data` as data-out.
fn commands(op: u8, data: &Bytes) -> Vec<Command> {
    (0..N)
        .map(|n| {
            let lba = (n as u32 * 37 % (BLOCKS as u32 / 8)) * 8;
            Command {
                nexus: 1,
                lun: 0,
                cdb: Bytes::copy_from_slice(&cdb10(op, 0, lba, BLOCKS_4K)),
                data_out: data.clone().into(),
                expected_len: 4096,
            }
        })
        .collect()
}

/// Runs each command through the core to its response, the store answering at once
/// (`reads` supplies the read buffers), and returns the allocator calls made.
fn run(target: &ScsiTarget, cmds: Vec<Command>, mut reads: Vec<Bytes>) -> usize {
    let mut good = 0;
    let calls = count(|| {
        for cmd in cmds {
            let mut start = target.start(cmd);
            loop {
                match start {
                    Start::Done(response) => {
                        good += usize::from(response.status == Status::Good);
                        break;
                    }
                    Start::Io {
                        request, pending, ..
                    } => {
                        let reply = match request {
                            IoRequest::Read { len, .. } => {
                                let data = reads.pop().expect("a read buffer per read");
                                assert_eq!(data.len(), len as usize);
                                IoReply::Data(data)
                            }
                            IoRequest::Write { data, .. } => {
                                assert_eq!(data.len(), 4096);
                                IoReply::Done
                            }
                            other => panic!("unexpected request {other:?}"),
                        };
                        start = pending.finish(Ok(reply));
                    }
                    other => panic!("unexpected step {other:?}"),
                }
            }
        }
    });
    assert_eq!(good, N, "every command ends GOOD");
    calls
}

#[test]
fn a_4k_write_or_read_allocates_nothing_in_the_scsi_core() {
    // The counting allocator is this binary's.
    assert_eq!(count(|| drop(std::hint::black_box(vec![0u8; 16]))), 1);
    let mut target = ScsiTarget::new();
    target.add_lun(0, config(Default::default()));
    let data = Bytes::from(vec![0xa5u8; 4096]);
    let none = Bytes::new();
    let read_buffers = |n| (0..n).map(|_| Bytes::from(vec![0x5au8; 4096])).collect();
    // A round of each first, so what a first use sets up is not counted.
    run(&target, commands(0x2a, &data), Vec::new());
    run(&target, commands(0x28, &none), read_buffers(N));

    let writes = run(&target, commands(0x2a, &data), Vec::new());
    let reads = run(&target, commands(0x28, &none), read_buffers(N));
    assert_eq!(
        (writes, reads),
        (0, 0),
        "allocator calls for {N} writes and {N} reads of 4 KiB"
    );
}
