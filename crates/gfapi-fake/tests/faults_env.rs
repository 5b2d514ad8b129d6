//! `GFAPI_FAKE_ROOT` and `GFAPI_FAKE_FAULTS` end to end, through the exported functions.
//! The only test of this binary: it sets process environment variables.

use gfapi_fake::ffi::*;
use std::ffi::CString;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

unsafe fn mount_from_env(vol: &str) -> Result<*mut glfs_t, i32> {
    let fs = glfs_new(c(vol).as_ptr());
    assert!(!fs.is_null());
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

unsafe fn pwrite(fd: *mut glfs_fd_t, data: &[u8], off: i64) -> Result<isize, i32> {
    let r = glfs_pwrite(
        fd,
        data.as_ptr().cast(),
        data.len(),
        off,
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

#[test]
fn the_faults_env_variable_names_the_rules_file() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("vol")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let rules = elsewhere.path().join("my-rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nop = 'write'\npath = '/lun'\nerrno = 'EROFS'\n",
    )
    .unwrap();
    // The root's own rules file is not read while GFAPI_FAKE_FAULTS names another.
    std::fs::write(
        root.path().join(gfapi_fake::FAULTS_FILE),
        "[[rule]]\nop = 'creat'\nerrno = 'EIO'\n",
    )
    .unwrap();
    std::env::set_var(gfapi_fake::ENV_ROOT, root.path());
    std::env::set_var(gfapi_fake::ENV_FAULTS, &rules);
    unsafe {
        let fs = mount_from_env("vol").expect("mount from GFAPI_FAKE_ROOT");
        let lun = glfs_creat(fs, c("/lun").as_ptr(), libc::O_RDWR, 0o644);
        assert!(
            !lun.is_null(),
            "the root's .faults.toml is ignored: errno {}",
            errno()
        );
        let other = glfs_creat(fs, c("/other").as_ptr(), libc::O_RDWR, 0o644);
        assert!(!other.is_null());
        assert_eq!(pwrite(lun, b"abc", 0), Err(libc::EROFS));
        assert_eq!(pwrite(other, b"abc", 0), Ok(3), "path filter");

        // Rewriting the named file changes the rules at once.
        let tmp = elsewhere.path().join("tmp.toml");
        std::fs::write(
            &tmp,
            "[[rule]]\nop = 'write'\npath = '/other'\nerrno = 28\n",
        )
        .unwrap();
        std::fs::rename(&tmp, &rules).unwrap();
        assert_eq!(pwrite(lun, b"abc", 0), Ok(3));
        assert_eq!(pwrite(other, b"abc", 0), Err(libc::ENOSPC));

        // Removing it removes every rule.
        std::fs::remove_file(&rules).unwrap();
        assert_eq!(pwrite(other, b"abc", 0), Ok(3));
        assert_eq!(glfs_close(lun), 0);
        assert_eq!(glfs_close(other), 0);
        assert_eq!(glfs_fini(fs), 0);

        // Without GFAPI_FAKE_FAULTS the root's .faults.toml applies.
        std::env::remove_var(gfapi_fake::ENV_FAULTS);
        let fs = mount_from_env("vol").unwrap();
        let f = glfs_creat(fs, c("/third").as_ptr(), libc::O_RDWR, 0o644);
        assert!(f.is_null());
        assert_eq!(errno(), libc::EIO);
        assert_eq!(glfs_fini(fs), 0);
    }
}
