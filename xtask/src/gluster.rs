//! Live Gluster fixtures for `cargo xtask test-gluster` and `cargo xtask fixture`.
//!
//! Native: a glusterd on this machine with one brick on 127.0.0.2 (Gluster's CLI refuses
//! 127.0.0.1 and localhost). Started if not running; the volume is created if missing.
//! Needs root and the glusterfs-server package, which it installs with apt when missing.

use crate::util::{self, Skipped};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A started volume that gfapi clients reach at `host`.
#[derive(Debug, Clone)]
pub struct LiveVolume {
    pub name: String,
    pub host: String,
    pub brick: PathBuf,
}

impl LiveVolume {
    /// `volume@host` as our backing-store strings and tests take it.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.name, self.host)
    }
}

fn is_root() -> bool {
    util::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

pub fn gluster(args: &[&str]) -> Result<String> {
    util::output(Command::new("gluster").arg("--mode=script").args(args))
}

/// Installs glusterfs-server with apt when `gluster` is missing.
fn ensure_installed() -> Result<()> {
    if util::which("glusterd").is_some() && util::which("gluster").is_some() {
        return Ok(());
    }
    if !is_root() {
        return Err(Skipped("glusterfs-server is not installed and we are not root".into()).into());
    }
    eprintln!("installing glusterfs-server with apt");
    let install = || {
        util::run(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "glusterfs-server",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    // A fresh machine may have no package lists yet.
    install().or_else(|_| {
        util::run(Command::new("apt-get").args(["update", "-qq"]))?;
        install()
    })
}

/// Starts glusterd when it is not running and waits until its CLI answers.
fn ensure_glusterd() -> Result<()> {
    if gluster(&["volume", "list"]).is_ok() {
        return Ok(());
    }
    util::run(Command::new("glusterd").args([
        "-p",
        "/run/glusterd.pid",
        "--log-level",
        "WARNING",
    ]))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if gluster(&["volume", "list"]).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("glusterd started but its CLI did not answer within 30 s")
}

/// A native one-brick volume named `name`, created and started if needed.
pub fn native_volume(name: &str) -> Result<LiveVolume> {
    ensure_installed()?;
    if !is_root() {
        return Err(Skipped("a native glusterd needs root".into()).into());
    }
    ensure_glusterd()?;
    let host = "127.0.0.2".to_string();
    let brick = PathBuf::from("/srv/glfs-iscsi-bricks").join(name);
    let info = gluster(&["volume", "info", name]);
    if info.is_err() {
        std::fs::create_dir_all(&brick)
            .with_context(|| format!("cannot create brick {}", brick.display()))?;
        gluster(&[
            "volume",
            "create",
            name,
            &format!("{host}:{}", brick.display()),
            "force",
        ])?;
        // Short timeouts so fault tests do not wait 42 s for a dead brick.
        gluster(&["volume", "set", name, "network.ping-timeout", "5"])?;
    }
    let info = gluster(&["volume", "info", name])?;
    if !info.contains("Status: Started") {
        gluster(&["volume", "start", name, "force"])?;
    }
    Ok(LiveVolume {
        name: name.to_string(),
        host,
        brick,
    })
}
