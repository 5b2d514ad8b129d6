//! The reservation commands' rows in the command table: RESERVE/RELEASE(6/10) and
//! PERSISTENT RESERVE IN/OUT by service action. Their CDBs are decoded where they run
//! ([`super::Reservations::execute`]), which needs the state under its lock.

use crate::commands::{CommandDef, Ctx, ScsiCommand};
use crate::sense::Sense;
use crate::{Pending, Start};

use super::op;

const F: u8 = 0xFF;

/// PERSISTENT RESERVE IN with service action `sa` (SPC-4 6.15.1): ALLOCATION LENGTH.
const fn pr_in(sa: u8, usage: &'static [u8]) -> CommandDef {
    CommandDef::new::<Raw<10>>(op::PERSISTENT_RESERVE_IN, usage).sa(sa as u16)
}

/// PERSISTENT RESERVE OUT with service action `sa` (SPC-4 6.16.1): SCOPE, TYPE and
/// PARAMETER LIST LENGTH.
const fn pr_out(sa: u8, usage: &'static [u8]) -> CommandDef {
    CommandDef::new::<Raw<10>>(op::PERSISTENT_RESERVE_OUT, usage).sa(sa as u16)
}

pub(crate) const COMMANDS: &[CommandDef] = &[
    // Without third-party reservations or extents.
    CommandDef::new::<Raw<6>>(op::RESERVE_6, &[0x16, 0, 0, 0, 0, 0]),
    CommandDef::new::<Raw<6>>(op::RELEASE_6, &[0x17, 0, 0, 0, 0, 0]),
    CommandDef::new::<Raw<10>>(op::RESERVE_10, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    CommandDef::new::<Raw<10>>(op::RELEASE_10, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    pr_in(0x00, &[0x5E, 0x00, 0, 0, 0, 0, 0, F, F, 0]),
    pr_in(0x01, &[0x5E, 0x01, 0, 0, 0, 0, 0, F, F, 0]),
    pr_in(0x02, &[0x5E, 0x02, 0, 0, 0, 0, 0, F, F, 0]),
    pr_in(0x03, &[0x5E, 0x03, 0, 0, 0, 0, 0, F, F, 0]),
    pr_out(0x00, &[0x5F, 0x00, F, 0, 0, F, F, F, F, 0]),
    pr_out(0x01, &[0x5F, 0x01, F, 0, 0, F, F, F, F, 0]),
    pr_out(0x02, &[0x5F, 0x02, F, 0, 0, F, F, F, F, 0]),
    pr_out(0x03, &[0x5F, 0x03, F, 0, 0, F, F, F, F, 0]),
    pr_out(0x04, &[0x5F, 0x04, F, 0, 0, F, F, F, F, 0]),
    pr_out(0x05, &[0x5F, 0x05, F, 0, 0, F, F, F, F, 0]),
    pr_out(0x06, &[0x5F, 0x06, F, 0, 0, F, F, F, F, 0]),
    pr_out(0x07, &[0x5F, 0x07, F, 0, 0, F, F, F, F, 0]),
];

/// A reservation command's CDB, kept whole for [`super::Reservations::execute`].
pub(crate) struct Raw<const LEN: usize>([u8; LEN]);

impl<const LEN: usize> ScsiCommand for Raw<LEN> {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let cdb = cdb.get(..LEN).ok_or(Sense::invalid_field_in_cdb(0, None))?;
        let mut raw = [0u8; LEN];
        raw.copy_from_slice(cdb);
        Ok(Raw(raw))
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        if ctx.lu.reservations.is_shared() {
            // Run on the state every gateway keeps, read under its lock (see
            // `crate::SharedReservations`): persistent reservations and RESERVE(6/10)
            // alike, so a host's RESERVE through one gateway holds through every other.
            return Start::SharedReservations(crate::SharedReservations::new(
                ctx.lun,
                ctx.nexus,
                self.0.to_vec(),
                ctx.data_out.to_bytes(),
            ));
        }
        let (response, changed) = ctx.lu.reservations.execute(
            ctx.nexus,
            &ctx.target.nexuses,
            &ctx.target.reservation_ports(),
            ctx.lun,
            &self.0,
            &ctx.data_out.to_bytes(),
        );
        if changed.is_some_and(|c| c.persist) {
            Start::SaveReservations {
                lun: u64::from(ctx.lun),
                pending: Pending::after_save(ctx.lun),
            }
        } else {
            Start::Done(response)
        }
    }
}
