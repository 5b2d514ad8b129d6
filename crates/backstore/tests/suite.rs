//! One block-store suite run over every backend: memory, file, and glfs on the fake
//! libgfapi (built with `cargo xtask build-fake`). The shared checks live in
//! `tests/common/mod.rs` (`tests/live.rs` runs them on a live Gluster volume); the glfs
//! error paths through the fake's fault injection are here.

mod common;

use backstore::{open_store, Provisioning, StoreOptions};
use bytes::Bytes;
use common::{pattern, read, run, write, Fixture, SIZE};
use rstest::rstest;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use store_api::{ErrorKind, IoReply, IoRequest};
use testkit::fake::fake_library_path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    File,
    Glfs,
}

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
path = "/unsizable-*"
op = "ftruncate"
errno = "ENOSPC"

[[rule]]
path = "/unallocatable-*"
op = "fallocate"
errno = "ENOSPC"

[[rule]]
path = "/noprealloc-*"
op = "fallocate"
errno = "EOPNOTSUPP"

[[rule]]
path = "/sharded-*"
op = "fallocate"
shard = true

[[rule]]
path = "/growfull-*"
op = "fallocate"
offset = [8388608, 8388609]
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

[[rule]]
path = "/*coherent-*"
op = "write"
write_behind = true

# Gluster's md-cache: a mount resolves a name through the lookup it keeps for the
# volume's md-cache-timeout (here 600 s, so no entry runs out during the check), unless
# the mount sets the timeout to 0 (`backstore::coherent::fresh_lookups`).
[[rule]]
path = "/metadata-shared-*"
op = ["open", "stat", "lstat"]
md_cache_timeout = 600

[[rule]]
path = "/joined-all-*"
op = "write"
offset = [16384, 16385]
errno = "EIO"

[[rule]]
path = "/joined-gap-*"
op = "write"
offset = [4096, 4097]
errno = "EIO"

[[rule]]
path = "/joined-fua-*"
op = "write"
offset = [8192, 8193]
errno = "EIO"

[[rule]]
path = "/joined-read-*"
op = "write"
offset = [4096, 4097]
errno = "EIO"

[[rule]]
path = "/joined-big-*"
op = "write"
offset = [524288, 524289]
errno = "EIO"

[[rule]]
path = "/joined-iov-*"
op = "write"
offset = [15360, 15361]
errno = "EIO"

[[rule]]
path = "/joined-coherent-*"
op = "write"
offset = [4096, 4097]
errno = "EIO"

[[rule]]
path = "/rjoined-all-*"
op = "read"
offset = [16384, 16385]
errno = "EIO"

[[rule]]
path = "/rjoined-gap-*"
op = "read"
offset = [4096, 4097]
errno = "EIO"

[[rule]]
path = "/rjoined-write-*"
op = "read"
offset = [4096, 4097]
errno = "EIO"

[[rule]]
path = "/rjoined-big-*"
op = "read"
offset = [131072, 131073]
errno = "EIO"
"#;

static ROOT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_root() {
    if let Some(dir) = ROOT.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The fake's root directory (`GFAPI_FAKE_ROOT`), set once for the whole test process
/// before the library is first loaded; `<root>/suite/` is the volume.
fn fake_root() -> &'static PathBuf {
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("gfapi-fake-root")
            .tempdir()
            .unwrap()
            .keep();
        // Each test is a process of its own under nextest: remove the root when it exits.
        // SAFETY: registers a plain function with no captured state.
        unsafe { libc::atexit(remove_root) };
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
        Kind::Memory => Fixture::new(
            open_store(&StoreOptions {
                bstype: "memory".into(),
                create_size: Some(SIZE),
                ..Default::default()
            })
            .unwrap(),
        ),
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
            let again = path.clone();
            Fixture {
                store,
                describes: Some(path.display().to_string()),
                backing: Some(Box::new(move || std::fs::read(&path).unwrap())),
                keep: Some(Box::new(dir)),
                another_gateway: Some(Box::new(move || {
                    open_store(&StoreOptions {
                        bstype: "file".into(),
                        backing_store: again.to_str().unwrap().into(),
                        ..Default::default()
                    })
                    .unwrap()
                })),
            }
        }
        Kind::Glfs => {
            let root = fake_root();
            let file = unique(name);
            // A LUN shared by gateways (`common::COHERENT`).
            let shared = name.starts_with(common::COHERENT);
            let store = open_store(&StoreOptions {
                bstype: "glfs".into(),
                backing_store: format!("{volume}@localhost:{file}"),
                create_size: Some(SIZE),
                gfapi_library: Some(fake_library_path()),
                // The fake copies from the offset asked (Gluster 10.3 does not).
                bsopts: "copy-offload=on".into(),
                shared,
                ..Default::default()
            })
            .unwrap();
            let host = root.join(volume).join(&file);
            // Another server name: a mount (glfs_t) of its own, as another gateway has.
            let again = format!("{volume}@127.0.0.1:{file}");
            Fixture {
                store,
                describes: Some(file),
                backing: Some(Box::new(move || std::fs::read(&host).unwrap())),
                keep: None,
                another_gateway: Some(Box::new(move || {
                    open_store(&StoreOptions {
                        bstype: "glfs".into(),
                        backing_store: again.clone(),
                        gfapi_library: Some(fake_library_path()),
                        shared,
                        ..Default::default()
                    })
                    .unwrap()
                })),
            }
        }
    }
}

/// One test per shared check (`common::CHECKS`) and backend.
macro_rules! shared_checks {
    ($($check:ident: [$($kind:ident),*];)*) => {
        $(
            #[rstest]
            fn $check(#[values($(Kind::$kind),*)] kind: Kind) {
                common::$check(&|name: &str| open(kind, name));
            }
        )*

        #[test]
        fn every_shared_check_runs_here() {
            let here = [$(stringify!($check)),*];
            let shared: Vec<_> = common::CHECKS.iter().map(|(n, _)| *n).collect();
            assert_eq!(here.as_slice(), shared.as_slice());
        }
    };
}

shared_checks! {
    metadata_is_replaced_whole_and_read_back: [Memory, File, Glfs];
    metadata_locks_exclude_other_gateways: [Memory, File, Glfs];
    metadata_is_read_through_other_gateways_as_last_written: [Memory, File, Glfs];
    geometry_follows_the_create_size: [Memory, File, Glfs];
    read_after_write: [Memory, File, Glfs];
    unaligned_and_large_io: [Memory, File, Glfs];
    reads_taken_in_parts_arrive_whole_and_in_order: [Memory, File, Glfs];
    segmented_writes_land_in_order: [Memory, File, Glfs];
    batched_writes_land_as_written: [Memory, File, Glfs];
    batched_reads_get_each_their_own_bytes: [Memory, File, Glfs];
    flush_and_fua_writes_complete: [Memory, File, Glfs];
    discard_reads_back_zeroes: [Memory, File, Glfs];
    allocation_follows_writes_and_discards: [Memory, File, Glfs];
    write_zeroes_zeroes_exactly_the_range: [Memory, File, Glfs];
    out_of_range_requests_are_rejected: [Memory, File, Glfs];
    concurrent_submits_complete_exactly_once: [Memory, File, Glfs];
    // Memory has no file behind it.
    bytes_land_in_the_backing_file: [File, Glfs];
    copies_within_and_between_stores: [Memory, File, Glfs];
    resize_grows_keeping_the_data_and_never_shrinks: [Memory, File, Glfs];
    coherent_writes_are_read_through_other_gateways: [Memory, File, Glfs];
}

/// Options of a glfs store of `file` on the fake's suite volume through `server`.
fn fake_glfs(server: &str, file: &str, bsopts: &str, shared: bool) -> StoreOptions {
    fake_root();
    StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{VOLUME}@{server}:{file}"),
        create_size: Some(SIZE),
        gfapi_library: Some(fake_library_path()),
        bsopts: bsopts.into(),
        shared,
        ..Default::default()
    }
}

/// What coherent mode is for, shown on the fake's model of write-behind (the rule on
/// `*coherent-*` files): without it, a write one gateway's mount acknowledged is not
/// read through another gateway's mount until the writer flushes; that is the documented
/// incoherence of a LUN that is not shared (one gateway: nobody else reads). With
/// `coherent=on` chosen by bsopt (not only by a shared LUN) it is read at once.
#[rstest]
#[case::off("", false)]
#[case::by_bsopt("coherent=on", true)]
fn glfs_coherent_mode_decides_what_other_gateways_read(
    #[case] bsopts: &str,
    #[case] coherent: bool,
) {
    let file = unique("incoherent");
    let opts = |server: &str| fake_glfs(server, &file, bsopts, false);
    let a = backstore::open_glfs_store(&opts("localhost")).unwrap();
    let b = backstore::open_glfs_store(&opts("127.0.0.1")).unwrap();
    assert_eq!((a.is_coherent(), b.is_coherent()), (coherent, coherent));
    let data = pattern(4096, 42);
    write(&*a, 8192, &data);
    let seen = read(&*b, 8192, 4096);
    if coherent {
        assert_eq!(seen, data);
    } else {
        assert_eq!(seen, vec![0u8; 4096], "held in the writer's write-behind");
        assert_eq!(run(&*a, IoRequest::Flush), Ok(IoReply::Done));
        assert_eq!(read(&*b, 8192, 4096), data, "seen once flushed");
    }
}

/// A shared LUN cannot be opened with coherent mode off, and it is on without asking.
#[test]
fn glfs_shared_luns_are_always_coherent() {
    let file = unique("shared");
    let opts = |bsopts: &str| fake_glfs("localhost", &file, bsopts, true);
    assert!(backstore::open_glfs_store(&opts("")).unwrap().is_coherent());
    let err = backstore::open_glfs_store(&opts("coherent=off"))
        .err()
        .expect("coherent=off on a shared LUN is refused");
    assert!(err.to_string().contains("shared by gateways"), "{err}");
    // A LUN of one gateway keeps the fast path (no O_DIRECT).
    let single = StoreOptions {
        shared: false,
        ..opts("")
    };
    assert!(!backstore::open_glfs_store(&single).unwrap().is_coherent());
}

/// A shared LUN's glfs store is fenced by another client's mandatory lock on its image:
/// reads and writes into the range fail with `ErrorKind::Fenced` (EAGAIN, as a live
/// brick refuses them on the `O_NONBLOCK` fd a shared store opens, docs/fencing.md) and
/// change nothing; once the lock goes they succeed.
#[test]
fn glfs_shared_store_is_fenced_by_another_clients_mandatory_lock() {
    use std::sync::Arc;
    use store_api::{Op, StoreError};
    let file = unique("fenced");
    let store = backstore::open_glfs_store(&fake_glfs("localhost", &file, "", true)).unwrap();
    write(&*store, 0, &pattern(4096, 1));
    // the fence holder: another gateway's mount of the volume, its own lock owner
    let lib = gfapi::Gfapi::load(Some(&fake_library_path())).unwrap();
    let servers = [gfapi::Server::tcp("127.0.0.2")];
    let other = Arc::new(gfapi::Volume::connect(&lib, VOLUME, &servers, None, 4).unwrap());
    let fence = gfapi::File::open(&other, &file, libc::O_RDWR).unwrap();
    fence.set_lock_owner(b"fence-holder").unwrap();
    assert_eq!(
        fence.try_lock_mandatory(gfapi::LockKind::Write, 0, SIZE),
        Ok(true)
    );
    let fenced = |op| {
        Err(StoreError {
            op,
            kind: ErrorKind::Fenced,
            errno: Some(libc::EAGAIN),
        })
    };
    let stale = IoRequest::Write {
        offset: 0,
        data: Bytes::from(pattern(4096, 2)).into(),
        fua: false,
    };
    assert_eq!(run(&*store, stale), fenced(Op::Write));
    assert_eq!(
        run(
            &*store,
            IoRequest::Read {
                offset: 0,
                len: 4096
            }
        ),
        fenced(Op::Read)
    );
    let mut seen = vec![0u8; 4096];
    fence.pread(&mut seen, 0).unwrap();
    assert_eq!(seen, pattern(4096, 1), "the fenced write changed nothing");
    fence.unlock_mandatory(0, SIZE).unwrap();
    write(&*store, 0, &pattern(4096, 3));
    assert_eq!(read(&*store, 0, 4096), pattern(4096, 3));
}

/// `fence_data` on shared glfs stores of two gateways (`common::data_fence_fences`);
/// stores without mandatory locks say `Unsupported`.
#[test]
fn glfs_data_fence_refuses_other_gateways_io_while_held() {
    use store_api::{LockError, LockOwner, LockWait};
    let file = unique("fence");
    let a = backstore::open_glfs_store(&fake_glfs("localhost", &file, "", true)).unwrap();
    let b = backstore::open_glfs_store(&fake_glfs("127.0.0.1", &file, "", true)).unwrap();
    common::data_fence_fences(&*a, &*b);
    let owner = LockOwner::new("gw-a").unwrap();
    for kind in [Kind::Memory, Kind::File] {
        let f = open(kind, "fence");
        let Err(LockError::Store { source, .. }) = f.store.fence_data(&owner, LockWait::NoWait)
        else {
            panic!("{kind:?}: a data fence without mandatory locks");
        };
        assert_eq!(source.kind, ErrorKind::Unsupported, "{kind:?}");
    }
}

/// `clear_lock` takes a stalled gateway's election lock and data fence away
/// (`common::a_stalled_holders_locks_are_cleared_and_taken`, on the fake's model of
/// Gluster's clear-locks); stores without locks on a volume say `Unsupported`.
#[test]
fn glfs_clear_lock_takes_a_stalled_holders_locks_away() {
    let file = unique("clear");
    let a = backstore::open_glfs_store(&fake_glfs("localhost", &file, "", true)).unwrap();
    let b = backstore::open_glfs_store(&fake_glfs("127.0.0.1", &file, "", true)).unwrap();
    common::a_stalled_holders_locks_are_cleared_and_taken(&*a, &*b);
    for kind in [Kind::Memory, Kind::File] {
        let f = open(kind, "clear");
        let err = f.store.clear_lock(store_api::DATA_FENCE).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported, "{kind:?}");
    }
}

/// `take_lock_over` takes a stalled gateway's data fence with no moment in which a
/// write lands (`common::a_stalled_holders_fence_is_taken_over_with_no_gap`, on the
/// fake's model of a waiting lock request granted as clear-locks takes the lock in its
/// way); stores without locks on a volume say `Unsupported`.
#[test]
fn glfs_take_lock_over_leaves_no_gap() {
    let file = unique("takeover");
    let a = backstore::open_glfs_store(&fake_glfs("localhost", &file, "", true)).unwrap();
    let b = backstore::open_glfs_store(&fake_glfs("127.0.0.1", &file, "", true)).unwrap();
    let c = backstore::open_glfs_store(&fake_glfs("127.0.0.1,localhost", &file, "", true)).unwrap();
    common::a_stalled_holders_fence_is_taken_over_with_no_gap(&*a, &*b, &*c);
    let owner = store_api::LockOwner::new("gw").unwrap();
    for kind in [Kind::Memory, Kind::File] {
        let f = open(kind, "takeover");
        let err = f
            .store
            .take_lock_over(store_api::DATA_FENCE, &owner, std::time::Duration::ZERO)
            .err()
            .unwrap();
        let store_api::LockError::Store { source, .. } = err else {
            panic!("{kind:?}: {err:?}");
        };
        assert_eq!(source.kind, ErrorKind::Unsupported, "{kind:?}");
    }
}

/// The glfs store answers allocation queries from glfs_lseek SEEK_DATA/SEEK_HOLE (the
/// fake seeks on the sparse backing file), so the shared check above really ran for it.
#[test]
fn glfs_allocation_comes_from_seek_data_and_hole() {
    let f = open(Kind::Glfs, "seek");
    let s = &*f.store;
    const MIB: u64 = 1 << 20;
    write(s, 2 * MIB, &pattern(MIB as usize, 1));
    let ask = |offset: u64, len: u64| run(s, IoRequest::Allocation { offset, len });
    assert_eq!(
        ask(0, 4 * MIB),
        Ok(IoReply::Allocation {
            mapped: false,
            len: 2 * MIB
        })
    );
    assert_eq!(
        ask(2 * MIB, 4 * MIB),
        Ok(IoReply::Allocation {
            mapped: true,
            len: MIB
        })
    );
    assert_eq!(
        ask(3 * MIB, 100),
        Ok(IoReply::Allocation {
            mapped: false,
            len: 100
        })
    );
    assert_eq!(
        ask(0, 0).unwrap_err().kind,
        ErrorKind::OutOfRange,
        "an empty query is refused"
    );
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
    let on_disk = f.backing_bytes();
    assert_eq!(&on_disk[4096..14_096], &data[..]);
}

#[rstest]
#[case::read_eio("eio", IoRequest::Read { offset: 0, len: 4096 }, ErrorKind::Io, libc::EIO)]
#[case::write_enospc(
    "enospc",
    IoRequest::Write { offset: 0, data: Bytes::from_static(&[1; 512]).into(), fua: false },
    ErrorKind::NoSpace,
    libc::ENOSPC
)]
#[case::flush_eio("syncfail", IoRequest::Flush, ErrorKind::Io, libc::EIO)]
#[case::fua_write_sync_eio(
    "syncfail",
    IoRequest::Write { offset: 0, data: Bytes::from_static(&[1; 512]).into(), fua: true },
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

/// With bsopt `read-part=256k` the glfs store cuts a large read whose completion takes
/// parts into 256 KiB gfapi reads and hands all but the last over as parts, in order, as
/// they come back (the fake completes on threads of its own, in any order); a read of
/// one piece or less, and a completion that takes no parts, get the whole data at once.
#[test]
fn glfs_large_reads_come_in_read_part_pieces() {
    let file = unique("pieces");
    let store = backstore::open_glfs_store(&fake_glfs("localhost", &file, "read-part=256k", false))
        .unwrap();
    let s = &*store;
    let data = pattern(4 << 20, 15);
    write(s, 0, &data);
    let part: usize = 256 << 10;
    for len in [(1 << 20) + 4096, 4 << 20, part + 1, 2 * part] {
        let (parts, result) = common::read_taking_parts(s, 0, len as u32);
        let Ok(IoReply::Data(rest)) = result else {
            panic!("read of {len} failed: {result:?}")
        };
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        let pieces = len.div_ceil(part);
        assert_eq!(lens, vec![part; pieces - 1], "read of {len}");
        assert_eq!(rest.len(), len - (pieces - 1) * part);
        for (i, p) in parts.iter().enumerate() {
            assert!(
                p[..] == data[i * part..(i + 1) * part],
                "piece {i} of {len}"
            );
        }
        assert!(rest[..] == data[len - rest.len()..len]);
    }
    for len in [part, 64 << 10] {
        let (parts, result) = common::read_taking_parts(s, 4096, len as u32);
        assert!(parts.is_empty(), "one piece: no parts");
        assert_eq!(
            result,
            Ok(IoReply::Data(Bytes::copy_from_slice(
                &data[4096..4096 + len]
            )))
        );
    }
    assert_eq!(read(s, 0, 1 << 20), data[..1 << 20], "whole without parts");
}

/// bsopt `read-part` sets the piece a large read is cut into (every part that size, the
/// rest with the completion), and `off` (the default) reads every request whole, with no
/// part; the data
/// put together is the file's either way.
#[rstest]
#[case::half_mib("read-part=512k", Some(512 << 10))]
#[case::one_mib("read-part=1M", Some(1 << 20))]
#[case::off("read-part=off", None)]
#[case::default_whole("", None)]
fn glfs_read_part_bsopt_sets_the_piece_or_turns_it_off(
    #[case] bsopts: &str,
    #[case] part: Option<usize>,
) {
    let file = unique("readpart");
    let store = backstore::open_glfs_store(&fake_glfs("localhost", &file, bsopts, false)).unwrap();
    let s = &*store;
    let data = pattern(4 << 20, 17);
    write(s, 0, &data);
    for len in [(1usize << 20) + 4096, 4 << 20, 512 << 10, 256 << 10] {
        let (parts, result) = common::read_taking_parts(s, 0, len as u32);
        let Ok(IoReply::Data(rest)) = result else {
            panic!("read of {len} failed: {result:?}")
        };
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        let expect = match part {
            Some(p) => vec![p; len.div_ceil(p) - 1],
            None => Vec::new(),
        };
        assert_eq!(lens, expect, "read of {len} with {bsopts}");
        let mut whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        whole.extend_from_slice(&rest);
        assert!(whole == data[..len], "read of {len} with {bsopts}");
    }
}

/// bsopt `follow-cpu` (on by default): the threads that run a mount's completions move to
/// the CPU the requests are submitted from (here the fake's worker threads, started from
/// an unpinned thread, and a submitter pinned to the last CPU it may use); with
/// `follow-cpu=off` they stay where they may run. The data read is the file's either way.
#[rstest]
#[case::on("", true)]
#[case::off("follow-cpu=off", false)]
fn glfs_follow_cpu_bsopt_runs_completions_where_requests_come_from(
    #[case] bsopts: &str,
    #[case] follows: bool,
) {
    use gfapi::follow::{current_affinity, set_affinity, WINDOW};
    use store_api::BlockStore;
    let Some(allowed) = current_affinity() else {
        return; // a CPU above 63: not followed (gfapi's unit tests cover the rule)
    };
    let file = unique("follow");
    let store = backstore::open_glfs_store(&fake_glfs("localhost", &file, bsopts, false)).unwrap();
    let s = &*store;
    let data = pattern(4096, 23);
    // From this unpinned thread, so the fake starts its workers here: a burst of reads
    // in flight at once grows its pool (a worker it started later, from the pinned
    // thread below, would inherit that thread's CPU).
    write(s, 0, &data);
    let burst = (0..16)
        .map(|_| IoRequest::Read {
            offset: 0,
            len: 4096,
        })
        .collect();
    for r in common::run_batch(s, burst) {
        assert!(matches!(r, Ok(IoReply::Data(d)) if d[..] == data[..]));
    }
    let last = 63 - allowed.leading_zeros();
    // The CPUs the completing thread may run on, completion by completion.
    let seen: Vec<Option<u64>> = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                set_affinity(1 << last).unwrap();
                let mut seen = Vec::new();
                let mut settled = 0;
                // Following: until 64 completions in a row ran on that CPU (each of the
                // fake's threads follows after a window of its own). Off: 16 windows.
                let most = if follows { 64 } else { 16 } * WINDOW as usize;
                while seen.len() < most {
                    let (tx, rx) = std::sync::mpsc::channel();
                    s.submit(
                        IoRequest::Read {
                            offset: 0,
                            len: 4096,
                        },
                        store_api::Completion::new(move |r| {
                            tx.send((current_affinity(), r)).unwrap()
                        }),
                    );
                    let (cpus, r) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
                    match r {
                        Ok(IoReply::Data(d)) => assert!(d[..] == data[..], "the file's data"),
                        other => panic!("read failed: {other:?}"),
                    }
                    seen.push(cpus);
                    let want = if follows { 1 << last } else { allowed };
                    settled = if cpus == Some(want) { settled + 1 } else { 0 };
                    if follows && settled == 64 {
                        break;
                    }
                }
                seen
            })
            .join()
            .unwrap()
    });
    if follows {
        let tail = &seen[seen.len() - 64..];
        assert!(
            tail.iter().all(|&c| c == Some(1 << last)),
            "after {} reads from CPU {last} the completions still ran on {:?}",
            seen.len(),
            &tail[..4]
        );
    } else {
        assert_eq!(seen.len(), 16 * WINDOW as usize);
        assert!(
            seen.iter().all(|&c| c == Some(allowed)),
            "with follow-cpu=off the completing threads keep their CPUs: {:?}",
            seen.iter()
                .filter(|&&c| c != Some(allowed))
                .take(8)
                .collect::<Vec<_>>()
        );
    }
}

/// A large read in pieces that fail: the error once every piece is back, no part.
#[test]
fn glfs_a_read_in_pieces_that_fail_reports_the_error_once() {
    let file = unique("eio");
    let store = backstore::open_glfs_store(&fake_glfs("localhost", &file, "read-part=256k", false))
        .unwrap();
    let (parts, result) = common::read_taking_parts(&*store, 0, 1 << 20);
    assert!(parts.is_empty());
    let err = result.unwrap_err();
    assert_eq!((err.kind, err.errno), (ErrorKind::Io, Some(libc::EIO)));
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
            data: Bytes::from_static(&[1; 512]).into(),
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
    let lib = fake_library_path();
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
        common::missing_file_message("suite@localhost:absent")
    );
}

/// A LUN file the store creates but cannot give its size (the volume is full) is removed
/// again, so the next open does not find an empty file to fail on; and a size below one
/// block creates nothing at all. Either way, trying again fails the same way.
#[test]
fn glfs_a_created_file_that_cannot_be_sized_is_not_left_behind() {
    let root = fake_root();
    let base = StoreOptions {
        bstype: "glfs".into(),
        create_size: Some(SIZE),
        gfapi_library: Some(fake_library_path()),
        ..Default::default()
    };
    let file = unique("unsizable");
    let full = StoreOptions {
        backing_store: format!("{VOLUME}@localhost:{file}"),
        ..base.clone()
    };
    let err = open_store(&full).err().unwrap().to_string();
    assert!(
        err.starts_with(&format!("cannot open glfs {VOLUME}@localhost:{file}: "))
            && err.contains("No space left on device"),
        "{err}"
    );
    assert!(!root.join(VOLUME).join(&file).exists(), "left behind");
    assert_eq!(open_store(&full).err().unwrap().to_string(), err);
    let file = unique("tiny");
    let tiny = StoreOptions {
        backing_store: format!("{VOLUME}@localhost:{file}"),
        create_size: Some(100),
        ..base
    };
    let err = open_store(&tiny).err().unwrap().to_string();
    assert_eq!(
        err,
        format!(
            "cannot open glfs {VOLUME}@localhost:{file}: size 100 is smaller than one \
             512-byte block"
        )
    );
    assert!(!root.join(VOLUME).join(&file).exists(), "created");
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

// ---- idle mounts linger (field failure #8: glfs_new/glfs_fini cycles leak) ----

/// A volume of its own under the fake's root (no other test mounts it), and the fake's
/// log of its mounts: the fake writes one line per `glfs_init` ("volume mounted from")
/// and per `glfs_fini` ("fini") to the `logfile` given at INFO (`loglevel=7`).
struct Cycles {
    volume: String,
    log: PathBuf,
}

impl Cycles {
    fn new(name: &str) -> Cycles {
        let volume = unique(name);
        std::fs::create_dir_all(fake_root().join(&volume)).unwrap();
        let log = fake_root().join(format!("{volume}.log"));
        Cycles { volume, log }
    }

    /// Opens the volume's only LUN (`disk`, created at the first open) with `linger`.
    fn open(&self, linger: &str) -> std::sync::Arc<dyn store_api::BlockStore> {
        open_store(&StoreOptions {
            bstype: "glfs".into(),
            backing_store: format!("{}@localhost:disk", self.volume),
            bsopts: format!("logfile={};loglevel=7;{linger}", self.log.display()),
            create_size: Some(SIZE),
            gfapi_library: Some(fake_library_path()),
            ..Default::default()
        })
        .unwrap()
    }

    /// (`glfs_init` calls, `glfs_fini` calls) on the volume so far.
    fn counts(&self) -> (usize, usize) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let suffix = |s: &str| log.lines().filter(|l| l.ends_with(s)).count();
        let mounts = log
            .lines()
            .filter(|l| l.contains(": volume mounted from "))
            .count();
        (mounts, suffix(": fini"))
    }

    /// Waits (up to a minute: a loaded machine) until the fake logged `fini` calls.
    fn wait_for_finis(&self, finis: usize) -> (usize, usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.counts().1 < finis && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.counts()
    }
}

/// Removing a volume's only LUN and adding it again, over and over, mounts the volume
/// once: the idle mount lingers and is reused; once its linger is over it is unmounted,
/// and the next LUN mounts it anew.
#[test]
fn glfs_a_volumes_only_lun_cycled_mounts_it_once_until_the_linger_is_over() {
    let v = Cycles::new("linger");
    for seed in 0..8u8 {
        let store = v.open("linger=2");
        if seed > 0 {
            assert_eq!(
                read(&*store, 0, 512),
                pattern(512, seed - 1),
                "cycle {seed}"
            );
        }
        write(&*store, 0, &pattern(512, seed));
        drop(store);
    }
    assert_eq!(
        v.counts(),
        (1, 0),
        "8 add/remove cycles: one glfs_init, no glfs_fini"
    );
    assert_eq!(
        v.wait_for_finis(1),
        (1, 1),
        "the idle mount is finished once its linger is over"
    );
    let store = v.open("linger=2");
    assert_eq!(read(&*store, 0, 512), pattern(512, 7));
    assert_eq!(
        v.counts(),
        (2, 1),
        "after the linger the volume is mounted anew"
    );
    drop(store);
    assert_eq!(v.wait_for_finis(2), (2, 2));
}

/// A failed open (here a missing file and no create size) leaves the mount it made
/// lingering too: the error is not held up by glfs_fini, and the next try reuses it.
#[test]
fn glfs_a_failed_open_leaves_its_mount_lingering_for_the_next_try() {
    let v = Cycles::new("linger-failed");
    let missing = StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{}@localhost:missing", v.volume),
        bsopts: format!("logfile={};loglevel=7;linger=600", v.log.display()),
        gfapi_library: Some(fake_library_path()),
        ..Default::default()
    };
    let err = open_store(&missing).err().expect("no such file");
    assert!(err.to_string().contains("give a create size"), "{err}");
    assert_eq!(v.counts(), (1, 0), "mounted, kept");
    drop(v.open("linger=600"));
    assert_eq!(v.counts(), (1, 0), "the next open reused the mount");
}

/// `linger=0` unmounts the volume as soon as its last LUN goes, as before.
#[test]
fn glfs_linger_0_unmounts_with_the_last_lun() {
    let v = Cycles::new("no-linger");
    for _ in 0..3 {
        drop(v.open("linger=0"));
    }
    assert_eq!(
        v.counts(),
        (3, 3),
        "a mount per LUN opened, finished as it closes"
    );
}

/// At shutdown the idle mounts are finished at once, not after their linger.
#[test]
fn glfs_idle_mounts_are_finished_at_once_at_shutdown() {
    let v = Cycles::new("linger-shutdown");
    drop(v.open("linger=3600"));
    assert_eq!(v.counts(), (1, 0), "idle, kept for an hour");
    assert!(backstore::close_idle_mounts() >= 1);
    assert_eq!(
        v.counts(),
        (1, 1),
        "finished before close_idle_mounts returned"
    );
}

/// A mount with a LUN on it is not finished by the linger of one that left it, and
/// lingers from when its last LUN goes.
#[test]
fn glfs_a_mount_in_use_outlives_the_linger_of_a_lun_that_left() {
    let v = Cycles::new("linger-in-use");
    drop(v.open("linger=1"));
    let kept = v.open("linger=1");
    std::thread::sleep(Duration::from_secs(2));
    write(&*kept, 0, &pattern(512, 9));
    assert_eq!(
        v.counts(),
        (1, 0),
        "still mounted, once, while a LUN is on it"
    );
    drop(kept);
    assert_eq!(v.wait_for_finis(1), (1, 1));
}

#[test]
fn glfs_file_size_not_a_block_multiple_is_rounded_down() {
    fake_root();
    let name = unique("odd");
    std::fs::write(fake_root().join(VOLUME).join(&name), vec![0u8; 4096 + 700]).unwrap();
    let s = open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{VOLUME}@localhost:{name}"),
        gfapi_library: Some(fake_library_path()),
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
        gfapi_library: Some(fake_library_path()),
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

// ---- joined writes (`GlfsStore::submit_batch`), told by a marker ----

/// Which requests of a batch rode in one gfapi write call, told by the fake: the rule on
/// `joined-<case>-*` files fails every write call whose range covers one marker byte
/// (EIO), so exactly the requests that went in the call with the marked request fail,
/// whatever order the fake runs the calls in. Adjacent plain writes with the same FUA
/// are one call; a gap, another FUA, a request between them, more than
/// `MAX_JOINED_WRITE` bytes or more than `gfapi::MAX_IOV` segments start another. The
/// call's error is each of its requests' error, and what the other calls carried reads
/// back.
#[rstest]
// marker in the last: all four in its call
#[case::adjacent("all", &[(0, 4096, 1, false), (4096, 4096, 1, false), (8192, 8192, 2, false), (16384, 512, 1, false)], &[2, 2, 2, 2])]
// marker in the second: the first two joined, not the two after the gap
#[case::gap("gap", &[(0, 4096, 1, false), (4096, 4096, 1, false), (12288, 4096, 1, false), (16384, 4096, 1, false)], &[2, 2, 1, 1])]
// marker in the third: joined with the second (both FUA), not the first
#[case::fua("fua", &[(0, 4096, 1, false), (4096, 4096, 1, true), (8192, 4096, 1, true)], &[1, 2, 2])]
// marker in the last write: a read between keeps the first apart
#[case::read_between("read", &[(0, 4096, 1, false), (0, 0, 0, false), (4096, 4096, 1, false)], &[1, 0, 2])]
// marker in the second: joined with the first (1 MiB together), the third apart
#[case::bytes("big", &[(0, 1 << 19, 1, false), (1 << 19, 1 << 19, 1, false), (1 << 20, 4096, 1, false)], &[2, 2, 1])]
// marker in the second: 60 segments with the first, the third's 30 more apart
#[case::segments("iov", &[(0, 30 * 512, 30, false), (30 * 512, 30 * 512, 30, false), (60 * 512, 30 * 512, 30, false)], &[2, 2, 1])]
// a LUN shared by gateways (O_DIRECT) joins alike
#[case::coherent("coherent", &[(0, 4096, 1, false), (4096, 4096, 1, false)], &[2, 2])]
fn glfs_joins_adjacent_writes_of_a_batch_into_one_gfapi_write(
    #[case] case: &str,
    #[case] writes: &[(u64, usize, usize, bool)],
    #[case] expect: &[u8],
) {
    let f = if case == "coherent" {
        let file = unique("joined-coherent");
        let store = backstore::open_glfs_store(&fake_glfs("localhost", &file, "", true));
        Fixture::new(store.unwrap())
    } else {
        open(Kind::Glfs, &format!("joined-{case}"))
    };
    let s = &*f.store;
    // (offset, len, segments, fua); no segments: a read of 4 KiB at 1 MiB + 64 KiB
    let requests: Vec<IoRequest> = writes
        .iter()
        .map(|&(offset, len, segments, fua)| match segments {
            0 => IoRequest::Read {
                offset: (1 << 20) + 65536,
                len: 4096,
            },
            n => common::write_in(offset, &pattern(len, offset as u8 ^ 3), n, fua),
        })
        .collect();
    let results = common::run_batch(s, requests);
    // 0: the read; 1: not in the marked call; 2: in it
    for (i, (r, expect)) in results.iter().zip(expect).enumerate() {
        match expect {
            0 => assert!(matches!(r, Ok(IoReply::Data(_))), "request {i}: {r:?}"),
            1 => assert_eq!(r, &Ok(IoReply::Done), "request {i} not in the marked call"),
            _ => {
                let e = r.as_ref().expect_err("in the marked call");
                assert_eq!(
                    (e.op, e.kind, e.errno),
                    (store_api::Op::Write, ErrorKind::Io, Some(libc::EIO)),
                    "request {i}"
                );
            }
        }
    }
    for (&(offset, len, segments, _), &expect) in writes.iter().zip(expect) {
        if segments > 0 && expect == 1 {
            assert_eq!(read(s, offset, len as u32), pattern(len, offset as u8 ^ 3));
        }
    }
}

// ---- joined reads (`GlfsStore::submit_batch`), told by a marker ----

/// Which reads of a batch rode in one gfapi read call, told by the fake as for joined
/// writes: the rule on `rjoined-<case>-*` files fails every read call whose range covers
/// one marker byte (EIO), so exactly the reads that went in the call with the marked
/// read fail. Adjacent plain reads are one call; a gap, a write between them or more than
/// `MAX_JOINED_READ` (256 KiB) bytes start another. What the other calls read is the
/// file's bytes, each read its own.
#[rstest]
// marker in the last: all four in its call
#[case::adjacent("all", &[(0, 4096), (4096, 4096), (8192, 8192), (16384, 512)], &[2, 2, 2, 2])]
// marker in the second: the first two joined, not the two after the gap
#[case::gap("gap", &[(0, 4096), (4096, 4096), (12288, 4096), (16384, 4096)], &[2, 2, 1, 1])]
// marker in the last read: a write between (len 0: a 4 KiB write at 64 KiB) keeps the
// first apart
#[case::write_between("write", &[(0, 4096), (0, 0), (4096, 4096)], &[1, 0, 2])]
// marker in the second: joined with the first (256 KiB together), the third apart
#[case::bytes("big", &[(0, 128 << 10), (128 << 10, 128 << 10), (256 << 10, 4096)], &[2, 2, 1])]
fn glfs_joins_adjacent_reads_of_a_batch_into_one_gfapi_read(
    #[case] case: &str,
    #[case] reads: &[(u64, u32)],
    #[case] expect: &[u8],
) {
    let f = open(Kind::Glfs, &format!("rjoined-{case}"));
    let s = &*f.store;
    let content = pattern(1 << 20, 0x3c);
    assert_eq!(
        run(s, common::write_in(0, &content, 1, false)),
        Ok(IoReply::Done)
    );
    let requests: Vec<IoRequest> = reads
        .iter()
        .map(|&(offset, len)| match len {
            0 => common::write_in(65536, &content[65536..65536 + 4096], 1, false),
            len => IoRequest::Read { offset, len },
        })
        .collect();
    let results = common::run_batch(s, requests);
    // 0: the write; 1: not in the marked call; 2: in it
    for (i, ((r, expect), &(offset, len))) in results.iter().zip(expect).zip(reads).enumerate() {
        match expect {
            0 => assert_eq!(r, &Ok(IoReply::Done), "request {i}"),
            1 => {
                let at = offset as usize;
                assert_eq!(
                    r,
                    &Ok(IoReply::Data(Bytes::copy_from_slice(
                        &content[at..at + len as usize]
                    ))),
                    "request {i} not in the marked call reads its own bytes"
                );
            }
            _ => {
                let e = r.as_ref().expect_err("in the marked call");
                assert_eq!(
                    (e.op, e.kind, e.errno),
                    (store_api::Op::Read, ErrorKind::Io, Some(libc::EIO)),
                    "request {i}"
                );
            }
        }
    }
}

/// An error of a joined write is every joined request's (ENOSPC: NoSpace, which the
/// SCSI layer reports as SPACE ALLOCATION FAILED for each command).
#[test]
fn glfs_an_error_of_a_joined_write_fails_every_request_it_carried() {
    let f = open(Kind::Glfs, "enospc");
    let requests = (0..4)
        .map(|i| common::write_in(i * 4096, &pattern(4096, i as u8), 1, i == 3))
        .chain([common::write_in(5 * 4096, &pattern(4096, 9), 1, false)])
        .collect();
    for (i, r) in common::run_batch(&*f.store, requests)
        .into_iter()
        .enumerate()
    {
        let e = r.expect_err("a write on ENOSPC");
        assert_eq!(
            (e.op, e.kind, e.errno),
            (store_api::Op::Write, ErrorKind::NoSpace, Some(libc::ENOSPC)),
            "request {i}"
        );
    }
}

/// A store as [`provisioned`] opened it, the file behind it, and the directory to keep.
type Provisioned = (
    Result<std::sync::Arc<dyn store_api::BlockStore>, backstore::OpenError>,
    Option<PathBuf>,
    Option<tempfile::TempDir>,
);

/// The bytes the file's blocks take on its file system (`st_blocks`), and its size.
fn allocated(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.blocks() * 512, m.len())
}

/// A store of `kind` on a file named after `name`, opened with `provisioning` (created
/// with [`SIZE`] bytes, or the existing file when `existing` holds it), and the file
/// behind it (none for memory).
fn provisioned(
    kind: Kind,
    name: &str,
    provisioning: Provisioning,
    existing: Option<&[u8]>,
) -> Provisioned {
    match kind {
        Kind::Memory => (
            open_store(&StoreOptions {
                bstype: "memory".into(),
                create_size: Some(SIZE),
                provisioning,
                ..Default::default()
            }),
            None,
            None,
        ),
        Kind::File => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            if let Some(data) = existing {
                sparse_file(&path, data);
            }
            let store = open_store(&StoreOptions {
                bstype: "file".into(),
                backing_store: path.to_str().unwrap().into(),
                create_size: Some(SIZE),
                provisioning,
                ..Default::default()
            });
            (store, Some(path), Some(dir))
        }
        Kind::Glfs => {
            let root = fake_root();
            let file = unique(name);
            let path = root.join(VOLUME).join(&file);
            if let Some(data) = existing {
                sparse_file(&path, data);
            }
            let store = open_store(&StoreOptions {
                provisioning,
                ..fake_glfs("localhost", &file, "", false)
            });
            (store, Some(path), None)
        }
    }
}

/// A sparse file of [`SIZE`] bytes with `data` at its start.
fn sparse_file(path: &std::path::Path, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, data, 0).unwrap();
    f.set_len(SIZE).unwrap();
}

/// Full provisioning: every block of the file is allocated before the store serves it,
/// the store offers no discard (so the LU reports no logical block provisioning and no
/// UNMAP), writing zeroes keeps the blocks, and a resize allocates what it adds. Thin
/// (the default) leaves a new file sparse and offers discard.
#[rstest]
fn full_provisioning_allocates_every_block_and_offers_no_discard(
    #[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind,
) {
    use store_api::Capabilities;
    let (thin, thin_path, _dir) = provisioned(kind, "thin", Provisioning::Thin, None);
    assert_eq!(thin.unwrap().capabilities(), Capabilities::ALL);
    if let Some(path) = thin_path {
        let (blocks, len) = allocated(&path);
        assert_eq!(len, SIZE);
        assert!(
            blocks < SIZE / 2,
            "a new thin file is sparse: {blocks} bytes allocated"
        );
    }

    let (store, path, _dir) = provisioned(kind, "full", Provisioning::Full, None);
    let store = store.unwrap();
    assert_eq!(store.capabilities(), Capabilities::FULLY_PROVISIONED);
    assert!(!store.capabilities().discard);
    write(&*store, 4096, &pattern(8192, 7));
    assert!(matches!(
        run(
            &*store,
            IoRequest::WriteZeroes {
                offset: 4096,
                len: 4096
            }
        ),
        Ok(IoReply::Done)
    ));
    assert_eq!(read(&*store, 4096, 4096), vec![0u8; 4096]);
    assert_eq!(read(&*store, 8192, 4096), pattern(8192, 7)[4096..].to_vec());
    if let Some(path) = &path {
        let (blocks, len) = allocated(path);
        assert_eq!(len, SIZE);
        assert!(
            blocks >= SIZE,
            "every block allocated: {blocks} of {SIZE} bytes"
        );
    }
    let grown = store.resize(2 * SIZE).unwrap();
    assert_eq!(grown.size_bytes(), 2 * SIZE);
    assert_eq!(read(&*store, 8192, 4096), pattern(8192, 7)[4096..].to_vec());
    assert_eq!(read(&*store, SIZE, 4096), vec![0u8; 4096]);
    if let Some(path) = &path {
        let (blocks, len) = allocated(path);
        assert_eq!(len, 2 * SIZE);
        assert!(
            blocks >= 2 * SIZE,
            "the added blocks allocated: {blocks} bytes"
        );
    }
}

/// An existing sparse file opened fully provisioned keeps its data and has every block
/// allocated.
#[rstest]
fn an_existing_file_opened_full_keeps_its_data_and_is_allocated(
    #[values(Kind::File, Kind::Glfs)] kind: Kind,
) {
    let data = pattern(65536, 3);
    let (store, path, _dir) = provisioned(kind, "existing", Provisioning::Full, Some(&data));
    let store = store.unwrap();
    assert_eq!(read(&*store, 0, 65536), data);
    assert_eq!(read(&*store, SIZE - 4096, 4096), vec![0u8; 4096]);
    let (blocks, len) = allocated(path.as_deref().unwrap());
    assert_eq!(len, SIZE);
    assert!(
        blocks >= SIZE,
        "every block allocated: {blocks} of {SIZE} bytes"
    );
}

/// A volume without room for the whole file refuses a fully provisioned LUN with an
/// error that says so and what to do; a file that open created is removed again, one
/// that was there stays (with its data). A file system that cannot allocate ahead says
/// that instead.
#[test]
fn glfs_full_provisioning_without_room_refuses_the_lun_and_says_why() {
    let root = fake_root().clone();
    let file = unique("unallocatable");
    let err = open_store(&StoreOptions {
        provisioning: Provisioning::Full,
        ..fake_glfs("localhost", &file, "", false)
    })
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.starts_with(&format!(
            "cannot open glfs {VOLUME}@localhost:{file}: no room"
        )) && err.contains("all 8.0 MiB")
            && err.contains("provisioning thin"),
        "{err}"
    );
    assert!(
        !root.join(VOLUME).join(&file).exists(),
        "the file it created is left behind"
    );

    // The same file there already: refused, and kept as it was.
    let file = unique("unallocatable");
    let host = root.join(VOLUME).join(&file);
    sparse_file(&host, &pattern(4096, 9));
    let err = open_store(&StoreOptions {
        provisioning: Provisioning::Full,
        ..fake_glfs("localhost", &file, "", false)
    })
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("no room"), "{err}");
    assert_eq!(std::fs::read(&host).unwrap()[..4096], pattern(4096, 9)[..]);
    // Thin, it opens.
    assert!(open_store(&fake_glfs("localhost", &file, "", false)).is_ok());

    let file = unique("noprealloc");
    let err = open_store(&StoreOptions {
        provisioning: Provisioning::Full,
        ..fake_glfs("localhost", &file, "", false)
    })
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("fallocate is not supported"), "{err}");
    assert!(!root.join(VOLUME).join(&file).exists());
}

/// On a sharded volume (the shard translator refuses `glfs_fallocate` with KEEP_SIZE:
/// ENOTSUP), a fully provisioned LUN opens and grows all the same, every block allocated:
/// the store allocates in mode 0, which within the file's size keeps its size and data.
#[test]
fn glfs_full_provisioning_works_on_a_sharded_volume() {
    let root = fake_root().clone();
    let file = unique("sharded");
    let host = root.join(VOLUME).join(&file);
    sparse_file(&host, &pattern(4096, 3));
    let store = open_store(&StoreOptions {
        provisioning: Provisioning::Full,
        ..fake_glfs("localhost", &file, "", false)
    })
    .unwrap();
    let (blocks, len) = allocated(&host);
    assert!(blocks >= SIZE && len == SIZE, "{blocks} of {len}");
    assert_eq!(std::fs::read(&host).unwrap()[..4096], pattern(4096, 3)[..]);
    store.resize(2 * SIZE).unwrap();
    let (blocks, len) = allocated(&host);
    assert!(blocks >= 2 * SIZE && len == 2 * SIZE, "{blocks} of {len}");
}

/// A fully provisioned LUN's resize whose added blocks cannot be allocated fails as out
/// of space and leaves the file at its size.
#[test]
fn glfs_full_resize_without_room_fails_and_keeps_the_size() {
    let root = fake_root().clone();
    let file = unique("growfull");
    let store = open_store(&StoreOptions {
        provisioning: Provisioning::Full,
        ..fake_glfs("localhost", &file, "", false)
    })
    .unwrap();
    let err = store.resize(2 * SIZE).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NoSpace);
    assert_eq!(store.geometry().size_bytes(), SIZE);
    assert_eq!(allocated(&root.join(VOLUME).join(&file)).1, SIZE);
}

/// `space()`: what the store's blocks take (growing with what is written, everything at
/// once when fully provisioned) and what its storage has free (none for memory).
#[rstest]
fn space_follows_what_the_store_holds(#[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind) {
    let (store, _path, _dir) = provisioned(kind, "space", Provisioning::Thin, None);
    let store = store.unwrap();
    let before = store.space().unwrap();
    assert!(before.allocated < SIZE / 2, "{before:?}");
    write(&*store, 1 << 20, &pattern(256 << 10, 5));
    let after = store.space().unwrap();
    assert!(
        after.allocated >= before.allocated + (256 << 10),
        "{before:?} then {after:?}"
    );
    match kind {
        Kind::Memory => assert_eq!((after.available, after.storage), (None, None)),
        Kind::File | Kind::Glfs => assert!(after.available.unwrap() > 0, "{after:?}"),
    }
    let (full, _path, _dir) = provisioned(kind, "space-full", Provisioning::Full, None);
    if kind != Kind::Memory {
        let full = full.unwrap().space().unwrap();
        assert!(full.allocated >= SIZE);
        // Another file on the same file system (both in the temporary directory's), or
        // on the same volume: the same storage, so their LUNs are summed against it.
        assert!(after.storage.is_some());
        assert_eq!(full.storage, after.storage);
    }
}

/// Options for a new store of [`SIZE`] bytes of `kind` that does not exist yet, the path
/// of its bytes on this machine, and what keeps that path (a temporary directory).
fn new_store_options(
    kind: Kind,
    name: &str,
) -> (StoreOptions, Option<PathBuf>, Option<tempfile::TempDir>) {
    match kind {
        Kind::Memory => (
            StoreOptions {
                bstype: "memory".into(),
                create_size: Some(SIZE),
                ..Default::default()
            },
            None,
            None,
        ),
        Kind::File => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            let opts = StoreOptions {
                bstype: "file".into(),
                backing_store: path.to_str().unwrap().into(),
                create_size: Some(SIZE),
                ..Default::default()
            };
            (opts, Some(path), Some(dir))
        }
        Kind::Glfs => {
            let file = unique(name);
            let path = fake_root().join(VOLUME).join(&file);
            (fake_glfs("localhost", &file, "", false), Some(path), None)
        }
    }
}

/// `admin lun clone`'s copy on every backend: the destination is a store
/// `create_store` makes new (one already there is refused and left as it was); the
/// snapshot's copy is the source as it was when it began, while writes sent through the
/// snapshot during the copy (one held before the copy starts, others as it runs) reach
/// the source only; `remove_store_file` takes an unwanted copy's file away.
#[rstest]
fn a_snapshot_is_copied_into_a_new_store_while_the_source_is_written(
    #[values(Kind::Memory, Kind::File, Kind::Glfs)] kind: Kind,
) {
    use backstore::snapshot::{Snapshot, CHUNK};
    use backstore::{create_store, remove_store_file};
    use store_api::BlockStore;
    let source = open(kind, "snapshot-source").store;
    let before = pattern(SIZE as usize, 41);
    write(&*source, 0, &before);
    let (opts, path, _keep) = new_store_options(kind, "snapshot-copy");
    let dest = create_store(&opts).unwrap();
    let snapshot = Snapshot::new(source.clone(), dest.clone());
    let through: std::sync::Arc<dyn BlockStore> = snapshot.clone();
    // Held before the copy starts: chunk 5 is not copied yet.
    let (tx, held) = std::sync::mpsc::channel();
    through.submit(
        common::write_in(5 * CHUNK + 7, &[0xA5; 3000], 1, false),
        store_api::Completion::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    assert!(
        held.try_recv().is_err(),
        "a write over an uncopied chunk was not held"
    );
    let copier = {
        let snapshot = snapshot.clone();
        std::thread::spawn(move || snapshot.run("suite"))
    };
    for c in 0..SIZE / CHUNK {
        write(&*through, c * CHUNK + 8192, &[c as u8 + 1; 1024]);
    }
    let copied = copier.join().unwrap().unwrap();
    assert_eq!(held.recv().unwrap(), Ok(IoReply::Done));
    assert_eq!(copied.bytes, SIZE);
    assert!(copied.held >= 1, "{copied:?}");
    let copy = read(&*dest, 0, SIZE as u32);
    let differs = copy.iter().zip(&before).position(|(a, b)| a != b);
    assert_eq!(differs, None, "the copy is not the source as it was");
    let now = read(&*source, 0, SIZE as u32);
    assert!(now[5 * CHUNK as usize + 7..][..3000] == [0xA5; 3000]);
    for c in 0..SIZE / CHUNK {
        let at = (c * CHUNK + 8192) as usize;
        assert!(now[at..][..1024] == [c as u8 + 1; 1024], "chunk {c}");
    }
    drop((through, snapshot, dest));
    let Some(path) = path else {
        return; // memory: always new, no file
    };
    let on_disk = std::fs::read(&path).unwrap();
    let err = create_store(&opts)
        .err()
        .expect("an existing file is refused");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        on_disk,
        "the refused file was changed"
    );
    remove_store_file(&opts).unwrap();
    assert!(!path.exists(), "{} is still there", path.display());
}
