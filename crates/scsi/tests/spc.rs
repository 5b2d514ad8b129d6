//! Primary commands: known answers written out from the SPC-4/SBC-3 tables, plus snapshots.

mod common;

use common::*;
use rstest::rstest;
use scsi::{decode_lun, encode_lun, Status};
use store_api::Capabilities;

fn rig() -> Rig {
    Rig::new(Capabilities::default())
}

fn pad(s: &str, n: usize) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.resize(n, b' ');
    v
}

#[test]
fn standard_inquiry_known_answer() {
    let r = rig().run(&inquiry(false, 0, 255), &[]);
    let mut want = vec![
        0x00, // PQ 000b, PDT 00h
        0x00, // RMB 0
        0x06, // VERSION SPC-4
        0x12, // HISUP, RESPONSE DATA FORMAT 2
        91,   // ADDITIONAL LENGTH (96 - 5)
        0x08, // 3PC: third-party copy (EXTENDED COPY)
        0x00, 0x02, // CMDQUE
    ];
    want.extend(pad("GLUSTER", 8));
    want.extend(pad("gluster-iscsi", 16));
    want.extend(pad("0.1", 4));
    want.resize(58, 0);
    want.extend([0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0]); // SAM-5, SPC-4, SBC-3
    want.resize(96, 0);
    assert_eq!(&r.data_in[..], &want[..]);
    insta::assert_snapshot!(hex(&r.data_in));
}

#[test]
fn long_identification_strings_are_cut_and_non_ascii_blanked() {
    let mut cfg = config(Capabilities::default());
    cfg.vendor = "VENDORNAMETOOLONG".into();
    cfg.product = "pr\u{e9}duct".into();
    let d = Rig::with(cfg).run(&inquiry(false, 0, 96), &[]).data_in;
    assert_eq!(&d[8..16], b"VENDORNA");
    // 'é' is two UTF-8 bytes, each blanked.
    assert_eq!(&d[16..32], b"pr  duct        ");
}

#[test]
fn vpd_supported_pages_known_answer() {
    let d = rig().run(&inquiry(true, 0x00, 255), &[]).data_in;
    assert_eq!(
        &d[..],
        &[0x00, 0x00, 0x00, 0x07, 0x00, 0x80, 0x83, 0x86, 0x8F, 0xB0, 0xB1]
    );
    let d = Rig::new(discard_caps())
        .run(&inquiry(true, 0x00, 255), &[])
        .data_in;
    assert_eq!(
        &d[..],
        &[0x00, 0x00, 0x00, 0x08, 0x00, 0x80, 0x83, 0x86, 0x8F, 0xB0, 0xB1, 0xB2]
    );
}

#[test]
fn vpd_unit_serial_number_known_answer() {
    let d = rig().run(&inquiry(true, 0x80, 255), &[]).data_in;
    assert_eq!(&d[..], b"\x00\x80\x00\x06SN0001");
}

#[test]
fn vpd_device_identification_known_answer() {
    let d = rig().run(&inquiry(true, 0x83, 255), &[]).data_in;
    let mut want = vec![0x00, 0x83, 0x00, 20 + 4 + 14];
    // NAA designator: code set 1 (binary), association 0 (LU), type 3 (NAA), length 16.
    want.extend([0x01, 0x03, 0x00, 0x10]);
    want.extend([
        0x60, 0x01, 0x40, 0x5f, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22, 0x33,
        0x44,
    ]);
    // T10 vendor ID designator: code set 2 (ASCII), type 1, vendor (8) + serial.
    want.extend([0x02, 0x01, 0x00, 14]);
    want.extend(b"GLUSTER SN0001");
    assert_eq!(&d[..], &want[..]);
    insta::assert_snapshot!(hex(&d));
}

#[test]
fn vpd_block_limits_known_answer() {
    let d = Rig::new(discard_caps())
        .run(&inquiry(true, 0xB0, 255), &[])
        .data_in;
    let mut want = [0u8; 64];
    want[1] = 0xB0;
    want[3] = 0x3C;
    want[4] = 0x01; // WSNZ
    want[5] = 0xFF; // MAXIMUM COMPARE AND WRITE LENGTH
    want[8..12].copy_from_slice(&(8 * 1024 * 1024 / 512u32).to_be_bytes()); // MAX TRANSFER
    want[20..24].copy_from_slice(&(1u32 << 20).to_be_bytes()); // MAX UNMAP LBA COUNT
    want[24..28].copy_from_slice(&64u32.to_be_bytes()); // MAX UNMAP DESCRIPTORS
    want[28..32].copy_from_slice(&8u32.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY 4 KiB
    want[36..44].copy_from_slice(&32768u64.to_be_bytes()); // MAX WRITE SAME LENGTH: 16 MiB
    assert_eq!(&d[..], &want[..]);
    insta::assert_snapshot!(hex(&d));
}

#[test]
fn vpd_extended_inquiry_known_answer() {
    let d = rig().run(&inquiry(true, 0x86, 255), &[]).data_in;
    // SPC-4 7.8.7: PAGE LENGTH 003Ch.
    let mut want = [0u8; 64];
    want[1] = 0x86;
    want[3] = 0x3C;
    // Byte 4: ACTIVATE MICROCODE, SPT, GRD_CHK, APP_CHK, REF_CHK all 0 (no protection).
    // Byte 5, bits 2..0: HEADSUP, ORDSUP, SIMPSUP.
    want[5] = 0b0000_0111;
    // Byte 6, bit 0: V_SUP (a volatile cache); bit 1 NV_SUP 0.
    want[6] = 0b0000_0001;
    assert_eq!(&d[..], &want[..]);
    insta::assert_snapshot!(hex(&d));
}

#[test]
fn vpd_block_device_characteristics_and_provisioning() {
    let mut rig = Rig::new(discard_caps());
    let d = rig.run(&inquiry(true, 0xB1, 255), &[]).data_in;
    let mut want = [0u8; 64];
    want[1] = 0xB1;
    want[3] = 0x3C;
    // SBC-4 6.6.2, byte 7 bits 7-6: WABEREQ 01b, a read after SANITIZE BLOCK ERASE
    // (offered: the store discards) completes with GOOD status.
    want[7] = 0b0100_0000;
    assert_eq!(&d[..], &want[..]);
    // Without discard no BLOCK ERASE, and WABEREQ 00b (not specified).
    let d = Rig::new(Capabilities::default())
        .run(&inquiry(true, 0xB1, 255), &[])
        .data_in;
    want[7] = 0;
    assert_eq!(&d[..], &want[..]);
    let d = rig.run(&inquiry(true, 0xB2, 255), &[]).data_in;
    // THRESHOLD EXPONENT 11 (thresholds supported: sets of 2^11 512-byte blocks), LBPU |
    // LBPWS | LBPWS10 | LBPRZ, provisioning type 010b (thin).
    assert_eq!(&d[..], &[0x00, 0xB2, 0x00, 0x04, 0x0B, 0xE4, 0x02, 0x00]);
    insta::assert_snapshot!(hex(&d));
}

#[rstest]
#[case::no_discard(Capabilities::default(), 0xB2)]
#[case::unknown(discard_caps(), 0x87)]
fn unsupported_vpd_page_is_invalid_field(#[case] caps: Capabilities, #[case] page: u8) {
    let r = Rig::new(caps).run(&inquiry(true, page, 255), &[]);
    assert_eq!(outcome(&r), INVALID_FIELD);
    // Field pointer at CDB byte 2 (PAGE CODE).
    let s = r.sense.unwrap();
    assert_eq!(&s[15..18], &[0xC0, 0x00, 0x02]);
}

#[test]
fn read_capacity16_known_answer() {
    let r = Rig::new(discard_caps()).run(&read_capacity16(32), &[]);
    let mut want = [0u8; 32];
    want[0..8].copy_from_slice(&(BLOCKS - 1).to_be_bytes());
    want[8..12].copy_from_slice(&512u32.to_be_bytes());
    want[14] = 0xC0; // LBPME, LBPRZ
    assert_eq!(&r.data_in[..], &want[..]);
    insta::assert_snapshot!(hex(&r.data_in));
    let r = rig().run(&read_capacity16(32), &[]);
    assert_eq!(r.data_in[14], 0, "fully provisioned without discard");
}

#[test]
fn read_capacity10_saturates_and_checks_pmi() {
    let mut cfg = config(Capabilities::default());
    cfg.geometry.num_blocks = 1 << 33;
    let mut rig = Rig {
        target: scsi::ScsiTarget::new(),
        mem: Mem::new(0),
        others: Vec::new(),
        offload: true,
        offloaded: 0,
    };
    rig.target.add_lun(0, cfg);
    let r = rig.run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert_eq!(&r.data_in[..], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x02, 0]);
    // LBA set without PMI.
    let r = rig.run(&[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], &[]);
    assert_eq!(outcome(&r), INVALID_FIELD);
}

#[test]
fn mode_sense6_all_pages_known_answer() {
    let r = rig().run(&mode_sense6(false, 0, 0x3F, 0, 255), &[]);
    assert_eq!(outcome(&r), GOOD);
    let mut want = vec![
        3 + 8 + 20 + 12, // MODE DATA LENGTH
        0x00,            // MEDIUM TYPE
        0x10,            // DPOFUA
        0x08,            // BLOCK DESCRIPTOR LENGTH
        0x00,
        0x00,
        0x08,
        0x00, // NUMBER OF LOGICAL BLOCKS 2048
        0x00,
        0x00,
        0x02,
        0x00, // reserved, LOGICAL BLOCK LENGTH 512
    ];
    // Caching page: code 08h, length 12h, WCE.
    let mut caching = vec![0u8; 20];
    caching[0] = 0x08;
    caching[1] = 0x12;
    caching[2] = 0x04;
    want.extend(caching);
    // Control page (SPC-4 table 457): code 0Ah, length 0Ah, TST 001b (byte 2 bits 7 to 5:
    // a task set per I_T nexus), QUEUE ALGORITHM MODIFIER 1.
    want.extend([0x0A, 0x0A, 0x20, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&r.data_in[..], &want[..]);
    assert_eq!(r.transfer_len as usize, want.len());
    insta::assert_snapshot!(hex(&r.data_in));
}

#[test]
fn mode_sense_variants() {
    let mut cfg = config(Capabilities::default());
    cfg.write_cache = false;
    cfg.read_only = true;
    let mut rig = Rig::with(cfg);
    // DBD, caching page only, write cache off, read-only: WP set.
    let r = rig.run(&mode_sense6(true, 0, 0x08, 0, 255), &[]);
    let mut want = vec![3 + 20, 0x00, 0x90, 0x00, 0x08, 0x12];
    want.resize(4 + 20, 0);
    assert_eq!(&r.data_in[..], &want[..]);
    // Changeable values: D_SENSE (byte 2 bit 2) and SWP (byte 4 bit 3), SPC-4 table 457.
    let r = rig.run(&mode_sense6(true, 1, 0x0A, 0, 255), &[]);
    assert_eq!(
        &r.data_in[4..],
        &[0x0A, 0x0A, 0x04, 0, 0x08, 0, 0, 0, 0, 0, 0, 0]
    );
    // Saved values.
    let r = rig.run(&mode_sense6(false, 3, 0x3F, 0, 255), &[]);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x39, 0x00));
    // Unsupported page and subpage.
    assert_eq!(
        outcome(&rig.run(&mode_sense6(false, 0, 0x19, 0, 255), &[])),
        INVALID_FIELD
    );
    assert_eq!(
        outcome(&rig.run(&mode_sense6(false, 0, 0x08, 1, 255), &[])),
        INVALID_FIELD
    );
    // All pages and subpages is the same as all pages.
    let a = rig.run(&mode_sense6(false, 0, 0x3F, 0, 255), &[]);
    let b = rig.run(&mode_sense6(false, 0, 0x3F, 0xFF, 255), &[]);
    assert_eq!(a.data_in, b.data_in);
    // Allocation length 4: header only, no overflow.
    let r = rig.run(&mode_sense6(false, 0, 0x3F, 0, 4), &[]);
    assert_eq!(r.data_in.len(), 4);
    assert_eq!(r.transfer_len, 4);
}

#[test]
fn mode_sense10_long_lba_known_answer() {
    // LLBAA, control page, allocation length 0x100.
    let r = rig().run(&[0x5A, 0x10, 0x0A, 0, 0, 0, 0, 0x01, 0x00, 0], &[]);
    let mut want = vec![
        0x00,
        6 + 16 + 12, // MODE DATA LENGTH
        0x00,
        0x10, // MEDIUM TYPE, DPOFUA
        0x01,
        0x00, // LONGLBA
        0x00,
        0x10, // BLOCK DESCRIPTOR LENGTH 16
    ];
    want.extend((BLOCKS).to_be_bytes());
    want.extend([0, 0, 0, 0, 0, 0, 0x02, 0x00]);
    // TST 001b, QUEUE ALGORITHM MODIFIER 1 (SPC-4 table 457).
    want.extend([0x0A, 0x0A, 0x20, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&r.data_in[..], &want[..]);
    insta::assert_snapshot!(hex(&r.data_in));
}

#[test]
fn report_luns_lists_peripheral_and_flat_addresses() {
    let mut rig = rig();
    rig.target.add_lun(5, config(Capabilities::default()));
    rig.target.add_lun(300, config(Capabilities::default()));
    let cdb = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    let r = rig.run(&cdb, &[]);
    let want: Vec<u8> = [
        [0, 0, 0, 24, 0, 0, 0, 0],
        [0x00, 0x00, 0, 0, 0, 0, 0, 0],
        [0x00, 0x05, 0, 0, 0, 0, 0, 0],
        [0x41, 0x2C, 0, 0, 0, 0, 0, 0], // flat space, 300 = 0x12C
    ]
    .concat();
    assert_eq!(&r.data_in[..], &want[..]);
    // Works on a LUN with no logical unit, too.
    let r = rig.run_lun(encode_lun(7), &cdb, &[]);
    assert_eq!(&r.data_in[..], &want[..]);
    // Allocation length below 16.
    let r = rig.run(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0], &[]);
    assert_eq!(outcome(&r), INVALID_FIELD);
}

#[rstest]
#[case(0, 0x0000_0000_0000_0000)]
#[case(5, 0x0005_0000_0000_0000)]
#[case(255, 0x00FF_0000_0000_0000)]
#[case(256, 0x4100_0000_0000_0000)]
#[case(16383, 0x7FFF_0000_0000_0000)]
fn lun_encoding(#[case] lun: u16, #[case] wire: u64) {
    assert_eq!(encode_lun(lun), wire);
    assert_eq!(decode_lun(wire), Some(lun));
}

#[rstest]
#[case::flat_small(0x4005_0000_0000_0000, Some(5))]
#[case::bus_nonzero(0x0105_0000_0000_0000, None)]
#[case::logical_unit_addressing(0x8005_0000_0000_0000, None)]
#[case::second_level(0x0001_0001_0000_0000, None)]
fn lun_decoding(#[case] wire: u64, #[case] lun: Option<u16>) {
    assert_eq!(decode_lun(wire), lun);
}

#[test]
fn absent_lun() {
    let mut rig = rig();
    let absent = encode_lun(9);
    // INQUIRY: peripheral qualifier 011b, device type 1Fh.
    let r = rig.run_lun(absent, &inquiry(false, 0, 96), &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.data_in[0], 0x7F);
    assert_eq!(r.data_in.len(), 96);
    // REQUEST SENSE: GOOD, sense data says LOGICAL UNIT NOT SUPPORTED.
    let r = rig.run_lun(absent, &[0x03, 0, 0, 0, 252, 0], &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(
        &r.data_in[..],
        &[0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x25, 0x00, 0, 0, 0, 0]
    );
    // Everything else: ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
    for cdb in [
        &[0u8, 0, 0, 0, 0, 0][..],
        &cdb10(0x28, 0, 0, 1),
        &read_capacity16(32),
    ] {
        assert_eq!(outcome(&rig.run_lun(absent, cdb, &[])), LU_NOT_SUPPORTED);
    }
    // Even an unknown opcode is LOGICAL UNIT NOT SUPPORTED...
    assert_eq!(
        outcome(&rig.run_lun(absent, &[0xC1; 16], &[])),
        LU_NOT_SUPPORTED
    );
    // ...but a bad INQUIRY is still judged on its fields.
    assert_eq!(
        outcome(&rig.run_lun(absent, &inquiry(false, 3, 96), &[])),
        INVALID_FIELD
    );
    // A LUN number that cannot be decoded is absent too.
    assert_eq!(
        outcome(&rig.run_lun(0x8000_0000_0000_0000, &[0; 6], &[])),
        LU_NOT_SUPPORTED
    );
}

#[test]
fn request_sense_reports_no_sense() {
    let mut rig = rig();
    let r = rig.run(&[0x03, 0, 0, 0, 18, 0], &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(
        &r.data_in[..],
        &[0x70, 0, 0, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    // Descriptor format.
    let r = rig.run(&[0x03, 1, 0, 0, 252, 0], &[]);
    assert_eq!(&r.data_in[..], &[0x72, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn unknown_opcodes_are_invalid_command_operation_code() {
    let mut rig = rig();
    for cdb in [
        &[0x02u8, 0, 0, 0, 0, 0][..],
        &[0x5C, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0xFF; 16],
    ] {
        let r = rig.run(cdb, &[]);
        assert_eq!(outcome(&r), INVALID_OPCODE, "{cdb:02x?}");
        assert_eq!(
            &r.sense.unwrap()[..],
            &[0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0]
        );
    }
}

/// Optional commands this target leaves out (many obsolete in SPC-4 / SBC-3): each must be
/// refused as an unknown operation code and be absent from REPORT SUPPORTED OPERATION CODES,
/// so that initiators (and libiscsi's SCSI.WriteAtomic16 suite) see them consistently as
/// not supported.
#[rstest]
#[case::write_atomic16(&[0x9C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0])]
fn left_out_commands_are_consistently_not_supported(#[case] cdb: &[u8]) {
    let mut rig = Rig::new(discard_caps());
    let data = vec![0u8; 2 * BS as usize];
    let r = rig.run(cdb, &data);
    // SPC-4 4.5.3 fixed format: current error, ILLEGAL REQUEST, additional length 0Ah,
    // ASC/ASCQ 20h/00h INVALID COMMAND OPERATION CODE.
    assert_eq!(
        r.sense.as_deref().unwrap(),
        &[0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0],
        "{cdb:02x?}"
    );
    assert_eq!(r.status, Status::CheckCondition);
    assert!(rig.mem.log.is_empty(), "nothing reached the store");
    assert!(
        all_commands(&mut rig, false)
            .iter()
            .all(|d| d.opcode != cdb[0]),
        "not listed by REPORT SUPPORTED OPERATION CODES"
    );
    // One-command form (REPORTING OPTIONS 001b): SUPPORT 001b, not supported (SPC-4
    // table 258), no CDB usage data.
    let r = rig.run(&rsoc(false, 1, cdb[0], 0, 64), &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(&r.data_in[..], &[0, 0x01, 0, 0]);
}

#[test]
fn start_stop_unit_is_accepted() {
    assert_eq!(outcome(&rig().run(&[0x1B, 0, 0, 0, 0x01, 0], &[]),), GOOD);
}

// ---- REPORT SUPPORTED OPERATION CODES (SCSI.ReportSupportedOpcodes.*) ----

struct Descriptor {
    opcode: u8,
    sa: u16,
    ctdp: bool,
    servactv: bool,
    cdb_len: u16,
}

fn all_commands(rig: &mut Rig, rctd: bool) -> Vec<Descriptor> {
    let r = rig.run(&rsoc(rctd, 0, 0, 0, 65535), &[]);
    assert_eq!(outcome(&r), GOOD);
    let d = &r.data_in;
    let len = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
    assert_eq!(len, d.len() - 4);
    let mut out = Vec::new();
    let mut at = 4;
    while at < d.len() {
        let e = &d[at..];
        let ctdp = e[5] & 0x02 != 0;
        out.push(Descriptor {
            opcode: e[0],
            sa: u16::from_be_bytes([e[2], e[3]]),
            ctdp,
            servactv: e[5] & 0x01 != 0,
            cdb_len: u16::from_be_bytes([e[6], e[7]]),
        });
        if ctdp {
            assert_eq!(
                u16::from_be_bytes([e[8], e[9]]),
                0x0A,
                "timeouts descriptor length"
            );
            at += 20;
        } else {
            at += 8;
        }
    }
    out
}

#[rstest]
fn report_supported_opcodes(#[values(false, true)] discard: bool) {
    let caps = if discard {
        discard_caps()
    } else {
        Capabilities::default()
    };
    let mut rig = Rig::new(caps);
    let all = all_commands(&mut rig, false);
    assert!(all.iter().all(|d| !d.ctdp), "no CTDP without RCTD");
    assert!(
        all.iter().all(|d| d.servactv || d.sa == 0),
        "SA only with SERVACTV"
    );
    assert_eq!(
        all.iter().any(|d| d.opcode == 0x42),
        discard,
        "UNMAP only with discard"
    );
    for d in &all {
        let (ok, bad) = if d.servactv { (2, 1) } else { (1, 2) };
        assert_eq!(
            outcome(&rig.run(&rsoc(false, bad, d.opcode, d.sa, 65535), &[])),
            INVALID_FIELD
        );
        let r = rig.run(&rsoc(false, ok, d.opcode, d.sa, 65535), &[]);
        assert_eq!(outcome(&r), GOOD);
        assert_eq!(r.data_in[1] & 0x07, 0x03, "supported");
        let cdb_len = u16::from_be_bytes([r.data_in[2], r.data_in[3]]);
        assert_eq!(cdb_len, d.cdb_len);
        assert_eq!(
            r.data_in[4], d.opcode,
            "CDB USAGE DATA starts with the opcode"
        );
        // The command really is implemented: its opcode is not rejected as unknown.
        let mut cdb = vec![0u8; usize::from(cdb_len)];
        cdb[0] = d.opcode;
        if d.servactv {
            cdb[1] = d.sa as u8;
        }
        let r = rig.run(&cdb, &[]);
        assert_ne!(outcome(&r), INVALID_OPCODE, "{:02x}", d.opcode);
    }
    let with_timeouts = all_commands(&mut rig, true);
    assert_eq!(with_timeouts.len(), all.len());
    assert!(with_timeouts.iter().all(|d| d.ctdp));
    // Small allocation length: trimmed, still GOOD.
    let r = rig.run(&rsoc(false, 0, 0, 0, 1024), &[]);
    assert_eq!(outcome(&r), GOOD);
}

#[test]
fn report_supported_opcodes_known_answers() {
    let mut rig = rig();
    // READ(10), one command: SUPPORT 011b, CDB SIZE 10, usage data.
    let r = rig.run(&rsoc(false, 1, 0x28, 0, 64), &[]);
    assert_eq!(
        &r.data_in[..],
        &[0, 0x03, 0, 10, 0x28, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0x00]
    );
    // Not implemented opcode (READ BUFFER(10)): SUPPORT 001b.
    let r = rig.run(&rsoc(false, 1, 0x3C, 0, 64), &[]);
    assert_eq!(&r.data_in[..], &[0, 0x01, 0, 0]);
    // READ CAPACITY(16) by service action, with timeouts descriptor.
    let r = rig.run(&rsoc(true, 2, 0x9E, 0x10, 64), &[]);
    assert_eq!(&r.data_in[..4], &[0, 0x83, 0, 16]);
    assert_eq!(&r.data_in[4..6], &[0x9E, 0x10]);
    assert_eq!(r.data_in.len(), 4 + 16 + 12);
    insta::assert_snapshot!(hex(&rig.run(&rsoc(false, 0, 0, 0, 65535), &[]).data_in));
}

/// LOG SENSE CDB (SPC-4 6.6): PC and PAGE CODE in byte 2, SUBPAGE CODE in byte 3,
/// PARAMETER POINTER in bytes 5..7, ALLOCATION LENGTH in bytes 7..9.
fn log_sense(page: u8, subpage: u8, pointer: u16, alloc: u16) -> [u8; 10] {
    let [p0, p1] = pointer.to_be_bytes();
    let [a0, a1] = alloc.to_be_bytes();
    [0x4D, 0, 0x40 | page, subpage, 0, p0, p1, a0, a1, 0]
}

/// A thin provisioned LU whose storage was sampled reports it in the Logical Block
/// Provisioning log page (SBC-3 0Ch), in threshold sets (the VPD page's THRESHOLD EXPONENT
/// 11 with 512-byte blocks: 1 MiB each; used space rounded up, free space down): Available LBA Mapping Resource Count (0001h, scope 10b: the volume's
/// free space is shared) and Used LBA Mapping Resource Count (0002h, scope 01b: this
/// LU's own blocks); the supported pages list it.
#[test]
fn log_sense_reports_a_thin_lus_storage() {
    let mut rig = Rig::new(discard_caps());
    // Not sampled yet: only the supported pages page, which lists itself.
    let r = rig.run(&log_sense(0x00, 0, 0, 255), &[]);
    assert_eq!(r.status, Status::Good);
    assert_eq!(&r.data_in[..], &[0x00, 0x00, 0x00, 0x01, 0x00]);
    let r = rig.run(&log_sense(0x0C, 0, 0, 255), &[]);
    // ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h).
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x24, 0x00));

    // 1 MiB and a block allocated, 10 MiB and a block free: 2 and 10 sets.
    assert!(rig
        .target
        .set_space(
            0,
            store_api::Space {
                allocated: (1 << 20) + 512,
                available: Some((10 << 20) + 512),
                storage: None,
            },
        )
        .is_some());
    let r = rig.run(&[0x12, 0x01, 0xB2, 0, 255, 0], &[]);
    assert_eq!(r.data_in[4], 11, "THRESHOLD EXPONENT");
    let r = rig.run(&log_sense(0x00, 0, 0, 255), &[]);
    assert_eq!(&r.data_in[..], &[0x00, 0x00, 0x00, 0x02, 0x00, 0x0C]);
    // Supported pages and subpages (00h/FFh): SPF set, pairs of page and subpage codes.
    let r = rig.run(&log_sense(0x00, 0xFF, 0, 255), &[]);
    assert_eq!(
        &r.data_in[..],
        &[0x40, 0xFF, 0x00, 0x06, 0x00, 0x00, 0x00, 0xFF, 0x0C, 0x00]
    );
    let r = rig.run(&log_sense(0x0C, 0, 0, 255), &[]);
    let want = [
        0x0C, 0x00, 0x00, 0x18, // page 0Ch, subpage 0, PAGE LENGTH 24
        0x00, 0x01, 0x03, 0x08, // 0001h, binary format list, length 8
        0x00, 0x00, 0x00, 0x0A, // RESOURCE COUNT 10
        0x02, 0x00, 0x00, 0x00, // SCOPE 10b
        0x00, 0x02, 0x03, 0x08, // 0002h
        0x00, 0x00, 0x00, 0x02, // RESOURCE COUNT 2
        0x01, 0x00, 0x00, 0x00, // SCOPE 01b
    ];
    assert_eq!(r.status, Status::Good);
    assert_eq!(&r.data_in[..], &want[..]);
    // From parameter 0002h on; past the last parameter is an error (SPC-4 6.6).
    let r = rig.run(&log_sense(0x0C, 0, 2, 255), &[]);
    assert_eq!(r.data_in[..4], [0x0C, 0x00, 0x00, 0x0C]);
    assert_eq!(r.data_in[4..], want[16..]);
    let r = rig.run(&log_sense(0x0C, 0, 3, 255), &[]);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x24, 0x00));
    // Cut to the allocation length.
    let r = rig.run(&log_sense(0x0C, 0, 0, 8), &[]);
    assert_eq!(&r.data_in[..], &want[..8]);
    // SP (save parameters) is refused: nothing is saved.
    let mut sp = log_sense(0x0C, 0, 0, 255);
    sp[1] = 0x01;
    assert_eq!(
        outcome(&rig.run(&sp, &[])),
        (Status::CheckCondition, 0x05, 0x24, 0x00)
    );
}

/// A fully provisioned LU (no discard) has no Logical Block Provisioning log page, however
/// its storage was sampled; an unknown page is INVALID FIELD IN CDB.
#[test]
fn log_sense_of_a_fully_provisioned_lu_lists_no_provisioning_page() {
    let mut rig = rig();
    rig.target.set_space(
        0,
        store_api::Space {
            allocated: 1 << 20,
            available: Some(10 << 20),
            storage: None,
        },
    );
    let r = rig.run(&log_sense(0x00, 0, 0, 255), &[]);
    assert_eq!(&r.data_in[..], &[0x00, 0x00, 0x00, 0x01, 0x00]);
    for page in [0x0C, 0x2F, 0x0D] {
        let r = rig.run(&log_sense(page, 0, 0, 255), &[]);
        assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x24, 0x00));
    }
}
