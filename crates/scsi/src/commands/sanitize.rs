//! SANITIZE (SBC-3 5.22, 4.11): OVERWRITE (the initialization pattern written over the
//! whole medium, COUNT passes, optionally inverted between passes) and BLOCK ERASE (every
//! block deallocated, on stores that discard), and EXIT FAILURE MODE. CRYPTOGRAPHIC ERASE
//! is not offered: there is no key to destroy.
//!
//! While a sanitize runs, every other command to the logical unit but INQUIRY, REPORT LUNS
//! and REQUEST SENSE ends with NOT READY, SANITIZE IN PROGRESS and the PROGRESS INDICATION
//! (REQUEST SENSE returns that sense as data). A sanitize that fails, or that ends before it
//! is done (its command aborted or timed out), leaves the logical unit in sanitize failure
//! mode: medium access commands end with MEDIUM ERROR, SANITIZE COMMAND FAILED until EXIT
//! FAILURE MODE or a sanitize that completes.
//!
//! IMMED is refused (INVALID FIELD IN CDB): the sanitize is the command, chunk by chunk, and
//! ends with its status, so it must fit the transport's command time limit.

use super::exec::{done, fail, io, State};
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, reserved};
use crate::sense::{self, Asc, Sense, SenseKey};
use crate::{LuConfig, Response, Start};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use store_api::{IoRequest, IoResult};

/// SANITIZE operation code (SBC-3).
pub(crate) const SANITIZE: u8 = 0x48;
const OVERWRITE: u16 = 0x01;
const BLOCK_ERASE: u16 = 0x02;
const EXIT_FAILURE_MODE: u16 = 0x1F;

const F: u8 = 0xFF;

/// BLOCK ERASE is offered: the store deallocates.
pub(super) fn erases(lu: &LuConfig) -> bool {
    lu.capabilities.discard
}

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<Sanitize>(SANITIZE, &[0x48, 0xA1, 0, 0, 0, 0, 0, F, F, 0]).sa(OVERWRITE),
    CommandDef::new::<Sanitize>(SANITIZE, &[0x48, 0xA2, 0, 0, 0, 0, 0, F, F, 0])
        .sa(BLOCK_ERASE)
        .offered_if(erases),
    CommandDef::new::<Sanitize>(SANITIZE, &[0x48, 0xBF, 0, 0, 0, 0, 0, F, F, 0])
        .sa(EXIT_FAILURE_MODE),
];

/// Bytes one write (OVERWRITE) or discard (BLOCK ERASE) request covers.
const CHUNK: u64 = 1 << 20;
const ERASE_CHUNK: u64 = 64 << 20;
/// `progress` while no sanitize runs.
const IDLE: u32 = u32::MAX;

/// A logical unit's sanitize state, shared by every nexus.
#[derive(Debug)]
pub(crate) struct SanitizeState {
    /// PROGRESS INDICATION (0..65536) of the sanitize running, or [`IDLE`].
    progress: AtomicU32,
    /// In sanitize failure mode.
    failed: AtomicBool,
}

impl Default for SanitizeState {
    fn default() -> Self {
        SanitizeState {
            progress: AtomicU32::new(IDLE),
            failed: AtomicBool::new(false),
        }
    }
}

impl SanitizeState {
    /// NOT READY, SANITIZE IN PROGRESS with the progress, while a sanitize runs.
    pub(crate) fn in_progress(&self) -> Option<Sense> {
        let p = self.progress.load(Ordering::Acquire);
        (p != IDLE).then(|| {
            let mut s = Sense::new(SenseKey::NotReady, Asc::SANITIZE_IN_PROGRESS);
            s.progress = Some(p.min(0xFFFF) as u16);
            s
        })
    }

    /// MEDIUM ERROR, SANITIZE COMMAND FAILED, in sanitize failure mode.
    pub(crate) fn failure(&self) -> Option<Sense> {
        self.failed.load(Ordering::Acquire).then_some(Sense::new(
            SenseKey::MediumError,
            Asc::SANITIZE_COMMAND_FAILED,
        ))
    }
}

/// SANITIZE CDB (SBC-3 table 58).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Sanitize {
    sa: u16,
    immed: bool,
    param_len: u16,
}

impl ScsiCommand for Sanitize {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        // Byte 1: IMMED(7) reserved(6) AUSE(5) SERVICE ACTION(4:0); bytes 2..7 reserved.
        reserved(cdb, 1, 0x40)?;
        for byte in 2..7 {
            reserved(cdb, byte, 0xFF)?;
        }
        Ok(Sanitize {
            sa: u16::from(cdb[1] & 0x1F),
            immed: cdb[1] & 0x80 != 0,
            param_len: be16(cdb, 7),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        if self.immed {
            return fail(Sense::invalid_field_in_cdb(1, Some(7)));
        }
        let state = &ctx.lu.sanitize;
        let lu = ctx.config();
        if self.sa == EXIT_FAILURE_MODE {
            if self.param_len != 0 {
                return fail(Sense::invalid_field_in_cdb(7, None));
            }
            state.failed.store(false, Ordering::Release);
            return done(Response::good(Bytes::new(), 0));
        }
        if self.sa == BLOCK_ERASE && !erases(lu) {
            // Not offered without discard (a store that cannot deallocate).
            return fail(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        if ctx.write_protected() {
            return fail(Sense::WRITE_PROTECTED);
        }
        let bs = lu.geometry.block_size as usize;
        let (pattern, passes) = match self.sa {
            OVERWRITE => match overwrite_pattern(&ctx.data_out.to_bytes(), self.param_len, bs) {
                Ok(p) => p,
                Err(sense) => return fail(sense),
            },
            _ => {
                if self.param_len != 0 {
                    return fail(Sense::invalid_field_in_cdb(7, None));
                }
                (None, 1)
            }
        };
        let total = ctx.geometry().size_bytes();
        // The whole medium, held exclusively: no other write lands in between.
        let Some(guard) = ctx.lock(0, total, true) else {
            return super::exec::busy();
        };
        state.progress.store(0, Ordering::Release);
        let run = SanitizeRun {
            state: Arc::clone(&ctx.lu.sanitize),
            pattern,
            passes,
            pass: 0,
            pos: 0,
            total,
            transfer_len: u32::from(self.param_len),
            flushed: false,
            finished: false,
            _guard: guard,
        };
        Box::new(run).next(ctx.lun)
    }
}

/// The OVERWRITE parameter list (SBC-3 table 60): INVERT, TEST, OVERWRITE COUNT, the
/// INITIALIZATION PATTERN LENGTH and the pattern. Returns one block of pattern (repeated)
/// with its inverse when INVERT is set, and the number of passes.
#[allow(clippy::type_complexity)]
fn overwrite_pattern(
    data: &[u8],
    param_len: u16,
    block_size: usize,
) -> Result<(Option<(Bytes, Option<Bytes>)>, u8), Sense> {
    let len = usize::from(param_len);
    if len < 5 || len > block_size + 4 {
        return Err(Sense::invalid_field_in_cdb(7, None));
    }
    if data.len() < len {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    let invert = data[0] & 0x80 != 0;
    if data[0] & 0x60 != 0 {
        // TEST: vendor specific, not supported.
        return Err(Sense::invalid_field_in_parameter_list(0));
    }
    let count = data[0] & 0x1F;
    if count == 0 {
        return Err(Sense::invalid_field_in_parameter_list(0));
    }
    let plen = usize::from(be16(data, 2));
    if plen == 0 || plen > block_size || plen + 4 != len {
        return Err(Sense::invalid_field_in_parameter_list(2));
    }
    let pattern = &data[4..4 + plen];
    let mut block = BytesMut::with_capacity(CHUNK as usize);
    while block.len() < CHUNK as usize {
        let n = pattern.len().min(CHUNK as usize - block.len());
        block.extend_from_slice(&pattern[..n]);
    }
    let block = block.freeze();
    let inverse = invert.then(|| block.iter().map(|b| !b).collect::<Bytes>());
    Ok((Some((block, inverse)), count))
}

/// A sanitize in progress: its passes over the medium, chunk by chunk.
#[derive(Debug)]
pub(crate) struct SanitizeRun {
    state: Arc<SanitizeState>,
    /// OVERWRITE: the chunk of pattern, and its inverse for INVERT; `None`: BLOCK ERASE.
    pattern: Option<(Bytes, Option<Bytes>)>,
    passes: u8,
    pass: u8,
    /// Bytes of this pass done.
    pos: u64,
    total: u64,
    transfer_len: u32,
    /// The final flush was sent.
    flushed: bool,
    /// Ended (successfully or with an error reported); otherwise dropping it means the
    /// command was cut short, and the logical unit enters failure mode.
    finished: bool,
    /// The whole medium, held until the sanitize ends.
    _guard: super::RangeGuard,
}

impl Drop for SanitizeRun {
    fn drop(&mut self) {
        if !self.finished {
            self.state.failed.store(true, Ordering::Release);
        }
        self.state.progress.store(IDLE, Ordering::Release);
    }
}

impl SanitizeRun {
    /// The next request, or the end.
    fn next(mut self: Box<Self>, lun: u16) -> Start {
        if self.pos >= self.total {
            self.pass += 1;
            self.pos = 0;
        }
        if self.pass >= self.passes || self.total == 0 {
            // Durable before GOOD.
            if !self.flushed {
                self.flushed = true;
                return io(lun, IoRequest::Flush, State::Sanitize(self));
            }
            self.finished = true;
            self.state.failed.store(false, Ordering::Release);
            let transfer_len = self.transfer_len;
            return done(Response::good(Bytes::new(), transfer_len));
        }
        let done_bytes = u64::from(self.pass) * self.total + self.pos;
        let all = u64::from(self.passes) * self.total;
        self.state.progress.store(
            (done_bytes * 65536 / all).min(0xFFFF) as u32,
            Ordering::Release,
        );
        let offset = self.pos;
        let request = match &self.pattern {
            Some((block, inverse)) => {
                let n = (self.total - offset).min(block.len() as u64);
                let buf = match inverse {
                    Some(inv) if self.pass % 2 == 1 => inv,
                    _ => block,
                };
                self.pos += n;
                IoRequest::Write {
                    offset,
                    data: buf.slice(..n as usize).into(),
                    fua: false,
                }
            }
            None => {
                let len = (self.total - offset).min(ERASE_CHUNK);
                self.pos += len;
                IoRequest::Discard { offset, len }
            }
        };
        io(lun, request, State::Sanitize(self))
    }

    /// Goes on with the result of the request in flight.
    pub(crate) fn advance(mut self: Box<Self>, lun: u16, result: IoResult) -> Start {
        match result {
            Ok(_) => self.next(lun),
            Err(e) => {
                // Failure mode stays (set when the run is dropped unfinished); the command
                // reports the store's failure.
                self.finished = false;
                let sense = sense::from_store_error(&e);
                drop(self);
                fail(sense)
            }
        }
    }
}
