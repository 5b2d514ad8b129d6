//! Block commands (SBC-3): READ CAPACITY, READ/WRITE, SYNCHRONIZE CACHE, VERIFY, WRITE AND
//! VERIFY, WRITE SAME, UNMAP, PRE-FETCH, and the continuation of multi-step commands.

use crate::cdb::{Rw, WriteSame};
use crate::sense::{self, Asc, Sense, SenseKey};
use crate::{LuConfig, Pending, Response, Start};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use store_api::{ErrorKind, Geometry, IoReply, IoRequest, IoResult};

/// Largest single data transfer in bytes (Block Limits MAXIMUM TRANSFER LENGTH is this over
/// the block size). Far below the 1 GiB writes that GlusterFS silently drops.
pub const MAX_TRANSFER_BYTES: u32 = 8 << 20;
/// MAXIMUM UNMAP LBA COUNT (per descriptor), in blocks.
pub const MAX_UNMAP_BLOCKS: u32 = 1 << 20;
/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 64;
/// MAXIMUM COMPARE AND WRITE LENGTH, in blocks.
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u8 = 255;
/// MAXIMUM WRITE SAME LENGTH, in blocks.
pub const MAX_WRITE_SAME_BLOCKS: u32 = 1 << 20;
/// Size of the pattern buffer WRITE SAME writes through, per request.
const PATTERN_CHUNK_BYTES: u64 = 1 << 20;

/// INVALID FIELD IN CDB without a field pointer (for fields whose position depends on the
/// CDB form).
const INVALID_FIELD: Sense = Sense::new(SenseKey::IllegalRequest, Asc::INVALID_FIELD_IN_CDB);

/// What a command waiting for storage does with the result.
#[derive(Debug)]
pub(crate) enum State {
    /// READ: pass the store's bytes through.
    Read { len: u32 },
    /// The last request of a command: success is GOOD without data.
    Final { transfer_len: u32 },
    /// WRITE AND VERIFY after its write: read back and compare.
    WriteThenVerify {
        offset: u64,
        data: Bytes,
        transfer_len: u32,
    },
    /// Compare the bytes read with `expected` (each block with `expected` when `per_block`).
    Compare {
        expected: Bytes,
        per_block: bool,
        transfer_len: u32,
    },
    /// Write `buf` (or its head) repeatedly from `next` up to `end`.
    Pattern {
        buf: Bytes,
        next: u64,
        end: u64,
        transfer_len: u32,
    },
    /// WriteZeroes of `offset..offset+len`; falls back to writing zeroes when unsupported.
    Zeroes {
        offset: u64,
        len: u64,
        block_size: u32,
        transfer_len: u32,
    },
    /// COMPARE AND WRITE: compare the bytes read with `verify`, then write `write`.
    CompareAndWrite {
        guard: CawGuard,
        offset: u64,
        verify: Bytes,
        write: Bytes,
        fua: bool,
        transfer_len: u32,
    },
    /// The write of a COMPARE AND WRITE: GOOD on success, then the guard is released.
    CompareAndWriteDone { _guard: CawGuard, transfer_len: u32 },
    /// UNMAP: discard `ranges[next..]` (byte offset, length) one after another.
    Unmap {
        ranges: Vec<(u64, u64)>,
        next: usize,
        transfer_len: u32,
    },
}

fn done(r: Response) -> Start {
    Start::Done(r)
}

fn fail(sense: Sense) -> Start {
    Start::Done(Response::check_condition(sense))
}

fn io(lun: u16, request: IoRequest, state: State) -> Start {
    Start::Io {
        lun: u64::from(lun),
        request,
        pending: Pending { lun, state },
    }
}

/// Fails unless `lba .. lba + blocks` lies inside the medium (SBC-3 4.5: the LBA plus the
/// transfer length must not exceed the capacity; overflow counts as exceeding).
#[inline]
fn check_range(g: Geometry, lba: u64, blocks: u64) -> Result<(), Sense> {
    match lba.checked_add(blocks) {
        Some(end) if end <= g.num_blocks => Ok(()),
        _ => Err(Sense::LBA_OUT_OF_RANGE),
    }
}

/// PROTECT fields: this target has no protection information, so any non-zero value is
/// INVALID FIELD IN CDB (SBC-3 table 99).
#[inline]
fn check_protect(protect: u8) -> Result<(), Sense> {
    if protect == 0 {
        Ok(())
    } else {
        Err(Sense::invalid_field_in_cdb(1, Some(7)))
    }
}

/// Common checks for READ/WRITE/VERIFY: protection, range, transfer size. Returns the byte
/// offset and length, or `None` for a transfer of 0 blocks.
#[inline]
fn rw_extent(lu: &LuConfig, rw: &Rw) -> Result<Option<(u64, u32)>, Sense> {
    check_protect(rw.protect)?;
    check_range(lu.geometry, rw.lba, u64::from(rw.blocks))?;
    if rw.blocks == 0 {
        return Ok(None);
    }
    let bs = u64::from(lu.geometry.block_size);
    let len = u64::from(rw.blocks) * bs;
    if len > u64::from(MAX_TRANSFER_BYTES) {
        return Err(INVALID_FIELD);
    }
    Ok(Some((rw.lba * bs, len as u32)))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(sense) => return fail(sense),
        }
    };
}

/// READ(6/10/12/16).
#[inline]
pub(crate) fn read(lun: u16, lu: &LuConfig, rw: Rw) -> Start {
    match tri!(rw_extent(lu, &rw)) {
        None => done(Response::good(Bytes::new(), 0)),
        Some((offset, len)) => io(lun, IoRequest::Read { offset, len }, State::Read { len }),
    }
}

/// The whole blocks of `data_out` that the CDB covers: the prefix of at most `len` bytes,
/// cut down to a multiple of the block size.
#[inline]
fn whole_blocks(data_out: Bytes, len: u32, block_size: u32) -> Bytes {
    let have = data_out.len().min(len as usize);
    let whole = have - have % block_size as usize;
    data_out.slice(..whole)
}

/// WRITE(6/10/12/16). FUA is passed to the store; DPO is accepted and ignored.
#[inline]
pub(crate) fn write(lun: u16, lu: &LuConfig, rw: Rw, data_out: Bytes) -> Start {
    let Some((offset, len)) = tri!(rw_extent(lu, &rw)) else {
        return done(Response::good(Bytes::new(), 0));
    };
    if lu.read_only {
        return fail(Sense::WRITE_PROTECTED);
    }
    let data = whole_blocks(data_out, len, lu.geometry.block_size);
    if data.is_empty() {
        return done(Response::good(Bytes::new(), len));
    }
    io(
        lun,
        IoRequest::Write {
            offset,
            data,
            fua: rw.fua,
        },
        State::Final { transfer_len: len },
    )
}

/// WRITE AND VERIFY(10/12/16): write, then read back and compare with the data written.
pub(crate) fn write_and_verify(lun: u16, lu: &LuConfig, rw: Rw, data_out: Bytes) -> Start {
    let Some((offset, len)) = tri!(rw_extent(lu, &rw)) else {
        return done(Response::good(Bytes::new(), 0));
    };
    if rw.bytchk > 1 {
        return fail(Sense::invalid_field_in_cdb(1, Some(2)));
    }
    if lu.read_only {
        return fail(Sense::WRITE_PROTECTED);
    }
    let data = whole_blocks(data_out, len, lu.geometry.block_size);
    if data.is_empty() {
        return done(Response::good(Bytes::new(), len));
    }
    let request = IoRequest::Write {
        offset,
        data: data.clone(),
        fua: false,
    };
    io(
        lun,
        request,
        State::WriteThenVerify {
            offset,
            data,
            transfer_len: len,
        },
    )
}

/// VERIFY(10/12/16): BYTCHK 0 reads the blocks (medium verification), 1 compares them with
/// the data-out, 3 compares each with the one block of data-out.
pub(crate) fn verify(lun: u16, lu: &LuConfig, rw: Rw, data_out: Bytes) -> Start {
    let Some((offset, len)) = tri!(rw_extent(lu, &rw)) else {
        return done(Response::good(Bytes::new(), 0));
    };
    let bs = lu.geometry.block_size;
    let read = IoRequest::Read { offset, len };
    match rw.bytchk {
        0 => io(lun, read, State::Final { transfer_len: 0 }),
        1 => {
            let expected = whole_blocks(data_out, len, bs);
            if expected.len() != len as usize {
                return fail(Sense::PARAMETER_LIST_LENGTH);
            }
            io(
                lun,
                read,
                State::Compare {
                    expected,
                    per_block: false,
                    transfer_len: len,
                },
            )
        }
        3 => {
            let expected = whole_blocks(data_out, bs, bs);
            if expected.is_empty() {
                return fail(Sense::PARAMETER_LIST_LENGTH);
            }
            io(
                lun,
                read,
                State::Compare {
                    expected,
                    per_block: true,
                    transfer_len: bs,
                },
            )
        }
        _ => fail(Sense::invalid_field_in_cdb(1, Some(2))),
    }
}

/// SYNCHRONIZE CACHE(10/16): range checked, then a flush of the whole store (0 blocks means
/// "to the end of the medium").
pub(crate) fn sync_cache(lun: u16, lu: &LuConfig, lba: u64, blocks: u32) -> Start {
    tri!(check_range(lu.geometry, lba, u64::from(blocks)));
    io(lun, IoRequest::Flush, State::Final { transfer_len: 0 })
}

/// PRE-FETCH(10/16): there is no cache to load, so after the range check this is GOOD
/// (SBC-3 5.10: GOOD when the blocks will not all fit in the cache).
pub(crate) fn pre_fetch(lu: &LuConfig, lba: u64, blocks: u32) -> Start {
    tri!(check_range(lu.geometry, lba, u64::from(blocks)));
    done(Response::good(Bytes::new(), 0))
}

/// WRITE SAME(10/16).
pub(crate) fn write_same(lun: u16, lu: &LuConfig, ws: WriteSame, data_out: Bytes) -> Start {
    tri!(check_protect(ws.protect));
    if ws.anchor {
        // ANC_SUP is 0 in the Logical Block Provisioning page.
        return fail(Sense::invalid_field_in_cdb(1, Some(4)));
    }
    if ws.blocks == 0 {
        // WSNZ is 1 in the Block Limits page.
        return fail(INVALID_FIELD);
    }
    tri!(check_range(lu.geometry, ws.lba, u64::from(ws.blocks)));
    if ws.blocks > MAX_WRITE_SAME_BLOCKS {
        return fail(INVALID_FIELD);
    }
    if lu.read_only {
        return fail(Sense::WRITE_PROTECTED);
    }
    let bs = lu.geometry.block_size;
    let pattern = if ws.ndob {
        None
    } else if data_out.len() != bs as usize {
        return fail(Sense::PARAMETER_LIST_LENGTH);
    } else {
        Some(data_out)
    };
    let xfer = if ws.ndob { 0 } else { bs };
    let zero = !pattern.as_ref().is_some_and(|p| p.iter().any(|&b| b != 0));
    let offset = ws.lba * u64::from(bs);
    let len = u64::from(ws.blocks) * u64::from(bs);
    let caps = lu.capabilities;
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

/// Writes `block` over `offset..offset+len` through a buffer of up to
/// [`PATTERN_CHUNK_BYTES`].
fn start_pattern(lun: u16, block: &[u8], offset: u64, len: u64, transfer_len: u32) -> Start {
    let bs = block.len() as u64;
    let chunk_blocks = (PATTERN_CHUNK_BYTES / bs).max(1).min(len / bs);
    let mut buf = BytesMut::with_capacity((chunk_blocks * bs) as usize);
    for _ in 0..chunk_blocks {
        buf.extend_from_slice(block);
    }
    next_pattern(lun, buf.freeze(), offset, offset + len, transfer_len)
}

fn next_pattern(lun: u16, buf: Bytes, next: u64, end: u64, transfer_len: u32) -> Start {
    let n = (end - next).min(buf.len() as u64);
    let data = buf.slice(..n as usize);
    io(
        lun,
        IoRequest::Write {
            offset: next,
            data,
            fua: false,
        },
        State::Pattern {
            buf,
            next: next + n,
            end,
            transfer_len,
        },
    )
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Exclusive right of one COMPARE AND WRITE on a logical unit, released when dropped
/// (command finished, or its [`Pending`] dropped because the command was aborted).
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

/// COMPARE AND WRITE (SBC-3 5.2): read the blocks, compare them with the first half of the
/// data-out, and only if equal write the second half. While another COMPARE AND WRITE on the
/// same LU is in progress the command ends with BUSY, which initiators retry.
pub(crate) fn compare_and_write(
    lun: u16,
    lu: &LuConfig,
    busy: &Arc<AtomicBool>,
    rw: Rw,
    data_out: Bytes,
) -> Start {
    if rw.blocks > u32::from(MAX_COMPARE_AND_WRITE_BLOCKS) {
        return fail(Sense::invalid_field_in_cdb(13, None));
    }
    let extent = tri!(rw_extent(lu, &rw));
    // The data-out must be exactly the verify and write data, also for 0 blocks (an
    // initiator that meant 256 blocks wrapped to 0 is sending 512 blocks of data).
    let len = extent.map_or(0, |(_, len)| len);
    if data_out.len() != 2 * len as usize {
        return fail(INVALID_FIELD);
    }
    let Some((offset, len)) = extent else {
        return done(Response::good(Bytes::new(), 0));
    };
    if lu.read_only {
        return fail(Sense::WRITE_PROTECTED);
    }
    let Some(guard) = CawGuard::try_take(busy) else {
        return done(Response {
            status: crate::Status::Busy,
            data_in: Bytes::new(),
            sense: None,
            transfer_len: 0,
        });
    };
    let verify = data_out.slice(..len as usize);
    let write = data_out.slice(len as usize..);
    let state = State::CompareAndWrite {
        guard,
        offset,
        verify,
        write,
        fua: rw.fua,
        transfer_len: 2 * len,
    };
    io(lun, IoRequest::Read { offset, len }, state)
}

/// UNMAP (SBC-3 5.28) with its parameter list (SBC-3 table 77).
pub(crate) fn unmap(lun: u16, lu: &LuConfig, anchor: bool, param_len: u16, data: Bytes) -> Start {
    if !lu.capabilities.discard {
        return fail(Sense::INVALID_OPCODE);
    }
    if anchor {
        return fail(Sense::invalid_field_in_cdb(1, Some(0)));
    }
    if lu.read_only {
        return fail(Sense::WRITE_PROTECTED);
    }
    if param_len == 0 {
        return done(Response::good(Bytes::new(), 0));
    }
    let data = data.slice(..data.len().min(usize::from(param_len)));
    if data.len() < 8 {
        return fail(Sense::PARAMETER_LIST_LENGTH);
    }
    let bddl = usize::from(be16(&data, 2));
    let count = bddl.min(data.len() - 8) / 16;
    if count > MAX_UNMAP_DESCRIPTORS as usize {
        return fail(Sense::invalid_field_in_parameter_list(2));
    }
    let g = lu.geometry;
    let bs = u64::from(g.block_size);
    let mut ranges = Vec::with_capacity(count);
    for i in 0..count {
        let d = &data[8 + 16 * i..8 + 16 * (i + 1)];
        let lba = u64::from_be_bytes(d[0..8].try_into().expect("8 bytes"));
        let blocks = u32::from_be_bytes(d[8..12].try_into().expect("4 bytes"));
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
    next_unmap(lun, ranges, 0, u32::from(param_len))
}

fn next_unmap(lun: u16, ranges: Vec<(u64, u64)>, next: usize, transfer_len: u32) -> Start {
    let (offset, len) = ranges[next];
    let state = State::Unmap {
        ranges,
        next: next + 1,
        transfer_len,
    };
    io(lun, IoRequest::Discard { offset, len }, state)
}

/// READ CAPACITY(10) parameter data (SBC-3 table 65).
pub(crate) fn read_capacity10(lu: &LuConfig) -> Response {
    let g = lu.geometry;
    let last = u32::try_from(g.num_blocks.saturating_sub(1)).unwrap_or(u32::MAX);
    let mut d = Vec::with_capacity(8);
    d.extend_from_slice(&last.to_be_bytes());
    d.extend_from_slice(&g.block_size.to_be_bytes());
    Response::data(d, 8)
}

/// READ CAPACITY(16) parameter data (SBC-3 table 67): no protection, one logical block per
/// physical block, LBPME/LBPRZ from the store's discard support.
pub(crate) fn read_capacity16(lu: &LuConfig, alloc: u32) -> Response {
    let g = lu.geometry;
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&g.num_blocks.saturating_sub(1).to_be_bytes());
    d[8..12].copy_from_slice(&g.block_size.to_be_bytes());
    if lu.capabilities.discard {
        d[14] = 0x80; // LBPME
        if lu.capabilities.discard_zeroes {
            d[14] |= 0x40; // LBPRZ
        }
    }
    Response::data(d, alloc)
}

/// GET LBA STATUS parameter data (SBC-3 5.6.2): one descriptor from `lba` to the end of the
/// medium (at most 2^32 - 1 blocks), provisioning status "mapped". The store interface has
/// no way to ask which ranges are holes, so deallocated blocks are reported mapped too;
/// without discard support that is exact.
pub(crate) fn get_lba_status(lu: &LuConfig, lba: u64, alloc: u32) -> Response {
    let g = lu.geometry;
    if lba >= g.num_blocks {
        return Response::check_condition(Sense::LBA_OUT_OF_RANGE);
    }
    let blocks = u32::try_from(g.num_blocks - lba).unwrap_or(u32::MAX);
    let mut d = vec![0u8; 8 + 16];
    d[0..4].copy_from_slice(&20u32.to_be_bytes()); // PARAMETER DATA LENGTH
    d[8..16].copy_from_slice(&lba.to_be_bytes());
    d[16..20].copy_from_slice(&blocks.to_be_bytes());
    d[20] = 0x00; // PROVISIONING STATUS: mapped
    Response::data(d, alloc)
}

/// Continues a command with the result of its storage request.
pub(crate) fn finish(lun: u16, state: State, result: IoResult) -> Start {
    let reply = match result {
        Ok(reply) => reply,
        Err(e) => {
            if let (
                State::Zeroes {
                    offset,
                    len,
                    block_size,
                    transfer_len,
                },
                ErrorKind::Unsupported,
            ) = (&state, e.kind)
            {
                let zero = vec![0u8; *block_size as usize];
                return start_pattern(lun, &zero, *offset, *len, *transfer_len);
            }
            return fail(sense::from_store_error(&e));
        }
    };
    match state {
        State::Read { len } => match reply {
            IoReply::Data(data) if data.len() == len as usize => done(Response::good(data, len)),
            _ => fail(Sense::new(
                SenseKey::MediumError,
                Asc::UNRECOVERED_READ_ERROR,
            )),
        },
        State::Final { transfer_len } => done(Response::good(Bytes::new(), transfer_len)),
        State::CompareAndWriteDone { transfer_len, .. } => {
            done(Response::good(Bytes::new(), transfer_len))
        }
        State::CompareAndWrite {
            guard,
            offset,
            verify,
            write,
            fua,
            transfer_len,
        } => {
            let IoReply::Data(read) = reply else {
                return fail(Sense::new(
                    SenseKey::MediumError,
                    Asc::UNRECOVERED_READ_ERROR,
                ));
            };
            if read.len() != verify.len() {
                return fail(Sense::new(
                    SenseKey::MediumError,
                    Asc::UNRECOVERED_READ_ERROR,
                ));
            }
            if let Some(at) = read.iter().zip(verify.iter()).position(|(a, b)| a != b) {
                return fail(Sense::MISCOMPARE.with_information(at as u32));
            }
            let state = State::CompareAndWriteDone {
                _guard: guard,
                transfer_len,
            };
            io(
                lun,
                IoRequest::Write {
                    offset,
                    data: write,
                    fua,
                },
                state,
            )
        }
        State::Zeroes { transfer_len, .. } => done(Response::good(Bytes::new(), transfer_len)),
        State::WriteThenVerify {
            offset,
            data,
            transfer_len,
        } => {
            let request = IoRequest::Read {
                offset,
                len: data.len() as u32,
            };
            io(
                lun,
                request,
                State::Compare {
                    expected: data,
                    per_block: false,
                    transfer_len,
                },
            )
        }
        State::Compare {
            expected,
            per_block,
            transfer_len,
        } => {
            let IoReply::Data(read) = reply else {
                return fail(Sense::new(
                    SenseKey::MediumError,
                    Asc::UNRECOVERED_READ_ERROR,
                ));
            };
            let first_diff = if per_block {
                read.chunks(expected.len())
                    .enumerate()
                    .find_map(|(i, block)| {
                        block
                            .iter()
                            .zip(expected.iter())
                            .position(|(a, b)| a != b)
                            .map(|p| i * expected.len() + p)
                    })
            } else {
                read.iter().zip(expected.iter()).position(|(a, b)| a != b)
            };
            match first_diff {
                Some(at) => fail(Sense::MISCOMPARE.with_information(at as u32)),
                None => done(Response::good(Bytes::new(), transfer_len)),
            }
        }
        State::Pattern {
            buf,
            next,
            end,
            transfer_len,
        } => {
            if next >= end {
                done(Response::good(Bytes::new(), transfer_len))
            } else {
                next_pattern(lun, buf, next, end, transfer_len)
            }
        }
        State::Unmap {
            ranges,
            next,
            transfer_len,
        } => {
            if next >= ranges.len() {
                done(Response::good(Bytes::new(), transfer_len))
            } else {
                next_unmap(lun, ranges, next, transfer_len)
            }
        }
    }
}
