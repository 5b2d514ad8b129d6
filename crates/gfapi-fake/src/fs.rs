//! The file-backed "virtual mount" (`glfs_t`) and open files (`glfs_fd_t`).

use crate::faults::{self, Decision, FaultSource, OpCtx};
use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// Result with an errno as error.
pub type Res<T> = Result<T, i32>;

/// Environment variable naming the root directory that holds one directory per volume.
pub const ENV_ROOT: &str = "GFAPI_FAKE_ROOT";
/// Environment variable naming the fault rules file (default `$GFAPI_FAKE_ROOT/.faults.toml`).
pub const ENV_FAULTS: &str = "GFAPI_FAKE_FAULTS";
/// Name of the default rules file inside the root.
pub const FAULTS_FILE: &str = ".faults.toml";

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where glfs_set_logging sends messages.
#[derive(Debug)]
enum LogTarget {
    None,
    Stderr,
    File(std::fs::File),
}

/// gluster log levels (GF_LOG_*).
pub mod level {
    /// GF_LOG_ERROR
    pub const ERROR: i32 = 4;
    /// GF_LOG_WARNING
    pub const WARNING: i32 = 5;
    /// GF_LOG_INFO
    pub const INFO: i32 = 7;
}

#[derive(Debug)]
struct Logger {
    target: LogTarget,
    level: i32,
}

#[derive(Debug, Default)]
struct MountState {
    /// The volume directory once glfs_init succeeded.
    vol_dir: Option<PathBuf>,
    faults: Option<Arc<FaultSource>>,
    /// Some(generation) while disconnected by a fault rule.
    disconnected: Option<u64>,
    /// glfs_fini started: no new async submissions; queued ones still run.
    closing: bool,
    finalized: bool,
}

/// One `glfs_t`: a volume name, its (ignored) servers, a logger and, after init, the
/// volume directory.
#[derive(Debug)]
pub struct Glfs {
    volname: String,
    servers: Mutex<Vec<(String, String, i32)>>,
    xlator_options: Mutex<Vec<(String, String, String)>>,
    log: Mutex<Logger>,
    root_override: Mutex<Option<PathBuf>>,
    state: Mutex<MountState>,
    inflight: Mutex<usize>,
    idle: Condvar,
    /// Working directory of relative paths (glfs_chdir), a normalised volume path.
    cwd: Mutex<String>,
    /// The volfile given to glfs_set_volfile.
    volfile: Mutex<Option<PathBuf>>,
    /// Where glfs_sysrq('s') writes statedumps.
    statedump_path: Mutex<Option<String>>,
    /// The mount's write-behind cache (see [`Glfs::write_behind`]): writes acknowledged
    /// but not yet on the backing file, in the order they were made. The lock is held
    /// while a flush writes them out, so no read of this mount passes a write between
    /// the cache and the file.
    wb: Mutex<WriteBehind>,
    /// The mount's cached lookups (see [`Glfs::md_cache_get`]), by normalised volume path.
    md_cache: Mutex<HashMap<String, CachedLookup>>,
}

/// A lookup kept by a mount's md-cache model: the inode the name resolved to, its
/// attributes then, and when.
pub struct CachedLookup {
    /// The inode's GFID.
    pub gfid: crate::gfid::Gfid,
    /// Its attributes as looked up (`lstat`).
    pub stat: libc::stat,
    at: std::time::Instant,
}

impl std::fmt::Debug for CachedLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedLookup")
            .field("gfid", &crate::gfid::to_string(&self.gfid))
            .field("at", &self.at)
            .finish()
    }
}

/// A backing file's (device, inode): Gluster's write-behind is per inode.
pub type Inode = (u64, u64);

/// A mount's write-behind cache (see [`Glfs::write_behind`]).
#[derive(Debug, Default)]
struct WriteBehind {
    /// Writes acknowledged but not yet on the backing file, oldest first.
    writes: Vec<CachedWrite>,
    /// Failures of flushed writes not yet reported, per inode (the first one).
    errors: Vec<(Inode, i32)>,
}

/// A write held in a mount's write-behind cache.
#[derive(Debug)]
struct CachedWrite {
    inode: Inode,
    offset: i64,
    data: Vec<u8>,
    /// The backing file (a duplicate of the writing fd's descriptor).
    file: std::fs::File,
}

/// What an operation may do after passing the connection and fault checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Admit {
    /// Transfer at most this many bytes.
    pub short: Option<u64>,
    /// A rule asks for write-behind on this write (see [`Glfs::write_behind`]).
    pub write_behind: bool,
    /// A rule gives the brick disk's logical sector size (else [`DIRECT_ALIGN`]).
    pub sector_size: Option<u64>,
    /// A rule turns the md-cache model on for this path call, with the volume's
    /// `performance.md-cache-timeout` in seconds (see [`Glfs::md_cache_get`]).
    pub md_cache: Option<u64>,
    /// A rule puts the file on a sharded volume (`glfs_fallocate`'s modes, see
    /// `crate::ffi::op_fallocate`).
    pub shard: bool,
}

impl Admit {
    /// The alignment of offset and length an `O_DIRECT` read or write needs.
    pub fn direct_align(&self) -> u64 {
        self.sector_size.unwrap_or(DIRECT_ALIGN)
    }
}

impl Admit {
    /// Clamps a transfer length by the short-I/O effect.
    pub fn clamp(&self, len: usize) -> usize {
        match self.short {
            Some(s) => len.min(usize::try_from(s).unwrap_or(usize::MAX)),
            None => len,
        }
    }
}

impl Glfs {
    /// A new, uninitialised instance for `volname`.
    pub fn new(volname: &str) -> Glfs {
        Glfs {
            volname: volname.to_string(),
            servers: Mutex::new(Vec::new()),
            xlator_options: Mutex::new(Vec::new()),
            log: Mutex::new(Logger {
                target: LogTarget::None,
                level: level::INFO,
            }),
            root_override: Mutex::new(None),
            state: Mutex::new(MountState::default()),
            inflight: Mutex::new(0),
            idle: Condvar::new(),
            cwd: Mutex::new("/".to_string()),
            volfile: Mutex::new(None),
            statedump_path: Mutex::new(None),
            wb: Mutex::new(WriteBehind::default()),
            md_cache: Mutex::new(HashMap::new()),
        }
    }

    /// The volume name.
    pub fn volname(&self) -> &str {
        &self.volname
    }

    /// Records a volfile server (the fake never connects anywhere).
    pub fn add_server(&self, transport: &str, host: &str, port: i32) {
        lock(&self.servers).push((transport.to_string(), host.to_string(), port));
    }

    /// Removes a volfile server; ENOENT... real gfapi returns -1 when it is unknown.
    pub fn remove_server(&self, transport: &str, host: &str, port: i32) -> Res<()> {
        let mut s = lock(&self.servers);
        let before = s.len();
        s.retain(|(t, h, p)| !(t == transport && h == host && (*p == port || port == 0)));
        if s.len() == before {
            return Err(libc::EINVAL);
        }
        Ok(())
    }

    /// The volfile servers recorded so far.
    pub fn servers(&self) -> Vec<(String, String, i32)> {
        lock(&self.servers).clone()
    }

    /// Records an xlator option (no effect on the fake).
    pub fn set_xlator_option(&self, xlator: &str, key: &str, value: &str) {
        lock(&self.xlator_options).push((xlator.into(), key.into(), value.into()));
    }

    /// Uses `root` instead of `$GFAPI_FAKE_ROOT` (for tests running in one process).
    pub fn set_root(&self, root: &Path) {
        *lock(&self.root_override) = Some(root.to_path_buf());
    }

    /// glfs_set_logging: `None` or "" keeps logging off, "-" and "/dev/stderr" log to stderr.
    pub fn set_logging(&self, file: Option<&str>, lvl: i32) -> Res<()> {
        let target = match file {
            None | Some("") => LogTarget::None,
            Some("-") | Some("/dev/stderr") => LogTarget::Stderr,
            Some(path) => LogTarget::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?,
            ),
        };
        *lock(&self.log) = Logger { target, level: lvl };
        self.log(level::INFO, &format!("logging set up at level {lvl}"));
        Ok(())
    }

    /// Writes a log line if `lvl` is enabled.
    pub fn log(&self, lvl: i32, msg: &str) {
        let mut l = lock(&self.log);
        if lvl > l.level {
            return;
        }
        let tag = match lvl {
            ..=level::ERROR => 'E',
            level::WARNING => 'W',
            _ => 'I',
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let line = format!(
            "[{}.{:06}] {tag} [gfapi-fake] {}: {msg}\n",
            now.as_secs(),
            now.subsec_micros(),
            self.volname
        );
        let _ = match &mut l.target {
            LogTarget::None => Ok(()),
            LogTarget::Stderr => std::io::stderr().write_all(line.as_bytes()),
            LogTarget::File(f) => f.write_all(line.as_bytes()),
        };
    }

    /// glfs_init: finds the volume directory; ENOTCONN without a root, ENOENT without
    /// the volume. Calling it again on a live instance reconnects it.
    pub fn init(&self) -> Res<()> {
        let root = match lock(&self.root_override).clone() {
            Some(r) => Some(r),
            None => std::env::var_os(ENV_ROOT)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        };
        let Some(root) = root.filter(|r| r.is_dir()) else {
            self.log(
                level::ERROR,
                &format!("failed to connect: {ENV_ROOT} is unset or not a directory"),
            );
            return Err(libc::ENOTCONN);
        };
        let faults_path = match std::env::var_os(ENV_FAULTS).filter(|v| !v.is_empty()) {
            Some(p) if lock(&self.root_override).is_none() => PathBuf::from(p),
            _ => root.join(FAULTS_FILE),
        };
        let src = faults::source_for(&faults_path);
        let d = self.decide(
            &src,
            &OpCtx {
                op: "init",
                volume: &self.volname,
                path: "",
                offset: None,
                len: 0,
            },
        );
        if d.0.disconnect {
            return Err(libc::ENOTCONN);
        }
        if let Some(e) = d.0.errno {
            return Err(e);
        }
        if self.volname.is_empty() || self.volname.starts_with('.') || self.volname.contains('/') {
            return Err(libc::EINVAL);
        }
        let vol_dir = root.join(&self.volname);
        if !vol_dir.is_dir() {
            self.log(
                level::ERROR,
                &format!("volume {} not found under {}", self.volname, root.display()),
            );
            return Err(libc::ENOENT);
        }
        let mut st = lock(&self.state);
        if st.finalized {
            return Err(libc::EINVAL);
        }
        st.vol_dir = Some(vol_dir.clone());
        st.faults = Some(src);
        st.disconnected = None;
        drop(st);
        self.log(
            level::INFO,
            &format!("volume mounted from {}", vol_dir.display()),
        );
        Ok(())
    }

    /// Evaluates fault rules, applying delay/hang, and logs what fired.
    fn decide(&self, src: &FaultSource, ctx: &OpCtx<'_>) -> (Decision, u64) {
        let (d, generation) = src.decide(ctx);
        if !d.is_no_fault() {
            self.log(
                level::WARNING,
                &format!(
                    "fault injected on {} {} (offset {:?}, len {}): {:?}",
                    ctx.op, ctx.path, ctx.offset, ctx.len, d
                ),
            );
            // A pool thread waiting here does not count against the pool's bound.
            let _blocked = (d.hang || !d.delay.is_zero()).then(crate::pool::blocked);
            src.apply_wait(&d, generation);
        }
        (d, generation)
    }

    /// Connection and fault gate every operation passes. Returns the volume directory.
    pub fn admit(
        &self,
        op: &str,
        path: &str,
        offset: Option<u64>,
        len: u64,
    ) -> Res<(PathBuf, Admit)> {
        let (vol_dir, src) = {
            let mut st = lock(&self.state);
            if st.finalized {
                return Err(libc::EINVAL);
            }
            let Some(vol_dir) = st.vol_dir.clone() else {
                // gfapi: no active subvolume before glfs_init
                return Err(libc::EIO);
            };
            let src = st.faults.clone().expect("faults set with vol_dir");
            if let Some(g) = st.disconnected {
                if src.refresh() == g {
                    return Err(libc::ENOTCONN);
                }
                st.disconnected = None;
                drop(st);
                self.log(level::INFO, "reconnected (rules file changed)");
            }
            (vol_dir, src)
        };
        let (d, generation) = self.decide(
            &src,
            &OpCtx {
                op,
                volume: &self.volname,
                path,
                offset,
                len,
            },
        );
        if d.disconnect {
            let mut st = lock(&self.state);
            // A change of the rules file while we hung counts as reconnect already.
            if src.refresh() == generation {
                st.disconnected = Some(generation);
            }
            drop(st);
            self.lose_behind();
            return Err(libc::ENOTCONN);
        }
        if let Some(e) = d.errno {
            return Err(e);
        }
        Ok((
            vol_dir,
            Admit {
                short: d.short,
                write_behind: d.write_behind,
                sector_size: d.sector_size,
                md_cache: d.md_cache,
                shard: d.shard,
            },
        ))
    }

    /// Resolves a volume path to (host path, normalised volume path).
    ///
    /// As gfapi does: the empty path is EINVAL, and `..` is resolved lexically, at the
    /// volume root staying at the root (as `/..` is `/` in POSIX), so no path leaves the
    /// volume directory.
    pub fn resolve(vol_dir: &Path, path: &str) -> Res<(PathBuf, String)> {
        if path.is_empty() {
            return Err(libc::EINVAL);
        }
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for c in Path::new(path).components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    parts.pop();
                }
                Component::Normal(n) => parts.push(n),
                Component::Prefix(_) => return Err(libc::EINVAL),
            }
        }
        let mut host = vol_dir.to_path_buf();
        let mut rel = String::new();
        for p in &parts {
            host.push(p);
            rel.push('/');
            rel.push_str(&p.to_string_lossy());
        }
        if rel.is_empty() {
            rel.push('/');
        }
        Ok((host, rel))
    }

    /// Admits a path operation and resolves its path.
    pub fn admit_path(&self, op: &str, path: &str) -> Res<(PathBuf, String, Admit)> {
        let path = self.absolute(path);
        // Resolve first so that fault globs see the normalised path.
        let (_, rel) = Self::resolve(Path::new("/"), &path)?;
        let (vol_dir, admit) = self.admit(op, &rel, None, 0)?;
        let (host, rel) = Self::resolve(&vol_dir, &path)?;
        Ok((host, rel, admit))
    }

    /// Forgets this mount's cached lookups of `path` (a path as the caller gave it) and
    /// below, see [`Glfs::md_cache_forget`].
    pub fn md_cache_forget_path(&self, path: &str) {
        if let Ok((_, rel)) = Self::resolve(Path::new("/"), &self.absolute(path)) {
            self.md_cache_forget(&rel);
        }
    }

    /// `path` made absolute against the working directory (glfs_chdir); the empty path
    /// stays empty (EINVAL later).
    pub fn absolute(&self, path: &str) -> String {
        if path.is_empty() || path.starts_with('/') {
            return path.to_string();
        }
        format!("{}/{path}", lock(&self.cwd).trim_end_matches('/'))
    }

    /// The working directory (a normalised volume path).
    pub fn cwd(&self) -> String {
        lock(&self.cwd).clone()
    }

    /// Sets the working directory (a normalised volume path).
    pub fn set_cwd(&self, rel: String) {
        *lock(&self.cwd) = rel;
    }

    /// Records the volfile of glfs_set_volfile.
    pub fn set_volfile(&self, p: PathBuf) {
        *lock(&self.volfile) = Some(p);
    }

    /// The volfile of glfs_set_volfile, if any.
    pub fn volfile(&self) -> Option<PathBuf> {
        lock(&self.volfile).clone()
    }

    /// Records the statedump directory.
    pub fn set_statedump_path(&self, p: String) {
        *lock(&self.statedump_path) = Some(p);
    }

    /// The statedump directory, if set.
    pub fn statedump_path(&self) -> Option<String> {
        lock(&self.statedump_path).clone()
    }

    /// How many replicas the fake says the volume has (`GFAPI_FAKE_REPLICA`, default 1:
    /// one brick). Gluster answers some calls differently on a replicated volume (the
    /// pathinfo xattr, a handle of a deleted file); the fake answers as the topology it
    /// claims. It still keeps one copy of each file.
    pub fn replica_count(&self) -> usize {
        std::env::var("GFAPI_FAKE_REPLICA")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1)
    }

    /// The volume directory once mounted.
    pub fn vol_dir(&self) -> Option<PathBuf> {
        let st = lock(&self.state);
        if st.finalized {
            return None;
        }
        st.vol_dir.clone()
    }

    /// Counts an async operation as in flight.
    pub fn begin_async(&self) -> Res<()> {
        let st = lock(&self.state);
        if st.closing || st.finalized {
            return Err(libc::EINVAL);
        }
        *lock(&self.inflight) += 1;
        Ok(())
    }

    /// Ends an async operation.
    pub fn end_async(&self) {
        let mut n = lock(&self.inflight);
        *n -= 1;
        if *n <= 1 {
            self.idle.notify_all();
        }
    }

    /// Number of async operations in flight.
    pub fn inflight(&self) -> usize {
        *lock(&self.inflight)
    }

    /// Refuses new async submissions; queued and running ones still complete.
    pub fn mark_closing(&self) {
        lock(&self.state).closing = true;
    }

    /// glfs_fini: refuses new async submissions, lets the in-flight ones complete
    /// (callbacks included) until at most `keep` remain (1 when called from a callback
    /// of this mount: that callback's own operation), then refuses everything.
    pub fn fini(&self, keep: usize) -> Res<()> {
        self.mark_closing();
        let mut n = lock(&self.inflight);
        while *n > keep {
            n = self.idle.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        drop(n);
        self.flush_behind(None);
        // Fault rules on "fini" (Gluster's fini is known to take ~11 s): delay/hang
        // hold the caller here, an errno is returned after the instance is freed.
        let src = lock(&self.state).faults.clone();
        let err = src.and_then(|src| {
            let (d, _) = self.decide(
                &src,
                &OpCtx {
                    op: "fini",
                    volume: &self.volname,
                    path: "",
                    offset: None,
                    len: 0,
                },
            );
            d.errno
        });
        lock(&self.state).finalized = true;
        self.log(level::INFO, "fini");
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// md-cache's timeout on this mount: the last `md-cache-timeout` option the mount set
    /// for `*-md-cache` (or `<volume>-md-cache`) with `glfs_set_xlator_option`, else the
    /// volume's `performance.md-cache-timeout` (`volume_secs`, from the rule). A value
    /// md-cache would refuse (not a number from 0 to 600) is passed over.
    pub fn md_cache_timeout(&self, volume_secs: u64) -> std::time::Duration {
        let own = format!("{}-md-cache", self.volname);
        let secs = lock(&self.xlator_options)
            .iter()
            .rev()
            .filter(|(x, k, _)| {
                k.eq_ignore_ascii_case("md-cache-timeout") && faults::glob_match(x, &own)
            })
            .find_map(|(_, _, v)| v.trim().parse::<u64>().ok().filter(|n| *n <= 600))
            .unwrap_or(volume_secs);
        std::time::Duration::from_secs(secs)
    }

    /// The md-cache model (opt-in: only path calls a rule with `md_cache` matches): the
    /// mount's cached lookup of the volume path `rel`, when it is younger than `timeout`.
    /// Gluster's md-cache answers a lookup of an inode it holds attributes for from its
    /// cache for `md-cache-timeout` seconds, so the mount resolves the name to the inode it
    /// found then, even after another mount renamed another file over the name; an older
    /// entry is dropped (the caller looks up afresh and calls [`Glfs::md_cache_fill`]).
    /// Only the mount's own name changes ([`Glfs::md_cache_forget`]) update it, as other
    /// mounts' changes reach md-cache only through cache-invalidation upcalls, which are
    /// not modelled.
    pub fn md_cache_get(&self, rel: &str, timeout: std::time::Duration) -> Option<CachedLookup> {
        let mut cache = lock(&self.md_cache);
        match cache.get(rel) {
            Some(e) if e.at.elapsed() < timeout => Some(CachedLookup {
                gfid: e.gfid,
                stat: e.stat,
                at: e.at,
            }),
            Some(_) => {
                cache.remove(rel);
                None
            }
            None => None,
        }
    }

    /// Keeps a fresh lookup of `rel` (see [`Glfs::md_cache_get`]).
    pub fn md_cache_fill(&self, rel: &str, gfid: crate::gfid::Gfid, stat: libc::stat) {
        let at = std::time::Instant::now();
        lock(&self.md_cache).insert(rel.to_string(), CachedLookup { gfid, stat, at });
    }

    /// Forgets cached lookups of `rel` and of every path under it: this mount changed the
    /// name itself (rename, unlink, rmdir, creat), which its own inode table follows.
    pub fn md_cache_forget(&self, rel: &str) {
        let under = format!("{}/", rel.trim_end_matches('/'));
        lock(&self.md_cache).retain(|k, _| k != rel && !k.starts_with(&under));
    }

    /// Whether `strict-O_DIRECT` is on for this mount's write-behind
    /// (`glfs_set_xlator_option(fs, "*-write-behind", "strict-O_DIRECT", "on")`, or the
    /// translator's own name `<volume>-write-behind`; the last setting wins): then, as in
    /// Gluster's `wb_writev`, writes on an `O_DIRECT` fd pass write-behind by.
    pub fn strict_o_direct(&self) -> bool {
        let own = format!("{}-write-behind", self.volname);
        lock(&self.xlator_options)
            .iter()
            .rev()
            .find(|(x, k, _)| {
                k.eq_ignore_ascii_case("strict-O_DIRECT") && faults::glob_match(x, &own)
            })
            .is_some_and(|(_, _, v)| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "on" | "yes" | "true" | "enable" | "1"
                )
            })
    }

    /// Write-behind, the model of Gluster's client-side translator (opt-in: only writes
    /// that a rule with `write_behind = true` matches, and not on fds it lets by, see
    /// [`FdInner::passes_write_behind`]): the write of `data` at `offset` is acknowledged
    /// at once and kept in this mount's cache, so other mounts (other `glfs_t`s, other
    /// processes) do not see it until it is flushed. A flush writes the inode's cached
    /// writes to the backing file in order; it happens on fsync/fdatasync, close (flush),
    /// any other fd operation on the inode through this mount (truncate, allocation,
    /// stat, seek), a read through this mount that overlaps a cached write (Gluster holds
    /// such a read until the write is wound), a write that passes write-behind by, and
    /// glfs_fini. A write the backing file refuses at the flush is reported, once, by
    /// the next fsync/fdatasync of the inode through this mount; so are the cached writes
    /// a lost connection loses (`Glfs::lose_behind`).
    ///
    /// As Gluster's `__wb_pick_unwinds`, a write is acknowledged early only while the
    /// inode's writes not yet on the brick fit the translator's window (option
    /// `cache-size`, alias `window-size`, 1 MB by default: [`Glfs::write_behind_window`]):
    /// past it, the oldest of them reach the backing file first.
    pub fn write_behind(&self, inode: Inode, offset: i64, data: Vec<u8>, file: std::fs::File) {
        let window = self.write_behind_window();
        let mut wb = lock(&self.wb);
        let mut cached: usize = wb
            .writes
            .iter()
            .filter(|w| w.inode == inode)
            .map(|w| w.data.len())
            .sum();
        if cached > window {
            self.land_where(&mut wb, |w| {
                let oldest = cached > window && w.inode == inode;
                if oldest {
                    cached -= w.data.len();
                }
                oldest
            });
        }
        wb.writes.push(CachedWrite {
            inode,
            offset,
            data,
            file,
        });
    }

    /// The write-behind window of this mount's volume in bytes: the last
    /// `cache-size`/`window-size` set for `*-write-behind` or `<volume>-write-behind`
    /// (read by `units::parse_size`: KB, MB, GB are powers of 1024, as Gluster's), at
    /// least 512 KiB as Gluster allows; 1 MiB when none is set or it does not parse.
    pub fn write_behind_window(&self) -> usize {
        let own = format!("{}-write-behind", self.volname);
        let set = lock(&self.xlator_options)
            .iter()
            .rev()
            .find(|(x, k, _)| {
                (k.eq_ignore_ascii_case("cache-size") || k.eq_ignore_ascii_case("window-size"))
                    && faults::glob_match(x, &own)
            })
            .and_then(|(_, _, v)| units::parse_size(v).ok())
            .and_then(|n| usize::try_from(n).ok());
        set.map_or(1 << 20, |n| n.max(512 << 10))
    }

    /// Whether anything waits in the write-behind cache.
    pub fn has_behind(&self) -> bool {
        !lock(&self.wb).writes.is_empty()
    }

    /// Writes the cached writes of `inode` (every inode for None) to the backing files,
    /// oldest first.
    pub fn flush_behind(&self, inode: Option<Inode>) {
        let mut wb = lock(&self.wb);
        self.land_where(&mut wb, |w| inode.is_none_or(|i| w.inode == i));
    }

    /// Writes the cached writes `pick` chooses (asked oldest first) to their backing
    /// files, in order, and keeps the others cached.
    fn land_where(&self, wb: &mut WriteBehind, pick: impl FnMut(&CachedWrite) -> bool) {
        let (landing, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut wb.writes).into_iter().partition(pick);
        wb.writes = kept;
        for w in landing {
            self.land(wb, w);
        }
    }

    /// Writes one cached write to its backing file; a failure is kept for the inode's
    /// next sync.
    fn land(&self, wb: &mut WriteBehind, w: CachedWrite) {
        use std::os::unix::fs::FileExt;
        let done = match u64::try_from(w.offset) {
            Ok(off) => w
                .file
                .write_all_at(&w.data, off)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)),
            Err(_) => Err(libc::EINVAL),
        };
        if let Err(e) = done {
            self.log(
                level::WARNING,
                &format!(
                    "write-behind: cached write of {} bytes at {} failed at its flush ({e}): \
                     reported at the next fsync/fdatasync",
                    w.data.len(),
                    w.offset
                ),
            );
            if !wb.errors.iter().any(|(i, _)| *i == w.inode) {
                wb.errors.push((w.inode, e));
            }
        }
    }

    /// The connection went: the cached writes never reach the brick. Gluster's
    /// write-behind winds a cached write to the client translator, which fails it with
    /// ENOTCONN while the brick is away, and keeps the failure for the inode's next sync
    /// (`wb_fulfill_err`); the data is gone, although the write was acknowledged.
    fn lose_behind(&self) {
        let mut wb = lock(&self.wb);
        let lost = std::mem::take(&mut wb.writes);
        if lost.is_empty() {
            return;
        }
        for w in &lost {
            if !wb.errors.iter().any(|(i, _)| *i == w.inode) {
                wb.errors.push((w.inode, libc::ENOTCONN));
            }
        }
        drop(wb);
        self.log(
            level::WARNING,
            &format!(
                "write-behind: {} cached writes lost with the connection: \
                 reported at the next fsync/fdatasync",
                lost.len()
            ),
        );
    }

    /// Flushes `inode` when a cached write of it overlaps `[offset, offset + len)`.
    pub fn flush_overlapping(&self, inode: Inode, offset: i64, len: usize) {
        let end = offset.saturating_add(len as i64);
        let overlaps = lock(&self.wb).writes.iter().any(|w| {
            w.inode == inode
                && w.offset < end
                && w.offset.saturating_add(w.data.len() as i64) > offset
        });
        if overlaps {
            self.flush_behind(Some(inode));
        }
    }

    /// Takes the failure of a flushed write of `inode` not yet reported.
    pub fn take_behind_error(&self, inode: Inode) -> Option<i32> {
        let mut wb = lock(&self.wb);
        let at = wb.errors.iter().position(|(i, _)| *i == inode)?;
        Some(wb.errors.remove(at).1)
    }

    /// A stable 16-byte volume id derived from the volume name.
    pub fn volume_id(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
        let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
        for b in self.volname.bytes() {
            h1 = (h1 ^ b as u64).wrapping_mul(0x100_0000_01b3);
            h2 = (h2 ^ b as u64)
                .wrapping_mul(0x100_0000_01b3)
                .rotate_left(17);
        }
        out[..8].copy_from_slice(&h1.to_be_bytes());
        out[8..].copy_from_slice(&h2.to_be_bytes());
        out[6] = (out[6] & 0x0f) | 0x40; // version 4 layout
        out[8] = (out[8] & 0x3f) | 0x80;
        out
    }

    /// Whether glfs_init succeeded (and fini was not called).
    pub fn is_mounted(&self) -> bool {
        let st = lock(&self.state);
        st.vol_dir.is_some() && !st.finalized
    }
}

/// What an open `glfs_fd_t` refers to.
#[derive(Debug)]
pub enum FdKind {
    /// A regular file (or anything opened with glfs_open/glfs_creat).
    File(std::fs::File),
    /// A directory stream from glfs_opendir.
    Dir(DirStream),
}

/// A libc `DIR*` owned by a directory fd.
#[derive(Debug)]
pub struct DirStream {
    /// The stream; used under the fd's lock.
    pub dir: Mutex<*mut libc::DIR>,
}

// SAFETY: the DIR* is only used while holding its mutex.
unsafe impl Send for DirStream {}
// SAFETY: as above.
unsafe impl Sync for DirStream {}

impl Drop for DirStream {
    fn drop(&mut self) {
        let d = *lock(&self.dir);
        if !d.is_null() {
            // SAFETY: we own the stream.
            unsafe { libc::closedir(d) };
        }
    }
}

/// One open file of a mount.
#[derive(Debug)]
pub struct FdInner {
    /// The owning mount.
    pub glfs: Arc<Glfs>,
    /// Volume path, with a leading `/`.
    pub path: String,
    /// The host file or directory.
    pub kind: FdKind,
    /// The glfs_t handle this fd was opened from (for glfs_from_glfd).
    pub fs_handle: usize,
    /// Opened with `O_DIRECT`: writes must be aligned (see [`DIRECT_ALIGN`]).
    pub direct: bool,
    /// Opened with `O_SYNC`/`O_DSYNC`: writes are not acknowledged early (no
    /// write-behind), so their errors are reported by the write itself.
    pub sync_writes: bool,
    /// The fd's offset for glfs_read/glfs_write/glfs_lseek. gfapi keeps it in the fd
    /// (not in a kernel file), unchecked: `glfs_lseek(fd, -1, SEEK_SET)` stores -1.
    pub pos: Mutex<i64>,
    /// A write error not yet reported (see [`FdInner::defer_write_error`]).
    pending_error: Mutex<Option<i32>>,
    /// The open flags.
    pub flags: i32,
    /// The lock owner set with glfs_fd_set_lkowner (empty: the fd itself).
    pub lk_owner: Mutex<Vec<u8>>,
    /// Whose locks this fd takes: the fd's own, or (after glfs_fd_set_lkowner) those
    /// of its lock owner, shared with the other fds of that owner (see `locks`).
    pub locker: Mutex<Arc<crate::locks::Locker>>,
}

/// Alignment of offset and length that an `O_DIRECT` read or write needs on the brick: its
/// disk's logical sector size, 512 unless a rule says otherwise (`sector_size`).
pub const DIRECT_ALIGN: u64 = 512;

impl FdInner {
    /// A new open file. `flags` are the open flags (`O_DIRECT`, `O_SYNC`, `O_DSYNC`
    /// matter here).
    pub fn new(glfs: Arc<Glfs>, path: String, kind: FdKind, fs_handle: usize, flags: i32) -> Self {
        FdInner {
            glfs,
            path,
            kind,
            fs_handle,
            direct: flags & libc::O_DIRECT != 0,
            sync_writes: flags & (libc::O_SYNC | libc::O_DSYNC) != 0,
            pos: Mutex::new(0),
            pending_error: Mutex::new(None),
            flags,
            lk_owner: Mutex::new(Vec::new()),
            locker: Mutex::new(Arc::default()),
        }
    }

    /// Gluster's write-behind acknowledges a write before the brick has done it and
    /// reports the brick's failure later, once, on the next fsync/fdatasync of the fd.
    /// Returns whether `errno` was kept for then (false on an fd whose writes pass
    /// write-behind by, [`FdInner::passes_write_behind`]: `O_SYNC`/`O_DSYNC`, or
    /// `O_DIRECT` on a mount with `strict-O_DIRECT`, whose writes are not acknowledged
    /// early; measured on Gluster 10.3 over a 4Kn brick: an `O_DIRECT` write of 512
    /// bytes fails EINVAL in the call with `strict-O_DIRECT` on, returns 512 without).
    /// The first error is the one reported.
    pub fn defer_write_error(&self, errno: i32) -> bool {
        if self.passes_write_behind() {
            return false;
        }
        lock(&self.pending_error).get_or_insert(errno);
        true
    }

    /// Takes the write error kept by [`FdInner::defer_write_error`], if any.
    pub fn take_write_error(&self) -> Option<i32> {
        lock(&self.pending_error).take()
    }

    /// The raw host descriptor.
    pub fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match &self.kind {
            FdKind::File(f) => f.as_raw_fd(),
            // SAFETY: the DIR* is valid while the stream lives.
            FdKind::Dir(d) => unsafe { libc::dirfd(*lock(&d.dir)) },
        }
    }

    /// The backing file's (device, inode).
    pub fn inode(&self) -> Res<Inode> {
        // SAFETY: a zeroed stat is a valid value of the plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: raw is the descriptor this fd owns; st is a valid out-buffer.
        if unsafe { libc::fstat(self.raw(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        Ok((st.st_dev, st.st_ino))
    }

    /// Whether write-behind lets this fd's writes by: `O_SYNC`/`O_DSYNC` always,
    /// `O_DIRECT` when the mount has `strict-O_DIRECT` on (Gluster's `wb_writev`).
    pub fn passes_write_behind(&self) -> bool {
        self.sync_writes || (self.direct && self.glfs.strict_o_direct())
    }

    /// Flushes this fd's inode from the mount's write-behind cache (see
    /// [`Glfs::write_behind`]), when anything is cached.
    pub fn flush_behind(&self) {
        if self.glfs.has_behind() {
            if let Ok(inode) = self.inode() {
                self.glfs.flush_behind(Some(inode));
            }
        }
    }

    /// Flushes this fd's inode when a cached write overlaps `[offset, offset + len)`.
    pub fn flush_overlapping(&self, offset: i64, len: usize) {
        if self.glfs.has_behind() {
            if let Ok(inode) = self.inode() {
                self.glfs.flush_overlapping(inode, offset, len);
            }
        }
    }

    /// Admits an fd operation; fails with EBADF after glfs_fini. Every operation but
    /// reads, writes, locks and leases flushes the inode's cached writes before it is
    /// done (see [`Glfs::write_behind`]); one that finds the connection gone finds them
    /// lost with it instead.
    pub fn admit(&self, op: &str, offset: Option<u64>, len: u64) -> Res<Admit> {
        let admitted = self.glfs.admit(op, &self.path, offset, len);
        if !matches!(op, "read" | "write" | "lock" | "lease")
            && !matches!(admitted, Err(libc::ENOTCONN))
        {
            self.flush_behind();
        }
        match admitted {
            Ok((_, a)) => Ok(a),
            Err(libc::EINVAL) if !self.glfs.is_mounted() => Err(libc::EBADF),
            Err(e) => Err(e),
        }
    }
}

/// Opaque handle registry: the C side only ever sees handle values that are never
/// dereferenced and never reused (a process-wide counter, shared by all registries, in
/// 16-byte steps above [`HANDLE_BASE`]), so a stale, double-closed or bogus pointer is
/// detected (EBADF/EINVAL) rather than followed, and never hits a newer handle.
pub struct Registry<T> {
    live: Mutex<HashMap<usize, Arc<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Where handle values start; no allocation lives there in practice, but none is ever
/// looked at either.
pub const HANDLE_BASE: usize = 0x6766_0000_0000;

static NEXT_HANDLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

impl<T> Registry<T> {
    /// An empty registry.
    pub fn new() -> Self {
        Registry {
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Registers `value` and returns its handle value (never returned before).
    pub fn insert(&self, value: Arc<T>) -> usize {
        let id = NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = HANDLE_BASE + id * 16;
        lock(&self.live).insert(addr, value);
        addr
    }

    /// Looks up a handle.
    pub fn get(&self, addr: usize) -> Option<Arc<T>> {
        lock(&self.live).get(&addr).cloned()
    }

    /// Unregisters a handle, returning its value.
    pub fn remove(&self, addr: usize) -> Option<Arc<T>> {
        lock(&self.live).remove(&addr)
    }

    /// The live handles and their values.
    pub fn snapshot(&self) -> Vec<(usize, Arc<T>)> {
        lock(&self.live)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// Number of live handles.
    pub fn len(&self) -> usize {
        lock(&self.live).len()
    }

    /// Whether no handle is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All live `glfs_t` handles.
pub fn mounts() -> &'static Registry<Glfs> {
    static R: OnceLock<Registry<Glfs>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

/// All live `glfs_fd_t` handles.
pub fn fds() -> &'static Registry<FdInner> {
    static R: OnceLock<Registry<FdInner>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

/// A path as a C string for libc calls.
pub fn cpath(p: &Path) -> Res<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)
}

#[cfg(test)]
mod tests {

    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("/a/b", "/a/b")]
    #[case("a/b", "/a/b")]
    #[case("/", "/")]
    #[case("/a/./b/../c", "/a/c")]
    #[case("//a//b/", "/a/b")]
    fn resolve_normalises(#[case] input: &str, #[case] rel: &str) {
        let (host, r) = Glfs::resolve(Path::new("/vol"), input).unwrap();
        assert_eq!(r, rel);
        assert_eq!(host, Path::new("/vol").join(rel.trim_start_matches('/')));
    }

    #[rstest]
    #[case("..", "/")]
    #[case("/..", "/")]
    #[case("/../etc/passwd", "/etc/passwd")]
    #[case("a/../../x", "/x")]
    #[case("../../a/./../../b", "/b")]
    fn resolve_clamps_dotdot_at_the_volume_root(#[case] input: &str, #[case] rel: &str) {
        let (host, r) = Glfs::resolve(Path::new("/vol"), input).unwrap();
        assert_eq!(r, rel);
        assert!(host.starts_with("/vol"), "{host:?} left the volume");
        assert_eq!(host, Path::new("/vol").join(rel.trim_start_matches('/')));
    }

    #[test]
    fn resolve_rejects_the_empty_path_with_einval() {
        assert_eq!(Glfs::resolve(Path::new("/vol"), ""), Err(libc::EINVAL));
    }

    #[test]
    fn volume_id_is_stable_and_distinct() {
        let a = Glfs::new("vol").volume_id();
        assert_eq!(a, Glfs::new("vol").volume_id());
        assert_ne!(a, Glfs::new("vol2").volume_id());
        assert_eq!(a[6] >> 4, 4);
    }

    #[test]
    fn registry_detects_stale_handles() {
        let r: Registry<u32> = Registry::new();
        let h = r.insert(Arc::new(7));
        assert_eq!(r.get(h).as_deref(), Some(&7));
        assert!(r.remove(h).is_some());
        assert!(r.get(h).is_none());
        assert!(r.remove(h).is_none());
        let mut seen = std::collections::HashSet::from([h]);
        for i in 0..10_000 {
            let h2 = r.insert(Arc::new(i));
            assert!(seen.insert(h2), "handle value {h2:#x} reused");
            assert!(r.remove(h2).is_some());
        }
        assert!(r.get(h).is_none());
        let other: Registry<u8> = Registry::new();
        assert!(
            !seen.contains(&other.insert(Arc::new(0))),
            "registries share the counter"
        );
    }
}
