//! Login phase state machine (RFC 7143 sections 6.3 and 11.12/11.13).
//!
//! Stages: security negotiation (CSG 0), login operational negotiation (CSG 1) and full
//! feature phase (NSG 3). Authentication supports `AuthMethod=None`; [`AuthMethod`] is the
//! seam for CHAP. The initiator may start in either stage, skip the operational stage, and
//! offer operational keys during the security stage. When it asks to go from the security
//! stage straight to full feature phase while the target still has keys to propose (see
//! [`crate::negotiation::PROPOSED_KEYS`]), the target selects the operational stage as the
//! next stage instead (RFC 7143 6.3) and makes its proposals there.

use crate::negotiation::{KeyOutcome, Negotiator, Params};
use crate::pdu::{off, Bhs, Pdu, TargetOpcode};
use crate::{text, Config, SessionType};

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
    /// Target not found.
    pub const NOT_FOUND: u16 = 0x0203;
    /// Unsupported version.
    pub const UNSUPPORTED_VERSION: u16 = 0x0205;
    /// Missing parameter.
    pub const MISSING_PARAMETER: u16 = 0x0207;
    /// Session type not supported.
    pub const SESSION_TYPE_NOT_SUPPORTED: u16 = 0x0209;
    /// Session does not exist.
    pub const SESSION_DOES_NOT_EXIST: u16 = 0x020a;
    /// Invalid request during login.
    pub const INVALID_DURING_LOGIN: u16 = 0x020b;
}

/// Authentication methods the target can run in the security stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No authentication.
    None,
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
            neg: Negotiator::new(&config.limits),
            pending: Vec::new(),
            declared_first: false,
            declared_mrdsl: false,
            unanswered_rounds: 0,
            tsih,
            cmd_sn: 0,
        }
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

    fn fail(&self, req: &Bhs, status: u16, why: impl Into<String>) -> LoginStep {
        let csg = (req.flags() >> 2) & 3;
        LoginStep::Failed(
            self.response(req, false, csg, 0, status),
            Vec::new(),
            why.into(),
        )
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
            if req.u16_at(14) != 0 {
                return self.fail(
                    req,
                    status::SESSION_DOES_NOT_EXIST,
                    "login with non-zero TSIH (adding connections is not supported)",
                );
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
                    } else if v.split(',').any(|m| m == "None") {
                        // CHAP would be chosen here when configured for the target.
                        self.auth = Some(AuthMethod::None);
                        text::push(&mut answer, k, "None");
                    } else {
                        return self.fail(
                            req,
                            status::AUTH_FAILURE,
                            format!("no supported AuthMethod in {v:?}"),
                        );
                    }
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
        if let Some(at) = first_burst_at {
            let mut fbl = Vec::new();
            text::push(
                &mut fbl,
                "FirstBurstLength",
                &self.neg.params.first_burst_length.to_string(),
            );
            answer.splice(at..at, fbl);
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
        let mut transit = transit;
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
