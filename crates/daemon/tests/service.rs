//! Running as a systemd service: readiness notification through `NOTIFY_SOCKET`, and the
//! example configuration the package installs in /etc/glfs-iscsi/.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;
use support::Running;

/// Reads notification datagrams until one has the line `wanted`; returns that datagram.
fn wait_for_notification(socket: &UnixDatagram, wanted: &str) -> String {
    let mut buf = [0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {wanted} notification: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.lines().any(|l| l == wanted) {
            return text;
        }
    }
}

#[test]
fn the_daemon_notifies_readiness_once_its_portal_listens_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut target = Running::start(
        &["--bstype", "memory", "--size", "1M"],
        &[("NOTIFY_SOCKET", path.as_path())],
    );
    // sd_notify(3): newline-separated VAR=VALUE assignments.
    let ready = wait_for_notification(&socket, "READY=1");
    assert!(
        ready
            .lines()
            .any(|l| l == format!("STATUS=serving on {}", target.portal())),
        "{ready:?}"
    );
    // The portal accepts logins by the time READY=1 is sent (Running::start saw it listen;
    // a login proves the LUN is open).
    let mut initiator = target.connect();
    assert_eq!(initiator.read_capacity16().unwrap(), (2048, 512));
    drop(initiator);
    target.terminate();
    wait_for_notification(&socket, "STOPPING=1");
    assert!(target.wait_exit(Duration::from_secs(30)).is_some());
}

#[test]
fn the_packaged_example_configuration_is_valid_and_secure_by_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/glfs-iscsi.toml");
    let config = daemon::config::ConfigFile::load(&path).unwrap();
    let portal = config.portal.expect("the example names its portal");
    assert!(portal.ip().is_unspecified(), "listens on every address");
    let targets = config.target_specs(None).unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].luns[0].store.bstype, "glfs");
    // On a wildcard portal a target must have an ACL or CHAP: the example has an ACL, so
    // the service starts once the volume is right.
    daemon::auth::check_open_targets(&targets, portal).unwrap();
    assert!(!targets[0].access.acl.is_empty());
}

#[test]
fn the_unit_listens_where_admin_looks_by_default() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/glfs-iscsi.service"),
    )
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains(&format!(
            "--control-socket {}",
            daemon::admin::DEFAULT_SOCKET
        )),
        "{exec}"
    );
}
