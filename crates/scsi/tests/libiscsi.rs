//! One test per expectation of libiscsi's iscsi-test-cu suites SCSI.TestUnitReady,
//! SCSI.Inquiry, SCSI.ReadCapacity10/16, SCSI.Read10/16, SCSI.Write10/16 (test-tool/test_*.c,
//! libiscsi 1.19), plus the residual rules of test_read10_residuals.c/test_write10_residuals.c.

mod common;

use common::*;
use rstest::rstest;
use scsi::Status;
use store_api::{Capabilities, IoRequest};

fn rig() -> Rig {
    Rig::new(Capabilities::default())
}

const READ10: u8 = 0x28;
const WRITE10: u8 = 0x2A;
const READ16: u8 = 0x88;
const WRITE16: u8 = 0x8A;

// ---- TestUnitReady.Simple ----

#[test]
fn test_unit_ready_is_good() {
    assert_eq!(outcome(&rig().run(&[0, 0, 0, 0, 0, 0], &[])), GOOD);
}

// ---- Inquiry.Standard ----

#[test]
fn standard_inquiry_fields() {
    let r = rig().run(&inquiry(false, 0, 260), &[]);
    assert_eq!(outcome(&r), GOOD);
    let d = &r.data_in;
    assert!(d.len() >= 36);
    assert_eq!(d[0] >> 5, 0, "peripheral qualifier");
    assert_eq!(d[0] & 0x1F, 0, "direct access block device");
    assert!(matches!(d[2], 4..=6), "version");
    assert_eq!(d[3] & 0x0F, 2, "response data format");
    assert_eq!(usize::from(d[4]), d.len() - 5, "additional length");
    for &c in &d[8..36] {
        assert!(c == 0 || (0x20..=0x7E).contains(&c), "ascii identification");
    }
    assert_eq!(d[3] & 0x80, 0, "AERC clear");
    assert_eq!(d[3] & 0x40, 0, "TRMTSK clear");
    assert_eq!(r.transfer_len as usize, d.len());
}

// ---- Inquiry.AllocLength ----

#[test]
fn inquiry_any_allocation_length_is_good_and_trimmed() {
    let mut rig = rig();
    for alloc in 5..256u16 {
        let r = rig.run(&inquiry(false, 0, alloc), &[]);
        assert_eq!(outcome(&r), GOOD, "alloc {alloc}");
        assert_eq!(r.data_in.len(), usize::from(alloc).min(96));
        assert_eq!(r.transfer_len as usize, r.data_in.len());
    }
    // 16-bit allocation length (SPC-3+): 511 and 512 give the same data.
    let a = rig.run(&inquiry(false, 0, 511), &[]);
    let b = rig.run(&inquiry(false, 0, 512), &[]);
    assert_eq!(a.data_in, b.data_in);
}

// ---- Inquiry.EVPD ----

#[test]
fn page_code_without_evpd_is_invalid_field() {
    assert_eq!(
        outcome(&rig().run(&inquiry(false, 1, 256), &[])),
        INVALID_FIELD
    );
}

// ---- Inquiry.VersionDescriptors: claims SPC and SBC-3 (0x04C0 also makes sbc3_support) ----

#[test]
fn version_descriptors_claim_spc4_and_sbc3() {
    let d = rig().run(&inquiry(false, 0, 96), &[]).data_in;
    let descs: Vec<u16> = d[58..74]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert!(descs.contains(&0x0460), "SPC-4");
    assert!(descs.contains(&0x04C0), "SBC-3");
}

// ---- Inquiry.SupportedVPD / MandatoryVPDSBC / VPD page codes sorted ----

#[rstest]
fn every_listed_vpd_page_is_readable(#[values(false, true)] discard: bool) {
    let caps = if discard {
        discard_caps()
    } else {
        Capabilities::default()
    };
    let mut rig = Rig::new(caps);
    let r = rig.run(&inquiry(true, 0x00, 255), &[]);
    assert_eq!(outcome(&r), GOOD);
    let d = &r.data_in;
    let n = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let pages = &d[4..4 + n];
    assert!(pages.windows(2).all(|w| w[0] < w[1]), "sorted");
    assert!(
        pages.contains(&0x00) && pages.contains(&0x83),
        "mandatory SBC pages"
    );
    assert_eq!(pages.contains(&0xB2), discard);
    for &p in pages {
        let r = rig.run(&inquiry(true, p, 255), &[]);
        assert_eq!(outcome(&r), GOOD, "page {p:02x}");
        assert_eq!(r.data_in[1], p);
    }
}

// ---- Inquiry.BlockLimits ----

#[rstest]
fn block_limits_page(#[values(false, true)] discard: bool) {
    let caps = if discard {
        discard_caps()
    } else {
        Capabilities::default()
    };
    let r = Rig::new(caps).run(&inquiry(true, 0xB0, 255), &[]);
    let d = &r.data_in;
    assert_eq!(d.len(), usize::from(d[3]) + 4, "page length matches data");
    assert_eq!(d[3], 0x3C, "SBC-3 length since SBC-3 is claimed");
    let max_unmap = u32::from_be_bytes(d[20..24].try_into().unwrap());
    let max_unmap_bdc = u32::from_be_bytes(d[24..28].try_into().unwrap());
    if discard {
        assert!(max_unmap >= 1 && (max_unmap == u32::MAX || max_unmap <= 1024 * 1024));
        assert!(max_unmap_bdc >= 1 && (max_unmap_bdc == u32::MAX || max_unmap_bdc <= 1024 * 1024));
    } else {
        assert_eq!((max_unmap, max_unmap_bdc), (0, 0));
    }
}

// ---- ReadCapacity10.Simple ----

#[test]
fn read_capacity10() {
    let r = rig().run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(&r.data_in[..], &[0, 0, 0x07, 0xFF, 0, 0, 0x02, 0x00]);
}

// ---- ReadCapacity16.Simple / Alloclen / Support / PI ----

#[test]
fn read_capacity16_any_allocation_length() {
    let mut rig = rig();
    for alloc in 0..=16u32 {
        let r = rig.run(&read_capacity16(alloc), &[]);
        assert_eq!(outcome(&r), GOOD, "alloc {alloc}");
        assert_eq!(r.data_in.len(), alloc as usize);
    }
    let r = rig.run(&read_capacity16(96), &[]);
    assert_eq!(r.data_in.len(), 32);
    assert_eq!(
        r.data_in[12] & 0x0F,
        0,
        "P_TYPE and PROT_EN are 0 without PROTECT"
    );
    assert_eq!(r.data_in[13] >> 4, 0, "P_I_EXPONENT is 0");
}

// ---- Read10/Read16 Simple ----

#[rstest]
fn read_1_to_256_blocks_at_both_ends(#[values(10, 16)] form: u8) {
    let mut rig = rig();
    for i in 1..=256u32 {
        for lba in [0, BLOCKS - u64::from(i)] {
            let cdb: Vec<u8> = if form == 10 {
                cdb10(READ10, 0, lba as u32, i as u16).to_vec()
            } else {
                cdb16(READ16, 0, lba, i).to_vec()
            };
            let r = rig.run(&cdb, &[]);
            assert_eq!(outcome(&r), GOOD);
            assert_eq!(r.data_in.len() as u32, i * BS);
            assert_eq!(r.transfer_len, i * BS);
        }
    }
}

// ---- Read10/Write10 BeyondEol ----

#[rstest]
fn beyond_end_of_lun_is_lba_out_of_range(#[values(READ10, WRITE10)] op: u8) {
    let mut rig = rig();
    let n = BLOCKS as u32;
    for i in 1..=256u32 {
        let data = vec![0xA6; (i * BS) as usize];
        for lba in [n + 1 - i, 0x8000_0000, u32::MAX] {
            let r = rig.run(&cdb10(op, 0, lba, i as u16), &data);
            assert_eq!(outcome(&r), LBA_OOB, "lba {lba} blocks {i}");
        }
        if i >= 2 {
            let r = rig.run(&cdb10(op, 0, n - 1, i as u16), &data);
            assert_eq!(outcome(&r), LBA_OOB);
        }
    }
    assert!(rig.mem.log.is_empty(), "nothing reached the store");
}

#[rstest]
fn beyond_end_of_lun_16(#[values(READ16, WRITE16)] op: u8) {
    let mut rig = rig();
    let ilog2_bs = 9;
    for i in 1..=256u32 {
        let data = vec![0xA6; (i * BS) as usize];
        for lba in [
            BLOCKS + 1 - u64::from(i),
            0x8000_0000_0000_0000,
            1u64 << (64 - ilog2_bs),
            1u64 << (63 - ilog2_bs),
            u64::MAX,
        ] {
            let r = rig.run(&cdb16(op, 0, lba, i), &data);
            assert_eq!(outcome(&r), LBA_OOB, "lba {lba:#x} blocks {i}");
        }
    }
}

// ---- Read10/Read16/Write10/Write16 ZeroBlocks ----

#[rstest]
fn zero_blocks(#[values(READ10, WRITE10, READ16, WRITE16)] op: u8) {
    let mut rig = rig();
    let run = |rig: &mut Rig, lba: u64| {
        if op == READ10 || op == WRITE10 {
            rig.run(&cdb10(op, 0, lba as u32, 0), &[])
        } else {
            rig.run(&cdb16(op, 0, lba, 0), &[])
        }
    };
    let r = run(&mut rig, 0);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, 0);
    assert!(r.data_in.is_empty());
    let wide = op == READ16 || op == WRITE16;
    let far = if wide {
        0x8000_0000_0000_0000
    } else {
        0x8000_0000
    };
    let max = if wide { u64::MAX } else { u64::from(u32::MAX) };
    for lba in [BLOCKS + 1, far, max] {
        assert_eq!(outcome(&run(&mut rig, lba)), LBA_OOB, "lba {lba:#x}");
    }
    assert!(rig.mem.log.is_empty());
}

// ---- Read10/Read16 ReadProtect, Write10/Write16 WriteProtect ----

#[rstest]
fn nonzero_protect_field_is_invalid(#[values(READ10, WRITE10, READ16, WRITE16)] op: u8) {
    let mut rig = rig();
    let data = vec![0xA6; BS as usize];
    for protect in 1..8u8 {
        let flags = protect << 5;
        let r = if op == READ10 || op == WRITE10 {
            rig.run(&cdb10(op, flags, 0, 1), &data)
        } else {
            rig.run(&cdb16(op, flags, 0, 1), &data)
        };
        assert_eq!(outcome(&r), INVALID_FIELD, "protect {protect}");
    }
}

// ---- Read10/Write10/Read16/Write16 DpoFua ----

#[rstest]
fn dpo_fua_accepted_and_advertised(#[values(READ10, WRITE10, READ16, WRITE16)] op: u8) {
    let mut rig = rig();
    // MODE SENSE(6) all pages: DPOFUA (0x10) set in the device-specific parameter.
    let ms = rig.run(&mode_sense6(false, 0, 0x3F, 0, 255), &[]);
    assert_eq!(outcome(&ms), GOOD);
    assert_eq!(ms.data_in[2] & 0x10, 0x10);
    let data = vec![0xA6; BS as usize];
    for flags in [0x10, 0x08, 0x18] {
        let r = if op == READ10 || op == WRITE10 {
            rig.run(&cdb10(op, flags, 0, 1), &data)
        } else {
            rig.run(&cdb16(op, flags, 0, 1), &data)
        };
        assert_eq!(outcome(&r), GOOD, "flags {flags:#x}");
    }
    // REPORT SUPPORTED OPERATION CODES, one command: DPO/FUA set in CDB USAGE DATA byte 1.
    let r = rig.run(&rsoc(false, 1, op, 0, 65535), &[]);
    assert_eq!(outcome(&r), GOOD);
    let usage = &r.data_in[4..];
    assert_eq!(usage[0], op);
    assert_ne!(usage[1] & 0x18, 0);
}

#[test]
fn fua_reaches_the_store_and_dpo_does_not_matter() {
    let mut rig = rig();
    let data = vec![7u8; BS as usize];
    rig.run(&cdb10(WRITE10, 0x08, 3, 1), &data);
    rig.run(&cdb10(WRITE10, 0x10, 3, 1), &data);
    let fua: Vec<bool> = rig
        .mem
        .log
        .iter()
        .map(|r| match r {
            IoRequest::Write { fua, .. } => *fua,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(fua, [true, false]);
}

// ---- Write10.Flags: FUA_NV (byte 1 bit 1) is accepted ----

#[test]
fn write10_flag_combinations() {
    let mut rig = rig();
    let data = vec![0xA6; BS as usize];
    for flags in [0x10, 0x08, 0x0A, 0x02, 0x1A] {
        assert_eq!(outcome(&rig.run(&cdb10(WRITE10, flags, 0, 1), &data)), GOOD);
    }
}

// ---- Write10/Write16 Simple, and read-after-write ----

#[rstest]
fn write_1_to_256_blocks_then_read_back(#[values(10, 16)] form: u8) {
    let mut rig = rig();
    for i in [1u32, 2, 7, 128, 255, 256] {
        for lba in [
            0,
            BLOCKS - u64::from(i),
            (4 * 1024 * 1024 / u64::from(BS)) % BLOCKS,
        ] {
            if lba + u64::from(i) > BLOCKS {
                continue;
            }
            let data: Vec<u8> = (0..i * BS)
                .map(|x| (x as u8) ^ (i as u8) ^ (lba as u8))
                .collect();
            let (w, r) = if form == 10 {
                (
                    cdb10(WRITE10, 0, lba as u32, i as u16).to_vec(),
                    cdb10(READ10, 0, lba as u32, i as u16).to_vec(),
                )
            } else {
                (
                    cdb16(WRITE16, 0, lba, i).to_vec(),
                    cdb16(READ16, 0, lba, i).to_vec(),
                )
            };
            let wr = rig.run(&w, &data);
            assert_eq!(outcome(&wr), GOOD);
            assert_eq!(wr.transfer_len, i * BS);
            let rd = rig.run(&r, &[]);
            assert_eq!(outcome(&rd), GOOD);
            assert_eq!(&rd.data_in[..], &data[..]);
        }
    }
}

// ---- iSCSI residuals (test_write10_residuals.c / test_read10_residuals.c) ----

#[test]
fn write_without_data_out_is_good_and_writes_nothing() {
    let mut rig = rig();
    let r = rig.run(&cdb10(WRITE10, 0, 0, 1), &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(
        r.transfer_len, BS,
        "the transport reports an overflow of one block"
    );
    assert!(rig.mem.log.is_empty());
}

#[test]
fn write_with_extra_data_out_writes_only_what_the_cdb_says() {
    let mut rig = rig();
    rig.run(&cdb10(WRITE10, 0, 0, 2), &vec![b'a'; 2 * BS as usize]);
    let r = rig.run(&cdb10(WRITE10, 0, 0, 1), &[b'b'; 10000]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, BS, "underflow 10000 - block size");
    let back = rig.run(&cdb10(READ10, 0, 0, 2), &[]).data_in;
    assert!(back[..BS as usize].iter().all(|&c| c == b'b'));
    assert!(back[BS as usize..].iter().all(|&c| c == b'a'));
}

#[test]
fn write_with_short_data_out_writes_whole_blocks_received_only() {
    let mut rig = rig();
    rig.run(&cdb10(WRITE10, 0, 0, 2), &vec![b'a'; 2 * BS as usize]);
    // Two blocks asked, one received: block 0 written, block 1 untouched.
    let r = rig.run(&cdb10(WRITE10, 0, 0, 2), &vec![b'b'; BS as usize]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, 2 * BS, "overflow of one block");
    let back = rig.run(&cdb10(READ10, 0, 0, 2), &[]).data_in;
    assert!(back[..BS as usize].iter().all(|&c| c == b'b'));
    assert!(back[BS as usize..].iter().all(|&c| c == b'a'));
    // 200 bytes of a block: nothing written, still GOOD.
    let before = rig.mem.log.len();
    let r = rig.run(&cdb10(WRITE10, 0, 0, 1), &[b'c'; 200]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(rig.mem.log.len(), before);
}

#[test]
fn read_returns_what_the_cdb_says_whatever_the_expected_length() {
    let r = rig().run(&cdb10(READ10, 0, 0, 2), &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.data_in.len() as u32, 2 * BS);
    assert_eq!(r.transfer_len, 2 * BS);
}

#[test]
fn check_condition_carries_fixed_sense() {
    let r = rig().run(&cdb10(READ10, 0, u32::MAX, 1), &[]);
    assert_eq!(r.status, Status::CheckCondition);
    assert_eq!(r.transfer_len, 0);
    assert_eq!(
        &r.sense.unwrap()[..],
        &[0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0]
    );
}
