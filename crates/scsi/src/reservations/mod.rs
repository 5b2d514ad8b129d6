//! Reservations: SPC-4 persistent reservations (PERSISTENT RESERVE IN/OUT, 5.13 and 6.15/6.16)
//! and the older RESERVE/RELEASE(6/10) of SPC-2, one state per logical unit.
//!
//! Registrations and persistent reservations belong to I_T nexuses as SPC-4 names them: an
//! initiator port ([`InitiatorPort`]) and the target port it came through (its relative
//! target port identifier: this gateway's target port group with ALUA, else 1), or with
//! ALL_TG_PT the initiator port through every target port. So they outlive the session
//! ([`crate::NexusId`]) that made them; a RESERVE(6/10) reservation belongs to its session
//! and ends with it, with a LOGICAL UNIT RESET and with a target reset. On a shared LU it
//! is recorded in the state every gateway keeps (its I_T nexus and the gateway it came
//! through), so it holds through every gateway; its gateway writes the release when the
//! session ends, a reset through any gateway ends it ([`Reservations::settle_release`]).
//! A reset of a shared LU is counted in the shared state too
//! ([`Reservations::settle_reset`]), so every gateway's nexuses learn of it.
//!
//! Every command is checked against the state before it runs ([`Reservations::conflict`]):
//! the access rules of SPC-4 table 62 / SBC-3 table 13, reduced to three classes of command
//! (allowed always, reads, everything else). While nothing is registered or reserved the
//! check is one atomic load.
//!
//! Each gateway (daemon) is one target port of the SCSI target device that the gateways
//! exporting the same LUs form; every session of a gateway comes through its port
//! ([`Ports`]). Gateways without ALUA groups all present target port 1 (the same iSCSI
//! target port name, `<target>,t,0x0001`), so they are one port to reservations.

mod commands;
mod state;
mod wire;

pub(crate) use commands::COMMANDS;
pub(crate) use state::PrState;
pub(crate) use state::{join_for_reading, split_for_old_readers};
use state::{ItNexus, LegacyHolder};
pub use wire::PrType;

use crate::cdb::opcode;
use crate::nexus::Nexuses;
use crate::sense::{Asc, Sense, SenseKey};
use crate::{NexusId, Response, Status, UaScope, UnitAttention};
use bytes::Bytes;
use state::Outcome;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
// Told the time by the driver (never read here): `Instant` is a value passed in.
use std::time::{Duration, Instant};

/// The target ports of the SCSI target device as this gateway knows them, by relative
/// target port identifier: its own (every nexus here came through it) and every port,
/// its own included (what REGISTER AND MOVE may name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ports {
    pub(crate) own: u16,
    pub(crate) all: Vec<u16>,
}

/// Operation codes of the commands this module runs.
pub(crate) mod op {
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
}

/// Whether this module runs the command with this operation code.
pub(crate) fn handles(op: u8) -> bool {
    matches!(
        op,
        op::RESERVE_6
            | op::RELEASE_6
            | op::RESERVE_10
            | op::RELEASE_10
            | op::PERSISTENT_RESERVE_IN
            | op::PERSISTENT_RESERVE_OUT
    )
}

/// The reservation state of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    state: Mutex<Locked>,
    /// Anything registered or reserved (persistent or not): the state must be consulted.
    active: AtomicBool,
    /// Kept on the volume for every gateway that exports the LU
    /// ([`crate::ScsiTarget::share_reservations`]): PERSISTENT RESERVE IN/OUT and
    /// RESERVE/RELEASE(6/10) run on the state read under the metadata lock, and every
    /// change is written back, APTPL or not.
    shared: AtomicBool,
    /// The name of this gateway among those sharing the LU (what a RESERVE(6/10) held
    /// through it is recorded under).
    gateway: std::sync::OnceLock<String>,
    /// The shared state's timers and acknowledgement.
    timers: Mutex<SharedTimers>,
}

/// What a gateway keeps about its copy of the shared state (told the time, never reading it).
#[derive(Debug, Default)]
struct SharedTimers {
    /// When the shared state is next to be loaded again (`None`: at once).
    next_refresh: Option<Instant>,
    /// Until when the loaded copy may be trusted for writes (`None`: never loaded).
    lease_until: Option<Instant>,
    /// The last version this gateway told the others it has adopted and drained.
    acked: u64,
}

#[derive(Debug, Default)]
struct Locked {
    pr: PrState,
    /// The holder of a RESERVE(6/10) reservation among this gateway's nexuses. On a
    /// shared LU `pr.legacy` is the reservation (of any gateway) and this is set only
    /// while it is this gateway's and the session that made it goes on.
    legacy: Option<NexusId>,
    /// Shared LU: a RESERVE(6/10) recorded on the volume that this gateway has to
    /// release (its session ended, a reset, a hold of this gateway's former process),
    /// at its next write of the shared state, if the record still names that holder.
    owed_release: Option<LegacyHolder>,
    /// A shared state was loaded (`load_shared`): `pr.version` is one this gateway knows.
    loaded_shared: bool,
    /// Shared LU: a reset made through this gateway that the other gateways are still to
    /// be told of (its unit attention), and the count written for it
    /// ([`Reservations::settle_reset`]); owed until a state loaded has that count.
    owed_reset: Option<(UnitAttention, Option<u64>)>,
}

/// What a gateway raises on every one of its nexuses of an LU when it missed more versions
/// of the shared state than their notices are kept for ([`state::KEPT_NOTICES`]): every
/// unit attention a change of the state can give (SPC-4 5.13.11.2 and 5.13.10.2),
/// since which registrants the lost notices named is not known any more.
const LOST_NOTICES: [UnitAttention; 3] = [
    UnitAttention::RegistrationsPreempted,
    UnitAttention::ReservationsPreempted,
    UnitAttention::ReservationsReleased,
];

impl Locked {
    fn is_active(&self) -> bool {
        self.legacy_reserved() || self.pr.is_active()
    }

    /// A RESERVE(6/10) reservation is held, through this gateway or another.
    fn legacy_reserved(&self) -> bool {
        self.legacy.is_some() || self.pr.legacy.is_some()
    }

    /// A RESERVE(6/10) reservation is held by a nexus other than `nexus`.
    fn legacy_held_by_other(&self, nexus: NexusId) -> bool {
        self.legacy_reserved() && self.legacy != Some(nexus)
    }

    /// After a shared state was loaded: this gateway's nexus holds the RESERVE(6/10)
    /// only while the state records it for this gateway (`me`); a record of this gateway
    /// that no session here holds (the session ended and its release was not written,
    /// or a former process of this gateway made it) is owed a release.
    fn reconcile_legacy(&mut self, me: Option<&str>) {
        match &self.pr.legacy {
            Some(h) if Some(h.gateway.as_str()) == me => {
                if self.legacy.is_none() {
                    self.owed_release = Some(h.clone());
                }
            }
            _ => self.legacy = None,
        }
        if self.owed_release.is_some() && self.owed_release != self.pr.legacy {
            // Released or taken over since: nothing left to release.
            self.owed_release = None;
        }
        if let Some((_, Some(written))) = self.owed_reset {
            if self.pr.resets.count >= written {
                self.owed_reset = None;
            }
        }
    }

    /// Whether a reset made here is still to be written for the other gateways.
    fn owes_reset(&self) -> bool {
        match self.owed_reset {
            Some((_, None)) => true,
            Some((_, Some(written))) => self.pr.resets.count < written,
            None => false,
        }
    }
}

/// What a PERSISTENT RESERVE OUT that changed the state asks of the caller.
#[derive(Debug)]
pub(crate) struct Changed {
    /// The state is to be kept across power loss (APTPL) or its saved copy removed: the
    /// caller saves [`Reservations::saved_state`] before answering GOOD.
    pub(crate) persist: bool,
}

/// Access classes of SPC-4 table 62 / SBC-3 table 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Allowed whatever is reserved (INQUIRY, TEST UNIT READY, READ CAPACITY, ...).
    Always,
    /// Reads the medium or its description: allowed under Write Exclusive types.
    Read,
    /// Writes, and everything the tables mark as conflicting for both.
    Other,
}

fn access(cdb: &[u8]) -> Access {
    use opcode::*;
    let Some(&op) = cdb.first() else {
        return Access::Other;
    };
    let sa = cdb.get(1).map_or(0, |b| b & 0x1F);
    match op {
        TEST_UNIT_READY | REQUEST_SENSE | INQUIRY | READ_CAPACITY_10 | REPORT_LUNS
        | MAINTENANCE_IN | op::PERSISTENT_RESERVE_IN | op::PERSISTENT_RESERVE_OUT
        | 0x4D /* LOG SENSE */ => Access::Always,
        SERVICE_ACTION_IN_16 if u16::from(sa) == crate::cdb::service_action::READ_CAPACITY_16 => {
            Access::Always
        }
        READ_6 | READ_10 | READ_12 | READ_16 | VERIFY_10 | VERIFY_12 | VERIFY_16
        | PRE_FETCH_10 | PRE_FETCH_16 | MODE_SENSE_6 | MODE_SENSE_10 | SERVICE_ACTION_IN_16
        | 0x37 /* READ DEFECT DATA(10) */ | 0xB7 /* READ DEFECT DATA(12) */
        | 0x84 /* RECEIVE COPY RESULTS */ | 0x3C /* READ BUFFER */ => Access::Read,
        // POPULATE TOKEN reads the blocks it makes a token of (SBC-3 table 15: allowed
        // under Write Exclusive); WRITE USING TOKEN and EXTENDED COPY write.
        0x83 if sa == 0x10 => Access::Read,
        _ => Access::Other,
    }
}

/// RESERVATION CONFLICT status (no sense data).
pub(crate) fn conflict_response() -> Response {
    Response {
        status: Status::ReservationConflict,
        data_in: Bytes::new(),
        sense: None,
        transfer_len: 0,
    }
}

/// ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION (26h/04h).
const INVALID_RELEASE: Sense = Sense::new(SenseKey::IllegalRequest, Asc(0x26, 0x04));

impl Reservations {
    fn lock(&self) -> MutexGuard<'_, Locked> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_active(&self, locked: &Locked) {
        self.active.store(locked.is_active(), Ordering::Release);
    }

    /// Restores saved persistent reservation state (APTPL), as the LU opens.
    pub(crate) fn restore(&self, mut pr: PrState) {
        let mut locked = self.lock();
        if self.is_shared() {
            locked.pr = pr;
            locked.reconcile_legacy(self.gateway.get().map(String::as_str));
        } else {
            // A RESERVE(6/10) recorded while the LU was shared is not one of this
            // gateway's nexuses and did not survive the restart; resets counted then
            // concern nobody here.
            pr.legacy = None;
            pr.resets = state::Resets::default();
            locked.pr = pr;
        }
        self.update_active(&locked);
    }

    /// Whether a reservation is held (persistent, or RESERVE(6/10)), by anyone.
    pub(crate) fn reserved(&self) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        let locked = self.lock();
        locked.legacy_reserved() || locked.pr.reservation.is_some()
    }

    /// Whether APTPL is set: the state is to persist across power loss.
    pub(crate) fn persists(&self) -> bool {
        self.lock().pr.aptpl
    }

    /// The bytes to keep on the volume for this LU: the state when APTPL is set, an empty
    /// state (nothing to restore) when it is not.
    pub(crate) fn saved_state(&self) -> Vec<u8> {
        let locked = self.lock();
        if locked.pr.aptpl || self.is_shared() {
            locked.pr.encode()
        } else {
            PrState::default().encode()
        }
    }

    /// Makes the state the one every gateway keeps on the volume; this gateway is named
    /// `gateway` among them.
    pub(crate) fn share(&self, gateway: &str) {
        let _ = self.gateway.set(gateway.to_string());
        self.shared.store(true, Ordering::Release);
    }

    /// The gateway whose session holds the RESERVE(6/10) recorded in the shared state,
    /// when it is another gateway.
    pub(crate) fn reserve_held_through(&self) -> Option<String> {
        let locked = self.lock();
        let me = self.gateway.get();
        locked
            .pr
            .legacy
            .as_ref()
            .filter(|h| Some(&h.gateway) != me)
            .map(|h| h.gateway.clone())
    }

    /// Gateway `gateway` is gone (its process or its connection to the storage): its
    /// sessions are, and so is the RESERVE(6/10) one of them holds (SPC-2 5.5.1, I_T
    /// nexus loss); this gateway owes its release. Whether it held one.
    pub(crate) fn gateway_gone(&self, gateway: &str) -> bool {
        let mut locked = self.lock();
        let held = locked
            .pr
            .legacy
            .as_ref()
            .is_some_and(|h| h.gateway == gateway && self.gateway.get() != Some(&h.gateway));
        if held {
            locked.owed_release = locked.pr.legacy.clone();
        }
        held
    }

    /// Whether a RESERVE(6/10) recorded in the shared state is this gateway's to release
    /// ([`Reservations::settle_release`]).
    pub(crate) fn owes_release(&self) -> bool {
        let locked = self.lock();
        locked.owed_release.is_some() && locked.owed_release == locked.pr.legacy
    }

    /// Releases the RESERVE(6/10) this gateway owes a release (its session ended, a
    /// reset), on the shared state just loaded under the lock, when the state still
    /// records that holder and no session here holds it again: whether the state changed
    /// (a new version, to be written back).
    /// The debt itself stays until a loaded state no longer records that holder, so a
    /// release whose write failed (the state loaded back) is still owed.
    pub(crate) fn settle_release(&self) -> bool {
        let mut locked = self.lock();
        let Some(owed) = locked.owed_release.clone() else {
            return false;
        };
        if locked.pr.legacy.as_ref() != Some(&owed) || locked.legacy.is_some() {
            return false;
        }
        locked.pr.legacy = None;
        // SPC-2 7.17: a release tells no other initiator anything.
        locked.pr.bump_version(&[], false);
        self.update_active(&locked);
        true
    }

    /// Whether a reset made through this gateway is still to be written to the shared
    /// state ([`Reservations::settle_reset`]).
    pub(crate) fn owes_reset(&self) -> bool {
        self.lock().owes_reset()
    }

    /// Writes in the shared state just loaded under the lock the reset this gateway owes
    /// the others (the count goes up, with the reset's unit attention): whether it did (a
    /// new version, to be written back). Owed until a state loaded has that count, so a
    /// write that failed is made again.
    pub(crate) fn settle_reset(&self) -> bool {
        let mut locked = self.lock();
        if !locked.owes_reset() {
            return false;
        }
        let Some((ua, _)) = locked.owed_reset else {
            return false;
        };
        let count = locked.pr.resets.count.wrapping_add(1);
        locked.pr.resets = state::Resets {
            count,
            ua: Some(ua),
        };
        locked.owed_reset = Some((ua, Some(count)));
        locked.pr.bump_version(&[], false);
        true
    }

    fn timers(&self) -> MutexGuard<'_, SharedTimers> {
        self.timers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the shared state is to be loaded again at `now`; if so, the next time is
    /// `every` later (`soon` later while a version awaits this gateway's acknowledgement).
    pub(crate) fn refresh_due(&self, now: Instant, every: Duration, soon: Duration) -> bool {
        let version = self.version();
        let mut timers = self.timers();
        if timers.next_refresh.is_some_and(|at| at > now) {
            return false;
        }
        let wait = if timers.acked < version { soon } else { every };
        timers.next_refresh = Some(now + wait);
        true
    }

    /// When the shared state is next to be loaded (`None`: at once).
    pub(crate) fn next_refresh(&self) -> Option<Instant> {
        self.timers().next_refresh
    }

    /// The version of the state loaded (0: never changed through a gateway).
    pub(crate) fn version(&self) -> u64 {
        self.lock().pr.version
    }

    /// The copy loaded from a read begun at `read_started` may be trusted until `lease`
    /// after it.
    pub(crate) fn renew_lease(&self, read_started: Instant, lease: Duration) {
        let mut timers = self.timers();
        let until = read_started + lease;
        if timers.lease_until.is_none_or(|at| at < until) {
            timers.lease_until = Some(until);
        }
    }

    /// Whether the lease has run out at `now` (or was never had).
    pub(crate) fn lease_expired(&self, now: Instant) -> bool {
        self.timers().lease_until.is_none_or(|at| at <= now)
    }

    /// This gateway has told the others it adopted `version`.
    pub(crate) fn set_acked(&self, version: u64) {
        let mut timers = self.timers();
        timers.acked = timers.acked.max(version);
    }

    /// Loads the shared state as another gateway left it (see [`Reservations::load`])
    /// and raises, on this gateway's nexuses, the unit attentions of the changes made
    /// since the version loaded before (queuing the task aborts of PREEMPT AND ABORT).
    /// The version loaded, or `None` when `saved` is not a saved state.
    pub(crate) fn load_shared(
        &self,
        saved: Option<&[u8]>,
        nexuses: &Nexuses,
        lun: u16,
        own_port: u16,
    ) -> Option<u64> {
        let state = match saved {
            Some(bytes) => PrState::decode(bytes)?,
            None => PrState::default(),
        };
        let mut locked = self.lock();
        let before = locked.pr.version;
        if state.version != before {
            // A new version is acknowledged promptly (`refresh_due`).
            self.timers().next_refresh = None;
        }
        if state.version > before {
            if locked.loaded_shared && state.version - before > state::KEPT_NOTICES {
                // The notices of the oldest versions missed are gone with them: every
                // nexus here is told what any of them may have said (a host that was not
                // concerned reads the state again and finds nothing changed for it).
                // Their task aborts are not replayed: writes admitted against the old
                // state are the fence's to keep out (versions, leases).
                for ua in LOST_NOTICES {
                    nexuses.raise(lun, ua, UaScope::All);
                }
            }
            let news = state
                .notices
                .iter()
                .filter(|n| n.version > before && n.to.target.includes(own_port));
            for notice in news {
                for n in nexuses.nexuses_of(&notice.to.port) {
                    nexuses.raise(lun, notice.ua, UaScope::Only(n));
                    if notice.abort {
                        nexuses.queue_abort(n, lun);
                    }
                }
            }
        }
        if locked.loaded_shared && state.resets.count > locked.pr.resets.count {
            // The LU was reset through another gateway: every nexus here learns of it
            // (SAM-5 6.3.3: every I_T nexus of the LU) and loses its tasks on the LU
            // (SAM-5 7.8: all tasks in all task sets, without status as TAS is 0). Only
            // the last reset's kind is kept; a reset replaces what is queued anyway.
            let ua = state.resets.ua.unwrap_or(UnitAttention::PowerOnReset);
            nexuses.raise(lun, ua, UaScope::All);
            for n in nexuses.ids() {
                nexuses.queue_abort(n, lun);
            }
        }
        let version = state.version;
        locked.pr = state;
        locked.loaded_shared = true;
        locked.reconcile_legacy(self.gateway.get().map(String::as_str));
        self.update_active(&locked);
        Some(version)
    }

    /// Whether the state is kept on the volume for several gateways.
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Acquire)
    }

    /// Replaces the persistent reservation state with the one read from the volume
    /// (`None`: nothing saved there, so nothing registered); a RESERVE(6/10) holder of an
    /// LU of one gateway stays (it is this gateway's own), a shared LU's is the one read.
    /// `false` when `saved` is not a saved state.
    pub(crate) fn load(&self, saved: Option<&[u8]>) -> bool {
        let state = match saved {
            Some(bytes) => match PrState::decode(bytes) {
                Some(state) => state,
                None => return false,
            },
            None => PrState::default(),
        };
        self.restore(state);
        true
    }

    /// RESERVATION CONFLICT when the state forbids this command from this nexus, which came
    /// through target port `own_port`. PERSISTENT RESERVE IN/OUT and RESERVE/RELEASE are
    /// judged by their own rules when they run.
    pub(crate) fn conflict(
        &self,
        nexus: NexusId,
        nexuses: &Nexuses,
        own_port: u16,
        cdb: &[u8],
    ) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        let op = cdb.first().copied().unwrap_or(0);
        if handles(op) {
            return false;
        }
        let class = access(cdb);
        let locked = self.lock();
        if locked.legacy_reserved() {
            // SPC-2 5.5.1: only INQUIRY, REPORT LUNS, REQUEST SENSE (and RELEASE) pass,
            // whichever gateway the holder came through.
            return locked.legacy != Some(nexus)
                && !matches!(
                    op,
                    opcode::INQUIRY | opcode::REPORT_LUNS | opcode::REQUEST_SENSE
                );
        }
        if class == Access::Always {
            return false;
        }
        let port = nexuses.port(nexus);
        let it = ItNexus {
            initiator: &port,
            target: own_port,
        };
        !locked.pr.allows(it, class == Access::Read)
    }

    /// Runs RESERVE/RELEASE(6/10) or PERSISTENT RESERVE IN/OUT on LUN `lun` from `nexus`,
    /// which came through `ports.own`, with what a successful PERSISTENT RESERVE OUT
    /// changed, for the caller to persist.
    pub(crate) fn execute(
        &self,
        nexus: NexusId,
        nexuses: &Nexuses,
        ports: &Ports,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
    ) -> (Response, Option<Changed>) {
        let op = cdb[0];
        let len = if op < 0x20 { 6 } else { 10 };
        if cdb.len() < len {
            return (
                Response::check_condition(Sense::invalid_field_in_cdb(0, None)),
                None,
            );
        }
        if cdb[len - 1] & 0x04 != 0 {
            return (
                Response::check_condition(Sense::invalid_field_in_cdb(len as u16 - 1, Some(2))),
                None,
            );
        }
        // On a shared LU a RESERVE(6/10) is recorded for every gateway: the I_T nexus and
        // this gateway's name.
        let record = self
            .gateway
            .get()
            .filter(|_| self.is_shared())
            .map(|gateway| LegacyHolder {
                gateway: gateway.clone(),
                since: 0,
                port: (*nexuses.port(nexus)).clone(),
                target: ports.own,
            });
        let mut locked = self.lock();
        let legacy_changed = |locked: &mut Locked, (response, changed): (Response, bool)| {
            if !(changed && self.is_shared()) {
                return (response, None);
            }
            // A new version for the other gateways: the same fence as any change.
            locked.pr.bump_version(&[], false);
            let version = locked.pr.version;
            if let Some(holder) = &mut locked.pr.legacy {
                if holder.since == 0 {
                    // The hold this change made.
                    holder.since = version;
                }
            }
            (response, Some(Changed { persist: true }))
        };
        let result = match op {
            op::RESERVE_6 | op::RESERVE_10 => {
                let outcome = legacy_reserve(&mut locked, nexus, cdb, record);
                legacy_changed(&mut locked, outcome)
            }
            op::RELEASE_6 | op::RELEASE_10 => {
                let outcome = legacy_release(&mut locked, nexus, cdb);
                legacy_changed(&mut locked, outcome)
            }
            _ if locked.legacy_held_by_other(nexus) => {
                // SPC-3 5.6.3: persistent reservation commands from other nexuses conflict
                // with a RESERVE(6/10).
                (conflict_response(), None)
            }
            op::PERSISTENT_RESERVE_IN => (wire::pr_in(&locked.pr, cdb), None),
            _ => {
                let port = nexuses.port(nexus);
                let it = ItNexus {
                    initiator: &port,
                    target: ports.own,
                };
                match wire::PrOut::parse(cdb, data_out) {
                    Err(sense) => (Response::check_condition(sense), None),
                    Ok(request) => {
                        let was_aptpl = locked.pr.aptpl;
                        match locked.pr.apply(it, &request, &ports.all) {
                            Outcome::Conflict => (conflict_response(), None),
                            Outcome::Sense(sense) => (Response::check_condition(sense), None),
                            Outcome::InvalidRelease => {
                                (Response::check_condition(INVALID_RELEASE), None)
                            }
                            Outcome::Done { changed, notices } => {
                                // PREEMPT AND ABORT (SPC-4 5.13.11.2.4): the task sets of the
                                // preempted registrants' nexuses on this LU are aborted too.
                                let abort = request.action == wire::ServiceAction::PreemptAndAbort;
                                if changed && self.is_shared() {
                                    // The other gateways raise these on their nexuses.
                                    locked.pr.bump_version(&notices, abort);
                                }
                                // This gateway's nexuses all came through its own port.
                                let here = notices
                                    .iter()
                                    .filter(|(to, _)| to.target.includes(ports.own));
                                for (to, ua) in here {
                                    let ua = *ua;
                                    for n in nexuses.nexuses_of(&to.port) {
                                        if n != nexus {
                                            nexuses.raise(lun, ua, UaScope::Only(n));
                                            if abort && ua == UnitAttention::RegistrationsPreempted
                                            {
                                                nexuses.queue_abort(n, lun);
                                            }
                                        }
                                    }
                                }
                                let persist =
                                    changed && (was_aptpl || locked.pr.aptpl || self.is_shared());
                                (
                                    Response::good(Bytes::new(), 0),
                                    changed.then_some(Changed { persist }),
                                )
                            }
                        }
                    }
                }
            }
        };
        self.update_active(&locked);
        result
    }

    /// The nexus is gone: its RESERVE(6/10) reservation ends (SPC-2 5.5.1, I_T nexus loss).
    /// On a shared LU the record on the volume stays (every nexus but none conflicts)
    /// until this gateway writes its release ([`Reservations::settle_release`]).
    pub(crate) fn nexus_lost(&self, nexus: NexusId) {
        let mut locked = self.lock();
        if locked.legacy == Some(nexus) {
            locked.legacy = None;
            if self.is_shared() {
                locked.owed_release = locked.pr.legacy.clone();
            }
            self.update_active(&locked);
        }
    }

    /// LOGICAL UNIT RESET or target reset, whose nexuses here got unit attention `ua`: a
    /// RESERVE(6/10) reservation ends, made through whichever gateway (on a shared LU the
    /// release is written at the next write, [`Reservations::settle_release`]);
    /// persistent reservations are untouched (SPC-4 5.13.1). On a shared LU the reset is
    /// written for the other gateways too ([`Reservations::settle_reset`]), whose nexuses
    /// then get `ua` and lose their tasks.
    pub(crate) fn reset(&self, ua: UnitAttention) {
        let mut locked = self.lock();
        locked.legacy = None;
        if self.is_shared() && locked.pr.legacy.is_some() {
            locked.owed_release = locked.pr.legacy.clone();
        }
        if self.is_shared() {
            locked.owed_reset = Some((ua, None));
        }
        self.update_active(&locked);
    }
}

/// RESERVE(6) (SPC-2 7.21) / RESERVE(10) (7.22): third-party and extent reservations are
/// not supported. `record`: what a shared LU keeps of the holder for the other gateways.
/// The response, and whether the state changed.
fn legacy_reserve(
    locked: &mut Locked,
    nexus: NexusId,
    cdb: &[u8],
    record: Option<LegacyHolder>,
) -> (Response, bool) {
    let bad = if cdb[0] == op::RESERVE_6 { 0x1F } else { 0x13 };
    if cdb[1] & bad != 0 {
        return (
            Response::check_condition(Sense::invalid_field_in_cdb(1, None)),
            false,
        );
    }
    if locked.pr.is_active() || locked.legacy_held_by_other(nexus) {
        return (conflict_response(), false);
    }
    let changed = locked.legacy != Some(nexus);
    locked.legacy = Some(nexus);
    if changed {
        locked.pr.legacy = record;
    }
    (Response::good(Bytes::new(), 0), changed)
}

/// RELEASE(6) (SPC-2 7.17) / RELEASE(10) (7.18): a release from a nexus that holds nothing
/// is GOOD and changes nothing. The response, and whether the state changed.
fn legacy_release(locked: &mut Locked, nexus: NexusId, cdb: &[u8]) -> (Response, bool) {
    let bad = if cdb[0] == op::RELEASE_6 { 0x1F } else { 0x13 };
    if cdb[1] & bad != 0 {
        return (
            Response::check_condition(Sense::invalid_field_in_cdb(1, None)),
            false,
        );
    }
    if locked.pr.is_active() {
        return (conflict_response(), false);
    }
    let changed = locked.legacy == Some(nexus);
    if changed {
        locked.legacy = None;
        locked.pr.legacy = None;
    }
    (Response::good(Bytes::new(), 0), changed)
}
