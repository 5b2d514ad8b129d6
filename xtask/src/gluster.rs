//! Live Gluster fixtures for `cargo xtask test-gluster` and `cargo xtask fixture`.
//!
//! Native: a glusterd on this machine with one brick on 127.0.0.2 (Gluster's CLI refuses
//! 127.0.0.1 and localhost). Started if not running; the volume is created if missing.
//! Needs root and the glusterfs-server package, which it installs with apt when missing.

use crate::progress::Progress;
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

pub use testkit::gluster::RemoveOnDrop;

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

/// A command that runs `argv` with only stdin, stdout and stderr open. A daemon started
/// by a task must not inherit the task's other descriptors: run under
/// `flock /work/notes/gluster.lock cargo xtask ...`, glusterd (and the bricks it forks)
/// kept flock's descriptor and with it the lock, for as long as it ran. bash, not sh:
/// dash reads `exec 10>&-` as running a command named `10`, so any inherited descriptor
/// above 9 ended the script with status 127 before the daemon started.
pub fn without_inherited_fds(argv: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(
            r#"for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done; exec "$@""#,
        )
        .arg("sh")
        .args(argv);
    cmd
}

/// Starts glusterd when it is not running and waits until its CLI answers.
fn ensure_glusterd() -> Result<()> {
    if gluster(&["volume", "list"]).is_ok() {
        return Ok(());
    }
    util::run(&mut without_inherited_fds(&[
        "glusterd",
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
    native_volume_of(name, 1)
}

/// A native replica 3 volume named `name` (three bricks on this host, `<name>-1` to
/// `<name>-3`: Gluster's replication, AFR and its locks, without a second machine),
/// created and started if needed; its `brick` is the first.
pub fn native_replica_volume(name: &str) -> Result<LiveVolume> {
    native_volume_of(name, 3)
}

fn native_volume_of(name: &str, replicas: usize) -> Result<LiveVolume> {
    // package, glusterd, volume, started
    let progress = Progress::new("fixture", 4);
    progress.step("glusterfs-server installed", ensure_installed)?;
    if !is_root() {
        return Err(Skipped("a native glusterd needs root".into()).into());
    }
    progress.step("glusterd", ensure_glusterd)?;
    let host = "127.0.0.2".to_string();
    let root = PathBuf::from("/srv/glfs-iscsi-bricks");
    let bricks: Vec<PathBuf> = if replicas == 1 {
        vec![root.join(name)]
    } else {
        (1..=replicas)
            .map(|i| root.join(format!("{name}-{i}")))
            .collect()
    };
    let brick = bricks[0].clone();
    progress.step(
        &format!("volume {name} on {host}:{}", brick.display()),
        || {
            if gluster(&["volume", "info", name]).is_ok() {
                progress.line(&format!("reusing volume {name}"));
                return Ok(());
            }
            let mut args = vec!["volume".to_string(), "create".into(), name.into()];
            if replicas > 1 {
                args.extend(["replica".into(), replicas.to_string()]);
            }
            for b in &bricks {
                std::fs::create_dir_all(b)
                    .with_context(|| format!("cannot create brick {}", b.display()))?;
                args.push(format!("{host}:{}", b.display()));
            }
            // One host's bricks (and, for replicas, all on one host): Gluster wants force.
            args.push("force".into());
            gluster(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
            // Short timeouts so fault tests do not wait 42 s for a dead brick.
            gluster(&["volume", "set", name, "network.ping-timeout", "5"]).map(drop)
        },
    )?;
    progress.step(&format!("volume {name} started"), || {
        let info = gluster(&["volume", "info", name])?;
        if !info.contains("Status: Started") {
            gluster(&["volume", "start", name, "force"])?;
        }
        Ok(())
    })?;
    progress.finish();
    Ok(LiveVolume {
        name: name.to_string(),
        host,
        brick,
    })
}

/// The volume options that the per-family differential test needs beyond the defaults:
/// mandatory locks enforced, cache invalidation (upcalls) and leases.
pub const FEATURE_OPTIONS: &[(&str, &str)] = &[
    ("locks.mandatory-locking", "optimal"),
    // without it the bricks record mandatory locks but let every read and write through
    ("features.enforce-mandatory-lock", "on"),
    ("features.cache-invalidation", "on"),
    ("features.leases", "on"),
];

/// A second native volume, `name`, with [`FEATURE_OPTIONS`] set (restarted once when
/// they were not, so the bricks run with them from the start).
pub fn native_features_volume(name: &str) -> Result<LiveVolume> {
    let v = native_volume(name)?;
    if set_options(name, FEATURE_OPTIONS)? {
        gluster(&["volume", "stop", name, "force"])?;
        gluster(&["volume", "start", name, "force"])?;
    }
    Ok(v)
}

/// AFR's options under which a write locks only the range it writes (no eager lock, no
/// whole-file lock), as a self-heal locks the chunk it copies.
pub const RANGED_LOCK_OPTIONS: &[(&str, &str)] =
    &[("cluster.full-lock", "off"), ("cluster.eager-lock", "off")];

/// A native replica 3 volume `name` with [`RANGED_LOCK_OPTIONS`] set (client-side
/// options: every mount made after they are set has them, no restart).
pub fn native_ranged_lock_volume(name: &str) -> Result<LiveVolume> {
    let v = native_replica_volume(name)?;
    set_options(name, RANGED_LOCK_OPTIONS)?;
    Ok(v)
}

/// What makes a volume sharded (files stored in pieces of 4 MiB, as volumes holding VM
/// and block images usually are): the shard translator in every client's graph.
pub const SHARD_OPTIONS: &[(&str, &str)] = &[
    ("features.shard", "on"),
    ("features.shard-block-size", "4MB"),
];

/// A native volume `name` with [`SHARD_OPTIONS`] set (set before any file is written on
/// it: a volume's files keep the layout they were written with).
pub fn native_shard_volume(name: &str) -> Result<LiveVolume> {
    let v = native_volume(name)?;
    set_options(name, SHARD_OPTIONS)?;
    Ok(v)
}

/// Sets each of `options` on volume `name` that does not have that value yet; whether
/// any was set.
fn set_options(name: &str, options: &[(&str, &str)]) -> Result<bool> {
    let mut changed = false;
    for (key, value) in options {
        let now = gluster(&["volume", "get", name, key])?;
        let set = now
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [*key, *value]);
        if !set {
            gluster(&["volume", "set", name, key, value])?;
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_daemon_started_by_a_task_inherits_no_descriptor_but_the_standard_three() {
        // A descriptor without close-on-exec, as flock(1) hands its lock to its command.
        let dir = std::env::temp_dir().join(format!("xtask-fds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // One descriptor below 10 and one above (sh = dash takes single digits only).
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"exec 7<"$0" 12<"$0"; "$@""#)
            .arg(dir.display().to_string())
            .args(["ls", "/proc/self/fd"])
            .output()
            .unwrap();
        let plain: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        for fd in ["7", "12"] {
            assert!(
                plain.contains(&fd.to_string()),
                "the probe itself inherits {fd}: {plain:?}"
            );
        }

        let cmd = without_inherited_fds(&["ls", "/proc/self/fd"]);
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(r#"exec 7<"$0" 12<"$0"; shift; exec "$@""#)
            .arg(dir.display().to_string())
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut text = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        child.wait().unwrap();
        let fds: Vec<&str> = text.split_whitespace().collect();
        // ls itself opens one descriptor to read the directory.
        assert!(
            !fds.contains(&"7") && !fds.contains(&"12"),
            "inherited: {fds:?}"
        );
        assert!(fds.contains(&"1"), "{fds:?}");
        assert!(fds.len() <= 4, "{fds:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
