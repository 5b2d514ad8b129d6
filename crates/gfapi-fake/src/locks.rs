//! Byte-range locks: glfs_posix_lock, glfs_file_lock (advisory and mandatory),
//! glfs_fd_set_lkowner.
//!
//! A lock is an open-file-description lock (`F_OFD_SETLK`) on the backing file, taken
//! through the fd's own host descriptor: every process on the fake root sees it (two
//! gateways on one volume see each other's locks, as on Gluster), two fds conflict even
//! in one process (each glfs fd is its own owner, as Gluster's default lock owner is per
//! fd), and the kernel drops it when its process dies.
//!
//! A mandatory lock is taken a second time on a shadow file of the inode,
//! `<root>/.gfapi-fake-mandatory.<volume>/<gfid>`, held open by the fd. Reads and writes
//! through any other fd first test their range there (F_OFD_GETLK: a write conflicts
//! with any mandatory lock, a read with a mandatory write lock) and fail with EAGAIN, as
//! Gluster's locks translator refuses them; the holder's own fd is not held back. The
//! shadow lock dies with its process too.

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{cvt, fd_of, glfs_fd_t, int_call};
use crate::fs::{lock, FdInner, Res};
use crate::gfid;
use libc::{c_int, c_void, flock};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// GFAPI_MAX_LOCK_OWNER_LEN
pub const MAX_LOCK_OWNER_LEN: usize = 255;

const LK_ADVISORY: c_int = 0;
const LK_MANDATORY: c_int = 1;

fn ofd_cmd(cmd: c_int) -> Res<c_int> {
    Ok(match cmd {
        libc::F_SETLK | libc::F_OFD_SETLK => libc::F_OFD_SETLK,
        libc::F_SETLKW | libc::F_OFD_SETLKW => libc::F_OFD_SETLKW,
        libc::F_GETLK | libc::F_OFD_GETLK => libc::F_OFD_GETLK,
        _ => return Err(libc::EINVAL),
    })
}

/// fcntl on an OFD lock command (l_pid must be 0 going in).
unsafe fn ofd(raw: c_int, cmd: c_int, fl: &mut flock) -> Res<()> {
    fl.l_pid = 0;
    loop {
        let r = libc::fcntl(raw, cmd, fl as *mut flock);
        if r == 0 {
            return Ok(());
        }
        let e = crate::ffi::last_errno();
        if e != libc::EINTR {
            // a conflict is EAGAIN on Gluster (the host may say EACCES)
            return Err(if e == libc::EACCES { libc::EAGAIN } else { e });
        }
    }
}

/// Takes an exclusive OFD lock on the whole of `f`, waiting for it.
pub(crate) fn ofd_lock_wait(f: &std::fs::File) -> Res<()> {
    // SAFETY: zeroed flock is valid; our own descriptor.
    let mut fl: flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    unsafe { ofd(f.as_raw_fd(), libc::F_OFD_SETLKW, &mut fl) }
}

fn shadow_dir(vol: &Path) -> Option<PathBuf> {
    let name = vol.file_name()?.to_string_lossy().into_owned();
    Some(vol.parent()?.join(format!(".gfapi-fake-mandatory.{name}")))
}

fn shadow_path(f: &FdInner) -> Res<PathBuf> {
    let vol = f.glfs.vol_dir().ok_or(libc::EBADF)?;
    let g = crate::handles::fd_gfid(f)?;
    Ok(shadow_dir(&vol)
        .ok_or(libc::EINVAL)?
        .join(gfid::to_string(&g)))
}

/// The fd's own descriptor of its shadow file (opened on its first mandatory lock).
fn shadow_of(f: &FdInner) -> Res<c_int> {
    let mut s = lock(&f.shadow);
    if let Some(file) = s.as_ref() {
        return Ok(file.as_raw_fd());
    }
    let p = shadow_path(f)?;
    let io = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(&p)
        .map_err(io)?;
    let raw = file.as_raw_fd();
    *s = Some(file);
    Ok(raw)
}

/// Refuses (EAGAIN) a read or write of `[off, off+len)` through `f` that a mandatory
/// lock held through another fd covers. One stat(2) when nobody ever took a mandatory
/// lock on the volume.
pub(crate) fn check_mandatory(f: &FdInner, off: i64, len: usize, write: bool) -> Res<()> {
    let Some(vol) = f.glfs.vol_dir() else {
        return Ok(());
    };
    if !shadow_dir(&vol).is_some_and(|d| d.exists()) || len == 0 || off < 0 {
        return Ok(());
    }
    let own = lock(&f.shadow).as_ref().map(|s| s.as_raw_fd());
    let probe;
    let raw = match own {
        Some(r) => r,
        None => {
            let p = shadow_path(f)?;
            match std::fs::File::open(&p) {
                Ok(file) => {
                    probe = file;
                    probe.as_raw_fd()
                }
                Err(_) => return Ok(()), // no mandatory lock ever on this inode
            }
        }
    };
    // SAFETY: zeroed flock is valid.
    let mut fl: flock = unsafe { std::mem::zeroed() };
    fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = off;
    fl.l_len = len as i64;
    // SAFETY: a descriptor we own (the fd's shadow or the probe).
    unsafe { ofd(raw, libc::F_OFD_GETLK, &mut fl)? };
    if fl.l_type != libc::F_UNLCK as i16 {
        return Err(libc::EAGAIN);
    }
    Ok(())
}

unsafe fn lock_impl(fd: *mut glfs_fd_t, cmd: c_int, fl: *mut flock, mode: c_int) -> Res<c_int> {
    let f = fd_of(fd)?;
    f.admit("lock", None, 0)?;
    if !matches!(f.kind, crate::fs::FdKind::File(_)) {
        return Err(libc::EINVAL);
    }
    let fl = fl.as_mut().ok_or(libc::EINVAL)?;
    if mode != LK_ADVISORY && mode != LK_MANDATORY {
        return Err(libc::EINVAL);
    }
    let cmd = ofd_cmd(cmd)?;
    let pid = fl.l_pid;
    if cmd == libc::F_OFD_GETLK {
        ofd(f.raw(), cmd, fl)?;
        if fl.l_type == libc::F_UNLCK as i16 {
            fl.l_pid = pid;
        }
        return Ok(0);
    }
    let unlock = fl.l_type == libc::F_UNLCK as i16;
    if mode == LK_MANDATORY || (unlock && lock(&f.shadow).is_some()) {
        // the shadow first: a mandatory lock that cannot be had leaves nothing behind
        let mut sfl = *fl;
        let shadow = shadow_of(&f)?;
        ofd(shadow, cmd, &mut sfl)?;
        if let Err(e) = ofd(f.raw(), cmd, fl) {
            if !unlock {
                let mut undo = sfl;
                undo.l_type = libc::F_UNLCK as i16;
                let _ = ofd(shadow, libc::F_OFD_SETLK, &mut undo);
            }
            return Err(e);
        }
    } else {
        ofd(f.raw(), cmd, fl)?;
    }
    fl.l_pid = pid;
    Ok(0)
}

/// glfs_posix_lock: F_SETLK / F_SETLKW / F_GETLK (advisory), per fd.
#[no_mangle]
pub unsafe extern "C" fn glfs_posix_lock(
    fd: *mut glfs_fd_t,
    cmd: c_int,
    flock: *mut flock,
) -> c_int {
    int_call(|| lock_impl(fd, cmd, flock, LK_ADVISORY))
}

/// glfs_file_lock (GFAPI_4.0.0): as glfs_posix_lock, `lk_mode` GLFS_LK_ADVISORY or
/// GLFS_LK_MANDATORY (reads and writes through other fds are refused with EAGAIN).
#[no_mangle]
pub unsafe extern "C" fn glfs_file_lock(
    fd: *mut glfs_fd_t,
    cmd: c_int,
    flock: *mut flock,
    lk_mode: c_int,
) -> c_int {
    int_call(|| lock_impl(fd, cmd, flock, lk_mode))
}

/// glfs_fd_set_lkowner (GFAPI_3.10.7): records the lock owner (1..=255 bytes). Locks
/// stay per fd in the fake (see the module documentation).
#[no_mangle]
pub unsafe extern "C" fn glfs_fd_set_lkowner(
    fd: *mut glfs_fd_t,
    data: *mut c_void,
    len: c_int,
) -> c_int {
    int_call(|| {
        let f = fd_of(fd)?;
        if data.is_null() || len <= 0 || len as usize > MAX_LOCK_OWNER_LEN {
            return Err(libc::EINVAL);
        }
        let owner = std::slice::from_raw_parts(data as *const u8, len as usize).to_vec();
        *lock(&f.lk_owner) = owner;
        let _ = cvt(0);
        Ok(0)
    })
}
