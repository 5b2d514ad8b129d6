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
