//! What block commands share: the limits, the range and protection checks, and the
//! continuation of commands that wait for storage ([`State`] and [`finish`]).

use super::rw::Rw;
use crate::commands::interlock::RangeGuard;
use crate::sense::{self, Asc, Sense, SenseKey};
use crate::{Pending, Response, Start};
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex};
use store_api::{ErrorKind, Geometry, IoReply, IoRequest, IoResult, Segments};

/// Largest single data transfer in bytes (Block Limits MAXIMUM TRANSFER LENGTH is this over
/// the block size). Far below the 1 GiB writes that GlusterFS silently drops.
pub const MAX_TRANSFER_BYTES: u32 = 8 << 20;
/// MAXIMUM UNMAP LBA COUNT (per descriptor), in blocks.
pub const MAX_UNMAP_BLOCKS: u32 = 1 << 20;
/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 64;
/// MAXIMUM COMPARE AND WRITE LENGTH, in blocks.
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u8 = 255;
/// MAXIMUM WRITE SAME LENGTH in bytes (Block Limits reports it over the block size): twice
/// the maximum transfer, so that one WRITE SAME, which may write its pattern through us
/// chunk by chunk, stays a bounded piece of work inside the command time limit like a WRITE.
/// Hosts split larger zeroing themselves (Linux sizes WRITE ZEROES from it).
pub const MAX_WRITE_SAME_BYTES: u32 = 2 * MAX_TRANSFER_BYTES;

/// MAXIMUM WRITE SAME LENGTH in blocks for a block size.
pub(crate) fn max_write_same_blocks(block_size: u32) -> u32 {
    MAX_WRITE_SAME_BYTES / block_size.max(1)
}
/// Size of the pattern buffer WRITE SAME writes through, per request.
pub(crate) const PATTERN_CHUNK_BYTES: u64 = 1 << 20;

/// INVALID FIELD IN CDB without a field pointer (for fields whose position depends on the
/// CDB form).
pub(crate) const INVALID_FIELD: Sense =
    Sense::new(SenseKey::IllegalRequest, Asc::INVALID_FIELD_IN_CDB);

/// What a command waiting for storage does with the result.
#[derive(Debug)]
pub(crate) enum State {
    /// READ: pass the store's bytes through; `parts` of them were passed on already, as
    /// the store read them ([`crate::Pending::part`]).
    Read { len: u32, parts: u32 },
    /// The last request of a command: success is GOOD without data.
    Final { transfer_len: u32 },
    /// WRITE AND VERIFY after its write: read back and compare.
    WriteThenVerify {
        offset: u64,
        data: Segments,
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
        offset: u64,
        verify: Bytes,
        write: Bytes,
        fua: bool,
        transfer_len: u32,
    },
    /// GET LBA STATUS: asking the store extent by extent (see `provisioning::LbaStatus`).
    LbaStatus(super::provisioning::LbaStatus),
    /// ORWRITE: OR `mask` into the blocks read, then write them.
    OrWrite { offset: u64, mask: Bytes, fua: bool },
    /// SANITIZE: its passes over the medium (see `sanitize::SanitizeRun`).
    Sanitize(Box<super::sanitize::SanitizeRun>),
    /// EXTENDED COPY: its segments, copied chunk by chunk (see `copy::CopyRun`).
    Copy(Box<super::copy::CopyRun>),
    /// A command carried out beside the core (`crate::SharedReservations`): its answer,
    /// left in the slot by then.
    Answer(Arc<Mutex<Option<Response>>>),
    /// UNMAP: discard `ranges[next..]` (byte offset, length) one after another.
    Unmap {
        ranges: Vec<(u64, u64)>,
        next: usize,
        transfer_len: u32,
    },
}

pub(crate) fn done(r: Response) -> Start {
    Start::Done(r)
}

pub(crate) fn fail(sense: Sense) -> Start {
    Start::Done(Response::check_condition(sense))
}

pub(crate) fn io(lun: u16, request: IoRequest, state: State) -> Start {
    io_at(None, lun, request, state)
}

/// [`io`] on LUN `lun` of another target when `peer` is set (a copy between targets).
pub(crate) fn io_at(
    peer: Option<crate::Peer>,
    lun: u16,
    request: IoRequest,
    state: State,
) -> Start {
    Start::Io {
        lun: u64::from(lun),
        request,
        pending: Pending {
            lun,
            state,
            descriptor_sense: false,
            flush_before_good: false,
            range: None,
        },
        peer,
    }
}

/// BUSY: the blocks are held by a command in flight that conflicts (see `interlock`).
pub(crate) fn busy() -> Start {
    done(Response {
        status: crate::Status::Busy,
        data_in: Bytes::new(),
        sense: None,
        transfer_len: 0,
    })
}

/// Keeps `guard` (the command's range in the interlock) until the command ends: a command
/// waiting for storage carries it on; one already done lets it go.
pub(crate) fn hold(start: Start, guard: Option<RangeGuard>) -> Start {
    with_io_pending(start, |pending| pending.range = guard)
}

/// Makes a command that changes the medium without FUA (WRITE SAME, UNMAP) durable before
/// its status: a command still waiting for storage is marked, so that the GOOD it ends with
/// becomes a flush first (see [`flush_before_good`]).
pub(crate) fn durable(start: Start) -> Start {
    with_io_pending(start, |pending| pending.flush_before_good = true)
}

/// Applies `change` to the [`Pending`] of a command still waiting for storage; any other
/// start is returned as it is.
#[inline]
pub(crate) fn with_io_pending(mut start: Start, change: impl FnOnce(&mut Pending)) -> Start {
    if let Start::Io { pending, .. } = &mut start {
        change(pending);
    }
    start
}

/// For a command marked [`durable`]: GOOD becomes a flush of the store, then GOOD with the
/// same transfer length; a step still waiting stays marked.
pub(crate) fn flush_before_good(lun: u16, start: Start) -> Start {
    match start {
        Start::Done(r) if r.status == crate::Status::Good => io(
            lun,
            IoRequest::Flush,
            State::Final {
                transfer_len: r.transfer_len,
            },
        ),
        other => durable(other),
    }
}

/// Fails unless `lba .. lba + blocks` lies inside the medium (SBC-3 4.5: the LBA plus the
/// transfer length must not exceed the capacity; overflow counts as exceeding).
#[inline]
pub(crate) fn check_range(g: Geometry, lba: u64, blocks: u64) -> Result<(), Sense> {
    match lba.checked_add(blocks) {
        Some(end) if end <= g.num_blocks => Ok(()),
        _ => Err(Sense::LBA_OUT_OF_RANGE),
    }
}

/// PROTECT fields: this target has no protection information, so any non-zero value is
/// INVALID FIELD IN CDB (SBC-3 table 99).
#[inline]
pub(crate) fn check_protect(protect: u8) -> Result<(), Sense> {
    if protect == 0 {
        Ok(())
    } else {
        Err(Sense::invalid_field_in_cdb(1, Some(7)))
    }
}

/// Common checks for READ/WRITE/VERIFY: protection, range, transfer size. Returns the byte
/// offset and length, or `None` for a transfer of 0 blocks.
#[inline]
pub(crate) fn rw_extent(g: Geometry, rw: &Rw) -> Result<Option<(u64, u32)>, Sense> {
    check_protect(rw.protect)?;
    check_range(g, rw.lba, u64::from(rw.blocks))?;
    if rw.blocks == 0 {
        return Ok(None);
    }
    let bs = u64::from(g.block_size);
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
            Err(sense) => return $crate::commands::exec::fail(sense),
        }
    };
}
pub(crate) use tri;

/// The whole blocks of `data_out` that the CDB covers: the prefix of at most `len` bytes,
/// cut down to a multiple of the block size.
#[inline]
pub(crate) fn whole_blocks(data_out: Segments, len: u32, block_size: u32) -> Segments {
    let have = data_out.len().min(len as usize);
    let whole = have - have % block_size as usize;
    data_out.slice(..whole)
}

/// Writes `block` over `offset..offset+len` through a buffer of up to
/// [`PATTERN_CHUNK_BYTES`].
pub(crate) fn start_pattern(
    lun: u16,
    block: &[u8],
    offset: u64,
    len: u64,
    transfer_len: u32,
) -> Start {
    let bs = block.len() as u64;
    let chunk_blocks = (PATTERN_CHUNK_BYTES / bs).max(1).min(len / bs);
    let mut buf = BytesMut::with_capacity((chunk_blocks * bs) as usize);
    for _ in 0..chunk_blocks {
        buf.extend_from_slice(block);
    }
    next_pattern(lun, buf.freeze(), offset, offset + len, transfer_len)
}

pub(crate) fn next_pattern(lun: u16, buf: Bytes, next: u64, end: u64, transfer_len: u32) -> Start {
    let n = (end - next).min(buf.len() as u64);
    let data = buf.slice(..n as usize);
    io(
        lun,
        IoRequest::Write {
            offset: next,
            data: data.into(),
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

pub(crate) fn next_unmap(
    lun: u16,
    ranges: Vec<(u64, u64)>,
    next: usize,
    transfer_len: u32,
) -> Start {
    let (offset, len) = ranges[next];
    let state = State::Unmap {
        ranges,
        next: next + 1,
        transfer_len,
    };
    io(lun, IoRequest::Discard { offset, len }, state)
}

/// The read of a read-modify-write (COMPARE AND WRITE, ORWRITE): the store's data when it
/// is exactly `len` bytes; any other reply is MEDIUM ERROR, UNRECOVERED READ ERROR.
fn read_back(reply: IoReply, len: usize) -> Result<Bytes, Sense> {
    match reply {
        IoReply::Data(read) if read.len() == len => Ok(read),
        _ => Err(Sense::new(
            SenseKey::MediumError,
            Asc::UNRECOVERED_READ_ERROR,
        )),
    }
}

/// Continues a command with the result of its storage request.
pub(crate) fn finish(lun: u16, state: State, result: IoResult) -> Start {
    let state = match state {
        State::Copy(run) => return run.advance(result),
        State::Sanitize(run) => return run.advance(lun, result),
        other => other,
    };
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
            if let State::LbaStatus(status) = state {
                return status.failed(&e);
            }
            return fail(sense::from_store_error(&e));
        }
    };
    match state {
        State::Read { len, parts } => match reply {
            // After parts, the store's reply is the rest of the data (at least a byte).
            IoReply::Data(data) if data.len() as u64 + u64::from(parts) == u64::from(len) => {
                done(Response::good(data, len))
            }
            _ => fail(Sense::new(
                SenseKey::MediumError,
                Asc::UNRECOVERED_READ_ERROR,
            )),
        },
        State::Final { transfer_len } => done(Response::good(Bytes::new(), transfer_len)),
        State::CompareAndWrite {
            offset,
            verify,
            write,
            fua,
            transfer_len,
        } => {
            let read = tri!(read_back(reply, verify.len()));
            if let Some(at) = read.iter().zip(verify.iter()).position(|(a, b)| a != b) {
                return fail(Sense::MISCOMPARE.with_information(at as u32));
            }
            let state = State::Final { transfer_len };
            io(
                lun,
                IoRequest::Write {
                    offset,
                    data: write.into(),
                    fua,
                },
                state,
            )
        }
        State::LbaStatus(status) => status.next(lun, reply),
        State::OrWrite { offset, mask, fua } => {
            let read = tri!(read_back(reply, mask.len()));
            let data: Bytes = read.iter().zip(mask.iter()).map(|(a, b)| a | b).collect();
            let transfer_len = mask.len() as u32;
            io(
                lun,
                IoRequest::Write {
                    offset,
                    data: data.into(),
                    fua,
                },
                State::Final { transfer_len },
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
                    expected: data.to_bytes(),
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
        State::Copy(run) => run.advance(Ok(reply)),
        State::Sanitize(run) => run.advance(lun, Ok(reply)),
        State::Answer(slot) => {
            let answer = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            match answer {
                Some(response) => done(response),
                // The caller reported success without running the command.
                None => fail(sense::from_store_error(&store_api::StoreError::new(
                    store_api::Op::Lock,
                    ErrorKind::Io,
                ))),
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
