//! `glfs_copy_file_range` (GFAPI_6.0): a server-side copy between two open files of one
//! mount, done on the backing files with copy_file_range(2), as the brick's posix
//! translator does.
//!
//! Semantics (glfs.h and copy_file_range(2)):
//! - both fds are open regular files of the same `glfs_t` (EXDEV across mounts, EISDIR
//!   for a directory fd, EBADF for an unknown or closed one);
//! - `off_in`/`off_out` given: the copy starts there and the pointed-to offset advances
//!   by the bytes copied, the fd's offset is untouched; NULL: the fd's own offset
//!   (glfs_lseek) is used and advanced;
//! - the return value is the number of bytes copied, 0 at or past the source's end of
//!   file, possibly fewer than `len`; flags other than 0, overlapping ranges of one file
//!   and a negative offset are EINVAL (the kernel's checks, passed through);
//! - `statbuf` receives the source's attributes, `prestat`/`poststat` the destination's
//!   before and after.
//!
//! Faults: the rules file's op `copy_file_range` is checked against the source (its
//! path, offset and length) and then the destination; `errno`, `delay_ms`, `hang` and
//! `short` (copy at most that many bytes) apply.

use crate::ffi::{fd_of, fstat_raw, glfs_fd_t, glfs_stat, guard, put_stat, ssize_ret};
use crate::fs::{lock, FdInner, FdKind, Res};
use libc::{c_uint, size_t, ssize_t};
use std::sync::Arc;

/// Where a side of the copy starts: the caller's offset or the fd's own.
fn start(fd: &FdInner, off: *mut i64) -> i64 {
    if off.is_null() {
        *lock(&fd.pos)
    } else {
        // SAFETY: a non-NULL offset pointer is the caller's readable off64_t.
        unsafe { *off }
    }
}

fn regular(fd: &FdInner) -> Res<()> {
    match fd.kind {
        FdKind::File(_) => Ok(()),
        FdKind::Dir(_) => Err(libc::EISDIR),
    }
}

struct Copied {
    ret: usize,
    src: glfs_stat,
    pre: glfs_stat,
    post: glfs_stat,
}

/// The copy itself, given the two fds and start offsets.
fn copy(
    input: &FdInner,
    output: &FdInner,
    pos_in: i64,
    pos_out: i64,
    len: usize,
    flags: c_uint,
) -> Res<Copied> {
    regular(input)?;
    regular(output)?;
    if !Arc::ptr_eq(&input.glfs, &output.glfs) {
        return Err(libc::EXDEV);
    }
    let a_in = input.admit("copy_file_range", u64::try_from(pos_in).ok(), len as u64)?;
    let a_out = output.admit("copy_file_range", u64::try_from(pos_out).ok(), len as u64)?;
    let n = a_out.clamp(a_in.clamp(len));
    crate::locks::check_mandatory(input, pos_in, n, false)?;
    crate::locks::check_mandatory(output, pos_out, n, true)?;
    crate::upcall::before_read(input);
    crate::upcall::before_change(output);
    let pre = fstat_raw(output.raw())?;
    let (mut oi, mut oo) = (pos_in, pos_out);
    // SAFETY: copy_file_range(2) between two descriptors we own, with our own offsets.
    let r = unsafe { libc::copy_file_range(input.raw(), &mut oi, output.raw(), &mut oo, n, flags) };
    let ret = crate::ffi::cvt(r)? as usize;
    if ret > 0 {
        crate::upcall::changed_fd(output, crate::upcall::UP_WRITE);
    }
    Ok(Copied {
        ret,
        src: fstat_raw(input.raw())?,
        pre,
        post: fstat_raw(output.raw())?,
    })
}

/// glfs_copy_file_range (GFAPI_6.0); see the module documentation.
///
/// # Safety
/// `off_in`/`off_out` are NULL or point to writable `off64_t`s; the stat pointers are NULL
/// or point to writable `struct glfs_stat`s.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn glfs_copy_file_range(
    glfd_in: *mut glfs_fd_t,
    off_in: *mut i64,
    glfd_out: *mut glfs_fd_t,
    off_out: *mut i64,
    len: size_t,
    flags: c_uint,
    statbuf: *mut glfs_stat,
    prestat: *mut glfs_stat,
    poststat: *mut glfs_stat,
) -> ssize_t {
    guard(-1, || {
        ssize_ret((|| {
            let input = fd_of(glfd_in)?;
            let output = fd_of(glfd_out)?;
            let (pos_in, pos_out) = (start(&input, off_in), start(&output, off_out));
            let c = copy(&input, &output, pos_in, pos_out, len, flags)?;
            let n = c.ret as i64;
            for (fd, off, pos) in [(&input, off_in, pos_in), (&output, off_out, pos_out)] {
                if off.is_null() {
                    *lock(&fd.pos) = pos + n;
                } else {
                    // SAFETY: see the function's contract.
                    unsafe { *off = pos + n };
                }
            }
            // SAFETY: see the function's contract.
            unsafe {
                put_stat(statbuf, Some(c.src));
                put_stat(prestat, Some(c.pre));
                put_stat(poststat, Some(c.post));
            }
            Ok(c.ret as ssize_t)
        })())
    })
}
