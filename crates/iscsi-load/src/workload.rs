//! What to run: the access pattern, block size, queue depth, duration and LBA range,
//! and the deterministic random offset generator.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The access pattern, named as fio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rw {
    /// Random reads only.
    RandRead,
    /// Random writes only.
    RandWrite,
    /// Random reads and writes mixed by [`Workload::read_percent`].
    RandRw,
    /// Sequential reads: each command starts where the previous one ended,
    /// wrapping at the end of the range.
    Read,
    /// Sequential writes, like [`Rw::Read`].
    Write,
}

impl Rw {
    /// True for the sequential patterns.
    pub fn is_sequential(self) -> bool {
        matches!(self, Rw::Read | Rw::Write)
    }
}

impl FromStr for Rw {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "randread" => Ok(Rw::RandRead),
            "randwrite" => Ok(Rw::RandWrite),
            "randrw" => Ok(Rw::RandRw),
            "read" => Ok(Rw::Read),
            "write" => Ok(Rw::Write),
            other => Err(format!(
                "unknown rw {other:?}: expected randread, randwrite, randrw, read or write"
            )),
        }
    }
}

impl fmt::Display for Rw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
            Rw::RandRw => "randrw",
            Rw::Read => "read",
            Rw::Write => "write",
        })
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Access pattern.
    pub rw: Rw,
    /// Bytes per command; a multiple of the LUN's logical block size.
    pub block_size: u32,
    /// Commands kept in flight.
    pub queue_depth: u32,
    /// How long to keep issuing commands after the ramp.
    pub duration: Duration,
    /// Time at the start whose completions are not counted.
    pub ramp: Duration,
    /// For [`Rw::RandRw`]: percentage of reads (0..=100).
    pub read_percent: u8,
    /// First LUN block of the range commands go to.
    pub lba_start: u64,
    /// Number of LUN blocks in the range; `None` means up to the end of the LUN.
    pub lba_count: Option<u64>,
    /// Seed of the offset and read/write choice sequence.
    pub seed: u64,
    /// How long to wait for commands still in flight once the duration is over
    /// before giving up on them (counted as errors).
    pub drain_timeout: Duration,
    /// Send a write command as libiscsi does by itself: its header and its immediate
    /// data by two system calls, so two TCP segments under libiscsi's `TCP_NODELAY`.
    /// Off (the default), a write's two sends are corked (`TCP_CORK`) into one
    /// segment, as Linux's initiator sends a PDU (its header with `MSG_MORE`), and the
    /// writes queued again in one round of completions go out together, corked, at the
    /// round's end, unless the round queued a read: then they go with the read at once
    /// and the round's later writes one by one. The target and this initiator then pay
    /// for at most one segment per write, not two, and the initiator for one flush per
    /// round of writes. Reads are one send either way.
    pub split_writes: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            rw: Rw::RandRead,
            block_size: 4096,
            queue_depth: 32,
            duration: Duration::from_secs(10),
            ramp: Duration::ZERO,
            read_percent: 50,
            lba_start: 0,
            lba_count: None,
            seed: 0x5eed_1234_abcd_0001,
            drain_timeout: Duration::from_secs(10),
            split_writes: false,
        }
    }
}

/// The range commands go to, in LUN blocks, resolved against the LUN's geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First LUN block.
    pub first_lba: u64,
    /// LUN blocks per command.
    pub blocks_per_io: u64,
    /// Number of command-sized slots in the range (command `i` starts at
    /// `first_lba + i * blocks_per_io`).
    pub slots: u64,
}

impl Range {
    /// Checks the workload against a LUN of `num_blocks` blocks of `lun_block_size`
    /// bytes and returns the aligned range.
    pub fn resolve(
        workload: &Workload,
        lun_block_size: u32,
        num_blocks: u64,
    ) -> Result<Range, String> {
        if workload.block_size.checked_rem(lun_block_size) != Some(0) {
            return Err(format!(
                "block size {} is not a multiple of the LUN's block size {lun_block_size}",
                workload.block_size
            ));
        }
        if workload.lba_start >= num_blocks {
            return Err(format!(
                "LBA start {} is beyond the LUN's {num_blocks} blocks",
                workload.lba_start
            ));
        }
        let available = num_blocks - workload.lba_start;
        let count = workload.lba_count.unwrap_or(available);
        if count > available {
            return Err(format!(
                "LBA range {}+{count} runs past the LUN's {num_blocks} blocks",
                workload.lba_start
            ));
        }
        let blocks_per_io = u64::from(workload.block_size / lun_block_size);
        let slots = count / blocks_per_io;
        if slots == 0 {
            return Err(format!(
                "LBA range of {count} blocks holds no {}-byte command",
                workload.block_size
            ));
        }
        Ok(Range {
            first_lba: workload.lba_start,
            blocks_per_io,
            slots,
        })
    }
}

/// A deterministic generator of command offsets and read/write choices
/// (splitmix64: fast, statistically fine for spreading I/O).
#[derive(Debug, Clone)]
pub struct Picker {
    state: u64,
    /// Next slot of a sequential pattern.
    cursor: u64,
    range: Range,
    rw: Rw,
    read_percent: u64,
}

impl Picker {
    /// A generator over `range` for `workload`'s pattern and seed.
    pub fn new(workload: &Workload, range: Range) -> Picker {
        Picker {
            state: workload.seed,
            cursor: 0,
            range,
            rw: workload.rw,
            read_percent: u64::from(workload.read_percent.min(100)),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number below `n` (Lemire's multiply-shift; `n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// The next command: `(lba, is_write)`.
    pub fn next_io(&mut self) -> (u64, bool) {
        let slot = if self.rw.is_sequential() {
            let slot = self.cursor;
            self.cursor = (self.cursor + 1) % self.range.slots;
            slot
        } else {
            self.below(self.range.slots)
        };
        let lba = self.range.first_lba + slot * self.range.blocks_per_io;
        let write = match self.rw {
            Rw::RandRead | Rw::Read => false,
            Rw::RandWrite | Rw::Write => true,
            Rw::RandRw => self.below(100) >= self.read_percent,
        };
        (lba, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("randread", Rw::RandRead)]
    #[case("randwrite", Rw::RandWrite)]
    #[case("randrw", Rw::RandRw)]
    #[case("read", Rw::Read)]
    #[case("write", Rw::Write)]
    fn rw_names_round_trip(#[case] name: &str, #[case] rw: Rw) {
        assert_eq!(name.parse::<Rw>(), Ok(rw));
        assert_eq!(rw.to_string(), name);
    }

    #[test]
    fn unknown_rw_is_refused() {
        assert!("seqread".parse::<Rw>().unwrap_err().contains("randread"));
    }

    #[rstest]
    #[case(Rw::Read, false)]
    #[case(Rw::Write, true)]
    fn sequential_patterns_walk_the_range_and_wrap(#[case] rw: Rw, #[case] writes: bool) {
        // 64 KiB commands over 3 slots of 128 blocks starting at LBA 1024.
        let w = Workload {
            rw,
            ..workload(65536, 1024, Some(3 * 128))
        };
        let mut p = Picker::new(&w, Range::resolve(&w, 512, 1 << 20).unwrap());
        let ios: Vec<_> = (0..7).map(|_| p.next_io()).collect();
        let lbas: Vec<u64> = ios.iter().map(|io| io.0).collect();
        assert_eq!(lbas, [1024, 1152, 1280, 1024, 1152, 1280, 1024]);
        assert!(ios.iter().all(|io| io.1 == writes));
    }

    fn workload(bs: u32, start: u64, count: Option<u64>) -> Workload {
        Workload {
            block_size: bs,
            lba_start: start,
            lba_count: count,
            ..Workload::default()
        }
    }

    #[rstest]
    // 64 MiB LUN of 512-byte blocks, 4k commands over all of it: 16384 slots of 8 blocks.
    #[case(workload(4096, 0, None), 512, 131072, Range { first_lba: 0, blocks_per_io: 8, slots: 16384 })]
    // Second half only.
    #[case(workload(4096, 65536, None), 512, 131072, Range { first_lba: 65536, blocks_per_io: 8, slots: 8192 })]
    // A count that is not a multiple of the command size drops the partial tail.
    #[case(workload(4096, 8, Some(20)), 512, 131072, Range { first_lba: 8, blocks_per_io: 8, slots: 2 })]
    // 4k-block LUN.
    #[case(workload(4096, 0, Some(10)), 4096, 100, Range { first_lba: 0, blocks_per_io: 1, slots: 10 })]
    fn ranges_resolve(
        #[case] w: Workload,
        #[case] lun_bs: u32,
        #[case] blocks: u64,
        #[case] want: Range,
    ) {
        assert_eq!(Range::resolve(&w, lun_bs, blocks), Ok(want));
    }

    #[rstest]
    #[case(workload(1000, 0, None), 512, 1024, "not a multiple")]
    #[case(workload(4096, 1024, None), 512, 1024, "beyond")]
    #[case(workload(4096, 0, Some(2048)), 512, 1024, "runs past")]
    #[case(workload(4096, 0, Some(7)), 512, 1024, "holds no")]
    #[case(workload(512, 0, None), 4096, 1024, "not a multiple")]
    fn bad_ranges_are_refused(
        #[case] w: Workload,
        #[case] lun_bs: u32,
        #[case] blocks: u64,
        #[case] why: &str,
    ) {
        let err = Range::resolve(&w, lun_bs, blocks).unwrap_err();
        assert!(err.contains(why), "{err}");
    }

    #[test]
    fn offsets_stay_aligned_inside_the_range_and_cover_it() {
        let w = workload(4096, 800, Some(8 * 50));
        let range = Range::resolve(&w, 512, 100_000).unwrap();
        let mut picker = Picker::new(&w, range);
        let mut seen = [0u32; 50];
        for _ in 0..20_000 {
            let (lba, write) = picker.next_io();
            assert!(!write, "randread issued a write");
            assert!((800..800 + 400).contains(&lba), "lba {lba} out of range");
            assert_eq!((lba - 800) % 8, 0, "lba {lba} not aligned to the command");
            seen[((lba - 800) / 8) as usize] += 1;
        }
        // Uniform: each of the 50 slots expects 400 hits; allow a wide margin.
        assert!(
            seen.iter().all(|&n| (250..=550).contains(&n)),
            "skewed: {seen:?}"
        );
    }

    #[test]
    fn same_seed_same_sequence() {
        let w = workload(4096, 0, None);
        let range = Range::resolve(&w, 512, 1 << 20).unwrap();
        let a: Vec<_> = {
            let mut p = Picker::new(&w, range);
            (0..100).map(|_| p.next_io()).collect()
        };
        let b: Vec<_> = {
            let mut p = Picker::new(&w, range);
            (0..100).map(|_| p.next_io()).collect()
        };
        assert_eq!(a, b);
        let other = Workload { seed: 7, ..w };
        let mut p = Picker::new(&other, range);
        let c: Vec<_> = (0..100).map(|_| p.next_io()).collect();
        assert_ne!(a, c);
    }

    #[rstest]
    #[case(Rw::RandWrite, 50, 10_000)]
    #[case(Rw::RandRead, 50, 0)]
    #[case(Rw::RandRw, 0, 10_000)]
    #[case(Rw::RandRw, 100, 0)]
    fn write_share_follows_the_pattern(
        #[case] rw: Rw,
        #[case] read_percent: u8,
        #[case] writes: usize,
    ) {
        let w = Workload {
            rw,
            read_percent,
            ..workload(4096, 0, None)
        };
        let mut p = Picker::new(&w, Range::resolve(&w, 512, 1 << 20).unwrap());
        let n = (0..10_000).filter(|_| p.next_io().1).count();
        assert_eq!(n, writes);
    }

    #[test]
    fn randrw_mixes_by_read_percent() {
        let w = Workload {
            rw: Rw::RandRw,
            read_percent: 70,
            ..workload(4096, 0, None)
        };
        let mut p = Picker::new(&w, Range::resolve(&w, 512, 1 << 20).unwrap());
        let writes = (0..10_000).filter(|_| p.next_io().1).count();
        assert!((2700..=3300).contains(&writes), "{writes} writes of 10000");
    }
}
