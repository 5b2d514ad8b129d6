//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS through the whole dispatch, with the
//! parameter lists built from the SPC-4 tables written out here (not from the crate).

mod common;

use common::*;
use rstest::rstest;
use scsi::Status;
use store_api::Capabilities;

const COPY_ABORTED: u8 = 0x0A;
const ILLEGAL_REQUEST: u8 = 0x05;

/// EXTENDED COPY(LID1) CDB (SPC-4 table 7): 83h, SERVICE ACTION 00h, PARAMETER LIST
/// LENGTH in bytes 10..14.
fn xcopy_cdb(param_len: u32) -> [u8; 16] {
    let l = param_len.to_be_bytes();
    [
        0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, l[0], l[1], l[2], l[3], 0, 0,
    ]
}

/// RECEIVE COPY RESULTS CDB (SPC-4 table 122): 84h, SERVICE ACTION, LIST IDENTIFIER in
/// byte 2, ALLOCATION LENGTH in bytes 10..14.
fn rcr_cdb(sa: u8, list_id: u8, alloc: u32) -> [u8; 16] {
    let a = alloc.to_be_bytes();
    [
        0x84, sa, list_id, 0, 0, 0, 0, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0,
    ]
}

/// Parameter list header (SPC-4 table 8): LIST IDENTIFIER, STR/LIST ID USAGE/PRIORITY,
/// CSCD DESCRIPTOR LIST LENGTH (2), reserved (4), SEGMENT DESCRIPTOR LIST LENGTH (4),
/// INLINE DATA LENGTH (4).
fn header(list_id: u8, usage: u8, cscd_len: usize, seg_len: usize) -> Vec<u8> {
    let mut h = vec![list_id, usage << 3];
    h.extend((cscd_len as u16).to_be_bytes());
    h.extend([0; 4]);
    h.extend((seg_len as u32).to_be_bytes());
    h.extend([0; 4]);
    h
}

/// Identification CSCD descriptor (SPC-4 6.4.5.3, type E4h) naming an NAA designator
/// (code set 1 binary, association 0, designator type 3), with the block device
/// parameters (SPC-4 table 14: PAD, DISK BLOCK LENGTH in bytes 29..32).
fn cscd(naa: &[u8; 16], block_len: u32) -> Vec<u8> {
    let mut d = vec![0xE4, 0x00, 0, 0, 0x01, 0x03, 0, 16];
    d.extend(naa);
    d.resize(28, 0);
    d.push(0);
    d.extend(&block_len.to_be_bytes()[1..]);
    assert_eq!(d.len(), 32);
    d
}

/// Block device to block device segment descriptor (SPC-4 6.4.6.5, type 02h): DESCRIPTOR
/// LENGTH 0018h, source and destination CSCD indexes, NUMBER OF BLOCKS (2), source and
/// destination LBAs (8 each).
fn segment(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let mut d = vec![0x02, 0x00, 0x00, 0x18];
    d.extend(src.to_be_bytes());
    d.extend(dst.to_be_bytes());
    d.extend([0, 0]);
    d.extend(blocks.to_be_bytes());
    d.extend(src_lba.to_be_bytes());
    d.extend(dst_lba.to_be_bytes());
    assert_eq!(d.len(), 28);
    d
}

fn list(list_id: u8, usage: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
    let c: Vec<u8> = cscds.concat();
    let s: Vec<u8> = segs.concat();
    let mut p = header(list_id, usage, c.len(), s.len());
    p.extend(c);
    p.extend(s);
    p
}

fn naa0() -> [u8; 16] {
    config(Capabilities::default()).naa_id
}

fn xcopy(rig: &mut Rig, p: &[u8]) -> scsi::Response {
    rig.run(&xcopy_cdb(p.len() as u32), p)
}

#[rstest]
#[case::offloaded(true)]
#[case::read_and_written(false)]
fn copies_blocks_within_one_logical_unit(#[case] offload: bool) {
    let mut rig = Rig::new(Capabilities::default());
    rig.offload = offload;
    let data = pattern(16 * BS as usize, 3);
    rig.mem.data[..data.len()].copy_from_slice(&data);
    let p = list(1, 0b10, &[cscd(&naa0(), BS)], &[segment(0, 0, 16, 0, 100)]);
    let r = xcopy(&mut rig, &p);
    assert_eq!(outcome(&r), GOOD);
    let at = 100 * BS as usize;
    assert_eq!(&rig.mem.data[at..at + data.len()], &data[..]);
    assert_eq!(rig.offloaded, usize::from(offload));
}

#[test]
fn copies_between_logical_units_and_several_segments() {
    let mut rig = two_luns();
    let data = pattern(8 * BS as usize, 9);
    rig.mem.data[..data.len()].copy_from_slice(&data);
    let p = list(
        2,
        0b10,
        &[cscd(&naa1(), BS), cscd(&naa0(), BS)],
        &[
            segment(1, 0, 4, 0, 10),
            segment(1, 0, 4, 4, 20),
            segment(1, 1, 8, 0, 30),
        ],
    );
    let r = xcopy(&mut rig, &p);
    assert_eq!(outcome(&r), GOOD);
    let bs = BS as usize;
    let lun1 = &rig.store(1).data;
    assert_eq!(&lun1[10 * bs..14 * bs], &data[..4 * bs]);
    assert_eq!(&lun1[20 * bs..24 * bs], &data[4 * bs..]);
    assert_eq!(
        &rig.mem.data[30 * bs..38 * bs],
        &data[..],
        "the third segment stays on LUN 0"
    );
    assert_eq!(rig.offloaded, 3);
}

#[test]
fn overlapping_ranges_of_one_unit_copy_as_if_read_first() {
    // 40000 blocks (more than two 8 MiB bounce chunks) from LBA 0 to LBA 1000 of one LU.
    let mut cfg = config(Capabilities::default());
    cfg.geometry.num_blocks = 48 << 11;
    let mut rig = Rig::with(cfg);
    let len = 40_000 * BS as usize;
    let data = pattern(len, 5);
    rig.mem.data[..len].copy_from_slice(&data);
    let p = list(
        1,
        0b10,
        &[cscd(&naa0(), BS)],
        &[segment(0, 0, 40_000, 0, 1000)],
    );
    assert_eq!(outcome(&xcopy(&mut rig, &p)), GOOD);
    let at = 1000 * BS as usize;
    assert!(rig.mem.data[at..at + len] == data[..], "memmove semantics");
    assert_eq!(rig.offloaded, 0, "overlap is never handed to the store");
}

/// The checks of the parameter list: status, sense key, ASC, ASCQ (SPC-4 6.4 and the
/// codes of SPC-4 annex D).
#[rstest]
#[case::cut_in_a_cscd(Some(16 + 31), list(1, 0, &[cscd(&naa0(), BS)], &[segment(0, 0, 1, 0, 1)]), (ILLEGAL_REQUEST, 0x1A, 0x00))]
#[case::cut_in_a_segment(Some(16 + 32 + 27), list(1, 0, &[cscd(&naa0(), BS)], &[segment(0, 0, 1, 0, 1)]), (ILLEGAL_REQUEST, 0x1A, 0x00))]
#[case::shorter_than_a_header(Some(15), list(1, 0, &[], &[]), (ILLEGAL_REQUEST, 0x1A, 0x00))]
#[case::fc_cscd(None, { let mut c = cscd(&naa0(), BS); c[0] = 0xE0; list(1, 0, &[c], &[segment(0, 0, 1, 0, 1)]) }, (ILLEGAL_REQUEST, 0x26, 0x07))]
#[case::stream_segment(None, { let mut s = segment(0, 0, 1, 0, 1); s[0] = 0x03; s[3] = 0x10; s.truncate(20); list(1, 0, &[cscd(&naa0(), BS)], &[s]) }, (ILLEGAL_REQUEST, 0x26, 0x09))]
#[case::nine_cscds(None, list(1, 0, &vec![cscd(&naa0(), BS); 9], &[segment(0, 0, 1, 0, 1)]), (ILLEGAL_REQUEST, 0x26, 0x06))]
#[case::sixty_five_segments(None, list(1, 0, &[cscd(&naa0(), BS)], &vec![segment(0, 0, 1, 0, 1); 65]), (ILLEGAL_REQUEST, 0x26, 0x08))]
#[case::over_the_descriptor_list_limit(None, list(1, 0, &vec![cscd(&naa0(), BS); 9], &vec![segment(0, 0, 1, 0, 1); 64]), (ILLEGAL_REQUEST, 0x1A, 0x00))]
#[case::reserved_list_id_usage(None, list(1, 0b01, &[cscd(&naa0(), BS)], &[segment(0, 0, 1, 0, 1)]), (ILLEGAL_REQUEST, 0x26, 0x00))]
#[case::no_such_cscd_index(None, list(1, 0, &[cscd(&naa0(), BS)], &[segment(0, 1, 1, 0, 1)]), (COPY_ABORTED, 0x08, 0x04))]
#[case::unknown_designator(None, list(1, 0, &[cscd(&naa1(), BS)], &[segment(0, 0, 1, 0, 1)]), (COPY_ABORTED, 0x08, 0x04))]
#[case::other_block_length(None, list(1, 0, &[cscd(&naa0(), 4096)], &[segment(0, 0, 1, 0, 1)]), (COPY_ABORTED, 0x0D, 0x03))]
#[case::past_the_end(None, list(1, 0, &[cscd(&naa0(), BS)], &[segment(0, 0, 16, 0, BLOCKS - 1)]), (COPY_ABORTED, 0x00, 0x00))]
fn bad_parameter_lists(
    #[case] cut: Option<usize>,
    #[case] mut p: Vec<u8>,
    #[case] want: (u8, u8, u8),
) {
    let mut rig = Rig::new(Capabilities::default());
    if let Some(n) = cut {
        p.truncate(n);
    }
    let r = xcopy(&mut rig, &p);
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, want.0, want.1, want.2)
    );
    assert!(rig.mem.log.is_empty(), "nothing reached the store");
}

#[test]
fn an_empty_parameter_list_copies_nothing() {
    let mut rig = Rig::new(Capabilities::default());
    assert_eq!(outcome(&rig.run(&xcopy_cdb(0), &[])), GOOD);
}

#[test]
fn write_protected_destination_is_refused() {
    let mut cfg = config(Capabilities::default());
    cfg.read_only = true;
    let mut rig = Rig::with(cfg);
    let p = list(1, 0, &[cscd(&naa0(), BS)], &[segment(0, 0, 1, 0, 1)]);
    assert_eq!(
        outcome(&xcopy(&mut rig, &p)),
        (Status::CheckCondition, 0x07, 0x27, 0x00)
    );
}

#[test]
fn a_store_failure_aborts_the_copy_and_is_reported_in_the_status() {
    let mut rig = Rig::new(Capabilities::default());
    rig.offload = false;
    rig.mem.fail = Some((store_api::Op::Write, store_api::ErrorKind::Io));
    let p = list(7, 0b00, &[cscd(&naa0(), BS)], &[segment(0, 0, 1, 0, 1)]);
    // COPY ABORTED with the store failure's ASC: WRITE ERROR.
    assert_eq!(
        outcome(&xcopy(&mut rig, &p)),
        (Status::CheckCondition, COPY_ABORTED, 0x0C, 0x00)
    );
    let r = rig.run(&rcr_cdb(0x00, 7, 64), &[]);
    // COPY MANAGER STATUS 02h: completed with errors; no segment processed, 0 bytes.
    assert_eq!(&r.data_in[..], &[0, 0, 0, 8, 0x02, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn copy_status_is_held_per_list_identifier_when_asked() {
    let mut rig = Rig::new(Capabilities::default());
    // No copy yet: INVALID FIELD IN CDB pointing at the LIST IDENTIFIER (byte 2).
    let r = rig.run(&rcr_cdb(0x00, 5, 64), &[]);
    assert_eq!(outcome(&r), INVALID_FIELD);
    let s = r.sense.unwrap();
    assert_eq!((s[15], u16::from_be_bytes([s[16], s[17]])), (0xC0, 2));
    // LIST ID USAGE 00b: held.
    let p = list(5, 0b00, &[cscd(&naa0(), BS)], &[segment(0, 0, 8, 0, 64)]);
    assert_eq!(outcome(&xcopy(&mut rig, &p)), GOOD);
    let r = rig.run(&rcr_cdb(0x00, 5, 64), &[]);
    assert_eq!(outcome(&r), GOOD);
    // SPC-4 table 124: AVAILABLE DATA 8, COPY MANAGER STATUS 01h (completed without
    // errors), SEGMENTS PROCESSED 1, TRANSFER COUNT UNITS 00h (bytes), TRANSFER COUNT.
    assert_eq!(
        &r.data_in[..],
        &[0, 0, 0, 8, 0x01, 0, 1, 0x00, 0, 0, 0x10, 0x00]
    );
    // Another nexus has no results under that list identifier.
    let r = rig.run_on(2, 0, &rcr_cdb(0x00, 5, 64), &[]);
    assert_eq!(outcome(&r), INVALID_FIELD);
    // LIST ID USAGE 10b: not held.
    let p = list(6, 0b10, &[cscd(&naa0(), BS)], &[segment(0, 0, 8, 0, 64)]);
    assert_eq!(outcome(&xcopy(&mut rig, &p)), GOOD);
    assert_eq!(outcome(&rig.run(&rcr_cdb(0x00, 6, 64), &[])), INVALID_FIELD);
}

#[test]
fn operating_parameters_known_answer() {
    let mut rig = Rig::new(Capabilities::default());
    let r = rig.run(&rcr_cdb(0x03, 0, 1024), &[]);
    assert_eq!(outcome(&r), GOOD);
    // SPC-4 table 126.
    let mut want = vec![0, 0, 0, 42]; // AVAILABLE DATA: 46 - 4
    want.push(0x01); // SNLID
    want.extend([0, 0, 0]);
    want.extend(8u16.to_be_bytes()); // MAXIMUM CSCD DESCRIPTOR COUNT
    want.extend(64u16.to_be_bytes()); // MAXIMUM SEGMENT DESCRIPTOR COUNT
    want.extend((8u32 * 32 + 64 * 28).to_be_bytes()); // MAXIMUM DESCRIPTOR LIST LENGTH
    want.extend((65535u32 * BS).to_be_bytes()); // MAXIMUM SEGMENT LENGTH
    want.extend(0u32.to_be_bytes()); // MAXIMUM INLINE DATA LENGTH
    want.extend(0u32.to_be_bytes()); // HELD DATA LIMIT
    want.extend(0u32.to_be_bytes()); // MAXIMUM STREAM DEVICE TRANSFER SIZE
    want.extend([0, 0]);
    want.extend(16u16.to_be_bytes()); // TOTAL CONCURRENT COPIES
    want.push(16); // MAXIMUM CONCURRENT COPIES
    want.push(9); // DATA SEGMENT GRANULARITY: 2^9 = 512
    want.extend([0, 0]); // INLINE / HELD DATA GRANULARITY
    want.extend([0, 0, 0]);
    want.push(2); // IMPLEMENTED DESCRIPTOR LIST LENGTH
    want.extend([0x02, 0xE4]); // block to block segments, identification CSCDs
    assert_eq!(&r.data_in[..], &want[..]);
    insta::assert_snapshot!(hex(&r.data_in));
    // Trimmed to the allocation length.
    let r = rig.run(&rcr_cdb(0x03, 0, 10), &[]);
    assert_eq!(&r.data_in[..], &want[..10]);
}

#[test]
fn copy_aborted_sense_snapshot() {
    let mut rig = Rig::new(Capabilities::default());
    let p = list(1, 0, &[cscd(&naa1(), BS)], &[segment(0, 0, 1, 0, 1)]);
    let r = xcopy(&mut rig, &p);
    // Fixed format (SPC-4 table 50): COPY ABORTED, UNREACHABLE COPY TARGET.
    assert_eq!(
        r.sense.as_deref().unwrap(),
        &[0x70, 0, 0x0A, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x08, 0x04, 0, 0, 0, 0]
    );
    insta::assert_snapshot!(hex(r.sense.as_deref().unwrap()));
}

#[test]
fn the_third_party_copy_bit_is_set_in_standard_inquiry() {
    let mut rig = Rig::new(Capabilities::default());
    let r = rig.run(&[0x12, 0, 0, 0, 96, 0], &[]);
    assert_eq!(r.data_in[5] & 0x08, 0x08, "3PC (SPC-4 table 140)");
}

/// Third-party Copy VPD page (SPC-4 7.8.17): page code 8Fh, then the descriptors, each a
/// 2-byte THIRD-PARTY COPY DESCRIPTOR TYPE, a 2-byte length and its fields.
#[test]
fn third_party_copy_vpd_known_answer() {
    let mut rig = Rig::new(Capabilities::default());
    let r = rig.run(&[0x12, 0x01, 0x8F, 0x04, 0x00, 0x00], &[]);
    assert_eq!(outcome(&r), GOOD);
    let mut want = vec![0x00, 0x8F, 0, 0];
    // Supported Commands (0001h): list length 10; 83h with SAs 00h (EXTENDED COPY), 10h
    // (POPULATE TOKEN) and 11h (WRITE USING TOKEN), 84h with SAs 00h, 03h and 07h (RECEIVE
    // ROD TOKEN INFORMATION); padded to 4.
    want.extend([
        0x00, 0x01, 0x00, 0x0C, 10, 0x83, 3, 0x00, 0x10, 0x11, 0x84, 3, 0x00, 0x03, 0x07, 0,
    ]);
    // Parameter Data (0004h), length 1Ch: reserved (4), MAXIMUM CSCD DESCRIPTOR COUNT,
    // MAXIMUM SEGMENT DESCRIPTOR COUNT, MAXIMUM DESCRIPTOR LIST LENGTH, MAXIMUM INLINE DATA
    // LENGTH, reserved (12).
    want.extend([0x00, 0x04, 0x00, 0x1C, 0, 0, 0, 0]);
    want.extend(8u16.to_be_bytes());
    want.extend(64u16.to_be_bytes());
    want.extend((8u32 * 32 + 64 * 28).to_be_bytes());
    want.extend(0u32.to_be_bytes());
    want.extend([0; 12]);
    // Supported Descriptors (0008h): list length 2, 02h and E4h, padded to 4.
    want.extend([0x00, 0x08, 0x00, 0x04, 2, 0x02, 0xE4, 0]);
    // General Copy Operations (8001h), length 1Ch: TOTAL CONCURRENT COPIES, MAXIMUM
    // IDENTIFIED CONCURRENT COPIES, MAXIMUM SEGMENT LENGTH, DATA SEGMENT GRANULARITY
    // (log2), INLINE DATA GRANULARITY, reserved (14).
    want.extend([0x80, 0x01, 0x00, 0x1C]);
    want.extend(16u32.to_be_bytes());
    want.extend(16u32.to_be_bytes());
    want.extend((65535u32 * BS).to_be_bytes());
    want.extend([9, 0]);
    want.extend([0; 14]);
    // Block Device ROD Token Limits (0000h, SBC-3 table 216), length 20h: reserved (6),
    // MAXIMUM RANGE DESCRIPTORS 64, MAXIMUM INACTIVITY TIMEOUT 600 s, DEFAULT INACTIVITY
    // TIMEOUT 60 s, MAXIMUM TOKEN TRANSFER SIZE 2^24 blocks, OPTIMAL TRANSFER COUNT 256 MiB
    // in blocks.
    want.extend([0x00, 0x00, 0x00, 0x20, 0, 0, 0, 0, 0, 0]);
    want.extend(64u16.to_be_bytes());
    want.extend(600u32.to_be_bytes());
    want.extend(60u32.to_be_bytes());
    want.extend((1u64 << 24).to_be_bytes());
    want.extend(((256u64 << 20) / u64::from(BS)).to_be_bytes());
    // ROD Token Features (0106h, SPC-4 table 594), length 5Ch: REMOTE TOKENS 0, reserved
    // (11), MINIMUM TOKEN LIFETIME 1 s, MAXIMUM TOKEN LIFETIME FFFFFFFFh, MAXIMUM TOKEN
    // INACTIVITY TIMEOUT 600 s, reserved (18), ROD DEVICE TYPE SPECIFIC FEATURES
    // DESCRIPTORS LENGTH 30h, and the block device one (table 595): type 00h, length 2Ch,
    // reserved (2), OPTIMAL BLOCK ROD LENGTH GRANULARITY 1, MAXIMUM BYTES IN BLOCK ROD,
    // OPTIMAL BYTES IN BLOCK ROD TRANSFER, OPTIMAL BYTES TO and FROM TOKEN PER SEGMENT,
    // reserved (8).
    want.extend([0x01, 0x06, 0x00, 0x5C]);
    want.extend([0; 12]);
    want.extend(1u32.to_be_bytes());
    want.extend(u32::MAX.to_be_bytes());
    want.extend(600u32.to_be_bytes());
    want.extend([0; 18]);
    want.extend(48u16.to_be_bytes());
    want.extend([0x00, 0, 0x00, 0x2C, 0, 0, 0x00, 0x01]);
    want.extend(((1u64 << 24) * u64::from(BS)).to_be_bytes());
    for _ in 0..3 {
        want.extend((256u64 << 20).to_be_bytes());
    }
    want.extend([0; 8]);
    // Supported ROD Token and ROD Types (0108h, SPC-4 table 597), length 84h: reserved
    // (2), ROD TYPE DESCRIPTORS LENGTH 80h, then two 64-byte descriptors (table 598): ROD
    // TYPE, flags (TOKEN IN 02h, TOKEN OUT 01h), reserved, PREFERENCE INDICATOR, reserved:
    // access upon reference (00800000h) in and out, block device zero (FFFF0001h) in.
    want.extend([0x01, 0x08, 0x00, 0x84, 0, 0, 0x00, 0x80]);
    want.extend([0x00, 0x80, 0x00, 0x00, 0x03]);
    want.extend([0; 59]);
    want.extend([0xFF, 0xFF, 0x00, 0x01, 0x02]);
    want.extend([0; 59]);
    let len = (want.len() - 4) as u16;
    want[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(&r.data_in[..], &want[..]);
    insta::assert_snapshot!(hex(&r.data_in));
}

/// Failover per logical unit: LU 1 is standby through this port (another gateway holds
/// its data fence) while LU 0 is active. An EXTENDED COPY sent to LU 0 that would write
/// LU 1, or read it, is refused as a command to LU 1 would be: NOT READY, LOGICAL UNIT
/// NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE (04h/0Bh, SPC-4 5.16.2.4.4), and nothing
/// is written. A copy within LU 0 still runs.
#[test]
fn a_copy_touching_a_logical_unit_in_standby_here_is_refused() {
    use scsi::{AccessState, Alua, PortGroup};
    let groups = |own, other| {
        Alua::new(
            PortGroup { id: 2, state: own },
            vec![PortGroup {
                id: 1,
                state: other,
            }],
        )
        .unwrap()
    };
    let mut rig = two_luns();
    rig.target
        .set_alua(groups(AccessState::ActiveOptimized, AccessState::Standby));
    assert_eq!(
        rig.target.set_lu_alua(
            1,
            groups(AccessState::Standby, AccessState::ActiveOptimized)
        ),
        Ok(true)
    );
    let data = pattern(4 * BS as usize, 5);
    rig.mem.data[..data.len()].copy_from_slice(&data);
    let standby = (Status::CheckCondition, 0x02, 0x04, 0x0B);
    // LU 0 (CSCD 1) to LU 1 (CSCD 0), then LU 1 to LU 0.
    for seg in [segment(1, 0, 4, 0, 10), segment(0, 1, 4, 10, 0)] {
        let p = list(3, 0, &[cscd(&naa1(), BS), cscd(&naa0(), BS)], &[seg]);
        assert_eq!(outcome(&xcopy(&mut rig, &p)), standby);
    }
    assert!(rig.store(1).data.iter().all(|&b| b == 0), "LU 1 untouched");
    assert_eq!(&rig.mem.data[..data.len()], &data[..], "LU 0 untouched");
    let p = list(4, 0, &[cscd(&naa0(), BS)], &[segment(0, 0, 4, 0, 20)]);
    assert_eq!(outcome(&xcopy(&mut rig, &p)), GOOD);
    let at = 20 * BS as usize;
    assert_eq!(&rig.mem.data[at..at + data.len()], &data[..]);
}

/// RESERVE(6) (SPC-2 7.21.1): 16h, the rest zero.
const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];

/// A copy between the LUs of two targets of one gateway (a layout of one target per LU):
/// sent to target 1, from target 0's LU 0 into its own, and the other way.
#[rstest]
#[case::offloaded(true)]
#[case::read_and_written(false)]
fn copies_between_the_logical_units_of_two_targets(#[case] offload: bool) {
    let mut gw = Gateway::new(2, true);
    gw.offload = offload;
    let data = pattern(32 * BS as usize, 11);
    gw.mem(0).data[..data.len()].copy_from_slice(&data);
    let cscds = [cscd(&naa_of(0), BS), cscd(&naa_of(1), BS)];
    let p = list(1, 0b10, &cscds, &[segment(0, 1, 32, 0, 500)]);
    let r = gw.run(1, &xcopy_cdb(p.len() as u32), &p);
    assert_eq!(outcome(&r), GOOD);
    let at = 500 * BS as usize;
    assert_eq!(&gw.mem(1).data[at..at + data.len()], &data[..]);
    // Target 1's copy manager writes into target 0's LU just as well.
    let p = list(2, 0b10, &cscds, &[segment(1, 0, 8, 500, 1000)]);
    let r = gw.run(1, &xcopy_cdb(p.len() as u32), &p);
    assert_eq!(outcome(&r), GOOD);
    let at = 1000 * BS as usize;
    assert_eq!(
        &gw.mem(0).data[at..at + 8 * BS as usize],
        &data[..8 * BS as usize]
    );
}

#[test]
fn a_target_whose_copy_manager_knows_no_other_targets_cannot_reach_their_logical_units() {
    let gw = Gateway::new(2, false);
    let p = list(
        1,
        0b10,
        &[cscd(&naa_of(0), BS), cscd(&naa_of(1), BS)],
        &[segment(0, 1, 1, 0, 1)],
    );
    let r = gw.run(1, &xcopy_cdb(p.len() as u32), &p);
    // COPY ABORTED, UNREACHABLE COPY TARGET (SPC-4 table 74: 08h/04h).
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, COPY_ABORTED, 0x08, 0x04)
    );
    assert!(gw.mem(1).log.is_empty(), "nothing was written");
}

/// Another target's LU under a reservation is neither read nor written by the copy
/// manager: the command's I_T nexus is not one of that target's.
#[rstest]
#[case::as_source(0, 1)]
#[case::as_destination(1, 0)]
fn another_targets_reserved_logical_unit_is_not_copied(#[case] from: u16, #[case] to: u16) {
    let gw = Gateway::new(2, true);
    assert_eq!(outcome(&gw.run(0, &RESERVE6, &[])), GOOD);
    let p = list(
        1,
        0b10,
        &[cscd(&naa_of(0), BS), cscd(&naa_of(1), BS)],
        &[segment(from, to, 4, 0, 64)],
    );
    let r = gw.run(1, &xcopy_cdb(p.len() as u32), &p);
    assert_eq!(r.status, Status::ReservationConflict);
    assert!(
        gw.mem(0).log.is_empty() && gw.mem(1).log.is_empty(),
        "no store was asked for anything"
    );
    // Released, the copy goes through.
    let release6 = [0x17, 0, 0, 0, 0, 0];
    assert_eq!(outcome(&gw.run(0, &release6, &[])), GOOD);
    assert_eq!(outcome(&gw.run(1, &xcopy_cdb(p.len() as u32), &p)), GOOD);
}
