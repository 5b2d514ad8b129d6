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
//!   atomic load while nothing is registered).

use crate::targets::{Target, Targets};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use store_api::{
    BlockStore, Completion, ErrorKind, IoReply, LockError, LockMode, LockOwner, LockWait, Op,
    StoreError,
};

/// The longest a PERSISTENT RESERVE command waits for another gateway's change: below
/// the daemon's and initiators' command time limits.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How often other gateways' reservation changes are loaded for the data path (the
/// core's timer, `scsi::ScsiTarget::reservations_due`).
pub const REFRESH: Duration = scsi::RESERVATIONS_REFRESH;

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
        let _lock = lock_for_change(&**store, owner).map_err(lock_error)?;
        let saved = store.read_metadata(scsi::RESERVATIONS_METADATA)?;
        let changed = run.run(&target.scsi, saved.as_deref()).map_err(|_| {
            tracing::error!(target = %target.name, lun = run.lun(),
                "the persistent reservations on the volume are not in our format");
            StoreError::new(Op::Read, ErrorKind::Io)
        })?;
        if let Some(state) = changed {
            if let Err(err) = store.write_metadata(scsi::RESERVATIONS_METADATA, &state) {
                run.undo(&target.scsi);
                return Err(err);
            }
        }
        Ok(IoReply::Done)
    })();
    if let Err(err) = &result {
        tracing::error!(target = %target.name, lun = run.lun(), %err,
            "persistent reservation command on the shared state failed");
    }
    done.complete(result);
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
    match store
        .read_metadata(scsi::RESERVATIONS_METADATA)
        .with_context(what)?
    {
        Some(saved) => scsi
            .refresh_reservations(lun, Some(&saved))
            .with_context(what),
        None => {
            let state = scsi.reservation_metadata(lun).unwrap_or_default();
            store
                .write_metadata(scsi::RESERVATIONS_METADATA, &state)
                .with_context(|| format!("{}: cannot write them to the new store", what()))
        }
    }
}

/// Loads other gateways' reservation changes of each shared LUN when the core says it is
/// due (`ScsiTarget::reservations_due`, every `scsi::RESERVATIONS_REFRESH`), until the
/// runtime stops. The core keeps the timer; this loop tells it the time.
pub async fn refresh(targets: Arc<Targets>, owner: LockOwner) {
    loop {
        let round = {
            let (targets, owner) = (targets.clone(), owner.clone());
            tokio::task::spawn_blocking(move || {
                let now = std::time::Instant::now();
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
        let next = round
            .await
            .unwrap_or_else(|_| std::time::Instant::now() + REFRESH);
        tokio::time::sleep_until(next.into()).await;
    }
}

/// One round of [`refresh`] over one target's shared LUNs that are due at `now`.
pub fn refresh_target(target: &Target, owner: &LockOwner, now: std::time::Instant) {
    for lun in target.scsi.reservations_due(now) {
        let Some(store) = target.store(u64::from(lun)) else {
            continue;
        };
        // Shared, no wait: a change in progress (ours or another gateway's) holds it
        // exclusive; this round skips the LUN rather than load a state about to change.
        let Ok(_lock) = store.lock_metadata(
            scsi::RESERVATIONS_METADATA,
            owner,
            LockMode::Shared,
            LockWait::NoWait,
        ) else {
            continue;
        };
        match store.read_metadata(scsi::RESERVATIONS_METADATA) {
            Ok(saved) => {
                if target
                    .scsi
                    .refresh_reservations(lun, saved.as_deref())
                    .is_err()
                {
                    tracing::warn!(target = %target.name, lun,
                        "the persistent reservations on the volume are not in our format");
                }
            }
            Err(err) => {
                tracing::warn!(target = %target.name, lun, %err,
                    "cannot read the shared persistent reservations")
            }
        }
    }
}
