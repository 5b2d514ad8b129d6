//! Byte-range locks: glfs_posix_lock, glfs_file_lock (advisory and mandatory),
//! glfs_fd_set_lkowner.
//!
//! A lock is an open-file-description lock (`F_OFD_SETLK`) on the backing file, so every
//! process on the fake root sees it (two gateways on one volume see each other's locks,
//! as on Gluster) and the kernel drops it when its process dies. Whose lock it is
//! follows Gluster's locks translator, where the owner is the pair (client, lock owner):
//! an fd without a lock owner takes its locks through its own host descriptor, so two
//! such fds conflict even in one process (gfapi's default owner is per fd); after
//! `glfs_fd_set_lkowner` the fd takes them through a [`Locker`] shared by every fd of
//! the same `glfs_t` and inode with the same owner (one more open file description of the
//! backing file), so those fds share their locks, while other owners, other `glfs_t`s
//! and other processes (other clients) conflict with them. Closing any fd of an owner
//! releases all the owner's locks on the file (Gluster's flush does).
//!
//! A mandatory lock is taken a second time on a shadow file of the inode,
//! `<root>/.gfapi-fake-mandatory.<volume>/<gfid>`, held open by the fd. Reads and writes
//! through any other fd first test their range there (F_OFD_GETLK: a write conflicts
//! with any mandatory lock, a read with a mandatory write lock) and fail with EAGAIN, as
//! Gluster's locks translator refuses them; the holder's own fd is not held back. The
//! shadow lock dies with its process too.
//!
//! Clearing (`glfs_fgetxattr`/`glfs_getxattr` of `glusterfs.clrlk.tposix.kgranted.0,S-L`
//! or `.kall.`, what `gluster volume clear-locks` sends) drops every client's granted lock
//! on exactly `[S, S+L)`, also one a stopped process holds, as the bricks do. A host OFD
//! lock of another process cannot be taken away, so the fake moves the range instead: it
//! records the range in `<gfid>.cleared` of the shadow directory with a generation, and
//! from then on every lock request on exactly that range is taken on a range file of the
//! current generation (`<gfid>.S-L.GEN`), where the old holder's lock is not; the old
//! lock, left on the backing file and the shadow, no longer counts for anyone, and a lock
//! on a cleared range fences reads and writes as a mandatory one. Known differences: only
//! `tposix` with a range is modelled (`tinode`, `tentry` clear nothing, a `tinode`
//! range that does not parse is EINVAL; `tposix` without a range is EINVAL), and a
//! request on a range that overlaps a cleared one without being equal still meets the
//! old lock.

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{fd_of, glfs_fd_t, int_call};
use crate::fs::{lock, FdInner, Res};
use crate::gfid;
use libc::{c_int, c_void, flock};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// GFAPI_MAX_LOCK_OWNER_LEN
pub const MAX_LOCK_OWNER_LEN: usize = 255;

const LK_MANDATORY: c_int = 1;

/// Holds the locks of an fd, or of every fd of one lock owner (see the module
/// documentation).
#[derive(Debug, Default)]
pub struct Locker {
    /// The open file description the owner's locks are taken through (`None`: the fd's
    /// own host descriptor).
    file: Option<std::fs::File>,
    /// The shadow file of the owner's mandatory locks (opened on the first one).
    shadow: Mutex<Option<std::fs::File>>,
    /// The range files of cleared ranges this owner locked on, by (start, len, generation).
    ranged: Mutex<HashMap<(i64, i64, u64), std::fs::File>>,
}

impl Locker {
    fn raw(&self, f: &FdInner) -> c_int {
        self.file
            .as_ref()
            .map_or_else(|| f.raw(), |x| x.as_raw_fd())
    }
}

/// (glfs_t, device, inode, owner) -> the owner's locker, while one of its fds is open.
type Owners = HashMap<(usize, u64, u64, Vec<u8>), Weak<Locker>>;

fn io_errno(e: std::io::Error) -> c_int {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The locker of `owner` for the inode of `f` in its `glfs_t`, shared with the other
/// fds of that owner.
fn owner_locker(f: &FdInner, owner: &[u8]) -> Res<Arc<Locker>> {
    static OWNERS: OnceLock<Mutex<Owners>> = OnceLock::new();
    let raw = f.raw();
    let proc_path = format!("/proc/self/fd/{raw}");
    let md = std::fs::metadata(&proc_path).map_err(io_errno)?;
    let key = (f.fs_handle, md.dev(), md.ino(), owner.to_vec());
    let mut owners = lock(OWNERS.get_or_init(Default::default));
    if let Some(l) = owners.get(&key).and_then(Weak::upgrade) {
        return Ok(l);
    }
    // a new open file description of the same inode (renamed or unlinked alike)
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&proc_path)
        .or_else(|_| std::fs::File::open(&proc_path))
        .map_err(io_errno)?;
    let l = Arc::new(Locker {
        file: Some(file),
        shadow: Mutex::new(None),
        ranged: Mutex::new(HashMap::new()),
    });
    owners.retain(|_, w| w.strong_count() > 0);
    owners.insert(key, Arc::downgrade(&l));
    Ok(l)
}

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

/// The locker's descriptor of its shadow file (opened on its first mandatory lock).
fn shadow_of(f: &FdInner, locker: &Locker) -> Res<c_int> {
    let mut s = lock(&locker.shadow);
    if let Some(file) = s.as_ref() {
        return Ok(file.as_raw_fd());
    }
    let p = shadow_path(f)?;
    let io = io_errno;
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let file = open_lock_file(&p).map_err(io)?;
    let raw = file.as_raw_fd();
    *s = Some(file);
    Ok(raw)
}

/// Refuses (EAGAIN) a read or write of `[off, off+len)` through `f` that a mandatory
/// lock of another owner covers (the fd's own owner is not held back). One stat(2) when nobody ever took a mandatory
/// lock on the volume.
pub(crate) fn check_mandatory(f: &FdInner, off: i64, len: usize, write: bool) -> Res<()> {
    let Some(vol) = f.glfs.vol_dir() else {
        return Ok(());
    };
    if !shadow_dir(&vol).is_some_and(|d| d.exists()) || len == 0 || off < 0 {
        return Ok(());
    }
    let locker = lock(&f.locker).clone();
    let own = lock(&locker.shadow).as_ref().map(|s| s.as_raw_fd());
    let probe;
    let raw = match own {
        Some(r) => Some(r),
        None => match std::fs::File::open(shadow_path(f)?) {
            Ok(file) => {
                probe = file;
                Some(probe.as_raw_fd())
            }
            Err(_) => None, // no mandatory lock ever on this inode
        },
    };
    let cleared = crate::handles::fd_gfid(f)
        .map(|g| cleared_ranges(&vol, &g))
        .unwrap_or_default();
    if let Some(raw) = raw {
        // SAFETY: zeroed flock is valid.
        let mut fl: flock = unsafe { std::mem::zeroed() };
        fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        fl.l_start = off;
        fl.l_len = len as i64;
        // SAFETY: a descriptor we own (the fd's shadow or the probe).
        unsafe { ofd(raw, libc::F_OFD_GETLK, &mut fl)? };
        // A lock on a range cleared since no longer counts.
        if fl.l_type != libc::F_UNLCK as i16
            && !cleared
                .iter()
                .any(|c| (c.start, c.len) == (fl.l_start, fl.l_len))
        {
            return Err(libc::EAGAIN);
        }
    }
    // A lock taken on a cleared range lives on its range file.
    let end = off.saturating_add(len as i64);
    for c in &cleared {
        let c_end = if c.len == 0 {
            i64::MAX
        } else {
            c.start.saturating_add(c.len)
        };
        if c.start >= end || c_end <= off {
            continue;
        }
        let own_file = lock(&locker.ranged)
            .get(&(c.start, c.len, c.generation))
            .and_then(|f| f.try_clone().ok());
        let file = match own_file {
            Some(file) => file,
            None => match std::fs::File::open(ranged_path(&vol, f, c)?) {
                Ok(file) => file,
                Err(_) => continue, // nobody locked it since it was cleared
            },
        };
        // SAFETY: zeroed flock is valid.
        let mut rfl: flock = unsafe { std::mem::zeroed() };
        rfl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as i16;
        rfl.l_whence = libc::SEEK_SET as i16;
        rfl.l_start = off;
        rfl.l_len = len as i64;
        // SAFETY: a descriptor we own.
        unsafe { ofd(file.as_raw_fd(), libc::F_OFD_GETLK, &mut rfl)? };
        if rfl.l_type != libc::F_UNLCK as i16 {
            return Err(libc::EAGAIN);
        }
    }
    Ok(())
}

/// A range whose granted locks were cleared, and how many times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cleared {
    start: i64,
    len: i64,
    generation: u64,
}

fn cleared_list_path(vol: &Path, g: &gfid::Gfid) -> Res<PathBuf> {
    Ok(shadow_dir(vol)
        .ok_or(libc::EINVAL)?
        .join(format!("{}.cleared", gfid::to_string(g))))
}

/// The cleared ranges of an inode (none: no file).
fn cleared_ranges(vol: &Path, g: &gfid::Gfid) -> Vec<Cleared> {
    let Ok(p) = cleared_list_path(vol, g) else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string(p) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut w = line.split(' ').map(str::parse::<i64>);
            let (start, len, generation) = (w.next()?.ok()?, w.next()?.ok()?, w.next()?.ok()?);
            Some(Cleared {
                start,
                len,
                generation: u64::try_from(generation).ok()?,
            })
        })
        .collect()
}

fn ranged_path(vol: &Path, f: &FdInner, c: &Cleared) -> Res<PathBuf> {
    let g = crate::handles::fd_gfid(f)?;
    Ok(shadow_dir(vol).ok_or(libc::EINVAL)?.join(format!(
        "{}.{}-{}.{}",
        gfid::to_string(&g),
        c.start,
        c.len,
        c.generation
    )))
}

/// The locker's descriptor of the range file of cleared range `c` (opened, and created,
/// on first use).
fn ranged_of(f: &FdInner, locker: &Locker, vol: &Path, c: &Cleared) -> Res<c_int> {
    let mut r = lock(&locker.ranged);
    if let Some(file) = r.get(&(c.start, c.len, c.generation)) {
        return Ok(file.as_raw_fd());
    }
    let file = open_lock_file(&ranged_path(vol, f, c)?).map_err(io_errno)?;
    let raw = file.as_raw_fd();
    r.insert((c.start, c.len, c.generation), file);
    Ok(raw)
}

/// The range of a clear-locks request, `WHENCE,START-LEN` (`SEEK_SET` only, as the
/// product sends): `(start, len)`, EINVAL when it does not parse.
fn clear_range(range: &str) -> Res<(i64, i64)> {
    let (whence, span) = range.split_once(',').ok_or(libc::EINVAL)?;
    let (start, len) = span.split_once('-').ok_or(libc::EINVAL)?;
    match (
        whence.parse::<i16>(),
        start.parse::<i64>(),
        len.parse::<i64>(),
    ) {
        (Ok(0), Ok(start), Ok(len)) => Ok((start, len)),
        _ => Err(libc::EINVAL),
    }
}

/// `glusterfs.clrlk.*` asked of `host` (a file of volume directory `vol`): the answer
/// the locks translator gives, after dropping every granted POSIX lock on exactly the
/// range named (see the module documentation).
pub(crate) fn clear_locks(vol: &Path, host: &Path, key: &str) -> Res<Vec<u8>> {
    let rest = key.strip_prefix("glusterfs.clrlk.").ok_or(libc::EINVAL)?;
    let mut parts = rest.splitn(3, '.');
    let (kind_type, kind, range) = (parts.next(), parts.next(), parts.next());
    let (granted, blocked) = match kind {
        Some("kgranted") => (true, false),
        Some("kall") => (true, true),
        Some("kblocked") => (false, true),
        _ => return Err(libc::EINVAL),
    };
    match (kind_type, range) {
        (Some("tposix"), _) => {}
        // No inode locks are modelled; a range is checked as the bricks check it.
        (Some("tinode"), Some(range)) => {
            clear_range(range)?;
            return Ok(b"No locks cleared.".to_vec());
        }
        (Some("tinode"), None) | (Some("tentry"), _) => return Ok(b"No locks cleared.".to_vec()),
        _ => return Err(libc::EINVAL),
    }
    let (start, len) = clear_range(range.ok_or(libc::EINVAL)?)?;
    if start < 0 || len < 0 {
        return Ok(b"No locks cleared.".to_vec());
    }
    let g = gfid::of_path(vol, host)?;
    let dir = shadow_dir(vol).ok_or(libc::EINVAL)?;
    std::fs::create_dir_all(&dir).map_err(io_errno)?;
    if blocked {
        // Waiting requests see the count move and fail with EINTR. The answer counts one
        // when one held the next generation's place (the fake does not count the others).
        let next = cleared_ranges(vol, &g)
            .iter()
            .find(|c| (c.start, c.len) == (start, len))
            .map_or(0, |c| c.generation)
            + 1;
        let place = dir.join(format!("{}.{start}-{len}.{next}", gfid::to_string(&g)));
        let waiting = std::fs::File::open(&place).is_ok_and(|file| {
            // SAFETY: zeroed flock is valid; our own descriptor.
            let mut fl: flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as i16;
            fl.l_whence = libc::SEEK_SET as i16;
            fl.l_start = start;
            fl.l_len = len;
            unsafe { ofd(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) }.is_ok()
                && fl.l_type != libc::F_UNLCK as i16
        });
        let path = withdrawals_path(vol, &g, start, len).ok_or(libc::EINVAL)?;
        let tmp = path.with_extension("withdrawn-tmp");
        let n = withdrawals(vol, &g, start, len) + 1;
        std::fs::write(&tmp, format!("{n}\n")).map_err(io_errno)?;
        std::fs::rename(&tmp, &path).map_err(io_errno)?;
        if !granted {
            return Ok(if waiting {
                b"fake-brick: posix blocked locks=1 granted locks=0".to_vec()
            } else {
                b"No locks cleared.".to_vec()
            });
        }
    }
    // One clearing at a time per volume, across processes.
    let guard = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(".clearing"))
        .map_err(io_errno)?;
    ofd_lock_wait(&guard)?;
    let mut list = cleared_ranges(vol, &g);
    let now = list
        .iter()
        .find(|c| (c.start, c.len) == (start, len))
        .copied();
    // Is a lock held on exactly that range where it lives now?
    let mut places = Vec::new();
    match now {
        Some(c) => places.push(dir.join(format!(
            "{}.{}-{}.{}",
            gfid::to_string(&g),
            start,
            len,
            c.generation
        ))),
        None => {
            places.push(host.to_path_buf());
            places.push(dir.join(gfid::to_string(&g)));
        }
    }
    let mut held = false;
    for place in places {
        let Ok(file) = std::fs::File::open(&place) else {
            continue;
        };
        // SAFETY: zeroed flock is valid; our own descriptor.
        let mut fl: flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        fl.l_start = start;
        fl.l_len = len;
        unsafe { ofd(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl)? };
        if fl.l_type != libc::F_UNLCK as i16 && (fl.l_start, fl.l_len) == (start, len) {
            held = true;
        }
    }
    if !held {
        return Ok(b"No locks cleared.".to_vec());
    }
    let generation = now.map_or(1, |c| c.generation + 1);
    list.retain(|c| (c.start, c.len) != (start, len));
    list.push(Cleared {
        start,
        len,
        generation,
    });
    let text: String = list
        .iter()
        .map(|c| format!("{} {} {}\n", c.start, c.len, c.generation))
        .collect();
    let path = cleared_list_path(vol, &g)?;
    let tmp = path.with_extension("cleared-tmp");
    std::fs::write(&tmp, text).map_err(io_errno)?;
    std::fs::rename(&tmp, &path).map_err(io_errno)?;
    drop(guard);
    Ok(b"fake-brick: posix blocked locks=0 granted locks=1".to_vec())
}

unsafe fn lock_impl(fd: *mut glfs_fd_t, cmd: c_int, fl: *mut flock, mode: c_int) -> Res<c_int> {
    let f = fd_of(fd)?;
    if let Err(e) = f.admit("lock", None, 0) {
        // On Gluster a mount's locks go with its lost connection: an unlock asked for
        // then fails, but the lock is gone all the same (not only once the fd closes).
        let unlock = fl
            .as_ref()
            .is_some_and(|l| l.l_type == libc::F_UNLCK as i16);
        if e == libc::ENOTCONN && unlock {
            let _ = lock_admitted(f, cmd, fl, mode);
        }
        return Err(e);
    }
    lock_admitted(f, cmd, fl, mode)
}

/// [`lock_impl`] past the connection and fault gate.
unsafe fn lock_admitted(
    f: Arc<crate::fs::FdInner>,
    cmd: c_int,
    fl: *mut flock,
    mode: c_int,
) -> Res<c_int> {
    if !matches!(f.kind, crate::fs::FdKind::File(_)) {
        return Err(libc::EINVAL);
    }
    let fl = fl.as_mut().ok_or(libc::EINVAL)?;
    // Any mode but GLFS_LK_MANDATORY is advisory, as Gluster 10.3 takes it.
    let cmd = ofd_cmd(cmd)?;
    if cmd == libc::F_OFD_SETLKW && fl.l_type != libc::F_UNLCK as i16 {
        return wait_for_lock(&f, fl, mode);
    }
    let locker = lock(&f.locker).clone();
    let raw = locker.raw(&f);
    if locker.file.is_some() {
        // the owner's descriptor may allow more than this fd: refuse as the fd's would
        let acc = f.flags & libc::O_ACCMODE;
        let t = fl.l_type as c_int;
        if (t == libc::F_WRLCK && acc == libc::O_RDONLY)
            || (t == libc::F_RDLCK && acc == libc::O_WRONLY)
        {
            return Err(libc::EBADF);
        }
    }
    let pid = fl.l_pid;
    if let Some(vol) = f.glfs.vol_dir() {
        if fl.l_whence == libc::SEEK_SET as i16 && shadow_dir(&vol).is_some_and(|d| d.exists()) {
            // (an fd whose inode cannot be named has no cleared range)
            let cleared = crate::handles::fd_gfid(&f)
                .map(|g| cleared_ranges(&vol, &g))
                .unwrap_or_default();
            if let Some(c) = cleared
                .iter()
                .find(|c| (c.start, c.len) == (fl.l_start, fl.l_len))
            {
                // A cleared range: its locks live on the range file of its generation.
                let raw = ranged_of(&f, &locker, &vol, c)?;
                ofd(raw, cmd, fl)?;
                if cmd != libc::F_OFD_GETLK || fl.l_type == libc::F_UNLCK as i16 {
                    fl.l_pid = pid;
                }
                return Ok(0);
            }
        }
    }
    if cmd == libc::F_OFD_GETLK {
        ofd(raw, cmd, fl)?;
        if fl.l_type == libc::F_UNLCK as i16 {
            fl.l_pid = pid;
        }
        return Ok(0);
    }
    let unlock = fl.l_type == libc::F_UNLCK as i16;
    if mode == LK_MANDATORY || (unlock && lock(&locker.shadow).is_some()) {
        // the shadow first: a mandatory lock that cannot be had leaves nothing behind
        let mut sfl = *fl;
        let shadow = shadow_of(&f, &locker)?;
        ofd(shadow, cmd, &mut sfl)?;
        if let Err(e) = ofd(raw, cmd, fl) {
            if !unlock {
                let mut undo = sfl;
                undo.l_type = libc::F_UNLCK as i16;
                let _ = ofd(shadow, libc::F_OFD_SETLK, &mut undo);
            }
            return Err(e);
        }
    } else {
        ofd(raw, cmd, fl)?;
    }
    fl.l_pid = pid;
    Ok(0)
}

/// How often a waiting lock request ([`wait_for_lock`]) looks again.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// F_SETLKW: waits until the lock is granted, as a request queued at the brick. Tried
/// as F_SETLK until the range is free; meanwhile (on a range starting at offset 0 or
/// beyond, `SEEK_SET`) the request holds its place in the queue by locking the range
/// file of the range's *next* clearing generation (`<gfid>.S-L.GEN+1`, which nobody
/// consults before that clearing): when clear-locks takes the range from its holder
/// ([`clear_locks`]), the waiting request is the range's holder from the very moment the
/// clearing is published, as the locks translator grants waiting requests in the same
/// step (`clrlk_clear_posixlk` then `grant_blocked_locks`). One request holds a
/// generation's place; others wait for the next. Clear-locks of `kblocked` (or `kall`)
/// withdraws waiting requests: they fail with EINTR.
unsafe fn wait_for_lock(f: &Arc<crate::fs::FdInner>, fl: &mut flock, mode: c_int) -> Res<c_int> {
    let place = f.glfs.vol_dir().and_then(|vol| {
        let g = crate::handles::fd_gfid(f).ok()?;
        (fl.l_whence == libc::SEEK_SET as i16 && fl.l_start >= 0 && fl.l_len >= 0)
            .then_some((vol, g))
    });
    let withdrawn_at_start = place
        .as_ref()
        .map(|(vol, g)| withdrawals(vol, g, fl.l_start, fl.l_len));
    let mut queued: Option<u64> = None;
    loop {
        if let (Some((vol, g)), Some(at_start)) = (place.as_ref(), withdrawn_at_start) {
            if withdrawals(vol, g, fl.l_start, fl.l_len) != at_start {
                leave_queue(f, fl, queued);
                return Err(libc::EINTR);
            }
            let generation = cleared_ranges(vol, g)
                .iter()
                .find(|c| (c.start, c.len) == (fl.l_start, fl.l_len))
                .map_or(0, |c| c.generation);
            if queued == Some(generation) {
                // The range was cleared while this request held the next place: it is
                // the range's lock now (on the range file of this generation).
                return Ok(0);
            }
            if queued.is_some_and(|q| q < generation) {
                leave_queue(f, fl, queued.take()); // another request had that place
            }
        }
        let mut try_fl = *fl;
        match lock_admitted(f.clone(), libc::F_SETLK, &mut try_fl, mode) {
            Ok(_) => {
                leave_queue(f, fl, queued);
                *fl = try_fl;
                return Ok(0);
            }
            Err(libc::EAGAIN) => {}
            Err(e) => {
                leave_queue(f, fl, queued);
                return Err(e);
            }
        }
        if let (Some((vol, g)), None) = (place.as_ref(), queued) {
            let next = cleared_ranges(vol, g)
                .iter()
                .find(|c| (c.start, c.len) == (fl.l_start, fl.l_len))
                .map_or(0, |c| c.generation)
                + 1;
            let c = Cleared {
                start: fl.l_start,
                len: fl.l_len,
                generation: next,
            };
            let locker = lock(&f.locker).clone();
            if let Ok(raw) = ranged_of(f, &locker, vol, &c) {
                let mut qfl = *fl;
                if ofd(raw, libc::F_OFD_SETLK, &mut qfl).is_ok() {
                    queued = Some(next);
                }
            }
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Gives up the queue place of a waiting request ([`wait_for_lock`]) of generation
/// `queued`.
fn leave_queue(f: &crate::fs::FdInner, fl: &flock, queued: Option<u64>) {
    let Some(generation) = queued else {
        return;
    };
    let locker = lock(&f.locker).clone();
    let file = lock(&locker.ranged).remove(&(fl.l_start, fl.l_len, generation));
    if let Some(file) = file {
        let mut un = *fl;
        un.l_type = libc::F_UNLCK as i16;
        // SAFETY: a descriptor the locker owned.
        let _ = unsafe { ofd(file.as_raw_fd(), libc::F_OFD_SETLK, &mut un) };
    }
}

fn withdrawals_path(vol: &Path, g: &gfid::Gfid, start: i64, len: i64) -> Option<PathBuf> {
    Some(shadow_dir(vol)?.join(format!("{}.{start}-{len}.withdrawn", gfid::to_string(g))))
}

/// How many times waiting requests on exactly `[start, start+len)` were withdrawn.
fn withdrawals(vol: &Path, g: &gfid::Gfid, start: i64, len: i64) -> u64 {
    withdrawals_path(vol, g, start, len)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// glfs_posix_lock: F_SETLK / F_SETLKW / F_GETLK (advisory), per fd.
#[no_mangle]
pub unsafe extern "C" fn glfs_posix_lock(
    fd: *mut glfs_fd_t,
    cmd: c_int,
    flock: *mut flock,
) -> c_int {
    int_call(|| lock_impl(fd, cmd, flock, 0))
}

/// glfs_file_lock (GFAPI_4.0.0): as glfs_posix_lock, `lk_mode` GLFS_LK_MANDATORY (reads
/// and writes through fds of other owners are refused with EAGAIN) or anything else
/// (advisory, as Gluster 10.3 takes an unknown mode).
#[no_mangle]
pub unsafe extern "C" fn glfs_file_lock(
    fd: *mut glfs_fd_t,
    cmd: c_int,
    flock: *mut flock,
    lk_mode: c_int,
) -> c_int {
    int_call(|| lock_impl(fd, cmd, flock, lk_mode))
}

/// On glfs_close of an fd with a lock owner: the owner's locks on the file go, also
/// those taken through its other fds, as Gluster's flush releases every lock of the
/// owner of the closing fd (seen on Gluster 10.3).
pub(crate) fn closing(f: &FdInner) {
    let locker = lock(&f.locker).clone();
    let Some(file) = locker.file.as_ref() else {
        return;
    };
    // SAFETY: zeroed flock is valid; descriptors the locker owns.
    let mut all: flock = unsafe { std::mem::zeroed() };
    all.l_type = libc::F_UNLCK as i16;
    all.l_whence = libc::SEEK_SET as i16;
    let mut shadow_all = all;
    unsafe {
        let _ = ofd(file.as_raw_fd(), libc::F_OFD_SETLK, &mut all);
        let shadow = lock(&locker.shadow).as_ref().map(|s| s.as_raw_fd());
        if let Some(raw) = shadow {
            let _ = ofd(raw, libc::F_OFD_SETLK, &mut shadow_all);
        }
        for file in lock(&locker.ranged).values() {
            let mut range_all = shadow_all;
            let _ = ofd(file.as_raw_fd(), libc::F_OFD_SETLK, &mut range_all);
        }
    }
}

/// glfs_fd_set_lkowner (GFAPI_3.10.7): the fd's later locks are those of this owner
/// (1..=255 bytes), shared with the other fds of the owner (see the module
/// documentation).
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
        if matches!(f.kind, crate::fs::FdKind::File(_)) {
            *lock(&f.locker) = owner_locker(&f, &owner)?;
        }
        *lock(&f.lk_owner) = owner;
        Ok(0)
    })
}

/// The host file whose `fcntl` locks stand for a lock family's locks: opened read-write,
/// created (mode 0666) when missing, never truncated.
fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path)
}
