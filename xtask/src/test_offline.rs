//! `cargo xtask test-offline`: everything that needs no cluster, no root and no Docker.
//!
//! 1. builds the fake libgfapi.so.0;
//! 2. runs the workspace tests with nextest (the glfs cases load the fake); when tgtd
//!    cannot run here (tgt not installed, or not root) the tests that start it are left
//!    out with a `[skip]` line naming them, except under CI where that is a failure;
//! 3. starts the real target binary with a glfs LUN on the fake and drives it with
//!    libiscsi's tools: discovery, inquiry, read capacity and the iscsi-test-cu suites;
//!    then a target with CHAP and an ACL: right and wrong secrets, mutual CHAP, an
//!    initiator outside the ACL, filtered discovery, no secret in the log;
//! 4. runs every iscsi-test-cu suite on each backend and fails on any regression against
//!    the results recorded in testdata/conformance/;
//! 5. proves the fake is a drop-in for tgt's bs_glfs and fio's gfapi engines.
//!
//! Ends with one `offline: N passed, N failed` line.

use crate::util::{self, Checks};
use crate::{access, conformance, fake, target};
use anyhow::Result;

/// The iscsi-test-cu suites the foundation must pass with no failure.
pub const FOUNDATION_SUITES: &[&str] = &[
    "SCSI.TestUnitReady",
    "SCSI.Inquiry",
    "SCSI.ReadCapacity10",
    "SCSI.ReadCapacity16",
    "SCSI.Read10",
    "SCSI.Write10",
    "SCSI.Read16",
    "SCSI.Write16",
];

/// The nextest filter of the workspace tests that start tgtd (the same expression puts
/// them in the `external-daemons` group in .config/nextest.toml).
pub const TGTD_TESTS: &str = "binary_id(testkit::tgt_roundtrip) | \
     binary_id(iscsi-load::against_tgtd) | binary_id(iscsi-load::verify_tgtd) | \
     binary_id(libiscsi-sys::async_api) | \
     (binary_id(testkit) & \
     test(=tgtd::tests::started_tgtd_gets_the_environment_and_its_socket_goes_on_drop)) | \
     (package(xtask) & test(/_drop_in$/))";

pub fn run() -> Result<()> {
    let mut checks = Checks::default();

    let fake_lib = fake::build()?;
    checks.record("build the fake libgfapi.so.0", Ok(()));

    // Can tgtd run here? If not, say so up front and leave its tests out (they would
    // only skip themselves, invisibly under nextest's status-level = "fail").
    let mut exclude = None;
    if let Some(why) = testkit::tgtd::unavailable_reason() {
        if util::in_ci() {
            checks.record(
                "tgtd can run (CI installs tgt and runs as root)",
                Err(anyhow::anyhow!("{why}")),
            );
        } else {
            skip_tgtd_tests(&mut checks, &why);
            if util::has_nextest() {
                exclude = Some(TGTD_TESTS);
            }
        }
    }

    checks.record(
        "workspace tests (nextest)",
        util::run_workspace_tests(&fake_lib, exclude),
    );

    let binary = util::build_target_binary()?;
    let fixture = target::TargetProcess::on_fake_volume(&binary, &fake_lib)?;
    let url = fixture.url();
    checks.record("iscsi-ls discovery", target::check_discovery(&fixture));
    checks.record("iscsi-inq", target::check_inquiry(&url));
    checks.record(
        "iscsi-readcapacity16",
        target::check_readcapacity16(&url, fixture.size()),
    );
    for suite in FOUNDATION_SUITES {
        checks.record(
            &format!("iscsi-test-cu {suite}"),
            target::run_test_cu(&url, suite).map(|_| ()),
        );
    }
    checks.record(
        "written bytes landed in the fake volume's file",
        target::check_bytes_landed(&fixture),
    );
    checks.record("target stops cleanly on SIGTERM", fixture.stop());
    access::run(&mut checks, &binary);

    let backends: Vec<String> = conformance::BACKENDS
        .iter()
        .map(|b| b.to_string())
        .collect();
    checks.record(
        "conformance: no test that passed in testdata/conformance/ regressed",
        conformance::run(&backends, None, false),
    );

    let fake_dir = fake_lib.parent().expect("library has a directory");
    checks.record_optional("tgtd --bstype glfs on the fake", fake::check_tgt(fake_dir));
    checks.record_optional(
        "fio gfapi/gfapi_async on the fake",
        fake::check_fio(fake_dir),
    );

    checks.finish("offline")
}

/// Records the tgtd-based tests as skipped because `why`, naming each one.
fn skip_tgtd_tests(checks: &mut Checks, why: &str) {
    if !util::has_nextest() {
        // cargo test runs them; each one skips itself.
        checks.skip("workspace tests that start tgtd (each skips itself)", why);
        return;
    }
    match util::list_workspace_tests(TGTD_TESTS) {
        Ok(tests) => {
            checks.skip(
                &format!("{} workspace tests that start tgtd", tests.len()),
                why,
            );
            for t in &tests {
                eprintln!("[skip]   {t}");
            }
        }
        Err(e) => checks.skip(
            "workspace tests that start tgtd",
            &format!("{why} (could not list them: {e:#})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same tests are left out here and serialised by nextest's configuration.
    #[test]
    fn tgtd_filter_matches_the_nextest_test_group() {
        let config = std::fs::read_to_string(util::project_root().join(".config/nextest.toml"))
            .expect("read .config/nextest.toml");
        let filters: Vec<&str> = config
            .lines()
            .filter_map(|l| l.strip_prefix("filter = \""))
            .map(|l| l.trim_end_matches('"'))
            .collect();
        assert_eq!(filters, [TGTD_TESTS, TGTD_TESTS], "default and ci profiles");
    }
}
