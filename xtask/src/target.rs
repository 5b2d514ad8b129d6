//! Runs the real target binary on a fake gfapi volume and drives it with libiscsi's tools.

use crate::util::{self, Skipped};
use anyhow::{ensure, Context, Result};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::daemon::{Daemon, Launch};

pub const TARGET_IQN: &str = "iqn.2026-11.io.glfs-iscsi:offline";
const VOLUME: &str = "offline";
const LUN_FILE: &str = "lun0.img";
const LUN_SIZE: u64 = 64 << 20;

/// A running `glfs-iscsi` serving one glfs LUN, killed on drop (through the workspace's
/// one process harness, [`testkit::daemon`]).
pub struct TargetProcess {
    daemon: Daemon,
    lun_file: Option<PathBuf>,
    size: u64,
}

/// What the LUN of a [`TargetProcess`] is stored on.
pub struct LunSetup {
    /// `glfs`, `file` or `memory`.
    pub bstype: String,
    /// `volume@host:path` for glfs, a path for file, empty for memory.
    pub backing_store: String,
    /// Where the LUN's bytes can be read back on this machine (fake file, brick file).
    pub local_file: Option<PathBuf>,
    /// libgfapi to load: the fake, or None for the system's.
    pub library: Option<PathBuf>,
    /// Extra environment (GFAPI_FAKE_ROOT for the fake).
    pub env: Vec<(String, PathBuf)>,
    /// Directory for logs.
    pub log_dir: PathBuf,
}

impl TargetProcess {
    /// Starts the target on a fresh fake volume under the target directory.
    pub fn on_fake_volume(binary: &Path, fake_lib: &Path) -> Result<Self> {
        Self::start(binary, Self::fake_volume_lun(fake_lib)?)
    }

    /// The LUN of [`TargetProcess::on_fake_volume`]: a fresh fake volume under the target
    /// directory (made here).
    pub fn fake_volume_lun(fake_lib: &Path) -> Result<LunSetup> {
        let root = util::target_dir().join("offline-fixture");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(VOLUME))?;
        Ok(LunSetup {
            bstype: "glfs".into(),
            backing_store: format!("{VOLUME}@127.0.0.2:{LUN_FILE}"),
            local_file: Some(root.join(VOLUME).join(LUN_FILE)),
            library: Some(fake_lib.to_path_buf()),
            env: vec![("GFAPI_FAKE_ROOT".into(), root.clone())],
            log_dir: root,
        })
    }

    pub fn start(binary: &Path, lun: LunSetup) -> Result<Self> {
        Self::start_with(binary, lun, &[])
    }

    /// [`TargetProcess::start`] with more command-line arguments.
    pub fn start_with(binary: &Path, lun: LunSetup, args: &[String]) -> Result<Self> {
        std::fs::create_dir_all(&lun.log_dir)?;
        let mut launch = Launch::new(binary)
            // The portal listens once the LUN is open: a glfs mount may take its whole
            // time limit (60 s by default) on a slow or half-dead volume.
            .patience(Duration::from_secs(90))
            .log(lun.log_dir.join("glfs-iscsi.log"))
            .args(["--target", TARGET_IQN, "--bstype", &lun.bstype])
            .args(["--backing-store", &lun.backing_store])
            .args(["--size", &LUN_SIZE.to_string()])
            .args(args);
        for (key, value) in &lun.env {
            launch = launch.env(key, value);
        }
        if lun.bstype == "glfs" {
            launch = launch.args([
                "--bsopts".to_string(),
                format!(
                    "logfile={};loglevel=7",
                    lun.log_dir.join("gfapi.log").display()
                ),
            ]);
        }
        if let Some(library) = &lun.library {
            launch = launch.args([OsStr::new("--gfapi-library"), library.as_os_str()]);
        }
        Ok(TargetProcess {
            daemon: Daemon::start(launch)?,
            lun_file: lun.local_file,
            size: LUN_SIZE,
        })
    }

    /// Everything the target logged so far.
    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }

    /// True while the target process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    pub fn portal(&self) -> SocketAddr {
        self.daemon.portal()
    }

    /// The target's process id (for its /proc entries), while it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.daemon.pid())
    }

    pub fn url(&self) -> String {
        format!("iscsi://{}/{TARGET_IQN}/0", self.portal())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file behind the LUN, as seen on this machine, if there is one.
    pub fn lun_file(&self) -> Option<&Path> {
        self.lun_file.as_deref()
    }

    /// Stops the target with SIGTERM and checks it exits cleanly.
    pub fn stop(self) -> Result<()> {
        self.daemon.stop(Duration::from_secs(15))
    }
}

/// Checks that what the iscsi-test-cu write suites wrote reached the LUN's file:
/// it has the LUN's size and is no longer all zeroes.
pub fn check_bytes_landed(target: &TargetProcess) -> Result<()> {
    let path = target.lun_file().context("this LUN has no file to check")?;
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        data.len() as u64 == target.size(),
        "{} has {} bytes, expected {}",
        path.display(),
        data.len(),
        target.size()
    );
    ensure!(
        data.iter().any(|b| *b != 0),
        "{} is still all zeroes",
        path.display()
    );
    Ok(())
}

pub fn tool(name: &str) -> Result<Command> {
    match util::which(name) {
        Some(path) => Ok(Command::new(path)),
        None => Err(Skipped(format!(
            "{name} not installed (Debian package libiscsi-bin)"
        ))
        .into()),
    }
}

/// `iscsi-ls` lists our target at our portal.
pub fn check_discovery(target: &TargetProcess) -> Result<()> {
    let out = util::output(tool("iscsi-ls")?.arg(format!("iscsi://{}", target.portal())))?;
    ensure!(
        out.contains(TARGET_IQN) && out.contains(&target.portal().to_string()),
        "iscsi-ls did not list {TARGET_IQN} at {}: {out}",
        target.portal()
    );
    Ok(())
}

/// `iscsi-inq` returns a standard INQUIRY naming a direct-access device.
pub fn check_inquiry(url: &str) -> Result<()> {
    let out = util::output(tool("iscsi-inq")?.arg(url))?;
    ensure!(
        out.lines()
            .any(|l| l.trim() == "Peripheral Device Type:DIRECT_ACCESS"),
        "iscsi-inq does not report a direct-access device: {out}"
    );
    ensure!(
        out.lines().any(|l| l.trim() == "Vendor:GFISCSI"),
        "iscsi-inq does not show our vendor id: {out}"
    );
    Ok(())
}

/// `iscsi-readcapacity16` reports the LUN's size.
pub fn check_readcapacity16(url: &str, size: u64) -> Result<()> {
    let out = util::output(tool("iscsi-readcapacity16")?.arg(url))?;
    let blocks = size / 512;
    let has = |line: String| out.lines().any(|l| l.trim() == line);
    ensure!(
        has(format!("RETURNED LOGICAL BLOCK ADDRESS:{}", blocks - 1))
            && has("LOGICAL BLOCK LENGTH IN BYTES:512".to_string())
            && has(format!("Total size:{size}")),
        "iscsi-readcapacity16 does not report {blocks} blocks of 512 bytes: {out}"
    );
    Ok(())
}

/// Totals of one iscsi-test-cu run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCuResult {
    pub ran: u32,
    pub passed: u32,
    pub failed: u32,
}

/// Runs one iscsi-test-cu suite and fails unless every test ran passed.
pub fn run_test_cu(url: &str, suite: &str) -> Result<TestCuResult> {
    let out = tool("iscsi-test-cu")?
        .args(["--dataloss", "--test", suite, "--normal"])
        .arg(url)
        .output()
        .context("cannot start iscsi-test-cu")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let result = parse_test_cu(&text)
        .with_context(|| format!("no CUnit summary in iscsi-test-cu output: {text}"))?;
    ensure!(
        result.failed == 0 && result.ran > 0,
        "{suite}: {} of {} tests failed:\n{}",
        result.failed,
        result.ran,
        failures(&text)
    );
    Ok(result)
}

/// Reads the `tests` row of CUnit's run summary.
pub fn parse_test_cu(text: &str) -> Option<TestCuResult> {
    let line = text.lines().find(|l| l.trim_start().starts_with("tests"))?;
    let nums: Vec<u32> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // tests <total> <ran> <passed> <failed> <inactive>
    match nums.as_slice() {
        [_total, ran, passed, failed, ..] => Some(TestCuResult {
            ran: *ran,
            passed: *passed,
            failed: *failed,
        }),
        _ => None,
    }
}

fn failures(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("FAILED") || l.contains("failed") || l.contains("Test:"))
        .take(60)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cunit_summary_is_parsed() {
        let text = "Run Summary:    Type  Total    Ran Passed Failed Inactive\n\
                    \x20             suites      1      1    n/a      0        0\n\
                    \x20              tests      7      6      5      1        0\n\
                    \x20            asserts     20     20     19      1      n/a\n";
        assert_eq!(
            parse_test_cu(text),
            Some(TestCuResult {
                ran: 6,
                passed: 5,
                failed: 1
            })
        );
        assert_eq!(parse_test_cu("nothing here"), None);
    }
}
