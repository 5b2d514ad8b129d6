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
