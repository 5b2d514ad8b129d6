//! Time: the login time limit and NOP-In keepalive (RFC 7143 11.19). The connection never
//! reads a clock; the driver tells it the time ([`Connection::handle_timeout`]) when the
//! deadline from [`Connection::poll_timeout`] has passed, as quinn-proto does.

use super::{Connection, Phase};
use crate::header::NopInHeader;
use crate::pdu::RESERVED_TAG;
use crate::ProtocolError;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// The connection's time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// A connection in full feature phase that has sent nothing for this long gets a NOP-In
    /// ping; `None`: never pinged.
    pub nop_in_interval: Option<Duration>,
    /// A ping not answered (by any PDU) within this time ends the connection.
    pub nop_in_timeout: Duration,
    /// A login not in full feature phase this long after the connection's first tick ends
    /// the connection; `None`: no limit.
    pub login_timeout: Option<Duration>,
}

impl Default for Timers {
    /// 5 s between pings and 5 s for the answer; 15 s for a login.
    fn default() -> Self {
        Timers {
            nop_in_interval: Some(Duration::from_secs(5)),
            nop_in_timeout: Duration::from_secs(5),
            login_timeout: Some(Duration::from_secs(15)),
        }
    }
}

/// Timer state of a connection.
#[derive(Debug, Default)]
pub(super) struct Clock {
    pub(super) timers: Timers,
    /// Bytes arrived since the last tick.
    pub(super) heard: bool,
    /// The time of the last tick.
    now: Option<Instant>,
    /// When the login must be over (set on the first tick during login).
    login_deadline: Option<Instant>,
    /// Since when the initiator has been silent (as of the last tick).
    quiet_since: Option<Instant>,
    /// An unanswered ping: its target transfer tag and the deadline for an answer.
    ping: Option<(u32, Instant)>,
}

impl Connection {
    /// Replaces the connection's time limits.
    pub fn set_timers(&mut self, timers: Timers) {
        self.clock.timers = timers;
    }

    /// When [`Connection::handle_timeout`] must next be called; `None` when no timer runs.
    /// Before the first call, no timer runs: call it once when the connection starts.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = &self.clock;
        match &self.phase {
            Phase::Login(_) => c.login_deadline,
            Phase::FullFeature(_) if !self.closing => match c.ping {
                // Answered (any PDU is an answer): due at once (the last tick), so the
                // quiet period starts again now, not once the answer's deadline is past
                // (the next ping came after the interval plus the whole answer time).
                Some(_) if c.heard => c.now,
                Some((_, deadline)) => Some(deadline),
                // Just logged in: due at once, to start the quiet period.
                None if c.quiet_since.is_none() => c.now,
                None => Some(c.quiet_since? + c.timers.nop_in_interval?),
            },
            _ => None,
        }
    }

    /// Tells the connection the time. Sends a NOP-In to an initiator silent for the ping
    /// interval; ends the connection (the error says why) when the login or the answer to
    /// a ping is overdue.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let heard = std::mem::take(&mut self.clock.heard);
        self.clock.now = Some(now);
        match &self.phase {
            Phase::Login(_) => {
                let Some(limit) = self.clock.timers.login_timeout else {
                    return Ok(());
                };
                let deadline = *self.clock.login_deadline.get_or_insert(now + limit);
                if now >= deadline {
                    self.closing = true;
                    return Err(ProtocolError::TimedOut(format!(
                        "login not complete within {limit:?}"
                    )));
                }
            }
            Phase::FullFeature(_) if !self.closing => {
                if heard || self.clock.quiet_since.is_none() {
                    self.clock.quiet_since = Some(now);
                    self.clock.ping = None;
                }
                if let Some((ttt, deadline)) = self.clock.ping {
                    if now >= deadline {
                        self.closing = true;
                        return Err(ProtocolError::TimedOut(format!(
                            "no answer to NOP-In ping {ttt:#x} within {:?}",
                            self.clock.timers.nop_in_timeout
                        )));
                    }
                } else if let (Some(interval), Some(quiet)) =
                    (self.clock.timers.nop_in_interval, self.clock.quiet_since)
                {
                    if now >= quiet + interval {
                        self.ping(now);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends a NOP-In that asks for an answer (RFC 7143 11.19: ITT reserved, a TTT the
    /// NOP-Out echoes; StatSN is not advanced).
    fn ping(&mut self, now: Instant) {
        let ttt = self.session().take_ttt();
        let mut b = NopInHeader {
            lun: 0,
            itt: RESERVED_TAG,
            ttt,
        }
        .bhs();
        self.stamp(&mut b, false);
        self.push(b, Bytes::new());
        self.clock.ping = Some((ttt, now + self.clock.timers.nop_in_timeout));
        tracing::debug!(ttt, "idle connection: NOP-In ping");
    }
}
