//! `memory`: a RAM disk, zero-filled at start, completing every request inline. It keeps a
//! map of which blocks are allocated (written since start and not discarded since), so that
//! it answers allocation queries like a sparse file would.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use store_api::{
    check_range, valid_metadata_name, BlockStore, Capabilities, Completion, CopySource, ErrorKind,
    Geometry, IoReply, IoRequest, Op, StoreError,
};

/// Bytes per lock shard; requests lock only the shards they touch, one at a time.
const SHARD: usize = 1 << 20;

/// A store in memory, split into 1 MiB shards each behind its own lock.
pub struct MemoryStore(Arc<Memory>);

/// The memory behind a [`MemoryStore`] (shared as the source of copies).
pub struct Memory {
    geometry: Geometry,
    shards: Vec<RwLock<Box<[u8]>>>,
    /// One bit per block: allocated.
    mapped: Vec<AtomicU64>,
    /// Metadata objects, gone with the store like its data.
    metadata: Mutex<HashMap<String, Vec<u8>>>,
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
        let size = geometry.size_bytes() as usize;
        let shards = (0..size.div_ceil(SHARD))
            .map(|i| RwLock::new(vec![0u8; SHARD.min(size - i * SHARD)].into_boxed_slice()))
            .collect();
        let mapped = (0..geometry.num_blocks.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Memory {
            geometry,
            shards,
            mapped,
            metadata: Mutex::default(),
        }
    }

    /// Marks the blocks `first..end` allocated or not.
    fn set_mapped(&self, first: u64, end: u64, on: bool) {
        for b in first..end {
            let (word, bit) = ((b / 64) as usize, 1u64 << (b % 64));
            if on {
                self.mapped[word].fetch_or(bit, Ordering::Relaxed);
            } else {
                self.mapped[word].fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }

    fn is_mapped(&self, block: u64) -> bool {
        self.mapped[(block / 64) as usize].load(Ordering::Relaxed) & (1 << (block % 64)) != 0
    }

    /// Every block touched by `offset..offset + len`, and the blocks wholly inside it.
    fn blocks(&self, offset: u64, len: u64) -> ((u64, u64), (u64, u64)) {
        let bs = u64::from(self.geometry.block_size.max(1));
        let end = offset + len;
        (
            (offset / bs, end.div_ceil(bs)),
            (offset.div_ceil(bs), end / bs),
        )
    }

    /// The first extent from `offset`, at most `len` bytes, that is all allocated or all not.
    fn allocation(&self, offset: u64, len: u64) -> IoReply {
        let bs = u64::from(self.geometry.block_size.max(1));
        let end = offset + len;
        let first = offset / bs;
        let mapped = self.is_mapped(first);
        let mut b = first + 1;
        while b * bs < end && self.is_mapped(b) == mapped {
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

    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        self.for_each_piece(offset, len, |s, r, _| {
            out.extend_from_slice(&self.shards[s].read().unwrap()[r]);
        });
        out
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.for_each_piece(offset, data.len(), |s, r, q| {
            self.shards[s].write().unwrap()[r].copy_from_slice(&data[q]);
        });
        let ((first, end), _) = self.blocks(offset, data.len() as u64);
        self.set_mapped(first, end, true);
    }

    /// Copies `len` bytes at `from` of `source` to `to` of this memory, a shard at a time
    /// through a bounce buffer (memcpy; never two shard locks at once).
    fn copy_from(&self, source: &Memory, from: u64, to: u64, len: u64) -> Result<(), StoreError> {
        if from
            .checked_add(len)
            .is_none_or(|end| end > source.geometry.size_bytes())
        {
            return Err(StoreError::new(Op::Copy, ErrorKind::OutOfRange));
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(SHARD as u64);
            let chunk = source.read(from + done, n as usize);
            self.write(to + done, &chunk);
            done += n;
        }
        Ok(())
    }

    fn zero(&self, offset: u64, len: u64) {
        self.for_each_piece(offset, len as usize, |s, r, _| {
            self.shards[s].write().unwrap()[r].fill(0)
        });
    }
}

impl BlockStore for MemoryStore {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            discard: true,
            write_zeroes: true,
            discard_zeroes: true,
        }
    }

    fn submit(&self, req: IoRequest, done: Completion) {
        if let Err(e) = check_range(self.geometry, &req) {
            return done.complete(Err(e));
        }
        let reply = match req {
            IoRequest::Read { offset, len } => {
                IoReply::Data(Bytes::from(self.read(offset, len as usize)))
            }
            IoRequest::Write { offset, data, .. } => {
                self.write(offset, &data);
                IoReply::Done
            }
            IoRequest::Copy {
                source,
                source_offset,
                offset,
                len,
            } => {
                let Some(from) = source.downcast::<Memory>() else {
                    return done.complete(Err(StoreError::new(Op::Copy, ErrorKind::Unsupported)));
                };
                if let Err(e) = self.copy_from(&from, source_offset, offset, len) {
                    return done.complete(Err(e));
                }
                IoReply::Done
            }
            IoRequest::Flush => IoReply::Done,
            IoRequest::WriteZeroes { offset, len } => {
                self.zero(offset, len);
                let ((first, end), _) = self.blocks(offset, len);
                self.set_mapped(first, end, true);
                IoReply::Done
            }
            IoRequest::Discard { offset, len } => {
                self.zero(offset, len);
                let (_, (first, end)) = self.blocks(offset, len);
                self.set_mapped(first, end, false);
                IoReply::Done
            }
            IoRequest::Allocation { offset, len } => {
                if len == 0 {
                    return done
                        .complete(Err(StoreError::new(Op::Allocation, ErrorKind::OutOfRange)));
                }
                self.allocation(offset, len)
            }
        };
        done.complete(Ok(reply));
    }

    fn describe(&self) -> String {
        format!("memory {} bytes", self.geometry.size_bytes())
    }

    fn copy_source(&self) -> Option<CopySource> {
        Some(CopySource::new(self.0.clone()))
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
}
