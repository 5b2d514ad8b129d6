//! Mode parameters (SPC-4 6.11, 6.12, 7.5): MODE SENSE(6/10) with the caching and control
//! pages.

use super::exec::done;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, opcode as op, reserved};
use crate::sense::Sense;
use crate::{LuConfig, Response, Start};

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<ModeSense>(op::MODE_SENSE_6, &[0x1A, 0x08, F, F, F, 0]),
    CommandDef::new::<ModeSense>(op::MODE_SENSE_10, &[0x5A, 0x18, F, F, 0, 0, 0, F, F, 0]),
];

/// MODE SENSE(6) (`long == false`) or (10).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ModeSense {
    /// MODE SENSE(10).
    pub long: bool,
    /// DBD: no block descriptors.
    pub dbd: bool,
    /// LLBAA: long LBA block descriptor accepted (10 only).
    pub llbaa: bool,
    /// PC: page control (current, changeable, default, saved).
    pub pc: u8,
    /// PAGE CODE.
    pub page: u8,
    /// SUBPAGE CODE.
    pub subpage: u8,
    /// ALLOCATION LENGTH.
    pub alloc: u16,
}

impl ScsiCommand for ModeSense {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let long = cdb[0] == op::MODE_SENSE_10;
        reserved(cdb, 1, if long { 0xE7 } else { 0xF7 })?;
        Ok(ModeSense {
            long,
            dbd: cdb[1] & 0x08 != 0,
            llbaa: long && cdb[1] & 0x10 != 0,
            pc: cdb[2] >> 6,
            page: cdb[2] & 0x3F,
            subpage: cdb[3],
            alloc: if long {
                be16(cdb, 7)
            } else {
                u16::from(cdb[4])
            },
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let m = &self;
        done(
            match mode_sense(
                ctx.config(),
                m.long,
                m.dbd,
                m.llbaa,
                m.pc,
                m.page,
                m.subpage,
            ) {
                Ok(data) => Response::data(data, m.alloc.into()),
                Err(sense) => Response::check_condition(sense),
            },
        )
    }
}

/// MODE SENSE page control values (SPC-4 table 96).
const PC_CURRENT: u8 = 0;
const PC_CHANGEABLE: u8 = 1;
const PC_DEFAULT: u8 = 2;

/// The caching mode page (SBC-3 6.4.5), 20 bytes.
fn caching_page(lu: &LuConfig, pc: u8) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x08;
    p[1] = 0x12;
    if pc != PC_CHANGEABLE && lu.write_cache {
        p[2] = 0x04; // WCE
    }
    p
}

/// The control mode page (SPC-4 7.5.8), 12 bytes: TST=0, QUEUE ALGORITHM MODIFIER=1
/// (unrestricted reordering), D_SENSE=0 (fixed format sense), SWP=0.
fn control_page(pc: u8) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = 0x0A;
    p[1] = 0x0A;
    if pc != PC_CHANGEABLE {
        p[3] = 0x10;
    }
    p
}

/// MODE SENSE(6)/(10) parameter data (SPC-4 7.5.4/7.5.5).
fn mode_sense(
    lu: &LuConfig,
    long: bool,
    dbd: bool,
    llbaa: bool,
    pc: u8,
    page: u8,
    subpage: u8,
) -> Result<Vec<u8>, Sense> {
    if pc == 3 {
        return Err(Sense::SAVING_NOT_SUPPORTED);
    }
    debug_assert!(pc == PC_CURRENT || pc == PC_CHANGEABLE || pc == PC_DEFAULT);
    let mut pages = Vec::new();
    match (page, subpage) {
        (0x08, 0x00) => pages.extend(caching_page(lu, pc)),
        (0x0A, 0x00) => pages.extend(control_page(pc)),
        (0x3F, 0x00 | 0xFF) => {
            pages.extend(caching_page(lu, pc));
            pages.extend(control_page(pc));
        }
        (0x08 | 0x0A | 0x3F, _) => return Err(Sense::invalid_field_in_cdb(3, None)),
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(5))),
    }
    let g = lu.geometry;
    let block_descriptor: Vec<u8> = match (dbd, long && llbaa) {
        (true, _) => Vec::new(),
        (false, false) => {
            // Short LBA mode parameter block descriptor (SBC-3 6.4.2.2).
            let blocks = u32::try_from(g.num_blocks).unwrap_or(u32::MAX);
            let mut b = blocks.to_be_bytes().to_vec();
            b.push(0);
            b.extend_from_slice(&g.block_size.to_be_bytes()[1..]);
            b
        }
        (false, true) => {
            // Long LBA mode parameter block descriptor (SBC-3 6.4.2.3).
            let mut b = g.num_blocks.to_be_bytes().to_vec();
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&g.block_size.to_be_bytes());
            b
        }
    };
    // DEVICE-SPECIFIC PARAMETER (SBC-3 6.4.1): WP, DPOFUA.
    let dsp = if lu.read_only { 0x80 } else { 0 } | 0x10;
    let mut d = Vec::with_capacity(8 + block_descriptor.len() + pages.len());
    if long {
        let total = 8 + block_descriptor.len() + pages.len();
        d.extend_from_slice(&((total - 2) as u16).to_be_bytes());
        d.push(0); // MEDIUM TYPE
        d.push(dsp);
        d.push(if block_descriptor.len() == 16 {
            0x01
        } else {
            0
        }); // LONGLBA
        d.push(0);
        d.extend_from_slice(&(block_descriptor.len() as u16).to_be_bytes());
    } else {
        let total = 4 + block_descriptor.len() + pages.len();
        d.push((total - 1).min(255) as u8);
        d.push(0);
        d.push(dsp);
        d.push(block_descriptor.len() as u8);
    }
    d.extend_from_slice(&block_descriptor);
    d.extend_from_slice(&pages);
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        // SPC-4 table 98 (MODE SENSE(6)) and 100 (MODE SENSE(10)).
        assert_eq!(
            ModeSense::parse(&[0x1A, 0x08, 0x3F, 0, 0xFF, 0]),
            Ok(ModeSense {
                long: false,
                dbd: true,
                llbaa: false,
                pc: 0,
                page: 0x3F,
                subpage: 0,
                alloc: 255
            })
        );
        assert_eq!(
            ModeSense::parse(&[0x5A, 0x10, 0x88, 0, 0, 0, 0, 0x01, 0x00, 0]),
            Ok(ModeSense {
                long: true,
                dbd: false,
                llbaa: true,
                pc: 2,
                page: 8,
                subpage: 0,
                alloc: 256
            })
        );
    }
}
