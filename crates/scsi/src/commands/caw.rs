//! COMPARE AND WRITE (SBC-3 5.2).

use super::exec::{
    done, fail, io, rw_extent, tri, State, INVALID_FIELD, MAX_COMPARE_AND_WRITE_BLOCKS,
};
use super::rw::Rw;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be64, opcode as op, reserved};
use crate::sense::Sense;
use crate::{Response, Start};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use store_api::IoRequest;

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[CommandDef::new::<CompareAndWrite>(
    op::COMPARE_AND_WRITE,
    &[0x89, 0x1A, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0, 0],
)];

/// Exclusive right of one COMPARE AND WRITE on a logical unit, released when dropped
/// (command finished, or its [`crate::Pending`] dropped because the command was aborted).
///
/// COMPARE AND WRITE commands on one LU are serialised against each other, as LIO and
/// tcmu-runner do: that is what ESXi's ATS locking needs. Ordinary writes are not held back.
#[derive(Debug)]
pub(crate) struct CawGuard(Arc<AtomicBool>);

impl CawGuard {
    fn try_take(flag: &Arc<AtomicBool>) -> Option<CawGuard> {
        flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| CawGuard(Arc::clone(flag)))
    }
}

impl Drop for CawGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// COMPARE AND WRITE: read the blocks, compare them with the first half of the data-out, and
/// only if equal write the second half. While another COMPARE AND WRITE on the same LU is in
/// progress the command ends with BUSY, which initiators retry. `blocks` is NUMBER OF LOGICAL
/// BLOCKS (one byte).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CompareAndWrite(pub Rw);

impl ScsiCommand for CompareAndWrite {
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
        let lu = ctx.config();
        if rw.blocks > u32::from(MAX_COMPARE_AND_WRITE_BLOCKS) {
            return fail(Sense::invalid_field_in_cdb(13, None));
        }
        let extent = tri!(rw_extent(lu, &rw));
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
        let Some(guard) = CawGuard::try_take(&ctx.lu.caw_busy) else {
            return done(Response {
                status: crate::Status::Busy,
                data_in: Bytes::new(),
                sense: None,
                transfer_len: 0,
            });
        };
        let verify = ctx.data_out.slice(..len as usize);
        let write = ctx.data_out.slice(len as usize..);
        let state = State::CompareAndWrite {
            guard,
            offset,
            verify,
            write,
            fua: ctx.fua(rw.fua),
            transfer_len: 2 * len,
        };
        io(ctx.lun, IoRequest::Read { offset, len }, state)
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
    }
}
