//! `cargo xtask soak --minutes N`: many verified sessions against one glfs LUN on a live
//! volume for a long time (not part of CI). Each session (`iscsi-load --verify`, its own
//! process) works on its own LBA range, so its verification owns that range. The target's
//! resident memory, threads and open file descriptors are sampled every 10 s; the run
//! fails on any initiator error or wrong block, on more threads or descriptors at the end
//! than after warm-up, and reports the memory curve.

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
    ensure!(unfinished == 0, "{unfinished} sessions did not end");
    ensure!(errors == 0, "{errors} initiator errors");
    ensure!(wrong == 0, "{wrong} wrong blocks");
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
