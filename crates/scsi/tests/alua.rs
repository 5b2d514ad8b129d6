//! Implicit ALUA (SPC-4 5.16): standard INQUIRY TPGS, the Device Identification VPD
//! page's target port designators and REPORT TARGET PORT GROUPS. Expected bytes are
//! written out here from the SPC-4 tables: standard INQUIRY data (table 140), the
//! designation descriptor (table 458) with the relative target port (table 466) and
//! target port group (table 467) designators, REPORT TARGET PORT GROUPS CDB (table 254),
//! its parameter data headers (tables 255, 256), target port group descriptor (table 257)
//! and target port descriptor (table 259), asymmetric access states (table 258).

mod common;

use common::*;
use scsi::{AccessState, Alua, BadAlua, PortGroup, Status};
use store_api::Capabilities;

/// This gateway in group 2, active/optimized; two others, non-optimized and standby.
fn alua() -> Alua {
    Alua::new(
        PortGroup {
            id: 2,
            state: AccessState::ActiveOptimized,
        },
        vec![
            PortGroup {
                id: 1,
                state: AccessState::ActiveNonOptimized,
            },
            PortGroup {
                id: 7,
                state: AccessState::Standby,
            },
        ],
    )
    .unwrap()
}

fn rig_with(alua: Option<Alua>) -> Rig {
    let mut rig = Rig::new(Capabilities::default());
    if let Some(alua) = alua {
        rig.target.set_alua(alua);
    }
    rig
}

/// REPORT TARGET PORT GROUPS (MAINTENANCE IN, service action 0Ah) with PARAMETER DATA
/// FORMAT `format` and ALLOCATION LENGTH `alloc`.
fn rtpg(format: u8, alloc: u32) -> [u8; 12] {
    let a = alloc.to_be_bytes();
    [
        0xA3,
        (format << 5) | 0x0A,
        0,
        0,
        0,
        0,
        a[0],
        a[1],
        a[2],
        a[3],
        0,
        0,
    ]
}

/// One target port group descriptor with one target port (tables 257, 259): PREF 0,
/// state, supported states AO AN S U (0Fh), group, status 0, one port of relative id
/// `id`.
fn descriptor(state: u8, id: u16) -> Vec<u8> {
    let i = id.to_be_bytes();
    vec![state, 0x0F, i[0], i[1], 0, 0, 0, 1, 0, 0, i[0], i[1]]
}

#[test]
fn report_target_port_groups_lists_every_gateway_known_answer() {
    let mut rig = rig_with(Some(alua()));
    let mut body = descriptor(0x0, 2); // active/optimized
    body.extend(descriptor(0x1, 1)); // active/non-optimized
    body.extend(descriptor(0x2, 7)); // standby

    // Length-only header (table 255): RETURN DATA LENGTH.
    let r = rig.run(&rtpg(0, 1024), &[]);
    assert_eq!(outcome(&r), GOOD);
    let mut length_format = (body.len() as u32).to_be_bytes().to_vec();
    length_format.extend(&body);
    assert_eq!(&r.data_in[..], &length_format[..]);
    insta::assert_snapshot!("rtpg_length_format", hex(&r.data_in));

    // Extended header (table 256): FORMAT TYPE 001b, IMPLICIT TRANSITION TIME 0.
    let r = rig.run(&rtpg(1, 1024), &[]);
    let mut want = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    want.extend([0x10, 0, 0, 0]);
    want.extend(&body);
    assert_eq!(&r.data_in[..], &want[..]);
    insta::assert_snapshot!("rtpg_extended_format", hex(&r.data_in));

    // Truncated to the allocation length.
    let r = rig.run(&rtpg(0, 6), &[]);
    assert_eq!(&r.data_in[..], &length_format[..6]);
}

#[test]
fn report_target_port_groups_refuses_other_formats_and_is_absent_without_alua() {
    let mut rig = rig_with(Some(alua()));
    // PARAMETER DATA FORMAT 010b is reserved: INVALID FIELD IN CDB.
    let r = rig.run(&rtpg(2, 1024), &[]);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x24, 0x00));
    // Without ALUA: INVALID COMMAND OPERATION CODE (20h/00h).
    let mut plain = rig_with(None);
    let r = plain.run(&rtpg(0, 1024), &[]);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x20, 0x00));
}

#[test]
fn report_supported_opcodes_lists_report_target_port_groups_only_with_alua() {
    // REPORT SUPPORTED OPERATION CODES, one command: opcode A3h service action 0Ah
    // (REPORTING OPTIONS 010b); SUPPORT 011b when supported, 001b when not.
    let cdb = rsoc(false, 2, 0xA3, 0x0A, 64);
    let r = rig_with(Some(alua())).run(&cdb, &[]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.data_in[1] & 0x07, 0x03);
    // CDB SIZE 12 and the CDB USAGE DATA: A3h, PARAMETER DATA FORMAT bits and the service
    // action (EAh), ALLOCATION LENGTH, nothing else.
    assert_eq!(
        &r.data_in[2..16],
        &[0, 12, 0xA3, 0xEA, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]
    );
    let r = rig_with(None).run(&cdb, &[]);
    assert_eq!(r.data_in[1] & 0x07, 0x01);
}

#[test]
fn standard_inquiry_reports_implicit_tpgs_only_with_alua() {
    // Byte 5: TPGS (bits 5:4) 01b beside 3PC (bit 3).
    let r = rig_with(Some(alua())).run(&inquiry(false, 0, 96), &[]);
    assert_eq!(r.data_in[5], 0x18);
    let r = rig_with(None).run(&inquiry(false, 0, 96), &[]);
    assert_eq!(r.data_in[5], 0x08);
}

#[test]
fn device_identification_carries_the_port_designators() {
    let plain = rig_with(None).run(&inquiry(true, 0x83, 1024), &[]).data_in;
    let r = rig_with(Some(alua())).run(&inquiry(true, 0x83, 1024), &[]);
    let d = &r.data_in[..];
    // The LU's designators as before, then the port's two (table 458): PROTOCOL
    // IDENTIFIER 5h (iSCSI) with CODE SET 1h (binary); PIV 1, ASSOCIATION 01b (target
    // port), DESIGNATOR TYPE 4h (relative target port) / 5h (target port group); length 4;
    // two reserved bytes, then the identifier.
    let port = [
        0x51, 0x94, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, // relative target port 2
        0x51, 0x95, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, // target port group 2
    ];
    assert_eq!(&d[4..plain.len()], &plain[4..]);
    assert_eq!(&d[plain.len()..], &port);
    let page_len = u16::from_be_bytes([d[2], d[3]]) as usize;
    assert_eq!(page_len, d.len() - 4);
    insta::assert_snapshot!("vpd83_with_alua", hex(d));
}

#[test]
fn bad_groups_are_refused() {
    let g = |id| PortGroup {
        id,
        state: AccessState::Standby,
    };
    assert_eq!(Alua::new(g(0), vec![]), Err(BadAlua::ZeroId));
    assert_eq!(Alua::new(g(3), vec![g(4), g(3)]), Err(BadAlua::Twice(3)));
    assert_eq!(
        Alua::new(g(1), (2..=256).map(g).collect()),
        Err(BadAlua::TooMany)
    );
    for (text, state) in [
        ("active-optimized", AccessState::ActiveOptimized),
        ("active-non-optimized", AccessState::ActiveNonOptimized),
        ("standby", AccessState::Standby),
        ("unavailable", AccessState::Unavailable),
    ] {
        assert_eq!(AccessState::parse(text), Some(state));
    }
    assert_eq!(AccessState::parse("offline"), None);
}
