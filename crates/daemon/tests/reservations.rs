//! Persistent reservations across two sessions and a restart, through the real binary on a
//! glfs LUN on the fake volume: the fencing a cluster relies on.
//!
//! CDBs and parameter lists are written out from SPC-4 (PERSISTENT RESERVE OUT table 169,
//! its parameter list table 171; PERSISTENT RESERVE IN READ RESERVATION table 167).

mod support;

use std::time::{Duration, Instant};
use support::*;
use testkit::fake::{FakeRoot, FaultRule};
use testkit::initiator::Initiator;

const VOLUME: &str = "vol";
const KEY_A: u64 = 0x0A0A_0A0A_0000_0001;
const KEY_B: u64 = 0x0B0B_0B0B_0000_0002;
/// Write Exclusive – Registrants Only (SPC-4 table 175).
const WE_RO: u8 = 5;
const RESERVATION_CONFLICT: u8 = 0x18;

fn host(target: &Running, name: &str) -> Initiator {
    login_as(target, IQN, &format!("iqn.2026-11.test:{name}"), None).expect("login")
}

/// PERSISTENT RESERVE OUT: `sa`, TYPE, and the 24-byte parameter list with APTPL.
fn prout(ini: &mut Initiator, sa: u8, kind: u8, key: u64, sa_key: u64) -> u8 {
    prout_with(ini, sa, kind, key, sa_key, 0x01)
}

#[test]
fn a_reservation_fences_the_other_host_and_survives_a_restart() {
    let root = FakeRoot::new();
    let target = glfs_target(&root, &[]);
    let mut a = host(&target, "host-a");
    let mut b = host(&target, "host-b");

    // Both register; A reserves Write Exclusive – Registrants Only.
    assert_eq!(prout(&mut a, 0x00, 0, 0, KEY_A), 0, "A registers");
    assert_eq!(prout(&mut b, 0x00, 0, 0, KEY_B), 0, "B registers");
    assert_eq!(prout(&mut a, 0x01, WE_RO, KEY_A, 0), 0, "A reserves");
    assert_eq!(read_reservation(&mut b), Some((KEY_A, WE_RO)));
    assert_eq!(
        write_status(&mut b),
        0,
        "a registrant may write under WE_RO"
    );

    // A preempts B: B is no longer registered, and is fenced.
    assert_eq!(prout(&mut a, 0x04, WE_RO, KEY_A, KEY_B), 0, "A preempts B");
    let told = b
        .raw_command(&[0x2A, 0, 0, 0, 0, 8, 0, 0, 1, 0], &pattern(3, 512), 0)
        .unwrap();
    // B learns of it first (UNIT ATTENTION, REGISTRATIONS PREEMPTED 2Ah/05h).
    assert_eq!(
        (told.status, told.sense_key, told.asc, told.ascq),
        (2, 6, 0x2A, 0x05)
    );
    assert_eq!(write_status(&mut b), RESERVATION_CONFLICT);
    assert_eq!(write_status(&mut a), 0);

    // The saved state is on the volume beside the LUN file.
    let saved = std::fs::read_to_string(root.path().join(VOLUME).join("lun.img.pr")).unwrap();
    assert!(saved.contains("iqn.2026-11.test:host-a"), "{saved}");

    // Restart the target on the same volume.
    drop((a, b));
    drop(target);
    let target = glfs_target(&root, &[]);
    target.wait_for_log_line(&["persistent reservations restored"]);
    let mut b = host(&target, "host-b");
    assert_eq!(
        read_reservation(&mut b),
        Some((KEY_A, WE_RO)),
        "still reserved"
    );
    assert_eq!(write_status(&mut b), RESERVATION_CONFLICT, "B still fenced");
    // B's reads are still allowed (Write Exclusive types).
    let read = b
        .raw_command(&[0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0], &[], 512)
        .unwrap();
    assert!(read.is_good(), "{read:?}");
}

/// Makes the fake volume hang writes to the LUN file (until `root.clear()`) and sends two
/// writes of `a` that the store then holds: ITT 10 at LBA 16 and ITT 11 at LBA 24, a
/// block each.
fn hold_two_writes(root: &FakeRoot, a: &mut RawHost) {
    root.set_rules(&[FaultRule::on(&["write"]).path("/lun.img").hang()]);
    a.send(
        &[0x2A, 0, 0, 0, 0, 16, 0, 0, 1, 0],
        10,
        &pattern(10, 512),
        0,
    );
    a.send(
        &[0x2A, 0, 0, 0, 0, 24, 0, 0, 1, 0],
        11,
        &pattern(11, 512),
        0,
    );
}

impl RawHost {
    /// PERSISTENT RESERVE OUT `sa` (SPC-4 tables 169, 171), without APTPL.
    fn prout(&mut self, itt: u32, sa: u8, kind: u8, key: u64, sa_key: u64) -> u8 {
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        let (status, sense) = self.run(&[0x5F, sa, kind, 0, 0, 0, 0, 0, 24, 0], itt, &p);
        assert_eq!(sense, None);
        status
    }
}

/// PREEMPT AND ABORT end to end (SPC-4 5.13.11.2.5 / SAM-5 5.6): host A holds the
/// reservation with two writes held by the store (the fake volume hangs writes to the
/// LUN file) and a third still collecting its data; host B preempts and aborts A. B's command completes at once, A's tasks
/// are aborted without a response (TAS=0 in the Control mode page, SAM-5 5.6), A's next
/// command reports REGISTRATIONS PREEMPTED (UNIT ATTENTION 6h, 2Ah/05h), and the late
/// completions of the aborted writes, once the store lets them go, answer nothing.
#[test]
fn preempt_and_abort_aborts_the_preempted_hosts_tasks_at_the_store() {
    const PREEMPT_AND_ABORT: u8 = 0x05;
    const GOOD: u8 = 0x00;
    const CHECK_CONDITION: u8 = 0x02;
    const UNIT_ATTENTION: u8 = 0x06;
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--command-timeout", "0"]);
    let mut a = RawHost::login(&target);
    let mut b = host(&target, "host-b");

    // A registers and reserves Write Exclusive - Registrants Only; B registers.
    assert_eq!(a.prout(1, 0x00, 0, 0, KEY_A), GOOD, "A registers");
    assert_eq!(a.prout(2, 0x01, WE_RO, KEY_A, 0), GOOD, "A reserves");
    assert_eq!(
        prout_with(&mut b, 0x00, 0, 0, KEY_B, 0),
        GOOD,
        "B registers"
    );

    // Two writes of A reach the store, which holds them.
    hold_two_writes(&root, &mut a);
    // A third write still collects its data: 128 KiB (256 blocks at LBA 64), of which
    // the first burst (FirstBurstLength 64 KiB) goes immediately; the target asks for
    // the rest with an R2T (RFC 7143 11.8: TTT in bytes 20..24, BufferOffset 40..44,
    // Desired Data Transfer Length 44..48).
    let big = pattern(15, 128 << 10);
    let mut bhs = scsi_command(
        &[0x2A, 0, 0, 0, 0, 64, 0, 1, 0, 0],
        15,
        a.cmd_sn,
        a.exp_stat_sn,
        128 << 10,
        true,
    );
    bhs[1] &= !0x80; // not final: the rest of the data follows
    send_pdu(&mut a.stream, bhs, &big[..64 << 10]);
    a.cmd_sn += 1;
    let (r2t, _) = recv_pdu(&mut a.stream);
    assert_eq!(r2t[0] & 0x3f, 0x31, "R2T expected");
    assert_eq!(be32(&r2t[16..]), 15);
    assert_eq!((be32(&r2t[40..]), be32(&r2t[44..])), (64 << 10, 64 << 10));
    let ttt = be32(&r2t[20..]);
    std::thread::sleep(Duration::from_millis(300));

    // B preempts A and aborts its tasks: answered while the store still holds them.
    let started = Instant::now();
    let status = prout_with(&mut b, PREEMPT_AND_ABORT, WE_RO, KEY_B, KEY_A, 0);
    assert_eq!(status, GOOD, "B's PREEMPT AND ABORT");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered while the store holds A's writes: {:?}",
        started.elapsed()
    );
    assert_eq!(read_reservation(&mut b), Some((KEY_B, WE_RO)));

    // A, not yet knowing, sends the data the R2T asked for (Data-Out, 11.7: F, ITT, TTT,
    // ExpStatSN, DataSN 0, BufferOffset): for an aborted task it is dropped.
    let mut data_out = [0u8; 48];
    data_out[0] = 0x05;
    data_out[1] = 0x80;
    data_out[16..20].copy_from_slice(&15u32.to_be_bytes());
    data_out[20..24].copy_from_slice(&ttt.to_be_bytes());
    data_out[28..32].copy_from_slice(&a.exp_stat_sn.to_be_bytes());
    data_out[40..44].copy_from_slice(&(64u32 << 10).to_be_bytes());
    send_pdu(&mut a.stream, data_out, &big[64 << 10..]);

    // A's next command is answered first, with the unit attention: its three writes got
    // nothing.
    let (status, sense) = a.run(&[0; 6], 12, &[]);
    assert_eq!(
        (status, sense),
        (CHECK_CONDITION, Some((UNIT_ATTENTION, 0x2A, 0x05))),
        "REGISTRATIONS PREEMPTED"
    );
    // Unregistered now, A is refused writes (Registrants Only, SPC-4 table 62).
    let (status, _) = a.run(&[0x2A, 0, 0, 0, 0, 32, 0, 0, 1, 0], 13, &pattern(13, 512));
    assert_eq!(status, RESERVATION_CONFLICT);

    // The store lets the writes go: their completions answer nothing either; the next
    // PDU A gets answers its ping.
    root.clear();
    std::thread::sleep(Duration::from_millis(300));
    send_pdu(&mut a.stream, nop_out(14, a.cmd_sn, a.exp_stat_sn), b"ping");
    let (bhs, data) = recv_pdu(&mut a.stream);
    assert_eq!(
        bhs[0] & 0x3f,
        0x20,
        "NOP-In, not a response to an aborted task"
    );
    assert_eq!((be32(&bhs[16..]), &data[..]), (14, &b"ping"[..]));

    // B, the holder now, writes and reads back.
    assert_eq!(write_status(&mut b), GOOD);
    let read = b
        .raw_command(&[0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0], &[], 512)
        .unwrap();
    assert_eq!(read.data, pattern(3, 512));
}

/// LOGICAL UNIT RESET (SAM-5 7.8) aborts all tasks in all task sets of the LU, another
/// session's too: host A's two writes held by the store get no response (TAS=0 in the
/// Control mode page), its next command reports BUS DEVICE RESET FUNCTION OCCURRED
/// (UNIT ATTENTION 6h, 29h/03h), and the late completions of its writes, once the store
/// lets them go, answer nothing. Host B, which asked, gets FUNCTION COMPLETE (RFC 7143
/// 11.6.1, response 0) and the same unit attention.
#[test]
fn a_logical_unit_reset_aborts_the_other_sessions_tasks_at_the_store() {
    const CHECK_CONDITION: u8 = 0x02;
    const UNIT_ATTENTION: u8 = 0x06;
    let root = FakeRoot::new();
    let target = glfs_target(&root, &["--command-timeout", "0"]);
    let mut a = RawHost::login(&target);
    let mut b = RawHost::login_as(&target, "iqn.2026-11.test:resetter");

    hold_two_writes(&root, &mut a);
    std::thread::sleep(Duration::from_millis(300));

    // B: LOGICAL UNIT RESET (function 5) on LUN 0, immediate.
    send_pdu(
        &mut b.stream,
        tmf_request(5, 0, 0x50, 0xffff_ffff, b.cmd_sn, b.exp_stat_sn, 0),
        &[],
    );
    let (resp, _) = recv_pdu(&mut b.stream);
    // Task Management Function Response (0x22), Response 0: function complete.
    assert_eq!(
        (resp[0] & 0x3f, resp[2], be32(&resp[16..])),
        (0x22, 0, 0x50)
    );
    b.exp_stat_sn = be32(&resp[24..]) + 1;

    // A's next command is answered first, with the unit attention: its writes got
    // nothing.
    let (status, sense) = a.run(&[0; 6], 12, &[]);
    assert_eq!(
        (status, sense),
        (CHECK_CONDITION, Some((UNIT_ATTENTION, 0x29, 0x03))),
        "BUS DEVICE RESET FUNCTION OCCURRED"
    );
    let (status, sense) = b.run(&[0; 6], 0x51, &[]);
    assert_eq!(
        (status, sense),
        (CHECK_CONDITION, Some((UNIT_ATTENTION, 0x29, 0x03)))
    );

    // The store lets the writes go: their completions answer nothing; the next PDU A
    // gets answers its ping.
    root.clear();
    std::thread::sleep(Duration::from_millis(300));
    send_pdu(&mut a.stream, nop_out(14, a.cmd_sn, a.exp_stat_sn), b"ping");
    let (bhs, data) = recv_pdu(&mut a.stream);
    assert_eq!(
        bhs[0] & 0x3f,
        0x20,
        "NOP-In, not a response to an aborted task"
    );
    assert_eq!((be32(&bhs[16..]), &data[..]), (14, &b"ping"[..]));
}
