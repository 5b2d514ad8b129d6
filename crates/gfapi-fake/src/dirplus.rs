//! readdirplus and xreaddirplus: directory entries with their attributes (not
//! following symlinks, as Gluster's readdirp) and, for xreaddirplus, their objects.

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{fd_of, glfs_fd_t, guard, int_call, next_entry, set_errno};
use crate::fs::{lock, FdKind, Res};
use crate::handles::{glfs_object, new_object, objects};
use libc::{c_int, dirent};
use std::ffi::CStr;

/// lstat of the entry `e` of the directory fd (`..` at the volume root is the root).
unsafe fn entry_stat(fd: *mut glfs_fd_t, e: *const dirent, out: *mut libc::stat) -> Res<()> {
    let f = fd_of(fd)?;
    let FdKind::Dir(d) = &f.kind else {
        return Err(libc::ENOTDIR);
    };
    let name = CStr::from_ptr((*e).d_name.as_ptr());
    let name = if name.to_bytes() == b".." && f.path == "/" {
        c"."
    } else {
        name
    };
    let dirfd = libc::dirfd(*lock(&d.dir));
    if libc::fstatat(dirfd, name.as_ptr(), out, libc::AT_SYMLINK_NOFOLLOW) < 0 {
        return Err(crate::ffi::last_errno());
    }
    Ok(())
}

/// glfs_readdirplus_r: the next entry into `dirent` (`*result` NULL at the end) and its
/// attributes into `stat` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn glfs_readdirplus_r(
    fd: *mut glfs_fd_t,
    stat: *mut libc::stat,
    ext: *mut dirent,
    result: *mut *mut dirent,
) -> c_int {
    int_call(|| {
        if result.is_null() {
            return Err(libc::EINVAL);
        }
        let e = next_entry(fd, Some(ext))?;
        if !e.is_null() && !stat.is_null() {
            entry_stat(fd, e, stat)?;
        }
        *result = e;
        Ok(0)
    })
}

/// glfs_readdirplus (GFAPI_3.5.0): NULL at the end (errno untouched) or on error.
#[no_mangle]
pub unsafe extern "C" fn glfs_readdirplus(
    fd: *mut glfs_fd_t,
    stat: *mut libc::stat,
) -> *mut dirent {
    guard(std::ptr::null_mut(), || {
        let r = next_entry(fd, None).and_then(|e| {
            if !e.is_null() && !stat.is_null() {
                entry_stat(fd, e, stat)?;
            }
            Ok(e)
        });
        match r {
            Ok(e) => e,
            Err(e) => {
                set_errno(e);
                std::ptr::null_mut()
            }
        }
    })
}

/// `struct glfs_xreaddirp_stat`.
pub struct XStat {
    flags: u32,
    stat: libc::stat,
    object: usize,
}

impl Drop for XStat {
    fn drop(&mut self) {
        if self.object != 0 {
            objects().remove(self.object);
        }
    }
}

const XREADDIRP_STAT: u32 = 0x1;
const XREADDIRP_HANDLE: u32 = 0x2;

/// glfs_xreaddirplus_r (GFAPI_3.11.0): the next entry into `ext` (`*res`, NULL and 0 at
/// the end), with what `flags` asks (GFAPI_XREADDIRP_STAT, _HANDLE) in `*xstat_p`
/// (release with glfs_free); returns the flags it filled.
#[no_mangle]
pub unsafe extern "C" fn glfs_xreaddirplus_r(
    glfd: *mut glfs_fd_t,
    flags: u32,
    xstat_p: *mut *mut XStat,
    ext: *mut dirent,
    res: *mut *mut dirent,
) -> c_int {
    int_call(|| {
        if res.is_null() || xstat_p.is_null() {
            return Err(libc::EINVAL);
        }
        *xstat_p = std::ptr::null_mut();
        let out = if ext.is_null() { None } else { Some(ext) };
        let e = next_entry(glfd, out)?;
        *res = e;
        if e.is_null() {
            return Ok(0);
        }
        let want = flags & (XREADDIRP_STAT | XREADDIRP_HANDLE);
        if want == 0 {
            return Ok(0);
        }
        let mut x = XStat {
            flags: 0,
            // SAFETY: zeroed stat is a valid value.
            stat: std::mem::zeroed(),
            object: 0,
        };
        entry_stat(glfd, e, &mut x.stat)?;
        x.flags |= XREADDIRP_STAT & want;
        let name = CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy();
        // Gluster 10.3 gives "." and ".." a stat but no object.
        if want & XREADDIRP_HANDLE != 0 && name != "." && name != ".." {
            let f = fd_of(glfd)?;
            let vol = f.glfs.vol_dir().ok_or(libc::EBADF)?;
            let rel = format!("{}/{name}", f.path.trim_end_matches('/'));
            let g = crate::gfid::of_path(&vol, &vol.join(rel.trim_start_matches('/')))?;
            crate::gfid::remember(&vol, &g, &rel);
            x.object = new_object(f.fs_handle, f.glfs.clone(), g);
            x.flags |= XREADDIRP_HANDLE;
        }
        let filled = x.flags as c_int;
        *xstat_p = crate::misc::give(Box::new(x));
        Ok(filled)
    })
}

/// glfs_xreaddirplus_get_stat (GFAPI_3.11.0): the entry's attributes, or NULL when not
/// asked for; owned by `xstat`.
#[no_mangle]
pub unsafe extern "C" fn glfs_xreaddirplus_get_stat(xstat: *mut XStat) -> *mut libc::stat {
    if xstat.is_null() || !crate::misc::is_given(xstat as usize) {
        set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    if (*xstat).flags & XREADDIRP_STAT == 0 {
        return std::ptr::null_mut();
    }
    &mut (*xstat).stat
}

/// glfs_xreaddirplus_get_object (GFAPI_3.11.0): the entry's object, or NULL when not
/// asked for; owned by `xstat` (released with it).
#[no_mangle]
pub unsafe extern "C" fn glfs_xreaddirplus_get_object(xstat: *mut XStat) -> *mut glfs_object {
    if xstat.is_null() || !crate::misc::is_given(xstat as usize) {
        set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    (*xstat).object as *mut glfs_object
}
