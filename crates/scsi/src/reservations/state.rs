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

/// One registered I_T nexus (initiator port; the target port is the only one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) port: InitiatorPort,
    pub(crate) key: u64,
    pub(crate) all_tg_pt: bool,
}

/// The persistent reservation, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reservation {
    /// The registrant that made it. For the all-registrants types every registrant holds it
    /// (SPC-4 5.13.9) and the reservation key reported is 0.
    pub(crate) holder: InitiatorPort,
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
}

/// How many versions' notices the shared state keeps: a gateway that misses more changes
/// than this between two loads misses their unit attentions.
pub(crate) const KEPT_NOTICES: u64 = 16;

/// A unit attention that a change of the shared state gave the nexuses of one initiator
/// port, kept with the state for the other gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    /// The version the change made.
    pub(crate) version: u64,
    pub(crate) ua: UnitAttention,
    /// PREEMPT AND ABORT: the port's tasks on the LU are aborted too.
    pub(crate) abort: bool,
    pub(crate) port: InitiatorPort,
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
    /// GOOD. `changed`: the state differs; `notices`: unit attentions for the nexuses of
    /// these ports (except the nexus that sent the command).
    Done {
        changed: bool,
        notices: Vec<(InitiatorPort, UnitAttention)>,
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
    pub(crate) fn bump_version(&mut self, notices: &[(InitiatorPort, UnitAttention)], abort: bool) {
        self.version = self.version.wrapping_add(1);
        let version = self.version;
        self.notices
            .retain(|n| version.wrapping_sub(n.version) < KEPT_NOTICES);
        self.notices.extend(notices.iter().map(|(port, ua)| Notice {
            version,
            ua: *ua,
            abort: abort && *ua == UnitAttention::RegistrationsPreempted,
            port: port.clone(),
        }));
    }

    pub(crate) fn is_active(&self) -> bool {
        !self.registrations.is_empty() || self.reservation.is_some()
    }

    pub(crate) fn key_of(&self, port: &InitiatorPort) -> Option<u64> {
        self.registrations
            .iter()
            .find(|r| r.port == *port)
            .map(|r| r.key)
    }

    /// Whether `port` holds the reservation.
    pub(crate) fn holds(&self, port: &InitiatorPort) -> bool {
        match &self.reservation {
            None => false,
            Some(r) if r.kind.all_registrants() => self.key_of(port).is_some(),
            Some(r) => r.holder == *port,
        }
    }

    /// Whether a command from `port` may run: SPC-4 table 62 for a command that reads
    /// (`read`) or one that does anything else not always allowed.
    pub(crate) fn allows(&self, port: &InitiatorPort, read: bool) -> bool {
        let Some(r) = &self.reservation else {
            return true;
        };
        if self.holds(port) {
            return true;
        }
        if r.kind.registrants_only() && self.key_of(port).is_some() {
            return true;
        }
        read && !r.kind.exclusive_access()
    }

    fn notices_for_others(
        &self,
        except: &InitiatorPort,
        ua: UnitAttention,
    ) -> Vec<(InitiatorPort, UnitAttention)> {
        self.registrations
            .iter()
            .filter(|r| r.port != *except)
            .map(|r| (r.port.clone(), ua))
            .collect()
    }

    /// Removes the registration of `port`, releasing a reservation it held alone (SPC-4
    /// 5.13.10.2: a released Registrants Only reservation is a UNIT ATTENTION for the other
    /// registrants). Returns those notices.
    fn unregister(&mut self, port: &InitiatorPort) -> Vec<(InitiatorPort, UnitAttention)> {
        self.registrations.retain(|r| r.port != *port);
        let mut notices = Vec::new();
        let release = match &self.reservation {
            Some(r) if r.kind.all_registrants() => self.registrations.is_empty(),
            Some(r) => r.holder == *port,
            None => false,
        };
        if release {
            let kind = self.reservation.take().map(|r| r.kind);
            if kind.is_some_and(|k| k.registrants_only()) {
                notices = self.notices_for_others(port, UnitAttention::ReservationsReleased);
            }
        }
        notices
    }

    /// Carries out one PERSISTENT RESERVE OUT service action from `port`.
    pub(crate) fn apply(&mut self, port: &InitiatorPort, req: &PrOut) -> Outcome {
        let registered = self.key_of(port);
        match req.action {
            ServiceAction::Register | ServiceAction::RegisterAndIgnore => {
                let ignore = req.action == ServiceAction::RegisterAndIgnore;
                match registered {
                    None => {
                        if !ignore && req.key != 0 {
                            return Outcome::Conflict;
                        }
                        if req.sa_key == 0 {
                            // SPC-4 5.13.7: nothing to register; GOOD.
                            return done(false);
                        }
                        let mut ports = vec![port.clone()];
                        for other in &req.spec_ports {
                            if self.key_of(other).is_some() {
                                // An initiator port named twice or already registered.
                                return Outcome::Conflict;
                            }
                            if !ports.contains(other) {
                                ports.push(other.clone());
                            }
                        }
                        if self.registrations.len() + ports.len() > MAX_REGISTRATIONS {
                            return Outcome::Sense(INSUFFICIENT_REGISTRATION_RESOURCES);
                        }
                        for p in ports {
                            self.registrations.push(Registration {
                                port: p,
                                key: req.sa_key,
                                all_tg_pt: req.all_tg_pt,
                            });
                        }
                    }
                    Some(key) => {
                        if !ignore && req.key != key {
                            return Outcome::Conflict;
                        }
                        if !req.spec_ports.is_empty() {
                            return Outcome::Sense(Sense::invalid_field_in_parameter_list(20));
                        }
                        if req.sa_key == 0 {
                            let notices = self.unregister(port);
                            self.aptpl = req.aptpl;
                            self.generation = self.generation.wrapping_add(1);
                            return Outcome::Done {
                                changed: true,
                                notices,
                            };
                        }
                        for r in self.registrations.iter_mut().filter(|r| r.port == *port) {
                            r.key = req.sa_key;
                        }
                    }
                }
                self.aptpl = req.aptpl;
                self.generation = self.generation.wrapping_add(1);
                done(true)
            }
            _ if registered.is_none() => Outcome::Conflict,
            _ if registered != Some(req.key) => Outcome::Conflict,
            ServiceAction::Reserve => {
                let kind = match req.kind {
                    Some(kind) if req.scope == 0 => kind,
                    _ => return Outcome::Sense(Sense::invalid_field_in_cdb(2, None)),
                };
                match &self.reservation {
                    None => {
                        self.reservation = Some(Reservation {
                            holder: port.clone(),
                            kind,
                        });
                        done(true)
                    }
                    Some(r) if self.holds(port) && r.kind == kind => done(false),
                    Some(_) => Outcome::Conflict,
                }
            }
            ServiceAction::Release => {
                let Some(r) = &self.reservation else {
                    return done(false);
                };
                if !self.holds(port) {
                    return done(false);
                }
                if req.scope != 0 || req.kind != Some(r.kind) {
                    return Outcome::InvalidRelease;
                }
                let kind = r.kind;
                self.reservation = None;
                // SPC-4 5.13.10.2: other registrants learn of a released Registrants Only
                // or All Registrants reservation.
                let notices = if kind.registrants_only() {
                    self.notices_for_others(port, UnitAttention::ReservationsReleased)
                } else {
                    Vec::new()
                };
                Outcome::Done {
                    changed: true,
                    notices,
                }
            }
            ServiceAction::Clear => {
                let notices = self.notices_for_others(port, UnitAttention::ReservationsPreempted);
                self.registrations.clear();
                self.reservation = None;
                self.generation = self.generation.wrapping_add(1);
                Outcome::Done {
                    changed: true,
                    notices,
                }
            }
            ServiceAction::Preempt | ServiceAction::PreemptAndAbort => self.preempt(port, req),
            ServiceAction::RegisterAndMove => self.register_and_move(port, req),
        }
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 5.13.11.2). The preempted nexuses' later commands
    /// conflict; for PREEMPT AND ABORT the caller also queues their task sets for the
    /// transport to abort (`Nexuses::queue_abort`).
    fn preempt(&mut self, port: &InitiatorPort, req: &PrOut) -> Outcome {
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
        let victims: Vec<InitiatorPort> = self
            .registrations
            .iter()
            .filter(|r| {
                if preempts_reservation && req.sa_key == 0 {
                    // All Registrants with key 0: every other registrant goes.
                    r.port != *port
                } else {
                    r.key == req.sa_key && r.port != *port
                }
            })
            .map(|r| r.port.clone())
            .collect();
        if victims.is_empty() && !preempts_reservation {
            // SPC-4 5.13.11.2.3: no registration with that key.
            let own = self.key_of(port) == Some(req.sa_key);
            if !own {
                return Outcome::Conflict;
            }
        }
        let mut notices: Vec<(InitiatorPort, UnitAttention)> = victims
            .iter()
            .map(|p| (p.clone(), UnitAttention::RegistrationsPreempted))
            .collect();
        self.registrations.retain(|r| !victims.contains(&r.port));
        if preempts_reservation {
            let old = self.reservation.replace(Reservation {
                holder: port.clone(),
                kind,
            });
            if old.is_some_and(|o| o.kind != kind) {
                // Type changed: the remaining registrants are told the old one is gone.
                notices.extend(self.notices_for_others(port, UnitAttention::ReservationsReleased));
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Outcome::Done {
            changed: true,
            notices,
        }
    }

    /// REGISTER AND MOVE (SPC-4 5.13.8): the holder registers another initiator port and
    /// hands it the reservation.
    fn register_and_move(&mut self, port: &InitiatorPort, req: &PrOut) -> Outcome {
        let Some(r) = &self.reservation else {
            return Outcome::Conflict;
        };
        if r.kind.all_registrants() || r.holder != *port {
            return Outcome::Conflict;
        }
        let Some(dest) = req.spec_ports.first() else {
            return Outcome::Sense(Sense::invalid_field_in_parameter_list(24));
        };
        if dest == port {
            return Outcome::Sense(Sense::invalid_field_in_parameter_list(24));
        }
        if req.sa_key == 0 {
            return Outcome::Sense(Sense::invalid_field_in_parameter_list(8));
        }
        let kind = r.kind;
        let known = self.registrations.iter().any(|r| r.port == *dest);
        if !known && self.registrations.len() >= MAX_REGISTRATIONS {
            return Outcome::Sense(INSUFFICIENT_REGISTRATION_RESOURCES);
        }
        match self.registrations.iter_mut().find(|r| r.port == *dest) {
            Some(reg) => reg.key = req.sa_key,
            None => self.registrations.push(Registration {
                port: dest.clone(),
                key: req.sa_key,
                all_tg_pt: false,
            }),
        }
        self.reservation = Some(Reservation {
            holder: dest.clone(),
            kind,
        });
        if req.unreg {
            self.registrations.retain(|r| r.port != *port);
        }
        self.aptpl = req.aptpl;
        self.generation = self.generation.wrapping_add(1);
        done(true)
    }

    /// The saved form: a versioned, line-oriented text, so an operator can read it on the
    /// volume. `glfs-iscsi-pr 1`, then `generation N`, `aptpl 0|1`, one `register KEY
    /// ALL_TG_PT NAME ISID` per registration in order, and `reserve TYPE NAME ISID`; a state
    /// shared by gateways adds `version N` and one `notice VERSION UA ABORT NAME ISID` per
    /// unit attention of its last changes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let hex = |isid: &[u8; 6]| isid.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut s = String::from("glfs-iscsi-pr 1\n");
        s += &format!(
            "generation {}\naptpl {}\n",
            self.generation,
            u8::from(self.aptpl)
        );
        for r in &self.registrations {
            s += &format!(
                "register {:016x} {} {} {}\n",
                r.key,
                u8::from(r.all_tg_pt),
                r.port.name,
                hex(&r.port.isid)
            );
        }
        if let Some(r) = &self.reservation {
            s += &format!(
                "reserve {} {} {}\n",
                r.kind as u8,
                r.holder.name,
                hex(&r.holder.isid)
            );
        }
        if self.version != 0 {
            s += &format!("version {}\n", self.version);
        }
        for n in &self.notices {
            if let Some(name) = notice_name(n.ua) {
                s += &format!(
                    "notice {} {} {} {} {}\n",
                    n.version,
                    name,
                    u8::from(n.abort),
                    n.port.name,
                    hex(&n.port.isid)
                );
            }
        }
        s.into_bytes()
    }

    /// Reads the saved form back; `None` when it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<PrState> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "glfs-iscsi-pr 1" {
            return None;
        }
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
        let mut st = PrState::default();
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["generation", n] => st.generation = n.parse().ok()?,
                ["aptpl", a] => st.aptpl = *a == "1",
                ["register", key, atp, name, id] => st.registrations.push(Registration {
                    key: u64::from_str_radix(key, 16).ok()?,
                    all_tg_pt: *atp == "1",
                    port: InitiatorPort {
                        name: (*name).to_string(),
                        isid: isid(id)?,
                    },
                }),
                ["reserve", kind, name, id] => {
                    st.reservation = Some(Reservation {
                        kind: PrType::from_code(kind.parse().ok()?)?,
                        holder: InitiatorPort {
                            name: (*name).to_string(),
                            isid: isid(id)?,
                        },
                    })
                }
                ["version", n] => st.version = n.parse().ok()?,
                ["notice", version, ua, abort, name, id] => st.notices.push(Notice {
                    version: version.parse().ok()?,
                    ua: notice_from_name(ua)?,
                    abort: *abort == "1",
                    port: InitiatorPort {
                        name: (*name).to_string(),
                        isid: isid(id)?,
                    },
                }),
                [""] => {}
                _ => return None,
            }
        }
        Some(st)
    }
}
