//! Typed decoding of the CDBs this target implements (SPC-4, SBC-3).
//!
//! [`Cdb::parse`] checks what can be checked without the logical unit: the CDB length, the
//! CONTROL byte, fields with fixed legal values. Range checks against the capacity are the
//! caller's (they need the LU's geometry).

use crate::sense::Sense;

/// Operation codes (SPC-4 / SBC-3 annex), named after the T10 commands.
#[allow(missing_docs)]
pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8A;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
}

/// Service actions of SERVICE ACTION IN(16) and MAINTENANCE IN.
pub mod service_action {
    /// SERVICE ACTION IN(16): READ CAPACITY(16).
    pub const READ_CAPACITY_16: u16 = 0x10;
    /// SERVICE ACTION IN(16): GET LBA STATUS.
    pub const GET_LBA_STATUS: u16 = 0x12;
    /// MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES.
    pub const REPORT_SUPPORTED_OPCODES: u16 = 0x0C;
}

/// The CDB length implied by the group code (top three bits) of an operation code, for the
/// groups with a fixed length (SPC-4 4.2.5.1).
pub fn group_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// A block read or write: READ/WRITE(6/10/12/16), WRITE AND VERIFY, VERIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rw {
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

/// WRITE SAME(10/16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSame {
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

/// A decoded CDB. Field names follow the T10 field names; `alloc` is the ALLOCATION LENGTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cdb {
    /// TEST UNIT READY (SPC-4 6.47).
    TestUnitReady,
    /// REQUEST SENSE (SPC-4 6.39); `desc` asks for descriptor format.
    RequestSense {
        /// DESC bit.
        desc: bool,
        /// ALLOCATION LENGTH.
        alloc: u8,
    },
    /// INQUIRY (SPC-4 6.6).
    Inquiry {
        /// EVPD bit: return the VPD page `page`.
        evpd: bool,
        /// PAGE CODE.
        page: u8,
        /// ALLOCATION LENGTH.
        alloc: u16,
    },
    /// MODE SENSE(6) (`long == false`) or (10) (SPC-4 6.11, 6.12).
    ModeSense {
        /// MODE SENSE(10).
        long: bool,
        /// DBD: no block descriptors.
        dbd: bool,
        /// LLBAA: long LBA block descriptor accepted (10 only).
        llbaa: bool,
        /// PC: page control (current, changeable, default, saved).
        pc: u8,
        /// PAGE CODE.
        page: u8,
        /// SUBPAGE CODE.
        subpage: u8,
        /// ALLOCATION LENGTH.
        alloc: u16,
    },
    /// START STOP UNIT (SBC-3 5.25).
    StartStopUnit {
        /// IMMED bit.
        immed: bool,
        /// START bit.
        start: bool,
        /// LOEJ bit.
        loej: bool,
    },
    /// READ CAPACITY(10) (SBC-3 5.15).
    ReadCapacity10 {
        /// PMI bit (obsolete in SBC-3).
        pmi: bool,
        /// LOGICAL BLOCK ADDRESS (must be 0 without PMI).
        lba: u32,
    },
    /// READ CAPACITY(16) (SBC-3 5.16).
    ReadCapacity16 {
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// GET LBA STATUS (SBC-3 5.6).
    GetLbaStatus {
        /// STARTING LOGICAL BLOCK ADDRESS.
        lba: u64,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// READ(6/10/12/16).
    Read(Rw),
    /// WRITE(6/10/12/16).
    Write(Rw),
    /// WRITE AND VERIFY(10/12/16).
    WriteAndVerify(Rw),
    /// VERIFY(10/12/16).
    Verify(Rw),
    /// SYNCHRONIZE CACHE(10/16) (SBC-3 5.22); 0 blocks means to the end of the medium.
    SyncCache {
        /// LOGICAL BLOCK ADDRESS.
        lba: u64,
        /// NUMBER OF LOGICAL BLOCKS.
        blocks: u32,
        /// IMMED bit.
        immed: bool,
    },
    /// PRE-FETCH(10/16) (SBC-3 5.10).
    PreFetch {
        /// LOGICAL BLOCK ADDRESS.
        lba: u64,
        /// PREFETCH LENGTH.
        blocks: u32,
        /// IMMED bit.
        immed: bool,
    },
    /// WRITE SAME(10/16).
    WriteSame(WriteSame),
    /// COMPARE AND WRITE (SBC-3 5.2); `blocks` is NUMBER OF LOGICAL BLOCKS (one byte).
    CompareAndWrite(Rw),
    /// UNMAP (SBC-3 5.28).
    Unmap {
        /// ANCHOR bit.
        anchor: bool,
        /// PARAMETER LIST LENGTH.
        param_len: u16,
    },
    /// REPORT LUNS (SPC-4 6.33).
    ReportLuns {
        /// SELECT REPORT.
        select: u8,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
    ReportSupportedOpcodes {
        /// RCTD: return command timeouts descriptors.
        rctd: bool,
        /// REPORTING OPTIONS.
        options: u8,
        /// REQUESTED OPERATION CODE.
        opcode: u8,
        /// REQUESTED SERVICE ACTION.
        sa: u16,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// Fails unless every bit of `mask` in `cdb[byte]` is clear.
#[inline]
fn reserved(cdb: &[u8], byte: usize, mask: u8) -> Result<(), Sense> {
    let bad = cdb[byte] & mask;
    if bad == 0 {
        Ok(())
    } else {
        Err(Sense::invalid_field_in_cdb(
            byte as u16,
            Some(7 - bad.leading_zeros() as u8),
        ))
    }
}

impl Cdb {
    /// The operation code and service action (0 when the command has none) of a raw CDB.
    pub fn op_and_sa(cdb: &[u8]) -> (u8, u16) {
        match cdb.first() {
            Some(&op @ (opcode::SERVICE_ACTION_IN_16 | opcode::MAINTENANCE_IN)) => {
                (op, u16::from(cdb.get(1).copied().unwrap_or(0) & 0x1F))
            }
            Some(&op) => (op, 0),
            None => (0, 0),
        }
    }

    /// Decodes `cdb`. An operation code this target does not implement is ILLEGAL REQUEST,
    /// INVALID COMMAND OPERATION CODE; a bad field is INVALID FIELD IN CDB with a field
    /// pointer.
    pub fn parse(cdb: &[u8]) -> Result<Cdb, Sense> {
        use opcode::*;
        let Some(&op) = cdb.first() else {
            return Err(Sense::INVALID_OPCODE);
        };
        let len = match op {
            SERVICE_ACTION_IN_16 | MAINTENANCE_IN | REPORT_LUNS => {
                if op == SERVICE_ACTION_IN_16 {
                    16
                } else {
                    12
                }
            }
            _ => group_len(op).ok_or(Sense::INVALID_OPCODE)?,
        };
        if cdb.len() < len {
            return Err(Sense::invalid_field_in_cdb(0, None));
        }
        let parsed = match op {
            TEST_UNIT_READY => Cdb::TestUnitReady,
            REQUEST_SENSE => {
                reserved(cdb, 1, 0xFE)?;
                Cdb::RequestSense {
                    desc: cdb[1] & 0x01 != 0,
                    alloc: cdb[4],
                }
            }
            INQUIRY => {
                // Bit 1 was CMDDT (obsolete); SPC-4 makes it reserved.
                reserved(cdb, 1, 0xFE)?;
                let evpd = cdb[1] & 0x01 != 0;
                if !evpd && cdb[2] != 0 {
                    return Err(Sense::invalid_field_in_cdb(2, Some(7)));
                }
                Cdb::Inquiry {
                    evpd,
                    page: cdb[2],
                    alloc: be16(cdb, 3),
                }
            }
            MODE_SENSE_6 | MODE_SENSE_10 => {
                let long = op == MODE_SENSE_10;
                reserved(cdb, 1, if long { 0xE7 } else { 0xF7 })?;
                Cdb::ModeSense {
                    long,
                    dbd: cdb[1] & 0x08 != 0,
                    llbaa: long && cdb[1] & 0x10 != 0,
                    pc: cdb[2] >> 6,
                    page: cdb[2] & 0x3F,
                    subpage: cdb[3],
                    alloc: if long {
                        be16(cdb, 7)
                    } else {
                        u16::from(cdb[4])
                    },
                }
            }
            START_STOP_UNIT => Cdb::StartStopUnit {
                immed: cdb[1] & 0x01 != 0,
                start: cdb[4] & 0x01 != 0,
                loej: cdb[4] & 0x02 != 0,
            },
            READ_CAPACITY_10 => {
                let pmi = cdb[8] & 0x01 != 0;
                let lba = be32(cdb, 2);
                // SBC-3 5.15.1: an LBA without PMI is an error.
                if !pmi && lba != 0 {
                    return Err(Sense::invalid_field_in_cdb(2, None));
                }
                Cdb::ReadCapacity10 { pmi, lba }
            }
            SERVICE_ACTION_IN_16 => match u16::from(cdb[1] & 0x1F) {
                service_action::READ_CAPACITY_16 => Cdb::ReadCapacity16 {
                    alloc: be32(cdb, 10),
                },
                service_action::GET_LBA_STATUS => Cdb::GetLbaStatus {
                    lba: be64(cdb, 2),
                    alloc: be32(cdb, 10),
                },
                _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
            },
            READ_6 | WRITE_6 => {
                let lba = u64::from(be32(cdb, 0) & 0x001F_FFFF);
                let blocks = if cdb[4] == 0 { 256 } else { u32::from(cdb[4]) };
                let rw = Rw {
                    lba,
                    blocks,
                    protect: 0,
                    dpo: false,
                    fua: false,
                    bytchk: 0,
                };
                if op == READ_6 {
                    Cdb::Read(rw)
                } else {
                    Cdb::Write(rw)
                }
            }
            READ_10 | WRITE_10 | READ_12 | WRITE_12 | READ_16 | WRITE_16 => {
                // Byte 1: xxPROTECT(7:5) DPO(4) FUA(3) reserved(2) FUA_NV(1, obsolete in
                // SBC-3 but still sent) obsolete(0).
                reserved(cdb, 1, 0x04)?;
                let (lba, blocks) = lba_len(op, cdb);
                let rw = Rw {
                    lba,
                    blocks,
                    protect: cdb[1] >> 5,
                    dpo: cdb[1] & 0x10 != 0,
                    fua: cdb[1] & 0x08 != 0,
                    bytchk: 0,
                };
                if matches!(op, READ_10 | READ_12 | READ_16) {
                    Cdb::Read(rw)
                } else {
                    Cdb::Write(rw)
                }
            }
            VERIFY_10 | VERIFY_12 | VERIFY_16 | WRITE_AND_VERIFY_10 | WRITE_AND_VERIFY_12
            | WRITE_AND_VERIFY_16 => {
                // Byte 1: xxPROTECT(7:5) DPO(4) reserved(3) BYTCHK(2:1) obsolete(0).
                reserved(cdb, 1, 0x08)?;
                let (lba, blocks) = lba_len(op, cdb);
                let rw = Rw {
                    lba,
                    blocks,
                    protect: cdb[1] >> 5,
                    dpo: cdb[1] & 0x10 != 0,
                    fua: false,
                    bytchk: (cdb[1] >> 1) & 0x03,
                };
                if matches!(op, VERIFY_10 | VERIFY_12 | VERIFY_16) {
                    Cdb::Verify(rw)
                } else {
                    Cdb::WriteAndVerify(rw)
                }
            }
            SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16 | PRE_FETCH_10 | PRE_FETCH_16 => {
                let (lba, blocks) = lba_len(op, cdb);
                let immed = cdb[1] & 0x02 != 0;
                if matches!(op, SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16) {
                    Cdb::SyncCache { lba, blocks, immed }
                } else {
                    Cdb::PreFetch { lba, blocks, immed }
                }
            }
            WRITE_SAME_10 | WRITE_SAME_16 => {
                // Byte 1: WRPROTECT(7:5) ANCHOR(4) UNMAP(3) reserved/PBDATA(2) LBDATA(1)
                // NDOB(0, 16 only). PBDATA/LBDATA are not supported.
                reserved(cdb, 1, if op == WRITE_SAME_10 { 0x07 } else { 0x06 })?;
                let (lba, blocks) = lba_len(op, cdb);
                Cdb::WriteSame(WriteSame {
                    lba,
                    blocks,
                    protect: cdb[1] >> 5,
                    anchor: cdb[1] & 0x10 != 0,
                    unmap: cdb[1] & 0x08 != 0,
                    ndob: op == WRITE_SAME_16 && cdb[1] & 0x01 != 0,
                })
            }
            COMPARE_AND_WRITE => {
                // Byte 1: WRPROTECT(7:5) DPO(4) FUA(3) reserved(2) FUA_NV(1) reserved(0).
                reserved(cdb, 1, 0x05)?;
                Cdb::CompareAndWrite(Rw {
                    lba: be64(cdb, 2),
                    blocks: u32::from(cdb[13]),
                    protect: cdb[1] >> 5,
                    dpo: cdb[1] & 0x10 != 0,
                    fua: cdb[1] & 0x08 != 0,
                    bytchk: 0,
                })
            }
            UNMAP => {
                reserved(cdb, 1, 0xFE)?;
                Cdb::Unmap {
                    anchor: cdb[1] & 0x01 != 0,
                    param_len: be16(cdb, 7),
                }
            }
            REPORT_LUNS => Cdb::ReportLuns {
                select: cdb[2],
                alloc: be32(cdb, 6),
            },
            MAINTENANCE_IN => match u16::from(cdb[1] & 0x1F) {
                service_action::REPORT_SUPPORTED_OPCODES => {
                    reserved(cdb, 2, 0x78)?;
                    Cdb::ReportSupportedOpcodes {
                        rctd: cdb[2] & 0x80 != 0,
                        options: cdb[2] & 0x07,
                        opcode: cdb[3],
                        sa: be16(cdb, 4),
                        alloc: be32(cdb, 6),
                    }
                }
                _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
            },
            _ => return Err(Sense::INVALID_OPCODE),
        };
        // CONTROL byte: NACA (bit 2) is not supported; LINK (bit 0) is obsolete. Checked once
        // the operation code is known to be supported: an unsupported one is reported as such
        // whatever its CONTROL byte says.
        if cdb[len - 1] & 0x04 != 0 {
            return Err(Sense::invalid_field_in_cdb(len as u16 - 1, Some(2)));
        }
        Ok(parsed)
    }
}

/// LBA and length fields of the 10/12/16-byte block commands (SBC-3 layout).
#[inline]
fn lba_len(op: u8, cdb: &[u8]) -> (u64, u32) {
    match group_len(op) {
        Some(10) => (u64::from(be32(cdb, 2)), u32::from(be16(cdb, 7))),
        Some(12) => (u64::from(be32(cdb, 2)), be32(cdb, 6)),
        _ => (be64(cdb, 2), be32(cdb, 10)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::{Asc, SenseKey};
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

    #[rstest]
    #[case::read6(&[0x08, 0x1F, 0xFF, 0xFE, 0x10, 0], Cdb::Read(rw(0x1F_FFFE, 16)))]
    #[case::read6_zero_is_256(&[0x08, 0, 0, 7, 0, 0], Cdb::Read(rw(7, 256)))]
    #[case::write6_ignores_top_bits_of_byte1(&[0x0A, 0xE0, 0, 1, 1, 0], Cdb::Write(rw(1, 1)))]
    #[case::read10(&[0x28, 0, 0x12, 0x34, 0x56, 0x78, 0, 0x01, 0x00, 0], Cdb::Read(rw(0x1234_5678, 256)))]
    #[case::read10_zero_blocks(&[0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0], Cdb::Read(rw(0, 0)))]
    #[case::read12(&[0xA8, 0, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0], Cdb::Read(rw(9, 0x10000)))]
    #[case::write16(&[0x8A, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0], Cdb::Write(rw(0x1_0000_0002, 3)))]
    #[case::read16_max_lba(&[0x88, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0], Cdb::Read(rw(u64::MAX, 1)))]
    #[case::tur(&[0, 0, 0, 0, 0, 0], Cdb::TestUnitReady)]
    #[case::inquiry_std(&[0x12, 0, 0, 0x01, 0x04, 0], Cdb::Inquiry { evpd: false, page: 0, alloc: 260 })]
    #[case::inquiry_vpd(&[0x12, 1, 0x83, 0, 0xFF, 0], Cdb::Inquiry { evpd: true, page: 0x83, alloc: 255 })]
    #[case::rc10(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], Cdb::ReadCapacity10 { pmi: false, lba: 0 })]
    #[case::get_lba_status(&[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 24, 0, 0], Cdb::GetLbaStatus { lba: 0x102, alloc: 24 })]
    #[case::caw(&[0x89, 0x08, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0], Cdb::CompareAndWrite(Rw { lba: 7, blocks: 1, protect: 0, dpo: false, fua: true, bytchk: 0 }))]
    #[case::rc16(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], Cdb::ReadCapacity16 { alloc: 32 })]
    #[case::sync10(&[0x35, 0x02, 0, 0, 0, 5, 0, 0, 8, 0], Cdb::SyncCache { lba: 5, blocks: 8, immed: true })]
    #[case::report_luns(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], Cdb::ReportLuns { select: 0, alloc: 4096 })]
    #[case::mode_sense6(&[0x1A, 0x08, 0x3F, 0, 0xFF, 0], Cdb::ModeSense { long: false, dbd: true, llbaa: false, pc: 0, page: 0x3F, subpage: 0, alloc: 255 })]
    #[case::mode_sense10(&[0x5A, 0x10, 0x88, 0, 0, 0, 0, 0x01, 0x00, 0], Cdb::ModeSense { long: true, dbd: false, llbaa: true, pc: 2, page: 8, subpage: 0, alloc: 256 })]
    #[case::unmap(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], Cdb::Unmap { anchor: false, param_len: 24 })]
    #[case::rsoc(&[0xA3, 0x0C, 0x81, 0x28, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0], Cdb::ReportSupportedOpcodes { rctd: true, options: 1, opcode: 0x28, sa: 0, alloc: 0xFFFF })]
    fn parses(#[case] bytes: &[u8], #[case] expected: Cdb) {
        assert_eq!(Cdb::parse(bytes), Ok(expected));
    }

    #[test]
    fn read10_flags() {
        // RDPROTECT=5, DPO, FUA, FUA_NV.
        let cdb = [0x28, 0xBA, 0, 0, 0, 1, 0, 0, 1, 0];
        let Ok(Cdb::Read(r)) = Cdb::parse(&cdb) else {
            panic!()
        };
        assert_eq!((r.protect, r.dpo, r.fua), (5, true, true));
    }

    #[test]
    fn write_same16_flags() {
        let cdb = [0x93, 0x19, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0];
        let Ok(Cdb::WriteSame(ws)) = Cdb::parse(&cdb) else {
            panic!()
        };
        assert_eq!(
            ws,
            WriteSame {
                lba: 4,
                blocks: 2,
                protect: 0,
                anchor: true,
                unmap: true,
                ndob: true
            }
        );
    }

    #[rstest]
    #[case::unknown_opcode(&[0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x20, None)]
    #[case::mode_select_not_supported(&[0x15, 0, 0, 0, 0, 0], 0x20, None)]
    #[case::group3_reserved(&[0x7F, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x20, None)]
    #[case::inquiry_page_without_evpd(&[0x12, 0, 0x80, 0, 0xFF, 0], 0x24, Some((2, 0xCF)))]
    #[case::inquiry_cmddt(&[0x12, 0x02, 0, 0, 0xFF, 0], 0x24, Some((1, 0xC9)))]
    #[case::naca(&[0x00, 0, 0, 0, 0, 0x04], 0x24, Some((5, 0xCA)))]
    #[case::unsupported_opcode_with_naca(&[0x15, 0, 0, 0, 0, 0x04], 0x20, None)]
    #[case::rc10_lba_without_pmi(&[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], 0x24, Some((2, 0xC0)))]
    #[case::read10_reserved_bit2(&[0x28, 0x04, 0, 0, 0, 0, 0, 0, 1, 0], 0x24, Some((1, 0xCA)))]
    #[case::sai_unknown_sa(&[0x9E, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x24, Some((1, 0xCC)))]
    #[case::short_cdb(&[0x28, 0, 0, 0], 0x24, Some((0, 0xC0)))]
    fn rejects(#[case] bytes: &[u8], #[case] asc: u8, #[case] pointer: Option<(u16, u8)>) {
        let sense = Cdb::parse(bytes).unwrap_err();
        assert_eq!(sense.key, SenseKey::IllegalRequest);
        assert_eq!(sense.asc, Asc(asc, 0));
        let bytes = sense.to_fixed();
        match pointer {
            None => assert_eq!(bytes[15] & 0x80, 0),
            Some((byte, b15)) => {
                assert_eq!(bytes[15], b15);
                assert_eq!(u16::from_be_bytes([bytes[16], bytes[17]]), byte);
            }
        }
    }

    #[test]
    fn group_codes() {
        assert_eq!(group_len(0x08), Some(6));
        assert_eq!(group_len(0x28), Some(10));
        assert_eq!(group_len(0x41), Some(10));
        assert_eq!(group_len(0x7E), None);
        assert_eq!(group_len(0x88), Some(16));
        assert_eq!(group_len(0xA8), Some(12));
        assert_eq!(group_len(0xC0), None);
    }
}
