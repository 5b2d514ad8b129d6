//! The connection state machine: login phase, then full feature phase (RFC 7143 ERL 0).

use crate::login::{Login, LoginOutcome, LoginStep};
use crate::negotiation::Params;
use crate::pdu::{
    self, off, parse_ahs, Bhs, FrameLimits, InitiatorOpcode, Pdu, TargetOpcode, RESERVED_TAG,
};
use crate::{
    seq, text, CommandResponse, Config, Event, ProtocolError, ScsiCommand, SessionType, TaskAttr,
    TaskManagementRequest,
};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// Largest data segment accepted during login (RFC 7143 13.12: the default 8192 applies
/// until the login completes; our declared MaxRecvDataSegmentLength only takes effect in
/// full feature phase).
pub const LOGIN_MAX_DATA: u32 = 8192;

/// Reject reasons (RFC 7143 11.17.1).
mod reject {
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

/// A PDU waiting for `poll_transmit`.
#[derive(Debug)]
struct OutPdu {
    bhs: Bhs,
    data: Bytes,
}

#[derive(Debug)]
enum Phase {
    Login(Box<Login>),
    FullFeature(Box<Session>),
    Finished,
}

/// One outstanding R2T.
#[derive(Debug, Clone, Copy)]
struct R2tState {
    ttt: u32,
    offset: u32,
    len: u32,
    received: u32,
    /// DataSN expected on the next Data-Out of this sequence.
    data_sn: u32,
}

/// A SCSI command collecting its data-out.
#[derive(Debug)]
struct Collecting {
    imm_len: u32,
    /// End offset of the unsolicited burst; `None` once it is over.
    unsolicited_limit: Option<u32>,
    unsolicited_next: u32,
    /// DataSN expected on the next unsolicited Data-Out.
    unsolicited_data_sn: u32,
    next_r2t_offset: u32,
    r2ts: Vec<R2tState>,
    buf: BytesMut,
    /// Immediate data kept as a slice when it is all the command carries.
    imm: Bytes,
    received: u32,
    /// A Data-Out arrived with an unexpected DataSN: its payload was discarded and the task
    /// ends with CHECK CONDITION once all its data has arrived (RFC 7143 7.8, 7.9).
    data_sn_error: bool,
}

#[derive(Debug)]
struct Task {
    lun: u64,
    cdb: Bytes,
    attr: TaskAttr,
    edtl: u32,
    read: bool,
    write: bool,
    /// Counts toward the command window (non-immediate).
    windowed: bool,
    r2tsn: u32,
    collecting: Option<Collecting>,
    /// The write announced more than `Limits::max_command_data_out`: it went up without its
    /// data, and Data-Out PDUs for it are dropped.
    discard_data: bool,
    /// Bytes of `Limits::max_solicited_data` this write holds: everything it solicits by
    /// R2T, reserved when its first R2T is due and given back when the task is forgotten.
    reserved: u32,
}

/// Full feature phase state of the (single-connection) session.
#[derive(Debug)]
struct Session {
    info: LoginOutcome,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
    /// Non-immediate SCSI commands received and not yet completed.
    outstanding: u32,
    tasks: HashMap<u32, Task>,
    /// Non-immediate PDUs that arrived ahead of ExpCmdSN, by CmdSN.
    stash: BTreeMap<u32, Pdu>,
    /// Data-Out PDUs for stashed commands.
    early_data: HashMap<u32, Vec<Pdu>>,
    pending_tmf: HashSet<u32>,
    /// Stashed (out of CmdSN order) commands aborted before their turn.
    aborted_early: HashSet<u32>,
    next_ttt: u32,
    text_cont: Option<TextContinuation>,
    text_partial: Vec<u8>,
    /// TTT handed out to acknowledge a partial (C bit) text request.
    text_partial_ttt: Option<u32>,
    /// Sum of `Task::reserved` over the tasks.
    solicited: u64,
    /// Writes whose R2Ts wait for room in `Limits::max_solicited_data`, in arrival order.
    waiting: VecDeque<u32>,
}

impl Session {
    /// Removes a task and gives back what it held: its place in the command window, its
    /// solicited-data reservation, its place in the queue of waiting writes.
    fn forget_task(&mut self, itt: u32) -> Option<Task> {
        let task = self.tasks.remove(&itt)?;
        if task.windowed {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        self.solicited -= u64::from(task.reserved);
        self.waiting.retain(|&w| w != itt);
        Some(task)
    }

    /// Reserves the rest of a write's solicited data in the budget when it fits, or when no
    /// other write holds any of it; otherwise the write (re)joins the queue of waiting
    /// writes. A write may only pass writes that waited before it once they are admitted.
    fn admit(&mut self, itt: u32, budget: u32) -> bool {
        let Some(task) = self.tasks.get_mut(&itt) else {
            return false;
        };
        let Some(c) = task.collecting.as_ref() else {
            return false;
        };
        let need = task.edtl.saturating_sub(c.next_r2t_offset);
        if task.reserved == 0 && need > 0 {
            let first = self.waiting.front().is_none_or(|&w| w == itt);
            let fits = self.solicited == 0 || self.solicited + u64::from(need) <= u64::from(budget);
            if !(first && fits) {
                if !self.waiting.contains(&itt) {
                    self.waiting.push_back(itt);
                }
                return false;
            }
            task.reserved = need;
            self.solicited += u64::from(need);
        }
        if self.waiting.front() == Some(&itt) {
            self.waiting.pop_front();
        }
        true
    }
}

#[derive(Debug)]
struct TextContinuation {
    itt: u32,
    ttt: u32,
    rest: Bytes,
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
}

fn residual(expected: u32, transfer: u32) -> (u8, u32) {
    use std::cmp::Ordering::*;
    match transfer.cmp(&expected) {
        Greater => (0x04, transfer - expected), // O bit: overflow
        Less => (0x02, expected - transfer),    // U bit: underflow
        Equal => (0, 0),
    }
}

fn task_attr(bits: u8) -> TaskAttr {
    match bits & 7 {
        0 => TaskAttr::Untagged,
        1 => TaskAttr::Simple,
        2 => TaskAttr::Ordered,
        3 => TaskAttr::HeadOfQueue,
        4 => TaskAttr::Aca,
        _ => TaskAttr::Simple,
    }
}

fn proto(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::Protocol(msg.into())
}

/// Fixed-format sense: ILLEGAL REQUEST, INVALID FIELD IN CDB (SPC-4 4.5.3).
const SENSE_INVALID_FIELD_IN_CDB: [u8; 18] = [
    0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0,
];

/// Fixed-format sense for the iSCSI condition "protocol service CRC error" (RFC 7143
/// 11.4.7.2): ABORTED COMMAND, ASC/ASCQ 47h/05h CRC ERROR DETECTED.
const SENSE_PROTOCOL_SERVICE_CRC_ERROR: [u8; 18] = [
    0x70, 0, 0x0b, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x47, 0x05, 0, 0, 0, 0,
];

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
        match InitiatorOpcode::from_u8(pdu.bhs.opcode()) {
            Some(InitiatorOpcode::ScsiCommand) => {
                if self.session().aborted_early.remove(&pdu.bhs.itt()) {
                    return Ok(());
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
        self.out.push_back(OutPdu { bhs, data });
    }

    fn send_reject(&mut self, reason: u8, rejected: &Bhs) {
        let mut b = Bhs::target(TargetOpcode::Reject);
        b.set_flags(0x80);
        b.0[2] = reason;
        b.set_itt(RESERVED_TAG);
        self.stamp(&mut b, true);
        self.push(b, Bytes::copy_from_slice(&rejected.0));
    }

    // ---- login -----------------------------------------------------------------------

    fn handle_login(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let Phase::Login(login) = &mut self.phase else {
            unreachable!()
        };
        let first = !login.started();
        let step = login.handle(&self.config, &pdu);
        self.login_cmd_sn = login.cmd_sn();
        if first {
            // Start StatSN where the initiator expects it.
            self.stat_sn = pdu.bhs.u32_at(off::EXPSTATSN);
        }
        match step {
            LoginStep::Continue(mut b, data) => {
                self.stamp(&mut b, true);
                self.push(b, data.into());
            }
            LoginStep::Failed(mut b, data, why) => {
                tracing::info!(reason = %why, "login rejected");
                self.stamp(&mut b, true);
                self.push(b, data.into());
                self.closing = true;
            }
            LoginStep::Complete(mut b, data, outcome) => {
                self.stamp(&mut b, true);
                self.push(b, data.into());
                let window = self.config.limits.command_window.max(1);
                let exp = outcome.exp_cmd_sn;
                self.events.push_back(Event::LoggedIn {
                    initiator: outcome.initiator.clone(),
                    target: outcome.target.clone(),
                    session_type: outcome.session_type,
                    isid: outcome.isid,
                    tsih: outcome.tsih,
                });
                self.phase = Phase::FullFeature(Box::new(Session {
                    info: *outcome,
                    exp_cmd_sn: exp,
                    max_cmd_sn: exp.wrapping_add(window).wrapping_sub(1),
                    outstanding: 0,
                    tasks: HashMap::new(),
                    stash: BTreeMap::new(),
                    early_data: HashMap::new(),
                    pending_tmf: HashSet::new(),
                    aborted_early: HashSet::new(),
                    next_ttt: 1,
                    text_cont: None,
                    text_partial: Vec::new(),
                    text_partial_ttt: None,
                    solicited: 0,
                    waiting: VecDeque::new(),
                }));
            }
        }
        Ok(())
    }

    // ---- SCSI commands ---------------------------------------------------------------

    fn handle_command(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let bhs = pdu.bhs;
        let itt = bhs.itt();
        let flags = bhs.flags();
        let read = flags & 0x40 != 0;
        let write = flags & 0x20 != 0;
        let edtl = bhs.u32_at(off::EDTL);
        let windowed = !bhs.immediate();
        let max_immediate = self.config.limits.max_immediate_tasks as usize;
        let max_data = self.config.limits.max_command_data_out;
        let s = self.session();
        if s.info.session_type == SessionType::Discovery {
            return Err(proto("SCSI command in a discovery session"));
        }
        if s.tasks.contains_key(&itt) || itt == RESERVED_TAG {
            return Err(proto(format!("SCSI command reuses task tag {itt:#x}")));
        }
        if !windowed && s.tasks.values().filter(|t| !t.windowed).count() >= max_immediate {
            // Immediate commands are outside the CmdSN window, so this is their only bound.
            tracing::warn!(itt, "too many immediate commands outstanding; rejected");
            self.send_reject(reject::TOO_MANY_IMMEDIATE_COMMANDS, &bhs);
            return Ok(());
        }
        let (cdb_ext, bidi) = command_ahs(&pdu.ahs)?;
        let cdb = match cdb_ext {
            None => pdu.raw_bhs.slice(32..48),
            Some(ext) => {
                let mut v = Vec::with_capacity(16 + ext.len());
                v.extend_from_slice(&bhs.0[32..48]);
                v.extend_from_slice(&ext);
                Bytes::from(v)
            }
        };
        let params = s.info.params.clone();
        let imm_len = pdu.data.len() as u32;
        if imm_len > 0 && !write {
            return Err(proto("immediate data on a command without the W bit"));
        }
        if imm_len > 0 && !params.immediate_data {
            return Err(proto("immediate data sent but ImmediateData=No"));
        }
        if imm_len > edtl {
            return Err(proto(format!(
                "immediate data of {imm_len} bytes exceeds the expected length {edtl}"
            )));
        }
        if imm_len > params.first_burst_length {
            return Err(proto(format!(
                "immediate data of {imm_len} bytes exceeds FirstBurstLength {}",
                params.first_burst_length
            )));
        }
        let mut unsolicited_follows = write && flags & 0x80 == 0;
        if unsolicited_follows && params.initial_r2t {
            return Err(proto("unsolicited Data-Out announced but InitialR2T=Yes"));
        }
        if unsolicited_follows && imm_len >= edtl.min(params.first_burst_length) {
            // F=0 although the immediate data already used the whole unsolicited allowance:
            // nothing more can come unsolicited, so go on with R2Ts.
            unsolicited_follows = false;
        }
        if windowed {
            s.outstanding += 1;
        }
        if (read && write) || bidi {
            // Bidirectional commands are not supported: fail the task with CHECK CONDITION.
            s.tasks.insert(
                itt,
                Task {
                    lun: bhs.lun(),
                    cdb,
                    attr: task_attr(flags),
                    edtl,
                    read: false,
                    write: false,
                    windowed,
                    r2tsn: 0,
                    collecting: None,
                    discard_data: false,
                    reserved: 0,
                },
            );
            self.complete_command(
                itt,
                CommandResponse {
                    status: 0x02,
                    data_in: Bytes::new(),
                    sense: Some(Bytes::from_static(&SENSE_INVALID_FIELD_IN_CDB)),
                    transfer_len: 0,
                },
            );
            return Ok(());
        }
        let mut task = Task {
            lun: bhs.lun(),
            cdb,
            attr: task_attr(flags),
            edtl,
            read,
            write,
            windowed,
            r2tsn: 0,
            collecting: None,
            discard_data: false,
            reserved: 0,
        };
        if write && edtl > max_data {
            // Too large to collect: nothing is solicited or buffered (not even the immediate
            // data), and the layer above fails the command at once.
            tracing::warn!(
                itt,
                edtl,
                max_data,
                "write larger than the per-command limit"
            );
            task.discard_data = true;
            s.tasks.insert(itt, task);
            self.deliver(itt, Bytes::new());
            return Ok(());
        }
        if write && imm_len < edtl {
            let unsolicited_limit = if unsolicited_follows {
                Some(edtl.min(params.first_burst_length))
            } else {
                None
            };
            task.collecting = Some(Collecting {
                imm_len,
                unsolicited_limit,
                unsolicited_next: imm_len,
                unsolicited_data_sn: 0,
                next_r2t_offset: imm_len,
                r2ts: Vec::new(),
                buf: BytesMut::new(),
                imm: pdu.data.clone(),
                received: imm_len,
                data_sn_error: false,
            });
            s.tasks.insert(itt, task);
            if !unsolicited_follows {
                self.issue_r2ts(itt);
            }
            return Ok(());
        }
        let data_out = if write { pdu.data } else { Bytes::new() };
        s.tasks.insert(itt, task);
        self.deliver(itt, data_out);
        Ok(())
    }

    fn deliver(&mut self, itt: u32, data_out: Bytes) {
        let s = self.session();
        let Some(task) = s.tasks.get_mut(&itt) else {
            return;
        };
        task.collecting = None;
        let cmd = ScsiCommand {
            itt,
            lun: task.lun,
            cdb: task.cdb.clone(),
            attr: task.attr,
            expected_len: task.edtl,
            read: task.read,
            write: task.write,
            data_out,
            data_out_discarded: task.discard_data,
        };
        self.events.push_back(Event::Command(cmd));
    }

    /// Sends R2Ts for the rest of a write while fewer than MaxOutstandingR2T are open, once
    /// the write has its reservation in the solicited-data budget.
    fn issue_r2ts(&mut self, itt: u32) {
        let budget = self.config.limits.max_solicited_data;
        let mut r2ts = Vec::new();
        {
            let s = self.session();
            if !s.admit(itt, budget) {
                tracing::debug!(itt, "write waits for room in the solicited-data budget");
                return;
            }
            let max_out = s.info.params.max_outstanding_r2t.max(1) as usize;
            let burst = s.info.params.max_burst_length.max(512);
            let mut next_ttt = s.next_ttt;
            let Some(task) = s.tasks.get_mut(&itt) else {
                return;
            };
            let edtl = task.edtl;
            let lun = task.lun;
            let Some(c) = task.collecting.as_mut() else {
                return;
            };
            while c.r2ts.len() < max_out && c.next_r2t_offset < edtl {
                let len = burst.min(edtl - c.next_r2t_offset);
                let ttt = next_ttt;
                next_ttt = next_ttt.wrapping_add(1);
                if next_ttt == RESERVED_TAG {
                    next_ttt = 1;
                }
                c.r2ts.push(R2tState {
                    ttt,
                    offset: c.next_r2t_offset,
                    len,
                    received: 0,
                    data_sn: 0,
                });
                let mut b = Bhs::target(TargetOpcode::R2t);
                b.set_flags(0x80);
                b.set_lun(lun);
                b.set_itt(itt);
                b.set_u32(off::TTT, ttt);
                b.set_u32(off::DATASN, task.r2tsn);
                b.set_u32(off::BUFFER_OFFSET, c.next_r2t_offset);
                b.set_u32(off::RESIDUAL, len);
                task.r2tsn = task.r2tsn.wrapping_add(1);
                c.next_r2t_offset += len;
                r2ts.push(b);
            }
            s.next_ttt = next_ttt;
        }
        for mut b in r2ts {
            self.stamp(&mut b, false);
            self.push(b, Bytes::new());
        }
    }

    fn handle_data_out(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let bhs = pdu.bhs;
        let itt = bhs.itt();
        let ttt = bhs.u32_at(off::TTT);
        let offset = bhs.u32_at(off::BUFFER_OFFSET);
        let len = pdu.data.len() as u32;
        let fin = bhs.final_bit();
        let data_sn = bhs.u32_at(off::DATASN);
        let s = self.session();
        if s.info.session_type == SessionType::Discovery {
            return Err(proto("Data-Out in a discovery session"));
        }
        let Some(task) = s.tasks.get_mut(&itt) else {
            if let Some(cmd) = s
                .stash
                .values()
                .find(|p| p.bhs.itt() == itt && p.bhs.opcode() == 0x01)
            {
                // Unsolicited data for a command still waiting its CmdSN turn. Immediate plus
                // unsolicited data may not exceed FirstBurstLength (RFC 7143 13.14), so more
                // than that is a protocol error rather than something to buffer; so is a
                // flood of PDUs (counted as if each carried at least 512 bytes).
                let fbl = s.info.params.first_burst_length as usize;
                let imm = cmd.data.len();
                let early = s.early_data.entry(itt).or_default();
                let bytes =
                    imm + early.iter().map(|p| p.data.len()).sum::<usize>() + pdu.data.len();
                if bytes > fbl || early.len() > fbl / 512 {
                    return Err(proto(format!(
                        "unsolicited data for held task {itt:#x} exceeds FirstBurstLength {fbl} \
                         ({bytes} bytes in {} PDUs)",
                        early.len() + 1
                    )));
                }
                early.push(pdu);
            } else {
                tracing::debug!(itt, "Data-Out for an unknown or aborted task; ignored");
            }
            return Ok(());
        };
        if task.discard_data {
            tracing::debug!(itt, "Data-Out for a write over the data limit; discarded");
            return Ok(());
        }
        let edtl = task.edtl;
        let Some(c) = task.collecting.as_mut() else {
            return Err(proto(format!(
                "Data-Out for task {itt:#x} that expects no more data"
            )));
        };
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= edtl)
            .ok_or_else(|| {
                proto(format!(
                    "Data-Out at offset {offset} length {len} beyond expected length {edtl}"
                ))
            })?;
        let mut r2t_done = false;
        if ttt == RESERVED_TAG {
            let Some(limit) = c.unsolicited_limit else {
                return Err(proto("unsolicited Data-Out outside the unsolicited burst"));
            };
            if offset != c.unsolicited_next || end > limit {
                return Err(proto(format!(
                    "unsolicited Data-Out at {offset}+{len}, expected offset {} limit {limit}",
                    c.unsolicited_next
                )));
            }
            if data_sn != c.unsolicited_data_sn && !c.data_sn_error {
                tracing::warn!(
                    itt,
                    data_sn,
                    expected = c.unsolicited_data_sn,
                    "unsolicited Data-Out with an unexpected DataSN; task will fail"
                );
                c.data_sn_error = true;
            }
            c.unsolicited_data_sn = c.unsolicited_data_sn.wrapping_add(1);
            c.unsolicited_next = end;
            if fin {
                c.unsolicited_limit = None;
                c.next_r2t_offset = end;
                r2t_done = true;
            }
        } else {
            let Some(idx) = c.r2ts.iter().position(|r| r.ttt == ttt) else {
                return Err(proto(format!(
                    "Data-Out with unknown target transfer tag {ttt:#x}"
                )));
            };
            let r = &mut c.r2ts[idx];
            if offset != r.offset + r.received || end > r.offset + r.len {
                return Err(proto(format!(
                    "Data-Out at {offset}+{len} outside R2T {}+{} (received {})",
                    r.offset, r.len, r.received
                )));
            }
            if data_sn != r.data_sn && !c.data_sn_error {
                tracing::warn!(
                    itt,
                    data_sn,
                    expected = r.data_sn,
                    ttt,
                    "Data-Out with an unexpected DataSN; task will fail"
                );
                c.data_sn_error = true;
            }
            r.data_sn = r.data_sn.wrapping_add(1);
            r.received += len;
            if r.received == r.len {
                c.r2ts.remove(idx);
                r2t_done = true;
            }
        }
        if c.data_sn_error {
            // The payload of a PDU out of DataSN order is discarded, and so is everything
            // after it: the task fails once the initiator has sent all it announced.
            c.buf = BytesMut::new();
            c.imm = Bytes::new();
            c.received += len;
            if c.received == edtl {
                task.collecting = None;
                self.complete_command(
                    itt,
                    CommandResponse {
                        status: 0x02,
                        data_in: Bytes::new(),
                        sense: Some(Bytes::from_static(&SENSE_PROTOCOL_SERVICE_CRC_ERROR)),
                        transfer_len: 0,
                    },
                );
            } else if r2t_done {
                self.issue_r2ts(itt);
            }
            return Ok(());
        }
        // Reassemble in offset order.
        if c.buf.is_empty() && c.imm_len > 0 {
            c.buf.reserve(edtl.min(16 << 20) as usize);
            c.buf.extend_from_slice(&c.imm);
            c.imm = Bytes::new();
        }
        let (o, e) = (offset as usize, end as usize);
        if o == c.buf.len() {
            c.buf.extend_from_slice(&pdu.data);
        } else {
            if e > c.buf.len() {
                c.buf.resize(e, 0);
            }
            c.buf[o..e].copy_from_slice(&pdu.data);
        }
        c.received += len;
        if c.received == edtl {
            let data = std::mem::take(&mut c.buf).freeze();
            self.deliver(itt, data);
        } else if r2t_done {
            self.issue_r2ts(itt);
        }
        Ok(())
    }

    /// Issues the R2Ts of the waiting writes that fit in the solicited-data budget now, in
    /// the order they arrived.
    fn solicit_waiting(&mut self) {
        let budget = self.config.limits.max_solicited_data;
        while let Some(&itt) = self.session().waiting.front() {
            let s = self.session();
            if s.tasks.get(&itt).is_none_or(|t| t.collecting.is_none()) {
                s.waiting.pop_front();
                continue;
            }
            if !s.admit(itt, budget) {
                break;
            }
            self.issue_r2ts(itt);
        }
    }

    /// Answers the command with initiator task tag `itt`. The solicited data it held goes
    /// to waiting writes, whose R2Ts are then among the PDUs `poll_transmit` gives.
    pub fn complete_command(&mut self, itt: u32, response: CommandResponse) {
        let Phase::FullFeature(s) = &mut self.phase else {
            return;
        };
        let Some(task) = s.tasks.get(&itt) else {
            tracing::debug!(itt, "completion for an unknown or aborted task; ignored");
            return;
        };
        if task.collecting.is_some() {
            tracing::warn!(itt, "completion for a task still receiving data; ignored");
            return;
        }
        let task = s.forget_task(itt).expect("present");
        self.respond(itt, &task, response);
        self.solicit_waiting();
    }

    fn respond(&mut self, itt: u32, task: &Task, response: CommandResponse) {
        let s = self.session();
        let tx_max = s
            .info
            .params
            .initiator_max_recv_data_segment_length
            .max(512) as usize;
        let burst = s.info.params.max_burst_length.max(512) as usize;
        let (res_flags, res_count) = residual(task.edtl, response.transfer_len);
        let mut data = if task.read {
            response.data_in
        } else {
            Bytes::new()
        };
        data.truncate(task.edtl as usize);
        let status_in_data = !data.is_empty() && response.status == 0 && response.sense.is_none();
        let mut data_sn = 0u32;
        let mut pos = 0usize;
        while pos < data.len() {
            let burst_end = (pos / burst + 1) * burst;
            let end = (pos + tx_max).min(data.len()).min(burst_end);
            let last = end == data.len();
            let mut b = Bhs::target(TargetOpcode::DataIn);
            let mut flags = 0u8;
            if last || end == burst_end {
                flags |= 0x80;
            }
            b.set_itt(itt);
            b.set_u32(off::TTT, RESERVED_TAG);
            b.set_u32(off::DATASN, data_sn);
            b.set_u32(off::BUFFER_OFFSET, pos as u32);
            if last && status_in_data {
                flags |= 0x01 | res_flags;
                b.0[3] = response.status;
                b.set_u32(off::RESIDUAL, res_count);
                b.set_flags(flags);
                self.stamp(&mut b, true);
            } else {
                b.set_flags(flags);
                // StatSN is reserved without the S bit; Exp/MaxCmdSN still reported.
                self.stamp(&mut b, false);
                b.set_u32(off::STATSN, 0);
            }
            self.push(b, data.slice(pos..end));
            data_sn += 1;
            pos = end;
        }
        if status_in_data {
            return;
        }
        let mut b = Bhs::target(TargetOpcode::ScsiResponse);
        b.set_flags(0x80 | res_flags);
        b.0[2] = 0; // command completed at target
        b.0[3] = response.status;
        b.set_itt(itt);
        b.set_u32(off::DATASN, if task.read { data_sn } else { task.r2tsn });
        b.set_u32(off::RESIDUAL, res_count);
        self.stamp(&mut b, true);
        let payload = match response.sense {
            Some(sense) if !sense.is_empty() => {
                let n = sense.len().min(0xffff - 2);
                let mut v = Vec::with_capacity(n + 2);
                v.extend_from_slice(&(n as u16).to_be_bytes());
                v.extend_from_slice(&sense[..n]);
                Bytes::from(v)
            }
            _ => Bytes::new(),
        };
        self.push(b, payload);
    }

    // ---- NOP, text, logout, task management ----------------------------------------

    fn handle_nop_out(&mut self, pdu: Pdu) {
        let itt = pdu.bhs.itt();
        if itt == RESERVED_TAG {
            // No answer expected (either a reply to our NOP-In or a CmdSN update).
            return;
        }
        let tx_max = match &self.phase {
            Phase::FullFeature(s) => s.info.params.initiator_max_recv_data_segment_length,
            _ => 8192,
        } as usize;
        let mut b = Bhs::target(TargetOpcode::NopIn);
        b.set_flags(0x80);
        b.set_lun(pdu.bhs.lun());
        b.set_itt(itt);
        b.set_u32(off::TTT, RESERVED_TAG);
        self.stamp(&mut b, true);
        let mut data = pdu.data;
        data.truncate(tx_max);
        self.push(b, data);
    }

    fn handle_text(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let bhs = pdu.bhs;
        let itt = bhs.itt();
        let ttt = bhs.u32_at(off::TTT);
        let cont = bhs.flags() & 0x40 != 0;
        let s = self.session();
        let tx_max = s
            .info
            .params
            .initiator_max_recv_data_segment_length
            .max(512) as usize;
        let rest = if ttt != RESERVED_TAG && s.text_partial_ttt != Some(ttt) {
            match s.text_cont.take() {
                Some(tc) if tc.ttt == ttt && tc.itt == itt => tc.rest,
                _ => return Err(proto(format!("Text request with unknown TTT {ttt:#x}"))),
            }
        } else {
            if ttt == RESERVED_TAG {
                // A new request: resets any unfinished exchange.
                s.text_cont = None;
                s.text_partial.clear();
            }
            s.text_partial_ttt = None;
            s.text_partial.extend_from_slice(&pdu.data);
            if s.text_partial.len() > 64 * 1024 {
                return Err(proto("text request exceeds 64 KiB"));
            }
            if cont {
                // Acknowledge the partial request with an empty response (F=0, C=0); the
                // initiator sends the rest with this TTT.
                let t = s.next_ttt;
                s.next_ttt = s.next_ttt.wrapping_add(1).max(1);
                s.text_partial_ttt = Some(t);
                let mut b = Bhs::target(TargetOpcode::TextResponse);
                b.set_itt(itt);
                b.set_u32(off::TTT, t);
                self.stamp(&mut b, true);
                self.push(b, Bytes::new());
                return Ok(());
            }
            let req = std::mem::take(&mut s.text_partial);
            let keys = text::parse(&req)?;
            Bytes::from(self.text_answer(&keys))
        };
        let mut b = Bhs::target(TargetOpcode::TextResponse);
        b.set_itt(itt);
        let (chunk, more) = if rest.len() > tx_max {
            // Split on the byte budget; the initiator reassembles across PDUs.
            (rest.slice(..tx_max), Some(rest.slice(tx_max..)))
        } else {
            (rest, None)
        };
        let s = self.session();
        match more {
            Some(more) => {
                let t = s.next_ttt;
                s.next_ttt = s.next_ttt.wrapping_add(1).max(1);
                s.text_cont = Some(TextContinuation {
                    itt,
                    ttt: t,
                    rest: more,
                });
                b.set_flags(0x40); // C=1, F=0
                b.set_u32(off::TTT, t);
            }
            None => {
                b.set_flags(0x80);
                b.set_u32(off::TTT, RESERVED_TAG);
            }
        }
        self.stamp(&mut b, true);
        self.push(b, chunk);
        Ok(())
    }

    fn text_answer(&mut self, keys: &[(String, String)]) -> Vec<u8> {
        let s = match &self.phase {
            Phase::FullFeature(s) => s,
            _ => unreachable!(),
        };
        let mut out = Vec::new();
        for (k, v) in keys {
            match k.as_str() {
                "SendTargets" => {
                    let discovery = s.info.session_type == SessionType::Discovery;
                    let access = &self.config.access;
                    let allowed = |t: &str| {
                        access.check(t, &s.info.initiator, self.peer) != crate::auth::Access::Denied
                    };
                    for t in self.config.targets.iter().filter(|t| allowed(&t.name)) {
                        let wanted = match v.as_str() {
                            "All" if discovery => true,
                            "All" | "" => t.name == s.info.target,
                            name => t.name == name && (discovery || t.name == s.info.target),
                        };
                        if wanted {
                            text::push(&mut out, "TargetName", &t.name);
                            for a in &t.addresses {
                                text::push(&mut out, "TargetAddress", a);
                            }
                        }
                    }
                }
                _ if matches!(v.as_str(), "NotUnderstood" | "Irrelevant" | "Reject") => {}
                "MaxRecvDataSegmentLength" => text::push(&mut out, k, "Reject"),
                _ => text::push(&mut out, k, "NotUnderstood"),
            }
        }
        out
    }

    fn handle_logout(&mut self, pdu: Pdu) {
        let reason = pdu.bhs.flags() & 0x7f;
        let cid = pdu.bhs.u16_at(20);
        let our_cid = self.session().info.cid;
        let response = match reason {
            0 => 0,
            1 if cid == our_cid => 0,
            1 => 1, // CID not found
            _ => 2, // connection recovery is not supported
        };
        let mut b = Bhs::target(TargetOpcode::LogoutResponse);
        b.set_flags(0x80);
        b.0[2] = response;
        b.set_itt(pdu.bhs.itt());
        self.stamp(&mut b, true);
        // Time2Wait / Time2Retain (bytes 40..44) stay 0: no reconnection state is kept.
        self.push(b, Bytes::new());
        if response == 0 {
            let s = self.session();
            s.tasks.clear();
            s.pending_tmf.clear();
            s.waiting.clear();
            s.solicited = 0;
            self.events.push_back(Event::LoggedOut);
            self.closing = true;
        }
    }

    fn handle_tmf(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let bhs = pdu.bhs;
        let function = bhs.flags() & 0x7f;
        let itt = bhs.itt();
        let lun = bhs.lun();
        let referenced_itt = bhs.u32_at(off::TTT);
        let s = self.session();
        if s.info.session_type == SessionType::Discovery {
            return Err(proto("task management in a discovery session"));
        }
        match function {
            1 => {
                // ABORT TASK: answer here for tasks the layer above has not seen.
                if let Some(task) = s.tasks.get(&referenced_itt) {
                    if task.collecting.is_none() {
                        // Delivered: the layer above aborts it (abort_command) and answers.
                    } else {
                        s.forget_task(referenced_itt);
                        self.send_tmf_response(itt, 0);
                        self.solicit_waiting();
                        return Ok(());
                    }
                } else if s
                    .stash
                    .values()
                    .any(|p| p.bhs.opcode() == 0x01 && p.bhs.itt() == referenced_itt)
                {
                    // Not yet in CmdSN order: drop it when its turn comes.
                    s.aborted_early.insert(referenced_itt);
                    self.send_tmf_response(itt, 0);
                    return Ok(());
                } else {
                    // RFC 7143 11.5.1: an unknown task whose RefCmdSN is inside the window
                    // and before this request counts as received and aborted; otherwise it
                    // has completed already ("task does not exist").
                    let ref_sn = bhs.u32_at(32);
                    let tmf_sn = bhs.u32_at(off::CMDSN);
                    let response = if seq::in_window(ref_sn, s.exp_cmd_sn, s.max_cmd_sn)
                        && seq::lt(ref_sn, tmf_sn)
                    {
                        0
                    } else {
                        1
                    };
                    self.send_tmf_response(itt, response);
                    return Ok(());
                }
            }
            2 | 4..=7 => {
                // Drop tasks still collecting data that this function aborts: the layer
                // above has not seen them.
                let doomed: Vec<u32> = s
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.collecting.is_some() && (function >= 6 || t.lun == lun))
                    .map(|(k, _)| *k)
                    .collect();
                for t in doomed {
                    s.forget_task(t);
                }
                self.solicit_waiting();
            }
            3 => {}
            8 => {
                // TASK REASSIGN needs ERL 2: "task allegiance reassignment not supported".
                self.send_tmf_response(itt, 4);
                return Ok(());
            }
            _ => {
                // Unknown function: "function rejected".
                self.send_tmf_response(itt, 255);
                return Ok(());
            }
        }
        self.session().pending_tmf.insert(itt);
        self.events
            .push_back(Event::TaskManagement(TaskManagementRequest {
                itt,
                function,
                lun,
                referenced_itt,
            }));
        Ok(())
    }

    fn send_tmf_response(&mut self, itt: u32, response: u8) {
        let mut b = Bhs::target(TargetOpcode::TaskManagementResponse);
        b.set_flags(0x80);
        b.0[2] = response;
        b.set_itt(itt);
        self.stamp(&mut b, true);
        self.push(b, Bytes::new());
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends every PDU ready to send to `out`.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) {
        while let Some(p) = self.out.pop_front() {
            pdu::encode(out, &p.bhs, &p.data);
        }
        if self.closing && !matches!(self.phase, Phase::Finished) {
            self.phase = Phase::Finished;
        }
    }

    /// Answers a task management request with a response code (RFC 7143 11.6.1:
    /// 0 = function complete, 1 = task does not exist, 2 = LUN does not exist,
    /// 5 = function not supported, ...).
    pub fn complete_task_management(&mut self, itt: u32, response: u8) {
        let Phase::FullFeature(s) = &mut self.phase else {
            return;
        };
        if !s.pending_tmf.remove(&itt) {
            tracing::debug!(itt, "task management completion for an unknown request");
            return;
        }
        self.send_tmf_response(itt, response);
    }

    /// Forgets a command the layer above aborted: no response will be sent for it, and a
    /// later `complete_command` for `itt` is ignored. The solicited data it held goes to
    /// waiting writes, whose R2Ts are then among the PDUs `poll_transmit` gives.
    pub fn abort_command(&mut self, itt: u32) {
        let Phase::FullFeature(s) = &mut self.phase else {
            return;
        };
        if s.forget_task(itt).is_some() {
            self.solicit_waiting();
        }
    }

    /// True once the connection has nothing more to do (logged out, or login failed) and
    /// the socket may be closed after transmitting what `poll_transmit` gave.
    pub fn is_finished(&self) -> bool {
        self.closing
    }
}
