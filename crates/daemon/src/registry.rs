//! The sessions logged in now as the administrator sees them: `admin session list` and
//! `admin session end` (reinstatement and login bounds are `sessions.rs`).
//!
//! A connection registers at login and leaves when it ends (a lock at those two moments,
//! never per command); the commands it has in flight are an atomic it updates once per
//! batch of events.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Every session logged in.
#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    by_id: Mutex<BTreeMap<u64, Arc<SessionEntry>>>,
}

/// What is known of one session.
pub struct SessionEntry {
    pub id: u64,
    pub initiator: String,
    /// Empty for a discovery session.
    pub target: String,
    pub peer: SocketAddr,
    /// The address the initiator connected to (which portal it came through).
    pub local: Option<SocketAddr>,
    pub isid: [u8; 6],
    pub tsih: u16,
    in_flight: AtomicUsize,
    end: Notify,
}

impl SessionEntry {
    /// Records the commands the session has in flight now.
    pub fn set_in_flight(&self, count: usize) {
        self.in_flight.store(count, Ordering::Relaxed);
    }

    /// Completes when the session has been told to end.
    pub async fn ended(&self) {
        self.end.notified().await
    }
}

/// A session as `admin session list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SessionView {
    pub id: u64,
    pub initiator: String,
    pub target: String,
    pub peer: String,
    /// The address it connected to.
    #[serde(default)]
    pub portal: String,
    pub isid: String,
    pub tsih: u16,
    pub luns: Vec<u16>,
    pub in_flight: usize,
}

/// Holds a session's registration; dropping it unregisters the session.
pub struct Registration {
    sessions: Arc<crate::Targets>,
    pub entry: Arc<SessionEntry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.registry.remove(self.entry.id);
    }
}

impl Registry {
    /// Registers a session of `targets`; it is listed until the registration drops.
    pub fn register(
        targets: &Arc<crate::Targets>,
        initiator: &str,
        target: &str,
        (peer, local): (SocketAddr, Option<SocketAddr>),
        isid: [u8; 6],
        tsih: u16,
    ) -> Registration {
        let this = &targets.registry;
        let id = this.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(SessionEntry {
            id,
            initiator: initiator.to_string(),
            target: target.to_string(),
            peer,
            local,
            isid,
            tsih,
            in_flight: AtomicUsize::new(0),
            end: Notify::new(),
        });
        this.by_id
            .lock()
            .expect("sessions lock")
            .insert(id, entry.clone());
        Registration {
            sessions: targets.clone(),
            entry,
        }
    }

    fn remove(&self, id: u64) {
        self.by_id.lock().expect("sessions lock").remove(&id);
    }

    /// The sessions now, by id.
    pub fn list(&self) -> Vec<Arc<SessionEntry>> {
        self.by_id
            .lock()
            .expect("sessions lock")
            .values()
            .cloned()
            .collect()
    }

    /// The sessions on `target`.
    pub fn on_target(&self, target: &str) -> Vec<Arc<SessionEntry>> {
        self.list()
            .into_iter()
            .filter(|s| s.target == target)
            .collect()
    }

    /// The sessions that came through `portal` (see [`crate::portals::came_through`]).
    pub fn on_portal(&self, portal: SocketAddr) -> Vec<Arc<SessionEntry>> {
        self.list()
            .into_iter()
            .filter(|s| {
                s.local
                    .is_some_and(|local| crate::portals::came_through(local, portal))
            })
            .collect()
    }

    /// Waits (blocking, polling) until none of the sessions `ids` is registered, at most
    /// `limit`; whether they all went.
    pub fn wait_gone(&self, ids: &[u64], limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let open = {
                let by_id = self.by_id.lock().expect("sessions lock");
                ids.iter().any(|id| by_id.contains_key(id))
            };
            if !open {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Tells session `id` to end (its connection closes); false if there is none.
    pub fn end(&self, id: u64) -> bool {
        let entry = self.by_id.lock().expect("sessions lock").get(&id).cloned();
        match entry {
            Some(entry) => {
                // notify_one keeps the wake-up if the connection is not waiting right now.
                entry.end.notify_one();
                true
            }
            None => false,
        }
    }

    /// The view of one session; `luns` are its target's LUNs.
    pub fn view(entry: &SessionEntry, luns: Vec<u16>) -> SessionView {
        SessionView {
            id: entry.id,
            initiator: entry.initiator.clone(),
            target: entry.target.clone(),
            peer: entry.peer.to_string(),
            portal: entry.local.map(|l| l.to_string()).unwrap_or_default(),
            isid: entry.isid.iter().map(|b| format!("{b:02x}")).collect(),
            tsih: entry.tsih,
            luns,
            in_flight: entry.in_flight.load(Ordering::Relaxed),
        }
    }
}
