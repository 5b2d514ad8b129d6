//! Negotiation rules (RFC 7143 6.2 and 13) as case tables.

use crate::negotiation::{parse_number, KeyOutcome, Negotiator};
use crate::{Limits, SessionType};
use rstest::rstest;

fn answer(limits: &Limits, key: &str, value: &str) -> KeyOutcome {
    Negotiator::new(limits).offer(key, value, SessionType::Normal)
}

fn respond(s: &str) -> KeyOutcome {
    KeyOutcome::Respond(s.to_string())
}

#[rstest]
// Boolean AND: ImmediateData (ours Yes by default).
#[case("ImmediateData", "Yes", "Yes")]
#[case("ImmediateData", "No", "No")]
// Boolean OR: InitialR2T (ours No by default).
#[case("InitialR2T", "No", "No")]
#[case("InitialR2T", "Yes", "Yes")]
// OR with our Yes.
#[case("DataPDUInOrder", "No", "Yes")]
#[case("DataSequenceInOrder", "No", "Yes")]
// Numerical minimum.
#[case("MaxBurstLength", "65536", "65536")]
#[case("MaxBurstLength", "16777215", "1048576")]
#[case("MaxBurstLength", "0x10000", "65536")]
#[case("FirstBurstLength", "1048576", "262144")]
#[case("MaxOutstandingR2T", "8", "4")]
#[case("MaxOutstandingR2T", "2", "2")]
#[case("ErrorRecoveryLevel", "2", "0")]
#[case("MaxConnections", "4", "1")]
#[case("DefaultTime2Retain", "0", "0")]
#[case("DefaultTime2Retain", "60", "20")]
// Numerical maximum.
#[case("DefaultTime2Wait", "0", "2")]
#[case("DefaultTime2Wait", "10", "10")]
// List: first supported offered value.
#[case("HeaderDigest", "CRC32C,None", "CRC32C")]
#[case("HeaderDigest", "None,CRC32C", "None")]
#[case("DataDigest", "None", "None")]
#[case("DataDigest", "CRC32C", "CRC32C")]
#[case("HeaderDigest", "X-vendor,CRC32C", "CRC32C")]
#[case("HeaderDigest", "MD5", "Reject")]
// Out of range or malformed values.
#[case("MaxBurstLength", "511", "Reject")]
#[case("MaxBurstLength", "16777216", "Reject")]
#[case("MaxBurstLength", "12ab", "Reject")]
#[case("MaxOutstandingR2T", "0", "Reject")]
#[case("ErrorRecoveryLevel", "3", "Reject")]
#[case("DefaultTime2Wait", "3601", "Reject")]
#[case("ImmediateData", "yes", "Reject")]
// Markers (RFC 3720 keys) are always No; their intervals irrelevant.
#[case("OFMarker", "Yes", "No")]
#[case("IFMarkInt", "2048~8192", "Irrelevant")]
// Unknown and vendor keys.
#[case("X-com.example.Thing", "1", "NotUnderstood")]
#[case("SomethingNew", "1", "NotUnderstood")]
fn negotiated_key(#[case] key: &str, #[case] offer: &str, #[case] expected: &str) {
    assert_eq!(answer(&Limits::default(), key, offer), respond(expected));
}

#[test]
fn declarative_mrdsl_has_no_answer_and_is_recorded() {
    let mut n = Negotiator::new(&Limits::default());
    assert_eq!(
        n.offer("MaxRecvDataSegmentLength", "4096", SessionType::Normal),
        KeyOutcome::NoResponse
    );
    assert_eq!(n.params.initiator_max_recv_data_segment_length, 4096);
    assert_eq!(n.params.target_max_recv_data_segment_length, 262_144);
    let mut n = Negotiator::new(&Limits::default());
    assert_eq!(
        n.offer("MaxRecvDataSegmentLength", "100", SessionType::Normal),
        respond("Reject")
    );
}

#[test]
fn first_burst_never_exceeds_max_burst() {
    let mut n = Negotiator::new(&Limits::default());
    assert_eq!(
        n.offer("MaxBurstLength", "16384", SessionType::Normal),
        respond("16384")
    );
    assert_eq!(
        n.offer("FirstBurstLength", "65536", SessionType::Normal),
        respond("16384")
    );
    assert_eq!(n.params.first_burst_length, 16384);
}

#[test]
fn target_limits_bound_the_answers() {
    let limits = Limits {
        immediate_data: false,
        initial_r2t: true,
        max_burst_length: 65536,
        ..Limits::default()
    };
    assert_eq!(answer(&limits, "ImmediateData", "Yes"), respond("No"));
    assert_eq!(answer(&limits, "InitialR2T", "No"), respond("Yes"));
    assert_eq!(
        answer(&limits, "MaxBurstLength", "262144"),
        respond("65536")
    );
}

#[test]
fn duplicate_and_answer_values() {
    let mut n = Negotiator::new(&Limits::default());
    assert_eq!(
        n.offer("InitialR2T", "No", SessionType::Normal),
        respond("No")
    );
    assert_eq!(
        n.offer("InitialR2T", "No", SessionType::Normal),
        KeyOutcome::Duplicate
    );
    assert_eq!(
        n.offer("Foo", "NotUnderstood", SessionType::Normal),
        KeyOutcome::NoResponse
    );
}

#[rstest]
#[case("MaxConnections")]
#[case("InitialR2T")]
#[case("ImmediateData")]
#[case("MaxBurstLength")]
#[case("FirstBurstLength")]
#[case("MaxOutstandingR2T")]
#[case("DataPDUInOrder")]
#[case("DataSequenceInOrder")]
fn irrelevant_in_discovery(#[case] key: &str) {
    let mut n = Negotiator::new(&Limits::default());
    assert_eq!(
        n.offer(key, "1", SessionType::Discovery),
        respond("Irrelevant")
    );
}

#[rstest]
#[case("0", Some(0))]
#[case("8192", Some(8192))]
#[case("0x2000", Some(8192))]
#[case("0X1f", Some(31))]
#[case("", None)]
#[case("0x", None)]
#[case("0x+1f", None)]
#[case("+5", None)]
#[case("-1", None)]
#[case("1e3", None)]
#[case("99999999999999999999999", None)]
fn numbers(#[case] s: &str, #[case] n: Option<u64>) {
    assert_eq!(parse_number(s), n);
}
