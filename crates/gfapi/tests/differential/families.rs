//! The function families beyond the data path, run on each side through the raw C
//! functions (the `gfapi` crate wraps the data path only): attributes and names,
//! extended attributes (user.* and the glusterfs.* keys consumers read), locks (posix,
//! lock owners, file_lock advisory and mandatory), the handle API, upcalls and leases.
//!
//! Mandatory locks need `locks.mandatory-locking` on the volume; `cargo xtask
//! test-gluster` gives the native fixture a second volume with it (and cache
//! invalidation and leases, `gluster::FEATURE_OPTIONS`) in `GLUSTER_TEST_FEATURES_VOLUME`.
//! Without one (the Docker fixture) those steps are left out on both sides, and the
//! test says so on stderr.
//!
//! Left out on purpose, where Gluster 10.3 itself misbehaves:
//! * renaming into a directory that does not exist (`glfs_rename(a, "missing/b")`): the
//!   issue that asked for this test records that real Gluster crashes on it, so the step
//!   would take the live volume down for every later test; the fake answers ENOENT as
//!   rename(2) does (checked offline in the fake's own tests).
//!
//! Upcalls and leases need a second client, a process of its own on each side (two
//! `glfs_t`s of one process are one client on the fake): `peer_write`, this test binary
//! run again, writes to a file that the side holds (registered for upcalls, then with a
//! read-write lease that it returns once recalled).

use super::{clear_errno, errno_name, last_errno, rc_outcome, Recorder};
use gfapi_sys::{glfs_fd_t, glfs_t};
use libc::{c_char, c_int, c_void, mode_t};
use std::ffi::{CStr, CString};
use std::path::Path;

/// The environment variable naming the volume with FEATURE_OPTIONS (`volume@host`).
pub const FEATURES_ENV: &str = "GFAPI_DIFF_FEATURES";

#[repr(C)]
struct GlfsObject {
    _private: [u8; 0],
}

/// The loaded library (the fake by path, the real one by name), for dlsym.
struct Lib(*mut c_void);

impl Lib {
    fn loaded(path: Option<&Path>) -> Lib {
        let name = CString::new(path.map_or(gfapi_sys::DEFAULT_LIBRARY.to_string(), |p| {
            p.display().to_string()
        }))
        .unwrap();
        // SAFETY: RTLD_NOLOAD only finds the library the side already loaded.
        let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        assert!(!h.is_null(), "libgfapi is not loaded");
        Lib(h)
    }

    /// The function `name` as `F`.
    ///
    /// # Safety
    /// `F` must be the prototype glfs.h declares for `name`.
    unsafe fn f<F: Copy>(&self, name: &CStr) -> F {
        let p = libc::dlsym(self.0, name.as_ptr());
        assert!(!p.is_null(), "no symbol {name:?}");
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
        std::mem::transmute_copy(&p)
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// The outcome of a call returning an int or ssize_t, errno read right after it.
fn rc(f: impl FnOnce() -> isize) -> String {
    clear_errno();
    rc_outcome(f() as i64)
}

/// A mounted `glfs_t` and the calls the families use.
struct Fs {
    lib: Lib,
    fs: *mut glfs_t,
}

type PathModeFn = unsafe extern "C" fn(*mut glfs_t, *const c_char, mode_t) -> c_int;
type PathFn = unsafe extern "C" fn(*mut glfs_t, *const c_char) -> c_int;
type TwoPathFn = unsafe extern "C" fn(*mut glfs_t, *const c_char, *const c_char) -> c_int;
type StatFn = unsafe extern "C" fn(*mut glfs_t, *const c_char, *mut libc::stat) -> c_int;
type FstatFn = unsafe extern "C" fn(*mut glfs_fd_t, *mut libc::stat) -> c_int;
type OpenFn = unsafe extern "C" fn(*mut glfs_t, *const c_char, c_int) -> *mut glfs_fd_t;
type CreatFn = unsafe extern "C" fn(*mut glfs_t, *const c_char, c_int, mode_t) -> *mut glfs_fd_t;
type FdFn = unsafe extern "C" fn(*mut glfs_fd_t) -> c_int;
type PwriteFn = unsafe extern "C" fn(
    *mut glfs_fd_t,
    *const c_void,
    usize,
    i64,
    c_int,
    *mut c_void,
    *mut c_void,
) -> isize;
type PreadFn =
    unsafe extern "C" fn(*mut glfs_fd_t, *mut c_void, usize, i64, c_int, *mut c_void) -> isize;
type FsyncFn = unsafe extern "C" fn(*mut glfs_fd_t, *mut c_void, *mut c_void) -> c_int;
type GetxattrFn =
    unsafe extern "C" fn(*mut glfs_t, *const c_char, *const c_char, *mut c_void, usize) -> isize;
type FgetxattrFn = unsafe extern "C" fn(*mut glfs_fd_t, *const c_char, *mut c_void, usize) -> isize;
type SetxattrFn = unsafe extern "C" fn(
    *mut glfs_t,
    *const c_char,
    *const c_char,
    *const c_void,
    usize,
    c_int,
) -> c_int;
type FsetxattrFn =
    unsafe extern "C" fn(*mut glfs_fd_t, *const c_char, *const c_void, usize, c_int) -> c_int;
type ListxattrFn = unsafe extern "C" fn(*mut glfs_t, *const c_char, *mut c_void, usize) -> isize;
type FlistxattrFn = unsafe extern "C" fn(*mut glfs_fd_t, *mut c_void, usize) -> isize;
type LockFn = unsafe extern "C" fn(*mut glfs_fd_t, c_int, *mut libc::flock) -> c_int;
type FileLockFn = unsafe extern "C" fn(*mut glfs_fd_t, c_int, *mut libc::flock, c_int) -> c_int;
type Obj = *mut GlfsObject;

impl Fs {
    fn mount(path: Option<&Path>, spec: &str) -> Fs {
        let lib = Lib::loaded(path);
        let (volume, host) = spec.split_once('@').expect("volume@host");
        let (v, h) = (c(volume), c(host));
        // SAFETY: the mount sequence of glfs.h, with glfs.h's prototypes.
        let fs = unsafe {
            let new: unsafe extern "C" fn(*const c_char) -> *mut glfs_t = lib.f(c"glfs_new");
            let server: unsafe extern "C" fn(
                *mut glfs_t,
                *const c_char,
                *const c_char,
                c_int,
            ) -> c_int = lib.f(c"glfs_set_volfile_server");
            let logging: unsafe extern "C" fn(*mut glfs_t, *const c_char, c_int) -> c_int =
                lib.f(c"glfs_set_logging");
            let init: unsafe extern "C" fn(*mut glfs_t) -> c_int = lib.f(c"glfs_init");
            let fs = new(v.as_ptr());
            assert!(!fs.is_null(), "glfs_new {spec}");
            assert_eq!(server(fs, c"tcp".as_ptr(), h.as_ptr(), 0), 0);
            assert_eq!(logging(fs, std::ptr::null(), 4), 0);
            assert_eq!(init(fs), 0, "glfs_init {spec}: errno {}", last_errno());
            fs
        };
        Fs { lib, fs }
    }

    fn path_mode(&self, name: &CStr, path: &str, mode: mode_t) -> String {
        let p = c(path);
        // SAFETY: `name` has the prototype (fs, path, mode) in glfs.h.
        rc(|| unsafe { self.lib.f::<PathModeFn>(name)(self.fs, p.as_ptr(), mode) } as isize)
    }

    fn path(&self, name: &CStr, path: &str) -> String {
        let p = c(path);
        // SAFETY: `name` has the prototype (fs, path) in glfs.h.
        rc(|| unsafe { self.lib.f::<PathFn>(name)(self.fs, p.as_ptr()) } as isize)
    }

    fn two(&self, name: &CStr, a: &str, b: &str) -> String {
        let (a, b) = (c(a), c(b));
        // SAFETY: `name` has the prototype (fs, path, path) in glfs.h.
        rc(|| unsafe { self.lib.f::<TwoPathFn>(name)(self.fs, a.as_ptr(), b.as_ptr()) } as isize)
    }

    /// glfs_stat/glfs_lstat (`name`): Ok(stat) or the errno's name.
    fn stat_of(&self, name: &CStr, path: &str) -> Result<libc::stat, String> {
        let p = c(path);
        // SAFETY: zeroed stat is valid; glfs.h's prototype.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            clear_errno();
            if self.lib.f::<StatFn>(name)(self.fs, p.as_ptr(), &mut st) == 0 {
                Ok(st)
            } else {
                Err(errno_name(last_errno()))
            }
        }
    }

    /// What a step compares of a stat: `what` picks the fields.
    fn stat(&self, path: &str, what: fn(&libc::stat) -> String) -> String {
        self.stat_of(c"glfs_stat", path)
            .map_or_else(|e| e, |st| what(&st))
    }

    fn lstat(&self, path: &str, what: fn(&libc::stat) -> String) -> String {
        self.stat_of(c"glfs_lstat", path)
            .map_or_else(|e| e, |st| what(&st))
    }

    fn fstat(&self, fd: *mut glfs_fd_t, what: fn(&libc::stat) -> String) -> String {
        // SAFETY: zeroed stat is valid; glfs.h's prototype.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            clear_errno();
            if self.lib.f::<FstatFn>(c"glfs_fstat")(fd, &mut st) == 0 {
                what(&st)
            } else {
                errno_name(last_errno())
            }
        }
    }

    fn creat(&self, path: &str) -> Result<*mut glfs_fd_t, String> {
        let p = c(path);
        clear_errno();
        // SAFETY: glfs.h's prototype.
        let fd = unsafe {
            self.lib.f::<CreatFn>(c"glfs_creat")(self.fs, p.as_ptr(), libc::O_RDWR, 0o644)
        };
        if fd.is_null() {
            Err(errno_name(last_errno()))
        } else {
            Ok(fd)
        }
    }

    fn open(&self, path: &str, flags: c_int) -> Result<*mut glfs_fd_t, String> {
        let p = c(path);
        clear_errno();
        // SAFETY: glfs.h's prototype.
        let fd = unsafe { self.lib.f::<OpenFn>(c"glfs_open")(self.fs, p.as_ptr(), flags) };
        if fd.is_null() {
            Err(errno_name(last_errno()))
        } else {
            Ok(fd)
        }
    }

    fn close(&self, fd: *mut glfs_fd_t) -> String {
        // SAFETY: glfs.h's prototype, an fd of this mount.
        rc(|| unsafe { self.lib.f::<FdFn>(c"glfs_close")(fd) } as isize)
    }

    fn pwrite(&self, fd: *mut glfs_fd_t, data: &[u8], off: i64) -> String {
        let null = std::ptr::null_mut();
        // SAFETY: glfs.h's prototype (gfapi >= 6), a buffer of `data.len()` bytes.
        rc(|| unsafe {
            self.lib.f::<PwriteFn>(c"glfs_pwrite")(
                fd,
                data.as_ptr().cast(),
                data.len(),
                off,
                0,
                null,
                null,
            )
        })
    }

    /// A write and then an fsync, as one outcome: the first failure, else the count
    /// (write-behind may report the write's failure at the sync only).
    fn write_synced(&self, fd: *mut glfs_fd_t, data: &[u8], off: i64) -> String {
        let w = self.pwrite(fd, data, off);
        if !w.starts_with("ok") {
            return w;
        }
        let null = std::ptr::null_mut();
        // SAFETY: glfs.h's prototype (gfapi >= 6).
        let s = rc(|| unsafe { self.lib.f::<FsyncFn>(c"glfs_fsync")(fd, null, null) } as isize);
        if s.starts_with("ok") {
            w
        } else {
            s
        }
    }

    fn pread(&self, fd: *mut glfs_fd_t, len: usize, off: i64) -> String {
        let mut buf = vec![0u8; len];
        clear_errno();
        // SAFETY: glfs.h's prototype (gfapi >= 6), a buffer of `len` bytes.
        let n = unsafe {
            self.lib.f::<PreadFn>(c"glfs_pread")(
                fd,
                buf.as_mut_ptr().cast(),
                len,
                off,
                0,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return rc_outcome(n as i64);
        }
        format!("ok {}", String::from_utf8_lossy(&buf[..n as usize]))
    }
}

fn mode(st: &libc::stat) -> String {
    format!("mode {:o}", st.st_mode & 0o7777)
}

fn owner(st: &libc::stat) -> String {
    format!("uid {} gid {}", st.st_uid, st.st_gid)
}

fn times(st: &libc::stat) -> String {
    format!(
        "atime {}.{} mtime {}.{}",
        st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec
    )
}

fn kind(st: &libc::stat) -> String {
    let k = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "regular",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        _ => "other",
    };
    format!("{k} size {}", if k == "dir" { 0 } else { st.st_size })
}

fn nlink(st: &libc::stat) -> String {
    format!("nlink {}", st.st_nlink)
}

/// Runs every family on the side's library (`path`: the fake's, None: the real one)
/// against `spec` (and `features`, the volume with FEATURE_OPTIONS, when there is one),
/// in directories named after `tag`.
pub fn run(t: &mut Recorder, path: Option<&Path>, spec: &str, features: Option<&str>, tag: &str) {
    let fs = Fs::mount(path, spec);
    let dir = format!("families-{tag}");
    t.rec("families mkdir", fs.path_mode(c"glfs_mkdir", &dir, 0o755));
    attributes_and_names(t, &fs, &format!("{dir}/attrs"));
    xattrs(t, &fs, &format!("{dir}/xattr"));
    locks(t, &fs, &format!("{dir}/locks"));
    handles(t, &fs, &format!("{dir}/handles"));
    t.rec("families rmdir", fs.path(c"glfs_rmdir", &dir));
    match features {
        Some(spec) => {
            let ffs = Fs::mount(path, spec);
            mandatory_locks(t, &ffs, &format!("mandatory-{tag}"));
            upcalls_and_leases(t, &ffs, path, spec, &format!("upcall-{tag}"));
        }
        None => eprintln!(
            "families: no volume with locks.mandatory-locking, cache invalidation and leases \
             ({FEATURES_ENV} unset): mandatory lock, upcall and lease steps left out"
        ),
    }
}

fn attributes_and_names(t: &mut Recorder, fs: &Fs, a: &str) {
    let p = |n: &str| format!("{a}/{n}");
    t.rec("attrs mkdir", fs.path_mode(c"glfs_mkdir", a, 0o755));
    let fd = match fs.creat(&p("f")) {
        Ok(fd) => fd,
        Err(e) => return t.rec("attrs creat f", e),
    };
    t.rec("attrs pwrite f", fs.pwrite(fd, b"0123456789", 0));

    t.rec(
        "attrs chmod 600",
        fs.path_mode(c"glfs_chmod", &p("f"), 0o600),
    );
    t.rec("attrs stat after chmod", fs.stat(&p("f"), mode));
    // SAFETY (each call below): glfs.h's prototypes, valid C strings and an fd of `fs`.
    let fchmod: unsafe extern "C" fn(*mut glfs_fd_t, mode_t) -> c_int =
        unsafe { fs.lib.f(c"glfs_fchmod") };
    t.rec(
        "attrs fchmod 640",
        rc(|| unsafe { fchmod(fd, 0o640) } as isize),
    );
    t.rec("attrs fstat after fchmod", fs.fstat(fd, mode));
    t.rec(
        "attrs chmod missing",
        fs.path_mode(c"glfs_chmod", &p("missing"), 0o600),
    );

    let chown: unsafe extern "C" fn(*mut glfs_t, *const c_char, u32, u32) -> c_int =
        unsafe { fs.lib.f(c"glfs_chown") };
    let f = c(&p("f"));
    t.rec(
        "attrs chown 1234:2345",
        rc(|| unsafe { chown(fs.fs, f.as_ptr(), 1234, 2345) } as isize),
    );
    t.rec("attrs stat after chown", fs.stat(&p("f"), owner));
    let fchown: unsafe extern "C" fn(*mut glfs_fd_t, u32, u32) -> c_int =
        unsafe { fs.lib.f(c"glfs_fchown") };
    t.rec(
        "attrs fchown uid only (gid -1)",
        rc(|| unsafe { fchown(fd, 4321, u32::MAX) } as isize),
    );
    t.rec("attrs fstat after fchown", fs.fstat(fd, owner));

    let ts = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 5,
        },
        libc::timespec {
            tv_sec: 1_200_000_000,
            tv_nsec: 700,
        },
    ];
    let utimens: unsafe extern "C" fn(*mut glfs_t, *const c_char, *const libc::timespec) -> c_int =
        unsafe { fs.lib.f(c"glfs_utimens") };
    t.rec(
        "attrs utimens",
        rc(|| unsafe { utimens(fs.fs, f.as_ptr(), ts.as_ptr()) } as isize),
    );
    t.rec("attrs stat after utimens", fs.stat(&p("f"), times));
    let futimens: unsafe extern "C" fn(*mut glfs_fd_t, *const libc::timespec) -> c_int =
        unsafe { fs.lib.f(c"glfs_futimens") };
    let later = [ts[1], ts[0]];
    t.rec(
        "attrs futimens",
        rc(|| unsafe { futimens(fd, later.as_ptr()) } as isize),
    );
    t.rec("attrs fstat after futimens", fs.fstat(fd, times));

    // names: symlink, readlink, link, mknod, realpath, rename, unlink
    t.rec(
        "attrs symlink s -> f",
        fs.two(c"glfs_symlink", "f", &p("s")),
    );
    t.rec("attrs lstat s", fs.lstat(&p("s"), kind));
    t.rec("attrs stat s (followed)", fs.stat(&p("s"), kind));
    let readlink: unsafe extern "C" fn(*mut glfs_t, *const c_char, *mut c_char, usize) -> c_int =
        unsafe { fs.lib.f(c"glfs_readlink") };
    let s = c(&p("s"));
    let mut buf = [0u8; 64];
    clear_errno();
    let n = unsafe { readlink(fs.fs, s.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let text = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
    t.rec(
        "attrs readlink s",
        format!("{} {text}", rc_outcome(n.into())),
    );
    t.rec(
        "attrs readlink of a regular file",
        rc(|| unsafe { readlink(fs.fs, f.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) } as isize),
    );
    let lchown: unsafe extern "C" fn(*mut glfs_t, *const c_char, u32, u32) -> c_int =
        unsafe { fs.lib.f(c"glfs_lchown") };
    t.rec(
        "attrs lchown s",
        rc(|| unsafe { lchown(fs.fs, s.as_ptr(), 77, 88) } as isize),
    );
    t.rec("attrs lstat s owner", fs.lstat(&p("s"), owner));
    t.rec("attrs stat f owner (unchanged)", fs.stat(&p("f"), owner));

    t.rec("attrs link f l", fs.two(c"glfs_link", &p("f"), &p("l")));
    t.rec("attrs stat f nlink", fs.stat(&p("f"), nlink));
    t.rec(
        "attrs link onto existing",
        fs.two(c"glfs_link", &p("f"), &p("l")),
    );
    t.rec(
        "attrs link missing",
        fs.two(c"glfs_link", &p("missing"), &p("l2")),
    );

    let mknod: unsafe extern "C" fn(*mut glfs_t, *const c_char, mode_t, libc::dev_t) -> c_int =
        unsafe { fs.lib.f(c"glfs_mknod") };
    let fifo = c(&p("fifo"));
    t.rec(
        "attrs mknod fifo",
        rc(|| unsafe { mknod(fs.fs, fifo.as_ptr(), libc::S_IFIFO | 0o644, 0) } as isize),
    );
    t.rec("attrs lstat fifo", fs.lstat(&p("fifo"), kind));

    let realpath: unsafe extern "C" fn(*mut glfs_t, *const c_char, *mut c_char) -> *mut c_char =
        unsafe { fs.lib.f(c"glfs_realpath") };
    let dotted = c(&format!("{a}/./../attrs//f"));
    let mut resolved = [0u8; libc::PATH_MAX as usize];
    clear_errno();
    let r = unsafe { realpath(fs.fs, dotted.as_ptr(), resolved.as_mut_ptr().cast()) };
    let shown = if r.is_null() {
        errno_name(last_errno())
    } else {
        // SAFETY: realpath wrote a NUL-terminated path into `resolved`.
        let got = unsafe { CStr::from_ptr(resolved.as_ptr().cast()) };
        got.to_string_lossy().replace(a, "<dir>")
    };
    t.rec("attrs realpath dir/./../attrs//f", shown);

    t.rec("attrs mkdir d", fs.path_mode(c"glfs_mkdir", &p("d"), 0o755));
    t.rec(
        "attrs creat d/x",
        fs.creat(&p("d/x")).map_or_else(|e| e, |x| fs.close(x)),
    );
    t.rec("attrs rmdir non-empty d", fs.path(c"glfs_rmdir", &p("d")));
    t.rec(
        "attrs rename l onto d/x",
        fs.two(c"glfs_rename", &p("l"), &p("d/x")),
    );
    t.rec("attrs stat f nlink after", fs.stat(&p("f"), nlink));
    t.rec(
        "attrs rename file onto dir",
        fs.two(c"glfs_rename", &p("f"), &p("d")),
    );
    t.rec(
        "attrs rename dir onto file",
        fs.two(c"glfs_rename", &p("d"), &p("f")),
    );
    t.rec(
        "attrs rename missing",
        fs.two(c"glfs_rename", &p("missing"), &p("y")),
    );
    // Not run: renaming into a missing directory (see the module documentation).
    t.rec(
        "attrs unlink missing",
        fs.path(c"glfs_unlink", &p("missing")),
    );
    t.rec("attrs unlink a dir", fs.path(c"glfs_unlink", &p("d")));
    t.rec("attrs rmdir a file", fs.path(c"glfs_rmdir", &p("f")));

    // working directory
    t.rec("attrs chdir", fs.path(c"glfs_chdir", a));
    t.rec("attrs stat relative f", fs.stat("f", kind));
    t.rec("attrs chdir to a file", fs.path(c"glfs_chdir", "f"));
    t.rec("attrs chdir /", fs.path(c"glfs_chdir", "/"));

    t.rec("attrs close f", fs.close(fd));
    for n in ["f", "s", "fifo", "d/x"] {
        t.rec(&format!("attrs unlink {n}"), fs.path(c"glfs_unlink", &p(n)));
    }
    t.rec("attrs rmdir d", fs.path(c"glfs_rmdir", &p("d")));
    t.rec("attrs rmdir", fs.path(c"glfs_rmdir", a));
}

/// The names of the `user.*` attributes in a listxattr buffer, sorted.
fn user_names(buf: &[u8]) -> String {
    let mut names: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"user."))
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    names.join(",")
}

/// Which form a pathinfo value has: `posix N` or `replicate N` (N bricks named).
fn pathinfo_form(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    let bricks = s.matches("<POSIX(").count();
    let form = if s.starts_with("(<REPLICATE:") {
        "replicate"
    } else if s.starts_with("<POSIX(") {
        "posix"
    } else {
        "other"
    };
    format!("{form} {bricks}")
}

fn xattrs(t: &mut Recorder, fs: &Fs, x: &str) {
    let p = |n: &str| format!("{x}/{n}");
    t.rec("xattr mkdir", fs.path_mode(c"glfs_mkdir", x, 0o755));
    let fd = match fs.creat(&p("f")) {
        Ok(fd) => fd,
        Err(e) => return t.rec("xattr creat f", e),
    };
    let f = c(&p("f"));
    // SAFETY (each call below): glfs.h's prototypes, valid C strings, buffers of the
    // sizes given and an fd of `fs`.
    let (get, lget, fget): (GetxattrFn, GetxattrFn, FgetxattrFn) = unsafe {
        (
            fs.lib.f(c"glfs_getxattr"),
            fs.lib.f(c"glfs_lgetxattr"),
            fs.lib.f(c"glfs_fgetxattr"),
        )
    };
    let (set, fset): (SetxattrFn, FsetxattrFn) =
        unsafe { (fs.lib.f(c"glfs_setxattr"), fs.lib.f(c"glfs_fsetxattr")) };
    let (list, flist): (ListxattrFn, FlistxattrFn) =
        unsafe { (fs.lib.f(c"glfs_listxattr"), fs.lib.f(c"glfs_flistxattr")) };
    let remove: TwoPathFn = unsafe { fs.lib.f(c"glfs_removexattr") };
    let fremove: unsafe extern "C" fn(*mut glfs_fd_t, *const c_char) -> c_int =
        unsafe { fs.lib.f(c"glfs_fremovexattr") };
    let setx = |name: &CStr, v: &[u8], flags: c_int| {
        rc(|| unsafe {
            set(
                fs.fs,
                f.as_ptr(),
                name.as_ptr(),
                v.as_ptr().cast(),
                v.len(),
                flags,
            )
        } as isize)
    };
    // value of a get call: "ok N value" or the errno
    let shown = |n: isize, buf: &[u8]| {
        if n < 0 {
            rc_outcome(n as i64)
        } else {
            format!("ok {n} {}", String::from_utf8_lossy(&buf[..n as usize]))
        }
    };
    let mut buf = [0u8; 4096];

    t.rec("xattr set user.k", setx(c"user.k", b"v1", 0));
    t.rec(
        "xattr get user.k size",
        rc(|| unsafe {
            get(
                fs.fs,
                f.as_ptr(),
                c"user.k".as_ptr(),
                std::ptr::null_mut(),
                0,
            )
        }),
    );
    clear_errno();
    let n = unsafe {
        get(
            fs.fs,
            f.as_ptr(),
            c"user.k".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    t.rec("xattr get user.k", shown(n, &buf));
    clear_errno();
    let n = unsafe {
        lget(
            fs.fs,
            f.as_ptr(),
            c"user.k".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    t.rec("xattr lget user.k", shown(n, &buf));
    clear_errno();
    let n = unsafe { fget(fd, c"user.k".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    t.rec("xattr fget user.k", shown(n, &buf));
    t.rec(
        "xattr get user.k into 1 byte",
        rc(|| unsafe {
            get(
                fs.fs,
                f.as_ptr(),
                c"user.k".as_ptr(),
                buf.as_mut_ptr().cast(),
                1,
            )
        }),
    );
    t.rec(
        "xattr set XATTR_CREATE existing",
        setx(c"user.k", b"v2", libc::XATTR_CREATE),
    );
    t.rec(
        "xattr set XATTR_REPLACE missing",
        setx(c"user.none", b"v", libc::XATTR_REPLACE),
    );
    t.rec(
        "xattr set XATTR_REPLACE existing",
        setx(c"user.k", b"v3", libc::XATTR_REPLACE),
    );
    clear_errno();
    let n = unsafe {
        get(
            fs.fs,
            f.as_ptr(),
            c"user.k".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    t.rec("xattr get user.k replaced", shown(n, &buf));
    t.rec(
        "xattr get missing name",
        rc(|| unsafe {
            get(
                fs.fs,
                f.as_ptr(),
                c"user.none".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }),
    );
    t.rec(
        "xattr fset user.f",
        rc(|| unsafe { fset(fd, c"user.f".as_ptr(), b"fv".as_ptr().cast(), 2, 0) } as isize),
    );
    clear_errno();
    let n = unsafe { list(fs.fs, f.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    t.rec(
        "xattr list user names",
        if n < 0 {
            rc_outcome(n as i64)
        } else {
            user_names(&buf[..n as usize])
        },
    );
    clear_errno();
    let n = unsafe { flist(fd, buf.as_mut_ptr().cast(), buf.len()) };
    t.rec(
        "xattr flist user names",
        if n < 0 {
            rc_outcome(n as i64)
        } else {
            user_names(&buf[..n as usize])
        },
    );
    t.rec(
        "xattr remove user.k",
        rc(|| unsafe { remove(fs.fs, f.as_ptr(), c"user.k".as_ptr()) } as isize),
    );
    t.rec(
        "xattr remove user.k again",
        rc(|| unsafe { remove(fs.fs, f.as_ptr(), c"user.k".as_ptr()) } as isize),
    );
    t.rec(
        "xattr fremove user.f",
        rc(|| unsafe { fremove(fd, c"user.f".as_ptr()) } as isize),
    );
    let missing = c(&p("missing"));
    t.rec(
        "xattr get on a missing file",
        rc(|| unsafe {
            get(
                fs.fs,
                missing.as_ptr(),
                c"user.k".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }),
    );

    // Gluster's own keys, as a consumer reads them
    for key in [c"glusterfs.gfid.string", c"glusterfs.gfid", c"trusted.gfid"] {
        t.rec(
            &format!("xattr get {}", key.to_string_lossy()),
            rc(|| unsafe {
                get(
                    fs.fs,
                    f.as_ptr(),
                    key.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            }),
        );
    }
    for key in [c"trusted.glusterfs.pathinfo", c"glusterfs.pathinfo"] {
        clear_errno();
        let n = unsafe {
            get(
                fs.fs,
                f.as_ptr(),
                key.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        let form = if n < 0 {
            rc_outcome(n as i64)
        } else {
            pathinfo_form(&buf[..n as usize])
        };
        t.rec(&format!("xattr get {} form", key.to_string_lossy()), form);
        t.rec(
            &format!("xattr fget {}", key.to_string_lossy()),
            rc(|| unsafe { fget(fd, key.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }),
        );
    }
    t.rec(
        "xattr get trusted.glusterfs.node-uuid (size)",
        rc(|| unsafe {
            get(
                fs.fs,
                f.as_ptr(),
                c"trusted.glusterfs.node-uuid".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }),
    );
    t.rec(
        "xattr set glusterfs.pathinfo",
        setx(c"glusterfs.pathinfo", b"x", 0),
    );
    t.rec(
        "xattr set glusterfs.gfid.string",
        setx(c"glusterfs.gfid.string", b"x", 0),
    );

    t.rec("xattr close", fs.close(fd));
    t.rec("xattr unlink", fs.path(c"glfs_unlink", &p("f")));
    t.rec("xattr rmdir", fs.path(c"glfs_rmdir", x));
}

fn range(l_type: c_int, start: i64, len: i64) -> libc::flock {
    // SAFETY: an all-zero flock is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

fn lock_type(t: i16) -> &'static str {
    match c_int::from(t) {
        libc::F_RDLCK => "F_RDLCK",
        libc::F_WRLCK => "F_WRLCK",
        libc::F_UNLCK => "F_UNLCK",
        _ => "other",
    }
}

impl Fs {
    fn set_owner(&self, fd: *mut glfs_fd_t, owner: &[u8]) -> String {
        // SAFETY: glfs.h's prototype, `owner.len()` bytes.
        rc(|| unsafe {
            let f: unsafe extern "C" fn(*mut glfs_fd_t, *mut c_void, c_int) -> c_int =
                self.lib.f(c"glfs_fd_set_lkowner");
            f(fd, owner.as_ptr() as *mut c_void, owner.len() as c_int)
        } as isize)
    }

    fn setlk(&self, fd: *mut glfs_fd_t, l_type: c_int, start: i64, len: i64) -> String {
        let mut fl = range(l_type, start, len);
        // SAFETY: glfs.h's prototype.
        rc(
            || unsafe { self.lib.f::<LockFn>(c"glfs_posix_lock")(fd, libc::F_SETLK, &mut fl) }
                as isize,
        )
    }

    fn getlk(&self, fd: *mut glfs_fd_t, start: i64, len: i64) -> String {
        let mut fl = range(libc::F_WRLCK, start, len);
        // SAFETY: glfs.h's prototype.
        let r =
            rc(
                || unsafe { self.lib.f::<LockFn>(c"glfs_posix_lock")(fd, libc::F_GETLK, &mut fl) }
                    as isize,
            );
        if !r.starts_with("ok") {
            return r;
        }
        if c_int::from(fl.l_type) == libc::F_UNLCK {
            return "F_UNLCK".into();
        }
        format!("{} {} {}", lock_type(fl.l_type), fl.l_start, fl.l_len)
    }

    /// glfs_file_lock F_SETLK; `mandatory`: GLFS_LK_MANDATORY, else GLFS_LK_ADVISORY.
    fn file_lock(
        &self,
        fd: *mut glfs_fd_t,
        l_type: c_int,
        start: i64,
        len: i64,
        mandatory: bool,
    ) -> String {
        let mut fl = range(l_type, start, len);
        let mode = c_int::from(mandatory);
        // SAFETY: glfs.h's prototype.
        rc(|| unsafe {
            self.lib.f::<FileLockFn>(c"glfs_file_lock")(fd, libc::F_SETLK, &mut fl, mode)
        } as isize)
    }
}

fn locks(t: &mut Recorder, fs: &Fs, l: &str) {
    let f = format!("{l}/f");
    t.rec("locks mkdir", fs.path_mode(c"glfs_mkdir", l, 0o755));
    let (a, b, c_) = match (
        fs.creat(&f),
        fs.open(&f, libc::O_RDWR),
        fs.open(&f, libc::O_RDWR),
    ) {
        (Ok(a), Ok(b), Ok(c_)) => (a, b, c_),
        _ => return t.rec("locks open three fds", "failed"),
    };
    // Owners first: a and c are one owner, b another.
    t.rec("locks set_lkowner a", fs.set_owner(a, b"owner-a"));
    t.rec("locks set_lkowner b", fs.set_owner(b, b"owner-b"));
    t.rec("locks set_lkowner c as a", fs.set_owner(c_, b"owner-a"));
    t.rec("locks set_lkowner 256 bytes", fs.set_owner(c_, &[7u8; 256]));
    t.rec("locks a write [0,100)", fs.setlk(a, libc::F_WRLCK, 0, 100));
    t.rec(
        "locks c (owner a) write [0,100)",
        fs.setlk(c_, libc::F_WRLCK, 0, 100),
    );
    t.rec("locks b write [0,100)", fs.setlk(b, libc::F_WRLCK, 0, 100));
    t.rec("locks b read [50,60)", fs.setlk(b, libc::F_RDLCK, 50, 10));
    t.rec("locks b getlk [50,60)", fs.getlk(b, 50, 10));
    t.rec("locks a getlk [50,60)", fs.getlk(a, 50, 10));
    t.rec(
        "locks b write [100,110)",
        fs.setlk(b, libc::F_WRLCK, 100, 10),
    );
    t.rec("locks c getlk [100,110)", fs.getlk(c_, 100, 10));
    t.rec(
        "locks c unlock [0,100) (owner a)",
        fs.setlk(c_, libc::F_UNLCK, 0, 100),
    );
    t.rec(
        "locks b write [0,100) after",
        fs.setlk(b, libc::F_WRLCK, 0, 100),
    );
    t.rec("locks b unlock [0,110)", fs.setlk(b, libc::F_UNLCK, 0, 110));
    t.rec("locks a read [0,10)", fs.setlk(a, libc::F_RDLCK, 0, 10));
    t.rec(
        "locks b read [0,10) (shared)",
        fs.setlk(b, libc::F_RDLCK, 0, 10),
    );
    t.rec(
        "locks b write [0,10) over read locks",
        fs.setlk(b, libc::F_WRLCK, 0, 10),
    );
    t.rec("locks a unlock [0,10)", fs.setlk(a, libc::F_UNLCK, 0, 10));
    t.rec("locks b unlock [0,10)", fs.setlk(b, libc::F_UNLCK, 0, 10));
    t.rec(
        "locks file_lock advisory a [300,310)",
        fs.file_lock(a, libc::F_WRLCK, 300, 10, false),
    );
    t.rec(
        "locks file_lock advisory b [300,310)",
        fs.file_lock(b, libc::F_WRLCK, 300, 10, false),
    );
    t.rec(
        "locks file_lock advisory a unlock",
        fs.file_lock(a, libc::F_UNLCK, 300, 10, false),
    );
    t.rec("locks file_lock bad mode", {
        let mut fl = range(libc::F_WRLCK, 400, 10);
        // SAFETY: glfs.h's prototype.
        rc(
            || unsafe { fs.lib.f::<FileLockFn>(c"glfs_file_lock")(a, libc::F_SETLK, &mut fl, 7) }
                as isize,
        )
    });
    // a closed fd's owner keeps its locks through its other fd
    t.rec(
        "locks a write [500,510)",
        fs.setlk(a, libc::F_WRLCK, 500, 10),
    );
    t.rec("locks close a", fs.close(a));
    t.rec(
        "locks b write [500,510) after a closed",
        fs.setlk(b, libc::F_WRLCK, 500, 10),
    );
    for (n, fd) in [("b", b), ("c", c_)] {
        t.rec(&format!("locks close {n}"), fs.close(fd));
    }
    t.rec("locks unlink", fs.path(c"glfs_unlink", &f));
    t.rec("locks rmdir", fs.path(c"glfs_rmdir", l));
}

/// Mandatory locks, on the volume with `locks.mandatory-locking`.
fn mandatory_locks(t: &mut Recorder, fs: &Fs, name: &str) {
    let (m1, m2) = match (fs.creat(name), fs.open(name, libc::O_RDWR)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return t.rec("mandatory open two fds", "failed"),
    };
    t.rec(
        "mandatory write 1 KiB",
        fs.write_synced(m1, &[b'a'; 1024], 0),
    );
    t.rec("mandatory set_lkowner m1", fs.set_owner(m1, b"holder"));
    t.rec("mandatory set_lkowner m2", fs.set_owner(m2, b"other"));
    t.rec(
        "mandatory m1 write lock [0,100)",
        fs.file_lock(m1, libc::F_WRLCK, 0, 100, true),
    );
    t.rec(
        "mandatory m1 writes inside",
        fs.write_synced(m1, b"mine", 10),
    );
    t.rec(
        "mandatory m2 writes inside",
        fs.write_synced(m2, b"theirs", 20),
    );
    t.rec(
        "mandatory m2 writes outside",
        fs.write_synced(m2, b"outside", 500),
    );
    t.rec("mandatory m2 reads inside", fs.pread(m2, 4, 60));
    t.rec(
        "mandatory m2 advisory lock on it",
        fs.file_lock(m2, libc::F_RDLCK, 0, 10, false),
    );
    t.rec(
        "mandatory m1 unlock",
        fs.file_lock(m1, libc::F_UNLCK, 0, 100, true),
    );
    t.rec(
        "mandatory m2 writes after unlock",
        fs.write_synced(m2, b"theirs", 20),
    );
    t.rec("mandatory m2 reads back", fs.pread(m2, 6, 20));
    t.rec(
        "mandatory m2 read lock [0,100)",
        fs.file_lock(m2, libc::F_RDLCK, 0, 100, true),
    );
    t.rec(
        "mandatory m1 writes under a read lock",
        fs.write_synced(m1, b"w", 30),
    );
    t.rec("mandatory m1 reads under a read lock", fs.pread(m1, 4, 10));
    for (n, fd) in [("m1", m1), ("m2", m2)] {
        t.rec(&format!("mandatory close {n}"), fs.close(fd));
    }
    t.rec("mandatory unlink", fs.path(c"glfs_unlink", name));
}

impl Fs {
    fn handle_of(&self, o: Obj) -> Option<[u8; 16]> {
        let mut h = [0u8; 16];
        // SAFETY: glfs.h's prototype, a 16-byte buffer.
        let n = unsafe {
            let f: unsafe extern "C" fn(Obj, *mut u8, c_int) -> c_int =
                self.lib.f(c"glfs_h_extract_handle");
            f(o, h.as_mut_ptr(), 16)
        };
        (n == 16).then_some(h)
    }

    fn obj_stat(&self, o: Obj, what: fn(&libc::stat) -> String) -> String {
        // SAFETY: glfs.h's prototype, an object of this mount.
        unsafe {
            let f: unsafe extern "C" fn(*mut glfs_t, Obj, *mut libc::stat) -> c_int =
                self.lib.f(c"glfs_h_stat");
            let mut st: libc::stat = std::mem::zeroed();
            clear_errno();
            if f(self.fs, o, &mut st) == 0 {
                what(&st)
            } else {
                errno_name(last_errno())
            }
        }
    }

    fn object_of_handle(&self, h: &mut [u8; 16]) -> Result<Obj, String> {
        // SAFETY: glfs.h's prototype, a 16-byte handle.
        unsafe {
            let f: unsafe extern "C" fn(*mut glfs_t, *mut u8, c_int, *mut libc::stat) -> Obj =
                self.lib.f(c"glfs_h_create_from_handle");
            let mut st: libc::stat = std::mem::zeroed();
            clear_errno();
            let o = f(self.fs, h.as_mut_ptr(), 16, &mut st);
            if o.is_null() {
                Err(errno_name(last_errno()))
            } else {
                Ok(o)
            }
        }
    }

    fn lookup(&self, parent: Obj, path: &str) -> Result<Obj, String> {
        let p = c(path);
        // SAFETY: glfs.h's prototype (gfapi >= 6, with `follow`).
        unsafe {
            let f: unsafe extern "C" fn(
                *mut glfs_t,
                Obj,
                *const c_char,
                *mut libc::stat,
                c_int,
            ) -> Obj = self.lib.f(c"glfs_h_lookupat");
            let mut st: libc::stat = std::mem::zeroed();
            clear_errno();
            let o = f(self.fs, parent, p.as_ptr(), &mut st, 0);
            if o.is_null() {
                Err(errno_name(last_errno()))
            } else {
                Ok(o)
            }
        }
    }

    fn h_close(&self, o: Obj) {
        // SAFETY: glfs.h's prototype, an object of this mount, closed once.
        unsafe {
            let f: unsafe extern "C" fn(Obj) -> c_int = self.lib.f(c"glfs_h_close");
            f(o);
        }
    }
}

fn handles(t: &mut Recorder, fs: &Fs, h: &str) {
    t.rec("handle mkdir", fs.path_mode(c"glfs_mkdir", h, 0o755));
    let dir = match fs.lookup(std::ptr::null_mut(), h) {
        Ok(d) => d,
        Err(e) => return t.rec("handle lookupat dir", e),
    };
    t.rec("handle lookupat dir", fs.obj_stat(dir, kind));
    // SAFETY (each call below): glfs.h's prototypes, objects of `fs`, valid C strings
    // and buffers of the sizes given.
    let creat: unsafe extern "C" fn(
        *mut glfs_t,
        Obj,
        *const c_char,
        c_int,
        mode_t,
        *mut libc::stat,
    ) -> Obj = unsafe { fs.lib.f(c"glfs_h_creat") };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    clear_errno();
    let o = unsafe { creat(fs.fs, dir, c"h".as_ptr(), libc::O_RDWR, 0o644, &mut st) };
    if o.is_null() {
        return t.rec("handle creat h", errno_name(last_errno()));
    }
    t.rec("handle creat h", kind(&st));
    clear_errno();
    let again = unsafe {
        creat(
            fs.fs,
            dir,
            c"h".as_ptr(),
            libc::O_RDWR | libc::O_EXCL,
            0o644,
            &mut st,
        )
    };
    t.rec(
        "handle creat h O_EXCL again",
        if again.is_null() {
            errno_name(last_errno())
        } else {
            "ok".into()
        },
    );
    let Some(mut handle) = fs.handle_of(o) else {
        return t.rec("handle extract h", "failed");
    };
    t.rec("handle extract h", "16 bytes");

    let write: unsafe extern "C" fn(*mut glfs_t, Obj, *const c_void, usize, i64) -> isize =
        unsafe { fs.lib.f(c"glfs_h_anonymous_write") };
    let read: unsafe extern "C" fn(*mut glfs_t, Obj, *mut c_void, usize, i64) -> isize =
        unsafe { fs.lib.f(c"glfs_h_anonymous_read") };
    t.rec(
        "handle anonymous_write 5 @3",
        rc(|| unsafe { write(fs.fs, o, b"hello".as_ptr().cast(), 5, 3) }),
    );
    let mut buf = [0u8; 16];
    clear_errno();
    let n = unsafe { read(fs.fs, o, buf.as_mut_ptr().cast(), buf.len(), 0) };
    t.rec(
        "handle anonymous_read",
        format!("{} {:?}", rc_outcome(n as i64), &buf[..n.max(0) as usize]),
    );
    t.rec("handle stat h", fs.obj_stat(o, kind));

    let setattrs: unsafe extern "C" fn(*mut glfs_t, Obj, *mut libc::stat, c_int) -> c_int =
        unsafe { fs.lib.f(c"glfs_h_setattrs") };
    let mut want: libc::stat = unsafe { std::mem::zeroed() };
    want.st_mode = 0o640;
    // GFAPI_SET_ATTR_MODE
    t.rec(
        "handle setattrs mode 640",
        rc(|| unsafe { setattrs(fs.fs, o, &mut want, 0x1) } as isize),
    );
    t.rec("handle stat mode", fs.obj_stat(o, mode));

    match fs.object_of_handle(&mut handle) {
        Ok(o2) => {
            t.rec("handle create_from_handle", fs.obj_stat(o2, kind));
            fs.h_close(o2);
        }
        Err(e) => t.rec("handle create_from_handle", e),
    }
    let mut bogus = [0xabu8; 16];
    t.rec(
        "handle create_from_handle of no file",
        fs.object_of_handle(&mut bogus).map_or_else(
            |e| e,
            |o| {
                fs.h_close(o);
                "ok".into()
            },
        ),
    );

    let rename: unsafe extern "C" fn(*mut glfs_t, Obj, *const c_char, Obj, *const c_char) -> c_int =
        unsafe { fs.lib.f(c"glfs_h_rename") };
    t.rec(
        "handle rename h h2",
        rc(|| unsafe { rename(fs.fs, dir, c"h".as_ptr(), dir, c"h2".as_ptr()) } as isize),
    );
    t.rec("handle stat h after rename", fs.obj_stat(o, kind));
    t.rec(
        "handle lookupat h2 is the same handle",
        match fs.lookup(dir, "h2") {
            Ok(o3) => {
                let same = fs.handle_of(o3) == Some(handle);
                fs.h_close(o3);
                format!("same {same}")
            }
            Err(e) => e,
        },
    );
    t.rec(
        "handle lookupat missing",
        fs.lookup(dir, "missing")
            .map_or_else(|e| e, |_| "ok".into()),
    );
    let link: unsafe extern "C" fn(*mut glfs_t, Obj, Obj, *const c_char) -> c_int =
        unsafe { fs.lib.f(c"glfs_h_link") };
    t.rec(
        "handle link h2 as ln",
        rc(|| unsafe { link(fs.fs, o, dir, c"ln".as_ptr()) } as isize),
    );
    t.rec("handle stat nlink", fs.obj_stat(o, nlink));

    let symlink: unsafe extern "C" fn(
        *mut glfs_t,
        Obj,
        *const c_char,
        *const c_char,
        *mut libc::stat,
    ) -> Obj = unsafe { fs.lib.f(c"glfs_h_symlink") };
    let readlink: unsafe extern "C" fn(*mut glfs_t, Obj, *mut c_char, usize) -> c_int =
        unsafe { fs.lib.f(c"glfs_h_readlink") };
    clear_errno();
    let sl = unsafe { symlink(fs.fs, dir, c"sl".as_ptr(), c"h2".as_ptr(), &mut st) };
    if sl.is_null() {
        t.rec("handle symlink sl", errno_name(last_errno()));
    } else {
        t.rec("handle symlink sl", kind(&st));
        let mut text = [0u8; 32];
        clear_errno();
        let n = unsafe { readlink(fs.fs, sl, text.as_mut_ptr().cast(), text.len()) };
        t.rec(
            "handle readlink sl",
            format!(
                "{} {}",
                rc_outcome(n.into()),
                String::from_utf8_lossy(&text[..n.max(0) as usize])
            ),
        );
        fs.h_close(sl);
    }

    let unlink: unsafe extern "C" fn(*mut glfs_t, Obj, *const c_char) -> c_int =
        unsafe { fs.lib.f(c"glfs_h_unlink") };
    for n in [c"sl", c"ln", c"h2"] {
        t.rec(
            &format!("handle unlink {}", n.to_string_lossy()),
            rc(|| unsafe { unlink(fs.fs, dir, n.as_ptr()) } as isize),
        );
    }
    t.rec(
        "handle unlink missing",
        rc(|| unsafe { unlink(fs.fs, dir, c"h2".as_ptr()) } as isize),
    );
    // ESTALE on one brick, ENOENT on replica 3 (the fake side claims the live topology)
    t.rec("handle stat unlinked", fs.obj_stat(o, kind));
    t.rec(
        "handle create_from_handle unlinked",
        fs.object_of_handle(&mut handle).map_or_else(
            |e| e,
            |o| {
                fs.h_close(o);
                "ok".into()
            },
        ),
    );
    fs.h_close(o);
    fs.h_close(dir);
    t.rec("handle rmdir", fs.path(c"glfs_rmdir", h));
}

// ---------------------------------------------------------------------------------------
// Upcalls and leases: another client (a process of its own, `peer_write`) changes a
// file that this one holds.

/// The environment of the peer process: the library (the fake's path, or empty for the
/// real one) and the file it writes.
const PEER_LIB_ENV: &str = "GFAPI_DIFF_PEER_LIB";
const PEER_FILE_ENV: &str = "GFAPI_DIFF_PEER_FILE";
const PEER_DATA_ENV: &str = "GFAPI_DIFF_PEER_DATA";
/// How long a client waits for another's event (a bound, not an expectation).
const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `struct glfs_lease` (glfs.h).
#[repr(C)]
struct GlfsLease {
    cmd: c_int,
    lease_type: c_int,
    lease_id: [u8; 16],
    lease_flags: u32,
}

const GLFS_SET_LEASE: c_int = 2;
const GLFS_UNLK_LEASE: c_int = 3;
const GLFS_RW_LEASE: c_int = 2;
const GLFS_UPCALL_INODE_INVALIDATE: c_int = 1;
const GLFS_UPCALL_RECALL_LEASE: c_int = 2;
const GFAPI_UP_SIZE: u64 = 0x8;

/// An upcall as the callback saw it: (reason, flags, handle of the object).
type Seen = (c_int, u64, Option<[u8; 16]>);

/// What the upcall callback saw.
static SEEN: std::sync::Mutex<Vec<Seen>> = std::sync::Mutex::new(Vec::new());
/// The library handle, for the callbacks.
static CB_LIB: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
/// The recall callback of glfs_lease ran.
static RECALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

unsafe extern "C" fn on_upcall(up: *mut c_void, _data: *mut c_void) {
    let lib = Lib(*CB_LIB.get().expect("library") as *mut c_void);
    let reason: c_int =
        lib.f::<unsafe extern "C" fn(*mut c_void) -> c_int>(c"glfs_upcall_get_reason")(up);
    let ev =
        lib.f::<unsafe extern "C" fn(*mut c_void) -> *mut c_void>(c"glfs_upcall_get_event")(up);
    let (object, flags) = match reason {
        GLFS_UPCALL_INODE_INVALIDATE => (
            lib.f::<unsafe extern "C" fn(*mut c_void) -> Obj>(c"glfs_upcall_inode_get_object")(ev),
            lib.f::<unsafe extern "C" fn(*mut c_void) -> u64>(c"glfs_upcall_inode_get_flags")(ev),
        ),
        GLFS_UPCALL_RECALL_LEASE => (
            lib.f::<unsafe extern "C" fn(*mut c_void) -> Obj>(c"glfs_upcall_lease_get_object")(ev),
            0,
        ),
        _ => (std::ptr::null_mut(), 0),
    };
    let handle = (!object.is_null())
        .then(|| {
            let mut h = [0u8; 16];
            let n =
                lib.f::<unsafe extern "C" fn(Obj, *mut u8, c_int) -> c_int>(
                    c"glfs_h_extract_handle",
                )(object, h.as_mut_ptr(), 16);
            (n == 16).then_some(h)
        })
        .flatten();
    SEEN.lock().unwrap().push((reason, flags, handle));
    lib.f::<unsafe extern "C" fn(*mut c_void)>(c"glfs_free")(up);
}

unsafe extern "C" fn on_recall(_lease: GlfsLease, _data: *mut c_void) {
    RECALLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Starts the peer: this test binary again, writing `data` at 0 of `file` on `spec`.
fn spawn_peer(path: Option<&Path>, spec: &str, file: &str, data: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            super::TEST_NAME,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(super::SIDE_ENV, "peer-write")
        .env(super::VOLUME_ENV, spec)
        .env(
            PEER_LIB_ENV,
            path.map_or(String::new(), |p| p.display().to_string()),
        )
        .env(PEER_FILE_ENV, file)
        .env(PEER_DATA_ENV, data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the peer")
}

/// The peer's line ("write: N" / "write: ERR"), or how it failed.
fn peer_result(child: std::process::Child) -> String {
    match child.wait_with_output() {
        // the harness prints "test NAME ... " on the same line first
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.find("write: ").map(|i| l[i..].to_string()))
            .unwrap_or_else(|| "no result".into()),
        Ok(o) => format!("peer failed ({})", o.status),
        Err(e) => format!("peer failed ({e})"),
    }
}

/// The peer side: mounts, opens the file for writing, writes, prints "write: OUTCOME",
/// exits (no glfs_fini: seconds on real Gluster).
pub fn peer_write() {
    let lib = std::env::var(PEER_LIB_ENV).unwrap_or_default();
    let path = (!lib.is_empty()).then(|| std::path::PathBuf::from(lib));
    if let Some(p) = &path {
        // the fake, loaded by path as the side that started the peer did
        let c = c(&p.display().to_string());
        // SAFETY: loading a shared library by path.
        assert!(!unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) }.is_null());
    } else {
        let c = c(gfapi_sys::DEFAULT_LIBRARY);
        // SAFETY: loading the real library by name.
        assert!(!unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) }.is_null());
    }
    let spec = std::env::var(super::VOLUME_ENV).expect("volume");
    let fs = Fs::mount(path.as_deref(), &spec);
    let file = std::env::var(PEER_FILE_ENV).expect("file");
    let line = match fs.open(&file, libc::O_RDWR) {
        Ok(fd) => {
            let data = std::env::var(PEER_DATA_ENV).expect("data");
            fs.write_synced(fd, data.as_bytes(), 0)
        }
        Err(e) => e,
    };
    println!("write: {line}");
    std::process::exit(0);
}

/// Waits (at most EVENT_WAIT) until `done` holds.
fn wait_until(done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < EVENT_WAIT {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// On the volume with cache invalidation and leases: a registered client is told of
/// another client's write to a file it holds; a read-write lease is recalled when
/// another client opens the file for writing, and that open waits until the lease is
/// returned.
fn upcalls_and_leases(t: &mut Recorder, fs: &Fs, path: Option<&Path>, spec: &str, name: &str) {
    // This thread's calls carry the lease id from here on, so that the fd and the calls
    // through it are the lease holder's own (gfapi takes the id at open).
    let lease_id = [7u8; 16];
    // SAFETY: glfs.h's prototype (glfs_leaseid_t is a 16-byte array, passed as a pointer).
    let set_id: unsafe extern "C" fn(*const u8) -> c_int =
        unsafe { fs.lib.f(c"glfs_setfsleaseid") };
    t.rec(
        "lease setfsleaseid",
        rc(|| unsafe { set_id(lease_id.as_ptr()) } as isize),
    );
    let fd = match fs.creat(name) {
        Ok(fd) => fd,
        Err(e) => return t.rec("upcall creat", e),
    };
    t.rec("upcall write", fs.write_synced(fd, b"original", 0));
    let o = match fs.lookup(std::ptr::null_mut(), name) {
        Ok(o) => o,
        Err(e) => return t.rec("upcall lookupat", e),
    };
    let handle = fs.handle_of(o);
    CB_LIB.get_or_init(|| fs.lib.0 as usize);
    // SAFETY: glfs.h's prototype; the callback lives as long as the process.
    let r = unsafe {
        let f: unsafe extern "C" fn(
            *mut glfs_t,
            u32,
            unsafe extern "C" fn(*mut c_void, *mut c_void),
            *mut c_void,
        ) -> c_int = fs.lib.f(c"glfs_upcall_register");
        f(fs.fs, u32::MAX, on_upcall, std::ptr::null_mut())
    };
    t.rec(
        "upcall register (events)",
        if r > 0 {
            "registered".into()
        } else {
            rc_outcome(r.into())
        },
    );

    let seen_about = |reason: c_int| {
        SEEN.lock()
            .unwrap()
            .iter()
            .find(|(r, _, h)| *r == reason && *h == handle)
            .map(|(_, flags, _)| *flags)
    };
    let peer = spawn_peer(path, spec, name, "peer");
    t.rec("upcall peer writes", peer_result(peer));
    t.rec(
        "upcall invalidation about the file",
        if wait_until(|| {
            seen_about(GLFS_UPCALL_INODE_INVALIDATE).is_some_and(|f| f & GFAPI_UP_SIZE != 0)
        }) {
            "size changed".to_string()
        } else {
            format!("none with UP_SIZE within {EVENT_WAIT:?}")
        },
    );

    // SAFETY (lease calls): glfs.h's prototype, an fd of `fs`.
    let lease: unsafe extern "C" fn(
        *mut glfs_fd_t,
        *mut GlfsLease,
        Option<unsafe extern "C" fn(GlfsLease, *mut c_void)>,
        *mut c_void,
    ) -> c_int = unsafe { fs.lib.f(c"glfs_lease") };
    let mut l = GlfsLease {
        cmd: GLFS_SET_LEASE,
        lease_type: GLFS_RW_LEASE,
        lease_id,
        lease_flags: 0,
    };
    t.rec(
        "lease set read-write",
        rc(|| unsafe { lease(fd, &mut l, Some(on_recall), std::ptr::null_mut()) } as isize),
    );
    let peer = spawn_peer(path, spec, name, "PEER");
    let recalled = wait_until(|| {
        RECALLED.load(std::sync::atomic::Ordering::SeqCst)
            || seen_about(GLFS_UPCALL_RECALL_LEASE).is_some()
    });
    t.rec(
        "lease recalled (callback or upcall)",
        if recalled {
            "recalled".to_string()
        } else {
            format!("not within {EVENT_WAIT:?}")
        },
    );
    // the data as the holder sees it while the peer's write is held back
    t.rec("lease data before return", fs.pread(fd, 8, 0));
    l.cmd = GLFS_UNLK_LEASE;
    t.rec(
        "lease return",
        rc(|| unsafe { lease(fd, &mut l, None, std::ptr::null_mut()) } as isize),
    );
    t.rec("lease peer writes after the return", peer_result(peer));
    t.rec("lease data after", fs.pread(fd, 8, 0));
    t.rec(
        "lease setfsleaseid NULL",
        rc(|| unsafe { set_id(std::ptr::null()) } as isize),
    );
    fs.h_close(o);
    t.rec("upcall close", fs.close(fd));
    t.rec("upcall unlink", fs.path(c"glfs_unlink", name));
}
