//! The layer above refuses a login at its last step (bounds): a clean login reject.

use super::initiator::*;
use crate::login::LoginOutcome;
use crate::{Admission, Event};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Gate {
    refuse: Option<u16>,
    seen: Mutex<Vec<(String, String)>>,
}

impl Admission for Gate {
    fn admit(&self, login: &LoginOutcome) -> Result<(), (u16, String)> {
        self.seen
            .lock()
            .unwrap()
            .push((login.initiator.clone(), login.target.clone()));
        match self.refuse {
            Some(status) => Err((status, "full".into())),
            None => Ok(()),
        }
    }
}

#[test]
fn a_refused_login_gets_the_status_and_no_session() {
    let gate = Arc::new(Gate {
        refuse: Some(0x0302),
        seen: Mutex::new(Vec::new()),
    });
    let mut i = Initiator::new(config());
    i.conn.set_admission(gate.clone());
    let sec = kv_owned(&libiscsi_security_keys(TARGET));
    let r1 = i.send(&login_req(true, 0, 1, 1, 1, &sec));
    assert_eq!(r1[0].status_class(), 0);
    assert!(
        gate.seen.lock().unwrap().is_empty(),
        "asked only at the end"
    );
    let op = kv_owned(&libiscsi_operational_keys());
    let r2 = i.send(&login_req(true, 1, 3, 1, 1, &op));
    assert_eq!(r2.len(), 1);
    // RFC 7143 11.13: Login Response, T=0, CSG 1, NSG 0; TSIH 0; Status-Class 3
    // (target error), Status-Detail 2 (out of resources); no data.
    assert_eq!((r2[0].opcode(), r2[0].flags()), (0x23, 0x04));
    assert_eq!(&r2[0].bhs[14..16], &[0, 0]);
    assert_eq!(r2[0].status_class(), 0x0302);
    assert!(r2[0].data.is_empty());
    assert!(i.take_events().is_empty(), "no LoggedIn");
    assert!(i.conn.is_finished());
    assert_eq!(i.conn.login_failure(), Some((0x0302, TARGET)));
    assert_eq!(
        *gate.seen.lock().unwrap(),
        vec![(INITIATOR.to_string(), TARGET.to_string())]
    );
}

#[test]
fn an_admitted_login_goes_on() {
    let gate = Arc::new(Gate {
        refuse: None,
        seen: Mutex::new(Vec::new()),
    });
    let mut i = Initiator::new(config());
    i.conn.set_admission(gate);
    i.login_normal();
    assert!(matches!(i.take_events()[..], [Event::LoggedIn { .. }]));
    assert_eq!(i.conn.login_failure(), None);
}

/// Knows one live session, by ISID and TSIH.
#[derive(Debug)]
struct Live {
    isid: [u8; 6],
    tsih: u16,
}

impl Admission for Live {
    fn admit(&self, _: &LoginOutcome) -> Result<(), (u16, String)> {
        Ok(())
    }
    fn session_exists(&self, isid: [u8; 6], tsih: u16) -> bool {
        (isid, tsih) == (self.isid, self.tsih)
    }
}

/// RFC 7143 11.13.5, the login status table (Status-Class and Status-Detail, description):
///
/// | Too many connections   | 0206 | Too many connections on this SSID.                     |
/// | Session does not exist | 020a | Attempt to add a connection to a non-existent session. |
const TOO_MANY_CONNECTIONS: [u8; 2] = [0x02, 0x06];
const SESSION_DOES_NOT_EXIST: [u8; 2] = [0x02, 0x0a];

/// A first login request carrying `tsih` (bytes 14..16) and the test initiator's ISID.
fn login_naming(tsih: u16, conn: &mut Initiator) -> Vec<Rx> {
    let sec = kv_owned(&libiscsi_security_keys(TARGET));
    let mut req = login_req(true, 0, 1, 1, 1, &sec);
    req[14..16].copy_from_slice(&tsih.to_be_bytes());
    conn.send(&req)
}

#[test]
fn a_login_adding_a_connection_to_a_live_session_gets_too_many_connections() {
    let live = Arc::new(Live {
        isid: ISID,
        tsih: 0x0042,
    });
    let mut i = Initiator::new(config());
    i.conn.set_admission(live.clone());
    let r = login_naming(0x0042, &mut i);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opcode(), 0x23, "Login Response");
    assert_eq!(r[0].bhs[36..38], TOO_MANY_CONNECTIONS);
    assert_eq!(r[0].flags() & 0x80, 0, "no transit on a reject");
    assert!(i.conn.is_finished());
    assert!(!i
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::LoggedIn { .. })));

    // The same TSIH with another ISID, or another TSIH: no such session.
    for (isid_last, tsih) in [(0x02, 0x0042), (0x01, 0x0043)] {
        let mut i = Initiator::new(config());
        i.conn.set_admission(live.clone());
        let sec = kv_owned(&libiscsi_security_keys(TARGET));
        let mut req = login_req(true, 0, 1, 1, 1, &sec);
        req[13] = isid_last;
        req[14..16].copy_from_slice(&u16::to_be_bytes(tsih));
        let r = i.send(&req);
        assert_eq!(
            r[0].bhs[36..38],
            SESSION_DOES_NOT_EXIST,
            "{isid_last} {tsih}"
        );
        assert!(i.conn.is_finished());
    }

    // Without anyone to ask (no admission), no session is known.
    let mut i = Initiator::new(config());
    assert_eq!(
        login_naming(0x0042, &mut i)[0].bhs[36..38],
        SESSION_DOES_NOT_EXIST
    );
}
