//! The write-behind model (`fs::Glfs::write_behind`): two mounts (`glfs_t`s) of one
//! volume, as two gateways have, and a rule with `write_behind = true`.

use crate::ffi::*;
use crate::tests::{c, errno, mount, pread, pwrite, sync, Env};
use libc::c_int;

/// Writes to files named `wb-*` are kept in the writing mount's write-behind cache.
const RULES: &str = "[[rule]]\nop = \"write\"\npath = \"/wb-*\"\nwrite_behind = true\n";

/// A second mount of the test's volume (another gateway's `glfs_t`).
fn other_mount(env: &Env) -> *mut glfs_t {
    mount(env.dir.path(), "vol").expect("second mount")
}

fn open(fs: *mut glfs_t, path: &str, flags: c_int) -> *mut glfs_fd_t {
    let fd = unsafe { glfs_open(fs, c(path).as_ptr(), flags) };
    assert!(!fd.is_null(), "open {path}: errno {}", errno());
    fd
}

fn strict_o_direct(fs: *mut glfs_t) {
    let r = unsafe {
        glfs_set_xlator_option(
            fs,
            c("*-write-behind").as_ptr(),
            c("strict-O_DIRECT").as_ptr(),
            c("on").as_ptr(),
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn a_cached_write_is_seen_by_other_mounts_only_after_a_flush() {
    let env = Env::new();
    env.rules(RULES);
    let other = other_mount(&env);
    let fd = env.creat("/wb-lun");
    let theirs = open(other, "/wb-lun", libc::O_RDWR);
    let data = vec![0xa5u8; 4096];
    unsafe {
        assert_eq!(pwrite(fd, &data, 8192), 4096, "acknowledged");
        // Not on the brick: the other mount and the backing file see nothing yet.
        assert_eq!(pread(theirs, 4096, 8192).unwrap(), Vec::<u8>::new());
        assert_eq!(std::fs::metadata(env.host("/wb-lun")).unwrap().len(), 0);
        // The writing mount reads its own write (the read waits for it to be wound,
        // which puts it on the brick).
        assert_eq!(pread(fd, 4096, 8192).unwrap(), data);
        assert_eq!(pread(theirs, 4096, 8192).unwrap(), data);

        // fdatasync flushes.
        let next = vec![0x3cu8; 4096];
        assert_eq!(pwrite(fd, &next, 0), 4096);
        assert_eq!(pread(theirs, 4096, 0).unwrap(), vec![0u8; 4096]);
        sync(fd).unwrap();
        assert_eq!(pread(theirs, 4096, 0).unwrap(), next);

        // close (flush) flushes too.
        let last = vec![0x77u8; 512];
        assert_eq!(pwrite(fd, &last, 512), 512);
        assert_eq!(pread(theirs, 512, 512).unwrap(), vec![0x3cu8; 512]);
        assert_eq!(glfs_close(fd), 0);
        assert_eq!(pread(theirs, 512, 512).unwrap(), last);
        assert_eq!(glfs_close(theirs), 0);
        glfs_fini(other);
    }
}

#[test]
fn write_behind_is_opt_in_per_rule() {
    let env = Env::new();
    env.rules(RULES);
    let other = other_mount(&env);
    // Not a `wb-*` file: written through, as without the rule.
    let fd = env.creat("/plain");
    let theirs = open(other, "/plain", libc::O_RDONLY);
    unsafe {
        assert_eq!(pwrite(fd, &[9u8; 512], 0), 512);
        assert_eq!(pread(theirs, 512, 0).unwrap(), vec![9u8; 512]);
        glfs_close(theirs);
        glfs_close(fd);
        glfs_fini(other);
    }
}

#[test]
fn o_dsync_and_strict_o_direct_fds_pass_write_behind() {
    let env = Env::new();
    env.rules(RULES);
    let other = other_mount(&env);
    unsafe { glfs_close(env.creat("/wb-lun")) };
    let theirs = open(other, "/wb-lun", libc::O_RDONLY);
    let read_back = |off: i64| unsafe { pread(theirs, 512, off).unwrap() };
    unsafe {
        // O_DIRECT without strict-O_DIRECT: write-behind ignores the flag.
        let direct = open(env.fs, "/wb-lun", libc::O_RDWR | libc::O_DIRECT);
        assert_eq!(pwrite(direct, &[1u8; 512], 0), 512);
        assert_eq!(read_back(0), Vec::<u8>::new());
        assert_eq!(glfs_close(direct), 0);
        assert_eq!(read_back(0), vec![1u8; 512]);

        // O_DSYNC: always written through.
        let dsync = open(env.fs, "/wb-lun", libc::O_RDWR | libc::O_DSYNC);
        assert_eq!(pwrite(dsync, &[2u8; 512], 512), 512);
        assert_eq!(read_back(512), vec![2u8; 512]);
        glfs_close(dsync);

        // O_DIRECT on a mount with strict-O_DIRECT on: written through.
        let strict = mount(env.dir.path(), "vol").unwrap();
        strict_o_direct(strict);
        let direct = open(strict, "/wb-lun", libc::O_RDWR | libc::O_DIRECT);
        assert_eq!(pwrite(direct, &[3u8; 512], 1024), 512);
        assert_eq!(read_back(1024), vec![3u8; 512]);
        // ... but a plain fd of that mount is still cached.
        let plain = open(strict, "/wb-lun", libc::O_RDWR);
        assert_eq!(pwrite(plain, &[4u8; 512], 1536), 512);
        assert_eq!(read_back(1536), Vec::<u8>::new(), "not on the brick yet");
        // A write that passes write-behind is ordered after the cached ones it
        // overlaps: they reach the brick first, so it is the one that stays.
        assert_eq!(pwrite(direct, &[5u8; 512], 1536), 512);
        assert_eq!(read_back(1536), vec![5u8; 512]);
        sync(plain).unwrap();
        assert_eq!(read_back(1536), vec![5u8; 512]);
        glfs_close(plain);
        glfs_close(direct);
        glfs_fini(strict);
        glfs_close(theirs);
        glfs_fini(other);
    }
}

#[test]
fn strict_o_direct_follows_the_last_setting_for_this_volume() {
    let env = Env::new();
    let m = mount_of(env.fs).unwrap();
    assert!(!m.strict_o_direct());
    strict_o_direct(env.fs);
    assert!(m.strict_o_direct());
    m.set_xlator_option("vol-write-behind", "strict-O_DIRECT", "off");
    assert!(!m.strict_o_direct());
    m.set_xlator_option("other-write-behind", "strict-O_DIRECT", "on");
    assert!(!m.strict_o_direct(), "another volume's translator");
    m.set_xlator_option("vol-write-behind", "strict-o_direct", "yes");
    assert!(m.strict_o_direct());
}

#[test]
fn a_cached_write_the_brick_refuses_is_reported_by_the_next_sync() {
    let env = Env::new();
    env.rules(RULES);
    let fd = env.creat("/wb-lun");
    let ro = open(env.fs, "/wb-lun", libc::O_RDONLY);
    unsafe {
        assert_eq!(pwrite(ro, &[1u8; 512], 0), 512, "acknowledged");
        assert_eq!(sync(ro), Err(libc::EBADF));
        assert_eq!(sync(ro), Ok(()), "reported once");
        assert_eq!(
            pread(fd, 512, 0).unwrap(),
            Vec::<u8>::new(),
            "nothing written"
        );
        glfs_close(ro);
        glfs_close(fd);
    }
}

#[test]
fn fini_flushes_the_cache() {
    let env = Env::new();
    env.rules(RULES);
    let fs = mount(env.dir.path(), "vol").unwrap();
    let fd = unsafe { glfs_creat(fs, c("/wb-lun").as_ptr(), libc::O_RDWR, 0o644) };
    assert!(!fd.is_null());
    unsafe {
        assert_eq!(pwrite(fd, &[6u8; 512], 0), 512);
        assert_eq!(
            std::fs::read(env.host("/wb-lun")).unwrap(),
            Vec::<u8>::new()
        );
        glfs_fini(fs);
    }
    assert_eq!(std::fs::read(env.host("/wb-lun")).unwrap(), vec![6u8; 512]);
}

#[test]
fn a_lost_connection_loses_the_cached_writes_and_the_next_sync_says_so() {
    let env = Env::new();
    env.rules(RULES);
    let fd = env.creat("/wb-lun");
    unsafe {
        assert_eq!(pwrite(fd, &[1u8; 512], 0), 512);
        sync(fd).unwrap();
        assert_eq!(pwrite(fd, &[2u8; 512], 0), 512, "acknowledged, cached");
        assert_eq!(pwrite(fd, &[3u8; 512], 512), 512, "acknowledged, cached");
        // The brick goes away before write-behind has wound them.
        env.rules(&format!(
            "{RULES}[[rule]]\nop = \"fstat\"\ndisconnect = true\ncount = 1\n"
        ));
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(glfs_fstat(fd, &mut st), -1);
        assert_eq!(errno(), libc::ENOTCONN);
        // Back (the rules file changed): the writes never reached the brick, and the
        // first sync of the inode through this mount reports it, once.
        env.rules(&format!("reconnect = 1\n{RULES}"));
        assert_eq!(pread(fd, 1024, 0).unwrap(), vec![1u8; 512]);
        assert_eq!(std::fs::read(env.host("/wb-lun")).unwrap(), vec![1u8; 512]);
        assert_eq!(sync(fd), Err(libc::ENOTCONN));
        assert_eq!(sync(fd), Ok(()));
        glfs_close(fd);
    }
    assert_eq!(std::fs::read(env.host("/wb-lun")).unwrap(), vec![1u8; 512]);
}

#[test]
fn writes_past_the_window_send_the_oldest_to_the_brick() {
    let env = Env::new();
    env.rules(RULES);
    let fd = env.creat("/wb-lun");
    let piece = 256 << 10;
    let on_brick = || std::fs::metadata(env.host("/wb-lun")).unwrap().len();
    unsafe {
        // Gluster's default window is 1 MB: four 256 KiB writes fit, a fifth is still
        // acknowledged early (the window was not exceeded before it) ...
        for i in 0..5u8 {
            assert_eq!(
                pwrite(fd, &vec![i + 1; piece], i as i64 * piece as i64),
                piece as isize
            );
        }
        assert_eq!(on_brick(), 0, "all five cached");
        // ... and the sixth finds 1.25 MB waiting: the oldest goes to the brick first.
        assert_eq!(
            pwrite(fd, &vec![6; piece], 5 * piece as i64),
            piece as isize
        );
        let host = std::fs::read(env.host("/wb-lun")).unwrap();
        assert_eq!(host, vec![1u8; piece], "only the oldest landed");
        sync(fd).unwrap();
        assert_eq!(on_brick(), 6 * piece as u64);
        glfs_close(fd);
    }
}

#[test]
fn the_window_follows_the_translators_cache_size() {
    let env = Env::new();
    env.rules(RULES);
    let m = mount_of(env.fs).unwrap();
    assert_eq!(m.write_behind_window(), 1 << 20, "Gluster's default");
    m.set_xlator_option("*-write-behind", "cache-size", "512KB");
    assert_eq!(m.write_behind_window(), 512 << 10);
    m.set_xlator_option("vol-write-behind", "window-size", "4MB");
    assert_eq!(
        m.write_behind_window(),
        4 << 20,
        "the alias, the last setting"
    );
    m.set_xlator_option("vol-write-behind", "cache-size", "100KB");
    assert_eq!(m.write_behind_window(), 512 << 10, "Gluster's minimum");
    m.set_xlator_option("vol-write-behind", "cache-size", "lots");
    assert_eq!(m.write_behind_window(), 1 << 20, "not a size: the default");
    m.set_xlator_option("*-write-behind", "cache-size", "655360");
    assert_eq!(m.write_behind_window(), 655360);

    let fd = env.creat("/wb-lun");
    let piece = 256 << 10;
    unsafe {
        for i in 0..3u8 {
            assert_eq!(
                pwrite(fd, &vec![i + 1; piece], i as i64 * piece as i64),
                piece as isize
            );
        }
        // 768 KiB cached before it is more than the 640 KiB window: the oldest lands.
        assert_eq!(
            pwrite(fd, &vec![4; piece], 3 * piece as i64),
            piece as isize
        );
        assert_eq!(
            std::fs::read(env.host("/wb-lun")).unwrap(),
            vec![1u8; piece]
        );
        glfs_close(fd);
    }
}
