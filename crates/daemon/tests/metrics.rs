//! `--metrics ADDR`: the real binary serves Prometheus text metrics whose counters match
//! the I/O a libiscsi initiator did.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{glfs_target, pattern, with_outage, Running, BLOCK, IQN};
use testkit::fake::FakeRoot;
use testkit::initiator::Initiator;

/// GET /metrics from `addr`: the body.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of the sample `series` (name and labels as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn lun_series(name: &str, extra: &str) -> String {
    format!("glfs_iscsi_{name}{{target=\"{IQN}\",lun=\"0\"{extra}}}")
}

/// Where the target serves its metrics (from its start-up line).
fn metrics_address(target: &Running) -> String {
    let line = target.wait_for_log_line(&["metrics on http://"]);
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address")
        .to_string()
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
