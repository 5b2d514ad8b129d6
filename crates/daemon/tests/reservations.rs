//! Persistent reservations across two sessions and a restart, through the real binary on a
//! glfs LUN on the fake volume: the fencing a cluster relies on.
//!
//! CDBs and parameter lists are written out from SPC-4 (PERSISTENT RESERVE OUT table 169,
//! its parameter list table 171; PERSISTENT RESERVE IN READ RESERVATION table 167).

mod support;

use support::*;
use testkit::fake::FakeRoot;
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
