//! The target portal group tag of a gateway in an ALUA target port group: its group's id
//! (`--alua-group`), in the Login Response and in SendTargets, so that each gateway is a
//! target port of its own to the host. RFC 7143 4.2.7.1: the iSCSI target port name is
//! the target name, ",t,0x" and the tag; 13.9: TargetPortalGroupTag is returned in the
//! first Login Response; 13.8: a SendTargets TargetAddress is `address:port,tpgt`.
//! SPC-4 7.8.6.6 / 7.8.6.7: the Device Identification page's relative target port
//! (designator type 4h) and target port group (5h) designators, of association 01b (the
//! target port), carry the same number, and its SCSI name string designator (8h, SPC-4
//! 7.8.6.11) names the target port with it.

mod support;

use std::net::TcpStream;
use support::*;
use testkit::initiator::Initiator;

/// A gateway of ALUA target port group 2 (its peer is group 1).
fn gateway_of_group_2() -> Running {
    Running::start(
        &[
            "--bstype",
            "memory",
            "--size",
            "1M",
            "--alua-group",
            "2",
            "--alua-peer",
            "1:active-optimized",
        ],
        &[],
    )
}

/// The text keys of a Login Response data segment: `key=value` pairs, NUL-terminated.
fn keys(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let kv = std::str::from_utf8(kv).unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The Device Identification designators (SPC-4 7.8.6, table 459) of association 01b
/// (target port) as (designator type, designator bytes).
fn target_port_designators(page: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(page[1], 0x83, "PAGE CODE");
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let mut found = Vec::new();
    let mut rest = &page[4..4 + len];
    while rest.len() >= 4 {
        let n = usize::from(rest[3]);
        let (association, kind) = ((rest[1] >> 4) & 0x3, rest[1] & 0x0F);
        if association == 0x1 {
            found.push((kind, rest[4..4 + n].to_vec()));
        }
        rest = &rest[4 + n..];
    }
    found
}

#[test]
fn a_gateway_in_an_alua_group_is_its_own_target_port() {
    let daemon = gateway_of_group_2();

    // The Login Response says portal group tag 2 (decimal, RFC 7143 6.2: a number).
    let mut stream = TcpStream::connect(daemon.portal).unwrap();
    let (_, data) = raw_login_response(&mut stream, IQN);
    let tags: Vec<String> = keys(&data)
        .into_iter()
        .filter(|(k, _)| k == "TargetPortalGroupTag")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(tags, ["2"]);
    drop(stream);

    // SendTargets offers the portal in group 2.
    let found = Initiator::discover(&daemon.portal()).unwrap();
    let want = format!("{},2", daemon.portal);
    assert_eq!(found, [(IQN.to_string(), vec![want])]);

    // VPD 83h: the target port's name carries tag 2, and the relative target port and
    // its group are 2 as well.
    let mut host = daemon.connect();
    let out = host
        .raw_command(&[0x12, 1, 0x83, 0, 255, 0], &[], 255)
        .unwrap();
    assert!(out.is_good(), "{out:?}");
    // SCSI name string (7.8.6.11): "<target>,t,0x0002", NUL-terminated, padded to 40.
    let mut name = b"iqn.2026-11.io.glfs-iscsi:e2e,t,0x0002".to_vec();
    name.resize(40, 0);
    assert_eq!(
        target_port_designators(&out.data),
        [
            (0x8, name),
            (0x4, vec![0, 0, 0, 2]), // relative target port identifier (7.8.6.6)
            (0x5, vec![0, 0, 0, 2]), // target port group (7.8.6.7)
        ]
    );
}
