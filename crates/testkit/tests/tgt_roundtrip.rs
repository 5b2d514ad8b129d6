//! Drives `testkit::initiator` (and so the libiscsi-sys bindings) against Debian's
//! tgtd, a known-good iSCSI target, until our own target can stand in.
//!
//! Skips (with a `[skip]` line) when tgtd cannot run here: tgt not installed, or not
//! root. Under CI (`CI=true`) that is a failure instead (see `testkit::tgtd`).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use testkit::initiator::{ConnectOptions, Error, Initiator, ResidualKind};
use testkit::tgtd::Tgtd;

const IQN: &str = "iqn.2026-01.dev.testkit:tgt-roundtrip";
const LUN_BYTES: u64 = 4 * 1024 * 1024;
const BS: u32 = 512;

/// A tgtd with target 1 = [`IQN`], LUN 1 backed by a zeroed 4 MiB temp file.
struct Fixture {
    tgtd: Tgtd,
    backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn file_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let f = std::fs::File::open(&self.backing).unwrap();
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset).unwrap();
        buf
    }

    fn connect(&self) -> Initiator {
        Initiator::connect(&self.tgtd.portal(), IQN, 1)
            .unwrap_or_else(|e| panic!("{e}\ntgtd log:\n{}", self.tgtd.log_text()))
    }
}

fn fixture(test: &str) -> Option<Fixture> {
    let tgtd = Tgtd::start_or_skip(test)?;
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("lun1.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(LUN_BYTES)
        .unwrap();
    tgtd.add_target(1, IQN).unwrap();
    tgtd.add_file_lun(1, 1, &backing).unwrap();
    Some(Fixture {
        tgtd,
        backing,
        _dir: dir,
    })
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn discovery_lists_the_target_and_its_portal() {
    let Some(fx) = fixture("discovery_lists_the_target_and_its_portal") else {
        return;
    };
    let found = Initiator::discover(&fx.tgtd.portal()).unwrap();
    // tgtd answers SendTargets with its portal and target portal group tag 1.
    assert_eq!(
        found,
        vec![(
            IQN.to_string(),
            vec![format!("127.0.0.1:{},1", fx.tgtd.port())]
        )]
    );
}

#[test]
fn inquiry_capacity_write_read_roundtrip_reaches_the_backing_file() {
    let Some(fx) = fixture("inquiry_capacity_write_read_roundtrip_reaches_the_backing_file") else {
        return;
    };
    let mut ini = fx.connect();
    ini.test_unit_ready().unwrap();

    // Standard INQUIRY (SPC-4 6.6.2): byte 0 = qualifier 0 / device type 0 (SBC),
    // ADDITIONAL LENGTH in byte 4, T10 vendor id in bytes 8..16.
    let inq = ini.inquiry(false, 0, 96).unwrap();
    assert!(inq.len() >= 36, "short INQUIRY data: {}", inq.len());
    assert_eq!(inq[0], 0x00);
    assert_eq!(inq.len(), usize::from(inq[4]) + 5);
    assert_eq!(&inq[8..16], b"IET     ");

    // VPD page 0x00 lists supported pages and includes 0x80 (unit serial number).
    let vpd0 = ini.inquiry(true, 0x00, 255).unwrap();
    assert_eq!(vpd0[1], 0x00);
    let n = usize::from(u16::from_be_bytes([vpd0[2], vpd0[3]]));
    assert!(vpd0[4..4 + n].contains(&0x80), "{vpd0:02x?}");

    let (blocks, bs) = ini.read_capacity16().unwrap();
    assert_eq!((blocks, bs), (LUN_BYTES / 512, 512));
    assert_eq!(ini.read_capacity10().unwrap(), (LUN_BYTES / 512, 512));

    // WRITE(10) two blocks at LBA 3, read back through READ(10) and READ(16).
    let data = pattern(7, 2 * BS as usize);
    ini.write10(3, &data, BS).unwrap();
    assert_eq!(ini.read10(3, 2, BS).unwrap(), data);
    assert_eq!(ini.read16(3, 2, BS).unwrap(), data);

    // WRITE(16) to the last block.
    let last = blocks - 1;
    let tail = pattern(99, BS as usize);
    ini.write16(last, &tail, BS).unwrap();
    assert_eq!(ini.read16(last, 1, BS).unwrap(), tail);

    ini.synchronize_cache().unwrap();
    assert_eq!(fx.file_bytes(3 * 512, data.len()), data);
    assert_eq!(fx.file_bytes(last * 512, tail.len()), tail);
    // Neighbouring blocks are untouched.
    assert_eq!(fx.file_bytes(2 * 512, 512), vec![0u8; 512]);
    assert_eq!(fx.file_bytes(5 * 512, 512), vec![0u8; 512]);

    ini.logout().unwrap();
}

#[test]
fn scsi_errors_come_back_as_values_with_sense() {
    let Some(fx) = fixture("scsi_errors_come_back_as_values_with_sense") else {
        return;
    };
    let mut ini = fx.connect();
    let blocks = LUN_BYTES / 512;

    // READ(10) past the end: CHECK CONDITION, ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS
    // OUT OF RANGE (ASC 0x21, ASCQ 0x00; SBC-3 4.5 / SPC-4 table D.1).
    let err = ini.read10(blocks, 1, BS).unwrap_err();
    let scsi = err
        .scsi()
        .unwrap_or_else(|| panic!("not a SCSI error: {err:?}"));
    assert_eq!(
        (scsi.status, scsi.sense_key, scsi.asc, scsi.ascq),
        (0x02, 0x05, 0x21, 0x00)
    );
    // Raw sense bytes: fixed format (0x70) or descriptor format (0x72).
    match scsi.sense.first() {
        Some(0x70) => assert_eq!((scsi.sense[2] & 0x0f, scsi.sense[12]), (0x05, 0x21)),
        Some(0x72) => assert_eq!((scsi.sense[1] & 0x0f, scsi.sense[2]), (0x05, 0x21)),
        other => panic!("unexpected sense response code {other:?}"),
    }
    assert!(err.to_string().contains("ILLEGAL REQUEST"), "{err}");

    // The same through raw_command: READ(10) CDB (SBC-3 5.8) for LBA = capacity.
    let lba = (blocks as u32).to_be_bytes();
    let cdb = [0x28, 0, lba[0], lba[1], lba[2], lba[3], 0, 0, 1, 0];
    let out = ini.raw_command(&cdb, &[], 512).unwrap();
    assert_eq!(
        (out.status, out.sense_key, out.asc, out.ascq),
        (0x02, 0x05, 0x21, 0x00)
    );
    assert!(out.data.is_empty());

    // An unsupported opcode (0xff is vendor specific, tgt rejects it): INVALID
    // COMMAND OPERATION CODE, ASC 0x20 ASCQ 0x00.
    let out = ini.raw_command(&[0xff, 0, 0, 0, 0, 0], &[], 0).unwrap();
    assert_eq!(
        (out.status, out.sense_key, out.asc, out.ascq),
        (0x02, 0x05, 0x20, 0x00)
    );

    // The session is still usable after errors.
    ini.test_unit_ready().unwrap();
}

#[test]
fn raw_command_moves_data_both_ways_and_reports_residuals() {
    let Some(fx) = fixture("raw_command_moves_data_both_ways_and_reports_residuals") else {
        return;
    };
    let mut ini = fx.connect();

    // WRITE(10) CDB (SBC-3 5.32): opcode 0x2a, LBA 10, transfer length 1.
    let data = pattern(42, 512);
    let out = ini
        .raw_command(&[0x2a, 0, 0, 0, 0, 10, 0, 0, 1, 0], &data, 0)
        .unwrap();
    assert!(out.is_good(), "{out:?}");
    assert_eq!(out.residual_kind, ResidualKind::None);
    assert_eq!(ini.read10(10, 1, BS).unwrap(), data);

    // READ(16) CDB (SBC-3 5.16): opcode 0x88, LBA 10, transfer length 1.
    let mut cdb = [0u8; 16];
    cdb[0] = 0x88;
    cdb[9] = 10;
    cdb[13] = 1;
    let out = ini.raw_command(&cdb, &[], 512).unwrap();
    assert!(out.is_good(), "{out:?}");
    assert_eq!(out.data, data);

    // INQUIRY with ALLOCATION LENGTH 255: the standard data is shorter, so the
    // target reports an underflow residual of 255 - (ADDITIONAL LENGTH + 5).
    let out = ini.raw_command(&[0x12, 0, 0, 0, 255, 0], &[], 255).unwrap();
    assert!(out.is_good(), "{out:?}");
    let len = usize::from(out.data[4]) + 5;
    assert_eq!(out.data.len(), len);
    assert_eq!(out.residual_kind, ResidualKind::Underflow);
    assert_eq!(out.residual, (255 - len) as u64);

    // TEST UNIT READY with no data.
    let out = ini.raw_command(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    assert!(out.is_good() && out.data.is_empty(), "{out:?}");
}

#[test]
fn report_luns_mode_sense_and_lun_switching() {
    let Some(fx) = fixture("report_luns_mode_sense_and_lun_switching") else {
        return;
    };
    let mut ini = fx.connect();
    // tgt always exposes its controller LUN 0 next to our LUN 1.
    let mut luns = ini.report_luns().unwrap();
    luns.sort_unstable();
    assert_eq!(luns, vec![0, 1]);

    // MODE SENSE(6), all pages: byte 0 is MODE DATA LENGTH (bytes that follow it).
    let ms = ini.mode_sense6(false, 0x3f, 0, 255).unwrap();
    assert_eq!(ms.len(), usize::from(ms[0]) + 1);

    // LUN 0 is tgt's controller (peripheral device type 0x0c, SCC-2).
    ini.set_lun(0).unwrap();
    let inq = ini.inquiry(false, 0, 96).unwrap();
    assert_eq!(inq[0] & 0x1f, 0x0c);
    ini.set_lun(1).unwrap();
    assert_eq!(ini.inquiry(false, 0, 96).unwrap()[0] & 0x1f, 0x00);
}

#[test]
fn login_failures_and_use_after_logout_are_readable_errors() {
    let Some(fx) = fixture("login_failures_and_use_after_logout_are_readable_errors") else {
        return;
    };
    let err = Initiator::connect(
        &fx.tgtd.portal(),
        "iqn.2026-01.dev.testkit:no-such-target",
        1,
    )
    .unwrap_err();
    let Error::Iscsi { op, message } = &err else {
        panic!("expected a login error, got {err:?}");
    };
    assert!(op.contains("no-such-target"), "{op}");
    assert!(
        message.to_lowercase().contains("login"),
        "libiscsi's login error text expected: {message}"
    );
    eprintln!("wrong target: {err}");

    // Login without the initial TEST UNIT READY, to a LUN tgt does not have: the
    // login succeeds and the command reports LOGICAL UNIT NOT SUPPORTED (0x25/0x00).
    let opts = ConnectOptions {
        test_unit_ready_on_connect: false,
        ..ConnectOptions::default()
    };
    let mut ini = Initiator::connect_with(&fx.tgtd.portal(), IQN, 7, &opts).unwrap();
    let err = ini.test_unit_ready().unwrap_err();
    let scsi = err
        .scsi()
        .unwrap_or_else(|| panic!("not a SCSI error: {err:?}"));
    assert_eq!((scsi.sense_key, scsi.asc, scsi.ascq), (0x05, 0x25, 0x00));

    ini.logout().unwrap();
    let err = ini.test_unit_ready().unwrap_err();
    assert_eq!(
        err,
        Error::Iscsi {
            op: "TEST UNIT READY".into(),
            message: "this session was logged out".into()
        }
    );
}

#[test]
fn header_digest_crc32c_session_works() {
    let Some(fx) = fixture("header_digest_crc32c_session_works") else {
        return;
    };
    let opts = ConnectOptions {
        header_digest: testkit::initiator::HeaderDigest::Crc32c,
        ..ConnectOptions::default()
    };
    let mut ini = Initiator::connect_with(&fx.tgtd.portal(), IQN, 1, &opts).unwrap();
    let data = pattern(3, 4096);
    ini.write10(100, &data, BS).unwrap();
    assert_eq!(ini.read10(100, 8, BS).unwrap(), data);
}

#[test]
fn chap_credentials_are_sent_at_login() {
    let Some(fx) = fixture("chap_credentials_are_sent_at_login") else {
        return;
    };
    fx.tgtd
        .tgtadm(&[
            "--mode",
            "account",
            "--op",
            "new",
            "--user",
            "alice",
            "--password",
            "wonderland12",
        ])
        .unwrap();
    fx.tgtd
        .tgtadm(&[
            "--mode", "account", "--op", "bind", "--tid", "1", "--user", "alice",
        ])
        .unwrap();

    // No credentials: the target demands CHAP and the login fails.
    let err = Initiator::connect(&fx.tgtd.portal(), IQN, 1).unwrap_err();
    assert!(matches!(err, Error::Iscsi { .. }), "{err:?}");

    // Wrong secret: refused too.
    let wrong = ConnectOptions {
        chap: Some(("alice".into(), "not-the-secret".into())),
        ..ConnectOptions::default()
    };
    let err = Initiator::connect_with(&fx.tgtd.portal(), IQN, 1, &wrong).unwrap_err();
    assert!(matches!(err, Error::Iscsi { .. }), "{err:?}");
    eprintln!("wrong CHAP secret: {err}");

    // Right secret: logged in and usable.
    let right = ConnectOptions {
        chap: Some(("alice".into(), "wonderland12".into())),
        ..ConnectOptions::default()
    };
    let mut ini = Initiator::connect_with(&fx.tgtd.portal(), IQN, 1, &right).unwrap();
    ini.test_unit_ready().unwrap();
    ini.logout().unwrap();
}

#[test]
fn target_death_mid_session_fails_fast_and_poisons_the_session() {
    let Some(mut fx) = fixture("target_death_mid_session_fails_fast_and_poisons_the_session")
    else {
        return;
    };
    let opts = ConnectOptions {
        timeout_secs: 5,
        ..ConnectOptions::default()
    };
    let mut ini = Initiator::connect_with(&fx.tgtd.portal(), IQN, 1, &opts).unwrap();
    ini.test_unit_ready().unwrap();
    fx.tgtd.kill();

    let started = std::time::Instant::now();
    let err = ini.read10(0, 1, BS).unwrap_err();
    assert!(matches!(err, Error::Iscsi { .. }), "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    eprintln!("after target death: {err}");

    // Later calls fail at once, naming the first failure.
    let err = ini.test_unit_ready().unwrap_err();
    let Error::Iscsi { message, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.starts_with("session unusable after an earlier failure: READ(10)"),
        "{message}"
    );
    // Logging out and dropping a broken session must not hang or crash.
    ini.logout().unwrap();
    drop(ini);
}

/// tgt's glusterfs store (`--bstype glfs`, `bs_glfs.so`) on the fake libgfapi: distinct
/// patterns written at the first, a middle and the last block come back over iSCSI (also
/// in a new session) and sit at the same offsets of the fake volume's backing file, and
/// the blocks between them stay zero. This is the data half of the tgt drop-in proof
/// (`cargo xtask test-offline` runs it again from its tgt check).
#[test]
fn glfs_lun_on_the_fake_reads_back_and_stores_the_written_patterns() {
    const TEST: &str = "glfs_lun_on_the_fake_reads_back_and_stores_the_written_patterns";
    const GLFS_IQN: &str = "iqn.2026-01.dev.testkit:tgt-glfs";
    const GLFS_BYTES: u64 = 8 * 1024 * 1024;
    if let Some(why) = testkit::tgtd::glfs_unavailable_reason() {
        testkit::tgtd::skip(TEST, &why);
        return;
    }
    let root = testkit::fake::FakeRoot::new();
    let file = root.create_file("vol", "lun.img", GLFS_BYTES);
    // LD_LIBRARY_PATH = the fake's directory, GFAPI_FAKE_ROOT = root: bs_glfs.so binds
    // the fake (the real libgfapi is not needed).
    let Some(tgtd) = Tgtd::start_with_env_or_skip(TEST, root.env()) else {
        return;
    };
    tgtd.add_target(1, GLFS_IQN).unwrap();
    tgtd.add_lun_to(1, 1, "glfs", "vol@127.0.0.2:lun.img")
        .unwrap_or_else(|e| panic!("glfs LUN on the fake: {e}"));

    let connect = || {
        Initiator::connect(&tgtd.portal(), GLFS_IQN, 1)
            .unwrap_or_else(|e| panic!("{e}\ntgtd log:\n{}", tgtd.log_text()))
    };
    let mut ini = connect();
    let (blocks, bs) = ini.read_capacity16().unwrap();
    assert_eq!(
        (blocks, bs),
        (GLFS_BYTES / 512, 512),
        "capacity of the glfs LUN"
    );

    // (LBA, blocks, seed): the first block, 4 blocks in the middle, the last block.
    let writes: [(u64, u32, u8); 3] = [(0, 1, 0x11), (blocks / 2, 4, 0x5a), (blocks - 1, 1, 0xc3)];
    let patterns: Vec<Vec<u8>> = writes
        .iter()
        .map(|&(_, n, seed)| pattern(seed, (n * BS) as usize))
        .collect();
    // Distinct patterns, so that data landing at the wrong LBA cannot pass.
    assert!(patterns[0][..512] != patterns[1][..512] && patterns[1][..512] != patterns[2][..512]);
    for (&(lba, n, _), data) in writes.iter().zip(&patterns) {
        if lba > u64::from(u32::MAX) || n > 1 {
            ini.write16(lba, data, BS).unwrap();
        } else {
            ini.write10(lba, data, BS).unwrap();
        }
        assert_eq!(
            ini.read10(lba, n, BS).unwrap(),
            *data,
            "read back LBA {lba}"
        );
    }
    ini.synchronize_cache().unwrap();
    ini.logout().unwrap();

    // A new session reads the same bytes (they came from the store, not a cache of the
    // session).
    let mut ini = connect();
    for (&(lba, n, _), data) in writes.iter().zip(&patterns) {
        assert_eq!(
            ini.read16(lba, n, BS).unwrap(),
            *data,
            "new session, LBA {lba}"
        );
    }
    ini.logout().unwrap();

    // The fake volume's backing file holds each pattern at LBA * 512, and nothing else.
    let stored = std::fs::read(&file).unwrap();
    assert_eq!(stored.len() as u64, GLFS_BYTES);
    let mut expected = vec![0u8; GLFS_BYTES as usize];
    for (&(lba, _, _), data) in writes.iter().zip(&patterns) {
        let at = (lba * 512) as usize;
        assert_eq!(
            &stored[at..at + data.len()],
            &data[..],
            "backing file at LBA {lba}"
        );
        expected[at..at + data.len()].copy_from_slice(data);
    }
    if stored != expected {
        let first = stored
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap();
        panic!("backing file differs outside the written blocks, first at byte {first}");
    }
}
