//! Helpers shared by the daemon's integration tests: a running `glfs-iscsi` child process.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use testkit::initiator::{ConnectOptions, Initiator};

pub const BINARY: &str = env!("CARGO_BIN_EXE_glfs-iscsi");
pub const IQN: &str = "iqn.2026-11.io.glfs-iscsi:e2e";
pub const BLOCK: u32 = 512;

/// A running target, killed on drop: the workspace's one harness
/// ([`testkit::daemon::Daemon`]). Its output goes to `$E2E_TARGET_LOG` if set, else a
/// temporary file.
pub struct Running {
    daemon: testkit::daemon::Daemon,
    pub portal: SocketAddr,
}

impl Running {
    pub fn start(args: &[&str], env: &[(&str, &Path)]) -> Running {
        Running::start_on("127.0.0.1", args, env)
    }

    /// Starts the target listening on `host` (e.g. `0.0.0.0`) at a free port; `portal` is
    /// where tests connect: `host` itself, or 127.0.0.1 for a wildcard.
    pub fn start_on(host: &str, args: &[&str], env: &[(&str, &Path)]) -> Running {
        let mut running = Running::spawn_on(host, args, env);
        running.wait_listening();
        running
    }

    /// Starts the target on 127.0.0.1 at a free port without waiting for its portal
    /// (see [`Running::wait_listening`]).
    pub fn spawn(args: &[&str], env: &[(&str, &Path)]) -> Running {
        Running::spawn_on("127.0.0.1", args, env)
    }

    /// Waits up to 20 s until the portal accepts connections.
    pub fn wait_listening(&mut self) {
        self.daemon
            .wait_listening(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    fn spawn_on(host: &str, args: &[&str], env: &[(&str, &Path)]) -> Running {
        let mut launch = testkit::daemon::Launch::new(BINARY)
            .host(host)
            .args(["--target", IQN])
            .args(args);
        for (key, value) in env {
            launch = launch.env(key, value);
        }
        if let Some(path) = std::env::var_os("E2E_TARGET_LOG") {
            launch = launch.log(PathBuf::from(path));
        }
        let daemon = testkit::daemon::Daemon::spawn(launch).unwrap_or_else(|e| panic!("{e:#}"));
        Running {
            portal: daemon.portal(),
            daemon,
        }
    }

    /// Everything the target has logged so far.
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }

    /// Waits up to 10 s for a log line containing every one of `needles`; returns it.
    pub fn wait_for_log_line(&self, needles: &[&str]) -> String {
        self.wait_for_log_line_within(needles, Duration::from_secs(10))
    }

    /// [`Running::wait_for_log_line`] for up to `patience`.
    pub fn wait_for_log_line_within(&self, needles: &[&str], patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let log = self.log();
            if let Some(line) = log
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
            {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} in:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn portal(&self) -> String {
        self.portal.to_string()
    }

    /// Sends the daemon a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        self.daemon.signal(name).unwrap();
    }

    /// Sends the target SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Waits up to `patience` for the target to exit; its exit status if it did.
    pub fn wait_exit(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        self.daemon.wait_exit(patience).unwrap()
    }

    pub fn connect(&self) -> Initiator {
        Initiator::connect(&self.portal(), IQN, 0).expect("login to the target")
    }
}

pub fn fake_library() -> PathBuf {
    testkit::fake::fake_library_path()
}

/// The target with one 4 MiB glfs LUN, `lun.img` on fake volume `vol` under `root` (the
/// volume is created if missing), and `extra` arguments.
pub fn glfs_target(root: &testkit::fake::FakeRoot, extra: &[&str]) -> Running {
    let mut target = spawn_glfs_target(root, extra, &[]);
    target.wait_listening();
    target
}

/// [`glfs_target`] with more environment, without waiting for its portal.
pub fn spawn_glfs_target(
    root: &testkit::fake::FakeRoot,
    extra: &[&str],
    env: &[(&str, &Path)],
) -> Running {
    root.create_volume("vol");
    let lib = fake_library();
    let mut args = vec![
        "--bstype",
        "glfs",
        "--backing-store",
        "vol@127.0.0.2:lun.img",
        "--size",
        "4M",
        "--gfapi-library",
        lib.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("GFAPI_FAKE_ROOT", root.path()));
    Running::spawn(&args, &env)
}

/// Drops every connection of fake volume `vol` (mounts included) for `outage` while
/// `during` runs, then lets the volume answer again.
pub fn with_outage<R>(
    root: &testkit::fake::FakeRoot,
    vol: &str,
    outage: Duration,
    during: impl FnOnce() -> R,
) -> R {
    root.set_rules(&[testkit::fake::FaultRule::any().volume(vol).disconnect()]);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(outage);
            root.clear();
        });
        during()
    })
}

/// Runs the binary to completion (for start-up errors).
pub fn run_to_exit(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(["--portal", "127.0.0.1:0", "--target", IQN])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run glfs-iscsi")
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---- A minimal hand-written initiator, for what libiscsi's synchronous API cannot do
// ---- (outstanding commands, chosen task tags, malformed PDUs). Byte layouts from
// ---- RFC 7143 section 11.

pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Sends a PDU: `bhs` with its DataSegmentLength set from `data`, then the padded data.
pub fn send_pdu(stream: &mut TcpStream, bhs: [u8; 48], data: &[u8]) {
    let mut bhs = bhs;
    let len = data.len() as u32;
    bhs[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    let mut pdu = bhs.to_vec();
    pdu.extend_from_slice(data);
    pdu.resize(48 + pad4(data.len()), 0);
    stream.write_all(&pdu).unwrap();
}

pub fn recv_pdu(stream: &mut TcpStream) -> ([u8; 48], Vec<u8>) {
    let mut bhs = [0u8; 48];
    stream.read_exact(&mut bhs).unwrap();
    assert_eq!(bhs[4], 0, "no AHS expected");
    let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
    let mut data = vec![0u8; pad4(len)];
    stream.read_exact(&mut data).unwrap();
    data.truncate(len);
    (bhs, data)
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// Logs in to `iqn` straight into the operational stage and on to full feature phase, then
/// consumes the new nexus's unit attention (POWER ON) with immediate TEST UNIT READYs on
/// LUN 0, as initiators do, so that CmdSN 1 is still the next; returns the next ExpStatSN.
pub fn raw_login(stream: &mut TcpStream, iqn: &str) -> u32 {
    raw_login_as(stream, iqn, RAW_INITIATOR)
}

/// The initiator name of raw sessions ([`raw_login`]).
pub const RAW_INITIATOR: &str = "iqn.2026-11.test:raw";

/// [`raw_login`] as initiator `initiator` (another initiator port than the default's).
pub fn raw_login_as(stream: &mut TcpStream, iqn: &str, initiator: &str) -> u32 {
    let (resp, _) = raw_login_response_as(stream, iqn, initiator);
    let mut exp_stat_sn = be32(&resp[24..]) + 1;
    for attempt in 0..4u32 {
        let mut tur = scsi_command(&[0; 6], 0x7fff_0000 + attempt, 1, exp_stat_sn, 0, false);
        tur[0] = 0x41; // immediate: CmdSN does not advance
        tur[1] = 0x81; // F, SIMPLE, no data
        send_pdu(stream, tur, &[]);
        let (resp, _) = recv_pdu(stream);
        assert_eq!(
            resp[0] & 0x3f,
            0x21,
            "SCSI Response to TEST UNIT READY expected"
        );
        exp_stat_sn = be32(&resp[24..]) + 1;
        if resp[3] == 0 {
            return exp_stat_sn;
        }
    }
    panic!("TEST UNIT READY still fails after four tries");
}

/// A raw session with target `iqn` at `portal`: connected (reads time out after 10 s,
/// so a missing answer fails the test instead of hanging it) and logged in with
/// [`raw_login`]; the next ExpStatSN.
pub fn raw_session(portal: SocketAddr, iqn: &str) -> (TcpStream, u32) {
    raw_session_as(portal, iqn, RAW_INITIATOR)
}

/// [`raw_session`] as initiator `initiator`.
pub fn raw_session_as(portal: SocketAddr, iqn: &str, initiator: &str) -> (TcpStream, u32) {
    let mut stream = TcpStream::connect(portal).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let exp_stat_sn = raw_login_as(&mut stream, iqn, initiator);
    (stream, exp_stat_sn)
}

/// [`raw_login`] without touching the LUN afterwards.
pub fn raw_login_only(stream: &mut TcpStream, iqn: &str) -> u32 {
    let (resp, _) = raw_login_response(stream, iqn);
    be32(&resp[24..]) + 1
}

/// The one Login Request of [`raw_login_only`] and its successful Login Response: the
/// header and the text keys.
pub fn raw_login_response(stream: &mut TcpStream, iqn: &str) -> ([u8; 48], Vec<u8>) {
    raw_login_response_as(stream, iqn, RAW_INITIATOR)
}

/// [`raw_login_response`] as initiator `initiator`.
pub fn raw_login_response_as(
    stream: &mut TcpStream,
    iqn: &str,
    initiator: &str,
) -> ([u8; 48], Vec<u8>) {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43; // immediate + Login Request
    bhs[1] = 0x87; // T=1, CSG=1 (operational), NSG=3 (full feature)
    bhs[8..14].copy_from_slice(&[0x80, 0x12, 0x34, 0x56, 0x00, 0x01]); // ISID, random type
    bhs[16..20].copy_from_slice(&0x100u32.to_be_bytes()); // ITT
    bhs[24..28].copy_from_slice(&1u32.to_be_bytes()); // CmdSN
    let keys = format!(
        "InitiatorName={initiator}\0TargetName={iqn}\0SessionType=Normal\0\
         ImmediateData=Yes\0InitialR2T=No\0MaxBurstLength=262144\0FirstBurstLength=65536\0\
         MaxRecvDataSegmentLength=65536\0\
         HeaderDigest=None\0DataDigest=None\0"
    );
    send_pdu(stream, bhs, keys.as_bytes());
    let (resp, data) = recv_pdu(stream);
    assert_eq!(resp[0] & 0x3f, 0x23, "Login Response expected");
    assert_eq!(
        (resp[36], resp[37]),
        (0, 0),
        "login status: {}",
        String::from_utf8_lossy(&data)
    );
    assert_eq!(resp[1] & 0x83, 0x83, "transit to full feature phase");
    (resp, data)
}

/// A SCSI Command PDU header: `cdb` (up to 16 bytes), task tag, CmdSN, ExpStatSN, expected
/// transfer length, and the read (R) or write (W) flag. Final, SIMPLE task attribute.
pub fn scsi_command(
    cdb: &[u8],
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    len: u32,
    write: bool,
) -> [u8; 48] {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x01;
    bhs[1] = 0x81 | if write { 0x20 } else { 0x40 };
    bhs[16..20].copy_from_slice(&itt.to_be_bytes());
    bhs[20..24].copy_from_slice(&len.to_be_bytes());
    bhs[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
    bhs[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    bhs[32..32 + cdb.len()].copy_from_slice(cdb);
    bhs
}

/// An immediate Task Management Function Request header (RFC 7143 11.5).
pub fn tmf_request(
    function: u8,
    lun: u16,
    itt: u32,
    referenced_itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    ref_cmd_sn: u32,
) -> [u8; 48] {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x42;
    bhs[1] = 0x80 | function;
    // Single-level LUN, peripheral addressing (SAM-5 4.7.3): byte 1 is the LUN.
    bhs[8..10].copy_from_slice(&lun.to_be_bytes());
    bhs[16..20].copy_from_slice(&itt.to_be_bytes());
    bhs[20..24].copy_from_slice(&referenced_itt.to_be_bytes());
    bhs[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
    bhs[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    bhs[32..36].copy_from_slice(&ref_cmd_sn.to_be_bytes());
    bhs
}

/// An immediate NOP-Out ping with `itt` and `cmd_sn`.
pub fn nop_out(itt: u32, cmd_sn: u32, exp_stat_sn: u32) -> [u8; 48] {
    let mut nop = [0u8; 48];
    nop[0] = 0x40;
    nop[1] = 0x80;
    nop[16..20].copy_from_slice(&itt.to_be_bytes());
    nop[20..24].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    nop[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
    nop[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    nop
}

/// Runs `glfs-iscsi admin --socket SOCKET ARGS...`: (exit success, stdout, stderr).
pub fn admin(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BINARY)
        .arg("admin")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run glfs-iscsi admin");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `admin` that must succeed; its standard output.
pub fn ok(socket: &Path, args: &[&str]) -> String {
    let (success, out, err) = admin(socket, args);
    assert!(success, "admin {args:?} failed: {err}");
    out
}

/// Login options as `initiator`, answering CHAP as (user, secret) when `chap` is given.
pub fn login_opts(initiator: &str, chap: Option<(&str, &str)>) -> ConnectOptions {
    ConnectOptions {
        initiator_name: Some(initiator.to_string()),
        chap: chap.map(|(u, s)| (u.to_string(), s.to_string())),
        ..Default::default()
    }
}

/// Logs in to LUN 0 of `target` on `daemon` with `opts`; libiscsi's error as text.
pub fn login_with(
    daemon: &Running,
    target: &str,
    opts: &ConnectOptions,
) -> Result<Initiator, String> {
    Initiator::connect_with(&daemon.portal(), target, 0, opts).map_err(|e| e.to_string())
}

/// Logs in to LUN 0 of `target` as `initiator`, with CHAP when given.
pub fn login_as(
    daemon: &Running,
    target: &str,
    initiator: &str,
    chap: Option<(&str, &str)>,
) -> Result<Initiator, String> {
    login_with(daemon, target, &login_opts(initiator, chap))
}

/// PERSISTENT RESERVE OUT (SPC-4 table 169) service action `sa`, TYPE `kind`, with the
/// 24-byte parameter list (table 171): RESERVATION KEY `key`, SERVICE ACTION RESERVATION
/// KEY `sa_key` and byte 20 `flags` (APTPL 01h): the status byte.
pub fn prout_with(ini: &mut Initiator, sa: u8, kind: u8, key: u64, sa_key: u64, flags: u8) -> u8 {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    let cdb = [0x5F, sa, kind, 0, 0, 0, 0, 0, 24, 0];
    ini.raw_command(&cdb, &p, 0).unwrap().status
}

/// PERSISTENT RESERVE IN READ RESERVATION (SPC-4 table 167) data: (key, type), or None
/// without a reservation.
pub fn read_reservation(ini: &mut Initiator) -> Option<(u64, u8)> {
    let out = ini
        .raw_command(&[0x5E, 0x01, 0, 0, 0, 0, 0, 0, 64, 0], &[], 64)
        .unwrap();
    assert!(out.is_good(), "{out:?}");
    let d = out.data;
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap());
    (len == 16).then(|| {
        (
            u64::from_be_bytes(d[8..16].try_into().unwrap()),
            d[21] & 0x0F,
        )
    })
}

/// WRITE(10) of one 512-byte block at LBA 8: the status byte.
pub fn write_status(ini: &mut Initiator) -> u8 {
    let cdb = [0x2A, 0, 0, 0, 0, 8, 0, 0, 1, 0];
    ini.raw_command(&cdb, &pattern(3, 512), 0).unwrap().status
}

/// REPORT TARGET PORT GROUPS (SPC-4 6.36, MAINTENANCE IN A3h service action 0Ah, length
/// format): (group, state, relative target port) per descriptor (tables 257, 259).
pub fn report_target_port_groups(ini: &mut Initiator) -> Vec<(u16, u8, u16)> {
    let out = ini
        .raw_command(&[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[], 256)
        .unwrap();
    assert!(out.is_good(), "{out:?}");
    target_port_groups(&out.data)
}

/// REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36.2, length-only header, table
/// 255; descriptors of table 257 with one target port each, table 259): (group, state,
/// relative target port) per group.
pub fn target_port_groups(d: &[u8]) -> Vec<(u16, u8, u16)> {
    let len = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
    d[4..4 + len]
        .chunks(12)
        .map(|g| {
            assert_eq!(g[7], 1, "one target port per group");
            (
                u16::from_be_bytes([g[2], g[3]]),
                g[0] & 0x0F,
                u16::from_be_bytes([g[10], g[11]]),
            )
        })
        .collect()
}

/// A host on a raw iSCSI connection, so the test sees exactly which PDUs it gets (and
/// which it does not): its CmdSN and ExpStatSN.
pub struct RawHost {
    pub stream: TcpStream,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl RawHost {
    /// Logs in as [`RAW_INITIATOR`].
    pub fn login(target: &Running) -> RawHost {
        RawHost::login_as(target, RAW_INITIATOR)
    }

    /// [`RawHost::login`] as initiator `initiator` (another initiator port).
    pub fn login_as(target: &Running, initiator: &str) -> RawHost {
        let (stream, exp_stat_sn) = raw_session_as(target.portal, IQN, initiator);
        RawHost {
            stream,
            cmd_sn: 1,
            exp_stat_sn,
        }
    }

    /// Sends a SCSI command with `itt` and its data out immediately (RFC 7143 11.3),
    /// without waiting for its response.
    pub fn send(&mut self, cdb: &[u8], itt: u32, data_out: &[u8], read_len: u32) {
        let write = !data_out.is_empty();
        let len = if write {
            data_out.len() as u32
        } else {
            read_len
        };
        let bhs = scsi_command(cdb, itt, self.cmd_sn, self.exp_stat_sn, len, write);
        send_pdu(&mut self.stream, bhs, data_out);
        self.cmd_sn += 1;
    }

    /// The next PDU, which must be a SCSI Response (11.4): ITT, status and, with
    /// CHECK CONDITION, (sense key, ASC, ASCQ) from the fixed format sense data after
    /// its 2-byte SenseLength (SPC-4 4.5.3).
    pub fn response(&mut self) -> (u32, u8, Option<(u8, u8, u8)>) {
        let (bhs, data) = recv_pdu(&mut self.stream);
        assert_eq!(
            bhs[0] & 0x3f,
            0x21,
            "SCSI Response expected, got {:#x}",
            bhs[0]
        );
        self.exp_stat_sn = be32(&bhs[24..]) + 1;
        let sense = (bhs[3] == 0x02).then(|| (data[4] & 0x0f, data[14], data[15]));
        (be32(&bhs[16..]), bhs[3], sense)
    }

    /// Runs a command and returns its status and sense.
    pub fn run(&mut self, cdb: &[u8], itt: u32, data_out: &[u8]) -> (u8, Option<(u8, u8, u8)>) {
        self.send(cdb, itt, data_out, 0);
        let (answered, status, sense) = self.response();
        assert_eq!(answered, itt, "the response of the command sent");
        (status, sense)
    }
}

/// Where `target`, started with `--metrics 127.0.0.1:0`, serves its metrics (from its
/// start-up line).
pub fn metrics_address(target: &Running) -> String {
    let line = target.wait_for_log_line(&["metrics on http://"]);
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address")
        .to_string()
}

/// GET /metrics from `target` (see [`metrics_address`]): the body.
pub fn scrape_metrics(target: &Running) -> String {
    scrape_metrics_at(&metrics_address(target))
}

/// GET /metrics from `addr`: the body.
pub fn scrape_metrics_at(addr: &str) -> String {
    testkit::metrics::scrape(addr).unwrap()
}

/// The value of the sample `series` (name and labels as exposed) in a scraped body.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    testkit::metrics::sample(text, series)
}

/// The TCP congestion control of the target's end of `stream` (a connection the test
/// made to a daemon on this machine), as the kernel reports it (`ss -ti`, iproute2).
pub fn target_side_congestion(stream: &TcpStream) -> String {
    socket_congestion(stream.peer_addr().unwrap(), stream.local_addr().unwrap())
}

/// The TCP congestion control of the test's own end of `stream`.
pub fn our_side_congestion(stream: &TcpStream) -> String {
    socket_congestion(stream.local_addr().unwrap(), stream.peer_addr().unwrap())
}

/// The algorithm of the established socket bound to `local` and connected to `remote`.
fn socket_congestion(local: SocketAddr, remote: SocketAddr) -> String {
    let filter = format!(
        "( sport = :{} and dport = :{} )",
        local.port(),
        remote.port()
    );
    let out = Command::new("ss")
        .args(["-H", "-t", "-i", "-n", "state", "established", &filter])
        .output()
        .expect("ss (iproute2) runs");
    assert!(
        out.status.success(),
        "ss: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Its details name the algorithm as a bare word among the options (ts, sack, ...):
    // the one word the kernel lists as available.
    let available =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap();
    let names: Vec<&str> = available.split_whitespace().collect();
    let found: Vec<&str> = text
        .split_whitespace()
        .filter(|t| names.contains(t))
        .collect();
    assert_eq!(found.len(), 1, "one socket with one algorithm in: {text}");
    found[0].to_string()
}

/// An algorithm other than the kernel's default that the kernel offers (`reno` is built
/// into every kernel; `cubic` where `reno` is the default), so a test that sets it sees
/// a change.
pub fn congestion_other_than_default() -> &'static str {
    if default_congestion() == "reno" {
        "cubic"
    } else {
        "reno"
    }
}

/// The kernel's default TCP congestion control.
pub fn default_congestion() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .unwrap()
        .trim()
        .to_string()
}
