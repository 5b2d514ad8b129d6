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
//!
//! Each sample also goes to the LUN's SCSI logical unit: LOG SENSE reports it, and a thin
//! LUN whose storage's free space falls to its soft threshold ([`SoftThreshold`], 10% of
//! the LUN's size unless configured) tells its hosts THIN PROVISIONING SOFT THRESHOLD
//! REACHED (ESXi's out-of-space warning on the datastore), logged here too.

use crate::targets::Targets;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use store_api::{BlockStore, ErrorKind, Space};

/// How often the stores are asked.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// A thin LUN's soft threshold: the free space of its storage at or below which its hosts
/// are told (`soft_threshold` in the configuration, `--soft-threshold`): a percentage of
/// the LUN's size (`10%`, the default), a size (`50G`), or `off`. Hosts may change it with
/// MODE SELECT (the Logical Block Provisioning mode page) until the daemon restarts or the
/// operator sets it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftThreshold {
    /// No threshold (hosts may still enable one).
    Off,
    /// This percentage (1 to 100) of the LUN's size.
    Percent(u8),
    /// This many bytes.
    Bytes(u64),
}

impl Default for SoftThreshold {
    fn default() -> Self {
        SoftThreshold::Percent(10)
    }
}

impl SoftThreshold {
    /// The logical unit's setting (`None`: off); a percentage follows the LUN's size.
    pub fn scsi(self) -> Option<scsi::SoftThreshold> {
        match self {
            SoftThreshold::Off => None,
            SoftThreshold::Percent(p) => Some(scsi::SoftThreshold::Percent(p)),
            SoftThreshold::Bytes(b) => Some(scsi::SoftThreshold::Bytes(b)),
        }
    }
}

impl std::str::FromStr for SoftThreshold {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "off" {
            return Ok(SoftThreshold::Off);
        }
        if let Some(number) = t.strip_suffix('%') {
            return match number.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Ok(SoftThreshold::Percent(p)),
                _ => Err(format!(
                    "soft threshold {text:?}: a percentage is a whole number from 1% to 100%"
                )),
            };
        }
        units::parse_size(t)
            .map(SoftThreshold::Bytes)
            .map_err(|e| format!("soft threshold {text:?} is not off, a percentage or a size: {e}"))
    }
}

impl std::fmt::Display for SoftThreshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SoftThreshold::Off => f.write_str("off"),
            SoftThreshold::Percent(p) => write!(f, "{p}%"),
            SoftThreshold::Bytes(b) => f.write_str(&units::format_size(*b)),
        }
    }
}

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
            // For LOG SENSE's Logical Block Provisioning page, and the soft threshold.
            if let (Some(t), Ok(lun)) = (served(), u16::try_from(lun)) {
                told(&target, lun, &*store, space, t.scsi.set_space(lun, space));
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

/// Logs what the LUN's hosts were told of its soft threshold.
fn told(
    target: &str,
    lun: u16,
    store: &dyn BlockStore,
    space: Space,
    news: Option<scsi::ThresholdNews>,
) {
    match news {
        Some(scsi::ThresholdNews::Reached { threshold }) => tracing::warn!(
            target,
            lun,
            "the storage of {} has {} free, at or below the LUN's soft threshold of {}: \
             its hosts are told THIN PROVISIONING SOFT THRESHOLD REACHED; free space on it",
            store.describe(),
            units::format_human(space.available.unwrap_or(0)),
            units::format_human(threshold),
        ),
        Some(scsi::ThresholdNews::Rearmed) => tracing::info!(
            target,
            lun,
            "the storage of {} is above the LUN's soft threshold again",
            store.describe()
        ),
        Some(scsi::ThresholdNews::Unchanged) | None => {}
    }
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
    fn a_soft_threshold_is_off_a_percentage_or_a_size() {
        let parse = |t: &str| t.parse::<SoftThreshold>();
        assert_eq!(parse("off"), Ok(SoftThreshold::Off));
        assert_eq!(parse("10%"), Ok(SoftThreshold::Percent(10)));
        assert_eq!(parse("100%"), Ok(SoftThreshold::Percent(100)));
        assert_eq!(parse("50G"), Ok(SoftThreshold::Bytes(50 * GIB)));
        for bad in ["0%", "101%", "5.5%", "%", "lots", "-1G"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        for t in ["off", "10%", "50G"] {
            assert_eq!(parse(t).unwrap().to_string(), t);
        }
        assert_eq!(SoftThreshold::default(), SoftThreshold::Percent(10));
        assert_eq!(
            SoftThreshold::Percent(10).scsi(),
            Some(scsi::SoftThreshold::Percent(10))
        );
        assert_eq!(
            SoftThreshold::Bytes(7).scsi(),
            Some(scsi::SoftThreshold::Bytes(7))
        );
        assert_eq!(SoftThreshold::Off.scsi(), None);
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
