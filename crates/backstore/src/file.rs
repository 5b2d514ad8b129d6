//! `file`: a plain file or block device, served by a small fixed pool of worker threads
//! doing `pread`/`pwrite`/`fdatasync`/`fallocate`.

use bytes::Bytes;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use store_api::{
    check_range, valid_metadata_name, BlockStore, BufferPool, Capabilities, Completion, CopySource,
    ErrorKind, Geometry, IoReply, IoRequest, IoResult, LockError, LockMode, LockOwner, LockWait,
    MetadataLock, Op, Segments, StoreError,
};

/// Default number of worker threads.
pub const DEFAULT_THREADS: usize = 4;

type Job = (IoRequest, Completion);

/// `fallocate` modes that zero a range: in place (the blocks stay allocated), or by
/// deallocating it.
const ZERO_RANGE: libc::c_int = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
const PUNCH_HOLE: libc::c_int = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;

/// The open file behind a [`FileStore`] (shared as the source of copies).
struct Inner {
    file: File,
    geometry: store_api::GrowableGeometry,
    /// Full provisioning ([`crate::Provisioning`]): nothing here deallocates blocks.
    full: bool,
}

/// A store on a local file; requests queue to `threads` workers (never a thread per request).
pub struct FileStore {
    inner: Arc<Inner>,
    tx: Sender<Job>,
    path: String,
}

impl FileStore {
    /// Serves `file` (already opened read-write) with `threads` workers, thin provisioned.
    pub fn new(
        file: File,
        path: String,
        geometry: Geometry,
        threads: usize,
    ) -> std::io::Result<FileStore> {
        Self::with_provisioning(file, path, geometry, threads, crate::Provisioning::Thin)
    }

    /// [`FileStore::new`] with the given provisioning. Full: the store reports no discard,
    /// never punches holes, and allocates what a resize adds; [`FileStore::allocate_all`]
    /// allocates what is there.
    pub fn with_provisioning(
        file: File,
        path: String,
        geometry: Geometry,
        threads: usize,
        provisioning: crate::Provisioning,
    ) -> std::io::Result<FileStore> {
        let inner = Arc::new(Inner {
            file,
            geometry: store_api::GrowableGeometry::new(geometry),
            full: provisioning == crate::Provisioning::Full,
        });
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let inner = inner.clone();
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("file-io-{i}"))
                .spawn(move || worker(&inner, &rx))?;
        }
        Ok(FileStore { inner, tx, path })
    }

    /// Fully provisioned: allocates every block of the file (a block device has them all
    /// already); thin: nothing. The reason to show when the file system cannot.
    pub fn allocate_all(&self) -> Result<(), String> {
        if !self.inner.full || self.is_block_device() {
            return Ok(());
        }
        let end = self.inner.geometry.get().size_bytes();
        self.inner
            .allocate(&self.describe(), 0, end)
            .map_err(|e| e.to_string())
    }

    fn is_block_device(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.inner
            .file
            .metadata()
            .is_ok_and(|m| m.file_type().is_block_device())
    }
}

fn worker(inner: &Inner, rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never during I/O.
        let job = rx.lock().unwrap().recv();
        let Ok((req, done)) = job else { return };
        let result = inner.execute(req);
        done.complete(result);
    }
}

fn retry_eintr<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl Inner {
    /// Writes the segments in order from `offset` with `pwritev(2)` (at most `IOV_MAX`
    /// at a time, resuming after short writes).
    fn write_segments(&self, data: &Segments, offset: u64) -> std::io::Result<()> {
        const IOV: usize = 64;
        let parts = data.parts();
        let (mut part, mut skip, mut at) = (0, 0, offset);
        while part < parts.len() {
            let mut iov = [std::io::IoSlice::new(&[]); IOV];
            let n = (parts.len() - part).min(IOV);
            for (i, slot) in iov.iter_mut().take(n).enumerate() {
                let from = if i == 0 { skip } else { 0 };
                *slot = std::io::IoSlice::new(&parts[part + i][from..]);
            }
            // SAFETY: IoSlice is ABI-compatible with iovec; `n` of them are set and point
            // into `data`, alive for the call.
            let written = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    iov.as_ptr().cast::<libc::iovec>(),
                    n as libc::c_int,
                    at as libc::off_t,
                )
            };
            if written < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let mut left = written as usize;
            at += left as u64;
            while left > 0 {
                let rest = parts[part].len() - skip;
                if left < rest {
                    skip += left;
                    left = 0;
                } else {
                    left -= rest;
                    part += 1;
                    skip = 0;
                }
            }
        }
        Ok(())
    }

    fn execute(&self, req: IoRequest) -> IoResult {
        let op = req.op();
        let err = |e: std::io::Error| StoreError::from_io(op, &e);
        match req {
            IoRequest::Read { offset, len } => self.read(offset, len as usize).map(IoReply::Data),
            IoRequest::Write { offset, data, fua } => {
                self.write_segments(&data, offset).map_err(err)?;
                if fua {
                    self.file.sync_data().map_err(err)?;
                }
                Ok(IoReply::Done)
            }
            IoRequest::Flush => self.file.sync_data().map(|()| IoReply::Done).map_err(err),
            IoRequest::Allocation { offset, len } => self.allocation(offset, len).map_err(err),
            IoRequest::Copy {
                source,
                source_offset,
                offset,
                len,
            } => {
                let Some(from) = source.downcast::<Inner>() else {
                    return Err(StoreError::new(op, ErrorKind::Unsupported));
                };
                if source_offset
                    .checked_add(len)
                    .is_none_or(|end| end > from.geometry.get().size_bytes())
                {
                    return Err(StoreError::new(op, ErrorKind::OutOfRange));
                }
                self.copy_from(&from, source_offset, offset, len)
                    .map_err(|e| match e.raw_os_error() {
                        // Another file system (copy_file_range(2) across them is refused
                        // on older kernels): the caller reads and writes.
                        Some(libc::EXDEV) => StoreError::new(op, ErrorKind::Unsupported),
                        _ => err(e),
                    })?;
                Ok(IoReply::Done)
            }
            IoRequest::Discard { offset, len } | IoRequest::WriteZeroes { offset, len }
                if self.full =>
            {
                // Fully provisioned: zeroes in place, the blocks kept allocated (no discard
                // is offered; one that comes anyway deallocates nothing).
                self.zero(&[ZERO_RANGE], offset, len).map_err(err)?;
                Ok(IoReply::Done)
            }
            // Punch a hole; where the file system cannot, zeroes are written so that
            // discarded blocks still read back as zeroes (the capability we announce).
            IoRequest::Discard { offset, len } => {
                self.zero(&[PUNCH_HOLE], offset, len).map_err(err)?;
                Ok(IoReply::Done)
            }
            IoRequest::WriteZeroes { offset, len } => {
                self.zero(&[ZERO_RANGE, PUNCH_HOLE], offset, len)
                    .map_err(err)?;
                Ok(IoReply::Done)
            }
        }
    }

    /// Reads exactly `len` bytes into a fresh buffer (no zero-fill, no copy into `Bytes`).
    fn read(&self, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let pool = BufferPool::global();
        let mut buf = pool.take(len);
        while buf.len() < len {
            let pos = offset + buf.len() as u64;
            let want = len - buf.len();
            let spare = buf.spare_capacity_mut();
            let n = retry_eintr(|| {
                // SAFETY: spare points at spare.len() >= want writable bytes of buf's
                // allocation (the pool's buffer may be larger than len).
                let rc = unsafe {
                    libc::pread(
                        self.file.as_raw_fd(),
                        spare.as_mut_ptr().cast(),
                        want,
                        pos as libc::off_t,
                    )
                };
                if rc < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(rc as usize)
                }
            })
            .map_err(|e| StoreError::from_io(Op::Read, &e))?;
            if n == 0 {
                // The file shrank under us.
                return Err(StoreError::new(Op::Read, ErrorKind::ShortTransfer));
            }
            // SAFETY: pread initialised n (<= want) more bytes.
            unsafe { buf.set_len(buf.len() + n.min(want)) };
        }
        Ok(pool.bytes(buf))
    }

    /// `lseek(offset, whence)` for SEEK_DATA/SEEK_HOLE; `Ok(None)` for ENXIO (no data, or
    /// no hole, at or after `offset`).
    fn seek(&self, offset: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
        // SAFETY: plain syscall on an fd we own; lseek on a shared fd only moves the file
        // position, which this store never uses (every read and write is positional).
        let rc = unsafe { libc::lseek(self.file.as_raw_fd(), offset as libc::off_t, whence) };
        if rc >= 0 {
            return Ok(Some(rc as u64));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// The first extent from `offset` (at most `len` bytes) that is all data or all hole.
    fn allocation(&self, offset: u64, len: u64) -> std::io::Result<IoReply> {
        if len == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        let end = offset + len;
        // The next hole at or after offset (the end of the file counts as one; ENXIO: at or
        // beyond the end, all hole).
        let hole = self.seek(offset, libc::SEEK_HOLE)?.unwrap_or(offset);
        if hole > offset {
            return Ok(IoReply::Allocation {
                mapped: true,
                len: hole.min(end) - offset,
            });
        }
        let data = self.seek(offset, libc::SEEK_DATA)?.unwrap_or(end);
        Ok(IoReply::Allocation {
            mapped: false,
            len: data.clamp(offset + 1, end) - offset,
        })
    }

    /// Makes `[offset, offset + len)` read back as zeroes with the first of the
    /// `fallocate` `modes` the file system supports, else by writing zeroes.
    fn zero(&self, modes: &[libc::c_int], offset: u64, len: u64) -> std::io::Result<()> {
        for &mode in modes {
            match self.fallocate(mode, offset, len) {
                Err(e) if is_unsupported(&e) => continue,
                r => return r,
            }
        }
        self.write_zeroes(offset, len)
    }

    /// Allocates `[start, end)` (keeping size and data), in chunks, with progress logged.
    fn allocate(
        &self,
        what: &str,
        start: u64,
        end: u64,
    ) -> Result<(), crate::provision::AllocError> {
        crate::provision::allocate_logged(what, start, end, |offset, len| {
            self.fallocate(libc::FALLOC_FL_KEEP_SIZE, offset, len)
                .map_err(|e| e.raw_os_error())
        })
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> std::io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        retry_eintr(|| {
            // SAFETY: plain syscall on an fd we own.
            let rc = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    mode,
                    offset as libc::off_t,
                    len as libc::off_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }

    /// copy_file_range(2) of `len` bytes at `from` of `source`'s file to `to` of this
    /// file, continued after short copies (the kernel copies inside the file system,
    /// sharing extents where it can).
    fn copy_from(&self, source: &Inner, from: u64, to: u64, len: u64) -> std::io::Result<()> {
        let mut done = 0u64;
        while done < len {
            let mut off_in = (from + done) as libc::loff_t;
            let mut off_out = (to + done) as libc::loff_t;
            let n = retry_eintr(|| {
                // SAFETY: copy_file_range(2) between two descriptors we own, with our own
                // offsets (the files' positions are not used).
                let rc = unsafe {
                    libc::copy_file_range(
                        source.file.as_raw_fd(),
                        &mut off_in,
                        self.file.as_raw_fd(),
                        &mut off_out,
                        (len - done) as usize,
                        0,
                    )
                };
                if rc < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(rc as u64)
                }
            })?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            done += n;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let zeroes = vec![0u8; (len as usize).min(1 << 20)];
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(zeroes.len() as u64) as usize;
            self.file.write_all_at(&zeroes[..n], offset + pos)?;
            pos += n as u64;
        }
        Ok(())
    }
}

fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
    )
}

impl BlockStore for FileStore {
    fn geometry(&self) -> Geometry {
        self.inner.geometry.get()
    }

    fn capabilities(&self) -> Capabilities {
        if self.inner.full {
            Capabilities::FULLY_PROVISIONED
        } else {
            Capabilities::ALL
        }
    }

    fn submit(&self, req: IoRequest, done: Completion) {
        if let Err(e) = check_range(self.inner.geometry.get(), &req) {
            return done.complete(Err(e));
        }
        let op = req.op();
        let sent = self.tx.send((req, done));
        if let Err(std::sync::mpsc::SendError((_, done))) = sent {
            // All workers are gone (they only exit when the sender drops; defensive).
            done.complete(Err(StoreError::new(op, ErrorKind::Io)));
        }
    }

    fn describe(&self) -> String {
        format!("file {}", self.path)
    }

    fn copy_source(&self) -> Option<CopySource> {
        Some(CopySource::new(self.inner.clone()))
    }

    /// Fully provisioned, the added blocks are allocated before the new size is served;
    /// where they cannot be, the file goes back to its size and the resize fails.
    fn resize(&self, size_bytes: u64) -> Result<Geometry, StoreError> {
        let old = self.geometry().size_bytes();
        let blocks = store_api::check_resize(self.geometry(), size_bytes)?;
        let grow = || -> std::io::Result<()> {
            self.inner.file.set_len(size_bytes)?;
            if self.inner.full && !self.is_block_device() {
                if let Err(e) = self.inner.allocate(&self.describe(), old, size_bytes) {
                    tracing::warn!("{}: resize to {size_bytes} refused: {e}", self.describe());
                    self.inner.file.set_len(old)?;
                    return Err(std::io::Error::from_raw_os_error(
                        e.errno.unwrap_or(libc::EIO),
                    ));
                }
            }
            self.inner.file.sync_all()
        };
        grow().map_err(|e| StoreError::from_io(Op::Write, &e))?;
        self.inner.geometry.set_blocks(blocks);
        Ok(self.geometry())
    }

    /// `fstat`'s blocks and `fstatvfs`'s blocks free for an unprivileged writer.
    fn space(&self) -> Result<store_api::Space, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let err = |e: &std::io::Error| StoreError::from_io(Op::Allocation, e);
        let meta = self.inner.file.metadata().map_err(|e| err(&e))?;
        // SAFETY: an all-zero statvfs is a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is ours and open; st is writable.
        if unsafe { libc::fstatvfs(self.inner.file.as_raw_fd(), &mut st) } != 0 {
            return Err(err(&std::io::Error::last_os_error()));
        }
        let unit = if st.f_frsize != 0 {
            st.f_frsize
        } else {
            st.f_bsize
        };
        Ok(store_api::Space {
            allocated: meta.blocks() * 512,
            available: Some((st.f_bavail as u64).saturating_mul(unit as u64)),
            // The file system's device.
            storage: Some(meta.dev()),
        })
    }

    fn read_metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = metadata_path(&self.path, name, Op::Read)?;
        match std::fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::from_io(Op::Read, &e)),
        }
    }

    /// A temporary file of this write's own (`crate::metadata`) written and fsynced,
    /// renamed over `<file>.<name>` (removed again if that fails), then the directory
    /// fsynced so the rename itself survives a crash.
    fn write_metadata(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let path = metadata_path(&self.path, name, Op::Write)?;
        let tmp = crate::metadata::temporary_name(&path);
        let err = |e: std::io::Error| StoreError::from_io(Op::Write, &e);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(err)?;
        let written = retry_eintr(|| file.write_all_at(data, 0))
            .and_then(|()| retry_eintr(|| file.sync_all()))
            .and_then(|()| {
                drop(file);
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        let dir = std::path::Path::new(&path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)
    }

    /// An open-file-description lock (F_OFD_SETLK) on [`store_api::metadata_lock_range`]
    /// of the LUN file, through a descriptor of its own that the guard keeps open: every
    /// process on the host sees it, two guards exclude each other even in one process,
    /// and the kernel drops it when the guard or its process goes. `owner` is not seen
    /// by the kernel.
    fn lock_metadata(
        &self,
        name: &str,
        owner: &LockOwner,
        mode: LockMode,
        wait: LockWait,
    ) -> Result<MetadataLock, LockError> {
        let err = |e: std::io::Error| StoreError::from_io(Op::Lock, &e);
        let failed = |source| LockError::store(name, source);
        metadata_path(&self.path, name, Op::Lock).map_err(failed)?;
        // A shared (read) lock needs a descriptor open for reading, an exclusive one for
        // writing (a read-only LUN file can only be locked shared).
        let file = match mode {
            LockMode::Shared => File::open(&self.path),
            LockMode::Exclusive => std::fs::OpenOptions::new().write(true).open(&self.path),
        }
        .map_err(|e| failed(err(e)))?;
        let range = store_api::metadata_lock_range(name);
        crate::lock::acquire(name, wait, || {
            ofd_try_lock(&file, mode, range)
                .map(|taken| taken.then_some(()))
                .map_err(err)
        })?;
        let held = file;
        Ok(MetadataLock::new(name, owner, mode, held))
    }
}

/// The OFD lock command (F_OFD_SETLK) on `range` of `file`: `Ok(true)` when taken,
/// `Ok(false)` when another open file description holds a conflicting lock.
fn ofd_try_lock(file: &File, mode: LockMode, (start, len): (u64, u64)) -> std::io::Result<bool> {
    // SAFETY: an all-zero flock is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match mode {
        LockMode::Shared => libc::F_RDLCK,
        LockMode::Exclusive => libc::F_WRLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // l_pid stays 0, as OFD locks require.
    let taken = retry_eintr(|| {
        // SAFETY: the descriptor is open for the call; fl is a valid flock.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if rc == 0 {
            Ok(true)
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    match taken {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        other => other,
    }
}

/// Where metadata object `name` of the store at `path` lives: `<path>.<name>`.
fn metadata_path(path: &str, name: &str, op: Op) -> Result<String, StoreError> {
    if !valid_metadata_name(name) {
        return Err(StoreError::new(op, ErrorKind::OutOfRange));
    }
    Ok(format!("{path}.{name}"))
}
