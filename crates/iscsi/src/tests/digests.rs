//! HeaderDigest and DataDigest (RFC 7143 13.1) and their errors at ErrorRecoveryLevel 0
//! (RFC 7143 7.8). Expected digests are the RFC's own examples, written out here.

use super::initiator::*;
use crate::{pdu, Event, ProtocolError};

/// RFC 7143 appendix (CRC examples): 32 bytes of zeroes.
const CRC_32_ZEROES: [u8; 4] = [0xaa, 0x36, 0x91, 0x8a];
/// RFC 7143 appendix (CRC examples): 32 bytes of ones (0xff).
const CRC_32_ONES: [u8; 4] = [0x43, 0xab, 0xa8, 0x62];

/// RFC 7143 appendix (CRC examples): an iSCSI SCSI Read (10) Command PDU and its CRC.
#[rustfmt::skip]
const RFC_READ10_PDU: [u8; 48] = [
    0x01, 0xc0, 0x00, 0x00, // SCSI Command, F=1 R=1
    0x00, 0x00, 0x00, 0x00, // TotalAHSLength, DataSegmentLength
    0x00, 0x00, 0x00, 0x00, // LUN
    0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, // Initiator Task Tag
    0x00, 0x00, 0x04, 0x00, // Expected Data Transfer Length 1024
    0x00, 0x00, 0x00, 0x14, // CmdSN 0x14
    0x00, 0x00, 0x00, 0x18, // ExpStatSN
    0x28, 0x00, 0x00, 0x00, // CDB: READ (10)
    0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x00, 0x00, // transfer length 2 blocks
    0x00, 0x00, 0x00, 0x00,
];
const RFC_READ10_CRC: [u8; 4] = [0x56, 0x3a, 0x96, 0xd9];

#[test]
fn crc32c_matches_the_rfc_examples() {
    let ascending: Vec<u8> = (0..32).collect();
    let descending: Vec<u8> = (0..32).rev().collect();
    assert_eq!(pdu::crc32c(&[&[0u8; 32]]), CRC_32_ZEROES);
    assert_eq!(pdu::crc32c(&[&[0xffu8; 32]]), CRC_32_ONES);
    assert_eq!(pdu::crc32c(&[&ascending]), [0x4e, 0x79, 0xdd, 0x46]);
    assert_eq!(pdu::crc32c(&[&descending]), [0x5c, 0xdb, 0x3f, 0x11]);
    assert_eq!(pdu::crc32c(&[&RFC_READ10_PDU]), RFC_READ10_CRC);
    // In pieces, as the encoder feeds data and padding.
    assert_eq!(
        pdu::crc32c(&[&RFC_READ10_PDU[..5], &RFC_READ10_PDU[5..]]),
        RFC_READ10_CRC
    );
    // The test initiator's own CRC agrees with the RFC too.
    assert_eq!(wire_crc(&RFC_READ10_PDU), RFC_READ10_CRC);
}

/// Logs in offering `header` and `data` digests (libiscsi's key order) with the first
/// CmdSN `cmd_sn`; returns the keys the target answered.
fn login(i: &mut Initiator, header: &str, data: &str, cmd_sn: u32) -> Vec<(String, String)> {
    i.cmd_sn = cmd_sn;
    let mut sec = libiscsi_security_keys(TARGET);
    for (k, v) in sec.iter_mut() {
        match *k {
            "HeaderDigest" => *v = header.into(),
            "DataDigest" => *v = data.into(),
            _ => {}
        }
    }
    let r1 = i.send(&login_req(true, 0, 1, 1, cmd_sn, &kv_owned(&sec)));
    assert_eq!(r1[0].status_class(), 0);
    let op = kv_owned(&libiscsi_operational_keys());
    // The final login response itself carries no digest.
    let r2 = i.send(&login_req(true, 1, 3, 1, cmd_sn, &op));
    assert_eq!((r2.len(), r2[0].flags()), (1, 0x87));
    i.take_events();
    r1[0].text()
}

fn crc_login(cmd_sn: u32) -> Initiator {
    let mut i = Initiator::new(config());
    let keys = login(&mut i, "CRC32C", "CRC32C", cmd_sn);
    assert!(keys.contains(&("HeaderDigest".into(), "CRC32C".into())));
    assert!(keys.contains(&("DataDigest".into(), "CRC32C".into())));
    i.digests = (true, true);
    i
}

#[test]
fn crc32c_is_chosen_only_when_offered_first() {
    let mut i = Initiator::new(config());
    // libiscsi's default offer: None first.
    let keys = login(&mut i, "None,CRC32C", "None", 1);
    assert!(keys.contains(&("HeaderDigest".into(), "None".into())));
    assert!(keys.contains(&("DataDigest".into(), "None".into())));
    assert_eq!(i.conn.frame_limits().digests, Default::default());
    let mut i = Initiator::new(config());
    let keys = login(&mut i, "CRC32C,None", "None", 1);
    assert!(keys.contains(&("HeaderDigest".into(), "CRC32C".into())));
    let d = i.conn.frame_limits().digests;
    assert!(d.header && !d.data);
}

#[test]
fn the_rfc_read10_pdu_with_its_rfc_digest_is_accepted() {
    let mut i = crc_login(0x14);
    let mut wire = RFC_READ10_PDU.to_vec();
    wire.extend_from_slice(&RFC_READ10_CRC);
    assert!(i.send(&wire).is_empty());
    match &i.take_events()[..] {
        [Event::Command(c)] => {
            assert_eq!((c.itt, c.expected_len, c.read), (0x1400_0000, 1024, true));
            assert_eq!(c.cdb[0], 0x28);
        }
        other => panic!("{other:?}"),
    }
    // 1024 bytes of data-in, each PDU checked by the initiator's own CRC; a final 32 zero
    // bytes prove the data digest against the RFC's example.
    i.conn.complete_command(
        0x1400_0000,
        crate::CommandResponse {
            status: 0,
            data_in: vec![0u8; 1024].into(),
            sense: None,
            transfer_len: 1024,
        },
    );
    let mut out = bytes::BytesMut::new();
    i.conn.poll_transmit(&mut out);
    let rx = parse_target_pdus_with(&out, (true, true));
    assert_eq!(rx.len(), 1);
    assert_eq!(rx[0].opcode(), 0x25);
    // Header digest right after the 48-byte header; data digest after the data.
    assert_eq!(out[48..52], wire_crc(&out[..48]));
    assert_eq!(out.len(), 48 + 4 + 1024 + 4);
}

#[test]
fn a_data_in_of_32_zero_bytes_carries_the_rfc_digest() {
    let mut i = crc_login(1);
    i.send(&with_digests(
        &scsi_cmd(
            false,
            true,
            true,
            false,
            7,
            32,
            1,
            &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            &[],
        ),
        true,
        true,
    ));
    i.take_events();
    i.conn.complete_command(
        7,
        crate::CommandResponse {
            status: 0,
            data_in: vec![0u8; 32].into(),
            sense: None,
            transfer_len: 32,
        },
    );
    let mut out = bytes::BytesMut::new();
    i.conn.poll_transmit(&mut out);
    assert_eq!(out.len(), 48 + 4 + 32 + 4);
    assert_eq!(out[84..88], CRC_32_ZEROES);
}

#[test]
fn a_bad_header_digest_ends_the_connection() {
    let mut i = crc_login(0x14);
    let mut wire = RFC_READ10_PDU.to_vec();
    let mut bad = RFC_READ10_CRC;
    bad[0] ^= 1;
    wire.extend_from_slice(&bad);
    assert!(matches!(
        i.try_send(&wire),
        Err(ProtocolError::HeaderDigest { .. })
    ));
    assert!(i.take_events().is_empty());
}

/// A write of 32 bytes of 0xff in one solicited Data-Out, its digest given.
fn write_with_data_digest(digest: [u8; 4]) -> (Initiator, Vec<Rx>) {
    let mut i = crc_login(1);
    let r = i.send(&with_digests(
        &scsi_cmd(false, true, false, true, 9, 32, 1, &WRITE10_1, &[]),
        true,
        false,
    ));
    assert_eq!(r[0].opcode(), 0x31, "R2T");
    let ttt = r[0].ttt();
    let mut wire = with_digests(&data_out(true, 9, ttt, 0, 0, &[0xff; 32]), true, false);
    wire.extend_from_slice(&digest);
    let r = i.send(&wire);
    (i, r)
}

const WRITE10_1: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];

#[test]
fn a_data_out_with_the_rfc_digest_is_delivered() {
    let (mut i, r) = write_with_data_digest(CRC_32_ONES);
    assert!(r.is_empty());
    match &i.take_events()[..] {
        [Event::Command(c)] => assert!(c.data_out == [0xff; 32][..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_data_digest_rejects_the_pdu_and_fails_the_command() {
    let mut bad = CRC_32_ONES;
    bad[3] ^= 0x80;
    let (mut i, r) = write_with_data_digest(bad);
    assert!(i.take_events().is_empty(), "the command never runs");
    assert_eq!(r.len(), 2, "{r:?}");
    // RFC 7143 11.17: Reject, reason 0x02 "Data (payload) digest error", the rejected
    // header as its data.
    assert_eq!(
        (r[0].opcode(), r[0].flags(), r[0].bhs[2]),
        (0x3f, 0x80, 0x02)
    );
    assert_eq!(r[0].data[0], 0x05, "the rejected Data-Out header");
    // The task ends with CHECK CONDITION, ABORTED COMMAND / 47h 05h (protocol service CRC
    // error, RFC 7143 11.4.7.2), sense after its 2-byte length.
    assert_eq!((r[1].opcode(), r[1].bhs[3], r[1].itt()), (0x21, 0x02, 9));
    assert_eq!(
        (
            r[1].data[2 + 2] & 0x0f,
            r[1].data[2 + 12],
            r[1].data[2 + 13]
        ),
        (0x0b, 0x47, 0x05)
    );
    // The connection goes on: a NOP-Out is answered.
    let r = i.send(&with_digests(&nop_out(true, 0x77, 2, &[]), true, true));
    assert_eq!((r[0].opcode(), r[0].itt()), (0x20, 0x77));
}

#[test]
fn a_bad_data_digest_on_immediate_data_fails_the_command() {
    let mut i = crc_login(1);
    let mut wire = with_digests(
        &scsi_cmd(false, true, false, true, 3, 32, 1, &WRITE10_1, &[0xff; 32]),
        true,
        false,
    );
    wire.extend_from_slice(&CRC_32_ZEROES); // the digest of other data
    let r = i.send(&wire);
    assert!(i.take_events().is_empty());
    assert_eq!((r[0].opcode(), r[0].bhs[2]), (0x3f, 0x02));
    assert_eq!((r[1].opcode(), r[1].bhs[3], r[1].itt()), (0x21, 0x02, 3));
    // Its CmdSN was used: the next command is not held back.
    i.send(&with_digests(
        &scsi_cmd(false, true, true, false, 4, 0, 2, &[0; 6], &[]),
        true,
        true,
    ));
    assert!(matches!(&i.take_events()[..], [Event::Command(c)] if c.itt == 4));
}

#[test]
fn a_bad_data_digest_on_a_text_request_keeps_cmd_sn_order() {
    let mut i = crc_login(1);
    let text = kv(&[("SendTargets", "All")]);
    let mut wire = with_digests(
        &text_req(true, false, 5, 0xffff_ffff, 1, &text),
        true,
        false,
    );
    wire.extend_from_slice(&[0, 0, 0, 0]);
    let r = i.send(&wire);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].opcode(), r[0].bhs[2]), (0x3f, 0x02));
    // CmdSN 1 is used up: CmdSN 2 runs at once.
    i.send(&with_digests(
        &scsi_cmd(false, true, true, false, 6, 0, 2, &[0; 6], &[]),
        true,
        true,
    ));
    assert!(matches!(&i.take_events()[..], [Event::Command(c)] if c.itt == 6));
}

/// RFC 7143 11.13.5: | Initiator error | 0200 | Miscellaneous iSCSI initiator errors. |
/// (the initiator's digest offer cannot be accepted).
const INITIATOR_ERROR: [u8; 2] = [0x02, 0x00];

fn requiring(header: bool, data: bool) -> std::sync::Arc<crate::Config> {
    config_with(crate::Limits {
        require_digests: pdu::Digests { header, data },
        ..crate::Limits::default()
    })
}

/// The security-stage keys with these digest offers.
fn security_keys(header: &str, data: &str) -> Vec<u8> {
    let mut keys = libiscsi_security_keys(TARGET);
    for (k, v) in keys.iter_mut() {
        match *k {
            "HeaderDigest" => *v = header.to_string(),
            "DataDigest" => *v = data.to_string(),
            _ => {}
        }
    }
    kv_owned(&keys)
}

#[test]
fn a_required_digest_offered_only_as_none_refuses_the_login() {
    for (header, data) in [("None", "CRC32C"), ("None,CRC32C", "None")] {
        let mut i = Initiator::new(requiring(true, true));
        let r = i.send(&login_req(true, 0, 1, 1, 1, &security_keys(header, data)));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].opcode(), 0x23);
        assert_eq!(r[0].bhs[36..38], INITIATOR_ERROR, "{header} / {data}");
        assert!(i.conn.is_finished());
        assert!(i.take_events().is_empty());
    }
}

#[test]
fn a_required_digest_is_chosen_from_a_list_that_prefers_none() {
    let mut i = Initiator::new(requiring(true, true));
    let sec = security_keys("None,CRC32C", "None,CRC32C");
    let r1 = i.send(&login_req(true, 0, 1, 1, 1, &sec));
    assert_eq!(r1[0].status_class(), 0);
    let text = r1[0].text();
    assert!(
        text.contains(&("HeaderDigest".into(), "CRC32C".into())),
        "{text:?}"
    );
    assert!(
        text.contains(&("DataDigest".into(), "CRC32C".into())),
        "{text:?}"
    );
    let op = kv_owned(&libiscsi_operational_keys());
    let r2 = i.send(&login_req(true, 1, 3, 1, 1, &op));
    assert_eq!(r2[0].status_class(), 0);
    assert!(matches!(i.take_events()[..], [Event::LoggedIn { .. }]));
    let digests = i.conn.params().unwrap().digests;
    assert!(digests.header && digests.data);
}

#[test]
fn a_required_digest_never_offered_refuses_the_login_before_full_feature_phase() {
    // Only the header digest is required; the initiator never mentions HeaderDigest (its
    // default is None, RFC 7143 13.1).
    let mut i = Initiator::new(requiring(true, false));
    let keys: Vec<(&str, String)> = libiscsi_security_keys(TARGET)
        .into_iter()
        .filter(|(k, _)| *k != "HeaderDigest")
        .collect();
    let r1 = i.send(&login_req(true, 0, 1, 1, 1, &kv_owned(&keys)));
    assert_eq!(r1[0].status_class(), 0, "not yet: the key may still come");
    let op = kv_owned(&libiscsi_operational_keys());
    let r2 = i.send(&login_req(true, 1, 3, 1, 1, &op));
    assert_eq!(r2[0].bhs[36..38], INITIATOR_ERROR);
    assert!(i.conn.is_finished());
    assert!(i.take_events().is_empty());
}

#[test]
fn discovery_sessions_are_not_held_to_required_digests() {
    let mut i = Initiator::new(requiring(true, true));
    i.login_discovery();
    assert!(matches!(i.take_events()[..], [Event::LoggedIn { .. }]));
}
