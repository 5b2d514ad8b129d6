//! Full feature phase: reads, writes (immediate, unsolicited, R2T), NOP, task management,
//! logout, CmdSN ordering.

use super::initiator::*;
use crate::{
    CommandResponse, Event, Limits, ScsiCommand, TaskAttr, TaskFunction, TaskManagementRequest,
    TmfResponse,
};
use bytes::Bytes;

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn commands(events: Vec<Event>) -> Vec<ScsiCommand> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Command(c) => c,
            other => panic!("unexpected event {other:?}"),
        })
        .collect()
}

fn good(data: Vec<u8>, transfer_len: u32) -> CommandResponse {
    CommandResponse {
        status: 0,
        data_in: Bytes::from(data),
        sense: None,
        transfer_len,
    }
}

fn logged_in(limits: Limits) -> Initiator {
    let mut i = Initiator::new(config_with(limits));
    i.login_normal();
    i.take_events();
    i
}

#[test]
fn has_transmit_says_whether_pdus_wait_for_the_socket() {
    let mut i = logged_in(Limits::default());
    assert!(!i.conn.has_transmit());
    let data = pattern(4096);
    let r = i.send(&scsi_cmd(
        false, true, false, true, 0x1, 4096, 1, &WRITE10, &data,
    ));
    assert!(r.is_empty());
    assert!(
        !i.conn.has_transmit(),
        "a write with all its data: nothing to send until the store answers"
    );
    i.conn.complete_command(1, good(vec![], 4096));
    assert!(
        i.conn.has_transmit(),
        "its SCSI Response waits for the socket"
    );
    let r = i.drain();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opcode(), 0x21);
    assert!(!i.conn.has_transmit(), "sent");
}

#[test]
fn write_4k_with_immediate_data() {
    let mut i = logged_in(Limits::default());
    let data = pattern(4096);
    let r = i.send(&scsi_cmd(
        false, true, false, true, 0x1, 4096, 1, &WRITE10, &data,
    ));
    assert!(r.is_empty(), "no R2T needed");
    let cmds = commands(i.take_events());
    assert_eq!(
        cmds,
        vec![ScsiCommand {
            itt: 1,
            lun: 0,
            cdb: Bytes::copy_from_slice(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]),
            attr: TaskAttr::Simple,
            expected_len: 4096,
            read: false,
            write: true,
            data_out: Bytes::from(data).into(),
            data_out_discarded: false,
        }]
    );
    i.conn.complete_command(1, good(vec![], 4096));
    let r = i.drain();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opcode(), 0x21);
    assert_eq!(r[0].flags(), 0x80);
    assert_eq!(r[0].bhs[3], 0);
}

#[test]
fn write_with_unsolicited_data_then_r2ts() {
    // FirstBurstLength 262144 from libiscsi's offer; MaxBurstLength 262144.
    let mut i = logged_in(Limits {
        max_outstanding_r2t: 2,
        ..Limits::default()
    });
    let p = i.conn.params().unwrap().clone();
    assert_eq!(p.max_outstanding_r2t, 1, "libiscsi offers 1");
    let total = 262_144 + 2 * 262_144 + 1000; // first burst + two full bursts + tail
    let data = pattern(total);
    // Immediate 8192, then unsolicited Data-Out up to FirstBurstLength.
    let r = i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        0x42,
        total as u32,
        1,
        &WRITE10,
        &data[..8192],
    ));
    assert!(r.is_empty());
    let mut off = 8192;
    let mut sn = 0;
    let mut pending: Vec<Rx> = Vec::new();
    // PDUs that carried data: the immediate data, then each Data-Out.
    let mut pdus = 1;
    while off < 262_144 {
        let end = (off + 65_536).min(262_144);
        let fin = end == 262_144;
        let r = i.send(&data_out(
            fin,
            0x42,
            0xffff_ffff,
            sn,
            off as u32,
            &data[off..end],
        ));
        sn += 1;
        pdus += 1;
        if !fin {
            assert!(r.is_empty());
        } else {
            assert_eq!(r.len(), 1, "first R2T after the unsolicited burst");
            assert_eq!(r[0].opcode(), 0x31);
            pending = r;
        }
        off = end;
    }
    assert!(
        i.take_events().is_empty(),
        "no command before all data is in"
    );
    // Answer R2Ts one at a time (MaxOutstandingR2T=1).
    let mut r2tsn = 0;
    while let Some(r2t) = pending.pop() {
        assert_eq!(r2t.u32(36), r2tsn, "R2TSN");
        r2tsn += 1;
        let offset = r2t.u32(40) as usize;
        let len = r2t.u32(44) as usize;
        assert!(len <= 262_144);
        assert_eq!(offset, off, "R2Ts in offset order");
        let mut pos = offset;
        let mut dsn = 0;
        while pos < offset + len {
            let end = (pos + 262_144).min(offset + len);
            let r = i.send(&data_out(
                end == offset + len,
                0x42,
                r2t.ttt(),
                dsn,
                pos as u32,
                &data[pos..end],
            ));
            dsn += 1;
            pdus += 1;
            pos = end;
            for p in r {
                assert_eq!(p.opcode(), 0x31);
                pending.push(p);
            }
        }
        off = offset + len;
    }
    assert_eq!(r2tsn, 3);
    let cmds = commands(i.take_events());
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].data_out.len(), total);
    assert!(cmds[0].data_out == data[..], "reassembled in offset order");
    assert_eq!(
        cmds[0].data_out.parts().len(),
        pdus,
        "the data segments as they came, one per PDU, not gathered into a copy"
    );
    i.conn.complete_command(0x42, good(vec![], total as u32));
    let r = i.drain();
    assert_eq!(r[0].opcode(), 0x21);
    assert_eq!(r[0].u32(36), 3, "ExpDataSN counts the R2Ts");
}

#[test]
fn an_initiator_asking_for_several_outstanding_r2ts_gets_them_by_default() {
    let mut i = Initiator::new(config());
    let mut keys = libiscsi_security_keys(TARGET);
    keys.extend(libiscsi_operational_keys());
    for (k, v) in keys.iter_mut() {
        match *k {
            "MaxOutstandingR2T" => *v = "16".into(),
            "MaxBurstLength" => *v = "65536".into(),
            "FirstBurstLength" => *v = "65536".into(),
            "InitialR2T" => *v = "Yes".into(),
            _ => {}
        }
    }
    let r = i.send(&login_req(true, 0, 3, 1, 1, &kv_owned(&keys)));
    assert!(r[0]
        .text()
        .contains(&("MaxOutstandingR2T".to_string(), "4".to_string())));
    i.take_events();
    // A 1 MiB write: four R2Ts of MaxBurstLength at once, the next as each completes.
    let total: u32 = 1 << 20;
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        7,
        total,
        1,
        &WRITE10,
        &[],
    ));
    let offsets: Vec<(u32, u32)> = r.iter().map(|p| (p.u32(40), p.u32(44))).collect();
    assert_eq!(
        offsets,
        vec![(0, 65536), (65536, 65536), (131072, 65536), (196608, 65536)]
    );
    let data = pattern(total as usize);
    let mut open: Vec<(u32, u32)> = r.iter().map(|p| (p.ttt(), p.u32(40))).collect();
    let mut sent = 0;
    while let Some((ttt, off)) = (!open.is_empty()).then(|| open.remove(0)) {
        let chunk = &data[off as usize..off as usize + 65536];
        let more = i.send(&data_out(true, 7, ttt, 0, off, chunk));
        sent += 1;
        open.extend(
            more.iter()
                .filter(|p| p.opcode() == 0x31)
                .map(|p| (p.ttt(), p.u32(40))),
        );
        assert!(open.len() <= 4);
    }
    assert_eq!(sent, 16);
    match &i.take_events()[..] {
        [Event::Command(c)] => assert!(c.data_out == data[..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn write_solicited_with_several_outstanding_r2ts() {
    let limits = Limits {
        max_burst_length: 8192,
        first_burst_length: 4096,
        max_outstanding_r2t: 4,
        initial_r2t: true,
        ..Limits::default()
    };
    let mut i = Initiator::new(config_with(limits));
    let mut keys = libiscsi_security_keys(TARGET);
    keys.extend(libiscsi_operational_keys());
    for (k, v) in keys.iter_mut() {
        if *k == "MaxOutstandingR2T" {
            *v = "8".into();
        }
    }
    i.send(&login_req(true, 0, 3, 1, 1, &kv_owned(&keys)));
    i.take_events();
    let p = i.conn.params().unwrap();
    assert_eq!((p.max_burst_length, p.first_burst_length), (8192, 4096));
    assert!(p.initial_r2t);
    assert_eq!(p.max_outstanding_r2t, 4);
    let total = 8192 * 5 + 100;
    let data = pattern(total);
    // InitialR2T=Yes: only immediate data may come unsolicited.
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        7,
        total as u32,
        1,
        &WRITE10,
        &data[..1024],
    ));
    assert_eq!(r.len(), 4, "MaxOutstandingR2T R2Ts at once");
    let offs: Vec<(u32, u32, u32)> = r
        .iter()
        .map(|p| (p.u32(36), p.u32(40), p.u32(44)))
        .collect();
    assert_eq!(
        offs,
        vec![
            (0, 1024, 8192),
            (1, 9216, 8192),
            (2, 17408, 8192),
            (3, 25600, 8192)
        ]
    );
    // Answer the second R2T first, then the first: buffer offsets, not arrival order, decide.
    let mut queue: Vec<Rx> = r;
    queue.swap(0, 1);
    let mut rounds = 0;
    while let Some(r2t) = queue.first().cloned() {
        queue.remove(0);
        let (off, len) = (r2t.u32(40) as usize, r2t.u32(44) as usize);
        let mid = off + len / 2;
        assert!(i
            .send(&data_out(
                false,
                7,
                r2t.ttt(),
                0,
                off as u32,
                &data[off..mid]
            ))
            .is_empty());
        let more = i.send(&data_out(
            true,
            7,
            r2t.ttt(),
            1,
            mid as u32,
            &data[mid..off + len],
        ));
        queue.extend(more);
        rounds += 1;
    }
    assert_eq!(rounds, 5, "4 full bursts and a 7268-byte tail");
    let cmds = commands(i.take_events());
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].data_out == data[..]);
    assert_eq!(
        cmds[0].data_out.parts().len(),
        1,
        "data out of offset order is reassembled into one buffer"
    );
}

/// Logged in with libiscsi's keys but MaxRecvDataSegmentLength 8192 and MaxBurstLength
/// 16384, so a read of 30000 bytes spans several Data-In PDUs and bursts.
fn logged_in_with_small_data_in() -> Initiator {
    let mut i = Initiator::new(config());
    let mut keys = libiscsi_security_keys(TARGET);
    keys.extend(libiscsi_operational_keys());
    for (k, v) in keys.iter_mut() {
        match *k {
            "MaxRecvDataSegmentLength" => *v = "8192".into(),
            "MaxBurstLength" => *v = "16384".into(),
            "FirstBurstLength" => *v = "16384".into(),
            _ => {}
        }
    }
    i.send(&login_req(true, 0, 3, 1, 1, &kv_owned(&keys)));
    i.take_events();
    i
}

#[test]
fn read_split_by_initiator_mrdsl_with_status_in_last_data_in() {
    let mut i = logged_in_with_small_data_in();
    i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        9,
        32768,
        1,
        &READ10,
        &[],
    ));
    let cmds = commands(i.take_events());
    assert!(cmds[0].read && !cmds[0].write && cmds[0].data_out.is_empty());
    let data = pattern(30000);
    i.conn.complete_command(9, good(data.clone(), 30000));
    let r = i.drain();
    assert_eq!(r.len(), 4);
    let mut got = Vec::new();
    for (n, p) in r.iter().enumerate() {
        assert_eq!(p.opcode(), 0x25);
        assert_eq!(p.u32(36), n as u32, "DataSN");
        assert_eq!(p.u32(40) as usize, got.len(), "buffer offset");
        got.extend_from_slice(&p.data);
    }
    assert_eq!(got, data);
    let lens: Vec<usize> = r.iter().map(|p| p.data.len()).collect();
    assert_eq!(lens, vec![8192, 8192, 8192, 5424]);
    // F at the MaxBurstLength boundary (16384) and on the last; S + U on the last only.
    let flags: Vec<u8> = r.iter().map(|p| p.flags()).collect();
    assert_eq!(flags, vec![0x00, 0x80, 0x00, 0x83]);
    assert_eq!(r[3].u32(44), 32768 - 30000, "residual");
    assert_eq!(r[3].stat_sn(), 1, "one login response used StatSN 0");
    assert_eq!(r[0].stat_sn(), 0, "StatSN reserved without S");
}

/// A read's data sent in parts ahead of its completion (a store that reads a large
/// transfer in pieces): the Data-In PDUs continue one sequence across the parts and the
/// rest (DataSN and buffer offset counting on, RFC 7143 11.7.4 and 11.7.5; F at every
/// MaxBurstLength boundary, 11.7.1), and the status rides in the very last PDU.
#[test]
fn read_data_sent_in_parts_continues_one_data_in_sequence() {
    let mut i = logged_in_with_small_data_in();
    let read = |i: &mut Initiator, itt: u32, cmd_sn: u32, edtl: u32| {
        i.send(&scsi_cmd(
            false,
            true,
            true,
            false,
            itt,
            edtl,
            cmd_sn,
            &READ10,
            &[],
        ));
        commands(i.take_events());
    };
    read(&mut i, 9, 1, 32768);
    let data = pattern(30000);
    let all = Bytes::from(data.clone());
    i.conn.send_data_in(9, all.slice(..10000));
    let first = i.drain();
    i.conn.send_data_in(9, all.slice(10000..20000));
    let second = i.drain();
    i.conn.complete_command(
        9,
        CommandResponse {
            status: 0,
            data_in: all.slice(20000..),
            sense: None,
            transfer_len: 30000,
        },
    );
    let rest = i.drain();
    assert_eq!((first.len(), second.len(), rest.len()), (2, 2, 2));
    let r: Vec<_> = first.into_iter().chain(second).chain(rest).collect();
    let mut got = Vec::new();
    for (n, p) in r.iter().enumerate() {
        assert_eq!(p.opcode(), 0x25, "Data-In");
        assert_eq!(p.u32(36), n as u32, "DataSN");
        assert_eq!(p.u32(40) as usize, got.len(), "buffer offset");
        got.extend_from_slice(&p.data);
    }
    assert_eq!(got, data);
    let lens: Vec<usize> = r.iter().map(|p| p.data.len()).collect();
    assert_eq!(lens, vec![8192, 1808, 6384, 3616, 8192, 1808]);
    // F at the burst boundary 16384 (the end of the second part's first PDU) and on the
    // last; S + U (residual) on the last only.
    let flags: Vec<u8> = r.iter().map(|p| p.flags()).collect();
    assert_eq!(flags, vec![0x00, 0x00, 0x80, 0x00, 0x00, 0x83]);
    assert_eq!(r[5].u32(44), 32768 - 30000, "residual");
    assert_eq!(r[5].stat_sn(), 1, "one login response used StatSN 0");
    assert!(
        r[..5].iter().all(|p| p.stat_sn() == 0),
        "StatSN reserved without S"
    );

    // A read that fails after a part: the SCSI Response counts the Data-In already sent.
    read(&mut i, 10, 2, 4096);
    i.conn.send_data_in(10, Bytes::from(vec![1u8; 1024]));
    let sense = vec![
        0x70, 0, 0x03, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0,
    ];
    i.conn.complete_command(
        10,
        CommandResponse {
            status: 2,
            data_in: Bytes::new(),
            sense: Some(Bytes::from(sense)),
            transfer_len: 0,
        },
    );
    let r = i.drain();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].opcode(), r[0].flags()), (0x25, 0x00));
    assert_eq!(r[1].opcode(), 0x21);
    assert_eq!(r[1].bhs[3], 2, "CHECK CONDITION");
    assert_eq!(r[1].u32(36), 1, "ExpDataSN: the one Data-In sent");

    // A part that reaches the expected length ends the sequence (F); what the CDB asked
    // beyond it is dropped, and the status goes in a SCSI Response.
    read(&mut i, 11, 3, 2048);
    i.conn.send_data_in(11, Bytes::from(vec![2u8; 2048]));
    i.conn.complete_command(11, good(vec![3u8; 2048], 4096));
    let r = i.drain();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].opcode(), r[0].flags(), r[0].data.len()),
        (0x25, 0x80, 2048)
    );
    assert_eq!(r[1].opcode(), 0x21);
    assert_eq!(r[1].flags() & 0x06, 0x04, "O: the CDB asked for more");
    assert_eq!(r[1].u32(36), 1, "ExpDataSN");

    // A part for a task that is not there (aborted, unknown) sends nothing.
    i.conn.send_data_in(99, Bytes::from(vec![4u8; 512]));
    assert!(i.drain().is_empty());
}

#[test]
fn read_with_check_condition_sends_data_then_separate_response() {
    let mut i = logged_in(Limits::default());
    i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        3,
        4096,
        1,
        &READ10,
        &[],
    ));
    i.take_events();
    let sense = vec![
        0x70, 0, 0x03, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0,
    ];
    i.conn.complete_command(
        3,
        CommandResponse {
            status: 2,
            data_in: Bytes::from(vec![1u8; 4096]),
            sense: Some(Bytes::from(sense.clone())),
            transfer_len: 4096,
        },
    );
    let r = i.drain();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].opcode(), 0x25);
    assert_eq!(r[0].flags(), 0x80, "F without S");
    assert_eq!(r[1].opcode(), 0x21);
    assert_eq!(r[1].bhs[3], 2);
    assert_eq!(r[1].u32(36), 1, "ExpDataSN");
    assert_eq!(&r[1].data[..2], &[0, 18]);
    assert_eq!(&r[1].data[2..], &sense[..]);
}

#[rstest::rstest]
#[case::exact(4096, 4096, 0x80, 0)]
#[case::underflow(4096, 1024, 0x82, 3072)]
#[case::overflow(4096, 8192, 0x84, 4096)]
fn write_residuals(
    #[case] edtl: u32,
    #[case] transfer: u32,
    #[case] flags: u8,
    #[case] count: u32,
) {
    let mut i = logged_in(Limits::default());
    let data = pattern(edtl as usize);
    i.send(&scsi_cmd(
        false, true, false, true, 5, edtl, 1, &WRITE10, &data,
    ));
    i.take_events();
    i.conn.complete_command(5, good(vec![], transfer));
    let r = i.drain();
    assert_eq!(r[0].flags(), flags);
    assert_eq!(r[0].u32(44), count);
}

#[test]
fn read_data_trimmed_to_expected_length_with_overflow() {
    let mut i = logged_in(Limits::default());
    i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        6,
        100,
        1,
        &[0x12, 0, 0, 0, 100, 0],
        &[],
    ));
    i.take_events();
    i.conn.complete_command(6, good(pattern(200), 200));
    let r = i.drain();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].data.len(), 100);
    assert_eq!(r[0].flags(), 0x85, "F, O, S");
    assert_eq!(r[0].u32(44), 100);
}

#[test]
fn nop_out_ping_and_unanswered_nop() {
    let mut i = logged_in(Limits::default());
    let r = i.send(&nop_out(true, 0x99, 1, b"hello"));
    assert_eq!(r.len(), 1);
    assert_eq!(&r[0].data[..], b"hello");
    assert_eq!(r[0].itt(), 0x99);
    let r = i.send(&nop_out(true, 0xffff_ffff, 1, &[]));
    assert!(r.is_empty());
}

#[test]
fn logout_ends_the_connection() {
    let mut i = logged_in(Limits::default());
    assert!(!i.conn.is_finished());
    let r = i.send(&logout_req(0, 0x33, 1));
    assert_eq!(r[0].opcode(), 0x26);
    assert_eq!(r[0].bhs[2], 0);
    assert_eq!(i.take_events(), vec![Event::LoggedOut]);
    assert!(i.conn.is_finished());
}

#[test]
fn logout_for_recovery_is_refused() {
    let mut i = logged_in(Limits::default());
    let r = i.send(&logout_req(2, 0x33, 1));
    assert_eq!(r[0].bhs[2], 2, "connection recovery not supported");
    assert!(!i.conn.is_finished());
}

#[test]
fn task_management_and_abort() {
    let mut i = logged_in(Limits::default());
    i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        0x10,
        512,
        1,
        &READ10,
        &[],
    ));
    i.take_events();
    // ABORT TASK for 0x10, immediate.
    let r = i.send(&tmf_req(1, 0x11, 0x10, 2));
    assert!(r.is_empty());
    assert_eq!(
        i.take_events(),
        vec![Event::TaskManagement(TaskManagementRequest {
            itt: 0x11,
            function: TaskFunction::AbortTask {
                referenced_itt: 0x10
            },
            lun: 0,
        })]
    );
    i.conn.abort_command(0x10);
    i.conn
        .complete_task_management(0x11, TmfResponse::FunctionComplete);
    // A late completion of the aborted task produces nothing.
    i.conn.complete_command(0x10, good(vec![0; 512], 512));
    let r = i.drain();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opcode(), 0x22);
    assert_eq!(r[0].bhs[2], 0);
    assert_eq!(r[0].itt(), 0x11);
    // A second completion for the same TMF is ignored.
    i.conn
        .complete_task_management(0x11, TmfResponse::FunctionComplete);
    assert!(i.drain().is_empty());
}

#[test]
fn abort_of_a_task_still_receiving_data_is_answered_here() {
    let mut i = logged_in(Limits::default());
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        0x20,
        4096,
        1,
        &WRITE10,
        &[],
    ));
    assert_eq!(r[0].opcode(), 0x31);
    let ttt = r[0].ttt();
    // The layer above never saw the task, so the connection answers "function complete".
    let t = i.send(&tmf_req(1, 0x21, 0x20, 2));
    assert!(i.take_events().is_empty());
    assert_eq!((t[0].opcode(), t[0].bhs[2], t[0].itt()), (0x22, 0, 0x21));
    // Data for the dropped task is ignored; no command is delivered.
    let r = i.send(&data_out(true, 0x20, ttt, 0, 0, &[0; 4096]));
    assert!(r.is_empty());
    assert!(i.take_events().is_empty());
}

#[rstest::rstest]
// Completed long ago: RefCmdSN below ExpCmdSN.
#[case::completed(1, 5, 1)]
// Never arrived but inside the window and before the TMF: counts as aborted.
#[case::lost_in_window(3, 5, 0)]
fn abort_of_an_unknown_task(
    #[case] ref_cmd_sn: u32,
    #[case] tmf_cmd_sn: u32,
    #[case] response: u8,
) {
    let mut i = logged_in(Limits::default());
    // CmdSN 1 and 2: two commands that complete.
    for (itt, sn) in [(1, 1), (2, 2)] {
        i.send(&scsi_cmd(
            false,
            true,
            false,
            false,
            itt,
            0,
            sn,
            &[0; 6],
            &[],
        ));
        i.conn.complete_command(itt, good(vec![], 0));
    }
    i.drain();
    let mut p = tmf_req(1, 0x30, 0x99, tmf_cmd_sn);
    p[32..36].copy_from_slice(&ref_cmd_sn.to_be_bytes()); // RefCmdSN
    let r = i.send(&p);
    assert!(i
        .take_events()
        .iter()
        .all(|e| matches!(e, Event::Command(_))));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].bhs[2], response);
}

#[rstest::rstest]
#[case::lun_reset(5, TaskFunction::LogicalUnitReset)]
#[case::abort_task_set(2, TaskFunction::AbortTaskSet)]
#[case::target_warm_reset(6, TaskFunction::TargetWarmReset)]
fn task_set_functions_go_to_the_layer_above(#[case] code: u8, #[case] function: TaskFunction) {
    let mut i = logged_in(Limits::default());
    // A write collecting data is dropped by the connection itself.
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        0x20,
        4096,
        1,
        &WRITE10,
        &[],
    ));
    let ttt = r[0].ttt();
    i.send(&tmf_req(code, 0x21, 0, 2));
    assert_eq!(
        i.take_events(),
        vec![Event::TaskManagement(TaskManagementRequest {
            itt: 0x21,
            function,
            lun: 0,
        })]
    );
    assert!(i
        .send(&data_out(true, 0x20, ttt, 0, 0, &[0; 4096]))
        .is_empty());
    assert!(i.take_events().is_empty());
    i.conn
        .complete_task_management(0x21, TmfResponse::FunctionComplete);
    assert_eq!(i.drain()[0].opcode(), 0x22);
}

#[test]
fn task_reassign_and_unknown_functions_answered_here() {
    let mut i = logged_in(Limits::default());
    assert_eq!(
        i.send(&tmf_req(8, 1, 0, 1))[0].bhs[2],
        4,
        "allegiance reassignment not supported"
    );
    assert_eq!(
        i.send(&tmf_req(0x33, 2, 0, 1))[0].bhs[2],
        255,
        "function rejected"
    );
    assert!(i.take_events().is_empty());
}

#[test]
fn immediate_commands_do_not_advance_cmd_sn() {
    let mut i = logged_in(Limits::default());
    i.send(&scsi_cmd(true, true, false, false, 1, 0, 1, &[0; 6], &[]));
    i.conn.complete_command(1, good(vec![], 0));
    let r = i.drain();
    assert_eq!(r[0].exp_cmd_sn(), 1);
    i.send(&scsi_cmd(false, true, false, false, 2, 0, 1, &[0; 6], &[]));
    i.conn.complete_command(2, good(vec![], 0));
    let r = i.drain();
    assert_eq!(r[0].exp_cmd_sn(), 2);
}

#[test]
fn commands_delivered_in_cmd_sn_order_and_out_of_window_dropped() {
    let mut i = logged_in(Limits {
        command_window: 4,
        ..Limits::default()
    });
    // CmdSN 3 and 2 arrive before 1.
    i.send(&scsi_cmd(false, true, false, false, 3, 0, 3, &[0; 6], &[]));
    i.send(&scsi_cmd(false, true, false, false, 2, 0, 2, &[0; 6], &[]));
    assert!(i.take_events().is_empty());
    // Beyond MaxCmdSN (1 + 4 - 1 = 4): dropped. Below ExpCmdSN later: dropped.
    i.send(&scsi_cmd(false, true, false, false, 9, 0, 5, &[0; 6], &[]));
    i.send(&scsi_cmd(false, true, false, false, 1, 0, 1, &[0; 6], &[]));
    let itts: Vec<u32> = commands(i.take_events()).iter().map(|c| c.itt).collect();
    assert_eq!(itts, vec![1, 2, 3]);
    i.send(&scsi_cmd(false, true, false, false, 10, 0, 2, &[0; 6], &[]));
    assert!(i.take_events().is_empty());
    // With three outstanding, the window shrinks but MaxCmdSN never goes back.
    i.conn.complete_command(1, good(vec![], 0));
    let r = i.drain();
    assert_eq!(r[0].exp_cmd_sn(), 4);
    assert_eq!(r[0].max_cmd_sn(), 5, "4 + 4 - 2 outstanding - 1");
}

#[test]
fn bidirectional_command_fails_with_check_condition() {
    let mut i = logged_in(Limits::default());
    let r = i.send(&scsi_cmd(false, true, true, true, 4, 512, 1, &[0; 16], &[]));
    assert!(i.take_events().is_empty());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opcode(), 0x21);
    assert_eq!(r[0].bhs[3], 0x02);
    assert_eq!(r[0].data[2 + 2] & 0x0f, 0x05, "ILLEGAL REQUEST");
}

#[test]
fn extended_cdb_ahs() {
    let mut i = logged_in(Limits::default());
    let mut p = scsi_cmd(false, true, false, false, 4, 0, 1, &[0x7f; 16], &[]);
    // AHSLength 5 (= 20-byte CDB - 15), type 1, reserved, 4 more CDB bytes: 8 bytes.
    p[4] = 2;
    let ahs = [0x00, 0x05, 0x01, 0x00, 0xa1, 0xa2, 0xa3, 0xa4];
    p.splice(48..48, ahs);
    i.send(&p);
    let cmds = commands(i.take_events());
    assert_eq!(cmds[0].cdb.len(), 20);
    assert_eq!(&cmds[0].cdb[16..], &[0xa1, 0xa2, 0xa3, 0xa4]);
}

#[test]
fn input_split_at_every_byte_boundary() {
    let mut i = logged_in(Limits::default());
    let data = pattern(1000);
    let bytes = scsi_cmd(false, true, false, true, 1, 1000, 1, &WRITE10, &data);
    let mut buf = bytes::BytesMut::new();
    for b in &bytes {
        buf.extend_from_slice(&[*b]);
        i.conn.handle_input(&mut buf).unwrap();
    }
    assert!(buf.is_empty());
    let mut cmds = Vec::new();
    while let Some(Event::Command(c)) = i.conn.poll_event() {
        cmds.push(c);
    }
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].data_out == data[..]);
}

#[test]
fn f_clear_but_first_burst_used_by_immediate_data_goes_to_r2t() {
    let mut i = Initiator::new(config());
    let keys = kv(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "4096"),
    ]);
    let r = i.send(&login_req(true, 1, 3, 1, 1, &keys));
    assert_eq!(r[0].flags(), 0x87);
    i.take_events();
    let data = pattern(6000);
    let r = i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        1,
        6000,
        1,
        &WRITE10,
        &data[..4096],
    ));
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].opcode(), r[0].u32(40), r[0].u32(44)),
        (0x31, 4096, 1904)
    );
    i.send(&data_out(true, 1, r[0].ttt(), 0, 4096, &data[4096..]));
    let cmds = commands(i.take_events());
    assert!(cmds[0].data_out == data[..]);
}

#[test]
fn command_at_exp_cmd_sn_is_dropped_while_the_window_is_closed() {
    // RFC 7143 4.2.2.1: a non-immediate command outside [ExpCmdSN, MaxCmdSN] is dropped,
    // including CmdSN == ExpCmdSN when MaxCmdSN == ExpCmdSN - 1 (closed window).
    let mut i = Initiator::new(config_with(Limits {
        command_window: 1,
        ..Limits::default()
    }));
    let (_, op) = i.login_normal();
    assert_eq!((op.exp_cmd_sn(), op.max_cmd_sn()), (1, 1), "window of one");
    i.take_events();
    i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        1,
        4096,
        1,
        &READ10,
        &[],
    ));
    assert_eq!(commands(i.take_events()).len(), 1);
    // ExpCmdSN is now 2 and the advertised MaxCmdSN still 1: the window is closed.
    let r = i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        2,
        4096,
        2,
        &READ10,
        &[],
    ));
    assert!(r.is_empty());
    assert!(
        i.take_events().is_empty(),
        "CmdSN 2 is outside the closed window"
    );
    // Completing command 1 reopens the window: ExpCmdSN 2, MaxCmdSN 2.
    i.conn.complete_command(1, good(vec![0; 4096], 4096));
    let r = i.drain();
    let last = r.last().unwrap();
    assert_eq!((last.exp_cmd_sn(), last.max_cmd_sn()), (2, 2));
    i.send(&scsi_cmd(
        false,
        true,
        true,
        false,
        2,
        4096,
        2,
        &READ10,
        &[],
    ));
    assert_eq!(commands(i.take_events())[0].itt, 2);
}

#[test]
fn too_many_immediate_commands_are_rejected() {
    // Immediate commands do not use the CmdSN window; past max_immediate_tasks outstanding
    // ones the target answers Reject, reason 0x06 "Immediate Command Reject - too many
    // immediate commands" (RFC 7143 11.17.1), carrying the rejected header.
    let mut i = logged_in(Limits {
        max_immediate_tasks: 2,
        ..Limits::default()
    });
    for itt in 1..=2 {
        let r = i.send(&scsi_cmd(
            true,
            true,
            true,
            false,
            itt,
            512,
            1,
            &READ10,
            &[],
        ));
        assert!(r.is_empty());
    }
    assert_eq!(commands(i.take_events()).len(), 2);
    let third = scsi_cmd(true, true, true, false, 3, 512, 1, &READ10, &[]);
    let r = i.send(&third);
    assert!(i.take_events().is_empty());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opcode(), 0x3f, "Reject");
    assert_eq!(r[0].flags(), 0x80);
    assert_eq!(r[0].bhs[2], 0x06, "too many immediate commands");
    assert_eq!(r[0].itt(), 0xffff_ffff);
    assert_eq!(&r[0].data[..], &third[..48]);
    // Once one completes, an immediate command is accepted again.
    i.conn.complete_command(1, good(vec![0; 512], 512));
    i.drain();
    i.send(&third);
    assert_eq!(commands(i.take_events())[0].itt, 3);
}

#[test]
fn default_per_command_data_limit_is_the_scsi_maximum_transfer() {
    // crates/scsi refuses transfers above 8 MiB (sbc::MAX_TRANSFER_BYTES).
    assert_eq!(Limits::default().max_command_data_out, 8 * 1024 * 1024);
}

#[test]
fn write_above_the_data_limit_is_delivered_at_once_without_its_data() {
    let mut i = logged_in(Limits {
        max_command_data_out: 65_536,
        ..Limits::default()
    });
    // libiscsi's offer: InitialR2T=No, FirstBurstLength=262144. F=0: unsolicited data follows.
    let r = i.send(&scsi_cmd(
        false,
        false,
        false,
        true,
        7,
        131_072,
        1,
        &WRITE10,
        &pattern(4096),
    ));
    assert!(r.is_empty(), "no R2T: nothing is solicited");
    let cmds = commands(i.take_events());
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].itt, 7);
    assert_eq!(cmds[0].expected_len, 131_072);
    assert!(cmds[0].write);
    assert!(cmds[0].data_out.is_empty(), "nothing buffered");
    assert!(cmds[0].data_out_discarded);
    // Unsolicited data still arriving for it is dropped silently.
    let r = i.send(&data_out(false, 7, 0xffff_ffff, 0, 4096, &pattern(8192)));
    assert!(r.is_empty());
    assert!(i.take_events().is_empty());
    i.conn.complete_command(
        7,
        CommandResponse {
            status: 0x02,
            data_in: Bytes::new(),
            sense: Some(Bytes::from_static(&[
                0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0,
            ])),
            transfer_len: 0,
        },
    );
    let r = i.drain();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].opcode(), r[0].bhs[3]),
        (0x21, 0x02),
        "CHECK CONDITION"
    );
    // ... and after the response too, without closing the connection.
    let r = i.send(&data_out(true, 7, 0xffff_ffff, 2, 12_288, &pattern(8192)));
    assert!(r.is_empty());
    // The connection goes on.
    i.send(&scsi_cmd(false, true, true, false, 8, 512, 2, &READ10, &[]));
    assert_eq!(commands(i.take_events())[0].itt, 8);
}

#[test]
fn write_at_the_data_limit_is_collected() {
    let mut i = logged_in(Limits {
        max_command_data_out: 65_536,
        ..Limits::default()
    });
    let r = i.send(&scsi_cmd(
        false,
        true,
        false,
        true,
        7,
        65_536,
        1,
        &WRITE10,
        &[],
    ));
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].opcode(), r[0].u32(44)),
        (0x31, 65_536),
        "R2T for all of it"
    );
}

/// LUN 1 in the LUN field (SAM-5 4.7.7, peripheral device addressing: byte 1).
const LUN1: u64 = 0x0001_0000_0000_0000;

/// TEST UNIT READY (no data) with tag `itt`, CmdSN `sn`, on LUN field `lun`.
fn tur_on(itt: u32, sn: u32, lun: u64) -> Vec<u8> {
    let mut p = scsi_cmd(false, true, false, false, itt, 0, sn, &[0; 6], &[]);
    p[8..16].copy_from_slice(&lun.to_be_bytes()); // LUN (RFC 7143 11.3)
    p
}

fn command_tags(events: Vec<Event>) -> Vec<u32> {
    commands(events).iter().map(|c| c.itt).collect()
}

/// ABORT TASK SET, CLEAR TASK SET and the resets also take the commands still waiting
/// for their CmdSN turn (RFC 7143 11.5.1: every command with a CmdSN below the
/// function's is in the task set; SAM-5 7): those received out of order and held here,
/// and one not yet received (a gap) that arrives after the function. They are dropped
/// without a response, keep their CmdSN (ExpCmdSN moves past them), and a command on
/// another LUN survives a LUN-scoped function.
#[rstest::rstest]
#[case::abort_task_set(2, TaskFunction::AbortTaskSet, &[0x13])]
#[case::clear_task_set(4, TaskFunction::ClearTaskSet, &[0x13])]
#[case::lun_reset(5, TaskFunction::LogicalUnitReset, &[0x13])]
#[case::target_warm_reset(6, TaskFunction::TargetWarmReset, &[])]
fn task_set_functions_drop_commands_waiting_for_their_cmd_sn_turn(
    #[case] code: u8,
    #[case] function: TaskFunction,
    #[case] survivors: &[u32],
) {
    let mut i = logged_in(Limits::default());
    // CmdSN 1 is late; 2 (LUN 0), 3 (LUN 1) and 4 (LUN 0) wait for it.
    for (itt, sn, lun) in [(0x12, 2, 0), (0x13, 3, LUN1), (0x14, 4, 0)] {
        assert!(i.send(&tur_on(itt, sn, lun)).is_empty());
    }
    assert!(i.take_events().is_empty());
    // Immediate, CmdSN 5: the next CmdSN the initiator would use.
    i.send(&tmf_req(code, 0x30, 0xffff_ffff, 5));
    assert_eq!(
        i.take_events(),
        vec![Event::TaskManagement(TaskManagementRequest {
            itt: 0x30,
            function,
            lun: 0,
        })]
    );
    i.conn
        .complete_task_management(0x30, TmfResponse::FunctionComplete);
    let r = i.drain();
    // Task Management Function Response (0x22), Response 0: function complete.
    assert_eq!((r[0].opcode(), r[0].bhs[2], r[0].itt()), (0x22, 0, 0x30));
    // CmdSN 1 arrives (sent before the function): dropped, and with it 2 and 4.
    assert!(i.send(&tur_on(0x11, 1, 0)).is_empty());
    assert_eq!(command_tags(i.take_events()), survivors);
    // Commands after the function run, and ExpCmdSN counted the dropped ones.
    assert!(i.send(&tur_on(0x15, 5, 0)).is_empty());
    assert_eq!(command_tags(i.take_events()), [0x15]);
    for &itt in survivors {
        i.conn.complete_command(itt, good(vec![], 0));
    }
    i.conn.complete_command(0x15, good(vec![], 0));
    let r = i.drain();
    let last = r.last().unwrap();
    // SCSI Response (0x21) for 0x15; ExpCmdSN (bytes 28..32) = 6.
    assert_eq!((last.opcode(), last.itt()), (0x21, 0x15));
    assert_eq!(last.bhs[28..32], 6u32.to_be_bytes());
}

/// ABORT TASK of a command not yet received (RefCmdSN inside the window, before the
/// function: "function complete", RFC 7143 11.5.1): when it arrives it is dropped, and the
/// command behind it in CmdSN order runs.
#[test]
fn a_command_aborted_before_it_arrived_is_dropped_when_it_comes() {
    let mut i = logged_in(Limits::default());
    assert!(i.send(&tur_on(0x12, 2, 0)).is_empty());
    let mut p = tmf_req(1, 0x30, 0x11, 3);
    p[32..36].copy_from_slice(&1u32.to_be_bytes()); // RefCmdSN
    let r = i.send(&p);
    assert_eq!((r[0].opcode(), r[0].bhs[2], r[0].itt()), (0x22, 0, 0x30));
    assert!(i.send(&tur_on(0x11, 1, 0)).is_empty());
    assert_eq!(command_tags(i.take_events()), [0x12]);
}

/// The layer above aborting a LUN's task set itself (PREEMPT AND ABORT) also takes the
/// commands waiting for their CmdSN turn on that LUN; a command that arrives afterwards
/// is not in that task set and runs, as does one on another LUN.
#[test]
fn the_layer_above_aborts_commands_waiting_for_their_cmd_sn_turn_on_a_lun() {
    let mut i = logged_in(Limits::default());
    for (itt, sn, lun) in [(0x12, 2, 0), (0x13, 3, LUN1)] {
        assert!(i.send(&tur_on(itt, sn, lun)).is_empty());
    }
    assert_eq!(i.conn.abort_collecting(|lun| lun == 0), 1);
    assert!(i.drain().is_empty());
    assert!(i.send(&tur_on(0x11, 1, 0)).is_empty());
    assert_eq!(command_tags(i.take_events()), [0x11, 0x13]);
}
