//! gfapi's event threads following the CPUs their mount's requests come from
//! ([`crate::Volume::follow_submitters`]).
//!
//! A mount's requests are submitted by the caller's threads (the daemon's connection
//! threads), and their replies are read, and their callbacks run, by the mount's event
//! threads. When the two run on different CPUs, every completion crosses: a wake-up sent to
//! the other CPU and the request's, the buffer's and the caller's cache lines moved along
//! (on a 2-core VM a third of the daemon's CPU per 4k read, docs/performance.md, seventh and
//! eighth rounds). Following, each submission marks its CPU in the mount's set
//! (`sched_getcpu`, a load and rarely an atomic or); every [`WINDOW`] completions an
//! event thread takes the set (and empties it) as the mount's, and each event thread, at
//! its next completion, confines itself to those CPUs of it that it was allowed to start
//! with. One connection thread on one CPU: the
//! event threads run on that CPU; connections on every CPU: on every CPU, as without it;
//! the connection thread moved by the scheduler: the event threads go after it at their
//! next window. Nothing is pinned by hand and no thread but the event thread itself is
//! touched; a thread that has submitted never moves, also when a completion runs on it
//! inline (gfapi's write-behind acknowledges a write within the submitting call). A
//! window in which nothing was submitted changes nothing.
//!
//! CPUs numbered 64 and above are not tracked: a submission from one leaves the set as it
//! is, and a thread allowed to run on one keeps its affinity.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Completions an event thread runs between two looks at where requests come from.
pub const WINDOW: u32 = 128;

/// A mount's following state.
#[derive(Debug, Default)]
pub(crate) struct Follow {
    on: AtomicBool,
    /// CPUs (bit `n`: CPU `n`) that submitted since an event thread last took the set.
    from: AtomicU64,
    /// The set the last window ended with (0: none yet): every event thread of the mount
    /// goes there at its next completion, not only the one whose window ended.
    want: AtomicU64,
}

impl Follow {
    pub(crate) fn enable(&self) {
        self.on.store(true, Ordering::Relaxed);
    }

    pub(crate) fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// A request is being submitted on the calling thread: marks its CPU.
    #[inline]
    pub(crate) fn note_submitter(&self) {
        if !self.enabled() {
            return;
        }
        // A thread that submits never follows, also when gfapi completes a request on it
        // inline (write-behind acknowledges a write within the call): else it would
        // confine itself, the connection thread, to the CPU it is on.
        SUBMITTER.with(|s| s.set(true));
        // SAFETY: no arguments; glibc reads the CPU from rseq (or the vDSO).
        let cpu = unsafe { libc::sched_getcpu() };
        let Some(bit) = cpu_bit(cpu) else { return };
        // Read first: the set usually has the bit already, and a load keeps the cache
        // line shared with the event threads.
        if self.from.load(Ordering::Relaxed) & bit == 0 {
            self.from.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// A completion runs on the calling (event) thread: every [`WINDOW`] of them, the
    /// thread takes the set of CPUs requests came from as the mount's; each event thread
    /// confines itself to the mount's set when it changed.
    #[inline]
    pub(crate) fn on_completion(&self) {
        if !self.enabled() || SUBMITTER.with(Cell::get) {
            return;
        }
        let due = COUNT.with(|c| {
            let n = c.get() + 1;
            c.set(if n >= WINDOW { 0 } else { n });
            n >= WINDOW
        });
        if due {
            let from = self.from.swap(0, Ordering::Relaxed);
            if from != 0 && self.want.load(Ordering::Relaxed) != from {
                self.want.store(from, Ordering::Relaxed);
            }
        }
        let want = self.want.load(Ordering::Relaxed);
        if want != 0 && SEEN.with(|s| s.replace(want)) != want {
            follow(want);
        }
    }
}

/// Confines the calling thread to the CPUs of `from` it may use.
#[cold]
fn follow(from: u64) {
    let Some(allowed) = ALLOWED.with(|a| {
        if a.get() == UNKNOWN {
            a.set(current_affinity().unwrap_or(0));
        }
        Some(a.get()).filter(|&m| m != 0)
    }) else {
        return;
    };
    let Some(want) = target(from, allowed) else {
        return;
    };
    if CURRENT.with(|c| c.get()) == want {
        return;
    }
    match set_affinity(want) {
        Ok(()) => CURRENT.with(|c| c.set(want)),
        Err(e) => {
            // Leave this thread alone from now on (a cpuset of the cgroup may forbid it).
            tracing::debug!("gfapi event thread cannot follow its submitters: {e}");
            ALLOWED.with(|a| a.set(0));
        }
    }
}

/// Not yet read.
const UNKNOWN: u64 = u64::MAX;

thread_local! {
    /// This thread submitted requests: it is not an event thread to move.
    static SUBMITTER: Cell<bool> = const { Cell::new(false) };
    /// Completions since this thread's last window.
    static COUNT: Cell<u32> = const { Cell::new(0) };
    /// The CPUs this thread was allowed when it first followed (0: never follow, e.g. a
    /// CPU above 63 was allowed; [`UNKNOWN`] before).
    static ALLOWED: Cell<u64> = const { Cell::new(UNKNOWN) };
    /// The set this thread last confined itself to (0: none yet).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// The mount's set this thread last went after (0: none yet).
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// The bit of `cpu` in a set, if it is tracked.
fn cpu_bit(cpu: i32) -> Option<u64> {
    u32::try_from(cpu)
        .ok()
        .filter(|&c| c < 64)
        .map(|c| 1u64 << c)
}

/// The CPUs an event thread allowed `allowed` runs on after a window in which requests
/// came from `from`: those of `from` it may use; all of `allowed` when requests came only
/// from CPUs it may not use; `None` (no change) when nothing was submitted.
pub fn target(from: u64, allowed: u64) -> Option<u64> {
    if from == 0 {
        return None;
    }
    match from & allowed {
        0 => Some(allowed),
        both => Some(both),
    }
}

/// The calling thread's affinity as a set of CPUs 0 to 63; `None` if it may run on a CPU
/// above 63 or the call fails.
pub fn current_affinity() -> Option<u64> {
    // SAFETY: an all-zero cpu_set_t is valid; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is a cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return None;
    }
    let mut bits = 0u64;
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: cpu is below CPU_SETSIZE.
        if unsafe { libc::CPU_ISSET(cpu, &set) } {
            if cpu >= 64 {
                return None;
            }
            bits |= 1 << cpu;
        }
    }
    Some(bits)
}

/// Confines the calling thread to the CPUs of `bits` (not empty).
pub fn set_affinity(bits: u64) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..64 {
        if bits & (1 << cpu) != 0 {
            // SAFETY: cpu is below 64, within the set.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_where_requests_came_from_within_what_is_allowed() {
        // Nothing submitted in the window: no change.
        assert_eq!(target(0, 0b11), None);
        // One connection thread on CPU 1 of CPUs 0 and 1.
        assert_eq!(target(0b10, 0b11), Some(0b10));
        // Submitters on both: both, as without following.
        assert_eq!(target(0b11, 0b11), Some(0b11));
        // A submitter on CPU 2, which this thread may not use, and one on CPU 0.
        assert_eq!(target(0b101, 0b011), Some(0b001));
        // Only from CPUs it may not use: back to all it may use.
        assert_eq!(target(0b100, 0b011), Some(0b011));
        assert_eq!(cpu_bit(0), Some(1));
        assert_eq!(cpu_bit(63), Some(1 << 63));
        assert_eq!(cpu_bit(64), None);
        assert_eq!(cpu_bit(-1), None);
    }

    /// Marks a submission from a thread confined to `cpus`.
    fn mark(f: &Follow, cpus: u64) {
        std::thread::scope(|s| {
            s.spawn(|| {
                set_affinity(cpus).unwrap();
                f.note_submitter();
            });
        });
    }

    /// A thread follows the CPU marked by submissions after a window of completions,
    /// and goes back to all it may use when they come from everywhere it may run.
    #[test]
    fn an_event_thread_follows_the_submitting_cpu_after_a_window() {
        let Some(allowed) = current_affinity() else {
            return; // more than 64 CPUs: not tracked (checked by the target test)
        };
        let last = 63 - allowed.leading_zeros();
        let f = Follow::default();
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                // Off: submissions and completions change nothing.
                mark(&f, 1 << last);
                for _ in 0..2 * WINDOW {
                    f.on_completion();
                }
                let off = current_affinity();
                f.enable();
                mark(&f, 1 << last);
                for _ in 0..WINDOW {
                    f.on_completion();
                }
                let followed = current_affinity();
                for cpu in 0..64 {
                    if allowed & (1 << cpu) != 0 {
                        mark(&f, 1 << cpu);
                    }
                }
                for _ in 0..WINDOW {
                    f.on_completion();
                }
                (off, followed, current_affinity())
            })
            .join()
            .unwrap()
        });
        assert_eq!(seen, (Some(allowed), Some(1 << last), Some(allowed)));
    }

    /// A request completed inline on the thread that submitted it (gfapi's write-behind
    /// does that for writes) does not move that thread, however many there are.
    #[test]
    fn a_submitter_completing_inline_keeps_its_cpus() {
        let Some(allowed) = current_affinity() else {
            return;
        };
        let f = Follow::default();
        f.enable();
        let kept = std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..4 * WINDOW {
                    f.note_submitter();
                    f.on_completion();
                }
                current_affinity()
            })
            .join()
            .unwrap()
        });
        assert_eq!(kept, Some(allowed));
    }
}
