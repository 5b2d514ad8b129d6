//! A private Debian `tgtd` (the Linux SCSI target framework) as a reference iSCSI target
//! for tests: of the initiator bindings, the load generator, and tgt's `bs_glfs.so` on
//! the fake libgfapi.
//!
//! Each [`Tgtd`] is `tgtd -f` bound to `127.0.0.1:<free port>` with its own management
//! socket (`-C <n>`, `/var/run/tgtd/socket.<n>`), configured with `tgtadm`. tgtd takes
//! an exclusive lock on `/var/run/tgtd/socket.<n>.lock`, so a number another tgtd holds
//! makes ours exit at once; [`Tgtd::start`] then retries with another number. Dropping a
//! [`Tgtd`] kills the daemon (SIGKILL: tgtd ignores SIGTERM while it has targets) and
//! removes its socket files.
//!
//! tgtd cannot run everywhere: it must be installed, and it needs root (it creates its
//! lock file and socket under `/var/run/tgtd`). [`unavailable_reason`] says up front
//! whether it can run here; [`Tgtd::start`] reports [`StartError::Unavailable`] when it
//! cannot (also when tgtd itself refuses for lack of privileges). Tests use
//! [`Tgtd::start_or_skip`]: it skips (with a `[skip]` line on stderr) when tgtd is
//! unavailable, except under CI (`CI=true`) or with `TESTKIT_REQUIRE_TGTD=1`, where an
//! unavailable tgtd fails the test.
//!
//! ```no_run
//! use testkit::tgtd::Tgtd;
//! let Some(tgtd) = Tgtd::start_or_skip("my_test") else { return };
//! let url = tgtd.add_lun("iqn.2026-01.dev.example:null", "null", "/dev/null").unwrap();
//! // ... run an initiator against `url` (iscsi://127.0.0.1:<port>/<iqn>/1) ...
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where to look for the tgt binaries besides `$PATH`.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// How long tgtd may take to answer on its portal and management socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Start attempts (each with another control number and port).
const START_ATTEMPTS: u32 = 5;

/// Finds `name` in `$PATH` or the sbin directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `Some((tgtd, tgtadm))` when tgt is installed (Debian package `tgt`).
pub fn tgt_binaries() -> Option<(PathBuf, PathBuf)> {
    Some((find_binary("tgtd")?, find_binary("tgtadm")?))
}

/// tgt's glusterfs backing store (Debian package `tgt-glusterfs`).
pub const BS_GLFS: &str = "/usr/lib/tgt/backing-store/bs_glfs.so";

/// Set to `1` to make an unavailable tgtd fail tests instead of skipping them (as under
/// CI); used when the caller has already checked that tgtd can run.
pub const ENV_REQUIRE: &str = "TESTKIT_REQUIRE_TGTD";

/// Why tgtd cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// tgtd cannot run on this machine as this user: not installed, not root, or it
    /// refused to start for lack of privileges. Tests skip on this (outside CI).
    Unavailable(String),
    /// tgtd should run here but did not come up: a real failure.
    Failed(String),
}

impl StartError {
    /// True for [`StartError::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StartError::Unavailable(_))
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Unavailable(why) => write!(f, "tgtd unavailable: {why}"),
            StartError::Failed(why) => write!(f, "tgtd failed to start: {why}"),
        }
    }
}

impl std::error::Error for StartError {}

/// `None` when tgtd can run here (tgt installed and running as root); otherwise why not.
pub fn unavailable_reason() -> Option<String> {
    if find_binary("tgtd").is_none() || find_binary("tgtadm").is_none() {
        return Some("tgtd/tgtadm not installed (Debian package tgt)".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!(
            "not root (euid {euid}): tgtd needs root for its lock file and socket under \
             /var/run/tgtd"
        ));
    }
    None
}

/// `None` when tgtd can run with tgt's glusterfs store (`--bstype glfs`); otherwise why
/// not.
pub fn glfs_unavailable_reason() -> Option<String> {
    unavailable_reason().or_else(|| {
        (!Path::new(BS_GLFS).exists())
            .then(|| format!("{BS_GLFS} not installed (Debian package tgt-glusterfs)"))
    })
}

/// True when an unavailable tgtd must fail tests: under CI (`CI` set, not `false`/`0`)
/// or with `TESTKIT_REQUIRE_TGTD` set likewise.
pub fn required() -> bool {
    let set =
        |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    set("CI") || set(ENV_REQUIRE)
}

/// Reports that `test` cannot run because `why`: a `[skip]` line on stderr, or a panic
/// when tgtd is [`required`].
pub fn skip(test: &str, why: &str) {
    if required() {
        panic!(
            "{test}: {why}; under CI (or {ENV_REQUIRE}=1) tgtd must be available \
             (ci/install-deps.sh installs tgt and CI runs as root)"
        );
    }
    eprintln!("[skip] {test}: {why}");
}

/// A running private tgtd.
pub struct Tgtd {
    child: Child,
    tgtadm: PathBuf,
    port: u16,
    control: u32,
    log: PathBuf,
    /// The management socket is ours to remove: our tgtd came up on it. A tgtd that
    /// exited at start (e.g. because another daemon holds that number's lock) must not
    /// delete the other daemon's socket.
    owns_socket: bool,
    _dir: tempfile::TempDir,
}

impl Tgtd {
    /// Starts tgtd on a free loopback port and waits until both its portal and its
    /// management socket answer. `Err` says why: [`StartError::Unavailable`] when tgtd
    /// cannot run here at all (see [`unavailable_reason`]).
    pub fn start() -> Result<Tgtd, StartError> {
        Self::start_with_env(std::iter::empty::<(OsString, OsString)>())
    }

    /// For tests: [`Tgtd::start`], or `None` after reporting a skip (see [`skip`]) when
    /// tgtd is unavailable. Panics when tgtd fails to start although it should run, and
    /// when it is unavailable but [`required`].
    pub fn start_or_skip(test: &str) -> Option<Tgtd> {
        Self::start_with_env_or_skip(test, std::iter::empty::<(OsString, OsString)>())
    }

    /// [`Tgtd::start_or_skip`] with extra environment variables for the daemon.
    pub fn start_with_env_or_skip<K, V>(
        test: &str,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Option<Tgtd>
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        match Self::start_with_env(env) {
            Ok(t) => Some(t),
            Err(StartError::Unavailable(why)) => {
                skip(test, &why);
                None
            }
            Err(e @ StartError::Failed(_)) => panic!("{test}: {e}"),
        }
    }

    /// As [`Tgtd::start`], with extra environment variables for the daemon (e.g.
    /// `LD_LIBRARY_PATH` and `GFAPI_FAKE_ROOT`, so that `bs_glfs.so` binds the fake
    /// libgfapi).
    pub fn start_with_env<K, V>(env: impl IntoIterator<Item = (K, V)>) -> Result<Tgtd, StartError>
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let env: Vec<(OsString, OsString)> =
            env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        if let Some(why) = unavailable_reason() {
            return Err(StartError::Unavailable(why));
        }
        let unavailable = |what: &str| StartError::Unavailable(format!("{what} not installed"));
        let tgtd = find_binary("tgtd").ok_or_else(|| unavailable("tgtd"))?;
        let tgtadm = find_binary("tgtadm").ok_or_else(|| unavailable("tgtadm"))?;
        let mut last = StartError::Failed("no start attempt".into());
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&tgtd, &tgtadm, &env) {
                Ok(t) => return Ok(t),
                Err(e @ StartError::Unavailable(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(
        tgtd: &Path,
        tgtadm: &Path,
        env: &[(OsString, OsString)],
    ) -> Result<Tgtd, StartError> {
        let failed = |e: String| StartError::Failed(e);
        let port = free_port().map_err(failed)?;
        let control = control_number(port);
        let dir = tempfile::tempdir().map_err(|e| failed(e.to_string()))?;
        let log = dir.path().join("tgtd.log");
        let out = File::create(&log).map_err(|e| failed(e.to_string()))?;
        let err = out.try_clone().map_err(|e| failed(e.to_string()))?;
        let child = Command::new(tgtd)
            .arg("-f")
            .arg("--iscsi")
            .arg(format!("portal=127.0.0.1:{port}"))
            .arg("-C")
            .arg(control.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                let msg = format!("spawn {}: {e}", tgtd.display());
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    StartError::Unavailable(msg)
                } else {
                    StartError::Failed(msg)
                }
            })?;
        let mut t = Tgtd {
            child,
            tgtadm: tgtadm.to_path_buf(),
            port,
            control,
            log,
            owns_socket: false,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = t.child.try_wait() {
                let log = t.log_text();
                let msg = format!("tgtd exited early ({status}); log:\n{log}");
                return Err(if lacks_privileges(&log) {
                    StartError::Unavailable(msg)
                } else {
                    StartError::Failed(msg)
                });
            }
            let mgmt_ok = t.tgtadm(&["--mode", "target", "--op", "show"]).is_ok();
            if mgmt_ok && TcpStream::connect(("127.0.0.1", port)).is_ok() && t.is_running() {
                t.owns_socket = true;
                return Ok(t);
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "tgtd did not come up in {START_TIMEOUT:?}; log:\n{}",
                    t.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The iSCSI portal, `"127.0.0.1:<port>"`.
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port of the portal.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The management socket number (tgtd's and tgtadm's `-C`).
    pub fn control(&self) -> u32 {
        self.control
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `tgtadm -C <n> --lld iscsi <args>`; stdout on success.
    pub fn tgtadm(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.tgtadm)
            .arg("-C")
            .arg(self.control.to_string())
            .args(["--lld", "iscsi"])
            .args(args)
            .output()
            .map_err(|e| format!("spawn tgtadm: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "tgtadm {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Creates target `tid` named `iqn`, open to every initiator address.
    pub fn add_target(&self, tid: u32, iqn: &str) -> Result<(), String> {
        let tid = tid.to_string();
        self.tgtadm(&[
            "--mode",
            "target",
            "--op",
            "new",
            "--tid",
            &tid,
            "--targetname",
            iqn,
        ])?;
        self.tgtadm(&[
            "--mode",
            "target",
            "--op",
            "bind",
            "--tid",
            &tid,
            "--initiator-address",
            "ALL",
        ])?;
        Ok(())
    }

    /// Adds `lun` to target `tid`, of backing-store type `bstype` (`rdwr`, `null`,
    /// `glfs`, ...) on `backing` (a path, or `volume@host:file` for glfs). On failure the
    /// error carries tgtd's log (where bs_glfs reports why it could not open).
    pub fn add_lun_to(
        &self,
        tid: u32,
        lun: u32,
        bstype: &str,
        backing: &str,
    ) -> Result<(), String> {
        self.tgtadm(&[
            "--mode",
            "logicalunit",
            "--op",
            "new",
            "--tid",
            &tid.to_string(),
            "--lun",
            &lun.to_string(),
            "--bstype",
            bstype,
            "--backing-store",
            backing,
        ])
        .map(|_| ())
        .map_err(|e| format!("{e}\ntgtd log:\n{}", self.log_text()))
    }

    /// Adds `lun` to target `tid`, backed by the regular file `path` (bstype rdwr).
    pub fn add_file_lun(&self, tid: u32, lun: u32, path: &Path) -> Result<(), String> {
        let path = path.to_str().ok_or("non-UTF-8 backing path")?;
        self.add_lun_to(tid, lun, "rdwr", path)
    }

    /// Creates target 1 named `iqn` with LUN 1 of `bstype` on `backing`, open to every
    /// initiator; returns the LUN's URL, `iscsi://127.0.0.1:<port>/<iqn>/1`.
    pub fn add_lun(&self, iqn: &str, bstype: &str, backing: &str) -> Result<String, String> {
        self.add_target(1, iqn)?;
        self.add_lun_to(1, 1, bstype, backing)?;
        Ok(self.lun_url(iqn, 1))
    }

    /// The URL of LUN `lun` of target `iqn` on this portal (libiscsi's form).
    pub fn lun_url(&self, iqn: &str, lun: u32) -> String {
        format!("iscsi://{}/{iqn}/{lun}", self.portal())
    }

    /// Kills the daemon now (SIGKILL), dropping every connection it holds.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// tgtd's output (stdout and stderr) so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        self.kill();
        if self.owns_socket {
            for suffix in ["", ".lock"] {
                let _ =
                    std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control));
            }
        }
    }
}

/// Whether tgtd's log says it stopped for lack of privileges (rather than, say, another
/// daemon holding its management socket number: "another tgtd is using ...").
fn lacks_privileges(log: &str) -> bool {
    log.contains("failed to open lock file")
        || log.contains("Permission denied")
        || log.contains("Operation not permitted")
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A management socket number for tgtd's `-C` (it accepts 0..=32767), mixed from the
/// process, the time, the port and a per-process counter so that parallel tests and
/// processes rarely collide (and retry when they do).
fn control_number(port: u16) -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mix = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(u32::from(port).wrapping_mul(40_503))
        .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919));
    1024 + mix % (32767 - 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_numbers_are_in_tgtd_range_and_vary() {
        let n: Vec<u32> = (0..64).map(|_| control_number(3260)).collect();
        assert!(n.iter().all(|c| (1024..32767).contains(c)), "{n:?}");
        let mut distinct = n.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 32, "too many repeats: {n:?}");
    }

    #[test]
    fn privilege_failures_are_told_apart_from_a_busy_socket_number() {
        assert!(lacks_privileges(
            "(null): ipc_init(781) failed to open lock file for management IPC"
        ));
        assert!(!lacks_privileges(
            "ipc_init: another tgtd is using /var/run/tgtd/socket.7.lock"
        ));
        let e = StartError::Unavailable("not root".into());
        assert!(e.is_unavailable());
        assert_eq!(e.to_string(), "tgtd unavailable: not root");
        assert!(!StartError::Failed("x".into()).is_unavailable());
    }

    #[test]
    fn unavailable_reason_agrees_with_installation_and_euid() {
        let installed = tgt_binaries().is_some();
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(unavailable_reason().is_none(), installed && root);
        if let Some(why) = unavailable_reason() {
            assert!(
                why.contains("not installed") || why.contains("not root"),
                "{why}"
            );
            // start reports the same condition, and as unavailable, not as a failure.
            let err = Tgtd::start().err().expect("tgtd cannot start here");
            assert!(err.is_unavailable(), "{err}");
        }
    }

    #[test]
    fn find_binary_looks_in_path_and_sbin() {
        assert_eq!(find_binary("sh").map(|p| p.is_file()), Some(true));
        assert_eq!(find_binary("no-such-binary-testkit"), None);
    }

    #[test]
    fn started_tgtd_gets_the_environment_and_its_socket_goes_on_drop() {
        let Some(mut t) = Tgtd::start_with_env_or_skip(
            "tgtd::tests::started_tgtd_gets_the_environment_and_its_socket_goes_on_drop",
            [("TESTKIT_TGTD_MARKER", "yes")],
        ) else {
            return;
        };
        assert!(t.is_running());
        let environ = std::fs::read(format!("/proc/{}/environ", t.pid())).unwrap();
        assert!(
            environ
                .split(|&b| b == 0)
                .any(|v| v == b"TESTKIT_TGTD_MARKER=yes"),
            "the variable did not reach tgtd"
        );
        let socket = format!("/var/run/tgtd/socket.{}", t.control());
        assert!(
            Path::new(&socket).exists(),
            "{socket} missing while running"
        );
        let url = t
            .add_lun("iqn.2026-01.dev.testkit:unit", "null", "/dev/null")
            .unwrap();
        assert_eq!(
            url,
            format!(
                "iscsi://127.0.0.1:{}/iqn.2026-01.dev.testkit:unit/1",
                t.port()
            )
        );
        let show = t.tgtadm(&["--mode", "target", "--op", "show"]).unwrap();
        assert!(show.contains("iqn.2026-01.dev.testkit:unit"), "{show}");
        assert!(
            t.add_lun_to(1, 2, "rdwr", "/no/such/file").is_err(),
            "a missing backing file is refused"
        );
        t.kill();
        assert!(!t.is_running());
        drop(t);
        assert!(!Path::new(&socket).exists(), "{socket} left behind");
    }
}
