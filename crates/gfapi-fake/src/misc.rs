//! Instance-level calls: glfs_get_volfile, glfs_set_statedump_path, glfs_sysrq, the
//! per-thread identity (glfs_setfsuid/gid/groups/leaseid/pid), glfs_free, and the
//! private entry points gfapi exports for Gluster's own tools.

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{glfs_fd_t, glfs_t, int_call, mount_of, set_errno, str_arg};
use crate::fs::{lock, Res};
use libc::{c_char, c_int, c_void, gid_t, pid_t, size_t, ssize_t, uid_t};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

// ---------------------------------------------------------------------------------------
// memory handed to the caller

type Owned = Mutex<HashMap<usize, Box<dyn Any + Send>>>;

fn owned() -> &'static Owned {
    static O: OnceLock<Owned> = OnceLock::new();
    O.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `len` bytes from malloc, released by glfs_free (or free).
pub(crate) fn alloc_bytes(len: usize) -> Res<*mut c_char> {
    // SAFETY: plain malloc; NULL is handled.
    let p = unsafe { libc::malloc(len.max(1)) } as *mut c_char;
    if p.is_null() {
        return Err(libc::ENOMEM);
    }
    Ok(p)
}

/// Hands `obj` to the caller as a pointer that glfs_free releases (upcall events,
/// xreaddirplus stats, ...).
pub(crate) fn give<T: Any + Send>(obj: Box<T>) -> *mut T {
    let p = Box::into_raw(obj);
    // SAFETY: p came from Box::into_raw just above; ownership moves into the table,
    // which keeps it at the same address.
    let b: Box<dyn Any + Send> = unsafe { Box::from_raw(p) };
    lock(owned()).insert(p as usize, b);
    p
}

/// Whether `p` is a live object handed out with [`give`].
pub(crate) fn is_given(p: usize) -> bool {
    lock(owned()).contains_key(&p)
}

/// glfs_free (GFAPI_3.7.16): releases memory gfapi handed out (upcall events,
/// xreaddirplus stats, glfs_realpath's buffer). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn glfs_free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    let obj = lock(owned()).remove(&(ptr as usize));
    match obj {
        Some(o) => drop(o),
        None => libc::free(ptr),
    }
}

// ---------------------------------------------------------------------------------------
// volfile, statedump, sysrq

fn volfile_text(fs: *mut glfs_t) -> Res<Option<String>> {
    let m = mount_of(fs)?;
    let Some(vol) = m.vol_dir() else {
        return Ok(None);
    };
    if let Some(f) = m.volfile() {
        return std::fs::read_to_string(&f)
            .map(Some)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO));
    }
    let name = m.volname();
    let (transport, host, port) = m
        .servers()
        .into_iter()
        .next()
        .unwrap_or_else(|| ("tcp".into(), "localhost".into(), 24007));
    let port = if port == 0 { 24007 } else { port };
    Ok(Some(format!(
        "volume {name}-client-0\n    type protocol/client\n    option remote-host {host}\n    \
         option remote-port {port}\n    option remote-subvolume {}\n    option transport-type \
         {transport}\nend-volume\n\nvolume {name}\n    type debug/io-stats\n    subvolumes \
         {name}-client-0\nend-volume\n",
        vol.display()
    )))
}

/// glfs_get_volfile (GFAPI_3.6.0): the client volfile (the file given to
/// glfs_set_volfile, else one protocol/client for the volume directory). >0: bytes
/// copied; 0: none (not mounted); <0: it is longer than `len` by that many bytes.
#[no_mangle]
pub unsafe extern "C" fn glfs_get_volfile(
    fs: *mut glfs_t,
    buf: *mut c_void,
    len: size_t,
) -> ssize_t {
    crate::ffi::guard(-1, || match volfile_text(fs) {
        Ok(None) => 0,
        Ok(Some(t)) => {
            if t.len() > len {
                return -((t.len() - len) as ssize_t);
            }
            if buf.is_null() {
                set_errno(libc::EINVAL);
                return -1;
            }
            std::ptr::copy_nonoverlapping(t.as_ptr(), buf as *mut u8, t.len());
            t.len() as ssize_t
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

/// glfs_set_statedump_path (GFAPI_7.0): where glfs_sysrq('s') writes; need not exist yet.
#[no_mangle]
pub unsafe extern "C" fn glfs_set_statedump_path(fs: *mut glfs_t, path: *const c_char) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        let p = str_arg(path)?;
        if p.is_empty() {
            return Err(libc::EINVAL);
        }
        m.set_statedump_path(p.into());
        Ok(0)
    })
}

/// glfs_sysrq (GFAPI_3.10.0): 'h' logs the supported requests, 's' writes a statedump
/// (`glusterdump.<pid>.dump.<seconds>` in the statedump path, default
/// /var/run/gluster); anything else is EINVAL.
#[no_mangle]
pub unsafe extern "C" fn glfs_sysrq(fs: *mut glfs_t, sysrq: c_char) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        match sysrq as u8 {
            b'h' => {
                m.log(
                    crate::fs::level::INFO,
                    "sysrq: 'h' (this help), 's' (statedump)",
                );
                Ok(0)
            }
            b's' => {
                let dir = m
                    .statedump_path()
                    .unwrap_or_else(|| "/var/run/gluster".into());
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let file = std::path::Path::new(&dir)
                    .join(format!("glusterdump.{}.dump.{now}", std::process::id()));
                let text = format!(
                    "DUMP-START-TIME: {now}\n[global]\nvolume={}\nmounted={}\ninflight={}\n\
                     open_fds={}\nDUMP-END-TIME: {now}\n",
                    m.volname(),
                    m.is_mounted(),
                    m.inflight(),
                    crate::fs::fds().len()
                );
                std::fs::write(&file, text).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
                m.log(
                    crate::fs::level::INFO,
                    &format!("statedump written to {}", file.display()),
                );
                Ok(0)
            }
            _ => Err(libc::EINVAL),
        }
    })
}

// ---------------------------------------------------------------------------------------
// per-thread identity

thread_local! {
    static LEASE_ID: RefCell<[u8; 16]> = const { RefCell::new([0; 16]) };
    static FS_PID: RefCell<Option<pid_t>> = const { RefCell::new(None) };
}

/// The calling thread's lease id (glfs_setfsleaseid; zeros when unset).
pub(crate) fn lease_id() -> [u8; 16] {
    LEASE_ID.with(|l| *l.borrow())
}

fn raw_syscall_ret(r: libc::c_long) -> c_int {
    if r < 0 {
        -1
    } else {
        0
    }
}

/// glfs_setfsuid (GFAPI_3.4.2): later calls of this thread act as `fsuid` (the
/// thread's file-system uid is set, as the brick checks the caller's credentials).
#[no_mangle]
pub extern "C" fn glfs_setfsuid(fsuid: uid_t) -> c_int {
    // SAFETY: setfsuid(2) as a raw syscall changes only the calling thread.
    unsafe { libc::syscall(libc::SYS_setfsuid, fsuid) };
    // setfsuid reports the previous id, not errors: check it took.
    // SAFETY: as above; -1 is an invalid id that only queries.
    let now = unsafe { libc::syscall(libc::SYS_setfsuid, -1i32) };
    if now as uid_t != fsuid {
        set_errno(libc::EPERM);
        return -1;
    }
    0
}

/// glfs_setfsgid (GFAPI_3.4.2)
#[no_mangle]
pub extern "C" fn glfs_setfsgid(fsgid: gid_t) -> c_int {
    // SAFETY: per-thread raw syscall, as glfs_setfsuid.
    unsafe { libc::syscall(libc::SYS_setfsgid, fsgid) };
    // SAFETY: as above.
    let now = unsafe { libc::syscall(libc::SYS_setfsgid, -1i32) };
    if now as gid_t != fsgid {
        set_errno(libc::EPERM);
        return -1;
    }
    0
}

/// glfs_setfsgroups (GFAPI_3.4.2): the thread's supplementary groups.
#[no_mangle]
pub unsafe extern "C" fn glfs_setfsgroups(size: size_t, list: *const gid_t) -> c_int {
    if size > 0 && list.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: per-thread raw syscall (glibc's setgroups would change every thread).
    let r = libc::syscall(libc::SYS_setgroups, size, list);
    raw_syscall_ret(r)
}

/// glfs_setfsleaseid (GFAPI_4.0.0): the lease id of this thread's later glfs_lease
/// calls (NULL clears it).
#[no_mangle]
pub unsafe extern "C" fn glfs_setfsleaseid(leaseid: *const c_char) -> c_int {
    let mut id = [0u8; 16];
    if !leaseid.is_null() {
        std::ptr::copy_nonoverlapping(leaseid as *const u8, id.as_mut_ptr(), 16);
    }
    LEASE_ID.with(|l| *l.borrow_mut() = id);
    0
}

/// glfs_setfspid (GFAPI_PRIVATE_6.1): the pid Gluster puts in this thread's requests
/// (seen in the bricks' logs and statedumps); the fake records it, nothing reads it.
#[no_mangle]
pub extern "C" fn glfs_setfspid(_fs: *mut glfs_t, pid: pid_t) -> c_int {
    FS_PID.with(|p| *p.borrow_mut() = Some(pid));
    0
}

// ---------------------------------------------------------------------------------------
// private entry points that take Gluster's internal structures (xlator_t, loc_t,
// glusterfs_ctx_t, dict_t, struct iatt): the fake has none of them, so they refuse
// instead of handing out something a caller would dereference.

fn refuse<T>(err: T) -> T {
    set_errno(libc::ENOTSUP);
    err
}

/// glfs_active_subvol (private): NULL, ENOTSUP (no xlator graph in the fake).
#[no_mangle]
pub extern "C" fn glfs_active_subvol(_fs: *mut glfs_t) -> *mut c_void {
    refuse(std::ptr::null_mut())
}

/// glfs_subvol_done (private): releases what glfs_active_subvol gave (nothing).
#[no_mangle]
pub extern "C" fn glfs_subvol_done(_fs: *mut glfs_t, _subvol: *mut c_void) -> c_int {
    0
}

/// glfs_init_done (private): the end of Gluster's asynchronous init; the fake's init is
/// synchronous, so there is nothing to wake.
#[no_mangle]
pub extern "C" fn glfs_init_done(_fs: *mut glfs_t, _ret: c_int) -> c_int {
    0
}

/// glfs_loc_touchup (private): -1, ENOTSUP.
#[no_mangle]
pub extern "C" fn glfs_loc_touchup(_loc: *mut c_void) -> c_int {
    refuse(-1)
}

/// glfs_resolve (private): -1, ENOTSUP.
#[no_mangle]
pub extern "C" fn glfs_resolve(
    _fs: *mut glfs_t,
    _subvol: *mut c_void,
    _path: *const c_char,
    _loc: *mut c_void,
    _iatt: *mut c_void,
    _reval: c_int,
) -> c_int {
    refuse(-1)
}

/// glfs_resolve_at (private): -1, ENOTSUP.
#[no_mangle]
pub extern "C" fn glfs_resolve_at(
    _fs: *mut glfs_t,
    _subvol: *mut c_void,
    _at: *mut c_void,
    _path: *const c_char,
    _loc: *mut c_void,
    _iatt: *mut c_void,
    _follow: c_int,
    _reval: c_int,
) -> c_int {
    refuse(-1)
}

/// glfs_new_from_ctx (private): NULL, ENOTSUP.
#[no_mangle]
pub extern "C" fn glfs_new_from_ctx(_ctx: *mut c_void) -> *mut glfs_t {
    refuse(std::ptr::null_mut())
}

/// glfs_free_from_ctx (private): nothing to free.
#[no_mangle]
pub extern "C" fn glfs_free_from_ctx(_fs: *mut glfs_t) {}

/// glfs_process_upcall_event (private): upcalls reach the fake through its own event
/// log (see `upcall`), never through this entry.
#[no_mangle]
pub extern "C" fn glfs_process_upcall_event(_fs: *mut glfs_t, _data: *mut c_void) {}

/// glfs_iatt_from_statx (private): no `struct iatt` in the fake; does nothing.
#[no_mangle]
pub extern "C" fn glfs_iatt_from_statx(_iatt: *mut c_void, _statx: *const c_void) {}

/// glfs_ipc (private): no translator answers IPC here: -1, EOPNOTSUPP, as a volume
/// without one does.
#[no_mangle]
pub extern "C" fn glfs_ipc(
    fd: *mut glfs_fd_t,
    _op: c_int,
    _xd_in: *mut c_void,
    _xd_out: *mut *mut c_void,
) -> c_int {
    int_call(|| {
        crate::ffi::fd_of(fd)?;
        Err(libc::EOPNOTSUPP)
    })
}
