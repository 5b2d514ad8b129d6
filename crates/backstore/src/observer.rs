//! What the glfs stores tell the rest of the process about their volumes' connections
//! (the daemon's metrics listen): a small interface, so this crate knows nothing of how
//! the events are counted or shown.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Told of connection losses and reconnects of Gluster volumes, by volume name. Called
/// from the stores' own threads (a gfapi callback thread, a reconnect thread): it must
/// return quickly and never call back into a store.
pub trait VolumeObserver: Send + Sync {
    /// A request found the connection to `volume` lost; a reconnect starts.
    fn connection_lost(&self, volume: &str);
    /// `volume` is back, `took` after its loss was found.
    fn reconnected(&self, volume: &str, took: Duration);
    /// A store on `volume` had writes gfapi acknowledged and no flush covered when the
    /// connection went: they may be lost, and the store's next flush fails
    /// (`crate::unflushed`). Once per store and loss.
    fn unflushed_writes_at_risk(&self, _volume: &str) {}
}

static OBSERVER: OnceLock<Arc<dyn VolumeObserver>> = OnceLock::new();

/// Sets the process's volume observer; false if one was already set (it stays).
pub fn set_volume_observer(observer: Arc<dyn VolumeObserver>) -> bool {
    OBSERVER.set(observer).is_ok()
}

pub(crate) fn volume_observer() -> Option<&'static dyn VolumeObserver> {
    OBSERVER.get().map(|o| o.as_ref())
}
