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
    let rig = Rig::new(Capabilities::default());
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
/// state, the supported states byte (T_SUP bit 7, O_SUP bit 6, LBD_SUP bit 4 clear, U_SUP
/// bit 3, S_SUP bit 2, AN_SUP bit 1, AO_SUP bit 0: 1100_1111b), group, status 0, one port
/// of relative id `id`.
fn descriptor(state: u8, id: u16) -> Vec<u8> {
    descriptor_with_status(state, id, 0)
}

/// [`descriptor`] with STATUS CODE `status` (table 260: 00h no status available, 02h
/// altered by implicit asymmetric logical unit access behavior).
fn descriptor_with_status(state: u8, id: u16, status: u8) -> Vec<u8> {
    let i = id.to_be_bytes();
    vec![
        state,
        0b1100_1111,
        i[0],
        i[1],
        0,
        status,
        0,
        1,
        0,
        0,
        i[0],
        i[1],
    ]
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
        ("offline", AccessState::Offline),
        ("transitioning", AccessState::Transitioning),
    ] {
        assert_eq!(AccessState::parse(text), Some(state));
        assert_eq!(state.to_string(), text);
    }
    assert_eq!(AccessState::parse("sleepy"), None);
}

/// This gateway (group 2) in `state`, another (group 1) active/optimized.
fn rig_in(state: AccessState) -> Rig {
    let own = PortGroup { id: 2, state };
    let other = PortGroup {
        id: 1,
        state: AccessState::ActiveOptimized,
    };
    rig_with(Some(Alua::new(own, vec![other]).unwrap()))
}

/// CDBs written out from SPC-4 / SBC-3: TEST UNIT READY (00h), READ(10) (28h) and
/// WRITE(10) (2Ah) of one block, SYNCHRONIZE CACHE(10) (35h), RESERVE(6) (16h), READ(16)
/// (88h), WRITE SAME(10) (41h). None is in SPC-4 5.16.2.4.4's list for standby.
fn refused_in_standby() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let block = vec![0xA5; 512];
    vec![
        ("TEST UNIT READY", vec![0x00, 0, 0, 0, 0, 0], vec![]),
        ("READ(10)", cdb10(0x28, 0, 0, 1).to_vec(), vec![]),
        ("WRITE(10)", cdb10(0x2A, 0, 0, 1).to_vec(), block.clone()),
        (
            "SYNCHRONIZE CACHE(10)",
            cdb10(0x35, 0, 0, 0).to_vec(),
            vec![],
        ),
        ("RESERVE(6)", vec![0x16, 0, 0, 0, 0, 0], vec![]),
        ("READ(16)", cdb16(0x88, 0, 0, 1).to_vec(), vec![]),
        ("WRITE SAME(10)", cdb10(0x41, 0, 0, 1).to_vec(), block),
    ]
}

/// READ CAPACITY(10) (25h) and READ CAPACITY(16) (SERVICE ACTION IN(16) 9Eh, service
/// action 10h): served in standby beyond SPC-4's list (hosts read every path's capacity
/// when they scan), refused where the port is unavailable, transitioning or offline.
fn read_capacities() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    vec![
        (
            "READ CAPACITY(10)",
            vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![],
        ),
        ("READ CAPACITY(16)", read_capacity16(32).to_vec(), vec![]),
    ]
}

/// CDBs of commands SPC-4 5.16.2.4.4 says a standby port serves: INQUIRY, REPORT LUNS
/// (A0h, allocation length 16), REQUEST SENSE (03h, 18 bytes), REPORT TARGET PORT GROUPS,
/// MODE SENSE(6) (1Ah, all pages), PERSISTENT RESERVE IN READ KEYS (5Eh/00h), and REPORT
/// SUPPORTED OPERATION CODES (all commands).
fn served_in_standby() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("INQUIRY", inquiry(false, 0, 96).to_vec()),
        ("INQUIRY VPD 83h", inquiry(true, 0x83, 255).to_vec()),
        ("REPORT LUNS", vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0]),
        ("REQUEST SENSE", vec![0x03, 0, 0, 0, 18, 0]),
        ("REPORT TARGET PORT GROUPS", rtpg(0, 1024).to_vec()),
        (
            "MODE SENSE(6)",
            mode_sense6(false, 0, 0x3F, 0, 255).to_vec(),
        ),
        (
            "PERSISTENT RESERVE IN",
            vec![0x5E, 0x00, 0, 0, 0, 0, 0, 0, 64, 0],
        ),
        (
            "REPORT SUPPORTED OPERATION CODES",
            rsoc(false, 0, 0, 0, 4096).to_vec(),
        ),
        ("READ CAPACITY(10)", vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("READ CAPACITY(16)", read_capacity16(32).to_vec()),
    ]
}

/// What unavailable, transitioning and offline refuse: [`refused_in_standby`], READ
/// CAPACITY, and commands standby serves (5.16.2.4.4) but those states do not: MODE
/// SENSE(6) and PERSISTENT RESERVE IN READ KEYS.
fn refused_unless_standby() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut refused = vec![
        (
            "MODE SENSE(6)",
            mode_sense6(false, 0, 0x3F, 0, 255).to_vec(),
            vec![],
        ),
        (
            "PERSISTENT RESERVE IN",
            vec![0x5E, 0x00, 0, 0, 0, 0, 0, 0, 64, 0],
            vec![],
        ),
    ];
    refused.extend(refused_in_standby());
    refused.extend(read_capacities());
    refused
}

/// Fixed-format sense data (SPC-4 table 48): RESPONSE CODE 70h (current), SENSE KEY 2h
/// (NOT READY), ADDITIONAL SENSE LENGTH 0Ah, then ASC/ASCQ (annex D, table D.1):
/// 04h/0Ah LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION; 04h/0Bh ...
/// TARGET PORT IN STANDBY STATE; 04h/0Ch ... TARGET PORT IN UNAVAILABLE STATE; 04h/12h
/// LOGICAL UNIT NOT READY, OFFLINE.
fn not_accessible(ascq: u8) -> [u8; 18] {
    [
        0x70, 0, 0x02, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x04, ascq, 0, 0, 0, 0,
    ]
}

#[test]
fn standby_refuses_media_access_and_most_commands_with_not_ready_04_0b() {
    let mut rig = rig_in(AccessState::Standby);
    for (name, cdb, data) in refused_in_standby() {
        let r = rig.run(&cdb, &data);
        assert_eq!(r.status, Status::CheckCondition, "{name}");
        assert_eq!(
            r.sense.as_deref(),
            Some(&not_accessible(0x0B)[..]),
            "{name}"
        );
        assert!(r.data_in.is_empty(), "{name}");
    }
    let r = rig.run(&cdb10(0x28, 0, 0, 1), &[]);
    insta::assert_snapshot!("standby_read_sense", hex(r.sense.as_deref().unwrap()));
    // Nothing reached the medium.
    assert!(rig.mem.data.iter().all(|&b| b == 0));
}

#[test]
fn standby_serves_the_commands_spc4_lists() {
    let mut rig = rig_in(AccessState::Standby);
    for (name, cdb) in served_in_standby() {
        let r = rig.run(&cdb, &[]);
        assert_eq!(outcome(&r), GOOD, "{name}");
    }
    // The groups report this port in standby (2h), the other active/optimized (0h).
    let r = rig.run(&rtpg(0, 1024), &[]);
    let mut body = descriptor(0x2, 2);
    body.extend(descriptor(0x0, 1));
    assert_eq!(&r.data_in[4..], &body[..]);
}

#[test]
fn unavailable_serves_only_the_few_spc4_lists_and_refuses_with_04_0c() {
    let mut rig = rig_in(AccessState::Unavailable);
    for (name, cdb) in [
        ("INQUIRY", inquiry(false, 0, 96).to_vec()),
        ("REPORT LUNS", vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0]),
        ("REQUEST SENSE", vec![0x03, 0, 0, 0, 18, 0]),
        ("REPORT TARGET PORT GROUPS", rtpg(0, 1024).to_vec()),
    ] {
        assert_eq!(outcome(&rig.run(&cdb, &[])), GOOD, "{name}");
    }
    for (name, cdb, data) in refused_unless_standby() {
        let r = rig.run(&cdb, &data);
        assert_eq!(r.status, Status::CheckCondition, "{name}");
        assert_eq!(
            r.sense.as_deref(),
            Some(&not_accessible(0x0C)[..]),
            "{name}"
        );
    }
    let r = rig.run(&cdb10(0x28, 0, 0, 1), &[]);
    insta::assert_snapshot!("unavailable_read_sense", hex(r.sense.as_deref().unwrap()));
}

#[test]
fn active_states_serve_everything() {
    for state in [
        AccessState::ActiveOptimized,
        AccessState::ActiveNonOptimized,
    ] {
        let mut rig = rig_in(state);
        for (name, cdb, data) in refused_in_standby().into_iter().chain(read_capacities()) {
            // RESERVE(6) then needs its RELEASE(6) (17h) before the next writer.
            let r = rig.run(&cdb, &data);
            assert_eq!(outcome(&r), GOOD, "{name} in {state:?}");
            if cdb[0] == 0x16 {
                assert_eq!(outcome(&rig.run(&[0x17, 0, 0, 0, 0, 0], &[])), GOOD);
            }
        }
        assert!(rig.mem.data[..512].iter().all(|&b| b == 0xA5));
    }
}

/// What a transitioning (SPC-4 5.16.2.6) or offline (5.16.2.4.6) port still serves:
/// INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT TARGET PORT GROUPS (and REPORT SUPPORTED
/// OPERATION CODES, which only describes the device server).
fn served_while_transitioning() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("INQUIRY", inquiry(false, 0, 96).to_vec()),
        ("REPORT LUNS", vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0]),
        ("REQUEST SENSE", vec![0x03, 0, 0, 0, 18, 0]),
        ("REPORT TARGET PORT GROUPS", rtpg(0, 1024).to_vec()),
        (
            "REPORT SUPPORTED OPERATION CODES",
            rsoc(false, 0, 0, 0, 4096).to_vec(),
        ),
    ]
}

#[test]
fn transitioning_and_offline_refuse_all_but_the_reporting_commands() {
    for (state, code, ascq, snapshot) in [
        (
            AccessState::Transitioning,
            0xF,
            0x0A,
            "transitioning_read_sense",
        ),
        (AccessState::Offline, 0xE, 0x12, "offline_read_sense"),
    ] {
        let mut rig = rig_in(state);
        for (name, cdb) in served_while_transitioning() {
            assert_eq!(outcome(&rig.run(&cdb, &[])), GOOD, "{name} in {state:?}");
        }
        for (name, cdb, data) in refused_unless_standby() {
            let r = rig.run(&cdb, &data);
            assert_eq!(r.status, Status::CheckCondition, "{name} in {state:?}");
            assert_eq!(
                r.sense.as_deref(),
                Some(&not_accessible(ascq)[..]),
                "{name} in {state:?}"
            );
        }
        // The port's own group reports the state's code (table 258: Eh offline, Fh
        // transitioning).
        let r = rig.run(&rtpg(0, 1024), &[]);
        let mut body = descriptor(code, 2);
        body.extend(descriptor(0x0, 1));
        assert_eq!(&r.data_in[4..], &body[..]);
        let r = rig.run(&cdb10(0x28, 0, 0, 1), &[]);
        insta::assert_snapshot!(snapshot, hex(r.sense.as_deref().unwrap()));
        assert!(rig.mem.data.iter().all(|&b| b == 0));
    }
}

/// Fixed-format sense data of a unit attention (sense key 6h) with ASC/ASCQ 2Ah/06h,
/// ASYMMETRIC ACCESS STATE CHANGED (SPC-4 annex D).
const ACCESS_STATE_CHANGED: [u8; 18] = [
    0x70, 0, 0x06, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x2A, 0x06, 0, 0, 0, 0,
];

fn port(name: &str) -> scsi::InitiatorPort {
    scsi::InitiatorPort {
        name: name.into(),
        isid: [0x40, 0, 0, 0, 0, 1],
    }
}

#[test]
fn a_live_state_change_is_a_unit_attention_on_every_nexus_then_enforced() {
    let mut rig = rig_in(AccessState::ActiveOptimized);
    rig.add_lun(1, config(Capabilities::default()));
    let tur = [0u8; 6];
    let (a, b) = (1, 2);
    rig.target.open_nexus(a, port("iqn.2026-01.test:a"));
    rig.target.open_nexus(b, port("iqn.2026-01.test:b"));
    for nexus in [a, b] {
        for lun in [0u64, 1] {
            // POWER ON, RESET (29h/00h) first, then the port serves.
            let r = rig.run_on(nexus, lun << 48, &tur, &[]);
            assert_eq!(outcome(&r), (Status::CheckCondition, 0x06, 0x29, 0x00));
            assert_eq!(outcome(&rig.run_on(nexus, lun << 48, &tur, &[])), GOOD);
        }
    }
    // A successor (a live change of the LUNs) shares the setting.
    let later = rig.target.successor();

    assert_eq!(rig.target.set_alua_state(2, AccessState::Standby), Ok(true));
    assert_eq!(later.alua().unwrap().own.state, AccessState::Standby);
    for nexus in [a, b] {
        for lun in [0u64, 1] {
            let r = rig.run_on(nexus, lun << 48, &tur, &[]);
            assert_eq!(r.status, Status::CheckCondition);
            assert_eq!(r.sense.as_deref(), Some(&ACCESS_STATE_CHANGED[..]));
            // Reported once; then the new state is enforced.
            let r = rig.run_on(nexus, lun << 48, &tur, &[]);
            assert_eq!(r.sense.as_deref(), Some(&not_accessible(0x0B)[..]));
        }
    }
    // Group 2 standby (2h), altered implicitly (status 02h); group 1 as it was.
    let r = rig.run_on(a, 0, &rtpg(0, 1024), &[]);
    let mut body = descriptor_with_status(0x2, 2, 0x02);
    body.extend(descriptor(0x0, 1));
    assert_eq!(&r.data_in[4..], &body[..]);
    insta::assert_snapshot!("rtpg_after_live_change", hex(&r.data_in));
    let r = rig.run_on(a, 0, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_eq!(outcome(&r), GOOD, "REQUEST SENSE with nothing queued");

    // Another gateway's group changes: a UA too, and RTPG shows it.
    assert_eq!(
        rig.target.set_alua_state(1, AccessState::Unavailable),
        Ok(true)
    );
    let r = rig.run_on(b, 0, &rtpg(0, 1024), &[]);
    assert_eq!(r.sense.as_deref(), Some(&ACCESS_STATE_CHANGED[..]));
    let r = rig.run_on(b, 0, &rtpg(0, 1024), &[]);
    let mut body = descriptor_with_status(0x2, 2, 0x02);
    body.extend(descriptor_with_status(0x3, 1, 0x02));
    assert_eq!(&r.data_in[4..], &body[..]);

    // Setting the state a group is in changes nothing and raises nothing.
    assert_eq!(
        rig.target.set_alua_state(1, AccessState::Unavailable),
        Ok(false)
    );
    assert_eq!(outcome(&rig.run_on(b, 0, &rtpg(0, 1024), &[])), GOOD);
    // Back to active: served again after the unit attention.
    assert_eq!(
        rig.target.set_alua_state(2, AccessState::ActiveOptimized),
        Ok(true)
    );
    let r = rig.run_on(a, 0, &tur, &[]);
    assert_eq!(r.sense.as_deref(), Some(&ACCESS_STATE_CHANGED[..]));
    assert_eq!(outcome(&rig.run_on(a, 0, &tur, &[])), GOOD);

    // Unknown groups and targets without ALUA are refused, changing nothing.
    assert_eq!(
        rig.target.set_alua_state(9, AccessState::Standby),
        Err(BadAlua::UnknownGroup(9))
    );
    let plain = rig_with(None);
    assert_eq!(
        plain.target.set_alua_state(1, AccessState::Standby),
        Err(BadAlua::Off)
    );
    assert_eq!(outcome(&rig.run_on(a, 0, &tur, &[])), GOOD);
}

#[test]
fn set_alua_again_with_other_states_is_a_unit_attention_but_the_first_setting_is_not() {
    let mut rig = rig_with(None);
    rig.target.open_nexus(1, port("iqn.2026-01.test:a"));
    let tur = [0u8; 6];
    assert_eq!(
        outcome(&rig.run_on(1, 0, &tur, &[])),
        (Status::CheckCondition, 0x06, 0x29, 0x00)
    );
    assert!(!rig.target.set_alua(alua()));
    assert_eq!(outcome(&rig.run_on(1, 0, &tur, &[])), GOOD);
    assert!(!rig.target.set_alua(alua()), "the same groups again");
    assert_eq!(outcome(&rig.run_on(1, 0, &tur, &[])), GOOD);
    let mut other = alua();
    other.others[1].state = AccessState::Transitioning;
    assert!(rig.target.set_alua(other));
    let r = rig.run_on(1, 0, &tur, &[]);
    assert_eq!(r.sense.as_deref(), Some(&ACCESS_STATE_CHANGED[..]));
    // Only the group whose state changed (7, now Fh) says it was altered (02h).
    let r = rig.run_on(1, 0, &rtpg(0, 1024), &[]);
    let mut body = descriptor(0x0, 2);
    body.extend(descriptor(0x1, 1));
    body.extend(descriptor_with_status(0xF, 7, 0x02));
    assert_eq!(&r.data_in[4..], &body[..]);
}

#[test]
fn set_target_port_groups_is_deliberately_absent() {
    // SET TARGET PORT GROUPS (SPC-4 6.45, table 285): MAINTENANCE OUT A4h, service action
    // 0Ah, PARAMETER LIST LENGTH (bytes 6..9) 8, one descriptor (table 286): state 2h
    // (standby) for group 2.
    let stpg = [0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
    let param = [0x02, 0, 0, 2, 0, 0, 0, 0];
    for state in [AccessState::ActiveOptimized, AccessState::Standby] {
        let mut rig = rig_in(state);
        // ILLEGAL REQUEST (5h), INVALID COMMAND OPERATION CODE (20h/00h).
        let r = rig.run(&stpg, &param);
        assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x20, 0x00));
        assert_eq!(rig.target.alua().unwrap().own.state, state);
        // Standard INQUIRY byte 5: TPGS 01b (implicit only), never 11b or 10b.
        let r = rig.run(&inquiry(false, 0, 96), &[]);
        assert_eq!(r.data_in[5] & 0x30, 0x10);
    }
}

/// A failover (`--alua-failover` in the daemon): the standby gateway takes over, so its
/// own group becomes active/optimized and the former active group standby in one
/// setting. Every nexus gets one unit attention, ASYMMETRIC ACCESS STATE CHANGED, not
/// one per group; then media access is served, and REPORT TARGET PORT GROUPS shows both
/// groups altered implicitly (STATUS CODE 02h, table 260). The way back (the gateway
/// steps down) refuses media access again with 04h/0Bh after its unit attention.
#[test]
fn a_takeover_swaps_two_groups_in_one_unit_attention() {
    let mut rig = rig_in(AccessState::Standby);
    let tur = [0u8; 6];
    // WRITE(10) of one block at LBA 0 (SBC-3 table 64).
    let write = cdb10(0x2A, 0, 0, 1);
    rig.target.open_nexus(1, port("iqn.2026-01.test:a"));
    assert_eq!(
        outcome(&rig.run_on(1, 0, &tur, &[])),
        (Status::CheckCondition, 0x06, 0x29, 0x00)
    );
    let r = rig.run_on(1, 0, &write, &[0x5A; 512]);
    assert_eq!(r.sense.as_deref(), Some(&not_accessible(0x0B)[..]));

    let takeover = Alua::new(
        PortGroup {
            id: 2,
            state: AccessState::ActiveOptimized,
        },
        vec![PortGroup {
            id: 1,
            state: AccessState::Standby,
        }],
    )
    .unwrap();
    assert!(rig.target.set_alua(takeover.clone()));
    let r = rig.run_on(1, 0, &write, &[0x5A; 512]);
    assert_eq!(r.sense.as_deref(), Some(&ACCESS_STATE_CHANGED[..]));
    assert_eq!(outcome(&rig.run_on(1, 0, &write, &[0x5A; 512])), GOOD);
    assert!(rig.mem.data[..512].iter().all(|&b| b == 0x5A));
    let r = rig.run_on(1, 0, &rtpg(0, 1024), &[]);
    let mut body = descriptor_with_status(0x0, 2, 0x02);
    body.extend(descriptor_with_status(0x2, 1, 0x02));
    assert_eq!(&r.data_in[4..], &body[..]);
    // The same setting again (the next round) changes nothing and raises nothing.
    assert!(!rig.target.set_alua(takeover));
    assert_eq!(outcome(&rig.run_on(1, 0, &tur, &[])), GOOD);

    // Stepping down: both standby (nobody known active).
    let down = Alua::new(
        PortGroup {
            id: 2,
            state: AccessState::Standby,
        },
        vec![PortGroup {
            id: 1,
            state: AccessState::Standby,
        }],
    )
    .unwrap();
    assert!(rig.target.set_alua(down));
    let r = rig.run_on(1, 0, &write, &[0xA5; 512]);
    assert_eq!(r.sense.as_deref(), Some(&ACCESS_STATE_CHANGED[..]));
    let r = rig.run_on(1, 0, &write, &[0xA5; 512]);
    assert_eq!(r.sense.as_deref(), Some(&not_accessible(0x0B)[..]));
    assert!(rig.mem.data[..512].iter().all(|&b| b == 0x5A));
}

/// Once the target knows its iSCSI name, the Device Identification page names this
/// target port too: a SCSI name string designator (SPC-4 7.8.6.11, table 470; the
/// designation descriptor of table 458) of the iSCSI target port name
/// `<target name>,t,0x<portal group tag>` (RFC 7143 4.2.7.1), the tag being the relative
/// target port identifier: the ALUA group id (2 here), else 1. It comes before the
/// relative target port and target port group designators, which say the same number.
#[test]
fn device_identification_names_the_target_port() {
    let plain = rig_with(None).run(&inquiry(true, 0x83, 1024), &[]).data_in;
    // PROTOCOL IDENTIFIER 5h (iSCSI), CODE SET 3h (UTF-8); PIV 1, ASSOCIATION 01b
    // (target port), DESIGNATOR TYPE 8h (SCSI name string); reserved; DESIGNATOR LENGTH
    // 20h: the 30 bytes of the name, null-terminated and null-padded to a multiple of 4.
    let named = |tag: &[u8; 4]| {
        let mut v = vec![0x53, 0x98, 0x00, 0x20];
        v.extend_from_slice(b"iqn.2026-12.test:disk,t,0x");
        v.extend_from_slice(tag);
        v.extend_from_slice(&[0x00, 0x00]);
        v
    };

    let mut rig = rig_with(Some(alua()));
    rig.target.set_target_name("iqn.2026-12.test:disk");
    let d = rig.run(&inquiry(true, 0x83, 1024), &[]).data_in;
    let mut port = named(b"0002");
    port.extend_from_slice(&[
        0x51, 0x94, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, // relative target port 2
        0x51, 0x95, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, // target port group 2
    ]);
    assert_eq!(&d[4..plain.len()], &plain[4..]);
    assert_eq!(&d[plain.len()..], &port[..]);
    assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), d.len() - 4);
    insta::assert_snapshot!("vpd83_with_alua_and_target_port_name", hex(&d));

    // Without ALUA: one target port, tag 1, and no port group designators.
    let mut rig = rig_with(None);
    rig.target.set_target_name("iqn.2026-12.test:disk");
    let d = rig.run(&inquiry(true, 0x83, 1024), &[]).data_in;
    assert_eq!(&d[4..plain.len()], &plain[4..]);
    assert_eq!(&d[plain.len()..], &named(b"0001")[..]);
    assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), d.len() - 4);
    assert_eq!(
        rig.target.target_port_name().as_deref(),
        Some("iqn.2026-12.test:disk,t,0x0001")
    );
}

/// Failover per logical unit (the daemon's `--alua-failover`): each LU has asymmetric
/// access states of its own. This gateway (group 2) starts standby on both LUs with the
/// target's groups (group 1 active/optimized); then LU 1 alone is taken over (group 2
/// active/optimized, group 1 standby). REPORT TARGET PORT GROUPS is answered by the LU
/// it is sent to (SPC-4 6.36: the target port groups "for the logical unit"), so LUN 0
/// still reports group 2 standby (2h) and group 1 active/optimized (0h), and LUN 1 the
/// swap, both groups with STATUS CODE 02h (table 260); ASYMMETRIC ACCESS STATE CHANGED
/// (2Ah/06h) is queued on LU 1 only, and each LU enforces its own state (LUN 0 refuses
/// with NOT READY 04h/0Bh, LUN 1 serves).
#[test]
fn each_logical_unit_has_its_own_states_and_unit_attention() {
    let mut rig = rig_in(AccessState::Standby);
    rig.add_lun(1, config(Capabilities::default()));
    let tur = [0u8; 6];
    let lun1 = 1u64 << 48;
    rig.target.open_nexus(1, port("iqn.2026-01.test:a"));
    for lun in [0, lun1] {
        assert_eq!(
            outcome(&rig.run_on(1, lun, &tur, &[])),
            (Status::CheckCondition, 0x06, 0x29, 0x00)
        );
    }

    let takeover = Alua::new(
        PortGroup {
            id: 2,
            state: AccessState::ActiveOptimized,
        },
        vec![PortGroup {
            id: 1,
            state: AccessState::Standby,
        }],
    )
    .unwrap();
    assert_eq!(rig.target.set_lu_alua(1, takeover.clone()), Ok(true));
    assert_eq!(rig.target.lu_alua(1), Some(takeover.clone()));
    assert_eq!(
        rig.target.lu_alua(0).unwrap().own.state,
        AccessState::Standby
    );

    // LUN 0: no unit attention, still standby.
    let r = rig.run_on(1, 0, &tur, &[]);
    assert_eq!(r.sense.as_deref(), Some(&not_accessible(0x0B)[..]));
    let r = rig.run_on(1, 0, &rtpg(0, 1024), &[]);
    let mut body = descriptor(0x2, 2);
    body.extend(descriptor(0x0, 1));
    assert_eq!(r.data_in[..4], [0, 0, 0, 24]);
    assert_eq!(&r.data_in[4..], &body[..]);
    insta::assert_snapshot!("rtpg_lun0_not_taken_over", hex(&r.data_in));

    // LUN 1: the unit attention once, then served, and its own groups reported.
    let r = rig.run_on(1, lun1, &tur, &[]);
    assert_eq!(r.sense.as_deref(), Some(&ACCESS_STATE_CHANGED[..]));
    assert_eq!(outcome(&rig.run_on(1, lun1, &tur, &[])), GOOD);
    let r = rig.run_on(1, lun1, &rtpg(0, 1024), &[]);
    let mut body = descriptor_with_status(0x0, 2, 0x02);
    body.extend(descriptor_with_status(0x2, 1, 0x02));
    assert_eq!(r.data_in[..4], [0, 0, 0, 24]);
    assert_eq!(&r.data_in[4..], &body[..]);
    insta::assert_snapshot!("rtpg_lun1_taken_over", hex(&r.data_in));

    // The same states again change nothing and raise nothing.
    assert_eq!(rig.target.set_lu_alua(1, takeover), Ok(false));
    assert_eq!(outcome(&rig.run_on(1, lun1, &tur, &[])), GOOD);

    // A target-wide change no longer reaches LU 1, which has states of its own.
    assert_eq!(
        rig.target.set_alua_state(1, AccessState::Unavailable),
        Ok(true)
    );
    let r = rig.run_on(1, 0, &tur, &[]);
    assert_eq!(r.sense.as_deref(), Some(&ACCESS_STATE_CHANGED[..]));
    assert_eq!(outcome(&rig.run_on(1, lun1, &tur, &[])), GOOD);
    let r = rig.run_on(1, lun1, &rtpg(0, 1024), &[]);
    assert_eq!(r.data_in[4], 0x0, "LUN 1: group 2 still active/optimized");

    // Groups other than the target's, an absent LUN, or a target without ALUA: refused.
    let stranger = Alua::new(
        PortGroup {
            id: 2,
            state: AccessState::Standby,
        },
        vec![PortGroup {
            id: 9,
            state: AccessState::ActiveOptimized,
        }],
    )
    .unwrap();
    assert_eq!(
        rig.target.set_lu_alua(1, stranger.clone()),
        Err(BadAlua::UnknownGroup(9))
    );
    assert_eq!(
        rig.target.set_lu_alua(5, stranger.clone()),
        Err(BadAlua::UnknownLun(5))
    );
    assert_eq!(
        rig_with(None).target.set_lu_alua(0, stranger),
        Err(BadAlua::Off)
    );
    assert_eq!(outcome(&rig.run_on(1, lun1, &tur, &[])), GOOD);
}
