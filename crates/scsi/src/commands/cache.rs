//! Cache control (SBC-3): SYNCHRONIZE CACHE(10/16), PRE-FETCH(10/16).

use super::exec::{check_range, done, io, tri, State};
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{lba_len, opcode as op};
use crate::sense::Sense;
use crate::{Response, Start};
use bytes::Bytes;
use store_api::IoRequest;

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<PreFetch>(op::PRE_FETCH_10, &[0x34, 0x02, F, F, F, F, 0, F, F, 0]),
    CommandDef::new::<SyncCache>(
        op::SYNCHRONIZE_CACHE_10,
        &[0x35, 0x02, F, F, F, F, 0, F, F, 0],
    ),
    CommandDef::new::<PreFetch>(
        op::PRE_FETCH_16,
        &[0x90, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    CommandDef::new::<SyncCache>(
        op::SYNCHRONIZE_CACHE_16,
        &[0x91, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
];

/// The LBA, block count and IMMED bit both commands carry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Range {
    /// LOGICAL BLOCK ADDRESS.
    pub lba: u64,
    /// NUMBER OF LOGICAL BLOCKS / PREFETCH LENGTH.
    pub blocks: u32,
    /// IMMED bit (accepted; the command completes when done either way).
    pub immed: bool,
}

fn parse_range(cdb: &[u8]) -> Range {
    let (lba, blocks) = lba_len(cdb[0], cdb);
    Range {
        lba,
        blocks,
        immed: cdb[1] & 0x02 != 0,
    }
}

/// SYNCHRONIZE CACHE(10/16) (SBC-3 5.22): range checked, then a flush of the whole store (0
/// blocks means "to the end of the medium").
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SyncCache(pub Range);

impl ScsiCommand for SyncCache {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        Ok(SyncCache(parse_range(cdb)))
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let r = self.0;
        tri!(check_range(ctx.geometry(), r.lba, u64::from(r.blocks)));
        io(ctx.lun, IoRequest::Flush, State::Final { transfer_len: 0 })
    }
}

/// PRE-FETCH(10/16) (SBC-3 5.10): there is no cache to load, so after the range check this
/// is GOOD (GOOD when the blocks will not all fit in the cache).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PreFetch(pub Range);

impl ScsiCommand for PreFetch {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        Ok(PreFetch(parse_range(cdb)))
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let r = self.0;
        tri!(check_range(ctx.geometry(), r.lba, u64::from(r.blocks)));
        done(Response::good(Bytes::new(), 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_cache10_fields() {
        // SBC-3 table 105: IMMED byte 1 bit 1, LBA 2..6, NUMBER OF LOGICAL BLOCKS 7..9.
        let c = SyncCache::parse(&[0x35, 0x02, 0, 0, 0, 5, 0, 0, 8, 0]);
        assert_eq!(
            c,
            Ok(SyncCache(Range {
                lba: 5,
                blocks: 8,
                immed: true
            }))
        );
    }
}
