//! Safe gfapi API over gfapi-sys: volumes, files, sync and async I/O.
//!
//! * [`Gfapi::load`] loads libgfapi once per path (process-wide cache; gfapi keeps global
//!   state, so a process loads a given library once).
//! * [`Volume::connect`] makes one virtual mount (`glfs_new`, `glfs_set_volfile_server` per
//!   server, `glfs_set_logging`, `glfs_init`); `glfs_fini` runs when the last reference
//!   drops. `glfs_fini` can take seconds on real Gluster and repeated new/fini leaks, so
//!   [`Volume::shared`] hands out one mount per (library, volume, servers).
//! * [`File`] does synchronous and asynchronous I/O. An async call's context (buffer,
//!   callback, a reference to the file) is boxed and owned by gfapi until the callback
//!   fires, so nothing gfapi writes into can be freed early and the file (and volume) stay
//!   open while requests are in flight. The context is generic over the caller's callback,
//!   which it holds inline, and its allocation is reused by later requests (spares kept
//!   per layout), so a request allocates nothing of ours in steady state.
//! * Transfers are split into chunks of at most [`MAX_CHUNK`] bytes (gfapi silently wrote
//!   nothing for writes of 1 GiB and more, glusterfs#1518) and short transfers continue
//!   until done or until gfapi reports no progress.
//! * [`Volume::follow_submitters`] has the mount's event threads (which run the callbacks)
//!   move to the CPUs its requests are submitted from ([`follow`]).

use bufpool::Segments;
use bytes::Bytes;
use gfapi_sys as sys;
use libc::{c_int, c_void, ssize_t};
use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

pub use gfapi_sys::LoadError;

pub mod follow;

/// Largest single transfer handed to gfapi; bigger ones are split.
pub const MAX_CHUNK: usize = 256 << 20;

/// The largest of the reply buffer classes gfapi keeps in shared mappings ("arenas" of
/// libglusterfs's iobuf pool, two 1 MiB buffers each): a reply of more than 128 KiB and at
/// most this many bytes takes one. With more such replies in flight than an arena holds, a
/// new arena is mapped and unmapped again as they come back, and every page of it faults
/// in (docs/performance.md). A larger reply is a plain `malloc`.
pub const LARGEST_ARENA_CLASS: usize = 1 << 20;

/// What a read of `len` bytes asks gfapi for when its buffer has room ([`read_room`]):
/// a read just under or at [`LARGEST_ARENA_CLASS`] asks for one page past it, so that
/// neither gfapi's reply buffer nor the brick's (the read plus a 4 KiB alignment page) is
/// one of the arenas' 1 MiB buffers; the extra bytes (file data past the range, or nothing
/// at the file's end) land in the buffer's spare room and are dropped.
pub fn read_room(len: usize) -> usize {
    const SLACK: usize = 64 << 10;
    if len > LARGEST_ARENA_CLASS - SLACK && len <= LARGEST_ARENA_CLASS {
        LARGEST_ARENA_CLASS + 4096
    } else {
        len
    }
}

/// Below this size (4 MiB) malloc serves a request from its heap rather than from a
/// mapping of its own, once a volume is mounted ([`keep_large_buffers_in_heap`]).
pub const HEAP_BELOW: usize = 4 << 20;

/// How much free memory (64 MiB) the top of a malloc heap may keep before it is given
/// back, once a volume is mounted ([`keep_large_buffers_in_heap`]).
pub const HEAP_KEEPS: usize = 64 << 20;

/// Has malloc keep the reply buffers of more than 1 MiB that gfapi allocates for
/// [`read_room`]'s reads (and the process's other allocations below [`HEAP_BELOW`]) in
/// its heaps, and give memory back only past [`HEAP_KEEPS`] free at a heap's top:
/// otherwise glibc's adaptive thresholds (a mapping per allocation above 128 KiB until
/// one is freed, and a trim of a heap's top past twice the last freed mapping) let a few
/// 1 MiB replies in flight map, unmap or trim memory now and then, and every page of it
/// faults in again (docs/performance.md, fifteenth round). Process-wide and set once;
/// [`Volume::connect_with`] calls it. Memory given back stays bounded by the peak.
pub fn keep_large_buffers_in_heap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only sets malloc's parameters; both values fit a c_int.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BELOW as c_int);
            libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_KEEPS as c_int);
        }
    });
}

/// The longest lock owner gfapi takes (GFAPI_MAX_LOCK_OWNER_LEN).
pub const MAX_LOCK_OWNER_LEN: usize = 255;

/// The kind of a byte-range lock ([`File::try_lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Shared (F_RDLCK).
    Read,
    /// Exclusive (F_WRLCK).
    Write,
}

/// A failed gfapi call: which call and the errno it left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Loading the library failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A call returned failure with `errno`.
    #[error("{call} failed: {}", std::io::Error::from_raw_os_error(*.errno))]
    Call { call: &'static str, errno: i32 },
    /// An argument cannot be passed to C (interior NUL byte).
    #[error("invalid argument for {call}: {reason}")]
    InvalidArgument { call: &'static str, reason: String },
    /// gfapi made no progress before the transfer was complete.
    #[error("{call} moved {done} of {wanted} bytes")]
    Short {
        call: &'static str,
        done: usize,
        wanted: usize,
    },
}

impl Error {
    /// The errno behind the error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Call { errno, .. } => Some(*errno),
            Error::InvalidArgument { .. } => Some(libc::EINVAL),
            _ => None,
        }
    }
}

/// The outcome of an async call, given to its callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// gfapi reported failure with this errno.
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Errno(i32),
    /// gfapi reported success but moved fewer bytes than asked, and then none.
    #[error("short transfer: {done} of {wanted} bytes")]
    Short { done: usize, wanted: usize },
}

fn last_errno() -> i32 {
    match std::io::Error::last_os_error().raw_os_error() {
        Some(0) | None => libc::EIO,
        Some(e) => e,
    }
}

/// `Ok` for a gfapi call that returned 0; any other `rc` is [`Error::Call`] naming `call`
/// with the errno it left (read at once, before anything else can change it).
fn check(call: &'static str, rc: libc::c_int) -> Result<(), Error> {
    if rc != 0 {
        return Err(Error::Call {
            call,
            errno: last_errno(),
        });
    }
    Ok(())
}

fn clear_errno() {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = 0 };
}

fn cstring(call: &'static str, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::InvalidArgument {
        call,
        reason: format!("{s:?} contains a NUL byte"),
    })
}

/// The value a getxattr-shaped `call` writes into a buffer of `size` bytes: `get(buffer,
/// size)` returns the length written, or a negative number with errno set.
fn xattr_value(
    call: &'static str,
    size: usize,
    get: impl FnOnce(*mut libc::c_void, usize) -> isize,
) -> Result<Vec<u8>, Error> {
    let mut value = vec![0u8; size];
    clear_errno();
    let n = get(value.as_mut_ptr().cast(), value.len());
    if n < 0 {
        return Err(Error::Call {
            call,
            errno: last_errno(),
        });
    }
    value.truncate(n as usize);
    Ok(value)
}

/// A loaded libgfapi.
pub struct Gfapi {
    sys: sys::Library,
}

impl fmt::Debug for Gfapi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gfapi")
            .field("library", &self.sys.name())
            .finish()
    }
}

impl Gfapi {
    /// Loads libgfapi from `path` (default: `libgfapi.so.0` through the loader). Each path is
    /// loaded once per process; later calls return the same library.
    pub fn load(path: Option<&Path>) -> Result<Arc<Gfapi>, Error> {
        static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Gfapi>>>> = OnceLock::new();
        let key = path.map_or_else(|| PathBuf::from(sys::DEFAULT_LIBRARY), Path::to_path_buf);
        let mut loaded = LOADED.get_or_init(Default::default).lock().unwrap();
        if let Some(lib) = loaded.get(&key) {
            return Ok(lib.clone());
        }
        let lib = Arc::new(Gfapi {
            sys: sys::Library::load(Some(&key))?,
        });
        loaded.insert(key, lib.clone());
        Ok(lib)
    }

    /// Where the library was loaded from.
    pub fn name(&self) -> &str {
        self.sys.name()
    }
}

/// One volfile server of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Server {
    /// `tcp`, `rdma` or `unix`.
    pub transport: String,
    /// Host name or address (IPv6 without brackets), or socket path for `unix`.
    pub host: String,
    /// Port; 0 means gfapi's default (24007).
    pub port: u16,
}

impl Server {
    /// A TCP server on the default port.
    pub fn tcp(host: impl Into<String>) -> Server {
        Server {
            transport: "tcp".into(),
            host: host.into(),
            port: 0,
        }
    }
}

/// A connected volume (`glfs_t`). `glfs_fini` runs on drop.
pub struct Volume {
    lib: Arc<Gfapi>,
    fs: *mut sys::glfs_t,
    name: String,
    servers: Vec<Server>,
    /// Where the mount's event threads run ([`Volume::follow_submitters`]).
    follow: follow::Follow,
    /// Whether the volume's graph has the shard translator (see [`shard_settle`]).
    sharded: OnceLock<bool>,
    /// Until when the shard deletions this mount started may still run: `glfs_fini`
    /// waits for that (see [`shard_settle`]).
    shard_deletions: Mutex<Option<std::time::Instant>>,
}

/// How long after removing a file of `size` bytes (unknown: `None`) on a sharded volume
/// its mount keeps from `glfs_fini`.
///
/// Gluster 10.3's shard translator deletes a removed file's shards in a background task
/// (a synctask started by the unlink, or the rename over it) that `glfs_fini` does not
/// wait for: a mount finished while it runs crashes the process (`inode_ref` on the freed
/// inode table, seen in 3 of 30 runs of a test that removed a 22 MiB sharded file and
/// unmounted at once, none of 18 with a pause); a mount's first lookup starts the same
/// task for what other mounts left to delete. So a mount there waits before its
/// `glfs_fini` until 1 s has passed since it was made and since each removal, and 1 ms
/// for every 4 MiB (the default shard size) of a removed file, at most 30 s.
pub fn shard_settle(size: Option<u64>) -> std::time::Duration {
    let shards = size.map_or(0, |s| s >> 22);
    std::time::Duration::from_millis(1000 + shards.min(29_000))
}

// SAFETY: a glfs_t is designed for use from many threads at once; gfapi locks internally.
unsafe impl Send for Volume {}
// SAFETY: as above.
unsafe impl Sync for Volume {}

impl fmt::Debug for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("servers", &self.servers)
            .finish()
    }
}

/// A client translator option (`glfs_set_xlator_option`): `xlator` may be a pattern such as
/// `*-io-threads`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct XlatorOption {
    pub xlator: String,
    pub key: String,
    pub value: String,
}

/// A shared mount's identity: library, volume, servers and its translator options (in
/// one order), so clients asking for other options get a mount of their own.
type RegistryKey = (String, String, Vec<Server>, Vec<XlatorOption>);

/// `options` in one order, for a registry key.
pub fn options_key(options: &[XlatorOption]) -> Vec<XlatorOption> {
    let mut v = options.to_vec();
    v.sort();
    v.dedup();
    v
}

impl Volume {
    /// Connects a new mount of `volname`: `glfs_new`, `glfs_set_volfile_server` for each
    /// server, `glfs_set_logging(logfile, loglevel)` (no logfile: gfapi's default), `glfs_init`.
    pub fn connect(
        lib: &Arc<Gfapi>,
        volname: &str,
        servers: &[Server],
        logfile: Option<&Path>,
        loglevel: i32,
    ) -> Result<Volume, Error> {
        Volume::connect_with(lib, volname, servers, logfile, loglevel, &[])
    }

    /// [`Volume::connect`], with `glfs_set_xlator_option` for each of `xlator_options`
    /// before `glfs_init`.
    pub fn connect_with(
        lib: &Arc<Gfapi>,
        volname: &str,
        servers: &[Server],
        logfile: Option<&Path>,
        loglevel: i32,
        xlator_options: &[XlatorOption],
    ) -> Result<Volume, Error> {
        keep_large_buffers_in_heap();
        let s = &lib.sys;
        let cvol = cstring("glfs_new", volname)?;
        clear_errno();
        // SAFETY: cvol is a valid C string.
        let fs = unsafe { (s.glfs_new)(cvol.as_ptr()) };
        if fs.is_null() {
            return Err(Error::Call {
                call: "glfs_new",
                errno: last_errno(),
            });
        }
        // From here the Volume owns fs; dropping it calls glfs_fini, also after a failed init
        // (gfapi's documented cleanup).
        let vol = Volume {
            lib: lib.clone(),
            fs,
            name: volname.to_string(),
            servers: servers.to_vec(),
            follow: follow::Follow::default(),
            sharded: OnceLock::new(),
            shard_deletions: Mutex::new(None),
        };
        for server in servers {
            let transport = cstring("glfs_set_volfile_server", &server.transport)?;
            let host = cstring("glfs_set_volfile_server", &server.host)?;
            clear_errno();
            // SAFETY: fs is live, strings are valid.
            let rc = unsafe {
                (s.glfs_set_volfile_server)(
                    fs,
                    transport.as_ptr(),
                    host.as_ptr(),
                    c_int::from(server.port),
                )
            };
            check("glfs_set_volfile_server", rc)?;
        }
        let logfile = logfile
            .map(|p| cstring("glfs_set_logging", &p.to_string_lossy()))
            .transpose()?;
        clear_errno();
        // SAFETY: fs is live; a NULL logfile selects gfapi's default.
        let rc = unsafe {
            (s.glfs_set_logging)(
                fs,
                logfile.as_ref().map_or(std::ptr::null(), |l| l.as_ptr()),
                loglevel,
            )
        };
        check("glfs_set_logging", rc)?;
        for option in xlator_options {
            let call = "glfs_set_xlator_option";
            let (xlator, key, value) = (
                cstring(call, &option.xlator)?,
                cstring(call, &option.key)?,
                cstring(call, &option.value)?,
            );
            clear_errno();
            // SAFETY: fs is live, strings are valid.
            let rc = unsafe {
                (s.glfs_set_xlator_option)(fs, xlator.as_ptr(), key.as_ptr(), value.as_ptr())
            };
            check(call, rc)?;
        }
        clear_errno();
        // SAFETY: fs is live and configured.
        let rc = unsafe { (s.glfs_init)(fs) };
        check("glfs_init", rc)?;
        // A mount's first lookup (in glfs_init) starts the shard translator's deletion of
        // the shards other mounts left to delete: as after a removal, glfs_fini waits.
        vol.removed(None);
        Ok(vol)
    }

    /// Like [`Volume::connect`], but returns the mount already open for the same library,
    /// volume and servers (and no translator options) if there is one. Logging settings of
    /// the first caller win.
    pub fn shared(
        lib: &Arc<Gfapi>,
        volname: &str,
        servers: &[Server],
        logfile: Option<&Path>,
        loglevel: i32,
    ) -> Result<Arc<Volume>, Error> {
        Volume::shared_with(lib, volname, servers, logfile, loglevel, &[])
    }

    /// [`Volume::shared`] with translator options as in [`Volume::connect_with`]: the
    /// options are part of the mount's identity (in any order), so a caller asking for other
    /// options gets a mount of its own rather than one set up differently.
    pub fn shared_with(
        lib: &Arc<Gfapi>,
        volname: &str,
        servers: &[Server],
        logfile: Option<&Path>,
        loglevel: i32,
        xlator_options: &[XlatorOption],
    ) -> Result<Arc<Volume>, Error> {
        type Slot = Arc<Mutex<Weak<Volume>>>;
        static REGISTRY: OnceLock<Mutex<HashMap<RegistryKey, Slot>>> = OnceLock::new();
        let key = (
            lib.name().to_string(),
            volname.to_string(),
            servers.to_vec(),
            options_key(xlator_options),
        );
        // The registry lock is held only to find the volume's slot; the slot's own lock is
        // held across connect, so two openers of one volume do not both mount it, while a
        // slow (or hung) glfs_init of one volume does not hold up the others.
        let slot: Slot = {
            let mut reg = REGISTRY.get_or_init(Default::default).lock().unwrap();
            reg.retain(|k, v| {
                k == &key
                    || Arc::strong_count(v) > 1
                    || v.try_lock().map_or(true, |w| w.strong_count() > 0)
            });
            reg.entry(key).or_default().clone()
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(vol) = slot.upgrade() {
            return Ok(vol);
        }
        let vol = Arc::new(Volume::connect_with(
            lib,
            volname,
            servers,
            logfile,
            loglevel,
            xlator_options,
        )?);
        *slot = Arc::downgrade(&vol);
        Ok(vol)
    }

    /// The volume name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The library this mount was made with (to make another mount of the same volume,
    /// e.g. to reconnect).
    pub fn library(&self) -> &Arc<Gfapi> {
        &self.lib
    }

    /// The volfile servers.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// `glfs_lstat`: the size of `path` in bytes, or the errno (ENOENT when missing).
    pub fn lstat_size(&self, path: &str) -> Result<u64, Error> {
        let cpath = cstring("glfs_lstat", path)?;
        // SAFETY: an all-zero stat is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        clear_errno();
        // SAFETY: fs is live, cpath valid, st writable.
        let rc = unsafe { (self.lib.sys.glfs_lstat)(self.fs, cpath.as_ptr(), &mut st) };
        check("glfs_lstat", rc)?;
        Ok(st.st_size as u64)
    }

    /// `glfs_statvfs(path)`: the bytes free for an unprivileged writer on the volume's
    /// bricks where `path` lives (`f_bavail` blocks of `f_frsize` bytes, or of `f_bsize`
    /// where the fragment size is not given).
    pub fn available_bytes(&self, path: &str) -> Result<u64, Error> {
        let cpath = cstring("glfs_statvfs", path)?;
        // SAFETY: an all-zero statvfs is a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        clear_errno();
        // SAFETY: fs is live, cpath valid, st writable.
        let rc = unsafe { (self.lib.sys.glfs_statvfs)(self.fs, cpath.as_ptr(), &mut st) };
        check("glfs_statvfs", rc)?;
        let unit = if st.f_frsize != 0 {
            st.f_frsize
        } else {
            st.f_bsize
        };
        Ok((st.f_bavail as u64).saturating_mul(unit as u64))
    }

    /// `glfs_rename(from, to)`: replaces `to` atomically when it exists.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let cfrom = cstring("glfs_rename", from)?;
        let cto = cstring("glfs_rename", to)?;
        clear_errno();
        // SAFETY: fs is live, both paths valid NUL-terminated strings.
        let rc = unsafe { (self.lib.sys.glfs_rename)(self.fs, cfrom.as_ptr(), cto.as_ptr()) };
        check("glfs_rename", rc)?;
        // A file it replaced has its shards deleted in the background (the files renamed
        // over here are small records: no size asked).
        self.removed(None);
        Ok(())
    }

    /// Whether the volume's graph has the shard translator: it refuses clients a lookup
    /// of its `/.shard` directory (EPERM), which elsewhere does not exist. Asked once.
    pub fn is_sharded(&self) -> bool {
        *self.sharded.get_or_init(
            || matches!(self.lstat_size("/.shard"), Err(e) if e.errno() == Some(libc::EPERM)),
        )
    }

    /// A file of `size` bytes was removed: on a sharded volume, `glfs_fini` waits
    /// [`shard_settle`] from now.
    fn removed(&self, size: Option<u64>) {
        if !self.is_sharded() {
            return;
        }
        let until = std::time::Instant::now() + shard_settle(size);
        let mut d = self
            .shard_deletions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *d = Some(d.map_or(until, |t| t.max(until)));
    }

    /// `glfs_getxattr(path, name)`: the value of extended attribute `name` of `path` (at
    /// most 64 KiB), e.g. `trusted.glusterfs.pathinfo`, which names the bricks holding
    /// the file (Gluster answers it on a path, not on an fd).
    pub fn getxattr(&self, path: &str, name: &str) -> Result<Vec<u8>, Error> {
        const CALL: &str = "glfs_getxattr";
        let cpath = cstring(CALL, path)?;
        let cname = cstring(CALL, name)?;
        xattr_value(CALL, 64 << 10, |value, size| {
            // SAFETY: fs is live; path and name NUL-terminated; value valid for size bytes.
            unsafe {
                (self.lib.sys.glfs_getxattr)(self.fs, cpath.as_ptr(), cname.as_ptr(), value, size)
            }
        })
    }

    /// Clears every client's entry lock on name `basename` in directory `dir`, granted or
    /// waiting (AFR takes them inside a create or rename on a replicated volume, and a
    /// stopped holder keeps them: the next rename onto that name waits; a stopped
    /// client's waiting request would be granted as the granted ones go, see
    /// [`File::clear_inode_locks`]): the request of `gluster volume clear-locks VOL DIR
    /// kind all entry BASENAME` (`glusterfs.clrlk.tentry.kall.BASENAME`). Returns how
    /// many the bricks say they cleared and withdrew.
    pub fn clear_entry_locks(&self, dir: &str, basename: &str) -> Result<u32, Error> {
        if basename.is_empty() || basename.contains('/') {
            return Err(Error::InvalidArgument {
                call: "glfs_getxattr",
                reason: format!("{basename:?} is not a name in a directory"),
            });
        }
        let answer = self.getxattr(dir, &format!("glusterfs.clrlk.tentry.kall.{basename}"))?;
        let answer = String::from_utf8_lossy(&answer);
        Ok(cleared_count(&answer) + withdrawn_count(&answer))
    }

    /// `glfs_unlink(path)`: removes a file of the volume.
    pub fn unlink(&self, path: &str) -> Result<(), Error> {
        let c = cstring("glfs_unlink", path)?;
        let size = self.lstat_size(path).ok();
        clear_errno();
        // SAFETY: fs is live, the path a valid NUL-terminated string.
        let rc = unsafe { (self.lib.sys.glfs_unlink)(self.fs, c.as_ptr()) };
        check("glfs_unlink", rc)?;
        self.removed(size);
        Ok(())
    }
}

impl Volume {
    /// From now on the mount's event threads (which read the replies and run the
    /// callbacks) confine themselves, every [`follow::WINDOW`] completions, to the CPUs
    /// its requests were submitted from in that window, within the CPUs they may use
    /// (see the `follow` module). For a mount shared by several callers it stays on once
    /// one of them asked for it.
    pub fn follow_submitters(&self) {
        self.follow.enable();
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        // Every File holds an Arc<Volume> and every async context an Arc<File>, so nothing is
        // in flight on this mount any more, but for the shard translator's deletions.
        let settle = *self
            .shard_deletions
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = settle.and_then(|t| t.checked_duration_since(std::time::Instant::now()))
        {
            tracing::debug!(volume = %self.name, ?wait, "waiting for shard deletions before glfs_fini");
            std::thread::sleep(wait);
        }
        // SAFETY: fs is live and dropped exactly once.
        let rc = unsafe { (self.lib.sys.glfs_fini)(self.fs) };
        if rc != 0 {
            tracing::warn!(volume = %self.name, "glfs_fini failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// An open file on a volume (`glfs_fd_t`); `glfs_close` runs on drop.
pub struct File {
    vol: Arc<Volume>,
    fd: *mut sys::glfs_fd_t,
    path: String,
    max_chunk: AtomicUsize,
}

// SAFETY: a glfs_fd_t may be used from several threads; gfapi serialises internally.
unsafe impl Send for File {}
// SAFETY: as above.
unsafe impl Sync for File {}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("volume", &self.vol.name)
            .field("path", &self.path)
            .finish()
    }
}

impl File {
    fn wrap(vol: &Arc<Volume>, fd: *mut sys::glfs_fd_t, path: &str) -> File {
        File {
            vol: vol.clone(),
            fd,
            path: path.to_string(),
            max_chunk: AtomicUsize::new(MAX_CHUNK),
        }
    }

    /// `glfs_open(path, flags)`.
    pub fn open(vol: &Arc<Volume>, path: &str, flags: i32) -> Result<Arc<File>, Error> {
        let cpath = cstring("glfs_open", path)?;
        clear_errno();
        // SAFETY: fs live, cpath valid.
        let fd = unsafe { (vol.lib.sys.glfs_open)(vol.fs, cpath.as_ptr(), flags) };
        if fd.is_null() {
            return Err(Error::Call {
                call: "glfs_open",
                errno: last_errno(),
            });
        }
        Ok(Arc::new(File::wrap(vol, fd, path)))
    }

    /// `glfs_creat(path, flags, mode)`.
    pub fn create(
        vol: &Arc<Volume>,
        path: &str,
        flags: i32,
        mode: u32,
    ) -> Result<Arc<File>, Error> {
        let cpath = cstring("glfs_creat", path)?;
        clear_errno();
        // SAFETY: fs live, cpath valid.
        let fd = unsafe {
            (vol.lib.sys.glfs_creat)(vol.fs, cpath.as_ptr(), flags, mode as libc::mode_t)
        };
        if fd.is_null() {
            return Err(Error::Call {
                call: "glfs_creat",
                errno: last_errno(),
            });
        }
        Ok(Arc::new(File::wrap(vol, fd, path)))
    }

    /// Lowers the largest transfer handed to gfapi in one call (clamped to
    /// `1..=MAX_CHUNK`); for tests and for volumes with smaller limits.
    pub fn set_max_chunk(&self, bytes: usize) {
        self.max_chunk
            .store(bytes.clamp(1, MAX_CHUNK), Ordering::Relaxed);
    }

    /// The largest transfer handed to gfapi in one call.
    pub fn max_chunk(&self) -> usize {
        self.max_chunk.load(Ordering::Relaxed)
    }

    /// The volume the file is on.
    pub fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn sys(&self) -> &sys::Library {
        &self.vol.lib.sys
    }

    /// `glfs_fstat`.
    fn stat(&self) -> Result<libc::stat, Error> {
        // SAFETY: an all-zero stat is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        clear_errno();
        // SAFETY: fd live, st writable.
        let rc = unsafe { (self.sys().glfs_fstat)(self.fd, &mut st) };
        check("glfs_fstat", rc)?;
        Ok(st)
    }

    /// `glfs_fstat`: the file size in bytes.
    pub fn size(&self) -> Result<u64, Error> {
        Ok(self.stat()?.st_size as u64)
    }

    /// `glfs_ftruncate(len)`.
    pub fn truncate(&self, len: u64) -> Result<(), Error> {
        clear_errno();
        // SAFETY: fd live; NULL pre/post stats are allowed.
        let rc = unsafe {
            (self.sys().glfs_ftruncate)(
                self.fd,
                len as libc::off_t,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        check("glfs_ftruncate", rc)
    }

    /// The loop of [`File::pread`], [`File::pwrite`] and [`File::copy_range`]: `step(done,
    /// n)` makes the gfapi call `call` for the `n` bytes (at most [`File::max_chunk`]) after
    /// the first `done` of `len` and returns what it returned. A short transfer continues;
    /// a negative return is [`Error::Call`] with the call's errno, and one that moves
    /// nothing before `len` bytes is [`Error::Short`].
    fn chunked(
        &self,
        call: &'static str,
        len: u64,
        mut step: impl FnMut(u64, usize) -> libc::ssize_t,
    ) -> Result<(), Error> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(self.max_chunk() as u64) as usize;
            clear_errno();
            match step(done, n) {
                rc if rc < 0 => {
                    return Err(Error::Call {
                        call,
                        errno: last_errno(),
                    })
                }
                0 => {
                    return Err(Error::Short {
                        call,
                        done: done as usize,
                        wanted: len as usize,
                    })
                }
                rc => done += (rc as u64).min(n as u64),
            }
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes at `offset` (chunked; short reads continue; end of
    /// file before that is [`Error::Short`]).
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        self.chunked("glfs_pread", buf.len() as u64, |done, n| {
            // SAFETY: fd live; the slice is valid for n writable bytes.
            unsafe {
                (self.sys().glfs_pread)(
                    self.fd,
                    buf[done as usize..].as_mut_ptr().cast(),
                    n,
                    (offset + done) as libc::off_t,
                    0,
                    std::ptr::null_mut(),
                )
            }
        })
    }

    /// Writes all of `buf` at `offset` (chunked; short writes continue).
    pub fn pwrite(&self, buf: &[u8], offset: u64) -> Result<(), Error> {
        self.chunked("glfs_pwrite", buf.len() as u64, |done, n| {
            // SAFETY: fd live; the slice is valid for n readable bytes.
            unsafe {
                (self.sys().glfs_pwrite)(
                    self.fd,
                    buf[done as usize..].as_ptr().cast(),
                    n,
                    (offset + done) as libc::off_t,
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            }
        })
    }

    /// `glfs_fdatasync`.
    pub fn fdatasync(&self) -> Result<(), Error> {
        clear_errno();
        // SAFETY: fd live; NULL stats allowed.
        let rc = unsafe {
            (self.sys().glfs_fdatasync)(self.fd, std::ptr::null_mut(), std::ptr::null_mut())
        };
        check("glfs_fdatasync", rc)
    }

    /// `glfs_fsync`.
    pub fn fsync(&self) -> Result<(), Error> {
        clear_errno();
        // SAFETY: fd live; NULL stats allowed.
        let rc =
            unsafe { (self.sys().glfs_fsync)(self.fd, std::ptr::null_mut(), std::ptr::null_mut()) };
        check("glfs_fsync", rc)
    }

    /// `glfs_discard(offset, len)`.
    pub fn discard(&self, offset: u64, len: u64) -> Result<(), Error> {
        clear_errno();
        // SAFETY: fd live.
        let rc = unsafe {
            (self.sys().glfs_discard)(self.fd, offset as libc::off_t, len as libc::size_t)
        };
        check("glfs_discard", rc)
    }

    /// `glfs_fallocate(mode 0, offset, len)` of bytes inside the file: allocates their
    /// blocks on the bricks (unwritten extents where the file system has them), leaving the
    /// data there and the file's size as they are. Mode 0, not `FALLOC_FL_KEEP_SIZE` (the
    /// same within the size): Gluster's shard translator refuses that one (ENOTSUP).
    pub fn allocate(&self, offset: u64, len: u64) -> Result<(), Error> {
        clear_errno();
        // SAFETY: fd live.
        let rc = unsafe {
            (self.sys().glfs_fallocate)(self.fd, 0, offset as libc::off_t, len as libc::size_t)
        };
        check("glfs_fallocate", rc)
    }

    /// `glfs_fstat`: the bytes the file's blocks take on the volume (`st_blocks` in 512-byte
    /// units): below the size where it has holes.
    pub fn allocated(&self) -> Result<u64, Error> {
        Ok(self.stat()?.st_blocks as u64 * 512)
    }

    /// `glfs_zerofill(offset, len)`.
    pub fn zerofill(&self, offset: u64, len: u64) -> Result<(), Error> {
        clear_errno();
        // SAFETY: fd live.
        let rc = unsafe {
            (self.sys().glfs_zerofill)(self.fd, offset as libc::off_t, len as libc::off_t)
        };
        check("glfs_zerofill", rc)
    }

    /// `glfs_copy_file_range`: copies `len` bytes at `offset` of this file to `dst_offset`
    /// of `dst` (another file of the same volume mount, or this one), inside Gluster
    /// (no data through us). Chunked by [`File::max_chunk`]; a short copy continues, and
    /// one that copies nothing before `len` bytes (the source ended) is [`Error::Short`].
    pub fn copy_range(
        &self,
        offset: u64,
        dst: &File,
        dst_offset: u64,
        len: u64,
    ) -> Result<(), Error> {
        self.chunked("glfs_copy_file_range", len, |done, n| {
            let mut off_in = (offset + done) as i64;
            let mut off_out = (dst_offset + done) as i64;
            // SAFETY: both fds live; the offsets are ours; NULL stats are allowed.
            unsafe {
                (self.sys().glfs_copy_file_range)(
                    self.fd,
                    &mut off_in,
                    dst.fd,
                    &mut off_out,
                    n,
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            }
        })
    }

    /// `glfs_lseek(offset, SEEK_DATA)` (`data`) or `SEEK_HOLE`: the first byte at or after
    /// `offset` that is data (or in a hole), `None` when there is none before the end of
    /// the file (ENXIO). The end of the file counts as a hole.
    pub fn seek(&self, offset: u64, data: bool) -> Result<Option<u64>, Error> {
        let whence = if data {
            libc::SEEK_DATA
        } else {
            libc::SEEK_HOLE
        };
        clear_errno();
        // SAFETY: fd live.
        let rc = unsafe { (self.sys().glfs_lseek)(self.fd, offset as libc::off_t, whence) };
        if rc < 0 {
            return match last_errno() {
                libc::ENXIO => Ok(None),
                errno => Err(Error::Call {
                    call: "glfs_lseek",
                    errno,
                }),
            };
        }
        Ok(Some(rc as u64))
    }

    /// `glfs_fd_set_lkowner`: the lock owner of this fd's later locks
    /// ([`File::try_lock`]), 1 to [`MAX_LOCK_OWNER_LEN`] bytes. On Gluster a lock belongs to
    /// the pair (client, owner): fds of one mount with the same owner share their locks,
    /// any other owner conflicts with them, and closing any fd of an owner releases all of
    /// that owner's locks on the file.
    pub fn set_lock_owner(&self, owner: &[u8]) -> Result<(), Error> {
        if owner.is_empty() || owner.len() > MAX_LOCK_OWNER_LEN {
            return Err(Error::InvalidArgument {
                call: "glfs_fd_set_lkowner",
                reason: format!("a lock owner is 1 to 255 bytes, not {}", owner.len()),
            });
        }
        clear_errno();
        // SAFETY: fd live; gfapi copies the owner's bytes before it returns.
        let rc = unsafe {
            (self.sys().glfs_fd_set_lkowner)(
                self.fd,
                owner.as_ptr().cast_mut().cast(),
                owner.len() as c_int,
            )
        };
        check("glfs_fd_set_lkowner", rc)
    }

    /// `glfs_posix_lock(F_SETLK)` of `kind` on `len` bytes at `start` (advisory): `Ok(true)`
    /// when taken, `Ok(false)` when another owner holds a conflicting lock (EAGAIN or
    /// EACCES). Never waits: callers that want to wait retry with a bound.
    pub fn try_lock(&self, kind: LockKind, start: u64, len: u64) -> Result<bool, Error> {
        let l_type = match kind {
            LockKind::Read => libc::F_RDLCK,
            LockKind::Write => libc::F_WRLCK,
        };
        match self.posix_lock(l_type, start, len) {
            Err(Error::Call { errno, .. }) if errno == libc::EAGAIN || errno == libc::EACCES => {
                Ok(false)
            }
            other => other.map(|()| true),
        }
    }

    /// `glfs_posix_lock(F_SETLK, F_UNLCK)` on `len` bytes at `start`: this owner's locks
    /// there go.
    pub fn unlock(&self, start: u64, len: u64) -> Result<(), Error> {
        self.posix_lock(libc::F_UNLCK, start, len)
    }

    /// `glfs_file_lock(F_SETLK, GLFS_LK_MANDATORY)` of `kind` on `len` bytes at `start`:
    /// `Ok(true)` when taken, `Ok(false)` when another owner holds a conflicting lock.
    /// While it is held, the brick refuses other clients' writes into the range (and
    /// reads, for a write lock) with EAGAIN, on a volume with `locks.mandatory-locking`
    /// (docs/fencing.md: only requests on fds opened `O_NONBLOCK` are refused; a blocking
    /// fd's wait at the brick and land when the lock goes). Never waits.
    pub fn try_lock_mandatory(&self, kind: LockKind, start: u64, len: u64) -> Result<bool, Error> {
        let l_type = match kind {
            LockKind::Read => libc::F_RDLCK,
            LockKind::Write => libc::F_WRLCK,
        };
        match self.file_lock(l_type, start, len, sys::GLFS_LK_MANDATORY) {
            Err(Error::Call { errno, .. }) if errno == libc::EAGAIN || errno == libc::EACCES => {
                Ok(false)
            }
            other => other.map(|()| true),
        }
    }

    /// `glfs_file_lock(F_SETLK, F_UNLCK, GLFS_LK_MANDATORY)` on `len` bytes at `start`:
    /// this owner's mandatory locks there go.
    pub fn unlock_mandatory(&self, start: u64, len: u64) -> Result<(), Error> {
        self.file_lock(libc::F_UNLCK, start, len, sys::GLFS_LK_MANDATORY)
    }

    /// Clears every client's granted POSIX lock (advisory or mandatory) on exactly `len`
    /// bytes at `start` of this file, whoever holds it and whether its holder still runs:
    /// the request of `gluster volume clear-locks VOL PATH kind granted posix 0,START-LEN`,
    /// sent as `glfs_fgetxattr` of the virtual key `glusterfs.clrlk.tposix.kgranted.0,START-LEN`
    /// that the bricks' locks translator answers (docs/fencing.md: measured on 10.3, a
    /// stopped holder's lock goes and another client may take it). Only locks of exactly
    /// that range go. Returns how many the bricks say they cleared (summed over the
    /// bricks' summaries, 0 for "No locks cleared.").
    pub fn clear_granted_locks(&self, start: u64, len: u64) -> Result<u32, Error> {
        let answer = self.clear_locks("tposix", "kgranted", start, len)?;
        Ok(cleared_count(&answer))
    }

    /// Clears every client's inode lock on exactly `len` bytes at `start` of this file
    /// (`len` 0: to the end of the file), granted or waiting: the locks the volume's own
    /// translators take inside a write (AFR's, on a replicated volume; an idle writer
    /// keeps its eager lock), which the next writer from another client waits for until
    /// the holder lets go, and a stopped holder never does (docs/fencing.md, "A stalled
    /// writer's volume locks"). Waiting requests go too, answered EAGAIN: the bricks
    /// grant the requests waiting behind the locks they clear in the same step, and a
    /// stopped client's request granted so would hold the next writer again. The request
    /// of `gluster volume clear-locks VOL PATH kind all inode 0,START-LEN`
    /// (`glusterfs.clrlk.tinode.kall.0,START-LEN`): the locks translator takes only locks
    /// of exactly that range, in every lock domain, so `(0, 0)` takes AFR's transaction
    /// locks (whole-file with `cluster.full-lock` on, its default) and leaves a
    /// self-heal's locks on the chunk it is copying. Returns how many the bricks say they
    /// cleared and withdrew.
    pub fn clear_inode_locks(&self, start: u64, len: u64) -> Result<u32, Error> {
        let answer = self.clear_locks("tinode", "kall", start, len)?;
        Ok(cleared_count(&answer) + withdrawn_count(&answer))
    }

    /// The bricks' answer to clear-locks of locks of `kind_type` (`tposix`, `tinode`) and
    /// `kind` (`kgranted`, `kblocked`, `kall`) on exactly `len` bytes at `start`.
    fn clear_locks(
        &self,
        kind_type: &str,
        kind: &str,
        start: u64,
        len: u64,
    ) -> Result<String, Error> {
        const CALL: &str = "glfs_fgetxattr";
        if i64::try_from(start).is_err() || i64::try_from(len).is_err() {
            return Err(Error::InvalidArgument {
                call: CALL,
                reason: format!("range {start}+{len} is past the largest file offset"),
            });
        }
        let key = CString::new(format!(
            "glusterfs.clrlk.{kind_type}.{kind}.0,{start}-{len}"
        ))
        .expect("no NUL in a formatted key");
        let value = xattr_value(CALL, 4096, |value, size| {
            // SAFETY: fd live; key NUL-terminated; value valid for size bytes.
            unsafe { (self.sys().glfs_fgetxattr)(self.fd, key.as_ptr(), value, size) }
        })?;
        Ok(String::from_utf8_lossy(&value).into_owned())
    }

    /// `F_SETLKW` of `kind` on `len` bytes at `start`, advisory or (`mandatory`) through
    /// `glfs_file_lock` with GLFS_LK_MANDATORY: waits at the bricks until the lock is
    /// granted. A request waiting there is granted the moment the lock in its way goes,
    /// also when clear-locks takes it from its holder ([`File::clear_granted_locks`]: the
    /// locks translator grants waiting requests in the same step, docs/fencing.md), and is
    /// withdrawn by [`File::clear_blocked_locks`] (it then fails with EINTR). Blocks the
    /// calling thread for as long as it waits, with nothing to bound it but that: call it
    /// on a thread of its own (which also keeps gfapi's per-thread lock owner off other
    /// threads).
    pub fn lock_wait(
        &self,
        kind: LockKind,
        start: u64,
        len: u64,
        mandatory: bool,
    ) -> Result<(), Error> {
        let l_type = match kind {
            LockKind::Read => libc::F_RDLCK,
            LockKind::Write => libc::F_WRLCK,
        };
        let mode = if mandatory {
            sys::GLFS_LK_MANDATORY
        } else {
            sys::GLFS_LK_ADVISORY
        };
        self.file_lock_cmd(libc::F_SETLKW, l_type, start, len, mode)
    }

    /// Withdraws every client's lock request waiting at the bricks ([`File::lock_wait`])
    /// on exactly `len` bytes at `start` (they fail with EINTR); granted locks stay: the
    /// request of `gluster volume clear-locks VOL PATH kind blocked posix 0,START-LEN`
    /// (`glusterfs.clrlk.tposix.kblocked.0,START-LEN`). Returns how many the bricks say
    /// they withdrew.
    pub fn clear_blocked_locks(&self, start: u64, len: u64) -> Result<u32, Error> {
        let answer = self.clear_locks("tposix", "kblocked", start, len)?;
        Ok(withdrawn_count(&answer))
    }

    fn posix_lock(&self, l_type: c_int, start: u64, len: u64) -> Result<(), Error> {
        self.file_lock(l_type, start, len, sys::GLFS_LK_ADVISORY)
    }

    /// `F_SETLK` of `l_type` through `glfs_posix_lock` (advisory) or `glfs_file_lock`.
    fn file_lock(&self, l_type: c_int, start: u64, len: u64, mode: c_int) -> Result<(), Error> {
        self.file_lock_cmd(libc::F_SETLK, l_type, start, len, mode)
    }

    /// `cmd` (`F_SETLK` or `F_SETLKW`) of `l_type` through `glfs_posix_lock` (advisory) or
    /// `glfs_file_lock`.
    fn file_lock_cmd(
        &self,
        cmd: c_int,
        l_type: c_int,
        start: u64,
        len: u64,
        mode: c_int,
    ) -> Result<(), Error> {
        let call = if mode == sys::GLFS_LK_ADVISORY {
            "glfs_posix_lock"
        } else {
            "glfs_file_lock"
        };
        let (Ok(l_start), Ok(l_len)) = (libc::off_t::try_from(start), libc::off_t::try_from(len))
        else {
            return Err(Error::InvalidArgument {
                call,
                reason: format!("range {start}+{len} is past the largest file offset"),
            });
        };
        // SAFETY: an all-zero flock is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = l_type as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = l_start;
        fl.l_len = l_len;
        clear_errno();
        // SAFETY: fd live; fl is a valid flock for the call.
        let rc = unsafe {
            if mode == sys::GLFS_LK_ADVISORY {
                (self.sys().glfs_posix_lock)(self.fd, cmd, &mut fl)
            } else {
                (self.sys().glfs_file_lock)(self.fd, cmd, &mut fl, mode)
            }
        };
        check(call, rc)
    }

    /// Reads `len` bytes at `offset` asynchronously; `cb` gets exactly `len` bytes or an
    /// error. The buffer is filled in place and handed over as `Bytes` without a copy.
    ///
    /// `cb` runs on gfapi's callback thread, or on the calling thread if gfapi refuses the
    /// request at once.
    pub fn pread_async(
        self: &Arc<Self>,
        offset: u64,
        len: usize,
        cb: impl FnOnce(Result<Bytes, IoError>) + Send + 'static,
    ) {
        self.pread_async_into(offset, len, Vec::new(), move |r| cb(r.map(Bytes::from)));
    }

    /// As [`File::pread_async`], into `buf` (cleared first, grown to `len` bytes of
    /// capacity only if it has less): for callers that reuse read buffers. `cb` gets `buf`
    /// back holding exactly `len` bytes; on error the buffer is dropped. Given a buffer of
    /// at least [`read_room`]`(len)` bytes of capacity, gfapi is asked for that many.
    pub fn pread_async_into(
        self: &Arc<Self>,
        offset: u64,
        len: usize,
        mut buf: Vec<u8>,
        cb: impl FnOnce(Result<Vec<u8>, IoError>) + Send + 'static,
    ) {
        buf.clear();
        buf.reserve_exact(len);
        let ctx = Ctx::boxed(Ctx {
            file: self.clone(),
            offset,
            op: ReadOp::new(buf, len, cb),
        });
        self.vol.follow.note_submitter();
        submit(ctx);
    }

    /// Writes `data` at `offset` asynchronously (chunked, short writes continue). The
    /// `Bytes` stays owned by the request until `cb` runs.
    pub fn pwrite_async(
        self: &Arc<Self>,
        offset: u64,
        data: Bytes,
        cb: impl FnOnce(Result<(), IoError>) + Send + 'static,
    ) {
        self.pwritev_async(offset, Segments::from(data), cb);
    }

    /// Writes the segments of `data` in order at `offset` asynchronously with
    /// `glfs_pwritev_async` (one iovec of the segments, no copy of ours; chunked at
    /// [`MAX_CHUNK`] and at [`MAX_IOV`] segments, short writes continue). The segments
    /// stay owned by the request until `cb` runs.
    pub fn pwritev_async(
        self: &Arc<Self>,
        offset: u64,
        data: Segments,
        cb: impl FnOnce(Result<(), IoError>) + Send + 'static,
    ) {
        let ctx = Ctx::boxed(Ctx {
            file: self.clone(),
            offset,
            op: WriteOp { data, done: 0, cb },
        });
        self.vol.follow.note_submitter();
        submit(ctx);
    }

    /// `glfs_fdatasync_async`.
    pub fn fdatasync_async(
        self: &Arc<Self>,
        cb: impl FnOnce(Result<(), IoError>) + Send + 'static,
    ) {
        self.simple_async(Simple::Fdatasync, 0, 0, cb);
    }

    /// `glfs_fsync_async`.
    pub fn fsync_async(self: &Arc<Self>, cb: impl FnOnce(Result<(), IoError>) + Send + 'static) {
        self.simple_async(Simple::Fsync, 0, 0, cb);
    }

    /// `glfs_discard_async(offset, len)`.
    pub fn discard_async(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        cb: impl FnOnce(Result<(), IoError>) + Send + 'static,
    ) {
        self.simple_async(Simple::Discard, offset, len, cb);
    }

    /// A request of one gfapi call without data.
    fn simple_async(
        self: &Arc<Self>,
        kind: Simple,
        offset: u64,
        len: u64,
        cb: impl FnOnce(Result<(), IoError>) + Send + 'static,
    ) {
        self.vol.follow.note_submitter();
        submit(Ctx::boxed(Ctx {
            file: self.clone(),
            offset,
            op: SimpleOp {
                kind,
                len,
                cb,
                issued: false,
            },
        }));
    }

    /// `glfs_zerofill_async(offset, len)`.
    pub fn zerofill_async(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        cb: impl FnOnce(Result<(), IoError>) + Send + 'static,
    ) {
        self.simple_async(Simple::Zerofill, offset, len, cb);
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // Every async context holds an Arc<File>, so no request is in flight on fd.
        // SAFETY: fd live and closed exactly once.
        let rc = unsafe { (self.sys().glfs_close)(self.fd) };
        if rc != 0 {
            tracing::warn!(path = %self.path, "glfs_close failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// A request's kinds of gfapi call.
#[derive(Clone, Copy)]
enum Simple {
    Fdatasync,
    Fsync,
    Discard,
    Zerofill,
}

/// One gfapi call of a request. Its pointers point into the request's context, which
/// gfapi owns from the call until the callback.
// A stack temporary of one call: the write's iovecs stay inline (a box would allocate
// per call).
#[allow(clippy::large_enum_variant)]
enum Call {
    Read {
        buf: *mut c_void,
        len: usize,
        offset: libc::off_t,
    },
    Write {
        iov: [libc::iovec; MAX_IOV],
        count: c_int,
        offset: libc::off_t,
    },
    Simple {
        kind: Simple,
        offset: libc::off_t,
        len: u64,
    },
}

/// What one kind of asynchronous request does: its next gfapi call, what a call's
/// result means for it, and how it ends (the caller's callback, held inline: a request
/// context is generic over its `Op`, so the callback needs no box of its own).
trait Op: Send + Sized + 'static {
    /// The next call for what is not yet moved (`offset` is the request's), at most
    /// `max_chunk` bytes; `None` when the request is done.
    fn next_call(&mut self, offset: u64, max_chunk: usize) -> Option<Call>;
    /// Takes in what the last call moved (gfapi's `ret`, not negative): `None` to go on
    /// with the next call, `Some(result)` to end the request with it.
    fn moved(&mut self, ret: usize, max_chunk: usize) -> Option<Result<(), IoError>>;
    /// Ends the request: its callback gets `result`.
    fn finish(self, result: Result<(), IoError>);
    /// The last call failed: `true` to send the next call again instead of ending the
    /// request with the error.
    fn retry_after_failure(&mut self) -> bool {
        false
    }
}

/// A read into `buf`'s spare capacity: `buf.len()` bytes are read so far.
struct ReadOp<F> {
    buf: Vec<u8>,
    want: usize,
    cb: F,
    /// Whether a call may ask past the wanted bytes ([`read_room`]); cleared when a call
    /// that did fails, so that the page past the range (a bad block, say) cannot fail a
    /// read that never wanted it.
    past: bool,
    /// Whether the last call asked past the wanted bytes.
    asked_past: bool,
}

impl<F> ReadOp<F> {
    fn new(buf: Vec<u8>, want: usize, cb: F) -> ReadOp<F> {
        ReadOp {
            buf,
            want,
            cb,
            past: true,
            asked_past: false,
        }
    }
}

impl<F: FnOnce(Result<Vec<u8>, IoError>) + Send + 'static> Op for ReadOp<F> {
    fn next_call(&mut self, offset: u64, max_chunk: usize) -> Option<Call> {
        let done = self.buf.len();
        let room = (self.want - done).min(max_chunk);
        // Asking for more than is wanted (see `read_room`) only where the buffer has the
        // room and the chunk limit allows; `moved` keeps the wanted bytes.
        let ask = match self.past {
            true => read_room(room)
                .min(self.buf.capacity() - done)
                .min(max_chunk)
                .max(room),
            false => room,
        };
        self.asked_past = ask > room;
        (done < self.want).then(|| Call::Read {
            buf: self.buf.spare_capacity_mut().as_mut_ptr().cast::<c_void>(),
            len: ask,
            offset: (offset + done as u64) as libc::off_t,
        })
    }

    fn moved(&mut self, ret: usize, max_chunk: usize) -> Option<Result<(), IoError>> {
        let done = self.buf.len();
        if ret == 0 {
            return Some(Err(IoError::Short {
                done,
                wanted: self.want,
            }));
        }
        let room = (self.want - done).min(max_chunk);
        // SAFETY: gfapi wrote `ret` bytes into the spare capacity the call pointed at (at
        // most what it was asked for, which the capacity holds); of them only the wanted
        // `room` become the buffer's length.
        unsafe { self.buf.set_len(done + ret.min(room)) };
        None
    }

    fn finish(self, result: Result<(), IoError>) {
        (self.cb)(result.map(|()| self.buf))
    }

    fn retry_after_failure(&mut self) -> bool {
        let again = self.asked_past;
        self.past = false;
        self.asked_past = false;
        again
    }
}

/// A write of `data`: `done` bytes of it are written so far.
struct WriteOp<F> {
    data: Segments,
    done: usize,
    cb: F,
}

impl<F: FnOnce(Result<(), IoError>) + Send + 'static> Op for WriteOp<F> {
    fn next_call(&mut self, offset: u64, max_chunk: usize) -> Option<Call> {
        if self.done >= self.data.len() {
            return None;
        }
        let (iov, count, n) = iovecs(&self.data, self.done, max_chunk);
        debug_assert!(n > 0, "a write that is not done has bytes left");
        Some(Call::Write {
            iov,
            count,
            offset: (offset + self.done as u64) as libc::off_t,
        })
    }

    fn moved(&mut self, ret: usize, _max_chunk: usize) -> Option<Result<(), IoError>> {
        if ret == 0 {
            return Some(Err(IoError::Short {
                done: self.done,
                wanted: self.data.len(),
            }));
        }
        self.done += ret.min(self.data.len() - self.done);
        None
    }

    fn finish(self, result: Result<(), IoError>) {
        (self.cb)(result)
    }
}

/// A request of one call (sync, discard, zerofill).
struct SimpleOp<F> {
    kind: Simple,
    len: u64,
    cb: F,
    issued: bool,
}

impl<F: FnOnce(Result<(), IoError>) + Send + 'static> Op for SimpleOp<F> {
    fn next_call(&mut self, offset: u64, _max_chunk: usize) -> Option<Call> {
        (!std::mem::replace(&mut self.issued, true)).then_some(Call::Simple {
            kind: self.kind,
            offset: offset as libc::off_t,
            len: self.len,
        })
    }

    fn moved(&mut self, _ret: usize, _max_chunk: usize) -> Option<Result<(), IoError>> {
        Some(Ok(()))
    }

    fn finish(self, result: Result<(), IoError>) {
        (self.cb)(result)
    }
}

/// What gfapi owns while a request is in flight (passed as the callback's `data`).
struct Ctx<O> {
    file: Arc<File>,
    offset: u64,
    op: O,
}

/// Allocations of finished request contexts, reused by the next requests so that a
/// request costs no allocation in steady state (its callback lives inside its context).
/// Contexts differ in size by their callbacks, so spares are kept per layout: every
/// context type of one size and alignment shares a list. At most [`SPARE_BYTES`] are
/// kept in all (a queue depth's worth for several LUNs); what comes back beyond that is
/// freed.
struct Spares {
    lists: Vec<(Layout, Vec<NonNull<u8>>)>,
    bytes: usize,
}

// SAFETY: the pointers are allocations nobody else holds (uninitialised memory).
unsafe impl Send for Spares {}

static SPARE: Mutex<Spares> = Mutex::new(Spares {
    lists: Vec::new(),
    bytes: 0,
});
/// The most bytes of spare contexts kept.
const SPARE_BYTES: usize = 512 << 10;

fn spares() -> std::sync::MutexGuard<'static, Spares> {
    SPARE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Spares {
    /// A spare allocation of `layout`, if one is kept.
    fn take(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let (_, list) = self.lists.iter_mut().find(|(l, _)| *l == layout)?;
        let spare = list.pop()?;
        self.bytes -= layout.size();
        Some(spare)
    }

    /// Keeps `spare` (an allocation of `layout` from the global allocator) for reuse, or
    /// gives it back to the allocator when the spares are at their limit.
    fn give(&mut self, spare: NonNull<u8>, layout: Layout) {
        if self.bytes + layout.size() > SPARE_BYTES {
            // SAFETY: `spare` was allocated by the global allocator with `layout` and is
            // no longer used.
            return unsafe { std::alloc::dealloc(spare.as_ptr(), layout) };
        }
        let at = match self.lists.iter().position(|(l, _)| *l == layout) {
            Some(at) => at,
            None => {
                self.lists.push((layout, Vec::new()));
                self.lists.len() - 1
            }
        };
        self.lists[at].1.push(spare);
        self.bytes += layout.size();
    }
}

impl<O: Op> Ctx<O> {
    /// `ctx` in a box, a spare allocation if there is one.
    fn boxed(ctx: Ctx<O>) -> Box<Ctx<O>> {
        let spare = spares().take(Layout::new::<Ctx<O>>());
        let memory = match spare {
            // SAFETY: `p` was allocated by the global allocator with the layout of
            // `Ctx<O>` (that of `MaybeUninit<Ctx<O>>`) and nobody else holds it.
            Some(p) => unsafe { Box::from_raw(p.as_ptr().cast::<MaybeUninit<Ctx<O>>>()) },
            None => Box::new_uninit(),
        };
        Box::write(memory, ctx)
    }

    // Boxed because that is how gfapi hands the context back.
    #[allow(clippy::boxed_local)]
    fn finish(self: Box<Self>, result: Result<(), IoError>) {
        let raw = Box::into_raw(self);
        // SAFETY: `raw` is a live, initialised Ctx from a Box (a non-zero-sized one: it
        // holds an Arc); it is read out exactly once, and its allocation is then only
        // kept or freed as memory of its layout.
        let ctx = unsafe { raw.read() };
        spares().give(
            NonNull::new(raw.cast::<u8>()).expect("a Box is never null"),
            Layout::new::<Ctx<O>>(),
        );
        let Ctx { op, file, .. } = ctx;
        op.finish(result);
        release(file);
    }
}

/// Drops a request's file reference. If it is the last one, `glfs_close` (and perhaps
/// `glfs_fini`) must not run on gfapi's own callback thread, where real gfapi would wait
/// for itself, so the final drop moves to a short-lived thread of its own.
fn release(file: Arc<File>) {
    if let Some(file) = Arc::into_inner(file) {
        let spawned = std::thread::Builder::new()
            .name("gfapi-release".into())
            .spawn(move || drop(file));
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread to close a gfapi file: {e}");
        }
    }
}

/// Gives the calling thread the process's own identity in `sys` (once per thread and
/// library). gfapi builds every request's credentials from the submitting thread's
/// identity when one was set, and otherwise asks the kernel each time: `geteuid`,
/// `getegid` and `getgroups` twice per request (`syncop_create_frame`). The values are
/// the ones gfapi would have read, so requests carry the same credentials; a setter that
/// fails leaves that part to gfapi as before.
fn own_identity(sys: &sys::Library) {
    thread_local! {
        static SET_FOR: std::cell::Cell<*const sys::Library> =
            const { std::cell::Cell::new(std::ptr::null()) };
    }
    if SET_FOR.with(|s| std::ptr::eq(s.replace(sys), sys)) {
        return;
    }
    // SAFETY: plain libc calls into a buffer of the size passed; the gfapi setters take
    // values and a pointer to `groups.len()` gids, read during the call only.
    unsafe {
        (sys.glfs_setfsuid)(libc::geteuid());
        (sys.glfs_setfsgid)(libc::getegid());
        let n = libc::getgroups(0, std::ptr::null_mut());
        let mut groups: Vec<libc::gid_t> = vec![0; usize::try_from(n).unwrap_or(0)];
        let n = libc::getgroups(groups.len() as c_int, groups.as_mut_ptr());
        if let Ok(n) = usize::try_from(n) {
            groups.truncate(n);
            (sys.glfs_setfsgroups)(groups.len(), groups.as_ptr());
        }
    }
}

/// Issues the next gfapi call for `ctx` (or completes it if nothing is left).
fn submit<O: Op>(mut ctx: Box<Ctx<O>>) {
    let sys = &ctx.file.vol.lib.sys as *const sys::Library;
    // SAFETY: a loaded library is never unloaded (Gfapi::load keeps each in a process-wide
    // map), so the reference stays valid after ctx goes to gfapi below.
    let sys = unsafe { &*sys };
    own_identity(sys);
    let fd = ctx.file.fd;
    let (offset, max_chunk) = (ctx.offset, ctx.file.max_chunk());
    let Some(call) = ctx.op.next_call(offset, max_chunk) else {
        return ctx.finish(Ok(()));
    };
    let cbk: sys::glfs_io_cbk = Some(io_callback::<O>);
    let data = Box::into_raw(ctx).cast::<c_void>();
    clear_errno();
    // SAFETY: fd live; the call's pointers point into *data (a read's spare capacity of at
    // least `len` bytes, a write's segments, of which `count` iovecs are set), which is
    // freed only by the callback (or below if the submit fails); gfapi copies a write's
    // iovec into its iobuf during the call.
    let rc = unsafe {
        match call {
            Call::Read { buf, len, offset } => {
                (sys.glfs_pread_async)(fd, buf, len, offset, 0, cbk, data)
            }
            Call::Write { iov, count, offset } => {
                (sys.glfs_pwritev_async)(fd, iov.as_ptr(), count, offset, 0, cbk, data)
            }
            Call::Simple { kind, offset, len } => match kind {
                Simple::Fdatasync => (sys.glfs_fdatasync_async)(fd, cbk, data),
                Simple::Fsync => (sys.glfs_fsync_async)(fd, cbk, data),
                Simple::Discard => {
                    (sys.glfs_discard_async)(fd, offset, len as libc::size_t, cbk, data)
                }
                Simple::Zerofill => {
                    (sys.glfs_zerofill_async)(fd, offset, len as libc::off_t, cbk, data)
                }
            },
        }
    };
    if rc != 0 {
        let errno = last_errno();
        // SAFETY: gfapi did not take the request; we own data again.
        let ctx = unsafe { Box::from_raw(data.cast::<Ctx<O>>()) };
        ctx.finish(Err(IoError::Errno(errno)));
    }
}

/// Segments handed to one `glfs_pwritev_async` at most; a write of more continues.
pub const MAX_IOV: usize = 64;

/// The iovecs of `data` from byte `done` on: at most [`MAX_IOV`] of them and `max` bytes.
/// Returns them, how many are set, and the bytes they cover.
fn iovecs(data: &Segments, done: usize, max: usize) -> ([libc::iovec; MAX_IOV], c_int, usize) {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    let (mut count, mut bytes, mut at) = (0, 0, 0);
    for part in data.parts() {
        let (from, to) = (at, at + part.len());
        at = to;
        if to <= done {
            continue;
        }
        if count == MAX_IOV || bytes == max {
            break;
        }
        let skip = done.saturating_sub(from);
        let len = (part.len() - skip).min(max - bytes);
        iov[count] = libc::iovec {
            iov_base: part[skip..].as_ptr().cast_mut().cast::<c_void>(),
            iov_len: len,
        };
        count += 1;
        bytes += len;
    }
    (iov, count as c_int, bytes)
}

/// The callback given to gfapi for requests of `O`; `data` is a `Box<Ctx<O>>` from
/// [`submit`].
unsafe extern "C" fn io_callback<O: Op>(
    _fd: *mut sys::glfs_fd_t,
    ret: ssize_t,
    _prestat: *mut sys::glfs_stat,
    _poststat: *mut sys::glfs_stat,
    data: *mut c_void,
) {
    // errno belongs to this thread and is only meaningful right now.
    let errno = last_errno();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: data is the Box<Ctx<O>> leaked in submit, returned to us exactly once.
        let mut ctx = unsafe { Box::from_raw(data.cast::<Ctx<O>>()) };
        ctx.file.vol.follow.on_completion();
        if ret < 0 {
            if ctx.op.retry_after_failure() {
                return submit(ctx);
            }
            return ctx.finish(Err(IoError::Errno(errno)));
        }
        let max_chunk = ctx.file.max_chunk();
        match ctx.op.moved(ret as usize, max_chunk) {
            Some(result) => ctx.finish(result),
            None => submit(ctx),
        }
    }));
    if outcome.is_err() {
        // Unwinding into C is undefined; a panicking completion is a bug we cannot recover.
        eprintln!("gfapi: panic in an I/O completion callback; aborting");
        std::process::abort();
    }
}

/// The number of granted locks a clear-locks answer reports: the sum of every
/// `granted locks=N` in it (one per brick that cleared any; AFR joins the bricks'
/// answers), 0 for "No locks cleared." or anything else.
pub fn cleared_count(answer: &str) -> u32 {
    count_of(answer, "granted locks=")
}

/// How many waiting lock requests a clear-locks answer of kind `kblocked` says went
/// (`... posix blocked locks=N granted locks=0` per brick, summed).
pub fn withdrawn_count(answer: &str) -> u32 {
    count_of(answer, "blocked locks=")
}

fn count_of(answer: &str, what: &str) -> u32 {
    answer
        .match_indices(what)
        .filter_map(|(at, key)| {
            let digits: String = answer[at + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u32>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_sharded_file_keeps_its_mount_a_second_and_a_millisecond_per_shard() {
        use std::time::Duration;
        assert_eq!(shard_settle(None), Duration::from_secs(1));
        // 22 MiB: five whole 4 MiB shards.
        assert_eq!(shard_settle(Some(22 << 20)), Duration::from_millis(1005));
        // 1 TiB: 262144 shards, capped at 30 s in all.
        assert_eq!(shard_settle(Some(1 << 40)), Duration::from_secs(30));
    }

    /// Whether glibc serves the allocation at `p` from a mapping of its own (the
    /// IS_MMAPPED bit of the chunk's size word, just before the pointer).
    fn mmapped(p: *const u8) -> bool {
        // SAFETY: `p` is a live allocation of the system allocator (glibc malloc): the
        // word before it is its chunk's size field.
        unsafe { p.cast::<usize>().sub(1).read() & 2 != 0 }
    }

    #[test]
    fn after_keep_large_buffers_in_heap_a_3_mib_buffer_comes_from_the_heap() {
        keep_large_buffers_in_heap();
        let from_heap: Vec<u8> = Vec::with_capacity(3 << 20);
        assert!(!mmapped(from_heap.as_ptr()), "below HEAP_BELOW");
        // A fixed threshold, not glibc's adaptive one: above it a mapping still.
        let mapped: Vec<u8> = Vec::with_capacity(HEAP_BELOW + (1 << 20));
        assert!(mmapped(mapped.as_ptr()), "above HEAP_BELOW");
    }

    #[test]
    fn reads_just_under_or_at_one_mib_ask_for_a_page_past_it() {
        // libglusterfs's iobuf classes: replies of 128 KiB or less are malloc'd, up to
        // 1 MiB they come from arenas (the last class 1048576 bytes), larger ones are
        // malloc'd again.
        const MIB: usize = 1_048_576;
        assert_eq!(read_room(MIB), MIB + 4096);
        assert_eq!(read_room(MIB - 4096), MIB + 4096);
        assert_eq!(read_room(MIB - 65_536 + 512), MIB + 4096);
        // Further below the class the extra read would cost more than it saves.
        assert_eq!(read_room(MIB - 65_536), MIB - 65_536);
        assert_eq!(read_room(262_144), 262_144);
        assert_eq!(read_room(4096), 4096);
        assert_eq!(read_room(MIB + 512), MIB + 512);
        assert_eq!(read_room(4 * MIB), 4 * MIB);
    }

    /// The length a read op's next gfapi call asks for.
    fn asked<F: FnOnce(Result<Vec<u8>, IoError>) + Send + 'static>(
        op: &mut ReadOp<F>,
        max_chunk: usize,
    ) -> usize {
        match op.next_call(0, max_chunk) {
            Some(Call::Read { len, .. }) => len,
            _ => panic!("a read op that is not done makes a read call"),
        }
    }

    #[test]
    fn a_read_asks_for_its_room_only_when_its_buffer_has_it_and_keeps_what_was_wanted() {
        const MIB: usize = 1 << 20;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut op = ReadOp::new(
            Vec::with_capacity(MIB + 4096),
            MIB,
            move |r: Result<Vec<u8>, IoError>| tx.send(r).unwrap(),
        );
        assert_eq!(asked(&mut op, MAX_CHUNK), MIB + 4096);
        // gfapi filled the whole call: the wanted bytes are kept, the page past them not.
        assert_eq!(op.moved(MIB + 4096, MAX_CHUNK), None);
        assert_eq!(op.buf.len(), MIB);
        assert!(op.next_call(0, MAX_CHUNK).is_none());
        op.finish(Ok(()));
        assert_eq!(rx.recv().unwrap().map(|b| b.len()), Ok(MIB));

        // At the file's end gfapi returns just the wanted bytes: done as well.
        let mut op = ReadOp::new(
            Vec::with_capacity(MIB + 4096),
            MIB,
            |_: Result<Vec<u8>, IoError>| {},
        );
        assert_eq!(asked(&mut op, MAX_CHUNK), MIB + 4096);
        assert_eq!(op.moved(MIB, MAX_CHUNK), None);
        assert!(op.next_call(0, MAX_CHUNK).is_none());

        // A short answer continues with the rest, asking for as much as the buffer
        // still holds (the rest and the page past it).
        let mut op = ReadOp::new(
            Vec::with_capacity(MIB + 4096),
            MIB,
            |_: Result<Vec<u8>, IoError>| {},
        );
        assert_eq!(op.moved(4096, MAX_CHUNK), None);
        assert_eq!(asked(&mut op, MAX_CHUNK), MIB);
        assert_eq!(op.moved(MIB - 4096, MAX_CHUNK), None);
        assert!(op.next_call(0, MAX_CHUNK).is_none());

        // Without the room in the buffer, or past the chunk limit, only what is wanted.
        let mut op = ReadOp::new(
            Vec::with_capacity(MIB),
            MIB,
            |_: Result<Vec<u8>, IoError>| {},
        );
        assert_eq!(asked(&mut op, MAX_CHUNK), MIB);
        let mut op = ReadOp::new(
            Vec::with_capacity(MIB + 4096),
            MIB,
            |_: Result<Vec<u8>, IoError>| {},
        );
        assert_eq!(asked(&mut op, MIB), MIB);
    }

    #[test]
    fn a_read_that_asked_past_its_range_and_failed_is_sent_again_for_its_range_alone() {
        const MIB: usize = 1 << 20;
        let mut op = ReadOp::new(
            Vec::with_capacity(MIB + 4096),
            MIB,
            |_: Result<Vec<u8>, IoError>| {},
        );
        assert_eq!(asked(&mut op, MAX_CHUNK), MIB + 4096);
        assert!(
            op.retry_after_failure(),
            "the page past the range may be what failed"
        );
        assert_eq!(asked(&mut op, MAX_CHUNK), MIB);
        assert!(
            !op.retry_after_failure(),
            "the range itself failed: the read fails"
        );
        // A read that never asked past its range fails at once.
        let mut op = ReadOp::new(
            Vec::with_capacity(MIB),
            MIB,
            |_: Result<Vec<u8>, IoError>| {},
        );
        assert_eq!(asked(&mut op, MAX_CHUNK), MIB);
        assert!(!op.retry_after_failure());
    }

    #[test]
    fn clear_locks_answers_are_counted_as_the_bricks_word_them() {
        // The answers Gluster 10.3's locks translator gave on the development volume
        // (docs/fencing.md), and two bricks' summaries joined.
        assert_eq!(
            cleared_count("vm:/srv/hastall-brick/b/: posix blocked locks=0 granted locks=1"),
            1
        );
        assert_eq!(cleared_count("No locks cleared."), 0);
        // Inode and entry kinds, as three replica bricks answered on 10.3 (a stopped
        // writer's eager lock on a file; its rename's lock on a name).
        assert_eq!(
            cleared_count(
                "vm:/srv/r3/b3/: inode blocked locks=0 granted locks=1\nvm:/srv/r3/b2/: inode blocked locks=0 granted locks=1\nvm:/srv/r3/b1/: inode blocked locks=0 granted locks=1"
            ),
            3
        );
        assert_eq!(
            cleared_count(
                "vm:/srv/r3/b1/: entry blocked locks=0 granted locks=2\nvm:/srv/r3/b3/: entry blocked locks=0 granted locks=2"
            ),
            4
        );
        assert_eq!(
            cleared_count(
                "n1:/b/: posix blocked locks=0 granted locks=2\nn2:/b/: posix blocked locks=1 granted locks=3"
            ),
            5
        );
        assert_eq!(cleared_count(""), 0);
    }

    #[test]
    fn withdrawn_requests_are_counted_as_the_bricks_word_them() {
        // Gluster 10.3's answer to `kblocked` with one request waiting (hafence-v,
        // docs/fencing.md), and nothing waiting.
        let one = "vm:/srv/hafence-brick/b/: posix blocked locks=1 granted locks=0";
        assert_eq!((withdrawn_count(one), cleared_count(one)), (1, 0));
        assert_eq!(withdrawn_count("No locks cleared."), 0);
        assert_eq!(
            withdrawn_count(
                "n1:/b/: posix blocked locks=1 granted locks=0\nn2:/b/: posix blocked locks=2 granted locks=0"
            ),
            3
        );
    }

    #[test]
    fn missing_library_is_a_load_error_naming_the_path() {
        let err = Gfapi::load(Some(Path::new("/nonexistent/dir/libgfapi.so.0"))).unwrap_err();
        assert!(
            matches!(err, Error::Load(LoadError::Open { .. })),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("cannot load /nonexistent/dir/libgfapi.so.0: "),
            "{err}"
        );
    }

    #[test]
    fn call_errors_name_the_call_and_errno() {
        let err = Error::Call {
            call: "glfs_init",
            errno: libc::ENOTCONN,
        };
        assert_eq!(
            err.to_string(),
            "glfs_init failed: Transport endpoint is not connected (os error 107)"
        );
        assert_eq!(err.errno(), Some(libc::ENOTCONN));
    }

    #[test]
    fn iovecs_cover_the_segments_from_the_bytes_done_within_the_limits() {
        let all = Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<u8>>());
        let mut data = Segments::new();
        for (from, to) in [(0, 100), (100, 400), (400, 1000)] {
            data.push(all.slice(from..to));
        }
        let covered = |done, max| {
            let (iov, count, n) = iovecs(&data, done, max);
            let mut got = Vec::new();
            for v in &iov[..count as usize] {
                // SAFETY: the iovecs point into `data`, alive here.
                got.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len)
                });
            }
            assert_eq!(got.len(), n);
            (count, got)
        };
        assert_eq!(covered(0, MAX_CHUNK), (3, all.to_vec()));
        assert_eq!(covered(150, MAX_CHUNK), (2, all[150..].to_vec()));
        assert_eq!(covered(400, MAX_CHUNK), (1, all[400..].to_vec()));
        assert_eq!(covered(50, 300), (2, all[50..350].to_vec()));
        assert_eq!(covered(1000, MAX_CHUNK), (0, Vec::new()));
        // More segments than one call takes: the first MAX_IOV, the rest in the next.
        let mut many = Segments::new();
        for i in 0..MAX_IOV + 3 {
            many.push(all.slice(i..i + 1));
        }
        let (_, count, n) = iovecs(&many, 0, MAX_CHUNK);
        assert_eq!((count as usize, n), (MAX_IOV, MAX_IOV));
        let (_, count, n) = iovecs(&many, MAX_IOV, MAX_CHUNK);
        assert_eq!((count, n), (3, 3));
    }

    #[test]
    fn spare_contexts_are_reused_by_layout_up_to_the_byte_limit() {
        let mut spares = Spares {
            lists: Vec::new(),
            bytes: 0,
        };
        let small = Layout::from_size_align(320, 8).unwrap();
        let large = Layout::from_size_align(640, 8).unwrap();
        let alloc = |layout: Layout| {
            // SAFETY: a non-zero size.
            NonNull::new(unsafe { std::alloc::alloc(layout) }).unwrap()
        };
        let a = alloc(small);
        spares.give(a, small);
        assert_eq!(spares.bytes, 320);
        assert_eq!(
            spares.take(large),
            None,
            "another layout's spare is not reused"
        );
        assert_eq!(spares.take(small), Some(a));
        assert_eq!((spares.take(small), spares.bytes), (None, 0));
        // Kept until SPARE_BYTES; beyond that what comes back is freed.
        let fit = SPARE_BYTES / 640;
        for _ in 0..fit + 10 {
            spares.give(alloc(large), large);
        }
        assert_eq!(spares.bytes, fit * 640);
        let kept: usize = spares.lists.iter().map(|(_, l)| l.len()).sum();
        assert_eq!(kept, fit);
        while let Some(p) = spares.take(large) {
            // SAFETY: allocated above with `large`.
            unsafe { std::alloc::dealloc(p.as_ptr(), large) };
        }
        // SAFETY: allocated above with `small`.
        unsafe { std::alloc::dealloc(a.as_ptr(), small) };
        assert_eq!(spares.bytes, 0);
    }

    #[test]
    fn max_chunk_stays_below_the_1gib_bug_and_int_range() {
        const { assert!(MAX_CHUNK < (1 << 30)) };
        const { assert!(MAX_CHUNK <= c_int::MAX as usize) };
        assert_eq!(MAX_CHUNK % 4096, 0);
    }
}
