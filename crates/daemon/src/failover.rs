//! Active/passive ALUA whose active gateway holds the data fence (`--alua-failover`,
//! `alua_failover = true`; ARCHITECTURE.md, "Several gateways on one LU").
//!
//! Each gateway of a target tries, on the daemon's refresh timer ([`crate::gateways::refresh`],
//! a blocking thread, never a connection's), to become the target's active gateway:
//!
//! 1. it takes the advisory metadata lock [`ELECTION`] of the target's first LUN,
//!    exclusive, without waiting: whoever holds it is (or is becoming) the active gateway,
//!    and keeps it for as long as it is. Only that holder ever asks for the data fence, so
//!    a standby never makes a refused mandatory-lock request, which on Gluster 10.3 would
//!    make the holder's own writes fail (docs/fencing.md);
//! 2. it takes the data fence of every LUN of the target in LUN order
//!    (`BlockStore::fence_data`: a Gluster mandatory write lock, without waiting);
//! 3. it writes the [`Record`] `<lun>.alua` of the first LUN (a new version naming its
//!    target port group; by rename, as `<lun>.pr`), and only then reports itself
//!    active/optimized.
//!
//! Every other gateway is standby and reads the record every round, so every gateway's
//! REPORT TARGET PORT GROUPS shows the same states: the recorded group active/optimized,
//! every other standby. A changed state raises ASYMMETRIC ACCESS STATE CHANGED on every
//! nexus (`scsi::ScsiTarget::set_alua`).
//!
//! The active gateway steps down (standby, record `active none`, fences and election lock
//! let go) when it cannot be sure its fence holds: a LUN's store was replaced, a fence is
//! no longer intact (`MetadataLock::is_intact`: the store reconnected, so the lock stayed
//! on the old mount), or one of its own requests was refused as fenced
//! ([`note_fenced`]), or another gateway took its fence (a read of its own refused as
//! fenced: it was stalled, [`crate::stall`]). A dead gateway's Gluster connection closes
//! and its locks go; the next round of a standby takes them. A stalled one keeps them
//! until a standby that saw no heartbeat (the record's version, rewritten every round
//! by the active gateway) for [`crate::stall::STALL_AFTER`] takes them away
//! ([`crate::stall`]).

use crate::targets::{Target, Targets};
use scsi::{AccessState, Alua, PortGroup};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use store_api::{BlockStore, LockError, LockMode, LockOwner, LockWait, MetadataLock};

/// The metadata object naming the active gateway (`<first lun>.alua`).
pub const RECORD: &str = "alua";

/// The advisory metadata lock the active gateway holds for as long as it is active.
pub const ELECTION: &str = "alua-active";

/// The least time between two rounds (the refresh loop may come sooner, while
/// reservation acknowledgements are owed).
const ROUND_EVERY: Duration = Duration::from_millis(500);

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

/// What `<lun>.alua` keeps: a version, bumped by every write, and the active gateway's
/// target port group and name (none while nobody is active).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub version: u64,
    pub active: Option<(u16, String)>,
    /// A planned switchover: the group the former active gateway handed over to; other
    /// gateways leave the fence to it for [`HANDOVER_WAIT`].
    pub handover: Option<u16>,
}

impl Record {
    const MAGIC: &'static str = "glfs-iscsi-alua 1";

    /// The saved form: `glfs-iscsi-alua 1`, `version N`, `active GROUP NAME` or
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

    /// Reads the saved form; `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != Record::MAGIC {
            return None;
        }
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
        })
    }

    /// The active gateway's target port group.
    pub fn active_group(&self) -> Option<u16> {
        self.active.as_ref().map(|(g, _)| *g)
    }
}

/// The groups a gateway reports: its own active/optimized when it holds the fence, else
/// standby; another group active/optimized when the record names it (and this gateway
/// does not hold the fence), else standby. `groups` gives the ids (its states are not
/// used).
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

/// This gateway's tenure as a target's active gateway.
struct Tenure {
    /// The stores the fences were taken on, by LUN, ascending.
    stores: Vec<(u16, Arc<dyn BlockStore>)>,
    /// Dropped before `election` (declared first).
    fences: Vec<MetadataLock>,
    election: MetadataLock,
    record: Record,
}

/// The failover state of this gateway: the targets it is active for.
pub struct Failover {
    owner: LockOwner,
    tenures: HashMap<String, Tenure>,
    last_round: Option<Instant>,
    /// After handing over: this gateway does not take the fence again before then.
    hold_off: Option<Instant>,
    /// Per target, a handover record seen (its version) and when it was first seen.
    handovers_seen: HashMap<String, (u64, Instant)>,
    /// The active gateways' heartbeats, as this gateway saw them.
    beats: crate::stall::Watch,
}

impl Failover {
    pub fn new(owner: LockOwner) -> Failover {
        Failover {
            owner,
            tenures: HashMap::new(),
            last_round: None,
            hold_off: None,
            handovers_seen: HashMap::new(),
            beats: crate::stall::Watch::default(),
        }
    }

    /// One round over every target (see the module documentation), unless the last one
    /// was less than [`ROUND_EVERY`] ago (a handover asked for is done at once).
    /// Blocking: on the refresh loop's blocking thread.
    pub fn round(&mut self, targets: &Targets, now: Instant) {
        let handover = lock(&HANDOVER).take();
        if handover.is_none()
            && self
                .last_round
                .is_some_and(|at| now.duration_since(at) < ROUND_EVERY)
        {
            return;
        }
        self.last_round = Some(now);
        let Some(groups) = targets.alua() else {
            return;
        };
        let names = targets.names();
        self.tenures.retain(|name, _| names.contains(name));
        if let Some(to) = handover {
            self.hand_over(targets, &groups, to, now);
        }
        for name in names {
            if let Some(target) = targets.get(&name) {
                self.round_target(&target, &groups, now);
            }
        }
        ACTIVE.store(self.tenures.len(), Ordering::Relaxed);
    }

    /// A planned switchover to group `to`: steps down on every target this gateway is
    /// active for, recording the handover, and leaves the fence alone for
    /// [`HANDOVER_WAIT`].
    fn hand_over(&mut self, targets: &Targets, groups: &Alua, to: u16, now: Instant) {
        let held: Vec<String> = self.tenures.keys().cloned().collect();
        for name in held {
            if let Some(target) = targets.get(&name) {
                self.step_down(&target, groups, "handed over", Some(to));
            }
        }
        self.hold_off = Some(now + HANDOVER_WAIT);
    }

    fn round_target(&mut self, target: &Target, groups: &Alua, now: Instant) {
        let name = &target.name;
        let stores: Vec<(u16, Arc<dyn BlockStore>)> = target
            .luns()
            .into_iter()
            .filter_map(|lun| Some((lun, target.store(u64::from(lun))?.clone())))
            .collect();
        let fenced = take_fenced(name);
        if let Some(tenure) = self.tenures.get(name) {
            let why = if !same_stores(&tenure.stores, &stores) {
                Some("a LUN's store was replaced")
            } else if fenced {
                Some("a request of this gateway was refused as fenced")
            } else if !tenure.fences.iter().all(MetadataLock::is_intact) {
                Some("the data fence was lost with the volume's connection")
            } else if crate::stall::fence_taken(&tenure.stores).is_some() {
                Some("another gateway took the data fence (this one was stalled)")
            } else {
                None
            };
            if let Some(why) = why {
                self.step_down(target, groups, why, None);
            } else {
                self.beat(target);
            }
        }
        let record = match self.tenures.get(name) {
            Some(t) => Some(t.record.clone()),
            None => stores.first().and_then(|(_, s)| read_record(name, &**s)),
        };
        if !self.tenures.contains_key(name)
            && !stores.is_empty()
            && self.may_take(name, groups.own.id, record.as_ref(), now)
        {
            // Another gateway named active whose heartbeat stood still for the bound.
            let others = record
                .as_ref()
                .filter(|r| r.active_group().is_some_and(|g| g != groups.own.id));
            let stale = self.beats.stalled(name, others.map(|r| r.version), now);
            if let Some(tenure) = self.take(target, groups.own.id, &stores, stale) {
                self.beats.forget(name);
                self.tenures.insert(name.clone(), tenure);
            }
        }
        let (holding, record) = match self.tenures.get(name) {
            Some(t) => (true, Some(t.record.clone())),
            None => (false, record),
        };
        let now_states = states(groups, holding, record.as_ref());
        let before = target.scsi.alua();
        if target.scsi.set_alua(now_states.clone()) {
            tracing::info!(target = %name, own = %now_states.own.state,
                active = ?record.as_ref().and_then(Record::active_group),
                was = ?before.map(|a| a.own.state.name()),
                "ALUA states changed");
        }
    }

    /// Whether this gateway tries to take the fence now: not while it holds off after a
    /// handover of its own, nor while another group is handed the fence (for
    /// [`HANDOVER_WAIT`] from when this gateway first saw that record).
    fn may_take(&mut self, target: &str, own: u16, record: Option<&Record>, now: Instant) -> bool {
        if self.hold_off.is_some_and(|until| now < until) {
            return false;
        }
        match record.and_then(|r| Some((r.version, r.handover?))) {
            Some((version, to)) if to != own => {
                let seen = self
                    .handovers_seen
                    .entry(target.to_string())
                    .or_insert((version, now));
                if seen.0 != version {
                    *seen = (version, now);
                }
                now.duration_since(seen.1) >= HANDOVER_WAIT
            }
            _ => {
                self.handovers_seen.remove(target);
                true
            }
        }
    }

    /// Becomes the target's active gateway, if the election lock and every LUN's fence
    /// are free; `None` (and nothing held) otherwise. With `stale` (the record version
    /// whose heartbeat stood still, [`crate::stall`]) the stalled gateway's election lock
    /// and fences are taken away first, the fences only while the record still has that
    /// version once this gateway holds the election lock.
    fn take(
        &self,
        target: &Target,
        group: u16,
        stores: &[(u16, Arc<dyn BlockStore>)],
        stale: Option<u64>,
    ) -> Option<Tenure> {
        let name = &target.name;
        let (_, lead) = stores.first()?;
        let elect =
            || lead.lock_metadata(ELECTION, &self.owner, LockMode::Exclusive, LockWait::NoWait);
        let election = match (elect(), stale) {
            (Ok(lock), _) => lock,
            (Err(LockError::Contended { .. }), Some(version)) => {
                tracing::warn!(target = %name, version, after = ?crate::stall::STALL_AFTER,
                    "no heartbeat from the active gateway: taking its election lock away");
                match lead.clear_lock(ELECTION).map(|_| elect()) {
                    Ok(Ok(lock)) => lock,
                    Ok(Err(err)) => {
                        tracing::warn!(target = %name, %err, "cannot take the election lock");
                        return None;
                    }
                    Err(err) => {
                        tracing::warn!(target = %name, %err, "cannot clear the election lock");
                        return None;
                    }
                }
            }
            (Err(LockError::Contended { .. }), None) => return None, // another gateway is active
            (Err(err), _) => {
                tracing::warn!(target = %name, %err, "cannot try to become the active gateway");
                return None;
            }
        };
        if let Some(version) = stale {
            if read_record(name, &**lead).map(|r| r.version) != Some(version) {
                // The stalled gateway resumed (or another took over) meanwhile.
                return None;
            }
            if !crate::stall::clear_fences(name, stores) {
                return None;
            }
        }
        let mut fences = Vec::new();
        for (lun, store) in stores {
            match store.fence_data(&self.owner, LockWait::NoWait) {
                Ok(fence) => fences.push(fence),
                Err(err) => {
                    // The former active gateway's lock is still there: its connection
                    // lives (a stalled gateway, or one whose store reconnects).
                    tracing::warn!(target = %name, lun, %err,
                        "cannot take the data fence; staying standby");
                    return None;
                }
            }
        }
        let version = read_record(name, &**lead).map_or(0, |r| r.version);
        let record = Record {
            version: version + 1,
            active: Some((group, self.owner.as_str().to_string())),
            handover: None,
        };
        if let Err(err) = lead.write_metadata(RECORD, record.encode().as_bytes()) {
            tracing::warn!(target = %name, %err,
                "cannot record this gateway as active; staying standby");
            return None;
        }
        tracing::info!(target = %name, group, version = record.version,
            "this gateway holds the data fence: active/optimized");
        Some(Tenure {
            stores: stores.to_vec(),
            fences,
            election,
            record,
        })
    }

    /// Stops being the target's active gateway: standby first (no more commands are
    /// admitted to the stores), then the record says nobody is active (and to whom it
    /// was handed over, if it was), then the fences and the election lock go.
    fn step_down(&mut self, target: &Target, groups: &Alua, why: &str, handover: Option<u16>) {
        let Some(tenure) = self.tenures.remove(&target.name) else {
            return;
        };
        tracing::warn!(target = %target.name, why, ?handover,
            "no longer the active gateway: standby");
        target.scsi.set_alua(states(groups, false, None));
        let record = Record {
            version: tenure.record.version + 1,
            active: None,
            handover,
        };
        if let Some((_, lead)) = tenure.stores.first() {
            let now = read_record(&target.name, &**lead);
            let mine = |r: &Record| {
                r.active
                    .as_ref()
                    .is_none_or(|(_, name)| name == self.owner.as_str())
            };
            if now.as_ref().is_some_and(|r| !mine(r)) {
                // Another gateway took over (this one was stalled): its record stays.
                tracing::warn!(target = %target.name, active = ?now.and_then(|r| r.active),
                    "another gateway is recorded active: the record is left as it is");
            } else if let Err(err) = lead.write_metadata(RECORD, record.encode().as_bytes()) {
                tracing::warn!(target = %target.name, %err,
                    "cannot record that no gateway is active");
            }
        }
        drop(tenure.fences);
        drop(tenure.election);
    }

    /// The active gateway's heartbeat: the record rewritten with the next version, so
    /// standbys see it alive ([`crate::stall`]). A failed write only warns: the standbys
    /// take over after [`crate::stall::STALL_AFTER`] of them, and this gateway then finds
    /// its fence taken and steps down.
    fn beat(&mut self, target: &Target) {
        let Some(tenure) = self.tenures.get_mut(&target.name) else {
            return;
        };
        let Some((_, lead)) = tenure.stores.first() else {
            return;
        };
        let record = Record {
            version: tenure.record.version + 1,
            ..tenure.record.clone()
        };
        match lead.write_metadata(RECORD, record.encode().as_bytes()) {
            Ok(()) => tenure.record = record,
            Err(err) => tracing::warn!(target = %target.name, %err,
                "cannot renew the active gateway's heartbeat in the record"),
        }
    }

    /// Whether this gateway is the active gateway of `target` now.
    pub fn is_active(&self, target: &str) -> bool {
        self.tenures.contains_key(target)
    }
}

/// How long a planned switchover leaves the fence to the group it names: the gateway
/// that handed over does not take it again, and other gateways do not try, for this
/// long; a named gateway that does not take it by then does not keep the others out.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// A switchover asked for (`admin alua handover`), done at the next round.
static HANDOVER: Mutex<Option<u16>> = Mutex::new(None);

/// How many targets this gateway was active for at the end of the last round.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asks the refresh loop to hand this gateway's active role over to target port group
/// `to` (a planned switchover): it steps down on every target it is active for, records
/// the handover, and leaves the fence to `to` for [`HANDOVER_WAIT`]. Refused unless the
/// mode is on, `to` is another gateway's group and this gateway is active.
pub fn request_handover(groups: Option<&Alua>, to: u16) -> anyhow::Result<()> {
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
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        anyhow::bail!("this gateway is not the active gateway of any target: nothing to hand over");
    }
    *lock(&HANDOVER) = Some(to);
    Ok(())
}

fn same_stores(a: &[(u16, Arc<dyn BlockStore>)], b: &[(u16, Arc<dyn BlockStore>)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((la, sa), (lb, sb))| la == lb && Arc::ptr_eq(sa, sb))
}

fn read_record(target: &str, store: &dyn BlockStore) -> Option<Record> {
    match store.read_metadata(RECORD) {
        Ok(Some(bytes)) => {
            let record = Record::parse(&bytes);
            if record.is_none() {
                tracing::warn!(target = %target, "the ALUA record on the volume is not in our format");
            }
            record
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(target = %target, %err, "cannot read the ALUA record");
            None
        }
    }
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

    #[test]
    fn the_record_reads_back_what_it_wrote() {
        let r = Record {
            version: 7,
            active: Some((2, "gateway-b".into())),
            handover: None,
        };
        assert_eq!(
            r.encode(),
            "glfs-iscsi-alua 1\nversion 7\nactive 2 gateway-b\n"
        );
        assert_eq!(Record::parse(r.encode().as_bytes()), Some(r));
        let none = Record {
            version: 8,
            active: None,
            handover: None,
        };
        assert_eq!(none.encode(), "glfs-iscsi-alua 1\nversion 8\nactive none\n");
        assert_eq!(Record::parse(none.encode().as_bytes()), Some(none));
        let handed = Record {
            version: 9,
            active: None,
            handover: Some(3),
        };
        assert_eq!(
            handed.encode(),
            "glfs-iscsi-alua 1\nversion 9\nactive none\nhandover 3\n"
        );
        assert_eq!(Record::parse(handed.encode().as_bytes()), Some(handed));
    }

    #[test]
    fn a_record_not_in_the_format_is_none() {
        for bad in [
            "",
            "glfs-iscsi-alua 2\nversion 1\nactive none\n",
            "glfs-iscsi-alua 1\nversion x\nactive none\n",
            "glfs-iscsi-alua 1\nversion 1\n",
            "glfs-iscsi-alua 1\nversion 1\nactive 0 gw\n",
            "glfs-iscsi-alua 1\nversion 1\nactive 2\n",
            "glfs-iscsi-alua 1\nversion 1\nactive 2 bad name\n",
            "glfs-iscsi-alua 1\nversion 1\nactive none\nhandover 0\n",
            "glfs-iscsi-alua 1\nversion 1\nactive none\nhandover x\n",
            "glfs-iscsi-alua 1\nversion 1\nactive none\nsomething 2\n",
        ] {
            assert_eq!(Record::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_holder_is_active_and_every_other_group_standby() {
        use AccessState::*;
        let record = |g| Record {
            version: 1,
            active: Some((g, "gw".into())),
            handover: None,
        };
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
    fn the_mode_needs_a_gateway_an_alua_group_and_glfs_luns() {
        let owner = LockOwner::new("gw-a").unwrap();
        let alua = groups();
        let err = check(None, Some(&alua), &[]).unwrap_err().to_string();
        assert!(err.contains("needs a gateway id"), "{err}");
        let err = check(Some(&owner), None, &[]).unwrap_err().to_string();
        assert!(err.contains("needs an ALUA group"), "{err}");
        assert!(check(Some(&owner), Some(&alua), &[]).is_ok());
    }

    #[test]
    fn others_leave_a_handed_over_fence_to_the_group_named_for_a_while() {
        let mut f = Failover::new(LockOwner::new("gw-c").unwrap());
        let handed = |version| Record {
            version,
            active: None,
            handover: Some(2),
        };
        let t0 = Instant::now();
        // Group 3 is not the one named: it waits HANDOVER_WAIT from when it first saw it.
        assert!(!f.may_take("t", 3, Some(&handed(5)), t0));
        assert!(!f.may_take("t", 3, Some(&handed(5)), t0 + HANDOVER_WAIT / 2));
        assert!(f.may_take("t", 3, Some(&handed(5)), t0 + HANDOVER_WAIT));
        // A newer handover record starts the wait again.
        assert!(!f.may_take("t", 3, Some(&handed(6)), t0 + HANDOVER_WAIT));
        // The group named, a record without a handover, or none: at once.
        assert!(f.may_take("t", 2, Some(&handed(6)), t0));
        assert!(f.may_take("t", 3, None, t0));
        // The gateway that handed over holds off until its time is up.
        f.hold_off = Some(t0 + HANDOVER_WAIT);
        assert!(!f.may_take("u", 2, None, t0));
        assert!(f.may_take("u", 2, None, t0 + HANDOVER_WAIT));
    }
}
