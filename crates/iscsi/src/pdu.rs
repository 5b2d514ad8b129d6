//! PDU framing (RFC 7143 section 11): basic header segment (BHS), additional header
//! segments (AHS), data segment and padding.
//!
//! [`check`] is a cheap length probe over the front of a receive buffer; [`decode`] splits a
//! complete PDU off a [`BytesMut`] without copying its data segment. [`Bhs`] gives typed
//! access to the 48 header bytes and [`encode`] writes a PDU into a caller-owned buffer.
//! Both directions are exported so that a fuzz target can drive them directly.

use crate::ProtocolError;
use bytes::{BufMut, Bytes, BytesMut};

/// Length of the basic header segment.
pub const BHS_LEN: usize = 48;

/// The reserved tag value 0xffffffff (no task / no transfer).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Opcodes sent by an initiator (RFC 7143 11.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitiatorOpcode {
    /// 0x00
    NopOut,
    /// 0x01
    ScsiCommand,
    /// 0x02
    TaskManagement,
    /// 0x03
    Login,
    /// 0x04
    Text,
    /// 0x05
    DataOut,
    /// 0x06
    Logout,
    /// 0x10
    Snack,
}

impl InitiatorOpcode {
    /// Maps the 6-bit opcode; `None` for target or unknown opcodes.
    pub fn from_u8(op: u8) -> Option<Self> {
        Some(match op {
            0x00 => Self::NopOut,
            0x01 => Self::ScsiCommand,
            0x02 => Self::TaskManagement,
            0x03 => Self::Login,
            0x04 => Self::Text,
            0x05 => Self::DataOut,
            0x06 => Self::Logout,
            0x10 => Self::Snack,
            _ => return None,
        })
    }
}

/// Opcodes sent by a target (RFC 7143 11.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TargetOpcode {
    /// NOP-In.
    NopIn = 0x20,
    /// SCSI Response.
    ScsiResponse = 0x21,
    /// Task Management Function Response.
    TaskManagementResponse = 0x22,
    /// Login Response.
    LoginResponse = 0x23,
    /// Text Response.
    TextResponse = 0x24,
    /// SCSI Data-In.
    DataIn = 0x25,
    /// Logout Response.
    LogoutResponse = 0x26,
    /// Ready To Transfer.
    R2t = 0x31,
    /// Asynchronous Message.
    AsyncMessage = 0x32,
    /// Reject.
    Reject = 0x3f,
}

/// Header and data digests in use on a connection (RFC 7143 13.1): CRC32C when negotiated,
/// in full feature phase only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digests {
    /// CRC32C after the header segments.
    pub header: bool,
    /// CRC32C after a non-empty data segment.
    pub data: bool,
}

/// Receive-side framing limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest data segment accepted.
    pub max_data_segment: u32,
    /// Digests expected on the wire.
    pub digests: Digests,
}

/// The CRC32C digest of `parts` (one segment, possibly given in pieces) as it travels on the
/// wire (RFC 7143 13.1 and its appendix examples: the complemented CRC register, least
/// significant byte first). Computed by the `crc32c` crate, which uses the CPU's CRC32
/// instruction where there is one.
pub fn crc32c(parts: &[&[u8]]) -> [u8; 4] {
    parts
        .iter()
        .fold(0, |crc, p| crc32c::crc32c_append(crc, p))
        .to_le_bytes()
}

/// Zero bytes that pad a data segment of `len` bytes to a multiple of four.
fn padding(len: usize) -> &'static [u8] {
    &[0u8; 3][..pad4(len) - len]
}

/// Rounds up to a multiple of four.
pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// The 48-byte basic header segment with typed field accessors (big-endian).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bhs(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_LEN])
    }
}

impl Bhs {
    /// A zeroed header with the given target opcode.
    pub fn target(op: TargetOpcode) -> Self {
        let mut b = Bhs::default();
        b.0[0] = op as u8;
        b
    }
    /// The 6-bit opcode.
    pub fn opcode(&self) -> u8 {
        self.0[0] & 0x3f
    }
    /// The immediate delivery (I) bit.
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }
    /// Byte 1 (opcode-specific flags).
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
    /// Sets byte 1.
    pub fn set_flags(&mut self, f: u8) {
        self.0[1] = f;
    }
    /// The final (F) bit, bit 7 of byte 1.
    pub fn final_bit(&self) -> bool {
        self.0[1] & 0x80 != 0
    }
    /// TotalAHSLength in bytes.
    pub fn total_ahs_len(&self) -> usize {
        self.0[4] as usize * 4
    }
    /// DataSegmentLength (24 bits).
    pub fn data_segment_len(&self) -> u32 {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]])
    }
    /// Sets DataSegmentLength (must be below 2^24).
    pub fn set_data_segment_len(&mut self, len: u32) {
        let b = len.to_be_bytes();
        self.0[5..8].copy_from_slice(&b[1..4]);
    }
    /// Bytes 8..16 as a big-endian LUN.
    pub fn lun(&self) -> u64 {
        self.u64_at(8)
    }
    /// Sets bytes 8..16.
    pub fn set_lun(&mut self, lun: u64) {
        self.0[8..16].copy_from_slice(&lun.to_be_bytes());
    }
    /// Initiator task tag (bytes 16..20).
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }
    /// Sets the initiator task tag.
    pub fn set_itt(&mut self, itt: u32) {
        self.set_u32(16, itt);
    }
    /// A big-endian u32 at `off`.
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
    /// A big-endian u16 at `off`.
    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.0[off], self.0[off + 1]])
    }
    /// A big-endian u64 at `off`.
    pub fn u64_at(&self, off: usize) -> u64 {
        u64::from_be_bytes(self.0[off..off + 8].try_into().expect("8 bytes"))
    }
    /// Writes a big-endian u32 at `off`.
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    /// Writes a big-endian u16 at `off`.
    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// Field offsets shared by most PDUs.
pub mod off {
    /// Target transfer tag (or ReferencedTaskTag, TTT in Data-Out/R2T/NOP/Text).
    pub const TTT: usize = 20;
    /// Expected data transfer length in a SCSI Command.
    pub const EDTL: usize = 20;
    /// CmdSN in initiator requests; StatSN in target responses.
    pub const CMDSN: usize = 24;
    /// StatSN in target responses.
    pub const STATSN: usize = 24;
    /// ExpStatSN in requests; ExpCmdSN in responses.
    pub const EXPSTATSN: usize = 28;
    /// ExpCmdSN in target responses.
    pub const EXPCMDSN: usize = 28;
    /// MaxCmdSN in target responses.
    pub const MAXCMDSN: usize = 32;
    /// DataSN / R2TSN / ExpDataSN.
    pub const DATASN: usize = 36;
    /// Buffer offset in Data-In/Data-Out/R2T.
    pub const BUFFER_OFFSET: usize = 40;
    /// Residual count (SCSI Response, Data-In) or desired length (R2T).
    pub const RESIDUAL: usize = 44;
}

/// A received PDU: header, raw AHS bytes and data segment (without padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// Basic header segment.
    pub bhs: Bhs,
    /// The same 48 header bytes as a zero-copy slice of the receive buffer (the CDB of a
    /// SCSI Command is sliced from it).
    pub raw_bhs: Bytes,
    /// Additional header segments, `TotalAHSLength * 4` bytes.
    pub ahs: Bytes,
    /// Data segment without padding or digest.
    pub data: Bytes,
    /// A data digest was negotiated and the one received does not match the data segment:
    /// the data must not be used (RFC 7143 7.8: the PDU is rejected with reason 0x02).
    pub data_digest_error: bool,
}

/// Looks at the front of `buf`: `Ok(None)` when more bytes are needed, `Ok(Some(n))` with the
/// total length `n` of the first PDU (header, AHS, digests, padded data) once it is complete.
/// Validates the opcode and the data segment length against `limits` as soon as the header is
/// in, so an oversize PDU is refused before it is buffered.
pub fn check(buf: &[u8], limits: &FrameLimits) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < BHS_LEN {
        return Ok(None);
    }
    let op = buf[0] & 0x3f;
    if InitiatorOpcode::from_u8(op).is_none() {
        return Err(ProtocolError::UnknownOpcode(op));
    }
    let ahs = buf[4] as usize * 4;
    let dsl = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]);
    if dsl > limits.max_data_segment {
        return Err(ProtocolError::DataSegmentTooLong {
            len: dsl,
            max: limits.max_data_segment,
        });
    }
    let mut total = BHS_LEN + ahs + pad4(dsl as usize);
    if limits.digests.header {
        total += 4;
    }
    if limits.digests.data && dsl > 0 {
        total += 4;
    }
    if buf.len() < total {
        Ok(None)
    } else {
        Ok(Some(total))
    }
}

/// Splits the first complete PDU off `buf` (zero-copy for AHS and data). `Ok(None)` leaves
/// `buf` untouched when the PDU is incomplete.
pub fn decode(buf: &mut BytesMut, limits: &FrameLimits) -> Result<Option<Pdu>, ProtocolError> {
    let Some(total) = check(buf, limits)? else {
        return Ok(None);
    };
    let frame = buf.split_to(total).freeze();
    let mut bhs = Bhs::default();
    bhs.0.copy_from_slice(&frame[..BHS_LEN]);
    let ahs_len = bhs.total_ahs_len();
    let ahs = frame.slice(BHS_LEN..BHS_LEN + ahs_len);
    let mut pos = BHS_LEN + ahs_len;
    if limits.digests.header {
        let received: [u8; 4] = frame[pos..pos + 4].try_into().expect("4 bytes");
        let computed = crc32c(&[&frame[..pos]]);
        if received != computed {
            return Err(ProtocolError::HeaderDigest {
                received: u32::from_le_bytes(received),
                computed: u32::from_le_bytes(computed),
            });
        }
        pos += 4;
    }
    let dsl = bhs.data_segment_len() as usize;
    let data = frame.slice(pos..pos + dsl);
    let mut data_digest_error = false;
    if limits.digests.data && dsl > 0 {
        let end = pos + pad4(dsl);
        data_digest_error = frame[end..end + 4] != crc32c(&[&frame[pos..end]]);
    }
    let raw_bhs = frame.slice(..BHS_LEN);
    Ok(Some(Pdu {
        bhs,
        raw_bhs,
        ahs,
        data,
        data_digest_error,
    }))
}

/// One additional header segment (RFC 7143 11.2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ahs {
    /// AHSType (1 = extended CDB, 2 = bidirectional read expected length).
    pub ahs_type: u8,
    /// AHS-specific bytes (AHSLength bytes following the type byte).
    pub specific: Bytes,
}

/// Splits the AHS area of a PDU into segments; an AHSLength running past the area is an error.
pub fn parse_ahs(mut ahs: Bytes) -> Result<Vec<Ahs>, ProtocolError> {
    let mut out = Vec::new();
    while !ahs.is_empty() {
        if ahs.len() < 4 {
            return Err(ProtocolError::Malformed("truncated AHS".into()));
        }
        let len = u16::from_be_bytes([ahs[0], ahs[1]]) as usize;
        let ahs_type = ahs[2];
        // The AHS-specific field starts at byte 3 and is AHSLength bytes long.
        let seg = pad4(3 + len);
        if len == 0 || seg > ahs.len() {
            return Err(ProtocolError::Malformed(format!(
                "AHS length {len} does not fit the {} remaining AHS bytes",
                ahs.len()
            )));
        }
        out.push(Ahs {
            ahs_type,
            specific: ahs.slice(3..3 + len),
        });
        let _ = ahs.split_to(seg);
    }
    Ok(out)
}

/// Appends a PDU (header, data, zero padding) to `out`, filling in DataSegmentLength.
pub fn encode(out: &mut BytesMut, bhs: &Bhs, data: &[u8]) {
    encode_with(out, bhs, data, Digests::default());
}

/// Like [`encode`], with the CRC32C digests in `digests` after the header and after the
/// padded data segment (a data digest only when there is data).
pub fn encode_with(out: &mut BytesMut, bhs: &Bhs, data: &[u8], digests: Digests) {
    let mut bhs = *bhs;
    bhs.set_data_segment_len(data.len() as u32);
    let pad = padding(data.len());
    out.reserve(BHS_LEN + 8 + data.len() + pad.len());
    out.put_slice(&bhs.0);
    if digests.header {
        out.put_slice(&crc32c(&[&bhs.0]));
    }
    out.put_slice(data);
    out.put_slice(pad);
    if digests.data && !data.is_empty() {
        out.put_slice(&crc32c(&[data, pad]));
    }
}

/// Formats bytes as a hex dump, 16 per line with offsets (used by snapshot tests and logs).
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        s.push_str(&format!("{:04x}:", i * 16));
        for (j, b) in chunk.iter().enumerate() {
            if j == 8 {
                s.push(' ');
            }
            s.push_str(&format!(" {b:02x}"));
        }
        s.push('\n');
    }
    s
}
