//! The LBA-range interlock of one logical unit: every command that changes the medium holds
//! its byte range while its store requests are in flight, shared; a read-modify-write command
//! (COMPARE AND WRITE, ORWRITE) holds its range exclusively from its read to the end of its
//! write. So no write, from any nexus, lands between the read and the write of a COMPARE AND
//! WRITE on the same blocks (SBC-3 5.2: the compare and the write are one atomic operation).
//!
//! The core is sans-IO and never waits: a command whose range is held in a conflicting way
//! ends at once with BUSY, which initiators retry (Linux requeues it, ESXi retries its ATS
//! heartbeat). Non-overlapping commands are never held back, and plain writes never wait for
//! each other.

use std::sync::{Arc, Mutex};

/// The ranges held on one logical unit.
#[derive(Debug, Default)]
pub(crate) struct Interlock {
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    next_id: u64,
    /// `(id, start, end, exclusive, epoch)`, byte offsets, `end` exclusive. As many as
    /// commands in flight that change the medium: a short list, scanned linearly.
    ranges: Vec<(u64, u64, u64, bool, u64)>,
    /// The fence epoch new ranges are taken in: the version of the shared reservation
    /// state the LU checks commands against (`ScsiTarget::reservations_drained`).
    epoch: u64,
    /// Fenced: this gateway's view of the shared reservations may be stale (its lease ran
    /// out), so nothing that changes the medium is admitted (BUSY) until it is renewed.
    fenced: bool,
}

/// One held range, released when dropped: when the command ends, or when its
/// [`crate::Pending`] is dropped after the store let go of it.
#[derive(Debug)]
pub(crate) struct RangeGuard {
    lock: Arc<Interlock>,
    id: u64,
}

impl Interlock {
    /// Takes `offset..offset + len` (exclusive: against everything overlapping; shared:
    /// against exclusive holders only), or `None` when that conflicts with a holder.
    pub fn try_lock(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        exclusive: bool,
    ) -> Option<RangeGuard> {
        let end = offset.saturating_add(len);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let conflict = held
            .ranges
            .iter()
            .any(|&(_, s, e, x, _)| (exclusive || x) && s < end && offset < e);
        if conflict || held.fenced {
            return None;
        }
        let id = held.next_id;
        held.next_id += 1;
        let epoch = held.epoch;
        held.ranges.push((id, offset, end, exclusive, epoch));
        Some(RangeGuard {
            lock: Arc::clone(self),
            id,
        })
    }

    /// Ranges taken from now on belong to fence epoch `epoch`.
    pub(crate) fn set_epoch(&self, epoch: u64) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).epoch = epoch;
    }

    /// Closes (`true`) or opens the fence: while closed, [`Interlock::try_lock`] admits
    /// nothing.
    pub(crate) fn set_fenced(&self, fenced: bool) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).fenced = fenced;
    }

    /// Whether the fence is closed.
    pub(crate) fn fenced(&self) -> bool {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).fenced
    }

    /// The epoch every range still held was taken in or after: the current epoch, or the
    /// oldest epoch of a range in flight.
    pub(crate) fn drained_to(&self) -> u64 {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.ranges.iter().map(|r| r.4).fold(held.epoch, u64::min)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().unwrap().ranges.len()
    }
}

impl Drop for RangeGuard {
    fn drop(&mut self) {
        let mut held = self.lock.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = held.ranges.iter().position(|r| r.0 == self.id) {
            held.ranges.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// (held range, held exclusively) against (asked range, asked exclusively).
    #[rstest]
    #[case::shared_shared_overlap((0, 10, false), (5, 10, false), true)]
    #[case::shared_then_exclusive_overlap((0, 10, false), (5, 10, true), false)]
    #[case::exclusive_then_shared_overlap((0, 10, true), (9, 1, false), false)]
    #[case::exclusive_exclusive_overlap((0, 10, true), (0, 10, true), false)]
    #[case::exclusive_adjacent((0, 10, true), (10, 10, true), true)]
    #[case::exclusive_before((10, 10, true), (0, 10, false), true)]
    fn conflicts(
        #[case] held: (u64, u64, bool),
        #[case] asked: (u64, u64, bool),
        #[case] granted: bool,
    ) {
        let lock = Arc::new(Interlock::default());
        let _g = lock.try_lock(held.0, held.1, held.2).expect("first");
        let second = lock.try_lock(asked.0, asked.1, asked.2);
        assert_eq!(second.is_some(), granted);
        drop(second);
        assert_eq!(lock.len(), 1);
    }

    #[test]
    fn a_closed_fence_admits_nothing_and_epochs_drain_as_ranges_end() {
        let lock = Arc::new(Interlock::default());
        lock.set_epoch(3);
        let old = lock.try_lock(0, 512, false).unwrap();
        lock.set_epoch(4);
        let new = lock.try_lock(512, 512, false).unwrap();
        assert_eq!(lock.drained_to(), 3, "a write of epoch 3 is in flight");
        drop(old);
        assert_eq!(lock.drained_to(), 4);
        drop(new);
        lock.set_fenced(true);
        assert!(lock.try_lock(4096, 512, false).is_none());
        lock.set_fenced(false);
        assert!(lock.try_lock(4096, 512, false).is_some());
    }

    #[test]
    fn dropping_releases() {
        let lock = Arc::new(Interlock::default());
        let g = lock.try_lock(0, 512, true).unwrap();
        assert!(lock.try_lock(0, 512, false).is_none());
        drop(g);
        assert_eq!(lock.len(), 0);
        assert!(lock.try_lock(0, 512, false).is_some());
    }
}
