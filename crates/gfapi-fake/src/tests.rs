//! Unit tests calling the exported `extern "C"` functions directly (through the rlib).
//! Each test uses its own root via `gfapi_fake_set_root`, so tests run in parallel.

use crate::ffi::*;
use libc::{c_int, c_void, ssize_t};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

pub(crate) fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) fs: *mut glfs_t,
}

impl Env {
    /// A root with volume `vol`, mounted.
    pub(crate) fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vol")).unwrap();
        let fs = mount(dir.path(), "vol").expect("mount");
        Env { dir, fs }
    }

    pub(crate) fn host(&self, p: &str) -> PathBuf {
        self.dir.path().join("vol").join(p.trim_start_matches('/'))
    }

    pub(crate) fn rules(&self, text: &str) {
        let tmp = self.dir.path().join(".faults.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.path().join(".faults.toml")).unwrap();
    }

    pub(crate) fn clear_rules(&self) {
        let _ = std::fs::remove_file(self.dir.path().join(".faults.toml"));
    }

    pub(crate) fn creat(&self, p: &str) -> *mut glfs_fd_t {
        let fd = unsafe { glfs_creat(self.fs, c(p).as_ptr(), libc::O_RDWR, 0o644) };
        assert!(!fd.is_null(), "creat {p}: errno {}", errno());
        fd
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        unsafe { glfs_fini(self.fs) };
    }
}

pub(crate) fn mount(root: &Path, vol: &str) -> Result<*mut glfs_t, i32> {
    unsafe {
        let fs = glfs_new(c(vol).as_ptr());
        assert!(!fs.is_null());
        assert_eq!(
            gfapi_fake_set_root(fs, c(root.to_str().unwrap()).as_ptr()),
            0
        );
        assert_eq!(
            glfs_set_volfile_server(fs, c("tcp").as_ptr(), c("127.0.0.2").as_ptr(), 24007),
            0
        );
        if glfs_init(fs) != 0 {
            let e = errno();
            glfs_fini(fs);
            return Err(e);
        }
        Ok(fs)
    }
}

pub(crate) unsafe fn pwrite(fd: *mut glfs_fd_t, data: &[u8], off: i64) -> ssize_t {
    glfs_pwrite(
        fd,
        data.as_ptr() as *const c_void,
        data.len(),
        off,
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
}

pub(crate) unsafe fn pread(fd: *mut glfs_fd_t, len: usize, off: i64) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    let r = glfs_pread(
        fd,
        buf.as_mut_ptr() as *mut c_void,
        len,
        off,
        0,
        std::ptr::null_mut(),
    );
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

#[test]
fn init_without_root_is_enotconn_and_without_volume_is_enoent() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        mount(&dir.path().join("missing"), "vol").err(),
        Some(libc::ENOTCONN)
    );
    assert_eq!(mount(dir.path(), "vol").err(), Some(libc::ENOENT));
    std::fs::create_dir(dir.path().join("vol")).unwrap();
    let fs = mount(dir.path(), "vol").unwrap();
    assert_eq!(unsafe { glfs_fini(fs) }, 0);
}

#[test]
fn ops_before_init_fail_and_null_handles_are_rejected() {
    unsafe {
        let fs = glfs_new(c("vol").as_ptr());
        assert!(glfs_open(fs, c("/x").as_ptr(), libc::O_RDONLY).is_null());
        assert_eq!(errno(), libc::EIO);
        assert_eq!(glfs_fini(fs), 0);
        assert_eq!(glfs_fini(fs), -1, "double fini is detected");
        assert_eq!(errno(), libc::EINVAL);
        assert!(glfs_new(std::ptr::null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(glfs_init(std::ptr::null_mut()), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(glfs_close(std::ptr::null_mut()), -1);
        assert_eq!(errno(), libc::EBADF);
    }
}

#[test]
fn pwrite_pread_round_trip_with_stats() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/lun.img");
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut pre = glfs_stat::default();
        let mut post = glfs_stat::default();
        let n = glfs_pwrite(
            fd,
            data.as_ptr() as *const c_void,
            data.len(),
            4096,
            0,
            &mut pre,
            &mut post,
        );
        assert_eq!(n, 8192);
        assert_eq!(pre.glfs_st_size, 0);
        assert_eq!(post.glfs_st_size, 4096 + 8192);
        assert_eq!(post.glfs_st_mask, 0x7ff);
        assert_eq!(post.glfs_st_mode & libc::S_IFMT, libc::S_IFREG);
        assert_eq!(pread(fd, 8192, 4096).unwrap(), data);
        // A hole reads back as zeros; reads stop at EOF.
        assert_eq!(pread(fd, 4096, 0).unwrap(), vec![0u8; 4096]);
        assert_eq!(pread(fd, 100, 4096 + 8192 - 10).unwrap().len(), 10);
        let host = std::fs::read(env.host("/lun.img")).unwrap();
        assert_eq!(&host[4096..], &data[..]);
        assert_eq!(glfs_close(fd), 0);
    }
}

#[test]
fn read_write_lseek_use_the_file_position() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        assert_eq!(glfs_write(fd, b"hello".as_ptr() as *const c_void, 5, 0), 5);
        assert_eq!(glfs_write(fd, b" world".as_ptr() as *const c_void, 6, 0), 6);
        assert_eq!(glfs_lseek(fd, 0, libc::SEEK_SET), 0);
        let mut buf = [0u8; 11];
        assert_eq!(glfs_read(fd, buf.as_mut_ptr() as *mut c_void, 11, 0), 11);
        assert_eq!(&buf, b"hello world");
        assert_eq!(glfs_read(fd, buf.as_mut_ptr() as *mut c_void, 11, 0), 0);
        assert_eq!(glfs_lseek(fd, -5, libc::SEEK_END), 6);
        glfs_close(fd);
    }
}

#[test]
fn open_errors_match_posix_and_gluster() {
    let env = Env::new();
    unsafe {
        assert!(glfs_open(env.fs, c("/nope").as_ptr(), libc::O_RDWR).is_null());
        assert_eq!(errno(), libc::ENOENT);
        // glfs_open never creates, even with O_CREAT.
        assert!(glfs_open(env.fs, c("/nope").as_ptr(), libc::O_RDWR | libc::O_CREAT).is_null());
        assert_eq!(errno(), libc::ENOENT);
        let fd = env.creat("/a");
        glfs_close(fd);
        assert!(glfs_creat(env.fs, c("/a").as_ptr(), libc::O_RDWR | libc::O_EXCL, 0o644).is_null());
        assert_eq!(errno(), libc::EEXIST);
        assert_eq!(glfs_mkdir(env.fs, c("/d").as_ptr(), 0o755), 0);
        assert_eq!(glfs_mkdir(env.fs, c("/d").as_ptr(), 0o755), -1);
        assert_eq!(errno(), libc::EEXIST);
        assert!(glfs_open(env.fs, c("/a/x").as_ptr(), libc::O_RDONLY).is_null());
        assert_eq!(errno(), libc::ENOTDIR);
        assert_eq!(glfs_unlink(env.fs, c("/nope").as_ptr()), -1);
        assert_eq!(errno(), libc::ENOENT);
        // Read-only fd: the write is acknowledged (write-behind), its EBADF comes with
        // the next fdatasync, once.
        let ro = glfs_open(env.fs, c("/a").as_ptr(), libc::O_RDONLY);
        assert!(!ro.is_null());
        assert_eq!(pwrite(ro, b"x", 0), 1);
        assert_eq!(
            glfs_fdatasync(ro, std::ptr::null_mut(), std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::EBADF);
        assert_eq!(
            glfs_fdatasync(ro, std::ptr::null_mut(), std::ptr::null_mut()),
            0
        );
        glfs_close(ro);
    }
}

#[test]
fn directories_open_read_only_like_open2() {
    let env = Env::new();
    unsafe {
        assert_eq!(glfs_mkdir(env.fs, c("/d").as_ptr(), 0o755), 0);
        // Gluster's brick opens a directory O_RDONLY (open(2) does); writing modes and
        // glfs_creat give EISDIR.
        let fd = glfs_open(env.fs, c("/d").as_ptr(), libc::O_RDONLY);
        assert!(!fd.is_null(), "errno {}", errno());
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(glfs_fstat(fd, &mut st), 0);
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
        assert_eq!(pread(fd, 16, 0), Err(libc::EISDIR));
        assert_eq!(glfs_close(fd), 0);
        for flags in [libc::O_RDWR, libc::O_WRONLY] {
            assert!(glfs_open(env.fs, c("/d").as_ptr(), flags).is_null());
            assert_eq!(errno(), libc::EISDIR, "flags {flags:#o}");
        }
        assert!(glfs_creat(env.fs, c("/d").as_ptr(), libc::O_RDWR, 0o644).is_null());
        assert_eq!(errno(), libc::EISDIR);
    }
}

#[test]
fn zero_byte_reads_are_einval() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        assert_eq!(pwrite(fd, b"data", 0), 4);
        let mut b = [0u8; 4];
        let p = b.as_mut_ptr() as *mut c_void;
        assert_eq!(pread(fd, 0, 0), Err(libc::EINVAL));
        assert_eq!(glfs_read(fd, p, 0, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        let iov = [libc::iovec {
            iov_base: p,
            iov_len: 0,
        }];
        assert_eq!(glfs_preadv(fd, iov.as_ptr(), 1, 0, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        // A read at EOF is not empty: it returns 0.
        assert_eq!(pread(fd, 4, 4), Ok(vec![]));
        // A zero-byte write is fine.
        assert_eq!(pwrite(fd, b"", 0), 0);
        glfs_close(fd);
    }
}

#[test]
fn lseek_keeps_any_offset_in_the_fd() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        assert_eq!(pwrite(fd, b"0123456789", 0), 10);
        *libc::__errno_location() = 12345;
        // gfapi stores and returns the offset unchecked: -1 with errno untouched.
        assert_eq!(glfs_lseek(fd, -1, libc::SEEK_SET), -1);
        assert_eq!(errno(), 12345);
        assert_eq!(glfs_lseek(fd, 10, libc::SEEK_CUR), 9);
        let mut b = [0u8; 4];
        assert_eq!(glfs_read(fd, b.as_mut_ptr() as *mut c_void, 4, 0), 1);
        assert_eq!(b[0], b'9');
        assert_eq!(glfs_lseek(fd, 0, libc::SEEK_CUR), 10);
        // Reading at a negative offset is the brick's EINVAL.
        assert_eq!(glfs_lseek(fd, -4, libc::SEEK_SET), -4);
        assert_eq!(glfs_read(fd, b.as_mut_ptr() as *mut c_void, 4, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(glfs_lseek(fd, 0, 99), -1);
        assert_eq!(errno(), libc::EINVAL);
        glfs_close(fd);
    }
}

#[test]
fn dotdot_stops_at_the_volume_root_and_empty_paths_are_einval() {
    let env = Env::new();
    // A file beside the volume directory, which no volume path may reach.
    std::fs::write(env.dir.path().join("outside"), b"secret").unwrap();
    std::fs::write(env.host("/inside"), b"12345").unwrap();
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        for p in ["/../inside", "../../inside", "/a/../../inside"] {
            assert_eq!(glfs_lstat(env.fs, c(p).as_ptr(), &mut st), 0, "{p}");
            assert_eq!(st.st_size, 5, "{p}");
        }
        assert_eq!(glfs_lstat(env.fs, c("/..").as_ptr(), &mut st), 0);
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
        for p in ["/../outside", "../../outside", "/../vol/../outside"] {
            assert_eq!(glfs_lstat(env.fs, c(p).as_ptr(), &mut st), -1, "{p}");
            assert_eq!(errno(), libc::ENOENT, "{p}");
        }
        assert_eq!(glfs_lstat(env.fs, c("").as_ptr(), &mut st), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(glfs_unlink(env.fs, c("").as_ptr()), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(glfs_mkdir(env.fs, c("").as_ptr(), 0o755), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert!(glfs_open(env.fs, c("").as_ptr(), libc::O_RDONLY).is_null());
        assert_eq!(errno(), libc::EINVAL);
    }
}

pub(crate) unsafe fn sync(fd: *mut glfs_fd_t) -> Result<(), i32> {
    if glfs_fdatasync(fd, std::ptr::null_mut(), std::ptr::null_mut()) == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

unsafe fn size(fd: *mut glfs_fd_t) -> i64 {
    let mut st: libc::stat = std::mem::zeroed();
    assert_eq!(glfs_fstat(fd, &mut st), 0);
    st.st_size
}

#[test]
fn unaligned_o_direct_writes_fail_at_the_next_sync_and_write_nothing() {
    let env = Env::new();
    let buf = [7u8; 1024];
    unsafe {
        let fd = glfs_creat(
            env.fs,
            c("/d").as_ptr(),
            libc::O_RDWR | libc::O_DIRECT,
            0o644,
        );
        assert!(!fd.is_null());
        // Unaligned offset: acknowledged in full, nothing written, EINVAL at the next
        // fdatasync only.
        assert_eq!(pwrite(fd, &buf[..100], 1), 100);
        assert_eq!(size(fd), 0);
        assert_eq!(sync(fd), Err(libc::EINVAL));
        assert_eq!(sync(fd), Ok(()));
        // Aligned offset and length from an odd address: written.
        assert_eq!(pwrite(fd, &buf[1..513], 512), 512);
        assert_eq!(sync(fd), Ok(()));
        assert_eq!(size(fd), 1024);
        // Unaligned offset, aligned length; aligned offset, unaligned length (fsync).
        assert_eq!(pwrite(fd, &buf[..512], 100), 512);
        assert_eq!(sync(fd), Err(libc::EINVAL));
        assert_eq!(pwrite(fd, &buf[..100], 0), 100);
        assert_eq!(
            glfs_fsync(fd, std::ptr::null_mut(), std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(
            pread(fd, 1024, 0).unwrap(),
            [&[0u8; 512][..], &[7; 512]].concat()
        );
        // Unaligned reads fail at once (reads are not acknowledged early).
        assert_eq!(pread(fd, 100, 1), Err(libc::EINVAL));
        assert_eq!(pread(fd, 100, 0), Err(libc::EINVAL));
        assert_eq!(pread(fd, 512, 1), Err(libc::EINVAL));
        // Two failures before a sync: one error, reported once.
        assert_eq!(pwrite(fd, &buf[..1], 0), 1);
        assert_eq!(pwrite(fd, &buf[..3], 5), 3);
        assert_eq!(sync(fd), Err(libc::EINVAL));
        assert_eq!(sync(fd), Ok(()));
        // The same through the async calls.
        let (tx, rx) = mpsc::channel::<Completion>();
        let p = buf.as_ptr() as *const c_void;
        assert_eq!(
            glfs_pwrite_async(fd, p, 10, 3, 0, Some(on_done), token(&tx)),
            0
        );
        let w = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(w.ret, 10);
        assert_eq!(glfs_fdatasync_async(fd, Some(on_done), token(&tx)), 0);
        let s = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((s.ret, s.errno), (-1, libc::EINVAL));
        assert_eq!(size(fd), 1024);
        glfs_close(fd);

        // O_DSYNC: no write-behind, the write itself fails.
        let fd = glfs_open(
            env.fs,
            c("/d").as_ptr(),
            libc::O_RDWR | libc::O_DIRECT | libc::O_DSYNC,
        );
        assert!(!fd.is_null());
        assert_eq!(pwrite(fd, &buf[..100], 1), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(pwrite(fd, &buf[..512], 0), 512);
        assert_eq!(sync(fd), Ok(()));
        glfs_close(fd);
    }
}

#[test]
fn a_sector_size_rule_models_a_brick_disk_of_larger_sectors() {
    let env = Env::new();
    env.rules("[[rule]]\nop = ['read', 'write']\npath = '/4k'\nsector_size = 4096\n");
    unsafe {
        let fd = glfs_creat(
            env.fs,
            c("/4k").as_ptr(),
            libc::O_RDWR | libc::O_DIRECT | libc::O_DSYNC,
            0o644,
        );
        assert!(!fd.is_null());
        // 512-byte I/O, aligned for a 512-byte sector, is EINVAL on a 4096-byte one.
        assert_eq!(pwrite(fd, &[1u8; 512], 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(pwrite(fd, &[1u8; 4096], 512), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(pwrite(fd, &[1u8; 8192], 4096), 8192);
        assert_eq!(pread(fd, 512, 4096), Err(libc::EINVAL));
        assert_eq!(pread(fd, 4096, 4096).unwrap(), vec![1u8; 4096]);
        glfs_close(fd);
        // Without O_DIRECT the sector size does not matter.
        let fd = glfs_open(env.fs, c("/4k").as_ptr(), libc::O_RDWR);
        assert_eq!(pread(fd, 512, 4096).unwrap(), vec![1u8; 512]);
        glfs_close(fd);
    }
}

#[test]
fn failed_writes_are_reported_by_the_next_sync() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        // A write at a negative offset reaches the brick, which refuses it.
        assert_eq!(pwrite(fd, b"x", -1), 1);
        assert_eq!(size(fd), 0);
        assert_eq!(
            glfs_fsync(fd, std::ptr::null_mut(), std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(sync(fd), Ok(()));
        // Injected write faults fail the write itself (they model the client's view).
        env.rules("[[rule]]\nop = \"write\"\nerrno = \"ENOSPC\"\n");
        assert_eq!(pwrite(fd, b"x", 0), -1);
        assert_eq!(errno(), libc::ENOSPC);
        env.clear_rules();
        assert_eq!(sync(fd), Ok(()));
        glfs_close(fd);
    }
}

#[test]
fn o_trunc_truncates_and_ftruncate_reports_pre_post() {
    let env = Env::new();
    std::fs::write(env.host("/t"), vec![1u8; 1000]).unwrap();
    unsafe {
        let fd = glfs_open(env.fs, c("/t").as_ptr(), libc::O_RDWR | libc::O_TRUNC);
        assert!(!fd.is_null());
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(glfs_fstat(fd, &mut st), 0);
        assert_eq!(st.st_size, 0);
        let mut pre = glfs_stat::default();
        let mut post = glfs_stat::default();
        assert_eq!(glfs_ftruncate(fd, 1 << 20, &mut pre, &mut post), 0);
        assert_eq!((pre.glfs_st_size, post.glfs_st_size), (0, 1 << 20));
        assert_eq!(glfs_ftruncate(fd, -1, &mut pre, &mut post), -1);
        assert_eq!(errno(), libc::EINVAL);
        glfs_close(fd);
    }
}

#[test]
fn double_close_and_stale_fd_are_ebadf() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        assert_eq!(glfs_close(fd), 0);
        assert_eq!(glfs_close(fd), -1);
        assert_eq!(errno(), libc::EBADF);
        assert_eq!(pwrite(fd, b"x", 0), -1);
        assert_eq!(errno(), libc::EBADF);
        let bogus = 0x1234usize as *mut glfs_fd_t;
        assert_eq!(
            glfs_fsync(bogus, std::ptr::null_mut(), std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::EBADF);
    }
}

#[test]
fn sparse_files_seek_data_hole_discard_and_zerofill() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/sparse");
        let mb = 1i64 << 20;
        assert_eq!(
            glfs_ftruncate(fd, 4 * mb, std::ptr::null_mut(), std::ptr::null_mut()),
            0
        );
        assert_eq!(pwrite(fd, &vec![0xabu8; mb as usize], 2 * mb), mb as isize);
        assert_eq!(glfs_lseek(fd, 0, libc::SEEK_DATA), 2 * mb);
        assert_eq!(glfs_lseek(fd, 2 * mb, libc::SEEK_HOLE), 3 * mb);
        assert_eq!(glfs_lseek(fd, 5 * mb, libc::SEEK_DATA), -1);
        assert_eq!(errno(), libc::ENXIO);

        let mut st: libc::stat = std::mem::zeroed();
        glfs_fstat(fd, &mut st);
        let blocks_before = st.st_blocks;
        assert_eq!(glfs_discard(fd, 2 * mb, (mb / 2) as usize), 0);
        glfs_fstat(fd, &mut st);
        assert_eq!(st.st_size, 4 * mb, "discard keeps the size");
        assert!(st.st_blocks < blocks_before, "discard deallocates");
        assert_eq!(pread(fd, 16, 2 * mb).unwrap(), vec![0u8; 16]);
        assert_eq!(pread(fd, 16, 2 * mb + mb / 2).unwrap(), vec![0xabu8; 16]);

        assert_eq!(glfs_zerofill(fd, 2 * mb + mb / 2, 4096), 0);
        assert_eq!(pread(fd, 4096, 2 * mb + mb / 2).unwrap(), vec![0u8; 4096]);
        assert_eq!(
            pread(fd, 16, 2 * mb + mb / 2 + 4096).unwrap(),
            vec![0xabu8; 16]
        );
        assert_eq!(glfs_discard(fd, -1, 10), -1);
        assert_eq!(errno(), libc::EINVAL);
        glfs_close(fd);
    }
}

#[test]
fn stat_lstat_directories_and_readdir() {
    let env = Env::new();
    unsafe {
        assert_eq!(glfs_mkdir(env.fs, c("/d").as_ptr(), 0o755), 0);
        glfs_close(env.creat("/d/one"));
        glfs_close(env.creat("/d/two"));
        std::os::unix::fs::symlink("one", env.host("/d/link")).unwrap();
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(glfs_lstat(env.fs, c("/d").as_ptr(), &mut st), 0);
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
        assert_eq!(glfs_lstat(env.fs, c("/d/link").as_ptr(), &mut st), 0);
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(glfs_stat(env.fs, c("/d/link").as_ptr(), &mut st), 0);
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
        assert_eq!(glfs_stat(env.fs, c("/").as_ptr(), &mut st), 0);
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
        assert_eq!(glfs_lstat(env.fs, c("/d/none").as_ptr(), &mut st), -1);
        assert_eq!(errno(), libc::ENOENT);

        let dfd = glfs_opendir(env.fs, c("/d").as_ptr());
        assert!(!dfd.is_null());
        let mut names = Vec::new();
        loop {
            let e = glfs_readdir(dfd);
            if e.is_null() {
                break;
            }
            names.push(
                CStr::from_ptr((*e).d_name.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        names.sort();
        assert_eq!(names, [".", "..", "link", "one", "two"]);
        assert_eq!(glfs_closedir(dfd), 0);
        assert!(glfs_opendir(env.fs, c("/d/one").as_ptr()).is_null());
        assert_eq!(errno(), libc::ENOTDIR);
        assert_eq!(glfs_rmdir(env.fs, c("/d").as_ptr()), -1);
        assert_eq!(errno(), libc::ENOTEMPTY);
    }
}

#[test]
fn logging_goes_to_the_given_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gfapi.log");
    unsafe {
        let fs = glfs_new(c("nosuchvol").as_ptr());
        gfapi_fake_set_root(fs, c(dir.path().to_str().unwrap()).as_ptr());
        assert_eq!(
            glfs_set_logging(fs, c(log.to_str().unwrap()).as_ptr(), 7),
            0
        );
        assert_eq!(glfs_init(fs), -1);
        glfs_fini(fs);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("volume nosuchvol not found"), "{text}");
}

#[test]
fn volume_id_is_16_bytes() {
    let env = Env::new();
    unsafe {
        let mut id = [0 as libc::c_char; 16];
        assert_eq!(glfs_get_volumeid(env.fs, std::ptr::null_mut(), 0), 16);
        assert_eq!(glfs_get_volumeid(env.fs, id.as_mut_ptr(), 16), 16);
        assert!(id.iter().any(|&b| b != 0));
        assert_eq!(glfs_get_volumeid(env.fs, id.as_mut_ptr(), 8), -1);
        assert_eq!(errno(), libc::ERANGE);
    }
}

// ---------------------------------------------------------------------------------------
// async

/// A per-operation callback cookie owning a Sender clone; `on_done` takes it back.
fn token(tx: &mpsc::Sender<Completion>) -> *mut c_void {
    Box::into_raw(Box::new(tx.clone())) as *mut c_void
}

struct Completion {
    ret: ssize_t,
    errno: i32,
    pre: Option<glfs_stat>,
    post: Option<glfs_stat>,
    thread: std::thread::ThreadId,
}

unsafe extern "C" fn on_done(
    _fd: *mut glfs_fd_t,
    ret: ssize_t,
    pre: *mut glfs_stat,
    post: *mut glfs_stat,
    data: *mut c_void,
) {
    // Each submission owns a Sender clone (see `token`), so the channel outlives the send.
    let tx = Box::from_raw(data as *mut mpsc::Sender<Completion>);
    let _ = tx.send(Completion {
        ret,
        errno: errno(),
        pre: pre.as_ref().copied(),
        post: post.as_ref().copied(),
        thread: std::thread::current().id(),
    });
}

#[test]
fn async_ops_complete_on_another_thread_with_stats() {
    let env = Env::new();
    let (tx, rx) = mpsc::channel::<Completion>();
    unsafe {
        let fd = env.creat("/a");
        let buf = vec![0x5au8; 4096];
        assert_eq!(
            glfs_pwrite_async(
                fd,
                buf.as_ptr() as *const c_void,
                4096,
                0,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        let w = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(w.ret, 4096);
        assert_ne!(w.thread, std::thread::current().id());
        assert_eq!(w.pre.unwrap().glfs_st_size, 0);
        assert_eq!(w.post.unwrap().glfs_st_size, 4096);

        let mut rbuf = vec![0u8; 4096];
        assert_eq!(
            glfs_pread_async(
                fd,
                rbuf.as_mut_ptr() as *mut c_void,
                4096,
                0,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(r.ret, 4096);
        assert!(r.pre.is_none(), "reads report no prestat");
        assert_eq!(r.post.unwrap().glfs_st_size, 4096);
        assert_eq!(rbuf, buf);

        assert_eq!(glfs_fdatasync_async(fd, Some(on_done), token(&tx)), 0);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().ret, 0);

        // Errors: ret -1 with errno set on the callback thread, no stats.
        assert_eq!(
            glfs_pread_async(
                fd,
                rbuf.as_mut_ptr() as *mut c_void,
                10,
                -1,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        let e = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((e.ret, e.errno), (-1, libc::EINVAL));
        assert!(e.pre.is_none() && e.post.is_none());

        // Bad fd fails synchronously.
        glfs_close(fd);
        assert_eq!(glfs_fsync_async(fd, Some(on_done), token(&tx)), -1);
        assert_eq!(errno(), libc::EBADF);
    }
}

#[test]
fn fini_waits_for_in_flight_async_ops() {
    let env = Env::new();
    env.rules("[[rule]]\nop = 'write'\ndelay_ms = 200\n");
    let (tx, rx) = mpsc::channel::<Completion>();
    unsafe {
        let fs = mount(env.dir.path(), "vol").unwrap();
        let fd = glfs_creat(fs, c("/slow").as_ptr(), libc::O_RDWR, 0o644);
        let buf = vec![1u8; 512];
        let start = Instant::now();
        assert_eq!(
            glfs_pwrite_async(
                fd,
                buf.as_ptr() as *const c_void,
                512,
                0,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        assert_eq!(gfapi_fake_inflight(fs), 1);
        assert_eq!(glfs_fini(fs), 0);
        assert!(start.elapsed() >= Duration::from_millis(200));
        // The completion was delivered before fini returned.
        assert_eq!(rx.try_recv().unwrap().ret, 512);
        glfs_close(fd);
    }
}

// ---------------------------------------------------------------------------------------
// faults

#[test]
fn fault_errno_on_nth_write_by_path() {
    let env = Env::new();
    env.rules("[[rule]]\nop = 'write'\npath = '*.img'\nnth = 2\nerrno = 'ENOSPC'\n");
    unsafe {
        let img = env.creat("/lun.img");
        let other = env.creat("/other");
        assert_eq!(pwrite(other, b"x", 0), 1);
        assert_eq!(pwrite(img, b"a", 0), 1);
        assert_eq!(pwrite(img, b"b", 1), -1);
        assert_eq!(errno(), libc::ENOSPC);
        assert_eq!(pwrite(img, b"c", 2), 1);
        glfs_close(img);
        glfs_close(other);
    }
}

#[test]
fn fault_offset_range_and_latency() {
    let env = Env::new();
    env.rules("[[rule]]\nop = 'read'\noffset = [8192, 12288]\ndelay_ms = 400\n");
    unsafe {
        let fd = env.creat("/f");
        glfs_ftruncate(fd, 65536, std::ptr::null_mut(), std::ptr::null_mut());
        let t = Instant::now();
        pread(fd, 4096, 0).unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "outside the range: no delay"
        );
        let t = Instant::now();
        pread(fd, 4096, 8192).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(400));
        glfs_close(fd);
    }
}

#[test]
fn fault_short_io() {
    let env = Env::new();
    env.rules("[[rule]]\nop = ['read', 'write']\nshort = 100\n");
    unsafe {
        let fd = env.creat("/f");
        assert_eq!(pwrite(fd, &[7u8; 1000], 0), 100);
        assert_eq!(std::fs::metadata(env.host("/f")).unwrap().len(), 100);
        assert_eq!(pread(fd, 1000, 0).unwrap().len(), 100);
        glfs_close(fd);
    }
}

#[test]
fn fault_hang_until_rules_change() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        env.rules("[[rule]]\nop = 'fsync'\nhang = true\n");
        let fdu = fd as usize;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = glfs_fsync(
                fdu as *mut glfs_fd_t,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            tx.send(r).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "still hung"
        );
        env.clear_rules();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
        glfs_close(fd);
    }
}

#[test]
fn fault_disconnect_until_rules_change_or_reinit() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        env.rules("[[rule]]\nop = 'write'\ndisconnect = true\ncount = 1\n");
        assert_eq!(pwrite(fd, b"x", 0), -1);
        assert_eq!(errno(), libc::ENOTCONN);
        // Every op now fails, not just writes.
        assert!(pread(fd, 1, 0) == Err(libc::ENOTCONN));
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(glfs_lstat(env.fs, c("/f").as_ptr(), &mut st), -1);
        assert_eq!(errno(), libc::ENOTCONN);
        // A new glfs_init reconnects.
        assert_eq!(glfs_init(env.fs), 0);
        assert_eq!(pwrite(fd, b"y", 0), 1);
        // Disconnect again (new rules file), then reconnect by changing the rules.
        env.rules("reconnect = 1\n[[rule]]\nop = 'read'\ndisconnect = true\n");
        assert!(pread(fd, 1, 0) == Err(libc::ENOTCONN));
        assert_eq!(pwrite(fd, b"z", 0), -1);
        env.rules("reconnect = 2\n");
        assert_eq!(pwrite(fd, b"z", 0), 1);
        glfs_close(fd);
    }
}

#[test]
fn fault_on_init_and_async_errno() {
    let env = Env::new();
    env.rules(
        "[[rule]]\nop = 'init'\nerrno = 'ETIMEDOUT'\n[[rule]]\nop = 'fdatasync'\nerrno = 'EIO'\n",
    );
    assert_eq!(mount(env.dir.path(), "vol").err(), Some(libc::ETIMEDOUT));
    let (tx, rx) = mpsc::channel::<Completion>();
    unsafe {
        let fd = env.creat("/f");
        assert_eq!(glfs_fdatasync_async(fd, Some(on_done), token(&tx)), 0);
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((d.ret, d.errno), (-1, libc::EIO));
        glfs_close(fd);
    }
}

#[test]
fn invalid_rules_file_injects_nothing() {
    let env = Env::new();
    env.rules("[[rule]]\nop = 'wrote'\nerrno = 'EIO'\n");
    unsafe {
        let fd = env.creat("/f");
        assert_eq!(pwrite(fd, b"ok", 0), 2);
        glfs_close(fd);
    }
}

unsafe extern "C" fn fini_in_callback(
    _fd: *mut glfs_fd_t,
    _ret: ssize_t,
    _pre: *mut glfs_stat,
    _post: *mut glfs_stat,
    data: *mut c_void,
) {
    let (fs, tx) = *Box::from_raw(data as *mut (usize, mpsc::Sender<c_int>));
    let _ = tx.send(glfs_fini(fs as *mut glfs_t));
}

#[test]
fn fini_from_a_callback_does_not_deadlock() {
    let env = Env::new();
    let (tx, rx) = mpsc::channel::<c_int>();
    unsafe {
        let fs = mount(env.dir.path(), "vol").unwrap();
        let fd = glfs_creat(fs, c("/f").as_ptr(), libc::O_RDWR, 0o644);
        let cookie = Box::into_raw(Box::new((fs as usize, tx))) as *mut c_void;
        assert_eq!(glfs_fsync_async(fd, Some(fini_in_callback), cookie), 0);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
        // The instance is gone: new submissions on its fds are refused.
        assert_eq!(
            glfs_fsync_async(fd, Some(on_done), std::ptr::null_mut()),
            -1
        );
        glfs_close(fd);
    }
}

#[test]
fn vectored_io_sync_and_async() {
    let env = Env::new();
    let (tx, rx) = mpsc::channel::<Completion>();
    unsafe {
        let fd = env.creat("/v");
        let a = [1u8; 100];
        let b = [2u8; 28];
        let iov = [
            libc::iovec {
                iov_base: a.as_ptr() as *mut c_void,
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: b.as_ptr() as *mut c_void,
                iov_len: b.len(),
            },
        ];
        assert_eq!(glfs_pwritev(fd, iov.as_ptr(), 2, 512, 0), 128);
        let mut x = [0u8; 64];
        let mut y = [0u8; 64];
        let riov = [
            libc::iovec {
                iov_base: x.as_mut_ptr() as *mut c_void,
                iov_len: 64,
            },
            libc::iovec {
                iov_base: y.as_mut_ptr() as *mut c_void,
                iov_len: 64,
            },
        ];
        // The iovec array may go away after submission (gfapi copies it).
        let riov_copy = riov.to_vec();
        assert_eq!(
            glfs_preadv_async(fd, riov_copy.as_ptr(), 2, 512, 0, Some(on_done), token(&tx)),
            0
        );
        drop(riov_copy);
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(d.ret, 128);
        assert_eq!(x, [1u8; 64]);
        assert_eq!(&y[..36], &[1u8; 36]);
        assert_eq!(&y[36..], &[2u8; 28]);
        assert_eq!(
            glfs_pwritev_async(fd, iov.as_ptr(), 2, 0, 0, Some(on_done), token(&tx)),
            0
        );
        let w = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((w.ret, w.pre.unwrap().glfs_st_size), (128, 640));
        assert_eq!(glfs_readv(fd, riov.as_ptr(), 1, 0), 64);
        glfs_close(fd);
    }
}

#[test]
fn fini_of_another_mount_from_a_callback_waits_for_its_in_flight_ops() {
    let a = Env::new();
    let b = Env::new();
    b.rules("[[rule]]\nop = 'write'\ndelay_ms = 300\n");
    let (tx, rx) = mpsc::channel::<Completion>();
    let (ftx, frx) = mpsc::channel::<c_int>();
    unsafe {
        let fb = b.creat("/slow");
        let buf = vec![3u8; 512];
        assert_eq!(
            glfs_pwrite_async(
                fb,
                buf.as_ptr() as *const c_void,
                512,
                0,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        let fa = a.creat("/f");
        let cookie = Box::into_raw(Box::new((b.fs as usize, ftx))) as *mut c_void;
        assert_eq!(glfs_fsync_async(fa, Some(fini_in_callback), cookie), 0);
        assert_eq!(frx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
        // fini(b) returned only after b's write and its callback were done.
        let w = rx
            .try_recv()
            .expect("b's callback ran before glfs_fini(b) returned");
        assert_eq!(w.ret, 512);
        assert_eq!(pread(fb, 1, 0), Err(libc::EBADF));
        glfs_close(fa);
        glfs_close(fb);
    }
}

#[test]
fn fini_from_its_own_callback_waits_for_the_others_and_finalizes() {
    let env = Env::new();
    env.rules("[[rule]]\nop = 'write'\npath = '/slow'\ndelay_ms = 300\n");
    let (tx, rx) = mpsc::channel::<Completion>();
    let (ftx, frx) = mpsc::channel::<c_int>();
    unsafe {
        let slow = env.creat("/slow");
        let f = env.creat("/f");
        let buf = vec![3u8; 512];
        assert_eq!(
            glfs_pwrite_async(
                slow,
                buf.as_ptr() as *const c_void,
                512,
                0,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        let cookie = Box::into_raw(Box::new((env.fs as usize, ftx))) as *mut c_void;
        assert_eq!(glfs_fsync_async(f, Some(fini_in_callback), cookie), 0);
        assert_eq!(frx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
        let w = rx
            .try_recv()
            .expect("the other op completed before glfs_fini returned");
        assert_eq!(w.ret, 512);
        // The instance is finalized: its fds are EBADF.
        assert_eq!(pread(f, 1, 0), Err(libc::EBADF));
        assert_eq!(pwrite(slow, b"x", 0), -1);
        assert_eq!(errno(), libc::EBADF);
        glfs_close(f);
        glfs_close(slow);
    }
}

#[test]
fn readdir_r_copies_only_the_record_not_a_whole_dirent() {
    let env = Env::new();
    unsafe {
        glfs_close(env.creat("/a"));
        let d = glfs_opendir(env.fs, c("/").as_ptr());
        assert!(!d.is_null());
        let mut names = Vec::new();
        loop {
            let mut entry: libc::dirent = std::mem::zeroed();
            std::ptr::write_bytes(
                &mut entry as *mut libc::dirent as *mut u8,
                0xaa,
                std::mem::size_of::<libc::dirent>(),
            );
            let mut res: *mut libc::dirent = std::ptr::null_mut();
            assert_eq!(glfs_readdir_r(d, &mut entry, &mut res), 0);
            if res.is_null() {
                break;
            }
            assert_eq!(res, &mut entry as *mut libc::dirent);
            let name = CStr::from_ptr(entry.d_name.as_ptr()).to_bytes().to_vec();
            // Past the name's NUL the caller's buffer is untouched: nothing beyond the
            // record readdir returned was read.
            let tail = &entry.d_name[name.len() + 1..];
            assert!(
                tail.iter().all(|&b| b as u8 == 0xaa),
                "bytes after {:?} were overwritten",
                String::from_utf8_lossy(&name)
            );
            names.push(String::from_utf8(name).unwrap());
        }
        names.sort();
        assert_eq!(names, [".", "..", "a"]);
        glfs_closedir(d);
    }
}

#[test]
fn stale_fds_stay_ebadf_across_many_open_close_cycles() {
    let env = Env::new();
    unsafe {
        let mut stale = std::collections::HashSet::new();
        for _ in 0..5000 {
            let fd = env.creat("/cycle");
            assert_eq!(glfs_close(fd), 0);
            stale.insert(fd as usize);
        }
        assert_eq!(stale.len(), 5000, "every open got a handle of its own");
        let live: Vec<*mut glfs_fd_t> = (0..64).map(|_| env.creat("/live")).collect();
        for &fd in &live {
            assert!(
                !stale.contains(&(fd as usize)),
                "a closed handle was reused"
            );
            assert_eq!(pwrite(fd, b"ok", 0), 2);
        }
        for &s in &stale {
            let s = s as *mut glfs_fd_t;
            assert_eq!(glfs_close(s), -1, "double close");
            assert_eq!(errno(), libc::EBADF);
            assert_eq!(pread(s, 1, 0), Err(libc::EBADF), "use after close");
        }
        for &fd in &live {
            assert_eq!(pread(fd, 2, 0).unwrap(), b"ok", "live fds untouched");
            assert_eq!(glfs_close(fd), 0);
        }
    }
}

#[test]
fn a_hung_read_does_not_block_lseek_on_the_same_fd() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        assert_eq!(pwrite(fd, &[9u8; 64], 0), 64);
        env.rules("[[rule]]\nop = 'read'\nhang = true\n");
        let fdu = fd as usize;
        let (rtx, rrx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            let r = glfs_read(fdu as *mut glfs_fd_t, buf.as_mut_ptr().cast(), 16, 0);
            rtx.send(r).unwrap();
        });
        assert!(
            rrx.recv_timeout(Duration::from_millis(200)).is_err(),
            "read hangs"
        );
        let (ltx, lrx) = mpsc::channel();
        std::thread::spawn(move || {
            ltx.send(glfs_lseek(fdu as *mut glfs_fd_t, 10, libc::SEEK_SET))
                .unwrap();
        });
        assert_eq!(
            lrx.recv_timeout(Duration::from_secs(2)),
            Ok(10),
            "lseek returns while the read hangs"
        );
        env.clear_rules();
        assert_eq!(rrx.recv_timeout(Duration::from_secs(5)).unwrap(), 16);
        // As gfapi: the read sets the offset to where it started plus what it read.
        assert_eq!(glfs_lseek(fd, 0, libc::SEEK_CUR), 16);
        glfs_close(fd);
    }
}

#[test]
fn async_submission_fails_with_eagain_when_no_pool_thread_can_start() {
    fn no_threads(_: &'static crate::pool::Pool) -> std::io::Result<()> {
        Err(std::io::Error::other("no threads"))
    }
    let env = Env::new();
    let (tx, rx) = mpsc::channel::<Completion>();
    unsafe {
        let fs = mount(env.dir.path(), "vol").unwrap();
        let fd = glfs_creat(fs, c("/f").as_ptr(), libc::O_RDWR, 0o644);
        let p: &'static crate::pool::Pool =
            Box::leak(Box::new(crate::pool::Pool::new(4, no_threads)));
        crate::pool::use_on_this_thread(Some(p));
        let r = glfs_fsync_async(fd, Some(on_done), token(&tx));
        let e = errno();
        crate::pool::use_on_this_thread(None);
        assert_eq!((r, e), (-1, libc::EAGAIN));
        assert_eq!(gfapi_fake_inflight(fs), 0, "in-flight count restored");
        assert!(
            rx.try_recv().is_err(),
            "no callback for a refused submission"
        );
        let fsu = fs as usize;
        let (ftx, frx) = mpsc::channel();
        std::thread::spawn(move || ftx.send(glfs_fini(fsu as *mut glfs_t)).unwrap());
        assert_eq!(
            frx.recv_timeout(Duration::from_secs(5)),
            Ok(0),
            "fini returns"
        );
        glfs_close(fd);
    }
}

#[test]
fn more_hung_async_ops_than_pool_threads_do_not_stall_others() {
    let env = Env::new();
    let (tx, rx) = mpsc::channel::<Completion>();
    unsafe {
        let hung = env.creat("/hung");
        let other = env.creat("/other");
        env.rules("[[rule]]\nop = 'read'\npath = '/hung'\nhang = true\n");
        // Releases the hangs also when an assertion fails (else fini would wait forever).
        struct Release<'a>(&'a Env);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.clear_rules();
            }
        }
        let release = Release(&env);
        let n = crate::pool::MAX_WORKERS + 6;
        let mut bufs = vec![[0u8; 8]; n];
        for b in bufs.iter_mut() {
            assert_eq!(
                glfs_pread_async(
                    hung,
                    b.as_mut_ptr().cast(),
                    8,
                    0,
                    0,
                    Some(on_done),
                    token(&tx)
                ),
                0
            );
        }
        let buf = [1u8; 8];
        assert_eq!(
            glfs_pwrite_async(
                other,
                buf.as_ptr().cast(),
                8,
                0,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        let w = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a write completes while every hung read holds a thread");
        assert_eq!(w.ret, 8);
        // The write's count drops just after its callback returned.
        let t = Instant::now();
        while gfapi_fake_inflight(env.fs) != n as c_int && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            gfapi_fake_inflight(env.fs),
            n as c_int,
            "the reads still hang"
        );
        drop(release);
        for _ in 0..n {
            let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(r.ret, 0, "reads of an empty file return 0 once released");
        }
        glfs_close(hung);
        glfs_close(other);
    }
}

#[test]
fn negative_offsets_on_vectored_async_io_are_reported_through_the_callback() {
    let env = Env::new();
    let (tx, rx) = mpsc::channel::<Completion>();
    unsafe {
        let fd = env.creat("/v");
        let mut a = [0u8; 16];
        let iov = [libc::iovec {
            iov_base: a.as_mut_ptr().cast(),
            iov_len: a.len(),
        }];
        // Read: EINVAL in the callback, like glfs_pread_async.
        assert_eq!(
            glfs_preadv_async(fd, iov.as_ptr(), 1, -1, 0, Some(on_done), token(&tx)),
            0
        );
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((r.ret, r.errno), (-1, libc::EINVAL));
        assert_eq!(
            glfs_pread_async(
                fd,
                a.as_mut_ptr().cast(),
                16,
                -1,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        let p = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((p.ret, p.errno), (r.ret, r.errno), "same as pread_async");
        // Write: accepted like glfs_pwrite_async; the brick's EINVAL comes at the next sync.
        assert_eq!(
            glfs_pwritev_async(fd, iov.as_ptr(), 1, -1, 0, Some(on_done), token(&tx)),
            0
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().ret, 16);
        assert_eq!(sync(fd), Err(libc::EINVAL));
        glfs_close(fd);
    }
}

#[test]
fn rename_errors_match_gluster() {
    let env = Env::new();
    unsafe {
        glfs_close(env.creat("/f"));
        glfs_close(env.creat("/g"));
        assert_eq!(glfs_mkdir(env.fs, c("/d").as_ptr(), 0o755), 0);
        assert_eq!(glfs_mkdir(env.fs, c("/e").as_ptr(), 0o755), 0);
        let rename = |a: &str, b: &str| {
            if glfs_rename(env.fs, c(a).as_ptr(), c(b).as_ptr()) == 0 {
                Ok(())
            } else {
                Err(errno())
            }
        };
        // A directory onto a file: EISDIR on Gluster 10.3 (rename(2) says ENOTDIR).
        assert_eq!(rename("/d", "/f"), Err(libc::EISDIR));
        assert_eq!(rename("/f", "/d"), Err(libc::EISDIR));
        assert_eq!(rename("/missing", "/z"), Err(libc::ENOENT));
        assert_eq!(rename("/f", "/g"), Ok(()), "onto an existing file");
        assert!(!env.host("/f").exists());
        assert_eq!(rename("/d", "/e"), Ok(()), "onto an empty directory");
        assert!(env.host("/e").is_dir() && !env.host("/d").exists());
    }
}

#[test]
fn init_refuses_volume_names_leaving_the_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::create_dir_all(dir.path().join(".hidden")).unwrap();
    for name in ["", ".", "..", ".hidden", "a/b", "/a", "../x"] {
        assert_eq!(
            mount(dir.path(), name).err(),
            Some(libc::EINVAL),
            "{name:?}"
        );
    }
}

#[test]
fn offset_rules_never_match_operations_without_an_offset() {
    let env = Env::new();
    env.rules("[[rule]]\noffset = [0, 1000000]\nerrno = 'EIO'\n");
    unsafe {
        let fd = glfs_creat(env.fs, c("/f").as_ptr(), libc::O_RDWR, 0o644);
        assert!(!fd.is_null(), "creat has no offset");
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(glfs_stat(env.fs, c("/f").as_ptr(), &mut st), 0);
        assert_eq!(glfs_fstat(fd, &mut st), 0);
        assert_eq!(sync(fd), Ok(()));
        assert_eq!(pwrite(fd, b"x", 0), -1, "a write in the range");
        assert_eq!(errno(), libc::EIO);
        assert_eq!(pwrite(fd, b"x", 2_000_000), 1, "a write outside the range");
        assert_eq!(glfs_close(fd), 0);
    }
}

/// Which of `n` pwrites on a fresh fd fail (with the errno they fail with).
unsafe fn write_failures(env: &Env, path: &str, n: usize) -> Vec<Option<i32>> {
    let fd = env.creat(path);
    let out = (0..n)
        .map(|i| match pwrite(fd, b"x", i as i64) {
            1 => None,
            _ => Some(errno()),
        })
        .collect();
    glfs_close(fd);
    out
}

#[test]
fn probability_is_deterministic_per_seed() {
    let env = Env::new();
    let rules = |seed: u64, reconnect: u64| {
        format!(
            "seed = {seed}\nreconnect = {reconnect}\n[[rule]]\nop = 'write'\n\
             probability = 0.3\nerrno = 'EIO'\n"
        )
    };
    unsafe {
        env.rules(&rules(7, 1));
        let a = write_failures(&env, "/p", 400);
        // Rewritten with the same seed: counters restart, the same calls fail.
        env.rules(&rules(7, 2));
        let b = write_failures(&env, "/p", 400);
        env.rules(&rules(8, 3));
        let other = write_failures(&env, "/p", 400);
        let count = |v: &[Option<i32>]| v.iter().filter(|e| e.is_some()).count();
        assert!(a.iter().flatten().all(|&e| e == libc::EIO));
        assert_eq!(a, b, "same seed, same sequence of failures");
        assert_eq!(count(&a), count(&b));
        assert!(
            (80..=160).contains(&count(&a)),
            "about 30% of 400 fail: {}",
            count(&a)
        );
        assert_ne!(a, other, "another seed, another sequence");
        assert!((80..=160).contains(&count(&other)), "{}", count(&other));
    }
}

#[test]
fn short_applies_to_async_vectored_and_offset_io() {
    let env = Env::new();
    let (tx, rx) = mpsc::channel::<Completion>();
    unsafe {
        let fd = env.creat("/s");
        assert_eq!(pwrite(fd, &[7u8; 1000], 0), 1000);
        env.rules("[[rule]]\nop = ['read', 'write']\nshort = 100\n");
        let data = [5u8; 1000];
        assert_eq!(
            glfs_pwrite_async(
                fd,
                data.as_ptr().cast(),
                1000,
                2000,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().ret, 100);
        assert_eq!(std::fs::metadata(env.host("/s")).unwrap().len(), 2100);
        let mut buf = [0u8; 1000];
        assert_eq!(
            glfs_pread_async(
                fd,
                buf.as_mut_ptr().cast(),
                1000,
                0,
                0,
                Some(on_done),
                token(&tx)
            ),
            0
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().ret, 100);
        assert_eq!(&buf[..100], &[7u8; 100]);
        assert_eq!(&buf[100..], &[0u8; 900][..], "nothing past the short count");

        // Vectored, sync and async: the count is cut across the vectors.
        let (x, y) = ([1u8; 60], [2u8; 60]);
        let wiov = [
            libc::iovec {
                iov_base: x.as_ptr() as *mut c_void,
                iov_len: 60,
            },
            libc::iovec {
                iov_base: y.as_ptr() as *mut c_void,
                iov_len: 60,
            },
        ];
        assert_eq!(glfs_pwritev(fd, wiov.as_ptr(), 2, 4000, 0), 100);
        assert_eq!(
            glfs_pwritev_async(fd, wiov.as_ptr(), 2, 5000, 0, Some(on_done), token(&tx)),
            0
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().ret, 100);
        let (mut p, mut q) = ([0u8; 60], [0u8; 60]);
        let riov = [
            libc::iovec {
                iov_base: p.as_mut_ptr().cast(),
                iov_len: 60,
            },
            libc::iovec {
                iov_base: q.as_mut_ptr().cast(),
                iov_len: 60,
            },
        ];
        assert_eq!(glfs_preadv(fd, riov.as_ptr(), 2, 4000, 0), 100);
        assert_eq!((p, &q[..40]), ([1u8; 60], &[2u8; 40][..]));
        assert_eq!(
            glfs_preadv_async(fd, riov.as_ptr(), 2, 5000, 0, Some(on_done), token(&tx)),
            0
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().ret, 100);
        env.clear_rules();
        assert_eq!(
            pread(fd, 200, 4000).unwrap()[100..],
            [0u8; 100][..],
            "pwritev wrote 100"
        );
        assert_eq!(
            pread(fd, 200, 5000).unwrap().len(),
            100,
            "async pwritev wrote 100"
        );

        // glfs_read/glfs_write: the offset advances by the short count.
        env.rules("reconnect = 1\n[[rule]]\nop = ['read', 'write']\nshort = 100\n");
        assert_eq!(glfs_lseek(fd, 0, libc::SEEK_SET), 0);
        assert_eq!(glfs_write(fd, data.as_ptr().cast(), 1000, 0), 100);
        assert_eq!(glfs_lseek(fd, 0, libc::SEEK_CUR), 100);
        assert_eq!(glfs_read(fd, buf.as_mut_ptr().cast(), 1000, 0), 100);
        assert_eq!(glfs_lseek(fd, 0, libc::SEEK_CUR), 200);
        glfs_close(fd);
    }
}

#[test]
fn volume_after_and_count_filters() {
    let env = Env::new();
    std::fs::create_dir(env.dir.path().join("other")).unwrap();
    let other = mount(env.dir.path(), "other").unwrap();
    env.rules("[[rule]]\nop = 'write'\nvolume = 'other'\nafter = 2\ncount = 2\nerrno = 'EROFS'\n");
    unsafe {
        let mine = env.creat("/f");
        let theirs = glfs_creat(other, c("/f").as_ptr(), libc::O_RDWR, 0o644);
        assert!(!theirs.is_null());
        let mut got = Vec::new();
        for i in 0..6 {
            // Writes on "vol" never match, so they neither fail nor count.
            assert_eq!(pwrite(mine, b"x", i), 1);
            got.push(match pwrite(theirs, b"x", i) {
                1 => None,
                _ => Some(errno()),
            });
        }
        let e = Some(libc::EROFS);
        assert_eq!(got, [None, None, e, e, None, None]);
        glfs_close(mine);
        glfs_close(theirs);
        glfs_fini(other);
    }
}
