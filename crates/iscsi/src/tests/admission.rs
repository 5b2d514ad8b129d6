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
