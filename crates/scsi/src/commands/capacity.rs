//! What the medium is: READ CAPACITY(10/16) (SBC-3 5.15, 5.16) and READ DEFECT DATA(10/12)
//! (SBC-3 5.17, 5.18).

use super::exec::done;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, be32, opcode as op, reserved, service_action as sa};
use crate::sense::Sense;
use crate::{Response, Start};

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<ReadCapacity10>(op::READ_CAPACITY_10, &[0x25, 0, F, F, F, F, 0, 0, 0x01, 0]),
    CommandDef::new::<ReadCapacity16>(
        op::SERVICE_ACTION_IN_16,
        &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .sa(sa::READ_CAPACITY_16),
    CommandDef::new::<ReadDefectData>(
        op::READ_DEFECT_DATA_10,
        &[0x37, 0, 0x1F, 0, 0, 0, 0, F, F, 0],
    ),
    CommandDef::new::<ReadDefectData>(
        op::READ_DEFECT_DATA_12,
        &[0xB7, 0x1F, F, F, F, F, F, F, F, F, 0, 0],
    ),
];

/// READ DEFECT DATA(10/12): the medium is a file, so the primary and grown defect lists are
/// valid and empty, in the format asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReadDefectData {
    /// READ DEFECT DATA(12).
    pub long: bool,
    /// REQ_PLIST and REQ_GLIST (bits 4 and 3) with DEFECT LIST FORMAT (2:0).
    pub request: u8,
    /// ALLOCATION LENGTH.
    pub alloc: u32,
}

impl ScsiCommand for ReadDefectData {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        // (10), SBC-3 table 74: byte 2 REQ_PLIST(4) REQ_GLIST(3) FORMAT(2:0), ALLOCATION
        // LENGTH 7..9. (12), table 77: the same bits in byte 1, ADDRESS DESCRIPTOR INDEX
        // 2..6, ALLOCATION LENGTH 6..10.
        let long = cdb[0] == op::READ_DEFECT_DATA_12;
        let at = if long { 1 } else { 2 };
        if !long {
            reserved(cdb, 1, 0xFF)?;
        }
        reserved(cdb, at, 0xE0)?;
        // Formats (SBC-3 table 75): 000b short block, 011b long block, 100b bytes from
        // index, 101b physical sector, 110b vendor specific; the rest are reserved.
        if matches!(cdb[at] & 0x07, 0b001 | 0b010 | 0b111) {
            return Err(Sense::invalid_field_in_cdb(at as u16, Some(2)));
        }
        Ok(ReadDefectData {
            long,
            request: cdb[at] & 0x1F,
            alloc: if long {
                be32(cdb, 6)
            } else {
                u32::from(be16(cdb, 7))
            },
        })
    }

    fn execute(self, _ctx: Ctx<'_>) -> Start {
        // Header: PLISTV/GLISTV as requested (the lists are valid), the format, and a
        // DEFECT LIST LENGTH of 0; (12) has a GENERATION CODE and a 4-byte length.
        let d = if self.long {
            vec![0, self.request, 0, 0, 0, 0, 0, 0]
        } else {
            vec![0, self.request, 0, 0]
        };
        done(Response::data(d, self.alloc))
    }
}

/// READ CAPACITY(10).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReadCapacity10 {
    /// PMI bit (obsolete in SBC-3).
    pub pmi: bool,
    /// LOGICAL BLOCK ADDRESS (must be 0 without PMI).
    pub lba: u32,
}

impl ScsiCommand for ReadCapacity10 {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let pmi = cdb[8] & 0x01 != 0;
        let lba = be32(cdb, 2);
        // SBC-3 5.15.1: an LBA without PMI is an error.
        if !pmi && lba != 0 {
            return Err(Sense::invalid_field_in_cdb(2, None));
        }
        Ok(ReadCapacity10 { pmi, lba })
    }

    /// Parameter data (SBC-3 table 65).
    fn execute(self, ctx: Ctx<'_>) -> Start {
        let g = ctx.geometry();
        let last = u32::try_from(g.num_blocks.saturating_sub(1)).unwrap_or(u32::MAX);
        let mut d = Vec::with_capacity(8);
        d.extend_from_slice(&last.to_be_bytes());
        d.extend_from_slice(&g.block_size.to_be_bytes());
        done(Response::data(d, 8))
    }
}

/// READ CAPACITY(16).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReadCapacity16 {
    /// ALLOCATION LENGTH.
    pub alloc: u32,
}

impl ScsiCommand for ReadCapacity16 {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        Ok(ReadCapacity16 {
            alloc: be32(cdb, 10),
        })
    }

    /// Parameter data (SBC-3 table 67): no protection, one logical block per physical block,
    /// LBPME/LBPRZ from the store's discard support.
    fn execute(self, ctx: Ctx<'_>) -> Start {
        let lu = ctx.config();
        let g = ctx.geometry();
        let mut d = vec![0u8; 32];
        d[0..8].copy_from_slice(&g.num_blocks.saturating_sub(1).to_be_bytes());
        d[8..12].copy_from_slice(&g.block_size.to_be_bytes());
        if lu.capabilities.discard {
            d[14] = 0x80; // LBPME
            if lu.capabilities.discard_zeroes {
                d[14] |= 0x40; // LBPRZ
            }
        }
        done(Response::data(d, self.alloc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        // SBC-3 table 64: LBA 2..6, PMI byte 8 bit 0.
        assert_eq!(
            ReadCapacity10::parse(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Ok(ReadCapacity10 { pmi: false, lba: 0 })
        );
        assert_eq!(
            ReadCapacity10::parse(&[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(Sense::invalid_field_in_cdb(2, None))
        );
        // SBC-3 table 66: ALLOCATION LENGTH 10..14.
        assert_eq!(
            ReadCapacity16::parse(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]),
            Ok(ReadCapacity16 { alloc: 32 })
        );
    }
}
