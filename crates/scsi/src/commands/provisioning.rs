//! Logical block provisioning (SBC-3 4.7): WRITE SAME(10/16), UNMAP, GET LBA STATUS.

use super::exec::{
    busy, check_protect, check_range, done, durable, fail, hold, io, max_write_same_blocks,
    next_unmap, start_pattern, tri, State, INVALID_FIELD, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
};
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, be32, be64, lba_len, opcode as op, reserved, service_action as sa};
use crate::sense::{Asc, Sense, SenseKey};
use crate::{LuConfig, Response, Start};
use bytes::Bytes;
use store_api::{IoReply, IoRequest};

const F: u8 = 0xFF;

fn has_discard(lu: &LuConfig) -> bool {
    lu.capabilities.discard
}

/// Runs a command that changes the medium without FUA (WRITE SAME, UNMAP): with the write
/// cache off (WCE 0) its GOOD waits for a flush of the store ([`durable`]).
fn unless_cached_durable<'a>(ctx: Ctx<'a>, run: impl FnOnce(Ctx<'a>) -> Start) -> Start {
    let write_cache = ctx.lu.mode.write_cache();
    let start = run(ctx);
    if write_cache {
        start
    } else {
        durable(start)
    }
}

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<WriteSame>(op::WRITE_SAME_10, &[0x41, 0x08, F, F, F, F, 0, F, F, 0]),
    CommandDef::new::<Unmap>(op::UNMAP, &[0x42, 0, 0, 0, 0, 0, 0, F, F, 0]).offered_if(has_discard),
    CommandDef::new::<WriteSame>(
        op::WRITE_SAME_16,
        &[0x93, 0x09, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    CommandDef::new::<GetLbaStatus>(
        op::SERVICE_ACTION_IN_16,
        &[0x9E, 0x12, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    )
    .sa(sa::GET_LBA_STATUS),
];

/// WRITE SAME(10/16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteSame {
    /// LOGICAL BLOCK ADDRESS.
    pub lba: u64,
    /// NUMBER OF LOGICAL BLOCKS.
    pub blocks: u32,
    /// WRPROTECT.
    pub protect: u8,
    /// ANCHOR bit.
    pub anchor: bool,
    /// UNMAP bit: the blocks may be deallocated.
    pub unmap: bool,
    /// No data-out buffer: the block is all zeroes (WRITE SAME(16) only).
    pub ndob: bool,
}

impl ScsiCommand for WriteSame {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let op = cdb[0];
        // Byte 1: WRPROTECT(7:5) ANCHOR(4) UNMAP(3) reserved/PBDATA(2) LBDATA(1) NDOB(0, 16
        // only). PBDATA/LBDATA are not supported.
        reserved(cdb, 1, if op == op::WRITE_SAME_10 { 0x07 } else { 0x06 })?;
        let (lba, blocks) = lba_len(op, cdb);
        Ok(WriteSame {
            lba,
            blocks,
            protect: cdb[1] >> 5,
            anchor: cdb[1] & 0x10 != 0,
            unmap: cdb[1] & 0x08 != 0,
            ndob: op == op::WRITE_SAME_16 && cdb[1] & 0x01 != 0,
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        unless_cached_durable(ctx, |ctx| self.run(ctx))
    }
}

impl WriteSame {
    fn run(self, ctx: Ctx<'_>) -> Start {
        let ws = self;
        let lu_lock = &ctx.lu.interlock;
        let lu = ctx.config();
        tri!(check_protect(ws.protect));
        if ws.anchor {
            // ANC_SUP is 0 in the Logical Block Provisioning page.
            return fail(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        if ws.blocks == 0 {
            // WSNZ is 1 in the Block Limits page.
            return fail(INVALID_FIELD);
        }
        tri!(check_range(ctx.geometry(), ws.lba, u64::from(ws.blocks)));
        if ws.blocks > max_write_same_blocks(lu.geometry.block_size) {
            return fail(INVALID_FIELD);
        }
        if ctx.write_protected() {
            return fail(Sense::WRITE_PROTECTED);
        }
        let bs = lu.geometry.block_size;
        let pattern = if ws.ndob {
            None
        } else if ctx.data_out.len() != bs as usize {
            return fail(Sense::PARAMETER_LIST_LENGTH);
        } else {
            Some(ctx.data_out.to_bytes())
        };
        let xfer = if ws.ndob { 0 } else { bs };
        let offset = ws.lba * u64::from(bs);
        let len = u64::from(ws.blocks) * u64::from(bs);
        let caps = lu.capabilities;
        let lun = ctx.lun;
        let Some(guard) = lu_lock.try_lock(offset, len, false) else {
            return busy();
        };
        hold(
            Self::start(lun, ws, caps, pattern, offset, len, bs, xfer),
            Some(guard),
        )
    }

    /// The first store request of a WRITE SAME whose checks passed.
    #[allow(clippy::too_many_arguments)]
    fn start(
        lun: u16,
        ws: WriteSame,
        caps: store_api::Capabilities,
        pattern: Option<Bytes>,
        offset: u64,
        len: u64,
        bs: u32,
        xfer: u32,
    ) -> Start {
        let zero = !pattern.as_ref().is_some_and(|p| p.iter().any(|&b| b != 0));
        if zero && ws.unmap && caps.discard && caps.discard_zeroes {
            return io(
                lun,
                IoRequest::Discard { offset, len },
                State::Final { transfer_len: xfer },
            );
        }
        if zero && caps.write_zeroes {
            let state = State::Zeroes {
                offset,
                len,
                block_size: bs,
                transfer_len: xfer,
            };
            return io(lun, IoRequest::WriteZeroes { offset, len }, state);
        }
        let block = pattern.unwrap_or_else(|| Bytes::from(vec![0u8; bs as usize]));
        start_pattern(lun, &block, offset, len, xfer)
    }
}

/// UNMAP (SBC-3 5.28) with its parameter list (SBC-3 table 77).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unmap {
    /// ANCHOR bit.
    pub anchor: bool,
    /// PARAMETER LIST LENGTH.
    pub param_len: u16,
}

impl ScsiCommand for Unmap {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        reserved(cdb, 1, 0xFE)?;
        Ok(Unmap {
            anchor: cdb[1] & 0x01 != 0,
            param_len: be16(cdb, 7),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        unless_cached_durable(ctx, |ctx| self.run(ctx))
    }
}

impl Unmap {
    fn run(self, ctx: Ctx<'_>) -> Start {
        let Unmap { anchor, param_len } = self;
        let lu = ctx.config();
        if !lu.capabilities.discard {
            return fail(Sense::INVALID_OPCODE);
        }
        if anchor {
            return fail(Sense::invalid_field_in_cdb(1, Some(0)));
        }
        if ctx.write_protected() {
            return fail(Sense::WRITE_PROTECTED);
        }
        if param_len == 0 {
            return done(Response::good(Bytes::new(), 0));
        }
        let data = ctx.data_out.to_bytes();
        let data = data.slice(..data.len().min(usize::from(param_len)));
        if data.len() < 8 {
            return fail(Sense::PARAMETER_LIST_LENGTH);
        }
        let bddl = usize::from(be16(&data, 2));
        let count = bddl.min(data.len() - 8) / 16;
        if count > MAX_UNMAP_DESCRIPTORS as usize {
            return fail(Sense::invalid_field_in_parameter_list(2));
        }
        let g = ctx.geometry();
        let bs = u64::from(g.block_size);
        let mut ranges = Vec::with_capacity(count);
        for i in 0..count {
            let d = &data[8 + 16 * i..8 + 16 * (i + 1)];
            let lba = be64(d, 0);
            let blocks = be32(d, 8);
            tri!(check_range(g, lba, u64::from(blocks)));
            if blocks > MAX_UNMAP_BLOCKS {
                return fail(Sense::invalid_field_in_parameter_list(
                    (8 + 16 * i + 8) as u16,
                ));
            }
            if blocks > 0 {
                ranges.push((lba * bs, u64::from(blocks) * bs));
            }
        }
        if ranges.is_empty() {
            return done(Response::good(Bytes::new(), u32::from(param_len)));
        }
        // Held as one span from the lowest to the highest block unmapped.
        let start = ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let end = ranges.iter().map(|r| r.0 + r.1).max().unwrap_or(0);
        let Some(guard) = ctx.lock(start, end - start, false) else {
            return busy();
        };
        hold(
            next_unmap(ctx.lun, ranges, 0, u32::from(param_len)),
            Some(guard),
        )
    }
}

/// GET LBA STATUS (SBC-3 5.6).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GetLbaStatus {
    /// STARTING LOGICAL BLOCK ADDRESS.
    pub lba: u64,
    /// ALLOCATION LENGTH.
    pub alloc: u32,
}

impl ScsiCommand for GetLbaStatus {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        Ok(GetLbaStatus {
            lba: be64(cdb, 2),
            alloc: be32(cdb, 10),
        })
    }

    /// Parameter data (SBC-3 5.6.2): descriptors from `lba` on, each a run of blocks that
    /// are all mapped or all deallocated, as the store's allocation says (SEEK_DATA and
    /// SEEK_HOLE on files and Gluster, the block map in memory), as many as the allocation
    /// length holds (at most [`MAX_LBA_STATUS_DESCRIPTORS`]). A block only partly in a hole
    /// is mapped. A store that cannot tell gets one descriptor "mapped" to the end of the
    /// medium.
    fn execute(self, ctx: Ctx<'_>) -> Start {
        let GetLbaStatus { lba, alloc } = self;
        let g = ctx.geometry();
        if lba >= g.num_blocks {
            return fail(Sense::LBA_OUT_OF_RANGE);
        }
        let max = (alloc.saturating_sub(8) / 16).clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
        LbaStatus {
            next: lba,
            num_blocks: g.num_blocks,
            block_size: g.block_size,
            data: vec![0u8; 8],
            max_descriptors: max as usize,
            requests: 0,
            alloc,
        }
        .ask(ctx.lun)
    }
}

/// At most this many descriptors in one GET LBA STATUS answer.
pub(crate) const MAX_LBA_STATUS_DESCRIPTORS: u32 = 64;
/// At most this many store queries for one GET LBA STATUS (a file fragmented below the block
/// size answers with many small extents that merge into one descriptor).
const MAX_LBA_STATUS_REQUESTS: u32 = 256;

/// A GET LBA STATUS in progress.
#[derive(Debug)]
pub(crate) struct LbaStatus {
    /// The first block not described yet.
    next: u64,
    num_blocks: u64,
    block_size: u32,
    /// Header and the descriptors so far.
    data: Vec<u8>,
    max_descriptors: usize,
    requests: u32,
    alloc: u32,
}

impl LbaStatus {
    fn ask(mut self, lun: u16) -> Start {
        self.requests += 1;
        let bs = u64::from(self.block_size);
        let request = IoRequest::Allocation {
            offset: self.next * bs,
            len: (self.num_blocks - self.next) * bs,
        };
        io(lun, request, State::LbaStatus(self))
    }

    fn descriptors(&self) -> usize {
        (self.data.len() - 8) / 16
    }

    /// Adds `blocks` blocks from `self.next` with `mapped`; false when a new descriptor
    /// would be one too many.
    fn push(&mut self, mapped: bool, mut blocks: u64) -> bool {
        let status = if mapped { 0 } else { 1 };
        while blocks > 0 {
            let n = self.descriptors();
            if n > 0 {
                let last = &mut self.data[8 + 16 * (n - 1)..8 + 16 * n];
                let count = u32::from_be_bytes(last[8..12].try_into().expect("4 bytes"));
                if last[12] == status && count < u32::MAX {
                    let add = blocks.min(u64::from(u32::MAX - count));
                    last[8..12].copy_from_slice(&(count + add as u32).to_be_bytes());
                    self.next += add;
                    blocks -= add;
                    continue;
                }
            }
            if n == self.max_descriptors {
                return false;
            }
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&self.next.to_be_bytes());
            d[12] = status; // PROVISIONING STATUS: 0 mapped, 1 deallocated
            self.data.extend_from_slice(&d);
        }
        true
    }

    fn answer(mut self) -> Start {
        let len = (self.data.len() - 4) as u32;
        self.data[0..4].copy_from_slice(&len.to_be_bytes()); // PARAMETER DATA LENGTH
        done(Response::data(self.data, self.alloc))
    }

    /// Continues with the store's answer about `self.next`.
    pub(crate) fn next(mut self, lun: u16, reply: IoReply) -> Start {
        let IoReply::Allocation { mapped, len } = reply else {
            return fail(Sense::new(
                SenseKey::MediumError,
                Asc::UNRECOVERED_READ_ERROR,
            ));
        };
        let bs = u64::from(self.block_size);
        let end = (self.next * bs + len.max(1)).min(self.num_blocks * bs);
        let (mapped, blocks) = if mapped {
            (true, end.div_ceil(bs) - self.next)
        } else if end / bs > self.next {
            (false, end / bs - self.next)
        } else {
            (true, 1)
        };
        if !self.push(mapped, blocks)
            || self.next >= self.num_blocks
            || self.requests >= MAX_LBA_STATUS_REQUESTS
        {
            return self.answer();
        }
        self.ask(lun)
    }

    /// The store failed: one that cannot tell (or stopped telling) reports the rest mapped;
    /// other errors are the command's.
    pub(crate) fn failed(mut self, e: &store_api::StoreError) -> Start {
        if e.kind != store_api::ErrorKind::Unsupported {
            return fail(crate::sense::from_store_error(e));
        }
        let rest = self.num_blocks - self.next;
        self.push(true, rest);
        self.answer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_same16_flags() {
        // SBC-3 table 123: ANCHOR bit 4, UNMAP bit 3, NDOB bit 0 of byte 1.
        let cdb = [0x93, 0x19, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0];
        assert_eq!(
            WriteSame::parse(&cdb),
            Ok(WriteSame {
                lba: 4,
                blocks: 2,
                protect: 0,
                anchor: true,
                unmap: true,
                ndob: true
            })
        );
    }

    #[test]
    fn unmap_and_get_lba_status_fields() {
        // SBC-3 table 76: PARAMETER LIST LENGTH bytes 7..9.
        assert_eq!(
            Unmap::parse(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]),
            Ok(Unmap {
                anchor: false,
                param_len: 24
            })
        );
        // SBC-3 table 37: STARTING LBA 2..10, ALLOCATION LENGTH 10..14.
        assert_eq!(
            GetLbaStatus::parse(&[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 24, 0, 0]),
            Ok(GetLbaStatus {
                lba: 0x102,
                alloc: 24
            })
        );
    }
}
