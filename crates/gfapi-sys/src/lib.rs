//! Raw C ABI of libgfapi >= 6, resolved at run time (the only home of gfapi unsafe code).
//!
//! Nothing here links against libgfapi: [`Library::load`] opens `libgfapi.so.0` (or a given
//! path) with the dynamic loader and resolves every function this project uses once, so the
//! workspace builds and its tests run on machines without Gluster, and the fake
//! `libgfapi.so.0` can be swapped in by path.
//!
//! The signatures follow `/usr/include/glusterfs/api/glfs.h` of gfapi 6 and later: the
//! synchronous `glfs_pread`/`glfs_pwrite`/`glfs_fsync`/`glfs_fdatasync`/`glfs_ftruncate` take
//! `struct glfs_stat` pre/post arguments and [`glfs_io_cbk`] has the 6.0 form with pre/post
//! stats. Functions whose signature changed in 6.0 are looked up at symbol version
//! `GFAPI_6.0` only (`dlvsym`): a libgfapi older than 6 exports them with the old prototypes,
//! and calling those through the 6.0 types would corrupt memory, so such a library is refused
//! with an error naming the missing `symbol@GFAPI_6.0`.

#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_void, mode_t, off_t, size_t, ssize_t};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Opaque `glfs_t`: one virtual mount of a volume.
#[repr(C)]
pub struct glfs_t {
    _private: [u8; 0],
    _not_send: std::marker::PhantomData<*mut u8>,
}

/// Opaque `glfs_fd_t`: an open file on a volume.
#[repr(C)]
pub struct glfs_fd_t {
    _private: [u8; 0],
    _not_send: std::marker::PhantomData<*mut u8>,
}

/// `struct glfs_stat` (gfapi 6), the statx-like result of the 6.0 I/O calls.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct glfs_stat {
    pub glfs_st_mask: u64,
    pub glfs_st_attributes: u64,
    pub glfs_st_attributes_mask: u64,
    pub glfs_st_atime: libc::timespec,
    pub glfs_st_btime: libc::timespec,
    pub glfs_st_ctime: libc::timespec,
    pub glfs_st_mtime: libc::timespec,
    pub glfs_st_ino: libc::ino_t,
    pub glfs_st_size: off_t,
    pub glfs_st_blocks: libc::blkcnt_t,
    pub glfs_st_rdev_major: u32,
    pub glfs_st_rdev_minor: u32,
    pub glfs_st_dev_major: u32,
    pub glfs_st_dev_minor: u32,
    pub glfs_st_blksize: libc::blksize_t,
    pub glfs_st_nlink: libc::nlink_t,
    pub glfs_st_uid: libc::uid_t,
    pub glfs_st_gid: libc::gid_t,
    pub glfs_st_mode: mode_t,
}

/// Completion callback of the `*_async` calls (gfapi 6 form): `ret` is the byte count or
/// `-1` with `errno` set on the calling (gfapi's) thread.
pub type glfs_io_cbk = Option<
    unsafe extern "C" fn(
        fd: *mut glfs_fd_t,
        ret: ssize_t,
        prestat: *mut glfs_stat,
        poststat: *mut glfs_stat,
        data: *mut c_void,
    ),
>;

/// `glfs_t *glfs_new(const char *volname)`
pub type glfs_new_fn = unsafe extern "C" fn(volname: *const c_char) -> *mut glfs_t;
/// `int glfs_set_volfile_server(glfs_t *, const char *transport, const char *host, int port)`
pub type glfs_set_volfile_server_fn = unsafe extern "C" fn(
    fs: *mut glfs_t,
    transport: *const c_char,
    host: *const c_char,
    port: c_int,
) -> c_int;
/// `int glfs_set_logging(glfs_t *, const char *logfile, int loglevel)`
pub type glfs_set_logging_fn =
    unsafe extern "C" fn(fs: *mut glfs_t, logfile: *const c_char, loglevel: c_int) -> c_int;
/// `int glfs_set_xlator_option(glfs_t *, const char *xlator, const char *key, const char *value)`
pub type glfs_set_xlator_option_fn = unsafe extern "C" fn(
    fs: *mut glfs_t,
    xlator: *const c_char,
    key: *const c_char,
    value: *const c_char,
) -> c_int;
/// `int glfs_init(glfs_t *)`
pub type glfs_init_fn = unsafe extern "C" fn(fs: *mut glfs_t) -> c_int;
/// `int glfs_fini(glfs_t *)`
pub type glfs_fini_fn = unsafe extern "C" fn(fs: *mut glfs_t) -> c_int;
/// `glfs_fd_t *glfs_open(glfs_t *, const char *path, int flags)`
pub type glfs_open_fn =
    unsafe extern "C" fn(fs: *mut glfs_t, path: *const c_char, flags: c_int) -> *mut glfs_fd_t;
/// `glfs_fd_t *glfs_creat(glfs_t *, const char *path, int flags, mode_t mode)`
pub type glfs_creat_fn = unsafe extern "C" fn(
    fs: *mut glfs_t,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> *mut glfs_fd_t;
/// `int glfs_rename(glfs_t *, const char *oldpath, const char *newpath)`
pub type glfs_rename_fn =
    unsafe extern "C" fn(fs: *mut glfs_t, oldpath: *const c_char, newpath: *const c_char) -> c_int;
/// `int glfs_unlink(glfs_t *, const char *path)`
pub type glfs_unlink_fn = unsafe extern "C" fn(fs: *mut glfs_t, path: *const c_char) -> c_int;
/// `int glfs_close(glfs_fd_t *)`
pub type glfs_close_fn = unsafe extern "C" fn(fd: *mut glfs_fd_t) -> c_int;
/// `int glfs_statvfs(glfs_t *, const char *path, struct statvfs *buf)`
pub type glfs_statvfs_fn =
    unsafe extern "C" fn(fs: *mut glfs_t, path: *const c_char, buf: *mut libc::statvfs) -> c_int;
/// `int glfs_lstat(glfs_t *, const char *path, struct stat *buf)`
pub type glfs_lstat_fn =
    unsafe extern "C" fn(fs: *mut glfs_t, path: *const c_char, buf: *mut libc::stat) -> c_int;
/// `int glfs_fstat(glfs_fd_t *, struct stat *buf)`
pub type glfs_fstat_fn = unsafe extern "C" fn(fd: *mut glfs_fd_t, buf: *mut libc::stat) -> c_int;
/// `ssize_t glfs_pread(glfs_fd_t *, void *buf, size_t count, off_t offset, int flags,
/// struct glfs_stat *poststat)` (6.0)
pub type glfs_pread_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
    flags: c_int,
    poststat: *mut glfs_stat,
) -> ssize_t;
/// `ssize_t glfs_pwrite(glfs_fd_t *, const void *buf, size_t count, off_t offset, int flags,
/// struct glfs_stat *prestat, struct glfs_stat *poststat)` (6.0)
pub type glfs_pwrite_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
    flags: c_int,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> ssize_t;
/// `int glfs_fdatasync(glfs_fd_t *, struct glfs_stat *prestat, struct glfs_stat *poststat)`
/// (6.0); `glfs_fsync` has the same form.
pub type glfs_sync_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> c_int;
/// `int glfs_ftruncate(glfs_fd_t *, off_t length, struct glfs_stat *prestat,
/// struct glfs_stat *poststat)` (6.0)
pub type glfs_ftruncate_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    length: off_t,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> c_int;
/// `int glfs_discard(glfs_fd_t *, off_t offset, size_t len)`
pub type glfs_discard_fn =
    unsafe extern "C" fn(fd: *mut glfs_fd_t, offset: off_t, len: size_t) -> c_int;
/// `int glfs_fallocate(glfs_fd_t *, int keep_size, off_t offset, size_t len)`
pub type glfs_fallocate_fn =
    unsafe extern "C" fn(fd: *mut glfs_fd_t, keep_size: c_int, offset: off_t, len: size_t) -> c_int;
/// `int glfs_zerofill(glfs_fd_t *, off_t offset, off_t len)`
pub type glfs_zerofill_fn =
    unsafe extern "C" fn(fd: *mut glfs_fd_t, offset: off_t, len: off_t) -> c_int;
/// `off_t glfs_lseek(glfs_fd_t *, off_t offset, int whence)` (SEEK_DATA/SEEK_HOLE too)
pub type glfs_lseek_fn =
    unsafe extern "C" fn(fd: *mut glfs_fd_t, offset: off_t, whence: c_int) -> off_t;
/// `ssize_t glfs_copy_file_range(struct glfs_fd *in, off64_t *off_in, struct glfs_fd *out,
/// off64_t *off_out, size_t len, unsigned int flags, struct glfs_stat *statbuf,
/// struct glfs_stat *prestat, struct glfs_stat *poststat)` (6.0)
pub type glfs_copy_file_range_fn = unsafe extern "C" fn(
    fd_in: *mut glfs_fd_t,
    off_in: *mut i64,
    fd_out: *mut glfs_fd_t,
    off_out: *mut i64,
    len: size_t,
    flags: libc::c_uint,
    statbuf: *mut glfs_stat,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> ssize_t;
/// `int glfs_pread_async(glfs_fd_t *, void *buf, size_t count, off_t offset, int flags,
/// glfs_io_cbk fn, void *data)` (6.0)
pub type glfs_pread_async_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
    flags: c_int,
    cbk: glfs_io_cbk,
    data: *mut c_void,
) -> c_int;
/// `int glfs_pwrite_async(glfs_fd_t *, const void *buf, int count, off_t offset, int flags,
/// glfs_io_cbk fn, void *data)` (6.0) — note the `int` count.
pub type glfs_pwrite_async_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    buf: *const c_void,
    count: c_int,
    offset: off_t,
    flags: c_int,
    cbk: glfs_io_cbk,
    data: *mut c_void,
) -> c_int;
/// `int glfs_pwritev_async(glfs_fd_t *, const struct iovec *iov, int count, off_t offset,
/// int flags, glfs_io_cbk fn, void *data)` (6.0): gfapi copies the `count` buffers into
/// one iobuf of its own before it returns or winds, as it does for `glfs_pwrite_async`.
pub type glfs_pwritev_async_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    iov: *const libc::iovec,
    count: c_int,
    offset: off_t,
    flags: c_int,
    cbk: glfs_io_cbk,
    data: *mut c_void,
) -> c_int;
/// `int glfs_fdatasync_async(glfs_fd_t *, glfs_io_cbk fn, void *data)` (6.0); also
/// `glfs_fsync_async`.
pub type glfs_sync_async_fn =
    unsafe extern "C" fn(fd: *mut glfs_fd_t, cbk: glfs_io_cbk, data: *mut c_void) -> c_int;
/// `int glfs_discard_async(glfs_fd_t *, off_t offset, size_t len, glfs_io_cbk fn, void *data)`
/// (6.0)
pub type glfs_discard_async_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    offset: off_t,
    len: size_t,
    cbk: glfs_io_cbk,
    data: *mut c_void,
) -> c_int;
/// `int glfs_zerofill_async(glfs_fd_t *, off_t offset, off_t len, glfs_io_cbk fn, void *data)`
/// (6.0)
pub type glfs_zerofill_async_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    offset: off_t,
    len: off_t,
    cbk: glfs_io_cbk,
    data: *mut c_void,
) -> c_int;

/// `int glfs_setfsuid(uid_t)` (3.4.2): the calling thread's uid for its later requests.
pub type glfs_setfsuid_fn = unsafe extern "C" fn(uid: libc::uid_t) -> c_int;
/// `int glfs_setfsgid(gid_t)` (3.4.2): the calling thread's gid for its later requests.
pub type glfs_setfsgid_fn = unsafe extern "C" fn(gid: libc::gid_t) -> c_int;
/// `int glfs_setfsgroups(size_t, const gid_t *)` (3.4.2): the calling thread's
/// supplementary groups for its later requests.
pub type glfs_setfsgroups_fn =
    unsafe extern "C" fn(size: size_t, list: *const libc::gid_t) -> c_int;
/// `int glfs_posix_lock(glfs_fd_t *fd, int cmd, struct flock *flock)` (GFAPI_3.4.0):
/// F_SETLK, F_SETLKW or F_GETLK, advisory, per lock owner of the fd.
pub type glfs_posix_lock_fn =
    unsafe extern "C" fn(fd: *mut glfs_fd_t, cmd: c_int, flock: *mut libc::flock) -> c_int;
/// `int glfs_file_lock(glfs_fd_t *fd, int cmd, struct flock *flock, glfs_lock_mode_t
/// lk_mode)`: as [`glfs_posix_lock_fn`], `lk_mode` [`GLFS_LK_ADVISORY`] or
/// [`GLFS_LK_MANDATORY`]. glfs.h says 3.13.0, but libgfapi 10.3 exports it at GFAPI_4.0.0
/// (docs/fencing.md), so it is resolved by name.
pub type glfs_file_lock_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    cmd: c_int,
    flock: *mut libc::flock,
    lk_mode: c_int,
) -> c_int;
/// `GLFS_LK_ADVISORY` of `enum glfs_lock_mode`.
pub const GLFS_LK_ADVISORY: c_int = 0;
/// `GLFS_LK_MANDATORY` of `enum glfs_lock_mode`: reads and writes of other clients into
/// the range are refused by the brick (EAGAIN on an `O_NONBLOCK` fd; a blocking fd's
/// request waits there until the lock goes), on a volume with `locks.mandatory-locking`.
pub const GLFS_LK_MANDATORY: c_int = 1;
/// `int glfs_fd_set_lkowner(glfs_fd_t *glfd, void *data, int len)` (GFAPI_3.10.7): the
/// lock owner of the fd's later locks, 1 to 255 bytes.
pub type glfs_fd_set_lkowner_fn =
    unsafe extern "C" fn(fd: *mut glfs_fd_t, data: *mut c_void, len: c_int) -> c_int;
/// `ssize_t glfs_fgetxattr(glfs_fd_t *fd, const char *name, void *value, size_t size)`
/// (GFAPI_3.4.0): the value of extended attribute `name` of the fd's file. Also how a
/// client asks the bricks' locks translator to clear locks (`glusterfs.clrlk.*`, the
/// request `gluster volume clear-locks` sends; docs/fencing.md).
pub type glfs_fgetxattr_fn = unsafe extern "C" fn(
    fd: *mut glfs_fd_t,
    name: *const c_char,
    value: *mut c_void,
    size: size_t,
) -> ssize_t;

/// `ssize_t glfs_getxattr(glfs_t *, const char *path, const char *name, void *value,
/// size_t size)` (GFAPI_3.4.0): the value of extended attribute `name` of `path`; how a
/// client asks which bricks hold a file (`trusted.glusterfs.pathinfo`, answered on a path
/// only).
pub type glfs_getxattr_fn = unsafe extern "C" fn(
    fs: *mut glfs_t,
    path: *const c_char,
    name: *const c_char,
    value: *mut c_void,
    size: size_t,
) -> ssize_t;

/// The library name the loader searches for when no path is given.
pub const DEFAULT_LIBRARY: &str = "libgfapi.so.0";

/// Why [`Library::load`] failed; both variants name the library.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader could not open the library.
    #[error("cannot load {library}: {message}")]
    Open { library: String, message: String },
    /// The library lacks a function this project needs.
    #[error("{library} has no symbol {symbol}: {message}")]
    Symbol {
        library: String,
        symbol: &'static str,
        message: String,
    },
}

/// libgfapi loaded at run time, with every function resolved.
///
/// The function pointers stay valid while this value lives; it unloads nothing on drop that
/// other users of the same library still need (the loader reference-counts `dlopen`).
#[derive(Debug)]
pub struct Library {
    pub glfs_new: glfs_new_fn,
    pub glfs_set_volfile_server: glfs_set_volfile_server_fn,
    pub glfs_set_logging: glfs_set_logging_fn,
    pub glfs_set_xlator_option: glfs_set_xlator_option_fn,
    pub glfs_init: glfs_init_fn,
    pub glfs_fini: glfs_fini_fn,
    pub glfs_open: glfs_open_fn,
    pub glfs_creat: glfs_creat_fn,
    pub glfs_rename: glfs_rename_fn,
    pub glfs_unlink: glfs_unlink_fn,
    pub glfs_close: glfs_close_fn,
    pub glfs_lstat: glfs_lstat_fn,
    pub glfs_statvfs: glfs_statvfs_fn,
    pub glfs_fstat: glfs_fstat_fn,
    pub glfs_pread: glfs_pread_fn,
    pub glfs_pwrite: glfs_pwrite_fn,
    pub glfs_fdatasync: glfs_sync_fn,
    pub glfs_fsync: glfs_sync_fn,
    pub glfs_ftruncate: glfs_ftruncate_fn,
    pub glfs_discard: glfs_discard_fn,
    pub glfs_fallocate: glfs_fallocate_fn,
    pub glfs_zerofill: glfs_zerofill_fn,
    pub glfs_lseek: glfs_lseek_fn,
    pub glfs_copy_file_range: glfs_copy_file_range_fn,
    pub glfs_pread_async: glfs_pread_async_fn,
    pub glfs_pwrite_async: glfs_pwrite_async_fn,
    pub glfs_pwritev_async: glfs_pwritev_async_fn,
    pub glfs_fdatasync_async: glfs_sync_async_fn,
    pub glfs_fsync_async: glfs_sync_async_fn,
    pub glfs_discard_async: glfs_discard_async_fn,
    pub glfs_zerofill_async: glfs_zerofill_async_fn,
    pub glfs_setfsuid: glfs_setfsuid_fn,
    pub glfs_setfsgid: glfs_setfsgid_fn,
    pub glfs_setfsgroups: glfs_setfsgroups_fn,
    pub glfs_posix_lock: glfs_posix_lock_fn,
    pub glfs_file_lock: glfs_file_lock_fn,
    pub glfs_fd_set_lkowner: glfs_fd_set_lkowner_fn,
    pub glfs_fgetxattr: glfs_fgetxattr_fn,
    pub glfs_getxattr: glfs_getxattr_fn,
    name: String,
    // Keeps the code behind the pointers mapped; last so it drops after nothing else.
    _lib: libloading::os::unix::Library,
}

/// Symbol version of the functions whose signature changed in gfapi 6.0.
const V6: &str = "GFAPI_6.0";

impl Library {
    /// Loads libgfapi from `path`, or `libgfapi.so.0` through the loader's search path when
    /// `None`, and resolves every function.
    pub fn load(path: Option<&Path>) -> Result<Library, LoadError> {
        let file: PathBuf = path.map_or_else(|| PathBuf::from(DEFAULT_LIBRARY), Path::to_path_buf);
        let name = file.display().to_string();
        // SAFETY: loading a shared object runs its initialisers; libgfapi (and the fake) are
        // ordinary C libraries whose constructors have no preconditions.
        let lib = unsafe {
            libloading::os::unix::Library::open(
                Some(&file),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        }
        .map_err(|e| LoadError::Open {
            library: name.clone(),
            message: e.to_string(),
        })?;
        let handle = lib.into_raw();
        // SAFETY: `handle` came from `into_raw` just above and is given back exactly once.
        let lib = unsafe { libloading::os::unix::Library::from_raw(handle) };
        let r = Resolver {
            handle,
            name: &name,
        };
        // SAFETY (all `get` calls): each type is the prototype glfs.h declares for the name.
        unsafe {
            Ok(Library {
                glfs_new: r.get("glfs_new", None)?,
                glfs_set_volfile_server: r.get("glfs_set_volfile_server", None)?,
                glfs_set_logging: r.get("glfs_set_logging", None)?,
                glfs_set_xlator_option: r.get("glfs_set_xlator_option", None)?,
                glfs_init: r.get("glfs_init", None)?,
                glfs_fini: r.get("glfs_fini", None)?,
                glfs_open: r.get("glfs_open", None)?,
                glfs_creat: r.get("glfs_creat", None)?,
                glfs_rename: r.get("glfs_rename", None)?,
                glfs_unlink: r.get("glfs_unlink", None)?,
                glfs_close: r.get("glfs_close", None)?,
                glfs_lstat: r.get("glfs_lstat", None)?,
                glfs_statvfs: r.get("glfs_statvfs", None)?,
                glfs_fstat: r.get("glfs_fstat", None)?,
                glfs_pread: r.get("glfs_pread", Some(V6))?,
                glfs_pwrite: r.get("glfs_pwrite", Some(V6))?,
                glfs_fdatasync: r.get("glfs_fdatasync", Some(V6))?,
                glfs_fsync: r.get("glfs_fsync", Some(V6))?,
                glfs_ftruncate: r.get("glfs_ftruncate", Some(V6))?,
                glfs_discard: r.get("glfs_discard", None)?,
                glfs_fallocate: r.get("glfs_fallocate", None)?,
                glfs_zerofill: r.get("glfs_zerofill", None)?,
                glfs_lseek: r.get("glfs_lseek", None)?,
                glfs_copy_file_range: r.get("glfs_copy_file_range", Some(V6))?,
                glfs_pread_async: r.get("glfs_pread_async", Some(V6))?,
                glfs_pwrite_async: r.get("glfs_pwrite_async", Some(V6))?,
                glfs_pwritev_async: r.get("glfs_pwritev_async", Some(V6))?,
                glfs_fdatasync_async: r.get("glfs_fdatasync_async", Some(V6))?,
                glfs_fsync_async: r.get("glfs_fsync_async", Some(V6))?,
                glfs_discard_async: r.get("glfs_discard_async", Some(V6))?,
                glfs_zerofill_async: r.get("glfs_zerofill_async", Some(V6))?,
                glfs_setfsuid: r.get("glfs_setfsuid", None)?,
                glfs_setfsgid: r.get("glfs_setfsgid", None)?,
                glfs_setfsgroups: r.get("glfs_setfsgroups", None)?,
                glfs_posix_lock: r.get("glfs_posix_lock", None)?,
                glfs_file_lock: r.get("glfs_file_lock", None)?,
                glfs_fd_set_lkowner: r.get("glfs_fd_set_lkowner", None)?,
                glfs_fgetxattr: r.get("glfs_fgetxattr", None)?,
                glfs_getxattr: r.get("glfs_getxattr", None)?,
                name,
                _lib: lib,
            })
        }
    }

    /// The path or name the library was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }
}

struct Resolver<'a> {
    handle: *mut c_void,
    name: &'a str,
}

impl Resolver<'_> {
    /// Resolves `symbol`: exactly at `version` when given (no fallback to another version,
    /// whose prototype may differ), otherwise at the library's default version.
    ///
    /// # Safety
    /// `T` must be a function pointer type matching the symbol's C prototype.
    unsafe fn get<T: Copy>(
        &self,
        symbol: &'static str,
        version: Option<&str>,
    ) -> Result<T, LoadError> {
        assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
        let csym = CString::new(symbol).expect("symbol names have no NUL");
        libc::dlerror(); // clear any stale error
        let ptr = match version {
            Some(version) => {
                let cver = CString::new(version).expect("versions have no NUL");
                let ptr = libc::dlvsym(self.handle, csym.as_ptr(), cver.as_ptr());
                if ptr.is_null() {
                    return Err(LoadError::Symbol {
                        library: self.name.to_string(),
                        symbol,
                        message: format!(
                            "version {version} not found (libgfapi older than 6.0 is not supported)"
                        ),
                    });
                }
                ptr
            }
            None => libc::dlsym(self.handle, csym.as_ptr()),
        };
        if ptr.is_null() {
            let err = libc::dlerror();
            let message = if err.is_null() {
                "symbol resolves to NULL".to_string()
            } else {
                std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned()
            };
            return Err(LoadError::Symbol {
                library: self.name.to_string(),
                symbol,
                message,
            });
        }
        Ok(std::mem::transmute_copy::<*mut c_void, T>(&ptr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glfs_stat_matches_the_c_layout_on_lp64() {
        // 3 u64 + 4 timespec (16 each) + ino, size, blocks (8 each) + 4 u32 + blksize (8)
        // + nlink (8) + uid, gid, mode (4 each) + 4 bytes of tail padding.
        if cfg!(all(
            target_os = "linux",
            target_pointer_width = "64",
            target_arch = "x86_64"
        )) {
            assert_eq!(
                std::mem::size_of::<glfs_stat>(),
                24 + 64 + 24 + 16 + 16 + 12 + 4
            );
        }
    }

    #[test]
    fn missing_library_error_names_the_path_and_the_loader_message() {
        let err = Library::load(Some(Path::new("/nonexistent/libgfapi.so.0"))).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot load /nonexistent/libgfapi.so.0: "),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
    }

    #[test]
    fn library_without_gfapi_symbols_names_the_first_missing_symbol() {
        // libc is loadable everywhere and exports no glfs_* function.
        let err = Library::load(Some(Path::new("libc.so.6"))).unwrap_err();
        match &err {
            LoadError::Symbol {
                library, symbol, ..
            } => {
                assert_eq!(library, "libc.so.6");
                assert_eq!(*symbol, "glfs_new");
            }
            other => panic!("expected a symbol error, got {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("libc.so.6 has no symbol glfs_new: "),
            "{err}"
        );
    }

    #[test]
    fn a_versioned_lookup_never_falls_back_to_another_version() {
        // libc exports `malloc` at GLIBC_2.2.5, never at GFAPI_6.0: a pre-6 libgfapi is the
        // same case (glfs_pread exists, but not at GFAPI_6.0) and must be refused, not bound.
        let handle = unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW) };
        assert!(!handle.is_null());
        let r = Resolver {
            handle,
            name: "libc.so.6",
        };
        let unversioned: Result<unsafe extern "C" fn(size_t) -> *mut c_void, _> =
            unsafe { r.get("malloc", None) };
        assert!(unversioned.is_ok());
        let at_v6: Result<unsafe extern "C" fn(size_t) -> *mut c_void, _> =
            unsafe { r.get("malloc", Some(V6)) };
        let err = at_v6.unwrap_err();
        assert_eq!(
            err.to_string(),
            "libc.so.6 has no symbol malloc: version GFAPI_6.0 not found \
             (libgfapi older than 6.0 is not supported)"
        );
    }
}

/// Needs the real libgfapi (Debian package libgfapi0); run with `--ignored` where installed.
#[cfg(test)]
mod real {
    use super::*;

    // Named live_* so that `cargo xtask test-gluster` (which installs Gluster) runs it.
    #[test]
    #[ignore = "needs the real libgfapi.so.0 installed: cargo xtask test-gluster"]
    fn live_real_libgfapi_resolves_every_symbol_at_gfapi_6() {
        let lib = Library::load(None).expect("libgfapi.so.0 is installed");
        assert_eq!(lib.name(), "libgfapi.so.0");
        // The 6.0 pread must be the one bound, not the 3.4 one: compare with dlvsym.
        let handle = unsafe { libc::dlopen(c"libgfapi.so.0".as_ptr(), libc::RTLD_NOW) };
        let v6 = unsafe { libc::dlvsym(handle, c"glfs_pread".as_ptr(), c"GFAPI_6.0".as_ptr()) };
        assert!(!v6.is_null());
        assert_eq!(lib.glfs_pread as usize, v6 as usize);
        let v34 = unsafe { libc::dlvsym(handle, c"glfs_pread".as_ptr(), c"GFAPI_3.4.0".as_ptr()) };
        assert_ne!(lib.glfs_pread as usize, v34 as usize);
    }
}
