//! Persistent reservation state and the PERSISTENT RESERVE OUT service actions on it
//! (SPC-4 5.13.5 to 5.13.11), with no I/O and no wire format but the saved form.

use super::wire::{PrOut, PrType, ServiceAction};
use crate::nexus::InitiatorPort;
use crate::sense::{Asc, Sense, SenseKey};
use crate::UnitAttention;

/// At most this many registrations per logical unit; more is ILLEGAL REQUEST, INSUFFICIENT
/// REGISTRATION RESOURCES (55h/04h), so an initiator cannot grow the state without bound.
pub(crate) const MAX_REGISTRATIONS: usize = 256;

const INSUFFICIENT_REGISTRATION_RESOURCES: Sense =
    Sense::new(SenseKey::IllegalRequest, Asc(0x55, 0x04));

/// The target ports a registration covers (SPC-4 5.13.7: ALL_TG_PT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TargetPorts {
    /// Only the target port with this RELATIVE TARGET PORT IDENTIFIER (ALL_TG_PT=0): the
    /// registration is of one I_T nexus.
    One(u16),
    /// Every target port of the SCSI target device (ALL_TG_PT=1): the registration is of
    /// every I_T nexus of its initiator port, as if made through each port.
    All,
}

impl TargetPorts {
    /// Whether the target port with this relative target port identifier is one of them.
    pub(crate) fn includes(self, port: u16) -> bool {
        match self {
            TargetPorts::One(p) => p == port,
            TargetPorts::All => true,
        }
    }

    /// Whether some target port is in both.
    fn overlaps(self, other: TargetPorts) -> bool {
        match (self, other) {
            (TargetPorts::One(a), TargetPorts::One(b)) => a == b,
            _ => true,
        }
    }
}

/// An I_T nexus as reservations see it: the initiator port and the relative target port
/// identifier of the target port it came through (this gateway's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ItNexus<'a> {
    pub(crate) initiator: &'a InitiatorPort,
    pub(crate) target: u16,
}

/// Whom a registration (and the reservation it holds, and a unit attention kept for
/// other gateways) belongs to: an initiator port through one target port or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registrant {
    pub(crate) port: InitiatorPort,
    pub(crate) target: TargetPorts,
}

impl Registrant {
    /// Whether `it` is one of the I_T nexuses this stands for.
    pub(crate) fn covers(&self, it: ItNexus<'_>) -> bool {
        self.port == *it.initiator && self.target.includes(it.target)
    }

    /// Whether some I_T nexus is both this one's and `other`'s.
    fn overlaps(&self, other: &Registrant) -> bool {
        self.port == other.port && self.target.overlaps(other.target)
    }
}

/// One registration: of one I_T nexus, or with ALL_TG_PT of every I_T nexus of its
/// initiator port (one record, changed and removed as one, as LIO does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) who: Registrant,
    pub(crate) key: u64,
}

/// The persistent reservation, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reservation {
    /// The registrant that made it (the I_T nexus, or every I_T nexus of an initiator
    /// port registered with ALL_TG_PT). For the all-registrants types every registrant
    /// holds it (SPC-4 5.13.9) and the reservation key reported is 0.
    pub(crate) holder: Registrant,
    pub(crate) kind: PrType,
}

/// Everything SPC-4 keeps for persistent reservations on one logical unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PrState {
    /// PRGENERATION: counts the changes to registrations.
    pub(crate) generation: u32,
    /// In registration order (READ KEYS and READ FULL STATUS list them so).
    pub(crate) registrations: Vec<Registration>,
    pub(crate) reservation: Option<Reservation>,
    /// Activate persist through power loss: the state is kept on the volume.
    pub(crate) aptpl: bool,
    /// Shared state only: counts every change written to the volume, so a gateway knows
    /// which writes it admitted before a change (the fence epoch, `ScsiTarget`).
    pub(crate) version: u64,
    /// Shared state only: the unit attentions of the last [`KEPT_NOTICES`] versions, for
    /// the gateways that did not run the command to raise on their own nexuses.
    pub(crate) notices: Vec<Notice>,
    /// Shared state only: the holder of a RESERVE(6/10) reservation, made through one of
    /// the gateways (on an LU of one gateway the holder is a nexus of the core's own).
    /// Never kept across a restart of every gateway (it is not a persistent reservation).
    pub(crate) legacy: Option<LegacyHolder>,
    /// Shared state only: the resets of the LU made through any gateway (LOGICAL UNIT
    /// RESET, target resets), so the other gateways' nexuses learn of them too.
    pub(crate) resets: Resets,
}

/// How many resets of a shared LU the gateways have written, and the unit attention of
/// the last one: a gateway that loads a larger count raises it on every one of its
/// nexuses of the LU and aborts their tasks (SAM-5 6.3.3, 7.8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resets {
    pub(crate) count: u64,
    /// `LogicalUnitReset` (29h/03h) or `PowerOnReset` (29h/00h, a target reset).
    pub(crate) ua: Option<UnitAttention>,
}

/// The saved name of a reset's unit attention; one not known here is read as the
/// general 29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
fn reset_name(ua: UnitAttention) -> &'static str {
    match ua {
        UnitAttention::LogicalUnitReset => "logical-unit",
        _ => "target",
    }
}

fn reset_from_name(name: &str) -> UnitAttention {
    match name {
        "logical-unit" => UnitAttention::LogicalUnitReset,
        _ => UnitAttention::PowerOnReset,
    }
}

/// The first words of the lines of the saved form that gateways of releases before
/// RESERVE(6/10) and resets were shared cannot read (their parser refuses a line it does
/// not know): kept in a metadata object of their own ([`split_for_old_readers`]).
const LU_LINES: [&str; 2] = ["legacy-reserve", "reset"];

/// The first line of that object.
const LU_HEADER: &str = "glfs-iscsi-pr-lu 1";

/// Splits a saved shared state ([`PrState::encode`]) into what `<lun>.pr` keeps, which a
/// gateway of an earlier release reads (`glfs-iscsi-pr 2` without the lines it does not
/// know), and what the object beside it keeps (`glfs-iscsi-pr-lu 1` and those lines;
/// empty when there are none).
pub(crate) fn split_for_old_readers(saved: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let Ok(text) = std::str::from_utf8(saved) else {
        return (saved.to_vec(), Vec::new());
    };
    let (mut pr, mut lu) = (String::new(), String::new());
    for line in text.lines() {
        let first = line.split(' ').next().unwrap_or("");
        let to = if LU_LINES.contains(&first) {
            &mut lu
        } else {
            &mut pr
        };
        to.push_str(line);
        to.push('\n');
    }
    if !lu.is_empty() {
        lu.insert_str(0, &format!("{LU_HEADER}\n"));
    }
    (pr.into_bytes(), lu.into_bytes())
}

/// Joins what [`split_for_old_readers`] kept apart, as read back (`None`: no such
/// object): the saved state to load. Lines of the second object that this release does
/// not know are skipped (a later release may add lines there that earlier ones can do
/// without); one whose first line is not [`LU_HEADER`] is not ours.
pub(crate) fn join_for_reading(pr: Option<&[u8]>, lu: Option<&[u8]>) -> Option<Option<Vec<u8>>> {
    let Some(lu) = lu.filter(|b| !b.is_empty()) else {
        return Some(pr.map(<[u8]>::to_vec));
    };
    let text = std::str::from_utf8(lu).ok()?;
    let mut lines = text.lines();
    if lines.next()? != LU_HEADER {
        return None;
    }
    let mut joined = match pr {
        Some(pr) => pr.to_vec(),
        None => b"glfs-iscsi-pr 2\n".to_vec(),
    };
    if !joined.is_empty() && !joined.ends_with(b"\n") {
        joined.push(b'\n');
    }
    for line in lines {
        if LU_LINES.contains(&line.split(' ').next().unwrap_or("")) {
            joined.extend_from_slice(line.as_bytes());
            joined.push(b'\n');
        }
    }
    Some(Some(joined))
}

/// Who holds a RESERVE(6/10) reservation of a shared LU: the I_T nexus (initiator port,
/// relative target port) of a session of gateway `gateway`, made by the change to version
/// `since` (two holds by the same nexus are told apart by it). Only that gateway knows the
/// session; it releases the reservation when the session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LegacyHolder {
    pub(crate) gateway: String,
    pub(crate) since: u64,
    pub(crate) port: InitiatorPort,
    pub(crate) target: u16,
}

/// How many versions' notices the shared state keeps: a gateway that misses more changes
/// than this between two loads cannot tell whom the oldest concerned, and raises every
/// reservation unit attention on all its nexuses instead (`Reservations::load_shared`).
pub(crate) const KEPT_NOTICES: u64 = 16;

/// A unit attention that a change of the shared state gave the I_T nexuses of one
/// registrant, kept with the state for the other gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    /// The version the change made.
    pub(crate) version: u64,
    pub(crate) ua: UnitAttention,
    /// PREEMPT AND ABORT: the registrant's tasks on the LU are aborted too.
    pub(crate) abort: bool,
    /// The I_T nexuses told.
    pub(crate) to: Registrant,
}

/// The saved name of a unit attention a reservation change raises.
fn notice_name(ua: UnitAttention) -> Option<&'static str> {
    match ua {
        UnitAttention::ReservationsPreempted => Some("reservations-preempted"),
        UnitAttention::ReservationsReleased => Some("reservations-released"),
        UnitAttention::RegistrationsPreempted => Some("registrations-preempted"),
        _ => None,
    }
}

fn notice_from_name(name: &str) -> Option<UnitAttention> {
    [
        UnitAttention::ReservationsPreempted,
        UnitAttention::ReservationsReleased,
        UnitAttention::RegistrationsPreempted,
    ]
    .into_iter()
    .find(|&ua| notice_name(ua) == Some(name))
}

/// The result of one PERSISTENT RESERVE OUT service action.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// RESERVATION CONFLICT.
    Conflict,
    /// CHECK CONDITION with this sense.
    Sense(Sense),
    /// ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION.
    InvalidRelease,
    /// GOOD. `changed`: the state differs; `notices`: unit attentions for the I_T nexuses
    /// of these registrants (except the nexus that sent the command).
    Done {
        changed: bool,
        notices: Vec<(Registrant, UnitAttention)>,
    },
}

fn done(changed: bool) -> Outcome {
    Outcome::Done {
        changed,
        notices: Vec::new(),
    }
}

impl PrState {
    /// A change of the shared state: the next version, with its notices (the older
    /// versions' beyond [`KEPT_NOTICES`] are dropped).
    pub(crate) fn bump_version(&mut self, notices: &[(Registrant, UnitAttention)], abort: bool) {
        self.version = self.version.wrapping_add(1);
        let version = self.version;
        self.notices
            .retain(|n| version.wrapping_sub(n.version) < KEPT_NOTICES);
        self.notices.extend(notices.iter().map(|(to, ua)| Notice {
            version,
            ua: *ua,
            abort: abort && *ua == UnitAttention::RegistrationsPreempted,
            to: to.clone(),
        }));
    }

    pub(crate) fn is_active(&self) -> bool {
        !self.registrations.is_empty() || self.reservation.is_some()
    }

    /// The shared state as the logical unit has it after a power on, when every gateway
    /// that exported it had stopped (`None`: the same as this). SPC-4 5.14.5: with APTPL
    /// the registrations and the persistent reservation are kept; without it they are
    /// gone and PRGENERATION starts at 0 again. A RESERVE(6/10) never outlives the power
    /// (SPC-2 5.5.1), and the notices were for nexuses that are gone. The version goes on
    /// counting (a version never comes back with another meaning).
    pub(crate) fn at_power_on(&self) -> Option<PrState> {
        let drops = self.legacy.is_some() || (!self.aptpl && self.is_active());
        if !drops {
            return None;
        }
        let mut st = if self.aptpl {
            PrState {
                generation: self.generation,
                registrations: self.registrations.clone(),
                reservation: self.reservation.clone(),
                aptpl: true,
                ..PrState::default()
            }
        } else {
            PrState::default()
        };
        st.version = self.version.wrapping_add(1);
        // The count goes on too: a gateway compares it with the one it loaded last.
        st.resets = self.resets;
        Some(st)
    }

    /// The registration of the I_T nexus `it`, if it is registered.
    pub(crate) fn registration(&self, it: ItNexus<'_>) -> Option<&Registration> {
        self.registrations.iter().find(|r| r.who.covers(it))
    }

    /// The key of the registration of `who`.
    pub(crate) fn key_of(&self, who: &Registrant) -> Option<u64> {
        self.registrations
            .iter()
            .find(|r| r.who == *who)
            .map(|r| r.key)
    }

    /// Whether the registration of `who` holds the reservation.
    pub(crate) fn is_holder(&self, who: &Registrant) -> bool {
        match &self.reservation {
            None => false,
            Some(r) if r.kind.all_registrants() => self.key_of(who).is_some(),
            Some(r) => r.holder == *who,
        }
    }

    /// Whether a command from the I_T nexus `it` may run: SPC-4 table 62 for a command
    /// that reads (`read`) or one that does anything else not always allowed.
    pub(crate) fn allows(&self, it: ItNexus<'_>, read: bool) -> bool {
        let Some(r) = &self.reservation else {
            return true;
        };
        let registered = self.registration(it);
        if registered.is_some_and(|reg| self.is_holder(&reg.who)) {
            return true;
        }
        if r.kind.registrants_only() && registered.is_some() {
            return true;
        }
        read && !r.kind.exclusive_access()
    }

    fn notices_for_others(
        &self,
        except: &Registrant,
        ua: UnitAttention,
    ) -> Vec<(Registrant, UnitAttention)> {
        self.registrations
            .iter()
            .filter(|r| r.who != *except)
            .map(|r| (r.who.clone(), ua))
            .collect()
    }

    /// Removes the registration of `who`, releasing a reservation it held alone (SPC-4
    /// 5.13.10.2: a released Registrants Only reservation is a UNIT ATTENTION for the other
    /// registrants). Returns those notices.
    fn unregister(&mut self, who: &Registrant) -> Vec<(Registrant, UnitAttention)> {
        self.registrations.retain(|r| r.who != *who);
        let mut notices = Vec::new();
        let release = match &self.reservation {
            Some(r) if r.kind.all_registrants() => self.registrations.is_empty(),
            Some(r) => r.holder == *who,
            None => false,
        };
        if release {
            let kind = self.reservation.take().map(|r| r.kind);
            if kind.is_some_and(|k| k.registrants_only()) {
                notices = self.notices_for_others(who, UnitAttention::ReservationsReleased);
            }
        }
        notices
    }

    /// Carries out one PERSISTENT RESERVE OUT service action from the I_T nexus `it`;
    /// `ports` are the relative target port identifiers of the SCSI target device (what
    /// REGISTER AND MOVE may name).
    pub(crate) fn apply(&mut self, it: ItNexus<'_>, req: &PrOut, ports: &[u16]) -> Outcome {
        let mine = self.registration(it).cloned();
        match req.action {
            ServiceAction::Register | ServiceAction::RegisterAndIgnore => {
                let ignore = req.action == ServiceAction::RegisterAndIgnore;
                match mine {
                    None => {
                        if !ignore && req.key != 0 {
                            return Outcome::Conflict;
                        }
                        if req.sa_key == 0 {
                            // SPC-4 5.13.7: nothing to register; GOOD.
                            return done(false);
                        }
                        if let Err(outcome) = self.register(it, req, ignore) {
                            return outcome;
                        }
                    }
                    Some(reg) => {
                        if !ignore && req.key != reg.key {
                            return Outcome::Conflict;
                        }
                        if !req.spec_ports.is_empty() {
                            return Outcome::Sense(Sense::invalid_field_in_parameter_list(20));
                        }
                        let widen = req.all_tg_pt && reg.who.target != TargetPorts::All;
                        if widen {
                            return self.reregister_every_port(it, req, ignore, ports);
                        }
                        // Without ALL_TG_PT, or registered with it already: the one record
                        // changes, whichever ports it covers (a registration made with
                        // ALL_TG_PT is not split into one per port).
                        if req.sa_key == 0 {
                            let notices = self.unregister(&reg.who);
                            self.aptpl = req.aptpl;
                            self.generation = self.generation.wrapping_add(1);
                            return Outcome::Done {
                                changed: true,
                                notices,
                            };
                        }
                        for r in self.registrations.iter_mut().filter(|r| r.who == reg.who) {
                            r.key = req.sa_key;
                        }
                    }
                }
                self.aptpl = req.aptpl;
                self.generation = self.generation.wrapping_add(1);
                done(true)
            }
            _ => {
                let Some(mine) = mine.filter(|reg| reg.key == req.key) else {
                    return Outcome::Conflict;
                };
                match req.action {
                    ServiceAction::Reserve => self.reserve(&mine.who, req),
                    ServiceAction::Release => self.release(&mine.who, req),
                    ServiceAction::Clear => {
                        let notices = self
                            .notices_for_others(&mine.who, UnitAttention::ReservationsPreempted);
                        self.registrations.clear();
                        self.reservation = None;
                        self.generation = self.generation.wrapping_add(1);
                        Outcome::Done {
                            changed: true,
                            notices,
                        }
                    }
                    ServiceAction::RegisterAndMove => {
                        self.register_and_move(it, &mine.who, req, ports)
                    }
                    _ => self.preempt(&mine.who, req),
                }
            }
        }
    }

    /// REGISTER or REGISTER AND IGNORE EXISTING KEY from the unregistered I_T nexus `it`
    /// with a key: its registration (of every target port with ALL_TG_PT), and SPEC_I_PT's
    /// initiator ports through the same target ports.
    fn register(&mut self, it: ItNexus<'_>, req: &PrOut, ignore: bool) -> Result<(), Outcome> {
        let target = if req.all_tg_pt {
            TargetPorts::All
        } else {
            TargetPorts::One(it.target)
        };
        let who = Registrant {
            port: it.initiator.clone(),
            target,
        };
        // With ALL_TG_PT the initiator port may be registered through other target ports
        // already: as if the command had come through each of them, REGISTER conflicts
        // there (its key is not 0) and REGISTER AND IGNORE EXISTING KEY replaces them.
        let replaced: Vec<Registrant> = self
            .registrations
            .iter()
            .filter(|r| r.who.overlaps(&who))
            .map(|r| r.who.clone())
            .collect();
        if !replaced.is_empty() && !ignore {
            return Err(Outcome::Conflict);
        }
        let mut new = vec![who.clone()];
        for other in &req.spec_ports {
            let named = Registrant {
                port: other.clone(),
                target,
            };
            if self.registrations.iter().any(|r| r.who.overlaps(&named)) {
                // An I_T nexus named that is registered already.
                return Err(Outcome::Conflict);
            }
            if !new.contains(&named) {
                new.push(named);
            }
        }
        if self.registrations.len() - replaced.len() + new.len() > MAX_REGISTRATIONS {
            return Err(Outcome::Sense(INSUFFICIENT_REGISTRATION_RESOURCES));
        }
        if let Some(r) = &mut self.reservation {
            if replaced.contains(&r.holder) {
                r.holder = who;
            }
        }
        self.registrations.retain(|r| !replaced.contains(&r.who));
        self.registrations
            .extend(new.into_iter().map(|who| Registration {
                who,
                key: req.sa_key,
            }));
        Ok(())
    }

    /// REGISTER or REGISTER AND IGNORE EXISTING KEY with ALL_TG_PT from the I_T nexus `it`,
    /// registered through its own target port only. SPC-4 6.16.3: the registration is
    /// made "as if the same registration request had been received individually through
    /// each target port" (`ports`, every one the device server knows). Through a port
    /// where `it`'s initiator port is registered, the request changes (or, with SERVICE
    /// ACTION RESERVATION KEY 0, removes) that registration; through one where it is not,
    /// it registers it (SPC-4 5.13.7). REGISTER checks the RESERVATION KEY through every
    /// port first: an unregistered one conflicts (the key is not 0 there), as does one
    /// registered under another key; REGISTER AND IGNORE EXISTING KEY checks nothing.
    /// The initiator port's records are replaced by one of every target port.
    fn reregister_every_port(
        &mut self,
        it: ItNexus<'_>,
        req: &PrOut,
        ignore: bool,
        ports: &[u16],
    ) -> Outcome {
        let every = Registrant {
            port: it.initiator.clone(),
            target: TargetPorts::All,
        };
        if !ignore {
            let through = |target| ItNexus {
                initiator: it.initiator,
                target,
            };
            let all_match = std::iter::once(it.target)
                .chain(ports.iter().copied())
                .all(|p| {
                    self.registration(through(p))
                        .is_some_and(|r| r.key == req.key)
                });
            if !all_match {
                return Outcome::Conflict;
            }
        }
        let replaced: Vec<Registrant> = self
            .registrations
            .iter()
            .filter(|r| r.who.overlaps(&every))
            .map(|r| r.who.clone())
            .collect();
        let mut notices = Vec::new();
        if req.sa_key == 0 {
            for who in &replaced {
                notices.extend(self.unregister(who));
            }
            // Each record's notices went to the others: none to the initiator port's own.
            notices.retain(|(to, _)| !replaced.contains(to));
        } else {
            if let Some(r) = &mut self.reservation {
                if replaced.contains(&r.holder) {
                    r.holder = every.clone();
                }
            }
            let at = self
                .registrations
                .iter()
                .position(|r| replaced.contains(&r.who))
                .unwrap_or(self.registrations.len());
            self.registrations.retain(|r| !replaced.contains(&r.who));
            self.registrations.insert(
                at.min(self.registrations.len()),
                Registration {
                    who: every,
                    key: req.sa_key,
                },
            );
        }
        self.aptpl = req.aptpl;
        self.generation = self.generation.wrapping_add(1);
        Outcome::Done {
            changed: true,
            notices,
        }
    }

    /// RESERVE (SPC-4 5.13.9) by the registration `mine`.
    fn reserve(&mut self, mine: &Registrant, req: &PrOut) -> Outcome {
        let kind = match req.kind {
            Some(kind) if req.scope == 0 => kind,
            _ => return Outcome::Sense(Sense::invalid_field_in_cdb(2, None)),
        };
        match &self.reservation {
            None => {
                self.reservation = Some(Reservation {
                    holder: mine.clone(),
                    kind,
                });
                done(true)
            }
            Some(r) if self.is_holder(mine) && r.kind == kind => done(false),
            Some(_) => Outcome::Conflict,
        }
    }

    /// RELEASE (SPC-4 5.13.10) by the registration `mine`.
    fn release(&mut self, mine: &Registrant, req: &PrOut) -> Outcome {
        let Some(r) = &self.reservation else {
            return done(false);
        };
        if !self.is_holder(mine) {
            return done(false);
        }
        if req.scope != 0 || req.kind != Some(r.kind) {
            return Outcome::InvalidRelease;
        }
        let kind = r.kind;
        self.reservation = None;
        // SPC-4 5.13.10.2: other registrants learn of a released Registrants Only or All
        // Registrants reservation.
        let notices = if kind.registrants_only() {
            self.notices_for_others(mine, UnitAttention::ReservationsReleased)
        } else {
            Vec::new()
        };
        Outcome::Done {
            changed: true,
            notices,
        }
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 5.13.11.2) by the registration `mine`. The
    /// preempted nexuses' later commands conflict; for PREEMPT AND ABORT the caller also
    /// queues their task sets for the transport to abort (`Nexuses::queue_abort`).
    fn preempt(&mut self, mine: &Registrant, req: &PrOut) -> Outcome {
        let kind = match req.kind {
            Some(kind) if req.scope == 0 => kind,
            _ => return Outcome::Sense(Sense::invalid_field_in_cdb(2, None)),
        };
        let preempts_reservation = match &self.reservation {
            None => false,
            Some(r) if r.kind.all_registrants() => req.sa_key == 0,
            Some(r) => self.key_of(&r.holder) == Some(req.sa_key),
        };
        if !preempts_reservation && req.sa_key == 0 {
            return Outcome::Sense(Sense::invalid_field_in_parameter_list(8));
        }
        let victims: Vec<Registrant> = self
            .registrations
            .iter()
            .filter(|r| {
                // All Registrants with key 0: every other registrant goes.
                let all = preempts_reservation && req.sa_key == 0;
                r.who != *mine && (all || r.key == req.sa_key)
            })
            .map(|r| r.who.clone())
            .collect();
        if victims.is_empty() && !preempts_reservation && self.key_of(mine) != Some(req.sa_key) {
            // SPC-4 5.13.11.2.3: no registration with that key.
            return Outcome::Conflict;
        }
        let mut notices: Vec<(Registrant, UnitAttention)> = victims
            .iter()
            .map(|who| (who.clone(), UnitAttention::RegistrationsPreempted))
            .collect();
        self.registrations.retain(|r| !victims.contains(&r.who));
        if preempts_reservation {
            let old = self.reservation.replace(Reservation {
                holder: mine.clone(),
                kind,
            });
            if old.is_some_and(|o| o.kind != kind) {
                // Type changed: the remaining registrants are told the old one is gone.
                notices.extend(self.notices_for_others(mine, UnitAttention::ReservationsReleased));
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Outcome::Done {
            changed: true,
            notices,
        }
    }

    /// REGISTER AND MOVE (SPC-4 5.13.8): the holder registers the I_T nexus of another
    /// initiator port and the target port `req.move_target` (one of `ports`) and hands it
    /// the reservation.
    fn register_and_move(
        &mut self,
        it: ItNexus<'_>,
        mine: &Registrant,
        req: &PrOut,
        ports: &[u16],
    ) -> Outcome {
        let Some(r) = &self.reservation else {
            return Outcome::Conflict;
        };
        if r.kind.all_registrants() || r.holder != *mine {
            return Outcome::Conflict;
        }
        let Some(dest) = req.spec_ports.first() else {
            return Outcome::Sense(Sense::invalid_field_in_parameter_list(24));
        };
        if dest == it.initiator {
            // The TransportID names the sender's own initiator port.
            return Outcome::Sense(Sense::invalid_field_in_parameter_list(24));
        }
        if !ports.contains(&req.move_target) {
            // No target port with that RELATIVE TARGET PORT IDENTIFIER.
            return Outcome::Sense(Sense::invalid_field_in_parameter_list(18));
        }
        if req.sa_key == 0 {
            return Outcome::Sense(Sense::invalid_field_in_parameter_list(8));
        }
        let kind = r.kind;
        let dest_nexus = ItNexus {
            initiator: dest,
            target: req.move_target,
        };
        let holder = match self
            .registrations
            .iter_mut()
            .find(|r| r.who.covers(dest_nexus))
        {
            Some(reg) => {
                reg.key = req.sa_key;
                reg.who.clone()
            }
            None => {
                if self.registrations.len() >= MAX_REGISTRATIONS {
                    return Outcome::Sense(INSUFFICIENT_REGISTRATION_RESOURCES);
                }
                let who = Registrant {
                    port: dest.clone(),
                    target: TargetPorts::One(req.move_target),
                };
                self.registrations.push(Registration {
                    who: who.clone(),
                    key: req.sa_key,
                });
                who
            }
        };
        self.reservation = Some(Reservation { holder, kind });
        if req.unreg {
            self.registrations.retain(|r| r.who != *mine);
        }
        self.aptpl = req.aptpl;
        self.generation = self.generation.wrapping_add(1);
        done(true)
    }

    /// The saved form: a versioned, line-oriented text, so an operator can read it on the
    /// volume. `glfs-iscsi-pr 2`, then `generation N`, `aptpl 0|1`, one `register KEY
    /// PORT NAME ISID` per registration in order, and `reserve TYPE PORT NAME ISID`, where
    /// PORT is the relative target port identifier of a registration of one I_T nexus or
    /// `*` for one of every target port (ALL_TG_PT); a state shared by gateways adds
    /// `version N` and one `notice VERSION UA ABORT PORT NAME ISID` per unit attention of
    /// its last changes, and while a RESERVE(6/10) is held through one of the gateways
    /// `legacy-reserve GATEWAY VERSION PORT NAME ISID`, and once the LU was reset through a
    /// gateway `reset COUNT logical-unit|target` (these two kinds of line are kept apart
    /// from the rest on the volume, [`split_for_old_readers`]). Version 1 (before target ports were told
    /// apart) had no PORT, and
    /// its registrations covered every target port: it is read so.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let who = |w: &Registrant| {
            let isid: String = w.port.isid.iter().map(|b| format!("{b:02x}")).collect();
            let port = match w.target {
                TargetPorts::One(p) => p.to_string(),
                TargetPorts::All => "*".to_string(),
            };
            format!("{port} {} {isid}", w.port.name)
        };
        let mut s = String::from("glfs-iscsi-pr 2\n");
        s += &format!(
            "generation {}\naptpl {}\n",
            self.generation,
            u8::from(self.aptpl)
        );
        for r in &self.registrations {
            s += &format!("register {:016x} {}\n", r.key, who(&r.who));
        }
        if let Some(r) = &self.reservation {
            s += &format!("reserve {} {}\n", r.kind as u8, who(&r.holder));
        }
        if let Some(h) = &self.legacy {
            let holder = Registrant {
                port: h.port.clone(),
                target: TargetPorts::One(h.target),
            };
            s += &format!(
                "legacy-reserve {} {} {}\n",
                h.gateway,
                h.since,
                who(&holder)
            );
        }
        if self.resets.count != 0 {
            s += &format!(
                "reset {} {}\n",
                self.resets.count,
                reset_name(self.resets.ua.unwrap_or(UnitAttention::PowerOnReset))
            );
        }
        if self.version != 0 {
            s += &format!("version {}\n", self.version);
        }
        for n in &self.notices {
            if let Some(name) = notice_name(n.ua) {
                s += &format!(
                    "notice {} {} {} {}\n",
                    n.version,
                    name,
                    u8::from(n.abort),
                    who(&n.to)
                );
            }
        }
        s.into_bytes()
    }

    /// Reads the saved form back (version 1 or 2); `None` when it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<PrState> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        let v2 = match lines.next()? {
            "glfs-iscsi-pr 1" => false,
            "glfs-iscsi-pr 2" => true,
            _ => return None,
        };
        let isid = |s: &str| -> Option<[u8; 6]> {
            if s.len() != 12 {
                return None;
            }
            let mut b = [0u8; 6];
            for (i, x) in b.iter_mut().enumerate() {
                *x = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(b)
        };
        // `[PORT] NAME ISID` at the end of a line: in version 1 every registrant covers
        // every target port.
        let who = |f: &[&str]| -> Option<Registrant> {
            let (target, name, id) = match (v2, f) {
                (true, [port, name, id]) => (target_ports(port)?, name, id),
                (false, [name, id]) => (TargetPorts::All, name, id),
                _ => return None,
            };
            Some(Registrant {
                port: InitiatorPort {
                    name: (*name).to_string(),
                    isid: isid(id)?,
                },
                target,
            })
        };
        let mut st = PrState::default();
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["generation", n] => st.generation = n.parse().ok()?,
                ["aptpl", a] => st.aptpl = *a == "1",
                // Version 1 kept the ALL_TG_PT bit as given (its field 2), with no port.
                ["register", key, rest @ ..] => {
                    let rest = if v2 { rest } else { rest.get(1..)? };
                    st.registrations.push(Registration {
                        key: u64::from_str_radix(key, 16).ok()?,
                        who: who(rest)?,
                    })
                }
                ["reserve", kind, rest @ ..] => {
                    st.reservation = Some(Reservation {
                        kind: PrType::from_code(kind.parse().ok()?)?,
                        holder: who(rest)?,
                    })
                }
                ["legacy-reserve", gateway, since, rest @ ..] if v2 => {
                    let holder = who(rest)?;
                    let TargetPorts::One(target) = holder.target else {
                        return None;
                    };
                    st.legacy = Some(LegacyHolder {
                        gateway: (*gateway).to_string(),
                        since: since.parse().ok()?,
                        port: holder.port,
                        target,
                    });
                }
                ["reset", count, kind, ..] if v2 => {
                    st.resets = Resets {
                        count: count.parse().ok()?,
                        ua: Some(reset_from_name(kind)),
                    }
                }
                ["version", n] => st.version = n.parse().ok()?,
                ["notice", version, ua, abort, rest @ ..] => st.notices.push(Notice {
                    version: version.parse().ok()?,
                    ua: notice_from_name(ua)?,
                    abort: *abort == "1",
                    to: who(rest)?,
                }),
                [""] => {}
                _ => return None,
            }
        }
        Some(st)
    }
}

/// A saved PORT: a relative target port identifier (1 to 65535) or `*`, every port.
fn target_ports(s: &str) -> Option<TargetPorts> {
    if s == "*" {
        return Some(TargetPorts::All);
    }
    s.parse().ok().filter(|&p| p != 0).map(TargetPorts::One)
}
