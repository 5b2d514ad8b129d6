//! Logical block provisioning thresholds (SBC-3): a thin provisioned logical unit
//! tells its hosts, with the unit attention THIN PROVISIONING SOFT THRESHOLD REACHED
//! (38h/07h), when the free space of its storage falls to a threshold, before a write finds
//! the storage full (SPACE ALLOCATION FAILED). ESXi shows it as the datastore's
//! out-of-space warning; Linux and Windows log it.
//!
//! * **Threshold sets.** The Logical Block Provisioning VPD page's THRESHOLD EXPONENT makes
//!   a threshold set 2^exponent LBAs ([`exponent`]): 1 MiB whatever the block size (11 for
//!   512-byte blocks, 8 for 4096), larger only when the capacity would be 2^32 sets or more.
//!   The mode page's THRESHOLD COUNT and the Logical Block Provisioning log page's resource
//!   counts are in threshold sets.
//! * **One threshold.** The Logical Block Provisioning mode page (1Ch/02h) has one threshold
//!   descriptor: a soft threshold (THRESHOLD TYPE 000b), armed decreasing (000b), on the
//!   available LBA mapping resources (THRESHOLD RESOURCE 01h: the storage's free space).
//!   Its default comes from the LU's configuration ([`crate::LuConfig::soft_threshold`]:
//!   bytes, or a percentage of the capacity, which a resize moves); a host may change
//!   ENABLED and THRESHOLD COUNT with MODE SELECT (the page is shared by every nexus, and
//!   nothing is saved; a host's count stays through a resize). SITUA is 0 and not changeable: the unit attention
//!   goes to every I_T nexus, since the space is sampled, not caused by one command.
//! * **Reached and armed again.** The driver samples the storage
//!   ([`crate::ScsiTarget::set_space`]). An armed, enabled threshold is reached when the
//!   free space is at or below THRESHOLD COUNT sets: the unit attention is raised once, and
//!   the threshold stays disarmed until the free space is above the count by a twentieth of
//!   it (at least one set; the threshold range's upper half), so a volume hovering at the
//!   threshold does not repeat it every sample. A nexus that logs in while it is reached
//!   gets it after its POWER ON unit attention. A new threshold (MODE SELECT, or the
//!   operator's) is armed.

use crate::LuConfig;
use std::sync::Mutex;
use store_api::Geometry;

/// A thin LU's configured soft threshold: bytes of free space, or a percentage of its
/// capacity (which follows a resize).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftThreshold {
    /// This many bytes.
    Bytes(u64),
    /// This percentage (1 to 100) of the LU's capacity.
    Percent(u8),
}

impl SoftThreshold {
    /// The threshold in bytes for an LU of `geometry`.
    pub fn bytes(self, geometry: Geometry) -> u64 {
        match self {
            SoftThreshold::Bytes(b) => b,
            SoftThreshold::Percent(p) => {
                let size = geometry.size_bytes();
                let p = u64::from(p.min(100));
                size / 100 * p + size % 100 * p / 100
            }
        }
    }
}

/// Bytes a threshold set is at least.
const SET_BYTES: u64 = 1 << 20;

/// The THRESHOLD EXPONENT of an LU (SBC-3 6.5.4): not zero (thresholds are supported), a
/// set of at least 1 MiB, and the capacity in sets below 2^32.
pub(crate) fn exponent(config: &LuConfig) -> u8 {
    let g = config.geometry;
    let mut e = 1u8;
    while e < 63 && ((u64::from(g.block_size) << e) < SET_BYTES || (g.num_blocks >> e) >= 1 << 32) {
        e += 1;
    }
    e
}

/// The bytes of one threshold set of an LU.
pub(crate) fn set_bytes(config: &LuConfig) -> u64 {
    u64::from(config.geometry.block_size).saturating_mul(1 << exponent(config))
}

/// What became of the soft threshold when the storage was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdNews {
    /// Nothing changed.
    Unchanged,
    /// Reached: every nexus got THIN PROVISIONING SOFT THRESHOLD REACHED. The threshold
    /// in bytes.
    Reached {
        /// The threshold, in bytes of free space.
        threshold: u64,
    },
    /// Armed again: the free space is well above the threshold once more.
    Rearmed,
}

/// The LU's threshold descriptor and whether it is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Threshold {
    /// ENABLED.
    pub enabled: bool,
    /// THRESHOLD COUNT, in threshold sets.
    pub count: u32,
    /// Not reached since it was last set or armed again.
    armed: bool,
}

impl Threshold {
    /// The default of an LU's configuration at capacity `geometry`: enabled at the
    /// configured free space (in sets, rounded up), or disabled with a count of 0.
    pub(crate) fn of(config: &LuConfig, geometry: Geometry) -> Self {
        match config.soft_threshold {
            Some(threshold) => {
                let sets = threshold.bytes(geometry).div_ceil(set_bytes(config));
                Threshold::new(true, u32::try_from(sets).unwrap_or(u32::MAX))
            }
            None => Threshold::new(false, 0),
        }
    }

    /// A threshold as set, armed.
    pub(crate) fn new(enabled: bool, count: u32) -> Self {
        Threshold {
            enabled,
            count,
            armed: true,
        }
    }

    /// Whether two thresholds are the same descriptor (arming aside).
    pub(crate) fn same_descriptor(&self, other: &Threshold) -> bool {
        self.enabled == other.enabled && self.count == other.count
    }

    /// The storage has `free_sets` threshold sets free: `Some(true)` if that reaches the
    /// threshold, `Some(false)` if it arms it again.
    fn sample(&mut self, free_sets: u64) -> Option<bool> {
        let count = u64::from(self.count);
        if !self.enabled {
            return None;
        }
        if self.armed && free_sets <= count {
            self.armed = false;
            return Some(true);
        }
        if !self.armed && free_sets > count + (count / 20).max(1) {
            self.armed = true;
            return Some(false);
        }
        None
    }
}

/// The threshold of one LU, shared by its nexuses.
#[derive(Debug)]
pub(crate) struct ThresholdCell(Mutex<Threshold>);

impl ThresholdCell {
    pub(crate) fn new(config: &LuConfig) -> Self {
        ThresholdCell(Mutex::new(Threshold::of(config, config.geometry)))
    }

    /// The descriptor now.
    pub(crate) fn get(&self) -> Threshold {
        *self.0.lock().expect("threshold lock")
    }

    /// Whether the threshold is enabled and reached (not armed again yet).
    pub(crate) fn reached(&self) -> bool {
        let t = self.get();
        t.enabled && !t.armed
    }

    /// Sets the descriptor (armed); whether it differs from what it was.
    pub(crate) fn set(&self, new: Threshold) -> bool {
        let mut t = self.0.lock().expect("threshold lock");
        let changed = !t.same_descriptor(&new);
        *t = new;
        changed
    }

    /// The LU's default went from `old` to `new` (a resize, with a threshold that is a
    /// percentage): a descriptor still at the old default takes the new one, armed;
    /// whether it did (one a host set stays).
    pub(crate) fn follow(&self, old: Threshold, new: Threshold) -> bool {
        let mut t = self.0.lock().expect("threshold lock");
        if !t.same_descriptor(&old) || old.same_descriptor(&new) {
            return false;
        }
        *t = new;
        true
    }

    /// The storage of the LU `config` describes has `free` bytes free.
    pub(crate) fn sample(&self, config: &LuConfig, free: u64) -> ThresholdNews {
        let set = set_bytes(config);
        let mut t = self.0.lock().expect("threshold lock");
        match t.sample(free / set) {
            Some(true) => ThresholdNews::Reached {
                threshold: u64::from(t.count).saturating_mul(set),
            },
            Some(false) => ThresholdNews::Rearmed,
            None => ThresholdNews::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store_api::{Capabilities, Geometry};

    fn config(block_size: u32, num_blocks: u64, bytes: Option<u64>) -> LuConfig {
        LuConfig {
            vendor: String::new(),
            product: String::new(),
            revision: String::new(),
            serial: String::new(),
            naa_id: [0; 16],
            geometry: Geometry {
                block_size,
                num_blocks,
            },
            capabilities: Capabilities::default(),
            write_cache: true,
            read_only: false,
            soft_threshold: bytes.map(SoftThreshold::Bytes),
        }
    }

    #[test]
    fn a_percentage_is_of_the_capacity_rounded_down() {
        let g = |size: u64| Geometry {
            block_size: 1,
            num_blocks: size,
        };
        assert_eq!(SoftThreshold::Percent(10).bytes(g(100 << 30)), 10 << 30);
        assert_eq!(SoftThreshold::Percent(50).bytes(g(3)), 1);
        assert_eq!(SoftThreshold::Percent(100).bytes(g(u64::MAX)), u64::MAX);
        assert_eq!(SoftThreshold::Bytes(7).bytes(g(100)), 7);
        // 10% of 100 MiB in 1 MiB sets; of 200 MiB after a resize.
        let mut c = config(512, 200 << 11, None);
        c.soft_threshold = Some(SoftThreshold::Percent(10));
        assert_eq!(Threshold::of(&c, g(100 << 20)).count, 10);
        assert_eq!(Threshold::of(&c, c.geometry).count, 20);
    }

    #[test]
    fn a_resize_moves_a_threshold_at_its_default_only() {
        let c = config(512, 1 << 20, None);
        let cell = ThresholdCell::new(&c);
        let (old, new) = (Threshold::new(true, 10), Threshold::new(true, 20));
        assert!(cell.set(old));
        assert!(cell.follow(old, new));
        assert_eq!(cell.get().count, 20);
        // A host's own threshold stays; so does one when the default did not move.
        assert!(cell.set(Threshold::new(true, 7)));
        assert!(!cell.follow(new, Threshold::new(true, 40)));
        assert_eq!(cell.get().count, 7);
        assert!(!cell.follow(Threshold::new(true, 7), Threshold::new(true, 7)));
    }

    #[test]
    fn a_threshold_set_is_a_mebibyte_unless_the_capacity_needs_more() {
        // 512-byte blocks: 2^11 LBAs; 4096: 2^8; both 1 MiB.
        assert_eq!(exponent(&config(512, 1 << 20, None)), 11);
        assert_eq!(exponent(&config(4096, 1 << 20, None)), 8);
        assert_eq!(set_bytes(&config(4096, 1 << 20, None)), 1 << 20);
        // 8 PiB of 512-byte blocks (2^44 LBAs): 2^44 / 2^11 = 2^33 sets is too many;
        // 2^13 LBAs make 2^31 sets.
        assert_eq!(exponent(&config(512, 1 << 44, None)), 13);
        // Just below 2^32 sets of 1 MiB still fits.
        assert_eq!(exponent(&config(512, (1 << 43) - 1, None)), 11);
    }

    #[test]
    fn the_configured_threshold_is_counted_in_sets_rounded_up() {
        let of = |c: LuConfig| Threshold::of(&c, c.geometry);
        let t = of(config(512, 1 << 20, Some(10 << 20)));
        assert_eq!((t.enabled, t.count), (true, 10));
        let t = of(config(512, 1 << 20, Some((10 << 20) + 1)));
        assert_eq!(t.count, 11);
        let t = of(config(512, 1 << 20, None));
        assert_eq!((t.enabled, t.count), (false, 0));
    }

    #[test]
    fn reached_once_then_armed_again_above_the_range() {
        let c = config(512, 1 << 20, Some(100 << 20));
        let cell = ThresholdCell::new(&c);
        let mib = 1u64 << 20;
        assert_eq!(cell.sample(&c, 200 * mib), ThresholdNews::Unchanged);
        assert_eq!(
            cell.sample(&c, 100 * mib),
            ThresholdNews::Reached {
                threshold: 100 * mib
            }
        );
        assert!(cell.reached());
        // Still low, or back just above: not again.
        assert_eq!(cell.sample(&c, 50 * mib), ThresholdNews::Unchanged);
        assert_eq!(cell.sample(&c, 105 * mib), ThresholdNews::Unchanged);
        // Above 100 + 100/20 sets: armed again, and reached again on the next fall.
        assert_eq!(cell.sample(&c, 106 * mib), ThresholdNews::Rearmed);
        assert!(!cell.reached());
        assert_eq!(
            cell.sample(&c, 99 * mib),
            ThresholdNews::Reached {
                threshold: 100 * mib
            }
        );
        // A threshold set anew is armed.
        assert!(cell.set(Threshold::new(true, 90)));
        assert_eq!(cell.sample(&c, 95 * mib), ThresholdNews::Unchanged);
        assert_eq!(
            cell.sample(&c, 90 * mib),
            ThresholdNews::Reached {
                threshold: 90 * mib
            }
        );
        // Disabled: never.
        assert!(cell.set(Threshold::new(false, 90)));
        assert_eq!(cell.sample(&c, 0), ThresholdNews::Unchanged);
        assert!(!cell.set(Threshold::new(false, 90)));
    }
}
