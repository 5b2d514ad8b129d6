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

/// 4 KiB writes at QD32 whose data stays at the store until 32 later commands have
/// arrived (glfs): the data segments are slices of the input buffer, so the buffer
/// cannot be taken back while they live. After a warm-up, reading and splitting PDUs
/// asks the allocator for nothing, and every byte arrives intact.
#[test]
fn the_input_buffers_are_reused_while_writes_hold_slices_of_them() {
    const PDU: usize = 48 + 4096;
    const QD: usize = 32;
    let mut b = SocketBuffers::default();
    let mut in_flight: VecDeque<Bytes> = VecDeque::with_capacity(QD + 1);
    let stream: Vec<u8> = (0..PDU * 3).map(|i| (i % 251) as u8).collect();
    let mut sent = 0usize;
    let mut taken = 0usize;
    let mut batches = |b: &mut SocketBuffers, n: usize, in_flight: &mut VecDeque<Bytes>| {
        for _ in 0..n {
            // One socket read: as much as there is room for (16 PDUs are waiting).
            b.prepare_input();
            let room = (b.input.capacity() - b.input.len()).min(16 * PDU);
            assert!(room >= SocketBuffers::MIN_READ);
            for _ in 0..room {
                b.input.put_u8(stream[sent % stream.len()]);
                sent += 1;
            }
            // The core takes every complete PDU; its data stays at the store.
            while b.input.len() >= PDU {
                let pdu = b.input.split_to(PDU).freeze();
                let data = pdu.slice(48..);
                assert_eq!(data[0], stream[(taken + 48) % stream.len()]);
                assert_eq!(data[4095], stream[(taken + PDU - 1) % stream.len()]);
                taken += PDU;
                if in_flight.len() == QD {
                    in_flight.pop_front();
                }
                in_flight.push_back(data);
            }
            b.settle();
        }
    };
    batches(&mut b, 50, &mut in_flight);
    COUNT.with(|c| c.set(Some(0)));
    batches(&mut b, 500, &mut in_flight);
    let allocations = COUNT.with(|c| c.replace(None)).unwrap();
    assert!(taken > 500 * SocketBuffers::MIN_READ);
    assert_eq!(allocations, 0, "allocations in 500 batches of steady state");
    assert!(b.capacity() <= SocketBuffers::KEEP);
}
