//! The scheduling policy of gfapi's threads (bsopt `batch-sched`).
//!
//! gfapi starts its threads (event threads, timer, syncop workers) from the thread that
//! calls `glfs_new`/`glfs_init`, and a new thread inherits its creator's policy. So a mount
//! made on a thread under `SCHED_BATCH` has every gfapi thread under it: when a brick's
//! reply wakes an event thread, the event thread does not preempt the thread running on
//! that CPU (the connection passing a batch of commands to gfapi); it runs at the next
//! scheduling point, with an ordinary share of the CPU.

/// Puts the calling thread under `SCHED_BATCH` (priority 0; allowed without privileges).
pub(crate) fn batch_current_thread() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> i32 {
        // SAFETY: no arguments but the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    /// The thread that mounts is put under SCHED_BATCH, and the threads it starts (as
    /// gfapi starts its own) are too; threads started elsewhere are not.
    #[test]
    fn a_batch_thread_and_the_threads_it_starts_run_under_sched_batch() {
        let (own, child) = std::thread::spawn(|| {
            batch_current_thread().unwrap();
            let child = std::thread::spawn(policy).join().unwrap();
            (policy(), child)
        })
        .join()
        .unwrap();
        assert_eq!((own, child), (libc::SCHED_BATCH, libc::SCHED_BATCH));
        assert_eq!(
            std::thread::spawn(policy).join().unwrap(),
            libc::SCHED_OTHER
        );
    }
}
