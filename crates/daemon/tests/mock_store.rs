//! Store behaviour the fake gfapi cannot produce — a store breaking its contract — through a
//! `mockall` mock behind a LUN of an in-process target, driven by libiscsi.

use bytes::Bytes;
use daemon::{serve, ConnectionLimits, LunSpec, Server, Targets};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store_api::{BlockStore, Capabilities, Geometry, IoReply, IoRequest, MockBlockStore};
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
            store: Default::default(),
        };
        let targets = Targets::with_stores(
            vec![(IQN.into(), vec![(lun, store)])],
            portal,
            Default::default(),
        )
        .unwrap();
        let server = Server {
            connection: ConnectionLimits { command_timeout },
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
    store.expect_submit().returning(submit);
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
