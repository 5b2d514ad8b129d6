//! Write data as it arrived: the data segments of the PDUs that carried it, in order,
//! each a slice of the buffer it was read into. A write that came in several PDUs (a
//! 1 MiB write: immediate data, then R2T-solicited Data-Out) is handed to its store as
//! these slices, which a store writes with one vectored call (`pwritev`,
//! `glfs_pwritev_async`), instead of being gathered into one contiguous copy first.

use crate::BufferPool;
use bytes::Bytes;
use std::fmt;
use std::ops::{Bound, RangeBounds};

/// Segments kept without an allocation of their own; more move to a `Vec`. Five is what
/// a 1 MiB write from libiscsi or Linux arrives in (64 KiB of immediate data and four
/// 256 KiB Data-Out PDUs).
const INLINE: usize = 6;

/// The bytes of one write, as one or more non-empty [`Bytes`] segments in order.
/// Cloning clones reference counts, never data.
#[derive(Clone, Default)]
pub struct Segments {
    parts: Parts,
    len: usize,
}

#[derive(Clone)]
enum Parts {
    Inline([Bytes; INLINE], u8),
    Heap(Vec<Bytes>),
}

impl Default for Parts {
    fn default() -> Self {
        Parts::Inline(Default::default(), 0)
    }
}

impl Segments {
    /// No bytes.
    pub fn new() -> Segments {
        Segments::default()
    }

    /// Appends `data` after what is there (an empty `data` adds nothing).
    pub fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        match &mut self.parts {
            Parts::Inline(parts, n) if usize::from(*n) < INLINE => {
                parts[usize::from(*n)] = data;
                *n += 1;
            }
            Parts::Inline(parts, _) => {
                let mut heap: Vec<Bytes> = Vec::with_capacity(2 * INLINE);
                heap.extend(parts.iter_mut().map(std::mem::take));
                heap.push(data);
                self.parts = Parts::Heap(heap);
            }
            Parts::Heap(heap) => heap.push(data),
        }
    }

    /// The segments, in order; none is empty.
    pub fn parts(&self) -> &[Bytes] {
        match &self.parts {
            Parts::Inline(parts, n) => &parts[..usize::from(*n)],
            Parts::Heap(heap) => heap,
        }
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes in one piece: the segment itself when there is one (no copy), else a
    /// copy gathered into a buffer of the process-wide pool. For the commands that parse
    /// or compare their data (COMPARE AND WRITE, parameter lists), never for plain writes.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts() {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => {
                let pool = BufferPool::global();
                let mut buf = pool.take(self.len);
                for part in parts {
                    buf.extend_from_slice(part);
                }
                pool.bytes(buf)
            }
        }
    }

    /// The bytes of `range` (offsets into the whole), sharing the segments' buffers.
    ///
    /// # Panics
    /// When the range runs past the end, as slicing does.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Segments {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e + 1,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        assert!(
            start <= end && end <= self.len,
            "range {start}..{end} out of {}",
            self.len
        );
        let mut out = Segments::new();
        let mut at = 0;
        for part in self.parts() {
            let (from, to) = (at, at + part.len());
            at = to;
            if to <= start || from >= end {
                continue;
            }
            out.push(part.slice(start.max(from) - from..end.min(to) - from));
        }
        out
    }

    /// Copies the bytes into `out`, which must be exactly [`Segments::len`] long.
    pub fn copy_to_slice(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.len, "copy_to_slice needs a slice of len()");
        let mut at = 0;
        for part in self.parts() {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
}

impl From<Bytes> for Segments {
    fn from(data: Bytes) -> Segments {
        let mut s = Segments::new();
        s.push(data);
        s
    }
}

impl From<Vec<u8>> for Segments {
    fn from(data: Vec<u8>) -> Segments {
        Bytes::from(data).into()
    }
}

impl From<&'static [u8]> for Segments {
    fn from(data: &'static [u8]) -> Segments {
        Bytes::from_static(data).into()
    }
}

impl PartialEq<[u8]> for Segments {
    fn eq(&self, other: &[u8]) -> bool {
        if other.len() != self.len {
            return false;
        }
        let mut at = 0;
        self.parts().iter().all(|part| {
            let same = other[at..at + part.len()] == part[..];
            at += part.len();
            same
        })
    }
}

impl PartialEq for Segments {
    /// Equal bytes, however they are split into segments.
    fn eq(&self, other: &Segments) -> bool {
        self.len == other.len && *self == other.to_bytes()[..]
    }
}

impl Eq for Segments {}

impl fmt::Debug for Segments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Segments({} bytes in {} parts)",
            self.len,
            self.parts().len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &[u8], cuts: &[usize]) -> Segments {
        let all = Bytes::copy_from_slice(data);
        let mut s = Segments::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([data.len()].iter()) {
            s.push(all.slice(at..cut));
            at = cut;
        }
        s
    }

    #[test]
    fn segments_keep_their_buffers_and_order_without_copying() {
        let a = Bytes::from(vec![1u8; 100]);
        let b = Bytes::from(vec![2u8; 50]);
        let mut s = Segments::new();
        s.push(a.clone());
        s.push(Bytes::new());
        s.push(b.clone());
        assert_eq!(s.len(), 150);
        assert_eq!(s.parts().len(), 2, "empty segments are not kept");
        assert_eq!(s.parts()[0].as_ptr(), a.as_ptr());
        assert_eq!(s.parts()[1].as_ptr(), b.as_ptr());
        let mut want = vec![1u8; 100];
        want.extend([2u8; 50]);
        assert!(s == want[..]);
        assert_eq!(&s.to_bytes()[..], &want[..]);
        // One segment comes out as itself.
        let one = Segments::from(a.clone());
        assert_eq!(one.to_bytes().as_ptr(), a.as_ptr());
    }

    #[test]
    fn more_segments_than_inline_spill_in_order() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let cuts: Vec<usize> = (1..20).map(|i| i * 250).collect();
        let s = split(&data, &cuts);
        assert_eq!(s.parts().len(), 20);
        assert!(s == data[..]);
        let mut out = vec![0; 5000];
        s.copy_to_slice(&mut out);
        assert_eq!(out, data);
    }

    #[test]
    fn slices_cut_across_segments_and_equality_ignores_the_split() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let s = split(&data, &[1000, 1024, 2500]);
        for (from, to) in [
            (0, 3000),
            (0, 1000),
            (999, 1025),
            (1024, 1024),
            (2000, 3000),
        ] {
            let part = s.slice(from..to);
            assert_eq!(part.len(), to - from);
            assert!(part == data[from..to], "{from}..{to}");
            assert_eq!(part, Segments::from(data[from..to].to_vec()));
        }
        assert_eq!(s.slice(..).parts().len(), 4);
        assert_ne!(s, Segments::from(vec![0u8; 3000]));
        assert_ne!(s.slice(..10), s.slice(..11));
    }
}
