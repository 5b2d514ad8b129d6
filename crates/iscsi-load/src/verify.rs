//! Data verification for the load: every block written carries its LBA and a generation,
//! and every block read back is checked against what the run knows it wrote.
//!
//! # Block format
//!
//! Each logical block of the LUN (512 bytes or more) written by a verified run holds
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | the magic `GLFSVRFY` |
//! | 8..16 | the block's own LBA (little endian) |
//! | 16..24 | the generation: a number unique to each write command of the run (from 1) |
//! | 24..32 | the run id (distinguishes runs and writers) |
//! | 32.. | filler: a xorshift stream seeded by (LBA, generation, run id) |
//!
//! so a block that landed at the wrong place, an older version of a block (stale), a block
//! of another run or writer (foreign) and a torn or garbled block are all told apart from
//! the right one, whatever status the command that read it returned.
//!
//! # What is expected
//!
//! Commands never overlap: a command-sized slot with a command in flight is not chosen
//! again until it completes ([`Verifier::pick`]), so each slot's content is known:
//!
//! * never written by this run: anything is accepted (counted as an unverified read);
//! * after a write acknowledged with GOOD: exactly that generation;
//! * after a write that failed or whose answer was lost: the generation before it or the
//!   failed one (block by block, since a failed write may be partly done).
//!
//! A read answered GOOD whose blocks do not match is a *wrong block* failure.
//!
//! # What must survive a crash
//!
//! When the run tracks durability (writes with FUA, or plain writes with a SYNCHRONIZE
//! CACHE after every few: [`Verifier::with_fua`], [`Verifier::with_sync_every`]), each slot
//! also keeps its *durable* generation: one acknowledged with FUA, or acknowledged before a
//! SYNCHRONIZE CACHE that was sent after it and answered GOOD. After a crash a slot may hold
//! its durable generation or any written after it (acknowledged or not), never an older
//! one: [`Verifier::expectations`].

use crate::workload::{Picker, Range};
use std::collections::HashMap;
use std::fmt::Write as _;

/// The first eight bytes of every verified block.
pub const MAGIC: [u8; 8] = *b"GLFSVRFY";
/// Bytes of header before the filler.
pub const HEADER: usize = 32;
/// Descriptions of wrong blocks kept (the count is always exact).
const KEPT: usize = 8;

/// Fills `block` (one logical block) with the stamp of `lba`, `generation` and `run_id`.
pub fn stamp_block(block: &mut [u8], lba: u64, generation: u64, run_id: u64) {
    assert!(block.len() >= HEADER, "a block holds at least the header");
    block[0..8].copy_from_slice(&MAGIC);
    block[8..16].copy_from_slice(&lba.to_le_bytes());
    block[16..24].copy_from_slice(&generation.to_le_bytes());
    block[24..32].copy_from_slice(&run_id.to_le_bytes());
    let mut x = filler_seed(lba, generation, run_id);
    for chunk in block[HEADER..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn filler_seed(lba: u64, generation: u64, run_id: u64) -> u64 {
    let s = lba
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(generation.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        ^ run_id.rotate_left(17);
    s | 1
}

/// What a block read back holds, judged against the generations it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockCheck {
    /// One of the expected generations, intact.
    Good,
    /// Not a verified block at all (zeroes, or bytes no run wrote).
    Foreign,
    /// A verified block of another LBA (misdirected write or read).
    WrongLba(u64),
    /// A verified block of another run or writer.
    OtherRun(u64),
    /// An intact block of this run, but a generation not expected here (stale or lost).
    Stale(u64),
    /// The header is right but the rest is not (torn or corrupted).
    Corrupt,
}

/// Checks one block read at `lba` against `expected` generations of run `run_id`.
pub fn check_block(block: &[u8], lba: u64, run_id: u64, expected: &[u64]) -> BlockCheck {
    if block.len() < HEADER || block[0..8] != MAGIC {
        return BlockCheck::Foreign;
    }
    let word = |i: usize| u64::from_le_bytes(block[i..i + 8].try_into().expect("8 bytes"));
    let (at, generation, run) = (word(8), word(16), word(24));
    if run != run_id {
        return BlockCheck::OtherRun(run);
    }
    if at != lba {
        return BlockCheck::WrongLba(at);
    }
    let mut want = vec![0u8; block.len()];
    stamp_block(&mut want, lba, generation, run_id);
    if want != block {
        return BlockCheck::Corrupt;
    }
    if expected.contains(&generation) {
        BlockCheck::Good
    } else {
        BlockCheck::Stale(generation)
    }
}

/// What one slot is known to hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Known {
    /// Not written by this run.
    #[default]
    Unwritten,
    /// Any of these generations (one after a GOOD write; more after failed writes), block
    /// by block.
    OneOf(Vec<u64>),
    /// Whatever was there before the run, or any of these generations (writes that
    /// failed before any write to the slot was acknowledged).
    EarlierOr(Vec<u64>),
}

/// What one written slot must hold, for a checker that reads the LUN's file by other
/// means (after a crash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expectation {
    /// The slot's first LBA.
    pub lba: u64,
    /// Each block holds one of these generations of the run...
    pub generations: Vec<u64>,
    /// ...or, when set, whatever it held before the run.
    #[serde(default)]
    pub or_earlier: bool,
}

/// Counts of a verified run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Reads answered GOOD whose data was checked.
    pub reads_checked: u64,
    /// Reads of slots this run had not written (their data could not be judged).
    pub reads_unverified: u64,
    /// Logical blocks checked.
    pub blocks_checked: u64,
    /// Blocks that did not hold what was expected (any status GOOD read).
    pub wrong_blocks: u64,
    /// Writes acknowledged with GOOD.
    pub writes_acked: u64,
    /// Writes that failed or were never answered (their slots accept old or new data).
    pub writes_failed: u64,
    /// SYNCHRONIZE CACHE commands answered GOOD.
    pub syncs_acked: u64,
    /// The first few wrong blocks, described.
    pub messages: Vec<String>,
}

/// The verifier of one run over one [`Range`].
#[derive(Debug)]
pub struct Verifier {
    run_id: u64,
    lun_block_size: usize,
    range: Range,
    next_generation: u64,
    known: HashMap<u64, Known>,
    busy: HashMap<u64, u64>,
    report: VerifyReport,
    fua: bool,
    /// Send a SYNCHRONIZE CACHE after this many acknowledged writes.
    sync_every: Option<u32>,
    /// What each slot may hold after a crash (only when durability is tracked).
    crash: HashMap<u64, Crash>,
    /// Plain writes acknowledged since the last SYNCHRONIZE CACHE was sent: `(slot, gen)`.
    unsynced: Vec<(u64, u64)>,
    /// Those covered by the SYNCHRONIZE CACHE in flight, if one is.
    syncing: Option<Vec<(u64, u64)>>,
}

/// What a slot may hold after a crash.
#[derive(Debug, Clone, Default)]
struct Crash {
    /// The generation known durable; `None`: what was there before the run.
    durable: Option<u64>,
    /// Generations written after it, not known durable (acknowledged or not).
    later: Vec<u64>,
}

impl Verifier {
    /// A verifier for commands over `range` of a LUN with `lun_block_size`-byte blocks.
    pub fn new(run_id: u64, lun_block_size: u32, range: Range) -> Verifier {
        Verifier {
            run_id,
            lun_block_size: lun_block_size as usize,
            range,
            next_generation: 1,
            known: HashMap::new(),
            busy: HashMap::new(),
            report: VerifyReport::default(),
            fua: false,
            sync_every: None,
            crash: HashMap::new(),
            unsynced: Vec::new(),
            syncing: None,
        }
    }

    /// Sends a SYNCHRONIZE CACHE after every `n` acknowledged writes (`None`: never).
    pub fn with_sync_every(mut self, n: Option<u32>) -> Verifier {
        self.sync_every = n.filter(|&n| n > 0);
        self
    }

    /// Whether what must survive a crash is tracked.
    fn tracks_durability(&self) -> bool {
        self.fua || self.sync_every.is_some()
    }

    /// Whether the next command should be a SYNCHRONIZE CACHE: enough plain writes were
    /// acknowledged since the last one, and none is in flight.
    pub fn sync_due(&self) -> bool {
        self.syncing.is_none()
            && self
                .sync_every
                .is_some_and(|n| self.unsynced.len() >= n as usize)
    }

    /// A SYNCHRONIZE CACHE was sent: it covers every write acknowledged so far.
    pub fn begin_sync(&mut self) {
        self.syncing = Some(std::mem::take(&mut self.unsynced));
    }

    /// The answer to the SYNCHRONIZE CACHE in flight.
    pub fn end_sync(&mut self, good: bool) {
        let Some(covered) = self.syncing.take() else {
            return;
        };
        if !good {
            self.unsynced.extend(covered);
            return;
        }
        self.report.syncs_acked += 1;
        for (slot, generation) in covered {
            if let Some(c) = self.crash.get_mut(&slot) {
                // Still the newest-but-unsure or one of them: everything up to it is
                // superseded (writes to a slot never overlap, so they land in order).
                if c.later.contains(&generation) {
                    c.durable = Some(generation);
                    c.later.retain(|&g| g > generation);
                }
            }
        }
    }

    /// A verifier for `workload` on `session`'s LUN.
    pub fn for_session(
        run_id: u64,
        session: &crate::Session,
        workload: &crate::Workload,
    ) -> Result<Verifier, String> {
        let range = Range::resolve(workload, session.block_size(), session.num_blocks())?;
        Ok(Verifier::new(run_id, session.block_size(), range))
    }

    /// Sends every write with FUA (so an acknowledged write is durable), or not.
    /// With FUA or [`Verifier::with_sync_every`] the verifier tracks what must survive a
    /// crash.
    pub fn with_fua(mut self, fua: bool) -> Verifier {
        self.fua = fua;
        self
    }

    /// Whether writes go with FUA.
    pub fn fua(&self) -> bool {
        self.fua
    }

    /// The run id stamped into every block.
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    fn slot_of(&self, lba: u64) -> u64 {
        (lba - self.range.first_lba) / self.range.blocks_per_io
    }

    /// The next command from `picker` whose slot has no command in flight: `(lba, write)`.
    /// `None` when none was found in many tries (the range is too small for the queue
    /// depth); the caller then waits for completions.
    pub fn pick(&mut self, picker: &mut Picker) -> Option<(u64, bool)> {
        for _ in 0..1024 {
            let (lba, write) = picker.next_io();
            if !self.busy.contains_key(&self.slot_of(lba)) {
                return Some((lba, write));
            }
        }
        None
    }

    /// Stamps `buf` (one command's data at `lba`) with a new generation and marks the slot
    /// busy; returns the generation.
    pub fn begin_write(&mut self, lba: u64, buf: &mut [u8]) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        for (i, block) in buf.chunks_mut(self.lun_block_size).enumerate() {
            stamp_block(block, lba + i as u64, generation, self.run_id);
        }
        self.busy.insert(self.slot_of(lba), generation);
        generation
    }

    /// Marks the slot of a read at `lba` busy.
    pub fn begin_read(&mut self, lba: u64) {
        self.busy.insert(self.slot_of(lba), 0);
    }

    /// A command at `lba` could not be queued after all: the slot is free again (a write's
    /// generation is then treated as failed, since its bytes may never reach the target).
    pub fn abandon(&mut self, lba: u64, write: bool) {
        if write {
            self.end_write(lba, false);
        } else {
            self.busy.remove(&self.slot_of(lba));
        }
    }

    /// Records the answer to the write at `lba`.
    pub fn end_write(&mut self, lba: u64, good: bool) {
        let slot = self.slot_of(lba);
        let Some(generation) = self.busy.remove(&slot) else {
            return;
        };
        if self.tracks_durability() {
            let c = self.crash.entry(slot).or_default();
            if good && self.fua {
                c.durable = Some(generation);
                c.later.clear();
            } else {
                c.later.push(generation);
                if good {
                    self.unsynced.push((slot, generation));
                }
            }
        }
        let known = self.known.entry(slot).or_default();
        if good {
            self.report.writes_acked += 1;
            *known = Known::OneOf(vec![generation]);
        } else {
            self.report.writes_failed += 1;
            match known {
                Known::OneOf(gens) | Known::EarlierOr(gens) => gens.push(generation),
                // Before it nothing of this run was there: a partly done write leaves
                // some blocks as they were, which this run cannot judge.
                Known::Unwritten => *known = Known::EarlierOr(vec![generation]),
            }
        }
    }

    /// Checks the data of a read at `lba` answered with `good` status.
    pub fn end_read(&mut self, lba: u64, good: bool, data: &[u8]) {
        let slot = self.slot_of(lba);
        self.busy.remove(&slot);
        if !good {
            return;
        }
        let expected = match self.known.get(&slot) {
            Some(Known::OneOf(gens)) => gens.clone(),
            _ => {
                self.report.reads_unverified += 1;
                return;
            }
        };
        self.report.reads_checked += 1;
        for (i, block) in data.chunks(self.lun_block_size).enumerate() {
            let at = lba + i as u64;
            self.report.blocks_checked += 1;
            let verdict = check_block(block, at, self.run_id, &expected);
            if verdict != BlockCheck::Good {
                self.report.wrong_blocks += 1;
                if self.report.messages.len() < KEPT {
                    let mut m = format!("lba {at}: {verdict:?}, expected generation");
                    for g in &expected {
                        let _ = write!(m, " {g}");
                    }
                    self.report.messages.push(m);
                }
            }
        }
    }

    /// What every slot this run wrote to must hold, in LBA order: after a crash when the
    /// run tracks durability, else as reads see it. A checker reading the LUN's file by
    /// other means compares each of the slot's blocks with [`check_block`].
    pub fn expectations(&self) -> Vec<Expectation> {
        if self.tracks_durability() {
            let mut out: Vec<Expectation> = self
                .crash
                .iter()
                .map(|(slot, c)| Expectation {
                    lba: self.range.first_lba + slot * self.range.blocks_per_io,
                    generations: c.durable.iter().chain(&c.later).copied().collect(),
                    or_earlier: c.durable.is_none(),
                })
                .collect();
            out.sort_by_key(|e| e.lba);
            return out;
        }
        let mut out: Vec<Expectation> = self
            .known
            .iter()
            .filter_map(|(slot, k)| {
                let (generations, or_earlier) = match k {
                    Known::OneOf(g) => (g.clone(), false),
                    Known::EarlierOr(g) => (g.clone(), true),
                    Known::Unwritten => return None,
                };
                Some(Expectation {
                    lba: self.range.first_lba + slot * self.range.blocks_per_io,
                    generations,
                    or_earlier,
                })
            })
            .collect();
        out.sort_by_key(|e| e.lba);
        out
    }

    /// The counts so far.
    pub fn report(&self) -> &VerifyReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Rw, Workload};

    fn range() -> Range {
        Range {
            first_lba: 100,
            blocks_per_io: 8,
            slots: 16,
        }
    }

    #[test]
    fn a_stamped_block_checks_good_and_every_fault_is_told_apart() {
        let mut b = vec![0u8; 512];
        stamp_block(&mut b, 42, 7, 0xabc);
        assert_eq!(&b[0..8], b"GLFSVRFY");
        assert_eq!(&b[8..16], &42u64.to_le_bytes());
        assert_eq!(&b[16..24], &7u64.to_le_bytes());
        assert_eq!(&b[24..32], &0xabcu64.to_le_bytes());
        assert_eq!(check_block(&b, 42, 0xabc, &[7]), BlockCheck::Good);
        assert_eq!(check_block(&b, 42, 0xabc, &[6, 7]), BlockCheck::Good);
        assert_eq!(check_block(&b, 42, 0xabc, &[8]), BlockCheck::Stale(7));
        assert_eq!(check_block(&b, 43, 0xabc, &[7]), BlockCheck::WrongLba(42));
        assert_eq!(
            check_block(&b, 42, 0xdef, &[7]),
            BlockCheck::OtherRun(0xabc)
        );
        assert_eq!(
            check_block(&[0u8; 512], 42, 0xabc, &[7]),
            BlockCheck::Foreign
        );
        let mut torn = b.clone();
        torn[300] ^= 1;
        assert_eq!(check_block(&torn, 42, 0xabc, &[7]), BlockCheck::Corrupt);
    }

    #[test]
    fn filler_differs_by_lba_generation_and_run() {
        let stamp = |lba, g, run| {
            let mut b = vec![0u8; 4096];
            stamp_block(&mut b, lba, g, run);
            b[HEADER..].to_vec()
        };
        let base = stamp(1, 1, 1);
        assert_ne!(base, stamp(2, 1, 1));
        assert_ne!(base, stamp(1, 2, 1));
        assert_ne!(base, stamp(1, 1, 2));
        assert!(base.iter().any(|&x| x != 0));
    }

    #[test]
    fn reads_are_judged_by_the_last_acknowledged_write() {
        let mut v = Verifier::new(9, 512, range());
        let mut buf = vec![0u8; 4096];
        // Unwritten slot: unverified.
        v.begin_read(100);
        v.end_read(100, true, &buf);
        assert_eq!(v.report().reads_unverified, 1);

        let g1 = v.begin_write(108, &mut buf);
        let first = buf.clone();
        v.end_write(108, true);
        v.begin_read(108);
        v.end_read(108, true, &first);
        assert_eq!((v.report().reads_checked, v.report().wrong_blocks), (1, 0));

        // A second acknowledged write makes the first generation stale.
        let g2 = v.begin_write(108, &mut buf);
        assert_eq!((g1, g2), (1, 2));
        v.end_write(108, true);
        v.begin_read(108);
        v.end_read(108, true, &first);
        assert_eq!(v.report().wrong_blocks, 8, "all eight blocks are stale");
        assert!(v.report().messages[0].contains("Stale(1)"));

        // A failed write: either version is fine afterwards, block by block.
        let second = buf.clone();
        v.begin_write(108, &mut buf);
        v.end_write(108, false);
        let mut mixed = second.clone();
        mixed[..512].copy_from_slice(&buf[..512]);
        v.begin_read(108);
        v.end_read(108, true, &mixed);
        assert_eq!(v.report().wrong_blocks, 8);
        assert_eq!(v.report().writes_failed, 1);
        // A failed read's data is not judged.
        v.begin_read(108);
        v.end_read(108, false, &[0u8; 4096]);
        assert_eq!(v.report().wrong_blocks, 8);
        // A write that failed on a slot the run had not written leaves it unjudged by
        // reads, and expected to hold the old bytes or the new ones.
        v.begin_write(100, &mut buf);
        v.end_write(100, false);
        v.begin_read(100);
        v.end_read(100, true, &[0u8; 4096]);
        assert_eq!(v.report().reads_unverified, 2);
        assert_eq!(
            v.expectations(),
            vec![
                Expectation {
                    lba: 100,
                    generations: vec![4],
                    or_earlier: true
                },
                Expectation {
                    lba: 108,
                    generations: vec![2, 3],
                    or_earlier: false
                }
            ]
        );
    }

    #[test]
    fn busy_slots_are_not_picked() {
        let w = Workload {
            rw: Rw::RandWrite,
            block_size: 4096,
            ..Workload::default()
        };
        let r = Range {
            first_lba: 0,
            blocks_per_io: 8,
            slots: 4,
        };
        let mut p = Picker::new(&w, r);
        let mut v = Verifier::new(1, 512, r);
        let mut buf = vec![0u8; 4096];
        let mut taken = Vec::new();
        for _ in 0..4 {
            let (lba, _) = v.pick(&mut p).expect("a free slot");
            assert!(!taken.contains(&lba));
            v.begin_write(lba, &mut buf);
            taken.push(lba);
        }
        assert_eq!(v.pick(&mut p), None, "every slot is busy");
        v.end_write(taken[2], true);
        assert_eq!(v.pick(&mut p).map(|x| x.0), Some(taken[2]));
    }

    #[test]
    fn only_synchronized_or_fua_writes_must_survive_a_crash() {
        let r = Range {
            first_lba: 0,
            blocks_per_io: 8,
            slots: 64,
        };
        let mut v = Verifier::new(3, 512, r).with_sync_every(Some(2));
        let mut buf = vec![0u8; 4096];
        let g1 = v.begin_write(0, &mut buf);
        v.end_write(0, true);
        assert!(!v.sync_due());
        let g2 = v.begin_write(8, &mut buf);
        v.end_write(8, true);
        assert!(v.sync_due());
        // Nothing synchronized yet: old bytes or the new ones.
        assert_eq!(
            v.expectations()[0],
            Expectation {
                lba: 0,
                generations: vec![g1],
                or_earlier: true
            }
        );
        v.begin_sync();
        // A write acknowledged while the sync is in flight is not covered by it.
        let g3 = v.begin_write(0, &mut buf);
        v.end_write(0, true);
        v.end_sync(true);
        assert_eq!(v.report().syncs_acked, 1);
        let e = v.expectations();
        assert_eq!(
            e[0],
            Expectation {
                lba: 0,
                generations: vec![g1, g3],
                or_earlier: false
            }
        );
        assert_eq!(
            e[1],
            Expectation {
                lba: 8,
                generations: vec![g2],
                or_earlier: false
            }
        );
        // A failed sync covers nothing; the next good one does.
        let g4 = v.begin_write(8, &mut buf);
        v.end_write(8, true);
        v.begin_sync();
        v.end_sync(false);
        assert!(v.sync_due());
        v.begin_sync();
        v.end_sync(true);
        let e = v.expectations();
        assert_eq!(e[0].generations, vec![g3]);
        assert_eq!(e[1].generations, vec![g4]);
        // Reads still expect the newest acknowledged generation only.
        v.begin_read(0);
        v.end_read(0, true, &{
            let mut b = vec![0u8; 4096];
            for (i, block) in b.chunks_mut(512).enumerate() {
                stamp_block(block, i as u64, g1, 3);
            }
            b
        });
        assert_eq!(v.report().wrong_blocks, 8, "g1 is stale for reads");
    }

    #[test]
    fn with_fua_every_acknowledged_write_is_durable() {
        let r = Range {
            first_lba: 0,
            blocks_per_io: 8,
            slots: 64,
        };
        let mut v = Verifier::new(3, 512, r).with_fua(true);
        let mut buf = vec![0u8; 4096];
        let g1 = v.begin_write(0, &mut buf);
        v.end_write(0, true);
        let g2 = v.begin_write(0, &mut buf);
        v.end_write(0, false);
        assert!(!v.sync_due());
        assert_eq!(
            v.expectations(),
            vec![Expectation {
                lba: 0,
                generations: vec![g1, g2],
                or_earlier: false
            }]
        );
    }
}
