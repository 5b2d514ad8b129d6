//! `cargo xtask soak --minutes N`: many verified sessions against one glfs LUN on a live
//! volume for a long time (not part of CI). Each session (`iscsi-load --verify`, its own
//! process) works on its own LBA range, so its verification owns that range. The target's
//! resident memory, threads and open file descriptors are sampled every 10 s; the run
//! fails on any initiator error or wrong block, on more threads or descriptors at the end
//! than after warm-up, and on resident memory that is not flat over the second half of the
//! load (a least-squares line through those samples rising 5 % of their mean or more, at
//! least 4 MiB); it prints the memory curve and that verdict.

use crate::gluster::LiveVolume;
use crate::progress::Progress;
use crate::reliability;
use crate::target::{LunSetup, TargetProcess};
use crate::util;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `cargo xtask soak` takes.
#[derive(Debug, clap::Args)]
pub struct SoakOptions {
    /// How long the load runs.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Sessions (one iscsi-load process each).
    #[arg(long, default_value_t = 64)]
    pub sessions: u64,
    /// Commands in flight per session.
    #[arg(long, default_value_t = 32)]
    pub qd: u32,
    /// docker, native or auto (as for test-gluster).
    #[arg(long, default_value = "auto")]
    pub fixture: String,
}

const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// One sample of the target process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: u32, at: Duration) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("the target (pid {pid}) is gone"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(Sample {
        at,
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds,
    })
}

pub fn run(opts: &SoakOptions, volume: &LiveVolume) -> Result<()> {
    ensure!(
        opts.sessions > 0 && opts.qd > 0,
        "sessions and qd must be above 0"
    );
    let binary = util::build_target_binary()?;
    let load = reliability::build_load()?;
    let lun = format!("soak-{}.img", std::process::id());
    // Removed from the volume once the target below has stopped (dropped after it).
    let _remove = crate::gluster::RemoveOnDrop::new(&volume.spec(), [lun.clone()]);
    let target = TargetProcess::start(
        &binary,
        LunSetup {
            bstype: "glfs".into(),
            backing_store: format!("{}:{lun}", volume.spec()),
            local_file: None,
            library: None,
            env: vec![],
            log_dir: util::target_dir().join("soak"),
        },
    )?;
    let pid = target.pid().context("the target is not running")?;
    let blocks = target.size() / 512;
    let per_session = blocks / opts.sessions;
    // 4k commands, four slots per queued command at least (the verifier's rule).
    ensure!(
        per_session / 8 >= 4 * u64::from(opts.qd),
        "the {} MiB LUN is too small for {} sessions at QD{}",
        target.size() >> 20,
        opts.sessions,
        opts.qd
    );
    let dir = util::target_dir().join("soak");
    let seconds = opts.minutes * 60;
    let mut children = Vec::new();
    for i in 0..opts.sessions {
        let out = dir.join(format!("load-{i:02}.out"));
        let err = dir.join(format!("load-{i:02}.err"));
        let child = Command::new(&load)
            .args(["--url", &target.url(), "--verify", "--rw", "randrw"])
            .args(["--bs", "4k", "--qd", &opts.qd.to_string()])
            .args(["--seconds", &seconds.to_string(), "--timeout", "30"])
            .args(["--lba-start", &(i * per_session).to_string()])
            .args(["--lba-count", &per_session.to_string()])
            .args(["--seed", &(i + 1).to_string()])
            .args([
                "--initiator",
                &format!("iqn.2026-11.io.glfs-iscsi:soak-{i}"),
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()
            .with_context(|| format!("cannot start {}", load.display()))?;
        children.push((child, out, err));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    let end = Duration::from_secs(seconds);
    // One step per sample while the load runs; after that, plain lines until all end.
    let progress = Progress::new("soak", seconds / SAMPLE_EVERY.as_secs() + 1);
    while started.elapsed() < end + Duration::from_secs(60) {
        samples.push(sample(pid, started.elapsed())?);
        let last = samples.last().expect("just pushed");
        let line = format!(
            "{:>5.0} s: rss {} MiB, {} threads, {} fds",
            last.at.as_secs_f64(),
            last.rss_kib >> 10,
            last.threads,
            last.fds
        );
        if last.at <= end {
            progress.start(&line);
            progress.done();
        } else {
            progress.line(&format!("{line} (waiting for the sessions to end)"));
        }
        if children
            .iter_mut()
            .all(|(c, _, _)| c.try_wait().ok().flatten().is_some())
        {
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let (mut errors, mut wrong, mut ios, mut unfinished) = (0u64, 0u64, 0u64, 0u64);
    for (mut child, out, err) in children {
        if child.try_wait()?.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            unfinished += 1;
            continue;
        }
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let n = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_u64);
        let report = lines.iter().find(|v| v.get("ios").is_some());
        let verify = lines.iter().find_map(|v| v.get("verify"));
        match (
            n(report, "ios"),
            n(report, "errors"),
            n(verify, "wrong_blocks"),
        ) {
            (Some(i), Some(e), Some(w)) => {
                ios += i;
                errors += e;
                wrong += w;
            }
            _ => bail!(
                "a session printed no report: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            ),
        }
    }
    progress.finish();
    let after = sample(pid, started.elapsed())?;
    samples.push(after);
    target.stop()?;

    println!("soak: {} sessions x QD{}, {} min: {ios} commands, {errors} initiator errors, {wrong} wrong blocks", opts.sessions, opts.qd, opts.minutes);
    println!("| time | RSS MiB | threads | fds |\n|---|---|---|---|");
    for s in &samples {
        println!(
            "| {:.0} s | {:.1} | {} | {} |",
            s.at.as_secs_f64(),
            s.rss_kib as f64 / 1024.0,
            s.threads,
            s.fds
        );
    }
    // Warm-up: the first fifth of the run (at least the first sample with all sessions in).
    let warm = samples
        .iter()
        .find(|s| s.at >= end / 5)
        .copied()
        .unwrap_or(samples[0]);
    let peak_after_warm = samples
        .iter()
        .filter(|s| s.at >= warm.at && s.at <= end)
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(warm.rss_kib);
    println!(
        "RSS after warm-up {:.1} MiB, highest later {:.1} MiB ({:+.1} %)",
        warm.rss_kib as f64 / 1024.0,
        peak_after_warm as f64 / 1024.0,
        (peak_after_warm as f64 / warm.rss_kib.max(1) as f64 - 1.0) * 100.0
    );
    let trend = rss_trend(&samples, end);
    println!("{trend}");
    ensure!(unfinished == 0, "{unfinished} sessions did not end");
    ensure!(errors == 0, "{errors} initiator errors");
    ensure!(wrong == 0, "{wrong} wrong blocks");
    ensure!(
        trend.flat,
        "resident memory not flat after warm-up: {trend}"
    );
    // With the sessions gone the target holds no more threads or descriptors than while
    // it served them after warm-up.
    ensure!(
        after.threads <= warm.threads,
        "threads grew: {} after warm-up, {} at the end",
        warm.threads,
        after.threads
    );
    ensure!(
        after.fds <= warm.fds,
        "file descriptors grew: {} after warm-up, {} at the end",
        warm.fds,
        after.fds
    );
    Ok(())
}

/// How much a straight line fitted to the second half's RSS may rise over that half and
/// still count as flat: this share of its mean, or `FLAT_MIN_KIB`, whichever is more.
const FLAT_SHARE: f64 = 0.05;
const FLAT_MIN_KIB: f64 = 4096.0;

/// The RSS trend over the second half of the load (warm-up long over).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trend {
    /// Samples the fit used.
    samples: usize,
    /// Mean RSS over the half, KiB.
    mean_kib: f64,
    /// Slope of the least-squares line, KiB per minute.
    slope_kib_per_min: f64,
    /// What that line rises over the half, KiB.
    rise_kib: f64,
    flat: bool,
}

impl std::fmt::Display for Trend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS over the second half ({} samples): mean {:.1} MiB, slope {:+.2} MiB/min, \
             rise {:+.1} MiB ({:+.1} %): {}",
            self.samples,
            self.mean_kib / 1024.0,
            self.slope_kib_per_min / 1024.0,
            self.rise_kib / 1024.0,
            self.rise_kib / self.mean_kib.max(1.0) * 100.0,
            if self.flat { "flat" } else { "growing" }
        )
    }
}

/// Fits a line to the RSS samples taken in the second half of a load of length `end`;
/// flat when it rises less than `FLAT_SHARE` of the mean (at least `FLAT_MIN_KIB`) over
/// that half. Too few samples (under 3) count as flat: nothing to judge.
fn rss_trend(samples: &[Sample], end: Duration) -> Trend {
    let half: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.at >= end / 2 && s.at <= end)
        .map(|s| (s.at.as_secs_f64() / 60.0, s.rss_kib as f64))
        .collect();
    let n = half.len() as f64;
    let mean_x = half.iter().map(|p| p.0).sum::<f64>() / n.max(1.0);
    let mean_y = half.iter().map(|p| p.1).sum::<f64>() / n.max(1.0);
    let sxx: f64 = half.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = half.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = if half.len() >= 3 && sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    };
    let span = match (half.first(), half.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    let rise = slope * span;
    Trend {
        samples: half.len(),
        mean_kib: mean_y,
        slope_kib_per_min: slope,
        rise_kib: rise,
        flat: rise < (mean_y * FLAT_SHARE).max(FLAT_MIN_KIB),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 60 s from `mib`, in MiB.
    fn curve(mib: &[f64]) -> Vec<Sample> {
        mib.iter()
            .enumerate()
            .map(|(i, m)| Sample {
                at: Duration::from_secs(60 * i as u64),
                rss_kib: (m * 1024.0) as u64,
                threads: 13,
                fds: 91,
            })
            .collect()
    }

    #[test]
    fn a_plateau_with_noise_is_flat() {
        // The native soak of 2026-12-03 (one value a minute, 0..600 s).
        let s = curve(&[
            29.8, 81.3, 81.5, 82.0, 82.5, 82.9, 83.0, 84.0, 84.2, 84.1, 84.2,
        ]);
        let t = rss_trend(&s, Duration::from_secs(600));
        assert_eq!(t.samples, 6); // 300..=600 s
        assert!(t.flat, "{t}");
        // x = 5..10 min, y = 82.9 83.0 84.0 84.2 84.1 84.2 MiB, mean 83.9:
        // slope = sum((x-7.5)(y-83.9)) / sum((x-7.5)^2) = 5.0 / 17.5 = 0.286 MiB/min,
        // rising 1.43 MiB over the 5 minutes (under 5 % of the mean).
        assert!((t.slope_kib_per_min / 1024.0 - 0.286).abs() < 0.01, "{t}");
        assert!((t.rise_kib / 1024.0 - 1.43).abs() < 0.02, "{t}");
    }

    #[test]
    fn steps_in_the_second_half_are_growth() {
        // The first Docker soak of 2026-12-03: 125 MiB after warm-up, steps to 148 and 184.
        let s = curve(&[
            28.5, 104.3, 125.0, 125.7, 126.0, 147.8, 147.9, 184.2, 184.5, 184.9, 185.7,
        ]);
        let t = rss_trend(&s, Duration::from_secs(600));
        assert!(!t.flat, "{t}");
        assert!(t.rise_kib / 1024.0 > 40.0, "{t}");
    }

    #[test]
    fn a_leak_too_slow_for_the_share_still_shows_over_a_long_run() {
        // 100 MiB rising 1 MiB a minute for 30 minutes: 15 MiB over the second half.
        let mib: Vec<f64> = (0..=30).map(|m| 100.0 + f64::from(m)).collect();
        let t = rss_trend(&curve(&mib), Duration::from_secs(1800));
        assert!(!t.flat, "{t}");
        assert!((t.slope_kib_per_min / 1024.0 - 1.0).abs() < 1e-6, "{t}");
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        let t = rss_trend(&curve(&[10.0, 50.0]), Duration::from_secs(60));
        assert!(t.flat && t.slope_kib_per_min == 0.0, "{t}");
    }
}
