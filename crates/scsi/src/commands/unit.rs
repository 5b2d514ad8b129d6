//! The logical unit's state and the target's LUN inventory (SPC-4, SBC-3): TEST UNIT READY,
//! REQUEST SENSE, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, REPORT LUNS.

use super::exec::{done, io, State};
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be32, opcode as op, reserved};
use crate::sense::{Asc, Sense, SenseKey};
use crate::{encode_lun, Response, ScsiTarget, Start};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use store_api::IoRequest;

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<TestUnitReady>(op::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0]),
    CommandDef::new::<RequestSense>(op::REQUEST_SENSE, &[0x03, 0x01, 0, 0, F, 0]),
    CommandDef::new::<StartStopUnit>(op::START_STOP_UNIT, &[0x1B, 0x01, 0, 0x0F, 0xF7, 0]),
    CommandDef::new::<PreventAllowMediumRemoval>(
        op::PREVENT_ALLOW_MEDIUM_REMOVAL,
        &[0x1E, 0, 0, 0, 0x03, 0],
    ),
    CommandDef::new::<ReportLuns>(op::REPORT_LUNS, &[0xA0, 0, F, 0, 0, 0, F, F, F, F, 0, 0]),
];

/// TEST UNIT READY (SPC-4 6.47): ready unless a START STOP UNIT stopped the unit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TestUnitReady;

impl ScsiCommand for TestUnitReady {
    const MEDIUM_ACCESS: bool = true;

    fn parse(_cdb: &[u8]) -> Result<Self, Sense> {
        Ok(TestUnitReady)
    }

    fn execute(self, _ctx: Ctx<'_>) -> Start {
        done(Response::good(Bytes::new(), 0))
    }
}

/// POWER CONDITION values of START STOP UNIT (SBC-3 table 111).
const PC_START_VALID: u8 = 0x0;
const PC_ACTIVE: u8 = 0x1;
const PC_IDLE: u8 = 0x2;
const PC_STANDBY: u8 = 0x3;
const PC_LU_CONTROL: u8 = 0x7;

/// START STOP UNIT (SBC-3 5.25). With POWER CONDITION 0, START 0 stops the unit (after a
/// flush of the store unless NO_FLUSH) and START 1 starts it; LOEJ is refused, the medium is
/// not removable. ACTIVE, IDLE and STANDBY make the unit ready (there is nothing to spin
/// down), LU_CONTROL is accepted; the FORCE_*_0 values need the Power Condition mode page,
/// which this target does not have, and the rest are reserved. IMMED is accepted; the status
/// comes when the work is done either way.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StartStopUnit {
    /// IMMED bit.
    pub immed: bool,
    /// POWER CONDITION MODIFIER.
    pub modifier: u8,
    /// POWER CONDITION.
    pub power_condition: u8,
    /// NO_FLUSH bit.
    pub no_flush: bool,
    /// LOEJ bit.
    pub loej: bool,
    /// START bit.
    pub start: bool,
}

impl ScsiCommand for StartStopUnit {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        // SBC-3 table 110: byte 1 IMMED(0); byte 3 POWER CONDITION MODIFIER(3:0); byte 4
        // POWER CONDITION(7:4) reserved(3) NO_FLUSH(2) LOEJ(1) START(0).
        reserved(cdb, 1, 0xFE)?;
        reserved(cdb, 2, 0xFF)?;
        reserved(cdb, 3, 0xF0)?;
        reserved(cdb, 4, 0x08)?;
        let c = StartStopUnit {
            immed: cdb[1] & 0x01 != 0,
            modifier: cdb[3] & 0x0F,
            power_condition: cdb[4] >> 4,
            no_flush: cdb[4] & 0x04 != 0,
            loej: cdb[4] & 0x02 != 0,
            start: cdb[4] & 0x01 != 0,
        };
        let modifier_ok = match c.power_condition {
            PC_START_VALID | PC_ACTIVE | PC_LU_CONTROL => c.modifier == 0,
            PC_IDLE => c.modifier <= 2,
            PC_STANDBY => c.modifier <= 1,
            _ => return Err(Sense::invalid_field_in_cdb(4, Some(7))),
        };
        if !modifier_ok {
            return Err(Sense::invalid_field_in_cdb(3, Some(3)));
        }
        if c.power_condition == PC_START_VALID && c.loej {
            return Err(Sense::invalid_field_in_cdb(4, Some(1)));
        }
        Ok(c)
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let stopped = &ctx.lu.stopped;
        match (self.power_condition, self.start) {
            (PC_START_VALID, false) => {
                stopped.store(true, Ordering::Relaxed);
                if self.no_flush {
                    done(Response::good(Bytes::new(), 0))
                } else {
                    io(ctx.lun, IoRequest::Flush, State::Final { transfer_len: 0 })
                }
            }
            (PC_LU_CONTROL, _) => done(Response::good(Bytes::new(), 0)),
            _ => {
                stopped.store(false, Ordering::Relaxed);
                done(Response::good(Bytes::new(), 0))
            }
        }
    }
}

/// PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.11): the medium is not removable, so there is
/// nothing to lock; PREVENT 00b and 01b are accepted, the obsolete 10b and 11b refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PreventAllowMediumRemoval {
    /// PREVENT.
    pub prevent: u8,
}

impl ScsiCommand for PreventAllowMediumRemoval {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        reserved(cdb, 4, 0xFC)?;
        let prevent = cdb[4] & 0x03;
        if prevent > 1 {
            return Err(Sense::invalid_field_in_cdb(4, Some(1)));
        }
        Ok(PreventAllowMediumRemoval { prevent })
    }

    fn execute(self, _ctx: Ctx<'_>) -> Start {
        done(Response::good(Bytes::new(), 0))
    }
}

/// REQUEST SENSE (SPC-4 6.39); `desc` asks for descriptor format.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RequestSense {
    /// DESC bit.
    pub desc: bool,
    /// ALLOCATION LENGTH.
    pub alloc: u8,
}

impl ScsiCommand for RequestSense {
    const WITHOUT_LU: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        reserved(cdb, 1, 0xFE)?;
        Ok(RequestSense {
            desc: cdb[1] & 0x01 != 0,
            alloc: cdb[4],
        })
    }

    /// A pending unit attention is the sense reported, and is cleared (SPC-4 6.39).
    fn execute(self, ctx: Ctx<'_>) -> Start {
        let ua = ctx.target.nexuses.take(ctx.nexus, ctx.lun);
        // Else a sanitize in progress, with its PROGRESS INDICATION (SBC-3 4.11.2).
        let pending = ua
            .map(crate::UnitAttention::sense)
            .or_else(|| ctx.lu.sanitize.in_progress());
        done(request_sense(self.desc, self.alloc, pending))
    }

    fn absent(self, _target: &ScsiTarget) -> Response {
        request_sense(self.desc, self.alloc, Some(Sense::LU_NOT_SUPPORTED))
    }
}

/// REQUEST SENSE (SPC-4 6.39). Sense is reported with the failing command (autosense), so
/// the only pending sense is a unit attention or, for an absent LUN, LOGICAL UNIT NOT
/// SUPPORTED: `pending`, or NO SENSE.
fn request_sense(desc: bool, alloc: u8, pending: Option<Sense>) -> Response {
    let sense = pending.unwrap_or(Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL));
    let data = if desc {
        // Descriptor format (SPC-4 4.5.2), response code 72h, with a sense-key specific
        // descriptor where there is one (progress).
        crate::sense::fixed_to_descriptor(&sense.to_fixed())
    } else {
        sense.to_fixed().to_vec()
    };
    Response::data(data, alloc.into())
}

/// REPORT LUNS (SPC-4 6.33).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReportLuns {
    /// SELECT REPORT.
    pub select: u8,
    /// ALLOCATION LENGTH.
    pub alloc: u32,
}

impl ScsiCommand for ReportLuns {
    const WITHOUT_LU: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        Ok(ReportLuns {
            select: cdb[2],
            alloc: be32(cdb, 6),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        done(report_luns(ctx.target, self.select, self.alloc))
    }

    fn absent(self, target: &ScsiTarget) -> Response {
        report_luns(target, self.select, self.alloc)
    }
}

/// REPORT LUNS (SPC-4 6.33): every configured LUN, peripheral or flat space addressed.
fn report_luns(target: &ScsiTarget, select: u8, alloc: u32) -> Response {
    if select > 2 {
        return Response::check_condition(Sense::invalid_field_in_cdb(2, None));
    }
    if alloc < 16 {
        return Response::check_condition(Sense::invalid_field_in_cdb(6, None));
    }
    let mut d = vec![0u8; 8];
    if select != 1 {
        for lun in target.luns() {
            d.extend_from_slice(&encode_lun(lun).to_be_bytes());
        }
    }
    let list_len = (d.len() - 8) as u32;
    d[0..4].copy_from_slice(&list_len.to_be_bytes());
    Response::data(d, alloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        // SPC-4 table 162: SELECT REPORT byte 2, ALLOCATION LENGTH 6..10.
        assert_eq!(
            ReportLuns::parse(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]),
            Ok(ReportLuns {
                select: 0,
                alloc: 4096
            })
        );
        // SPC-4 table 170: DESC byte 1 bit 0, ALLOCATION LENGTH byte 4.
        assert_eq!(
            RequestSense::parse(&[0x03, 1, 0, 0, 252, 0]),
            Ok(RequestSense {
                desc: true,
                alloc: 252
            })
        );
    }
}
