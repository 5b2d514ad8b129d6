//! How fast one core of this machine copies out of memory larger than its caches: the
//! least a read of stored bytes costs the core that sends it. The memory store's Data-In
//! is the kernel's copy of the store's bytes into the socket; tgt's null store sends one
//! buffer it never fills, so the memory store against tgt null pays this and tgt does not
//! (docs/performance.md, twenty-third round).

use serde::Serialize;
use std::hint::black_box;
use std::time::Instant;

/// The piece copied at a time: a 64 KiB read's data, the size of a send.
pub const PIECE: usize = 64 << 10;

/// The rate measured, and on what.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryCopy {
    /// Bytes per second, the best pass.
    pub bytes_per_s: f64,
    /// The buffer copied from.
    pub buffer_bytes: u64,
    pub passes: u32,
}

impl MemoryCopy {
    /// Copies `PIECE`-sized pieces of a `len`-byte buffer (every byte written first, so
    /// every page is one of its own, not the kernel's shared zero page) into one
    /// `PIECE`-sized buffer, in order, `passes` times; the best pass's rate.
    pub fn measure(len: usize, passes: u32) -> MemoryCopy {
        let len = len.max(PIECE) / PIECE * PIECE;
        let passes = passes.max(1);
        let from = vec![0x5a_u8; len];
        let mut to = vec![0u8; PIECE];
        let mut best = f64::INFINITY;
        for _ in 0..passes {
            let start = Instant::now();
            for piece in from.chunks_exact(PIECE) {
                to.copy_from_slice(black_box(piece));
                black_box(&mut to);
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        MemoryCopy {
            bytes_per_s: len as f64 / best.max(1e-9),
            buffer_bytes: len as u64,
            passes,
        }
    }

    /// Microseconds one core takes at least to copy `bytes` out of memory.
    pub fn floor_us(&self, bytes: u64) -> f64 {
        bytes as f64 / self.bytes_per_s * 1e6
    }

    /// The report's line: `one core copies 10.4 GB/s out of memory (...)`.
    pub fn describe(&self) -> String {
        format!(
            "one core copies {:.1} GB/s out of memory ({} KiB pieces of a {} MiB buffer, the \
             best of {} passes): the least a read of stored bytes costs the core that sends \
             it, {:.1} us per 64 KiB",
            self.bytes_per_s / 1e9,
            PIECE >> 10,
            self.buffer_bytes >> 20,
            self.passes,
            self.floor_us(PIECE as u64)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_bytes_over_the_rate() {
        let m = MemoryCopy {
            bytes_per_s: 10.0e9,
            buffer_bytes: 256 << 20,
            passes: 3,
        };
        assert!((m.floor_us(65536) - 6.5536).abs() < 1e-9);
        assert!((m.floor_us(4096) - 0.4096).abs() < 1e-9);
        assert_eq!(
            m.describe(),
            "one core copies 10.0 GB/s out of memory (64 KiB pieces of a 256 MiB buffer, the \
             best of 3 passes): the least a read of stored bytes costs the core that sends it, \
             6.6 us per 64 KiB"
        );
    }

    #[test]
    fn a_measurement_copies_whole_pieces_of_the_buffer() {
        // A small buffer (cached, so fast): what is checked is the bookkeeping, the
        // buffer rounded down to whole pieces and a finite, positive rate.
        let m = MemoryCopy::measure(4 * PIECE + 100, 2);
        assert_eq!(m.buffer_bytes, 4 * PIECE as u64);
        assert_eq!(m.passes, 2);
        assert!(m.bytes_per_s.is_finite() && m.bytes_per_s > 0.0, "{m:?}");
    }
}
