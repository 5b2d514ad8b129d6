//! `cargo xtask bench`: the performance goals, measured side by side in one run.
//!
//! For each workload (4k random read/write QD32, 64k sequential read/write QD16,
//! 1 MiB sequential read/write QD4, a 4k 70/30 random mix QD32), on one file of one
//! volume (the fake gfapi, or a live one-brick Gluster volume):
//!
//! * **ceiling**: fio's `gfapi_async` engine directly on the file; on a live volume with
//!   the volume's `performance.client-io-threads` set `off` for the fio runs (and put
//!   back after), the client graph our store builds for itself;
//! * **tgt bs_glfs**: tgtd with `--bstype glfs` on the same file, loaded by `iscsi-load`;
//! * **tgt rdwr on FUSE**: tgtd's rdwr store (O_DIRECT) on the same file through a FUSE
//!   mount of the volume (live volumes where FUSE works; skipped by name elsewhere);
//! * **ours**: `glfs-iscsi --bstype glfs` (release build), loaded by `iscsi-load`;
//!
//! and, for the protocol path alone, tgt's `null` store against our `memory` store,
//! on the same workloads and with 1, 8 and 64 sessions at once (aggregate IOPS and the
//! daemon's peak resident memory, a fresh daemon per count); beside them on the same
//! workloads tgt's rdwr store on a sparse file in tmpfs (`/dev/shm`), a tgt store that
//! holds its bytes in memory as ours does (tgt null holds none: its reads send a buffer
//! it never fills, so only the memory store pays the copy of stored bytes).
//!
//! Each workload runs in `--rounds` rounds: every side once per round, back to back,
//! in an order that is reversed from one round to the next (`bench/rounds.rs`), so the
//! machine's drift hits both sides of a ratio alike; a row shows the median of the
//! rounds' ratios with their min..max, judges its goal on the median and is "unsettled"
//! when the rounds straddle the goal. The glfs sides get a fresh daemon per measurement
//! (the ceiling's client-io-threads setting comes and goes between them); tgt null,
//! ours memory and tgt on tmpfs one daemon each for the run.
//!
//! Per side: IOPS, latency p50/p99/p99.9 and fio's percentile list, and the target's
//! CPU time per command (utime+stime from /proc/<pid>/stat over the measured window);
//! for ours, the mean time a command spent past the iSCSI layer (its `--metrics`
//! command-duration histogram read before and after the run).
//! Output: a Markdown table on stdout, `<target>/bench/results.json`, `report.md` and PNG
//! charts beside it; `--docs` also writes docs/benchmarks.md and docs/bench/*.png.
//! Every measurement runs under a time limit and every daemon is killed when its
//! measurements end, on errors too.

mod charts;
mod memcopy;
mod pin;
mod report;
mod rounds;
mod tcp;

pub use report::{Measured, Numbers, Side, Spec, WORKLOADS};

use crate::progress::Progress;
use crate::{fake, gluster, util};
use anyhow::{bail, Context, Result};
use report::{DigestPair, DigestResult, Load, Report, SessionsResult, WorkloadResult};
use rounds::Round;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VOLUME_FAKE: &str = "benchvol";
const VOLUME_LIVE: &str = "glfsbench";
const HOST: &str = "127.0.0.2";
const FILE: &str = "bench.img";
const TGT_IQN: &str = "iqn.2026-11.io.glfs-iscsi:bench-tgt";
const OUR_IQN: &str = "iqn.2026-11.io.glfs-iscsi:bench-ours";
const INITIATOR: &str = "iqn.2026-11.io.glfs-iscsi:bench-load";
const CLIENT_IO_THREADS: &str = "performance.client-io-threads";
/// The file (in the bench's output directory) that notes a volume option the bench has
/// set, until it is put back ([`VolumeOption`]).
const OPTION_JOURNAL: &str = "volume-option.json";
/// Where the TCP congestion control set for a run is noted while it is (`bench::tcp`).
const TCP_JOURNAL: &str = "tcp-congestion.json";
/// fio's default percentile list, asked for explicitly so both sides give the
/// same points (iscsi-load reports the same list).
const PERCENTILE_LIST: &str = "1:5:10:20:30:40:50:60:70:80:90:95:99:99.5:99.9:99.95:99.99";

/// Which volume the glfs measurements use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VolumeKind {
    /// The fake libgfapi.so.0 (release build) on a directory under the target dir.
    Fake,
    /// A native one-brick Gluster volume on 127.0.0.2 (needs root and glusterd).
    Live,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Volume for the glfs measurements: fake or live.
    #[arg(long, value_enum, default_value = "fake")]
    pub volume: VolumeKind,
    /// Seconds each measurement runs (after a one-second ramp).
    #[arg(long, default_value_t = 5)]
    pub seconds: u32,
    /// Rounds per workload (1-99): each round measures every side once, one right after
    /// the other (ceiling, ours, tgt, tgt on FUSE, tgt null, ours memory, tgt on
    /// tmpfs), reversed in the next round, so a change of the machine's speed hits both
    /// sides of a ratio alike and neither always runs first. A ratio is the median of the
    /// rounds' ratios, shown with their min..max, and a row whose rounds fall on both
    /// sides of its goal is "unsettled". The defaults (3 rounds of 5 s) take about 22
    /// minutes on a 2-core machine with a live volume and every side (tgt and FUSE
    /// included), about 17 on the fake volume (no FUSE side).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub rounds: u32,
    /// Workloads to run (randread-4k, randwrite-4k, read-64k, write-64k, read-1m,
    /// write-1m, mix-4k); all by default.
    #[arg(long = "workload", value_parser = parse_workload)]
    pub workloads: Vec<Spec>,
    /// Size of the benchmark file and of the memory LUN, e.g. 256M.
    #[arg(long, default_value = "256M")]
    pub size: String,
    /// Sides to run; all by default.
    #[arg(long = "only", value_enum)]
    pub sides: Vec<Side>,
    /// Session counts of the many-sessions runs (tgt null against ours memory, 4k
    /// random reads); none to leave them out.
    #[arg(long = "sessions", value_delimiter = ',', default_values = ["1", "8", "64"])]
    pub sessions: Vec<u32>,
    /// Queue depth per session in the many-sessions runs.
    #[arg(long, default_value_t = 32)]
    pub sessions_qd: u32,
    /// Leave out the many-sessions runs.
    #[arg(long)]
    pub no_sessions: bool,
    /// Leave out the digest cost (ours memory, 4k random reads with and without
    /// HeaderDigest).
    #[arg(long)]
    pub no_digests: bool,
    /// Pairs of runs (without and with HeaderDigest, side by side at the same time, each
    /// side on a core of its own) for the digest cost; its verdict is the median over the
    /// pairs.
    #[arg(long, default_value_t = 7)]
    pub digest_pairs: u32,
    /// Use the release binaries already built instead of building them.
    #[arg(long)]
    pub no_build: bool,
    /// Also write docs/benchmarks.md and docs/bench/ (charts and JSON).
    #[arg(long)]
    pub docs: bool,
    /// TCP congestion control for every connection of the run (the default of the
    /// network namespace, set for the run and put back after; see `bench/tcp.rs`):
    /// a name the kernel offers, or `keep` to measure with the machine's own; without
    /// it, cubic where the kernel offers it. A pacing one (bbr) on loopback costs every
    /// send timers and holds large sends back, and ours crosses two loopback hops to the
    /// ceiling's one.
    #[arg(long, value_name = "NAME|keep")]
    pub tcp_congestion: Option<String>,
    /// Let `iscsi-load` send each write command's header and data by two sends, two TCP
    /// segments, as libiscsi does by itself (its `--split-writes`); by default they go
    /// out corked as one, as Linux's initiator sends a PDU.
    #[arg(long)]
    pub split_writes: bool,
    /// Fail when a goal is not met, judged on the median of the rounds (an unsettled row
    /// whose median meets its goal passes); by default only a failed measurement fails.
    #[arg(long)]
    pub require_goals: bool,
}

fn parse_workload(id: &str) -> Result<Spec, String> {
    WORKLOADS
        .iter()
        .find(|w| w.id == id)
        .copied()
        .ok_or_else(|| {
            let ids: Vec<&str> = WORKLOADS.iter().map(|w| w.id).collect();
            format!(
                "unknown workload {id:?}: expected one of {}",
                ids.join(", ")
            )
        })
}

fn volume_kind_name(kind: VolumeKind) -> &'static str {
    match kind {
        VolumeKind::Fake => "fake",
        VolumeKind::Live => "live",
    }
}

/// A /proc/stat busy/total sample.
fn machine_cpu() -> Option<(u64, u64)> {
    report::parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The whole machine now: /proc/stat's totals and every process's CPU ticks.
fn proc_snapshot() -> Option<report::ProcSnapshot> {
    let (total, steal) =
        report::parse_proc_stat_parts(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // gone meanwhile
        };
        if let Some((name, ticks)) = report::parse_pid_stat_name(&stat) {
            procs.push((pid, name, ticks));
        }
    }
    Some(report::ProcSnapshot {
        total,
        steal,
        procs,
    })
}

/// Process `pid` and its children (fio's job process), for excluding them.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(report::parse_children(&children));
        }
    }
    pids
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Runs the benchmark.
pub fn run(mut opts: BenchOptions) -> Result<()> {
    let size = units::parse_size(&opts.size)?;
    anyhow::ensure!(opts.seconds > 0, "--seconds must be above 0");
    anyhow::ensure!(size >= 64 << 20, "--size must be at least 64M");
    if opts.workloads.is_empty() {
        opts.workloads = WORKLOADS.to_vec();
    }
    if opts.sides.is_empty() {
        opts.sides = Side::GLFS.iter().chain(&Side::MEMORY).copied().collect();
    }
    if opts.no_sessions {
        opts.sessions.clear();
    }
    anyhow::ensure!(
        opts.sessions.iter().all(|n| (1..=1024).contains(n)) && opts.sessions_qd > 0,
        "--sessions counts must be 1..=1024 and --sessions-qd above 0"
    );
    let started_cpu = machine_cpu();
    let load_start = loadavg();
    let want = |side: Side| opts.sides.contains(&side);

    let out_dir = util::target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    // Before any connection is made (each takes the default as it is made): a bench
    // killed with another set put it back first, then this run's is set.
    let tcp_journal = out_dir.join(TCP_JOURNAL);
    let restored_tcp = tcp::restore_interrupted(&tcp_journal)?;
    let files = tcp::Files::kernel(tcp_journal);
    let congestion = match &opts.tcp_congestion {
        Some(name) => tcp::Congestion::set(name, files)?,
        None => tcp::Congestion::set_default(files)?,
    };
    let need_ours = want(Side::OursGlfs) || want(Side::OursMemory) || !opts.sessions.is_empty();
    let bins = Binaries::get(&opts, need_ours)?;
    let volume = Volume::prepare(opts.volume, &out_dir, bins.fake_lib.as_deref())?;
    let glfs_sides: Vec<Side> = Side::GLFS.into_iter().filter(|s| want(*s)).collect();
    let memory_sides: Vec<Side> = Side::MEMORY.into_iter().filter(|s| want(*s)).collect();
    let digests_wanted = want(Side::OursMemory) && !opts.no_digests;
    let total =
        (opts.workloads.len() * (glfs_sides.len() + memory_sides.len()) * opts.rounds as usize
            + opts.sessions.len() * 2
            + if digests_wanted {
                opts.digest_pairs.max(1) as usize
            } else {
                0
            }) as u64;
    let progress = Progress::new("bench", total);
    progress.line(&format!(
        "[bench] {} volume {}@{HOST}, file {FILE} of {} MiB; {} s per measurement after a {RAMP_SECS} s ramp; {} workloads in {} round(s); {} measurements",
        volume_kind_name(opts.volume),
        volume.name,
        size >> 20,
        opts.seconds,
        opts.workloads.len(),
        opts.rounds,
        total
    ));
    if let Some(done) = restored_tcp {
        progress.line(&format!("[bench] {done}"));
    }
    progress.line(&format!(
        "[bench] TCP congestion control: {}",
        congestion.describe()
    ));
    // The memory store's reads copy its bytes out of memory, tgt null's do not: the
    // floor of that copy on this machine, measured on a buffer the size of the memory LUN
    // (at most 1 GiB) before anything else runs (the report names it on the rows it
    // weighs on).
    let memory_copy = want(Side::OursMemory).then(|| {
        let len = usize::try_from(size.min(1 << 30)).expect("1 GiB fits a usize");
        let copy = memcopy::MemoryCopy::measure(len, 3);
        progress.line(&format!("[bench] memory: {}", copy.describe()));
        copy
    });
    // A bench killed while the ceiling's option was set left it so: put back first, before
    // anything runs on the volume.
    let journal = out_dir.join(OPTION_JOURNAL);
    if volume.kind == VolumeKind::Live {
        if let Some(done) = restore_interrupted(gluster::gluster, &journal)? {
            progress.line(&format!("[bench] {done}"));
        }
    }
    let tmpfs = want(Side::TgtTmpfs).then(|| TmpfsFile::create(size));
    let bench = Bench {
        opts: &opts,
        size,
        tmpfs: match &tmpfs {
            Some(Ok(f)) => Some(&f.path),
            _ => None,
        },
        bins: &bins,
        volume: &volume,
        out_dir: &out_dir,
        progress: &progress,
    };
    if !glfs_sides.is_empty() {
        bench.lay_out_file()?;
    }

    // (a) every workload in rounds: each round measures every side once, one right after
    // the other, in the order of rounds::order (forward, then reversed).
    let sides: Vec<Side> = glfs_sides.iter().chain(&memory_sides).copied().collect();
    let mut notes = Vec::new();
    let mut ceiling = CeilingGraph::new(&volume, journal);
    let fuse = want(Side::TgtFuse).then(|| FuseMount::mount(&volume, &out_dir));
    let mut skipped: Vec<(Side, String)> = Vec::new();
    if let Some(Err(why)) = &fuse {
        progress.line(&format!(
            "[bench] {:<46} skipped: {why}",
            Side::TgtFuse.name()
        ));
        skipped.push((Side::TgtFuse, why.clone()));
    }
    if let Some(Err(why)) = &tmpfs {
        progress.line(&format!(
            "[bench] {:<46} skipped: {why}",
            Side::TgtTmpfs.name()
        ));
        skipped.push((Side::TgtTmpfs, why.clone()));
    }
    // tgt null, ours memory and tgt on tmpfs: one daemon each for the whole run (a fresh
    // memory store would pay its first touch of every page inside the measurements).
    let memory_daemons: Vec<(Side, LongLived)> = memory_sides
        .iter()
        .filter(|side| !skipped.iter().any(|(s, _)| s == *side))
        .map(|&side| (side, bench.long_lived(side)))
        .collect();
    let mut results: Vec<WorkloadResult> = Vec::new();
    let mut finished: Vec<Round> = Vec::new();
    let plan = rounds::schedule(opts.workloads.len(), &sides, opts.rounds);
    for this_round in plan.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let (w, round, _) = this_round[0];
        let spec = &opts.workloads[w];
        let load_now = loadavg();
        let mut runs = Vec::new();
        for &(_, _, side) in this_round {
            let label = format!(
                "{} {} [{}/{}]",
                side.name(),
                spec.label(),
                round + 1,
                opts.rounds
            );
            let m = if let Some((_, why)) = skipped.iter().find(|(s, _)| *s == side) {
                progress.start(&label);
                progress.done();
                Measured::Skipped(why.clone())
            } else if side == Side::Ceiling {
                match ceiling.enter() {
                    Ok(()) => bench.measure(&label, || bench.fio(spec)),
                    Err(why) => bench.not_measured(&label, Measured::Failed(why)),
                }
            } else {
                // Every other side runs on the volume's own graph.
                ceiling.leave();
                match memory_daemons.iter().find(|(s, _)| *s == side) {
                    Some((_, Ok(daemon))) => bench.measure(&label, || {
                        let mut d = daemon.borrow_mut();
                        let r = bench.load(&d, spec, side, 1, false);
                        if !d.is_running() {
                            bail!("the daemon died: {}", tail(&d.log));
                        }
                        r
                    }),
                    Some((_, Err(why))) => bench.not_measured(&label, (**why).clone()),
                    None => {
                        let mount = match &fuse {
                            Some(Ok(m)) if side == Side::TgtFuse => Some(m),
                            _ => None,
                        };
                        bench.measure(&label, || {
                            let d = bench.start_daemon(side, mount)?;
                            let mut d = d.borrow_mut();
                            let r = bench.load(&d, spec, side, 1, false);
                            if !d.is_running() {
                                bail!("the daemon died: {}", tail(&d.log));
                            }
                            r
                        })
                    }
                }
            };
            if let Measured::Skipped(why) = &m {
                if !skipped.iter().any(|(s, _)| *s == side) {
                    skipped.push((side, why.clone()));
                }
            }
            runs.push((side, m));
        }
        finished.push(Round::new(load_now, runs));
        if round + 1 == opts.rounds {
            let result = WorkloadResult::from_rounds(*spec, std::mem::take(&mut finished));
            progress.line(&round_summary(&result, opts.rounds));
            results.push(result);
        }
    }
    ceiling.leave();
    drop(memory_daemons); // kills them
    drop(fuse);
    for (side, why) in &skipped {
        notes.push(format!("{}: skipped: {why}", side.name()));
    }
    if let Some(why) = &ceiling.unusable {
        notes.push(format!(
            "could not set {CLIENT_IO_THREADS} off for the ceiling: {why}"
        ));
    }
    let ceiling_graph = ceiling.describe();

    // (c) what HeaderDigest costs, on one daemon.
    let digests = digests_wanted.then(|| bench.digests());

    // (d) many sessions: aggregate IOPS and peak memory, a fresh daemon per count.
    let mut sessions = Vec::new();
    for &n in &opts.sessions {
        let run = |side: Side| bench.sessions(side, n);
        let tgt = run(Side::TgtNull);
        let ours = run(Side::OursMemory);
        sessions.push(SessionsResult {
            sessions: n,
            qd: opts.sessions_qd,
            tgt,
            ours,
        });
    }
    progress.finish();

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let report = Report {
        date: util::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
            .map(|d| d.trim().to_string())
            .unwrap_or_default(),
        machine: machine(),
        versions: versions(),
        volume: match opts.volume {
            VolumeKind::Fake => {
                format!("the fake libgfapi (release build), volume {}", volume.name)
            }
            VolumeKind::Live => format!(
                "a live one-brick Gluster volume {}@{HOST} on this machine's glusterd",
                volume.name
            ),
        },
        ceiling_graph,
        tcp_congestion: congestion.describe(),
        initiator: report::describe_initiator(opts.split_writes),
        memory_copy,
        seconds: opts.seconds,
        ramp_seconds: RAMP_SECS,
        rounds: opts.rounds,
        file_mib: size >> 20,
        load: Load {
            loadavg_start: load_start,
            loadavg_end: loadavg(),
            busy_pct: started_cpu
                .zip(machine_cpu())
                .and_then(|(a, b)| Load::busy_between(a, b)),
            cores,
        },
        goals: report::Goals::default(),
        workloads: results,
        sessions,
        digests,
        notes,
    };
    write_outputs(&report, &out_dir, opts.docs)?;

    let failed = report.failures();
    for f in &failed {
        eprintln!("[bench] failed: {}", f.lines().next().unwrap_or(""));
    }
    if !failed.is_empty() {
        bail!(
            "{} measurement(s) failed (logs in {})",
            failed.len(),
            out_dir.display()
        );
    }
    let unmet = report.unmet_goals();
    for u in &unmet {
        eprintln!("[bench] goal not met: {u}");
    }
    for u in report.unsettled_goals() {
        eprintln!("[bench] goal unsettled: {u}");
    }
    if opts.require_goals && !unmet.is_empty() {
        bail!("{} goal(s) not met", unmet.len());
    }
    Ok(())
}

/// Prints the tables and writes JSON, Markdown and charts under `out_dir` (and into
/// docs/ with `docs`).
fn write_outputs(report: &Report, out_dir: &Path, docs: bool) -> Result<()> {
    println!(
        "\n{}\n{}\n{}\n{}",
        report.iops_tables(),
        report.rounds_table(),
        report.detail_table(),
        report.sessions_table()
    );
    let json = report.to_json();
    std::fs::write(out_dir.join("results.json"), &json)?;
    let mut chart_errors = Vec::new();
    let mut charts = |dir: &Path| {
        for (name, draw) in [
            (
                "iops.png",
                charts::iops_chart as fn(&Report, &Path) -> Result<()>,
            ),
            ("latency.png", charts::latency_chart),
        ] {
            if let Err(e) = draw(report, &dir.join(name)) {
                chart_errors.push(format!("{name}: {e:#}"));
            }
        }
    };
    charts(out_dir);
    std::fs::write(out_dir.join("report.md"), report.markdown("."))?;
    println!(
        "results: {}/{{results.json,report.md,iops.png,latency.png}}",
        out_dir.display()
    );
    if docs {
        let dir = util::project_root().join("docs");
        let charts_dir = dir.join("bench");
        std::fs::create_dir_all(&charts_dir)?;
        charts(&charts_dir);
        std::fs::write(charts_dir.join("results.json"), &json)?;
        std::fs::write(dir.join("benchmarks.md"), report.markdown("bench"))?;
        println!(
            "docs: {} and {}",
            dir.join("benchmarks.md").display(),
            charts_dir.display()
        );
    }
    for e in chart_errors {
        eprintln!("[bench] chart not drawn: {e}");
    }
    Ok(())
}

fn first_line(cmd: &mut Command) -> String {
    util::output(cmd)
        .ok()
        .and_then(|o| o.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

/// CPU model, cores and memory.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| report::parse_status_kib(&m, "MemTotal"))
        .map_or("?".into(), |k| format!("{:.0} GiB", k as f64 / 1048576.0));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{model}, {cores} cores, {mem} RAM, Linux {}",
        first_line(Command::new("uname").arg("-r"))
    )
}

/// Our commit and the versions of everything measured.
fn versions() -> Vec<(String, String)> {
    let mut v = vec![
        (
            "glfs-iscsi".to_string(),
            first_line(Command::new("git").args(["rev-parse", "--short", "HEAD"])),
        ),
        (
            "rustc".to_string(),
            first_line(Command::new("rustc").arg("-V")),
        ),
    ];
    for pkg in ["fio", "tgt", "glusterfs-server", "libiscsi7"] {
        let out = util::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", pkg]));
        v.push((
            pkg.to_string(),
            out.map(|o| o.trim().to_string())
                .unwrap_or_else(|_| "not installed".into()),
        ));
    }
    v
}

/// The release binaries and the fake library the run uses.
struct Binaries {
    load: PathBuf,
    /// Our target, or why it could not be built.
    ours: Result<PathBuf, String>,
    /// The release fake (fake volume only).
    fake_lib: Option<PathBuf>,
}

impl Binaries {
    fn get(opts: &BenchOptions, need_ours: bool) -> Result<Binaries> {
        let release = util::target_dir().join("release");
        if !opts.no_build {
            eprintln!("[bench] building the release load generator");
            util::run(util::cargo().args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "iscsi-load",
                "--bin",
                "iscsi-load",
            ]))?;
        }
        let load = release.join("iscsi-load");
        anyhow::ensure!(load.exists(), "{} is missing", load.display());
        let ours = if !need_ours {
            Err("not asked for".to_string())
        } else {
            let built = if opts.no_build {
                Ok(())
            } else {
                eprintln!("[bench] building the release target");
                util::run(util::cargo().args([
                    "build",
                    "--release",
                    "--quiet",
                    "-p",
                    "daemon",
                    "--bin",
                    "glfs-iscsi",
                ]))
                .map_err(|e| format!("{e:#}"))
            };
            let path = release.join("glfs-iscsi");
            built.and_then(|()| {
                if path.exists() {
                    Ok(path)
                } else {
                    Err(format!("{} is missing", path.display()))
                }
            })
        };
        if let Err(why) = &ours {
            if need_ours {
                eprintln!("[bench] our target is not available: {why}");
            }
        }
        let fake_lib = match opts.volume {
            VolumeKind::Fake if opts.no_build => {
                let so = fake::out_dir().join("release").join("libgfapi.so.0");
                anyhow::ensure!(so.exists(), "{} is missing", so.display());
                Some(so)
            }
            VolumeKind::Fake => {
                eprintln!("[bench] building the release fake libgfapi.so.0");
                Some(fake::build_release()?)
            }
            VolumeKind::Live => None,
        };
        Ok(Binaries {
            load,
            ours,
            fake_lib,
        })
    }
}

/// The volume the glfs measurements run on, and how gfapi clients reach it.
struct Volume {
    kind: VolumeKind,
    name: String,
    /// Environment every gfapi client gets (LD_LIBRARY_PATH and GFAPI_FAKE_ROOT
    /// for the fake; nothing for a live volume).
    env: Vec<(String, String)>,
    /// The library our target loads (`--gfapi-library`), None for the system's.
    library: Option<PathBuf>,
}

impl Volume {
    fn prepare(kind: VolumeKind, out_dir: &Path, fake_lib: Option<&Path>) -> Result<Volume> {
        match kind {
            VolumeKind::Fake => {
                let lib = fake_lib.context("the fake volume needs the fake library")?;
                let root = out_dir.join("fake-root");
                let _ = std::fs::remove_dir_all(&root);
                std::fs::create_dir_all(root.join(VOLUME_FAKE))?;
                let lib_dir = lib.parent().context("library has no directory")?;
                Ok(Volume {
                    kind,
                    name: VOLUME_FAKE.into(),
                    env: vec![
                        ("LD_LIBRARY_PATH".into(), lib_dir.display().to_string()),
                        ("GFAPI_FAKE_ROOT".into(), root.display().to_string()),
                    ],
                    library: Some(lib.to_path_buf()),
                })
            }
            VolumeKind::Live => {
                let live = gluster::native_volume(VOLUME_LIVE)?;
                anyhow::ensure!(
                    live.host == HOST,
                    "live volume on {}, not {HOST}",
                    live.host
                );
                Ok(Volume {
                    kind,
                    name: live.name,
                    env: Vec::new(),
                    library: None,
                })
            }
        }
    }

    /// `volume@host:file` as tgt's bs_glfs and our target take it.
    fn backing_store(&self) -> String {
        format!("{}@{HOST}:{FILE}", self.name)
    }
}

/// Runs the gluster CLI with these arguments and returns its output.
type GlusterCli = fn(&[&str]) -> Result<String>;

/// A volume option set for a while: put back (or reset when it was not set) on drop.
/// While it is set, a journal file (when given) says what to put back, so a bench killed
/// before its drop (Ctrl-C, a lost terminal) leaves the next bench to do it
/// ([`restore_interrupted`]); the file goes once the option is back.
struct VolumeOption {
    volume: String,
    option: &'static str,
    old: Option<String>,
    cli: GlusterCli,
    journal: Option<PathBuf>,
}

/// What a [`VolumeOption`]'s journal holds: the option to put back and its value before
/// (none: reset it).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct OptionJournal {
    volume: String,
    option: String,
    old: Option<String>,
}

impl OptionJournal {
    /// Puts the option back through `cli`.
    fn put_back(&self, cli: GlusterCli) -> Result<()> {
        match &self.old {
            Some(v) => cli(&["volume", "set", &self.volume, &self.option, v]),
            None => cli(&["volume", "reset", &self.volume, &self.option]),
        }
        .map(drop)
    }
}

/// A setting's journal a bench killed while the setting was changed left at `journal`
/// (`what` names the kind in the error); `None` when there is none.
fn read_journal<J: serde::de::DeserializeOwned>(journal: &Path, what: &str) -> Result<Option<J>> {
    let text = match std::fs::read_to_string(journal) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("{}: {e}", journal.display()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{} is not a bench's {what} journal", journal.display()))
}

/// Puts back a volume option that a bench killed while it was set left in `journal`, and
/// says what it did; `None` when there was nothing to do. A journal that cannot be read
/// or an option that cannot be put back is an error (the journal stays, for the next try).
fn restore_interrupted(cli: GlusterCli, journal: &Path) -> Result<Option<String>> {
    let Some(j) = read_journal::<OptionJournal>(journal, "option")? else {
        return Ok(None);
    };
    j.put_back(cli).with_context(|| {
        format!(
            "a bench interrupted earlier left {} of {} set; putting it back failed",
            j.option, j.volume
        )
    })?;
    std::fs::remove_file(journal)?;
    Ok(Some(format!(
        "a bench interrupted earlier left {} of {} set: put back to {}",
        j.option,
        j.volume,
        j.old.as_deref().unwrap_or("its default (reset)")
    )))
}

impl VolumeOption {
    /// Sets `option` to `value` through `cli` and reads it back: a value the volume does
    /// not report afterwards is an error (and what was there is put back), so the bench
    /// never claims a graph it did not get.
    fn set_with(
        cli: GlusterCli,
        volume: &str,
        option: &'static str,
        value: &str,
        journal: Option<&Path>,
    ) -> Result<VolumeOption> {
        let get = || {
            cli(&["volume", "get", volume, option])
                .ok()
                .and_then(|out| report::parse_volume_get(&out, option))
        };
        let old = get();
        if let Some(path) = journal {
            let j = OptionJournal {
                volume: volume.to_string(),
                option: option.to_string(),
                old: old.clone(),
            };
            std::fs::write(path, serde_json::to_string(&j)?)
                .with_context(|| format!("{}", path.display()))?;
        }
        if let Err(e) = cli(&["volume", "set", volume, option, value]) {
            if let Some(path) = journal {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        let set = VolumeOption {
            volume: volume.to_string(),
            option,
            old,
            cli,
            journal: journal.map(Path::to_path_buf),
        };
        match get() {
            Some(now) if now == value => Ok(set),
            now => bail!(
                "{option} of {volume} reads {} after setting it to {value}",
                now.as_deref().unwrap_or("nothing")
            ),
        }
    }
}

impl Drop for VolumeOption {
    fn drop(&mut self) {
        let j = OptionJournal {
            volume: self.volume.clone(),
            option: self.option.to_string(),
            old: self.old.clone(),
        };
        match j.put_back(self.cli) {
            Ok(()) => {
                if let Some(path) = &self.journal {
                    let _ = std::fs::remove_file(path);
                }
            }
            Err(e) => eprintln!(
                "[bench] could not put {} of {} back to {:?}: {e:#}{}",
                self.option,
                self.volume,
                self.old,
                self.journal.as_ref().map_or(String::new(), |p| format!(
                    " (the next bench tries again from {})",
                    p.display()
                ))
            ),
        }
    }
}

/// The fair ceiling's client graph: on a live volume its `performance.client-io-threads`
/// set off for the ceiling's runs (the graph our store builds for itself) and put back
/// before any other side runs; consecutive ceiling runs share one setting.
struct CeilingGraph<'a> {
    volume: &'a Volume,
    cli: GlusterCli,
    /// Where the option set is noted while it is ([`VolumeOption`]).
    journal: Option<PathBuf>,
    /// Set now.
    option: Option<VolumeOption>,
    /// What the option was before the first time it was set (None: never set).
    first_old: Option<Option<String>>,
    /// Why the first attempt to set it failed: the ceiling then runs on the volume's
    /// default graph all along (and says so).
    unusable: Option<String>,
}

impl<'a> CeilingGraph<'a> {
    fn new(volume: &'a Volume, journal: PathBuf) -> CeilingGraph<'a> {
        CeilingGraph {
            journal: Some(journal),
            ..Self::with_cli(volume, gluster::gluster)
        }
    }

    fn with_cli(volume: &'a Volume, cli: GlusterCli) -> CeilingGraph<'a> {
        CeilingGraph {
            volume,
            cli,
            journal: None,
            option: None,
            first_old: None,
            unusable: None,
        }
    }

    /// Before a ceiling run. A failure after the option was once set fails that run
    /// (rather than measuring it on another graph than the other rounds).
    fn enter(&mut self) -> Result<(), String> {
        if self.volume.kind != VolumeKind::Live || self.option.is_some() || self.unusable.is_some()
        {
            return Ok(());
        }
        match VolumeOption::set_with(
            self.cli,
            &self.volume.name,
            CLIENT_IO_THREADS,
            "off",
            self.journal.as_deref(),
        ) {
            Ok(o) => {
                if self.first_old.is_none() {
                    self.first_old = Some(o.old.clone());
                }
                self.option = Some(o);
                Ok(())
            }
            Err(e) if self.first_old.is_none() => {
                self.unusable = Some(format!("{e:#}"));
                Ok(())
            }
            Err(e) => Err(format!(
                "could not set {CLIENT_IO_THREADS} off for this run of the ceiling: {e:#}"
            )),
        }
    }

    /// Before any other side's run: the option put back.
    fn leave(&mut self) {
        self.option = None;
    }

    /// The graph the ceiling ran on, for the report.
    fn describe(&self) -> String {
        match (self.volume.kind, &self.first_old) {
            (VolumeKind::Fake, _) => {
                "fio's gfapi_async engine on the fake libgfapi (no client graph)".into()
            }
            (VolumeKind::Live, Some(old)) => format!(
                "fio's gfapi_async engine with the volume's {CLIENT_IO_THREADS} set off for its runs (was {}; put back before every other side's run), the graph our glfs store builds (write-behind in it on both sides, the file opened O_RDWR without O_DIRECT or O_SYNC by both; our store answers a FUA write, and every write while WCE=0, only after glfs_fdatasync)",
                old.as_deref().unwrap_or("unset")
            ),
            (VolumeKind::Live, None) => {
                "fio's gfapi_async engine on the volume's default client graph".into()
            }
        }
    }
}

/// A daemon kept for the whole run, or what its measurements give when it did not start.
type LongLived = Result<std::cell::RefCell<Daemon>, Box<Measured>>;

/// One line after a workload's rounds: each ratio's median, spread and verdict.
fn round_summary(w: &WorkloadResult, count: u32) -> String {
    let parts: Vec<String> = w
        .ratios
        .iter()
        .filter_map(|r| {
            let m = r.median?;
            let spread = r.spread().map_or(String::new(), |(lo, hi)| {
                format!(" ({}..{})", report::floor2(lo), report::floor2(hi))
            });
            let verdict = match (r.verdict, r.median_met) {
                (Some(rounds::Verdict::Unsettled), Some(true)) => {
                    " unsettled, median meets the goal"
                }
                (Some(rounds::Verdict::Unsettled), _) => " unsettled, median below the goal",
                (Some(rounds::Verdict::Met), _) => " met",
                (Some(rounds::Verdict::NotMet), _) => " NOT met",
                (None, _) => "",
            };
            Some(format!(
                "{} {}x{spread}{verdict}",
                r.comparison.name(),
                report::floor2(m)
            ))
        })
        .collect();
    format!(
        "[bench] {} over {count} round(s): {}",
        w.label,
        if parts.is_empty() {
            "no ratio".to_string()
        } else {
            parts.join("; ")
        }
    )
}

/// The file tgt's rdwr store serves from tmpfs (the "tgt rdwr on tmpfs" side): one name,
/// so a bench killed before it removed its file has it replaced by the next.
const TMPFS_FILE: &str = "/dev/shm/glfs-iscsi-bench.img";

/// Whether `/proc/mounts` (`mounts`) has a tmpfs mounted on `dir`.
fn tmpfs_mounted_on(mounts: &str, dir: &str) -> bool {
    mounts.lines().any(|line| {
        let mut f = line.split_whitespace();
        let (_, at, fstype) = (f.next(), f.next(), f.next());
        at == Some(dir) && fstype == Some("tmpfs")
    })
}

/// A sparse file of the memory LUN's size in tmpfs, removed on drop: like the memory
/// store it starts unwritten (its holes read as the kernel's zero page) and holds what the
/// workloads write.
struct TmpfsFile {
    path: PathBuf,
}

impl TmpfsFile {
    /// Creates it, or says why not (the reason the side is skipped by).
    fn create(size: u64) -> Result<TmpfsFile, String> {
        let path = PathBuf::from(TMPFS_FILE);
        let dir = path
            .parent()
            .expect("an absolute path")
            .display()
            .to_string();
        let mounts = std::fs::read_to_string("/proc/mounts")
            .map_err(|e| format!("cannot read /proc/mounts: {e}"))?;
        if !tmpfs_mounted_on(&mounts, &dir) {
            return Err(format!("no tmpfs is mounted on {dir}"));
        }
        let _ = std::fs::remove_file(&path);
        let file = TmpfsFile { path };
        std::fs::File::create(&file.path)
            .and_then(|f| f.set_len(size))
            .map_err(|e| format!("{}: {e}", file.path.display()))?;
        Ok(file)
    }
}

impl Drop for TmpfsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A FUSE mount of the live volume, unmounted on drop.
struct FuseMount {
    dir: PathBuf,
}

impl FuseMount {
    /// Mounts `volume`, or says why not (the reason the side is skipped by).
    fn mount(volume: &Volume, out_dir: &Path) -> Result<FuseMount, String> {
        if volume.kind == VolumeKind::Fake {
            return Err("the fake volume has no FUSE client (live volumes only)".into());
        }
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse on this machine".into());
        }
        if util::which("mount.glusterfs").is_none()
            && !Path::new("/usr/sbin/mount.glusterfs").exists()
            && !Path::new("/sbin/mount.glusterfs").exists()
        {
            return Err(
                "mount.glusterfs is not installed (Debian package glusterfs-client)".into(),
            );
        }
        let dir = out_dir.join("fuse");
        let _ = Command::new("umount").arg(&dir).output();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "glusterfs"])
            .arg(format!("{HOST}:/{}", volume.name))
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        let mount = FuseMount { dir };
        if !out.status.success() {
            return Err(format!(
                "mount -t glusterfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let file = mount.dir.join(FILE);
        match std::fs::metadata(&file) {
            Ok(m) if m.len() > 0 => Ok(mount),
            Ok(_) => Err(format!("{} is empty on the FUSE mount", file.display())),
            Err(e) => Err(format!(
                "FUSE mount does not work here: {}: {e}",
                file.display()
            )),
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
    }
}

struct Bench<'a> {
    opts: &'a BenchOptions,
    size: u64,
    /// The tgt rdwr on tmpfs side's file, when that side runs and it could be made.
    tmpfs: Option<&'a Path>,
    bins: &'a Binaries,
    volume: &'a Volume,
    out_dir: &'a Path,
    progress: &'a Progress,
}

/// Time a measurement may take beyond its run time: gfapi's init and teardown
/// (glfs_fini takes up to ~11 s), daemon start, login of many sessions.
const SLACK: Duration = Duration::from_secs(90);
const RAMP_SECS: u32 = 1;

/// What a sampler saw of the target during the measured window.
#[derive(Debug, Default, Clone)]
struct TargetSample {
    /// CPU clock ticks used inside the window, and the window's length.
    cpu: Option<(u64, f64)>,
    /// The target's VmHWM at the end, KiB.
    peak_rss_kib: Option<u64>,
    /// CPU the other processes of the machine took inside the window (neither the
    /// target nor the load generator), % of one core.
    others_cpu_pct: Option<f64>,
    /// CPU clock ticks the load generator's processes (it and its children: fio's job
    /// process with gfapi's threads) used inside the window, and the window's length.
    load_cpu: Option<(u64, f64)>,
    /// Where the other processes' CPU went, busiest first.
    others_top: Vec<report::OtherCpu>,
}

/// What the window sampler reads at one instant: the target's and the load
/// generator's CPU ticks and the machine's /proc/stat (busy, total) ticks.
#[derive(Debug, Clone, Copy)]
struct WindowSample {
    at: Instant,
    target: u64,
    load: Option<u64>,
    machine: Option<(u64, u64)>,
}

impl Bench<'_> {
    fn limit(&self) -> Duration {
        Duration::from_secs(u64::from(self.opts.seconds + RAMP_SECS)) + SLACK
    }

    /// Runs one measurement and prints its line.
    fn measure(&self, label: &str, f: impl FnOnce() -> Result<Numbers>) -> Measured {
        self.progress.start(label);
        let started = Instant::now();
        let n = match f() {
            Ok(n) => n,
            Err(e) => {
                let why = format!("{e:#}");
                if let Some(skip) = e.downcast_ref::<util::Skipped>() {
                    self.progress
                        .line(&format!("[bench] {label:<46} skipped: {skip}"));
                    self.progress.done();
                    return Measured::Skipped(skip.to_string());
                }
                self.progress.line(&format!(
                    "[bench] {label:<46} FAILED: {}",
                    why.lines().next().unwrap_or("")
                ));
                self.progress.done();
                return Measured::Failed(why);
            }
        };
        self.progress.line(&format!(
            "[bench] {label:<46} {:>8} IOPS {:>7.1} MiB/s  p50 {:>6.0} p99 {:>6.0} p99.9 {:>6.0} us  target {:>4} {}  others {}{}{}  ({:.0} s)",
            report::iops(n.iops),
            n.mib_per_s,
            n.lat_us_p50,
            n.lat_us_p99,
            n.lat_us_p999,
            pct(n.target_cpu_pct),
            n.target_cpu_us_per_cmd.map_or(String::new(), |us| format!("{us:.1} us/cmd")),
            pct(n.others_cpu_pct),
            match report::others_text(&n.others_top) {
                t if t.is_empty() => String::new(),
                t => format!(" ({t})"),
            },
            if n.errors > 0 {
                format!("  {} ERRORS", n.errors)
            } else {
                String::new()
            },
            started.elapsed().as_secs_f64()
        ));
        self.progress.done();
        Measured::Ok(n)
    }

    /// A measurement that could not run (its daemon did not start, the ceiling's graph
    /// could not be set): counted, and its line printed.
    fn not_measured(&self, label: &str, why: Measured) -> Measured {
        self.progress.start(label);
        let line = match &why {
            Measured::Failed(w) => format!("FAILED: {}", w.lines().next().unwrap_or("")),
            Measured::Skipped(w) => format!("skipped: {w}"),
            _ => "not run".into(),
        };
        self.progress.line(&format!("[bench] {label:<46} {line}"));
        self.progress.done();
        why
    }

    /// A daemon of `side` kept for the whole run, or what its measurements give when it
    /// does not start.
    fn long_lived(&self, side: Side) -> LongLived {
        self.start_daemon(side, None).map_err(|e| {
            if let Some(skip) = e.downcast_ref::<util::Skipped>() {
                return Box::new(Measured::Skipped(skip.to_string()));
            }
            let why = format!("{e:#}");
            self.progress.line(&format!(
                "[bench] {:<46} FAILED to start: {}",
                side.name(),
                why.lines().next().unwrap_or("")
            ));
            Box::new(Measured::Failed(why))
        })
    }

    /// Writes the benchmark file through gfapi (fio's sync engine), so every side
    /// reads allocated, written blocks of the same file.
    fn lay_out_file(&self) -> Result<()> {
        self.progress.line(&format!(
            "[bench] laying out {FILE} ({} MiB) with fio",
            self.size >> 20
        ));
        let log = self.out_dir.join("fio-layout.log");
        let mut cmd = tied(&need("fio")?);
        cmd.envs(self.volume.env.iter().map(|(k, v)| (k, v))).args([
            "--name=layout",
            "--ioengine=gfapi",
            &format!("--volume={}", self.volume.name),
            &format!("--brick={HOST}"),
            &format!("--filename={FILE}"),
            &format!("--size={}", self.size),
            "--rw=write",
            "--bs=1M",
            "--end_fsync=1",
        ]);
        let status = run_bounded(&mut cmd, &log, Duration::from_secs(300), None, None)?.0;
        if !status.success() {
            bail!("fio layout failed ({status}): {}", tail(&log));
        }
        Ok(())
    }

    /// fio's gfapi_async engine on the file.
    fn fio(&self, spec: &Spec) -> Result<Numbers> {
        let log = self.out_dir.join(format!("fio-{}.json", spec.id));
        let mut cmd = tied(&need("fio")?);
        cmd.envs(self.volume.env.iter().map(|(k, v)| (k, v))).args([
            "--name=ceiling",
            "--ioengine=gfapi_async",
            &format!("--volume={}", self.volume.name),
            &format!("--brick={HOST}"),
            &format!("--filename={FILE}"),
            &format!("--size={}", self.size),
            &format!("--rw={}", spec.rw),
            &format!("--bs={}", spec.bs),
            &format!("--iodepth={}", spec.qd),
            &format!("--runtime={}", self.opts.seconds),
            &format!("--ramp_time={RAMP_SECS}"),
            "--time_based",
            "--randrepeat=0",
            "--norandommap",
            "--lat_percentiles=1",
            &format!("--percentile_list={PERCENTILE_LIST}"),
            "--unified_rw_reporting=1",
            "--output-format=json",
        ]);
        if let Some(r) = spec.read_pct {
            cmd.arg(format!("--rwmixread={r}"));
        }
        // fio's CPU is sampled from /proc over the measured window: its whole job
        // process, gfapi's event and worker threads included. fio's own usr_cpu/sys_cpu
        // count the job thread alone (getrusage(RUSAGE_THREAD)), a fraction of what a
        // gfapi client spends. The window starts later than iscsi-load's: gfapi's init
        // comes before fio's ramp.
        let window = (
            Duration::from_secs(u64::from(RAMP_SECS)) + Duration::from_millis(800),
            Duration::from_secs(u64::from(RAMP_SECS + self.opts.seconds)),
        );
        let (status, sample) = run_bounded(&mut cmd, &log, self.limit(), None, Some(window))?;
        let text = std::fs::read_to_string(&log)?;
        if !status.success() {
            bail!("fio failed ({status}): {}", tail(&log));
        }
        let mut n =
            parse_fio(&text).with_context(|| format!("reading fio's output {}", log.display()))?;
        if let Some((ticks, secs)) = sample.load_cpu {
            n.load_cpu_pct = Some(ticks as f64 / clock_ticks_per_second() / secs * 100.0);
        }
        n.others_cpu_pct = sample.others_cpu_pct;
        n.others_top = sample.others_top;
        Ok(n)
    }

    /// `sessions` sessions of 4k random reads on a fresh daemon of `side`.
    fn sessions(&self, side: Side, sessions: u32) -> Measured {
        let spec = Spec {
            id: "sessions",
            rw: "randread",
            bs: 4096,
            qd: self.opts.sessions_qd,
            read_pct: None,
        };
        self.measure(&format!("{} {sessions} sessions", side.name()), || {
            let d = self.start_daemon(side, None)?;
            let mut d = d.borrow_mut();
            let r = self.load(&d, &spec, side, sessions, false);
            if !d.is_running() {
                bail!("the daemon died: {}", tail(&d.log));
            }
            r
        })
    }

    /// Ours memory, 4k random reads QD32, without and with HeaderDigest: `--digest-pairs`
    /// pairs, each two fresh daemons with one session each, run side by side at the same
    /// time (which side's daemon starts first alternating from pair to pair). Run one after
    /// the other, the two sides of a pair met different load from the other processes on
    /// a shared machine, which moved CPU per command by more than the digests do (pairs
    /// 0.33..1.48 in one run); side by side, every burst hits both alike. With two cores
    /// or more, each side's daemon and session are bound to a core of their own ([`pin`]),
    /// the cores swapped from pair to pair. The verdict is the median pair.
    fn digests(&self) -> DigestResult {
        let spec = WORKLOADS[0];
        let pairs = self.opts.digest_pairs.max(1);
        let cores = pin::two_cores();
        let mut runs: Vec<(Measured, Measured)> = Vec::new();
        for pair in 0..pairs {
            let label = format!(
                "ours memory {} digests off | on, side by side ({}/{pairs})",
                spec.label(),
                pair + 1
            );
            self.progress.start(&label);
            let started = Instant::now();
            let (without, with) = self.digest_pair(&spec, pair % 2 == 1, cores);
            let side = |m: &Measured| match m {
                Measured::Ok(n) => format!(
                    "{:>8} IOPS {} us/cmd",
                    report::iops(n.iops),
                    report::cpu_us_both(n).map_or("-".into(), |us| format!("{us:.2}"))
                ),
                Measured::Failed(why) => format!("FAILED: {}", why.lines().next().unwrap_or("")),
                other => format!("{other:?}"),
            };
            self.progress.line(&format!(
                "[bench] {label:<46} off {} | on {} (target + initiator)  ({:.0} s)",
                side(&without),
                side(&with),
                started.elapsed().as_secs_f64()
            ));
            self.progress.done();
            let failed = without.numbers().is_none() || with.numbers().is_none();
            runs.push((without, with));
            if failed {
                break;
            }
        }
        let pairs: Vec<DigestPair> = runs.iter().map(|(a, b)| DigestPair::of(a, b)).collect();
        // The pair shown in the table: the one whose CPU ratio is the median (a failed
        // pair, if any, so that the failure shows).
        let shown = runs
            .iter()
            .position(|(a, b)| a.numbers().is_none() || b.numbers().is_none())
            .unwrap_or_else(|| {
                let mut order: Vec<usize> = (0..pairs.len()).collect();
                order.sort_by(|&i, &j| {
                    let key = |k: usize| pairs[k].cpu_ratio.or(pairs[k].iops_ratio);
                    key(i).unwrap_or(0.0).total_cmp(&key(j).unwrap_or(0.0))
                });
                order[order.len() / 2]
            });
        let (without, with) = runs.swap_remove(shown);
        DigestResult {
            without,
            with,
            pairs,
            cores,
        }
    }

    /// One digest pair: a daemon and a session without digests and another with
    /// HeaderDigest, started together (the barrier) and measured over the same window.
    /// With two cores or more, each side's daemon and session run on one core of their
    /// own ([`pin`]), the digest side on the second core when it starts first.
    fn digest_pair(
        &self,
        spec: &Spec,
        digest_side_first: bool,
        cores: Option<[usize; 2]>,
    ) -> (Measured, Measured) {
        let barrier = std::sync::Barrier::new(2);
        let side = |digest: bool| -> Measured {
            let core = cores.map(|c| c[usize::from(digest == digest_side_first)]);
            pin::on_core(core, || {
                self.digest_side(spec, digest, digest_side_first, &barrier)
            })
        };
        std::thread::scope(|s| {
            let with = s.spawn(|| side(true));
            let without = side(false);
            let with = with
                .join()
                .unwrap_or_else(|_| Measured::Failed("the measuring thread panicked".into()));
            (without, with)
        })
    }

    /// One side of a digest pair, on the calling thread's cores.
    fn digest_side(
        &self,
        spec: &Spec,
        digest: bool,
        digest_side_first: bool,
        barrier: &std::sync::Barrier,
    ) -> Measured {
        let tag = format!("oursmemory-digest{}", u8::from(digest));
        let daemon = if digest == digest_side_first {
            let d = self.start_daemon_tagged(Side::OursMemory, None, &tag);
            barrier.wait();
            d
        } else {
            barrier.wait();
            self.start_daemon_tagged(Side::OursMemory, None, &tag)
        };
        // Both sessions start once both daemons are up.
        barrier.wait();
        let run = || -> Result<Numbers> {
            let mut d = daemon?.into_inner();
            let r = self.load(&d, spec, Side::OursMemory, 1, digest);
            if !d.is_running() {
                bail!("the daemon died: {}", tail(&d.log));
            }
            r
        };
        match run() {
            Ok(n) => Measured::Ok(n),
            Err(e) => Measured::Failed(format!("{e:#}")),
        }
    }

    fn start_daemon(
        &self,
        side: Side,
        fuse: Option<&FuseMount>,
    ) -> Result<std::cell::RefCell<Daemon>> {
        self.start_daemon_tagged(side, fuse, &format!("{side:?}").to_lowercase())
    }

    /// [`Bench::start_daemon`] with its log named after `tag`.
    fn start_daemon_tagged(
        &self,
        side: Side,
        fuse: Option<&FuseMount>,
        tag: &str,
    ) -> Result<std::cell::RefCell<Daemon>> {
        let log = self.out_dir.join(format!("{tag}.log"));
        let d = match side {
            Side::Ceiling => bail!("fio has no daemon"),
            Side::TgtGlfs => Daemon::tgtd(
                &log,
                &self.volume.env,
                "glfs",
                &self.volume.backing_store(),
                &[],
            )?,
            Side::TgtFuse => {
                let mount = fuse.context("no FUSE mount")?;
                let file = mount.dir.join(FILE);
                Daemon::tgtd(
                    &log,
                    &[],
                    "rdwr",
                    &file.display().to_string(),
                    &["--bsoflags", "direct"],
                )?
            }
            Side::TgtNull => Daemon::tgtd(&log, &[], "null", "/dev/null", &[])?,
            Side::TgtTmpfs => {
                let file = self.tmpfs.context("no file in tmpfs")?;
                Daemon::tgtd(&log, &[], "rdwr", &file.display().to_string(), &[])?
            }
            Side::OursGlfs | Side::OursMemory => {
                let binary = self.bins.ours.clone().map_err(anyhow::Error::msg)?;
                let mut args: Vec<String> = Vec::new();
                if side == Side::OursGlfs {
                    args.extend(["--bstype".into(), "glfs".into()]);
                    args.extend(["--backing-store".into(), self.volume.backing_store()]);
                    if let Some(lib) = &self.volume.library {
                        args.extend(["--gfapi-library".into(), lib.display().to_string()]);
                    }
                } else {
                    args.extend(["--bstype".into(), "memory".into()]);
                    args.extend(["--size".into(), self.size.to_string()]);
                }
                let env: Vec<(String, String)> = self
                    .volume
                    .env
                    .iter()
                    .filter(|(k, _)| k != "LD_LIBRARY_PATH")
                    .cloned()
                    .collect();
                Daemon::ours(&binary, &log, &env, &args)?
            }
        };
        Ok(std::cell::RefCell::new(d))
    }

    /// iscsi-load on the daemon's LUN, with the daemon's CPU over the measured
    /// window and its peak memory.
    fn load(
        &self,
        daemon: &Daemon,
        spec: &Spec,
        side: Side,
        sessions: u32,
        header_digest: bool,
    ) -> Result<Numbers> {
        let log = self.out_dir.join(
            format!(
                "load-{side:?}-{}-s{sessions}-d{}.log",
                spec.id,
                u8::from(header_digest)
            )
            .to_lowercase(),
        );
        let mut cmd = tied(&self.bins.load);
        cmd.args(["--url", &daemon.url, "--rw", spec.rw])
            .arg(format!("--bs={}", spec.bs))
            .arg(format!("--qd={}", spec.qd))
            .arg(format!("--seconds={}", self.opts.seconds))
            .arg(format!("--ramp={RAMP_SECS}"))
            .arg(format!("--initiator={INITIATOR}"))
            .arg(format!("--sessions={sessions}"))
            // The same range on every store: the file's (tgt's null LUN is 1 TiB).
            .arg("--lba-start=0")
            .arg(format!("--lba-count={}", self.size / 512));
        if let Some(r) = spec.read_pct {
            cmd.arg(format!("--rwmixread={r}"));
        }
        if header_digest {
            cmd.arg("--header-digest");
        }
        if self.opts.split_writes {
            cmd.arg("--split-writes");
        }
        // The window iscsi-load measures, give or take its login: sample inside it.
        let window = (
            Duration::from_secs(u64::from(RAMP_SECS)) + Duration::from_millis(300),
            Duration::from_secs(u64::from(RAMP_SECS + self.opts.seconds)),
        );
        let store_before = daemon.store_time();
        let (status, sample) = run_bounded(
            &mut cmd,
            &log,
            self.limit(),
            Some(daemon.pid()),
            Some(window),
        )?;
        let store_after = daemon.store_time();
        let text = std::fs::read_to_string(&log)?;
        let line = text.lines().rev().find(|l| l.trim_start().starts_with('{'));
        let Some(line) = line else {
            bail!("iscsi-load printed no result ({status}): {}", tail(&log));
        };
        let mut n = parse_load_line(line).context("iscsi-load's JSON line")?;
        if let Some((ticks, secs)) = sample.cpu {
            let clk = clock_ticks_per_second();
            n.target_cpu_pct = Some(ticks as f64 / clk / secs * 100.0);
            n.target_cpu_us_per_cmd = report::cpu_us_per_command(ticks, clk, secs, n.iops);
        }
        n.peak_rss_kib = sample.peak_rss_kib;
        n.others_cpu_pct = sample.others_cpu_pct;
        n.others_top = sample.others_top.clone();
        if let (Some(a), Some(b)) = (store_before, store_after) {
            n.store_us_per_cmd = report::store_us_per_cmd(a, b);
        }
        if !status.success() && n.errors == 0 {
            bail!("iscsi-load failed ({status}): {}", tail(&log));
        }
        Ok(n)
    }
}

/// The numbers of one iscsi-load JSON line.
fn parse_load_line(line: &str) -> Result<Numbers> {
    #[derive(serde::Deserialize)]
    struct Line {
        iops: f64,
        mib_per_s: f64,
        lat_us_p50: f64,
        lat_us_p99: f64,
        #[serde(default)]
        lat_us_p999: f64,
        errors: u64,
        cpu_pct: Option<f64>,
        #[serde(default)]
        lat_percentiles_us: Vec<[f64; 2]>,
    }
    let l: Line = serde_json::from_str(line)?;
    Ok(Numbers {
        iops: l.iops,
        mib_per_s: l.mib_per_s,
        lat_us_p50: l.lat_us_p50,
        lat_us_p99: l.lat_us_p99,
        lat_us_p999: l.lat_us_p999,
        errors: l.errors,
        load_cpu_pct: l.cpu_pct,
        percentiles: l.lat_percentiles_us,
        ..Numbers::default()
    })
}

/// Reads IOPS, bandwidth and total-latency percentiles of the only job from fio's
/// JSON: the `mixed` direction with `--unified_rw_reporting=1`, else read and write
/// (percentiles weighted by IOPS when both ran).
fn parse_fio(text: &str) -> Result<Numbers> {
    let start = text.find('{').context("no JSON in fio's output")?;
    let v: serde_json::Value = serde_json::Deserializer::from_str(&text[start..])
        .into_iter()
        .next()
        .context("no JSON in fio's output")??;
    let job = v
        .get("jobs")
        .and_then(|j| j.get(0))
        .context("no jobs[0] in fio's output")?;
    let num = |v: &serde_json::Value, key: &str| -> Result<f64> {
        v.get(key)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("no number {key}"))
    };
    let mut n = Numbers {
        errors: num(job, "error").unwrap_or(0.0) as u64,
        load_cpu_pct: Some(num(job, "usr_cpu").unwrap_or(0.0) + num(job, "sys_cpu").unwrap_or(0.0)),
        ..Numbers::default()
    };
    let mut weighted: Vec<[f64; 2]> = Vec::new();
    let mut ios = 0.0;
    for dir in ["mixed", "read", "write"] {
        let Some(d) = job.get(dir) else { continue };
        let iops = num(d, "iops")?;
        if iops <= 0.0 {
            continue;
        }
        n.iops += iops;
        n.mib_per_s += num(d, "bw_bytes")? / 1048576.0;
        let pct = d
            .get("lat_ns")
            .and_then(|l| l.get("percentile"))
            .or_else(|| d.get("clat_ns").and_then(|l| l.get("percentile")))
            .and_then(serde_json::Value::as_object)
            .context("no latency percentiles")?;
        let mut points: Vec<[f64; 2]> = pct
            .iter()
            .filter_map(|(k, v)| Some([k.parse().ok()?, v.as_f64()? / 1000.0 * iops]))
            .collect();
        points.sort_by(|a, b| a[0].total_cmp(&b[0]));
        if weighted.is_empty() {
            weighted = points;
        } else {
            for (w, p) in weighted.iter_mut().zip(points) {
                w[1] += p[1];
            }
        }
        ios += iops;
    }
    anyhow::ensure!(ios > 0.0, "fio completed no I/O");
    for p in &mut weighted {
        p[1] /= ios;
    }
    let at = |p: f64| {
        weighted
            .iter()
            .find(|w| (w[0] - p).abs() < 1e-9)
            .map(|w| w[1])
            .with_context(|| format!("no {p} percentile in fio's output"))
    };
    n.lat_us_p50 = at(50.0)?;
    n.lat_us_p99 = at(99.0)?;
    n.lat_us_p999 = at(99.9).unwrap_or(0.0);
    n.percentiles = weighted;
    Ok(n)
}

/// A daemon under test, killed on drop.
struct Daemon {
    process: Process,
    url: String,
    log: PathBuf,
    /// tgtd's control socket number, for removing its socket files.
    tgt_control: Option<u32>,
    /// Ours' `--metrics` address (`host:port`), where the time its commands spent past
    /// the iSCSI layer is read ([`Daemon::store_time`]).
    metrics: Option<String>,
}

/// tgtd, or ours through the workspace's one process harness.
enum Process {
    Tgtd(Child),
    Ours(testkit::daemon::Daemon),
}

impl Daemon {
    fn pid(&self) -> u32 {
        match &self.process {
            Process::Tgtd(child) => child.id(),
            Process::Ours(daemon) => daemon.pid(),
        }
    }

    /// tgtd on a free port with target `TGT_IQN`, LUN 1 of `bstype` on `backing`.
    fn tgtd(
        log: &Path,
        env: &[(String, String)],
        bstype: &str,
        backing: &str,
        lu_args: &[&str],
    ) -> Result<Daemon> {
        let tgtd = need("tgtd")?;
        let tgtadm = need("tgtadm")?;
        if bstype == "glfs" && !Path::new("/usr/lib/tgt/backing-store/bs_glfs.so").exists() {
            bail!("tgt's bs_glfs.so is not installed (Debian package tgt-glusterfs)");
        }
        let mut last = String::new();
        for attempt in 0..5u32 {
            let port = util::free_port()?;
            let control = 1024
                + (std::process::id()
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(u32::from(port).wrapping_mul(40_503))
                    .wrapping_add(attempt.wrapping_mul(7919)))
                    % (32767 - 1024);
            let child = tied(&tgtd)
                .arg("-f")
                .args(["-C", &control.to_string()])
                .arg("--iscsi")
                .arg(format!("portal=127.0.0.1:{port}"))
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(log)?)
                .stderr(std::fs::File::options().append(true).open(log)?)
                .spawn()
                .context("starting tgtd")?;
            let mut d = Daemon {
                process: Process::Tgtd(child),
                url: format!("iscsi://127.0.0.1:{port}/{TGT_IQN}/1"),
                log: log.to_path_buf(),
                tgt_control: None,
                metrics: None,
            };
            let adm = |args: &[&str]| -> Result<String> {
                util::output(
                    Command::new(&tgtadm)
                        .args(["-C", &control.to_string(), "--lld", "iscsi"])
                        .args(args),
                )
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut up = false;
            while Instant::now() < deadline {
                if !d.is_running() {
                    break;
                }
                if adm(&["--mode", "target", "--op", "show"]).is_ok()
                    && TcpStream::connect_timeout(
                        &SocketAddr::from(([127, 0, 0, 1], port)),
                        Duration::from_millis(200),
                    )
                    .is_ok()
                {
                    up = d.is_running();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !up {
                last = format!("tgtd did not come up: {}", tail(log));
                continue; // drop kills it; another control number next time
            }
            d.tgt_control = Some(control);
            adm(&[
                "--mode", "target", "--op", "new", "--tid", "1", "-T", TGT_IQN,
            ])?;
            adm(&[
                "--mode",
                "logicalunit",
                "--op",
                "new",
                "--tid",
                "1",
                "--lun",
                "1",
                "--bstype",
                bstype,
                "--backing-store",
                backing,
            ]
            .into_iter()
            .chain(lu_args.iter().copied())
            .collect::<Vec<_>>())
            .with_context(|| format!("tgtd log: {}", tail(log)))?;
            adm(&[
                "--mode", "target", "--op", "bind", "--tid", "1", "-I", "ALL",
            ])?;
            return Ok(d);
        }
        bail!("{last}")
    }

    /// Our release target on a free port with `args` describing the LUN.
    fn ours(
        binary: &Path,
        log: &Path,
        env: &[(String, String)],
        args: &[String],
    ) -> Result<Daemon> {
        let metrics = format!("127.0.0.1:{}", testkit::daemon::free_port()?);
        let mut launch = testkit::daemon::Launch::new(binary)
            .tied_to_us()
            .log(log)
            .patience(Duration::from_secs(30))
            .args(["--target", OUR_IQN, "--lun", "0", "--log", "warn"])
            .args(["--metrics", &metrics])
            .args(args);
        for (key, value) in env {
            launch = launch.env(key, value);
        }
        let daemon = testkit::daemon::Daemon::start(launch)?;
        Ok(Daemon {
            url: format!("iscsi://{}/{OUR_IQN}/0", daemon.portal()),
            process: Process::Ours(daemon),
            log: log.to_path_buf(),
            tgt_control: None,
            metrics: Some(metrics),
        })
    }

    /// Ours' commands so far and the seconds they took from the SCSI layer's start to
    /// their answer, summed (the `glfs_iscsi_lun_command_duration_seconds` histogram's count
    /// and sum over every kind): a command's time past the iSCSI layer, its data
    /// already in. Before a LUN's first command it has no series: none so far. `None`
    /// for tgtd, or when the scrape fails.
    fn store_time(&self) -> Option<(f64, f64)> {
        let text = testkit::metrics::scrape(self.metrics.as_deref()?).ok()?;
        let name = "glfs_iscsi_lun_command_duration_seconds";
        let total = |part: &str| testkit::metrics::sum_of(&text, &format!("{name}_{part}"));
        Some((total("count").unwrap_or(0.0), total("sum").unwrap_or(0.0)))
    }

    fn is_running(&mut self) -> bool {
        match &mut self.process {
            Process::Tgtd(child) => matches!(child.try_wait(), Ok(None)),
            Process::Ours(daemon) => daemon.is_running(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGKILL: tgtd ignores SIGTERM while it has targets, and a benchmark has
        // nothing to flush.
        if let Process::Tgtd(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(n) = self.tgt_control {
            for suffix in ["", ".lock"] {
                let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{n}{suffix}"));
            }
        }
    }
}

/// A command for `program` that dies with us: run through util-linux's
/// `setpriv --pdeathsig KILL` (which execs it, keeping its pid) when available, so
/// no daemon or load outlives an interrupted or killed `cargo xtask bench`.
fn tied(program: &Path) -> Command {
    match util::which("setpriv") {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// `12%`, or `-` when unknown.
fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.0}%"))
}

/// utime + stime of process `pid` (all its threads) in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    report::parse_pid_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime of process `pid` and of its child processes (fio runs its job in a
/// forked process, where gfapi's threads live), in clock ticks.
fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let mut ticks = cpu_ticks(pid)?;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        ticks += report::parse_children(&children)
            .filter_map(cpu_ticks)
            .sum::<u64>();
    }
    Some(ticks)
}

/// Peak resident memory of process `pid` in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    report::parse_status_kib(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmHWM",
    )
}

/// `getconf CLK_TCK` (100 on Linux unless configured otherwise).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        util::output(Command::new("getconf").arg("CLK_TCK"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Runs `cmd` with stdout and stderr into `log`, killing it after `limit`. With a
/// `target` pid, samples that process's CPU ticks inside `window` (offsets from the
/// start) and its peak memory at the end.
fn run_bounded(
    cmd: &mut Command,
    log: &Path,
    limit: Duration,
    target: Option<u32>,
    window: Option<(Duration, Duration)>,
) -> Result<(std::process::ExitStatus, TargetSample)> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {}", util::display(cmd)))?;
    let started = Instant::now();
    let deadline = started + limit;
    let load_pid = child.id();
    let mut first: Option<WindowSample> = None;
    let mut last: Option<WindowSample> = None;
    // Every process's CPU at the window's start and end, for who the others were.
    let mut procs: (Option<report::ProcSnapshot>, Option<report::ProcSnapshot>) = (None, None);
    let mut exclude: Vec<u32> = target.into_iter().collect();
    loop {
        if let Some(status) = child.try_wait()? {
            let mut sample = TargetSample::default();
            if procs.0.is_some() && procs.1.is_none() {
                // The load generator ended before a pass saw the window close.
                procs.1 = proc_snapshot();
            }
            if let (Some(a), Some(b)) = &procs {
                sample.others_top = report::busiest_others(
                    a,
                    b,
                    &exclude,
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                );
            }
            if let Some(pid) = target {
                sample.peak_rss_kib = peak_rss_kib(pid);
            }
            if let (Some(a), Some(b)) = (first, last) {
                let secs = (b.at - a.at).as_secs_f64();
                if secs > 0.0 {
                    if target.is_some() {
                        sample.cpu = Some((b.target.saturating_sub(a.target), secs));
                    }
                    if let (Some(la), Some(lb)) = (a.load, b.load) {
                        sample.load_cpu = Some((lb.saturating_sub(la), secs));
                    }
                }
                if let (Some(la), Some(lb), Some(ma), Some(mb)) =
                    (a.load, b.load, a.machine, b.machine)
                {
                    sample.others_cpu_pct = report::others_cpu_pct(
                        (ma, mb),
                        b.target.saturating_sub(a.target) + lb.saturating_sub(la),
                        std::thread::available_parallelism().map_or(1, |n| n.get()),
                    );
                }
            }
            return Ok((status, sample));
        }
        let now = Instant::now();
        if now > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not finish within {} s: {}",
                util::display(cmd),
                limit.as_secs(),
                tail(log)
            );
        }
        if let Some((from, to)) = window {
            let at = now - started;
            if at > to && procs.0.is_some() && procs.1.is_none() {
                exclude.extend(process_tree(load_pid));
                procs.1 = proc_snapshot();
            }
            if at >= from && at <= to && procs.0.is_none() {
                procs.0 = proc_snapshot();
            }
            if at >= from && at <= to {
                // Without a target (fio, which is its own gfapi client) only the load
                // generator is sampled.
                if let Some(t) = target.map_or(Some(0), cpu_ticks) {
                    let s = WindowSample {
                        at: now,
                        target: t,
                        load: tree_cpu_ticks(load_pid),
                        machine: machine_cpu(),
                    };
                    if first.is_none() {
                        first = Some(s);
                    }
                    last = Some(s);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(8);
    format!("[{}] {}", path.display(), lines[from..].join(" | "))
}

fn need(bin: &str) -> Result<PathBuf> {
    util::which(bin)
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(bin))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| util::Skipped(format!("{bin} is not installed")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/mounts lines: device, mount point, type, options, dump, pass.
    #[test]
    fn the_tmpfs_side_wants_a_tmpfs_on_its_directory() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
                      tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n\
                      /dev/sda1 /srv ext4 rw 0 0\n";
        assert!(tmpfs_mounted_on(mounts, "/dev/shm"));
        assert!(!tmpfs_mounted_on(mounts, "/srv"), "ext4 is not tmpfs");
        assert!(
            !tmpfs_mounted_on(mounts, "/dev"),
            "only the directory itself"
        );
        assert!(!tmpfs_mounted_on("shm /dev/shm ramfs rw 0 0\n", "/dev/shm"));
        assert!(!tmpfs_mounted_on("", "/dev/shm"));
    }

    /// The parts of fio 3.33's JSON output we read (`--lat_percentiles=1`), for a
    /// job with reads and writes reported separately.
    #[test]
    fn fio_json_gives_iops_bandwidth_and_total_latency() {
        let text = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "ceiling",
      "error" : 0,
      "usr_cpu" : 10.5,
      "sys_cpu" : 4.5,
      "read" : {
        "bw_bytes" : 78643200,
        "iops" : 19200.5,
        "clat_ns" : { "min" : 1, "percentile" : { "50.000000" : 999 } },
        "lat_ns" : {
          "min" : 1,
          "percentile" : { "1.000000" : 100, "50.000000" : 1597440, "99.000000" : 3031040, "99.900000" : 4000000 }
        }
      },
      "write" : { "bw_bytes" : 0, "iops" : 0.000000 }
    }
  ]
}"#;
        let n = parse_fio(text).unwrap();
        assert_eq!(n.iops, 19200.5);
        assert_eq!(n.mib_per_s, 75.0);
        assert_eq!(n.lat_us_p50, 1597.44);
        assert_eq!(n.lat_us_p99, 3031.04);
        assert_eq!(n.lat_us_p999, 4000.0);
        assert_eq!(n.errors, 0);
        assert_eq!(n.load_cpu_pct, Some(15.0));
        assert_eq!(n.percentiles[0], [1.0, 0.1]);
        assert_eq!(n.percentiles.len(), 4);
    }

    /// `--unified_rw_reporting=1`: one `mixed` direction; and without it, a mix
    /// reported per direction is weighted by IOPS.
    #[test]
    fn fio_mixed_and_weighted_directions() {
        let mixed = r#"{"jobs":[{"error":0,"mixed":{"bw_bytes":1048576,"iops":256,
            "lat_ns":{"percentile":{"50.000000":2000,"99.000000":8000,"99.900000":9000}}}}]}"#;
        let n = parse_fio(mixed).unwrap();
        assert_eq!(
            (n.iops, n.mib_per_s, n.lat_us_p50, n.lat_us_p99),
            (256.0, 1.0, 2.0, 8.0)
        );
        // 300 reads at p50 1 ms, 100 writes at p50 5 ms: (300*1 + 100*5)/400 = 2 ms.
        let split = r#"{"jobs":[{"error":0,
            "read":{"bw_bytes":0,"iops":300,"lat_ns":{"percentile":{"50.000000":1000000,"99.000000":2000000}}},
            "write":{"bw_bytes":0,"iops":100,"lat_ns":{"percentile":{"50.000000":5000000,"99.000000":6000000}}}}]}"#;
        let n = parse_fio(split).unwrap();
        assert_eq!(n.iops, 400.0);
        assert_eq!(n.lat_us_p50, 2000.0);
        assert_eq!(n.lat_us_p99, 3000.0);
        assert_eq!(n.lat_us_p999, 0.0);
        assert!(parse_fio(r#"{"jobs":[{"read":{"iops":0}}]}"#).is_err());
        assert!(parse_fio("fio: engine not found").is_err());
    }

    #[test]
    fn iscsi_load_line_reads_back() {
        let line = r#"{"iops":20000.0,"mib_per_s":78.13,"lat_us_p50":0.04,"lat_us_p99":0.05,"lat_us_p999":0.06,"errors":1,"ios":40000,"cpu_pct":75.0,"sessions":8,"lat_percentiles_us":[[50.0,0.04],[99.9,0.06]]}"#;
        let n = parse_load_line(line).unwrap();
        assert_eq!((n.iops, n.lat_us_p999, n.errors), (20000.0, 0.06, 1));
        assert_eq!(n.load_cpu_pct, Some(75.0));
        assert_eq!(n.percentiles, [[50.0, 0.04], [99.9, 0.06]]);
        assert_eq!(n.target_cpu_us_per_cmd, None);
        assert!(parse_load_line("{\"iops\": 1}").is_err());
    }

    #[test]
    fn cpu_ticks_of_this_process_grow() {
        let t0 = cpu_ticks(std::process::id()).expect("/proc/self/stat");
        let start = Instant::now();
        let mut x = 0u64;
        while cpu_ticks(std::process::id()).unwrap() <= t0 {
            x = x.wrapping_mul(31).wrapping_add(1);
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "CPU time never grew"
            );
        }
        std::hint::black_box(x);
        assert!(clock_ticks_per_second() >= 1.0);
        assert!(peak_rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn options_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            opts: BenchOptions,
        }
        let opts = Cli::parse_from(["bench", "--volume", "live", "--seconds", "3"]).opts;
        assert_eq!(opts.sessions, [1, 8, 64]);
        assert_eq!((opts.rounds, opts.seconds), (3, 3));
        assert_eq!(Cli::parse_from(["bench"]).opts.seconds, 5);
        assert_eq!(Cli::parse_from(["bench", "--rounds", "1"]).opts.rounds, 1);
        assert!(Cli::try_parse_from(["bench", "--rounds", "0"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--repeat", "3"]).is_err());
        assert!(opts.workloads.is_empty() && opts.sides.is_empty());
        let opts = Cli::parse_from([
            "bench",
            "--workload",
            "read-64k",
            "--workload",
            "mix-4k",
            "--only",
            "fio",
            "--only",
            "tgt-fuse",
            "--sessions",
            "2,4",
        ])
        .opts;
        assert_eq!(opts.workloads, [WORKLOADS[2], WORKLOADS[6]]);
        assert_eq!(opts.sides, [Side::Ceiling, Side::TgtFuse]);
        assert_eq!(opts.sessions, [2, 4]);
        assert!(Cli::try_parse_from(["bench", "--workload", "read-8k"]).is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(units::parse_size("4k").unwrap(), 4096);
        assert_eq!(units::parse_size("256M").unwrap(), 256 << 20);
        assert!(units::parse_size("1q").is_err());
        assert!(units::parse_size("0").is_err());
    }

    /// A gluster CLI for the volume-option tests: `volume get/set/reset` of one
    /// option kept in a thread-local, every call logged; `set` of the value in
    /// `IGNORED` is accepted but changes nothing (a volume that does not take it).
    mod fake_cli {
        use anyhow::{bail, Result};
        use std::cell::RefCell;

        pub const IGNORED: &str = "ignored";
        thread_local! {
            pub static VALUE: RefCell<Option<String>> = const { RefCell::new(None) };
            pub static CALLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
            pub static FAIL_SET: RefCell<bool> = const { RefCell::new(false) };
        }

        pub fn cli(args: &[&str]) -> Result<String> {
            CALLS.with(|c| c.borrow_mut().push(args.join(" ")));
            match args {
                ["volume", "get", _, opt] => match VALUE.with(|v| v.borrow().clone()) {
                    Some(v) => Ok(format!("Option Value\n------ -----\n{opt} {v}\n")),
                    None => bail!("volume get: option {opt} unknown"),
                },
                ["volume", "set", ..] if FAIL_SET.with(|f| *f.borrow()) => {
                    bail!("volume set: failed")
                }
                ["volume", "set", _, _, value] => {
                    if *value != IGNORED {
                        VALUE.with(|v| *v.borrow_mut() = Some(value.to_string()));
                    }
                    Ok(String::new())
                }
                ["volume", "reset", _, _] => {
                    VALUE.with(|v| *v.borrow_mut() = None);
                    Ok(String::new())
                }
                _ => bail!("unexpected gluster {args:?}"),
            }
        }

        pub fn start(value: Option<&str>, fail_set: bool) {
            VALUE.with(|v| *v.borrow_mut() = value.map(str::to_string));
            FAIL_SET.with(|f| *f.borrow_mut() = fail_set);
            CALLS.with(|c| c.borrow_mut().clear());
        }

        pub fn calls() -> Vec<String> {
            CALLS.with(|c| c.borrow().clone())
        }

        pub fn value() -> Option<String> {
            VALUE.with(|v| v.borrow().clone())
        }
    }

    const OPT: &str = "performance.client-io-threads";

    #[test]
    fn a_volume_option_set_for_the_ceiling_is_put_back_to_what_it_was() {
        fake_cli::start(Some("on"), false);
        let set = VolumeOption::set_with(fake_cli::cli, "vol", OPT, "off", None).unwrap();
        assert_eq!(fake_cli::value().as_deref(), Some("off"));
        assert_eq!(set.old.as_deref(), Some("on"));
        drop(set);
        assert_eq!(fake_cli::value().as_deref(), Some("on"));
        assert_eq!(
            fake_cli::calls(),
            [
                format!("volume get vol {OPT}"),
                format!("volume set vol {OPT} off"),
                format!("volume get vol {OPT}"),
                format!("volume set vol {OPT} on"),
            ]
        );
    }

    fn live_volume() -> Volume {
        Volume {
            kind: VolumeKind::Live,
            name: "vol".into(),
            env: Vec::new(),
            library: None,
        }
    }

    /// Over the whole schedule of two workloads in three rounds, client-io-threads is off
    /// during every ceiling run and back on for every other side's; consecutive ceiling
    /// runs (the end of a reversed round and the start of the next) share one setting.
    #[test]
    fn the_ceiling_s_graph_is_set_for_its_runs_only() {
        fake_cli::start(Some("on"), false);
        let volume = live_volume();
        let mut g = CeilingGraph::with_cli(&volume, fake_cli::cli);
        let mut ceiling_runs = 0;
        for (_, _, side) in rounds::schedule(2, &rounds::ROUND_ORDER, 3) {
            if side == Side::Ceiling {
                g.enter().unwrap();
                ceiling_runs += 1;
                assert_eq!(fake_cli::value().as_deref(), Some("off"));
            } else {
                g.leave();
                assert_eq!(fake_cli::value().as_deref(), Some("on"), "{side:?}");
            }
        }
        g.leave();
        assert_eq!(fake_cli::value().as_deref(), Some("on"));
        let sets = |v: &str| {
            fake_cli::calls()
                .iter()
                .filter(|c| **c == format!("volume set vol {OPT} {v}"))
                .count()
        };
        // Per workload: round 1's ceiling alone, rounds 2 and 3's back to back.
        assert_eq!((ceiling_runs, sets("off"), sets("on")), (6, 4, 4));
        assert!(
            g.describe().contains("set off for its runs (was on;"),
            "{}",
            g.describe()
        );
        // A fake volume has no graph to set.
        fake_cli::start(Some("on"), false);
        let fake = Volume {
            kind: VolumeKind::Fake,
            ..live_volume()
        };
        let mut g = CeilingGraph::with_cli(&fake, fake_cli::cli);
        g.enter().unwrap();
        assert!(fake_cli::calls().is_empty());
        assert!(g.describe().contains("fake libgfapi"));
    }

    #[test]
    fn a_ceiling_graph_that_cannot_be_set_is_said_once_or_fails_the_run_that_needs_it() {
        // Never set: every ceiling run on the default graph, and the report says so.
        fake_cli::start(Some("on"), true);
        let volume = live_volume();
        let mut g = CeilingGraph::with_cli(&volume, fake_cli::cli);
        g.enter().unwrap();
        g.leave();
        g.enter().unwrap();
        assert!(g
            .unusable
            .as_deref()
            .unwrap()
            .contains("volume set: failed"));
        assert_eq!(
            g.describe(),
            "fio's gfapi_async engine on the volume's default client graph"
        );
        assert_eq!(fake_cli::calls().len(), 2, "tried once");
        // Set once, then refused: that run fails rather than measure another graph.
        fake_cli::start(Some("on"), false);
        let mut g = CeilingGraph::with_cli(&volume, fake_cli::cli);
        g.enter().unwrap();
        g.leave();
        fake_cli::FAIL_SET.with(|f| *f.borrow_mut() = true);
        let err = g.enter().unwrap_err();
        assert!(
            err.starts_with(&format!(
                "could not set {OPT} off for this run of the ceiling: "
            )),
            "{err}"
        );
        assert!(g.unusable.is_none());
    }

    #[test]
    fn an_option_left_set_by_a_killed_bench_is_put_back_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join(OPTION_JOURNAL);
        // Nothing left: nothing done, no gluster call.
        fake_cli::start(Some("on"), false);
        assert_eq!(restore_interrupted(fake_cli::cli, &journal).unwrap(), None);
        assert!(fake_cli::calls().is_empty());
        // Set, and the bench killed before the drop (forgotten here): the journal stays.
        let set = VolumeOption::set_with(fake_cli::cli, "vol", OPT, "off", Some(&journal)).unwrap();
        std::mem::forget(set);
        assert_eq!(fake_cli::value().as_deref(), Some("off"));
        assert!(journal.exists());
        // The next bench puts it back to what it was and removes the journal.
        let done = restore_interrupted(fake_cli::cli, &journal).unwrap();
        assert_eq!(
            done.as_deref(),
            Some(
                format!("a bench interrupted earlier left {OPT} of vol set: put back to on")
                    .as_str()
            )
        );
        assert_eq!(fake_cli::value().as_deref(), Some("on"));
        assert!(!journal.exists());
        // An option that had no value to show is reset.
        fake_cli::start(None, false);
        std::mem::forget(
            VolumeOption::set_with(fake_cli::cli, "vol", OPT, "off", Some(&journal)).unwrap(),
        );
        restore_interrupted(fake_cli::cli, &journal).unwrap();
        assert_eq!(fake_cli::value(), None);
        assert_eq!(
            fake_cli::calls().last().map(String::as_str),
            Some(format!("volume reset vol {OPT}").as_str())
        );
    }

    #[test]
    fn the_journal_goes_when_the_option_is_put_back_or_was_never_set() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join(OPTION_JOURNAL);
        fake_cli::start(Some("on"), false);
        let set = VolumeOption::set_with(fake_cli::cli, "vol", OPT, "off", Some(&journal)).unwrap();
        assert!(journal.exists(), "noted while it is set");
        drop(set);
        assert!(!journal.exists());
        assert_eq!(fake_cli::value().as_deref(), Some("on"));
        // A set that failed changed nothing and leaves nothing to put back.
        fake_cli::start(Some("on"), true);
        assert!(VolumeOption::set_with(fake_cli::cli, "vol", OPT, "off", Some(&journal)).is_err());
        assert!(!journal.exists());
        // A journal that is not one is an error, not a guess, and stays.
        std::fs::write(&journal, "garbage").unwrap();
        let err = restore_interrupted(fake_cli::cli, &journal).unwrap_err();
        assert!(
            format!("{err:#}").contains("is not a bench's option journal"),
            "{err:#}"
        );
        assert!(journal.exists());
    }

    #[test]
    fn a_volume_option_whose_old_value_is_unknown_is_reset_afterwards() {
        // Gluster 10 shows an option never set with its default value; an older CLI
        // that cannot show it leaves nothing to put back but a reset.
        fake_cli::start(None, false);
        let set = VolumeOption::set_with(fake_cli::cli, "vol", OPT, "off", None).unwrap();
        assert_eq!(set.old, None);
        drop(set);
        assert_eq!(fake_cli::value(), None);
        assert_eq!(
            fake_cli::calls().last().map(String::as_str),
            Some(format!("volume reset vol {OPT}").as_str())
        );
    }

    #[test]
    fn a_failed_set_changes_nothing_and_restores_nothing() {
        fake_cli::start(Some("on"), true);
        let err = VolumeOption::set_with(fake_cli::cli, "vol", OPT, "off", None)
            .err()
            .expect("set failed");
        assert!(format!("{err:#}").contains("volume set: failed"), "{err:#}");
        assert_eq!(
            fake_cli::calls(),
            [
                format!("volume get vol {OPT}"),
                format!("volume set vol {OPT} off")
            ]
        );
        assert_eq!(fake_cli::value().as_deref(), Some("on"));
    }

    #[test]
    fn a_set_the_volume_does_not_show_is_an_error_and_is_undone() {
        fake_cli::start(Some("on"), false);
        let err = VolumeOption::set_with(fake_cli::cli, "vol", OPT, fake_cli::IGNORED, None)
            .err()
            .expect("the value never showed");
        assert_eq!(
            format!("{err:#}"),
            format!(
                "{OPT} of vol reads on after setting it to {}",
                fake_cli::IGNORED
            )
        );
        assert_eq!(
            fake_cli::calls().last().map(String::as_str),
            Some(format!("volume set vol {OPT} on").as_str())
        );
    }
}
