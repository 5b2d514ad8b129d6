//! COMPARE AND WRITE is atomic against every write to the same blocks from any nexus: two
//! nexuses' commands interleaved step by step against an in-memory store.

mod common;

use bytes::Bytes;
use common::*;
use rstest::rstest;
use scsi::{Command, Pending, ScsiTarget, Start, Status};
use store_api::IoRequest;

const A: u64 = 1;
const B: u64 = 2;

fn start(t: &ScsiTarget, nexus: u64, cdb: &[u8], data: &[u8]) -> Start {
    t.start(Command {
        nexus,
        lun: 0,
        cdb: Bytes::copy_from_slice(cdb),
        data_out: Bytes::copy_from_slice(data).into(),
        expected_len: data.len() as u32,
    })
}

/// COMPARE AND WRITE (SBC-3 table 23) of one block at `lba`.
fn caw(lba: u64) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = 1;
    c
}

/// The store request a command waits on, and its continuation.
fn step(s: Start) -> Result<(IoRequest, Pending), scsi::Response> {
    match s {
        Start::Io {
            request, pending, ..
        } => Ok((request, pending)),
        Start::Done(r) => Err(r),
        other => panic!("no reservations are saved here: {other:?}"),
    }
}

fn is_busy(s: &Start) -> bool {
    matches!(s, Start::Done(r) if r.status == Status::Busy && r.sense.is_none())
}

/// Drives a command to its end.
fn run_to_end(mem: &mut Mem, mut s: Start) -> scsi::Response {
    loop {
        match s {
            Start::Done(r) => return r,
            Start::Io {
                request, pending, ..
            } => s = pending.finish(mem.exec(request)),
            other => panic!("no reservations are saved here: {other:?}"),
        }
    }
}

fn target() -> (ScsiTarget, Mem) {
    let mut t = ScsiTarget::new();
    t.add_lun(0, config(discard_caps()));
    (t, Mem::new((BS as u64 * BLOCKS) as usize))
}

/// While A's COMPARE AND WRITE is between its read and its write, B's commands that would
/// change those blocks get BUSY; on other blocks they go ahead; afterwards they go through.
#[rstest]
#[case::write10(cdb10(0x2A, 0, 7, 1).to_vec(), vec![0xBB; 512])]
#[case::write16_spanning(cdb16(0x8A, 0, 6, 2).to_vec(), vec![0xBB; 1024])]
#[case::write_and_verify(cdb10(0x2E, 0, 7, 1).to_vec(), vec![0xBB; 512])]
#[case::write_same(cdb10(0x41, 0, 0, 8).to_vec(), vec![0xBB; 512])]
#[case::orwrite(cdb16(0x8B, 0, 7, 1).to_vec(), vec![0xBB; 512])]
#[case::caw(caw(7).to_vec(), [vec![0; 512], vec![0xBB; 512]].concat())]
#[case::unmap(vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], {
    // UNMAP parameter list (SBC-3 table 77/78): one descriptor, LBA 7, 1 block.
    let mut d = vec![0, 22, 0, 16, 0, 0, 0, 0];
    d.extend(7u64.to_be_bytes());
    d.extend(1u32.to_be_bytes());
    d.extend([0; 4]);
    d
})]
fn a_write_cannot_land_inside_a_compare_and_write(#[case] cdb: Vec<u8>, #[case] data: Vec<u8>) {
    let (t, mut mem) = target();
    mem.data[7 * 512..8 * 512].fill(0x00);
    // A: COMPARE AND WRITE block 7, expecting zeroes, writing 0xAA. Its read is issued.
    let caw_data = [vec![0u8; 512], vec![0xAA; 512]].concat();
    let (read, pending) = step(start(&t, A, &caw(7), &caw_data)).unwrap();
    assert!(matches!(
        read,
        IoRequest::Read {
            offset: 3584,
            len: 512
        }
    ));
    // B, between A's read and A's write: BUSY, nothing reaches the store.
    assert!(is_busy(&start(&t, B, &cdb, &data)), "B held off");
    // B on other blocks is not held back.
    let elsewhere = run_to_end(&mut mem, start(&t, B, &cdb10(0x2A, 0, 100, 1), &[1; 512]));
    assert_eq!(elsewhere.status, Status::Good);
    // A's read completes (the compare matches), its write goes out; B still held off.
    let next = pending.finish(mem.exec(read));
    let (write, pending) = step(next).unwrap();
    assert!(matches!(write, IoRequest::Write { offset: 3584, .. }));
    assert!(
        is_busy(&start(&t, B, &cdb, &data)),
        "B held off during A's write"
    );
    let done = pending.finish(mem.exec(write));
    assert!(matches!(done, Start::Done(ref r) if r.status == Status::Good));
    assert!(mem.data[3584..4096].iter().all(|&b| b == 0xAA));
    // A is done: B goes through.
    let r = run_to_end(&mut mem, start(&t, B, &cdb, &data));
    assert_ne!(r.status, Status::Busy);
}

/// The other way round: a write in flight from B holds off A's COMPARE AND WRITE, which
/// could otherwise compare against data that B's write is about to replace.
#[test]
fn a_compare_and_write_waits_for_writes_in_flight() {
    let (t, mut mem) = target();
    let (write, pending) = step(start(&t, B, &cdb10(0x2A, 0, 7, 1), &[0xBB; 512])).unwrap();
    let caw_data = [vec![0u8; 512], vec![0xAA; 512]].concat();
    assert!(is_busy(&start(&t, A, &caw(7), &caw_data)));
    // Plain writes do not wait for each other.
    let other = start(&t, A, &cdb10(0x2A, 0, 7, 1), &[0xCC; 512]);
    assert!(matches!(other, Start::Io { .. }));
    drop(other);
    let done = pending.finish(mem.exec(write));
    assert!(matches!(done, Start::Done(ref r) if r.status == Status::Good));
    // Now A compares against B's data: a miscompare, as serial order demands.
    let r = run_to_end(&mut mem, start(&t, A, &caw(7), &caw_data));
    assert_eq!(outcome(&r), MISCOMPARE);
}

/// A command whose Pending is dropped (its connection went away after the store let go)
/// releases its blocks.
#[test]
fn dropping_a_pending_write_releases_its_blocks() {
    let (t, _) = target();
    let (_, pending) = step(start(&t, B, &cdb10(0x2A, 0, 7, 1), &[1; 512])).unwrap();
    let caw_data = [vec![0u8; 512], vec![0xAA; 512]].concat();
    assert!(is_busy(&start(&t, A, &caw(7), &caw_data)));
    drop(pending);
    assert!(matches!(start(&t, A, &caw(7), &caw_data), Start::Io { .. }));
}
