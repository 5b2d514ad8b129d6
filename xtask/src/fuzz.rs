//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` (nightly, libFuzzer, address
//! sanitizer) each for a time budget, under `nice`, one after the other.
//!
//! * the seeds are `testdata/fuzz/<target>/` (checked in, read only here); what a run
//!   discovers goes to `target/fuzz/corpus/<target>/` and is kept for the next run;
//! * a failing input is written to `target/fuzz/artifacts/<target>/` (crash-*, oom-*,
//!   timeout-*, leak-*) and fails the task. Make it a regression: copy it into
//!   `testdata/fuzz/<target>/` (then `cargo test -p fuzz-targets` replays it on stable)
//!   and add a unit test for the fix beside the code it fixes;
//! * cargo-fuzz is installed with `cargo install cargo-fuzz --locked` when missing;
//! * `fuzz/Cargo.lock` is the workspace's `Cargo.lock`, copied before each build.
//!
//! Ends with one line per target: its time, executions, coverage and result.

use crate::util::{self, project_root};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The targets, in the order they run (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: &[&str] = &["pdu", "login_text", "chap", "connection", "scsi"];

#[derive(clap::Args)]
pub struct FuzzOptions {
    /// Seconds to run each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Run only this target (repeatable).
    #[arg(long = "target", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
    /// libFuzzer's memory limit per target process, in MiB.
    #[arg(long, default_value_t = 2048)]
    pub rss_limit_mb: u64,
}

/// One target's run.
struct Outcome {
    target: String,
    seconds: u64,
    execs: Option<u64>,
    coverage: Option<u64>,
    failures: Vec<PathBuf>,
    exit_ok: bool,
}

fn cargo_fuzz_installed() -> bool {
    util::cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The nightly cargo: cargo-fuzz needs `-Z` flags for the sanitizer.
fn nightly() -> Command {
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "10", "cargo", "+nightly"]);
    // The stable toolchain xtask runs under must not leak into the nightly build.
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC"] {
        cmd.env_remove(var);
    }
    cmd
}

fn failures(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                ["crash-", "oom-", "timeout-", "leak-"]
                    .iter()
                    .any(|k| n.starts_with(k))
            })
        })
        .collect();
    v.sort();
    v
}

/// The number after `key` in libFuzzer's output (`stat::number_of_executed_units: 123`,
/// `cov: 456`), last occurrence.
fn stat(output: &str, key: &str) -> Option<u64> {
    output
        .rsplit(key)
        .next()
        .filter(|_| output.contains(key))
        .and_then(|rest| {
            rest.trim_start_matches([':', ' '])
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
}

pub fn run(opts: &FuzzOptions) -> Result<()> {
    let root = project_root();
    if !cargo_fuzz_installed() {
        eprintln!("cargo-fuzz is missing; installing it from the registry");
        util::run(util::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let targets: Vec<&str> = if opts.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        opts.targets.iter().map(String::as_str).collect()
    };
    let fuzz_target_dir = util::target_dir().join("fuzz");
    // fuzz/ is a workspace of its own: start its lock file from the main one, so the
    // targets are built with the dependency versions the project tests (cargo then only
    // adds libfuzzer-sys). It is not checked in, so it never drifts.
    std::fs::copy(root.join("Cargo.lock"), root.join("fuzz/Cargo.lock"))
        .context("cannot copy Cargo.lock into fuzz/")?;
    // Build them all first, so the time budget is spent fuzzing.
    util::run(
        nightly()
            .current_dir(&root)
            .args(["fuzz", "build", "--target-dir"])
            .arg(&fuzz_target_dir),
    )?;
    let mut outcomes = Vec::new();
    let progress = crate::progress::Progress::new("fuzz", targets.len() as u64);
    for target in targets {
        progress.start(&format!("{target} for {} s", opts.seconds));
        let seeds = root.join("testdata/fuzz").join(target);
        let corpus = fuzz_target_dir.join("corpus").join(target);
        let artifacts = fuzz_target_dir.join("artifacts").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let before = failures(&artifacts);
        let mut cmd = nightly();
        cmd.current_dir(&root)
            .args(["fuzz", "run", target, "--target-dir"])
            .arg(&fuzz_target_dir)
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", opts.seconds))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(format!("-rss_limit_mb={}", opts.rss_limit_mb))
            .arg("-timeout=20")
            .arg("-print_final_stats=1");
        progress.line(&format!("$ {}", util::display(&cmd)));
        let output = cmd
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run the {target} fuzz target"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        let log_path = fuzz_target_dir.join(format!("{target}.log"));
        std::fs::write(&log_path, log.as_bytes())?;
        let new: Vec<PathBuf> = failures(&artifacts)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        outcomes.push(Outcome {
            target: target.to_string(),
            seconds: opts.seconds,
            execs: stat(&log, "stat::number_of_executed_units"),
            coverage: stat(&log, "cov:"),
            failures: new,
            exit_ok: output.status.success(),
        });
        let o = outcomes.last().expect("pushed");
        if !o.exit_ok || !o.failures.is_empty() {
            // The report libFuzzer printed: the panic and the input.
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                progress.line(&format!("  {line}"));
            }
        }
        progress.done();
    }
    progress.finish();
    let mut failed = 0;
    println!("fuzz: {} s per target", opts.seconds);
    for o in &outcomes {
        let ok = o.exit_ok && o.failures.is_empty();
        failed += usize::from(!ok);
        println!(
            "  {:<11} {:>5} s  {:>12} execs  cov {:>6}  {}",
            o.target,
            o.seconds,
            o.execs.map_or("?".into(), |n| n.to_string()),
            o.coverage.map_or("?".into(), |n| n.to_string()),
            if ok {
                "no failure".to_string()
            } else if o.failures.is_empty() {
                format!(
                    "FAILED (see {}/{}.log)",
                    fuzz_target_dir.display(),
                    o.target
                )
            } else {
                format!(
                    "FAILED: {}",
                    o.failures
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    if failed > 0 {
        bail!("{failed} fuzz target(s) failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_binary_seeds_and_an_entry_point() {
        let root = project_root();
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        let entry = std::fs::read_to_string(root.join("crates/fuzz-targets/src/lib.rs")).unwrap();
        for t in TARGETS {
            assert!(
                root.join(format!("fuzz/fuzz_targets/{t}.rs")).is_file(),
                "{t}"
            );
            assert!(
                manifest.contains(&format!("name = \"{t}\"")),
                "{t} in fuzz/Cargo.toml"
            );
            assert!(entry.contains(&format!("(\"{t}\", {t})")), "{t} in TARGETS");
            let seeds = std::fs::read_dir(root.join("testdata/fuzz").join(t))
                .unwrap()
                .count();
            assert!(seeds > 0, "{t} has no seeds");
        }
    }

    #[test]
    fn libfuzzer_statistics_are_read_from_its_output() {
        let log = "#1024 pulse  cov: 77 ft: 80\n#2048 DONE cov: 91 ft: 99 corp: 12\n\
                   stat::number_of_executed_units: 123456\nstat::average_exec_per_sec: 10\n";
        assert_eq!(stat(log, "stat::number_of_executed_units"), Some(123456));
        assert_eq!(stat(log, "cov:"), Some(91));
        // A corpus line mentioning Discovery after the last coverage figure.
        assert_eq!(
            stat(&format!("{log}SessionType=Discovery\n"), "cov:"),
            Some(91)
        );
        assert_eq!(stat("nothing", "cov:"), None);
    }
}
