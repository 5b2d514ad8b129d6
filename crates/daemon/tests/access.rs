//! Access control through the real binary, driven by libiscsi: CHAP (one-way, mutual,
//! discovery), ACLs by initiator name and address, secure-by-default start-up, and secrets
//! that never reach the log.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use support::*;
use testkit::initiator::{ConnectOptions, Initiator};

const USER: &str = "alice";
const SECRET: &str = "alice-secret-0001";
const MUTUAL_USER: &str = "target-e2e";
const MUTUAL_SECRET: &str = "target-secret-0002";
const DISCOVERY_SECRET: &str = "discovery-secret-03";
const ALLOWED: &str = "iqn.2026-11.io.glfs-iscsi:allowed";
const DENIED: &str = "iqn.2026-11.io.glfs-iscsi:denied";

fn memory() -> Vec<&'static str> {
    vec!["--bstype", "memory", "--size", "1M"]
}

/// Logs in to the target's IQN with `opts`.
fn login(target: &Running, opts: &ConnectOptions) -> Result<Initiator, String> {
    login_with(target, IQN, opts)
}

fn secret_file(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn chap_from_a_secret_file_admits_the_right_secret_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "alice", SECRET);
    let mut args = memory();
    args.extend(["--chap-user", USER, "--chap-secret-file", &file]);
    let target = Running::start(&args, &[]);

    let mut ok = login(&target, &login_opts(ALLOWED, Some((USER, SECRET)))).expect("right secret");
    ok.test_unit_ready().unwrap();
    ok.logout().unwrap();

    let err = login(
        &target,
        &login_opts(ALLOWED, Some((USER, "a-wrong-secret-9"))),
    )
    .unwrap_err();
    assert!(err.contains("Authentication failure(513)"), "{err}");
    let err = login(&target, &login_opts(ALLOWED, Some(("mallory", SECRET)))).unwrap_err();
    assert!(err.contains("Authentication failure(513)"), "{err}");
    // libiscsi without credentials skips the security stage: refused the same way.
    let err = login(&target, &login_opts(ALLOWED, None)).unwrap_err();
    assert!(err.contains("Authentication failure(513)"), "{err}");
    target.wait_for_log_line(&["login rejected", "CHAP_R does not match"]);
}

#[test]
fn mutual_chap_with_libiscsi() {
    let mut args = memory();
    args.extend(["--chap-user", USER, "--mutual-chap-user", MUTUAL_USER]);
    let env = [
        ("GLFS_ISCSI_CHAP_SECRET", Path::new(SECRET)),
        ("GLFS_ISCSI_MUTUAL_CHAP_SECRET", Path::new(MUTUAL_SECRET)),
    ];
    let target = Running::start(&args, &env);
    let mutual = |secret: &str| ConnectOptions {
        mutual_chap: Some((MUTUAL_USER.to_string(), secret.to_string())),
        ..login_opts(ALLOWED, Some((USER, SECRET)))
    };
    let mut ok = login(&target, &mutual(MUTUAL_SECRET)).expect("mutual CHAP");
    ok.test_unit_ready().unwrap();
    ok.logout().unwrap();
    // An initiator expecting another target secret rejects the target's proof.
    let err = login(&target, &mutual("not-the-target-secret")).unwrap_err();
    assert!(err.contains("Invalid CHAP_R"), "{err}");
}

#[test]
fn an_initiator_outside_the_acl_is_refused_and_discovers_nothing() {
    let mut args = memory();
    args.extend(["--acl", ALLOWED]);
    let target = Running::start(&args, &[]);

    let mut ok = login(&target, &login_opts(ALLOWED, None)).expect("allowed initiator");
    ok.test_unit_ready().unwrap();
    ok.logout().unwrap();
    let err = login(&target, &login_opts(DENIED, None)).unwrap_err();
    assert!(err.contains("Authorization failure(514)"), "{err}");

    let seen = Initiator::discover_with(&target.portal(), &login_opts(ALLOWED, None)).unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, IQN);
    let seen = Initiator::discover_with(&target.portal(), &login_opts(DENIED, None)).unwrap();
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn acl_networks_match_the_source_address() {
    let mut args = memory();
    args.extend(["--acl", "127.0.0.0/8"]);
    let inside = Running::start(&args, &[]);
    login(&inside, &login_opts(DENIED, None)).expect("any name from 127.0.0.0/8");
    let spec = format!("{ALLOWED}@192.0.2.0/24");
    let mut args = memory();
    args.extend(["--acl", &spec]);
    let outside = Running::start(&args, &[]);
    let err = login(&outside, &login_opts(ALLOWED, None)).unwrap_err();
    assert!(err.contains("Authorization failure(514)"), "{err}");
}

const CONFIG: &str = r#"
[discovery_chap]
user = "discovery"
secret_env = "E2E_DISCOVERY_SECRET"

[[target]]
name = "iqn.2026-11.io.glfs-iscsi:e2e"
[target.chap]
user = "alice"
secret = "alice-secret-0001"
[[target.acl]]
initiator = "iqn.2026-11.io.glfs-iscsi:allowed"
[[target.acl]]
initiator = "iqn.2026-11.io.glfs-iscsi:other"
networks = ["127.0.0.1", "::1"]
[target.acl.chap]
user = "other"
secret_file = "SECRET_FILE"
[[target.lun]]
lun = 0
bstype = "memory"
size = "1M"
"#;

#[test]
fn a_config_file_with_acl_entries_their_credentials_and_discovery_chap() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "other", "other-secret-0004");
    let config = dir.path().join("glfs-iscsi.toml");
    std::fs::write(&config, CONFIG.replace("SECRET_FILE", &file)).unwrap();
    let target = Running::start(
        &["--config", config.to_str().unwrap()],
        &[("E2E_DISCOVERY_SECRET", Path::new(DISCOVERY_SECRET))],
    );
    login(&target, &login_opts(ALLOWED, Some((USER, SECRET)))).expect("target credentials");
    let other = "iqn.2026-11.io.glfs-iscsi:other";
    login(
        &target,
        &login_opts(other, Some(("other", "other-secret-0004"))),
    )
    .expect("entry's own");
    let err = login(&target, &login_opts(other, Some((USER, SECRET)))).unwrap_err();
    assert!(
        err.contains("Authentication failure(513)"),
        "the entry's win: {err}"
    );
    let err = login(&target, &login_opts(DENIED, Some((USER, SECRET)))).unwrap_err();
    assert!(err.contains("Authorization failure(514)"), "{err}");

    let disc = login_opts(ALLOWED, Some(("discovery", DISCOVERY_SECRET)));
    let seen = Initiator::discover_with(&target.portal(), &disc).unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let err = Initiator::discover_with(&target.portal(), &login_opts(ALLOWED, None)).unwrap_err();
    assert!(
        err.to_string().contains("Authentication failure(513)"),
        "{err}"
    );
}

/// Runs the binary on `portal` to its end.
fn run(portal: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BINARY)
        .args(["--portal", portal, "--target", IQN])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn an_open_target_on_a_non_loopback_portal_needs_the_opt_in() {
    let (ok, text) = run("0.0.0.0:0", &memory(), &[]);
    assert!(!ok);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {text}");
    assert!(
        lines[0].contains("neither an ACL nor CHAP") && lines[0].contains("--allow-any-initiator"),
        "{text}"
    );
}

#[test]
fn short_or_missing_secrets_stop_the_start_without_showing_them() {
    let mut args = memory();
    args.extend(["--chap-user", USER]);
    let (ok, text) = run(
        "127.0.0.1:0",
        &args,
        &[("GLFS_ISCSI_CHAP_SECRET", "short-11byt")],
    );
    assert!(!ok);
    assert!(text.contains("has 11 bytes"), "{text}");
    assert!(
        !text.contains("short-11byt"),
        "the secret is not shown: {text}"
    );
    let (ok, text) = run("127.0.0.1:0", &args, &[]);
    assert!(!ok);
    assert!(text.contains("GLFS_ISCSI_CHAP_SECRET"), "{text}");
}

/// Logs in right and wrong with every kind of CHAP, with `--log trace` in `format`;
/// returns the target's log after checking no secret is in it.
fn secrets_never_reach_the_log(format: &str) -> String {
    let mut args = memory();
    args.extend([
        "--log-format",
        format,
        "--log",
        "trace",
        "--chap-user",
        USER,
        "--mutual-chap-user",
        MUTUAL_USER,
        "--discovery-chap-user",
        "discovery",
    ]);
    let env = [
        ("GLFS_ISCSI_CHAP_SECRET", Path::new(SECRET)),
        ("GLFS_ISCSI_MUTUAL_CHAP_SECRET", Path::new(MUTUAL_SECRET)),
        (
            "GLFS_ISCSI_DISCOVERY_CHAP_SECRET",
            Path::new(DISCOVERY_SECRET),
        ),
    ];
    let target = Running::start(&args, &env);
    let good = ConnectOptions {
        mutual_chap: Some((MUTUAL_USER.to_string(), MUTUAL_SECRET.to_string())),
        ..login_opts(ALLOWED, Some((USER, SECRET)))
    };
    let mut i = login(&target, &good).expect("good login");
    i.test_unit_ready().unwrap();
    i.logout().unwrap();
    login(
        &target,
        &login_opts(ALLOWED, Some((USER, "a-wrong-secret-9"))),
    )
    .unwrap_err();
    login(&target, &login_opts(ALLOWED, Some((USER, MUTUAL_SECRET)))).unwrap_err();
    Initiator::discover_with(
        &target.portal(),
        &login_opts(ALLOWED, Some(("discovery", DISCOVERY_SECRET))),
    )
    .unwrap();
    Initiator::discover_with(
        &target.portal(),
        &login_opts(ALLOWED, Some(("discovery", SECRET))),
    )
    .unwrap_err();
    let log = target.wait_for_log_line(&["login rejected"]);
    assert!(!log.is_empty());
    let log = target.log();
    assert!(
        log.contains("DEBUG") || log.contains("TRACE"),
        "debug logging is on: {log}"
    );
    for secret in [SECRET, MUTUAL_SECRET, DISCOVERY_SECRET] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    log
}

#[test]
fn secrets_never_reach_the_log_or_help() {
    secrets_never_reach_the_log("text");
    let (_, help) = run(
        "127.0.0.1:0",
        &["--help"],
        &[("GLFS_ISCSI_CHAP_SECRET", SECRET)],
    );
    assert!(help.contains("--chap-user"), "{help}");
    assert!(!help.contains(SECRET), "{help}");
}

#[test]
fn secrets_never_reach_the_json_log_and_session_events_carry_their_span() {
    let log = secrets_never_reach_the_log("json");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // The good login: its event carries who logged in, from the session span.
    let login = events
        .iter()
        .find(|e| e["fields"]["message"] == "login" && e["span"]["target"].as_str().is_some())
        .unwrap_or_else(|| panic!("no login event with its session span:\n{log}"));
    let span = &login["span"];
    assert_eq!(span["name"], "session");
    assert_eq!(span["initiator"], ALLOWED, "{login}");
    assert!(
        span["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{login}"
    );
    let isid = span["isid"].as_str().expect("isid");
    assert!(
        isid.len() == 12 && isid.bytes().all(|b| b.is_ascii_hexdigit()),
        "{login}"
    );
    assert!(span["tsih"].as_u64().is_some_and(|t| t > 0), "{login}");
    // Every event on a connection is in its span, the rejected logins included.
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("login rejected"))
        })
        .collect();
    assert!(!rejected.is_empty(), "{log}");
    for e in rejected {
        assert_eq!(e["span"]["name"], "session", "{e}");
        assert!(e["span"]["peer"].as_str().is_some(), "{e}");
    }
}
