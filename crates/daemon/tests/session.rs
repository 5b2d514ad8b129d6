//! The session layer through the real binary and libiscsi: digests, and (as they come)
//! keepalive, reinstatement and shutdown.

mod support;

use support::*;
use testkit::initiator::{ConnectOptions, HeaderDigest, Initiator};

/// A full write and read-back run with HeaderDigest=CRC32C (libiscsi's
/// `?header_digest=crc32c`; libiscsi offers no DataDigest).
#[test]
fn header_digest_crc32c_carries_a_read_write_run() {
    let target = Running::start(&["--bstype", "memory", "--size", "4M"], &[]);
    let opts = ConnectOptions {
        header_digest: HeaderDigest::Crc32c,
        ..ConnectOptions::default()
    };
    let mut init = Initiator::connect_with(&target.portal(), IQN, 0, &opts).unwrap();
    target.wait_for_log_line(&["login", "header_digest=true"]);
    // One block, then 1 MiB: several R2Ts and Data-In PDUs, each with a header digest.
    for (lba, blocks, seed) in [(0u64, 1usize, 7u8), (64, 2048, 9)] {
        let data = pattern(seed, blocks * BLOCK as usize);
        init.write16(lba, &data, BLOCK).unwrap();
        assert_eq!(
            init.read16(lba, blocks as u32, BLOCK).unwrap(),
            data,
            "LBA {lba}"
        );
    }
    init.logout().unwrap();
}

/// libiscsi's default offer (None first) keeps digests off.
#[test]
fn digests_stay_off_unless_offered_first() {
    let target = Running::start(&["--bstype", "memory", "--size", "1M"], &[]);
    let opts = ConnectOptions {
        header_digest: HeaderDigest::NoneCrc32c,
        ..ConnectOptions::default()
    };
    let mut init = Initiator::connect_with(&target.portal(), IQN, 0, &opts).unwrap();
    target.wait_for_log_line(&["login", "header_digest=false"]);
    init.test_unit_ready().unwrap();
    init.logout().unwrap();
}
