//! Token-based copy offload: POPULATE TOKEN and WRITE USING TOKEN (SBC-3 5.9, 5.30; the
//! third-party copy operation codes 83h/10h and 83h/11h) and RECEIVE ROD TOKEN INFORMATION
//! (SPC-4 6.18.6, 84h/07h), what Windows calls offloaded data transfer (ODX).
//!
//! POPULATE TOKEN names block ranges of the logical unit it is sent to; the copy manager
//! answers with a 512-byte ROD token (fetched with RECEIVE ROD TOKEN INFORMATION) that
//! stands for those blocks. WRITE USING TOKEN, sent to any logical unit of the same target
//! or of another the copy manager reaches ([`crate::ScsiTarget::set_copy_peers`]: every
//! target of the gateway), by the same or another host, writes the blocks the token
//! stands for into its own ranges, starting OFFSET INTO ROD blocks into them; the data
//! moves inside the gateway (the EXTENDED COPY engine, `copy::start_copy`: in-storage
//! copies where the stores can, reads and writes otherwise), never through the host.
//!
//! The tokens are of ROD type "access upon reference" (00800000h, SPC-4 table 115): a
//! token stands for the ranges, and a write through it copies what they hold when it
//! runs, as FreeBSD's CTL does; a copy manager that promised a point-in-time copy would
//! have to keep old data or revoke tokens on every write. The block device zero ROD token
//! (FFFF0001h) writes zeroes. A token lives until it was left unused for its inactivity
//! timeout (the driver tells the time: [`crate::ScsiTarget::expire_rod_tokens`]), until
//! a WRITE USING TOKEN with DEL_TKN used it, or until its logical unit is removed or
//! replaced (revoked). Its last 384 bytes are random, so a token cannot be guessed; any
//! host that has a token may use it (SPC-4 leaves that to the copy manager, and Windows
//! copies between hosts of a cluster this way).
//!
//! Not supported: ROD types other than these two (RTV with another type is INVALID FIELD
//! IN PARAMETER LIST), source and destination of different block sizes, remote tokens
//! (another gateway's copy manager's; the ROD Token Features descriptor says REMOTE
//! TOKENS 0), REPORT ALL ROD TOKENS, and WRITE USING TOKEN with IMMED (status before the
//! copy is done; INVALID FIELD IN PARAMETER LIST, as Microsoft's own copy provider for
//! virtual disks answers it; Windows sends IMMED 0). POPULATE TOKEN with IMMED is done at
//! once anyway.

use super::copy::{start_copy, Record, Segment, Unit};
use super::exec::{done, fail};
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, be32, be64, opcode as op, reserved};
use crate::sense::{Asc, Sense, SenseKey, FIXED_SENSE_LEN};
use crate::{NexusId, Response, Start};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const F: u8 = 0xFF;

/// Service actions of 83h (SBC-3 table 14) and 84h (SPC-4 table 123).
const POPULATE_TOKEN: u16 = 0x10;
const WRITE_USING_TOKEN: u16 = 0x11;
pub(super) const RECEIVE_ROD_TOKEN_INFORMATION: u16 = 0x07;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<PopulateToken>(
        op::EXTENDED_COPY,
        &[0x83, 0x10, 0, 0, 0, 0, F, F, F, F, F, F, F, F, 0, 0],
    )
    .sa(POPULATE_TOKEN),
    CommandDef::new::<WriteUsingToken>(
        op::EXTENDED_COPY,
        &[0x83, 0x11, 0, 0, 0, 0, F, F, F, F, F, F, F, F, 0, 0],
    )
    .sa(WRITE_USING_TOKEN),
    CommandDef::new::<ReceiveRodTokenInformation>(
        op::RECEIVE_COPY_RESULTS,
        &[0x84, 0x07, F, F, F, F, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .sa(RECEIVE_ROD_TOKEN_INFORMATION),
];

/// ROD TYPE of the tokens POPULATE TOKEN makes: access upon reference.
pub(crate) const ROD_ACCESS_UPON_REFERENCE: u32 = 0x0080_0000;
/// ROD TYPE of the block device zero ROD token.
pub(crate) const ROD_BLOCK_ZERO: u32 = 0xFFFF_0001;
/// Length of a ROD token (ROD TOKEN LENGTH 01F8h plus the 8 bytes before it).
pub(crate) const TOKEN_LEN: usize = 512;
/// MAXIMUM RANGE DESCRIPTORS per command.
pub(crate) const MAX_RANGES: u16 = 64;
/// DEFAULT and MAXIMUM INACTIVITY TIMEOUT, in seconds.
pub(crate) const DEFAULT_INACTIVITY: u32 = 60;
pub(crate) const MAX_INACTIVITY: u32 = 600;
/// MAXIMUM TOKEN TRANSFER SIZE, in logical blocks.
pub(crate) const MAX_TOKEN_BLOCKS: u64 = 1 << 24;
/// OPTIMAL TRANSFER COUNT, in bytes (reported in logical blocks).
const OPTIMAL_TRANSFER_BYTES: u64 = 256 << 20;
/// Tokens a target keeps (valid ones, and the ended ones still remembered for their sense).
const MAX_TOKENS: usize = 1024;
/// Results kept per logical unit for RECEIVE ROD TOKEN INFORMATION (the oldest go first).
const HELD_RESULTS: usize = 64;

/// Block device range descriptor (SBC-3 table 16): LBA (8), NUMBER OF LOGICAL BLOCKS (4),
/// reserved (4).
const RANGE_LEN: usize = 16;
/// Where the range descriptors start in the POPULATE TOKEN (SBC-3 table 13) and WRITE
/// USING TOKEN (table 106) parameter lists, after the BLOCK DEVICE RANGE DESCRIPTOR LIST
/// LENGTH at two bytes before.
const PT_RANGES: usize = 16;
const WUT_RANGES: usize = 536;
/// Where WRITE USING TOKEN's ROD TOKEN field starts.
const WUT_TOKEN: usize = 16;

/// COPY OPERATION STATUS values (SPC-4 table 127).
const COMPLETED: u8 = 0x01;
const COMPLETED_WITH_ERRORS: u8 = 0x02;
const COMPLETED_PARTIAL: u8 = 0x03;
/// Operation in progress, in the foreground (status comes with the command).
const IN_PROGRESS: u8 = 0x11;

fn token_sense(ascq: u8) -> Sense {
    Sense::new(SenseKey::IllegalRequest, Asc(0x23, ascq))
}

/// INVALID TOKEN OPERATION qualifiers (ASC 23h).
const CAUSE_NOT_REPORTABLE: u8 = 0x00;
const UNSUPPORTED_TOKEN_TYPE: u8 = 0x01;
const TOKEN_UNKNOWN: u8 = 0x04;
const TOKEN_REVOKED: u8 = 0x06;
const TOKEN_EXPIRED: u8 = 0x07;
const TOKEN_DELETED: u8 = 0x09;

/// One block device range descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    lba: u64,
    blocks: u32,
}

/// The range descriptors of a parameter list `p` that start at `at`, their list length
/// being the two bytes before: at least one, at most [`MAX_RANGES`], inside a capacity of
/// `num_blocks`, none overlapping another.
fn ranges(p: &[u8], at: usize, num_blocks: u64) -> Result<Vec<Range>, Sense> {
    let len = usize::from(be16(p, at - 2));
    if len == 0 || len % RANGE_LEN != 0 {
        return Err(Sense::invalid_field_in_parameter_list(at as u16 - 2));
    }
    if at + len > p.len() {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    if len / RANGE_LEN > usize::from(MAX_RANGES) {
        return Err(Sense::new(
            SenseKey::IllegalRequest,
            Asc::TOO_MANY_SEGMENT_DESCRIPTORS,
        ));
    }
    let mut out: Vec<Range> = Vec::with_capacity(len / RANGE_LEN);
    for (i, d) in p[at..at + len].chunks(RANGE_LEN).enumerate() {
        let r = Range {
            lba: be64(d, 0),
            blocks: be32(d, 8),
        };
        let end = r.lba.checked_add(u64::from(r.blocks));
        if end.is_none_or(|end| end > num_blocks) {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        let overlaps = |o: &Range| {
            r.blocks > 0
                && o.blocks > 0
                && r.lba < o.lba + u64::from(o.blocks)
                && o.lba < r.lba + u64::from(r.blocks)
        };
        if out.iter().any(overlaps) {
            return Err(Sense::invalid_field_in_parameter_list(
                (at + i * RANGE_LEN) as u16,
            ));
        }
        out.push(r);
    }
    Ok(out)
}

fn total_blocks(ranges: &[Range]) -> u64 {
    ranges.iter().map(|r| u64::from(r.blocks)).sum()
}

/// The parameter list of a command whose CDB announced `param_len` bytes, at least `min`
/// of them, all of them received.
fn parameter_list(ctx: &Ctx<'_>, param_len: u32, min: usize) -> Result<Bytes, Sense> {
    let want = param_len as usize;
    if want < min || ctx.data_out.len() < want {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    let p = ctx.data_out.to_bytes().slice(..want);
    // The DATA LENGTH field counts the bytes after it; the list must hold them.
    if usize::from(be16(&p, 0)) + 2 > want {
        return Err(Sense::invalid_field_in_parameter_list(0));
    }
    Ok(p)
}

/// POPULATE TOKEN, SBC-3 5.9.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PopulateToken {
    /// LIST IDENTIFIER.
    pub list_id: u32,
    /// PARAMETER LIST LENGTH.
    pub param_len: u32,
}

/// Bytes 1..6 (service action aside) of POPULATE TOKEN and WRITE USING TOKEN are reserved.
fn parse_token_cdb(cdb: &[u8]) -> Result<(u32, u32), Sense> {
    reserved(cdb, 1, 0xE0)?;
    for byte in 2..6 {
        reserved(cdb, byte, 0xFF)?;
    }
    Ok((be32(cdb, 6), be32(cdb, 10)))
}

impl ScsiCommand for PopulateToken {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let (list_id, param_len) = parse_token_cdb(cdb)?;
        Ok(PopulateToken { list_id, param_len })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        if self.param_len == 0 {
            // SBC-3 5.9: no parameter data, nothing to do; not an error.
            return done(Response::good(Bytes::new(), 0));
        }
        match self.populate(&ctx) {
            Ok(()) => done(Response::good(Bytes::new(), self.param_len)),
            Err(sense) => fail(sense),
        }
    }
}

impl PopulateToken {
    fn populate(&self, ctx: &Ctx<'_>) -> Result<(), Sense> {
        let p = parameter_list(ctx, self.param_len, PT_RANGES + RANGE_LEN)?;
        // Parameter list (SBC-3 table 13): DATA LENGTH (2), RTV and IMMED (byte 2),
        // INACTIVITY TIMEOUT (4..8), ROD TYPE (8..12), range descriptors from 16.
        let inactivity = match be32(&p, 4) {
            0 => DEFAULT_INACTIVITY,
            s if s > MAX_INACTIVITY => return Err(Sense::invalid_field_in_parameter_list(4)),
            s => s,
        };
        if p[2] & 0x02 != 0 && be32(&p, 8) != ROD_ACCESS_UPON_REFERENCE {
            return Err(Sense::invalid_field_in_parameter_list(8));
        }
        let geometry = ctx.geometry();
        let ranges = ranges(&p, PT_RANGES, geometry.num_blocks)?;
        let blocks = total_blocks(&ranges);
        if blocks > MAX_TOKEN_BLOCKS {
            return Err(Sense::invalid_field_in_parameter_list(PT_RANGES as u16 - 2));
        }
        let results = &ctx.lu.token_results;
        results.refuse_in_progress(ctx.nexus, self.list_id)?;
        let token = new_token(ctx, u128::from(blocks) * u128::from(geometry.block_size))?;
        ctx.target.rod_tokens.create(Token {
            bytes: token.clone(),
            lun: ctx.lun,
            block_size: geometry.block_size,
            ranges,
            timeout: Duration::from_secs(u64::from(inactivity)),
            state: TokenState::Valid,
            in_use: 0,
            idle_since: None,
        })?;
        results.put(
            ctx.nexus,
            self.list_id,
            TokenResult {
                service_action: POPULATE_TOKEN as u8,
                status: COMPLETED,
                blocks,
                segments: 0,
                sense: None,
                token: Some(token),
            },
        );
        Ok(())
    }
}

/// A new ROD token (SPC-4 8.3.6 ROD token format) for `bytes` of logical unit `ctx.lu`:
/// ROD TYPE, ROD TOKEN LENGTH, COPY MANAGER ROD TOKEN IDENTIFIER (random), CREATOR
/// LOGICAL UNIT DESCRIPTOR (an identification CSCD descriptor naming the LU by its NAA
/// designator), NUMBER OF BYTES REPRESENTED, the block device type specific data (the
/// LOGICAL BLOCK LENGTH as READ CAPACITY(16) has it), then 384 random bytes.
fn new_token(ctx: &Ctx<'_>, bytes: u128) -> Result<Box<[u8; TOKEN_LEN]>, Sense> {
    let mut t = Box::new([0u8; TOKEN_LEN]);
    t[0..4].copy_from_slice(&ROD_ACCESS_UPON_REFERENCE.to_be_bytes());
    t[6..8].copy_from_slice(&((TOKEN_LEN - 8) as u16).to_be_bytes());
    let mut random = [0u8; 8 + 384];
    if getrandom::fill(&mut random).is_err() {
        return Err(Sense::new(
            SenseKey::HardwareError,
            Asc::INTERNAL_TARGET_FAILURE,
        ));
    }
    t[8..16].copy_from_slice(&random[..8]);
    let block_size = ctx.config().geometry.block_size;
    // Identification CSCD descriptor (SPC-4 6.4.5.3): E4h, PERIPHERAL DEVICE TYPE 0,
    // RELATIVE INITIATOR PORT IDENTIFIER 0, then the NAA designator's header (code set 1
    // binary, association 0, type 3) and value, then the block device parameters' DISK
    // BLOCK LENGTH.
    t[16] = 0xE4;
    t[20..24].copy_from_slice(&[0x01, 0x03, 0x00, 16]);
    t[24..40].copy_from_slice(&ctx.config().naa_id);
    t[45..48].copy_from_slice(&block_size.to_be_bytes()[1..]);
    t[48..64].copy_from_slice(&bytes.to_be_bytes());
    t[96..100].copy_from_slice(&block_size.to_be_bytes());
    t[128..].copy_from_slice(&random[8..]);
    Ok(t)
}

/// WRITE USING TOKEN, SBC-3 5.30.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WriteUsingToken {
    /// LIST IDENTIFIER.
    pub list_id: u32,
    /// PARAMETER LIST LENGTH.
    pub param_len: u32,
}

impl ScsiCommand for WriteUsingToken {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let (list_id, param_len) = parse_token_cdb(cdb)?;
        Ok(WriteUsingToken { list_id, param_len })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        if self.param_len == 0 {
            // SBC-3 5.30: no parameter data, nothing to do; not an error.
            return done(Response::good(Bytes::new(), 0));
        }
        let results = &ctx.lu.token_results;
        if let Err(sense) = results.refuse_in_progress(ctx.nexus, self.list_id) {
            return fail(sense);
        }
        let mut record = WriteRecord {
            results: Arc::clone(results),
            nexus: ctx.nexus,
            list_id: self.list_id,
            block_size: u64::from(ctx.geometry().block_size),
            partial: false,
            finished: AtomicBool::new(false),
            _token: None,
        };
        results.put(
            ctx.nexus,
            self.list_id,
            TokenResult {
                service_action: WRITE_USING_TOKEN as u8,
                status: IN_PROGRESS,
                blocks: 0,
                segments: 0,
                sense: None,
                token: None,
            },
        );
        match self.plan(&ctx, &mut record) {
            Ok(segments) => start_copy(&ctx, segments, Some(Record::Token(record)), self.param_len),
            Err(sense) => {
                record.finish(COMPLETED_WITH_ERRORS, 0, 0, Some(&sense));
                fail(sense)
            }
        }
    }
}

impl WriteUsingToken {
    /// Checks the parameter list and the token, and maps the ROD's blocks (from OFFSET
    /// INTO ROD on) onto this logical unit's ranges, as many as the ROD holds.
    fn plan(&self, ctx: &Ctx<'_>, record: &mut WriteRecord) -> Result<Vec<Segment>, Sense> {
        let p = parameter_list(ctx, self.param_len, WUT_RANGES + RANGE_LEN)?;
        // Parameter list (SBC-3 table 106): DATA LENGTH (2), DEL_TKN and IMMED (byte 2),
        // OFFSET INTO ROD (8..16), ROD TOKEN (16..528), range descriptors from 536.
        if p[2] & 0x01 != 0 {
            // IMMED: status before the copy is done is not offered (as Microsoft's own
            // copy provider for virtual disks refuses it); the host copies without it.
            return Err(Sense {
                field: Some(crate::sense::FieldPointer {
                    in_cdb: false,
                    byte: 2,
                    bit: Some(0),
                }),
                ..Sense::invalid_field_in_parameter_list(2)
            });
        }
        let delete = p[2] & 0x02 != 0;
        let offset = be64(&p, 8);
        let token = &p[WUT_TOKEN..WUT_TOKEN + TOKEN_LEN];
        let geometry = ctx.geometry();
        let bs = u64::from(geometry.block_size);
        let dest = ranges(&p, WUT_RANGES, geometry.num_blocks)?;
        if total_blocks(&dest) > MAX_TOKEN_BLOCKS {
            return Err(Sense::invalid_field_in_parameter_list(
                WUT_RANGES as u16 - 2,
            ));
        }
        let rod_type = be32(token, 0);
        if rod_type == ROD_BLOCK_ZERO {
            let write_zeroes = ctx.config().capabilities.write_zeroes;
            return Ok(dest
                .iter()
                .map(|r| {
                    Segment::zeroes(ctx.lun, r.lba * bs, u64::from(r.blocks) * bs, write_zeroes)
                })
                .collect());
        }
        if rod_type != ROD_ACCESS_UPON_REFERENCE {
            return Err(token_sense(UNSUPPORTED_TOKEN_TYPE));
        }
        // The token of this target, or of another the copy manager reaches.
        let (used, source_unit) = match ctx.target.rod_tokens.take(token, delete) {
            Err(e) if e.asc == Asc(0x23, TOKEN_UNKNOWN) => ctx
                .target
                .copy_peers()
                .into_iter()
                .find_map(|peer| {
                    let r = peer.scsi().rod_tokens.take(token, delete);
                    (!matches!(&r, Err(e) if e.asc == Asc(0x23, TOKEN_UNKNOWN))).then(|| {
                        r.map(|used| {
                            let unit = Unit {
                                lun: used.lun,
                                peer: Some(peer),
                            };
                            (used, unit)
                        })
                    })
                })
                .unwrap_or(Err(e))?,
            r => {
                let used = r?;
                let unit = Unit::own(used.lun);
                (used, unit)
            }
        };
        let source_ranges = used.ranges.clone();
        let source_block_size = used.block_size;
        record._token = Some(used);
        let source = source_unit
            .lu(ctx.target)
            .ok_or(token_sense(TOKEN_REVOKED))?;
        if u64::from(source_block_size) != bs {
            return Err(token_sense(CAUSE_NOT_REPORTABLE));
        }
        // The LU may have shrunk since: its ranges must still be there.
        let capacity = source.geometry().num_blocks;
        if source_ranges
            .iter()
            .any(|r| r.lba + u64::from(r.blocks) > capacity)
        {
            return Err(token_sense(TOKEN_REVOKED));
        }
        let rod_blocks = total_blocks(&source_ranges);
        if offset >= rod_blocks {
            return Err(Sense::invalid_field_in_parameter_list(8));
        }
        // Walk the ROD from OFFSET INTO ROD and the destination ranges side by side.
        let mut src = source_ranges
            .iter()
            .flat_map(|r| (r.blocks > 0).then_some((r.lba, u64::from(r.blocks))));
        let mut skip = offset;
        let mut cur = src.next();
        while let Some((lba, n)) = cur {
            if skip < n {
                cur = Some((lba + skip, n - skip));
                break;
            }
            skip -= n;
            cur = src.next();
        }
        let mut segments = Vec::new();
        for d in &dest {
            let (mut lba, mut left) = (d.lba, u64::from(d.blocks));
            while left > 0 {
                let Some((s_lba, s_n)) = cur else {
                    record.partial = true;
                    break;
                };
                let n = left.min(s_n);
                segments.push(Segment::new(
                    source_unit.clone(),
                    Unit::own(ctx.lun),
                    s_lba * bs,
                    lba * bs,
                    n * bs,
                ));
                (lba, left) = (lba + n, left - n);
                cur = if n < s_n {
                    Some((s_lba + n, s_n - n))
                } else {
                    src.next()
                };
            }
        }
        Ok(segments)
    }
}

/// RECEIVE ROD TOKEN INFORMATION, SPC-4 6.18.6.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReceiveRodTokenInformation {
    /// LIST IDENTIFIER.
    pub list_id: u32,
    /// ALLOCATION LENGTH.
    pub alloc: u32,
}

impl ScsiCommand for ReceiveRodTokenInformation {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        reserved(cdb, 1, 0xE0)?;
        Ok(ReceiveRodTokenInformation {
            list_id: be32(cdb, 2),
            alloc: be32(cdb, 10),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let Some(r) = ctx.lu.token_results.get(ctx.nexus, self.list_id) else {
            // Nothing of this list identifier from this nexus.
            return fail(Sense::invalid_field_in_cdb(2, None));
        };
        done(Response::data(r.parameter_data(), self.alloc))
    }
}

/// The outcome of one POPULATE TOKEN or WRITE USING TOKEN.
#[derive(Debug, Clone)]
struct TokenResult {
    /// RESPONSE TO SERVICE ACTION.
    service_action: u8,
    /// COPY OPERATION STATUS.
    status: u8,
    /// Logical blocks represented (POPULATE TOKEN) or written (WRITE USING TOKEN).
    blocks: u64,
    /// SEGMENTS PROCESSED.
    segments: u16,
    /// Fixed-format sense data of a failed operation.
    sense: Option<[u8; FIXED_SENSE_LEN]>,
    /// The ROD token POPULATE TOKEN made.
    token: Option<Box<[u8; TOKEN_LEN]>>,
}

impl TokenResult {
    /// RECEIVE ROD TOKEN INFORMATION parameter data (SPC-4 table 130 with the ROD token
    /// descriptor of table 131).
    fn parameter_data(&self) -> Vec<u8> {
        let sense: &[u8] = self.sense.as_ref().map_or(&[], |s| &s[..]);
        let mut d = vec![0u8; 32];
        d[4] = self.service_action & 0x1F;
        d[5] = self.status & 0x7F;
        // OPERATION COUNTER (6..8): 0. ESTIMATED STATUS UPDATE DELAY: none once done.
        let delay: u32 = if self.status == IN_PROGRESS {
            100
        } else {
            0xFFFF_FFFF
        };
        d[8..12].copy_from_slice(&delay.to_be_bytes());
        // EXTENDED COPY COMPLETION STATUS: the copy command's SCSI status.
        d[12] = if self.sense.is_some() { 0x02 } else { 0x00 };
        d[13] = sense.len() as u8; // LENGTH OF THE SENSE DATA FIELD
        d[14] = sense.len() as u8; // SENSE DATA LENGTH
        d[15] = 0xF1; // TRANSFER COUNT UNITS: logical blocks
        d[16..24].copy_from_slice(&self.blocks.to_be_bytes());
        d[24..26].copy_from_slice(&self.segments.to_be_bytes());
        d.extend_from_slice(sense);
        match &self.token {
            Some(t) => {
                d.extend_from_slice(&((2 + TOKEN_LEN) as u32).to_be_bytes());
                d.extend_from_slice(&[0, 0]);
                d.extend_from_slice(&t[..]);
            }
            None => d.extend_from_slice(&0u32.to_be_bytes()),
        }
        let available = (d.len() - 4) as u32;
        d[0..4].copy_from_slice(&available.to_be_bytes());
        d
    }
}

/// The outcomes a logical unit holds, per I_T nexus and list identifier.
#[derive(Debug, Default)]
pub(crate) struct TokenResults {
    held: Mutex<VecDeque<(NexusId, u32, TokenResult)>>,
}

impl TokenResults {
    fn put(&self, nexus: NexusId, list_id: u32, result: TokenResult) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(n, id, _)| (*n, *id) != (nexus, list_id));
        if held.len() == HELD_RESULTS {
            held.pop_front();
        }
        held.push_back((nexus, list_id, result));
    }

    fn get(&self, nexus: NexusId, list_id: u32) -> Option<TokenResult> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .find(|(n, id, _)| (*n, *id) == (nexus, list_id))
            .map(|(_, _, r)| r.clone())
    }

    /// A list identifier still in use by an operation of the same nexus: ILLEGAL REQUEST,
    /// OPERATION IN PROGRESS (SPC-4 5.17.4.2).
    fn refuse_in_progress(&self, nexus: NexusId, list_id: u32) -> Result<(), Sense> {
        match self.get(nexus, list_id) {
            Some(r) if r.status == IN_PROGRESS => Err(Sense::new(
                SenseKey::IllegalRequest,
                Asc::OPERATION_IN_PROGRESS,
            )),
            _ => Ok(()),
        }
    }
}

/// Where a WRITE USING TOKEN keeps its outcome; it holds the token it uses (in use, so
/// it does not expire) until the copy ends. Dropped unfinished (the command aborted, or
/// refused before it started), it records the operation as completed with errors.
#[derive(Debug)]
pub(crate) struct WriteRecord {
    results: Arc<TokenResults>,
    nexus: NexusId,
    list_id: u32,
    /// The destination's logical block size (TRANSFER COUNT is in its blocks).
    block_size: u64,
    /// The ROD held fewer blocks past OFFSET INTO ROD than the ranges asked for.
    partial: bool,
    finished: AtomicBool,
    _token: Option<TokenUse>,
}

impl WriteRecord {
    /// Records the outcome: COPY OPERATION STATUS `status` (01h, or 03h for a partial
    /// write), `moved` bytes, `segments` processed, and the sense of a failure.
    pub(super) fn finish(&self, status: u8, moved: u64, segments: u16, sense: Option<&Sense>) {
        self.finished.store(true, Ordering::Relaxed);
        let status = if status == COMPLETED && self.partial {
            COMPLETED_PARTIAL
        } else {
            status
        };
        self.results.put(
            self.nexus,
            self.list_id,
            TokenResult {
                service_action: WRITE_USING_TOKEN as u8,
                status,
                blocks: moved / self.block_size.max(1),
                segments,
                sense: sense.map(Sense::to_fixed),
                token: None,
            },
        );
    }
}

impl Drop for WriteRecord {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::Relaxed) {
            self.finish(COMPLETED_WITH_ERRORS, 0, 0, None);
        }
    }
}

/// Whether a token may still be used, or why not (the ASCQ of INVALID TOKEN OPERATION).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Valid,
    Ended(u8),
}

/// One token the copy manager made.
#[derive(Debug)]
struct Token {
    bytes: Box<[u8; TOKEN_LEN]>,
    /// The logical unit whose blocks it stands for, and their size.
    lun: u16,
    block_size: u32,
    ranges: Vec<Range>,
    /// INACTIVITY TIMEOUT.
    timeout: Duration,
    state: TokenState,
    /// WRITE USING TOKEN commands using it now.
    in_use: u32,
    /// Unused since (as the driver last told the time); `None` until the next tick.
    idle_since: Option<Instant>,
}

/// The ROD tokens of a target (and its successors).
#[derive(Debug, Default)]
pub(crate) struct RodTokens {
    tokens: Mutex<Vec<Token>>,
}

impl RodTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Token>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a new token. Ended tokens make room first (the oldest); with
    /// [`MAX_TOKENS`] valid ones, INSUFFICIENT RESOURCES TO CREATE ROD TOKEN.
    fn create(&self, token: Token) -> Result<(), Sense> {
        let mut tokens = self.lock();
        if tokens.len() >= MAX_TOKENS {
            match tokens.iter().position(|t| t.state != TokenState::Valid) {
                Some(i) => {
                    tokens.remove(i);
                }
                None => {
                    return Err(Sense::new(
                        SenseKey::IllegalRequest,
                        Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN,
                    ))
                }
            }
        }
        tokens.push(token);
        Ok(())
    }

    /// The token whose bytes are `bytes`, now in use (until the [`TokenUse`] is dropped),
    /// or why it cannot be used.
    fn take(self: &Arc<Self>, bytes: &[u8], delete: bool) -> Result<TokenUse, Sense> {
        let mut tokens = self.lock();
        let Some(t) = tokens.iter_mut().find(|t| t.bytes[..] == *bytes) else {
            return Err(token_sense(TOKEN_UNKNOWN));
        };
        if let TokenState::Ended(ascq) = t.state {
            return Err(token_sense(ascq));
        }
        t.in_use += 1;
        t.idle_since = None;
        let mut id = [0u8; 8];
        id.copy_from_slice(&t.bytes[8..16]);
        Ok(TokenUse {
            tokens: Arc::clone(self),
            id,
            delete,
            lun: t.lun,
            block_size: t.block_size,
            ranges: t.ranges.clone(),
        })
    }

    /// Ends every token of logical unit `lun` (it was removed or replaced).
    pub(crate) fn revoke_lun(&self, lun: u16) {
        for t in self.lock().iter_mut().filter(|t| t.lun == lun) {
            t.state = TokenState::Ended(TOKEN_REVOKED);
        }
    }

    /// The driver tells the time: a valid token not in use starts its inactivity timeout
    /// at the first tick that sees it idle, and expires once it has stood that long.
    pub(crate) fn expire(&self, now: Instant) {
        for t in self.lock().iter_mut() {
            if t.state != TokenState::Valid || t.in_use > 0 {
                continue;
            }
            match t.idle_since {
                None => t.idle_since = Some(now),
                Some(since) if now.saturating_duration_since(since) >= t.timeout => {
                    t.state = TokenState::Ended(TOKEN_EXPIRED);
                }
                Some(_) => {}
            }
        }
    }

    /// Tokens still valid.
    pub(crate) fn valid(&self) -> usize {
        self.lock()
            .iter()
            .filter(|t| t.state == TokenState::Valid)
            .count()
    }

    fn release(&self, id: &[u8; 8], delete: bool) {
        if let Some(t) = self.lock().iter_mut().find(|t| t.bytes[8..16] == id[..]) {
            t.in_use = t.in_use.saturating_sub(1);
            t.idle_since = None;
            if delete && t.state == TokenState::Valid {
                t.state = TokenState::Ended(TOKEN_DELETED);
            }
        }
    }
}

/// A token in use by one WRITE USING TOKEN; released (and deleted, with DEL_TKN) when
/// dropped.
#[derive(Debug)]
pub(crate) struct TokenUse {
    tokens: Arc<RodTokens>,
    id: [u8; 8],
    delete: bool,
    lun: u16,
    block_size: u32,
    ranges: Vec<Range>,
}

impl Drop for TokenUse {
    fn drop(&mut self) {
        self.tokens.release(&self.id, self.delete);
    }
}

/// The ROD token descriptors of the Third-party Copy VPD page (SPC-4 7.8.17, SBC-3
/// 6.6.8): Block Device ROD Token Limits (0000h), ROD Token Features (0106h) and
/// Supported ROD Token and ROD Types (0108h), through `descriptor(type, body)`.
pub(super) fn vpd_descriptors(block_size: u32, mut descriptor: impl FnMut(u16, Vec<u8>)) {
    let bs = u64::from(block_size.max(1));
    // Block Device ROD Token Limits (SBC-3 table 216): 6 reserved bytes, MAXIMUM RANGE
    // DESCRIPTORS, MAXIMUM and DEFAULT INACTIVITY TIMEOUT, MAXIMUM TOKEN TRANSFER SIZE,
    // OPTIMAL TRANSFER COUNT.
    let mut body = vec![0u8; 32];
    body[6..8].copy_from_slice(&MAX_RANGES.to_be_bytes());
    body[8..12].copy_from_slice(&MAX_INACTIVITY.to_be_bytes());
    body[12..16].copy_from_slice(&DEFAULT_INACTIVITY.to_be_bytes());
    body[16..24].copy_from_slice(&MAX_TOKEN_BLOCKS.to_be_bytes());
    body[24..32].copy_from_slice(&(OPTIMAL_TRANSFER_BYTES / bs).to_be_bytes());
    descriptor(0x0000, body);
    // ROD Token Features (SPC-4 table 594): REMOTE TOKENS 0, MINIMUM and MAXIMUM TOKEN
    // LIFETIME, MAXIMUM TOKEN INACTIVITY TIMEOUT, then one block device ROD device type
    // specific features descriptor (SPC-4 table 595): OPTIMAL BLOCK ROD LENGTH
    // GRANULARITY, MAXIMUM BYTES IN BLOCK ROD, OPTIMAL BYTES IN BLOCK ROD TRANSFER,
    // OPTIMAL BYTES TO and FROM TOKEN PER SEGMENT.
    let mut body = vec![0u8; 44];
    body[12..16].copy_from_slice(&1u32.to_be_bytes());
    body[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    body[20..24].copy_from_slice(&MAX_INACTIVITY.to_be_bytes());
    let mut block = vec![0u8; 48];
    block[2..4].copy_from_slice(&44u16.to_be_bytes());
    block[6..8].copy_from_slice(&1u16.to_be_bytes());
    block[8..16].copy_from_slice(&(MAX_TOKEN_BLOCKS * bs).to_be_bytes());
    block[16..24].copy_from_slice(&OPTIMAL_TRANSFER_BYTES.to_be_bytes());
    block[24..32].copy_from_slice(&OPTIMAL_TRANSFER_BYTES.to_be_bytes());
    block[32..40].copy_from_slice(&OPTIMAL_TRANSFER_BYTES.to_be_bytes());
    body[42..44].copy_from_slice(&(block.len() as u16).to_be_bytes());
    body.extend_from_slice(&block);
    descriptor(0x0106, body);
    // Supported ROD Token and ROD Types (SPC-4 table 597): 2 reserved bytes, ROD TYPE
    // DESCRIPTORS LENGTH, then 64-byte descriptors (table 598): ROD TYPE, TOKEN IN and
    // TOKEN OUT bits, PREFERENCE INDICATOR.
    let mut body = vec![0u8; 4];
    let types = [
        (ROD_ACCESS_UPON_REFERENCE, 0x03u8),
        (ROD_BLOCK_ZERO, 0x02u8),
    ];
    body[2..4].copy_from_slice(&((types.len() * 64) as u16).to_be_bytes());
    for (rod_type, flags) in types {
        let mut t = vec![0u8; 64];
        t[0..4].copy_from_slice(&rod_type.to_be_bytes());
        t[4] = flags;
        body.extend_from_slice(&t);
    }
    descriptor(0x0108, body);
}
