//! CDB vocabulary shared by the command modules: operation codes, service actions, the group
//! code lengths and field readers (SPC-4 4.2). Each command decodes its own CDB in its
//! family's module (`commands::*`).

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
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const LOG_SENSE: u8 = 0x4D;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const READ_16: u8 = 0x88;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_16: u8 = 0x8A;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const EXTENDED_COPY: u8 = 0x83;
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;
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

/// A big-endian 16-bit field at `at`.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A big-endian 32-bit field at `at`.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A big-endian 64-bit field at `at`.
#[inline]
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// Fails unless every bit of `mask` in `cdb[byte]` is clear.
#[inline]
pub(crate) fn reserved(cdb: &[u8], byte: usize, mask: u8) -> Result<(), Sense> {
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

/// LBA and length fields of the 10/12/16-byte block commands (SBC-3 layout).
#[inline]
pub(crate) fn lba_len(op: u8, cdb: &[u8]) -> (u64, u32) {
    match group_len(op) {
        Some(10) => (u64::from(be32(cdb, 2)), u32::from(be16(cdb, 7))),
        Some(12) => (u64::from(be32(cdb, 2)), be32(cdb, 6)),
        _ => (be64(cdb, 2), be32(cdb, 10)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
