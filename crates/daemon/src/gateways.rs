//! Several gateways exporting one LUN: persistent reservations kept on the volume.
//!
//! With `--gateway-id NAME` every LUN's persistent reservations are the ones kept on its
//! storage (`<lun file>.pr`, see `store_api::BlockStore::write_metadata`) for every
//! gateway that exports the same file:
//!
//! * a PERSISTENT RESERVE IN/OUT ([`scsi::Start::SharedReservations`]) runs on a
//!   blocking thread: the store's `pr` metadata lock is taken exclusive under this
//!   gateway's owner (waiting at most [`LOCK_WAIT`]), the state is read, the core runs
//!   the command on it, a change is written back, and only then is the lock let go and
//!   the command answered ([`run_shared`]);
//! * every [`REFRESH`] each shared LUN's state is read again under the shared lock and
//!   loaded into the core ([`refresh`]; the core keeps the timer and is told the time), so the data path's conflict checks follow what
//!   other gateways changed within that bound (a lock held by a change in progress
//!   skips one round). The data path itself still reads only the core's state (one
//!   atomic load while nothing is registered);
//! * RESERVE/RELEASE(6/10) run like PERSISTENT RESERVE commands, and the releases this
//!   gateway owes (a holding session ended, a reset) are written by the refresh, as are
//!   the resets made here, which the other gateways' sessions are told of when they load
//!   the state;
//! * the state is kept in two objects, `<lun>.pr` (what gateways of earlier releases
//!   read) and `<lun>.pr-lu` (the lines they would refuse), read and written together
//!   ([`read_state`], [`write_state`]);
//! * every gateway holds [`LIVE_METADATA`] shared while it exports a shared LUN, so the
//!   first to open it after every gateway stopped knows the LU powers on and drops what
//!   does not outlive that ([`join`]: registrations made without APTPL, any RESERVE).

use crate::targets::{Target, Targets};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use store_api::{
    BlockStore, Completion, ErrorKind, IoReply, LockError, LockMode, LockOwner, LockWait, Op,
    StoreError,
};

/// The longest a PERSISTENT RESERVE command waits for another gateway's change: below
/// the daemon's and initiators' command time limits.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The longest a gateway that changed the shared reservations waits for every other
/// gateway's acknowledgement before it answers: a gateway that has not acknowledged by
/// then has had no lease for a while ([`scsi::RESERVATIONS_LEASE`] plus a margin for
/// its lease timer), so it admits no write against the old state any more.
pub const FENCE_WAIT: Duration = Duration::from_secs(scsi::RESERVATIONS_LEASE.as_secs() + 2);

/// The metadata object in which each gateway acknowledges the versions of the shared
/// reservations it has adopted: one `gateway NAME VERSION` line per gateway, changed
/// under its own lock (see [`Acks`]).
pub const ACKS_METADATA: &str = "pr-acks";

/// How often a gateway waiting for acknowledgements reads them again.
const ACK_POLL: Duration = Duration::from_millis(20);

/// How often the leases are checked against the clock ([`expire_leases`]).
const LEASE_TICK: Duration = Duration::from_millis(100);

/// How often other gateways' reservation changes are loaded for the data path (the
/// core's timer, `scsi::ScsiTarget::reservations_due`).
pub const REFRESH: Duration = scsi::RESERVATIONS_REFRESH;

/// The metadata lock every gateway exporting a shared LUN holds shared for as long as it
/// exports it ([`join`]): a gateway that can take it exclusive is the only one running,
/// so the LU is powering on (the storage releases the lock of a gateway that stops: its
/// process, or its Gluster connection, goes).
pub const LIVE_METADATA: &str = "pr-live";

/// How long a gateway that finds itself alone waits before it checks again, so that a
/// gateway whose lock went with a replaced Gluster mount (a reconnect) has taken it
/// again (at its next refresh round, [`keep_live`]) before this one decides that every
/// gateway had stopped.
const LIVE_RECHECK: Duration = Duration::from_secs(2 * scsi::RESERVATIONS_REFRESH.as_secs());

/// This gateway's [`LIVE_METADATA`] locks: one per shared LUN it exports, by target and
/// LUN, with the store to take it again on (a reconnect loses it).
static LIVE: std::sync::Mutex<Vec<LiveLock>> = std::sync::Mutex::new(Vec::new());

struct LiveLock {
    target: String,
    lun: u16,
    store: std::sync::Weak<dyn BlockStore>,
    /// [`LIVE_METADATA`], and this gateway's own ([`gateway_lock`]), both shared.
    locks: Vec<store_api::MetadataLock>,
}

/// The metadata lock gateway `gateway` holds shared while it exports a shared LUN: one
/// that another gateway can take exclusive is gone (its process, or its connection to
/// the storage), and so are its sessions. Metadata names are short and lowercase, so
/// the name is `gw-` and the FNV-1a hash of the gateway's (two gateways sharing a hash
/// only look alive to each other's checks: the safe side).
pub fn gateway_lock(gateway: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in gateway.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("gw-{h:08x}")
}

/// Since when another gateway's lock could be taken (it looked gone), by target, LUN
/// and gateway: it counts as gone once that has lasted [`LIVE_RECHECK`].
static SUSPECTED: std::sync::Mutex<Vec<(String, u16, String, Instant)>> =
    std::sync::Mutex::new(Vec::new());

fn live_locks() -> std::sync::MutexGuard<'static, Vec<LiveLock>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

static GATEWAY: OnceLock<LockOwner> = OnceLock::new();

/// Parses `ID:STATE` (`--alua-peer`): a target port group of another gateway.
pub fn parse_port_group(s: &str) -> Result<scsi::PortGroup, String> {
    let (id, state) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not ID:STATE (for example 2:standby)"))?;
    Ok(scsi::PortGroup {
        id: parse_group_id(id)?,
        state: parse_access_state(state)?,
    })
}

/// A target port group id, 1 to 65535.
pub fn parse_group_id(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "target port group {s:?} is not a number from 1 to 65535"
        )),
    }
}

/// An asymmetric access state by name.
pub fn parse_access_state(s: &str) -> Result<scsi::AccessState, String> {
    scsi::AccessState::parse(s).ok_or_else(|| {
        let names: Vec<&str> = scsi::AccessState::ALL.iter().map(|a| a.name()).collect();
        format!("unknown ALUA state {s:?} ({})", names.join(", "))
    })
}

/// Names this process as a gateway among several (`--gateway-id`), once, before any LUN
/// opens: from then on every LUN's persistent reservations are shared.
pub fn set_gateway(owner: LockOwner) {
    let _ = GATEWAY.set(owner);
}

/// This gateway, when several export the same LUNs.
pub fn gateway() -> Option<&'static LockOwner> {
    GATEWAY.get()
}

/// Opens a LUN's store; on a gateway among several the LUN is shared, so its store is
/// opened cache-coherent across the gateways (`StoreOptions::shared`: the glfs store's
/// coherent mode), whatever the bsopts ask.
pub fn open_lun_store(
    opts: &backstore::StoreOptions,
) -> Result<Arc<dyn store_api::BlockStore>, backstore::OpenError> {
    backstore::open_store(&backstore::StoreOptions {
        shared: opts.shared || gateway().is_some(),
        ..opts.clone()
    })
}

/// Reads a shared LU's state as the core loads it: [`scsi::RESERVATIONS_METADATA`]
/// joined with [`scsi::RESERVATIONS_LU_METADATA`] (`scsi::join_reservation_state`;
/// `None`: neither is there). A second object not in our format is an error, as a
/// first one is when the core loads it. Call under the reservations' lock.
pub fn read_state(store: &dyn BlockStore) -> Result<Option<Vec<u8>>, StoreError> {
    let pr = store.read_metadata(scsi::RESERVATIONS_METADATA)?;
    let lu = match store.read_metadata(scsi::RESERVATIONS_LU_METADATA) {
        Ok(lu) => lu,
        Err(err) if err.kind == ErrorKind::Unsupported => None,
        Err(err) => return Err(err),
    };
    scsi::join_reservation_state(pr.as_deref(), lu.as_deref()).map_err(|_| {
        tracing::error!(
            "the shared LU state on the volume (<lun>.{}) is not in our format",
            scsi::RESERVATIONS_LU_METADATA
        );
        StoreError::new(Op::Read, ErrorKind::Io)
    })
}

/// Writes a shared LU's state (the core's saved form) as gateways of every release read
/// it: [`scsi::RESERVATIONS_METADATA`] first, without the lines earlier releases refuse,
/// then [`scsi::RESERVATIONS_LU_METADATA`] with those, when it changes. The first write
/// failing changes nothing; the second failing leaves the first's new version with the
/// previous RESERVE holder and reset count, which the caller's undo matches. Call under
/// the reservations' lock (readers take it too, so none sees one object without the
/// other).
pub fn write_state(store: &dyn BlockStore, state: &[u8]) -> Result<(), StoreError> {
    let (pr, lu) = scsi::split_reservation_state(state);
    store.write_metadata(scsi::RESERVATIONS_METADATA, &pr)?;
    let before = match store.read_metadata(scsi::RESERVATIONS_LU_METADATA) {
        Ok(before) => before.unwrap_or_default(),
        Err(err) if err.kind == ErrorKind::Unsupported => return Ok(()),
        Err(err) => return Err(err),
    };
    if before != lu {
        store.write_metadata(scsi::RESERVATIONS_LU_METADATA, &lu)?;
    }
    Ok(())
}

fn lock_error(err: LockError) -> StoreError {
    match err {
        LockError::Contended { .. } => StoreError::new(Op::Lock, ErrorKind::TimedOut),
        LockError::Store { source, .. } => source,
    }
}

/// Carries out a shared PERSISTENT RESERVE command (see the module documentation) and
/// reports the outcome to `done`, as a store request would. Blocking.
pub fn run_shared(
    target: &Target,
    owner: &LockOwner,
    mut run: scsi::ReservationRun,
    done: Completion,
) {
    let result = (|| {
        let store: &Arc<dyn BlockStore> = target
            .store(run.lun())
            .ok_or(StoreError::new(Op::Lock, ErrorKind::Io))?;
        let lun = run.lun() as u16;
        let started = Instant::now();
        let lock = lock_for_change(&**store, owner).map_err(lock_error)?;
        let saved = read_state(&**store)?;
        let changed = run.run(&target.scsi, saved.as_deref()).map_err(|_| {
            tracing::error!(target = %target.name, lun = run.lun(),
                "the persistent reservations on the volume are not in our format");
            StoreError::new(Op::Read, ErrorKind::Io)
        })?;
        let Some(state) = changed else {
            return Ok(IoReply::Done);
        };
        if let Err(err) = write_state(&**store, &state) {
            run.undo(&target.scsi);
            return Err(err);
        }
        if run.is_chore() {
            // A RESERVE(6/10) released, a reset told: no host loses access, nothing
            // to fence.
            return Ok(IoReply::Done);
        }
        // Whom to wait for: every gateway listed now. One that joins later reads this
        // version (it joins under the reservations' lock, which is held here).
        let acks = Acks::read(&**store)?;
        if acks.version_of(owner).is_some() {
            target.scsi.renew_reservations_lease(lun, started);
        }
        drop(lock);
        let version = target.scsi.reservations_version(lun).unwrap_or(0);
        await_fence(target, &**store, owner, lun, version, &acks);
        Ok(IoReply::Done)
    })();
    if let Err(err) = &result {
        tracing::error!(target = %target.name, lun = run.lun(), %err,
            "persistent reservation command on the shared state failed");
    }
    done.complete(result);
}

/// The gateways' acknowledgements of one LU's shared reservations
/// ([`ACKS_METADATA`]): who they are, and the newest version each has loaded with no
/// write admitted against an older one still in flight.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Acks(Vec<(String, u64)>);

impl Acks {
    /// What `store` keeps (nothing yet: no gateway listed).
    pub fn read(store: &dyn BlockStore) -> Result<Acks, StoreError> {
        let Some(bytes) = store.read_metadata(ACKS_METADATA)? else {
            return Ok(Acks::default());
        };
        Ok(Acks::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// The saved form's lines; anything else is skipped (a gateway missing from the list
    /// only adds itself again).
    pub fn parse(text: &str) -> Acks {
        Acks(
            text.lines()
                .filter_map(|line| match line.split(' ').collect::<Vec<_>>()[..] {
                    ["gateway", name, version] => Some((name.to_string(), version.parse().ok()?)),
                    _ => None,
                })
                .collect(),
        )
    }

    /// The saved form.
    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(name, version)| format!("gateway {name} {version}\n"))
            .collect()
    }

    /// The version `gateway` acknowledged; `None` when it is not listed.
    pub fn version_of(&self, gateway: &LockOwner) -> Option<u64> {
        self.0
            .iter()
            .find(|(name, _)| name == gateway.as_str())
            .map(|&(_, v)| v)
    }

    /// Lists `gateway` as having acknowledged `version`.
    pub fn set(&mut self, gateway: &LockOwner, version: u64) {
        match self.0.iter_mut().find(|(name, _)| name == gateway.as_str()) {
            Some(entry) => entry.1 = version,
            None => self.0.push((gateway.as_str().to_string(), version)),
        }
    }

    /// The gateways listed, but `except`, whose acknowledgement in `now` is older than
    /// `version` (or that `now` no longer lists).
    fn lagging(&self, except: &LockOwner, version: u64, now: &Acks) -> Vec<String> {
        self.0
            .iter()
            .filter(|(name, _)| name != except.as_str())
            .filter(|(name, _)| !now.0.iter().any(|(n, v)| n == name && *v >= version))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Changes the acknowledgements under their own lock (read, `change`, write).
fn update_acks(
    store: &dyn BlockStore,
    owner: &LockOwner,
    change: impl FnOnce(&mut Acks),
) -> Result<(), StoreError> {
    let _lock = store
        .lock_metadata(
            ACKS_METADATA,
            owner,
            LockMode::Exclusive,
            LockWait::AtMost(Duration::from_secs(1)),
        )
        .map_err(lock_error)?;
    let mut acks = Acks::read(store)?;
    let before = acks.clone();
    change(&mut acks);
    if acks != before {
        store.write_metadata(ACKS_METADATA, acks.encode().as_bytes())?;
    }
    Ok(())
}

/// The fence of a change to version `version` (see ARCHITECTURE.md, "Fencing"): returns
/// once this gateway has no write admitted against an older version in flight and every
/// other gateway in `listed` has acknowledged `version`, or after [`FENCE_WAIT`], when
/// the gateways still lagging are taken off the list (they add themselves again when
/// they next load the state, and are waited for again from then on). Blocking, bounded.
fn await_fence(
    target: &Target,
    store: &dyn BlockStore,
    owner: &LockOwner,
    lun: u16,
    version: u64,
    listed: &Acks,
) {
    let deadline = Instant::now() + FENCE_WAIT;
    let mut flushed_here = false;
    loop {
        let mut drained = target
            .scsi
            .reservations_drained(lun)
            .is_none_or(|v| v >= version);
        if drained && !flushed_here {
            // This gateway's older writes are done; those a client-side cache still
            // holds go to the volume first.
            flushed_here = flushed(store, &target.name, lun);
            drained = flushed_here;
        }
        let now_acks = Acks::read(store).unwrap_or_default();
        let lagging = listed.lagging(owner, version, &now_acks);
        if drained && lagging.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(target = %target.name, lun, version, ?lagging, drained,
                "gateways did not acknowledge a reservation change in time; \
                 going on without them (their leases have run out)");
            let removed = update_acks(store, owner, |acks| {
                acks.0
                    .retain(|(name, v)| *v >= version || !lagging.contains(name))
            });
            if let Err(err) = removed {
                tracing::warn!(target = %target.name, lun, %err,
                    "cannot take lagging gateways off the acknowledgement list");
            }
            return;
        }
        std::thread::sleep(ACK_POLL);
    }
}

/// Flushes `store` (every write it has completed is on the storage when it answers),
/// waiting at most [`FENCE_WAIT`]: whether it did.
fn flushed(store: &dyn BlockStore, target: &str, lun: u16) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    store.submit(
        store_api::IoRequest::Flush,
        Completion::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    match rx.recv_timeout(FENCE_WAIT) {
        Ok(Ok(_)) => true,
        Ok(Err(err)) => {
            tracing::warn!(target = %target, lun, %err,
                "flush before acknowledging a reservation change failed");
            false
        }
        Err(_) => {
            tracing::warn!(target = %target, lun,
                "flush before acknowledging a reservation change did not finish in time");
            false
        }
    }
}

/// The reservations' lock on `store` for a change: exclusive, waiting at most
/// [`LOCK_WAIT`] for another gateway's change to finish.
fn lock_for_change(
    store: &dyn BlockStore,
    owner: &LockOwner,
) -> Result<store_api::MetadataLock, LockError> {
    store.lock_metadata(
        scsi::RESERVATIONS_METADATA,
        owner,
        LockMode::Exclusive,
        LockWait::AtMost(LOCK_WAIT),
    )
}

/// A shared LU moves to another store (its file or settings changed): under the new
/// store's exclusive lock, what that store keeps is the state of every gateway and is
/// loaded; a store that keeps none gets this LU's state, so it is not lost. Never writes
/// over another gateway's state.
pub fn carry_shared(
    scsi: &scsi::ScsiTarget,
    target: &str,
    lun: u16,
    store: &dyn BlockStore,
    owner: &LockOwner,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let what = || format!("target {target} LUN {lun}: shared persistent reservations");
    let _lock = lock_for_change(store, owner).with_context(what)?;
    match read_state(store).with_context(what)? {
        Some(saved) => scsi
            .refresh_reservations(lun, Some(&saved))
            .with_context(what),
        None => {
            let state = scsi.reservation_metadata(lun).unwrap_or_default();
            write_state(store, &state)
                .with_context(|| format!("{}: cannot write them to the new store", what()))
        }
    }
}

/// A shared LUN opens on this gateway (before the LU serves, before its state is
/// loaded): this gateway takes [`LIVE_METADATA`] shared and keeps it while it exports the
/// LUN. When it could take it exclusive instead, twice [`LIVE_RECHECK`] apart, under the
/// reservations' exclusive lock (so two gateways starting at once are ordered), no other
/// gateway runs: the LU is powering on after every gateway stopped, and what does not
/// outlive that goes from the state on the storage (`scsi::reservations_at_power_on`:
/// without APTPL, every registration and reservation; a RESERVE(6/10) always). A gateway
/// restarting while another runs changes nothing. Fails when the storage cannot be read
/// or written (the LUN does not open: serving it with a state that should be gone would
/// fence hosts that are not registered any more, or keep registrations SPC-4 drops).
pub fn join(
    target: &str,
    lun: u16,
    store: &Arc<dyn BlockStore>,
    owner: &LockOwner,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let what = || format!("target {target} LUN {lun}: shared persistent reservations");
    let change = match lock_for_change(&**store, owner) {
        Err(LockError::Store { source, .. }) if source.kind == ErrorKind::Unsupported => {
            // A store without locks keeps no shared state either.
            return Ok(());
        }
        other => other.with_context(what)?,
    };
    let alone = || {
        store
            .lock_metadata(LIVE_METADATA, owner, LockMode::Exclusive, LockWait::NoWait)
            .is_ok()
    };
    if alone() && {
        std::thread::sleep(LIVE_RECHECK);
        alone()
    } {
        if let Some(saved) = read_state(&**store).with_context(what)? {
            let after = scsi::reservations_at_power_on(&saved).with_context(what)?;
            if let Some(state) = after {
                write_state(&**store, &state).with_context(what)?;
                tracing::info!(target = %target, lun,
                    "no other gateway exports the LUN: it powers on, and what was \
                     registered or reserved without APTPL (and any RESERVE) is gone");
            }
        }
    }
    // Nobody takes it exclusive without the reservations' lock, held here: at once.
    hold_live(target, lun, store, owner).with_context(what)?;
    drop(change);
    Ok(())
}

/// Takes [`LIVE_METADATA`] shared on `store` for LUN `lun` of `target` and keeps it while
/// this gateway exports the LUN there (a LUN moved to another store live takes it there).
pub fn hold_live(
    target: &str,
    lun: u16,
    store: &Arc<dyn BlockStore>,
    owner: &LockOwner,
) -> Result<(), LockError> {
    let mut held = Vec::new();
    for name in [LIVE_METADATA.to_string(), gateway_lock(owner.as_str())] {
        match store.lock_metadata(&name, owner, LockMode::Shared, LockWait::AtMost(LOCK_WAIT)) {
            Ok(lock) => held.push(lock),
            Err(LockError::Store { source, .. }) if source.kind == ErrorKind::Unsupported => {
                return Ok(())
            }
            Err(err) => return Err(err),
        }
    }
    let mut locks = live_locks();
    locks.retain(|l| !(l.target == target && l.lun == lun));
    locks.push(LiveLock {
        target: target.to_string(),
        lun,
        store: Arc::downgrade(store),
        locks: held,
    });
    Ok(())
}

/// Takes again every [`LIVE_METADATA`] lock the storage may have let go of (a glfs
/// reconnect replaced the mount it was held through), and lets go of those of stores
/// no longer in use. Called by each refresh round; never waits.
pub fn keep_live(owner: &LockOwner) {
    let mut locks = live_locks();
    locks.retain_mut(|l| {
        let Some(store) = l.store.upgrade() else {
            return false;
        };
        for lock in l.locks.iter_mut().filter(|lock| !lock.is_intact()) {
            let name = lock.name().to_string();
            match store.lock_metadata(&name, owner, LockMode::Shared, LockWait::NoWait) {
                Ok(again) => *lock = again,
                Err(err) => tracing::warn!(target = %l.target, lun = l.lun, %err,
                    "cannot take a gateways' liveness lock again"),
            }
        }
        true
    });
}

/// Closes the write fence of every shared LU whose lease has run out
/// (`ScsiTarget::expire_reservation_leases`), every [`LEASE_TICK`], until the runtime
/// stops: a timer of its own, so a read of the shared state that hangs never keeps a
/// lease open.
pub async fn expire_leases(targets: Arc<Targets>) {
    let mut tick = tokio::time::interval(LEASE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        for name in targets.names() {
            if let Some(target) = targets.get(&name) {
                target.scsi.expire_reservation_leases(now);
            }
        }
    }
}

/// Loads other gateways' reservation changes of each shared LUN when the core says it is
/// due (`ScsiTarget::reservations_due`, every `scsi::RESERVATIONS_REFRESH`), until the
/// runtime stops. The core keeps the timer; this loop tells it the time. Starts
/// [`expire_leases`] beside it. With `failover` (`--alua-failover`) each round also
/// tries to take or keep the data fence and follows the active gateway's record
/// ([`crate::failover::Failover::round`]).
pub async fn refresh(
    targets: Arc<Targets>,
    owner: LockOwner,
    failover: Option<crate::failover::Failover>,
) {
    tokio::spawn(expire_leases(targets.clone()));
    let failover = failover.map(|f| Arc::new(std::sync::Mutex::new(f)));
    loop {
        let round = {
            let (targets, owner, failover) = (targets.clone(), owner.clone(), failover.clone());
            tokio::task::spawn_blocking(move || {
                let now = Instant::now();
                keep_live(&owner);
                if let Some(failover) = &failover {
                    failover
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .round(&targets, now);
                }
                let mut next = now + REFRESH;
                for name in targets.names() {
                    if let Some(target) = targets.get(&name) {
                        refresh_target(&target, &owner, now);
                        if let Some(at) = target.scsi.next_reservations_refresh(now) {
                            next = next.min(at);
                        }
                    }
                }
                next
            })
        };
        let next = round.await.unwrap_or_else(|_| Instant::now() + REFRESH);
        tokio::time::sleep_until(next.into()).await;
    }
}

/// One round of [`refresh`] over one target's shared LUNs: the RESERVE(6/10) releases
/// this gateway owes are written, the LUNs due at `now` are loaded again, and the task
/// aborts a PREEMPT AND ABORT through another gateway queued go to the connections.
pub fn refresh_target(target: &Target, owner: &LockOwner, now: Instant) {
    // RESERVE(6/10) releases this gateway owes (a holding session ended, a reset), and
    // resets made here that the other gateways are still to be told of.
    for run in target.scsi.reservation_chores() {
        run_shared(target, owner, run, Completion::new(|_| {}));
    }
    for lun in target.scsi.reservations_due(now) {
        let Some(store) = target.store(u64::from(lun)) else {
            continue;
        };
        refresh_lun(
            &target.scsi,
            &target.name,
            lun,
            &**store,
            owner,
            now,
            LockWait::NoWait,
        );
        refresh_mode_pages(&target.scsi, &target.name, lun, &**store);
    }
    release_reserves_of_gone_gateways(target, owner, now);
    crate::connection::send_task_aborts(target);
}

/// Loads the mode pages another gateway may have saved (MODE SELECT with SP through it):
/// a LU's mode parameters are one for every path, so its write cache, write protection
/// and sense format follow within a round.
fn refresh_mode_pages(scsi: &scsi::ScsiTarget, target: &str, lun: u16, store: &dyn BlockStore) {
    match store.read_metadata(scsi::MODE_PAGES_METADATA) {
        Ok(Some(kept)) => match scsi.refresh_mode_pages(lun, &kept) {
            Ok(true) => tracing::info!(target = %target, lun,
                "mode pages saved through another gateway loaded"),
            Ok(false) => {}
            Err(_) => tracing::warn!(target = %target, lun,
                "the saved mode pages on the volume are not in our format"),
        },
        Ok(None) => {}
        Err(e) if e.kind == store_api::ErrorKind::Unsupported => {}
        Err(err) => tracing::warn!(target = %target, lun, %err,
            "cannot read the saved mode pages"),
    }
}

/// For each shared LUN whose RESERVE(6/10) is held through another gateway: when that
/// gateway's lock ([`gateway_lock`]) can be taken, twice at least [`LIVE_RECHECK`] apart,
/// the gateway is gone and so are its sessions: the reservation ends (SPC-2 5.5.1, I_T
/// nexus loss), and this gateway writes the release at its next round. A stalled
/// gateway keeps its locks (its connection lives), and keeps the reservation.
fn release_reserves_of_gone_gateways(target: &Target, owner: &LockOwner, now: Instant) {
    let mut suspected = SUSPECTED.lock().unwrap_or_else(|e| e.into_inner());
    for lun in target.scsi.luns() {
        let Some(holder) = target.scsi.reserve_held_through(lun) else {
            suspected.retain(|(t, l, _, _)| !(*t == target.name && *l == lun));
            continue;
        };
        let Some(store) = target.store(u64::from(lun)) else {
            continue;
        };
        let gone = store
            .lock_metadata(
                &gateway_lock(&holder),
                owner,
                LockMode::Exclusive,
                LockWait::NoWait,
            )
            .is_ok();
        let at = suspected
            .iter()
            .position(|(t, l, g, _)| *t == target.name && *l == lun && *g == holder);
        match (gone, at) {
            (false, _) => suspected.retain(|(t, l, _, _)| !(*t == target.name && *l == lun)),
            (true, None) => suspected.push((target.name.clone(), lun, holder, now)),
            (true, Some(i)) if now.duration_since(suspected[i].3) >= LIVE_RECHECK => {
                suspected.remove(i);
                if target.scsi.reserve_holder_gone(lun, &holder) {
                    tracing::info!(target = %target.name, lun, gateway = %holder,
                        "the gateway holding the RESERVE is gone: released");
                }
            }
            (true, Some(_)) => {}
        }
    }
}

/// Loads one shared LU's state (read begun at `now`), acknowledges the version this
/// gateway has adopted and drained (listing the gateway if it is not), and renews the
/// LU's lease when the gateway is listed. A change in progress (ours or another
/// gateway's) holds the lock exclusive: with [`LockWait::NoWait`] this round skips the
/// LUN rather than load a state about to change.
pub fn refresh_lun(
    scsi: &scsi::ScsiTarget,
    target: &str,
    lun: u16,
    store: &dyn BlockStore,
    owner: &LockOwner,
    now: Instant,
    wait: LockWait,
) {
    let Ok(_lock) = store.lock_metadata(scsi::RESERVATIONS_METADATA, owner, LockMode::Shared, wait)
    else {
        return;
    };
    match read_state(store) {
        Ok(saved) => {
            if scsi.refresh_reservations(lun, saved.as_deref()).is_err() {
                tracing::warn!(target = %target, lun,
                    "the persistent reservations on the volume are not in our format");
                return;
            }
        }
        Err(err) => {
            tracing::warn!(target = %target, lun, %err,
                "cannot read the shared persistent reservations");
            return;
        }
    }
    let drained = scsi.reservations_drained(lun).unwrap_or(0);
    let listed = match Acks::read(store) {
        Ok(acks) => acks.version_of(owner),
        Err(err) => {
            tracing::warn!(target = %target, lun, %err,
                "cannot read the gateways' acknowledgements");
            return;
        }
    };
    let listed = if listed == Some(drained) {
        true
    } else if !flushed(store, target, lun) {
        // Writes completed into a client-side cache (Gluster's write-behind) are not yet
        // on the volume: no acknowledgement until they are.
        listed.is_some()
    } else {
        // Joining happens under the reservations' lock, so a change made after it is
        // waited for by its gateway, and one made before it is what was just loaded.
        match update_acks(store, owner, |acks| acks.set(owner, drained)) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(target = %target, lun, %err,
                    "cannot acknowledge the shared persistent reservations");
                listed.is_some()
            }
        }
    };
    if listed {
        scsi.reservations_acked(lun, drained);
        scsi.renew_reservations_lease(lun, now);
    }
}
