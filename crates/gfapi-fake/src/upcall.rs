//! Upcalls (cache invalidation) and leases between processes on one fake root.
//!
//! Every process that listens (glfs_upcall_register, glfs_h_poll_upcall, glfs_lease)
//! makes sure the volume's event log `<root>/.gfapi-fake-upcall.<volume>` exists; while
//! it does, every process appends a fixed-size record (GFID, flags, writer pid) for each
//! inode it changes (writes, truncates, attributes, xattrs, names). A listening client
//! reads the records of *other* processes from where it started, keeps those about
//! inodes it holds (objects it looked up or created, files it opened) and reports them
//! as GLFS_UPCALL_INODE_INVALIDATE, as Gluster's cache invalidation does. The instances
//! of one process share a client identity (a change made by one is not reported to
//! another in the same process).
//!
//! Leases live in `<root>/.gfapi-fake-leases.<volume>/<gfid>` (one line per holder: pid,
//! lease id, type), read and written under an open-file-description lock; holders whose
//! process is gone do not count. A conflicting lease is refused with EAGAIN. An open for
//! writing, a write, truncate, allocation or attribute change through an fd of another
//! process (or a read, if the lease is a read-write one) appends a recall record, which the holder's recall callback (glfs_lease) and
//! GLFS_UPCALL_RECALL_LEASE report, and waits, as Gluster's leases translator holds the
//! operation back, until the lease is returned (unlocked, or its process gone) or the
//! recall timeout runs out (`GFAPI_FAKE_LEASE_RECALL_TIMEOUT` seconds in the waiting
//! process, default 60 as Gluster's `features.lease-lock-recall-timeout`); then the lease
//! is revoked (dropped from the file) and the operation goes on.

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{fd_of, glfs_fd_t, glfs_t, int_call, mount_of, set_errno};
use crate::fs::{lock, FdInner, Glfs, Res};
use crate::gfid::{self, Gfid};
use crate::handles::{glfs_object, new_object, objects};
use libc::{c_int, c_void};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// GFAPI_UP_* flags (glfs-handles.h).
pub const UP_NLINK: u32 = 0x1;
/// mode and ctime
pub const UP_MODE: u32 = 0x2;
/// mode, uid, gid, ctime
pub const UP_OWN: u32 = 0x4;
/// size
pub const UP_SIZE: u32 = 0x8;
/// all times
pub const UP_TIMES: u32 = 0x10;
/// a rename
pub const UP_RENAME: u32 = 0x80;
/// parent directory times
pub const UP_PARENT_TIMES: u32 = 0x200;
/// What a write changes.
pub const UP_WRITE: u32 = UP_SIZE | UP_TIMES;
/// What a change of attributes or xattrs changes.
pub const UP_ATTR: u32 = UP_MODE | UP_OWN | UP_TIMES;

const REASON_INVALIDATE: c_int = 1;
const REASON_RECALL: c_int = 2;
const EVENT_INVALIDATE: u32 = 1;
const EVENT_RECALL: u32 = 2;

const MAGIC: u32 = 0x5550_434c; // "UPCL"
const RECORD: usize = 48;
const KIND_INODE: u32 = 1;
const KIND_RECALL: u32 = 2;

/// Whether this process listens at all (spares the others a stat per change).
static INTEREST: AtomicBool = AtomicBool::new(false);

fn log_path(vol: &Path) -> Option<PathBuf> {
    let name = vol.file_name()?.to_string_lossy().into_owned();
    Some(vol.parent()?.join(format!(".gfapi-fake-upcall.{name}")))
}

fn append(vol: &Path, kind: u32, g: &Gfid, flags: u32, lease_type: u32) {
    let Some(p) = log_path(vol) else { return };
    let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&p) else {
        return; // nobody listens on this volume
    };
    let mut rec = [0u8; RECORD];
    rec[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    rec[4..8].copy_from_slice(&kind.to_le_bytes());
    rec[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    rec[12..16].copy_from_slice(&flags.to_le_bytes());
    rec[16..32].copy_from_slice(g);
    rec[32..36].copy_from_slice(&lease_type.to_le_bytes());
    // one write(2) on an O_APPEND file: records never interleave
    let _ = f.write_all(&rec);
}

/// Reports a change of the inode `g` of `m`'s volume.
pub(crate) fn changed(m: &Glfs, g: &Gfid, flags: u32) {
    if let Some(vol) = m.vol_dir() {
        append(&vol, KIND_INODE, g, flags, 0);
    }
}

/// Reports a change of the inode at `host` in `vol`.
pub(crate) fn changed_host(vol: &Path, host: &Path) {
    if log_path(vol).is_some_and(|p| p.exists()) {
        if let Ok(g) = gfid::of_path(vol, host) {
            append(vol, KIND_INODE, &g, UP_ATTR, 0);
        }
    }
}

/// Reports a change of the inode at `host` of `m`'s volume.
pub(crate) fn changed_host_of(m: &Glfs, host: &Path) {
    if let Some(vol) = m.vol_dir() {
        changed_host(&vol, host);
    }
}

/// Reports a change of the directory holding the volume path `rel` (an entry was
/// created, removed or renamed).
pub(crate) fn changed_parent(m: &Glfs, rel: &str) {
    let Some(vol) = m.vol_dir() else { return };
    if !log_path(&vol).is_some_and(|p| p.exists()) {
        return;
    }
    let parent = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    if let Ok(g) = gfid::of_path(&vol, &vol.join(parent.trim_start_matches('/'))) {
        append(
            &vol,
            KIND_INODE,
            &g,
            UP_NLINK | UP_TIMES | UP_PARENT_TIMES,
            0,
        );
    }
}

/// Reports a data change through an open fd (writes, truncates, allocation).
pub(crate) fn changed_fd(f: &FdInner, flags: u32) {
    let Some(vol) = f.glfs.vol_dir() else { return };
    if !log_path(&vol).is_some_and(|p| p.exists()) {
        return;
    }
    if let Ok(g) = crate::handles::fd_gfid(f) {
        append(&vol, KIND_INODE, &g, flags, 0);
    }
}

/// Before a change through `f` (open for writing, write, truncate, allocation,
/// attributes): recalls other processes' leases on its inode and waits until they are
/// returned or revoked (see the module documentation). Nothing to do (one stat(2)) while
/// nobody on the volume listens, as no lease can exist then.
pub(crate) fn before_change(f: &FdInner) {
    recall_conflicting(f, Conflict::Any);
}

/// Before a change by path (`glfs_truncate`), to the file `host` of volume directory
/// `vol`: as [`before_change`], for a file no descriptor of this client has open.
pub(crate) fn before_path_change(vol: &Path, host: &Path) {
    if !log_path(vol).is_some_and(|p| p.exists()) {
        return;
    }
    if let Ok(g) = crate::gfid::of_path(vol, host) {
        recall_others(vol, &g, Conflict::Any);
    }
}

/// Before a read through `f`: recalls other processes' read-write leases on its inode (a
/// read conflicts with another client's write lease, not with its read lease), waiting
/// as [`before_change`] does.
pub(crate) fn before_read(f: &FdInner) {
    recall_conflicting(f, Conflict::ReadWriteOnly);
}

/// Which leases of other clients an operation conflicts with.
#[derive(Clone, Copy, PartialEq)]
enum Conflict {
    /// Every lease (a change).
    Any,
    /// Read-write leases only (a read).
    ReadWriteOnly,
}

fn recall_conflicting(f: &FdInner, conflict: Conflict) {
    let Some(vol) = f.glfs.vol_dir() else { return };
    if !log_path(&vol).is_some_and(|p| p.exists()) {
        return;
    }
    if let Ok(g) = crate::handles::fd_gfid(f) {
        recall_others(&vol, &g, conflict);
    }
}

// ---------------------------------------------------------------------------------------
// clients

struct Registered {
    events: u32,
    cbk: unsafe extern "C" fn(*mut c_void, *mut c_void),
    data: usize,
}

#[derive(Default)]
struct Client {
    held: HashSet<Gfid>,
    offset: Option<u64>,
    queue: VecDeque<(u32, Gfid, u32, u32)>,
    registered: Option<Registered>,
}

fn clients() -> &'static Mutex<HashMap<usize, Client>> {
    static C: OnceLock<Mutex<HashMap<usize, Client>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Notes that the client `fs` holds the inode `g` (it will be told of changes).
pub(crate) fn hold(fs: usize, g: &Gfid) {
    if INTEREST.load(Ordering::Relaxed) {
        lock(clients()).entry(fs).or_default().held.insert(*g);
    }
}

/// Notes an opened fd's inode as held.
pub(crate) fn hold_fd(f: &FdInner) {
    if INTEREST.load(Ordering::Relaxed) {
        if let Ok(g) = crate::handles::fd_gfid(f) {
            hold(f.fs_handle, &g);
        }
    }
}

/// Makes the volume's event log exist and starts `fs` reading it from its end.
fn listen(fs: usize, m: &Glfs) -> Res<()> {
    let vol = m.vol_dir().ok_or(libc::EIO)?;
    let p = log_path(&vol).ok_or(libc::EINVAL)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o666)
        .open(&p)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let end = f.metadata().map(|m| m.len()).unwrap_or(0);
    INTEREST.store(true, Ordering::Relaxed);
    let mut c = lock(clients());
    let cl = c.entry(fs).or_default();
    if cl.offset.is_none() {
        cl.offset = Some(end);
        // the objects this client already has
        for (_, o) in objects().snapshot() {
            if o.fs == fs {
                cl.held.insert(o.gfid);
            }
        }
    }
    Ok(())
}

/// Reads the records written since the last call into `fs`'s queue.
fn pump(fs: usize, m: &Glfs) {
    let Some(vol) = m.vol_dir() else { return };
    let Some(p) = log_path(&vol) else { return };
    let Some(start) = lock(clients()).get(&fs).and_then(|c| c.offset) else {
        return;
    };
    let Ok(mut f) = std::fs::File::open(&p) else {
        return;
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return;
    }
    let whole = buf.len() - buf.len() % RECORD;
    let me = std::process::id();
    let mut c = lock(clients());
    let Some(cl) = c.get_mut(&fs) else { return };
    cl.offset = Some(start + whole as u64);
    let leases = held_leases(fs);
    for rec in buf[..whole].chunks_exact(RECORD) {
        let word = |i: usize| u32::from_le_bytes(rec[i..i + 4].try_into().unwrap());
        if word(0) != MAGIC || word(8) == me {
            continue;
        }
        let g: Gfid = rec[16..32].try_into().unwrap();
        match word(4) {
            KIND_INODE if cl.held.contains(&g) => cl.queue.push_back((KIND_INODE, g, word(12), 0)),
            KIND_RECALL => {
                if let Some(t) = leases.get(&g) {
                    cl.queue.push_back((KIND_RECALL, g, 0, *t));
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// the objects handed to the application

/// `struct glfs_upcall`.
pub struct Upcall {
    fs: usize,
    reason: c_int,
    event: Box<Event>,
}

/// The event inside an upcall (boxed already, and handed out by address).
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// `struct glfs_upcall_inode`
    Inode(UpInode),
    /// `struct glfs_upcall_lease`
    Lease(UpLease),
}

/// `struct glfs_upcall_inode`.
pub struct UpInode {
    object: usize,
    flags: u64,
    stat: libc::stat,
    expire: u64,
    pobject: usize,
    pstat: libc::stat,
}

/// `struct glfs_upcall_lease`.
pub struct UpLease {
    object: usize,
    lease_type: u32,
}

impl Drop for Upcall {
    fn drop(&mut self) {
        let objs = match &*self.event {
            Event::Inode(i) => vec![i.object, i.pobject],
            Event::Lease(l) => vec![l.object],
        };
        for o in objs.into_iter().filter(|&o| o != 0) {
            objects().remove(o);
        }
    }
}

// SAFETY: plain data and registry tokens.
unsafe impl Send for Upcall {}

fn make_upcall(
    fs: usize,
    m: &Arc<Glfs>,
    (kind, g, flags, lease_type): (u32, Gfid, u32, u32),
) -> *mut Upcall {
    // SAFETY: zeroed stat is a valid value.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if let Some(vol) = m.vol_dir() {
        if let Ok(rel) = gfid::find(&vol, &g) {
            if let Ok(c) = crate::fs::cpath(&vol.join(rel.trim_start_matches('/'))) {
                // SAFETY: valid path and out-buffer.
                unsafe { libc::lstat(c.as_ptr(), &mut stat) };
            }
        }
    }
    let object = new_object(fs, m.clone(), g);
    let (reason, event) = if kind == KIND_RECALL {
        (REASON_RECALL, Event::Lease(UpLease { object, lease_type }))
    } else {
        (
            REASON_INVALIDATE,
            Event::Inode(UpInode {
                object,
                flags: u64::from(flags),
                stat,
                expire: 60,
                pobject: 0,
                // SAFETY: zeroed stat is a valid value.
                pstat: unsafe { std::mem::zeroed() },
            }),
        )
    };
    crate::misc::give(Box::new(Upcall {
        fs,
        reason,
        event: Box::new(event),
    }))
}

/// glfs_h_poll_upcall (GFAPI_3.7.16): the next change another client made to an inode
/// this client holds, in `*up_arg` (release with glfs_free); with none pending, `*up_arg`
/// is left alone and errno is ENOENT (as on Gluster 10.3); 0 either way.
/// The first call starts listening.
#[no_mangle]
pub unsafe extern "C" fn glfs_h_poll_upcall(fs: *mut glfs_t, up_arg: *mut *mut Upcall) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        if up_arg.is_null() {
            return Err(libc::EINVAL);
        }
        m.admit("upcall", "/", None, 0)?;
        listen(fs as usize, &m)?;
        pump(fs as usize, &m);
        let next = lock(clients())
            .get_mut(&(fs as usize))
            .and_then(|c| c.queue.pop_front());
        match next {
            Some(e) => *up_arg = make_upcall(fs as usize, &m, e),
            // Gluster 10.3 leaves *up_arg as it was and sets errno ENOENT
            None => set_errno(libc::ENOENT),
        }
        Ok(0)
    })
}

/// `struct glfs_callback_arg` of gfapi 3.7.0.
#[repr(C)]
pub struct CallbackArg370 {
    fs: *mut glfs_t,
    reason: c_int,
    event_arg: *mut c_void,
}

/// `struct glfs_callback_inode_arg` of gfapi 3.7.0.
#[repr(C)]
pub struct CallbackInodeArg370 {
    object: *mut glfs_object,
    flags: c_int,
    buf: libc::stat,
    expire_time_attr: u32,
    p_object: *mut glfs_object,
    p_buf: libc::stat,
    oldp_object: *mut glfs_object,
    oldp_buf: libc::stat,
}

// SAFETY: registry tokens and plain data.
unsafe impl Send for CallbackInodeArg370 {}

impl Drop for CallbackInodeArg370 {
    fn drop(&mut self) {
        objects().remove(self.object as usize);
    }
}

/// glfs_h_poll_upcall@GFAPI_3.7.0: the same events in the 3.7.0 structures: `up_arg`
/// gets the instance, the reason (GLFS_UPCALL_EVENT_NULL when nothing is pending) and
/// a `glfs_callback_inode_arg` to release with glfs_free.
#[no_mangle]
pub unsafe extern "C" fn gfapi_fake_compat_glfs_h_poll_upcall(
    fs: *mut glfs_t,
    up_arg: *mut CallbackArg370,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        let arg = up_arg.as_mut().ok_or(libc::EINVAL)?;
        m.admit("upcall", "/", None, 0)?;
        listen(fs as usize, &m)?;
        pump(fs as usize, &m);
        arg.fs = fs;
        arg.reason = 0;
        arg.event_arg = std::ptr::null_mut();
        let next = lock(clients()).get_mut(&(fs as usize)).and_then(|c| {
            let i = c.queue.iter().position(|e| e.0 == KIND_INODE)?;
            c.queue.remove(i)
        });
        if let Some(e) = next {
            let up = make_upcall(fs as usize, &m, e);
            if let Event::Inode(i) = &*(*up).event {
                let ev = CallbackInodeArg370 {
                    object: new_object(fs as usize, m.clone(), e.1) as *mut glfs_object,
                    flags: i.flags as c_int,
                    buf: i.stat,
                    expire_time_attr: i.expire as u32,
                    p_object: std::ptr::null_mut(),
                    p_buf: i.pstat,
                    oldp_object: std::ptr::null_mut(),
                    oldp_buf: i.pstat,
                };
                arg.reason = REASON_INVALIDATE;
                arg.event_arg = crate::misc::give(Box::new(ev)) as *mut c_void;
            }
            crate::misc::glfs_free(up as *mut c_void);
        }
        Ok(0)
    })
}

/// glfs_upcall_register (GFAPI_3.13.0): `cbk(upcall, data)` for each event of
/// `event_list` (GLFS_EVENT_*), from a thread of the fake; returns the events
/// registered.
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_register(
    fs: *mut glfs_t,
    event_list: u32,
    cbk: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
    data: *mut c_void,
) -> c_int {
    int_call(|| {
        let m = mount_of(fs)?;
        let cbk = cbk.ok_or(libc::EINVAL)?;
        let events = event_list & (EVENT_INVALIDATE | EVENT_RECALL);
        if events == 0 {
            return Err(libc::EINVAL);
        }
        m.admit("upcall", "/", None, 0)?;
        listen(fs as usize, &m)?;
        let start = {
            let mut c = lock(clients());
            let cl = c.entry(fs as usize).or_default();
            let start = cl.registered.is_none();
            cl.registered = Some(Registered {
                events,
                cbk,
                data: data as usize,
            });
            start
        };
        if start {
            let fsu = fs as usize;
            std::thread::Builder::new()
                .name("gfapi-fake-upcall".into())
                .spawn(move || deliver(fsu, m))
                .map_err(|_| libc::EAGAIN)?;
        }
        Ok(events as c_int)
    })
}

/// The delivery thread of a registered client: ends when it unregisters or its
/// instance is finalised.
fn deliver(fs: usize, m: Arc<Glfs>) {
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if !m.is_mounted() {
            break;
        }
        pump(fs, &m);
        loop {
            let (item, reg) = {
                let mut c = lock(clients());
                let Some(cl) = c.get_mut(&fs) else { return };
                let Some(reg) = &cl.registered else { return };
                let reg = (reg.events, reg.cbk, reg.data);
                (cl.queue.pop_front(), reg)
            };
            let Some(item) = item else { break };
            let wanted = if item.0 == KIND_RECALL {
                EVENT_RECALL
            } else {
                EVENT_INVALIDATE
            };
            if item.0 == KIND_RECALL {
                fire_recall_callbacks(fs, &item.1);
            }
            if reg.0 & wanted == 0 {
                continue;
            }
            let up = make_upcall(fs, &m, item);
            // SAFETY: the application's callback with its own data.
            let _ = std::panic::catch_unwind(|| unsafe {
                (reg.1)(up as *mut c_void, reg.2 as *mut c_void)
            });
        }
    }
    if let Some(c) = lock(clients()).get_mut(&fs) {
        c.registered = None;
    }
}

/// glfs_upcall_unregister (GFAPI_3.13.0): stops the events of `event_list`; returns
/// those that were registered.
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_unregister(fs: *mut glfs_t, event_list: u32) -> c_int {
    int_call(|| {
        mount_of(fs)?;
        let mut c = lock(clients());
        let cl = c.get_mut(&(fs as usize)).ok_or(libc::EINVAL)?;
        let reg = cl.registered.as_mut().ok_or(libc::EINVAL)?;
        let gone = reg.events & event_list;
        reg.events &= !event_list;
        if reg.events == 0 {
            cl.registered = None;
        }
        Ok(gone as c_int)
    })
}

unsafe fn upcall_of<'a>(p: *mut Upcall) -> Option<&'a Upcall> {
    if p.is_null() || !crate::misc::is_given(p as usize) {
        set_errno(libc::EINVAL);
        return None;
    }
    Some(&*p)
}

/// glfs_upcall_get_fs (GFAPI_3.7.16)
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_get_fs(arg: *mut Upcall) -> *mut glfs_t {
    upcall_of(arg).map_or(std::ptr::null_mut(), |u| u.fs as *mut glfs_t)
}

/// glfs_upcall_get_reason (GFAPI_3.7.16)
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_get_reason(arg: *mut Upcall) -> c_int {
    upcall_of(arg).map_or(0, |u| u.reason)
}

/// glfs_upcall_get_event (GFAPI_3.7.16): the `glfs_upcall_inode`/`glfs_upcall_lease`.
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_get_event(arg: *mut Upcall) -> *mut c_void {
    upcall_of(arg).map_or(std::ptr::null_mut(), |u| {
        &*u.event as *const Event as *mut c_void
    })
}

unsafe fn inode<'a>(arg: *mut c_void) -> Option<&'a UpInode> {
    match (arg as *const Event).as_ref() {
        Some(Event::Inode(i)) => Some(i),
        _ => None,
    }
}

unsafe fn lease_ev<'a>(arg: *mut c_void) -> Option<&'a UpLease> {
    match (arg as *const Event).as_ref() {
        Some(Event::Lease(l)) => Some(l),
        _ => None,
    }
}

fn obj_ptr(o: usize) -> *mut glfs_object {
    o as *mut glfs_object
}

/// glfs_upcall_inode_get_object
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_inode_get_object(arg: *mut c_void) -> *mut glfs_object {
    inode(arg).map_or(std::ptr::null_mut(), |i| obj_ptr(i.object))
}

/// glfs_upcall_inode_get_flags: GFAPI_UP_* bits.
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_inode_get_flags(arg: *mut c_void) -> u64 {
    inode(arg).map_or(0, |i| i.flags)
}

/// glfs_upcall_inode_get_stat
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_inode_get_stat(arg: *mut c_void) -> *mut libc::stat {
    inode(arg).map_or(std::ptr::null_mut(), |i| &i.stat as *const _ as *mut _)
}

/// glfs_upcall_inode_get_expire: seconds the cached attributes stay valid.
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_inode_get_expire(arg: *mut c_void) -> u64 {
    inode(arg).map_or(0, |i| i.expire)
}

/// glfs_upcall_inode_get_pobject: NULL (the fake reports parents as inodes of their own).
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_inode_get_pobject(arg: *mut c_void) -> *mut glfs_object {
    inode(arg).map_or(std::ptr::null_mut(), |i| {
        if i.pobject == 0 {
            std::ptr::null_mut()
        } else {
            obj_ptr(i.pobject)
        }
    })
}

/// glfs_upcall_inode_get_pstat
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_inode_get_pstat(arg: *mut c_void) -> *mut libc::stat {
    inode(arg).map_or(std::ptr::null_mut(), |i| &i.pstat as *const _ as *mut _)
}

/// glfs_upcall_inode_get_oldpobject: NULL (see pobject).
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_inode_get_oldpobject(_arg: *mut c_void) -> *mut glfs_object {
    std::ptr::null_mut()
}

/// glfs_upcall_inode_get_oldpstat
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_inode_get_oldpstat(arg: *mut c_void) -> *mut libc::stat {
    inode(arg).map_or(std::ptr::null_mut(), |i| &i.pstat as *const _ as *mut _)
}

/// glfs_upcall_lease_get_object (GFAPI_4.1.6)
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_lease_get_object(arg: *mut c_void) -> *mut glfs_object {
    lease_ev(arg).map_or(std::ptr::null_mut(), |l| obj_ptr(l.object))
}

/// glfs_upcall_lease_get_lease_type (GFAPI_4.1.6)
#[no_mangle]
pub unsafe extern "C" fn glfs_upcall_lease_get_lease_type(arg: *mut c_void) -> u32 {
    lease_ev(arg).map_or(0, |l| l.lease_type)
}

// ---------------------------------------------------------------------------------------
// leases

/// `struct glfs_lease`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct glfs_lease {
    /// GLFS_GET_LEASE / GLFS_SET_LEASE / GLFS_UNLK_LEASE
    pub cmd: c_int,
    /// GLFS_RD_LEASE / GLFS_RW_LEASE
    pub lease_type: c_int,
    /// The lease id.
    pub lease_id: [u8; 16],
    /// Flags.
    pub lease_flags: u32,
}

const GET: c_int = 1;
const SET: c_int = 2;
const UNLK: c_int = 3;
const RD: c_int = 1;
const RW: c_int = 2;

type RecallCbk = unsafe extern "C" fn(glfs_lease, *mut c_void);

/// Leases this process holds: (fs, gfid) -> (type, fd token, recall callback, data).
type Held = HashMap<(usize, Gfid), (u32, usize, Option<RecallCbk>, usize)>;

fn held() -> &'static Mutex<Held> {
    static H: OnceLock<Mutex<Held>> = OnceLock::new();
    H.get_or_init(|| Mutex::new(HashMap::new()))
}

fn held_leases(fs: usize) -> HashMap<Gfid, u32> {
    lock(held())
        .iter()
        .filter(|((f, _), _)| *f == fs)
        .map(|((_, g), (t, ..))| (*g, *t))
        .collect()
}

fn fire_recall_callbacks(fs: usize, g: &Gfid) {
    let entry = lock(held()).get(&(fs, *g)).copied();
    if let Some((t, _, Some(cb), data)) = entry {
        let lease = glfs_lease {
            cmd: SET,
            lease_type: t as c_int,
            lease_id: crate::misc::lease_id(),
            lease_flags: 0,
        };
        // SAFETY: the application's recall callback with its own data.
        let _ = std::panic::catch_unwind(|| unsafe { cb(lease, data as *mut c_void) });
    }
}

fn lease_file(vol: &Path, g: &Gfid) -> Option<PathBuf> {
    let name = vol.file_name()?.to_string_lossy().into_owned();
    Some(
        vol.parent()?
            .join(format!(".gfapi-fake-leases.{name}"))
            .join(gfid::to_string(g)),
    )
}

/// Whether the process `pid` still runs: a zombie (exited, not yet reaped by its
/// parent) has dropped its connection as a dead client does.
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // SAFETY: signal 0 only checks for existence.
    let exists =
        unsafe { libc::kill(pid as i32, 0) } == 0 || crate::ffi::last_errno() == libc::EPERM;
    exists && !zombie(pid)
}

/// The state field of /proc/PID/stat (after the parenthesised command name) is `Z`.
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Holders of a lease file: (pid, lease id hex, type), dead processes left out.
fn read_holders(f: &mut std::fs::File) -> Vec<(u32, String, c_int)> {
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_string(&mut s);
    s.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.parse().ok()?,
                w.next()?.to_string(),
                w.next()?.parse().ok()?,
            ))
        })
        .filter(|(pid, _, _)| alive(*pid))
        .collect()
}

fn write_holders(f: &mut std::fs::File, h: &[(u32, String, c_int)]) -> Res<()> {
    let text: String = h
        .iter()
        .map(|(p, id, t)| format!("{p} {id} {t}\n"))
        .collect();
    let io = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    f.set_len(0).map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

/// Opens a lease file under an exclusive OFD lock (released when the file closes).
fn locked_lease_file(p: &Path) -> Res<std::fs::File> {
    let io = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(p)
        .map_err(io)?;
    crate::locks::ofd_lock_wait(&f)?;
    Ok(f)
}

/// How long a recalled lease may be kept before it is revoked:
/// `GFAPI_FAKE_LEASE_RECALL_TIMEOUT` (seconds, fractions allowed), default 60 s as
/// Gluster's `features.lease-lock-recall-timeout`.
pub fn recall_timeout() -> Duration {
    std::env::var("GFAPI_FAKE_LEASE_RECALL_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(60), Duration::from_secs_f64)
}

/// Sends a recall to the holders of conflicting leases on `g` in other processes and
/// waits until none is left; holders still there after [`recall_timeout`] are revoked.
fn recall_others(vol: &Path, g: &Gfid, conflict: Conflict) {
    let Some(p) = lease_file(vol, g) else { return };
    if !p.exists() {
        return;
    }
    let me = std::process::id();
    let mut deadline = None;
    loop {
        let Ok(mut f) = locked_lease_file(&p) else {
            return;
        };
        let mut holders = read_holders(&mut f);
        let conflicting =
            |h: &(u32, String, c_int)| h.0 != me && (conflict == Conflict::Any || h.2 == RW);
        let Some(t) = holders.iter().filter(|h| conflicting(h)).map(|h| h.2).max() else {
            return;
        };
        let now = std::time::Instant::now();
        match deadline {
            None => {
                append(vol, KIND_RECALL, g, 0, t as u32);
                deadline = Some(now + recall_timeout());
            }
            Some(d) if now >= d => {
                holders.retain(|h| !conflicting(h));
                let _ = write_holders(&mut f, &holders);
                return;
            }
            Some(_) => {}
        }
        drop(f); // the lease file's lock: the holder returns its lease under it
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lease_impl(
    fd: &FdInner,
    fdp: usize,
    lease: &mut glfs_lease,
    cb: Option<RecallCbk>,
    data: usize,
) -> Res<c_int> {
    fd.admit("lease", None, 0)?;
    if !matches!(fd.kind, crate::fs::FdKind::File(_)) {
        return Err(libc::EINVAL);
    }
    let vol = fd.glfs.vol_dir().ok_or(libc::EBADF)?;
    let g = crate::handles::fd_gfid(fd)?;
    let p = lease_file(&vol, &g).ok_or(libc::EINVAL)?;
    let mut f = locked_lease_file(&p)?;
    let mut holders = read_holders(&mut f);
    let me = std::process::id();
    let id: String = lease.lease_id.iter().map(|b| format!("{b:02x}")).collect();
    let mine = |h: &(u32, String, c_int)| h.0 == me && h.1 == id;
    match lease.cmd {
        GET => {
            lease.lease_type = holders.iter().map(|h| h.2).max().unwrap_or(0);
            Ok(0)
        }
        SET => {
            if lease.lease_type != RD && lease.lease_type != RW {
                return Err(libc::EINVAL);
            }
            let conflict = holders
                .iter()
                .any(|h| !mine(h) && (lease.lease_type == RW || h.2 == RW));
            if conflict {
                return Err(libc::EAGAIN);
            }
            holders.retain(|h| !mine(h));
            holders.push((me, id, lease.lease_type));
            write_holders(&mut f, &holders)?;
            INTEREST.store(true, Ordering::Relaxed);
            listen(fd.fs_handle, &fd.glfs)?;
            lock(held()).insert((fd.fs_handle, g), (lease.lease_type as u32, fdp, cb, data));
            ensure_recall_watcher(fd.fs_handle, fd.glfs.clone());
            Ok(0)
        }
        UNLK => {
            let before = holders.len();
            holders.retain(|h| !mine(h));
            if holders.len() == before {
                return Err(libc::EINVAL);
            }
            write_holders(&mut f, &holders)?;
            lock(held()).remove(&(fd.fs_handle, g));
            Ok(0)
        }
        _ => Err(libc::EINVAL),
    }
}

/// Without glfs_upcall_register, a thread still delivers recalls to glfs_lease's
/// callback.
fn ensure_recall_watcher(fs: usize, m: Arc<Glfs>) {
    let registered = lock(clients())
        .get(&fs)
        .is_some_and(|c| c.registered.is_some());
    static WATCHING: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    let w = WATCHING.get_or_init(|| Mutex::new(HashSet::new()));
    if registered || !lock(w).insert(fs) {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("gfapi-fake-recall".into())
        .spawn(move || {
            while m.is_mounted() && !held_leases(fs).is_empty() {
                std::thread::sleep(Duration::from_millis(20));
                if lock(clients())
                    .get(&fs)
                    .is_some_and(|c| c.registered.is_some())
                {
                    break; // the delivery thread takes over
                }
                pump(fs, &m);
                let recalls: Vec<Gfid> = {
                    let mut c = lock(clients());
                    let Some(cl) = c.get_mut(&fs) else { break };
                    let (r, keep): (Vec<_>, Vec<_>) =
                        cl.queue.drain(..).partition(|e| e.0 == KIND_RECALL);
                    cl.queue.extend(keep);
                    r.into_iter().map(|e| e.1).collect()
                };
                for g in recalls {
                    fire_recall_callbacks(fs, &g);
                }
            }
            lock(w).remove(&fs);
        });
}

/// glfs_lease (GFAPI_4.0.0): GET/SET/UNLK a read or read-write lease on an open file,
/// shared by every process on the fake root; `fn_(lease, data)` is called when another
/// process wants the file.
#[no_mangle]
pub unsafe extern "C" fn glfs_lease(
    glfd: *mut glfs_fd_t,
    lease: *mut glfs_lease,
    fn_: Option<RecallCbk>,
    data: *mut c_void,
) -> c_int {
    int_call(|| {
        let f = fd_of(glfd)?;
        let l = lease.as_mut().ok_or(libc::EINVAL)?;
        lease_impl(&f, glfd as usize, l, fn_, data as usize)
    })
}

/// glfs_h_lease (GFAPI_4.0.0): glfs_lease on the object's file (opened for it).
#[no_mangle]
pub unsafe extern "C" fn glfs_h_lease(
    fs: *mut glfs_t,
    object: *mut glfs_object,
    lease: *mut glfs_lease,
) -> c_int {
    int_call(|| {
        let l = lease.as_mut().ok_or(libc::EINVAL)?;
        let fd = crate::handles::glfs_h_open(fs, object, libc::O_RDONLY);
        if fd.is_null() {
            return Err(crate::ffi::last_errno());
        }
        let f = fd_of(fd)?;
        let r = lease_impl(&f, fd as usize, l, None, 0);
        crate::ffi::glfs_close(fd);
        r
    })
}
