//! `memory`: a RAM disk, zero-filled at start, completing every request inline. It keeps a
//! map of which blocks are allocated (written since start and not discarded since), so that
//! it answers allocation queries like a sparse file would.
//!
//! Reads are not copied: a read's data is a `Bytes` pointing into the store's own memory
//! (a shard's mapping), which holds the pieces it covers until it is dropped (the Data-In
//! written to the socket). A write to a piece a read still holds goes to a copy of the
//! piece (copy-on-write, [`Shard`]), so the read sends the bytes it read.

use bytes::Bytes;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use store_api::{
    check_range, valid_metadata_name, BlockStore, BufferPool, Capabilities, Completion, CopySource,
    ErrorKind, Geometry, IoReply, IoRequest, LockError, LockMode, LockOwner, LockWait,
    MetadataLock, Op, StoreError,
};

/// Bytes per lock shard (and per mapping); requests lock only the shards they touch, one
/// at a time.
const SHARD: usize = 1 << 20;

/// Bytes per piece: what a read holds of a shard, and what a write copies when it finds
/// a read holding the piece it writes. Small, so that such a copy is cheap and rare (a
/// 4 KiB write meets a read in flight in its 64 KiB, not in its 1 MiB); large, so that an
/// aligned 64 KiB read holds one piece and a 1 MiB read sixteen of one mapping, still one
/// contiguous `Bytes`.
const PIECE: usize = 64 << 10;

/// Pieces per shard.
const PIECES: usize = SHARD / PIECE;

/// A store in memory, split into 1 MiB shards each behind its own lock.
pub struct MemoryStore(Arc<Memory>, Capabilities);

/// The memory behind a [`MemoryStore`] (shared as the source of copies).
pub struct Memory {
    geometry: store_api::GrowableGeometry,
    /// Read-locked by every request, write-locked only to grow the store.
    data: RwLock<Data>,
    /// Metadata objects, gone with the store like its data.
    metadata: Mutex<HashMap<String, Vec<u8>>>,
    /// Their locks: in this process, like the store.
    locks: crate::lock::LockTable,
}

#[derive(Default)]
struct Data {
    shards: Vec<RwLock<Shard>>,
    /// One bit per block: allocated.
    mapped: Bits,
}

impl Data {
    /// Grows to `size` bytes of `blocks` blocks, the new bytes zero.
    fn grow(&mut self, size: usize, blocks: u64) {
        let mut have: usize = self
            .shards
            .iter_mut()
            .map(|s| s.get_mut().unwrap().len())
            .sum();
        if let Some(last) = self.shards.last_mut() {
            let last = last.get_mut().unwrap();
            if last.len() < SHARD && have < size {
                let longer = SHARD.min(last.len() + size - have);
                have += longer - last.len();
                *last = last.longer(longer);
            }
        }
        while have < size {
            let n = SHARD.min(size - have);
            self.shards.push(RwLock::new(Shard::new(n)));
            have += n;
        }
        let words = blocks.div_ceil(64) as usize;
        self.mapped.grow(words);
    }
}

/// The allocation bitmap: words in a zeroed mapping of their own (see [`Zeroed`]), so
/// that the bits of blocks nobody wrote cost no resident memory (a `Vec` of zeroed words
/// is written at creation: 64 KiB for 256 MiB of 512-byte blocks, resident from start).
#[derive(Default)]
struct Bits {
    map: Option<Zeroed>,
    words: usize,
}

impl Bits {
    /// At least `words` words, the new ones zero.
    fn grow(&mut self, words: usize) {
        if words <= self.words {
            return;
        }
        let bigger = Bits {
            map: Some(Zeroed::new(words * 8)),
            words,
        };
        for (new, old) in bigger.iter().zip(self.iter()) {
            new.store(old.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        *self = bigger;
    }
}

impl std::ops::Deref for Bits {
    type Target = [AtomicU64];
    fn deref(&self) -> &[AtomicU64] {
        match &self.map {
            // SAFETY: a live mapping of `words * 8` bytes, page-aligned (so aligned for
            // `AtomicU64`), zero-filled by the kernel (a valid `AtomicU64` is any bits),
            // and only ever accessed through these atomics.
            Some(map) => unsafe {
                std::slice::from_raw_parts(map.ptr.as_ptr().cast::<AtomicU64>(), self.words)
            },
            None => &[],
        }
    }
}

/// Zeroed bytes straight from the kernel: a private anonymous mapping of their own.
///
/// A RAM disk is mostly never written, and what is never written should cost no
/// resident memory. A `vec![0u8; SHARD]` is above glibc's mmap threshold, so it is a
/// mapping too, but glibc writes its chunk header into the first page: 4 KiB resident
/// per 1 MiB shard, 1 MiB for a 256 MiB store before a single write. Here nothing is
/// written: reads of untouched pages map the kernel's shared zero page (not counted in
/// the process's RSS), and only pages written take memory.
/// (`crates/backstore/tests/memory_rss.rs` counts it.)
///
/// It hands out no references of its own: [`Home`] makes them, a piece at a time, so
/// that a read's `&[u8]` and a write's `&mut [u8]` never cover the same bytes.
struct Zeroed {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: `Zeroed` owns its mapping exclusively, like a `Box<[u8]>`; who reads and writes
// which bytes of it is ruled by `Home` (see there).
unsafe impl Send for Zeroed {}
// SAFETY: as above.
unsafe impl Sync for Zeroed {}

impl Zeroed {
    /// `len` (> 0) zero bytes; aborts like a failed allocation when the kernel refuses.
    fn new(len: usize) -> Zeroed {
        assert!(len > 0, "a shard holds at least one byte");
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        match std::ptr::NonNull::new(ptr.cast::<u8>()).filter(|_| ptr != libc::MAP_FAILED) {
            Some(ptr) => Zeroed { ptr, len },
            None => std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(len, 4096).expect("shard layout"),
            ),
        }
    }
}

impl Drop for Zeroed {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no slice of it outlives `self`
        // (every slice borrows the `Home` that owns it, or is held by a `Held` that keeps
        // the `Home` alive).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A shard's mapping and, per piece, how many reads hold bytes of it: shared by the
/// shard and the `Bytes` of the reads ([`Held`]), so it lives until the last is dropped.
///
/// The rule that makes its references sound: bytes of a piece are written (through
/// [`Home::bytes_mut`]) only by the holder of the shard's write lock, and only while no
/// read holds the piece (`held` is 0, and reads take a hold only under the shard's read
/// lock); every other access reads.
struct Home {
    map: Zeroed,
    /// Reads holding each piece (their `Bytes` not yet dropped).
    held: [AtomicU32; PIECES],
}

impl Home {
    fn new(len: usize) -> Home {
        Home {
            map: Zeroed::new(len),
            held: Default::default(),
        }
    }

    fn len(&self) -> usize {
        self.map.len
    }

    /// The bytes `r` of the mapping, to read.
    ///
    /// # Safety
    /// No write to `r` may happen while the slice lives: the caller holds the shard's
    /// lock (read or write) for its lifetime, or holds the pieces of `r` (`held`).
    unsafe fn bytes(&self, r: Range<usize>) -> &[u8] {
        assert!(r.start <= r.end && r.end <= self.map.len);
        // SAFETY: inside the live mapping; no writer, by the caller's promise.
        unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr().add(r.start), r.len()) }
    }

    /// The bytes `r` of the mapping, to write.
    ///
    /// # Safety
    /// The caller holds the shard's write lock for the slice's lifetime and no read holds
    /// a piece of `r`, so no other reference to these bytes exists.
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes_mut(&self, r: Range<usize>) -> &mut [u8] {
        assert!(r.start <= r.end && r.end <= self.map.len);
        // SAFETY: inside the live mapping; exclusive, by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(r.start), r.len()) }
    }
}

/// Copies below this many bytes into the store go through the cache ([`copy_in`]).
const STREAM_FROM: usize = 4096;

/// Copies `src` into the store's memory at `dst` (of the same length).
///
/// A RAM disk's destination is almost never in the CPU's cache (4 KiB random writes over
/// hundreds of MiB), and a plain copy first reads every destination line it writes (the
/// stores wait for those reads at the shard lock's release: docs/performance.md, ninth
/// and sixteenth rounds). So copies of [`STREAM_FROM`] bytes or more to a 16-byte aligned
/// destination, whole 64-byte lines, use non-temporal stores, which write lines without
/// reading them, then a store fence, so the bytes are visible to whoever takes the
/// shard's lock next. Other copies, and other CPUs, copy plainly.
fn copy_in(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "a copy into the store has one length");
    #[cfg(target_arch = "x86_64")]
    if dst.len() >= STREAM_FROM
        && dst.len().is_multiple_of(64)
        && dst.as_ptr().addr().is_multiple_of(16)
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        let d = dst.as_mut_ptr().cast::<__m128i>();
        let s = src.as_ptr().cast::<__m128i>();
        for i in 0..dst.len() / 16 {
            // SAFETY: SSE2 is part of x86_64. `i * 16 + 16` is within both slices (of
            // equal length); `d` is 16-byte aligned, as the streaming store needs, and the
            // unaligned load needs no alignment; `dst` is borrowed mutably, `src` not
            // overlapping it (a shared and a mutable borrow).
            unsafe { _mm_stream_si128(d.add(i), _mm_loadu_si128(s.add(i))) };
        }
        // SAFETY: a fence only: orders the streaming stores before the stores after it
        // (the lock's release).
        unsafe { _mm_sfence() };
        return;
    }
    dst.copy_from_slice(src);
}

/// The pieces of `r` (bytes of one shard).
fn pieces(r: &Range<usize>) -> Range<usize> {
    r.start / PIECE..r.end.div_ceil(PIECE)
}

/// A read's hold on bytes `range` of a shard's mapping: the owner of the read's `Bytes`.
struct Held {
    home: Arc<Home>,
    range: Range<usize>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: this holds every piece of `range` until it is dropped.
        unsafe { self.home.bytes(self.range.clone()) }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for i in pieces(&self.range) {
            // Release: our reads of the bytes come before a writer that sees the count.
            self.home.held[i].fetch_sub(1, Ordering::Release);
        }
    }
}

/// A piece's bytes moved out of its mapping: a write came while a read held the piece
/// there. Shared with the reads of it, like [`Home`]; written only while the shard holds
/// the one reference (`Arc::get_mut`).
type Moved = Arc<Vec<u8>>;

/// The owner of a read's `Bytes` of a moved piece.
struct MovedRef(Moved);

impl AsRef<[u8]> for MovedRef {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One shard: its mapping, where each piece lives unless a write found a read holding
/// it there; then the piece lives in `moved` until a write finds the mapping's piece
/// free again and copies it back.
struct Shard {
    home: Arc<Home>,
    /// Moved pieces by index; empty until a piece of this shard first moves.
    moved: Vec<Option<Moved>>,
}

/// A stretch of a shard to read: bytes of the mapping, or of one moved piece.
enum Run<'a> {
    Home(Range<usize>),
    Moved(&'a Moved, Range<usize>),
}

impl Shard {
    fn new(len: usize) -> Shard {
        Shard {
            home: Arc::new(Home::new(len)),
            moved: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.home.len()
    }

    /// A shard of `len` bytes (at least this one's) with this one's bytes first, the rest
    /// zero (growing a partial last shard).
    fn longer(&self, len: usize) -> Shard {
        let bigger = Shard::new(len);
        let mut at = 0;
        self.runs(0..self.len(), |bytes| {
            // SAFETY: `bigger` is ours alone (nothing reads it yet).
            unsafe { bigger.home.bytes_mut(at..at + bytes.len()) }.copy_from_slice(bytes);
            at += bytes.len();
        });
        bigger
    }

    /// Calls `f` with each stretch of `r`: contiguous bytes of the mapping, or of one
    /// moved piece, in order.
    fn each_run(&self, r: Range<usize>, mut f: impl FnMut(Run<'_>)) {
        let mut home_from = None;
        let mut pos = r.start;
        while pos < r.end {
            let i = pos / PIECE;
            let base = i * PIECE;
            let end = (base + PIECE).min(r.end);
            match self.moved.get(i).and_then(Option::as_ref) {
                Some(moved) => {
                    if let Some(from) = home_from.take() {
                        f(Run::Home(from..pos));
                    }
                    f(Run::Moved(moved, pos - base..end - base));
                }
                None => {
                    home_from.get_or_insert(pos);
                }
            }
            pos = end;
        }
        if let Some(from) = home_from {
            f(Run::Home(from..r.end));
        }
    }

    /// Calls `f` with the bytes of `r`, a stretch at a time (to copy them: the caller
    /// holds the shard's lock).
    fn runs(&self, r: Range<usize>, mut f: impl FnMut(&[u8])) {
        self.each_run(r, |run| match run {
            // SAFETY: the caller holds the shard's lock while `f` runs.
            Run::Home(r) => f(unsafe { self.home.bytes(r) }),
            Run::Moved(moved, r) => f(&moved[r]),
        });
    }

    /// Calls `f` with the bytes of `r` as `Bytes` that point into the store's memory, one
    /// per stretch (usually one), each holding its pieces until it is dropped. The caller
    /// holds the shard's read lock.
    fn share(&self, r: Range<usize>, mut f: impl FnMut(Bytes)) {
        self.each_run(r, |run| match run {
            Run::Home(r) => {
                for i in pieces(&r) {
                    // Relaxed: taken under the shard's read lock, which a writer's write
                    // lock orders after.
                    self.home.held[i].fetch_add(1, Ordering::Relaxed);
                }
                f(Bytes::from_owner(Held {
                    home: self.home.clone(),
                    range: r,
                }))
            }
            Run::Moved(moved, r) => f(Bytes::from_owner(MovedRef(moved.clone())).slice(r)),
        });
    }

    /// Writes `r`: `f(dst, at)` fills `dst`, the bytes of `r` from `at` (relative to
    /// `r.start`), a piece at a time.
    fn write(&mut self, r: Range<usize>, mut f: impl FnMut(&mut [u8], usize)) {
        let mut pos = r.start;
        while pos < r.end {
            let i = pos / PIECE;
            let base = i * PIECE;
            let end = (base + PIECE).min(r.end);
            let piece = self.piece_mut(i);
            f(&mut piece[pos - base..end - base], pos - r.start);
            pos = end;
        }
    }

    /// Piece `i`, to write (the caller holds the shard's write lock: `&mut self`).
    ///
    /// Where no read holds it in the mapping, that is where it is written (a moved piece
    /// is copied back first, so the shard returns to one contiguous mapping and frees the
    /// copy). Else the write goes to the moved copy: a fresh one from the mapping, or from
    /// the last moved copy when a read holds that one too.
    fn piece_mut(&mut self, i: usize) -> &mut [u8] {
        let base = i * PIECE;
        let r = base..(base + PIECE).min(self.len());
        // Acquire: the reads of the last holder come before our writes.
        if self.home.held[i].load(Ordering::Acquire) == 0 {
            // SAFETY: `&mut self` is the shard's write lock, and no read holds piece `i`.
            let dst = unsafe { self.home.bytes_mut(r) };
            if let Some(moved) = self.moved.get_mut(i).and_then(Option::take) {
                dst.copy_from_slice(&moved);
            }
            return dst;
        }
        if self.moved.is_empty() {
            self.moved.resize_with(PIECES, || None);
        }
        let slot = &mut self.moved[i];
        match slot {
            Some(moved) => {
                if Arc::get_mut(moved).is_none() {
                    *moved = Arc::new(moved.to_vec());
                }
            }
            None => {
                // SAFETY: the shard's lock is held; the bytes are only read.
                *slot = Some(Arc::new(unsafe { self.home.bytes(r) }.to_vec()));
            }
        }
        let moved = slot.as_mut().expect("just set");
        Arc::get_mut(moved).expect("the shard's own copy")
    }
}

impl MemoryStore {
    /// A zeroed store of `geometry.size_bytes()` bytes.
    pub fn new(geometry: Geometry) -> MemoryStore {
        MemoryStore(Arc::new(Memory::new(geometry)), Capabilities::ALL)
    }

    /// Full provisioning reports no discard (the LU is fully provisioned: no UNMAP); the
    /// memory itself is the same either way.
    pub fn with_provisioning(mut self, provisioning: crate::Provisioning) -> MemoryStore {
        self.1 = match provisioning {
            crate::Provisioning::Thin => Capabilities::ALL,
            crate::Provisioning::Full => Capabilities::FULLY_PROVISIONED,
        };
        self
    }
}

impl std::ops::Deref for MemoryStore {
    type Target = Memory;
    fn deref(&self) -> &Memory {
        &self.0
    }
}

impl Memory {
    fn new(geometry: Geometry) -> Memory {
        let mut data = Data::default();
        data.grow(geometry.size_bytes() as usize, geometry.num_blocks);
        Memory {
            geometry: store_api::GrowableGeometry::new(geometry),
            data: RwLock::new(data),
            metadata: Mutex::default(),
            locks: Default::default(),
        }
    }

    /// Marks the blocks `first..end` allocated or not: one atomic operation per word of
    /// 64 blocks (a 4 KiB write of 512-byte blocks is one, not eight), and none for a
    /// word that already says so (a block written again).
    fn set_mapped(data: &Data, first: u64, end: u64, on: bool) {
        let mut b = first;
        while b < end {
            let word = (b / 64) as usize;
            let lo = b % 64;
            let hi = (end - (b - lo)).min(64);
            let mask = (u64::MAX >> (64 - (hi - lo))) << lo;
            let w = &data.mapped[word];
            let now = w.load(Ordering::Relaxed);
            if on && now & mask != mask {
                w.fetch_or(mask, Ordering::Relaxed);
            } else if !on && now & mask != 0 {
                w.fetch_and(!mask, Ordering::Relaxed);
            }
            b += hi - lo;
        }
    }

    fn is_mapped(data: &Data, block: u64) -> bool {
        data.mapped[(block / 64) as usize].load(Ordering::Relaxed) & (1 << (block % 64)) != 0
    }

    /// Every block touched by `offset..offset + len`, and the blocks wholly inside it.
    fn blocks(&self, offset: u64, len: u64) -> ((u64, u64), (u64, u64)) {
        let bs = u64::from(self.geometry.get().block_size.max(1));
        let end = offset + len;
        (
            (offset / bs, end.div_ceil(bs)),
            (offset.div_ceil(bs), end / bs),
        )
    }

    /// The first extent from `offset`, at most `len` bytes, that is all allocated or all not.
    fn allocation(&self, data: &Data, offset: u64, len: u64) -> IoReply {
        let bs = u64::from(self.geometry.get().block_size.max(1));
        let end = offset + len;
        let first = offset / bs;
        let mapped = Memory::is_mapped(data, first);
        let mut b = first + 1;
        while b * bs < end && Memory::is_mapped(data, b) == mapped {
            b += 1;
        }
        IoReply::Allocation {
            mapped,
            len: (b * bs).min(end) - offset,
        }
    }

    /// Calls `f(shard, range inside the shard, range inside the request)` for each shard
    /// the range touches.
    fn for_each_shard(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(usize, std::ops::Range<usize>, std::ops::Range<usize>),
    ) {
        let mut pos = offset as usize;
        let end = pos + len;
        while pos < end {
            let shard = pos / SHARD;
            let start = pos % SHARD;
            let n = (SHARD - start).min(end - pos);
            let req = pos - offset as usize;
            f(shard, start..start + n, req..req + n);
            pos += n;
        }
    }

    /// Copies `len` bytes at `from` of `source` (whose data is `src`) to `to` of this
    /// memory (whose data is `dst`), a shard at a time through a bounce buffer (memcpy;
    /// never two shard locks at once).
    fn copy_from(
        &self,
        dst: &Data,
        source: &Memory,
        src: &Data,
        (from, to, len): (u64, u64, u64),
    ) -> Result<(), StoreError> {
        if from
            .checked_add(len)
            .is_none_or(|end| end > source.geometry.get().size_bytes())
        {
            return Err(StoreError::new(Op::Copy, ErrorKind::OutOfRange));
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(SHARD as u64) as usize;
            let mut chunk = Vec::with_capacity(n);
            source.for_each_shard(from + done, n, |s, r, _| {
                src.shards[s]
                    .read()
                    .unwrap()
                    .runs(r, |bytes| chunk.extend_from_slice(bytes));
            });
            self.for_each_shard(to + done, n, |s, r, q| {
                let mut shard = dst.shards[s].write().unwrap();
                shard.write(r, |d, at| copy_in(d, &chunk[q.start + at..][..d.len()]));
            });
            let ((first, end), _) = self.blocks(to + done, n as u64);
            Self::set_mapped(dst, first, end, true);
            done += n as u64;
        }
        Ok(())
    }

    /// The bytes `offset..offset + len`, pointing into the store's memory (no copy). Where
    /// they are not contiguous (across shards, or around a moved piece) each stretch but
    /// the last goes out as a part ([`Completion::part`]) when `done` takes parts, else
    /// all are gathered into one pooled buffer. Returns the last (or only) stretch, or
    /// the gathered buffer.
    fn read(&self, data: &Data, offset: u64, len: u32, done: &Completion) -> Bytes {
        let len = len as usize;
        let parts = done.takes_parts();
        let mut last: Option<Bytes> = None;
        let mut gathered: Option<Vec<u8>> = None;
        self.for_each_shard(offset, len, |s, r, _| {
            data.shards[s].read().unwrap().share(r, |bytes| {
                if let Some(g) = &mut gathered {
                    g.extend_from_slice(&bytes);
                    return;
                }
                let Some(before) = last.replace(bytes) else {
                    return;
                };
                if parts {
                    done.part(before);
                } else {
                    let mut g = BufferPool::global().take(len);
                    g.extend_from_slice(&before);
                    g.extend_from_slice(&last.take().expect("just put"));
                    gathered = Some(g);
                }
            });
        });
        match gathered {
            Some(g) => BufferPool::global().bytes(g),
            None => last.unwrap_or_default(),
        }
    }

    fn zero(&self, data: &Data, offset: u64, len: u64) {
        self.for_each_shard(offset, len as usize, |s, r, _| {
            data.shards[s].write().unwrap().write(r, |d, _| d.fill(0))
        });
    }
}

impl BlockStore for MemoryStore {
    fn geometry(&self) -> Geometry {
        self.geometry.get()
    }

    fn capabilities(&self) -> Capabilities {
        self.1
    }

    fn submit(&self, req: IoRequest, done: Completion) {
        let data = self.data.read().unwrap();
        if let Err(e) = check_range(self.geometry.get(), &req) {
            return done.complete(Err(e));
        }
        let reply = match req {
            IoRequest::Read { offset, len } => IoReply::Data(self.read(&data, offset, len, &done)),
            IoRequest::Write {
                offset,
                data: segments,
                ..
            } => {
                let mut at = offset;
                for bytes in segments.parts() {
                    self.for_each_shard(at, bytes.len(), |s, r, q| {
                        let mut shard = data.shards[s].write().unwrap();
                        shard.write(r, |d, at| copy_in(d, &bytes[q.start + at..][..d.len()]));
                    });
                    at += bytes.len() as u64;
                }
                let ((first, end), _) = self.blocks(offset, segments.len() as u64);
                Memory::set_mapped(&data, first, end, true);
                IoReply::Done
            }
            IoRequest::Flush => IoReply::Done,
            IoRequest::Copy {
                source,
                source_offset,
                offset,
                len,
            } => {
                let Some(from) = source.downcast::<Memory>() else {
                    return done.complete(Err(StoreError::new(Op::Copy, ErrorKind::Unsupported)));
                };
                let range = (source_offset, offset, len);
                let copied = if std::ptr::eq(&*from, &**self) {
                    self.copy_from(&data, self, &data, range)
                } else {
                    let src = from.data.read().unwrap();
                    self.copy_from(&data, &from, &src, range)
                };
                if let Err(e) = copied {
                    return done.complete(Err(e));
                }
                IoReply::Done
            }
            IoRequest::WriteZeroes { offset, len } => {
                self.zero(&data, offset, len);
                let ((first, end), _) = self.blocks(offset, len);
                Memory::set_mapped(&data, first, end, true);
                IoReply::Done
            }
            IoRequest::Discard { offset, len } => {
                self.zero(&data, offset, len);
                let (_, (first, end)) = self.blocks(offset, len);
                Memory::set_mapped(&data, first, end, false);
                IoReply::Done
            }
            IoRequest::Allocation { offset, len } => {
                if len == 0 {
                    return done
                        .complete(Err(StoreError::new(Op::Allocation, ErrorKind::OutOfRange)));
                }
                self.allocation(&data, offset, len)
            }
        };
        drop(data);
        done.complete(Ok(reply));
    }

    fn describe(&self) -> String {
        format!("memory {} bytes", self.geometry.get().size_bytes())
    }

    fn copy_source(&self) -> Option<CopySource> {
        Some(CopySource::new(self.0.clone()))
    }

    /// The blocks written and not unmapped since the store was made; no storage beside.
    fn space(&self) -> Result<store_api::Space, StoreError> {
        let data = self.data.read().unwrap();
        let blocks: u64 = data
            .mapped
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum();
        Ok(store_api::Space {
            allocated: blocks * u64::from(self.geometry.get().block_size),
            available: None,
            storage: None,
        })
    }

    fn resize(&self, size_bytes: u64) -> Result<Geometry, StoreError> {
        let mut data = self.data.write().unwrap();
        let blocks = store_api::check_resize(self.geometry.get(), size_bytes)?;
        let size = usize::try_from(size_bytes)
            .map_err(|_| StoreError::new(Op::Write, ErrorKind::NoSpace))?;
        data.grow(size, blocks);
        self.geometry.set_blocks(blocks);
        Ok(self.geometry.get())
    }

    fn read_metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !valid_metadata_name(name) {
            return Err(StoreError::new(Op::Read, ErrorKind::OutOfRange));
        }
        Ok(self.metadata.lock().unwrap().get(name).cloned())
    }

    fn write_metadata(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        if !valid_metadata_name(name) {
            return Err(StoreError::new(Op::Write, ErrorKind::OutOfRange));
        }
        self.metadata
            .lock()
            .unwrap()
            .insert(name.to_string(), data.to_vec());
        Ok(())
    }

    /// A table in the store: a memory store is one process's, so its holders are too.
    fn lock_metadata(
        &self,
        name: &str,
        owner: &LockOwner,
        mode: LockMode,
        wait: LockWait,
    ) -> Result<MetadataLock, LockError> {
        let held = crate::lock::acquire(name, wait, || {
            if !valid_metadata_name(name) {
                return Err(StoreError::new(Op::Lock, ErrorKind::OutOfRange));
            }
            Ok(self.locks.try_take(name, mode))
        })?;
        Ok(MetadataLock::new(name, owner, mode, held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn run(store: &MemoryStore, req: IoRequest) -> IoReply {
        let (tx, rx) = std::sync::mpsc::channel();
        store.submit(req, Completion::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().expect("request succeeded")
    }

    fn read(store: &MemoryStore, offset: u64, len: u32) -> Vec<u8> {
        match run(store, IoRequest::Read { offset, len }) {
            IoReply::Data(d) => d.to_vec(),
            other => panic!("read answered {other:?}"),
        }
    }

    fn write(store: &MemoryStore, offset: u64, fill: u8, len: usize) {
        let req = IoRequest::Write {
            offset,
            data: bytes::Bytes::from(vec![fill; len]).into(),
            fua: false,
        };
        assert!(matches!(run(store, req), IoReply::Done));
    }

    /// Bytes that differ from their neighbours and from any fill: position-dependent.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
            .collect()
    }

    #[test]
    fn copy_in_copies_every_byte_streamed_or_not() {
        // (destination offset in a 16-byte aligned buffer, length): streamed (aligned,
        // whole lines of 4 KiB or more) and every way of not being streamed: too short,
        // not whole lines, an unaligned destination.
        for (at, len) in [
            (0, 4096),
            (0, 65536),
            (16, 8192),
            (0, 4032),
            (0, 4096 + 16),
            (8, 4096),
            (0, 0),
            (3, 5000),
        ] {
            let src = pattern(len + 3, 7);
            let src = &src[3..]; // an unaligned source too
            let mut buf = vec![0x5au8; at + len + 64 + 16];
            // The first 16-byte aligned place in `buf`.
            let base = buf.as_ptr().align_offset(16);
            let (before, rest) = buf[base..].split_at_mut(at);
            let (dst, after) = rest.split_at_mut(len);
            copy_in(dst, src);
            assert_eq!(dst, src, "at {at}, {len} bytes");
            assert!(before.iter().all(|&b| b == 0x5a), "at {at}: bytes before");
            assert!(after.iter().all(|&b| b == 0x5a), "at {at}: bytes after");
        }
    }

    #[test]
    fn writes_of_every_size_read_back_as_written() {
        // Streamed (4 KiB, 64 KiB, across a shard boundary) and plain (512 B, 4 KiB + 512
        // B) writes next to each other, then read back whole.
        let store = MemoryStore::new(Geometry {
            block_size: 512,
            num_blocks: 8 * 1024,
        });
        let writes: [(u64, usize, u8); 5] = [
            (0, 512, 1),
            (4096, 4096, 2),
            (SHARD as u64 - 32768, 65536, 3),
            (3 << 20, 4096 + 512, 4),
            (8192, 512, 5),
        ];
        for &(offset, len, seed) in &writes {
            let req = IoRequest::Write {
                offset,
                data: bytes::Bytes::from(pattern(len, seed)).into(),
                fua: false,
            };
            assert!(matches!(run(&store, req), IoReply::Done));
        }
        for &(offset, len, seed) in &writes {
            assert_eq!(
                read(&store, offset, len as u32),
                pattern(len, seed),
                "{len} bytes at {offset}"
            );
        }
        // Untouched bytes between them are still zero.
        assert_eq!(read(&store, 512, 3584), vec![0; 3584]);
    }

    #[test]
    fn growing_a_partial_last_shard_keeps_its_data_and_zeroes_the_rest() {
        // 1.5 MiB: the second shard is half a shard long.
        let store = MemoryStore::new(Geometry {
            block_size: 512,
            num_blocks: 3 * 1024,
        });
        let tail = (3 << 19) - 4096;
        write(&store, tail, 0xa5, 4096);
        write(&store, 0, 0x3c, 512);
        store.resize(5 << 19).expect("grow to 2.5 MiB");
        assert_eq!(read(&store, tail, 4096), vec![0xa5; 4096]);
        assert_eq!(read(&store, 0, 512), vec![0x3c; 512]);
        // The grown part of the old last shard and the new shard read as zeroes...
        assert_eq!(read(&store, 3 << 19, 8192), vec![0; 8192]);
        assert_eq!(read(&store, (5 << 19) - 4096, 4096), vec![0; 4096]);
        // ...and take writes across the old end and the shard boundary.
        write(&store, (3 << 19) - 512, 0x77, 1024);
        write(&store, (1 << 21) - 512, 0x11, 1024);
        assert_eq!(read(&store, (3 << 19) - 512, 1024), vec![0x77; 1024]);
        assert_eq!(read(&store, (1 << 21) - 512, 1024), vec![0x11; 1024]);
    }

    /// Collects a read's parts and its completion (a sink as the daemon's, which takes a
    /// plain READ's data in parts).
    #[derive(Default)]
    struct Parts(Mutex<Vec<Bytes>>);

    impl store_api::CompletionSink for Parts {
        fn complete(&self, _token: u64, result: store_api::IoResult) {
            match result {
                Ok(IoReply::Data(d)) => self.0.lock().unwrap().push(d),
                other => panic!("read answered {other:?}"),
            }
        }
        fn abandoned(&self, _token: u64) {
            panic!("the completion was dropped");
        }
        fn part(&self, _token: u64, data: Bytes) {
            self.0.lock().unwrap().push(data);
        }
    }

    /// A read whose completion takes parts: its stretches in order (the last the
    /// completion's).
    fn read_in_parts(store: &MemoryStore, offset: u64, len: u32) -> Vec<Bytes> {
        let sink = Arc::new(Parts::default());
        let done = Completion::to_sink_in_parts(sink.clone(), 0);
        store.submit(IoRequest::Read { offset, len }, done);
        let parts = std::mem::take(&mut *sink.0.lock().unwrap());
        parts
    }

    fn held(store: &MemoryStore, offset: u64, len: u32) -> Bytes {
        match run(store, IoRequest::Read { offset, len }) {
            IoReply::Data(d) => d,
            other => panic!("read answered {other:?}"),
        }
    }

    fn store_of(mib: u64) -> MemoryStore {
        MemoryStore::new(Geometry {
            block_size: 512,
            num_blocks: mib << 11,
        })
    }

    /// A read's data is the store's memory, not a copy: two reads of the same bytes point
    /// at the same address, and a write while no read holds them writes them in place.
    #[test]
    fn reads_point_into_the_store_and_are_not_copied() {
        let store = store_of(2);
        write(&store, 4096, 0x5a, 8192);
        let a = held(&store, 4096, 8192);
        let b = held(&store, 4096, 8192);
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "both reads point at the store's bytes"
        );
        assert_eq!(&a[..], &[0x5a; 8192][..]);
        let at = a.as_ptr();
        drop((a, b));
        write(&store, 4096, 0x6b, 8192);
        let c = held(&store, 4096, 8192);
        assert_eq!(c.as_ptr(), at, "written in place once no read held it");
        assert_eq!(&c[..], &[0x6b; 8192][..]);
        // An aligned 1 MiB read is one stretch of one shard: one `Bytes`, no parts.
        let whole = read_in_parts(&store, 0, 1 << 20);
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].len(), 1 << 20);
        assert_eq!(whole[0].as_ptr().wrapping_add(4096), c.as_ptr());
    }

    /// The copy-on-write rule: a write to bytes a read still holds does not change what
    /// that read sends; the next read sees the write; and once the read is dropped the
    /// piece goes back into its shard's mapping.
    #[test]
    fn a_write_over_bytes_a_read_holds_leaves_the_read_as_it_was() {
        let store = store_of(2);
        let piece = PIECE as u64;
        write(&store, 3 * piece, 0x11, PIECE);
        // A read of 4 KiB in piece 3, held (as a Data-In not yet written to the socket).
        let old = held(&store, 3 * piece + 8192, 4096);
        assert_eq!(&old[..], &[0x11; 4096][..]);
        // Writes over it: the same range, a range around it, a range ending inside it.
        write(&store, 3 * piece + 8192, 0x22, 4096);
        assert_eq!(&old[..], &[0x11; 4096][..], "the held read is unchanged");
        assert_eq!(read(&store, 3 * piece + 8192, 4096), vec![0x22; 4096]);
        let mid = held(&store, 3 * piece, 16384);
        write(&store, 3 * piece + 4096, 0x33, 8192);
        assert_eq!(&old[..], &[0x11; 4096][..], "the held read is unchanged");
        let mut want = vec![0x11; 16384];
        want[8192..12288].fill(0x22);
        assert_eq!(&mid[..], &want[..], "the second held read is unchanged too");
        // The rest of the piece kept its bytes in the copy; its neighbours are untouched.
        let mut now = vec![0x11; PIECE];
        now[4096..12288].fill(0x33);
        assert_eq!(read(&store, 3 * piece, PIECE as u32), now);
        assert_eq!(read(&store, 2 * piece, 4096), vec![0; 4096]);
        assert_eq!(read(&store, 4 * piece, 4096), vec![0; 4096]);
        // A read across the moved piece: three stretches in parts, or one gathered copy.
        let parts = read_in_parts(&store, 0, 1 << 20);
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [3 * PIECE, PIECE, (1 << 20) - 4 * PIECE]
        );
        let joined: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, read(&store, 0, 1 << 20));
        assert_eq!(&joined[3 * PIECE..4 * PIECE], &now[..]);
        drop(parts);
        // Once no read holds the mapping's piece, a write puts the piece back there:
        // one stretch again, and the write and the moved bytes both in it.
        drop((old, mid));
        write(&store, 3 * piece + 32768, 0x44, 512);
        now[32768..33280].fill(0x44);
        let parts = read_in_parts(&store, 0, 1 << 20);
        assert_eq!(parts.len(), 1, "the shard is contiguous again");
        assert_eq!(&parts[0][3 * PIECE..4 * PIECE], &now[..]);
    }

    /// A write to a moved piece that a read holds in its copy makes another copy; discards
    /// and WRITE SAME's zeroes follow the same rule; reads across shards come in parts.
    #[test]
    fn every_kind_of_write_copies_a_held_piece_and_reads_across_shards_come_in_parts() {
        let store = store_of(3);
        let piece = PIECE as u64;
        write(&store, 0, 0x01, 2 * PIECE);
        let home = held(&store, 0, 4096);
        write(&store, 0, 0x02, 4096); // piece 0 moves
        let moved = held(&store, 0, 4096);
        write(&store, 0, 0x03, 4096); // its copy is held: another copy
        let zero = IoRequest::WriteZeroes {
            offset: piece,
            len: 4096,
        };
        let in_one = held(&store, piece, 4096);
        assert!(matches!(run(&store, zero), IoReply::Done));
        let discard = IoRequest::Discard {
            offset: 0,
            len: 4096,
        };
        assert!(matches!(run(&store, discard), IoReply::Done));
        assert_eq!(&home[..], &[0x01; 4096][..]);
        assert_eq!(&moved[..], &[0x02; 4096][..]);
        assert_eq!(&in_one[..], &[0x01; 4096][..]);
        assert_eq!(read(&store, 0, 4096), vec![0; 4096]);
        assert_eq!(read(&store, piece, 4096), vec![0; 4096]);
        assert_eq!(read(&store, 4096, 4096), vec![0x01; 4096]);
        // 1 MiB from the middle of shard 1 into shard 2: two parts.
        write(&store, (1 << 20) - 512, 0x7e, 1024);
        let parts = read_in_parts(&store, 1 << 19, 1 << 20);
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [1 << 19, 1 << 19]
        );
        assert_eq!(&parts[0][(1 << 19) - 512..], &[0x7e; 512][..]);
        assert_eq!(&parts[1][..512], &[0x7e; 512][..]);
    }

    /// The allocation bitmap is set and cleared a word of 64 blocks at a time: ranges
    /// inside a word, across words and of whole words all read back block-exact.
    #[test]
    fn allocation_bits_follow_writes_and_discards_across_words() {
        let store = MemoryStore::new(Geometry {
            block_size: 512,
            num_blocks: 512,
        });
        let extent = |block: u64| match run(
            &store,
            IoRequest::Allocation {
                offset: block * 512,
                len: 512 * 512 - block * 512,
            },
        ) {
            IoReply::Allocation { mapped, len } => (mapped, len / 512),
            other => panic!("allocation answered {other:?}"),
        };
        assert_eq!(extent(0), (false, 512));
        // Blocks 60..70 (across the first word boundary), written twice (the second
        // finds its bits set), then 100..300 (a whole word and parts of two more).
        write(&store, 60 * 512, 1, 10 * 512);
        write(&store, 60 * 512, 2, 10 * 512);
        write(&store, 100 * 512, 3, 200 * 512);
        assert_eq!(extent(0), (false, 60));
        assert_eq!(extent(60), (true, 10));
        assert_eq!(extent(70), (false, 30));
        assert_eq!(extent(100), (true, 200));
        assert_eq!(extent(300), (false, 212));
        // A discard of 64..192 (whole blocks) leaves 60..64 and 192..300.
        let req = IoRequest::Discard {
            offset: 64 * 512,
            len: 128 * 512,
        };
        assert!(matches!(run(&store, req), IoReply::Done));
        assert_eq!(extent(60), (true, 4));
        assert_eq!(extent(64), (false, 128));
        assert_eq!(extent(192), (true, 108));
        assert_eq!(extent(300), (false, 212));
    }
}
