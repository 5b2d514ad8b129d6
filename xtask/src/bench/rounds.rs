//! Rounds: how the sides of a workload are interleaved, and what the per-round ratios
//! say. This machine's speed moves by up to 2x within minutes, so a ratio of two runs
//! taken minutes apart measures the machine as much as the target. The bench therefore
//! measures every side of a workload once per round, one right after the other, in an
//! order that alternates from round to round (forward, reverse, forward, ...): the
//! sides a ratio compares are neighbours in that order, so a change of speed hits both
//! alike, and neither always goes first. Each round gives its own ratio; a row reports
//! the median of those ratios and their min..max, and its goal is judged on the median,
//! with a row whose min..max straddles the goal flagged as unsettled. Pure arithmetic,
//! no I/O: unit-tested here.

use super::report::{self, Measured, Numbers, Side};
use serde::Serialize;

/// The column order, which is also the order of round 1: each ratio's two sides are
/// neighbours (ceiling next to ours, ours next to tgt bs_glfs, ours memory between tgt null
/// and tgt on tmpfs), so whatever the order of a round, they run back to back.
pub const ROUND_ORDER: [Side; 7] = [
    Side::Ceiling,
    Side::OursGlfs,
    Side::TgtGlfs,
    Side::TgtFuse,
    Side::TgtNull,
    Side::OursMemory,
    Side::TgtTmpfs,
];

/// The order the `sides` asked for run in round `round` (0-based): [`ROUND_ORDER`] in
/// even rounds, reversed in odd ones.
pub fn order(sides: &[Side], round: u32) -> Vec<Side> {
    let mut v: Vec<Side> = ROUND_ORDER
        .into_iter()
        .filter(|s| sides.contains(s))
        .collect();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

/// The whole run's order: (workload index, round, side) for `workloads` workloads, each in
/// `rounds` rounds one after the other before the next workload begins.
pub fn schedule(workloads: usize, sides: &[Side], rounds: u32) -> Vec<(usize, u32, Side)> {
    let mut out = Vec::new();
    for w in 0..workloads {
        for r in 0..rounds {
            out.extend(order(sides, r).into_iter().map(|s| (w, r, s)));
        }
    }
    out
}

/// One round of a workload: every side once, in the order run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Round {
    /// /proc/loadavg's 1-minute value when the round began.
    pub loadavg: f64,
    /// The most CPU the machine's other processes took in one measurement of the round
    /// (neither the target nor the load generator; a Gluster brick counts), % of one
    /// core: a noisy round shows here.
    pub others_cpu_pct_max: Option<f64>,
    /// Where the others' CPU went in that measurement, busiest first (processes, the
    /// kernel's interrupt work, time the host took).
    pub others_top: Vec<report::OtherCpu>,
    /// Each side in the order it ran, with what it gave.
    pub runs: Vec<(Side, Measured)>,
}

impl Round {
    pub fn new(loadavg: f64, runs: Vec<(Side, Measured)>) -> Round {
        let busiest = runs
            .iter()
            .filter_map(|(_, m)| {
                let n = m.numbers()?;
                Some((n.others_cpu_pct?, &n.others_top))
            })
            .reduce(|a, b| if b.0 > a.0 { b } else { a });
        Round {
            loadavg,
            others_cpu_pct_max: busiest.map(|(pct, _)| pct),
            others_top: busiest.map(|(_, top)| top.clone()).unwrap_or_default(),
            runs,
        }
    }

    pub fn get(&self, side: Side) -> &Measured {
        report::measured_of(&self.runs, side)
    }

    /// IOPS of `a` over IOPS of `b` in this round.
    pub fn over(&self, a: Side, b: Side) -> Option<f64> {
        let b = self.get(b).iops().filter(|i| *i > 0.0)?;
        Some(self.get(a).iops()? / b)
    }
}

/// The ratios a row of the tables shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Ours (glfs) over the fio gfapi ceiling; goal 0.9x.
    OursOverCeiling,
    /// Ours (glfs) over tgt bs_glfs; no goal.
    OursOverTgt,
    /// Ours (memory) over tgt null; goal 1.5x.
    MemoryOverTgtNull,
    /// Ours (memory) over tgt rdwr on tmpfs, a tgt store that holds the bytes; no goal.
    MemoryOverTgtTmpfs,
}

impl Comparison {
    pub const ALL: [Comparison; 4] = [
        Comparison::OursOverCeiling,
        Comparison::OursOverTgt,
        Comparison::MemoryOverTgtNull,
        Comparison::MemoryOverTgtTmpfs,
    ];

    /// (numerator, denominator).
    pub fn sides(self) -> (Side, Side) {
        match self {
            Comparison::OursOverCeiling => (Side::OursGlfs, Side::Ceiling),
            Comparison::OursOverTgt => (Side::OursGlfs, Side::TgtGlfs),
            Comparison::MemoryOverTgtNull => (Side::OursMemory, Side::TgtNull),
            Comparison::MemoryOverTgtTmpfs => (Side::OursMemory, Side::TgtTmpfs),
        }
    }

    pub fn goal(self) -> Option<f64> {
        match self {
            Comparison::OursOverCeiling => Some(super::report::GOAL_OVER_CEILING),
            Comparison::OursOverTgt => None,
            Comparison::MemoryOverTgtNull => Some(super::report::GOAL_OVER_TGT_NULL),
            Comparison::MemoryOverTgtTmpfs => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Comparison::OursOverCeiling => "ours/ceiling",
            Comparison::OursOverTgt => "ours/tgt",
            Comparison::MemoryOverTgtNull => "ours memory/tgt null",
            Comparison::MemoryOverTgtTmpfs => "ours memory/tgt tmpfs",
        }
    }
}

/// A goal judged over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every round at or above the goal (or the only round).
    Met,
    /// Every round below it.
    NotMet,
    /// Some rounds below, some at or above: the median decides met or not, but the
    /// machine moved more than the gap to the goal.
    Unsettled,
}

/// One comparison of one workload over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    pub comparison: Comparison,
    pub goal: Option<f64>,
    /// Each round's ratio, in the order run; None where a side gave no number.
    pub per_round: Vec<Option<f64>>,
    /// The median of the rounds' ratios (the mean of the middle two for an even count).
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Rounds that gave a ratio.
    pub rounds: usize,
    /// The goal judged on the median.
    pub median_met: Option<bool>,
    pub verdict: Option<Verdict>,
}

impl Ratio {
    pub fn of(comparison: Comparison, rounds: &[Round]) -> Ratio {
        let (a, b) = comparison.sides();
        let per_round: Vec<Option<f64>> = rounds.iter().map(|r| r.over(a, b)).collect();
        let present: Vec<f64> = per_round.iter().flatten().copied().collect();
        let median = super::report::median_of(per_round.iter().copied());
        let min = present.iter().copied().reduce(f64::min);
        let max = present.iter().copied().reduce(f64::max);
        let goal = comparison.goal();
        let median_met = goal.zip(median).map(|(g, m)| m >= g);
        let verdict = goal.and_then(|g| Some(verdict(g, min?, max?)));
        Ratio {
            comparison,
            goal,
            per_round,
            median,
            min,
            max,
            rounds: present.len(),
            median_met,
            verdict,
        }
    }

    /// The min..max of the rounds, when more than one round gave a ratio.
    pub fn spread(&self) -> Option<(f64, f64)> {
        (self.rounds > 1).then_some((self.min?, self.max?))
    }
}

/// Met when the lowest round reaches `goal`, not met when even the highest misses it,
/// unsettled in between.
pub fn verdict(goal: f64, min: f64, max: f64) -> Verdict {
    if min >= goal {
        Verdict::Met
    } else if max < goal {
        Verdict::NotMet
    } else {
        Verdict::Unsettled
    }
}

/// What a side gave over the rounds: the run with the median IOPS of those that ran
/// (errors summed over them); a failure when any round failed (the first one's reason),
/// so that it shows and fails the bench; skipped when skipped.
pub fn side_over_rounds(rounds: &[Round], side: Side) -> Measured {
    let mut ok: Vec<Numbers> = Vec::new();
    let mut skipped = None;
    for r in rounds {
        match r.get(side) {
            Measured::Failed(why) => return Measured::Failed(why.clone()),
            Measured::Skipped(why) => skipped = Some(why.clone()),
            Measured::Ok(n) => ok.push(n.clone()),
            Measured::NotRun => {}
        }
    }
    if let Some(why) = skipped {
        return Measured::Skipped(why);
    }
    if ok.is_empty() {
        return Measured::NotRun;
    }
    Measured::Ok(median_run(&mut ok))
}

/// The run with the median IOPS (the upper one of an even count), with the errors of
/// all runs summed.
pub fn median_run(runs: &mut [Numbers]) -> Numbers {
    runs.sort_by(|a, b| a.iops.total_cmp(&b.iops));
    let mut n = runs[runs.len() / 2].clone();
    n.errors = runs.iter().map(|r| r.errors).sum();
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(iops: f64) -> Measured {
        Measured::Ok(Numbers {
            iops,
            ..Numbers::default()
        })
    }

    fn round(runs: &[(Side, f64)]) -> Round {
        Round::new(1.0, runs.iter().map(|&(s, i)| (s, ok(i))).collect())
    }

    #[test]
    fn rounds_alternate_forward_and_reverse_with_each_ratio_s_sides_back_to_back() {
        let all: Vec<Side> = Side::GLFS.iter().chain(&Side::MEMORY).copied().collect();
        use Side::*;
        assert_eq!(
            order(&all, 0),
            [Ceiling, OursGlfs, TgtGlfs, TgtFuse, TgtNull, OursMemory, TgtTmpfs]
        );
        assert_eq!(
            order(&all, 1),
            [TgtTmpfs, OursMemory, TgtNull, TgtFuse, TgtGlfs, OursGlfs, Ceiling]
        );
        assert_eq!(order(&all, 2), order(&all, 0));
        assert_eq!(order(&all, 3), order(&all, 1));
        // Only the sides asked for, in the same relative order whatever order they came in.
        assert_eq!(order(&[OursGlfs, Ceiling], 0), [Ceiling, OursGlfs]);
        assert_eq!(order(&[OursGlfs, Ceiling], 1), [OursGlfs, Ceiling]);
        assert_eq!(order(&[OursMemory], 1), [OursMemory]);
        // Every ratio's two sides run one right after the other in every round.
        for r in 0..4 {
            let o = order(&all, r);
            for c in Comparison::ALL {
                let (a, b) = c.sides();
                let (i, j) = (
                    o.iter().position(|s| *s == a).unwrap(),
                    o.iter().position(|s| *s == b).unwrap(),
                );
                assert_eq!(i.abs_diff(j), 1, "{c:?} in round {r}: {o:?}");
            }
        }
    }

    #[test]
    fn the_schedule_finishes_a_workload_s_rounds_before_the_next_workload() {
        use Side::*;
        let s = schedule(2, &[TgtNull, OursMemory], 3);
        assert_eq!(
            s,
            [
                (0, 0, TgtNull),
                (0, 0, OursMemory),
                (0, 1, OursMemory),
                (0, 1, TgtNull),
                (0, 2, TgtNull),
                (0, 2, OursMemory),
                (1, 0, TgtNull),
                (1, 0, OursMemory),
                (1, 1, OursMemory),
                (1, 1, TgtNull),
                (1, 2, TgtNull),
                (1, 2, OursMemory),
            ]
        );
        // Each side once per round: workloads x rounds x sides measurements.
        assert_eq!(schedule(7, &ROUND_ORDER, 3).len(), 7 * 3 * 7);
        assert!(schedule(7, &ROUND_ORDER, 0).is_empty());
    }

    #[test]
    fn a_row_is_the_median_of_the_rounds_ratios_with_their_spread() {
        use Side::*;
        // The machine slowed down by half in round 2 and sped up in round 3; within a
        // round both sides moved together, so the ratios stay near 0.8.
        let rounds = [
            round(&[(Ceiling, 10_000.0), (OursGlfs, 8_000.0)]),
            round(&[(OursGlfs, 3_900.0), (Ceiling, 5_000.0)]),
            round(&[(Ceiling, 20_000.0), (OursGlfs, 16_400.0)]),
        ];
        let r = Ratio::of(Comparison::OursOverCeiling, &rounds);
        assert_eq!(r.per_round, [Some(0.8), Some(0.78), Some(0.82)]);
        assert_eq!(r.median, Some(0.8));
        assert_eq!((r.min, r.max), (Some(0.78), Some(0.82)));
        assert_eq!(r.spread(), Some((0.78, 0.82)));
        assert_eq!(r.rounds, 3);
        assert_eq!(r.goal, Some(0.9));
        assert_eq!(r.median_met, Some(false));
        assert_eq!(r.verdict, Some(Verdict::NotMet));
        // The median run of each side (by IOPS), not a side's best or a mix of rounds.
        match side_over_rounds(&rounds, Ceiling) {
            Measured::Ok(n) => assert_eq!(n.iops, 10_000.0),
            other => panic!("{other:?}"),
        }
        // ours/tgt has no goal and here no tgt: nothing to judge.
        let t = Ratio::of(Comparison::OursOverTgt, &rounds);
        assert_eq!((t.median, t.verdict, t.median_met), (None, None, None));
        assert_eq!(t.per_round, [None, None, None]);
        // Two rounds: the mean of the two; a round where a side failed gives no ratio.
        let two = [
            round(&[(TgtNull, 100.0), (OursMemory, 140.0)]),
            Round::new(
                2.0,
                vec![
                    (OursMemory, Measured::Failed("died".into())),
                    (TgtNull, ok(100.0)),
                ],
            ),
            round(&[(TgtNull, 100.0), (OursMemory, 160.0)]),
        ];
        let m = Ratio::of(Comparison::MemoryOverTgtNull, &two);
        assert_eq!(m.per_round, [Some(1.4), None, Some(1.6)]);
        assert_eq!(m.rounds, 2);
        assert!((m.median.unwrap() - 1.5).abs() < 1e-12);
        assert_eq!(m.median_met, Some(true));
        assert_eq!(m.verdict, Some(Verdict::Unsettled));
        assert_eq!(
            side_over_rounds(&two, OursMemory),
            Measured::Failed("died".into())
        );
    }

    #[test]
    fn a_goal_is_unsettled_when_the_rounds_straddle_it() {
        assert_eq!(verdict(0.9, 0.91, 1.2), Verdict::Met);
        assert_eq!(verdict(0.9, 0.9, 0.9), Verdict::Met);
        assert_eq!(verdict(0.9, 0.5, 0.89), Verdict::NotMet);
        assert_eq!(verdict(0.9, 0.85, 0.9), Verdict::Unsettled);
        assert_eq!(verdict(1.5, 1.2, 1.7), Verdict::Unsettled);
        use Side::*;
        // The task's example: 4k randwrite 1.25x and 0.73x in two runs ten minutes apart.
        // In rounds: 1.25, 0.73 and 0.95: the median meets the goal, the row is unsettled.
        let rounds = [
            round(&[(Ceiling, 8_000.0), (OursGlfs, 10_000.0)]),
            round(&[(OursGlfs, 7_300.0), (Ceiling, 10_000.0)]),
            round(&[(Ceiling, 10_000.0), (OursGlfs, 9_500.0)]),
        ];
        let r = Ratio::of(Comparison::OursOverCeiling, &rounds);
        assert_eq!(r.median, Some(0.95));
        assert_eq!(r.median_met, Some(true));
        assert_eq!(r.verdict, Some(Verdict::Unsettled));
        // One round: met or not on its one number, no spread.
        let one = Ratio::of(Comparison::OursOverCeiling, &rounds[1..2]);
        assert_eq!((one.verdict, one.spread()), (Some(Verdict::NotMet), None));
    }

    #[test]
    fn a_round_records_its_load_and_its_noisiest_measurement() {
        let n = |iops: f64, others: Option<f64>| {
            Measured::Ok(Numbers {
                iops,
                others_cpu_pct: others,
                others_top: vec![report::OtherCpu {
                    name: format!("busy at {}", others.unwrap_or(0.0)),
                    pct: others.unwrap_or(0.0) / 2.0,
                }],
                ..Numbers::default()
            })
        };
        let r = Round::new(
            3.5,
            vec![
                (Side::TgtNull, n(1.0, Some(12.0))),
                (Side::OursMemory, n(2.0, Some(80.0))),
                (Side::TgtGlfs, Measured::Skipped("no tgt".into())),
                (Side::OursGlfs, n(2.0, None)),
            ],
        );
        assert_eq!(r.others_cpu_pct_max, Some(80.0));
        // Who the others were: those of that noisiest measurement.
        assert_eq!(report::others_text(&r.others_top), "busy at 80 40");
        assert_eq!(r.loadavg, 3.5);
        assert_eq!(r.over(Side::OursMemory, Side::TgtNull), Some(2.0));
        assert_eq!(r.over(Side::OursGlfs, Side::TgtGlfs), None);
        assert_eq!(
            side_over_rounds(std::slice::from_ref(&r), Side::TgtGlfs),
            Measured::Skipped("no tgt".into())
        );
        assert_eq!(
            side_over_rounds(std::slice::from_ref(&r), Side::Ceiling),
            Measured::NotRun
        );
        assert_eq!(Round::new(0.0, vec![]).others_cpu_pct_max, None);
        assert!(Round::new(0.0, vec![]).others_top.is_empty());
    }

    #[test]
    fn the_median_run_sums_the_errors() {
        let mut runs: Vec<Numbers> = [(300.0, 0), (100.0, 1), (200.0, 2)]
            .into_iter()
            .map(|(iops, errors)| Numbers {
                iops,
                errors,
                ..Numbers::default()
            })
            .collect();
        let n = median_run(&mut runs);
        assert_eq!((n.iops, n.errors), (200.0, 3));
        assert_eq!(median_run(&mut runs[..2]).iops, 200.0);
        assert_eq!(median_run(&mut runs[..1]).iops, 100.0);
    }
}
