//! Known-answer tests: expected target PDUs written out byte by byte from the tables in
//! RFC 7143 section 11, with the field each byte belongs to named in the comment.

use super::initiator::*;
use crate::{CommandResponse, Event};
use bytes::Bytes;

fn raw(rx: &Rx) -> Vec<u8> {
    let mut v = rx.bhs.to_vec();
    v.extend_from_slice(&rx.data);
    v
}

#[test]
fn final_login_response_bhs() {
    let mut i = Initiator::new(config());
    let (_, fin) = i.login_normal();
    // RFC 7143 11.13: Login Response.
    #[rustfmt::skip]
    let expected: [u8; 48] = [
        0x23,                   // opcode 0x23
        0x87,                   // T=1 C=0 CSG=1 NSG=3
        0x00, 0x00,             // Version-max, Version-active
        0x00,                   // TotalAHSLength
        0x00, 0x00, 0x00,       // DataSegmentLength (patched below)
        0x80, 0x12, 0x34, 0x56, 0x00, 0x01, // ISID (echoed)
        0x12, 0x34,             // TSIH assigned by the target
        0x00, 0x00, 0x00, 0x01, // Initiator Task Tag
        0x00, 0x00, 0x00, 0x00, // reserved
        0x00, 0x00, 0x00, 0x01, // StatSN: second login response
        0x00, 0x00, 0x00, 0x01, // ExpCmdSN
        0x00, 0x00, 0x00, 0x80, // MaxCmdSN = ExpCmdSN + 128 - 1
        0x00, 0x00,             // Status-Class, Status-Detail: success
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];
    let mut got = fin.bhs;
    got[5..8].fill(0);
    assert_eq!(got, expected);
}

#[test]
fn login_reject_target_not_found_bhs() {
    let mut i = Initiator::new(config());
    let keys = kv(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", "iqn.2026-11.com.example:nope"),
        ("AuthMethod", "None"),
    ]);
    let r = i.send(&login_req(true, 0, 1, 7, 1, &keys));
    assert_eq!(r.len(), 1);
    #[rustfmt::skip]
    let expected: [u8; 48] = [
        0x23, 0x00,             // Login Response, T=0 C=0 CSG=0 NSG=0
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // versions, AHS, DataSegmentLength 0
        0x80, 0x12, 0x34, 0x56, 0x00, 0x01, // ISID
        0x00, 0x00,             // TSIH 0: no session
        0x00, 0x00, 0x00, 0x07, // ITT
        0x00, 0x00, 0x00, 0x00, // reserved
        0x00, 0x00, 0x00, 0x00, // StatSN
        0x00, 0x00, 0x00, 0x01, // ExpCmdSN
        0x00, 0x00, 0x00, 0x80, // MaxCmdSN
        0x02, 0x03,             // Status: initiator error, target not found
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(r[0].bhs, expected);
    assert!(i.conn.is_finished());
}

#[test]
fn scsi_response_with_sense_bytes() {
    let mut i = Initiator::new(config());
    i.login_normal();
    // TEST UNIT READY, non-immediate, CmdSN 1.
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        false,
        0xabcd,
        0,
        1,
        &[0; 6],
        &[],
    ));
    assert!(r.is_empty());
    let ev = i.take_events();
    assert!(matches!(ev.last(), Some(Event::Command(c)) if c.itt == 0xabcd));
    // NOT READY, MEDIUM NOT PRESENT (fixed format, 18 bytes).
    let sense: [u8; 18] = [
        0x70, 0, 0x02, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x3a, 0x00, 0, 0, 0, 0,
    ];
    i.conn.complete_command(
        0xabcd,
        CommandResponse {
            status: 0x02,
            data_in: Bytes::new(),
            sense: Some(Bytes::copy_from_slice(&sense)),
            transfer_len: 0,
        },
    );
    let r = i.drain();
    assert_eq!(r.len(), 1);
    // RFC 7143 11.4: SCSI Response.
    #[rustfmt::skip]
    let mut expected = vec![
        0x21,                   // opcode
        0x80,                   // F=1, no residual bits
        0x00,                   // Response: command completed at target
        0x02,                   // Status: CHECK CONDITION
        0x00, 0x00, 0x00, 0x14, // AHS 0, DataSegmentLength 20 = 2 + 18
        0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0x00, 0x00, 0xab, 0xcd, // ITT
        0x00, 0x00, 0x00, 0x00, // SNACK Tag
        0x00, 0x00, 0x00, 0x02, // StatSN (login used 0 and 1)
        0x00, 0x00, 0x00, 0x02, // ExpCmdSN
        0x00, 0x00, 0x00, 0x81, // MaxCmdSN = 2 + 128 - 1 (nothing outstanding)
        0x00, 0x00, 0x00, 0x00, // ExpDataSN
        0x00, 0x00, 0x00, 0x00, // Bidirectional Read Residual Count
        0x00, 0x00, 0x00, 0x00, // Residual Count
        0x00, 0x12,             // SenseLength 18
    ];
    expected.extend_from_slice(&sense);
    assert_eq!(raw(&r[0]), expected);
}

#[test]
fn data_in_with_status_and_underflow_bytes() {
    let mut i = Initiator::new(config());
    i.login_normal();
    // READ(10) of 8 blocks expected (4096), the target only has 512 bytes to send.
    let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        0x10,
        4096,
        1,
        &cdb,
        &[],
    ));
    i.take_events();
    i.conn.complete_command(
        0x10,
        CommandResponse {
            status: 0,
            data_in: Bytes::from(vec![0x5a; 512]),
            sense: None,
            transfer_len: 512,
        },
    );
    let r = i.drain();
    assert_eq!(r.len(), 1);
    // RFC 7143 11.7: SCSI Data-In.
    #[rustfmt::skip]
    let expected: [u8; 48] = [
        0x25,                   // opcode
        0x83,                   // F=1, U=1 (0x02), S=1 (0x01)
        0x00,                   // reserved
        0x00,                   // Status GOOD
        0x00, 0x00, 0x02, 0x00, // DataSegmentLength 512
        0, 0, 0, 0, 0, 0, 0, 0, // LUN (A bit clear: reserved)
        0x00, 0x00, 0x00, 0x10, // ITT
        0xff, 0xff, 0xff, 0xff, // Target Transfer Tag
        0x00, 0x00, 0x00, 0x02, // StatSN
        0x00, 0x00, 0x00, 0x02, // ExpCmdSN
        0x00, 0x00, 0x00, 0x81, // MaxCmdSN
        0x00, 0x00, 0x00, 0x00, // DataSN
        0x00, 0x00, 0x00, 0x00, // Buffer Offset
        0x00, 0x00, 0x0e, 0x00, // Residual Count 4096 - 512 = 3584
    ];
    assert_eq!(r[0].bhs, expected);
    assert_eq!(&r[0].data[..], &[0x5a; 512][..]);
}

#[test]
fn r2t_bytes() {
    let mut i = Initiator::new(config());
    i.login_normal();
    // WRITE(10) of 4096 bytes with F=1 and no immediate data: everything is solicited.
    let cdb = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        0x20,
        4096,
        1,
        &cdb,
        &[],
    ));
    assert_eq!(r.len(), 1);
    // RFC 7143 11.8: Ready To Transfer.
    #[rustfmt::skip]
    let expected: [u8; 48] = [
        0x31, 0x80, 0x00, 0x00, // opcode, F=1
        0x00, 0x00, 0x00, 0x00, // AHS 0, DataSegmentLength 0
        0, 0, 0, 0, 0, 0, 0, 0, // LUN 0
        0x00, 0x00, 0x00, 0x20, // ITT
        0x00, 0x00, 0x00, 0x01, // Target Transfer Tag (first one handed out)
        0x00, 0x00, 0x00, 0x02, // StatSN (not advanced by R2T)
        0x00, 0x00, 0x00, 0x02, // ExpCmdSN
        0x00, 0x00, 0x00, 0x80, // MaxCmdSN: one command outstanding
        0x00, 0x00, 0x00, 0x00, // R2TSN
        0x00, 0x00, 0x00, 0x00, // Buffer Offset
        0x00, 0x00, 0x10, 0x00, // Desired Data Transfer Length 4096
    ];
    assert_eq!(r[0].bhs, expected);
}

#[test]
fn nop_in_and_logout_response_bytes() {
    let mut i = Initiator::new(config());
    i.login_normal();
    let r = i.send(&nop_out(true, 0x55, 1, b"ping"));
    assert_eq!(r.len(), 1);
    // RFC 7143 11.19: NOP-In.
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        0x20, 0x80, 0x00, 0x00, // opcode, F=1
        0x00, 0x00, 0x00, 0x04, // DataSegmentLength 4
        0, 0, 0, 0, 0, 0, 0, 0, // LUN
        0x00, 0x00, 0x00, 0x55, // ITT echoed
        0xff, 0xff, 0xff, 0xff, // TTT reserved
        0x00, 0x00, 0x00, 0x02, // StatSN
        0x00, 0x00, 0x00, 0x01, // ExpCmdSN (immediate NOP does not advance it)
        0x00, 0x00, 0x00, 0x80, // MaxCmdSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        b'p', b'i', b'n', b'g',
    ];
    assert_eq!(raw(&r[0]), expected);

    let r = i.send(&logout_req(0, 0x66, 1));
    assert_eq!(r.len(), 1);
    // RFC 7143 11.15: Logout Response.
    #[rustfmt::skip]
    let expected: [u8; 48] = [
        0x26, 0x80, 0x00, 0x00, // opcode, F=1, Response 0: closed successfully
        0x00, 0x00, 0x00, 0x00,
        0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0x00, 0x00, 0x00, 0x66, // ITT
        0x00, 0x00, 0x00, 0x00, // reserved
        0x00, 0x00, 0x00, 0x03, // StatSN
        0x00, 0x00, 0x00, 0x02, // ExpCmdSN (logout CmdSN 1 consumed)
        0x00, 0x00, 0x00, 0x81, // MaxCmdSN
        0, 0, 0, 0,             // reserved
        0x00, 0x00, 0x00, 0x00, // Time2Wait, Time2Retain
        0, 0, 0, 0,             // reserved
    ];
    assert_eq!(r[0].bhs, expected);
}
