//! Sides bound to cores of their own: the digest pairs run their two sides at the same
//! time, each side's daemon and initiator on one core. Left to the scheduler, four busy
//! processes on two cores share them differently from one pair to the next (which
//! daemon wakes beside which initiator, who migrates), and that moved a pair's CPU per
//! command by far more than the digests cost (pairs 0.79..1.39 in one bench).
//!
//! A forked process starts with the affinity of the thread that forked it, and its
//! threads with the process's: binding the measuring thread while it starts a side's
//! processes binds all of them, and nothing of the daemon or the load generator changes.

use gfapi::follow::{current_affinity, set_affinity};

/// The two lowest CPUs the calling thread may run on; `None` with fewer than two (or a
/// CPU above 63 allowed, or the call failing): the sides then share what there is.
pub fn two_cores() -> Option<[usize; 2]> {
    let allowed = current_affinity()?;
    let first = allowed.trailing_zeros() as usize;
    let rest = allowed & !(1u64 << first);
    (rest != 0).then(|| [first, rest.trailing_zeros() as usize])
}

/// Runs `f` with the calling thread bound to `core` (unbound for `None`) and puts the
/// thread's affinity back afterwards, also when `f` panics. Processes `f` starts inherit
/// the binding and keep it after `f` returns.
pub fn on_core<T>(core: Option<usize>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(bits) = self.0 {
                let _ = set_affinity(bits);
            }
        }
    }
    let _restore = match core {
        Some(cpu) if cpu < 64 => {
            let before = current_affinity();
            match set_affinity(1 << cpu) {
                Ok(()) => Restore(before),
                Err(_) => Restore(None),
            }
        }
        _ => Restore(None),
    };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPUs a process may run on, from its own view (`/proc/self/status`).
    fn cpus_of_a_child() -> String {
        let out = std::process::Command::new("sh")
            .args(["-c", "grep Cpus_allowed_list /proc/self/status"])
            .output()
            .expect("sh runs");
        String::from_utf8(out.stdout)
            .expect("text")
            .trim()
            .trim_start_matches("Cpus_allowed_list:")
            .trim()
            .to_string()
    }

    #[test]
    fn a_process_started_on_a_core_runs_there_and_the_thread_is_unbound_after() {
        // On a thread of its own: the binding must not leak into other tests.
        std::thread::spawn(|| {
            let before = current_affinity().expect("affinity readable");
            assert_eq!(two_cores().is_some(), before.count_ones() >= 2);
            let Some([a, b]) = two_cores() else {
                return; // one CPU: nothing to bind apart
            };
            assert!(a < b, "two different cores, lowest first: {a} {b}");
            assert_ne!(before & (1 << a), 0);
            assert_ne!(before & (1 << b), 0);
            for core in [a, b] {
                let (inside, child) =
                    on_core(Some(core), || (current_affinity(), cpus_of_a_child()));
                assert_eq!(inside, Some(1 << core));
                assert_eq!(child, core.to_string(), "the child inherits the core");
            }
            assert_eq!(current_affinity(), Some(before), "put back");
            // Unbound: nothing changes.
            let inside = on_core(None, current_affinity);
            assert_eq!(inside, Some(before));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_binding_is_put_back_when_the_work_panics() {
        std::thread::spawn(|| {
            let before = current_affinity().expect("affinity readable");
            let Some([a, _]) = two_cores() else {
                return;
            };
            let r = std::panic::catch_unwind(|| on_core(Some(a), || panic!("inside")));
            assert!(r.is_err());
            assert_eq!(current_affinity(), Some(before));
        })
        .join()
        .unwrap();
    }
}
