//! A C program (tests/c/families.c) built against Debian's `glfs.h` and linked with
//! `-lgfapi` calls every function family; it runs unchanged on the fake and on the real
//! library. Its transcript (one line per call: result and errno) must match
//! `testdata/gfapi/families.expected` on the fake; `live_*` (cargo xtask test-gluster)
//! runs the same binary on the real libgfapi against the live volume and compares the
//! two transcripts, allowing only the differences written down, with the reason, in
//! `testdata/gfapi/families.real-differs`. The fake then claims the live volume's
//! topology (`GLUSTER_TEST_REPLICA`, set by test-gluster: 3 on the Docker fixture, 1 on
//! the native one, as `GFAPI_FAKE_REPLICA`), since Gluster answers a few calls
//! differently on a replica volume (see `check_replica_transcript`).
//!
//! Needs libglusterfs-dev (glfs.h); without it the test says `[skip]` (a failure under
//! CI, whose install-deps.sh installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/gfapi")
        .join(name)
}

/// Where the program runs: on the fake (volume `vol` in `root`, claiming `replicas`
/// replicas), or on the real library.
enum On<'a> {
    Fake { root: &'a Path, replicas: usize },
    Real,
}

/// Runs the program against `volume@host` (on the fake: `vol`).
fn run(bin: &Path, on: On, volume: &str, host: &str, dir: &str) -> String {
    let mut cmd = Command::new(bin);
    cmd.args([volume, host, dir]);
    match on {
        On::Fake { root, replicas } => {
            cmd.env("LD_LIBRARY_PATH", common::library_path().parent().unwrap())
                .env("GFAPI_FAKE_ROOT", root)
                .env("GFAPI_FAKE_REPLICA", replicas.to_string());
        }
        On::Real => {
            cmd.env_remove("LD_LIBRARY_PATH");
        }
    }
    let o = cmd.output().expect("the C program runs");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{} failed ({}):\n{text}\n{}",
        bin.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(String::from)
        .collect()
}

fn on_fake(bin: &Path, replicas: usize) -> String {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("vol")).unwrap();
    let on = On::Fake {
        root: root.path(),
        replicas,
    };
    let text = run(bin, on, "vol", "127.0.0.2", "fam");
    // The program removes what it made, so a live volume keeps nothing of a run.
    let left = root.path().join("vol/fam");
    assert!(!left.exists(), "{} is left behind", left.display());
    text
}

#[test]
fn every_family_from_c_gives_the_expected_results_on_the_fake() {
    let Some(bin) = common::build_c("families") else {
        return;
    };
    let got = on_fake(&bin, 1);
    let replica = on_fake(&bin, 3);
    let _ = std::fs::remove_file(&bin);
    let want = lines(&testdata("families.expected"));
    check_replica_transcript(&want, &replica);
    let got: Vec<String> = got.lines().map(String::from).collect();
    let diff: Vec<String> = want
        .iter()
        .zip(got.iter().chain(std::iter::repeat(&String::new())))
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("expected {w:?}\n     got {g:?}"))
        .collect();
    assert!(
        diff.is_empty() && got.len() == want.len(),
        "transcript differs from testdata/gfapi/families.expected ({} vs {} lines):\n{}\n\nfull:\n{}",
        got.len(),
        want.len(),
        diff.join("\n"),
        got.join("\n")
    );
}

/// Told it emulates a replica-3 volume (`GFAPI_FAKE_REPLICA=3`), the fake answers as
/// Gluster 10.3's replicate translator does where that differs from one brick, and
/// nowhere else: the pathinfo xattr names the replica set and its three bricks, and a
/// handle of an unlinked file is ENOENT (every brick lacks its GFID) rather than the
/// posix brick's ESTALE. Seen on the Docker replica-3 fixture.
fn check_replica_transcript(one_brick: &[String], replica: &str) {
    let changed = [
        (
            "xattr pathinfo form: posix 1",
            "xattr pathinfo form: replicate 3",
        ),
        (
            "handle stat unlinked: -1 ESTALE",
            "handle stat unlinked: -1 ENOENT",
        ),
        (
            "handle create_from_handle unlinked: -1 ESTALE",
            "handle create_from_handle unlinked: -1 ENOENT",
        ),
    ];
    let replica: Vec<&str> = replica.lines().collect();
    assert_eq!(
        replica.len(),
        one_brick.len(),
        "replica transcript:\n{replica:?}"
    );
    let mut seen = 0;
    for (one, rep) in one_brick.iter().zip(&replica) {
        match changed.iter().find(|(o, _)| o == one) {
            Some((_, r)) => {
                assert_eq!(rep, r, "replica 3 answers differently than {one:?}");
                seen += 1;
            }
            None => assert_eq!(rep, one, "replica 3 differs from one brick"),
        }
    }
    assert_eq!(
        seen,
        changed.len(),
        "every replica difference is in the transcript"
    );
}

#[test]
#[ignore = "live: needs GLUSTER_TEST_VOLUME=volume@host and the real libgfapi (cargo xtask test-gluster)"]
fn live_every_family_from_c_matches_real_gluster() {
    let spec = std::env::var("GLUSTER_TEST_VOLUME").expect("GLUSTER_TEST_VOLUME=volume@host");
    let (volume, host) = spec.split_once('@').expect("volume@host");
    let bin = common::build_c("families")
        .expect("glfs.h is installed with glusterfs on the live machine");
    let dir = format!("families-{}", std::process::id());
    let real = run(&bin, On::Real, volume, host, &dir);
    // The fake claims the live volume's topology (cargo xtask test-gluster says it).
    let replicas = std::env::var("GLUSTER_TEST_REPLICA")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let fake = on_fake(&bin, replicas);
    let _ = std::fs::remove_file(&bin);
    // "<line on the fake>" => "<line on Gluster>", each with its reason in the file
    let known: Vec<(String, String)> = lines(&testdata("families.real-differs"))
        .iter()
        .filter_map(|l| {
            let (f, r) = l.split_once(" => ")?;
            Some((f.trim().to_string(), r.trim().to_string()))
        })
        .collect();
    let mut bad = Vec::new();
    let (fl, rl): (Vec<&str>, Vec<&str>) = (fake.lines().collect(), real.lines().collect());
    for (i, (f, r)) in fl.iter().zip(rl.iter()).enumerate() {
        if f != r && !known.iter().any(|(kf, kr)| kf == f && kr == r) {
            bad.push(format!("line {}: fake {f:?}, gluster {r:?}", i + 1));
        }
    }
    assert!(
        bad.is_empty() && fl.len() == rl.len(),
        "the fake and Gluster differ ({} vs {} lines):\n{}\n\nGluster's transcript:\n{real}",
        fl.len(),
        rl.len(),
        bad.join("\n")
    );
}
