//! Store behaviour the fake gfapi cannot produce — a store breaking its contract — through a
//! `mockall` mock behind a LUN of an in-process target, driven by libiscsi.

mod support;

use bytes::Bytes;
use daemon::{serve, ConnectionLimits, LunSpec, Server, Targets};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store_api::{BlockStore, Capabilities, Geometry, IoReply, IoRequest, MockBlockStore};
use support::{be32, raw_session, recv_pdu, scsi_command, send_pdu, tmf_request};
use testkit::initiator::Initiator;

const IQN: &str = "iqn.2026-11.io.glfs-iscsi:mock";

/// A target served on its own runtime thread; stops when dropped.
struct InProcess {
    portal: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn serve(store: Arc<dyn BlockStore>, command_timeout: Option<Duration>) -> InProcess {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let portal = listener.local_addr().unwrap();
        let lun = LunSpec {
            lun: 0,
            read_only: false,
            soft_threshold: Default::default(),
            store: Default::default(),
        };
        let targets = Targets::with_stores(
            vec![(IQN.into(), vec![(lun, store)])],
            portal,
            Default::default(),
        )
        .unwrap();
        let server = Server {
            connection: ConnectionLimits {
                command_timeout,
                ..ConnectionLimits::default()
            },
            drain_timeout: Duration::from_secs(1),
            ..Server::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(serve(&server, listener, Arc::new(targets), async {
                let _ = stopped.await;
            }));
        });
        InProcess {
            portal,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connect(&self) -> Initiator {
        Initiator::connect(&self.portal.to_string(), IQN, 0).unwrap()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

fn mock_store(
    submit: impl Fn(IoRequest, store_api::Completion) + Send + Sync + 'static,
) -> Arc<dyn BlockStore> {
    let mut store = MockBlockStore::new();
    store.expect_geometry().return_const(Geometry {
        block_size: 512,
        num_blocks: 2048,
    });
    store
        .expect_capabilities()
        .return_const(Capabilities::default());
    store.expect_describe().return_const("mock".to_string());
    store.expect_read_metadata().returning(|_| Ok(None));
    store.expect_submit().returning(submit);
    // Joins no writes or reads: the daemon hands it each request at once.
    store.expect_joins_writes().return_const(false);
    store.expect_joins_reads().return_const(false);
    Arc::new(store)
}

#[test]
fn a_read_reply_of_the_wrong_length_is_a_medium_error_not_a_crash() {
    let store = mock_store(|req, done| match req {
        IoRequest::Read { len, .. } => {
            done.complete(Ok(IoReply::Data(Bytes::from(vec![7u8; len as usize / 2]))))
        }
        _ => done.complete(Ok(IoReply::Done)),
    });
    let target = InProcess::serve(store, None);
    let mut init = target.connect();
    let err = init.read10(0, 2, 512).unwrap_err();
    let scsi = err.scsi().expect("a SCSI error");
    // MEDIUM ERROR (03h), UNRECOVERED READ ERROR (11h/00h)
    assert_eq!(
        (scsi.status, scsi.sense_key, scsi.asc, scsi.ascq),
        (0x02, 0x03, 0x11, 0x00)
    );
    init.test_unit_ready().unwrap();
}

#[test]
fn a_store_that_never_completes_is_cut_off_by_the_command_time_limit() {
    let store = mock_store(|req, done| match req {
        // Contract violation: the completion is dropped without being called.
        IoRequest::Write { .. } => drop(done),
        _ => done.complete(Ok(IoReply::Done)),
    });
    let target = InProcess::serve(store, Some(Duration::from_secs(1)));
    let mut init = target.connect();
    let started = Instant::now();
    let err = init.write10(0, &[1u8; 512], 512).unwrap_err();
    let scsi = err.scsi().expect("a SCSI error");
    // ABORTED COMMAND (0Bh), LOGICAL UNIT COMMUNICATION TIME-OUT (08h/01h)
    assert_eq!(
        (scsi.status, scsi.sense_key, scsi.asc, scsi.ascq),
        (0x02, 0x0b, 0x08, 0x01)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    init.test_unit_ready().unwrap();
}

#[test]
fn completions_from_foreign_threads_in_any_order_reach_the_right_commands() {
    // Flushes finish late on a thread of their own, reads at once: SYNCHRONIZE CACHE and
    // READ must each get their own answer.
    let store = mock_store(|req, done| match req {
        IoRequest::Flush => {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                done.complete(Ok(IoReply::Done));
            });
        }
        IoRequest::Read { offset, len } => {
            let byte = (offset / 512) as u8;
            std::thread::spawn(move || {
                done.complete(Ok(IoReply::Data(Bytes::from(vec![byte; len as usize]))))
            });
        }
        _ => done.complete(Ok(IoReply::Done)),
    });
    let target = InProcess::serve(store, Some(Duration::from_secs(5)));
    let mut init = target.connect();
    for lba in 0..20u64 {
        init.synchronize_cache().unwrap();
        assert_eq!(init.read10(lba, 1, 512).unwrap(), vec![lba as u8; 512]);
    }
}

#[test]
fn a_late_completion_does_not_answer_a_newer_command_with_the_same_task_tag() {
    // Reads are held until the test completes them; each read's data is its LBA.
    type Held = Arc<Mutex<Vec<(u64, store_api::Completion)>>>;
    let held: Held = Arc::default();
    let store = {
        let held = held.clone();
        mock_store(move |req, done| match req {
            IoRequest::Read { offset, .. } => held.lock().unwrap().push((offset, done)),
            _ => done.complete(Ok(IoReply::Done)),
        })
    };
    let take = |lba: u64| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut held = held.lock().unwrap();
            if let Some(i) = held.iter().position(|(offset, _)| *offset == lba * 512) {
                return held.remove(i).1;
            }
            drop(held);
            assert!(
                Instant::now() < deadline,
                "no read of LBA {lba} reached the store"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let target = InProcess::serve(store, Some(Duration::from_secs(1)));
    let (mut stream, exp_stat_sn) = raw_session(target.portal, IQN);
    const ITT: u32 = 7;

    // READ(10) of LBA 1 hangs in the store and is answered at the time limit.
    let read_lba1 = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
    send_pdu(
        &mut stream,
        scsi_command(&read_lba1, ITT, 1, exp_stat_sn, 512, false),
        &[],
    );
    let old = take(1);
    let (resp, _) = recv_pdu(&mut stream);
    assert_eq!(resp[0] & 0x3f, 0x21, "SCSI Response expected");
    assert_eq!(be32(&resp[16..]), ITT);
    assert_eq!(resp[3], 0x02, "CHECK CONDITION at the time limit");

    // The initiator reuses the task tag for READ(10) of LBA 2, which the store holds too.
    let read_lba2 = [0x28, 0, 0, 0, 0, 2, 0, 0, 1, 0];
    send_pdu(
        &mut stream,
        scsi_command(&read_lba2, ITT, 2, exp_stat_sn + 1, 512, false),
        &[],
    );
    let new = take(2);

    // The old read finishes late: its data must not answer the new command.
    old.complete(Ok(IoReply::Data(Bytes::from(vec![1u8; 512]))));
    std::thread::sleep(Duration::from_millis(200));
    new.complete(Ok(IoReply::Data(Bytes::from(vec![2u8; 512]))));
    let (resp, data) = recv_pdu(&mut stream);
    assert_eq!(resp[0] & 0x3f, 0x25, "SCSI Data-In expected");
    assert_eq!(be32(&resp[16..]), ITT);
    assert_eq!(data, vec![2u8; 512], "the new command's own data");
}

/// The bytes of the store the read tests below serve: different at every offset.
fn byte_at(offset: u64) -> u8 {
    (offset % 251) as u8 ^ (offset >> 16) as u8
}

fn bytes_at(offset: u64, len: usize) -> Bytes {
    (offset..offset + len as u64).map(byte_at).collect()
}

/// A plain READ's completion takes its data in parts, and each part goes out as Data-In
/// at once, before the store has finished the read (the first PDU is received here while
/// the store still holds the rest, so it cannot have waited for the completion); the
/// rest follows with the status in the last Data-In, one sequence (DataSN, buffer offset)
/// across parts and rest (RFC 7143 11.7).
#[test]
fn a_reads_parts_leave_as_data_in_before_the_store_completes() {
    type Held = Arc<Mutex<Option<store_api::Completion>>>;
    let held: Held = Arc::default();
    const KIB64: usize = 64 << 10;
    let store = {
        let held = held.clone();
        mock_store(move |req, done| match req {
            IoRequest::Read { offset, len } => {
                assert!(done.takes_parts(), "a plain READ takes parts");
                assert_eq!((offset, len), (0, 4 * KIB64 as u32));
                done.part(bytes_at(0, KIB64));
                *held.lock().unwrap() = Some(done);
            }
            _ => done.complete(Ok(IoReply::Done)),
        })
    };
    let target = InProcess::serve(store, Some(Duration::from_secs(20)));
    let (mut stream, exp_stat_sn) = raw_session(target.portal, IQN);
    const ITT: u32 = 9;
    // READ(10) of 512 blocks (256 KiB) at LBA 0; the initiator takes 64 KiB per PDU.
    let read = [0x28, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0];
    send_pdu(
        &mut stream,
        scsi_command(&read, ITT, 1, exp_stat_sn, 4 * KIB64 as u32, false),
        &[],
    );
    let (first, data) = recv_pdu(&mut stream);
    assert_eq!(first[0] & 0x3f, 0x25, "SCSI Data-In expected");
    assert_eq!(first[1], 0x00, "neither F nor S: more data follows");
    assert_eq!(be32(&first[16..]), ITT);
    assert_eq!(
        (be32(&first[36..]), be32(&first[40..])),
        (0, 0),
        "DataSN, offset"
    );
    assert!(data == bytes_at(0, KIB64), "the first part");
    let done = held
        .lock()
        .unwrap()
        .take()
        .expect("the store still holds the read");
    done.part(bytes_at(KIB64 as u64, KIB64));
    done.complete(Ok(IoReply::Data(bytes_at(2 * KIB64 as u64, 2 * KIB64))));
    for n in 1..4u32 {
        let (pdu, data) = recv_pdu(&mut stream);
        assert_eq!(pdu[0] & 0x3f, 0x25, "SCSI Data-In expected");
        assert_eq!(be32(&pdu[36..]), n, "DataSN");
        let offset = be32(&pdu[40..]);
        assert_eq!(offset as usize, n as usize * KIB64, "buffer offset");
        assert!(data == bytes_at(u64::from(offset), KIB64), "PDU {n}");
        if n == 3 {
            // F and S, status GOOD, no residual (RFC 7143 11.7.1).
            assert_eq!((pdu[1], pdu[3]), (0x81, 0x00));
        } else {
            assert_eq!(pdu[1], 0x00);
        }
    }
}

/// Parts of any size from another thread: libiscsi reads exactly the store's bytes.
#[test]
fn a_read_in_odd_parts_from_another_thread_reads_back_whole() {
    let store = mock_store(|req, done| match req {
        IoRequest::Read { offset, len } => {
            std::thread::spawn(move || {
                let mut at = 0u64;
                if done.takes_parts() {
                    for size in [1000u64, 100_000, 7] {
                        let size = size.min(u64::from(len) - at - 1);
                        if size > 0 {
                            done.part(bytes_at(offset + at, size as usize));
                            at += size;
                        }
                    }
                }
                let rest = bytes_at(offset + at, len as usize - at as usize);
                done.complete(Ok(IoReply::Data(rest)));
            });
        }
        _ => done.complete(Ok(IoReply::Done)),
    });
    let target = InProcess::serve(store, Some(Duration::from_secs(20)));
    let mut init = target.connect();
    for (lba, blocks) in [(0u64, 2048u32), (3, 1), (100, 300)] {
        let got = init.read10(lba, blocks, 512).unwrap();
        let want = bytes_at(lba * 512, blocks as usize * 512);
        assert!(got == want, "READ(10) of {blocks} blocks at LBA {lba}");
    }
}

/// PERSISTENT RESERVE OUT (SPC-4 table 169) with the basic 24-byte parameter list (table
/// 171): RESERVATION KEY, SERVICE ACTION RESERVATION KEY.
fn prout(sa: u8, kind: u8, key: u64, sa_key: u64) -> ([u8; 10], Vec<u8>) {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    ([0x5F, sa, kind, 0, 0, 0, 0, 0, 24, 0], p)
}

#[test]
fn preempt_and_abort_aborts_the_preempted_hosts_commands_in_flight() {
    const KEY_A: u64 = 0xA;
    const KEY_B: u64 = 0xB;
    // Writes are held in the store until the test lets them go.
    let held: Arc<Mutex<Vec<store_api::Completion>>> = Arc::default();
    let store = {
        let held = held.clone();
        mock_store(move |req, done| match req {
            IoRequest::Write { .. } => held.lock().unwrap().push(done),
            _ => done.complete(Ok(IoReply::Done)),
        })
    };
    let target = InProcess::serve(store, Some(Duration::from_secs(60)));
    // Host A through libiscsi, host B on a raw session.
    let mut a = target.connect();
    let (mut b, mut exp) = raw_session(target.portal, IQN);

    // B registers (REGISTER, 00h), A registers.
    let (cdb, p) = prout(0x00, 0, 0, KEY_B);
    send_pdu(&mut b, scsi_command(&cdb, 1, 1, exp, 24, true), &p);
    let (resp, _) = recv_pdu(&mut b);
    assert_eq!((resp[0] & 0x3f, resp[3]), (0x21, 0), "B registers");
    exp = be32(&resp[24..]) + 1;
    let (cdb, p) = prout(0x00, 0, 0, KEY_A);
    assert_eq!(a.raw_command(&cdb, &p, 0).unwrap().status, 0, "A registers");

    // B's WRITE(10) of LBA 8 reaches the store and stays there.
    let write = [0x2A, 0, 0, 0, 0, 8, 0, 0, 1, 0];
    send_pdu(
        &mut b,
        scsi_command(&write, 0x20, 2, exp, 512, true),
        &[0x5A; 512],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "B's write never reached the store"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // A: PREEMPT AND ABORT (05h), type Write Exclusive, B's key.
    let (cdb, p) = prout(0x05, 0x01, KEY_A, KEY_B);
    assert_eq!(
        a.raw_command(&cdb, &p, 0).unwrap().status,
        0,
        "A preempts B"
    );

    // B's write was aborted: ABORT TASK (function 1) finds no such task (RFC 7143 11.6.1:
    // response 1, "Task does not exist").
    send_pdu(&mut b, tmf_request(1, 0, 0x21, 0x20, 3, exp, 2), &[]);
    let (resp, _) = recv_pdu(&mut b);
    assert_eq!(resp[0] & 0x3f, 0x22, "Task Management Function Response");
    assert_eq!(be32(&resp[16..]), 0x21);
    assert_eq!(resp[2], 1, "the preempted write is no longer a task");
    exp = be32(&resp[24..]) + 1;

    // The store finishes the write late: no response for it. B's next command is told of
    // the preemption: UNIT ATTENTION, REGISTRATIONS PREEMPTED (2Ah/05h).
    held.lock()
        .unwrap()
        .pop()
        .unwrap()
        .complete(Ok(IoReply::Done));
    send_pdu(&mut b, scsi_command(&[0; 6], 0x22, 3, exp, 0, false), &[]);
    let (resp, data) = recv_pdu(&mut b);
    assert_eq!(resp[0] & 0x3f, 0x21, "SCSI Response");
    assert_eq!(
        be32(&resp[16..]),
        0x22,
        "for TEST UNIT READY, not the aborted write"
    );
    assert_eq!(resp[3], 0x02, "CHECK CONDITION");
    // Data segment: SenseLength (2 bytes), then fixed-format sense (SPC-4 table 50).
    let sense = &data[2..];
    assert_eq!((sense[2] & 0x0f, sense[12], sense[13]), (0x06, 0x2A, 0x05));
}

/// Requests the store holds until the test lets them go: (write?, LBA, completion).
type HeldIo = Arc<Mutex<Vec<(bool, u64, store_api::Completion)>>>;

/// A store that holds every read and write until the test completes it.
fn holding_store() -> (Arc<dyn BlockStore>, HeldIo) {
    let held: HeldIo = Arc::default();
    let store = {
        let held = held.clone();
        mock_store(move |req, done| match req {
            IoRequest::Read { offset, .. } => {
                held.lock().unwrap().push((false, offset / 512, done))
            }
            IoRequest::Write { offset, .. } => {
                held.lock().unwrap().push((true, offset / 512, done))
            }
            _ => done.complete(Ok(IoReply::Done)),
        })
    };
    (store, held)
}

/// What the store holds now: (write?, LBA), in the order it got them.
fn holding(held: &HeldIo) -> Vec<(bool, u64)> {
    held.lock()
        .unwrap()
        .iter()
        .map(|(w, lba, _)| (*w, *lba))
        .collect()
}

/// Waits until the store holds the read or write of `lba`, and lets it finish (a read with
/// 512 bytes of `lba`'s low byte).
fn finish(held: &HeldIo, write: bool, lba: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut h = held.lock().unwrap();
        if let Some(i) = h.iter().position(|(w, l, _)| (*w, *l) == (write, lba)) {
            let (_, _, done) = h.remove(i);
            drop(h);
            let reply = if write {
                IoReply::Done
            } else {
                IoReply::Data(Bytes::from(vec![lba as u8; 512]))
            };
            done.complete(Ok(reply));
            return;
        }
        drop(h);
        assert!(
            Instant::now() < deadline,
            "LBA {lba} never reached the store"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Task attributes, the ATTR field of a SCSI Command (RFC 7143 11.3.1: byte 1 bits 0-2;
/// SAM-5 8.6).
const SIMPLE: u8 = 1;
const ORDERED: u8 = 2;
const HEAD_OF_QUEUE: u8 = 3;
const ACA: u8 = 4;

/// A SCSI Command header with task attribute `attr`.
fn with_attr(mut bhs: [u8; 48], attr: u8) -> [u8; 48] {
    bhs[1] = (bhs[1] & !0x07) | attr;
    bhs
}

/// READ (10) and WRITE (10) of one block at `lba` (SBC-3 5.11, 5.32).
fn read10(lba: u8) -> [u8; 10] {
    [0x28, 0, 0, 0, 0, lba, 0, 0, 1, 0]
}
fn write10(lba: u8) -> [u8; 10] {
    [0x2A, 0, 0, 0, 0, lba, 0, 0, 1, 0]
}

/// A logged-in raw session on a store that holds its requests ([`holding_store`]): the
/// target, the held requests, the stream and the next ExpStatSN.
fn holding_session() -> (InProcess, HeldIo, std::net::TcpStream, u32) {
    let (store, held) = holding_store();
    let target = InProcess::serve(store, Some(Duration::from_secs(60)));
    let (s, exp) = raw_session(target.portal, IQN);
    (target, held, s, exp)
}

/// The next command's answer: (task tag, status, data-in), from its Data-In PDUs and the
/// SCSI Response or the final Data-In with status (S bit, byte 1 bit 0; status in byte 3).
fn answer(stream: &mut std::net::TcpStream) -> (u32, u8, Vec<u8>) {
    let mut data_in = Vec::new();
    loop {
        let (bhs, data) = recv_pdu(stream);
        match bhs[0] & 0x3f {
            0x21 => return (be32(&bhs[16..]), bhs[3], data_in),
            0x25 => {
                data_in.extend_from_slice(&data);
                if bhs[1] & 0x01 != 0 {
                    return (be32(&bhs[16..]), bhs[3], data_in);
                }
            }
            op => panic!("a SCSI Response or Data-In expected, got opcode {op:#x}"),
        }
    }
}

#[test]
fn an_ordered_command_waits_for_the_commands_before_it_and_holds_those_after() {
    let (_target, held, mut s, exp) = holding_session();

    // A SIMPLE write of LBA 1 reaches the store and stays there.
    let cmd = scsi_command(&write10(1), 1, 1, exp, 512, true);
    send_pdu(&mut s, with_attr(cmd, SIMPLE), &[0x11; 512]);
    // An ORDERED read of LBA 2 must wait for it; a SIMPLE read of LBA 3 after the ORDERED
    // one must wait for that.
    let cmd = scsi_command(&read10(2), 2, 2, exp, 512, false);
    send_pdu(&mut s, with_attr(cmd, ORDERED), &[]);
    let cmd = scsi_command(&read10(3), 3, 3, exp, 512, false);
    send_pdu(&mut s, with_attr(cmd, SIMPLE), &[]);
    // HEAD OF QUEUE starts at once. Its reaching the store also shows the commands sent
    // before it were taken in, so what the store holds then is what started.
    let cmd = scsi_command(&read10(4), 4, 4, exp, 512, false);
    send_pdu(&mut s, with_attr(cmd, HEAD_OF_QUEUE), &[]);
    finish(&held, false, 4);
    assert_eq!(answer(&mut s), (4, 0, vec![4; 512]));
    assert_eq!(
        holding(&held),
        [(true, 1)],
        "only the write before the ORDERED read"
    );

    // The write ends: the ORDERED read starts (before the write's answer goes out), the
    // SIMPLE read behind it still waits.
    finish(&held, true, 1);
    assert_eq!(answer(&mut s), (1, 0, vec![]));
    assert_eq!(holding(&held), [(false, 2)]);
    finish(&held, false, 2);
    assert_eq!(answer(&mut s), (2, 0, vec![2; 512]));
    assert_eq!(holding(&held), [(false, 3)]);
    finish(&held, false, 3);
    assert_eq!(answer(&mut s), (3, 0, vec![3; 512]));
}

#[test]
fn an_aca_command_is_refused_and_never_reaches_the_store() {
    // SAM-5 8.6: ATTR 4 is ACA. The standard INQUIRY data says NormACA=0 (SPC-4 6.6.2: the
    // ACA task attribute is not supported), so such a command ends at once with CHECK
    // CONDITION (02h), ILLEGAL REQUEST (5h), INVALID MESSAGE ERROR (49h/00h).
    let (_target, held, mut s, exp) = holding_session();

    // A write with its data (immediate) and a read, both ACA.
    let cmd = scsi_command(&write10(1), 1, 1, exp, 512, true);
    send_pdu(&mut s, with_attr(cmd, ACA), &[0x11; 512]);
    let cmd = scsi_command(&read10(2), 2, 2, exp, 512, false);
    send_pdu(&mut s, with_attr(cmd, ACA), &[]);
    for tag in [1, 2] {
        let (resp, data) = recv_pdu(&mut s);
        assert_eq!(resp[0] & 0x3f, 0x21, "SCSI Response");
        assert_eq!(be32(&resp[16..]), tag);
        assert_eq!(resp[3], 0x02, "CHECK CONDITION");
        // Data segment: SenseLength (2 bytes), then fixed-format sense (SPC-4 table 50).
        let sense = &data[2..];
        assert_eq!((sense[2] & 0x0f, sense[12], sense[13]), (0x05, 0x49, 0x00));
    }

    // The session goes on: a SIMPLE read after them is the first request the store sees.
    let cmd = scsi_command(&read10(3), 3, 3, exp, 512, false);
    send_pdu(&mut s, with_attr(cmd, SIMPLE), &[]);
    finish(&held, false, 3);
    assert_eq!(answer(&mut s), (3, 0, vec![3; 512]));
    assert!(holding(&held).is_empty(), "nothing else reached the store");
}

/// A session on a store that holds its requests ([`holding_store`]), with a SIMPLE write of
/// LBA 1 (task tag 1) held by the store and an ORDERED read of LBA 2 (tag 2) sent behind
/// it; CmdSN 3 is next.
fn a_write_held_and_an_ordered_read_behind_it() -> (InProcess, HeldIo, std::net::TcpStream, u32) {
    let (target, held, mut s, exp) = holding_session();
    send_pdu(
        &mut s,
        scsi_command(&write10(1), 1, 1, exp, 512, true),
        &[0x11; 512],
    );
    send_pdu(
        &mut s,
        with_attr(scsi_command(&read10(2), 2, 2, exp, 512, false), ORDERED),
        &[],
    );
    (target, held, s, exp)
}

#[test]
fn a_command_waiting_behind_an_ordered_one_can_be_aborted_and_never_runs() {
    let (_target, held, mut s, exp) = a_write_held_and_an_ordered_read_behind_it();
    // ABORT TASK (function 1) of the read: it existed, so FUNCTION COMPLETE (0).
    send_pdu(&mut s, tmf_request(1, 0, 0x10, 2, 3, exp, 2), &[]);
    let (resp, _) = recv_pdu(&mut s);
    assert_eq!(resp[0] & 0x3f, 0x22, "Task Management Function Response");
    assert_eq!((be32(&resp[16..]), resp[2]), (0x10, 0));
    assert_eq!(holding(&held), [(true, 1)]);

    // The write ends; TEST UNIT READY after it. No answer and no store request for the
    // aborted read, ever.
    finish(&held, true, 1);
    send_pdu(&mut s, scsi_command(&[0; 6], 3, 3, exp, 0, false), &[]);
    // Both SIMPLE: their answers may come in either order.
    let mut answers = [answer(&mut s), answer(&mut s)];
    answers.sort();
    assert_eq!(answers, [(1, 0, vec![]), (3, 0, vec![])]);
    assert!(holding(&held).is_empty());
}

#[test]
fn abort_task_set_takes_the_commands_waiting_behind_an_ordered_one_too() {
    // A write held by the store, an ORDERED read waiting for it, a SIMPLE read behind that.
    let (_target, held, mut s, exp) = a_write_held_and_an_ordered_read_behind_it();
    send_pdu(&mut s, scsi_command(&read10(3), 3, 3, exp, 512, false), &[]);
    // ABORT TASK SET (function 2) on LUN 0: FUNCTION COMPLETE (0).
    send_pdu(&mut s, tmf_request(2, 0, 0x10, 0xffff_ffff, 4, exp, 0), &[]);
    let (resp, _) = recv_pdu(&mut s);
    assert_eq!(resp[0] & 0x3f, 0x22, "Task Management Function Response");
    assert_eq!((be32(&resp[16..]), resp[2]), (0x10, 0));

    // The write finishes late: nothing answers it, nor the two reads, which never reach
    // the store. The next command is answered.
    finish(&held, true, 1);
    send_pdu(&mut s, scsi_command(&[0; 6], 4, 4, exp, 0, false), &[]);
    assert_eq!(answer(&mut s), (4, 0, vec![]));
    assert!(holding(&held).is_empty());
}
