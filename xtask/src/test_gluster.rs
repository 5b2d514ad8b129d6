//! `cargo xtask test-gluster`: the same checks as test-offline, on a live Gluster volume
//! through the real libgfapi, plus the tests that compare the fake with the real thing.
//!
//! Tests that need a live volume are `#[ignore]`d with a reason and named `live_*`; this task
//! runs exactly those, with `GLUSTER_TEST_VOLUME=volume@host` and `GFAPI_FAKE_LIB` set.

use crate::target::{self, LunSetup, TargetProcess};
use crate::test_offline::FOUNDATION_SUITES;
use crate::util::{self, Checks};
use crate::{conformance, docker, fake, gluster, package, reliability};
use anyhow::{bail, Result};

const VOLUME: &str = "glfsiscsi";
/// The native volume with mandatory locks, upcalls and leases on, for the per-family
/// differential test (`gluster::FEATURE_OPTIONS`).
const FEATURES_VOLUME: &str = "glfsfeatures";
/// The native replica 3 volume (three bricks on one host), for the live tests of what
/// Gluster's replication adds: its locks (`GLUSTER_TEST_REPLICATED_VOLUME`).
const REPLICATED_VOLUME: &str = "glfsreplica";
/// The native replica 3 volume whose AFR locks only the range a write writes
/// (`gluster::RANGED_LOCK_OPTIONS`), for the live test that clear-locks leaves such a lock
/// (`GLUSTER_TEST_RANGED_LOCK_VOLUME`).
const RANGED_LOCK_VOLUME: &str = "glfsranged";
/// A native sharded volume (`gluster::SHARD_OPTIONS`), for the live test of full
/// provisioning there (`GLUSTER_TEST_SHARD_VOLUME`).
const SHARD_VOLUME: &str = "glfsshard";
/// Bricks (replicas) of the Docker fixture's volume; the native one has one brick.
const DOCKER_REPLICAS: usize = 3;

/// Where the live volume runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// The 3-node replica in Docker containers.
    Docker,
    /// One brick on this machine's glusterd.
    Native,
}

fn live_volume(fixture: &str, keep: bool) -> Result<(gluster::LiveVolume, Fixture)> {
    let docker = || {
        docker::cluster_up(DOCKER_REPLICAS, VOLUME)
            .map(|v| (v, Fixture::Docker))
            .inspect_err(|err| {
                // A half-made cluster is not left behind (unless kept on purpose).
                if !keep && !docker::engine_unavailable(err) {
                    let _ = docker::cluster_down();
                }
            })
    };
    let native = || gluster::native_volume(VOLUME).map(|v| (v, Fixture::Native));
    match fixture {
        "docker" => docker(),
        "native" => native(),
        // Only an engine that cannot run here falls back: a Docker fixture that fails
        // otherwise (image build, cluster) is a failure, not hidden behind the native one.
        "auto" => docker().or_else(|err| {
            if !docker::engine_unavailable(&err) {
                return Err(err);
            }
            eprintln!("{err:#}; using a native glusterd");
            native()
        }),
        other => bail!("unknown fixture {other:?} (expected docker, native or auto)"),
    }
}

/// Removes the Docker fixture when dropped (also on an early error), unless it is kept on
/// purpose with `--keep-fixture`.
struct Teardown {
    fixture: Fixture,
    keep: bool,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.fixture != Fixture::Docker {
            return;
        }
        if self.keep {
            eprintln!(
                "docker fixture kept running (--keep-fixture); remove it with `cargo xtask fixture-down`"
            );
            return;
        }
        match docker::cluster_down() {
            Ok(()) => eprintln!("docker fixture removed (containers, brick volumes, network)"),
            Err(err) => eprintln!(
                "could not remove the docker fixture ({err:#}); try `cargo xtask fixture-down`"
            ),
        }
    }
}

pub fn run(fixture: &str, keep_fixture: bool, scenarios_only: bool, only: &[String]) -> Result<()> {
    let mut checks = Checks::default();
    let (volume, kind) = match live_volume(fixture, keep_fixture) {
        Ok(v) => v,
        Err(err) if fixture == "docker" && docker::engine_unavailable(&err) => {
            // Skipped by name, where the engine genuinely cannot run.
            let why = format!("{err:#}");
            if !scenarios_only {
                checks.skip("live checks on the Docker fixture", &why);
            }
            checks.skip(package::DOCKER_CHECK, &why);
            for name in reliability::selected(only) {
                checks.skip(&format!("reliability: {name} (Docker fixture)"), &why);
            }
            return checks.finish("gluster");
        }
        Err(err) => return Err(err),
    };
    let _teardown = Teardown {
        fixture: kind,
        keep: keep_fixture,
    };
    eprintln!(
        "live volume: {} (brick {})",
        volume.spec(),
        volume.brick.display()
    );
    if kind == Fixture::Docker {
        // Where the Docker scenarios run, the .deb is also installed for real.
        checks.record(
            package::DOCKER_CHECK,
            package::build("dev").and_then(|deb| package::install_in_docker(&deb)),
        );
    }
    if scenarios_only {
        let binary = util::build_target_binary()?;
        scenarios(&volume, kind, &binary, &mut checks, only);
        return checks.finish("gluster");
    }
    let fake_lib = fake::build()?;

    // The Docker fixture has one volume with default options: there the per-family
    // differential test skips the steps that need FEATURE_OPTIONS (it says so).
    let features = match kind {
        Fixture::Native => Some(gluster::native_features_volume(FEATURES_VOLUME)?),
        Fixture::Docker => None,
    };
    // The Docker fixture's volume is replicated itself.
    let replicated = match kind {
        Fixture::Native => gluster::native_replica_volume(REPLICATED_VOLUME)?.spec(),
        Fixture::Docker => volume.spec(),
    };
    // The Docker fixture has no such volume: the test says it is left out.
    let ranged = match kind {
        Fixture::Native => Some(gluster::native_ranged_lock_volume(RANGED_LOCK_VOLUME)?.spec()),
        Fixture::Docker => None,
    };
    // The Docker fixture has no such volume: the test says it is left out.
    let sharded = match kind {
        Fixture::Native => Some(gluster::native_shard_volume(SHARD_VOLUME)?.spec()),
        Fixture::Docker => None,
    };
    let mut tests = util::cargo();
    tests.env("GLUSTER_TEST_REPLICATED_VOLUME", &replicated);
    if let Some(sharded) = &sharded {
        tests.env("GLUSTER_TEST_SHARD_VOLUME", sharded);
    }
    if let Some(ranged) = &ranged {
        tests.env("GLUSTER_TEST_RANGED_LOCK_VOLUME", ranged);
    }
    if let Some(f) = &features {
        tests.env("GLUSTER_TEST_FEATURES_VOLUME", f.spec());
        // where its brick keeps the files (the failover test reads what landed)
        tests.env("GLUSTER_TEST_FEATURES_BRICK", &f.brick);
    }
    tests
        .args([
            "nextest",
            "run",
            "--workspace",
            "--no-tests=warn",
            "--run-ignored",
            "only",
        ])
        .args(["-E", "test(/live_/)"])
        .env("GLUSTER_TEST_VOLUME", volume.spec())
        // where its (first) brick keeps the files, for tests that check what landed
        .env("GLUSTER_TEST_BRICK", &volume.brick)
        // the live volume's replica count, for tests whose fake side claims the same
        .env(
            "GLUSTER_TEST_REPLICA",
            if kind == Fixture::Docker {
                DOCKER_REPLICAS
            } else {
                1
            }
            .to_string(),
        )
        .env("GFAPI_FAKE_LIB", &fake_lib);
    checks.record(
        "live tests: stores and fake-vs-real differential",
        util::run(&mut tests),
    );

    let binary = util::build_target_binary()?;
    // A new file each run: removing one behind Gluster's back on a replica brick would heal
    // it back.
    let lun_name = format!("lun-{}.img", std::process::id());
    let lun_name = lun_name.as_str();
    // Removed from the volume after the checks below (dropped after the target).
    let _remove = crate::gluster::RemoveOnDrop::new(&volume.spec(), [lun_name.to_string()]);
    let target = TargetProcess::start(
        &binary,
        LunSetup {
            bstype: "glfs".into(),
            backing_store: format!("{}:{lun_name}", volume.spec()),
            local_file: Some(volume.brick.join(lun_name)),
            library: None,
            env: vec![],
            log_dir: util::target_dir().join("live-fixture"),
        },
    )?;
    let url = target.url();
    checks.record("iscsi-ls discovery", target::check_discovery(&target));
    checks.record("iscsi-inq", target::check_inquiry(&url));
    checks.record(
        "iscsi-readcapacity16",
        target::check_readcapacity16(&url, target.size()),
    );
    for suite in FOUNDATION_SUITES {
        checks.record(
            &format!("iscsi-test-cu {suite}"),
            target::run_test_cu(&url, suite).map(|_| ()),
        );
    }
    checks.record(
        "written bytes landed on the brick",
        target::check_bytes_landed(&target),
    );
    checks.record("target stops cleanly on SIGTERM", target.stop());

    // As test-offline does on the fake: every iscsi-test-cu suite (results may only
    // improve on the snapshot), then tgt's bs_glfs and fio's gfapi engines, here on the
    // real libgfapi.
    checks.record(
        &format!(
            "conformance on a glfs LUN on the live volume: no test that passed in testdata/conformance/{}.txt regressed",
            conformance::LIVE_BACKEND
        ),
        conformance::run(
            &[conformance::LIVE_BACKEND.to_string()],
            None,
            false,
            Some(&volume.spec()),
        ),
    );
    checks.record_optional(
        "tgtd --bstype glfs on the real libgfapi",
        fake::check_tgt_live(&volume),
    );
    checks.record_optional(
        "fio gfapi/gfapi_async on the real libgfapi",
        fake::check_fio_live(&volume),
    );

    scenarios(&volume, kind, &binary, &mut checks, only);
    checks.finish("gluster")
}

/// The reliability scenarios, their table printed and kept in
/// `<target>/reliability/latest.md`.
fn scenarios(
    volume: &gluster::LiveVolume,
    kind: Fixture,
    binary: &std::path::Path,
    checks: &mut Checks,
    only: &[String],
) {
    match reliability::build_load() {
        Ok(load) => {
            let env = reliability::Env {
                volume,
                fixture: kind,
                binary: binary.to_path_buf(),
                load,
            };
            let rows = reliability::run_all(&env, checks, only);
            let table = format!(
                "{}\n\n{}",
                reliability::header(),
                reliability::render(&rows)
            );
            eprintln!("\nreliability scenarios ({kind:?} fixture):\n{table}");
            let path = util::target_dir().join("reliability").join("latest.md");
            let written = std::fs::create_dir_all(util::target_dir().join("reliability"))
                .and_then(|()| std::fs::write(&path, &table));
            if let Err(e) = written {
                eprintln!("cannot write {}: {e}", path.display());
            } else {
                eprintln!("table written to {}", path.display());
            }
        }
        Err(e) => checks.record("build iscsi-load for the reliability scenarios", Err(e)),
    }
}

/// `cargo xtask soak`: the long verified load on a live volume (the Docker fixture is
/// removed at the end).
pub fn soak(opts: &crate::soak::SoakOptions) -> Result<()> {
    let (volume, kind) = live_volume(&opts.fixture, false)?;
    let _teardown = Teardown {
        fixture: kind,
        keep: false,
    };
    crate::soak::run(opts, &volume)
}
