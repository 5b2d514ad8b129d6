//! glfs_copy_file_range on the fake: data, offsets, stats, errors and faults.

use crate::copy::glfs_copy_file_range;
use crate::ffi::*;
use crate::tests::{c, errno, mount, Env};
use std::ptr::null_mut;

unsafe fn copy(
    src: *mut glfs_fd_t,
    oi: i64,
    dst: *mut glfs_fd_t,
    oo: i64,
    len: usize,
) -> (isize, i64, i64) {
    let (mut i, mut o) = (oi, oo);
    let r = glfs_copy_file_range(
        src,
        &mut i,
        dst,
        &mut o,
        len,
        0,
        null_mut(),
        null_mut(),
        null_mut(),
    );
    (r, i, o)
}

#[test]
fn copies_between_backing_files_and_within_one() {
    let env = Env::new();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(env.host("/src"), &data).unwrap();
    unsafe {
        let src = glfs_open(env.fs, c("/src").as_ptr(), libc::O_RDWR);
        let dst = env.creat("/dst");
        assert_eq!(
            copy(src, 1000, dst, 4096, 100_000),
            (100_000, 101_000, 104_096)
        );
        let got = std::fs::read(env.host("/dst")).unwrap();
        assert_eq!(got.len(), 104_096);
        assert!(got[..4096].iter().all(|&b| b == 0));
        assert_eq!(&got[4096..], &data[1000..101_000]);
        // within one file, ranges apart
        assert_eq!(
            copy(src, 0, src, 150_000, 10_000),
            (10_000, 10_000, 160_000)
        );
        let got = std::fs::read(env.host("/src")).unwrap();
        assert_eq!(&got[150_000..160_000], &data[..10_000]);
        // overlapping ranges of one file: the kernel's EINVAL
        assert_eq!(copy(src, 0, src, 100, 1000).0, -1);
        assert_eq!(errno(), libc::EINVAL);
        glfs_close(src);
        glfs_close(dst);
    }
}

#[test]
fn stats_and_fd_offsets() {
    let env = Env::new();
    std::fs::write(env.host("/s"), b"abcdefgh").unwrap();
    unsafe {
        let src = glfs_open(env.fs, c("/s").as_ptr(), libc::O_RDONLY);
        let dst = env.creat("/d");
        let (mut st, mut pre, mut post): (glfs_stat, glfs_stat, glfs_stat) =
            (std::mem::zeroed(), std::mem::zeroed(), std::mem::zeroed());
        assert_eq!(glfs_lseek(src, 2, libc::SEEK_SET), 2);
        let r = glfs_copy_file_range(
            src,
            null_mut(),
            dst,
            null_mut(),
            4,
            0,
            &mut st,
            &mut pre,
            &mut post,
        );
        assert_eq!(r, 4);
        assert_eq!(
            (st.glfs_st_size, pre.glfs_st_size, post.glfs_st_size),
            (8, 0, 4)
        );
        assert_eq!(glfs_lseek(src, 0, libc::SEEK_CUR), 6);
        assert_eq!(glfs_lseek(dst, 0, libc::SEEK_CUR), 4);
        assert_eq!(std::fs::read(env.host("/d")).unwrap(), b"cdef");
        // at the end of the source: nothing, offsets unchanged
        let (r, i, o) = copy(src, 8, dst, 0, 10);
        assert_eq!((r, i, o), (0, 8, 0));
        glfs_close(src);
        glfs_close(dst);
    }
}

#[test]
fn refuses_other_mounts_directories_and_closed_fds() {
    let env = Env::new();
    std::fs::write(env.host("/s"), b"x").unwrap();
    std::fs::create_dir(env.host("/dir")).unwrap();
    unsafe {
        let src = glfs_open(env.fs, c("/s").as_ptr(), libc::O_RDONLY);
        let other = mount(env.dir.path(), "vol").unwrap();
        let dst = glfs_creat(other, c("/d").as_ptr(), libc::O_RDWR, 0o644);
        assert_eq!(copy(src, 0, dst, 0, 1).0, -1);
        assert_eq!(errno(), libc::EXDEV);
        let dir = glfs_opendir(env.fs, c("/dir").as_ptr());
        assert_eq!(copy(dir, 0, src, 0, 1).0, -1);
        assert_eq!(errno(), libc::EISDIR);
        glfs_closedir(dir);
        glfs_close(dst);
        assert_eq!(copy(src, 0, dst, 0, 1).0, -1);
        assert_eq!(errno(), libc::EBADF);
        glfs_close(src);
        glfs_fini(other);
    }
}

#[test]
fn faults_reach_copy_file_range() {
    let env = Env::new();
    std::fs::write(env.host("/s"), vec![7u8; 8192]).unwrap();
    unsafe {
        let src = glfs_open(env.fs, c("/s").as_ptr(), libc::O_RDONLY);
        let dst = env.creat("/d");
        env.rules("[[rule]]\nop = \"copy_file_range\"\npath = \"/d\"\nerrno = \"ENOSPC\"\n");
        assert_eq!(copy(src, 0, dst, 0, 8192).0, -1);
        assert_eq!(errno(), libc::ENOSPC);
        assert_eq!(std::fs::metadata(env.host("/d")).unwrap().len(), 0);
        env.rules("[[rule]]\nop = \"copy_file_range\"\npath = \"/s\"\nshort = 1000\n");
        assert_eq!(copy(src, 0, dst, 0, 8192), (1000, 1000, 1000));
        // a write fault does not touch the copy; the copy op alone is matched
        env.rules("[[rule]]\nop = \"write\"\nerrno = \"EIO\"\n");
        assert_eq!(copy(src, 1000, dst, 1000, 7192), (7192, 8192, 8192));
        env.clear_rules();
        assert_eq!(std::fs::read(env.host("/d")).unwrap(), vec![7u8; 8192]);
        glfs_close(src);
        glfs_close(dst);
    }
}
