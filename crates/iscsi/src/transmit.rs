//! Outgoing PDUs as a list of chunks for one vectored socket write.
//!
//! [`crate::Connection::poll_transmit`] appends the PDUs that are ready to a
//! [`PduSink`]. A `BytesMut` sink gets every byte copied into it (simple, used by tests
//! and the login path). A [`Transmit`] sink copies only headers, padding and short data
//! segments; a data segment of [`INLINE_MAX`] bytes or more is kept as the `Bytes` it
//! already is (for Data-In: the store's read buffer, sliced, never copied), so the
//! driver writes it straight from there with `writev`.

use crate::pdu::{self, Bhs, Digests};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Data segments shorter than this are copied next to their header (one iovec is
/// not worth it for sense data or a text answer); longer ones are sent in place.
pub const INLINE_MAX: usize = 1024;

/// Where `poll_transmit` puts PDUs.
pub trait PduSink {
    /// Appends one PDU: `bhs` (its DataSegmentLength is set here), `data`, padding,
    /// and the digests in force.
    fn put_pdu(&mut self, bhs: &Bhs, data: &Bytes, digests: Digests);
}

impl PduSink for BytesMut {
    fn put_pdu(&mut self, bhs: &Bhs, data: &Bytes, digests: Digests) {
        pdu::encode_with(self, bhs, data, digests);
    }
}

/// PDUs waiting for the socket: chunks in order, the last of them still growing in
/// `buf`. What it copies is bounded by headers and short segments:
/// what [`Transmit::counters`] reports as copied never exceeds `pdus * (48 + 4 +
/// INLINE_MAX + 3 + 4)` (header, header digest, short segment, padding, data digest).
#[derive(Debug, Default)]
pub struct Transmit {
    /// Headers and short segments not yet closed into a chunk.
    buf: BytesMut,
    /// Closed chunks, in send order.
    chunks: VecDeque<Bytes>,
    /// Bytes waiting in total.
    len: usize,
    /// Bytes copied into `buf` since [`Transmit::new`] or the last [`Transmit::reset_counters`].
    copied: usize,
    /// PDUs appended since then.
    pdus: usize,
}

impl PduSink for Transmit {
    fn put_pdu(&mut self, bhs: &Bhs, data: &Bytes, digests: Digests) {
        let before = self.buf.len();
        let total;
        if data.len() < INLINE_MAX {
            pdu::encode_with(&mut self.buf, bhs, data, digests);
            total = self.buf.len() - before;
            self.copied += total;
        } else {
            // The same bytes as encode_with, the data segment left where it is.
            let mut bhs = *bhs;
            bhs.set_data_segment_len(data.len() as u32);
            let pad = &[0u8; 3][..pdu::pad4(data.len()) - data.len()];
            self.buf.put_slice(&bhs.0);
            if digests.header {
                self.buf.put_slice(&pdu::crc32c(&[&bhs.0]));
            }
            let head = self.buf.len() - before;
            self.close_buf();
            self.chunks.push_back(data.clone());
            self.buf.put_slice(pad);
            if digests.data {
                self.buf.put_slice(&pdu::crc32c(&[data, pad]));
            }
            let tail = self.buf.len();
            self.copied += head + tail;
            total = head + data.len() + tail;
        }
        self.len += total;
        self.pdus += 1;
    }
}

impl Transmit {
    /// An empty transmit; its header buffer grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes copied (headers, padding, short segments) and PDUs appended since the
    /// last [`Transmit::reset_counters`].
    pub fn counters(&self) -> (usize, usize) {
        (self.copied, self.pdus)
    }

    /// Starts counting copies and PDUs afresh.
    pub fn reset_counters(&mut self) {
        self.copied = 0;
        self.pdus = 0;
    }

    /// Capacity of the header buffer: what an idle connection keeps for its output.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Gives back a header buffer grown beyond `keep` bytes once everything is
    /// written, so a burst does not stay resident for the connection's life. (A split
    /// `BytesMut` still points into its whole allocation: `reserve` takes all of it back
    /// when we are its only owner, and then its true size shows in `capacity`.)
    pub fn shrink_to(&mut self, keep: usize) {
        if !self.is_empty() {
            return;
        }
        self.chunks.clear();
        self.buf.clear();
        self.buf.reserve(keep);
        if self.buf.capacity() > keep {
            self.buf = BytesMut::with_capacity(keep);
        }
    }

    fn close_buf(&mut self) {
        if !self.buf.is_empty() {
            self.chunks.push_back(self.buf.split().freeze());
        }
    }

    /// Fills `dst` with the chunks to write next, in order; returns how many. Call
    /// [`Transmit::advance`] with what the socket took.
    pub fn io_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.close_buf();
        let mut n = 0;
        for (slot, chunk) in dst.iter_mut().zip(self.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// Drops the first `n` bytes (written to the socket).
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advance past the end");
        self.close_buf();
        self.len -= n;
        while n > 0 {
            let front = self.chunks.front_mut().expect("len counts the chunks");
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.len == 0 {
            // Only padding of a last segment may still sit in buf; nothing when empty.
            self.chunks.clear();
            self.buf.clear();
        }
    }

    /// Everything waiting as one contiguous buffer (tests, and drivers without
    /// vectored writes); empties the transmit.
    pub fn take_all(&mut self) -> BytesMut {
        self.close_buf();
        let mut out = BytesMut::with_capacity(self.len);
        for c in self.chunks.drain(..) {
            out.extend_from_slice(&c);
        }
        self.len = 0;
        out
    }

    /// The waiting chunks (tests look at where they point).
    pub fn chunks(&mut self) -> impl Iterator<Item = &Bytes> {
        self.close_buf();
        self.chunks.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::TargetOpcode;

    fn data_in(len: usize) -> (Bhs, Bytes) {
        let b = Bhs::target(TargetOpcode::DataIn);
        let data = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
        (b, data)
    }

    #[test]
    fn same_bytes_as_the_copying_sink_with_long_segments_sent_in_place() {
        let mut copy = BytesMut::new();
        let mut tx = Transmit::new();
        let pdus = [
            data_in(0),
            data_in(13),
            data_in(65536),
            data_in(4097),
            data_in(100),
        ];
        for (b, d) in &pdus {
            copy.put_pdu(b, d, Digests::default());
            tx.put_pdu(b, d, Digests::default());
        }
        assert_eq!(tx.len(), copy.len());
        // Long segments are the caller's buffers themselves.
        let ptrs: Vec<*const u8> = tx.chunks().map(|c| c.as_ptr()).collect();
        assert!(ptrs.contains(&pdus[2].1.as_ptr()));
        assert!(ptrs.contains(&pdus[3].1.as_ptr()));
        // Copied: five headers, the 13- and 100-byte segments with their padding, and
        // the 3 padding bytes of the 4097-byte segment.
        assert_eq!(tx.counters(), (5 * 48 + 16 + 100 + 3, 5));
        assert_eq!(tx.take_all(), copy);
        assert!(tx.is_empty());
    }

    #[test]
    fn digests_are_the_same_bytes_as_the_copying_sink() {
        for digests in [
            Digests {
                header: true,
                data: false,
            },
            Digests {
                header: false,
                data: true,
            },
            Digests {
                header: true,
                data: true,
            },
        ] {
            let mut copy = BytesMut::new();
            let mut tx = Transmit::new();
            for (b, d) in [data_in(4097), data_in(0), data_in(9), data_in(8192)] {
                copy.put_pdu(&b, &d, digests);
                tx.put_pdu(&b, &d, digests);
            }
            assert_eq!(tx.len(), copy.len(), "{digests:?}");
            assert_eq!(tx.take_all(), copy, "{digests:?}");
        }
    }

    #[test]
    fn partial_writes_resume_where_the_socket_stopped() {
        let mut copy = BytesMut::new();
        let mut tx = Transmit::new();
        for (b, d) in [data_in(5000), data_in(7), data_in(2048)] {
            copy.put_pdu(&b, &d, Digests::default());
            tx.put_pdu(&b, &d, Digests::default());
        }
        let mut written = Vec::new();
        // A socket that takes 777 bytes per call, across chunk boundaries.
        while !tx.is_empty() {
            let mut iov = [IoSlice::new(&[]); 4];
            let n = tx.io_slices(&mut iov);
            let mut take = 777;
            for s in &iov[..n] {
                let k = take.min(s.len());
                written.extend_from_slice(&s[..k]);
                take -= k;
            }
            let did = 777 - take;
            tx.advance(did);
        }
        assert_eq!(written, copy.to_vec());
    }

    #[test]
    fn a_burst_does_not_stay_resident() {
        let mut tx = Transmit::new();
        for _ in 0..1000 {
            let (b, d) = data_in(500);
            tx.put_pdu(&b, &d, Digests::default());
        }
        assert!(tx.capacity() >= 500 * 1000);
        tx.shrink_to(4096); // still waiting: kept
        assert!(tx.capacity() >= 500 * 1000);
        let all = tx.len();
        tx.advance(all);
        tx.shrink_to(4096);
        assert!(tx.capacity() <= 4096);
    }
}
