//! Running under systemd (`Type=notify`): the daemon tells the service manager when its
//! portal listens and its LUNs are open (READY=1), and when it begins to stop
//! (STOPPING=1). Outside systemd (`NOTIFY_SOCKET` unset) these do nothing.

use sd_notify::NotifyState;

/// Tells the service manager the daemon is ready, with a one-line status.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager the daemon is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        // A unit without Type=notify still runs; systemd would time the start out.
        tracing::warn!(%err, "cannot notify the service manager");
    }
}
