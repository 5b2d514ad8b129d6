//! A private Debian `tgtd` as the reference target for the initiator tests.
//!
//! Each [`Tgtd`] is `tgtd -f` on `127.0.0.1:<free port>` with its own management
//! socket number (`-C <n>`), configured with `tgtadm`, and SIGKILLed on drop
//! (tgtd ignores SIGTERM while it has targets). A number another tgtd already
//! holds makes ours exit at once; start() then retries with another.

#![allow(dead_code)]

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds `name` on `$PATH` or in the sbin directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A running private tgtd.
pub struct Tgtd {
    child: Child,
    tgtadm: PathBuf,
    port: u16,
    control: u32,
    log: PathBuf,
    owns_socket: bool,
    _dir: tempfile::TempDir,
}

impl Tgtd {
    /// Starts tgtd, or `Err` naming why (also when tgt is not installed).
    pub fn start() -> Result<Tgtd, String> {
        let tgtd = find_binary("tgtd").ok_or("tgtd not installed (Debian package tgt)")?;
        let tgtadm = find_binary("tgtadm").ok_or("tgtadm not installed")?;
        let mut last = String::new();
        for attempt in 0..5u32 {
            match Self::try_start(&tgtd, &tgtadm, attempt) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(tgtd: &Path, tgtadm: &Path, attempt: u32) -> Result<Tgtd, String> {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let control = 1024
            + (std::process::id()
                .wrapping_mul(2_654_435_761)
                .wrapping_add(nanos)
                .wrapping_add(u32::from(port).wrapping_mul(40_503))
                .wrapping_add(attempt.wrapping_mul(7919)))
                % (32767 - 1024);
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
                return Err(format!("tgtd exited early ({status}): {}", t.log_text()));
            }
            if t.tgtadm(&["--mode", "target", "--op", "show"]).is_ok()
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                if let Ok(None) = t.child.try_wait() {
                    t.owns_socket = true;
                    return Ok(t);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("tgtd did not come up in 15 s: {}", t.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The iSCSI portal, `127.0.0.1:<port>`.
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `tgtadm -C <n> --lld iscsi <args>`.
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

    /// Creates target 1 named `iqn` with LUN 1 of `bstype` on `backing`, open to
    /// every initiator; returns the LUN's URL.
    pub fn add_lun(&self, iqn: &str, bstype: &str, backing: &str) -> Result<String, String> {
        self.tgtadm(&[
            "--mode",
            "target",
            "--op",
            "new",
            "--tid",
            "1",
            "--targetname",
            iqn,
        ])?;
        self.tgtadm(&[
            "--mode",
            "logicalunit",
            "--op",
            "new",
            "--tid",
            "1",
            "--lun",
            "1",
            "--bstype",
            bstype,
            "--backing-store",
            backing,
        ])?;
        self.tgtadm(&[
            "--mode",
            "target",
            "--op",
            "bind",
            "--tid",
            "1",
            "--initiator-address",
            "ALL",
        ])?;
        Ok(format!("iscsi://{}/{iqn}/1", self.portal()))
    }

    /// Kills the daemon now, dropping every connection.
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
        self.kill();
        if self.owns_socket {
            for suffix in ["", ".lock"] {
                let _ =
                    std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control));
            }
        }
    }
}
