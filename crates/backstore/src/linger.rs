//! Idle mounts kept for a while (field failure #8).
//!
//! libgfapi leaks memory with every `glfs_new`/`glfs_fini` cycle (glusterfs#818, #61,
//! #57; its advice: mount once, reuse). Stores on one volume already share one mount, but
//! a volume's only LUN removed and added again (`admin lun remove`/`add`, a config apply
//! that takes a LUN away and brings it back, a script cycling LUNs) used to finish the
//! mount with the store and make a new one with the next: one cycle each time.
//!
//! So when the last store on a mount of the registry (`glfs::mount`) goes, the mount is
//! *parked* here for that store's `linger` (bsopt `linger=SECS`, default
//! [`crate::spec::DEFAULT_LINGER_SECS`]): it stays connected, with no file open, and the
//! registry hands it to the next store asking for the same volume, servers and options,
//! with no `glfs_new`. A store that comes and goes again parks it anew, for its own
//! linger from then. Once a parked mount's linger is over with no store on it, a thread
//! of this module (`glfs-linger`) lets it go: `glfs_fini` runs on a thread of its own
//! (`glfs::retire`), as every other finish of a mount. `linger=0` finishes the mount as
//! soon as its last store goes, as before. A mount a failed open made or found with no
//! store on it (a block size refused, a missing file) is parked the same way
//! (`glfs::idle`): the open's error is not held up by `glfs_fini` (10 s on Gluster 10.3
//! here, measured on a refused coherent open), and a second try reuses the mount. At shutdown the daemon finishes every parked
//! mount at once ([`close_idle_mounts`]) rather than waiting out their lingers.
//!
//! A parked mount costs what a mounted volume costs (gfapi's threads, one connection per
//! brick, ~10 MB resident) and nothing per request. If its connection is lost while
//! parked, nothing notices (no request is made on it); the next store to open on it
//! finds it lost, has it reconnected (waiting up to the mount timeout, as any opener of
//! a mount being reconnected) and opens once more (`open_glfs`).

use crate::glfs::{retire, Mount};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Mounts with no store, and when each stops lingering.
struct Parked {
    mounts: Mutex<Vec<(Arc<Mount>, Instant)>>,
    changed: Condvar,
}

fn parked() -> &'static Parked {
    static PARKED: OnceLock<Parked> = OnceLock::new();
    PARKED.get_or_init(|| Parked {
        mounts: Mutex::new(Vec::new()),
        changed: Condvar::new(),
    })
}

fn lock(p: &Parked) -> MutexGuard<'_, Vec<(Arc<Mount>, Instant)>> {
    p.mounts.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `mount`, which its last store has just left, for `linger`. Parking a mount
/// parked already moves its end to `linger` from now if that is later.
pub(crate) fn park(mount: Arc<Mount>, linger: Duration) {
    let until = Instant::now() + linger;
    let p = parked();
    let mut mounts = lock(p);
    match mounts.iter_mut().find(|(m, _)| Arc::ptr_eq(m, &mount)) {
        Some((_, end)) => *end = (*end).max(until),
        None => mounts.push((mount.clone(), until)),
    }
    drop(mounts);
    mount
        .span()
        .in_scope(|| tracing::debug!(?linger, "no LUN left on the mount; keeping it idle"));
    start_watch();
    p.changed.notify_all();
}

/// Starts the thread that lets mounts go when their linger is over (once per process).
fn start_watch() {
    static STARTED: OnceLock<bool> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("glfs-linger".into())
            .spawn(watch);
        if let Err(e) = spawned {
            // Parked mounts then stay until shutdown (or until reused): no leak per cycle.
            tracing::error!("cannot start the thread that finishes idle gfapi mounts: {e}");
        }
        true
    });
}

fn watch() -> ! {
    let p = parked();
    let mut mounts = lock(p);
    loop {
        let now = Instant::now();
        let (over, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *mounts)
            .into_iter()
            .partition(|(_, end)| *end <= now);
        *mounts = kept;
        if !over.is_empty() {
            drop(mounts);
            for (mount, _) in over {
                // A mount a store took again is only given back here; the last reference
                // finishes it (glfs_fini) on a thread of its own.
                if let Some(mount) = Arc::into_inner(mount) {
                    mount.span().in_scope(|| {
                        tracing::info!("the idle mount's linger is over: unmounting it")
                    });
                    retire(mount);
                }
            }
            mounts = lock(p);
            continue;
        }
        mounts = match mounts.iter().map(|(_, end)| *end).min() {
            Some(next) => {
                p.changed
                    .wait_timeout(mounts, next.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => p.changed.wait(mounts).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Finishes every mount that lingers with no store on it, now, on the calling thread
/// (`glfs_fini` of each before it returns; a mount some store took again is only given
/// back). For shutdown, once the stores are closed. Returns how many were let go.
pub fn close_idle_mounts() -> usize {
    let over = std::mem::take(&mut *lock(parked()));
    let n = over.len();
    for (mount, _) in over {
        drop(mount);
    }
    n
}
