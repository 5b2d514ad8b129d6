//! One block-store suite run over every backend: memory, file, and glfs on the fake
//! libgfapi (built with `cargo xtask build-fake`).

use backstore::{open_store, StoreOptions};
use bytes::Bytes;
use rstest::rstest;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use store_api::{BlockStore, Completion, ErrorKind, IoReply, IoRequest, IoResult};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    File,
    Glfs,
}

/// A store under test and, for file-backed kinds, the file on local disk holding its bytes.
struct Fixture {
    store: Arc<dyn BlockStore>,
    backing: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

const SIZE: u64 = 8 << 20;
const VOLUME: &str = "suite";
/// A volume of its own for the test that disconnects its mount.
const DROPPED: &str = "dropped";

/// Fault rules of the fake (its `<root>/.faults.toml`), each aimed at files of one name
/// prefix so that the rest of the suite runs unaffected.
const FAULTS: &str = r#"
[[rule]]
path = "/short-*"
op = ["read", "write"]
short = 1000

[[rule]]
path = "/eio-*"
op = "read"
errno = "EIO"

[[rule]]
path = "/enospc-*"
op = "write"
errno = "ENOSPC"

[[rule]]
path = "/nozero-*"
op = ["discard", "zerofill"]
errno = "EOPNOTSUPP"

[[rule]]
path = "/syncfail-*"
op = "fdatasync"
errno = "EIO"

[[rule]]
volume = "dropped"
op = "write"
disconnect = true

[[rule]]
volume = "hangs"
op = "init"
hang = true
"#;

/// Path of the fake libgfapi: `GFAPI_FAKE_LIB`, else `<target dir>/gfapi-fake/libgfapi.so.0`.
fn fake_library() -> PathBuf {
    if let Some(p) = std::env::var_os("GFAPI_FAKE_LIB") {
        let lib = PathBuf::from(p);
        assert!(
            lib.exists(),
            "GFAPI_FAKE_LIB={} does not exist: run `cargo xtask build-fake`",
            lib.display()
        );
        return lib;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let lib = target.join("gfapi-fake/libgfapi.so.0");
    assert!(
        lib.exists(),
        "fake libgfapi not found at {}: run `cargo xtask build-fake` (or set GFAPI_FAKE_LIB)",
        lib.display()
    );
    lib
}

/// The fake's root directory (`GFAPI_FAKE_ROOT`), set once for the whole test process
/// before the library is first loaded; `<root>/suite/` is the volume.
fn fake_root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("gfapi-fake-root")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::create_dir_all(dir.join(VOLUME)).unwrap();
        std::fs::create_dir_all(dir.join(DROPPED)).unwrap();
        std::fs::write(dir.join(".faults.toml"), FAULTS).unwrap();
        std::env::set_var("GFAPI_FAKE_ROOT", &dir);
        dir
    })
}

fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn open(kind: Kind, name: &str) -> Fixture {
    open_on(kind, VOLUME, name)
}

fn open_on(kind: Kind, volume: &str, name: &str) -> Fixture {
    match kind {
        Kind::Memory => Fixture {
            store: open_store(&StoreOptions {
                bstype: "memory".into(),
                create_size: Some(SIZE),
                ..Default::default()
            })
            .unwrap(),
            backing: None,
            _dir: None,
        },
        Kind::File => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            let store = open_store(&StoreOptions {
                bstype: "file".into(),
                backing_store: path.to_str().unwrap().into(),
                create_size: Some(SIZE),
                ..Default::default()
            })
            .unwrap();
            Fixture {
                store,
                backing: Some(path),
                _dir: Some(dir),
            }
        }
        Kind::Glfs => {
            let lib = fake_library();
            let root = fake_root();
            let file = unique(name);
            let store = open_store(&StoreOptions {
                bstype: "glfs".into(),
                backing_store: format!("{volume}@localhost:{file}"),
                create_size: Some(SIZE),
                gfapi_library: Some(lib),
                ..Default::default()
            })
            .unwrap();
            Fixture {
                store,
                backing: Some(root.join(VOLUME).join(file)),
                _dir: None,
            }
        }
    }
}

/// Submits and waits, checking the completion runs exactly once.
fn run(store: &dyn BlockStore, req: IoRequest) -> IoResult {
    let (tx, rx) = mpsc::channel();
    store.submit(req, Completion::new(move |r| tx.send(r).unwrap()));
    let result = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("completion not called within 30 s");
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

#[rstest]
fn geometry_follows_the_create_size(#[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind) {
    let f = open(kind, "geometry");
    let g = f.store.geometry();
    assert_eq!((g.block_size, g.num_blocks), (512, SIZE / 512));
}

#[rstest]
fn read_after_write(#[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind) {
    let f = open(kind, "raw");
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
    // Overwrite half of it.
    let second = pattern(2048, 2);
    write(s, 9216, &second);
    let mut expect = data.clone();
    expect[1024..3072].copy_from_slice(&second);
    assert_eq!(read(s, 8192, 4096), expect);
}

#[rstest]
fn unaligned_and_large_io(#[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind) {
    let f = open(kind, "unaligned");
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

#[rstest]
fn flush_and_fua_writes_complete(#[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind) {
    let f = open(kind, "flush");
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

#[rstest]
fn discard_reads_back_zeroes(#[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind) {
    let f = open(kind, "discard");
    let s = &*f.store;
    let caps = s.capabilities();
    assert!(caps.discard, "every backend here announces discard");
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

#[rstest]
fn write_zeroes_zeroes_exactly_the_range(
    #[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind,
) {
    let f = open(kind, "zeroes");
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

#[rstest]
fn out_of_range_requests_are_rejected(#[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind) {
    let f = open(kind, "range");
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
    // Nothing was written by the rejected write.
    assert_eq!(read(s, SIZE - 512, 512), vec![0; 512]);
}

#[rstest]
fn concurrent_submits_complete_exactly_once(
    #[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind,
) {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 64;
    let f = open(kind, "concurrent");
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
            .recv_timeout(Duration::from_secs(30))
            .expect("a completion never came");
        assert_eq!(r, Ok(IoReply::Done), "request {id}");
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "extra completion"
    );
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    // Every 4 KiB block holds its own writer's pattern.
    let all = read(&*store, 0, (THREADS * PER_THREAD * 4096) as u32);
    for (id, chunk) in all.chunks(4096).enumerate() {
        assert_eq!(chunk, &pattern(4096, id as u8)[..], "block {id}");
    }
}

#[rstest]
fn bytes_land_in_the_backing_file(#[values(Kind::File, Kind::Glfs)] kind: Kind) {
    let f = open(kind, "landed");
    let s = &*f.store;
    let data = pattern(5000, 8);
    write(s, 3 << 20, &data);
    assert_eq!(run(s, IoRequest::Flush), Ok(IoReply::Done));
    let on_disk = std::fs::read(f.backing.as_ref().unwrap()).unwrap();
    assert_eq!(on_disk.len() as u64, SIZE);
    assert_eq!(&on_disk[3 << 20..(3 << 20) + 5000], &data[..]);
    assert!(on_disk[..3 << 20].iter().all(|&b| b == 0));
}

// ---- error paths through the fake's fault injection (glfs only) ----

#[test]
fn glfs_short_transfers_continue_until_complete() {
    let f = open(Kind::Glfs, "short");
    let s = &*f.store;
    // Every gfapi call moves at most 1000 bytes; the store must keep going.
    let data = pattern(10_000, 9);
    write(s, 4096, &data);
    assert_eq!(read(s, 4096, 10_000), data);
    let on_disk = std::fs::read(f.backing.as_ref().unwrap()).unwrap();
    assert_eq!(&on_disk[4096..14_096], &data[..]);
}

#[rstest]
#[case::read_eio("eio", IoRequest::Read { offset: 0, len: 4096 }, ErrorKind::Io, libc::EIO)]
#[case::write_enospc(
    "enospc",
    IoRequest::Write { offset: 0, data: Bytes::from_static(&[1; 512]), fua: false },
    ErrorKind::NoSpace,
    libc::ENOSPC
)]
#[case::flush_eio("syncfail", IoRequest::Flush, ErrorKind::Io, libc::EIO)]
#[case::fua_write_sync_eio(
    "syncfail",
    IoRequest::Write { offset: 0, data: Bytes::from_static(&[1; 512]), fua: true },
    ErrorKind::Io,
    libc::EIO
)]
fn glfs_errors_carry_kind_and_errno(
    #[case] name: &str,
    #[case] req: IoRequest,
    #[case] kind: ErrorKind,
    #[case] errno: i32,
) {
    let f = open(Kind::Glfs, name);
    let op = req.op();
    let err = run(&*f.store, req).unwrap_err();
    assert_eq!((err.op, err.kind, err.errno), (op, kind, Some(errno)));
}

#[rstest]
#[case::discard(IoRequest::Discard { offset: 1000, len: 5000 })]
#[case::write_zeroes(IoRequest::WriteZeroes { offset: 1000, len: 5000 })]
fn glfs_unsupported_zeroing_falls_back_to_writing_zeroes(#[case] req: IoRequest) {
    let f = open(Kind::Glfs, "nozero");
    let s = &*f.store;
    let data = pattern(8192, 10);
    write(s, 0, &data);
    assert_eq!(run(s, req), Ok(IoReply::Done));
    let got = read(s, 0, 8192);
    assert_eq!(&got[..1000], &data[..1000]);
    assert!(got[1000..6000].iter().all(|&b| b == 0));
    assert_eq!(&got[6000..], &data[6000..]);
}

#[test]
fn glfs_lost_connection_is_not_connected() {
    let f = open_on(Kind::Glfs, DROPPED, "dropped");
    let err = run(
        &*f.store,
        IoRequest::Write {
            offset: 0,
            data: Bytes::from_static(&[1; 512]),
            fua: false,
        },
    )
    .unwrap_err();
    assert_eq!(
        (err.kind, err.errno),
        (ErrorKind::NotConnected, Some(libc::ENOTCONN))
    );
}

#[test]
fn glfs_missing_volume_and_missing_file_fail_to_open() {
    let lib = fake_library();
    fake_root();
    let base = StoreOptions {
        bstype: "glfs".into(),
        gfapi_library: Some(lib),
        ..Default::default()
    };
    let err = open_store(&StoreOptions {
        backing_store: "novol@localhost:disk".into(),
        ..base.clone()
    })
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "cannot open glfs novol@localhost:disk: glfs_init failed: No such file or directory (os error 2)"
    );
    let err = open_store(&StoreOptions {
        backing_store: format!("{VOLUME}@localhost:absent"),
        ..base
    })
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "cannot open glfs suite@localhost:absent: glfs_open failed: No such file or directory (os error 2) \
         (give a create size to create it)"
    );
}

#[test]
fn glfs_stores_on_one_volume_share_and_survive_each_other() {
    let a = open(Kind::Glfs, "share-a");
    let b = open(Kind::Glfs, "share-b");
    write(&*a.store, 0, &pattern(512, 11));
    drop(a);
    // b's mount is the same glfs_t; closing a must not have finished it.
    write(&*b.store, 0, &pattern(512, 12));
    assert_eq!(read(&*b.store, 0, 512), pattern(512, 12));
}

#[test]
fn glfs_file_size_not_a_block_multiple_is_rounded_down() {
    fake_root();
    let name = unique("odd");
    std::fs::write(fake_root().join(VOLUME).join(&name), vec![0u8; 4096 + 700]).unwrap();
    let s = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{VOLUME}@localhost:{name}"),
        gfapi_library: Some(fake_library()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        s.geometry().num_blocks,
        9,
        "4796 bytes hold 9 whole 512-byte blocks"
    );
    assert_eq!(s.describe(), format!("glfs {VOLUME}@localhost:{name}"));
}

#[test]
fn glfs_hung_mount_times_out() {
    fake_root();
    let o = StoreOptions {
        bstype: "glfs".into(),
        backing_store: "hangs@localhost:disk".into(),
        bsopts: "timeout=1".into(),
        gfapi_library: Some(fake_library()),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let err = open_store(&o).err().expect("a hung glfs_init cannot open");
    assert_eq!(
        err.to_string(),
        "cannot open glfs hangs@localhost:disk: volume mount (glfs_init) did not finish within 1 s"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
