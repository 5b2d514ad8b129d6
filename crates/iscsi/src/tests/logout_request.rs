//! The target asks for a logout (orderly shutdown): an Asynchronous Message, AsyncEvent 1.

use super::initiator::*;
use crate::Event;

#[test]
fn async_logout_request_bytes_and_the_logout_that_follows() {
    let mut i = Initiator::new(config());
    assert!(!i.conn.request_logout(10), "nothing to ask during login");
    i.login_normal();
    i.take_events();
    assert!(i.conn.request_logout(10));
    let r = i.drain();
    assert_eq!(r.len(), 1);
    // RFC 7143 11.9: Asynchronous Message.
    #[rustfmt::skip]
    let expected: [u8; 48] = [
        0x32, 0x80, 0x00, 0x00,             // opcode 0x32, F=1
        0x00, 0x00, 0x00, 0x00,             // TotalAHSLength, DataSegmentLength
        0, 0, 0, 0, 0, 0, 0, 0,             // LUN
        0xff, 0xff, 0xff, 0xff,             // ITT reserved
        0x00, 0x00, 0x00, 0x00,             // reserved
        0x00, 0x00, 0x00, 0x02,             // StatSN (after two login responses)
        0x00, 0x00, 0x00, 0x01,             // ExpCmdSN
        0x00, 0x00, 0x00, 0x80,             // MaxCmdSN
        0x01,                               // AsyncEvent 1: target requests logout
        0x00,                               // AsyncVCode
        0x00, 0x00,                         // Parameter1
        0x00, 0x00,                         // Parameter2
        0x00, 0x0a,                         // Parameter3: log out within 10 s
        0x00, 0x00, 0x00, 0x00,             // reserved
    ];
    assert_eq!(r[0].bhs, expected);
    // The initiator logs out; the Logout Response carries the next StatSN.
    let r = i.send(&logout_req(0, 9, 1));
    assert_eq!((r[0].opcode(), r[0].stat_sn()), (0x26, 3));
    assert_eq!(i.take_events(), vec![Event::LoggedOut]);
    assert!(!i.conn.request_logout(10), "nothing to ask once closing");
}
