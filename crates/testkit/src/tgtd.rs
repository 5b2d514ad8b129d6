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
//! ```no_run
//! use testkit::tgtd::Tgtd;
//! let tgtd = Tgtd::start().expect("start tgtd");
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
    /// management socket answer. `Err` says why (also when tgt is not installed).
    pub fn start() -> Result<Tgtd, String> {
        Self::start_with_env(std::iter::empty::<(OsString, OsString)>())
    }

    /// As [`Tgtd::start`], with extra environment variables for the daemon (e.g.
    /// `LD_LIBRARY_PATH` and `GFAPI_FAKE_ROOT`, so that `bs_glfs.so` binds the fake
    /// libgfapi).
    pub fn start_with_env<K, V>(env: impl IntoIterator<Item = (K, V)>) -> Result<Tgtd, String>
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let env: Vec<(OsString, OsString)> =
            env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let tgtd = find_binary("tgtd").ok_or("tgtd not installed (Debian package tgt)")?;
        let tgtadm = find_binary("tgtadm").ok_or("tgtadm not installed (Debian package tgt)")?;
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&tgtd, &tgtadm, &env) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(tgtd: &Path, tgtadm: &Path, env: &[(OsString, OsString)]) -> Result<Tgtd, String> {
        let port = free_port()?;
        let control = control_number(port);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = dir.path().join("tgtd.log");
        let out = File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
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
            .map_err(|e| format!("spawn {}: {e}", tgtd.display()))?;
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
                return Err(format!(
                    "tgtd exited early ({status}); log:\n{}",
                    t.log_text()
                ));
            }
            let mgmt_ok = t.tgtadm(&["--mode", "target", "--op", "show"]).is_ok();
            if mgmt_ok && TcpStream::connect(("127.0.0.1", port)).is_ok() && t.is_running() {
                t.owns_socket = true;
                return Ok(t);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tgtd did not come up in {START_TIMEOUT:?}; log:\n{}",
                    t.log_text()
                ));
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
    fn find_binary_looks_in_path_and_sbin() {
        assert_eq!(find_binary("sh").map(|p| p.is_file()), Some(true));
        assert_eq!(find_binary("no-such-binary-testkit"), None);
    }

    #[test]
    fn started_tgtd_gets_the_environment_and_its_socket_goes_on_drop() {
        if tgt_binaries().is_none() {
            eprintln!("SKIPPED: tgtd/tgtadm not installed (apt-get install tgt)");
            return;
        }
        let mut t = Tgtd::start_with_env([("TESTKIT_TGTD_MARKER", "yes")]).expect("start tgtd");
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
