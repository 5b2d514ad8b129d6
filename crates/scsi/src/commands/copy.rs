//! Third-party copy, LID1 (SPC-4 5.17, 6.4 EXTENDED COPY, 6.18 RECEIVE COPY RESULTS): the
//! copy manager moves blocks between logical units (or inside one) without the data
//! passing through the initiator, VMware's full-copy offload (VAAI XCOPY). It reaches the
//! logical units of this target and of the other targets the driver named
//! ([`crate::ScsiTarget::set_copy_peers`]: every target of the gateway), so a layout of one
//! target per LU copies offloaded too.
//!
//! Supported: identification CSCD descriptors (E4h) naming a logical unit by one of its
//! Device Identification designators (VPD page 83h), and block-to-block segment
//! descriptors (02h). Each segment is copied inside the storage where the stores can
//! ([`Start::Copy`]: copy_file_range on files, glfs_copy_file_range on Gluster, memcpy in
//! memory) and read and written through us where they cannot (stores of different kinds
//! or volumes, or overlapping ranges of one logical unit).
//!
//! RECEIVE COPY RESULTS answers COPY STATUS for copies whose LIST ID USAGE asked the copy
//! manager to hold their results, and OPERATING PARAMETERS.

use super::exec::{busy, done, fail, io_at, State, MAX_TRANSFER_BYTES};
use super::inquiry::vpd_page;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, be32, be64, opcode as op, reserved};
use crate::commands::RangeGuard;
use crate::sense::{self, Asc, Sense, SenseKey};
use crate::{CopyStep, Lu, NexusId, Peer, Pending, Response, ScsiTarget, Start};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use store_api::{ErrorKind, IoReply, IoRequest, IoResult, StoreError};

const F: u8 = 0xFF;

/// RECEIVE COPY RESULTS service actions (SPC-4 table 123).
const COPY_STATUS: u16 = 0x00;
const OPERATING_PARAMETERS: u16 = 0x03;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<ExtendedCopy>(
        op::EXTENDED_COPY,
        &[0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .sa(0x00),
    CommandDef::new::<ReceiveCopyResults>(
        op::RECEIVE_COPY_RESULTS,
        &[0x84, 0x00, F, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .sa(COPY_STATUS),
    CommandDef::new::<ReceiveCopyResults>(
        op::RECEIVE_COPY_RESULTS,
        &[0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    )
    .sa(OPERATING_PARAMETERS),
];

/// MAXIMUM CSCD DESCRIPTOR COUNT.
pub(crate) const MAX_CSCD_DESCRIPTORS: u16 = 8;
/// MAXIMUM SEGMENT DESCRIPTOR COUNT.
pub(crate) const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
/// MAXIMUM DESCRIPTOR LIST LENGTH: room for the most of both.
pub(crate) const MAX_DESCRIPTOR_LIST_LENGTH: u32 =
    MAX_CSCD_DESCRIPTORS as u32 * CSCD_LEN as u32 + MAX_SEGMENT_DESCRIPTORS as u32 * B2B_LEN as u32;
/// TOTAL (and MAXIMUM) CONCURRENT COPIES reported.
const CONCURRENT_COPIES: u8 = 16;
/// Bytes one in-storage copy request moves (a 02h segment moves at most 65535 blocks).
const OFFLOAD_CHUNK: u64 = 64 << 20;
/// Copy results held per logical unit (the oldest go first).
const HELD_RESULTS: usize = 64;

/// Length of a CSCD descriptor (SPC-4 6.4.5.1).
const CSCD_LEN: usize = 32;
/// Length of a block device to block device segment descriptor (SPC-4 6.4.6.5).
const B2B_LEN: usize = 28;
/// Descriptor type codes (SPC-4 table 9): block to block segment, identification CSCD.
const BLOCK_TO_BLOCK: u8 = 0x02;
const IDENTIFICATION: u8 = 0xE4;

fn copy_aborted(asc: Asc) -> Sense {
    Sense::new(SenseKey::CopyAborted, asc)
}

fn list_length_error() -> Sense {
    Sense::PARAMETER_LIST_LENGTH
}

fn param(asc: Asc, byte: usize) -> Sense {
    let mut s = Sense::invalid_field_in_parameter_list(byte as u16);
    s.asc = asc;
    s
}

/// EXTENDED COPY (LID1), SPC-4 6.4.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ExtendedCopy {
    /// PARAMETER LIST LENGTH.
    pub param_len: u32,
}

impl ScsiCommand for ExtendedCopy {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        reserved(cdb, 1, 0xE0)?;
        Ok(ExtendedCopy {
            param_len: be32(cdb, 10),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        if self.param_len == 0 {
            // SPC-4 6.4.1: no parameter data, nothing to copy; not an error.
            return done(Response::good(Bytes::new(), 0));
        }
        let have = ctx.data_out.len().min(self.param_len as usize);
        let list = ctx.data_out.to_bytes().slice(..have);
        let plan = match Plan::parse(&ctx, &list) {
            Ok(plan) => plan,
            Err(sense) => return fail(sense),
        };
        plan.start(&ctx, self.param_len)
    }
}

/// A logical unit a copy reads or writes: LUN `lun` of the command's own target, or of
/// another target (`peer`).
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub peer: Option<Peer>,
    pub lun: u16,
}

impl Unit {
    /// LUN `lun` of the command's own target.
    pub(super) fn own(lun: u16) -> Self {
        Unit { peer: None, lun }
    }

    /// The logical unit, as the target it belongs to has it now (`own` is the command's
    /// target).
    pub(super) fn lu<'a>(&'a self, own: &'a ScsiTarget) -> Option<&'a Lu> {
        let target = self.target(own);
        target.luns.get(usize::from(self.lun))?.as_ref()
    }

    /// The target the logical unit belongs to.
    pub(super) fn target<'a>(&'a self, own: &'a ScsiTarget) -> &'a ScsiTarget {
        match &self.peer {
            Some(peer) => peer.scsi(),
            None => own,
        }
    }
}

impl PartialEq for Unit {
    fn eq(&self, other: &Self) -> bool {
        self.lun == other.lun
            && match (&self.peer, &other.peer) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// One block-to-block segment, resolved to logical units and byte ranges.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    source: Unit,
    dest: Unit,
    source_offset: u64,
    offset: u64,
    len: u64,
    /// Copied through reads and writes (overlapping ranges of one logical unit, or stores
    /// that cannot copy between each other).
    bounce: bool,
    /// Chunks from the end backwards (overlap with the destination after the source).
    backwards: bool,
    /// No source: the destination range is written with zeroes (the block device zero ROD
    /// token of WRITE USING TOKEN), by WriteZeroes when its store has it (`Some(true)`),
    /// else by writes of zeroes.
    zero: Option<bool>,
}

impl Segment {
    /// `len` bytes from `source_offset` of logical unit `source` to `offset` of `dest`;
    /// overlapping ranges of one logical unit are read and written, backwards when the
    /// destination lies after the source.
    pub(super) fn new(source: Unit, dest: Unit, source_offset: u64, offset: u64, len: u64) -> Self {
        let overlap =
            source == dest && source_offset < offset + len && offset < source_offset + len;
        Segment {
            source,
            dest,
            source_offset,
            offset,
            len,
            bounce: overlap,
            backwards: overlap && offset > source_offset,
            zero: None,
        }
    }

    /// `len` bytes of zeroes written at `offset` of `lun`, with WriteZeroes when
    /// `write_zeroes` (its store has it).
    pub(super) fn zeroes(lun: u16, offset: u64, len: u64, write_zeroes: bool) -> Self {
        Segment {
            zero: Some(write_zeroes),
            ..Segment::new(Unit::own(lun), Unit::own(lun), offset, offset, len)
        }
    }
}

/// A checked parameter list.
struct Plan {
    list_id: u8,
    /// The results are held for RECEIVE COPY RESULTS (LIST ID USAGE 00b).
    hold_results: bool,
    segments: Vec<Segment>,
}

/// A designator from an identification CSCD descriptor: CODE SET, ASSOCIATION,
/// DESIGNATOR TYPE and the designator.
#[derive(Debug, PartialEq, Eq)]
struct Designator {
    code_set: u8,
    association: u8,
    kind: u8,
    value: Vec<u8>,
}

/// The designators of VPD page 83h (SPC-4 7.8.6) of `lu`.
fn designators(lu: &crate::LuConfig) -> Vec<Designator> {
    let page = vpd_page(lu, 0x83).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 4;
    while at + 4 <= page.len() {
        let len = usize::from(page[at + 3]);
        let Some(value) = page.get(at + 4..at + 4 + len) else {
            break;
        };
        out.push(Designator {
            code_set: page[at] & 0x0F,
            association: (page[at + 1] >> 4) & 0x03,
            kind: page[at + 1] & 0x0F,
            value: value.to_vec(),
        });
        at += 4 + len;
    }
    out
}

/// A CSCD descriptor resolved: the logical unit it names, or why it names none.
type Resolved = Result<Unit, Sense>;

impl Plan {
    fn parse(ctx: &Ctx<'_>, p: &[u8]) -> Result<Plan, Sense> {
        // Parameter list header, SPC-4 table 8 (LID1).
        if p.len() < 16 {
            return Err(list_length_error());
        }
        let list_id = p[0];
        let usage = (p[1] >> 3) & 0x03;
        match usage {
            0b01 => return Err(Sense::invalid_field_in_parameter_list(1)),
            0b11 if list_id != 0 => return Err(Sense::invalid_field_in_parameter_list(0)),
            _ => {}
        }
        let cscd_len = usize::from(be16(p, 2));
        let seg_len = be32(p, 8) as usize;
        let inline_len = be32(p, 12) as usize;
        if cscd_len as u64 + seg_len as u64 > u64::from(MAX_DESCRIPTOR_LIST_LENGTH) {
            return Err(list_length_error());
        }
        if 16 + cscd_len + seg_len + inline_len > p.len() {
            return Err(list_length_error());
        }
        if inline_len != 0 {
            // MAXIMUM INLINE DATA LENGTH is 0.
            return Err(Sense::invalid_field_in_parameter_list(12));
        }
        if cscd_len % CSCD_LEN != 0 {
            return Err(Sense::invalid_field_in_parameter_list(2));
        }
        if cscd_len / CSCD_LEN > usize::from(MAX_CSCD_DESCRIPTORS) {
            return Err(param(Asc::TOO_MANY_TARGET_DESCRIPTORS, 2));
        }
        let mut cscds: Vec<Resolved> = Vec::new();
        for (i, d) in p[16..16 + cscd_len].chunks(CSCD_LEN).enumerate() {
            let at = 16 + i * CSCD_LEN;
            if d[0] != IDENTIFICATION {
                return Err(param(Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE, at));
            }
            cscds.push(Self::resolve(ctx, d));
        }
        // Segment descriptors.
        let mut segments = Vec::new();
        let list = &p[16 + cscd_len..16 + cscd_len + seg_len];
        let mut pos = 0;
        while pos < list.len() {
            let at = 16 + cscd_len + pos;
            if segments.len() == usize::from(MAX_SEGMENT_DESCRIPTORS) {
                return Err(param(Asc::TOO_MANY_SEGMENT_DESCRIPTORS, 8));
            }
            let d = &list[pos..];
            if d.len() < 4 {
                return Err(list_length_error());
            }
            if d[0] != BLOCK_TO_BLOCK {
                return Err(param(Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE, at));
            }
            if usize::from(be16(d, 2)) + 4 != B2B_LEN {
                return Err(Sense::invalid_field_in_parameter_list(at as u16 + 2));
            }
            if d.len() < B2B_LEN {
                return Err(list_length_error());
            }
            segments.push(Self::segment(ctx, &cscds, &d[..B2B_LEN])?);
            pos += B2B_LEN;
        }
        Ok(Plan {
            list_id,
            hold_results: usage == 0b00,
            segments,
        })
    }

    /// The logical unit an identification CSCD descriptor (SPC-4 6.4.5.3) names, in this
    /// target or another the driver named. The LU ID TYPE, NUL (obsolete) and RELATIVE
    /// INITIATOR PORT IDENTIFIER are ignored: the copy manager reaches the logical units
    /// through itself.
    fn resolve(ctx: &Ctx<'_>, d: &[u8]) -> Resolved {
        let unreachable = copy_aborted(Asc::UNREACHABLE_COPY_TARGET);
        if d[1] & 0x1F != 0 {
            // Only block devices (PERIPHERAL DEVICE TYPE 0).
            return Err(copy_aborted(Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE));
        }
        let len = usize::from(d[7]);
        if len > 20 {
            return Err(unreachable);
        }
        let want = Designator {
            code_set: d[4] & 0x0F,
            association: (d[5] >> 4) & 0x03,
            kind: d[5] & 0x0F,
            value: d[8..8 + len].to_vec(),
        };
        let block_len = u32::from_be_bytes([0, d[29], d[30], d[31]]);
        if want.association != 0 {
            return Err(unreachable);
        }
        let found = |target: &ScsiTarget| {
            target.luns.iter().enumerate().find_map(|(n, lu)| {
                let lu = lu.as_ref()?;
                designators(&lu.config)
                    .contains(&want)
                    .then_some((n as u16, lu.config.geometry.block_size))
            })
        };
        let (unit, block_size) = match found(ctx.target) {
            Some((lun, bs)) => (Unit::own(lun), bs),
            None => ctx
                .target
                .copy_peers()
                .into_iter()
                .find_map(|peer| {
                    let (lun, bs) = found(peer.scsi())?;
                    Some((
                        Unit {
                            peer: Some(peer),
                            lun,
                        },
                        bs,
                    ))
                })
                .ok_or(unreachable)?,
        };
        if block_len != block_size {
            return Err(copy_aborted(Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE));
        }
        Ok(unit)
    }

    /// A block device to block device segment descriptor (SPC-4 6.4.6.5).
    fn segment(ctx: &Ctx<'_>, cscds: &[Resolved], d: &[u8]) -> Result<Segment, Sense> {
        let unreachable = || copy_aborted(Asc::UNREACHABLE_COPY_TARGET);
        let unit = |index: u16| -> Result<Unit, Sense> {
            cscds
                .get(usize::from(index))
                .cloned()
                .unwrap_or(Err(unreachable()))
        };
        let (source_unit, dest_unit) = (unit(be16(d, 4))?, unit(be16(d, 6))?);
        let source = source_unit.lu(ctx.target).ok_or_else(unreachable)?;
        let dest = dest_unit.lu(ctx.target).ok_or_else(unreachable)?;
        let blocks = u64::from(be16(d, 10));
        let (src_lba, dst_lba) = (be64(d, 12), be64(d, 20));
        let (sbs, dbs) = (
            u64::from(source.config.geometry.block_size),
            u64::from(dest.config.geometry.block_size),
        );
        // DC: NUMBER OF BLOCKS counts destination blocks, else source blocks.
        let len = blocks * if d[1] & 0x02 != 0 { dbs } else { sbs };
        // A copy that runs past either logical unit ends the command before any data
        // moves (COPY ABORTED: what the copy target's LBA OUT OF RANGE becomes).
        let fits = |lba: u64, bs: u64, capacity: u64| {
            len % bs == 0 && lba.checked_add(len / bs).is_some_and(|end| end <= capacity)
        };
        if !fits(src_lba, sbs, source.geometry().num_blocks)
            || !fits(dst_lba, dbs, dest.geometry().num_blocks)
        {
            return Err(copy_aborted(Asc::NO_ADDITIONAL));
        }
        Ok(Segment::new(
            source_unit.clone(),
            dest_unit.clone(),
            src_lba * sbs,
            dst_lba * dbs,
            len,
        ))
    }

    fn start(self, ctx: &Ctx<'_>, param_len: u32) -> Start {
        let record = self
            .hold_results
            .then(|| Record::Lid1(Arc::clone(&ctx.lu.copies), ctx.nexus, self.list_id));
        start_copy(ctx, self.segments, record, param_len)
    }
}

/// Checks what the copy manager may do on the logical units the `segments` involve, holds
/// the destination ranges and starts the first segment; the outcome is kept in `record`,
/// and the final GOOD carries `transfer_len`.
pub(super) fn start_copy(
    ctx: &Ctx<'_>,
    segments: Vec<Segment>,
    record: Option<Record>,
    transfer_len: u32,
) -> Start {
    let target = ctx.target;
    let own = Unit::own(ctx.lun);
    let mut guards = Vec::new();
    let mut flush: Vec<Unit> = Vec::new();
    for s in &segments {
        for (unit, writes) in [(&s.source, false), (&s.dest, true)] {
            // A peer's LU may have gone since it was resolved.
            let Some(lu) = unit.lu(target) else {
                return fail(copy_aborted(Asc::UNREACHABLE_COPY_TARGET));
            };
            if lu.stopped.load(std::sync::atomic::Ordering::Relaxed) {
                return fail(Sense::new(
                    SenseKey::NotReady,
                    Asc::LU_NOT_READY_INIT_REQUIRED,
                ));
            }
            // The copy reads and writes the other logical units as this nexus would.
            let cdb: &[u8] = if writes {
                &[op::WRITE_16]
            } else {
                &[op::READ_16]
            };
            // With failover per LU another LU may be standby here (another gateway
            // holds its data fence): not read or written through this port.
            if *unit != own {
                if let Some(sense) = unit.target(target).alua_refusal(lu, cdb) {
                    return fail(sense);
                }
            }
            let own_port = target.alua.port_id();
            let conflict = match &unit.peer {
                // Another target's LU: the nexus is not one of that target's ports, so
                // under a reservation (whoever holds it) the copy manager keeps out.
                Some(_) => lu.reservations.reserved(),
                None => {
                    *unit != own
                        && lu
                            .reservations
                            .conflict(ctx.nexus, &target.nexuses, own_port, cdb)
                }
            };
            if conflict {
                return done(crate::reservations::conflict_response());
            }
            if writes && (lu.config.read_only || lu.mode.software_write_protect()) {
                return fail(Sense::WRITE_PROTECTED);
            }
            if writes && !lu.mode.write_cache() && !flush.contains(unit) {
                flush.push(unit.clone());
            }
        }
        if s.len > 0 {
            let lu = s.dest.lu(target).expect("checked above");
            match lu.interlock.try_lock(s.offset, s.len, false) {
                Some(g) => guards.push(g),
                None => return busy(),
            }
        }
    }
    let run = CopyRun {
        segments: segments.into_iter().filter(|s| s.len > 0).collect(),
        next: 0,
        done_in_segment: 0,
        phase: Phase::Idle,
        moved: 0,
        _guards: guards,
        record,
        flush,
        transfer_len,
    };
    Box::new(run).issue()
}

/// Where a copy's outcome is kept: RECEIVE COPY RESULTS (EXTENDED COPY with a held list
/// identifier), or RECEIVE ROD TOKEN INFORMATION (WRITE USING TOKEN).
#[derive(Debug)]
pub(super) enum Record {
    /// The logical unit's results, the nexus and the LID1 list identifier.
    Lid1(Arc<CopyResults>, NexusId, u8),
    /// A WRITE USING TOKEN's own record (it also holds the token in use until it ends).
    Token(super::token::WriteRecord),
}

/// Where a running copy stands.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    /// An in-storage copy of `len` bytes at `pos` of the segment is in flight.
    Offload {
        len: u64,
    },
    /// A read of `len` bytes at `pos` of the segment (bounce copy) is in flight.
    Read {
        pos: u64,
        len: u64,
    },
    /// Its write is in flight.
    Write {
        len: u64,
    },
    /// Flushing destination `flush[i]` (write cache disabled there).
    Flush {
        i: usize,
    },
}

/// A running EXTENDED COPY: its segments, copied one chunk at a time.
#[derive(Debug)]
pub(crate) struct CopyRun {
    segments: Vec<Segment>,
    /// The segment being copied.
    next: usize,
    /// Bytes of it done.
    done_in_segment: u64,
    phase: Phase,
    /// Bytes copied by the whole command.
    moved: u64,
    /// The destination ranges, held until the command ends.
    _guards: Vec<RangeGuard>,
    /// Where to keep the outcome (RECEIVE COPY RESULTS, RECEIVE ROD TOKEN INFORMATION).
    record: Option<Record>,
    /// Destinations with the write cache off: flushed before GOOD.
    flush: Vec<Unit>,
    transfer_len: u32,
}

impl CopyRun {
    fn pending(self: Box<Self>, lun: u16) -> Pending {
        Pending {
            lun,
            state: State::Copy(self),
            descriptor_sense: false,
            flush_before_good: false,
            range: None,
        }
    }

    /// Sends the next request: the next chunk of the current segment, the flushes, or the
    /// final status.
    fn issue(mut self: Box<Self>) -> Start {
        while let Some(s) = self.segments.get(self.next) {
            if self.done_in_segment < s.len {
                break;
            }
            self.next += 1;
            self.done_in_segment = 0;
        }
        let Some(s) = self.segments.get(self.next).cloned() else {
            return self.flush_from(0);
        };
        let left = s.len - self.done_in_segment;
        let chunk = left.min(if s.bounce || s.zero == Some(false) {
            u64::from(MAX_TRANSFER_BYTES)
        } else {
            OFFLOAD_CHUNK
        });
        let pos = if s.backwards {
            left - chunk
        } else {
            self.done_in_segment
        };
        if let Some(write_zeroes) = s.zero {
            self.phase = Phase::Write { len: chunk };
            let offset = s.offset + pos;
            let request = if write_zeroes {
                IoRequest::WriteZeroes { offset, len: chunk }
            } else {
                IoRequest::Write {
                    offset,
                    data: Bytes::from(vec![0u8; chunk as usize]).into(),
                    fua: false,
                }
            };
            return io_at(s.dest.peer, s.dest.lun, request, State::Copy(self));
        }
        if s.bounce {
            self.phase = Phase::Read { pos, len: chunk };
            let request = IoRequest::Read {
                offset: s.source_offset + pos,
                len: chunk as u32,
            };
            return io_at(s.source.peer, s.source.lun, request, State::Copy(self));
        }
        self.phase = Phase::Offload { len: chunk };
        Start::Copy(CopyStep {
            lun: u64::from(s.dest.lun),
            source_lun: u64::from(s.source.lun),
            peer: s.dest.peer,
            source_peer: s.source.peer,
            source_offset: s.source_offset + pos,
            offset: s.offset + pos,
            len: chunk,
            pending: self.pending(s.dest.lun),
        })
    }

    fn flush_from(mut self: Box<Self>, i: usize) -> Start {
        match self.flush.get(i).cloned() {
            Some(unit) => {
                self.phase = Phase::Flush { i };
                io_at(unit.peer, unit.lun, IoRequest::Flush, State::Copy(self))
            }
            None => {
                self.keep(0x01, None);
                done(Response::good(Bytes::new(), self.transfer_len))
            }
        }
    }

    /// Keeps the outcome (COPY MANAGER STATUS `status`: 01h done, 02h failed with
    /// `sense`) where the command asked.
    fn keep(&self, status: u8, sense: Option<&Sense>) {
        // Completed segments (all of them once the copy succeeded).
        let processed = self.next.min(usize::from(u16::MAX)) as u16;
        match &self.record {
            Some(Record::Lid1(results, nexus, list_id)) => results.put(
                *nexus,
                *list_id,
                CopyStatus {
                    status,
                    segments: processed,
                    bytes: self.moved,
                },
            ),
            Some(Record::Token(record)) => record.finish(status, self.moved, processed, sense),
            None => {}
        }
    }

    fn failed(&self, e: &StoreError) -> Start {
        let sense = copy_aborted(sense::from_store_error(e).asc);
        self.keep(0x02, Some(&sense));
        fail(sense)
    }

    /// Goes on with the result of the request in flight.
    pub(crate) fn advance(mut self: Box<Self>, result: IoResult) -> Start {
        match (self.phase, result) {
            (Phase::Offload { .. }, Err(e)) if e.kind == ErrorKind::Unsupported => {
                // The stores cannot copy between each other: read and write this segment
                // and the later ones between the same two logical units.
                let (from, to) = {
                    let s = &self.segments[self.next];
                    (s.source.clone(), s.dest.clone())
                };
                for s in &mut self.segments[self.next..] {
                    if s.source == from && s.dest == to {
                        s.bounce = true;
                    }
                }
                self.issue()
            }
            (_, Err(e)) => self.failed(&e),
            (Phase::Offload { len, .. }, Ok(_)) => {
                self.done_in_segment += len;
                self.moved += len;
                self.issue()
            }
            (Phase::Read { pos, len }, Ok(IoReply::Data(data))) if data.len() as u64 == len => {
                let s = &self.segments[self.next];
                let (dest, offset) = (s.dest.clone(), s.offset + pos);
                self.phase = Phase::Write { len };
                let request = IoRequest::Write {
                    offset,
                    data: data.into(),
                    fua: false,
                };
                io_at(dest.peer, dest.lun, request, State::Copy(self))
            }
            (Phase::Read { .. }, Ok(_)) => self.failed(&StoreError::new(
                store_api::Op::Read,
                ErrorKind::ShortTransfer,
            )),
            (Phase::Write { len }, Ok(_)) => {
                self.done_in_segment += len;
                self.moved += len;
                self.issue()
            }
            (Phase::Flush { i }, Ok(_)) => self.flush_from(i + 1),
            (Phase::Idle, Ok(_)) => self.issue(),
        }
    }
}

/// The outcome of one EXTENDED COPY, for RECEIVE COPY RESULTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CopyStatus {
    /// COPY MANAGER STATUS: 01h completed without errors, 02h with errors.
    status: u8,
    /// SEGMENTS PROCESSED.
    segments: u16,
    /// Bytes copied.
    bytes: u64,
}

/// The copy results a logical unit holds, per I_T nexus and list identifier.
#[derive(Debug, Default)]
pub(crate) struct CopyResults {
    held: Mutex<VecDeque<(NexusId, u8, CopyStatus)>>,
}

impl CopyResults {
    fn put(&self, nexus: NexusId, list_id: u8, status: CopyStatus) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|&(n, id, _)| (n, id) != (nexus, list_id));
        if held.len() == HELD_RESULTS {
            held.pop_front();
        }
        held.push_back((nexus, list_id, status));
    }

    fn get(&self, nexus: NexusId, list_id: u8) -> Option<CopyStatus> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .find(|&&(n, id, _)| (n, id) == (nexus, list_id))
            .map(|&(_, _, s)| s)
    }
}

/// RECEIVE COPY RESULTS (SPC-4 6.18): COPY STATUS and OPERATING PARAMETERS.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReceiveCopyResults {
    /// SERVICE ACTION.
    pub sa: u16,
    /// LIST IDENTIFIER.
    pub list_id: u8,
    /// ALLOCATION LENGTH.
    pub alloc: u32,
}

impl ScsiCommand for ReceiveCopyResults {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        reserved(cdb, 1, 0xE0)?;
        Ok(ReceiveCopyResults {
            sa: u16::from(cdb[1] & 0x1F),
            list_id: cdb[2],
            alloc: be32(cdb, 10),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let data = match self.sa {
            COPY_STATUS => {
                let Some(s) = ctx.lu.copies.get(ctx.nexus, self.list_id) else {
                    // No held results for this list identifier from this nexus.
                    return fail(Sense::invalid_field_in_cdb(2, None));
                };
                copy_status(s)
            }
            _ => operating_parameters(ctx.config().geometry.block_size),
        };
        done(Response::data(data, self.alloc))
    }
}

/// The descriptors of the Third-party Copy VPD page (SPC-4 7.8.17) for this copy manager
/// (EXTENDED COPY LID1, and the ROD tokens of `token`): Supported Commands (0001h),
/// Parameter Data (0004h), Supported Descriptors (0008h), General Copy Operations
/// (8001h), then Block Device ROD Token Limits (0000h), ROD Token Features (0106h) and
/// Supported ROD Token and ROD Types (0108h), each with its 2-byte type and length (a
/// multiple of 4).
pub(crate) fn third_party_copy_vpd(lu: &crate::LuConfig, d: &mut Vec<u8>) {
    let mut descriptor = |kind: u16, mut body: Vec<u8>| {
        body.resize(body.len().next_multiple_of(4), 0);
        d.extend_from_slice(&kind.to_be_bytes());
        d.extend_from_slice(&(body.len() as u16).to_be_bytes());
        d.extend_from_slice(&body);
    };
    // Supported Commands: each OPERATION CODE with its SERVICE ACTIONs.
    let commands = [
        op::EXTENDED_COPY,
        3,
        0x00,
        0x10, // POPULATE TOKEN
        0x11, // WRITE USING TOKEN
        op::RECEIVE_COPY_RESULTS,
        3,
        COPY_STATUS as u8,
        OPERATING_PARAMETERS as u8,
        super::token::RECEIVE_ROD_TOKEN_INFORMATION as u8,
    ];
    let mut body = vec![commands.len() as u8];
    body.extend_from_slice(&commands);
    descriptor(0x0001, body);
    // Parameter Data.
    let mut body = vec![0u8; 28];
    body[4..6].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    body[6..8].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    body[8..12].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH (body 12..16): 0.
    descriptor(0x0004, body);
    // Supported Descriptors.
    descriptor(0x0008, vec![2, BLOCK_TO_BLOCK, IDENTIFICATION]);
    // General Copy Operations.
    let bs = lu.geometry.block_size;
    let mut body = vec![0u8; 28];
    body[0..4].copy_from_slice(&u32::from(CONCURRENT_COPIES).to_be_bytes());
    body[4..8].copy_from_slice(&u32::from(CONCURRENT_COPIES).to_be_bytes());
    body[8..12].copy_from_slice(&max_segment_length(bs).to_be_bytes());
    body[12] = bs.max(1).trailing_zeros() as u8; // DATA SEGMENT GRANULARITY (log2)
    descriptor(0x8001, body);
    // The ROD token descriptors (POPULATE TOKEN, WRITE USING TOKEN).
    super::token::vpd_descriptors(bs, descriptor);
}

/// MAXIMUM SEGMENT LENGTH in bytes: the most a 02h segment can name (65535 blocks).
fn max_segment_length(block_size: u32) -> u32 {
    (u64::from(u16::MAX) * u64::from(block_size)).min(u64::from(u32::MAX)) as u32
}

/// COPY STATUS parameter data (SPC-4 table 124).
fn copy_status(s: CopyStatus) -> Vec<u8> {
    // TRANSFER COUNT in bytes while it fits, else in the smallest power-of-1024 unit.
    let (mut units, mut count) = (0u8, s.bytes);
    while count > u64::from(u32::MAX) {
        units = if units == 0 { 0xF1 } else { units + 1 };
        count >>= 10;
    }
    let mut d = vec![0, 0, 0, 8, s.status & 0x7F];
    d.extend_from_slice(&s.segments.to_be_bytes());
    d.push(units);
    d.extend_from_slice(&(count as u32).to_be_bytes());
    d
}

/// OPERATING PARAMETERS parameter data (SPC-4 table 126).
fn operating_parameters(block_size: u32) -> Vec<u8> {
    let mut d = vec![0u8; 44];
    d[4] = 0x01; // SNLID: LIST ID USAGE 11b (no list identifier) supported
    d[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    d[16..20].copy_from_slice(&max_segment_length(block_size).to_be_bytes()); // MAXIMUM SEGMENT LENGTH
                                                                              // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: 0.
    d[34..36].copy_from_slice(&u16::from(CONCURRENT_COPIES).to_be_bytes());
    d[36] = CONCURRENT_COPIES;
    d[37] = block_size.max(1).trailing_zeros() as u8; // DATA SEGMENT GRANULARITY (log2)
    let implemented = [BLOCK_TO_BLOCK, IDENTIFICATION];
    d[43] = implemented.len() as u8;
    d.extend_from_slice(&implemented);
    let available = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&available.to_be_bytes());
    d
}
