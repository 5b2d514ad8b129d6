//! A point-in-time copy of a store that keeps serving (`admin lun clone`): copy before
//! write.
//!
//! A [`Snapshot`] stands in front of a store (the source) while [`Snapshot::run`] copies
//! its data, chunk by chunk of [`CHUNK`] bytes, into a new store of the same size (the
//! destination). Reads pass through at once, as does a request that changes data (a
//! write, a write of zeroes, a discard, a copy into the store) whose chunks are all
//! copied. A changing request that touches a chunk not yet copied is held: its chunks go
//! to the front of the copy, and it goes on to the source once they are copied. So the
//! destination holds the source as it was when the snapshot began: every write completed
//! before then, none begun after. A write still in flight at that moment may be in the
//! copy in part, as it may be on the disk after a crash (crash-consistent).
//!
//! Invariant: no request that changes data reaches the source over a chunk that is not
//! copied, and the copy of a chunk reads it only while no such request can. Chunks that
//! read back as zeroes are not written: the destination is created sparse and stays so
//! there. Holes of the source are not even read: the copy asks the source where its
//! allocated data lies ([`IoRequest::Allocation`], SEEK_DATA/SEEK_HOLE) and takes a chunk
//! that is all hole as copied; a thin LU of a terabyte with a few gigabytes in it is
//! read for those gigabytes. It asks while the chunks asked about are held as if being
//! copied, so the answer holds until they are marked; where the data is dense it asks
//! less and less often (see [`Holes`]), and a source that cannot tell is read whole.
//!
//! The snapshot stands in the data path only for the copy (the daemon's `handover::Lane`
//! sends the LUN's requests through it, and back once [`Snapshot::run`] returns); every
//! other call goes to the source. When the copy fails, everything held goes on to the
//! source and the snapshot passes everything from then on: the source never pays for a
//! failed copy.

use crate::progress::{report, Progress};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store_api::{
    BlockStore, Capabilities, Completion, CopySource, Geometry, IoReply, IoRequest, LockError,
    LockMode, LockOwner, LockWait, MetadataLock, Op, Segments, Space, StoreError,
};

/// Bytes copied as one piece: the unit a held write waits for.
pub const CHUNK: u64 = 1 << 20;
/// Chunks read (then written) at once by the copy.
const BATCH: usize = 4;
/// How often the copy reports its progress (`crate::progress`) at most.
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// How often a long copy says how far it is in the log.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Chunks one question about the source's holes covers at most (1 GiB).
const HOLES_ASKED: usize = 1024;
/// After answers of data, chunks read before asking again, at most (64 MiB).
const HOLES_BACKOFF: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Not copied; no held request waits for it.
    Pending,
    /// Not copied; a held request waits for it (it is in `urgent`).
    Wanted,
    /// Being read from the source and written to the destination.
    Copying,
    /// In the destination: requests over it pass.
    Copied,
}

struct Held {
    first: usize,
    last: usize,
    request: IoRequest,
    done: Completion,
}

struct State {
    chunks: Vec<Chunk>,
    /// The next chunk the sequential copy looks at.
    cursor: usize,
    /// Chunks held requests wait for, in the order they were asked for.
    urgent: VecDeque<usize>,
    held: Vec<Held>,
    /// The copy has ended (done or failed): every request passes.
    ended: bool,
    /// Requests that were held, over the whole copy.
    held_count: u64,
}

/// What a finished copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Bytes copied: the source's size when the snapshot began.
    pub bytes: u64,
    /// Bytes read from the source (the chunks that were not holes there).
    pub read: u64,
    /// Bytes written to the destination (chunks that were not all zeroes).
    pub written: u64,
    /// Requests that waited for their chunks to be copied first.
    pub held: u64,
    pub took: Duration,
}

/// Copy before write from `source` to `dest`; see the module docs.
pub struct Snapshot {
    source: Arc<dyn BlockStore>,
    dest: Arc<dyn BlockStore>,
    /// The source's size when the snapshot began: what is copied.
    size: u64,
    state: Mutex<State>,
    /// Bytes copied so far ([`Snapshot::progress`]).
    done: AtomicU64,
    /// [`Snapshot::cancel`] was called.
    cancelled: AtomicBool,
}

/// Why a copy did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// Reading the source or writing the destination failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// [`Snapshot::cancel`] stopped it.
    #[error("cancelled")]
    Cancelled,
}

/// Where the copy stands with the source's holes: whether to ask, and from which chunk.
/// Each answer of data makes the copy read more chunks before it asks again (doubling up
/// to [`HOLES_BACKOFF`]), each hole starts over at one, so a source dense with data is
/// asked about once per 64 MiB at most, and a sparse one skips each hole with one question.
#[derive(Debug)]
struct Holes {
    /// The source answers (off after it could not).
    ask: bool,
    /// The first chunk the next question may be about.
    next: usize,
    /// Chunks to read after the next answer of data.
    backoff: usize,
}

impl Holes {
    fn new(source: &dyn BlockStore) -> Holes {
        Holes {
            // A store that never deallocates (fully provisioned) has no holes to find.
            ask: source.capabilities().discard_zeroes,
            next: 0,
            backoff: 1,
        }
    }
}

impl Snapshot {
    /// A snapshot of `source` as it is now, to be copied into `dest` (a new store at least
    /// as large, which nothing else writes) by [`Snapshot::run`]. From now on the caller
    /// sends the source's requests through the snapshot.
    pub fn new(source: Arc<dyn BlockStore>, dest: Arc<dyn BlockStore>) -> Arc<Snapshot> {
        let size = source.geometry().size_bytes();
        let chunks = size.div_ceil(CHUNK) as usize;
        Arc::new(Snapshot {
            source,
            dest,
            size,
            state: Mutex::new(State {
                chunks: vec![Chunk::Pending; chunks],
                cursor: 0,
                urgent: VecDeque::new(),
                held: Vec::new(),
                ended: false,
                held_count: 0,
            }),
            done: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
        })
    }

    /// Stops the copy at its next chunks (those being copied finish first): [`Snapshot::run`]
    /// returns [`CopyError::Cancelled`], and what it held goes on to the source.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Bytes copied so far, and in all.
    pub fn progress(&self) -> (u64, u64) {
        (self.done.load(Ordering::Relaxed), self.size)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The chunks a request that changes data touches (first and last), or `None` when it
    /// changes nothing the copy has to keep (a read, a flush, an empty range, a range past
    /// the snapshot's end, which the source refuses or that was not there to copy).
    fn chunks_changed(&self, req: &IoRequest) -> Option<(usize, usize)> {
        let (offset, len) = match req {
            IoRequest::Write { .. }
            | IoRequest::WriteZeroes { .. }
            | IoRequest::Discard { .. }
            | IoRequest::Copy { .. } => req.range()?,
            IoRequest::Read { .. } | IoRequest::Flush | IoRequest::Allocation { .. } => {
                return None
            }
        };
        if len == 0 || offset >= self.size {
            return None;
        }
        let end = offset.saturating_add(len).min(self.size);
        Some(((offset / CHUNK) as usize, ((end - 1) / CHUNK) as usize))
    }

    /// Passes `req` to the source, or holds it until its chunks are copied.
    fn admit(&self, req: IoRequest, done: Completion) {
        if let Some((req, done)) = self.hold(&mut self.lock(), req, done) {
            self.source.submit(req, done);
        }
    }

    /// Holds `req` when it changes a chunk not yet copied (and the copy goes on); else
    /// gives it back, to be passed on.
    fn hold(
        &self,
        state: &mut State,
        req: IoRequest,
        done: Completion,
    ) -> Option<(IoRequest, Completion)> {
        let Some((first, last)) = self.chunks_changed(&req) else {
            return Some((req, done));
        };
        let copied = state.chunks[first..=last]
            .iter()
            .all(|c| *c == Chunk::Copied);
        if state.ended || copied {
            return Some((req, done));
        }
        for c in first..=last {
            if state.chunks[c] == Chunk::Pending {
                state.chunks[c] = Chunk::Wanted;
                state.urgent.push_back(c);
            }
        }
        state.held_count += 1;
        state.held.push(Held {
            first,
            last,
            request: req,
            done,
        });
        None
    }

    /// The next chunks to copy: those held requests wait for first, then in order, these
    /// below chunk `until` but the first (the holes past it are yet to be asked about).
    fn next_batch(&self, until: usize) -> Vec<usize> {
        let mut state = self.lock();
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let Some(c) = state.urgent.pop_front() else {
                break;
            };
            if state.chunks[c] == Chunk::Wanted {
                state.chunks[c] = Chunk::Copying;
                batch.push(c);
            }
        }
        while batch.len() < BATCH && state.cursor < state.chunks.len() {
            let c = state.cursor;
            if c >= until && !batch.is_empty() {
                break;
            }
            state.cursor += 1;
            if matches!(state.chunks[c], Chunk::Pending | Chunk::Wanted) {
                state.chunks[c] = Chunk::Copying;
                batch.push(c);
            }
        }
        batch
    }

    /// Marks `batch` copied and sends on the held requests that waited only for copied
    /// chunks, in the order they came.
    fn copied(&self, batch: &[usize]) {
        let released = {
            let mut state = self.lock();
            for &c in batch {
                state.chunks[c] = Chunk::Copied;
            }
            let bytes = batch.iter().map(|&c| self.chunk_len(c)).sum::<u64>();
            self.done.fetch_add(bytes, Ordering::Relaxed);
            let held = std::mem::take(&mut state.held);
            let (ready, waiting): (Vec<_>, Vec<_>) = held.into_iter().partition(|h| {
                state.chunks[h.first..=h.last]
                    .iter()
                    .all(|c| *c == Chunk::Copied)
            });
            state.held = waiting;
            ready
        };
        for h in released {
            self.source.submit(h.request, h.done);
        }
    }

    /// Asks the source about the chunks from the copy's cursor on (up to [`HOLES_ASKED`]
    /// not yet copied nor wanted) and marks those that are all hole copied, unread: the
    /// destination, new and sparse, reads zeroes there as the hole does. The chunks asked
    /// about are held as if being copied until the answer is applied, so no change
    /// reaches them in between; those that hold data go back to be copied (first, if a
    /// request waits for them). Returns the bytes skipped.
    fn skip_holes(&self, holes: &mut Holes) -> u64 {
        let range = {
            let mut state = self.lock();
            let first = state.cursor.max(holes.next).min(state.chunks.len());
            let pending = state.chunks[first..]
                .iter()
                .take(HOLES_ASKED)
                .take_while(|c| **c == Chunk::Pending)
                .count();
            for c in &mut state.chunks[first..first + pending] {
                *c = Chunk::Copying;
            }
            first..first + pending
        };
        if range.is_empty() {
            return 0;
        }
        let start = range.start as u64 * CHUNK;
        let end = (range.end as u64 * CHUNK).min(self.size);
        let answer = wait_all(
            &*self.source,
            vec![IoRequest::Allocation {
                offset: start,
                len: end - start,
            }],
        );
        // The chunks wholly inside a hole from the range's start, and those the data from
        // there reaches into.
        let (hole_chunks, data_chunks) = match answer.as_deref() {
            Ok([IoReply::Allocation { mapped: false, len }]) => {
                let hole_end = start + len;
                let whole = range
                    .clone()
                    .take_while(|&c| (c as u64 * CHUNK + self.chunk_len(c)) <= hole_end)
                    .count();
                (whole, 1)
            }
            Ok([IoReply::Allocation { mapped: true, len }]) => (0, len.div_ceil(CHUNK) as usize),
            other => {
                tracing::debug!(
                    "the source cannot tell its holes ({other:?}); the copy reads them"
                );
                holes.ask = false;
                (0, 0)
            }
        };
        if hole_chunks == range.len() {
            // All hole: ask on from where the range stopped.
            holes.next = range.end;
            holes.backoff = 1;
        } else if hole_chunks > 0 {
            // The chunk the hole ends in holds data: read it without asking.
            holes.next = range.start + hole_chunks + 1;
            holes.backoff = 1;
        } else if holes.ask {
            // Data in the first chunk: read on without asking, longer each time.
            holes.next = range.start + data_chunks.max(holes.backoff);
            holes.backoff = (holes.backoff * 2).min(HOLES_BACKOFF);
        }
        let skipped = range.start..range.start + hole_chunks;
        {
            // What holds data goes back; a request held over it meanwhile makes it wanted.
            let mut state = self.lock();
            let rest = skipped.end..range.end;
            let State {
                chunks,
                urgent,
                held,
                ..
            } = &mut *state;
            for c in rest.clone() {
                chunks[c] = Chunk::Pending;
            }
            for h in held.iter().filter(|_| !rest.is_empty()) {
                let first = h.first.max(rest.start);
                let Some(span) = chunks.get_mut(first..=h.last.min(rest.end - 1)) else {
                    continue;
                };
                for (i, chunk) in span.iter_mut().enumerate() {
                    if *chunk == Chunk::Pending {
                        *chunk = Chunk::Wanted;
                        urgent.push_back(first + i);
                    }
                }
            }
        }
        let skipped: Vec<usize> = skipped.collect();
        self.copied(&skipped);
        skipped.iter().map(|&c| self.chunk_len(c)).sum()
    }

    /// Ends the copy: from now on every request passes, and the held ones go on now.
    fn end(&self) -> u64 {
        let (held, count) = {
            let mut state = self.lock();
            state.ended = true;
            (std::mem::take(&mut state.held), state.held_count)
        };
        for h in held {
            self.source.submit(h.request, h.done);
        }
        count
    }

    /// Copies every chunk (those held requests wait for first), then flushes the
    /// destination; reports progress as "`what`: copying" through `crate::progress` and
    /// in the log. On an error of either store the copy ends there: the held requests go
    /// on to the source, and the error is returned (the destination is then incomplete).
    pub fn run(&self, what: &str) -> Result<Copied, CopyError> {
        self.run_observed(what, |_| {})
    }

    /// [`Snapshot::run`], telling `observe` the bytes copied so far as each batch is done.
    pub fn run_observed(
        &self,
        what: &str,
        mut observe: impl FnMut(u64),
    ) -> Result<Copied, CopyError> {
        let began = Instant::now();
        let progress = |done| {
            report(&Progress {
                what: format!("{what}: copying"),
                done,
                total: self.size,
            })
        };
        progress(0);
        let mut written = 0u64;
        let (mut reported, mut logged) = (began, began);
        // Told the bytes copied so far each time more are (by a batch or a hole).
        let mut tell = |done: u64| {
            observe(done);
            if done == self.size || reported.elapsed() >= REPORT_EVERY {
                reported = Instant::now();
                progress(done);
            }
            if logged.elapsed() >= LOG_EVERY {
                logged = Instant::now();
                tracing::info!(
                    "{what}: copied {} of {} ({}%)",
                    units::format_human(done),
                    units::format_human(self.size),
                    done * 100 / self.size.max(1)
                );
            }
        };
        // One batch's writes are in flight while the next batch is read: the batch is
        // marked copied (and the requests it held go on) once its writes are done.
        let mut writing: Option<(Vec<usize>, Pending)> = None;
        let mut holes = Holes::new(&*self.source);
        let mut skipped = 0u64;
        let result = loop {
            let cancelled = self.cancelled.load(Ordering::Relaxed);
            if holes.ask && !cancelled {
                let holes_skipped = self.skip_holes(&mut holes);
                if holes_skipped > 0 {
                    skipped += holes_skipped;
                    tell(self.done.load(Ordering::Relaxed));
                }
            }
            let next = match cancelled {
                true => Vec::new(),
                false => self.next_batch(if holes.ask { holes.next } else { usize::MAX }),
            };
            let reads = (!next.is_empty()).then(|| self.read_batch(&next));
            if let Some((batch, writes)) = writing.take() {
                if let Err(e) = writes.wait() {
                    break Err(e.into());
                }
                self.copied(&batch);
                tell(self.done.load(Ordering::Relaxed));
            }
            let Some(reads) = reads else {
                if self.cancelled.load(Ordering::Relaxed) {
                    break Err(CopyError::Cancelled);
                }
                break self.flush_dest().map_err(CopyError::from);
            };
            match self.write_batch(&next, reads) {
                Ok((writes, w)) => {
                    written += w;
                    writing = Some((next, writes));
                }
                Err(e) => break Err(e.into()),
            }
        };
        let held = self.end();
        result.map(|()| Copied {
            bytes: self.size,
            read: self.size - skipped,
            written,
            held,
            took: began.elapsed(),
        })
    }

    fn chunk_len(&self, c: usize) -> u64 {
        let start = c as u64 * CHUNK;
        CHUNK.min(self.size - start)
    }

    /// Reads the chunks of `batch` from the source and writes those that are not all
    /// zeroes to the destination; returns the bytes written (the tests' step by step).
    #[cfg(test)]
    fn copy_batch(&self, batch: &[usize]) -> Result<u64, StoreError> {
        let (writes, written) = self.write_batch(batch, self.read_batch(batch))?;
        writes.wait()?;
        Ok(written)
    }

    /// Starts reading the chunks of `batch` from the source.
    fn read_batch(&self, batch: &[usize]) -> Pending {
        let reads = batch.iter().map(|&c| IoRequest::Read {
            offset: c as u64 * CHUNK,
            len: self.chunk_len(c) as u32,
        });
        submit_all(&*self.source, reads.collect())
    }

    /// Waits for the reads of `batch` and starts writing the chunks that are not all
    /// zeroes to the destination; the writes, and the bytes they write.
    fn write_batch(&self, batch: &[usize], reads: Pending) -> Result<(Pending, u64), StoreError> {
        let data = reads.wait()?;
        let mut writes = Vec::new();
        let mut written = 0;
        for (&c, reply) in batch.iter().zip(data) {
            let IoReply::Data(bytes) = reply else {
                return Err(StoreError::new(
                    Op::Read,
                    store_api::ErrorKind::ShortTransfer,
                ));
            };
            if all_zeroes(&bytes) {
                continue;
            }
            written += bytes.len() as u64;
            writes.push(IoRequest::Write {
                offset: c as u64 * CHUNK,
                data: Segments::from(bytes),
                fua: false,
            });
        }
        Ok((submit_all(&*self.dest, writes), written))
    }

    fn flush_dest(&self) -> Result<(), StoreError> {
        wait_all(&*self.dest, vec![IoRequest::Flush]).map(drop)
    }
}

/// Requests submitted together ([`submit_all`]), to be waited for.
struct Pending {
    n: usize,
    answers: mpsc::Receiver<(usize, Result<IoReply, StoreError>)>,
}

/// Submits `requests` to `store` at once, without waiting.
fn submit_all(store: &dyn BlockStore, requests: Vec<IoRequest>) -> Pending {
    let n = requests.len();
    let (tx, answers) = mpsc::channel();
    for (i, req) in requests.into_iter().enumerate() {
        let tx = tx.clone();
        store.submit(
            req,
            Completion::new(move |result| {
                let _ = tx.send((i, result));
            }),
        );
    }
    Pending { n, answers }
}

impl Pending {
    /// Waits for every request; their replies in order, or the first error (by position)
    /// once all have answered.
    fn wait(self) -> Result<Vec<IoReply>, StoreError> {
        let mut replies: Vec<Option<Result<IoReply, StoreError>>> = vec![None; self.n];
        for _ in 0..self.n {
            // A completion is called exactly once, also when dropped (as an error).
            let (i, result) = self
                .answers
                .recv()
                .map_err(|_| StoreError::new(Op::Read, store_api::ErrorKind::Io))?;
            replies[i] = Some(result);
        }
        replies
            .into_iter()
            .map(|r| r.expect("every request answered"))
            .collect()
    }
}

/// Submits `requests` to `store` at once and waits for all of them ([`Pending::wait`]).
fn wait_all(store: &dyn BlockStore, requests: Vec<IoRequest>) -> Result<Vec<IoReply>, StoreError> {
    submit_all(store, requests).wait()
}

fn all_zeroes(data: &[u8]) -> bool {
    const ZEROES: [u8; 4096] = [0; 4096];
    data.chunks(ZEROES.len()).all(|c| c == &ZEROES[..c.len()])
}

/// The source's store, with requests that change data held as the module docs say.
impl BlockStore for Snapshot {
    fn geometry(&self) -> Geometry {
        self.source.geometry()
    }

    fn capabilities(&self) -> Capabilities {
        self.source.capabilities()
    }

    fn submit(&self, req: IoRequest, done: Completion) {
        self.admit(req, done);
    }

    /// What is not held goes on to the source as one batch, in its order (so a store
    /// that joins writes still joins them during the copy).
    fn submit_batch(&self, batch: &mut Vec<(IoRequest, Completion)>) {
        let mut passed = Vec::with_capacity(batch.len());
        {
            let mut state = self.lock();
            for (req, done) in batch.drain(..) {
                passed.extend(self.hold(&mut state, req, done));
            }
        }
        self.source.submit_batch(&mut passed);
    }

    fn joins_writes(&self) -> bool {
        self.source.joins_writes()
    }

    fn joins_reads(&self) -> bool {
        self.source.joins_reads()
    }

    fn describe(&self) -> String {
        format!("{} (being copied)", self.source.describe())
    }

    fn copy_source(&self) -> Option<CopySource> {
        self.source.copy_source()
    }

    fn read_metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.source.read_metadata(name)
    }

    fn write_metadata(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.source.write_metadata(name, data)
    }

    fn lock_metadata(
        &self,
        name: &str,
        owner: &LockOwner,
        mode: LockMode,
        wait: LockWait,
    ) -> Result<MetadataLock, LockError> {
        self.source.lock_metadata(name, owner, mode, wait)
    }

    fn fence_data(&self, owner: &LockOwner, wait: LockWait) -> Result<MetadataLock, LockError> {
        self.source.fence_data(owner, wait)
    }

    fn clear_lock(&self, name: &str) -> Result<bool, StoreError> {
        self.source.clear_lock(name)
    }

    fn take_lock_over(
        &self,
        name: &str,
        owner: &LockOwner,
        wait: Duration,
    ) -> Result<MetadataLock, LockError> {
        self.source.take_lock_over(name, owner, wait)
    }

    fn clear_write_locks(&self, names: &[&'static str]) -> Result<u32, StoreError> {
        self.source.clear_write_locks(names)
    }

    /// Refused while the copy runs (the copy is of the size the snapshot began with).
    fn resize(&self, _size_bytes: u64) -> Result<Geometry, StoreError> {
        Err(StoreError::new(
            Op::Write,
            store_api::ErrorKind::Unsupported,
        ))
    }

    fn space(&self) -> Result<Space, StoreError> {
        self.source.space()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use bytes::Bytes;

    fn memory(bytes: u64) -> Arc<dyn BlockStore> {
        Arc::new(MemoryStore::new(Geometry {
            block_size: 512,
            num_blocks: bytes / 512,
        }))
    }

    fn write(offset: u64, data: &[u8]) -> IoRequest {
        IoRequest::Write {
            offset,
            data: Segments::from(Bytes::copy_from_slice(data)),
            fua: false,
        }
    }

    fn read(store: &dyn BlockStore, offset: u64, len: u32) -> Vec<u8> {
        match wait_all(store, vec![IoRequest::Read { offset, len }]) {
            Ok(mut r) => match r.pop() {
                Some(IoReply::Data(b)) => b.to_vec(),
                other => panic!("{other:?}"),
            },
            Err(e) => panic!("{e}"),
        }
    }

    /// A request sent through the snapshot, and whether it has been answered.
    fn send(s: &Snapshot, req: IoRequest) -> mpsc::Receiver<Result<IoReply, StoreError>> {
        let (tx, rx) = mpsc::channel();
        s.submit(
            req,
            Completion::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx
    }

    #[test]
    fn chunks_touched_are_those_of_the_changed_bytes_within_the_snapshot() {
        let s = Snapshot::new(memory(3 * CHUNK + 4096), memory(3 * CHUNK + 4096));
        let w = |offset, len| IoRequest::WriteZeroes { offset, len };
        assert_eq!(s.chunks_changed(&w(0, 1)), Some((0, 0)));
        assert_eq!(s.chunks_changed(&w(CHUNK - 1, 2)), Some((0, 1)));
        assert_eq!(s.chunks_changed(&w(CHUNK, CHUNK)), Some((1, 1)));
        assert_eq!(s.chunks_changed(&w(3 * CHUNK, 1 << 40)), Some((3, 3)));
        assert_eq!(s.chunks_changed(&w(0, 0)), None);
        assert_eq!(s.chunks_changed(&w(4 * CHUNK, 512)), None);
        let discard = IoRequest::Discard {
            offset: 0,
            len: 512,
        };
        assert_eq!(s.chunks_changed(&discard), Some((0, 0)));
        assert_eq!(s.chunks_changed(&write(2 * CHUNK, &[1; 512])), Some((2, 2)));
        assert_eq!(
            s.chunks_changed(&IoRequest::Read {
                offset: 0,
                len: 512
            }),
            None
        );
        assert_eq!(s.chunks_changed(&IoRequest::Flush), None);
    }

    /// A write over chunks not yet copied waits for them: the copy takes them first and
    /// keeps their old bytes; a read, and a write over copied chunks, pass at once.
    #[test]
    fn a_write_over_an_uncopied_chunk_waits_and_the_copy_keeps_the_old_bytes() {
        let source = memory(8 * CHUNK);
        let dest = memory(8 * CHUNK);
        wait_all(&*source, vec![write(0, &vec![0x11; 8 * CHUNK as usize])]).unwrap();
        let s = Snapshot::new(source.clone(), dest.clone());
        assert_eq!(s.progress(), (0, 8 * CHUNK));
        // Chunks 6 and 7 (a write across their boundary) are held.
        let held = send(&s, write(7 * CHUNK - 512, &[0x22; 1024]));
        assert!(
            held.try_recv().is_err(),
            "answered before its chunks were copied"
        );
        assert_eq!(read(&*source, 7 * CHUNK - 512, 1024), vec![0x11; 1024]);
        // A read passes (and sees the old bytes: the write has not reached the source).
        assert_eq!(
            send(
                &s,
                IoRequest::Read {
                    offset: 7 * CHUNK - 512,
                    len: 512
                }
            )
            .recv()
            .unwrap(),
            Ok(IoReply::Data(Bytes::from(vec![0x11; 512])))
        );
        // The first batch is the held write's chunks, then the sequential start.
        let batch = s.next_batch(usize::MAX);
        assert_eq!(batch, vec![6, 7, 0, 1]);
        s.copy_batch(&batch).unwrap();
        assert!(
            held.try_recv().is_err(),
            "answered before its chunks were marked copied"
        );
        s.copied(&batch);
        assert_eq!(held.recv().unwrap(), Ok(IoReply::Done));
        assert_eq!(read(&*source, 7 * CHUNK - 512, 1024), vec![0x22; 1024]);
        // Chunk 0 is copied: a write there passes at once.
        assert_eq!(
            send(&s, write(0, &[0x33; 512])).recv().unwrap(),
            Ok(IoReply::Done)
        );
        // Chunk 2 is not: held until the copy reaches it in order.
        let later = send(
            &s,
            IoRequest::Discard {
                offset: 2 * CHUNK,
                len: 4096,
            },
        );
        assert!(later.try_recv().is_err());
        let copied = s.run("test").unwrap();
        assert_eq!(later.recv().unwrap(), Ok(IoReply::Done));
        assert_eq!(copied.bytes, 8 * CHUNK);
        assert_eq!(copied.held, 2);
        assert_eq!(s.progress(), (8 * CHUNK, 8 * CHUNK));
        // The copy is the source as it was; the source has the writes.
        assert_eq!(
            read(&*dest, 0, 8 * CHUNK as u32),
            vec![0x11; 8 * CHUNK as usize]
        );
        assert_eq!(read(&*source, 0, 512), vec![0x33; 512]);
        assert_eq!(read(&*source, 2 * CHUNK, 4096), vec![0; 4096]);
        // Ended: everything passes.
        assert_eq!(
            send(&s, write(5 * CHUNK, &[0x44; 512])).recv().unwrap(),
            Ok(IoReply::Done)
        );
    }

    /// A batch passes on as a batch what it need not hold, in its order, and holds the
    /// rest.
    #[test]
    fn a_batch_holds_what_touches_uncopied_chunks_and_passes_the_rest() {
        let source = memory(4 * CHUNK);
        let s = Snapshot::new(source.clone(), memory(4 * CHUNK));
        let batch = s.next_batch(usize::MAX);
        assert_eq!(batch, vec![0, 1, 2, 3]);
        s.copy_batch(&batch[..1]).unwrap();
        s.copied(&batch[..1]);
        let (tx, rx) = mpsc::channel();
        let mut requests: Vec<(IoRequest, Completion)> = [
            write(0, &[1; 512]),
            write(CHUNK, &[2; 512]),
            IoRequest::Read {
                offset: CHUNK,
                len: 512,
            },
            write(512, &[3; 512]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, req)| {
            let tx = tx.clone();
            (
                req,
                Completion::new(move |r| {
                    let _ = tx.send((i, r));
                }),
            )
        })
        .collect();
        s.submit_batch(&mut requests);
        assert!(requests.is_empty());
        let mut answered: Vec<usize> = (0..3).map(|_| rx.recv().unwrap().0).collect();
        answered.sort();
        assert_eq!(answered, vec![0, 2, 3], "the write over chunk 1 is held");
        assert!(rx.try_recv().is_err());
        s.copied(&batch[1..]);
        assert_eq!(rx.recv().unwrap(), (1, Ok(IoReply::Done)));
        assert_eq!(
            read(&*source, 0, 1024),
            [vec![1; 512], vec![3; 512]].concat()
        );
    }

    /// Chunks of zeroes are not written to the destination (it stays sparse there), and
    /// a last chunk shorter than [`CHUNK`] is copied whole.
    #[test]
    fn zero_chunks_are_skipped_and_a_short_last_chunk_is_copied() {
        let size = 3 * CHUNK + 8192;
        let source = memory(size);
        let dest = memory(size);
        wait_all(
            &*source,
            vec![write(CHUNK + 100, &[7; 300]), write(size - 512, &[9; 512])],
        )
        .unwrap();
        let copied = Snapshot::new(source.clone(), dest.clone())
            .run("test")
            .unwrap();
        assert_eq!(copied.written, CHUNK + 8192);
        assert_eq!(read(&*dest, 0, size as u32), read(&*source, 0, size as u32));
        let allocated = dest.space().unwrap().allocated;
        assert!(allocated <= CHUNK + 8192 + 64 * 1024, "{allocated}");
    }

    /// A source that counts the bytes read from it and the questions about its holes, and
    /// runs `on_question` (once) as the first question comes, before answering it.
    struct Counting {
        inner: Arc<dyn BlockStore>,
        read: AtomicU64,
        questions: AtomicU64,
        on_question: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }
    impl Counting {
        fn new(inner: Arc<dyn BlockStore>) -> Arc<Counting> {
            Arc::new(Counting {
                inner,
                read: AtomicU64::new(0),
                questions: AtomicU64::new(0),
                on_question: Mutex::new(None),
            })
        }
    }
    impl BlockStore for Counting {
        fn geometry(&self) -> Geometry {
            self.inner.geometry()
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        fn submit(&self, req: IoRequest, done: Completion) {
            match req {
                IoRequest::Read { len, .. } => {
                    self.read.fetch_add(u64::from(len), Ordering::Relaxed);
                }
                IoRequest::Allocation { .. } => {
                    self.questions.fetch_add(1, Ordering::Relaxed);
                    if let Some(f) = self.on_question.lock().unwrap().take() {
                        f();
                    }
                }
                _ => {}
            }
            self.inner.submit(req, done)
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    /// A sparse source is read only where it holds data: one question per hole, each
    /// chunk of a hole taken as copied unread, and the copy equal to the source.
    #[test]
    fn holes_of_the_source_are_neither_read_nor_written() {
        let size = 64 * CHUNK + 4096;
        let inner = memory(size);
        wait_all(
            &*inner,
            vec![
                write(3 * CHUNK, &vec![0x33; CHUNK as usize]),
                write(40 * CHUNK + 100, &[0x40; 300]),
                write(size - 512, &[0x64; 512]),
            ],
        )
        .unwrap();
        let source = Counting::new(inner.clone());
        let dest = memory(size);
        let s = Snapshot::new(source.clone(), dest.clone());
        let copied = s.run("test").unwrap();
        assert!(
            read(&*dest, 0, size as u32) == read(&*inner, 0, size as u32),
            "the copy differs"
        );
        // Chunks 3 and 40 and the short last one (4096 bytes) hold data.
        let data = 2 * CHUNK + 4096;
        assert_eq!(source.read.load(Ordering::Relaxed), data);
        assert_eq!(
            (copied.bytes, copied.read, copied.written),
            (size, data, data)
        );
        assert_eq!(s.progress(), (size, size));
        // At 0 (a hole up to chunk 3), at 4 (up to 40), at 41 (up to the last chunk).
        assert_eq!(source.questions.load(Ordering::Relaxed), 3);
    }

    /// A source all data is read whole, after one question per gigabyte at most.
    #[test]
    fn a_source_full_of_data_is_read_whole_after_one_question() {
        let size = 8 * CHUNK;
        let inner = memory(size);
        wait_all(&*inner, vec![write(0, &vec![0x5A; size as usize])]).unwrap();
        let source = Counting::new(inner.clone());
        let dest = memory(size);
        let copied = Snapshot::new(source.clone(), dest.clone())
            .run("test")
            .unwrap();
        assert!(read(&*dest, 0, size as u32) == vec![0x5A; size as usize]);
        assert_eq!((copied.read, copied.written), (size, size));
        assert_eq!(source.read.load(Ordering::Relaxed), size);
        assert_eq!(source.questions.load(Ordering::Relaxed), 1);
    }

    /// Where every chunk holds some data the copy asks less and less often: after 1, 2, 4,
    /// ... chunks read, up to 64 between questions.
    #[test]
    fn a_source_with_data_in_every_chunk_is_asked_about_less_and_less() {
        let chunks = 200;
        let size = chunks * CHUNK;
        let inner = memory(size);
        let writes = (0..chunks)
            .map(|c| write(c * CHUNK, &[0x77; 512]))
            .collect();
        wait_all(&*inner, writes).unwrap();
        let source = Counting::new(inner.clone());
        let copied = Snapshot::new(source.clone(), memory(size))
            .run("test")
            .unwrap();
        assert_eq!((copied.read, copied.written), (size, size));
        // At chunks 0, 1, 3, 7, 15, 31, 63, 127 and 191.
        assert_eq!(source.questions.load(Ordering::Relaxed), 9);
    }

    /// Writes that come while the copy asks about their chunks wait as for a chunk being
    /// copied: over a hole, until it is taken as copied; over data, until that chunk,
    /// wanted now, is copied first. The copy keeps the old bytes of both.
    #[test]
    fn writes_during_a_question_wait_and_the_copy_keeps_the_old_bytes() {
        let size = 8 * CHUNK;
        let inner = memory(size);
        wait_all(&*inner, vec![write(2 * CHUNK, &vec![0x22; CHUNK as usize])]).unwrap();
        let source = Counting::new(inner.clone());
        let dest = memory(size);
        let s = Snapshot::new(source.clone(), dest.clone());
        let (tx, answered) = mpsc::channel();
        {
            let s = s.clone();
            *source.on_question.lock().unwrap() = Some(Box::new(move || {
                // Chunk 1 is a hole, chunk 6 is past the hole that starts the source
                // (the question's answer), chunk 2 holds data.
                for (i, offset) in [(1, CHUNK), (6, 6 * CHUNK), (2, 2 * CHUNK)] {
                    let tx = tx.clone();
                    s.submit(
                        write(offset, &[0xEE; 512]),
                        Completion::new(move |r| {
                            let _ = tx.send((i, r));
                        }),
                    );
                }
            }));
        }
        let mut holes = Holes::new(&*s.source);
        assert_eq!(s.skip_holes(&mut holes), 2 * CHUNK, "chunks 0 and 1");
        // The write over chunk 1 went on once its chunk was taken as copied.
        assert_eq!(answered.recv().unwrap(), (1, Ok(IoReply::Done)));
        assert!(answered.try_recv().is_err(), "the others wait");
        // The chunks of the waiting writes go first, in the order the writes came; once
        // copied, the writes go on.
        let batch = s.next_batch(usize::MAX);
        assert_eq!(batch, vec![6, 2, 3, 4]);
        s.copy_batch(&batch).unwrap();
        assert!(
            answered.try_recv().is_err(),
            "answered before marked copied"
        );
        s.copied(&batch);
        let mut rest: Vec<_> = (0..2).map(|_| answered.recv().unwrap()).collect();
        rest.sort_by_key(|(i, _)| *i);
        assert_eq!(rest, [(2, Ok(IoReply::Done)), (6, Ok(IoReply::Done))]);
        let copied = s.run("test").unwrap();
        assert_eq!(copied.held, 3);
        // The copy is the source as it was: chunk 2's data, zeroes elsewhere; the source
        // has the writes.
        let mut before = vec![0; size as usize];
        before[2 * CHUNK as usize..3 * CHUNK as usize].fill(0x22);
        assert!(read(&*dest, 0, size as u32) == before, "the copy differs");
        for chunk in [1, 2, 6] {
            assert_eq!(read(&*inner, chunk * CHUNK, 512), vec![0xEE; 512]);
        }
    }

    /// A store that fails every write.
    struct Failing(Arc<dyn BlockStore>);
    impl BlockStore for Failing {
        fn geometry(&self) -> Geometry {
            self.0.geometry()
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        fn submit(&self, req: IoRequest, done: Completion) {
            match req {
                IoRequest::Write { .. } => {
                    done.complete(Err(StoreError::from_errno(Op::Write, libc::ENOSPC)))
                }
                other => self.0.submit(other, done),
            }
        }
        fn describe(&self) -> String {
            "failing".into()
        }
    }

    /// When the destination fails, the copy ends with its error and the held requests go
    /// on to the source; from then on nothing is held.
    #[test]
    fn a_failed_copy_releases_what_it_held_and_holds_nothing_more() {
        let source = memory(4 * CHUNK);
        wait_all(&*source, vec![write(0, &vec![5; 4 * CHUNK as usize])]).unwrap();
        let s = Snapshot::new(source.clone(), Arc::new(Failing(memory(4 * CHUNK))));
        let held = send(&s, write(3 * CHUNK, &[6; 512]));
        assert!(held.try_recv().is_err());
        let err = s.run("test").unwrap_err();
        let CopyError::Store(err) = err else {
            panic!("{err:?}")
        };
        assert_eq!(err.kind, store_api::ErrorKind::NoSpace);
        assert_eq!(held.recv().unwrap(), Ok(IoReply::Done));
        assert_eq!(read(&*source, 3 * CHUNK, 512), vec![6; 512]);
        assert_eq!(
            send(&s, write(2 * CHUNK, &[6; 512])).recv().unwrap(),
            Ok(IoReply::Done)
        );
    }

    /// A cancelled copy stops before its next chunks and lets what it held go on.
    #[test]
    fn a_cancelled_copy_stops_and_releases_what_it_held() {
        let source = memory(4 * CHUNK);
        let s = Snapshot::new(source.clone(), memory(4 * CHUNK));
        let held = send(&s, write(CHUNK, &[6; 512]));
        assert!(held.try_recv().is_err());
        s.cancel();
        assert_eq!(s.run("test"), Err(CopyError::Cancelled));
        assert_eq!(s.progress(), (0, 4 * CHUNK));
        assert_eq!(held.recv().unwrap(), Ok(IoReply::Done));
        assert_eq!(read(&*source, CHUNK, 512), vec![6; 512]);
    }

    /// The copy reports from 0 to the whole size through the thread's progress sink.
    #[test]
    fn the_copy_reports_its_progress() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let snap = Snapshot::new(memory(2 * CHUNK), memory(2 * CHUNK));
        crate::progress::with_sink(
            move |p: &Progress| s.lock().unwrap().push((p.what.clone(), p.done, p.total)),
            || snap.run("lun t/0").unwrap(),
        );
        let seen = seen.lock().unwrap();
        let what = "lun t/0: copying".to_string();
        assert_eq!(seen.first(), Some(&(what.clone(), 0, 2 * CHUNK)));
        assert_eq!(seen.last(), Some(&(what, 2 * CHUNK, 2 * CHUNK)));
    }
}
