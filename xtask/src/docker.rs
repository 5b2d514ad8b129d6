//! A real Gluster cluster in Docker containers for `cargo xtask test-gluster`.
//!
//! * [`ensure_engine`] installs `docker.io`, `iptables` and `debootstrap` with apt when they are
//!   missing and starts `dockerd` in the background when `docker info` fails (there is no init
//!   system). Its log goes to `<target>/docker/dockerd.log`.
//! * [`build_images`] makes the base image with debootstrap (no registry is reachable) and the
//!   gluster node image from `docker/Dockerfile`. Both are cached.
//! * [`cluster_up`] starts N node containers on a user-defined bridge with fixed addresses
//!   ([`SUBNET`]), probes the peers and creates a started volume (replica N, or plain for one
//!   node) with `network.ping-timeout 5`. [`cluster_down`] removes all of it.
//! * [`node_stop`], [`node_start`], [`node_pause`], [`node_unpause`] inject faults.
//!
//! Every external command runs under a time limit and fails with a message that names it.
//! Nodes are numbered from 0: node `i` is container `glfs-iscsi-node<i>` at `172.30.77.(10+i)`.

// The fault-injection half of this API is used by tests as they land.
#![allow(dead_code)]

use crate::gluster::LiveVolume;
use crate::progress::Progress;
use crate::util;
use anyhow::{bail, ensure, Context, Result};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The base image made with debootstrap.
pub const BASE_IMAGE: &str = "glfs-iscsi/debian-base:bookworm";
/// The gluster node image built from `docker/Dockerfile`.
pub const NODE_IMAGE: &str = "glfs-iscsi/gluster-node:bookworm";
/// The user-defined bridge network the nodes live on.
pub const NETWORK: &str = "glfs-iscsi-net";
/// Its subnet: only containers this module creates live there.
pub const SUBNET: &str = "172.30.77.0/24";
/// The Linux bridge device of [`NETWORK`] (named, so that a crashed engine's leftovers can be
/// found and removed).
pub const BRIDGE: &str = "glfsiscsi0";
/// The label on every container and network this module creates.
pub const LABEL: &str = "io.glfs-iscsi.fixture";
/// The label on the node image holding a hash of the build context.
const CONTEXT_LABEL: &str = "io.glfs-iscsi.context";
/// Where bricks live inside a node.
pub const BRICK_ROOT: &str = "/bricks";
/// Most nodes a cluster may have (addresses .10 to .(10+MAX_NODES-1)).
pub const MAX_NODES: usize = 16;

const SHORT: Duration = Duration::from_secs(60);
const APT_TIMEOUT: Duration = Duration::from_secs(600);
const ENGINE_READY: Duration = Duration::from_secs(60);
const DEBOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(900);
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
const GLUSTER_READY: Duration = Duration::from_secs(60);

/// Where a node keeps its bricks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrickStore {
    /// An anonymous Docker volume at [`BRICK_ROOT`]: survives `docker stop`/`start` (so a
    /// stopped node comes back with its brick and heals), readable from the host under
    /// `/var/lib/docker/volumes`, removed with the container.
    Volume,
    /// `--tmpfs` at [`BRICK_ROOT`]: in memory, lost when the container stops, so a restarted
    /// node's brick stays offline (no volume-id attribute).
    Tmpfs,
}

/// What [`cluster_up`] uses.
pub const BRICK_STORE: BrickStore = BrickStore::Volume;

// ---------------------------------------------------------------------------------------------
// Running commands with time limits.

/// Runs `cmd` with captured output; kills it after `timeout`. Returns its stdout.
fn capture(cmd: &mut Command, timeout: Duration) -> Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", util::display(cmd)))?;
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let status = wait_or_kill(&mut child, timeout, cmd, false)?;
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if !status.success() {
        bail!(
            "{} failed ({status}): {} {}",
            util::display(cmd),
            stdout.trim(),
            stderr.trim()
        );
    }
    Ok(stdout)
}

/// Runs `cmd` with its output on our terminal, in its own process group that is killed
/// after `timeout`.
fn stream(cmd: &mut Command, timeout: Duration) -> Result<()> {
    eprintln!("$ {}", util::display(cmd));
    cmd.stdin(Stdio::null()).process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", util::display(cmd)))?;
    let status = wait_or_kill(&mut child, timeout, cmd, true)?;
    ensure!(status.success(), "{} failed: {status}", util::display(cmd));
    Ok(())
}

fn wait_or_kill(
    child: &mut Child,
    timeout: Duration,
    cmd: &Command,
    group: bool,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            if group {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} timed out after {} s",
                util::display(cmd),
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `probe` until it returns `Some`, failing after `timeout` with `what` and the last
/// error or state seen.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if Instant::now() >= deadline {
            bail!(
                "{what}: not reached within {} s (last: {last})",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn docker(args: &[&str]) -> Result<String> {
    capture(Command::new("docker").args(args), SHORT)
}

fn is_root() -> bool {
    capture(Command::new("id").arg("-u"), SHORT).is_ok_and(|uid| uid.trim() == "0")
}

// ---------------------------------------------------------------------------------------------
// The engine.

fn engine_answers() -> bool {
    capture(
        Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
        SHORT,
    )
    .is_ok()
}

/// The log of the `dockerd` we start.
pub fn engine_log() -> PathBuf {
    util::target_dir().join("docker").join("dockerd.log")
}

/// The Docker engine cannot run on this machine: we are not root (so cannot install or start
/// it), or the `dockerd` we started exited by itself (a kernel or sandbox without what it
/// needs: cgroups, overlay, iptables, namespaces). Callers skip what needs the Docker
/// fixture, naming it, instead of failing; every other failure (an image that does not
/// build, a cluster that does not come up) is a real failure.
#[derive(Debug)]
pub struct EngineUnavailable(pub String);

impl std::fmt::Display for EngineUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the Docker engine cannot run here: {}", self.0)
    }
}

impl std::error::Error for EngineUnavailable {}

/// Whether `err` says the engine cannot run here ([`EngineUnavailable`]).
pub fn engine_unavailable(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<EngineUnavailable>())
}

/// Makes sure a Docker engine answers: installs `docker.io`, `iptables` and `debootstrap` with
/// apt when missing and starts `dockerd` in the background when `docker info` fails, then
/// waits (60 s at most) until it answers. [`EngineUnavailable`] when we are not root or the
/// started `dockerd` exits by itself.
pub fn ensure_engine() -> Result<()> {
    let missing: Vec<&str> = [
        ("dockerd", "docker.io"),
        ("iptables", "iptables"),
        ("debootstrap", "debootstrap"),
    ]
    .into_iter()
    .filter(|(bin, _)| util::which(bin).is_none() && !Path::new("/usr/sbin").join(bin).exists())
    .map(|(_, pkg)| pkg)
    .collect();
    if util::which("docker").is_some() && missing.is_empty() && engine_answers() {
        return Ok(());
    }
    if !is_root() {
        return Err(EngineUnavailable(
            "the Docker fixture needs root (to install and start dockerd)".into(),
        )
        .into());
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    if engine_answers() {
        return Ok(());
    }
    start_dockerd()
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let install = |packages: &[&str]| {
        stream(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            APT_TIMEOUT,
        )
    };
    install(packages).or_else(|_| {
        stream(Command::new("apt-get").args(["update", "-qq"]), APT_TIMEOUT)?;
        install(packages)
    })
}

fn start_dockerd() -> Result<()> {
    let log_path = engine_log();
    std::fs::create_dir_all(log_path.parent().expect("has a parent"))?;
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let dockerd = util::which("dockerd").unwrap_or_else(|| PathBuf::from("/usr/sbin/dockerd"));
    eprintln!(
        "starting {} (log: {})",
        dockerd.display(),
        log_path.display()
    );
    // Its own process group: it outlives us and our Ctrl-C, and later runs reuse it.
    let mut child = Command::new(&dockerd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", dockerd.display()))?;
    let mut exited = None;
    let result = wait_for("dockerd answering `docker info`", ENGINE_READY, || {
        if let Some(status) = child.try_wait()? {
            exited = Some(status);
            bail!("dockerd exited ({status}); see {}", log_path.display());
        }
        Ok(engine_answers().then_some(()))
    });
    if let Err(err) = result {
        let tail = tail_of(&log_path, 20);
        if let Some(status) = exited {
            // It gave up by itself: this machine cannot run it.
            return Err(EngineUnavailable(format!(
                "dockerd exited ({status}); end of its log ({}):\n{tail}",
                log_path.display()
            ))
            .into());
        }
        // Still running but not answering: a real failure, and not left behind.
        let _ = child.kill();
        let _ = child.wait();
        return Err(err.context(format!("dockerd did not come up; end of its log:\n{tail}")));
    }
    Ok(())
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Images.

/// The first Debian mirror apt uses for the suite `suite`, from the contents of apt's source
/// files: `(file name, text)` pairs of `sources.list`, `*.list` (one-line format) and
/// `*.sources` (deb822). Other file names are ignored, as apt ignores them.
pub fn apt_mirror(files: &[(String, String)], suite: &str) -> Option<String> {
    for (name, text) in files {
        let found = if name.ends_with(".list") {
            mirror_from_one_line(text, suite)
        } else if name.ends_with(".sources") {
            mirror_from_deb822(text, suite)
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn mirror_from_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut next = words.next()?;
        if next.starts_with('[') {
            // Options: `[arch=amd64 signed-by=...]`, possibly spread over several words.
            while !next.ends_with(']') {
                next = words.next()?;
            }
            next = words.next()?;
        }
        let uri = next;
        (words.next()? == suite).then(|| uri.trim_end_matches('/').to_string())
    })
}

fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    // Stanzas are separated by blank lines; continuation lines start with white space.
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
            continue;
        }
        let current = stanzas.last_mut().expect("never empty");
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    stanzas.iter().find_map(|fields| {
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        if get("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            return None;
        }
        get("types")?.split_whitespace().find(|t| *t == "deb")?;
        get("suites")?.split_whitespace().find(|s| *s == suite)?;
        get("uris")?
            .split_whitespace()
            .next()
            .map(|u| u.trim_end_matches('/').to_string())
    })
}

/// The Debian mirror this machine's apt uses for bookworm (`GLFS_ISCSI_DEBIAN_MIRROR`
/// overrides it).
pub fn host_mirror() -> Result<String> {
    if let Ok(mirror) = std::env::var("GLFS_ISCSI_DEBIAN_MIRROR") {
        return Ok(mirror);
    }
    let mut files = Vec::new();
    let main = Path::new("/etc/apt/sources.list");
    if let Ok(text) = std::fs::read_to_string(main) {
        files.push(("sources.list".to_string(), text));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut names: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                files.push((name, text));
            }
        }
    }
    apt_mirror(&files, "bookworm")
        .context("no bookworm mirror in /etc/apt/sources.list{,.d/*}; set GLFS_ISCSI_DEBIAN_MIRROR")
}

fn image_label(image: &str, label: &str) -> Option<String> {
    let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
    docker(&["image", "inspect", "--format", &format, image])
        .ok()
        .map(|s| s.trim().to_string())
}

fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_ok()
}

/// FNV-1a over the build context's files (name and contents), as a cache key.
pub fn context_hash(files: &[(String, Vec<u8>)]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in files {
        for byte in name
            .as_bytes()
            .iter()
            .chain([0u8].iter())
            .chain(bytes)
            .chain([0u8].iter())
        {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The directory holding the Dockerfile.
pub fn context_dir() -> PathBuf {
    util::project_root().join("docker")
}

fn read_context() -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(context_dir()).context("cannot read docker/")? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if path.is_file() && !name.ends_with(".md") {
            files.push((name, std::fs::read(&path)?));
        }
    }
    files.sort();
    Ok(files)
}

/// Makes the debootstrap base image (when missing) and the gluster node image (when missing or
/// when `docker/` changed since it was built).
pub fn build_images() -> Result<()> {
    if !image_exists(BASE_IMAGE) {
        build_base_image()?;
    }
    let hash = context_hash(&read_context()?);
    if image_label(NODE_IMAGE, CONTEXT_LABEL).as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    // The host network: the build's apt reaches the mirror the way the host's apt does.
    stream(
        Command::new("docker")
            .args(["build", "--network", "host", "--tag", NODE_IMAGE])
            .args(["--label", &format!("{CONTEXT_LABEL}={hash}")])
            .arg(context_dir())
            .env("DOCKER_BUILDKIT", "0"),
        BUILD_TIMEOUT,
    )
    .context("building the gluster node image")?;
    // The image this build replaced, now untagged.
    let filter = format!("label={CONTEXT_LABEL}");
    docker(&["image", "prune", "--force", "--filter", &filter]).map(drop)
}

/// Makes the debootstrap base image (Debian 12 minbase) when it is missing.
pub fn ensure_base_image() -> Result<()> {
    if !image_exists(BASE_IMAGE) {
        build_base_image()?;
    }
    Ok(())
}

fn build_base_image() -> Result<()> {
    let mirror = host_mirror()?;
    let rootfs = util::target_dir().join("docker").join("rootfs-bookworm");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)
            .with_context(|| format!("cannot remove {}", rootfs.display()))?;
    }
    std::fs::create_dir_all(&rootfs)?;
    stream(
        Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&rootfs)
            .arg(&mirror),
        DEBOOTSTRAP_TIMEOUT,
    )
    .context("debootstrap of the base image")?;
    // Let the image's apt fetch from the same mirror, with updates.
    std::fs::write(
        rootfs.join("etc/apt/sources.list"),
        format!("deb {mirror} bookworm main\ndeb {mirror} bookworm-updates main\n"),
    )?;
    import_rootfs(&rootfs)?;
    let _ = std::fs::remove_dir_all(&rootfs);
    Ok(())
}

fn import_rootfs(rootfs: &Path) -> Result<()> {
    eprintln!(
        "$ tar -C {} -c . | docker import - {BASE_IMAGE}",
        rootfs.display()
    );
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let tar_out = tar.stdout.take().expect("piped");
    let mut import = Command::new("docker");
    import
        .args(["import", "-", BASE_IMAGE])
        .stdin(tar_out)
        .stdout(Stdio::null());
    let mut child = import.spawn().context("cannot start docker import")?;
    let status = wait_or_kill(&mut child, BUILD_TIMEOUT, &import, false);
    let tar_status = wait_or_kill(&mut tar, SHORT, &Command::new("tar"), false)?;
    let status = status?;
    ensure!(
        tar_status.success(),
        "tar of {} failed: {tar_status}",
        rootfs.display()
    );
    ensure!(status.success(), "docker import failed: {status}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The cluster.

/// Container name of node `i`.
pub fn node_name(i: usize) -> String {
    format!("glfs-iscsi-node{i}")
}

/// Address of node `i` on [`NETWORK`].
pub fn node_ip(i: usize) -> Ipv4Addr {
    assert!(i < MAX_NODES, "node {i} out of range");
    Ipv4Addr::new(172, 30, 77, 10 + i as u8)
}

/// Arguments of `docker run` for node `i`.
pub fn node_run_args(i: usize, store: BrickStore) -> Vec<String> {
    let name = node_name(i);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--detach".into(),
        "--name".into(),
        name.clone(),
        "--hostname".into(),
        name,
        "--label".into(),
        format!("{LABEL}=node"),
        "--network".into(),
        NETWORK.into(),
        "--ip".into(),
        node_ip(i).to_string(),
        "--cap-add".into(),
        "SYS_ADMIN".into(),
        // tini as PID 1: reaps the daemons glusterd forks and forwards `docker stop`'s SIGTERM.
        "--init".into(),
    ];
    match store {
        BrickStore::Volume => args.extend(["--volume".into(), BRICK_ROOT.into()]),
        BrickStore::Tmpfs => args.extend(["--tmpfs".into(), BRICK_ROOT.into()]),
    }
    args.push(NODE_IMAGE.into());
    args
}

/// Arguments of `docker network create` for [`NETWORK`].
pub fn network_create_args() -> Vec<String> {
    [
        "network",
        "create",
        "--driver",
        "bridge",
        "--subnet",
        SUBNET,
        "--opt",
        &format!("com.docker.network.bridge.name={BRIDGE}"),
        "--label",
        &format!("{LABEL}=network"),
        NETWORK,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The brick of `volume` on node `i`, as `host:path` for `gluster volume create`.
pub fn brick_spec(i: usize, volume: &str) -> String {
    format!("{}:{BRICK_ROOT}/{volume}", node_ip(i))
}

/// Arguments of `gluster volume create` for `nodes` nodes.
pub fn volume_create_args(nodes: usize, volume: &str) -> Vec<String> {
    let mut args = vec!["volume".to_string(), "create".into(), volume.into()];
    if nodes > 1 {
        args.extend(["replica".into(), nodes.to_string()]);
    }
    args.extend((0..nodes).map(|i| brick_spec(i, volume)));
    // The brick root may be on the container's root file system; gluster wants `force` there.
    args.push("force".into());
    args
}

/// Runs the gluster CLI in node `i` (script mode) and returns its output.
pub fn gluster_exec(i: usize, args: &[&str]) -> Result<String> {
    capture(
        Command::new("docker")
            .args(["exec", &node_name(i), "gluster", "--mode=script"])
            .args(args),
        Duration::from_secs(130),
    )
}

/// What `gluster volume info <vol>` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// `Status: Started`.
    pub started: bool,
    /// The `BrickN:` entries (`host:path`), in order.
    pub bricks: Vec<String>,
}

/// Parses `gluster volume info <vol>` output.
pub fn parse_volume_info(text: &str) -> VolumeInfo {
    let mut started = false;
    let mut bricks = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(status) = line.strip_prefix("Status:") {
            started = status.trim() == "Started";
        } else if let Some((key, value)) = line.split_once(':') {
            let is_brick = key
                .strip_prefix("Brick")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_brick {
                bricks.push(value.trim().to_string());
            }
        }
    }
    VolumeInfo { started, bricks }
}

/// How many peers `gluster peer status` lists as in the cluster and connected.
pub fn connected_peers(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim() == "State: Peer in Cluster (Connected)")
        .count()
}

/// The bricks (`host:path`) that `gluster volume status <vol> --xml` reports online.
pub fn online_bricks(xml: &str) -> Vec<String> {
    brick_nodes(xml)
        .filter_map(|node| {
            let host = xml_field(node, "hostname")?;
            let path = xml_field(node, "path")?;
            (xml_field(node, "status")? == "1").then(|| format!("{host}:{path}"))
        })
        .collect()
}

/// The process ids of the running bricks in `gluster volume status <vol> --xml`.
pub fn brick_pids(xml: &str) -> Vec<u32> {
    brick_nodes(xml)
        .filter(|node| xml_field(node, "status").as_deref() == Some("1"))
        .filter_map(|node| xml_field(node, "pid")?.parse().ok())
        .collect()
}

/// The `<node>` elements of a volume status that are bricks: daemons (self-heal) are
/// listed as nodes too, and bricks have absolute paths.
fn brick_nodes(xml: &str) -> impl Iterator<Item = &str> {
    xml.split("<node>").skip(1).filter_map(|node| {
        let node = node.split("</node>").next().unwrap_or(node);
        xml_field(node, "path")?.starts_with('/').then_some(node)
    })
}

/// The text of the first `<tag>` in `node`.
fn xml_field(node: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = node.find(&open)? + open.len();
    let end = node[start..].find(&format!("</{tag}>"))? + start;
    Some(node[start..end].trim().to_string())
}

fn fixture_containers() -> Result<Vec<String>> {
    let out = docker(&[
        "ps",
        "--all",
        "--filter",
        &format!("label={LABEL}"),
        "--format",
        "{{.Names}}",
    ])?;
    Ok(out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

fn container_state(name: &str) -> Result<String> {
    Ok(docker(&["inspect", "--format", "{{.State.Status}}", name])?
        .trim()
        .to_string())
}

fn container_ip(name: &str) -> Result<String> {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}");
    Ok(docker(&["inspect", "--format", &format, name])?
        .trim()
        .to_string())
}

/// Host path of node `i`'s brick root (the Docker volume's directory, or the container's
/// root seen through /proc for tmpfs).
pub fn brick_root_on_host(i: usize) -> Result<PathBuf> {
    let name = node_name(i);
    let format = format!(
        "{{{{range .Mounts}}}}{{{{if eq .Destination \"{BRICK_ROOT}\"}}}}{{{{.Source}}}}{{{{end}}}}{{{{end}}}}"
    );
    let source = docker(&["inspect", "--format", &format, &name])?
        .trim()
        .to_string();
    if !source.is_empty() {
        return Ok(PathBuf::from(source));
    }
    let pid = docker(&["inspect", "--format", "{{.State.Pid}}", &name])?
        .trim()
        .to_string();
    ensure!(
        pid != "0",
        "{name} is not running: its tmpfs brick cannot be reached"
    );
    Ok(PathBuf::from(format!("/proc/{pid}/root{BRICK_ROOT}")))
}

/// Reads a file back from node `i`'s brick of `volume` (`rel` relative to the volume root),
/// through `docker exec` (works for any brick store, while the node runs).
pub fn read_brick_file(i: usize, volume: &str, rel: &str) -> Result<Vec<u8>> {
    let mut cmd = Command::new("docker");
    cmd.args([
        "exec",
        &node_name(i),
        "cat",
        &format!("{BRICK_ROOT}/{volume}/{rel}"),
    ]);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", util::display(&cmd)))?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        util::display(&cmd),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

fn wait_glusterd(i: usize) -> Result<()> {
    wait_for(
        &format!("glusterd in {}", node_name(i)),
        GLUSTER_READY,
        || Ok(gluster_exec(i, &["peer", "status"]).is_ok().then_some(())),
    )
}

/// Waits until all bricks of `volume` are online (the volume must list `nodes` bricks).
pub fn wait_bricks_online(nodes: usize, volume: &str, timeout: Duration) -> Result<()> {
    wait_for(
        &format!("all {nodes} bricks of {volume} online"),
        timeout,
        || {
            let xml = gluster_exec(0, &["volume", "status", volume, "--xml"])?;
            let online = online_bricks(&xml);
            Ok((online.len() >= nodes).then_some(()))
        },
    )
}

/// True when exactly nodes 0..nodes exist, run, and have their addresses.
fn cluster_matches(nodes: usize) -> Result<bool> {
    let mut existing = fixture_containers()?;
    existing.sort();
    let mut wanted: Vec<String> = (0..nodes).map(node_name).collect();
    wanted.sort();
    if existing != wanted {
        return Ok(false);
    }
    for i in 0..nodes {
        let name = node_name(i);
        if container_state(&name)? != "running" || container_ip(&name)? != node_ip(i).to_string() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn network_exists() -> bool {
    docker(&["network", "inspect", "--format", "{{.Id}}", NETWORK]).is_ok()
}

/// Starts (or reuses) `nodes` gluster nodes and a started volume `volume` on them: replica
/// `nodes` (plain for one node), `network.ping-timeout 5`, all bricks online. Returns the
/// volume with node 0's address as `host` and node 0's brick directory on this host as
/// `brick`.
pub fn cluster_up(nodes: usize, volume: &str) -> Result<LiveVolume> {
    ensure!(
        (1..=MAX_NODES).contains(&nodes),
        "nodes must be 1 to {MAX_NODES}, not {nodes}"
    );
    ensure!(
        !volume.is_empty()
            && volume
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "bad volume name {volume:?}"
    );
    // engine, images, containers, one glusterd per node, peers, volume
    let progress = Progress::new("fixture", 5 + nodes as u64);
    progress.step("docker engine", ensure_engine)?;
    progress.step("gluster node image", build_images)?;
    progress.step(&format!("{nodes} node containers"), || {
        let reuse = network_exists() && cluster_matches(nodes)?;
        if !reuse {
            cluster_down()?;
            create_nodes(nodes)?;
        } else {
            progress.line(&format!("reusing the {nodes}-node gluster cluster"));
        }
        Ok(())
    })?;
    for i in 0..nodes {
        progress.step(&format!("glusterd on {}", node_name(i)), || {
            wait_glusterd(i)
        })?;
    }
    progress.step("peers", || probe_peers(nodes))?;
    progress.step(&format!("volume {volume}"), || ensure_volume(nodes, volume))?;
    progress.finish();
    Ok(LiveVolume {
        name: volume.to_string(),
        host: node_ip(0).to_string(),
        brick: brick_root_on_host(0)?.join(volume),
    })
}

fn create_nodes(nodes: usize) -> Result<()> {
    let args = network_create_args();
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .context("creating the fixture network")?;
    for i in 0..nodes {
        let args = node_run_args(i, BRICK_STORE);
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .with_context(|| format!("starting {}", node_name(i)))?;
    }
    Ok(())
}

fn probe_peers(nodes: usize) -> Result<()> {
    if nodes < 2 {
        return Ok(());
    }
    for i in 1..nodes {
        gluster_exec(0, &["peer", "probe", &node_ip(i).to_string()])?;
    }
    wait_for(
        &format!("{} peers connected", nodes - 1),
        GLUSTER_READY,
        || {
            let status = gluster_exec(0, &["peer", "status"])?;
            Ok((connected_peers(&status) == nodes - 1).then_some(()))
        },
    )
}

fn ensure_volume(nodes: usize, volume: &str) -> Result<()> {
    let wanted: Vec<String> = (0..nodes).map(|i| brick_spec(i, volume)).collect();
    let info = match gluster_exec(0, &["volume", "info", volume]) {
        Ok(text) => parse_volume_info(&text),
        Err(_) => {
            let args = volume_create_args(nodes, volume);
            gluster_exec(0, &args.iter().map(String::as_str).collect::<Vec<_>>())
                .with_context(|| format!("creating volume {volume}"))?;
            gluster_exec(0, &["volume", "set", volume, "network.ping-timeout", "5"])?;
            parse_volume_info(&gluster_exec(0, &["volume", "info", volume])?)
        }
    };
    ensure!(
        info.bricks == wanted,
        "volume {volume} exists with bricks {:?}, not {wanted:?}; run cluster_down first",
        info.bricks
    );
    if !info.started {
        gluster_exec(0, &["volume", "start", volume])?;
    }
    wait_bricks_online(nodes, volume, GLUSTER_READY)
}

/// Removes the fixture's containers (with their brick volumes) and network, and a bridge
/// device left behind by a crashed engine. Does nothing when the engine is not running.
pub fn cluster_down() -> Result<()> {
    if engine_answers() {
        let containers = fixture_containers()?;
        if !containers.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(containers.iter().map(String::as_str));
            docker(&args).context("removing the fixture containers")?;
        }
        if network_exists() {
            docker(&["network", "rm", NETWORK]).context("removing the fixture network")?;
        }
    }
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        let _ = capture(Command::new("ip").args(["link", "delete", BRIDGE]), SHORT);
    }
    Ok(())
}

/// Stops node `i` (`docker stop`, 5 s grace): its bricks go away with a closed connection.
pub fn node_stop(i: usize) -> Result<()> {
    docker(&["stop", "--time", "5", &node_name(i)]).map(drop)
}

/// Kills node `i` at once (`docker kill`, SIGKILL to everything in it): its bricks vanish
/// mid-request, as when a server loses power.
pub fn node_kill(i: usize) -> Result<()> {
    docker(&["kill", &node_name(i)]).map(drop)
}

/// Starts node `i` again and waits until its glusterd answers (its bricks come back by
/// themselves; see [`wait_bricks_online`]).
pub fn node_start(i: usize) -> Result<()> {
    docker(&["start", &node_name(i)])?;
    wait_glusterd(i)
}

/// Freezes node `i` (`docker pause`): its TCP connections stay open but nothing answers, so
/// clients hang until `network.ping-timeout` (5 s here) drops it.
pub fn node_pause(i: usize) -> Result<()> {
    docker(&["pause", &node_name(i)]).map(drop)
}

/// Thaws node `i`. A replica volume then needs [`heal`] to resync what it missed.
pub fn node_unpause(i: usize) -> Result<()> {
    docker(&["unpause", &node_name(i)]).map(drop)
}

/// Starts a heal of `volume` (`gluster volume heal`).
pub fn heal(volume: &str) -> Result<()> {
    gluster_exec(0, &["volume", "heal", volume]).map(drop)
}

/// Entries still to heal on any brick (`gluster volume heal <vol> info`).
pub fn heal_pending(volume: &str) -> Result<usize> {
    let text = gluster_exec(0, &["volume", "heal", volume, "info"])?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Number of entries:"))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .sum())
}

/// Starts a heal of `volume` and waits until no entry is left to heal.
pub fn wait_healed(volume: &str, timeout: Duration) -> Result<()> {
    heal(volume)?;
    wait_for(&format!("{volume} healed"), timeout, || {
        Ok((heal_pending(volume)? == 0).then_some(()))
    })
}

/// End-to-end check of the fixture, with the time of each step: engine, images, a
/// `nodes`-node volume, a gfapi write with fio from this host, then `cluster_down`.
pub fn smoke(nodes: usize) -> Result<Vec<(String, Duration)>> {
    let mut timings = Vec::new();
    let mut step = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        eprintln!(
            "[{:>6.1} s] {name}: {}",
            took.as_secs_f64(),
            if result.is_ok() { "ok" } else { "FAILED" }
        );
        timings.push((name.to_string(), took));
        result
    };
    step("engine", &mut ensure_engine)?;
    step("images", &mut build_images)?;
    let mut live = None;
    step(&format!("cluster_up({nodes})"), &mut || {
        live = Some(cluster_up(nodes, "smoke")?);
        Ok(())
    })?;
    let live = live.expect("set by the step");
    step("fio gfapi write 16 MiB", &mut || {
        stream(
            Command::new("fio")
                .args([
                    "--ioengine=gfapi",
                    "--name=probe",
                    "--filename=probe",
                    "--size=16m",
                ])
                .args(["--rw=write", "--bs=64k", "--end_fsync=1"])
                .arg(format!("--volume={}", live.name))
                .arg(format!("--brick={}", live.host)),
            Duration::from_secs(180),
        )
    })?;
    step("bytes on every brick", &mut || {
        for i in 0..nodes {
            let len = read_brick_file(i, &live.name, "probe")?.len();
            ensure!(len == 16 << 20, "{}: probe is {len} bytes", node_name(i));
        }
        let host = live.brick.join("probe");
        let len = std::fs::metadata(&host)
            .with_context(|| format!("{}", host.display()))?
            .len();
        ensure!(len == 16 << 20, "{}: {len} bytes", host.display());
        Ok(())
    })?;
    step(&format!("cluster_up({nodes}) again (reuse)"), &mut || {
        cluster_up(nodes, "smoke").map(drop)
    })?;
    step("cluster_down", &mut cluster_down)?;
    Ok(timings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn only_an_engine_that_cannot_run_counts_as_unavailable() {
        let exited: anyhow::Error =
            EngineUnavailable("dockerd exited (exit status: 1)".into()).into();
        assert!(engine_unavailable(&exited));
        assert!(engine_unavailable(&exited.context("docker fixture")));
        let build = anyhow::anyhow!("building the gluster node image failed");
        assert!(!engine_unavailable(&build));
        let skipped: anyhow::Error = util::Skipped("something".into()).into();
        assert!(!engine_unavailable(&skipped));
    }

    #[test]
    fn mirror_from_this_machines_deb822_file() {
        let text = "Types: deb\n\
                    # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                    URIs: http://deb.debian.org/debian\n\
                    Suites: bookworm bookworm-updates\n\
                    Components: main\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
                    \n\
                    Types: deb\n\
                    URIs: http://deb.debian.org/debian-security\n\
                    Suites: bookworm-security\n\
                    Components: main\n";
        let found = apt_mirror(&files(&[("debian.sources", text)]), "bookworm");
        assert_eq!(found.as_deref(), Some("http://deb.debian.org/debian"));
    }

    #[test]
    fn mirror_skips_disabled_files_security_suites_and_deb_src() {
        let all = files(&[
            (
                "google.list.disabled-by-farm",
                "deb http://wrong.example/debian bookworm main\n",
            ),
            (
                "security.sources",
                "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n",
            ),
            (
                "off.sources",
                "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n",
            ),
            (
                "src.sources",
                "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n",
            ),
            (
                "good.sources",
                "Types: deb deb-src\nURIs:\n http://mirror.example/debian/\nSuites: bookworm\n",
            ),
        ]);
        assert_eq!(
            apt_mirror(&all, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn mirror_from_one_line_format_with_options_and_comments() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb http://security.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://ftp.example.org/debian/ bookworm main contrib\n";
        let found = apt_mirror(&files(&[("sources.list", text)]), "bookworm");
        assert_eq!(found.as_deref(), Some("http://ftp.example.org/debian"));
        assert_eq!(
            apt_mirror(&files(&[("sources.list", "")]), "bookworm"),
            None
        );
    }

    /// Splits an expected command line written out as one string.
    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn run_args_for_a_node() {
        assert_eq!(
            node_run_args(2, BrickStore::Tmpfs),
            words(
                "run --detach --name glfs-iscsi-node2 --hostname glfs-iscsi-node2 \
                 --label io.glfs-iscsi.fixture=node --network glfs-iscsi-net --ip 172.30.77.12 \
                 --cap-add SYS_ADMIN --init --tmpfs /bricks glfs-iscsi/gluster-node:bookworm"
            )
        );
        assert_eq!(
            node_run_args(0, BrickStore::Volume),
            words(
                "run --detach --name glfs-iscsi-node0 --hostname glfs-iscsi-node0 \
                 --label io.glfs-iscsi.fixture=node --network glfs-iscsi-net --ip 172.30.77.10 \
                 --cap-add SYS_ADMIN --init --volume /bricks glfs-iscsi/gluster-node:bookworm"
            )
        );
    }

    #[test]
    fn network_args() {
        assert_eq!(
            network_create_args(),
            words(
                "network create --driver bridge --subnet 172.30.77.0/24 \
                 --opt com.docker.network.bridge.name=glfsiscsi0 \
                 --label io.glfs-iscsi.fixture=network glfs-iscsi-net"
            )
        );
    }

    #[test]
    fn volume_create_replica_and_plain() {
        assert_eq!(
            volume_create_args(3, "v"),
            words(
                "volume create v replica 3 172.30.77.10:/bricks/v 172.30.77.11:/bricks/v \
                 172.30.77.12:/bricks/v force"
            )
        );
        assert_eq!(
            volume_create_args(1, "v"),
            words("volume create v 172.30.77.10:/bricks/v force")
        );
    }

    #[test]
    fn volume_info_of_a_started_replica() {
        let text = "\nVolume Name: smoke\nType: Replicate\nVolume ID: 5b1c\nStatus: Started\n\
                    Snapshot Count: 0\nNumber of Bricks: 1 x 3 = 3\nTransport-type: tcp\nBricks:\n\
                    Brick1: 172.30.77.10:/bricks/smoke\nBrick2: 172.30.77.11:/bricks/smoke\n\
                    Brick3: 172.30.77.12:/bricks/smoke\nOptions Reconfigured:\n\
                    network.ping-timeout: 5\ncluster.granular-entry-heal: on\n";
        assert_eq!(
            parse_volume_info(text),
            VolumeInfo {
                started: true,
                bricks: vec![
                    "172.30.77.10:/bricks/smoke".into(),
                    "172.30.77.11:/bricks/smoke".into(),
                    "172.30.77.12:/bricks/smoke".into(),
                ],
            }
        );
        let created = parse_volume_info("Volume Name: v\nStatus: Created\nBricks:\nBrick1: h:/b\n");
        assert!(!created.started);
        assert_eq!(created.bricks, ["h:/b"]);
    }

    #[test]
    fn peers_connected_only_when_in_cluster() {
        let text = "Number of Peers: 2\n\nHostname: 172.30.77.11\nUuid: a\n\
                    State: Peer in Cluster (Connected)\n\nHostname: 172.30.77.12\nUuid: b\n\
                    State: Accepted peer request (Connected)\n";
        assert_eq!(connected_peers(text), 1);
    }

    #[test]
    fn online_bricks_from_status_xml() {
        let xml = "<cliOutput><volStatus><volumes><volume><volName>v</volName>\
            <node><hostname>172.30.77.10</hostname><path>/bricks/v</path><peerid>x</peerid>\
            <status>1</status><port>49152</port></node>\
            <node><hostname>172.30.77.11</hostname><path>/bricks/v</path><peerid>y</peerid>\
            <status>0</status><port>N/A</port></node>\
            <node><hostname>Self-heal Daemon</hostname><path>172.30.77.10</path>\
            <peerid>x</peerid><status>1</status></node>\
            </volume></volumes></volStatus></cliOutput>";
        assert_eq!(online_bricks(xml), ["172.30.77.10:/bricks/v"]);
    }

    #[test]
    fn brick_pids_from_status_xml() {
        // The shape gluster 10.3 prints (`gluster volume status v --xml`), shortened.
        let xml = "<volume><volName>v</volName><nodeCount>3</nodeCount>\
            <node><hostname>127.0.0.2</hostname><path>/srv/glfs-iscsi-bricks/v</path>\
            <peerid>p</peerid><status>1</status><port>54320</port>\
            <ports><tcp>54320</tcp><rdma>N/A</rdma></ports><pid>4242</pid></node>\
            <node><hostname>127.0.0.3</hostname><path>/srv/b</path><peerid>q</peerid>\
            <status>0</status><port>N/A</port><pid>-1</pid></node>\
            <node><hostname>Self-heal Daemon</hostname><path>localhost</path>\
            <peerid>p</peerid><status>1</status><port>N/A</port><pid>78</pid></node></volume>";
        assert_eq!(brick_pids(xml), [4242]);
    }

    #[test]
    fn context_hash_changes_with_content_and_name() {
        let a = context_hash(&[("Dockerfile".into(), b"FROM x\n".to_vec())]);
        assert_eq!(a.len(), 16);
        assert_ne!(
            a,
            context_hash(&[("Dockerfile".into(), b"FROM y\n".to_vec())])
        );
        assert_ne!(
            a,
            context_hash(&[("Dockerfile2".into(), b"FROM x\n".to_vec())])
        );
        assert_eq!(
            a,
            context_hash(&[("Dockerfile".into(), b"FROM x\n".to_vec())])
        );
        // FNV-1a 64 of the empty input is its offset basis.
        assert_eq!(context_hash(&[]), "cbf29ce484222325");
    }

    #[test]
    fn node_addresses_stay_in_the_subnet() {
        assert_eq!(node_ip(0), Ipv4Addr::new(172, 30, 77, 10));
        assert_eq!(node_ip(MAX_NODES - 1), Ipv4Addr::new(172, 30, 77, 25));
        assert_eq!(node_name(1), "glfs-iscsi-node1");
        assert_eq!(brick_spec(1, "vol"), "172.30.77.11:/bricks/vol");
    }
}
