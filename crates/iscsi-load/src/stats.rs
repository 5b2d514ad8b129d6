//! Latency histogram and the result of a run.

use crate::workload::Rw;
use std::time::Duration;

/// Sub-buckets per power of two above the exact range (so a recorded value is
/// known to within 1/32, about 3 %).
const HALF: u64 = 32;
/// Values below this are kept exactly.
const EXACT: u64 = 2 * HALF;
/// Highest bucket: values from 2^40 ns (about 18 minutes) up share it.
const MAX_SHIFT: u32 = 35;
const BUCKETS: usize = (EXACT + MAX_SHIFT as u64 * HALF) as usize;

/// A log-linear histogram of nanosecond latencies with bounded memory.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

/// Bucket of `v`: values below [`EXACT`] map to themselves; above, each power of
/// two is split into [`HALF`] equal buckets.
fn bucket_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= 6
    let shift = (msb - 5).min(MAX_SHIFT);
    let mantissa = (v >> shift).min(EXACT - 1); // in [HALF, EXACT)
    (EXACT + u64::from(shift - 1) * HALF + (mantissa - HALF)) as usize
}

/// The smallest and largest value of bucket `i`.
fn bounds_of(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < EXACT {
        return (i, i);
    }
    let shift = (i - EXACT) / HALF + 1;
    let mantissa = (i - EXACT) % HALF + HALF;
    (mantissa << shift, ((mantissa + 1) << shift) - 1)
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(ns)] += 1;
        self.total += 1;
    }

    /// Number of values recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds everything `other` recorded (the histogram of several sessions).
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// Forgets everything recorded.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
    }

    /// The value at quantile `q` (0.0..=1.0) in nanoseconds: the middle of the
    /// bucket holding the `ceil(q * n)`-th smallest value; 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bounds_of(i);
                return lo + (hi - lo) / 2;
            }
        }
        bounds_of(BUCKETS - 1).1
    }
}

/// The percentiles [`Report::lat_percentiles_us`] lists: fio's default list, so that
/// both sides of a comparison give the same points.
pub const PERCENTILES: [f64; 17] = [
    1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95,
    99.99,
];

/// What a run measured, printed as one JSON line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// Commands completed per second (good and failed).
    pub iops: f64,
    /// Payload MiB per second of the completed commands.
    pub mib_per_s: f64,
    /// Median command latency in microseconds.
    pub lat_us_p50: f64,
    /// 99th percentile command latency in microseconds.
    pub lat_us_p99: f64,
    /// 99.9th percentile command latency in microseconds.
    pub lat_us_p999: f64,
    /// Commands that did not end with GOOD status and full data (or could not be
    /// queued, or were still in flight when the run gave up on them).
    pub errors: u64,
    /// Commands completed in the measured window.
    pub ios: u64,
    /// Of which reads.
    pub reads: u64,
    /// Of which writes.
    pub writes: u64,
    /// Length of the measured window in seconds.
    pub seconds: f64,
    /// The access pattern.
    pub rw: Rw,
    /// Bytes per command.
    pub bs: u32,
    /// Queue depth.
    pub qd: u32,
    /// CPU time this process used during the measured window, in percent of one
    /// core (near 100 means the load generator itself may be the limit).
    pub cpu_pct: f64,
    /// Sessions the load ran on (the counts are their sums).
    pub sessions: u32,
    /// TCP segments carrying data this initiator sent during the measured window
    /// (the kernel's count, `tcpi_data_segs_out`; absent where it does not say):
    /// over [`Report::ios`], what the target had to receive per command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments_out: Option<u64>,
    /// `[percentile, microseconds]` at each of [`PERCENTILES`].
    pub lat_percentiles_us: Vec<[f64; 2]>,
}

impl Report {
    /// Builds the report of `reads + writes` commands of `bs` bytes completed in
    /// `elapsed`, with latencies in `hist`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rw: Rw,
        bs: u32,
        qd: u32,
        reads: u64,
        writes: u64,
        errors: u64,
        elapsed: Duration,
        hist: &Histogram,
    ) -> Report {
        let ios = reads + writes;
        let secs = elapsed.as_secs_f64();
        let iops = if secs > 0.0 { ios as f64 / secs } else { 0.0 };
        Report {
            iops: round2(iops),
            mib_per_s: round2(iops * f64::from(bs) / (1024.0 * 1024.0)),
            lat_us_p50: round2(hist.quantile_ns(0.50) as f64 / 1000.0),
            lat_us_p99: round2(hist.quantile_ns(0.99) as f64 / 1000.0),
            lat_us_p999: round2(hist.quantile_ns(0.999) as f64 / 1000.0),
            errors,
            ios,
            reads,
            writes,
            seconds: (secs * 1000.0).round() / 1000.0,
            rw,
            bs,
            qd,
            cpu_pct: 0.0,
            sessions: 1,
            segments_out: None,
            lat_percentiles_us: PERCENTILES
                .iter()
                .map(|&p| [p, round2(hist.quantile_ns(p / 100.0) as f64 / 1000.0)])
                .collect(),
        }
    }

    /// Sets [`Report::cpu_pct`] from `cpu` seconds used over `elapsed`.
    pub fn with_cpu(mut self, cpu: Duration, elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64();
        self.cpu_pct = if secs > 0.0 {
            round2(cpu.as_secs_f64() / secs * 100.0)
        } else {
            0.0
        };
        self
    }

    /// Sets [`Report::segments_out`].
    pub fn with_segments_out(mut self, segments: Option<u64>) -> Report {
        self.segments_out = segments;
        self
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        for v in 0..EXACT {
            assert_eq!(bucket_of(v), v as usize);
            assert_eq!(bounds_of(v as usize), (v, v));
        }
    }

    #[test]
    fn buckets_tile_the_number_line_with_3_percent_width() {
        // Consecutive buckets meet without gaps and each holds what it claims.
        let mut next = 0u64;
        for i in 0..BUCKETS - 1 {
            let (lo, hi) = bounds_of(i);
            assert_eq!(lo, next, "gap before bucket {i}");
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(hi), i);
            if lo >= EXACT {
                assert!((hi - lo + 1) * 32 <= lo, "bucket {i} wider than 1/32");
            }
            next = hi + 1;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.len(), 10_000);
        let p50 = h.quantile_ns(0.5) as f64;
        let p99 = h.quantile_ns(0.99) as f64;
        assert!((p50 - 5_000_000.0).abs() < 5_000_000.0 * 0.04, "p50 {p50}");
        assert!((p99 - 9_900_000.0).abs() < 9_900_000.0 * 0.04, "p99 {p99}");
        assert!(h.quantile_ns(1.0) >= h.quantile_ns(0.99));
    }

    #[test]
    fn quantiles_pick_the_right_rank() {
        let mut h = Histogram::default();
        // 98 fast commands of 10 ns, 2 slow ones of 50 ns: p50 fast, p99 slow.
        for _ in 0..98 {
            h.record(Duration::from_nanos(10));
        }
        h.record(Duration::from_nanos(50));
        h.record(Duration::from_nanos(50));
        assert_eq!(h.quantile_ns(0.5), 10);
        assert_eq!(h.quantile_ns(0.98), 10);
        assert_eq!(h.quantile_ns(0.99), 50);
        h.clear();
        assert!(h.is_empty());
        assert_eq!(h.quantile_ns(0.5), 0);
    }

    #[test]
    fn merged_histograms_count_both() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for _ in 0..900 {
            a.record(Duration::from_nanos(10));
        }
        for _ in 0..100 {
            b.record(Duration::from_nanos(60));
        }
        a.merge(&b);
        assert_eq!(a.len(), 1000);
        // 900 of 1000 at 10 ns: p90 is still fast, p90.1 and above slow.
        assert_eq!(a.quantile_ns(0.90), 10);
        assert_eq!(a.quantile_ns(0.901), 60);
        assert_eq!(a.quantile_ns(0.999), 60);
    }

    #[test]
    fn p999_is_the_thousandth_worst_of_a_million() {
        // One slow value in 2000: p99.9 is fast, p99.99 slow.
        let mut h = Histogram::default();
        for i in 0..100_000u64 {
            h.record(Duration::from_nanos(if i % 2000 == 1999 { 50 } else { 20 }));
        }
        assert_eq!(h.quantile_ns(0.999), 20);
        assert_eq!(h.quantile_ns(0.9999), 50);
        let r = Report::new(Rw::Read, 4096, 1, 100_000, 0, 0, Duration::from_secs(1), &h);
        assert_eq!(r.lat_us_p999, 0.02);
        assert_eq!(r.lat_percentiles_us.len(), PERCENTILES.len());
        assert_eq!(r.lat_percentiles_us[14], [99.9, 0.02]);
        assert_eq!(r.lat_percentiles_us[16], [99.99, 0.05]);
    }

    #[test]
    fn report_json_line() {
        let mut h = Histogram::default();
        for _ in 0..3 {
            h.record(Duration::from_nanos(40));
        }
        // 30000 reads + 10000 writes of 4 KiB in 2 s: 20000 IOPS, 78.125 MiB/s.
        let r = Report::new(
            Rw::RandRw,
            4096,
            32,
            30_000,
            10_000,
            1,
            Duration::from_secs(2),
            &h,
        );
        // 1.5 s of CPU in 2 s: 75 % of a core.
        let r = r
            .with_cpu(Duration::from_millis(1500), Duration::from_secs(2))
            .with_segments_out(Some(40_012));
        assert_eq!(r.cpu_pct, 75.0);
        assert_eq!(r.iops, 20_000.0);
        assert_eq!(r.mib_per_s, 78.13);
        insta::assert_snapshot!(r.to_json());
    }

    #[test]
    fn a_report_without_a_segment_count_has_no_such_field() {
        let r = Report::new(
            Rw::Read,
            4096,
            1,
            1,
            0,
            0,
            Duration::from_secs(1),
            &Histogram::default(),
        );
        assert!(!r.to_json().contains("segments_out"), "{}", r.to_json());
    }
}
