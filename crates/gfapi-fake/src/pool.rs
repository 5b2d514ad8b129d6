//! A small growable worker pool that runs the `*_async` operations (and their
//! callbacks) off the caller's thread.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads started eagerly on first use.
const MIN_WORKERS: usize = 4;
/// Upper bound; more threads are started while every worker is busy (e.g. hung by a
/// fault rule) so that a hang never blocks unrelated completions.
const MAX_WORKERS: usize = 64;

struct Pool {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State::default()),
        ready: Condvar::new(),
    })
}

fn worker() {
    let p = pool();
    let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = st.queue.pop_front() {
            drop(st);
            job();
            st = p.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.idle += 1;
        st = p.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        st.idle -= 1;
    }
}

/// Queues `job` to run on a pool thread.
pub fn submit(job: Job) {
    let p = pool();
    let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
    st.queue.push_back(job);
    let want = if st.workers < MIN_WORKERS {
        MIN_WORKERS - st.workers
    } else if st.idle < st.queue.len() && st.workers < MAX_WORKERS {
        1
    } else {
        0
    };
    for _ in 0..want {
        let spawned = std::thread::Builder::new()
            .name("gfapi-fake-io".into())
            .spawn(worker);
        if spawned.is_ok() {
            st.workers += 1;
        }
    }
    drop(st);
    p.ready.notify_one();
}
