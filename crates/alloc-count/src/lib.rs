//! Counts what a piece of code asks of the allocator, for tests that keep a hot path free
//! of allocations by construction rather than by a clock.
//!
//! Linking this crate (a dev-dependency) makes its counting allocator the test binary's
//! global allocator: it forwards every call to the system allocator and, while
//! [`count`] runs on a thread, counts that thread's `alloc` and `realloc` calls, so tests
//! running on other threads of the same binary do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Calls counted on this thread; `None` while not counting.
    static COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

fn counted() {
    // `try_with`: the allocator may be called while the thread's locals are torn down.
    let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
}

struct Counting;

// SAFETY: every call goes to the system allocator unchanged; only a thread-local counter
// (a const-initialised `Cell`, which never allocates) is touched besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocator calls (`alloc`, `realloc`) it made on this
/// thread.
pub fn count(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(Some(0)));
    f();
    COUNT
        .with(|c| c.replace(None))
        .expect("counting on this thread")
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_this_threads_calls_only() {
        assert_eq!(
            super::count(|| drop(std::hint::black_box(vec![0u8; 16]))),
            1
        );
        let grown = super::count(|| {
            let mut v: Vec<u8> = std::hint::black_box(Vec::with_capacity(1));
            v.extend_from_slice(&[0; 64]);
        });
        assert_eq!(grown, 2, "one alloc, one realloc");
        let other = super::count(|| {
            std::thread::scope(|s| {
                s.spawn(|| drop(std::hint::black_box(vec![0u8; 16])));
            })
        });
        // The spawned thread's allocations are not this thread's; spawning itself may
        // allocate here (its handle), but not the 16 bytes of the other thread.
        assert!(other <= 8, "{other}");
        assert_eq!(super::count(|| ()), 0);
    }
}
