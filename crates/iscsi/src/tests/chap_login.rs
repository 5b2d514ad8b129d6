//! Logins under an access policy: CHAP in the security stage (the key sequence libiscsi and
//! open-iscsi send), ACL refusals, and SendTargets filtered by the ACL. Login status values
//! are RFC 7143 11.13.5's; CHAP responses are computed here by RFC 1994's formula.

use super::initiator::*;
use crate::auth::{AccessPolicy, AclEntry, ChapCredentials, Credential, Secret, TargetAccess};
use crate::Event;
use std::collections::HashSet;

const USER: &str = "alice";
const SECRET: &str = "alice-secret-0001";
const MUTUAL_USER: &str = "disk1";
const MUTUAL_SECRET: &str = "target-secret-0002";

/// RFC 1994 4.1: H(Identifier || secret || Challenge), H as CHAP_A names it (RFC 7143
/// 12.1.3 and its IANA registry: 5 MD5, 6 SHA-1, 7 SHA-256, 8 SHA3-256).
fn chap_response(algorithm: u8, id: u8, secret: &str, challenge: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut input = vec![id];
    input.extend_from_slice(secret.as_bytes());
    input.extend_from_slice(challenge);
    match algorithm {
        5 => md5::Md5::digest(&input).to_vec(),
        6 => sha1::Sha1::digest(&input).to_vec(),
        7 => sha2::Sha256::digest(&input).to_vec(),
        8 => sha3::Sha3_256::digest(&input).to_vec(),
        _ => unreachable!(),
    }
}

fn md5_response(id: u8, secret: &str, challenge: &[u8]) -> Vec<u8> {
    chap_response(5, id, secret, challenge)
}

fn hex(bytes: &[u8]) -> String {
    format!(
        "0x{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn unhex(text: &str) -> Vec<u8> {
    let digits = text.strip_prefix("0x").expect("hex binary value");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn chap(mutual: bool) -> ChapCredentials {
    ChapCredentials {
        initiator: Credential::new(USER, Secret::new(SECRET)).unwrap(),
        target: mutual.then(|| Credential::new(MUTUAL_USER, Secret::new(MUTUAL_SECRET)).unwrap()),
    }
}

fn chap_policy(mutual: bool) -> AccessPolicy {
    let mut policy = AccessPolicy::new();
    policy
        .set_target(
            TARGET,
            TargetAccess {
                acl: vec![],
                chap: Some(chap(mutual)),
            },
        )
        .unwrap();
    policy
}

fn value(r: &Rx, key: &str) -> Option<String> {
    r.text().into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A Login Request in the security stage (CSG 0, NSG 1; `transit`: T=1) carrying the text
/// `keys` (from `kv`): the target's responses.
fn security(i: &mut Initiator, transit: bool, keys: &[u8]) -> Vec<Rx> {
    i.send(&login_req(transit, 0, 1, 1, 1, keys))
}

/// The first two legs of libiscsi's CHAP login: AuthMethod=CHAP,None with T=1, then CHAP_A.
/// Returns the identifier and challenge the target sent.
fn offer_chap(i: &mut Initiator, algorithms: &str) -> (u8, Vec<u8>) {
    let first = [
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("SessionType", "Normal"),
        ("AuthMethod", "CHAP,None"),
    ];
    offer_chap_with(i, &first, algorithms)
}

/// [`offer_chap`] with `first` as the first request's keys.
fn offer_chap_with(i: &mut Initiator, first: &[(&str, &str)], algorithms: &str) -> (u8, Vec<u8>) {
    let r = security(i, true, &kv(first));
    assert_eq!(r[0].status_class(), 0, "{:?}", r[0].text());
    assert_eq!(
        r[0].flags(),
        0x00,
        "T=0: the target holds the security stage"
    );
    assert_eq!(value(&r[0], "AuthMethod").as_deref(), Some("CHAP"));
    let r = security(i, false, &kv(&[("CHAP_A", algorithms)]));
    assert_eq!(r[0].status_class(), 0, "{:?}", r[0].text());
    assert_eq!(r[0].flags(), 0x00);
    let id: u8 = value(&r[0], "CHAP_I").unwrap().parse().unwrap();
    let challenge = unhex(&value(&r[0], "CHAP_C").unwrap());
    (id, challenge)
}

/// The last leg, T=1 towards the operational stage, with these CHAP keys.
fn respond(i: &mut Initiator, pairs: &[(&str, &str)]) -> Rx {
    let r = security(i, true, &kv(pairs));
    assert_eq!(r.len(), 1, "one Login response, never a dropped connection");
    r[0].clone()
}

fn finish_operational(i: &mut Initiator) {
    let op = kv_owned(&libiscsi_operational_keys());
    let r = i.send(&login_req(true, 1, 3, 1, 1, &op));
    assert_eq!(r[0].status_class(), 0, "{:?}", r[0].text());
    assert_eq!(r[0].flags(), 0x87);
}

#[rstest::rstest]
fn one_way_chap_login_as_libiscsi_does_it(#[values(5, 6, 7, 8)] algorithm: u8) {
    let mut i = Initiator::new(config_with_access(chap_policy(false)));
    let (id, challenge) = offer_chap(&mut i, &algorithm.to_string());
    assert!(challenge.len() >= 16);
    let response = chap_response(algorithm, id, SECRET, &challenge);
    let r = respond(&mut i, &[("CHAP_N", USER), ("CHAP_R", &hex(&response))]);
    assert_eq!(r.status_class(), 0, "{:?}", r.text());
    assert_eq!(r.flags(), 0x81, "T=1 CSG=0 NSG=1 once authenticated");
    assert_eq!(
        value(&r, "CHAP_R"),
        None,
        "one-way: the target proves nothing"
    );
    finish_operational(&mut i);
    assert!(matches!(i.take_events()[..], [Event::LoggedIn { .. }]));
}

#[test]
fn mutual_chap_login_returns_the_targets_proof_with_the_transit() {
    let mut i = Initiator::new(config_with_access(chap_policy(true)));
    let (id, challenge) = offer_chap(&mut i, "5");
    let response = md5_response(id, SECRET, &challenge);
    let ours: Vec<u8> = (1..=32).collect();
    let r = respond(
        &mut i,
        &[
            ("CHAP_N", USER),
            ("CHAP_R", &hex(&response)),
            ("CHAP_I", "9"),
            ("CHAP_C", &hex(&ours)),
        ],
    );
    assert_eq!(r.status_class(), 0, "{:?}", r.text());
    assert_eq!(r.flags(), 0x81);
    assert_eq!(value(&r, "CHAP_N").as_deref(), Some(MUTUAL_USER));
    assert_eq!(
        unhex(&value(&r, "CHAP_R").unwrap()),
        md5_response(9, MUTUAL_SECRET, &ours)
    );
    finish_operational(&mut i);
}

#[test]
fn a_wrong_secret_is_answered_with_authentication_failure() {
    let mut i = Initiator::new(config_with_access(chap_policy(false)));
    let (id, challenge) = offer_chap(&mut i, "5");
    let response = md5_response(id, "a-wrong-secret-1", &challenge);
    let r = respond(&mut i, &[("CHAP_N", USER), ("CHAP_R", &hex(&response))]);
    assert_eq!(r.opcode(), 0x23);
    assert_eq!(r.status_class(), 0x0201);
    assert!(i.conn.is_finished());
    assert!(i.take_events().is_empty());
    // RFC 7143 11.13.5: Status-Class 2 (initiator error), Status-Detail 1 (authentication
    // failure), kept for the driver's login counters with the target asked for.
    assert_eq!(i.conn.login_failure(), Some((0x0201, TARGET)));
}

#[test]
fn a_reflected_challenge_fails_the_login() {
    let mut i = Initiator::new(config_with_access(chap_policy(true)));
    let (id, challenge) = offer_chap(&mut i, "5");
    let response = md5_response(id, SECRET, &challenge);
    let r = respond(
        &mut i,
        &[
            ("CHAP_N", USER),
            ("CHAP_R", &hex(&response)),
            ("CHAP_I", &id.to_string()),
            ("CHAP_C", &hex(&challenge)),
        ],
    );
    assert_eq!(r.status_class(), 0x0201);
    assert_eq!(
        value(&r, "CHAP_R"),
        None,
        "nothing computed for a reflected challenge"
    );
}

#[test]
fn chap_required_refuses_logins_that_avoid_it() {
    let policy = || config_with_access(chap_policy(false));
    // libiscsi without credentials starts in the operational stage.
    let mut i = Initiator::new(policy());
    let op = [
        libiscsi_security_keys(TARGET)[..3].to_vec(),
        libiscsi_operational_keys(),
    ]
    .concat();
    let r = i.send(&login_req(true, 1, 3, 1, 1, &kv_owned(&op)));
    assert_eq!(r[0].status_class(), 0x0201);
    // AuthMethod=None only.
    let mut i = Initiator::new(policy());
    let r = security(&mut i, true, &kv_owned(&libiscsi_security_keys(TARGET)));
    assert_eq!(r[0].status_class(), 0x0201);
    // Transit out of the security stage after the challenge, without a response.
    let mut i = Initiator::new(policy());
    offer_chap(&mut i, "5");
    let r = security(&mut i, true, &[]);
    assert_eq!(r[0].status_class(), 0x0201);
    // Transit without ever offering AuthMethod.
    let mut i = Initiator::new(policy());
    let r = security(
        &mut i,
        true,
        &kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]),
    );
    assert_eq!(r[0].status_class(), 0x0201);
    // CHAP keys in the operational stage, or before AuthMethod=CHAP.
    let mut i = Initiator::new(config());
    let r = security(
        &mut i,
        false,
        &kv(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("CHAP_A", "5"),
        ]),
    );
    assert_eq!(r[0].status_class(), 0x0200);
}

#[test]
fn an_open_target_still_picks_none_from_a_chap_offer() {
    let mut i = Initiator::new(config());
    let r = security(
        &mut i,
        true,
        &kv(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "CHAP,None"),
        ]),
    );
    assert_eq!(r[0].status_class(), 0);
    assert_eq!(value(&r[0], "AuthMethod").as_deref(), Some("None"));
    assert_eq!(r[0].flags(), 0x81);
}

#[test]
fn challenges_are_long_random_and_never_repeat() {
    let config = config_with_access(chap_policy(false));
    let mut seen = HashSet::new();
    for _ in 0..500 {
        let mut i = Initiator::new(config.clone());
        let (_, challenge) = offer_chap(&mut i, "5");
        assert!(challenge.len() >= 16, "{} bytes", challenge.len());
        assert!(seen.insert(challenge), "a challenge was sent twice");
    }
}

fn acl_policy() -> AccessPolicy {
    let mut policy = AccessPolicy::new();
    policy
        .set_target(
            TARGET2,
            TargetAccess {
                acl: vec![AclEntry {
                    initiator: Some("iqn.2026-11.com.example:other".into()),
                    networks: vec![],
                    chap: None,
                }],
                chap: None,
            },
        )
        .unwrap();
    policy
        .set_target(
            TARGET,
            TargetAccess {
                acl: vec![AclEntry {
                    initiator: None,
                    networks: vec!["192.0.2.0/24".parse().unwrap()],
                    chap: None,
                }],
                chap: None,
            },
        )
        .unwrap();
    policy
}

#[test]
fn an_initiator_outside_the_acl_gets_authorization_failure() {
    let mut i = Initiator::new(config_with_access(acl_policy()));
    let keys = [libiscsi_security_keys(TARGET2), libiscsi_operational_keys()].concat();
    let r = i.send(&login_req(true, 0, 3, 1, 1, &kv_owned(&keys)));
    assert_eq!(r[0].status_class(), 0x0202);
    assert!(i.conn.is_finished());
}

#[test]
fn acl_networks_match_the_peer_address() {
    let login = |peer: Option<&str>| {
        let mut i = Initiator::new(config_with_access(acl_policy()));
        if let Some(peer) = peer {
            i.conn.set_peer_address(peer.parse().unwrap());
        }
        let r = security(&mut i, true, &kv_owned(&libiscsi_security_keys(TARGET)));
        r[0].status_class()
    };
    assert_eq!(login(Some("192.0.2.44")), 0);
    assert_eq!(login(Some("198.51.100.1")), 0x0202);
    assert_eq!(login(None), 0x0202);
}

/// The TargetName values SendTargets=All answers a discovery session from `peer` with,
/// under the ACL policy.
fn send_targets_from(peer: &str) -> Vec<String> {
    let mut i = Initiator::new(config_with_access(acl_policy()));
    i.conn.set_peer_address(peer.parse().unwrap());
    i.login_discovery();
    let r = i.send(&text_req(
        true,
        false,
        2,
        0xffff_ffff,
        1,
        &kv(&[("SendTargets", "All")]),
    ));
    r[0].text()
        .into_iter()
        .filter(|(k, _)| k == "TargetName")
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn send_targets_lists_only_what_the_initiator_may_log_in_to() {
    assert_eq!(
        send_targets_from("192.0.2.44"),
        [TARGET],
        "TARGET2's ACL names another initiator"
    );
    assert_eq!(send_targets_from("198.51.100.1"), Vec::<String>::new());
}

#[test]
fn discovery_credentials_guard_discovery_sessions() {
    let mut policy = AccessPolicy::new();
    policy.set_discovery_chap(Some(chap(false))).unwrap();
    let config = config_with_access(policy);
    // Without CHAP: refused.
    let mut i = Initiator::new(config.clone());
    let r = i.send(&login_req(
        true,
        0,
        3,
        1,
        1,
        &kv(&[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("AuthMethod", "None"),
        ]),
    ));
    assert_eq!(r[0].status_class(), 0x0201);
    // With CHAP: in, and the normal session to the open target needs none.
    let mut i = Initiator::new(config.clone());
    let discovery = [
        ("InitiatorName", INITIATOR),
        ("SessionType", "Discovery"),
        ("AuthMethod", "CHAP"),
    ];
    let (id, challenge) = offer_chap_with(&mut i, &discovery, "5");
    let response = md5_response(id, SECRET, &challenge);
    let r = i.send(&login_req(
        true,
        0,
        3,
        1,
        1,
        &kv(&[("CHAP_N", USER), ("CHAP_R", &hex(&response))]),
    ));
    assert_eq!(r[0].status_class(), 0, "{:?}", r[0].text());
    assert_eq!(r[0].flags(), 0x83, "discovery goes to full feature phase");
    let mut normal = Initiator::new(config);
    normal.login_normal();
}
