//! The handle API (`glfs_h_*`, glfs-handles.h): objects named by GFID rather than path.
//! A `glfs_object*` is a registry token (never dereferenced) holding the instance and the
//! GFID; the GFID comes from the backing inode (see [`crate::gfid`]), so a handle
//! extracted in one process opens the same file in another, and still does after a
//! rename. A handle whose file is gone gives ESTALE, as on a one-brick Gluster volume
//! (ENOENT when the fake claims a replicated volume, as replica 3 answers).
//!
//! Fault rules see the path operation each call amounts to (`lookup`, `creat`, `mkdir`,
//! `stat`, `read`, `write`, ...) with the object's current volume path.

#![allow(clippy::missing_safety_doc)]

use crate::attrs::{apply_setattr, Target};
use crate::ffi::{
    cvt, glfs_fd_t, glfs_stat, glfs_t, guard, int_call, mount_of, ptr_call, ssize_ret, str_arg,
    Timespec,
};
use crate::fs::{cpath, FdInner, Glfs, Registry, Res};
use crate::gfid::{self, Gfid};
use libc::{c_char, c_int, c_uchar, c_void, dev_t, mode_t, off_t, size_t, ssize_t};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// GFAPI_HANDLE_LENGTH
pub const HANDLE_LENGTH: usize = 16;

/// Opaque `struct glfs_object`.
#[repr(C)]
pub struct glfs_object {
    _private: [u8; 0],
}

/// What a `glfs_object*` stands for.
#[derive(Debug)]
pub struct Object {
    /// The instance's `glfs_t*` token.
    pub fs: usize,
    /// The instance.
    pub glfs: Arc<Glfs>,
    /// The inode's GFID.
    pub gfid: Gfid,
}

/// All live objects.
pub fn objects() -> &'static Registry<Object> {
    static R: OnceLock<Registry<Object>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

/// Registers an object for `gfid` on `fs` and returns its token.
pub(crate) fn new_object(fs: usize, glfs: Arc<Glfs>, gfid: Gfid) -> usize {
    crate::upcall::hold(fs, &gfid);
    objects().insert(Arc::new(Object { fs, glfs, gfid }))
}

fn object_of(o: *mut glfs_object) -> Res<Arc<Object>> {
    if o.is_null() {
        return Err(libc::EINVAL);
    }
    objects().get(o as usize).ok_or(libc::EINVAL)
}

/// The volume path of an object (ESTALE when its inode is gone).
fn rel_of(obj: &Object) -> Res<(PathBuf, String)> {
    let vol = obj.glfs.vol_dir().ok_or(libc::EIO)?;
    let rel = find(&obj.glfs, &vol, &obj.gfid)?;
    Ok((vol, rel))
}

/// The volume path of the inode `g`. A GFID whose file is gone is ESTALE on a one-brick
/// volume when the client knew the inode (Gluster 10.3 one brick), ENOENT when it never
/// did (a made-up handle) and ENOENT on a replicated volume (the replicate translator's
/// answer when every brick lacks it, seen on replica 3).
pub(crate) fn find(m: &Glfs, vol: &Path, g: &Gfid) -> Res<String> {
    gfid::find(vol, g).map_err(|e| match e {
        libc::ESTALE if m.replica_count() > 1 || !gfid::known(vol, g) => libc::ENOENT,
        e => e,
    })
}

/// The mount and the volume path of `name` under `parent` (NULL parent: the root).
unsafe fn child(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    name: *const c_char,
) -> Res<(Arc<Glfs>, String)> {
    let m = mount_of(fs)?;
    let name = str_arg(name)?;
    if name.is_empty() {
        return Err(libc::EINVAL);
    }
    let base = if parent.is_null() {
        "/".to_string()
    } else {
        let p = object_of(parent)?;
        rel_of(&p)?.1
    };
    Ok((m, format!("{}/{}", base.trim_end_matches('/'), name)))
}

/// Admits `op` on the volume path `rel`; returns the host path.
fn admit(m: &Glfs, op: &str, rel: &str) -> Res<PathBuf> {
    Ok(m.admit_path(op, rel)?.0)
}

unsafe fn fill_stat(host: &std::path::Path, follow: bool, out: *mut libc::stat) -> Res<()> {
    if out.is_null() {
        return Ok(());
    }
    let c = cpath(host)?;
    let r = if follow {
        libc::stat(c.as_ptr(), out)
    } else {
        libc::lstat(c.as_ptr(), out)
    };
    cvt(r as isize).map(|_| ())
}

/// An object for the file at `host` (not following a final symlink).
fn object_at(fs: *mut glfs_t, m: &Arc<Glfs>, host: &Path, rel: &str) -> Res<usize> {
    let vol = m.vol_dir().ok_or(libc::EIO)?;
    let g = gfid::of_path(&vol, host)?;
    gfid::remember(&vol, &g, rel);
    Ok(new_object(fs as usize, m.clone(), g))
}

/// glfs_h_lookupat (GFAPI_3.7.4): `path` below `parent` (NULL: the root); `follow`
/// resolves a final symlink.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_lookupat(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    path: *const c_char,
    stat: *mut libc::stat,
    follow: c_int,
) -> *mut glfs_object {
    ptr_call(|| {
        let (m, rel) = child(fs, parent, path)?;
        admit(&m, "lookup", &rel)?;
        let vol = m.vol_dir().ok_or(libc::EIO)?;
        let rel = if follow != 0 {
            crate::attrs::resolve_in_volume(&vol, &rel)?
        } else {
            crate::attrs::resolve_parent_in_volume(&vol, &rel)?
        };
        let host = vol.join(rel.trim_start_matches('/'));
        fill_stat(&host, false, stat)?;
        if stat.is_null() {
            std::fs::symlink_metadata(&host).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        }
        object_at(fs, &m, &host, &rel)
    })
}

/// glfs_h_lookupat@GFAPI_3.4.2: without `follow` (a final symlink is not resolved).
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_compat_glfs_h_lookupat(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    path: *const c_char,
    stat: *mut libc::stat,
) -> *mut glfs_object {
    glfs_h_lookupat(fs, parent, path, stat, 0)
}

unsafe fn create_with(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    name: *const c_char,
    op: &str,
    sb: *mut libc::stat,
    make: impl FnOnce(&std::ffi::CStr) -> c_int,
) -> Res<usize> {
    let (m, rel) = child(fs, parent, name)?;
    let host = admit(&m, op, &rel)?;
    let c = cpath(&host)?;
    cvt(make(&c) as isize)?;
    created(fs, &m, &host, &rel, sb)
}

/// The end of every create: the new inode's stat into `sb`, the change of its parent
/// reported, its new object.
unsafe fn created(
    fs: *mut glfs_t,
    m: &Arc<Glfs>,
    host: &Path,
    rel: &str,
    sb: *mut libc::stat,
) -> Res<usize> {
    fill_stat(host, false, sb)?;
    crate::upcall::changed_parent(m, rel);
    object_at(fs, m, host, rel)
}

/// glfs_h_creat: creates a regular file (O_EXCL honoured) and returns its object.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_creat(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
    sb: *mut libc::stat,
) -> *mut glfs_object {
    ptr_call(|| {
        create_with(fs, parent, path, "creat", sb, |c| {
            let fl = (flags & libc::O_EXCL) | libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC;
            let fd = libc::open(c.as_ptr(), fl, mode as libc::c_uint);
            if fd >= 0 {
                libc::close(fd);
                0
            } else {
                -1
            }
        })
    })
}

/// glfs_h_creat_open (GFAPI_6.6): glfs_h_creat that also returns an open fd.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_creat_open(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
    sb: *mut libc::stat,
    out_fd: *mut *mut glfs_fd_t,
) -> *mut glfs_object {
    ptr_call(|| {
        if out_fd.is_null() {
            return Err(libc::EINVAL);
        }
        let (m, rel) = child(fs, parent, path)?;
        let fd = crate::ffi::open_impl(fs, &rel, flags, Some(mode))?;
        let host = m
            .vol_dir()
            .ok_or(libc::EIO)?
            .join(rel.trim_start_matches('/'));
        let object = created(fs, &m, &host, &rel, sb)?;
        *out_fd = fd as *mut glfs_fd_t;
        Ok(object)
    })
}

/// glfs_h_mkdir
#[no_mangle]
pub unsafe extern "C" fn glfs_h_mkdir(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    path: *const c_char,
    mode: mode_t,
    sb: *mut libc::stat,
) -> *mut glfs_object {
    ptr_call(|| {
        create_with(fs, parent, path, "mkdir", sb, |c| {
            libc::mkdir(c.as_ptr(), mode)
        })
    })
}

/// glfs_h_mknod
#[no_mangle]
pub unsafe extern "C" fn glfs_h_mknod(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    path: *const c_char,
    mode: mode_t,
    dev: dev_t,
    sb: *mut libc::stat,
) -> *mut glfs_object {
    ptr_call(|| {
        create_with(fs, parent, path, "mknod", sb, |c| {
            libc::mknod(c.as_ptr(), mode, dev)
        })
    })
}

/// glfs_h_symlink: `name` under `parent` holding `data`.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_symlink(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    name: *const c_char,
    data: *const c_char,
    stat: *mut libc::stat,
) -> *mut glfs_object {
    ptr_call(|| {
        let target = std::ffi::CString::new(str_arg(data)?).map_err(|_| libc::EINVAL)?;
        create_with(fs, parent, name, "symlink", stat, |c| {
            libc::symlink(target.as_ptr(), c.as_ptr())
        })
    })
}

/// glfs_h_unlink: removes a file, or an empty directory.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_unlink(
    fs: *mut glfs_t,
    parent: *mut glfs_object,
    path: *const c_char,
) -> c_int {
    int_call(|| {
        let (m, rel) = child(fs, parent, path)?;
        let host = admit(&m, "unlink", &rel)?;
        let c = cpath(&host)?;
        let r = if crate::ffi::lstat_mode(&c) == Some(libc::S_IFDIR) {
            libc::rmdir(c.as_ptr())
        } else {
            libc::unlink(c.as_ptr())
        };
        cvt(r as isize)?;
        crate::upcall::changed_parent(&m, &rel);
        Ok(0)
    })
}

/// glfs_h_close: releases the object (EINVAL for an unknown one).
#[no_mangle]
pub unsafe extern "C" fn glfs_h_close(object: *mut glfs_object) -> c_int {
    int_call(|| {
        if object.is_null() {
            return Err(libc::EINVAL);
        }
        objects().remove(object as usize).ok_or(libc::EINVAL)?;
        Ok(0)
    })
}

/// glfs_object_copy (GFAPI_3.11.0): a second object for the same inode.
#[no_mangle]
pub unsafe extern "C" fn glfs_object_copy(src: *mut glfs_object) -> *mut glfs_object {
    ptr_call(|| {
        let o = object_of(src)?;
        Ok(new_object(o.fs, o.glfs.clone(), o.gfid))
    })
}

/// Runs `f` with the object's mount and host path after admitting `op` on it.
unsafe fn on_object<T>(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    op: &str,
    f: impl FnOnce(&Arc<Glfs>, &std::path::Path, &std::ffi::CStr) -> Res<T>,
) -> Res<T> {
    let m = mount_of(fs)?;
    let o = object_of(object)?;
    let (_, rel) = rel_of(&o)?;
    let host = admit(&m, op, &rel)?;
    f(&m, &host, &cpath(&host)?)
}

/// glfs_h_truncate
#[no_mangle]
pub unsafe extern "C" fn glfs_h_truncate(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    offset: off_t,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "truncate", |m, host, c| {
            cvt(libc::truncate(c.as_ptr(), offset) as isize)?;
            crate::upcall::changed_host_of(m, host);
            Ok(0)
        })
    })
}

/// glfs_h_stat
#[no_mangle]
pub unsafe extern "C" fn glfs_h_stat(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    stat: *mut libc::stat,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "stat", |_, host, _| {
            if stat.is_null() {
                return Err(libc::EINVAL);
            }
            fill_stat(host, false, stat).map(|_| 0)
        })
    })
}

/// glfs_h_getattrs: as glfs_h_stat.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_getattrs(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    stat: *mut libc::stat,
) -> c_int {
    glfs_h_stat(fs, object, stat)
}

/// glfs_h_statfs (GFAPI_3.7.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_h_statfs(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    stat: *mut libc::statvfs,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "statvfs", |_, _, c| {
            if stat.is_null() {
                return Err(libc::EINVAL);
            }
            cvt(libc::statvfs(c.as_ptr(), stat) as isize).map(|_| 0)
        })
    })
}

const SET_MODE: c_int = 0x1;
const SET_UID: c_int = 0x2;
const SET_GID: c_int = 0x4;
const SET_SIZE: c_int = 0x8;
const SET_ATIME: c_int = 0x10;
const SET_MTIME: c_int = 0x20;

/// glfs_h_setattrs: the fields of `sb` that `valid` (GFAPI_SET_ATTR_*) names.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_setattrs(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    sb: *mut libc::stat,
    valid: c_int,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "setattr", |m, host, c| {
            let sb = sb.as_ref().ok_or(libc::EINVAL)?;
            let bits = [
                (SET_MODE, 0x2u64),
                (SET_UID, 0x8),
                (SET_GID, 0x10),
                (SET_ATIME, 0x20),
                (SET_MTIME, 0x40),
                (SET_SIZE, 0x200),
            ];
            let mask = bits
                .iter()
                .filter(|(v, _)| valid & v != 0)
                .fold(0, |m, (_, b)| m | b);
            let st = glfs_stat {
                glfs_st_mask: mask,
                glfs_st_mode: sb.st_mode,
                glfs_st_uid: sb.st_uid,
                glfs_st_gid: sb.st_gid,
                glfs_st_size: sb.st_size,
                glfs_st_atime: Timespec {
                    tv_sec: sb.st_atime,
                    tv_nsec: sb.st_atime_nsec,
                },
                glfs_st_mtime: Timespec {
                    tv_sec: sb.st_mtime,
                    tv_nsec: sb.st_mtime_nsec,
                },
                ..Default::default()
            };
            apply_setattr(Target::Path(c, false), &st)?;
            crate::upcall::changed_host_of(m, host);
            Ok(0)
        })
    })
}

/// glfs_h_getxattrs: `name` NULL lists the names (as listxattr).
#[no_mangle]
pub unsafe extern "C" fn glfs_h_getxattrs(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    name: *const c_char,
    value: *mut c_void,
    size: size_t,
) -> c_int {
    guard(-1, || {
        let op = if name.is_null() {
            "listxattr"
        } else {
            "getxattr"
        };
        ssize_ret(on_object(fs, object, op, |m, host, c| {
            if name.is_null() {
                let (v, s) = if size == 0 {
                    (std::ptr::null_mut(), 0)
                } else {
                    (value as *mut c_char, size)
                };
                return cvt(libc::llistxattr(c.as_ptr(), v, s));
            }
            crate::xattr::h_get(m, host, name, value, size)
        })) as c_int
    })
}

/// glfs_h_setxattrs (GFAPI_3.5.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_h_setxattrs(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    name: *const c_char,
    value: *const c_void,
    size: size_t,
    flags: c_int,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "setxattr", |m, host, _| {
            crate::xattr::h_set(m, host, name, value, size, flags)
        })
    })
}

/// glfs_h_removexattrs (GFAPI_3.5.1)
#[no_mangle]
pub unsafe extern "C" fn glfs_h_removexattrs(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    name: *const c_char,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "removexattr", |m, host, _| {
            crate::xattr::h_remove(m, host, name)
        })
    })
}

/// glfs_h_readlink: the link text, not NUL-terminated, cut at `bufsiz`.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_readlink(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    buf: *mut c_char,
    bufsiz: size_t,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "readlink", |_, _, c| {
            if buf.is_null() {
                return Err(libc::EINVAL);
            }
            cvt(libc::readlink(c.as_ptr(), buf, bufsiz)).map(|n| n as c_int)
        })
    })
}

/// glfs_h_link: a new name `name` under `parent` for `linktgt`.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_link(
    fs: *mut glfs_t,
    linktgt: *mut glfs_object,
    parent: *mut glfs_object,
    name: *const c_char,
) -> c_int {
    int_call(|| {
        let (m, new_rel) = child(fs, parent, name)?;
        let new_host = admit(&m, "link", &new_rel)?;
        on_object(fs, linktgt, "link", |m, host, c| {
            if std::fs::symlink_metadata(host).is_ok_and(|md| md.is_dir()) {
                return Err(libc::EISDIR);
            }
            cvt(libc::link(c.as_ptr(), cpath(&new_host)?.as_ptr()) as isize)?;
            crate::upcall::changed_host_of(m, host);
            crate::upcall::changed_parent(m, &new_rel);
            Ok(0)
        })
    })
}

/// glfs_h_rename: `oldname` in `olddir` becomes `newname` in `newdir`.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_rename(
    fs: *mut glfs_t,
    olddir: *mut glfs_object,
    oldname: *const c_char,
    newdir: *mut glfs_object,
    newname: *const c_char,
) -> c_int {
    int_call(|| {
        let (m, old_rel) = child(fs, olddir, oldname)?;
        let (_, new_rel) = child(fs, newdir, newname)?;
        let old = admit(&m, "rename", &old_rel)?;
        let new = admit(&m, "rename", &new_rel)?;
        let vol = m.vol_dir().ok_or(libc::EIO)?;
        let g = gfid::of_path(&vol, &old).ok();
        cvt(libc::rename(cpath(&old)?.as_ptr(), cpath(&new)?.as_ptr()) as isize)?;
        if let Some(g) = g {
            gfid::remember(&vol, &g, &new_rel);
            crate::upcall::changed(&m, &g, crate::upcall::UP_RENAME);
        }
        crate::upcall::changed_parent(&m, &old_rel);
        crate::upcall::changed_parent(&m, &new_rel);
        Ok(0)
    })
}

/// glfs_h_extract_handle: copies the 16-byte handle; returns its length (also when
/// `handle` is NULL); ERANGE when `len` is too short.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_extract_handle(
    object: *mut glfs_object,
    handle: *mut c_uchar,
    len: c_int,
) -> c_int {
    int_call(|| {
        let o = object_of(object)?;
        if handle.is_null() || len == 0 {
            return Ok(HANDLE_LENGTH as c_int);
        }
        if (len as usize) < HANDLE_LENGTH || len < 0 {
            return Err(libc::ERANGE);
        }
        std::ptr::copy_nonoverlapping(o.gfid.as_ptr(), handle, HANDLE_LENGTH);
        Ok(HANDLE_LENGTH as c_int)
    })
}

/// glfs_h_create_from_handle: the object of a handle from glfs_h_extract_handle (any
/// process on the same root); ESTALE when its file is gone (ENOENT on a replicated
/// volume, see [`find`]), EINVAL for a wrong length.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_create_from_handle(
    fs: *mut glfs_t,
    handle: *mut c_uchar,
    len: c_int,
    stat: *mut libc::stat,
) -> *mut glfs_object {
    ptr_call(|| {
        let m = mount_of(fs)?;
        if handle.is_null() || len != HANDLE_LENGTH as c_int {
            return Err(libc::EINVAL);
        }
        let mut g: Gfid = [0; 16];
        std::ptr::copy_nonoverlapping(handle, g.as_mut_ptr(), HANDLE_LENGTH);
        m.admit("lookup", "/", None, 0)?;
        let vol = m.vol_dir().ok_or(libc::EIO)?;
        let rel = find(&m, &vol, &g)?;
        fill_stat(&vol.join(rel.trim_start_matches('/')), false, stat)?;
        Ok(new_object(fs as usize, m, g))
    })
}

/// glfs_h_opendir: a directory stream on the object.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_opendir(
    fs: *mut glfs_t,
    object: *mut glfs_object,
) -> *mut glfs_fd_t {
    ptr_call(|| {
        let o = object_of(object)?;
        let (_, rel) = rel_of(&o)?;
        let c = std::ffi::CString::new(rel).map_err(|_| libc::EINVAL)?;
        let fd = crate::ffi::glfs_opendir(fs, c.as_ptr());
        if fd.is_null() {
            return Err(crate::ffi::last_errno());
        }
        Ok(fd as usize)
    })
}

/// glfs_h_open: an fd on the object (a directory only O_RDONLY, symlinks EINVAL... as
/// glfs_open).
#[no_mangle]
pub unsafe extern "C" fn glfs_h_open(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    flags: c_int,
) -> *mut glfs_fd_t {
    ptr_call(|| {
        let o = object_of(object)?;
        let (vol, rel) = rel_of(&o)?;
        if std::fs::symlink_metadata(vol.join(rel.trim_start_matches('/')))
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(libc::EINVAL);
        }
        crate::ffi::open_impl(fs, &rel, flags, None)
    })
}

/// glfs_h_access (GFAPI_3.6.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_h_access(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    mask: c_int,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "access", |_, _, c| {
            cvt(libc::access(c.as_ptr(), mask) as isize).map(|_| 0)
        })
    })
}

unsafe fn anonymous_io(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
    write: bool,
) -> ssize_t {
    guard(-1, || {
        ssize_ret((|| {
            let m = mount_of(fs)?;
            let o = object_of(object)?;
            let (_, rel) = rel_of(&o)?;
            let op = if write { "write" } else { "read" };
            let (vol, admit) = m.admit(op, &rel, u64::try_from(offset).ok(), count as u64)?;
            let host = vol.join(rel.trim_start_matches('/'));
            let c = cpath(&host)?;
            let flags = if write {
                libc::O_WRONLY
            } else {
                libc::O_RDONLY
            };
            let fd = libc::open(c.as_ptr(), flags | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(crate::ffi::last_errno());
            }
            let n = admit.clamp(count);
            let r = if write {
                libc::pwrite(fd, buf, n, offset)
            } else {
                libc::pread(fd, buf, n, offset)
            };
            let err = crate::ffi::last_errno();
            libc::close(fd);
            if r < 0 {
                return Err(err);
            }
            if write {
                crate::upcall::changed(&m, &o.gfid, crate::upcall::UP_WRITE);
            }
            Ok(r)
        })())
    })
}

/// glfs_h_anonymous_read (GFAPI_3.7.0): reads without an open fd.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_anonymous_read(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    anonymous_io(fs, object, buf as *mut c_void, count, offset, false)
}

/// glfs_h_anonymous_write (GFAPI_3.7.0): writes without an open fd.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_anonymous_write(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    anonymous_io(fs, object, buf as *mut c_void, count, offset, true)
}

// ---------------------------------------------------------------------------------------
// POSIX ACLs through the host's libacl (as Gluster's own implementation uses it)

type AclGetFile = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type AclSetFile = unsafe extern "C" fn(*const c_char, c_int, *mut c_void) -> c_int;

fn libacl() -> Option<(AclGetFile, AclSetFile)> {
    static L: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    let (g, s) = (*L.get_or_init(|| unsafe {
        let h = libc::dlopen(c"libacl.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            return None;
        }
        let g = libc::dlsym(h, c"acl_get_file".as_ptr());
        let s = libc::dlsym(h, c"acl_set_file".as_ptr());
        (!g.is_null() && !s.is_null()).then_some((g as usize, s as usize))
    }))?;
    // SAFETY: the symbols of libacl with these prototypes.
    unsafe {
        Some((
            std::mem::transmute::<usize, AclGetFile>(g),
            std::mem::transmute::<usize, AclSetFile>(s),
        ))
    }
}

/// glfs_h_acl_set (GFAPI_3.7.0): libacl's `acl_set_file` on the backing file (ENOTSUP
/// without libacl.so.1).
#[no_mangle]
pub unsafe extern "C" fn glfs_h_acl_set(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    type_: c_int,
    acl: *mut c_void,
) -> c_int {
    int_call(|| {
        on_object(fs, object, "setxattr", |m, host, c| {
            let (_, set) = libacl().ok_or(libc::ENOTSUP)?;
            if acl.is_null() {
                return Err(libc::EINVAL);
            }
            cvt(set(c.as_ptr(), type_, acl) as isize)?;
            crate::upcall::changed_host_of(m, host);
            Ok(0)
        })
    })
}

/// glfs_h_acl_get (GFAPI_3.7.0): libacl's `acl_get_file` on the backing file; release
/// with libacl's acl_free.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_acl_get(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    type_: c_int,
) -> *mut c_void {
    ptr_call(|| {
        on_object(fs, object, "getxattr", |_, _, c| {
            let (get, _) = libacl().ok_or(libc::ENOTSUP)?;
            let acl = get(c.as_ptr(), type_);
            if acl.is_null() {
                return Err(crate::ffi::last_errno());
            }
            Ok(acl as usize)
        })
    })
}

/// The GFID of an open fd's inode (for upcalls and leases).
pub(crate) fn fd_gfid(f: &FdInner) -> Res<Gfid> {
    let vol = f.glfs.vol_dir().ok_or(libc::EBADF)?;
    // SAFETY: zeroed statx is a valid out-buffer; statx of our own descriptor.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            f.raw(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            &mut stx,
        )
    };
    if r < 0 {
        return Err(crate::ffi::last_errno());
    }
    Ok(gfid::from_statx(&gfid::statx(&vol)?, &stx))
}
