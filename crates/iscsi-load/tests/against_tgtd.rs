//! iscsi-load against Debian's tgtd: short runs that must complete commands and
//! report sane numbers, land writes where the LBA range says, and end promptly
//! with errors when the target dies.
//!
//! Each test skips (with a `[skip]` line) when tgtd cannot run here (tgt not
//! installed, or not root); under CI (`CI=true`) that fails instead.

use iscsi_load::{run, Report, Rw, Session, Workload};
use rstest::rstest;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::tgtd::Tgtd;

const INITIATOR: &str = "iqn.2026-11.io.glfs-iscsi:load-test";

fn null_lun(tgtd: &Tgtd) -> String {
    tgtd.add_lun("iqn.2026-11.io.glfs-iscsi:null", "null", "/dev/null")
        .unwrap_or_else(|e| panic!("{e}\n{}", tgtd.log_text()))
}

fn load(args: &[&str]) -> (i32, Option<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iscsi-load"))
        .args(args)
        .output()
        .expect("run iscsi-load");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// `workload` as 0.7 s of random writes on `session` (closed after), which must end
/// without an error and with more than 500 writes done.
fn short_clean_writes(session: Session, workload: Workload) -> Report {
    let outcome = run(
        &session,
        &Workload {
            rw: Rw::RandWrite,
            duration: Duration::from_millis(700),
            ..workload
        },
    )
    .unwrap();
    drop(session);
    let r = outcome.report;
    assert_eq!(r.errors, 0, "{:?}", outcome.error_messages);
    assert!(r.writes > 500, "{} writes", r.writes);
    r
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[rstest]
#[case("randread", "4k", 1.0)]
#[case("randwrite", "4k", 0.0)]
#[case("randrw", "8k", 0.5)]
fn short_runs_on_tgt_null_report_sane_numbers(
    #[case] rw: &str,
    #[case] bs: &str,
    #[case] read_share: f64,
) {
    let Some(tgtd) = Tgtd::start_or_skip("short_runs_on_tgt_null_report_sane_numbers") else {
        return;
    };
    let url = null_lun(&tgtd);
    let started = Instant::now();
    let (code, json, stderr) = load(&[
        "--url",
        &url,
        "--rw",
        rw,
        "--bs",
        bs,
        "--qd",
        "8",
        "--seconds",
        "1",
    ]);
    let took = started.elapsed();
    assert_eq!(code, 0, "iscsi-load failed: {stderr}");
    let v = json.unwrap_or_else(|| panic!("no JSON line; stderr: {stderr}"));
    assert_eq!(v["rw"], rw);
    assert_eq!(v["qd"], 8);
    let bs_bytes = if bs == "4k" { 4096.0 } else { 8192.0 };
    assert_eq!(num(&v, "bs"), bs_bytes);
    assert_eq!(num(&v, "errors"), 0.0);
    let (ios, reads, writes) = (num(&v, "ios"), num(&v, "reads"), num(&v, "writes"));
    assert_eq!(ios, reads + writes);
    // tgt's null store answers in well under a millisecond: even a debug build
    // completes thousands of commands in a second.
    assert!(ios > 1000.0, "only {ios} commands completed");
    // Pure patterns are pure; randrw at 50 % is within a few percent of half.
    assert!(
        (reads / ios - read_share).abs() < 0.05,
        "{reads} reads and {writes} writes"
    );
    if read_share == 1.0 {
        assert_eq!(writes, 0.0);
    }
    if read_share == 0.0 {
        assert_eq!(reads, 0.0);
    }
    let secs = num(&v, "seconds");
    assert!((1.0..1.5).contains(&secs), "measured window {secs} s");
    assert!(took < Duration::from_secs(10), "run took {took:?}");
    let iops = num(&v, "iops");
    assert!(
        (iops - ios / secs).abs() / iops < 0.01,
        "iops {iops} vs {ios}/{secs}"
    );
    let mib = num(&v, "mib_per_s");
    assert!(
        (mib - iops * bs_bytes / 1048576.0).abs() < 0.1,
        "mib_per_s {mib}"
    );
    // One thread: between a sliver and a bit over one core.
    let cpu = num(&v, "cpu_pct");
    assert!(cpu > 0.0 && cpu < 120.0, "cpu_pct {cpu}");
    let (p50, p99) = (num(&v, "lat_us_p50"), num(&v, "lat_us_p99"));
    assert!(p50 > 0.0 && p50 <= p99, "p50 {p50} p99 {p99}");
    // Little's law at QD 8: mean latency ~ 8 / iops. The median of a non-negative
    // quantity is at most twice its mean (Markov), whatever the load; it may be far below
    // the mean when the machine stalls some I/Os, so there is no lower bound.
    let mean_us = 8.0 / iops * 1e6;
    assert!(p50 < mean_us * 4.0, "p50 {p50} vs mean {mean_us}");
}

/// Writes through the library API to the second half of a file LUN: the first
/// half of the file stays zero, the second half gets data, and every command is
/// counted.
#[test]
fn writes_land_only_inside_the_lba_range() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lun.img");
    let size = 4u64 << 20;
    std::fs::File::create(&file).unwrap().set_len(size).unwrap();
    let Some(tgtd) = Tgtd::start_or_skip("writes_land_only_inside_the_lba_range") else {
        return;
    };
    let url = tgtd
        .add_lun(
            "iqn.2026-11.io.glfs-iscsi:file",
            "rdwr",
            file.to_str().unwrap(),
        )
        .unwrap();
    let session = Session::connect(&url, INITIATOR).unwrap();
    assert_eq!(session.block_size(), 512);
    assert_eq!(session.num_blocks(), size / 512);
    let half = size / 512 / 2;
    let r = short_clean_writes(
        session,
        Workload {
            queue_depth: 16,
            lba_start: half,
            lba_count: Some(half),
            ..Workload::default()
        },
    );
    assert_eq!(r.reads, 0);
    // tgt's rdwr store writes through to the file (page cache is enough to read it).
    let data = std::fs::read(&file).unwrap();
    let (low, high) = data.split_at((size / 2) as usize);
    assert!(
        low.iter().all(|&b| b == 0),
        "a write landed below the range"
    );
    // 8192 4k slots in the upper half and > 500 random writes: data in many of them.
    let touched = high
        .chunks(4096)
        .filter(|c| c.iter().any(|&b| b != 0))
        .count();
    assert!(touched > 100, "only {touched} 4k blocks written");
    // Every write is a whole aligned 4k block: no block is partly written.
    assert!(high
        .chunks(4096)
        .all(|c| c.iter().all(|&b| b == 0) || c.iter().filter(|&&b| b == 0).count() < 64));
}

/// How many TCP segments a write command costs the target: libiscsi sends its header
/// and its immediate data by two sends under `TCP_NODELAY`, two segments; by default
/// iscsi-load corks them into one (as Linux's initiator sends a PDU), and the writes of
/// one round of completions together, so a write costs at most one; the report counts
/// the segments (the kernel's own count, `tcpi_data_segs_out`).
#[rstest]
#[case::corked(false)]
#[case::split(true)]
fn a_write_command_costs_the_segments_its_sends_make(#[case] split_writes: bool) {
    let Some(tgtd) = Tgtd::start_or_skip("a_write_command_costs_the_segments_its_sends_make")
    else {
        return;
    };
    let r = short_clean_writes(
        Session::connect(&null_lun(&tgtd), INITIATOR).unwrap(),
        Workload {
            queue_depth: 8,
            split_writes,
            ..Workload::default()
        },
    );
    // No ramp: the window holds every command sent, each answered. 48 header bytes and
    // 4096 data bytes fit one loopback segment; a send that found the socket's buffer
    // full may split one: a few percent.
    let segments = r.segments_out.expect("Linux counts the segments sent") as f64;
    let measured = segments / r.writes as f64;
    if split_writes {
        assert!(
            (measured - 2.0).abs() <= 0.1,
            "{segments} segments for {} writes: {measured:.3} each, not 2",
            r.writes
        );
    } else {
        assert!(
            measured <= 1.05,
            "{segments} segments for {} writes: {measured:.3} each, more than 1",
            r.writes
        );
    }
}

#[test]
fn a_target_that_dies_ends_the_run_with_errors() {
    let Some(mut tgtd) = Tgtd::start_or_skip("a_target_that_dies_ends_the_run_with_errors") else {
        return;
    };
    let url = null_lun(&tgtd);
    let child = std::thread::spawn(move || {
        let started = Instant::now();
        let r = load(&["--url", &url, "--seconds", "20"]);
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(700));
    tgtd.kill();
    let ((code, json, stderr), took) = child.join().unwrap();
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} after the target died"
    );
    let v = json.expect("a JSON line even after a failure");
    assert!(num(&v, "errors") >= 1.0);
    assert!(num(&v, "ios") > 0.0, "nothing completed before the kill");
    assert!(stderr.contains("connection failed"), "{stderr}");
}

#[rstest]
#[case(&["--lba-start", "99999999999999"], "beyond")]
#[case(&["--bs", "1000"], "not a multiple")]
#[case(&["--qd", "0"], "queue depth")]
fn bad_workloads_fail_before_any_io(#[case] extra: &[&str], #[case] why: &str) {
    let Some(tgtd) = Tgtd::start_or_skip("bad_workloads_fail_before_any_io") else {
        return;
    };
    let url = null_lun(&tgtd);
    let mut args = vec!["--url", url.as_str(), "--seconds", "1"];
    args.extend_from_slice(extra);
    let (code, json, stderr) = load(&args);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(json.is_none());
    assert!(stderr.contains(why), "{stderr}");
}

#[test]
fn an_unknown_target_fails_the_login() {
    let Some(tgtd) = Tgtd::start_or_skip("an_unknown_target_fails_the_login") else {
        return;
    };
    let url = format!(
        "iscsi://{}/iqn.2026-11.io.glfs-iscsi:absent/1",
        tgtd.portal()
    );
    let (code, _, stderr) = load(&["--url", &url, "--seconds", "1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("login to iqn.2026-11.io.glfs-iscsi:absent"),
        "{stderr}"
    );
}

/// Several sessions side by side, sequential reads: every session logs in as its own
/// initiator, the counts are their sums, and the percentiles come in order.
#[test]
fn sessions_run_side_by_side_and_sum() {
    let Some(tgtd) = Tgtd::start_or_skip("sessions_run_side_by_side_and_sum") else {
        return;
    };
    let url = null_lun(&tgtd);
    let (code, json, stderr) = load(&[
        "--url",
        &url,
        "--rw",
        "read",
        "--bs",
        "64k",
        "--qd",
        "4",
        "--sessions",
        "3",
        "--seconds",
        "1",
        "--lba-count",
        "65536",
    ]);
    assert_eq!(code, 0, "iscsi-load failed: {stderr}");
    let v = json.unwrap_or_else(|| panic!("no JSON line; stderr: {stderr}"));
    assert_eq!(v["rw"], "read");
    assert_eq!(num(&v, "sessions"), 3.0);
    assert_eq!(num(&v, "errors"), 0.0);
    assert_eq!(num(&v, "writes"), 0.0);
    assert!(num(&v, "ios") > 100.0, "{v}");
    let points = v["lat_percentiles_us"].as_array().expect("percentiles");
    assert_eq!(points.len(), 17);
    let lat: Vec<f64> = points.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(lat.windows(2).all(|w| w[0] <= w[1]), "{lat:?}");
    assert!(num(&v, "lat_us_p99") <= num(&v, "lat_us_p999"));
}

/// `--header-digest` logs in with HeaderDigest=CRC32C (tgt accepts it) and runs as usual.
#[test]
fn header_digest_runs() {
    let Some(tgtd) = Tgtd::start_or_skip("header_digest_runs") else {
        return;
    };
    let url = null_lun(&tgtd);
    let (code, json, stderr) = load(&[
        "--url",
        &url,
        "--header-digest",
        "--qd",
        "4",
        "--seconds",
        "0.5",
    ]);
    assert_eq!(code, 0, "iscsi-load failed: {stderr}");
    let v = json.unwrap_or_else(|| panic!("no JSON line; stderr: {stderr}"));
    assert_eq!(num(&v, "errors"), 0.0);
    assert!(num(&v, "ios") > 0.0, "{v}");
}
