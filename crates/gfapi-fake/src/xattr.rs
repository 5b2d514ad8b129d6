//! Extended attributes (get/set/list/remove in the path, `l` and `f` forms): stored as
//! the backing file's own host xattrs, so every process on the fake root sees what any
//! one set (`user.*` for anyone, `trusted.*` for root, as on a brick). Gluster's own
//! keys are answered as Gluster 10.3 answers a gfapi client (read off a live volume):
//!
//! * `glusterfs.pathinfo`, `trusted.glusterfs.pathinfo` on a path:
//!   `<POSIX(<brick>):<host>:<brick file>>` on a one-brick volume; when the fake claims
//!   `n` replicas (`GFAPI_FAKE_REPLICA`), the replicate translator's form
//!   `(<REPLICATE:<volume>-replicate-0> <POSIX(...)...> ...)` with `n` bricks (all the
//!   one backing file); on an fd EOPNOTSUPP / ENODATA; set: EACCES;
//! * `trusted.glusterfs.node-uuid` on a path: a UUID string with its NUL, and listed
//!   first by listxattr; on an fd ENODATA; set: accepted and ignored;
//! * `glusterfs.gfid.string`, `glusterfs.gfid`: EOPNOTSUPP; `trusted.gfid`: ENODATA
//!   (set: accepted and ignored). Handles give a file's GFID (`glfs_h_extract_handle`).

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{fd_of, glfs_fd_t, glfs_t, int_call, mount_of, ssize_call, str_arg};
use crate::fs::{cpath, Glfs, Res};
use crate::gfid;
use libc::{c_char, c_int, c_void, size_t, ssize_t};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Where an xattr call goes: a path (following a final symlink or not) or an open fd.
enum At {
    Path(CString, bool),
    Fd(c_int),
}

/// The object of a call: its host form, the volume directory and its host path (for
/// the virtual keys).
struct Obj {
    at: At,
    vol: PathBuf,
    host: PathBuf,
    /// The replica count the fake claims for the volume (see `Glfs::replica_count`).
    replicas: usize,
}

unsafe fn path_obj(fs: *mut glfs_t, path: *const c_char, op: &str, follow: bool) -> Res<Obj> {
    let m = mount_of(fs)?;
    let (host, _, _) = m.admit_path(op, str_arg(path)?)?;
    let vol = m.vol_dir().ok_or(libc::EIO)?;
    let host = if follow {
        std::fs::canonicalize(&host).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?
    } else {
        host
    };
    Ok(Obj {
        at: At::Path(cpath(&host)?, follow),
        vol,
        host,
        replicas: m.replica_count(),
    })
}

fn fd_obj(fd: *mut glfs_fd_t, op: &str) -> Res<Obj> {
    let f = fd_of(fd)?;
    f.admit(op, None, 0)?;
    let vol = f.glfs.vol_dir().ok_or(libc::EBADF)?;
    let host = vol.join(f.path.trim_start_matches('/'));
    // The fd keeps the inode; its path may have been renamed since: use the fd.
    let dup = unsafe { libc::dup(f.raw()) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(Obj {
        at: At::Fd(dup),
        vol,
        host,
        replicas: f.glfs.replica_count(),
    })
}

impl Drop for Obj {
    fn drop(&mut self) {
        if let At::Fd(fd) = self.at {
            // SAFETY: our own dup.
            unsafe { libc::close(fd) };
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    unsafe { libc::gethostname(buf.as_mut_ptr() as *mut c_char, buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A stable per-host "node UUID" (Gluster's glusterd UUID of the brick's node).
fn node_uuid() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut g: gfid::Gfid = [0; 16];
    for (i, b) in hostname().bytes().chain(*b"gfapi-fake-node").enumerate() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        g[i % 16] ^= (h >> 24) as u8;
    }
    gfid::to_string(&g)
}

/// The pathinfo of `o` for the topology the fake claims.
fn pathinfo(o: &Obj) -> String {
    let brick = format!(
        "<POSIX({}):{}:{}>",
        o.vol.display(),
        hostname(),
        o.host.display()
    );
    let n = o.replicas;
    if n == 1 {
        return brick;
    }
    let name = o.vol.file_name().unwrap_or_default().to_string_lossy();
    let bricks = vec![brick; n].join(" ");
    format!("(<REPLICATE:{name}-replicate-0> {bricks})")
}

/// What Gluster 10.3 answers for its own keys (read off a live one-brick volume), if
/// `name` is one: `Some(Ok(value))`, `Some(Err(errno))`.
fn virtual_value(o: &Obj, name: &str) -> Option<Res<Vec<u8>>> {
    let by_fd = matches!(o.at, At::Fd(_));
    match name {
        "glusterfs.gfid.string" | "glusterfs.gfid" => Some(Err(libc::EOPNOTSUPP)),
        "trusted.gfid" => Some(Err(libc::ENODATA)),
        "glusterfs.pathinfo" if by_fd => Some(Err(libc::EOPNOTSUPP)),
        "trusted.glusterfs.pathinfo" | "trusted.glusterfs.node-uuid" if by_fd => {
            Some(Err(libc::ENODATA))
        }
        "glusterfs.pathinfo" | "trusted.glusterfs.pathinfo" => Some(Ok(pathinfo(o).into_bytes())),
        "trusted.glusterfs.node-uuid" => {
            let mut v = node_uuid().into_bytes();
            v.push(0);
            Some(Ok(v))
        }
        _ => None,
    }
}

/// What Gluster 10.3 answers when one of its own keys is set or removed: an errno, or
/// `Some(Ok)` for the keys it accepts and ignores.
fn virtual_set(name: &str) -> Option<Res<c_int>> {
    match name {
        "glusterfs.gfid.string" | "glusterfs.gfid" => Some(Err(libc::EOPNOTSUPP)),
        "glusterfs.pathinfo" | "trusted.glusterfs.pathinfo" => Some(Err(libc::EACCES)),
        "trusted.gfid" | "trusted.glusterfs.node-uuid" | "trusted.glusterfs.volume-id" => {
            Some(Ok(0))
        }
        _ => None,
    }
}

/// Copies `v` out as getxattr(2) does: size 0 asks for the length, too small is ERANGE.
unsafe fn copy_out(v: &[u8], value: *mut c_void, size: size_t) -> Res<ssize_t> {
    if size == 0 {
        return Ok(v.len() as ssize_t);
    }
    if value.is_null() {
        return Err(libc::EFAULT);
    }
    if v.len() > size {
        return Err(libc::ERANGE);
    }
    std::ptr::copy_nonoverlapping(v.as_ptr(), value as *mut u8, v.len());
    Ok(v.len() as ssize_t)
}

unsafe fn get(o: Obj, name: *const c_char, value: *mut c_void, size: size_t) -> Res<ssize_t> {
    let n = str_arg(name)?;
    if n.is_empty() {
        return Err(libc::EINVAL);
    }
    if let Some(v) = virtual_value(&o, n) {
        return copy_out(&v?, value, size);
    }
    if n.starts_with("glusterfs.clrlk.") {
        // the locks translator's clear-locks request (see `locks`)
        return copy_out(&crate::locks::clear_locks(&o.vol, &o.host, n)?, value, size);
    }
    let cn = CString::new(n).map_err(|_| libc::EINVAL)?;
    let (value, size) = if size == 0 {
        (std::ptr::null_mut(), 0)
    } else {
        (value, size)
    };
    let r = match &o.at {
        At::Path(p, true) => libc::getxattr(p.as_ptr(), cn.as_ptr(), value, size),
        At::Path(p, false) => libc::lgetxattr(p.as_ptr(), cn.as_ptr(), value, size),
        At::Fd(fd) => libc::fgetxattr(*fd, cn.as_ptr(), value, size),
    };
    if r < 0 {
        return Err(errno());
    }
    Ok(r)
}

unsafe fn set(
    o: Obj,
    name: *const c_char,
    value: *const c_void,
    size: size_t,
    flags: c_int,
) -> Res<c_int> {
    let n = str_arg(name)?;
    if n.is_empty() {
        return Err(libc::EINVAL);
    }
    if let Some(r) = virtual_set(n) {
        return r;
    }
    if value.is_null() && size > 0 {
        return Err(libc::EFAULT);
    }
    let cn = CString::new(n).map_err(|_| libc::EINVAL)?;
    let r = match &o.at {
        At::Path(p, true) => libc::setxattr(p.as_ptr(), cn.as_ptr(), value, size, flags),
        At::Path(p, false) => libc::lsetxattr(p.as_ptr(), cn.as_ptr(), value, size, flags),
        At::Fd(fd) => libc::fsetxattr(*fd, cn.as_ptr(), value, size, flags),
    };
    if r < 0 {
        return Err(errno());
    }
    crate::upcall::changed_host(&o.vol, &o.host);
    Ok(0)
}

unsafe fn list(o: Obj, value: *mut c_void, size: size_t) -> Res<ssize_t> {
    // Gluster lists its node-uuid key first on a path (not on an fd).
    let extra: &[u8] = match o.at {
        At::Path(..) => b"trusted.glusterfs.node-uuid\0",
        At::Fd(_) => b"",
    };
    if size > 0 && size < extra.len() {
        return Err(libc::ERANGE);
    }
    let (value, size) = if size == 0 {
        (std::ptr::null_mut(), 0)
    } else {
        std::ptr::copy_nonoverlapping(extra.as_ptr(), value as *mut u8, extra.len());
        (
            (value as *mut u8).add(extra.len()) as *mut c_void,
            size - extra.len(),
        )
    };
    let r = match &o.at {
        At::Path(p, true) => libc::listxattr(p.as_ptr(), value as *mut c_char, size),
        At::Path(p, false) => libc::llistxattr(p.as_ptr(), value as *mut c_char, size),
        At::Fd(fd) => libc::flistxattr(*fd, value as *mut c_char, size),
    };
    if r < 0 {
        return Err(errno());
    }
    Ok(r + extra.len() as ssize_t)
}

unsafe fn remove(o: Obj, name: *const c_char) -> Res<c_int> {
    let n = str_arg(name)?;
    if let Some(r) = virtual_set(n) {
        return r;
    }
    let cn = CString::new(n).map_err(|_| libc::EINVAL)?;
    let r = match &o.at {
        At::Path(p, true) => libc::removexattr(p.as_ptr(), cn.as_ptr()),
        At::Path(p, false) => libc::lremovexattr(p.as_ptr(), cn.as_ptr()),
        At::Fd(fd) => libc::fremovexattr(*fd, cn.as_ptr()),
    };
    if r < 0 {
        return Err(errno());
    }
    crate::upcall::changed_host(&o.vol, &o.host);
    Ok(0)
}

/// Defines an operation's three entry points, as gfapi has them: on a path following a
/// final symlink (`glfs_X`), on a path not following it (`glfs_lX`) and on an open fd
/// (`glfs_fX`); `$call` turns the result into the C return value (-1 and errno on error),
/// `$body(obj, args...)` does the work on the [`Obj`] each form resolves to.
macro_rules! three_forms {
    ($op:literal, $call:path, $ret:ty, [$path_fn:ident, $l_fn:ident, $f_fn:ident],
     ($($arg:ident: $ty:ty),*) => $body:path) => {
        #[doc = concat!("`", stringify!($path_fn), "`: on a path, a final symlink followed.")]
        #[no_mangle]
        pub unsafe extern "C" fn $path_fn(
            fs: *mut glfs_t,
            path: *const c_char,
            $($arg: $ty),*
        ) -> $ret {
            $call(|| path_obj(fs, path, $op, true).and_then(|o| $body(o, $($arg),*)))
        }

        #[doc = concat!("`", stringify!($l_fn), "`: on a path, a final symlink itself.")]
        #[no_mangle]
        pub unsafe extern "C" fn $l_fn(
            fs: *mut glfs_t,
            path: *const c_char,
            $($arg: $ty),*
        ) -> $ret {
            $call(|| path_obj(fs, path, $op, false).and_then(|o| $body(o, $($arg),*)))
        }

        #[doc = concat!("`", stringify!($f_fn), "`: on an open fd.")]
        #[no_mangle]
        pub unsafe extern "C" fn $f_fn(fd: *mut glfs_fd_t, $($arg: $ty),*) -> $ret {
            $call(|| fd_obj(fd, $op).and_then(|o| $body(o, $($arg),*)))
        }
    };
}

three_forms!("getxattr", ssize_call, ssize_t,
    [glfs_getxattr, glfs_lgetxattr, glfs_fgetxattr],
    (name: *const c_char, value: *mut c_void, size: size_t) => get);
three_forms!("listxattr", ssize_call, ssize_t,
    [glfs_listxattr, glfs_llistxattr, glfs_flistxattr],
    (value: *mut c_void, size: size_t) => list);
// `flags`: XATTR_CREATE / XATTR_REPLACE
three_forms!("setxattr", int_call, c_int,
    [glfs_setxattr, glfs_lsetxattr, glfs_fsetxattr],
    (name: *const c_char, value: *const c_void, size: size_t, flags: c_int) => set);
three_forms!("removexattr", int_call, c_int,
    [glfs_removexattr, glfs_lremovexattr, glfs_fremovexattr],
    (name: *const c_char) => remove);

/// The object of a handle call: the host file itself, a final symlink not followed.
fn host_obj(m: &Glfs, host: &Path) -> Res<Obj> {
    Ok(Obj {
        at: At::Path(cpath(host)?, false),
        vol: m.vol_dir().ok_or(libc::EIO)?,
        host: host.to_path_buf(),
        replicas: m.replica_count(),
    })
}

/// Shared by the handle API: xattrs of a host object of mount `m`.
pub(crate) unsafe fn h_get(
    m: &Glfs,
    host: &Path,
    name: *const c_char,
    value: *mut c_void,
    size: size_t,
) -> Res<ssize_t> {
    get(host_obj(m, host)?, name, value, size)
}

/// Shared by the handle API.
pub(crate) unsafe fn h_set(
    m: &Glfs,
    host: &Path,
    name: *const c_char,
    value: *const c_void,
    size: size_t,
    flags: c_int,
) -> Res<c_int> {
    set(host_obj(m, host)?, name, value, size, flags)
}

/// Shared by the handle API.
pub(crate) unsafe fn h_remove(m: &Glfs, host: &Path, name: *const c_char) -> Res<c_int> {
    remove(host_obj(m, host)?, name)
}
