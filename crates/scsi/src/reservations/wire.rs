//! The wire side of persistent reservations: PERSISTENT RESERVE OUT's CDB and parameter list
//! (SPC-4 6.16), PERSISTENT RESERVE IN's parameter data (SPC-4 6.15) and iSCSI TransportIDs
//! (SPC-4 7.6.4.6).

use super::state::{PrState, TargetPorts};
use crate::nexus::InitiatorPort;
use crate::sense::Sense;
use crate::Response;

/// Persistent reservation types (SPC-4 table 175).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PrType {
    /// Write Exclusive.
    WriteExclusive = 1,
    /// Exclusive Access.
    ExclusiveAccess = 3,
    /// Write Exclusive – Registrants Only.
    WriteExclusiveRegistrantsOnly = 5,
    /// Exclusive Access – Registrants Only.
    ExclusiveAccessRegistrantsOnly = 6,
    /// Write Exclusive – All Registrants.
    WriteExclusiveAllRegistrants = 7,
    /// Exclusive Access – All Registrants.
    ExclusiveAccessAllRegistrants = 8,
}

impl PrType {
    /// The type with this TYPE code, if it is one.
    pub fn from_code(code: u8) -> Option<PrType> {
        Some(match code {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// Every registrant may access the medium (Registrants Only and All Registrants).
    pub(crate) fn registrants_only(self) -> bool {
        (self as u8) >= 5
    }

    /// Every registrant holds the reservation.
    pub(crate) fn all_registrants(self) -> bool {
        (self as u8) >= 7
    }

    /// Reads from non-holders conflict too.
    pub(crate) fn exclusive_access(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess
                | PrType::ExclusiveAccessRegistrantsOnly
                | PrType::ExclusiveAccessAllRegistrants
        )
    }
}

/// PERSISTENT RESERVE OUT service actions (SPC-4 table 170).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServiceAction {
    Register,
    Reserve,
    Release,
    Clear,
    Preempt,
    PreemptAndAbort,
    RegisterAndIgnore,
    RegisterAndMove,
}

/// A decoded PERSISTENT RESERVE OUT: its CDB and parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrOut {
    pub(crate) action: ServiceAction,
    pub(crate) scope: u8,
    /// `None` when the TYPE field holds no known type (an error only where it is used).
    pub(crate) kind: Option<PrType>,
    /// RESERVATION KEY.
    pub(crate) key: u64,
    /// SERVICE ACTION RESERVATION KEY.
    pub(crate) sa_key: u64,
    pub(crate) all_tg_pt: bool,
    pub(crate) aptpl: bool,
    /// REGISTER AND MOVE: UNREG.
    pub(crate) unreg: bool,
    /// REGISTER AND MOVE: the RELATIVE TARGET PORT IDENTIFIER of the destination I_T
    /// nexus (checked where the target ports are known).
    pub(crate) move_target: u16,
    /// SPEC_I_PT's TransportIDs, or REGISTER AND MOVE's destination.
    pub(crate) spec_ports: Vec<InitiatorPort>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

impl PrOut {
    /// Decodes the CDB (10 bytes, checked by the caller) and `data` (the data-out).
    pub(crate) fn parse(cdb: &[u8], data: &[u8]) -> Result<PrOut, Sense> {
        let action = match cdb[1] & 0x1F {
            0 => ServiceAction::Register,
            1 => ServiceAction::Reserve,
            2 => ServiceAction::Release,
            3 => ServiceAction::Clear,
            4 => ServiceAction::Preempt,
            5 => ServiceAction::PreemptAndAbort,
            6 => ServiceAction::RegisterAndIgnore,
            7 => ServiceAction::RegisterAndMove,
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
        };
        let param_len = be32(cdb, 5) as usize;
        // A parameter list shorter than the CDB says, or shorter than its fixed part, is a
        // length error (SPC-4 6.16.3); nothing past the stated length is looked at.
        if data.len() < param_len || param_len < 24 {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        }
        let p = &data[..param_len];
        let mut out = PrOut {
            action,
            scope: cdb[2] >> 4,
            kind: PrType::from_code(cdb[2] & 0x0F),
            key: be64(p, 0),
            sa_key: be64(p, 8),
            all_tg_pt: false,
            aptpl: false,
            unreg: false,
            move_target: 0,
            spec_ports: Vec::new(),
        };
        if action == ServiceAction::RegisterAndMove {
            out.unreg = p[17] & 0x02 != 0;
            out.aptpl = p[17] & 0x01 != 0;
            out.move_target = u16::from_be_bytes([p[18], p[19]]);
            let tlen = be32(p, 20) as usize;
            if param_len != 24 + tlen {
                return Err(Sense::PARAMETER_LIST_LENGTH);
            }
            out.spec_ports.push(transport_id(&p[24..], 24)?.0);
            return Ok(out);
        }
        let spec_i_pt = p[20] & 0x08 != 0;
        out.all_tg_pt = p[20] & 0x04 != 0;
        out.aptpl = p[20] & 0x01 != 0;
        if !spec_i_pt {
            if param_len != 24 {
                return Err(Sense::PARAMETER_LIST_LENGTH);
            }
            return Ok(out);
        }
        if action != ServiceAction::Register {
            return Err(Sense::invalid_field_in_parameter_list(20));
        }
        if param_len < 28 {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        }
        let tlen = be32(p, 24) as usize;
        if param_len != 28 + tlen {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        }
        let mut at = 28;
        while at < param_len {
            let (port, used) = transport_id(&p[at..], at)?;
            out.spec_ports.push(port);
            at += used;
        }
        Ok(out)
    }
}

/// Protocol identifier of iSCSI (SPC-4 table 362).
const PROTOCOL_ISCSI: u8 = 0x5;

/// Decodes one iSCSI TransportID with FORMAT CODE 01b (initiator port: name and ISID) at the
/// start of `b`, which lies at `offset` in the parameter list (for the field pointer).
/// Returns the port and the TransportID's length.
fn transport_id(b: &[u8], offset: usize) -> Result<(InitiatorPort, usize), Sense> {
    let bad = |at: usize| Sense::invalid_field_in_parameter_list((offset + at) as u16);
    if b.len() < 4 {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    if b[0] != 0x40 | PROTOCOL_ISCSI {
        // Other protocols, and format 00b (a whole initiator device rather than a port).
        return Err(bad(0));
    }
    let len = 4 + usize::from(u16::from_be_bytes([b[2], b[3]]));
    if len > b.len() {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    let text = &b[4..len];
    let end = text.iter().position(|&c| c == 0).ok_or_else(|| bad(4))?;
    let text = std::str::from_utf8(&text[..end]).map_err(|_| bad(4))?;
    let (name, isid) = text.split_once(",i,0x").ok_or_else(|| bad(4))?;
    let valid_name = !name.is_empty() && name.bytes().all(|c| c.is_ascii_graphic() && c != b',');
    if !valid_name || isid.len() != 12 {
        return Err(bad(4));
    }
    let mut id = [0u8; 6];
    for (i, x) in id.iter_mut().enumerate() {
        *x = u8::from_str_radix(&isid[2 * i..2 * i + 2], 16).map_err(|_| bad(4))?;
    }
    Ok((
        InitiatorPort {
            name: name.to_string(),
            isid: id,
        },
        len,
    ))
}

/// The iSCSI TransportID of `port`, FORMAT CODE 01b, padded to a multiple of 4 bytes.
pub(crate) fn encode_transport_id(port: &InitiatorPort) -> Vec<u8> {
    let mut name = port.port_name().into_bytes();
    name.push(0);
    name.resize(name.len().next_multiple_of(4), 0);
    let mut t = vec![0x40 | PROTOCOL_ISCSI, 0];
    t.extend_from_slice(&(name.len() as u16).to_be_bytes());
    t.extend_from_slice(&name);
    t
}

/// PERSISTENT RESERVE IN (SPC-4 6.15).
pub(crate) fn pr_in(st: &PrState, cdb: &[u8]) -> Response {
    let alloc = u32::from(u16::from_be_bytes([cdb[7], cdb[8]]));
    let mut d = st.generation.to_be_bytes().to_vec();
    match cdb[1] & 0x1F {
        // READ KEYS (6.15.2).
        0x00 => {
            d.extend_from_slice(&((st.registrations.len() * 8) as u32).to_be_bytes());
            for r in &st.registrations {
                d.extend_from_slice(&r.key.to_be_bytes());
            }
        }
        // READ RESERVATION (6.15.3).
        0x01 => match &st.reservation {
            None => d.extend_from_slice(&0u32.to_be_bytes()),
            Some(r) => {
                d.extend_from_slice(&16u32.to_be_bytes());
                let key = if r.kind.all_registrants() {
                    0
                } else {
                    st.key_of(&r.holder).unwrap_or(0)
                };
                d.extend_from_slice(&key.to_be_bytes());
                d.extend_from_slice(&[0, 0, 0, 0, 0, r.kind as u8, 0, 0]);
            }
        },
        // REPORT CAPABILITIES (6.15.4).
        0x02 => {
            d = vec![
                0x00,
                0x08,
                0x0D,                      // SIP_C ATP_C PTPL_C
                0x90 | u8::from(st.aptpl), // TMV, ALLOW COMMANDS 001b, PTPL_A
                0xEA,                      // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
                0x01,                      // EX_AC_AR
                0,
                0,
            ];
        }
        // READ FULL STATUS (6.15.5): one descriptor per registration, of one I_T nexus
        // (ALL_TG_PT 0, its RELATIVE TARGET PORT IDENTIFIER) or of every target port
        // (ALL_TG_PT 1; the identifier is then not defined by the standard: 0).
        0x03 => {
            let mut descriptors = Vec::new();
            for r in &st.registrations {
                let holder = st.is_holder(&r.who);
                let (all_tg_pt, relative_port) = match r.who.target {
                    TargetPorts::One(port) => (false, port),
                    TargetPorts::All => (true, 0),
                };
                descriptors.extend_from_slice(&r.key.to_be_bytes());
                descriptors.extend_from_slice(&[0; 4]);
                descriptors.push(u8::from(all_tg_pt) << 1 | u8::from(holder));
                descriptors.push(match (&st.reservation, holder) {
                    (Some(res), true) => res.kind as u8,
                    _ => 0,
                });
                descriptors.extend_from_slice(&[0; 4]);
                descriptors.extend_from_slice(&relative_port.to_be_bytes());
                let t = encode_transport_id(&r.who.port);
                descriptors.extend_from_slice(&(t.len() as u32).to_be_bytes());
                descriptors.extend_from_slice(&t);
            }
            d.extend_from_slice(&(descriptors.len() as u32).to_be_bytes());
            d.extend_from_slice(&descriptors);
        }
        _ => return Response::check_condition(Sense::invalid_field_in_cdb(1, Some(4))),
    }
    Response::data(d, alloc)
}
