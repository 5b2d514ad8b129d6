//! The exported C ABI: the subset of `glusterfs/api/glfs.h` (gfapi >= 6 signatures) that
//! tgt's bs_glfs, fio's gfapi engines, tcmu-runner's glfs handler and our own gfapi
//! crate use. Symbol versions are applied by the version script in `xtask/src/fake.rs`.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use crate::fs::{self, cpath, fds, lock, mounts, Admit, FdInner, FdKind, Glfs, Res};
use crate::pool;
use libc::{c_char, c_int, c_long, c_void, dirent, iovec, mode_t, off_t, size_t, ssize_t};
use std::ffi::CStr;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Opaque `glfs_t`.
#[repr(C)]
pub struct glfs_t {
    _private: [u8; 0],
}

/// Opaque `glfs_fd_t`.
#[repr(C)]
pub struct glfs_fd_t {
    _private: [u8; 0],
}

/// `struct glfs_stat` (statx-like) from glfs.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct glfs_stat {
    /// GLFS_STAT_* bits of the fields that were filled.
    pub glfs_st_mask: u64,
    /// Attribute flags.
    pub glfs_st_attributes: u64,
    /// Supported attribute flags.
    pub glfs_st_attributes_mask: u64,
    /// Last access.
    pub glfs_st_atime: Timespec,
    /// Creation.
    pub glfs_st_btime: Timespec,
    /// Last attribute change.
    pub glfs_st_ctime: Timespec,
    /// Last modification.
    pub glfs_st_mtime: Timespec,
    /// Inode number.
    pub glfs_st_ino: u64,
    /// Size in bytes.
    pub glfs_st_size: i64,
    /// 512-byte blocks allocated.
    pub glfs_st_blocks: i64,
    /// Device major (special files).
    pub glfs_st_rdev_major: u32,
    /// Device minor (special files).
    pub glfs_st_rdev_minor: u32,
    /// Containing device major.
    pub glfs_st_dev_major: u32,
    /// Containing device minor.
    pub glfs_st_dev_minor: u32,
    /// Preferred I/O size.
    pub glfs_st_blksize: i64,
    /// Hard links.
    pub glfs_st_nlink: u64,
    /// Owner.
    pub glfs_st_uid: u32,
    /// Group.
    pub glfs_st_gid: u32,
    /// Mode (type and permissions).
    pub glfs_st_mode: u32,
}

/// `struct timespec` as laid out on 64-bit Linux.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timespec {
    /// Seconds.
    pub tv_sec: i64,
    /// Nanoseconds.
    pub tv_nsec: i64,
}

/// GLFS_STAT_BASIC_STATS: the fields a `struct stat` carries.
pub const GLFS_STAT_BASIC_STATS: u64 = 0x7ff;

/// `glfs_io_cbk` (gfapi >= 6): completion callback of the `*_async` calls.
pub type glfs_io_cbk = Option<
    unsafe extern "C" fn(
        fd: *mut glfs_fd_t,
        ret: ssize_t,
        prestat: *mut glfs_stat,
        poststat: *mut glfs_stat,
        data: *mut c_void,
    ),
>;

impl glfs_stat {
    pub(crate) fn from_stat(st: &libc::stat) -> glfs_stat {
        let ts = |s: i64, ns: i64| Timespec {
            tv_sec: s,
            tv_nsec: ns,
        };
        glfs_stat {
            glfs_st_mask: GLFS_STAT_BASIC_STATS,
            glfs_st_attributes: 0,
            glfs_st_attributes_mask: 0,
            glfs_st_atime: ts(st.st_atime, st.st_atime_nsec),
            glfs_st_btime: Timespec::default(),
            glfs_st_ctime: ts(st.st_ctime, st.st_ctime_nsec),
            glfs_st_mtime: ts(st.st_mtime, st.st_mtime_nsec),
            glfs_st_ino: st.st_ino,
            glfs_st_size: st.st_size,
            glfs_st_blocks: st.st_blocks,
            glfs_st_rdev_major: libc::major(st.st_rdev),
            glfs_st_rdev_minor: libc::minor(st.st_rdev),
            glfs_st_dev_major: libc::major(st.st_dev),
            glfs_st_dev_minor: libc::minor(st.st_dev),
            glfs_st_blksize: st.st_blksize,
            glfs_st_nlink: st.st_nlink,
            glfs_st_uid: st.st_uid,
            glfs_st_gid: st.st_gid,
            glfs_st_mode: st.st_mode,
        }
    }
}

// ---------------------------------------------------------------------------------------
// helpers

pub(crate) fn set_errno(e: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Runs `f`, turning a panic into EIO and `err` (a panic must not unwind into C).
pub(crate) fn guard<T>(err: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            set_errno(libc::EIO);
            err
        }
    }
}

pub(crate) fn int_ret(r: Res<c_int>) -> c_int {
    match r {
        Ok(v) => v,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

pub(crate) fn ssize_ret(r: Res<ssize_t>) -> ssize_t {
    match r {
        Ok(v) => v,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// Body of an entry point returning `ssize_t`: -1 with errno on error or panic.
pub(crate) fn ssize_call(f: impl FnOnce() -> Res<ssize_t>) -> ssize_t {
    guard(-1, || ssize_ret(f()))
}

/// Body of an entry point returning `int`: -1 with errno on error or panic.
pub(crate) fn int_call(f: impl FnOnce() -> Res<c_int>) -> c_int {
    guard(-1, || int_ret(f()))
}

/// Body of an entry point returning a pointer: NULL with errno on error or panic.
pub(crate) fn ptr_call<T>(f: impl FnOnce() -> Res<usize>) -> *mut T {
    guard(std::ptr::null_mut(), || ptr_ret(f()))
}

pub(crate) fn ptr_ret<T>(r: Res<usize>) -> *mut T {
    match r {
        Ok(v) => v as *mut T,
        Err(e) => {
            set_errno(e);
            std::ptr::null_mut()
        }
    }
}

pub(crate) fn mount_of(fs: *mut glfs_t) -> Res<Arc<Glfs>> {
    if fs.is_null() {
        return Err(libc::EINVAL);
    }
    mounts().get(fs as usize).ok_or(libc::EINVAL)
}

pub(crate) fn fd_of(fd: *mut glfs_fd_t) -> Res<Arc<FdInner>> {
    if fd.is_null() {
        return Err(libc::EBADF);
    }
    fds().get(fd as usize).ok_or(libc::EBADF)
}

pub(crate) unsafe fn str_arg<'a>(p: *const c_char) -> Res<&'a str> {
    if p.is_null() {
        return Err(libc::EINVAL);
    }
    CStr::from_ptr(p).to_str().map_err(|_| libc::EINVAL)
}

/// A C string argument that may be NULL.
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char) -> Res<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    str_arg(p).map(Some)
}

pub(crate) fn cvt(r: isize) -> Res<isize> {
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r)
    }
}

pub(crate) fn fstat_raw(raw: c_int) -> Res<glfs_stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: raw is an open descriptor owned by an FdInner.
    cvt(unsafe { libc::fstat(raw, &mut st) } as isize)?;
    Ok(glfs_stat::from_stat(&st))
}

pub(crate) unsafe fn put_stat(dst: *mut glfs_stat, src: Option<glfs_stat>) {
    if !dst.is_null() {
        if let Some(s) = src {
            *dst = s;
        }
    }
}

/// Result of an fd operation: return value plus the pre/post stat gfapi reports.
#[derive(Debug, Clone, Copy)]
pub struct IoOut {
    /// The return value of the synchronous variant.
    pub ret: ssize_t,
    /// Pre-operation attributes (writes, syncs, truncates, discards).
    pub pre: Option<glfs_stat>,
    /// Post-operation attributes.
    pub post: Option<glfs_stat>,
}

fn with_stats(fd: &FdInner, f: impl FnOnce() -> Res<ssize_t>) -> Res<IoOut> {
    let pre = fstat_raw(fd.raw())?;
    let ret = f()?;
    let post = fstat_raw(fd.raw())?;
    Ok(IoOut {
        ret,
        pre: Some(pre),
        post: Some(post),
    })
}

fn require_file(fd: &FdInner) -> Res<()> {
    match fd.kind {
        FdKind::File(_) => Ok(()),
        FdKind::Dir(_) => Err(libc::EISDIR),
    }
}

/// Whether I/O of `len` bytes at `off` breaks the alignment an `O_DIRECT` fd needs (the
/// brick disk's logical sector size, [`fs::Admit::direct_align`]).
fn misaligned(fd: &FdInner, admit: fs::Admit, off: i64, len: usize) -> bool {
    let align = admit.direct_align() as i64;
    fd.direct && (off.rem_euclid(align) != 0 || len as i64 % align != 0)
}

/// Runs `f` at `off`, or, when `off` is None, at the fd's offset; the offset is then
/// set to where `f` started plus what it returned (as gfapi's glfs_read/glfs_write do).
/// The offset's lock is not held while `f` runs (fault delays and hangs, I/O), so a
/// hung read never blocks glfs_lseek or other I/O on the fd; concurrent glfs_read/
/// glfs_write on one fd race for the offset, as in gfapi.
fn at_offset(fd: &FdInner, off: Option<i64>, f: impl FnOnce(i64) -> Res<IoOut>) -> Res<IoOut> {
    match off {
        Some(o) => f(o),
        None => {
            let start = *lock(&fd.pos);
            let out = f(start)?;
            if out.ret > 0 {
                *lock(&fd.pos) = start.wrapping_add(out.ret as i64);
            }
            Ok(out)
        }
    }
}

/// The brick's side of a write of `len` bytes at `off`: an `O_DIRECT` fd needs offset
/// and length aligned to the sector size (EINVAL otherwise, nothing written), then
/// `write` does the transfer and returns the byte count. A failure is what write-behind
/// reports later (see [`FdInner::defer_write_error`]): the write then returns `len`, as
/// if done, with unchanged stats.
fn brick_write(
    fd: &FdInner,
    admit: fs::Admit,
    off: i64,
    len: usize,
    write: impl FnOnce() -> Res<usize>,
) -> Res<IoOut> {
    crate::locks::check_mandatory(fd, off, len, true)?;
    crate::upcall::before_change(fd);
    let pre = fstat_raw(fd.raw())?;
    let done = if misaligned(fd, admit, off, len) {
        Err(libc::EINVAL)
    } else {
        write()
    };
    let ret = match done {
        Ok(n) => n,
        Err(e) if fd.defer_write_error(e) => {
            fd.glfs.log(
                fs::level::WARNING,
                &format!(
                    "write of {len} bytes at {off} on {} failed ({e}): reported at the next \
                     fsync/fdatasync",
                    fd.path
                ),
            );
            len
        }
        Err(e) => return Err(e),
    };
    crate::upcall::changed_fd(fd, crate::upcall::UP_WRITE);
    let post = fstat_raw(fd.raw())?;
    Ok(IoOut {
        ret: ret as ssize_t,
        pre: Some(pre),
        post: Some(post),
    })
}

/// The write-behind side of a write of `len` bytes at `off` (see
/// [`fs::Glfs::write_behind`]): None when the write goes to the brick now (no rule asks
/// for write-behind, or the fd passes it by; cached writes of the inode it overlaps are
/// flushed first, as Gluster orders it behind them). Otherwise the bytes `data` gives are
/// cached and the write is acknowledged with the file's current stats; what the brick
/// would refuse at once (a read-only fd, a negative offset, an unaligned `O_DIRECT` write)
/// is kept for the next sync as [`brick_write`] does.
fn write_behind(
    fd: &FdInner,
    admit: fs::Admit,
    off: i64,
    len: usize,
    data: impl FnOnce() -> Vec<u8>,
) -> Option<Res<IoOut>> {
    if !admit.write_behind || fd.passes_write_behind() {
        fd.flush_overlapping(off, len);
        return None;
    }
    Some((|| {
        crate::locks::check_mandatory(fd, off, len, true)?;
        crate::upcall::before_change(fd);
        let stat = fstat_raw(fd.raw())?;
        let refused = if fd.flags & libc::O_ACCMODE == libc::O_RDONLY {
            Some(libc::EBADF)
        } else if off < 0 || misaligned(fd, admit, off, len) {
            Some(libc::EINVAL)
        } else {
            None
        };
        match refused {
            Some(e) => {
                fd.defer_write_error(e);
            }
            None => {
                let FdKind::File(f) = &fd.kind else {
                    return Err(libc::EISDIR);
                };
                let file = f
                    .try_clone()
                    .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
                fd.glfs.write_behind(fd.inode()?, off, data(), file);
            }
        }
        Ok(IoOut {
            ret: len as ssize_t,
            pre: Some(stat),
            post: Some(stat),
        })
    })())
}

/// Copies `iov` truncated to at most `max` bytes in total.
unsafe fn clamp_iov(iov: *const iovec, cnt: c_int, max: usize) -> Res<(Vec<iovec>, usize)> {
    if cnt < 0 || (iov.is_null() && cnt > 0) {
        return Err(libc::EINVAL);
    }
    let src = if cnt == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(iov, cnt as usize)
    };
    let mut out = Vec::with_capacity(src.len());
    let mut total = 0usize;
    let mut left = max;
    for v in src {
        total = total.saturating_add(v.iov_len);
        let n = v.iov_len.min(left);
        left -= n;
        out.push(iovec {
            iov_base: v.iov_base,
            iov_len: n,
        });
    }
    Ok((out, total))
}

// ---------------------------------------------------------------------------------------
// core fd operations (shared by sync and async entry points)

/// Read at `off` (or at the fd's offset when None) into `buf`. The brick refuses a
/// read of 0 bytes, and an unaligned one on an `O_DIRECT` fd (EINVAL).
pub unsafe fn op_read(fd: &FdInner, buf: *mut u8, count: usize, off: Option<i64>) -> Res<IoOut> {
    require_file(fd)?;
    at_offset(fd, off, |o| {
        let admit = fd.admit("read", u64::try_from(o).ok(), count as u64)?;
        if count == 0 || misaligned(fd, admit, o, count) {
            return Err(libc::EINVAL);
        }
        fd.flush_overlapping(o, count);
        crate::locks::check_mandatory(fd, o, count, false)?;
        crate::upcall::before_read(fd);
        let n = admit.clamp(count);
        let mut done = 0usize;
        while done < n {
            let r = libc::pread(
                fd.raw(),
                buf.add(done) as *mut c_void,
                n - done,
                o.saturating_add(done as i64),
            );
            let r = cvt(r)?;
            if r == 0 {
                break;
            }
            done += r as usize;
        }
        let post = fstat_raw(fd.raw())?;
        Ok(IoOut {
            ret: done as ssize_t,
            pre: None,
            post: Some(post),
        })
    })
}

/// Write `buf` at `off` (or at the fd's offset when None); see [`brick_write`].
pub unsafe fn op_write(fd: &FdInner, buf: *const u8, count: usize, off: Option<i64>) -> Res<IoOut> {
    require_file(fd)?;
    at_offset(fd, off, |o| {
        let admit = fd.admit("write", u64::try_from(o).ok(), count as u64)?;
        let n = admit.clamp(count);
        if let Some(cached) = write_behind(fd, admit, o, n, || {
            std::slice::from_raw_parts(buf, n).to_vec()
        }) {
            return cached;
        }
        brick_write(fd, admit, o, n, || {
            let mut done = 0usize;
            while done < n {
                let r = libc::pwrite(
                    fd.raw(),
                    buf.add(done) as *const c_void,
                    n - done,
                    o.saturating_add(done as i64),
                );
                done += cvt(r)? as usize;
            }
            Ok(done)
        })
    })
}

/// Vectored read at `off` (or at the fd's offset); EINVAL as for [`op_read`].
pub unsafe fn op_readv(
    fd: &FdInner,
    iov: *const iovec,
    cnt: c_int,
    off: Option<i64>,
) -> Res<IoOut> {
    require_file(fd)?;
    let (_, total) = clamp_iov(iov, cnt, usize::MAX)?;
    at_offset(fd, off, |o| {
        let admit = fd.admit("read", u64::try_from(o).ok(), total as u64)?;
        if total == 0 || misaligned(fd, admit, o, total) {
            return Err(libc::EINVAL);
        }
        fd.flush_overlapping(o, total);
        crate::locks::check_mandatory(fd, o, total, false)?;
        crate::upcall::before_read(fd);
        let (v, _) = clamp_iov(iov, cnt, admit.clamp(total))?;
        let r = cvt(libc::preadv(fd.raw(), v.as_ptr(), v.len() as c_int, o))?;
        let post = fstat_raw(fd.raw())?;
        Ok(IoOut {
            ret: r,
            pre: None,
            post: Some(post),
        })
    })
}

/// Vectored write at `off` (or at the fd's offset); see [`brick_write`].
pub unsafe fn op_writev(
    fd: &FdInner,
    iov: *const iovec,
    cnt: c_int,
    off: Option<i64>,
) -> Res<IoOut> {
    require_file(fd)?;
    let (_, total) = clamp_iov(iov, cnt, usize::MAX)?;
    at_offset(fd, off, |o| {
        let admit = fd.admit("write", u64::try_from(o).ok(), total as u64)?;
        let n = admit.clamp(total);
        let (v, _) = clamp_iov(iov, cnt, n)?;
        if let Some(cached) = write_behind(fd, admit, o, n, || {
            let mut data = Vec::with_capacity(n);
            for x in &v {
                data.extend_from_slice(std::slice::from_raw_parts(
                    x.iov_base as *const u8,
                    x.iov_len,
                ));
            }
            data
        }) {
            return cached;
        }
        brick_write(fd, admit, o, n, || {
            let r = libc::pwritev(fd.raw(), v.as_ptr(), v.len() as c_int, o);
            cvt(r).map(|r| r as usize)
        })
    })
}

/// fsync (data_only = false) or fdatasync. Reports (once) a write error that
/// write-behind kept back (see [`FdInner::defer_write_error`]).
pub fn op_sync(fd: &FdInner, data_only: bool) -> Res<IoOut> {
    let _ = fd.admit(if data_only { "fdatasync" } else { "fsync" }, None, 0)?;
    if let Some(e) = fd.take_write_error() {
        return Err(e);
    }
    if let Some(e) = fd.inode().ok().and_then(|i| fd.glfs.take_behind_error(i)) {
        return Err(e);
    }
    with_stats(fd, || {
        // SAFETY: syncing our own descriptor.
        let r = unsafe {
            if data_only {
                libc::fdatasync(fd.raw())
            } else {
                libc::fsync(fd.raw())
            }
        };
        cvt(r as isize)
    })
}

/// ftruncate.
pub fn op_ftruncate(fd: &FdInner, len: off_t) -> Res<IoOut> {
    require_file(fd)?;
    if len < 0 {
        return Err(libc::EINVAL);
    }
    let _ = fd.admit("ftruncate", Some(len as u64), 0)?;
    crate::upcall::before_change(fd);
    // SAFETY: truncating our own descriptor.
    let out = with_stats(fd, || {
        cvt(unsafe { libc::ftruncate(fd.raw(), len) } as isize)
    })?;
    crate::upcall::changed_fd(fd, crate::upcall::UP_WRITE);
    Ok(out)
}

/// fallocate with `mode` under the fault name `op`; for `glfs_fallocate` (op
/// `fallocate`), `mode` is its `keep_size` as given, which the brick's posix translator
/// makes KEEP_SIZE when not 0. On a sharded volume (a `shard` rule), the shard translator
/// sees it first and takes only 0, ZERO_RANGE and KEEP_SIZE|PUNCH_HOLE, refusing the rest
/// with ENOTSUP (Gluster 10.3, `shard_fallocate`).
pub fn op_fallocate(fd: &FdInner, op: &str, mode: c_int, off: off_t, len: off_t) -> Res<IoOut> {
    require_file(fd)?;
    if off < 0 || len <= 0 {
        return Err(libc::EINVAL);
    }
    let admit = fd.admit(op, Some(off as u64), len as u64)?;
    let shard_takes = [
        0,
        libc::FALLOC_FL_ZERO_RANGE,
        libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE,
    ];
    if admit.shard && !shard_takes.contains(&mode) {
        return Err(libc::ENOTSUP);
    }
    let mode = match (op, mode) {
        ("fallocate", 0) => 0,
        ("fallocate", _) => libc::FALLOC_FL_KEEP_SIZE,
        _ => mode,
    };
    crate::locks::check_mandatory(fd, off, len as usize, true)?;
    crate::upcall::before_change(fd);
    let out = with_stats(fd, || {
        // SAFETY: fallocate on our own descriptor.
        let r = unsafe { libc::fallocate(fd.raw(), mode, off, len) };
        if r == 0 {
            return Ok(0);
        }
        let e = last_errno();
        if op == "zerofill" && e == libc::EOPNOTSUPP {
            return zero_by_writing(fd, off, len);
        }
        Err(e)
    })?;
    crate::upcall::changed_fd(fd, crate::upcall::UP_WRITE);
    Ok(out)
}

fn zero_by_writing(fd: &FdInner, off: off_t, len: off_t) -> Res<ssize_t> {
    let zeros = vec![0u8; 64 * 1024];
    let mut done: i64 = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as i64) as usize;
        // SAFETY: writing from a live buffer to our own descriptor.
        let r = unsafe { libc::pwrite(fd.raw(), zeros.as_ptr() as *const c_void, n, off + done) };
        done += cvt(r)? as i64;
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// async plumbing

struct SendPtr(usize);

thread_local! {
    /// The mount (`Arc::as_ptr` of its [`Glfs`]) whose async operation and callback this
    /// pool thread is running, 0 when none.
    static RUNNING_MOUNT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn submit_async(
    fdp: *mut glfs_fd_t,
    cb: glfs_io_cbk,
    data: *mut c_void,
    op: impl FnOnce(&FdInner) -> Res<IoOut> + Send + 'static,
) -> Res<c_int> {
    let fd = fd_of(fdp)?;
    let Some(cb) = cb else {
        return Err(libc::EINVAL);
    };
    fd.glfs.begin_async().map_err(|_| libc::EBADF)?;
    let glfs = fd.glfs.clone();
    let fdp = SendPtr(fdp as usize);
    let data = SendPtr(data as usize);
    let submitted = pool::current().submit(Box::new(move || {
        let fdp = fdp;
        let data = data;
        let outer = RUNNING_MOUNT.with(|r| r.replace(Arc::as_ptr(&fd.glfs) as usize));
        let out = guard(Err(libc::EIO), || op(&fd));
        let (ret, err, mut pre, mut post) = match out {
            Ok(o) => (o.ret, 0, o.pre, o.post),
            Err(e) => (-1, e, None, None),
        };
        let prep = pre
            .as_mut()
            .map_or(std::ptr::null_mut(), |p| p as *mut glfs_stat);
        let postp = post
            .as_mut()
            .map_or(std::ptr::null_mut(), |p| p as *mut glfs_stat);
        set_errno(err);
        // SAFETY: the caller's callback with the caller's own pointers, as gfapi does.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
            cb(
                fdp.0 as *mut glfs_fd_t,
                ret,
                prep,
                postp,
                data.0 as *mut c_void,
            )
        }));
        RUNNING_MOUNT.with(|r| r.set(outer));
        fd.glfs.end_async();
    }));
    if let Err(e) = submitted {
        // Not queued (no pool thread could be started): not in flight either.
        glfs.end_async();
        return Err(e);
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// marker and test hooks (node GFAPI_FAKE_1.0)

static VERSION: &[u8] = concat!("gfapi-fake ", env!("CARGO_PKG_VERSION"), "\0").as_bytes();

/// Marker proving the fake (not the real libgfapi) was loaded.
#[no_mangle]
pub extern "C" fn gfapi_fake_version() -> *const c_char {
    VERSION.as_ptr() as *const c_char
}

/// Points `fs` at a root directory other than `$GFAPI_FAKE_ROOT` (call before glfs_init).
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_set_root(fs: *mut glfs_t, root: *const c_char) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        let r = str_arg(root)?;
        m.set_root(std::path::Path::new(r));
        Ok(0)
    })
}

/// Number of async operations in flight on `fs` (-1 if `fs` is unknown).
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_inflight(fs: *mut glfs_t) -> c_int {
    match mount_of(fs) {
        Ok(m) => m.inflight() as c_int,
        Err(_) => -1,
    }
}

// ---------------------------------------------------------------------------------------
// mount management (GFAPI_3.4.0 unless noted)

/// glfs_new
#[no_mangle]
pub unsafe extern "C" fn glfs_new(volname: *const c_char) -> *mut glfs_t {
    ptr_call(|| {
        let v = str_arg(volname)?;
        Ok(mounts().insert(Arc::new(Glfs::new(v))))
    })
}

/// glfs_set_volfile
#[no_mangle]
pub unsafe extern "C" fn glfs_set_volfile(fs: *mut glfs_t, volfile: *const c_char) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        m.set_volfile(str_arg(volfile)?.into());
        Ok(0)
    })
}

/// glfs_set_volfile_server
#[no_mangle]
pub unsafe extern "C" fn glfs_set_volfile_server(
    fs: *mut glfs_t,
    transport: *const c_char,
    host: *const c_char,
    port: c_int,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        let t = opt_str_arg(transport)?.unwrap_or("tcp");
        let h = str_arg(host)?;
        m.add_server(t, h, port);
        Ok(0)
    })
}

/// glfs_unset_volfile_server (GFAPI_3.5.1)
#[no_mangle]
pub unsafe extern "C" fn glfs_unset_volfile_server(
    fs: *mut glfs_t,
    transport: *const c_char,
    host: *const c_char,
    port: c_int,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        let t = opt_str_arg(transport)?.unwrap_or("tcp");
        m.remove_server(t, str_arg(host)?, port)?;
        Ok(0)
    })
}

/// glfs_set_logging
#[no_mangle]
pub unsafe extern "C" fn glfs_set_logging(
    fs: *mut glfs_t,
    logfile: *const c_char,
    loglevel: c_int,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        m.set_logging(opt_str_arg(logfile)?, loglevel)?;
        Ok(0)
    })
}

/// glfs_set_xlator_option
#[no_mangle]
pub unsafe extern "C" fn glfs_set_xlator_option(
    fs: *mut glfs_t,
    xlator: *const c_char,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        m.set_xlator_option(str_arg(xlator)?, str_arg(key)?, str_arg(value)?);
        Ok(0)
    })
}

/// glfs_init
#[no_mangle]
pub unsafe extern "C" fn glfs_init(fs: *mut glfs_t) -> c_int {
    int_call(|| {
        mount_of(fs)?.init()?;
        Ok(0)
    })
}

/// glfs_fini: waits for in-flight async operations, then frees `fs`.
#[no_mangle]
pub unsafe extern "C" fn glfs_fini(fs: *mut glfs_t) -> c_int {
    int_call(|| {
        if fs.is_null() {
            return Err(libc::EINVAL);
        }
        let m = mounts().remove(fs as usize).ok_or(libc::EINVAL)?;
        // From a completion callback of this same mount, the callback's own operation
        // is in flight until it returns: wait for all the others only. A callback of
        // another mount waits for everything of `m`, as any other caller.
        let own = RUNNING_MOUNT.with(|r| r.get()) == Arc::as_ptr(&m) as usize;
        m.fini(usize::from(own))?;
        Ok(0)
    })
}

/// glfs_get_volumeid (GFAPI_3.5.0): writes the 16-byte volume UUID.
#[no_mangle]
pub unsafe extern "C" fn glfs_get_volumeid(
    fs: *mut glfs_t,
    volid: *mut c_char,
    size: size_t,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        if !m.is_mounted() {
            return Err(libc::EINVAL);
        }
        let id = m.volume_id();
        if volid.is_null() {
            return Ok(id.len() as c_int);
        }
        if size < id.len() {
            return Err(libc::ERANGE);
        }
        std::ptr::copy_nonoverlapping(id.as_ptr(), volid as *mut u8, id.len());
        Ok(id.len() as c_int)
    })
}

// ---------------------------------------------------------------------------------------
// open / close

const PASS_FLAGS: c_int = libc::O_ACCMODE
    | libc::O_APPEND
    | libc::O_TRUNC
    | libc::O_EXCL
    | libc::O_CREAT
    | libc::O_SYNC
    | libc::O_DSYNC
    | libc::O_NOFOLLOW
    | libc::O_LARGEFILE;

/// The md-cache model for a path call (see [`Glfs::md_cache_get`]), when a rule turns it
/// on for the call: the mount's cached lookup of `rel` when it is fresh and names an inode
/// other than the one now at `host` (another mount renamed or removed the name); None
/// when the name resolves as it is now. Without a fresh entry this is the fresh lookup,
/// which fills the cache (not for a symbolic link; nothing is kept for a name that is not
/// there, as md-cache keeps no negative entries).
pub(crate) fn md_cache_lookup(
    m: &Glfs,
    admit: &Admit,
    host: &std::path::Path,
    rel: &str,
) -> Res<Option<fs::CachedLookup>> {
    let Some(volume_secs) = admit.md_cache else {
        return Ok(None);
    };
    let vol = m.vol_dir().ok_or(libc::EIO)?;
    let now = crate::gfid::of_path(&vol, host).ok();
    if let Some(cached) = m.md_cache_get(rel, m.md_cache_timeout(volume_secs)) {
        return Ok((now != Some(cached.gfid)).then_some(cached));
    }
    let Some(gfid) = now else {
        return Ok(None);
    };
    // SAFETY: zeroed stat is a valid out-buffer; the path is a valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::lstat(cpath(host)?.as_ptr(), &mut st) } == 0
        && st.st_mode & libc::S_IFMT != libc::S_IFLNK
    {
        crate::gfid::remember(&vol, &gfid, rel);
        m.md_cache_fill(rel, gfid, st);
    }
    Ok(None)
}

pub(crate) fn open_impl(
    fsp: *mut glfs_t,
    path: &str,
    flags: c_int,
    mode: Option<mode_t>,
) -> Res<usize> {
    let m = mount_of(fsp)?;
    let op = if mode.is_some() { "creat" } else { "open" };
    let (mut host, rel, admit) = m.admit_path(op, path)?;
    if mode.is_some() {
        m.md_cache_forget(&rel);
    } else if let Some(cached) = md_cache_lookup(&m, &admit, &host, &rel)? {
        // The cached lookup names an inode no longer at this path: Gluster opens it by
        // its GFID, so the file it was renamed to, or ESTALE (ENOENT on a replicated
        // volume) when it is gone, as the handle calls answer.
        let vol = m.vol_dir().ok_or(libc::EIO)?;
        let at = crate::handles::find(&m, &vol, &cached.gfid)?;
        host = vol.join(at.trim_start_matches('/'));
    }
    let flags_in = flags;
    let mut flags = flags & PASS_FLAGS;
    match mode {
        Some(_) => flags |= libc::O_CREAT,
        // glfs_open does not create
        None => flags &= !(libc::O_CREAT | libc::O_EXCL),
    }
    let mut oo = std::fs::OpenOptions::new();
    let acc = flags & libc::O_ACCMODE;
    oo.read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(flags & !libc::O_ACCMODE);
    if let Some(md) = mode {
        oo.mode(md);
        // OpenOptions needs write or append for create; go through libc when read-only.
    }
    let file = if acc == libc::O_RDONLY && flags & (libc::O_CREAT | libc::O_TRUNC) != 0 {
        let c = cpath(&host)?;
        // SAFETY: plain open(2) with a valid C path.
        let raw = unsafe {
            libc::open(
                c.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode.unwrap_or(0o644) as libc::c_uint,
            )
        };
        if raw < 0 {
            return Err(last_errno());
        }
        use std::os::fd::FromRawFd;
        // SAFETY: raw is a fresh descriptor we own.
        unsafe { std::fs::File::from_raw_fd(raw) }
    } else {
        oo.open(&host)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?
    };
    let md = file
        .metadata()
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    // The brick opens a directory O_RDONLY as open(2) does (O_WRONLY/O_RDWR fail EISDIR
    // in the host open already); glfs_creat of a directory is EISDIR.
    if md.is_dir() && (mode.is_some() || acc != libc::O_RDONLY) {
        return Err(libc::EISDIR);
    }
    if !md.is_file() && !md.is_dir() {
        return Err(libc::EINVAL);
    }
    let inner = FdInner::new(m, rel, FdKind::File(file), fsp as usize, flags_in);
    crate::upcall::hold_fd(&inner);
    if acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
        crate::upcall::before_change(&inner);
    }
    Ok(fds().insert(Arc::new(inner)))
}

/// glfs_open: O_CREAT is ignored (use glfs_creat); a directory opens O_RDONLY only (EISDIR
/// for O_WRONLY/O_RDWR), as open(2) on the brick.
#[no_mangle]
pub unsafe extern "C" fn glfs_open(
    fs: *mut glfs_t,
    path: *const c_char,
    flags: c_int,
) -> *mut glfs_fd_t {
    ptr_call(|| open_impl(fs, str_arg(path)?, flags, None))
}

/// glfs_creat: creates (O_EXCL honoured) and opens.
#[no_mangle]
pub unsafe extern "C" fn glfs_creat(
    fs: *mut glfs_t,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> *mut glfs_fd_t {
    ptr_call(|| open_impl(fs, str_arg(path)?, flags, Some(mode)))
}

/// glfs_close: EBADF on an unknown or already closed fd. The host file is closed once
/// in-flight async operations on it are done.
#[no_mangle]
pub unsafe extern "C" fn glfs_close(fd: *mut glfs_fd_t) -> c_int {
    int_call(|| {
        if fd.is_null() {
            return Err(libc::EBADF);
        }
        let inner = fds().remove(fd as usize).ok_or(libc::EBADF)?;
        crate::locks::closing(&inner);
        match inner.admit("close", None, 0) {
            Ok(_) | Err(libc::EBADF) => Ok(0),
            Err(e) => Err(e),
        }
    })
}

/// glfs_from_glfd
#[no_mangle]
pub unsafe extern "C" fn glfs_from_glfd(fd: *mut glfs_fd_t) -> *mut glfs_t {
    ptr_call(|| {
        let f = fd_of(fd)?;
        Ok(f.fs_handle)
    })
}

// ---------------------------------------------------------------------------------------
// synchronous I/O

/// Body of a synchronous fd entry point: runs `op` on the fd, fills the caller's
/// `pre`/`post` stats (NULL allowed) and returns the byte count, or -1 with errno.
pub(crate) fn fd_io(
    fd: *mut glfs_fd_t,
    pre: *mut glfs_stat,
    post: *mut glfs_stat,
    op: impl FnOnce(&FdInner) -> Res<IoOut>,
) -> ssize_t {
    guard(-1, || {
        ssize_ret((|| {
            let o = op(&*fd_of(fd)?)?;
            // SAFETY: caller-provided out-pointers, NULL allowed.
            unsafe {
                put_stat(pre, o.pre);
                put_stat(post, o.post);
            }
            Ok(o.ret)
        })())
    })
}

/// [`fd_io`] without stats.
pub(crate) fn fd_count(fd: *mut glfs_fd_t, op: impl FnOnce(&FdInner) -> Res<IoOut>) -> ssize_t {
    fd_io(fd, std::ptr::null_mut(), std::ptr::null_mut(), op)
}

/// [`fd_io`] for entry points returning `int`.
fn sync_io(
    fd: *mut glfs_fd_t,
    pre: *mut glfs_stat,
    post: *mut glfs_stat,
    op: impl FnOnce(&FdInner) -> Res<IoOut>,
) -> c_int {
    fd_io(fd, pre, post, op) as c_int
}

/// Reads take no negative offset (EINVAL before anything else is checked).
fn read_offset(offset: off_t) -> Res<Option<i64>> {
    if offset < 0 {
        return Err(libc::EINVAL);
    }
    Ok(Some(offset))
}

/// glfs_read (GFAPI_3.4.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_read(
    fd: *mut glfs_fd_t,
    buf: *mut c_void,
    count: size_t,
    _flags: c_int,
) -> ssize_t {
    fd_count(fd, |f| op_read(f, buf.cast(), count, None))
}

/// glfs_write (GFAPI_3.4.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_write(
    fd: *mut glfs_fd_t,
    buf: *const c_void,
    count: size_t,
    _flags: c_int,
) -> ssize_t {
    fd_count(fd, |f| op_write(f, buf.cast(), count, None))
}

/// glfs_readv (GFAPI_3.4.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_readv(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    iovcnt: c_int,
    _flags: c_int,
) -> ssize_t {
    fd_count(fd, |f| op_readv(f, iov, iovcnt, None))
}

/// glfs_writev (GFAPI_3.4.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_writev(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    iovcnt: c_int,
    _flags: c_int,
) -> ssize_t {
    fd_count(fd, |f| op_writev(f, iov, iovcnt, None))
}

/// glfs_preadv (GFAPI_3.4.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_preadv(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    iovcnt: c_int,
    offset: off_t,
    _flags: c_int,
) -> ssize_t {
    fd_count(fd, |f| op_readv(f, iov, iovcnt, read_offset(offset)?))
}

/// glfs_pwritev (GFAPI_3.4.0). A negative offset is the brick's to refuse (reported
/// late, as every failed write).
#[no_mangle]
pub unsafe extern "C" fn glfs_pwritev(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    iovcnt: c_int,
    offset: off_t,
    _flags: c_int,
) -> ssize_t {
    fd_count(fd, |f| op_writev(f, iov, iovcnt, Some(offset)))
}

/// glfs_pread (GFAPI_6.0): fills `poststat` when non-NULL.
#[no_mangle]
pub unsafe extern "C" fn glfs_pread(
    fd: *mut glfs_fd_t,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
    _flags: c_int,
    poststat: *mut glfs_stat,
) -> ssize_t {
    fd_io(fd, std::ptr::null_mut(), poststat, |f| {
        op_read(f, buf.cast(), count, read_offset(offset)?)
    })
}

/// glfs_pwrite (GFAPI_6.0): fills `prestat`/`poststat` when non-NULL.
#[no_mangle]
pub unsafe extern "C" fn glfs_pwrite(
    fd: *mut glfs_fd_t,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
    _flags: c_int,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> ssize_t {
    fd_io(fd, prestat, poststat, |f| {
        op_write(f, buf.cast(), count, Some(offset))
    })
}

/// glfs_lseek (GFAPI_3.4.0), including SEEK_DATA and SEEK_HOLE. As in gfapi, the
/// offset lives in the fd and is not checked: a negative result is stored and returned
/// (so -1 comes back with errno untouched).
#[no_mangle]
pub unsafe extern "C" fn glfs_lseek(fd: *mut glfs_fd_t, offset: off_t, whence: c_int) -> off_t {
    // The fault check's stat(2) may change errno; gfapi's SEEK_SET/CUR/END do not.
    let saved = *libc::__errno_location();
    guard(-1, || {
        ssize_ret((|| {
            let f = fd_of(fd)?;
            require_file(&f)?;
            let _ = f.admit("lseek", u64::try_from(offset).ok(), 0)?;
            let mut pos = lock(&f.pos);
            let new = match whence {
                libc::SEEK_SET => offset,
                libc::SEEK_CUR => pos.wrapping_add(offset),
                libc::SEEK_END => fstat_raw(f.raw())?.glfs_st_size.wrapping_add(offset),
                libc::SEEK_DATA | libc::SEEK_HOLE => {
                    cvt(libc::lseek(f.raw(), offset, whence) as isize)? as i64
                }
                _ => return Err(libc::EINVAL),
            };
            *pos = new;
            set_errno(saved);
            Ok(new as isize)
        })()) as off_t
    })
}

/// glfs_fsync (GFAPI_6.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_fsync(
    fd: *mut glfs_fd_t,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> c_int {
    sync_io(fd, prestat, poststat, |f| op_sync(f, false))
}

/// glfs_fdatasync (GFAPI_6.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_fdatasync(
    fd: *mut glfs_fd_t,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> c_int {
    sync_io(fd, prestat, poststat, |f| op_sync(f, true))
}

/// glfs_ftruncate (GFAPI_6.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_ftruncate(
    fd: *mut glfs_fd_t,
    length: off_t,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> c_int {
    sync_io(fd, prestat, poststat, |f| op_ftruncate(f, length))
}

/// glfs_discard (GFAPI_3.5.0): punches a hole, keeping the size.
#[no_mangle]
pub unsafe extern "C" fn glfs_discard(fd: *mut glfs_fd_t, offset: off_t, len: size_t) -> c_int {
    let len = off_t::try_from(len).unwrap_or(off_t::MAX);
    sync_io(fd, std::ptr::null_mut(), std::ptr::null_mut(), |f| {
        op_fallocate(f, "discard", PUNCH, offset, len)
    })
}

/// glfs_zerofill (GFAPI_3.5.0): FALLOC_FL_ZERO_RANGE, or writes zeros where unsupported.
#[no_mangle]
pub unsafe extern "C" fn glfs_zerofill(fd: *mut glfs_fd_t, offset: off_t, len: off_t) -> c_int {
    sync_io(fd, std::ptr::null_mut(), std::ptr::null_mut(), |f| {
        op_fallocate(f, "zerofill", libc::FALLOC_FL_ZERO_RANGE, offset, len)
    })
}

/// glfs_fallocate (GFAPI_3.5.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_fallocate(
    fd: *mut glfs_fd_t,
    keep_size: c_int,
    offset: off_t,
    len: size_t,
) -> c_int {
    let len = off_t::try_from(len).unwrap_or(off_t::MAX);
    sync_io(fd, std::ptr::null_mut(), std::ptr::null_mut(), |f| {
        op_fallocate(f, "fallocate", keep_size, offset, len)
    })
}

const PUNCH: c_int = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;

// ---------------------------------------------------------------------------------------
// asynchronous I/O (GFAPI_6.0): the op and the callback run on a pool thread

/// Submits a read (`write` false) or write of `count` bytes at `buf`, at `offset` or
/// at the fd's offset. A negative read offset fails through the callback.
fn buf_async(
    fd: *mut glfs_fd_t,
    buf: usize,
    count: usize,
    offset: Option<off_t>,
    write: bool,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    let buf = SendPtr(buf);
    int_call(|| {
        submit_async(fd, fn_, data, move |f| {
            let buf = buf;
            // SAFETY: the caller keeps buf valid until the callback (gfapi contract).
            unsafe {
                if write {
                    op_write(f, buf.0 as *const u8, count, offset)
                } else {
                    op_read(
                        f,
                        buf.0 as *mut u8,
                        count,
                        match offset {
                            Some(o) => read_offset(o)?,
                            None => None,
                        },
                    )
                }
            }
        })
    })
}

/// glfs_pread_async
#[no_mangle]
pub unsafe extern "C" fn glfs_pread_async(
    fd: *mut glfs_fd_t,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
    _flags: c_int,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    buf_async(fd, buf as usize, count, Some(offset), false, fn_, data)
}

/// glfs_pwrite_async (note: `count` is an int in gfapi; negative is EINVAL)
#[no_mangle]
pub unsafe extern "C" fn glfs_pwrite_async(
    fd: *mut glfs_fd_t,
    buf: *const c_void,
    count: c_int,
    offset: off_t,
    _flags: c_int,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    match usize::try_from(count) {
        Ok(count) => buf_async(fd, buf as usize, count, Some(offset), true, fn_, data),
        Err(_) => int_call(|| Err(libc::EINVAL)),
    }
}

/// glfs_read_async
#[no_mangle]
pub unsafe extern "C" fn glfs_read_async(
    fd: *mut glfs_fd_t,
    buf: *mut c_void,
    count: size_t,
    _flags: c_int,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    buf_async(fd, buf as usize, count, None, false, fn_, data)
}

/// glfs_write_async
#[no_mangle]
pub unsafe extern "C" fn glfs_write_async(
    fd: *mut glfs_fd_t,
    buf: *const c_void,
    count: size_t,
    _flags: c_int,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    buf_async(fd, buf as usize, count, None, true, fn_, data)
}

unsafe fn iov_async(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    count: c_int,
    offset: Option<off_t>,
    write: bool,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    int_call(|| {
        // gfapi copies the iovec array itself; the buffers stay the caller's.
        let (v, _) = clamp_iov(iov, count, usize::MAX)?;
        let v: Vec<(usize, usize)> = v.iter().map(|x| (x.iov_base as usize, x.iov_len)).collect();
        submit_async(fd, fn_, data, move |f| {
            // As for glfs_pread_async: a negative read offset fails through the callback.
            let offset = match offset {
                Some(o) if !write => read_offset(o)?,
                o => o,
            };
            let v: Vec<iovec> = v
                .iter()
                .map(|&(b, l)| iovec {
                    iov_base: b as *mut c_void,
                    iov_len: l,
                })
                .collect();
            // SAFETY: the caller keeps the buffers valid until the callback.
            unsafe {
                if write {
                    op_writev(f, v.as_ptr(), v.len() as c_int, offset)
                } else {
                    op_readv(f, v.as_ptr(), v.len() as c_int, offset)
                }
            }
        })
    })
}

/// glfs_readv_async
#[no_mangle]
pub unsafe extern "C" fn glfs_readv_async(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    count: c_int,
    _flags: c_int,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    iov_async(fd, iov, count, None, false, fn_, data)
}

/// glfs_writev_async
#[no_mangle]
pub unsafe extern "C" fn glfs_writev_async(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    count: c_int,
    _flags: c_int,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    iov_async(fd, iov, count, None, true, fn_, data)
}

/// glfs_preadv_async
#[no_mangle]
pub unsafe extern "C" fn glfs_preadv_async(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    count: c_int,
    offset: off_t,
    _flags: c_int,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    iov_async(fd, iov, count, Some(offset), false, fn_, data)
}

/// glfs_pwritev_async
#[no_mangle]
pub unsafe extern "C" fn glfs_pwritev_async(
    fd: *mut glfs_fd_t,
    iov: *const iovec,
    count: c_int,
    offset: off_t,
    _flags: c_int,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    iov_async(fd, iov, count, Some(offset), true, fn_, data)
}

/// glfs_fsync_async
#[no_mangle]
pub unsafe extern "C" fn glfs_fsync_async(
    fd: *mut glfs_fd_t,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    int_call(|| submit_async(fd, fn_, data, |f| op_sync(f, false)))
}

/// glfs_fdatasync_async
#[no_mangle]
pub unsafe extern "C" fn glfs_fdatasync_async(
    fd: *mut glfs_fd_t,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    int_call(|| submit_async(fd, fn_, data, |f| op_sync(f, true)))
}

/// glfs_ftruncate_async
#[no_mangle]
pub unsafe extern "C" fn glfs_ftruncate_async(
    fd: *mut glfs_fd_t,
    length: off_t,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    int_call(|| submit_async(fd, fn_, data, move |f| op_ftruncate(f, length)))
}

/// glfs_discard_async
#[no_mangle]
pub unsafe extern "C" fn glfs_discard_async(
    fd: *mut glfs_fd_t,
    offset: off_t,
    len: size_t,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    let len = off_t::try_from(len).unwrap_or(off_t::MAX);
    int_call(|| {
        submit_async(fd, fn_, data, move |f| {
            op_fallocate(f, "discard", PUNCH, offset, len)
        })
    })
}

/// glfs_zerofill_async
#[no_mangle]
pub unsafe extern "C" fn glfs_zerofill_async(
    fd: *mut glfs_fd_t,
    offset: off_t,
    len: off_t,
    fn_: glfs_io_cbk,
    data: *mut c_void,
) -> c_int {
    int_call(|| {
        submit_async(fd, fn_, data, move |f| {
            op_fallocate(f, "zerofill", libc::FALLOC_FL_ZERO_RANGE, offset, len)
        })
    })
}

// ---------------------------------------------------------------------------------------
// path operations

pub(crate) fn path_op<T>(
    fs: *mut glfs_t,
    path: *const c_char,
    op: &str,
    f: impl FnOnce(&std::ffi::CString, &Admit) -> Res<T>,
) -> Res<T> {
    let m = mount_of(fs)?;
    // SAFETY: C string argument from the caller.
    let p = unsafe { str_arg(path)? };
    let (host, _, admit) = m.admit_path(op, p)?;
    f(&cpath(&host)?, &admit)
}

/// A path entry point whose host call returns 0, or -1 with errno.
pub(crate) fn path_call(
    fs: *mut glfs_t,
    path: *const c_char,
    op: &str,
    call: impl FnOnce(&std::ffi::CString) -> c_int,
) -> c_int {
    int_call(|| path_op(fs, path, op, |c, _| cvt(call(c) as isize).map(|_| 0)))
}

unsafe fn stat_like(
    fs: *mut glfs_t,
    path: *const c_char,
    buf: *mut libc::stat,
    op: &str,
    follow: bool,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        let (host, rel, admit) = m.admit_path(op, str_arg(path)?)?;
        if buf.is_null() {
            return Err(libc::EINVAL);
        }
        // md-cache answers from the attributes it cached (those of the inode the name had
        // then); a name that still has that inode is read afresh.
        if let Some(cached) = md_cache_lookup(&m, &admit, &host, &rel)? {
            *buf = cached.stat;
            return Ok(0);
        }
        let c = cpath(&host)?;
        let r = if follow {
            libc::stat(c.as_ptr(), buf)
        } else {
            libc::lstat(c.as_ptr(), buf)
        };
        cvt(r as isize).map(|_| 0)
    })
}

/// glfs_stat
#[no_mangle]
pub unsafe extern "C" fn glfs_stat(
    fs: *mut glfs_t,
    path: *const c_char,
    buf: *mut libc::stat,
) -> c_int {
    stat_like(fs, path, buf, "stat", true)
}

/// glfs_lstat
#[no_mangle]
pub unsafe extern "C" fn glfs_lstat(
    fs: *mut glfs_t,
    path: *const c_char,
    buf: *mut libc::stat,
) -> c_int {
    stat_like(fs, path, buf, "lstat", false)
}

/// glfs_fstat
#[no_mangle]
pub unsafe extern "C" fn glfs_fstat(fd: *mut glfs_fd_t, buf: *mut libc::stat) -> c_int {
    int_call(|| {
        let f = fd_of(fd)?;
        if buf.is_null() {
            return Err(libc::EINVAL);
        }
        let _ = f.admit("fstat", None, 0)?;
        cvt(libc::fstat(f.raw(), buf) as isize).map(|_| 0)
    })
}

/// glfs_access
#[no_mangle]
pub unsafe extern "C" fn glfs_access(fs: *mut glfs_t, path: *const c_char, mode: c_int) -> c_int {
    path_call(fs, path, "access", |c| libc::access(c.as_ptr(), mode))
}

/// glfs_mkdir
#[no_mangle]
pub unsafe extern "C" fn glfs_mkdir(fs: *mut glfs_t, path: *const c_char, mode: mode_t) -> c_int {
    path_call(fs, path, "mkdir", |c| libc::mkdir(c.as_ptr(), mode))
}

/// The mount changes the name `path` itself: it forgets its cached lookups of it (the
/// md-cache model, see [`Glfs::md_cache_forget`]).
unsafe fn forget_name(fs: *mut glfs_t, path: *const c_char) {
    if let (Ok(m), Ok(p)) = (mount_of(fs), str_arg(path)) {
        m.md_cache_forget_path(p);
    }
}

/// glfs_unlink
#[no_mangle]
pub unsafe extern "C" fn glfs_unlink(fs: *mut glfs_t, path: *const c_char) -> c_int {
    let r = path_call(fs, path, "unlink", |c| libc::unlink(c.as_ptr()));
    forget_name(fs, path);
    r
}

/// glfs_rmdir
#[no_mangle]
pub unsafe extern "C" fn glfs_rmdir(fs: *mut glfs_t, path: *const c_char) -> c_int {
    let r = path_call(fs, path, "rmdir", |c| libc::rmdir(c.as_ptr()));
    forget_name(fs, path);
    r
}

/// glfs_rename
#[no_mangle]
pub unsafe extern "C" fn glfs_rename(
    fs: *mut glfs_t,
    oldpath: *const c_char,
    newpath: *const c_char,
) -> c_int {
    let r = int_call(|| {
        path_op(fs, oldpath, "rename", |old, _| {
            let m = mount_of(fs)?;
            let (newhost, _, _) = m.admit_path("rename", str_arg(newpath)?)?;
            let new = cpath(&newhost)?;
            match cvt(libc::rename(old.as_ptr(), new.as_ptr()) as isize) {
                // rename(2) says ENOTDIR for a directory onto a non-directory; Gluster
                // (10.3) says EISDIR.
                Err(libc::ENOTDIR) if is_dir(old) && exists_not_dir(&new) => Err(libc::EISDIR),
                r => r.map(|_| 0),
            }
        })
    });
    forget_name(fs, oldpath);
    forget_name(fs, newpath);
    r
}

pub(crate) fn lstat_mode(p: &std::ffi::CStr) -> Option<libc::mode_t> {
    // SAFETY: zeroed stat is a valid out-buffer; p is a valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::lstat(p.as_ptr(), &mut st) } == 0).then_some(st.st_mode & libc::S_IFMT)
}

fn is_dir(p: &std::ffi::CStr) -> bool {
    lstat_mode(p) == Some(libc::S_IFDIR)
}

fn exists_not_dir(p: &std::ffi::CStr) -> bool {
    matches!(lstat_mode(p), Some(m) if m != libc::S_IFDIR)
}

/// glfs_truncate (GFAPI_3.7.15)
#[no_mangle]
pub unsafe extern "C" fn glfs_truncate(
    fs: *mut glfs_t,
    path: *const c_char,
    length: off_t,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        // SAFETY: C string argument from the caller.
        let p = unsafe { str_arg(path)? };
        let (host, _, _admit) = m.admit_path("truncate", p)?;
        // A change to the file: other clients' leases on it are recalled first, as for a
        // write through a descriptor.
        if let Some(vol) = m.vol_dir() {
            crate::upcall::before_path_change(&vol, &host);
        }
        cvt(libc::truncate(cpath(&host)?.as_ptr(), length) as isize).map(|_| 0)
    })
}

/// glfs_statvfs
#[no_mangle]
pub unsafe extern "C" fn glfs_statvfs(
    fs: *mut glfs_t,
    path: *const c_char,
    buf: *mut libc::statvfs,
) -> c_int {
    int_call(|| {
        path_op(fs, path, "statvfs", |c, _| {
            if buf.is_null() {
                return Err(libc::EINVAL);
            }
            cvt(libc::statvfs(c.as_ptr(), buf) as isize).map(|_| 0)
        })
    })
}

// ---------------------------------------------------------------------------------------
// directories

/// glfs_opendir
#[no_mangle]
pub unsafe extern "C" fn glfs_opendir(fs: *mut glfs_t, path: *const c_char) -> *mut glfs_fd_t {
    ptr_call(|| {
        let m = mount_of(fs)?;
        let p = str_arg(path)?;
        let (host, rel, _) = m.admit_path("opendir", p)?;
        let c = cpath(&host)?;
        let d = libc::opendir(c.as_ptr());
        if d.is_null() {
            return Err(last_errno());
        }
        let dir = FdKind::Dir(fs::DirStream {
            dir: std::sync::Mutex::new(d),
        });
        let inner = FdInner::new(m, rel, dir, fs as usize, libc::O_RDONLY);
        Ok(fds().insert(Arc::new(inner)))
    })
}

pub(crate) unsafe fn next_entry(fd: *mut glfs_fd_t, out: Option<*mut dirent>) -> Res<*mut dirent> {
    let f = fd_of(fd)?;
    let FdKind::Dir(d) = &f.kind else {
        return Err(libc::ENOTDIR);
    };
    let _ = f.admit("readdir", None, 0)?;
    let dir = lock(&d.dir);
    set_errno(0);
    let e = libc::readdir(*dir);
    if e.is_null() {
        let err = last_errno();
        return if err != 0 { Err(err) } else { Ok(e) };
    }
    if let Some(o) = out {
        if o.is_null() {
            return Err(libc::EINVAL);
        }
        // readdir's record is only as long as its name (d_reclen), not sizeof(dirent):
        // copy the header and the name with its NUL, nothing past it.
        let name_off = std::mem::offset_of!(dirent, d_name);
        let name_len = libc::strlen((*e).d_name.as_ptr());
        let len = (name_off + name_len + 1).min(std::mem::size_of::<dirent>());
        std::ptr::copy_nonoverlapping(e as *const u8, o as *mut u8, len);
        return Ok(o);
    }
    Ok(e)
}

/// glfs_readdir (GFAPI_3.5.0): NULL at the end (errno untouched) or on error.
#[no_mangle]
pub unsafe extern "C" fn glfs_readdir(fd: *mut glfs_fd_t) -> *mut dirent {
    guard(std::ptr::null_mut(), || match next_entry(fd, None) {
        Ok(e) => e,
        Err(e) => {
            set_errno(e);
            std::ptr::null_mut()
        }
    })
}

/// glfs_readdir_r
#[no_mangle]
pub unsafe extern "C" fn glfs_readdir_r(
    fd: *mut glfs_fd_t,
    entry: *mut dirent,
    result: *mut *mut dirent,
) -> c_int {
    int_call(|| {
        if result.is_null() {
            return Err(libc::EINVAL);
        }
        let e = next_entry(fd, Some(entry))?;
        *result = e;
        Ok(0)
    })
}

/// glfs_telldir
#[no_mangle]
pub unsafe extern "C" fn glfs_telldir(fd: *mut glfs_fd_t) -> c_long {
    guard(-1, || match fd_of(fd) {
        Ok(f) => match &f.kind {
            FdKind::Dir(d) => libc::telldir(*lock(&d.dir)),
            FdKind::File(_) => {
                set_errno(libc::ENOTDIR);
                -1
            }
        },
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

/// glfs_seekdir
#[no_mangle]
pub unsafe extern "C" fn glfs_seekdir(fd: *mut glfs_fd_t, offset: c_long) {
    guard((), || {
        if let Ok(f) = fd_of(fd) {
            if let FdKind::Dir(d) = &f.kind {
                libc::seekdir(*lock(&d.dir), offset);
            }
        }
    })
}

/// glfs_closedir
#[no_mangle]
pub unsafe extern "C" fn glfs_closedir(fd: *mut glfs_fd_t) -> c_int {
    glfs_close(fd)
}
