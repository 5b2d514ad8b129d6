//! Block reads and writes (SBC-3): READ(6/10/12/16), WRITE(6/10/12/16), WRITE AND
//! VERIFY(10/12/16), VERIFY(10/12/16).

use super::exec::{busy, done, fail, hold, io, rw_extent, tri, whole_blocks, State};
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be32, lba_len, opcode as op, reserved};
use crate::sense::Sense;
use crate::{Response, Start};
use bytes::Bytes;
use store_api::{IoRequest, Segments};

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<Read>(op::READ_6, &[0x08, 0x1F, F, F, F, 0]),
    CommandDef::new::<Write>(op::WRITE_6, &[0x0A, 0x1F, F, F, F, 0]),
    CommandDef::new::<Read>(op::READ_10, &[0x28, 0x1A, F, F, F, F, 0, F, F, 0]),
    CommandDef::new::<Write>(op::WRITE_10, &[0x2A, 0x1A, F, F, F, F, 0, F, F, 0]),
    CommandDef::new::<WriteAndVerify>(
        op::WRITE_AND_VERIFY_10,
        &[0x2E, 0x16, F, F, F, F, 0, F, F, 0],
    ),
    CommandDef::new::<Verify>(op::VERIFY_10, &[0x2F, 0x16, F, F, F, F, 0, F, F, 0]),
    CommandDef::new::<Read>(
        op::READ_16,
        &[0x88, 0x1A, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    CommandDef::new::<Write>(
        op::WRITE_16,
        &[0x8A, 0x1A, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    CommandDef::new::<WriteAndVerify>(
        op::WRITE_AND_VERIFY_16,
        &[0x8E, 0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    CommandDef::new::<Verify>(
        op::VERIFY_16,
        &[0x8F, 0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    CommandDef::new::<Read>(op::READ_12, &[0xA8, 0x1A, F, F, F, F, F, F, F, F, 0, 0]),
    CommandDef::new::<Write>(op::WRITE_12, &[0xAA, 0x1A, F, F, F, F, F, F, F, F, 0, 0]),
    CommandDef::new::<WriteAndVerify>(
        op::WRITE_AND_VERIFY_12,
        &[0xAE, 0x16, F, F, F, F, F, F, F, F, 0, 0],
    ),
    CommandDef::new::<Verify>(op::VERIFY_12, &[0xAF, 0x16, F, F, F, F, F, F, F, F, 0, 0]),
];

/// The fields of a block read or write: READ/WRITE(6/10/12/16), WRITE AND VERIFY, VERIFY,
/// COMPARE AND WRITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rw {
    /// LOGICAL BLOCK ADDRESS.
    pub lba: u64,
    /// Number of logical blocks (the 6-byte forms already turned 0 into 256).
    pub blocks: u32,
    /// RDPROTECT / WRPROTECT / VRPROTECT.
    pub protect: u8,
    /// DPO: disable page out (accepted, no effect).
    pub dpo: bool,
    /// FUA: force unit access.
    pub fua: bool,
    /// BYTCHK for VERIFY and WRITE AND VERIFY (0 for plain reads and writes).
    pub bytchk: u8,
}

/// READ/WRITE(6/10/12/16) fields.
fn parse_rw(cdb: &[u8]) -> Result<Rw, Sense> {
    if cdb[0] == op::READ_6 || cdb[0] == op::WRITE_6 {
        let lba = u64::from(be32(cdb, 0) & 0x001F_FFFF);
        let blocks = if cdb[4] == 0 { 256 } else { u32::from(cdb[4]) };
        return Ok(Rw {
            lba,
            blocks,
            protect: 0,
            dpo: false,
            fua: false,
            bytchk: 0,
        });
    }
    // Byte 1: xxPROTECT(7:5) DPO(4) FUA(3) reserved(2) FUA_NV(1, obsolete in SBC-3 but still
    // sent) obsolete(0).
    reserved(cdb, 1, 0x04)?;
    let (lba, blocks) = lba_len(cdb[0], cdb);
    Ok(Rw {
        lba,
        blocks,
        protect: cdb[1] >> 5,
        dpo: cdb[1] & 0x10 != 0,
        fua: cdb[1] & 0x08 != 0,
        bytchk: 0,
    })
}

/// VERIFY / WRITE AND VERIFY(10/12/16) fields.
fn parse_verify(cdb: &[u8]) -> Result<Rw, Sense> {
    // Byte 1: xxPROTECT(7:5) DPO(4) reserved(3) BYTCHK(2:1) obsolete(0).
    reserved(cdb, 1, 0x08)?;
    let (lba, blocks) = lba_len(cdb[0], cdb);
    Ok(Rw {
        lba,
        blocks,
        protect: cdb[1] >> 5,
        dpo: cdb[1] & 0x10 != 0,
        fua: false,
        bytchk: (cdb[1] >> 1) & 0x03,
    })
}

/// What WRITE and WRITE AND VERIFY share: the extent, then `check` (the command's own
/// field check), write protection, and the whole blocks of data-out: `(offset, data, transfer
/// length)`, or `Err` with the answer when there is nothing to write.
fn write_data(
    ctx: Ctx<'_>,
    rw: &Rw,
    check: Result<(), Sense>,
) -> Result<(u64, Segments, u32), Response> {
    let lu = ctx.config();
    let Some((offset, len)) = rw_extent(ctx.geometry(), rw).map_err(Response::check_condition)?
    else {
        return Err(Response::good(Bytes::new(), 0));
    };
    check.map_err(Response::check_condition)?;
    if ctx.write_protected() {
        return Err(Response::check_condition(Sense::WRITE_PROTECTED));
    }
    let data = whole_blocks(ctx.data_out, len, lu.geometry.block_size);
    if data.is_empty() {
        return Err(Response::good(Bytes::new(), len));
    }
    Ok((offset, data, len))
}

/// READ(6/10/12/16).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Read(pub Rw);

impl ScsiCommand for Read {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        parse_rw(cdb).map(Read)
    }

    #[inline]
    fn execute(self, ctx: Ctx<'_>) -> Start {
        match tri!(rw_extent(ctx.geometry(), &self.0)) {
            None => done(Response::good(Bytes::new(), 0)),
            Some((offset, len)) => io(
                ctx.lun,
                IoRequest::Read { offset, len },
                State::Read { len, parts: 0 },
            ),
        }
    }
}

/// WRITE(6/10/12/16). FUA is passed to the store; DPO is accepted and ignored.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Write(pub Rw);

impl ScsiCommand for Write {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        parse_rw(cdb).map(Write)
    }

    #[inline]
    fn execute(self, ctx: Ctx<'_>) -> Start {
        let fua = ctx.fua(self.0.fua);
        let (lun, lu) = (ctx.lun, ctx.lu);
        let (offset, data, len) = match write_data(ctx, &self.0, Ok(())) {
            Ok(w) => w,
            Err(answer) => return done(answer),
        };
        let Some(guard) = lu.interlock.try_lock(offset, data.len() as u64, false) else {
            return busy();
        };
        hold(
            io(
                lun,
                IoRequest::Write { offset, data, fua },
                State::Final { transfer_len: len },
            ),
            Some(guard),
        )
    }
}

/// WRITE AND VERIFY(10/12/16): write, then read back and compare with the data written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WriteAndVerify(pub Rw);

impl ScsiCommand for WriteAndVerify {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        parse_verify(cdb).map(WriteAndVerify)
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let bytchk = if self.0.bytchk > 1 {
            Err(Sense::invalid_field_in_cdb(1, Some(2)))
        } else {
            Ok(())
        };
        let (lun, lu) = (ctx.lun, ctx.lu);
        let fua = ctx.fua(false);
        let (offset, data, len) = match write_data(ctx, &self.0, bytchk) {
            Ok(w) => w,
            Err(answer) => return done(answer),
        };
        let Some(guard) = lu.interlock.try_lock(offset, data.len() as u64, false) else {
            return busy();
        };
        let request = IoRequest::Write {
            offset,
            data: data.clone(),
            fua,
        };
        let state = State::WriteThenVerify {
            offset,
            data,
            transfer_len: len,
        };
        hold(io(lun, request, state), Some(guard))
    }
}

/// VERIFY(10/12/16): BYTCHK 0 reads the blocks (medium verification), 1 compares them with
/// the data-out, 3 compares each with the one block of data-out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verify(pub Rw);

impl ScsiCommand for Verify {
    const MEDIUM_ACCESS: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        parse_verify(cdb).map(Verify)
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let lu = ctx.config();
        let rw = self.0;
        let Some((offset, len)) = tri!(rw_extent(ctx.geometry(), &rw)) else {
            return done(Response::good(Bytes::new(), 0));
        };
        let bs = lu.geometry.block_size;
        let read = IoRequest::Read { offset, len };
        let (expected, per_block, transfer_len) = match rw.bytchk {
            0 => return io(ctx.lun, read, State::Final { transfer_len: 0 }),
            1 => {
                let expected = whole_blocks(ctx.data_out, len, bs).to_bytes();
                if expected.len() != len as usize {
                    return fail(Sense::PARAMETER_LIST_LENGTH);
                }
                (expected, false, len)
            }
            3 => {
                let expected = whole_blocks(ctx.data_out, bs, bs).to_bytes();
                if expected.is_empty() {
                    return fail(Sense::PARAMETER_LIST_LENGTH);
                }
                (expected, true, bs)
            }
            _ => return fail(Sense::invalid_field_in_cdb(1, Some(2))),
        };
        io(
            ctx.lun,
            read,
            State::Compare {
                expected,
                per_block,
                transfer_len,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn rw(lba: u64, blocks: u32) -> Rw {
        Rw {
            lba,
            blocks,
            protect: 0,
            dpo: false,
            fua: false,
            bytchk: 0,
        }
    }

    // CDB layouts: SBC-3 tables 42 (READ(6)), 43 (READ(10)), 44 (READ(12)), 45 (READ(16)),
    // and the WRITE tables of the same shape.
    #[rstest]
    #[case::read6(&[0x08, 0x1F, 0xFF, 0xFE, 0x10, 0], rw(0x1F_FFFE, 16))]
    #[case::read6_zero_is_256(&[0x08, 0, 0, 7, 0, 0], rw(7, 256))]
    #[case::write6_ignores_top_bits_of_byte1(&[0x0A, 0xE0, 0, 1, 1, 0], rw(1, 1))]
    #[case::read10(&[0x28, 0, 0x12, 0x34, 0x56, 0x78, 0, 0x01, 0x00, 0], rw(0x1234_5678, 256))]
    #[case::read10_zero_blocks(&[0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0], rw(0, 0))]
    #[case::read12(&[0xA8, 0, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0], rw(9, 0x10000))]
    #[case::write16(&[0x8A, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0], rw(0x1_0000_0002, 3))]
    #[case::read16_max_lba(&[0x88, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0], rw(u64::MAX, 1))]
    fn parses(#[case] bytes: &[u8], #[case] expected: Rw) {
        assert_eq!(parse_rw(bytes), Ok(expected));
    }

    #[test]
    fn read10_flags() {
        // RDPROTECT=5, DPO, FUA, FUA_NV.
        let r = parse_rw(&[0x28, 0xBA, 0, 0, 0, 1, 0, 0, 1, 0]).unwrap();
        assert_eq!((r.protect, r.dpo, r.fua), (5, true, true));
    }

    #[test]
    fn read10_reserved_bit2() {
        let sense = parse_rw(&[0x28, 0x04, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!(sense, Sense::invalid_field_in_cdb(1, Some(2)));
    }

    #[test]
    fn verify_bytchk() {
        // VERIFY(10), SBC-3 table 62: VRPROTECT 0, DPO 1, BYTCHK 01b.
        let v = parse_verify(&[0x2F, 0x12, 0, 0, 0, 4, 0, 0, 2, 0]).unwrap();
        assert_eq!((v.lba, v.blocks, v.dpo, v.bytchk), (4, 2, true, 1));
    }
}
