//! SANITIZE (SBC-3 5.22, 4.11): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE, the NOT READY /
//! SANITIZE IN PROGRESS answers with their progress, and failure mode. CDBs and parameter
//! lists are written out from SBC-3 tables 58 and 60.

mod common;

use bytes::Bytes;
use common::*;
use rstest::rstest;
use scsi::{Command, Start, Status};
use store_api::{Capabilities, ErrorKind, Op};

const OVERWRITE: u8 = 0x01;
const BLOCK_ERASE: u8 = 0x02;
const CRYPTO_ERASE: u8 = 0x03;
const EXIT_FAILURE_MODE: u8 = 0x1F;

/// SANITIZE CDB (SBC-3 table 58): IMMED (byte 1 bit 7), SERVICE ACTION (byte 1 bits 4:0),
/// PARAMETER LIST LENGTH (bytes 7..9).
fn sanitize_cdb(sa: u8, immed: bool, param_len: u16) -> [u8; 10] {
    let l = param_len.to_be_bytes();
    [
        0x48,
        sa | if immed { 0x80 } else { 0 },
        0,
        0,
        0,
        0,
        0,
        l[0],
        l[1],
        0,
    ]
}

/// OVERWRITE parameter list (SBC-3 table 60): INVERT (byte 0 bit 7), TEST (bits 6:5),
/// OVERWRITE COUNT (bits 4:0), reserved, INITIALIZATION PATTERN LENGTH (bytes 2..4), the
/// pattern.
fn overwrite_params(invert: bool, count: u8, pattern: &[u8]) -> Vec<u8> {
    let mut p = vec![count | if invert { 0x80 } else { 0 }, 0];
    p.extend((pattern.len() as u16).to_be_bytes());
    p.extend(pattern);
    p
}

fn overwrite(rig: &mut Rig, p: &[u8]) -> scsi::Response {
    rig.run(&sanitize_cdb(OVERWRITE, false, p.len() as u16), p)
}

const NOT_READY_SANITIZING: (Status, u8, u8, u8) = (Status::CheckCondition, 0x02, 0x04, 0x1B);
const SANITIZE_FAILED: (Status, u8, u8, u8) = (Status::CheckCondition, 0x03, 0x31, 0x03);

#[test]
fn overwrite_writes_the_pattern_over_the_whole_medium() {
    let mut rig = Rig::new(Capabilities::default());
    rig.mem.data.fill(0x11);
    let r = overwrite(&mut rig, &overwrite_params(false, 1, &[0xAA, 0x55, 0x00]));
    assert_eq!(outcome(&r), GOOD);
    let want: Vec<u8> = [0xAA, 0x55, 0x00]
        .iter()
        .copied()
        .cycle()
        .take(rig.mem.data.len())
        .collect();
    assert!(rig.mem.data == want, "the pattern, repeated from byte 0");
    assert_eq!(
        rig.mem.log.last(),
        Some(&store_api::IoRequest::Flush),
        "durable first"
    );
}

#[test]
fn invert_alternates_the_pattern_between_passes() {
    let mut rig = Rig::new(Capabilities::default());
    // Two passes: the pattern, then its inverse (what stays).
    let r = overwrite(&mut rig, &overwrite_params(true, 2, &[0x0F]));
    assert_eq!(outcome(&r), GOOD);
    assert!(rig.mem.data.iter().all(|&b| b == 0xF0));
    // Three passes end with the pattern itself.
    let r = overwrite(&mut rig, &overwrite_params(true, 3, &[0x0F]));
    assert_eq!(outcome(&r), GOOD);
    assert!(rig.mem.data.iter().all(|&b| b == 0x0F));
}

#[test]
fn block_erase_discards_every_block_where_the_store_can() {
    let mut rig = Rig::new(discard_caps());
    rig.mem.data.fill(0x77);
    let r = rig.run(&sanitize_cdb(BLOCK_ERASE, false, 0), &[]);
    assert_eq!(outcome(&r), GOOD);
    assert!(rig.mem.data.iter().all(|&b| b == 0));
    assert!(rig
        .mem
        .log
        .iter()
        .any(|r| matches!(r, store_api::IoRequest::Discard { offset: 0, .. })));
    // Without discard, BLOCK ERASE is not offered: INVALID FIELD IN CDB (service action).
    let mut rig = Rig::new(Capabilities::default());
    let r = rig.run(&sanitize_cdb(BLOCK_ERASE, false, 0), &[]);
    assert_eq!(outcome(&r), INVALID_FIELD);
}

/// The checks, with what libiscsi's SCSI.Sanitize suite expects: status, key, ASC, ASCQ.
#[rstest]
#[case::param_len_0(sanitize_cdb(OVERWRITE, false, 0), vec![], INVALID_FIELD)]
#[case::param_len_4(sanitize_cdb(OVERWRITE, false, 4), vec![1, 0, 0, 0], INVALID_FIELD)]
#[case::longer_than_a_block(sanitize_cdb(OVERWRITE, false, BS as u16 + 5), overwrite_params(false, 1, &[0; 513]), INVALID_FIELD)]
#[case::count_0(sanitize_cdb(OVERWRITE, false, 5), overwrite_params(false, 0, &[1]), (Status::CheckCondition, 0x05, 0x26, 0x00))]
#[case::pattern_length_0(sanitize_cdb(OVERWRITE, false, 5), vec![1, 0, 0, 0, 9], (Status::CheckCondition, 0x05, 0x26, 0x00))]
#[case::pattern_longer_than_the_list(sanitize_cdb(OVERWRITE, false, 5), vec![1, 0, 0, 2, 9], (Status::CheckCondition, 0x05, 0x26, 0x00))]
#[case::test_bits(sanitize_cdb(OVERWRITE, false, 5), vec![0x21, 0, 0, 1, 9], (Status::CheckCondition, 0x05, 0x26, 0x00))]
#[case::immed(sanitize_cdb(OVERWRITE, true, 5), overwrite_params(false, 1, &[1]), INVALID_FIELD)]
#[case::crypto_erase(sanitize_cdb(CRYPTO_ERASE, false, 0), vec![], INVALID_FIELD)]
#[case::exit_with_a_list(sanitize_cdb(EXIT_FAILURE_MODE, false, 4), vec![0; 4], INVALID_FIELD)]
#[case::reserved_bit(
    { let mut c = sanitize_cdb(OVERWRITE, false, 5); c[1] |= 0x40; c },
    overwrite_params(false, 1, &[1]),
    INVALID_FIELD
)]
#[case::reserved_byte(
    { let mut c = sanitize_cdb(OVERWRITE, false, 5); c[4] = 4; c },
    overwrite_params(false, 1, &[1]),
    INVALID_FIELD
)]
fn bad_sanitize_commands(
    #[case] cdb: [u8; 10],
    #[case] data: Vec<u8>,
    #[case] want: (Status, u8, u8, u8),
) {
    let mut rig = Rig::new(Capabilities::default());
    let r = rig.run(&cdb, &data);
    assert_eq!(outcome(&r), want);
    assert!(rig.mem.log.is_empty(), "nothing reached the store");
    assert_eq!(
        outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])),
        GOOD,
        "no failure mode"
    );
}

fn cmd(nexus: u64, cdb: &[u8], data: &[u8]) -> Command {
    Command {
        nexus,
        lun: 0,
        cdb: Bytes::copy_from_slice(cdb),
        data_out: Bytes::copy_from_slice(data).into(),
        expected_len: data.len() as u32,
    }
}

/// While the sanitize runs (its first write in flight): NOT READY, SANITIZE IN PROGRESS
/// with the PROGRESS INDICATION (SPC-4 4.5.2.4.4: SKSV, then a fraction of 65536) for every
/// command but INQUIRY, REPORT LUNS and REQUEST SENSE, which reports it as data.
#[test]
fn other_commands_see_the_sanitize_in_progress() {
    // 4 MiB: four 1 MiB writes.
    let mut cfg = config(Capabilities::default());
    cfg.geometry.num_blocks = 8192;
    let mut rig = Rig::with(cfg);
    let p = overwrite_params(false, 1, &[0xEE]);
    let mut step = rig
        .target
        .start(cmd(1, &sanitize_cdb(OVERWRITE, false, 5), &p));
    for written in 0..3u32 {
        let Start::Io {
            request, pending, ..
        } = step
        else {
            panic!("a write")
        };
        step = pending.finish(rig.mem.exec(request));
        // After `written + 1` of 4 chunks, the next chunk is in flight: progress is
        // (written + 1) / 4 of 65536.
        let want_progress = ((written + 1) * 16384) as u16;
        let Start::Done(r) = rig.target.start(cmd(2, &[0; 6], &[])) else {
            panic!()
        };
        assert_eq!(outcome(&r), NOT_READY_SANITIZING);
        let s = r.sense.unwrap();
        assert_eq!(s[15], 0x80, "SKSV");
        assert_eq!(u16::from_be_bytes([s[16], s[17]]), want_progress);
        // REQUEST SENSE: GOOD, the same sense as data.
        let Start::Done(r) = rig.target.start(cmd(2, &[0x03, 0, 0, 0, 18, 0], &[])) else {
            panic!()
        };
        assert_eq!(r.status, Status::Good);
        assert_eq!(
            (r.data_in[2], r.data_in[12], r.data_in[13]),
            (0x02, 0x04, 0x1B)
        );
        assert_eq!(
            u16::from_be_bytes([r.data_in[16], r.data_in[17]]),
            want_progress
        );
        // INQUIRY is answered.
        let Start::Done(r) = rig.target.start(cmd(2, &[0x12, 0, 0, 0, 36, 0], &[])) else {
            panic!()
        };
        assert_eq!(r.status, Status::Good);
    }
    let r = loop {
        match step {
            Start::Io {
                request, pending, ..
            } => step = pending.finish(rig.mem.exec(request)),
            Start::Done(r) => break r,
            _ => panic!("no other step"),
        }
    };
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(
        outcome(&rig.run_on(2, 0, &[0; 6], &[])),
        GOOD,
        "ready again"
    );
}

#[test]
fn a_failed_or_cut_short_sanitize_leaves_failure_mode_until_exit() {
    let mut rig = Rig::new(Capabilities::default());
    rig.mem.fail = Some((Op::Write, ErrorKind::Io));
    let r = overwrite(&mut rig, &overwrite_params(false, 1, &[1]));
    // The store's failure: MEDIUM ERROR, WRITE ERROR.
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x03, 0x0C, 0x00));
    rig.mem.fail = None;
    assert_eq!(
        outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])),
        SANITIZE_FAILED
    );
    assert_eq!(
        outcome(&rig.run(&[0x12, 0, 0, 0, 36, 0], &[])),
        GOOD,
        "INQUIRY still works"
    );
    assert_eq!(
        outcome(&rig.run(&sanitize_cdb(EXIT_FAILURE_MODE, false, 0), &[])),
        GOOD
    );
    assert_eq!(outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])), GOOD);

    // A sanitize whose command ends unfinished (aborted: its continuation dropped).
    let p = overwrite_params(false, 1, &[1]);
    let Start::Io { pending, .. } =
        rig.target
            .start(cmd(1, &sanitize_cdb(OVERWRITE, false, 5), &p))
    else {
        panic!("a write")
    };
    drop(pending);
    assert_eq!(
        outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])),
        SANITIZE_FAILED
    );
    // A sanitize that completes ends failure mode too.
    assert_eq!(outcome(&overwrite(&mut rig, &p)), GOOD);
    assert_eq!(outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])), GOOD);
}
