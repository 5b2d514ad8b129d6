//! The shard translator's `glfs_fallocate` modes (`ffi::op_fallocate`), on files a rule
//! with `shard = true` puts on a sharded volume.

use crate::ffi::*;
use crate::tests::{errno, Env};

/// Files named `sh-*` are on a sharded volume.
const RULES: &str = "[[rule]]\nop = \"fallocate\"\npath = \"/sh-*\"\nshard = true\n";

fn fallocate(fd: *mut glfs_fd_t, mode: libc::c_int, offset: i64, len: usize) -> Result<(), i32> {
    match unsafe { glfs_fallocate(fd, mode, offset, len) } {
        0 => Ok(()),
        _ => Err(errno()),
    }
}

#[test]
fn a_sharded_volume_refuses_the_fallocate_modes_shard_does_not_take() {
    let env = Env::new();
    env.rules(RULES);
    let fd = env.creat("/sh-lun");
    // Mode 0 allocates (and extends), as shard_fallocate passes it on.
    assert_eq!(fallocate(fd, 0, 0, 1 << 20), Ok(()));
    assert_eq!(
        std::fs::metadata(env.host("/sh-lun")).unwrap().len(),
        1 << 20
    );
    // KEEP_SIZE alone (what a plain file system takes to allocate without growing):
    // ENOTSUP, nothing done.
    assert_eq!(
        fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 0, 2 << 20),
        Err(libc::ENOTSUP)
    );
    assert_eq!(
        std::fs::metadata(env.host("/sh-lun")).unwrap().len(),
        1 << 20
    );
    // ZERO_RANGE and KEEP_SIZE|PUNCH_HOLE pass shard (the brick then allocates with
    // KEEP_SIZE: the data stays).
    unsafe { crate::tests::pwrite(fd, &[7u8; 4096], 0) };
    assert_eq!(fallocate(fd, libc::FALLOC_FL_ZERO_RANGE, 0, 4096), Ok(()));
    let punch = libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE;
    assert_eq!(fallocate(fd, punch, 0, 8192), Ok(()));
    assert_eq!(
        std::fs::read(env.host("/sh-lun")).unwrap()[..4096],
        [7u8; 4096]
    );
    // A file the rule does not name takes KEEP_SIZE.
    let plain = env.creat("/plain-lun");
    assert_eq!(fallocate(plain, libc::FALLOC_FL_KEEP_SIZE, 0, 4096), Ok(()));
}
