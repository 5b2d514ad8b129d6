//! Attributes and names: chmod/chown/utimens (path, `l` and `f` forms), setattr and
//! fsetattr, statx, link, symlink, readlink, realpath, mknod, dup, chdir/fchdir/getcwd.
//! Each is the host call on the backing file, behind the same connection and fault gate
//! as the data path (fault op names in `faults::OP_NAMES`).

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{
    cvt, fd_of, glfs_fd_t, glfs_stat, glfs_t, int_call, mount_of, path_call, path_op, ptr_call,
    str_arg, Timespec,
};
use crate::fs::{cpath, fds, FdInner, FdKind, Glfs, Res};
use libc::{c_char, c_int, dev_t, gid_t, mode_t, size_t, timespec, uid_t};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// Body of an fd entry point returning `int`: admits `op` on the fd, then runs `f`.
pub(crate) fn fd_call(
    fd: *mut glfs_fd_t,
    op: &str,
    f: impl FnOnce(&FdInner) -> Res<c_int>,
) -> c_int {
    int_call(|| {
        let inner = fd_of(fd)?;
        inner.admit(op, None, 0)?;
        f(&inner)
    })
}

/// A path entry point that changes the attributes of its object (reported to
/// upcall listeners).
fn attr_call(
    fs: *mut glfs_t,
    path: *const c_char,
    op: &str,
    call: impl FnOnce(&std::ffi::CString) -> c_int,
) -> c_int {
    int_call(|| {
        path_op(fs, path, op, |c, _| {
            cvt(call(c) as isize)?;
            let p = Path::new(std::ffi::OsStr::from_bytes(c.to_bytes()));
            if let Some(vol) = mount_of(fs)?.vol_dir() {
                crate::upcall::changed_host(&vol, p);
            }
            Ok(0)
        })
    })
}

/// An fd entry point that changes attributes.
fn fd_attr_call(fd: *mut glfs_fd_t, op: &str, f: impl FnOnce(&FdInner) -> Res<c_int>) -> c_int {
    fd_call(fd, op, |inner| {
        crate::upcall::before_change(inner);
        let r = f(inner)?;
        crate::upcall::changed_fd(inner, crate::upcall::UP_ATTR);
        Ok(r)
    })
}

/// glfs_chmod
#[no_mangle]
pub unsafe extern "C" fn glfs_chmod(fs: *mut glfs_t, path: *const c_char, mode: mode_t) -> c_int {
    attr_call(fs, path, "chmod", |c| libc::chmod(c.as_ptr(), mode))
}

/// glfs_fchmod
#[no_mangle]
pub unsafe extern "C" fn glfs_fchmod(fd: *mut glfs_fd_t, mode: mode_t) -> c_int {
    fd_attr_call(fd, "chmod", |f| {
        cvt(libc::fchmod(f.raw(), mode) as isize).map(|_| 0)
    })
}

/// glfs_chown
#[no_mangle]
pub unsafe extern "C" fn glfs_chown(
    fs: *mut glfs_t,
    path: *const c_char,
    uid: uid_t,
    gid: gid_t,
) -> c_int {
    attr_call(fs, path, "chown", |c| libc::chown(c.as_ptr(), uid, gid))
}

/// glfs_lchown
#[no_mangle]
pub unsafe extern "C" fn glfs_lchown(
    fs: *mut glfs_t,
    path: *const c_char,
    uid: uid_t,
    gid: gid_t,
) -> c_int {
    attr_call(fs, path, "chown", |c| libc::lchown(c.as_ptr(), uid, gid))
}

/// glfs_fchown
#[no_mangle]
pub unsafe extern "C" fn glfs_fchown(fd: *mut glfs_fd_t, uid: uid_t, gid: gid_t) -> c_int {
    fd_attr_call(fd, "chown", |f| {
        cvt(libc::fchown(f.raw(), uid, gid) as isize).map(|_| 0)
    })
}

unsafe fn utimens_at(
    fs: *mut glfs_t,
    path: *const c_char,
    times: *const timespec,
    flags: c_int,
) -> c_int {
    attr_call(fs, path, "utimens", |c| {
        libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times, flags)
    })
}

/// glfs_utimens (`times` NULL: now)
#[no_mangle]
pub unsafe extern "C" fn glfs_utimens(
    fs: *mut glfs_t,
    path: *const c_char,
    times: *const timespec,
) -> c_int {
    utimens_at(fs, path, times, 0)
}

/// glfs_lutimens: the link itself
#[no_mangle]
pub unsafe extern "C" fn glfs_lutimens(
    fs: *mut glfs_t,
    path: *const c_char,
    times: *const timespec,
) -> c_int {
    utimens_at(fs, path, times, libc::AT_SYMLINK_NOFOLLOW)
}

/// glfs_futimens
#[no_mangle]
pub unsafe extern "C" fn glfs_futimens(fd: *mut glfs_fd_t, times: *const timespec) -> c_int {
    fd_attr_call(fd, "utimens", |f| {
        cvt(libc::futimens(f.raw(), times) as isize).map(|_| 0)
    })
}

// ---------------------------------------------------------------------------------------
// setattr / statx

const ST_MODE: u64 = 0x2;
const ST_UID: u64 = 0x8;
const ST_GID: u64 = 0x10;
const ST_ATIME: u64 = 0x20;
const ST_MTIME: u64 = 0x40;
const ST_SIZE: u64 = 0x200;

fn ts(t: Timespec) -> timespec {
    timespec {
        tv_sec: t.tv_sec,
        tv_nsec: t.tv_nsec,
    }
}

/// Applies the fields of `st` its mask names (mode, uid, gid, atime, mtime, size) to an
/// open host descriptor or a path.
pub(crate) unsafe fn apply_setattr(target: Target<'_>, st: &glfs_stat) -> Res<()> {
    let m = st.glfs_st_mask;
    if m & ST_MODE != 0 {
        let mode = st.glfs_st_mode & 0o7777;
        cvt(match target {
            Target::Fd(fd) => libc::fchmod(fd, mode),
            Target::Path(c, true) => libc::chmod(c.as_ptr(), mode),
            // Linux cannot chmod a symlink: the target's mode is not what was asked.
            Target::Path(c, false) => {
                if crate::ffi::lstat_mode(c) == Some(libc::S_IFLNK) {
                    return Err(libc::EOPNOTSUPP);
                }
                libc::chmod(c.as_ptr(), mode)
            }
        } as isize)?;
    }
    if m & (ST_UID | ST_GID) != 0 {
        let uid = if m & ST_UID != 0 {
            st.glfs_st_uid
        } else {
            u32::MAX
        };
        let gid = if m & ST_GID != 0 {
            st.glfs_st_gid
        } else {
            u32::MAX
        };
        cvt(match target {
            Target::Fd(fd) => libc::fchown(fd, uid, gid),
            Target::Path(c, true) => libc::chown(c.as_ptr(), uid, gid),
            Target::Path(c, false) => libc::lchown(c.as_ptr(), uid, gid),
        } as isize)?;
    }
    if m & (ST_ATIME | ST_MTIME) != 0 {
        let omit = timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        };
        let times = [
            if m & ST_ATIME != 0 {
                ts(st.glfs_st_atime)
            } else {
                omit
            },
            if m & ST_MTIME != 0 {
                ts(st.glfs_st_mtime)
            } else {
                omit
            },
        ];
        cvt(match target {
            Target::Fd(fd) => libc::futimens(fd, times.as_ptr()),
            Target::Path(c, follow) => libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW },
            ),
        } as isize)?;
    }
    if m & ST_SIZE != 0 {
        cvt(match target {
            Target::Fd(fd) => libc::ftruncate(fd, st.glfs_st_size),
            Target::Path(c, _) => libc::truncate(c.as_ptr(), st.glfs_st_size),
        } as isize)?;
    }
    Ok(())
}

/// What [`apply_setattr`] changes: an open descriptor, or a path (following a final
/// symlink or not).
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    Fd(c_int),
    Path(&'a std::ffi::CStr, bool),
}

/// glfs_setattr (GFAPI_6.0): sets what `stat->glfs_st_mask` names.
#[no_mangle]
pub unsafe extern "C" fn glfs_setattr(
    fs: *mut glfs_t,
    path: *const c_char,
    stat: *mut glfs_stat,
    follow: c_int,
) -> c_int {
    int_call(|| {
        path_op(fs, path, "setattr", |c, _| {
            let st = stat.as_ref().ok_or(libc::EINVAL)?;
            apply_setattr(Target::Path(c, follow != 0), st)?;
            let p = Path::new(std::ffi::OsStr::from_bytes(c.to_bytes()));
            if let Some(vol) = mount_of(fs)?.vol_dir() {
                crate::upcall::changed_host(&vol, p);
            }
            Ok(0)
        })
    })
}

/// glfs_fsetattr (GFAPI_6.0)
#[no_mangle]
pub unsafe extern "C" fn glfs_fsetattr(fd: *mut glfs_fd_t, stat: *mut glfs_stat) -> c_int {
    fd_attr_call(fd, "setattr", |f| {
        let st = stat.as_ref().ok_or(libc::EINVAL)?;
        apply_setattr(Target::Fd(f.raw()), st).map(|_| 0)
    })
}

/// A `glfs_stat` with every field Gluster fills (basic stats and birth time when the
/// host has it).
pub(crate) fn glfs_stat_of(stx: &libc::statx) -> glfs_stat {
    let t = |s: &libc::statx_timestamp| Timespec {
        tv_sec: s.tv_sec,
        tv_nsec: i64::from(s.tv_nsec),
    };
    let mut mask = crate::ffi::GLFS_STAT_BASIC_STATS;
    let btime = if stx.stx_mask & libc::STATX_BTIME != 0 {
        mask |= 0x800;
        t(&stx.stx_btime)
    } else {
        Timespec::default()
    };
    glfs_stat {
        glfs_st_mask: mask,
        glfs_st_attributes: stx.stx_attributes,
        glfs_st_attributes_mask: stx.stx_attributes_mask,
        glfs_st_atime: t(&stx.stx_atime),
        glfs_st_btime: btime,
        glfs_st_ctime: t(&stx.stx_ctime),
        glfs_st_mtime: t(&stx.stx_mtime),
        glfs_st_ino: stx.stx_ino,
        glfs_st_size: stx.stx_size as i64,
        glfs_st_blocks: stx.stx_blocks as i64,
        glfs_st_rdev_major: stx.stx_rdev_major,
        glfs_st_rdev_minor: stx.stx_rdev_minor,
        glfs_st_dev_major: stx.stx_dev_major,
        glfs_st_dev_minor: stx.stx_dev_minor,
        glfs_st_blksize: i64::from(stx.stx_blksize),
        glfs_st_nlink: u64::from(stx.stx_nlink),
        glfs_st_uid: stx.stx_uid,
        glfs_st_gid: stx.stx_gid,
        glfs_st_mode: u32::from(stx.stx_mode),
    }
}

/// glfs_statx (GFAPI_PRIVATE_6.0): `glfs_statx(fs, path, mask, statxbuf)`; follows a
/// final symlink, fills what the host knows (the mask says which).
#[no_mangle]
pub unsafe extern "C" fn glfs_statx(
    fs: *mut glfs_t,
    path: *const c_char,
    _mask: u32,
    statxbuf: *mut glfs_stat,
) -> c_int {
    int_call(|| {
        path_op(fs, path, "stat", |c, _| {
            if statxbuf.is_null() {
                return Err(libc::EINVAL);
            }
            let real = std::fs::canonicalize(Path::new(
                std::ffi::OsStr::from_encoded_bytes_unchecked(c.to_bytes()),
            ))
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
            *statxbuf = glfs_stat_of(&crate::gfid::statx(&real)?);
            Ok(0)
        })
    })
}

// ---------------------------------------------------------------------------------------
// names

/// glfs_link: a hard link `newpath` to `oldpath`.
#[no_mangle]
pub unsafe extern "C" fn glfs_link(
    fs: *mut glfs_t,
    oldpath: *const c_char,
    newpath: *const c_char,
) -> c_int {
    int_call(|| {
        path_op(fs, oldpath, "link", |old, _| {
            path_op(fs, newpath, "link", |new, _| {
                cvt(libc::link(old.as_ptr(), new.as_ptr()) as isize).map(|_| 0)
            })
        })
    })
}

/// glfs_symlink: `newpath` becomes a symlink holding `oldpath` verbatim.
#[no_mangle]
pub unsafe extern "C" fn glfs_symlink(
    fs: *mut glfs_t,
    oldpath: *const c_char,
    newpath: *const c_char,
) -> c_int {
    int_call(|| {
        let target = str_arg(oldpath)?;
        if target.is_empty() {
            return Err(libc::ENOENT);
        }
        let t = std::ffi::CString::new(target).map_err(|_| libc::EINVAL)?;
        path_op(fs, newpath, "symlink", |new, _| {
            cvt(libc::symlink(t.as_ptr(), new.as_ptr()) as isize).map(|_| 0)
        })
    })
}

/// glfs_readlink: the link's text, not NUL-terminated, cut at `bufsiz`.
#[no_mangle]
pub unsafe extern "C" fn glfs_readlink(
    fs: *mut glfs_t,
    path: *const c_char,
    buf: *mut c_char,
    bufsiz: size_t,
) -> c_int {
    int_call(|| {
        path_op(fs, path, "readlink", |c, _| {
            if buf.is_null() {
                return Err(libc::EINVAL);
            }
            cvt(libc::readlink(c.as_ptr(), buf, bufsiz)).map(|n| n as c_int)
        })
    })
}

/// glfs_mknod
#[no_mangle]
pub unsafe extern "C" fn glfs_mknod(
    fs: *mut glfs_t,
    path: *const c_char,
    mode: mode_t,
    dev: dev_t,
) -> c_int {
    path_call(fs, path, "mknod", |c| libc::mknod(c.as_ptr(), mode, dev))
}

/// Follows symlinks inside the volume as gfapi resolves them: an absolute target starts
/// again at the volume root, `..` stops at the root, 40 links at most (ELOOP). Returns the
/// volume path of the final object (which must exist).
pub(crate) fn resolve_in_volume(vol_dir: &Path, path: &str) -> Res<String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut host = vol_dir.to_path_buf();
        host.extend(&done);
        host.push(&part);
        let md =
            std::fs::symlink_metadata(&host).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        if md.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return Err(libc::ELOOP);
            }
            let t = std::fs::read_link(&host).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
            let t = t.to_string_lossy().into_owned();
            if t.starts_with('/') {
                done.clear();
            }
            todo.extend(
                t.split('/')
                    .filter(|s| !s.is_empty())
                    .rev()
                    .map(String::from),
            );
        } else {
            if !todo.is_empty() && !md.is_dir() {
                return Err(libc::ENOTDIR);
            }
            done.push(part);
        }
    }
    Ok(format!("/{}", done.join("/")))
}

/// `rel` with every directory resolved and the last component kept (it must exist).
pub(crate) fn resolve_parent_in_volume(vol_dir: &Path, rel: &str) -> Res<String> {
    let (dir, last) = rel.rsplit_once('/').unwrap_or(("", rel));
    if last.is_empty() || last == "." || last == ".." {
        return resolve_in_volume(vol_dir, rel);
    }
    let dir = resolve_in_volume(vol_dir, if dir.is_empty() { "/" } else { dir })?;
    let out = format!("{}/{last}", dir.trim_end_matches('/'));
    std::fs::symlink_metadata(vol_dir.join(out.trim_start_matches('/')))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    Ok(out)
}

/// glfs_realpath (GFAPI_3.7.17): the canonical volume path (a final symlink is not
/// resolved, as on Gluster 10.3); into `resolved_path` (at
/// least PATH_MAX bytes) or, when NULL, a buffer to release with glfs_free.
#[no_mangle]
pub unsafe extern "C" fn glfs_realpath(
    fs: *mut glfs_t,
    path: *const c_char,
    resolved_path: *mut c_char,
) -> *mut c_char {
    ptr_call(|| {
        let m = mount_of(fs)?;
        let p = str_arg(path)?;
        let (_, rel, _) = m.admit_path("realpath", p)?;
        let vol = m.vol_dir().ok_or(libc::EIO)?;
        // Gluster 10.3 resolves the directories but not a final symlink (realpath(3)
        // would): the fake does as Gluster does.
        let real = resolve_parent_in_volume(&vol, &rel)?;
        if real.len() >= libc::PATH_MAX as usize {
            return Err(libc::ENAMETOOLONG);
        }
        let out = if resolved_path.is_null() {
            crate::misc::alloc_bytes(real.len() + 1)?
        } else {
            resolved_path
        };
        std::ptr::copy_nonoverlapping(real.as_ptr(), out as *mut u8, real.len());
        *out.add(real.len()) = 0;
        Ok(out as usize)
    })
}

// ---------------------------------------------------------------------------------------
// dup and the working directory

/// glfs_dup: a new fd on the same open file with its own offset, starting at 0 (as on
/// Gluster 10.3).
#[no_mangle]
pub unsafe extern "C" fn glfs_dup(fd: *mut glfs_fd_t) -> *mut glfs_fd_t {
    ptr_call(|| {
        let f = fd_of(fd)?;
        f.admit("dup", None, 0)?;
        let FdKind::File(file) = &f.kind else {
            return Err(libc::EINVAL);
        };
        let copy = file
            .try_clone()
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let inner = FdInner::new(
            f.glfs.clone(),
            f.path.clone(),
            FdKind::File(copy),
            f.fs_handle,
            f.flags,
        );
        // Gluster 10.3's dup starts at offset 0 (it does not copy the offset).
        Ok(fds().insert(Arc::new(inner)))
    })
}

fn set_dir(m: &Glfs, host: &Path, rel: String) -> Res<c_int> {
    let md = std::fs::metadata(host).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    if !md.is_dir() {
        return Err(libc::ENOTDIR);
    }
    m.set_cwd(rel);
    Ok(0)
}

/// glfs_chdir: later relative paths start here.
#[no_mangle]
pub unsafe extern "C" fn glfs_chdir(fs: *mut glfs_t, path: *const c_char) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        let (host, rel, _) = m.admit_path("chdir", str_arg(path)?)?;
        let vol = m.vol_dir().ok_or(libc::EIO)?;
        // the working directory is the directory itself, symlinks resolved
        let real = resolve_in_volume(&vol, &rel)?;
        let _ = cpath(&host)?;
        set_dir(&m, &vol.join(real.trim_start_matches('/')), real)
    })
}

/// glfs_fchdir: the directory of an fd from glfs_opendir (ENOTDIR otherwise).
#[no_mangle]
pub unsafe extern "C" fn glfs_fchdir(fd: *mut glfs_fd_t) -> c_int {
    fd_call(fd, "chdir", |f| {
        if !matches!(f.kind, FdKind::Dir(_)) {
            return Err(libc::ENOTDIR);
        }
        f.glfs.set_cwd(f.path.clone());
        Ok(0)
    })
}

/// glfs_getcwd: the working directory into `buf`; ERANGE when it does not fit.
#[no_mangle]
pub unsafe extern "C" fn glfs_getcwd(
    fs: *mut glfs_t,
    buf: *mut c_char,
    size: size_t,
) -> *mut c_char {
    ptr_call(|| {
        let m = mount_of(fs)?;
        m.admit("getcwd", "/", None, 0)?;
        let cwd = m.cwd();
        if buf.is_null() || size < cwd.len() + 1 {
            return Err(libc::ERANGE);
        }
        std::ptr::copy_nonoverlapping(cwd.as_ptr(), buf as *mut u8, cwd.len());
        *buf.add(cwd.len()) = 0;
        Ok(buf as usize)
    })
}
