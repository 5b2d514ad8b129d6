//! Live administration through the real binary: `glfs-iscsi admin` talks to a running
//! daemon over its control socket, and libiscsi logs in to what it adds.

mod support;

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;
use testkit::initiator::Initiator;

const A: &str = "iqn.2026-11.io.glfs-iscsi:admin-a";
const B: &str = "iqn.2026-11.io.glfs-iscsi:admin-b";

/// `admin` that must fail with one line on stderr; that line.
fn refused(socket: &Path, args: &[&str]) -> String {
    let (success, out, err) = admin(socket, args);
    assert!(!success, "admin {args:?} succeeded: {out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

/// `admin lun add TARGET 0` over the file `image`, created with `size` when missing.
fn add_file_lun(socket: &Path, target: &str, image: &Path, size: &str) -> String {
    add_file_lun_with(socket, target, "0", image, &["--size", size])
}

/// `admin lun add TARGET LUN` over the file `image`, then `extra` arguments.
fn add_file_lun_with(
    socket: &Path,
    target: &str,
    lun: &str,
    image: &Path,
    extra: &[&str],
) -> String {
    let image = image.to_str().unwrap();
    let args = ["lun", "add", target, lun, "--bstype", "file"];
    ok(
        socket,
        &[&args[..], &["--backing-store", image], extra].concat(),
    )
}

fn json(socket: &Path, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    serde_json::from_str(&ok(socket, &with_json)).unwrap()
}

/// A config file with target A and one 1M memory LUN `lun` on it.
fn a_with_memory_lun(lun: u32) -> String {
    format!(
        "[[target]]\nname = \"{A}\"\n[[target.lun]]\nlun = {lun}\nbstype = \"memory\"\nsize = \"1M\"\n"
    )
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("glfs-iscsi.toml");
        std::fs::write(&config, a_with_memory_lun(0)).unwrap();
        let socket = dir.path().join("run/control.sock");
        Setup {
            dir,
            config,
            socket,
        }
    }

    /// The daemon's arguments for this config file and control socket, then `extra`.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let own = [
            "--config",
            self.config.to_str().unwrap(),
            "--control-socket",
            self.socket.to_str().unwrap(),
        ];
        [&own[..], extra].concat()
    }

    fn start(&self) -> Running {
        Running::start(&self.args(&[]), &[])
    }

    /// The daemon with the fake libgfapi, its volumes under `root`.
    fn start_on_fake(&self, root: &testkit::fake::FakeRoot) -> Running {
        self.start_on_fake_with(root, &[])
    }

    /// [`Setup::start_on_fake`] with `extra` arguments.
    fn start_on_fake_with(&self, root: &testkit::fake::FakeRoot, extra: &[&str]) -> Running {
        let library = fake_library();
        let own = ["--gfapi-library", library.to_str().unwrap()];
        Running::start(
            &self.args(&[&own[..], extra].concat()),
            &[("GFAPI_FAKE_ROOT", root.path())],
        )
    }
}

#[test]
fn targets_and_luns_added_live_serve_at_once_and_survive_a_restart() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    let mode = std::fs::metadata(socket).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket is the owner's only"
    );

    // A session on A before any change, to show that changes elsewhere leave it alone.
    let mut on_a = Initiator::connect(&daemon.portal(), A, 0).unwrap();
    on_a.write10(0, &[0xa5; 512], BLOCK).unwrap();

    let added = ok(socket, &["target", "add", B]);
    assert_eq!(added, format!("change\n+ target {B}\n"));
    let image = setup.dir.path().join("b.img");
    let added = add_file_lun(socket, B, &image, "2M");
    assert_eq!(added, format!("change\n+ lun {B}/0\n"));

    let mut on_b = Initiator::connect(&daemon.portal(), B, 0).unwrap();
    assert_eq!(on_b.read_capacity16().unwrap(), ((2 << 20) / 512, BLOCK));
    on_b.write10(7, &[0x5b; 1024], BLOCK).unwrap();

    let targets = json(socket, &["target", "list"]);
    assert_eq!(targets[0]["name"], A);
    assert_eq!(targets[1]["name"], B);
    assert_eq!(targets[1]["luns"], serde_json::json!([0]));
    assert_eq!(targets[1]["sessions"], 1);
    let lun = json(socket, &["lun", "show", B, "0"]);
    assert_eq!(lun["size_bytes"], 2 << 20);
    assert_eq!(lun["bstype"], "file");
    let table = ok(socket, &["lun", "list"]);
    assert_eq!(table.lines().count(), 3, "header and two LUNs:\n{table}");
    assert!(
        table.lines().next().unwrap().starts_with("target"),
        "{table}"
    );

    let sessions = json(socket, &["session", "list"]);
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let b_session = sessions.iter().find(|s| s["target"] == B).unwrap();
    assert_eq!(b_session["luns"], serde_json::json!([0]));
    assert_eq!(b_session["in_flight"], 0);
    assert!(b_session["initiator"].as_str().unwrap().starts_with("iqn."));
    assert!(b_session["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    // In use: refused without --force, with one line naming the LUN.
    let err = refused(socket, &["lun", "remove", B, "0"]);
    assert!(
        err.contains(&format!("lun {B}/0: in use by 1 session")),
        "{err}"
    );
    // Bad input names the value.
    let err = refused(socket, &["target", "add", "disk1"]);
    assert!(err.contains("invalid target name \"disk1\""), "{err}");
    let err = refused(socket, &["lun", "show", B, "9"]);
    assert!(err.contains(&format!("lun {B}/9: no such LUN")), "{err}");
    let err = refused(socket, &["lun", "add", B, "20000", "--bstype", "memory"]);
    assert!(err.contains("20000"), "{err}");
    // A preferred group is for alua failover (this daemon has none), and a group id.
    let err = refused(
        socket,
        &[
            "lun",
            "add",
            B,
            "7",
            "--bstype",
            "memory",
            "--size",
            "1M",
            "--alua-preferred",
            "2",
        ],
    );
    assert!(
        err.contains(&format!(
            "target {B} LUN 7: alua_preferred 2: needs alua failover"
        )),
        "{err}"
    );
    let (success, _, err) = admin(
        socket,
        &[
            "lun",
            "add",
            B,
            "7",
            "--bstype",
            "memory",
            "--alua-preferred",
            "0",
        ],
    );
    assert!(
        !success && err.contains("'0' for '--alua-preferred <GROUP>'"),
        "{err}"
    );
    // A setting out of range in a file applied through the socket: one line naming it.
    let bad = setup.dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&bad, format!("login_timeout = 99999\n{text}")).unwrap();
    let err = refused(socket, &["apply", bad.to_str().unwrap()]);
    assert!(
        err.contains("login_timeout: 99999 is out of range 0..=3600"),
        "{err}"
    );

    // The session on A saw none of it.
    assert_eq!(on_a.read10(0, 1, BLOCK).unwrap(), vec![0xa5; 512]);

    // The file on disk is what runs; applying it again changes nothing.
    let exported = ok(socket, &["export"]);
    assert_eq!(std::fs::read_to_string(&setup.config).unwrap(), exported);
    let again = ok(socket, &["apply", setup.config.to_str().unwrap()]);
    assert_eq!(again, "change\n(nothing to change)\n");

    // A dry run of a file without B prints the removal and changes nothing.
    let smaller = setup.dir.path().join("smaller.toml");
    std::fs::write(&smaller, a_with_memory_lun(0)).unwrap();
    let planned = ok(
        socket,
        &["apply", smaller.to_str().unwrap(), "--dry-run", "--force"],
    );
    assert_eq!(planned, format!("change\n- target {B}\n"));
    assert_eq!(
        json(socket, &["target", "list"]).as_array().unwrap().len(),
        2
    );

    // Ending B's session closes its connection; A's stays.
    let id = b_session["id"].as_u64().unwrap().to_string();
    ok(socket, &["session", "end", &id]);
    assert!(
        on_b.read10(7, 2, BLOCK).is_err(),
        "the ended session is gone"
    );
    assert_eq!(on_a.read10(0, 1, BLOCK).unwrap(), vec![0xa5; 512]);

    // A restart serves exactly what was running; B's data is intact.
    drop(on_a);
    drop(daemon);
    let daemon = setup.start();
    let mut on_b = Initiator::connect(&daemon.portal(), B, 0).unwrap();
    assert_eq!(on_b.read10(7, 2, BLOCK).unwrap(), vec![0x5b; 1024]);
    assert_eq!(ok(socket, &["export"]), exported);
}

#[test]
fn forced_removal_ends_the_sessions_and_sighup_rereads_the_file() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    let mut on_a = Initiator::connect(&daemon.portal(), A, 0).unwrap();
    on_a.test_unit_ready().unwrap();
    ok(socket, &["target", "remove", A, "--force"]);
    assert!(on_a.test_unit_ready().is_err(), "its session ended");
    assert!(json(socket, &["target", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    assert!(Initiator::connect(&daemon.portal(), A, 0).is_err());

    // The operator edits the file and sends SIGHUP: A is back.
    std::fs::write(&setup.config, a_with_memory_lun(3)).unwrap();
    daemon.signal("HUP");
    daemon.wait_for_log_line(&["SIGHUP: config file reread"]);
    let luns = json(socket, &["lun", "list", "--target", A]);
    assert_eq!(luns[0]["lun"], 3);
    let mut again = Initiator::connect(&daemon.portal(), A, 3).unwrap();
    again.test_unit_ready().unwrap();
}

#[test]
fn admin_without_a_daemon_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(&dir.path().join("none.sock"), &["target", "list"]);
    assert!(
        err.contains("cannot reach the daemon's control socket"),
        "{err}"
    );
}

#[test]
fn many_luns_across_many_targets_are_created_and_listed() {
    // The scale the issue asks for: 1,000 LUNs across 100 targets, made through `admin
    // apply` and listed back; the time is reported, not asserted (speed is the bench's).
    let setup = Setup::new();
    let socket = &setup.socket;
    let _daemon = setup.start();
    let mut text = String::new();
    for t in 0..100 {
        text.push_str(&format!(
            "[[target]]\nname = \"iqn.2026-11.io.scale:t{t:03}\"\n"
        ));
        for lun in 0..10 {
            text.push_str(&format!(
                "[[target.lun]]\nlun = {lun}\nbstype = \"memory\"\nsize = \"64K\"\n"
            ));
        }
    }
    let file = setup.dir.path().join("scale.toml");
    std::fs::write(&file, text).unwrap();
    let started = std::time::Instant::now();
    let out = ok(socket, &["apply", file.to_str().unwrap(), "--force"]);
    let created = started.elapsed();
    // A removed, 100 targets and 1,000 LUNs added.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("+ lun ")).count(),
        1000
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("+ target ")).count(),
        100
    );
    let started = std::time::Instant::now();
    let luns = json(socket, &["lun", "list"]);
    let listed = started.elapsed();
    let luns = luns.as_array().unwrap();
    assert_eq!(luns.len(), 1000);
    assert_eq!(luns[999]["target"], "iqn.2026-11.io.scale:t099");
    assert_eq!(luns[999]["lun"], 9);
    assert_eq!(luns[999]["size_bytes"], 65536);
    eprintln!("scale: 1000 LUNs on 100 targets created in {created:?}, listed in {listed:?}");
}

#[test]
fn acl_entries_and_chap_credentials_change_live_and_no_secret_is_shown() {
    const HOST: &str = "iqn.2026-11.io.example:host";
    const OTHER: &str = "iqn.2026-11.io.example:other";
    const SECRET: &str = "admin-file-secret-0001";
    const ENV_SECRET: &str = "admin-env-secret-0002";
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();

    // Open (loopback portal, no rules): the host logs in.
    let mut kept = login_as(&daemon, A, HOST, None).expect("open target");
    kept.write10(0, &[0x11; 512], BLOCK).unwrap();

    // An ACL admitting only OTHER: the next login of HOST is refused at once; the
    // session logged in before keeps running.
    let added = ok(socket, &["acl", "add", A, "--initiator", OTHER]);
    assert_eq!(added, format!("change\n~ target {A} (acl)\n"));
    let err = login_as(&daemon, A, HOST, None).unwrap_err();
    assert!(err.contains("Authorization failure(514)"), "{err}");
    login_as(&daemon, A, OTHER, None).expect("the ACL admits OTHER");
    assert_eq!(kept.read10(0, 1, BLOCK).unwrap(), vec![0x11; 512]);
    let acl = json(socket, &["acl", "list"]);
    assert_eq!(acl[0]["initiator"], OTHER);
    assert_eq!(acl[0]["entry"], 1);
    let saved = std::fs::read_to_string(&setup.config).unwrap();
    assert!(
        saved.contains(&format!("initiator = \"{OTHER}\"")),
        "{saved}"
    );

    // Modify it to admit HOST from loopback, then remove it by initiator.
    ok(
        socket,
        &[
            "acl",
            "modify",
            A,
            "1",
            "--initiator",
            HOST,
            "--network",
            "127.0.0.0/8",
        ],
    );
    login_as(&daemon, A, HOST, None).expect("HOST from loopback");
    let err = refused(socket, &["acl", "remove", A, "--initiator", OTHER]);
    assert!(err.contains("no ACL entry names initiator"), "{err}");
    let err = refused(socket, &["acl", "add", A, "--network", "300.1.2.3/8"]);
    assert!(err.contains("300.1.2.3/8"), "{err}");
    ok(socket, &["acl", "remove", A, "--initiator", HOST]);
    assert_eq!(json(socket, &["acl", "list"]), serde_json::json!([]));

    // CHAP from a file: the daemon reads it; the listing says where, never what.
    let file = setup.dir.path().join("host.secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    ok(
        socket,
        &[
            "chap",
            "add",
            A,
            "--user",
            "host",
            "--secret-file",
            file.to_str().unwrap(),
        ],
    );
    let err = login_as(&daemon, A, HOST, None).unwrap_err();
    assert!(err.contains("Authentication failure(513)"), "{err}");
    login_as(&daemon, A, HOST, Some(("host", SECRET))).expect("right secret");
    let err = refused(
        socket,
        &[
            "chap",
            "add",
            A,
            "--user",
            "x",
            "--secret-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(err.contains("set already"), "{err}");

    // From this command's environment: stored in the file (owner-only), shown nowhere.
    let out = Command::new(BINARY)
        .args(["admin", "--socket", socket.to_str().unwrap()])
        .args([
            "chap",
            "modify",
            A,
            "--user",
            "host2",
            "--secret-env",
            "ADMIN_TEST_SECRET",
        ])
        .env("ADMIN_TEST_SECRET", ENV_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    login_as(&daemon, A, HOST, Some(("host2", ENV_SECRET))).expect("new credentials");
    let err = login_as(&daemon, A, HOST, Some(("host", SECRET))).unwrap_err();
    assert!(err.contains("Authentication failure(513)"), "{err}");
    let listed = ok(socket, &["chap", "list"]);
    let shown = json(socket, &["chap", "show", A]);
    let exported = ok(socket, &["export"]);
    for text in [&listed, &shown.to_string(), &exported] {
        assert!(
            !text.contains(ENV_SECRET) && !text.contains(SECRET),
            "{text}"
        );
    }
    assert_eq!(shown["secret"], "set");
    assert!(exported.contains("(redacted)"), "{exported}");
    let saved = std::fs::read_to_string(&setup.config).unwrap();
    assert!(saved.contains(ENV_SECRET), "the file keeps the secret");
    let mode = std::fs::metadata(&setup.config)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "a config file holding secrets is the owner's only"
    );
    // Applying the export keeps the secret.
    let copy = setup.dir.path().join("exported.toml");
    std::fs::write(&copy, &exported).unwrap();
    assert_eq!(
        ok(socket, &["apply", copy.to_str().unwrap()]),
        "change\n(nothing to change)\n"
    );
    // A secret on the command line is not an option.
    let (success, _, err) = admin(socket, &["chap", "add", A, "--user", "u", "--secret", "x"]);
    assert!(!success && err.contains("--secret"), "{err}");

    // Removed: open again; the change survives a restart.
    ok(socket, &["chap", "remove", A]);
    ok(socket, &["acl", "add", A, "--initiator", HOST]);
    drop(kept);
    drop(daemon);
    let daemon = setup.start();
    login_as(&daemon, A, HOST, None).expect("ACL admits HOST after the restart");
    let err = login_as(&daemon, A, OTHER, None).unwrap_err();
    assert!(err.contains("Authorization failure(514)"), "{err}");
}

/// The end-to-end scenario through the real binary and libiscsi: a target and a
/// LUN added live, a write, an ACL that excludes the initiator (new logins refused), a
/// resize (the initiator sees CAPACITY DATA HAS CHANGED and the new capacity), and a
/// restart that serves everything again with the data intact.
///
/// Not here yet: the scenario's last step, scraping the metrics and matching the counters
/// to the I/O done; the metrics work (`--metrics`) adds it at the end of this test.
#[test]
fn add_log_in_write_fence_resize_restart() {
    const HOST: &str = "iqn.2026-11.io.example:e2e-host";
    const OTHER: &str = "iqn.2026-11.io.example:e2e-other";
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();

    ok(socket, &["target", "add", B]);
    let image = setup.dir.path().join("e2e.img");
    add_file_lun(socket, B, &image, "1M");
    let image = image.to_str().unwrap();
    let mut host = login_as(&daemon, B, HOST, None).expect("log in to the added LUN");
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 251) as u8).collect();
    host.write10(100, &data, BLOCK).unwrap();

    // An ACL without HOST: its next login is refused; its session goes on.
    ok(socket, &["acl", "add", B, "--initiator", OTHER]);
    let err = login_as(&daemon, B, HOST, None).unwrap_err();
    assert!(err.contains("Authorization failure(514)"), "{err}");

    // Grow 1M -> 3M: the session's next command reports the change, once.
    let err = refused(socket, &["lun", "resize", B, "0", "512K"]);
    assert!(
        err.contains(&format!("lun {B}/0: cannot shrink from 1M to 512K")),
        "{err}"
    );
    let resized = ok(socket, &["lun", "resize", B, "0", "3M"]);
    assert_eq!(resized, format!("change\n~ lun {B}/0 (size)\n"));
    let ua = host.test_unit_ready().unwrap_err();
    let ua = ua.scsi().expect("a SCSI error");
    // SPC-4: sense key UNIT ATTENTION (6h), 2Ah/09h CAPACITY DATA HAS CHANGED.
    assert_eq!((ua.sense_key, ua.asc, ua.ascq), (0x06, 0x2A, 0x09));
    host.test_unit_ready().unwrap();
    assert_eq!(host.read_capacity16().unwrap(), ((3 << 20) / 512, BLOCK));
    assert_eq!(host.read_capacity10().unwrap(), ((3 << 20) / 512, BLOCK));
    let end = (3 << 20) / 512 - 4;
    host.write10(end, &[0x77; 2048], BLOCK).unwrap();
    assert_eq!(std::fs::metadata(image).unwrap().len(), 3 << 20);
    assert_eq!(
        json(socket, &["lun", "show", B, "0"])["size_bytes"],
        3 << 20
    );
    drop(host);

    // Restart: the target, its LUN at the new size, the ACL and the data are all back.
    drop(daemon);
    let daemon = setup.start();
    let err = login_as(&daemon, B, HOST, None).unwrap_err();
    assert!(err.contains("Authorization failure(514)"), "{err}");
    let mut other = login_as(&daemon, B, OTHER, None).expect("the ACL admits OTHER");
    assert_eq!(other.read_capacity16().unwrap(), ((3 << 20) / 512, BLOCK));
    assert_eq!(other.read10(100, 4, BLOCK).unwrap(), data);
    assert_eq!(other.read10(end, 4, BLOCK).unwrap(), vec![0x77; 2048]);
}

/// `lun add --provisioning full`: the LUN's file has every block allocated before it is
/// served, and the host sees a fully provisioned LU (READ CAPACITY(16) LBPME 0, no Logical
/// Block Provisioning VPD page). `lun modify --provisioning thin` opens the store again
/// thin: the host is told its inquiry data changed, and logical block provisioning shows.
#[test]
fn a_fully_provisioned_lun_is_allocated_and_thin_again_on_modify() {
    use std::os::unix::fs::MetadataExt;
    const HOST: &str = "iqn.2026-11.io.example:provisioning-host";
    // SBC-3 table 66 (READ CAPACITY(16) parameter data): byte 14 bit 7 is LBPME.
    const LBPME: u8 = 0x80;
    // SPC-4 7.8.1: VPD page B2h is SBC-3's Logical Block Provisioning page.
    const LBP_PAGE: u8 = 0xB2;
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    ok(socket, &["target", "add", B]);
    let image = setup.dir.path().join("full.img");
    let added = add_file_lun_with(
        socket,
        B,
        "0",
        &image,
        &["--size", "4M", "--provisioning", "full"],
    );
    assert_eq!(added, format!("change\n+ lun {B}/0\n"));
    let meta = std::fs::metadata(&image).unwrap();
    assert_eq!(meta.len(), 4 << 20);
    assert!(
        meta.blocks() * 512 >= 4 << 20,
        "allocated: {} bytes",
        meta.blocks() * 512
    );
    assert_eq!(
        json(socket, &["lun", "show", B, "0"])["provisioning"],
        "full"
    );
    assert!(ok(socket, &["export"]).contains("provisioning = \"full\""));

    let mut host = login_as(&daemon, B, HOST, None).expect("log in");
    assert_eq!(host.read_capacity16_raw().unwrap()[14] & LBPME, 0);
    let pages = host.inquiry(true, 0x00, 255).unwrap();
    assert!(!pages[4..].contains(&LBP_PAGE), "{pages:02x?}");

    let modified = ok(socket, &["lun", "modify", B, "0", "--provisioning", "thin"]);
    assert!(modified.contains("provisioning"), "{modified}");
    let ua = host.test_unit_ready().unwrap_err();
    let ua = ua.scsi().expect("a SCSI error");
    // SPC-4: UNIT ATTENTION (6h), 3Fh/03h INQUIRY DATA HAS CHANGED.
    assert_eq!((ua.sense_key, ua.asc, ua.ascq), (0x06, 0x3F, 0x03));
    assert_eq!(host.read_capacity16_raw().unwrap()[14] & LBPME, LBPME);
    let pages = host.inquiry(true, 0x00, 255).unwrap();
    assert!(pages[4..].contains(&LBP_PAGE), "{pages:02x?}");
    assert_eq!(
        json(socket, &["lun", "show", B, "0"])["provisioning"],
        "thin"
    );
    assert!(!ok(socket, &["export"]).contains("provisioning"));

    // A value that is neither is refused by the command line, naming it.
    let err = refused(
        socket,
        &["lun", "modify", B, "0", "--provisioning", "thick"],
    );
    assert!(err.contains("thick"), "{err}");
}

/// A long request reports its progress before its reply: adding a fully provisioned LUN
/// sends `{"progress": ...}` lines (what, done, total; from 0 to the whole file, never going
/// back) on the control socket, then the reply. The file is kept small (64 MiB) so the test
/// does not depend on the free space of the machine it runs on; how often a long allocation
/// reports is the unit tests' business (`backstore::provision`).
#[test]
fn allocating_a_full_lun_reports_its_progress_on_the_control_socket() {
    use std::io::{BufRead, Write};
    let setup = Setup::new();
    let _daemon = setup.start();
    ok(&setup.socket, &["target", "add", B]);
    let image = setup.dir.path().join("full.img");
    let request = json!({"op": "lun-add", "target": B, "entry": {
        "lun": 0, "bstype": "file", "backing_store": image.to_str().unwrap(),
        "size": "64M", "provisioning": "full"
    }});
    let mut stream = std::os::unix::net::UnixStream::connect(&setup.socket).unwrap();
    writeln!(stream, "{request}").unwrap();
    let mut answers = std::io::BufReader::new(&stream);
    let mut progress = Vec::new();
    let reply = loop {
        let mut line = String::new();
        answers.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        match answer.get("progress") {
            Some(p) => progress.push((
                p["what"].as_str().unwrap().to_string(),
                p["done"].as_u64().unwrap(),
                p["total"].as_u64().unwrap(),
            )),
            None => break answer,
        }
    };
    assert_eq!(reply["ok"], true, "{reply}");
    let total = 64u64 << 20;
    let what = format!("file {}: allocating", image.display());
    assert_eq!(
        progress.first(),
        Some(&(what.clone(), 0, total)),
        "{progress:?}"
    );
    assert_eq!(progress.last().map(|p| p.1), Some(total), "{progress:?}");
    assert!(progress.iter().all(|p| p.0 == what && p.2 == total));
    assert!(
        progress.windows(2).all(|w| w[0].1 <= w[1].1),
        "{progress:?}"
    );
    // The admin command itself shows the same as a bar on a terminal, nothing otherwise:
    // its output is the change alone.
    ok(&setup.socket, &["lun", "remove", B, "0"]);
    let added = add_file_lun_with(&setup.socket, B, "0", &image, &["--provisioning", "full"]);
    assert_eq!(added, format!("change\n+ lun {B}/0\n"));
}

#[test]
fn on_a_public_portal_a_target_is_added_with_its_acl() {
    const HOST: &str = "iqn.2026-11.io.example:public-host";
    let setup = Setup::new();
    std::fs::write(
        &setup.config,
        format!("[[target]]\nname = \"{A}\"\n[[target.acl]]\ninitiator = \"{HOST}\"\n"),
    )
    .unwrap();
    let socket = &setup.socket;
    let daemon = Running::start_on("0.0.0.0", &setup.args(&[]), &[]);
    // Secure by default: an open target is refused, naming it and the way out.
    let err = refused(socket, &["target", "add", B]);
    assert!(
        err.contains(&format!("target {B} has neither an ACL nor CHAP")),
        "{err}"
    );
    assert!(!ok(socket, &["target", "list"]).contains(B));
    ok(socket, &["target", "add", B, "--acl", HOST]);
    ok(
        socket,
        &["lun", "add", B, "0", "--bstype", "memory", "--size", "1M"],
    );
    login_as(&daemon, B, HOST, None).expect("the ACL admits HOST");
    let err = login_as(&daemon, B, "iqn.2026-11.io.example:stranger", None).unwrap_err();
    assert!(err.contains("Authorization failure(514)"), "{err}");
}

#[test]
fn adding_a_lun_keeps_the_targets_reservations_and_tells_its_sessions() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    let mut host = Initiator::connect(&daemon.portal(), A, 0).unwrap();
    host.test_unit_ready().unwrap();
    // PERSISTENT RESERVE OUT, REGISTER (SPC-4 6.16: opcode 5Fh, service action 00h,
    // parameter list length 24 in bytes 5-8); parameter list: reservation key 0, service
    // action reservation key, APTPL clear.
    const KEY: u64 = 0x1122_3344_5566_7788;
    let mut params = vec![0u8; 24];
    params[8..16].copy_from_slice(&KEY.to_be_bytes());
    let out = host
        .raw_command(&[0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], &params, 0)
        .unwrap();
    assert_eq!(out.status, 0, "REGISTER: {out:?}");

    ok(
        socket,
        &["lun", "add", A, "1", "--bstype", "memory", "--size", "1M"],
    );
    // The session goes on with its nexus: REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh), not
    // POWER ON (29h/00h).
    let ua = host.test_unit_ready().unwrap_err();
    let ua = ua.scsi().expect("a SCSI error");
    assert_eq!((ua.sense_key, ua.asc, ua.ascq), (0x06, 0x3F, 0x0E));
    host.test_unit_ready().unwrap();
    // PERSISTENT RESERVE IN, READ KEYS (SPC-4 6.15: opcode 5Eh, service action 00h,
    // allocation length in bytes 7-8): PRGENERATION, ADDITIONAL LENGTH 8, the key.
    let keys = host
        .raw_command(&[0x5E, 0x00, 0, 0, 0, 0, 0, 0, 64, 0], &[], 64)
        .unwrap();
    assert_eq!(keys.status, 0, "READ KEYS: {keys:?}");
    assert_eq!(
        &keys.data[4..8],
        &8u32.to_be_bytes(),
        "one key: {:?}",
        keys.data
    );
    assert_eq!(&keys.data[8..16], &KEY.to_be_bytes());
}

#[test]
fn portals_added_live_serve_at_once_and_removed_ones_refuse_new_connections() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    let mut on_main = Initiator::connect(&daemon.portal(), A, 0).unwrap();
    on_main.write10(0, &[0x3c; 512], BLOCK).unwrap();

    // Add a second portal: it accepts logins at once.
    let extra = format!("127.0.0.1:{}", testkit::daemon::free_port().unwrap());
    assert_eq!(
        ok(socket, &["portal", "add", &extra]),
        format!("change\n+ portal {extra}\n")
    );
    let mut on_extra = Initiator::connect(&extra, A, 0).unwrap();
    assert_eq!(on_extra.read10(0, 1, BLOCK).unwrap(), vec![0x3c; 512]);
    let portals = json(socket, &["portal", "list"]);
    assert_eq!(portals[0]["portal"], daemon.portal());
    assert_eq!(portals[0]["kind"], "main");
    assert_eq!(portals[0]["sessions"], 1);
    assert_eq!(portals[1]["portal"], extra.as_str());
    assert_eq!(portals[1]["kind"], "added");
    assert_eq!(portals[1]["sessions"], 1);
    assert!(std::fs::read_to_string(&setup.config)
        .unwrap()
        .contains(&format!("portals = [\"{extra}\"]")));

    // Bad input: one line naming the value.
    let err = refused(socket, &["portal", "add", "127.0.0.1"]);
    assert!(
        err.contains("portal \"127.0.0.1\": not an address"),
        "{err}"
    );
    let err = refused(socket, &["portal", "add", &extra]);
    assert!(
        err.contains(&format!("portal {extra}: already listening")),
        "{err}"
    );
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = held.local_addr().unwrap().to_string();
    let err = refused(socket, &["portal", "add", &in_use]);
    assert!(
        err.contains(&format!("portal {in_use}: cannot listen")),
        "{err}"
    );
    let err = refused(socket, &["portal", "remove", &daemon.portal()]);
    assert!(err.contains("main portal"), "{err}");
    let err = refused(socket, &["portal", "remove", "127.0.0.1:9"]);
    assert!(err.contains("portal 127.0.0.1:9: no such portal"), "{err}");
    assert_eq!(
        json(socket, &["portal", "list"]).as_array().unwrap().len(),
        2
    );

    // In use: refused unless forced; forced, its session ends and it refuses connections.
    let err = refused(socket, &["portal", "remove", &extra]);
    assert!(
        err.contains(&format!("portal {extra}: in use by 1 session(s)")),
        "{err}"
    );
    on_extra.test_unit_ready().unwrap();
    assert_eq!(
        ok(socket, &["portal", "remove", &extra, "--force"]),
        format!("change\n- portal {extra}\n")
    );
    assert!(on_extra.test_unit_ready().is_err(), "its session ended");
    let refused_connect = std::net::TcpStream::connect(&extra).unwrap_err();
    assert_eq!(
        refused_connect.kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    // The main portal's session saw nothing of it.
    assert_eq!(on_main.read10(0, 1, BLOCK).unwrap(), vec![0x3c; 512]);
    assert!(!std::fs::read_to_string(&setup.config)
        .unwrap()
        .contains("portals"));

    // Added again, then a restart: the daemon listens there again.
    ok(socket, &["portal", "add", &extra]);
    drop(on_main);
    drop(daemon);
    let daemon = setup.start();
    let mut after = Initiator::connect(&extra, A, 0).unwrap();
    assert_eq!(
        after.read10(0, 1, BLOCK).unwrap(),
        vec![0u8; 512],
        "memory LUN"
    );
    let portals = json(socket, &["portal", "list"]);
    assert_eq!(portals[1]["portal"], extra.as_str());
    drop(daemon);
}

/// A daemon that does not answer (SIGSTOPped: its control socket still takes the
/// connection and the request): `admin` gives up after `--timeout` with one line saying
/// so, rather than hang; the change it sent is applied whole once the daemon runs again.
#[test]
fn admin_gives_up_on_a_daemon_that_does_not_answer_with_one_line() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    daemon.signal("STOP");
    let mut child = Command::new(BINARY)
        .args([
            "admin",
            "--socket",
            socket.to_str().unwrap(),
            "--timeout",
            "1",
        ])
        .args(["target", "add", B])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against a hang, not a measure of speed.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > guard {
            let _ = child.kill();
            daemon.signal("CONT");
            panic!("admin still waiting for a stopped daemon");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    daemon.signal("CONT");
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&format!(
            "the daemon at {} did not answer within 1 s",
            socket.display()
        )) && err.contains("admin export"),
        "{err}"
    );
    // Running again, it carries out what it was sent, whole.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ok(socket, &["target", "list"]).contains(B) {
        assert!(std::time::Instant::now() < guard, "{}", daemon.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(&setup.config).unwrap().contains(B));
    // A bad time limit is refused by name.
    let (done, _, err) = admin(socket, &["--timeout", "soon", "target", "list"]);
    assert!(!done && err.contains("--timeout"), "{err}");
}

/// The config file with `portal = "ADDR"` (the main portal) before its tables.
fn with_main_portal(config: &Path, addr: &str) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let rest: String = text
        .lines()
        .filter(|l| !l.starts_with("portal ="))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("portal = \"{addr}\"\n{rest}")
}

#[test]
fn a_changed_main_portal_moves_live_on_reload_and_an_address_in_use_changes_nothing() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    let old = daemon.portal();
    let mut on_old = Initiator::connect(&old, A, 0).unwrap();
    on_old.write10(0, &[0x5a; 512], BLOCK).unwrap();

    // SIGHUP with another `portal` in the file: the new address listens, the old one
    // refuses connections, and the session that came through it keeps running.
    let new = format!("127.0.0.1:{}", testkit::daemon::free_port().unwrap());
    std::fs::write(&setup.config, with_main_portal(&setup.config, &new)).unwrap();
    daemon.signal("HUP");
    daemon.wait_for_log_line(&["SIGHUP: config file reread"]);
    daemon.wait_for_log_line(&[
        "configuration changed",
        &format!("listening on {new} instead of {old}"),
    ]);
    let mut on_new = Initiator::connect(&new, A, 0).unwrap();
    assert_eq!(on_new.read10(0, 1, BLOCK).unwrap(), vec![0x5a; 512]);
    let refused_connect = std::net::TcpStream::connect(&old).unwrap_err();
    assert_eq!(
        refused_connect.kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    assert_eq!(on_old.read10(0, 1, BLOCK).unwrap(), vec![0x5a; 512]);
    on_old.write10(1, &[0x5b; 512], BLOCK).unwrap();
    // SendTargets names the new address (RFC 7143 13.8: `address:port,tpgt`).
    let found = Initiator::discover(&new).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, [format!("{new},1")], "{found:?}");
    let portals = json(socket, &["portal", "list"]);
    assert_eq!(portals.as_array().unwrap().len(), 1, "{portals}");
    assert_eq!(portals[0]["portal"], new.as_str());
    assert_eq!(portals[0]["kind"], "main");
    assert_eq!(portals[0]["sessions"], 1);
    let err = refused(socket, &["portal", "remove", &new]);
    assert!(
        err.contains("the main portal; move it with `portal"),
        "{err}"
    );

    // A new address that cannot be bound: one line naming it, and nothing changes;
    // through `admin apply` and through SIGHUP alike.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = held.local_addr().unwrap().to_string();
    let file = setup.dir.path().join("in-use.toml");
    std::fs::write(&file, with_main_portal(&setup.config, &in_use)).unwrap();
    let err = refused(socket, &["apply", file.to_str().unwrap()]);
    assert!(
        err.contains(&format!("portal {in_use}: cannot listen")),
        "{err}"
    );
    std::fs::write(&file, with_main_portal(&setup.config, "127.0.0.1:0")).unwrap();
    let err = refused(socket, &["apply", file.to_str().unwrap()]);
    assert!(err.contains("port 0"), "{err}");
    let before = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, with_main_portal(&setup.config, &in_use)).unwrap();
    daemon.signal("HUP");
    let line = daemon.wait_for_log_line(&["SIGHUP: config file not applied"]);
    assert!(
        line.contains(&format!("portal {in_use}: cannot listen")),
        "{line}"
    );
    assert_eq!(json(socket, &["portal", "list"])[0]["portal"], new.as_str());
    assert_eq!(on_new.read10(1, 1, BLOCK).unwrap(), vec![0x5b; 512]);
    Initiator::connect(&new, A, 0).unwrap();
    assert!(std::net::TcpStream::connect(&old).is_err());
    std::fs::write(&setup.config, before).unwrap();

    // Back to the old address with --force: the sessions that came through the address
    // left end; the one through the old address, the main portal again, runs on.
    std::fs::write(&file, with_main_portal(&setup.config, &old)).unwrap();
    assert_eq!(
        ok(socket, &["apply", file.to_str().unwrap(), "--force"]),
        format!(
            "change\n~ portal (applied: listening on {old} instead of {new}; sessions that \
             came through {new} end)\n"
        )
    );
    assert!(on_new.test_unit_ready().is_err(), "its session ended");
    assert!(std::net::TcpStream::connect(&new).is_err());
    assert_eq!(on_old.read10(1, 1, BLOCK).unwrap(), vec![0x5b; 512]);
    assert!(std::fs::read_to_string(&setup.config)
        .unwrap()
        .starts_with(&format!("portal = \"{old}\"")));
    drop(held);
}

#[test]
fn a_new_store_under_a_lun_keeps_its_reservations_and_tells_the_hosts_what_changed() {
    const HOST: &str = "iqn.2026-11.io.example:pr-host";
    const OTHER: &str = "iqn.2026-11.io.example:pr-other";
    const KEY: u64 = 0x0123_4567_89ab_cdef;
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    let first = setup.dir.path().join("first.img");
    let second = setup.dir.path().join("second.img");
    ok(socket, &["target", "add", B]);
    add_file_lun(socket, B, &first, "1M");
    let mut host = login_as(&daemon, B, HOST, None).unwrap();
    let mut other = login_as(&daemon, B, OTHER, None).unwrap();
    let _ = host.test_unit_ready();
    let _ = other.test_unit_ready();
    host.write10(10, &[0x6d; 512], BLOCK).unwrap();
    // PERSISTENT RESERVE OUT (SPC-4 6.16, opcode 5Fh; parameter list length 24 in bytes
    // 5-8). REGISTER (service action 00h): service action reservation key in bytes 8-15
    // of the parameter list, APTPL (byte 20 bit 0) set.
    let mut register = vec![0u8; 24];
    register[8..16].copy_from_slice(&KEY.to_be_bytes());
    register[20] = 0x01;
    let out = host
        .raw_command(&[0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], &register, 0)
        .unwrap();
    assert_eq!(out.status, 0, "REGISTER: {out:?}");
    // RESERVE (service action 01h), TYPE Write Exclusive (1h) in byte 2; the key in
    // bytes 0-7 of the parameter list.
    let mut reserve = vec![0u8; 24];
    reserve[..8].copy_from_slice(&KEY.to_be_bytes());
    let out = host
        .raw_command(&[0x5F, 0x01, 0x01, 0, 0, 0, 0, 0, 24, 0], &reserve, 0)
        .unwrap();
    assert_eq!(out.status, 0, "RESERVE: {out:?}");

    // The reservation as PERSISTENT RESERVE IN, READ RESERVATION (SPC-4 6.15.4: service
    // action 01h) reports it: additional length 16, the key, then TYPE in byte 21.
    let reservation = |host: &mut Initiator| {
        let out = host
            .raw_command(&[0x5E, 0x01, 0, 0, 0, 0, 0, 0, 64, 0], &[], 64)
            .unwrap();
        assert_eq!(out.status, 0, "READ RESERVATION: {out:?}");
        assert_eq!(&out.data[4..8], &16u32.to_be_bytes(), "{:?}", out.data);
        assert_eq!(&out.data[8..16], &KEY.to_be_bytes());
        assert_eq!(out.data[21] & 0x0F, 0x01, "Write Exclusive");
    };
    // WRITE(10) of one block at LBA 20 from the host that holds no reservation: status
    // RESERVATION CONFLICT (18h, SAM-5 table 33).
    let fenced = |other: &mut Initiator| {
        let out = other
            .raw_command(&[0x2A, 0, 0, 0, 0, 20, 0, 0, 1, 0], &[0x11; 512], 0)
            .unwrap();
        assert_eq!(out.status, 0x18, "{out:?}");
    };
    fenced(&mut other);

    // New bsopts: a new store over the same file, the same logical unit.
    assert_eq!(
        ok(socket, &["lun", "modify", B, "0", "--bsopts", "threads=2"]),
        format!("change\n~ lun {B}/0 (bsopts)\n")
    );
    host.test_unit_ready().unwrap();
    reservation(&mut host);
    fenced(&mut other);
    assert_eq!(host.read10(10, 1, BLOCK).unwrap(), vec![0x6d; 512]);

    // A new backing file, larger: the hosts learn of the capacity (2Ah/09h) and of the
    // new identity (3Fh/03h INQUIRY DATA HAS CHANGED), and the reservation stays.
    let mut image = std::fs::read(&first).unwrap();
    image.resize(2 << 20, 0);
    std::fs::write(&second, &image).unwrap();
    ok(
        socket,
        &[
            "lun",
            "modify",
            B,
            "0",
            "--backing-store",
            second.to_str().unwrap(),
        ],
    );
    for session in [&mut host, &mut other] {
        for (asc, ascq) in [(0x2A, 0x09), (0x3F, 0x03)] {
            let ua = session.test_unit_ready().unwrap_err();
            let ua = ua.scsi().expect("a SCSI error");
            assert_eq!((ua.sense_key, ua.asc, ua.ascq), (0x06, asc, ascq));
        }
        session.test_unit_ready().unwrap();
    }
    assert_eq!(host.read_capacity16().unwrap(), ((2 << 20) / 512, BLOCK));
    assert_eq!(host.read10(10, 1, BLOCK).unwrap(), vec![0x6d; 512]);
    host.write10(3000, &[0x42; 512], BLOCK).unwrap();
    reservation(&mut host);
    fenced(&mut other);
    // APTPL: the state went with the LUN to its new file, so a restart restores it.
    drop((host, other));
    drop(daemon);
    let daemon = setup.start();
    let mut other = login_as(&daemon, B, OTHER, None).unwrap();
    let _ = other.test_unit_ready();
    fenced(&mut other);
    reservation(&mut other);
}

#[test]
fn login_settings_changed_live_apply_to_new_logins_and_sessions_keep_theirs() {
    use testkit::initiator::{ConnectOptions, HeaderDigest};
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    let offer = |digest: HeaderDigest| ConnectOptions {
        header_digest: digest,
        ..ConnectOptions::default()
    };
    let login = |digest| Initiator::connect_with(&daemon.portal(), A, 0, &offer(digest));
    // Offered None,CRC32C while nothing is required, the target picks None.
    // The target declares its MaxRecvDataSegmentLength (RFC 7143 13.12), 256 KiB unless set.
    let mut old = login(HeaderDigest::NoneCrc32c).unwrap();
    daemon.wait_for_log_line(&[
        "login",
        "header_digest=false",
        "max_recv_data_segment_length=262144",
    ]);

    let changed = setup.dir.path().join("changed.toml");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &changed,
        format!(
            "require_header_digest = true\nmax_sessions_per_target = 2\n\
             max_recv_data_segment_length = 65536\n{text}"
        ),
    )
    .unwrap();
    let out = ok(socket, &["apply", changed.to_str().unwrap()]);
    assert!(
        out.contains("~ max_sessions_per_target (applies to new logins)"),
        "{out}"
    );
    assert!(
        out.contains("~ require_header_digest (applies to new logins)"),
        "{out}"
    );
    assert!(
        out.contains("~ max_recv_data_segment_length (applies to new logins)"),
        "{out}"
    );
    // Out of range: one line naming the key, nothing changed.
    let bad = setup.dir.path().join("bad.toml");
    std::fs::write(&bad, format!("max_recv_data_segment_length = 100\n{text}")).unwrap();
    let err = refused(socket, &["apply", bad.to_str().unwrap()]);
    assert!(
        err.contains("max_recv_data_segment_length: 100 is out of range 512..=16777215"),
        "{err}"
    );
    // The next logins: None alone is refused, None,CRC32C gets CRC32C...
    assert!(login(HeaderDigest::None).is_err());
    daemon.wait_for_log_line(&["login rejected", "HeaderDigest", "requires CRC32C"]);
    let mut new = login(HeaderDigest::NoneCrc32c).unwrap();
    daemon.wait_for_log_line(&[
        "login",
        "header_digest=true",
        "max_recv_data_segment_length=65536",
    ]);
    new.test_unit_ready().unwrap();
    // ...and the new bound holds: with the old session and the new one, a third is over.
    assert!(login(HeaderDigest::NoneCrc32c).is_err());
    // The session from before keeps what it negotiated (RFC 7143: keys are negotiated
    // at login only) and goes on.
    let _ = old.test_unit_ready();
    old.write10(1, &[0x2e; 512], BLOCK).unwrap();
    assert_eq!(new.read10(1, 1, BLOCK).unwrap(), vec![0x2e; 512]);
    // The file on disk has the new settings, so a restart serves them too.
    let saved = std::fs::read_to_string(&setup.config).unwrap();
    assert!(saved.contains("require_header_digest = true"), "{saved}");
}

#[test]
fn r2t_login_keys_set_in_the_file_apply_to_new_logins_and_writes_go_by_r2t() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    // libiscsi offers ImmediateData=Yes and InitialR2T=No; with nothing set we agree
    // (RFC 7143 13.10: ImmediateData is the AND of both offers; 13.11: InitialR2T the OR).
    let mut old = Initiator::connect(&daemon.portal(), A, 0).unwrap();
    daemon.wait_for_log_line(&["login", "immediate_data=true", "initial_r2t=false"]);

    let text = std::fs::read_to_string(&setup.config).unwrap();
    // Out of range (RFC 7143 13.17: 1 to 65535): one line naming the key, nothing changed.
    let bad = setup.dir.path().join("bad.toml");
    std::fs::write(&bad, format!("max_outstanding_r2t = 0\n{text}")).unwrap();
    let err = refused(socket, &["apply", bad.to_str().unwrap()]);
    assert!(
        err.contains("max_outstanding_r2t: 0 is out of range 1..=65535"),
        "{err}"
    );
    let changed = setup.dir.path().join("changed.toml");
    std::fs::write(
        &changed,
        format!("immediate_data = false\ninitial_r2t = true\nmax_outstanding_r2t = 1\n{text}"),
    )
    .unwrap();
    let out = ok(socket, &["apply", changed.to_str().unwrap()]);
    for key in ["immediate_data", "initial_r2t", "max_outstanding_r2t"] {
        assert!(
            out.contains(&format!("~ {key} (applies to new logins)")),
            "{key}: {out}"
        );
    }
    // A new login gets ImmediateData=No and InitialR2T=Yes whatever libiscsi offers, so
    // every byte of a write is solicited by R2T; a 64 KiB write and its read back show
    // the path works that way.
    let mut new = Initiator::connect(&daemon.portal(), A, 0).unwrap();
    daemon.wait_for_log_line(&[
        "login",
        "immediate_data=false",
        "initial_r2t=true",
        "max_outstanding_r2t=1",
    ]);
    let _ = new.test_unit_ready();
    let data = pattern(7, 65_536);
    new.write10(8, &data, BLOCK).unwrap();
    assert_eq!(new.read10(8, 128, BLOCK).unwrap(), data);
    // The session from before keeps what it negotiated and goes on.
    let _ = old.test_unit_ready();
    assert_eq!(old.read10(8, 128, BLOCK).unwrap(), data);
    let saved = std::fs::read_to_string(&setup.config).unwrap();
    assert!(saved.contains("immediate_data = false"), "{saved}");
    assert!(saved.contains("initial_r2t = true"), "{saved}");
    assert!(saved.contains("max_outstanding_r2t = 1"), "{saved}");
}

#[test]
fn after_a_store_swap_a_read_waits_for_the_old_stores_write_and_returns_its_data() {
    use testkit::fake::{FakeRoot, FaultRule};
    let root = FakeRoot::new();
    root.create_volume("vol");
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start_on_fake(&root);
    ok(socket, &["target", "add", B]);
    let glfs = [
        "--bstype",
        "glfs",
        "--backing-store",
        "vol@127.0.0.2:lun.img",
    ];
    ok(
        socket,
        &[&["lun", "add", B, "0"][..], &glfs[..], &["--size", "1M"]].concat(),
    );
    let mut writer = login_as(&daemon, B, "iqn.2026-11.io.example:writer", None).unwrap();
    let mut reader = login_as(&daemon, B, "iqn.2026-11.io.example:reader", None).unwrap();
    let _ = writer.test_unit_ready();
    let _ = reader.test_unit_ready();
    writer.write10(10, &pattern(1, 512), BLOCK).unwrap();

    root.set_rules(&[FaultRule::on(&["write"]).hang()]);
    std::thread::scope(|scope| {
        let write = scope.spawn(|| writer.write10(10, &pattern(2, 512), BLOCK));
        std::thread::sleep(std::time::Duration::from_millis(300)); // let it reach the store
                                                                   // New bsopts: a new store over the same file while the write hangs in the old.
        assert_eq!(
            ok(socket, &["lun", "modify", B, "0", "--bsopts", "hold=5"]),
            format!("change\n~ lun {B}/0 (bsopts)\n")
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let read = scope.spawn(move || {
            let data = reader.read10(10, 1, BLOCK);
            let _ = tx.send(());
            data
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(
            rx.try_recv().is_err(),
            "the read was answered while the old store still held the write"
        );
        // The old write completes, the old store is flushed, then the read is served.
        root.clear();
        write.join().unwrap().unwrap();
        assert_eq!(read.join().unwrap().unwrap(), pattern(2, 512));
    });
}

/// Field failure #8: removing a volume's only LUN and adding it again (an operator's or a
/// script's cycle) mounts the volume once, not once per cycle (libgfapi leaks with every
/// `glfs_new`/`glfs_fini`): the idle mount lingers and the next LUN reuses it. At
/// shutdown the idle mount is unmounted at once. Counted in the fake's log of the mount
/// (one line per `glfs_init`, one per `glfs_fini`).
#[test]
fn a_volumes_only_lun_removed_and_added_again_mounts_the_volume_once() {
    use testkit::fake::FakeRoot;
    let root = FakeRoot::new();
    root.create_volume("vol");
    let setup = Setup::new();
    let socket = &setup.socket;
    let gfapi_log = setup.dir.path().join("gfapi.log");
    let bsopts = format!("logfile={};loglevel=7", gfapi_log.display());
    let mut daemon = setup.start_on_fake(&root);
    ok(socket, &["target", "add", B]);
    let counts = || {
        let log = std::fs::read_to_string(&gfapi_log).unwrap_or_default();
        let mounts = log.matches(": volume mounted from ").count();
        let finis = log.lines().filter(|l| l.ends_with(": fini")).count();
        (mounts, finis)
    };
    for cycle in 0..5u8 {
        ok(
            socket,
            &[
                "lun",
                "add",
                B,
                "0",
                "--bstype",
                "glfs",
                "--backing-store",
                "vol@127.0.0.2:lun.img",
                "--bsopts",
                &bsopts,
                "--size",
                "1M",
            ],
        );
        let mut ini = login_as(&daemon, B, "iqn.2026-11.io.example:cycler", None).unwrap();
        let _ = ini.test_unit_ready();
        if cycle > 0 {
            assert_eq!(ini.read10(0, 1, BLOCK).unwrap(), pattern(cycle - 1, 512));
        }
        ini.write10(0, &pattern(cycle, 512), BLOCK).unwrap();
        drop(ini);
        ok(socket, &["lun", "remove", B, "0", "--force"]);
    }
    assert_eq!(
        counts(),
        (1, 0),
        "five add/remove cycles: one glfs_init, no glfs_fini"
    );
    daemon.terminate();
    assert!(daemon
        .wait_exit(std::time::Duration::from_secs(60))
        .is_some_and(|s| s.success()));
    assert_eq!(counts(), (1, 1), "the idle mount is unmounted at shutdown");
}

/// The daemon on the fake (with `extra` arguments) serving target B with LUN 0 on
/// `vol@127.0.0.2:lun.img` of `size`, and a host logged in to it.
fn glfs_lun_on_fake(
    setup: &Setup,
    root: &testkit::fake::FakeRoot,
    size: &str,
    extra: &[&str],
) -> (Running, Initiator) {
    let daemon = setup.start_on_fake_with(root, extra);
    let socket = &setup.socket;
    ok(socket, &["target", "add", B]);
    let glfs = [
        "--bstype",
        "glfs",
        "--backing-store",
        "vol@127.0.0.2:lun.img",
    ];
    ok(
        socket,
        &[&["lun", "add", B, "0"][..], &glfs[..], &["--size", size]].concat(),
    );
    let mut host = Initiator::connect(&daemon.portal(), B, 0).unwrap();
    let _ = host.test_unit_ready();
    (daemon, host)
}

/// Sends `request` on a fresh connection to the control socket; the connection, for
/// [`next_answer`].
fn request_raw(
    socket: &Path,
    request: &Value,
) -> std::io::BufReader<std::os::unix::net::UnixStream> {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    writeln!(stream, "{request}").unwrap();
    std::io::BufReader::new(stream)
}

/// The next line the daemon answers on `answers`.
fn next_answer(answers: &mut std::io::BufReader<std::os::unix::net::UnixStream>) -> Value {
    use std::io::BufRead;
    let mut line = String::new();
    answers.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Answers on `answers` until the reply (progress lines skipped).
fn reply_of(answers: &mut std::io::BufReader<std::os::unix::net::UnixStream>) -> Value {
    loop {
        let answer = next_answer(answers);
        if answer.get("progress").is_none() {
            return answer;
        }
    }
}

/// `admin lun clone` on a file LUN: the new file holds the LUN as it was when the clone
/// began (its first progress line, when the copy stands in the LUN's path) while a host
/// goes on writing the LUN; the file is sparse where the LUN never had data, and serves
/// as a LUN of its own once added. A file already there is refused and left as it was;
/// a memory LUN has no file to copy.
#[test]
fn a_lun_is_cloned_as_it_was_while_a_host_writes_it() {
    const MIB: u64 = 1 << 20;
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    ok(socket, &["target", "add", B]);
    let image = setup.dir.path().join("disk.img");
    add_file_lun(socket, B, &image, "16M");
    let mut host = Initiator::connect(&daemon.portal(), B, 0).unwrap();
    let _ = host.test_unit_ready();
    let lba = |at: u64| at / u64::from(BLOCK);
    // Before: 64 KiB of data at the start of every other MiB.
    for m in (0..16).step_by(2) {
        host.write10(lba(m * MIB), &pattern(m as u8, 64 << 10), BLOCK)
            .unwrap();
    }
    let clone = setup.dir.path().join("disk-clone.img");
    let to = clone.to_str().unwrap();
    let request = json!({"op": "lun-clone", "target": B, "lun": 0, "to": to});
    let mut answers = request_raw(socket, &request);
    let first = next_answer(&mut answers);
    assert_eq!(first["progress"]["done"], 0, "{first}");
    assert_eq!(first["progress"]["total"], 16 * MIB, "{first}");
    // After the clone began: 4 KiB over the start of every MiB.
    for m in 0..16 {
        host.write10(lba(m * MIB), &[0xEE; 4096], BLOCK).unwrap();
    }
    let reply = reply_of(&mut answers);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["to"], to);
    assert_eq!(reply["data"]["bytes"], 16 * MIB);
    assert_eq!(
        reply["data"]["written"],
        8 * MIB,
        "the MiBs with data, no others"
    );
    // The MiBs with data were read; of the holes, those a write came for before the copy
    // asked about them (a write waits for its chunk's copy, which then reads it).
    let read = reply["data"]["read"].as_u64().unwrap();
    assert!((8 * MIB..=16 * MIB).contains(&read), "{reply}");

    let copy = std::fs::read(&clone).unwrap();
    assert_eq!(copy.len() as u64, 16 * MIB);
    for m in 0..16u64 {
        let at = (m * MIB) as usize;
        let want = match m % 2 {
            0 => pattern(m as u8, 64 << 10),
            _ => vec![0; 64 << 10],
        };
        assert!(
            copy[at..at + (64 << 10)] == want[..],
            "MiB {m} of the clone"
        );
    }
    {
        use std::os::unix::fs::MetadataExt;
        let allocated = std::fs::metadata(&clone).unwrap().blocks() * 512;
        assert!(
            allocated <= 8 * MIB + (1 << 20),
            "allocated: {allocated} bytes"
        );
    }
    // The LUN has the host's later writes.
    for m in 0..16 {
        assert_eq!(
            host.read10(lba(m * MIB), 8, BLOCK).unwrap(),
            vec![0xEE; 4096]
        );
    }
    // Served as a LUN of its own, it reads back as the LUN was.
    let added = add_file_lun_with(socket, B, "1", &clone, &[]);
    assert_eq!(added, format!("change\n+ lun {B}/1\n"));
    let mut on_clone = Initiator::connect(&daemon.portal(), B, 1).unwrap();
    let _ = on_clone.test_unit_ready();
    assert_eq!(
        on_clone.read10(lba(2 * MIB), 128, BLOCK).unwrap(),
        pattern(2, 64 << 10)
    );

    // A file already there is refused, untouched; so is a LUN with no file.
    let err = refused(socket, &["lun", "clone", B, "0", "--to", to]);
    assert!(err.contains("already exists"), "{err}");
    assert!(std::fs::read(&clone).unwrap() == copy);
    let other = setup.dir.path().join("memory-clone.img");
    let err = refused(
        socket,
        &["lun", "clone", A, "0", "--to", other.to_str().unwrap()],
    );
    assert!(err.contains("memory LUN"), "{err}");
    assert!(!other.exists());
    let err = refused(
        socket,
        &["lun", "clone", B, "7", "--to", other.to_str().unwrap()],
    );
    assert!(err.contains("no such LUN"), "{err}");
}

/// While a glfs LUN is being cloned (the fake's clone writes hang until the rules
/// change) the LUN keeps its store: changing, resizing or cloning it again is refused,
/// and a host's write over data not yet copied waits for that data's copy. A clone that
/// fails (the volume is full) is removed and leaves the LUN as it was.
#[test]
fn a_lun_being_cloned_is_held_as_it_is_and_a_failed_clone_leaves_nothing() {
    use testkit::fake::FaultRule;
    const MIB: u64 = 1 << 20;
    let root = testkit::fake::FakeRoot::new();
    root.create_volume("vol");
    let setup = Setup::new();
    let socket = &setup.socket;
    let (daemon, mut host) = glfs_lun_on_fake(&setup, &root, "8M", &["--metrics", "127.0.0.1:0"]);
    let lba = |at: u64| at / u64::from(BLOCK);
    host.write10(0, &pattern(1, 4096), BLOCK).unwrap();
    host.write10(lba(6 * MIB), &pattern(6, 4096), BLOCK)
        .unwrap();

    root.set_rules(&[FaultRule::on(&["write"]).path("/clone-*").hang()]);
    let request = json!({"op": "lun-clone", "target": B, "lun": 0, "to": "clone-1.img"});
    let mut answers = request_raw(socket, &request);
    let first = next_answer(&mut answers);
    assert_eq!(first["progress"]["done"], 0, "{first}");
    for args in [
        &["lun", "modify", B, "0", "--read-only", "true"][..],
        &["lun", "resize", B, "0", "16M"][..],
        &["lun", "remove", B, "0", "--force"][..],
    ] {
        let err = refused(socket, args);
        assert!(err.contains("it is being cloned"), "{args:?}: {err}");
    }
    let err = refused(socket, &["lun", "clone", B, "0", "--to", "clone-2.img"]);
    assert!(err.contains("being cloned already"), "{err}");
    // `lun show` tells where the copy goes and how far it is (hung in its first chunks).
    let shown = json(socket, &["lun", "show", B, "0"]);
    let clone = &shown["clone"];
    assert_eq!(clone["to"], "vol@127.0.0.2:clone-1.img", "{shown}");
    assert_eq!(clone["total_bytes"], 8 * MIB, "{shown}");
    assert!(clone["done_bytes"].as_u64().unwrap() < 8 * MIB, "{shown}");
    let table = ok(socket, &["lun", "show", B, "0"]);
    assert!(table.contains("to vol@127.0.0.2:clone-1.img: "), "{table}");
    // So do the metrics.
    let series =
        |name: &str| format!("glfs_iscsi_lun_clone_{name}_bytes{{target=\"{B}\",lun=\"0\"}}");
    let text = scrape_metrics(&daemon);
    assert_eq!(
        metric_sample(&text, &series("total")),
        Some((8 * MIB) as f64),
        "{text}"
    );
    let copied = metric_sample(&text, &series("copied")).expect("copied bytes");
    assert!(copied < (8 * MIB) as f64, "{copied}");
    assert!(!root.file_path("vol", "clone-2.img").exists());

    // The copy hangs in its first chunks; MiB 6 is not copied, so a write there waits
    // until the copy goes on (the rules change, half a second from now).
    let released = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            root.set_rules(&[]);
        });
        let began = std::time::Instant::now();
        host.write10(lba(6 * MIB), &[0xEE; 4096], BLOCK).unwrap();
        began.elapsed()
    });
    assert!(
        released >= std::time::Duration::from_millis(400),
        "the write over uncopied data was answered after {released:?}, before the copy went on"
    );
    let reply = reply_of(&mut answers);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["to"], "vol@127.0.0.2:clone-1.img");
    assert!(reply["data"]["held"].as_u64().unwrap() >= 1, "{reply}");
    let copy = std::fs::read(root.file_path("vol", "clone-1.img")).unwrap();
    assert_eq!(copy.len() as u64, 8 * MIB);
    assert!(copy[..4096] == pattern(1, 4096)[..]);
    assert!(
        copy[6 * MIB as usize..][..4096] == pattern(6, 4096)[..],
        "the clone has MiB 6 as it was"
    );
    assert_eq!(
        host.read10(lba(6 * MIB), 8, BLOCK).unwrap(),
        vec![0xEE; 4096]
    );
    // Another volume, named whole, takes a clone too.
    root.create_volume("vol2");
    let cloned = ok(
        socket,
        &["lun", "clone", B, "0", "--to", "vol2@127.0.0.2:copy.img"],
    );
    assert!(cloned.contains("vol2@127.0.0.2:copy.img"), "{cloned}");
    let other = std::fs::read(root.file_path("vol2", "copy.img")).unwrap();
    assert_eq!(other.len() as u64, 8 * MIB);
    assert!(other[6 * MIB as usize..][..4096] == [0xEE; 4096]);
    // Done: the LUN changes again, and the clone's series are gone.
    assert_eq!(json(socket, &["lun", "show", B, "0"])["clone"], Value::Null);
    let text = scrape_metrics(&daemon);
    assert_eq!(metric_sample(&text, &series("total")), None, "{text}");
    ok(socket, &["lun", "resize", B, "0", "16M"]);

    // A volume without room: the unfinished clone is removed, the LUN serves on.
    root.set_rules(&[FaultRule::on(&["write"]).path("/full-*").errno("ENOSPC")]);
    let err = refused(socket, &["lun", "clone", B, "0", "--to", "full-1.img"]);
    assert!(err.contains("the unfinished copy was removed"), "{err}");
    assert!(err.contains("the LUN is unchanged"), "{err}");
    assert!(!root.file_path("vol", "full-1.img").exists());
    // (The grown capacity, and the soft threshold that follows it, are unit attentions
    // first.)
    let ready = (0..4).any(|_| host.test_unit_ready().is_ok());
    assert!(ready, "the unit attentions did not end");
    host.write10(lba(7 * MIB), &[0x77; 512], BLOCK).unwrap();
    assert_eq!(
        host.read10(lba(7 * MIB), 1, BLOCK).unwrap(),
        vec![0x77; 512]
    );

    // Cancelled: the copy stops at its next chunks, the request fails, the file goes.
    root.set_rules(&[FaultRule::on(&["write"]).path("/clone-*").hang()]);
    let request = json!({"op": "lun-clone", "target": B, "lun": 0, "to": "clone-3.img"});
    let mut answers = request_raw(socket, &request);
    assert_eq!(next_answer(&mut answers)["progress"]["done"], 0);
    let cancelled = ok(socket, &["lun", "clone", B, "0", "--cancel"]);
    assert!(
        cancelled.contains("clone to vol@127.0.0.2:clone-3.img"),
        "{cancelled}"
    );
    root.set_rules(&[]);
    let reply = reply_of(&mut answers);
    assert_eq!(reply["ok"], false, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(
        err.contains("cancelled; the unfinished copy was removed"),
        "{err}"
    );
    assert!(!root.file_path("vol", "clone-3.img").exists());
    let err = refused(socket, &["lun", "clone", B, "0", "--cancel"]);
    assert!(err.contains("no clone of it is being made"), "{err}");
}

/// A gateway among several (`--gateway-id`) refuses `lun clone`: the writes that come
/// through the other gateways would not wait for the copy.
#[test]
fn a_gateway_among_several_refuses_to_clone() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let _daemon = Running::start(&setup.args(&["--gateway-id", "gw-a"]), &[]);
    ok(socket, &["target", "add", B]);
    let image = setup.dir.path().join("shared.img");
    add_file_lun(socket, B, &image, "4M");
    let to = setup.dir.path().join("shared-clone.img");
    let err = refused(
        socket,
        &["lun", "clone", B, "0", "--to", to.to_str().unwrap()],
    );
    assert!(err.contains("exports its LUNs with others"), "{err}");
    assert!(!to.exists());
}

/// A daemon told to stop while a LUN is being cloned does not wait for the whole copy: the
/// copy stops at its next chunks and its unfinished file is removed.
#[test]
fn stopping_the_daemon_cancels_a_clone_and_removes_its_file() {
    use testkit::fake::FaultRule;
    let root = testkit::fake::FakeRoot::new();
    root.create_volume("vol");
    let setup = Setup::new();
    let socket = &setup.socket;
    let (mut daemon, mut host) = glfs_lun_on_fake(&setup, &root, "64M", &[]);
    for m in 0..64u64 {
        host.write10(m * 2048, &pattern(m as u8, 4096), BLOCK)
            .unwrap();
    }
    drop(host);
    root.set_rules(&[FaultRule::on(&["write"]).path("/clone-*").hang()]);
    let request = json!({"op": "lun-clone", "target": B, "lun": 0, "to": "clone-stop.img"});
    let mut answers = request_raw(socket, &request);
    assert_eq!(next_answer(&mut answers)["progress"]["done"], 0);
    assert!(root.file_path("vol", "clone-stop.img").exists());
    daemon.terminate();
    // The copy is in its first chunks' writes, hung until the rules change.
    std::thread::sleep(std::time::Duration::from_millis(300));
    root.set_rules(&[]);
    let status = daemon.wait_exit(std::time::Duration::from_secs(30));
    assert!(status.is_some(), "the daemon did not stop");
    assert!(
        !root.file_path("vol", "clone-stop.img").exists(),
        "the unfinished copy is still there"
    );
}

/// A daemon told to stop while an admin request is still at work (a fully provisioned
/// LUN's allocation on a volume that does not answer: the fake's fallocate hangs) stops
/// within its grace time instead of waiting for that work.
#[test]
fn stopping_the_daemon_does_not_wait_for_admin_work_past_the_grace_time() {
    use testkit::fake::FaultRule;
    let root = testkit::fake::FakeRoot::new();
    root.create_volume("vol");
    let setup = Setup::new();
    let socket = &setup.socket;
    let mut daemon = setup.start_on_fake_with(&root, &["--shutdown-grace", "2"]);
    ok(socket, &["target", "add", B]);
    root.set_rules(&[FaultRule::on(&["fallocate"]).path("/full-*").hang()]);
    let request = json!({"op": "lun-add", "target": B, "entry": {
        "lun": 0, "bstype": "glfs", "backing_store": "vol@127.0.0.2:full-1.img",
        "size": "64M", "provisioning": "full"
    }});
    let mut answers = request_raw(socket, &request);
    // The allocation has begun (and hangs in its first fallocate).
    assert_eq!(next_answer(&mut answers)["progress"]["done"], 0);
    let asked = std::time::Instant::now();
    daemon.terminate();
    let status = daemon.wait_exit(std::time::Duration::from_secs(30));
    let took = asked.elapsed();
    root.set_rules(&[]);
    assert!(
        status.is_some(),
        "the daemon did not stop: {}",
        daemon.log()
    );
    assert!(
        took < std::time::Duration::from_secs(15),
        "stopped after {took:?}"
    );
}

/// `tcp_congestion` changed live: new connections get it, connections from before keep
/// theirs; a name the kernel lacks is refused with nothing changed.
#[test]
fn tcp_congestion_changed_live_applies_to_new_connections() {
    let setup = Setup::new();
    let socket = &setup.socket;
    let daemon = setup.start();
    let default = default_congestion();
    let wanted = congestion_other_than_default();
    // Each its own initiator: a second session of one initiator and ISID would
    // reinstate (end) the first.
    let (old, _) = raw_session_as(daemon.portal, A, "iqn.2026-12.test:old");
    assert_eq!(target_side_congestion(&old), default);

    let text = std::fs::read_to_string(&setup.config).unwrap();
    let bad = setup.dir.path().join("bad.toml");
    std::fs::write(&bad, format!("tcp_congestion = \"no_such_cc\"\n{text}")).unwrap();
    let err = refused(socket, &["apply", bad.to_str().unwrap()]);
    assert!(
        err.contains(
            "tcp_congestion: tcp congestion control no_such_cc: this kernel does not offer it"
        ),
        "{err}"
    );
    let (unchanged, _) = raw_session_as(daemon.portal, A, "iqn.2026-12.test:unchanged");
    assert_eq!(target_side_congestion(&unchanged), default);

    let changed = setup.dir.path().join("changed.toml");
    std::fs::write(&changed, format!("tcp_congestion = \"{wanted}\"\n{text}")).unwrap();
    let out = ok(socket, &["apply", changed.to_str().unwrap()]);
    assert!(
        out.contains("~ tcp_congestion (applies to new connections)"),
        "{out}"
    );
    let (new, _) = raw_session_as(daemon.portal, A, "iqn.2026-12.test:new");
    assert_eq!(target_side_congestion(&new), wanted);
    assert_eq!(target_side_congestion(&old), default);
    let saved = std::fs::read_to_string(&setup.config).unwrap();
    assert!(
        saved.contains(&format!("tcp_congestion = \"{wanted}\"")),
        "{saved}"
    );
}
