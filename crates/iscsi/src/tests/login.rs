//! Login phase: normal and discovery sessions, stage transitions, rejects.

use super::initiator::*;
use crate::pdu::hex_dump;
use crate::{Event, Limits, SessionType};
use bytes::BytesMut;

fn text_dump(r: &Rx) -> String {
    r.text().iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[test]
fn libiscsi_normal_login_negotiation() {
    let mut i = Initiator::new(config());
    let (sec, op) = i.login_normal();
    assert_eq!(sec.flags(), 0x81, "T=1 CSG=0 NSG=1");
    insta::assert_snapshot!(
        "libiscsi_login",
        format!(
            "security stage:\n{}operational stage:\n{}",
            text_dump(&sec),
            text_dump(&op)
        )
    );
    let p = i.conn.params().expect("full feature").clone();
    assert_eq!(p.initiator_max_recv_data_segment_length, 262_144);
    assert_eq!(p.max_burst_length, 262_144);
    assert_eq!(p.first_burst_length, 262_144);
    assert!(!p.initial_r2t);
    assert!(p.immediate_data);
    assert_eq!(p.default_time2retain, 0);
    assert_eq!(
        i.take_events(),
        vec![Event::LoggedIn {
            initiator: INITIATOR.into(),
            target: TARGET.into(),
            session_type: SessionType::Normal,
            isid: ISID,
            tsih: 0x1234,
        }]
    );
}

#[test]
fn login_pdus_snapshot() {
    let mut i = Initiator::new(config());
    let (sec, op) = i.login_normal();
    // Login Response BHS, RFC 7143 11.13, field by field. Both answer ITT 1 and echo the
    // ISID; the window is ExpCmdSN 1 ..= MaxCmdSN 128 (the command window of 128).
    let bhs = |flags: u8, data_len: u32, tsih: u16, stat_sn: u32| {
        let mut b = [0u8; 48];
        b[0] = 0x23; // Login Response
        b[1] = flags; // T, CSG, NSG
        b[2] = 0x00; // Version-max
        b[3] = 0x00; // Version-active
        b[4] = 0x00; // TotalAHSLength
        b[5..8].copy_from_slice(&data_len.to_be_bytes()[1..]);
        b[8..14].copy_from_slice(&ISID);
        b[14..16].copy_from_slice(&tsih.to_be_bytes());
        b[16..20].copy_from_slice(&1u32.to_be_bytes()); // Initiator Task Tag
        b[24..28].copy_from_slice(&stat_sn.to_be_bytes());
        b[28..32].copy_from_slice(&1u32.to_be_bytes()); // ExpCmdSN
        b[32..36].copy_from_slice(&128u32.to_be_bytes()); // MaxCmdSN
        b[36] = 0x00; // Status-Class: success
        b[37] = 0x00; // Status-Detail
        b
    };
    // Security stage answered with T=1 CSG=0 NSG=1, TSIH still 0 (the session exists only
    // once full feature phase is reached); operational with T=1 CSG=1 NSG=3 and the TSIH.
    assert_eq!(sec.bhs, bhs(0x81, sec.data.len() as u32, 0, 0));
    assert_eq!(op.bhs, bhs(0x87, op.data.len() as u32, 0x1234, 1));
    let mut all = Vec::new();
    for r in [sec, op] {
        all.extend_from_slice(&r.bhs);
        all.extend_from_slice(&r.data);
        while all.len() & 3 != 0 {
            all.push(0);
        }
    }
    insta::assert_snapshot!("login_pdus_hex", hex_dump(&all));
}

#[test]
fn straight_from_security_to_full_feature_with_operational_keys() {
    let mut i = Initiator::new(config());
    let mut keys = libiscsi_security_keys(TARGET);
    keys.extend(libiscsi_operational_keys());
    let r = i.send(&login_req(true, 0, 3, 1, 1, &kv_owned(&keys)));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].flags(), 0x83, "T=1 CSG=0 NSG=3");
    assert_eq!(r[0].status_class(), 0);
    assert_eq!(
        &r[0].bhs[14..16],
        &[0x12, 0x34],
        "TSIH in the final response"
    );
    let t = r[0].text();
    assert!(t.contains(&("MaxRecvDataSegmentLength".into(), "262144".into())));
    assert!(t.contains(&("TargetPortalGroupTag".into(), "1".into())));
    assert!(t.contains(&("ImmediateData".into(), "Yes".into())));
    assert!(matches!(i.take_events()[..], [Event::LoggedIn { .. }]));
}

#[test]
fn operational_stage_first_and_target_alias() {
    // An initiator that skips the security stage altogether and offers no burst keys.
    let mut i = Initiator::new(config());
    let keys = kv(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET2),
        ("MaxRecvDataSegmentLength", "8192"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    // RFC 7143 6.2 / 6.3: the target proposes the keys it wants, and may not transit
    // (T=0, CSG=1, NSG=0) before the initiator has answered them.
    assert_eq!(r[0].flags(), 0x04);
    assert_eq!(r[0].status_class(), 0);
    assert_eq!(
        r[0].text(),
        vec![
            ("TargetAlias".to_string(), "second".to_string()),
            ("TargetPortalGroupTag".into(), "1".into()),
            ("MaxRecvDataSegmentLength".into(), "262144".into()),
            ("InitialR2T".into(), "No".into()),
            ("ImmediateData".into(), "Yes".into()),
            ("MaxBurstLength".into(), "1048576".into()),
            ("FirstBurstLength".into(), "262144".into()),
        ]
    );
    assert!(i.conn.params().is_none(), "still logging in");
    // The initiator answers (InitialR2T: OR, ImmediateData: AND, lengths: minimum).
    let answers = kv(&[
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "524288"),
        ("FirstBurstLength", "131072"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &answers));
    assert_eq!(r[0].flags(), 0x87, "T=1 CSG=1 NSG=3 once answered");
    assert_eq!(r[0].text(), vec![], "answers are not answered again");
    let p = i.conn.params().unwrap();
    assert!(!p.initial_r2t);
    assert!(p.immediate_data);
    assert_eq!(p.max_burst_length, 524_288);
    assert_eq!(p.first_burst_length, 131_072);
    assert_eq!(p.initiator_max_recv_data_segment_length, 8192);
}

#[test]
fn target_proposals_follow_the_rfc_result_functions() {
    let mut i = Initiator::new(config());
    let keys = kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(r[0].flags() & 0x80, 0, "no transit with proposals open");
    // An initiator that wants InitialR2T=Yes and ImmediateData=No and smaller bursts.
    let answers = kv(&[
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
        ("MaxBurstLength", "16384"),
        ("FirstBurstLength", "8192"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &answers));
    assert_eq!(r[0].flags(), 0x87);
    let p = i.conn.params().unwrap();
    assert!(p.initial_r2t, "Yes OR No = Yes");
    assert!(!p.immediate_data, "No AND Yes = No");
    assert_eq!(p.max_burst_length, 16_384);
    assert_eq!(p.first_burst_length, 8192);
}

#[test]
fn an_initiator_that_never_answers_the_proposals_is_refused() {
    let mut i = Initiator::new(config());
    let keys = kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(r[0].flags(), 0x04, "T=0 CSG=1: held for the proposals");
    // Three more requests that answer nothing are still held...
    for _ in 0..3 {
        let r = i.send(&login_req(true, 1, 3, 1, 1, &[]));
        assert_eq!((r[0].flags(), r[0].status_class()), (0x04, 0x0000));
    }
    // ...the next is refused: Status-Class 2 (initiator error), detail 0 (RFC 7143 11.13.5).
    let r = i.send(&login_req(true, 1, 3, 1, 1, &[]));
    assert_eq!(r[0].opcode(), 0x23);
    assert_eq!(r[0].status_class(), 0x0200);
    assert!(i.conn.is_finished());
}

#[test]
fn target_waits_for_answers_before_transit() {
    let mut i = Initiator::new(config());
    let keys = kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(r[0].flags(), 0x04);
    // Only two of the four proposals answered: still no transit.
    let r = i.send(&login_req(
        true,
        1,
        3,
        1,
        1,
        &kv(&[("InitialR2T", "No"), ("ImmediateData", "Yes")]),
    ));
    assert_eq!(r[0].flags(), 0x04);
    assert!(r[0].text().is_empty());
    let r = i.send(&login_req(
        true,
        1,
        3,
        1,
        1,
        &kv(&[("MaxBurstLength", "262144"), ("FirstBurstLength", "65536")]),
    ));
    assert_eq!(r[0].flags(), 0x87);
    let p = i.conn.params().unwrap();
    assert!(!p.initial_r2t);
    assert!(p.immediate_data);
    assert_eq!(
        (p.max_burst_length, p.first_burst_length),
        (262_144, 65_536)
    );
}

#[test]
fn first_burst_answer_follows_a_later_smaller_max_burst() {
    // FirstBurstLength offered before a smaller MaxBurstLength: the answered
    // FirstBurstLength must be the value in force, at most MaxBurstLength (RFC 7143 13.14).
    let mut i = Initiator::new(config());
    let sec = kv_owned(&libiscsi_security_keys(TARGET));
    i.send(&login_req(true, 0, 1, 1, 1, &sec));
    let keys = kv(&[
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("FirstBurstLength", "262144"),
        ("MaxBurstLength", "65536"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(r[0].flags(), 0x87);
    let t = r[0].text();
    assert!(
        t.contains(&("MaxBurstLength".into(), "65536".into())),
        "{t:?}"
    );
    assert!(
        t.contains(&("FirstBurstLength".into(), "65536".into())),
        "{t:?}"
    );
    let p = i.conn.params().unwrap();
    assert_eq!(p.max_burst_length, 65_536);
    assert_eq!(p.first_burst_length, 65_536);
}

#[test]
fn security_stage_without_transit_then_transit() {
    let mut i = Initiator::new(config());
    let keys = kv_owned(&libiscsi_security_keys(TARGET));
    let r = i.send(&login_req(false, 0, 0, 1, 1, &keys));
    assert_eq!(r[0].flags(), 0x00, "stays in security stage");
    assert_eq!(r[0].stat_sn(), 0);
    let r = i.send(&login_req(true, 0, 1, 1, 1, &[]));
    assert_eq!(r[0].flags(), 0x81);
    assert_eq!(r[0].stat_sn(), 1);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &[]));
    assert_eq!(r[0].flags(), 0x04, "target proposals open: no transit");
    assert_eq!(r[0].stat_sn(), 2);
    let answers = kv(&[
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "1048576"),
        ("FirstBurstLength", "262144"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &answers));
    assert_eq!(r[0].flags(), 0x87);
    assert_eq!(r[0].status_class(), 0);
}

#[test]
fn login_text_split_with_continue_bit() {
    let mut i = Initiator::new(config());
    let keys = kv_owned(&libiscsi_security_keys(TARGET));
    let (a, b) = keys.split_at(10);
    // C=1 on the first part: the target acknowledges with an empty response.
    let mut first = login_req(false, 0, 1, 1, 1, a);
    first[1] |= 0x40;
    let r = i.send(&first);
    assert_eq!(r.len(), 1);
    assert!(r[0].data.is_empty());
    assert_eq!(r[0].status_class(), 0);
    let r = i.send(&login_req(true, 0, 1, 1, 1, b));
    assert_eq!(r[0].flags(), 0x81);
    assert!(r[0].text().contains(&("AuthMethod".into(), "None".into())));
}

#[test]
fn discovery_send_targets_all() {
    let mut i = Initiator::new(config());
    let r = i.login_discovery();
    assert_eq!(r.flags(), 0x83);
    assert!(matches!(
        &i.take_events()[..],
        [Event::LoggedIn { session_type: SessionType::Discovery, target, .. }] if target.is_empty()
    ));
    let r = i.send(&text_req(
        true,
        false,
        0x77,
        0xffff_ffff,
        1,
        &kv(&[("SendTargets", "All")]),
    ));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opcode(), 0x24);
    assert_eq!(r[0].flags(), 0x80);
    assert_eq!(r[0].ttt(), 0xffff_ffff);
    insta::assert_snapshot!("send_targets_all", text_dump(&r[0]));
    let mut bytes = r[0].bhs.to_vec();
    bytes.extend_from_slice(&r[0].data);
    insta::assert_snapshot!("send_targets_all_hex", hex_dump(&bytes));

    let r = i.send(&text_req(
        true,
        false,
        0x78,
        0xffff_ffff,
        2,
        &kv(&[("SendTargets", TARGET2)]),
    ));
    assert_eq!(
        r[0].text(),
        vec![
            ("TargetName".to_string(), TARGET2.to_string()),
            ("TargetAddress".into(), "192.0.2.10:3260,1".into()),
            ("TargetAddress".into(), "[2001:db8::10]:3260,1".into()),
        ]
    );
    let r = i.send(&logout_req(0, 0x79, 3));
    assert_eq!(r[0].opcode(), 0x26);
    assert!(i.conn.is_finished());
}

#[test]
fn discovery_irrelevant_keys() {
    let mut i = Initiator::new(config());
    let keys = kv(&[
        ("InitiatorName", INITIATOR),
        ("SessionType", "Discovery"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("X-com.example.Foo", "1"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(
        r[0].text(),
        vec![
            ("ImmediateData".to_string(), "Irrelevant".to_string()),
            ("MaxBurstLength".into(), "Irrelevant".into()),
            ("X-com.example.Foo".into(), "NotUnderstood".into()),
            ("MaxRecvDataSegmentLength".into(), "262144".into()),
        ]
    );
}

#[test]
fn send_targets_response_continues_over_small_mrdsl() {
    let mut i = Initiator::new(config());
    let keys = kv(&[
        ("InitiatorName", INITIATOR),
        ("SessionType", "Discovery"),
        ("MaxRecvDataSegmentLength", "512"),
    ]);
    i.send(&login_req(true, 1, 3, 1, 1, &keys));
    // Make the answer longer than 512 bytes with many targets.
    let mut cfg = (*config()).clone();
    cfg.targets.clear();
    for n in 0..20 {
        cfg.targets.push(crate::TargetInfo {
            name: format!("iqn.2026-11.com.example:volume-number-{n:02}"),
            alias: None,
            addresses: vec!["192.0.2.10:3260,1".into()],
        });
    }
    let mut i = Initiator::new(std::sync::Arc::new(cfg));
    i.send(&login_req(true, 1, 3, 1, 1, &keys));
    let mut cmd_sn = 1;
    let mut r = i.send(&text_req(
        true,
        false,
        9,
        0xffff_ffff,
        cmd_sn,
        &kv(&[("SendTargets", "All")]),
    ));
    let mut all = Vec::new();
    let mut pdus = 0;
    loop {
        assert_eq!(r.len(), 1);
        let p = &r[0];
        assert!(p.data.len() <= 512);
        all.extend_from_slice(&p.data);
        pdus += 1;
        if p.flags() & 0x40 == 0 {
            assert_eq!(p.flags(), 0x80, "last: F=1 C=0");
            assert_eq!(p.ttt(), 0xffff_ffff);
            break;
        }
        assert_eq!(p.flags(), 0x40, "C=1 F=0");
        assert_ne!(p.ttt(), 0xffff_ffff);
        cmd_sn += 1;
        r = i.send(&text_req(true, false, 9, p.ttt(), cmd_sn, &[]));
    }
    assert!(pdus >= 3);
    let t = parse_text(&all);
    assert_eq!(t.len(), 40);
    assert_eq!(t[38].1, "iqn.2026-11.com.example:volume-number-19");
}

#[test]
fn send_targets_in_normal_session_reports_own_target() {
    let mut i = Initiator::new(config());
    i.login_normal();
    let r = i.send(&text_req(
        true,
        false,
        5,
        0xffff_ffff,
        1,
        &kv(&[("SendTargets", "All")]),
    ));
    assert_eq!(
        r[0].text(),
        vec![
            ("TargetName".to_string(), TARGET.to_string()),
            ("TargetAddress".into(), "192.0.2.10:3260,1".into()),
        ]
    );
}

#[rstest::rstest]
#[case::unknown_target(&[("InitiatorName", INITIATOR), ("TargetName", "iqn.x:none")], 0x0203)]
#[case::missing_target(&[("InitiatorName", INITIATOR)], 0x0207)]
#[case::missing_initiator(&[("TargetName", TARGET)], 0x0207)]
#[case::bad_session_type(&[("InitiatorName", INITIATOR), ("SessionType", "Weird")], 0x0209)]
#[case::no_auth_method(&[("InitiatorName", INITIATOR), ("TargetName", TARGET), ("AuthMethod", "CHAP")], 0x0201)]
#[case::key_twice(&[("InitiatorName", INITIATOR), ("TargetName", TARGET), ("MaxBurstLength", "512"), ("MaxBurstLength", "512")], 0x0200)]
fn login_rejects(#[case] keys: &[(&str, &str)], #[case] status: u16) {
    let mut i = Initiator::new(config());
    let r = i.send(&login_req(true, 0, 1, 1, 1, &kv(keys)));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opcode(), 0x23);
    assert_eq!(r[0].status_class(), status);
    assert!(i.conn.is_finished());
    assert!(i.take_events().is_empty());
    // Anything after the reject is ignored.
    let mut more = BytesMut::from(&login_req(true, 0, 1, 1, 1, &kv(keys))[..]);
    i.conn.handle_input(&mut more).unwrap();
    assert!(i.drain().is_empty());
}

#[rstest::rstest]
#[case::illegal_transition(0, 2, 0x0200)]
#[case::backwards(1, 0, 0x0200)]
fn login_bad_stage_transitions(#[case] csg: u8, #[case] nsg: u8, #[case] status: u16) {
    let mut i = Initiator::new(config());
    let keys = kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    let r = i.send(&login_req(true, csg, nsg, 1, 1, &keys));
    assert_eq!(r[0].status_class(), status);
}

#[test]
fn login_unsupported_version_and_tsih() {
    let keys = kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
    let mut i = Initiator::new(config());
    let mut req = login_req(true, 0, 1, 1, 1, &keys);
    req[2] = 2;
    req[3] = 1; // Version-min 1
    assert_eq!(i.send(&req)[0].status_class(), 0x0205);

    let mut i = Initiator::new(config());
    let mut req = login_req(true, 0, 1, 1, 1, &keys);
    req[14] = 0x00;
    req[15] = 0x05; // an existing session's TSIH
    assert_eq!(i.send(&req)[0].status_class(), 0x020a);
}

#[test]
fn login_limits_offered_from_config() {
    let limits = Limits {
        max_recv_data_segment_length: 65_536,
        max_burst_length: 131_072,
        first_burst_length: 16_384,
        max_outstanding_r2t: 4,
        immediate_data: false,
        initial_r2t: true,
        command_window: 32,
        ..Limits::default()
    };
    let mut i = Initiator::new(config_with(limits));
    let (_, op) = i.login_normal();
    insta::assert_snapshot!("login_custom_limits", text_dump(&op));
    assert_eq!(op.max_cmd_sn(), 32, "ExpCmdSN 1 + window 32 - 1");
}

#[test]
fn open_iscsi_style_offer_transits_at_once_without_proposals() {
    // open-iscsi offers every operational key in one request of the operational stage;
    // the target answers each and transits at once (T=1, CSG=1, NSG=3), proposing nothing.
    let mut i = Initiator::new(config());
    let sec = kv(&[
        ("InitiatorName", INITIATOR),
        ("InitiatorAlias", "client"),
        ("TargetName", TARGET),
        ("SessionType", "Normal"),
        ("AuthMethod", "None"),
    ]);
    assert_eq!(i.send(&login_req(true, 0, 1, 0, 1, &sec))[0].flags(), 0x81);
    let op = kv(&[
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxConnections", "1"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 0, 1, &op));
    assert_eq!(r[0].flags(), 0x87);
    let keys: Vec<String> = r[0].text().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "HeaderDigest",
            "DataDigest",
            "MaxConnections",
            "InitialR2T",
            "ImmediateData",
            "MaxBurstLength",
            "FirstBurstLength",
            "DefaultTime2Wait",
            "DefaultTime2Retain",
            "MaxOutstandingR2T",
            "DataPDUInOrder",
            "DataSequenceInOrder",
            "ErrorRecoveryLevel",
            "IFMarker",
            "OFMarker",
        ],
        "MaxRecvDataSegmentLength was declared with the security-stage transit"
    );
    let p = i.conn.params().unwrap();
    assert!(!p.initial_r2t && p.immediate_data);
    // min(16776192, our 1048576) and min(262144, our 262144).
    assert_eq!(
        (p.max_burst_length, p.first_burst_length),
        (1_048_576, 262_144)
    );
}

/// Keys the target proposes itself in the operational stage (see `negotiation::propose`).
fn proposals(r: &Rx) -> Vec<(String, String)> {
    r.text()
        .into_iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "InitialR2T" | "ImmediateData" | "MaxBurstLength" | "FirstBurstLength"
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn security_to_full_feature_without_operational_keys_goes_through_the_operational_stage() {
    // RFC 7143 6.3: on a stage transition "the next stage is selected by the target through
    // the NSG code", which "MUST NOT exceed the value stated by the initiator"; and a Login
    // Response with T=1 MUST NOT carry keys that need another Login Request. So the target
    // answers T=1 CSG=0 NSG=1 (flags 0x81) with no proposals and no TSIH, and proposes its
    // keys in the operational stage.
    let mut i = Initiator::new(config_with(Limits {
        max_burst_length: 524_288,
        first_burst_length: 131_072,
        initial_r2t: false,
        immediate_data: true,
        ..Limits::default()
    }));
    let sec = kv_owned(&libiscsi_security_keys(TARGET));
    let r = i.send(&login_req(true, 0, 3, 1, 1, &sec));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status_class(), 0);
    assert_eq!(r[0].flags(), 0x81, "T=1 CSG=0 NSG=1");
    assert_eq!(
        &r[0].bhs[14..16],
        &[0, 0],
        "TSIH only in the final response"
    );
    assert_eq!(
        proposals(&r[0]),
        vec![],
        "nothing to answer in a T=1 response"
    );
    assert!(i.take_events().is_empty(), "not logged in yet");
    // The initiator follows into the operational stage and asks for full feature phase.
    let r = i.send(&login_req(true, 1, 3, 1, 1, &[]));
    assert_eq!(r[0].flags(), 0x04, "T=0 CSG=1: proposals open");
    assert_eq!(
        proposals(&r[0]),
        pairs(&[
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "524288"),
            ("FirstBurstLength", "131072"),
        ])
    );
    let answers = kv(&[
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "524288"),
        ("FirstBurstLength", "131072"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &answers));
    assert_eq!(r[0].flags(), 0x87, "T=1 CSG=1 NSG=3");
    assert_eq!(
        &r[0].bhs[14..16],
        &[0x12, 0x34],
        "TSIH in the final response"
    );
    assert!(matches!(i.take_events()[..], [Event::LoggedIn { .. }]));
    let p = i.conn.params().unwrap();
    assert!(!p.initial_r2t);
    assert!(p.immediate_data);
    assert_eq!(
        (p.max_burst_length, p.first_burst_length),
        (524_288, 131_072)
    );
}

#[test]
fn security_to_full_feature_proposes_only_the_keys_not_offered() {
    let mut i = Initiator::new(config());
    let mut keys = libiscsi_security_keys(TARGET);
    keys.push(("InitialR2T", "Yes".into()));
    keys.push(("MaxBurstLength", "65536".into()));
    // After a security-stage round without transit, the transit request carries no keys.
    let r = i.send(&login_req(false, 0, 0, 1, 1, &kv_owned(&keys)));
    assert_eq!(r[0].flags(), 0x00);
    let r = i.send(&login_req(true, 0, 3, 1, 1, &[]));
    assert_eq!(r[0].flags(), 0x81, "T=1 CSG=0 NSG=1");
    let r = i.send(&login_req(true, 1, 3, 1, 1, &[]));
    assert_eq!(r[0].flags(), 0x04);
    let keys: Vec<String> = proposals(&r[0]).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["ImmediateData", "FirstBurstLength"]);
}

#[test]
fn discovery_goes_straight_from_security_to_full_feature() {
    // The burst and R2T keys are irrelevant to discovery (RFC 7143 section 13): nothing to
    // propose, so the target takes the initiator's NSG=3.
    let mut i = Initiator::new(config());
    let r = i.login_discovery();
    assert_eq!(r.flags(), 0x83, "T=1 CSG=0 NSG=3");
}
