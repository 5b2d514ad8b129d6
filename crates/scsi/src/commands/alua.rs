//! Asymmetric logical unit access (SPC-4 5.16), implicit only: several gateways export the
//! same logical unit, each through a target port of its own in a target port group of
//! its own, whose asymmetric access state the operator sets ([`ScsiTarget::set_alua`]) and
//! may change while the target serves ([`ScsiTarget::set_alua_state`]: every nexus of
//! every LU gets ASYMMETRIC ACCESS STATE CHANGED). With it, standard INQUIRY data says
//! TPGS=01b, the Device Identification VPD page carries the relative target port and
//! target port group designators, and REPORT TARGET PORT GROUPS (SPC-4 6.36) lists every
//! gateway's group. Without it none of that is reported.
//!
//! The state is per target, shared by its successors ([`AluaCell`]); a logical unit may
//! have states of its own instead ([`ScsiTarget::set_lu_alua`], the daemon's failover per
//! LU: SPC-4 reports asymmetric access states per logical unit, and REPORT TARGET PORT
//! GROUPS sent to an LU reports that LU's), kept in a cell of the LU the same way. Either
//! is enforced
//! ([`AluaCell::refusal`], checked by [`ScsiTarget::start`] after unit attentions and
//! before reservations, one atomic load while the port is active): active/optimized and
//! active/non-optimized serve everything; standby, unavailable, transitioning and offline
//! serve only the commands of [`SERVED`] and refuse the rest with NOT READY and 04h/0Bh
//! (standby), 04h/0Ch (unavailable), 04h/0Ah (transitioning) or 04h/12h (offline).
//!
//! Deliberately absent: SET TARGET PORT GROUPS (explicit ALUA). Each gateway is its own
//! process with its own group; a host's STPG through one gateway could change only that
//! gateway's state, not the others' it would have to change with it, so the states are
//! the operator's (or a cluster manager's) to set on every gateway, through the daemon's
//! administration interface. STPG is answered ILLEGAL REQUEST, INVALID COMMAND OPERATION
//! CODE, and TPGS stays 01b (implicit only).

use super::exec::done;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be32, opcode as op, reserved};
use crate::sense::{Asc, Sense, SenseKey};
use crate::{Response, ScsiTarget, Start};
use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::Mutex;

const F: u8 = 0xFF;

/// MAINTENANCE IN service action REPORT TARGET PORT GROUPS.
const REPORT_TARGET_PORT_GROUPS: u16 = 0x0A;

pub(super) const COMMANDS: &[CommandDef] = &[CommandDef::new::<ReportTargetPortGroups>(
    op::MAINTENANCE_IN,
    &[0xA3, 0xEA, 0, 0, 0, 0, F, F, F, F, 0, 0],
)
.sa(REPORT_TARGET_PORT_GROUPS)
.offered_by_target(has_alua)];

fn has_alua(target: &ScsiTarget) -> bool {
    target.has_alua()
}

/// An asymmetric access state (SPC-4 5.16.2.4); the ones an operator may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessState {
    /// Active/optimized (0h).
    ActiveOptimized,
    /// Active/non-optimized (1h).
    ActiveNonOptimized,
    /// Standby (2h).
    Standby,
    /// Unavailable (3h).
    Unavailable,
    /// Offline (Eh).
    Offline,
    /// Transitioning between states (Fh).
    Transitioning,
}

impl AccessState {
    /// Every state, in code order.
    pub const ALL: [AccessState; 6] = [
        AccessState::ActiveOptimized,
        AccessState::ActiveNonOptimized,
        AccessState::Standby,
        AccessState::Unavailable,
        AccessState::Offline,
        AccessState::Transitioning,
    ];

    /// The ASYMMETRIC ACCESS STATE code.
    fn code(self) -> u8 {
        match self {
            AccessState::ActiveOptimized => 0x0,
            AccessState::ActiveNonOptimized => 0x1,
            AccessState::Standby => 0x2,
            AccessState::Unavailable => 0x3,
            AccessState::Offline => 0xE,
            AccessState::Transitioning => 0xF,
        }
    }

    /// Its name as the command line and config file spell it.
    pub fn name(self) -> &'static str {
        match self {
            AccessState::ActiveOptimized => "active-optimized",
            AccessState::ActiveNonOptimized => "active-non-optimized",
            AccessState::Standby => "standby",
            AccessState::Unavailable => "unavailable",
            AccessState::Offline => "offline",
            AccessState::Transitioning => "transitioning",
        }
    }

    /// Parses a state's [`AccessState::name`].
    pub fn parse(s: &str) -> Option<AccessState> {
        AccessState::ALL.into_iter().find(|a| a.name() == s)
    }
}

impl std::fmt::Display for AccessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A target port group: one gateway's target port (its RELATIVE TARGET PORT IDENTIFIER is
/// the group's id) and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortGroup {
    /// TARGET PORT GROUP and RELATIVE TARGET PORT IDENTIFIER, 1..=65535.
    pub id: u16,
    /// Its asymmetric access state.
    pub state: AccessState,
}

/// This gateway's target port group and the other gateways' that export the same LUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alua {
    /// This gateway's group.
    pub own: PortGroup,
    /// The other gateways' groups.
    pub others: Vec<PortGroup>,
}

/// Why an [`Alua`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAlua {
    /// Group (and relative target port) 0.
    #[error("target port group 0 is reserved (relative target port identifier 0)")]
    ZeroId,
    /// One id given twice.
    #[error("target port group {0} is given twice")]
    Twice(u16),
    /// More than 255 groups (far more gateways than anyone runs).
    #[error("more than 255 target port groups")]
    TooMany,
    /// A state change for a group that is not reported.
    #[error("no target port group {0}")]
    UnknownGroup(u16),
    /// A state change where ALUA is not set.
    #[error("ALUA is not set (no --alua-group or alua_group)")]
    Off,
    /// A logical unit's own states for a LUN the target does not have.
    #[error("no LUN {0}")]
    UnknownLun(u16),
}

impl Alua {
    /// Checks the groups: ids distinct and not 0, at most 255 of them.
    pub fn new(own: PortGroup, others: Vec<PortGroup>) -> Result<Alua, BadAlua> {
        let mut seen = std::collections::HashSet::new();
        for g in std::iter::once(&own).chain(&others) {
            if g.id == 0 {
                return Err(BadAlua::ZeroId);
            }
            if !seen.insert(g.id) {
                return Err(BadAlua::Twice(g.id));
            }
        }
        if seen.len() > 255 {
            return Err(BadAlua::TooMany);
        }
        Ok(Alua { own, others })
    }

    /// Every group, this gateway's first.
    pub fn groups(&self) -> impl Iterator<Item = &PortGroup> {
        std::iter::once(&self.own).chain(&self.others)
    }
}

/// A target's ALUA setting while it serves: shared by the target and its successors, so
/// a change reaches every version's sessions. The own port's state code is kept apart in
/// an atomic so that checking a command costs one load.
#[derive(Debug)]
pub(crate) struct AluaCell {
    /// This port's ASYMMETRIC ACCESS STATE code, [`AluaCell::OFF`] without ALUA.
    own: AtomicU8,
    /// This port's relative target port identifier: its group's id, 1 without ALUA.
    port: AtomicU16,
    groups: Mutex<Option<Reported>>,
}

/// The groups and which of them changed state while the target served.
#[derive(Debug, Clone)]
pub(crate) struct Reported {
    pub(crate) alua: Alua,
    /// Groups whose state was changed since they were first set: REPORT TARGET PORT
    /// GROUPS says so (STATUS CODE 02h, altered by implicit asymmetric access behavior).
    pub(crate) altered: Vec<u16>,
}

impl Default for AluaCell {
    fn default() -> Self {
        AluaCell {
            own: AtomicU8::new(AluaCell::OFF),
            port: AtomicU16::new(1),
            groups: Mutex::new(None),
        }
    }
}

impl AluaCell {
    const OFF: u8 = 0xFF;

    fn groups(&self) -> std::sync::MutexGuard<'_, Option<Reported>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether ALUA is set.
    pub(crate) fn is_set(&self) -> bool {
        self.own.load(Ordering::Relaxed) != AluaCell::OFF
    }

    /// The groups reported now, when ALUA is set.
    pub(crate) fn get(&self) -> Option<Alua> {
        self.groups().as_ref().map(|r| r.alua.clone())
    }

    /// The groups and which were altered, as REPORT TARGET PORT GROUPS reports them.
    pub(crate) fn report(&self) -> Option<Reported> {
        self.groups().clone()
    }

    /// Sets the groups; whether this changed groups set before (their states or ids).
    pub(crate) fn set(&self, alua: Alua) -> bool {
        let mut groups = self.groups();
        self.set_locked(&mut groups, alua)
    }

    /// Sets the groups of one logical unit's own cell ([`ScsiTarget::set_lu_alua`]): the
    /// first time, it starts from `base` (the target's groups, which the LU reported
    /// until then), so whether this changed anything is against what the LU reported.
    pub(crate) fn set_over(&self, base: Option<Reported>, alua: Alua) -> bool {
        let mut groups = self.groups();
        if groups.is_none() {
            *groups = base;
        }
        self.set_locked(&mut groups, alua)
    }

    fn set_locked(&self, groups: &mut Option<Reported>, alua: Alua) -> bool {
        let (changed, altered) = match groups.take() {
            Some(old) => {
                let mut altered = old.altered;
                for g in alua.groups() {
                    let before = old.alua.groups().find(|o| o.id == g.id);
                    if before.is_some_and(|o| o.state != g.state) && !altered.contains(&g.id) {
                        altered.push(g.id);
                    }
                }
                (old.alua != alua, altered)
            }
            None => (false, Vec::new()),
        };
        self.own.store(alua.own.state.code(), Ordering::Release);
        self.port.store(alua.own.id, Ordering::Relaxed);
        *groups = Some(Reported { alua, altered });
        changed
    }

    /// This gateway's relative target port identifier (SPC-4 7.8.6.6): its target port
    /// group's id with ALUA (one port per group), else 1, the one port of the target.
    pub(crate) fn port_id(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// Every target port's relative identifier, this gateway's first.
    pub(crate) fn port_ids(&self) -> Vec<u16> {
        match self.groups().as_ref() {
            Some(r) => r.alua.groups().map(|g| g.id).collect(),
            None => vec![self.port_id()],
        }
    }

    /// Puts group `id` in `state`; whether that changed it.
    pub(crate) fn set_state(&self, id: u16, state: AccessState) -> Result<bool, BadAlua> {
        let mut groups = self.groups();
        let reported = groups.as_mut().ok_or(BadAlua::Off)?;
        let alua = &mut reported.alua;
        let own = alua.own.id == id;
        let group = std::iter::once(&mut alua.own)
            .chain(alua.others.iter_mut())
            .find(|g| g.id == id)
            .ok_or(BadAlua::UnknownGroup(id))?;
        if group.state == state {
            return Ok(false);
        }
        group.state = state;
        if own {
            self.own.store(state.code(), Ordering::Release);
        }
        if !reported.altered.contains(&id) {
            reported.altered.push(id);
        }
        Ok(true)
    }
}

/// A command a target port that is not active still serves: its operation code, the
/// service action or buffer MODE (byte 1, bits 4:0) when that decides, and in which of
/// the states: standby, unavailable, transitioning (and offline).
struct Served {
    op: u8,
    selector: Option<u8>,
    standby: bool,
    unavailable: bool,
    transitioning: bool,
}

const fn served(
    op: u8,
    selector: Option<u8>,
    standby: bool,
    unavailable: bool,
    transitioning: bool,
) -> Served {
    Served {
        op,
        selector,
        standby,
        unavailable,
        transitioning,
    }
}

/// MAINTENANCE OUT (SET TARGET PORT GROUPS; not offered here, listed as the standard does).
const MAINTENANCE_OUT: u8 = 0xA4;
/// READ BUFFER and WRITE BUFFER (their echo buffer modes 0Ah, 0Bh and 1Ah).
const READ_BUFFER_10: u8 = 0x3C;
const WRITE_BUFFER: u8 = 0x3B;
/// READ CAPACITY(10), and SERVICE ACTION IN(16) whose service action 10h is READ
/// CAPACITY(16).
const READ_CAPACITY_10: u8 = 0x25;
const SERVICE_ACTION_IN_16: u8 = 0x9E;

/// What standby (SPC-4 5.16.2.4.4), unavailable (5.16.2.4.5) and transitioning (5.16.2.5,
/// 5.16.2.6; offline, 5.16.2.4.6, alike) serve, one row per command; every other command
/// is refused in those states. Beyond the standard's lists ("the device server may support
/// other commands"): REPORT SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK
/// MANAGEMENT FUNCTIONS, which only describe the device server, and READ CAPACITY(10) and
/// (16) in standby: hosts read the capacity of every path when they scan (Linux sd does,
/// before its ALUA handler sees the path), and a standby path that refuses it is set up
/// as a disk of no size (LIO serves it in standby for that reason). TEST UNIT READY stays
/// refused: path checkers (dm-multipath's tur, VMware's SATP) read 04h/0Bh from it as
/// "standby path", not as a failure. RESERVE/RELEASE(6/10) and every medium access are not
/// listed, so they are refused.
const SERVED: &[Served] = &[
    served(op::INQUIRY, None, true, true, true),
    served(op::REPORT_LUNS, None, true, true, true),
    served(op::REQUEST_SENSE, None, true, true, true),
    served(op::MAINTENANCE_IN, Some(0x0A), true, true, true), // REPORT TARGET PORT GROUPS
    served(op::MAINTENANCE_IN, Some(0x0C), true, true, true), // REPORT SUPPORTED OPCODES
    served(op::MAINTENANCE_IN, Some(0x0D), true, true, true), // REPORT SUPPORTED TMFs
    served(MAINTENANCE_OUT, Some(0x0A), true, true, false),   // SET TARGET PORT GROUPS
    served(READ_BUFFER_10, Some(0x0A), true, true, false),    // echo buffer
    served(READ_BUFFER_10, Some(0x0B), true, true, false),    // echo buffer descriptor
    served(WRITE_BUFFER, Some(0x0A), true, true, false),      // write data to echo buffer
    served(WRITE_BUFFER, Some(0x1A), true, true, false),      // expander comms and echo
    served(0x4C, None, true, false, false),                   // LOG SELECT
    served(0x4D, None, true, false, false),                   // LOG SENSE
    served(op::MODE_SELECT_6, None, true, false, false),
    served(op::MODE_SELECT_10, None, true, false, false),
    served(op::MODE_SENSE_6, None, true, false, false),
    served(op::MODE_SENSE_10, None, true, false, false),
    served(0x1C, None, true, false, false), // RECEIVE DIAGNOSTIC RESULTS
    served(0x1D, None, true, false, false), // SEND DIAGNOSTIC
    served(0x5E, None, true, false, false), // PERSISTENT RESERVE IN
    served(0x5F, None, true, false, false), // PERSISTENT RESERVE OUT
    served(READ_CAPACITY_10, None, true, false, false),
    served(SERVICE_ACTION_IN_16, Some(0x10), true, false, false), // READ CAPACITY(16)
];

impl AluaCell {
    /// Why this gateway's target port refuses `cdb` in its asymmetric access state now,
    /// or `None` when the command is to run.
    pub(crate) fn refusal(&self, cdb: &[u8]) -> Option<Sense> {
        let code = self.own.load(Ordering::Acquire);
        let (asc, in_state): (Asc, fn(&Served) -> bool) = match code {
            c if c == AccessState::Standby.code() => (Asc::TARGET_PORT_STANDBY, |s| s.standby),
            c if c == AccessState::Unavailable.code() => {
                (Asc::TARGET_PORT_UNAVAILABLE, |s| s.unavailable)
            }
            c if c == AccessState::Transitioning.code() => {
                (Asc::ACCESS_STATE_TRANSITION, |s| s.transitioning)
            }
            c if c == AccessState::Offline.code() => (Asc::LU_OFFLINE, |s| s.transitioning),
            _ => return None, // active, or no ALUA
        };
        let op = cdb.first().copied()?;
        let selector = cdb.get(1).map(|b| b & 0x1F);
        let is_served = SERVED
            .iter()
            .any(|s| s.op == op && (s.selector.is_none() || s.selector == selector) && in_state(s));
        (!is_served).then(|| Sense::new(SenseKey::NotReady, asc))
    }
}

/// Standard INQUIRY byte 5, TPGS field (bits 5:4): 01b, implicit asymmetric access only.
pub(crate) const TPGS_IMPLICIT: u8 = 0x10;

/// The Device Identification designators of this target port (SPC-4 7.8.6): relative
/// target port (type 4h) and target port group (type 5h), both of association 01b (the
/// target port), binary, with the iSCSI protocol identifier (5h, PIV set).
pub(crate) fn port_designators(alua: &Alua, d: &mut Vec<u8>) {
    for designator_type in [0x4u8, 0x5] {
        d.extend_from_slice(&[0x51, 0x80 | 0x10 | designator_type, 0, 4, 0, 0]);
        d.extend_from_slice(&alua.own.id.to_be_bytes());
    }
}

/// REPORT TARGET PORT GROUPS.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReportTargetPortGroups {
    /// PARAMETER DATA FORMAT 001b: the extended header.
    extended: bool,
    alloc: u32,
}

impl ScsiCommand for ReportTargetPortGroups {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let extended = match cdb[1] >> 5 {
            0 => false,
            1 => true,
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(7))),
        };
        for byte in [2, 3, 4, 5, 10] {
            reserved(cdb, byte, 0xFF)?;
        }
        Ok(ReportTargetPortGroups {
            extended,
            alloc: be32(cdb, 6),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let Some(reported) = ctx.target.alua_report(ctx.lu) else {
            return done(Response::check_condition(Sense::INVALID_OPCODE));
        };
        done(Response::data(
            target_port_groups(&reported, self.extended),
            self.alloc,
        ))
    }
}

/// The states a group may be in (target port group descriptor byte 1): T_SUP, O_SUP,
/// U_SUP, S_SUP, AN_SUP, AO_SUP; LBD_SUP clear (no LBA-dependent state).
const SUPPORTED_STATES: u8 = 0xCF;

/// STATUS CODE of a group whose state was changed while the target served: altered by
/// implicit asymmetric logical unit access behavior (02h); 00h otherwise (no status).
const STATUS_ALTERED_IMPLICITLY: u8 = 0x02;

/// REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36.2): the header (length format, or
/// extended with no implicit transition time) and one descriptor per group, each with its
/// one target port.
fn target_port_groups(reported: &Reported, extended: bool) -> Vec<u8> {
    let alua = &reported.alua;
    let mut d = vec![0u8; if extended { 8 } else { 4 }];
    if extended {
        d[4] = 0x10; // FORMAT TYPE 001b; IMPLICIT TRANSITION TIME 0: not reported
    }
    for g in alua.groups() {
        d.push(g.state.code()); // PREF=0
        d.push(SUPPORTED_STATES);
        d.extend_from_slice(&g.id.to_be_bytes());
        let status = if reported.altered.contains(&g.id) {
            STATUS_ALTERED_IMPLICITLY
        } else {
            0
        };
        d.extend_from_slice(&[0, status, 0, 1]); // reserved, STATUS CODE, vendor, port count
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&g.id.to_be_bytes()); // RELATIVE TARGET PORT IDENTIFIER
    }
    let len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&len.to_be_bytes());
    d
}
