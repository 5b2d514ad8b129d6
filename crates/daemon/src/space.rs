//! Watching the space of every LUN's storage, so that a thin LUN's volume running full is
//! seen before a host's write finds it full (SPACE ALLOCATION FAILED; field failure #15).
//!
//! Every [`SAMPLE_EVERY`] (the first round at start), on a blocking thread (never a
//! connection's), each LUN's [`BlockStore::space`]: what its blocks take and what is free
//! on its storage. With `--metrics` these are the gauges `glfs_iscsi_lun_allocated_bytes`
//! and `glfs_iscsi_lun_storage_available_bytes`. A storage (a file system, a Gluster
//! volume: [`Space::storage`]) with less free than its LUNs could still take together
//! (each one's size less what it has allocated) is warned about in the log once, naming
//! them, with the numbers, and again once it has room; a fully provisioned LUN has
//! everything allocated and adds nothing. Stores that cannot tell (the memory
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

/// Which storage a LUN's space is of: the one its store names ([`Space::storage`]: a
/// file system, a volume), shared by every LUN on it, or the LUN's own where not known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StorageKey {
    Shared(u64),
    Lun(String, u64),
}

/// One LUN as a round sampled it.
pub struct Sampled {
    pub target: String,
    pub lun: u64,
    /// The LUN's size in bytes.
    pub size: u64,
    pub space: Space,
    /// Its store, described ([`BlockStore::describe`]).
    pub store: String,
}

/// A storage with free space known, and the LUNs on it.
#[derive(Debug, PartialEq, Eq)]
pub struct Storage {
    pub key: StorageKey,
    /// `target/lun (store)` of each LUN on it.
    pub luns: Vec<String>,
    /// What they could still take together: each one's size less what it has allocated.
    pub could_take: u64,
    /// What the storage has free (the least any of them saw this round).
    pub available: u64,
}

impl Storage {
    /// The bytes its LUNs could take beyond its free space, if any.
    pub fn shortfall(&self) -> Option<u64> {
        (self.could_take > self.available).then(|| self.could_take - self.available)
    }
}

/// The storages of a round's samples, with their LUNs summed, in the order first seen.
pub fn storages(samples: &[Sampled]) -> Vec<Storage> {
    let mut out: Vec<Storage> = Vec::new();
    for s in samples {
        let Some(available) = s.space.available else {
            continue;
        };
        let key = match s.space.storage {
            Some(id) => StorageKey::Shared(id),
            None => StorageKey::Lun(s.target.clone(), s.lun),
        };
        let could_take = s.size.saturating_sub(s.space.allocated);
        let name = format!("{}/{} ({})", s.target, s.lun, s.store);
        match out.iter_mut().find(|st| st.key == key) {
            Some(st) => {
                st.luns.push(name);
                st.could_take = st.could_take.saturating_add(could_take);
                st.available = st.available.min(available);
            }
            None => out.push(Storage {
                key,
                luns: vec![name],
                could_take,
                available,
            }),
        }
    }
    out
}

/// The storages that became short (`true`) or have room again (`false`) since the last
/// round; `short` holds those warned about and is kept from round to round (a storage no
/// LUN was sampled on this round is forgotten).
pub fn changes(storages: &[Storage], short: &mut HashSet<StorageKey>) -> Vec<(usize, bool)> {
    short.retain(|k| storages.iter().any(|s| &s.key == k));
    let mut out = Vec::new();
    for (i, st) in storages.iter().enumerate() {
        match st.shortfall() {
            Some(_) if short.insert(st.key.clone()) => out.push((i, true)),
            None if short.remove(&st.key) => out.push((i, false)),
            _ => {}
        }
    }
    out
}

/// One round over every LUN; `short` holds the storages warned about and is kept from
/// round to round.
pub fn round(targets: &Targets, short: &mut HashSet<StorageKey>) {
    let mut samples = Vec::new();
    for (target, lun, store) in targets.stores() {
        let served = || {
            targets
                .get(&target)
                .filter(|t| t.store(lun).is_some_and(|s| Arc::ptr_eq(s, &store)))
        };
        if let Some(space) = sample(&target, lun, &*store, || served().is_some()) {
            // For LOG SENSE's Logical Block Provisioning page, and the soft threshold.
            if let (Some(t), Ok(n)) = (served(), u16::try_from(lun)) {
                told(&target, n, &*store, space, t.scsi.set_space(n, space));
                if let Some(m) = crate::metrics::global() {
                    let reached = t.scsi.soft_threshold(n).map(|(_, reached)| reached);
                    m.lun_soft_threshold(&target, lun, reached);
                }
            }
            samples.push(Sampled {
                size: store.geometry().size_bytes(),
                store: store.describe(),
                target,
                lun,
                space,
            });
        }
    }
    let storages = storages(&samples);
    for (i, now_short) in changes(&storages, short) {
        let st = &storages[i];
        let luns = st.luns.join(", ");
        if now_short {
            tracing::warn!(
                "the storage of {luns} has {} free, {} less than the {} {} could still \
                 take: hosts' writes to blocks never written will fail (SPACE ALLOCATION \
                 FAILED) once it is full; free space on it, or serve {} fully provisioned",
                units::format_human(st.available),
                units::format_human(st.shortfall().unwrap_or(0)),
                units::format_human(st.could_take),
                if st.luns.len() == 1 {
                    "the LUN"
                } else {
                    "its thin LUNs together"
                },
                if st.luns.len() == 1 {
                    "the LUN"
                } else {
                    "some of them"
                },
            );
        } else {
            tracing::info!("the storage of {luns} has room again for all its LUNs could take");
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

    fn lun(
        target: &str,
        lun: u64,
        size: u64,
        allocated: u64,
        free: Option<u64>,
        on: Option<u64>,
    ) -> Sampled {
        Sampled {
            target: target.into(),
            lun,
            size,
            space: Space {
                allocated,
                available: free,
                storage: on,
            },
            store: format!("file /{target}-{lun}"),
        }
    }

    #[test]
    fn a_lun_alone_is_short_by_what_it_could_take_beyond_the_free_space() {
        let alone = |allocated, free| storages(&[lun("t", 0, 100 * GIB, allocated, free, Some(1))]);
        // 100 GiB LUN, 30 allocated, 50 free: it could take 70, 20 more than there is.
        assert_eq!(
            alone(30 * GIB, Some(50 * GIB))[0].shortfall(),
            Some(20 * GIB)
        );
        // Exactly enough is enough.
        assert_eq!(alone(30 * GIB, Some(70 * GIB))[0].shortfall(), None);
        // Fully allocated (full provisioning, or written everywhere): never short.
        assert_eq!(alone(100 * GIB, Some(0))[0].shortfall(), None);
        // More allocated than the size (file system metadata blocks): not short either.
        assert_eq!(alone(100 * GIB + 4096, Some(0))[0].shortfall(), None);
        // Free space not known (memory): nothing to say.
        assert!(alone(0, None).is_empty());
    }

    #[test]
    fn the_luns_on_one_storage_are_summed_against_its_free_space() {
        // Two 40 GiB LUNs with 10 GiB each allocated on volume 7 (50 GiB free): each
        // fits alone, 60 GiB together does not. A third on another storage, one whose
        // storage is not known (its own), one without free space (memory): apart.
        let samples = [
            lun("t", 0, 40 * GIB, 10 * GIB, Some(50 * GIB), Some(7)),
            lun("t", 1, 40 * GIB, 10 * GIB, Some(51 * GIB), Some(7)),
            lun("u", 0, 40 * GIB, 0, Some(100 * GIB), Some(8)),
            lun("u", 1, 40 * GIB, 0, Some(10 * GIB), None),
            lun("u", 2, 40 * GIB, 0, None, None),
        ];
        let found = storages(&samples);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].key, StorageKey::Shared(7));
        assert_eq!(found[0].luns, ["t/0 (file /t-0)", "t/1 (file /t-1)"]);
        assert_eq!(found[0].could_take, 60 * GIB);
        assert_eq!(found[0].available, 50 * GIB, "the least seen");
        assert_eq!(found[0].shortfall(), Some(10 * GIB));
        assert_eq!(found[1].shortfall(), None);
        assert_eq!(found[2].key, StorageKey::Lun("u".into(), 1));
        assert_eq!(found[2].shortfall(), Some(30 * GIB));
    }

    #[test]
    fn a_storage_is_noted_short_once_and_no_longer_once_it_has_room() {
        let mut short = HashSet::new();
        let round = |free: u64| {
            vec![
                lun("t", 0, 40 * GIB, 10 * GIB, Some(free), Some(7)),
                lun("t", 1, 40 * GIB, 10 * GIB, Some(free), Some(7)),
            ]
        };
        let short_now = storages(&round(50 * GIB));
        assert_eq!(changes(&short_now, &mut short), [(0, true)]);
        assert_eq!(changes(&short_now, &mut short), [], "once");
        let room = storages(&round(60 * GIB));
        assert_eq!(changes(&room, &mut short), [(0, false)]);
        assert_eq!(changes(&room, &mut short), []);
        // Short again, then its LUNs gone: forgotten, so short again is news.
        assert_eq!(changes(&short_now, &mut short), [(0, true)]);
        assert_eq!(changes(&[], &mut short), []);
        assert!(short.is_empty());
        assert_eq!(changes(&short_now, &mut short), [(0, true)]);
    }
}
