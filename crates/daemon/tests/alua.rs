//! ALUA states changed while the daemon serves: `glfs-iscsi admin alua set` (and a
//! change of the config file) puts a target port group in a new state at once; a host
//! logged in through libiscsi sees ASYMMETRIC ACCESS STATE CHANGED on its next command,
//! then the new state, in REPORT TARGET PORT GROUPS and in what the port refuses.
//!
//! Expected values are written out from SPC-4: REPORT TARGET PORT GROUPS (6.36, tables
//! 257 to 259; asymmetric access states, table 258: 0h active/optimized, 1h
//! active/non-optimized, 2h standby, 3h unavailable, Eh offline, Fh transitioning) and
//! the ASC/ASCQ assignments of annex D: 2Ah/06h ASYMMETRIC ACCESS STATE CHANGED (UNIT
//! ATTENTION, 6h), 04h/0Ah ASYMMETRIC ACCESS STATE TRANSITION, 04h/0Bh TARGET PORT IN
//! STANDBY STATE, 04h/0Ch TARGET PORT IN UNAVAILABLE STATE (NOT READY, 2h).

mod support;

use serde_json::Value;
use std::path::Path;
use support::*;
use testkit::initiator::Initiator;

const TARGET: &str = "iqn.2026-11.io.glfs-iscsi:alua";
const CHECK_CONDITION: u8 = 0x02;
const UNIT_ATTENTION: u8 = 0x6;
const NOT_READY: u8 = 0x2;
/// TEST UNIT READY (SPC-4 6.47) and READ(10) of one block (SBC-3 5.11).
const TUR: [u8; 6] = [0; 6];
const READ: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

/// REPORT TARGET PORT GROUPS: (group, state) per descriptor; each group's one port has
/// the group's id as its relative target port identifier.
fn groups(ini: &mut Initiator) -> Vec<(u16, u8)> {
    report_target_port_groups(ini)
        .into_iter()
        .map(|(group, state, port)| {
            assert_eq!(port, group);
            (group, state)
        })
        .collect()
}

/// The next command's status, sense key and ASC/ASCQ.
fn answer(ini: &mut Initiator, cdb: &[u8]) -> (u8, u8, u8, u8) {
    let out = ini.raw_command(cdb, &[], 512).unwrap();
    (out.status, out.sense_key, out.asc, out.ascq)
}

/// The host's next command reports ASYMMETRIC ACCESS STATE CHANGED, once.
fn sees_state_changed(ini: &mut Initiator, cdb: &[u8]) {
    assert_eq!(
        answer(ini, cdb),
        (CHECK_CONDITION, UNIT_ATTENTION, 0x2A, 0x06),
        "the unit attention of the change"
    );
}

fn json(socket: &Path, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    serde_json::from_str(&ok(socket, &with_json)).unwrap()
}

#[test]
fn a_state_set_live_from_the_config_file_is_a_unit_attention_then_reported_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glfs-iscsi.toml");
    std::fs::write(
        &config,
        format!(
            "alua_group = 1\nalua_peer = [\"2:standby\"]\n\
             [[target]]\nname = \"{TARGET}\"\n[[target.lun]]\nlun = 0\nbstype = \"memory\"\nsize = \"1M\"\n"
        ),
    )
    .unwrap();
    let socket = dir.path().join("control.sock");
    let daemon = Running::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--control-socket",
            socket.to_str().unwrap(),
        ],
        &[],
    );
    // libiscsi's TEST UNIT READY at login takes the POWER ON unit attention.
    let mut host = login_as(&daemon, TARGET, "iqn.2026-11.test:host-a", None).unwrap();
    let mut other = login_as(&daemon, TARGET, "iqn.2026-11.test:host-b", None).unwrap();
    assert_eq!(groups(&mut host), [(1, 0x0), (2, 0x2)]);
    assert_eq!(answer(&mut host, &READ), (0, 0, 0, 0));

    // This gateway's group to standby.
    let out = ok(&socket, &["alua", "set", "1", "standby"]);
    assert!(out.contains("alua_state"), "{out}");
    for ini in [&mut host, &mut other] {
        sees_state_changed(ini, &TUR);
        assert_eq!(answer(ini, &READ), (CHECK_CONDITION, NOT_READY, 0x04, 0x0B));
        assert_eq!(groups(ini), [(1, 0x2), (2, 0x2)]);
    }
    // Written to the file, so a restart keeps it.
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains("alua_state = \"standby\""), "{saved}");

    // Another gateway's group (a peer entry of the file): a unit attention too.
    ok(&socket, &["alua", "set", "2", "active-optimized"]);
    sees_state_changed(&mut host, &[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(groups(&mut host), [(1, 0x2), (2, 0x0)]);
    let listed = json(&socket, &["alua", "list"]);
    assert_eq!(
        listed,
        serde_json::json!([
            { "group": 1, "state": "standby", "own": true },
            { "group": 2, "state": "active-optimized", "own": false },
        ])
    );

    // Transitioning: NOT READY, 04h/0Ah for what it refuses.
    ok(&socket, &["alua", "set", "1", "transitioning"]);
    sees_state_changed(&mut host, &TUR);
    assert_eq!(
        answer(&mut host, &READ),
        (CHECK_CONDITION, NOT_READY, 0x04, 0x0A)
    );
    assert_eq!(groups(&mut host), [(1, 0xF), (2, 0x0)]);

    // Back to active/optimized: served again after the unit attention.
    ok(&socket, &["alua", "set", "1", "active-optimized"]);
    sees_state_changed(&mut host, &READ);
    assert_eq!(answer(&mut host, &READ), (0, 0, 0, 0));

    // Refused with one line, changing nothing: an unknown group, an unknown state.
    let (success, _, err) = admin(&socket, &["alua", "set", "9", "standby"]);
    assert!(!success && err.contains("no target port group 9"), "{err}");
    let (success, _, err) = admin(&socket, &["alua", "set", "1", "sleepy"]);
    assert!(!success && err.contains("unknown ALUA state"), "{err}");
    assert_eq!(answer(&mut host, &READ), (0, 0, 0, 0));

    // A change of the file applied whole (`admin apply`) changes states live as well.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace("2:active-optimized", "2:unavailable");
    let edited = dir.path().join("edited.toml");
    std::fs::write(&edited, text).unwrap();
    let out = ok(&socket, &["apply", edited.to_str().unwrap()]);
    assert!(out.contains("alua_peer"), "{out}");
    sees_state_changed(&mut other, &TUR);
    assert_eq!(groups(&mut other), [(1, 0x0), (2, 0x3)]);
}

#[test]
fn a_state_set_live_over_command_line_groups_holds_until_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let daemon = Running::start(
        &[
            "--bstype",
            "memory",
            "--size",
            "1M",
            "--alua-group",
            "3",
            "--alua-peer",
            "4:active-optimized",
            "--control-socket",
            socket.to_str().unwrap(),
        ],
        &[],
    );
    let mut host = daemon.connect();
    assert_eq!(groups(&mut host), [(3, 0x0), (4, 0x0)]);
    let out = ok(&socket, &["alua", "set", "3", "unavailable"]);
    assert!(out.contains("until the next start"), "{out}");
    sees_state_changed(&mut host, &TUR);
    assert_eq!(
        answer(&mut host, &READ),
        (CHECK_CONDITION, NOT_READY, 0x04, 0x0C)
    );
    assert_eq!(groups(&mut host), [(3, 0x3), (4, 0x0)]);
    // Setting the state a group is in raises nothing.
    ok(&socket, &["alua", "set", "3", "unavailable"]);
    assert_eq!(groups(&mut host), [(3, 0x3), (4, 0x0)]);
}
