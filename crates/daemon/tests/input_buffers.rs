//! The connection's socket input is read into buffers it already has: in steady state no
//! allocation per PDU or per batch, also while writes still at their store hold slices of
//! earlier input (`daemon::buffers::SocketBuffers::prepare_input`). Counted with the
//! workspace's counting global allocator (`alloc-count`) on this test's thread, not with a
//! clock.

use bytes::{BufMut, Bytes};
use daemon::buffers::SocketBuffers;
use std::collections::VecDeque;

/// Streams writes of `pdu` bytes each (a 48-byte header, then data) through the
/// buffers: the initiator sends `waiting` whole PDUs whenever the socket is empty, every
/// socket read takes as much as there is room for, the core splits off each complete
/// PDU, and its data stays
/// at the store until `hold` later writes have arrived. Returns the allocations made in
/// `batches` socket reads after `warm` reads of warm-up, the bytes taken then, and the
/// PDUs completed then.
fn stream(pdu: usize, waiting: usize, hold: usize, warm: usize, batches: usize) -> Streamed {
    stream_within(pdu, waiting, hold, warm, batches, SocketBuffers::KEEP)
}

/// What [`stream`] counted over the measured reads.
struct Streamed {
    allocations: usize,
    taken: usize,
    pdus: usize,
}

/// As [`stream`], the buffers holding at most `bound` bytes at the end.
fn stream_within(
    pdu: usize,
    waiting: usize,
    hold: usize,
    warm: usize,
    batches: usize,
    bound: usize,
) -> Streamed {
    let mut b = SocketBuffers::default();
    let mut in_flight: VecDeque<Bytes> = VecDeque::with_capacity(hold + 1);
    let stream: Vec<u8> = (0..pdu * 3).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut taken, mut socket) = (0usize, 0usize, 0usize);
    let mut run = |b: &mut SocketBuffers, n: usize, in_flight: &mut VecDeque<Bytes>| {
        let start = taken;
        for _ in 0..n {
            if socket == 0 {
                // The initiator sends its next window of whole PDUs.
                socket = waiting * pdu;
            }
            b.prepare_input();
            let room = b.input.capacity() - b.input.len();
            assert!(room >= SocketBuffers::MIN_READ);
            let read = room.min(socket);
            socket -= read;
            for _ in 0..read {
                b.input.put_u8(stream[sent % stream.len()]);
                sent += 1;
            }
            b.read_done(read);
            while b.input.len() >= pdu {
                let whole = b.input.split_to(pdu).freeze();
                let data = whole.slice(48..);
                assert_eq!(data[0], stream[(taken + 48) % stream.len()]);
                assert_eq!(data[pdu - 49], stream[(taken + pdu - 1) % stream.len()]);
                taken += pdu;
                if in_flight.len() == hold {
                    in_flight.pop_front();
                }
                if hold > 0 {
                    in_flight.push_back(data);
                }
            }
            b.settle();
        }
        taken - start
    };
    run(&mut b, warm, &mut in_flight);
    let mut taken = 0;
    let allocations = alloc_count::count(|| taken = run(&mut b, batches, &mut in_flight));
    let pdus = taken / pdu;
    assert!(b.capacity() <= bound, "{} bytes held", b.capacity());
    drop(in_flight);
    b.settle();
    assert!(
        b.capacity() <= SocketBuffers::KEEP + SocketBuffers::LARGE_INPUT,
        "{} bytes kept once the writes are done",
        b.capacity()
    );
    Streamed {
        allocations,
        taken,
        pdus,
    }
}

/// 4 KiB writes at QD32 whose data stays at the store until 32 later commands have
/// arrived (glfs): the data segments are slices of the input buffer, so the buffer
/// cannot be taken back while they live. After a warm-up, reading and splitting PDUs
/// asks the allocator for nothing, and every byte arrives intact.
#[test]
fn the_input_buffers_are_reused_while_writes_hold_slices_of_them() {
    let Streamed {
        allocations, taken, ..
    } = stream(48 + 4096, 16, 32, 50, 500);
    assert!(taken > 500 * SocketBuffers::MIN_READ);
    assert_eq!(allocations, 0, "allocations in 500 batches of steady state");
}

/// 1 MiB writes from libiscsi (FirstBurstLength and MaxBurstLength 256 KiB, InitialR2T=No,
/// our MaxRecvDataSegmentLength 256 KiB): four PDUs of 48 + 262144 bytes each, the
/// immediate data and three R2T-solicited Data-Out. Such a PDU does not fit a small input
/// buffer; the input grew for it (reallocations and fresh pages) and was given back after
/// the batch. Now it is read into a large input buffer the connection keeps, so a steady
/// stream asks the allocator for nothing: when the store lets go of the data at once
/// (write-behind), when a write's data is held until its last PDU is in (its segments
/// reach the store together), and when the last two writes are still at the store.
#[test]
fn a_stream_of_1m_writes_reads_its_256k_pdus_into_kept_buffers() {
    const PDU: usize = 48 + 256 * 1024;
    for hold in [0, 3, 7] {
        let held = (hold + 2) * SocketBuffers::LARGE_INPUT;
        let Streamed {
            allocations, taken, ..
        } = stream_within(PDU, 4, hold, 50, 500, SocketBuffers::KEEP + held);
        assert!(taken >= 100 * PDU, "hold {hold}: {taken} bytes");
        assert_eq!(allocations, 0, "hold {hold}: allocations in 500 reads");
    }
}

/// 64 KiB writes at QD16 while the initiator keeps the socket full (16 PDUs of 48 +
/// 65536 bytes waiting whenever it is empty): once a read has taken all the room it had,
/// the next gets a large input buffer's room, so a read takes in about four PDUs, not
/// one (an input buffer holds one such PDU and a part of the next: ~1.3 reads per PDU),
/// and the answers of those four leave in one write. Still no allocation in steady state,
/// with the store letting go at once or holding the last two writes.
///
/// (Before: a 64 KiB input buffer grew, a reallocation and fresh pages, for nearly every
/// such write and was given back after the batch; then an 84 KiB one held one PDU per
/// read.)
#[test]
fn a_stream_of_64k_writes_is_read_several_pdus_at_a_time() {
    const PDU: usize = 48 + 64 * 1024;
    for hold in [0, 2] {
        let held = 2 * SocketBuffers::LARGE_INPUT;
        let Streamed {
            allocations, pdus, ..
        } = stream_within(PDU, 16, hold, 50, 500, SocketBuffers::KEEP + held);
        // 500 reads of a large buffer's room (276 KiB): 4.2 PDUs each, less the reads
        // that take the last of a window of 16.
        assert!(pdus >= 3 * 500, "hold {hold}: {pdus} PDUs in 500 reads");
        assert_eq!(allocations, 0, "hold {hold}: allocations in 500 reads");
    }
}

/// What [`rounds`] counted over the measured rounds.
struct Rounds {
    allocations: usize,
    /// PDUs completed in each measured round.
    per_round: Vec<usize>,
    /// Socket reads per measured round, most.
    most_reads: usize,
}

/// Rounds of the connection's loop over a stream of `pdu`-byte writes: at the start of
/// each round the socket holds whatever was sent and not yet read, topped up to
/// `waiting` whole PDUs (the initiator's window, arriving faster than it is answered);
/// the round reads once, then reads on while [`SocketBuffers::read_on`] says so, as
/// the daemon's loop does with its non-blocking reads; the core splits off each complete
/// PDU after every read and its data stays at the store until `hold` later writes have
/// arrived; once a round has taken `sends_after` PDUs it has something to send (an R2T
/// for the next burst, answers), which `read_on` is told. Counts over `rounds` rounds
/// after `warm` rounds of warm-up.
fn rounds(pdu: usize, waiting: usize, hold: usize, warm: usize, rounds: usize) -> Rounds {
    rounds_sending(pdu, waiting, hold, usize::MAX, warm, rounds)
}

fn rounds_sending(
    pdu: usize,
    waiting: usize,
    hold: usize,
    sends_after: usize,
    warm: usize,
    rounds: usize,
) -> Rounds {
    let mut b = SocketBuffers::default();
    let mut in_flight: VecDeque<Bytes> = VecDeque::with_capacity(hold + 1);
    let (mut socket, mut sent, mut taken) = (0usize, 0usize, 0usize);
    // Allocated before the counting: the rounds push into kept capacity.
    let mut per_round = Vec::with_capacity(warm.max(rounds));
    let mut run = |b: &mut SocketBuffers, n: usize, in_flight: &mut VecDeque<Bytes>| {
        per_round.clear();
        let mut most_reads = 0;
        for _ in 0..n {
            // The socket's unread bytes, as whole PDUs plus the part of one read before.
            let unread_pdus = socket.div_ceil(pdu);
            socket += waiting.saturating_sub(unread_pdus) * pdu;
            let before = taken;
            b.begin_round();
            let mut reads = 0;
            loop {
                b.prepare_input();
                let room = b.input.capacity() - b.input.len();
                assert!(room >= SocketBuffers::MIN_READ);
                let read = room.min(socket);
                socket -= read;
                b.input.put_bytes((sent % 251) as u8, read);
                sent += read;
                reads += 1;
                b.read_done(read);
                while b.input.len() >= pdu {
                    let data = b.input.split_to(pdu).freeze().slice(48..);
                    taken += pdu;
                    if in_flight.len() == hold {
                        in_flight.pop_front();
                    }
                    if hold > 0 {
                        in_flight.push_back(data);
                    }
                }
                let to_send = (taken - before) / pdu >= sends_after;
                if !b.read_on(to_send) || socket == 0 {
                    // Done reading, or the next read would block.
                    break;
                }
            }
            b.settle();
            per_round.push((taken - before) / pdu);
            most_reads = most_reads.max(reads);
        }
        most_reads
    };
    run(&mut b, warm, &mut in_flight);
    let mut most_reads = 0;
    let allocations = alloc_count::count(|| most_reads = run(&mut b, rounds, &mut in_flight));
    let held = (hold * pdu).div_ceil(SocketBuffers::LARGE_INPUT) + 2;
    assert!(
        b.capacity() <= SocketBuffers::KEEP + held * SocketBuffers::LARGE_INPUT,
        "{} bytes held",
        b.capacity()
    );
    Rounds {
        allocations,
        per_round,
        most_reads,
    }
}

/// 64 KiB writes at QD16 arriving faster than they are answered: a round whose read
/// took all its room reads on what the socket already holds, so one round takes every
/// write that has arrived up to `SocketBuffers::ROUND_INPUT` (1 MiB: sixteen such PDUs;
/// before, a round read once, at most a large input buffer's 276 KiB, about four), and
/// the writes of the round reach their store together. With the last 16 writes' data
/// still at the store (QD16 on glfs) the connection still reads into buffers it has: no
/// allocation in steady state.
#[test]
fn a_round_reads_every_64k_write_waiting_up_to_its_cap() {
    const PDU: usize = 48 + 64 * 1024;
    // Sixteen waiting whenever a round begins (QD16): a round takes all sixteen, never
    // the ~4 of one read. Thirty-two waiting (more than the cap): a round takes at
    // least 15 (1 MiB of 65,584-byte PDUs) and at most what the read that crosses 1 MiB
    // finishes with, and leaves the rest for the next round.
    for (waiting, hold) in [(16, 0), (16, 16), (32, 0), (32, 16)] {
        let Rounds {
            allocations,
            per_round,
            most_reads,
        } = rounds(PDU, waiting, hold, 50, 300);
        let least = per_round.iter().min().copied().unwrap_or(0);
        let most = per_round.iter().max().copied().unwrap_or(0);
        let case = format!("{waiting} waiting, hold {hold}");
        if waiting == 16 {
            assert!(per_round.iter().all(|&n| n == 16), "{case}: {per_round:?}");
        }
        assert!(
            least >= SocketBuffers::ROUND_INPUT / PDU,
            "{case}: {least} PDUs in a round"
        );
        assert!(
            most * PDU <= SocketBuffers::ROUND_INPUT + SocketBuffers::LARGE_INPUT,
            "{case}: {most} PDUs in a round, over the cap"
        );
        assert!(most_reads <= 5, "{case}: {most_reads} reads in a round");
        assert_eq!(allocations, 0, "{case}: allocations in 300 rounds");
    }
    // Seven waiting (what the tenth round found in the socket at QD16): every round
    // takes all seven, in at most three reads (a small input buffer's room first when
    // the round before ended on a read that did not fill, then 276 KiB, then the rest).
    let Rounds {
        per_round,
        most_reads,
        allocations,
    } = rounds(PDU, 7, 16, 50, 300);
    assert!(per_round.iter().all(|&n| n == 7), "{per_round:?}");
    assert!(most_reads <= 3, "{most_reads} reads in a round");
    assert_eq!(allocations, 0);
}

/// 4 KiB writes at QD32 (48 + 4096 bytes each): a read that does not fill its room ends
/// the round's reading, as before; a window of 32 (132 KiB) is read in a round, in at
/// most three reads.
#[test]
fn a_round_of_small_writes_ends_with_the_read_that_does_not_fill() {
    const PDU: usize = 48 + 4096;
    let Rounds {
        per_round,
        most_reads,
        allocations,
    } = rounds(PDU, 32, 32, 50, 300);
    assert!(per_round.iter().all(|&n| n == 32), "{per_round:?}");
    assert!(most_reads <= 3, "{most_reads} reads in a round");
    assert_eq!(allocations, 0);
}

/// 1 MiB writes at QD4 (libiscsi: 256 KiB bursts, one R2T at a time): each burst's last
/// Data-Out makes the R2T for the next, so a round that has taken a burst has something
/// to send, and reads no further: the R2T leaves with that round's socket write instead
/// of waiting while the round reads another 256 KiB (on the memory store the R2T round
/// trips pace the row). With nothing to send the same stream is read on.
#[test]
fn a_round_with_something_to_send_reads_no_further() {
    const PDU: usize = 48 + 256 * 1024;
    let sending = rounds_sending(PDU, 4, 4, 1, 50, 300);
    assert_eq!(
        sending.most_reads, 1,
        "reads in a round with an R2T to send"
    );
    assert!(
        sending.per_round.iter().all(|&n| n <= 2),
        "{:?}",
        sending.per_round
    );
    assert_eq!(sending.allocations, 0);
    let silent = rounds_sending(PDU, 4, 4, usize::MAX, 50, 300);
    assert!(silent.most_reads > 1, "{} reads", silent.most_reads);
}
