//! `iscsi-load-check --expect FILE... [--volume V --host H --path P] [--copy FILE...]`:
//! checks every slot named by the expectation files that `iscsi-load --verify --expect-out`
//! wrote, oldest first: a later file's expectation of a slot replaces an earlier one's, or
//! (`or_earlier`) adds to it. A slot no run wrote before may also hold zeroes (the file's
//! initial content).
//!
//! With `--volume` it reads the LUN's file through libgfapi, as a client of its own (not
//! the target). With `--copy` (repeatable) it reads copies of that file directly, such as
//! each replica's brick file, checks each, and compares them block by block: copies that
//! differ in a block where each holds one of the slot's acceptable contents hold different
//! outcomes of a write never acknowledged (in doubt), which is counted apart.
//!
//! Prints one JSON line {"slots_checked":..,"blocks_checked":..,"wrong_blocks":..} (with
//! `--copy` also "block_size", "copies", "copies_differ", "copies_differ_in_doubt" and
//! "copies_differ_elsewhere": blocks outside every slot) and exits 1 on any wrong block
//! or a difference between copies that is not in doubt, 2 when the check could not run.

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Parser};
use iscsi_load::verify::{check_block, BlockCheck, Expectation};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "iscsi-load-check", version)]
#[command(group(ArgGroup::new("source").required(true).multiple(true).args(["volume", "copies"])))]
struct Args {
    /// The Gluster volume.
    #[arg(long, requires_all = ["hosts", "path"])]
    volume: Option<String>,
    /// Volfile server(s).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// The LUN's file on the volume.
    #[arg(long)]
    path: Option<String>,
    /// Expectation files, oldest first.
    #[arg(long = "expect", required = true)]
    expect: Vec<PathBuf>,
    /// A copy of the LUN's file to read directly (a replica's brick file); repeatable, the
    /// copies are also compared with each other.
    #[arg(long = "copy")]
    copies: Vec<PathBuf>,
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

/// What the expectation files say: each slot's acceptable contents, and the geometry.
struct Expected {
    slots: BTreeMap<u64, Vec<Alternative>>,
    block_size: usize,
    blocks_per_io: usize,
}

/// Counts of one reading of the slots.
#[derive(Default)]
struct Tally {
    blocks: u64,
    wrong: u64,
    messages: Vec<String>,
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

fn load_expectations(files: &[PathBuf]) -> Result<Expected> {
    let mut slots: BTreeMap<u64, Vec<Alternative>> = BTreeMap::new();
    let mut geometry: Option<(u32, u32)> = None;
    for path in files {
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
    Ok(Expected {
        slots,
        block_size: block_size as usize,
        blocks_per_io: blocks_per_io as usize,
    })
}

/// Whether `block`, read at `at`, holds one of `alts`.
fn acceptable(block: &[u8], at: u64, alts: &[Alternative]) -> bool {
    alts.iter().any(|alt| match alt {
        None => block.iter().all(|&b| b == 0),
        Some((run, g)) => check_block(block, at, *run, &[*g]) == BlockCheck::Good,
    })
}

/// Why `block` at `at` holds none of `alts`, for the report.
fn why_wrong(block: &[u8], at: u64, alts: &[Alternative]) -> String {
    let verdicts: Vec<String> = alts
        .iter()
        .map(|alt| match alt {
            None => "not zeroes".to_string(),
            Some((run, g)) => {
                format!("{:?} for run {run:#x}", check_block(block, at, *run, &[*g]))
            }
        })
        .collect();
    format!("lba {at}: {}", verdicts.join(", "))
}

/// Checks every slot of `expected`, reading each with `read(lba, buf)`.
fn check_slots(
    expected: &Expected,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<()>,
) -> Result<Tally> {
    let bs = expected.block_size;
    let mut buf = vec![0u8; bs * expected.blocks_per_io];
    let mut t = Tally::default();
    for (lba, alts) in &expected.slots {
        read(*lba, &mut buf).with_context(|| format!("reading lba {lba}"))?;
        for (i, block) in buf.chunks(bs).enumerate() {
            let at = lba + i as u64;
            t.blocks += 1;
            if !acceptable(block, at, alts) {
                t.wrong += 1;
                if t.messages.len() < 8 {
                    t.messages.push(why_wrong(block, at, alts));
                }
            }
        }
    }
    Ok(t)
}

/// Reads the LUN's file through libgfapi and checks it.
fn check_through_gfapi(args: &Args, volume: &str, expected: &Expected) -> Result<Tally> {
    let lib = gfapi::Gfapi::load(args.gfapi_library.as_deref())?;
    let servers: Vec<gfapi::Server> = args.hosts.iter().map(gfapi::Server::tcp).collect();
    let vol = Arc::new(
        gfapi::Volume::connect(&lib, volume, &servers, None, 4)
            .with_context(|| format!("cannot mount {volume}"))?,
    );
    let path = args
        .path
        .as_deref()
        .context("--path is required with --volume")?;
    let file = gfapi::File::open(&vol, path, libc::O_RDONLY)
        .with_context(|| format!("cannot open {path}"))?;
    let bs = expected.block_size as u64;
    let tally = check_slots(expected, |lba, buf| {
        file.pread(buf, lba * bs)?;
        Ok(())
    });
    // No glfs_close/glfs_fini: they take seconds (field failure #7) and a read-only
    // client has nothing to flush; the process exit closes its connections.
    std::mem::forget(file);
    std::mem::forget(vol);
    tally
}

/// How copies of the file compare, slot block by slot block.
#[derive(Debug, Default, PartialEq, Eq)]
struct Comparison {
    /// Blocks in which the copies are not all equal.
    differ: u64,
    /// Of those, blocks in which every copy holds one of the slot's acceptable contents:
    /// different outcomes of a write in doubt.
    in_doubt: u64,
    /// Blocks outside every slot (no run wrote there) in which the copies differ.
    elsewhere: u64,
    messages: Vec<String>,
}

/// Each copy's first 32 bytes of a block in hex (a verified block's header: magic, LBA,
/// generation and run id, little-endian), for a message.
fn heads(blocks: &[Vec<u8>]) -> String {
    let hex = |b: &Vec<u8>| -> String { b.iter().take(32).map(|x| format!("{x:02x}")).collect() };
    blocks
        .iter()
        .enumerate()
        .map(|(i, b)| format!("copy {i}: {}", hex(b)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares `copies` (whole files) over the slots of `expected`, and over the rest of
/// the longest copy.
fn compare_copies(expected: &Expected, copies: &[Vec<u8>]) -> Comparison {
    let bs = expected.block_size;
    let mut c = Comparison::default();
    let block_of = |copy: &[u8], at: u64| -> Vec<u8> {
        let start = (at as usize).saturating_mul(bs).min(copy.len());
        let end = start.saturating_add(bs).min(copy.len());
        let mut b = copy[start..end].to_vec();
        b.resize(bs, 0); // past the end a file reads as zeroes
        b
    };
    let longest = copies.iter().map(Vec::len).max().unwrap_or(0);
    let mut in_slot = vec![false; longest.div_ceil(bs)];
    for (lba, alts) in &expected.slots {
        for i in 0..expected.blocks_per_io as u64 {
            let at = lba + i;
            if let Some(flag) = in_slot.get_mut(at as usize) {
                *flag = true;
            }
            let blocks: Vec<Vec<u8>> = copies.iter().map(|copy| block_of(copy, at)).collect();
            if blocks.iter().all(|b| *b == blocks[0]) {
                continue;
            }
            c.differ += 1;
            let in_doubt = blocks.iter().all(|b| acceptable(b, at, alts));
            c.in_doubt += u64::from(in_doubt);
            if c.messages.len() < 8 {
                let what = if in_doubt {
                    "each holds an outcome of a write in doubt"
                } else {
                    "not all hold an acceptable content"
                };
                c.messages.push(format!(
                    "lba {at}: the copies differ, {what}; {}",
                    heads(&blocks)
                ));
            }
        }
    }
    for (at, _) in in_slot.iter().enumerate().filter(|(_, &slot)| !slot) {
        let blocks: Vec<Vec<u8>> = copies
            .iter()
            .map(|copy| block_of(copy, at as u64))
            .collect();
        if blocks.iter().any(|b| *b != blocks[0]) {
            c.elsewhere += 1;
            if c.messages.len() < 8 {
                c.messages.push(format!(
                    "lba {at}: the copies differ where no run wrote; {}",
                    heads(&blocks)
                ));
            }
        }
    }
    c
}

fn check(args: Args) -> Result<bool> {
    let expected = load_expectations(&args.expect)?;
    let mut report = serde_json::json!({ "slots_checked": expected.slots.len() });
    let mut ok = true;
    if let Some(volume) = &args.volume {
        let t = check_through_gfapi(&args, volume, &expected)?;
        for m in &t.messages {
            eprintln!("iscsi-load-check: wrong block: {m}");
        }
        ok &= t.wrong == 0;
        report["blocks_checked"] = t.blocks.into();
        report["wrong_blocks"] = t.wrong.into();
        report["messages"] = t.messages.into();
    }
    if !args.copies.is_empty() {
        let mut contents = Vec::new();
        let mut per_copy = Vec::new();
        for path in &args.copies {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let bs = expected.block_size as u64;
            let t = check_slots(&expected, |lba, buf| {
                // Short reads past the end leave zeroes, as a sparse file reads.
                buf.fill(0);
                let mut done = 0;
                while done < buf.len() {
                    match file.read_at(&mut buf[done..], lba * bs + done as u64)? {
                        0 => break,
                        n => done += n,
                    }
                }
                Ok(())
            })?;
            for m in &t.messages {
                eprintln!("iscsi-load-check: {}: wrong block: {m}", path.display());
            }
            ok &= t.wrong == 0;
            per_copy.push(serde_json::json!({
                "path": path.display().to_string(),
                "wrong_blocks": t.wrong,
                "messages": t.messages,
            }));
            contents.push(
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            );
        }
        let c = compare_copies(&expected, &contents);
        for m in &c.messages {
            eprintln!("iscsi-load-check: copies: {m}");
        }
        ok &= c.differ == c.in_doubt && c.elsewhere == 0;
        report["block_size"] = expected.block_size.into();
        report["copies"] = per_copy.into();
        report["copies_differ"] = c.differ.into();
        report["copies_differ_in_doubt"] = c.in_doubt.into();
        report["copies_differ_elsewhere"] = c.elsewhere.into();
    }
    println!("{report}");
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iscsi_load::verify::stamp_block;

    const BS: usize = 512;

    fn stamped(lba: u64, generation: u64, run: u64) -> Vec<u8> {
        let mut b = vec![0u8; BS];
        stamp_block(&mut b, lba, generation, run);
        b
    }

    /// Slot 0 acknowledged at generation 3 of run 7; slot 1 in doubt between generations
    /// 4 and 5 of run 7; slot 2 written in doubt over the file's zeroes.
    fn expected() -> Expected {
        let mut slots = BTreeMap::new();
        slots.insert(0, vec![Some((7, 3))]);
        slots.insert(1, vec![Some((7, 4)), Some((7, 5))]);
        slots.insert(2, vec![Some((7, 6)), None]);
        Expected {
            slots,
            block_size: BS,
            blocks_per_io: 1,
        }
    }

    fn file(blocks: &[Vec<u8>]) -> Vec<u8> {
        blocks.concat()
    }

    #[test]
    fn copies_that_differ_only_in_writes_in_doubt_are_counted_as_such() {
        let zero = vec![0u8; BS];
        let a = file(&[stamped(0, 3, 7), stamped(1, 4, 7), stamped(2, 6, 7)]);
        let b = file(&[stamped(0, 3, 7), stamped(1, 5, 7), zero]);
        let c = compare_copies(&expected(), &[a.clone(), b, a]);
        assert_eq!((c.differ, c.in_doubt), (2, 2), "{:?}", c.messages);
        // Each difference is named with every copy's header: "GLFSVRFY", LBA 1,
        // generation 4 or 5, run 7 (little-endian words).
        let m = &c.messages[0];
        assert!(m.starts_with("lba 1: the copies differ, each holds"), "{m}");
        let header =
            |g: u8| format!("474c46535652465901000000000000000{g}000000000000000700000000000000");
        assert!(m.contains(&format!("copy 0: {}", header(4))), "{m}");
        assert!(m.contains(&format!("copy 1: {}", header(5))), "{m}");
    }

    #[test]
    fn a_difference_in_an_acknowledged_block_is_not_in_doubt() {
        let a = file(&[stamped(0, 3, 7), stamped(1, 4, 7)]);
        // The second copy holds an older generation of the acknowledged slot 0.
        let b = file(&[stamped(0, 2, 7), stamped(1, 4, 7)]);
        let c = compare_copies(&expected(), &[a, b]);
        assert_eq!((c.differ, c.in_doubt), (1, 0));
        assert_eq!(c.messages.len(), 1);
        assert!(c.messages[0].starts_with("lba 0:"), "{:?}", c.messages);
    }

    #[test]
    fn a_difference_where_no_run_wrote_is_counted_apart() {
        let zero = vec![0u8; BS];
        let mut junk = zero.clone();
        junk[7] = 1;
        // Slots 0 to 2 as expected; block 3 belongs to no slot.
        let base = [stamped(0, 3, 7), stamped(1, 4, 7), stamped(2, 6, 7)];
        let a = file(&[&base[..], &[zero][..]].concat());
        let b = file(&[&base[..], &[junk][..]].concat());
        let c = compare_copies(&expected(), &[a, b]);
        assert_eq!((c.differ, c.in_doubt, c.elsewhere), (0, 0, 1));
        assert!(c.messages[0].starts_with("lba 3:"), "{:?}", c.messages);
    }

    #[test]
    fn equal_copies_differ_nowhere_and_a_short_copy_reads_as_zeroes() {
        let a = file(&[stamped(0, 3, 7), stamped(1, 5, 7)]);
        assert_eq!(
            compare_copies(&expected(), &[a.clone(), a.clone()]),
            Comparison::default()
        );
        // Slot 2 lies past the end of both copies: zeroes, acceptable and equal.
        let t = check_slots(&expected(), |lba, buf| {
            buf.fill(0);
            let start = lba as usize * BS;
            if let Some(src) = a.get(start..start + BS) {
                buf.copy_from_slice(src);
            }
            Ok(())
        })
        .expect("reads");
        assert_eq!((t.blocks, t.wrong), (3, 0));
    }

    #[test]
    fn check_slots_names_a_wrong_block() {
        let t = check_slots(&expected(), |lba, buf| {
            buf.copy_from_slice(&stamped(lba, 9, 7));
            Ok(())
        })
        .expect("reads");
        assert_eq!((t.blocks, t.wrong), (3, 3));
        assert!(t.messages[0].contains("Stale(9)"), "{:?}", t.messages);
    }
}
