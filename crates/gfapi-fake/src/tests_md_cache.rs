//! The md-cache model (`fs::Glfs::md_cache_get`): two mounts (`glfs_t`s) of one volume,
//! as two gateways have; one renames a new file over a name the other has looked up.

use crate::ffi::*;
use crate::tests::{c, errno, mount, pread, pwrite, Env};
use std::os::unix::fs::MetadataExt;

/// Lookups of `m-*` names by open, stat and lstat go through md-cache, whose volume
/// timeout (`performance.md-cache-timeout`) is 600 s: no entry runs out during a test.
const RULES: &str = "[[rule]]\nop = [\"open\", \"stat\", \"lstat\"]\npath = \"/m-*\"\n\
                     md_cache_timeout = 600\n";

fn other_mount(env: &Env) -> *mut glfs_t {
    mount(env.dir.path(), "vol").expect("second mount")
}

/// `path` created through `fs` with `data` (closed again).
unsafe fn put(fs: *mut glfs_t, path: &str, data: &[u8]) {
    let fd = glfs_creat(fs, c(path).as_ptr(), libc::O_RDWR | libc::O_TRUNC, 0o644);
    assert!(!fd.is_null(), "creat {path}: errno {}", errno());
    assert_eq!(pwrite(fd, data, 0), data.len() as isize);
    assert_eq!(glfs_close(fd), 0);
}

/// What `fs` reads from `path` opened by name (up to 64 bytes), or the errno of the open.
unsafe fn get(fs: *mut glfs_t, path: &str) -> Result<Vec<u8>, i32> {
    let fd = glfs_open(fs, c(path).as_ptr(), libc::O_RDONLY);
    if fd.is_null() {
        return Err(errno());
    }
    let data = pread(fd, 64, 0);
    assert_eq!(glfs_close(fd), 0);
    data
}

/// `glfs_stat` of `path` through `fs`: (inode, size).
unsafe fn stat(fs: *mut glfs_t, path: &str) -> (u64, i64) {
    let mut st: libc::stat = std::mem::zeroed();
    assert_eq!(
        glfs_stat(fs, c(path).as_ptr(), &mut st),
        0,
        "errno {}",
        errno()
    );
    (st.st_ino, st.st_size)
}

/// The other gateway's way of replacing a metadata object: a temporary file, renamed
/// over the name.
unsafe fn replace(fs: *mut glfs_t, path: &str, data: &[u8]) {
    let tmp = format!("{path}.tmp");
    put(fs, &tmp, data);
    assert_eq!(glfs_rename(fs, c(&tmp).as_ptr(), c(path).as_ptr()), 0);
}

fn md_cache_timeout(fs: *mut glfs_t, value: &str) {
    let r = unsafe {
        glfs_set_xlator_option(
            fs,
            c("*-md-cache").as_ptr(),
            c("md-cache-timeout").as_ptr(),
            c(value).as_ptr(),
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn a_cached_lookup_resolves_a_renamed_over_name_to_the_replaced_inode() {
    let env = Env::new();
    env.rules(RULES);
    let other = other_mount(&env);
    unsafe {
        put(env.fs, "/m-obj", b"old");
        let old_ino = std::fs::metadata(env.host("/m-obj")).unwrap().ino();
        // The lookup this mount keeps.
        assert_eq!(get(env.fs, "/m-obj").unwrap(), b"old");

        replace(other, "/m-obj", b"newer");
        let new_ino = std::fs::metadata(env.host("/m-obj")).unwrap().ino();
        assert_ne!(old_ino, new_ino);

        // md-cache answers the stat from the attributes it cached: the old inode's.
        assert_eq!(stat(env.fs, "/m-obj"), (old_ino, 3));
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(glfs_lstat(env.fs, c("/m-obj").as_ptr(), &mut st), 0);
        assert_eq!((st.st_ino, st.st_size), (old_ino, 3));
        // The open goes to the cached inode, which is gone: ESTALE, as the live volume
        // answered a gateway's metadata read.
        assert_eq!(get(env.fs, "/m-obj"), Err(libc::ESTALE));
        assert_eq!(get(env.fs, "/m-obj"), Err(libc::ESTALE), "still cached");

        // The mount that renamed follows its own change.
        assert_eq!(get(other, "/m-obj").unwrap(), b"newer");
        assert_eq!(stat(other, "/m-obj"), (new_ino, 5));
        // Names no rule puts through md-cache, and other mounts' fresh lookups, are
        // resolved as they are.
        let third = other_mount(&env);
        assert_eq!(get(third, "/m-obj").unwrap(), b"newer");
        glfs_fini(third);

        // The mount's own rename over the name drops its cached lookup.
        replace(env.fs, "/m-obj", b"mine");
        assert_eq!(get(env.fs, "/m-obj").unwrap(), b"mine");
        glfs_fini(other);
    }
}

#[test]
fn a_cached_lookup_follows_its_inode_to_the_name_it_was_renamed_to() {
    let env = Env::new();
    env.rules(RULES);
    let other = other_mount(&env);
    unsafe {
        put(env.fs, "/m-a", b"first");
        assert_eq!(stat(env.fs, "/m-a").1, 5);
        // The other mount moves the file away and puts another one under its name.
        assert_eq!(
            glfs_rename(other, c("/m-a").as_ptr(), c("/m-b").as_ptr()),
            0
        );
        put(other, "/m-a", b"second!");
        // Gluster opens the cached inode by its GFID: the file now named m-b.
        assert_eq!(get(env.fs, "/m-a").unwrap(), b"first");
        assert_eq!(get(other, "/m-a").unwrap(), b"second!");
        // The other mount's unlink of the name leaves this mount's cached lookup alone.
        assert_eq!(glfs_unlink(other, c("/m-b").as_ptr()), 0);
        assert_eq!(get(env.fs, "/m-a"), Err(libc::ESTALE));
        // The mount's own unlink forgets it; the name is looked up afresh.
        assert_eq!(glfs_unlink(env.fs, c("/m-a").as_ptr()), 0);
        assert_eq!(get(env.fs, "/m-a"), Err(libc::ENOENT));
        // The other mount had looked the new file up: it is gone now, so its cached
        // lookup meets a stale inode in turn.
        assert_eq!(get(other, "/m-a"), Err(libc::ESTALE));
        glfs_fini(other);
    }
}

#[test]
fn timeout_zero_on_the_mount_looks_every_name_up_afresh() {
    let env = Env::new();
    env.rules(RULES);
    let other = other_mount(&env);
    // What the glfs store sets on every mount (`backstore::coherent::fresh_lookups`); it
    // wins over the volume's 600 s.
    md_cache_timeout(env.fs, "0");
    unsafe {
        put(env.fs, "/m-obj", b"old");
        assert_eq!(get(env.fs, "/m-obj").unwrap(), b"old");
        assert_eq!(stat(env.fs, "/m-obj").1, 3);
        replace(other, "/m-obj", b"newer");
        let new_ino = std::fs::metadata(env.host("/m-obj")).unwrap().ino();
        assert_eq!(stat(env.fs, "/m-obj"), (new_ino, 5));
        assert_eq!(get(env.fs, "/m-obj").unwrap(), b"newer");
        glfs_fini(other);
    }
}

#[test]
fn the_mounts_last_timeout_setting_wins_and_an_entry_runs_out_after_it() {
    let env = Env::new();
    env.rules(RULES);
    let other = other_mount(&env);
    // The translator's own name; then a value md-cache refuses (passed over).
    md_cache_timeout(env.fs, "0");
    let r = unsafe {
        glfs_set_xlator_option(
            env.fs,
            c("vol-md-cache").as_ptr(),
            c("md-cache-timeout").as_ptr(),
            c("1").as_ptr(),
        )
    };
    assert_eq!(r, 0);
    md_cache_timeout(env.fs, "601");
    unsafe {
        put(env.fs, "/m-obj", b"old");
        assert_eq!(get(env.fs, "/m-obj").unwrap(), b"old");
        replace(other, "/m-obj", b"newer");
        assert_eq!(get(env.fs, "/m-obj"), Err(libc::ESTALE));
        // After md-cache-timeout (1 s) the name is looked up afresh.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(get(env.fs, "/m-obj").unwrap(), b"newer");
        glfs_fini(other);
    }
}

#[test]
fn without_the_rule_every_lookup_is_fresh() {
    let env = Env::new();
    let other = other_mount(&env);
    unsafe {
        put(env.fs, "/m-obj", b"old");
        assert_eq!(get(env.fs, "/m-obj").unwrap(), b"old");
        replace(other, "/m-obj", b"newer");
        assert_eq!(stat(env.fs, "/m-obj").1, 5);
        assert_eq!(get(env.fs, "/m-obj").unwrap(), b"newer");
        glfs_fini(other);
    }
}
