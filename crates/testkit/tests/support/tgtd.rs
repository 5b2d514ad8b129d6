//! Runs Debian's `tgtd` (the Linux SCSI target framework) as a reference iSCSI
//! target for testing the initiator bindings.
//!
//! Each [`Tgtd`] is a private `tgtd -f` bound to `127.0.0.1:<free port>` with its
//! own management socket (`-C <n>`, `/var/run/tgtd/socket.<n>`), configured with
//! `tgtadm`. Dropping it kills the daemon (SIGKILL: tgtd ignores SIGTERM while it
//! has targets) and removes its socket files.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where to look for the tgt binaries besides `$PATH`.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// Finds `name` in `$PATH` or the sbin directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `Some((tgtd, tgtadm))` when tgt is installed.
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
    /// The management socket is ours to remove: our tgtd came up on it. A tgtd
    /// that exited at start (e.g. because another daemon holds that number's lock)
    /// must not delete the other daemon's socket.
    owns_socket: bool,
    _dir: tempfile::TempDir,
}

impl Tgtd {
    /// Starts tgtd on a free loopback port and waits until both its portal and
    /// its management socket answer.
    pub fn start() -> Result<Tgtd, String> {
        let (tgtd, tgtadm) = tgt_binaries().ok_or("tgtd/tgtadm not installed")?;
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(&tgtd, &tgtadm) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(tgtd: &Path, tgtadm: &Path) -> Result<Tgtd, String> {
        let port = free_port();
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
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = t.child.try_wait() {
                return Err(format!(
                    "tgtd exited early ({status}); log:\n{}",
                    t.log_text()
                ));
            }
            let mgmt_ok = t.tgtadm(&["--mode", "target", "--op", "show"]).is_ok();
            if mgmt_ok && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                if let Ok(None) = t.child.try_wait() {
                    t.owns_socket = true;
                    return Ok(t);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tgtd did not come up in 15s; log:\n{}",
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

    /// Runs `tgtadm -C <n> --lld iscsi <args>`; stdout on success.
    pub fn tgtadm(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.tgtadm)
            .arg("-C")
            .arg(self.control.to_string())
            .arg("--lld")
            .arg("iscsi")
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

    /// Adds `lun` to target `tid`, backed by the regular file `path` (bstype rdwr).
    pub fn add_file_lun(&self, tid: u32, lun: u32, path: &Path) -> Result<(), String> {
        let path = path.to_str().ok_or("non-UTF-8 backing path")?;
        self.tgtadm(&[
            "--mode",
            "logicalunit",
            "--op",
            "new",
            "--tid",
            &tid.to_string(),
            "--lun",
            &lun.to_string(),
            "--backing-store",
            path,
            "--bstype",
            "rdwr",
        ])?;
        Ok(())
    }

    /// Kills the daemon now (SIGKILL), dropping every connection it holds.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// tgtd's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.owns_socket {
            return;
        }
        for suffix in ["", ".lock"] {
            let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control));
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

/// A management socket number for tgtd's `-C` (it accepts 0..=32767). tgtd takes
/// an exclusive lock on `/var/run/tgtd/socket.<n>.lock` before touching the
/// socket, so a number already in use makes the new tgtd exit, and
/// [`Tgtd::start`] retries with another one.
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
