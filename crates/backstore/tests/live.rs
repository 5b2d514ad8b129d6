//! The block-store checks of `tests/suite.rs`, run over a `glfs` store on a live Gluster
//! volume through the real libgfapi (`cargo xtask test-gluster` sets
//! `GLUSTER_TEST_VOLUME=volume@host`).
//!
//! Integration tests cannot share functions, so the checks are written again here over the
//! public API. Each check gets a file of its own, named per run (a live volume keeps what
//! earlier runs left behind, and a file removed behind Gluster's back on a replica brick
//! heals back), and removed through gfapi when the check ends, also when it fails. What
//! reached the volume is verified through a second, raw mount.

use backstore::{open_store, StoreOptions};
use bytes::Bytes;
use gfapi_sys::{glfs_fd_t, glfs_t};
use libc::c_int;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;
use store_api::{BlockStore, Completion, ErrorKind, IoReply, IoRequest, IoResult};

const SIZE: u64 = 8 << 20;

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

/// A store on a fresh file of the live volume; the file is removed on drop.
struct Fixture {
    store: Arc<dyn BlockStore>,
    path: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Err(e) = raw().unlink(&self.path) {
            eprintln!("cannot remove {} from the live volume: {e}", self.path);
        }
    }
}

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
    let store = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{volume}@{host}:{path}"),
        create_size: Some(SIZE),
        // The real library by name, whatever GFAPI_LIBRARY says.
        gfapi_library: Some(gfapi_sys::DEFAULT_LIBRARY.into()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("open a glfs store on the live volume: {e}"));
    Fixture { store, path }
}

/// Submits and waits, checking the completion runs exactly once.
fn run(store: &dyn BlockStore, req: IoRequest) -> IoResult {
    let (tx, rx) = mpsc::channel();
    store.submit(req, Completion::new(move |r| tx.send(r).unwrap()));
    let result = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("completion not called within 60 s");
    assert!(
        rx.recv_timeout(Duration::from_millis(1)).is_err(),
        "completion called twice"
    );
    result
}

fn read(store: &dyn BlockStore, offset: u64, len: u32) -> Vec<u8> {
    match run(store, IoRequest::Read { offset, len }) {
        Ok(IoReply::Data(d)) => {
            assert_eq!(d.len(), len as usize, "read returned the wrong length");
            d.to_vec()
        }
        other => panic!("read {offset}+{len} failed: {other:?}"),
    }
}

fn write(store: &dyn BlockStore, offset: u64, data: &[u8]) {
    let r = run(
        store,
        IoRequest::Write {
            offset,
            data: Bytes::copy_from_slice(data),
            fua: false,
        },
    );
    assert_eq!(r, Ok(IoReply::Done), "write {offset}+{}", data.len());
}

/// A pattern that differs at every byte position and between seeds.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

// ---- the checks (as in tests/suite.rs) ----

fn geometry_follows_the_create_size() {
    let f = open("geometry");
    let g = f.store.geometry();
    assert_eq!((g.block_size, g.num_blocks), (512, SIZE / 512));
    assert!(
        f.store.describe().contains(&f.path),
        "{}",
        f.store.describe()
    );
}

fn read_after_write() {
    let f = open("raw");
    let s = &*f.store;
    assert_eq!(
        read(s, 8192, 4096),
        vec![0; 4096],
        "fresh store reads zeroes"
    );
    let data = pattern(4096, 1);
    write(s, 8192, &data);
    assert_eq!(read(s, 8192, 4096), data);
    assert_eq!(read(s, 4096, 4096), vec![0; 4096], "neighbour untouched");
    let second = pattern(2048, 2);
    write(s, 9216, &second);
    let mut expect = data.clone();
    expect[1024..3072].copy_from_slice(&second);
    assert_eq!(read(s, 8192, 4096), expect);
}

fn unaligned_and_large_io() {
    let f = open("unaligned");
    let s = &*f.store;
    let small = pattern(1000, 3);
    write(s, 777, &small);
    let got = read(s, 0, 3000);
    assert_eq!(&got[777..1777], &small[..]);
    assert!(got[..777].iter().chain(&got[1777..]).all(|&b| b == 0));
    // 3 MiB + 5 bytes crossing several 1 MiB boundaries, at an odd offset.
    let big = pattern((3 << 20) + 5, 4);
    write(s, 12345, &big);
    assert_eq!(read(s, 12345, big.len() as u32), big);
    // Last byte of the store.
    write(s, SIZE - 1, &[0xAB]);
    assert_eq!(read(s, SIZE - 512, 512)[511], 0xAB);
}

fn flush_and_fua_writes_complete() {
    let f = open("flush");
    let s = &*f.store;
    let data = pattern(8192, 5);
    let r = run(
        s,
        IoRequest::Write {
            offset: 0,
            data: Bytes::from(data.clone()),
            fua: true,
        },
    );
    assert_eq!(r, Ok(IoReply::Done));
    assert_eq!(run(s, IoRequest::Flush), Ok(IoReply::Done));
    assert_eq!(read(s, 0, 8192), data);
}

fn discard_reads_back_zeroes() {
    let f = open("discard");
    let s = &*f.store;
    let caps = s.capabilities();
    assert!(caps.discard, "glfs announces discard");
    let data = pattern(65536, 6);
    write(s, 65536, &data);
    assert_eq!(
        run(
            s,
            IoRequest::Discard {
                offset: 65536 + 16384,
                len: 16384
            }
        ),
        Ok(IoReply::Done)
    );
    let got = read(s, 65536, 65536);
    assert_eq!(&got[..16384], &data[..16384]);
    if caps.discard_zeroes {
        assert!(
            got[16384..32768].iter().all(|&b| b == 0),
            "discarded range is not zero"
        );
    }
    assert_eq!(&got[32768..], &data[32768..]);
}

fn write_zeroes_zeroes_exactly_the_range() {
    let f = open("zeroes");
    let s = &*f.store;
    let data = pattern(65536, 7);
    write(s, 0, &data);
    // Unaligned range: a zero-range implementation must not round outwards.
    assert_eq!(
        run(
            s,
            IoRequest::WriteZeroes {
                offset: 1000,
                len: 30000
            }
        ),
        Ok(IoReply::Done)
    );
    let got = read(s, 0, 65536);
    assert_eq!(&got[..1000], &data[..1000]);
    assert!(got[1000..31000].iter().all(|&b| b == 0));
    assert_eq!(&got[31000..], &data[31000..]);
}

fn out_of_range_requests_are_rejected() {
    let f = open("range");
    let s = &*f.store;
    let reqs = [
        IoRequest::Read {
            offset: SIZE,
            len: 512,
        },
        IoRequest::Read {
            offset: SIZE - 512,
            len: 1024,
        },
        IoRequest::Write {
            offset: SIZE - 1,
            data: Bytes::from_static(&[1, 2]),
            fua: false,
        },
        IoRequest::Discard {
            offset: SIZE,
            len: 1,
        },
        IoRequest::WriteZeroes {
            offset: u64::MAX,
            len: 2,
        },
    ];
    for req in reqs {
        let op = req.op();
        let err = run(s, req).unwrap_err();
        assert_eq!((err.op, err.kind), (op, ErrorKind::OutOfRange));
    }
    assert_eq!(read(s, SIZE - 512, 512), vec![0; 512]);
    assert_eq!(
        raw().read_file(&f.path).len() as u64,
        SIZE,
        "a rejected write must not grow the file"
    );
}

fn concurrent_submits_complete_exactly_once() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 64;
    let f = open("concurrent");
    let store = f.store.clone();
    let calls: Arc<Vec<AtomicUsize>> = Arc::new(
        (0..THREADS * PER_THREAD)
            .map(|_| AtomicUsize::new(0))
            .collect(),
    );
    let (tx, rx) = mpsc::channel::<(usize, IoResult)>();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (store, calls, tx) = (store.clone(), calls.clone(), tx.clone());
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let id = t * PER_THREAD + i;
                    let (calls, tx) = (calls.clone(), tx.clone());
                    let data = Bytes::from(pattern(4096, id as u8));
                    store.submit(
                        IoRequest::Write {
                            offset: id as u64 * 4096,
                            data,
                            fua: false,
                        },
                        Completion::new(move |r| {
                            calls[id].fetch_add(1, Ordering::SeqCst);
                            tx.send((id, r)).unwrap();
                        }),
                    );
                }
            });
        }
    });
    drop(tx);
    for _ in 0..THREADS * PER_THREAD {
        let (id, r) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a completion never came");
        assert_eq!(r, Ok(IoReply::Done), "request {id}");
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "extra completion"
    );
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    let all = read(&*store, 0, (THREADS * PER_THREAD * 4096) as u32);
    for (id, chunk) in all.chunks(4096).enumerate() {
        assert_eq!(chunk, &pattern(4096, id as u8)[..], "block {id}");
    }
}

fn bytes_land_in_the_volume_file() {
    let f = open("landed");
    let s = &*f.store;
    let data = pattern(5000, 8);
    write(s, 3 << 20, &data);
    assert_eq!(run(s, IoRequest::Flush), Ok(IoReply::Done));
    // Read through another mount: what the store wrote is on the bricks, not in a cache.
    let on_volume = raw().read_file(&f.path);
    assert_eq!(on_volume.len() as u64, SIZE);
    assert_eq!(&on_volume[3 << 20..(3 << 20) + 5000], &data[..]);
    assert!(on_volume[..3 << 20].iter().all(|&b| b == 0));
}

fn missing_file_without_create_size_fails_to_open() {
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
    assert_eq!(
        err.to_string(),
        format!(
            "cannot open glfs {spec}: glfs_open failed: No such file or directory (os error 2) \
             (give a create size to create it)"
        )
    );
}

#[test]
#[ignore = "needs a live Gluster volume: cargo xtask test-gluster"]
fn live_glfs_store_suite() {
    // One test, so the process mounts the volume once (glfs_fini takes seconds on real
    // Gluster); the checks run in order and each names itself when it fails.
    let checks: &[(&str, fn())] = &[
        (
            "geometry_follows_the_create_size",
            geometry_follows_the_create_size,
        ),
        ("read_after_write", read_after_write),
        ("unaligned_and_large_io", unaligned_and_large_io),
        (
            "flush_and_fua_writes_complete",
            flush_and_fua_writes_complete,
        ),
        ("discard_reads_back_zeroes", discard_reads_back_zeroes),
        (
            "write_zeroes_zeroes_exactly_the_range",
            write_zeroes_zeroes_exactly_the_range,
        ),
        (
            "out_of_range_requests_are_rejected",
            out_of_range_requests_are_rejected,
        ),
        (
            "concurrent_submits_complete_exactly_once",
            concurrent_submits_complete_exactly_once,
        ),
        (
            "bytes_land_in_the_volume_file",
            bytes_land_in_the_volume_file,
        ),
        (
            "missing_file_without_create_size_fails_to_open",
            missing_file_without_create_size_fails_to_open,
        ),
    ];
    // Stores on one volume share its mount, which is finished (glfs_fini, ~10 s on real
    // Gluster) when the last of them closes; this store keeps it up between the checks.
    let keeper = open("keeper");
    let mut failed = Vec::new();
    for (name, check) in checks {
        let started = std::time::Instant::now();
        let ok = std::panic::catch_unwind(check).is_ok();
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
