//! Logical block provisioning thresholds on a thin provisioned LU, bytes written out from
//! SBC-3: the Logical Block Provisioning VPD page's THRESHOLD EXPONENT (6.5.4), the Logical
//! Block Provisioning mode page 1Ch/02h (byte 0 PS, SPF, PAGE CODE; byte 1 SUBPAGE
//! CODE; bytes 2..4 PAGE LENGTH; byte 4 SITUA (bit 0); bytes 16..24 one threshold
//! descriptor: byte 0 ENABLED (bit 7), THRESHOLD TYPE (5:3), THRESHOLD ARMING (2:0); byte 1
//! THRESHOLD RESOURCE; bytes 4..8 THRESHOLD COUNT), and the unit attention THIN
//! PROVISIONING SOFT THRESHOLD REACHED (SPC-4 annex D: 38h/07h) when the sampled free space
//! falls to it.

mod common;

use common::*;
use scsi::{SoftThreshold, Status, ThresholdNews};

const MIB: u64 = 1 << 20;
const TUR: [u8; 6] = [0; 6];

/// A thin LU (512-byte blocks, 1 MiB) with a soft threshold of `threshold` bytes.
fn thin(threshold: Option<u64>) -> Rig {
    let mut cfg = config(discard_caps());
    cfg.soft_threshold = threshold.map(SoftThreshold::Bytes);
    Rig::with(cfg)
}

fn port(name: &str) -> scsi::InitiatorPort {
    scsi::InitiatorPort {
        name: name.into(),
        isid: [0x40, 0, 0, 0, 0, 1],
    }
}

/// Two nexuses logged in, their POWER ON conditions taken.
fn two_nexuses(rig: &mut Rig) {
    rig.target.open_nexus(1, port("iqn.2026-01.test:a"));
    rig.target.open_nexus(2, port("iqn.2026-01.test:b"));
    rig.run_on(1, 0, &TUR, &[]);
    rig.run_on(2, 0, &TUR, &[]);
}

fn free(rig: &Rig, bytes: u64) -> Option<ThresholdNews> {
    rig.target.set_space(
        0,
        store_api::Space {
            allocated: MIB,
            available: Some(bytes),
            storage: None,
        },
    )
}

/// MODE SENSE(10) of page 1Ch subpage 02h with page control `pc`, no block descriptors.
fn sense_lbp(rig: &mut Rig, pc: u8) -> scsi::Response {
    rig.run(
        &[0x5A, 0x08, (pc << 6) | 0x1C, 0x02, 0, 0, 0, 0, 255, 0],
        &[],
    )
}

/// The page as SBC-3 lays it out: SPF | 1Ch, 02h, PAGE LENGTH 20 (24 bytes in all),
/// SITUA 0, reserved to byte 15, then one descriptor: ENABLED, soft (000b), armed
/// decreasing (000b), THRESHOLD RESOURCE 01h (available LBA mapping resources), COUNT.
fn lbp_page(enabled: bool, count: u32) -> Vec<u8> {
    let mut p = vec![0x5C, 0x02, 0x00, 0x14];
    p.extend([0; 12]);
    p.push(if enabled { 0x80 } else { 0x00 });
    p.push(0x01);
    p.extend([0, 0]);
    p.extend(count.to_be_bytes());
    p
}

#[test]
fn the_vpd_page_gives_a_threshold_set_of_one_mebibyte() {
    let mut rig = thin(None);
    // INQUIRY EVPD, page B2h: byte 4 THRESHOLD EXPONENT: 2^11 blocks of 512 bytes.
    let r = rig.run(&[0x12, 0x01, 0xB2, 0, 255, 0], &[]);
    assert_eq!(r.status, Status::Good);
    assert_eq!(r.data_in[4], 11);
}

#[test]
fn mode_sense_reports_the_configured_threshold_in_sets() {
    // 10 MiB of free space is 10 sets of 1 MiB; a part of a set counts as one.
    let mut rig = thin(Some(10 * MIB - 1));
    let r = sense_lbp(&mut rig, 0);
    assert_eq!(r.status, Status::Good);
    // MODE SENSE(10) header: MODE DATA LENGTH 6 + 24, MEDIUM TYPE 0, DPOFUA, no
    // descriptors.
    assert_eq!(&r.data_in[..8], &[0, 30, 0, 0x10, 0, 0, 0, 0]);
    assert_eq!(&r.data_in[8..], &lbp_page(true, 10)[..]);
    // Default: the same; changeable: ENABLED and THRESHOLD COUNT only.
    assert_eq!(
        &sense_lbp(&mut rig, 2).data_in[8..],
        &lbp_page(true, 10)[..]
    );
    let mut changeable = vec![0x5C, 0x02, 0x00, 0x14];
    changeable.extend([0; 12]);
    changeable.extend([0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(&sense_lbp(&mut rig, 1).data_in[8..], &changeable[..]);
    // Without a configured threshold: disabled, count 0.
    let mut off = thin(None);
    assert_eq!(
        &sense_lbp(&mut off, 0).data_in[8..],
        &lbp_page(false, 0)[..]
    );
}

#[test]
fn the_page_is_among_all_subpages_only_and_only_on_a_thin_lu() {
    let mut rig = thin(Some(MIB));
    // 3Fh/FFh: caching (20 bytes), control (12), then 1Ch/02h (24).
    let all = rig.run(&mode_sense6(true, 0, 0x3F, 0xFF, 255), &[]).data_in;
    assert_eq!(all[0] as usize, 3 + 20 + 12 + 24);
    assert_eq!(&all[4 + 32..], &lbp_page(true, 1)[..]);
    // 3Fh/00h: pages without subpages only.
    let plain = rig.run(&mode_sense6(true, 0, 0x3F, 0, 255), &[]).data_in;
    assert_eq!(plain[0] as usize, 3 + 20 + 12);
    // 1Ch with another subpage (00h would be Informational Exceptions Control): INVALID
    // FIELD IN CDB.
    let r = rig.run(&mode_sense6(true, 0, 0x1C, 0, 255), &[]);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x24, 0x00));
    // A fully provisioned LU has no such page.
    let mut full = rig_full();
    let r = full.run(&mode_sense6(true, 0, 0x1C, 0x02, 255), &[]);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x24, 0x00));
    let all = full
        .run(&mode_sense6(true, 0, 0x3F, 0xFF, 255), &[])
        .data_in;
    assert_eq!(all[0] as usize, 3 + 20 + 12);
}

fn rig_full() -> Rig {
    let mut cfg = config(store_api::Capabilities::default());
    cfg.soft_threshold = Some(SoftThreshold::Bytes(MIB));
    Rig::with(cfg)
}

/// MODE SELECT(10) with a header and `page`.
fn select(rig: &mut Rig, nexus: u64, page: &[u8]) -> (Status, u8, u8, u8) {
    let mut d = vec![0u8; 8];
    d.extend(page);
    let [l0, l1] = (d.len() as u16).to_be_bytes();
    let cdb = [0x55, 0x10, 0, 0, 0, 0, 0, l0, l1, 0];
    outcome(&rig.run_on(nexus, 0, &cdb, &d))
}

#[test]
fn a_host_sets_the_threshold_with_mode_select() {
    let mut rig = thin(None);
    two_nexuses(&mut rig);
    // Enable at 4 sets (4 MiB).
    assert_eq!(select(&mut rig, 1, &lbp_page(true, 4)), GOOD);
    assert_eq!(&sense_lbp(&mut rig, 0).data_in[8..], &lbp_page(true, 4)[..]);
    // The default stays the configuration's.
    assert_eq!(
        &sense_lbp(&mut rig, 2).data_in[8..],
        &lbp_page(false, 0)[..]
    );
    // The other nexus is told (MODE PARAMETERS CHANGED), once.
    assert_eq!(
        outcome(&rig.run_on(2, 0, &TUR, &[])),
        (Status::CheckCondition, 0x06, 0x2A, 0x01)
    );
    assert_eq!(outcome(&rig.run_on(2, 0, &TUR, &[])), GOOD);
    // The threshold is in force: 4 MiB free reaches it.
    assert!(matches!(
        free(&rig, 4 * MIB),
        Some(ThresholdNews::Reached { threshold }) if threshold == 4 * MIB
    ));
    assert_eq!(
        outcome(&rig.run_on(1, 0, &TUR, &[])),
        (Status::CheckCondition, 0x06, 0x38, 0x07)
    );

    // What cannot change: the resource, the arming, SITUA, the page length (one
    // descriptor); each INVALID FIELD IN PARAMETER LIST, pointing at the byte (8-byte
    // header first).
    let pointer = |r: &scsi::Response| {
        let s = r.sense.as_ref().unwrap();
        (s[12], s[13], u16::from_be_bytes([s[16], s[17]]))
    };
    for (at, value) in [(17usize, 0x02u8), (16, 0x81), (4, 0x01)] {
        let mut page = lbp_page(true, 4);
        page[at] = value;
        let mut d = vec![0u8; 8];
        d.extend(&page);
        let cdb = [0x55, 0x10, 0, 0, 0, 0, 0, 0, d.len() as u8, 0];
        let r = rig.run_on(1, 0, &cdb, &d);
        assert_eq!(r.status, Status::CheckCondition, "byte {at}");
        assert_eq!(pointer(&r), (0x26, 0x00, 8 + at as u16), "byte {at}");
    }
    let mut long = lbp_page(true, 4);
    long[3] = 0x1C;
    long.extend([0x80, 0x01, 0, 0, 0, 0, 0, 1]);
    let mut d = vec![0u8; 8];
    d.extend(&long);
    let cdb = [0x55, 0x10, 0, 0, 0, 0, 0, 0, d.len() as u8, 0];
    let r = rig.run_on(1, 0, &cdb, &d);
    assert_eq!(pointer(&r), (0x26, 0x00, 8 + 3));
    // The threshold is unchanged by the refused lists.
    assert_eq!(&sense_lbp(&mut rig, 0).data_in[8..], &lbp_page(true, 4)[..]);
    // Not on a fully provisioned LU.
    let mut full = rig_full();
    let r = full.run(&[0x55, 0x10, 0, 0, 0, 0, 0, 0, 32, 0], &{
        let mut d = vec![0u8; 8];
        d.extend(lbp_page(true, 4));
        d
    });
    assert_eq!(pointer(&r), (0x26, 0x00, 8));
}

#[test]
fn free_space_at_the_threshold_is_a_unit_attention_for_every_nexus_once() {
    let mut rig = thin(Some(100 * MIB));
    two_nexuses(&mut rig);
    assert_eq!(free(&rig, 200 * MIB), Some(ThresholdNews::Unchanged));
    assert_eq!(rig.target.soft_threshold(0), Some((100 * MIB, false)));
    assert_eq!(outcome(&rig.run_on(1, 0, &TUR, &[])), GOOD);
    assert_eq!(
        free(&rig, 100 * MIB),
        Some(ThresholdNews::Reached {
            threshold: 100 * MIB
        })
    );
    assert_eq!(rig.target.soft_threshold(0), Some((100 * MIB, true)));
    // UNIT ATTENTION, THIN PROVISIONING SOFT THRESHOLD REACHED, on both nexuses, once.
    for nexus in [1, 2] {
        assert_eq!(
            outcome(&rig.run_on(nexus, 0, &TUR, &[])),
            (Status::CheckCondition, 0x06, 0x38, 0x07)
        );
        assert_eq!(outcome(&rig.run_on(nexus, 0, &TUR, &[])), GOOD);
    }
    // Lower still: not again; back above by a twentieth of it: armed again; then again.
    assert_eq!(free(&rig, 10 * MIB), Some(ThresholdNews::Unchanged));
    assert_eq!(free(&rig, 106 * MIB), Some(ThresholdNews::Rearmed));
    assert_eq!(rig.target.soft_threshold(0), Some((100 * MIB, false)));
    assert_eq!(outcome(&rig.run_on(1, 0, &TUR, &[])), GOOD);
    assert!(matches!(
        free(&rig, 50 * MIB),
        Some(ThresholdNews::Reached { .. })
    ));
    assert_eq!(
        outcome(&rig.run_on(1, 0, &TUR, &[])),
        (Status::CheckCondition, 0x06, 0x38, 0x07)
    );
    // A nexus logging in while it is reached learns of it after its POWER ON.
    rig.target.open_nexus(3, port("iqn.2026-01.test:c"));
    assert_eq!(
        outcome(&rig.run_on(3, 0, &TUR, &[])),
        (Status::CheckCondition, 0x06, 0x29, 0x00)
    );
    assert_eq!(
        outcome(&rig.run_on(3, 0, &TUR, &[])),
        (Status::CheckCondition, 0x06, 0x38, 0x07)
    );
    assert_eq!(outcome(&rig.run_on(3, 0, &TUR, &[])), GOOD);
    // No such LU: None.
    assert_eq!(
        rig.target.set_space(
            9,
            store_api::Space {
                allocated: 0,
                available: Some(0),
                storage: None
            }
        ),
        None
    );
}

#[test]
fn a_disabled_threshold_or_a_fully_provisioned_lu_tells_nothing() {
    let mut rig = thin(None);
    two_nexuses(&mut rig);
    assert_eq!(free(&rig, 0), Some(ThresholdNews::Unchanged));
    assert_eq!(rig.target.soft_threshold(0), None);
    assert_eq!(rig_full().target.soft_threshold(0), None);
    assert_eq!(outcome(&rig.run_on(1, 0, &TUR, &[])), GOOD);
    let mut full = rig_full();
    full.target.open_nexus(1, port("iqn.2026-01.test:a"));
    full.run_on(1, 0, &TUR, &[]);
    assert_eq!(free(&full, 0), Some(ThresholdNews::Unchanged));
    assert_eq!(outcome(&full.run_on(1, 0, &TUR, &[])), GOOD);
}

#[test]
fn the_operators_new_threshold_replaces_the_hosts_and_is_a_mode_change() {
    let mut rig = thin(Some(10 * MIB));
    two_nexuses(&mut rig);
    assert_eq!(select(&mut rig, 1, &lbp_page(true, 4)), GOOD);
    rig.run_on(2, 0, &TUR, &[]);
    // The same configuration again (another setting changed): the host's threshold stays.
    let mut same = config(discard_caps());
    same.soft_threshold = Some(SoftThreshold::Bytes(10 * MIB));
    same.read_only = false;
    assert!(rig.target.replace_lun_config(0, same));
    assert_eq!(&sense_lbp(&mut rig, 0).data_in[8..], &lbp_page(true, 4)[..]);
    assert_eq!(outcome(&rig.run_on(1, 0, &TUR, &[])), GOOD);
    // A new one: in force, and every nexus is told.
    let mut new = config(discard_caps());
    new.soft_threshold = Some(SoftThreshold::Bytes(20 * MIB));
    assert!(rig.target.replace_lun_config(0, new));
    for nexus in [1, 2] {
        assert_eq!(
            outcome(&rig.run_on(nexus, 0, &TUR, &[])),
            (Status::CheckCondition, 0x06, 0x2A, 0x01)
        );
    }
    assert_eq!(
        &sense_lbp(&mut rig, 0).data_in[8..],
        &lbp_page(true, 20)[..]
    );
}

/// A threshold that is a percentage of the capacity follows a resize (the count is a mode
/// page change: MODE PARAMETERS CHANGED after CAPACITY DATA HAS CHANGED); one a host set
/// stays.
#[test]
fn a_percentage_follows_the_capacity_unless_a_host_set_its_own() {
    // 1 MiB LU (2048 blocks of 512), 50%: 512 KiB, one set rounded up.
    let mut cfg = config(discard_caps());
    cfg.soft_threshold = Some(SoftThreshold::Percent(50));
    let mut rig = Rig::with(cfg);
    two_nexuses(&mut rig);
    assert_eq!(&sense_lbp(&mut rig, 0).data_in[8..], &lbp_page(true, 1)[..]);
    // Grown to 8 MiB: 4 sets.
    assert!(rig.target.set_capacity(0, 8 * 2048));
    for nexus in [1, 2] {
        assert_eq!(
            outcome(&rig.run_on(nexus, 0, &TUR, &[])),
            (Status::CheckCondition, 0x06, 0x2A, 0x09)
        );
        assert_eq!(
            outcome(&rig.run_on(nexus, 0, &TUR, &[])),
            (Status::CheckCondition, 0x06, 0x2A, 0x01)
        );
    }
    assert_eq!(&sense_lbp(&mut rig, 0).data_in[8..], &lbp_page(true, 4)[..]);
    assert_eq!(&sense_lbp(&mut rig, 2).data_in[8..], &lbp_page(true, 4)[..]);
    // A host's own count stays through the next resize; the default moves.
    assert_eq!(select(&mut rig, 1, &lbp_page(true, 3)), GOOD);
    rig.run_on(2, 0, &TUR, &[]);
    assert!(rig.target.set_capacity(0, 16 * 2048));
    assert_eq!(
        outcome(&rig.run_on(1, 0, &TUR, &[])),
        (Status::CheckCondition, 0x06, 0x2A, 0x09)
    );
    assert_eq!(outcome(&rig.run_on(1, 0, &TUR, &[])), GOOD);
    assert_eq!(&sense_lbp(&mut rig, 0).data_in[8..], &lbp_page(true, 3)[..]);
    assert_eq!(&sense_lbp(&mut rig, 2).data_in[8..], &lbp_page(true, 8)[..]);
}
