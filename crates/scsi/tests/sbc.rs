//! Block commands through the whole Start/Pending dispatch against an in-memory store.

mod common;

use bytes::Bytes;
use common::*;
use rstest::rstest;
use scsi::{encode_lun, Command, ScsiTarget, Start, Status};
use store_api::{Capabilities, ErrorKind, IoReply, IoRequest, Op};

fn rig() -> Rig {
    Rig::new(Capabilities::default())
}

fn cmd(lun: u64, cdb: &[u8], data_out: &[u8]) -> Command {
    Command {
        nexus: 0,
        lun,
        cdb: Bytes::copy_from_slice(cdb),
        data_out: Bytes::copy_from_slice(data_out).into(),
        expected_len: data_out.len() as u32,
    }
}

#[test]
fn read_data_is_the_stores_buffer_passed_through() {
    let mut target = ScsiTarget::new();
    target.add_lun(0, config(Capabilities::default()));
    let Start::Io {
        lun,
        request,
        pending,
        ..
    } = target.start(cmd(0, &cdb10(0x28, 0, 4, 2), &[]))
    else {
        panic!("expected I/O")
    };
    assert_eq!(lun, 0);
    assert_eq!(
        request,
        IoRequest::Read {
            offset: 4 * 512,
            len: 1024
        }
    );
    let store_bytes = Bytes::from(vec![9u8; 1024]);
    let ptr = store_bytes.as_ptr();
    let Start::Done(r) = pending.finish(Ok(IoReply::Data(store_bytes))) else {
        panic!()
    };
    assert_eq!(r.status, Status::Good);
    assert_eq!(r.data_in.as_ptr(), ptr, "no copy");
}

#[test]
fn io_names_the_plain_lun_number() {
    let mut target = ScsiTarget::new();
    target.add_lun(300, config(Capabilities::default()));
    let Start::Io { lun, .. } = target.start(cmd(encode_lun(300), &cdb10(0x28, 0, 0, 1), &[]))
    else {
        panic!("expected I/O")
    };
    assert_eq!(lun, 300);
}

#[test]
fn short_read_reply_is_a_medium_error() {
    let mut target = ScsiTarget::new();
    target.add_lun(0, config(Capabilities::default()));
    let Start::Io { pending, .. } = target.start(cmd(0, &cdb10(0x28, 0, 0, 2), &[])) else {
        panic!()
    };
    let Start::Done(r) = pending.finish(Ok(IoReply::Data(Bytes::from(vec![0u8; 512])))) else {
        panic!()
    };
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x03, 0x11, 0x00));
}

/// A READ's data may come from the store in parts that the transport sends ahead: the
/// store's final reply is then the rest, and GOOD reports the whole transfer. A reply
/// that does not add up with the parts is a MEDIUM ERROR, as a short read is.
#[test]
fn read_data_in_parts_ends_with_the_rest_and_counts_the_whole_transfer() {
    let mut target = ScsiTarget::new();
    target.add_lun(0, config(Capabilities::default()));
    let start = || match target.start(cmd(0, &cdb10(0x28, 0, 0, 8), &[])) {
        Start::Io { pending, .. } => pending,
        _ => panic!("expected I/O"),
    };
    let mut pending = start();
    assert!(pending.takes_parts());
    pending.part(1024);
    pending.part(2048);
    let rest = Bytes::from(vec![7u8; 8 * 512 - 3072]);
    let Start::Done(r) = pending.finish(Ok(IoReply::Data(rest.clone()))) else {
        panic!()
    };
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.data_in, rest, "only the rest is left to send");
    assert_eq!(r.transfer_len, 8 * 512, "the residual counts the parts");
    // The whole data again after a part: does not add up.
    let mut pending = start();
    pending.part(512);
    let Start::Done(r) = pending.finish(Ok(IoReply::Data(Bytes::from(vec![0u8; 8 * 512])))) else {
        panic!()
    };
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x03, 0x11, 0x00));
    // A read that fails after parts reports its error (the parts are already sent).
    let mut pending = start();
    pending.part(512);
    let failed = store_api::StoreError::new(Op::Read, ErrorKind::Io);
    let Start::Done(r) = pending.finish(Err(failed)) else {
        panic!()
    };
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x03, 0x11, 0x00));
    // Commands that compare or change what they read take it whole: WRITE AND VERIFY's
    // read-back, after its write.
    let Start::Io { pending, .. } = target.start(cmd(0, &cdb10(0x2E, 0x02, 0, 1), &[5u8; 512]))
    else {
        panic!("expected the write")
    };
    assert!(!pending.takes_parts());
    let Start::Io {
        request, pending, ..
    } = pending.finish(Ok(IoReply::Done))
    else {
        panic!("expected the read-back")
    };
    assert!(matches!(request, IoRequest::Read { .. }));
    assert!(!pending.takes_parts());
}

#[rstest]
#[case::read_eio(&cdb10(0x28, 0, 0, 1)[..], Op::Read, ErrorKind::Io, (0x03, 0x11, 0x00))]
#[case::write_eio(&cdb10(0x2A, 0, 0, 1)[..], Op::Write, ErrorKind::Io, (0x03, 0x0C, 0x00))]
#[case::write_enospc(&cdb10(0x2A, 0, 0, 1)[..], Op::Write, ErrorKind::NoSpace, (0x07, 0x27, 0x07))]
#[case::write_erofs(&cdb10(0x2A, 0, 0, 1)[..], Op::Write, ErrorKind::ReadOnly, (0x07, 0x27, 0x00))]
#[case::flush_enotconn(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], Op::Flush, ErrorKind::NotConnected, (0x02, 0x04, 0x01))]
#[case::read_timeout(&cdb16(0x88, 0, 0, 1)[..], Op::Read, ErrorKind::TimedOut, (0x0B, 0x08, 0x01))]
// NOT READY, LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION (SPC-4 D.1)
#[case::write_fenced(&cdb10(0x2A, 0, 0, 1)[..], Op::Write, ErrorKind::Fenced, (0x02, 0x04, 0x0A))]
fn store_errors_become_sense(
    #[case] cdb: &[u8],
    #[case] op: Op,
    #[case] kind: ErrorKind,
    #[case] sense: (u8, u8, u8),
) {
    let mut rig = rig();
    rig.mem.fail = Some((op, kind));
    let r = rig.run(cdb, &[0u8; 512]);
    assert_eq!(
        outcome(&r),
        (Status::CheckCondition, sense.0, sense.1, sense.2)
    );
    assert!(r.data_in.is_empty());
}

#[rstest]
#[case::sync10(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0][..])]
#[case::sync10_range(&[0x35, 0x02, 0, 0, 0x07, 0xF0, 0, 0, 0x10, 0][..])]
#[case::sync16(&[0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..])]
fn synchronize_cache_flushes(#[case] cdb: &[u8]) {
    let mut rig = rig();
    assert_eq!(outcome(&rig.run(cdb, &[])), GOOD);
    assert_eq!(rig.mem.log, [IoRequest::Flush]);
}

#[test]
fn synchronize_cache_beyond_end_is_lba_out_of_range() {
    let mut rig = rig();
    let r = rig.run(&[0x35, 0, 0, 0, 0x07, 0xFF, 0, 0, 2, 0], &[]);
    assert_eq!(outcome(&r), LBA_OOB);
    assert!(rig.mem.log.is_empty());
}

#[test]
fn six_byte_forms_treat_zero_as_256_blocks() {
    let mut rig = rig();
    let data = vec![0x5A; 256 * BS as usize];
    let r = rig.run(&[0x0A, 0, 0, 0x10, 0, 0], &data);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, 256 * BS);
    let r = rig.run(&[0x08, 0, 0, 0x10, 0, 0], &[]);
    assert_eq!(&r.data_in[..], &data[..]);
    assert_eq!(
        rig.mem.log[0],
        IoRequest::Write {
            offset: 16 * 512,
            data: data.into(),
            fua: false
        }
    );
}

#[test]
fn read12_and_write12() {
    let mut rig = rig();
    let data = vec![3u8; 3 * BS as usize];
    assert_eq!(outcome(&rig.run(&cdb12(0xAA, 0, 100, 3), &data)), GOOD);
    assert_eq!(
        &rig.run(&cdb12(0xA8, 0, 100, 3), &[]).data_in[..],
        &data[..]
    );
}

#[test]
fn transfer_above_maximum_is_invalid_field() {
    let max_blocks = scsi::MAX_TRANSFER_BYTES / 512;
    let mut cfg = config(Capabilities::default());
    cfg.geometry.num_blocks = u64::from(max_blocks) * 2;
    let mut rig = Rig {
        target: ScsiTarget::new(),
        mem: Mem::new(0),
        others: Vec::new(),
        offload: true,
        offloaded: 0,
    };
    rig.target.add_lun(0, cfg);
    assert_eq!(
        outcome(&rig.run(&cdb16(0x88, 0, 0, max_blocks + 1), &[])),
        INVALID_FIELD
    );
}

#[test]
fn read_only_unit_rejects_writes_but_reads() {
    let mut cfg = config(discard_caps());
    cfg.read_only = true;
    let mut rig = Rig::with(cfg);
    let block = vec![1u8; BS as usize];
    for (cdb, data) in [
        (cdb10(0x2A, 0, 0, 1).to_vec(), &block[..]),
        (cdb16(0x8A, 0, 0, 1).to_vec(), &block[..]),
        (cdb10(0x2E, 0, 0, 1).to_vec(), &block[..]),
        (cdb10(0x41, 0, 0, 1).to_vec(), &block[..]),
        ([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0].to_vec(), &[0u8; 24][..]),
    ] {
        assert_eq!(
            outcome(&rig.run(&cdb, data)),
            WRITE_PROTECTED,
            "{:02x}",
            cdb[0]
        );
    }
    assert_eq!(outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])), GOOD);
    assert_eq!(rig.mem.log.len(), 1, "only the read reached the store");
}

#[rstest]
#[case::prefetch10(&[0x34, 0, 0, 0, 0, 0, 0, 0, 8, 0][..], GOOD)]
#[case::prefetch10_immed(&[0x34, 0x02, 0, 0, 0x07, 0xF8, 0, 0, 8, 0][..], GOOD)]
#[case::prefetch10_beyond(&[0x34, 0, 0, 0, 0x07, 0xF9, 0, 0, 8, 0][..], LBA_OOB)]
#[case::prefetch16(&cdb16(0x90, 0, 0, 1)[..], GOOD)]
fn pre_fetch(#[case] cdb: &[u8], #[case] want: (Status, u8, u8, u8)) {
    let mut rig = rig();
    assert_eq!(outcome(&rig.run(cdb, &[])), want);
    assert!(rig.mem.log.is_empty());
}

// ---- VERIFY / WRITE AND VERIFY ----

#[test]
fn verify_compares_with_data_out() {
    let mut rig = rig();
    let data: Vec<u8> = (0..2 * BS).map(|x| x as u8).collect();
    rig.run(&cdb10(0x2A, 0, 10, 2), &data);
    // BYTCHK=1 (byte 1 bit 1), matching.
    assert_eq!(outcome(&rig.run(&cdb10(0x2F, 0x02, 10, 2), &data)), GOOD);
    // One byte off at offset 700: MISCOMPARE, INFORMATION = 700.
    let mut bad = data.clone();
    bad[700] ^= b'X';
    let r = rig.run(&cdb10(0x2F, 0x02, 10, 2), &bad);
    assert_eq!(outcome(&r), MISCOMPARE);
    let s = r.sense.unwrap();
    assert_eq!(s[0], 0xF0, "VALID");
    assert_eq!(&s[3..7], &700u32.to_be_bytes());
    // BYTCHK=0: medium verification only.
    assert_eq!(outcome(&rig.run(&cdb16(0x8F, 0, 10, 2), &[])), GOOD);
    // 0 blocks and beyond the end.
    assert_eq!(outcome(&rig.run(&cdb10(0x2F, 0x02, 0, 0), &[])), GOOD);
    assert_eq!(
        outcome(&rig.run(&cdb10(0x2F, 0x02, 2047, 2), &data)),
        LBA_OOB
    );
    // VRPROTECT.
    assert_eq!(
        outcome(&rig.run(&cdb10(0x2F, 0x22, 10, 2), &data)),
        INVALID_FIELD
    );
}

#[test]
fn verify_bytchk_3_compares_every_block_with_one() {
    let mut rig = rig();
    let block = vec![0x42u8; BS as usize];
    rig.run(&cdb10(0x2A, 0, 0, 3), &block.repeat(3));
    assert_eq!(outcome(&rig.run(&cdb10(0x2F, 0x06, 0, 3), &block)), GOOD);
    rig.run(&cdb10(0x2A, 0, 2, 1), &[0x43; BS as usize]);
    let r = rig.run(&cdb10(0x2F, 0x06, 0, 3), &block);
    assert_eq!(outcome(&r), MISCOMPARE);
    assert_eq!(&r.sense.unwrap()[3..7], &(2 * BS).to_be_bytes());
}

#[test]
fn write_and_verify_writes_then_reads_back() {
    let mut rig = rig();
    let data = vec![0x77u8; 2 * BS as usize];
    let r = rig.run(&cdb16(0x8E, 0x02, 5, 2), &data);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, 2 * BS);
    assert_eq!(
        rig.mem.log,
        [
            IoRequest::Write {
                offset: 5 * 512,
                data: data.clone().into(),
                fua: false
            },
            IoRequest::Read {
                offset: 5 * 512,
                len: 1024
            },
        ]
    );
}

// ---- WRITE SAME ----

fn write_same10(flags: u8, lba: u32, blocks: u16) -> [u8; 10] {
    cdb10(0x41, flags, lba, blocks)
}

#[test]
fn write_same_pattern_fills_every_block() {
    let mut rig = rig();
    let block: Vec<u8> = (0..BS).map(|x| (x % 251) as u8).collect();
    // More blocks than one 1 MiB chunk (2048 blocks of 512 = 1 MiB): use 2047 from LBA 1.
    let r = rig.run(&write_same10(0, 1, 2047), &block);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, BS);
    assert!(
        rig.mem.data[..BS as usize].iter().all(|&b| b == 0),
        "LBA 0 untouched"
    );
    for lba in 1..BLOCKS as usize {
        assert_eq!(&rig.mem.data[lba * 512..(lba + 1) * 512], &block[..]);
    }
}

#[test]
fn write_same_pattern_is_chunked() {
    let mut cfg = config(Capabilities::default());
    cfg.geometry.num_blocks = 8192;
    let mut rig = Rig::with(cfg);
    let r = rig.run(&write_same10(0, 0, 4096), &[1u8; 512]);
    assert_eq!(outcome(&r), GOOD);
    let lens: Vec<(u64, usize)> = rig
        .mem
        .log
        .iter()
        .map(|r| match r {
            IoRequest::Write { offset, data, .. } => (*offset, data.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lens, [(0, 1 << 20), (1 << 20, 1 << 20)]);
    assert!(rig.mem.data[..2 << 20].iter().all(|&b| b == 1));
    assert!(rig.mem.data[2 << 20..].iter().all(|&b| b == 0));
}

#[test]
fn write_same_unmap_with_zero_block_discards() {
    let mut rig = Rig::new(discard_caps());
    let r = rig.run(&write_same10(0x08, 8, 16), &[0u8; 512]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(
        rig.mem.log,
        [IoRequest::Discard {
            offset: 8 * 512,
            len: 16 * 512
        }]
    );
}

#[test]
fn write_same_zero_block_uses_write_zeroes_and_falls_back() {
    let caps = Capabilities {
        discard: false,
        write_zeroes: true,
        discard_zeroes: false,
    };
    let mut rig = Rig::new(caps);
    rig.mem.data.fill(0xEE);
    assert_eq!(
        outcome(&rig.run(&write_same10(0x08, 0, 4), &[0u8; 512])),
        GOOD
    );
    assert_eq!(
        rig.mem.log,
        [IoRequest::WriteZeroes {
            offset: 0,
            len: 2048
        }]
    );
    // The store turns out not to support it: zeroes are written instead.
    rig.mem.log.clear();
    rig.mem.fail = Some((Op::WriteZeroes, ErrorKind::Unsupported));
    assert_eq!(outcome(&rig.run(&write_same10(0, 4, 4), &[0u8; 512])), GOOD);
    assert!(matches!(
        rig.mem.log[1],
        IoRequest::Write { offset: 2048, .. }
    ));
    assert!(rig.mem.data[..4096].iter().all(|&b| b == 0));
    assert!(rig.mem.data[4096..].iter().all(|&b| b == 0xEE));
}

#[test]
fn write_same16_ndob_writes_zeroes_without_data_out() {
    let mut rig = rig();
    rig.mem.data.fill(0xEE);
    let r = rig.run(&cdb16(0x93, 0x01, 2, 2), &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, 0);
    assert!(rig.mem.data[1024..2048].iter().all(|&b| b == 0));
    assert!(rig.mem.data[2048..].iter().all(|&b| b == 0xEE));
}

#[rstest]
#[case::zero_blocks(write_same10(0, 0, 0).to_vec(), 512, INVALID_FIELD)]
#[case::beyond_end(write_same10(0, 2047, 2).to_vec(), 512, LBA_OOB)]
#[case::lba_max(write_same10(0, u32::MAX, 1).to_vec(), 512, LBA_OOB)]
#[case::wrprotect(write_same10(0x20, 0, 1).to_vec(), 512, INVALID_FIELD)]
#[case::anchor(write_same10(0x10, 0, 1).to_vec(), 512, INVALID_FIELD)]
#[case::half_block(write_same10(0, 0, 1).to_vec(), 256, (Status::CheckCondition, 0x05, 0x1A, 0x00))]
#[case::two_blocks(write_same10(0, 0, 1).to_vec(), 1024, (Status::CheckCondition, 0x05, 0x1A, 0x00))]
fn write_same_errors(
    #[case] cdb: Vec<u8>,
    #[case] data_len: usize,
    #[case] want: (Status, u8, u8, u8),
) {
    let mut rig = Rig::new(discard_caps());
    assert_eq!(outcome(&rig.run(&cdb, &vec![0u8; data_len])), want);
    assert!(rig.mem.log.is_empty());
}

// ---- UNMAP ----

/// UNMAP parameter list (SBC-3 table 77/78).
fn unmap_list(descs: &[(u64, u32)]) -> Vec<u8> {
    let bddl = (descs.len() * 16) as u16;
    let mut d = Vec::new();
    d.extend((bddl + 6).to_be_bytes());
    d.extend(bddl.to_be_bytes());
    d.extend([0; 4]);
    for &(lba, n) in descs {
        d.extend(lba.to_be_bytes());
        d.extend(n.to_be_bytes());
        d.extend([0; 4]);
    }
    d
}

fn unmap_cdb(len: usize) -> [u8; 10] {
    let l = (len as u16).to_be_bytes();
    [0x42, 0, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

#[test]
fn unmap_discards_each_descriptor() {
    let mut rig = Rig::new(discard_caps());
    rig.mem.data.fill(0xEE);
    let list = unmap_list(&[(0, 2), (10, 0), (100, 8)]);
    let r = rig.run(&unmap_cdb(list.len()), &list);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(
        rig.mem.log,
        [
            IoRequest::Discard {
                offset: 0,
                len: 1024
            },
            IoRequest::Discard {
                offset: 100 * 512,
                len: 8 * 512
            },
        ]
    );
    assert!(rig.mem.data[..1024].iter().all(|&b| b == 0));
}

#[test]
fn unmap_edge_cases() {
    let mut rig = Rig::new(discard_caps());
    // 0 blocks at the end of the LUN, and an empty list, are GOOD.
    let list = unmap_list(&[(BLOCKS, 0)]);
    assert_eq!(outcome(&rig.run(&unmap_cdb(list.len()), &list)), GOOD);
    let list = unmap_list(&[]);
    assert_eq!(outcome(&rig.run(&unmap_cdb(list.len()), &list)), GOOD);
    assert_eq!(outcome(&rig.run(&unmap_cdb(0), &[])), GOOD);
    // Beyond the end.
    let list = unmap_list(&[(0, 1), (BLOCKS - 1, 2)]);
    assert_eq!(outcome(&rig.run(&unmap_cdb(list.len()), &list)), LBA_OOB);
    // Parameter list too short.
    assert_eq!(
        outcome(&rig.run(&unmap_cdb(4), &[0, 0, 0, 0])),
        (Status::CheckCondition, 0x05, 0x1A, 0x00)
    );
    // Too many descriptors.
    let many: Vec<(u64, u32)> = (0..65).map(|i| (i, 1)).collect();
    let list = unmap_list(&many);
    assert_eq!(
        outcome(&rig.run(&unmap_cdb(list.len()), &list)),
        (Status::CheckCondition, 0x05, 0x26, 0x00)
    );
    assert!(rig.mem.log.is_empty());
}

#[test]
fn unmap_without_discard_is_not_supported() {
    let mut rig = rig();
    let list = unmap_list(&[(0, 1)]);
    assert_eq!(
        outcome(&rig.run(&unmap_cdb(list.len()), &list)),
        INVALID_OPCODE
    );
}

#[test]
fn pending_is_send() {
    fn is_send<T: Send>() {}
    is_send::<scsi::Pending>();
    is_send::<Start>();
}

// ---- GET LBA STATUS (SCSI.GetLBAStatus.*) ----

fn get_lba_status(lba: u64, alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x12;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

#[test]
fn get_lba_status_reports_mapped_from_the_lba_to_the_end() {
    let mut rig = rig();
    let r = rig.run(&get_lba_status(BLOCKS - 8, 24), &[]);
    assert_eq!(outcome(&r), GOOD);
    let mut want = vec![0, 0, 0, 20, 0, 0, 0, 0];
    want.extend((BLOCKS - 8).to_be_bytes()); // LBA
    want.extend(8u32.to_be_bytes()); // NUMBER OF LOGICAL BLOCKS
    want.extend([0x00, 0, 0, 0]); // PROVISIONING STATUS mapped, reserved
    assert_eq!(&r.data_in[..], &want[..]);
    for i in 1..=256 {
        assert_eq!(outcome(&rig.run(&get_lba_status(i, 24), &[])), GOOD);
        assert_eq!(
            outcome(&rig.run(&get_lba_status(BLOCKS - i, 24), &[])),
            GOOD
        );
    }
    for lba in [BLOCKS, BLOCKS + 1, 0x8000_0000_0000_0000, u64::MAX] {
        assert_eq!(outcome(&rig.run(&get_lba_status(lba, 24), &[])), LBA_OOB);
    }
}

// ---- COMPARE AND WRITE (SCSI.CompareAndWrite.*) ----

fn caw(flags: u8, lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

#[test]
fn compare_and_write_writes_when_equal() {
    let mut rig = rig();
    for i in [1usize, 2, 255] {
        for lba in [0, BLOCKS - i as u64] {
            let n = i * BS as usize;
            rig.run(&cdb16(0x8A, 0, lba, i as u32), &vec![b'A'; n]);
            let mut data = vec![b'A'; n];
            data.extend(vec![b'B'; n]);
            let r = rig.run(&caw(0, lba, i as u8), &data);
            assert_eq!(outcome(&r), GOOD);
            assert_eq!(r.transfer_len as usize, 2 * n);
            let back = rig.run(&cdb16(0x88, 0, lba, i as u32), &[]).data_in;
            assert!(back.iter().all(|&b| b == b'B'));
        }
    }
}

#[test]
fn compare_and_write_miscompare_writes_nothing() {
    let mut rig = rig();
    let n = 2 * BS as usize;
    rig.run(&cdb10(0x2A, 0, 4, 2), &vec![b'A'; n]);
    let mut data = vec![b'A'; n];
    data[n - 27] = b'C';
    data.extend(vec![b'B'; n]);
    let r = rig.run(&caw(0, 4, 2), &data);
    assert_eq!(outcome(&r), MISCOMPARE);
    assert_eq!(&r.sense.unwrap()[3..7], &((n - 27) as u32).to_be_bytes());
    let back = rig.run(&cdb10(0x28, 0, 4, 2), &[]).data_in;
    assert!(back.iter().all(|&b| b == b'A'));
}

#[test]
fn compare_and_write_passes_fua_and_checks_fields() {
    let mut rig = rig();
    let block = vec![0u8; 2 * BS as usize];
    for flags in [0x10, 0x08, 0x18] {
        assert_eq!(outcome(&rig.run(&caw(flags, 0, 1), &block)), GOOD);
    }
    assert!(matches!(rig.mem.log[3], IoRequest::Write { fua: true, .. }));
    rig.mem.log.clear();
    assert_eq!(outcome(&rig.run(&caw(0, 0, 0), &[])), GOOD);
    assert_eq!(outcome(&rig.run(&caw(0x20, 0, 1), &block)), INVALID_FIELD);
    assert_eq!(outcome(&rig.run(&caw(0, BLOCKS, 1), &block)), LBA_OOB);
    assert_eq!(outcome(&rig.run(&caw(0, u64::MAX, 1), &block)), LBA_OOB);
    // Data-out of 4 blocks for 1 (or 1 for 3): the transfer length does not match.
    assert_eq!(
        outcome(&rig.run(&caw(0, 0, 1), &[0u8; 2048])),
        INVALID_FIELD
    );
    assert_eq!(
        outcome(&rig.run(&caw(0, 0, 3), &[0u8; 2048])),
        INVALID_FIELD
    );
    // 256 blocks wrapped to 0 in the one-byte field, with 512 blocks of data.
    assert_eq!(
        outcome(&rig.run(&caw(0, 0, 0), &vec![0u8; 512 * 512])),
        INVALID_FIELD
    );
    assert!(rig.mem.log.is_empty());
}

#[test]
fn compare_and_write_holds_its_blocks() {
    let mut target = ScsiTarget::new();
    target.add_lun(0, config(Capabilities::default()));
    target.add_lun(1, config(Capabilities::default()));
    let data = vec![0u8; 1024];
    let Start::Io { pending: first, .. } = target.start(cmd(0, &caw(0, 0, 1), &data)) else {
        panic!()
    };
    // A second one on the same blocks while the first holds them: BUSY.
    let Start::Done(r) = target.start(cmd(0, &caw(0, 0, 1), &data)) else {
        panic!()
    };
    assert_eq!((r.status, r.sense), (Status::Busy, None));
    // On other blocks it goes ahead.
    assert!(matches!(
        target.start(cmd(0, &caw(0, 9, 1), &data)),
        Start::Io { .. }
    ));
    // Another LU is independent.
    assert!(matches!(
        target.start(cmd(encode_lun(1), &caw(0, 0, 1), &data)),
        Start::Io { .. }
    ));
    // Aborting the first (dropping its Pending) frees the LU.
    drop(first);
    let Start::Io { pending, .. } = target.start(cmd(0, &caw(0, 0, 1), &data)) else {
        panic!()
    };
    // Finishing frees it too: read matches, write, done.
    let Start::Io {
        request, pending, ..
    } = pending.finish(Ok(IoReply::Data(Bytes::from(vec![0u8; 512]))))
    else {
        panic!()
    };
    assert!(matches!(request, IoRequest::Write { offset: 0, .. }));
    assert!(
        matches!(target.start(cmd(0, &caw(0, 0, 1), &data)), Start::Done(ref r) if r.status == Status::Busy),
        "still held during the write"
    );
    let Start::Done(r) = pending.finish(Ok(IoReply::Done)) else {
        panic!()
    };
    assert_eq!(r.status, Status::Good);
    assert!(matches!(
        target.start(cmd(0, &caw(0, 0, 1), &data)),
        Start::Io { .. }
    ));
}
