//! Persistent reservations (SPC-4 5.13, 6.15, 6.16) and RESERVE/RELEASE(6/10) (SPC-2 5.5),
//! through `ScsiTarget::start` with three I_T nexuses. CDBs, parameter lists and expected
//! bytes are written out here from the SPC-4 tables, not taken from the crate.

mod common;

use common::*;
use rstest::rstest;
use scsi::{AccessState, Alua, InitiatorPort, PortGroup, Status};
use store_api::Capabilities;

/// Host A (the reservation holder in most tables), host B (another registrant), host C
/// (never registered).
const A: u64 = 1;
const B: u64 = 2;
const C: u64 = 3;
const KEY_A: u64 = 0xAAAA_0000_0000_0001;
const KEY_B: u64 = 0xBBBB_0000_0000_0002;

const RC: (Status, u8, u8, u8) = (Status::ReservationConflict, 0, 0, 0);
const PARAM_LEN_ERROR: (Status, u8, u8, u8) = (Status::CheckCondition, 0x05, 0x1A, 0x00);
const INVALID_PARAM: (Status, u8, u8, u8) = (Status::CheckCondition, 0x05, 0x26, 0x00);
const INVALID_RELEASE: (Status, u8, u8, u8) = (Status::CheckCondition, 0x05, 0x26, 0x04);
const UA_REGISTRATIONS_PREEMPTED: (Status, u8, u8, u8) = (Status::CheckCondition, 0x06, 0x2A, 0x05);
const UA_RESERVATIONS_PREEMPTED: (Status, u8, u8, u8) = (Status::CheckCondition, 0x06, 0x2A, 0x03);
const UA_RESERVATIONS_RELEASED: (Status, u8, u8, u8) = (Status::CheckCondition, 0x06, 0x2A, 0x04);

// PERSISTENT RESERVE OUT service actions (SPC-4 table 170).
const REGISTER: u8 = 0x00;
const RESERVE: u8 = 0x01;
const RELEASE: u8 = 0x02;
const CLEAR: u8 = 0x03;
const PREEMPT: u8 = 0x04;
const PREEMPT_AND_ABORT: u8 = 0x05;
const REGISTER_AND_IGNORE: u8 = 0x06;
const REGISTER_AND_MOVE: u8 = 0x07;

// Persistent reservation types (SPC-4 table 175).
const WE: u8 = 1;
const EA: u8 = 3;
const WE_RO: u8 = 5;
const EA_RO: u8 = 6;
const WE_AR: u8 = 7;
const EA_AR: u8 = 8;

const TUR: [u8; 6] = [0; 6];

fn port(n: u64) -> InitiatorPort {
    InitiatorPort {
        name: format!("iqn.2026-01.test:host{n}"),
        isid: [0x80, 0, 0, 0, 0, n as u8],
    }
}

/// PERSISTENT RESERVE OUT CDB (SPC-4 table 169): SA, SCOPE|TYPE, PARAMETER LIST LENGTH in
/// bytes 5..9.
fn prout_cdb(sa: u8, kind: u8, len: u32) -> [u8; 10] {
    let l = len.to_be_bytes();
    [0x5F, sa, kind, 0, 0, l[0], l[1], l[2], l[3], 0]
}

/// The basic parameter list (SPC-4 table 171): RESERVATION KEY, SERVICE ACTION RESERVATION
/// KEY, obsolete, flags byte 20 (SPEC_I_PT 08h, ALL_TG_PT 04h, APTPL 01h).
fn params(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    p
}

/// PERSISTENT RESERVE IN CDB (SPC-4 table 162).
fn prin_cdb(sa: u8, alloc: u16) -> [u8; 10] {
    let a = alloc.to_be_bytes();
    [0x5E, sa, 0, 0, 0, 0, 0, a[0], a[1], 0]
}

struct Lu {
    rig: Rig,
}

impl Lu {
    /// A, B and C logged in, their POWER ON conditions consumed.
    fn new() -> Self {
        let mut rig = Rig::new(Capabilities::default());
        for n in [A, B, C] {
            rig.target.open_nexus(n, port(n));
            rig.run_on(n, 0, &TUR, &[]);
        }
        Lu { rig }
    }

    fn prout(&mut self, n: u64, sa: u8, kind: u8, key: u64, sa_key: u64) -> scsi::Response {
        let p = params(key, sa_key, 0);
        self.rig
            .run_on(n, 0, &prout_cdb(sa, kind, p.len() as u32), &p)
    }

    fn ok(&mut self, n: u64, sa: u8, kind: u8, key: u64, sa_key: u64) {
        let r = self.prout(n, sa, kind, key, sa_key);
        assert_eq!(outcome(&r), GOOD, "PR OUT {sa} from {n}");
    }

    fn prin(&mut self, n: u64, sa: u8) -> Vec<u8> {
        let r = self.rig.run_on(n, 0, &prin_cdb(sa, 1024), &[]);
        assert_eq!(outcome(&r), GOOD);
        r.data_in.to_vec()
    }

    fn read(&mut self, n: u64) -> (Status, u8, u8, u8) {
        outcome(&self.rig.run_on(n, 0, &cdb10(0x28, 0, 0, 1), &[]))
    }

    fn write(&mut self, n: u64) -> (Status, u8, u8, u8) {
        outcome(&self.rig.run_on(n, 0, &cdb10(0x2A, 0, 0, 1), &[0x5A; 512]))
    }

    /// A holds a reservation of `kind`; B is registered too.
    fn reserved(kind: u8) -> Self {
        let mut lu = Lu::new();
        lu.ok(A, REGISTER, 0, 0, KEY_A);
        lu.ok(B, REGISTER, 0, 0, KEY_B);
        lu.ok(A, RESERVE, kind, KEY_A, 0);
        lu
    }
}

/// SPC-4 table 62 / SBC-3 table 13 for READ and WRITE: (type, holder read/write,
/// registrant read/write, unregistered read/write), G = GOOD, C = RESERVATION CONFLICT.
#[rstest]
#[case::write_exclusive(WE, "GG", "GC", "GC")]
#[case::exclusive_access(EA, "GG", "CC", "CC")]
#[case::write_exclusive_registrants_only(WE_RO, "GG", "GG", "GC")]
#[case::exclusive_access_registrants_only(EA_RO, "GG", "GG", "CC")]
#[case::write_exclusive_all_registrants(WE_AR, "GG", "GG", "GC")]
#[case::exclusive_access_all_registrants(EA_AR, "GG", "GG", "CC")]
fn access_under_each_reservation_type(
    #[case] kind: u8,
    #[case] holder: &str,
    #[case] registrant: &str,
    #[case] unregistered: &str,
) {
    let mut lu = Lu::reserved(kind);
    let want = |c: u8| if c == b'G' { GOOD } else { RC };
    for (n, row) in [(A, holder), (B, registrant), (C, unregistered)] {
        let row = row.as_bytes();
        assert_eq!(lu.read(n), want(row[0]), "type {kind} read from {n}");
        assert_eq!(lu.write(n), want(row[1]), "type {kind} write from {n}");
        // Always allowed (SPC-4 table 62): INQUIRY, TEST UNIT READY, READ CAPACITY(10),
        // REPORT LUNS, PERSISTENT RESERVE IN.
        for cdb in [
            &inquiry(false, 0, 96)[..],
            &TUR[..],
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0][..],
            &prin_cdb(0, 64)[..],
        ] {
            assert_eq!(outcome(&lu.rig.run_on(n, 0, cdb, &[])), GOOD, "{cdb:02x?}");
        }
    }
}

/// PERSISTENT RESERVE OUT outcomes (SPC-4 5.13.5 to 5.13.11, 6.16): with A registered
/// (KEY_A) and holding Write Exclusive, B registered (KEY_B), C not registered.
#[rstest]
#[case::register_unregistered_with_nonzero_key(C, REGISTER, 0, 7, 9, RC)]
#[case::register_with_wrong_key(B, REGISTER, 0, 7, 9, RC)]
#[case::register_and_ignore_needs_no_key(B, REGISTER_AND_IGNORE, 0, 7, 9, GOOD)]
#[case::register_unregistered_with_zero_is_a_no_op(C, REGISTER, 0, 0, 0, GOOD)]
#[case::reserve_from_unregistered(C, RESERVE, WE, 0, 0, RC)]
#[case::reserve_with_wrong_key(B, RESERVE, WE, KEY_A, 0, RC)]
#[case::reserve_held_by_another(B, RESERVE, WE, KEY_B, 0, RC)]
#[case::reserve_again_same_type(A, RESERVE, WE, KEY_A, 0, GOOD)]
#[case::reserve_again_other_type(A, RESERVE, EA, KEY_A, 0, RC)]
#[case::reserve_bad_type(A, RESERVE, 2, KEY_A, 0, INVALID_FIELD)]
#[case::reserve_bad_scope(A, RESERVE, 0x10 | WE, KEY_A, 0, INVALID_FIELD)]
#[case::release_by_non_holder_is_a_no_op(B, RELEASE, WE, KEY_B, 0, GOOD)]
#[case::release_with_wrong_type(A, RELEASE, EA, KEY_A, 0, INVALID_RELEASE)]
#[case::release_from_unregistered(C, RELEASE, WE, 0, 0, RC)]
#[case::clear_with_wrong_key(B, CLEAR, 0, KEY_A, 0, RC)]
#[case::preempt_unknown_key(B, PREEMPT, WE, KEY_B, 0x1234, RC)]
#[case::preempt_zero_key_without_all_registrants(B, PREEMPT, WE, KEY_B, 0, INVALID_PARAM)]
#[case::preempt_from_unregistered(C, PREEMPT, WE, 0, KEY_A, RC)]
#[case::register_and_move_by_non_holder(B, REGISTER_AND_MOVE, 0, KEY_B, 5, RC)]
fn prout_outcomes(
    #[case] n: u64,
    #[case] sa: u8,
    #[case] kind: u8,
    #[case] key: u64,
    #[case] sa_key: u64,
    #[case] want: (Status, u8, u8, u8),
) {
    let mut lu = Lu::reserved(WE);
    let r = if sa == REGISTER_AND_MOVE {
        let p = move_params(key, sa_key, 0, &port(C));
        lu.rig
            .run_on(n, 0, &prout_cdb(sa, kind, p.len() as u32), &p)
    } else {
        lu.prout(n, sa, kind, key, sa_key)
    };
    assert_eq!(outcome(&r), want);
}

#[rstest]
#[case::short(23)]
#[case::long(25)]
#[case::zero(0)]
fn parameter_list_length_must_be_24(#[case] len: u32) {
    let mut lu = Lu::new();
    let r = lu
        .rig
        .run_on(A, 0, &prout_cdb(REGISTER, 0, len), &vec![0; len as usize]);
    assert_eq!(outcome(&r), PARAM_LEN_ERROR);
}

#[test]
fn truncated_data_out_is_a_length_error_and_nothing_changes() {
    let mut lu = Lu::new();
    let p = params(0, KEY_A, 0);
    let r = lu.rig.run_on(A, 0, &prout_cdb(REGISTER, 0, 24), &p[..20]);
    assert_eq!(outcome(&r), PARAM_LEN_ERROR);
    assert_eq!(lu.prin(A, 0), [0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn unknown_service_actions_are_invalid_fields() {
    let mut lu = Lu::new();
    let p = params(0, 0, 0);
    let r = lu.rig.run_on(A, 0, &prout_cdb(0x08, 0, 24), &p);
    assert_eq!(outcome(&r), INVALID_FIELD);
    let r = lu.rig.run_on(A, 0, &prin_cdb(0x04, 64), &[]);
    assert_eq!(outcome(&r), INVALID_FIELD);
    // Field pointer: CDB byte 1, bit 4 (SKSV | C/D | BPV | 4 = 0xCC).
    assert_eq!(&r.sense.unwrap()[15..18], &[0xCC, 0, 1]);
}

#[test]
fn every_truncation_of_every_prout_is_answered_without_panic() {
    let mut lu = Lu::reserved(WE_RO);
    let full = move_params(KEY_A, 9, 0, &port(C));
    for sa in 0..=0x1F {
        for len in [0, 8, 23, 24, 25, 28, 40, full.len() as u32, 1000] {
            for have in [0, 12, 24, full.len()] {
                let r = lu
                    .rig
                    .run_on(C, 0, &prout_cdb(sa, WE, len), &full[..have.min(full.len())]);
                assert!(
                    r.status != Status::CheckCondition || r.sense.is_some(),
                    "sense with every CHECK CONDITION"
                );
            }
        }
    }
}

#[test]
fn read_keys_and_read_reservation_known_answers() {
    let mut lu = Lu::new();
    // No registrations: PRGENERATION 0, ADDITIONAL LENGTH 0 (SPC-4 table 164).
    assert_eq!(lu.prin(A, 0), [0, 0, 0, 0, 0, 0, 0, 0]);
    lu.ok(A, REGISTER, 0, 0, KEY_A);
    lu.ok(B, REGISTER_AND_IGNORE, 0, 0, KEY_B);
    let mut want = vec![0, 0, 0, 2, 0, 0, 0, 16];
    want.extend_from_slice(&KEY_A.to_be_bytes());
    want.extend_from_slice(&KEY_B.to_be_bytes());
    assert_eq!(lu.prin(C, 0), want);
    // No reservation (SPC-4 table 166): ADDITIONAL LENGTH 0.
    assert_eq!(lu.prin(C, 1), [0, 0, 0, 2, 0, 0, 0, 0]);
    lu.ok(A, RESERVE, WE_RO, KEY_A, 0);
    // RESERVE does not change PRGENERATION; table 167: key, obsolete, reserved, SCOPE|TYPE.
    let mut want = vec![0, 0, 0, 2, 0, 0, 0, 16];
    want.extend_from_slice(&KEY_A.to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0x05, 0, 0]);
    assert_eq!(lu.prin(C, 1), want);
    // All Registrants reports key 0.
    lu.ok(A, RELEASE, WE_RO, KEY_A, 0);
    assert_eq!(lu.read(B), UA_RESERVATIONS_RELEASED);
    lu.ok(B, RESERVE, EA_AR, KEY_B, 0);
    let mut want = vec![0, 0, 0, 2, 0, 0, 0, 16];
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0x08, 0, 0]);
    assert_eq!(lu.prin(C, 1), want);
    // Allocation length cuts the data.
    let r = lu.rig.run_on(C, 0, &prin_cdb(0, 12), &[]);
    assert_eq!(r.data_in.len(), 12);
}

#[test]
fn report_capabilities_known_answer() {
    let mut lu = Lu::new();
    // SPC-4 table 168: LENGTH 8; SIP_C ATP_C PTPL_C; TMV, ALLOW COMMANDS 001b, PTPL_A 0;
    // type mask WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX | EX_AC_AR.
    assert_eq!(lu.prin(A, 2), [0, 8, 0x0D, 0x90, 0xEA, 0x01, 0, 0]);
}

#[test]
fn read_full_status_known_answer() {
    let mut lu = Lu::new();
    let p = params(0, KEY_A, 0x04); // ALL_TG_PT
    let r = lu.rig.run_on(A, 0, &prout_cdb(REGISTER, 0, 24), &p);
    assert_eq!(outcome(&r), GOOD);
    lu.ok(A, RESERVE, EA, KEY_A, 0);
    let d = lu.prin(B, 3);
    // "iqn.2026-01.test:host1,i,0x800000000001" is 39 bytes, + NUL = 40: a multiple of 4.
    let name = b"iqn.2026-01.test:host1,i,0x800000000001\0";
    let mut want = vec![0, 0, 0, 1]; // PRGENERATION
    want.extend_from_slice(&(24u32 + 4 + 40).to_be_bytes()); // ADDITIONAL LENGTH
    want.extend_from_slice(&KEY_A.to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0]);
    want.push(0x03); // ALL_TG_PT, R_HOLDER
    want.push(0x03); // SCOPE 0, TYPE Exclusive Access
    want.extend_from_slice(&[0, 0, 0, 0]);
    // RELATIVE TARGET PORT IDENTIFIER: not defined with ALL_TG_PT set (the descriptor
    // stands for every target port); this target reports 0.
    want.extend_from_slice(&[0, 0]);
    want.extend_from_slice(&44u32.to_be_bytes()); // ADDITIONAL DESCRIPTOR LENGTH
                                                  // iSCSI TransportID (SPC-4 table 391): FORMAT CODE 01b, PROTOCOL IDENTIFIER 5.
    want.extend_from_slice(&[0x45, 0, 0, 40]);
    want.extend_from_slice(name);
    assert_eq!(d, want);
}

#[test]
fn generation_counts_registration_changes_only() {
    let mut lu = Lu::new();
    let gen = |lu: &mut Lu| u32::from_be_bytes(lu.prin(C, 0)[0..4].try_into().unwrap());
    lu.ok(A, REGISTER, 0, 0, KEY_A);
    assert_eq!(gen(&mut lu), 1);
    lu.ok(A, RESERVE, WE, KEY_A, 0);
    lu.ok(A, RELEASE, WE, KEY_A, 0);
    assert_eq!(gen(&mut lu), 1);
    lu.ok(A, REGISTER, 0, KEY_A, 5);
    assert_eq!(gen(&mut lu), 2);
    lu.ok(A, CLEAR, 0, 5, 0);
    assert_eq!(gen(&mut lu), 3);
}

#[rstest]
#[case::preempt(PREEMPT)]
#[case::preempt_and_abort(PREEMPT_AND_ABORT)]
fn preempting_the_holder_takes_its_reservation_and_registration(#[case] sa: u8) {
    let mut lu = Lu::reserved(EA);
    assert_eq!(lu.write(B), RC);
    lu.ok(B, sa, WE_RO, KEY_B, KEY_A);
    // A was told, once; its registration is gone, so under Write Exclusive - Registrants
    // Only it may read but not write.
    assert_eq!(lu.read(A), UA_REGISTRATIONS_PREEMPTED);
    assert_eq!(lu.read(A), GOOD);
    assert_eq!(lu.write(A), RC);
    assert_eq!(lu.write(B), GOOD);
    let mut want = vec![0, 0, 0, 3, 0, 0, 0, 16];
    want.extend_from_slice(&KEY_B.to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0, 0, WE_RO, 0, 0]);
    assert_eq!(lu.prin(C, 1), want);
    let mut keys = vec![0, 0, 0, 3, 0, 0, 0, 8];
    keys.extend_from_slice(&KEY_B.to_be_bytes());
    assert_eq!(lu.prin(C, 0), keys);
}

/// SPC-4 5.13.11.2.4: PREEMPT AND ABORT aborts the task sets of the preempted
/// registrants' nexuses on the logical unit (the transport does it, told through
/// `take_task_aborts`); PREEMPT aborts nothing, and nor do commands that change no
/// registration.
#[rstest]
#[case::preempt(PREEMPT, &[])]
#[case::preempt_and_abort(PREEMPT_AND_ABORT, &[B])]
fn preempt_and_abort_asks_the_transport_to_abort_the_preempted_tasks(
    #[case] sa: u8,
    #[case] aborted: &[u64],
) {
    let mut lu = Lu::reserved(WE);
    assert!(lu.rig.target.take_task_aborts().is_empty());
    // A (the holder) preempts B's registration; C was never registered.
    lu.ok(A, sa, WE, KEY_A, KEY_B);
    let got: Vec<(u64, u16)> = lu
        .rig
        .target
        .take_task_aborts()
        .into_iter()
        .map(|a| (a.nexus, a.lun))
        .collect();
    let want: Vec<(u64, u16)> = aborted.iter().map(|&n| (n, 0)).collect();
    assert_eq!(got, want);
    assert!(lu.rig.target.take_task_aborts().is_empty(), "taken once");
    // B learns of it by unit attention, as for PREEMPT.
    assert_eq!(lu.read(B), UA_REGISTRATIONS_PREEMPTED);
}

#[test]
fn preempt_without_reservation_removes_registrations() {
    let mut lu = Lu::new();
    lu.ok(A, REGISTER, 0, 0, KEY_A);
    lu.ok(B, REGISTER, 0, 0, KEY_B);
    lu.ok(A, PREEMPT, WE, KEY_A, KEY_B);
    assert_eq!(lu.read(B), UA_REGISTRATIONS_PREEMPTED);
    assert_eq!(
        lu.prin(C, 1),
        [0, 0, 0, 3, 0, 0, 0, 0],
        "no reservation made"
    );
}

#[test]
fn preempt_all_registrants_with_key_zero_removes_everyone_else() {
    let mut lu = Lu::reserved(WE_AR);
    lu.ok(B, PREEMPT, EA, KEY_B, 0);
    assert_eq!(lu.read(A), UA_REGISTRATIONS_PREEMPTED);
    assert_eq!(lu.read(A), RC);
    assert_eq!(lu.read(B), GOOD);
}

#[test]
fn clear_removes_everything_and_tells_the_others() {
    let mut lu = Lu::reserved(EA);
    lu.ok(B, CLEAR, 0, KEY_B, 0);
    assert_eq!(lu.read(A), UA_RESERVATIONS_PREEMPTED);
    assert_eq!(lu.read(B), GOOD, "the clearing nexus is not told");
    assert_eq!(lu.read(C), GOOD, "unregistered nexuses are not told");
    assert_eq!(lu.write(C), GOOD);
    assert_eq!(lu.prin(C, 0), [0, 0, 0, 3, 0, 0, 0, 0]);
}

#[rstest]
#[case::registrants_only(WE_RO, true)]
#[case::all_registrants(EA_AR, true)]
#[case::write_exclusive(WE, false)]
fn releasing_tells_other_registrants_for_registrant_types(#[case] kind: u8, #[case] told: bool) {
    let mut lu = Lu::reserved(kind);
    lu.ok(A, RELEASE, kind, KEY_A, 0);
    let want = if told { UA_RESERVATIONS_RELEASED } else { GOOD };
    assert_eq!(lu.read(B), want);
    assert_eq!(lu.read(A), GOOD);
}

#[test]
fn unregistering_the_holder_releases_its_reservation() {
    let mut lu = Lu::reserved(WE_RO);
    lu.ok(A, REGISTER, 0, KEY_A, 0);
    assert_eq!(lu.read(B), UA_RESERVATIONS_RELEASED);
    assert_eq!(lu.write(C), GOOD);
    // An All Registrants reservation stays while a registrant is left.
    let mut lu = Lu::reserved(WE_AR);
    lu.ok(A, REGISTER, 0, KEY_A, 0);
    assert_eq!(lu.write(C), RC);
    lu.ok(B, REGISTER, 0, KEY_B, 0);
    assert_eq!(lu.write(C), GOOD);
}

/// REGISTER AND MOVE parameter list (SPC-4 table 172) with an iSCSI TransportID of format
/// 01b for `to`.
fn move_params(key: u64, sa_key: u64, flags: u8, to: &InitiatorPort) -> Vec<u8> {
    let mut name = format!(
        "{},i,0x{}",
        to.name,
        to.isid
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
    .into_bytes();
    name.push(0);
    name.resize(name.len().next_multiple_of(4), 0);
    let mut t = vec![0x45, 0];
    t.extend_from_slice(&(name.len() as u16).to_be_bytes());
    t.extend_from_slice(&name);
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[17] = flags;
    p[18..20].copy_from_slice(&1u16.to_be_bytes());
    p[20..24].copy_from_slice(&(t.len() as u32).to_be_bytes());
    p.extend_from_slice(&t);
    p
}

#[test]
fn register_and_move_hands_the_reservation_over() {
    let mut lu = Lu::reserved(EA);
    let p = move_params(KEY_A, 0xC, 0x02, &port(C)); // UNREG
    let r = lu
        .rig
        .run_on(A, 0, &prout_cdb(REGISTER_AND_MOVE, EA, p.len() as u32), &p);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(lu.write(C), GOOD);
    assert_eq!(lu.write(A), RC);
    let mut keys = vec![0, 0, 0, 3, 0, 0, 0, 16];
    keys.extend_from_slice(&KEY_B.to_be_bytes());
    keys.extend_from_slice(&0xCu64.to_be_bytes());
    assert_eq!(lu.prin(B, 0), keys);
    // To itself, or with a bad TransportID: invalid field in the parameter list.
    let p = move_params(0xC, 0xD, 0, &port(C));
    let r = lu
        .rig
        .run_on(C, 0, &prout_cdb(REGISTER_AND_MOVE, EA, p.len() as u32), &p);
    assert_eq!(outcome(&r), INVALID_PARAM);
    let mut p = move_params(0xC, 0xD, 0, &port(A));
    p[24] = 0x05; // format 00b
    let r = lu
        .rig
        .run_on(C, 0, &prout_cdb(REGISTER_AND_MOVE, EA, p.len() as u32), &p);
    assert_eq!(outcome(&r), INVALID_PARAM);
}

#[test]
fn spec_i_pt_registers_the_named_ports_too() {
    let mut lu = Lu::new();
    let t = &move_params(0, 0, 0, &port(B))[24..];
    let mut p = params(0, KEY_A, 0x08);
    p.extend_from_slice(&(t.len() as u32).to_be_bytes());
    p.extend_from_slice(t);
    let r = lu
        .rig
        .run_on(A, 0, &prout_cdb(REGISTER, 0, p.len() as u32), &p);
    assert_eq!(outcome(&r), GOOD);
    let mut keys = vec![0, 0, 0, 1, 0, 0, 0, 16];
    keys.extend_from_slice(&KEY_A.to_be_bytes());
    keys.extend_from_slice(&KEY_A.to_be_bytes());
    assert_eq!(lu.prin(C, 0), keys);
    // B may now reserve with the key A gave it.
    lu.ok(B, RESERVE, WE, KEY_A, 0);
    // SPEC_I_PT with REGISTER AND IGNORE EXISTING KEY is refused.
    let mut p = params(0, 7, 0x08);
    p.extend_from_slice(&0u32.to_be_bytes());
    let r = lu
        .rig
        .run_on(C, 0, &prout_cdb(REGISTER_AND_IGNORE, 0, 28), &p);
    assert_eq!(outcome(&r), INVALID_PARAM);
}

#[test]
fn registrations_belong_to_the_initiator_port_not_the_session() {
    let mut lu = Lu::reserved(WE);
    lu.rig.target.close_nexus(A);
    // A logs in again on a new nexus, from the same initiator port.
    lu.rig.target.open_nexus(9, port(A));
    lu.rig.run_on(9, 0, &TUR, &[]);
    assert_eq!(lu.write(9), GOOD);
    assert_eq!(lu.write(B), RC);
}

// RESERVE(6) / RELEASE(6) (SPC-2 tables 82, 77) and the 10-byte forms.
const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const RELEASE6: [u8; 6] = [0x17, 0, 0, 0, 0, 0];
const RESERVE10: [u8; 10] = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const RELEASE10: [u8; 10] = [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[rstest]
#[case::six(&RESERVE6, &RELEASE6)]
#[case::ten(&RESERVE10, &RELEASE10)]
fn reserve_release(#[case] reserve: &[u8], #[case] release: &[u8]) {
    let mut lu = Lu::new();
    let run = |lu: &mut Lu, n: u64, cdb: &[u8]| outcome(&lu.rig.run_on(n, 0, cdb, &[]));
    assert_eq!(run(&mut lu, A, reserve), GOOD);
    assert_eq!(
        run(&mut lu, A, reserve),
        GOOD,
        "the holder may reserve again"
    );
    assert_eq!(run(&mut lu, B, reserve), RC);
    assert_eq!(
        run(&mut lu, B, release),
        GOOD,
        "a release by another is a no-op"
    );
    assert_eq!(lu.read(B), RC);
    assert_eq!(run(&mut lu, B, &TUR), RC);
    assert_eq!(run(&mut lu, B, &inquiry(false, 0, 96)), GOOD);
    assert_eq!(run(&mut lu, B, &prin_cdb(0, 64)), RC, "PR IN conflicts too");
    assert_eq!(
        lu.prout(B, REGISTER, 0, 0, KEY_B).status,
        Status::ReservationConflict
    );
    assert_eq!(lu.read(A), GOOD);
    assert_eq!(run(&mut lu, A, release), GOOD);
    assert_eq!(lu.read(B), GOOD);
    // Third-party reservation is not supported.
    let mut third = reserve.to_vec();
    third[1] = 0x10;
    assert_eq!(run(&mut lu, A, &third), INVALID_FIELD);
}

#[rstest]
#[case::nexus_loss(0)]
#[case::lun_reset(1)]
#[case::target_reset(2)]
fn reserve6_ends_with_its_nexus_and_with_resets(#[case] how: u8) {
    let mut lu = Lu::new();
    assert_eq!(outcome(&lu.rig.run_on(A, 0, &RESERVE6, &[])), GOOD);
    assert_eq!(lu.write(B), RC);
    match how {
        0 => lu.rig.target.close_nexus(A),
        1 => lu.rig.target.logical_unit_reset(0),
        _ => lu.rig.target.target_reset(),
    }
    lu.rig.run_on(B, 0, &TUR, &[]); // the reset's unit attention, if any
    assert_eq!(lu.write(B), GOOD);
}

#[test]
fn reserve6_conflicts_with_persistent_reservations() {
    let mut lu = Lu::new();
    lu.ok(B, REGISTER, 0, 0, KEY_B);
    assert_eq!(outcome(&lu.rig.run_on(A, 0, &RESERVE6, &[])), RC);
    assert_eq!(outcome(&lu.rig.run_on(B, 0, &RESERVE6, &[])), RC);
    assert_eq!(outcome(&lu.rig.run_on(A, 0, &RELEASE6, &[])), RC);
    // Persistent reservations survive a LUN reset (SPC-4 5.13.1).
    lu.ok(B, RESERVE, EA, KEY_B, 0);
    lu.rig.target.logical_unit_reset(0);
    lu.rig.run_on(A, 0, &TUR, &[]);
    assert_eq!(lu.read(A), RC);
}

// ---- APTPL: the state kept through power loss (SPC-4 5.13.4) ----

/// REGISTER with APTPL (parameter list byte 20 bit 0).
const APTPL: u8 = 0x01;

#[test]
fn aptpl_saves_every_change_and_a_restart_restores_it() {
    let mut lu = Lu::new();
    assert_eq!(lu.rig.mem.saved_reservations, None, "nothing to save yet");
    let p = params(0, KEY_A, APTPL);
    let r = lu.rig.run_on(A, 0, &prout_cdb(REGISTER, 0, 24), &p);
    assert_eq!(outcome(&r), GOOD);
    assert!(lu.rig.mem.saved_reservations.is_some(), "saved before GOOD");
    // PTPL_A is now set in REPORT CAPABILITIES.
    assert_eq!(lu.prin(A, 2)[3] & 0x01, 0x01);
    // The APTPL bit of the latest REGISTER decides (SPC-4 5.13.4): B asks for it too.
    let p = params(0, KEY_B, APTPL);
    let r = lu.rig.run_on(B, 0, &prout_cdb(REGISTER, 0, 24), &p);
    assert_eq!(outcome(&r), GOOD);
    lu.ok(A, RESERVE, WE_RO, KEY_A, 0);
    lu.ok(A, PREEMPT, WE_RO, KEY_A, KEY_B);
    let saved = lu.rig.mem.saved_reservations.clone().unwrap();

    // A new target (a restart): new nexuses, the same initiator ports.
    let mut again = Lu::new();
    again.rig.target.restore_reservations(0, &saved).unwrap();
    let mut want = vec![0, 0, 0, 3, 0, 0, 0, 16];
    want.extend_from_slice(&KEY_A.to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0, 0, WE_RO, 0, 0]);
    assert_eq!(again.prin(C, 1), want, "generation, key and type restored");
    assert_eq!(again.write(B), RC, "B stays preempted");
    assert_eq!(again.write(A), GOOD, "A keeps its reservation");
    assert!(again
        .rig
        .target
        .restore_reservations(0, b"garbage")
        .is_err());
    assert!(again.rig.target.restore_reservations(7, &saved).is_err());
}

#[test]
fn clearing_aptpl_saves_an_empty_state() {
    let mut lu = Lu::new();
    let p = params(0, KEY_A, APTPL);
    lu.rig.run_on(A, 0, &prout_cdb(REGISTER, 0, 24), &p);
    lu.ok(A, RESERVE, EA, KEY_A, 0);
    // Registering again without APTPL turns it off: what is saved restores nothing.
    lu.ok(A, REGISTER, 0, KEY_A, KEY_A);
    let saved = lu.rig.mem.saved_reservations.clone().unwrap();
    let mut again = Lu::new();
    again.rig.target.restore_reservations(0, &saved).unwrap();
    assert_eq!(again.prin(C, 0), [0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(again.write(C), GOOD);
}

#[test]
fn without_aptpl_nothing_is_saved() {
    let mut lu = Lu::reserved(EA);
    lu.ok(B, PREEMPT, EA, KEY_B, KEY_A);
    assert_eq!(lu.rig.mem.saved_reservations, None);
}

#[test]
fn registrations_are_bounded() {
    let mut lu = Lu::new();
    // 256 initiator ports register (SPEC_I_PT-free, one nexus each); the 257th is refused
    // with ILLEGAL REQUEST, INSUFFICIENT REGISTRATION RESOURCES (SPC-4 annex D: 55h/04h).
    for n in 100..356u64 {
        lu.rig.target.open_nexus(n, port(n));
        lu.rig.run_on(n, 0, &TUR, &[]);
        lu.ok(n, REGISTER, 0, 0, n);
    }
    lu.rig.target.open_nexus(999, port(999));
    lu.rig.run_on(999, 0, &TUR, &[]);
    let r = lu.prout(999, REGISTER, 0, 0, 7);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x55, 0x04));
    // An existing registrant may still change its key.
    lu.ok(100, REGISTER, 0, 100, 5);
}

// ---- Several gateways: the state kept on the volume (`ScsiTarget::share_reservations`) ----

/// Two gateways (two targets) exporting one LU, whose shared reservations live on one
/// volume: each gateway's store reads and writes the same saved state.
struct Gateways {
    gw: [Lu; 2],
    volume: Option<Vec<u8>>,
}

impl Gateways {
    fn new() -> Self {
        let gw = [Lu::new(), Lu::new()];
        for (i, lu) in gw.iter().enumerate() {
            lu.rig
                .target
                .share_reservations(0, ["gateway-0", "gateway-1"][i]);
            assert!(lu.rig.target.reservations_shared(0));
            // Loaded (nothing yet) and listed among the gateways: writes are admitted.
            lu.rig.target.refresh_reservations(0, None).unwrap();
            lu.rig
                .target
                .renew_reservations_lease(0, std::time::Instant::now());
        }
        Gateways { gw, volume: None }
    }

    /// Runs `f` on gateway `g`, its store reading and writing the volume.
    fn on<R>(&mut self, g: usize, f: impl FnOnce(&mut Lu) -> R) -> R {
        let lu = &mut self.gw[g];
        lu.rig.mem.saved_reservations = self.volume.clone();
        let r = f(lu);
        self.volume = lu.rig.mem.saved_reservations.as_deref().map(on_the_volume);
        r
    }
}

/// A shared state as a gateway reads it back after writing it: split into `<lun>.pr` and
/// `<lun>.pr-lu` (`scsi::split_reservation_state`) and joined again.
fn on_the_volume(state: &[u8]) -> Vec<u8> {
    let (pr, lu) = scsi::split_reservation_state(state);
    let lu = (!lu.is_empty()).then_some(&lu[..]);
    scsi::join_reservation_state(Some(&pr), lu)
        .unwrap()
        .expect("a state")
}

/// READ KEYS parameter data (SPC-4 table 165): PRGENERATION, ADDITIONAL LENGTH, keys.
fn keys_data(generation: u32, keys: &[u64]) -> Vec<u8> {
    let mut d = generation.to_be_bytes().to_vec();
    d.extend_from_slice(&(8 * keys.len() as u32).to_be_bytes());
    for k in keys {
        d.extend_from_slice(&k.to_be_bytes());
    }
    d
}

#[test]
fn shared_reservation_commands_run_on_the_state_read_from_the_volume() {
    let mut g = Gateways::new();
    // A PERSISTENT RESERVE command is handed out to run beside the core.
    let cmd = scsi::Command {
        nexus: A,
        lun: 0,
        cdb: bytes::Bytes::copy_from_slice(&prin_cdb(0, 1024)),
        data_out: bytes::Bytes::new().into(),
        expected_len: 0,
    };
    match g.gw[0].rig.target.start(cmd) {
        scsi::Start::SharedReservations(shared) => assert_eq!(shared.lun(), 0),
        other => panic!("expected SharedReservations, got {other:?}"),
    }

    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(1, |lu| lu.ok(B, REGISTER, 0, 0, KEY_B));
    // Each gateway's READ KEYS sees both registrations, made on different gateways.
    assert_eq!(g.on(0, |lu| lu.prin(C, 0)), keys_data(2, &[KEY_A, KEY_B]));
    assert_eq!(g.on(1, |lu| lu.prin(C, 0)), keys_data(2, &[KEY_A, KEY_B]));
    // Kept on the volume although nobody asked for APTPL.
    assert!(g.volume.is_some());

    // A reserves Exclusive Access on gateway 0. Gateway 1's data path still has the
    // state of its last load (the refresh bound)...
    g.on(0, |lu| lu.ok(A, RESERVE, EA, KEY_A, 0));
    assert_eq!(g.gw[1].write(C), GOOD);
    // ...until the state is loaded again.
    let volume = g.volume.clone();
    g.gw[1]
        .rig
        .target
        .refresh_reservations(0, volume.as_deref())
        .unwrap();
    assert_eq!(g.gw[1].write(C), RC);
    assert_eq!(g.gw[1].write(B), RC, "Exclusive Access: registrants too");
    assert_eq!(
        g.gw[1].read(A),
        GOOD,
        "the holder, through the other gateway"
    );
    // A reservation command on gateway 1 runs on the volume's state: B's conflicts.
    assert_eq!(
        outcome(&g.on(1, |lu| lu.prout(B, RESERVE, EA, KEY_B, 0))),
        RC
    );

    // An empty volume means nothing is registered.
    g.gw[1].rig.target.refresh_reservations(0, None).unwrap();
    assert_eq!(g.gw[1].write(C), GOOD);
    assert!(g.gw[1]
        .rig
        .target
        .refresh_reservations(0, Some(b"garbage"))
        .is_err());
    assert!(g.gw[1].rig.target.refresh_reservations(9, None).is_err());
}

/// BUSY status (SAM-5 table 33), no sense data.
const BUSY: (Status, u8, u8, u8) = (Status::Busy, 0, 0, 0);

impl Gateways {
    /// Gateway `g` loads the state the volume holds (its periodic refresh).
    fn refresh(&mut self, g: usize) {
        let volume = self.volume.clone();
        self.gw[g]
            .rig
            .target
            .refresh_reservations(0, volume.as_deref())
            .unwrap();
    }
}

#[test]
fn a_gateway_whose_lease_ran_out_admits_no_write_until_it_loads_the_state_again() {
    let mut g = Gateways::new();
    assert_eq!(g.gw[1].write(C), GOOD);
    // Taken after the gateways' set-up, which started their leases: on a loaded machine
    // that set-up can take longer than the millisecond past the lease used below.
    let t0 = std::time::Instant::now();
    // Told a time past the lease: its copy of the shared state may be stale.
    let later = t0 + scsi::RESERVATIONS_LEASE + std::time::Duration::from_millis(1);
    g.gw[1].rig.target.expire_reservation_leases(later);
    assert!(g.gw[1].rig.target.reservations_fenced(0));
    assert_eq!(g.gw[1].write(C), BUSY, "nothing changes the medium");
    assert_eq!(g.gw[1].read(C), GOOD, "reads go on");
    assert_eq!(
        g.gw[0].write(C),
        GOOD,
        "the other gateway's lease is its own"
    );
    // Loaded again: the lease runs from when that read began.
    g.refresh(1);
    g.gw[1].rig.target.renew_reservations_lease(0, later);
    assert_eq!(g.gw[1].write(C), GOOD);
    // A shared LU never loaded has no lease at all.
    let fresh = Lu::new();
    fresh.rig.target.share_reservations(0, "gateway-2");
    let mut fresh = fresh;
    assert_eq!(fresh.write(C), BUSY);
}

#[test]
fn a_write_admitted_before_a_change_holds_back_its_acknowledgement() {
    let mut g = Gateways::new();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(1, |lu| lu.ok(B, REGISTER, 0, 0, KEY_B));
    g.on(0, |lu| lu.ok(A, RESERVE, WE_RO, KEY_A, 0));
    g.refresh(1);
    let before = g.gw[1].rig.target.reservations_version(0).unwrap();
    assert_eq!(g.gw[1].rig.target.reservations_drained(0), Some(before));
    // B's write is at gateway 1's store when A preempts B through gateway 0.
    let cmd = scsi::Command {
        nexus: B,
        lun: 0,
        cdb: bytes::Bytes::copy_from_slice(&cdb10(0x2A, 0, 0, 1)),
        data_out: bytes::Bytes::from(vec![0x5A; 512]).into(),
        expected_len: 512,
    };
    let scsi::Start::Io { pending, .. } = g.gw[1].rig.target.start(cmd) else {
        panic!("the write goes to the store");
    };
    g.on(0, |lu| lu.ok(A, PREEMPT, WE_RO, KEY_A, KEY_B));
    g.refresh(1);
    let after = g.gw[1].rig.target.reservations_version(0).unwrap();
    assert!(after > before);
    assert_eq!(
        g.gw[1].rig.target.reservations_drained(0),
        Some(before),
        "the old write is still in flight"
    );
    drop(pending.finish(Ok(store_api::IoReply::Done)));
    assert_eq!(g.gw[1].rig.target.reservations_drained(0), Some(after));
    // B's next write on gateway 1 is checked against the new state.
    assert_eq!(g.gw[1].write(B), UA_REGISTRATIONS_PREEMPTED);
    assert_eq!(g.gw[1].write(B), RC);
}

#[test]
fn unit_attentions_of_a_change_reach_the_nexuses_of_the_other_gateway() {
    let mut g = Gateways::new();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(1, |lu| lu.ok(B, REGISTER, 0, 0, KEY_B));
    g.on(1, |lu| lu.ok(C, REGISTER, 0, 0, KEY_B + 1));
    g.on(0, |lu| lu.ok(A, RESERVE, WE_RO, KEY_A, 0));
    // RELEASE of a Registrants Only reservation (SPC-4 5.13.10.2): the other registrants
    // get RESERVATIONS RELEASED (2Ah/04h) wherever they are logged in.
    g.on(0, |lu| lu.ok(A, RELEASE, WE_RO, KEY_A, 0));
    g.refresh(1);
    g.refresh(1);
    let tur = |lu: &mut Lu, n: u64| outcome(&lu.rig.run_on(n, 0, &TUR, &[]));
    assert_eq!(tur(&mut g.gw[1], B), UA_RESERVATIONS_RELEASED);
    assert_eq!(tur(&mut g.gw[1], B), GOOD, "raised once, loaded twice");
    assert_eq!(tur(&mut g.gw[1], C), UA_RESERVATIONS_RELEASED);
    assert_eq!(
        tur(&mut g.gw[1], A),
        GOOD,
        "the port that released is not told"
    );

    // PREEMPT AND ABORT (5.13.11.2.4): the preempted registrant gets REGISTRATIONS
    // PREEMPTED (2Ah/05h) on the other gateway, and its tasks there are aborted.
    g.on(0, |lu| lu.ok(A, RESERVE, WE_RO, KEY_A, 0));
    g.on(0, |lu| lu.ok(A, PREEMPT_AND_ABORT, WE_RO, KEY_A, KEY_B));
    g.refresh(1);
    assert_eq!(
        g.gw[1].rig.target.take_task_aborts(),
        [scsi::TaskAbort { nexus: B, lun: 0 }]
    );
    assert_eq!(tur(&mut g.gw[1], B), UA_REGISTRATIONS_PREEMPTED);
    assert_eq!(tur(&mut g.gw[1], C), GOOD);

    // CLEAR (5.13.11.1.3, table 61): every other registrant gets RESERVATIONS PREEMPTED
    // (2Ah/03h).
    g.on(0, |lu| lu.ok(A, CLEAR, 0, KEY_A, 0));
    g.refresh(1);
    assert_eq!(tur(&mut g.gw[1], C), UA_RESERVATIONS_PREEMPTED);
    assert_eq!(tur(&mut g.gw[1], B), GOOD, "no longer registered");
    assert!(g.gw[1].rig.target.take_task_aborts().is_empty());
}

#[test]
fn a_shared_change_not_written_back_is_undone() {
    let mut g = Gateways::new();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    let before = g.volume.clone();
    let p = params(0, KEY_B, 0);
    let cmd = scsi::Command {
        nexus: B,
        lun: 0,
        cdb: bytes::Bytes::copy_from_slice(&prout_cdb(REGISTER, 0, 24)),
        data_out: bytes::Bytes::from(p).into(),
        expected_len: 24,
    };
    let target = &g.gw[0].rig.target;
    let scsi::Start::SharedReservations(shared) = target.start(cmd) else {
        panic!("not handed out");
    };
    let (mut run, pending) = shared.into_parts();
    let changed = run.run(target, before.as_deref()).unwrap();
    assert!(
        changed.is_some(),
        "a registration is a change to write back"
    );
    // The write failed: the LU goes back to what the volume holds, and the command
    // fails with the store's error (ENOSPC: DATA PROTECT, SPACE ALLOCATION FAILED).
    run.undo(target);
    let err = store_api::StoreError::new(store_api::Op::Write, store_api::ErrorKind::NoSpace);
    match pending.finish(Err(err)) {
        scsi::Start::Done(r) => assert_eq!(outcome(&r), (Status::CheckCondition, 0x07, 0x27, 0x07)),
        other => panic!("{other:?}"),
    }
    assert_eq!(g.on(0, |lu| lu.prin(C, 0)), keys_data(1, &[KEY_A]));

    // A saved state that is not ours runs nothing.
    let cmd = scsi::Command {
        nexus: B,
        lun: 0,
        cdb: bytes::Bytes::copy_from_slice(&prin_cdb(0, 1024)),
        data_out: bytes::Bytes::new().into(),
        expected_len: 0,
    };
    let target = &g.gw[0].rig.target;
    let scsi::Start::SharedReservations(shared) = target.start(cmd) else {
        panic!("not handed out");
    };
    let (mut run, _pending) = shared.into_parts();
    assert!(run.run(target, Some(b"not a saved state")).is_err());
}

#[test]
fn shared_reservations_are_due_for_loading_once_per_refresh_interval() {
    use scsi::RESERVATIONS_REFRESH as EVERY;
    let g = Gateways::new();
    let t = &g.gw[0].rig.target;
    // The core is told the time; nothing here waits.
    let now = std::time::Instant::now();
    assert_eq!(
        t.next_reservations_refresh(now),
        Some(now),
        "never loaded: due at once"
    );
    assert_eq!(t.reservations_due(now), [0]);
    assert_eq!(t.reservations_due(now), Vec::<u16>::new());
    assert_eq!(t.reservations_due(now + EVERY / 2), Vec::<u16>::new());
    assert_eq!(t.next_reservations_refresh(now), Some(now + EVERY));
    assert_eq!(t.reservations_due(now + EVERY), [0]);
    assert_eq!(t.next_reservations_refresh(now), Some(now + 2 * EVERY));
    // A logical unit whose reservations are this gateway's own is never due.
    let plain = Lu::new();
    assert_eq!(plain.rig.target.reservations_due(now), Vec::<u16>::new());
    assert_eq!(plain.rig.target.next_reservations_refresh(now), None);
}

// ---- Target ports: a registration is of one I_T nexus unless ALL_TG_PT (SPC-4 5.13.7) ----

/// REGISTER with ALL_TG_PT (parameter list byte 20 bit 2).
const ALL_TG_PT: u8 = 0x04;

impl Gateways {
    /// Two gateways that are two target ports of the LU: ALUA target port groups 1 and 2,
    /// one port each, whose relative target port identifiers are the groups' ids.
    fn two_ports() -> Self {
        let g = Gateways::new();
        let group = |id| PortGroup {
            id,
            state: AccessState::ActiveOptimized,
        };
        for (own, other) in [(1, 2), (2, 1)] {
            let alua = Alua::new(group(own), vec![group(other)]).unwrap();
            g.gw[usize::from(own) - 1].rig.target.set_alua(alua);
        }
        g
    }
}

impl Lu {
    /// PERSISTENT RESERVE OUT `sa` from `n` with the flags byte 20 of the parameter list.
    fn prout_flags(&mut self, n: u64, sa: u8, key: u64, sa_key: u64, flags: u8) -> scsi::Response {
        let p = params(key, sa_key, flags);
        self.rig.run_on(n, 0, &prout_cdb(sa, 0, 24), &p)
    }
}

/// One READ FULL STATUS descriptor (SPC-4 6.15.5): RESERVATION KEY, reserved, flags
/// (ALL_TG_PT 02h, R_HOLDER 01h), SCOPE|TYPE, reserved, RELATIVE TARGET PORT IDENTIFIER,
/// ADDITIONAL DESCRIPTOR LENGTH and the initiator port's iSCSI TransportID (SPC-4
/// 7.6.4.6, FORMAT CODE 01b: 45h, reserved, length, "name,i,0xISID" NUL-padded to 4).
fn full_status(key: u64, flags: u8, kind: u8, relative_port: u16, n: u64) -> Vec<u8> {
    let name = format!("iqn.2026-01.test:host{n},i,0x80000000000{n}\0");
    assert_eq!(name.len(), 40, "a multiple of 4 already");
    let mut d = key.to_be_bytes().to_vec();
    d.extend_from_slice(&[0, 0, 0, 0, flags, kind, 0, 0, 0, 0]);
    d.extend_from_slice(&relative_port.to_be_bytes());
    d.extend_from_slice(&44u32.to_be_bytes());
    d.extend_from_slice(&[0x45, 0, 0, 40]);
    d.extend_from_slice(name.as_bytes());
    d
}

/// READ FULL STATUS parameter data: PRGENERATION, ADDITIONAL LENGTH, the descriptors.
fn full_status_data(generation: u32, descriptors: &[Vec<u8>]) -> Vec<u8> {
    let body = descriptors.concat();
    let mut d = generation.to_be_bytes().to_vec();
    d.extend_from_slice(&(body.len() as u32).to_be_bytes());
    d.extend_from_slice(&body);
    d
}

#[test]
fn read_full_status_reports_each_registrations_target_port() {
    let mut g = Gateways::two_ports();
    // A registers through target port 1 (ALL_TG_PT 0), B through port 2 with ALL_TG_PT.
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    let r = g.on(1, |lu| lu.prout_flags(B, REGISTER, 0, KEY_B, ALL_TG_PT));
    assert_eq!(outcome(&r), GOOD);
    g.on(0, |lu| lu.ok(A, RESERVE, WE, KEY_A, 0));
    let want = full_status_data(
        2,
        &[
            full_status(KEY_A, 0x01, WE, 1, A), // R_HOLDER, Write Exclusive, port 1
            full_status(KEY_B, 0x02, 0, 0, B),  // ALL_TG_PT: the port is not defined
        ],
    );
    // Through either gateway, the same.
    let d = g.on(1, |lu| lu.prin(C, 3));
    assert_eq!(d, want);
    assert_eq!(g.on(0, |lu| lu.prin(A, 3)), want);
    insta::assert_snapshot!("read_full_status_two_ports", hex(&d));
}

#[test]
fn a_registration_through_one_target_port_is_not_one_through_the_other() {
    let mut g = Gateways::two_ports();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(0, |lu| lu.ok(A, RESERVE, WE_RO, KEY_A, 0));
    g.refresh(1);
    // Through port 1 A holds the reservation. Through port 2 the same initiator port is
    // another I_T nexus, not registered: Write Exclusive - Registrants Only refuses its
    // writes and lets it read (SPC-4 table 62).
    assert_eq!(g.gw[0].write(A), GOOD);
    assert_eq!(g.gw[1].write(A), RC);
    assert_eq!(g.gw[1].read(A), GOOD);
    // Its key is not registered there: RESERVE with KEY_A conflicts, and REGISTER with
    // RESERVATION KEY 0 makes a second registration.
    let r = g.on(1, |lu| lu.prout(A, RESERVE, WE_RO, KEY_A, 0));
    assert_eq!(outcome(&r), RC);
    g.on(1, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A + 1));
    assert_eq!(
        g.on(1, |lu| lu.prin(C, 0)),
        keys_data(2, &[KEY_A, KEY_A + 1])
    );
    assert_eq!(
        g.gw[1].write(A),
        GOOD,
        "a registrant, under Registrants Only"
    );
    // Unregistering through port 2 leaves port 1's registration and reservation as they
    // were (READ RESERVATION: the holder's key and type).
    g.on(1, |lu| lu.ok(A, REGISTER, 0, KEY_A + 1, 0));
    let mut want = vec![0, 0, 0, 3, 0, 0, 0, 16];
    want.extend_from_slice(&KEY_A.to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0, 0, WE_RO, 0, 0]);
    assert_eq!(g.on(1, |lu| lu.prin(C, 1)), want);
    assert_eq!(g.gw[1].write(A), RC);
    assert_eq!(g.gw[0].write(A), GOOD);
}

#[test]
fn all_tg_pt_registers_the_initiator_port_through_every_target_port() {
    let mut g = Gateways::two_ports();
    let r = g.on(0, |lu| lu.prout_flags(A, REGISTER, 0, KEY_A, ALL_TG_PT));
    assert_eq!(outcome(&r), GOOD);
    g.on(0, |lu| lu.ok(A, RESERVE, EA, KEY_A, 0));
    g.refresh(1);
    assert_eq!(g.gw[1].write(A), GOOD, "the holder, through the other port");
    assert_eq!(g.gw[1].read(B), RC, "Exclusive Access");
    // One registration: a new key through port 2 is A's key through port 1 too.
    g.on(1, |lu| lu.ok(A, REGISTER, 0, KEY_A, KEY_B));
    assert_eq!(g.on(0, |lu| lu.prin(C, 0)), keys_data(2, &[KEY_B]));
    // C is registered through port 1. REGISTER with ALL_TG_PT through port 2 is as if it
    // came through every port: through port 1, where C's key is not 0, it conflicts.
    g.on(0, |lu| lu.ok(C, REGISTER, 0, 0, 0xC));
    let r = g.on(1, |lu| lu.prout_flags(C, REGISTER, 0, 0xD, ALL_TG_PT));
    assert_eq!(outcome(&r), RC);
    // REGISTER AND IGNORE EXISTING KEY with ALL_TG_PT replaces it: one registration.
    let r = g.on(1, |lu| {
        lu.prout_flags(C, REGISTER_AND_IGNORE, 0, 0xD, ALL_TG_PT)
    });
    assert_eq!(outcome(&r), GOOD);
    let want = full_status_data(
        4,
        &[
            full_status(KEY_B, 0x03, EA, 0, A), // ALL_TG_PT, R_HOLDER, Exclusive Access
            full_status(0xD, 0x02, 0, 0, C),
        ],
    );
    assert_eq!(g.on(0, |lu| lu.prin(B, 3)), want);
    // Unregistered through port 1, A is unregistered through every port, and its
    // reservation is gone.
    g.on(0, |lu| lu.ok(A, REGISTER, 0, KEY_B, 0));
    g.refresh(1);
    assert_eq!(g.gw[1].write(B), GOOD);
    assert_eq!(g.on(1, |lu| lu.prin(C, 0)), keys_data(5, &[0xD]));
}

/// SPC-4 6.16.3: REGISTER AND IGNORE EXISTING KEY (and REGISTER) with ALL_TG_PT from an
/// I_T nexus that is registered already is "as if the same registration request had been
/// received individually through each target port": it changes the registration through
/// its own port and registers the initiator port through every other one.
#[test]
fn all_tg_pt_from_a_registered_nexus_registers_it_through_every_target_port() {
    let mut g = Gateways::two_ports();
    // C is registered through port 1 (key 0xC, holding Write Exclusive there) and, as
    // another I_T nexus, through port 2 (key 0xE).
    g.on(0, |lu| lu.ok(C, REGISTER, 0, 0, 0xC));
    g.on(0, |lu| lu.ok(C, RESERVE, WE, 0xC, 0));
    g.on(1, |lu| lu.ok(C, REGISTER, 0, 0, 0xE));
    g.refresh(1);
    assert_eq!(g.gw[1].write(C), RC, "port 2's nexus does not hold it");
    // REGISTER AND IGNORE EXISTING KEY with ALL_TG_PT through port 1: key 0xD through
    // both ports, one registration of every port, still the holder.
    let r = g.on(0, |lu| {
        lu.prout_flags(C, REGISTER_AND_IGNORE, 0, 0xD, ALL_TG_PT)
    });
    assert_eq!(outcome(&r), GOOD);
    let want = full_status_data(
        3,
        &[full_status(0xD, 0x03, WE, 0, C)], // ALL_TG_PT, R_HOLDER, Write Exclusive
    );
    assert_eq!(g.on(1, |lu| lu.prin(B, 3)), want);
    g.refresh(1);
    assert_eq!(g.gw[1].write(C), GOOD, "the holder, through every port");
    // With SERVICE ACTION RESERVATION KEY 0 it unregisters every port: the reservation
    // goes with it, and nobody else was registered to be told.
    let r = g.on(1, |lu| {
        lu.prout_flags(C, REGISTER_AND_IGNORE, 0, 0, ALL_TG_PT)
    });
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(g.on(0, |lu| lu.prin(B, 0)), keys_data(4, &[]));
    g.refresh(0);
    assert_eq!(g.gw[0].write(B), GOOD);
}

#[test]
fn register_with_all_tg_pt_from_a_registered_nexus_checks_the_key_through_every_port() {
    let mut g = Gateways::two_ports();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    // Through port 2 A's initiator port is not registered, and the RESERVATION KEY is not
    // 0: as if received there, REGISTER conflicts; nothing changes.
    let r = g.on(0, |lu| lu.prout_flags(A, REGISTER, KEY_A, KEY_B, ALL_TG_PT));
    assert_eq!(outcome(&r), RC);
    assert_eq!(g.on(1, |lu| lu.prin(C, 0)), keys_data(1, &[KEY_A]));
    // Registered there under another key: a conflict too.
    g.on(1, |lu| lu.ok(A, REGISTER, 0, 0, KEY_B));
    let r = g.on(0, |lu| lu.prout_flags(A, REGISTER, KEY_A, 0xF, ALL_TG_PT));
    assert_eq!(outcome(&r), RC);
    // Under the same key through both ports, it replaces both with one registration.
    g.on(1, |lu| lu.ok(A, REGISTER, 0, KEY_B, KEY_A));
    assert_eq!(g.on(1, |lu| lu.prin(C, 0)), keys_data(3, &[KEY_A, KEY_A]));
    let r = g.on(0, |lu| lu.prout_flags(A, REGISTER, KEY_A, 0xF, ALL_TG_PT));
    assert_eq!(outcome(&r), GOOD);
    let want = full_status_data(4, &[full_status(0xF, 0x02, 0, 0, A)]); // ALL_TG_PT
    assert_eq!(g.on(1, |lu| lu.prin(C, 3)), want);
}

#[test]
fn a_preempted_registration_is_told_only_through_its_own_target_port() {
    let mut g = Gateways::two_ports();
    let tur = |lu: &mut Lu, n: u64| outcome(&lu.rig.run_on(n, 0, &TUR, &[]));
    // B registers through port 1; A through port 2 preempts it.
    g.on(0, |lu| lu.ok(B, REGISTER, 0, 0, KEY_B));
    g.on(1, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(1, |lu| lu.ok(A, PREEMPT_AND_ABORT, WE, KEY_A, KEY_B));
    g.refresh(0);
    g.refresh(1);
    // REGISTRATIONS PREEMPTED (2Ah/05h) and the task abort go to B's nexus through port
    // 1 only: B's nexus through port 2 was never registered.
    assert_eq!(
        g.gw[0].rig.target.take_task_aborts(),
        [scsi::TaskAbort { nexus: B, lun: 0 }]
    );
    assert!(g.gw[1].rig.target.take_task_aborts().is_empty());
    assert_eq!(tur(&mut g.gw[0], B), UA_REGISTRATIONS_PREEMPTED);
    assert_eq!(tur(&mut g.gw[1], B), GOOD);
}

#[test]
fn register_and_move_names_the_target_port_of_the_destination() {
    let mut g = Gateways::two_ports();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(0, |lu| lu.ok(A, RESERVE, EA, KEY_A, 0));
    let cdb = |p: &[u8]| prout_cdb(REGISTER_AND_MOVE, EA, p.len() as u32);
    // RELATIVE TARGET PORT IDENTIFIER (bytes 18..20) 7: no gateway has that port. INVALID
    // FIELD IN PARAMETER LIST, field pointer byte 18 (SKSV, C/D 0, no bit pointer).
    let mut p = move_params(KEY_A, 0xC, 0, &port(C));
    p[18..20].copy_from_slice(&7u16.to_be_bytes());
    let r = g.on(0, |lu| lu.rig.run_on(A, 0, &cdb(&p), &p));
    assert_eq!(outcome(&r), INVALID_PARAM);
    assert_eq!(&r.sense.as_deref().unwrap()[15..18], &[0x80, 0, 18]);
    // To C through port 2, the other gateway's.
    p[18..20].copy_from_slice(&2u16.to_be_bytes());
    let r = g.on(0, |lu| lu.rig.run_on(A, 0, &cdb(&p), &p));
    assert_eq!(outcome(&r), GOOD);
    g.refresh(1);
    assert_eq!(g.gw[1].write(C), GOOD, "C holds it through port 2");
    assert_eq!(g.gw[0].write(C), RC, "and not through port 1");
    assert_eq!(
        g.gw[0].write(A),
        RC,
        "A, still registered, no longer holds it"
    );
    let want = full_status_data(
        2,
        &[
            full_status(KEY_A, 0x00, 0, 1, A),
            full_status(0xC, 0x01, EA, 2, C),
        ],
    );
    assert_eq!(g.on(1, |lu| lu.prin(B, 3)), want);
}

#[test]
fn the_saved_state_keeps_each_registrations_target_port() {
    let mut g = Gateways::two_ports();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    let r = g.on(1, |lu| lu.prout_flags(B, REGISTER, 0, KEY_B, ALL_TG_PT));
    assert_eq!(outcome(&r), GOOD);
    g.on(0, |lu| lu.ok(A, RESERVE, WE_RO, KEY_A, 0));
    g.on(1, |lu| lu.ok(B, PREEMPT, WE_RO, KEY_B, KEY_A));
    let saved = String::from_utf8(g.volume.clone().unwrap()).unwrap();
    insta::assert_snapshot!("saved_state_with_target_ports", saved);
    // A gateway started now (a third port) reads it back as it was.
    let mut fresh = Lu::new();
    let alua = Alua::new(
        PortGroup {
            id: 1,
            state: AccessState::ActiveOptimized,
        },
        vec![],
    )
    .unwrap();
    fresh.rig.target.set_alua(alua);
    fresh
        .rig
        .target
        .restore_reservations(0, saved.as_bytes())
        .unwrap();
    assert_eq!(fresh.write(B), GOOD, "B holds it through every port");
    assert_eq!(
        fresh.write(A),
        RC,
        "A's registration through port 1 was preempted"
    );
}

#[test]
fn a_saved_state_of_version_1_registers_every_target_port() {
    // What a gateway before target ports wrote: registrations of initiator ports only,
    // which held through every gateway.
    let v1 = "glfs-iscsi-pr 1\ngeneration 2\naptpl 1\n\
              register aaaa000000000001 0 iqn.2026-01.test:host1 800000000001\n\
              register bbbb000000000002 1 iqn.2026-01.test:host2 800000000002\n\
              reserve 5 iqn.2026-01.test:host1 800000000001\nversion 3\n\
              notice 3 reservations-released 0 iqn.2026-01.test:host2 800000000002\n";
    let mut lu = Lu::new();
    lu.rig.target.set_alua(
        Alua::new(
            PortGroup {
                id: 2,
                state: AccessState::ActiveOptimized,
            },
            vec![],
        )
        .unwrap(),
    );
    lu.rig
        .target
        .restore_reservations(0, v1.as_bytes())
        .unwrap();
    assert_eq!(lu.write(A), GOOD, "the holder, through this port too");
    assert_eq!(lu.write(B), GOOD, "a registrant");
    assert_eq!(lu.write(C), RC);
    let want = full_status_data(
        2,
        &[
            full_status(KEY_A, 0x03, WE_RO, 0, A),
            full_status(KEY_B, 0x02, 0, 0, B),
        ],
    );
    assert_eq!(lu.prin(C, 3), want);
    // A change writes version 2, the registrations kept as ones of every port.
    let r = lu.prout_flags(B, REGISTER, KEY_B, 0xB, APTPL);
    assert_eq!(outcome(&r), GOOD);
    let saved = String::from_utf8(lu.rig.mem.saved_reservations.clone().unwrap()).unwrap();
    assert!(saved.starts_with("glfs-iscsi-pr 2\n"), "{saved}");
    assert!(
        saved.contains("register aaaa000000000001 * iqn.2026-01.test:host1 800000000001\n"),
        "{saved}"
    );
    // Neither version takes a port of 0 or a version 3.
    for bad in [
        "glfs-iscsi-pr 2\nregister 01 0 iqn.x 800000000001\n",
        "glfs-iscsi-pr 2\nregister 01 iqn.x 800000000001\n",
        "glfs-iscsi-pr 3\n",
    ] {
        assert!(
            lu.rig
                .target
                .restore_reservations(0, bad.as_bytes())
                .is_err(),
            "{bad}"
        );
    }
}

/// Gateway 1 loads the state, gateway 0 then makes `missed` changes (the first preempts
/// B's registration, SPC-4 5.13.11.2.3: REGISTRATIONS PREEMPTED for B; the others change
/// A's key and raise nothing), and gateway 1 loads again. What TEST UNIT READY through
/// gateway 1 then reports to A, B and C, in order, up to the first GOOD.
fn after_missing(missed: u64) -> [Vec<(Status, u8, u8, u8)>; 3] {
    let mut g = Gateways::new();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(1, |lu| lu.ok(B, REGISTER, 0, 0, KEY_B));
    g.on(1, |lu| lu.ok(C, REGISTER, 0, 0, KEY_B + 1));
    g.refresh(1);
    g.on(0, |lu| lu.ok(A, PREEMPT, WE_RO, KEY_A, KEY_B));
    for k in 1..missed {
        g.on(0, |lu| lu.ok(A, REGISTER, 0, KEY_A + k - 1, KEY_A + k));
    }
    g.refresh(1);
    [A, B, C].map(|n| {
        let mut seen = Vec::new();
        loop {
            let o = outcome(&g.gw[1].rig.run_on(n, 0, &TUR, &[]));
            seen.push(o);
            if o == GOOD || seen.len() > 4 {
                return seen;
            }
        }
    })
}

/// The notices of the last 16 versions are kept with the shared state: a gateway that
/// missed 16 changes raises exactly what they said (B's REGISTRATIONS PREEMPTED, 2Ah/05h,
/// SPC-4 annex D), nothing for A and C.
#[test]
fn a_gateway_that_missed_sixteen_changes_raises_their_unit_attentions() {
    let [a, b, c] = after_missing(16);
    assert_eq!(a, [GOOD]);
    assert_eq!(b, [UA_REGISTRATIONS_PREEMPTED, GOOD]);
    assert_eq!(c, [GOOD]);
}

/// A gateway that missed 17 changes cannot know whom the oldest concerned (its notice is
/// gone): every nexus it has on the LU gets every unit attention a reservation change can
/// give, REGISTRATIONS PREEMPTED (2Ah/05h), RESERVATIONS PREEMPTED (2Ah/03h), RESERVATIONS
/// RELEASED (2Ah/04h), each once, then commands run: over-telling costs a host a reread of
/// the reservations, missing one would leave it unaware it lost its registration.
#[test]
fn a_gateway_that_missed_more_changes_than_are_kept_raises_every_reservation_unit_attention() {
    let every = vec![
        UA_REGISTRATIONS_PREEMPTED,
        UA_RESERVATIONS_PREEMPTED,
        UA_RESERVATIONS_RELEASED,
        GOOD,
    ];
    assert_eq!(after_missing(17), [every.clone(), every.clone(), every]);
}

// ---- RESERVE(6/10) on a shared LU: one holder for every gateway (SPC-2 5.5.1) ----

impl Gateways {
    /// Gateway `g` writes the RESERVE(6/10) releases it owes (its refresh), as the daemon
    /// does under the metadata lock: read the volume, run, write back. How many it ran.
    fn chores(&mut self, g: usize) -> usize {
        let target = &self.gw[g].rig.target;
        let runs = target.reservation_chores();
        let n = runs.len();
        for mut run in runs {
            assert!(run.is_chore());
            if let Some(state) = run.run(target, self.volume.as_deref()).unwrap() {
                self.volume = Some(on_the_volume(&state));
            }
        }
        n
    }

    fn cmd(&mut self, g: usize, n: u64, cdb: &[u8]) -> (Status, u8, u8, u8) {
        self.on(g, |lu| outcome(&lu.rig.run_on(n, 0, cdb, &[])))
    }
}

#[test]
fn a_reserve_through_one_gateway_holds_through_the_other() {
    let mut g = Gateways::new();
    // A RESERVE(6/10) on a shared LU runs on the volume's state like a PERSISTENT
    // RESERVE command.
    let cmd = scsi::Command {
        nexus: A,
        lun: 0,
        cdb: bytes::Bytes::copy_from_slice(&RESERVE6),
        data_out: bytes::Bytes::new().into(),
        expected_len: 0,
    };
    assert!(matches!(
        g.gw[0].rig.target.start(cmd),
        scsi::Start::SharedReservations(_)
    ));
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD);
    let version = g.gw[0].rig.target.reservations_version(0).unwrap();
    assert!(version > 0, "a new version, fenced like any change");
    let saved = String::from_utf8(g.volume.clone().unwrap()).unwrap();
    assert!(
        saved.contains(&format!(
            "legacy-reserve gateway-0 {version} 1 iqn.2026-01.test:host1 800000000001"
        )),
        "{saved}"
    );
    // Gateway 1 loads it: every command but INQUIRY, REPORT LUNS and REQUEST SENSE from
    // its nexuses conflicts (SPC-2 5.5.1), the same initiator port's included (the
    // holder is the I_T nexus through gateway 0).
    g.refresh(1);
    assert_eq!(g.gw[1].write(B), RC);
    assert_eq!(g.gw[1].read(B), RC);
    assert_eq!(g.gw[1].read(A), RC);
    assert_eq!(
        outcome(&g.gw[1].rig.run_on(B, 0, &inquiry(false, 0, 96), &[])),
        GOOD
    );
    // Its RESERVE and its PERSISTENT RESERVE commands conflict, read on the volume.
    assert_eq!(g.cmd(1, B, &RESERVE10), RC);
    assert_eq!(
        outcome(&g.on(1, |lu| lu.prout(B, REGISTER, 0, 0, KEY_B))),
        RC
    );
    // Its RELEASE is GOOD and releases nothing (SPC-2 7.17).
    assert_eq!(g.cmd(1, B, &RELEASE6), GOOD);
    assert_eq!(g.gw[1].write(B), RC);
    // The holder writes through gateway 0 and releases there.
    assert_eq!(g.gw[0].write(A), GOOD);
    assert_eq!(g.cmd(0, A, &RELEASE10), GOOD);
    g.refresh(1);
    assert_eq!(g.gw[1].write(B), GOOD);
    assert!(!String::from_utf8(g.volume.clone().unwrap())
        .unwrap()
        .contains("legacy-reserve"));
    // Now gateway 1's host reserves, and gateway 0's is kept out.
    assert_eq!(g.cmd(1, B, &RESERVE10), GOOD);
    g.refresh(0);
    assert_eq!(g.gw[0].write(A), RC);
    assert_eq!(g.cmd(0, A, &RESERVE6), RC);
}

#[rstest]
#[case::nexus_loss(0)]
#[case::lun_reset(1)]
#[case::target_reset(2)]
fn a_shared_reserve_ends_with_its_session_and_with_resets_on_every_gateway(#[case] how: u8) {
    let mut g = Gateways::new();
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD);
    g.refresh(1);
    assert_eq!(g.gw[1].write(B), RC);
    let target = &g.gw[0].rig.target;
    match how {
        0 => target.close_nexus(A),
        1 => target.logical_unit_reset(0),
        _ => target.target_reset(),
    }
    // Until gateway 0 writes the release, the record holds for everyone.
    assert_eq!(g.chores(1), 0, "gateway 1 owes nothing");
    g.refresh(1);
    assert_eq!(g.gw[1].write(B), RC);
    // Gateway 0's refresh writes it (a new version, no unit attention: SPC-2 7.17).
    let before = g.gw[0].rig.target.reservations_version(0).unwrap();
    assert_eq!(g.chores(0), 1);
    assert_eq!(g.chores(0), 0, "written once");
    assert!(g.gw[0].rig.target.reservations_version(0).unwrap() > before);
    g.refresh(1);
    g.gw[1].rig.run_on(B, 0, &TUR, &[]); // a reset's unit attention, if any
    assert_eq!(g.gw[1].write(B), GOOD);
}

#[test]
fn a_reset_through_the_other_gateway_ends_the_reserve() {
    // The holder's gateway is gone (or its host cannot reach it): a LOGICAL UNIT RESET
    // through another gateway ends the reservation (SPC-2 5.5.1), as an SPC-2 cluster's
    // challenge relies on.
    let mut g = Gateways::new();
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD);
    g.refresh(1);
    g.gw[1].rig.target.logical_unit_reset(0);
    assert_eq!(g.chores(1), 1);
    g.refresh(0);
    // The reset reached gateway 0's nexuses too (SAM-5 6.3.3).
    for n in [A, B] {
        assert_eq!(
            outcome(&g.gw[0].rig.run_on(n, 0, &TUR, &[])),
            UA_BUS_DEVICE_RESET
        );
    }
    assert_eq!(g.gw[0].write(A), GOOD, "released: nobody holds it");
    assert_eq!(g.gw[0].write(B), GOOD);
    // A RESERVE made after the reset is not what the reset released.
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD);
    g.refresh(1);
    g.gw[1].rig.target.logical_unit_reset(0);
    assert_eq!(g.cmd(0, B, &RELEASE6), GOOD);
    assert_eq!(g.cmd(0, A, &RELEASE6), GOOD);
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD, "a new hold");
    assert_eq!(g.chores(1), 1);
    g.refresh(0);
    assert_eq!(
        outcome(&g.gw[0].rig.run_on(B, 0, &TUR, &[])),
        UA_BUS_DEVICE_RESET
    );
    assert_eq!(g.gw[0].write(B), RC, "the new hold stays");
}

#[test]
fn a_hold_of_a_former_process_of_the_gateway_is_released_when_it_loads_the_state() {
    let mut g = Gateways::new();
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD);
    // Gateway 0 restarts: its new process shares the LU under the same name and finds
    // a hold of its own that no session of it has.
    let mut again = Gateways::new();
    again.volume = g.volume.take();
    again.refresh(0);
    assert_eq!(again.gw[0].write(A), RC, "held until released");
    assert_eq!(again.chores(0), 1);
    again.refresh(1);
    assert_eq!(again.gw[1].write(B), GOOD);
    // Its first reservation command writes the release too, before running.
    assert_eq!(again.cmd(1, B, &RESERVE6), GOOD);
    let mut third = Gateways::new();
    third.volume = again.volume.take();
    third.refresh(1);
    assert_eq!(
        third.cmd(1, C, &RESERVE6),
        GOOD,
        "the stale hold went first"
    );
}

#[test]
fn a_saved_reserve_holder_round_trips_and_is_dropped_on_an_lu_of_one_gateway() {
    // SPC-2 reservations never outlive the LU's power: restored on an LU that is not
    // shared, a recorded holder is gone.
    let saved = b"glfs-iscsi-pr 2\ngeneration 0\naptpl 0\nlegacy-reserve gw 3 1 iqn.x 000000000001\nversion 3\n";
    let mut lu = Lu::new();
    lu.rig.target.restore_reservations(0, saved).unwrap();
    assert_eq!(lu.write(B), GOOD);
    // A holder of every target port is not a nexus: not a saved state.
    let bad = b"glfs-iscsi-pr 2\nlegacy-reserve gw 3 * iqn.x 000000000001\n";
    assert!(lu.rig.target.restore_reservations(0, bad).is_err());
}

// ---- Every gateway stopped: the LU powers on (SPC-4 5.14.5) ----

#[test]
fn at_power_on_registrations_without_aptpl_are_gone_and_with_it_kept() {
    // Without APTPL: registered and reserved through two gateways, every gateway stops.
    let mut g = Gateways::new();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(1, |lu| lu.ok(B, REGISTER, 0, 0, KEY_B));
    g.on(0, |lu| lu.ok(A, RESERVE, WE_RO, KEY_A, 0));
    let saved = g.volume.clone().unwrap();
    let version = g.gw[0].rig.target.reservations_version(0).unwrap();
    let after = scsi::reservations_at_power_on(&saved)
        .unwrap()
        .expect("a change");
    let mut fresh = Gateways::new();
    fresh.volume = Some(after);
    // READ KEYS (SPC-4 table 165): PRGENERATION 0, no keys; READ RESERVATION (table
    // 167): PRGENERATION 0, ADDITIONAL LENGTH 0.
    assert_eq!(fresh.on(0, |lu| lu.prin(C, 0)), keys_data(0, &[]));
    assert_eq!(fresh.on(0, |lu| lu.prin(C, 1)), [0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(
        fresh.gw[0].rig.target.reservations_version(0).unwrap() > version,
        "versions go on counting"
    );
    fresh.refresh(1);
    assert_eq!(fresh.gw[1].write(C), GOOD);

    // With APTPL (REGISTER's parameter list byte 20 bit 0) they are kept, and a
    // RESERVE(6) is not (SPC-2 5.5.1).
    let mut g = Gateways::new();
    g.on(0, |lu| {
        assert_eq!(outcome(&lu.prout_flags(A, REGISTER, 0, KEY_A, APTPL)), GOOD)
    });
    g.on(1, |lu| {
        assert_eq!(outcome(&lu.prout_flags(B, REGISTER, 0, KEY_B, APTPL)), GOOD)
    });
    g.on(0, |lu| lu.ok(A, RESERVE, WE_RO, KEY_A, 0));
    let saved = g.volume.clone().unwrap();
    assert_eq!(
        scsi::reservations_at_power_on(&saved).unwrap(),
        None,
        "nothing to drop"
    );
    let mut fresh = Gateways::new();
    fresh.volume = Some(saved);
    assert_eq!(
        fresh.on(1, |lu| lu.prin(C, 0)),
        keys_data(2, &[KEY_A, KEY_B])
    );
    fresh.refresh(1);
    assert_eq!(fresh.gw[1].write(C), RC, "still reserved Registrants Only");

    let mut g = Gateways::new();
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD);
    let after = scsi::reservations_at_power_on(&g.volume.clone().unwrap())
        .unwrap()
        .expect("the RESERVE goes");
    assert!(!String::from_utf8(after).unwrap().contains("legacy-reserve"));
    assert!(scsi::reservations_at_power_on(b"garbage").is_err());
}

#[test]
fn a_reserve_of_a_gateway_found_gone_is_released_by_another() {
    let mut g = Gateways::new();
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD);
    g.refresh(1);
    assert_eq!(g.gw[0].rig.target.reserve_held_through(0), None, "its own");
    assert_eq!(
        g.gw[1].rig.target.reserve_held_through(0).as_deref(),
        Some("gateway-0")
    );
    assert!(!g.gw[1].rig.target.reserve_holder_gone(0, "gateway-2"));
    assert_eq!(g.chores(1), 0);
    // Gateway 0 is gone, and with it the holding session (SPC-2 5.5.1).
    assert!(g.gw[1].rig.target.reserve_holder_gone(0, "gateway-0"));
    assert_eq!(g.chores(1), 1);
    assert_eq!(g.gw[1].write(B), GOOD);
    assert_eq!(g.gw[1].rig.target.reserve_held_through(0), None);
    // A gateway cannot declare itself gone.
    assert_eq!(g.cmd(1, B, &RESERVE6), GOOD);
    assert!(!g.gw[1].rig.target.reserve_holder_gone(0, "gateway-1"));
}

#[test]
fn a_release_whose_write_failed_is_still_owed() {
    let mut g = Gateways::new();
    assert_eq!(g.cmd(0, A, &RESERVE6), GOOD);
    g.refresh(1);
    g.gw[1].rig.target.logical_unit_reset(0);
    g.gw[1].rig.run_on(B, 0, &TUR, &[]); // the reset's unit attention
    let target = &g.gw[1].rig.target;
    let mut run = target.reservation_chores().pop().expect("a release owed");
    assert!(run.run(target, g.volume.as_deref()).unwrap().is_some());
    // The write failed: the LU goes back to what the volume holds.
    run.undo(target);
    assert_eq!(g.gw[1].write(B), RC, "the volume still records the hold");
    assert_eq!(g.chores(1), 1, "still owed, and written now");
    assert_eq!(g.gw[1].write(B), GOOD);
    g.refresh(1);
    assert_eq!(g.chores(1), 0);
    assert_eq!(g.gw[1].write(B), GOOD);
}

// ---- Resets through one gateway reach every gateway's nexuses (SAM-5 6.3.3, 7.8) ----

/// CHECK CONDITION, UNIT ATTENTION (6h), BUS DEVICE RESET FUNCTION OCCURRED (29h/03h; SPC-4
/// annex D): what SAM-5 6.3.3 has every I_T nexus of a logical unit told after a
/// LOGICAL UNIT RESET.
const UA_BUS_DEVICE_RESET: (Status, u8, u8, u8) = (Status::CheckCondition, 0x06, 0x29, 0x03);
/// CHECK CONDITION, UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
/// (29h/00h): what this target reports after a target reset (the local nexuses too).
const UA_POWER_ON_RESET: (Status, u8, u8, u8) = (Status::CheckCondition, 0x06, 0x29, 0x00);

#[rstest]
#[case::logical_unit_reset(1, UA_BUS_DEVICE_RESET)]
#[case::target_reset(2, UA_POWER_ON_RESET)]
fn a_reset_through_one_gateway_reaches_the_nexuses_of_the_other(
    #[case] how: u8,
    #[case] told: (Status, u8, u8, u8),
) {
    let mut g = Gateways::new();
    g.refresh(0);
    g.refresh(1);
    // Every nexus has seen its POWER ON unit attention.
    for gw in 0..2 {
        for n in [A, B, C] {
            g.gw[gw].rig.run_on(n, 0, &TUR, &[]);
        }
    }
    match how {
        1 => g.gw[0].rig.target.logical_unit_reset_by(0, A),
        _ => g.gw[0].rig.target.target_reset_by(A),
    }
    // Gateway 0's own nexuses at once (the asking one too); the others' tasks are
    // aborted (the asking nexus's own the transport aborts itself).
    for n in [A, B, C] {
        assert_eq!(outcome(&g.gw[0].rig.run_on(n, 0, &TUR, &[])), told);
    }
    let aborted: Vec<u64> = g.gw[0]
        .rig
        .target
        .take_task_aborts()
        .iter()
        .map(|a| a.nexus)
        .collect();
    assert!(aborted.contains(&B) && aborted.contains(&C) && !aborted.contains(&A));
    // Gateway 1 knows nothing until gateway 0 writes the reset (its refresh) and it
    // loads the state.
    g.refresh(1);
    assert_eq!(outcome(&g.gw[1].rig.run_on(A, 0, &TUR, &[])), GOOD);
    let before = g.gw[0].rig.target.reservations_version(0).unwrap();
    assert_eq!(g.chores(0), 1, "the reset is written");
    assert_eq!(g.chores(0), 0, "once");
    assert!(g.gw[0].rig.target.reservations_version(0).unwrap() > before);
    g.refresh(1);
    // Every nexus of gateway 1 on the LU: the unit attention once, then commands run;
    // and all their tasks on the LU are aborted (TAS 0: without status).
    for n in [A, B, C] {
        assert_eq!(
            outcome(&g.gw[1].rig.run_on(n, 0, &TUR, &[])),
            told,
            "nexus {n}"
        );
        assert_eq!(outcome(&g.gw[1].rig.run_on(n, 0, &TUR, &[])), GOOD);
    }
    let mut aborted: Vec<(u64, u16)> = g.gw[1]
        .rig
        .target
        .take_task_aborts()
        .iter()
        .map(|a| (a.nexus, a.lun))
        .collect();
    aborted.sort_unstable();
    assert_eq!(aborted, [(A, 0), (B, 0), (C, 0)]);
    // Loaded again, the same reset is not told twice, on either gateway.
    g.refresh(1);
    g.refresh(0);
    for gw in 0..2 {
        assert_eq!(outcome(&g.gw[gw].rig.run_on(C, 0, &TUR, &[])), GOOD);
        assert!(g.gw[gw].rig.target.take_task_aborts().is_empty());
    }
}

#[test]
fn a_reset_whose_write_failed_is_still_owed_and_a_new_gateway_is_not_told_old_resets() {
    let mut g = Gateways::new();
    g.refresh(1);
    for n in [A, B] {
        g.gw[1].rig.run_on(n, 0, &TUR, &[]);
    }
    g.gw[0].rig.target.logical_unit_reset(0);
    let target = &g.gw[0].rig.target;
    let mut run = target.reservation_chores().pop().expect("a reset owed");
    assert!(run.run(target, g.volume.as_deref()).unwrap().is_some());
    // The write failed: the LU goes back to what the volume holds, and owes it still.
    run.undo(target);
    g.refresh(1);
    assert_eq!(outcome(&g.gw[1].rig.run_on(A, 0, &TUR, &[])), GOOD);
    assert_eq!(g.chores(0), 1);
    g.refresh(0);
    assert_eq!(g.chores(0), 0, "written and loaded back: settled");
    g.refresh(1);
    assert_eq!(
        outcome(&g.gw[1].rig.run_on(A, 0, &TUR, &[])),
        UA_BUS_DEVICE_RESET
    );
    // A gateway that starts later loads the count as it finds it: its nexuses get their
    // POWER ON and nothing of the resets before it.
    // (As the daemon opens a shared LU: what the volume holds is restored, then loaded.)
    let mut late = Gateways::new();
    late.volume = g.volume.clone();
    late.gw[1]
        .rig
        .target
        .restore_reservations(0, late.volume.as_deref().unwrap())
        .unwrap();
    late.refresh(1);
    assert_eq!(outcome(&late.gw[1].rig.run_on(B, 0, &TUR, &[])), GOOD);
    late.refresh(1);
    assert_eq!(outcome(&late.gw[1].rig.run_on(B, 0, &TUR, &[])), GOOD);
}

// ---- The saved form stays readable by gateways of the release before ----

/// The grammar of `<lun>.pr` as gateways before RESERVE(6/10) was shared read it (the
/// parser of `PrState::decode` at 8f8e2a3, written out here as data): the first line is
/// `glfs-iscsi-pr 1` or `glfs-iscsi-pr 2`, and every other line one of these, by first word
/// and number of words (`notice` with one of three unit attention names), or empty. Any
/// other line made that parser refuse the whole state ("not in our format").
const OLD_GRAMMAR: [(&str, usize); 6] = [
    ("generation", 2),
    ("aptpl", 2),
    ("register", 5),
    ("reserve", 5),
    ("version", 2),
    ("notice", 7),
];
const OLD_NOTICE_NAMES: [&str; 3] = [
    "reservations-preempted",
    "reservations-released",
    "registrations-preempted",
];

fn old_parser_reads(text: &str) -> bool {
    let mut lines = text.lines();
    if !matches!(lines.next(), Some("glfs-iscsi-pr 1" | "glfs-iscsi-pr 2")) {
        return false;
    }
    lines.all(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        line.is_empty()
            || OLD_GRAMMAR.iter().any(|&(word, n)| {
                f[0] == word
                    && f.len() == n
                    && (word != "notice" || OLD_NOTICE_NAMES.contains(&f[2]))
            })
    })
}

#[test]
fn what_pr_keeps_is_read_by_the_parser_of_the_release_before() {
    let mut g = Gateways::new();
    g.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    g.on(1, |lu| lu.ok(B, REGISTER, 0, 0, KEY_B));
    g.on(0, |lu| lu.ok(A, PREEMPT, WE_RO, KEY_A, KEY_B));
    g.on(0, |lu| lu.ok(A, REGISTER, 0, KEY_A, 0));
    // A RESERVE(6) held through gateway 1, and a reset through gateway 0 written.
    assert_eq!(g.cmd(1, C, &RESERVE6), GOOD);
    g.refresh(0);
    g.gw[0].rig.target.logical_unit_reset(0);
    // (the reset ended the RESERVE too; hold it again so the state records one)
    assert_eq!(g.chores(0), 1);
    assert_eq!(g.cmd(1, C, &RESERVE6), GOOD);
    let state = g.gw[1].rig.target.reservation_metadata(0).unwrap();
    let text = String::from_utf8(state.clone()).unwrap();
    assert!(
        text.contains("\nlegacy-reserve gateway-1 ") && text.contains("\nreset 1 logical-unit\n")
    );
    assert!(text.contains("\nnotice "), "{text}");
    assert!(!old_parser_reads(&text), "the core's whole state is not");
    let (pr, lu) = scsi::split_reservation_state(&state);
    let pr = String::from_utf8(pr).unwrap();
    assert!(old_parser_reads(&pr), "{pr}");
    assert!(pr.contains("\nversion ") && !pr.contains("legacy-reserve") && !pr.contains("reset"));
    // The rest, in its own object, which the release before never opens.
    let lu = String::from_utf8(lu).unwrap();
    assert!(
        lu.starts_with("glfs-iscsi-pr-lu 1\nlegacy-reserve gateway-1 "),
        "{lu}"
    );
    assert!(lu.ends_with("\nreset 1 logical-unit\n"), "{lu}");
    // Joined, it is the state again; a line a later release adds there is skipped.
    let later = format!("{lu}something-new 1 2 3\n");
    let joined = scsi::join_reservation_state(Some(pr.as_bytes()), Some(later.as_bytes())).unwrap();
    let mut fresh = Gateways::new();
    fresh.volume = joined;
    fresh.refresh(0);
    assert_eq!(
        fresh.gw[0].rig.target.reservation_metadata(0).unwrap(),
        state
    );
    // Only `<lun>.pr` (a gateway of the release before wrote it last): no RESERVE held.
    let alone = scsi::join_reservation_state(Some(pr.as_bytes()), None)
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8(alone).unwrap().contains("legacy-reserve"));
    // Neither object: nothing saved. Another kind of second object: not ours.
    assert_eq!(scsi::join_reservation_state(None, None), Ok(None));
    assert!(
        scsi::join_reservation_state(Some(pr.as_bytes()), Some(b"glfs-iscsi-pr-lu 2\n")).is_err()
    );
    // A state without those lines needs no second object.
    let mut plain = Gateways::new();
    plain.on(0, |lu| lu.ok(A, REGISTER, 0, 0, KEY_A));
    let (_, lu) =
        scsi::split_reservation_state(&plain.gw[0].rig.target.reservation_metadata(0).unwrap());
    assert!(lu.is_empty());
}

// ---- A unit attention is never overtaken by the conflict it explains ----

/// The shared state as gateway 0 leaves it, written out in the saved form: `x` B
/// (host2, through target port 1) registered beside the holder A of Write Exclusive -
/// Registrants Only (type 5); else A has preempted B (SPC-4 5.13.11.2.3), which tells B
/// REGISTRATIONS PREEMPTED (the notice of that version).
fn toggled_state(version: u64, b_registered: bool) -> Vec<u8> {
    let a = "1 iqn.2026-01.test:host1 800000000001";
    let b = "1 iqn.2026-01.test:host2 800000000002";
    let mut s = format!("glfs-iscsi-pr 2\ngeneration {version}\naptpl 0\n");
    s += &format!("register {KEY_A:016x} {a}\n");
    if b_registered {
        s += &format!("register {KEY_B:016x} {b}\n");
    }
    s += &format!("reserve 5 {a}\nversion {version}\n");
    if !b_registered {
        s += &format!("notice {version} registrations-preempted 0 {b}\n");
    }
    s.into_bytes()
}

/// Gateway 1 loads states that let B write and that preempt it, one after the other,
/// while B writes through it without a pause. Whenever a write of B finds a
/// RESERVATION CONFLICT, the REGISTRATIONS PREEMPTED of the load that made it came
/// first (since B's last admitted write): a load between a command's unit attention
/// check and its reservation check must not let the conflict overtake the unit
/// attention that explains it. (The loads and the writes run on two threads; a write
/// that would meet that interleaving and is answered with the conflict fails the test.)
#[test]
fn a_conflict_is_never_reported_before_the_unit_attention_of_the_load_that_caused_it() {
    let lu = Lu::new();
    let target = &lu.rig.target;
    target.share_reservations(0, "gateway-1");
    target
        .refresh_reservations(0, Some(&toggled_state(1, true)))
        .unwrap();
    target.renew_reservations_lease(0, std::time::Instant::now());
    let done = std::sync::atomic::AtomicBool::new(false);
    /// Stops the loads however the writes end (a failed assertion included).
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let write = cdb10(0x2A, 0, 0, 1);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut version = 1;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                version += 1;
                let state = toggled_state(version, version % 2 == 1);
                target.refresh_reservations(0, Some(&state)).unwrap();
                target.renew_reservations_lease(0, std::time::Instant::now());
            }
        });
        let _stop = Stop(&done);
        let (mut conflicts, mut told_since_admitted) = (0, false);
        for _ in 0..5_000_000 {
            let cmd = scsi::Command {
                nexus: B,
                lun: 0,
                cdb: bytes::Bytes::copy_from_slice(&write),
                data_out: bytes::Bytes::from(vec![0x5A; 512]).into(),
                expected_len: 512,
            };
            match target.start(cmd) {
                scsi::Start::Io { .. } => told_since_admitted = false,
                scsi::Start::Done(r) => match outcome(&r) {
                    UA_REGISTRATIONS_PREEMPTED => told_since_admitted = true,
                    RC => {
                        assert!(told_since_admitted, "a conflict before its unit attention");
                        conflicts += 1;
                        if conflicts == 50_000 {
                            break;
                        }
                    }
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        assert!(conflicts > 0, "B was never preempted while it wrote");
    });
}
