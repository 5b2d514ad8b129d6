//! Bad input: every case ends in `Err(ProtocolError)` (or a defined answer), never a panic.

use super::initiator::*;
use crate::pdu::{self, FrameLimits};
use crate::{Limits, ProtocolError};
use bytes::BytesMut;

fn logged_in() -> Initiator {
    let mut i = Initiator::new(config());
    i.login_normal();
    i.take_events();
    i
}

#[test]
fn unknown_opcode() {
    let mut i = logged_in();
    let mut b = [0u8; 48];
    b[0] = 0x1c;
    assert_eq!(
        i.try_send(&pdu(b, &[])).unwrap_err(),
        ProtocolError::UnknownOpcode(0x1c)
    );
    // A target opcode from an initiator is just as unknown.
    b[0] = 0x21;
    assert_eq!(
        i.try_send(&pdu(b, &[])).unwrap_err(),
        ProtocolError::UnknownOpcode(0x21)
    );
}

#[test]
fn data_segment_longer_than_our_limit() {
    let mut i = logged_in();
    let mut b = [0u8; 48];
    b[0] = 0x40; // NOP-Out
    b[5..8].copy_from_slice(&[0x04, 0x00, 0x01]); // 262145 > 262144
                                                  // Refused from the header alone, before the data is buffered.
    let err = i.try_send(&b).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::DataSegmentTooLong {
            len: 262_145,
            max: 262_144
        }
    );
}

#[test]
fn login_data_segment_limit_before_negotiation() {
    let mut i = Initiator::new(config_with(Limits {
        max_recv_data_segment_length: 4096,
        ..Limits::default()
    }));
    let mut b = [0u8; 48];
    b[0] = 0x43;
    b[5..8].copy_from_slice(&[0x00, 0x20, 0x01]); // 8193
    let err = i.try_send(&b).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::DataSegmentTooLong {
            len: 8193,
            max: 8192
        }
    );
}

#[test]
fn login_data_segment_limit_with_default_config() {
    // RFC 7143 13.12: MaxRecvDataSegmentLength is 8192 until the login completes, whatever
    // larger value the target will declare (262144 by default).
    let mut i = Initiator::new(config());
    assert_eq!(i.conn.frame_limits().max_data_segment, 8192);
    let mut b = [0u8; 48];
    b[0] = 0x43;
    b[5..8].copy_from_slice(&[0x00, 0x20, 0x01]); // 8193
    let err = i.try_send(&b).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::DataSegmentTooLong {
            len: 8193,
            max: 8192
        }
    );
}

#[test]
fn login_text_split_over_too_many_pdus_fails_the_login() {
    let mut i = Initiator::new(config());
    // 9 partial (C=1) requests of 8 KiB: more than the 64 KiB of text a login may carry.
    let chunk = vec![b'a'; 8192];
    let mut last = Vec::new();
    for _ in 0..9 {
        let mut req = login_req(false, 0, 1, 1, 1, &chunk);
        req[1] |= 0x40;
        last = i.send(&req);
        if i.conn.is_finished() {
            break;
        }
    }
    assert!(i.conn.is_finished());
    assert_eq!(last[0].status_class() >> 8, 2, "initiator error class");
}

#[test]
fn bad_ahs_length() {
    let mut i = logged_in();
    let mut p = scsi_cmd(false, true, false, false, 1, 0, 1, &[0; 6], &[]);
    p[4] = 1; // 4 bytes of AHS claiming 200
    p.splice(48..48, [0x00, 200, 0x01, 0x00]);
    let err = i.try_send(&p).unwrap_err();
    assert!(
        matches!(err, ProtocolError::Malformed(ref m) if m.contains("AHS")),
        "{err}"
    );
}

#[test]
fn unknown_ahs_type() {
    let mut i = logged_in();
    let mut p = scsi_cmd(false, true, false, false, 1, 0, 1, &[0; 6], &[]);
    p[4] = 1;
    p.splice(48..48, [0x00, 0x01, 0x09, 0x00]);
    assert!(matches!(i.try_send(&p), Err(ProtocolError::Malformed(_))));
}

/// Puts one 4-byte AHS claiming AHSLength 200 (RFC 7143 11.2.1.2) in front of the data.
fn with_bad_ahs(mut p: Vec<u8>) -> Vec<u8> {
    p[4] = 1; // TotalAHSLength: one word
    p.splice(48..48, [0x00, 200, 0x01, 0x00]);
    p
}

#[rstest::rstest]
#[case::command_outside_the_window(scsi_cmd(false, true, false, false, 1, 0, 1000, &[0; 6], &[]))]
#[case::command_ahead_of_exp_cmd_sn(scsi_cmd(false, true, false, false, 1, 0, 3, &[0; 6], &[]))]
#[case::immediate_nop(nop_out(true, 1, 1, &[]))]
#[case::data_out_for_unknown_task(data_out(true, 9, 0xffff_ffff, 0, 0, &[0; 16]))]
#[case::task_management(tmf_req(1, 5, 9, 1))]
#[case::text(text_req(true, false, 1, 0xffff_ffff, 1, &[]))]
#[case::logout(logout_req(0, 1, 1))]
fn malformed_ahs_is_refused_on_every_pdu(#[case] p: Vec<u8>) {
    let mut i = logged_in();
    let err = i.try_send(&with_bad_ahs(p)).unwrap_err();
    assert!(
        matches!(err, ProtocolError::Malformed(ref m) if m.contains("AHS")),
        "{err}"
    );
}

#[test]
fn malformed_ahs_is_refused_during_login() {
    let mut i = Initiator::new(config());
    let keys = kv_owned(&libiscsi_security_keys(TARGET));
    let err = i
        .try_send(&with_bad_ahs(login_req(true, 0, 1, 1, 1, &keys)))
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Malformed(_)), "{err}");
}

#[test]
fn unknown_ahs_type_on_a_command_outside_the_window() {
    let mut i = logged_in();
    let mut p = scsi_cmd(false, true, false, false, 1, 0, 1000, &[0; 6], &[]);
    p[4] = 1;
    p.splice(48..48, [0x00, 0x01, 0x09, 0x00]);
    assert!(matches!(i.try_send(&p), Err(ProtocolError::Malformed(_))));
}

#[test]
fn commands_before_login() {
    for p in [
        scsi_cmd(false, true, false, false, 1, 0, 1, &[0; 6], &[]),
        nop_out(true, 1, 1, &[]),
        text_req(
            true,
            false,
            1,
            0xffff_ffff,
            1,
            &kv(&[("SendTargets", "All")]),
        ),
        logout_req(0, 1, 1),
    ] {
        let mut i = Initiator::new(config());
        let err = i.try_send(&p).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Protocol(ref m) if m.contains("before login")),
            "{err}"
        );
    }
}

#[test]
fn login_in_full_feature_phase() {
    let mut i = logged_in();
    let keys = kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    assert!(matches!(
        i.try_send(&login_req(true, 0, 1, 1, 1, &keys)),
        Err(ProtocolError::Protocol(_))
    ));
}

#[test]
fn scsi_command_in_discovery_session() {
    let mut i = Initiator::new(config());
    i.login_discovery();
    let err = i
        .try_send(&scsi_cmd(
            false,
            true,
            true,
            false,
            1,
            512,
            1,
            &[0x28; 10],
            &[],
        ))
        .unwrap_err();
    assert!(err.to_string().contains("discovery"), "{err}");
}

#[test]
fn malformed_text_keys() {
    let mut i = Initiator::new(config());
    i.login_discovery();
    let err = i
        .try_send(&text_req(true, false, 1, 0xffff_ffff, 1, b"SendTargets\0"))
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Malformed(_)));
    let mut i = Initiator::new(config());
    i.login_discovery();
    let err = i
        .try_send(&text_req(true, false, 1, 0xffff_ffff, 1, b"\xff\xfe=1\0"))
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Malformed(_)));
}

#[test]
fn text_continuation_with_unknown_ttt() {
    let mut i = Initiator::new(config());
    i.login_discovery();
    assert!(i
        .try_send(&text_req(true, false, 1, 0x1234, 1, &[]))
        .is_err());
}

#[rstest::rstest]
#[case::immediate_data_beyond_edtl(scsi_cmd(false, true, false, true, 1, 100, 1, &[0x2a; 10], &[0; 200]))]
#[case::immediate_data_without_w(scsi_cmd(false, true, true, false, 1, 100, 1, &[0x28; 10], &[0; 100]))]
#[case::reserved_itt(scsi_cmd(false, true, false, false, 0xffff_ffff, 0, 1, &[0; 6], &[]))]
fn bad_scsi_commands(#[case] p: Vec<u8>) {
    let mut i = logged_in();
    assert!(matches!(i.try_send(&p), Err(ProtocolError::Protocol(_))));
}

#[test]
fn duplicate_itt() {
    let mut i = logged_in();
    i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        1,
        512,
        1,
        &[0x28; 10],
        &[],
    ));
    assert!(i
        .try_send(&scsi_cmd(
            false,
            true,
            true,
            false,
            1,
            512,
            2,
            &[0x28; 10],
            &[]
        ))
        .is_err());
}

#[test]
fn immediate_data_beyond_first_burst() {
    let mut i = Initiator::new(config());
    let keys = kv(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "4096"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(r[0].flags(), 0x87);
    let err = i
        .try_send(&scsi_cmd(
            false,
            true,
            false,
            true,
            1,
            8192,
            1,
            &[0x2a; 10],
            &[0; 8192],
        ))
        .unwrap_err();
    assert!(err.to_string().contains("FirstBurstLength"), "{err}");
}

#[test]
fn unsolicited_data_when_initial_r2t_yes() {
    let mut i = Initiator::new(config());
    let keys = kv(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(r[0].flags(), 0x87);
    assert!(i
        .try_send(&scsi_cmd(
            false,
            false,
            false,
            true,
            1,
            8192,
            1,
            &[0x2a; 10],
            &[]
        ))
        .is_err());
}

#[rstest::rstest]
#[case::wrong_offset(512, 1024, 0xffff_ffff)]
#[case::past_edtl(0, 8192, 0xffff_ffff)]
#[case::beyond_first_burst_by_r2t_tag(0, 1024, 0x777)]
fn bad_data_out(#[case] offset: u32, #[case] len: usize, #[case] ttt: u32) {
    let mut i = logged_in();
    // 4096-byte write, unsolicited data follows (F=0), no immediate data.
    i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        1,
        4096,
        1,
        &[0x2a; 10],
        &[],
    ));
    let err = i
        .try_send(&data_out(false, 1, ttt, 0, offset, &vec![0; len]))
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Protocol(_)), "{err}");
}

#[test]
fn data_out_past_r2t_range() {
    let mut i = logged_in();
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        1,
        4096,
        1,
        &[0x2a; 10],
        &[],
    ));
    let ttt = r[0].ttt();
    assert!(
        i.try_send(&data_out(true, 1, ttt, 0, 2048, &[0; 2048]))
            .is_err(),
        "skips offset 0"
    );
}

#[test]
fn decoder_never_panics_on_garbage() {
    // A small deterministic fuzz over the exported decoder.
    let limits = FrameLimits {
        max_data_segment: 8192,
        digests: Default::default(),
    };
    let mut state = 0x1234_5678u32;
    for round in 0..2000 {
        let mut v = Vec::new();
        let n = 40 + round % 120;
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            v.push(state as u8);
        }
        v[0] &= 0x47; // mostly valid opcodes
        v[4] &= 0x03;
        v[5] = 0;
        let mut buf = BytesMut::from(&v[..]);
        while let Ok(Some(p)) = pdu::decode(&mut buf, &limits) {
            let _ = pdu::parse_ahs(p.ahs.clone());
            let _ = crate::text::parse(&p.data);
        }
        // And through a logged-in connection.
        let mut i = logged_in();
        let _ = i.try_send(&v);
    }
}

/// The SCSI Response RFC 7143 7.8 option (b) asks for when a Data-Out arrives out of DataSN
/// order (an implied digest error, 7.9): CHECK CONDITION with the iSCSI condition "protocol
/// service CRC error" (11.4.7.2: ABORTED COMMAND, ASC/ASCQ 47h/05h), sent once all the data
/// announced has arrived, and no command handed to the SCSI layer.
fn assert_crc_error_response(i: &mut Initiator, r: &[Rx], itt: u32) {
    assert_eq!(r.len(), 1, "{r:?}");
    let rsp = &r[0];
    assert_eq!(rsp.opcode(), 0x21, "SCSI Response");
    assert_eq!(rsp.itt(), itt);
    assert_eq!(rsp.bhs[2], 0x00, "Response: command completed at target");
    assert_eq!(rsp.bhs[3], 0x02, "Status: CHECK CONDITION");
    // Data segment: SenseLength (2 bytes), then fixed-format sense (SPC-4 4.5.3).
    let d = &rsp.data;
    assert_eq!(u16::from_be_bytes([d[0], d[1]]), 18);
    assert_eq!(d[2], 0x70, "fixed format, current");
    assert_eq!(d[2 + 2] & 0x0F, 0x0B, "ABORTED COMMAND");
    assert_eq!((d[2 + 12], d[2 + 13]), (0x47, 0x05), "CRC ERROR DETECTED");
    assert!(
        !i.take_events()
            .iter()
            .any(|e| matches!(e, crate::Event::Command(_))),
        "the write must not reach the SCSI layer"
    );
}

#[rstest::rstest]
#[case::repeated_zero(0, 0)]
#[case::skipped(0, 2)]
#[case::starts_at_one(1, 2)]
#[case::reversed(1, 0)]
fn unsolicited_data_sn_out_of_order_fails_the_task(#[case] first: u32, #[case] second: u32) {
    let mut i = logged_in();
    // Unsolicited burst of two PDUs.
    i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        1,
        1024,
        1,
        &[0x2a; 10],
        &[],
    ));
    let r = i.send(&data_out(false, 1, 0xffff_ffff, first, 0, &[0; 512]));
    assert!(r.is_empty(), "no answer before all data arrived: {r:?}");
    let r = i.send(&data_out(true, 1, 0xffff_ffff, second, 512, &[0; 512]));
    assert_crc_error_response(&mut i, &r, 1);
    // The connection goes on: the next command works as usual.
    i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        2,
        512,
        2,
        &[0x2a; 10],
        &[],
    ));
    let r = i.send(&data_out(true, 2, 0xffff_ffff, 0, 0, &[7; 512]));
    assert!(r.is_empty(), "{r:?}");
    let ev = i.take_events();
    assert!(
        matches!(&ev[..], [crate::Event::Command(c)] if c.itt == 2 && c.data_out == [7; 512][..]),
        "{ev:?}"
    );
}

#[rstest::rstest]
#[case::twenty_seven(27)]
#[case::minus_one(0xffff_ffff)]
fn single_unsolicited_data_out_with_wrong_data_sn(#[case] data_sn: u32) {
    let mut i = logged_in();
    i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        1,
        512,
        1,
        &[0x2a; 10],
        &[],
    ));
    let r = i.send(&data_out(true, 1, 0xffff_ffff, data_sn, 0, &[0; 512]));
    assert_crc_error_response(&mut i, &r, 1);
}

#[test]
fn solicited_data_sn_restarts_per_r2t() {
    let mut i = logged_in();
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        1,
        1024,
        1,
        &[0x2a; 10],
        &[],
    ));
    let ttt = r[0].ttt();
    i.send(&data_out(false, 1, ttt, 0, 0, &[0; 512]));
    let r = i.send(&data_out(true, 1, ttt, 0, 512, &[0; 512]));
    assert_crc_error_response(&mut i, &r, 1);
}

#[test]
fn data_sn_error_in_one_burst_waits_for_all_r2ts_before_failing() {
    let limits = Limits {
        max_burst_length: 8192,
        first_burst_length: 4096,
        max_outstanding_r2t: 1,
        initial_r2t: true,
        ..Limits::default()
    };
    let mut i = Initiator::new(config_with(limits));
    i.login_normal();
    i.take_events();
    let total = 3 * 8192u32;
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        9,
        total,
        1,
        &[0x2a, 0, 0, 0, 0, 0, 0, 0, 48, 0],
        &[],
    ));
    assert_eq!(r.len(), 1, "one R2T at a time");
    let mut r2t = r[0].clone();
    for burst in 0..3u32 {
        assert_eq!(r2t.opcode(), 0x31, "R2T");
        let (off, len) = (r2t.u32(40), r2t.u32(44));
        assert_eq!((off, len), (burst * 8192, 8192));
        // Two PDUs per burst; the first burst numbers its second PDU 5 instead of 1.
        let second_sn = if burst == 0 { 5 } else { 1 };
        let half = len / 2;
        let mid = i.send(&data_out(
            false,
            9,
            r2t.ttt(),
            0,
            off,
            &vec![1; half as usize],
        ));
        assert!(mid.is_empty(), "{mid:?}");
        let r = i.send(&data_out(
            true,
            9,
            r2t.ttt(),
            second_sn,
            off + half,
            &vec![1; half as usize],
        ));
        if burst < 2 {
            // The failed burst does not stop the transfer: the next R2T follows.
            assert_eq!(r.len(), 1, "{r:?}");
            r2t = r[0].clone();
        } else {
            assert_crc_error_response(&mut i, &r, 9);
        }
    }
}

#[test]
fn early_data_for_a_held_command_is_bounded_by_first_burst_length() {
    // libiscsi's offer: InitialR2T=No, FirstBurstLength=262144. A write held back because
    // its CmdSN (2) is ahead of ExpCmdSN (1) may be followed by at most FirstBurstLength
    // bytes of unsolicited data (RFC 7143 13.14); more is a protocol error, not a buffer.
    let mut i = logged_in();
    let r = i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        2,
        1 << 20,
        2,
        &[0x2a; 10],
        &[0; 4096],
    ));
    assert!(r.is_empty());
    i.send(&data_out(
        false,
        2,
        0xffff_ffff,
        0,
        4096,
        &vec![0; 262_144 - 4096],
    ));
    let err = i
        .try_send(&data_out(false, 2, 0xffff_ffff, 1, 262_144, &[0; 512]))
        .unwrap_err();
    assert!(err.to_string().contains("FirstBurstLength"), "{err}");
}

#[test]
fn early_empty_data_outs_for_a_held_command_are_bounded() {
    let mut i = logged_in();
    i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        2,
        1 << 20,
        2,
        &[0x2a; 10],
        &[],
    ));
    let mut failed = false;
    for n in 0..10_000 {
        if i.try_send(&data_out(false, 2, 0xffff_ffff, n, 0, &[]))
            .is_err()
        {
            failed = true;
            break;
        }
    }
    assert!(failed, "empty Data-Outs may not pile up without limit");
}
