//! NOP-In keepalive and the login time limit on virtual time: the connection is told the
//! time, nothing sleeps.

use super::initiator::*;
use crate::{ProtocolError, Timers};
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);

fn logged_in(t0: Instant) -> Initiator {
    let mut i = Initiator::new(config());
    i.conn.handle_timeout(t0).unwrap();
    i.login_normal();
    i.take_events();
    i
}

/// The NOP-Out that answers a ping (RFC 7143 11.18: ITT 0xffffffff, the ping's TTT, I=1).
fn answer(ttt: u32, cmd_sn: u32) -> Vec<u8> {
    let mut p = nop_out(true, 0xffff_ffff, cmd_sn, &[]);
    p[20..24].copy_from_slice(&ttt.to_be_bytes());
    p
}

#[test]
fn an_idle_connection_is_pinged_and_an_answer_keeps_it() {
    let t0 = Instant::now();
    let mut i = logged_in(t0);
    i.conn.handle_timeout(t0).unwrap();
    assert_eq!(
        i.conn.poll_timeout(),
        Some(t0 + 5 * S),
        "default interval 5 s"
    );
    // Early ticks send nothing.
    i.conn.handle_timeout(t0 + 4 * S).unwrap();
    assert!(i.drain().is_empty());
    i.conn.handle_timeout(t0 + 5 * S).unwrap();
    let r = i.drain();
    assert_eq!(r.len(), 1);
    // RFC 7143 11.19: NOP-In, F=1, ITT reserved, a TTT asking for an answer, StatSN the
    // next one (2 after two login responses) without advancing it.
    assert_eq!(
        (r[0].opcode(), r[0].flags(), r[0].itt()),
        (0x20, 0x80, 0xffff_ffff)
    );
    let ttt = r[0].ttt();
    assert_ne!(ttt, 0xffff_ffff);
    assert_eq!(r[0].stat_sn(), 2);
    assert_eq!(
        i.conn.poll_timeout(),
        Some(t0 + 10 * S),
        "default answer time 5 s"
    );
    // The answer comes; no response to it, and the connection lives on. The driver is
    // to tick at once (the last tick's time), so the quiet period restarts from the
    // answer: the next ping is one interval after it, not after the answer's deadline.
    assert!(i.send(&answer(ttt, 1)).is_empty());
    assert_eq!(i.conn.poll_timeout(), Some(t0 + 5 * S), "due at once");
    i.conn.handle_timeout(t0 + 6 * S).unwrap();
    assert!(!i.conn.is_finished());
    assert!(i.drain().is_empty());
    assert_eq!(i.conn.poll_timeout(), Some(t0 + 11 * S));
    // A command is answered with the StatSN the ping did not use.
    i.send(&scsi_cmd(false, true, false, false, 1, 0, 1, &[0; 6], &[]));
    i.conn.complete_command(
        1,
        crate::CommandResponse {
            status: 0,
            data_in: Default::default(),
            sense: None,
            transfer_len: 0,
        },
    );
    assert_eq!(i.drain()[0].stat_sn(), 2);
}

#[test]
fn a_ping_without_answer_ends_the_connection() {
    let t0 = Instant::now();
    let mut i = logged_in(t0);
    i.conn.handle_timeout(t0).unwrap();
    i.conn.handle_timeout(t0 + 5 * S).unwrap();
    assert_eq!(i.drain().len(), 1);
    i.conn.handle_timeout(t0 + 9 * S).unwrap();
    assert!(matches!(
        i.conn.handle_timeout(t0 + 10 * S),
        Err(ProtocolError::TimedOut(_))
    ));
    assert!(i.conn.is_finished());
}

#[test]
fn traffic_keeps_a_connection_from_being_pinged() {
    let t0 = Instant::now();
    let mut i = logged_in(t0);
    i.conn.handle_timeout(t0).unwrap();
    for k in 1..=4u32 {
        // A NOP-Out every 4 s (immediate, no answer wanted): the target never pings.
        i.send(&nop_out(true, 0xffff_ffff, 1, &[]));
        i.conn.handle_timeout(t0 + 4 * k * S).unwrap();
        assert!(i.drain().is_empty(), "tick {k}");
    }
}

#[test]
fn a_login_that_stalls_is_cut_off() {
    let t0 = Instant::now();
    let mut i = Initiator::new(config());
    i.conn.set_timers(Timers {
        login_timeout: Some(3 * S),
        ..Timers::default()
    });
    i.conn.handle_timeout(t0).unwrap();
    assert_eq!(i.conn.poll_timeout(), Some(t0 + 3 * S));
    // The first login request arrives, then nothing more.
    let sec = kv_owned(&libiscsi_security_keys(TARGET));
    assert_eq!(i.send(&login_req(true, 0, 1, 1, 1, &sec)).len(), 1);
    i.conn.handle_timeout(t0 + 2 * S).unwrap();
    assert!(matches!(
        i.conn.handle_timeout(t0 + 3 * S),
        Err(ProtocolError::TimedOut(_))
    ));
    assert!(i.conn.is_finished());
}

#[test]
fn a_login_in_time_leaves_the_login_limit_behind() {
    let t0 = Instant::now();
    let mut i = logged_in(t0);
    // Past the 15 s login limit, in full feature phase: only the ping timer runs.
    i.conn.handle_timeout(t0 + 20 * S).unwrap();
    assert_eq!(i.conn.poll_timeout(), Some(t0 + 25 * S));
}

#[test]
fn timers_can_be_turned_off() {
    let t0 = Instant::now();
    let mut i = Initiator::new(config());
    i.conn.set_timers(Timers {
        nop_in_interval: None,
        login_timeout: None,
        ..Timers::default()
    });
    i.conn.handle_timeout(t0).unwrap();
    assert_eq!(i.conn.poll_timeout(), None);
    i.login_normal();
    i.conn.handle_timeout(t0 + 3600 * S).unwrap();
    assert_eq!(i.conn.poll_timeout(), None);
    assert!(i.drain().is_empty());
}
