//! LOG SENSE (SPC-4 6.6): the supported log pages (00h, and 00h/FFh with subpages) and, on
//! a thin provisioned logical unit, the Logical Block Provisioning log page (SBC-3 0Ch):
//! how much storage is still free for it and how much it uses, as the
//! driver last told the target ([`crate::ScsiTarget::set_space`]; the daemon samples its
//! stores every 15 s). Hosts read it for their view of a thin LUN's pool (Windows:
//! IOCTL_STORAGE_GET_LB_PROVISIONING_MAP_RESOURCES).
//!
//! Counts are in threshold sets (the Logical Block Provisioning VPD page's THRESHOLD
//! EXPONENT, 1 MiB: `super::threshold`): free space rounded down, used space up; a count
//! past 2^32 - 1 shows as that. Nothing is saved (SP is refused) and no log parameter has
//! thresholds of its own (the soft threshold is the mode page's), so every page control
//! (PC) value returns the values as they are.

use super::exec::done;
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, opcode as op, reserved};
use crate::sense::Sense;
use crate::{Response, Start};
use std::sync::atomic::{AtomicU64, Ordering};

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[CommandDef::new::<LogSense>(
    op::LOG_SENSE,
    &[0x4D, 0x00, F, F, 0, F, F, F, F, 0],
)];

/// Page code of the supported log pages page (SPC-4 7.3.18, 7.3.19 with subpage FFh).
const SUPPORTED_PAGES: u8 = 0x00;
/// Page code of the Logical Block Provisioning log page (SBC-3).
const LOGICAL_BLOCK_PROVISIONING: u8 = 0x0C;
/// Subpage code asking for every page and subpage (SPC-4 7.3.19).
const ALL_SUBPAGES: u8 = 0xFF;

/// Parameter codes of the Logical Block Provisioning log page.
const AVAILABLE: u16 = 0x0001;
const USED: u16 = 0x0002;

/// PARAMETER CONTROL BYTE of a binary format list log parameter: FORMAT AND LINKING 11b.
const BINARY_LIST: u8 = 0x03;
/// SCOPE of a resource count: dedicated to the logical unit (01b), or shared with others
/// (10b: a volume's free space is every LUN's on it, and everything else's).
const DEDICATED: u8 = 0x01;
const SHARED: u8 = 0x02;

/// What the driver last said about an LU's storage, in bytes (`u64::MAX`: not known).
#[derive(Debug)]
pub(crate) struct SpaceCell {
    allocated: AtomicU64,
    available: AtomicU64,
}

impl Default for SpaceCell {
    fn default() -> Self {
        SpaceCell {
            allocated: AtomicU64::new(u64::MAX),
            available: AtomicU64::new(u64::MAX),
        }
    }
}

impl SpaceCell {
    /// Records what the store said (`None` for a count it cannot tell).
    pub(crate) fn set(&self, allocated: Option<u64>, available: Option<u64>) {
        let known = |v: Option<u64>| v.map_or(u64::MAX, |v| v.min(u64::MAX - 1));
        self.allocated.store(known(allocated), Ordering::Relaxed);
        self.available.store(known(available), Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> (Option<u64>, Option<u64>) {
        let known = |v: u64| (v != u64::MAX).then_some(v);
        (
            known(self.allocated.load(Ordering::Relaxed)),
            known(self.available.load(Ordering::Relaxed)),
        )
    }
}

/// LOG SENSE.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogSense {
    /// PAGE CODE.
    pub page: u8,
    /// SUBPAGE CODE.
    pub subpage: u8,
    /// PARAMETER POINTER: the first parameter code to return.
    pub pointer: u16,
    /// ALLOCATION LENGTH.
    pub alloc: u16,
}

impl ScsiCommand for LogSense {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        // SPC-4 6.6: byte 1 SP (0), the rest reserved or obsolete (PPC); byte 2 PC
        // (7:6) and PAGE CODE (5:0); byte 3 SUBPAGE CODE; 5..7 PARAMETER POINTER; 7..9
        // ALLOCATION LENGTH.
        if cdb[1] & 0x01 != 0 {
            // Nothing is saved here.
            return Err(Sense::invalid_field_in_cdb(1, Some(0)));
        }
        reserved(cdb, 1, 0xFE)?;
        reserved(cdb, 4, 0xFF)?;
        Ok(LogSense {
            page: cdb[2] & 0x3F,
            subpage: cdb[3],
            pointer: be16(cdb, 5),
            alloc: be16(cdb, 7),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let lbp = provisioning_parameters(&ctx);
        let page = match (self.page, self.subpage) {
            (SUPPORTED_PAGES, 0) | (SUPPORTED_PAGES, ALL_SUBPAGES) if self.pointer != 0 => {
                return done(Response::check_condition(Sense::invalid_field_in_cdb(
                    5, None,
                )))
            }
            (SUPPORTED_PAGES, 0) => {
                let mut d = header(SUPPORTED_PAGES, 0);
                d.push(SUPPORTED_PAGES);
                if !lbp.is_empty() {
                    d.push(LOGICAL_BLOCK_PROVISIONING);
                }
                d
            }
            (SUPPORTED_PAGES, ALL_SUBPAGES) => {
                let mut d = header(SUPPORTED_PAGES, ALL_SUBPAGES);
                d.extend_from_slice(&[SUPPORTED_PAGES, 0, SUPPORTED_PAGES, ALL_SUBPAGES]);
                if !lbp.is_empty() {
                    d.extend_from_slice(&[LOGICAL_BLOCK_PROVISIONING, 0]);
                }
                d
            }
            (LOGICAL_BLOCK_PROVISIONING, 0) if !lbp.is_empty() => {
                if lbp.iter().all(|(code, _)| *code < self.pointer) {
                    // SPC-4 6.6: a pointer past the largest parameter code.
                    return done(Response::check_condition(Sense::invalid_field_in_cdb(
                        5, None,
                    )));
                }
                let mut d = header(LOGICAL_BLOCK_PROVISIONING, 0);
                for (code, parameter) in lbp {
                    if code >= self.pointer {
                        d.extend_from_slice(&parameter);
                    }
                }
                d
            }
            _ => {
                return done(Response::check_condition(Sense::invalid_field_in_cdb(
                    2, None,
                )))
            }
        };
        done(Response::data(finish(page), u32::from(self.alloc)))
    }
}

/// A log page's header (SPC-4 7.3.1): PAGE CODE with SPF set when there is a
/// subpage, SUBPAGE CODE, and a PAGE LENGTH [`finish`] fills in.
fn header(page: u8, subpage: u8) -> Vec<u8> {
    let spf = if subpage != 0 { 0x40 } else { 0 };
    vec![spf | page, subpage, 0, 0]
}

/// Sets the PAGE LENGTH of a page built on [`header`].
fn finish(mut page: Vec<u8>) -> Vec<u8> {
    let len = u16::try_from(page.len() - 4).unwrap_or(u16::MAX);
    page[2..4].copy_from_slice(&len.to_be_bytes());
    page
}

/// The Logical Block Provisioning log page's parameters the LU has, with their codes:
/// none unless it is thin provisioned (its store deallocates) and its storage was
/// sampled.
fn provisioning_parameters(ctx: &Ctx<'_>) -> Vec<(u16, Vec<u8>)> {
    if !ctx.config().capabilities.discard {
        return Vec::new();
    }
    let set = super::threshold::set_bytes(ctx.config());
    let (allocated, available) = ctx.lu.space.get();
    let mut out = Vec::new();
    if let Some(bytes) = available {
        out.push((AVAILABLE, resource_count(AVAILABLE, bytes / set, SHARED)));
    }
    if let Some(bytes) = allocated {
        out.push((USED, resource_count(USED, bytes.div_ceil(set), DEDICATED)));
    }
    out
}

/// A resource count log parameter (SBC-3: PARAMETER CODE, PARAMETER CONTROL BYTE,
/// PARAMETER LENGTH 08h, RESOURCE COUNT (4 bytes), SCOPE (bits 1:0), 3 reserved).
fn resource_count(code: u16, sets: u64, scope: u8) -> Vec<u8> {
    let count = u32::try_from(sets).unwrap_or(u32::MAX);
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&code.to_be_bytes());
    p.push(BINARY_LIST);
    p.push(8);
    p.extend_from_slice(&count.to_be_bytes());
    p.extend_from_slice(&[scope, 0, 0, 0]);
    p
}
