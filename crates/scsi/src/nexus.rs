//! Per-I_T-nexus state: who is on the other end of each nexus, and the UNIT ATTENTION
//! conditions queued for it on each logical unit (SAM-5 5.14, SPC-4 5.14 / 6.39).
//!
//! The transport opens a nexus when a session logs in ([`crate::ScsiTarget::open_nexus`]),
//! which queues POWER ON, RESET, OR BUS DEVICE RESET OCCURRED on every logical unit for it,
//! and closes it when the session ends. A nexus the transport never opened has no queue and
//! never sees a unit attention (unit tests of single commands rely on that).
//!
//! A pending unit attention is reported, and cleared, by the next command the nexus sends to
//! that logical unit, except INQUIRY and REPORT LUNS, which run normally and leave it
//! pending, and REQUEST SENSE, which returns it as its parameter data (SAM-5 5.14,
//! UA_INTLCK_CTRL = 00b).
//!
//! Invariant: `pending` equals the number of conditions queued over all nexuses, so the
//! command path costs one atomic load while nothing is queued.

use crate::cdb::opcode;
use crate::sense::{Asc, Sense, SenseKey};
use crate::NexusId;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The initiator port of an I_T nexus: for iSCSI the initiator name and the session's ISID
/// (RFC 7143 10.12.5, SPC-4 7.6.4.6 TransportID format 01b). Registrations and
/// reservations belong to it, not to the transient [`NexusId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InitiatorPort {
    /// iSCSI initiator name (`iqn.…`).
    pub name: String,
    /// Initiator session ID.
    pub isid: [u8; 6],
}

impl InitiatorPort {
    /// The initiator port name, `<name>,i,0x<isid in 12 hex digits>` (RFC 7143 10.12.5).
    pub fn port_name(&self) -> String {
        let isid: String = self.isid.iter().map(|b| format!("{b:02x}")).collect();
        format!("{},i,0x{isid}", self.name)
    }

    /// A placeholder port for a nexus the transport did not open (unit tests).
    pub(crate) fn anonymous(nexus: NexusId) -> Self {
        InitiatorPort {
            name: format!("nexus-{nexus}"),
            isid: [0; 6],
        }
    }
}

/// The unit attention conditions this target raises (SPC-4 annex D).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitAttention {
    /// 29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED: a new nexus, a target reset.
    PowerOnReset,
    /// 29h/03h BUS DEVICE RESET FUNCTION OCCURRED: a LOGICAL UNIT RESET.
    LogicalUnitReset,
    /// 2Ah/01h MODE PARAMETERS CHANGED.
    ModeParametersChanged,
    /// 2Ah/03h RESERVATIONS PREEMPTED.
    ReservationsPreempted,
    /// 2Ah/04h RESERVATIONS RELEASED.
    ReservationsReleased,
    /// 2Ah/05h REGISTRATIONS PREEMPTED.
    RegistrationsPreempted,
    /// 2Ah/09h CAPACITY DATA HAS CHANGED.
    CapacityDataChanged,
    /// 2Ah/06h ASYMMETRIC ACCESS STATE CHANGED: a target port group's ALUA state changed.
    AsymmetricAccessStateChanged,
    /// 3Fh/03h INQUIRY DATA HAS CHANGED.
    InquiryDataChanged,
    /// 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED: a logical unit was added or removed.
    ReportedLunsDataChanged,
    /// 38h/07h THIN PROVISIONING SOFT THRESHOLD REACHED: a thin LU's storage has fallen to
    /// its soft threshold of free space (SBC-3, logical block provisioning thresholds).
    ThinProvisioningSoftThresholdReached,
}

impl UnitAttention {
    /// The additional sense code and qualifier.
    pub const fn asc(self) -> Asc {
        match self {
            UnitAttention::PowerOnReset => Asc(0x29, 0x00),
            UnitAttention::LogicalUnitReset => Asc(0x29, 0x03),
            UnitAttention::ModeParametersChanged => Asc(0x2A, 0x01),
            UnitAttention::ReservationsPreempted => Asc(0x2A, 0x03),
            UnitAttention::ReservationsReleased => Asc(0x2A, 0x04),
            UnitAttention::RegistrationsPreempted => Asc(0x2A, 0x05),
            UnitAttention::CapacityDataChanged => Asc(0x2A, 0x09),
            UnitAttention::AsymmetricAccessStateChanged => Asc(0x2A, 0x06),
            UnitAttention::InquiryDataChanged => Asc(0x3F, 0x03),
            UnitAttention::ReportedLunsDataChanged => Asc(0x3F, 0x0E),
            UnitAttention::ThinProvisioningSoftThresholdReached => Asc(0x38, 0x07),
        }
    }

    /// The sense data reporting it: UNIT ATTENTION and [`Self::asc`].
    pub const fn sense(self) -> Sense {
        Sense::new(SenseKey::UnitAttention, self.asc())
    }

    /// Reset conditions replace whatever is queued: a reset clears lower-priority unit
    /// attentions (SAM-5 5.14).
    fn is_reset(self) -> bool {
        matches!(
            self,
            UnitAttention::PowerOnReset | UnitAttention::LogicalUnitReset
        )
    }
}

/// Which nexuses a unit attention goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UaScope {
    /// Every open nexus.
    All,
    /// Every open nexus except this one (the nexus whose command caused the change).
    AllBut(NexusId),
    /// Only this nexus.
    Only(NexusId),
}

impl UaScope {
    fn includes(self, nexus: NexusId) -> bool {
        match self {
            UaScope::All => true,
            UaScope::AllBut(n) => n != nexus,
            UaScope::Only(n) => n == nexus,
        }
    }
}

/// At most this many distinct conditions wait per nexus and logical unit; later ones are
/// dropped (the initiator rereads its state after the first anyway).
const MAX_QUEUED: usize = 4;

#[derive(Debug)]
struct NexusState {
    port: Arc<InitiatorPort>,
    /// Queued conditions by LUN, oldest first.
    queues: HashMap<u16, VecDeque<UnitAttention>>,
}

/// Every open nexus of one target.
#[derive(Debug, Default)]
pub(crate) struct Nexuses {
    inner: Mutex<HashMap<NexusId, NexusState>>,
    /// Conditions queued over all nexuses and LUNs.
    pending: AtomicUsize,
    /// Task sets to abort (PREEMPT AND ABORT): `(nexus, lun)`, for the transport.
    aborts: Mutex<Vec<(NexusId, u16)>>,
    /// `aborts` is not empty (checked without the lock after every command).
    aborts_queued: std::sync::atomic::AtomicBool,
}

impl Nexuses {
    fn lock(&self) -> MutexGuard<'_, HashMap<NexusId, NexusState>> {
        // A panic while holding the lock leaves consistent maps (no multi-step updates).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens `nexus` for `port`, with POWER ON queued on each of `luns`. Reopening a nexus
    /// starts it afresh.
    pub(crate) fn open(&self, nexus: NexusId, port: InitiatorPort, luns: &[u16]) {
        let mut map = self.lock();
        let queues = luns
            .iter()
            .map(|&l| (l, VecDeque::from([UnitAttention::PowerOnReset])))
            .collect();
        let old = map.insert(
            nexus,
            NexusState {
                port: Arc::new(port),
                queues,
            },
        );
        let removed = old.map_or(0, |s| s.queues.values().map(VecDeque::len).sum());
        self.pending.fetch_add(luns.len(), Ordering::Relaxed);
        self.pending.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Asks the transport to abort the tasks of `nexus` on logical unit `lun`.
    pub(crate) fn queue_abort(&self, nexus: NexusId, lun: u16) {
        let mut aborts = self.aborts.lock().unwrap_or_else(|e| e.into_inner());
        if !aborts.contains(&(nexus, lun)) {
            aborts.push((nexus, lun));
        }
        self.aborts_queued.store(true, Ordering::Release);
    }

    /// The task sets to abort queued since the last call.
    pub(crate) fn take_aborts(&self) -> Vec<(NexusId, u16)> {
        if !self.aborts_queued.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.aborts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Forgets `nexus` and its queued conditions.
    pub(crate) fn close(&self, nexus: NexusId) {
        if let Some(s) = self.lock().remove(&nexus) {
            let removed = s.queues.values().map(VecDeque::len).sum();
            self.pending.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    /// The initiator port of `nexus` (a placeholder when it was never opened).
    pub(crate) fn port(&self, nexus: NexusId) -> Arc<InitiatorPort> {
        self.lock()
            .get(&nexus)
            .map(|s| s.port.clone())
            .unwrap_or_else(|| Arc::new(InitiatorPort::anonymous(nexus)))
    }

    /// Every open nexus.
    pub(crate) fn ids(&self) -> Vec<NexusId> {
        self.lock().keys().copied().collect()
    }

    /// The open nexuses whose initiator port is `port`.
    pub(crate) fn nexuses_of(&self, port: &InitiatorPort) -> Vec<NexusId> {
        self.lock()
            .iter()
            .filter(|(_, s)| *s.port == *port)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Queues `ua` on LUN `lun` for the nexuses in `scope`.
    pub(crate) fn raise(&self, lun: u16, ua: UnitAttention, scope: UaScope) {
        let mut map = self.lock();
        let mut added = 0usize;
        let mut removed = 0usize;
        for (_, s) in map.iter_mut().filter(|(n, _)| scope.includes(**n)) {
            let q = s.queues.entry(lun).or_default();
            if ua.is_reset() {
                removed += q.len();
                q.clear();
            }
            if !q.contains(&ua) && q.len() < MAX_QUEUED {
                q.push_back(ua);
                added += 1;
            }
        }
        self.pending.fetch_add(added, Ordering::Relaxed);
        self.pending.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Takes the oldest condition queued for `nexus` on `lun`.
    pub(crate) fn take(&self, nexus: NexusId, lun: u16) -> Option<UnitAttention> {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut map = self.lock();
        let ua = map.get_mut(&nexus)?.queues.get_mut(&lun)?.pop_front()?;
        self.pending.fetch_sub(1, Ordering::Relaxed);
        Some(ua)
    }

    /// The condition a command with operation code `op` must be failed with, taken off the
    /// queue; `None` when nothing is pending or the command is exempt (INQUIRY, REPORT
    /// LUNS, and REQUEST SENSE, which reports it as data instead).
    pub(crate) fn check(&self, nexus: NexusId, lun: u16, op: Option<u8>) -> Option<Sense> {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return None;
        }
        if matches!(
            op,
            Some(opcode::INQUIRY | opcode::REPORT_LUNS | opcode::REQUEST_SENSE)
        ) {
            return None;
        }
        self.take(nexus, lun).map(UnitAttention::sense)
    }

    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str) -> InitiatorPort {
        InitiatorPort {
            name: name.into(),
            isid: [0x80, 0, 0, 0x12, 0x34, 0x56],
        }
    }

    #[test]
    fn port_name_follows_rfc_7143() {
        assert_eq!(
            port("iqn.2026-01.com.example:h1").port_name(),
            "iqn.2026-01.com.example:h1,i,0x800000123456"
        );
    }

    #[test]
    fn asc_values_follow_spc4_annex_d() {
        let table = [
            (UnitAttention::PowerOnReset, 0x29, 0x00),
            (UnitAttention::LogicalUnitReset, 0x29, 0x03),
            (UnitAttention::ModeParametersChanged, 0x2A, 0x01),
            (UnitAttention::ReservationsPreempted, 0x2A, 0x03),
            (UnitAttention::ReservationsReleased, 0x2A, 0x04),
            (UnitAttention::RegistrationsPreempted, 0x2A, 0x05),
            (UnitAttention::CapacityDataChanged, 0x2A, 0x09),
            (UnitAttention::AsymmetricAccessStateChanged, 0x2A, 0x06),
            (UnitAttention::InquiryDataChanged, 0x3F, 0x03),
            (UnitAttention::ReportedLunsDataChanged, 0x3F, 0x0E),
            (
                UnitAttention::ThinProvisioningSoftThresholdReached,
                0x38,
                0x07,
            ),
        ];
        for (ua, asc, ascq) in table {
            let b = ua.sense().to_fixed();
            assert_eq!((b[2], b[12], b[13]), (0x06, asc, ascq), "{ua:?}");
        }
    }

    #[test]
    fn open_queues_power_on_per_lun_and_close_forgets() {
        let n = Nexuses::default();
        n.open(1, port("a"), &[0, 3]);
        assert_eq!(n.pending(), 2);
        assert_eq!(n.take(1, 3), Some(UnitAttention::PowerOnReset));
        assert_eq!(n.take(1, 3), None);
        n.close(1);
        assert_eq!(n.pending(), 0);
        assert_eq!(n.take(1, 0), None);
    }

    #[test]
    fn scopes_and_dedup() {
        let n = Nexuses::default();
        n.open(1, port("a"), &[]);
        n.open(2, port("b"), &[]);
        n.raise(0, UnitAttention::CapacityDataChanged, UaScope::AllBut(1));
        n.raise(0, UnitAttention::CapacityDataChanged, UaScope::AllBut(1));
        assert_eq!(n.pending(), 1);
        assert_eq!(n.take(1, 0), None);
        assert_eq!(n.take(2, 0), Some(UnitAttention::CapacityDataChanged));
        n.raise(0, UnitAttention::ModeParametersChanged, UaScope::Only(1));
        assert_eq!(n.take(2, 0), None);
        assert_eq!(n.take(1, 0), Some(UnitAttention::ModeParametersChanged));
    }

    #[test]
    fn a_reset_replaces_what_is_queued() {
        let n = Nexuses::default();
        n.open(1, port("a"), &[0]);
        n.raise(0, UnitAttention::CapacityDataChanged, UaScope::All);
        n.raise(0, UnitAttention::LogicalUnitReset, UaScope::All);
        assert_eq!(n.pending(), 1);
        assert_eq!(n.take(1, 0), Some(UnitAttention::LogicalUnitReset));
        assert_eq!(n.pending(), 0);
    }

    #[test]
    fn the_queue_is_bounded() {
        let n = Nexuses::default();
        n.open(1, port("a"), &[0]);
        for ua in [
            UnitAttention::ModeParametersChanged,
            UnitAttention::ReservationsPreempted,
            UnitAttention::ReservationsReleased,
            UnitAttention::RegistrationsPreempted,
            UnitAttention::CapacityDataChanged,
            UnitAttention::InquiryDataChanged,
        ] {
            n.raise(0, ua, UaScope::All);
        }
        assert_eq!(n.pending(), MAX_QUEUED);
        assert_eq!(n.take(1, 0), Some(UnitAttention::PowerOnReset));
        assert_eq!(n.take(1, 0), Some(UnitAttention::ModeParametersChanged));
    }

    #[test]
    fn exempt_commands_leave_the_condition() {
        let n = Nexuses::default();
        n.open(7, port("a"), &[0]);
        for op in [opcode::INQUIRY, opcode::REPORT_LUNS, opcode::REQUEST_SENSE] {
            assert_eq!(n.check(7, 0, Some(op)), None);
        }
        assert_eq!(
            n.check(7, 0, Some(opcode::TEST_UNIT_READY)),
            Some(UnitAttention::PowerOnReset.sense())
        );
        assert_eq!(n.check(7, 0, Some(opcode::TEST_UNIT_READY)), None);
    }

    #[test]
    fn nexuses_of_a_port() {
        let n = Nexuses::default();
        n.open(1, port("a"), &[]);
        n.open(2, port("b"), &[]);
        n.open(3, port("a"), &[]);
        let mut of_a = n.nexuses_of(&port("a"));
        of_a.sort();
        assert_eq!(of_a, [1, 3]);
        assert_eq!(n.port(2).name, "b");
        assert_eq!(n.port(9).name, "nexus-9");
    }
}
