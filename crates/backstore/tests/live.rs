//! The shared block-store checks (`tests/common/mod.rs`, also run by `tests/suite.rs` on
//! memory, file and the fake libgfapi), run over a `glfs` store on a live Gluster volume
//! through the real libgfapi (`cargo xtask test-gluster` sets
//! `GLUSTER_TEST_VOLUME=volume@host`).
//!
//! Each check gets a file of its own, named per run (a live volume keeps what earlier runs
//! left behind, and a file removed behind Gluster's back on a replica brick heals back),
//! and removed through gfapi when the check ends, also when it fails. What reached the
//! volume is read back through a second, raw mount.

mod common;

use backstore::{open_store, StoreOptions};
use common::{Fixture, SIZE};
use gfapi_sys::{glfs_fd_t, glfs_t};
use libc::c_int;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// `volume@host` from `GLUSTER_TEST_VOLUME`.
fn live_volume() -> (String, String) {
    let spec = std::env::var("GLUSTER_TEST_VOLUME").expect(
        "GLUSTER_TEST_VOLUME=volume@host is not set: run `cargo xtask test-gluster`, or set it",
    );
    let (v, h) = spec
        .split_once('@')
        .unwrap_or_else(|| panic!("GLUSTER_TEST_VOLUME={spec:?} is not volume@host"));
    (v.to_string(), h.to_string())
}

// ---- a raw mount of the live volume, to check and remove files behind the store ----

type UnlinkFn = unsafe extern "C" fn(*mut glfs_t, *const libc::c_char) -> c_int;

struct Raw {
    sys: gfapi_sys::Library,
    fs: *mut glfs_t,
    unlink: UnlinkFn,
}

// SAFETY: a glfs_t may be used from any thread; gfapi locks internally.
unsafe impl Send for Raw {}
// SAFETY: as above.
unsafe impl Sync for Raw {}

/// The raw mount, made once; never finished (glfs_fini takes seconds on real Gluster and
/// the test process ends anyway).
fn raw() -> &'static Raw {
    static RAW: OnceLock<Raw> = OnceLock::new();
    RAW.get_or_init(|| {
        let (volume, host) = live_volume();
        let sys = gfapi_sys::Library::load(None).expect("the real libgfapi.so.0 loads");
        // SAFETY: the library is loaded (RTLD_NOLOAD only finds it); glfs_unlink has the
        // prototype `int glfs_unlink(glfs_t *, const char *)` in glfs.h.
        let unlink = unsafe {
            let h = libc::dlopen(
                c"libgfapi.so.0".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_NOLOAD,
            );
            assert!(!h.is_null(), "libgfapi.so.0 is not loaded");
            assert!(
                libc::dlsym(h, c"gfapi_fake_version".as_ptr()).is_null(),
                "libgfapi.so.0 is the fake (LD_LIBRARY_PATH?): this test needs the real one"
            );
            let p = libc::dlsym(h, c"glfs_unlink".as_ptr());
            assert!(!p.is_null(), "no glfs_unlink");
            std::mem::transmute::<*mut libc::c_void, UnlinkFn>(p)
        };
        let (cvol, chost) = (CString::new(volume).unwrap(), CString::new(host).unwrap());
        // SAFETY: the gfapi mount sequence on a fresh glfs_t with valid C strings.
        let fs = unsafe {
            let fs = (sys.glfs_new)(cvol.as_ptr());
            assert!(!fs.is_null(), "glfs_new failed");
            assert_eq!(
                (sys.glfs_set_volfile_server)(fs, c"tcp".as_ptr(), chost.as_ptr(), 0),
                0
            );
            assert_eq!((sys.glfs_set_logging)(fs, std::ptr::null(), 4), 0);
            assert_eq!(
                (sys.glfs_init)(fs),
                0,
                "glfs_init of the checking mount: {}",
                std::io::Error::last_os_error()
            );
            fs
        };
        Raw { sys, fs, unlink }
    })
}

impl Raw {
    /// Reads the whole file at `path` through this mount.
    fn read_file(&self, path: &str) -> Vec<u8> {
        let c = CString::new(path).unwrap();
        // SAFETY: fs is mounted and c a valid C string.
        let fd: *mut glfs_fd_t =
            unsafe { (self.sys.glfs_open)(self.fs, c.as_ptr(), libc::O_RDONLY) };
        assert!(
            !fd.is_null(),
            "open {path} on the checking mount: {}",
            std::io::Error::last_os_error()
        );
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            // SAFETY: fd is open, buf valid for its length, NULL poststat allowed.
            let n = unsafe {
                (self.sys.glfs_pread)(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    out.len() as libc::off_t,
                    0,
                    std::ptr::null_mut(),
                )
            };
            assert!(n >= 0, "read {path}: {}", std::io::Error::last_os_error());
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        // SAFETY: fd is open and closed once.
        unsafe { (self.sys.glfs_close)(fd) };
        out
    }

    /// The bytes the file at `path` takes on the bricks (`st_blocks`) and its size, through
    /// this mount.
    fn allocated(&self, path: &str) -> (u64, u64) {
        let c = CString::new(path).unwrap();
        // SAFETY: fs is mounted and c a valid C string.
        let fd: *mut glfs_fd_t =
            unsafe { (self.sys.glfs_open)(self.fs, c.as_ptr(), libc::O_RDONLY) };
        assert!(
            !fd.is_null(),
            "open {path}: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: an all-zero stat is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open, st writable; fd closed once.
        let rc = unsafe { (self.sys.glfs_fstat)(fd, &mut st) };
        unsafe { (self.sys.glfs_close)(fd) };
        assert_eq!(rc, 0, "fstat {path}: {}", std::io::Error::last_os_error());
        (st.st_blocks as u64 * 512, st.st_size as u64)
    }

    fn unlink(&self, path: &str) -> std::io::Result<()> {
        let c = CString::new(path).unwrap();
        // SAFETY: fs is mounted and c a valid C string.
        if unsafe { (self.unlink)(self.fs, c.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

// ---- stores ----

/// Removes a file of the live volume when dropped, and the metadata object the suite
/// writes beside it (`<file>.pr`) if there is one.
struct Remover(String);

impl Drop for Remover {
    fn drop(&mut self) {
        if let Err(e) = raw().unlink(&self.0) {
            eprintln!("cannot remove {} from the live volume: {e}", self.0);
        }
        let metadata = format!("{}.pr", self.0);
        match raw().unlink(&metadata) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                eprintln!("cannot remove {metadata} from the live volume: {e}")
            }
            _ => {}
        }
    }
}

/// A store on a fresh file of the live volume; the file is removed when the fixture is
/// dropped.
fn open(name: &str) -> Fixture {
    static N: AtomicUsize = AtomicUsize::new(0);
    let (volume, host) = live_volume();
    let path = format!(
        "backstore-live-{name}-{}-{}-{}.img",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    raw(); // mounted first, so a failing store open still finds the checker ready
           // A LUN shared by gateways (`common::COHERENT`): coherent mode.
    let shared = name.starts_with(common::COHERENT);
    let store = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{volume}@{host}:{path}"),
        create_size: Some(SIZE),
        // The real library by name, whatever GFAPI_LIBRARY says.
        gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
        shared,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("open a glfs store on the live volume: {e}"));
    let read_path = path.clone();
    // The server named twice: a mount (glfs_t) of its own, as another gateway has.
    let again = format!("{volume}@{host},{host}:{path}");
    Fixture {
        store,
        // Through another mount: what the store wrote is on the bricks, not in a cache.
        backing: Some(Box::new(move || raw().read_file(&read_path))),
        describes: Some(path.clone()),
        keep: Some(Box::new(Remover(path))),
        another_gateway: Some(Box::new(move || {
            open_store(&StoreOptions {
                bstype: "glfs".into(),
                backing_store: again.clone(),
                gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
                shared,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("open a second mount of the live volume: {e}"))
        })),
    }
}

// ---- live-only checks ----

fn missing_file_without_create_size_fails_to_open(_: common::Open<'_>) {
    let (volume, host) = live_volume();
    let spec = format!(
        "{volume}@{host}:backstore-live-absent-{}",
        std::process::id()
    );
    let err = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: spec.clone(),
        gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
        ..Default::default()
    })
    .err()
    .expect("a missing file without a create size cannot open");
    assert_eq!(err.to_string(), common::missing_file_message(&spec));
}

/// `provisioning = full` on the live volume: every block of the new file is allocated on
/// the bricks (glfs_fallocate through the real libgfapi) before the store serves it, the
/// store offers no discard, and a resize allocates what it adds.
fn full_provisioning_allocates_on_the_volume(_: common::Open<'_>) {
    let (volume, host) = live_volume();
    let path = format!("backstore-live-full-{}.img", std::process::id());
    let _remove = Remover(path.clone());
    let store = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{volume}@{host}:{path}"),
        create_size: Some(SIZE),
        gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
        provisioning: backstore::Provisioning::Full,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("open a fully provisioned store on the live volume: {e}"));
    assert!(!store.capabilities().discard);
    let space = store.space().unwrap();
    assert!(space.allocated >= SIZE, "{space:?}");
    assert!(space.available.is_some_and(|n| n > 0), "{space:?}");
    let (blocks, size) = raw().allocated(&path);
    assert_eq!(size, SIZE);
    assert!(
        blocks >= SIZE,
        "every block allocated: {blocks} of {SIZE} bytes"
    );
    store.resize(2 * SIZE).unwrap();
    // The checking mount's md-cache may hold the former size for its timeout (1 s by
    // default): asked again until the new size shows, for up to 10 s.
    let asked = std::time::Instant::now();
    let (blocks, size) = loop {
        let (blocks, size) = raw().allocated(&path);
        if size == 2 * SIZE || asked.elapsed() > std::time::Duration::from_secs(10) {
            break (blocks, size);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(size, 2 * SIZE);
    assert!(
        blocks >= 2 * SIZE,
        "the added blocks allocated: {blocks} bytes"
    );
}

/// `admin lun clone`'s copy on the live volume: `create_store` makes the new file
/// (O_EXCL through the real libgfapi; one already there is refused), the snapshot copies
/// the source as it was while a write through it waits for its chunk, the source's holes
/// are not read, only the chunks with data are written (the copy stays sparse on the
/// bricks), and `remove_store_file`
/// unlinks it through the store's mount.
fn snapshot_copies_into_a_new_file_on_the_volume(open: common::Open<'_>) {
    use backstore::snapshot::{Snapshot, CHUNK};
    use store_api::{BlockStore, IoReply};
    let source = open("snapshot-source");
    let before = common::pattern(CHUNK as usize, 51);
    common::write(&*source.store, 2 * CHUNK, &before);
    let (volume, host) = live_volume();
    let path = format!("backstore-live-clone-{}.img", std::process::id());
    let _remove = Remover(path.clone());
    let opts = StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{volume}@{host}:{path}"),
        create_size: Some(SIZE),
        gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
        ..Default::default()
    };
    let dest = backstore::create_store(&opts).unwrap();
    let snapshot = Snapshot::new(source.store.clone(), dest.clone());
    let through: std::sync::Arc<dyn BlockStore> = snapshot.clone();
    let (tx, held) = std::sync::mpsc::channel();
    through.submit(
        common::write_in(2 * CHUNK + 4096, &[0xEE; 4096], 1, false),
        store_api::Completion::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    assert!(
        held.try_recv().is_err(),
        "the write over an uncopied chunk was not held"
    );
    let copied = snapshot.run("live").unwrap();
    assert_eq!(held.recv().unwrap(), Ok(IoReply::Done));
    assert_eq!(
        (copied.bytes, copied.written, copied.held),
        (SIZE, CHUNK, 1)
    );
    // The source's holes were asked about and skipped, not read (how much of them the
    // brick's file system allocates around the written chunk is its own).
    assert!(
        (CHUNK..SIZE).contains(&copied.read),
        "read {} of {SIZE}",
        copied.read
    );
    drop((through, snapshot, dest));
    let copy = raw().read_file(&path);
    assert_eq!(copy.len() as u64, SIZE);
    assert!(copy[2 * CHUNK as usize..][..CHUNK as usize] == before[..]);
    assert!(copy[..2 * CHUNK as usize].iter().all(|&b| b == 0));
    let (blocks, _) = raw().allocated(&path);
    assert!(
        blocks < SIZE / 2,
        "sparse: {blocks} bytes allocated of {SIZE}"
    );
    assert_eq!(
        common::read(&*source.store, 2 * CHUNK + 4096, 4096),
        vec![0xEE; 4096]
    );
    let err = backstore::create_store(&opts)
        .err()
        .expect("an existing file is refused");
    assert!(err.to_string().contains("already exists"), "{err}");
    backstore::remove_store_file(&opts).unwrap();
    let gone = raw().unlink(&path).unwrap_err();
    assert_eq!(gone.kind(), std::io::ErrorKind::NotFound, "{gone}");
}

#[test]
#[ignore = "needs a live Gluster volume: cargo xtask test-gluster"]
fn live_glfs_store_suite() {
    // One test, so the process mounts the volume once (glfs_fini takes seconds on real
    // Gluster); the checks run in order and each names itself when it fails.
    let live_only: &[(&str, common::Check)] = &[
        (
            "missing_file_without_create_size_fails_to_open",
            missing_file_without_create_size_fails_to_open,
        ),
        (
            "full_provisioning_allocates_on_the_volume",
            full_provisioning_allocates_on_the_volume,
        ),
        (
            "snapshot_copies_into_a_new_file_on_the_volume",
            snapshot_copies_into_a_new_file_on_the_volume,
        ),
    ];
    // Stores on one volume share its mount, which lingers (bsopt `linger`, default 60 s)
    // once the last of them closes and is then finished (glfs_fini, ~10 s on real
    // Gluster); this store keeps it up between the checks whatever their timing.
    let keeper = open("keeper");
    let mut failed = Vec::new();
    for (name, check) in common::CHECKS.iter().chain(live_only) {
        let started = std::time::Instant::now();
        let ok = std::panic::catch_unwind(|| check(&open)).is_ok();
        eprintln!(
            "check {name}: {} in {:?}",
            if ok { "ok" } else { "FAILED" },
            started.elapsed()
        );
        if !ok {
            failed.push(*name);
        }
    }
    drop(keeper);
    assert!(failed.is_empty(), "failed checks: {failed:?}");
}

/// `clear_lock` on the live volume with mandatory locks (`GLUSTER_TEST_FEATURES_VOLUME`):
/// a second mount takes the first one's election lock and data fence away with
/// Gluster's clear-locks while the first one's connection lives, and the first one's
/// I/O is refused from then on (`common::a_stalled_holders_locks_are_cleared_and_taken`,
/// docs/fencing.md).
#[test]
#[ignore = "needs a live Gluster volume: cargo xtask test-gluster"]
fn live_glfs_clear_lock() {
    on_features_volume("live_glfs_clear_lock", "clear", 2, |s| {
        common::a_stalled_holders_locks_are_cleared_and_taken(&*s[0], &*s[1])
    });
}

/// `fence_data` on the live volume with mandatory locks (`GLUSTER_TEST_FEATURES_VOLUME`,
/// `locks.mandatory-locking optimal`, set by `cargo xtask test-gluster --fixture
/// native`): two gateways' shared stores on two mounts of one image, the same steps as on
/// the fake (`common::data_fence_fences`, docs/fencing.md).
#[test]
#[ignore = "needs a live Gluster volume: cargo xtask test-gluster"]
fn live_glfs_data_fence() {
    on_features_volume("live_glfs_data_fence", "fence", 2, |s| {
        common::data_fence_fences(&*s[0], &*s[1])
    });
}

/// `take_lock_over` on the live volume with mandatory locks
/// (`GLUSTER_TEST_FEATURES_VOLUME`): three mounts; the second takes the first one's
/// election lock and data fence over while the third writes all along, and none of the
/// third's writes lands (`common::a_stalled_holders_fence_is_taken_over_with_no_gap`,
/// docs/fencing.md).
#[test]
#[ignore = "needs a live Gluster volume: cargo xtask test-gluster"]
fn live_glfs_take_lock_over() {
    on_features_volume("live_glfs_take_lock_over", "takeover", 3, |s| {
        common::a_stalled_holders_fence_is_taken_over_with_no_gap(&*s[0], &*s[1], &*s[2])
    });
}

/// Runs `check` on `n` shared glfs stores of one new image on the live volume with
/// mandatory locks (`GLUSTER_TEST_FEATURES_VOLUME`), each on a mount of its own (the
/// server named once, twice, ...: another gateway's `glfs_t`), then removes the image,
/// also when `check` fails. Without the volume, `test` says it is left out.
fn on_features_volume(
    test: &str,
    tag: &str,
    n: usize,
    check: impl FnOnce(&[std::sync::Arc<dyn store_api::BlockStore>]),
) {
    let Ok(spec) = std::env::var("GLUSTER_TEST_FEATURES_VOLUME") else {
        eprintln!(
            "{test}: no volume with mandatory locks \
             (GLUSTER_TEST_FEATURES_VOLUME unset): left out"
        );
        return;
    };
    let (volume, host) = spec
        .split_once('@')
        .unwrap_or_else(|| panic!("GLUSTER_TEST_FEATURES_VOLUME={spec:?} is not volume@host"));
    let path = format!("backstore-live-{tag}-{}.img", std::process::id());
    let stores: Vec<_> = (1..=n)
        .map(|mounts| {
            let servers = vec![host; mounts].join(",");
            open_store(&StoreOptions {
                bstype: "glfs".into(),
                backing_store: format!("{volume}@{servers}:{path}"),
                create_size: (mounts == 1).then_some(SIZE),
                gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
                shared: true,
                ..Default::default()
            })
            .unwrap()
        })
        .collect();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&stores)));
    drop(stores);
    let lib = gfapi::Gfapi::load(None).unwrap();
    let vol = gfapi::Volume::connect(&lib, volume, &[gfapi::Server::tcp(host)], None, 4);
    if let Err(e) = vol.and_then(|v| v.unlink(&path)) {
        eprintln!("cannot remove {path} from {volume}: {e}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `volume@host` of a replicated live volume (`GLUSTER_TEST_REPLICATED_VOLUME`, set by
/// `cargo xtask test-gluster`: a native replica 3 volume on one host, or the Docker
/// fixture's), if there is one; says the test is left out if not.
fn live_replicated_volume() -> Option<String> {
    let spec = std::env::var("GLUSTER_TEST_REPLICATED_VOLUME").ok();
    if spec.is_none() {
        eprintln!("no replicated volume (GLUSTER_TEST_REPLICATED_VOLUME unset): left out");
    }
    spec
}

/// The child process of
/// [`live_glfs_clear_write_locks_frees_a_stopped_writers_replication_lock`] (run by it as
/// `<test binary> --exact stopped_writer_child --ignored`; does nothing otherwise): mounts
/// the volume, writes 128 KiB at offset 0 of the file through an fd it keeps open, and
/// stops itself at once (SIGSTOP), its connections alive, as a hung gateway: AFR's lock of
/// that write, which it would let go of soon after, mostly stays.
#[test]
#[ignore = "the child process of live_glfs_clear_write_locks_frees_a_stopped_writers_replication_lock"]
fn stopped_writer_child() {
    let (Ok(spec), Ok(file)) = (
        std::env::var("GLFS_TEST_STOPPED_WRITER"),
        std::env::var("GLFS_TEST_STOPPED_WRITER_FILE"),
    ) else {
        return;
    };
    let (volume, host) = spec.split_once('@').unwrap();
    let lib = gfapi::Gfapi::load(None).unwrap();
    let log = std::path::Path::new("/dev/null");
    let vol = gfapi::Volume::connect(&lib, volume, &[gfapi::Server::tcp(host)], Some(log), 3);
    let vol = std::sync::Arc::new(vol.unwrap());
    let f = gfapi::File::open(&vol, &file, libc::O_RDWR).unwrap();
    // Once more each time it is continued: AFR may have let go of the lock just before
    // the stop (its post-op and unlock run after the write returns).
    // With GLFS_TEST_STOPPED_WRITER_FSYNC set it also waits for its write to reach the
    // bricks (fsync): write-behind answers a plain write before it is sent, so a write
    // that waits for another client's lock would return all the same.
    let sync = std::env::var_os("GLFS_TEST_STOPPED_WRITER_FSYNC").is_some();
    loop {
        f.pwrite(&[0x5a; 128 << 10], 0).unwrap();
        if sync {
            f.fsync().unwrap();
        }
        // SAFETY: raise has no preconditions.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

/// Whether process `pid` is stopped (state T in /proc).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("State:") && l.contains("stopped"))
    })
}

/// How many times [`HeldWrite::start`] lets the writer write and stop before it gives up.
/// Without AFR's eager lock (`glfsranged`) the lock goes right after the write returns and
/// the stop often comes too late: 5 of 5 missed in one CI run (2026-12-06).
const WRITER_STOPS: u32 = 20;

/// Starts [`stopped_writer_child`] on `file` of `spec`.
fn spawn_writer(spec: &str, file: &str) -> std::process::Child {
    writer_command(spec, file).spawn().unwrap()
}

/// The command of [`stopped_writer_child`] on `file` of `spec`.
fn writer_command(spec: &str, file: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "stopped_writer_child",
        "--ignored",
        "--nocapture",
    ])
    .env("GLFS_TEST_STOPPED_WRITER", spec)
    .env("GLFS_TEST_STOPPED_WRITER_FILE", file);
    cmd
}

/// Kills `child` (continued first, so a stopped one dies at once) and reaps it.
fn end_child(child: &mut std::process::Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends a 4 KiB FUA write of `store` at 64 KiB, inside the range the stopped writers
/// write, filled with `fill`; its answer goes to `tx`.
fn submit_probe_write(
    store: &std::sync::Arc<dyn store_api::BlockStore>,
    fill: u8,
    tx: std::sync::mpsc::Sender<store_api::IoResult>,
) {
    store.submit(
        store_api::IoRequest::Write {
            offset: 65536,
            data: bytes::Bytes::from(vec![fill; 4096]).into(),
            fua: true,
        },
        store_api::Completion::new(move |r| {
            let _ = tx.send(r);
        }),
    );
}

/// The child process of [`stopped_writer_child`], stopped while it keeps the lock AFR
/// took for its write, and a FUA write of the store into that range held by it.
struct HeldWrite {
    child: std::process::Child,
    /// The answer to the held write.
    answer: std::sync::mpsc::Receiver<store_api::IoResult>,
}

impl HeldWrite {
    /// Starts the writer on `file` of `spec` (the store's image) and waits until it
    /// stopped with its lock: a FUA write of `store` at 64 KiB, inside the range the
    /// writer wrote, gets no answer within 1 s (unheld, it lands in milliseconds). A stop
    /// that came after AFR let go (the write then lands at once) is tried again, up to
    /// [`WRITER_STOPS`] stops; panics if none held it.
    fn start(store: &std::sync::Arc<dyn store_api::BlockStore>, spec: &str, file: &str) -> Self {
        use std::sync::mpsc;
        use std::time::{Duration, Instant};
        let child = spawn_writer(spec, file);
        let (tx, rx) = mpsc::channel();
        let mut held = HeldWrite { child, answer: rx };
        let pid = held.child.id();
        for tries in 1..=WRITER_STOPS {
            let since = Instant::now();
            while !is_stopped(pid) {
                assert!(
                    since.elapsed() < Duration::from_secs(30)
                        && held.child.try_wait().unwrap().is_none(),
                    "the writer did not write and stop within 30 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            submit_probe_write(store, 0xa5, tx.clone());
            let early = held.answer.recv_timeout(Duration::from_secs(1)).ok();
            let Some(early) = early else {
                return held;
            };
            assert!(
                tries < WRITER_STOPS,
                "the write did not wait for the stopped writer's lock in {tries} stops \
                 ({early:?}): is the volume replicated?"
            );
            held.resume();
            std::thread::sleep(Duration::from_millis(200));
        }
        unreachable!("the loop returns or panics by its last stop")
    }

    fn resume(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }
}

impl Drop for HeldWrite {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clear_write_locks` of `store`, bounded: a clearing that waits for the stopped writer
/// (a lookup AFR holds to heal the file it left marked) would hang the takeover that
/// calls it.
fn clear_write_locks_within_20s(
    store: &std::sync::Arc<dyn store_api::BlockStore>,
) -> Result<u32, store_api::StoreError> {
    let (cleared_tx, cleared_rx) = std::sync::mpsc::channel();
    let clearing = store.clone();
    std::thread::spawn(move || {
        let _ = cleared_tx.send(clearing.clear_write_locks(&[]));
    });
    cleared_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("clear_write_locks waited for the stopped writer (20 s)")
}

/// A glfs store on a new file `file` of `spec` (removed at the end of the test by the
/// guard returned beside it).
fn replicated_store(
    spec: &str,
    file: &str,
) -> (
    std::sync::Arc<dyn store_api::BlockStore>,
    testkit::gluster::RemoveOnDrop,
) {
    let remove = testkit::gluster::RemoveOnDrop::new(spec, [file.to_string()]);
    let store = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{spec}:{file}"),
        create_size: Some(SIZE),
        gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
        ..Default::default()
    })
    .unwrap();
    (store, remove)
}

/// `clear_write_locks` on a replicated live volume (docs/fencing.md, "A stalled writer's
/// volume locks"): another client (a child process) wrote the image and stopped with its
/// connections alive, keeping AFR's eager lock; a FUA write of this store waits for it,
/// until `clear_write_locks` takes the lock away (one per brick) and withdraws the
/// write's own waiting request with the rest: it is answered, and the next write lands.
#[test]
#[ignore = "needs a live replicated Gluster volume: cargo xtask test-gluster"]
fn live_glfs_clear_write_locks_frees_a_stopped_writers_replication_lock() {
    use std::time::Duration;
    use store_api::IoReply;
    let Some(spec) = live_replicated_volume() else {
        return;
    };
    let file = format!(
        "backstore-live-clear-write-locks-{}.img",
        std::process::id()
    );
    let (store, _remove) = replicated_store(&spec, &file);
    let held = HeldWrite::start(&store, &spec, &file);
    let cleared = clear_write_locks_within_20s(&store);
    // The held write's own waiting lock request is withdrawn with the rest (it fails,
    // as the host would see a write refused as fenced) unless the bricks had already
    // granted it: either way it is answered now, and the next write lands.
    let first = held.answer.recv_timeout(Duration::from_secs(15));
    let (tx, rx) = std::sync::mpsc::channel();
    submit_probe_write(&store, 0x5a, tx);
    let next = rx.recv_timeout(Duration::from_secs(15));
    drop(held);
    assert!(matches!(cleared, Ok(n) if n >= 1), "{cleared:?}");
    assert!(
        first.is_ok(),
        "the held write is answered once the lock went"
    );
    assert_eq!(
        next.map_err(drop),
        Ok(Ok(IoReply::Done)),
        "the next write lands"
    );
}

/// `clear_write_locks` withdraws waiting requests too (docs/fencing.md, "A stopped
/// client's waiting lock request"): writer 1 writes the image and stops keeping AFR's lock;
/// writer 2's write then waits for that lock at the bricks, and writer 2 is stopped
/// there. The bricks grant the requests waiting behind the locks they clear in the same
/// step, so clearing only the granted lock handed it to writer 2, stopped, and the
/// store's next write waited again; with the waiting request withdrawn the store's write
/// lands. The store sends its write only after the clearing (a request of its own
/// waiting then would be withdrawn too; a standby taking over has none).
#[test]
#[ignore = "needs a live replicated Gluster volume: cargo xtask test-gluster"]
fn live_glfs_clear_write_locks_withdraws_a_stopped_writers_waiting_request() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    use store_api::IoReply;
    let Some(spec) = live_replicated_volume() else {
        return;
    };
    let file = format!("backstore-live-clear-waiting-{}.img", std::process::id());
    let (store, _remove) = replicated_store(&spec, &file);
    let wait_stopped = |child: &mut std::process::Child| {
        let since = Instant::now();
        while !is_stopped(child.id()) {
            assert!(
                since.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none(),
                "the writer did not write and stop within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Writer 1 keeps its lock when writer 2's write, 3 s later, has not reached the
    // bricks (writer 2 stops itself right after its fsync returns). A stop that came after AFR let go:
    // both again, up to 10 times.
    let mut pair = None;
    for _ in 0..10 {
        let mut first = spawn_writer(&spec, &file);
        wait_stopped(&mut first);
        let mut second = writer_command(&spec, &file)
            .env("GLFS_TEST_STOPPED_WRITER_FSYNC", "1")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        if is_stopped(second.id()) || second.try_wait().unwrap().is_some() {
            eprintln!(
                "writer 2's write did not wait (stopped: {}, exited: {:?}); again",
                is_stopped(second.id()),
                second.try_wait()
            );
            end_child(&mut second);
            end_child(&mut first);
            continue;
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(second.id() as i32, libc::SIGSTOP) };
        wait_stopped(&mut second);
        pair = Some((first, second));
        break;
    }
    let Some((mut first, mut second)) = pair else {
        panic!("writer 1 never kept its lock long enough for writer 2 to wait: is the volume replicated?");
    };
    let cleared = clear_write_locks_within_20s(&store);
    let (tx, rx) = mpsc::channel();
    submit_probe_write(&store, 0xa5, tx);
    let done = rx.recv_timeout(Duration::from_secs(15));
    end_child(&mut second);
    end_child(&mut first);
    assert_eq!(
        done.map_err(drop),
        Ok(Ok(IoReply::Done)),
        "the store's write lands: no stopped writer holds the lock after the clearing \
         ({cleared:?} cleared)"
    );
    assert!(matches!(cleared, Ok(n) if n >= 1), "{cleared:?}");
}

/// `clear_write_locks` takes only whole-file inode locks (docs/fencing.md, "A stalled
/// writer's volume locks"): on a replicated volume whose AFR locks only the range a write
/// writes (`cluster.full-lock off`, `cluster.eager-lock off`: as a self-heal locks the
/// chunk it copies), the stopped writer's lock holds the store's write into that range,
/// `clear_write_locks` clears nothing and the write still waits; it lands once the
/// writer is killed (its connections close, its locks go).
#[test]
#[ignore = "needs a live replicated Gluster volume with ranged AFR locks: cargo xtask test-gluster"]
fn live_glfs_clear_write_locks_leaves_a_ranged_lock() {
    use std::time::Duration;
    use store_api::IoReply;
    let Ok(spec) = std::env::var("GLUSTER_TEST_RANGED_LOCK_VOLUME") else {
        eprintln!(
            "no volume with ranged AFR locks (GLUSTER_TEST_RANGED_LOCK_VOLUME unset): left out"
        );
        return;
    };
    let file = format!("backstore-live-ranged-lock-{}.img", std::process::id());
    let (store, _remove) = replicated_store(&spec, &file);
    let held = HeldWrite::start(&store, &spec, &file);
    let cleared = clear_write_locks_within_20s(&store);
    let meanwhile = held.answer.recv_timeout(Duration::from_secs(2)).ok();
    let mut held = held;
    let _ = held.child.kill();
    let _ = held.child.wait();
    let done = match &meanwhile {
        Some(r) => Ok(r.clone()),
        None => held
            .answer
            .recv_timeout(Duration::from_secs(15))
            .map_err(drop),
    };
    drop(held);
    assert_eq!(
        cleared,
        Ok(0),
        "a lock of the written range only is not cleared"
    );
    assert!(
        meanwhile.is_none(),
        "the write waits for the ranged lock after the clearing: {meanwhile:?}"
    );
    assert_eq!(
        done,
        Ok(Ok(IoReply::Done)),
        "the write lands once the writer died"
    );
}

/// Full provisioning on a sharded volume (`GLUSTER_TEST_SHARD_VOLUME`: files stored in
/// 4 MiB shards, as volumes of VM and block images usually are): the shard translator
/// takes `glfs_fallocate` only in mode 0 (it refuses `FALLOC_FL_KEEP_SIZE` with ENOTSUP),
/// and the store allocates every shard of the new file and of what a resize adds.
#[test]
#[ignore = "needs a live sharded Gluster volume: cargo xtask test-gluster"]
fn live_glfs_full_provisioning_on_a_sharded_volume() {
    let Ok(spec) = std::env::var("GLUSTER_TEST_SHARD_VOLUME") else {
        eprintln!("no sharded volume (GLUSTER_TEST_SHARD_VOLUME unset): left out");
        return;
    };
    let file = format!("backstore-live-shard-full-{}.img", std::process::id());
    let _remove = testkit::gluster::RemoveOnDrop::new(&spec, [file.clone()]);
    let store = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{spec}:{file}"),
        // Three shards and a half.
        create_size: Some(14 << 20),
        gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
        provisioning: backstore::Provisioning::Full,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("open a fully provisioned store on the sharded volume: {e}"));
    assert!(!store.capabilities().discard);
    let space = store.space().unwrap();
    assert!(space.allocated >= 14 << 20, "{space:?}");
    store.resize(22 << 20).unwrap();
    let space = store.space().unwrap();
    assert!(space.allocated >= 22 << 20, "{space:?}");
    // The removal at the end (RemoveOnDrop) deletes the shards in the background, which
    // glfs_fini must not cut short (gfapi::shard_settle): the mount knows the volume is
    // sharded (its /.shard refused to clients); one on the plain volume knows it is not.
    let (volume, host) = spec.split_once('@').unwrap();
    let lib = gfapi::Gfapi::load(None).unwrap();
    let vol = gfapi::Volume::connect(&lib, volume, &[gfapi::Server::tcp(host)], None, 4).unwrap();
    assert!(vol.is_sharded());
    if let Ok(plain) = std::env::var("GLUSTER_TEST_VOLUME") {
        let (volume, host) = plain.split_once('@').unwrap();
        let vol =
            gfapi::Volume::connect(&lib, volume, &[gfapi::Server::tcp(host)], None, 4).unwrap();
        assert!(!vol.is_sharded());
    }
}
