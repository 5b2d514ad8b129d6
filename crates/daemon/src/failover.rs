//! Active/passive ALUA per LUN whose active gateway holds the LUN's data fence
//! (`--alua-failover`, `alua_failover = true`; ARCHITECTURE.md, "Several gateways on one
//! LU").
//!
//! Each LUN of a target has an active gateway of its own, so LUN 0 may be active through
//! gateway A and LUN 1 through gateway B, each failing over on its own. Each gateway
//! tries, on the daemon's refresh timer ([`crate::gateways::refresh`], a blocking thread,
//! never a connection's), to become the active gateway of every LUN:
//!
//! 1. it holds the advisory metadata lock [`TARGET_MARK`] of the target's first LUN,
//!    *shared*, for as long as it is active for any LUN of the target. That is the name
//!    under which gateways of the former layout (one active gateway per target) hold it
//!    exclusive: while such a gateway is active, no gateway of this layout asks for any
//!    fence of the target, and while one of these is active for any LUN, the former
//!    kind cannot take it (so neither ever makes a refused mandatory-lock request);
//! 2. it takes the LUN's advisory metadata lock [`ELECTION`], exclusive, without waiting:
//!    whoever holds it is (or is becoming) the LUN's active gateway, and keeps it for as
//!    long as it is. Only that holder ever asks for the LUN's data fence, so a standby
//!    never makes a refused mandatory-lock request, which on Gluster 10.3 would make the
//!    holder's own writes fail (docs/fencing.md);
//! 3. it takes the LUN's data fence (`BlockStore::fence_data`: a Gluster mandatory write
//!    lock, without waiting);
//! 4. it writes the LUN's [`Record`] `<lun>.alua` (a new version naming its target port
//!    group; by rename, as `<lun>.pr`), and only then reports itself active/optimized for
//!    that LUN.
//!
//! Every other gateway is standby for that LUN and reads its record every round, so every
//! gateway's REPORT TARGET PORT GROUPS sent to the LUN shows the same states: the recorded
//! group active/optimized, every other standby. A changed state raises ASYMMETRIC ACCESS
//! STATE CHANGED on that LU only (`scsi::ScsiTarget::set_lu_alua`).
//!
//! Which gateway a LUN goes to when several start together: its preferred group
//! ([`preferred_of`]: the LUN's `alua_preferred` in the config file, else [`preferred`],
//! the groups' ids in ascending order taken in turn by LUN number). For
//! [`PREFERRED_WAIT`] after its start a gateway takes only the LUNs it is preferred for
//! (or that are handed over to it), so a pair started together spreads the LUNs; after
//! that it takes any LUN nobody holds, at once. A preferred gateway that comes back does
//! not take its LUNs back by itself (no automatic failback: the LUN's holder keeps its
//! election lock; the operator moves it with `admin alua handover`).
//!
//! The active gateway of a LUN steps down (standby, record `active none`, fence and
//! election lock let go) when it cannot be sure the fence holds: the LUN's store was
//! replaced, the fence is no longer intact (`MetadataLock::is_intact`: the store
//! reconnected, so the lock stayed on the old mount), or one of its own requests to the
//! target was refused as fenced ([`note_fenced`]: every LUN of the target it holds). It
//! steps down on every LUN of a target whose first LUN changed or whose [`TARGET_MARK`]
//! lock is no longer intact. A dead gateway's Gluster connection closes and its locks go;
//! the next round of a standby takes them. A stalled one keeps them until a standby that
//! saw no heartbeat for the LUN (its record's version, rewritten every round by the active
//! gateway) for the stall bound ([`crate::stall::stall_after`]) takes them over
//! ([`crate::stall`]); the
//! stalled gateway, once it runs again, finds a read of its own refused as fenced and
//! steps down without writing over the new record.

use crate::targets::{Target, Targets};
use scsi::{AccessState, Alua, PortGroup};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use store_api::{BlockStore, LockError, LockMode, LockOwner, LockWait, MetadataLock};

/// The metadata object naming a LUN's active gateway (`<lun>.alua`).
pub const RECORD: &str = "alua";

/// The advisory metadata lock a LUN's active gateway holds, on that LUN, for as long as it
/// is active for it.
pub const ELECTION: &str = "alua-lun-active";

/// The advisory metadata lock of a target's first LUN that gateways of this layout hold
/// shared while active for any LUN of the target, and gateways of the former layout (one
/// active gateway per target) held exclusive as their election: the two kinds never
/// both ask for fences of one target.
pub const TARGET_MARK: &str = "alua-active";

/// The least time between two rounds (the refresh loop may come sooner, while
/// reservation acknowledgements are owed).
const ROUND_EVERY: Duration = Duration::from_millis(500);

/// For this long after its first round a gateway takes only the LUNs it is preferred for
/// ([`preferred`]) or that are handed over to it, so gateways started together spread
/// the LUNs; afterwards it takes any LUN nobody holds at once (a failover does not wait).
pub const PREFERRED_WAIT: Duration = Duration::from_secs(10);

static ENABLED: OnceLock<()> = OnceLock::new();

/// Targets one of whose requests a store refused as fenced since the last round.
static FENCED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Turns the mode on for this process (once, before any LUN opens).
pub fn enable() {
    let _ = ENABLED.set(());
}

/// Whether the ALUA states follow the data fence (`--alua-failover`).
pub fn enabled() -> bool {
    ENABLED.get().is_some()
}

/// A store of `target` refused a request as fenced (`ErrorKind::Fenced`): this gateway
/// no longer holds the fence it thinks it holds, or another's refused request broke it.
/// Called on the error path of a command only.
pub fn note_fenced(target: &str) {
    if !enabled() {
        return;
    }
    let mut fenced = FENCED.lock().unwrap_or_else(|e| e.into_inner());
    if !fenced.iter().any(|t| t == target) {
        fenced.push(target.to_string());
    }
}

fn take_fenced(target: &str) -> bool {
    let mut fenced = FENCED.lock().unwrap_or_else(|e| e.into_inner());
    let before = fenced.len();
    fenced.retain(|t| t != target);
    fenced.len() != before
}

/// What `<lun>.alua` keeps: a version, bumped by every write, and the LUN's active
/// gateway's target port group and name (none while nobody is active).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub version: u64,
    pub active: Option<(u16, String)>,
    /// A planned switchover: the group the former active gateway handed over to; other
    /// gateways leave the fence to it for [`HANDOVER_WAIT`].
    pub handover: Option<u16>,
    /// Read in the former layout (`glfs-iscsi-alua 1`, on a target's first LUN only,
    /// written by a gateway that was active for every LUN of the target). Never written.
    pub target_wide: bool,
}

impl Record {
    const MAGIC: &'static str = "glfs-iscsi-alua 2";
    /// The former layout's first line: one record per target, on its first LUN.
    const MAGIC_TARGET_WIDE: &'static str = "glfs-iscsi-alua 1";

    /// The saved form: `glfs-iscsi-alua 2`, `version N`, `active GROUP NAME` or
    /// `active none`, and `handover GROUP` when there is one, one per line.
    pub fn encode(&self) -> String {
        let active = match &self.active {
            Some((group, name)) => format!("{group} {name}"),
            None => "none".to_string(),
        };
        let handover = match self.handover {
            Some(group) => format!("handover {group}\n"),
            None => String::new(),
        };
        format!(
            "{}\nversion {}\nactive {active}\n{handover}",
            Record::MAGIC,
            self.version
        )
    }

    /// Reads the saved form, this layout's or the former one's (same lines under
    /// `glfs-iscsi-alua 1`, [`Record::target_wide`]); `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        let target_wide = match lines.next()? {
            Record::MAGIC => false,
            Record::MAGIC_TARGET_WIDE => true,
            _ => return None,
        };
        let version = lines.next()?.strip_prefix("version ")?.parse().ok()?;
        let active = match lines.next()?.strip_prefix("active ")? {
            "none" => None,
            rest => {
                let (group, name) = rest.split_once(' ')?;
                let group: u16 = group.parse().ok().filter(|g| *g != 0)?;
                store_api::LockOwner::new(name).ok()?;
                Some((group, name.to_string()))
            }
        };
        let handover = match lines.next() {
            None => None,
            Some(line) => Some(
                line.strip_prefix("handover ")?
                    .parse::<u16>()
                    .ok()
                    .filter(|g| *g != 0)?,
            ),
        };
        Some(Record {
            version,
            active,
            handover,
            target_wide,
        })
    }

    /// The active gateway's target port group.
    pub fn active_group(&self) -> Option<u16> {
        self.active.as_ref().map(|(g, _)| *g)
    }
}

/// The target port group LUN `lun` goes to by default when gateways start together:
/// the groups' ids (this gateway's and every other's, the same set on every gateway) in
/// ascending order, taken in turn by LUN number (LUN 0 the lowest id, LUN 1 the next,
/// ...). A LUN's `alua_preferred` in the config file overrides it ([`preferred_of`]).
pub fn preferred(groups: &Alua, lun: u16) -> u16 {
    let mut ids: Vec<u16> = groups.groups().map(|g| g.id).collect();
    ids.sort_unstable();
    ids[usize::from(lun) % ids.len()]
}

/// The LUNs' `alua_preferred` groups of the configuration in effect.
static PREFERENCES: Mutex<Vec<(Key, u16)>> = Mutex::new(Vec::new());

/// The target port group LUN `lun` of `target` goes to when gateways start together:
/// its `alua_preferred` in the config file, else [`preferred`].
pub fn preferred_of(groups: &Alua, target: &str, lun: u16) -> u16 {
    lock(&PREFERENCES)
        .iter()
        .find(|((t, l), _)| t == target && *l == lun)
        .map_or_else(|| preferred(groups, lun), |(_, g)| *g)
}

/// The `alua_preferred` settings of `config`, checked: only with alua failover, and each
/// one of `groups` (this gateway's `alua_group` or an `alua_peer`).
pub fn preferences(
    config: &crate::config::ConfigFile,
    groups: Option<&Alua>,
) -> anyhow::Result<Vec<(Key, u16)>> {
    let mut all = Vec::new();
    for target in &config.targets {
        for lun in &target.luns {
            let Some(group) = lun.alua_preferred else {
                continue;
            };
            let what = format!(
                "target {} LUN {}: alua_preferred {group}",
                target.name, lun.lun
            );
            if !enabled() {
                anyhow::bail!("{what}: needs alua failover (--alua-failover or alua_failover)");
            }
            if !groups.is_some_and(|g| g.groups().any(|g| g.id == group)) {
                anyhow::bail!(
                    "{what} is not a target port group (this gateway's alua_group or an \
                     alua_peer)"
                );
            }
            all.push(((target.name.clone(), lun.lun), group));
        }
    }
    Ok(all)
}

/// Makes `preferences` ([`preferences`]) the ones in effect.
pub fn set_preferences(preferences: Vec<(Key, u16)>) {
    *lock(&PREFERENCES) = preferences;
}

/// The groups a gateway reports for one LUN: its own active/optimized when it holds the
/// LUN's fence, else standby; another group active/optimized when the LUN's record names
/// it (and this gateway does not hold the fence), else standby. `groups` gives the ids
/// (its states are not used).
pub fn states(groups: &Alua, holding: bool, record: Option<&Record>) -> Alua {
    let active = if holding {
        Some(groups.own.id)
    } else {
        record
            .and_then(Record::active_group)
            .filter(|g| *g != groups.own.id)
    };
    let state = |id: u16| {
        if active == Some(id) {
            AccessState::ActiveOptimized
        } else {
            AccessState::Standby
        }
    };
    Alua {
        own: PortGroup {
            id: groups.own.id,
            state: state(groups.own.id),
        },
        others: groups
            .others
            .iter()
            .map(|g| PortGroup {
                id: g.id,
                state: state(g.id),
            })
            .collect(),
    }
}

/// A LUN of a target: the target's name and the LUN number.
type Key = (String, u16);

/// This gateway's tenure as a LUN's active gateway.
struct Tenure {
    /// The store the fence was taken on.
    store: Arc<dyn BlockStore>,
    /// Dropped before `election` (declared first).
    fence: MetadataLock,
    election: MetadataLock,
    record: Record,
}

/// The shared [`TARGET_MARK`] lock held on a target's first LUN while this gateway is
/// active for any LUN of the target.
struct Mark {
    lun: u16,
    store: Arc<dyn BlockStore>,
    _lock: MetadataLock,
}

impl Mark {
    fn is_intact(&self) -> bool {
        self._lock.is_intact()
    }
}

/// The failover state of this gateway: the LUNs it is active for.
pub struct Failover {
    owner: LockOwner,
    tenures: HashMap<Key, Tenure>,
    marks: HashMap<String, Mark>,
    last_round: Option<Instant>,
    /// The first round: until [`PREFERRED_WAIT`] after it, only preferred LUNs are taken.
    started: Option<Instant>,
    /// After handing a LUN over: this gateway does not take its fence again before then.
    hold_off: HashMap<Key, Instant>,
    /// The active gateways' heartbeats per LUN (`target/lun`), as this gateway saw them.
    beats: crate::stall::Watch,
    /// Per LUN, a handover record seen (its version) and when it was first seen.
    handovers_seen: HashMap<Key, (u64, Instant)>,
    /// The active gateways' heartbeats per LUN as [`Failover::beats`], noted every round
    /// a LUN is not this gateway's (`beats` only while it may take the LUN), for
    /// `glfs_iscsi_alua_heartbeat_age_seconds`.
    ages: crate::stall::Watch,
    /// The LUNs whose takeovers this standby found blocked at their last round
    /// ([`crate::stall::Refusal::Blocked`]; said once at WARN level).
    blocked: HashSet<Key>,
    /// Set by [`Failover::take`] when the takeover it tried was blocked.
    take_blocked: bool,
    /// The LUNs whose `alua_` metrics this gateway shows (removed when they go).
    published: HashSet<Key>,
}

impl Failover {
    pub fn new(owner: LockOwner) -> Failover {
        Failover {
            owner,
            tenures: HashMap::new(),
            marks: HashMap::new(),
            last_round: None,
            started: None,
            hold_off: HashMap::new(),
            handovers_seen: HashMap::new(),
            beats: crate::stall::Watch::default(),
            ages: crate::stall::Watch::default(),
            blocked: HashSet::new(),
            take_blocked: false,
            published: HashSet::new(),
        }
    }

    /// The metrics this gateway's failover sets, if `--metrics` is on (enabled before the
    /// daemon's first round; looked up at every use).
    fn metrics(&self) -> Option<&'static crate::metrics::Metrics> {
        crate::metrics::global()
    }

    /// One round over every LUN of every target (see the module documentation), unless
    /// the last one was less than [`ROUND_EVERY`] ago (a handover asked for is done at
    /// once). Blocking: on the refresh loop's blocking thread.
    pub fn round(&mut self, targets: &Targets, now: Instant) {
        let handovers = std::mem::take(&mut *lock(&HANDOVERS));
        if handovers.is_empty()
            && self
                .last_round
                .is_some_and(|at| now.duration_since(at) < ROUND_EVERY)
        {
            return;
        }
        self.last_round = Some(now);
        self.started.get_or_insert(now);
        let Some(groups) = targets.alua() else {
            return;
        };
        let names = targets.names();
        // A target removed: its LUNs' tenures end (the stores close with it).
        self.tenures.retain(|(name, _), _| names.contains(name));
        self.marks.retain(|name, _| names.contains(name));
        for handover in &handovers {
            self.hand_over(targets, &groups, handover, now);
        }
        let mut seen = HashSet::new();
        for name in names {
            if let Some(target) = targets.get(&name) {
                self.round_target(&target, &groups, now, &mut seen);
            }
        }
        // A LUN or target that left: its metrics go (also done where the configuration
        // changes, `State::apply`; this catches a round that raced it).
        if let Some(m) = self.metrics() {
            for (name, lun) in self.published.difference(&seen) {
                m.remove_alua(name, u64::from(*lun));
            }
        }
        self.blocked.retain(|key| seen.contains(key));
        self.published = seen;
        let mut active: Vec<Key> = self.tenures.keys().cloned().collect();
        active.sort();
        *lock(&ACTIVE) = active;
    }

    /// A planned switchover to group `to`: steps down on every LUN this gateway is active
    /// for that `handover` selects, recording the handover, and leaves those fences alone
    /// for [`HANDOVER_WAIT`].
    fn hand_over(&mut self, targets: &Targets, groups: &Alua, handover: &Handover, now: Instant) {
        let held: Vec<Key> = self
            .tenures
            .keys()
            .filter(|key| handover.selects(key))
            .cloned()
            .collect();
        for key in held {
            if let Some(target) = targets.get(&key.0) {
                self.step_down(
                    &target,
                    key.1,
                    groups,
                    StepDown::Handover,
                    Some(handover.to),
                );
                self.hold_off.insert(key, now + HANDOVER_WAIT);
            }
        }
        let names: Vec<String> = self.marks.keys().cloned().collect();
        for name in names {
            self.drop_idle_mark(&name);
        }
    }

    fn round_target(
        &mut self,
        target: &Target,
        groups: &Alua,
        now: Instant,
        seen: &mut HashSet<Key>,
    ) {
        let name = &target.name;
        let stores: Vec<(u16, Arc<dyn BlockStore>)> = target
            .luns()
            .into_iter()
            .filter_map(|lun| Some((lun, target.store(u64::from(lun))?.clone())))
            .collect();
        let fenced = take_fenced(name);
        // Target-wide: the first LUN still the one the mark was taken on, and the mark
        // still held.
        let mark_lost = self.marks.get(name).and_then(|mark| {
            let same = stores
                .first()
                .is_some_and(|(lun, s)| *lun == mark.lun && Arc::ptr_eq(s, &mark.store));
            if !same {
                Some(StepDown::TargetChanged)
            } else if !mark.is_intact() {
                Some(StepDown::TargetLockLost)
            } else {
                None
            }
        });
        let held: Vec<u16> = self
            .tenures
            .keys()
            .filter(|(t, _)| t == name)
            .map(|(_, lun)| *lun)
            .collect();
        for lun in held {
            let key = (name.clone(), lun);
            let Some(tenure) = self.tenures.get(&key) else {
                continue;
            };
            let current = stores.iter().find(|(l, _)| *l == lun).map(|(_, s)| s);
            let why = if current.is_none_or(|s| !Arc::ptr_eq(s, &tenure.store)) {
                Some(StepDown::StoreReplaced)
            } else if fenced {
                Some(StepDown::Fenced)
            } else if !tenure.fence.is_intact() {
                Some(StepDown::ConnectionLost)
            } else if crate::stall::fence_taken(&[(lun, tenure.store.clone())]).is_some() {
                Some(StepDown::FenceTaken)
            } else if superseded(
                &tenure.record,
                read_record(name, lun, &*tenure.store).as_ref(),
                &self.owner,
            ) {
                // The fence probe proved nothing (no answer in time), but the record does:
                // a heartbeat now would write over the new active gateway's record.
                Some(StepDown::Superseded)
            } else {
                mark_lost
            };
            if let Some(why) = why {
                self.step_down(target, lun, groups, why, None);
            } else {
                self.beat(&key);
            }
        }
        if mark_lost.is_some() {
            self.marks.remove(name);
        }
        self.drop_idle_mark(name);

        // A record of the former layout on the first LUN speaks for every LUN of the
        // target that has no record of its own.
        let mut target_wide: Option<Record> = None;
        for (i, (lun, store)) in stores.iter().enumerate() {
            let key = (name.clone(), *lun);
            let mut record = match self.tenures.get(&key) {
                Some(t) => Some(t.record.clone()),
                None => read_record(name, *lun, &**store),
            };
            if i == 0 && record.as_ref().is_some_and(|r| r.target_wide) {
                target_wide = record.clone();
            } else if record.is_none() {
                record = target_wide.clone();
            }
            let preferred = preferred_of(groups, name, *lun);
            // The version of the LUN's own record when it names another gateway active:
            // its heartbeat (a record of the former layout has none).
            let others = record
                .as_ref()
                .filter(|r| !r.target_wide && r.active_group().is_some_and(|g| g != groups.own.id))
                .map(|r| r.version);
            let beat_key = format!("{name}/{lun}");
            let mut blocked = None;
            if !self.tenures.contains_key(&key)
                && self.may_take(&key, groups.own.id, preferred, record.as_ref(), now)
            {
                // Another gateway's heartbeat that stood still for the bound.
                let stale = self.beats.stalled_for(&beat_key, others, now);
                self.take_blocked = false;
                if let Some(tenure) = self.take(name, *lun, store, &stores[0], groups.own.id, stale)
                {
                    self.beats.forget(&beat_key);
                    self.tenures.insert(key.clone(), tenure);
                    let reason = takeover_reason(stale.is_some(), record.as_ref(), groups.own.id);
                    if let Some(m) = self.metrics() {
                        m.alua_took(name, u64::from(*lun), reason);
                    }
                }
                if self.take_blocked {
                    blocked = stale.map(|s| s.stood);
                }
            }
            let heartbeat_age = if self.tenures.contains_key(&key) {
                self.ages.forget(&beat_key);
                Duration::ZERO
            } else {
                self.ages.age(&beat_key, others, now)
            };
            self.note_blocked(&key, blocked);
            if let Some(m) = self.metrics() {
                m.alua_lun(
                    name,
                    u64::from(*lun),
                    self.tenures.contains_key(&key),
                    heartbeat_age,
                    blocked.is_some(),
                );
            }
            seen.insert(key.clone());
            let (holding, record) = match self.tenures.get(&key) {
                Some(t) => (true, Some(t.record.clone())),
                None => (false, record),
            };
            let now_states = states(groups, holding, record.as_ref());
            let before = target.scsi.lu_alua(*lun);
            match target.scsi.set_lu_alua(*lun, now_states.clone()) {
                Ok(true) => tracing::info!(target = %name, lun, own = %now_states.own.state,
                    active = ?record.as_ref().and_then(Record::active_group),
                    was = ?before.map(|a| a.own.state.name()),
                    "ALUA states changed"),
                Ok(false) => {}
                Err(err) => tracing::warn!(target = %name, lun, %err, "cannot set the ALUA states"),
            }
        }
        self.drop_idle_mark(name);
    }

    /// Notes whether this standby found LUN `key`'s takeovers blocked this round (`blocked`:
    /// for how long the record had stood still), and says so: at WARN level the first round
    /// (with what the operator does), then at info level like the rounds before it; and
    /// once when they are no longer blocked. Answers whether it warned.
    fn note_blocked(&mut self, key: &Key, blocked: Option<Duration>) -> bool {
        let (name, lun) = (&key.0, key.1);
        let Some(stood) = blocked else {
            if self.blocked.remove(key) {
                tracing::info!(target = %name, lun, "the LUN's takeovers are no longer blocked");
            }
            return false;
        };
        if !self.blocked.insert(key.clone()) {
            tracing::info!(target = %name, lun, "{}", crate::stall::TAKING_THE_STUCK_LOCK_OVER);
            return false;
        }
        tracing::warn!(target = %name, lun, ?stood,
            "failover of this LUN is blocked: the standby that holds its takeover-breaking \
             lock ({}) has stalled in its takeover, so no standby takes over from the stalled \
             active gateway. Failover of this LUN resumes when that gateway resumes or its \
             client connection to the volume ends: restart or kill that gateway (the one \
             logging that it takes the stuck takeover lock over)",
            crate::stall::TAKEOVER_BREAK);
        true
    }

    /// Lets go of a target's [`TARGET_MARK`] lock once this gateway is active for none of
    /// its LUNs.
    fn drop_idle_mark(&mut self, name: &str) {
        if !self.tenures.keys().any(|(t, _)| t == name) {
            self.marks.remove(name);
        }
    }

    /// Whether this gateway tries to take a LUN's fence now: not while it holds off after
    /// a handover of its own, nor while another group is handed the fence (for
    /// [`HANDOVER_WAIT`] from when this gateway first saw that record), nor, for
    /// [`PREFERRED_WAIT`] after its first round, a LUN whose preferred group is another's.
    fn may_take(
        &mut self,
        key: &Key,
        own: u16,
        preferred: u16,
        record: Option<&Record>,
        now: Instant,
    ) -> bool {
        if self.hold_off.get(key).is_some_and(|until| now < *until) {
            return false;
        }
        self.hold_off.remove(key);
        match record.and_then(|r| Some((r.version, r.handover?))) {
            Some((version, to)) if to != own => {
                let seen = self
                    .handovers_seen
                    .entry(key.clone())
                    .or_insert((version, now));
                if seen.0 != version {
                    *seen = (version, now);
                }
                now.duration_since(seen.1) >= HANDOVER_WAIT
            }
            Some(_) => {
                self.handovers_seen.remove(key);
                true
            }
            None => {
                self.handovers_seen.remove(key);
                preferred == own
                    || self
                        .started
                        .is_some_and(|at| now.duration_since(at) >= PREFERRED_WAIT)
            }
        }
    }

    /// Becomes LUN `lun`'s active gateway, if the target's mark (shared), the LUN's
    /// election lock and its fence are free; `None` (and nothing of the LUN held)
    /// otherwise. `lead` is the target's first LUN and its store. With `stale` (the LUN's
    /// record version whose heartbeat stood still, [`crate::stall`]) the stalled
    /// gateway's election lock and fence are taken over (`BlockStore::take_lock_over`),
    /// only while this gateway holds the LUN's takeover lock and the record still has
    /// that version ([`crate::stall::begin_takeover`]).
    fn take(
        &mut self,
        name: &str,
        lun: u16,
        store: &Arc<dyn BlockStore>,
        lead: &(u16, Arc<dyn BlockStore>),
        group: u16,
        stale: Option<crate::stall::Stalled>,
    ) -> Option<Tenure> {
        if !self.marks.contains_key(name) {
            match lead
                .1
                .lock_metadata(TARGET_MARK, &self.owner, LockMode::Shared, LockWait::NoWait)
            {
                Ok(lock) => {
                    self.marks.insert(
                        name.to_string(),
                        Mark {
                            lun: lead.0,
                            store: lead.1.clone(),
                            _lock: lock,
                        },
                    );
                }
                Err(LockError::Contended { .. }) => {
                    // A gateway of the former layout (one active gateway per target) is
                    // active for the whole target.
                    tracing::debug!(target = %name,
                        "the target-wide election is held: staying standby");
                    return None;
                }
                Err(err) => {
                    tracing::warn!(target = %name, %err, "cannot try to become an active gateway");
                    return None;
                }
            }
        }
        let elect =
            || store.lock_metadata(ELECTION, &self.owner, LockMode::Exclusive, LockWait::NoWait);
        // One standby at a time, and only while the record still has the stalled version:
        // held until the record names this gateway (dropped when `take` returns).
        let mut begin = |stalled| {
            crate::stall::begin_takeover(
                name,
                lun,
                &**store,
                &self.owner,
                stalled,
                self.beats.bound(),
                || read_record(name, lun, &**store).map(|r| r.version),
            )
            .map_err(|refusal| {
                self.take_blocked = refusal == crate::stall::Refusal::Blocked;
            })
            .ok()
        };
        let mut _takeover = None;
        let election = match (elect(), stale) {
            (Ok(lock), None) => lock,
            (Ok(lock), Some(stalled)) => {
                // The election lock is free (its holder died or let go); its fence may
                // still be held by a stalled gateway: taken over below, as one takeover.
                _takeover = Some(begin(stalled)?);
                lock
            }
            (Err(LockError::Contended { .. }), Some(stalled)) => {
                _takeover = Some(begin(stalled)?);
                tracing::warn!(target = %name, lun, version = stalled.version,
                    after = ?self.beats.bound(),
                    "no heartbeat from the active gateway: taking its election lock over");
                match store.take_lock_over(ELECTION, &self.owner, crate::stall::TAKE_WAIT) {
                    Ok(lock) => lock,
                    Err(err) => {
                        tracing::warn!(target = %name, lun, %err, "cannot take the election lock over");
                        return None;
                    }
                }
            }
            (Err(LockError::Contended { .. }), None) => return None, // another gateway is active
            (Err(err), _) => {
                tracing::warn!(target = %name, lun, %err, "cannot try to become the active gateway");
                return None;
            }
        };
        let fence = if stale.is_some() {
            // The stalled gateway's fence, taken over with no moment in which nobody holds
            // it: nothing it sends after the clearing lands (docs/fencing.md).
            match store.take_lock_over(store_api::DATA_FENCE, &self.owner, crate::stall::TAKE_WAIT)
            {
                Ok(fence) => {
                    tracing::warn!(target = %name, lun,
                        "took the data fence over from the stalled active gateway");
                    let cleared = crate::stall::clear_write_locks(name, lun, &**store, &self.owner);
                    if let Some(m) = self.metrics() {
                        m.alua_cleared_write_locks(name, u64::from(lun), cleared);
                    }
                    fence
                }
                Err(err) => {
                    tracing::warn!(target = %name, lun, %err, "cannot take the data fence over");
                    return None;
                }
            }
        } else {
            match store.fence_data(&self.owner, LockWait::NoWait) {
                Ok(fence) => fence,
                Err(err) => {
                    // The former active gateway's lock is still there: its connection
                    // lives (a stalled gateway, or one whose store reconnects).
                    tracing::warn!(target = %name, lun, %err,
                        "cannot take the data fence; staying standby");
                    return None;
                }
            }
        };
        let version = read_record(name, lun, &**store).map_or(0, |r| r.version);
        let record = Record {
            version: version + 1,
            active: Some((group, self.owner.as_str().to_string())),
            handover: None,
            target_wide: false,
        };
        if let Err(err) = store.write_metadata(RECORD, record.encode().as_bytes()) {
            tracing::warn!(target = %name, lun, %err,
                "cannot record this gateway as active; staying standby");
            return None;
        }
        tracing::info!(target = %name, lun, group, version = record.version,
            "this gateway holds the data fence: active/optimized");
        Some(Tenure {
            store: store.clone(),
            fence,
            election,
            record,
        })
    }

    /// Stops being LUN `lun`'s active gateway: standby first (no more commands are
    /// admitted to its store), then the record says nobody is active (and to whom it was
    /// handed over, if it was), then the fence and the election lock go.
    fn step_down(
        &mut self,
        target: &Target,
        lun: u16,
        groups: &Alua,
        why: StepDown,
        handover: Option<u16>,
    ) {
        let Some(tenure) = self.tenures.remove(&(target.name.clone(), lun)) else {
            return;
        };
        tracing::warn!(target = %target.name, lun, why = why.why(), ?handover,
            "no longer the active gateway: standby");
        if let Some(m) = self.metrics() {
            m.alua_stepped_down(&target.name, u64::from(lun), why.label());
        }
        // An LU removed has nothing to refuse any more.
        let _ = target.scsi.set_lu_alua(lun, states(groups, false, None));
        let record = Record {
            version: tenure.record.version + 1,
            active: None,
            handover,
            target_wide: false,
        };
        let now = read_record(&target.name, lun, &*tenure.store);
        let mine = |r: &Record| {
            r.active
                .as_ref()
                .is_none_or(|(_, name)| name == self.owner.as_str())
        };
        if now.as_ref().is_some_and(|r| !r.target_wide && !mine(r)) {
            // Another gateway took over (this one was stalled): its record stays.
            tracing::warn!(target = %target.name, lun, active = ?now.and_then(|r| r.active),
                "another gateway is recorded active: the record is left as it is");
        } else if let Err(err) = tenure
            .store
            .write_metadata(RECORD, record.encode().as_bytes())
        {
            tracing::warn!(target = %target.name, lun, %err,
                "cannot record that no gateway is active");
        }
        drop(tenure.fence);
        drop(tenure.election);
    }

    /// The active gateway's heartbeat for one LUN: its record rewritten with the next
    /// version, so standbys see it alive ([`crate::stall`]). A failed write only warns:
    /// the standbys take over after the stall bound of them, and this
    /// gateway then finds its fence taken and steps down.
    fn beat(&mut self, key: &Key) {
        let Some(tenure) = self.tenures.get_mut(key) else {
            return;
        };
        let record = Record {
            version: tenure.record.version + 1,
            ..tenure.record.clone()
        };
        match tenure
            .store
            .write_metadata(RECORD, record.encode().as_bytes())
        {
            Ok(()) => tenure.record = record,
            Err(err) => tracing::warn!(target = %key.0, lun = key.1, %err,
                "cannot renew the active gateway's heartbeat in the record"),
        }
    }

    /// Whether this gateway is the active gateway of any LUN of `target` now.
    pub fn is_active(&self, target: &str) -> bool {
        self.tenures.keys().any(|(t, _)| t == target)
    }

    /// Whether this gateway is the active gateway of LUN `lun` of `target` now.
    pub fn is_active_lun(&self, target: &str, lun: u16) -> bool {
        self.tenures.contains_key(&(target.to_string(), lun))
    }
}

/// How this gateway (target port group `own`) became a LUN's active gateway, for
/// `glfs_iscsi_alua_takeovers_total` ([`crate::metrics::TAKEOVER_REASONS`]): it took a
/// stalled gateway's locks over (`stalled`), the record read before it took the LUN
/// handed it to `own` (`handover`), or nobody held the LUN (`unheld`).
fn takeover_reason(stalled: bool, record: Option<&Record>, own: u16) -> &'static str {
    if stalled {
        "stalled"
    } else if record.and_then(|r| r.handover) == Some(own) {
        "handover"
    } else {
        "unheld"
    }
}

/// Why this gateway stops being a LUN's active gateway: the log line's `why` and the
/// `reason` of `glfs_iscsi_alua_stepdowns_total` ([`crate::metrics::STEPDOWN_REASONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// A planned switchover (`admin alua handover`).
    Handover,
    /// The record names another gateway, newer than this one's heartbeat (it was stalled).
    Superseded,
    /// A read of its own was refused as fenced: another gateway holds the fence.
    FenceTaken,
    /// A request of a host was refused as fenced ([`note_fenced`]).
    Fenced,
    /// The fence was lost with the volume's connection (the store reconnected).
    ConnectionLost,
    /// The LUN's store was replaced or removed.
    StoreReplaced,
    /// The target's first LUN (where the target-wide lock is) changed.
    TargetChanged,
    /// The target-wide lock was lost with the volume's connection.
    TargetLockLost,
}

impl StepDown {
    pub const ALL: [StepDown; 8] = [
        StepDown::Handover,
        StepDown::Superseded,
        StepDown::FenceTaken,
        StepDown::Fenced,
        StepDown::ConnectionLost,
        StepDown::StoreReplaced,
        StepDown::TargetChanged,
        StepDown::TargetLockLost,
    ];

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            StepDown::Handover => "handover",
            StepDown::Superseded => "superseded",
            StepDown::FenceTaken => "fence_taken",
            StepDown::Fenced => "fenced",
            StepDown::ConnectionLost => "connection_lost",
            StepDown::StoreReplaced => "store_replaced",
            StepDown::TargetChanged => "target_changed",
            StepDown::TargetLockLost => "target_lock_lost",
        }
    }

    /// The log line's words.
    pub fn why(self) -> &'static str {
        match self {
            StepDown::Handover => "handed over",
            StepDown::Superseded => "another gateway is recorded active (this one was stalled)",
            StepDown::FenceTaken => "another gateway took the data fence (this one was stalled)",
            StepDown::Fenced => "a request of this gateway to the target was refused as fenced",
            StepDown::ConnectionLost => "the data fence was lost with the volume's connection",
            StepDown::StoreReplaced => "the LUN's store was replaced or removed",
            StepDown::TargetChanged => "the target's first LUN changed",
            StepDown::TargetLockLost => {
                "the target-wide lock was lost with the volume's connection"
            }
        }
    }
}

/// How long a planned switchover leaves a LUN's fence to the group it names: the gateway
/// that handed over does not take it again, and other gateways do not try, for this
/// long; a named gateway that does not take it by then does not keep the others out.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// A switchover asked for (`admin alua handover`): to group `to`, of every LUN this
/// gateway is active for, or of one target's, or of one LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Handover {
    to: u16,
    target: Option<String>,
    lun: Option<u16>,
}

impl Handover {
    fn selects(&self, (target, lun): &Key) -> bool {
        self.target.as_ref().is_none_or(|t| t == target) && self.lun.is_none_or(|l| l == *lun)
    }
}

/// Switchovers asked for, done at the next round.
static HANDOVERS: Mutex<Vec<Handover>> = Mutex::new(Vec::new());

/// The LUNs this gateway was active for at the end of the last round.
static ACTIVE: Mutex<Vec<Key>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asks the refresh loop to hand this gateway's active role over to target port group
/// `to` (a planned switchover): for every LUN it is active for, or those of `target`, or
/// LUN `lun` of `target`, it steps down, records the handover, and leaves the fence to
/// `to` for [`HANDOVER_WAIT`]. Refused unless the mode is on, `to` is another gateway's
/// group and this gateway is active for a LUN selected. Returns the LUNs it hands over.
pub fn request_handover(
    groups: Option<&Alua>,
    to: u16,
    target: Option<&str>,
    lun: Option<u16>,
) -> anyhow::Result<Vec<(String, u16)>> {
    if !enabled() {
        anyhow::bail!("alua handover needs --alua-failover (or alua_failover in the file)");
    }
    let groups = groups.ok_or(scsi::BadAlua::Off)?;
    if groups.own.id == to {
        anyhow::bail!("target port group {to} is this gateway's own");
    }
    if !groups.others.iter().any(|g| g.id == to) {
        return Err(scsi::BadAlua::UnknownGroup(to).into());
    }
    if lun.is_some() && target.is_none() {
        anyhow::bail!("alua handover --lun needs --target (LUN numbers are per target)");
    }
    let handover = Handover {
        to,
        target: target.map(str::to_string),
        lun,
    };
    let selected: Vec<Key> = lock(&ACTIVE)
        .iter()
        .filter(|key| handover.selects(key))
        .cloned()
        .collect();
    if selected.is_empty() {
        match (target, lun) {
            (Some(t), Some(l)) => anyhow::bail!(
                "this gateway is not the active gateway of LUN {l} of target {t}: nothing to hand over"
            ),
            (Some(t), None) => anyhow::bail!(
                "this gateway is not the active gateway of any LUN of target {t}: nothing to hand over"
            ),
            _ => anyhow::bail!(
                "this gateway is not the active gateway of any LUN: nothing to hand over"
            ),
        }
    }
    lock(&HANDOVERS).push(handover);
    Ok(selected)
}

fn read_record(target: &str, lun: u16, store: &dyn BlockStore) -> Option<Record> {
    match store.read_metadata(RECORD) {
        Ok(Some(bytes)) => {
            let record = Record::parse(&bytes);
            if record.is_none() {
                tracing::warn!(target = %target, lun, "the ALUA record on the volume is not in our format");
            }
            record
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(target = %target, lun, %err, "cannot read the ALUA record");
            None
        }
    }
}

/// Whether the record on the volume (`on_volume`) says another gateway took LUN over from
/// this one since it wrote `mine` (its last heartbeat): a newer version naming another
/// gateway, or none. A record this gateway could not read, one of the former layout, or
/// one that still names it supersedes nothing. Read before every heartbeat, so a gateway
/// that resumes after a stall does not write its heartbeat over the new active gateway's
/// record when its fence probe gets no answer in time.
fn superseded(mine: &Record, on_volume: Option<&Record>, owner: &LockOwner) -> bool {
    on_volume.is_some_and(|r| {
        !r.target_wide
            && r.version > mine.version
            && r.active
                .as_ref()
                .is_none_or(|(_, name)| name != owner.as_str())
    })
}

/// Checks that the mode can be used: a gateway id and an ALUA group, and LUNs whose
/// stores have a data fence (glfs).
pub fn check(
    gateway: Option<&LockOwner>,
    alua: Option<&Alua>,
    specs: &[crate::TargetSpec],
) -> anyhow::Result<()> {
    if gateway.is_none() {
        anyhow::bail!("alua failover needs a gateway id (--gateway-id or gateway_id)");
    }
    if alua.is_none() {
        anyhow::bail!("alua failover needs an ALUA group (--alua-group or alua_group)");
    }
    for target in specs {
        for lun in &target.luns {
            if lun.store.bstype != "glfs" {
                anyhow::bail!(
                    "target {} LUN {}: alua failover needs glfs backing stores (the data \
                     fence is a Gluster mandatory lock; {} stores have none)",
                    target.name,
                    lun.lun,
                    lun.store.bstype
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Alua {
        Alua::new(
            PortGroup {
                id: 2,
                state: AccessState::Standby,
            },
            vec![
                PortGroup {
                    id: 1,
                    state: AccessState::ActiveOptimized,
                },
                PortGroup {
                    id: 3,
                    state: AccessState::Unavailable,
                },
            ],
        )
        .unwrap()
    }

    fn ids_and_states(a: &Alua) -> Vec<(u16, AccessState)> {
        a.groups().map(|g| (g.id, g.state)).collect()
    }

    fn record(version: u64, active: Option<(u16, &str)>, handover: Option<u16>) -> Record {
        Record {
            version,
            active: active.map(|(g, n)| (g, n.to_string())),
            handover,
            target_wide: false,
        }
    }

    #[test]
    fn the_record_reads_back_what_it_wrote() {
        let r = record(7, Some((2, "gateway-b")), None);
        assert_eq!(
            r.encode(),
            "glfs-iscsi-alua 2\nversion 7\nactive 2 gateway-b\n"
        );
        assert_eq!(Record::parse(r.encode().as_bytes()), Some(r));
        let none = record(8, None, None);
        assert_eq!(none.encode(), "glfs-iscsi-alua 2\nversion 8\nactive none\n");
        assert_eq!(Record::parse(none.encode().as_bytes()), Some(none));
        let handed = record(9, None, Some(3));
        assert_eq!(
            handed.encode(),
            "glfs-iscsi-alua 2\nversion 9\nactive none\nhandover 3\n"
        );
        assert_eq!(Record::parse(handed.encode().as_bytes()), Some(handed));
    }

    #[test]
    fn a_record_of_the_former_layout_reads_as_target_wide() {
        // What a gateway of the former layout (one active gateway per target) wrote on a
        // target's first LUN.
        let old = Record::parse(b"glfs-iscsi-alua 1\nversion 4\nactive 1 gateway-a\n").unwrap();
        assert!(old.target_wide);
        assert_eq!((old.version, old.active_group()), (4, Some(1)));
        // Written again (by this layout, when this gateway takes the LUN), it is the
        // LUN's own.
        let mine = Record {
            version: old.version + 1,
            ..old
        };
        assert!(mine.encode().starts_with("glfs-iscsi-alua 2\n"));
        assert!(!Record::parse(mine.encode().as_bytes()).unwrap().target_wide);
    }

    #[test]
    fn a_record_not_in_the_format_is_none() {
        for bad in [
            "",
            "glfs-iscsi-alua 3\nversion 1\nactive none\n",
            "glfs-iscsi-alua 2\nversion x\nactive none\n",
            "glfs-iscsi-alua 2\nversion 1\n",
            "glfs-iscsi-alua 2\nversion 1\nactive 0 gw\n",
            "glfs-iscsi-alua 2\nversion 1\nactive 2\n",
            "glfs-iscsi-alua 2\nversion 1\nactive 2 bad name\n",
            "glfs-iscsi-alua 2\nversion 1\nactive none\nhandover 0\n",
            "glfs-iscsi-alua 2\nversion 1\nactive none\nhandover x\n",
            "glfs-iscsi-alua 2\nversion 1\nactive none\nsomething 2\n",
            "glfs-iscsi-alua 1\nversion 1\nactive 2\n",
        ] {
            assert_eq!(Record::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_holder_is_active_and_every_other_group_standby() {
        use AccessState::*;
        let record = |g| record(1, Some((g, "gw")), None);
        // Holding: own active, whatever the record says.
        assert_eq!(
            ids_and_states(&states(&groups(), true, Some(&record(1)))),
            [(2, ActiveOptimized), (1, Standby), (3, Standby)]
        );
        // Not holding: the recorded group is active.
        assert_eq!(
            ids_and_states(&states(&groups(), false, Some(&record(3)))),
            [(2, Standby), (1, Standby), (3, ActiveOptimized)]
        );
        // A record naming this gateway while it does not hold the fence (it lost it):
        // nobody is shown active.
        assert_eq!(
            ids_and_states(&states(&groups(), false, Some(&record(2)))),
            [(2, Standby), (1, Standby), (3, Standby)]
        );
        // No record, or nobody active.
        assert_eq!(
            ids_and_states(&states(&groups(), false, None)),
            [(2, Standby), (1, Standby), (3, Standby)]
        );
    }

    #[test]
    fn luns_prefer_the_groups_in_turn_the_same_on_every_gateway() {
        // Groups 1, 2, 3 (this gateway 2): LUN 0 to 1, LUN 1 to 2, LUN 2 to 3, LUN 3 to 1.
        let g = groups();
        let by_lun: Vec<u16> = (0..5).map(|lun| preferred(&g, lun)).collect();
        assert_eq!(by_lun, [1, 2, 3, 1, 2]);
        // Another gateway's view (its own group first) gives the same answer.
        let other = Alua::new(
            PortGroup {
                id: 3,
                state: AccessState::Standby,
            },
            vec![g.own, g.others[0]],
        )
        .unwrap();
        let by_lun_there: Vec<u16> = (0..5).map(|lun| preferred(&other, lun)).collect();
        assert_eq!(by_lun_there, by_lun);
    }

    #[test]
    fn a_luns_preference_from_the_file_overrides_the_default() {
        let g = groups();
        set_preferences(vec![(("t".to_string(), 1), 3)]);
        assert_eq!(preferred_of(&g, "t", 1), 3);
        // Others keep the default: LUN 0 to group 1, LUN 1 of another target to group 2.
        assert_eq!(preferred_of(&g, "t", 0), 1);
        assert_eq!(preferred_of(&g, "u", 1), 2);
        set_preferences(Vec::new());
        assert_eq!(preferred_of(&g, "t", 1), 2);
    }

    #[test]
    fn the_mode_needs_a_gateway_an_alua_group_and_glfs_luns() {
        let owner = LockOwner::new("gw-a").unwrap();
        let alua = groups();
        let err = check(None, Some(&alua), &[]).unwrap_err().to_string();
        assert!(err.contains("needs a gateway id"), "{err}");
        let err = check(Some(&owner), None, &[]).unwrap_err().to_string();
        assert!(err.contains("needs an ALUA group"), "{err}");
        assert!(check(Some(&owner), Some(&alua), &[]).is_ok());
    }

    fn key(lun: u16) -> Key {
        ("t".to_string(), lun)
    }

    #[test]
    fn a_newer_record_naming_another_gateway_or_none_supersedes_the_heartbeat() {
        let me = LockOwner::new("gw-a").unwrap();
        let mine = record(7, Some((1, "gw-a")), None);
        // Nothing read, the same record, or an older one: this gateway beats on.
        assert!(!superseded(&mine, None, &me));
        assert!(!superseded(&mine, Some(&mine), &me));
        assert!(!superseded(
            &mine,
            Some(&record(6, Some((2, "gw-b")), None)),
            &me
        ));
        // A standby took over while this one was stalled, or the LUN was let go of.
        assert!(superseded(
            &mine,
            Some(&record(8, Some((2, "gw-b")), None)),
            &me
        ));
        assert!(superseded(&mine, Some(&record(9, None, Some(2))), &me));
        // Newer but naming this gateway (written by itself), or of the former layout.
        assert!(!superseded(
            &mine,
            Some(&record(8, Some((1, "gw-a")), None)),
            &me
        ));
        let mut old = record(9, Some((2, "gw-b")), None);
        old.target_wide = true;
        assert!(!superseded(&mine, Some(&old), &me));
    }

    #[test]
    fn others_leave_a_handed_over_fence_to_the_group_named_for_a_while() {
        let mut f = Failover::new(LockOwner::new("gw-c").unwrap());
        let t0 = Instant::now();
        f.started = Some(t0 - PREFERRED_WAIT);
        let handed = |version| record(version, None, Some(2));
        // Group 3 is not the one named: it waits HANDOVER_WAIT from when it first saw it
        // (even for a LUN it prefers).
        assert!(!f.may_take(&key(0), 3, 3, Some(&handed(5)), t0));
        assert!(!f.may_take(&key(0), 3, 3, Some(&handed(5)), t0 + HANDOVER_WAIT / 2));
        assert!(f.may_take(&key(0), 3, 3, Some(&handed(5)), t0 + HANDOVER_WAIT));
        // A newer handover record starts the wait again.
        assert!(!f.may_take(&key(0), 3, 3, Some(&handed(6)), t0 + HANDOVER_WAIT));
        // Each LUN has its own: LUN 1's handover seen now waits from now.
        assert!(!f.may_take(&key(1), 3, 3, Some(&handed(6)), t0 + HANDOVER_WAIT));
        // The group named (preferred or not), a record without a handover, or none: at once.
        assert!(f.may_take(&key(0), 2, 1, Some(&handed(6)), t0));
        assert!(f.may_take(&key(0), 3, 3, None, t0));
        // The gateway that handed a LUN over holds off on that LUN until its time is up,
        // not on the others.
        f.hold_off.insert(key(2), t0 + HANDOVER_WAIT);
        assert!(!f.may_take(&key(2), 2, 2, None, t0));
        assert!(f.may_take(&key(3), 2, 2, None, t0));
        assert!(f.may_take(&key(2), 2, 2, None, t0 + HANDOVER_WAIT));
    }

    #[test]
    fn a_gateway_just_started_takes_only_the_luns_it_prefers() {
        let mut f = Failover::new(LockOwner::new("gw-b").unwrap());
        let t0 = Instant::now();
        f.started = Some(t0);
        // Group 2, LUN preferring group 1: not within PREFERRED_WAIT of the start, whether
        // the LUN has no record, a record naming nobody or one naming a gateway (dead or
        // alive: the election lock tells, later).
        for record in [
            None,
            Some(record(3, None, None)),
            Some(record(4, Some((1, "gw-a")), None)),
        ] {
            assert!(!f.may_take(&key(0), 2, 1, record.as_ref(), t0));
            assert!(!f.may_take(&key(0), 2, 1, record.as_ref(), t0 + PREFERRED_WAIT / 2));
            assert!(f.may_take(&key(0), 2, 1, record.as_ref(), t0 + PREFERRED_WAIT));
            // The LUN it prefers: at once.
            assert!(f.may_take(&key(1), 2, 2, record.as_ref(), t0));
        }
        // Handed over to it: at once, preferred or not.
        assert!(f.may_take(&key(0), 2, 1, Some(&record(5, None, Some(2))), t0));
    }

    #[test]
    fn takeovers_and_step_downs_have_the_metrics_reasons() {
        assert_eq!(
            StepDown::ALL.map(StepDown::label),
            crate::metrics::STEPDOWN_REASONS
        );
        // Handed to this gateway (group 2), to another, none; stalled whatever the record.
        let to = |g| record(5, None, Some(g));
        assert_eq!(takeover_reason(false, Some(&to(2)), 2), "handover");
        assert_eq!(takeover_reason(false, Some(&to(3)), 2), "unheld");
        assert_eq!(takeover_reason(false, None, 2), "unheld");
        let stalled = record(5, Some((1, "gw-a")), None);
        assert_eq!(takeover_reason(true, Some(&stalled), 2), "stalled");
        for reason in ["handover", "unheld", "stalled"] {
            assert!(crate::metrics::TAKEOVER_REASONS.contains(&reason));
        }
    }

    /// Stop 26's open case: A, active, stalled at record version 7 (holding its election
    /// lock); standby B stalled holding the LUN's takeover lock; standby C stalled holding
    /// the breaking lock it took to take B's over. Standby D finds the LUN's takeovers
    /// busy until the record stood still for `stall::blocked_after`, blocked from then on
    /// (taking nothing and clearing nothing), warns the first round it finds them blocked
    /// only, and shows it in `glfs_iscsi_alua_takeover_blocked`.
    #[test]
    fn a_standby_stalled_with_the_breaking_lock_blocks_the_takeover_and_is_warned_of_once() {
        use crate::stall::{blocked_after, Stalled, TAKEOVER, TAKEOVER_BREAK};
        // Locks as the bricks keep them, clear-locks modelled (`take_lock_over` takes a
        // lock from any holder, counted).
        let bricks = Arc::new(crate::stall::tests::Bricks::default());
        let store: Arc<dyn BlockStore> = bricks.clone();
        let lead = (0, store.clone());
        let owner = |n| LockOwner::new(n).unwrap();
        let exclusive = |name, by| {
            store
                .lock_metadata(name, &owner(by), LockMode::Exclusive, LockWait::NoWait)
                .unwrap()
        };
        let _a = exclusive(ELECTION, "gw-a");
        let _b = exclusive(TAKEOVER, "gw-b");
        let _c = exclusive(TAKEOVER_BREAK, "gw-c");
        let mut f = Failover::new(owner("gw-d"));
        let bound = f.beats.bound();
        let at = |stood| Some(Stalled { version: 7, stood });
        // C took the breaking lock at twice the bound: it may still be taking over.
        assert!(f.take("t", 0, &store, &lead, 4, at(2 * bound)).is_none());
        assert!(!f.take_blocked);
        assert!(f
            .take("t", 0, &store, &lead, 4, at(blocked_after(bound)))
            .is_none());
        assert!(f.take_blocked);
        // D cleared nothing and holds nothing of the LUN's (the target's mark only).
        let cleared = || bricks.cleared.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(cleared(), 0);
        let mut held: Vec<String> = bricks.held.lock().unwrap().keys().cloned().collect();
        held.sort();
        let mut want = [TARGET_MARK, ELECTION, TAKEOVER, TAKEOVER_BREAK];
        want.sort();
        assert_eq!(held, want);
        f.drop_idle_mark("t");
        assert!(!bricks.held.lock().unwrap().contains_key(TARGET_MARK));
        // Said at WARN level the first round, not the next ones; again after it cleared.
        let key = key(0);
        let stood = blocked_after(bound);
        assert!(f.note_blocked(&key, Some(stood)));
        assert!(!f.note_blocked(&key, Some(stood + ROUND_EVERY)));
        assert!(!f.note_blocked(&key, Some(stood + 2 * ROUND_EVERY)));
        assert!(!f.note_blocked(&key, None));
        assert!(f.blocked.is_empty());
        assert!(!f.note_blocked(&key, None));
        assert!(f.note_blocked(&key, Some(stood)));
    }

    /// A, active, stalled at record version 7 holding its election lock and the fence.
    /// Standby B takes both over, and before it writes the record naming itself it
    /// clears the volume's locks A held for its writes (on a replicated Gluster volume
    /// AFR's, which a stopped writer keeps: B's record write and the LUN's writes would
    /// wait for A to resume), on the image and on every object the gateways write.
    #[test]
    fn a_takeover_clears_the_stalled_gateways_write_locks_after_its_fence_before_the_record() {
        use crate::stall::{Stalled, WRITTEN_OBJECTS};
        let bricks = Arc::new(crate::stall::tests::Bricks::default());
        let store: Arc<dyn BlockStore> = bricks.clone();
        let lead = (0, store.clone());
        let owner = |n| LockOwner::new(n).unwrap();
        let a = owner("gw-a");
        let _election = store
            .lock_metadata(ELECTION, &a, LockMode::Exclusive, LockWait::NoWait)
            .unwrap();
        let _fence = store.take_lock_over(store_api::DATA_FENCE, &a, Duration::ZERO);
        let stalled = record(7, Some((1, "gw-a")), None);
        store
            .write_metadata(RECORD, stalled.encode().as_bytes())
            .unwrap();
        bricks.ops.lock().unwrap().clear();

        let mut f = Failover::new(owner("gw-b"));
        let bound = f.beats.bound();
        let stale = Some(Stalled {
            version: 7,
            stood: bound,
        });
        let tenure = f
            .take("t", 0, &store, &lead, 2, stale)
            .expect("B takes over");
        assert_eq!(tenure.record, record(8, Some((2, "gw-b")), None));
        let ops = bricks.ops.lock().unwrap().clone();
        let at = |op: &str| {
            ops.iter()
                .position(|o| o == op)
                .unwrap_or_else(|| panic!("no {op:?} in {ops:?}"))
        };
        let clear = format!("clear write locks {}", WRITTEN_OBJECTS.join(","));
        assert!(at("take over data-fence") < at(&clear), "{ops:?}");
        assert!(at(&clear) < at("write alua"), "{ops:?}");
        assert_eq!(ops.iter().filter(|o| o.starts_with("clear")).count(), 1);
        // Every object a gateway writes beside a LUN is named.
        for name in [
            RECORD,
            scsi::RESERVATIONS_METADATA,
            scsi::RESERVATIONS_LU_METADATA,
            crate::gateways::ACKS_METADATA,
        ] {
            assert!(WRITTEN_OBJECTS.contains(&name), "{name}");
        }
    }

    #[test]
    fn a_handover_selects_every_lun_a_target_or_one_lun() {
        let all = Handover {
            to: 2,
            target: None,
            lun: None,
        };
        let target = Handover {
            target: Some("t".into()),
            ..all.clone()
        };
        let one = Handover {
            lun: Some(1),
            ..target.clone()
        };
        let other = ("u".to_string(), 1);
        assert!(all.selects(&key(0)) && all.selects(&other));
        assert!(target.selects(&key(0)) && target.selects(&key(1)) && !target.selects(&other));
        assert!(one.selects(&key(1)) && !one.selects(&key(0)) && !one.selects(&other));
    }

    #[test]
    fn the_target_mark_and_the_election_are_different_lock_bytes() {
        // Both live on the same LUN file (the first LUN): a gateway holding the mark
        // shared must not meet its own or another's election lock there.
        // Nor the reservations' locks.
        let names = [
            TARGET_MARK,
            ELECTION,
            scsi::RESERVATIONS_METADATA,
            crate::gateways::ACKS_METADATA,
            crate::stall::TAKEOVER,
            crate::stall::TAKEOVER_BREAK,
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(
                    store_api::metadata_lock_range(a),
                    store_api::metadata_lock_range(b),
                    "{a} and {b}"
                );
            }
        }
    }

    #[test]
    fn a_target_held_by_a_gateway_of_the_former_layout_is_left_alone() {
        use store_api::Geometry;
        let store: Arc<dyn BlockStore> = Arc::new(backstore::MemoryStore::new(Geometry {
            block_size: 512,
            num_blocks: 8,
        }));
        let lead = (0, store.clone());
        let (old, other) = (
            LockOwner::new("gw-old").unwrap(),
            LockOwner::new("gw-other").unwrap(),
        );
        // A gateway of the former layout is active: it holds `alua-active` exclusive.
        let held = store
            .lock_metadata(TARGET_MARK, &old, LockMode::Exclusive, LockWait::NoWait)
            .unwrap();
        let mut f = Failover::new(LockOwner::new("gw-new").unwrap());
        assert!(f.take("t", 0, &store, &lead, 2, None).is_none());
        assert!(f.marks.is_empty());
        // It asked for nothing else: the LUN's election lock is free.
        assert!(store
            .lock_metadata(ELECTION, &other, LockMode::Exclusive, LockWait::NoWait)
            .is_ok());
        drop(held);
        // Gone: this gateway holds the mark shared and goes on to the election (a memory
        // store has no data fence, so it stays standby here).
        assert!(f.take("t", 0, &store, &lead, 2, None).is_none());
        assert!(f.marks.contains_key("t"));
        // Other gateways of this layout hold it too; one of the former layout cannot.
        let _shared = store
            .lock_metadata(TARGET_MARK, &other, LockMode::Shared, LockWait::NoWait)
            .unwrap();
        assert!(matches!(
            store.lock_metadata(TARGET_MARK, &old, LockMode::Exclusive, LockWait::NoWait),
            Err(LockError::Contended { .. })
        ));
        // Active for no LUN of the target: the mark goes.
        f.drop_idle_mark("t");
        assert!(f.marks.is_empty());
    }
}
