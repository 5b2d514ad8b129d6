//! The pre-6.0 variants gfapi 10 still exports under their old, non-default versions
//! (`glfs_pread@GFAPI_3.4.0` ...), for binaries built against gfapi < 6: the same
//! operations without the `prestat`/`poststat` arguments, and with the three-argument
//! completion callback `(fd, ret, data)`.
//!
//! Each variant is a Rust function `gfapi_fake_compat_<name>` (made local by the version
//! script) reached through an assembler trampoline that carries the old version with
//! `.symver` (a version script alone can give a name only one version).

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{self, glfs_fd_t, glfs_stat};
use libc::{c_int, c_void, iovec, off_t, size_t, ssize_t};
use std::ptr::null_mut;

/// `glfs_io_cbk` of gfapi < 6.
#[allow(non_camel_case_types)]
pub type glfs_io_cbk34 =
    Option<unsafe extern "C" fn(fd: *mut glfs_fd_t, ret: ssize_t, data: *mut c_void)>;

macro_rules! symver {
    ($($name:literal @ $ver:literal),* $(,)?) => {
        #[cfg(all(target_arch = "x86_64", not(test)))]
        std::arch::global_asm!($(
            concat!(
                ".text\n",
                ".p2align 4\n",
                ".globl gfapi_fake_tramp_", $name, "\n",
                ".type gfapi_fake_tramp_", $name, ",@function\n",
                "gfapi_fake_tramp_", $name, ":\n",
                "    jmp gfapi_fake_compat_", $name, "@PLT\n",
                ".size gfapi_fake_tramp_", $name, ",.-gfapi_fake_tramp_", $name, "\n",
                ".symver gfapi_fake_tramp_", $name, ",", $name, "@", $ver, "\n",
            )
        ),*);
    };
}

symver!(
    "glfs_pread" @ "GFAPI_3.4.0",
    "glfs_pwrite" @ "GFAPI_3.4.0",
    "glfs_fsync" @ "GFAPI_3.4.0",
    "glfs_fdatasync" @ "GFAPI_3.4.0",
    "glfs_ftruncate" @ "GFAPI_3.4.0",
    "glfs_read_async" @ "GFAPI_3.4.0",
    "glfs_write_async" @ "GFAPI_3.4.0",
    "glfs_readv_async" @ "GFAPI_3.4.0",
    "glfs_writev_async" @ "GFAPI_3.4.0",
    "glfs_pread_async" @ "GFAPI_3.4.0",
    "glfs_pwrite_async" @ "GFAPI_3.4.0",
    "glfs_preadv_async" @ "GFAPI_3.4.0",
    "glfs_pwritev_async" @ "GFAPI_3.4.0",
    "glfs_fsync_async" @ "GFAPI_3.4.0",
    "glfs_fdatasync_async" @ "GFAPI_3.4.0",
    "glfs_ftruncate_async" @ "GFAPI_3.4.0",
    "glfs_discard_async" @ "GFAPI_3.5.0",
    "glfs_zerofill_async" @ "GFAPI_3.5.0",
    "glfs_h_lookupat" @ "GFAPI_3.4.2",
    "glfs_h_poll_upcall" @ "GFAPI_3.7.0",
    "glfs_realpath" @ "GFAPI_3.4.0",
);

// ---------------------------------------------------------------------------------------
// synchronous

/// glfs_pread@GFAPI_3.4.0
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_compat_glfs_pread(
    fd: *mut glfs_fd_t,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
    flags: c_int,
) -> ssize_t {
    ffi::glfs_pread(fd, buf, count, offset, flags, null_mut())
}

/// glfs_pwrite@GFAPI_3.4.0
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_compat_glfs_pwrite(
    fd: *mut glfs_fd_t,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
    flags: c_int,
) -> ssize_t {
    ffi::glfs_pwrite(fd, buf, count, offset, flags, null_mut(), null_mut())
}

/// glfs_fsync@GFAPI_3.4.0
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_compat_glfs_fsync(fd: *mut glfs_fd_t) -> c_int {
    ffi::glfs_fsync(fd, null_mut(), null_mut())
}

/// glfs_fdatasync@GFAPI_3.4.0
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_compat_glfs_fdatasync(fd: *mut glfs_fd_t) -> c_int {
    ffi::glfs_fdatasync(fd, null_mut(), null_mut())
}

/// glfs_ftruncate@GFAPI_3.4.0
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_compat_glfs_ftruncate(
    fd: *mut glfs_fd_t,
    length: off_t,
) -> c_int {
    ffi::glfs_ftruncate(fd, length, null_mut(), null_mut())
}

// ---------------------------------------------------------------------------------------
// asynchronous: the old callback rides in a box passed as the new callback's data

struct OldCb {
    cb: unsafe extern "C" fn(*mut glfs_fd_t, ssize_t, *mut c_void),
    data: *mut c_void,
}

unsafe extern "C" fn call_old(
    fd: *mut glfs_fd_t,
    ret: ssize_t,
    _pre: *mut glfs_stat,
    _post: *mut glfs_stat,
    data: *mut c_void,
) {
    // SAFETY: `data` is the box made by `with_old_cb`, completed exactly once.
    let old = Box::from_raw(data as *mut OldCb);
    (old.cb)(fd, ret, old.data);
}

/// Submits with a new-style callback that calls the old one; the box is reclaimed when
/// the submission fails synchronously. A NULL old callback is passed on as NULL (EINVAL).
unsafe fn with_old_cb(
    cb: glfs_io_cbk34,
    data: *mut c_void,
    submit: impl FnOnce(ffi::glfs_io_cbk, *mut c_void) -> c_int,
) -> c_int {
    let Some(cb) = cb else {
        return submit(None, data);
    };
    let boxed = Box::into_raw(Box::new(OldCb { cb, data })) as *mut c_void;
    let r = submit(Some(call_old), boxed);
    if r != 0 {
        drop(Box::from_raw(boxed as *mut OldCb));
    }
    r
}

macro_rules! old_async {
    ($(#[$doc:meta])* $compat:ident => $new:ident ( $($arg:ident : $ty:ty),* )) => {
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $compat(
            $($arg: $ty,)*
            fn_: glfs_io_cbk34,
            data: *mut c_void,
        ) -> c_int {
            with_old_cb(fn_, data, |cb, d| ffi::$new($($arg,)* cb, d))
        }
    };
}

old_async!(
    /// glfs_read_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_read_async => glfs_read_async(fd: *mut glfs_fd_t, buf: *mut c_void, count: size_t, flags: c_int)
);
old_async!(
    /// glfs_write_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_write_async => glfs_write_async(fd: *mut glfs_fd_t, buf: *const c_void, count: size_t, flags: c_int)
);
old_async!(
    /// glfs_readv_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_readv_async => glfs_readv_async(fd: *mut glfs_fd_t, iov: *const iovec, count: c_int, flags: c_int)
);
old_async!(
    /// glfs_writev_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_writev_async => glfs_writev_async(fd: *mut glfs_fd_t, iov: *const iovec, count: c_int, flags: c_int)
);
old_async!(
    /// glfs_pread_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_pread_async => glfs_pread_async(fd: *mut glfs_fd_t, buf: *mut c_void, count: size_t, offset: off_t, flags: c_int)
);
old_async!(
    /// glfs_pwrite_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_pwrite_async => glfs_pwrite_async(fd: *mut glfs_fd_t, buf: *const c_void, count: c_int, offset: off_t, flags: c_int)
);
old_async!(
    /// glfs_preadv_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_preadv_async => glfs_preadv_async(fd: *mut glfs_fd_t, iov: *const iovec, count: c_int, offset: off_t, flags: c_int)
);
old_async!(
    /// glfs_pwritev_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_pwritev_async => glfs_pwritev_async(fd: *mut glfs_fd_t, iov: *const iovec, count: c_int, offset: off_t, flags: c_int)
);
old_async!(
    /// glfs_fsync_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_fsync_async => glfs_fsync_async(fd: *mut glfs_fd_t)
);
old_async!(
    /// glfs_fdatasync_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_fdatasync_async => glfs_fdatasync_async(fd: *mut glfs_fd_t)
);
old_async!(
    /// glfs_ftruncate_async@GFAPI_3.4.0
    gfapi_fake_compat_glfs_ftruncate_async => glfs_ftruncate_async(fd: *mut glfs_fd_t, length: off_t)
);
old_async!(
    /// glfs_discard_async@GFAPI_3.5.0
    gfapi_fake_compat_glfs_discard_async => glfs_discard_async(fd: *mut glfs_fd_t, offset: off_t, len: size_t)
);
old_async!(
    /// glfs_zerofill_async@GFAPI_3.5.0
    gfapi_fake_compat_glfs_zerofill_async => glfs_zerofill_async(fd: *mut glfs_fd_t, offset: off_t, len: off_t)
);

/// glfs_realpath@GFAPI_3.4.0: the same as the current version.
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_compat_glfs_realpath(
    fs: *mut crate::ffi::glfs_t,
    path: *const libc::c_char,
    resolved_path: *mut libc::c_char,
) -> *mut libc::c_char {
    crate::attrs::glfs_realpath(fs, path, resolved_path)
}
