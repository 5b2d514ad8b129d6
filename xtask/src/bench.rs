//! `cargo xtask bench`: the performance goals, measured side by side in one run.
//!
//! For 4k random reads and writes at one queue depth (32 by default), on one file of
//! one volume (the fake gfapi, or a live one-brick Gluster volume):
//!
//! * **ceiling**: fio's `gfapi_async` engine directly on the file;
//! * **tgt**: tgtd with `--bstype glfs` on the same file, loaded by `iscsi-load`;
//! * **ours**: `glfs-iscsi --bstype glfs` (release build) on the same file, loaded by
//!   `iscsi-load`;
//!
//! and, for the protocol path alone, tgt's `null` store against our `memory` store.
//!
//! Goals (developers' guide): ours >= 0.9 x the gfapi ceiling on every glfs workload,
//! and ours (memory) >= 1.5 x tgt (null). Prints a table and writes
//! `<target dir>/bench/results.json`. Every measurement runs under a time limit and
//! every daemon is killed when its measurements end, on errors too.

use crate::{fake, gluster, util};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ours over the gfapi ceiling, on every glfs workload.
pub const GOAL_OVER_CEILING: f64 = 0.9;
/// Ours (memory store) over tgt (null store).
pub const GOAL_OVER_TGT_NULL: f64 = 1.5;

const VOLUME_FAKE: &str = "benchvol";
const VOLUME_LIVE: &str = "glfsbench";
const HOST: &str = "127.0.0.2";
const FILE: &str = "bench.img";
const TGT_IQN: &str = "iqn.2026-11.io.glfs-iscsi:bench-tgt";
const OUR_IQN: &str = "iqn.2026-11.io.glfs-iscsi:bench-ours";
const INITIATOR: &str = "iqn.2026-11.io.glfs-iscsi:bench-load";

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
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Queue depth (iodepth for fio, commands in flight for iscsi-load).
    #[arg(long, default_value_t = 32)]
    pub qd: u32,
    /// Bytes per I/O.
    #[arg(long, default_value = "4k")]
    pub bs: String,
    /// Size of the benchmark file and of the memory LUN, e.g. 256M.
    #[arg(long, default_value = "256M")]
    pub size: String,
    /// Workloads to run.
    #[arg(long = "rw", default_values = ["randread", "randwrite"])]
    pub rws: Vec<String>,
    /// Sides to run: fio, tgt, ours, tgt-null, ours-memory, ours-memory-crc32c (the memory
    /// LUN with HeaderDigest=CRC32C: the cost of digests against the ours-memory row).
    #[arg(
        long = "only",
        default_values = ["fio", "tgt", "ours", "tgt-null", "ours-memory", "ours-memory-crc32c"]
    )]
    pub sides: Vec<String>,
    /// Runs per measurement; the table shows the one with the median IOPS.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Use the release binaries already built instead of building them.
    #[arg(long)]
    pub no_build: bool,
    /// Fail when a goal is not met (by default only a failed measurement fails).
    #[arg(long)]
    pub require_goals: bool,
}

fn volume_kind_name(kind: VolumeKind) -> &'static str {
    match kind {
        VolumeKind::Fake => "fake",
        VolumeKind::Live => "live",
    }
}

/// What one measurement gave, or why it gave nothing.
#[derive(Debug, Clone)]
pub enum Measured {
    /// The numbers.
    Ok(Numbers),
    /// The measurement failed or did not run.
    Failed(String),
    /// Not asked for (`--only`).
    NotRun,
}

/// IOPS, bandwidth and latency of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Numbers {
    pub iops: f64,
    pub mib_per_s: f64,
    pub lat_us_p50: f64,
    pub lat_us_p99: f64,
    pub errors: u64,
    /// CPU of the load generator (fio or iscsi-load), % of one core.
    pub load_cpu_pct: Option<f64>,
    /// CPU of the target daemon over the load run, % of one core.
    pub target_cpu_pct: Option<f64>,
}

impl Measured {
    fn iops(&self) -> Option<f64> {
        match self {
            Measured::Ok(n) => Some(n.iops),
            _ => None,
        }
    }

    fn cell(&self) -> String {
        match self {
            Measured::Ok(n) if n.errors > 0 => format!("{:.0} ({} err)", n.iops, n.errors),
            Measured::Ok(n) => format!("{:.0}", n.iops),
            Measured::Failed(_) => "failed".into(),
            Measured::NotRun => "-".into(),
        }
    }

    fn to_json(&self) -> String {
        match self {
            Measured::Ok(n) => {
                let opt = |x: Option<f64>| x.map_or("null".into(), |v| format!("{v:.1}"));
                format!(
                    "{{\"iops\":{:.2},\"mib_per_s\":{:.2},\"lat_us_p50\":{:.2},\"lat_us_p99\":{:.2},\"errors\":{},\"load_cpu_pct\":{},\"target_cpu_pct\":{}}}",
                    n.iops,
                    n.mib_per_s,
                    n.lat_us_p50,
                    n.lat_us_p99,
                    n.errors,
                    opt(n.load_cpu_pct),
                    opt(n.target_cpu_pct)
                )
            }
            Measured::Failed(why) => format!("{{\"error\":{}}}", json::quote(why)),
            Measured::NotRun => "null".into(),
        }
    }
}

/// One row of the table: a workload on one store kind.
#[derive(Debug, Clone)]
pub struct Row {
    /// e.g. `randread 4k`.
    pub workload: String,
    /// `glfs` (ceiling vs tgt glfs vs ours glfs) or `null/memory`.
    pub store: &'static str,
    pub ceiling: Measured,
    pub tgt: Measured,
    pub ours: Measured,
}

impl Row {
    fn ours_over_ceiling(&self) -> Option<f64> {
        Some(self.ours.iops()? / self.ceiling.iops()?)
    }

    fn ours_over_tgt(&self) -> Option<f64> {
        Some(self.ours.iops()? / self.tgt.iops()?)
    }

    /// The goal of this row and whether it is met (None: not measurable).
    fn goal(&self) -> (&'static str, Option<bool>) {
        if self.store == DIGESTS_ROW {
            return ("digests on: compare the memory row", None);
        }
        if self.store == "glfs" {
            (
                ">= 0.9x ceiling",
                self.ours_over_ceiling().map(|r| r >= GOAL_OVER_CEILING),
            )
        } else {
            (
                ">= 1.5x tgt null",
                self.ours_over_tgt().map(|r| r >= GOAL_OVER_TGT_NULL),
            )
        }
    }
}

/// Runs the benchmark.
pub fn run(opts: BenchOptions) -> Result<()> {
    let bs = units::parse_size(&opts.bs)?;
    let size = units::parse_size(&opts.size)?;
    anyhow::ensure!(bs >= 512 && bs % 512 == 0, "--bs must be a multiple of 512");
    anyhow::ensure!(size >= bs * 64, "--size must hold at least 64 I/Os");
    anyhow::ensure!(
        opts.seconds > 0 && opts.qd > 0,
        "--seconds and --qd must be above 0"
    );
    for rw in &opts.rws {
        anyhow::ensure!(
            matches!(rw.as_str(), "randread" | "randwrite" | "randrw"),
            "--rw {rw}: expected randread, randwrite or randrw"
        );
    }
    let want = |side: &str| opts.sides.iter().any(|s| s == side);

    let out_dir = util::target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let bins = Binaries::get(&opts, want("ours") || want("ours-memory"))?;
    let volume = Volume::prepare(opts.volume, &out_dir, bins.fake_lib.as_deref())?;
    eprintln!(
        "[bench] {} volume {}@{}, file {FILE} of {} MiB; {} s per measurement after a 1 s ramp, qd {}, bs {}",
        volume_kind_name(opts.volume),
        volume.name,
        HOST,
        size >> 20,
        opts.seconds,
        opts.qd,
        bs
    );
    let bench = Bench {
        opts: &opts,
        bs,
        size,
        bins: &bins,
        volume: &volume,
        out_dir: &out_dir,
    };
    bench.lay_out_file()?;

    let mut rows: Vec<Row> = opts
        .rws
        .iter()
        .flat_map(|rw| {
            ["glfs", "null/memory", DIGESTS_ROW].map(|store| Row {
                workload: format!("{rw} {}", opts.bs),
                store,
                ceiling: Measured::NotRun,
                tgt: Measured::NotRun,
                ours: Measured::NotRun,
            })
        })
        .collect();
    // glfs rows first, then the null/memory ones, then digests on.
    rows.sort_by_key(|r| (r.store != "glfs", r.store == DIGESTS_ROW));
    let row_of = |rows: &mut Vec<Row>, i: usize, store: &str| -> usize {
        rows.iter()
            .enumerate()
            .filter(|(_, r)| r.store == store)
            .nth(i)
            .map(|(k, _)| k)
            .unwrap()
    };

    // (a) the gfapi ceiling.
    if want("fio") {
        for (i, rw) in opts.rws.iter().enumerate() {
            let m = bench.measure(&format!("fio gfapi_async {rw}"), || bench.fio(rw));
            let k = row_of(&mut rows, i, "glfs");
            rows[k].ceiling = m;
        }
    }
    // (b)-(d): one daemon per side, every workload on it.
    let sides: [(&str, &str, StoreKind); 5] = [
        ("tgt", "tgtd bs_glfs", StoreKind::TgtGlfs),
        ("ours", "glfs-iscsi glfs", StoreKind::OursGlfs),
        ("tgt-null", "tgtd null", StoreKind::TgtNull),
        ("ours-memory", "glfs-iscsi memory", StoreKind::OursMemory),
        (
            "ours-memory-crc32c",
            "glfs-iscsi memory, CRC32C",
            StoreKind::OursMemoryCrc32c,
        ),
    ];
    for (side, label, kind) in sides {
        if !want(side) {
            continue;
        }
        let store = if kind.is_glfs() {
            "glfs"
        } else if kind == StoreKind::OursMemoryCrc32c {
            DIGESTS_ROW
        } else {
            "null/memory"
        };
        let results = bench.on_daemon(label, kind);
        for (i, m) in results.into_iter().enumerate() {
            let k = row_of(&mut rows, i, store);
            if kind.is_ours() {
                rows[k].ours = m;
            } else {
                rows[k].tgt = m;
            }
        }
    }

    let table = render_table(&rows);
    println!("\n{table}");
    let json = render_json(&opts, &volume, bs, size, &rows);
    // The latest run, and the latest run per volume kind.
    let path = out_dir.join("results.json");
    std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    let per_volume = out_dir.join(format!("results-{}.json", volume_kind_name(opts.volume)));
    std::fs::write(&per_volume, &json)?;
    println!("results: {} (and {})", path.display(), per_volume.display());

    let failed: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            [("ceiling", &r.ceiling), ("tgt", &r.tgt), ("ours", &r.ours)]
                .into_iter()
                .filter_map(|(side, m)| match m {
                    Measured::Failed(why) => {
                        Some(format!("{} {} {side}: {why}", r.workload, r.store))
                    }
                    Measured::Ok(n) if n.errors > 0 => Some(format!(
                        "{} {} {side}: {} I/O errors (see the logs in {})",
                        r.workload,
                        r.store,
                        n.errors,
                        out_dir.display()
                    )),
                    _ => None,
                })
        })
        .collect();
    for f in &failed {
        eprintln!("[bench] failed: {f}");
    }
    if !failed.is_empty() {
        bail!("{} measurement(s) failed", failed.len());
    }
    if opts.require_goals {
        let unmet = rows.iter().filter(|r| r.goal().1 == Some(false)).count();
        if unmet > 0 {
            bail!("{unmet} goal(s) not met");
        }
    }
    Ok(())
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    TgtGlfs,
    OursGlfs,
    TgtNull,
    OursMemory,
    /// The memory LUN, loaded with HeaderDigest=CRC32C.
    OursMemoryCrc32c,
}

/// The store of the rows measuring the memory LUN with digests on.
const DIGESTS_ROW: &str = "memory+crc32c";

impl StoreKind {
    fn is_glfs(self) -> bool {
        matches!(self, StoreKind::TgtGlfs | StoreKind::OursGlfs)
    }

    fn is_ours(self) -> bool {
        matches!(
            self,
            StoreKind::OursGlfs | StoreKind::OursMemory | StoreKind::OursMemoryCrc32c
        )
    }
}

struct Bench<'a> {
    opts: &'a BenchOptions,
    bs: u64,
    size: u64,
    bins: &'a Binaries,
    volume: &'a Volume,
    out_dir: &'a Path,
}

/// Time a measurement may take beyond its run time: gfapi's init and teardown
/// (glfs_fini takes up to ~11 s), daemon start, login.
const SLACK: Duration = Duration::from_secs(90);
const RAMP_SECS: u32 = 1;

impl Bench<'_> {
    fn limit(&self) -> Duration {
        Duration::from_secs(u64::from(self.opts.seconds + RAMP_SECS)) + SLACK
    }

    /// Runs one measurement and prints its progress line.
    fn measure(&self, label: &str, f: impl Fn() -> Result<Numbers>) -> Measured {
        use std::io::Write;
        eprint!("[bench] {label:<34} ... ");
        let _ = std::io::stderr().flush();
        let started = Instant::now();
        let mut runs = Vec::new();
        for _ in 0..self.opts.repeat.max(1) {
            match f() {
                Ok(n) => runs.push(n),
                Err(e) => {
                    let why = format!("{e:#}");
                    eprintln!("FAILED: {}", why.lines().next().unwrap_or(""));
                    return Measured::Failed(why);
                }
            }
        }
        let (n, spread) = median(&mut runs);
        eprintln!(
            "{:>8.0} IOPS {:>7.1} MiB/s  p50 {:>7.0} us  p99 {:>7.0} us  cpu load {:>4} target {:>4}{}{}  ({:.0} s)",
            n.iops,
            n.mib_per_s,
            n.lat_us_p50,
            n.lat_us_p99,
            pct(n.load_cpu_pct),
            pct(n.target_cpu_pct),
            spread.map_or(String::new(), |(lo, hi)| format!(
                "  [{} runs {lo:.0}..{hi:.0}]",
                runs.len()
            )),
            if n.errors > 0 {
                format!("  {} ERRORS", n.errors)
            } else {
                String::new()
            },
            started.elapsed().as_secs_f64()
        );
        Measured::Ok(n)
    }

    /// Writes the benchmark file through gfapi (fio's sync engine), so every side
    /// reads allocated, written blocks of the same file.
    fn lay_out_file(&self) -> Result<()> {
        if !self
            .opts
            .sides
            .iter()
            .any(|s| s == "fio" || s == "tgt" || s == "ours")
        {
            return Ok(());
        }
        eprint!(
            "[bench] laying out {FILE} ({} MiB) with fio ... ",
            self.size >> 20
        );
        let started = Instant::now();
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
        let status = run_bounded(&mut cmd, &log, Duration::from_secs(300))?;
        if !status.success() {
            bail!("fio layout failed ({status}): {}", tail(&log));
        }
        eprintln!("done ({:.0} s)", started.elapsed().as_secs_f64());
        Ok(())
    }

    /// fio's gfapi_async engine on the file.
    fn fio(&self, rw: &str) -> Result<Numbers> {
        let log = self.out_dir.join(format!("fio-{rw}.json"));
        let mut cmd = tied(&need("fio")?);
        cmd.envs(self.volume.env.iter().map(|(k, v)| (k, v))).args([
            "--name=ceiling",
            "--ioengine=gfapi_async",
            &format!("--volume={}", self.volume.name),
            &format!("--brick={HOST}"),
            &format!("--filename={FILE}"),
            &format!("--size={}", self.size),
            &format!("--rw={rw}"),
            &format!("--bs={}", self.bs),
            &format!("--iodepth={}", self.opts.qd),
            &format!("--runtime={}", self.opts.seconds),
            &format!("--ramp_time={RAMP_SECS}"),
            "--time_based",
            "--randrepeat=0",
            "--norandommap",
            "--lat_percentiles=1",
            "--output-format=json",
        ]);
        let status = run_bounded(&mut cmd, &log, self.limit())?;
        let text = std::fs::read_to_string(&log)?;
        if !status.success() {
            bail!("fio failed ({status}): {}", tail(&log));
        }
        parse_fio(&text).with_context(|| format!("reading fio's output {}", log.display()))
    }

    /// Starts the daemon of `kind`, runs every workload on it, kills it.
    fn on_daemon(&self, label: &str, kind: StoreKind) -> Vec<Measured> {
        let n = self.opts.rws.len();
        let daemon = match self.start_daemon(kind) {
            Ok(d) => d,
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!(
                    "[bench] {label:<34} ... FAILED to start: {}",
                    why.lines().next().unwrap_or("")
                );
                return vec![Measured::Failed(why); n];
            }
        };
        let results = self
            .opts
            .rws
            .iter()
            .map(|rw| {
                self.measure(&format!("{label} {rw}"), || {
                    let mut d = daemon.borrow_mut();
                    let before = (Instant::now(), cpu_ticks(d.child.id()));
                    let r = self.load(&d.url, rw, kind);
                    let after = (Instant::now(), cpu_ticks(d.child.id()));
                    if !d.is_running() {
                        bail!("the daemon died: {}", tail(&d.log));
                    }
                    let mut n = r?;
                    if let (Some(t0), Some(t1)) = (before.1, after.1) {
                        let wall = (after.0 - before.0).as_secs_f64();
                        let cpu = (t1 - t0) as f64 / clock_ticks_per_second();
                        n.target_cpu_pct = Some(cpu / wall * 100.0);
                    }
                    Ok(n)
                })
            })
            .collect();
        drop(daemon); // kills it
        results
    }

    fn start_daemon(&self, kind: StoreKind) -> Result<std::cell::RefCell<Daemon>> {
        let tag = match kind {
            StoreKind::TgtGlfs => "tgt-glfs",
            StoreKind::OursGlfs => "ours-glfs",
            StoreKind::TgtNull => "tgt-null",
            StoreKind::OursMemory => "ours-memory",
            StoreKind::OursMemoryCrc32c => "ours-memory-crc32c",
        };
        let log = self.out_dir.join(format!("{tag}.log"));
        let d = match kind {
            StoreKind::TgtGlfs => {
                Daemon::tgtd(&log, &self.volume.env, "glfs", &self.volume.backing_store())?
            }
            StoreKind::TgtNull => Daemon::tgtd(&log, &[], "null", "/dev/null")?,
            StoreKind::OursGlfs | StoreKind::OursMemory | StoreKind::OursMemoryCrc32c => {
                let binary = self.bins.ours.clone().map_err(anyhow::Error::msg)?;
                let mut args: Vec<String> = Vec::new();
                if kind == StoreKind::OursGlfs {
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

    /// iscsi-load on `url`.
    fn load(&self, url: &str, rw: &str, kind: StoreKind) -> Result<Numbers> {
        let log = self.out_dir.join(format!("load-{kind:?}-{rw}.log"));
        let mut cmd = tied(&self.bins.load);
        cmd.args(["--url", url, "--rw", rw])
            .arg(format!("--bs={}", self.bs))
            .arg(format!("--qd={}", self.opts.qd))
            .arg(format!("--seconds={}", self.opts.seconds))
            .arg(format!("--ramp={RAMP_SECS}"))
            .arg(format!("--initiator={INITIATOR}"))
            // The same range on every store: the file's (tgt's null LUN is 1 TiB).
            .arg("--lba-start=0")
            .arg(format!("--lba-count={}", self.size / 512));
        if kind == StoreKind::OursMemoryCrc32c {
            cmd.arg("--header-digest");
        }
        let status = run_bounded(&mut cmd, &log, self.limit())?;
        let text = std::fs::read_to_string(&log)?;
        let line = text.lines().rev().find(|l| l.trim_start().starts_with('{'));
        let Some(line) = line else {
            bail!("iscsi-load printed no result ({status}): {}", tail(&log));
        };
        let v = json::parse(line).context("iscsi-load's JSON line")?;
        let n = Numbers {
            iops: v.num("iops")?,
            mib_per_s: v.num("mib_per_s")?,
            lat_us_p50: v.num("lat_us_p50")?,
            lat_us_p99: v.num("lat_us_p99")?,
            errors: v.num("errors")? as u64,
            load_cpu_pct: v.num("cpu_pct").ok(),
            target_cpu_pct: None,
        };
        if !status.success() && n.errors == 0 {
            bail!("iscsi-load failed ({status}): {}", tail(&log));
        }
        Ok(n)
    }
}

/// Reads IOPS and total-latency percentiles of the only job from fio's JSON.
fn parse_fio(text: &str) -> Result<Numbers> {
    let start = text.find('{').context("no JSON in fio's output")?;
    let v = json::parse(&text[start..])?;
    let job = v
        .get("jobs")
        .and_then(|j| j.index(0))
        .context("no jobs[0] in fio's output")?;
    let errors = job.num("error").unwrap_or(0.0) as u64;
    let mut n = Numbers {
        iops: 0.0,
        mib_per_s: 0.0,
        lat_us_p50: 0.0,
        lat_us_p99: 0.0,
        errors,
        load_cpu_pct: Some(job.num("usr_cpu").unwrap_or(0.0) + job.num("sys_cpu").unwrap_or(0.0)),
        target_cpu_pct: None,
    };
    let mut ios = 0.0;
    for dir in ["read", "write"] {
        let Some(d) = job.get(dir) else { continue };
        let iops = d.num("iops")?;
        if iops <= 0.0 {
            continue;
        }
        n.iops += iops;
        n.mib_per_s += d.num("bw_bytes")? / 1048576.0;
        let pct = d
            .get("lat_ns")
            .and_then(|l| l.get("percentile"))
            .or_else(|| d.get("clat_ns").and_then(|l| l.get("percentile")))
            .context("no latency percentiles")?;
        // Weighted by IOPS when both directions ran (randrw).
        n.lat_us_p50 += pct.num("50.000000")? / 1000.0 * iops;
        n.lat_us_p99 += pct.num("99.000000")? / 1000.0 * iops;
        ios += iops;
    }
    if ios > 0.0 {
        n.lat_us_p50 /= ios;
        n.lat_us_p99 /= ios;
    }
    Ok(n)
}

/// A daemon under test, killed on drop.
struct Daemon {
    child: Child,
    url: String,
    log: PathBuf,
    /// tgtd's control socket number, for removing its socket files.
    tgt_control: Option<u32>,
}

impl Daemon {
    /// tgtd on a free port with target `TGT_IQN`, LUN 1 of `bstype` on `backing`.
    fn tgtd(log: &Path, env: &[(String, String)], bstype: &str, backing: &str) -> Result<Daemon> {
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
                child,
                url: format!("iscsi://127.0.0.1:{port}/{TGT_IQN}/1"),
                log: log.to_path_buf(),
                tgt_control: None,
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
            ])
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
        let port = util::free_port()?;
        let portal = SocketAddr::from(([127, 0, 0, 1], port));
        let child = tied(binary)
            .arg("--portal")
            .arg(portal.to_string())
            .args(["--target", OUR_IQN, "--lun", "0", "--log", "warn"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log)?)
            .stderr(std::fs::File::options().append(true).open(log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut d = Daemon {
            child,
            url: format!("iscsi://{portal}/{OUR_IQN}/0"),
            log: log.to_path_buf(),
            tgt_control: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !d.is_running() {
                bail!("glfs-iscsi exited at start: {}", tail(log));
            }
            if TcpStream::connect_timeout(&portal, Duration::from_millis(200)).is_ok() {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "glfs-iscsi did not listen on {portal} within 30 s: {}",
            tail(log)
        )
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGKILL: tgtd ignores SIGTERM while it has targets, and a benchmark has
        // nothing to flush.
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The run with the median IOPS (errors summed over all runs), and the IOPS
/// range when there was more than one run.
fn median(runs: &mut [Numbers]) -> (Numbers, Option<(f64, f64)>) {
    runs.sort_by(|a, b| a.iops.total_cmp(&b.iops));
    let mut n = runs[runs.len() / 2];
    n.errors = runs.iter().map(|r| r.errors).sum();
    let spread = (runs.len() > 1).then(|| (runs[0].iops, runs[runs.len() - 1].iops));
    (n, spread)
}

/// `12%`, or `-` when unknown.
fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.0}%"))
}

/// utime + stime of process `pid` (all its threads) in clock ticks, from
/// /proc/<pid>/stat (fields 14 and 15, counted after the `(comm)` field).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
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

/// Runs `cmd` with stdout and stderr into `log`, killing it after `limit`.
fn run_bounded(cmd: &mut Command, log: &Path, limit: Duration) -> Result<std::process::ExitStatus> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {}", util::display(cmd)))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not finish within {} s: {}",
                util::display(cmd),
                limit.as_secs(),
                tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
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

fn ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

/// The table: workload, fio ceiling, tgt, ours, ours/ceiling, ours/tgt, goal met?
pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "workload",
        "store",
        "fio ceiling",
        "tgt",
        "ours",
        "ours/ceiling",
        "ours/tgt",
        "goal",
        "met?",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let (goal, met) = r.goal();
        cells.push(vec![
            r.workload.clone(),
            if r.store == "glfs" {
                "glfs".into()
            } else if r.store == DIGESTS_ROW {
                "our memory, HeaderDigest=CRC32C".into()
            } else {
                "tgt null / our memory".into()
            },
            r.ceiling.cell(),
            r.tgt.cell(),
            r.ours.cell(),
            ratio(r.ours_over_ceiling()),
            ratio(r.ours_over_tgt()),
            goal.into(),
            match met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| cells.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (s, w))| {
                if c < 2 {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", line.join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    out.push_str("IOPS; fio ceiling = fio --ioengine=gfapi_async on the same file; tgt/ours driven by iscsi-load\n");
    out
}

fn render_json(opts: &BenchOptions, volume: &Volume, bs: u64, size: u64, rows: &[Row]) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(
        s,
        "  \"volume\": {},\n  \"volume_name\": {},\n  \"seconds\": {},\n  \"repeat\": {},\n  \"ramp_seconds\": {RAMP_SECS},\n  \"qd\": {},\n  \"bs\": {bs},\n  \"size\": {size},\n  \"goals\": {{\"ours_over_ceiling\": {GOAL_OVER_CEILING}, \"ours_memory_over_tgt_null\": {GOAL_OVER_TGT_NULL}}},",
        json::quote(volume_kind_name(opts.volume)),
        json::quote(&volume.name),
        opts.seconds,
        opts.repeat,
        opts.qd,
    );
    s.push_str("  \"rows\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let (goal, met) = r.goal();
        let num = |x: Option<f64>| x.map_or("null".into(), |v| format!("{v:.3}"));
        let _ = write!(
            s,
            "    {{\"workload\": {}, \"store\": {}, \"ceiling\": {}, \"tgt\": {}, \"ours\": {}, \"ours_over_ceiling\": {}, \"ours_over_tgt\": {}, \"goal\": {}, \"met\": {}}}",
            json::quote(&r.workload),
            json::quote(r.store),
            r.ceiling.to_json(),
            r.tgt.to_json(),
            r.ours.to_json(),
            num(r.ours_over_ceiling()),
            num(r.ours_over_tgt()),
            json::quote(goal),
            met.map_or("null".into(), |m| m.to_string()),
        );
        s.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ]\n}\n");
    s
}

/// Just enough JSON to read fio's and iscsi-load's output (xtask keeps its
/// dependencies to anyhow and clap).
mod json {
    use anyhow::{bail, Context, Result};

    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        pub fn index(&self, i: usize) -> Option<&Value> {
            match self {
                Value::Arr(a) => a.get(i),
                _ => None,
            }
        }

        /// The number under `key`.
        pub fn num(&self, key: &str) -> Result<f64> {
            match self.get(key) {
                Some(Value::Num(n)) => Ok(*n),
                Some(other) => bail!("{key} is not a number: {other:?}"),
                None => bail!("no {key}"),
            }
        }
    }

    /// A JSON string literal.
    pub fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// Parses one JSON value (trailing text is ignored).
    pub fn parse(text: &str) -> Result<Value> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        p.value()
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.s.get(self.i).copied()
        }

        fn expect(&mut self, b: u8) -> Result<()> {
            if self.peek() != Some(b) {
                bail!("expected '{}' at byte {}", b as char, self.i);
            }
            self.i += 1;
            Ok(())
        }

        fn value(&mut self) -> Result<Value> {
            match self.peek().context("unexpected end of JSON")? {
                b'{' => {
                    self.i += 1;
                    let mut m = Vec::new();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(Value::Obj(m));
                    }
                    loop {
                        let k = self.string()?;
                        self.expect(b':')?;
                        m.push((k, self.value()?));
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Obj(m));
                            }
                            _ => bail!("expected ',' or '}}' at byte {}", self.i),
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut a = Vec::new();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Ok(Value::Arr(a));
                    }
                    loop {
                        a.push(self.value()?);
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Arr(a));
                            }
                            _ => bail!("expected ',' or ']' at byte {}", self.i),
                        }
                    }
                }
                b'"' => Ok(Value::Str(self.string()?)),
                b't' => self.word("true", Value::Bool(true)),
                b'f' => self.word("false", Value::Bool(false)),
                b'n' => self.word("null", Value::Null),
                _ => self.number(),
            }
        }

        fn word(&mut self, w: &str, v: Value) -> Result<Value> {
            if self.s[self.i..].starts_with(w.as_bytes()) {
                self.i += w.len();
                Ok(v)
            } else {
                bail!("bad literal at byte {}", self.i)
            }
        }

        fn number(&mut self) -> Result<Value> {
            let start = self.i;
            while self.i < self.s.len()
                && matches!(
                    self.s[self.i],
                    b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                )
            {
                self.i += 1;
            }
            let t = std::str::from_utf8(&self.s[start..self.i])?;
            t.parse()
                .map(Value::Num)
                .with_context(|| format!("bad number {t:?} at byte {start}"))
        }

        fn string(&mut self) -> Result<String> {
            self.expect(b'"')?;
            let mut out = Vec::new();
            while let Some(&b) = self.s.get(self.i) {
                self.i += 1;
                match b {
                    b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                    b'\\' => {
                        let e = *self.s.get(self.i).context("bad escape")?;
                        self.i += 1;
                        match e {
                            b'n' => out.push(b'\n'),
                            b't' => out.push(b'\t'),
                            b'r' => out.push(b'\r'),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'u' => {
                                let hex = self.s.get(self.i..self.i + 4).context("bad \\u")?;
                                let code = u32::from_str_radix(std::str::from_utf8(hex)?, 16)?;
                                self.i += 4;
                                let c = char::from_u32(code).unwrap_or('\u{fffd}');
                                let mut buf = [0; 4];
                                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            }
                            other => out.push(other),
                        }
                    }
                    _ => out.push(b),
                }
            }
            bail!("unterminated string")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reader_reads_nested_values_and_escapes() {
        let v = json::parse(
            r#" {"a": [1, 2.5e3, -3], "b": {"c": "x\"y\u00e9"}, "d": true, "e": null} trailing"#,
        )
        .unwrap();
        assert_eq!(
            v.get("a").and_then(|a| a.index(1)),
            Some(&json::Value::Num(2500.0))
        );
        assert_eq!(
            v.get("b").and_then(|b| b.get("c")),
            Some(&json::Value::Str("x\"y\u{e9}".into()))
        );
        assert_eq!(v.get("d"), Some(&json::Value::Bool(true)));
        assert_eq!(v.get("e"), Some(&json::Value::Null));
        assert!(json::parse("{\"a\": }").is_err());
        assert_eq!(json::quote("a\"b\n"), "\"a\\\"b\\n\"");
    }

    /// The parts of fio 3.33's JSON output we read (`--lat_percentiles=1`).
    #[test]
    fn fio_json_gives_iops_bandwidth_and_total_latency() {
        let text = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "ceiling",
      "error" : 0,
      "read" : {
        "io_bytes" : 1000,
        "bw_bytes" : 78643200,
        "iops" : 19200.5,
        "clat_ns" : { "min" : 1, "percentile" : { "50.000000" : 999 } },
        "lat_ns" : {
          "min" : 1,
          "percentile" : { "1.000000" : 100, "50.000000" : 1597440, "99.000000" : 3031040 }
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
        assert_eq!(n.errors, 0);
    }

    fn ok(iops: f64) -> Measured {
        Measured::Ok(Numbers {
            iops,
            mib_per_s: iops / 256.0,
            lat_us_p50: 1.0,
            lat_us_p99: 2.0,
            errors: 0,
            load_cpu_pct: None,
            target_cpu_pct: None,
        })
    }

    #[test]
    fn goals_compare_with_the_right_column() {
        let glfs = Row {
            workload: "randread 4k".into(),
            store: "glfs",
            ceiling: ok(19000.0),
            tgt: ok(9800.0),
            ours: ok(17200.0),
        };
        assert_eq!(glfs.goal(), (">= 0.9x ceiling", Some(true)));
        let slow = Row {
            ours: ok(17000.0),
            ..glfs.clone()
        };
        assert_eq!(slow.goal().1, Some(false));
        let null = Row {
            workload: "randwrite 4k".into(),
            store: "null/memory",
            ceiling: Measured::NotRun,
            tgt: ok(40000.0),
            ours: ok(59000.0),
        };
        assert_eq!(null.goal(), (">= 1.5x tgt null", Some(false)));
        let failed = Row {
            ours: Measured::Failed("no target".into()),
            ..null.clone()
        };
        assert_eq!(failed.goal().1, None);
        let table = render_table(&[glfs, null, failed]);
        assert!(table.contains("| randread 4k  | glfs "), "{table}");
        assert!(table.contains("0.91x"), "{table}");
        assert!(table.contains("failed"), "{table}");
        assert!(table.contains(" NO |"), "{table}");
    }

    #[test]
    fn cpu_ticks_of_this_process_grow() {
        let t0 = cpu_ticks(std::process::id()).expect("/proc/self/stat");
        // Spin until the count moves: on a loaded machine 60 ms of wall time may not be a
        // whole tick of CPU time, so only a generous bound (not a duration) is asserted.
        let start = Instant::now();
        let mut x = 0u64;
        let mut t1 = t0;
        while t1 == t0 && start.elapsed() < Duration::from_secs(60) {
            for _ in 0..1_000_000 {
                x = x.wrapping_mul(31).wrapping_add(1);
            }
            t1 = cpu_ticks(std::process::id()).unwrap();
        }
        std::hint::black_box(x);
        assert!(t1 > t0, "{t0} -> {t1} after a minute of spinning");
        assert!(clock_ticks_per_second() >= 1.0);
    }

    #[test]
    fn median_run_and_spread() {
        let mut runs = vec![];
        for (iops, errors) in [(300.0, 0), (100.0, 1), (200.0, 2)] {
            let Measured::Ok(mut n) = ok(iops) else {
                unreachable!()
            };
            n.errors = errors;
            runs.push(n);
        }
        let (n, spread) = median(&mut runs);
        assert_eq!(n.iops, 200.0);
        assert_eq!(n.errors, 3);
        assert_eq!(spread, Some((100.0, 300.0)));
        let (one, none) = median(&mut runs[..1]);
        assert_eq!((one.iops, none), (100.0, None));
    }

    #[test]
    fn results_json_reads_back() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            opts: BenchOptions,
        }
        let opts = Cli::parse_from(["bench", "--volume", "live", "--seconds", "3"]).opts;
        assert_eq!((opts.qd, opts.repeat, opts.rws.len()), (32, 1, 2));
        let volume = Volume {
            name: "glfsbench".into(),
            env: vec![],
            library: None,
        };
        let rows = [
            Row {
                workload: "randread 4k".into(),
                store: "glfs",
                ceiling: ok(19000.0),
                tgt: Measured::Failed("tgtd \"x\"\nbroke".into()),
                ours: ok(18000.0),
            },
            Row {
                workload: "randread 4k".into(),
                store: "null/memory",
                ceiling: Measured::NotRun,
                tgt: ok(1000.0),
                ours: ok(2000.0),
            },
        ];
        let text = render_json(&opts, &volume, 4096, 256 << 20, &rows);
        let v = json::parse(&text).unwrap();
        assert_eq!(v.get("volume"), Some(&json::Value::Str("live".into())));
        assert_eq!(v.num("seconds").unwrap(), 3.0);
        let r0 = v.get("rows").and_then(|r| r.index(0)).unwrap();
        assert_eq!(r0.get("ceiling").unwrap().num("iops").unwrap(), 19000.0);
        assert_eq!(
            r0.get("tgt").and_then(|t| t.get("error")),
            Some(&json::Value::Str("tgtd \"x\"\nbroke".into()))
        );
        assert!((r0.num("ours_over_ceiling").unwrap() - 0.947).abs() < 1e-9);
        assert_eq!(r0.get("met"), Some(&json::Value::Bool(true)));
        let r1 = v.get("rows").and_then(|r| r.index(1)).unwrap();
        assert_eq!(r1.get("ceiling"), Some(&json::Value::Null));
        assert_eq!(r1.num("ours_over_tgt").unwrap(), 2.0);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(units::parse_size("4k").unwrap(), 4096);
        assert_eq!(units::parse_size("256M").unwrap(), 256 << 20);
        assert!(units::parse_size("1q").is_err());
        assert!(units::parse_size("0").is_err());
    }
}
