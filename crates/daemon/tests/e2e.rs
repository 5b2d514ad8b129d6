//! The real `glfs-iscsi` binary driven by a real initiator (libiscsi, through testkit).
//!
//! These tests start the binary as a child process; the glfs ones load the fake
//! libgfapi.so.0 (built by `cargo xtask build-fake`; `cargo xtask test-offline` does that).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use support::*;
use testkit::initiator::Initiator;

#[test]
fn glfs_lun_on_fake_volume_stores_what_the_initiator_writes() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("vol/disks")).unwrap();
    let lib = fake_library();
    let target = Running::start(
        &[
            "--bstype",
            "glfs",
            "--backing-store",
            "vol@127.0.0.2:disks/lun0.img",
            "--size",
            "8M",
            "--gfapi-library",
            lib.to_str().unwrap(),
        ],
        &[("GFAPI_FAKE_ROOT", root.path())],
    );
    let mut init = target.connect();
    let (blocks, block_size) = init.read_capacity16().unwrap();
    assert_eq!(block_size, BLOCK);
    assert_eq!(blocks, (8 << 20) / 512);

    // Small, large (several R2Ts and Data-In PDUs) and last-block writes.
    let cases: [(u64, usize, u8); 3] = [(0, 1, 1), (100, 2048, 2), (blocks - 1, 1, 3)];
    for (lba, count, seed) in cases {
        let data = pattern(seed, count * BLOCK as usize);
        if count > 1 {
            init.write16(lba, &data, BLOCK).unwrap();
        } else {
            init.write10(lba, &data, BLOCK).unwrap();
        }
        assert_eq!(
            init.read10(lba, count as u32, BLOCK).unwrap(),
            data,
            "read back LBA {lba}"
        );
        assert_eq!(
            init.read16(lba, count as u32, BLOCK).unwrap(),
            data,
            "READ(16) LBA {lba}"
        );
    }
    init.synchronize_cache().unwrap();
    init.logout().unwrap();

    let file = std::fs::read(root.path().join("vol/disks/lun0.img")).unwrap();
    assert_eq!(file.len(), 8 << 20);
    for (lba, count, seed) in cases {
        let start = lba as usize * BLOCK as usize;
        let end = start + count * BLOCK as usize;
        assert_eq!(
            &file[start..end],
            &pattern(seed, count * BLOCK as usize)[..],
            "file at LBA {lba}"
        );
    }
    assert!(
        file[BLOCK as usize..100 * BLOCK as usize]
            .iter()
            .all(|b| *b == 0),
        "untouched blocks stay zero"
    );
}

#[test]
fn discovery_lists_the_target_at_its_portal() {
    let target = Running::start(&["--bstype", "memory", "--size", "1M"], &[]);
    let found = Initiator::discover(&target.portal()).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let (name, addresses) = &found[0];
    assert_eq!(name, IQN);
    assert!(
        addresses.iter().any(|a| a.starts_with(&target.portal())),
        "{found:?}"
    );
}

#[test]
fn discovery_on_a_wildcard_portal_advertises_the_address_connected_to() {
    let target = Running::start_on("0.0.0.0", &["--bstype", "memory", "--size", "1M"], &[]);
    assert_eq!(target.portal.ip().to_string(), "127.0.0.1");
    let found = Initiator::discover(&target.portal()).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let (name, addresses) = &found[0];
    assert_eq!(name, IQN);
    assert_eq!(
        addresses,
        &vec![format!("127.0.0.1:{},1", target.portal.port())],
        "not the wildcard 0.0.0.0"
    );
}

#[test]
fn malformed_pdu_closes_only_its_own_connection() {
    let target = Running::start(&["--bstype", "memory", "--size", "1M"], &[]);
    let mut good = target.connect();
    good.test_unit_ready().unwrap();

    // A 48-byte BHS with an opcode no initiator may send (0x3f).
    let mut bad = TcpStream::connect(target.portal).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bhs = [0u8; 48];
    bhs[0] = 0x3f;
    bad.write_all(&bhs).unwrap();
    let mut buf = [0u8; 64];
    let n = bad.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "the target must close a connection that sent an unknown opcode"
    );

    // The other session goes on.
    good.write10(0, &pattern(9, 512), BLOCK).unwrap();
    assert_eq!(good.read10(0, 1, BLOCK).unwrap(), pattern(9, 512));
}

#[test]
fn bad_backing_store_is_a_one_line_error() {
    let out = run_to_exit(&["--bstype", "glfs", "--backing-store", "no-at-sign"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(
        lines[0].contains("no-at-sign"),
        "the error names the bad input: {err}"
    );
}

#[test]
fn unloadable_libgfapi_is_a_one_line_error() {
    let out = run_to_exit(&[
        "--bstype",
        "glfs",
        "--backing-store",
        "vol@127.0.0.2:lun",
        "--gfapi-library",
        "/nonexistent/libgfapi.so.0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(
        lines[0].contains("/nonexistent/libgfapi.so.0"),
        "names the library: {err}"
    );
}

#[test]
fn bad_target_name_is_rejected_before_anything_starts() {
    let out = Command::new(BINARY)
        .args([
            "--portal",
            "127.0.0.1:0",
            "--target",
            "disk1",
            "--bstype",
            "memory",
            "--size",
            "1M",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid target name \"disk1\""));
}

#[test]
fn a_config_file_serves_several_targets_and_luns() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glfs-iscsi.toml");
    let file_lun = dir.path().join("b.img");
    std::fs::write(
        &config,
        format!(
            "[[target]]\nname = \"{IQN}\"\n\
             [[target.lun]]\nlun = 0\nbstype = \"memory\"\nsize = \"1M\"\n\
             [[target.lun]]\nlun = 3\nbstype = \"memory\"\nsize = \"2M\"\nblock_size = 4096\n\
             [[target]]\nname = \"iqn.2026-11.io.glfs-iscsi:second\"\n\
             [[target.lun]]\nlun = 0\nbstype = \"file\"\nbacking_store = \"{}\"\nsize = \"1M\"\n",
            file_lun.display()
        ),
    )
    .unwrap();
    let target = Running::start(&["--config", config.to_str().unwrap()], &[]);
    let mut found: Vec<String> = Initiator::discover(&target.portal())
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            IQN.to_string(),
            "iqn.2026-11.io.glfs-iscsi:second".to_string()
        ]
    );

    let mut first = target.connect();
    assert_eq!(first.report_luns().unwrap(), vec![0, 3]);
    let mut lun3 = Initiator::connect(&target.portal(), IQN, 3).unwrap();
    assert_eq!(lun3.read_capacity16().unwrap(), (512, 4096));

    let mut second =
        Initiator::connect(&target.portal(), "iqn.2026-11.io.glfs-iscsi:second", 0).unwrap();
    second.write10(1, &pattern(7, 512), BLOCK).unwrap();
    second.synchronize_cache().unwrap();
    let bytes = std::fs::read(&file_lun).unwrap();
    assert_eq!(&bytes[512..1024], &pattern(7, 512)[..]);
}
