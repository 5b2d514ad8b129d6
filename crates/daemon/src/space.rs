//! Watching the space of every LUN's storage, so that a thin LUN's volume running full is
//! seen before a host's write finds it full (SPACE ALLOCATION FAILED; field failure #15).
//!
//! Every [`SAMPLE_EVERY`] (the first round at start), on a blocking thread (never a
//! connection's), each LUN's [`BlockStore::space`]: what its blocks take and what is free
//! on its storage. With `--metrics` these are the gauges `glfs_iscsi_lun_allocated_bytes`
//! and `glfs_iscsi_lun_storage_available_bytes`. A thin LUN whose storage has less free
//! than the LUN could still take (its size less what it has allocated) is warned about
//! in the log once, with the numbers, and again once it has room; a fully provisioned
//! LUN has everything allocated and is never short. Stores that cannot tell (the memory
//! store has no storage beside itself) show what they can.

use crate::targets::Targets;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use store_api::{BlockStore, ErrorKind, Space};

/// How often the stores are asked.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// The bytes a LUN of `size` bytes could still take beyond what its storage has free:
/// `None` when it fits (or the storage's free space is not known).
pub fn shortfall(size: u64, space: Space) -> Option<u64> {
    let could_take = size.saturating_sub(space.allocated);
    let available = space.available?;
    (could_take > available).then(|| could_take - available)
}

/// One round over every LUN; `short` holds the LUNs warned about (target, LUN) and is
/// kept from round to round.
pub fn round(targets: &Targets, short: &mut HashSet<(String, u64)>) {
    let stores = targets.stores();
    short.retain(|(t, l)| stores.iter().any(|(st, sl, _)| st == t && sl == l));
    for (target, lun, store) in stores {
        let served = || {
            targets
                .get(&target)
                .filter(|t| t.store(lun).is_some_and(|s| Arc::ptr_eq(s, &store)))
        };
        if let Some(space) = sample(&target, lun, &*store, short, || served().is_some()) {
            // For LOG SENSE's Logical Block Provisioning page.
            if let (Some(t), Ok(lun)) = (served(), u16::try_from(lun)) {
                t.scsi.set_space(lun, space);
            }
        }
    }
}

/// Samples one LUN's store; `still_served` says, right before the gauges are set,
/// whether the LUN still has that store (one removed meanwhile keeps its series gone).
/// What the store said, if it could.
fn sample(
    target: &str,
    lun: u64,
    store: &dyn BlockStore,
    short: &mut HashSet<(String, u64)>,
    still_served: impl Fn() -> bool,
) -> Option<Space> {
    let space = match store.space() {
        Ok(space) => space,
        Err(e) if e.kind == ErrorKind::Unsupported => return None,
        Err(e) => {
            tracing::debug!(target, lun, error = %e, "space of the LUN's storage not known");
            return None;
        }
    };
    if !still_served() {
        return None;
    }
    if let Some(m) = crate::metrics::global() {
        m.lun_space(target, lun, space);
    }
    let size = store.geometry().size_bytes();
    let key = (target.to_string(), lun);
    match shortfall(size, space) {
        Some(missing) if short.insert(key.clone()) => tracing::warn!(
            target,
            lun,
            "the storage of {} ({}) has {} free, {} less than the {} the LUN could still \
             take: hosts' writes to blocks never written will fail (SPACE ALLOCATION \
             FAILED) once it is full; free space on it, or serve the LUN fully provisioned",
            store.describe(),
            units::format_human(size),
            units::format_human(space.available.unwrap_or(0)),
            units::format_human(missing),
            units::format_human(size.saturating_sub(space.allocated)),
        ),
        None if short.remove(&key) => tracing::info!(
            target,
            lun,
            "the storage of {} has room again for the whole LUN",
            store.describe()
        ),
        _ => {}
    }
    Some(space)
}

/// Runs [`round`] every [`SAMPLE_EVERY`] for as long as the daemon runs.
pub async fn watch(targets: Arc<Targets>) {
    let mut short = HashSet::new();
    loop {
        let t = targets.clone();
        let mut kept = std::mem::take(&mut short);
        short = tokio::task::spawn_blocking(move || {
            round(&t, &mut kept);
            kept
        })
        .await
        .unwrap_or_default();
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_thin_lun_is_short_by_what_it_could_take_beyond_the_free_space() {
        let space = |allocated, available| Space {
            allocated,
            available,
        };
        // 100 GiB LUN, 30 allocated, 50 free: it could take 70, 20 more than there is.
        assert_eq!(
            shortfall(100 * GIB, space(30 * GIB, Some(50 * GIB))),
            Some(20 * GIB)
        );
        // Exactly enough is enough.
        assert_eq!(shortfall(100 * GIB, space(30 * GIB, Some(70 * GIB))), None);
        // Fully allocated (full provisioning, or written everywhere): never short.
        assert_eq!(shortfall(100 * GIB, space(100 * GIB, Some(0))), None);
        // More allocated than the size (file system metadata blocks): not short either.
        assert_eq!(shortfall(GIB, space(GIB + 4096, Some(0))), None);
        // Free space not known (memory): nothing to say.
        assert_eq!(shortfall(100 * GIB, space(0, None)), None);
    }

    #[test]
    fn a_lun_is_noted_short_once_and_no_longer_once_it_has_room() {
        use std::sync::Mutex;
        let store = backstore::MemoryStore::new(store_api::Geometry {
            block_size: 512,
            num_blocks: 8,
        });
        let mut short = HashSet::new();
        // The memory store has no free space to compare with: never short.
        sample("iqn.2026-11.x:t", 0, &store, &mut short, || true);
        assert!(short.is_empty());

        // A store reporting less free than it could take: short once, kept while short.
        struct Reporting(backstore::MemoryStore, Mutex<Space>);
        impl BlockStore for Reporting {
            fn geometry(&self) -> store_api::Geometry {
                self.0.geometry()
            }
            fn capabilities(&self) -> store_api::Capabilities {
                self.0.capabilities()
            }
            fn submit(&self, req: store_api::IoRequest, done: store_api::Completion) {
                self.0.submit(req, done)
            }
            fn describe(&self) -> String {
                "reporting".into()
            }
            fn space(&self) -> Result<Space, store_api::StoreError> {
                Ok(*self.1.lock().unwrap())
            }
        }
        let reporting = Reporting(
            store,
            Mutex::new(Space {
                allocated: 1024,
                available: Some(1024),
            }),
        );
        sample("iqn.2026-11.x:t", 0, &reporting, &mut short, || true);
        assert!(short.contains(&("iqn.2026-11.x:t".to_string(), 0)));
        sample("iqn.2026-11.x:t", 0, &reporting, &mut short, || true);
        assert_eq!(short.len(), 1);
        // Room again: no longer short.
        *reporting.1.lock().unwrap() = Space {
            allocated: 1024,
            available: Some(4096),
        };
        sample("iqn.2026-11.x:t", 0, &reporting, &mut short, || true);
        assert!(short.is_empty());
    }
}
