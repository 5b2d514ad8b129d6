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
    /// `(id, start, end, exclusive)`, byte offsets, `end` exclusive. As many as commands in
    /// flight that change the medium: a short list, scanned linearly.
    ranges: Vec<(u64, u64, u64, bool)>,
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
            .any(|&(_, s, e, x)| (exclusive || x) && s < end && offset < e);
        if conflict {
            return None;
        }
        let id = held.next_id;
        held.next_id += 1;
        held.ranges.push((id, offset, end, exclusive));
        Some(RangeGuard {
            lock: Arc::clone(self),
            id,
        })
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
    fn dropping_releases() {
        let lock = Arc::new(Interlock::default());
        let g = lock.try_lock(0, 512, true).unwrap();
        assert!(lock.try_lock(0, 512, false).is_none());
        drop(g);
        assert_eq!(lock.len(), 0);
        assert!(lock.try_lock(0, 512, false).is_some());
    }
}
