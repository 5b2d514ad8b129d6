//! The connection state machine: login phase, then full feature phase (RFC 7143 ERL 0).
//!
//! This module holds the connection itself (framing, CmdSN ordering, dispatch, sequence
//! numbers on the way out); each PDU kind is handled in a module of its own.

mod admission;
mod command;
mod data_in;
mod data_out;
mod keepalive;
mod login_phase;
mod logout;
mod nop;
mod session;
mod task_mgmt;
mod text;

pub use admission::Admission;
pub use keepalive::Timers;
pub use task_mgmt::{TaskFunction, TaskManagementRequest, TaskScope, TmfResponse};

use crate::header::RejectHeader;
use crate::login::Login;
use crate::negotiation::Params;
use crate::pdu::{self, off, parse_ahs, Bhs, Digests, FrameLimits, InitiatorOpcode, Pdu};
use crate::{seq, Config, Event, ProtocolError};
use bytes::{Bytes, BytesMut};
use session::Session;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// Largest data segment accepted during login (RFC 7143 13.12: the default 8192 applies
/// until the login completes; our declared MaxRecvDataSegmentLength only takes effect in
/// full feature phase).
pub const LOGIN_MAX_DATA: u32 = 8192;

/// Reject reasons (RFC 7143 11.17.1).
mod reject {
    /// Data (payload) digest error.
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    /// Immediate Command Reject - too many immediate commands (may be resent).
    pub const TOO_MANY_IMMEDIATE_COMMANDS: u8 = 0x06;
}

static NEXT_TSIH: AtomicU16 = AtomicU16::new(1);

fn alloc_tsih() -> u16 {
    loop {
        let t = NEXT_TSIH.fetch_add(1, Ordering::Relaxed);
        if t != 0 {
            return t;
        }
    }
}

/// A PDU waiting for `poll_transmit`, with the digests in force when it was queued (the
/// final login response goes without them; every PDU after it with them).
#[derive(Debug)]
struct OutPdu {
    bhs: Bhs,
    data: Bytes,
    digests: Digests,
}

#[derive(Debug)]
enum Phase {
    Login(Box<Login>),
    FullFeature(Box<Session>),
    Finished,
}

/// One iSCSI connection (and, with MaxConnections=1, its session).
#[derive(Debug)]
pub struct Connection {
    config: Arc<Config>,
    phase: Phase,
    stat_sn: u32,
    /// ExpCmdSN/MaxCmdSN reported during login.
    login_cmd_sn: u32,
    events: VecDeque<Event>,
    out: VecDeque<OutPdu>,
    /// Set when the connection must close after transmitting (logout, login failure).
    closing: bool,
    /// The initiator's address, when the driver told it ([`Connection::set_peer_address`]).
    peer: Option<core::net::IpAddr>,
    /// Timers, told the time by the driver.
    clock: keepalive::Clock,
    /// Asked before a login enters full feature phase.
    admission: Option<std::sync::Arc<dyn Admission>>,
    /// Why the login failed, once it has: (status class and detail, target name asked for).
    login_failure: Option<(u16, String)>,
}

fn proto(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::Protocol(msg.into())
}

/// True for a SCSI Command PDU.
fn is_command(p: &Pdu) -> bool {
    InitiatorOpcode::from_u8(p.bhs.opcode()) == Some(InitiatorOpcode::ScsiCommand)
}

/// Parses and checks the AHS area of a PDU (RFC 7143 11.2.1.2): each AHSLength must fit in
/// TotalAHSLength, and the only types are 1 (extended CDB) and 2 (bidirectional read
/// expected length). Returns the extended CDB bytes and whether a bidirectional AHS is there.
fn command_ahs(area: &Bytes) -> Result<(Option<Bytes>, bool), ProtocolError> {
    let mut cdb_ext = None;
    let mut bidi = false;
    for ahs in parse_ahs(area.clone())? {
        match ahs.ahs_type {
            1 => {
                if ahs.specific.len() < 2 {
                    return Err(ProtocolError::Malformed("empty extended CDB AHS".into()));
                }
                cdb_ext = Some(ahs.specific.slice(1..));
            }
            2 => bidi = true,
            t => return Err(ProtocolError::Malformed(format!("unknown AHS type {t}"))),
        }
    }
    Ok((cdb_ext, bidi))
}

impl Connection {
    /// A connection in the login phase; a successful normal login gets a process-unique TSIH.
    pub fn new(config: Arc<Config>) -> Self {
        Self::with_tsih(config, alloc_tsih())
    }

    /// Like [`Connection::new`] with the TSIH to assign chosen by the caller (non-zero).
    pub fn with_tsih(config: Arc<Config>, tsih: u16) -> Self {
        let login = Login::new(&config, tsih.max(1));
        Connection {
            config,
            phase: Phase::Login(Box::new(login)),
            stat_sn: 0,
            login_cmd_sn: 0,
            events: VecDeque::new(),
            out: VecDeque::new(),
            closing: false,
            peer: None,
            clock: keepalive::Clock::default(),
            admission: None,
            login_failure: None,
        }
    }

    /// Tells the connection where the initiator connects from, before any input: ACL
    /// entries with address ranges match against it (without it, only entries without
    /// ranges match).
    pub fn set_peer_address(&mut self, addr: core::net::IpAddr) {
        self.peer = Some(addr);
        if let Phase::Login(login) = &mut self.phase {
            login.set_peer(addr);
        }
    }

    /// Negotiated parameters once in full feature phase.
    pub fn params(&self) -> Option<&Params> {
        match &self.phase {
            Phase::FullFeature(s) => Some(&s.info.params),
            _ => None,
        }
    }

    /// Receive framing limits currently in force (for a fuzz target or the daemon's buffer
    /// sizing).
    pub fn frame_limits(&self) -> FrameLimits {
        match &self.phase {
            Phase::FullFeature(s) => FrameLimits {
                max_data_segment: s.info.params.target_max_recv_data_segment_length,
                digests: s.info.params.digests,
            },
            _ => FrameLimits {
                max_data_segment: LOGIN_MAX_DATA,
                digests: Default::default(),
            },
        }
    }

    /// Parses every complete PDU at the front of `input`, consuming its bytes. Incomplete
    /// trailing bytes are left for the next call.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<(), ProtocolError> {
        loop {
            if matches!(self.phase, Phase::Finished) || self.closing {
                // Nothing more is accepted; drop what the peer still sends.
                input.clear();
                return Ok(());
            }
            if !input.is_empty() {
                self.clock.heard = true;
            }
            let limits = self.frame_limits();
            let Some(pdu) = pdu::decode(input, &limits)? else {
                return Ok(());
            };
            self.handle_pdu(pdu)?;
        }
    }

    fn handle_pdu(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let op = InitiatorOpcode::from_u8(pdu.bhs.opcode())
            .ok_or(ProtocolError::UnknownOpcode(pdu.bhs.opcode()))?;
        // TotalAHSLength and the AHS chain are checked on every PDU as it arrives, whether it
        // is then handled, held for its CmdSN turn, ignored or dropped.
        command_ahs(&pdu.ahs)?;
        if matches!(self.phase, Phase::Login(_)) {
            if op != InitiatorOpcode::Login {
                return Err(proto(format!("{op:?} PDU before login completed")));
            }
            return self.handle_login(pdu);
        }
        if pdu.data_digest_error {
            // RFC 7143 7.8 (ERL 0): the PDU is rejected and its data discarded. A command or
            // Data-Out still counts, so that its task fails with CHECK CONDITION once all its
            // data is in; any other PDU is dropped, keeping its place in CmdSN order.
            tracing::warn!(?op, itt = pdu.bhs.itt(), "data digest error; PDU rejected");
            self.send_reject(reject::DATA_DIGEST_ERROR, &pdu.bhs);
            let kept = matches!(op, InitiatorOpcode::ScsiCommand | InitiatorOpcode::DataOut);
            if !kept && pdu.bhs.immediate() {
                return Ok(());
            }
        }
        match op {
            InitiatorOpcode::Login => Err(proto("Login request in full feature phase")),
            InitiatorOpcode::DataOut => self.handle_data_out(pdu),
            InitiatorOpcode::Snack => {
                // ERL 0: SNACK is not supported.
                self.send_reject(reject::COMMAND_NOT_SUPPORTED, &pdu.bhs);
                Ok(())
            }
            _ => {
                if pdu.bhs.immediate() {
                    return self.dispatch(pdu);
                }
                self.ordered(pdu)
            }
        }
    }

    fn session(&mut self) -> &mut Session {
        match &mut self.phase {
            Phase::FullFeature(s) => s,
            _ => unreachable!("full feature phase"),
        }
    }

    /// Delivers non-immediate PDUs in CmdSN order; out-of-window ones are dropped.
    fn ordered(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let sn = pdu.bhs.u32_at(off::CMDSN);
        let s = self.session();
        if !seq::in_window(sn, s.exp_cmd_sn, s.max_cmd_sn) {
            // Includes CmdSN == ExpCmdSN while the window is closed (MaxCmdSN ==
            // ExpCmdSN - 1): the initiator may not send it yet (RFC 7143 4.2.2.1).
            tracing::warn!(
                sn,
                exp = s.exp_cmd_sn,
                max = s.max_cmd_sn,
                "CmdSN outside the command window; dropped"
            );
            Ok(())
        } else if sn == s.exp_cmd_sn {
            s.exp_cmd_sn = s.exp_cmd_sn.wrapping_add(1);
            self.dispatch(pdu)?;
            loop {
                let s = self.session();
                let Some(next) = s.stash.remove(&s.exp_cmd_sn) else {
                    break;
                };
                s.exp_cmd_sn = s.exp_cmd_sn.wrapping_add(1);
                let itt = next.bhs.itt();
                self.dispatch(next)?;
                if let Some(data) = self.session().early_data.remove(&itt) {
                    for d in data {
                        self.handle_data_out(d)?;
                    }
                }
            }
            Ok(())
        } else {
            if s.stash.insert(sn, pdu).is_some() {
                tracing::warn!(sn, "duplicate CmdSN ahead of window; keeping the last");
            }
            Ok(())
        }
    }

    fn dispatch(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        if pdu.data_digest_error && !is_command(&pdu) {
            // Rejected on arrival; its CmdSN is used up.
            return Ok(());
        }
        match InitiatorOpcode::from_u8(pdu.bhs.opcode()) {
            Some(InitiatorOpcode::ScsiCommand) => {
                let s = self.session();
                if s.aborted_early.remove(&pdu.bhs.itt()) {
                    return Ok(());
                }
                if !s.aborted_ranges.is_empty() && !pdu.bhs.immediate() {
                    // Its CmdSN was taken already (ExpCmdSN is past it).
                    let sn = pdu.bhs.u32_at(off::CMDSN);
                    let aborted = s.aborted_ranges.iter().any(|r| r.covers(sn, pdu.bhs.lun()));
                    let exp = s.exp_cmd_sn;
                    s.aborted_ranges.retain(|r| seq::lt(exp, r.below));
                    if aborted {
                        tracing::debug!(
                            sn,
                            itt = pdu.bhs.itt(),
                            "command aborted before its CmdSN turn; dropped"
                        );
                        return Ok(());
                    }
                }
                self.handle_command(pdu)
            }
            Some(InitiatorOpcode::NopOut) => {
                self.handle_nop_out(pdu);
                Ok(())
            }
            Some(InitiatorOpcode::Text) => self.handle_text(pdu),
            Some(InitiatorOpcode::Logout) => {
                self.handle_logout(pdu);
                Ok(())
            }
            Some(InitiatorOpcode::TaskManagement) => self.handle_tmf(pdu),
            _ => Err(ProtocolError::UnknownOpcode(pdu.bhs.opcode())),
        }
    }

    // ---- sequence numbers ------------------------------------------------------------

    /// Recomputes MaxCmdSN (never decreasing) and returns (ExpCmdSN, MaxCmdSN).
    fn cmd_window(&mut self) -> (u32, u32) {
        let window = self.config.limits.command_window.max(1);
        match &mut self.phase {
            Phase::FullFeature(s) => {
                let open = window.saturating_sub(s.outstanding);
                let max = s.exp_cmd_sn.wrapping_add(open).wrapping_sub(1);
                if seq::lt(s.max_cmd_sn, max) {
                    s.max_cmd_sn = max;
                }
                (s.exp_cmd_sn, s.max_cmd_sn)
            }
            _ => (
                self.login_cmd_sn,
                self.login_cmd_sn.wrapping_add(window).wrapping_sub(1),
            ),
        }
    }

    /// Fills StatSN/ExpCmdSN/MaxCmdSN; advances StatSN when `advance`.
    fn stamp(&mut self, bhs: &mut Bhs, advance: bool) {
        let (exp, max) = self.cmd_window();
        bhs.set_u32(off::STATSN, self.stat_sn);
        bhs.set_u32(off::EXPCMDSN, exp);
        bhs.set_u32(off::MAXCMDSN, max);
        if advance {
            self.stat_sn = self.stat_sn.wrapping_add(1);
        }
    }

    fn push(&mut self, bhs: Bhs, data: Bytes) {
        let digests = match &self.phase {
            Phase::FullFeature(s) => s.info.params.digests,
            _ => Digests::default(),
        };
        self.out.push_back(OutPdu { bhs, data, digests });
    }

    fn send_reject(&mut self, reason: u8, rejected: &Bhs) {
        let mut b = RejectHeader { reason }.bhs();
        self.stamp(&mut b, true);
        self.push(b, Bytes::copy_from_slice(&rejected.0));
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends every PDU ready to send to `out`.
    pub fn poll_transmit(&mut self, out: &mut impl crate::PduSink) {
        while let Some(p) = self.out.pop_front() {
            out.put_pdu(&p.bhs, &p.data, p.digests);
        }
        if self.closing && !matches!(self.phase, Phase::Finished) {
            self.phase = Phase::Finished;
        }
    }

    /// Whether PDUs wait for [`Connection::poll_transmit`] (an R2T, a response): the
    /// driver may send them before it reads more input.
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// True once the connection has nothing more to do (logged out, or login failed) and
    /// the socket may be closed after transmitting what `poll_transmit` gave.
    pub fn is_finished(&self) -> bool {
        self.closing
    }

    /// After a failed login: its status (class in the high byte, detail in the low, RFC
    /// 7143 11.13.5) and the TargetName the initiator asked for (empty for discovery or
    /// when it named none).
    pub fn login_failure(&self) -> Option<(u16, &str)> {
        self.login_failure
            .as_ref()
            .map(|(status, target)| (*status, target.as_str()))
    }
}
