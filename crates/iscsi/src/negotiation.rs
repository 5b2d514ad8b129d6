//! Operational key negotiation (RFC 7143 sections 6.2 and 13).
//!
//! Keys are either declarative (each side states its own value, no answer) or negotiated
//! (the responder answers with the result). Negotiated results follow the key's function:
//! boolean AND / OR, numerical minimum / maximum, or a list where the responder picks the
//! first offered value it supports. Unknown keys are answered `NotUnderstood`, keys that do
//! not apply to the session type `Irrelevant`, and malformed or out-of-range values `Reject`.

use crate::pdu::Digests;
use crate::{Limits, SessionType};
use std::collections::HashSet;

/// Operational parameters in force once login completes (RFC defaults until negotiated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Digests in use in full feature phase (CRC32C or none, each negotiated).
    pub digests: Digests,
    /// MaxRecvDataSegmentLength the initiator declared: the largest data segment we may send.
    pub initiator_max_recv_data_segment_length: u32,
    /// MaxRecvDataSegmentLength we declared: the largest data segment we accept.
    pub target_max_recv_data_segment_length: u32,
    /// Negotiated MaxBurstLength.
    pub max_burst_length: u32,
    /// Negotiated FirstBurstLength (never above `max_burst_length`).
    pub first_burst_length: u32,
    /// Negotiated MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// Negotiated ImmediateData.
    pub immediate_data: bool,
    /// Negotiated InitialR2T.
    pub initial_r2t: bool,
    /// Negotiated MaxConnections (always 1).
    pub max_connections: u32,
    /// Negotiated DefaultTime2Wait.
    pub default_time2wait: u32,
    /// Negotiated DefaultTime2Retain.
    pub default_time2retain: u32,
    /// Negotiated ErrorRecoveryLevel (always 0).
    pub error_recovery_level: u32,
    /// Negotiated DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// Negotiated DataSequenceInOrder.
    pub data_sequence_in_order: bool,
}

impl Params {
    /// RFC 7143 defaults, with our declared receive limit from `limits`.
    pub fn defaults(limits: &Limits) -> Self {
        Params {
            digests: Digests::default(),
            initiator_max_recv_data_segment_length: 8192,
            target_max_recv_data_segment_length: clamp_mrdsl(limits.max_recv_data_segment_length),
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            max_outstanding_r2t: 1,
            immediate_data: true,
            initial_r2t: true,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
            error_recovery_level: 0,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
        }
    }
}

/// Clamps a data segment / burst length to the legal 512..=2^24-1 range.
pub fn clamp_mrdsl(v: u32) -> u32 {
    v.clamp(512, 16_777_215)
}

/// What to do with one offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Answer `key=value`.
    Respond(String),
    /// Declarative or a response to us: no answer.
    NoResponse,
    /// The key was offered twice in one negotiation: an initiator error ending the login.
    Duplicate,
}

/// The target's side of one negotiation (a login, or a Text exchange).
#[derive(Debug, Clone)]
pub struct Negotiator {
    /// Result so far.
    pub params: Params,
    limits: Limits,
    seen: HashSet<String>,
    /// Keys we proposed ourselves whose answer has not come yet.
    proposed: Vec<&'static str>,
    /// FirstBurstLength agreed before MaxBurstLength is final (see [`Negotiator::settle`]).
    first_burst_offer: Option<u32>,
}

/// Keys the target proposes itself in the operational stage of a normal session when the
/// initiator did not offer them, so that the session runs with immediate data, unsolicited
/// data and bursts of our size instead of the RFC defaults (InitialR2T=Yes, 256 KiB / 64 KiB).
pub const PROPOSED_KEYS: [&str; 4] = [
    "InitialR2T",
    "ImmediateData",
    "MaxBurstLength",
    "FirstBurstLength",
];

/// Parses an RFC 7143 numerical value (5.1: decimal, or hex after `0x` or `0X`); the one
/// parser of the grammar (negotiation and CHAP alike).
pub fn parse_number(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if h.is_empty() || h.len() > 16 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(h, 16).ok()
    } else {
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_string()
}

/// Keys irrelevant in a discovery session (RFC 7143 section 13, "Irrelevant when").
const IRRELEVANT_IN_DISCOVERY: &[&str] = &[
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "MaxBurstLength",
    "FirstBurstLength",
    "MaxOutstandingR2T",
    "DataPDUInOrder",
    "DataSequenceInOrder",
];

/// Values an offer may carry only as an answer to a key we proposed.
fn is_answer_value(v: &str) -> bool {
    matches!(v, "NotUnderstood" | "Irrelevant" | "Reject")
}

impl Negotiator {
    /// Starts with RFC defaults and our `limits` as the target's preferences.
    pub fn new(limits: &Limits) -> Self {
        Negotiator {
            params: Params::defaults(limits),
            limits: limits.clone(),
            seen: HashSet::new(),
            proposed: Vec::new(),
            first_burst_offer: None,
        }
    }

    /// Our own offers for the [`PROPOSED_KEYS`] the initiator has not negotiated yet
    /// (normal sessions only). Each is then awaited as an answer: see
    /// [`Negotiator::awaiting_answers`].
    pub fn propose(&mut self, session_type: SessionType) -> Vec<(&'static str, String)> {
        if session_type != SessionType::Normal {
            return Vec::new();
        }
        let l = &self.limits;
        let mbl = clamp_mrdsl(l.max_burst_length);
        let mut out = Vec::new();
        for key in PROPOSED_KEYS {
            if self.seen.contains(key) {
                continue;
            }
            let value = match key {
                "InitialR2T" => yes_no(l.initial_r2t),
                "ImmediateData" => yes_no(l.immediate_data),
                "MaxBurstLength" => mbl.to_string(),
                _ => clamp_mrdsl(l.first_burst_length).min(mbl).to_string(),
            };
            self.seen.insert(key.to_string());
            self.proposed.push(key);
            out.push((key, value));
        }
        out
    }

    /// True when [`Negotiator::propose`] would offer something: a normal session in which
    /// the initiator has not negotiated all of the [`PROPOSED_KEYS`].
    pub fn has_proposals(&self, session_type: SessionType) -> bool {
        session_type == SessionType::Normal && PROPOSED_KEYS.iter().any(|k| !self.seen.contains(*k))
    }

    /// True while a key we proposed has not been answered: the target may not leave the
    /// stage (RFC 7143 6.2: a negotiation is complete only when both sides have answered).
    pub fn awaiting_answers(&self) -> bool {
        !self.proposed.is_empty()
    }

    /// Applies the initiator's answer to one of our proposals.
    fn answer(&mut self, key: &str, value: &str) -> KeyOutcome {
        self.proposed.retain(|k| *k != key);
        let l = &self.limits;
        let p = &mut self.params;
        // NotUnderstood / Reject / Irrelevant or a malformed answer: the RFC default stays.
        match key {
            "InitialR2T" => {
                if let Some(b) = parse_bool(value) {
                    p.initial_r2t = b || l.initial_r2t;
                }
            }
            "ImmediateData" => {
                if let Some(b) = parse_bool(value) {
                    p.immediate_data = b && l.immediate_data;
                }
            }
            "MaxBurstLength" => {
                if let Some(n) = parse_number(value).filter(|n| (512..=16_777_215).contains(n)) {
                    p.max_burst_length = (n as u32).min(clamp_mrdsl(l.max_burst_length));
                }
            }
            "FirstBurstLength" => {
                if let Some(n) = parse_number(value).filter(|n| (512..=16_777_215).contains(n)) {
                    self.first_burst_offer =
                        Some((n as u32).min(clamp_mrdsl(l.first_burst_length)));
                }
            }
            _ => {}
        }
        self.settle();
        KeyOutcome::NoResponse
    }

    /// Makes FirstBurstLength final once every key of a request is processed: the agreed
    /// value, never above the negotiated MaxBurstLength (RFC 7143 13.14), whatever order the
    /// two keys came in. The login answers FirstBurstLength with this value.
    pub fn settle(&mut self) {
        let p = &mut self.params;
        p.first_burst_length = match self.first_burst_offer {
            Some(f) => f.min(p.max_burst_length),
            None => p.first_burst_length.min(p.max_burst_length),
        };
    }

    /// Answers one operational key offered by the initiator.
    pub fn offer(&mut self, key: &str, value: &str, session_type: SessionType) -> KeyOutcome {
        if self.proposed.contains(&key) {
            return self.answer(key, value);
        }
        if is_answer_value(value) {
            return KeyOutcome::NoResponse;
        }
        if !self.seen.insert(key.to_string()) {
            return KeyOutcome::Duplicate;
        }
        if session_type == SessionType::Discovery && IRRELEVANT_IN_DISCOVERY.contains(&key) {
            return KeyOutcome::Respond("Irrelevant".into());
        }
        let reject = || KeyOutcome::Respond("Reject".into());
        let p = &mut self.params;
        let l = &self.limits;
        match key {
            "HeaderDigest" | "DataDigest" => {
                let required = session_type == SessionType::Normal
                    && if key == "HeaderDigest" {
                        l.require_digests.header
                    } else {
                        l.require_digests.data
                    };
                // List negotiation: the first offered value we support (RFC 7143 6.2.1);
                // only CRC32C when the operator requires the digest (the login then fails
                // if it is not offered: see `missing_required_digest`).
                let supported = |v: &&str| *v == "CRC32C" || (!required && *v == "None");
                let Some(pick) = value.split(',').find(supported) else {
                    return reject();
                };
                let crc = pick == "CRC32C";
                if key == "HeaderDigest" {
                    p.digests.header = crc;
                } else {
                    p.digests.data = crc;
                }
                KeyOutcome::Respond(pick.into())
            }
            "MaxRecvDataSegmentLength" => match parse_number(value) {
                Some(n) if (512..=16_777_215).contains(&n) => {
                    p.initiator_max_recv_data_segment_length = n as u32;
                    KeyOutcome::NoResponse
                }
                _ => reject(),
            },
            "MaxConnections" => self.numeric(key, value, 1, 65_535, 1, min),
            "InitialR2T" => match parse_bool(value) {
                Some(b) => {
                    p.initial_r2t = b || l.initial_r2t;
                    KeyOutcome::Respond(yes_no(p.initial_r2t))
                }
                None => reject(),
            },
            "ImmediateData" => match parse_bool(value) {
                Some(b) => {
                    p.immediate_data = b && l.immediate_data;
                    KeyOutcome::Respond(yes_no(p.immediate_data))
                }
                None => reject(),
            },
            "DataPDUInOrder" | "DataSequenceInOrder" => match parse_bool(value) {
                // Boolean OR with our Yes: always Yes.
                Some(_) => KeyOutcome::Respond("Yes".into()),
                None => reject(),
            },
            "MaxBurstLength" => {
                let ours = clamp_mrdsl(l.max_burst_length);
                self.numeric(key, value, 512, 16_777_215, ours, min)
            }
            "FirstBurstLength" => {
                let ours = clamp_mrdsl(l.first_burst_length).min(self.params.max_burst_length);
                self.numeric(key, value, 512, 16_777_215, ours, min)
            }
            "MaxOutstandingR2T" => {
                let ours = l.max_outstanding_r2t.clamp(1, 65_535);
                self.numeric(key, value, 1, 65_535, ours, min)
            }
            "DefaultTime2Wait" => self.numeric(key, value, 0, 3600, 2, max),
            "DefaultTime2Retain" => self.numeric(key, value, 0, 3600, 20, min),
            "ErrorRecoveryLevel" => self.numeric(key, value, 0, 2, 0, min),
            "IFMarker" | "OFMarker" => match parse_bool(value) {
                Some(_) => KeyOutcome::Respond("No".into()),
                None => reject(),
            },
            "IFMarkInt" | "OFMarkInt" => KeyOutcome::Respond("Irrelevant".into()),
            _ => KeyOutcome::Respond("NotUnderstood".into()),
        }
    }

    /// The first digest the limits require (`Limits::require_digests`) that this
    /// negotiation has not turned on, for a normal session; `None` when all are on. A login
    /// must not reach full feature phase while one is missing.
    pub fn missing_required_digest(&self, session_type: SessionType) -> Option<&'static str> {
        let (required, on) = (self.limits.require_digests, self.params.digests);
        if session_type != SessionType::Normal {
            None
        } else if required.header && !on.header {
            Some("HeaderDigest")
        } else if required.data && !on.data {
            Some("DataDigest")
        } else {
            None
        }
    }

    /// Whether the initiator offered `key` in this negotiation.
    pub fn offered(&self, key: &str) -> bool {
        self.seen.contains(key)
    }

    fn numeric(
        &mut self,
        key: &str,
        value: &str,
        lo: u64,
        hi: u64,
        ours: u32,
        f: fn(u64, u64) -> u64,
    ) -> KeyOutcome {
        let Some(n) = parse_number(value).filter(|n| (lo..=hi).contains(n)) else {
            return KeyOutcome::Respond("Reject".into());
        };
        let r = f(n, ours as u64) as u32;
        let p = &mut self.params;
        match key {
            "MaxConnections" => p.max_connections = r,
            "MaxBurstLength" => {
                p.max_burst_length = r;
                p.first_burst_length = p.first_burst_length.min(r);
            }
            "FirstBurstLength" => {
                self.first_burst_offer = Some(r);
                p.first_burst_length = r.min(p.max_burst_length);
            }
            "MaxOutstandingR2T" => p.max_outstanding_r2t = r,
            "DefaultTime2Wait" => p.default_time2wait = r,
            "DefaultTime2Retain" => p.default_time2retain = r,
            "ErrorRecoveryLevel" => p.error_recovery_level = r,
            _ => {}
        }
        KeyOutcome::Respond(r.to_string())
    }
}

fn min(a: u64, b: u64) -> u64 {
    a.min(b)
}
fn max(a: u64, b: u64) -> u64 {
    a.max(b)
}
