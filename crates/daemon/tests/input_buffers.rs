//! The connection's socket input is read into buffers it already has: in steady state no
//! allocation per PDU or per batch, also while writes still at their store hold slices of
//! earlier input (`daemon::buffers::SocketBuffers::prepare_input`). Counted with a counting
//! global allocator on this test's thread, not with a clock.

use bytes::{BufMut, Bytes};
use daemon::buffers::SocketBuffers;
use std::collections::VecDeque;

thread_local! {
    /// Allocations made on this thread while counting (other tests run on other
    /// threads of the same process).
    static COUNT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

struct Counting;

// SAFETY: forwards to the system allocator, only counting.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
        std::alloc::System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Streams writes of `pdu` bytes each (a 48-byte header, then data) through the
/// buffers: the initiator sends `waiting` whole PDUs whenever the socket is empty, every
/// socket read takes as much as there is room for, the core splits off each complete
/// PDU, and its data stays
/// at the store until `hold` later writes have arrived. Returns the allocations made in
/// `batches` batches after `warm` batches of warm-up, and the bytes taken then.
fn stream(pdu: usize, waiting: usize, hold: usize, warm: usize, batches: usize) -> (usize, usize) {
    stream_within(pdu, waiting, hold, warm, batches, SocketBuffers::KEEP)
}

/// As [`stream`], the buffers holding at most `bound` bytes at the end.
fn stream_within(
    pdu: usize,
    waiting: usize,
    hold: usize,
    warm: usize,
    batches: usize,
    bound: usize,
) -> (usize, usize) {
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
    COUNT.with(|c| c.set(Some(0)));
    let taken = run(&mut b, batches, &mut in_flight);
    let allocations = COUNT.with(|c| c.replace(None)).unwrap();
    assert!(b.capacity() <= bound, "{} bytes held", b.capacity());
    drop(in_flight);
    b.settle();
    assert!(
        b.capacity() <= SocketBuffers::KEEP + SocketBuffers::LARGE_INPUT,
        "{} bytes kept once the writes are done",
        b.capacity()
    );
    (allocations, taken)
}

/// 4 KiB writes at QD32 whose data stays at the store until 32 later commands have
/// arrived (glfs): the data segments are slices of the input buffer, so the buffer
/// cannot be taken back while they live. After a warm-up, reading and splitting PDUs
/// asks the allocator for nothing, and every byte arrives intact.
#[test]
fn the_input_buffers_are_reused_while_writes_hold_slices_of_them() {
    let (allocations, taken) = stream(48 + 4096, 16, 32, 50, 500);
    assert!(taken > 500 * SocketBuffers::MIN_READ);
    assert_eq!(allocations, 0, "allocations in 500 batches of steady state");
}

/// 64 KiB writes at QD16, all immediate data (libiscsi's and Linux's FirstBurstLength
/// is 64 KiB), so every PDU is 48 + 65536 bytes: larger than a 64 KiB input buffer,
/// which grew (a reallocation, and fresh pages for the kernel to fault in) for nearly
/// every write and was given back after the batch. Each PDU now fits a buffer the
/// connection has, both when the store lets go of the data at once (Gluster's
/// write-behind acknowledges inside the submit) and when it holds the last two writes.
#[test]
fn a_stream_of_64k_writes_never_grows_the_input_buffer() {
    const PDU: usize = 48 + 64 * 1024;
    for hold in [0, 2] {
        let (allocations, taken) = stream(PDU, 16, hold, 50, 500);
        assert!(taken >= 500 * PDU / 2, "hold {hold}: {taken} bytes");
        assert_eq!(allocations, 0, "hold {hold}: allocations in 500 reads");
    }
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
        let (allocations, taken) = stream_within(PDU, 4, hold, 50, 500, SocketBuffers::KEEP + held);
        assert!(taken >= 100 * PDU, "hold {hold}: {taken} bytes");
        assert_eq!(allocations, 0, "hold {hold}: allocations in 500 reads");
    }
}
