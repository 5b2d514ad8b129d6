//! Taking over from a stalled active gateway (`--alua-failover`; docs/fencing.md,
//! "Taking the fence from a stalled holder").
//!
//! A gateway whose process stops (SIGSTOP, a hung process) while its connections to the
//! bricks stay up keeps its Gluster locks: the election lock and every LUN's data fence.
//! Gluster 10.3 revokes no POSIX lock by itself (`features.locks-revocation-*` apply to
//! inodelk and entrylk only), but its clear-locks request takes a granted lock from any
//! holder (`BlockStore::clear_lock`). So:
//!
//! * the active gateway renews a heartbeat: every round it rewrites the record
//!   `<lun>.alua` with the next version ([`crate::failover`]);
//! * a standby that cannot get the election lock and has seen the same record version
//!   naming another gateway active for [`STALL_AFTER`] (by its own clock: no time crosses
//!   gateways) takes the holder's election lock away, takes it, checks that the record
//!   still has that version, takes every LUN's data fence away and takes it, and only
//!   then writes the record naming itself ([`Watch`], `Failover::take`);
//! * the stalled gateway, when it resumes, no longer holds the fence: the bricks refuse
//!   its reads and writes (EAGAIN, `ErrorKind::Fenced`, NOT READY 04h/0Ah) because the new
//!   active gateway holds a mandatory lock on the image, so nothing it still sends lands;
//!   its next round sees that through a read of its own ([`fence_taken`]) or through a
//!   refused command (`failover::note_fenced`) and steps down without writing the record
//!   over the new active gateway's.
//!
//! Between the clearing and the new lock a write of the stalled gateway could land: it is
//! one that gateway admitted before the takeover, and nothing through the new active
//! gateway has been admitted yet (it reports itself active only after it holds every
//! fence), so it is not stale against anything written through it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store_api::{BlockStore, ErrorKind, IoRequest};

/// How long a standby waits for the active gateway's heartbeat (a new record version)
/// before it takes the fence away: several of the active gateway's rounds (one at least
/// every second) and the volume's own hiccups. A legitimately slow active gateway that
/// loses the fence this way only steps down: its writes are refused, none lands.
pub const STALL_AFTER: Duration = Duration::from_secs(8);

/// How long [`fence_taken`] waits for its read.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// What a standby saw of each target's record: the version and when it first saw it.
#[derive(Debug, Default)]
pub struct Watch {
    seen: HashMap<String, (u64, Instant)>,
}

impl Watch {
    /// Notes that `target`'s record read at `now` has `version` and names another gateway
    /// active (`None`: no record, or nobody active); answers the version that has stood
    /// unchanged for [`STALL_AFTER`] since this gateway first saw it, if there is one.
    pub fn stalled(&mut self, target: &str, active: Option<u64>, now: Instant) -> Option<u64> {
        let Some(version) = active else {
            self.seen.remove(target);
            return None;
        };
        let seen = self
            .seen
            .entry(target.to_string())
            .or_insert((version, now));
        if seen.0 != version {
            *seen = (version, now);
        }
        (now.duration_since(seen.1) >= STALL_AFTER).then_some(version)
    }

    /// Forgets `target` (this gateway became its active gateway).
    pub fn forget(&mut self, target: &str) {
        self.seen.remove(target);
    }
}

/// Takes every client's data fence of each store away (`BlockStore::clear_lock`), for the
/// holder of the election lock taking over from a stalled gateway. `false` when a store
/// could not be asked (the take then fails on that LUN's fence and nothing is held).
pub fn clear_fences(target: &str, stores: &[(u16, Arc<dyn BlockStore>)]) -> bool {
    stores.iter().all(
        |(lun, store)| match store.clear_lock(store_api::DATA_FENCE) {
            Ok(held) => {
                tracing::warn!(target = %target, lun, held,
                    "took the data fence away from the stalled active gateway");
                true
            }
            Err(err) => {
                tracing::warn!(target = %target, lun, %err, "cannot clear the data fence");
                false
            }
        },
    )
}

/// The first LUN whose store's own read of its first block is refused as fenced: another
/// gateway holds that LUN's data fence now, so this gateway, which thinks it holds it, was
/// stalled and lost it. Anything else (a read that goes through, or fails otherwise, or
/// takes longer than [`PROBE_WAIT`]) proves nothing. The read is sent from a thread of its
/// own: gfapi's lock owner is per thread and the calling (refresh) thread's carries the
/// metadata locks' owner, which the brick would refuse as not the fence's
/// (docs/fencing.md); the data path's threads never lock.
pub fn fence_taken(stores: &[(u16, Arc<dyn BlockStore>)]) -> Option<u16> {
    stores.iter().find_map(|(lun, store)| {
        let len = store.geometry().block_size;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|t| {
            t.spawn(|| {
                store.submit(
                    IoRequest::Read { offset: 0, len },
                    store_api::Completion::new(move |result| {
                        let _ = tx.send(result);
                    }),
                );
            });
        });
        match rx.recv_timeout(PROBE_WAIT) {
            Err(_) | Ok(Ok(_)) => None,
            Ok(Err(err)) => (err.kind == ErrorKind::Fenced).then_some(*lun),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_version_that_stands_still_for_the_bound_is_stalled() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        assert_eq!(w.stalled("t", Some(5), t0), None);
        assert_eq!(w.stalled("t", Some(5), t0 + STALL_AFTER / 2), None);
        assert_eq!(w.stalled("t", Some(5), t0 + STALL_AFTER), Some(5));
        // A heartbeat (a new version) starts the wait again.
        assert_eq!(w.stalled("t", Some(6), t0 + STALL_AFTER), None);
        assert_eq!(
            w.stalled(
                "t",
                Some(6),
                t0 + 2 * STALL_AFTER - Duration::from_millis(1)
            ),
            None
        );
        assert_eq!(w.stalled("t", Some(6), t0 + 2 * STALL_AFTER), Some(6));
        // Targets are watched apart.
        assert_eq!(w.stalled("u", Some(6), t0 + 2 * STALL_AFTER), None);
        // Nobody named active: nothing to take over, and the wait starts over.
        assert_eq!(w.stalled("t", None, t0 + 3 * STALL_AFTER), None);
        assert_eq!(w.stalled("t", Some(6), t0 + 3 * STALL_AFTER), None);
        w.forget("t");
        assert_eq!(w.stalled("t", Some(6), t0 + 4 * STALL_AFTER), None);
        assert_eq!(w.stalled("t", Some(6), t0 + 5 * STALL_AFTER), Some(6));
    }
}
