//! Two gateways (two daemon processes, each with its own portal) exporting the same LUN
//! file with `--gateway-id`: persistent reservations are kept on the storage and changed
//! under its metadata lock, so what one gateway's hosts do is what the other's see. Run
//! on a plain file (OFD locks) and on a glfs LUN of the fake volume (Gluster POSIX locks
//! under per-gateway lock owners, two `glfs_t`s in two processes).
//!
//! CDBs and parameter lists are written out from SPC-4: PERSISTENT RESERVE OUT (table
//! 169) and its parameter list (table 171), PERSISTENT RESERVE IN READ KEYS (table 165)
//! and READ RESERVATION (table 167), reservation types (table 175).

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;
use testkit::fake::FakeRoot;
use testkit::initiator::Initiator;

const KEY_A: u64 = 0x0A0A_0A0A_0000_0001;
const KEY_B: u64 = 0x0B0B_0B0B_0000_0002;
/// Write Exclusive – Registrants Only (SPC-4 table 175).
const WE_RO: u8 = 5;
const RESERVATION_CONFLICT: u8 = 0x18;
/// How long a change on one gateway may take to reach the other's data path: the
/// documented refresh bound (1 s) with a wide margin for a loaded machine.
const REFRESH_PATIENCE: Duration = Duration::from_secs(30);

/// Where the two gateways' LUN lives.
enum Storage {
    File(tempfile::TempDir),
    Glfs(FakeRoot),
    /// A file of its own on the live volume, through the real libgfapi.
    Live {
        /// `volume@host`.
        volume: String,
        /// The brick's directory on this host.
        brick: PathBuf,
        /// The LUN file's name.
        file: String,
        /// It and the metadata the gateways keep beside it, removed from the volume when
        /// this is dropped (after the gateways, which are dropped first).
        _remove: testkit::gluster::RemoveOnDrop,
    },
}

impl Storage {
    fn file() -> Storage {
        Storage::File(tempfile::tempdir().unwrap())
    }

    fn glfs() -> Storage {
        Storage::Glfs(FakeRoot::new())
    }

    /// The live volume `cargo xtask test-gluster` names (`GLUSTER_TEST_VOLUME`,
    /// `GLUSTER_TEST_BRICK`), a new file each run.
    fn live() -> Storage {
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} is not set: run `cargo xtask test-gluster`"))
        };
        Storage::live_on(var("GLUSTER_TEST_VOLUME"), var("GLUSTER_TEST_BRICK"))
    }

    /// A file of its own on the live volume with mandatory locks
    /// (`GLUSTER_TEST_FEATURES_VOLUME`, `GLUSTER_TEST_FEATURES_BRICK`, set by `cargo
    /// xtask test-gluster --fixture native`); `None` where there is none.
    fn live_with_mandatory_locks() -> Option<Storage> {
        let volume = std::env::var("GLUSTER_TEST_FEATURES_VOLUME").ok()?;
        let brick = std::env::var("GLUSTER_TEST_FEATURES_BRICK").ok()?;
        Some(Storage::live_on(volume, brick))
    }

    fn live_on(volume: String, brick: String) -> Storage {
        let file = format!("gateways-{}.img", std::process::id());
        // The LUN, its reservations, the gateways' acknowledgements and the ALUA record,
        // and the temporary files of metadata writes a gateway killed between write and
        // rename left (each write's name is its own: found on the brick).
        let made =
            ["", ".pr", ".pr-lu", ".pr-acks", ".alua", ".mode"].map(|s| format!("{file}{s}"));
        let remove = testkit::gluster::RemoveOnDrop::new(&volume, made).with_matching(
            Path::new(&brick),
            &format!("{file}."),
            ".tmp",
        );
        Storage::Live {
            volume,
            brick: PathBuf::from(brick),
            file,
            _remove: remove,
        }
    }

    /// A gateway named `id` exporting the LUN.
    fn gateway(&self, id: &str) -> Running {
        self.gateway_with(id, &[])
    }

    /// [`Storage::gateway`] with more arguments.
    fn gateway_with(&self, id: &str, extra: &[&str]) -> Running {
        let mut args = vec!["--gateway-id", id];
        args.extend_from_slice(extra);
        match self {
            Storage::File(dir) => {
                let lun = dir.path().join("lun.img");
                Running::start(
                    &[
                        "--bstype",
                        "file",
                        "--backing-store",
                        lun.to_str().unwrap(),
                        "--size",
                        "4M",
                    ]
                    .into_iter()
                    .chain(args)
                    .collect::<Vec<_>>(),
                    &[],
                )
            }
            Storage::Glfs(root) => glfs_target(root, &args),
            Storage::Live { volume, file, .. } => {
                let lun = format!("{volume}:{file}");
                let mut all = vec!["--bstype", "glfs", "--backing-store", &lun, "--size", "4M"];
                all.extend(args);
                Running::start(&all, &[])
            }
        }
    }

    /// The LUN file both gateways export, as the host sees it.
    fn lun_file(&self) -> PathBuf {
        match self {
            Storage::File(dir) => dir.path().join("lun.img"),
            Storage::Glfs(root) => root.path().join("vol").join("lun.img"),
            // What the brick holds (one brick, or one replica of it).
            Storage::Live { brick, file, .. } => brick.join(file),
        }
    }

    /// The reservations as kept beside the LUN file: `<lun>.pr`, then `<lun>.pr-lu`
    /// (the RESERVE holder and the resets) if there is one.
    fn saved(&self) -> String {
        let mut text = self.saved_pr();
        let mut path = self.lun_file().into_os_string();
        path.push(".pr-lu");
        text += &std::fs::read_to_string(path).unwrap_or_default();
        text
    }

    /// `<lun>.pr` alone: what gateways of earlier releases read.
    fn saved_pr(&self) -> String {
        let mut path = self.lun_file().into_os_string();
        path.push(".pr");
        std::fs::read_to_string(path).unwrap()
    }
}

fn host(gateway: &Running, name: &str) -> Initiator {
    login_as(gateway, IQN, &format!("iqn.2026-11.test:{name}"), None).expect("login")
}

/// [`host`] on a gateway in standby: logged in without the TEST UNIT READY libiscsi sends
/// after login (a standby port refuses it with NOT READY, as SPC-4 5.16.2.4.4 says); the
/// unit attentions of the new nexus are taken by REPORT TARGET PORT GROUPS instead, which
/// standby serves (what a multipath initiator sends first).
fn standby_host(gateway: &Running, name: &str) -> Initiator {
    let mut opts = login_opts(&format!("iqn.2026-11.test:{name}"), None);
    opts.test_unit_ready_on_connect = false;
    let mut ini = login_with(gateway, IQN, &opts).expect("login");
    let rtpg = [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    for _ in 0..4 {
        let out = ini.raw_command(&rtpg, &[], 256).unwrap();
        if out.sense_key != 0x6 {
            assert!(out.is_good(), "{out:?}");
            break;
        }
    }
    ini
}

/// PERSISTENT RESERVE OUT `sa` with TYPE `kind`, RESERVATION KEY `key` and SERVICE
/// ACTION RESERVATION KEY `sa_key` (24-byte parameter list, APTPL off): the status.
fn prout(ini: &mut Initiator, sa: u8, kind: u8, key: u64, sa_key: u64) -> u8 {
    prout_with(ini, sa, kind, key, sa_key, 0)
}

/// READ KEYS: the registered keys, in order.
fn read_keys(ini: &mut Initiator) -> Vec<u64> {
    let out = ini
        .raw_command(&[0x5E, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096)
        .unwrap();
    assert!(out.is_good(), "{out:?}");
    let d = out.data;
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    d[8..8 + len]
        .chunks(8)
        .map(|k| u64::from_be_bytes(k.try_into().unwrap()))
        .collect()
}

/// Writes from `ini` until one is refused with RESERVATION CONFLICT (true), or the
/// patience runs out (false). Sense (a unit attention) does not stop it.
fn fenced_within(ini: &mut Initiator, patience: Duration) -> bool {
    within(patience, || write_status(ini) == RESERVATION_CONFLICT)
}

/// Asks `done` every 50 ms until it holds (true), or `patience` runs out (false).
fn within(patience: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + patience;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn reservations_are_one_state_across_gateways(storage: Storage) {
    let gw_a = storage.gateway("gateway-a");
    let gw_b = storage.gateway("gateway-b");
    assert_ne!(gw_a.portal, gw_b.portal, "each gateway has its own portal");
    let mut a = host(&gw_a, "host-a");
    let mut b = host(&gw_b, "host-b");

    // Each registers through its own gateway; both see both keys.
    assert_eq!(
        prout(&mut a, 0x00, 0, 0, KEY_A),
        0,
        "A registers on gateway A"
    );
    assert_eq!(
        prout(&mut b, 0x00, 0, 0, KEY_B),
        0,
        "B registers on gateway B"
    );
    assert_eq!(read_keys(&mut a), [KEY_A, KEY_B]);
    assert_eq!(read_keys(&mut b), [KEY_A, KEY_B]);

    // A reserves on gateway A; B's next PERSISTENT RESERVE IN on gateway B sees it.
    assert_eq!(prout(&mut a, 0x01, WE_RO, KEY_A, 0), 0, "A reserves");
    assert_eq!(read_reservation(&mut b), Some((KEY_A, WE_RO)));
    assert_eq!(write_status(&mut b), 0, "a registrant writes under WE_RO");
    // A second reservation from B conflicts with A's, held on the other gateway.
    assert_eq!(prout(&mut b, 0x01, WE_RO, KEY_B, 0), RESERVATION_CONFLICT);

    // A preempts B on gateway A. Without any further reservation command on gateway B,
    // its data path fences B within the refresh bound.
    assert_eq!(prout(&mut a, 0x04, WE_RO, KEY_A, KEY_B), 0, "A preempts B");
    assert!(
        fenced_within(&mut b, REFRESH_PATIENCE),
        "gateway B never fenced the preempted host"
    );
    assert_eq!(write_status(&mut a), 0, "the holder still writes");
    assert_eq!(read_keys(&mut b), [KEY_A]);
    // B's reads are still allowed (Write Exclusive types).
    let read = b
        .raw_command(&[0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0], &[], 512)
        .unwrap();
    assert!(read.is_good(), "{read:?}");

    // The state is on the storage beside the LUN file, APTPL or not.
    let saved = storage.saved();
    assert!(saved.contains("iqn.2026-11.test:host-a"), "{saved}");
    assert!(
        !saved
            .lines()
            .any(|l| l.starts_with("register") && l.contains("iqn.2026-11.test:host-b")),
        "{saved}"
    );

    // A gateway started now finds it; B releases nothing it does not hold.
    drop(b);
    let gw_c = storage.gateway("gateway-c");
    let mut c = host(&gw_c, "host-b");
    assert_eq!(read_reservation(&mut c), Some((KEY_A, WE_RO)));
    assert_eq!(write_status(&mut c), RESERVATION_CONFLICT);

    // A clears it on gateway A: the others' hosts may write again.
    assert_eq!(prout(&mut a, 0x03, 0, KEY_A, 0), 0, "A clears");
    assert_eq!(read_keys(&mut c), Vec::<u64>::new());
    assert_eq!(write_status(&mut c), 0);
}

/// REGISTER `key`, retried as initiators do while the answer is ABORTED COMMAND (the
/// gateway did not get the lock within its bound on a loaded machine); anything else but
/// GOOD fails the test.
fn register_retrying(ini: &mut Initiator, key: u64) {
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&key.to_be_bytes());
    for _ in 0..10 {
        let out = ini
            .raw_command(&[0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], &p, 0)
            .unwrap();
        if out.status == 0 {
            return;
        }
        assert_eq!(
            (out.status, out.sense_key),
            (2, 0x0B),
            "register {key:#x}: {out:?}"
        );
    }
    panic!("register {key:#x}: still ABORTED COMMAND after 10 tries");
}

/// Registrations made at the same time through both gateways are all kept: the lock
/// orders the read-modify-write of the state, so no gateway writes back a state that
/// misses the other's change.
fn concurrent_registrations_on_both_gateways_are_all_kept(storage: Storage) {
    const PER_GATEWAY: u64 = 6;
    // No NOP-In pings: a host logged in here answers only while it runs a command (the
    // test initiator is synchronous), and it may wait long for the others' registrations
    // before its own (each waits for the other gateway's acknowledgement).
    let quiet = ["--nop-in-interval", "0"];
    let gateways = [
        storage.gateway_with("gateway-a", &quiet),
        storage.gateway_with("gateway-b", &quiet),
    ];
    let keys: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = gateways
            .iter()
            .enumerate()
            .map(|(g, gateway)| {
                s.spawn(move || {
                    // Every host logs in first, then all register at once.
                    let mut hosts: Vec<(u64, Initiator)> = (0..PER_GATEWAY)
                        .map(|i| {
                            let key = 0x1000 * (g as u64 + 1) + i;
                            (key, host(gateway, &format!("gw{g}-host{i}")))
                        })
                        .collect();
                    for (key, ini) in &mut hosts {
                        register_retrying(ini, *key);
                    }
                    hosts.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut check = host(&gateways[1], "checker");
    let mut seen = read_keys(&mut check);
    seen.sort_unstable();
    let mut wanted = keys;
    wanted.sort_unstable();
    assert_eq!(seen, wanted);
}

/// Status, sense key, ASC and ASCQ.
type Outcome = (u8, u8, u8, u8);

/// The [`Outcome`] of TEST UNIT READY (SPC-4 6.37: six zero bytes).
fn tur_outcome(ini: &mut Initiator) -> Outcome {
    let out = ini.raw_command(&[0; 6], &[], 0).unwrap();
    (out.status, out.sense_key, out.asc, out.ascq)
}

/// TEST UNIT READY through `ini` every 50 ms while it is GOOD: the first other outcome,
/// then the next one; `None` when nothing else came within [`REFRESH_PATIENCE`].
fn first_condition(ini: &mut Initiator) -> Option<(Outcome, Outcome)> {
    let until = Instant::now() + REFRESH_PATIENCE;
    while Instant::now() < until {
        let first = tur_outcome(ini);
        if first.0 != 0 {
            return Some((first, tur_outcome(ini)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A task management function `function` (RFC 7143 11.5.1: 5 LOGICAL UNIT RESET, 6 TARGET
/// WARM RESET) on LUN 0 through a raw session of its own on `gateway`: function complete.
fn reset_through(gateway: &Running, function: u8) {
    let (mut raw, exp_stat_sn) = raw_session(gateway.portal, IQN);
    send_pdu(
        &mut raw,
        tmf_request(function, 0, 0x50, 0xffff_ffff, 1, exp_stat_sn, 0),
        &[],
    );
    let (resp, _) = recv_pdu(&mut raw);
    // Task Management Function Response (0x22), Response 0: function complete.
    assert_eq!((resp[0] & 0x3f, resp[2]), (0x22, 0), "function {function}");
}

/// CHECK CONDITION (02h), UNIT ATTENTION (6h), BUS DEVICE RESET FUNCTION OCCURRED (29h/03h,
/// SPC-4 annex D): SAM-5 6.3.3 has every I_T nexus of the LU told of a LOGICAL UNIT RESET.
const UA_BUS_DEVICE_RESET: (u8, u8, u8, u8) = (0x02, 0x6, 0x29, 0x03);
/// CHECK CONDITION, UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h):
/// what a target reset gives every nexus of this target.
const UA_POWER_ON_RESET: (u8, u8, u8, u8) = (0x02, 0x6, 0x29, 0x00);

/// A LOGICAL UNIT RESET, and a target reset, through gateway A reach the sessions of
/// gateway B on the shared LU: B's host's next command after gateway B loaded the state
/// reports the reset's unit attention (then commands run), as a host on gateway A's own
/// would. The count of resets is in `<lun>.pr-lu`, never in `<lun>.pr`.
fn a_reset_through_one_gateway_reaches_the_other(storage: Storage) {
    let quiet = ["--nop-in-interval", "0"];
    let gw_a = storage.gateway_with("gateway-a", &quiet);
    let gw_b = storage.gateway_with("gateway-b", &quiet);
    let mut b = host(&gw_b, "host-b");
    assert_eq!(tur_outcome(&mut b), (0, 0, 0, 0));

    reset_through(&gw_a, 5);
    assert_eq!(
        first_condition(&mut b),
        Some((UA_BUS_DEVICE_RESET, (0, 0, 0, 0))),
        "gateway B: {}",
        gw_b.log()
    );
    let saved = storage.saved();
    assert!(saved.contains("\nreset 1 logical-unit\n"), "{saved}");
    assert!(!storage.saved_pr().contains("reset"));

    reset_through(&gw_a, 6);
    assert_eq!(
        first_condition(&mut b),
        Some((UA_POWER_ON_RESET, (0, 0, 0, 0))),
        "gateway B: {}",
        gw_b.log()
    );
    // Told once: B's host goes on without another.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(tur_outcome(&mut b), (0, 0, 0, 0));
    assert!(write_status(&mut b) == 0);
}

/// The caching mode page (SBC-3 table 188) through `ini`, current values (PC 00b), after
/// the 4-byte MODE SENSE(6) header; `None` while a condition is reported instead.
fn caching_page(ini: &mut Initiator) -> Option<Vec<u8>> {
    let out = ini
        .raw_command(&[0x1A, 0x08, 0x08, 0, 255, 0], &[], 255)
        .unwrap();
    (out.status == 0).then(|| out.data[4..].to_vec())
}

/// MODE SELECT(6) with SP (SPC-4 6.9: PF and SP in byte 1) of the caching page with WCE
/// off (byte 2 bit 2), as Linux and Windows send it where the page is saveable: the write
/// cache switched off through one gateway is off through the other within a refresh round
/// (a host gets MODE PARAMETERS CHANGED there) and after both restart, from `<lun>.mode`.
fn a_write_cache_saved_off_through_one_gateway_is_off_through_every_one(storage: Storage) {
    let quiet = ["--nop-in-interval", "0"];
    let control = tempfile::tempdir().unwrap();
    let sockets = ["a", "b"].map(|g| control.path().join(format!("{g}.sock")));
    let with_socket = |i: usize| {
        let mut args = quiet.to_vec();
        args.extend(["--control-socket", sockets[i].to_str().unwrap()]);
        args
    };
    let gw_a = storage.gateway_with("gateway-a", &with_socket(0));
    let gw_b = storage.gateway_with("gateway-b", &with_socket(1));
    // What `admin lun show` says of the write cache on each gateway.
    let shown = |socket: &std::path::Path| {
        let shown: serde_json::Value =
            serde_json::from_str(&ok(socket, &["lun", "show", IQN, "0", "--json"])).unwrap();
        shown["write_cache"].clone()
    };
    assert_eq!(shown(&sockets[1]), true);
    let mut a = host(&gw_a, "host-a");
    let mut b = host(&gw_b, "host-b");
    assert_eq!(tur_outcome(&mut b), (0, 0, 0, 0));
    let page = caching_page(&mut a).expect("MODE SENSE");
    assert_eq!(page[0], 0x88, "caching page, PS: saveable");
    assert_eq!(page[2] & 0x04, 0x04, "WCE on by default");

    let mut list = vec![0u8, 0, 0, 0];
    list.extend(&page);
    list[4] &= 0x7F; // PS is reserved in MODE SELECT
    list[4 + 2] &= !0x04;
    let out = a
        .raw_command(&[0x15, 0x11, 0, 0, list.len() as u8, 0], &list, 0)
        .unwrap();
    assert!(out.is_good(), "MODE SELECT with SP: {out:?}");
    let mut kept = storage.lun_file().into_os_string();
    kept.push(".mode");
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        "glfs-iscsi-mode 1\nwce 0\nswp 0\nd_sense 0\n"
    );

    assert_eq!(
        first_condition(&mut b).map(|(first, _)| first),
        Some((0x02, 0x06, 0x2A, 0x01)),
        "MODE PARAMETERS CHANGED through gateway B: {}",
        gw_b.log()
    );
    assert_eq!(
        caching_page(&mut b).expect("MODE SENSE")[2] & 0x04,
        0,
        "WCE off on B"
    );
    for socket in &sockets {
        assert_eq!(shown(socket), false, "admin lun show through {socket:?}");
    }

    drop((a, b, gw_a, gw_b));
    let gw_c = storage.gateway_with("gateway-c", &quiet);
    let mut c = host(&gw_c, "host-c");
    tur_outcome(&mut c);
    let page = caching_page(&mut c).expect("MODE SENSE");
    assert_eq!(
        (page[0], page[2] & 0x04),
        (0x88, 0),
        "kept across the restart"
    );
}

#[test]
fn a_write_cache_saved_off_through_one_file_gateway_is_off_through_every_one() {
    a_write_cache_saved_off_through_one_gateway_is_off_through_every_one(Storage::file());
}

#[test]
fn a_write_cache_saved_off_through_one_glfs_gateway_is_off_through_every_one() {
    a_write_cache_saved_off_through_one_gateway_is_off_through_every_one(Storage::glfs());
}

#[test]
#[ignore = "live: needs GLUSTER_TEST_VOLUME and GLUSTER_TEST_BRICK (cargo xtask test-gluster)"]
fn live_a_write_cache_saved_off_through_one_gluster_gateway_is_off_through_every_one() {
    a_write_cache_saved_off_through_one_gateway_is_off_through_every_one(Storage::live());
}

#[test]
fn a_reset_through_one_file_gateway_reaches_the_other() {
    a_reset_through_one_gateway_reaches_the_other(Storage::file());
}

#[test]
fn a_reset_through_one_glfs_gateway_reaches_the_other() {
    a_reset_through_one_gateway_reaches_the_other(Storage::glfs());
}

/// The commands of the session of `initiator` on the gateway whose control socket is
/// `socket` that were handed on (to the store, or answered) and not yet answered or
/// aborted (`admin session list`, its `in_flight`).
fn in_flight(socket: &std::path::Path, initiator: &str) -> u64 {
    let listed: serde_json::Value =
        serde_json::from_str(&ok(socket, &["session", "list", "--json"])).unwrap();
    let session = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["initiator"] == initiator)
        .unwrap_or_else(|| panic!("no session of {initiator}: {listed}"));
    session["in_flight"].as_u64().unwrap()
}

/// LOGICAL UNIT RESET through gateway A reaches a task of gateway B's session that B's
/// store holds (the fake volume hangs B's WRITE of LBA 16): a reset ends all tasks in all
/// task sets of the LU (SAM-5 7.8), B's too, which B learns at its refresh rounds. With
/// TAS 0 (Control mode page) an aborted task of another I_T nexus ends without a response
/// (SAM-5 5.6): B's host never gets one for the write, also once the store lets it go, and
/// its next command but those answered before B loaded the reset reports BUS DEVICE RESET
/// FUNCTION OCCURRED (UNIT ATTENTION 6h, 29h/03h), then commands run. The write was handed
/// to the store before the reset (B listed it in flight), and nothing recalls a request a
/// store holds (the reset changes no reservation, so nothing is fenced): when the volume
/// lets it go it is carried out, and the block reads as the write's data, whole, through
/// both gateways (SAM-5 5.6 leaves an aborted command's effect on the medium open; here it
/// is determined by the store having it).
#[test]
fn a_reset_through_one_glfs_gateway_aborts_a_task_the_others_store_holds() {
    const CHECK_CONDITION: u8 = 0x02;
    const LBA: u8 = 16;
    let storage = Storage::glfs();
    let Storage::Glfs(root) = &storage else {
        unreachable!()
    };
    let control = tempfile::tempdir().unwrap();
    let socket = control.path().join("b.sock");
    let quiet = ["--nop-in-interval", "0", "--command-timeout", "0"];
    let gw_a = storage.gateway_with("gateway-a", &quiet);
    let mut b_args = quiet.to_vec();
    b_args.extend(["--control-socket", socket.to_str().unwrap()]);
    let gw_b = storage.gateway_with("gateway-b", &b_args);
    let logs = || format!("A: {}\nB: {}", gw_a.log(), gw_b.log());
    let initiator = "iqn.2026-11.test:host-b";
    let mut b = RawHost::login_as(&gw_b, initiator);
    // The new nexus's own unit attention (power on) first.
    let mut itt = 1;
    while b.run(&[0; 6], itt, &[]).0 != 0 {
        itt += 1;
        assert!(itt < 5, "TEST UNIT READY never GOOD\n{}", logs());
    }
    let at = u64::from(LBA) * 512;
    let before = std::fs::read(storage.lun_file()).unwrap()[at as usize..][..512].to_vec();
    assert_eq!(before, vec![0; 512]);

    root.set_rules(&[testkit::fake::FaultRule::on(&["write"])
        .path("/lun.img")
        .offset(at, at + 512)
        .hang()]);
    let data = pattern(10, 512);
    b.send(&[0x2A, 0, 0, 0, 0, LBA, 0, 0, 1, 0], 10, &data, 0);
    let deadline = Instant::now() + REFRESH_PATIENCE;
    while in_flight(&socket, initiator) != 1 {
        assert!(
            Instant::now() < deadline,
            "the write never reached B's store"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    reset_through(&gw_a, 5);
    // B's host, until B loaded the reset: every answer is its TEST UNIT READY's (`run`
    // checks the ITT), none the write's.
    let deadline = Instant::now() + REFRESH_PATIENCE;
    let mut itt = 20;
    let first = loop {
        let answer = b.run(&[0; 6], itt, &[]);
        itt += 1;
        if answer.0 != 0 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "B never told of the reset\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        first,
        (CHECK_CONDITION, Some((0x6, 0x29, 0x03))),
        "BUS DEVICE RESET FUNCTION OCCURRED\n{}",
        logs()
    );
    assert_eq!(b.run(&[0; 6], itt, &[]), (0, None));
    assert_eq!(
        in_flight(&socket, initiator),
        0,
        "the write was not aborted"
    );

    // The volume lets the write go: carried out, whole.
    root.clear();
    let deadline = Instant::now() + REFRESH_PATIENCE;
    loop {
        let now = std::fs::read(storage.lun_file()).unwrap()[at as usize..][..512].to_vec();
        if now == data {
            break;
        }
        assert_eq!(now, before, "neither the old block nor the write's");
        assert!(Instant::now() < deadline, "the held write never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its completion answers nothing: the next PDU answers B's ping, then B's command.
    send_pdu(&mut b.stream, nop_out(30, b.cmd_sn, b.exp_stat_sn), b"ping");
    let (bhs, pong) = recv_pdu(&mut b.stream);
    assert_eq!(
        bhs[0] & 0x3f,
        0x20,
        "NOP-In, not a response to the aborted write"
    );
    assert_eq!((be32(&bhs[16..]), &pong[..]), (30, &b"ping"[..]));
    assert_eq!(b.run(&[0; 6], 31, &[]), (0, None));
    // Both gateways read the block as written.
    let mut a = host(&gw_a, "host-a");
    let read = [0x28, 0, 0, 0, 0, LBA, 0, 0, 1, 0];
    assert_eq!(a.raw_command(&read, &[], 512).unwrap().data, data);
    b.send(&read, 32, &[], 512);
    let (bhs, read_data) = recv_pdu(&mut b.stream);
    assert_eq!(bhs[0] & 0x3f, 0x25, "Data-In");
    assert_eq!(read_data, data);
}

#[test]
#[ignore = "live: needs GLUSTER_TEST_VOLUME and GLUSTER_TEST_BRICK (cargo xtask test-gluster)"]
fn live_a_reset_through_one_gluster_gateway_reaches_the_other() {
    a_reset_through_one_gateway_reaches_the_other(Storage::live());
}

#[test]
fn reservations_are_one_state_across_file_gateways() {
    reservations_are_one_state_across_gateways(Storage::file());
}

#[test]
fn reservations_are_one_state_across_glfs_gateways() {
    reservations_are_one_state_across_gateways(Storage::glfs());
}

#[test]
fn concurrent_registrations_through_file_gateways_are_all_kept() {
    concurrent_registrations_on_both_gateways_are_all_kept(Storage::file());
}

#[test]
fn concurrent_registrations_through_glfs_gateways_are_all_kept() {
    concurrent_registrations_on_both_gateways_are_all_kept(Storage::glfs());
}

/// RESERVE(6) (SPC-2 7.21) and RELEASE(6) (7.17): no third party, no extent.
const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const RELEASE6: [u8; 6] = [0x17, 0, 0, 0, 0, 0];

/// The status of `cdb` (no data either way).
fn status(ini: &mut Initiator, cdb: &[u8]) -> u8 {
    ini.raw_command(cdb, &[], 0).unwrap().status
}

/// Writes from `ini` until one is GOOD (true), or the patience runs out (false). Sense (a
/// unit attention) and RESERVATION CONFLICT do not stop it.
fn writes_within(ini: &mut Initiator, patience: Duration) -> bool {
    within(patience, || write_status(ini) == 0)
}

/// Whether the state on the storage holds no RESERVE(6/10) within [`REFRESH_PATIENCE`]
/// (a gateway's data path follows its release a moment before the write lands).
fn released_on_storage(storage: &Storage) -> bool {
    within(REFRESH_PATIENCE, || {
        !storage.saved().contains("legacy-reserve")
    })
}

/// RESERVE(6/10) on a shared LU is one reservation for every gateway (SPC-2 5.5.1): a
/// host's RESERVE through gateway A keeps a host on gateway B out (all but INQUIRY,
/// REPORT LUNS and REQUEST SENSE conflict), and it ends with RELEASE, with the holding
/// session (on its gateway), and with a LOGICAL UNIT RESET through any gateway.
fn a_reserve_holds_across_gateways(storage: Storage) {
    let quiet = ["--nop-in-interval", "0"];
    let gw_a = storage.gateway_with("gateway-a", &quiet);
    let gw_b = storage.gateway_with("gateway-b", &quiet);
    let mut a = host(&gw_a, "host-a");
    let mut b = host(&gw_b, "host-b");
    // A raw session on gateway A for the reset at the end, logged in while nothing is
    // reserved (its login's TEST UNIT READY would conflict).
    let (mut raw, exp_stat_sn) = raw_session(gw_a.portal, IQN);

    assert_eq!(status(&mut a, &RESERVE6), 0, "A reserves through gateway A");
    let saved = storage.saved();
    assert!(
        saved.contains("legacy-reserve gateway-a ") && saved.contains("iqn.2026-11.test:host-a"),
        "{saved}"
    );
    // Not in `<lun>.pr`, which gateways of the release before read and whose parser
    // refuses a line it does not know.
    assert!(!storage.saved_pr().contains("legacy-reserve"));
    assert!(
        fenced_within(&mut b, REFRESH_PATIENCE),
        "gateway B never kept host B out"
    );
    assert_eq!(status(&mut b, &RESERVE6), RESERVATION_CONFLICT);
    let inquiry = b.raw_command(&[0x12, 0, 0, 0, 96, 0], &[], 96).unwrap();
    assert!(inquiry.is_good(), "INQUIRY passes: {inquiry:?}");
    assert_eq!(write_status(&mut a), 0, "the holder writes");

    // RELEASE by the holder: B writes again.
    assert_eq!(status(&mut a, &RELEASE6), 0);
    assert!(writes_within(&mut b, REFRESH_PATIENCE), "released");

    // Held again, then the holder's session ends: gateway A writes the release.
    assert_eq!(status(&mut a, &RESERVE6), 0);
    assert!(fenced_within(&mut b, REFRESH_PATIENCE));
    drop(a);
    assert!(
        writes_within(&mut b, REFRESH_PATIENCE),
        "released when the holding session ended"
    );
    assert!(released_on_storage(&storage), "{}", storage.saved());

    // B holds it through gateway B; a LOGICAL UNIT RESET (function 5) through gateway A
    // ends it there too.
    assert_eq!(status(&mut b, &RESERVE6), 0);
    let mut a = host(&gw_a, "host-a");
    assert!(fenced_within(&mut a, REFRESH_PATIENCE));
    send_pdu(
        &mut raw,
        tmf_request(5, 0, 0x50, 0xffff_ffff, 1, exp_stat_sn, 0),
        &[],
    );
    let (resp, _) = recv_pdu(&mut raw);
    // Task Management Function Response (0x22), Response 0: function complete.
    assert_eq!((resp[0] & 0x3f, resp[2]), (0x22, 0));
    assert!(
        writes_within(&mut a, REFRESH_PATIENCE),
        "released by the reset through the other gateway"
    );
    assert!(released_on_storage(&storage), "{}", storage.saved());

    // A holds it through gateway A, and gateway A dies (SIGKILL): its sessions are gone,
    // and gateway B, finding A's lock free, ends the reservation (SPC-2 5.5.1).
    assert_eq!(status(&mut a, &RESERVE6), 0);
    assert!(fenced_within(&mut b, REFRESH_PATIENCE));
    drop(gw_a);
    drop((a, raw));
    assert!(
        writes_within(&mut b, REFRESH_PATIENCE),
        "released when the holding gateway died"
    );
    assert!(released_on_storage(&storage), "{}", storage.saved());
}

#[test]
fn a_reserve_holds_across_file_gateways() {
    a_reserve_holds_across_gateways(Storage::file());
}

#[test]
fn a_reserve_holds_across_glfs_gateways() {
    a_reserve_holds_across_gateways(Storage::glfs());
}

/// APTPL (PERSISTENT RESERVE OUT parameter list byte 20 bit 0, SPC-4 table 171).
const APTPL: u8 = 0x01;

/// SPC-4 5.14.5: registrations made without APTPL do not survive the LU's power loss.
/// The LU is every gateway exporting it: one gateway restarting while another runs keeps
/// everything; every gateway stopping is the LU's power loss, and the first gateway to
/// start again finds nothing registered made without APTPL, nor any RESERVE(6).
fn every_gateway_stopping_is_the_lus_power_loss(storage: Storage) {
    let gw_a = storage.gateway("gateway-a");
    let gw_b = storage.gateway("gateway-b");
    let mut a = host(&gw_a, "host-a");
    assert_eq!(
        prout(&mut a, 0x00, 0, 0, KEY_A),
        0,
        "A registers, APTPL off"
    );
    assert_eq!(prout(&mut a, 0x01, WE_RO, KEY_A, 0), 0, "A reserves");

    // Gateway B restarts while A runs: everything is kept.
    drop(gw_b);
    let gw_b = storage.gateway("gateway-b");
    let mut b = host(&gw_b, "host-b");
    assert_eq!(read_keys(&mut b), [KEY_A]);
    assert_eq!(read_reservation(&mut b), Some((KEY_A, WE_RO)));
    assert_eq!(write_status(&mut b), RESERVATION_CONFLICT);

    // Every gateway stops: nothing made without APTPL is left.
    drop((a, b, gw_a, gw_b));
    let gw_b = storage.gateway("gateway-b");
    gw_b.wait_for_log_line(&["no other gateway exports the LUN"]);
    let mut b = host(&gw_b, "host-b");
    assert_eq!(read_keys(&mut b), Vec::<u64>::new());
    assert_eq!(read_reservation(&mut b), None);
    assert_eq!(write_status(&mut b), 0);
    let saved = storage.saved();
    assert!(!saved.contains("register"), "{saved}");

    // With APTPL, registrations and the reservation are kept; a RESERVE(6) never is.
    assert_eq!(prout_with(&mut b, 0x00, 0, 0, KEY_B, APTPL), 0);
    assert_eq!(prout(&mut b, 0x01, WE_RO, KEY_B, 0), 0);
    drop((b, gw_b));
    let gw_a = storage.gateway("gateway-a");
    let mut a = host(&gw_a, "host-a");
    assert_eq!(read_keys(&mut a), [KEY_B]);
    assert_eq!(read_reservation(&mut a), Some((KEY_B, WE_RO)));
    assert_eq!(write_status(&mut a), RESERVATION_CONFLICT);
    assert_eq!(prout(&mut a, 0x00, 0, 0, KEY_A), 0);
    assert_eq!(prout(&mut a, 0x03, 0, KEY_A, 0), 0, "A clears");
    assert_eq!(status(&mut a, &RESERVE6), 0, "A reserves with RESERVE(6)");
    drop((a, gw_a));
    let gw_b = storage.gateway("gateway-b");
    let mut b = host(&gw_b, "host-b");
    assert_eq!(write_status(&mut b), 0, "the RESERVE went with the power");
}

#[test]
fn every_file_gateway_stopping_is_the_lus_power_loss() {
    every_gateway_stopping_is_the_lus_power_loss(Storage::file());
}

#[test]
fn every_glfs_gateway_stopping_is_the_lus_power_loss() {
    every_gateway_stopping_is_the_lus_power_loss(Storage::glfs());
}

#[test]
fn a_bad_gateway_id_is_refused_with_one_line() {
    let out = run_to_exit(&[
        "--bstype",
        "memory",
        "--size",
        "1M",
        "--gateway-id",
        "gw one",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid gateway lock owner \"gw one\""),
        "{err}"
    );
}

/// Gateway A in target port group 1, active/optimized; gateway B in group 2, standby.
fn active_and_standby(storage: &Storage) -> (Running, Running) {
    let gw_a = storage.gateway_with(
        "gateway-a",
        &["--alua-group", "1", "--alua-peer", "2:standby"],
    );
    let gw_b = storage.gateway_with(
        "gateway-b",
        &[
            "--alua-group",
            "2",
            "--alua-state",
            "standby",
            "--alua-peer",
            "1:active-optimized",
        ],
    );
    (gw_a, gw_b)
}

#[test]
fn each_gateway_reports_its_target_port_group_and_the_others() {
    let storage = Storage::file();
    let (gw_a, gw_b) = active_and_standby(&storage);
    let mut a = host(&gw_a, "host-a");
    let mut b = standby_host(&gw_b, "host-a");
    // Asymmetric access states (SPC-4 table 258): 0h active/optimized, 2h standby.
    assert_eq!(
        report_target_port_groups(&mut a),
        [(1, 0x0, 1), (2, 0x2, 2)]
    );
    assert_eq!(
        report_target_port_groups(&mut b),
        [(2, 0x2, 2), (1, 0x0, 1)]
    );
    // Standard INQUIRY TPGS 01b (byte 5 bits 5:4).
    let inq = b.raw_command(&[0x12, 0, 0, 0, 96, 0], &[], 96).unwrap();
    assert_eq!(inq.data[5] & 0x30, 0x10);
    // The Device Identification page ends with gateway B's relative target port and
    // target port group designators (iSCSI, PIV, target port association, binary).
    let vpd = b
        .raw_command(&[0x12, 1, 0x83, 0, 255, 0], &[], 255)
        .unwrap();
    assert!(vpd
        .data
        .ends_with(&[0x51, 0x94, 0, 4, 0, 0, 0, 2, 0x51, 0x95, 0, 4, 0, 0, 0, 2]));
}

#[test]
fn bad_alua_settings_are_refused_with_one_line() {
    for (args, says) in [
        (&["--alua-group", "0"][..], "not a number from 1 to 65535"),
        (
            &["--alua-group", "1", "--alua-state", "sleepy"],
            "unknown ALUA state \"sleepy\"",
        ),
        (
            &["--alua-group", "1", "--alua-peer", "2"],
            "is not ID:STATE",
        ),
        (
            &["--alua-group", "1", "--alua-peer", "1:standby"],
            "target port group 1 is given twice",
        ),
    ] {
        let mut all = vec!["--bstype", "memory", "--size", "1M"];
        all.extend_from_slice(args);
        let out = run_to_exit(&all);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_standby_gateway_refuses_reads_with_not_ready_and_answers_inquiry() {
    let storage = Storage::file();
    let (gw_a, gw_b) = active_and_standby(&storage);
    let mut a = host(&gw_a, "host-a");
    let mut b = standby_host(&gw_b, "host-a");
    // READ(10) of one block (SBC-3 table 39).
    let read = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let first = b.raw_command(&read, &[], 512).unwrap();
    // CHECK CONDITION (02h), NOT READY (2h), LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN
    // STANDBY STATE (04h/0Bh; SPC-4 5.16.2.4.4 and the ASC/ASCQ table).
    assert_eq!(
        (first.status, first.sense_key, first.asc, first.ascq),
        (0x02, 0x2, 0x04, 0x0B),
        "{first:?}"
    );
    assert!(first.data.is_empty());
    // INQUIRY is served in standby: the standard data, peripheral device type 0 (disk).
    let inq = b.raw_command(&[0x12, 0, 0, 0, 96, 0], &[], 96).unwrap();
    assert!(inq.is_good(), "{inq:?}");
    assert_eq!(inq.data[0] & 0x1F, 0x00);
    // The active/optimized gateway reads the same LUN (its unit attentions were taken by
    // the TEST UNIT READY of the login).
    let out = a.raw_command(&read, &[], 512).unwrap();
    assert!(out.is_good(), "{out:?}");
    assert_eq!(out.data.len(), 512);
}

/// PERSISTENT RESERVE IN READ FULL STATUS (service action 03h, SPC-4 6.15.5): the
/// parameter data.
fn read_full_status(ini: &mut Initiator) -> Vec<u8> {
    let out = ini
        .raw_command(&[0x5E, 0x03, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096)
        .unwrap();
    assert!(out.is_good(), "{out:?}");
    out.data
}

/// One initiator port, the same InitiatorName and ISID (RFC 7143 10.12.5: random type
/// 80h, 012345h, qualifier 0001h), logged in through gateway A (ALUA group and relative
/// target port 1) and gateway B (2): two I_T nexuses. A registration made through A
/// without ALL_TG_PT is of the first only (SPC-4 5.13.7): through B the host is not
/// registered, and B's READ FULL STATUS names port 1. With ALL_TG_PT it is of both.
#[test]
fn a_host_registered_through_one_gateway_is_not_registered_through_the_other() {
    const ALL_TG_PT: u8 = 0x04;
    let storage = Storage::file();
    let gw_a = storage.gateway_with(
        "gateway-a",
        &["--alua-group", "1", "--alua-peer", "2:active-optimized"],
    );
    let gw_b = storage.gateway_with(
        "gateway-b",
        &["--alua-group", "2", "--alua-peer", "1:active-optimized"],
    );
    let opts = testkit::initiator::ConnectOptions {
        isid: Some((0x01_2345, 0x0001)),
        ..login_opts("iqn.2026-11.test:host-a", None)
    };
    let mut via_a = login_with(&gw_a, IQN, &opts).expect("login through A");
    let mut via_b = login_with(&gw_b, IQN, &opts).expect("login through B");
    assert_eq!(
        prout(&mut via_a, 0x00, 0, 0, KEY_A),
        0,
        "registers through A"
    );
    assert_eq!(
        prout(&mut via_a, 0x01, WE_RO, KEY_A, 0),
        0,
        "reserves through A"
    );

    // READ FULL STATUS through B: PRGENERATION 1, one descriptor: the key, R_HOLDER (01h),
    // TYPE Write Exclusive - Registrants Only, RELATIVE TARGET PORT IDENTIFIER 1, and the
    // iSCSI TransportID (SPC-4 7.6.4.6, FORMAT CODE 01b: 45h, reserved, length, the
    // initiator port name NUL-terminated and padded to a multiple of 4).
    let mut name = b"iqn.2026-11.test:host-a,i,0x800123450001\0".to_vec();
    name.resize(name.len().next_multiple_of(4), 0);
    let mut descriptor = KEY_A.to_be_bytes().to_vec();
    descriptor.extend_from_slice(&[0, 0, 0, 0, 0x01, WE_RO, 0, 0, 0, 0, 0, 1]);
    descriptor.extend_from_slice(&(4 + name.len() as u32).to_be_bytes());
    descriptor.extend_from_slice(&[0x45, 0, 0, name.len() as u8]);
    descriptor.extend_from_slice(&name);
    let mut want = vec![0, 0, 0, 1];
    want.extend_from_slice(&(descriptor.len() as u32).to_be_bytes());
    want.extend_from_slice(&descriptor);
    assert_eq!(read_full_status(&mut via_b), want);

    // Through A the holder writes; through B the same host is not registered, so Write
    // Exclusive - Registrants Only refuses its writes, and its key is no key there.
    assert_eq!(write_status(&mut via_a), 0);
    assert_eq!(write_status(&mut via_b), RESERVATION_CONFLICT);
    assert_eq!(
        prout(&mut via_b, 0x01, WE_RO, KEY_A, 0),
        RESERVATION_CONFLICT
    );
    // REGISTER AND IGNORE EXISTING KEY with ALL_TG_PT through B: one registration of
    // every target port, which keeps the reservation: the host writes through both.
    assert_eq!(prout_with(&mut via_b, 0x06, 0, 0, KEY_B, ALL_TG_PT), 0);
    assert_eq!(write_status(&mut via_b), 0);
    assert_eq!(write_status(&mut via_a), 0, "and through A");
    let status = read_full_status(&mut via_a);
    assert_eq!(&status[8..16], &KEY_B.to_be_bytes());
    assert_eq!(status[20], 0x03, "ALL_TG_PT and R_HOLDER: {status:02x?}");
    assert_eq!(&status[24..26], &[0, 0], "no one port");
    let saved = storage.saved();
    assert!(
        saved.contains("register 0b0b0b0b00000002 * iqn.2026-11.test:host-a 800123450001"),
        "{saved}"
    );
}

/// A config file for a gateway exporting `lun` (a file of 4 MiB) with `gateway` lines.
fn gateway_config(dir: &std::path::Path, lun: &std::path::Path, gateway: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        "{gateway}\n[[target]]\nname = \"{IQN}\"\n[[target.lun]]\nlun = 0\nbstype = \"file\"\n\
         backing_store = \"{}\"\nsize = \"4M\"\n",
        lun.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_gateway_and_alua_settings_come_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let lun = dir.path().join("lun.img");
    let config = gateway_config(
        dir.path(),
        &lun,
        "gateway_id = \"gateway-b\"\nalua_group = 2\nalua_state = \"standby\"\n\
         alua_peer = [\"1:active-optimized\"]",
    );
    let gw = Running::start(&["--config", config.to_str().unwrap()], &[]);
    let mut b = standby_host(&gw, "host-a");
    // Table 258: this port standby (2h), the other active/optimized (0h).
    assert_eq!(
        report_target_port_groups(&mut b),
        [(2, 0x2, 2), (1, 0x0, 1)]
    );
    let out = b
        .raw_command(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[], 512)
        .unwrap();
    assert_eq!(
        (out.status, out.sense_key, out.asc, out.ascq),
        (0x02, 0x2, 0x04, 0x0B)
    );
    // The gateway id shares the reservations: they are kept beside the LUN file.
    assert_eq!(prout(&mut b, 0x00, 0, 0, KEY_A), 0x00);
    assert!(std::fs::read(dir.path().join("lun.img.pr")).is_ok());
}

#[test]
fn bad_gateway_settings_in_the_config_file_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let lun = dir.path().join("lun.img");
    for (lines, says) in [
        (
            "alua_group = 0",
            "alua_group: target port group \"0\" is not a number",
        ),
        (
            "alua_group = 1\nalua_state = \"sleepy\"",
            "alua_state: unknown ALUA state \"sleepy\"",
        ),
        (
            "alua_peer = [\"2:standby\"]",
            "alua_state and alua_peer need alua_group",
        ),
    ] {
        let config = gateway_config(dir.path(), &lun, lines);
        let out = run_to_exit(&["--config", config.to_str().unwrap()]);
        assert!(!out.status.success(), "{lines}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{lines}: {err}");
    }
}

/// Two daemons on one glfs LUN of the fake volume whose writes to it go through the
/// fake's model of Gluster's write-behind (per mount, so per daemon): a host writes 4 KiB
/// through `a` (no FUA; the write cache is on) and reads it through `b`, without a
/// SYNCHRONIZE CACHE: what `b` returns.
fn read_through_the_other_gateway(a_args: &[&str], b_args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    use testkit::fake::FaultRule;
    let root = FakeRoot::new();
    root.create_volume("vol");
    root.set_rules(&[FaultRule::on(&["write"]).path("/lun.img").write_behind()]);
    let a = glfs_target(&root, a_args);
    let b = glfs_target(&root, b_args);
    let (mut writer, mut reader) = (host(&a, "writer"), host(&b, "reader"));
    let data = pattern(7, 4096);
    assert_eq!(reader.read10(64, 8, 512).unwrap(), vec![0u8; 4096]);
    writer.write10(64, &data, 512).unwrap();
    (reader.read10(64, 8, 512).unwrap(), data)
}

/// A LUN shared by gateways is cache-coherent across them (ARCHITECTURE.md, "Several
/// gateways on one LU"): `--gateway-id` opens the glfs store in coherent mode, so a write
/// acknowledged through one gateway is read through the other at once.
#[test]
fn a_gateway_id_makes_writes_through_one_gateway_readable_through_the_other() {
    let (seen, written) =
        read_through_the_other_gateway(&["--gateway-id", "gw-a"], &["--gateway-id", "gw-b"]);
    assert_eq!(seen, written);
}

/// The control for the test above: the same two daemons without `--gateway-id` (each a
/// LUN of its own to the daemon: the single-gateway fast path, write-behind kept) read
/// the old bytes, so it is the gateway id that made the difference.
#[test]
fn without_a_gateway_id_the_other_daemon_reads_what_write_behind_has_not_flushed() {
    let (seen, written) = read_through_the_other_gateway(&[], &[]);
    assert_ne!(seen, written);
    assert_eq!(seen, vec![0u8; 4096]);
}

/// An operator cannot turn coherent mode off on a shared LUN: the daemon refuses to
/// start, naming the option.
#[test]
fn coherent_off_on_a_shared_lun_is_refused() {
    let root = FakeRoot::new();
    root.create_volume("vol");
    let lib = fake_library();
    let out = std::process::Command::new(BINARY)
        .args(["--portal", "127.0.0.1:0", "--target", IQN])
        .args([
            "--bstype",
            "glfs",
            "--backing-store",
            "vol@127.0.0.2:lun.img",
        ])
        .args(["--size", "4M", "--gfapi-library", lib.to_str().unwrap()])
        .args(["--gateway-id", "gw-a", "--bsopts", "coherent=off"])
        .env("GFAPI_FAKE_ROOT", root.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run glfs-iscsi");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("coherent=off") && err.contains("shared by gateways"),
        "{err}"
    );
}

/// The block the fencing tests write (LBA 8 of 512-byte blocks).
const FENCED_LBA: u64 = 8;

/// WRITE(10) of one block at [`FENCED_LBA`] (SBC-3 table 64) whose bytes all carry `n`
/// (and `n`'s low byte at every byte, so any two writes differ): status, sense key, ASC
/// and ASCQ.
fn write_numbered(ini: &mut Initiator, n: u32) -> (u8, u8, u8, u8) {
    let cdb = [0x2A, 0, 0, 0, 0, FENCED_LBA as u8, 0, 0, 1, 0];
    let mut data = vec![n as u8; 512];
    data[..4].copy_from_slice(&n.to_be_bytes());
    let out = ini.raw_command(&cdb, &data, 0).unwrap();
    (out.status, out.sense_key, out.asc, out.ascq)
}

/// CHECK CONDITION (02h), UNIT ATTENTION (6h), REGISTRATIONS PREEMPTED (2Ah/05h; SPC-4
/// annex D and 5.13.11.2.3).
const UA_REGISTRATIONS_PREEMPTED: (u8, u8, u8, u8) = (0x02, 0x6, 0x2A, 0x05);

/// The fenced block as it is in the LUN file now.
fn block_on_storage(storage: &Storage) -> Vec<u8> {
    let bytes = std::fs::read(storage.lun_file()).unwrap();
    let at = FENCED_LBA as usize * 512;
    bytes[at..at + 512].to_vec()
}

/// Host B writes without a pause through gateway B (a new block content each time) while
/// host A preempts it through gateway A. Once A's PREEMPT is answered GOOD, no write of
/// B may reach the LUN file: neither one in flight at gateway B at that moment nor one
/// that arrives at B before B loads the new state. So the block read from the storage
/// right after the GOOD stays as it is, however long B goes on trying.
fn no_write_of_a_preempted_host_lands_after_the_preempt(storage: Storage) {
    let gw_a = storage.gateway("gateway-a");
    let gw_b = storage.gateway("gateway-b");
    let mut a = host(&gw_a, "host-a");
    assert_eq!(
        prout(&mut a, 0x00, 0, 0, KEY_A),
        0,
        "A registers: {}",
        gw_a.log()
    );
    let started = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut b = host(&gw_b, "host-b");
            assert_eq!(prout(&mut b, 0x00, 0, 0, KEY_B), 0, "B registers");
            let (mut good, mut n, mut told) = (0u32, 0u32, false);
            // What else B met (BUSY, other unit attentions), for a failure's message.
            let mut other = Vec::new();
            // Until refused: the preempt is seen through gateway B, which first tells
            // B's nexus there with a unit attention. BUSY (a gateway whose lease ran out)
            // is retried, as initiators do.
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match write_numbered(&mut b, n) {
                    (0, ..) => {
                        good += 1;
                        started.store(true, Ordering::Relaxed);
                    }
                    (RESERVATION_CONFLICT, ..) => return (good, told, true, other),
                    UA_REGISTRATIONS_PREEMPTED => told = true,
                    seen => {
                        if other.len() < 16 {
                            other.push(seen);
                        }
                    }
                }
            }
            (good, told, false, other)
        });
        // A holds Write Exclusive - Registrants Only: B, a registrant, may write.
        assert_eq!(prout(&mut a, 0x01, WE_RO, KEY_A, 0), 0, "A reserves");
        let until = Instant::now() + REFRESH_PATIENCE;
        while !started.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Let B's writes flow for a while, then preempt it.
        std::thread::sleep(Duration::from_millis(300));
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&KEY_A.to_be_bytes());
        p[8..16].copy_from_slice(&KEY_B.to_be_bytes());
        let out = a
            .raw_command(&[0x5F, 0x04, WE_RO, 0, 0, 0, 0, 0, 24, 0], &p, 0)
            .unwrap();
        assert!(
            out.is_good(),
            "A preempts B: {out:?} {} {}",
            gw_a.log(),
            gw_b.log()
        );
        let at_good = block_on_storage(&storage);
        // B goes on until gateway B refuses it (it must, within the refresh bound).
        let give_up = Instant::now() + REFRESH_PATIENCE;
        while !writer.is_finished() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let (good, told, refused, other) = writer.join().unwrap();
        assert!(good > 0, "B wrote before the preempt");
        assert!(refused, "gateway B never refused the preempted host");
        assert!(
            told,
            "gateway B did not report REGISTRATIONS PREEMPTED first (B also met {other:x?}): {}",
            gw_b.log()
        );
        // Whatever gateway B still held has had time to land, had it been let through.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            block_on_storage(&storage),
            at_good,
            "a write of the preempted host reached the LUN after the PREEMPT's GOOD"
        );
    });
    // The holder still writes.
    assert_eq!(write_numbered(&mut a, 0xA0A0).0, 0);
}

#[test]
fn no_write_of_a_preempted_host_lands_through_a_file_gateway_after_the_preempt() {
    no_write_of_a_preempted_host_lands_after_the_preempt(Storage::file());
}

/// On the fake volume every write of the fenced block is slow (300 ms at the "brick"), so
/// one of B's writes is nearly always in flight at gateway B when A's PREEMPT runs.
#[test]
fn no_write_of_a_preempted_host_in_flight_at_a_glfs_gateway_lands_after_the_preempt() {
    let storage = Storage::glfs();
    if let Storage::Glfs(root) = &storage {
        root.set_rules(&[testkit::fake::FaultRule::on(&["write"])
            .path("/lun.img")
            .offset(FENCED_LBA * 512, FENCED_LBA * 512 + 512)
            .delay_ms(300)]);
    }
    no_write_of_a_preempted_host_lands_after_the_preempt(storage);
}

/// [`no_write_of_a_preempted_host_lands_after_the_preempt`] with two gateways on the live
/// volume through the real libgfapi (each its own client graph, write-behind included:
/// a gateway flushes before it acknowledges), the block read from the brick.
#[test]
#[ignore = "live: needs GLUSTER_TEST_VOLUME and GLUSTER_TEST_BRICK (cargo xtask test-gluster)"]
fn live_no_write_of_a_preempted_host_lands_through_a_gluster_gateway_after_the_preempt() {
    no_write_of_a_preempted_host_lands_after_the_preempt(Storage::live());
}

/// [`concurrent_registrations_on_both_gateways_are_all_kept`] on the live volume: each
/// gateway's read of the state under the lock must see the other's last write, through
/// Gluster's client-side caches (md-cache, quick-read, open-behind) of its own mount.
#[test]
#[ignore = "live: needs GLUSTER_TEST_VOLUME and GLUSTER_TEST_BRICK (cargo xtask test-gluster)"]
fn live_concurrent_registrations_through_gluster_gateways_are_all_kept() {
    concurrent_registrations_on_both_gateways_are_all_kept(Storage::live());
}

// ---- Active/passive failover through the data fence (`--alua-failover`) ----

/// How long a standby may take to become active once the active gateway died: the
/// failover round comes every second (`gateways::REFRESH`); a wide margin for a loaded
/// machine. The slowest case waits for it: a standby not preferred watches the active
/// gateway's heartbeat only once `failover::PREFERRED_WAIT` (10 s) has passed since it
/// started, counts a version from the round after it first read it
/// (`daemon::stall::Watch`), and a stuck takeover lock makes it wait twice the bound (2 x
/// 2 s in those tests): about 16 s from a stop right after it started.
const FAILOVER_BOUND: Duration = Duration::from_secs(20);

/// CHECK CONDITION (02h), NOT READY (2h), LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN
/// STANDBY STATE (04h/0Bh; SPC-4 5.16.2.4.4).
const STANDBY_REFUSAL: (u8, u8, u8, u8) = (0x02, 0x2, 0x04, 0x0B);
/// CHECK CONDITION, NOT READY, LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE
/// TRANSITION (04h/0Ah): what a request the storage refuses as fenced is answered with.
const FENCED_REFUSAL: (u8, u8, u8, u8) = (0x02, 0x2, 0x04, 0x0A);
/// CHECK CONDITION, UNIT ATTENTION (6h), ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h; SPC-4
/// annex D).
const UA_ACCESS_STATE_CHANGED: (u8, u8, u8, u8) = (0x02, 0x6, 0x2A, 0x06);

/// Gateway `id` in target port group `group` (the other group `peer`), in failover mode,
/// with `extra` arguments.
fn failover_gateway(
    storage: &Storage,
    id: &str,
    group: &str,
    peer: &str,
    extra: &[&str],
) -> Running {
    let peer = format!("{peer}:standby");
    let mut args = vec![
        "--alua-group",
        group,
        "--alua-peer",
        &peer,
        "--alua-failover",
    ];
    args.extend_from_slice(extra);
    storage.gateway_with(id, &args)
}

/// Gateways A (group 1) and B (group 2) in failover mode, each with its control socket
/// where `sockets` names one (A's, B's) and metrics (`--metrics`, a port of its own), and
/// host-a logged in through each. A starts
/// first and takes the fence before its portal listens; B finds it taken. A reports
/// itself active/optimized and B standby (SPC-4 table 258: 0h active/optimized, 2h
/// standby), its own group first.
fn failover_pair_with_hosts(
    storage: &Storage,
    sockets: [Option<&PathBuf>; 2],
) -> (Running, Running, Initiator, Initiator) {
    fn socket_args(socket: Option<&PathBuf>) -> Vec<&str> {
        let mut args = vec!["--metrics", "127.0.0.1:0"];
        if let Some(s) = socket {
            args.extend(["--control-socket", s.to_str().unwrap()]);
        }
        args
    }
    let [sock_a, sock_b] = sockets;
    let gw_a = failover_gateway(storage, "gateway-a", "1", "2", &socket_args(sock_a));
    let gw_b = failover_gateway(storage, "gateway-b", "2", "1", &socket_args(sock_b));
    let mut a = standby_host(&gw_a, "host-a");
    let b = standby_host(&gw_b, "host-a");
    assert_eq!(
        report_target_port_groups(&mut a),
        [(1, 0x0, 1), (2, 0x2, 2)]
    );
    (gw_a, gw_b, a, b)
}

/// REPORT TARGET PORT GROUPS until it answers GOOD, noting whether a unit attention
/// ASYMMETRIC ACCESS STATE CHANGED came first. The groups are read from that GOOD
/// answer itself: asking again could meet the next state change's unit attention.
fn rtpg_seeing_ua(ini: &mut Initiator) -> (Vec<(u16, u8, u16)>, bool) {
    let rtpg = [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let mut ua = false;
    for _ in 0..8 {
        let out = ini.raw_command(&rtpg, &[], 256).unwrap();
        if out.is_good() {
            return (target_port_groups(&out.data), ua);
        }
        ua |= (out.status, out.sense_key, out.asc, out.ascq) == UA_ACCESS_STATE_CHANGED;
    }
    panic!("REPORT TARGET PORT GROUPS never answered GOOD");
}

/// [`report_target_port_groups`] through `ini` every 100 ms until it reports `groups`; the
/// test fails with `log()` once [`FAILOVER_BOUND`] has passed.
fn wait_for_groups(ini: &mut Initiator, groups: &[(u16, u8, u16)], log: impl Fn() -> String) {
    let deadline = Instant::now() + FAILOVER_BOUND;
    while report_target_port_groups(ini) != groups {
        assert!(Instant::now() < deadline, "{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`rtpg_seeing_ua`] through `ini` every 100 ms until it reports `groups`; the test fails
/// with what it last reported and `log()` once [`FAILOVER_BOUND`] has passed since
/// `since`. Whether ASYMMETRIC ACCESS STATE CHANGED came on the way.
fn wait_for_groups_seeing_ua(
    ini: &mut Initiator,
    groups: &[(u16, u8, u16)],
    since: Instant,
    log: impl Fn() -> String,
) -> bool {
    let mut ua_seen = false;
    loop {
        let (now, ua) = rtpg_seeing_ua(ini);
        ua_seen |= ua;
        if now == groups {
            return ua_seen;
        }
        assert!(since.elapsed() < FAILOVER_BOUND, "{now:?}\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `test` on a file of its own on the live volume with mandatory locks; left out
/// (saying so) where there is none.
fn on_live_volume_with_mandatory_locks(test: fn(Storage)) {
    let Some(storage) = Storage::live_with_mandatory_locks() else {
        eprintln!("no live volume with mandatory locks (GLUSTER_TEST_FEATURES_VOLUME): left out");
        return;
    };
    test(storage);
}

fn failover_moves_to_the_standby_when_the_active_gateway_dies(storage: Storage) {
    let control = tempfile::tempdir().unwrap();
    let socket = control.path().join("b.sock");
    let (gw_a, gw_b, mut a, mut b) = failover_pair_with_hosts(&storage, [None, Some(&socket)]);
    // The same states through both gateways, each listing its own group first; B learned
    // them from the volume.
    wait_for_groups(&mut b, &[(2, 0x2, 2), (1, 0x0, 1)], || {
        format!("B: {}", gw_b.log())
    });
    // A writes; B, standby, refuses.
    assert_eq!(
        write_numbered(&mut a, 1),
        (0, 0, 0, 0),
        "A: {}\nB: {}",
        gw_a.log(),
        gw_b.log()
    );
    assert_eq!(write_numbered(&mut b, 2), STANDBY_REFUSAL);
    assert_eq!(block_on_storage(&storage)[..4], 1u32.to_be_bytes());
    assert!(
        gw_a.log().contains("holds the data fence"),
        "{}",
        gw_a.log()
    );

    // A dies: its connection to the volume closes and its locks go; B takes them at its
    // next round.
    gw_a.signal("KILL");
    let killed = Instant::now();
    let ua_seen = wait_for_groups_seeing_ua(&mut b, &[(2, 0x0, 2), (1, 0x2, 1)], killed, || {
        format!("B did not become active\n{}", gw_b.log())
    });
    assert!(ua_seen, "no ASYMMETRIC ACCESS STATE CHANGED through B");
    // The operator sees it, and cannot set a state by hand: the fence decides.
    let listed = ok(&socket, &["alua", "list"]);
    assert!(listed.contains("active-optimized"), "{listed}");
    let (done, _, err) = admin(&socket, &["alua", "set", "2", "standby"]);
    assert!(!done && err.contains("follow the data fence"), "{err}");
    // B writes now, and the write is on the storage.
    assert_eq!(write_numbered(&mut b, 3).0, 0, "{}", gw_b.log());
    assert_eq!(block_on_storage(&storage)[..4], 3u32.to_be_bytes());

    // A gateway that does not hold the fence (a former active gateway still running, as
    // far as the storage can tell: another client of the volume without the lock) cannot
    // land a write: the storage refuses it, and the block stays as B wrote it.
    let stale = storage.gateway("gateway-stale");
    let mut s = host(&stale, "host-s");
    assert_eq!(write_numbered(&mut s, 4), FENCED_REFUSAL, "{}", stale.log());
    assert_eq!(block_on_storage(&storage)[..4], 3u32.to_be_bytes());
    // B is still active and still writes.
    assert_eq!(write_numbered(&mut b, 5).0, 0, "{}", gw_b.log());

    // A comes back: standby, and it sees B active.
    let gw_a = failover_gateway(&storage, "gateway-a", "1", "2", &[]);
    let mut a = standby_host(&gw_a, "host-a");
    assert_eq!(
        report_target_port_groups(&mut a),
        [(1, 0x2, 1), (2, 0x0, 2)]
    );
    assert_eq!(write_numbered(&mut a, 6), STANDBY_REFUSAL);
    assert_eq!(block_on_storage(&storage)[..4], 5u32.to_be_bytes());
}

#[test]
fn failover_moves_to_the_standby_when_the_active_glfs_gateway_dies() {
    failover_moves_to_the_standby_when_the_active_gateway_dies(Storage::glfs());
}

#[test]
fn alua_failover_is_refused_without_what_it_needs() {
    for (args, says) in [
        (
            &[
                "--bstype",
                "glfs",
                "--backing-store",
                "vol@h:x.img",
                "--size",
                "1M",
                "--alua-group",
                "1",
                "--alua-failover",
            ][..],
            "alua failover needs a gateway id",
        ),
        (
            &[
                "--bstype",
                "memory",
                "--size",
                "1M",
                "--gateway-id",
                "gw",
                "--alua-group",
                "1",
                "--alua-failover",
            ],
            "alua failover needs glfs backing stores",
        ),
        (
            &[
                "--bstype",
                "memory",
                "--size",
                "1M",
                "--gateway-id",
                "gw",
                "--alua-failover",
            ],
            "alua failover needs an ALUA group",
        ),
        (
            &[
                "--bstype",
                "memory",
                "--size",
                "1M",
                "--alua-group",
                "1",
                "--alua-state",
                "standby",
                "--alua-failover",
            ],
            "cannot be used with",
        ),
        (
            &[
                "--bstype",
                "memory",
                "--size",
                "1M",
                "--alua-stall-after",
                "5",
            ],
            "--alua-stall-after needs alua failover (--alua-failover or alua_failover)",
        ),
        (
            &[
                "--bstype",
                "memory",
                "--size",
                "1M",
                "--alua-group",
                "1",
                "--alua-failover",
                "--alua-stall-after",
                "1",
            ],
            "\"1\" is not a number of seconds from 2 to 3600",
        ),
    ] {
        let out = run_to_exit(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// [`failover_moves_to_the_standby_when_the_active_gateway_dies`] on the live volume with
/// mandatory locks, through the real libgfapi: the fence is the brick's, and a killed
/// gateway's locks go with its connection.
#[test]
#[ignore = "live: needs GLUSTER_TEST_FEATURES_VOLUME and GLUSTER_TEST_FEATURES_BRICK (cargo xtask test-gluster)"]
fn live_failover_moves_to_the_standby_when_the_active_gluster_gateway_dies() {
    on_live_volume_with_mandatory_locks(failover_moves_to_the_standby_when_the_active_gateway_dies);
}

/// The active gateway's volume connection drops: its store reconnects on a new mount,
/// where the fence taken on the old one is not (Gluster drops a client's locks with its
/// connection). The gateway must not go on as active on a fence it may no longer hold: it
/// steps down (standby, a unit attention) and takes the fence again on the new mount,
/// since nobody else holds it, and writes again.
#[test]
fn an_active_glfs_gateway_whose_volume_reconnects_steps_down_and_takes_the_fence_again() {
    let storage = Storage::glfs();
    let Storage::Glfs(root) = &storage else {
        unreachable!()
    };
    let gw_a = failover_gateway(&storage, "gateway-a", "1", "2", &[]);
    let mut a = standby_host(&gw_a, "host-a");
    assert_eq!(
        report_target_port_groups(&mut a),
        [(1, 0x0, 1), (2, 0x2, 2)]
    );
    assert_eq!(write_numbered(&mut a, 1).0, 0, "{}", gw_a.log());
    // A write meets the outage: held by the store until the volume is back, then sent
    // on the new mount.
    let during = with_outage(root, "vol", Duration::from_millis(1500), || {
        write_numbered(&mut a, 2)
    });
    assert!(
        during.0 == 0 || during == FENCED_REFUSAL || during.1 == 0x2,
        "{during:?}"
    );
    gw_a.wait_for_log_line(&["no longer the active gateway"]);
    // Back to active, and writing.
    let deadline = Instant::now() + FAILOVER_BOUND;
    loop {
        let (groups, _) = rtpg_seeing_ua(&mut a);
        if groups == [(1, 0x0, 1), (2, 0x2, 2)] && write_numbered(&mut a, 3).0 == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{groups:?}\n{}", gw_a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(block_on_storage(&storage)[..4], 3u32.to_be_bytes());
    assert_eq!(
        gw_a.log().matches("holds the data fence").count(),
        2,
        "{}",
        gw_a.log()
    );
}

/// A planned switchover: `admin alua handover 2` on the active gateway A makes it step
/// down and let go of the fence, and gateway B (group 2) takes it at its next round:
/// both gateways report B active, hosts get the unit attention, B writes and A refuses.
/// Refused where it means nothing: on a standby gateway, to its own group, to an unknown
/// group.
fn a_planned_handover_moves_the_active_role_to_the_named_gateway(storage: Storage) {
    let control = tempfile::tempdir().unwrap();
    let (sock_a, sock_b) = (control.path().join("a.sock"), control.path().join("b.sock"));
    let (gw_a, gw_b, mut a, mut b) =
        failover_pair_with_hosts(&storage, [Some(&sock_a), Some(&sock_b)]);
    for (socket, args, says) in [
        (&sock_b, ["alua", "handover", "1"], "not the active gateway"),
        (&sock_a, ["alua", "handover", "1"], "this gateway's own"),
        (&sock_a, ["alua", "handover", "9"], "no target port group 9"),
    ] {
        let (done, _, err) = admin(socket, &args);
        assert!(!done && err.contains(says), "{args:?}: {err}");
    }
    ok(&sock_a, &["alua", "handover", "2"]);
    let asked = Instant::now();
    let ua_seen = wait_for_groups_seeing_ua(&mut b, &[(2, 0x0, 2), (1, 0x2, 1)], asked, || {
        format!("A: {}\nB: {}", gw_a.log(), gw_b.log())
    });
    assert!(ua_seen, "no ASYMMETRIC ACCESS STATE CHANGED through B");
    // A reads B's record at its next round.
    let ua_seen = wait_for_groups_seeing_ua(&mut a, &[(1, 0x2, 1), (2, 0x0, 2)], asked, || {
        format!("A: {}", gw_a.log())
    });
    assert!(ua_seen, "no ASYMMETRIC ACCESS STATE CHANGED through A");
    assert_eq!(write_numbered(&mut b, 7).0, 0, "{}", gw_b.log());
    assert_eq!(write_numbered(&mut a, 8), STANDBY_REFUSAL);
    assert_eq!(block_on_storage(&storage)[..4], 7u32.to_be_bytes());
    assert!(gw_a.log().contains("handed over"), "{}", gw_a.log());
    // The metrics (`--metrics`): A took the LUN at its start and stepped down for the
    // handover; B took it as handed over and is active.
    let lun = format!("target=\"{IQN}\",lun=\"0\"");
    let value = |gw: &Running, name: &str, reason: &str| {
        let text = scrape_metrics(gw);
        let series = match reason {
            "" => format!("glfs_iscsi_{name}{{{lun}}}"),
            _ => format!("glfs_iscsi_{name}{{{lun},reason=\"{reason}\"}}"),
        };
        metric_sample(&text, &series).unwrap_or_else(|| panic!("no {series}\n{text}"))
    };
    let reasons = ["unheld", "handover", "stalled"];
    assert_eq!(
        reasons.map(|r| value(&gw_a, "alua_takeovers_total", r)),
        [1.0, 0.0, 0.0]
    );
    assert_eq!(
        reasons.map(|r| value(&gw_b, "alua_takeovers_total", r)),
        [0.0, 1.0, 0.0]
    );
    assert_eq!(value(&gw_a, "alua_stepdowns_total", "handover"), 1.0);
    assert_eq!(value(&gw_b, "alua_stepdowns_total", "handover"), 0.0);
    assert_eq!(value(&gw_a, "alua_active", ""), 0.0);
    assert_eq!(value(&gw_b, "alua_active", ""), 1.0);
}

/// `admin lun clone` among failover gateways: the LUN's active gateway (the only one the
/// storage lets write) makes the copy, holding what its host wrote; the standby gateway
/// refuses (a copy there would not hold back the active gateway's writes).
#[test]
fn a_lun_is_cloned_on_its_active_glfs_gateway_and_refused_on_the_standby() {
    let storage = Storage::glfs();
    let control = tempfile::tempdir().unwrap();
    let (sock_a, sock_b) = (control.path().join("a.sock"), control.path().join("b.sock"));
    let (gw_a, _gw_b, mut a, _b) =
        failover_pair_with_hosts(&storage, [Some(&sock_a), Some(&sock_b)]);
    assert_eq!(write_numbered(&mut a, 5), (0, 0, 0, 0), "{}", gw_a.log());
    let (done, _, err) = admin(&sock_b, &["lun", "clone", IQN, "0", "--to", "b-clone.img"]);
    assert!(
        !done && err.contains("not the LUN's active gateway"),
        "{err}"
    );
    let beside = |name: &str| storage.lun_file().with_file_name(name);
    assert!(!beside("b-clone.img").exists());
    let cloned = ok(&sock_a, &["lun", "clone", IQN, "0", "--to", "a-clone.img"]);
    assert!(cloned.contains("a-clone.img"), "{cloned}");
    let copy = std::fs::read(beside("a-clone.img")).unwrap();
    let at = FENCED_LBA as usize * 512;
    assert_eq!(copy[at..at + 4], 5u32.to_be_bytes());
    assert_eq!(copy.len(), std::fs::read(storage.lun_file()).unwrap().len());
}

#[test]
fn a_planned_handover_moves_the_active_role_to_the_named_glfs_gateway() {
    a_planned_handover_moves_the_active_role_to_the_named_gateway(Storage::glfs());
}

/// [`a_planned_handover_moves_the_active_role_to_the_named_gateway`] on the live volume
/// with mandatory locks: the fence is let go and taken by the other gateway's mount.
#[test]
#[ignore = "live: needs GLUSTER_TEST_FEATURES_VOLUME and GLUSTER_TEST_FEATURES_BRICK (cargo xtask test-gluster)"]
fn live_a_planned_handover_moves_the_active_role_to_the_named_gluster_gateway() {
    on_live_volume_with_mandatory_locks(
        a_planned_handover_moves_the_active_role_to_the_named_gateway,
    );
}

/// BUSY (08h): what a gateway answers a write while its reservation lease is being
/// renewed (after a stall, for example).
const BUSY: u8 = 0x08;

/// The stall bound both gateways of the stall test are given (`--alua-stall-after`).
const TEST_STALL_AFTER: Duration = Duration::from_secs(4);

/// An active gateway that stalls (stopped, its connection to the volume alive) keeps its
/// locks, but stops renewing its heartbeat in the record: the standby, once it has seen
/// no heartbeat for its stall bound ([`TEST_STALL_AFTER`], `--alua-stall-after`), takes
/// the election lock and the data fence over (a waiting lock request, then Gluster's
/// clear-locks; the fake models both) and becomes active, with a unit attention.
/// The stalled gateway, resumed, lands nothing: the storage refuses what it still sends,
/// it steps down without writing over the new active gateway's record, and both gateways
/// then report B active.
fn a_stalled_active_gateway_loses_the_fence_to_the_standby_after_the_bound(storage: Storage) {
    let bound = TEST_STALL_AFTER.as_secs().to_string();
    let stall = ["--alua-stall-after", bound.as_str()];
    let gw_a = failover_gateway(&storage, "gateway-a", "1", "2", &stall);
    let gw_b = failover_gateway(&storage, "gateway-b", "2", "1", &stall);
    let mut a = standby_host(&gw_a, "host-a");
    let mut b = standby_host(&gw_b, "host-b");
    wait_for_groups(&mut b, &[(2, 0x2, 2), (1, 0x0, 1)], || {
        format!("B: {}", gw_b.log())
    });
    assert_eq!(write_numbered(&mut a, 1).0, 0, "{}", gw_a.log());
    gw_a.signal("STOP");
    let stopped = Instant::now();
    // Several of B's rounds, well inside the bound: still standby.
    std::thread::sleep(TEST_STALL_AFTER / 2);
    assert_eq!(
        report_target_port_groups(&mut b),
        [(2, 0x2, 2), (1, 0x0, 1)]
    );
    assert_eq!(write_numbered(&mut b, 2), STANDBY_REFUSAL);
    // After the bound B takes over.
    let mut ua_seen = false;
    loop {
        let (groups, ua) = rtpg_seeing_ua(&mut b);
        ua_seen |= ua;
        if groups == [(2, 0x0, 2), (1, 0x2, 1)] {
            break;
        }
        assert!(
            stopped.elapsed() < TEST_STALL_AFTER + FAILOVER_BOUND,
            "B did not take over from the stalled gateway: {groups:?}\n{}",
            gw_b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = stopped.elapsed();
    assert!(took >= TEST_STALL_AFTER, "B took over after {took:?}");
    assert!(ua_seen, "no ASYMMETRIC ACCESS STATE CHANGED through B");
    assert!(
        gw_b.log().contains("took the data fence over"),
        "{}",
        gw_b.log()
    );
    assert_eq!(write_numbered(&mut b, 3).0, 0, "{}", gw_b.log());
    assert_eq!(block_on_storage(&storage)[..4], 3u32.to_be_bytes());

    // A resumes: whatever it answers, none of its writes lands, and it steps down.
    gw_a.signal("CONT");
    let resumed = Instant::now();
    until_the_resumed_gateway_steps_down(&mut a, &storage, 3, resumed, &|| {
        format!("A: {}", gw_a.log())
    });
    // Both report B active: A left B's record as it was.
    let (groups, _) = rtpg_seeing_ua(&mut a);
    assert_eq!(groups, [(1, 0x2, 1), (2, 0x0, 2)], "{}", gw_a.log());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        report_target_port_groups(&mut b),
        [(2, 0x0, 2), (1, 0x2, 1)],
        "{}",
        gw_b.log()
    );
    assert_eq!(write_numbered(&mut b, 4).0, 0, "{}", gw_b.log());
    assert_eq!(block_on_storage(&storage)[..4], 4u32.to_be_bytes());
}

#[test]
fn a_stalled_active_glfs_gateway_loses_the_fence_to_the_standby_after_the_bound() {
    a_stalled_active_gateway_loses_the_fence_to_the_standby_after_the_bound(Storage::glfs());
}

/// [`a_stalled_active_gateway_loses_the_fence_to_the_standby_after_the_bound`] on the
/// live volume with mandatory locks: Gluster's own clear-locks takes the stalled
/// gateway's locks away.
#[test]
#[ignore = "live: needs GLUSTER_TEST_FEATURES_VOLUME and GLUSTER_TEST_FEATURES_BRICK (cargo xtask test-gluster)"]
fn live_a_stalled_active_gluster_gateway_loses_the_fence_to_the_standby_after_the_bound() {
    on_live_volume_with_mandatory_locks(
        a_stalled_active_gateway_loses_the_fence_to_the_standby_after_the_bound,
    );
}

// ---- Three gateways on one LUN: one standby at a time takes over ----

/// Failover gateway `id` in target port group `group`, one of three (groups 1, 2 and 3,
/// the other two its peers in ascending order), with the test stall bound and metrics
/// (`--metrics`, a port of its own).
fn one_of_three(storage: &Storage, id: &str, group: u16) -> Running {
    let own = group.to_string();
    let bound = TEST_STALL_AFTER.as_secs().to_string();
    let peers: Vec<String> = (1..=3u16)
        .filter(|g| *g != group)
        .map(|g| format!("{g}:standby"))
        .collect();
    let mut args = vec![
        "--alua-group",
        own.as_str(),
        "--alua-failover",
        "--alua-stall-after",
        bound.as_str(),
        "--metrics",
        "127.0.0.1:0",
    ];
    for peer in &peers {
        args.extend(["--alua-peer", peer.as_str()]);
    }
    storage.gateway_with(id, &args)
}

/// REPORT TARGET PORT GROUPS (SPC-4 table 258: 0h active/optimized, 2h standby) as a
/// gateway of group `own` reports it when group `active` is active: its own group first,
/// then the others in ascending order, each group one port, relative port = group.
fn three_groups(own: u16, active: u16) -> Vec<(u16, u8, u16)> {
    let state = |g: u16| if g == active { 0x0 } else { 0x2 };
    std::iter::once(own)
        .chain((1..=3).filter(|g| *g != own))
        .map(|g| (g, state(g), g))
        .collect()
}

/// The block [`write_numbered`] writes for `n`.
/// Writes through a gateway that was stopped and has just resumed (`resumed`), until it
/// reports standby: every answer a refusal (fenced, standby, the access-state unit
/// attention, BUSY), none of the writes landing (the fenced block stays the one numbered
/// `kept`), and standby within [`FAILOVER_BOUND`].
fn until_the_resumed_gateway_steps_down(
    ini: &mut Initiator,
    storage: &Storage,
    kept: u32,
    resumed: Instant,
    logs: &dyn Fn() -> String,
) {
    for n in 10.. {
        let answer = write_numbered(ini, n);
        assert!(
            answer == FENCED_REFUSAL
                || answer == STANDBY_REFUSAL
                || answer == UA_ACCESS_STATE_CHANGED
                || answer.0 == BUSY,
            "a write through the resumed gateway: {answer:?}\n{}",
            logs()
        );
        assert_eq!(
            block_on_storage(storage),
            numbered_block(kept),
            "a write through the resumed gateway landed\n{}",
            logs()
        );
        if answer == STANDBY_REFUSAL {
            return;
        }
        assert!(
            resumed.elapsed() < FAILOVER_BOUND,
            "A did not step down: {answer:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn numbered_block(n: u32) -> Vec<u8> {
    let mut block = vec![n as u8; 512];
    block[..4].copy_from_slice(&n.to_be_bytes());
    block
}

/// Three gateways on one LUN: A active, B and C standby. A
/// stalls (SIGSTOP, its connection alive, its locks kept): B and C both see its heartbeat
/// stand still, and exactly one of them takes over (the LUN's takeover lock, then the
/// record version checked again: `stall::begin_takeover`); the other stays standby and
/// reports the new active gateway, through several more rounds. Writes through the new
/// active gateway land, whole; A, resumed, lands nothing and steps down; all three then
/// report the same active gateway, and their metrics say what each did.
fn with_three_gateways_one_standby_takes_over_from_a_stalled_active_one(storage: Storage) {
    let gw_a = one_of_three(&storage, "gateway-a", 1);
    let gw_b = one_of_three(&storage, "gateway-b", 2);
    let gw_c = one_of_three(&storage, "gateway-c", 3);
    let logs = || format!("A: {}\nB: {}\nC: {}", gw_a.log(), gw_b.log(), gw_c.log());
    let mut a = standby_host(&gw_a, "host-a");
    let mut b = standby_host(&gw_b, "host-b");
    let mut c = standby_host(&gw_c, "host-c");
    assert_eq!(report_target_port_groups(&mut a), three_groups(1, 1));
    wait_for_groups(&mut b, &three_groups(2, 1), logs);
    wait_for_groups(&mut c, &three_groups(3, 1), logs);
    assert_eq!(write_numbered(&mut a, 1), (0, 0, 0, 0), "{}", logs());
    assert_eq!(write_numbered(&mut b, 2), STANDBY_REFUSAL);
    assert_eq!(write_numbered(&mut c, 2), STANDBY_REFUSAL);
    assert_eq!(block_on_storage(&storage), numbered_block(1));

    gw_a.signal("STOP");
    let stopped = Instant::now();
    // Whichever of B and C reports itself active first (each host told of the change by
    // ASYMMETRIC ACCESS STATE CHANGED, noted as it comes).
    let (mut ua_b, mut ua_c) = (false, false);
    let (winner, mut w, mut l, loser_group, gw_w, gw_l, ua_w, ua_l) = loop {
        let (groups, ua) = rtpg_seeing_ua(&mut b);
        ua_b |= ua;
        if groups == three_groups(2, 2) {
            break (2, b, c, 3, &gw_b, &gw_c, ua_b, ua_c);
        }
        let (groups, ua) = rtpg_seeing_ua(&mut c);
        ua_c |= ua;
        if groups == three_groups(3, 3) {
            break (3, c, b, 2, &gw_c, &gw_b, ua_c, ua_b);
        }
        assert!(
            stopped.elapsed() < TEST_STALL_AFTER + FAILOVER_BOUND,
            "neither standby took over from the stalled gateway\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(stopped.elapsed() >= TEST_STALL_AFTER, "{}", logs());
    // The other one reads the new record and reports the winner active, and stays
    // standby: its rounds (every second at least) see the winner's heartbeat.
    assert!(
        ua_w,
        "no ASYMMETRIC ACCESS STATE CHANGED through the new active gateway"
    );
    let ua = wait_for_groups_seeing_ua(&mut l, &three_groups(loser_group, winner), stopped, logs);
    assert!(
        ua_l || ua,
        "no ASYMMETRIC ACCESS STATE CHANGED through the standby"
    );
    for _ in 0..3 {
        std::thread::sleep(TEST_STALL_AFTER / 2);
        assert_eq!(
            report_target_port_groups(&mut l),
            three_groups(loser_group, winner),
            "{}",
            logs()
        );
        assert_eq!(
            report_target_port_groups(&mut w),
            three_groups(winner, winner),
            "{}",
            logs()
        );
    }
    assert!(
        gw_w.log().contains("took the data fence over"),
        "{}",
        logs()
    );
    for never in ["took the data fence over", "holds the data fence"] {
        assert!(!gw_l.log().contains(never), "{never}: {}", logs());
    }
    // Writes through the new active gateway land whole; the standby refuses.
    assert_eq!(write_numbered(&mut w, 3), (0, 0, 0, 0), "{}", logs());
    assert_eq!(block_on_storage(&storage), numbered_block(3));
    assert_eq!(write_numbered(&mut l, 4), STANDBY_REFUSAL);
    assert_eq!(block_on_storage(&storage), numbered_block(3));

    // A resumes: none of its writes lands, and it steps down.
    gw_a.signal("CONT");
    let resumed = Instant::now();
    until_the_resumed_gateway_steps_down(&mut a, &storage, 3, resumed, &logs);
    // A's host may still have a unit attention coming: A's step-down reports nobody
    // active, then the record read in the same round the winner.
    wait_for_groups_seeing_ua(&mut a, &three_groups(1, winner), resumed, logs);
    // The standby's states never moved: A left the winner's record as it was.
    assert_eq!(
        report_target_port_groups(&mut l),
        three_groups(loser_group, winner)
    );
    assert_eq!(write_numbered(&mut w, 5), (0, 0, 0, 0), "{}", logs());
    assert_eq!(block_on_storage(&storage), numbered_block(5));
    assert_eq!(
        gw_w.log().matches("holds the data fence").count(),
        1,
        "{}",
        logs()
    );

    // The metrics (`--metrics`): the winner took the LUN over from a stalled gateway, once,
    // and is active; the other standby took nothing and sees the winner's heartbeat move;
    // A took the LUN at its start and stepped down once, for a reason of a stalled gateway.
    let lun = format!("target=\"{IQN}\",lun=\"0\"");
    let value = |gw: &Running, name: &str, extra: &str| {
        let text = scrape_metrics(gw);
        let series = format!("glfs_iscsi_{name}{{{lun}{extra}}}");
        metric_sample(&text, &series).unwrap_or_else(|| panic!("no {series}\n{text}"))
    };
    let took = |gw: &Running, reason: &str| {
        value(gw, "alua_takeovers_total", &format!(",reason=\"{reason}\""))
    };
    let stepped = |gw: &Running, reason: &str| {
        value(gw, "alua_stepdowns_total", &format!(",reason=\"{reason}\""))
    };
    assert_eq!(value(gw_w, "alua_active", ""), 1.0, "{}", logs());
    assert_eq!(value(gw_l, "alua_active", ""), 0.0);
    assert_eq!(value(&gw_a, "alua_active", ""), 0.0);
    assert_eq!(
        ["unheld", "handover", "stalled"].map(|r| took(gw_w, r)),
        [0.0, 0.0, 1.0]
    );
    assert_eq!(
        ["unheld", "handover", "stalled"].map(|r| took(gw_l, r)),
        [0.0; 3]
    );
    assert_eq!(
        ["unheld", "handover", "stalled"].map(|r| took(&gw_a, r)),
        [1.0, 0.0, 0.0]
    );
    let a_stepped = ["superseded", "fence_taken", "fenced"].map(|r| stepped(&gw_a, r));
    assert_eq!(
        a_stepped.iter().sum::<f64>(),
        1.0,
        "{a_stepped:?}\n{}",
        logs()
    );
    for gw in [gw_w, gw_l] {
        assert_eq!(stepped(gw, "fence_taken") + stepped(gw, "superseded"), 0.0);
    }
    assert_eq!(value(gw_w, "alua_heartbeat_age_seconds", ""), 0.0);
    let age = value(gw_l, "alua_heartbeat_age_seconds", "");
    assert!(age < TEST_STALL_AFTER.as_secs_f64(), "{age}\n{}", logs());
    for gw in [&gw_a, gw_w, gw_l] {
        assert_eq!(value(gw, "alua_takeover_blocked", ""), 0.0);
    }
}

/// [`with_three_gateways_one_standby_takes_over_from_a_stalled_active_one`] on the fake
/// volume, where the fence is a mandatory lock and clear-locks and waiting lock requests
/// are modelled.
#[test]
fn with_three_glfs_gateways_one_standby_takes_over_from_a_stalled_active_one() {
    with_three_gateways_one_standby_takes_over_from_a_stalled_active_one(Storage::glfs());
}

/// [`with_three_gateways_one_standby_takes_over_from_a_stalled_active_one`] on the live
/// volume with mandatory locks: three mounts, Gluster's own clear-locks.
#[test]
#[ignore = "live: needs GLUSTER_TEST_FEATURES_VOLUME and GLUSTER_TEST_FEATURES_BRICK (cargo xtask test-gluster)"]
fn live_with_three_gluster_gateways_one_standby_takes_over_from_a_stalled_active_one() {
    on_live_volume_with_mandatory_locks(
        with_three_gateways_one_standby_takes_over_from_a_stalled_active_one,
    );
}

// ---- Failover per LUN: each LUN has an active gateway of its own ----

/// The config file of failover gateway `id` in group `group` (the other `peer`)
/// exporting two LUNs of fake volume `vol`: `lun.img` as LUN 0 and `lun1.img` as LUN 1,
/// each with `alua_preferred` when `prefer` gives one; written in `dir`.
fn two_lun_failover_config(
    dir: &std::path::Path,
    id: &str,
    group: u16,
    peer: u16,
    prefer: [Option<u16>; 2],
) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    let lun = |n: u16, file: &str| {
        let prefer =
            prefer[usize::from(n)].map_or(String::new(), |g| format!("alua_preferred = {g}\n"));
        format!(
            "[[target.lun]]\nlun = {n}\nbstype = \"glfs\"\n\
             backing_store = \"vol@127.0.0.2:{file}\"\nsize = \"4M\"\n{prefer}"
        )
    };
    let text = format!(
        "gateway_id = \"{id}\"\nalua_group = {group}\nalua_peer = [\"{peer}:standby\"]\n\
         alua_failover = true\ngfapi_library = \"{}\"\n[[target]]\nname = \"{IQN}\"\n{}{}",
        fake_library().display(),
        lun(0, "lun.img"),
        lun(1, "lun1.img"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Failover gateway `id` in group `group` (the other `peer`) exporting two LUNs of fake
/// volume `vol` under `root` ([`two_lun_failover_config`], default preferences), with
/// `extra` arguments.
fn two_lun_failover_gateway(
    root: &FakeRoot,
    dir: &std::path::Path,
    id: &str,
    group: u16,
    peer: u16,
    extra: &[&str],
) -> Running {
    root.create_volume("vol");
    let path = two_lun_failover_config(dir, id, group, peer, [None, None]);
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Running::start(&args, &[("GFAPI_FAKE_ROOT", root.path())])
}

/// [`standby_host`] on LUN `lun`.
fn standby_host_on(gateway: &Running, name: &str, lun: u16) -> Initiator {
    let mut opts = login_opts(&format!("iqn.2026-11.test:{name}"), None);
    opts.test_unit_ready_on_connect = false;
    let mut ini = Initiator::connect_with(&gateway.portal(), IQN, lun.into(), &opts)
        .unwrap_or_else(|e| panic!("login to LUN {lun}: {e}"));
    let rtpg = [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    for _ in 0..4 {
        let out = ini.raw_command(&rtpg, &[], 256).unwrap();
        if out.sense_key != 0x6 {
            assert!(out.is_good(), "{out:?}");
            break;
        }
    }
    ini
}

/// The fenced block of `file` on the fake volume.
fn block_of(root: &FakeRoot, file: &str) -> Vec<u8> {
    let bytes = std::fs::read(root.path().join("vol").join(file)).unwrap();
    let at = FENCED_LBA as usize * 512;
    bytes[at..at + 512].to_vec()
}

/// REPORT TARGET PORT GROUPS through `ini` until it reports `want` (within
/// [`FAILOVER_BOUND`] of `since`): whether ASYMMETRIC ACCESS STATE CHANGED came first.
fn wait_for_lun_groups(
    ini: &mut Initiator,
    want: &[(u16, u8, u16)],
    since: Instant,
    logs: &dyn Fn() -> String,
) -> bool {
    let mut ua_seen = false;
    loop {
        let (groups, ua) = rtpg_seeing_ua(ini);
        ua_seen |= ua;
        if groups == want {
            return ua_seen;
        }
        assert!(
            since.elapsed() < FAILOVER_BOUND,
            "{groups:?}, not {want:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two gateways started together spread two LUNs by their preferred groups (LUN 0 to
/// group 1, gateway A; LUN 1 to group 2, gateway B): each LUN's REPORT TARGET PORT GROUPS
/// (SPC-4 6.36, table 258: 0h active/optimized, 2h standby) says so through both
/// gateways, each LUN is written through its own active gateway and refused (NOT READY,
/// 04h/0Bh) through the other. A killed moves LUN 0 only: B becomes active for it (with
/// ASYMMETRIC ACCESS STATE CHANGED on LUN 0), while LUN 1 through B sees no unit attention
/// and keeps being written. A comes back standby for both (no automatic failback), and
/// `admin alua handover 1 --target T --lun 0` on B moves LUN 0 alone back to A.
#[test]
fn two_luns_active_on_different_gateways_fail_over_on_their_own() {
    let root = FakeRoot::new();
    let dir = tempfile::tempdir().unwrap();
    let (sock_a, sock_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let gw_a = two_lun_failover_gateway(
        &root,
        dir.path(),
        "gateway-a",
        1,
        2,
        &["--control-socket", sock_a.to_str().unwrap()],
    );
    let gw_b = two_lun_failover_gateway(
        &root,
        dir.path(),
        "gateway-b",
        2,
        1,
        &["--control-socket", sock_b.to_str().unwrap()],
    );
    let started = Instant::now();
    let logs = || format!("A: {}\nB: {}", gw_a.log(), gw_b.log());
    let (mut a0, mut a1) = (
        standby_host_on(&gw_a, "host-a", 0),
        standby_host_on(&gw_a, "host-a", 1),
    );
    let (mut b0, mut b1) = (
        standby_host_on(&gw_b, "host-a", 0),
        standby_host_on(&gw_b, "host-a", 1),
    );
    // Each gateway lists its own group first.
    wait_for_lun_groups(&mut a0, &[(1, 0x0, 1), (2, 0x2, 2)], started, &logs);
    wait_for_lun_groups(&mut a1, &[(1, 0x2, 1), (2, 0x0, 2)], started, &logs);
    wait_for_lun_groups(&mut b0, &[(2, 0x2, 2), (1, 0x0, 1)], started, &logs);
    wait_for_lun_groups(&mut b1, &[(2, 0x0, 2), (1, 0x2, 1)], started, &logs);
    assert_eq!(write_numbered(&mut a0, 1), (0, 0, 0, 0), "{}", logs());
    assert_eq!(write_numbered(&mut b1, 2), (0, 0, 0, 0), "{}", logs());
    assert_eq!(write_numbered(&mut b0, 3), STANDBY_REFUSAL);
    assert_eq!(write_numbered(&mut a1, 4), STANDBY_REFUSAL);
    assert_eq!(block_of(&root, "lun.img")[..4], 1u32.to_be_bytes());
    assert_eq!(block_of(&root, "lun1.img")[..4], 2u32.to_be_bytes());
    // The operator sees it per LUN: B active/optimized for LUN 1 only, its preferred one.
    let listed = ok(&sock_b, &["alua", "list"]);
    let active: Vec<Vec<&str>> = listed
        .lines()
        .filter(|l| l.contains("active-optimized"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        active,
        [
            vec![
                IQN,
                "0",
                "1",
                "active-optimized",
                "another",
                "gateway",
                "yes"
            ],
            vec![IQN, "1", "2", "active-optimized", "this", "gateway", "yes"],
        ],
        "{listed}"
    );

    // A dies: only LUN 0 moves.
    gw_a.signal("KILL");
    let killed = Instant::now();
    let ua = wait_for_lun_groups(&mut b0, &[(2, 0x0, 2), (1, 0x2, 1)], killed, &logs);
    assert!(ua, "no ASYMMETRIC ACCESS STATE CHANGED on LUN 0 through B");
    let (groups, ua) = rtpg_seeing_ua(&mut b1);
    assert_eq!(groups, [(2, 0x0, 2), (1, 0x2, 1)]);
    assert!(
        !ua,
        "LUN 1 did not change, yet B's host got a unit attention there"
    );
    assert_eq!(write_numbered(&mut b0, 5), (0, 0, 0, 0), "{}", gw_b.log());
    assert_eq!(write_numbered(&mut b1, 6), (0, 0, 0, 0), "{}", gw_b.log());
    assert_eq!(block_of(&root, "lun.img")[..4], 5u32.to_be_bytes());
    assert_eq!(block_of(&root, "lun1.img")[..4], 6u32.to_be_bytes());
    let log = gw_b.log();
    let took: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("holds the data fence"))
        .collect();
    assert_eq!(took.len(), 2, "B took each LUN once: {log}");

    // A comes back: standby for both (B keeps them), and sees B active for both.
    let gw_a = two_lun_failover_gateway(
        &root,
        dir.path(),
        "gateway-a",
        1,
        2,
        &["--control-socket", sock_a.to_str().unwrap()],
    );
    let logs = || format!("A: {}\nB: {}", gw_a.log(), gw_b.log());
    let (mut a0, mut a1) = (
        standby_host_on(&gw_a, "host-a", 0),
        standby_host_on(&gw_a, "host-a", 1),
    );
    let back = Instant::now();
    wait_for_lun_groups(&mut a0, &[(1, 0x2, 1), (2, 0x0, 2)], back, &logs);
    wait_for_lun_groups(&mut a1, &[(1, 0x2, 1), (2, 0x0, 2)], back, &logs);
    assert_eq!(write_numbered(&mut a0, 7), STANDBY_REFUSAL);

    // A planned handover of LUN 0 alone.
    for (socket, args, says) in [
        (
            &sock_a,
            vec!["alua", "handover", "2", "--target", IQN, "--lun", "0"],
            "not the active gateway of LUN 0",
        ),
        (
            &sock_b,
            vec!["alua", "handover", "1", "--target", "iqn.2026-11.test:none"],
            "not the active gateway of any LUN of target",
        ),
        (
            &sock_b,
            vec!["alua", "handover", "1", "--lun", "0"],
            "--target",
        ),
    ] {
        let (done, _, err) = admin(socket, &args);
        assert!(!done && err.contains(says), "{args:?}: {err}");
    }
    let said = ok(
        &sock_b,
        &["alua", "handover", "1", "--target", IQN, "--lun", "0"],
    );
    assert!(said.contains("handing LUN 0 of"), "{said}");
    let asked = Instant::now();
    let ua = wait_for_lun_groups(&mut a0, &[(1, 0x0, 1), (2, 0x2, 2)], asked, &logs);
    assert!(ua, "no ASYMMETRIC ACCESS STATE CHANGED on LUN 0 through A");
    wait_for_lun_groups(&mut b0, &[(2, 0x2, 2), (1, 0x0, 1)], asked, &logs);
    assert_eq!(write_numbered(&mut a0, 8), (0, 0, 0, 0), "{}", logs());
    assert_eq!(write_numbered(&mut b0, 9), STANDBY_REFUSAL);
    // LUN 1 stayed with B throughout.
    let (groups, ua) = rtpg_seeing_ua(&mut b1);
    assert_eq!(groups, [(2, 0x0, 2), (1, 0x2, 1)]);
    assert!(!ua, "LUN 1 was not handed over");
    assert_eq!(write_numbered(&mut b1, 10), (0, 0, 0, 0), "{}", logs());
    assert_eq!(block_of(&root, "lun.img")[..4], 8u32.to_be_bytes());
    assert_eq!(block_of(&root, "lun1.img")[..4], 10u32.to_be_bytes());
}

/// `alua_preferred` in the config file says where a LUN goes when gateways start, over
/// the default (groups in turn): gateway B (group 2) alone, with LUN 0 preferring group 2
/// and LUN 1 group 1 (the reverse of the default), is active/optimized (0h) for LUN 0
/// from its first round, before its portal listens, and standby (2h) for LUN 1, which it
/// leaves to group 1 for its first 10 s; `admin alua list` marks each LUN's preferred
/// group. A group that is neither this gateway's nor a peer's is refused at start with
/// one line naming the LUN.
#[test]
fn a_luns_preferred_group_comes_from_the_config_file() {
    let root = FakeRoot::new();
    root.create_volume("vol");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("b.sock");
    let config = two_lun_failover_config(dir.path(), "gateway-b", 2, 1, [Some(2), Some(1)]);
    let gw_b = Running::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--control-socket",
            socket.to_str().unwrap(),
        ],
        &[("GFAPI_FAKE_ROOT", root.path())],
    );
    let mut b0 = standby_host_on(&gw_b, "host-a", 0);
    let mut b1 = standby_host_on(&gw_b, "host-a", 1);
    assert_eq!(
        report_target_port_groups(&mut b0),
        [(2, 0x0, 2), (1, 0x2, 1)],
        "{}",
        gw_b.log()
    );
    assert_eq!(
        report_target_port_groups(&mut b1),
        [(2, 0x2, 2), (1, 0x2, 1)]
    );
    let listed = ok(&socket, &["alua", "list"]);
    let preferred: Vec<Vec<&str>> = listed
        .lines()
        .filter(|l| l.trim_end().ends_with("yes"))
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        preferred,
        [vec![IQN, "0", "2"], vec![IQN, "1", "1"]],
        "{listed}"
    );

    let bad = two_lun_failover_config(dir.path(), "gateway-c", 2, 1, [None, Some(9)]);
    let out = run_to_exit(&["--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("LUN 1: alua_preferred 9 is not a target port group"),
        "{err}"
    );
}

// ---- A standby stalled with the takeover-breaking lock ----

/// A standby that stalls while it holds a LUN's takeover lock and its takeover-breaking
/// lock (`daemon::stall::TAKEOVER`, `TAKEOVER_BREAK`: the third gateway stalled in a row)
/// keeps that LUN's takeovers out until it goes, and the others say so. The test holds
/// both locks itself, through a store of its own on the fake volume, as such a gateway
/// would, and stops the active gateway A. B, the standby, stays standby and never takes
/// the fence; once the record has stood still for `stall::blocked_after` it logs one WARN
/// naming the stalled holder's way out and shows `glfs_iscsi_alua_takeover_blocked` 1.
/// When the holder lets go (as when its connection goes), B takes the LUN over at its next
/// rounds, the gauge falls back to 0 and B's writes land.
fn a_standby_stalled_with_the_breaking_lock_blocks_the_takeover_until_it_goes(storage: Storage) {
    let bound = STALLED_STANDBY_BOUND;
    let (gw_a, gw_b, mut b) = gateways_for_a_stalled_standby(&storage);
    let logs = || format!("A: {}\nB: {}", gw_a.log(), gw_b.log());

    // The stalled standby: a mount of this process holding both locks of LUN 0's image.
    let (_holder, held) = hold_locks_of_lun_0(
        &storage,
        &[daemon::stall::TAKEOVER, daemon::stall::TAKEOVER_BREAK],
    );

    gw_a.signal("STOP");
    let stopped = Instant::now();
    let blocked = "failover of this LUN is blocked";
    let blocked_after = daemon::stall::blocked_after(bound);
    while !gw_b.log().contains(blocked) {
        assert_eq!(
            report_target_port_groups(&mut b),
            [(2, 0x2, 2), (1, 0x0, 1)],
            "{}",
            logs()
        );
        assert!(
            stopped.elapsed() < blocked_after + FAILOVER_BOUND,
            "B never said the takeover is blocked\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // B counts the stall from A's last heartbeat (at most a second before the stop).
    let warned = stopped.elapsed();
    assert!(
        warned + Duration::from_secs(1) >= blocked_after,
        "warned after {warned:?}"
    );
    let lun = format!("target=\"{IQN}\",lun=\"0\"");
    let gauge = |gw: &Running| {
        let text = scrape_metrics(gw);
        let series = format!("glfs_iscsi_alua_takeover_blocked{{{lun}}}");
        metric_sample(&text, &series).unwrap_or_else(|| panic!("no {series}\n{text}"))
    };
    assert_eq!(gauge(&gw_b), 1.0, "{}", logs());
    // More rounds: still standby, still refusing writes, warned once, no fence taken.
    std::thread::sleep(bound * 2);
    assert_eq!(
        report_target_port_groups(&mut b),
        [(2, 0x2, 2), (1, 0x0, 1)]
    );
    assert_eq!(write_numbered(&mut b, 1), STANDBY_REFUSAL, "{}", logs());
    let log_b = gw_b.log();
    assert_eq!(
        log_b.matches(blocked).count(),
        1,
        "one WARN, then info lines\n{log_b}"
    );
    assert!(log_b.contains("WARN"), "{log_b}");
    assert!(!log_b.contains("took the data fence over"), "{log_b}");
    assert_eq!(gauge(&gw_b), 1.0);

    // The holder goes: B takes the LUN over.
    drop(held);
    let released = Instant::now();
    assert!(wait_for_groups_seeing_ua(
        &mut b,
        &[(2, 0x0, 2), (1, 0x2, 1)],
        released,
        logs
    ));
    assert!(
        gw_b.log().contains("took the data fence over"),
        "{}",
        logs()
    );
    assert_eq!(gauge(&gw_b), 0.0, "{}", logs());
    let text = scrape_metrics(&gw_b);
    let stalled = format!("glfs_iscsi_alua_takeovers_total{{{lun},reason=\"stalled\"}}");
    assert_eq!(metric_sample(&text, &stalled), Some(1.0), "{text}");
    assert_eq!(write_numbered(&mut b, 2).0, 0, "{}", logs());
    assert_eq!(block_on_storage(&storage)[..4], 2u32.to_be_bytes());
    gw_a.signal("CONT");
}

/// The stall bound of the stalled-standby tests (`--alua-stall-after`, its least).
const STALLED_STANDBY_BOUND: Duration = Duration::from_secs(2);

/// Failover gateways A (active, group 1) and B (standby, group 2) with the stall bound
/// [`STALLED_STANDBY_BOUND`] and metrics, and host-b logged in through B once B reports
/// A active.
fn gateways_for_a_stalled_standby(storage: &Storage) -> (Running, Running, Initiator) {
    let bound = STALLED_STANDBY_BOUND.as_secs().to_string();
    let args = ["--alua-stall-after", &bound, "--metrics", "127.0.0.1:0"];
    let gw_a = failover_gateway(storage, "gateway-a", "1", "2", &args);
    let gw_b = failover_gateway(storage, "gateway-b", "2", "1", &args);
    let mut b = standby_host(&gw_b, "host-b");
    wait_for_groups(&mut b, &[(2, 0x2, 2), (1, 0x0, 1)], || {
        format!("A: {}\nB: {}", gw_a.log(), gw_b.log())
    });
    (gw_a, gw_b, b)
}

/// A mount of this test process on the gateways' volume (through the libgfapi they use:
/// the fake, or the real one on a live volume) holding LUN 0's metadata locks `names`,
/// exclusive, as gateway "gateway-c" would: a gateway stopped right after taking them.
/// The store goes with the locks.
fn hold_locks_of_lun_0(
    storage: &Storage,
    names: &[&str],
) -> (
    std::sync::Arc<dyn store_api::BlockStore>,
    Vec<store_api::MetadataLock>,
) {
    // The fake reads GFAPI_FAKE_ROOT when it mounts, and a process shares one mount per
    // volume and servers: under `cargo test`, where tests share the process, each holder
    // sets the variable and mounts under one lock, through a server name of its own (the
    // fake ignores the name; the gateways get the root in their own environment).
    static MOUNTING: std::sync::Mutex<u32> = std::sync::Mutex::new(0);
    let mut mounting = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let (backing_store, gfapi_library) = match storage {
        Storage::Glfs(root) => {
            *mounting += 1;
            std::env::set_var("GFAPI_FAKE_ROOT", root.path());
            (
                format!("vol@holder-{}:lun.img", *mounting),
                Some(fake_library()),
            )
        }
        Storage::Live { volume, file, .. } => (format!("{volume}:{file}"), None),
        Storage::File(_) => unreachable!("the stalled standby holds glfs locks"),
    };
    let holder = backstore::open_store(&backstore::StoreOptions {
        bstype: "glfs".into(),
        backing_store,
        gfapi_library,
        ..Default::default()
    })
    .unwrap();
    drop(mounting);
    let owner = store_api::LockOwner::new("gateway-c").unwrap();
    let held = names
        .iter()
        .map(|name| {
            holder
                .lock_metadata(
                    name,
                    &owner,
                    store_api::LockMode::Exclusive,
                    store_api::LockWait::NoWait,
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    (holder, held)
}

/// A standby that stalls while it holds a LUN's takeover lock (`daemon::stall::TAKEOVER`:
/// the active gateway stalled, then the standby taking over from it) delays the other
/// standby to twice the stall bound, and no longer: the test holds the takeover lock
/// itself through a mount of its own and stops the active gateway A. B stays standby for
/// twice the bound, then takes the breaking lock, takes the stuck takeover lock over
/// (the fake's clear-locks, granting B's waiting request as it clears), then the election
/// lock and the fence, and becomes active; its writes land. (Before stop 28 the breaking
/// lock had a name no store keeps, and B stayed standby for as long as the lock was held.)
fn a_standby_stalled_with_the_takeover_lock_delays_the_takeover_to_twice_the_bound(
    storage: Storage,
) {
    let bound = STALLED_STANDBY_BOUND;
    let (gw_a, gw_b, mut b) = gateways_for_a_stalled_standby(&storage);
    let logs = || format!("A: {}\nB: {}", gw_a.log(), gw_b.log());
    let (_holder, _held) = hold_locks_of_lun_0(&storage, &[daemon::stall::TAKEOVER]);

    gw_a.signal("STOP");
    let stopped = Instant::now();
    // Past the bound, short of twice the bound: still standby (the lock is held).
    std::thread::sleep(bound + bound / 2);
    assert_eq!(
        report_target_port_groups(&mut b),
        [(2, 0x2, 2), (1, 0x0, 1)],
        "{}",
        logs()
    );
    assert!(wait_for_groups_seeing_ua(
        &mut b,
        &[(2, 0x0, 2), (1, 0x2, 1)],
        stopped,
        logs
    ));
    // B counts the stall from A's last heartbeat (at most a second before the stop).
    let took = stopped.elapsed();
    assert!(
        took + Duration::from_secs(1) >= 2 * bound,
        "took over after {took:?}"
    );
    let log_b = gw_b.log();
    assert!(log_b.contains("taking its takeover lock over"), "{log_b}");
    assert!(log_b.contains("took the data fence over"), "{log_b}");
    assert!(!log_b.contains("cannot take the takeover lock"), "{log_b}");
    let lun = format!("target=\"{IQN}\",lun=\"0\"");
    let text = scrape_metrics(&gw_b);
    let stalled = format!("glfs_iscsi_alua_takeovers_total{{{lun},reason=\"stalled\"}}");
    assert_eq!(metric_sample(&text, &stalled), Some(1.0), "{text}");
    assert_eq!(write_numbered(&mut b, 1).0, 0, "{}", logs());
    assert_eq!(block_on_storage(&storage)[..4], 1u32.to_be_bytes());
    gw_a.signal("CONT");
}

#[test]
fn a_glfs_standby_stalled_with_the_breaking_lock_blocks_the_takeover_until_it_goes() {
    a_standby_stalled_with_the_breaking_lock_blocks_the_takeover_until_it_goes(Storage::glfs());
}

/// [`a_standby_stalled_with_the_breaking_lock_blocks_the_takeover_until_it_goes`] on the
/// live volume with mandatory locks: the test's own mount through the real libgfapi holds
/// the locks.
#[test]
#[ignore = "live: needs GLUSTER_TEST_FEATURES_VOLUME and GLUSTER_TEST_FEATURES_BRICK (cargo xtask test-gluster)"]
fn live_a_gluster_standby_stalled_with_the_breaking_lock_blocks_the_takeover_until_it_goes() {
    on_live_volume_with_mandatory_locks(
        a_standby_stalled_with_the_breaking_lock_blocks_the_takeover_until_it_goes,
    );
}

#[test]
fn a_glfs_standby_stalled_with_the_takeover_lock_delays_the_takeover_to_twice_the_bound() {
    a_standby_stalled_with_the_takeover_lock_delays_the_takeover_to_twice_the_bound(Storage::glfs());
}

/// [`a_standby_stalled_with_the_takeover_lock_delays_the_takeover_to_twice_the_bound`] on
/// the live volume with mandatory locks: Gluster's own clear-locks takes the test's
/// takeover lock away.
#[test]
#[ignore = "live: needs GLUSTER_TEST_FEATURES_VOLUME and GLUSTER_TEST_FEATURES_BRICK (cargo xtask test-gluster)"]
fn live_a_gluster_standby_stalled_with_the_takeover_lock_delays_the_takeover_to_twice_the_bound() {
    on_live_volume_with_mandatory_locks(
        a_standby_stalled_with_the_takeover_lock_delays_the_takeover_to_twice_the_bound,
    );
}
