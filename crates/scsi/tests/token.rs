//! POPULATE TOKEN, WRITE USING TOKEN and RECEIVE ROD TOKEN INFORMATION (Windows' ODX)
//! through the whole dispatch. CDBs and parameter lists are built from the SBC-3 and SPC-4
//! tables written out here, and the answers read by those tables, not by the crate.

mod common;

use common::*;
use rstest::rstest;
use scsi::Status;
use std::time::{Duration, Instant};
use store_api::Capabilities;

const ILLEGAL_REQUEST: u8 = 0x05;
const DATA_PROTECT: u8 = 0x07;

/// POPULATE TOKEN / WRITE USING TOKEN CDB (SBC-3 tables 12 and 105): 83h, SERVICE ACTION
/// 10h or 11h, reserved bytes 2..6, LIST IDENTIFIER in 6..10, PARAMETER LIST LENGTH in
/// 10..14, GROUP NUMBER, CONTROL.
fn token_cdb(sa: u8, list_id: u32, param_len: usize) -> [u8; 16] {
    let (id, l) = (list_id.to_be_bytes(), (param_len as u32).to_be_bytes());
    [
        0x83, sa, 0, 0, 0, 0, id[0], id[1], id[2], id[3], l[0], l[1], l[2], l[3], 0, 0,
    ]
}

/// RECEIVE ROD TOKEN INFORMATION CDB (SPC-4 table 129): 84h, SERVICE ACTION 07h, LIST
/// IDENTIFIER in 2..6, ALLOCATION LENGTH in 10..14.
fn rrti_cdb(list_id: u32, alloc: u32) -> [u8; 16] {
    let (id, a) = (list_id.to_be_bytes(), alloc.to_be_bytes());
    [
        0x84, 0x07, id[0], id[1], id[2], id[3], 0, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0,
    ]
}

/// Block device range descriptors (SBC-3 table 16): LBA (8), NUMBER OF LOGICAL BLOCKS (4),
/// reserved (4).
fn range_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut d = Vec::new();
    for &(lba, blocks) in ranges {
        d.extend(lba.to_be_bytes());
        d.extend(blocks.to_be_bytes());
        d.extend([0; 4]);
    }
    d
}

/// POPULATE TOKEN parameter list (SBC-3 table 13): POPULATE TOKEN DATA LENGTH (bytes
/// after it), RTV (bit 1) and IMMED (bit 0) in byte 2, INACTIVITY TIMEOUT (4..8), ROD TYPE
/// (8..12), BLOCK DEVICE RANGE DESCRIPTOR LIST LENGTH (14..16), the descriptors.
fn pt_list(inactivity: u32, rod_type: Option<u32>, ranges: &[(u64, u32)]) -> Vec<u8> {
    let r = range_list(ranges);
    let mut p = vec![0u8; 16];
    p[0..2].copy_from_slice(&((14 + r.len()) as u16).to_be_bytes());
    p[4..8].copy_from_slice(&inactivity.to_be_bytes());
    if let Some(t) = rod_type {
        p[2] |= 0x02;
        p[8..12].copy_from_slice(&t.to_be_bytes());
    }
    p[14..16].copy_from_slice(&(r.len() as u16).to_be_bytes());
    p.extend(r);
    p
}

/// WRITE USING TOKEN parameter list (SBC-3 table 106): WRITE USING TOKEN DATA LENGTH,
/// DEL_TKN (bit 1) and IMMED (bit 0) in byte 2, OFFSET INTO ROD (8..16), ROD TOKEN
/// (16..528), BLOCK DEVICE RANGE DESCRIPTOR LIST LENGTH (534..536), the descriptors.
fn wut_list(token: &[u8], offset: u64, del_tkn: bool, ranges: &[(u64, u32)]) -> Vec<u8> {
    assert_eq!(token.len(), 512);
    let r = range_list(ranges);
    let mut p = vec![0u8; 536];
    p[0..2].copy_from_slice(&((534 + r.len()) as u16).to_be_bytes());
    if del_tkn {
        p[2] |= 0x02;
    }
    p[8..16].copy_from_slice(&offset.to_be_bytes());
    p[16..528].copy_from_slice(token);
    p[534..536].copy_from_slice(&(r.len() as u16).to_be_bytes());
    p.extend(r);
    p
}

/// The block device zero ROD token (SBC-3: ROD TYPE FFFF0001h, ROD TOKEN LENGTH 01F8h).
fn zero_token() -> Vec<u8> {
    let mut t = vec![0u8; 512];
    t[0..4].copy_from_slice(&0xFFFF_0001u32.to_be_bytes());
    t[6..8].copy_from_slice(&0x01F8u16.to_be_bytes());
    t
}

/// RECEIVE ROD TOKEN INFORMATION parameter data, read by SPC-4 tables 130 and 131.
#[derive(Debug)]
struct Info {
    service_action: u8,
    status: u8,
    completion_status: u8,
    units: u8,
    transfer_count: u64,
    sense: Vec<u8>,
    token: Option<Vec<u8>>,
}

fn info(data: &[u8]) -> Info {
    let available = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
    assert_eq!(available + 4, data.len(), "AVAILABLE DATA counts the rest");
    let sense_field = usize::from(data[13]);
    let sense = data[32..32 + usize::from(data[14])].to_vec();
    let at = 32 + sense_field;
    let tokens_len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    let token = (tokens_len > 0).then(|| {
        assert_eq!(tokens_len, 2 + 512, "one ROD token descriptor");
        data[at + 6..at + 6 + 512].to_vec()
    });
    Info {
        service_action: data[4] & 0x1F,
        status: data[5] & 0x7F,
        completion_status: data[12],
        units: data[15],
        transfer_count: u64::from_be_bytes(data[16..24].try_into().unwrap()),
        sense,
        token,
    }
}

/// LUN `lun` as the wire has it (SAM-5 peripheral device addressing).
fn wire(lun: u16) -> u64 {
    scsi::encode_lun(lun)
}

fn populate(rig: &mut Rig, lun: u16, list_id: u32, p: &[u8]) -> scsi::Response {
    rig.run_lun(wire(lun), &token_cdb(0x10, list_id, p.len()), p)
}

fn write_using(rig: &mut Rig, lun: u16, list_id: u32, p: &[u8]) -> scsi::Response {
    rig.run_lun(wire(lun), &token_cdb(0x11, list_id, p.len()), p)
}

fn rrti(rig: &mut Rig, lun: u16, list_id: u32) -> Info {
    let r = rig.run_lun(wire(lun), &rrti_cdb(list_id, 4096), &[]);
    assert_eq!(outcome(&r), GOOD);
    info(&r.data_in)
}

/// POPULATE TOKEN on `lun` over `ranges`, then the token RECEIVE ROD TOKEN INFORMATION
/// returns.
fn token_of(rig: &mut Rig, lun: u16, ranges: &[(u64, u32)]) -> Vec<u8> {
    let r = populate(rig, lun, 7, &pt_list(0, None, ranges));
    assert_eq!(outcome(&r), GOOD);
    rrti(rig, lun, 7)
        .token
        .expect("POPULATE TOKEN made a token")
}

const B: usize = BS as usize;

#[rstest]
#[case::offloaded(true)]
#[case::read_and_written(false)]
fn a_token_copies_its_blocks_to_another_logical_unit(#[case] offload: bool) {
    let mut rig = two_luns();
    rig.offload = offload;
    let data = pattern(16 * B, 5);
    rig.mem.data[100 * B..116 * B].copy_from_slice(&data);
    let token = token_of(&mut rig, 0, &[(100, 16)]);
    let r = write_using(&mut rig, 1, 9, &wut_list(&token, 0, false, &[(40, 16)]));
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(&rig.store(1).data[40 * B..56 * B], &data[..]);
    let i = rrti(&mut rig, 1, 9);
    assert_eq!(
        (i.service_action, i.status, i.units, i.transfer_count),
        (0x11, 0x01, 0xF1, 16),
        "WRITE USING TOKEN, completed without errors, 16 logical blocks"
    );
    assert_eq!(i.token, None);
    assert_eq!(rig.offloaded > 0, offload);
}

#[test]
fn receive_rod_token_information_returns_the_token_as_spc4_formats_it() {
    let mut rig = Rig::new(Capabilities::default());
    let r = populate(&mut rig, 0, 3, &pt_list(0, None, &[(0, 8), (64, 24)]));
    assert_eq!(outcome(&r), GOOD);
    let i = rrti(&mut rig, 0, 3);
    assert_eq!(
        (
            i.service_action,
            i.status,
            i.completion_status,
            i.units,
            i.transfer_count
        ),
        (0x10, 0x01, 0x00, 0xF1, 32),
        "POPULATE TOKEN, completed, GOOD, 32 logical blocks represented"
    );
    assert!(i.sense.is_empty());
    let t = i.token.unwrap();
    // ROD token (SPC-4 table 117): ROD TYPE "access upon reference", ROD TOKEN LENGTH
    // 01F8h, COPY MANAGER ROD TOKEN IDENTIFIER, then the CREATOR LOGICAL UNIT DESCRIPTOR:
    // an identification CSCD descriptor (E4h) with the LU's NAA designator (code set 1,
    // type 3, 16 bytes) and its 512-byte DISK BLOCK LENGTH; NUMBER OF BYTES REPRESENTED.
    assert_eq!(&t[0..4], &[0x00, 0x80, 0x00, 0x00]);
    assert_eq!(&t[6..8], &[0x01, 0xF8]);
    assert_eq!(&t[16..24], &[0xE4, 0, 0, 0, 0x01, 0x03, 0x00, 16]);
    assert_eq!(&t[24..40], &config(Capabilities::default()).naa_id);
    assert_eq!(&t[45..48], &[0x00, 0x02, 0x00]);
    assert_eq!(u128::from_be_bytes(t[48..64].try_into().unwrap()), 32 * 512);
    // Two tokens over the same blocks are different tokens (random identifier and tail).
    let again = token_of(&mut rig, 0, &[(0, 8), (64, 24)]);
    assert_ne!(&t[8..16], &again[8..16]);
    assert_ne!(&t[128..], &again[128..]);
}

#[test]
fn offset_into_rod_and_several_ranges_map_the_rods_blocks_in_order() {
    let mut rig = two_luns();
    let a = pattern(4 * B, 1);
    let b = pattern(4 * B, 2);
    rig.mem.data[10 * B..14 * B].copy_from_slice(&a);
    rig.mem.data[50 * B..54 * B].copy_from_slice(&b);
    // The ROD is A's 4 blocks then B's 4; from block 2 of it on: A2 A3 B0 B1 B2 B3.
    let token = token_of(&mut rig, 0, &[(10, 4), (50, 4)]);
    let r = write_using(
        &mut rig,
        1,
        1,
        &wut_list(&token, 2, false, &[(0, 3), (20, 3)]),
    );
    assert_eq!(outcome(&r), GOOD);
    let lun1 = &rig.store(1).data;
    assert_eq!(&lun1[0..2 * B], &a[2 * B..]);
    assert_eq!(&lun1[2 * B..3 * B], &b[..B]);
    assert_eq!(&lun1[20 * B..23 * B], &b[B..]);
    assert!(
        lun1[3 * B..20 * B].iter().all(|&x| x == 0),
        "nothing else written"
    );
}

#[test]
fn ranges_longer_than_the_rod_get_what_it_holds_and_say_so() {
    let mut rig = two_luns();
    let data = pattern(4 * B, 8);
    rig.mem.data[..4 * B].copy_from_slice(&data);
    let token = token_of(&mut rig, 0, &[(0, 4)]);
    let r = write_using(&mut rig, 1, 2, &wut_list(&token, 1, false, &[(100, 10)]));
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(&rig.store(1).data[100 * B..103 * B], &data[B..]);
    let i = rrti(&mut rig, 1, 2);
    assert_eq!(
        (i.status, i.transfer_count),
        (0x03, 3),
        "completed with partial ROD token usage: 3 of the 10 blocks asked for"
    );
}

#[test]
fn the_token_stands_for_the_blocks_as_they_are_when_it_is_used() {
    // Access upon reference: a write to the source after POPULATE TOKEN is what the
    // WRITE USING TOKEN copies.
    let mut rig = two_luns();
    let token = token_of(&mut rig, 0, &[(0, 2)]);
    let later = pattern(2 * B, 4);
    let r = rig.run(&cdb10(0x2A, 0, 0, 2), &later);
    assert_eq!(outcome(&r), GOOD);
    let r = write_using(&mut rig, 1, 1, &wut_list(&token, 0, false, &[(0, 2)]));
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(&rig.store(1).data[..2 * B], &later[..]);
}

#[test]
fn a_token_within_one_logical_unit_may_overlap_its_destination() {
    let mut rig = Rig::new(Capabilities::default());
    let data = pattern(8 * B, 6);
    rig.mem.data[..8 * B].copy_from_slice(&data);
    let token = token_of(&mut rig, 0, &[(0, 8)]);
    let r = write_using(&mut rig, 0, 1, &wut_list(&token, 0, false, &[(4, 8)]));
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(&rig.mem.data[4 * B..12 * B], &data[..]);
}

#[rstest]
#[case::write_zeroes(true)]
#[case::writes_of_zeroes(false)]
fn the_block_device_zero_token_writes_zeroes(#[case] write_zeroes: bool) {
    let caps = Capabilities {
        write_zeroes,
        ..Capabilities::default()
    };
    let mut rig = Rig::new(caps);
    rig.mem.data.fill(0xAB);
    let r = write_using(
        &mut rig,
        0,
        1,
        &wut_list(&zero_token(), 0, false, &[(8, 4), (30, 2)]),
    );
    assert_eq!(outcome(&r), GOOD);
    let d = &rig.mem.data;
    assert!(d[8 * B..12 * B].iter().all(|&x| x == 0));
    assert!(d[30 * B..32 * B].iter().all(|&x| x == 0));
    assert!(
        d[12 * B..30 * B].iter().all(|&x| x == 0xAB),
        "only the ranges"
    );
    assert_eq!(rrti(&mut rig, 0, 1).transfer_count, 6);
    let used_write_zeroes = rig
        .mem
        .log
        .iter()
        .any(|r| matches!(r, store_api::IoRequest::WriteZeroes { .. }));
    assert_eq!(used_write_zeroes, write_zeroes);
}

#[test]
fn an_unknown_or_altered_token_is_refused_and_nothing_is_written() {
    let mut rig = two_luns();
    rig.mem.data[..B].fill(7);
    let mut token = token_of(&mut rig, 0, &[(0, 1)]);
    token[300] ^= 1;
    let r = write_using(&mut rig, 1, 1, &wut_list(&token, 0, false, &[(0, 1)]));
    // ILLEGAL REQUEST, INVALID TOKEN OPERATION, TOKEN UNKNOWN (23h/04h).
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x23, 0x04)
    );
    assert!(rig.store(1).data[..B].iter().all(|&x| x == 0));
    let i = rrti(&mut rig, 1, 1);
    assert_eq!(i.status, 0x02, "completed with errors");
    assert_eq!(i.completion_status, 0x02, "CHECK CONDITION");
    assert_eq!(
        (i.sense[2] & 0x0F, i.sense[12], i.sense[13]),
        (ILLEGAL_REQUEST, 0x23, 0x04)
    );
    let mut other_type = token.clone();
    other_type[0..4].copy_from_slice(&0x0080_0001u32.to_be_bytes());
    let r = write_using(&mut rig, 1, 1, &wut_list(&other_type, 0, false, &[(0, 1)]));
    // UNSUPPORTED TOKEN TYPE (23h/01h).
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x23, 0x01)
    );
}

#[test]
fn a_token_expires_after_its_inactivity_timeout_unless_used() {
    let mut rig = two_luns();
    let r = populate(&mut rig, 0, 1, &pt_list(5, None, &[(0, 1)]));
    assert_eq!(outcome(&r), GOOD);
    let token = rrti(&mut rig, 0, 1).token.unwrap();
    let t0 = Instant::now();
    let tick = |rig: &mut Rig, s: u64| rig.target.expire_rod_tokens(t0 + Duration::from_secs(s));
    tick(&mut rig, 0); // the first tick that sees it idle starts its timeout
    tick(&mut rig, 4);
    let use_it = |rig: &mut Rig| write_using(rig, 1, 2, &wut_list(&token, 0, false, &[(0, 1)]));
    assert_eq!(outcome(&use_it(&mut rig)), GOOD, "4 s idle of 5");
    // The use starts the timeout again.
    tick(&mut rig, 8);
    tick(&mut rig, 12);
    assert_eq!(rig.target.rod_tokens_valid(), 1, "4 s idle since its use");
    tick(&mut rig, 13);
    assert_eq!(rig.target.rod_tokens_valid(), 0);
    // TOKEN EXPIRED (23h/07h).
    assert_eq!(
        outcome(&use_it(&mut rig)),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x23, 0x07)
    );
}

#[test]
fn the_default_inactivity_timeout_is_what_the_vpd_page_says() {
    let mut rig = Rig::new(Capabilities::default());
    token_of(&mut rig, 0, &[(0, 1)]);
    let default = default_inactivity_timeout(&mut rig);
    let t0 = Instant::now();
    rig.target.expire_rod_tokens(t0);
    rig.target
        .expire_rod_tokens(t0 + Duration::from_secs(u64::from(default) - 1));
    assert_eq!(rig.target.rod_tokens_valid(), 1);
    rig.target
        .expire_rod_tokens(t0 + Duration::from_secs(u64::from(default)));
    assert_eq!(rig.target.rod_tokens_valid(), 0);
}

#[test]
fn del_tkn_ends_the_token_with_the_write() {
    let mut rig = two_luns();
    let token = token_of(&mut rig, 0, &[(0, 1)]);
    let r = write_using(&mut rig, 1, 1, &wut_list(&token, 0, true, &[(0, 1)]));
    assert_eq!(outcome(&r), GOOD);
    let r = write_using(&mut rig, 1, 1, &wut_list(&token, 0, false, &[(0, 1)]));
    // TOKEN DELETED (23h/09h).
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x23, 0x09)
    );
}

#[test]
fn removing_the_source_logical_unit_revokes_its_tokens() {
    let mut rig = two_luns();
    let token = token_of(&mut rig, 1, &[(0, 1)]);
    let kept = token_of(&mut rig, 0, &[(0, 1)]);
    rig.target.remove_lun(1);
    let r = write_using(&mut rig, 0, 1, &wut_list(&token, 0, false, &[(9, 1)]));
    // TOKEN REVOKED (23h/06h).
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x23, 0x06)
    );
    let r = write_using(&mut rig, 0, 1, &wut_list(&kept, 0, false, &[(9, 1)]));
    assert_eq!(outcome(&r), GOOD, "another LU's token is kept");
}

#[test]
fn under_write_exclusive_another_host_may_make_a_token_but_not_write_with_one() {
    let mut rig = Rig::new(Capabilities::default());
    for n in [1u64, 2] {
        let port = scsi::InitiatorPort {
            name: format!("iqn.2026-01.test:host{n}"),
            isid: [0x80, 0, 0, 0, 0, n as u8],
        };
        rig.target.open_nexus(n, port);
        rig.run_on(n, 0, &[0; 6], &[]); // TEST UNIT READY takes the POWER ON condition
    }
    // Host 1 registers key 1 and reserves Write Exclusive (PERSISTENT RESERVE OUT, SPC-4
    // table 169: SA, SCOPE|TYPE, PARAMETER LIST LENGTH; table 171: RESERVATION KEY, SERVICE
    // ACTION RESERVATION KEY).
    let prout = |rig: &mut Rig, sa: u8, kind: u8, key: u64, sa_key: u64| {
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        let r = rig.run_on(1, 0, &[0x5F, sa, kind, 0, 0, 0, 0, 0, 24, 0], &p);
        assert_eq!(outcome(&r), GOOD);
    };
    prout(&mut rig, 0x00, 0, 0, 1);
    prout(&mut rig, 0x01, 0x01, 1, 0);
    // Host 2 may read, so it may make a token (SBC-3: POPULATE TOKEN is allowed under
    // Write Exclusive); it may not write, with a token either.
    let p = pt_list(0, None, &[(0, 4)]);
    let r = rig.run_on(2, 0, &token_cdb(0x10, 1, p.len()), &p);
    assert_eq!(outcome(&r), GOOD);
    let r = rig.run_on(2, 0, &rrti_cdb(1, 4096), &[]);
    let token = info(&r.data_in).token.unwrap();
    let p = wut_list(&token, 0, false, &[(100, 4)]);
    let r = rig.run_on(2, 0, &token_cdb(0x11, 2, p.len()), &p);
    assert_eq!(r.status, Status::ReservationConflict);
    let r = rig.run_on(1, 0, &token_cdb(0x11, 2, p.len()), &p);
    assert_eq!(outcome(&r), GOOD, "the holder may");
}

#[test]
fn a_write_in_flight_is_reported_in_progress_and_its_list_identifier_is_busy() {
    let mut rig = two_luns();
    rig.offload = false;
    let token = token_of(&mut rig, 0, &[(0, 4)]);
    let p = wut_list(&token, 0, false, &[(0, 4)]);
    // Started but not driven: its first read waits at LUN 0's store.
    let start = rig.target.start(scsi::Command {
        nexus: 1,
        lun: wire(1),
        cdb: bytes::Bytes::copy_from_slice(&token_cdb(0x11, 4, p.len())),
        data_out: bytes::Bytes::from(p.clone()).into(),
        expected_len: p.len() as u32,
    });
    assert!(matches!(
        start,
        scsi::Start::Copy(_) | scsi::Start::Io { .. }
    ));
    // COPY OPERATION STATUS 11h: in progress, in the foreground.
    assert_eq!(rrti(&mut rig, 1, 4).status, 0x11);
    // The same list identifier again: ILLEGAL REQUEST, OPERATION IN PROGRESS (00h/16h).
    let r = write_using(&mut rig, 1, 4, &p);
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x00, 0x16)
    );
    // The command goes away unfinished (aborted): completed with errors, nothing written.
    drop(start);
    let i = rrti(&mut rig, 1, 4);
    assert_eq!((i.status, i.transfer_count), (0x02, 0));
    assert_eq!(
        outcome(&write_using(&mut rig, 1, 4, &p)),
        GOOD,
        "free again"
    );
}

#[test]
fn immed_is_refused_for_a_write_and_no_parameter_data_is_no_operation() {
    let mut rig = two_luns();
    let mut p = wut_list(&zero_token(), 0, false, &[(0, 1)]);
    p[2] |= 0x01; // IMMED
    rig.store(1).data[..B].fill(9);
    let r = write_using(&mut rig, 1, 1, &p);
    // INVALID FIELD IN PARAMETER LIST at byte 2, bit 0: sense-key specific bytes 15..18
    // are SKSV|C/D 0|BPV|BIT POINTER 0 (88h), FIELD POINTER 0002h.
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x26, 0x00)
    );
    assert_eq!(&r.sense.unwrap()[15..18], &[0x88, 0x00, 0x02]);
    assert!(
        rig.store(1).data[..B].iter().all(|&x| x == 9),
        "nothing written"
    );
    // PARAMETER LIST LENGTH 0: no data, nothing done, GOOD (SBC-3).
    for sa in [0x10, 0x11] {
        let r = rig.run_lun(wire(1), &token_cdb(sa, 1, 0), &[]);
        assert_eq!(outcome(&r), GOOD);
    }
    assert_eq!(rig.target.rod_tokens_valid(), 0);
}

#[test]
fn results_belong_to_the_nexus_and_list_identifier_that_made_them() {
    let mut rig = Rig::new(Capabilities::default());
    let p = pt_list(0, None, &[(0, 1)]);
    let r = rig.run_on(1, 0, &token_cdb(0x10, 5, p.len()), &p);
    assert_eq!(outcome(&r), GOOD);
    for (nexus, list_id) in [(2, 5), (1, 6)] {
        let r = rig.run_on(nexus, 0, &rrti_cdb(list_id, 4096), &[]);
        // INVALID FIELD IN CDB (the LIST IDENTIFIER).
        assert_eq!(
            outcome(&r),
            (Status::CheckCondition, ILLEGAL_REQUEST, 0x24, 0x00)
        );
    }
    let r = rig.run_on(1, 0, &rrti_cdb(5, 4096), &[]);
    assert_eq!(outcome(&r), GOOD);
    // The allocation length trims the answer.
    let r = rig.run_on(1, 0, &rrti_cdb(5, 20), &[]);
    assert_eq!(r.data_in.len(), 20);
}

#[rstest]
// Ranges that overlap: INVALID FIELD IN PARAMETER LIST.
#[case::overlapping(pt_list(0, None, &[(0, 8), (4, 8)]), (0x26, 0x00))]
// A range past the capacity (2048 blocks): LOGICAL BLOCK ADDRESS OUT OF RANGE.
#[case::past_the_end(pt_list(0, None, &[(2040, 9)]), (0x21, 0x00))]
// More than MAXIMUM RANGE DESCRIPTORS (64): TOO MANY SEGMENT DESCRIPTORS.
#[case::too_many_ranges(pt_list(0, None, &(0..65).map(|i| (i * 2, 1)).collect::<Vec<_>>()), (0x26, 0x08))]
// INACTIVITY TIMEOUT above the maximum (600 s): INVALID FIELD IN PARAMETER LIST.
#[case::timeout_too_long(pt_list(601, None, &[(0, 1)]), (0x26, 0x00))]
// RTV with a ROD type other than access upon reference.
#[case::other_rod_type(pt_list(0, Some(0x0080_0001), &[(0, 1)]), (0x26, 0x00))]
// No range descriptor: shorter than the header and one descriptor.
#[case::no_ranges(pt_list(0, None, &[]), (0x1A, 0x00))]
fn populate_token_refuses_a_bad_parameter_list(#[case] p: Vec<u8>, #[case] asc: (u8, u8)) {
    let mut rig = Rig::new(Capabilities::default());
    let r = populate(&mut rig, 0, 1, &p);
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, asc.0, asc.1)
    );
    assert_eq!(rig.target.rod_tokens_valid(), 0);
}

#[test]
fn write_using_token_refuses_an_offset_past_the_rod_and_a_protected_logical_unit() {
    let mut rig = two_luns();
    let token = token_of(&mut rig, 0, &[(0, 4)]);
    let r = write_using(&mut rig, 1, 1, &wut_list(&token, 4, false, &[(0, 1)]));
    // INVALID FIELD IN PARAMETER LIST, pointing at OFFSET INTO ROD (byte 8): sense-key
    // specific bytes 15..18 = SKSV, C/D 0, FIELD POINTER 8.
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x26, 0x00)
    );
    let sense = r.sense.unwrap();
    assert_eq!(&sense[15..18], &[0x80, 0x00, 0x08]);
    let mut rig = Rig::new(Capabilities::default());
    let mut cfg = config(Capabilities::default());
    cfg.naa_id = naa1();
    cfg.read_only = true;
    rig.add_lun(1, cfg);
    let token = token_of(&mut rig, 0, &[(0, 4)]);
    let r = write_using(&mut rig, 1, 1, &wut_list(&token, 0, false, &[(0, 4)]));
    assert_eq!(outcome(&r).1, DATA_PROTECT);
}

/// DEFAULT INACTIVITY TIMEOUT from the Third-party Copy VPD page's Block Device ROD Token
/// Limits descriptor.
fn default_inactivity_timeout(rig: &mut Rig) -> u32 {
    let page = third_party_copy_page(rig);
    let d = descriptor(&page, 0x0000).expect("Block Device ROD Token Limits");
    u32::from_be_bytes(d[16..20].try_into().unwrap())
}

fn third_party_copy_page(rig: &mut Rig) -> Vec<u8> {
    let r = rig.run(&inquiry(true, 0x8F, 4096), &[]);
    assert_eq!(outcome(&r), GOOD);
    r.data_in.to_vec()
}

/// The third-party copy descriptor of type `kind` (SPC-4 table 589: TYPE (2), LENGTH (2)),
/// whole.
fn descriptor(page: &[u8], kind: u16) -> Option<Vec<u8>> {
    let mut at = 4;
    while at + 4 <= page.len() {
        let len = usize::from(u16::from_be_bytes([page[at + 2], page[at + 3]]));
        if u16::from_be_bytes([page[at], page[at + 1]]) == kind {
            return Some(page[at..at + 4 + len].to_vec());
        }
        at += 4 + len;
    }
    None
}

#[test]
fn the_third_party_copy_page_offers_rod_tokens() {
    let mut rig = Rig::new(Capabilities::default());
    let page = third_party_copy_page(&mut rig);
    // Block Device ROD Token Limits (SBC-3 table 216): length 0020h, MAXIMUM RANGE
    // DESCRIPTORS (10..12), MAXIMUM and DEFAULT INACTIVITY TIMEOUT (12..20), MAXIMUM TOKEN
    // TRANSFER SIZE (20..28), OPTIMAL TRANSFER COUNT (28..36).
    let limits = descriptor(&page, 0x0000).unwrap();
    assert_eq!(limits.len(), 36);
    assert_eq!(&limits[10..12], &64u16.to_be_bytes());
    assert_eq!(&limits[12..16], &600u32.to_be_bytes());
    assert_eq!(&limits[16..20], &60u32.to_be_bytes());
    assert_eq!(&limits[20..28], &(1u64 << 24).to_be_bytes());
    assert_eq!(&limits[28..36], &((256u64 << 20) / 512).to_be_bytes());
    // Supported Commands (SPC-4 table 590): 83h with 00h, 10h, 11h; 84h with 00h, 03h, 07h.
    let commands = descriptor(&page, 0x0001).unwrap();
    let list = &commands[5..5 + usize::from(commands[4])];
    assert_eq!(
        list,
        &[0x83, 3, 0x00, 0x10, 0x11, 0x84, 3, 0x00, 0x03, 0x07]
    );
    // Supported ROD Token and ROD Types (SPC-4 table 597): access upon reference with
    // TOKEN IN and TOKEN OUT, the block device zero token with TOKEN IN.
    let types = descriptor(&page, 0x0108).unwrap();
    assert_eq!(&types[6..8], &128u16.to_be_bytes());
    assert_eq!(&types[8..13], &[0x00, 0x80, 0x00, 0x00, 0x03]);
    assert_eq!(&types[72..77], &[0xFF, 0xFF, 0x00, 0x01, 0x02]);
    // ROD Token Features (SPC-4 table 594): no remote tokens, MAXIMUM TOKEN INACTIVITY
    // TIMEOUT, and a block device ROD type specific descriptor (device type 0).
    let features = descriptor(&page, 0x0106).unwrap();
    assert_eq!(features[4] & 0x0F, 0);
    assert_eq!(&features[24..28], &600u32.to_be_bytes());
    assert_eq!(&features[46..48], &48u16.to_be_bytes());
    assert_eq!(features[48], 0x00);
}

#[test]
fn report_supported_operation_codes_lists_the_token_commands() {
    let mut rig = Rig::new(Capabilities::default());
    for (op, sa) in [(0x83u8, 0x10u16), (0x83, 0x11), (0x84, 0x07)] {
        // REPORTING OPTIONS 010b: one command with its service action; SUPPORT 011b.
        let r = rig.run(&rsoc(false, 0b010, op, sa, 64), &[]);
        assert_eq!(outcome(&r), GOOD);
        assert_eq!(r.data_in[1] & 0x07, 0b011, "{op:02x}/{sa:02x} supported");
    }
}

/// Windows copying between two disks of one gateway that are LUs of different targets: the
/// token made through one target is good on the other.
#[rstest]
#[case::offloaded(true)]
#[case::read_and_written(false)]
fn a_token_made_through_one_target_copies_into_another_targets_logical_unit(#[case] offload: bool) {
    let mut gw = Gateway::new(2, true);
    gw.offload = offload;
    let data = pattern(24 * B, 8);
    gw.mem(0).data[200 * B..224 * B].copy_from_slice(&data);
    let p = pt_list(0, None, &[(200, 24)]);
    assert_eq!(outcome(&gw.run(0, &token_cdb(0x10, 4, p.len()), &p)), GOOD);
    let r = gw.run(0, &rrti_cdb(4, 4096), &[]);
    let token = info(&r.data_in).token.expect("a token");
    let p = wut_list(&token, 4, true, &[(10, 20)]);
    let r = gw.run(1, &token_cdb(0x11, 5, p.len()), &p);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(&gw.mem(1).data[10 * B..30 * B], &data[4 * B..]);
    let i = info(&gw.run(1, &rrti_cdb(5, 4096), &[]).data_in);
    assert_eq!(
        (i.service_action, i.status, i.transfer_count),
        (0x11, 0x01, 20)
    );
    // DEL_TKN was set: the token is gone for every target.
    let r = gw.run(1, &token_cdb(0x11, 6, p.len()), &p);
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x23, 0x09),
        "INVALID TOKEN OPERATION, TOKEN DELETED"
    );
}

#[test]
fn a_token_of_a_target_the_copy_manager_does_not_reach_is_unknown() {
    let gw = Gateway::new(2, false);
    let p = pt_list(0, None, &[(0, 8)]);
    assert_eq!(outcome(&gw.run(0, &token_cdb(0x10, 1, p.len()), &p)), GOOD);
    let token = info(&gw.run(0, &rrti_cdb(1, 4096), &[]).data_in)
        .token
        .expect("a token");
    let p = wut_list(&token, 0, false, &[(0, 8)]);
    assert_eq!(
        outcome(&gw.run(1, &token_cdb(0x11, 2, p.len()), &p)),
        (Status::CheckCondition, ILLEGAL_REQUEST, 0x23, 0x04),
        "INVALID TOKEN OPERATION, TOKEN UNKNOWN"
    );
}
