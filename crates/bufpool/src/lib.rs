//! A process-wide pool of data buffers, so a read or a write does not allocate (and the
//! kernel does not fault in and zero) a fresh buffer per command.
//!
//! Used by the stores for read data (through `store_api::BufferPool`) and by the iSCSI core
//! for write data that arrives in several PDUs; it depends on `bytes` alone, so the sans-IO
//! core can use it. A store takes an empty `Vec` with at least the capacity it needs ([`BufferPool::take`]),
//! fills it, and hands it out as [`Bytes`] with [`BufferPool::bytes`]. When the last `Bytes`
//! pointing into it is dropped (Data-In written to the socket, a command aborted), the
//! buffer goes back to the pool instead of to the allocator. Buffers come in power-of-two
//! size classes from [`BufferPool::MIN_CLASS`] to [`BufferPool::MAX_CLASS`]; larger requests
//! are allocated and freed as before. The pool keeps at most [`BufferPool::KEEP`] bytes of
//! idle buffers in all; what is given back beyond that is freed, so the pool never holds
//! more than a burst's in-flight reads left behind, and at most `KEEP`.
//!
//! Without it, a 1 MiB read cost 256 page faults (the buffer is above glibc's mmap
//! threshold, or glibc trims the freed heap top) and half of the daemon's CPU went to
//! faults and `madvise` (docs/performance.md).

#![forbid(unsafe_code)]

mod segments;
pub use segments::Segments;

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Number of size classes: 4 KiB, 8 KiB, ... 16 MiB.
const CLASSES: usize = 13;

/// Idle read buffers by size class.
#[derive(Debug)]
pub struct BufferPool {
    /// Idle buffers of class `i`, each of capacity exactly `MIN_CLASS << i`.
    classes: [Mutex<Vec<Vec<u8>>>; CLASSES],
    /// Bytes of capacity held idle in `classes`.
    idle: AtomicUsize,
    /// The most `idle` may reach.
    keep: usize,
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::with_keep(Self::KEEP)
    }
}

impl BufferPool {
    /// The smallest buffer the pool hands out.
    pub const MIN_CLASS: usize = 4096;
    /// The largest pooled buffer; above it reads allocate as before.
    pub const MAX_CLASS: usize = Self::MIN_CLASS << (CLASSES - 1);
    /// Idle bytes the process-wide pool keeps at most.
    pub const KEEP: usize = 32 << 20;

    /// A pool that keeps at most `keep` idle bytes (tests; the daemon uses [`global`]).
    pub fn with_keep(keep: usize) -> BufferPool {
        BufferPool {
            classes: std::array::from_fn(|_| Mutex::new(Vec::new())),
            idle: AtomicUsize::new(0),
            keep,
        }
    }

    /// The pool every store of the process shares.
    pub fn global() -> &'static BufferPool {
        static POOL: OnceLock<BufferPool> = OnceLock::new();
        POOL.get_or_init(BufferPool::default)
    }

    fn class(len: usize) -> Option<usize> {
        if len > Self::MAX_CLASS {
            return None;
        }
        let size = len.max(Self::MIN_CLASS).next_power_of_two();
        Some((size / Self::MIN_CLASS).trailing_zeros() as usize)
    }

    /// An empty buffer with room for at least `len` bytes: an idle one of its size class
    /// if there is one, else a new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let Some(class) = Self::class(len) else {
            return Vec::with_capacity(len);
        };
        let reused = self.classes[class].lock().unwrap().pop();
        match reused {
            Some(buf) => {
                self.idle.fetch_sub(buf.capacity(), Ordering::Relaxed);
                buf
            }
            None => Vec::with_capacity(Self::MIN_CLASS << class),
        }
    }

    /// Takes `buf` back for reuse (it is freed instead when it is not of a size class or
    /// the pool already keeps its limit).
    pub fn give(&self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        let Some(class) = Self::class(cap).filter(|&c| Self::MIN_CLASS << c == cap) else {
            return;
        };
        let reserved = self
            .idle
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |idle| {
                (idle + cap <= self.keep).then_some(idle + cap)
            });
        if reserved.is_ok() {
            buf.clear();
            self.classes[class].lock().unwrap().push(buf);
        }
    }

    /// Bytes of idle buffers the pool holds.
    pub fn idle_bytes(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }

    /// `buf` (filled) as `Bytes`; the buffer comes back to this pool when the last `Bytes`
    /// (or slice of it) is dropped.
    pub fn bytes(&'static self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool: self })
    }
}

/// A filled buffer lent out as `Bytes`; back to its pool on drop.
struct Pooled {
    buf: Vec<u8>,
    pool: &'static BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(keep: usize) -> &'static BufferPool {
        Box::leak(Box::new(BufferPool::with_keep(keep)))
    }

    #[test]
    fn a_returned_buffer_is_reused_for_the_next_read_of_its_class() {
        let pool = leaked(1 << 20);
        let mut buf = pool.take(65536);
        assert_eq!(buf.capacity(), 65536);
        buf.extend_from_slice(&[7u8; 65536]);
        let ptr = buf.as_ptr();
        let bytes = pool.bytes(buf);
        let slice = bytes.slice(100..200);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds it");
        assert_eq!(&slice[..], &[7u8; 100][..]);
        drop(slice);
        assert_eq!(pool.idle_bytes(), 65536);
        // 40 000 bytes round up to the same 64 KiB class.
        let again = pool.take(40_000);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn size_classes_are_powers_of_two_from_4k() {
        let pool = leaked(0);
        for (len, cap) in [
            (0, 4096),
            (1, 4096),
            (4096, 4096),
            (4097, 8192),
            (1 << 20, 1 << 20),
            ((1 << 20) + 512, 2 << 20),
            (BufferPool::MAX_CLASS, BufferPool::MAX_CLASS),
        ] {
            assert_eq!(pool.take(len).capacity(), cap, "take({len})");
        }
        // Above the largest class: exactly what was asked for, never pooled.
        let big = BufferPool::MAX_CLASS + 1;
        let buf = pool.take(big);
        assert!(buf.capacity() >= big && buf.capacity() < 2 * BufferPool::MAX_CLASS);
        let pool = leaked(usize::MAX);
        pool.give(buf);
        assert_eq!(pool.idle_bytes(), 0);
        // Nor a buffer whose capacity is not a class size.
        pool.give(Vec::with_capacity(5000));
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn idle_buffers_never_exceed_the_keep_limit() {
        let keep = 3 << 20;
        let pool = leaked(keep);
        // A burst of 64 reads of 1 MiB in flight at once, then all written.
        let burst: Vec<Bytes> = (0..64)
            .map(|i| {
                let mut b = pool.take(1 << 20);
                b.resize(1 << 20, i as u8);
                pool.bytes(b)
            })
            .collect();
        drop(burst);
        assert_eq!(pool.idle_bytes(), keep, "three kept, the rest freed");
        let total: usize = pool
            .classes
            .iter()
            .map(|c| c.lock().unwrap().iter().map(Vec::capacity).sum::<usize>())
            .sum();
        assert_eq!(total, keep);
    }
}
