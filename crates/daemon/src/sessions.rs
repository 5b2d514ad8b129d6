//! The portal's sessions, shared by every connection task: finds the session a new login
//! reinstates (RFC 7143 6.3.5: same InitiatorName and ISID, TSIH 0) and tells its
//! connection task to end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Bounds on what logins may take; a login over one is refused with a login reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Normal sessions per target.
    pub max_sessions_per_target: usize,
    /// Connections (sessions, with MaxConnections=1) per InitiatorName, discovery included.
    pub max_connections_per_initiator: usize,
    /// Unsolicited and immediate data all sessions together may hold: each normal session
    /// reserves the most it can hold ([`unsolicited_reservation`]: FirstBurstLength, or
    /// less as its keys allow, for every command it may have outstanding, the CmdSN window
    /// plus the immediate commands).
    pub unsolicited_data_budget: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_sessions_per_target: 256,
            max_connections_per_initiator: 64,
            // 64 sessions of the default 256 KiB FirstBurstLength over 144 commands.
            unsolicited_data_budget: 64 * 144 * (256 << 10),
        }
    }
}

/// Login status codes (RFC 7143 11.13.5).
const TOO_MANY_CONNECTIONS: u16 = 0x0206;
const OUT_OF_RESOURCES: u16 = 0x0302;

/// What the admitted sessions hold against the [`Bounds`].
#[derive(Default)]
struct Usage {
    per_target: HashMap<String, usize>,
    per_initiator: HashMap<String, usize>,
    data: u64,
}

/// One admitted session's share of the [`Bounds`]; given back on drop.
pub struct Slot {
    sessions: Arc<crate::Targets>,
    target: Option<String>,
    initiator: String,
    data: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut u = self.sessions.sessions.usage.lock().expect("usage lock");
        if let Some(t) = &self.target {
            if let Some(n) = u.per_target.get_mut(t) {
                *n -= 1;
            }
        }
        if let Some(n) = u.per_initiator.get_mut(&self.initiator) {
            *n -= 1;
        }
        u.data -= self.data;
    }
}

/// Admits a connection's login against the portal's [`Bounds`] (see
/// [`iscsi::Admission`]); holds the admitted session's [`Slot`] while the connection lives.
pub struct Admit {
    pub targets: Arc<crate::Targets>,
    pub bounds: Bounds,
    /// Commands a session may have outstanding: the CmdSN window plus immediate commands.
    pub commands: u64,
    slot: Mutex<Option<SlotHandle>>,
}

/// Holds a [`Slot`] until dropped.
struct SlotHandle(#[allow(dead_code)] Slot);

impl std::fmt::Debug for Admit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admit")
            .field("bounds", &self.bounds)
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}

impl Admit {
    /// An admission for one connection of `targets`.
    pub fn new(targets: Arc<crate::Targets>, bounds: Bounds, limits: &iscsi::Limits) -> Self {
        Admit {
            targets,
            bounds,
            commands: u64::from(limits.command_window) + u64::from(limits.max_immediate_tasks),
            slot: Mutex::new(None),
        }
    }
}

impl iscsi::Admission for Admit {
    fn session_exists(&self, isid: [u8; 6], tsih: u16) -> bool {
        self.targets.sessions.exists(isid, tsih)
    }

    fn admit(&self, login: &iscsi::login::LoginOutcome) -> Result<(), (u16, String)> {
        let normal = login.session_type == iscsi::SessionType::Normal;
        let data = if normal {
            unsolicited_reservation(&login.params, self.commands)
        } else {
            0
        };
        let b = &self.bounds;
        let sessions = &self.targets.sessions;
        // A login that reinstates a live session replaces it: the old one's share is
        // about to be given back, so it does not count (and the data check is skipped).
        let reinstating = sessions
            .by_key
            .lock()
            .expect("sessions lock")
            .contains_key(&(login.initiator.clone(), login.isid));
        let mut u = sessions.usage.lock().expect("usage lock");
        let replaced = usize::from(reinstating);
        let on_target = u.per_target.get(&login.target).copied().unwrap_or(0);
        let on_target = on_target.saturating_sub(if normal { replaced } else { 0 });
        let of_initiator = u.per_initiator.get(&login.initiator).copied().unwrap_or(0);
        let of_initiator = of_initiator.saturating_sub(replaced);
        if normal && on_target >= b.max_sessions_per_target {
            return Err((
                OUT_OF_RESOURCES,
                format!("target {} has its {on_target} sessions", login.target),
            ));
        }
        if of_initiator >= b.max_connections_per_initiator {
            return Err((
                TOO_MANY_CONNECTIONS,
                format!(
                    "initiator {} has its {of_initiator} connections",
                    login.initiator
                ),
            ));
        }
        if !reinstating && u.data + data > b.unsolicited_data_budget {
            return Err((
                OUT_OF_RESOURCES,
                format!(
                    "unsolicited data budget: {} of {} bytes held, this session needs {data}",
                    u.data, b.unsolicited_data_budget
                ),
            ));
        }
        if normal {
            *u.per_target.entry(login.target.clone()).or_default() += 1;
        }
        *u.per_initiator.entry(login.initiator.clone()).or_default() += 1;
        u.data += data;
        drop(u);
        *self.slot.lock().expect("slot lock") = Some(SlotHandle(Slot {
            sessions: self.targets.clone(),
            target: normal.then(|| login.target.clone()),
            initiator: login.initiator.clone(),
            data,
        }));
        Ok(())
    }
}

/// The most unsolicited and immediate data a session negotiated with `params` can hold
/// with `commands` outstanding: per write, FirstBurstLength when unsolicited Data-Out is
/// allowed (InitialR2T=No); with InitialR2T=Yes only immediate data, one PDU's data segment,
/// so also at most our MaxRecvDataSegmentLength; nothing with ImmediateData=No too.
///
/// This is a worst case reserved at login, not a count of the bytes buffered: see
/// ARCHITECTURE.md ("Bounds across connections") for why counting the bytes as they arrive
/// is not done.
pub fn unsolicited_reservation(params: &iscsi::Params, commands: u64) -> u64 {
    let per_command = match (params.initial_r2t, params.immediate_data) {
        (false, _) => params.first_burst_length,
        (true, true) => params
            .first_burst_length
            .min(params.target_max_recv_data_segment_length),
        (true, false) => 0,
    };
    u64::from(per_command) * commands
}

/// What the registry tells a connection task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// A new login reinstated this session: abort its tasks and close the connection.
    Reinstated,
    /// The target is shutting down: ask the initiator to log out within this many seconds.
    LogoutRequested(u16),
}

/// The session identity a reinstatement matches: InitiatorName and ISID.
type Key = (String, [u8; 6]);

struct Entry {
    id: u64,
    /// The TSIH the session was given at login.
    tsih: u16,
    tx: mpsc::UnboundedSender<Control>,
}

/// Sessions in full feature phase, by initiator and ISID.
#[derive(Default)]
pub struct Sessions {
    next_id: AtomicU64,
    by_key: Mutex<HashMap<Key, Entry>>,
    /// Set by [`Sessions::request_logout_all`]: sessions that log in later are asked at once.
    logout_within: Mutex<Option<u16>>,
    shutting_down: AtomicBool,
    /// What admitted sessions hold against the bounds.
    usage: Mutex<Usage>,
}

/// A connection's place in [`Sessions`]; leaves it on drop.
pub struct Registration<'a> {
    sessions: &'a Sessions,
    key: Key,
    id: u64,
}

impl Sessions {
    /// Registers the session a login established. A session already there with the same
    /// initiator and ISID is told it has been reinstated (its task then ends it); returns
    /// whether there was one.
    pub fn register(
        &self,
        initiator: &str,
        isid: [u8; 6],
        tsih: u16,
        tx: mpsc::UnboundedSender<Control>,
    ) -> (Registration<'_>, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = (initiator.to_string(), isid);
        if self.shutting_down.load(Ordering::Acquire) {
            if let Some(secs) = *self.logout_within.lock().expect("sessions lock") {
                let _ = tx.send(Control::LogoutRequested(secs));
            }
        }
        let old = self
            .by_key
            .lock()
            .expect("sessions lock")
            .insert(key.clone(), Entry { id, tsih, tx });
        let reinstated = match old {
            Some(old) => {
                // The old task may have ended already; then there is nothing to tell.
                let _ = old.tx.send(Control::Reinstated);
                true
            }
            None => false,
        };
        (
            Registration {
                sessions: self,
                key,
                id,
            },
            reinstated,
        )
    }

    /// Asks every session, and every session that logs in from now on, to log out within
    /// `secs` seconds (orderly shutdown).
    pub fn request_logout_all(&self, secs: u16) {
        *self.logout_within.lock().expect("sessions lock") = Some(secs);
        self.shutting_down.store(true, Ordering::Release);
        for entry in self.by_key.lock().expect("sessions lock").values() {
            let _ = entry.tx.send(Control::LogoutRequested(secs));
        }
    }

    /// Whether a registered session has this ISID and TSIH (whatever its initiator name:
    /// the TSIHs of a portal are unique).
    pub fn exists(&self, isid: [u8; 6], tsih: u16) -> bool {
        self.by_key
            .lock()
            .expect("sessions lock")
            .iter()
            .any(|((_, i), e)| *i == isid && e.tsih == tsih)
    }

    /// Sessions registered now.
    pub fn len(&self) -> usize {
        self.by_key.lock().expect("sessions lock").len()
    }

    /// True without sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut map = self.sessions.by_key.lock().expect("sessions lock");
        // Only this registration's own entry: a reinstating session has replaced it.
        if map.get(&self.key).is_some_and(|e| e.id == self.id) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISID: [u8; 6] = [0x80, 0, 0, 0, 0, 1];

    #[test]
    fn a_login_with_the_same_initiator_and_isid_reinstates() {
        let sessions = Sessions::default();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (first, reinstated) = sessions.register("iqn.a", ISID, 1, tx1);
        assert!(!reinstated);
        // Another ISID or another initiator is another session.
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let (_other_isid, reinstated) = sessions.register("iqn.a", [0x80, 0, 0, 0, 0, 2], 2, tx2);
        assert!(!reinstated);
        let (tx3, _rx3) = mpsc::unbounded_channel();
        let (_other_name, reinstated) = sessions.register("iqn.b", ISID, 3, tx3);
        assert!(!reinstated);
        assert!(rx1.try_recv().is_err() && rx2.try_recv().is_err());
        // The same pair: the first session is told.
        let (tx4, _rx4) = mpsc::unbounded_channel();
        let (_second, reinstated) = sessions.register("iqn.a", ISID, 4, tx4);
        assert!(reinstated);
        assert_eq!(rx1.try_recv(), Ok(Control::Reinstated));
        // The old session's end leaves the new one registered.
        drop(first);
        assert_eq!(sessions.len(), 3);
    }

    #[test]
    fn shutdown_asks_every_session_and_every_later_one() {
        let sessions = Sessions::default();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let _a = sessions.register("iqn.a", ISID, 1, tx1);
        sessions.request_logout_all(7);
        assert_eq!(rx1.try_recv(), Ok(Control::LogoutRequested(7)));
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let _b = sessions.register("iqn.b", ISID, 2, tx2);
        assert_eq!(rx2.try_recv(), Ok(Control::LogoutRequested(7)));
    }

    #[test]
    fn a_live_session_is_found_by_isid_and_tsih_until_it_ends() {
        let sessions = Sessions::default();
        let (tx, _rx) = mpsc::unbounded_channel();
        let (registration, _) = sessions.register("iqn.a", ISID, 0x0042, tx);
        assert!(sessions.exists(ISID, 0x0042));
        assert!(!sessions.exists(ISID, 0x0043));
        assert!(!sessions.exists([0x80, 0, 0, 0, 0, 2], 0x0042));
        drop(registration);
        assert!(!sessions.exists(ISID, 0x0042));
    }

    #[test]
    fn the_reservation_follows_what_the_negotiated_keys_let_a_session_hold() {
        let mut p = iscsi::Params::defaults(&iscsi::Limits::default());
        p.first_burst_length = 262_144;
        p.target_max_recv_data_segment_length = 65_536;
        let commands = 144;
        // InitialR2T=No: a whole unsolicited burst per write.
        p.initial_r2t = false;
        p.immediate_data = true;
        assert_eq!(unsolicited_reservation(&p, commands), 262_144 * 144);
        p.immediate_data = false;
        assert_eq!(unsolicited_reservation(&p, commands), 262_144 * 144);
        // InitialR2T=Yes: immediate data only, one data segment of at most 64 KiB.
        p.initial_r2t = true;
        p.immediate_data = true;
        assert_eq!(unsolicited_reservation(&p, commands), 65_536 * 144);
        // Neither: every byte is solicited (and bounded by Limits::max_solicited_data).
        p.immediate_data = false;
        assert_eq!(unsolicited_reservation(&p, commands), 0);
    }
}
