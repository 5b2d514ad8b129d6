//! Read-modify-write commands (SBC-3): COMPARE AND WRITE and ORWRITE(16). Each holds its
//! blocks exclusively in the LU's interlock from its read to the end of its write, so that no
//! other write, from any nexus, lands in between.

use super::exec::{
    busy, done, fail, hold, io, rw_extent, tri, State, INVALID_FIELD, MAX_COMPARE_AND_WRITE_BLOCKS,
};
use super::rw::Rw;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be64, lba_len, opcode as op, reserved};
use crate::sense::Sense;
use crate::{Response, Start};
use bytes::Bytes;
use store_api::IoRequest;

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<CompareAndWrite>(
        op::COMPARE_AND_WRITE,
        &[0x89, 0x1A, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0, 0],
    ),
    CommandDef::new::<OrWrite>(
        op::ORWRITE_16,
        &[0x8B, 0x1A, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
];

/// COMPARE AND WRITE (SBC-3 5.2): read the blocks, compare them with the first half of the
/// data-out, and only if equal write the second half. `blocks` is NUMBER OF LOGICAL BLOCKS
/// (one byte).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CompareAndWrite(pub Rw);

impl ScsiCommand for CompareAndWrite {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        // Byte 1: WRPROTECT(7:5) DPO(4) FUA(3) reserved(2) FUA_NV(1) reserved(0).
        reserved(cdb, 1, 0x05)?;
        Ok(CompareAndWrite(Rw {
            lba: be64(cdb, 2),
            blocks: u32::from(cdb[13]),
            protect: cdb[1] >> 5,
            dpo: cdb[1] & 0x10 != 0,
            fua: cdb[1] & 0x08 != 0,
            bytchk: 0,
        }))
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let rw = self.0;
        if rw.blocks > u32::from(MAX_COMPARE_AND_WRITE_BLOCKS) {
            return fail(Sense::invalid_field_in_cdb(13, None));
        }
        let extent = tri!(rw_extent(ctx.geometry(), &rw));
        // The data-out must be exactly the verify and write data, also for 0 blocks (an
        // initiator that meant 256 blocks wrapped to 0 is sending 512 blocks of data).
        let len = extent.map_or(0, |(_, len)| len);
        if ctx.data_out.len() != 2 * len as usize {
            return fail(INVALID_FIELD);
        }
        let Some((offset, len)) = extent else {
            return done(Response::good(Bytes::new(), 0));
        };
        if ctx.write_protected() {
            return fail(Sense::WRITE_PROTECTED);
        }
        let Some(guard) = ctx.lock(offset, u64::from(len), true) else {
            return busy();
        };
        let data = ctx.data_out.to_bytes();
        let verify = data.slice(..len as usize);
        let write = data.slice(len as usize..);
        let state = State::CompareAndWrite {
            offset,
            verify,
            write,
            fua: ctx.fua(rw.fua),
            transfer_len: 2 * len,
        };
        hold(
            io(ctx.lun, IoRequest::Read { offset, len }, state),
            Some(guard),
        )
    }
}

/// ORWRITE(16) (SBC-3 5.9): each block becomes the bitwise OR of what it held and the
/// data-out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OrWrite(pub Rw);

impl ScsiCommand for OrWrite {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        // Byte 1: ORPROTECT(7:5) DPO(4) FUA(3) reserved(2) FUA_NV(1) reserved(0).
        reserved(cdb, 1, 0x05)?;
        let (lba, blocks) = lba_len(cdb[0], cdb);
        Ok(OrWrite(Rw {
            lba,
            blocks,
            protect: cdb[1] >> 5,
            dpo: cdb[1] & 0x10 != 0,
            fua: cdb[1] & 0x08 != 0,
            bytchk: 0,
        }))
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let rw = self.0;
        let Some((offset, len)) = tri!(rw_extent(ctx.geometry(), &rw)) else {
            return done(Response::good(Bytes::new(), 0));
        };
        if ctx.write_protected() {
            return fail(Sense::WRITE_PROTECTED);
        }
        if ctx.data_out.len() < len as usize {
            return fail(Sense::PARAMETER_LIST_LENGTH);
        }
        let Some(guard) = ctx.lock(offset, u64::from(len), true) else {
            return busy();
        };
        let state = State::OrWrite {
            offset,
            mask: ctx.data_out.to_bytes().slice(..len as usize),
            fua: ctx.fua(rw.fua),
        };
        hold(
            io(ctx.lun, IoRequest::Read { offset, len }, state),
            Some(guard),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        // SBC-3 table 23: FUA in byte 1 bit 3, LBA bytes 2..10, NUMBER OF LOGICAL BLOCKS 13.
        let c = CompareAndWrite::parse(&[0x89, 0x08, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            c,
            Ok(CompareAndWrite(Rw {
                lba: 7,
                blocks: 1,
                protect: 0,
                dpo: false,
                fua: true,
                bytchk: 0
            }))
        );
        // ORWRITE(16), SBC-3 table 46: ORPROTECT 7:5, DPO, FUA; LBA 2..10; length 10..14.
        let o = OrWrite::parse(&[0x8B, 0x38, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0]);
        assert_eq!(
            o,
            Ok(OrWrite(Rw {
                lba: 9,
                blocks: 2,
                protect: 1,
                dpo: true,
                fua: true,
                bytchk: 0
            }))
        );
    }
}
