//! REPORT SUPPORTED OPERATION CODES (SPC-4 6.35), answered from the command table.

use super::exec::done;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, be32, opcode as op, reserved, service_action as sa};
use crate::sense::Sense;
use crate::{LuConfig, Response, ScsiTarget, Start};

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[CommandDef::new::<ReportSupportedOpcodes>(
    op::MAINTENANCE_IN,
    &[0xA3, 0x0C, 0x87, F, F, F, F, F, F, F, 0, 0],
)
.sa(sa::REPORT_SUPPORTED_OPCODES)];

/// REPORT SUPPORTED OPERATION CODES.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReportSupportedOpcodes {
    /// RCTD: return command timeouts descriptors.
    pub rctd: bool,
    /// REPORTING OPTIONS.
    pub options: u8,
    /// REQUESTED OPERATION CODE.
    pub opcode: u8,
    /// REQUESTED SERVICE ACTION.
    pub sa: u16,
    /// ALLOCATION LENGTH.
    pub alloc: u32,
}

impl ScsiCommand for ReportSupportedOpcodes {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        reserved(cdb, 2, 0x78)?;
        Ok(ReportSupportedOpcodes {
            rctd: cdb[2] & 0x80 != 0,
            options: cdb[2] & 0x07,
            opcode: cdb[3],
            sa: be16(cdb, 4),
            alloc: be32(cdb, 6),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let r = &self;
        done(
            match report_supported_opcodes(
                ctx.config(),
                ctx.target,
                r.rctd,
                r.options,
                r.opcode,
                r.sa,
            ) {
                Ok(data) => Response::data(data, r.alloc),
                Err(sense) => Response::check_condition(sense),
            },
        )
    }
}

/// The command timeouts descriptor (SPC-4 6.35.4): no timeouts reported.
const TIMEOUTS_DESCRIPTOR: [u8; 12] = [0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// REPORT SUPPORTED OPERATION CODES parameter data: all commands (SPC-4 6.35.2) or one
/// (6.35.3).
fn report_supported_opcodes(
    lu: &LuConfig,
    target: &ScsiTarget,
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
) -> Result<Vec<u8>, Sense> {
    let offered = |c: &&&CommandDef| (c.offered)(lu) && (c.offered_by_target)(target);
    let ctdp = if rctd { 0x02 } else { 0 };
    match options {
        0 => {
            let mut d = vec![0u8; 4];
            for c in super::all().iter().filter(offered) {
                d.push(c.opcode);
                d.push(0);
                d.extend_from_slice(&c.sa.unwrap_or(0).to_be_bytes());
                d.push(0);
                d.push(ctdp | u8::from(c.sa.is_some()));
                d.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
                if rctd {
                    d.extend_from_slice(&TIMEOUTS_DESCRIPTOR);
                }
            }
            let len = (d.len() - 4) as u32;
            d[0..4].copy_from_slice(&len.to_be_bytes());
            Ok(d)
        }
        1..=3 => {
            let rows = super::by_opcode(opcode);
            let mut same_op = rows.iter().filter(offered);
            let has_sa = rows.iter().any(|c| c.sa.is_some());
            let found = match options {
                1 if has_sa => return Err(Sense::invalid_field_in_cdb(2, Some(2))),
                1 => same_op.next(),
                2 if !has_sa && !rows.is_empty() => {
                    return Err(Sense::invalid_field_in_cdb(2, Some(2)))
                }
                _ => same_op.find(|c| c.sa.map_or(options == 3 || sa == 0, |s| s == sa)),
            };
            let mut d = vec![0u8; 4];
            if let Some(c) = found {
                d[1] = 0x03; // SUPPORT: supported, as the standard defines it
                d[2..4].copy_from_slice(&(c.usage.len() as u16).to_be_bytes());
                d.extend_from_slice(c.usage);
            } else {
                d[1] = 0x01; // SUPPORT: not supported
            }
            if rctd {
                d[1] |= 0x80;
                d.extend_from_slice(&TIMEOUTS_DESCRIPTOR);
            }
            Ok(d)
        }
        _ => Err(Sense::invalid_field_in_cdb(2, Some(2))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        // SPC-4 table 173: RCTD byte 2 bit 7, REPORTING OPTIONS 2:0, REQUESTED OPERATION CODE
        // byte 3, REQUESTED SERVICE ACTION 4..6, ALLOCATION LENGTH 6..10.
        assert_eq!(
            ReportSupportedOpcodes::parse(&[0xA3, 0x0C, 0x81, 0x28, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0]),
            Ok(ReportSupportedOpcodes {
                rctd: true,
                options: 1,
                opcode: 0x28,
                sa: 0,
                alloc: 0xFFFF
            })
        );
    }
}
