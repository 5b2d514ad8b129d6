//! The fuzz entry points, one function per target, shared by the cargo-fuzz binaries in
//! `fuzz/` (nightly, coverage-guided: `cargo xtask fuzz`) and by `tests/corpus.rs`, which
//! replays the corpus checked in under `testdata/fuzz/<target>/` on stable, so CI runs every
//! seed and every crash ever found through the same code.
//!
//! Each entry point takes arbitrary bytes, drives one protocol core with them and checks the
//! properties any answer must keep (a panic is a finding). They allocate what the input
//! asks for, bounded: nothing here may make the cores hold more than their limits allow.
//!
//! | target       | drives                                                          |
//! |--------------|-----------------------------------------------------------------|
//! | `pdu`        | `iscsi::pdu::check` / `decode` / `parse_ahs`, `Bhs` accessors    |
//! | `login_text` | `iscsi::text::parse`, `negotiation::Negotiator`                  |
//! | `chap`       | `iscsi::auth::ChapExchange` (target side, one-way and mutual)    |
//! | `connection` | `iscsi::Connection`: login, full feature phase, timers, answers  |
//! | `scsi`       | `scsi::ScsiTarget` CDB decode and dispatch on the memory store   |

#![forbid(unsafe_code)]

use bytes::{Bytes, BytesMut};
use iscsi::auth::chap::{decode_binary, encode_hex, RANDOM_LEN};
use iscsi::auth::{Algorithm, ChapCredentials, ChapExchange, Credential, Secret};
use iscsi::negotiation::{KeyOutcome, Negotiator};
use iscsi::pdu::{self, Digests, FrameLimits, BHS_LEN};
use iscsi::{CommandResponse, Config, Connection, Event, Limits, SessionType, TargetInfo};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fuzz entry point.
pub type EntryPoint = fn(&[u8]);

/// The targets, by name (the names of `fuzz/fuzz_targets/*.rs` and `testdata/fuzz/*`).
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("pdu", pdu),
    ("login_text", login_text),
    ("chap", chap),
    ("connection", connection),
    ("scsi", scsi),
];

/// The target IQN the `connection` target serves (seeds log in to it).
pub const TARGET_NAME: &str = "iqn.2026-11.com.example:fuzz";

/// PDU framing. The first byte picks the receive limits (digests, a small or large
/// MaxRecvDataSegmentLength); the rest is a receive buffer split PDU by PDU.
pub fn pdu(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let limits = FrameLimits {
        max_data_segment: if mode & 4 != 0 { 8192 } else { 262_144 },
        digests: Digests {
            header: mode & 1 != 0,
            data: mode & 2 != 0,
        },
    };
    let mut buf = BytesMut::from(stream);
    loop {
        let before = buf.len();
        let probe = pdu::check(&buf, &limits);
        match pdu::decode(&mut buf, &limits) {
            Ok(Some(p)) => {
                let consumed = before - buf.len();
                assert_eq!(probe, Ok(Some(consumed)), "check and decode disagree");
                assert!(consumed >= BHS_LEN + p.ahs.len() + p.data.len());
                assert_eq!(p.data.len() as u32, p.bhs.data_segment_len());
                assert!(p.data.len() as u32 <= limits.max_data_segment);
                assert_eq!(&p.raw_bhs[..], &p.bhs.0[..]);
                assert_eq!(p.ahs.len(), p.bhs.total_ahs_len());
                if let Ok(segments) = pdu::parse_ahs(p.ahs.clone()) {
                    let total: usize = segments
                        .iter()
                        .map(|s| pdu::pad4(3 + s.specific.len()))
                        .sum();
                    assert_eq!(total, p.ahs.len(), "AHS segments must tile the AHS area");
                }
                // Our own encoder frames the same header and data into as many bytes,
                // with the same header and data where they land.
                if p.ahs.is_empty() {
                    let mut again = BytesMut::new();
                    pdu::encode_with(&mut again, &p.bhs, &p.data, limits.digests);
                    let start = stream.len() - before;
                    let frame = &stream[start..start + consumed];
                    assert_eq!(again.len(), consumed);
                    assert_eq!(&again[..BHS_LEN], &frame[..BHS_LEN]);
                    let at = BHS_LEN + if limits.digests.header { 4 } else { 0 };
                    assert_eq!(&again[at..at + p.data.len()], &frame[at..at + p.data.len()]);
                }
            }
            Ok(None) => {
                assert!(matches!(probe, Ok(None)));
                assert_eq!(buf.len(), before, "an incomplete PDU must be left in place");
                return;
            }
            Err(e) => {
                // A header error is found by `check` already, a digest error only by decode.
                assert!(probe.is_err() || matches!(e, iscsi::ProtocolError::HeaderDigest { .. }));
                return;
            }
        }
    }
}

/// Login and Text key=value parsing, then operational negotiation of every key as a normal
/// and as a discovery session, checking the negotiated parameters stay within RFC 7143
/// section 13 and our limits.
pub fn login_text(data: &[u8]) {
    let Ok(pairs) = iscsi::text::parse(data) else {
        return;
    };
    // What we encode parses back to the same pairs.
    let encoded = iscsi::text::encode(&pairs);
    assert_eq!(iscsi::text::parse(&encoded).as_ref(), Ok(&pairs));
    let limits = Limits::default();
    for session_type in [SessionType::Normal, SessionType::Discovery] {
        let mut n = Negotiator::new(&limits);
        let proposed = n.propose(session_type);
        assert_eq!(proposed.is_empty(), session_type == SessionType::Discovery);
        for (k, v) in &pairs {
            if let KeyOutcome::Respond(answer) = n.offer(k, v, session_type) {
                assert!(!answer.is_empty() && answer.len() <= 255, "{k}={answer}");
                assert!(!answer.contains('\0'));
            }
        }
        n.settle();
        let p = &n.params;
        assert!(p.first_burst_length <= p.max_burst_length, "{p:?}");
        assert!(
            (512..=limits.max_burst_length).contains(&p.max_burst_length),
            "{p:?}"
        );
        assert!(p.first_burst_length >= 512, "{p:?}");
        assert!((512..16_777_216).contains(&p.initiator_max_recv_data_segment_length));
        assert!((1..=limits.max_outstanding_r2t).contains(&p.max_outstanding_r2t));
        assert_eq!(p.error_recovery_level, 0);
        assert_eq!(p.max_connections, 1);
        assert!(p.initial_r2t || !limits.initial_r2t);
        assert!(!p.immediate_data || limits.immediate_data);
    }
}

/// The initiator the `connection` target's ACL admits (with CHAP, mode bit 7).
pub const CHAP_INITIATOR: &str = "iqn.2026-11.com.example:seed-initiator";

/// The secret the `chap` target's initiator proves (CHAP_N `fuzz-user`).
pub const CHAP_INITIATOR_SECRET: &[u8] = b"initiator-secret-0123";
/// The secret the target answers a mutual challenge with (CHAP_N `fuzz-target`).
pub const CHAP_TARGET_SECRET: &[u8] = b"target-secret-4567890";

/// The target side of a CHAP exchange. The input is login requests separated by 0xff bytes
/// (never in UTF-8 text), each a key=value list. Two placeholders let the fuzzer reach the
/// paths behind a correct proof: `CHAP_R=auto` is replaced by the right response to the
/// target's challenge, `CHAP_C=reflect` by the target's own challenge. Checked: the exchange
/// succeeds only with the right response; a reflected challenge never succeeds; a mutual
/// answer proves the target secret for the initiator's challenge.
pub fn chap(data: &[u8]) {
    chap_run(data);
}

/// [`chap`], returning whether the exchange ended authenticated (for the seed tests).
pub fn chap_run(data: &[u8]) -> bool {
    let credentials = ChapCredentials {
        initiator: Credential::new("fuzz-user", Secret::new(CHAP_INITIATOR_SECRET)).unwrap(),
        target: Some(Credential::new("fuzz-target", Secret::new(CHAP_TARGET_SECRET)).unwrap()),
    };
    let mut random = [0u8; RANDOM_LEN];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    let mut exchange = ChapExchange::new(credentials, random);
    // The target's CHAP_A/CHAP_I/CHAP_C, once sent.
    let mut sent: Option<(Algorithm, u8, Vec<u8>)> = None;
    for step in data.split(|&b| b == 0xff) {
        let Ok(mut keys) = iscsi::text::parse(step) else {
            continue;
        };
        let mut proof_is_right = false;
        if let Some((algorithm, id, challenge)) = &sent {
            let right = algorithm.response(*id, CHAP_INITIATOR_SECRET, challenge);
            for (k, v) in keys.iter_mut() {
                match (k.as_str(), v.as_str()) {
                    ("CHAP_R", "auto") => *v = encode_hex(&right),
                    ("CHAP_C", "reflect") => *v = encode_hex(challenge),
                    _ => {}
                }
            }
            proof_is_right = keys
                .iter()
                .find(|(k, _)| k == "CHAP_R")
                .and_then(|(_, v)| decode_binary(v))
                .is_some_and(|r| r == right);
        }
        let was_done = exchange.is_done();
        let result = exchange.receive(&keys);
        match &result {
            Ok(answer) if !was_done && exchange.is_done() => {
                let (algorithm, _, challenge) = sent.as_ref().expect("done before a challenge");
                assert!(proof_is_right, "authenticated without the secret: {keys:?}");
                let get = |name: &str| keys.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                if let (Some(i), Some(c)) = (get("CHAP_I"), get("CHAP_C")) {
                    let c = decode_binary(c).expect("accepted challenge decodes");
                    assert_ne!(&c, challenge, "reflected challenge accepted");
                    let i: u8 = parse_u8(i).expect("accepted identifier");
                    let r = answer
                        .iter()
                        .find(|(k, _)| k == "CHAP_R")
                        .expect("mutual answer");
                    assert_eq!(
                        decode_binary(&r.1),
                        Some(algorithm.response(i, CHAP_TARGET_SECRET, &c))
                    );
                } else {
                    assert!(
                        answer.is_empty(),
                        "one-way CHAP answers nothing: {answer:?}"
                    );
                }
            }
            Ok(answer) if sent.is_none() && exchange.algorithm().is_some() => {
                let get = |name: &str| answer.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                let algorithm = exchange.algorithm().unwrap();
                assert_eq!(get("CHAP_A"), Some(&algorithm.code().to_string()));
                let id = parse_u8(get("CHAP_I").expect("CHAP_I")).expect("CHAP_I is a byte");
                let c = decode_binary(get("CHAP_C").expect("CHAP_C")).expect("hex challenge");
                assert!(c.len() >= iscsi::auth::chap::MIN_CHALLENGE_LEN);
                sent = Some((algorithm, id, c));
            }
            Ok(_) => assert!(!exchange.is_done() || was_done),
            Err(_) => assert!(!exchange.is_done()),
        }
    }
    exchange.is_done()
}

/// A byte written as an RFC 7143 number (decimal, `0x` or `0X` hex), by the target's own
/// parser of the grammar.
fn parse_u8(text: &str) -> Option<u8> {
    iscsi::negotiation::parse_number(text).and_then(|n| u8::try_from(n).ok())
}

/// The whole sans-IO connection: login, negotiation, full feature phase, commands
/// answered at once, task management, logout and the timers on virtual time. The first byte
/// is a mode: bits 0-3 cut the stream into reads (16 to 256 bytes; 0: all at once), bits
/// 4-5 move the clock 0 to 300 ms between reads, bit 6 makes the target require both
/// digests, bit 7 puts the target behind CHAP (user `fuzz-user`, [`CHAP_INITIATOR_SECRET`])
/// and an ACL admitting [`CHAP_INITIATOR`] from 127.0.0.0/8. The rest is what the initiator
/// sends.
pub fn connection(data: &[u8]) {
    connection_run(data);
}

/// How far a [`connection`] input got (for the seed tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reached {
    /// Login completed.
    pub logged_in: bool,
    /// SCSI commands handed up.
    pub commands: usize,
    /// Task management requests handed up.
    pub task_management: usize,
    /// The initiator logged out.
    pub logged_out: bool,
    /// Bytes the target sent.
    pub sent: usize,
    /// Status-Class and Status-Detail of the last Login Response sent in a batch before the
    /// one that completed the login (a refused login: its refusal).
    pub login_status: Option<[u8; 2]>,
}

/// [`connection`], returning how far the input got.
pub fn connection_run(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let Some((&mode, stream)) = data.split_first() else {
        return reached;
    };
    let mut access = iscsi::auth::AccessPolicy::new();
    if mode & 0x80 != 0 {
        let chap = ChapCredentials {
            initiator: Credential::new("fuzz-user", Secret::new(CHAP_INITIATOR_SECRET)).unwrap(),
            target: Some(Credential::new("fuzz-target", Secret::new(CHAP_TARGET_SECRET)).unwrap()),
        };
        let entry = iscsi::auth::AclEntry {
            initiator: Some(CHAP_INITIATOR.into()),
            networks: vec!["127.0.0.0/8".parse().unwrap()],
            chap: None,
        };
        let rules = iscsi::auth::TargetAccess {
            acl: vec![entry],
            chap: Some(chap),
        };
        access.set_target(TARGET_NAME, rules).unwrap();
    }
    let config = Arc::new(Config {
        targets: vec![TargetInfo {
            name: TARGET_NAME.into(),
            alias: Some("fuzz".into()),
            addresses: vec!["127.0.0.1:3260,1".into()],
        }],
        limits: Limits {
            max_solicited_data: 1 << 20,
            require_digests: Digests {
                header: mode & 0x40 != 0,
                data: mode & 0x40 != 0,
            },
            ..Limits::default()
        },
        portal_group_tag: 1,
        access: Arc::new(access),
    });
    let mut conn = Connection::with_tsih(config, 1);
    conn.set_peer_address(std::net::Ipv4Addr::LOCALHOST.into());
    let chunk = match mode & 0x0f {
        0 => stream.len().max(1),
        n => usize::from(n) * 16 + usize::from(mode >> 4),
    };
    let step = Duration::from_millis(u64::from((mode >> 4) & 3) * 100);
    let mut now = Instant::now();
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    if conn.handle_timeout(now).is_err() {
        return reached;
    }
    for piece in stream.chunks(chunk) {
        input.extend_from_slice(piece);
        let received = conn.handle_input(&mut input);
        drain(&mut conn, &mut out, &mut reached);
        if received.is_err() {
            break;
        }
        now += step;
        let ticked = conn.handle_timeout(now);
        drain(&mut conn, &mut out, &mut reached);
        if ticked.is_err() || conn.is_finished() {
            break;
        }
        // What is left unparsed is at most one PDU, itself bounded by the frame limits.
        let limits = conn.frame_limits();
        assert!(input.len() <= BHS_LEN + 1020 + 8 + limits.max_data_segment as usize + 3);
    }
    // Late answers after the end are ignored, never a panic.
    conn.complete_command(0x1234_5678, answer(0, false));
    drain(&mut conn, &mut out, &mut reached);
    reached
}

fn answer(expected_len: u32, read: bool) -> CommandResponse {
    let len = if read { expected_len.min(64 << 10) } else { 0 };
    CommandResponse {
        status: 0,
        data_in: Bytes::from(vec![0x5a; len as usize]),
        sense: None,
        transfer_len: expected_len,
    }
}

/// Answers every event at once, then takes what the connection transmits.
fn drain(conn: &mut Connection, out: &mut BytesMut, reached: &mut Reached) {
    while let Some(event) = conn.poll_event() {
        match event {
            Event::Command(cmd) => {
                reached.commands += 1;
                assert!(cmd.data_out.len() <= cmd.expected_len as usize);
                assert!(!cmd.data_out_discarded || cmd.data_out.is_empty());
                let response = answer(cmd.expected_len, cmd.read);
                conn.complete_command(cmd.itt, response);
            }
            Event::TaskManagement(tmf) => {
                reached.task_management += 1;
                conn.complete_task_management(tmf.itt, iscsi::TmfResponse::FunctionComplete)
            }
            Event::LoggedIn { .. } => reached.logged_in = true,
            Event::LoggedOut => reached.logged_out = true,
        }
    }
    conn.poll_transmit(out);
    // Login responses go without digests: walk them for their status.
    let mut at = 0;
    while at + BHS_LEN <= out.len() && !reached.logged_in {
        if out[at] & 0x3f == 0x23 {
            reached.login_status = Some([out[at + 36], out[at + 37]]);
        }
        let dsl = u32::from_be_bytes([0, out[at + 5], out[at + 6], out[at + 7]]) as usize;
        at += BHS_LEN + pdu::pad4(dsl);
    }
    reached.sent += out.len();
    out.clear();
}

/// One SCSI command on a 1 MiB memory LUN: byte 0 is the CDB length (6 to 32), then the
/// CDB, then the data-out (parameter lists for MODE SELECT, UNMAP, PERSISTENT RESERVE OUT,
/// write data). Runs the whole Start/Pending protocol, checking every store request stays
/// on the LUN and the answer is well formed.
pub fn scsi(data: &[u8]) {
    use store_api::{BlockStore, Completion, Geometry, IoReply};
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let cdb_len = 6 + usize::from(len) % 27;
    if rest.len() < cdb_len {
        return;
    }
    let (cdb, data_out) = rest.split_at(cdb_len);
    let geometry = Geometry {
        block_size: 512,
        num_blocks: 2048,
    };
    let store = backstore::MemoryStore::new(geometry);
    let mut target = scsi::ScsiTarget::new();
    target.add_lun(
        0,
        scsi::LuConfig {
            vendor: "GLUSTER".into(),
            product: "fuzz".into(),
            revision: "0.1".into(),
            serial: "FUZZ0001".into(),
            naa_id: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            geometry,
            capabilities: store.capabilities(),
            write_cache: true,
            read_only: false,
            // Enabled, so MODE SELECT of the Logical Block Provisioning page has a
            // threshold to change.
            soft_threshold: Some(scsi::SoftThreshold::Bytes(1 << 20)),
        },
    );
    target.open_nexus(
        1,
        scsi::InitiatorPort {
            name: "iqn.2026-11.com.example:fuzz-initiator".into(),
            isid: [0x80, 0, 0, 0, 0, 1],
        },
    );
    let lun_bytes = geometry.size_bytes();
    // Twice: the first run leaves a unit attention, the second reaches the command.
    for _ in 0..2 {
        let mut step = target.start(scsi::Command {
            nexus: 1,
            lun: 0,
            cdb: Bytes::copy_from_slice(cdb),
            data_out: Bytes::copy_from_slice(data_out).into(),
            expected_len: data_out.len() as u32,
        });
        let mut ios = 0;
        let response = loop {
            match step {
                scsi::Start::Done(r) => break r,
                scsi::Start::Io {
                    request, pending, ..
                } => {
                    ios += 1;
                    assert!(ios < 100_000, "runaway command {cdb:02x?}");
                    if let Some((offset, len)) = request.range() {
                        assert!(
                            offset.checked_add(len).is_some_and(|end| end <= lun_bytes),
                            "{request:?} outside the LUN for {cdb:02x?}"
                        );
                    }
                    let (tx, rx) = std::sync::mpsc::channel();
                    store.submit(request, Completion::new(move |r| tx.send(r).unwrap()));
                    step = pending.finish(rx.recv().expect("the memory store completes inline"));
                }
                scsi::Start::SaveReservations { pending, .. }
                | scsi::Start::SaveModePages { pending, .. } => {
                    step = pending.finish(Ok(IoReply::Done));
                }
                scsi::Start::SharedReservations(shared) => {
                    // Not shared here; answered as after a failed read if it ever is.
                    let (_run, pending) = shared.into_parts();
                    step = pending.finish(Err(store_api::StoreError::new(
                        store_api::Op::Read,
                        store_api::ErrorKind::Io,
                    )));
                }
                scsi::Start::Copy(copy) => {
                    // EXTENDED COPY within the one LUN: the store copies inside itself.
                    assert!(
                        copy.source_offset
                            .checked_add(copy.len)
                            .is_some_and(|end| end <= lun_bytes),
                        "copy source outside the LUN for {cdb:02x?}"
                    );
                    step = copy.with_source(store.copy_source());
                }
            }
        };
        match response.status {
            scsi::Status::Good => assert!(response.sense.is_none()),
            scsi::Status::CheckCondition => {
                let sense = response.sense.as_ref().expect("CHECK CONDITION has sense");
                assert!(matches!(sense[0] & 0x7f, 0x70..=0x73), "{sense:02x?}");
                assert!(sense.len() >= 8);
                assert!(response.data_in.is_empty());
            }
            scsi::Status::ReservationConflict | scsi::Status::ConditionMet => {
                assert!(response.sense.is_none())
            }
            other => panic!("unexpected status {other:?} for {cdb:02x?}"),
        }
    }
}
