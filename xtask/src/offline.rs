//! `cargo xtask test-offline`: everything that needs no cluster, no root and no Docker.
//!
//! 1. builds the fake libgfapi.so.0;
//! 2. runs the workspace tests with nextest (the glfs cases load the fake);
//! 3. starts the real target binary with a glfs LUN on the fake and drives it with
//!    libiscsi's tools: discovery, inquiry, read capacity and the iscsi-test-cu suites;
//! 4. runs every iscsi-test-cu suite on each backend and fails on any regression against
//!    the results recorded in testdata/conformance/;
//! 5. proves the fake is a drop-in for tgt's bs_glfs and fio's gfapi engines.
//!
//! Ends with one `offline: N passed, N failed` line.

use crate::util::{self, Checks};
use crate::{conformance, fake, target};
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

pub fn run() -> Result<()> {
    let mut checks = Checks::default();

    let fake_lib = fake::build()?;
    checks.record("build the fake libgfapi.so.0", Ok(()));

    checks.record(
        "workspace tests (nextest)",
        util::run_workspace_tests(&fake_lib),
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
