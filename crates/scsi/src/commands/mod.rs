//! The command set: one module per command family, each holding its commands' decoding,
//! checks and execution, and one table from operation code (plus service action) to handler.
//!
//! Adding a command is one [`CommandDef`] row in its family's `COMMANDS` list, next to a type
//! implementing [`ScsiCommand`]. The same rows give REPORT SUPPORTED OPERATION CODES its
//! answers (CDB length and CDB USAGE DATA), so what is offered and what is reported cannot
//! drift apart.
//!
//! Dispatch order, the same for every command (SPC-4 4.6.4, 4.2.5):
//! 1. an operation code not in the table: INVALID COMMAND OPERATION CODE, or LOGICAL UNIT NOT
//!    SUPPORTED on a LUN without a logical unit;
//! 2. on a LUN without a logical unit, everything but the few commands marked
//!    [`ScsiCommand::WITHOUT_LU`] (INQUIRY, REPORT LUNS, REQUEST SENSE) is LOGICAL UNIT NOT
//!    SUPPORTED;
//! 3. a CDB shorter than the operation code's length, then an unknown service action: INVALID
//!    FIELD IN CDB;
//! 4. the command's own field checks ([`ScsiCommand::parse`]), then the CONTROL byte (NACA is
//!    not supported);
//! 5. [`ScsiCommand::execute`] (or [`ScsiCommand::absent`] without a logical unit).

use crate::sense::{Asc, Sense, SenseKey};
use crate::{Lu, LuConfig, NexusId, Response, ScsiTarget, Start};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use store_api::Segments;

pub(crate) mod alua;
mod cache;
mod capacity;
mod caw;
mod copy;
pub(crate) mod exec;
mod inquiry;
mod interlock;
mod log;
mod mode;
mod provisioning;
mod rw;
mod sanitize;
mod supported;
pub(crate) mod threshold;
mod token;
mod unit;

pub(crate) use copy::CopyResults;
pub(crate) use interlock::{Interlock, RangeGuard};
pub(crate) use log::SpaceCell;
pub(crate) use mode::ModeState;
pub(crate) use sanitize::SanitizeState;
pub(crate) use threshold::Threshold;
pub(crate) use token::{RodTokens, TokenResults};

/// Every family's commands. A new family is one more line here.
const FAMILIES: &[&[CommandDef]] = &[
    unit::COMMANDS,
    inquiry::COMMANDS,
    mode::COMMANDS,
    supported::COMMANDS,
    capacity::COMMANDS,
    rw::COMMANDS,
    caw::COMMANDS,
    cache::COMMANDS,
    provisioning::COMMANDS,
    copy::COMMANDS,
    token::COMMANDS,
    sanitize::COMMANDS,
    crate::reservations::COMMANDS,
    alua::COMMANDS,
    log::COMMANDS,
];

/// What a command's handler gets: the target, the logical unit and the command's data.
pub(crate) struct Ctx<'a> {
    /// The whole target (REPORT LUNS lists its LUNs).
    pub target: &'a ScsiTarget,
    /// The plain LUN number.
    pub lun: u16,
    /// The logical unit the command addresses.
    pub lu: &'a Lu,
    /// The I_T nexus the command came on.
    pub nexus: NexusId,
    /// Data-out bytes received with the command, as the segments they arrived in (a
    /// write hands them to its store as they are; [`Segments::to_bytes`] for the rest).
    pub data_out: Segments,
}

impl<'a> Ctx<'a> {
    /// The logical unit's configuration.
    pub fn config(&self) -> &'a LuConfig {
        &self.lu.config
    }

    /// The logical unit's block size and capacity now (a resize changes the capacity).
    pub fn geometry(&self) -> store_api::Geometry {
        self.lu.geometry()
    }

    /// Whether commands that change the medium are refused with DATA PROTECT: the LU is
    /// configured read-only, or the control mode page's SWP is set.
    pub fn write_protected(&self) -> bool {
        self.lu.config.read_only || self.lu.mode.software_write_protect()
    }

    /// Holds `offset..offset + len` for a command that changes it (`exclusive` for a
    /// read-modify-write), or `None` when a conflicting command holds it (answer BUSY).
    pub fn lock(&self, offset: u64, len: u64, exclusive: bool) -> Option<RangeGuard> {
        self.lu.interlock.try_lock(offset, len, exclusive)
    }

    /// The FUA a write goes to the store with: the CDB's, or always when the caching mode
    /// page's WCE is clear (every write durable before its status).
    pub fn fua(&self, cdb_fua: bool) -> bool {
        cdb_fua || !self.lu.mode.write_cache()
    }
}

/// One command: how its CDB decodes and what it does.
pub(crate) trait ScsiCommand: Sized {
    /// Answered on a LUN without a logical unit (SPC-4 4.6.4: INQUIRY, REPORT LUNS, REQUEST
    /// SENSE), through [`ScsiCommand::absent`].
    const WITHOUT_LU: bool = false;

    /// Needs the medium: refused with NOT READY, INITIALIZING COMMAND REQUIRED while a START
    /// STOP UNIT has the logical unit stopped (SBC-3 4.20).
    const MEDIUM_ACCESS: bool = false;

    /// Decodes and checks the CDB, whose length is already known to be right.
    fn parse(cdb: &[u8]) -> Result<Self, Sense>;

    /// Runs the command on a present logical unit.
    fn execute(self, ctx: Ctx<'_>) -> Start;

    /// The answer on a LUN without a logical unit; only called when `WITHOUT_LU`.
    fn absent(self, _target: &ScsiTarget) -> Response {
        Response::check_condition(Sense::LU_NOT_SUPPORTED)
    }
}

/// What the handler of one row receives.
pub(crate) struct Call<'a> {
    target: &'a ScsiTarget,
    /// The LUN number and its logical unit, when present.
    lu: Option<(u16, &'a Lu)>,
    nexus: NexusId,
    cdb: &'a [u8],
    data_out: Segments,
}

/// One row of the command table.
pub(crate) struct CommandDef {
    /// OPERATION CODE.
    pub opcode: u8,
    /// SERVICE ACTION (byte 1, bits 4:0), for operation codes that have them.
    pub sa: Option<u16>,
    /// CDB USAGE DATA (SPC-4 6.35.3); its length is the CDB length.
    pub usage: &'static [u8],
    /// Whether the logical unit offers the command (REPORT SUPPORTED OPERATION CODES lists
    /// only those; the handler itself refuses what is not offered).
    pub offered: fn(&LuConfig) -> bool,
    /// Whether the target offers it (what the LU offers aside).
    pub offered_by_target: fn(&ScsiTarget) -> bool,
    without_lu: bool,
    run: fn(Call<'_>) -> Start,
}

fn always(_: &LuConfig) -> bool {
    true
}

fn always_by_target(_: &ScsiTarget) -> bool {
    true
}

impl CommandDef {
    /// The row for command type `C` at `opcode`, CDB USAGE DATA `usage`.
    pub const fn new<C: ScsiCommand>(opcode: u8, usage: &'static [u8]) -> Self {
        CommandDef {
            opcode,
            sa: None,
            usage,
            offered: always,
            offered_by_target: always_by_target,
            without_lu: C::WITHOUT_LU,
            run: run::<C>,
        }
    }

    /// The same row under service action `sa`.
    pub const fn sa(mut self, sa: u16) -> Self {
        self.sa = Some(sa);
        self
    }

    /// The same row, offered only when `offered` says so.
    pub const fn offered_if(mut self, offered: fn(&LuConfig) -> bool) -> Self {
        self.offered = offered;
        self
    }

    /// The same row, offered only when the target's `offered` says so.
    pub const fn offered_by_target(mut self, offered: fn(&ScsiTarget) -> bool) -> Self {
        self.offered_by_target = offered;
        self
    }

    /// The CDB length.
    pub fn cdb_len(&self) -> usize {
        self.usage.len()
    }
}

fn run<C: ScsiCommand>(call: Call<'_>) -> Start {
    let cdb = call.cdb;
    let command = match C::parse(cdb) {
        Ok(c) => c,
        Err(sense) => return Start::Done(Response::check_condition(sense)),
    };
    // CONTROL byte: NACA (bit 2) is not supported; LINK (bit 0) is obsolete.
    let last = cdb.len() - 1;
    if cdb[last] & 0x04 != 0 {
        return Start::Done(Response::check_condition(Sense::invalid_field_in_cdb(
            last as u16,
            Some(2),
        )));
    }
    if let Some((_, lu)) = call.lu {
        // Sanitize failure mode (SBC-3 4.11.4): medium access fails until EXIT FAILURE MODE
        // or a SANITIZE that completes.
        if C::MEDIUM_ACCESS && cdb[0] != sanitize::SANITIZE {
            if let Some(sense) = lu.sanitize.failure() {
                return Start::Done(Response::check_condition(sense));
            }
        }
    }
    match call.lu {
        Some((_, lu)) if C::MEDIUM_ACCESS && lu.stopped.load(Ordering::Relaxed) => {
            Start::Done(Response::check_condition(Sense::new(
                SenseKey::NotReady,
                Asc::LU_NOT_READY_INIT_REQUIRED,
            )))
        }
        Some((lun, lu)) => command.execute(Ctx {
            target: call.target,
            lun,
            lu,
            nexus: call.nexus,
            data_out: call.data_out,
        }),
        None => Start::Done(command.absent(call.target)),
    }
}

/// The table, flattened and sorted by operation code and service action, with an index from
/// operation code to its rows.
struct Table {
    rows: Vec<&'static CommandDef>,
    /// `rows[index[op].0 .. index[op].1]` are the rows of operation code `op`.
    index: [(u16, u16); 256],
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rows: Vec<&'static CommandDef> = FAMILIES.iter().flat_map(|f| f.iter()).collect();
        rows.sort_by_key(|d| (d.opcode, d.sa));
        let mut index = [(0u16, 0u16); 256];
        for (i, d) in rows.iter().enumerate() {
            let slot = &mut index[usize::from(d.opcode)];
            if slot.1 == 0 {
                slot.0 = i as u16;
            }
            slot.1 = i as u16 + 1;
        }
        Table { rows, index }
    })
}

/// Every command, ascending by operation code and service action.
pub(crate) fn all() -> &'static [&'static CommandDef] {
    &table().rows
}

/// The rows of one operation code (several when it has service actions).
pub(crate) fn by_opcode(opcode: u8) -> &'static [&'static CommandDef] {
    let t = table();
    let (a, b) = t.index[usize::from(opcode)];
    &t.rows[usize::from(a)..usize::from(b)]
}

/// Runs one command through the table (see the module docs for the order of checks).
pub(crate) fn dispatch(
    target: &ScsiTarget,
    lu: Option<(u16, &Lu)>,
    nexus: NexusId,
    cdb: &[u8],
    data_out: Segments,
) -> Start {
    let fail = |sense| Start::Done(Response::check_condition(sense));
    let Some(&opcode) = cdb.first() else {
        return fail(if lu.is_some() {
            Sense::INVALID_OPCODE
        } else {
            Sense::LU_NOT_SUPPORTED
        });
    };
    let rows = by_opcode(opcode);
    let Some(first) = rows.first() else {
        return fail(if lu.is_some() {
            Sense::INVALID_OPCODE
        } else {
            Sense::LU_NOT_SUPPORTED
        });
    };
    if lu.is_none() && !first.without_lu {
        return fail(Sense::LU_NOT_SUPPORTED);
    }
    // SBC-3 4.11.2: while a sanitize runs, only INQUIRY, REPORT LUNS and REQUEST SENSE
    // (which reports the progress) are answered.
    if let Some((_, l)) = lu {
        use crate::cdb::opcode as op;
        if !matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE) {
            if let Some(sense) = l.sanitize.in_progress() {
                return fail(sense);
            }
        }
    }
    if cdb.len() < first.cdb_len() {
        return fail(Sense::invalid_field_in_cdb(0, None));
    }
    let def = if first.sa.is_some() {
        let sa = u16::from(cdb[1] & 0x1F);
        match rows.iter().find(|d| d.sa == Some(sa)) {
            Some(d) => d,
            None => return fail(Sense::invalid_field_in_cdb(1, Some(4))),
        }
    } else {
        first
    };
    (def.run)(Call {
        target,
        lu,
        nexus,
        cdb: &cdb[..def.cdb_len()],
        data_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdb::group_len;
    use crate::{Command, Status};
    use rstest::rstest;
    use store_api::{Capabilities, Geometry};

    fn target() -> ScsiTarget {
        let mut t = ScsiTarget::new();
        t.add_lun(
            0,
            LuConfig {
                vendor: "V".into(),
                product: "P".into(),
                revision: "1".into(),
                serial: "S".into(),
                naa_id: [0; 16],
                geometry: Geometry {
                    block_size: 512,
                    num_blocks: 64,
                },
                capabilities: Capabilities::default(),
                write_cache: true,
                read_only: false,
                soft_threshold: None,
            },
        );
        t
    }

    /// The dispatcher's own checks, before any command's: expected ASC and the field pointer
    /// (byte, sense byte 15 as SPC-4 table 54 builds it: SKSV, C/D, BPV, BIT POINTER).
    #[rstest]
    #[case::unknown_opcode(&[0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x20, None)]
    #[case::group3_reserved(&[0x7F, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x20, None)]
    #[case::empty(&[], 0x20, None)]
    #[case::inquiry_page_without_evpd(&[0x12, 0, 0x80, 0, 0xFF, 0], 0x24, Some((2, 0xCF)))]
    #[case::inquiry_cmddt(&[0x12, 0x02, 0, 0, 0xFF, 0], 0x24, Some((1, 0xC9)))]
    #[case::naca(&[0x00, 0, 0, 0, 0, 0x04], 0x24, Some((5, 0xCA)))]
    #[case::unsupported_opcode_with_naca(&[0xC1, 0, 0, 0, 0, 0x04], 0x20, None)]
    #[case::field_error_before_naca(&[0x28, 0x04, 0, 0, 0, 0, 0, 0, 1, 0x04], 0x24, Some((1, 0xCA)))]
    #[case::rc10_lba_without_pmi(&[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], 0x24, Some((2, 0xC0)))]
    #[case::sai_unknown_sa(&[0x9E, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x24, Some((1, 0xCC)))]
    #[case::short_cdb(&[0x28, 0, 0, 0], 0x24, Some((0, 0xC0)))]
    #[case::short_sai(&[0x9E, 0x10, 0, 0], 0x24, Some((0, 0xC0)))]
    fn rejects(#[case] bytes: &[u8], #[case] asc: u8, #[case] pointer: Option<(u16, u8)>) {
        let Start::Done(r) = target().start(Command {
            nexus: 1,
            lun: 0,
            cdb: bytes::Bytes::copy_from_slice(bytes),
            data_out: Segments::new(),
            expected_len: 0,
        }) else {
            panic!("answered at once")
        };
        assert_eq!(r.status, Status::CheckCondition);
        let s = r.sense.expect("sense");
        assert_eq!(s[2] & 0x0F, SenseKey::IllegalRequest as u8);
        assert_eq!(Asc(s[12], s[13]), Asc(asc, 0));
        match pointer {
            None => assert_eq!(s[15] & 0x80, 0),
            Some((byte, b15)) => {
                assert_eq!(s[15], b15);
                assert_eq!(u16::from_be_bytes([s[16], s[17]]), byte);
            }
        }
    }

    #[test]
    fn every_row_is_consistent_with_its_usage_data() {
        let mut seen = std::collections::HashSet::new();
        for d in all() {
            assert_eq!(d.usage[0], d.opcode, "usage data starts with the opcode");
            if let Some(len) = group_len(d.opcode) {
                assert_eq!(d.cdb_len(), len, "opcode {:#04x} length", d.opcode);
            }
            if let Some(sa) = d.sa {
                assert_eq!(u16::from(d.usage[1] & 0x1F), sa, "service action in byte 1");
            }
            assert!(seen.insert((d.opcode, d.sa)), "{:#04x} twice", d.opcode);
            let rows = by_opcode(d.opcode);
            assert!(
                rows.iter().all(|r| r.sa.is_some() == d.sa.is_some()),
                "an opcode has service actions for all its rows or none"
            );
            assert!(rows.iter().all(|r| r.cdb_len() == d.cdb_len()));
        }
    }
}
