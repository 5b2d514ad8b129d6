//! Verified load against Debian's tgtd (a target that is not ours): what a verified run
//! writes is on the LUN's file block by block with its LBA and generation, reads of it
//! check good, and bytes changed behind the target's back are caught although every
//! read returns GOOD.
//!
//! Skips (with a `[skip]` line) when tgtd cannot run here; under CI that fails instead.

use iscsi_load::verify::{check_block, BlockCheck};
use iscsi_load::{run_verified, Rw, Session, Verifier, Workload};
use std::time::Duration;
use testkit::tgtd::Tgtd;

const INITIATOR: &str = "iqn.2026-11.io.glfs-iscsi:verify-test";

#[test]
fn verified_load_lands_stamped_blocks_and_catches_changed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lun.img");
    let size = 4u64 << 20;
    std::fs::File::create(&file).unwrap().set_len(size).unwrap();
    let Some(tgtd) =
        Tgtd::start_or_skip("verified_load_lands_stamped_blocks_and_catches_changed_bytes")
    else {
        return;
    };
    let url = tgtd
        .add_lun(
            "iqn.2026-11.io.glfs-iscsi:verify",
            "rdwr",
            file.to_str().unwrap(),
        )
        .unwrap();
    let session = Session::connect(&url, INITIATOR).unwrap();
    let mixed = Workload {
        rw: Rw::RandRw,
        read_percent: 50,
        queue_depth: 8,
        duration: Duration::from_millis(1500),
        // 256 slots of 4k: each is written and read many times.
        lba_count: Some(2048),
        ..Workload::default()
    };
    let mut v = Verifier::for_session(0x7e57, &session, &mixed).unwrap();
    let outcome = run_verified(&session, &mixed, Some(&mut v)).unwrap();
    assert_eq!(outcome.report.errors, 0, "{:?}", outcome.error_messages);
    let r = v.report().clone();
    assert_eq!(r.wrong_blocks, 0, "{:?}", r.messages);
    assert!(r.writes_acked > 100, "{r:?}");
    assert!(r.reads_checked > 20, "{r:?}");
    assert_eq!(r.blocks_checked, r.reads_checked * 8);

    // On the file, every written slot holds its blocks stamped with their own LBA and the
    // generation the run expects.
    let data = std::fs::read(&file).unwrap();
    let expected = v.expectations();
    assert!(expected.len() > 100, "{} slots written", expected.len());
    for e in &expected {
        assert!(!e.or_earlier, "no write failed: {e:?}");
        for b in 0..8 {
            let at = e.lba + b;
            let block = &data[(at * 512) as usize..][..512];
            assert_eq!(
                check_block(block, at, 0x7e57, &e.generations),
                BlockCheck::Good
            );
        }
    }

    // Change one byte of a written block and swap two others behind tgt's back: the next
    // reads answer GOOD, and the verifier counts them as wrong.
    let (victim, a, b) = (expected[0].lba, expected[1].lba, expected[2].lba);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        let mut flipped = data[(victim * 512) as usize..][..512].to_vec();
        flipped[100] ^= 0x40;
        f.write_all_at(&flipped, victim * 512).unwrap();
        f.write_all_at(&data[(b * 512) as usize..][..512], a * 512)
            .unwrap();
        f.sync_all().unwrap();
    }
    let reads = Workload {
        rw: Rw::RandRead,
        queue_depth: 4,
        duration: Duration::from_millis(1500),
        ..mixed.clone()
    };
    let outcome = run_verified(&session, &reads, Some(&mut v)).unwrap();
    assert_eq!(outcome.report.errors, 0, "{:?}", outcome.error_messages);
    let r = v.report();
    assert!(r.wrong_blocks >= 2, "{r:?}");
    let text = r.messages.join("\n");
    assert!(text.contains(&format!("lba {victim}: Corrupt")), "{text}");
    assert!(text.contains(&format!("lba {a}: WrongLba({b})")), "{text}");
}

#[test]
fn verified_load_with_synchronize_cache_every_few_writes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lun.img");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let Some(tgtd) = Tgtd::start_or_skip("verified_load_with_synchronize_cache_every_few_writes")
    else {
        return;
    };
    let url = tgtd
        .add_lun(
            "iqn.2026-11.io.glfs-iscsi:verify-sync",
            "rdwr",
            file.to_str().unwrap(),
        )
        .unwrap();
    let session = Session::connect(&url, INITIATOR).unwrap();
    let w = Workload {
        rw: Rw::RandRw,
        read_percent: 30,
        queue_depth: 8,
        duration: Duration::from_millis(1000),
        lba_count: Some(2048),
        ..Workload::default()
    };
    let mut v = Verifier::for_session(0x5c, &session, &w)
        .unwrap()
        .with_sync_every(Some(4));
    let outcome = run_verified(&session, &w, Some(&mut v)).unwrap();
    assert_eq!(outcome.report.errors, 0, "{:?}", outcome.error_messages);
    let r = v.report();
    assert_eq!(r.wrong_blocks, 0, "{:?}", r.messages);
    assert!(r.syncs_acked > 10, "{r:?}");
    // Synchronized slots must hold a known generation after a crash, never anything older.
    let e = v.expectations();
    assert!(e.iter().any(|e| !e.or_earlier), "nothing became durable");
    let data = std::fs::read(&file).unwrap();
    for e in &e {
        for b in 0..8 {
            let at = e.lba + b;
            let block = &data[(at * 512) as usize..][..512];
            let ok = e
                .generations
                .iter()
                .any(|g| check_block(block, at, 0x5c, &[*g]) == BlockCheck::Good)
                || (e.or_earlier && block.iter().all(|&x| x == 0));
            assert!(ok, "lba {at}: {e:?}");
        }
    }
}

/// What a crash test relies on: a verified run whose target dies under it still ends with
/// its report and its expectations (`--expect-out`), and every block of the run on the
/// LUN's file is one the expectations account for. Writes were on the wire before the
/// end; a run that stopped without saying what it sent would leave blocks nobody
/// expects (which a later check would call another run's).
#[rstest::rstest]
#[case::one_segment(&[])]
#[case::split(&["--split-writes"])]
fn a_verified_run_cut_by_the_targets_death_still_says_what_each_slot_may_hold(
    #[case] extra: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lun.img");
    let size = 4u64 << 20;
    std::fs::File::create(&file).unwrap().set_len(size).unwrap();
    let Some(mut tgtd) = Tgtd::start_or_skip(
        "a_verified_run_cut_by_the_targets_death_still_says_what_each_slot_may_hold",
    ) else {
        return;
    };
    let url = tgtd
        .add_lun(
            "iqn.2026-11.io.glfs-iscsi:cut",
            "rdwr",
            file.to_str().unwrap(),
        )
        .unwrap();
    let expect = dir.path().join("expect.jsonl");
    let run_id: u64 = 0x0c07_0001;
    let args: Vec<String> = [
        "--url",
        url.as_str(),
        "--initiator",
        INITIATOR,
        "--rw",
        "randwrite",
        "--qd",
        "8",
        "--seconds",
        "20",
        "--lba-count",
        "2048",
        "--verify",
        "--fua",
        "--run-id",
        &run_id.to_string(),
        "--expect-out",
        expect.to_str().unwrap(),
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    let load = std::thread::spawn(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_iscsi-load"))
            .args(&args)
            .output()
            .expect("run iscsi-load")
    });
    std::thread::sleep(Duration::from_millis(700));
    tgtd.kill();
    let out = load.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no report: {stderr}")),
    )
    .unwrap();
    assert!(report["errors"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["writes"].as_u64().unwrap() > 0, "{report}");

    let text = std::fs::read_to_string(&expect)
        .unwrap_or_else(|e| panic!("no expectations ({e}): {stderr}"));
    let mut lines = text.lines();
    let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(head["run_id"].as_u64(), Some(run_id));
    let expected: std::collections::HashMap<u64, iscsi_load::verify::Expectation> = lines
        .map(|l| {
            let e: iscsi_load::verify::Expectation = serde_json::from_str(l).unwrap();
            (e.lba, e)
        })
        .collect();
    assert!(!expected.is_empty(), "{text}");

    let data = std::fs::read(&file).unwrap();
    let mut ours = 0;
    for slot in 0..2048 / 8 {
        let first = slot * 8;
        for at in first..first + 8 {
            let block = &data[(at * 512) as usize..][..512];
            let check = check_block(block, at, run_id, &[]);
            match expected.get(&first) {
                // Written, or maybe: one of the generations, or (or_earlier) what was
                // there before, zeroes here.
                Some(e) => {
                    let now = check_block(block, at, run_id, &e.generations);
                    let before = e.or_earlier && block.iter().all(|&b| b == 0);
                    assert!(
                        now == BlockCheck::Good || before,
                        "lba {at}: {now:?} against {e:?}"
                    );
                    ours += usize::from(now == BlockCheck::Good);
                }
                // Never sent: untouched.
                None => assert_eq!(check, BlockCheck::Foreign, "lba {at} unexpected"),
            }
        }
    }
    assert!(ours > 0, "no block of the run on the file");
}
