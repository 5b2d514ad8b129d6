//! Admission: the layer above may refuse a login that succeeded as far as the protocol
//! goes (too many sessions, a data budget used up), before the final login response. The
//! initiator then gets a login reject with the status the layer above chose, never a
//! session that is dropped right after it began.

use super::Connection;
use crate::login::LoginOutcome;
use crate::pdu::Bhs;
use std::sync::Arc;

/// Decides whether a completed login enters full feature phase.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// `Ok` admits the session; `Err(status)` refuses it with this Login status
    /// (Status-Class << 8 | Status-Detail, RFC 7143 11.13.5) and a reason for the log.
    fn admit(&self, login: &LoginOutcome) -> Result<(), (u16, String)>;

    /// Whether a session in full feature phase has this ISID and TSIH: a login naming it
    /// tries to add a connection to it (answered Too many connections, 0x0206); a TSIH that
    /// names no session is answered Session does not exist (0x020a). The default knows no
    /// session.
    fn session_exists(&self, isid: [u8; 6], tsih: u16) -> bool {
        let _ = (isid, tsih);
        false
    }
}

impl Connection {
    /// Has every login that completes asked of `admission` first.
    pub fn set_admission(&mut self, admission: Arc<dyn Admission>) {
        self.admission = Some(admission);
    }
}

/// Turns the final (successful) login response `b` into a reject with `status`: T=0, NSG
/// 0, no TSIH (RFC 7143 11.13).
pub(super) fn refuse(b: &mut Bhs, status: u16) {
    let csg = b.flags() & 0x0c;
    b.set_flags(csg);
    b.set_u16(14, 0);
    b.0[36] = (status >> 8) as u8;
    b.0[37] = status as u8;
}
