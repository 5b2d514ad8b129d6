//! The login phase of a connection: feeds Login PDUs to the [`crate::login`] state machine
//! and enters full feature phase when it completes.

use super::session::Session;
use super::{Connection, Phase};
use crate::login::LoginStep;
use crate::pdu::{off, Pdu};
use crate::{Event, ProtocolError};

impl Connection {
    pub(super) fn handle_login(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let Phase::Login(login) = &mut self.phase else {
            unreachable!()
        };
        let first = !login.started();
        let tsih = pdu.bhs.u16_at(14);
        if first && tsih != 0 {
            let mut isid = [0u8; 6];
            isid.copy_from_slice(&pdu.bhs.0[8..14]);
            if let Some(admission) = &self.admission {
                if admission.session_exists(isid, tsih) {
                    login.tsih_names_live_session();
                }
            }
        }
        let step = login.handle(&self.config, &pdu);
        self.login_cmd_sn = login.cmd_sn();
        if first {
            // Start StatSN where the initiator expects it.
            self.stat_sn = pdu.bhs.u32_at(off::EXPSTATSN);
        }
        match step {
            LoginStep::Continue(mut b, data) => {
                self.stamp(&mut b, true);
                self.push(b, data.into());
            }
            LoginStep::Failed(mut b, data, why) => {
                tracing::info!(reason = %why, "login rejected");
                // Status-Class and Status-Detail, bytes 36 and 37 (RFC 7143 11.13.5).
                let status = b.u16_at(36);
                self.login_failure = Some((status, login.target_name().to_string()));
                self.stamp(&mut b, true);
                self.push(b, data.into());
                self.closing = true;
            }
            LoginStep::Complete(mut b, data, outcome) => {
                if let Some(Err((status, why))) = self.admission.as_ref().map(|a| a.admit(&outcome))
                {
                    tracing::info!(reason = %why, status, "login refused");
                    self.login_failure = Some((status, outcome.target.clone()));
                    super::admission::refuse(&mut b, status);
                    self.stamp(&mut b, true);
                    self.push(b, bytes::Bytes::new());
                    self.closing = true;
                    return Ok(());
                }
                self.stamp(&mut b, true);
                self.push(b, data.into());
                let window = self.config.limits.command_window.max(1);
                self.events.push_back(Event::LoggedIn {
                    initiator: outcome.initiator.clone(),
                    target: outcome.target.clone(),
                    session_type: outcome.session_type,
                    isid: outcome.isid,
                    tsih: outcome.tsih,
                });
                self.phase = Phase::FullFeature(Box::new(Session::new(*outcome, window)));
            }
        }
        Ok(())
    }
}
