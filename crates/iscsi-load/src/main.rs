//! `iscsi-load --url iscsi://host:port/iqn/lun [--rw randread] [--bs 4k] [--qd 32]
//! [--seconds 10]`: prints one JSON line and exits 1 when any command failed.

use anyhow::Result;
use clap::Parser;
use iscsi_load::{run, Rw, Session, Workload};
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
    /// Access pattern: randread, randwrite or randrw.
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
        ..Workload::default()
    };
    let session = Session::connect_with_digest(&args.url, &args.initiator, args.header_digest)?;
    let outcome = run(&session, &workload)?;
    drop(session);
    for msg in &outcome.error_messages {
        eprintln!("iscsi-load: error: {msg}");
    }
    println!("{}", outcome.report.to_json());
    Ok(outcome.report.errors == 0)
}
