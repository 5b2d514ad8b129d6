//! Many sessions at once: one thread and one libiscsi session each, all logged in
//! before any of them starts, their counts summed and their latencies merged.

use crate::engine::{run, Outcome};
use crate::session::Session;
use crate::stats::{Histogram, Report};
use crate::workload::{Rw, Workload};
use anyhow::{Context, Result};
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// The initiator name of session `i` of `sessions`: the given name when there is
/// one session, else the name with `-s<i>` appended, so that no two sessions share an
/// I_T nexus (a second login with the same name and ISID would reinstate the first).
pub fn initiator_of(initiator: &str, i: u32, sessions: u32) -> String {
    if sessions <= 1 {
        initiator.to_string()
    } else {
        format!("{initiator}-s{i}")
    }
}

/// Logs `sessions` sessions in to `url`, then runs `workload` on each of them at
/// the same time (each keeps its own queue depth in flight) and combines what they
/// measured. Each session gets its own seed, so their offsets differ.
pub fn run_sessions(
    url: &str,
    initiator: &str,
    sessions: u32,
    workload: &Workload,
    header_digest: bool,
) -> Result<Outcome> {
    anyhow::ensure!(sessions >= 1, "at least one session");
    let start = Arc::new(Barrier::new(sessions as usize));
    let threads: Vec<_> = (0..sessions)
        .map(|i| {
            let url = url.to_string();
            let name = initiator_of(initiator, i, sessions);
            let start = Arc::clone(&start);
            let workload = Workload {
                seed: workload
                    .seed
                    .wrapping_add(u64::from(i).wrapping_mul(0x9e37_79b9)),
                ..workload.clone()
            };
            std::thread::Builder::new()
                .name(format!("session-{i}"))
                .spawn(move || {
                    let session = Session::connect_with_digest(&url, &name, header_digest);
                    // Every thread reaches the barrier, logged in or not.
                    start.wait();
                    let session = session.with_context(|| format!("session {i} ({name})"))?;
                    run(&session, &workload)
                })
                .context("starting a session thread")
        })
        .collect::<Result<_>>()?;
    let mut outcomes = Vec::with_capacity(threads.len());
    for t in threads {
        outcomes.push(
            t.join()
                .map_err(|_| anyhow::anyhow!("a session thread panicked"))??,
        );
    }
    Ok(combine(&outcomes))
}

/// One outcome from the outcomes of sessions that ran side by side: counts and
/// latencies summed, IOPS over the mean window (so the sum of the sessions' IOPS),
/// the process's CPU share as the highest any session saw.
pub fn combine(outcomes: &[Outcome]) -> Outcome {
    let Some(first) = outcomes.first() else {
        return Outcome {
            report: Report::new(
                Rw::RandRead,
                0,
                0,
                0,
                0,
                0,
                Duration::ZERO,
                &Histogram::default(),
            ),
            error_messages: Vec::new(),
            latency: Histogram::default(),
        };
    };
    let mut latency = Histogram::default();
    let (mut reads, mut writes, mut errors, mut secs) = (0, 0, 0, 0.0);
    let mut messages = Vec::new();
    for o in outcomes {
        latency.merge(&o.latency);
        reads += o.report.reads;
        writes += o.report.writes;
        errors += o.report.errors;
        secs += o.report.seconds;
        messages.extend(
            o.error_messages
                .iter()
                .take(5 - messages.len().min(5))
                .cloned(),
        );
    }
    let window = Duration::from_secs_f64(secs / outcomes.len() as f64);
    let mut report = Report::new(
        first.report.rw,
        first.report.bs,
        first.report.qd,
        reads,
        writes,
        errors,
        window,
        &latency,
    );
    report.cpu_pct = outcomes
        .iter()
        .map(|o| o.report.cpu_pct)
        .fold(0.0, f64::max);
    report.sessions = outcomes.len() as u32;
    report.segments_out = outcomes.iter().map(|o| o.report.segments_out).sum();
    Outcome {
        report,
        error_messages: messages,
        latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(reads: u64, ns: u64, secs: u64, cpu: f64) -> Outcome {
        let mut h = Histogram::default();
        for _ in 0..reads {
            h.record(Duration::from_nanos(ns));
        }
        let mut report = Report::new(
            Rw::RandRead,
            4096,
            32,
            reads,
            0,
            0,
            Duration::from_secs(secs),
            &h,
        );
        report.cpu_pct = cpu;
        report.segments_out = Some(reads + 2);
        Outcome {
            report,
            error_messages: vec![format!("e{reads}")],
            latency: h,
        }
    }

    #[test]
    fn sessions_sum_their_commands_and_merge_their_latencies() {
        // 300 fast reads in 1 s, 100 slow ones in 1 s: 400 IOPS together; the
        // slowest quarter is the slow session.
        let all = combine(&[outcome(300, 10, 1, 40.0), outcome(100, 50, 1, 55.0)]);
        assert_eq!(all.report.ios, 400);
        assert_eq!(all.report.iops, 400.0);
        assert_eq!(all.report.sessions, 2);
        assert_eq!(all.latency.len(), 400);
        assert_eq!(all.latency.quantile_ns(0.75), 10);
        assert_eq!(all.latency.quantile_ns(0.76), 50);
        assert_eq!(all.report.cpu_pct, 55.0);
        assert_eq!(all.report.segments_out, Some(302 + 102));
        assert_eq!(all.error_messages, ["e300", "e100"]);
    }

    #[test]
    fn a_session_without_a_segment_count_leaves_the_sum_unknown() {
        let mut unknown = outcome(100, 50, 1, 55.0);
        unknown.report.segments_out = None;
        let all = combine(&[outcome(300, 10, 1, 40.0), unknown]);
        assert_eq!(all.report.segments_out, None);
    }

    #[test]
    fn no_sessions_combine_to_nothing() {
        let none = combine(&[]);
        assert_eq!((none.report.ios, none.report.iops), (0, 0.0));
    }

    #[test]
    fn each_session_has_its_own_initiator_name() {
        assert_eq!(initiator_of("iqn.x:load", 0, 1), "iqn.x:load");
        assert_eq!(initiator_of("iqn.x:load", 3, 8), "iqn.x:load-s3");
    }
}
