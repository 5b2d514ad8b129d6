//! The rest of the disk command set: ORWRITE(16), START STOP UNIT, PREVENT ALLOW MEDIUM
//! REMOVAL, READ DEFECT DATA(10/12) and the WRITE SAME length limit, with expected bytes from
//! the SBC-3 tables.

mod common;

use common::*;
use rstest::rstest;
use scsi::Status;
use store_api::{Capabilities, IoRequest};

fn rig() -> Rig {
    Rig::new(Capabilities::default())
}

const NOT_READY_INIT: (Status, u8, u8, u8) = (Status::CheckCondition, 0x02, 0x04, 0x02);

/// ORWRITE(16) (SBC-3 table 46): op 8Bh, ORPROTECT/DPO/FUA in byte 1, LBA, length.
fn orwrite(flags: u8, lba: u64, blocks: u32) -> [u8; 16] {
    cdb16(0x8B, flags, lba, blocks)
}

#[test]
fn orwrite_ors_the_data_into_the_blocks() {
    let mut rig = rig();
    rig.mem.data[512..1024].fill(0x0F);
    rig.mem.data[1024..1536].fill(0x81);
    let r = rig.run(&orwrite(0x08, 1, 2), &[0xF0; 1024]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, 1024);
    assert!(rig.mem.data[512..1024].iter().all(|&b| b == 0xFF));
    assert!(rig.mem.data[1024..1536].iter().all(|&b| b == 0xF1));
    assert!(rig.mem.data[..512].iter().all(|&b| b == 0));
    // Read, then one write with the FUA asked for.
    assert!(matches!(
        rig.mem.log[..],
        [
            IoRequest::Read {
                offset: 512,
                len: 1024
            },
            IoRequest::Write {
                offset: 512,
                fua: true,
                ..
            }
        ]
    ));
}

#[rstest]
#[case::orprotect(orwrite(0x20, 0, 1).to_vec(), 512, INVALID_FIELD)]
#[case::beyond_end(orwrite(0, BLOCKS - 1, 2).to_vec(), 1024, LBA_OOB)]
#[case::zero_blocks(orwrite(0, 0, 0).to_vec(), 0, GOOD)]
#[case::short_data(orwrite(0, 0, 2).to_vec(), 512, (Status::CheckCondition, 0x05, 0x1A, 0x00))]
fn orwrite_checks(#[case] cdb: Vec<u8>, #[case] len: usize, #[case] want: (Status, u8, u8, u8)) {
    let mut rig = rig();
    assert_eq!(outcome(&rig.run(&cdb, &vec![1; len])), want);
    assert!(rig.mem.log.is_empty());
}

#[test]
fn orwrite_on_a_read_only_unit_is_write_protected() {
    let mut cfg = config(Capabilities::default());
    cfg.read_only = true;
    let mut rig = Rig::with(cfg);
    assert_eq!(
        outcome(&rig.run(&orwrite(0, 0, 1), &[1; 512])),
        WRITE_PROTECTED
    );
}

/// START STOP UNIT (SBC-3 table 110): IMMED, POWER CONDITION MODIFIER, POWER CONDITION,
/// NO_FLUSH, LOEJ, START.
fn start_stop(
    immed: bool,
    modifier: u8,
    pc: u8,
    no_flush: bool,
    loej: bool,
    start: bool,
) -> [u8; 6] {
    [
        0x1B,
        u8::from(immed),
        0,
        modifier,
        (pc << 4) | (u8::from(no_flush) << 2) | (u8::from(loej) << 1) | u8::from(start),
        0,
    ]
}

#[test]
fn stop_flushes_and_makes_medium_access_not_ready_until_start() {
    let mut rig = rig();
    let r = rig.run(&start_stop(false, 0, 0, false, false, false), &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(rig.mem.log, [IoRequest::Flush]);
    assert_eq!(outcome(&rig.run(&[0, 0, 0, 0, 0, 0], &[])), NOT_READY_INIT);
    assert_eq!(
        outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])),
        NOT_READY_INIT
    );
    assert_eq!(
        outcome(&rig.run(&cdb10(0x2A, 0, 0, 1), &[1; 512])),
        NOT_READY_INIT
    );
    // Commands that do not touch the medium still work.
    assert_eq!(outcome(&rig.run(&inquiry(false, 0, 96), &[])), GOOD);
    assert_eq!(outcome(&rig.run(&read_capacity16(32), &[])), GOOD);
    // START=1 (IMMED as well) makes it ready.
    assert_eq!(
        outcome(&rig.run(&start_stop(true, 0, 0, false, false, true), &[])),
        GOOD
    );
    assert_eq!(outcome(&rig.run(&[0, 0, 0, 0, 0, 0], &[])), GOOD);
    assert_eq!(outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])), GOOD);
}

#[test]
fn stop_with_no_flush_does_not_flush_and_active_starts() {
    let mut rig = rig();
    assert_eq!(
        outcome(&rig.run(&start_stop(false, 0, 0, true, false, false), &[])),
        GOOD
    );
    assert!(rig.mem.log.is_empty());
    assert_eq!(outcome(&rig.run(&[0, 0, 0, 0, 0, 0], &[])), NOT_READY_INIT);
    // POWER CONDITION ACTIVE (1h): START is ignored, the unit is ready.
    assert_eq!(
        outcome(&rig.run(&start_stop(false, 0, 1, false, false, false), &[])),
        GOOD
    );
    assert_eq!(outcome(&rig.run(&[0, 0, 0, 0, 0, 0], &[])), GOOD);
}

#[rstest]
#[case::idle_b(start_stop(false, 1, 2, false, false, false), GOOD, None)]
#[case::standby_y(start_stop(false, 1, 3, false, false, false), GOOD, None)]
#[case::lu_control(start_stop(false, 0, 7, false, false, false), GOOD, None)]
#[case::loej_not_removable(start_stop(false, 0, 0, false, true, false), INVALID_FIELD, Some([0xC9, 0, 4]))]
#[case::force_idle_0(start_stop(false, 0, 0xA, false, false, false), INVALID_FIELD, Some([0xCF, 0, 4]))]
#[case::reserved_power_condition(start_stop(false, 0, 4, false, false, false), INVALID_FIELD, Some([0xCF, 0, 4]))]
#[case::active_with_modifier(start_stop(false, 1, 1, false, false, false), INVALID_FIELD, Some([0xCB, 0, 3]))]
#[case::idle_modifier_3(start_stop(false, 3, 2, false, false, false), INVALID_FIELD, Some([0xCB, 0, 3]))]
#[case::reserved_byte4_bit3([0x1B, 0, 0, 0, 0x08, 0], INVALID_FIELD, Some([0xCB, 0, 4]))]
fn start_stop_fields(
    #[case] cdb: [u8; 6],
    #[case] want: (Status, u8, u8, u8),
    #[case] field: Option<[u8; 3]>,
) {
    let mut rig = rig();
    let r = rig.run(&cdb, &[]);
    assert_eq!(outcome(&r), want);
    if let Some(f) = field {
        assert_eq!(&r.sense.unwrap()[15..18], &f);
    }
    assert_eq!(
        outcome(&rig.run(&[0, 0, 0, 0, 0, 0], &[])),
        GOOD,
        "still ready"
    );
}

/// PREVENT ALLOW MEDIUM REMOVAL (SBC-3 table 41): PREVENT in byte 4 bits 1:0.
#[rstest]
#[case::allow(0, GOOD)]
#[case::prevent(1, GOOD)]
#[case::obsolete_2(2, INVALID_FIELD)]
#[case::obsolete_3(3, INVALID_FIELD)]
fn prevent_allow(#[case] prevent: u8, #[case] want: (Status, u8, u8, u8)) {
    assert_eq!(outcome(&rig().run(&[0x1E, 0, 0, 0, prevent, 0], &[])), want);
}

/// READ DEFECT DATA(10) (SBC-3 table 74) and (12) (table 77): empty lists, valid as asked.
#[rstest]
#[case::rdd10_both_long_block(vec![0x37, 0, 0x1B, 0, 0, 0, 0, 0, 32, 0], Ok(vec![0, 0x1B, 0, 0]))]
#[case::rdd10_glist_short_block(vec![0x37, 0, 0x08, 0, 0, 0, 0, 0, 32, 0], Ok(vec![0, 0x08, 0, 0]))]
#[case::rdd10_truncated(vec![0x37, 0, 0x18, 0, 0, 0, 0, 0, 2, 0], Ok(vec![0, 0x18]))]
#[case::rdd12_plist_physical(vec![0xB7, 0x15, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], Ok(vec![0, 0x15, 0, 0, 0, 0, 0, 0]))]
#[case::rdd10_reserved_format(vec![0x37, 0, 0x19, 0, 0, 0, 0, 0, 32, 0], Err([0xCA, 0, 2]))]
#[case::rdd12_reserved_bit(vec![0xB7, 0x20, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], Err([0xCD, 0, 1]))]
fn read_defect_data(#[case] cdb: Vec<u8>, #[case] want: Result<Vec<u8>, [u8; 3]>) {
    let r = rig().run(&cdb, &[]);
    match want {
        Ok(data) => {
            assert_eq!(outcome(&r), GOOD);
            assert_eq!(&r.data_in[..], &data[..]);
        }
        Err(field) => {
            assert_eq!(outcome(&r), INVALID_FIELD);
            assert_eq!(&r.sense.unwrap()[15..18], &field);
        }
    }
}

/// The Block Limits page's MAXIMUM WRITE SAME LENGTH (16 MiB: 32768 blocks of 512) is
/// enforced: one more block is INVALID FIELD IN CDB, with nothing written.
#[test]
fn write_same_length_limit() {
    let mut cfg = config(Capabilities::default());
    cfg.geometry.num_blocks = 65536;
    let mut rig = Rig::with(cfg);
    let limits = rig.run(&inquiry(true, 0xB0, 64), &[]).data_in;
    let max = u64::from_be_bytes(limits[36..44].try_into().unwrap());
    assert_eq!(max, 32768);
    assert_eq!(
        outcome(&rig.run(&cdb16(0x93, 0, 0, 32769), &[1; 512])),
        INVALID_FIELD
    );
    assert!(rig.mem.log.is_empty());
    assert_eq!(
        outcome(&rig.run(&cdb16(0x93, 0, 0, 32768), &[1; 512])),
        GOOD
    );
    assert!(rig.mem.data[..16 << 20].iter().all(|&b| b == 1));
}
