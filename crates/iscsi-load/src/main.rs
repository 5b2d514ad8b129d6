//! `iscsi-load --url iscsi://host:port/iqn/lun [--rw randread] [--bs 4k] [--qd 32]
//! [--seconds 10]`: prints one JSON line and exits 1 when any command failed.

use anyhow::Result;
use clap::Parser;
use iscsi_load::{run_sessions, run_verified, Rw, Session, Verifier, Workload};
use std::process::ExitCode;
use std::time::Duration;

/// Random-I/O load on one iSCSI LUN through libiscsi's async API; prints
/// {iops, mib_per_s, lat_us_p50, lat_us_p99, errors, ...} as one JSON line.
#[derive(Debug, Parser)]
#[command(name = "iscsi-load", version)]
struct Args {
    /// The LUN: iscsi://host[:port]/target-iqn/lun.
    #[arg(long)]
    url: String,
    /// Access pattern: randread, randwrite, randrw, read or write (sequential).
    #[arg(long, default_value = "randread")]
    rw: Rw,
    /// Bytes per command (a multiple of the LUN's block size), e.g. 4k.
    #[arg(long, default_value = "4k", value_parser = units::parse_size)]
    bs: u64,
    /// Commands kept in flight.
    #[arg(long, default_value_t = 32)]
    qd: u32,
    /// Seconds of load after the ramp (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// randrw: percentage of reads.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    rwmixread: u8,
    /// First LUN block of the range commands go to.
    #[arg(long, default_value_t = 0)]
    lba_start: u64,
    /// Number of LUN blocks in the range (default: to the end of the LUN).
    #[arg(long)]
    lba_count: Option<u64>,
    /// Seed of the offset sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Offer HeaderDigest=CRC32C only (a CRC32C over every PDU header).
    #[arg(long)]
    header_digest: bool,
    /// The initiator's iSCSI name.
    #[arg(long, default_value = "iqn.2026-11.io.glfs-iscsi:iscsi-load")]
    initiator: String,
    /// Verify data: every block written carries its LBA and a generation, every read
    /// answered GOOD is checked; prints a second JSON line {"verify": {...}} and exits 1
    /// on any wrong block.
    #[arg(long)]
    verify: bool,
    /// With --verify: the run id stamped into blocks (default: from the clock and pid).
    #[arg(long)]
    run_id: Option<u64>,
    /// Seconds after which a command without an answer is given up (counted as an error).
    #[arg(long, default_value_t = iscsi_load::COMMAND_TIMEOUT_SECS)]
    timeout: i32,
    /// With --verify: a SYNCHRONIZE CACHE(10) after every N acknowledged writes.
    #[arg(long)]
    sync_every: Option<u32>,
    /// Send every write with FUA.
    #[arg(long)]
    fua: bool,
    /// With --verify: write what each written slot must hold to this file, one JSON line
    /// per slot {"lba":..,"generations":[..],"or_earlier":..}, plus a first line {"run_id":..,"block_size":..,"blocks_per_io":..}.
    #[arg(long)]
    expect_out: Option<std::path::PathBuf>,
    /// Sessions run side by side, each on its own thread with --qd commands in
    /// flight, each initiator name with `-s<N>` appended; the result sums them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    sessions: u32,
    /// Send each write command's header and data by two sends, two TCP segments, as
    /// libiscsi does by itself (by default they go out corked as one, as Linux's
    /// initiator sends a PDU, and a round's writes together).
    #[arg(long)]
    split_writes: bool,
}

fn seconds(what: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("--{what} {s} is not a duration"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match main_inner(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("iscsi-load: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) when every command succeeded.
fn main_inner(args: Args) -> Result<bool> {
    let workload = Workload {
        rw: args.rw,
        block_size: u32::try_from(args.bs)
            .map_err(|_| anyhow::anyhow!("--bs {} is too large", args.bs))?,
        queue_depth: args.qd,
        duration: seconds("seconds", args.seconds)?,
        ramp: seconds("ramp", args.ramp)?,
        read_percent: args.rwmixread,
        lba_start: args.lba_start,
        lba_count: args.lba_count,
        seed: args.seed,
        split_writes: args.split_writes,
        ..Workload::default()
    };
    if args.sessions > 1 {
        anyhow::ensure!(
            !args.verify && !args.fua && args.sync_every.is_none(),
            "--sessions above 1 does not go with --verify, --fua or --sync-every"
        );
        let outcome = run_sessions(
            &args.url,
            &args.initiator,
            args.sessions,
            &workload,
            args.header_digest,
        )?;
        for msg in &outcome.error_messages {
            eprintln!("iscsi-load: error: {msg}");
        }
        println!("{}", outcome.report.to_json());
        return Ok(outcome.report.errors == 0);
    }
    let session =
        Session::connect_with(&args.url, &args.initiator, args.header_digest, args.timeout)?;
    let mut verifier = if args.verify {
        let run_id = args.run_id.unwrap_or_else(default_run_id);
        Some(
            Verifier::for_session(run_id, &session, &workload)
                .map_err(anyhow::Error::msg)?
                .with_fua(args.fua)
                .with_sync_every(args.sync_every),
        )
    } else {
        anyhow::ensure!(
            !args.fua && args.sync_every.is_none(),
            "--fua and --sync-every need --verify"
        );
        None
    };
    let outcome = run_verified(&session, &workload, verifier.as_mut())?;
    let block_size = session.block_size();
    drop(session);
    for msg in &outcome.error_messages {
        eprintln!("iscsi-load: error: {msg}");
    }
    println!("{}", outcome.report.to_json());
    let mut good = outcome.report.errors == 0;
    if let Some(v) = &verifier {
        for msg in &v.report().messages {
            eprintln!("iscsi-load: wrong block: {msg}");
        }
        println!("{}", serde_json::json!({ "verify": v.report() }));
        good &= v.report().wrong_blocks == 0;
        if let Some(path) = &args.expect_out {
            let mut text = serde_json::json!({
                "run_id": v.run_id(),
                "block_size": block_size,
                "blocks_per_io": workload.block_size / block_size,
            })
            .to_string();
            text.push('\n');
            for e in v.expectations() {
                text.push_str(&serde_json::to_string(&e)?);
                text.push('\n');
            }
            std::fs::write(path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(good)
}

/// A run id unlikely to repeat: the clock's nanoseconds mixed with the process id.
fn default_run_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}
