//! The portal's sessions, shared by every connection task: finds the session a new login
//! reinstates (RFC 7143 6.3.5: same InitiatorName and ISID, TSIH 0) and tells its
//! connection task to end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

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
            .insert(key.clone(), Entry { id, tx });
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
        let (first, reinstated) = sessions.register("iqn.a", ISID, tx1);
        assert!(!reinstated);
        // Another ISID or another initiator is another session.
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let (_other_isid, reinstated) = sessions.register("iqn.a", [0x80, 0, 0, 0, 0, 2], tx2);
        assert!(!reinstated);
        let (tx3, _rx3) = mpsc::unbounded_channel();
        let (_other_name, reinstated) = sessions.register("iqn.b", ISID, tx3);
        assert!(!reinstated);
        assert!(rx1.try_recv().is_err() && rx2.try_recv().is_err());
        // The same pair: the first session is told.
        let (tx4, _rx4) = mpsc::unbounded_channel();
        let (_second, reinstated) = sessions.register("iqn.a", ISID, tx4);
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
        let _a = sessions.register("iqn.a", ISID, tx1);
        sessions.request_logout_all(7);
        assert_eq!(rx1.try_recv(), Ok(Control::LogoutRequested(7)));
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let _b = sessions.register("iqn.b", ISID, tx2);
        assert_eq!(rx2.try_recv(), Ok(Control::LogoutRequested(7)));
    }
}
