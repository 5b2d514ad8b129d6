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
//!   naming another gateway active for the stall bound ([`stall_after`], by default
//!   [`STALL_AFTER`]; `alua_stall_after`, `--alua-stall-after`; by its own clock: no time
//!   crosses gateways) takes the LUN's takeover lock [`TAKEOVER`] (one standby at a
//!   time: with three gateways or more, two standbys see the same heartbeat stand still),
//!   checks that the record still has that version (a standby that took over before
//!   wrote a newer one), takes the holder's election lock over and then every LUN's data
//!   fence (`BlockStore::take_lock_over`: a waiting request queued before the holder's
//!   lock is cleared, granted by the bricks as they clear it), and only then writes the
//!   record naming itself ([`Watch`], [`begin_takeover`], `Failover::take`);
//! * the stalled gateway, when it resumes, no longer holds the fence: the bricks refuse
//!   its reads and writes (EAGAIN, `ErrorKind::Fenced`, NOT READY 04h/0Ah) because the new
//!   active gateway holds a mandatory lock on the image, so nothing it still sends lands;
//!   its next round sees that through a read of its own ([`fence_taken`]) or through a
//!   refused command (`failover::note_fenced`) and steps down without writing the record
//!   over the new active gateway's.
//!
//! No write of the stalled gateway lands between the clearing and the new lock: there is
//! no such moment on a brick (docs/fencing.md, measured on Gluster 10.3), unless the
//! waiting request did not reach the bricks within the store's settling time (50 ms).
//! A standby that stalls while it holds the takeover lock keeps the others out until the
//! record has stood still for twice the bound; then one standby takes the takeover lock
//! over in the same way: the one that gets [`TAKEOVER_BREAK`] without waiting and still
//! reads the stalled version, so two that judge it stuck at once do not both go on.
//!
//! Left open on purpose: a standby that stalls while it holds [`TAKEOVER_BREAK`] keeps the
//! LUN's takeovers out until it resumes or its connection to the volume ends. The others
//! then find the LUN's takeovers blocked ([`Refusal::Blocked`], once the record has stood
//! still for [`blocked_after`]) and say so: once at WARN level in the log, and in the
//! metric `glfs_iscsi_alua_takeover_blocked`, so that an operator restarts or kills that
//! gateway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store_api::MetadataLock;
use store_api::{BlockStore, ErrorKind, IoRequest, LockError, LockMode, LockOwner, LockWait};

/// How long a standby waits for the active gateway's heartbeat (a new record version)
/// before it takes the fence away, by default: several of the active gateway's rounds
/// (one at least every second) and the volume's own hiccups. A legitimately slow active
/// gateway that loses the fence this way only steps down: its writes are refused, none
/// lands. Set per gateway with `alua_stall_after` / `--alua-stall-after`
/// ([`set_stall_after`]).
pub const STALL_AFTER: Duration = Duration::from_secs(8);

/// The least and the most stall bound accepted ([`parse_stall_after`]): below two
/// seconds, a few late rounds of a live active gateway (one every 0.5 s at best) would
/// cost it the fence.
pub const STALL_AFTER_RANGE: (u64, u64) = (2, 3600);

/// The stall bound in effect, in milliseconds.
static BOUND_MS: AtomicU64 = AtomicU64::new(STALL_AFTER.as_millis() as u64);

/// The stall bound in effect ([`STALL_AFTER`] unless set).
pub fn stall_after() -> Duration {
    Duration::from_millis(BOUND_MS.load(Ordering::Relaxed))
}

/// Makes `bound` the stall bound of this process (at start, before the first round).
pub fn set_stall_after(bound: Duration) {
    BOUND_MS.store(bound.as_millis() as u64, Ordering::Relaxed);
}

/// Reads a stall bound in whole seconds ([`STALL_AFTER_RANGE`]), for the flag and the
/// config key.
pub fn parse_stall_after(s: &str) -> Result<Duration, String> {
    let (least, most) = STALL_AFTER_RANGE;
    match s.trim().parse::<u64>() {
        Ok(secs) if (least..=most).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{s:?} is not a number of seconds from {least} to {most} (how long a standby \
             waits for the active gateway's heartbeat before it takes the fence over)"
        )),
    }
}

/// The advisory metadata lock of a LUN that a standby holds while it takes the LUN over
/// from a stalled active gateway: one standby at a time ([`begin_takeover`]).
pub const TAKEOVER: &str = "alua-takeover";

/// The advisory metadata lock of a LUN that a standby holds, beside [`TAKEOVER`], while it
/// takes a stuck takeover lock over and for the rest of that takeover ([`begin_takeover`]).
/// It is only ever taken without waiting and never taken over itself: of the standbys that
/// judge the takeover lock stuck at the same moment, one gets it and the others stay
/// standby, so no standby clears a takeover lock that another has just taken over.
/// (Until stop 28 it was named `alua-takeover-break`, longer than a metadata name may be:
/// every store refused it, so no standby could ever break a stuck takeover lock.)
pub const TAKEOVER_BREAK: &str = "alua-take-break";

/// How long a standby waits for a lock it takes over (`BlockStore::take_lock_over`).
pub const TAKE_WAIT: Duration = Duration::from_secs(5);

/// The metadata objects the gateways write beside a LUN: a gateway stalled while it
/// wrote one of them keeps the volume's locks on it ([`clear_write_locks`]).
pub const WRITTEN_OBJECTS: [&str; 4] = [
    crate::failover::RECORD,
    scsi::RESERVATIONS_METADATA,
    scsi::RESERVATIONS_LU_METADATA,
    crate::gateways::ACKS_METADATA,
];

/// The metadata locks under which gateways write [`WRITTEN_OBJECTS`] while others may be
/// taking a LUN over: the reservations' (their changes write `pr` and `pr-lu`) and the
/// acknowledgements' ([`crate::gateways::ACKS_METADATA`]). The record is written only by
/// the active gateway and by a standby holding [`TAKEOVER`].
pub const WRITERS_LOCKS: [&str; 2] = [scsi::RESERVATIONS_METADATA, crate::gateways::ACKS_METADATA];

/// How long [`clear_write_locks`] waits in all for [`WRITERS_LOCKS`]: longer than a live
/// gateway's write of one of those objects under its lock takes (a read and a rename).
pub const WRITERS_WAIT: Duration = Duration::from_secs(2);

/// Once the stalled gateway's fence is taken over: the locks the volume took for its
/// writes go too (`BlockStore::clear_write_locks` on the image and [`WRITTEN_OBJECTS`]).
/// On a replicated Gluster volume a gateway stopped under write load keeps AFR's eager
/// lock on the image, and one stopped while it wrote its record keeps AFR's locks on
/// the record and its name; until they go, the new active gateway's first write of its
/// record, and every write to the LUN, waits for the stalled one to resume (measured on
/// 10.3, docs/fencing.md "A stalled writer's volume locks"). Its writes are refused from
/// the moment the fence is taken over, so none of them completes under the cleared
/// locks. A failure is logged and the takeover goes on: the record write then shows
/// whether it mattered. Returns how many went.
///
/// Live gateways write some of those objects too, each write under its object's metadata
/// lock ([`WRITERS_LOCKS`]): a standby acknowledging reservations into `pr-acks`, any
/// gateway changing the reservations. Clear-locks names a file and a name, never a
/// client, so a live gateway inside its rename of one of them at this moment would lose
/// its entry locks with the stalled one's. So the clearing waits, at most
/// [`WRITERS_WAIT`] in all, for those locks and holds them while it clears: a write in
/// progress finishes first and the next waits. A lock still held after that is the
/// stalled gateway's (stalled inside such a write, the case the clearing is for) or a
/// live gateway's that takes longer; the clearing goes on without it.
pub fn clear_write_locks(target: &str, lun: u16, store: &dyn BlockStore, owner: &LockOwner) -> u32 {
    let until = Instant::now() + WRITERS_WAIT;
    let _writers: Vec<MetadataLock> = WRITERS_LOCKS
        .iter()
        .filter_map(|name| {
            let left = until.saturating_duration_since(Instant::now());
            let wait = if left.is_zero() {
                LockWait::NoWait
            } else {
                LockWait::AtMost(left)
            };
            match store.lock_metadata(name, owner, LockMode::Exclusive, wait) {
                Ok(lock) => Some(lock),
                Err(err) => {
                    tracing::info!(target = %target, lun, lock = name, %err,
                        "clearing the volume's write locks without this lock");
                    None
                }
            }
        })
        .collect();
    match store.clear_write_locks(&WRITTEN_OBJECTS) {
        Ok(0) => 0,
        Ok(cleared) => {
            tracing::warn!(target = %target, lun, cleared,
                "cleared the volume's locks the stalled active gateway held for its writes");
            cleared
        }
        Err(err) => {
            tracing::warn!(target = %target, lun, %err,
                "cannot clear the volume's locks the stalled active gateway held for its writes");
            0
        }
    }
}

/// How long the record stands still, as a standby sees it, before it judges the LUN's
/// takeovers blocked ([`Refusal::Blocked`]): the takeover lock is taken over after twice
/// `bound`, and the standby that holds [`TAKEOVER_BREAK`] then has twice `bound` more, and
/// at least the time its three lock takeovers and its wait for the writers' locks may take
/// (3 x [`TAKE_WAIT`] + [`WRITERS_WAIT`], [`clear_write_locks`]), to write the
/// record before the others judge it stalled too.
pub fn blocked_after(bound: Duration) -> Duration {
    2 * bound + (2 * bound).max(3 * TAKE_WAIT + WRITERS_WAIT)
}

/// Why [`begin_takeover`] gave no takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The record moved on: another standby took over, or the stalled gateway resumed.
    MovedOn,
    /// Another standby holds the takeover lock (and it is not yet judged stuck), or holds
    /// [`TAKEOVER_BREAK`] while the record has stood still for less than
    /// [`blocked_after`]: it is taking over.
    Busy,
    /// The takeover lock is stuck and another standby has held [`TAKEOVER_BREAK`] while
    /// the record stood still for [`blocked_after`]: that standby stalled in its takeover,
    /// and nobody takes this LUN over until it resumes or its connection to the volume
    /// ends. Not logged by [`begin_takeover`]: its caller says it once
    /// (`failover::Failover`).
    Blocked,
    /// A lock request failed otherwise (logged).
    Failed,
}

/// How long [`fence_taken`] waits for its read.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// What a standby saw of each target's record: the version, and the start of the first
/// round after the one that first read it.
///
/// Not the start of the round that read it: a round is told the time when it starts, and
/// its gateway may be stopped (SIGSTOP, a wedged host) after that and before its read, then
/// read a version written long after that time; counted from there, the next round would
/// find that version standing for as long as its own gateway was stopped and take a live
/// gateway's fence over. The start of the next round comes after that read, so the age is
/// never more than the time the version really stood (at most one round less).
#[derive(Debug)]
pub struct Watch {
    seen: HashMap<String, (u64, Option<Instant>)>,
    bound: Duration,
}

impl Default for Watch {
    /// A watch with the stall bound in effect ([`stall_after`]).
    fn default() -> Self {
        Watch::with_bound(stall_after())
    }
}

/// A record version whose heartbeat stood still ([`Watch::stalled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled {
    pub version: u64,
    /// For how long this gateway has seen that version.
    pub stood: Duration,
}

impl Watch {
    /// A watch whose versions are stalled after `bound`.
    pub fn with_bound(bound: Duration) -> Self {
        Watch {
            seen: HashMap::new(),
            bound,
        }
    }

    /// The bound.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Notes that `target`'s record read at `now` has `version` and names another gateway
    /// active (`None`: no record, or nobody active); answers the version that has stood
    /// unchanged for the bound since this gateway first saw it, if there is one.
    pub fn stalled(&mut self, target: &str, active: Option<u64>, now: Instant) -> Option<u64> {
        self.stalled_for(target, active, now).map(|s| s.version)
    }

    /// As [`Watch::stalled`], with how long the version has stood.
    pub fn stalled_for(
        &mut self,
        target: &str,
        active: Option<u64>,
        now: Instant,
    ) -> Option<Stalled> {
        let stood = self.age(target, active, now);
        let version = active?;
        (stood >= self.bound).then_some(Stalled { version, stood })
    }

    /// Notes what [`Watch::stalled`] notes and answers for how long the version has stood
    /// unchanged, counted from the start (`now`) of the first round after the one that
    /// first read it: zero for `None`, for a new version, and in that next round.
    pub fn age(&mut self, target: &str, active: Option<u64>, now: Instant) -> Duration {
        let Some(version) = active else {
            self.seen.remove(target);
            return Duration::ZERO;
        };
        match self.seen.get_mut(target) {
            Some((seen, since)) if *seen == version => match since {
                Some(at) => now.saturating_duration_since(*at),
                None => {
                    *since = Some(now);
                    Duration::ZERO
                }
            },
            _ => {
                self.seen.insert(target.to_string(), (version, None));
                Duration::ZERO
            }
        }
    }

    /// Forgets `target` (this gateway became its active gateway).
    pub fn forget(&mut self, target: &str) {
        self.seen.remove(target);
    }
}

/// What a standby holds while it takes a LUN over ([`begin_takeover`]): the LUN's
/// [`TAKEOVER`] lock and, when it took a stuck one over, [`TAKEOVER_BREAK`]. Both go when
/// this drops (the takeover lock first).
#[derive(Debug)]
pub struct Takeover {
    _lock: MetadataLock,
    _breaking: Option<MetadataLock>,
}

/// Whether this standby may take LUN `lun` of `target` over from the stalled active
/// gateway whose record version `stalled` stood still: only while it holds the LUN's
/// [`TAKEOVER`] lock (returned; held until the record names it) and the record
/// (`current`: its version now) still has that version. With three gateways or more, two
/// standbys see the same heartbeat stand still; the second either finds the takeover
/// lock held (and waits for its next round) or, once it gets it, a newer record written
/// by the first (and stays standby): takeovers are one at a time, and none clears a lock
/// another standby just took.
///
/// A takeover lock held while the record stood still for twice `bound` (its holder
/// stalled too) is taken over as the fence is, but only by the standby that gets
/// [`TAKEOVER_BREAK`] without waiting, and only if the record still has the stalled
/// version before it clears anything; it keeps that lock to the end of its takeover. So
/// two standbys that judge the takeover lock stuck at the same moment do not both clear
/// it and both go on (each clearing the other's lock in turn): one of them does, the
/// other finds the breaking lock held and stays standby. Nothing here waits for a holder:
/// every lock is tried once, and the taking over is bounded by [`TAKE_WAIT`]. A breaking
/// lock still held once the record has stood still for [`blocked_after`] is
/// [`Refusal::Blocked`].
pub fn begin_takeover(
    target: &str,
    lun: u16,
    store: &dyn BlockStore,
    owner: &LockOwner,
    stalled: Stalled,
    bound: Duration,
    current: impl Fn() -> Option<u64>,
) -> Result<Takeover, Refusal> {
    let try_lock = |name| store.lock_metadata(name, owner, LockMode::Exclusive, LockWait::NoWait);
    // Another standby took over before (or the stalled gateway resumed, or the holder of
    // the takeover lock finished): no takeover, and nothing of theirs is cleared.
    let moved_on = || {
        let moved = current() != Some(stalled.version);
        if moved {
            tracing::info!(target = %target, lun, "the record moved on: no takeover");
        }
        moved
    };
    let (lock, breaking) = match try_lock(TAKEOVER) {
        Ok(lock) => (lock, None),
        Err(LockError::Contended { .. }) if stalled.stood >= 2 * bound => {
            let breaking = match try_lock(TAKEOVER_BREAK) {
                Ok(lock) => lock,
                Err(LockError::Contended { .. }) if stalled.stood >= blocked_after(bound) => {
                    return Err(Refusal::Blocked);
                }
                Err(LockError::Contended { .. }) => {
                    tracing::info!(target = %target, lun, "{TAKING_THE_STUCK_LOCK_OVER}");
                    return Err(Refusal::Busy);
                }
                Err(err) => {
                    tracing::warn!(target = %target, lun, %err, "cannot take the takeover lock");
                    return Err(Refusal::Failed);
                }
            };
            if moved_on() {
                // The takeover lock is not stuck, and is left alone.
                return Err(Refusal::MovedOn);
            }
            tracing::warn!(target = %target, lun, stood = ?stalled.stood,
                "another standby's takeover stands still: taking its takeover lock over");
            match store.take_lock_over(TAKEOVER, owner, TAKE_WAIT) {
                Ok(lock) => (lock, Some(breaking)),
                Err(err) => {
                    tracing::warn!(target = %target, lun, %err, "cannot take the takeover lock over");
                    return Err(Refusal::Failed);
                }
            }
        }
        Err(LockError::Contended { .. }) => {
            tracing::info!(target = %target, lun, "another standby is taking over: staying standby");
            return Err(Refusal::Busy);
        }
        Err(err) => {
            tracing::warn!(target = %target, lun, %err, "cannot take the takeover lock");
            return Err(Refusal::Failed);
        }
    };
    if moved_on() {
        return Err(Refusal::MovedOn);
    }
    Ok(Takeover {
        _lock: lock,
        _breaking: breaking,
    })
}

/// The line a standby logs while another standby takes the stuck takeover lock over (and
/// at every round the LUN's takeovers stay blocked after the first, which is a WARN).
pub const TAKING_THE_STUCK_LOCK_OVER: &str =
    "another standby is taking the stuck takeover lock over: staying standby";

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
pub(crate) mod tests {
    use super::*;

    /// Rounds every half second from `from` to `to` (both included), each reading
    /// `version`; what the last one answers.
    fn rounds(w: &mut Watch, version: Option<u64>, from: Instant, to: Instant) -> Option<Stalled> {
        let mut at = from;
        loop {
            let answer = w.stalled_for("t", version, at);
            if at >= to {
                return answer;
            }
            at = (at + Duration::from_millis(500)).min(to);
        }
    }

    #[test]
    fn a_record_version_that_stands_still_for_the_bound_is_stalled() {
        let mut w = Watch::with_bound(STALL_AFTER);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // First read at t0; counted from the next round's start (t0 + 500 ms).
        assert_eq!(w.stalled("t", Some(5), t0), None);
        assert_eq!(w.stalled("t", Some(5), t0 + ms(500)), None);
        assert_eq!(w.stalled("t", Some(5), t0 + STALL_AFTER / 2), None);
        assert_eq!(w.stalled("t", Some(5), t0 + STALL_AFTER + ms(499)), None);
        assert_eq!(w.stalled("t", Some(5), t0 + STALL_AFTER + ms(500)), Some(5));
        // A heartbeat (a new version) starts the wait again.
        let t1 = t0 + 2 * STALL_AFTER;
        assert_eq!(w.stalled("t", Some(6), t1), None);
        assert_eq!(
            rounds(&mut w, Some(6), t1 + ms(500), t1 + STALL_AFTER),
            None
        );
        assert_eq!(w.stalled("t", Some(6), t1 + STALL_AFTER + ms(500)), Some(6));
        // Targets are watched apart.
        assert_eq!(w.stalled("u", Some(6), t1 + STALL_AFTER + ms(500)), None);
        // Nobody named active: nothing to take over, and the wait starts over.
        let t2 = t0 + 4 * STALL_AFTER;
        assert_eq!(w.stalled("t", None, t2), None);
        assert_eq!(rounds(&mut w, Some(6), t2, t2 + STALL_AFTER), None);
        w.forget("t");
        let t3 = t0 + 6 * STALL_AFTER;
        assert_eq!(rounds(&mut w, Some(6), t3, t3 + STALL_AFTER), None);
        assert_eq!(w.stalled("t", Some(6), t3 + STALL_AFTER + ms(500)), Some(6));
    }

    /// A round told the time when it started, then held up (its gateway SIGSTOPped for
    /// 35 s) before it read the record: the version it read was written during the stop.
    /// The next round, at once, must not find it standing for those 35 s (the Docker
    /// "gateway stall in the middle of a write" scenario: the stalled gateway, resumed and
    /// stepped down, took the new active gateway's fence away 60 ms later).
    #[test]
    fn a_version_read_by_a_round_held_up_after_it_started_counts_from_the_next_round() {
        let mut w = Watch::with_bound(STALL_AFTER);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Active itself until the stop: nothing watched. Then the held-up round.
        assert_eq!(w.stalled("t", Some(25), t0), None);
        let resumed = t0 + s(35);
        assert_eq!(w.stalled("t", Some(25), resumed), None);
        // The live gateway's next heartbeats are seen as usual.
        assert_eq!(w.stalled("t", Some(26), resumed + s(1)), None);
        // Only a real stall of the version read is one.
        assert_eq!(
            rounds(&mut w, Some(26), resumed + s(2), resumed + s(9)),
            None
        );
        assert_eq!(w.stalled("t", Some(26), resumed + s(10)), Some(26));
    }

    #[test]
    fn the_age_of_a_version_is_how_long_it_stood_and_zero_when_it_moves() {
        let mut w = Watch::with_bound(STALL_AFTER);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(w.age("t", Some(5), t0), Duration::ZERO);
        // Counted from the round after the first read.
        assert_eq!(w.age("t", Some(5), t0 + s(1)), Duration::ZERO);
        assert_eq!(w.age("t", Some(5), t0 + s(4)), s(3));
        // Past the bound it goes on growing.
        assert_eq!(w.age("t", Some(5), t0 + s(21)), s(20));
        // A heartbeat: zero again, counted from the new version.
        assert_eq!(w.age("t", Some(6), t0 + s(22)), Duration::ZERO);
        assert_eq!(w.age("t", Some(6), t0 + s(23)), Duration::ZERO);
        assert_eq!(w.age("t", Some(6), t0 + s(24)), s(1));
        // Nobody named active: zero, and the next version counts from its first sight.
        assert_eq!(w.age("t", None, t0 + s(25)), Duration::ZERO);
        assert_eq!(w.age("t", Some(6), t0 + s(26)), Duration::ZERO);
        assert_eq!(w.age("t", Some(6), t0 + s(27)), Duration::ZERO);
    }

    #[test]
    fn the_bound_is_whatever_the_watch_was_given() {
        let mut w = Watch::with_bound(Duration::from_secs(3));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(w.stalled_for("t", Some(1), t0), None);
        assert_eq!(w.stalled_for("t", Some(1), t0 + ms(500)), None);
        assert_eq!(w.stalled_for("t", Some(1), t0 + ms(3499)), None);
        assert_eq!(
            w.stalled_for("t", Some(1), t0 + Duration::from_secs(7)),
            Some(Stalled {
                version: 1,
                stood: ms(6500)
            })
        );
    }

    #[test]
    fn a_stall_bound_is_whole_seconds_from_two_to_an_hour() {
        assert_eq!(parse_stall_after("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_stall_after(" 30 "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_stall_after("3600"), Ok(Duration::from_secs(3600)));
        for bad in ["0", "1", "3601", "-5", "2.5", "", "eight"] {
            let err = parse_stall_after(bad).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "{bad:?} is not a number of seconds from 2 to 3600 (how long a standby \
                     waits for the active gateway's heartbeat before it takes the fence over)"
                )
            );
        }
    }

    /// Three gateways: A (active) stalled; standbys B and C both see its record version 7
    /// stand still. B gets the takeover lock; C, in the same moment, does not (and clears
    /// nothing); once B recorded itself (version 8) and let go, C gets the lock but finds
    /// the record moved on, and stays standby.
    #[test]
    fn two_standbys_that_see_the_same_stall_take_over_one_at_a_time() {
        use store_api::Geometry;
        let store = backstore::MemoryStore::new(Geometry {
            block_size: 512,
            num_blocks: 8,
        });
        let (b, c) = (
            LockOwner::new("gw-b").unwrap(),
            LockOwner::new("gw-c").unwrap(),
        );
        let bound = STALL_AFTER;
        let stalled = Stalled {
            version: 7,
            stood: bound,
        };
        let version = std::cell::Cell::new(7);
        let by_b = begin_takeover("t", 0, &store, &b, stalled, bound, || Some(version.get()));
        assert!(by_b.is_ok());
        assert_eq!(
            begin_takeover("t", 0, &store, &c, stalled, bound, || Some(version.get())).err(),
            Some(Refusal::Busy)
        );
        // B takes the election lock and the fence over and records itself.
        version.set(8);
        drop(by_b);
        assert_eq!(
            begin_takeover("t", 0, &store, &c, stalled, bound, || Some(version.get())).err(),
            Some(Refusal::MovedOn)
        );
        // ... and the takeover lock is free again: C's failed try let go of it.
        assert!(store
            .lock_metadata(TAKEOVER, &b, LockMode::Exclusive, LockWait::NoWait)
            .is_ok());
        // A takeover lock held while the record stood still for twice the bound is taken
        // over (a memory store cannot: it stays held, and C stays standby).
        let held = store
            .lock_metadata(TAKEOVER, &b, LockMode::Exclusive, LockWait::NoWait)
            .unwrap();
        let long = Stalled {
            version: 8,
            stood: 2 * bound,
        };
        assert_eq!(
            begin_takeover("t", 0, &store, &c, long, bound, || Some(8)).err(),
            Some(Refusal::Failed)
        );
        drop(held);
        assert!(begin_takeover("t", 0, &store, &c, long, bound, || Some(8)).is_ok());
    }

    /// Every metadata object and lock the gateways keep beside a LUN has a name the stores
    /// keep (1 to 16 of a-z, 0-9 and -): every store refuses a longer one, and a lock
    /// under such a name is then never held by anyone (as the takeover-breaking lock's
    /// first name, 19 characters, never was).
    #[test]
    fn every_metadata_name_the_gateways_use_is_one_the_stores_keep() {
        for name in [
            TAKEOVER,
            TAKEOVER_BREAK,
            crate::failover::RECORD,
            crate::failover::ELECTION,
            crate::failover::TARGET_MARK,
            crate::gateways::ACKS_METADATA,
            crate::gateways::LIVE_METADATA,
            scsi::RESERVATIONS_METADATA,
            scsi::RESERVATIONS_LU_METADATA,
            // The liveness lock of a gateway of the longest id allowed.
            &crate::gateways::gateway_lock(&"g".repeat(LockOwner::MAX_LEN)),
        ] {
            assert!(store_api::valid_metadata_name(name), "{name}");
        }
    }

    /// Locks as the bricks keep them: one holder per name, and `take_lock_over` takes a
    /// lock from whoever holds it (clear-locks, the caller's waiting request granted as it
    /// clears), counting the clearings of a held lock. A guard whose lock was taken over
    /// lets go of nothing when it drops.
    ///
    /// Metadata objects are kept too, and `ops` logs, in order, each lock taken over, each
    /// clearing of the volume's write locks and each object written.
    #[derive(Default)]
    pub(crate) struct Bricks {
        pub(crate) held: std::sync::Arc<std::sync::Mutex<HashMap<String, u64>>>,
        grants: AtomicU64,
        pub(crate) cleared: AtomicU64,
        objects: std::sync::Mutex<HashMap<String, Vec<u8>>>,
        pub(crate) ops: std::sync::Mutex<Vec<String>>,
    }

    impl Bricks {
        /// What every store answers a lock of a name it cannot keep (memory, file and
        /// glfs alike: `store_api::valid_metadata_name`).
        fn check(name: &str) -> Result<(), LockError> {
            if store_api::valid_metadata_name(name) {
                return Ok(());
            }
            Err(LockError::store(
                name,
                store_api::StoreError::new(store_api::Op::Lock, ErrorKind::OutOfRange),
            ))
        }

        fn grant(&self, name: &str, owner: &LockOwner) -> MetadataLock {
            let n = self.grants.fetch_add(1, Ordering::Relaxed);
            self.held.lock().unwrap().insert(name.to_string(), n);
            struct Held(
                std::sync::Arc<std::sync::Mutex<HashMap<String, u64>>>,
                String,
                u64,
            );
            impl Drop for Held {
                fn drop(&mut self) {
                    let mut held = self.0.lock().unwrap();
                    if held.get(&self.1) == Some(&self.2) {
                        held.remove(&self.1);
                    }
                }
            }
            let held = Held(self.held.clone(), name.to_string(), n);
            MetadataLock::new(name, owner, LockMode::Exclusive, held)
        }
    }

    impl BlockStore for Bricks {
        fn geometry(&self) -> store_api::Geometry {
            store_api::Geometry {
                block_size: 512,
                num_blocks: 8,
            }
        }
        fn capabilities(&self) -> store_api::Capabilities {
            store_api::Capabilities::default()
        }
        fn submit(&self, _: IoRequest, done: store_api::Completion) {
            done.complete(Err(store_api::StoreError::new(
                store_api::Op::Read,
                ErrorKind::Unsupported,
            )));
        }
        fn describe(&self) -> String {
            "bricks".into()
        }
        fn lock_metadata(
            &self,
            name: &str,
            owner: &LockOwner,
            _: LockMode,
            wait: LockWait,
        ) -> Result<MetadataLock, LockError> {
            Self::check(name)?;
            let started = Instant::now();
            let most = match wait {
                LockWait::NoWait => Duration::ZERO,
                LockWait::AtMost(most) => most,
            };
            while self.held.lock().unwrap().contains_key(name) {
                if started.elapsed() >= most {
                    return Err(LockError::Contended {
                        name: name.into(),
                        waited: started.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(self.grant(name, owner))
        }
        fn take_lock_over(
            &self,
            name: &str,
            owner: &LockOwner,
            _: Duration,
        ) -> Result<MetadataLock, LockError> {
            Self::check(name)?;
            if self.held.lock().unwrap().contains_key(name) {
                self.cleared.fetch_add(1, Ordering::Relaxed);
            }
            self.ops.lock().unwrap().push(format!("take over {name}"));
            Ok(self.grant(name, owner))
        }
        fn clear_write_locks(&self, names: &[&'static str]) -> Result<u32, store_api::StoreError> {
            let names = names.join(",");
            let mut held: Vec<String> = self.held.lock().unwrap().keys().cloned().collect();
            held.sort();
            let mut ops = self.ops.lock().unwrap();
            ops.push(format!("held at the clearing: {}", held.join(",")));
            ops.push(format!("clear write locks {names}"));
            Ok(1)
        }
        fn read_metadata(&self, name: &str) -> Result<Option<Vec<u8>>, store_api::StoreError> {
            Ok(self.objects.lock().unwrap().get(name).cloned())
        }
        fn write_metadata(&self, name: &str, data: &[u8]) -> Result<(), store_api::StoreError> {
            self.ops.lock().unwrap().push(format!("write {name}"));
            self.objects
                .lock()
                .unwrap()
                .insert(name.into(), data.to_vec());
            Ok(())
        }
    }

    /// A live standby C is writing `pr-acks` (its lock held) when B clears the stalled
    /// gateway's write locks: B waits for C's write to end and clears while it holds the
    /// acknowledgements' and the reservations' locks, so C's rename never loses its
    /// entry locks; C's next write waits for B.
    #[test]
    fn the_clearing_waits_for_a_live_gateways_write_of_the_objects_and_holds_their_locks() {
        let bricks = Arc::new(Bricks::default());
        let c = LockOwner::new("gw-c").unwrap();
        let writing = bricks
            .lock_metadata(
                crate::gateways::ACKS_METADATA,
                &c,
                LockMode::Exclusive,
                LockWait::NoWait,
            )
            .unwrap();
        let ends = {
            let bricks = bricks.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                bricks.ops.lock().unwrap().push("gw-c wrote pr-acks".into());
                drop(writing);
            })
        };
        let started = Instant::now();
        let b = LockOwner::new("gw-b").unwrap();
        assert_eq!(clear_write_locks("t", 0, &*bricks, &b), 1);
        let took = started.elapsed();
        ends.join().unwrap();
        assert!(
            took >= Duration::from_millis(300) && took < WRITERS_WAIT,
            "{took:?}"
        );
        let ops = bricks.ops.lock().unwrap().clone();
        assert_eq!(
            ops,
            [
                "gw-c wrote pr-acks".to_string(),
                "held at the clearing: pr,pr-acks".into(),
                format!("clear write locks {}", WRITTEN_OBJECTS.join(",")),
            ]
        );
        // Let go once the clearing is done.
        assert!(bricks.held.lock().unwrap().is_empty());
    }

    /// The locks held by the stalled gateway itself (stopped inside a reservation change
    /// and its acknowledgement): the clearing waits [`WRITERS_WAIT`] in all, not per lock,
    /// and then clears without them.
    #[test]
    fn the_clearing_waits_at_most_writers_wait_for_locks_the_stalled_gateway_holds() {
        let bricks = Bricks::default();
        let a = LockOwner::new("gw-a").unwrap();
        let _stalled: Vec<_> = WRITERS_LOCKS
            .iter()
            .map(|name| {
                bricks
                    .lock_metadata(name, &a, LockMode::Exclusive, LockWait::NoWait)
                    .unwrap()
            })
            .collect();
        let started = Instant::now();
        let b = LockOwner::new("gw-b").unwrap();
        assert_eq!(clear_write_locks("t", 0, &bricks, &b), 1);
        let took = started.elapsed();
        assert!(
            took >= WRITERS_WAIT && took < WRITERS_WAIT + Duration::from_millis(900),
            "{took:?}"
        );
        let ops = bricks.ops.lock().unwrap().clone();
        assert_eq!(
            ops,
            [
                "held at the clearing: pr,pr-acks".to_string(),
                format!("clear write locks {}", WRITTEN_OBJECTS.join(",")),
            ]
        );
    }

    /// Four gateways: A (active) stalled at record version 7; standby B took the takeover
    /// lock and stalled too. C and D, standbys, both see version 7 stand still for twice
    /// the bound at the same moment. Taking the stuck takeover lock over clears whoever
    /// holds it, so if both did, D would clear C's lock and both would go on to take the
    /// election lock and the fence over: only C (first to the breaking lock) takes it over
    /// and goes on; D stays standby and clears nothing, also once C is done (the record
    /// moved on).
    #[test]
    fn two_standbys_that_find_the_takeover_lock_stuck_at_once_take_it_over_one_at_a_time() {
        let bricks = Bricks::default();
        let [b, c, d] = ["gw-b", "gw-c", "gw-d"].map(|n| LockOwner::new(n).unwrap());
        let bound = STALL_AFTER;
        let stuck = Stalled {
            version: 7,
            stood: 2 * bound,
        };
        let version = std::cell::Cell::new(7);
        let current = || Some(version.get());
        let _stalled_b = begin_takeover("t", 0, &bricks, &b, stuck, bound, current).unwrap();
        // Before twice the bound nobody takes it over.
        let early = Stalled {
            version: 7,
            stood: 2 * bound - Duration::from_millis(1),
        };
        assert_eq!(
            begin_takeover("t", 0, &bricks, &c, early, bound, current).err(),
            Some(Refusal::Busy)
        );
        assert_eq!(bricks.cleared.load(Ordering::Relaxed), 0);

        let by_c = begin_takeover("t", 0, &bricks, &c, stuck, bound, current);
        assert!(by_c.is_ok());
        assert_eq!(bricks.cleared.load(Ordering::Relaxed), 1);
        // D, in the same moment: C's takeover is under way.
        assert_eq!(
            begin_takeover("t", 0, &bricks, &d, stuck, bound, current).err(),
            Some(Refusal::Busy)
        );
        assert_eq!(
            bricks.cleared.load(Ordering::Relaxed),
            1,
            "D cleared the takeover lock C had just taken over"
        );
        // C records itself (version 8) and lets go; D, still on version 7, finds the record
        // moved on.
        version.set(8);
        drop(by_c);
        assert_eq!(
            begin_takeover("t", 0, &bricks, &d, stuck, bound, current).err(),
            Some(Refusal::MovedOn)
        );
        assert_eq!(bricks.cleared.load(Ordering::Relaxed), 1);
    }

    /// Four gateways: A (active) stalled at record version 7, standby B stalled holding the
    /// takeover lock, then C stalled too, holding the breaking lock it took to take B's
    /// takeover lock over (stop 26's open case). D finds the breaking lock held: while the
    /// record has stood still for less than [`blocked_after`], C may still be taking over
    /// (D stays standby, busy); from then on the LUN's takeovers are blocked (D clears
    /// nothing either way), until C resumes and records itself.
    #[test]
    fn a_standby_stalled_with_the_breaking_lock_blocks_the_luns_takeovers_after_the_bound() {
        let bricks = Bricks::default();
        let [b, c, d] = ["gw-b", "gw-c", "gw-d"].map(|n| LockOwner::new(n).unwrap());
        let bound = Duration::from_secs(10);
        // Twice the bound, then twice the bound more for the breaking lock's holder (20 s,
        // more than the 17 s of its three lock takeovers and its wait for the writers'
        // locks).
        assert_eq!(blocked_after(bound), Duration::from_secs(40));
        // With the least bound (2 s) the holder's three lock takeovers (3 x 5 s) and its
        // wait for the writers' locks (2 s) count.
        assert_eq!(
            blocked_after(Duration::from_secs(2)),
            Duration::from_secs(4 + 15 + 2)
        );
        let at = |stood| Stalled { version: 7, stood };
        let version = std::cell::Cell::new(7);
        let current = || Some(version.get());
        let _stalled_b = begin_takeover("t", 0, &bricks, &b, at(bound), bound, current).unwrap();
        let stalled_c = begin_takeover("t", 0, &bricks, &c, at(2 * bound), bound, current);
        assert!(stalled_c.is_ok());
        assert_eq!(bricks.cleared.load(Ordering::Relaxed), 1);
        let just_before = blocked_after(bound) - Duration::from_millis(1);
        assert_eq!(
            begin_takeover("t", 0, &bricks, &d, at(just_before), bound, current).err(),
            Some(Refusal::Busy)
        );
        for stood in [blocked_after(bound), 10 * blocked_after(bound)] {
            assert_eq!(
                begin_takeover("t", 0, &bricks, &d, at(stood), bound, current).err(),
                Some(Refusal::Blocked)
            );
        }
        assert_eq!(
            bricks.cleared.load(Ordering::Relaxed),
            1,
            "D cleared a lock"
        );
        // C resumes and records itself: D, still judging version 7, finds the record moved
        // on once C lets go.
        version.set(8);
        drop(stalled_c);
        assert_eq!(
            begin_takeover(
                "t",
                0,
                &bricks,
                &d,
                at(blocked_after(bound)),
                bound,
                current
            )
            .err(),
            Some(Refusal::MovedOn)
        );
        assert_eq!(bricks.cleared.load(Ordering::Relaxed), 1);
    }

    /// A standby that takes the breaking lock but finds the record moved on (the stuck
    /// takeover's holder resumed and finished) clears nothing.
    #[test]
    fn a_takeover_lock_is_not_taken_over_once_the_record_moved_on() {
        let bricks = Bricks::default();
        let [b, c] = ["gw-b", "gw-c"].map(|n| LockOwner::new(n).unwrap());
        let bound = STALL_AFTER;
        let stuck = Stalled {
            version: 7,
            stood: 2 * bound,
        };
        let held_by_b = begin_takeover("t", 0, &bricks, &b, stuck, bound, || Some(7)).unwrap();
        assert_eq!(
            begin_takeover("t", 0, &bricks, &c, stuck, bound, || Some(8)).err(),
            Some(Refusal::MovedOn)
        );
        assert_eq!(bricks.cleared.load(Ordering::Relaxed), 0);
        // B's takeover lock is still B's, and the breaking lock was let go.
        assert!(bricks.held.lock().unwrap().contains_key(TAKEOVER));
        assert!(!bricks.held.lock().unwrap().contains_key(TAKEOVER_BREAK));
        drop(held_by_b);
        assert!(bricks.held.lock().unwrap().is_empty());
    }
}
