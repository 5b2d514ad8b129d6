//! The session layer through the real binary and libiscsi: digests, and (as they come)
//! keepalive, reinstatement and shutdown.

mod support;

use std::io::Read;
use std::time::Duration;
use support::*;
use testkit::initiator::{ConnectOptions, HeaderDigest, Initiator};

/// The target on a memory LUN of `size`, with `extra` options.
fn memory_target(size: &str, extra: &[&str]) -> Running {
    let mut args = vec!["--bstype", "memory", "--size", size];
    args.extend_from_slice(extra);
    Running::start(&args, &[])
}

/// A full write and read-back run with HeaderDigest=CRC32C (libiscsi's
/// `?header_digest=crc32c`; libiscsi offers no DataDigest).
#[test]
fn header_digest_crc32c_carries_a_read_write_run() {
    let target = memory_target("4M", &[]);
    let opts = ConnectOptions {
        header_digest: HeaderDigest::Crc32c,
        ..ConnectOptions::default()
    };
    let mut init = Initiator::connect_with(&target.portal(), IQN, 0, &opts).unwrap();
    target.wait_for_log_line(&["login", "header_digest=true"]);
    // One block, then 1 MiB: several R2Ts and Data-In PDUs, each with a header digest.
    for (lba, blocks, seed) in [(0u64, 1usize, 7u8), (64, 2048, 9)] {
        let data = pattern(seed, blocks * BLOCK as usize);
        init.write16(lba, &data, BLOCK).unwrap();
        assert_eq!(
            init.read16(lba, blocks as u32, BLOCK).unwrap(),
            data,
            "LBA {lba}"
        );
    }
    init.logout().unwrap();
}

/// libiscsi's default offer (None first) keeps digests off.
#[test]
fn digests_stay_off_unless_offered_first() {
    let target = memory_target("1M", &[]);
    let opts = ConnectOptions {
        header_digest: HeaderDigest::NoneCrc32c,
        ..ConnectOptions::default()
    };
    let mut init = Initiator::connect_with(&target.portal(), IQN, 0, &opts).unwrap();
    target.wait_for_log_line(&["login", "header_digest=false"]);
    init.test_unit_ready().unwrap();
    init.logout().unwrap();
}

/// `--require-header-digest`: libiscsi offering only None is refused with a log line
/// saying why; offering None,CRC32C gets CRC32C and a working session.
#[test]
fn a_required_header_digest_refuses_none_and_picks_crc32c_from_a_list() {
    let target = memory_target("1M", &["--require-header-digest"]);
    let none = ConnectOptions {
        header_digest: HeaderDigest::None,
        ..ConnectOptions::default()
    };
    assert!(Initiator::connect_with(&target.portal(), IQN, 0, &none).is_err());
    target.wait_for_log_line(&["login rejected", "HeaderDigest", "requires CRC32C"]);
    let either = ConnectOptions {
        header_digest: HeaderDigest::NoneCrc32c,
        ..ConnectOptions::default()
    };
    let mut init = Initiator::connect_with(&target.portal(), IQN, 0, &either).unwrap();
    target.wait_for_log_line(&["login", "header_digest=true"]);
    init.test_unit_ready().unwrap();
    init.logout().unwrap();
}

/// Reads until the target closes the connection; true when it did (EOF or reset) within
/// `patience`, which is generous: the test is about the close, not its timing.
fn closed_by_target(stream: &mut std::net::TcpStream, patience: Duration) -> bool {
    stream.set_read_timeout(Some(patience)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn a_login_that_never_comes_is_cut_off() {
    let target = memory_target("1M", &["--login-timeout", "1"]);
    let mut stream = std::net::TcpStream::connect(target.portal).unwrap();
    assert!(closed_by_target(&mut stream, Duration::from_secs(60)));
    target.wait_for_log_line(&["closing connection", "login not complete"]);
}

#[test]
fn an_idle_initiator_is_pinged_and_dropped_when_silent() {
    let target = memory_target("1M", &["--nop-in-interval", "1", "--nop-in-timeout", "1"]);
    let mut stream = std::net::TcpStream::connect(target.portal).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    raw_login(&mut stream, IQN);
    // RFC 7143 11.19: a NOP-In asking for an answer (ITT reserved, TTT not).
    let (bhs, _) = recv_pdu(&mut stream);
    assert_eq!((bhs[0] & 0x3f, be32(&bhs[16..])), (0x20, 0xffff_ffff));
    assert_ne!(be32(&bhs[20..]), 0xffff_ffff);
    // No answer: the target closes the connection.
    assert!(closed_by_target(&mut stream, Duration::from_secs(60)));
    target.wait_for_log_line(&["closing connection", "no answer to NOP-In"]);
}

#[test]
fn an_initiator_that_answers_pings_stays_connected() {
    let target = memory_target("1M", &["--nop-in-interval", "1", "--nop-in-timeout", "30"]);
    let mut stream = std::net::TcpStream::connect(target.portal).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut exp_stat_sn = raw_login(&mut stream, IQN);
    for _ in 0..2 {
        let (bhs, _) = recv_pdu(&mut stream);
        assert_eq!(bhs[0] & 0x3f, 0x20);
        // The answer: NOP-Out, ITT reserved, the ping's TTT (RFC 7143 11.18).
        let mut answer = nop_out(0xffff_ffff, 1, exp_stat_sn);
        answer[20..24].copy_from_slice(&bhs[20..24]);
        send_pdu(&mut stream, answer, &[]);
    }
    // Still served: a NOP-Out with a task tag is answered.
    send_pdu(&mut stream, nop_out(7, 1, exp_stat_sn), &[]);
    loop {
        let (bhs, _) = recv_pdu(&mut stream);
        if be32(&bhs[16..]) == 7 {
            assert_eq!(bhs[0] & 0x3f, 0x20);
            exp_stat_sn = be32(&bhs[24..]) + 1;
            break;
        }
    }
    assert!(exp_stat_sn > 1);
}

/// Sends a one-step login (operational stage to full feature phase) as `initiator` with
/// `isid` and `tsih`; returns the response's Status-Class and Status-Detail.
fn login_as(
    stream: &mut std::net::TcpStream,
    initiator: &str,
    isid: [u8; 6],
    tsih: u16,
) -> (u8, u8) {
    let resp = login_response(stream, initiator, isid, tsih);
    (resp[36], resp[37])
}

/// [`login_as`], returning the whole Login Response header.
fn login_response(
    stream: &mut std::net::TcpStream,
    initiator: &str,
    isid: [u8; 6],
    tsih: u16,
) -> [u8; 48] {
    let keys = "ImmediateData=Yes\0InitialR2T=No\0MaxBurstLength=262144\0\
                FirstBurstLength=65536\0HeaderDigest=None\0DataDigest=None\0";
    login_with_keys(stream, initiator, isid, tsih, keys)
}

/// A one-step login with these operational keys (NUL-terminated `key=value` items).
fn login_with_keys(
    stream: &mut std::net::TcpStream,
    initiator: &str,
    isid: [u8; 6],
    tsih: u16,
    operational: &str,
) -> [u8; 48] {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43; // immediate Login Request
    bhs[1] = 0x87; // T=1, CSG=1, NSG=3
    bhs[8..14].copy_from_slice(&isid);
    bhs[14..16].copy_from_slice(&tsih.to_be_bytes());
    bhs[16..20].copy_from_slice(&1u32.to_be_bytes()); // ITT
    bhs[24..28].copy_from_slice(&1u32.to_be_bytes()); // CmdSN
    let keys =
        format!("InitiatorName={initiator}\0TargetName={IQN}\0SessionType=Normal\0{operational}");
    send_pdu(stream, bhs, keys.as_bytes());
    let (resp, _) = recv_pdu(stream);
    assert_eq!(resp[0] & 0x3f, 0x23, "Login Response");
    if resp[36] == 0 {
        assert_eq!(resp[1] & 0x83, 0x83, "in full feature phase");
    }
    resp
}

fn connect(target: &Running) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(target.portal).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// True when a NOP-Out with a task tag is still answered on `stream`.
fn still_served(stream: &mut std::net::TcpStream) -> bool {
    send_pdu(stream, nop_out(0x55, 1, 1), &[]);
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| recv_pdu(stream))) {
            Ok((bhs, _)) if be32(&bhs[16..]) == 0x55 => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_second_login_with_the_same_isid_reinstates_the_session() {
    let target = memory_target("1M", &[]);
    let isid = [0x80, 0xaa, 0xbb, 0xcc, 0x00, 0x01];
    let (me, other) = ("iqn.2026-11.test:host-a", "iqn.2026-11.test:host-b");
    let mut old = connect(&target);
    assert_eq!(login_as(&mut old, me, isid, 0), (0, 0));
    // Same ISID from another initiator, and another ISID from this one: other sessions.
    let mut neighbour = connect(&target);
    assert_eq!(login_as(&mut neighbour, other, isid, 0), (0, 0));
    let mut sibling = connect(&target);
    assert_eq!(
        login_as(&mut sibling, me, [0x80, 0xaa, 0xbb, 0xcc, 0x00, 0x02], 0),
        (0, 0)
    );
    // A write is left waiting for its data on the old session.
    let write10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    send_pdu(
        &mut old,
        scsi_command(&write10, 0x10, 1, 1, 4096, true),
        &[],
    );
    let (r2t, _) = recv_pdu(&mut old);
    assert_eq!(r2t[0] & 0x3f, 0x31, "R2T");
    // The same initiator and ISID with TSIH 0: the new session replaces the old one.
    let mut new = connect(&target);
    assert_eq!(login_as(&mut new, me, isid, 0), (0, 0));
    assert!(closed_by_target(&mut old, Duration::from_secs(60)));
    target.wait_for_log_line(&["session reinstated"]);
    assert!(still_served(&mut new));
    assert!(still_served(&mut neighbour));
    assert!(still_served(&mut sibling));
}

#[test]
fn a_login_naming_a_session_that_does_not_exist_is_refused() {
    let target = memory_target("1M", &[]);
    let mut stream = connect(&target);
    // RFC 7143 11.13.5: Status-Class 2, Status-Detail 0x0a "Session does not exist".
    assert_eq!(
        login_as(
            &mut stream,
            "iqn.2026-11.test:host-a",
            [0x80, 0, 0, 0, 0, 9],
            0x7777
        ),
        (0x02, 0x0a)
    );
}

#[test]
fn a_login_adding_a_connection_to_a_live_session_gets_too_many_connections() {
    let target = memory_target("1M", &[]);
    let isid = [0x80, 0, 0, 0, 0, 0x0b];
    let me = "iqn.2026-11.test:host-a";
    let mut first = connect(&target);
    let resp = login_response(&mut first, me, isid, 0);
    assert_eq!((resp[36], resp[37]), (0, 0));
    let tsih = u16::from_be_bytes([resp[14], resp[15]]);
    assert_ne!(tsih, 0, "the target assigns a TSIH");
    // RFC 7143 11.13.5: Status-Class 2, Status-Detail 0x06 "Too many connections" (the
    // session exists; MaxConnections=1), where a TSIH naming no session gets 0x0a.
    let mut second = connect(&target);
    assert_eq!(login_as(&mut second, me, isid, tsih), (0x02, 0x06));
    target.wait_for_log_line(&["names a live session"]);
    // The session the login named goes on.
    assert!(still_served(&mut first));
}

/// A Logout Request (close the session) with `itt`.
fn logout_request(itt: u32, cmd_sn: u32, exp_stat_sn: u32) -> [u8; 48] {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x46; // immediate Logout Request
    bhs[1] = 0x80; // reason 0: close the session
    bhs[16..20].copy_from_slice(&itt.to_be_bytes());
    bhs[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
    bhs[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    bhs
}

#[test]
fn sigterm_asks_sessions_to_log_out_and_a_prompt_logout_ends_it_early() {
    // A grace time far beyond the patience below: the target can only exit in time if
    // it stops waiting once every session has logged out.
    let mut target = memory_target("1M", &["--shutdown-grace", "3600"]);
    let mut stream = connect(&target);
    let exp_stat_sn = raw_login(&mut stream, IQN);
    target.terminate();
    // RFC 7143 11.9: Asynchronous Message, AsyncEvent 1 (logout requested), Parameter3
    // the seconds left to log out.
    let (bhs, _) = recv_pdu(&mut stream);
    assert_eq!((bhs[0] & 0x3f, bhs[36]), (0x32, 1));
    assert_eq!(u16::from_be_bytes([bhs[42], bhs[43]]), 3600);
    send_pdu(&mut stream, logout_request(0x66, 1, exp_stat_sn + 1), &[]);
    let (resp, _) = recv_pdu(&mut stream);
    assert_eq!(
        (resp[0] & 0x3f, resp[2]),
        (0x26, 0),
        "logout response: closed"
    );
    let status = target.wait_exit(Duration::from_secs(120));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn sigterm_closes_sessions_that_ignore_the_request_after_the_grace_time() {
    let mut target = memory_target("1M", &["--shutdown-grace", "1"]);
    let mut stream = connect(&target);
    raw_login(&mut stream, IQN);
    target.terminate();
    let (bhs, _) = recv_pdu(&mut stream);
    assert_eq!((bhs[0] & 0x3f, bhs[36]), (0x32, 1));
    // No logout: the connection is closed once the grace time is over, and the target exits.
    assert!(closed_by_target(&mut stream, Duration::from_secs(120)));
    let status = target.wait_exit(Duration::from_secs(120));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn logins_over_the_session_bounds_are_refused_at_login() {
    let target = memory_target(
        "1M",
        &[
            "--max-sessions-per-target",
            "2",
            "--max-connections-per-initiator",
            "1",
        ],
    );
    let isid = |n: u8| [0x80, 0, 0, 0, 0, n];
    let mut a = connect(&target);
    assert_eq!(login_as(&mut a, "iqn.2026-11.test:a", isid(1), 0), (0, 0));
    // A second connection of the same initiator: RFC 7143 11.13.5 "too many connections".
    let mut a2 = connect(&target);
    assert_eq!(
        login_as(&mut a2, "iqn.2026-11.test:a", isid(2), 0),
        (0x02, 0x06)
    );
    // A reinstatement is not a second connection.
    let mut a3 = connect(&target);
    assert_eq!(login_as(&mut a3, "iqn.2026-11.test:a", isid(1), 0), (0, 0));
    assert!(closed_by_target(&mut a, Duration::from_secs(60)));
    let mut b = connect(&target);
    assert_eq!(login_as(&mut b, "iqn.2026-11.test:b", isid(1), 0), (0, 0));
    // A third session on the target: "out of resources".
    let mut c = connect(&target);
    assert_eq!(
        login_as(&mut c, "iqn.2026-11.test:c", isid(1), 0),
        (0x03, 0x02)
    );
    assert!(closed_by_target(&mut c, Duration::from_secs(60)));
    // A session that ends gives its place back.
    send_pdu(&mut b, logout_request(9, 1, 2), &[]);
    assert!(closed_by_target(&mut b, Duration::from_secs(60)));
    let mut c = connect(&target);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // The old connection's task may take a moment to end and give its place back.
        match login_as(&mut c, "iqn.2026-11.test:c", isid(1), 0) {
            (0, 0) => break,
            refused => {
                assert_eq!(refused, (0x03, 0x02));
                assert!(
                    std::time::Instant::now() < deadline,
                    "the place never came back"
                );
                std::thread::sleep(Duration::from_millis(50));
                c = connect(&target);
            }
        }
    }
    assert!(still_served(&mut a3));
}

#[test]
fn a_login_over_the_unsolicited_data_budget_is_refused() {
    // Each session here reserves FirstBurstLength 65536 x (128 + 16) commands = 9 MiB.
    let target = memory_target("1M", &["--unsolicited-data-budget", "10M"]);
    let mut a = connect(&target);
    assert_eq!(
        login_as(&mut a, "iqn.2026-11.test:a", [0x80, 0, 0, 0, 0, 1], 0),
        (0, 0)
    );
    let mut b = connect(&target);
    assert_eq!(
        login_as(&mut b, "iqn.2026-11.test:b", [0x80, 0, 0, 0, 0, 1], 0),
        (0x03, 0x02)
    );
    target.wait_for_log_line(&["login refused", "unsolicited data budget"]);
    assert!(still_served(&mut a));
    // InitialR2T=Yes and ImmediateData=No: nothing unsolicited can come, nothing is
    // reserved, so the full budget does not stop it.
    let mut c = connect(&target);
    let solicited_only = "ImmediateData=No\0InitialR2T=Yes\0MaxBurstLength=262144\0\
                          FirstBurstLength=65536\0HeaderDigest=None\0DataDigest=None\0";
    let resp = login_with_keys(
        &mut c,
        "iqn.2026-11.test:c",
        [0x80, 0, 0, 0, 0, 1],
        0,
        solicited_only,
    );
    assert_eq!((resp[36], resp[37]), (0, 0));
    assert!(still_served(&mut c));
}

/// CRC32C as it travels (RFC 7143 13.1: least significant byte first).
fn crc(bytes: &[u8]) -> [u8; 4] {
    crc32c::crc32c(bytes).to_le_bytes()
}

/// Sends a PDU with a header digest and, when it has data, a data digest (`good_data`
/// false sends a wrong one).
fn send_digested(
    stream: &mut std::net::TcpStream,
    mut bhs: [u8; 48],
    data: &[u8],
    good_data: bool,
) {
    use std::io::Write;
    bhs[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    let mut pdu = bhs.to_vec();
    pdu.extend_from_slice(&crc(&bhs));
    let mut padded = data.to_vec();
    padded.resize(pad4(data.len()), 0);
    pdu.extend_from_slice(&padded);
    if !data.is_empty() {
        let mut digest = crc(&padded);
        if !good_data {
            digest[0] ^= 0xff;
        }
        pdu.extend_from_slice(&digest);
    }
    stream.write_all(&pdu).unwrap();
}

/// Reads a PDU with digests, checking both.
fn recv_digested(stream: &mut std::net::TcpStream) -> ([u8; 48], Vec<u8>) {
    let mut bhs = [0u8; 48];
    stream.read_exact(&mut bhs).unwrap();
    let mut digest = [0u8; 4];
    stream.read_exact(&mut digest).unwrap();
    assert_eq!(digest, crc(&bhs), "header digest");
    let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
    let mut data = vec![0u8; pad4(len)];
    stream.read_exact(&mut data).unwrap();
    if len > 0 {
        stream.read_exact(&mut digest).unwrap();
        assert_eq!(digest, crc(&data), "data digest");
    }
    data.truncate(len);
    (bhs, data)
}

/// `--require-data-digest` over a raw socket (libiscsi offers no DataDigest): a login
/// with DataDigest=None gets RFC 7143 11.13.5 Status-Class 2, Status-Detail 0 (Initiator
/// error); one with CRC32C logs in.
#[test]
fn a_required_data_digest_refuses_a_login_offering_none() {
    let target = memory_target("1M", &["--require-data-digest"]);
    let mut refused = connect(&target);
    assert_eq!(
        login_as(
            &mut refused,
            "iqn.2026-11.test:host-a",
            [0x80, 0, 0, 0, 0, 3],
            0
        ),
        (0x02, 0x00)
    );
    target.wait_for_log_line(&["login rejected", "DataDigest", "requires CRC32C"]);
    let mut stream = connect(&target);
    digest_login(&mut stream, "iqn.2026-11.test:host-a");
}

/// Logs in with both digests (the login itself goes without them).
fn digest_login(stream: &mut std::net::TcpStream, initiator: &str) {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43;
    bhs[1] = 0x87;
    bhs[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, 7]);
    bhs[16..20].copy_from_slice(&1u32.to_be_bytes());
    bhs[24..28].copy_from_slice(&1u32.to_be_bytes());
    let keys = format!(
        "InitiatorName={initiator}\0TargetName={IQN}\0SessionType=Normal\0\
         ImmediateData=Yes\0InitialR2T=No\0MaxBurstLength=262144\0FirstBurstLength=65536\0\
         HeaderDigest=CRC32C\0DataDigest=CRC32C\0"
    );
    send_pdu(stream, bhs, keys.as_bytes());
    let (resp, data) = recv_pdu(stream);
    assert_eq!((resp[36], resp[37], resp[1] & 0x83), (0, 0, 0x83));
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("HeaderDigest=CRC32C") && text.contains("DataDigest=CRC32C"));
}

#[test]
fn a_bad_data_digest_fails_only_its_command_and_a_bad_header_digest_only_its_connection() {
    let target = memory_target("1M", &[]);
    let write10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let mut a = connect(&target);
    digest_login(&mut a, "iqn.2026-11.test:a");
    let mut b = connect(&target);
    digest_login(&mut b, "iqn.2026-11.test:b");
    // TEST UNIT READY takes the unit attention a new nexus starts with.
    send_digested(
        &mut a,
        scsi_command(&[0; 6], 0x20, 1, 1, 0, false),
        &[],
        true,
    );
    let (tur, _) = recv_digested(&mut a);
    assert_eq!((tur[0] & 0x3f, be32(&tur[16..])), (0x21, 0x20));
    // A one-block write whose immediate data fails its digest: Reject reason 0x02 with the
    // rejected header, then CHECK CONDITION for the command (RFC 7143 7.8, 11.17).
    send_digested(
        &mut a,
        scsi_command(&write10, 0x21, 2, 2, 512, true),
        &[0x5a; 512],
        false,
    );
    let (reject, rejected) = recv_digested(&mut a);
    assert_eq!((reject[0] & 0x3f, reject[2]), (0x3f, 0x02));
    assert_eq!(be32(&rejected[16..]), 0x21, "the rejected header");
    let (resp, sense) = recv_digested(&mut a);
    assert_eq!(
        (resp[0] & 0x3f, resp[3], be32(&resp[16..])),
        (0x21, 0x02, 0x21)
    );
    assert_eq!(
        (sense[2 + 2] & 0x0f, sense[2 + 12], sense[2 + 13]),
        (0x0b, 0x47, 0x05)
    );
    // The same write with a good digest goes through on the same connection.
    send_digested(
        &mut a,
        scsi_command(&write10, 0x22, 3, 3, 512, true),
        &[0x5a; 512],
        true,
    );
    let (resp, _) = recv_digested(&mut a);
    assert_eq!(
        (resp[0] & 0x3f, resp[3], be32(&resp[16..])),
        (0x21, 0x00, 0x22)
    );
    // A header digest that does not match closes that connection only.
    let mut nop = nop_out(0x31, 4, 4);
    nop[5..8].fill(0);
    let mut wire = nop.to_vec();
    let mut bad = crc(&nop);
    bad[1] ^= 0x01;
    wire.extend_from_slice(&bad);
    std::io::Write::write_all(&mut a, &wire).unwrap();
    assert!(closed_by_target(&mut a, Duration::from_secs(60)));
    target.wait_for_log_line(&["closing connection", "header digest"]);
    // The other session goes on.
    send_digested(&mut b, nop_out(0x41, 1, 1), &[], true);
    let (nop_in, _) = recv_digested(&mut b);
    assert_eq!((nop_in[0] & 0x3f, be32(&nop_in[16..])), (0x20, 0x41));
}

/// `--tcp-congestion`: the target's end of every connection gets the algorithm, while the
/// kernel's default stays as it was (the initiator's end keeps it).
#[test]
fn the_targets_connections_get_the_congestion_control_asked_for() {
    let wanted = congestion_other_than_default();
    let default = default_congestion();
    let target = memory_target("16M", &["--tcp-congestion", wanted]);
    let (stream, _) = raw_session(target.portal, IQN);
    assert_eq!(target_side_congestion(&stream), wanted);
    // The initiator's end is the test's own socket: the kernel's default.
    assert_eq!(our_side_congestion(&stream), default);
    // The log says it once, at start.
    let said = format!("connections to the portals get TCP congestion control {wanted}");
    assert_eq!(target.log().matches(&said).count(), 1, "{}", target.log());
}

/// Without the option the target's connections keep the kernel's default.
#[test]
fn without_the_option_connections_keep_the_kernels_default() {
    let target = memory_target("16M", &[]);
    let (stream, _) = raw_session(target.portal, IQN);
    assert_eq!(target_side_congestion(&stream), default_congestion());
    assert!(
        !target.log().contains("TCP congestion control"),
        "{}",
        target.log()
    );
}

/// A name the kernel does not offer stops the start with the kernel's list.
#[test]
fn an_unknown_congestion_control_is_refused_at_start() {
    let out = run_to_exit(&[
        "--bstype",
        "memory",
        "--size",
        "16M",
        "--tcp-congestion",
        "no_such_cc",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "tcp congestion control no_such_cc: this kernel does not offer it (available: "
        ),
        "{err}"
    );
    assert!(err.contains("reno"), "the kernel's list: {err}");
}
