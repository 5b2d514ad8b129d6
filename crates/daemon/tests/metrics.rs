//! `--metrics ADDR`: the real binary serves Prometheus text metrics whose counters match
//! the I/O a libiscsi initiator did.

mod support;

use std::time::{Duration, Instant};
use support::{
    glfs_target, login_as, metric_sample as sample, metrics_address, ok, pattern,
    scrape_metrics_at as scrape, with_outage, Running, BLOCK, IQN,
};
use testkit::fake::FakeRoot;
use testkit::initiator::Initiator;

fn lun_series(name: &str, extra: &str) -> String {
    format!("glfs_iscsi_{name}{{target=\"{IQN}\",lun=\"0\"{extra}}}")
}

#[test]
fn scraped_counters_match_the_io_done() {
    let target = Running::start(
        &[
            "--bstype",
            "memory",
            "--size",
            "1M",
            "--metrics",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = metrics_address(&target);

    let mut i = target.connect();
    // Known I/O: 3 WRITE(10) of 8 blocks, 4 READ(10) of 16 blocks, and one READ(10) past
    // the last block (2048 blocks of 512 bytes): CHECK CONDITION, ILLEGAL REQUEST (SBC-4
    // 4.16: LOGICAL BLOCK ADDRESS OUT OF RANGE).
    for n in 0..3u64 {
        i.write10(n * 8, &pattern(n as u8, 8 * BLOCK as usize), BLOCK)
            .unwrap();
    }
    for n in 0..4u64 {
        i.read10(n * 16, 16, BLOCK).unwrap();
    }
    let err = i.read10(4096, 1, BLOCK).unwrap_err();
    assert_eq!(err.scsi().map(|e| e.sense_key), Some(0x05), "{err}");

    let text = scrape(&addr);
    let value = |series: String| {
        sample(&text, &series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert_eq!(
        value(lun_series("lun_commands_total", ",kind=\"write\"")),
        3.0
    );
    assert_eq!(
        value(lun_series("lun_commands_total", ",kind=\"read\"")),
        5.0
    );
    assert_eq!(
        value(lun_series("lun_bytes_total", ",direction=\"write\"")),
        (3 * 8 * BLOCK) as f64
    );
    assert_eq!(
        value(lun_series("lun_bytes_total", ",direction=\"read\"")),
        (4 * 16 * BLOCK) as f64,
        "the failed read moved nothing"
    );
    assert_eq!(
        value(lun_series(
            "lun_errors_total",
            ",sense_key=\"illegal_request\""
        )),
        1.0
    );
    // libiscsi's connect sent TEST UNIT READY (at least once, for the power-on unit
    // attention) before the reads and writes.
    assert!(value(lun_series("lun_commands_total", ",kind=\"other\"")) >= 1.0);
    assert_eq!(value(lun_series("lun_commands_in_flight", "")), 0.0);
    // Every answered read is in the latency histogram.
    let read_count = format!(
        "glfs_iscsi_lun_command_duration_seconds_count{{target=\"{IQN}\",lun=\"0\",kind=\"read\"}}"
    );
    assert_eq!(value(read_count), 5.0);
    let t = format!("{{target=\"{IQN}\"}}");
    assert_eq!(value(format!("glfs_iscsi_target_sessions{t}")), 1.0);
    assert_eq!(value(format!("glfs_iscsi_target_logins_total{t}")), 1.0);

    // A login to a target that does not exist: counted without its (unconfigured) name.
    let missing = Initiator::connect(&target.portal(), "iqn.2026-11.io.glfs-iscsi:nope", 0);
    assert!(missing.is_err());
    i.logout().unwrap();
    drop(i);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(&addr);
        let failed = sample(
            &text,
            "glfs_iscsi_login_failures_total{target=\"\",reason=\"not_found\"}",
        );
        let sessions = sample(&text, &format!("glfs_iscsi_target_sessions{t}"));
        if failed == Some(1.0) && sessions == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "failed login {failed:?} and sessions {sessions:?} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_metrics_nothing_listens_and_a_bad_address_stops_the_start() {
    let target = Running::start(&["--bstype", "memory", "--size", "1M"], &[]);
    assert!(!target.log().contains("metrics on"), "{}", target.log());
    // An address in use: the start fails with one line naming the option.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = support::run_to_exit(&["--bstype", "memory", "--size", "1M", "--metrics", &addr]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--metrics: cannot listen on {addr}")),
        "{err}"
    );
}

#[test]
fn a_gluster_outage_counts_one_loss_and_one_reconnect_with_its_duration() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_address(&target);
    let mut init = target.connect();
    init.write10(8, &pattern(6, 512), BLOCK).unwrap();
    // The volume drops every connection (mounts included) for about 2 s; the write waits
    // (the default hold is 15 s) and succeeds once the store has reconnected.
    with_outage(&root, "vol", Duration::from_secs(2), || {
        init.write10(9, &pattern(7, 512), BLOCK).unwrap();
    });
    let v = "{volume=\"vol\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = scrape(&addr);
        if sample(&text, &format!("glfs_iscsi_gluster_reconnects_total{v}")) == Some(1.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no reconnect counted in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(
            &text,
            &format!("glfs_iscsi_gluster_connection_losses_total{v}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("glfs_iscsi_gluster_reconnect_duration_seconds_count{v}")
        ),
        Some(1.0)
    );
    // The outage lasted about 2 s from the first failed request.
    let took = sample(
        &text,
        &format!("glfs_iscsi_gluster_reconnect_duration_seconds_sum{v}"),
    )
    .expect("the reconnect time");
    assert!(took >= 1.0, "reconnect took {took} s");
    // The held write was answered GOOD: the only error counted is the power-on unit
    // attention libiscsi's connect met.
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("glfs_iscsi_lun_errors_total{"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("sense_key=\"unit_attention\""),
        "{errors:?}"
    );
}

const KEEP: &str = "iqn.2026-11.io.glfs-iscsi:keep";
const GONE: &str = "iqn.2026-11.io.glfs-iscsi:gone";

/// The series of `text` naming `target` (and LUN `lun`, if given).
fn series_of(text: &str, target: &str, lun: Option<u16>) -> Vec<String> {
    let needle = match lun {
        Some(lun) => format!("target=\"{target}\",lun=\"{lun}\""),
        None => format!("target=\"{target}\""),
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// A daemon serving a thin 2 MiB file LUN `name` in `dir`, with `extra` arguments; the
/// image's path.
fn file_lun(dir: &std::path::Path, name: &str, extra: &[&str]) -> (Running, std::path::PathBuf) {
    let image = dir.join(name);
    let mut args = vec![
        "--bstype",
        "file",
        "--backing-store",
        image.to_str().unwrap(),
        "--size",
        "2M",
    ];
    args.extend_from_slice(extra);
    (Running::start(&args, &[]), image)
}

/// Every LUN's storage is sampled from the start: what its blocks take on the storage and
/// what is free there (a fully provisioned file LUN has all its blocks allocated).
#[test]
fn the_space_of_each_luns_storage_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let (target, _) = file_lun(
        dir.path(),
        "space.img",
        &[
            "--provisioning",
            "full",
            "--metrics",
            "127.0.0.1:0",
            "--control-socket",
            socket.to_str().unwrap(),
        ],
    );
    let addr = metrics_address(&target);
    let allocated = lun_series("lun_allocated_bytes", "");
    let available = lun_series("lun_storage_available_bytes", "");
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = scrape(&addr);
        if sample(&text, &allocated).is_some() {
            break text;
        }
        assert!(Instant::now() < deadline, "no {allocated} in:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        sample(&text, &allocated).unwrap() >= (2 << 20) as f64,
        "{text}"
    );
    assert!(sample(&text, &available).unwrap() > 0.0, "{text}");
    assert!(
        text.contains("# TYPE glfs_iscsi_lun_allocated_bytes gauge"),
        "{text}"
    );
    // The same sample in `admin lun show`.
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&socket, &["lun", "show", IQN, "0", "--json"])).unwrap();
    let row = &shown;
    assert!(
        row["allocated_bytes"].as_u64().unwrap() >= 2 << 20,
        "{shown}"
    );
    assert!(
        row["storage_available_bytes"].as_u64().unwrap() > 0,
        "{shown}"
    );
    assert_eq!(row["provisioning"], "full");
}

/// Thin LUNs on one file system that each fit in its free space but together do not: one
/// warning names them all, with what they could take together.
#[test]
fn the_thin_luns_on_one_file_system_are_summed_against_its_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let (target, first) = file_lun(
        dir.path(),
        "first.img",
        &["--control-socket", socket.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let free = loop {
        let shown: serde_json::Value =
            serde_json::from_str(&ok(&socket, &["lun", "show", IQN, "0", "--json"])).unwrap();
        if let Some(free) = shown["storage_available_bytes"].as_u64() {
            break free;
        }
        assert!(Instant::now() < deadline, "no sample: {shown}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Two sparse LUNs of 60% of the free space each, in MiB.
    let size = format!("{}M", (free / 10 * 6) >> 20);
    for (lun, name) in [("1", "a.img"), ("2", "b.img")] {
        let path = dir.path().join(name);
        ok(
            &socket,
            &[
                "lun",
                "add",
                IQN,
                lun,
                "--bstype",
                "file",
                "--backing-store",
                path.to_str().unwrap(),
                "--size",
                &size,
            ],
        );
    }
    // The next round (every 15 s) sums them.
    let line = target.wait_for_log_line_within(
        &[
            &format!("the storage of {IQN}/0 (file {}), {IQN}/1", first.display()),
            "its thin LUNs together could still take",
        ],
        Duration::from_secs(40),
    );
    assert!(line.contains(&format!("{IQN}/2 (file ")), "{line}");
}

/// A thin LUN's sampled storage reaches the hosts too: LOG SENSE lists the Logical Block
/// Provisioning log page (SBC-3 0Ch) once the first round has sampled it, with the
/// threshold sets (1 MiB) still free on the storage (0001h) and those the LUN uses (0002h).
#[test]
fn a_thin_luns_storage_is_in_its_logical_block_provisioning_log_page() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _) = file_lun(dir.path(), "thin.img", &[]);
    let mut i = target.connect();
    i.write10(0, &pattern(4, 64 * BLOCK as usize), BLOCK)
        .unwrap();
    // LOG SENSE (SPC-4 6.6): PC 01b with PAGE CODE in byte 2, ALLOCATION LENGTH 7..9.
    let log_sense = |i: &mut Initiator, page: u8| {
        let out = i
            .raw_command(&[0x4D, 0, 0x40 | page, 0, 0, 0, 0, 0, 255, 0], &[], 255)
            .unwrap();
        assert_eq!(out.status, 0, "LOG SENSE page {page:#04x}: {out:?}");
        out.data
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log_sense(&mut i, 0x00)[4..].contains(&0x0C) {
        assert!(Instant::now() < deadline, "no page 0Ch listed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let page = log_sense(&mut i, 0x0C);
    // Header, then parameters 0001h and 0002h of 12 bytes each.
    assert_eq!(page[..4], [0x0C, 0x00, 0x00, 0x18]);
    assert_eq!(page[4..8], [0x00, 0x01, 0x03, 0x08]);
    assert_eq!(page[16..20], [0x00, 0x02, 0x03, 0x08]);
    let count = |at: usize| u32::from_be_bytes(page[at..at + 4].try_into().unwrap());
    assert!(count(8) > 0, "free sets on the storage: {page:02x?}");
    // What the file's blocks take: at most the 2 MiB file and its metadata.
    assert!(count(20) <= 3, "{page:02x?}");
}

/// A thin LUN's soft threshold (SBC-3, logical block provisioning thresholds) end to end: a threshold above what the
/// storage could have free is reached by the first sample (logged, and in the Logical
/// Block Provisioning mode page 1Ch/02h as THRESHOLD COUNT in 1 MiB sets); `lun modify
/// --soft-threshold` changes the page (MODE PARAMETERS CHANGED, 2Ah/01h) and, set anew, is
/// reached again at the next sample: UNIT ATTENTION, THIN PROVISIONING SOFT THRESHOLD
/// REACHED (38h/07h).
#[test]
fn a_thin_luns_hosts_are_told_when_its_storage_falls_to_the_soft_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let (target, _) = file_lun(
        dir.path(),
        "thin.img",
        &[
            "--soft-threshold",
            "1P",
            "--control-socket",
            socket.to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    target.wait_for_log_line(&["at or below the LUN's soft threshold"]);
    let reached = lun_series("lun_soft_threshold_reached", "");
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = metrics_address(&target);
    while sample(&scrape(&addr), &reached) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "no {reached} 1 in:\n{}",
            scrape(&addr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut i = target.connect();
    // MODE SENSE(10), DBD, page 1Ch subpage 02h: the page after the 8-byte header.
    let lbp_page = |i: &mut Initiator| {
        let out = i
            .raw_command(&[0x5A, 0x08, 0x1C, 0x02, 0, 0, 0, 0, 255, 0], &[], 255)
            .unwrap();
        assert_eq!(out.status, 0, "{out:?}");
        out.data[8..].to_vec()
    };
    // SPF | 1Ch, 02h, PAGE LENGTH 20; ENABLED, soft, armed decreasing, resource 01h;
    // THRESHOLD COUNT 2^50 / 2^20 = 2^30 sets.
    let page = lbp_page(&mut i);
    assert_eq!(page[..4], [0x5C, 0x02, 0x00, 0x14]);
    assert_eq!(page[16..], [0x80, 0x01, 0, 0, 0x40, 0x00, 0x00, 0x00]);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&socket, &["lun", "show", IQN, "0", "--json"])).unwrap();
    assert_eq!(shown["soft_threshold"], "1P", "{shown}");
    assert_eq!(shown["soft_threshold_bytes"], 1u64 << 50, "{shown}");
    assert_eq!(shown["soft_threshold_reached"], true, "{shown}");
    assert!(ok(&socket, &["lun", "list"]).contains("1P (reached)"));
    assert!(ok(&socket, &["export"]).contains("soft_threshold = \"1P\""));

    let tur = |i: &mut Initiator| {
        let out = i.raw_command(&[0; 6], &[], 0).unwrap();
        (out.status, out.sense_key, out.asc, out.ascq)
    };
    ok(
        &socket,
        &["lun", "modify", IQN, "0", "--soft-threshold", "off"],
    );
    assert_eq!(tur(&mut i), (0x02, 0x06, 0x2A, 0x01));
    assert!(!page_enabled(&lbp_page(&mut i)));
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&socket, &["lun", "show", IQN, "0", "--json"])).unwrap();
    assert_eq!(
        shown["soft_threshold_reached"],
        serde_json::Value::Null,
        "{shown}"
    );

    ok(
        &socket,
        &["lun", "modify", IQN, "0", "--soft-threshold", "1P"],
    );
    assert_eq!(tur(&mut i), (0x02, 0x06, 0x2A, 0x01));
    assert!(page_enabled(&lbp_page(&mut i)));
    // Armed anew: the next round (every 15 s) finds it reached.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        match tur(&mut i) {
            (0x02, 0x06, 0x38, 0x07) => break,
            (0, _, _, _) => {}
            other => panic!("TEST UNIT READY: {other:02x?}"),
        }
        assert!(
            Instant::now() < deadline,
            "no soft threshold unit attention"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(tur(&mut i), (0, 0, 0, 0), "told once");
}

/// ENABLED (byte 16, bit 7) of a Logical Block Provisioning mode page.
fn page_enabled(page: &[u8]) -> bool {
    page[16] & 0x80 != 0
}

#[test]
fn removed_luns_and_targets_take_their_series_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glfs-iscsi.toml");
    let lun = |n: u16| format!("[[target.lun]]\nlun = {n}\nbstype = \"memory\"\nsize = \"1M\"\n");
    std::fs::write(
        &config,
        format!(
            "[[target]]\nname = \"{KEEP}\"\n{}[[target]]\nname = \"{GONE}\"\n{}{}",
            lun(0),
            lun(0),
            lun(1)
        ),
    )
    .unwrap();
    let socket = dir.path().join("control.sock");
    let target = Running::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--control-socket",
            socket.to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = metrics_address(&target);
    let mut keep = Initiator::connect(&target.portal(), KEEP, 0).unwrap();
    keep.write10(0, &pattern(1, 512), BLOCK).unwrap();
    let mut gone = Initiator::connect(&target.portal(), GONE, 0).unwrap();
    gone.write10(0, &pattern(2, 512), BLOCK).unwrap();
    gone.set_lun(1).unwrap();
    // LUN 1's first command meets its power-on unit attention: an error series too.
    let _ = gone.read10(0, 1, BLOCK);
    gone.read10(0, 1, BLOCK).unwrap();
    let text = scrape(&addr);
    assert!(!series_of(&text, GONE, Some(1)).is_empty(), "{text}");
    assert!(
        series_of(&text, GONE, Some(1))
            .iter()
            .any(|l| l.starts_with("glfs_iscsi_lun_errors_total")),
        "{text}"
    );

    // LUN 1 goes while the session uses it (forced): its series go; the session's next
    // command to it fails and brings none back.
    ok(&socket, &["lun", "remove", GONE, "1", "--force"]);
    let err = gone.read10(0, 1, BLOCK).unwrap_err();
    assert!(err.scsi().is_some(), "{err}");
    let text = scrape(&addr);
    assert_eq!(series_of(&text, GONE, Some(1)), Vec::<String>::new());
    assert!(!series_of(&text, GONE, Some(0)).is_empty(), "{text}");

    // The whole target goes (its session ends): nothing names it; the other target's
    // series stay, counting on.
    ok(&socket, &["target", "remove", GONE, "--force"]);
    drop(gone);
    keep.write10(1, &pattern(3, 512), BLOCK).unwrap();
    let text = scrape(&addr);
    assert_eq!(series_of(&text, GONE, None), Vec::<String>::new());
    assert_eq!(
        sample(
            &text,
            &format!("glfs_iscsi_lun_commands_total{{target=\"{KEEP}\",lun=\"0\",kind=\"write\"}}")
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("glfs_iscsi_target_sessions{{target=\"{KEEP}\"}}")
        ),
        Some(1.0)
    );
}

/// A host on the target's LUN 0 with its own initiator name.
fn host(target: &Running, name: &str) -> Initiator {
    login_as(target, IQN, &format!("iqn.2026-11.test:{name}"), None).expect("login")
}

#[test]
fn busy_and_reservation_conflict_are_counted_by_status() {
    // SAM-5 table 41.
    const BUSY: u8 = 0x08;
    const RESERVATION_CONFLICT: u8 = 0x18;
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_address(&target);
    let mut a = host(&target, "a");
    let mut b = host(&target, "b");
    // Let each nexus see its power-on unit attention first.
    for h in [&mut a, &mut b] {
        let _ = h.raw_command(&[0, 0, 0, 0, 0, 0], &[], 0);
    }

    // RESERVE(6) (SPC-2 7.21, opcode 16h) by A: B's WRITE(10) conflicts.
    assert_eq!(
        a.raw_command(&[0x16, 0, 0, 0, 0, 0], &[], 0)
            .unwrap()
            .status,
        0
    );
    let write = [0x2A, 0, 0, 0, 0, 8, 0, 0, 1, 0];
    for _ in 0..2 {
        let out = b.raw_command(&write, &pattern(3, 512), 0).unwrap();
        assert_eq!(out.status, RESERVATION_CONFLICT);
    }
    // RELEASE(6) (opcode 17h).
    assert_eq!(
        a.raw_command(&[0x17, 0, 0, 0, 0, 0], &[], 0)
            .unwrap()
            .status,
        0
    );

    // A's WRITE(10) of LBA 8 hangs in the store, holding its blocks; B's COMPARE AND
    // WRITE (SBC-4 5.3, opcode 89h, one block at LBA 8) over them is BUSY at once.
    root.set_rules(&[testkit::fake::FaultRule::on(&["write"]).hang()]);
    let in_flight = format!("glfs_iscsi_lun_commands_in_flight{{target=\"{IQN}\",lun=\"0\"}}");
    let status = std::thread::scope(|scope| {
        let hung = scope.spawn(move || a.raw_command(&write, &pattern(4, 512), 0).unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        while sample(&scrape(&addr), &in_flight) != Some(1.0) {
            assert!(
                Instant::now() < deadline,
                "the write never reached the store"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut caw = [0u8; 16];
        caw[0] = 0x89;
        caw[9] = 8; // LBA 8
        caw[13] = 1; // one block
        let mut data = vec![0u8; 512];
        data.extend(pattern(5, 512));
        let status = b.raw_command(&caw, &data, 0).unwrap().status;
        root.clear();
        assert_eq!(hung.join().unwrap().status, 0, "the held write completes");
        status
    });
    assert_eq!(status, BUSY);

    let text = scrape(&addr);
    let responses = |status: &str| {
        sample(
            &text,
            &format!(
                "glfs_iscsi_lun_responses_total{{target=\"{IQN}\",lun=\"0\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(responses("reservation_conflict"), Some(2.0), "{text}");
    assert_eq!(responses("busy"), Some(1.0), "{text}");
    // Two TEST UNIT READY (power-on unit attention), nothing else checked.
    assert_eq!(responses("check_condition"), Some(2.0), "{text}");
    // RESERVE, RELEASE and the released write.
    assert!(responses("good").is_some_and(|n| n >= 3.0), "{text}");
}
