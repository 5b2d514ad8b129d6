//! Several processes on one fake root, as several gateways on one volume: locks are
//! seen by the others and go when their holder dies; a change by one client is reported
//! to another that listens for upcalls; a lease is recalled when another process wants
//! the file, and the other's conflicting open waits until the lease is returned or
//! revoked after the recall timeout. The clients are `tests/c/peer.c` (built against glfs.h, see `common`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

struct Root {
    dir: tempfile::TempDir,
    peer: PathBuf,
}

impl Root {
    fn new() -> Option<Root> {
        // built once per test process (the tests run in parallel)
        static PEER: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
        let peer = PEER.get_or_init(|| common::build_c("peer")).clone()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vol")).unwrap();
        std::fs::write(dir.path().join("vol/f"), b"original").unwrap();
        Some(Root { dir, peer })
    }

    fn cmd(&self, role: &str) -> Command {
        let mut c = Command::new(&self.peer);
        c.args([role, "vol", "/f"])
            .env("LD_LIBRARY_PATH", common::library_path().parent().unwrap())
            .env("GFAPI_FAKE_ROOT", self.dir.path())
            .stdout(Stdio::piped());
        c
    }

    /// Starts a peer and waits for its first line.
    fn start(&self, role: &str, first: &str) -> (Child, BufReader<ChildStdout>) {
        let mut child = self.cmd(role).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        assert_eq!(next_line(&mut out), first, "{role} did not start");
        (child, out)
    }

    /// Runs `peer write` and returns its line.
    fn write(&self) -> String {
        self.run(&mut self.cmd("write"))
    }

    /// Runs a peer to its end and returns its output.
    fn run(&self, cmd: &mut Command) -> String {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "peer {cmd:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn data(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("vol/f")).unwrap()
    }
}

fn next_line(r: &mut BufReader<ChildStdout>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s.trim().to_string()
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_mandatory_lock_refuses_another_process_write_until_its_holder_dies() {
    let Some(root) = Root::new() else { return };
    let (holder, _out) = root.start("hold-mandatory", "locked");
    assert_eq!(root.write(), "write: -1 EAGAIN");
    assert_eq!(root.data(), b"original");
    kill(holder);
    assert_eq!(root.write(), "write: 4");
    assert_eq!(root.data(), b"peerinal");
}

#[test]
fn a_registered_client_is_told_of_another_process_write() {
    let Some(root) = Root::new() else { return };
    let (mut waiter, mut out) = root.start("wait-upcall", "ready");
    assert_eq!(root.write(), "write: 4");
    // GLFS_UPCALL_INODE_INVALIDATE (1) with GFAPI_UP_SIZE
    assert_eq!(next_line(&mut out), "upcall 1 size");
    assert!(waiter.wait().unwrap().success());
}

#[test]
fn a_polling_client_is_told_of_another_process_write() {
    let Some(root) = Root::new() else { return };
    let (mut waiter, mut out) = root.start("poll-upcall", "ready");
    assert_eq!(root.write(), "write: 4");
    assert_eq!(next_line(&mut out), "upcall 1 size");
    assert!(waiter.wait().unwrap().success());
}

#[test]
fn a_lease_is_recalled_when_another_process_opens_the_file_for_writing() {
    let Some(root) = Root::new() else { return };
    let (mut holder, mut out) = root.start("hold-lease", "leased");
    assert_eq!(root.write(), "write: 4");
    assert_eq!(next_line(&mut out), "recalled");
    assert!(holder.wait().unwrap().success());
}

#[test]
fn a_conflicting_open_waits_until_the_recalled_lease_is_returned() {
    let Some(root) = Root::new() else { return };
    let (holder, mut out) = root.start("return-lease", "leased");
    // a long recall timeout: only the return lets the writer on
    let written = root.run(
        root.cmd("write")
            .env("GFAPI_FAKE_LEASE_RECALL_TIMEOUT", "600"),
    );
    assert_eq!(written, "write: 4");
    // the holder was recalled before the write happened, and returned its lease
    assert_eq!(next_line(&mut out), "recalled: original");
    assert_eq!(next_line(&mut out), "returned: 0");
    assert_eq!(root.data(), b"peerinal");
    assert_eq!(root.run(&mut root.cmd("get-lease")), "lease type: 0");
    kill(holder);
}

#[test]
fn a_truncate_by_path_waits_until_the_recalled_lease_is_returned() {
    let Some(root) = Root::new() else { return };
    let (holder, mut out) = root.start("return-lease", "leased");
    // glfs_truncate opens nothing: the truncate itself conflicts with the lease
    let truncated = root.run(
        root.cmd("truncate")
            .env("GFAPI_FAKE_LEASE_RECALL_TIMEOUT", "600"),
    );
    assert_eq!(truncated, "truncate: 0");
    // recalled before the file changed, and returned
    assert_eq!(next_line(&mut out), "recalled: original");
    assert_eq!(next_line(&mut out), "returned: 0");
    assert_eq!(root.data(), b"ori");
    assert_eq!(root.run(&mut root.cmd("get-lease")), "lease type: 0");
    kill(holder);
}

#[test]
fn a_read_by_another_process_waits_until_a_recalled_read_write_lease_is_returned() {
    let Some(root) = Root::new() else { return };
    let (holder, mut out) = root.start("return-lease", "leased");
    // a long recall timeout: only the return lets the reader on
    let read = root.run(
        root.cmd("read")
            .env("GFAPI_FAKE_LEASE_RECALL_TIMEOUT", "600"),
    );
    assert_eq!(read, "read: original");
    assert_eq!(next_line(&mut out), "recalled: original");
    assert_eq!(next_line(&mut out), "returned: 0");
    // GLFS_GET_LEASE: no lease left
    assert_eq!(root.run(&mut root.cmd("get-lease")), "lease type: 0");
    kill(holder);
}

#[test]
fn a_read_by_another_process_leaves_a_read_lease_alone() {
    let Some(root) = Root::new() else { return };
    let (holder, _out) = root.start("keep-read-lease", "leased");
    // GLFS_RD_LEASE (1)
    assert_eq!(root.run(&mut root.cmd("get-lease")), "lease type: 1");
    // Were the read a conflict, this short timeout would revoke the lease.
    let read = root.run(
        root.cmd("read")
            .env("GFAPI_FAKE_LEASE_RECALL_TIMEOUT", "0.2"),
    );
    assert_eq!(read, "read: original");
    assert_eq!(root.run(&mut root.cmd("get-lease")), "lease type: 1");
    // A write does conflict: the read lease is recalled and, never returned, revoked.
    let written = root.run(
        root.cmd("write")
            .env("GFAPI_FAKE_LEASE_RECALL_TIMEOUT", "0.2"),
    );
    assert_eq!(written, "write: 4");
    assert_eq!(root.run(&mut root.cmd("get-lease")), "lease type: 0");
    kill(holder);
}

#[test]
fn a_lease_never_returned_is_revoked_after_the_recall_timeout() {
    let Some(root) = Root::new() else { return };
    let (holder, mut out) = root.start("keep-lease", "leased");
    // GLFS_RW_LEASE (2)
    assert_eq!(root.run(&mut root.cmd("get-lease")), "lease type: 2");
    let written = root.run(
        root.cmd("write")
            .env("GFAPI_FAKE_LEASE_RECALL_TIMEOUT", "0.5"),
    );
    assert_eq!(written, "write: 4");
    // the recall reached the holder as an upcall while the write was held back
    assert_eq!(next_line(&mut out), "upcall recall 2");
    assert_eq!(next_line(&mut out), "data: original");
    assert_eq!(root.data(), b"peerinal");
    // revoked: the holder's process lives on, its lease does not
    assert_eq!(root.run(&mut root.cmd("get-lease")), "lease type: 0");
    kill(holder);
}
