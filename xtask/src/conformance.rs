//! `cargo xtask conformance`: libiscsi's iscsi-test-cu, every SCSI.* and iSCSI.* suite, against
//! the real target on each backend. Results are kept in `testdata/conformance/<backend>.txt`
//! (one `test result` line each) and may only improve: a test that passed there and does not
//! pass now fails the task. `--bless` records the current results.
//!
//! iscsi-test-cu gets the LUN's URL twice, so every suite runs with two sessions (two I_T
//! nexuses, logged in with iscsi-test-cu's two initiator names) to the same logical unit, as
//! a multipath host has them; the SCSI.MultipathIO suite needs that second path.
//!
//! SCSI.ReadOnly runs last, on a target of its own that exports the LU read-only (its tests
//! skip on a writable one).
//!
//! Each suite runs in its own iscsi-test-cu process under a time limit, so a hang is recorded
//! as `hung` for the tests that had not finished, and the task goes on. A target that died is
//! restarted and the death recorded.

use crate::fake;
use crate::progress::Progress;
use crate::target::{LunSetup, TargetProcess};
use crate::util::{self, Skipped};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The backends conformance runs over offline.
pub const BACKENDS: &[&str] = &["memory", "file", "glfs-fake"];

/// The backend on a live Gluster volume (`cargo xtask test-gluster` runs it; by hand it
/// needs `--live-volume VOLUME@HOST`): a glfs LUN through the real libgfapi, a new file
/// each run.
pub const LIVE_BACKEND: &str = "glfs-live";

/// Tests we fail on purpose, with the reason (written next to them in the snapshots).
/// (SCSI.WriteSame16.Unmap, which wrote 65536 blocks in one WRITE(16) above our MAXIMUM
/// TRANSFER LENGTH, now sees a MAXIMUM WRITE SAME LENGTH below 65536 blocks and checks that
/// the longer WRITE SAME is refused instead.)
pub const EXPECTED_FAILURES: &[(&str, &str)] = &[(
    "SCSI.Sanitize.Reset",
    "expects a SANITIZE OVERWRITE still running 3 s after it was sent and going on through \
     ABORT TASK, the resets and a new login; ours of the 64 MiB LU ends within milliseconds, \
     and one aborted ends in sanitize failure mode (a sanitize that goes on through resets, \
     with IMMED, is not implemented)",
)];

/// Per-suite time limit.
const SUITE_TIMEOUT: Duration = Duration::from_secs(120);

/// What one test did, worst first: a lower outcome than the recorded one is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The suite ran out of time before the test gave a verdict.
    Hung,
    Failed,
    /// CUnit said passed, but the test skipped itself (printed `[SKIPPED]`) because the target
    /// reported the feature as not supported.
    Skipped,
    Passed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Hung => "hung",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "passed" => Some(Outcome::Passed),
            "skipped" => Some(Outcome::Skipped),
            "failed" => Some(Outcome::Failed),
            "hung" => Some(Outcome::Hung),
            _ => None,
        }
    }
}

/// Test name (`SCSI.Read10.Simple`) to outcome.
pub type Results = BTreeMap<String, Outcome>;

/// Runs the suites on each of `backends`; `live` (`volume@host`) is the volume of the
/// [`LIVE_BACKEND`].
pub fn run(
    backends: &[String],
    suite_filter: Option<&str>,
    bless: bool,
    live: Option<&str>,
) -> Result<()> {
    let tool = util::which("iscsi-test-cu").ok_or_else(|| {
        Skipped("iscsi-test-cu not installed (Debian package libiscsi-bin)".into())
    })?;
    let suites = list_suites(&tool)?;
    let suites: Vec<&String> = suites
        .iter()
        .filter(|s| suite_filter.is_none_or(|f| s.starts_with(f)))
        .collect();
    let fake_lib = fake::build()?;
    let binary = util::build_target_binary()?;
    let mut regressions = Vec::new();
    let progress = Progress::new("conformance", (backends.len() * suites.len()) as u64);
    for backend in backends {
        let results = run_backend(&tool, &binary, &fake_lib, backend, &suites, live, &progress)?;
        let snapshot = snapshot_path(backend);
        let old = read_results(&snapshot).unwrap_or_default();
        let (lost, gained) = compare(&old, &results, suite_filter);
        let count = |o: Outcome| results.values().filter(|r| **r == o).count();
        progress.line(&format!(
            "{backend}: {} passed, {} skipped (feature reported unsupported), {} failed, {} hung; \
             {} better than recorded, {} worse",
            count(Outcome::Passed),
            count(Outcome::Skipped),
            count(Outcome::Failed),
            count(Outcome::Hung),
            gained.len(),
            lost.len()
        ));
        for name in &lost {
            progress.line(&format!(
                "  regression: {name} passed in {} and does not now",
                snapshot.display()
            ));
        }
        if bless {
            let mut merged = old.clone();
            merged.extend(results.clone());
            write_results(&snapshot, &merged)?;
            progress.line(&format!("  recorded {}", snapshot.display()));
        } else if !gained.is_empty() {
            progress.line(&format!(
                "  {} tests pass that the snapshot does not record: run with --bless",
                gained.len()
            ));
        }
        regressions.extend(lost.into_iter().map(|n| format!("{backend}: {n}")));
    }
    progress.finish();
    if !regressions.is_empty() && !bless {
        bail!(
            "{} conformance regression(s):\n{}",
            regressions.len(),
            regressions.join("\n")
        );
    }
    Ok(())
}

fn run_backend(
    tool: &Path,
    binary: &Path,
    fake_lib: &Path,
    backend: &str,
    suites: &[&String],
    live: Option<&str>,
    progress: &Progress,
) -> Result<Results> {
    // The files made on a live volume, removed after the target below stopped.
    let remove = live.map(|v| std::cell::RefCell::new(crate::gluster::RemoveOnDrop::new(v, [])));
    // The LU each start serves: a fresh one (also after a target died).
    let lun = || -> Result<LunSetup> {
        match backend {
            "glfs-fake" => TargetProcess::fake_volume_lun(fake_lib),
            LIVE_BACKEND => {
                let Some(volume) = live else {
                    bail!("the {LIVE_BACKEND} backend needs a live volume (--live-volume VOLUME@HOST)");
                };
                let dir = util::target_dir().join(format!("conformance-{backend}"));
                std::fs::create_dir_all(&dir)?;
                // A new file on the volume each start: never one a replica could heal back.
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let file = format!("conformance-{stamp}.img");
                if let Some(remove) = &remove {
                    remove.borrow_mut().push(file.clone());
                }
                Ok(LunSetup {
                    bstype: "glfs".into(),
                    backing_store: format!("{volume}:{file}"),
                    local_file: None,
                    library: None,
                    env: vec![],
                    log_dir: dir,
                })
            }
            "memory" | "file" => {
                let dir = util::target_dir().join(format!("conformance-{backend}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                let file = dir.join("lun0.img");
                Ok(LunSetup {
                    bstype: backend.into(),
                    backing_store: if backend == "file" {
                        file.display().to_string()
                    } else {
                        String::new()
                    },
                    local_file: (backend == "file").then_some(file),
                    library: None,
                    env: vec![],
                    log_dir: dir,
                })
            }
            other => {
                bail!("unknown backend {other:?} (expected one of {BACKENDS:?} or {LIVE_BACKEND})")
            }
        }
    };
    let mut results = Results::new();
    // The suites that need the LU exported read-only run last, on a target of their own.
    let (read_only, writable): (Vec<&String>, Vec<&String>) =
        suites.iter().partition(|s| needs_read_only(s));
    for (suites, args) in [
        (writable, &[][..]),
        (read_only, &["--read-only".to_string()][..]),
    ] {
        if suites.is_empty() {
            continue;
        }
        let start = || TargetProcess::start_with(binary, lun()?, args);
        let mut target = start()?;
        for suite in suites {
            progress.start(&format!("{backend} {suite}"));
            let out = run_suite(tool, &target.url(), suite)?;
            let suite_results = parse_results(suite, &out.text, out.timed_out);
            let count = |o: Outcome| suite_results.values().filter(|r| **r == o).count();
            progress.line(&format!(
                "  {backend} {suite}: {} passed, {} skipped, {} failed{}",
                count(Outcome::Passed),
                count(Outcome::Skipped),
                count(Outcome::Failed) + count(Outcome::Hung),
                if out.timed_out { " (timed out)" } else { "" }
            ));
            progress.done();
            results.extend(suite_results);
            if !target.is_running() {
                progress.line(&format!("  the target died during {suite}; restarting it"));
                results.insert(format!("{suite}.<target survived>"), Outcome::Failed);
                target = start()?;
            }
        }
        target
            .stop()
            .context("stopping the target after the conformance run")?;
    }
    Ok(results)
}

/// Suites whose tests check a LU exported read-only (`--read-only`; on a writable one
/// they skip): SCSI.ReadOnly.
fn needs_read_only(suite: &str) -> bool {
    suite.starts_with("SCSI.ReadOnly")
}

struct SuiteOutput {
    text: String,
    timed_out: bool,
}

fn run_suite(tool: &Path, url: &str, suite: &str) -> Result<SuiteOutput> {
    let out = Command::new("timeout")
        .arg(SUITE_TIMEOUT.as_secs().to_string())
        .arg(tool)
        // Destructive tests and SANITIZE's (the LU is a scratch one). The same URL twice: a
        // second session to the same LU (iscsi-test-cu's multipath device list, checked by
        // it to name one LU).
        .args(["--dataloss", "--allow-sanitize", "--test", suite, url, url])
        .output()
        .context("cannot run iscsi-test-cu under timeout(1)")?;
    Ok(SuiteOutput {
        text: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
        timed_out: out.status.code() == Some(124),
    })
}

fn list_suites(tool: &Path) -> Result<Vec<String>> {
    let out = util::output(Command::new(tool).arg("--list"))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| l.split('.').count() == 2)
        .filter(|l| l.starts_with("SCSI.") || l.starts_with("iSCSI."))
        .map(String::from)
        .collect())
}

/// Reads CUnit's verbose output: `Suite: Name`, then `  Test: Name ...` followed by the
/// verdict (`passed` or `FAILED`), either on the same line or, when the test printed
/// something, at the start of a later line. A passed test that printed `[SKIPPED]` is
/// [`Outcome::Skipped`]; a test with no verdict when the suite timed out is `Hung`.
pub fn parse_results(family_suite: &str, text: &str, timed_out: bool) -> Results {
    fn verdict(text: &str) -> Option<bool> {
        let text = text.trim_start().trim_start_matches("...");
        if text.starts_with("passed") {
            Some(true)
        } else if text.starts_with("FAILED") {
            Some(false)
        } else {
            None
        }
    }
    let family = family_suite.split('.').next().unwrap_or("");
    let mut results = Results::new();
    let mut suite = String::new();
    // The test still waiting for its verdict, and whether it skipped itself so far.
    let mut pending: Option<(String, bool)> = None;
    let unfinished = if timed_out {
        Outcome::Hung
    } else {
        Outcome::Failed
    };
    let settle = |results: &mut Results, name: String, skipped: bool, passed: bool| {
        let outcome = match (passed, skipped) {
            (true, true) => Outcome::Skipped,
            (true, false) => Outcome::Passed,
            (false, _) => Outcome::Failed,
        };
        results.insert(name, outcome);
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("Suite: ") {
            if let Some((name, _)) = pending.take() {
                results.insert(name, unfinished);
            }
            suite = name.trim().to_string();
        } else if let Some(rest) = trimmed.strip_prefix("Test: ") {
            if let Some((name, _)) = pending.take() {
                results.insert(name, unfinished);
            }
            let (name, after) = rest.split_once(" ...").unwrap_or((rest, ""));
            let key = format!("{family}.{}.{}", suite, name.trim());
            // An inline verdict comes first; text after it belongs to what runs next.
            match verdict(after) {
                Some(passed) => settle(&mut results, key, false, passed),
                None => pending = Some((key, after.contains("[SKIPPED]"))),
            }
        } else if let Some((name, skipped)) = pending.as_mut() {
            // Text after a verdict on the same line belongs to what runs next.
            match verdict(trimmed) {
                Some(passed) => {
                    let (name, skipped) = (std::mem::take(name), *skipped);
                    pending = None;
                    settle(&mut results, name, skipped, passed);
                }
                None => *skipped |= trimmed.contains("[SKIPPED]"),
            }
        }
    }
    if let Some((name, _)) = pending {
        results.insert(name, unfinished);
    }
    if timed_out && results.is_empty() {
        results.insert(format!("{family_suite}.<suite>"), Outcome::Hung);
    }
    results
}

/// Tests that did worse than recorded in `old` (within the filter), and tests that did
/// better.
fn compare(old: &Results, new: &Results, filter: Option<&str>) -> (Vec<String>, Vec<String>) {
    let lost = old
        .iter()
        .filter(|(name, _)| filter.is_none_or(|f| name.starts_with(f)))
        .filter(|(name, was)| new.get(*name).is_none_or(|now| now < was))
        .map(|(name, _)| name.clone())
        .collect();
    let gained = new
        .iter()
        .filter(|(name, now)| old.get(*name).is_none_or(|was| *now > was))
        .map(|(name, _)| name.clone())
        .collect();
    (lost, gained)
}

pub fn snapshot_path(backend: &str) -> PathBuf {
    util::project_root()
        .join("testdata")
        .join("conformance")
        .join(format!("{backend}.txt"))
}

pub fn read_results(path: &Path) -> Option<Results> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (name, outcome) = l.rsplit_once(' ')?;
                Some((name.to_string(), Outcome::parse(outcome)?))
            })
            .collect(),
    )
}

fn write_results(path: &Path, results: &Results) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap())?;
    let mut text = String::from(
        "# iscsi-test-cu results for this backend; written by `cargo xtask conformance --bless`.\n\
         # A test recorded as passed must keep passing.\n",
    );
    for (name, outcome) in results {
        if let Some((_, why)) = EXPECTED_FAILURES.iter().find(|(n, _)| n == name) {
            text.push_str(&format!("# {name}: {why}\n"));
        }
        text.push_str(&format!("{name} {}\n", outcome.as_str()));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output shapes seen from iscsi-test-cu 1.19: inline verdict, verdict after the test's
    /// own output, a skip, a failure with CUnit's assertion list, and a hang.
    const SAMPLE: &str = "Suite: Reserve6\n  Test: Simple ...    [SKIPPED] RESERVE6 is not implemented on target\n    [SKIPPED] RESERVE6 is not implemented.\npassed\n  Test: WriteProtect ...passed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.\n  Test: Unmap ...    [FAILED] WRITE16 command failed\nFAILED\n    1. test_writesame16_unmap.c:175  - CU_ASSERT_EQUAL(_r,0)\n  Test: Late ...    some output\npassed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.\n  Test: Stuck ...    waiting";

    #[test]
    fn verbose_cunit_output_gives_one_outcome_per_test() {
        let results = parse_results("SCSI.Reserve6", SAMPLE, true);
        let expected: Results = [
            ("SCSI.Reserve6.Simple", Outcome::Skipped),
            ("SCSI.Reserve6.WriteProtect", Outcome::Passed),
            ("SCSI.Reserve6.Unmap", Outcome::Failed),
            ("SCSI.Reserve6.Late", Outcome::Passed),
            ("SCSI.Reserve6.Stuck", Outcome::Hung),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_string(), o))
        .collect();
        assert_eq!(results, expected);
    }

    #[test]
    fn only_lost_passes_are_regressions() {
        let old: Results = [
            ("a.b.c", Outcome::Passed),
            ("a.b.d", Outcome::Failed),
            ("a.b.e", Outcome::Skipped),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_string(), o))
        .collect();
        let new: Results = [
            ("a.b.c", Outcome::Hung),
            ("a.b.d", Outcome::Passed),
            ("a.b.e", Outcome::Skipped),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_string(), o))
        .collect();
        assert_eq!(
            compare(&old, &new, None),
            (vec!["a.b.c".to_string()], vec!["a.b.d".to_string()])
        );
        assert_eq!(compare(&old, &new, Some("x")).0, Vec::<String>::new());
    }
}
