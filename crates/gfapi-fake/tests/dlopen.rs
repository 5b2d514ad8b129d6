//! Integration tests against the built `libgfapi.so.0` (run `cargo xtask build-fake`
//! first): symbol versions, the C ABI, async completion and fault rules, all through
//! `dlopen`/`dlvsym` exactly as a C consumer binds them.
//!
//! Types are written here from `glusterfs/api/glfs.h`, independently of the crate.

mod common;
use common::library_path;

use libc::{c_char, c_int, c_void, off_t, size_t, ssize_t};
use std::ffi::{CStr, CString};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `struct glfs_stat` from glfs.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct GlfsStat {
    mask: u64,
    attributes: u64,
    attributes_mask: u64,
    atime: [i64; 2],
    btime: [i64; 2],
    ctime: [i64; 2],
    mtime: [i64; 2],
    ino: u64,
    size: i64,
    blocks: i64,
    rdev_major: u32,
    rdev_minor: u32,
    dev_major: u32,
    dev_minor: u32,
    blksize: i64,
    nlink: u64,
    uid: u32,
    gid: u32,
    mode: u32,
}

type Fs = *mut c_void;
type Fd = *mut c_void;
type IoCbk = unsafe extern "C" fn(Fd, ssize_t, *mut GlfsStat, *mut GlfsStat, *mut c_void);

/// The functions, each bound at the version a consumer built against gfapi 10 binds.
struct Api {
    handle: *mut c_void,
    new: unsafe extern "C" fn(*const c_char) -> Fs,
    set_volfile_server: unsafe extern "C" fn(Fs, *const c_char, *const c_char, c_int) -> c_int,
    set_logging: unsafe extern "C" fn(Fs, *const c_char, c_int) -> c_int,
    init: unsafe extern "C" fn(Fs) -> c_int,
    fini: unsafe extern "C" fn(Fs) -> c_int,
    creat: unsafe extern "C" fn(Fs, *const c_char, c_int, libc::mode_t) -> Fd,
    open: unsafe extern "C" fn(Fs, *const c_char, c_int) -> Fd,
    close: unsafe extern "C" fn(Fd) -> c_int,
    lstat: unsafe extern "C" fn(Fs, *const c_char, *mut libc::stat) -> c_int,
    pread: unsafe extern "C" fn(Fd, *mut c_void, size_t, off_t, c_int, *mut GlfsStat) -> ssize_t,
    pwrite: unsafe extern "C" fn(
        Fd,
        *const c_void,
        size_t,
        off_t,
        c_int,
        *mut GlfsStat,
        *mut GlfsStat,
    ) -> ssize_t,
    fdatasync: unsafe extern "C" fn(Fd, *mut GlfsStat, *mut GlfsStat) -> c_int,
    pwrite_async:
        unsafe extern "C" fn(Fd, *const c_void, c_int, off_t, c_int, IoCbk, *mut c_void) -> c_int,
    pread_async:
        unsafe extern "C" fn(Fd, *mut c_void, size_t, off_t, c_int, IoCbk, *mut c_void) -> c_int,
    discard: unsafe extern "C" fn(Fd, off_t, size_t) -> c_int,
    set_root: unsafe extern "C" fn(Fs, *const c_char) -> c_int,
}

// SAFETY: plain function pointers and a dlopen handle that is never closed.
unsafe impl Send for Api {}
// SAFETY: as above.
unsafe impl Sync for Api {}

unsafe fn vsym<T: Copy>(handle: *mut c_void, name: &str, version: &str) -> T {
    let n = CString::new(name).unwrap();
    let v = CString::new(version).unwrap();
    let p = libc::dlvsym(handle, n.as_ptr(), v.as_ptr());
    assert!(!p.is_null(), "{name}@{version} is not exported");
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    std::mem::transmute_copy(&p)
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| unsafe {
        let path = CString::new(library_path().to_str().unwrap()).unwrap();
        let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(
            !h.is_null(),
            "dlopen: {:?}",
            CStr::from_ptr(libc::dlerror())
        );
        let v34 = "GFAPI_3.4.0";
        let v6 = "GFAPI_6.0";
        Api {
            handle: h,
            new: vsym(h, "glfs_new", v34),
            set_volfile_server: vsym(h, "glfs_set_volfile_server", v34),
            set_logging: vsym(h, "glfs_set_logging", v34),
            init: vsym(h, "glfs_init", v34),
            fini: vsym(h, "glfs_fini", v34),
            creat: vsym(h, "glfs_creat", v34),
            open: vsym(h, "glfs_open", v34),
            close: vsym(h, "glfs_close", v34),
            lstat: vsym(h, "glfs_lstat", v34),
            pread: vsym(h, "glfs_pread", v6),
            pwrite: vsym(h, "glfs_pwrite", v6),
            fdatasync: vsym(h, "glfs_fdatasync", v6),
            pwrite_async: vsym(h, "glfs_pwrite_async", v6),
            pread_async: vsym(h, "glfs_pread_async", v6),
            discard: vsym(h, "glfs_discard", "GFAPI_3.5.0"),
            set_root: vsym(h, "gfapi_fake_set_root", "GFAPI_FAKE_1.0"),
        }
    })
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

/// A root with volume `vol` and a mounted `glfs_t` on it.
struct Mount {
    dir: tempfile::TempDir,
    fs: Fs,
}

impl Mount {
    fn new() -> Mount {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vol")).unwrap();
        let a = api();
        unsafe {
            let fs = (a.new)(c("vol").as_ptr());
            assert!(!fs.is_null());
            assert_eq!(
                (a.set_root)(fs, c(dir.path().to_str().unwrap()).as_ptr()),
                0
            );
            assert_eq!(
                (a.set_volfile_server)(fs, c("tcp").as_ptr(), c("127.0.0.2").as_ptr(), 24007),
                0
            );
            assert_eq!((a.init)(fs), 0, "glfs_init errno {}", errno());
            Mount { dir, fs }
        }
    }

    fn rules(&self, text: &str) {
        let tmp = self.dir.path().join(".faults.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.path().join(".faults.toml")).unwrap();
    }

    fn creat(&self, path: &str) -> Fd {
        let fd = unsafe { (api().creat)(self.fs, c(path).as_ptr(), libc::O_RDWR, 0o644) };
        assert!(!fd.is_null(), "creat errno {}", errno());
        fd
    }

    fn host(&self, path: &str) -> PathBuf {
        self.dir
            .path()
            .join("vol")
            .join(path.trim_start_matches('/'))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        unsafe { (api().fini)(self.fs) };
    }
}

unsafe fn pwrite(fd: Fd, data: &[u8], off: i64) -> ssize_t {
    (api().pwrite)(
        fd,
        data.as_ptr() as *const c_void,
        data.len(),
        off,
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
}

#[test]
fn exports_gfapi_versions_consumers_bind() {
    let h = api().handle;
    let expect = [
        ("glfs_new", "GFAPI_3.4.0"),
        ("glfs_set_volfile_server", "GFAPI_3.4.0"),
        ("glfs_set_logging", "GFAPI_3.4.0"),
        ("glfs_init", "GFAPI_3.4.0"),
        ("glfs_fini", "GFAPI_3.4.0"),
        ("glfs_open", "GFAPI_3.4.0"),
        ("glfs_close", "GFAPI_3.4.0"),
        ("glfs_lstat", "GFAPI_3.4.0"),
        ("glfs_creat", "GFAPI_3.4.0"),
        ("glfs_lseek", "GFAPI_3.4.0"),
        ("glfs_read", "GFAPI_3.4.0"),
        ("glfs_write", "GFAPI_3.4.0"),
        ("glfs_unlink", "GFAPI_3.4.0"),
        ("glfs_access", "GFAPI_3.4.0"),
        ("glfs_pread", "GFAPI_6.0"),
        ("glfs_pwrite", "GFAPI_6.0"),
        ("glfs_fdatasync", "GFAPI_6.0"),
        ("glfs_fsync", "GFAPI_6.0"),
        ("glfs_ftruncate", "GFAPI_6.0"),
        ("glfs_fdatasync_async", "GFAPI_6.0"),
        ("glfs_fsync_async", "GFAPI_6.0"),
        ("glfs_pread_async", "GFAPI_6.0"),
        ("glfs_pwrite_async", "GFAPI_6.0"),
        ("glfs_preadv_async", "GFAPI_6.0"),
        ("glfs_pwritev_async", "GFAPI_6.0"),
        ("glfs_discard_async", "GFAPI_6.0"),
        ("glfs_zerofill_async", "GFAPI_6.0"),
        ("glfs_get_volumeid", "GFAPI_3.5.0"),
        ("glfs_discard", "GFAPI_3.5.0"),
        ("glfs_fallocate", "GFAPI_3.5.0"),
        ("glfs_zerofill", "GFAPI_3.5.0"),
        ("glfs_truncate", "GFAPI_3.7.15"),
    ];
    let mut missing = Vec::new();
    for (name, ver) in expect {
        let n = c(name);
        let v = c(ver);
        if unsafe { libc::dlvsym(h, n.as_ptr(), v.as_ptr()) }.is_null() {
            missing.push(format!("{name}@{ver}"));
        }
    }
    assert!(missing.is_empty(), "missing: {missing:?}");
    // Under the older node is the older function (its own ABI), not the gfapi-6 one.
    let old = unsafe { libc::dlvsym(h, c("glfs_pread").as_ptr(), c("GFAPI_3.4.0").as_ptr()) };
    let new = unsafe { libc::dlvsym(h, c("glfs_pread").as_ptr(), c("GFAPI_6.0").as_ptr()) };
    assert!(!old.is_null() && old != new);
    // Rust internals stay hidden.
    assert!(unsafe { libc::dlsym(h, c("rust_begin_unwind").as_ptr()) }.is_null());
    let ver: unsafe extern "C" fn() -> *const c_char =
        unsafe { vsym(h, "gfapi_fake_version", "GFAPI_FAKE_1.0") };
    let s = unsafe { CStr::from_ptr(ver()) }.to_str().unwrap();
    assert!(s.starts_with("gfapi-fake "), "{s}");
}

#[test]
fn version_nodes_are_chained_like_gfapi() {
    let out = std::process::Command::new("objdump")
        .arg("-p")
        .arg(library_path())
        .output();
    let Ok(out) = out else {
        panic!("objdump (binutils) is needed for this test")
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "Version definitions:" lists each node and, on the next line, its parent.
    let defs: Vec<&str> = text
        .split("Version definitions:")
        .nth(1)
        .expect("version definitions")
        .split("Version References:")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pos = |n: &str| {
        defs.iter()
            .position(|l| l.ends_with(&format!(" {n}")))
            .unwrap_or_else(|| panic!("node {n} missing in {defs:?}"))
    };
    for (node, parent) in [
        ("GFAPI_3.4.0", "GFAPI_PRIVATE_3.4.0"),
        ("GFAPI_6.0", "GFAPI_PRIVATE_6.0"),
        ("GFAPI_7.0", "GFAPI_6.6"),
    ] {
        let i = pos(node);
        assert_eq!(defs[i + 1], parent, "parent of {node}");
    }
}

#[test]
fn sync_round_trip_through_the_c_abi() {
    let m = Mount::new();
    let a = api();
    unsafe {
        let fd = m.creat("/lun.img");
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 199) as u8).collect();
        let mut pre = GlfsStat::default();
        let mut post = GlfsStat::default();
        let n = (a.pwrite)(
            fd,
            data.as_ptr() as *const c_void,
            data.len(),
            512,
            0,
            &mut pre,
            &mut post,
        );
        assert_eq!(n, 4096);
        assert_eq!((pre.size, post.size), (0, 4608));
        assert_eq!(post.mode & libc::S_IFMT, libc::S_IFREG);
        assert_eq!(post.mask, 0x7ff, "GLFS_STAT_BASIC_STATS");
        assert_eq!((a.fdatasync)(fd, &mut pre, &mut post), 0);
        let mut back = vec![0u8; 4096];
        let mut st = GlfsStat::default();
        assert_eq!(
            (a.pread)(fd, back.as_mut_ptr() as *mut c_void, 4096, 512, 0, &mut st),
            4096
        );
        assert_eq!(back, data);
        assert_eq!(st.size, 4608);
        let mut lst: libc::stat = std::mem::zeroed();
        assert_eq!((a.lstat)(m.fs, c("/lun.img").as_ptr(), &mut lst), 0);
        assert_eq!(lst.st_size, 4608);
        assert_eq!(std::fs::read(m.host("/lun.img")).unwrap()[512..], data[..]);
        assert_eq!((a.close)(fd), 0);
        assert_eq!((a.close)(fd), -1);
        assert_eq!(errno(), libc::EBADF);
        assert!((a.open)(m.fs, c("/missing").as_ptr(), libc::O_RDWR).is_null());
        assert_eq!(errno(), libc::ENOENT);
    }
}

#[test]
fn logging_and_init_failure_without_volume() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("g.log");
    let a = api();
    unsafe {
        let fs = (a.new)(c("absent").as_ptr());
        (a.set_root)(fs, c(dir.path().to_str().unwrap()).as_ptr());
        assert_eq!((a.set_logging)(fs, c(log.to_str().unwrap()).as_ptr(), 7), 0);
        assert_eq!((a.init)(fs), -1);
        assert_eq!(errno(), libc::ENOENT);
        assert_eq!((a.fini)(fs), 0);
    }
    assert!(std::fs::read_to_string(log).unwrap().contains("absent"));
}

/// A per-operation callback cookie owning a Sender clone; `cbk` takes it back.
fn token(tx: &mpsc::Sender<Done>) -> *mut c_void {
    Box::into_raw(Box::new(tx.clone())) as *mut c_void
}

struct Done {
    ret: ssize_t,
    errno: i32,
    has_pre: bool,
    post_size: Option<i64>,
    thread: std::thread::ThreadId,
}

unsafe extern "C" fn cbk(
    _fd: Fd,
    ret: ssize_t,
    pre: *mut GlfsStat,
    post: *mut GlfsStat,
    d: *mut c_void,
) {
    // Each submission owns a Sender clone (see `token`), so the channel outlives the send.
    let tx = Box::from_raw(d as *mut mpsc::Sender<Done>);
    let _ = tx.send(Done {
        ret,
        errno: errno(),
        has_pre: !pre.is_null(),
        post_size: post.as_ref().map(|p| p.size),
        thread: std::thread::current().id(),
    });
}

#[test]
fn async_completes_on_a_worker_thread() {
    let m = Mount::new();
    let a = api();
    let (tx, rx) = mpsc::channel::<Done>();
    unsafe {
        let fd = m.creat("/a");
        let buf = vec![9u8; 8192];
        assert_eq!(
            (a.pwrite_async)(
                fd,
                buf.as_ptr() as *const c_void,
                8192,
                0,
                0,
                cbk,
                token(&tx)
            ),
            0
        );
        let w = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            (w.ret, w.errno, w.has_pre, w.post_size),
            (8192, 0, true, Some(8192))
        );
        assert_ne!(w.thread, std::thread::current().id());
        let mut back = vec![0u8; 8192];
        assert_eq!(
            (a.pread_async)(
                fd,
                back.as_mut_ptr() as *mut c_void,
                8192,
                0,
                0,
                cbk,
                token(&tx)
            ),
            0
        );
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((r.ret, r.has_pre, r.post_size), (8192, false, Some(8192)));
        assert_eq!(back, buf);
        (a.close)(fd);
    }
}

#[test]
fn faults_errno_latency_short_hang_and_disconnect() {
    let m = Mount::new();
    let a = api();
    unsafe {
        let fd = m.creat("/f.img");
        // errno
        m.rules("[[rule]]\nop = 'write'\nerrno = 'EROFS'\ncount = 1\n");
        assert_eq!(pwrite(fd, b"abc", 0), -1);
        assert_eq!(errno(), libc::EROFS);
        assert_eq!(pwrite(fd, b"abc", 0), 3);
        // latency
        m.rules("[[rule]]\nop = 'fdatasync'\ndelay_ms = 120\n");
        let t = Instant::now();
        assert_eq!(
            (a.fdatasync)(fd, std::ptr::null_mut(), std::ptr::null_mut()),
            0
        );
        assert!(t.elapsed() >= Duration::from_millis(120));
        // short write
        m.rules("[[rule]]\nop = 'write'\nshort = 2\n");
        assert_eq!(pwrite(fd, b"wxyz", 0), 2);
        // hang until the rules change, on the async path
        m.rules("[[rule]]\nop = 'read'\nhang = true\n");
        let (tx, rx) = mpsc::channel::<Done>();
        let mut buf = [0u8; 4];
        assert_eq!(
            (a.pread_async)(
                fd,
                buf.as_mut_ptr() as *mut c_void,
                4,
                0,
                0,
                cbk,
                token(&tx)
            ),
            0
        );
        assert!(rx.recv_timeout(Duration::from_millis(150)).is_err(), "hung");
        m.rules("");
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(r.ret, 3);
        assert_eq!(&buf[..3], b"wxc");
        // connection loss: everything fails with ENOTCONN until the rules change
        m.rules("[[rule]]\nop = 'fdatasync'\ndisconnect = true\n");
        assert_eq!(
            (a.fdatasync)(fd, std::ptr::null_mut(), std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::ENOTCONN);
        assert_eq!(pwrite(fd, b"q", 0), -1);
        assert_eq!(errno(), libc::ENOTCONN);
        m.rules("reconnect = 1\n");
        assert_eq!(pwrite(fd, b"q", 0), 1);
        (a.close)(fd);
    }
}

#[test]
fn discard_punches_a_hole() {
    let m = Mount::new();
    let a = api();
    unsafe {
        let fd = m.creat("/d");
        assert_eq!(pwrite(fd, &vec![1u8; 1 << 20], 0), 1 << 20);
        assert_eq!((a.discard)(fd, 0, 1 << 19), 0);
        (a.close)(fd);
    }
    let data = std::fs::read(m.host("/d")).unwrap();
    assert_eq!(data.len(), 1 << 20);
    assert!(data[..1 << 19].iter().all(|&b| b == 0));
    assert!(data[1 << 19..].iter().all(|&b| b == 1));
}

/// Runs in a child process with `LD_LIBRARY_PATH` set: loads `libgfapi.so.0` by soname
/// (as tgt and fio do) and checks the fake won over the installed real library.
#[test]
#[ignore = "helper for soname_lookup_finds_the_fake_first"]
fn child_soname_probe() {
    if std::env::var_os("GFAPI_FAKE_PROBE").is_none() {
        return;
    }
    unsafe {
        let h = libc::dlopen(c("libgfapi.so.0").as_ptr(), libc::RTLD_NOW);
        assert!(!h.is_null());
        assert!(!libc::dlsym(h, c("gfapi_fake_version").as_ptr()).is_null());
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let dir = std::env::var("GFAPI_FAKE_PROBE").unwrap();
        assert!(maps.contains(&format!("{dir}/libgfapi.so.0")), "{maps}");
        // glfs_init through the environment variable, as an unmodified consumer would.
        let new: unsafe extern "C" fn(*const c_char) -> Fs = vsym(h, "glfs_new", "GFAPI_3.4.0");
        let init: unsafe extern "C" fn(Fs) -> c_int = vsym(h, "glfs_init", "GFAPI_3.4.0");
        let fs = new(c("vol").as_ptr());
        assert_eq!(init(fs), 0, "errno {}", errno());
    }
}

#[test]
fn soname_lookup_finds_the_fake_first() {
    let lib = library_path();
    let dir = lib.parent().unwrap().canonicalize().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("vol")).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_soname_probe",
            "--include-ignored",
            "--nocapture",
        ])
        .env("LD_LIBRARY_PATH", &dir)
        .env("GFAPI_FAKE_ROOT", root.path())
        .env("GFAPI_FAKE_PROBE", &dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// The exported dynamic symbols with their version nodes, as the loader sees them.
#[test]
fn exported_symbol_table() {
    let out = std::process::Command::new("objdump")
        .arg("-T")
        .arg(library_path())
        .output()
        .expect("objdump (binutils) is needed for this test");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| l.contains(" DF .text"))
        .filter_map(|l| {
            let mut f = l.split_whitespace().rev();
            let name = f.next()?;
            let node = f.next()?;
            Some(format!("{node:<16} {name}"))
        })
        .collect();
    rows.sort();
    insta::assert_snapshot!(rows.join("\n"));
}

type OldCbk = unsafe extern "C" fn(Fd, ssize_t, *mut c_void);

unsafe extern "C" fn old_done(_fd: Fd, ret: ssize_t, data: *mut c_void) {
    let tx = Box::from_raw(data as *mut mpsc::Sender<(ssize_t, i32)>);
    let _ = tx.send((ret, errno()));
}

#[test]
fn pre_6_0_variants_keep_their_old_prototypes_at_their_old_versions() {
    let m = Mount::new();
    let h = api().handle;
    let fd = m.creat("/old.img");
    unsafe {
        let pwrite34: unsafe extern "C" fn(Fd, *const c_void, size_t, off_t, c_int) -> ssize_t =
            vsym(h, "glfs_pwrite", "GFAPI_3.4.0");
        let pread34: unsafe extern "C" fn(Fd, *mut c_void, size_t, off_t, c_int) -> ssize_t =
            vsym(h, "glfs_pread", "GFAPI_3.4.0");
        let fsync34: unsafe extern "C" fn(Fd) -> c_int = vsym(h, "glfs_fsync", "GFAPI_3.4.0");
        let ftruncate34: unsafe extern "C" fn(Fd, off_t) -> c_int =
            vsym(h, "glfs_ftruncate", "GFAPI_3.4.0");
        let pread_async34: unsafe extern "C" fn(
            Fd,
            *mut c_void,
            size_t,
            off_t,
            c_int,
            OldCbk,
            *mut c_void,
        ) -> c_int = vsym(h, "glfs_pread_async", "GFAPI_3.4.0");
        let fsync_async34: unsafe extern "C" fn(Fd, OldCbk, *mut c_void) -> c_int =
            vsym(h, "glfs_fsync_async", "GFAPI_3.4.0");
        let discard_async35: unsafe extern "C" fn(Fd, off_t, size_t, OldCbk, *mut c_void) -> c_int =
            vsym(h, "glfs_discard_async", "GFAPI_3.5.0");

        assert_eq!(
            pwrite34(fd, b"old api".as_ptr() as *const c_void, 7, 100, 0),
            7
        );
        assert_eq!(fsync34(fd), 0);
        let mut buf = [0u8; 7];
        assert_eq!(pread34(fd, buf.as_mut_ptr() as *mut c_void, 7, 100, 0), 7);
        assert_eq!(&buf, b"old api");

        let (tx, rx) = mpsc::channel::<(ssize_t, i32)>();
        let mut abuf = [0u8; 3];
        let d = Box::into_raw(Box::new(tx.clone())) as *mut c_void;
        assert_eq!(
            pread_async34(fd, abuf.as_mut_ptr() as *mut c_void, 3, 104, 0, old_done, d),
            0
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap().0, 3);
        assert_eq!(&abuf, b"api");
        let d = Box::into_raw(Box::new(tx.clone())) as *mut c_void;
        assert_eq!(fsync_async34(fd, old_done, d), 0);
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap().0, 0);
        let d = Box::into_raw(Box::new(tx.clone())) as *mut c_void;
        assert_eq!(discard_async35(fd, 0, 4096, old_done, d), 0);
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap().0, 0);
        assert_eq!(std::fs::read(m.host("/old.img")).unwrap(), vec![0u8; 107]);

        // A submission refused synchronously never calls the callback (nor leaks it).
        let d = Box::into_raw(Box::new(tx)) as *mut c_void;
        assert_eq!(fsync_async34(0x7 as Fd, old_done, d), -1);
        assert_eq!(errno(), libc::EBADF);
        drop(Box::from_raw(d as *mut mpsc::Sender<(ssize_t, i32)>));

        assert_eq!(ftruncate34(fd, 10), 0);
        assert_eq!(std::fs::metadata(m.host("/old.img")).unwrap().len(), 10);
        (api().close)(fd);
    }
}
