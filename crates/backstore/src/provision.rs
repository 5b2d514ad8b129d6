//! How a LUN's blocks are provided (`provisioning = thin | full`).
//!
//! * `thin` (the default): the backing file may be sparse; the LU reports logical block
//!   provisioning (LBPME, the Logical Block Provisioning VPD page) and UNMAP deallocates.
//!   A write to a block never written may find the volume full (SPACE ALLOCATION FAILED).
//! * `full`: every block of the file is allocated on its storage (`fallocate`, keeping
//!   size and data: unwritten extents where the file system has them) when the LUN opens,
//!   and the blocks a resize adds before the LU sees them; the store reports no discard, so
//!   the LU is fully provisioned (LBPME 0, no UNMAP, WRITE SAME writes its zeroes) and
//!   nothing the hosts do gives blocks back. A volume without room for the whole file
//!   refuses the LUN with an error saying so, instead of failing writes later; a file
//!   created by that open is removed again.
//!
//! The allocation goes in chunks of [`CHUNK`], with progress in the log every few
//! seconds for a large file; blocks already allocated cost the file system little.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How a LUN's blocks are provided (module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Provisioning {
    /// Sparse; UNMAP deallocates.
    #[default]
    Thin,
    /// Every block allocated before the LU is served; no UNMAP.
    Full,
}

impl Provisioning {
    /// The name the command line and the config file use.
    pub fn as_str(self) -> &'static str {
        match self {
            Provisioning::Thin => "thin",
            Provisioning::Full => "full",
        }
    }
}

impl fmt::Display for Provisioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provisioning {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "thin" => Ok(Provisioning::Thin),
            "full" => Ok(Provisioning::Full),
            other => Err(format!("provisioning {other:?} is not thin or full")),
        }
    }
}

/// The most one allocation call covers.
pub const CHUNK: u64 = 1 << 30;

/// At most how often the progress sink is told (`crate::progress`).
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// How often progress is logged while a large file is allocated.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why blocks could not be allocated: the failed call's errno, and what to tell the
/// operator ([`fmt::Display`]).
#[derive(Debug)]
pub(crate) struct AllocError {
    pub errno: Option<i32>,
    reason: String,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Allocates the bytes `[start, end)` with `allocate(offset, len)` calls of at most
/// [`CHUNK`] bytes, in order, stopping at the first that fails (its errno); `progress(done,
/// total)` is told after each call.
pub(crate) fn allocate_range(
    start: u64,
    end: u64,
    mut allocate: impl FnMut(u64, u64) -> Result<(), Option<i32>>,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), AllocError> {
    let total = end.saturating_sub(start);
    let mut offset = start;
    while offset < end {
        let len = (end - offset).min(CHUNK);
        if let Err(errno) = allocate(offset, len) {
            return Err(AllocError {
                errno,
                reason: reason(errno, offset - start, total),
            });
        }
        offset += len;
        progress(offset - start, total);
    }
    Ok(())
}

/// What a failed allocation tells the operator.
fn reason(errno: Option<i32>, done: u64, total: u64) -> String {
    let size = units::format_human(total);
    match errno {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => format!(
            "no room on the storage to allocate all {size} of the file (full provisioning \
             allocates every block; {} were allocated before it ran out): free space, or \
             use provisioning thin",
            units::format_human(done)
        ),
        Some(libc::EOPNOTSUPP) => "the file system under the file cannot allocate blocks ahead \
             (fallocate is not supported there), which full provisioning needs: use \
             provisioning thin"
            .to_string(),
        Some(n) => format!(
            "allocating the file's {size} failed after {}: {}",
            units::format_human(done),
            std::io::Error::from_raw_os_error(n)
        ),
        None => format!(
            "allocating the file's {size} failed after {}",
            units::format_human(done)
        ),
    }
}

/// [`allocate_range`] with its progress in the log (a line when a file larger than
/// [`CHUNK`] starts, every [`PROGRESS_EVERY`] while it goes on, and when it is done) and
/// to this thread's progress sink (`crate::progress`: at the start, after each chunk, at
/// most every [`REPORT_EVERY`], and at the end).
pub(crate) fn allocate_logged(
    what: &str,
    start: u64,
    end: u64,
    allocate: impl FnMut(u64, u64) -> Result<(), Option<i32>>,
) -> Result<(), AllocError> {
    let total = end.saturating_sub(start);
    let large = total > CHUNK;
    let began = Instant::now();
    let mut last = began;
    if large {
        tracing::info!(
            "{what}: allocating {} (full provisioning)",
            units::format_human(total)
        );
    }
    let report = |done| {
        crate::progress::report(&crate::progress::Progress {
            what: format!("{what}: allocating"),
            done,
            total,
        })
    };
    report(0);
    let mut reported = began;
    allocate_range(start, end, allocate, |done, total| {
        if done == total || reported.elapsed() >= REPORT_EVERY {
            reported = Instant::now();
            report(done);
        }
        if large && done < total && last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            tracing::info!(
                "{what}: allocated {} of {} ({}%)",
                units::format_human(done),
                units::format_human(total),
                done * 100 / total
            );
        }
    })?;
    if large {
        tracing::info!(
            "{what}: allocated {} in {:.1} s",
            units::format_human(total),
            began.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_reports_its_start_and_end_to_the_threads_progress_sink() {
        use std::cell::RefCell;
        use std::rc::Rc;
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        let total = 3 * CHUNK + 1;
        crate::progress::with_sink(
            move |p: &crate::progress::Progress| {
                s.borrow_mut().push((p.what.clone(), p.done, p.total))
            },
            || allocate_logged("file /x", 0, total, |_, _| Ok(())).unwrap(),
        );
        let seen = seen.borrow();
        assert_eq!(
            seen.first().unwrap(),
            &("file /x: allocating".into(), 0, total)
        );
        assert_eq!(seen.last().unwrap().1, total);
        assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1), "{seen:?}");
        assert!(seen.iter().all(|(_, _, t)| *t == total));
        // A failed allocation is an error with its errno.
        let calls = Rc::new(RefCell::new(0));
        let c = calls.clone();
        let err = allocate_logged("file /y", 0, total, move |_, _| {
            *c.borrow_mut() += 1;
            if *c.borrow() == 2 {
                Err(Some(libc::ENOSPC))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.errno, Some(libc::ENOSPC));
    }

    #[test]
    fn names_read_back_and_anything_else_is_refused() {
        for p in [Provisioning::Thin, Provisioning::Full] {
            assert_eq!(p.to_string().parse::<Provisioning>(), Ok(p));
        }
        assert_eq!("thin".parse::<Provisioning>(), Ok(Provisioning::Thin));
        assert_eq!("full".parse::<Provisioning>(), Ok(Provisioning::Full));
        let err = "thick".parse::<Provisioning>().unwrap_err().to_string();
        assert!(
            err.contains("\"thick\"") && err.contains("thin or full"),
            "{err}"
        );
        assert_eq!(Provisioning::default(), Provisioning::Thin);
    }

    #[test]
    fn the_range_is_allocated_in_chunks_that_tile_it_in_order() {
        let start = 4096;
        let end = start + 2 * CHUNK + 12345;
        let mut calls = Vec::new();
        let mut told = Vec::new();
        allocate_range(
            start,
            end,
            |o, l| {
                calls.push((o, l));
                Ok(())
            },
            |done, total| told.push((done, total)),
        )
        .unwrap();
        assert_eq!(
            calls,
            vec![
                (start, CHUNK),
                (start + CHUNK, CHUNK),
                (start + 2 * CHUNK, 12345)
            ]
        );
        let total = 2 * CHUNK + 12345;
        assert_eq!(
            told,
            vec![(CHUNK, total), (2 * CHUNK, total), (total, total)]
        );
        // Nothing to allocate: no call.
        allocate_range(7, 7, |_, _| panic!("no call"), |_, _| panic!("no progress")).unwrap();
    }

    #[test]
    fn a_failure_stops_the_allocation_and_says_what_to_do() {
        let mut calls = 0;
        let err = allocate_range(
            0,
            3 * CHUNK,
            |o, _| {
                calls += 1;
                if o == CHUNK {
                    Err(Some(libc::ENOSPC))
                } else {
                    Ok(())
                }
            },
            |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert_eq!(calls, 2, "nothing after the failed call");
        assert!(
            err.contains("no room") && err.contains("all 3.0 GiB"),
            "{err}"
        );
        assert!(err.contains("1.0 GiB were allocated"), "{err}");
        assert!(err.contains("provisioning thin"), "{err}");

        let err = allocate_range(0, 10, |_, _| Err(Some(libc::EOPNOTSUPP)), |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("fallocate is not supported"), "{err}");
        let err = allocate_range(0, 10, |_, _| Err(Some(libc::EIO)), |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("Input/output error"), "{err}");
    }
}
