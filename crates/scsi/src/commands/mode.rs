//! Mode parameters (SPC-4 6.11, 6.12, 7.5): MODE SENSE(6/10) and MODE SELECT(6/10) with
//! the caching and control pages and, on a thin provisioned LU, the Logical Block
//! Provisioning page (1Ch/02h, its soft threshold: `super::threshold`).

use super::exec::{done, fail};
use super::threshold::{Threshold, ThresholdCell};
use super::{CommandDef, Ctx, ScsiCommand};
use crate::cdb::{be16, be32, opcode as op, reserved};
use crate::nexus::{UaScope, UnitAttention};
use crate::sense::Sense;
use crate::{Lu, LuConfig, Response, Start};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};

const F: u8 = 0xFF;

pub(super) const COMMANDS: &[CommandDef] = &[
    CommandDef::new::<ModeSelect>(op::MODE_SELECT_6, &[0x15, 0x10, 0, 0, F, 0]),
    CommandDef::new::<ModeSelect>(op::MODE_SELECT_10, &[0x55, 0x10, 0, 0, 0, 0, 0, F, F, 0]),
    CommandDef::new::<ModeSense>(op::MODE_SENSE_6, &[0x1A, 0x08, F, F, F, 0]),
    CommandDef::new::<ModeSense>(op::MODE_SENSE_10, &[0x5A, 0x18, F, F, 0, 0, 0, F, F, 0]),
];

/// MODE SENSE(6) (`long == false`) or (10).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ModeSense {
    /// MODE SENSE(10).
    pub long: bool,
    /// DBD: no block descriptors.
    pub dbd: bool,
    /// LLBAA: long LBA block descriptor accepted (10 only).
    pub llbaa: bool,
    /// PC: page control (current, changeable, default, saved).
    pub pc: u8,
    /// PAGE CODE.
    pub page: u8,
    /// SUBPAGE CODE.
    pub subpage: u8,
    /// ALLOCATION LENGTH.
    pub alloc: u16,
}

impl ScsiCommand for ModeSense {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let long = cdb[0] == op::MODE_SENSE_10;
        reserved(cdb, 1, if long { 0xE7 } else { 0xF7 })?;
        Ok(ModeSense {
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
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        let m = &self;
        done(
            match mode_sense(ctx.lu, m.long, m.dbd, m.llbaa, m.pc, m.page, m.subpage) {
                Ok(data) => Response::data(data, m.alloc.into()),
                Err(sense) => Response::check_condition(sense),
            },
        )
    }
}

/// MODE SELECT(6) (`long == false`) or (10) (SPC-4 6.9, 6.10).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ModeSelect {
    /// MODE SELECT(10).
    pub long: bool,
    /// SP: save the saveable pages once changed.
    pub save: bool,
    /// PARAMETER LIST LENGTH.
    pub param_len: u16,
}

impl ScsiCommand for ModeSelect {
    fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        // Byte 1: reserved(7:5) PF(4) reserved(3:1) SP(0). Pages are in the format SPC-4
        // defines (PF 1); SP saves the saveable pages (refused when the LU saves none).
        reserved(cdb, 1, 0xEE)?;
        if cdb[1] & 0x10 == 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        let long = cdb[0] == op::MODE_SELECT_10;
        Ok(ModeSelect {
            long,
            save: cdb[1] & 0x01 != 0,
            param_len: if long {
                be16(cdb, 7)
            } else {
                u16::from(cdb[4])
            },
        })
    }

    fn execute(self, ctx: Ctx<'_>) -> Start {
        if self.save && !ctx.lu.mode.saveable() {
            // SPC-4 6.9: SP set where no page can be saved.
            return fail(Sense::invalid_field_in_cdb(1, Some(0)));
        }
        let len = usize::from(self.param_len);
        if len == 0 {
            return self.saved(&ctx);
        }
        if ctx.data_out.len() < len {
            return fail(Sense::PARAMETER_LIST_LENGTH);
        }
        let changes = match parse_parameter_list(ctx.lu, self.long, &ctx.data_out.to_bytes()[..len])
        {
            Ok(changes) => changes,
            Err(sense) => return fail(sense),
        };
        let m = &ctx.lu.mode;
        let mut changed = false;
        for change in changes {
            let (flag, on) = match change {
                Change::Wce(on) => (&m.wce, on),
                Change::Swp(on) => (&m.swp, on),
                Change::DSense(on) => (&m.d_sense, on),
                Change::Threshold(t) => {
                    changed |= m.threshold.set(t);
                    continue;
                }
            };
            changed |= flag.swap(on, Ordering::Relaxed) != on;
        }
        if changed {
            // SPC-4 7.5.2: the other I_T nexuses learn of it with MODE PARAMETERS CHANGED.
            ctx.target.nexuses.raise(
                ctx.lun,
                UnitAttention::ModeParametersChanged,
                UaScope::AllBut(ctx.nexus),
            );
        }
        self.saved(&ctx)
    }
}

impl ModeSelect {
    /// GOOD, once the saveable pages' current values are saved when SP asked for it
    /// (SPC-4 6.9: every saveable page, those sent and the others).
    fn saved(&self, ctx: &Ctx<'_>) -> Start {
        let transfer = u32::from(self.param_len);
        if !self.save {
            return done(Response::good(Bytes::new(), transfer));
        }
        ctx.lu.mode.save_current();
        Start::SaveModePages {
            lun: u64::from(ctx.lun),
            pending: crate::Pending::after_save_with(ctx.lun, transfer),
        }
    }
}

/// One changeable parameter set by a MODE SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Wce(bool),
    Swp(bool),
    DSense(bool),
    /// The Logical Block Provisioning page's threshold descriptor (ENABLED, COUNT).
    Threshold(Threshold),
}

/// Checks a MODE SELECT parameter list (SPC-4 7.5.5: header, block descriptors, pages)
/// completely before anything changes, and returns what it sets. A list cut short is
/// PARAMETER LIST LENGTH ERROR; a bad header, block descriptor, unknown page, wrong page
/// length or a change to a parameter that is not changeable is INVALID FIELD IN PARAMETER
/// LIST pointing at the byte.
fn parse_parameter_list(lu: &Lu, long: bool, d: &[u8]) -> Result<Vec<Change>, Sense> {
    let bad = |at: usize| Sense::invalid_field_in_parameter_list(at as u16);
    let header = if long { 8 } else { 4 };
    if d.len() < header {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    // MODE DATA LENGTH is reserved in MODE SELECT; MEDIUM TYPE is 0 for SBC; the WP and
    // DPOFUA bits of the DEVICE-SPECIFIC PARAMETER are ignored (SBC-3 6.4.1).
    let (medium_at, bdl_at) = if long { (2, 6) } else { (1, 3) };
    if d[medium_at] != 0 {
        return Err(bad(medium_at));
    }
    let longlba = long && d[4] & 0x01 != 0;
    let bdl = if long {
        usize::from(be16(d, 6))
    } else {
        usize::from(d[3])
    };
    let descriptor_len = if longlba { 16 } else { 8 };
    if bdl != 0 && bdl != descriptor_len {
        return Err(bad(bdl_at));
    }
    if d.len() < header + bdl {
        return Err(Sense::PARAMETER_LIST_LENGTH);
    }
    if bdl != 0 {
        // One block descriptor (SBC-3 6.4.2): NUMBER OF LOGICAL BLOCKS 0 (no change) or the
        // capacity, and the logical block size; nothing can be reformatted.
        let g = lu.geometry();
        let b = &d[header..header + bdl];
        let (blocks, size, size_at) = if longlba {
            (
                u64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
                be32(b, 12),
                12,
            )
        } else {
            (u64::from(be32(b, 0)), be32(b, 4) & 0x00FF_FFFF, 5)
        };
        let capacity = if longlba {
            g.num_blocks
        } else {
            g.num_blocks.min(u64::from(u32::MAX))
        };
        if blocks != 0 && blocks != capacity {
            return Err(bad(header));
        }
        if size != g.block_size {
            return Err(bad(header + size_at));
        }
    }
    let mut changes = Vec::new();
    let mut at = header + bdl;
    while at < d.len() {
        if d.len() < at + 2 {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        }
        // PS is reserved in MODE SELECT and not checked: hosts send a page back as MODE
        // SENSE gave it, PS included (libiscsi does). SPF: the page has a subpage and a
        // 4-byte header (SPC-4 7.5).
        let subpage_format = d[at] & 0x40 != 0;
        let which = match (d[at] & 0x3F, subpage_format) {
            (0x08, false) => CACHING,
            (0x0A, false) => CONTROL,
            (0x1C, true) if thin(lu) => LOGICAL_BLOCK_PROVISIONING,
            _ => return Err(bad(at)),
        };
        let header_len = if subpage_format { 4 } else { 2 };
        if d.len() < at + header_len {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        }
        let len = if subpage_format {
            if d[at + 1] != LBP_SUBPAGE {
                return Err(bad(at + 1));
            }
            usize::from(be16(d, at + 2))
        } else {
            usize::from(d[at + 1])
        };
        if len != usize::from(which.1) {
            return Err(bad(at + header_len - 1));
        }
        let end = at + header_len + len;
        if d.len() < end {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        }
        let new = &d[at..end];
        let current = mode_page(lu, which, PC_CURRENT);
        let changeable = mode_page(lu, which, PC_CHANGEABLE);
        for i in header_len..new.len() {
            if (new[i] ^ current[i]) & !changeable[i] != 0 {
                return Err(bad(at + i));
            }
        }
        let bit = |(byte, mask): (usize, u8)| new[byte] & mask != 0;
        if which == CACHING {
            changes.push(Change::Wce(bit(WCE)));
        } else if which == CONTROL {
            changes.push(Change::Swp(bit(SWP)));
            changes.push(Change::DSense(bit(D_SENSE)));
        } else {
            changes.push(Change::Threshold(Threshold::new(
                bit(THRESHOLD_ENABLED),
                be32(new, THRESHOLD_COUNT),
            )));
        }
        at = end;
    }
    Ok(changes)
}

/// MODE SENSE page control values (SPC-4 table 96).
const PC_CURRENT: u8 = 0;
const PC_CHANGEABLE: u8 = 1;
const PC_DEFAULT: u8 = 2;
const PC_SAVED: u8 = 3;

/// The mode parameters a MODE SELECT can change, shared by every nexus of the logical unit.
/// The caching and control pages' values can be saved once the driver has said where
/// ([`ModeState::load`]: the LU's store keeps them as metadata object
/// [`crate::MODE_PAGES_METADATA`]); until then, and for the other pages, a restart brings
/// back the defaults.
#[derive(Debug)]
pub(crate) struct ModeState {
    /// Caching page WCE: writes may complete before they are durable.
    wce: AtomicBool,
    /// Control page SWP: the medium is write protected.
    swp: AtomicBool,
    /// Control page D_SENSE: sense data in descriptor format.
    d_sense: AtomicBool,
    /// Logical Block Provisioning page: the soft threshold (a thin provisioned LU's).
    pub(crate) threshold: ThresholdCell,
    /// The saved values, once the LU can save them; and the saved form last loaded from
    /// or written to the store (another gateway's save is one that differs from it).
    saved: std::sync::Mutex<Option<(Saved, Vec<u8>)>>,
}

/// The values of the saveable pages: caching WCE, control SWP and D_SENSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Saved {
    wce: bool,
    swp: bool,
    d_sense: bool,
}

impl Saved {
    /// The saved form (`<lun>.mode`): a first line `glfs-iscsi-mode 1`, then `wce`,
    /// `swp` and `d_sense`, each with 0 or 1.
    fn encode(&self) -> Vec<u8> {
        format!(
            "glfs-iscsi-mode 1\nwce {}\nswp {}\nd_sense {}\n",
            u8::from(self.wce),
            u8::from(self.swp),
            u8::from(self.d_sense)
        )
        .into_bytes()
    }

    /// Reads the saved form back; `None` when it is not one (each value exactly once).
    fn decode(bytes: &[u8]) -> Option<Saved> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "glfs-iscsi-mode 1" {
            return None;
        }
        let (mut wce, mut swp, mut d_sense) = (None, None, None);
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            let value = match value {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            let slot = match key {
                "wce" => &mut wce,
                "swp" => &mut swp,
                "d_sense" => &mut d_sense,
                _ => return None,
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        Some(Saved {
            wce: wce?,
            swp: swp?,
            d_sense: d_sense?,
        })
    }
}

impl ModeState {
    /// The default values: WCE from the configuration, SWP and D_SENSE off; nothing can
    /// be saved yet.
    pub fn new(config: &LuConfig) -> Self {
        ModeState {
            wce: AtomicBool::new(config.write_cache),
            swp: AtomicBool::new(false),
            d_sense: AtomicBool::new(false),
            threshold: ThresholdCell::new(config),
            saved: std::sync::Mutex::new(None),
        }
    }

    fn lock_saved(&self) -> std::sync::MutexGuard<'_, Option<(Saved, Vec<u8>)>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Saved {
        Saved {
            wce: self.write_cache(),
            swp: self.software_write_protect(),
            d_sense: self.descriptor_sense(),
        }
    }

    /// Sets the current values to `s`; whether any changed.
    fn set_current(&self, s: Saved) -> bool {
        let mut changed = false;
        for (flag, on) in [
            (&self.wce, s.wce),
            (&self.swp, s.swp),
            (&self.d_sense, s.d_sense),
        ] {
            changed |= flag.swap(on, Ordering::Relaxed) != on;
        }
        changed
    }

    /// Whether the caching and control pages can be saved (PS).
    pub(crate) fn saveable(&self) -> bool {
        self.lock_saved().is_some()
    }

    /// The values MODE SENSE reports as saved: those last saved, else the defaults.
    fn saved_values(&self) -> Option<Saved> {
        self.lock_saved().as_ref().map(|(s, _)| *s)
    }

    /// Makes the pages saveable, with what the store keeps (`None`: nothing saved yet,
    /// the saved values are the current ones), which becomes current too. Returns whether
    /// a current value changed; `Err` when `kept` is not a saved form.
    pub(crate) fn load(&self, kept: Option<&[u8]>) -> Result<bool, crate::BadMetadata> {
        let saved = match kept {
            Some(bytes) => Saved::decode(bytes).ok_or(crate::BadMetadata)?,
            None => self.current(),
        };
        let form = kept.map(<[u8]>::to_vec).unwrap_or_default();
        *self.lock_saved() = Some((saved, form));
        Ok(kept.is_some() && self.set_current(saved))
    }

    /// What another gateway may have saved since (`kept`, read from the store): when it
    /// differs from the form last loaded or written here, it becomes the saved and current
    /// values. Returns whether a current value changed. A save of this gateway's that is
    /// not written yet leaves the store's form as last known: no change.
    pub(crate) fn refresh(&self, kept: &[u8]) -> Result<bool, crate::BadMetadata> {
        let mut slot = self.lock_saved();
        let Some((saved, form)) = slot.as_mut() else {
            return Ok(false);
        };
        if form.as_slice() == kept {
            return Ok(false);
        }
        let new = Saved::decode(kept).ok_or(crate::BadMetadata)?;
        *saved = new;
        *form = kept.to_vec();
        drop(slot);
        Ok(self.set_current(new))
    }

    /// Saves the current values (MODE SELECT with SP); the store's form is known once
    /// the driver has written them ([`ModeState::written`]).
    fn save_current(&self) {
        let now = self.current();
        if let Some((saved, _)) = self.lock_saved().as_mut() {
            *saved = now;
        }
    }

    /// The driver wrote `form` to the store.
    pub(crate) fn written(&self, form: &[u8]) {
        if let Some((_, kept)) = self.lock_saved().as_mut() {
            *kept = form.to_vec();
        }
    }

    /// The saved form to write to the store, once the pages are saveable.
    pub(crate) fn saved_form(&self) -> Option<Vec<u8>> {
        self.lock_saved().as_ref().map(|(s, _)| s.encode())
    }

    /// WCE: when clear, every write is durable before its status (as with FUA).
    pub fn write_cache(&self) -> bool {
        self.wce.load(Ordering::Relaxed)
    }

    /// SWP: software write protect.
    pub fn software_write_protect(&self) -> bool {
        self.swp.load(Ordering::Relaxed)
    }

    /// D_SENSE: sense data in descriptor format.
    pub fn descriptor_sense(&self) -> bool {
        self.d_sense.load(Ordering::Relaxed)
    }
}

/// Whether the LU is thin provisioned (its store deallocates: LBPME): only then has it the
/// Logical Block Provisioning mode page.
fn thin(lu: &Lu) -> bool {
    lu.config.capabilities.discard
}

/// Logical Block Provisioning mode page (SBC-3, subpage format): page code and
/// PAGE LENGTH (12 bytes, then one 8-byte threshold descriptor), and its subpage code.
const LOGICAL_BLOCK_PROVISIONING: (u8, u8) = (0x1C, 20);
const LBP_SUBPAGE: u8 = 0x02;
/// The threshold descriptor (SBC-3) starts at byte 16: byte 0 ENABLED (bit 7),
/// THRESHOLD TYPE (5:3, 000b soft), THRESHOLD ARMING (2:0, 000b armed decreasing); byte 1
/// THRESHOLD RESOURCE; bytes 4..8 THRESHOLD COUNT.
const THRESHOLD_ENABLED: (usize, u8) = (16, 0x80);
const THRESHOLD_RESOURCE: usize = 17;
const THRESHOLD_COUNT: usize = 20;
/// THRESHOLD RESOURCE 01h: available LBA mapping resources (the log page's 0001h).
const AVAILABLE_RESOURCES: u8 = 0x01;

/// Caching mode page code (SBC-3 6.4.5) and its PAGE LENGTH.
const CACHING: (u8, u8) = (0x08, 0x12);
/// Control mode page code (SPC-4 7.5.8) and its PAGE LENGTH.
const CONTROL: (u8, u8) = (0x0A, 0x0A);
/// Caching page byte 2: WCE.
const WCE: (usize, u8) = (2, 0x04);
/// Control page byte 2: D_SENSE, and TST 001b (bits 7 to 5: one task set per I_T nexus);
/// byte 3: QUEUE ALGORITHM MODIFIER 1 (unrestricted reordering); byte 4: SWP.
///
/// TST 001b is what the task management functions do: CLEAR TASK SET and ABORT TASK SET
/// end the tasks of the nexus that asks (its session) on the LU, never another nexus's
/// (SAM-5 7.4 and 7.6 with separate task sets), on one gateway as across several, where
/// a task set shared by every nexus would have to reach other gateways' sessions. TAS
/// stays 0: tasks another nexus's function aborts (LOGICAL UNIT RESET, PREEMPT AND ABORT)
/// end without status.
const D_SENSE: (usize, u8) = (2, 0x04);
const TST_PER_NEXUS: (usize, u8) = (2, 0x20);
const QAM_UNRESTRICTED: (usize, u8) = (3, 0x10);
const SWP: (usize, u8) = (4, 0x08);

/// One mode page as MODE SENSE returns it for page control `pc`: the caching page (20 bytes)
/// or the control page (12 bytes; TST 001b and QUEUE ALGORITHM MODIFIER 1, both fixed).
fn mode_page(lu: &Lu, (code, len): (u8, u8), pc: u8) -> Vec<u8> {
    if code == LOGICAL_BLOCK_PROVISIONING.0 {
        return lbp_page(lu, pc);
    }
    let mut p = vec![0u8; 2 + usize::from(len)];
    let m = &lu.mode;
    // PS (SPC-4 7.5.7): the page can be saved.
    p[0] = code | if m.saveable() { 0x80 } else { 0 };
    p[1] = len;
    let mut set = |(byte, bit): (usize, u8), on: bool| {
        if on {
            p[byte] |= bit;
        }
    };
    // The values a page control shows: None for the changeable mask.
    let values = match pc {
        PC_CURRENT => Some(m.current()),
        PC_SAVED => m.saved_values(),
        PC_DEFAULT => None,
        _ => {
            // Changeable: WCE, D_SENSE and SWP.
            set(WCE, code == 0x08);
            set(D_SENSE, code == 0x0A);
            set(SWP, code == 0x0A);
            return p;
        }
    };
    let v = values.unwrap_or(Saved {
        wce: lu.config.write_cache,
        swp: false,
        d_sense: false,
    });
    if code == 0x08 {
        set(WCE, v.wce);
    } else {
        set(D_SENSE, v.d_sense);
        set(TST_PER_NEXUS, true);
        set(QAM_UNRESTRICTED, true);
        set(SWP, v.swp);
    }
    p
}

/// The Logical Block Provisioning mode page for page control `pc` (24 bytes): SITUA 0
/// (fixed), one soft threshold, armed decreasing, on the available LBA mapping resources.
/// ENABLED and THRESHOLD COUNT are changeable; the default is the configuration's.
fn lbp_page(lu: &Lu, pc: u8) -> Vec<u8> {
    let (code, len) = LOGICAL_BLOCK_PROVISIONING;
    let mut p = vec![0u8; 4 + usize::from(len)];
    p[0] = 0x40 | code; // SPF
    p[1] = LBP_SUBPAGE;
    p[2..4].copy_from_slice(&u16::from(len).to_be_bytes());
    // Not saveable (PS 0): its saved values are the defaults.
    let threshold = match pc {
        PC_CURRENT => Some(lu.mode.threshold.get()),
        PC_DEFAULT | PC_SAVED => Some(Threshold::of(&lu.config, lu.geometry())),
        _ => None,
    };
    match threshold {
        Some(t) => {
            if t.enabled {
                p[THRESHOLD_ENABLED.0] |= THRESHOLD_ENABLED.1;
            }
            p[THRESHOLD_RESOURCE] = AVAILABLE_RESOURCES;
            p[THRESHOLD_COUNT..THRESHOLD_COUNT + 4].copy_from_slice(&t.count.to_be_bytes());
        }
        None => {
            p[THRESHOLD_ENABLED.0] = THRESHOLD_ENABLED.1;
            p[THRESHOLD_COUNT..THRESHOLD_COUNT + 4].fill(0xFF);
        }
    }
    p
}

/// MODE SENSE(6)/(10) parameter data (SPC-4 7.5.4/7.5.5).
fn mode_sense(
    lu: &Lu,
    long: bool,
    dbd: bool,
    llbaa: bool,
    pc: u8,
    page: u8,
    subpage: u8,
) -> Result<Vec<u8>, Sense> {
    if pc == PC_SAVED && !lu.mode.saveable() {
        return Err(Sense::SAVING_NOT_SUPPORTED);
    }
    let mut pages = Vec::new();
    match (page, subpage) {
        (0x08, 0x00) => pages.extend(mode_page(lu, CACHING, pc)),
        (0x0A, 0x00) => pages.extend(mode_page(lu, CONTROL, pc)),
        (0x1C, LBP_SUBPAGE) if thin(lu) => pages.extend(lbp_page(lu, pc)),
        (0x3F, 0x00 | 0xFF) => {
            pages.extend(mode_page(lu, CACHING, pc));
            pages.extend(mode_page(lu, CONTROL, pc));
            // 3Fh/FFh: every page and subpage, in page code order.
            if subpage == 0xFF && thin(lu) {
                pages.extend(lbp_page(lu, pc));
            }
        }
        (0x08 | 0x0A | 0x3F, _) => return Err(Sense::invalid_field_in_cdb(3, None)),
        (0x1C, _) if thin(lu) => return Err(Sense::invalid_field_in_cdb(3, None)),
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(5))),
    }
    let g = lu.geometry();
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
    // DEVICE-SPECIFIC PARAMETER (SBC-3 6.4.1): WP (configured read-only, or SWP), DPOFUA.
    let wp = lu.config.read_only || lu.mode.software_write_protect();
    let dsp = if wp { 0x80 } else { 0 } | 0x10;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        // SPC-4 table 98 (MODE SENSE(6)) and 100 (MODE SENSE(10)).
        assert_eq!(
            ModeSense::parse(&[0x1A, 0x08, 0x3F, 0, 0xFF, 0]),
            Ok(ModeSense {
                long: false,
                dbd: true,
                llbaa: false,
                pc: 0,
                page: 0x3F,
                subpage: 0,
                alloc: 255
            })
        );
        assert_eq!(
            ModeSense::parse(&[0x5A, 0x10, 0x88, 0, 0, 0, 0, 0x01, 0x00, 0]),
            Ok(ModeSense {
                long: true,
                dbd: false,
                llbaa: true,
                pc: 2,
                page: 8,
                subpage: 0,
                alloc: 256
            })
        );
    }
}
