//! The per-connection budget of R2T-solicited write data (`Limits::max_solicited_data`).
//!
//! Field positions are RFC 7143 11.8 (R2T): opcode 0x31, ITT at byte 16, TTT at 20, R2TSN at
//! 36, Buffer Offset at 40, Desired Data Transfer Length at 44; and 11.6 (Task Management
//! Function Response): opcode 0x22, Response at byte 2.

use super::initiator::*;
use crate::{CommandResponse, Event, Limits};
use bytes::Bytes;

const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const KIB: u32 = 1024;
const OP_R2T: u8 = 0x31;
const OP_SCSI_RESPONSE: u8 = 0x21;
const OP_TMF_RESPONSE: u8 = 0x22;

/// A normal session logged in straight into the operational stage with InitialR2T=Yes,
/// ImmediateData=No, bursts of `burst` bytes and `max_r2t` outstanding R2Ts, so every write
/// byte is solicited.
fn session(budget: u32, burst: u32, max_r2t: u32) -> Initiator {
    let mut i = Initiator::new(config_with(Limits {
        max_solicited_data: budget,
        max_outstanding_r2t: 8,
        ..Limits::default()
    }));
    let burst = burst.to_string();
    let max_r2t = max_r2t.to_string();
    let keys = kv(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
        ("MaxBurstLength", &burst),
        ("FirstBurstLength", &burst),
        ("MaxOutstandingR2T", &max_r2t),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(r[0].status_class(), 0);
    assert_eq!(r[0].flags(), 0x87, "T=1 CSG=1 NSG=3");
    i.take_events();
    i
}

/// (ITT, R2TSN, buffer offset, desired length) of every R2T in `rx`.
fn r2ts(rx: &[Rx]) -> Vec<(u32, u32, u32, u32)> {
    rx.iter()
        .filter(|p| p.opcode() == OP_R2T)
        .map(|p| (p.itt(), p.u32(36), p.u32(40), p.u32(44)))
        .collect()
}

/// A write of `len` bytes with no data in the command PDU (F=1).
fn write(i: &mut Initiator, itt: u32, len: u32) -> Vec<Rx> {
    let sn = i.cmd_sn;
    i.cmd_sn += 1;
    i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        itt,
        len,
        sn,
        &WRITE10,
        &[],
    ))
}

/// Answers the R2Ts for `itt` in `rx`, and the ones that follow, until the command is
/// delivered; returns every other PDU the target sent meanwhile.
fn fill(i: &mut Initiator, itt: u32, rx: Vec<Rx>) -> Vec<Rx> {
    let mut queue: Vec<Rx> = rx;
    let mut others = Vec::new();
    while let Some(p) = queue.pop() {
        if p.opcode() != OP_R2T || p.itt() != itt {
            others.push(p);
            continue;
        }
        let data = vec![itt as u8; p.u32(44) as usize];
        queue.extend(i.send(&data_out(true, itt, p.ttt(), 0, p.u32(40), &data)));
    }
    let delivered = i
        .take_events()
        .into_iter()
        .any(|e| matches!(e, Event::Command(c) if c.itt == itt));
    assert!(delivered, "task {itt:#x} delivered");
    others
}

fn done(i: &mut Initiator, itt: u32) -> Vec<Rx> {
    i.conn.complete_command(
        itt,
        CommandResponse {
            status: 0,
            data_in: Bytes::new(),
            sense: None,
            transfer_len: 0,
        },
    );
    i.drain()
}

#[test]
fn second_write_waits_for_the_first_to_complete() {
    let mut i = session(192 * KIB, 256 * KIB, 1);
    let r = write(&mut i, 0xa, 128 * KIB);
    assert_eq!(r2ts(&r), vec![(0xa, 0, 0, 128 * KIB)]);
    let r2 = write(&mut i, 0xb, 128 * KIB);
    assert_eq!(
        r2ts(&r2),
        vec![],
        "128 KiB + 128 KiB is over the 192 KiB budget"
    );
    assert!(fill(&mut i, 0xa, r).is_empty());
    // Delivered is not enough: the data stays buffered until the layer above completes.
    assert!(i.drain().is_empty());
    let r = done(&mut i, 0xa);
    assert_eq!(r[0].opcode(), OP_SCSI_RESPONSE);
    assert_eq!(r[0].itt(), 0xa);
    assert_eq!(r2ts(&r), vec![(0xb, 0, 0, 128 * KIB)]);
    assert!(fill(&mut i, 0xb, r[1..].to_vec()).is_empty());
}

#[test]
fn aborting_a_write_still_collecting_data_frees_its_budget() {
    let mut i = session(192 * KIB, 256 * KIB, 1);
    let r = write(&mut i, 0xa, 128 * KIB);
    assert_eq!(r2ts(&r).len(), 1);
    assert!(r2ts(&write(&mut i, 0xb, 128 * KIB)).is_empty());
    // ABORT TASK (function 1) for 0xa, which the layer above has not seen: the connection
    // answers "Function complete" (0) itself and solicits 0xb in the same output.
    // The TMF request is immediate: it carries CmdSN without taking one.
    let sn = i.cmd_sn;
    let r = i.send(&tmf_req(1, 0x70, 0xa, sn));
    assert_eq!(
        (r[0].opcode(), r[0].itt(), r[0].bhs[2]),
        (OP_TMF_RESPONSE, 0x70, 0)
    );
    assert_eq!(r2ts(&r), vec![(0xb, 0, 0, 128 * KIB)]);
}

#[test]
fn aborting_a_delivered_write_frees_its_budget() {
    let mut i = session(192 * KIB, 256 * KIB, 1);
    let r = write(&mut i, 0xa, 128 * KIB);
    assert!(r2ts(&write(&mut i, 0xb, 128 * KIB)).is_empty());
    fill(&mut i, 0xa, r);
    // The layer above aborts 0xa (as the daemon does for ABORT TASK) and answers the TMF.
    let sn = i.cmd_sn;
    assert!(i.send(&tmf_req(1, 0x70, 0xa, sn)).is_empty());
    assert!(matches!(
        i.take_events()[..],
        [Event::TaskManagement(ref t)]
            if t.function == crate::TaskFunction::AbortTask { referenced_itt: 0xa }
    ));
    i.conn.abort_command(0xa);
    i.conn
        .complete_task_management(0x70, crate::TmfResponse::FunctionComplete);
    let r = i.drain();
    assert_eq!(r2ts(&r), vec![(0xb, 0, 0, 128 * KIB)]);
    assert!(r.iter().any(|p| p.opcode() == OP_TMF_RESPONSE));
}

#[test]
fn abort_task_set_drops_a_waiting_write_and_frees_the_budget_of_a_collecting_one() {
    let mut i = session(192 * KIB, 256 * KIB, 1);
    assert_eq!(r2ts(&write(&mut i, 0xa, 128 * KIB)).len(), 1);
    assert!(r2ts(&write(&mut i, 0xb, 128 * KIB)).is_empty());
    // ABORT TASK SET (function 2) on LUN 0 takes both; nothing is left to solicit.
    let sn = i.cmd_sn;
    assert!(r2ts(&i.send(&tmf_req(2, 0x70, 0xffff_ffff, sn))).is_empty());
    i.take_events();
    i.conn
        .complete_task_management(0x70, crate::TmfResponse::FunctionComplete);
    assert!(r2ts(&i.drain()).is_empty());
    // The budget is whole again: a new write that needs all of it is solicited at once.
    let r = write(&mut i, 0xc, 192 * KIB);
    assert_eq!(r2ts(&r), vec![(0xc, 0, 0, 192 * KIB)]);
}

#[test]
fn the_layer_above_aborts_the_writes_still_collecting_data_on_a_lun() {
    // As the daemon does for PREEMPT AND ABORT: the layer above has not seen 0xa (its
    // data is still solicited) nor 0xb (waiting for the budget).
    let mut i = session(192 * KIB, 256 * KIB, 1);
    let r = write(&mut i, 0xa, 128 * KIB);
    let ttt = r.iter().find(|p| p.opcode() == OP_R2T).unwrap().ttt();
    assert!(r2ts(&write(&mut i, 0xb, 128 * KIB)).is_empty());
    // Another LUN's tasks are not touched.
    assert_eq!(i.conn.abort_collecting(|lun| lun == 1 << 48), 0);
    assert_eq!(i.conn.abort_collecting(|lun| lun == 0), 2);
    // Nothing is answered for them, nothing is solicited, and data the initiator still
    // sends for 0xa is dropped without an answer.
    assert!(i.drain().is_empty());
    let late = i.send(&data_out(true, 0xa, ttt, 0, 0, &[0; 128 * 1024]));
    assert!(late.is_empty(), "{late:?}");
    assert!(i.take_events().is_empty());
    // The budget is whole again.
    let r = write(&mut i, 0xc, 192 * KIB);
    assert_eq!(r2ts(&r), vec![(0xc, 0, 0, 192 * KIB)]);
}

#[test]
fn a_write_larger_than_the_budget_proceeds_alone() {
    let mut i = session(64 * KIB, 16 * KIB, 2);
    let r = write(&mut i, 0xa, 128 * KIB);
    assert_eq!(
        r2ts(&r),
        vec![(0xa, 0, 0, 16 * KIB), (0xa, 1, 16 * KIB, 16 * KIB)],
        "MaxOutstandingR2T=2 bursts of MaxBurstLength=16384"
    );
    // A second write waits while the first holds the budget, however small it is.
    assert!(r2ts(&write(&mut i, 0xb, 16 * KIB)).is_empty());
    assert!(fill(&mut i, 0xa, r).is_empty());
    let r = done(&mut i, 0xa);
    assert_eq!(r2ts(&r), vec![(0xb, 0, 0, 16 * KIB)]);
}

#[test]
fn a_write_admitted_from_the_queue_keeps_max_outstanding_r2t() {
    let mut i = session(64 * KIB, 16 * KIB, 2);
    let r = write(&mut i, 0xa, 32 * KIB);
    assert_eq!(r2ts(&r).len(), 2);
    assert!(r2ts(&write(&mut i, 0xb, 64 * KIB)).is_empty());
    fill(&mut i, 0xa, r);
    let r = done(&mut i, 0xa);
    // Two R2Ts at most outstanding (RFC 7143 13.17), each of MaxBurstLength at most.
    assert_eq!(
        r2ts(&r),
        vec![(0xb, 0, 0, 16 * KIB), (0xb, 1, 16 * KIB, 16 * KIB)]
    );
    // Answering the first R2T opens room for exactly one more.
    let first = r.iter().find(|p| p.opcode() == OP_R2T).unwrap();
    let more = i.send(&data_out(true, 0xb, first.ttt(), 0, 0, &[0; 16 * 1024]));
    assert_eq!(r2ts(&more), vec![(0xb, 2, 32 * KIB, 16 * KIB)]);
}

#[test]
fn waiting_writes_are_solicited_in_arrival_order() {
    let mut i = session(64 * KIB, 16 * KIB, 1);
    let ra = write(&mut i, 0xa, 64 * KIB);
    assert_eq!(r2ts(&ra).len(), 1);
    for (itt, len) in [(0xb, 48 * KIB), (0xc, 32 * KIB), (0xd, 16 * KIB)] {
        assert!(r2ts(&write(&mut i, itt, len)).is_empty(), "{itt:#x} waits");
    }
    fill(&mut i, 0xa, ra);
    // 0xb takes 48 KiB. 0xd would fit in the 16 KiB left, but may not pass 0xc.
    let rb = done(&mut i, 0xa);
    assert_eq!(r2ts(&rb), vec![(0xb, 0, 0, 16 * KIB)]);
    fill(&mut i, 0xb, rb[1..].to_vec());
    let r = done(&mut i, 0xb);
    assert_eq!(
        r2ts(&r),
        vec![(0xc, 0, 0, 16 * KIB), (0xd, 0, 0, 16 * KIB)],
        "0xc, then 0xd"
    );
    // A new write that fits waits while others are queued, and goes once they are admitted.
    let mut i = session(64 * KIB, 16 * KIB, 1);
    let ra = write(&mut i, 0xa, 48 * KIB);
    assert!(r2ts(&write(&mut i, 0xb, 32 * KIB)).is_empty());
    assert!(r2ts(&write(&mut i, 0xc, 16 * KIB)).is_empty(), "behind 0xb");
    fill(&mut i, 0xa, ra);
    let r = done(&mut i, 0xa);
    assert_eq!(r2ts(&r), vec![(0xb, 0, 0, 16 * KIB), (0xc, 0, 0, 16 * KIB)]);
}

#[test]
fn default_budget_is_32_mib() {
    assert_eq!(Limits::default().max_solicited_data, 32 * 1024 * 1024);
}
