//! Unit tests of the families beyond the data path: fault rules reach them, and
//! glfs_init/glfs_fini can be made slow or hang.

use crate::ffi::*;
use crate::tests::{c, errno, mount, Env};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn fault_rules_reach_attributes_xattrs_handles_and_locks() {
    let env = Env::new();
    unsafe {
        let fd = env.creat("/f");
        env.rules(
            "[[rule]]\nop = ['chmod', 'getxattr', 'setxattr', 'lookup', 'lock', 'link', \
             'readlink', 'chdir']\npath = '/f*'\nerrno = 'EIO'\n",
        );
        assert_eq!(
            crate::attrs::glfs_chmod(env.fs, c("/f").as_ptr(), 0o600),
            -1
        );
        assert_eq!(errno(), libc::EIO);
        assert_eq!(crate::attrs::glfs_fchmod(fd, 0o600), -1);
        assert_eq!(errno(), libc::EIO);
        let mut buf = [0u8; 8];
        let r = crate::xattr::glfs_getxattr(
            env.fs,
            c("/f").as_ptr(),
            c("user.k").as_ptr(),
            buf.as_mut_ptr().cast(),
            8,
        );
        assert_eq!((r, errno()), (-1, libc::EIO));
        let r = crate::xattr::glfs_fsetxattr(fd, c("user.k").as_ptr(), b"v".as_ptr().cast(), 1, 0);
        assert_eq!((r, errno()), (-1, libc::EIO));
        let o = crate::handles::glfs_h_lookupat(
            env.fs,
            std::ptr::null_mut(),
            c("/f").as_ptr(),
            std::ptr::null_mut(),
            0,
        );
        assert!(o.is_null());
        assert_eq!(errno(), libc::EIO);
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as i16;
        assert_eq!(
            crate::locks::glfs_posix_lock(fd, libc::F_SETLK, &mut fl),
            -1
        );
        assert_eq!(errno(), libc::EIO);
        assert_eq!(
            crate::attrs::glfs_link(env.fs, c("/f").as_ptr(), c("/g").as_ptr()),
            -1
        );
        assert_eq!(errno(), libc::EIO);
        // the rule's path does not match: untouched
        assert_eq!(crate::attrs::glfs_chdir(env.fs, c("/").as_ptr()), 0);

        env.clear_rules();
        assert_eq!(crate::attrs::glfs_chmod(env.fs, c("/f").as_ptr(), 0o600), 0);
        assert_eq!(crate::locks::glfs_posix_lock(fd, libc::F_SETLK, &mut fl), 0);
        let o = crate::handles::glfs_h_lookupat(
            env.fs,
            std::ptr::null_mut(),
            c("/f").as_ptr(),
            std::ptr::null_mut(),
            0,
        );
        assert!(!o.is_null());
        assert_eq!(crate::handles::glfs_h_close(o), 0);
        glfs_close(fd);
    }
}

#[test]
fn glfs_fini_hangs_until_the_rules_change_and_fails_with_an_injected_errno() {
    let env = Env::new();
    let second = mount(env.dir.path(), "vol").unwrap() as usize;
    env.rules("[[rule]]\nop = 'fini'\nhang = true\n");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = unsafe { glfs_fini(second as *mut glfs_t) };
        tx.send(r).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "glfs_fini still hung"
    );
    env.rules("[[rule]]\nop = 'fini'\nerrno = 'EIO'\n");
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), 0);
    // the EIO rule now applies to the next fini, which still frees the instance
    let third = mount(env.dir.path(), "vol").unwrap();
    unsafe {
        assert_eq!(glfs_fini(third), -1);
        assert_eq!(errno(), libc::EIO);
        assert_eq!(glfs_fini(third), -1);
        assert_eq!(errno(), libc::EINVAL);
    }
    env.clear_rules();
}

#[test]
fn glfs_init_can_be_slowed_or_hung() {
    let env = Env::new();
    env.rules("[[rule]]\nop = 'init'\nhang = true\n");
    let root = env.dir.path().to_path_buf();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = mount(&root, "vol").map(|fs| fs as usize);
        tx.send(r).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "glfs_init still hung"
    );
    env.clear_rules();
    let fs = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
    unsafe { assert_eq!(glfs_fini(fs as *mut glfs_t), 0) };
}

/// F_SETLK of `l_type` on bytes 0..10 through `fd`: (result, errno).
unsafe fn setlk(fd: *mut glfs_fd_t, l_type: i32, mandatory: bool) -> (i32, i32) {
    let mut fl: libc::flock = std::mem::zeroed();
    fl.l_type = l_type as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_len = 10;
    let mode = i32::from(mandatory);
    let r = crate::locks::glfs_file_lock(fd, libc::F_SETLK, &mut fl, mode);
    (r, if r == 0 { 0 } else { errno() })
}

unsafe fn open_rw(fs: *mut glfs_t, p: &str) -> *mut glfs_fd_t {
    let fd = glfs_open(fs, c(p).as_ptr(), libc::O_RDWR);
    assert!(!fd.is_null(), "open {p}: errno {}", errno());
    fd
}

unsafe fn set_owner(fd: *mut glfs_fd_t, owner: &[u8]) {
    let r = crate::locks::glfs_fd_set_lkowner(fd, owner.as_ptr() as *mut _, owner.len() as i32);
    assert_eq!(r, 0, "set_lkowner: errno {}", errno());
}

#[test]
fn fds_with_one_lock_owner_share_their_locks_and_other_owners_conflict() {
    let env = Env::new();
    unsafe {
        let a = env.creat("/f");
        let b = open_rw(env.fs, "/f");
        let c_ = open_rw(env.fs, "/f");
        let plain = open_rw(env.fs, "/f");
        set_owner(a, b"gateway-1");
        set_owner(b, b"gateway-1");
        set_owner(c_, b"gateway-2");

        assert_eq!(setlk(a, libc::F_WRLCK, false), (0, 0));
        // the same owner through another fd: its own lock, taken again
        assert_eq!(setlk(b, libc::F_WRLCK, false), (0, 0));
        // another owner, and an fd without an owner, conflict
        assert_eq!(setlk(c_, libc::F_WRLCK, false), (-1, libc::EAGAIN));
        assert_eq!(setlk(plain, libc::F_RDLCK, false), (-1, libc::EAGAIN));
        // F_GETLK through the owner's other fd sees no conflict; the other owner does
        let mut q: libc::flock = std::mem::zeroed();
        q.l_type = libc::F_WRLCK as i16;
        q.l_len = 10;
        assert_eq!(crate::locks::glfs_posix_lock(b, libc::F_GETLK, &mut q), 0);
        assert_eq!(q.l_type, libc::F_UNLCK as i16);
        q.l_type = libc::F_WRLCK as i16;
        assert_eq!(crate::locks::glfs_posix_lock(c_, libc::F_GETLK, &mut q), 0);
        assert_eq!(q.l_type, libc::F_WRLCK as i16);

        // unlocking through any fd of the owner releases its lock
        assert_eq!(setlk(b, libc::F_UNLCK, false), (0, 0));
        assert_eq!(setlk(c_, libc::F_WRLCK, false), (0, 0));
        assert_eq!(setlk(c_, libc::F_UNLCK, false), (0, 0));
        // closing any fd of the owner releases all the owner's locks (Gluster's flush),
        // also those taken through its other fds
        assert_eq!(setlk(b, libc::F_WRLCK, false), (0, 0));
        assert_eq!(glfs_close(a), 0);
        assert_eq!(setlk(c_, libc::F_WRLCK, false), (0, 0));
        assert_eq!(setlk(c_, libc::F_UNLCK, false), (0, 0));
        // an unknown lock mode is advisory (as Gluster 10.3 takes it)
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as i16;
        fl.l_start = 500;
        fl.l_len = 10;
        assert_eq!(
            crate::locks::glfs_file_lock(b, libc::F_SETLK, &mut fl, 7),
            0
        );
        fl.l_type = libc::F_UNLCK as i16;
        assert_eq!(
            crate::locks::glfs_file_lock(b, libc::F_SETLK, &mut fl, 7),
            0
        );

        // the same owner on another glfs_t is another client: they conflict
        let fs2 = mount(env.dir.path(), "vol").unwrap();
        let other = open_rw(fs2, "/f");
        set_owner(other, b"gateway-1");
        assert_eq!(setlk(b, libc::F_WRLCK, false), (0, 0));
        assert_eq!(setlk(other, libc::F_WRLCK, false), (-1, libc::EAGAIN));
        // the owner's last fd closes: its locks go
        assert_eq!(glfs_close(b), 0);
        assert_eq!(setlk(other, libc::F_WRLCK, false), (0, 0));
        assert_eq!(glfs_close(other), 0);
        glfs_fini(fs2);

        // a mandatory lock of an owner: its fds read and write, others are refused
        let d = open_rw(env.fs, "/f");
        let e = open_rw(env.fs, "/f");
        set_owner(d, b"gateway-3");
        set_owner(e, b"gateway-3");
        assert_eq!(setlk(d, libc::F_WRLCK, true), (0, 0));
        let buf = *b"abcd";
        let w = |fd| {
            glfs_pwrite(
                fd,
                buf.as_ptr().cast(),
                4,
                0,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(w(e), 4);
        assert_eq!((w(plain), errno()), (-1, libc::EAGAIN));
        assert_eq!(setlk(e, libc::F_UNLCK, true), (0, 0));
        assert_eq!(w(plain), 4);

        // a write lock through a read-only fd is refused, owner or not
        let ro = glfs_open(env.fs, c("/f").as_ptr(), libc::O_RDONLY);
        set_owner(ro, b"gateway-3");
        assert_eq!(setlk(ro, libc::F_WRLCK, false), (-1, libc::EBADF));
        for fd in [ro, d, e, c_, plain] {
            assert_eq!(glfs_close(fd), 0);
        }
    }
}

/// `glfs_fgetxattr` of `key` through `fd`: the answer, or the errno.
unsafe fn fgetxattr(fd: *mut glfs_fd_t, key: &str) -> Result<String, i32> {
    let mut buf = [0u8; 256];
    let r = crate::xattr::glfs_fgetxattr(fd, c(key).as_ptr(), buf.as_mut_ptr().cast(), 256);
    if r < 0 {
        return Err(errno());
    }
    Ok(String::from_utf8_lossy(&buf[..r as usize]).into_owned())
}

#[test]
fn clear_locks_drops_another_clients_lock_on_exactly_that_range() {
    let env = Env::new();
    unsafe {
        // client A (a mount of its own) holds a mandatory write lock on 0..10 and an
        // advisory one on 100..101, and then does nothing (a stalled gateway)
        let a = env.creat("/f");
        assert_eq!(
            glfs_ftruncate(a, 4096, std::ptr::null_mut(), std::ptr::null_mut()),
            0
        );
        let fs_b = mount(env.dir.path(), "vol").unwrap();
        let b = open_rw(fs_b, "/f");
        assert_eq!(setlk(a, libc::F_WRLCK, true), (0, 0));
        let mut adv: libc::flock = std::mem::zeroed();
        adv.l_type = libc::F_WRLCK as i16;
        adv.l_start = 100;
        adv.l_len = 1;
        assert_eq!(crate::locks::glfs_posix_lock(a, libc::F_SETLK, &mut adv), 0);
        assert_eq!(write4(b, b'b'), -libc::EAGAIN);
        assert_eq!(setlk(b, libc::F_WRLCK, true), (-1, libc::EAGAIN));

        // another range than the lock's clears nothing; neither do bad requests
        assert_eq!(
            fgetxattr(b, "glusterfs.clrlk.tposix.kgranted.0,0-9").as_deref(),
            Ok("No locks cleared.")
        );
        assert_eq!(
            fgetxattr(b, "glusterfs.clrlk.tinode.kgranted").as_deref(),
            Ok("No locks cleared.")
        );
        assert_eq!(
            fgetxattr(b, "glusterfs.clrlk.tinode.kgranted.0,0-0").as_deref(),
            Ok("No locks cleared.")
        );
        assert_eq!(
            fgetxattr(b, "glusterfs.clrlk.tinode.kgranted.0,0"),
            Err(libc::EINVAL)
        );
        assert_eq!(
            fgetxattr(b, "glusterfs.clrlk.tposix.kgranted"),
            Err(libc::EINVAL)
        );
        assert_eq!(
            fgetxattr(b, "glusterfs.clrlk.tposix.kwhatever.0,0-10"),
            Err(libc::EINVAL)
        );
        assert_eq!(write4(b, b'b'), -libc::EAGAIN);

        // B clears A's mandatory lock (the answer as the brick words it) and takes it
        let answer = fgetxattr(b, "glusterfs.clrlk.tposix.kgranted.0,0-10").unwrap();
        assert!(
            answer.ends_with("posix blocked locks=0 granted locks=1"),
            "{answer}"
        );
        assert_eq!(
            fgetxattr(b, "glusterfs.clrlk.tposix.kgranted.0,0-10").as_deref(),
            Ok("No locks cleared.")
        );
        assert_eq!(setlk(b, libc::F_WRLCK, true), (0, 0));
        assert_eq!(write4(b, b'b'), 4);
        // A, resumed, is fenced out: its writes and reads are refused, its lock request too
        assert_eq!(write4(a, b'a'), -libc::EAGAIN);
        let mut buf = [0u8; 4];
        let r = glfs_pread(a, buf.as_mut_ptr().cast(), 4, 0, 0, std::ptr::null_mut());
        assert_eq!((r, errno()), (-1, libc::EAGAIN));
        assert_eq!(setlk(a, libc::F_WRLCK, true), (-1, libc::EAGAIN));
        // A's advisory lock on another range was not touched
        let mut q: libc::flock = std::mem::zeroed();
        q.l_type = libc::F_WRLCK as i16;
        q.l_start = 100;
        q.l_len = 1;
        assert_eq!(crate::locks::glfs_posix_lock(b, libc::F_GETLK, &mut q), 0);
        assert_eq!(q.l_type, libc::F_WRLCK as i16);
        // A letting go of what it no longer holds does not free B's lock
        assert_eq!(setlk(a, libc::F_UNLCK, true), (0, 0));
        assert_eq!(write4(a, b'a'), -libc::EAGAIN);
        // cleared again: the next generation; B's lock goes, A may take it
        let answer = fgetxattr(a, "glusterfs.clrlk.tposix.kall.0,0-10").unwrap();
        assert!(answer.ends_with("granted locks=1"), "{answer}");
        assert_eq!(setlk(a, libc::F_WRLCK, true), (0, 0));
        assert_eq!(write4(a, b'a'), 4);
        assert_eq!(write4(b, b'b'), -libc::EAGAIN);
        // closing A's fd lets go of the lock on the range file
        assert_eq!(glfs_close(a), 0);
        assert_eq!(write4(b, b'b'), 4);
        assert_eq!(glfs_close(b), 0);
        glfs_fini(fs_b);
    }
}

#[test]
fn a_disconnected_mounts_unlock_fails_but_its_lock_is_gone() {
    let env = Env::new();
    unsafe {
        let a = env.creat("/f");
        let fs_b = mount(env.dir.path(), "vol").unwrap();
        let b = open_rw(fs_b, "/f");
        assert_eq!(setlk(a, libc::F_WRLCK, true), (0, 0));
        assert_eq!(setlk(b, libc::F_WRLCK, true), (-1, libc::EAGAIN));
        // A's next write loses A's connection (one rule match: only A's mount).
        env.rules("[[rule]]\nop = 'write'\ndisconnect = true\ncount = 1\n");
        let buf = *b"abcd";
        let r = glfs_pwrite(
            a,
            buf.as_ptr().cast(),
            4,
            0,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        assert_eq!((r, errno()), (-1, libc::ENOTCONN));
        // Gluster drops a lost connection's locks: A's unlock fails, the lock is gone.
        assert_eq!(setlk(a, libc::F_UNLCK, true), (-1, libc::ENOTCONN));
        assert_eq!(setlk(b, libc::F_WRLCK, true), (0, 0));
        // Any other lock request of A's fails and takes nothing.
        assert_eq!(setlk(a, libc::F_WRLCK, true), (-1, libc::ENOTCONN));
        env.clear_rules();
        assert_eq!(setlk(a, libc::F_WRLCK, true), (-1, libc::EAGAIN));
        assert_eq!(glfs_close(a), 0);
        assert_eq!(glfs_close(b), 0);
        glfs_fini(fs_b);
    }
}

/// Four bytes `byte` written at offset 0 through `fd`: the count written, or minus errno.
unsafe fn write4(fd: *mut glfs_fd_t, byte: u8) -> i32 {
    let buf = [byte; 4];
    let r = glfs_pwrite(
        fd,
        buf.as_ptr().cast(),
        4,
        0,
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    if r < 0 {
        -errno()
    } else {
        r as i32
    }
}

/// F_SETLKW of `l_type` on `[0, 10)` through `fd` (an address: raw pointers are not
/// `Send`) on a thread of its own: its result, sent when the request returns.
fn setlkw_on_thread(fd: usize, mandatory: bool) -> mpsc::Receiver<(i32, i32)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        fl.l_len = 10;
        let fd = fd as *mut glfs_fd_t;
        let r = crate::locks::glfs_file_lock(fd, libc::F_SETLKW, &mut fl, i32::from(mandatory));
        let _ = tx.send((r, if r == 0 { 0 } else { errno() }));
    });
    rx
}

#[test]
fn a_waiting_lock_request_is_granted_as_clear_locks_takes_the_lock_in_its_way() {
    let env = Env::new();
    unsafe {
        // A holds a mandatory write lock on 0..10 and stalls; B's request waits for it
        let a = env.creat("/f");
        assert_eq!(
            glfs_ftruncate(a, 4096, std::ptr::null_mut(), std::ptr::null_mut()),
            0
        );
        let fs_b = mount(env.dir.path(), "vol").unwrap();
        let b = open_rw(fs_b, "/f");
        let fs_c = mount(env.dir.path(), "vol").unwrap();
        let c_fd = open_rw(fs_c, "/f");
        assert_eq!(setlk(a, libc::F_WRLCK, true), (0, 0));
        let waiting = setlkw_on_thread(b as usize, true);
        assert!(
            waiting.recv_timeout(Duration::from_millis(300)).is_err(),
            "waits"
        );
        // A waiting request fences nobody: A still writes, C does not
        assert_eq!(write4(a, b'a'), 4);
        assert_eq!(write4(c_fd, b'c'), -libc::EAGAIN);
        // cleared: B holds it from then on, granted with no moment in between (C's
        // write right after the clearing is refused)
        let answer = fgetxattr(c_fd, "glusterfs.clrlk.tposix.kgranted.0,0-10").unwrap();
        assert!(answer.ends_with("granted locks=1"), "{answer}");
        assert_eq!(write4(c_fd, b'c'), -libc::EAGAIN);
        assert_eq!(waiting.recv_timeout(Duration::from_secs(5)), Ok((0, 0)));
        assert_eq!(write4(b, b'b'), 4);
        assert_eq!(write4(a, b'a'), -libc::EAGAIN);

        // C's request waits behind B's lock and is withdrawn by clear-locks of waiting
        // requests (EINTR); B keeps its lock
        let waiting = setlkw_on_thread(c_fd as usize, true);
        assert!(
            waiting.recv_timeout(Duration::from_millis(300)).is_err(),
            "waits"
        );
        let answer = fgetxattr(a, "glusterfs.clrlk.tposix.kblocked.0,0-10").unwrap();
        assert!(
            answer.ends_with("blocked locks=1 granted locks=0"),
            "{answer}"
        );
        assert_eq!(
            waiting.recv_timeout(Duration::from_secs(5)),
            Ok((-1, libc::EINTR))
        );
        assert_eq!(write4(b, b'b'), 4);
        assert_eq!(write4(c_fd, b'c'), -libc::EAGAIN);
        assert_eq!(
            fgetxattr(a, "glusterfs.clrlk.tposix.kblocked.0,0-10").as_deref(),
            Ok("No locks cleared.")
        );
        // a request waiting for a lock its holder lets go of gets it then
        let waiting = setlkw_on_thread(c_fd as usize, true);
        assert!(
            waiting.recv_timeout(Duration::from_millis(200)).is_err(),
            "waits"
        );
        assert_eq!(setlk(b, libc::F_UNLCK, true), (0, 0));
        assert_eq!(waiting.recv_timeout(Duration::from_secs(5)), Ok((0, 0)));
        assert_eq!(write4(c_fd, b'c'), 4);
        assert_eq!(write4(b, b'b'), -libc::EAGAIN);
        for fd in [a, b, c_fd] {
            glfs_close(fd);
        }
        glfs_fini(fs_b);
        glfs_fini(fs_c);
    }
}
