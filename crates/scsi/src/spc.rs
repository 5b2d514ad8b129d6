//! Primary commands (SPC-4): INQUIRY and its VPD pages, MODE SENSE, REPORT LUNS,
//! REQUEST SENSE, TEST UNIT READY, REPORT SUPPORTED OPERATION CODES, START STOP UNIT, and the
//! answers for an absent logical unit.

use crate::cdb::{opcode as op, service_action, Cdb};
use crate::sbc;
use crate::sense::{Asc, Sense, SenseKey};
use crate::{encode_lun, LuConfig, Response, ScsiTarget};
use bytes::Bytes;

/// Peripheral device type: direct access block device.
const PDT_DISK: u8 = 0x00;
/// Peripheral qualifier 011b, device type 1Fh: no logical unit here.
const PQ_ABSENT: u8 = 0x7F;

/// Version descriptors claimed in standard INQUIRY data (SPC-4 table 148): SAM-5, SPC-4 and
/// SBC-3, each "no version claimed".
const VERSION_DESCRIPTORS: [u16; 3] = [0x00A0, 0x0460, 0x04C0];

/// Runs a non-block command on a present logical unit.
pub(crate) fn execute(target: &ScsiTarget, lu: &LuConfig, cdb: &Cdb) -> Response {
    match *cdb {
        Cdb::TestUnitReady => Response::good(Bytes::new(), 0),
        Cdb::StartStopUnit { .. } => Response::good(Bytes::new(), 0),
        Cdb::RequestSense { desc, alloc } => request_sense(desc, alloc, None),
        Cdb::Inquiry {
            evpd: false, alloc, ..
        } => Response::data(standard_inquiry(Some(lu)), alloc.into()),
        Cdb::Inquiry {
            evpd: true,
            page,
            alloc,
        } => match vpd_page(lu, page) {
            Some(data) => Response::data(data, alloc.into()),
            None => Response::check_condition(Sense::invalid_field_in_cdb(2, None)),
        },
        Cdb::ModeSense {
            long,
            dbd,
            llbaa,
            pc,
            page,
            subpage,
            alloc,
        } => match mode_sense(lu, long, dbd, llbaa, pc, page, subpage) {
            Ok(data) => Response::data(data, alloc.into()),
            Err(sense) => Response::check_condition(sense),
        },
        Cdb::ReportLuns { select, alloc } => report_luns(target, select, alloc),
        Cdb::ReportSupportedOpcodes {
            rctd,
            options,
            opcode,
            sa,
            alloc,
        } => match report_supported_opcodes(lu, rctd, options, opcode, sa) {
            Ok(data) => Response::data(data, alloc),
            Err(sense) => Response::check_condition(sense),
        },
        // Block commands are dispatched before we get here.
        _ => Response::check_condition(Sense::INVALID_OPCODE),
    }
}

/// Whether the command with this operation code is answered on a LUN without a logical unit
/// (SPC-4 4.6.4): INQUIRY, REPORT LUNS, REQUEST SENSE.
pub(crate) fn works_without_lu(opcode: Option<u8>) -> bool {
    matches!(
        opcode,
        Some(op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
    )
}

/// The answer to a command addressed to a LUN with no logical unit (SPC-4 4.6.4 / 6.6.2).
pub(crate) fn absent_lun(target: &ScsiTarget, cdb: &Cdb) -> Response {
    match *cdb {
        Cdb::Inquiry {
            evpd: false, alloc, ..
        } => Response::data(standard_inquiry(None), alloc.into()),
        Cdb::Inquiry {
            evpd: true,
            page: 0x00,
            alloc,
        } => Response::data(vec![PQ_ABSENT, 0x00, 0x00, 0x01, 0x00], alloc.into()),
        Cdb::Inquiry { evpd: true, .. } => {
            Response::check_condition(Sense::invalid_field_in_cdb(2, None))
        }
        Cdb::ReportLuns { select, alloc } => report_luns(target, select, alloc),
        Cdb::RequestSense { desc, alloc } => {
            request_sense(desc, alloc, Some(Sense::LU_NOT_SUPPORTED))
        }
        _ => Response::check_condition(Sense::LU_NOT_SUPPORTED),
    }
}

/// REQUEST SENSE (SPC-4 6.39). Sense is reported with the failing command (autosense), so
/// the only pending sense is a unit attention or, for an absent LUN, LOGICAL UNIT NOT
/// SUPPORTED: `pending`, or NO SENSE.
pub(crate) fn request_sense(desc: bool, alloc: u8, pending: Option<Sense>) -> Response {
    let sense = pending.unwrap_or(Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL));
    let data = if desc {
        // Descriptor format (SPC-4 4.5.2), response code 72h, no descriptors.
        vec![0x72, sense.key as u8, sense.asc.0, sense.asc.1, 0, 0, 0, 0]
    } else {
        sense.to_fixed().to_vec()
    };
    Response::data(data, alloc.into())
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
    d.push(0x00); // SCCS ACC TPGS 3PC PROTECT
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
        &[0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]
    } else {
        &[0x00, 0x80, 0x83, 0xB0, 0xB1]
    }
}

/// A VPD page with its 4-byte header (2-byte PAGE LENGTH), or `None` when not supported.
pub(crate) fn vpd_page(lu: &LuConfig, page: u8) -> Option<Vec<u8>> {
    if !supported_vpd_pages(lu).contains(&page) {
        return None;
    }
    let mut d = vec![PDT_DISK, page, 0, 0];
    match page {
        0x00 => d.extend_from_slice(supported_vpd_pages(lu)),
        0x80 => ascii_field(&mut d, &lu.serial, lu.serial.len()),
        0x83 => device_identification(lu, &mut d),
        0xB0 => block_limits(lu, &mut d),
        0xB1 => {
            // Block Device Characteristics (SBC-3 6.5.2): rotation rate and form factor
            // not reported.
            d.resize(64, 0);
        }
        0xB2 => {
            // Logical Block Provisioning (SBC-3 6.5.4).
            d.push(0); // THRESHOLD EXPONENT
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

/// Block Limits (SBC-3 6.5.3), page length 3Ch.
fn block_limits(lu: &LuConfig, d: &mut Vec<u8>) {
    let bs = lu.geometry.block_size.max(1);
    let max_blocks = sbc::MAX_TRANSFER_BYTES / bs;
    d.push(0x01); // WSNZ: WRITE SAME with 0 blocks is rejected
    d.push(sbc::MAX_COMPARE_AND_WRITE_BLOCKS); // MAXIMUM COMPARE AND WRITE LENGTH
    d.extend_from_slice(&0u16.to_be_bytes()); // OPTIMAL TRANSFER LENGTH GRANULARITY
    d.extend_from_slice(&max_blocks.to_be_bytes()); // MAXIMUM TRANSFER LENGTH
    d.extend_from_slice(&0u32.to_be_bytes()); // OPTIMAL TRANSFER LENGTH
    d.extend_from_slice(&0u32.to_be_bytes()); // MAXIMUM PREFETCH LENGTH
    let (unmap_lbas, unmap_descs, granularity) = if lu.capabilities.discard {
        (
            sbc::MAX_UNMAP_BLOCKS,
            sbc::MAX_UNMAP_DESCRIPTORS,
            (4096 / bs).max(1),
        )
    } else {
        (0, 0, 0)
    };
    d.extend_from_slice(&unmap_lbas.to_be_bytes()); // MAXIMUM UNMAP LBA COUNT
    d.extend_from_slice(&unmap_descs.to_be_bytes()); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
    d.extend_from_slice(&granularity.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
    d.extend_from_slice(&0u32.to_be_bytes()); // UGAVALID=0, UNMAP GRANULARITY ALIGNMENT
    d.extend_from_slice(&u64::from(sbc::MAX_WRITE_SAME_BLOCKS).to_be_bytes());
    d.resize(64, 0);
}

/// MODE SENSE page control values (SPC-4 table 96).
const PC_CURRENT: u8 = 0;
const PC_CHANGEABLE: u8 = 1;
const PC_DEFAULT: u8 = 2;

/// The caching mode page (SBC-3 6.4.5), 20 bytes.
fn caching_page(lu: &LuConfig, pc: u8) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x08;
    p[1] = 0x12;
    if pc != PC_CHANGEABLE && lu.write_cache {
        p[2] = 0x04; // WCE
    }
    p
}

/// The control mode page (SPC-4 7.5.8), 12 bytes: TST=0, QUEUE ALGORITHM MODIFIER=1
/// (unrestricted reordering), D_SENSE=0 (fixed format sense), SWP=0.
fn control_page(pc: u8) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = 0x0A;
    p[1] = 0x0A;
    if pc != PC_CHANGEABLE {
        p[3] = 0x10;
    }
    p
}

/// MODE SENSE(6)/(10) parameter data (SPC-4 7.5.4/7.5.5).
fn mode_sense(
    lu: &LuConfig,
    long: bool,
    dbd: bool,
    llbaa: bool,
    pc: u8,
    page: u8,
    subpage: u8,
) -> Result<Vec<u8>, Sense> {
    if pc == 3 {
        return Err(Sense::SAVING_NOT_SUPPORTED);
    }
    debug_assert!(pc == PC_CURRENT || pc == PC_CHANGEABLE || pc == PC_DEFAULT);
    let mut pages = Vec::new();
    match (page, subpage) {
        (0x08, 0x00) => pages.extend(caching_page(lu, pc)),
        (0x0A, 0x00) => pages.extend(control_page(pc)),
        (0x3F, 0x00 | 0xFF) => {
            pages.extend(caching_page(lu, pc));
            pages.extend(control_page(pc));
        }
        (0x08 | 0x0A | 0x3F, _) => return Err(Sense::invalid_field_in_cdb(3, None)),
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(5))),
    }
    let g = lu.geometry;
    let block_descriptor: Vec<u8> = match (dbd, long && llbaa) {
        (true, _) => Vec::new(),
        (false, false) => {
            // Short LBA mode parameter block descriptor (SBC-3 6.4.2.2).
            let blocks = u32::try_from(g.num_blocks).unwrap_or(u32::MAX);
            let mut b = blocks.to_be_bytes().to_vec();
            b.push(0);
            b.extend_from_slice(&g.block_size.to_be_bytes()[1..]);
            b
        }
        (false, true) => {
            // Long LBA mode parameter block descriptor (SBC-3 6.4.2.3).
            let mut b = g.num_blocks.to_be_bytes().to_vec();
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&g.block_size.to_be_bytes());
            b
        }
    };
    // DEVICE-SPECIFIC PARAMETER (SBC-3 6.4.1): WP, DPOFUA.
    let dsp = if lu.read_only { 0x80 } else { 0 } | 0x10;
    let mut d = Vec::with_capacity(8 + block_descriptor.len() + pages.len());
    if long {
        let total = 8 + block_descriptor.len() + pages.len();
        d.extend_from_slice(&((total - 2) as u16).to_be_bytes());
        d.push(0); // MEDIUM TYPE
        d.push(dsp);
        d.push(if block_descriptor.len() == 16 {
            0x01
        } else {
            0
        }); // LONGLBA
        d.push(0);
        d.extend_from_slice(&(block_descriptor.len() as u16).to_be_bytes());
    } else {
        let total = 4 + block_descriptor.len() + pages.len();
        d.push((total - 1).min(255) as u8);
        d.push(0);
        d.push(dsp);
        d.push(block_descriptor.len() as u8);
    }
    d.extend_from_slice(&block_descriptor);
    d.extend_from_slice(&pages);
    Ok(d)
}

/// REPORT LUNS (SPC-4 6.33): every configured LUN, peripheral or flat space addressed.
fn report_luns(target: &ScsiTarget, select: u8, alloc: u32) -> Response {
    if select > 2 {
        return Response::check_condition(Sense::invalid_field_in_cdb(2, None));
    }
    if alloc < 16 {
        return Response::check_condition(Sense::invalid_field_in_cdb(6, None));
    }
    let mut d = vec![0u8; 8];
    if select != 1 {
        for lun in target.luns() {
            d.extend_from_slice(&encode_lun(lun).to_be_bytes());
        }
    }
    let list_len = (d.len() - 8) as u32;
    d[0..4].copy_from_slice(&list_len.to_be_bytes());
    Response::data(d, alloc)
}

/// One command as REPORT SUPPORTED OPERATION CODES describes it.
struct CommandInfo {
    opcode: u8,
    /// The service action, for commands that have one.
    sa: Option<u16>,
    /// CDB USAGE DATA (SPC-4 6.35.3); its length is the CDB length.
    usage: &'static [u8],
    /// Only offered when the LU supports discard.
    needs_discard: bool,
}

const fn cmd(opcode: u8, usage: &'static [u8]) -> CommandInfo {
    CommandInfo {
        opcode,
        sa: None,
        usage,
        needs_discard: false,
    }
}

const F: u8 = 0xFF;

/// Every command this target implements, by operation code.
const COMMANDS: &[CommandInfo] = &[
    cmd(op::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0]),
    cmd(op::REQUEST_SENSE, &[0x03, 0x01, 0, 0, F, 0]),
    cmd(op::READ_6, &[0x08, 0x1F, F, F, F, 0]),
    cmd(op::WRITE_6, &[0x0A, 0x1F, F, F, F, 0]),
    cmd(op::INQUIRY, &[0x12, 0x01, F, F, F, 0]),
    cmd(op::MODE_SENSE_6, &[0x1A, 0x08, F, F, F, 0]),
    cmd(op::START_STOP_UNIT, &[0x1B, 0x01, 0, 0, 0x03, 0]),
    cmd(op::READ_CAPACITY_10, &[0x25, 0, F, F, F, F, 0, 0, 0x01, 0]),
    cmd(op::READ_10, &[0x28, 0x1A, F, F, F, F, 0, F, F, 0]),
    cmd(op::WRITE_10, &[0x2A, 0x1A, F, F, F, F, 0, F, F, 0]),
    cmd(
        op::WRITE_AND_VERIFY_10,
        &[0x2E, 0x16, F, F, F, F, 0, F, F, 0],
    ),
    cmd(op::VERIFY_10, &[0x2F, 0x16, F, F, F, F, 0, F, F, 0]),
    cmd(op::PRE_FETCH_10, &[0x34, 0x02, F, F, F, F, 0, F, F, 0]),
    cmd(
        op::SYNCHRONIZE_CACHE_10,
        &[0x35, 0x02, F, F, F, F, 0, F, F, 0],
    ),
    cmd(op::WRITE_SAME_10, &[0x41, 0x08, F, F, F, F, 0, F, F, 0]),
    CommandInfo {
        opcode: op::UNMAP,
        sa: None,
        usage: &[0x42, 0, 0, 0, 0, 0, 0, F, F, 0],
        needs_discard: true,
    },
    cmd(op::MODE_SENSE_10, &[0x5A, 0x18, F, F, 0, 0, 0, F, F, 0]),
    cmd(
        op::COMPARE_AND_WRITE,
        &[0x89, 0x1A, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0, 0],
    ),
    cmd(
        op::READ_16,
        &[0x88, 0x1A, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        op::WRITE_16,
        &[0x8A, 0x1A, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        op::WRITE_AND_VERIFY_16,
        &[0x8E, 0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        op::VERIFY_16,
        &[0x8F, 0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        op::PRE_FETCH_16,
        &[0x90, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        op::SYNCHRONIZE_CACHE_16,
        &[0x91, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(
        op::WRITE_SAME_16,
        &[0x93, 0x09, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    CommandInfo {
        opcode: op::SERVICE_ACTION_IN_16,
        sa: Some(service_action::READ_CAPACITY_16),
        usage: &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
        needs_discard: false,
    },
    CommandInfo {
        opcode: op::SERVICE_ACTION_IN_16,
        sa: Some(service_action::GET_LBA_STATUS),
        usage: &[0x9E, 0x12, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
        needs_discard: false,
    },
    cmd(op::REPORT_LUNS, &[0xA0, 0, F, 0, 0, 0, F, F, F, F, 0, 0]),
    CommandInfo {
        opcode: op::MAINTENANCE_IN,
        sa: Some(service_action::REPORT_SUPPORTED_OPCODES),
        usage: &[0xA3, 0x0C, 0x87, F, F, F, F, F, F, F, 0, 0],
        needs_discard: false,
    },
    cmd(op::READ_12, &[0xA8, 0x1A, F, F, F, F, F, F, F, F, 0, 0]),
    cmd(op::WRITE_12, &[0xAA, 0x1A, F, F, F, F, F, F, F, F, 0, 0]),
    cmd(
        op::WRITE_AND_VERIFY_12,
        &[0xAE, 0x16, F, F, F, F, F, F, F, F, 0, 0],
    ),
    cmd(op::VERIFY_12, &[0xAF, 0x16, F, F, F, F, F, F, F, F, 0, 0]),
    // Reservations (crate::reservations): RESERVE/RELEASE(6/10) without third-party or
    // extents, PERSISTENT RESERVE IN/OUT by service action.
    cmd(0x16, &[0x16, 0, 0, 0, 0, 0]),
    cmd(0x17, &[0x17, 0, 0, 0, 0, 0]),
    cmd(0x56, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    cmd(0x57, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    pr_in(0x00),
    pr_in(0x01),
    pr_in(0x02),
    pr_in(0x03),
    pr_out(0x00),
    pr_out(0x01),
    pr_out(0x02),
    pr_out(0x03),
    pr_out(0x04),
    pr_out(0x05),
    pr_out(0x06),
    pr_out(0x07),
];

/// PERSISTENT RESERVE IN with service action `sa` (SPC-4 6.15.1).
const fn pr_in(sa: u8) -> CommandInfo {
    CommandInfo {
        opcode: 0x5E,
        sa: Some(sa as u16),
        usage: match sa {
            0 => &[0x5E, 0x00, 0, 0, 0, 0, 0, F, F, 0],
            1 => &[0x5E, 0x01, 0, 0, 0, 0, 0, F, F, 0],
            2 => &[0x5E, 0x02, 0, 0, 0, 0, 0, F, F, 0],
            _ => &[0x5E, 0x03, 0, 0, 0, 0, 0, F, F, 0],
        },
        needs_discard: false,
    }
}

/// PERSISTENT RESERVE OUT with service action `sa` (SPC-4 6.16.1).
const fn pr_out(sa: u8) -> CommandInfo {
    CommandInfo {
        opcode: 0x5F,
        sa: Some(sa as u16),
        usage: match sa {
            0 => &[0x5F, 0x00, F, 0, 0, F, F, F, F, 0],
            1 => &[0x5F, 0x01, F, 0, 0, F, F, F, F, 0],
            2 => &[0x5F, 0x02, F, 0, 0, F, F, F, F, 0],
            3 => &[0x5F, 0x03, F, 0, 0, F, F, F, F, 0],
            4 => &[0x5F, 0x04, F, 0, 0, F, F, F, F, 0],
            5 => &[0x5F, 0x05, F, 0, 0, F, F, F, F, 0],
            6 => &[0x5F, 0x06, F, 0, 0, F, F, F, F, 0],
            _ => &[0x5F, 0x07, F, 0, 0, F, F, F, F, 0],
        },
        needs_discard: false,
    }
}

/// The command timeouts descriptor (SPC-4 6.35.4): no timeouts reported.
const TIMEOUTS_DESCRIPTOR: [u8; 12] = [0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
fn report_supported_opcodes(
    lu: &LuConfig,
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
) -> Result<Vec<u8>, Sense> {
    let offered = |c: &&CommandInfo| !c.needs_discard || lu.capabilities.discard;
    let ctdp = if rctd { 0x02 } else { 0 };
    match options {
        0 => {
            let mut d = vec![0u8; 4];
            for c in COMMANDS.iter().filter(offered) {
                d.push(c.opcode);
                d.push(0);
                d.extend_from_slice(&c.sa.unwrap_or(0).to_be_bytes());
                d.push(0);
                d.push(ctdp | u8::from(c.sa.is_some()));
                d.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
                if rctd {
                    d.extend_from_slice(&TIMEOUTS_DESCRIPTOR);
                }
            }
            let len = (d.len() - 4) as u32;
            d[0..4].copy_from_slice(&len.to_be_bytes());
            Ok(d)
        }
        1..=3 => {
            let mut same_op = COMMANDS
                .iter()
                .filter(offered)
                .filter(|c| c.opcode == opcode);
            let has_sa = COMMANDS
                .iter()
                .any(|c| c.opcode == opcode && c.sa.is_some());
            let found = match options {
                1 if has_sa => return Err(Sense::invalid_field_in_cdb(2, Some(2))),
                1 => same_op.next(),
                2 if !has_sa && COMMANDS.iter().any(|c| c.opcode == opcode) => {
                    return Err(Sense::invalid_field_in_cdb(2, Some(2)))
                }
                _ => same_op.find(|c| c.sa.map_or(options == 3 || sa == 0, |s| s == sa)),
            };
            let mut d = vec![0u8; 4];
            if let Some(c) = found {
                d[1] = 0x03; // SUPPORT: supported, as the standard defines it
                d[2..4].copy_from_slice(&(c.usage.len() as u16).to_be_bytes());
                d.extend_from_slice(c.usage);
            } else {
                d[1] = 0x01; // SUPPORT: not supported
            }
            if rctd {
                d[1] |= 0x80;
                d.extend_from_slice(&TIMEOUTS_DESCRIPTOR);
            }
            Ok(d)
        }
        _ => Err(Sense::invalid_field_in_cdb(2, Some(2))),
    }
}
