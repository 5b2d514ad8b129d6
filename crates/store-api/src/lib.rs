//! The one seam between SCSI emulation and storage.
//!
//! The SCSI layer turns a CDB into an [`IoRequest`]; a [`BlockStore`] carries it out and
//! reports an [`IoResult`] through the request's [`Completion`]. Every store (memory, plain
//! file, gfapi — real or fake) implements the same contract:
//!
//! * `submit` never blocks on I/O. It either finishes at once (memory) or hands the request
//!   to its own engine (a thread pool, gfapi's async calls) and returns.
//! * The completion is called exactly once, on any thread.
//! * Buffers are owned by the request until it completes, so a command that is aborted while
//!   the store still works on it cannot free memory the store is writing into.
//!
//! This crate does no I/O and knows nothing of SCSI or iSCSI.

#![forbid(unsafe_code)]
/// Read buffers: stores fill pooled buffers (see the `bufpool` crate).
pub use bufpool::BufferPool;
/// Write data as the segments it arrived in (see the `bufpool` crate).
pub use bufpool::Segments;

use bytes::Bytes;
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Size and addressing of a store, in logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Logical block size in bytes (512 or 4096 in practice).
    pub block_size: u32,
    /// Number of logical blocks; the last addressable LBA is `num_blocks - 1`.
    pub num_blocks: u64,
}

impl Geometry {
    /// Size of the store in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.num_blocks * u64::from(self.block_size)
    }
}

/// A geometry whose capacity may grow while requests run: what a store that implements
/// [`BlockStore::resize`] keeps (one relaxed atomic load per request).
#[derive(Debug)]
pub struct GrowableGeometry {
    block_size: u32,
    num_blocks: std::sync::atomic::AtomicU64,
}

impl GrowableGeometry {
    pub fn new(geometry: Geometry) -> Self {
        GrowableGeometry {
            block_size: geometry.block_size,
            num_blocks: geometry.num_blocks.into(),
        }
    }

    /// The geometry now.
    pub fn get(&self) -> Geometry {
        Geometry {
            block_size: self.block_size,
            num_blocks: self.num_blocks.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Sets the capacity (after the storage behind it has grown).
    pub fn set_blocks(&self, num_blocks: u64) {
        self.num_blocks
            .store(num_blocks, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The number of blocks a store of `current` geometry has after growing to `size_bytes`:
/// refused (`OutOfRange`) unless it is a whole number of blocks and not smaller.
pub fn check_resize(current: Geometry, size_bytes: u64) -> Result<u64, StoreError> {
    let bs = u64::from(current.block_size.max(1));
    // `u64::is_multiple_of` needs Rust 1.87; the workspace supports older.
    #[allow(unknown_lints, clippy::manual_is_multiple_of)]
    let whole = size_bytes % bs == 0;
    if !whole || size_bytes < current.size_bytes() {
        return Err(StoreError::new(Op::Write, ErrorKind::OutOfRange));
    }
    Ok(size_bytes / bs)
}

/// Optional operations a store supports natively.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `IoRequest::Discard` deallocates (punches holes).
    pub discard: bool,
    /// `IoRequest::WriteZeroes` is cheaper than writing a zero buffer.
    pub write_zeroes: bool,
    /// Discarded ranges read back as zeroes.
    pub discard_zeroes: bool,
}

impl Capabilities {
    /// Every optional operation native: discard that punches holes and reads back as
    /// zeroes, and a cheap write of zeroes (the memory, file and glfs stores).
    pub const ALL: Capabilities = Capabilities {
        discard: true,
        write_zeroes: true,
        discard_zeroes: true,
    };

    /// A fully provisioned store (`provisioning = full`): no discard, so the LU reports
    /// no logical block provisioning and offers no UNMAP; a cheap write of zeroes that
    /// keeps the blocks allocated.
    pub const FULLY_PROVISIONED: Capabilities = Capabilities {
        discard: false,
        write_zeroes: true,
        discard_zeroes: false,
    };
}

/// One storage operation, with byte offsets and owned buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoRequest {
    /// Read `len` bytes at `offset`; replies [`IoReply::Data`] with exactly `len` bytes.
    Read { offset: u64, len: u32 },
    /// Write `data` at `offset`. With `fua` the data is durable when the request completes.
    /// The data comes as the segments it arrived in (each PDU's data segment, not gathered
    /// into one copy); a store writes them in order with one vectored call where it can.
    Write {
        offset: u64,
        data: Segments,
        fua: bool,
    },
    /// Make every completed write durable (fdatasync).
    Flush,
    /// Deallocate `len` bytes at `offset`.
    Discard { offset: u64, len: u64 },
    /// Make `len` bytes at `offset` read back as zeroes.
    WriteZeroes { offset: u64, len: u64 },
    /// Whether the bytes from `offset` are allocated: replies [`IoReply::Allocation`] with
    /// the first extent starting at `offset`, at most `len` bytes long (SEEK_DATA/SEEK_HOLE).
    /// A store that cannot tell replies `Unsupported`.
    Allocation { offset: u64, len: u64 },
    /// Copy `len` bytes at `source_offset` of the store `source` stands for (this store or
    /// another; see [`BlockStore::copy_source`]) to `offset` of this store, inside the
    /// storage where it can (copy_file_range) without the data passing through the caller.
    /// A store that cannot copy from that source replies `Unsupported`, and the caller
    /// reads and writes instead. The ranges of one store must not overlap.
    Copy {
        source: CopySource,
        source_offset: u64,
        offset: u64,
        len: u64,
    },
}

/// What a store hands out to be the source of an [`IoRequest::Copy`] on another store (or
/// on itself): an opaque reference to its backing object, which only a store of the same
/// kind can use (by [`CopySource::downcast`]). Equal when it is the same object.
#[derive(Clone)]
pub struct CopySource(Arc<dyn Any + Send + Sync>);

impl CopySource {
    /// Wraps a store's backing object.
    pub fn new<T: Any + Send + Sync>(object: Arc<T>) -> CopySource {
        CopySource(object)
    }

    /// The backing object, if it is a `T`.
    pub fn downcast<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.clone().downcast::<T>().ok()
    }
}

impl fmt::Debug for CopySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CopySource({:p})", Arc::as_ptr(&self.0).cast::<()>())
    }
}

impl PartialEq for CopySource {
    fn eq(&self, other: &Self) -> bool {
        Arc::as_ptr(&self.0).cast::<()>() == Arc::as_ptr(&other.0).cast::<()>()
    }
}

impl Eq for CopySource {}

impl IoRequest {
    /// The kind of operation, for errors and statistics.
    pub fn op(&self) -> Op {
        match self {
            IoRequest::Read { .. } => Op::Read,
            IoRequest::Write { .. } => Op::Write,
            IoRequest::Flush => Op::Flush,
            IoRequest::Discard { .. } => Op::Discard,
            IoRequest::WriteZeroes { .. } => Op::WriteZeroes,
            IoRequest::Allocation { .. } => Op::Allocation,
            IoRequest::Copy { .. } => Op::Copy,
        }
    }

    /// The byte range the request touches, if any: `(offset, len)`.
    pub fn range(&self) -> Option<(u64, u64)> {
        match self {
            IoRequest::Read { offset, len } => Some((*offset, u64::from(*len))),
            IoRequest::Write { offset, data, .. } => Some((*offset, data.len() as u64)),
            IoRequest::Flush => None,
            IoRequest::Discard { offset, len }
            | IoRequest::WriteZeroes { offset, len }
            | IoRequest::Allocation { offset, len }
            | IoRequest::Copy { offset, len, .. } => Some((*offset, *len)),
        }
    }
}

/// Operation kinds, as named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Open,
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
    Allocation,
    Copy,
    /// Taking or releasing a metadata lock ([`BlockStore::lock_metadata`]).
    Lock,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Discard => "discard",
            Op::WriteZeroes => "write-zeroes",
            Op::Allocation => "allocation",
            Op::Copy => "copy",
            Op::Lock => "lock",
        })
    }
}

/// What a successful request returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoReply {
    /// The bytes of a read, exactly as many as asked for.
    Data(Bytes),
    /// Any other request finished.
    Done,
    /// The answer to [`IoRequest::Allocation`]: the `len` bytes from the offset asked about
    /// (at least one byte, at most the length asked) are all allocated (`mapped`) or all
    /// deallocated.
    Allocation { mapped: bool, len: u64 },
}

/// The outcome of one request.
pub type IoResult = Result<IoReply, StoreError>;

/// Why a request failed, in terms the SCSI layer maps to sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The medium failed (EIO and anything unclassified).
    Io,
    /// No space left to allocate (ENOSPC, EDQUOT).
    NoSpace,
    /// The range lies outside the store.
    OutOfRange,
    /// The store lost its connection (ENOTCONN and friends); it may come back.
    NotConnected,
    /// The operation took too long (ETIMEDOUT) or was abandoned.
    TimedOut,
    /// The store cannot do this operation (EOPNOTSUPP, ENOSYS).
    Unsupported,
    /// The store is read-only (EROFS, EACCES, EPERM).
    ReadOnly,
    /// Fewer bytes moved than asked for, with no error reported.
    ShortTransfer,
    /// The storage refused the request because another client holds the range (EAGAIN: a
    /// Gluster brick refusing I/O into a range under another client's mandatory lock,
    /// docs/fencing.md). Nothing was written; a later try may succeed.
    Fenced,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Io => "I/O error",
            ErrorKind::NoSpace => "no space left",
            ErrorKind::OutOfRange => "range out of bounds",
            ErrorKind::NotConnected => "not connected",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Unsupported => "not supported",
            ErrorKind::ReadOnly => "read-only",
            ErrorKind::ShortTransfer => "short transfer",
            ErrorKind::Fenced => "refused: the range is locked by another client",
        })
    }
}

/// A failed request: what failed, why, and the errno behind it when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StoreError {
    pub op: Op,
    pub kind: ErrorKind,
    pub errno: Option<i32>,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.kind)?;
        if let Some(errno) = self.errno {
            write!(f, " ({})", std::io::Error::from_raw_os_error(errno))?;
        }
        Ok(())
    }
}

impl StoreError {
    pub fn new(op: Op, kind: ErrorKind) -> Self {
        StoreError {
            op,
            kind,
            errno: None,
        }
    }

    /// Classifies an errno as returned by POSIX calls and gfapi.
    pub fn from_errno(op: Op, errno: i32) -> Self {
        let kind = match errno {
            libc::ENOSPC | libc::EDQUOT => ErrorKind::NoSpace,
            libc::ENOTCONN
            | libc::ECONNREFUSED
            | libc::ECONNRESET
            | libc::ESHUTDOWN
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EPIPE => ErrorKind::NotConnected,
            libc::ETIMEDOUT => ErrorKind::TimedOut,
            libc::EOPNOTSUPP | libc::ENOSYS => ErrorKind::Unsupported,
            libc::EROFS | libc::EACCES | libc::EPERM => ErrorKind::ReadOnly,
            libc::EINVAL | libc::EFBIG | libc::ENXIO => ErrorKind::OutOfRange,
            // a brick refusing I/O under another client's mandatory lock
            libc::EAGAIN
                if matches!(
                    op,
                    Op::Read | Op::Write | Op::WriteZeroes | Op::Discard | Op::Copy
                ) =>
            {
                ErrorKind::Fenced
            }
            _ => ErrorKind::Io,
        };
        StoreError {
            op,
            kind,
            errno: Some(errno),
        }
    }

    /// Classifies a `std::io::Error`.
    pub fn from_io(op: Op, err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(errno) => Self::from_errno(op, errno),
            None if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                Self::new(op, ErrorKind::ShortTransfer)
            }
            None => Self::new(op, ErrorKind::Io),
        }
    }
}

/// Called exactly once with the outcome of a request, on whatever thread finished it.
///
/// Either a closure ([`Completion::new`], one allocation for its box) or a token for a
/// [`CompletionSink`] ([`Completion::to_sink`]: no allocation, for the hot path where a
/// connection completes thousands of commands a second).
///
/// A completion may also take a read's data in parts ([`Completion::to_sink_in_parts`],
/// [`Completion::part`]): a store that reads in pieces then hands each piece over as it
/// arrives, so that the caller can send it on while the store still reads the rest.
pub struct Completion(Option<Target>);

enum Target {
    Call(Box<dyn FnOnce(IoResult) + Send + 'static>),
    /// The sink, the token, and whether the sink takes a read's data in parts.
    Sink(Arc<dyn CompletionSink>, u64, bool),
}

/// Where token completions go ([`Completion::to_sink`]).
pub trait CompletionSink: Send + Sync + 'static {
    /// The request of `token` finished with `result`.
    fn complete(&self, token: u64, result: IoResult);
    /// The completion of `token` was dropped without being called (a store that broke
    /// the contract, or a request dropped at shutdown): what the sink keeps for it can go.
    fn abandoned(&self, token: u64);
    /// The next part of the data of the read of `token` (see [`Completion::part`]); only
    /// called for completions made by [`Completion::to_sink_in_parts`], so a sink that
    /// never makes those need not implement it (the default drops the part).
    fn part(&self, token: u64, data: Bytes) {
        let _ = (token, data);
        debug_assert!(false, "a part for a sink that takes none");
    }
}

impl Completion {
    pub fn new(f: impl FnOnce(IoResult) + Send + 'static) -> Self {
        Completion(Some(Target::Call(Box::new(f))))
    }

    /// A completion that calls `sink.complete(token, result)`; allocates nothing (the
    /// `Arc` is cloned by the caller, a reference count).
    pub fn to_sink(sink: Arc<dyn CompletionSink>, token: u64) -> Self {
        Completion(Some(Target::Sink(sink, token, false)))
    }

    /// As [`Completion::to_sink`], for a read whose data the sink takes in parts
    /// ([`CompletionSink::part`]) as well as whole.
    pub fn to_sink_in_parts(sink: Arc<dyn CompletionSink>, token: u64) -> Self {
        Completion(Some(Target::Sink(sink, token, true)))
    }

    /// Whether [`Completion::part`] may be called: the caller can use a read's data
    /// before the whole of it is in.
    pub fn takes_parts(&self) -> bool {
        matches!(self.0, Some(Target::Sink(_, _, true)))
    }

    /// Hands over the next bytes of a read (an [`IoRequest::Read`] whose completion
    /// [`takes_parts`](Completion::takes_parts)): the first part starts at the read's
    /// offset, each later one where the one before ended, and the completion itself
    /// carries the rest as its [`IoReply::Data`], at least one byte (so the parts never
    /// hold the whole read). A read that fails after some parts reports its error as
    /// usual; the parts already handed over stay handed over. Called on any thread, never
    /// after [`Completion::complete`] and never from two threads at once.
    pub fn part(&self, data: Bytes) {
        match &self.0 {
            Some(Target::Sink(sink, token, true)) => sink.part(*token, data),
            // A store that broke the contract: the read's length will not add up, and the
            // caller fails it.
            _ => debug_assert!(false, "a part for a completion that takes none"),
        }
    }

    pub fn complete(mut self, result: IoResult) {
        match self.0.take() {
            Some(Target::Call(f)) => f(result),
            Some(Target::Sink(sink, token, _)) => sink.complete(token, result),
            None => unreachable!("a completion is called at most once"),
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(Target::Sink(sink, token, _)) = self.0.take() {
            sink.abandoned(token);
        }
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Completion")
    }
}

/// A block device the SCSI layer can export. See the crate docs for the contract.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait BlockStore: Send + Sync {
    /// Size and block size. The block size is fixed for the life of the store; the size
    /// changes only through [`BlockStore::resize`].
    fn geometry(&self) -> Geometry;
    /// What the store supports beyond read, write and flush.
    fn capabilities(&self) -> Capabilities;
    /// Starts `req`; `done` is called exactly once when it finishes.
    fn submit(&self, req: IoRequest, done: Completion);

    /// Starts the requests of `batch` in their order (it is left empty), as many
    /// [`BlockStore::submit`] calls one after another would: what one caller had ready
    /// at once (the daemon: the writes, and for a store that joins reads the reads, of
    /// one socket read), so that a store may carry several requests in one operation of
    /// its storage. A store that does so may only join what could not tell the
    /// difference: plain writes next to each other in the batch, each beginning where the
    /// one before ends, with the same `fua`, or plain reads next to each other, each
    /// beginning where the one before ends; never across another request, so nothing is
    /// reordered. Every request still gets its own completion, exactly once (a joined
    /// read's with its own bytes); an error of a joined operation is every joined
    /// request's error. The default submits one by one.
    fn submit_batch(&self, batch: &mut Vec<(IoRequest, Completion)>) {
        for (req, done) in batch.drain(..) {
            self.submit(req, done);
        }
    }

    /// Whether [`BlockStore::submit_batch`] joins writes, so that a caller gains by
    /// keeping writes back to hand them over together; a store that takes a batch one
    /// request at a time (the default) says no, and gets each request at once.
    fn joins_writes(&self) -> bool {
        false
    }

    /// Whether [`BlockStore::submit_batch`] joins adjacent reads, so that a caller gains
    /// by keeping reads back until the end of its batch as well; the default says no.
    fn joins_reads(&self) -> bool {
        false
    }

    /// A short human description for logs ("glfs vol1@host:disk1", "file /tmp/x").
    fn describe(&self) -> String;

    /// This store as the source of an [`IoRequest::Copy`] (on itself or on another store of
    /// the same kind); `None` when it copies only by reads and writes.
    fn copy_source(&self) -> Option<CopySource> {
        None
    }

    /// Reads the metadata object `name` kept beside the store's data (see
    /// [`BlockStore::write_metadata`]); `Ok(None)` when there is none. Blocking.
    fn read_metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = name;
        Err(StoreError::new(Op::Read, ErrorKind::Unsupported))
    }

    /// Replaces the small metadata object `name` (a lower-case word such as `pr`) kept
    /// beside the store's data, on the same storage: for a file `<file>.<name>`, so on a
    /// Gluster volume another gateway reads the same object. Atomic (a reader sees the old
    /// or the new contents, never a mix) and durable when it returns. Blocking: call it off
    /// the I/O path.
    fn write_metadata(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let _ = (name, data);
        Err(StoreError::new(Op::Write, ErrorKind::Unsupported))
    }

    /// Takes the advisory lock of metadata object `name` (see
    /// [`BlockStore::write_metadata`]) for `owner`: the lock every gateway on the same
    /// storage takes before it reads, changes and writes that object back, so that two
    /// gateways never interleave their read-modify-write. It lives on the store's own
    /// backing object (for a file, a byte of the LUN file far beyond any data, see
    /// [`metadata_lock_range`]; on Gluster a POSIX lock the bricks keep, with a Gluster
    /// lock owner naming `owner`), never on the metadata object itself, which writes
    /// replace. Held until the returned guard drops, or until the process (on Gluster:
    /// its mount) goes away.
    ///
    /// Every guard is a holder of its own: two exclusive guards exclude each other also
    /// when taken in one process with one owner; shared guards exclude only exclusive
    /// ones. `wait` bounds how long a conflicting lock is waited for ([`LockWait`] has no
    /// unbounded form), then the answer is [`LockError::Contended`]. Advisory: reads and
    /// writes of the store are never held back by it. Blocking: call it off the I/O path.
    fn lock_metadata(
        &self,
        name: &str,
        owner: &LockOwner,
        mode: LockMode,
        wait: LockWait,
    ) -> Result<MetadataLock, LockError> {
        let _ = (owner, mode, wait);
        Err(LockError::store(
            name,
            StoreError::new(Op::Lock, ErrorKind::Unsupported),
        ))
    }

    /// Fences the store's data against every other client of its storage: while the
    /// returned guard lives, the storage itself refuses other clients' reads and writes of
    /// [`DATA_FENCE_RANGE`] (they fail with [`ErrorKind::Fenced`]; on Gluster, clients
    /// whose image is opened `O_NONBLOCK`, as shared stores are) and lets this store's own
    /// requests through. It is the only thing that stops a write another gateway's store
    /// still holds from landing (docs/fencing.md); it fences only while held. Stores that
    /// cannot (memory, file: Linux has no mandatory locks) answer `Unsupported`. glfs: a
    /// Gluster mandatory write lock through the store's own image fd, on a volume with
    /// `locks.mandatory-locking` (`optimal`). `wait` as for [`BlockStore::lock_metadata`];
    /// on Gluster 10.3 each refused try also makes the holder's own writes fail until it
    /// lets go (docs/fencing.md), so waiting fences the current holder too. Blocking: call
    /// it off the I/O path.
    fn fence_data(&self, owner: &LockOwner, wait: LockWait) -> Result<MetadataLock, LockError> {
        let _ = (owner, wait);
        Err(LockError::store(
            DATA_FENCE,
            StoreError::new(Op::Lock, ErrorKind::Unsupported),
        ))
    }

    /// Takes lock `name` away from whoever holds it: every client's granted lock on
    /// exactly the bytes of metadata lock `name` ([`metadata_lock_range`]) or, for
    /// [`DATA_FENCE`], of the data fence ([`DATA_FENCE_RANGE`]) goes, also one a stopped
    /// process holds over a live connection, which nothing else takes away. Returns whether
    /// one was held. The holder is not told: until another takes the lock its requests
    /// still pass, so the caller takes it at once (active/passive failover taking over
    /// from a stalled active gateway, docs/fencing.md). glfs: Gluster's clear-locks
    /// (`glusterfs.clrlk.tposix.kgranted.0,START-LEN`); every other store answers
    /// `Unsupported`. Blocking: call it off the I/O path.
    fn clear_lock(&self, name: &str) -> Result<bool, StoreError> {
        let _ = name;
        Err(StoreError::new(Op::Lock, ErrorKind::Unsupported))
    }

    /// Takes lock `name` (metadata lock `name` exclusive, or with [`DATA_FENCE`] the data
    /// fence, as [`BlockStore::fence_data`]) from whoever holds it, leaving no moment in
    /// which nobody holds it: a waiting request for it is queued first, then the holder's
    /// lock is cleared ([`BlockStore::clear_lock`]), and the request is granted in the
    /// same step, so a request of the former holder that arrives after the clearing is
    /// refused as one arriving before it. When the request is not granted within `wait`
    /// (nothing was held and it was granted at once counts as granted) it is withdrawn
    /// and `Contended` answered. glfs: a blocking lock request on a thread of its own,
    /// then clear-locks; Gluster's locks translator grants waiting requests as it clears
    /// (docs/fencing.md, measured on 10.3); every other store answers `Unsupported`.
    /// Blocking: call it off the I/O path.
    fn take_lock_over(
        &self,
        name: &str,
        owner: &LockOwner,
        wait: std::time::Duration,
    ) -> Result<MetadataLock, LockError> {
        let _ = (owner, wait);
        Err(LockError::store(
            name,
            StoreError::new(Op::Lock, ErrorKind::Unsupported),
        ))
    }

    /// Takes away the locks the storage itself takes inside writes, from whoever holds
    /// them: those on the data and on metadata objects `names`, and those on the names of
    /// `names` (a rename's). A writer that stops inside a write keeps them over a live
    /// connection, and every other client's next write there waits for them until it
    /// resumes. For the takeover from a stalled active gateway, once its fence is taken
    /// over: its writes are refused from then on, so none of its half-done writes
    /// completes under the cleared locks (docs/fencing.md, "A stalled writer's volume
    /// locks"). Waiting requests for those locks go too (answered as refused): a stopped
    /// client's request would otherwise be granted as the locks it waited for go, and
    /// hold the next writer again; the caller must have none of its own waiting. Returns
    /// how many went. glfs: Gluster's clear-locks of inode locks, granted and waiting, on
    /// the image and on `<file>.<name>` and of entry locks on the name `<file>.<name>`
    /// (AFR's, on a replicated volume; a distributed volume has none); every other store
    /// has no such locks and answers 0. Blocking: call it off the I/O path.
    fn clear_write_locks(&self, names: &[&'static str]) -> Result<u32, StoreError> {
        let _ = names;
        Ok(0)
    }

    /// Grows the store to `size_bytes` (whole blocks, not below the current size; see
    /// [`check_resize`]) and returns the new geometry. The new blocks read as zeroes;
    /// requests may reach them once it returns. Blocking: call it off the I/O path.
    fn resize(&self, size_bytes: u64) -> Result<Geometry, StoreError> {
        let _ = size_bytes;
        Err(StoreError::new(Op::Write, ErrorKind::Unsupported))
    }

    /// How much of its storage the store takes and how much more it could get: see
    /// [`Space`]. Blocking (a glfs store asks the volume): call it off the I/O path.
    fn space(&self) -> Result<Space, StoreError> {
        Err(StoreError::new(Op::Allocation, ErrorKind::Unsupported))
    }
}

/// What [`BlockStore::space`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes the store's blocks take (a sparse file's allocated blocks; below its size
    /// where hosts never wrote or unmapped).
    pub allocated: u64,
    /// Bytes still free for it on its storage (the file system's or the volume's, shared
    /// with everything else there); `None` where that is not a thing (memory).
    pub available: Option<u64>,
    /// Which storage `available` is of: the same for every store of this process on the
    /// same file system or Gluster volume (so their LUNs can be summed against it), not
    /// kept across restarts; `None` where not known.
    pub storage: Option<u64>,
}

/// Who takes a metadata lock: one gateway (one daemon exporting the LUN), named by the
/// operator or derived from the host. 1 to [`LockOwner::MAX_LEN`] bytes of ASCII letters,
/// digits and `.`, `_`, `-`, `:`, `@` (so it can be shown in logs and passed to Gluster as a
/// lock owner as it is).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockOwner(String);

/// A lock owner that is empty, too long or holds a character outside the allowed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid gateway lock owner {given:?}: {reason}")]
pub struct InvalidLockOwner {
    pub given: String,
    pub reason: &'static str,
}

impl LockOwner {
    /// The longest owner accepted, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Checks `id` and makes it an owner.
    pub fn new(id: &str) -> Result<LockOwner, InvalidLockOwner> {
        let bad = |reason| {
            Err(InvalidLockOwner {
                given: id.to_string(),
                reason,
            })
        };
        if id.is_empty() {
            return bad("it is empty");
        }
        if id.len() > Self::MAX_LEN {
            return bad("it is longer than 64 bytes");
        }
        if !id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-:@".contains(&c))
        {
            return bad("only ASCII letters, digits and . _ - : @ are allowed");
        }
        Ok(LockOwner(id.to_string()))
    }

    /// The owner as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a metadata lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Readers: any number of shared holders at once, no exclusive one.
    Shared,
    /// One holder alone (a read-modify-write).
    Exclusive,
}

/// How long [`BlockStore::lock_metadata`] waits for a conflicting holder to let go.
/// Deliberately bounded: a gateway that died holding the lock is released by its
/// storage (its process or its Gluster client goes), one that hangs must not hang us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Try once; [`LockError::Contended`] at once on a conflict.
    NoWait,
    /// Retry until the lock is free, for at most this long.
    AtMost(std::time::Duration),
}

/// A held metadata lock; dropping it releases the lock.
pub struct MetadataLock {
    name: String,
    owner: LockOwner,
    mode: LockMode,
    _held: Box<dyn Send + Sync>,
    /// Says whether the lock is still held ([`MetadataLock::is_intact`]).
    intact: Option<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl MetadataLock {
    /// For stores: `held` keeps the lock (an open descriptor, an entry in a table) and
    /// releases it when dropped.
    pub fn new(
        name: &str,
        owner: &LockOwner,
        mode: LockMode,
        held: impl Send + Sync + 'static,
    ) -> MetadataLock {
        MetadataLock {
            name: name.to_string(),
            owner: owner.clone(),
            mode,
            _held: Box::new(held),
            intact: None,
        }
    }

    /// For stores whose locks can be lost while the guard lives (glfs: the lock stays on
    /// the mount it was taken through, and a reconnect replaces that mount): `intact`
    /// says whether it is still held. Called off the I/O path; must not block.
    pub fn with_check(mut self, intact: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.intact = Some(Box::new(intact));
        self
    }

    /// Whether the lock is still held as far as the store knows: false once the storage
    /// may have let go of it (glfs: the mount it was taken through is no longer the
    /// store's, after a lost connection or a reconnect). Always true for stores whose
    /// locks cannot be lost while the guard lives.
    pub fn is_intact(&self) -> bool {
        self.intact.as_ref().is_none_or(|f| f())
    }

    /// The metadata object the lock is for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who holds it.
    pub fn owner(&self) -> &LockOwner {
        &self.owner
    }

    /// How it is held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

impl fmt::Debug for MetadataLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataLock")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Why [`BlockStore::lock_metadata`] returned no lock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Another holder kept a conflicting lock for all of the wait.
    #[error("the {name:?} metadata lock is held by another holder (waited {waited:?})")]
    Contended {
        name: String,
        waited: std::time::Duration,
    },
    /// The store could not take it (no connection, unsupported, a bad name).
    #[error("the {name:?} metadata lock: {source}")]
    Store { name: String, source: StoreError },
}

impl LockError {
    /// The store could not take the lock of metadata object `name`.
    pub fn store(name: &str, source: StoreError) -> LockError {
        LockError::Store {
            name: name.to_string(),
            source,
        }
    }
}

/// The byte range `(start, len)` of a store's backing file that stands for the lock of
/// metadata object `name`: one byte at `2^62 + h`, `h` a 32-bit FNV-1a hash of the name,
/// far past the end of any LUN (so no data range and no other program's lock of the
/// file's contents meets it). Two names may share a byte; they then exclude each other,
/// which is never less safe.
pub fn metadata_lock_range(name: &str) -> (u64, u64) {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ((1u64 << 62) + u64::from(h), 1)
}

/// The name of the guard [`BlockStore::fence_data`] returns.
pub const DATA_FENCE: &str = "data-fence";

/// The byte range `(start, len)` a data fence covers: every byte a LUN can hold, and
/// none of the metadata lock bytes at `2^62` and beyond ([`metadata_lock_range`]).
pub const DATA_FENCE_RANGE: (u64, u64) = (0, 1 << 62);

/// Whether `name` is a valid metadata object name: 1 to 16 of `a-z`, `0-9`, `-`.
pub fn valid_metadata_name(name: &str) -> bool {
    (1..=16).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Submits `req` and waits for its completion. Works on any async runtime.
pub async fn execute(store: &dyn BlockStore, req: IoRequest) -> IoResult {
    let op = req.op();
    let (tx, rx) = tokio::sync::oneshot::channel();
    store.submit(
        req,
        Completion::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    // A store that drops the completion without calling it broke the contract; report it as
    // a failed request rather than hanging the command.
    rx.await
        .unwrap_or_else(|_| Err(StoreError::new(op, ErrorKind::Io)))
}

/// Checks that a request lies inside the store; the SCSI layer checks LBAs first, so this is
/// a store's last line of defence.
pub fn check_range(geometry: Geometry, req: &IoRequest) -> Result<(), StoreError> {
    if let Some((offset, len)) = req.range() {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > geometry.size_bytes()) {
            return Err(StoreError::new(req.op(), ErrorKind::OutOfRange));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(u64, &'static str)>>);

    impl CompletionSink for Recorder {
        fn complete(&self, token: u64, result: IoResult) {
            let what = if result.is_ok() { "ok" } else { "err" };
            self.0.lock().unwrap().push((token, what));
        }
        fn abandoned(&self, token: u64) {
            self.0.lock().unwrap().push((token, "abandoned"));
        }
        fn part(&self, token: u64, _data: Bytes) {
            self.0.lock().unwrap().push((token, "part"));
        }
    }

    #[test]
    fn only_a_completion_made_to_take_parts_takes_them() {
        let sink = Arc::new(Recorder::default());
        let parts = Completion::to_sink_in_parts(sink.clone(), 3);
        assert!(parts.takes_parts());
        parts.part(Bytes::from_static(b"abc"));
        parts.part(Bytes::from_static(b"def"));
        parts.complete(Ok(IoReply::Data(Bytes::from_static(b"g"))));
        assert!(!Completion::to_sink(sink.clone(), 4).takes_parts());
        assert!(!Completion::new(|_| ()).takes_parts());
        assert_eq!(
            *sink.0.lock().unwrap(),
            [(3, "part"), (3, "part"), (3, "ok"), (4, "abandoned")]
        );
    }

    #[test]
    fn a_sink_completion_reports_its_token_once_called_or_dropped() {
        let sink = Arc::new(Recorder::default());
        Completion::to_sink(sink.clone(), 7).complete(Ok(IoReply::Done));
        Completion::to_sink(sink.clone(), 8)
            .complete(Err(StoreError::new(Op::Read, ErrorKind::Io)));
        drop(Completion::to_sink(sink.clone(), 9));
        assert_eq!(
            *sink.0.lock().unwrap(),
            [(7, "ok"), (8, "err"), (9, "abandoned")]
        );
    }
    use super::*;

    #[test]
    fn errno_classification_follows_posix_meaning() {
        let cases = [
            (libc::EIO, ErrorKind::Io),
            (libc::ENOSPC, ErrorKind::NoSpace),
            (libc::EDQUOT, ErrorKind::NoSpace),
            (libc::ENOTCONN, ErrorKind::NotConnected),
            (libc::ETIMEDOUT, ErrorKind::TimedOut),
            (libc::EOPNOTSUPP, ErrorKind::Unsupported),
            (libc::EROFS, ErrorKind::ReadOnly),
            (libc::EINVAL, ErrorKind::OutOfRange),
            (libc::EAGAIN, ErrorKind::Fenced),
        ];
        for (errno, kind) in cases {
            let err = StoreError::from_errno(Op::Write, errno);
            assert_eq!(err.kind, kind, "errno {errno}");
            assert_eq!(err.errno, Some(errno));
        }
        // EAGAIN is a fence only on the data path (a failed thread spawn at open is not)
        assert_eq!(
            StoreError::from_errno(Op::Read, libc::EAGAIN).kind,
            ErrorKind::Fenced
        );
        assert_eq!(
            StoreError::from_errno(Op::Open, libc::EAGAIN).kind,
            ErrorKind::Io
        );
    }

    #[test]
    fn error_message_names_operation_kind_and_errno() {
        let err = StoreError::from_errno(Op::Flush, libc::EIO);
        let text = err.to_string();
        assert!(text.starts_with("flush failed: I/O error ("), "{text}");
    }

    #[test]
    fn range_check_rejects_past_end_and_overflow() {
        let g = Geometry {
            block_size: 512,
            num_blocks: 8,
        };
        assert!(check_range(
            g,
            &IoRequest::Read {
                offset: 3584,
                len: 512
            }
        )
        .is_ok());
        assert_eq!(
            check_range(
                g,
                &IoRequest::Read {
                    offset: 3584,
                    len: 1024
                }
            )
            .unwrap_err()
            .kind,
            ErrorKind::OutOfRange
        );
        assert!(check_range(
            g,
            &IoRequest::Discard {
                offset: u64::MAX,
                len: 2
            }
        )
        .is_err());
        assert!(check_range(g, &IoRequest::Flush).is_ok());
    }

    struct Dropper;
    impl BlockStore for Dropper {
        fn geometry(&self) -> Geometry {
            Geometry {
                block_size: 512,
                num_blocks: 1,
            }
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn submit(&self, _req: IoRequest, done: Completion) {
            drop(done);
        }
        fn describe(&self) -> String {
            "dropper".into()
        }
    }

    /// Records the offsets of what it is given, one `submit` at a time.
    #[derive(Default)]
    struct Submits(std::sync::Mutex<Vec<Option<u64>>>);
    impl BlockStore for Submits {
        fn geometry(&self) -> Geometry {
            Geometry {
                block_size: 512,
                num_blocks: 1,
            }
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn submit(&self, req: IoRequest, done: Completion) {
            self.0.lock().unwrap().push(req.range().map(|(at, _)| at));
            done.complete(Ok(IoReply::Done));
        }
        fn describe(&self) -> String {
            "submits".into()
        }
    }

    #[test]
    fn a_batch_is_submitted_in_its_order_by_default() {
        let store = Submits::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let write = |offset| IoRequest::Write {
            offset,
            data: Segments::from(vec![1u8; 512]),
            fua: false,
        };
        let mut batch: Vec<(IoRequest, Completion)> = [
            write(1024),
            IoRequest::Flush,
            IoRequest::Read {
                offset: 0,
                len: 512,
            },
            write(512),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, req)| {
            let tx = tx.clone();
            (req, Completion::new(move |r| tx.send((i, r)).unwrap()))
        })
        .collect();
        store.submit_batch(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(
            *store.0.lock().unwrap(),
            [Some(1024), None, Some(0), Some(512)]
        );
        drop(tx);
        let done: Vec<usize> = rx.iter().map(|(i, r)| r.map(|_| i).unwrap()).collect();
        assert_eq!(done, [0, 1, 2, 3]);
    }

    #[test]
    fn metadata_is_unsupported_unless_a_store_says_otherwise() {
        assert_eq!(
            Dropper.read_metadata("pr").unwrap_err().kind,
            ErrorKind::Unsupported
        );
        assert_eq!(
            Dropper.write_metadata("pr", b"x").unwrap_err().kind,
            ErrorKind::Unsupported
        );
        assert!(valid_metadata_name("pr"));
        for bad in ["", "../x", "PR", "a.b", "0123456789abcdefg"] {
            assert!(!valid_metadata_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn lock_owners_are_checked_and_shown_as_given() {
        let owner = LockOwner::new("gw-1.example:3260@a_b").unwrap();
        assert_eq!(owner.to_string(), "gw-1.example:3260@a_b");
        assert_eq!(owner.as_str(), "gw-1.example:3260@a_b");
        assert!(LockOwner::new(&"x".repeat(LockOwner::MAX_LEN)).is_ok());
        for (bad, why) in [
            ("", "empty"),
            (&*"x".repeat(65), "longer than 64"),
            ("gw 1", "only ASCII"),
            ("gw/1", "only ASCII"),
            ("gé", "only ASCII"),
        ] {
            let err = LockOwner::new(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
            assert_eq!(err.given, bad);
        }
    }

    #[test]
    fn metadata_locks_sit_past_any_lun_one_byte_per_name() {
        let (pr, len) = metadata_lock_range("pr");
        assert_eq!(len, 1);
        // 4 EiB: past the end of any LUN, and the whole range stays a valid off_t.
        assert!(pr >= 1 << 62 && pr + len <= i64::MAX as u64);
        assert_eq!(metadata_lock_range("pr"), (pr, 1));
        assert_ne!(metadata_lock_range("alua").0, pr);
        // FNV-1a (32 bit) of "a" is 0xe40c292c (the FNV reference vectors).
        assert_eq!(metadata_lock_range("a").0, (1 << 62) + 0xe40c_292c);
    }

    #[test]
    fn metadata_locks_are_unsupported_unless_a_store_says_otherwise() {
        let owner = LockOwner::new("gw").unwrap();
        let err = Dropper
            .lock_metadata("pr", &owner, LockMode::Exclusive, LockWait::NoWait)
            .unwrap_err();
        assert_eq!(
            err,
            LockError::Store {
                name: "pr".into(),
                source: StoreError::new(Op::Lock, ErrorKind::Unsupported)
            }
        );
        assert_eq!(
            err.to_string(),
            "the \"pr\" metadata lock: lock failed: not supported"
        );
    }

    #[tokio::test]
    async fn dropped_completion_is_an_error_not_a_hang() {
        let err = execute(&Dropper, IoRequest::Flush).await.unwrap_err();
        assert_eq!(err, StoreError::new(Op::Flush, ErrorKind::Io));
    }
}
