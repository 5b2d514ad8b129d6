//! Store failures seen by a real initiator: the fake gfapi's fault rules make the glfs store
//! fail on purpose, and libiscsi reads the sense data the target answers with.
//!
//! Expected sense bytes come from SPC-4's tables (sense keys in table 52, ASC/ASCQ in
//! annex D), written out here rather than taken from the scsi crate.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;
use testkit::fake::{FakeRoot, FaultRule};
use testkit::initiator::ScsiError;

fn scsi_error(err: testkit::initiator::Error) -> ScsiError {
    err.scsi()
        .cloned()
        .unwrap_or_else(|| panic!("expected a SCSI error, got {err:?}"))
}

/// (sense key, ASC, ASCQ) of a failed command.
fn sense_of(err: testkit::initiator::Error) -> (u8, u8, u8) {
    let e = scsi_error(err);
    assert_eq!(e.status, 0x02, "CHECK CONDITION expected: {e:?}");
    (e.sense_key, e.asc, e.ascq)
}

const MEDIUM_ERROR: u8 = 0x03;
const DATA_PROTECT: u8 = 0x07;
const ABORTED_COMMAND: u8 = 0x0b;
const NOT_READY: u8 = 0x02;

#[test]
fn eio_on_write_is_medium_error_write_error() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &[]);
    let mut init = target.connect();
    root.set_rules(&[FaultRule::on(&["write"]).errno("EIO")]);
    let err = init.write10(0, &pattern(1, 512), BLOCK).unwrap_err();
    // MEDIUM ERROR, WRITE ERROR (0Ch/00h)
    assert_eq!(sense_of(err), (MEDIUM_ERROR, 0x0c, 0x00));
    root.clear();
    init.write10(0, &pattern(1, 512), BLOCK).unwrap();
}

#[test]
fn eio_on_read_is_medium_error_unrecovered_read_error() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &[]);
    let mut init = target.connect();
    root.set_rules(&[FaultRule::on(&["read"]).errno("EIO")]);
    let err = init.read10(0, 1, BLOCK).unwrap_err();
    // MEDIUM ERROR, UNRECOVERED READ ERROR (11h/00h)
    assert_eq!(sense_of(err), (MEDIUM_ERROR, 0x11, 0x00));
}

#[test]
fn enospc_is_data_protect_space_allocation_failed() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &[]);
    let mut init = target.connect();
    root.set_rules(&[FaultRule::on(&["write"]).errno("ENOSPC")]);
    let err = init.write16(8, &pattern(2, 4096), BLOCK).unwrap_err();
    // DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h)
    assert_eq!(sense_of(err), (DATA_PROTECT, 0x27, 0x07));
}

#[test]
fn lost_connection_is_not_ready_becoming_ready() {
    let root = FakeRoot::new();
    // No hold time: a lost connection is answered at once.
    let target = glfs_target(&root, &["--bsopts", "hold=0"]);
    let mut init = target.connect();
    root.set_rules(&[FaultRule::on(&["read"]).errno("ENOTCONN")]);
    let err = init.read16(0, 1, BLOCK).unwrap_err();
    // NOT READY, LOGICAL UNIT IS IN PROCESS OF BECOMING READY (04h/01h): retried by initiators
    assert_eq!(sense_of(err), (NOT_READY, 0x04, 0x01));
}

#[test]
fn an_outage_shorter_than_the_hold_time_is_only_latency() {
    let root = FakeRoot::new();
    // The default hold time (15 s) covers the outage below.
    let target = glfs_target(&root, &[]);
    let mut init = target.connect();
    init.write10(8, &pattern(6, 512), BLOCK).unwrap();
    // The volume drops every connection (mounts included) for about 2 s.
    with_outage(&root, "vol", Duration::from_secs(2), || {
        // Commands issued during the outage wait and then succeed: no CHECK CONDITION.
        init.write10(9, &pattern(7, 512), BLOCK).unwrap();
        assert_eq!(init.read10(8, 1, BLOCK).unwrap(), pattern(6, 512));
    });
    assert_eq!(init.read10(9, 1, BLOCK).unwrap(), pattern(7, 512));
}

#[test]
fn an_outage_longer_than_the_hold_time_is_not_ready_then_recovers() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--bsopts", "hold=1"]);
    let mut init = target.connect();
    init.write10(8, &pattern(8, 512), BLOCK).unwrap();
    root.set_rules(&[FaultRule::any().volume("vol").disconnect()]);
    // Held for 1 s, then the retryable answer, well inside the command time limit.
    let err = init.write10(9, &pattern(9, 512), BLOCK).unwrap_err();
    assert_eq!(sense_of(err), (NOT_READY, 0x04, 0x01));
    root.clear();
    // Back by itself: the next commands are served (a retry may still meet the hold).
    let mut tries = 0;
    loop {
        match init.write10(9, &pattern(9, 512), BLOCK) {
            Ok(()) => break,
            Err(err) => {
                assert_eq!(sense_of(err), (NOT_READY, 0x04, 0x01));
                tries += 1;
                assert!(tries < 30, "never recovered");
            }
        }
    }
    assert_eq!(init.read10(8, 1, BLOCK).unwrap(), pattern(8, 512));
    assert_eq!(init.read10(9, 1, BLOCK).unwrap(), pattern(9, 512));
}

#[test]
fn hung_store_hits_the_command_time_limit_and_the_target_recovers() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--command-timeout", "2"]);
    let mut init = target.connect();
    init.write10(4, &pattern(3, 512), BLOCK).unwrap();
    root.set_rules(&[FaultRule::on(&["write"]).hang()]);
    let started = Instant::now();
    let err = init.write10(4, &pattern(4, 512), BLOCK).unwrap_err();
    let waited = started.elapsed();
    // ABORTED COMMAND, LOGICAL UNIT COMMUNICATION TIME-OUT (08h/01h)
    assert_eq!(sense_of(err), (ABORTED_COMMAND, 0x08, 0x01));
    assert!(
        waited >= Duration::from_millis(1900),
        "answered before the limit: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the limit did not hold: {waited:?}"
    );

    // Releasing the hang lets the abandoned write finish inside the store; the session and
    // the LUN go on working.
    root.clear();
    init.write10(5, &pattern(5, 512), BLOCK).unwrap();
    assert_eq!(init.read10(5, 1, BLOCK).unwrap(), pattern(5, 512));
}

#[test]
fn abort_task_is_answered_while_the_store_still_holds_the_command() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--command-timeout", "0"]);
    let (mut stream, exp_stat_sn) = raw_session(target.portal, IQN);
    root.set_rules(&[FaultRule::on(&["write"]).hang()]);

    // WRITE(10) of one block at LBA 2, all data immediate: CmdSN 1, ITT 1.
    let mut cmd = [0u8; 48];
    cmd[0] = 0x01;
    cmd[1] = 0xa1; // F, W, SIMPLE
    cmd[16..20].copy_from_slice(&1u32.to_be_bytes());
    cmd[20..24].copy_from_slice(&512u32.to_be_bytes());
    cmd[24..28].copy_from_slice(&1u32.to_be_bytes());
    cmd[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    cmd[32..42].copy_from_slice(&[0x2a, 0, 0, 0, 0, 2, 0, 0, 1, 0]);
    send_pdu(&mut stream, cmd, &pattern(6, 512));
    std::thread::sleep(Duration::from_millis(300)); // let it reach the hung store

    // ABORT TASK for ITT 1: immediate, ITT 2, RefCmdSN 1.
    let mut tmf = [0u8; 48];
    tmf[0] = 0x42;
    tmf[1] = 0x81; // F + function 1 (ABORT TASK)
    tmf[16..20].copy_from_slice(&2u32.to_be_bytes());
    tmf[20..24].copy_from_slice(&1u32.to_be_bytes()); // referenced task tag
    tmf[24..28].copy_from_slice(&2u32.to_be_bytes());
    tmf[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    tmf[32..36].copy_from_slice(&1u32.to_be_bytes());
    let started = Instant::now();
    send_pdu(&mut stream, tmf, &[]);
    let (resp, _) = recv_pdu(&mut stream);
    assert_eq!(
        resp[0] & 0x3f,
        0x22,
        "Task Management Function Response expected"
    );
    assert_eq!(be32(&resp[16..]), 2, "answers the TMF's ITT");
    assert_eq!(resp[2], 0, "Function complete");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered while the store hangs"
    );

    // Release the store: the aborted write completes inside it and gets no response; a
    // NOP-Out ping is the next thing answered.
    root.clear();
    let mut nop = [0u8; 48];
    nop[0] = 0x40; // immediate NOP-Out
    nop[1] = 0x80;
    nop[8..16].copy_from_slice(&[0; 8]);
    nop[16..20].copy_from_slice(&3u32.to_be_bytes());
    nop[20..24].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    nop[24..28].copy_from_slice(&2u32.to_be_bytes());
    nop[28..32].copy_from_slice(&(exp_stat_sn + 1).to_be_bytes());
    std::thread::sleep(Duration::from_millis(300));
    send_pdu(&mut stream, nop, b"ping");
    let (resp, data) = recv_pdu(&mut stream);
    assert_eq!(
        resp[0] & 0x3f,
        0x20,
        "NOP-In expected, not a response to the aborted task"
    );
    assert_eq!(be32(&resp[16..]), 3);
    assert_eq!(data, b"ping");
}

#[test]
fn clear_aca_touches_no_task_and_clear_task_set_aborts_the_luns_tasks() {
    // RFC 7143 11.5.1 function codes: 3 = CLEAR ACA, 4 = CLEAR TASK SET.
    const CLEAR_ACA: u8 = 3;
    const CLEAR_TASK_SET: u8 = 4;
    // RFC 7143 11.6.1 responses.
    const FUNCTION_COMPLETE: u8 = 0;
    const FUNCTION_NOT_SUPPORTED: u8 = 5;

    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--command-timeout", "0"]);
    let (mut stream, exp_stat_sn) = raw_session(target.portal, IQN);
    root.set_rules(&[FaultRule::on(&["write"]).hang()]);

    // WRITE(10) of one block at LBA 2, all data immediate: CmdSN 1, ITT 1.
    let write10 = [0x2a, 0, 0, 0, 0, 2, 0, 0, 1, 0];
    let cmd = scsi_command(&write10, 1, 1, exp_stat_sn, 512, true);
    send_pdu(&mut stream, cmd, &pattern(6, 512));
    std::thread::sleep(Duration::from_millis(300)); // let it reach the hung store

    let mut tmf = |function: u8, itt: u32, exp_stat_sn: u32| {
        send_pdu(
            &mut stream,
            tmf_request(function, 0, itt, 0xffff_ffff, 2, exp_stat_sn, 0),
            &[],
        );
        let (resp, _) = recv_pdu(&mut stream);
        assert_eq!(resp[0] & 0x3f, 0x22, "TMF response expected");
        assert_eq!(be32(&resp[16..]), itt);
        resp[2]
    };
    // We never establish ACA, so CLEAR ACA clears nothing and leaves the write alone.
    assert_eq!(tmf(CLEAR_ACA, 2, exp_stat_sn), FUNCTION_NOT_SUPPORTED);
    // CLEAR TASK SET aborts every task on LUN 0, the hung write too.
    assert_eq!(tmf(CLEAR_TASK_SET, 3, exp_stat_sn + 1), FUNCTION_COMPLETE);

    // Release the store: the aborted write gets no response; the ping is answered next.
    root.clear();
    std::thread::sleep(Duration::from_millis(300));
    send_pdu(&mut stream, nop_out(4, 2, exp_stat_sn + 2), b"ping");
    let (resp, data) = recv_pdu(&mut stream);
    assert_eq!(
        resp[0] & 0x3f,
        0x20,
        "NOP-In expected, not a response to the cleared write"
    );
    assert_eq!(be32(&resp[16..]), 4);
    assert_eq!(data, b"ping");
}

/// The JSON events of `log` whose message starts with `message`.
fn events<'a>(log: &'a [serde_json::Value], message: &str) -> Vec<&'a serde_json::Value> {
    log.iter()
        .filter(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .collect()
}

/// The span named `name` in a JSON event's span list.
fn span<'a>(event: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    event["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no span {name} in {event}"))
}

#[test]
fn events_on_store_threads_name_the_lun_and_volume_and_a_commands_its_session() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--log-format", "json", "--log", "debug"]);
    let mut init = target.connect();
    init.write10(8, &pattern(6, 512), BLOCK).unwrap();
    // The write finds the volume lost (on gfapi's callback thread), is held, and goes out
    // again from the reconnect thread once the volume is back.
    with_outage(&root, "vol", Duration::from_millis(1500), || {
        init.write10(9, &pattern(7, 512), BLOCK).unwrap();
    });
    target.wait_for_log_line(&["resuming held requests"]);
    let text = target.log();
    let log: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    // Found by one command: logged in its session's span, with the volume and file.
    let lost = events(&log, "gfapi connection lost");
    assert_eq!(lost.len(), 1, "{text}");
    let lost = lost[0];
    assert_eq!(lost["fields"]["volume"], "vol", "{lost}");
    assert_eq!(lost["fields"]["path"], "lun.img", "{lost}");
    let session = &lost["span"];
    assert_eq!(session["name"], "session", "{lost}");
    assert_eq!(session["target"], IQN, "{lost}");
    assert!(session["initiator"].as_str().is_some(), "{lost}");
    assert!(
        session["isid"].as_str().is_some_and(|i| i.len() == 12),
        "{lost}"
    );
    assert!(session["tsih"].as_u64().is_some_and(|t| t > 0), "{lost}");
    assert!(
        session["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{lost}"
    );

    // The reconnect thread serves the volume, whatever LUNs and sessions use it.
    let mounting = events(&log, "reconnect: mounting the volume again");
    assert!(!mounting.is_empty(), "{text}");
    for e in mounting {
        assert_eq!(span(e, "glfs_volume")["volume"], "vol", "{e}");
    }
    // Resuming the store's held requests: in the store's span, under its LUN's.
    let resumed = events(&log, "reconnected: resuming held requests");
    assert_eq!(resumed.len(), 1, "{text}");
    let resumed = resumed[0];
    let lun = span(resumed, "lun");
    assert_eq!(lun["target"], IQN, "{resumed}");
    assert_eq!(lun["lun"], 0, "{resumed}");
    let store = span(resumed, "glfs_store");
    assert_eq!(store["volume"], "vol", "{resumed}");
    assert_eq!(store["path"], "lun.img", "{resumed}");
}

/// A LUN whose volume mount (glfs_init) hangs at start-up: the portal refuses connections
/// and systemd hears nothing until the LUN is open; the first login then finds the LUN.
#[test]
fn the_portal_listens_only_once_a_slow_opening_lun_is_open() {
    let root = FakeRoot::new();
    root.set_rules(&[FaultRule::on(&["init"]).hang()]);
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut target = spawn_glfs_target(&root, &[], &[("NOTIFY_SOCKET", &notify)]);
    // The daemon is opening its LUN (the portal's address is bound by then); the open
    // hangs until the rules change.
    target.wait_for_log_line(&["opening 1 LUN(s) takes a while"]);
    for _ in 0..20 {
        let refused = TcpStream::connect_timeout(&target.portal, Duration::from_secs(5));
        assert!(
            refused.is_err(),
            "a connect was accepted while the LUN was still opening:\n{}",
            target.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut buf = [0u8; 4096];
    let early = socket.recv(&mut buf);
    assert!(
        early.is_err(),
        "notified before the LUN was open: {:?}",
        early.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    );

    root.clear();
    target.wait_listening();
    let mut init = target.connect();
    assert_eq!(init.report_luns().unwrap(), vec![0]);
    assert_eq!(init.read_capacity16().unwrap(), (8192, BLOCK));
    init.write10(3, &pattern(11, 512), BLOCK).unwrap();
    assert_eq!(init.read10(3, 1, BLOCK).unwrap(), pattern(11, 512));
    socket.set_nonblocking(false).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let n = socket.recv(&mut buf).expect("READY=1 once the LUN is open");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.lines().any(|l| l == "READY=1"), "{text:?}");
}

/// The writes of one socket read reach the glfs store together, and it joins adjacent
/// ones into one gfapi write (`BlockStore::submit_batch`): four WRITE(10)s of 4 KiB
/// back to back, sent in one TCP write, are one gfapi write call, which the fake's rule
/// (fail the second write call) lets through; the next write, alone, is the second call
/// and fails with MEDIUM ERROR. The four land in the LUN file.
#[test]
fn adjacent_writes_of_one_read_are_one_gfapi_write() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &[]);
    let mut stream = TcpStream::connect(target.portal).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let exp_stat_sn = raw_login(&mut stream, IQN);
    root.set_rules(&[FaultRule::on(&["write"]).nth(2).errno("EIO")]);
    let write10 = |lba: u8, itt: u32, data: &[u8]| {
        // WRITE(10): LBA in bytes 2..6, 8 blocks of 512 (SBC-4 5.43)
        let cdb = [0x2a, 0, 0, 0, 0, lba, 0, 0, 8, 0];
        let mut pdu = scsi_command(&cdb, itt, itt, exp_stat_sn, 4096, true).to_vec();
        pdu[5..8].copy_from_slice(&4096u32.to_be_bytes()[1..]);
        pdu.extend_from_slice(data);
        pdu
    };
    let data: Vec<Vec<u8>> = (0..4).map(|i| pattern(40 + i, 4096)).collect();
    let mut four = Vec::new();
    for (i, d) in data.iter().enumerate() {
        four.extend(write10(8 * i as u8, i as u32 + 1, d));
    }
    stream.write_all(&four).unwrap();
    let mut good = Vec::new();
    for _ in 0..4 {
        let (resp, _) = recv_pdu(&mut stream);
        assert_eq!(resp[0] & 0x3f, 0x21, "SCSI Response expected");
        assert_eq!(resp[3], 0, "GOOD for ITT {}", be32(&resp[16..]));
        good.push(be32(&resp[16..]));
    }
    good.sort();
    assert_eq!(good, [1, 2, 3, 4]);
    stream
        .write_all(&write10(64, 5, &pattern(50, 4096)))
        .unwrap();
    let (resp, sense) = recv_pdu(&mut stream);
    assert_eq!((resp[0] & 0x3f, resp[3]), (0x21, 0x02), "CHECK CONDITION");
    // SenseLength (2 bytes), then fixed-format sense: the key in byte 2 (SPC-4 4.5.3)
    assert_eq!(sense[2 + 2] & 0x0f, MEDIUM_ERROR);
    let file = std::fs::read(root.file_path("vol", "lun.img")).unwrap();
    assert!(
        file[..4 * 4096] == data.concat()[..],
        "the four writes landed"
    );
}

/// The reads of one socket read reach the glfs store together, and it joins adjacent
/// ones into one gfapi read (`BlockStore::submit_batch`, `joins_reads`): four READ(10)s
/// of 4 KiB back to back, sent in one TCP write, are one gfapi read call, which the
/// fake's rule (fail the second read call) lets through, and each gets its own 4 KiB of
/// the LUN file as Data-In; the next read, alone, is the second call and fails with
/// MEDIUM ERROR.
#[test]
fn adjacent_reads_of_one_read_are_one_gfapi_read() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &[]);
    let content = pattern(60, 64 << 10);
    let lun = root.file_path("vol", "lun.img");
    let mut file = std::fs::OpenOptions::new().write(true).open(&lun).unwrap();
    file.write_all(&content).unwrap();
    drop(file);
    let mut stream = TcpStream::connect(target.portal).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let exp_stat_sn = raw_login(&mut stream, IQN);
    root.set_rules(&[FaultRule::on(&["read"]).nth(2).errno("EIO")]);
    // READ(10): LBA in bytes 2..6, 8 blocks of 512 (SBC-4 5.16)
    let read10 = |lba: u8, itt: u32| {
        let cdb = [0x28, 0, 0, 0, 0, lba, 0, 0, 8, 0];
        scsi_command(&cdb, itt, itt, exp_stat_sn, 4096, false).to_vec()
    };
    let mut four = Vec::new();
    for i in 0..4u8 {
        four.extend(read10(8 * i, u32::from(i) + 1));
    }
    stream.write_all(&four).unwrap();
    // ITT -> (data, status); Data-In (0x25) with S carries the status (RFC 7143 11.7.1)
    let mut got = std::collections::BTreeMap::new();
    while got
        .values()
        .filter(|(_, s): &&(Vec<u8>, Option<u8>)| s.is_some())
        .count()
        < 4
    {
        let (bhs, data) = recv_pdu(&mut stream);
        let itt = be32(&bhs[16..]);
        let entry = got.entry(itt).or_insert((Vec::new(), None));
        match bhs[0] & 0x3f {
            0x25 => {
                entry.0.extend_from_slice(&data);
                if bhs[1] & 0x01 != 0 {
                    entry.1 = Some(bhs[3]);
                }
            }
            0x21 => entry.1 = Some(bhs[3]),
            op => panic!("unexpected PDU opcode {op:#x}"),
        }
    }
    for i in 0..4usize {
        let (data, status) = &got[&(i as u32 + 1)];
        assert_eq!(*status, Some(0), "GOOD for ITT {}", i + 1);
        assert!(
            data[..] == content[i * 4096..(i + 1) * 4096],
            "ITT {} reads its own 4 KiB",
            i + 1
        );
    }
    stream.write_all(&read10(64, 5)).unwrap();
    let (resp, sense) = recv_pdu(&mut stream);
    assert_eq!((resp[0] & 0x3f, resp[3]), (0x21, 0x02), "CHECK CONDITION");
    // SenseLength (2 bytes), then fixed-format sense: the key in byte 2 (SPC-4 4.5.3)
    assert_eq!(sense[2 + 2] & 0x0f, MEDIUM_ERROR);
}

/// gfapi's write-behind acknowledged a write the brick never got, and the connection went:
/// the host's next SYNCHRONIZE CACHE must not vouch for it (docs/reliability.md). The fake's
/// write-behind model loses its cached writes with the connection, as Gluster's client
/// fails them as it winds them.
#[test]
fn a_synchronize_cache_after_an_outage_fails_when_acknowledged_writes_were_not_flushed() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--bsopts", "hold=0", "--metrics", "127.0.0.1:0"]);
    let addr = metrics_address(&target);
    let mut init = target.connect();
    let write_behind = || FaultRule::on(&["write"]).path("lun.img").write_behind();
    root.set_rules(&[write_behind()]);
    init.write10(8, &pattern(10, 512), BLOCK).unwrap();
    init.synchronize_cache().unwrap();
    init.write10(9, &pattern(11, 512), BLOCK).unwrap(); // acknowledged, not flushed

    root.set_rules(&[write_behind(), FaultRule::any().volume("vol").disconnect()]);
    let err = init.read10(8, 1, BLOCK).unwrap_err();
    assert_eq!(sense_of(err), (NOT_READY, 0x04, 0x01));
    root.set_rules(&[write_behind()]);
    // Back by itself (reads meanwhile meet the reconnect: NOT READY, retried).
    let deadline = Instant::now() + Duration::from_secs(20);
    let read = loop {
        match init.read10(8, 1, BLOCK) {
            Ok(data) => break data,
            Err(err) => assert_eq!(sense_of(err), (NOT_READY, 0x04, 0x01)),
        }
        assert!(Instant::now() < deadline, "never reconnected");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(read, pattern(10, 512), "flushed before the outage: kept");

    // MEDIUM ERROR, WRITE ERROR (0Ch/00h), not NOT READY: a host would retry that until
    // it succeeded and take the write for stored.
    let err = init.synchronize_cache().unwrap_err();
    assert_eq!(sense_of(err), (MEDIUM_ERROR, 0x0c, 0x00));
    assert_eq!(
        init.read10(9, 1, BLOCK).unwrap(),
        vec![0u8; 512],
        "lost indeed"
    );
    // Told once; what is written now is flushed as usual.
    init.write10(9, &pattern(12, 512), BLOCK).unwrap();
    init.synchronize_cache().unwrap();
    assert_eq!(init.read10(9, 1, BLOCK).unwrap(), pattern(12, 512));

    let text = scrape_metrics_at(&addr);
    let v = "{volume=\"vol\"}";
    assert_eq!(
        testkit::metrics::sample(
            &text,
            &format!("glfs_iscsi_gluster_unflushed_write_losses_total{v}")
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        target
            .log()
            .contains("the next SYNCHRONIZE CACHE fails with a medium error"),
        "the operator is told"
    );
}
