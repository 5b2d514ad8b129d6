//! Reliability scenarios of `cargo xtask test-gluster`: faults injected into the live volume
//! under a verified load (`iscsi-load --verify`: every block carries its LBA and a
//! generation, every read is checked), each ending in one row of a table: scenario, load,
//! faults injected, initiator errors, wrong blocks, time to recover.
//!
//! Faults only touch what the task created: the fixture's containers (`docker kill`,
//! `start`, `pause`, `unpause`) or, on the native fixture, the brick process of our own
//! volume (SIGSTOP/SIGCONT), or our own target processes. Scenarios that need three bricks
//! are skipped by name on the native one-brick volume.
//!
//! The gateway-failover scenarios run two gateways (`--gateway-id`, `--alua-failover`) on a
//! replica-3 volume of their own, created on the Docker cluster with the options the data
//! fence needs and deleted afterwards ([`FailoverVolume`]).

use crate::docker;
use crate::gluster::{LiveVolume, RemoveOnDrop};
use crate::target::{LunSetup, TargetProcess};
use crate::test_gluster::Fixture;
use crate::util::{self, Checks};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long every brick is away in the short-outage scenario: longer than the volume's
/// `network.ping-timeout` (5 s, so the client does notice) and shorter than the store's
/// default hold time (15 s).
const SHORT_OUTAGE: Duration = Duration::from_secs(8);
/// The initiator's command time limit in the scenarios, as Linux and ESXi initiators use.
const INITIATOR_TIMEOUT_SECS: u32 = 30;

/// One line of the reliability table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub load: String,
    pub faults: String,
    pub initiator_errors: Option<u64>,
    pub wrong_blocks: Option<u64>,
    pub recover: Option<Duration>,
    /// `pass`, `FAIL: why` or `skipped: why`.
    pub verdict: String,
}

impl Row {
    fn new(scenario: &str, load: &str, faults: &str) -> Row {
        Row {
            scenario: scenario.into(),
            load: load.into(),
            faults: faults.into(),
            initiator_errors: None,
            wrong_blocks: None,
            recover: None,
            verdict: String::new(),
        }
    }
}

/// The table as Markdown.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | load | faults injected | initiator errors | wrong blocks | time to recover | result |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let num = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.load,
            r.faults,
            num(r.initiator_errors),
            num(r.wrong_blocks),
            r.recover
                .map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            r.verdict
        );
    }
    out
}

/// Where the scenarios run.
pub struct Env<'a> {
    pub volume: &'a LiveVolume,
    pub fixture: Fixture,
    pub binary: PathBuf,
    pub load: PathBuf,
}

/// Builds the load generator and returns its path.
pub fn build_load() -> Result<PathBuf> {
    util::run(util::cargo().args(["build", "--package", "iscsi-load", "--bins"]))?;
    let path = util::target_dir().join("debug").join("iscsi-load");
    ensure!(
        path.exists(),
        "built iscsi-load but {} is missing",
        path.display()
    );
    Ok(path)
}

/// The scenarios, by the names `--scenario` takes.
pub const SCENARIOS: &[&str] = &[
    "short-outage",
    "brick-loss",
    "crash",
    "control-plane",
    "gateway-failover",
    "gateway-failover-brick-loss",
    "gateway-stall",
    "gateway-stall-in-write",
    "gateway-stall-mid-write",
];

/// Those run when none is named: all of them.
const DEFAULT_SCENARIOS: &[&str] = SCENARIOS;

/// The scenarios `only` selects (the default ones when empty), in the order they run.
pub fn selected(only: &[String]) -> Vec<&'static str> {
    SCENARIOS
        .iter()
        .copied()
        .filter(|name| {
            if only.is_empty() {
                DEFAULT_SCENARIOS.contains(name)
            } else {
                only.iter().any(|o| o == name)
            }
        })
        .collect()
}

/// Runs the scenarios named in `only` (the default ones when empty), records each as a
/// check and returns the table rows.
pub fn run_all(env: &Env, checks: &mut Checks, only: &[String]) -> Vec<Row> {
    let chosen = selected(only);
    let wanted = |name: &str| chosen.contains(&name);
    // Every file the scenarios made on the volume goes when they are done.
    let _remove = RemoveOnDrop::new(
        &env.volume.spec(),
        chosen
            .iter()
            .map(|s| lun_name(s))
            .chain(["hang.img".into()]),
    );
    let mut rows = Vec::new();
    let mut record = |row: Row, checks: &mut Checks| {
        let name = format!("reliability: {}", row.scenario);
        if let Some(why) = row.verdict.strip_prefix("skipped: ") {
            checks.skip(&name, why);
        } else if row.verdict.starts_with("pass") {
            checks.record(&name, Ok(()));
        } else {
            checks.record(&name, Err(anyhow::anyhow!("{}", row.verdict)));
        }
        eprintln!("{}", render(std::slice::from_ref(&row)));
        rows.push(row);
    };
    if wanted("short-outage") {
        record(short_outage(env), checks);
    }
    if wanted("brick-loss") {
        record(brick_loss(env), checks);
    }
    if wanted("crash") {
        record(crash_consistency(env), checks);
    }
    if wanted("control-plane") {
        record(control_plane(env), checks);
    }
    if wanted("gateway-failover") {
        record(gateway_failover(env, false), checks);
    }
    if wanted("gateway-failover-brick-loss") {
        record(gateway_failover(env, true), checks);
    }
    if wanted("gateway-stall") {
        record(gateway_stall(env, StallAt::UnderLoad), checks);
    }
    if wanted("gateway-stall-in-write") {
        record(gateway_stall(env, StallAt::RecordWrite), checks);
    }
    if wanted("gateway-stall-mid-write") {
        record(gateway_stall(env, StallAt::MidWrite), checks);
    }
    rows
}

/// The file scenario `scenario` serves on the live volume (new in each xtask run).
fn lun_name(scenario: &str) -> String {
    format!("{scenario}-{}.img", std::process::id())
}

/// A target serving a new file on the live volume.
fn start_target(env: &Env, scenario: &str) -> Result<TargetProcess> {
    start_target_on(env, scenario, &env.volume.spec())
}

/// A target serving a new file on the live volume, reached through `spec`
/// (`volume@host[,host...]`).
fn start_target_on(env: &Env, scenario: &str, spec: &str) -> Result<TargetProcess> {
    let lun = lun_name(scenario);
    TargetProcess::start(
        &env.binary,
        LunSetup {
            bstype: "glfs".into(),
            backing_store: format!("{spec}:{lun}"),
            local_file: None,
            library: None,
            env: vec![],
            log_dir: util::target_dir().join("reliability").join(scenario),
        },
    )
}

/// A running `iscsi-load --verify`.
struct Load {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// What a verified load reported.
#[derive(Debug, Default)]
struct LoadResult {
    ios: u64,
    errors: u64,
    reads_checked: u64,
    writes_acked: u64,
    wrong_blocks: u64,
    stderr: String,
}

fn start_load(env: &Env, url: &str, name: &str, seconds: u64) -> Result<Load> {
    start_load_with(env, url, name, seconds, 50, &[])
}

fn start_load_with(
    env: &Env,
    url: &str,
    name: &str,
    seconds: u64,
    read_percent: u8,
    extra: &[String],
) -> Result<Load> {
    let dir = util::target_dir().join("reliability").join(name);
    std::fs::create_dir_all(&dir)?;
    let stdout = dir.join("load.out");
    let stderr = dir.join("load.err");
    let child = Command::new(&env.load)
        .args(["--url", url, "--verify", "--rw", "randrw", "--rwmixread"])
        .arg(read_percent.to_string())
        .args(["--bs", "4k", "--qd", "8", "--lba-count", "32768"])
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--timeout")
        .arg(INITIATOR_TIMEOUT_SECS.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()
        .with_context(|| format!("cannot start {}", env.load.display()))?;
    Ok(Load {
        child,
        stdout,
        stderr,
    })
}

/// The load description for the table.
fn load_label(seconds: u64) -> String {
    format!("verified randrw 50/50, 4k, QD8, {seconds} s")
}

impl Load {
    /// Waits for the load to end (at most `limit`) and reads its report.
    fn finish(mut self, limit: Duration) -> Result<LoadResult> {
        let deadline = Instant::now() + limit;
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("iscsi-load did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let mut r = LoadResult {
            stderr: stderr.trim().to_string(),
            ..LoadResult::default()
        };
        let lines: Vec<Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let report = lines
            .iter()
            .find(|v| v.get("ios").is_some())
            .with_context(|| format!("iscsi-load printed no report: {}", r.stderr))?;
        let verify = lines
            .iter()
            .find_map(|v| v.get("verify"))
            .with_context(|| format!("iscsi-load printed no verification: {}", r.stderr))?;
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        r.ios = n(report, "ios");
        r.errors = n(report, "errors");
        r.reads_checked = n(verify, "reads_checked");
        r.writes_acked = n(verify, "writes_acked");
        r.wrong_blocks = n(verify, "wrong_blocks");
        Ok(r)
    }
}

/// Fills in the row from the load's result and judges it: no initiator error, no wrong
/// block, and the load did verify reads.
fn judge(row: &mut Row, r: &LoadResult) {
    row.initiator_errors = Some(r.errors);
    row.wrong_blocks = Some(r.wrong_blocks);
    let mut problems = Vec::new();
    if r.errors > 0 {
        problems.push(format!("{} initiator errors", r.errors));
    }
    if r.wrong_blocks > 0 {
        problems.push(format!("{} wrong blocks", r.wrong_blocks));
    }
    if r.reads_checked == 0 || r.writes_acked == 0 {
        problems.push(format!(
            "nothing verified ({} reads checked, {} writes acknowledged)",
            r.reads_checked, r.writes_acked
        ));
    }
    if !problems.is_empty() && !r.stderr.is_empty() {
        problems.push(format!("iscsi-load said: {}", tail_lines(&r.stderr, 5)));
    }
    if problems.is_empty() {
        row.verdict = "pass".into();
    } else {
        row.verdict = format!("FAIL: {}", problems.join("; "));
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn fail(mut row: Row, err: anyhow::Error) -> Row {
    row.verdict = format!("FAIL: {err:#}");
    row
}

/// Counts `needle` in the target's log.
fn log_count(log_dir: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log_dir.join("glfs-iscsi.log"))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// Waits (at most `limit`) until the target's log shows one more reconnect than
/// `before`; the time it took, or `None`.
fn wait_reconnected(log_dir: &Path, before: usize, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if log_count(log_dir, "reconnected") > before {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The process id of the brick of `volume` on this machine's glusterd.
fn native_brick_pid(volume: &str) -> Result<u32> {
    let xml = util::output(Command::new("gluster").args([
        "--mode=script",
        "volume",
        "status",
        volume,
        "--xml",
    ]))?;
    docker::brick_pids(&xml).first().copied().with_context(|| {
        format!("no running brick in `gluster volume status {volume} --xml`: {xml}")
    })
}

/// The process id of this machine's glusterd: `/run/glusterd.pid` when it names a running
/// glusterd, else the one process named so (a glusterd restarted by hand may leave the
/// file naming a process long gone).
fn glusterd_pid() -> Result<u32> {
    let is_glusterd = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "glusterd")
    };
    let recorded = std::fs::read_to_string("/run/glusterd.pid")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    if let Some(pid) = recorded.filter(|&pid| is_glusterd(pid)) {
        return Ok(pid);
    }
    let running: Vec<u32> = std::fs::read_dir("/proc")
        .context("reading /proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| is_glusterd(pid))
        .collect();
    match running[..] {
        [pid] => Ok(pid),
        _ => bail!(
            "cannot tell which process is glusterd: /run/glusterd.pid says {recorded:?}, \
             processes named glusterd: {running:?}"
        ),
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    util::run(
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string()),
    )
}

/// Every brick unreachable for [`SHORT_OUTAGE`] (below the hold time) under verified load:
/// the initiator must see no error at all, only latency.
fn short_outage(env: &Env) -> Row {
    let seconds = 30;
    let faults = match env.fixture {
        Fixture::Docker => format!(
            "all 3 nodes `docker pause`d for {} s",
            SHORT_OUTAGE.as_secs()
        ),
        Fixture::Native => format!(
            "the brick process SIGSTOPped for {} s",
            SHORT_OUTAGE.as_secs()
        ),
    };
    let mut row = Row::new("short outage", &load_label(seconds), &faults);
    match short_outage_inner(env, seconds, &mut row) {
        Ok(()) => row,
        Err(e) => fail(row, e),
    }
}

fn short_outage_inner(env: &Env, seconds: u64, row: &mut Row) -> Result<()> {
    let target = start_target(env, "short-outage")?;
    let log_dir = util::target_dir().join("reliability").join("short-outage");
    let load = start_load(env, &target.url(), "short-outage", seconds)?;
    std::thread::sleep(Duration::from_secs(5));
    let before = log_count(&log_dir, "reconnected");
    let brick = match env.fixture {
        Fixture::Docker => {
            for i in 0..3 {
                docker::node_pause(i)?;
            }
            None
        }
        Fixture::Native => {
            let pid = native_brick_pid(&env.volume.name)?;
            signal(pid, "STOP")?;
            Some(pid)
        }
    };
    std::thread::sleep(SHORT_OUTAGE);
    let resumed = match (env.fixture, brick) {
        (Fixture::Native, Some(pid)) => signal(pid, "CONT"),
        _ => (0..3).try_for_each(docker::node_unpause),
    };
    resumed?;
    row.recover = wait_reconnected(&log_dir, before, Duration::from_secs(20));
    let result = load.finish(Duration::from_secs(seconds + 60))?;
    judge(row, &result);
    if row.recover.is_none() && row.verdict == "pass" {
        // gfapi kept its connections through the outage: commands only waited.
        row.verdict = "pass (no reconnect was needed: I/O stalled for the outage)".into();
    }
    target.stop()?;
    Ok(())
}

/// One brick of three killed under verified load, restarted, healed: no initiator error, no
/// wrong block, and the three bricks hold the same file afterwards.
fn brick_loss(env: &Env) -> Row {
    let seconds = 40;
    let mut row = Row::new(
        "brick loss",
        &load_label(seconds),
        "node 2 `docker kill`ed, `docker start`ed 12 s later, healed",
    );
    if env.fixture != Fixture::Docker {
        row.verdict = "skipped: needs three bricks (Docker fixture)".into();
        return row;
    }
    match brick_loss_inner(env, seconds, &mut row) {
        Ok(()) => row,
        Err(e) => fail(row, e),
    }
}

fn brick_loss_inner(env: &Env, seconds: u64, row: &mut Row) -> Result<()> {
    let target = start_target(env, "brick-loss")?;
    let lun = lun_name("brick-loss");
    let load = start_load(env, &target.url(), "brick-loss", seconds)?;
    std::thread::sleep(Duration::from_secs(5));
    docker::node_kill(2)?;
    std::thread::sleep(Duration::from_secs(12));
    let restarted = Instant::now();
    docker::node_start(2)?;
    docker::wait_bricks_online(3, &env.volume.name, Duration::from_secs(60))?;
    // Recovered: the brick is back and healed, measured while the load goes on.
    let volume = env.volume.name.clone();
    let healing = std::thread::spawn(move || {
        docker::wait_healed(&volume, Duration::from_secs(120)).map(|()| restarted.elapsed())
    });
    let result = load.finish(Duration::from_secs(seconds + 60))?;
    judge(row, &result);
    target.stop()?;
    let healed = healing.join().expect("heal watcher panicked");
    // Idle now: whatever the writes left to heal must heal too.
    docker::wait_healed(&env.volume.name, Duration::from_secs(180))?;
    row.recover = Some(healed.unwrap_or_else(|_| restarted.elapsed()));
    let copies = (0..3)
        .map(|i| docker::read_brick_file(i, &env.volume.name, &lun))
        .collect::<Result<Vec<_>>>()?;
    for (i, copy) in copies.iter().enumerate().skip(1) {
        if copy != &copies[0] {
            let first = copy
                .iter()
                .zip(&copies[0])
                .position(|(a, b)| a != b)
                .unwrap_or(copy.len().min(copies[0].len()));
            row.verdict = format!(
                "FAIL: after heal node {i}'s copy differs from node 0's (sizes {} and {}, first difference at byte {first})",
                copy.len(),
                copies[0].len()
            );
            return Ok(());
        }
    }
    Ok(())
}

/// A header for the table: when and where it was measured.
pub fn header() -> String {
    let date =
        util::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    let host = util::output(Command::new("uname").args(["-srm"])).unwrap_or_default();
    let cpus = util::output(&mut Command::new("nproc")).unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(String::new(), |kib| format!(", {} GiB", kib >> 20));
    format!(
        "Measured {} on {} ({} CPUs{mem}).",
        date.trim(),
        host.trim(),
        cpus.trim()
    )
}

/// Kills of the target per crash-consistency run and write mode.
const CRASH_KILLS: u64 = 20;
/// Plain writes between two SYNCHRONIZE CACHE commands in the crash scenario's second mode.
const SYNC_EVERY: u32 = 16;

/// The target SIGKILLed at random moments during FUA writes, restarted on the same file
/// without any repair each time; after every kill another gfapi client reads the file back
/// and every acknowledged (durable) write must be there.
fn crash_consistency(env: &Env) -> Row {
    let mut row = Row::new(
        "crash consistency",
        &format!("verified randrw 30/70, 4k, QD8, cycles alternating FUA writes and plain writes with SYNCHRONIZE CACHE every {SYNC_EVERY}, killed 0.5-2.5 s in (initiator errors: commands cut off by the kills)"),
        &format!(
            "target SIGKILLed {} times ({CRASH_KILLS} per write mode), restarted on the same file without repair; file read back through gfapi by another client after each kill",
            2 * CRASH_KILLS
        ),
    );
    match crash_inner(env, &mut row) {
        Ok(()) => row,
        Err(e) => fail(row, e),
    }
}

fn crash_inner(env: &Env, row: &mut Row) -> Result<()> {
    let scenario = "crash";
    let lun = lun_name(scenario);
    let dir = util::target_dir().join("reliability").join(scenario);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let checker = env.load.with_file_name("iscsi-load-check");
    // A run id base and kill moments that differ from run to run (printed to replay).
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash consistency: seed {seed:#x}");
    let base = seed & !0xffff;
    let mut expectations: Vec<PathBuf> = Vec::new();
    let (mut cut, mut wrong, mut slowest_restart) = (0u64, 0u64, Duration::ZERO);
    let mut problems = Vec::new();
    // Cycles whose kill cut a running load; a kill that came before the load had started
    // (a slow login on a busy machine) does not count, and its cycle is repeated.
    let mut cycle = 0;
    let mut attempts = 0;
    while cycle < 2 * CRASH_KILLS {
        attempts += 1;
        ensure!(
            attempts <= 3 * CRASH_KILLS,
            "only {cycle} of {} kills cut a running load",
            2 * CRASH_KILLS
        );
        let durability: Vec<String> = if cycle % 2 == 0 {
            vec!["--fua".into()]
        } else {
            vec!["--sync-every".into(), SYNC_EVERY.to_string()]
        };
        let restarted = Instant::now();
        // The same file every time: the restart opens what the killed target left.
        let target = start_target(env, scenario)?;
        slowest_restart = slowest_restart.max(restarted.elapsed());
        // Every attempt has its own run id and expectations: one cut before it counted
        // may still have put blocks on the file, which later checks must account for.
        let expect = dir.join(format!("attempt-{attempts:02}.jsonl"));
        let load = start_load_with(
            env,
            &target.url(),
            scenario,
            60,
            30,
            &[
                durability.clone(),
                vec![
                    "--run-id".into(),
                    (base + attempts).to_string(),
                    // A different slot sequence each attempt; later ones overwrite some slots
                    // of earlier ones, so stale blocks would show.
                    "--seed".into(),
                    (base + attempts).to_string(),
                    "--expect-out".into(),
                    expect.display().to_string(),
                ],
            ]
            .concat(),
        )?;
        // Kill only once the session is in (a slow login on a busy machine would
        // otherwise be what the kill cuts).
        let logged_in = Instant::now();
        while log_count(&dir, "login peer=") == 0 {
            ensure!(
                logged_in.elapsed() < Duration::from_secs(30),
                "cycle {cycle}: no login within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(500 + seed % 2000));
        drop(target); // SIGKILL
        let result = match load.finish(Duration::from_secs(60)) {
            Ok(r) => r,
            // iscsi-load reports once it has sent a command; without a report it sent none.
            Err(e) if format!("{e:#}").contains("printed no report") && !expect.exists() => {
                eprintln!("crash cycle {cycle}: killed before the load had started ({e:#}); again");
                continue;
            }
            Err(e) => return Err(e),
        };
        cut += result.errors;
        wrong += result.wrong_blocks;
        ensure!(
            expect.exists(),
            "cycle {cycle}: iscsi-load wrote no expectations: {}",
            tail_lines(&result.stderr, 5)
        );
        expectations.push(expect);
        if result.writes_acked == 0 {
            // Nothing acknowledged to check yet (the kill came early on a busy machine);
            // what it may have written is in its expectations.
            eprintln!("crash cycle {cycle}: no write acknowledged before the kill; again");
            continue;
        }
        let mut cmd = Command::new(&checker);
        cmd.args(["--volume", &env.volume.name, "--host", &env.volume.host])
            .args(["--path", &lun]);
        for e in &expectations {
            cmd.arg("--expect").arg(e);
        }
        let Checked {
            report,
            said: stderr,
            ..
        } = run_checker(cmd).with_context(|| format!("cycle {cycle}"))?;
        let w = report
            .get("wrong_blocks")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if w > 0 {
            problems.push(format!(
                "cycle {cycle}: {w} wrong blocks read back: {}",
                tail_lines(&stderr, 3)
            ));
        }
        wrong += w;
        eprintln!(
            "crash cycle {cycle} ({}): {} writes acknowledged, {} commands cut, read back {} slots: {w} wrong",
            durability.join(" "),
            result.writes_acked,
            result.errors,
            report.get("slots_checked").and_then(Value::as_u64).unwrap_or(0)
        );
        cycle += 1;
    }
    // Served again after the last kill, still without repair: a short verified load.
    let target = start_target(env, scenario)?;
    let load = start_load(env, &target.url(), "crash-after", 3)?;
    let after = load.finish(Duration::from_secs(60))?;
    if after.errors > 0 || after.wrong_blocks > 0 || after.writes_acked == 0 {
        problems.push(format!(
            "after the last kill: {} errors, {} wrong blocks, {} writes acknowledged",
            after.errors, after.wrong_blocks, after.writes_acked
        ));
    }
    target.stop()?;
    row.initiator_errors = Some(cut);
    row.wrong_blocks = Some(wrong);
    row.recover = Some(slowest_restart);
    row.verdict = if problems.is_empty() && wrong == 0 {
        "pass".into()
    } else {
        format!("FAIL: {}", problems.join("; "))
    };
    Ok(())
}

/// Longest a SIGTERMed target may take to exit: the daemon's 10 s drain grace for open
/// connections, plus slack for a loaded machine.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);

/// Gluster's control plane misbehaving: the first volfile server down at LUN open
/// (`vol@h1,h2:file`), `glfs_init` hanging (cut off by the `timeout` bsopt), and the
/// volume gone when the target shuts down (a slow `glfs_fini` must not hold it).
fn control_plane(env: &Env) -> Row {
    let faults = match env.fixture {
        Fixture::Docker => "node 0 stopped while the LUN opens via `vol@node0,node1`; all nodes paused while a LUN opens with timeout=5; all nodes paused at SIGTERM",
        Fixture::Native => "first volfile server a dead address (127.0.0.3) in `vol@127.0.0.3,127.0.0.2`; glusterd SIGSTOPped while a LUN opens with timeout=5; the brick SIGSTOPped at SIGTERM",
    };
    let mut row = Row::new(
        "control plane",
        "verified randrw 50/50, 4k, QD8, 10 s through the second server",
        faults,
    );
    match control_plane_inner(env, &mut row) {
        Ok(()) => row,
        Err(e) => fail(row, e),
    }
}

/// Waits (at most `limit`) until `target` says it serves its LUN.
fn wait_serving(target: &TargetProcess, limit: Duration) -> Result<()> {
    let started = Instant::now();
    while !target.log_text().contains("glfs-iscsi: serving") {
        ensure!(
            started.elapsed() < limit,
            "the LUN was not open {} s after the target started listening",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Runs `f` with every node (docker) or `what` (native: "glusterd" or "brick") frozen,
/// thawing it again whatever `f` returns.
fn frozen<T>(env: &Env, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let pid = match env.fixture {
        Fixture::Docker => {
            for i in 0..3 {
                docker::node_pause(i)?;
            }
            None
        }
        Fixture::Native => {
            let pid = if what == "glusterd" {
                glusterd_pid()?
            } else {
                native_brick_pid(&env.volume.name)?
            };
            signal(pid, "STOP")?;
            Some(pid)
        }
    };
    let r = f();
    let thawed = match pid {
        Some(pid) => signal(pid, "CONT"),
        None => (0..3).try_for_each(docker::node_unpause),
    };
    let r = r?;
    thawed?;
    Ok(r)
}

fn control_plane_inner(env: &Env, row: &mut Row) -> Result<()> {
    let mut problems = Vec::new();
    // 1. The first volfile server is down: the LUN opens through the second.
    let (spec, restore_node0) = match env.fixture {
        Fixture::Docker => {
            docker::node_stop(0)?;
            (
                format!(
                    "{}@{},{}",
                    env.volume.name,
                    docker::node_ip(0),
                    docker::node_ip(1)
                ),
                true,
            )
        }
        Fixture::Native => (
            format!("{}@127.0.0.3,{}", env.volume.name, env.volume.host),
            false,
        ),
    };
    let opened = Instant::now();
    let served = start_target_on(env, "control-plane", &spec).and_then(|target| {
        // The portal listens only once the LUN is open (the start above waited for it);
        // the target says it serves the LUN just before.
        wait_serving(&target, Duration::from_secs(180))?;
        let took = opened.elapsed();
        ensure!(
            took <= Duration::from_secs(INITIATOR_TIMEOUT_SECS.into()),
            "opening the LUN took {:.1} s: an initiator's login ({INITIATOR_TIMEOUT_SECS} s) would have timed out",
            took.as_secs_f64()
        );
        let load = start_load(env, &target.url(), "control-plane", 10)?;
        let result = load.finish(Duration::from_secs(70))?;
        target.stop()?;
        Ok((took, result))
    });
    if restore_node0 {
        docker::node_start(0)?;
        docker::wait_bricks_online(3, &env.volume.name, Duration::from_secs(60))?;
    }
    let (took, result) = served.context("LUN through the second volfile server")?;
    row.recover = Some(took);
    judge(row, &result);
    if row.verdict != "pass" {
        problems.push(format!("through the second server: {}", row.verdict));
    }
    let mut notes = Vec::new();

    // 2. glfs_init hangs: the open is cut off by the timeout, with a message saying so.
    let port = util::free_port()?.to_string();
    let (status, waited, stderr) = frozen(env, "glusterd", || {
        let started = Instant::now();
        let out = Command::new(&env.binary)
            .args(["--portal", &format!("127.0.0.1:{port}")])
            .args([
                "--target",
                "iqn.2026-11.io.glfs-iscsi:hang",
                "--bstype",
                "glfs",
            ])
            .arg("--backing-store")
            .arg(format!("{}:hang.img", env.volume.spec()))
            .args(["--bsopts", "timeout=5", "--size", "64M"])
            .stdin(Stdio::null())
            .output()
            .context("starting glfs-iscsi")?;
        Ok((
            out.status,
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    })?;
    if status.success() || !stderr.contains("did not finish within 5 s") {
        problems.push(format!(
            "hanging glfs_init: exit {status} after {waited:.1?}, said: {}",
            tail_lines(&stderr, 3)
        ));
    } else if waited > Duration::from_secs(20) {
        problems.push(format!("hanging glfs_init cut off only after {waited:.1?}"));
    } else {
        notes.push(format!(
            "hung open refused after {:.1} s",
            waited.as_secs_f64()
        ));
    }

    // 3. The volume hangs when the target is told to stop: shutdown keeps its grace.
    let target = start_target(env, "control-plane")?;
    let load = start_load(env, &target.url(), "control-plane-stop", 3)?;
    load.finish(Duration::from_secs(60))?;
    let stopped = frozen(env, "brick", || {
        let started = Instant::now();
        let r = target.stop();
        Ok((r, started.elapsed()))
    })?;
    match stopped {
        (Ok(()), took) if took <= SHUTDOWN_LIMIT => {
            notes.push(format!("stopped in {:.1} s", took.as_secs_f64()))
        }
        (r, took) => problems.push(format!(
            "shutdown with the volume hanging took {took:.1?} (limit {SHUTDOWN_LIMIT:?}): {r:?}"
        )),
    }
    if env.fixture == Fixture::Docker {
        docker::wait_bricks_online(3, &env.volume.name, Duration::from_secs(60))?;
    }
    row.verdict = if problems.is_empty() {
        format!("pass ({})", notes.join(", "))
    } else {
        format!("FAIL: {}", problems.join("; "))
    };
    Ok(())
}

/// The volume the gateway-failover scenarios create on the Docker cluster and delete again:
/// replica 3 like the fixture's, plus what the data fence needs (mandatory locks, enforced),
/// set before it starts so the bricks run with them from the start.
const FAILOVER_VOLUME: &str = "glfsiscsi-failover";
const FAILOVER_VOLUME_OPTIONS: &[(&str, &str)] = &[
    ("network.ping-timeout", "5"),
    ("locks.mandatory-locking", "optimal"),
    ("features.enforce-mandatory-lock", "on"),
];
/// Longest the standby may take to become active once the active gateway died: the bricks
/// drop a dead process's locks when its connections close, and the standby's failover
/// round comes every second; a wide margin for a loaded machine.
const FAILOVER_LIMIT: Duration = Duration::from_secs(15);
/// Seconds of verified load through the standby once it is active.
const AFTER_FAILOVER_SECS: u64 = 15;
/// What a gateway logs when it takes the data fence (`daemon::failover`).
const ACTIVE_SAYS: &str = "holds the data fence";
/// What a gateway logs when it gives its active role up.
const STEPPED_DOWN_SAYS: &str = "no longer the active gateway";

/// Two gateways (`--gateway-id`, `--alua-failover`) on one LUN of a replica-3 volume; a
/// verified load with FUA writes through the active one, which is SIGKILLed; the initiator
/// moves to the standby's portal (as a multipath host does when a path dies) once the
/// standby reports itself active. With `brick_loss` node 2 is killed at the same moment
/// and started again while the load runs through the new active gateway. Afterwards
/// another gfapi client reads the file back: every write either gateway acknowledged is
/// there, and the three bricks hold the same file.
fn gateway_failover(env: &Env, brick_loss: bool) -> Row {
    let (scenario, faults) = if brick_loss {
        (
            "gateway failover, brick lost",
            "active gateway SIGKILLed and node 2 `docker kill`ed at the same moment; initiator moved to the standby's portal; node 2 `docker start`ed 5 s into the load through the standby, healed after",
        )
    } else {
        (
            "gateway failover",
            "active gateway SIGKILLed; initiator moved to the standby's portal",
        )
    };
    let load = format!(
        "verified randrw 50/50, 4k, QD8, FUA writes: through the active gateway until the kill, then {AFTER_FAILOVER_SECS} s through the standby (initiator errors: commands cut off on the killed path, which a multipath host retries on the other; none allowed through the standby)"
    );
    let row = Row::new(scenario, &load, faults);
    on_docker_only(
        env,
        row,
        "the one-brick failover check is the live test in crates/daemon/tests/gateways.rs",
        |row| gateway_failover_inner(env, brick_loss, row),
    )
}

/// A gateway scenario's row: skipped off the Docker fixture (`one_brick` names what checks
/// it on the one-brick volume), else what `inner` made of it.
fn on_docker_only(
    env: &Env,
    mut row: Row,
    one_brick: &str,
    inner: impl FnOnce(&mut Row) -> Result<()>,
) -> Row {
    if env.fixture != Fixture::Docker {
        row.verdict = format!("skipped: needs the replicated Docker fixture ({one_brick})");
        return row;
    }
    match inner(&mut row) {
        Ok(()) => row,
        Err(e) => fail(row, e),
    }
}

/// [`FAILOVER_VOLUME`], deleted (with its bricks) when dropped; node 2 started again if a
/// scenario left it killed.
struct FailoverVolume;

impl FailoverVolume {
    fn create() -> Result<FailoverVolume> {
        let volume = FailoverVolume;
        volume.remove(); // what an interrupted earlier run left
        let args = docker::volume_create_args(3, FAILOVER_VOLUME);
        docker::gluster_exec(0, &args.iter().map(String::as_str).collect::<Vec<_>>())
            .with_context(|| format!("creating volume {FAILOVER_VOLUME}"))?;
        for (key, value) in FAILOVER_VOLUME_OPTIONS {
            docker::gluster_exec(0, &["volume", "set", FAILOVER_VOLUME, key, value])?;
        }
        docker::gluster_exec(0, &["volume", "start", FAILOVER_VOLUME])?;
        docker::wait_bricks_online(3, FAILOVER_VOLUME, Duration::from_secs(60))?;
        Ok(volume)
    }

    fn spec() -> String {
        let hosts: Vec<String> = (0..3).map(|i| docker::node_ip(i).to_string()).collect();
        format!("{FAILOVER_VOLUME}@{}", hosts.join(","))
    }

    fn remove(&self) {
        let _ = docker::gluster_exec(0, &["volume", "stop", FAILOVER_VOLUME, "force"]);
        let _ = docker::gluster_exec(0, &["volume", "delete", FAILOVER_VOLUME]);
        for i in 0..3 {
            let _ = Command::new("docker")
                .args(["exec", &docker::node_name(i), "rm", "-rf"])
                .arg(format!("{}/{FAILOVER_VOLUME}", docker::BRICK_ROOT))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for FailoverVolume {
    fn drop(&mut self) {
        let _ = docker::node_start(2);
        self.remove();
    }
}

/// Waits (at most `limit`) until `target` logged `needle`; the time it took.
fn wait_logged(target: &TargetProcess, needle: &str, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    while !target.log_text().contains(needle) {
        ensure!(
            started.elapsed() < limit,
            "no \"{needle}\" within {} s; the gateway logged: {}",
            limit.as_secs(),
            tail_lines(&target.log_text(), 8)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(started.elapsed())
}

/// Two gateways on a new LUN of a new [`FAILOVER_VOLUME`]: A (group 1) started first and
/// active, B (group 2) standby. Their logs go to `dir/gateway-a` and `dir/gateway-b`.
struct Pair {
    /// Held so that the volume is deleted only when the pair is dropped.
    _volume: FailoverVolume,
    lun: String,
    a: TargetProcess,
    b: TargetProcess,
    /// Where A serves its metrics (`--metrics`).
    a_metrics: String,
}

/// How many commands the gateway serving metrics at `addr` answered BUSY
/// (`glfs_iscsi_lun_responses_total{status="busy"}`, summed over its LUNs).
fn busy_answers(addr: &str) -> Result<u64> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)
        .with_context(|| format!("connecting to the metrics on {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .with_context(|| format!("reading the metrics from {addr}"))?;
    ensure!(
        text.contains("glfs_iscsi_lun_responses_total"),
        "no glfs_iscsi_lun_responses_total in the metrics from {addr}: {}",
        tail_lines(&text, 5)
    );
    Ok(busy_in_metrics(&text))
}

/// The BUSY answers in a Prometheus text page of the daemon's metrics, summed over LUNs.
fn busy_in_metrics(text: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with("glfs_iscsi_lun_responses_total{") && l.contains("status=\"busy\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum()
}

fn start_pair(env: &Env, name: &str, dir: &Path) -> Result<Pair> {
    let volume = FailoverVolume::create()?;
    let lun = lun_name(name);
    let a_metrics = format!("127.0.0.1:{}", util::free_port()?);
    let gateway = |id: &str, group: &str, peer: &str, metrics: Option<&str>| {
        let mut args: Vec<String> = vec![
            "--gateway-id".into(),
            id.into(),
            "--alua-group".into(),
            group.into(),
            "--alua-peer".into(),
            format!("{peer}:standby"),
            "--alua-failover".into(),
        ];
        if let Some(addr) = metrics {
            args.extend(["--metrics".into(), addr.into()]);
        }
        TargetProcess::start_with(
            &env.binary,
            LunSetup {
                bstype: "glfs".into(),
                backing_store: format!("{}:{lun}", FailoverVolume::spec()),
                local_file: None,
                library: None,
                env: vec![],
                log_dir: dir.join(id),
            },
            &args,
        )
    };
    // A starts first and takes the fence; B finds it taken and stays standby.
    let a = gateway("gateway-a", "1", "2", Some(&a_metrics))?;
    wait_logged(&a, ACTIVE_SAYS, Duration::from_secs(30)).context("gateway A")?;
    let b = gateway("gateway-b", "2", "1", None)?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        !b.log_text().contains(ACTIVE_SAYS),
        "gateway B took the fence while A held it: {}",
        tail_lines(&b.log_text(), 8)
    );
    Ok(Pair {
        _volume: volume,
        lun,
        a,
        b,
        a_metrics,
    })
}

/// Run ids for the loads of a failover scenario (printed to find them in the files).
fn failover_run_ids(name: &str) -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        & !0xffff;
    eprintln!(
        "{name}: run ids {seed:#x} (through A) and {:#x} (through B)",
        seed + 1
    );
    seed
}

/// A verified load with FUA writes through `url`, writing its expectations to `expect`.
fn durable_load(
    env: &Env,
    url: &str,
    name: &str,
    seconds: u64,
    run: u64,
    expect: &Path,
) -> Result<Load> {
    start_load_with(
        env,
        url,
        name,
        seconds,
        50,
        &[
            "--fua".into(),
            "--run-id".into(),
            run.to_string(),
            "--seed".into(),
            run.to_string(),
            "--expect-out".into(),
            expect.display().to_string(),
        ],
    )
}

/// A failover scenario under way: its fresh directory (`target/reliability/NAME`), the
/// pair of gateways, the run ids of its loads, where each load writes its expectations,
/// and the verified load through A, logged in. Keep it whole to the end of the scenario
/// (move the gateways out of it): its volume is deleted when it is dropped.
struct FailoverRun {
    dir: PathBuf,
    pair: Pair,
    run: u64,
    expect_a: PathBuf,
    expect_b: PathBuf,
    load_a: Load,
}

/// What every failover scenario starts with: the pair, and `seconds` of durable load
/// through A once A logged the login.
fn start_failover_run(env: &Env, name: &str, seconds: u64) -> Result<FailoverRun> {
    let dir = util::target_dir().join("reliability").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let pair = start_pair(env, name, &dir)?;
    let run = failover_run_ids(name);
    let expect_a = dir.join("through-a.jsonl");
    let expect_b = dir.join("through-b.jsonl");
    let load_a = durable_load(
        env,
        &pair.a.url(),
        &format!("{name}/through-a"),
        seconds,
        run,
        &expect_a,
    )?;
    wait_logged(&pair.a, "login peer=", Duration::from_secs(30)).context("login through A")?;
    Ok(FailoverRun {
        dir,
        pair,
        run,
        expect_a,
        expect_b,
        load_a,
    })
}

/// The durable load through B once it is active (the host's multipath moved there):
/// [`AFTER_FAILOVER_SECS`], the scenario's second run id.
fn load_through_b(
    env: &Env,
    name: &str,
    b: &TargetProcess,
    run: u64,
    expect_b: &Path,
) -> Result<Load> {
    durable_load(
        env,
        &b.url(),
        &format!("{name}/through-b"),
        AFTER_FAILOVER_SECS,
        run + 1,
        expect_b,
    )
}

/// What the read-back after a failover scenario found.
struct ReadBack {
    slots: u64,
    wrong: u64,
    said: String,
    to_heal: usize,
    healed_in: Duration,
    /// Why the bricks' copies differ after the heal, if they do in a way they must not.
    copies_differ: Option<String>,
    /// Blocks in which the copies differ only as outcomes of a write never acknowledged
    /// (see [`copies_in_doubt`]).
    in_doubt: u64,
}

impl ReadBack {
    /// For a verdict: the blocks in which the bricks' copies differ as outcomes of writes
    /// never acknowledged, if any.
    fn in_doubt_note(&self) -> String {
        if self.in_doubt == 0 {
            String::new()
        } else {
            format!(
                "; the bricks' copies differ in {} logical blocks, each holding an outcome of a write A never acknowledged, which AFR leaves unmarked and a multipath host rewrites through B",
                self.in_doubt
            )
        }
    }
}

/// Once no gateway runs (their fences gone): every write the loads acknowledged, read
/// back by another gfapi client of [`FAILOVER_VOLUME`]; then the volume healed and the
/// three bricks' copies compared.
fn read_back(env: &Env, lun: &str, expects: &[&Path]) -> Result<ReadBack> {
    // What the volume says is left to heal (a write a killed gateway had in flight may
    // have reached some bricks only; AFR marked it).
    let to_heal = docker::heal_pending(FAILOVER_VOLUME)?;
    // What AFR will go by, before the read-back's client may heal the file itself.
    eprintln!(
        "before the read-back and heal:\n{}",
        brick_xattrs(FAILOVER_VOLUME, lun)
    );
    let checker = env.load.with_file_name("iscsi-load-check");
    let mut cmd = Command::new(&checker);
    cmd.args(["--volume", FAILOVER_VOLUME]);
    for i in 0..3 {
        cmd.arg("--host").arg(docker::node_ip(i).to_string());
    }
    cmd.args(["--path", lun]);
    for e in expects {
        ensure!(
            e.exists(),
            "iscsi-load wrote no expectations to {}",
            e.display()
        );
        cmd.arg("--expect").arg(e);
    }
    let Checked { report, said, .. } = run_checker(cmd).context("the read-back")?;
    let n = |k: &str| report.get(k).and_then(Value::as_u64).unwrap_or(0);
    // Then the self-heal makes the three copies one again.
    let healing = Instant::now();
    docker::wait_healed(FAILOVER_VOLUME, Duration::from_secs(180))?;
    let healed_in = healing.elapsed();
    // The checker compares the copies and says where they differ (its stderr).
    let (copies_differ, in_doubt) = match copies_in_doubt(&checker, FAILOVER_VOLUME, lun, expects) {
        Ok(blocks) => (None, blocks),
        Err(e) => (Some(format!("after heal {e:#}")), 0),
    };
    if copies_differ.is_some() || in_doubt > 0 {
        eprintln!("after the heal:\n{}", brick_xattrs(FAILOVER_VOLUME, lun));
    }
    Ok(ReadBack {
        slots: n("slots_checked"),
        wrong: n("wrong_blocks"),
        said,
        to_heal,
        healed_in,
        copies_differ,
        in_doubt,
    })
}

/// What an `iscsi-load-check` run printed: its JSON report, what it said on stderr, and
/// whether it exited 0 (every block right, and copies differing only in doubt).
struct Checked {
    report: Value,
    said: String,
    passed: bool,
}

/// Runs `iscsi-load-check` as `cmd` (its arguments set) says; fails when it cannot start
/// or prints no report.
fn run_checker(mut cmd: Command) -> Result<Checked> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", util::display(&cmd)))?;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("iscsi-load-check printed no report: {said}"))?;
    Ok(Checked {
        report,
        said,
        passed: out.status.success(),
    })
}

/// When the bricks' copies of `lun` differ only as outcomes of writes never acknowledged,
/// in how many (logical) blocks; an error for any other difference (`iscsi-load-check
/// --copy` reads each brick's file from the host, checks it against the expectation files
/// and compares the copies: every copy must hold one of the contents a slot allows, and
/// where no run wrote they must be equal). A stalled gateway's write it had sent to some
/// bricks when it stopped and that the bricks refused as fenced when it resumed is such a
/// difference: AFR counts a write that failed its quorum as failed on every brick and
/// marks no brick to heal (docs/fencing.md, "A stalled writer's write on some bricks
/// only").
fn copies_in_doubt(checker: &Path, volume: &str, lun: &str, expects: &[&Path]) -> Result<u64> {
    let mut cmd = Command::new(checker);
    for i in 0..3 {
        cmd.arg("--copy")
            .arg(docker::brick_root_on_host(i)?.join(volume).join(lun));
    }
    for e in expects {
        cmd.arg("--expect").arg(e);
    }
    let Checked {
        report,
        said,
        passed,
    } = run_checker(cmd).context("the copies' check")?;
    eprint!("{said}");
    eprintln!("the copies' check: {report}");
    let n = |k: &str| report.get(k).and_then(Value::as_u64).unwrap_or(0);
    let wrong: u64 = report
        .get("copies")
        .and_then(Value::as_array)
        .map(|copies| {
            copies
                .iter()
                .filter_map(|c| c.get("wrong_blocks").and_then(Value::as_u64))
                .sum()
        })
        .unwrap_or(0);
    let (differ, in_doubt, elsewhere) = (
        n("copies_differ"),
        n("copies_differ_in_doubt"),
        n("copies_differ_elsewhere"),
    );
    ensure!(
        wrong == 0 && differ == in_doubt && elsewhere == 0 && passed,
        "{wrong} wrong blocks in the bricks' copies; they differ in {differ} written blocks, {in_doubt} of them outcomes of writes never acknowledged, and in {elsewhere} blocks no run wrote: {}",
        tail_lines(&said, 4)
    );
    Ok(in_doubt)
}

/// The extended attributes of each brick's copy of `rel` (AFR's changelog: pending and
/// dirty counts), as `getfattr` prints them, for the log.
fn brick_xattrs(volume: &str, rel: &str) -> String {
    (0..3)
        .map(|i| {
            let said = docker::brick_root_on_host(i).and_then(|root| {
                let path = root.join(volume).join(rel);
                let out = Command::new("getfattr")
                    .args(["--absolute-names", "-d", "-m", ".", "-e", "hex"])
                    .arg(&path)
                    .stdin(Stdio::null())
                    .output()
                    .context("running getfattr (apt install attr)")?;
                Ok(format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            });
            match said {
                Ok(text) => format!("node {i}: {}", text.trim()),
                Err(e) => format!("node {i}: {e:#}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The problems of a read-back and of verified loads that must each have verified
/// something.
fn failover_problems(back: &ReadBack, loads: &[(&str, &LoadResult)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, r) in loads {
        if r.wrong_blocks > 0 {
            problems.push(format!(
                "{} wrong blocks read through {path}",
                r.wrong_blocks
            ));
        }
        if r.writes_acked == 0 || r.reads_checked == 0 {
            problems.push(format!(
                "nothing verified through {path} ({} reads checked, {} writes acknowledged)",
                r.reads_checked, r.writes_acked
            ));
        }
    }
    if back.wrong > 0 {
        problems.push(format!(
            "{} wrong blocks read back: {}",
            back.wrong,
            tail_lines(&back.said, 3)
        ));
    }
    problems.extend(back.copies_differ.clone());
    problems
}

fn gateway_failover_inner(env: &Env, brick_loss: bool, row: &mut Row) -> Result<()> {
    let name = if brick_loss {
        "gateway-failover-brick-loss"
    } else {
        "gateway-failover"
    };
    let f = start_failover_run(env, name, 120)?;
    let (a, b) = (f.pair.a, f.pair.b);
    std::thread::sleep(Duration::from_secs(6));

    if brick_loss {
        docker::node_kill(2)?;
    }
    let killed = Instant::now();
    drop(a); // SIGKILL
    wait_logged(&b, ACTIVE_SAYS, FAILOVER_LIMIT)
        .context("the standby did not become active after the active gateway died")?;
    let took = killed.elapsed();
    row.recover = Some(took);
    let cut = f.load_a.finish(Duration::from_secs(60))?;

    // The host's multipath moves to the other portal.
    let load_b = load_through_b(env, name, &b, f.run, &f.expect_b)?;
    if brick_loss {
        std::thread::sleep(Duration::from_secs(5));
        docker::node_start(2)?;
        docker::wait_bricks_online(3, FAILOVER_VOLUME, Duration::from_secs(60))?;
    }
    let after = load_b.finish(Duration::from_secs(AFTER_FAILOVER_SECS + 90))?;
    let stepped_down = b.log_text().contains(STEPPED_DOWN_SAYS);
    b.stop()?; // its fence goes: another client may read the file now
    let back = read_back(env, &f.pair.lun, &[&f.expect_a, &f.expect_b])?;

    row.initiator_errors = Some(cut.errors + after.errors);
    row.wrong_blocks = Some(cut.wrong_blocks + after.wrong_blocks + back.wrong);
    let mut problems = failover_problems(&back, &[("A", &cut), ("B", &after)]);
    if after.errors > 0 {
        problems.push(format!(
            "{} initiator errors through the standby: {}",
            after.errors,
            tail_lines(&after.stderr, 3)
        ));
    }
    if stepped_down {
        problems.push(format!(
            "the new active gateway stepped down during the load: {}",
            tail_lines(&role_lines(&f.dir, "gateway-b"), 3)
        ));
    }
    eprintln!(
        "{name}: through A {} writes acknowledged, {} commands cut by the kill; standby active {:.1} s after the kill; through B {} writes acknowledged, {} reads checked; read back {} slots; {} entries to heal, healed in {:.1} s",
        cut.writes_acked,
        cut.errors,
        took.as_secs_f64(),
        after.writes_acked,
        after.reads_checked,
        back.slots,
        back.to_heal,
        back.healed_in.as_secs_f64()
    );
    row.verdict = if problems.is_empty() {
        format!(
            "pass ({} + {} writes acknowledged, {} slots read back, {} entries left to heal after the load{})",
            cut.writes_acked,
            after.writes_acked,
            back.slots,
            back.to_heal,
            back.in_doubt_note()
        )
    } else {
        format!("FAIL: {}", problems.join("; "))
    };
    Ok(())
}

/// The standby's bound for a missing heartbeat (`daemon::stall::STALL_AFTER`).
const STALL_AFTER: Duration = Duration::from_secs(8);

/// The longest between two heartbeats of an active gateway (its failover rounds: one at
/// least every second).
const HEARTBEAT_ROUND: Duration = Duration::from_secs(1);

/// The active gateway SIGSTOPped under verified load: its connections to the bricks stay
/// open, so it keeps its locks (its fence and election lock, and the volume's own: AFR's
/// eager lock on the image, under write load), but its heartbeat stops; after
/// [`STALL_AFTER`] the standby takes the fence away (Gluster's clear-locks) and becomes
/// active, and the host's multipath moves there. The stalled gateway stays stopped for
/// the whole load through the standby (no write there may wait for it: with AFR's lock
/// left, every one did until it resumed); then SIGCONT: it lands nothing (the bricks
/// refuse what it still sends) and steps down; every acknowledged write reads back, none
/// of A's over B's.
///
/// [`StallAt::RecordWrite`] stops A inside its heartbeat's write of the record, with the
/// record's temporary file open and written and AFR's lock on it held: the standby's own
/// record write must not wait for A either (docs/fencing.md, "A stalled writer's volume
/// locks"; the CI run that found it had stopped A there by chance).
///
/// [`StallAt::MidWrite`] stops A between sending a write to one brick and to the next:
/// when it resumes the rest is refused as fenced, and the bricks that had it keep a write
/// AFR marks on none of them when too few had it for its quorum (the CI run that found it
/// had stopped A there by chance too). Nothing acknowledged may be lost, and the copies
/// may differ only in such a write's block (docs/fencing.md, "A stalled writer's write on
/// some bricks only").
fn gateway_stall(env: &Env, at: StallAt) -> Row {
    let (scenario, faults) = match at {
        StallAt::UnderLoad => (
            "gateway stall",
            "active gateway SIGSTOPped until the load through the standby ended, then SIGCONTed; initiator moved to the standby's portal once it is active",
        ),
        StallAt::RecordWrite => (
            "gateway stall in its record write",
            "active gateway stopped inside its heartbeat's record write (held by gdb at a breakpoint on glfs_fsync) until the load through the standby ended, then let go; initiator moved to the standby's portal once it is active",
        ),
        StallAt::MidWrite => (
            "gateway stall in the middle of a write",
            "active gateway stopped after sending a write to the first brick and before the second (held by gdb at a breakpoint on rpc_clnt_submit for a WRITE to client-1) until the load through the standby ended, then let go; initiator moved to the standby's portal once it is active",
        ),
    };
    let row = Row::new(
        scenario,
        "verified randrw 50/50, 4k, QD8, FUA writes, 40 s through the active gateway; from the takeover on, 15 s through the standby",
        faults,
    );
    on_docker_only(
        env,
        row,
        "the one-brick stall check is the test in crates/daemon/tests/gateways.rs",
        |row| gateway_stall_inner(env, row, at),
    )
}

/// Where the stall scenario stops the active gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StallAt {
    /// 5 s into the load through it, wherever it is then.
    UnderLoad,
    /// 5 s into the load, at its next heartbeat: inside the fsync of the record's
    /// temporary file.
    RecordWrite,
    /// 5 s into the load, between the first and the second brick's requests of a write.
    MidWrite,
}

/// The procedure number of WRITE in Gluster's file operations program (GlusterFS 3.3 and
/// 4.x alike: NULL, STAT, READLINK, MKNOD, MKDIR, UNLINK, RMDIR, SYMLINK, RENAME, LINK,
/// TRUNCATE, OPEN, READ, WRITE).
const GLUSTER_WRITE_PROC: u32 = 13;

/// Where `struct rpc_clnt` (GlusterFS 10, x86-64) keeps its connection's name, the name
/// of the client translator it serves (`<volume>-client-<brick index>`): `conn` at 48
/// (after a mutex and the notify function), `name` 224 bytes into it
/// (`rpc/rpc-clnt.h`). The scenario prints the name it read and checks it.
const RPC_CLNT_CONN_NAME: u32 = 48 + 224;

/// A process held by gdb at a breakpoint: every thread stopped (gdb's all-stop mode),
/// its connections open, as a SIGSTOP leaves it. Resumed by [`Held::resume`] (gdb
/// detaches) or when dropped.
///
/// gdb holds it rather than a SIGSTOP sent while gdb is attached: gdb stops threads with
/// SIGSTOP itself and sometimes took that one for its own, and the process ran on once gdb
/// detached (2 of 3 runs of the mid-write stop).
struct Held {
    gdb: Child,
    stdin: Option<std::process::ChildStdin>,
}

impl Held {
    /// Attaches gdb to `pid` with the breakpoint `brk` and continues until it is hit; then
    /// runs `show` (a gdb command whose output must contain `expect`) and leaves the
    /// process stopped there. Fails after `limit` without a hit.
    fn at_breakpoint(
        pid: u32,
        brk: &str,
        show: &str,
        expect: &str,
        limit: Duration,
    ) -> Result<Held> {
        let marker = "glfs-iscsi-held-here";
        let mut gdb = Command::new("gdb")
            .args(["-nx", "-q", "-p", &pid.to_string()])
            .args(["-ex", "set pagination off", "-ex", "set confirm off"])
            .args(["-ex", brk, "-ex", "continue", "-ex", show, "-ex", "bt 4"])
            .args(["-ex", &format!("echo {marker}\\n")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("running gdb (apt install gdb)")?;
        let stdin = gdb.stdin.take();
        let stdout = gdb.stdout.take().context("gdb's output")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut held = Held { gdb, stdin };
        let deadline = Instant::now() + limit;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(marker) => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    held.resume();
                    bail!(
                        "gdb did not stop the gateway at `{brk}` within {limit:?}: {}",
                        said.join(" | ")
                    );
                }
            }
        }
        let said = said.join(" | ");
        eprintln!("gdb holds the gateway: {said}");
        if !said.contains(expect) {
            held.resume();
            bail!("the gateway stopped elsewhere than `{expect}`: {said}");
        }
        ensure!(
            process_state(pid).contains("stop"),
            "the gateway is not stopped under gdb: {}",
            process_state(pid)
        );
        Ok(held)
    }

    /// gdb lets the process go on (as SIGCONT would) and exits.
    fn resume(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(b"detach\nquit\n");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.gdb.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.gdb.kill(); // a killed tracer lets its tracee go on too
        let _ = self.gdb.wait();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.resume();
    }
}

/// The `State:` line of process `pid` (`T (stopped)`, `t (tracing stop)`, ...).
fn process_state(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("State: unknown")
        .to_string()
}

/// How the stall scenario holds the active gateway stopped.
enum Stop {
    /// SIGSTOPped; SIGCONT resumes it.
    Signal(u32),
    /// Held by gdb at a breakpoint.
    Gdb(Held),
}

impl Stop {
    fn resume(&mut self) -> Result<()> {
        match self {
            Stop::Signal(pid) => signal(*pid, "CONT"),
            Stop::Gdb(held) => {
                held.resume();
                Ok(())
            }
        }
    }
}

/// Holds process `pid` inside `glfs_fsync` called by a metadata write. Waits at most
/// `limit` for the breakpoint.
fn stop_in_metadata_write(pid: u32, limit: Duration) -> Result<Held> {
    Held::at_breakpoint(pid, "break glfs_fsync", "echo \\n", "write_metadata", limit)
}

/// Holds process `pid` between the first and the second brick's request of a write: a
/// breakpoint in `rpc_clnt_submit` (libgfrpc, which every brick request goes through) on
/// a WRITE request to the second brick of [`FAILOVER_VOLUME`]; AFR sends a write to its
/// bricks in their order, so the first brick has it and the other two do not. Waits at
/// most `limit`.
fn stop_between_bricks(pid: u32, limit: Duration) -> Result<Held> {
    let second = format!("{FAILOVER_VOLUME}-client-1");
    // At the function's entry the first argument (the rpc client) is in rdi and the
    // third (the procedure number) in edx.
    let name = format!("*(char **)($rdi + {RPC_CLNT_CONN_NAME})");
    let brk = format!(
        "break rpc_clnt_submit if $edx == {GLUSTER_WRITE_PROC} && $_streq({name}, \"{second}\")"
    );
    let show = format!("printf \"to %s\\n\", {name}");
    Held::at_breakpoint(pid, &brk, &show, &format!("to {second}"), limit)
}

fn gateway_stall_inner(env: &Env, row: &mut Row, at: StallAt) -> Result<()> {
    let name = match at {
        StallAt::UnderLoad => "gateway-stall",
        StallAt::RecordWrite => "gateway-stall-in-write",
        StallAt::MidWrite => "gateway-stall-mid-write",
    };
    let f = start_failover_run(env, name, 40)?;
    let (a, b) = (f.pair.a, f.pair.b);
    std::thread::sleep(Duration::from_secs(5));
    let pid = a.pid().context("gateway A has no pid")?;
    let mut stop = match at {
        StallAt::UnderLoad => {
            signal(pid, "STOP")?;
            Stop::Signal(pid)
        }
        StallAt::RecordWrite => Stop::Gdb(stop_in_metadata_write(pid, Duration::from_secs(30))?),
        StallAt::MidWrite => Stop::Gdb(stop_between_bricks(pid, Duration::from_secs(30))?),
    };
    let stopped = Instant::now();
    let taken = wait_logged(&b, ACTIVE_SAYS, STALL_AFTER + FAILOVER_LIMIT);
    let took = stopped.elapsed();
    if let Err(e) = taken {
        let _ = stop.resume();
        return Err(e.context("the standby did not take over from the stalled gateway"));
    }
    row.recover = Some(took);
    let mut problems = Vec::new();
    // The bound runs from the last heartbeat the standby saw, which came up to a round
    // of A's before it stopped (stopped inside a heartbeat: a round before).
    if took + HEARTBEAT_ROUND < STALL_AFTER {
        problems.push(format!(
            "the standby took the fence {:.1} s into the stall, before the bound",
            took.as_secs_f64()
        ));
    }
    // The host's multipath moves to the other portal; A stays stopped all along.
    let through_b = load_through_b(env, name, &b, f.run, &f.expect_b)
        .and_then(|load| load.finish(Duration::from_secs(AFTER_FAILOVER_SECS + 90)));
    let stalled_for = stopped.elapsed();
    stop.resume()?;
    let through_b = through_b?;
    if let Err(e) = wait_logged(&a, STEPPED_DOWN_SAYS, FAILOVER_LIMIT) {
        problems.push(format!("the resumed gateway did not step down: {e:#}"));
    }
    // A's commands after SIGCONT fail (refused by the bricks as fenced, then standby):
    // a multipath host retries them on B. What matters is that none landed.
    let through_a = f.load_a.finish(Duration::from_secs(120))?;
    if through_b.errors > 0 {
        problems.push(format!(
            "{} initiator errors through B after it took over: {}",
            through_b.errors,
            tail_lines(&through_b.stderr, 3)
        ));
    }
    if b.log_text().contains(STEPPED_DOWN_SAYS) {
        problems.push(format!(
            "the new active gateway stepped down: {}",
            tail_lines(&role_lines(&f.dir, "gateway-b"), 3)
        ));
    }
    let a_errors = through_a.errors;
    // Of A's errors, the writes it answered BUSY after SIGCONT (its reservation lease ran
    // out in the stall) before it saw its fence gone.
    let busy = busy_answers(&f.pair.a_metrics).unwrap_or(0);
    drop(a);
    b.stop()?; // its fence goes: another client may read the file now
    let back = read_back(env, &f.pair.lun, &[&f.expect_a, &f.expect_b])?;
    problems.extend(failover_problems(
        &back,
        &[("A", &through_a), ("B", &through_b)],
    ));
    row.initiator_errors = Some(through_a.errors + through_b.errors);
    row.wrong_blocks = Some(through_a.wrong_blocks + through_b.wrong_blocks + back.wrong);
    eprintln!(
        "{name}: B active {:.1} s into the stall; {a_errors} initiator errors through A ({busy} BUSY); read back {} slots; {} entries to heal, healed in {:.1} s",
        took.as_secs_f64(),
        back.slots,
        back.to_heal,
        back.healed_in.as_secs_f64()
    );
    row.verdict = if problems.is_empty() {
        format!(
            "pass (B active {:.1} s into the {:.0} s stall; A stepped down once resumed, its {a_errors} commands after the stall failed ({busy} BUSY), none landed; {} + {} writes acknowledged, {} slots read back{})",
            took.as_secs_f64(),
            stalled_for.as_secs_f64(),
            through_a.writes_acked,
            through_b.writes_acked,
            back.slots,
            back.in_doubt_note()
        )
    } else {
        format!("FAIL: {}", problems.join("; "))
    };
    Ok(())
}

/// The lines of a gateway's log about its ALUA role.
fn role_lines(dir: &Path, gateway: &str) -> String {
    std::fs::read_to_string(dir.join(gateway).join("glfs-iscsi.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ALUA") || l.contains("active gateway") || l.contains("fence"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scenarios_selected_run_in_table_order() {
        assert_eq!(selected(&[]), SCENARIOS);
        assert_eq!(
            selected(&names(&["control-plane", "short-outage"])),
            ["short-outage", "control-plane"]
        );
        assert!(selected(&names(&["no-such"])).is_empty());
    }

    #[test]
    fn busy_answers_are_summed_over_luns_and_nothing_else_counts() {
        let page = "# HELP glfs_iscsi_lun_responses_total Commands answered, by SCSI status\n\
            # TYPE glfs_iscsi_lun_responses_total counter\n\
            glfs_iscsi_lun_responses_total{target=\"iqn.x:t\",lun=\"0\",status=\"good\"} 9000\n\
            glfs_iscsi_lun_responses_total{target=\"iqn.x:t\",lun=\"0\",status=\"busy\"} 6\n\
            glfs_iscsi_lun_responses_total{target=\"iqn.x:t\",lun=\"1\",status=\"busy\"} 2\n\
            glfs_iscsi_lun_responses_total{target=\"iqn.x:t\",lun=\"0\",status=\"check_condition\"} 3\n\
            glfs_iscsi_lun_errors_total{target=\"iqn.x:t\",lun=\"0\",status=\"busy\"} 100\n";
        assert_eq!(busy_in_metrics(page), 8);
        assert_eq!(busy_in_metrics(""), 0);
    }
}
