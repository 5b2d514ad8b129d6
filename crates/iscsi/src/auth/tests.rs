//! CHAP exchange and access policy, sans-IO. Expected responses are computed here with the
//! RFC 1994 formula written out (digest of identifier byte, secret, challenge) over the
//! RustCrypto digests directly, or are literal known answers, never by `Algorithm::response`.

use super::chap::{decode_binary, RANDOM_LEN};
use super::*;
use base64::Engine as _;
use rstest::rstest;

const USER: &str = "iqn.2026-11.com.example:client";
const SECRET: &str = "initiator-secret-1";
const TARGET_USER: &str = "iqn.2026-11.com.example:disk1";
const TARGET_SECRET: &str = "target-secret-22";

/// RFC 1994 section 4.1: Response = H(Identifier || secret || Challenge).
fn rfc1994(code: u8, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut input = vec![id];
    input.extend_from_slice(secret);
    input.extend_from_slice(challenge);
    match code {
        5 => md5::Md5::digest(&input).to_vec(),
        6 => sha1::Sha1::digest(&input).to_vec(),
        7 => sha2::Sha256::digest(&input).to_vec(),
        8 => sha3::Sha3_256::digest(&input).to_vec(),
        _ => unreachable!(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("0x{digits}")
}

fn creds(mutual: bool) -> ChapCredentials {
    ChapCredentials {
        initiator: Credential::new(USER, Secret::new(SECRET)).unwrap(),
        target: mutual.then(|| Credential::new(TARGET_USER, Secret::new(TARGET_SECRET)).unwrap()),
    }
}

fn random(id: u8) -> [u8; RANDOM_LEN] {
    let mut r = [0u8; RANDOM_LEN];
    r[0] = id;
    for (i, b) in r[1..].iter_mut().enumerate() {
        *b = 0xa0 ^ i as u8;
    }
    r
}

fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get<'a>(answer: &'a [(String, String)], key: &str) -> &'a str {
    answer
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {answer:?}"))
}

/// Runs CHAP_A and returns (exchange, id, challenge) as the target sent them.
fn challenged(offer: &str, mutual: bool) -> (ChapExchange, u8, Vec<u8>) {
    let mut ex = ChapExchange::new(creds(mutual), random(7));
    let answer = ex.receive(&keys(&[("CHAP_A", offer)])).unwrap();
    let id: u8 = get(&answer, "CHAP_I").parse().unwrap();
    let challenge = decode_binary(get(&answer, "CHAP_C")).unwrap();
    (ex, id, challenge)
}

#[test]
fn known_answers_of_the_four_algorithms() {
    // Computed outside this project: identifier 1, secret "twelve-bytes-secret", challenge
    // 00 01 .. 0f.
    let challenge: Vec<u8> = (0..16).collect();
    let cases = [
        (Algorithm::Md5, "12fe819a8b53aae21a237acd85438be5"),
        (Algorithm::Sha1, "e661fabb327490df8996929b8ee6038478effb40"),
        (
            Algorithm::Sha256,
            "aa5d45bc4cf6fff086b452c364c4b77e91182d7c314707f020281c50cc49e003",
        ),
        (
            Algorithm::Sha3_256,
            "33580ab5a96860be78681e40873314af3677a3dc796cf83ec1d2e5c93dfb556c",
        ),
    ];
    for (algorithm, expected) in cases {
        let r = algorithm.response(1, b"twelve-bytes-secret", &challenge);
        let shown: String = r.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(shown, expected, "{algorithm:?}");
    }
}

#[rstest]
#[case::all("5,6,7,8", 8)]
#[case::all_reversed("8,7,6,5", 8)]
#[case::md5_only("5", 5)]
#[case::sha256_and_md5("5,7", 7)]
#[case::sha1_and_md5("6,5", 6)]
#[case::unknown_values_skipped("99,abc,5", 5)]
#[case::hex_number("0x7", 7)]
fn the_strongest_algorithm_both_sides_have_is_chosen(#[case] offer: &str, #[case] code: u8) {
    let mut ex = ChapExchange::new(creds(false), random(1));
    let answer = ex.receive(&keys(&[("CHAP_A", offer)])).unwrap();
    assert_eq!(get(&answer, "CHAP_A"), code.to_string());
    assert_eq!(ex.algorithm().map(Algorithm::code), Some(code));
}

#[rstest]
#[case::none_known("1,2,3")]
#[case::empty("")]
#[case::garbage("md5")]
fn no_common_algorithm_fails(#[case] offer: &str) {
    let mut ex = ChapExchange::new(creds(false), random(1));
    assert!(matches!(
        ex.receive(&keys(&[("CHAP_A", offer)])),
        Err(ChapError::NoCommonAlgorithm(_))
    ));
    assert_eq!(
        ex.receive(&keys(&[("CHAP_A", "5")])),
        Err(ChapError::Finished)
    );
}

#[rstest]
fn one_way_chap_with_every_algorithm(#[values(5, 6, 7, 8)] code: u8) {
    let (mut ex, id, challenge) = challenged(&code.to_string(), false);
    assert_eq!(id, 7, "the identifier is the first random byte");
    assert!(challenge.len() >= 16, "RFC: at least 16 random bytes");
    assert_eq!(challenge[..], random(7)[1..1 + challenge.len()]);
    let r = rfc1994(code, id, SECRET.as_bytes(), &challenge);
    let answer = ex
        .receive(&keys(&[("CHAP_N", USER), ("CHAP_R", &hex(&r))]))
        .unwrap();
    assert!(answer.is_empty(), "one-way CHAP: nothing to answer");
    assert!(ex.is_done());
}

#[test]
fn a_base64_response_is_accepted() {
    let (mut ex, id, challenge) = challenged("5", false);
    let r = rfc1994(5, id, SECRET.as_bytes(), &challenge);
    let b64 = format!("0b{}", base64::engine::general_purpose::STANDARD.encode(&r));
    ex.receive(&keys(&[("CHAP_N", USER), ("CHAP_R", &b64)]))
        .unwrap();
    assert!(ex.is_done());
}

#[rstest]
fn a_wrong_secret_fails(#[values(5, 6, 7, 8)] code: u8) {
    let (mut ex, id, challenge) = challenged(&code.to_string(), false);
    let r = rfc1994(code, id, b"not-the-secret-at-all", &challenge);
    assert_eq!(
        ex.receive(&keys(&[("CHAP_N", USER), ("CHAP_R", &hex(&r))])),
        Err(ChapError::BadResponse)
    );
    assert!(!ex.is_done());
}

#[test]
fn a_response_for_another_algorithm_or_identifier_fails() {
    let (mut ex, id, challenge) = challenged("7", false);
    let md5 = rfc1994(5, id, SECRET.as_bytes(), &challenge);
    assert_eq!(
        ex.receive(&keys(&[("CHAP_N", USER), ("CHAP_R", &hex(&md5))])),
        Err(ChapError::BadResponse)
    );
    let (mut ex, id, challenge) = challenged("7", false);
    let other_id = rfc1994(7, id.wrapping_add(1), SECRET.as_bytes(), &challenge);
    assert_eq!(
        ex.receive(&keys(&[("CHAP_N", USER), ("CHAP_R", &hex(&other_id))])),
        Err(ChapError::BadResponse)
    );
}

#[test]
fn another_user_fails() {
    let (mut ex, id, challenge) = challenged("5", false);
    let r = rfc1994(5, id, SECRET.as_bytes(), &challenge);
    assert!(matches!(
        ex.receive(&keys(&[("CHAP_N", "someone-else"), ("CHAP_R", &hex(&r))])),
        Err(ChapError::UnknownUser(_))
    ));
}

#[rstest]
#[case::missing_response(&[("CHAP_N", USER)])]
#[case::missing_name(&[("CHAP_R", "0x00")])]
#[case::not_binary(&[("CHAP_N", USER), ("CHAP_R", "00ff")])]
#[case::bad_hex(&[("CHAP_N", USER), ("CHAP_R", "0xzz")])]
#[case::algorithm_again(&[("CHAP_A", "5")])]
#[case::unknown_key(&[("CHAP_N", USER), ("CHAP_R", "0x00"), ("CHAP_X", "1")])]
#[case::twice(&[("CHAP_N", USER), ("CHAP_N", USER), ("CHAP_R", "0x00")])]
#[case::mutual_half(&[("CHAP_N", USER), ("CHAP_R", "0x00"), ("CHAP_I", "1")])]
fn malformed_responses_fail(#[case] pairs: &[(&str, &str)]) {
    let (mut ex, _, _) = challenged("5", true);
    assert!(ex.receive(&keys(pairs)).is_err());
    assert!(!ex.is_done());
}

#[test]
fn a_response_before_the_algorithm_fails() {
    let mut ex = ChapExchange::new(creds(false), random(1));
    assert!(matches!(
        ex.receive(&keys(&[("CHAP_N", USER), ("CHAP_R", "0x00")])),
        Err(ChapError::UnexpectedKey(_))
    ));
}

#[rstest]
fn mutual_chap_answers_with_the_target_secret(#[values(5, 6, 7, 8)] code: u8) {
    let (mut ex, id, challenge) = challenged(&code.to_string(), true);
    let r = rfc1994(code, id, SECRET.as_bytes(), &challenge);
    let their_challenge: Vec<u8> = (100..132).collect();
    let answer = ex
        .receive(&keys(&[
            ("CHAP_N", USER),
            ("CHAP_R", &hex(&r)),
            ("CHAP_I", "42"),
            ("CHAP_C", &hex(&their_challenge)),
        ]))
        .unwrap();
    assert!(ex.is_done());
    assert_eq!(get(&answer, "CHAP_N"), TARGET_USER);
    let expected = rfc1994(code, 42, TARGET_SECRET.as_bytes(), &their_challenge);
    assert_eq!(decode_binary(get(&answer, "CHAP_R")).unwrap(), expected);
}

#[test]
fn a_reflected_challenge_is_refused() {
    let (mut ex, id, challenge) = challenged("5", true);
    let r = rfc1994(5, id, SECRET.as_bytes(), &challenge);
    // The initiator sends our own challenge back, hoping we compute a response for it.
    assert_eq!(
        ex.receive(&keys(&[
            ("CHAP_N", USER),
            ("CHAP_R", &hex(&r)),
            ("CHAP_I", &id.to_string()),
            ("CHAP_C", &hex(&challenge)),
        ])),
        Err(ChapError::ReflectedChallenge)
    );
}

#[test]
fn mutual_chap_without_target_credentials_fails() {
    let (mut ex, id, challenge) = challenged("5", false);
    let r = rfc1994(5, id, SECRET.as_bytes(), &challenge);
    assert_eq!(
        ex.receive(&keys(&[
            ("CHAP_N", USER),
            ("CHAP_R", &hex(&r)),
            ("CHAP_I", "1"),
            ("CHAP_C", "0x0102030405060708090a0b0c0d0e0f10"),
        ])),
        Err(ChapError::MutualNotConfigured)
    );
}

#[test]
fn binary_values_follow_rfc_7143_5_1() {
    assert_eq!(decode_binary("0x0aFF"), Some(vec![0x0a, 0xff]));
    assert_eq!(
        decode_binary("0XabC"),
        Some(vec![0x0a, 0xbc]),
        "odd: leading zero"
    );
    assert_eq!(decode_binary("0bAQID"), Some(vec![1, 2, 3]));
    assert_eq!(decode_binary("0x"), None);
    assert_eq!(decode_binary("12"), None);
    assert_eq!(decode_binary("0bA"), None);
    let too_long = format!("0x{}", "00".repeat(1025));
    assert_eq!(decode_binary(&too_long), None, "over 1024 bytes");
    let max = format!("0x{}", "00".repeat(1024));
    assert_eq!(decode_binary(&max).map(|v| v.len()), Some(1024));
}

// ---- configuration rules --------------------------------------------------------------

#[test]
fn secrets_shorter_than_12_bytes_are_refused() {
    let err = Credential::new("user", Secret::new("eleven-byte")).unwrap_err();
    assert!(matches!(err, PolicyError::SecretLength { len: 11, .. }));
    assert!(!err.to_string().contains("eleven-byte"), "{err}");
    assert!(Credential::new("user", Secret::new("twelve-bytes")).is_ok());
    assert!(Credential::new("", Secret::new("twelve-bytes")).is_err());
}

#[test]
fn one_secret_in_both_directions_is_refused() {
    let same = ChapCredentials {
        initiator: Credential::new("a", Secret::new("shared-secret-1")).unwrap(),
        target: Some(Credential::new("b", Secret::new("shared-secret-1")).unwrap()),
    };
    let mut policy = AccessPolicy::new();
    let err = policy
        .set_target(
            "iqn.2026-11.x:t",
            TargetAccess {
                chap: Some(same),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, PolicyError::SecretInBothDirections(_)));
    assert!(
        policy.target("iqn.2026-11.x:t").is_none(),
        "refused change left no trace"
    );
}

#[test]
fn debug_output_of_a_policy_shows_no_secret() {
    let mut policy = AccessPolicy::new();
    policy
        .set_target(
            "iqn.2026-11.x:t",
            TargetAccess {
                chap: Some(creds(true)),
                ..Default::default()
            },
        )
        .unwrap();
    let shown = format!("{policy:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains(TARGET_SECRET),
        "{shown}"
    );
}

// ---- access decisions -------------------------------------------------------------------

const T: &str = "iqn.2026-11.com.example:disk1";
const ALICE: &str = "iqn.2026-11.com.example:alice";
const BOB: &str = "iqn.2026-11.com.example:bob";

fn ip(s: &str) -> Option<core::net::IpAddr> {
    Some(s.parse().unwrap())
}

fn entry(initiator: Option<&str>, networks: &[&str]) -> AclEntry {
    AclEntry {
        initiator: initiator.map(str::to_string),
        networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
        chap: None,
    }
}

#[test]
fn targets_without_rules_are_open() {
    let policy = AccessPolicy::new();
    assert_eq!(policy.check(T, ALICE, None), Access::Granted(None));
}

#[test]
fn acl_by_initiator_name() {
    let mut policy = AccessPolicy::new();
    policy
        .set_target(
            T,
            TargetAccess {
                acl: vec![entry(Some(ALICE), &[])],
                chap: None,
            },
        )
        .unwrap();
    assert_eq!(
        policy.check(T, ALICE, ip("192.0.2.1")),
        Access::Granted(None)
    );
    assert_eq!(
        policy.check(T, &ALICE.to_uppercase(), None),
        Access::Granted(None),
        "iSCSI names compare without case"
    );
    assert_eq!(policy.check(T, BOB, ip("192.0.2.1")), Access::Denied);
    assert_eq!(policy.allowed_targets(ALICE, None), vec![T]);
    assert!(policy.allowed_targets(BOB, None).is_empty());
    policy.add_acl_entry(T, entry(Some(BOB), &[])).unwrap();
    assert_eq!(policy.check(T, BOB, None), Access::Granted(None));
    assert_eq!(policy.remove_acl_entry(T, ALICE), Ok(1));
    assert_eq!(policy.check(T, ALICE, None), Access::Denied);
    assert!(policy
        .add_acl_entry("iqn.2026-11.x:none", entry(None, &[]))
        .is_err());
}

#[rstest]
#[case::v4_inside("192.0.2.77", true)]
#[case::v4_outside("198.51.100.1", false)]
#[case::v4_mapped_v6_inside("::ffff:192.0.2.77", true)]
#[case::v6_inside("2001:db8:1::5", true)]
#[case::v6_outside("2001:db8:2::5", false)]
fn acl_by_source_network(#[case] addr: &str, #[case] admitted: bool) {
    let mut policy = AccessPolicy::new();
    policy
        .set_target(
            T,
            TargetAccess {
                acl: vec![entry(None, &["192.0.2.0/24", "2001:db8:1::/48"])],
                chap: None,
            },
        )
        .unwrap();
    assert_eq!(policy.check(T, ALICE, ip(addr)) != Access::Denied, admitted);
    assert_eq!(
        policy.check(T, ALICE, None),
        Access::Denied,
        "unknown address"
    );
}

#[test]
fn name_and_network_must_both_match() {
    let mut policy = AccessPolicy::new();
    policy
        .set_target(
            T,
            TargetAccess {
                acl: vec![entry(Some(ALICE), &["10.0.0.0/8"])],
                chap: None,
            },
        )
        .unwrap();
    assert_ne!(policy.check(T, ALICE, ip("10.1.2.3")), Access::Denied);
    assert_eq!(policy.check(T, ALICE, ip("192.0.2.1")), Access::Denied);
    assert_eq!(policy.check(T, BOB, ip("10.1.2.3")), Access::Denied);
}

#[test]
fn entry_credentials_win_over_the_targets() {
    let target_chap = creds(false);
    let alice_chap = ChapCredentials {
        initiator: Credential::new("alice", Secret::new("alice-secret-123")).unwrap(),
        target: None,
    };
    let mut alice = entry(Some(ALICE), &[]);
    alice.chap = Some(alice_chap.clone());
    let mut policy = AccessPolicy::new();
    policy
        .set_target(
            T,
            TargetAccess {
                acl: vec![alice, entry(Some(BOB), &[])],
                chap: Some(target_chap.clone()),
            },
        )
        .unwrap();
    assert_eq!(
        policy.check(T, ALICE, None),
        Access::Granted(Some(alice_chap))
    );
    assert_eq!(
        policy.check(T, BOB, None),
        Access::Granted(Some(target_chap))
    );
}

#[test]
fn discovery_has_its_own_credentials() {
    let mut policy = AccessPolicy::new();
    assert_eq!(policy.check_discovery(ALICE, None), Access::Granted(None));
    policy.set_discovery_chap(Some(creds(false))).unwrap();
    assert_eq!(
        policy.check_discovery(ALICE, None),
        Access::Granted(Some(creds(false)))
    );
    assert_eq!(policy.check(T, ALICE, None), Access::Granted(None));
}
