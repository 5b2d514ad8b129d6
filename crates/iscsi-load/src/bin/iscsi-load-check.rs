//! `iscsi-load-check --volume V --host H --path P --expect FILE...`: reads a LUN's file
//! through libgfapi, as a client of its own (not the target), and checks every slot named
//! by the expectation files that `iscsi-load --verify --expect-out` wrote, oldest first:
//! a later file's expectation of a slot replaces an earlier one's, or (`or_earlier`) adds
//! to it. A slot no run wrote before may also hold zeroes (the file's initial content).
//! Prints one JSON line {"slots_checked":..,"blocks_checked":..,"wrong_blocks":..} and
//! exits 1 on any wrong block, 2 when the check could not run.

use anyhow::{bail, Context, Result};
use clap::Parser;
use iscsi_load::verify::{check_block, BlockCheck, Expectation};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "iscsi-load-check", version)]
struct Args {
    /// The Gluster volume.
    #[arg(long)]
    volume: String,
    /// Volfile server(s).
    #[arg(long = "host", required = true)]
    hosts: Vec<String>,
    /// The LUN's file on the volume.
    #[arg(long)]
    path: String,
    /// Expectation files, oldest first.
    #[arg(long = "expect", required = true)]
    expect: Vec<PathBuf>,
    /// libgfapi to load (default: libgfapi.so.0).
    #[arg(long)]
    gfapi_library: Option<PathBuf>,
}

/// One acceptable content of a block: `(run id, generation)`, or zeroes for `None`.
type Alternative = Option<(u64, u64)>;

#[derive(serde::Deserialize)]
struct Header {
    run_id: u64,
    block_size: u32,
    blocks_per_io: u32,
}

fn main() -> ExitCode {
    match check(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("iscsi-load-check: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check(args: Args) -> Result<bool> {
    let mut slots: BTreeMap<u64, Vec<Alternative>> = BTreeMap::new();
    let mut geometry: Option<(u32, u32)> = None;
    for path in &args.expect {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text.lines();
        let header: Header = serde_json::from_str(lines.next().unwrap_or_default())
            .with_context(|| format!("{}: no header line", path.display()))?;
        let g = (header.block_size, header.blocks_per_io);
        if geometry.is_some_and(|known| known != g) {
            bail!(
                "{}: block size or command size differs from the files before",
                path.display()
            );
        }
        geometry = Some(g);
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let e: Expectation = serde_json::from_str(line)
                .with_context(|| format!("{}: bad line {line:?}", path.display()))?;
            let mut alts: Vec<Alternative> = e
                .generations
                .iter()
                .map(|&g| Some((header.run_id, g)))
                .collect();
            if e.or_earlier {
                alts.extend(slots.get(&e.lba).cloned().unwrap_or_else(|| vec![None]));
            }
            slots.insert(e.lba, alts);
        }
    }
    let Some((block_size, blocks_per_io)) = geometry else {
        bail!("no expectation file");
    };
    let lib = gfapi::Gfapi::load(args.gfapi_library.as_deref())?;
    let servers: Vec<gfapi::Server> = args.hosts.iter().map(gfapi::Server::tcp).collect();
    let vol = Arc::new(
        gfapi::Volume::connect(&lib, &args.volume, &servers, None, 4)
            .with_context(|| format!("cannot mount {}", args.volume))?,
    );
    let file = gfapi::File::open(&vol, &args.path, libc::O_RDONLY)
        .with_context(|| format!("cannot open {}", args.path))?;
    let bs = block_size as usize;
    let mut buf = vec![0u8; bs * blocks_per_io as usize];
    let (mut blocks, mut wrong, mut messages) = (0u64, 0u64, Vec::new());
    for (lba, alts) in &slots {
        file.pread(&mut buf, lba * u64::from(block_size))
            .with_context(|| format!("reading lba {lba}"))?;
        for (i, block) in buf.chunks(bs).enumerate() {
            let at = lba + i as u64;
            blocks += 1;
            let good = alts.iter().any(|alt| match alt {
                None => block.iter().all(|&b| b == 0),
                Some((run, g)) => check_block(block, at, *run, &[*g]) == BlockCheck::Good,
            });
            if !good {
                wrong += 1;
                if messages.len() < 8 {
                    let verdicts: Vec<String> = alts
                        .iter()
                        .map(|alt| match alt {
                            None => "not zeroes".to_string(),
                            Some((run, g)) => {
                                format!(
                                    "{:?} for run {run:#x}",
                                    check_block(block, at, *run, &[*g])
                                )
                            }
                        })
                        .collect();
                    messages.push(format!("lba {at}: {}", verdicts.join(", ")));
                }
            }
        }
    }
    // No glfs_close/glfs_fini: they take seconds (field failure #7) and a read-only
    // client has nothing to flush; the process exit closes its connections.
    std::mem::forget(file);
    std::mem::forget(vol);
    for m in &messages {
        eprintln!("iscsi-load-check: wrong block: {m}");
    }
    println!(
        "{}",
        serde_json::json!({
            "slots_checked": slots.len(),
            "blocks_checked": blocks,
            "wrong_blocks": wrong,
            "messages": messages,
        })
    );
    Ok(wrong == 0)
}
