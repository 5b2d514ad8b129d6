//! A small growable worker pool that runs the `*_async` operations (and their
//! callbacks) off the caller's thread.
//!
//! At least [`MIN_WORKERS`] threads; one more is started while queued jobs outnumber idle
//! workers, up to [`MAX_WORKERS`] threads that are *not* blocked in a fault delay or
//! hang (see [`blocked`]). Workers blocked by a fault do not count, so hung operations
//! never stall unrelated completions; surplus threads exit once idle.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads started eagerly on first use.
pub const MIN_WORKERS: usize = 4;
/// Most threads not blocked by a fault rule.
pub const MAX_WORKERS: usize = 64;

/// Starts one worker thread for a pool.
type Spawner = fn(&'static Pool) -> std::io::Result<()>;

/// A worker pool.
pub struct Pool {
    state: Mutex<State>,
    ready: Condvar,
    max: usize,
    spawn: Spawner,
}

struct State {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
    /// Workers inside a [`blocked`] section.
    blocked: usize,
}

thread_local! {
    /// The pool this thread is a worker of.
    static WORKER_OF: Cell<Option<&'static Pool>> = const { Cell::new(None) };
    /// Tests: a pool to use instead of the global one for submissions from this thread.
    #[cfg(test)]
    static TEST_POOL: Cell<Option<&'static Pool>> = const { Cell::new(None) };
}

static GLOBAL: Pool = Pool::new(MAX_WORKERS, spawn_thread);

/// Starts a real worker thread. It runs on the CPUs the first worker was started with,
/// whichever thread's submission starts it: gfapi's own threads are started by the
/// mount, and a thread that submits (say one confined to a CPU) never passes its CPUs on
/// to them. Without that a worker the pool grows by while such a thread submits would
/// inherit its affinity (seen as `backstore::suite`'s follow-cpu=off check finding a
/// completion on the submitter's CPU under load).
pub fn spawn_thread(p: &'static Pool) -> std::io::Result<()> {
    static ORIGIN: std::sync::OnceLock<Option<libc::cpu_set_t>> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| {
        // SAFETY: an all-zero cpu_set_t is valid; sched_getaffinity writes at most its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; `set` is a cpu_set_t of the size passed.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        (rc == 0).then_some(set)
    });
    std::thread::Builder::new()
        .name("gfapi-fake-io".into())
        .spawn(move || {
            if let Some(set) = origin {
                // SAFETY: pid 0 is this thread; `set` is a valid cpu_set_t of the size
                // passed. A failure leaves the inherited CPUs, as before.
                unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
            }
            p.work()
        })
        .map(|_| ())
}

/// The pool the `*_async` calls submit to.
pub fn current() -> &'static Pool {
    #[cfg(test)]
    if let Some(p) = TEST_POOL.with(|t| t.get()) {
        return p;
    }
    &GLOBAL
}

/// Tests: makes submissions from this thread go to `p` (None: the global pool).
#[cfg(test)]
pub fn use_on_this_thread(p: Option<&'static Pool>) {
    TEST_POOL.with(|t| t.set(p));
}

impl Pool {
    /// A pool of at most `max` unblocked workers started by `spawn`.
    pub const fn new(max: usize, spawn: Spawner) -> Pool {
        Pool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: 0,
                idle: 0,
                blocked: 0,
            }),
            ready: Condvar::new(),
            max,
            spawn,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts workers as needed: up to [`MIN_WORKERS`], then one while queued jobs
    /// outnumber idle workers and fewer than `max` workers are unblocked.
    fn grow(&'static self, st: &mut State) {
        let want = if st.workers < MIN_WORKERS {
            MIN_WORKERS - st.workers
        } else if st.idle < st.queue.len() && st.workers - st.blocked < self.max {
            1
        } else {
            0
        };
        for _ in 0..want {
            if (self.spawn)(self).is_ok() {
                st.workers += 1;
            }
        }
    }

    fn work(&'static self) {
        WORKER_OF.with(|w| w.set(Some(self)));
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                job();
                st = self.lock();
                continue;
            }
            if st.workers > self.max {
                // Started while others were blocked; not needed now.
                st.workers -= 1;
                return;
            }
            st.idle += 1;
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
    }

    /// Queues `job` to run on a pool thread; EAGAIN (job dropped, not run) when the pool
    /// has no thread and none could be started.
    pub fn submit(&'static self, job: Job) -> Result<(), i32> {
        let mut st = self.lock();
        st.queue.push_back(job);
        self.grow(&mut st);
        if st.workers == 0 {
            // Nothing would ever run it (the queue was empty: earlier submissions failed
            // the same way).
            st.queue.pop_back();
            return Err(libc::EAGAIN);
        }
        drop(st);
        self.ready.notify_one();
        Ok(())
    }
}

/// Marks the current pool thread (if it is one) as blocked, e.g. by a fault delay or
/// hang, until the guard is dropped; it then no longer counts against the pool's bound,
/// and a thread is started for queued jobs if none is idle.
pub fn blocked() -> Blocked {
    let pool = WORKER_OF.with(|w| w.get());
    if let Some(p) = pool {
        let mut st = p.lock();
        st.blocked += 1;
        p.grow(&mut st);
    }
    Blocked(pool)
}

/// See [`blocked`].
pub struct Blocked(Option<&'static Pool>);

impl Drop for Blocked {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            p.lock().blocked -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    fn no_threads(_: &'static Pool) -> std::io::Result<()> {
        Err(std::io::Error::other("no threads"))
    }

    #[test]
    fn a_pool_that_cannot_start_threads_refuses_jobs() {
        let p: &'static Pool = Box::leak(Box::new(Pool::new(4, no_threads)));
        static RAN: AtomicBool = AtomicBool::new(false);
        let r = p.submit(Box::new(|| RAN.store(true, Ordering::SeqCst)));
        assert_eq!(r, Err(libc::EAGAIN));
        assert!(!RAN.load(Ordering::SeqCst));
        assert!(
            p.lock().queue.is_empty(),
            "the refused job is not left queued"
        );
    }

    #[test]
    fn blocked_workers_do_not_count_against_the_bound() {
        // MIN_WORKERS threads start anyway; with max = MIN_WORKERS, blocking all of them
        // must still let a further job run.
        let p: &'static Pool = Box::leak(Box::new(Pool::new(MIN_WORKERS, spawn_thread)));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Arc::new(Mutex::new(release_rx));
        let (started_tx, started_rx) = mpsc::channel::<()>();
        for _ in 0..MIN_WORKERS + 2 {
            let rx = release_rx.clone();
            let started = started_tx.clone();
            p.submit(Box::new(move || {
                let _b = blocked();
                started.send(()).unwrap();
                let _ = rx.lock().unwrap().recv();
            }))
            .unwrap();
        }
        for _ in 0..MIN_WORKERS + 2 {
            started_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("every blocked job got a thread");
        }
        let (done_tx, done_rx) = mpsc::channel();
        p.submit(Box::new(move || done_tx.send(()).unwrap()))
            .unwrap();
        done_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("a job runs while all other workers are blocked");
        drop(release_tx);
    }
}
