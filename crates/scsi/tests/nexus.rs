//! Unit attentions per I_T nexus (SAM-5 5.14, SPC-4 6.39), driven through `ScsiTarget::start`.
//! Expected sense bytes come from SPC-4's fixed format (table 50) and its ASC table (annex D).

mod common;

use common::*;
use rstest::rstest;
use scsi::{InitiatorPort, ScsiTarget, Status, UaScope, UnitAttention};
use store_api::Capabilities;

const TUR: [u8; 6] = [0x00, 0, 0, 0, 0, 0];
const REPORT_LUNS: [u8; 12] = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0];
/// REQUEST SENSE (SPC-4 table 193), fixed format, allocation length 18.
const REQUEST_SENSE: [u8; 6] = [0x03, 0, 0, 0, 18, 0];

const A: u64 = 11;
const B: u64 = 22;

/// Fixed-format sense for UNIT ATTENTION with this ASC/ASCQ.
fn ua_bytes(asc: u8, ascq: u8) -> [u8; 18] {
    [
        0x70, 0, 0x06, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0,
    ]
}

fn port(name: &str) -> InitiatorPort {
    InitiatorPort {
        name: name.into(),
        isid: [0x40, 0, 0, 0, 0, 1],
    }
}

/// A rig with nexuses A and B logged in, and their POWER ON conditions still queued.
fn two_nexuses() -> Rig {
    let rig = Rig::new(Capabilities::default());
    rig.target.open_nexus(A, port("iqn.2026-01.test:a"));
    rig.target.open_nexus(B, port("iqn.2026-01.test:b"));
    rig
}

fn check_ua(r: &scsi::Response, asc: u8, ascq: u8) {
    assert_eq!(r.status, Status::CheckCondition);
    assert_eq!(r.sense.as_deref(), Some(&ua_bytes(asc, ascq)[..]));
}

#[test]
fn first_command_after_login_reports_power_on_once() {
    let mut rig = two_nexuses();
    check_ua(&rig.run_on(A, 0, &TUR, &[]), 0x29, 0x00);
    assert_eq!(outcome(&rig.run_on(A, 0, &TUR, &[])), GOOD);
    // B's condition is its own.
    check_ua(&rig.run_on(B, 0, &TUR, &[]), 0x29, 0x00);
}

#[rstest]
#[case::inquiry(&inquiry(false, 0, 96))]
#[case::report_luns(&REPORT_LUNS)]
fn exempt_commands_run_and_leave_the_condition(#[case] cdb: &[u8]) {
    let mut rig = two_nexuses();
    assert_eq!(outcome(&rig.run_on(A, 0, cdb, &[])), GOOD);
    check_ua(&rig.run_on(A, 0, &TUR, &[]), 0x29, 0x00);
}

#[test]
fn request_sense_returns_and_clears_the_condition() {
    let mut rig = two_nexuses();
    let r = rig.run_on(A, 0, &REQUEST_SENSE, &[]);
    assert_eq!(r.status, Status::Good);
    assert_eq!(&r.data_in[..], &ua_bytes(0x29, 0x00)[..]);
    assert_eq!(outcome(&rig.run_on(A, 0, &TUR, &[])), GOOD);
    // Descriptor format (SPC-4 4.5.2): response code 72h, key, ASC, ASCQ.
    rig.target.logical_unit_reset(0);
    let r = rig.run_on(A, 0, &[0x03, 0x01, 0, 0, 8, 0], &[]);
    assert_eq!(&r.data_in[..], &[0x72, 0x06, 0x29, 0x03, 0, 0, 0, 0]);
    // Nothing pending: NO SENSE.
    let r = rig.run_on(A, 0, &REQUEST_SENSE, &[]);
    assert_eq!(r.data_in[2] & 0x0F, 0);
    assert_eq!(r.data_in[12], 0);
}

#[test]
fn a_pending_condition_comes_before_a_bad_cdb() {
    let mut rig = two_nexuses();
    // An unsupported operation code still reports the unit attention first.
    check_ua(&rig.run_on(A, 0, &[0xC0, 0, 0, 0, 0, 0], &[]), 0x29, 0x00);
    assert_eq!(
        outcome(&rig.run_on(A, 0, &[0xC0, 0, 0, 0, 0, 0], &[])),
        INVALID_OPCODE
    );
}

#[test]
fn logical_unit_reset_reaches_every_nexus() {
    let mut rig = two_nexuses();
    for n in [A, B] {
        rig.run_on(n, 0, &TUR, &[]);
    }
    rig.target.logical_unit_reset(0);
    for n in [A, B] {
        check_ua(&rig.run_on(n, 0, &TUR, &[]), 0x29, 0x03);
        assert_eq!(outcome(&rig.run_on(n, 0, &TUR, &[])), GOOD);
    }
}

#[test]
fn a_reset_aborts_every_other_nexus_s_tasks() {
    // SAM-5 7.8 and 7.10: LOGICAL UNIT RESET and target reset abort all tasks in all
    // task sets (one per nexus, TST 001b); the asking nexus's are the transport's own.
    let mut rig = two_nexuses();
    rig.target.add_lun(1, config(Capabilities::default()));
    rig.target.logical_unit_reset_by(0, A);
    assert_eq!(
        rig.target.take_task_aborts(),
        [scsi::TaskAbort { nexus: B, lun: 0 }]
    );
    check_ua(&rig.run_on(A, 0, &TUR, &[]), 0x29, 0x03);
    check_ua(&rig.run_on(B, 0, &TUR, &[]), 0x29, 0x03);
    rig.target.logical_unit_reset_by(7, A);
    assert_eq!(rig.target.take_task_aborts(), [], "no LU 7, nothing reset");
    rig.target.target_reset_by(B);
    let mut aborts = rig.target.take_task_aborts();
    aborts.sort_by_key(|a| a.lun);
    assert_eq!(
        aborts,
        [
            scsi::TaskAbort { nexus: A, lun: 0 },
            scsi::TaskAbort { nexus: A, lun: 1 }
        ]
    );
}

#[test]
fn target_reset_reaches_every_nexus_with_power_on() {
    let mut rig = two_nexuses();
    for n in [A, B] {
        rig.run_on(n, 0, &TUR, &[]);
    }
    rig.target.target_reset();
    for n in [A, B] {
        check_ua(&rig.run_on(n, 0, &TUR, &[]), 0x29, 0x00);
    }
}

#[test]
fn raised_conditions_follow_their_scope_in_order() {
    let mut rig = two_nexuses();
    for n in [A, B] {
        rig.run_on(n, 0, &TUR, &[]);
    }
    rig.target
        .raise_unit_attention(0, UnitAttention::CapacityDataChanged, UaScope::All);
    rig.target
        .raise_unit_attention(0, UnitAttention::ModeParametersChanged, UaScope::AllBut(A));
    check_ua(&rig.run_on(A, 0, &TUR, &[]), 0x2A, 0x09);
    assert_eq!(outcome(&rig.run_on(A, 0, &TUR, &[])), GOOD);
    check_ua(&rig.run_on(B, 0, &TUR, &[]), 0x2A, 0x09);
    check_ua(&rig.run_on(B, 0, &TUR, &[]), 0x2A, 0x01);
    assert_eq!(outcome(&rig.run_on(B, 0, &TUR, &[])), GOOD);
}

#[test]
fn a_closed_nexus_forgets_and_an_unopened_one_sees_nothing() {
    let mut rig = two_nexuses();
    rig.target.close_nexus(A);
    assert_eq!(outcome(&rig.run_on(A, 0, &TUR, &[])), GOOD);
    assert_eq!(outcome(&rig.run_on(99, 0, &TUR, &[])), GOOD);
}

#[test]
fn an_absent_lun_reports_no_unit_attention() {
    let mut rig = two_nexuses();
    assert_eq!(
        outcome(&rig.run_on(A, 0x0005_0000_0000_0000, &TUR, &[])),
        LU_NOT_SUPPORTED
    );
}

#[test]
fn a_capacity_change_reaches_every_nexus_and_read_capacity_reports_it() {
    // READ CAPACITY(10) (SBC-3 table 64) and (16) (SERVICE ACTION IN 10h, table 66,
    // allocation length 32).
    const RC10: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const RC16: [u8; 16] = [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    let mut rig = two_nexuses();
    for n in [A, B] {
        rig.run_on(n, 0, &TUR, &[]);
    }
    let grown = BLOCKS * 3;
    assert!(rig.target.set_capacity(0, grown));
    assert!(!rig.target.set_capacity(7, grown), "no LU 7");
    for n in [A, B] {
        // 2Ah/09h CAPACITY DATA HAS CHANGED (SPC-4 annex D), once.
        check_ua(&rig.run_on(n, 0, &TUR, &[]), 0x2A, 0x09);
        assert_eq!(outcome(&rig.run_on(n, 0, &TUR, &[])), GOOD);
    }
    let r10 = rig.run_on(A, 0, &RC10, &[]);
    assert_eq!(&r10.data_in[..4], &((grown - 1) as u32).to_be_bytes());
    assert_eq!(&r10.data_in[4..8], &512u32.to_be_bytes());
    let r16 = rig.run_on(B, 0, &RC16, &[]);
    assert_eq!(&r16.data_in[..8], &(grown - 1).to_be_bytes());
    assert_eq!(rig.target.geometry(0).unwrap().num_blocks, grown);
}

#[test]
fn a_successor_keeps_the_nexuses_and_lus_and_reports_the_lun_change() {
    let mut rig = two_nexuses();
    for n in [A, B] {
        rig.run_on(n, 0, &TUR, &[]);
    }
    // A condition queued before the change is still there after it, and LU 0's state
    // (here its capacity) is the same LU's.
    rig.target
        .raise_unit_attention(0, UnitAttention::ModeParametersChanged, UaScope::Only(A));
    let mut next = rig.target.successor();
    assert!(next.shares_nexuses_with(&rig.target));
    assert!(!ScsiTarget::new().shares_nexuses_with(&rig.target));
    next.add_lun(1, config(Capabilities::default()));
    next.luns_changed();
    rig.target.set_capacity(0, BLOCKS * 2);
    assert_eq!(next.geometry(0).unwrap().num_blocks, BLOCKS * 2);
    assert_eq!(
        rig.target.luns().collect::<Vec<_>>(),
        [0],
        "the old version is unchanged"
    );
    rig.target = next;
    // 2Ah/01h first (queued earlier), then 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED and
    // 2Ah/09h; no POWER ON: the nexus was not reopened.
    check_ua(&rig.run_on(A, 0, &TUR, &[]), 0x2A, 0x01);
    check_ua(&rig.run_on(A, 0, &TUR, &[]), 0x3F, 0x0E);
    check_ua(&rig.run_on(A, 0, &TUR, &[]), 0x2A, 0x09);
    assert_eq!(outcome(&rig.run_on(A, 0, &TUR, &[])), GOOD);
    check_ua(&rig.run_on(B, 1 << 48, &TUR, &[]), 0x3F, 0x0E);
}

#[test]
fn a_new_store_under_an_lu_keeps_its_conditions_and_reports_what_changed() {
    let mut rig = two_nexuses();
    for n in [A, B] {
        rig.run_on(n, 0, &TUR, &[]);
    }
    rig.target
        .raise_unit_attention(0, UnitAttention::ModeParametersChanged, UaScope::Only(A));
    let same = rig.target.lun(0).unwrap().clone();
    assert!(rig.target.replace_lun_config(0, same.clone()));
    assert!(!rig.target.replace_lun_config(7, same.clone()), "no LU 7");
    // Nothing changed: B has nothing to learn.
    assert_eq!(outcome(&rig.run_on(B, 0, &TUR, &[])), GOOD);
    let mut moved = same;
    moved.geometry.num_blocks = BLOCKS * 2;
    moved.naa_id[15] ^= 1;
    rig.target.replace_lun_config(0, moved);
    assert_eq!(rig.target.geometry(0).unwrap().num_blocks, BLOCKS * 2);
    // A: its earlier condition first (2Ah/01h), then 2Ah/09h CAPACITY DATA HAS CHANGED
    // and 3Fh/03h INQUIRY DATA HAS CHANGED (SPC-4 annex D).
    check_ua(&rig.run_on(A, 0, &TUR, &[]), 0x2A, 0x01);
    for n in [A, B] {
        check_ua(&rig.run_on(n, 0, &TUR, &[]), 0x2A, 0x09);
        check_ua(&rig.run_on(n, 0, &TUR, &[]), 0x3F, 0x03);
        assert_eq!(outcome(&rig.run_on(n, 0, &TUR, &[])), GOOD);
    }
}
