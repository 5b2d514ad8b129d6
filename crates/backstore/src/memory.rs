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
    shards: Vec<RwLock<Box<[u8]>>>,
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
                let mut bytes = std::mem::take(last).into_vec();
                have += longer - bytes.len();
                bytes.resize(longer, 0);
                *last = bytes.into_boxed_slice();
            }
        }
        while have < size {
            let n = SHARD.min(size - have);
            self.shards
                .push(RwLock::new(vec![0u8; n].into_boxed_slice()));
            have += n;
        }
        let words = blocks.div_ceil(64) as usize;
        self.mapped.resize_with(words, || AtomicU64::new(0));
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

    /// Marks the blocks `first..end` allocated or not.
    fn set_mapped(data: &Data, first: u64, end: u64, on: bool) {
        for b in first..end {
            let (word, bit) = ((b / 64) as usize, 1u64 << (b % 64));
            if on {
                data.mapped[word].fetch_or(bit, Ordering::Relaxed);
            } else {
                data.mapped[word].fetch_and(!bit, Ordering::Relaxed);
            }
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
                data: bytes,
                ..
            } => {
                self.for_each_piece(offset, bytes.len(), |s, r, q| {
                    data.shards[s].write().unwrap()[r].copy_from_slice(&bytes[q]);
                });
                let ((first, end), _) = self.blocks(offset, bytes.len() as u64);
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
