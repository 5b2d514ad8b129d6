//! INQUIRY (SPC-4 6.6): standard data and the VPD pages (SPC-4 7.8, SBC-3 6.5).

use super::exec::{
    done, max_write_same_blocks, MAX_COMPARE_AND_WRITE_BLOCKS, MAX_TRANSFER_BYTES,
    MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
};
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, opcode as op, reserved};
use crate::sense::Sense;
use crate::{LuConfig, Response, ScsiTarget, Start};

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[CommandDef::new::<Inquiry>(
    op::INQUIRY,
    &[0x12, 0x01, F, F, F, 0],
)];

/// Peripheral device type: direct access block device.
const PDT_DISK: u8 = 0x00;
/// Peripheral qualifier 011b, device type 1Fh: no logical unit here.
const PQ_ABSENT: u8 = 0x7F;

/// Version descriptors claimed in standard INQUIRY data (SPC-4 table 148): SAM-5, SPC-4 and
/// SBC-3, each "no version claimed".
const VERSION_DESCRIPTORS: [u16; 3] = [0x00A0, 0x0460, 0x04C0];

/// INQUIRY.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Inquiry {
    /// EVPD bit: return the VPD page `page`.
    pub evpd: bool,
    /// PAGE CODE.
    pub page: u8,
    /// ALLOCATION LENGTH.
    pub alloc: u16,
}

impl ScsiCommand for Inquiry {
    const WITHOUT_LU: bool = true;

    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        // Bit 1 was CMDDT (obsolete); SPC-4 makes it reserved.
        reserved(cdb, 1, 0xFE)?;
        let evpd = cdb[1] & 0x01 != 0;
        if !evpd && cdb[2] != 0 {
            return Err(Sense::invalid_field_in_cdb(2, Some(7)));
        }
        Ok(Inquiry {
            evpd,
            page: cdb[2],
            alloc: be16(cdb, 3),
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let lu = ctx.config();
        let alloc = u32::from(self.alloc);
        let alua = ctx.target.alua();
        done(if !self.evpd {
            let mut data = standard_inquiry(Some(lu));
            if alua.is_some() {
                data[5] |= super::alua::TPGS_IMPLICIT;
            }
            Response::data(data, alloc)
        } else {
            let port_name = ctx.target.target_port_name();
            match vpd_page_of_port(lu, self.page, alua.as_ref(), port_name.as_deref()) {
                Some(data) => Response::data(data, alloc),
                None => Response::check_condition(Sense::invalid_field_in_cdb(2, None)),
            }
        })
    }

    /// SPC-4 4.6.4 / 6.6.2: standard data with peripheral qualifier 011b; of the VPD pages
    /// only the list of supported pages, which is empty.
    fn absent(self, _target: &ScsiTarget) -> Response {
        let alloc = u32::from(self.alloc);
        match (self.evpd, self.page) {
            (false, _) => Response::data(standard_inquiry(None), alloc),
            (true, 0x00) => Response::data(vec![PQ_ABSENT, 0x00, 0x00, 0x01, 0x00], alloc),
            (true, _) => Response::check_condition(Sense::invalid_field_in_cdb(2, None)),
        }
    }
}

/// Copies `s` into a fixed-width ASCII field, space padded; characters outside 20h..7Eh
/// become spaces (SPC-4 4.4.1).
fn ascii_field(out: &mut Vec<u8>, s: &str, width: usize) {
    let start = out.len();
    out.extend(
        s.bytes()
            .take(width)
            .map(|c| if (0x20..=0x7E).contains(&c) { c } else { b' ' }),
    );
    out.resize(start + width, b' ');
}

/// Standard INQUIRY data (SPC-4 table 140), 96 bytes. `None` builds the data for an absent
/// LUN (peripheral qualifier 011b).
pub(crate) fn standard_inquiry(lu: Option<&LuConfig>) -> Vec<u8> {
    let mut d = Vec::with_capacity(96);
    d.push(if lu.is_some() { PDT_DISK } else { PQ_ABSENT });
    d.push(0x00); // RMB=0, LU_CONG=0
    d.push(0x06); // VERSION: SPC-4
    d.push(0x12); // HISUP=1, RESPONSE DATA FORMAT=2
    d.push(91); // ADDITIONAL LENGTH: 96 - 5
    d.push(0x08); // SCCS ACC TPGS 3PC PROTECT: 3PC, EXTENDED COPY (commands::copy)
    d.push(0x00); // ENCSERV VS MULTIP
    d.push(0x02); // CMDQUE
    let (vendor, product, revision) =
        lu.map_or(("", "", ""), |c| (&*c.vendor, &*c.product, &*c.revision));
    ascii_field(&mut d, vendor, 8);
    ascii_field(&mut d, product, 16);
    ascii_field(&mut d, revision, 4);
    d.resize(58, 0); // vendor specific, CLOCKING/QAS/IUS, reserved
    for v in VERSION_DESCRIPTORS {
        d.extend_from_slice(&v.to_be_bytes());
    }
    d.resize(96, 0);
    d
}

/// The VPD pages this logical unit supports, ascending.
fn supported_vpd_pages(lu: &LuConfig) -> &'static [u8] {
    if lu.capabilities.discard {
        &[0x00, 0x80, 0x83, 0x86, 0x8F, 0xB0, 0xB1, 0xB2]
    } else {
        &[0x00, 0x80, 0x83, 0x86, 0x8F, 0xB0, 0xB1]
    }
}

/// A VPD page with its 4-byte header (2-byte PAGE LENGTH), or `None` when not supported.
pub(crate) fn vpd_page(lu: &LuConfig, page: u8) -> Option<Vec<u8>> {
    vpd_page_of_port(lu, page, None, None)
}

/// [`vpd_page`] as seen through a target port of the target port groups `alua`, whose
/// iSCSI target port name is `port_name` when known.
pub(crate) fn vpd_page_of_port(
    lu: &LuConfig,
    page: u8,
    alua: Option<&super::alua::Alua>,
    port_name: Option<&str>,
) -> Option<Vec<u8>> {
    if !supported_vpd_pages(lu).contains(&page) {
        return None;
    }
    let mut d = vec![PDT_DISK, page, 0, 0];
    match page {
        0x00 => d.extend_from_slice(supported_vpd_pages(lu)),
        0x80 => ascii_field(&mut d, &lu.serial, lu.serial.len()),
        0x83 => {
            device_identification(lu, &mut d);
            if let Some(name) = port_name {
                scsi_name_string(name, &mut d);
            }
            if let Some(alua) = alua {
                super::alua::port_designators(alua, &mut d);
            }
        }
        0x86 => {
            // Extended INQUIRY Data (SPC-4 7.8.7): no protection information (byte 4);
            // the task attributes the daemon honours (`daemon::task_order`): HEADSUP,
            // ORDSUP, SIMPSUP (byte 5); a volatile cache, which the caching mode page's
            // WCE turns on and off, and no non-volatile one: V_SUP (byte 6). The rest
            // (referrals, microcode, self-test, sense length) not reported.
            d.extend_from_slice(&[0x00, 0x07, 0x01]);
            d.resize(64, 0);
        }
        0x8F => super::copy::third_party_copy_vpd(lu, &mut d),
        0xB0 => block_limits(lu, &mut d),
        0xB1 => {
            // Block Device Characteristics (SBC-4 6.6.2): rotation rate, product type and
            // form factor not reported. WABEREQ (byte 7, bits 7-6) 01b where SANITIZE BLOCK
            // ERASE is offered: a read after it completes with GOOD (the blocks read as
            // zeroes, deallocated); WACEREQ 00b (no CRYPTOGRAPHIC ERASE).
            d.resize(64, 0);
            if super::sanitize::erases(lu) {
                d[7] = 0b01 << 6;
            }
        }
        0xB2 => {
            // Logical Block Provisioning (SBC-3 6.5.4).
            d.push(super::threshold::exponent(lu)); // THRESHOLD EXPONENT
            let lbprz = if lu.capabilities.discard_zeroes {
                0x04
            } else {
                0
            };
            d.push(0x80 | 0x40 | 0x20 | lbprz); // LBPU LBPWS LBPWS10 LBPRZ
            d.push(0x02); // PROVISIONING TYPE: thin provisioned
            d.push(0);
        }
        _ => unreachable!("page list and builders disagree"),
    }
    let len = (d.len() - 4) as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    Some(d)
}

/// Device Identification designators (SPC-4 7.8.6): NAA (binary, LU association) and
/// T10 vendor ID (ASCII: vendor identification + serial number).
fn device_identification(lu: &LuConfig, d: &mut Vec<u8>) {
    d.extend_from_slice(&[0x01, 0x03, 0x00, 16]);
    d.extend_from_slice(&lu.naa_id);
    // The designator length is one byte: keep vendor (8) + serial within 255.
    let serial_len = lu.serial.len().min(255 - 8);
    d.extend_from_slice(&[0x02, 0x01, 0x00, (8 + serial_len) as u8]);
    ascii_field(d, &lu.vendor, 8);
    ascii_field(d, &lu.serial, serial_len);
}

/// The target port's SCSI name string designator (SPC-4 7.8.6.11, table 470): PROTOCOL
/// IDENTIFIER 5h (iSCSI) with CODE SET 3h (UTF-8), PIV 1, ASSOCIATION 01b (target port),
/// DESIGNATOR TYPE 8h; the name null-terminated and null-padded to a multiple of four
/// bytes (the one-byte DESIGNATOR LENGTH: at most 252). An iSCSI name is at most 223
/// bytes (RFC 7143 4.2.7.1), so with ",t,0x" and four hex digits it always fits; a
/// longer one is cut to 251 bytes.
fn scsi_name_string(port_name: &str, d: &mut Vec<u8>) {
    let name = &port_name.as_bytes()[..port_name.len().min(251)];
    let len = (name.len() + 1).next_multiple_of(4);
    d.extend_from_slice(&[0x53, 0x80 | 0x10 | 0x08, 0x00, len as u8]);
    d.extend_from_slice(name);
    d.resize(d.len() + len - name.len(), 0);
}

/// Block Limits (SBC-3 6.5.3), page length 3Ch.
fn block_limits(lu: &LuConfig, d: &mut Vec<u8>) {
    let bs = lu.geometry.block_size.max(1);
    let max_blocks = MAX_TRANSFER_BYTES / bs;
    d.push(0x01); // WSNZ: WRITE SAME with 0 blocks is rejected
    d.push(MAX_COMPARE_AND_WRITE_BLOCKS); // MAXIMUM COMPARE AND WRITE LENGTH
    d.extend_from_slice(&0u16.to_be_bytes()); // OPTIMAL TRANSFER LENGTH GRANULARITY
    d.extend_from_slice(&max_blocks.to_be_bytes()); // MAXIMUM TRANSFER LENGTH
    d.extend_from_slice(&0u32.to_be_bytes()); // OPTIMAL TRANSFER LENGTH
    d.extend_from_slice(&0u32.to_be_bytes()); // MAXIMUM PREFETCH LENGTH
    let (unmap_lbas, unmap_descs, granularity) = if lu.capabilities.discard {
        (MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS, (4096 / bs).max(1))
    } else {
        (0, 0, 0)
    };
    d.extend_from_slice(&unmap_lbas.to_be_bytes()); // MAXIMUM UNMAP LBA COUNT
    d.extend_from_slice(&unmap_descs.to_be_bytes()); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
    d.extend_from_slice(&granularity.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
    d.extend_from_slice(&0u32.to_be_bytes()); // UGAVALID=0, UNMAP GRANULARITY ALIGNMENT
    d.extend_from_slice(&u64::from(max_write_same_blocks(bs)).to_be_bytes());
    d.resize(64, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        // SPC-4 table 142: EVPD byte 1 bit 0, PAGE CODE byte 2, ALLOCATION LENGTH 3..5.
        assert_eq!(
            Inquiry::parse(&[0x12, 0, 0, 0x01, 0x04, 0]),
            Ok(Inquiry {
                evpd: false,
                page: 0,
                alloc: 260
            })
        );
        assert_eq!(
            Inquiry::parse(&[0x12, 1, 0x83, 0, 0xFF, 0]),
            Ok(Inquiry {
                evpd: true,
                page: 0x83,
                alloc: 255
            })
        );
        assert_eq!(
            Inquiry::parse(&[0x12, 0, 0x80, 0, 0xFF, 0]),
            Err(Sense::invalid_field_in_cdb(2, Some(7)))
        );
        assert_eq!(
            Inquiry::parse(&[0x12, 0x02, 0, 0, 0xFF, 0]),
            Err(Sense::invalid_field_in_cdb(1, Some(1)))
        );
    }
}
