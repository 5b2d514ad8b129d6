//! `memory`: a RAM disk, zero-filled at start, completing every request inline. It keeps a
//! map of which blocks are allocated (written since start and not discarded since), so that
//! it answers allocation queries like a sparse file would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use store_api::{
    check_range, valid_metadata_name, BlockStore, BufferPool, Capabilities, Completion, CopySource,
    ErrorKind, Geometry, IoReply, IoRequest, LockError, LockMode, LockOwner, LockWait,
    MetadataLock, Op, StoreError,
};

/// Bytes per lock shard; requests lock only the shards they touch, one at a time.
const SHARD: usize = 1 << 20;

/// A store in memory, split into 1 MiB shards each behind its own lock.
pub struct MemoryStore(Arc<Memory>);

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
    shards: Vec<RwLock<Zeroed>>,
    /// One bit per block: allocated.
    mapped: Vec<AtomicU64>,
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
                let mut bytes = Zeroed::new(longer);
                bytes[..last.len()].copy_from_slice(last);
                have += longer - last.len();
                *last = bytes;
            }
        }
        while have < size {
            let n = SHARD.min(size - have);
            self.shards.push(RwLock::new(Zeroed::new(n)));
            have += n;
        }
        let words = blocks.div_ceil(64) as usize;
        self.mapped.resize_with(words, || AtomicU64::new(0));
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
struct Zeroed {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: `Zeroed` owns its mapping exclusively, like a `Box<[u8]>`; shared access is
// through `&[u8]` and mutation needs `&mut`.
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

impl std::ops::Deref for Zeroed {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live readable mapping of `len` bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Zeroed {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Zeroed {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl MemoryStore {
    /// A zeroed store of `geometry.size_bytes()` bytes.
    pub fn new(geometry: Geometry) -> MemoryStore {
        MemoryStore(Arc::new(Memory::new(geometry)))
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

    /// Calls `f(shard, range inside the shard, range inside the request)` for each piece.
    fn for_each_piece(
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
            source.for_each_piece(from + done, n, |s, r, _| {
                chunk.extend_from_slice(&src.shards[s].read().unwrap()[r]);
            });
            self.for_each_piece(to + done, n, |s, r, q| {
                dst.shards[s].write().unwrap()[r].copy_from_slice(&chunk[q]);
            });
            let ((first, end), _) = self.blocks(to + done, n as u64);
            Self::set_mapped(dst, first, end, true);
            done += n as u64;
        }
        Ok(())
    }

    fn zero(&self, data: &Data, offset: u64, len: u64) {
        self.for_each_piece(offset, len as usize, |s, r, _| {
            data.shards[s].write().unwrap()[r].fill(0)
        });
    }
}

impl BlockStore for MemoryStore {
    fn geometry(&self) -> Geometry {
        self.geometry.get()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            discard: true,
            write_zeroes: true,
            discard_zeroes: true,
        }
    }

    fn submit(&self, req: IoRequest, done: Completion) {
        let data = self.data.read().unwrap();
        if let Err(e) = check_range(self.geometry.get(), &req) {
            return done.complete(Err(e));
        }
        let reply = match req {
            IoRequest::Read { offset, len } => {
                let pool = BufferPool::global();
                let mut out = pool.take(len as usize);
                self.for_each_piece(offset, len as usize, |s, r, _| {
                    out.extend_from_slice(&data.shards[s].read().unwrap()[r]);
                });
                IoReply::Data(pool.bytes(out))
            }
            IoRequest::Write {
                offset,
                data: segments,
                ..
            } => {
                let mut at = offset;
                for bytes in segments.parts() {
                    self.for_each_piece(at, bytes.len(), |s, r, q| {
                        data.shards[s].write().unwrap()[r].copy_from_slice(&bytes[q]);
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
