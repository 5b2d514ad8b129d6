//! Asymmetric logical unit access (SPC-4 5.16), implicit only: several gateways export the
//! same logical unit, each through a target port of its own in a target port group of its
//! own, whose asymmetric access state the operator sets ([`ScsiTarget::set_alua`]). With
//! it, standard INQUIRY data says TPGS=01b, the Device Identification VPD page carries the
//! relative target port and target port group designators, and REPORT TARGET PORT GROUPS
//! (SPC-4 6.36) lists every gateway's group. Without it none of that is reported.
//!
//! Deliberately absent: SET TARGET PORT GROUPS (explicit ALUA), and enforcing the states
//! (a port in standby or unavailable still serves every command).

use super::exec::done;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be32, opcode as op, reserved};
use crate::sense::Sense;
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
