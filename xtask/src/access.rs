//! Access control checks on the real binary with libiscsi's tools: CHAP secrets in the
//! `iscsi://user%secret@host/iqn/lun` URL, mutual CHAP with `?target_user=..&target_password=..`,
//! an initiator outside the ACL (`iscsi-inq -i NAME`), discovery filtered by the ACL, and
//! no secret in what the target logged at debug level.

use crate::target::{tool, LunSetup, TargetProcess, TARGET_IQN};
use crate::util::{self, Checks};
use anyhow::{ensure, Context, Result};
use std::path::Path;

const USER: &str = "offline-user";
const SECRET: &str = "offline-chap-secret-1";
const MUTUAL_USER: &str = "offline-target";
const MUTUAL_SECRET: &str = "offline-target-secret-2";
const ALLOWED: &str = "iqn.2026-11.io.glfs-iscsi:offline-allowed";
const DENIED: &str = "iqn.2026-11.io.glfs-iscsi:offline-denied";

/// Runs a libiscsi tool; returns whether it succeeded and all it printed. Not
/// [`util::output`], whose errors would show the URL with its secret.
fn run_tool(name: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = tool(name)?
        .args(args)
        .output()
        .with_context(|| format!("cannot start {name}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

fn inquiry_ok(initiator: &str, url: &str) -> Result<()> {
    let (ok, text) = run_tool("iscsi-inq", &["-i", initiator, url])?;
    ensure!(ok, "iscsi-inq failed: {text}");
    ensure!(
        text.contains("DIRECT_ACCESS"),
        "iscsi-inq shows no direct-access device: {text}"
    );
    Ok(())
}

fn inquiry_refused(initiator: &str, url: &str, status: &str) -> Result<()> {
    let (ok, text) = run_tool("iscsi-inq", &["-i", initiator, url])?;
    ensure!(!ok, "iscsi-inq succeeded where it must be refused: {text}");
    ensure!(
        text.contains(status),
        "expected login status {status:?}: {text}"
    );
    Ok(())
}

fn listed(initiator: &str, portal: &str) -> Result<bool> {
    let (ok, text) = run_tool("iscsi-ls", &["-i", initiator, &format!("iscsi://{portal}")])?;
    ensure!(ok || !text.contains(TARGET_IQN), "iscsi-ls failed: {text}");
    Ok(text.contains(TARGET_IQN))
}

/// Starts a memory LUN behind CHAP (with mutual credentials) and an ACL, and checks logins.
pub fn run(checks: &mut Checks, binary: &Path) {
    let log_dir = util::target_dir().join("access-fixture");
    let started = TargetProcess::start_with(
        binary,
        LunSetup {
            bstype: "memory".into(),
            backing_store: String::new(),
            local_file: None,
            library: None,
            env: vec![
                ("GLFS_ISCSI_CHAP_SECRET".into(), SECRET.into()),
                ("GLFS_ISCSI_MUTUAL_CHAP_SECRET".into(), MUTUAL_SECRET.into()),
                ("GLFS_ISCSI_LOG".into(), "debug".into()),
            ],
            log_dir,
        },
        &[
            "--chap-user",
            USER,
            "--mutual-chap-user",
            MUTUAL_USER,
            "--acl",
            ALLOWED,
        ]
        .map(String::from),
    );
    let target = match started {
        Ok(t) => t,
        Err(e) => {
            checks.record("start a target with CHAP and an ACL", Err(e));
            return;
        }
    };
    let portal = target.portal().to_string();
    let url = |user: &str, secret: &str| format!("iscsi://{user}%{secret}@{portal}/{TARGET_IQN}/0");
    checks.record(
        "CHAP: iscsi-inq with user%secret in the URL logs in",
        inquiry_ok(ALLOWED, &url(USER, SECRET)),
    );
    checks.record(
        "CHAP: a wrong secret gets Authentication failure (0x0201)",
        inquiry_refused(
            ALLOWED,
            &url(USER, "a-wrong-secret-000"),
            "Authentication failure",
        ),
    );
    checks.record(
        "CHAP: no credentials get Authentication failure (0x0201)",
        inquiry_refused(
            ALLOWED,
            &format!("iscsi://{portal}/{TARGET_IQN}/0"),
            "Authentication failure",
        ),
    );
    checks.record(
        "mutual CHAP: ?target_user=..&target_password=.. logs in",
        inquiry_ok(
            ALLOWED,
            &format!(
                "{}?target_user={MUTUAL_USER}&target_password={MUTUAL_SECRET}",
                url(USER, SECRET)
            ),
        ),
    );
    checks.record(
        "ACL: iscsi-inq -i <name not in the ACL> gets Authorization failure (0x0202)",
        inquiry_refused(DENIED, &url(USER, SECRET), "Authorization failure"),
    );
    checks.record(
        "ACL: discovery lists the target to admitted initiators only",
        (|| {
            ensure!(listed(ALLOWED, &portal)?, "not listed for {ALLOWED}");
            ensure!(!listed(DENIED, &portal)?, "listed for {DENIED}");
            Ok(())
        })(),
    );
    checks.record(
        "no CHAP secret in the target's debug log",
        (|| {
            let log = target.log_text();
            ensure!(
                log.contains("DEBUG"),
                "the target did not log at debug level"
            );
            for secret in [SECRET, MUTUAL_SECRET] {
                ensure!(!log.contains(secret), "a secret is in {log}");
            }
            Ok(())
        })(),
    );
    checks.record("CHAP target stops cleanly on SIGTERM", target.stop());
}
