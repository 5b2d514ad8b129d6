//! The end of a shutdown: once the connections are drained, every LUN's store is flushed
//! and closed, within a time limit (what is left of `--shutdown-grace`).
//!
//! A store on a volume that hangs (every brick paused or unreachable) can take minutes to
//! flush, and its close can too: `glfs_fini` waits for the volume's graph to wind down.
//! Shutdown does not wait for that past the limit: the flushes and the close run on a
//! thread of their own, and [`close_stores`] returns at the limit, naming what had not
//! finished, so the process can exit. Writes acknowledged as durable (FUA, or before a
//! good SYNCHRONIZE CACHE) are on the volume already; what a store that did not finish
//! may lose is only what a write-back cache had not yet flushed, as in a crash.

use crate::Targets;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store_api::{Completion, IoRequest};

/// What had not finished when the limit came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    /// The flushes of these LUNs (`target LUN n`) had not completed.
    Flush(Vec<String>),
    /// Every flush had completed, but closing the stores had not.
    Close,
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfinished::Flush(luns) => write!(f, "flush not finished for {}", luns.join(", ")),
            Unfinished::Close => write!(f, "flushed, but closing the stores had not finished"),
        }
    }
}

/// Flushes every store of `targets`, then drops `targets` (closing the stores whose last
/// reference it held) and unmounts the glfs mounts left idle (`backstore::close_idle_mounts`:
/// they would otherwise linger), on a thread of its own; waits at most `limit` for that.
pub fn close_stores(targets: Arc<Targets>, limit: Duration) -> Result<(), Unfinished> {
    let deadline = Instant::now() + limit;
    let stores = targets.stores();
    let pending: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
        stores
            .iter()
            .map(|(target, lun, _)| format!("{target} LUN {lun}"))
            .collect(),
    ));
    let (done_tx, done_rx) = mpsc::channel();
    let left = pending.clone();
    let spawned = std::thread::Builder::new()
        .name("lun-close".into())
        .spawn(move || {
            // All flushes at once: one hung volume does not keep the others from flushing.
            let (tx, rx) = mpsc::channel();
            for (target, lun, store) in &stores {
                let tx = tx.clone();
                let name = format!("{target} LUN {lun}");
                store.submit(
                    IoRequest::Flush,
                    Completion::new(move |result| {
                        let _ = tx.send((name, result));
                    }),
                );
            }
            drop(tx);
            for (name, result) in rx {
                if let Err(err) = result {
                    tracing::warn!(lun = %name, %err, "flush at shutdown failed");
                }
                left.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|n| n != &name);
            }
            drop(stores);
            drop(targets);
            // The glfs mounts left with no LUN linger (field failure #8): unmount them now.
            backstore::close_idle_mounts();
            let _ = done_tx.send(());
        });
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start a thread to close the stores; not closing them");
        return Err(Unfinished::Close);
    }
    match done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(()) => Ok(()),
        Err(_) => {
            let flushing = pending.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if flushing.is_empty() {
                Err(Unfinished::Close)
            } else {
                Err(Unfinished::Flush(flushing))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LunSpec;
    use store_api::{BlockStore, Capabilities, Geometry};

    /// How a test store behaves at shutdown.
    enum Behaviour {
        /// Flushes at once.
        Healthy,
        /// Never answers a flush (its volume hangs); the completion is kept alive.
        FlushHangs(Mutex<Vec<Completion>>),
        /// Flushes, then its close (drop) waits until the test lets it go.
        CloseHangs(Mutex<mpsc::Receiver<()>>),
    }

    struct Store(Behaviour);

    impl BlockStore for Store {
        fn geometry(&self) -> Geometry {
            Geometry {
                block_size: 512,
                num_blocks: 8,
            }
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn submit(&self, req: IoRequest, done: Completion) {
            assert!(matches!(req, IoRequest::Flush), "only flushes at shutdown");
            match &self.0 {
                Behaviour::FlushHangs(kept) => kept.lock().unwrap().push(done),
                _ => done.complete(Ok(store_api::IoReply::Done)),
            }
        }
        fn describe(&self) -> String {
            "test store".into()
        }
    }

    impl Drop for Store {
        fn drop(&mut self) {
            if let Behaviour::CloseHangs(release) = &self.0 {
                let _ = release.lock().unwrap().recv();
            }
        }
    }

    fn targets(stores: Vec<(u16, Behaviour)>) -> Arc<Targets> {
        let luns = stores
            .into_iter()
            .map(|(lun, b)| {
                let spec = LunSpec {
                    lun,
                    read_only: false,
                    soft_threshold: Default::default(),
                    store: Default::default(),
                };
                (spec, Arc::new(Store(b)) as Arc<dyn BlockStore>)
            })
            .collect();
        Arc::new(
            Targets::with_stores(
                vec![("iqn.2026-11.io.glfs-iscsi:t".into(), luns)],
                "127.0.0.1:3260".parse().unwrap(),
                Default::default(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn healthy_stores_are_flushed_and_closed() {
        let t = targets(vec![(0, Behaviour::Healthy), (1, Behaviour::Healthy)]);
        let weak = Arc::downgrade(&t);
        assert_eq!(close_stores(t, Duration::from_secs(60)), Ok(()));
        assert!(weak.upgrade().is_none(), "the targets were dropped");
    }

    #[test]
    fn a_hung_flush_does_not_hold_shutdown_and_is_named() {
        let t = targets(vec![
            (0, Behaviour::Healthy),
            (3, Behaviour::FlushHangs(Mutex::new(Vec::new()))),
        ]);
        assert_eq!(
            close_stores(t, Duration::from_millis(300)),
            Err(Unfinished::Flush(vec![
                "iqn.2026-11.io.glfs-iscsi:t LUN 3".into()
            ]))
        );
    }

    #[test]
    fn a_hung_close_does_not_hold_shutdown() {
        let (release, wait) = mpsc::channel();
        let t = targets(vec![(0, Behaviour::CloseHangs(Mutex::new(wait)))]);
        assert_eq!(
            close_stores(t, Duration::from_millis(300)),
            Err(Unfinished::Close)
        );
        release.send(()).unwrap();
    }
}
