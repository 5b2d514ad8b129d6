//! Asymmetric logical unit access (SPC-4 5.16), implicit only: several gateways export the
//! same logical unit, each through a target port of its own in a target port group of its
//! own, whose asymmetric access state the operator sets ([`ScsiTarget::set_alua`]). With
//! it, standard INQUIRY data says TPGS=01b, the Device Identification VPD page carries the
//! relative target port and target port group designators, and REPORT TARGET PORT GROUPS
//! (SPC-4 6.36) lists every gateway's group. Without it none of that is reported.
//!
//! The state is enforced ([`Alua::refusal`], checked by [`ScsiTarget::start`] after unit
//! attentions and before reservations): active/optimized and active/non-optimized serve
//! everything; standby and unavailable serve only the commands of [`SERVED`] (SPC-4
//! 5.16.2.4.4, 5.16.2.4.5) and refuse the rest with NOT READY, LOGICAL UNIT NOT
//! ACCESSIBLE, TARGET PORT IN STANDBY (04h/0Bh) or UNAVAILABLE STATE (04h/0Ch).
//!
//! Deliberately absent: SET TARGET PORT GROUPS (explicit ALUA), the transitioning and
//! offline states.

use super::exec::done;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be32, opcode as op, reserved};
use crate::sense::{Asc, Sense, SenseKey};
use crate::{Response, ScsiTarget, Start};

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
    target.alua().is_some()
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
}

impl AccessState {
    /// The ASYMMETRIC ACCESS STATE code.
    fn code(self) -> u8 {
        match self {
            AccessState::ActiveOptimized => 0x0,
            AccessState::ActiveNonOptimized => 0x1,
            AccessState::Standby => 0x2,
            AccessState::Unavailable => 0x3,
        }
    }

    /// Parses `active-optimized`, `active-non-optimized`, `standby` or `unavailable`.
    pub fn parse(s: &str) -> Option<AccessState> {
        Some(match s {
            "active-optimized" => AccessState::ActiveOptimized,
            "active-non-optimized" => AccessState::ActiveNonOptimized,
            "standby" => AccessState::Standby,
            "unavailable" => AccessState::Unavailable,
            _ => return None,
        })
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
    fn groups(&self) -> impl Iterator<Item = &PortGroup> {
        std::iter::once(&self.own).chain(&self.others)
    }
}

/// A command a target port in standby or unavailable still serves: its operation code,
/// the service action or buffer MODE (byte 1, bits 4:0) when that decides, and in which
/// of the two states.
struct Served {
    op: u8,
    selector: Option<u8>,
    standby: bool,
    unavailable: bool,
}

const fn served(op: u8, selector: Option<u8>, standby: bool, unavailable: bool) -> Served {
    Served {
        op,
        selector,
        standby,
        unavailable,
    }
}

/// MAINTENANCE OUT (SET TARGET PORT GROUPS; not offered here, listed as the standard does).
const MAINTENANCE_OUT: u8 = 0xA4;
/// READ BUFFER and WRITE BUFFER (their echo buffer modes 0Ah and 0Bh).
const READ_BUFFER_10: u8 = 0x3C;
const WRITE_BUFFER: u8 = 0x3B;

/// What standby (SPC-4 5.16.2.4.4) and unavailable (5.16.2.4.5) serve, one row per
/// command; every other command is refused in those states. Beyond the standard's lists
/// ("the device server may support other commands"): REPORT SUPPORTED OPERATION CODES and
/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS, which only describe the device server.
/// RESERVE/RELEASE(6/10), TEST UNIT READY, READ CAPACITY and every medium access are not
/// listed, so they are refused.
const SERVED: &[Served] = &[
    served(op::INQUIRY, None, true, true),
    served(op::REPORT_LUNS, None, true, true),
    served(op::REQUEST_SENSE, None, true, true),
    served(op::MAINTENANCE_IN, Some(0x0A), true, true), // REPORT TARGET PORT GROUPS
    served(op::MAINTENANCE_IN, Some(0x0C), true, true), // REPORT SUPPORTED OPERATION CODES
    served(op::MAINTENANCE_IN, Some(0x0D), true, true), // REPORT SUPPORTED TMFs
    served(MAINTENANCE_OUT, Some(0x0A), true, true),    // SET TARGET PORT GROUPS
    served(READ_BUFFER_10, Some(0x0A), true, true),     // echo buffer
    served(READ_BUFFER_10, Some(0x0B), true, true),     // echo buffer descriptor
    served(WRITE_BUFFER, Some(0x0A), true, true),       // write data to echo buffer
    served(0x4C, None, true, false),                    // LOG SELECT
    served(0x4D, None, true, false),                    // LOG SENSE
    served(op::MODE_SELECT_6, None, true, false),
    served(op::MODE_SELECT_10, None, true, false),
    served(op::MODE_SENSE_6, None, true, false),
    served(op::MODE_SENSE_10, None, true, false),
    served(0x1C, None, true, false), // RECEIVE DIAGNOSTIC RESULTS
    served(0x1D, None, true, false), // SEND DIAGNOSTIC
    served(0x5E, None, true, false), // PERSISTENT RESERVE IN
    served(0x5F, None, true, false), // PERSISTENT RESERVE OUT
];

impl Alua {
    /// Why this gateway's target port refuses `cdb` in its asymmetric access state, or
    /// `None` when the command is to run.
    pub(crate) fn refusal(&self, cdb: &[u8]) -> Option<Sense> {
        let (asc, in_state): (Asc, fn(&Served) -> bool) = match self.own.state {
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => return None,
            AccessState::Standby => (Asc::TARGET_PORT_STANDBY, |s| s.standby),
            AccessState::Unavailable => (Asc::TARGET_PORT_UNAVAILABLE, |s| s.unavailable),
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
        let Some(alua) = ctx.target.alua() else {
            return done(Response::check_condition(Sense::INVALID_OPCODE));
        };
        done(Response::data(
            target_port_groups(alua, self.extended),
            self.alloc,
        ))
    }
}

/// REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36.2): the header (length format, or
/// extended with no implicit transition time) and one descriptor per group, each with its
/// one target port.
fn target_port_groups(alua: &Alua, extended: bool) -> Vec<u8> {
    let mut d = vec![0u8; if extended { 8 } else { 4 }];
    if extended {
        d[4] = 0x10; // FORMAT TYPE 001b; IMPLICIT TRANSITION TIME 0: not reported
    }
    for g in alua.groups() {
        d.push(g.state.code()); // PREF=0
        d.push(0x0F); // T_SUP=0 O_SUP=0 U_SUP S_SUP AN_SUP AO_SUP
        d.extend_from_slice(&g.id.to_be_bytes());
        d.extend_from_slice(&[0, 0, 0, 1]); // reserved, STATUS CODE, vendor, port count
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&g.id.to_be_bytes()); // RELATIVE TARGET PORT IDENTIFIER
    }
    let len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&len.to_be_bytes());
    d
}
