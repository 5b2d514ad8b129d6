//! The safe API against the fake libgfapi (`cargo xtask build-fake`; path from
//! `GFAPI_FAKE_LIB`, else `<target dir>/gfapi-fake/libgfapi.so.0`).

use bytes::Bytes;
use gfapi::{Error, File, Gfapi, IoError, Server, Volume};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const VOLUME: &str = "gv0";

fn fake_library() -> PathBuf {
    let lib = match std::env::var_os("GFAPI_FAKE_LIB") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("gfapi-fake/libgfapi.so.0"),
    };
    assert!(
        lib.exists(),
        "fake libgfapi not found at {}: run `cargo xtask build-fake` (or set GFAPI_FAKE_LIB)",
        lib.display()
    );
    lib
}

static ROOT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_root() {
    if let Some(dir) = ROOT.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `GFAPI_FAKE_ROOT`, set once before any mount; `<root>/gv0` is the volume.
fn root() -> &'static PathBuf {
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("gfapi-test-root")
            .tempdir()
            .unwrap()
            .keep();
        // Each test is a process of its own under nextest: remove the root when it exits.
        // SAFETY: registers a plain function with no captured state.
        unsafe { libc::atexit(remove_root) };
        std::fs::create_dir_all(dir.join(VOLUME)).unwrap();
        std::env::set_var("GFAPI_FAKE_ROOT", &dir);
        dir
    })
}

fn lib() -> Arc<Gfapi> {
    root();
    Gfapi::load(Some(&fake_library())).unwrap()
}

fn volume() -> Arc<Volume> {
    Volume::shared(&lib(), VOLUME, &[Server::tcp("localhost")], None, 4).unwrap()
}

fn new_file(name: &str, size: u64) -> Arc<File> {
    let f = File::create(&volume(), name, libc::O_RDWR | libc::O_EXCL, 0o600).unwrap();
    f.truncate(size).unwrap();
    f
}

fn wait<T: Send + 'static>(start: impl FnOnce(mpsc::Sender<T>)) -> T {
    let (tx, rx) = mpsc::channel();
    start(tx);
    let v = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("callback never ran");
    assert!(
        rx.recv_timeout(Duration::from_millis(1)).is_err(),
        "callback ran twice"
    );
    v
}

#[test]
fn loading_twice_gives_the_same_library() {
    let a = lib();
    let b = lib();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(a.name(), fake_library().display().to_string());
}

#[test]
fn shared_volumes_are_one_mount_per_volume_and_servers() {
    let a = volume();
    let b = volume();
    assert!(Arc::ptr_eq(&a, &b));
    let other = Volume::shared(&lib(), VOLUME, &[Server::tcp("otherhost")], None, 4).unwrap();
    assert!(!Arc::ptr_eq(&a, &other));
    assert_eq!(other.servers(), &[Server::tcp("otherhost")]);
}

#[test]
fn shared_volumes_with_other_translator_options_are_other_mounts() {
    let opt = |xlator: &str, key: &str, value: &str| gfapi::XlatorOption {
        xlator: xlator.into(),
        key: key.into(),
        value: value.into(),
    };
    let servers = [Server::tcp("localhost")];
    let pass = opt("*-io-threads", "pass-through", "true");
    let strict = opt("*-write-behind", "strict-O_DIRECT", "on");
    let both = [pass.clone(), strict.clone()];
    let a = Volume::shared_with(&lib(), VOLUME, &servers, None, 4, &both).unwrap();
    // The same options in another order are the same mount.
    let reordered = [strict.clone(), pass.clone()];
    let b = Volume::shared_with(&lib(), VOLUME, &servers, None, 4, &reordered).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // Other options, or none, are a mount of their own, not the first one's.
    let one = Volume::shared_with(&lib(), VOLUME, &servers, None, 4, &[strict]).unwrap();
    assert!(!Arc::ptr_eq(&a, &one));
    let plain = volume();
    assert!(!Arc::ptr_eq(&a, &plain) && !Arc::ptr_eq(&one, &plain));
}

#[test]
fn glfs_init_failure_is_an_errno_error() {
    let err = Volume::connect(
        &lib(),
        "no-such-volume",
        &[Server::tcp("localhost")],
        None,
        4,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::Call {
            call: "glfs_init",
            errno: libc::ENOENT
        }
    );
}

#[test]
fn open_missing_file_is_enoent_and_create_sizes_it() {
    let vol = volume();
    let err = File::open(&vol, "missing.img", libc::O_RDWR).unwrap_err();
    assert_eq!(
        err,
        Error::Call {
            call: "glfs_open",
            errno: libc::ENOENT
        }
    );
    let f = new_file("sized.img", 1 << 20);
    assert_eq!(f.size().unwrap(), 1 << 20);
    assert_eq!(vol.lstat_size("sized.img").unwrap(), 1 << 20);
    assert_eq!(
        std::fs::metadata(root().join(VOLUME).join("sized.img"))
            .unwrap()
            .len(),
        1 << 20
    );
}

#[test]
fn nul_in_a_path_is_rejected_before_gfapi() {
    let err = File::open(&volume(), "a\0b", libc::O_RDWR).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                call: "glfs_open",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn sync_io_round_trips_and_lands_in_the_volume() {
    let f = new_file("sync.img", 1 << 20);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    f.set_max_chunk(4096); // forces the chunking loop
    f.pwrite(&data, 5000).unwrap();
    f.fdatasync().unwrap();
    f.fsync().unwrap();
    let mut back = vec![0u8; 10_000];
    f.pread(&mut back, 5000).unwrap();
    assert_eq!(back, data);
    let disk = std::fs::read(root().join(VOLUME).join("sync.img")).unwrap();
    assert_eq!(&disk[5000..15_000], &data[..]);
    // Zerofill and discard read back as zeroes.
    f.zerofill(5000, 1000).unwrap();
    f.discard(8192, 4096).unwrap();
    f.pread(&mut back, 5000).unwrap();
    assert!(back[..1000].iter().all(|&b| b == 0));
    assert_eq!(&back[1000..3192], &data[1000..3192]);
    assert!(back[3192..7288].iter().all(|&b| b == 0));
    // Reading past the end is a short transfer, not a silent partial buffer.
    let mut tail = vec![0u8; 100];
    assert_eq!(
        f.pread(&mut tail, (1 << 20) - 50).unwrap_err(),
        Error::Short {
            call: "glfs_pread",
            done: 50,
            wanted: 100
        }
    );
}

#[test]
fn async_io_round_trips_in_chunks_off_the_calling_thread() {
    let f = new_file("async.img", 1 << 20);
    f.set_max_chunk(3000);
    let data = Bytes::from((0..20_000u32).map(|i| (i % 241) as u8).collect::<Vec<u8>>());
    let me = std::thread::current().id();
    let (r, on) = wait(|tx| {
        f.pwrite_async(100, data.clone(), move |r| {
            tx.send((r, std::thread::current().id())).unwrap()
        })
    });
    assert_eq!(r, Ok(()));
    assert_ne!(on, me, "completion ran on the submitting thread");
    let r = wait(|tx| f.fdatasync_async(move |r| tx.send(r).unwrap()));
    assert_eq!(r, Ok(()));
    let r = wait(|tx| f.fsync_async(move |r| tx.send(r).unwrap()));
    assert_eq!(r, Ok(()));
    let got = wait(|tx| f.pread_async(100, 20_000, move |r| tx.send(r).unwrap())).unwrap();
    assert_eq!(got, data);
    let r = wait(|tx| f.zerofill_async(100, 500, move |r| tx.send(r).unwrap()));
    assert_eq!(r, Ok(()));
    let r = wait(|tx| f.discard_async(4096, 4096, move |r| tx.send(r).unwrap()));
    assert_eq!(r, Ok(()));
    let got = wait(|tx| f.pread_async(100, 20_000, move |r| tx.send(r).unwrap())).unwrap();
    assert!(got[..500].iter().all(|&b| b == 0));
    assert_eq!(&got[500..3996], &data[500..3996]);
    assert!(got[3996..8092].iter().all(|&b| b == 0));
    assert_eq!(&got[8092..], &data[8092..]);
    let r = wait(|tx| f.pread_async((1 << 20) - 10, 20, move |r| tx.send(r).unwrap()));
    assert_eq!(
        r,
        Err(IoError::Short {
            done: 10,
            wanted: 20
        })
    );
}

#[test]
fn a_file_dropped_with_requests_in_flight_stays_open_until_they_finish() {
    let f = new_file("inflight.img", 1 << 20);
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for i in 0..64u64 {
        let (done, tx) = (done.clone(), tx.clone());
        f.pwrite_async(i * 4096, Bytes::from(vec![i as u8; 4096]), move |r| {
            done.fetch_add(1, Ordering::SeqCst);
            tx.send(r).unwrap();
        });
    }
    drop(f); // the requests hold the file
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), 64);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(done.load(Ordering::SeqCst), 64);
    let disk = std::fs::read(root().join(VOLUME).join("inflight.img")).unwrap();
    for i in 0..64usize {
        assert!(
            disk[i * 4096..(i + 1) * 4096].iter().all(|&b| b == i as u8),
            "block {i}"
        );
    }
}

#[test]
fn copy_range_copies_inside_the_volume_in_chunks() {
    let src = new_file("copy-src", 0);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    src.pwrite(&data, 0).unwrap();
    let dst = new_file("copy-dst", 0);
    dst.set_max_chunk(64 << 10);
    // the chunk size of the file copied from governs
    src.set_max_chunk(64 << 10);
    src.copy_range(1000, &dst, 512, 250_000).unwrap();
    let on_disk = std::fs::read(root().join(VOLUME).join("copy-dst")).unwrap();
    assert_eq!(on_disk.len(), 250_512);
    assert!(on_disk[..512].iter().all(|&b| b == 0));
    assert_eq!(&on_disk[512..], &data[1000..251_000]);
    // past the end of the source: short, after copying what there was
    let e = src.copy_range(299_000, &dst, 0, 2000).unwrap_err();
    assert_eq!(
        e,
        Error::Short {
            call: "glfs_copy_file_range",
            done: 1000,
            wanted: 2000
        }
    );
}

#[test]
fn seek_finds_data_and_holes() {
    let f = new_file("sparse", 8 << 20);
    f.pwrite(&vec![1u8; 1 << 20], 4 << 20).unwrap();
    assert_eq!(f.seek(0, true).unwrap(), Some(4 << 20));
    let hole = f.seek(4 << 20, false).unwrap().unwrap();
    assert!((5 << 20..=8 << 20).contains(&hole), "hole at {hole}");
    assert_eq!(f.seek(0, false).unwrap(), Some(0));
    // no data after the written MiB: ENXIO is None
    assert_eq!(f.seek(6 << 20, true).unwrap(), None);
    assert_eq!(f.seek(8 << 20, false).unwrap(), None);
}

#[test]
fn posix_locks_follow_lock_owners_and_go_with_the_fd() {
    use gfapi::LockKind;
    let a = new_file("locks-owners", 4096);
    let b = File::open(&volume(), "locks-owners", libc::O_RDWR).unwrap();
    let c = File::open(&volume(), "locks-owners", libc::O_RDWR).unwrap();
    a.set_lock_owner(b"gateway-a").unwrap();
    b.set_lock_owner(b"gateway-b").unwrap();
    c.set_lock_owner(b"gateway-a").unwrap();
    let far = 1u64 << 62;
    assert_eq!(a.try_lock(LockKind::Write, far, 1), Ok(true));
    // another owner conflicts, for reading too; the same owner's other fd shares the lock
    assert_eq!(b.try_lock(LockKind::Write, far, 1), Ok(false));
    assert_eq!(b.try_lock(LockKind::Read, far, 1), Ok(false));
    assert_eq!(c.try_lock(LockKind::Write, far, 1), Ok(true));
    assert_eq!(
        b.try_lock(LockKind::Write, far + 1, 1),
        Ok(true),
        "another byte"
    );
    a.unlock(far, 1).unwrap();
    assert_eq!(b.try_lock(LockKind::Read, far, 1), Ok(true));
    // readers share; a writer of another owner waits for them
    assert_eq!(a.try_lock(LockKind::Read, far, 1), Ok(true));
    assert_eq!(a.try_lock(LockKind::Write, far, 1), Ok(false));
    // closing an fd releases its owner's locks
    drop(b);
    assert_eq!(a.try_lock(LockKind::Write, far, 1), Ok(true));

    assert!(matches!(
        a.set_lock_owner(&[1u8; 256]),
        Err(Error::InvalidArgument {
            call: "glfs_fd_set_lkowner",
            ..
        })
    ));
    assert!(matches!(
        a.set_lock_owner(b""),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.try_lock(LockKind::Write, u64::MAX, 1),
        Err(Error::InvalidArgument {
            call: "glfs_posix_lock",
            ..
        })
    ));
}

/// Mandatory locks as measured on live Gluster 10.3 (docs/fencing.md, "Results"): while a
/// client holds a mandatory write lock, another client's write into the range through an
/// `O_NONBLOCK` fd fails with EAGAIN and changes nothing, its read there fails alike, its
/// write outside the range and the holder's own write succeed, and its request for the
/// lock is refused; after the unlock the other client writes.
#[test]
fn mandatory_locks_refuse_another_clients_io_with_eagain() {
    use gfapi::LockKind;
    const RANGE: u64 = 64 << 10;
    let a = new_file("locks-mandatory", 1 << 20);
    a.set_lock_owner(b"gateway-a").unwrap();
    let other =
        Arc::new(Volume::connect(&lib(), VOLUME, &[Server::tcp("localhost")], None, 4).unwrap());
    let b = File::open(&other, "locks-mandatory", libc::O_RDWR | libc::O_NONBLOCK).unwrap();
    b.set_lock_owner(b"gateway-b").unwrap();
    let eagain = |call| {
        Err(Error::Call {
            call,
            errno: libc::EAGAIN,
        })
    };

    assert_eq!(a.try_lock_mandatory(LockKind::Write, 0, RANGE), Ok(true));
    a.pwrite(&[b'a'; 4096], 4096).unwrap();
    assert_eq!(b.pwrite(&[b'b'; 4096], 8192), eagain("glfs_pwrite"));
    let mut buf = [0u8; 4096];
    assert_eq!(b.pread(&mut buf, 4096), eagain("glfs_pread"));
    b.pwrite(&[b'c'; 4096], RANGE).unwrap();
    assert_eq!(b.try_lock_mandatory(LockKind::Write, 0, RANGE), Ok(false));
    a.pread(&mut buf, 8192).unwrap();
    assert_eq!(buf, [0u8; 4096], "the refused write wrote nothing");

    a.unlock_mandatory(0, RANGE).unwrap();
    b.pwrite(&[b'b'; 4096], 8192).unwrap();
    a.pread(&mut buf, 8192).unwrap();
    assert_eq!(buf, [b'b'; 4096]);
    // an advisory lock fences nothing
    assert_eq!(a.try_lock(LockKind::Write, 0, RANGE), Ok(true));
    b.pwrite(&[b'd'; 4096], 8192).unwrap();
    a.unlock(0, RANGE).unwrap();
    assert!(matches!(
        a.try_lock_mandatory(LockKind::Write, u64::MAX, 1),
        Err(Error::InvalidArgument {
            call: "glfs_file_lock",
            ..
        })
    ));
}

/// Clear-locks of inode locks names an exact range in the grammar the bricks' locks
/// translator reads (`0,START-LEN`; the fake answers EINVAL to one it cannot parse, as a
/// brick does), and a range past the largest file offset is refused before gfapi.
#[test]
fn clear_inode_locks_names_a_range_the_bricks_read() {
    let f = new_file("clear-inode-locks", 65536);
    // The fake models no inode locks (they are the volume's translators'): none cleared.
    assert_eq!(f.clear_inode_locks(0, 0), Ok(0));
    assert_eq!(f.clear_inode_locks(4096, 65536), Ok(0));
    assert!(matches!(
        f.clear_inode_locks(u64::MAX, 1),
        Err(Error::InvalidArgument {
            call: "glfs_fgetxattr",
            ..
        })
    ));
}

/// A 1 MiB read given a buffer of `read_room` bytes asks gfapi for the page past its
/// range as well (so that its reply buffer is not one of libglusterfs's 1 MiB iobufs),
/// returns exactly the wanted bytes, and an error in that page does not fail it: it is
/// sent again for its range alone. At the file's end it reads what is there.
#[test]
fn a_one_mib_read_asks_for_the_page_past_it_and_that_page_cannot_fail_it() {
    const MIB: usize = 1 << 20;
    let f = new_file("pastpage.img", 2 << 20);
    let data: Vec<u8> = (0..2 * MIB as u32).map(|i| (i % 253) as u8).collect();
    f.pwrite(&data, 0).unwrap();
    // One EIO for the first read that touches the page after the first MiB.
    let rules = root().join(".faults.toml");
    let tmp = root().join(".faults.toml.new");
    std::fs::write(
        &tmp,
        "[[rule]]\nop = \"read\"\npath = \"/pastpage.img\"\noffset = [1048576, 1052672]\nerrno = \"EIO\"\ncount = 1\n",
    )
    .unwrap();
    std::fs::rename(&tmp, &rules).unwrap();
    let read = |offset: u64, len: usize, room: usize| {
        let f = f.clone();
        wait(move |tx| {
            f.pread_async_into(offset, len, Vec::with_capacity(room), move |r| {
                tx.send(r).unwrap()
            })
        })
    };
    assert_eq!(gfapi::read_room(MIB), MIB + 4096);
    let got = read(0, MIB, gfapi::read_room(MIB)).unwrap();
    assert_eq!(got.len(), MIB);
    assert!(got[..] == data[..MIB]);
    // The rule fired on that read (it fires once): the page itself now reads.
    let got = read(MIB as u64, 4096, 4096).unwrap();
    assert!(got[..] == data[MIB..MIB + 4096]);
    // The last MiB of the file: gfapi returns the MiB, short of what was asked.
    let got = read(MIB as u64, MIB, gfapi::read_room(MIB)).unwrap();
    assert!(got[..] == data[MIB..]);
    std::fs::remove_file(&rules).unwrap();
}
