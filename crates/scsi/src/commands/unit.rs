//! The logical unit's state and the target's LUN inventory (SPC-4, SBC-3): TEST UNIT READY,
//! REQUEST SENSE, START STOP UNIT, REPORT LUNS.

use super::exec::done;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be32, opcode as op, reserved};
use crate::sense::{Asc, Sense, SenseKey};
use crate::{encode_lun, Response, ScsiTarget, Start};
use bytes::Bytes;

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<TestUnitReady>(op::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0]),
    CommandDef::new::<RequestSense>(op::REQUEST_SENSE, &[0x03, 0x01, 0, 0, F, 0]),
    CommandDef::new::<StartStopUnit>(op::START_STOP_UNIT, &[0x1B, 0x01, 0, 0, 0x03, 0]),
    CommandDef::new::<ReportLuns>(op::REPORT_LUNS, &[0xA0, 0, F, 0, 0, 0, F, F, F, F, 0, 0]),
];

/// TEST UNIT READY (SPC-4 6.47): the unit is always ready.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TestUnitReady;

impl ScsiCommand for TestUnitReady {
    fn parse(_cdb: &[u8]) -> Result<Self, Sense> {
        Ok(TestUnitReady)
    }

    fn execute(self, _ctx: Ctx<'_>) -> Start {
        done(Response::good(Bytes::new(), 0))
    }
}

/// START STOP UNIT (SBC-3 5.25): accepted, the unit stays ready.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StartStopUnit {
    /// IMMED bit.
    pub immed: bool,
    /// START bit.
    pub start: bool,
    /// LOEJ bit.
    pub loej: bool,
}

impl ScsiCommand for StartStopUnit {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        Ok(StartStopUnit {
            immed: cdb[1] & 0x01 != 0,
            start: cdb[4] & 0x01 != 0,
            loej: cdb[4] & 0x02 != 0,
        })
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

    fn execute(self, _ctx: Ctx<'_>) -> Start {
        done(request_sense(self.desc, self.alloc, None))
    }

    fn absent(self, _target: &ScsiTarget) -> Response {
        request_sense(self.desc, self.alloc, Some(Sense::LU_NOT_SUPPORTED))
    }
}

/// REQUEST SENSE (SPC-4 6.39). Sense is reported with the failing command (autosense), so
/// there is no pending sense: NO SENSE, or the `pending` condition for an absent LUN.
fn request_sense(desc: bool, alloc: u8, pending: Option<Sense>) -> Response {
    let sense = pending.unwrap_or(Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL));
    let data = if desc {
        // Descriptor format (SPC-4 4.5.2), response code 72h, no descriptors.
        vec![0x72, sense.key as u8, sense.asc.0, sense.asc.1, 0, 0, 0, 0]
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
