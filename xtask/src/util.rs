//! Helpers shared by the tasks.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the parent of `xtask/`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => project_root().join("target"),
    }
}

/// The cargo that runs us.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cmd`, echoing it, and fails with its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", display(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", display(cmd));
    }
    Ok(())
}

pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// A check that could not run because something it needs is missing (a binary, a package).
/// Locally it is reported and passed over; under CI (where `.ci/run` installs everything)
/// it is a failure.
#[derive(Debug)]
pub struct Skipped(pub String);

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

impl std::error::Error for Skipped {}

/// True when running under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Tallies named checks and prints a closing line.
#[derive(Default)]
pub struct Checks {
    passed: Vec<String>,
    failed: Vec<(String, String)>,
    skipped: Vec<(String, String)>,
}

impl Checks {
    /// Records a check that must pass.
    pub fn record(&mut self, name: &str, outcome: Result<()>) {
        match outcome {
            Ok(()) => {
                eprintln!("[pass] {name}");
                self.passed.push(name.to_string());
            }
            Err(err) => {
                eprintln!("[FAIL] {name}: {err:#}");
                self.failed.push((name.to_string(), format!("{err:#}")));
            }
        }
    }

    /// Records a check that may be skipped outside CI when what it needs is missing.
    pub fn record_optional(&mut self, name: &str, outcome: Result<()>) {
        match outcome {
            Err(err) if err.downcast_ref::<Skipped>().is_some() && !in_ci() => {
                eprintln!("[skip] {name}: {err}");
                self.skipped.push((name.to_string(), err.to_string()));
            }
            other => self.record(name, other),
        }
    }

    /// Records a check that did not run because `why` (printed as `[skip] name: why`).
    pub fn skip(&mut self, name: &str, why: &str) {
        eprintln!("[skip] {name}: {why}");
        self.skipped.push((name.to_string(), why.to_string()));
    }

    /// Prints the summary and fails if any check failed.
    pub fn finish(self, label: &str) -> Result<()> {
        eprintln!();
        for (name, why) in &self.skipped {
            eprintln!("skipped: {name}: {why}");
        }
        for (name, why) in &self.failed {
            eprintln!("failed: {name}: {why}");
        }
        let summary = if self.skipped.is_empty() {
            format!(
                "{label}: {} passed, {} failed",
                self.passed.len(),
                self.failed.len()
            )
        } else {
            format!(
                "{label}: {} passed, {} failed, {} skipped",
                self.passed.len(),
                self.failed.len(),
                self.skipped.len()
            )
        };
        println!("{summary}");
        if !self.failed.is_empty() {
            bail!("{} check(s) failed", self.failed.len());
        }
        Ok(())
    }
}

/// Whether `cargo nextest` is installed.
pub fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The workspace tests matching the nextest filter expression `filter`, one
/// `<binary id> <test name>` a line (builds the test binaries, as `run` would).
pub fn list_workspace_tests(filter: &str) -> Result<Vec<String>> {
    let out = output(cargo().args(["nextest", "list", "--workspace", "-E", filter]))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Runs the workspace's tests with nextest (cargo test when nextest is missing), with the
/// fake library's path in `GFAPI_FAKE_LIB`; `exclude` is a nextest filter expression of
/// tests not to run (ignored by the cargo test fallback).
pub fn run_workspace_tests(fake_lib: &Path, exclude: Option<&str>) -> Result<()> {
    let mut cmd = cargo();
    if has_nextest() {
        cmd.args(["nextest", "run", "--workspace", "--no-tests=warn"]);
        if in_ci() {
            cmd.args(["--profile", "ci"]);
        }
        if let Some(filter) = exclude {
            cmd.arg("-E").arg(format!("not ({filter})"));
        }
    } else {
        eprintln!("cargo-nextest is not installed; running cargo test instead");
        cmd.args(["test", "--workspace"]);
    }
    cmd.env("GFAPI_FAKE_LIB", fake_lib);
    run(&mut cmd)
}

/// Builds the target daemon and returns the binary's path.
pub fn build_target_binary() -> Result<PathBuf> {
    run(cargo().args(["build", "--package", "daemon", "--bin", "glfs-iscsi"]))?;
    let path = target_dir().join("debug").join("glfs-iscsi");
    anyhow::ensure!(
        path.exists(),
        "built glfs-iscsi but {} is missing",
        path.display()
    );
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests on one machine).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Looks a program up on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Runs `cmd` and returns its stdout, failing with its stderr when it fails.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", display(cmd)))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            display(cmd),
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(stdout)
}
