//! Logout (RFC 7143 11.14 and 11.15). One connection per session, ERL 0: closing the
//! connection closes the session, and no state is kept for connection recovery.

use super::Connection;
use crate::header::{AsyncMessageHeader, LogoutRequestHeader, LogoutResponseHeader};
use crate::pdu::Pdu;
use crate::Event;
use bytes::Bytes;

/// Logout reason codes (RFC 7143 11.14.1).
mod reason {
    pub const CLOSE_SESSION: u8 = 0;
    pub const CLOSE_CONNECTION: u8 = 1;
}

/// Logout response codes (RFC 7143 11.15.1).
mod response {
    pub const CLOSED: u8 = 0;
    pub const CID_NOT_FOUND: u8 = 1;
    pub const RECOVERY_NOT_SUPPORTED: u8 = 2;
}

/// AsyncEvent 1: the target requests a logout (RFC 7143 11.9.1).
const ASYNC_LOGOUT_REQUEST: u8 = 1;

impl Connection {
    /// Asks the initiator to log out within `within_secs` seconds with an Asynchronous
    /// Message (for an orderly shutdown). Returns false, sending nothing, when the
    /// connection is not in full feature phase or is already closing.
    pub fn request_logout(&mut self, within_secs: u16) -> bool {
        if !matches!(self.phase, super::Phase::FullFeature(_)) || self.closing {
            return false;
        }
        let mut b = AsyncMessageHeader {
            event: ASYNC_LOGOUT_REQUEST,
            parameter1: 0,
            parameter2: 0,
            parameter3: within_secs,
        }
        .bhs();
        self.stamp(&mut b, true);
        self.push(b, Bytes::new());
        true
    }

    pub(super) fn handle_logout(&mut self, pdu: Pdu) {
        let req = LogoutRequestHeader::parse(&pdu.bhs);
        let our_cid = self.session().info.cid;
        let code = match req.reason {
            reason::CLOSE_SESSION => response::CLOSED,
            reason::CLOSE_CONNECTION if req.cid == our_cid => response::CLOSED,
            reason::CLOSE_CONNECTION => response::CID_NOT_FOUND,
            _ => response::RECOVERY_NOT_SUPPORTED,
        };
        let mut b = LogoutResponseHeader {
            response: code,
            itt: req.itt,
        }
        .bhs();
        self.stamp(&mut b, true);
        // Time2Wait / Time2Retain stay 0: no reconnection state is kept.
        self.push(b, Bytes::new());
        if code == response::CLOSED {
            let s = self.session();
            s.tasks.clear();
            s.pending_tmf.clear();
            s.waiting.clear();
            s.solicited = 0;
            self.events.push_back(Event::LoggedOut);
            self.closing = true;
        }
    }
}
