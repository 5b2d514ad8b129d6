//! The one process harness for `glfs-iscsi`: start it on a free loopback port, wait until
//! its portal accepts connections, stop it (SIGTERM, or killed on drop). Used by the
//! daemon's integration tests and by xtask's `target` and `bench` tasks.
//!
//! ```no_run
//! use testkit::daemon::{Daemon, Launch};
//! let daemon = Daemon::start(
//!     Launch::new("target/debug/glfs-iscsi")
//!         .args(["--target", "iqn.2026-11.io.example:t", "--bstype", "memory", "--size", "1M"]),
//! )
//! .unwrap();
//! println!("listening on {}", daemon.portal());
//! ```

use anyhow::{bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How to start `glfs-iscsi`.
#[derive(Debug, Clone)]
pub struct Launch {
    binary: PathBuf,
    host: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log: Option<PathBuf>,
    patience: Duration,
    tied: bool,
}

impl Launch {
    /// `binary` listening on `127.0.0.1` at a free port, output to a temporary log file,
    /// 20 s to come up.
    pub fn new(binary: impl Into<PathBuf>) -> Launch {
        Launch {
            binary: binary.into(),
            host: "127.0.0.1".into(),
            args: Vec::new(),
            env: Vec::new(),
            log: None,
            patience: Duration::from_secs(20),
            tied: false,
        }
    }

    /// Listens on `host` (e.g. `0.0.0.0`); a wildcard is connected to through loopback.
    pub fn host(mut self, host: &str) -> Launch {
        self.host = host.into();
        self
    }

    /// More command-line arguments (after `--portal`).
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// One more environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Standard output and error go to `path` (else a temporary file).
    pub fn log(mut self, path: impl Into<PathBuf>) -> Launch {
        self.log = Some(path.into());
        self
    }

    /// How long it may take to accept connections.
    pub fn patience(mut self, patience: Duration) -> Launch {
        self.patience = patience;
        self
    }

    /// Killed when this process dies, even by SIGKILL (util-linux `setpriv --pdeathsig`,
    /// when installed): for long tasks that may be interrupted.
    pub fn tied_to_us(mut self) -> Launch {
        self.tied = true;
        self
    }
}

/// A running `glfs-iscsi`, killed on drop.
pub struct Daemon {
    child: Option<Child>,
    portal: SocketAddr,
    log: PathBuf,
    _log_dir: Option<tempfile::TempDir>,
}

/// A free TCP port on loopback (the OS picks it; it is free when this returns).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Daemon {
    /// Starts it with `--portal HOST:PORT` first and waits until the portal accepts a
    /// connection; fails with its log if it exits or does not listen in time.
    pub fn start(launch: Launch) -> Result<Daemon> {
        let patience = launch.patience;
        let mut daemon = Daemon::spawn(launch)?;
        daemon.wait_listening(patience)?;
        Ok(daemon)
    }

    /// Starts it with `--portal HOST:PORT` first without waiting for the portal (for
    /// tests of what happens while it starts); see [`Daemon::wait_listening`].
    pub fn spawn(launch: Launch) -> Result<Daemon> {
        let port = free_port()?;
        let listen: SocketAddr = format!("{}:{port}", bracket(&launch.host))
            .parse()
            .with_context(|| format!("bad host {:?}", launch.host))?;
        let portal = if listen.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], port))
        } else {
            listen
        };
        let (log, log_dir) = match &launch.log {
            Some(path) => (path.clone(), None),
            None => {
                let dir = tempfile::tempdir()?;
                (dir.path().join("glfs-iscsi.log"), Some(dir))
            }
        };
        if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let setpriv = launch
            .tied
            .then(|| crate::tgtd::find_binary("setpriv"))
            .flatten();
        let mut cmd = match &setpriv {
            Some(setpriv) => {
                let mut cmd = Command::new(setpriv);
                cmd.args(["--pdeathsig", "KILL", "--"]).arg(&launch.binary);
                cmd
            }
            None => Command::new(&launch.binary),
        };
        let child = cmd
            .arg("--portal")
            .arg(listen.to_string())
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", launch.binary.display()))?;
        Ok(Daemon {
            child: Some(child),
            portal,
            log,
            _log_dir: log_dir,
        })
    }

    /// Waits until the portal accepts a connection; fails with its log if it exits or
    /// does not listen within `patience`.
    pub fn wait_listening(&mut self, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child_mut().try_wait()? {
                bail!("glfs-iscsi exited early ({status}): {}", self.log_text());
            }
            if TcpStream::connect_timeout(&self.portal, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "glfs-iscsi did not listen on {} within {patience:?}: {}",
                    self.portal,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the child is kept until drop")
    }

    /// Where to connect: the portal, or loopback for a wildcard.
    pub fn portal(&self) -> SocketAddr {
        self.portal
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The file its output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it has printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether it has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child_mut().try_wait(), Ok(None))
    }

    /// Sends signal `name` (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -{name} {} failed", self.pid());
        Ok(())
    }

    /// Waits up to `patience` for it to exit; its status if it did.
    pub fn wait_exit(&mut self, patience: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child_mut().try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits up to `patience` for a clean exit (killed if it does not).
    pub fn stop(mut self, patience: Duration) -> Result<()> {
        self.signal("TERM")?;
        match self.wait_exit(patience)? {
            Some(status) if status.success() => Ok(()),
            Some(status) => bail!("glfs-iscsi exited with {status}: {}", self.log_text()),
            None => bail!("glfs-iscsi did not stop within {patience:?} of SIGTERM"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An IPv6 address in brackets for `host:port`.
fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-daemon");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn an_early_exit_fails_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let bin = script(dir.path(), "echo \"bad option $1\" >&2; exit 3");
        let err = Daemon::start(Launch::new(bin)).err().unwrap().to_string();
        assert!(err.contains("exited early"), "{err}");
        assert!(err.contains("bad option --portal"), "{err}");
    }

    #[test]
    fn a_daemon_that_never_listens_fails_after_its_patience() {
        let dir = tempfile::tempdir().unwrap();
        let bin = script(dir.path(), "exec sleep 30");
        let launch = Launch::new(bin).patience(Duration::from_millis(300));
        let err = Daemon::start(launch).err().unwrap().to_string();
        assert!(err.contains("did not listen on 127.0.0.1:"), "{err}");
    }
}
