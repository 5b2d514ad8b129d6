//! The session layer through the real binary and libiscsi: digests, and (as they come)
//! keepalive, reinstatement and shutdown.

mod support;

use std::io::Read;
use std::time::Duration;
use support::*;
use testkit::initiator::{ConnectOptions, HeaderDigest, Initiator};

/// A full write and read-back run with HeaderDigest=CRC32C (libiscsi's
/// `?header_digest=crc32c`; libiscsi offers no DataDigest).
#[test]
fn header_digest_crc32c_carries_a_read_write_run() {
    let target = Running::start(&["--bstype", "memory", "--size", "4M"], &[]);
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
    let target = Running::start(&["--bstype", "memory", "--size", "1M"], &[]);
    let opts = ConnectOptions {
        header_digest: HeaderDigest::NoneCrc32c,
        ..ConnectOptions::default()
    };
    let mut init = Initiator::connect_with(&target.portal(), IQN, 0, &opts).unwrap();
    target.wait_for_log_line(&["login", "header_digest=false"]);
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
    let target = Running::start(
        &["--bstype", "memory", "--size", "1M", "--login-timeout", "1"],
        &[],
    );
    let mut stream = std::net::TcpStream::connect(target.portal).unwrap();
    assert!(closed_by_target(&mut stream, Duration::from_secs(60)));
    target.wait_for_log_line(&["closing connection", "login not complete"]);
}

#[test]
fn an_idle_initiator_is_pinged_and_dropped_when_silent() {
    let target = Running::start(
        &[
            "--bstype",
            "memory",
            "--size",
            "1M",
            "--nop-in-interval",
            "1",
            "--nop-in-timeout",
            "1",
        ],
        &[],
    );
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
    let target = Running::start(
        &[
            "--bstype",
            "memory",
            "--size",
            "1M",
            "--nop-in-interval",
            "1",
            "--nop-in-timeout",
            "30",
        ],
        &[],
    );
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
