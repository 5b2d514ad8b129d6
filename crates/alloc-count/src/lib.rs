//! Counts what a piece of code asks of the allocator, for tests that keep a hot path free
//! of allocations by construction rather than by a clock.
//!
//! Linking this crate (a dev-dependency) makes its counting allocator the test binary's
//! global allocator: it forwards every call to the system allocator and, while
//! [`count`] runs on a thread, counts that thread's `alloc` and `realloc` calls, so tests
//! running on other threads of the same binary do not disturb the count. For code that
//! allocates on threads of its own (a store completing on its threads), [`count_process`]
//! counts every thread's calls, and the bytes they ask for, while it runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Whether [`count_process`] is counting.
static PROCESS_WIDE: AtomicBool = AtomicBool::new(false);
static PROCESS_CALLS: AtomicUsize = AtomicUsize::new(0);
static PROCESS_BYTES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Calls counted on this thread; `None` while not counting.
    static COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Counts one call asking for `bytes`.
fn counted(bytes: usize) {
    // `try_with`: the allocator may be called while the thread's locals are torn down.
    let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
    if PROCESS_WIDE.load(Ordering::Relaxed) {
        PROCESS_CALLS.fetch_add(1, Ordering::Relaxed);
        PROCESS_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

struct Counting;

// SAFETY: every call goes to the system allocator unchanged; only a thread-local counter
// (a const-initialised `Cell`, which never allocates) and static atomics are touched
// besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(new_size);
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

/// What every thread of the process asked of the allocator while [`count_process`] ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// `alloc` and `realloc` calls.
    pub calls: usize,
    /// Bytes they asked for (a `realloc`'s new size).
    pub bytes: usize,
}

/// Runs `f` and returns the allocator calls every thread of the process made meanwhile
/// (and the bytes asked for). Process-wide: one such count at a time, and what other
/// threads of the test binary do meanwhile is counted too.
pub fn count_process(f: impl FnOnce()) -> Totals {
    let (calls, bytes) = (
        PROCESS_CALLS.load(Ordering::Relaxed),
        PROCESS_BYTES.load(Ordering::Relaxed),
    );
    PROCESS_WIDE.store(true, Ordering::SeqCst);
    f();
    PROCESS_WIDE.store(false, Ordering::SeqCst);
    Totals {
        calls: PROCESS_CALLS.load(Ordering::Relaxed) - calls,
        bytes: PROCESS_BYTES.load(Ordering::Relaxed) - bytes,
    }
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

    #[test]
    fn counts_every_threads_calls_and_bytes_process_wide() {
        let t = super::count_process(|| {
            std::thread::scope(|s| {
                s.spawn(|| drop(std::hint::black_box(vec![0u8; 4096])));
            })
        });
        // The other thread's 4096 bytes, and what spawning it takes.
        assert!(t.calls >= 1 && t.bytes >= 4096, "{t:?}");
        let nothing = super::count_process(|| ());
        assert!(nothing.bytes < 4096, "{nothing:?}");
    }
}
