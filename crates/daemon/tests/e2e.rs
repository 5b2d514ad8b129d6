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
    // Not loopback: an open target needs the explicit opt-in.
    let target = Running::start_on(
        "0.0.0.0",
        &[
            "--allow-any-initiator",
            "--bstype",
            "memory",
            "--size",
            "1M",
        ],
        &[],
    );
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

/// Reads until the target closes `stream`: EOF or a reset, not a time-out.
fn assert_closed_by_target(stream: &mut TcpStream, what: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            // A Reject or the rest of a response may come first; keep reading.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the target must close a connection that sent {what}: {e}"),
        }
    }
}

/// Runs `misbehave` on a fresh raw connection while a libiscsi session logged in before
/// it is open; checks that the target closes the raw connection, logs why (every one of
/// `reason` in the line, which also names the connection's address), and that the other
/// session goes on working.
fn bad_connection_is_closed_alone(
    what: &str,
    reason: &[&str],
    misbehave: impl FnOnce(&mut TcpStream),
) {
    let target = Running::start(&["--bstype", "memory", "--size", "1M"], &[]);
    let mut good = target.connect();
    good.test_unit_ready().unwrap();

    let mut bad = TcpStream::connect(target.portal).unwrap();
    let peer = format!("peer={}", bad.local_addr().unwrap());
    misbehave(&mut bad);
    assert_closed_by_target(&mut bad, what);

    let mut needles = vec!["closing connection", peer.as_str()];
    needles.extend_from_slice(reason);
    let line = target.wait_for_log_line(&needles);
    assert!(line.contains("WARN"), "logged as a warning: {line}");

    // The other session goes on.
    good.write10(0, &pattern(9, 512), BLOCK).unwrap();
    assert_eq!(good.read10(0, 1, BLOCK).unwrap(), pattern(9, 512));
}

#[test]
fn malformed_pdu_closes_only_its_own_connection() {
    bad_connection_is_closed_alone("an unknown opcode", &["unsupported opcode 0x3f"], |bad| {
        // A 48-byte BHS with an opcode no initiator may send (0x3f).
        let mut bhs = [0u8; 48];
        bhs[0] = 0x3f;
        bad.write_all(&bhs).unwrap();
    });
}

#[test]
fn data_segment_over_the_negotiated_limit_closes_only_its_own_connection() {
    // What the target declares at login (RFC 7143 13.12).
    let limit = iscsi::Limits::default().max_recv_data_segment_length;
    let len = limit + 512;
    bad_connection_is_closed_alone(
        "a data segment over MaxRecvDataSegmentLength",
        &[&format!("data segment of {len} bytes"), &limit.to_string()],
        |bad| {
            let exp_stat_sn = raw_login(bad, IQN);
            // WRITE(10) of len bytes, all of them as immediate data in one segment.
            let blocks = (len / BLOCK) as u16;
            let [hi, lo] = blocks.to_be_bytes();
            let cdb = [0x2a, 0, 0, 0, 0, 0, 0, hi, lo, 0];
            let mut pdu = scsi_command(&cdb, 1, 1, exp_stat_sn, len, true);
            pdu[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
            bad.write_all(&pdu).unwrap();
            // Some of the data; the target may close before it has read it all.
            let _ = bad.write_all(&vec![0x5a; 64 * 1024]);
        },
    );
}

#[test]
fn ahs_length_past_the_ahs_closes_only_its_own_connection() {
    bad_connection_is_closed_alone(
        "an AHS whose length runs past TotalAHSLength",
        &["AHS length 100"],
        |bad| {
            let exp_stat_sn = raw_login(bad, IQN);
            // TEST UNIT READY with TotalAHSLength = 1 word, holding an extended-CDB AHS
            // (RFC 7143 11.2.1.2) whose AHSLength claims 100 bytes.
            let mut pdu = scsi_command(&[0; 6], 1, 1, exp_stat_sn, 0, false).to_vec();
            pdu[1] = 0x80; // Final, no data either way
            pdu[4] = 1;
            pdu.extend_from_slice(&[0x00, 100, 0x01, 0x00]);
            bad.write_all(&pdu).unwrap();
        },
    );
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

#[test]
fn a_write_over_the_data_limit_is_refused_without_taking_its_data() {
    // The per-command data-out limit is 8 MiB (the SCSI layer's maximum transfer); a WRITE(16)
    // of 16 MiB must get CHECK CONDITION at once, with no R2T, while the immediate and
    // unsolicited data the initiator already sent is dropped and the connection stays up.
    let target = Running::start(&["--bstype", "memory", "--size", "64M"], &[]);
    let (mut stream, exp_stat_sn) = raw_session(target.portal, IQN);

    let len: u32 = 16 << 20;
    let blocks = len / BLOCK;
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8a; // WRITE(16), SBC-3 5.34
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    let pdu = scsi_command(&cdb, 7, 1, exp_stat_sn, len, true);
    send_pdu(&mut stream, pdu, &pattern(3, 4096)); // immediate data
                                                   // Unsolicited Data-Out (RFC 7143 11.7): F, LUN 0, ITT 7, TTT 0xffffffff, DataSN 0,
                                                   // buffer offset 4096.
    let mut data_out = [0u8; 48];
    data_out[0] = 0x05;
    data_out[1] = 0x80;
    data_out[16..20].copy_from_slice(&7u32.to_be_bytes());
    data_out[20..24].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    data_out[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    data_out[40..44].copy_from_slice(&4096u32.to_be_bytes());
    send_pdu(&mut stream, data_out, &pattern(4, 4096));

    let (resp, sense) = recv_pdu(&mut stream);
    assert_eq!(resp[0] & 0x3f, 0x21, "SCSI Response, not an R2T (0x31)");
    assert_eq!(be32(&resp[16..]), 7, "for the oversized write");
    assert_eq!(resp[3], 0x02, "CHECK CONDITION");
    // Sense data segment: 2-byte length, then fixed-format sense (SPC-4 table 50):
    // ILLEGAL REQUEST (5h), INVALID FIELD IN CDB (24h/00h).
    assert!(sense.len() >= 2 + 14, "sense data present: {sense:02x?}");
    assert_eq!(sense[2] & 0x7f, 0x70);
    assert_eq!(sense[2 + 2] & 0x0f, 0x05);
    assert_eq!((sense[2 + 12], sense[2 + 13]), (0x24, 0x00));

    // The connection goes on: a ping is answered (NOP-In, 0x20) with its own task tag.
    let exp_stat_sn = be32(&resp[24..]) + 1;
    send_pdu(&mut stream, nop_out(8, 2, exp_stat_sn), &[]);
    let (nop_in, _) = recv_pdu(&mut stream);
    assert_eq!(nop_in[0] & 0x3f, 0x20);
    assert_eq!(be32(&nop_in[16..]), 8);

    // Nothing of the refused write reached the medium.
    let mut check = target.connect();
    assert_eq!(check.read10(0, 16, BLOCK).unwrap(), vec![0u8; 16 * 512]);
}

/// ABORT TASK SET also takes the commands still waiting for their CmdSN turn (RFC 7143
/// 11.5.1: every command with a CmdSN below the function's is in the task set): a
/// WRITE(10) received out of order (CmdSN 2 while 1 is late) and the late CmdSN 1 WRITE
/// that arrives after the function never reach the medium and get no response, and the
/// session goes on in CmdSN order past them.
#[test]
fn abort_task_set_drops_writes_waiting_for_their_cmd_sn_turn() {
    let target = Running::start(&["--bstype", "memory", "--size", "1M"], &[]);
    let (mut stream, exp_stat_sn) = raw_session(target.portal, IQN);
    // WRITE(10) (SBC-3 5.38) of one block at `lba`, with its data as immediate data.
    let write10 = |lba: u8| [0x2a, 0, 0, 0, 0, lba, 0, 0, 1, 0];
    let early = scsi_command(&write10(1), 0x12, 2, exp_stat_sn, BLOCK, true);
    send_pdu(&mut stream, early, &pattern(1, BLOCK as usize));
    // ABORT TASK SET (function 2) on LUN 0, immediate, CmdSN 3.
    let abort = tmf_request(2, 0, 0x30, 0xffff_ffff, 3, exp_stat_sn, 0);
    send_pdu(&mut stream, abort, &[]);
    let (resp, _) = recv_pdu(&mut stream);
    // Task Management Function Response (0x22), Response 0: function complete.
    assert_eq!(
        (resp[0] & 0x3f, resp[2], be32(&resp[16..])),
        (0x22, 0, 0x30)
    );
    let exp_stat_sn = be32(&resp[24..]) + 1;
    let late = scsi_command(&write10(0), 0x11, 1, exp_stat_sn, BLOCK, true);
    send_pdu(&mut stream, late, &pattern(2, BLOCK as usize));
    // A NOP-Out in CmdSN order (non-immediate, CmdSN 3): its NOP-In (0x20) is the next
    // PDU, no SCSI Response came before it, and ExpCmdSN (bytes 28..32) is 4.
    let mut nop = nop_out(0x40, 3, exp_stat_sn);
    nop[0] = 0x00;
    send_pdu(&mut stream, nop, &[]);
    let (nop_in, _) = recv_pdu(&mut stream);
    assert_eq!(
        (nop_in[0] & 0x3f, be32(&nop_in[16..]), be32(&nop_in[28..])),
        (0x20, 0x40, 4)
    );
    let mut check = target.connect();
    assert_eq!(check.read10(0, 2, BLOCK).unwrap(), vec![0u8; 2 * 512]);
}
