//! The glfs store survives a lost connection (field failure #11): requests fail with
//! `NotConnected` (not EIO) while one background loop mounts the volume again, and I/O
//! resumes by itself. Runs on the fake libgfapi (`cargo xtask build-fake`) with its
//! `disconnect` and `hang` fault rules.
//!
//! The tests of fail-fast behaviour open their stores with `hold=0`; the `held_*` tests
//! check the default, where requests wait (bounded) for the reconnect.
//!
//! The fake counts `glfs_init` calls for us: with `loglevel=7` every mount logs
//! "volume mounted from", and every init a fault rule hits logs "fault injected on init".

use backstore::{open_glfs_store, ConnectionState, GlfsStore, StoreOptions};
use bytes::Bytes;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store_api::{BlockStore, Completion, ErrorKind, IoReply, IoRequest, IoResult, Op};
use testkit::fake::{fake_library_path, FakeRoot, FaultRule};

const SIZE: u64 = 4 << 20;
/// Upper bound for a request that fails fast. A request that waited for the reconnect
/// would take the whole outage (seconds); the margin is for a loaded 2-core machine.
const FAST: Duration = Duration::from_millis(250);

/// One fake root per test, named by `GFAPI_FAKE_ROOT` (process-wide), so tests in one
/// process (`cargo test`) take turns.
struct Env {
    root: FakeRoot,
    _turn: MutexGuard<'static, ()>,
}

impl Env {
    fn new() -> Env {
        static TURN: Mutex<()> = Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        // Mounts of an earlier test's root, left idle (they linger), are not reused.
        backstore::close_idle_mounts();
        let root = FakeRoot::new();
        std::env::set_var(testkit::fake::ENV_ROOT, root.path());
        Env { root, _turn: turn }
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.root.path().join("gfapi.log")
    }

    /// Opens `vol@localhost:file` (created with `SIZE` bytes), logging to the root's log.
    fn open(&self, vol: &str, file: &str, extra_opts: &str) -> Arc<GlfsStore> {
        self.root.create_volume(vol);
        open_glfs_store(&StoreOptions {
            bstype: "glfs".into(),
            backing_store: format!("{vol}@localhost:{file}"),
            bsopts: format!(
                "logfile={};loglevel=7;{extra_opts}",
                self.log_path().display()
            ),
            create_size: Some(SIZE),
            gfapi_library: Some(fake_library_path()),
            ..Default::default()
        })
        .unwrap()
    }

    fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .matches(needle)
            .count()
    }

    /// Successful mounts so far.
    fn mounts(&self) -> usize {
        self.log_count("volume mounted from")
    }

    /// glfs_init calls a fault rule intercepted (disconnected or hung).
    fn faulted_inits(&self) -> usize {
        self.log_count("fault injected on init")
    }

    /// Every operation on `vol`, glfs_init included, finds the server gone (until
    /// `root.clear()`).
    fn disconnect(&self, vol: &str) {
        self.root
            .set_rules(&[FaultRule::any().volume(vol).disconnect()]);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Release hangs so no helper thread stays blocked in the fake.
        self.root.clear();
    }
}

/// Submits and waits at most 10 s; also returns how long the completion took.
fn run_timed(store: &dyn BlockStore, req: IoRequest) -> (IoResult, Duration) {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    store.submit(req, Completion::new(move |r| tx.send(r).unwrap()));
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("completion not called within 10 s");
    (r, started.elapsed())
}

fn run(store: &dyn BlockStore, req: IoRequest) -> IoResult {
    run_timed(store, req).0
}

fn write_req(offset: u64, data: &[u8]) -> IoRequest {
    IoRequest::Write {
        offset,
        data: Bytes::copy_from_slice(data).into(),
        fua: false,
    }
}

fn read_req(offset: u64, len: u32) -> IoRequest {
    IoRequest::Read { offset, len }
}

fn write(store: &dyn BlockStore, offset: u64, data: &[u8]) {
    assert_eq!(run(store, write_req(offset, data)), Ok(IoReply::Done));
}

fn read(store: &dyn BlockStore, offset: u64, len: u32) -> Vec<u8> {
    match run(store, IoRequest::Read { offset, len }) {
        Ok(IoReply::Data(d)) => d.to_vec(),
        other => panic!("read {offset}+{len}: {other:?}"),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Asserts `r` is the lost-connection error for `op`: NotConnected with ENOTCONN.
#[track_caller]
fn assert_not_connected(r: IoResult, op: Op) {
    let e = r.expect_err("request on a lost connection succeeded");
    assert_eq!(
        (e.op, e.kind, e.errno),
        (op, ErrorKind::NotConnected, Some(libc::ENOTCONN))
    );
}

/// Polls until `f` holds, at most `limit`.
#[track_caller]
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most 15 s) until `s` is connected again.
#[track_caller]
fn wait_reconnected(s: &GlfsStore) {
    wait_for(Duration::from_secs(15), "reconnect", || {
        s.connection_state() == ConnectionState::Connected
    });
}

/// Every operation but `init` on `vol` drops the connection.
fn disconnect_io(vol: &str) -> FaultRule {
    FaultRule::on(&[
        "read",
        "write",
        "fdatasync",
        "fsync",
        "open",
        "fstat",
        "discard",
        "zerofill",
    ])
    .volume(vol)
    .disconnect()
}

/// Records what the stores tell the process's [`backstore::VolumeObserver`].
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<(String, &'static str, Duration)>>,
}

impl backstore::VolumeObserver for Seen {
    fn connection_lost(&self, volume: &str) {
        self.events
            .lock()
            .unwrap()
            .push((volume.into(), "lost", Duration::ZERO));
    }
    fn reconnected(&self, volume: &str, took: Duration) {
        self.events
            .lock()
            .unwrap()
            .push((volume.into(), "reconnected", took));
    }
}

/// The observer of this test process (one per process; tests look at their own volume).
fn seen() -> Arc<Seen> {
    static SEEN: std::sync::OnceLock<Arc<Seen>> = std::sync::OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Arc::new(Seen::default());
        assert!(backstore::set_volume_observer(seen.clone()));
        seen
    })
    .clone()
}

#[test]
fn lost_connection_reports_not_connected_then_reconnects_with_data_intact() {
    let seen = seen();
    let env = Env::new();
    let s = env.open("r1", "lun.img", "hold=0");
    assert_eq!(s.connection_state(), ConnectionState::Connected);
    assert_eq!(s.generation(), 0);
    let before = pattern(8192, 1);
    write(&*s, 0, &before);
    write(&*s, 1 << 20, &before);
    // Flushed before the outage: nothing acknowledged is at risk when the connection goes
    // (see `a_flush_after_an_outage_fails_when_acknowledged_writes_were_not_flushed`).
    assert_eq!(run(&*s, IoRequest::Flush), Ok(IoReply::Done));

    // Every operation on the volume, glfs_init included, now finds the server gone.
    env.disconnect("r1");
    assert_not_connected(run(&*s, write_req(16384, &[7; 512])), Op::Write);
    // The failure already switched the store to reconnecting: the next request does not
    // reach gfapi and fails the same way.
    assert_eq!(s.connection_state(), ConnectionState::Reconnecting);
    assert_not_connected(run(&*s, read_req(0, 512)), Op::Read);
    assert_not_connected(run(&*s, IoRequest::Flush), Op::Flush);
    wait_for(Duration::from_secs(5), "a failed reconnect attempt", || {
        env.faulted_inits() >= 2
    });
    assert_eq!(s.connection_state(), ConnectionState::Reconnecting);
    assert_eq!(env.mounts(), 1, "only the first mount succeeded so far");

    // The server is back: the store reconnects without being asked.
    env.root.clear();
    wait_reconnected(&s);
    assert_eq!(s.generation(), 1);
    assert_eq!(env.mounts(), 2, "one new glfs_t");
    assert!(s.reconnect_attempts() >= 2, "{}", s.reconnect_attempts());
    // The observer heard of one loss and one reconnect of r1, which took at least the
    // time the fault rule held (two failed glfs_init attempts with back-off between).
    let r1: Vec<_> = seen
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|(v, _, _)| v == "r1")
        .cloned()
        .collect();
    assert_eq!(
        r1.iter().map(|(_, what, _)| *what).collect::<Vec<_>>(),
        ["lost", "reconnected"]
    );
    assert!(r1[1].2 >= Duration::from_millis(100), "{:?}", r1[1].2);

    assert_eq!(read(&*s, 0, 8192), before);
    assert_eq!(read(&*s, 1 << 20, 8192), before);
    let after = pattern(4096, 2);
    write(&*s, 16384, &after);
    assert_eq!(read(&*s, 16384, 4096), after);
    assert_eq!(run(&*s, IoRequest::Flush), Ok(IoReply::Done));
    let host = std::fs::read(env.root.file_path("r1", "lun.img")).unwrap();
    assert_eq!(&host[..8192], &before[..]);
    assert_eq!(&host[16384..20480], &after[..]);
}

#[test]
fn while_down_requests_fail_fast_and_one_loop_reconnects() {
    let env = Env::new();
    let s = env.open("r2", "lun.img", "hold=0");
    write(&*s, 0, &pattern(4096, 3));
    env.disconnect("r2");
    assert_not_connected(run(&*s, read_req(0, 4096)), Op::Read);

    // Four submitters keep the store busy for 1.5 s.
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                let (mut n, mut slowest) = (0u32, Duration::ZERO);
                while started.elapsed() < Duration::from_millis(1500) {
                    let (r, took) = run_timed(&*s, write_req(4096 * w, &[w as u8; 4096]));
                    assert_not_connected(r, Op::Write);
                    slowest = slowest.max(took);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                (n, slowest)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        let (n, slowest) = w.join().unwrap();
        assert!(slowest < FAST, "a request took {slowest:?}");
        total += n;
    }
    assert!(total > 100, "only {total} requests in 1.5 s");

    // One loop with backoff (100, 200, 400, 800 ms ...): a handful of glfs_init calls in
    // 1.5 s, not one per failed request.
    let inits = env.faulted_inits();
    let attempts = s.reconnect_attempts() as usize;
    assert!(
        (2..=6).contains(&inits),
        "{inits} glfs_init calls for {total} requests"
    );
    assert!(
        attempts == inits || attempts == inits + 1,
        "{attempts} attempts counted, {inits} glfs_init calls seen"
    );
    assert_eq!(env.mounts(), 1);

    env.root.clear();
    wait_reconnected(&s);
    assert_eq!((s.generation(), env.mounts()), (1, 2));
    assert_eq!(read(&*s, 0, 4096), pattern(4096, 3));
}

#[test]
fn hung_glfs_init_does_not_block_submitters() {
    let env = Env::new();
    // A 1 s mount timeout, so the loop gives up on hung attempts during the test.
    let s = env.open("r3", "lun.img", "timeout=1;hold=0");
    write(&*s, 0, &pattern(4096, 4));
    env.root.set_rules(&[
        disconnect_io("r3"),
        FaultRule::on(&["init"]).volume("r3").hang(),
    ]);
    assert_not_connected(run(&*s, read_req(0, 4096)), Op::Read);
    wait_for(Duration::from_secs(5), "glfs_init hanging", || {
        env.faulted_inits() >= 1
    });

    // For 2.5 s (two timeouts) the reconnect sits in hung glfs_init calls; submitting
    // stays instant.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        let (r, took) = run_timed(&*s, write_req(0, &[9; 512]));
        assert_not_connected(r, Op::Write);
        assert!(took < FAST, "a request took {took:?}");
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(n > 50, "only {n} requests");
    assert_eq!(s.connection_state(), ConnectionState::Reconnecting);
    // Abandoned attempts are bounded (at most two hang at once).
    let hung = env.faulted_inits();
    assert!((1..=2).contains(&hung), "{hung} glfs_init calls hang");

    // Releasing the hang lets the loop finish.
    env.root.clear();
    wait_reconnected(&s);
    assert_eq!(s.generation(), 1);
    assert_eq!(read(&*s, 0, 4096), pattern(4096, 4));
    write(&*s, 0, &pattern(4096, 5));
    assert_eq!(read(&*s, 0, 4096), pattern(4096, 5));
}

#[test]
fn stores_on_one_volume_share_one_reconnect() {
    let env = Env::new();
    let a = env.open("r4", "a.img", "hold=0");
    let b = env.open("r4", "b.img", "hold=0");
    assert_eq!(env.mounts(), 1, "LUNs on one volume share its glfs_t");
    write(&*a, 0, &pattern(4096, 6));
    write(&*b, 0, &pattern(4096, 7));

    env.disconnect("r4");
    assert_not_connected(run(&*a, write_req(4096, &[1; 512])), Op::Write);
    // b shares the lost glfs_t: it is reconnecting too, without having hit the error.
    assert_eq!(b.connection_state(), ConnectionState::Reconnecting);
    let (r, took) = run_timed(&*b, read_req(0, 512));
    assert_not_connected(r, Op::Read);
    assert!(took < FAST, "{took:?}");
    wait_for(Duration::from_secs(5), "a failed reconnect attempt", || {
        env.faulted_inits() >= 1
    });

    env.root.clear();
    wait_for(Duration::from_secs(15), "both reconnect", || {
        a.connection_state() == ConnectionState::Connected
            && b.connection_state() == ConnectionState::Connected
    });
    // One new glfs_t for both, made by one loop.
    assert_eq!((a.generation(), b.generation()), (1, 1));
    assert_eq!(env.mounts(), 2);
    assert_eq!(a.reconnect_attempts(), b.reconnect_attempts());
    assert_eq!(read(&*a, 0, 4096), pattern(4096, 6));
    assert_eq!(read(&*b, 0, 4096), pattern(4096, 7));

    // A third LUN opened now joins the new mount rather than making another.
    let c = env.open("r4", "c.img", "hold=0");
    assert_eq!((c.generation(), env.mounts()), (1, 2));
    write(&*c, 0, &pattern(512, 8));
    assert_eq!(read(&*c, 0, 512), pattern(512, 8));
}

#[test]
fn requests_in_flight_on_the_lost_handle_complete_normally() {
    let env = Env::new();
    let s = env.open("r5", "lun.img", "hold=0");
    // Writes take 500 ms; the first read drops the connection.
    env.root.set_rules(&[
        FaultRule::on(&["write"]).volume("r5").delay_ms(500),
        FaultRule::on(&["read"]).volume("r5").count(1).disconnect(),
    ]);
    let data = pattern(8192, 9);
    let (tx, rx) = mpsc::channel();
    s.submit(
        write_req(65536, &data),
        Completion::new(move |r| tx.send(r).unwrap()),
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_not_connected(run(&*s, read_req(0, 512)), Op::Read);
    // The write was admitted before the connection dropped: it finishes on the old
    // glfs_t, whose buffers and fd stay alive until then.
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("in-flight write never completed");
    assert_eq!(r, Ok(IoReply::Done));
    wait_reconnected(&s);
    assert_eq!(s.generation(), 1);
    assert_eq!(read(&*s, 65536, 8192), data);
}

/// Submits without waiting; the receiver gets the result.
fn submit(store: &dyn BlockStore, req: IoRequest) -> mpsc::Receiver<IoResult> {
    let (tx, rx) = mpsc::channel();
    store.submit(req, Completion::new(move |r| tx.send(r).unwrap()));
    rx
}

#[track_caller]
fn wait_result(rx: &mpsc::Receiver<IoResult>) -> IoResult {
    rx.recv_timeout(Duration::from_secs(30))
        .expect("completion not called within 30 s")
}

#[test]
fn held_requests_survive_a_short_outage_without_errors() {
    let env = Env::new();
    let s = env.open("h1", "lun.img", "hold=30");
    let before = pattern(8192, 11);
    write(&*s, 0, &before);
    assert_eq!(
        run(&*s, IoRequest::Flush),
        Ok(IoReply::Done),
        "nothing left at risk"
    );

    // The volume goes away: the first request finds the connection lost on its way.
    env.disconnect("h1");
    let lost_on_the_wire = submit(&*s, write_req(8192, &pattern(4096, 12)));
    wait_for(
        Duration::from_secs(10),
        "the store noticing the outage",
        || s.connection_state() == ConnectionState::Reconnecting,
    );
    // Requests submitted during the outage wait instead of failing.
    let mut pending = vec![(lost_on_the_wire, None)];
    for i in 0..16u64 {
        let data = pattern(4096, 20 + i as u8);
        pending.push((
            submit(&*s, write_req(65536 + i * 4096, &data)),
            Some((65536 + i * 4096, data)),
        ));
    }
    let flush = submit(&*s, IoRequest::Flush);
    let read = submit(&*s, read_req(0, 8192));
    wait_for(Duration::from_secs(10), "failed reconnect attempts", || {
        env.faulted_inits() >= 2
    });
    assert!(s.held_requests() >= 18, "{} held", s.held_requests());
    for (rx, _) in &pending {
        assert!(
            rx.try_recv().is_err(),
            "a request finished during the outage"
        );
    }

    // The volume is back: every held request completes, without an error.
    env.root.clear();
    for (rx, _) in &pending {
        assert_eq!(wait_result(rx), Ok(IoReply::Done));
    }
    assert_eq!(wait_result(&flush), Ok(IoReply::Done));
    assert_eq!(wait_result(&read), Ok(IoReply::Data(before.clone().into())));
    assert_eq!(s.connection_state(), ConnectionState::Connected);
    assert_eq!(s.held_requests(), 0);
    assert_eq!(read_back(&*s, 8192, 4096), pattern(4096, 12));
    for (_, written) in pending {
        if let Some((offset, data)) = written {
            assert_eq!(read_back(&*s, offset, 4096), data);
        }
    }
}

fn read_back(store: &dyn BlockStore, offset: u64, len: u32) -> Vec<u8> {
    read(store, offset, len)
}

#[test]
fn held_requests_fail_retryably_when_the_outage_outlasts_the_hold_then_recover() {
    let env = Env::new();
    let s = env.open("h2", "lun.img", "hold=1");
    write(&*s, 0, &pattern(4096, 13));
    env.disconnect("h2");
    // Each request waits its hold out, then gets the retryable lost-connection error.
    let rxs: Vec<_> = (0..8)
        .map(|i| submit(&*s, write_req(4096 * i, &[i as u8; 4096])))
        .collect();
    for rx in &rxs {
        assert_not_connected(wait_result(rx), Op::Write);
    }
    assert_eq!(s.held_requests(), 0);
    assert_eq!(s.connection_state(), ConnectionState::Reconnecting);
    // The store keeps trying by itself and serves again once the volume is back.
    env.root.clear();
    wait_reconnected(&s);
    assert_eq!(read(&*s, 0, 4096), pattern(4096, 13));
    write(&*s, 4096, &pattern(4096, 14));
    assert_eq!(read(&*s, 4096, 4096), pattern(4096, 14));
}

#[test]
fn the_hold_queue_is_bounded() {
    let env = Env::new();
    let s = env.open("h3", "lun.img", "hold=60");
    env.disconnect("h3");
    // The first request finds the connection lost and is held.
    let first = submit(&*s, read_req(0, 512));
    wait_for(Duration::from_secs(10), "the first request held", || {
        s.held_requests() == 1
    });
    let over = 5;
    let rxs: Vec<_> = (0..backstore::MAX_HELD - 1 + over)
        .map(|_| submit(&*s, read_req(0, 512)))
        .collect();
    // Those beyond the bound were refused at once, with the retryable error.
    let refused: Vec<_> = rxs.iter().filter_map(|rx| rx.try_recv().ok()).collect();
    assert_eq!(refused.len(), over);
    for r in refused {
        assert_not_connected(r, Op::Read);
    }
    assert_eq!(s.held_requests(), backstore::MAX_HELD);
    env.root.clear();
    for rx in std::iter::once(&first).chain(&rxs[..backstore::MAX_HELD - 1]) {
        assert!(matches!(wait_result(rx), Ok(IoReply::Data(d)) if d.len() == 512));
    }
}

/// Active/passive failover: a store that holds the data fence loses its volume
/// connection, and Gluster drops the fence with it. A write held across the reconnect
/// must not be sent again on the new mount, where nobody may hold the fence: it fails
/// as `Fenced` (the SCSI layer answers NOT READY, ASYMMETRIC ACCESS STATE TRANSITION,
/// which initiators retry) and leaves the image as it was; so does a write submitted
/// after the reconnect, while a read is served. Once the fence is taken again on the
/// new mount, writes land again.
#[test]
fn a_fenced_store_does_not_resend_held_writes_on_a_mount_without_the_fence() {
    use store_api::{LockOwner, LockWait};
    let env = Env::new();
    let s = env.open("f1", "lun.img", "hold=30");
    let owner = LockOwner::new("gw-a").unwrap();
    let fence = s.fence_data(&owner, LockWait::NoWait).unwrap();
    assert!(fence.is_intact());
    let before = pattern(4096, 31);
    write(&*s, 0, &before);
    let generation = s.generation();

    env.disconnect("f1");
    let held_write = submit(&*s, write_req(0, &pattern(4096, 32)));
    let held_read = submit(&*s, read_req(0, 4096));
    wait_for(Duration::from_secs(10), "the write being held", || {
        s.held_requests() >= 1
    });
    // Gluster lets the fence go with the lost connection (the fake keeps a lock until
    // its fd closes: the guard is dropped to model that). Nobody holds it now, so the
    // brick would take any write.
    drop(fence);
    env.root.clear();
    // Refused by the store itself (no errno: never sent), not by a brick.
    let e = wait_result(&held_write).expect_err("a held write was sent without the fence");
    assert_eq!(
        (e.op, e.kind, e.errno),
        (Op::Write, ErrorKind::Fenced, None)
    );
    assert_eq!(
        wait_result(&held_read),
        Ok(IoReply::Data(before.clone().into()))
    );
    assert!(s.generation() > generation);
    // A write after the reconnect is refused too, and nothing changed the image.
    let e = run(&*s, write_req(4096, &pattern(4096, 33))).unwrap_err();
    assert_eq!(
        (e.op, e.kind, e.errno),
        (Op::Write, ErrorKind::Fenced, None)
    );
    let e = run(
        &*s,
        IoRequest::WriteZeroes {
            offset: 0,
            len: 4096,
        },
    )
    .unwrap_err();
    assert_eq!((e.op, e.kind), (Op::WriteZeroes, ErrorKind::Fenced));
    // Adjacent writes handed over as one batch (what the daemon does with a socket
    // read's writes) are not joined past the check: each is refused.
    for rx in submit_batch(
        &*s,
        vec![
            write_req(0, &pattern(4096, 35)),
            write_req(4096, &pattern(4096, 36)),
        ],
    ) {
        let e = wait_result(&rx).expect_err("a batched write was sent without the fence");
        assert_eq!(
            (e.op, e.kind, e.errno),
            (Op::Write, ErrorKind::Fenced, None)
        );
    }
    assert_eq!(read(&*s, 0, 4096), before);
    assert_eq!(read(&*s, 4096, 4096), vec![0; 4096]);

    // The fence taken again on the new mount: writes go through.
    let again = s.fence_data(&owner, LockWait::NoWait).unwrap();
    assert!(again.is_intact());
    write(&*s, 0, &pattern(4096, 34));
    assert_eq!(read(&*s, 0, 4096), pattern(4096, 34));
}

/// Submits `requests` as one batch (`BlockStore::submit_batch`) without waiting.
fn submit_batch(store: &dyn BlockStore, requests: Vec<IoRequest>) -> Vec<mpsc::Receiver<IoResult>> {
    let mut receivers = Vec::new();
    let mut batch: Vec<(IoRequest, Completion)> = requests
        .into_iter()
        .map(|req| {
            let (tx, rx) = mpsc::channel();
            receivers.push(rx);
            (req, Completion::new(move |r| tx.send(r).unwrap()))
        })
        .collect();
    store.submit_batch(&mut batch);
    receivers
}

/// Adjacent writes of a batch joined into one gfapi write that finds the connection
/// lost are each held (the joined write's requests, not the joined write) and each
/// lands once the volume is back, as does a batch submitted during the outage.
#[test]
fn joined_writes_that_meet_a_lost_connection_are_held_each_and_land() {
    let env = Env::new();
    let s = env.open("hj", "lun.img", "hold=30");
    write(&*s, 0, &pattern(4096, 1));
    env.disconnect("hj");
    let data: Vec<Vec<u8>> = (0..6).map(|i| pattern(4096, 40 + i)).collect();
    let at = |i: usize| 65536 + i as u64 * 4096;
    // Joined: one gfapi write of four, which fails with ENOTCONN.
    let mut pending = submit_batch(&*s, (0..4).map(|i| write_req(at(i), &data[i])).collect());
    wait_for(
        Duration::from_secs(10),
        "the store noticing the outage",
        || s.connection_state() == ConnectionState::Reconnecting,
    );
    // During the outage: held as they come.
    pending.extend(submit_batch(
        &*s,
        (4..6).map(|i| write_req(at(i), &data[i])).collect(),
    ));
    wait_for(Duration::from_secs(10), "every write held", || {
        s.held_requests() == 6
    });
    for rx in &pending {
        assert!(rx.try_recv().is_err(), "a write finished during the outage");
    }
    env.root.clear();
    for rx in &pending {
        assert_eq!(wait_result(rx), Ok(IoReply::Done));
    }
    assert_eq!(s.held_requests(), 0);
    assert_eq!(read_back(&*s, at(0), 6 * 4096), data.concat());
    assert_eq!(read_back(&*s, 0, 4096), pattern(4096, 1));
}

/// A mount left idle by its last LUN (lingering, field failure #8) that lost its
/// connection meanwhile, unnoticed: the next LUN's open finds it lost, has it mounted
/// again and opens, instead of failing once.
#[test]
fn a_lun_opened_on_an_idle_mount_that_lost_its_connection_reconnects_it_and_opens() {
    let env = Env::new();
    let first = env.open("idle", "lun", "linger=600");
    write(&*first, 0, &pattern(4096, 3));
    drop(first);
    env.root.set_rules(&[FaultRule::on(&["open"])
        .volume("idle")
        .disconnect()
        .count(1)]);
    let again = env.open("idle", "lun", "linger=600");
    assert_eq!(read(&*again, 0, 4096), pattern(4096, 3));
    assert_eq!(
        again.generation(),
        1,
        "opened on the mount made by the reconnect"
    );
    let log = std::fs::read_to_string(env.log_path()).unwrap();
    assert_eq!(log.matches("volume mounted from").count(), 2, "{log}");
}

/// Writes to `vol`'s `lun.img` are kept in the writing mount's write-behind cache, as
/// Gluster's client does (the fake's opt-in model).
fn write_behind(vol: &str) -> FaultRule {
    FaultRule::on(&["write"])
        .volume(vol)
        .path("lun.img")
        .write_behind()
}

/// The connection to `vol` goes (a read finds it gone) and comes back, its writes still
/// kept by write-behind.
fn outage(env: &Env, s: &GlfsStore, vol: &str) {
    env.root.set_rules(&[write_behind(vol), disconnect_io(vol)]);
    assert_not_connected(run(s, read_req(0, 512)), Op::Read);
    env.root.set_rules(&[write_behind(vol)]);
    wait_reconnected(s);
}

/// Gluster's write-behind acknowledges a write before the brick has it; when the
/// connection goes first the write is lost, and the old fd that would report it goes
/// with the old mount. The store's next flush must not vouch for it (docs/reliability.md).
#[test]
fn a_flush_after_an_outage_fails_when_acknowledged_writes_were_not_flushed() {
    let env = Env::new();
    let s = env.open("u1", "lun.img", "hold=0");
    env.root.set_rules(&[write_behind("u1")]);
    let kept = pattern(4096, 31);
    write(&*s, 0, &kept);
    assert_eq!(run(&*s, IoRequest::Flush), Ok(IoReply::Done));
    let lost = pattern(4096, 32);
    write(&*s, 8192, &lost); // acknowledged, in the mount's cache

    outage(&env, &s, "u1");

    // The host's SYNCHRONIZE CACHE learns that a write it was told was done may be gone:
    // a medium error (SBC: 03h/0Ch/00h), not NOT READY, which it would retry until the
    // retry succeeds.
    let failed = run(&*s, IoRequest::Flush).unwrap_err();
    assert_eq!((failed.op, failed.kind), (Op::Flush, ErrorKind::Io));
    assert_eq!(
        env.log_count("cached writes lost with the connection"),
        1,
        "the fake lost the write"
    );
    assert_eq!(read(&*s, 8192, 4096), vec![0u8; 4096], "it is gone indeed");
    assert_eq!(read(&*s, 0, 4096), kept, "what a flush covered is there");
    // Said once; the writes since are flushed as usual.
    let again = pattern(4096, 33);
    write(&*s, 8192, &again);
    assert_eq!(run(&*s, IoRequest::Flush), Ok(IoReply::Done));
    let host = std::fs::read(env.root.file_path("u1", "lun.img")).unwrap();
    assert_eq!(&host[8192..12288], &again[..]);
}

/// The failed flush reported the writes before it: another outage before the host's
/// next flush does not report them again, but one after a new write reports that write.
#[test]
fn a_second_outage_reports_only_writes_acknowledged_since_the_failed_flush() {
    let env = Env::new();
    let s = env.open("u5", "lun.img", "hold=0");
    env.root.set_rules(&[write_behind("u5")]);
    write(&*s, 0, &pattern(4096, 71));
    outage(&env, &s, "u5");
    let failed = run(&*s, IoRequest::Flush).unwrap_err();
    assert_eq!((failed.op, failed.kind), (Op::Flush, ErrorKind::Io));

    outage(&env, &s, "u5");
    assert_eq!(
        run(&*s, IoRequest::Flush),
        Ok(IoReply::Done),
        "nothing acknowledged since the report"
    );

    let lost = pattern(4096, 72);
    write(&*s, 4096, &lost);
    outage(&env, &s, "u5");
    let failed = run(&*s, IoRequest::Flush).unwrap_err();
    assert_eq!((failed.op, failed.kind), (Op::Flush, ErrorKind::Io));
    assert_eq!(read(&*s, 4096, 4096), vec![0u8; 4096], "the write was lost");
}

/// A flush the host sent during the outage, held until the reconnect, is the one that
/// reports the loss.
#[test]
fn a_flush_held_across_the_outage_reports_writes_the_outage_lost() {
    let env = Env::new();
    let s = env.open("u2", "lun.img", "hold=30");
    env.root.set_rules(&[write_behind("u2")]);
    write(&*s, 4096, &pattern(4096, 41));

    env.root
        .set_rules(&[write_behind("u2"), disconnect_io("u2")]);
    let flush = submit(&*s, IoRequest::Flush);
    wait_for(Duration::from_secs(10), "the outage noticed", || {
        s.connection_state() == ConnectionState::Reconnecting
    });
    env.root.set_rules(&[write_behind("u2")]);
    let failed = wait_result(&flush).unwrap_err();
    assert_eq!((failed.op, failed.kind), (Op::Flush, ErrorKind::Io));
    assert_eq!(s.connection_state(), ConnectionState::Connected);
    assert_eq!(run(&*s, IoRequest::Flush), Ok(IoReply::Done));
}

/// In coherent mode gfapi caches no write (`O_DIRECT` past write-behind): an outage puts
/// nothing acknowledged at risk, and the flush after it succeeds.
#[test]
fn a_coherent_store_has_nothing_at_risk_after_an_outage() {
    let env = Env::new();
    let s = env.open("u3", "lun.img", "hold=0;coherent=on");
    assert!(s.is_coherent());
    env.root.set_rules(&[write_behind("u3")]);
    let data = pattern(4096, 51);
    write(&*s, 4096, &data);

    outage(&env, &s, "u3");
    assert_eq!(run(&*s, IoRequest::Flush), Ok(IoReply::Done));
    assert_eq!(read(&*s, 4096, 4096), data);
}

/// FUA writes are synced before they are acknowledged: an outage after them puts nothing
/// at risk.
#[test]
fn fua_writes_leave_nothing_at_risk() {
    let env = Env::new();
    let s = env.open("u4", "lun.img", "hold=0");
    env.root.set_rules(&[write_behind("u4")]);
    let data = pattern(4096, 61);
    let written = run(
        &*s,
        IoRequest::Write {
            offset: 0,
            data: Bytes::copy_from_slice(&data).into(),
            fua: true,
        },
    );
    assert_eq!(written, Ok(IoReply::Done));

    outage(&env, &s, "u4");
    assert_eq!(run(&*s, IoRequest::Flush), Ok(IoReply::Done));
    assert_eq!(read(&*s, 0, 4096), data);
}
