//! What the iSCSI core allocates per command in steady state: batches of 32 SCSI
//! commands (4 KiB WRITE(10) with immediate data, 4 KiB READ(10)) fed from one input
//! buffer, answered, and drained through a [`crate::Transmit`] as the daemon drains it
//! (`io_slices`, `advance`, `shrink_to`), counted with the counting allocator of `alloc-count` on this
//! test's thread, never with a clock. The PDUs and the read data are made before counting;
//! the read data is shared already, as a store's pooled buffers are.

use super::initiator::*;
use crate::{CommandResponse, Event, Limits, Transmit};
use bytes::{Bytes, BytesMut};
use std::io::IoSlice;

use alloc_count::count;

const QD: u32 = 32;
const BATCHES: u32 = 20;

/// WRITE(10) (SBC-3 table 219) or READ(10) (table 97) of 8 blocks of 512 bytes at `lba`.
fn cdb(write: bool, lba: u32) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = if write { 0x2a } else { 0x28 };
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[8] = 8;
    c
}

/// Feeds `batches` batches of `QD` commands (ITTs and CmdSNs going on from `first`) and
/// answers each batch before the next, as the daemon does. Returns the allocator calls
/// made and the responses sent.
fn stream(
    (i, input, tx): (&mut Initiator, &mut BytesMut, &mut Transmit),
    write: bool,
    first: u32,
    batches: u32,
) -> (usize, usize) {
    let data = vec![0xa5u8; 4096];
    let wire: Vec<Vec<u8>> = (0..batches)
        .map(|b| {
            (0..QD)
                .flat_map(|n| {
                    let k = first + b * QD + n;
                    let cdb = cdb(write, (k % 64) * 8);
                    let immediate: &[u8] = if write { &data } else { &[] };
                    scsi_cmd(false, true, !write, write, k, 4096, k, &cdb, immediate)
                })
                .collect()
        })
        .collect();
    // Shared already, as a store's buffers are (`Bytes::from_owner`): a clone is a count.
    let mut reads: Vec<Bytes> = (0..batches * QD)
        .map(|_| {
            let data = Bytes::from(vec![0x5au8; 4096]);
            drop(data.clone());
            data
        })
        .collect();
    let mut responses = 0;
    let calls = count(|| {
        for bytes in &wire {
            // The socket read: into the input buffer, taken back once its slices are gone.
            input.reserve(bytes.len());
            input.extend_from_slice(bytes);
            i.conn.handle_input(input).expect("no protocol error");
            assert!(input.is_empty());
            while let Some(event) = i.conn.poll_event() {
                let Event::Command(cmd) = event else {
                    panic!("only commands here");
                };
                assert_eq!(cmd.data_out.len(), if write { 4096 } else { 0 });
                let data_in = if write {
                    Bytes::new()
                } else {
                    reads.pop().expect("a read buffer per read")
                };
                i.conn.complete_command(
                    cmd.itt,
                    CommandResponse {
                        status: 0,
                        data_in,
                        sense: None,
                        transfer_len: 4096,
                    },
                );
            }
            tx.reset_counters();
            i.conn.poll_transmit(&mut *tx);
            responses += tx.counters().1;
            // The socket write: every chunk taken, then the buffers settle.
            let written: usize = {
                let mut slices = [IoSlice::new(&[]); 128];
                let n = tx.io_slices(&mut slices);
                slices[..n].iter().map(|s| s.len()).sum()
            };
            tx.advance(written);
            assert!(tx.is_empty());
            tx.shrink_to(16 * 1024);
        }
    });
    (calls, responses)
}

#[test]
fn a_4k_write_or_read_allocates_nothing_in_the_iscsi_core() {
    // The counting allocator is this binary's.
    assert_eq!(count(|| drop(std::hint::black_box(vec![0u8; 16]))), 1);
    let mut i = Initiator::new(config_with(Limits::default()));
    i.login_normal();
    i.take_events();
    // The connection's socket buffers, kept across batches as the daemon keeps them.
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut tx = Transmit::new();
    // The first rounds size the task table, the ready queues and the buffers.
    let mut next = 1;
    for write in [true, false] {
        stream((&mut i, &mut input, &mut tx), write, next, BATCHES);
        next += BATCHES * QD;
    }
    let (writes, sent) = stream((&mut i, &mut input, &mut tx), true, next, BATCHES);
    assert_eq!(sent, (BATCHES * QD) as usize, "one response per write");
    next += BATCHES * QD;
    let (reads, sent) = stream((&mut i, &mut input, &mut tx), false, next, BATCHES);
    // Phase collapse: a read's status rides on its one Data-In PDU.
    assert_eq!(sent, (BATCHES * QD) as usize, "one PDU per read");
    // Nothing per command; the task table (a hash map keyed by ITT, random seed) may still
    // grow once while its tombstones settle, so the bound is one call per 100 commands.
    let bound = (BATCHES * QD / 100) as usize;
    assert!(
        writes <= bound && reads <= bound,
        "allocator calls: {writes} for {n} writes and {reads} for {n} reads of 4 KiB",
        n = BATCHES * QD
    );
}
