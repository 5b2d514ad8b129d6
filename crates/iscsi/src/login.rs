//! Login phase state machine (RFC 7143 sections 6.3 and 11.12/11.13).
//!
//! Stages: security negotiation (CSG 0), login operational negotiation (CSG 1) and full
//! feature phase (NSG 3). On the first request the target asks [`crate::auth::AccessPolicy`]
//! whether the initiator may log in (else Authorization failure, 0x0202) and whether it must
//! pass CHAP; if so the login stays in the security stage until the [`ChapExchange`] is done,
//! and every authentication failure is answered with status 0x0201. The initiator may start in either stage, skip the operational stage, and
//! offer operational keys during the security stage. When it asks to go from the security
//! stage straight to full feature phase while the target still has keys to propose (see
//! [`crate::negotiation::PROPOSED_KEYS`]), the target selects the operational stage as the
//! next stage instead (RFC 7143 6.3) and makes its proposals there.

use crate::auth::chap::RANDOM_LEN;
use crate::auth::{Access, ChapCredentials, ChapExchange};
use crate::negotiation::{KeyOutcome, Negotiator, Params};
use crate::pdu::{off, Bhs, Pdu, TargetOpcode};
use crate::{text, Config, SessionType};
use core::net::IpAddr;

/// Login stage numbers as carried in CSG/NSG.
pub const STAGE_SECURITY: u8 = 0;
/// Login operational negotiation stage.
pub const STAGE_OPERATIONAL: u8 = 1;
/// Full feature phase.
pub const STAGE_FULL_FEATURE: u8 = 3;

/// Most text one login request may carry across Login PDUs with the C bit (the same bound
/// as a Text request in full feature phase).
pub const MAX_LOGIN_TEXT: usize = 64 * 1024;

/// Login requests the target answers while its own proposals stay unanswered before it
/// gives up on the login (initiator error).
pub const MAX_UNANSWERED_ROUNDS: u8 = 4;

/// Login response status (class, detail) pairs (RFC 7143 11.13.5).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Initiator error (miscellaneous).
    pub const INITIATOR_ERROR: u16 = 0x0200;
    /// Authentication failure.
    pub const AUTH_FAILURE: u16 = 0x0201;
    /// Authorization failure: the initiator may not log in to this target.
    pub const AUTHORIZATION_FAILURE: u16 = 0x0202;
    /// Target not found.
    pub const NOT_FOUND: u16 = 0x0203;
    /// Unsupported version.
    pub const UNSUPPORTED_VERSION: u16 = 0x0205;
    /// Too many connections: the session named by TSIH exists, but it may not have another
    /// connection (MaxConnections=1).
    pub const TOO_MANY_CONNECTIONS: u16 = 0x0206;
    /// Missing parameter.
    pub const MISSING_PARAMETER: u16 = 0x0207;
    /// Session type not supported.
    pub const SESSION_TYPE_NOT_SUPPORTED: u16 = 0x0209;
    /// Session does not exist.
    pub const SESSION_DOES_NOT_EXIST: u16 = 0x020a;
    /// Invalid request during login.
    pub const INVALID_DURING_LOGIN: u16 = 0x020b;
    /// Target error (miscellaneous).
    pub const TARGET_ERROR: u16 = 0x0300;
}

/// Authentication methods the target can run in the security stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No authentication.
    None,
    /// CHAP (RFC 7143 12.1.3).
    Chap,
}

/// Where authentication stands.
#[derive(Debug)]
enum Auth {
    /// Before the first complete request.
    Undecided,
    /// No authentication needed.
    Open,
    /// CHAP needed; AuthMethod not negotiated yet.
    ChapRequired(ChapCredentials),
    /// AuthMethod=CHAP chosen; the exchange runs.
    Chap(Box<ChapExchange>),
    /// CHAP passed.
    Authenticated,
}

/// Result of one login request.
#[derive(Debug)]
pub enum LoginStep {
    /// Send this response and keep negotiating.
    Continue(Bhs, Vec<u8>),
    /// Send this final response; the connection is in full feature phase.
    Complete(Bhs, Vec<u8>, Box<LoginOutcome>),
    /// Send this reject response, then close.
    Failed(Bhs, Vec<u8>, String),
}

/// What a successful login established.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// InitiatorName.
    pub initiator: String,
    /// TargetName (empty for discovery).
    pub target: String,
    /// Session type.
    pub session_type: SessionType,
    /// Initiator session ID.
    pub isid: [u8; 6],
    /// Assigned TSIH.
    pub tsih: u16,
    /// Connection ID.
    pub cid: u16,
    /// Negotiated parameters.
    pub params: Params,
    /// CmdSN the full feature phase starts with.
    pub exp_cmd_sn: u32,
}

/// The login state machine of one connection.
#[derive(Debug)]
pub struct Login {
    started: bool,
    stage: u8,
    isid: [u8; 6],
    cid: u16,
    initiator: Option<String>,
    target: Option<String>,
    session_type: SessionType,
    auth: Option<AuthMethod>,
    access: Auth,
    /// The initiator's address, for ACL entries with networks.
    peer: Option<IpAddr>,
    neg: Negotiator,
    /// Partial text of a request with the C bit set.
    pending: Vec<u8>,
    declared_first: bool,
    declared_mrdsl: bool,
    /// Responses sent in a row that held the initiator in the operational stage because our
    /// proposals were unanswered.
    unanswered_rounds: u8,
    tsih: u16,
    cmd_sn: u32,
    /// Set by [`Login::tsih_names_live_session`]: the first request's ISID and TSIH name a
    /// session in full feature phase.
    tsih_names_live_session: bool,
}

/// The log reason of a login refused for a digest the operator requires.
fn digest_refusal(key: &str) -> String {
    format!(
        "{key}: the target requires CRC32C (required digests) and the initiator did not \
         offer it; refused"
    )
}

fn bool_flag(b: bool, bit: u8) -> u8 {
    if b {
        bit
    } else {
        0
    }
}

impl Login {
    /// A fresh login; `tsih` is assigned to the session if the login succeeds.
    pub fn new(config: &Config, tsih: u16) -> Self {
        Login {
            started: false,
            stage: STAGE_SECURITY,
            isid: [0; 6],
            cid: 0,
            initiator: None,
            target: None,
            session_type: SessionType::Normal,
            auth: None,
            access: Auth::Undecided,
            peer: None,
            neg: Negotiator::new(&config.limits),
            pending: Vec::new(),
            declared_first: false,
            declared_mrdsl: false,
            unanswered_rounds: 0,
            tsih,
            cmd_sn: 0,
            tsih_names_live_session: false,
        }
    }

    /// Tells the login, before its first request, that the request's ISID and non-zero
    /// TSIH name a live session: the login is then refused with Too many connections
    /// (0x0206) rather than Session does not exist (0x020a).
    pub fn tsih_names_live_session(&mut self) {
        self.tsih_names_live_session = true;
    }

    /// Sets the initiator's address (before the first request), for ACL entries that list
    /// networks; without it only entries without networks match.
    pub fn set_peer(&mut self, addr: IpAddr) {
        self.peer = Some(addr);
    }

    /// The authentication method negotiated, if any.
    pub fn auth_method(&self) -> Option<AuthMethod> {
        self.auth
    }

    /// True once the first login request was seen.
    pub fn started(&self) -> bool {
        self.started
    }

    /// CmdSN carried by the login requests (the first ExpCmdSN).
    pub fn cmd_sn(&self) -> u32 {
        self.cmd_sn
    }

    fn response(&self, req: &Bhs, transit: bool, csg: u8, nsg: u8, status: u16) -> Bhs {
        let mut b = Bhs::target(TargetOpcode::LoginResponse);
        let nsg = if transit { nsg } else { 0 };
        b.set_flags(bool_flag(transit, 0x80) | (csg << 2) | nsg);
        b.0[2] = 0; // Version-max
        b.0[3] = 0; // Version-active
        b.0[8..14].copy_from_slice(&req.0[8..14]);
        if status == status::SUCCESS && transit && nsg == STAGE_FULL_FEATURE {
            b.set_u16(14, self.tsih);
        }
        b.set_itt(req.itt());
        b.0[36] = (status >> 8) as u8;
        b.0[37] = status as u8;
        b
    }

    /// The TargetName the initiator asked for so far ("" if none).
    pub fn target_name(&self) -> &str {
        self.target.as_deref().unwrap_or("")
    }

    fn fail(&self, req: &Bhs, status: u16, why: impl Into<String>) -> LoginStep {
        let csg = (req.flags() >> 2) & 3;
        LoginStep::Failed(
            self.response(req, false, csg, 0, status),
            Vec::new(),
            why.into(),
        )
    }

    /// On the first complete request: asks the access policy whether the initiator may log
    /// in, and whether it must pass CHAP.
    fn authorize(&mut self, config: &Config, req: &Bhs) -> Result<(), LoginStep> {
        if !matches!(self.access, Auth::Undecided) {
            return Ok(());
        }
        let initiator = self.initiator.clone().unwrap_or_default();
        let decision = match self.session_type {
            SessionType::Normal => {
                let target = self.target.clone().unwrap_or_default();
                match config.access.check(&target, &initiator, self.peer) {
                    Access::Denied => {
                        let from = self.peer.map(|a| format!(" from {a}")).unwrap_or_default();
                        return Err(self.fail(
                            req,
                            status::AUTHORIZATION_FAILURE,
                            format!(
                                "initiator {initiator}{from} is not allowed to log in to {target}"
                            ),
                        ));
                    }
                    Access::Granted(chap) => chap,
                }
            }
            SessionType::Discovery => match config.access.check_discovery(&initiator, self.peer) {
                Access::Denied => {
                    return Err(self.fail(
                        req,
                        status::AUTHORIZATION_FAILURE,
                        format!("initiator {initiator} may not open a discovery session"),
                    ))
                }
                Access::Granted(chap) => chap,
            },
        };
        self.access = match decision {
            Some(chap) => Auth::ChapRequired(chap),
            None => Auth::Open,
        };
        Ok(())
    }

    /// Handles one Login Request PDU. StatSN/ExpCmdSN/MaxCmdSN are filled by the caller.
    pub fn handle(&mut self, config: &Config, pdu: &Pdu) -> LoginStep {
        let req = &pdu.bhs;
        let flags = req.flags();
        let transit = flags & 0x80 != 0;
        let cont = flags & 0x40 != 0;
        let csg = (flags >> 2) & 3;
        let nsg = flags & 3;
        if transit && cont {
            return self.fail(
                req,
                status::INITIATOR_ERROR,
                "login request with both T and C",
            );
        }
        if !self.started {
            self.started = true;
            let (vmax, vmin) = (req.0[2], req.0[3]);
            if vmin > 0 || vmax < vmin {
                return self.fail(
                    req,
                    status::UNSUPPORTED_VERSION,
                    format!("unsupported version range {vmin}..{vmax}"),
                );
            }
            self.isid.copy_from_slice(&req.0[8..14]);
            self.cid = req.u16_at(20);
            self.cmd_sn = req.u32_at(off::CMDSN);
            let tsih = req.u16_at(14);
            if tsih != 0 {
                // A login that adds a connection to the session ISID and TSIH name (RFC
                // 7143 6.3.4). We keep one connection per session.
                return if self.tsih_names_live_session {
                    self.fail(
                        req,
                        status::TOO_MANY_CONNECTIONS,
                        format!("TSIH {tsih:#06x} names a live session; MaxConnections is 1"),
                    )
                } else {
                    self.fail(
                        req,
                        status::SESSION_DOES_NOT_EXIST,
                        format!("TSIH {tsih:#06x} names no session"),
                    )
                };
            }
            if csg != STAGE_SECURITY && csg != STAGE_OPERATIONAL {
                return self.fail(req, status::INITIATOR_ERROR, format!("bad CSG {csg}"));
            }
            self.stage = csg;
        } else if req.0[8..14] != self.isid {
            return self.fail(req, status::INITIATOR_ERROR, "ISID changed during login");
        }
        if csg != self.stage {
            return self.fail(
                req,
                status::INITIATOR_ERROR,
                format!("CSG {csg} but login is in stage {}", self.stage),
            );
        }
        if self.pending.len() + pdu.data.len() > MAX_LOGIN_TEXT {
            return self.fail(
                req,
                status::INITIATOR_ERROR,
                format!("login text exceeds {MAX_LOGIN_TEXT} bytes"),
            );
        }
        self.pending.extend_from_slice(&pdu.data);
        if cont {
            // Acknowledge a partial text with an empty response (RFC 7143 6.3).
            return LoginStep::Continue(self.response(req, false, csg, 0, 0), Vec::new());
        }
        let data = std::mem::take(&mut self.pending);
        let keys = match text::parse(&data) {
            Ok(k) => k,
            Err(e) => return self.fail(req, status::INITIATOR_ERROR, e.to_string()),
        };
        let mut answer = Vec::new();
        // FirstBurstLength is answered after the loop, with the value in force once a
        // MaxBurstLength later in the same request is known.
        let mut first_burst_at: Option<usize> = None;
        // AuthMethod's offer and where its answer goes; the CHAP keys of this request.
        let mut auth_offer: Option<(String, usize)> = None;
        let mut chap_keys: Vec<(String, String)> = Vec::new();
        for (k, v) in &keys {
            match k.as_str() {
                "InitiatorName" => self.initiator = Some(v.clone()),
                "TargetName" => self.target = Some(v.clone()),
                "InitiatorAlias" => {}
                "SessionType" => {
                    self.session_type = match v.as_str() {
                        "Normal" => SessionType::Normal,
                        "Discovery" => SessionType::Discovery,
                        _ => {
                            return self.fail(
                                req,
                                status::SESSION_TYPE_NOT_SUPPORTED,
                                format!("session type {v:?}"),
                            )
                        }
                    }
                }
                "AuthMethod" => {
                    if csg != STAGE_SECURITY {
                        text::push(&mut answer, k, "Irrelevant");
                    } else if auth_offer.is_some() || self.auth.is_some() {
                        return self.fail(
                            req,
                            status::INITIATOR_ERROR,
                            "AuthMethod negotiated twice",
                        );
                    } else {
                        // Answered once the access decision is known.
                        auth_offer = Some((v.clone(), answer.len()));
                    }
                }
                _ if k.starts_with("CHAP_") => {
                    if csg != STAGE_SECURITY {
                        return self.fail(
                            req,
                            status::INITIATOR_ERROR,
                            format!("{k} outside the security stage"),
                        );
                    }
                    chap_keys.push((k.clone(), v.clone()));
                }
                _ => match self.neg.offer(k, v, self.session_type) {
                    KeyOutcome::Respond(r)
                        if k == "FirstBurstLength" && r.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        first_burst_at = Some(answer.len());
                    }
                    KeyOutcome::Respond(r) => text::push(&mut answer, k, &r),
                    KeyOutcome::NoResponse => {}
                    KeyOutcome::Duplicate => {
                        return self.fail(
                            req,
                            status::INITIATOR_ERROR,
                            format!("key {k} negotiated twice"),
                        )
                    }
                },
            }
        }
        self.neg.settle();
        if let Some(key) = self.neg.missing_required_digest(self.session_type) {
            if self.neg.offered(key) {
                return self.fail(req, status::INITIATOR_ERROR, digest_refusal(key));
            }
        }
        // Answers that go back where their keys were, latest position first.
        let mut inserts: Vec<(usize, Vec<u8>)> = Vec::new();
        if let Some(at) = first_burst_at {
            let mut fbl = Vec::new();
            text::push(
                &mut fbl,
                "FirstBurstLength",
                &self.neg.params.first_burst_length.to_string(),
            );
            inserts.push((at, fbl));
        }
        // The first request must name the initiator and, for normal sessions, the target.
        if !self.declared_first {
            let Some(initiator) = &self.initiator else {
                return self.fail(req, status::MISSING_PARAMETER, "InitiatorName missing");
            };
            if initiator.is_empty() {
                return self.fail(req, status::MISSING_PARAMETER, "InitiatorName empty");
            }
            if self.session_type == SessionType::Normal {
                let Some(target) = &self.target else {
                    return self.fail(req, status::MISSING_PARAMETER, "TargetName missing");
                };
                let Some(info) = config.targets.iter().find(|t| &t.name == target) else {
                    return self.fail(req, status::NOT_FOUND, format!("unknown target {target}"));
                };
                if let Some(alias) = &info.alias {
                    text::push(&mut answer, "TargetAlias", alias);
                }
                text::push(
                    &mut answer,
                    "TargetPortalGroupTag",
                    &config.portal_group_tag.to_string(),
                );
            }
            self.declared_first = true;
        }
        if let Err(step) = self.authorize(config, req) {
            return step;
        }
        // The security stage: AuthMethod, then the CHAP exchange.
        let mut chap_progress = false;
        if let Some((offer, at)) = &auth_offer {
            let offers = |method: &str| offer.split(',').any(|m| m == method);
            let chosen = match std::mem::replace(&mut self.access, Auth::Undecided) {
                Auth::ChapRequired(chap) if offers("CHAP") => {
                    let mut random = [0u8; RANDOM_LEN];
                    if let Err(e) = getrandom::fill(&mut random) {
                        return self.fail(
                            req,
                            status::TARGET_ERROR,
                            format!("no random bytes for a CHAP challenge: {e}"),
                        );
                    }
                    self.access = Auth::Chap(Box::new(ChapExchange::new(chap, random)));
                    AuthMethod::Chap
                }
                Auth::ChapRequired(_) => {
                    return self.fail(
                        req,
                        status::AUTH_FAILURE,
                        format!("CHAP is required but the initiator offers AuthMethod={offer}"),
                    );
                }
                Auth::Open if offers("None") => {
                    self.access = Auth::Open;
                    AuthMethod::None
                }
                _ => {
                    return self.fail(
                        req,
                        status::AUTH_FAILURE,
                        format!("no supported AuthMethod in {offer:?}"),
                    );
                }
            };
            self.auth = Some(chosen);
            let mut a = Vec::new();
            let value = match chosen {
                AuthMethod::None => "None",
                AuthMethod::Chap => "CHAP",
            };
            text::push(&mut a, "AuthMethod", value);
            inserts.push((*at, a));
            chap_progress = chosen == AuthMethod::Chap;
        }
        if !chap_keys.is_empty() {
            let Auth::Chap(exchange) = &mut self.access else {
                return self.fail(
                    req,
                    status::INITIATOR_ERROR,
                    "CHAP keys without AuthMethod=CHAP",
                );
            };
            match exchange.receive(&chap_keys) {
                Ok(keys) => {
                    for (k, v) in keys {
                        text::push(&mut answer, &k, &v);
                    }
                    chap_progress = true;
                    if exchange.is_done() {
                        tracing::info!(
                            initiator = self.initiator.as_deref().unwrap_or(""),
                            user = exchange.user(),
                            algorithm = ?exchange.algorithm(),
                            "CHAP authentication passed"
                        );
                        self.access = Auth::Authenticated;
                    }
                }
                Err(e) => {
                    let initiator = self.initiator.clone().unwrap_or_default();
                    return self.fail(
                        req,
                        status::AUTH_FAILURE,
                        format!("CHAP authentication of {initiator} failed: {e}"),
                    );
                }
            }
        }
        inserts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        for (at, bytes) in inserts {
            answer.splice(at..at, bytes);
        }
        let mut transit = transit;
        if matches!(self.access, Auth::ChapRequired(_) | Auth::Chap(_)) {
            // Authentication is owed: the initiator may not leave the security stage.
            if csg != STAGE_SECURITY {
                return self.fail(
                    req,
                    status::AUTH_FAILURE,
                    "authentication is required but the login skipped the security stage",
                );
            }
            if transit {
                if !chap_progress {
                    return self.fail(
                        req,
                        status::AUTH_FAILURE,
                        "the initiator tried to leave the security stage before authenticating",
                    );
                }
                // Hold it in the stage (T=0) while the exchange goes on (RFC 7143 6.3).
                transit = false;
            }
        }
        let mut next = self.stage;
        if transit {
            let ok = match csg {
                STAGE_SECURITY => nsg == STAGE_OPERATIONAL || nsg == STAGE_FULL_FEATURE,
                STAGE_OPERATIONAL => nsg == STAGE_FULL_FEATURE,
                _ => false,
            };
            if !ok {
                return self.fail(
                    req,
                    status::INITIATOR_ERROR,
                    format!("illegal stage transition {csg} -> {nsg}"),
                );
            }
            next = nsg;
            if csg == STAGE_SECURITY
                && nsg == STAGE_FULL_FEATURE
                && self.neg.has_proposals(self.session_type)
            {
                // The security stage is done but the initiator skips the operational stage
                // while keys we want to propose are open. The target selects the next stage,
                // never above the initiator's (RFC 7143 6.3), and a T=1 response may not
                // carry keys that need an answer: go to the operational stage, and propose
                // there.
                next = STAGE_OPERATIONAL;
            }
        }
        // Declare our receive limit once the operational stage is reached or skipped.
        if !self.declared_mrdsl && (csg == STAGE_OPERATIONAL || next != STAGE_SECURITY) {
            text::push(
                &mut answer,
                "MaxRecvDataSegmentLength",
                &self
                    .neg
                    .params
                    .target_max_recv_data_segment_length
                    .to_string(),
            );
            self.declared_mrdsl = true;
        }
        // In the operational stage the target proposes the keys it wants that the initiator
        // did not offer, and stays in the stage (T=0) until they are answered (RFC 7143 6.3).
        if csg == STAGE_OPERATIONAL {
            for (k, v) in self.neg.propose(self.session_type) {
                text::push(&mut answer, k, &v);
            }
            if self.neg.awaiting_answers() {
                // An initiator that keeps ignoring our proposals would keep the login
                // going forever; a few rounds are plenty for one that answers them.
                self.unanswered_rounds += 1;
                if self.unanswered_rounds > MAX_UNANSWERED_ROUNDS {
                    return self.fail(
                        req,
                        status::INITIATOR_ERROR,
                        "the initiator did not answer the target's proposals".to_string(),
                    );
                }
                transit = false;
                next = self.stage;
            }
        }
        if next == STAGE_FULL_FEATURE {
            if let Some(key) = self.neg.missing_required_digest(self.session_type) {
                return self.fail(req, status::INITIATOR_ERROR, digest_refusal(key));
            }
        }
        let rsp = self.response(req, transit, csg, next, status::SUCCESS);
        self.stage = next;
        if next == STAGE_FULL_FEATURE {
            let outcome = LoginOutcome {
                initiator: self.initiator.clone().unwrap_or_default(),
                target: match self.session_type {
                    SessionType::Normal => self.target.clone().unwrap_or_default(),
                    SessionType::Discovery => String::new(),
                },
                session_type: self.session_type,
                isid: self.isid,
                tsih: self.tsih,
                cid: self.cid,
                params: self.neg.params.clone(),
                exp_cmd_sn: self.cmd_sn,
            };
            LoginStep::Complete(rsp, answer, Box::new(outcome))
        } else {
            LoginStep::Continue(rsp, answer)
        }
    }
}
