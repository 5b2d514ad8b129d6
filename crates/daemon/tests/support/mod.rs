//! Helpers shared by the daemon's integration tests: a running `glfs-iscsi` child process.

#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use testkit::initiator::Initiator;

pub const BINARY: &str = env!("CARGO_BIN_EXE_glfs-iscsi");
pub const IQN: &str = "iqn.2026-11.io.glfs-iscsi:e2e";
pub const BLOCK: u32 = 512;

/// A running target, killed on drop.
pub struct Running {
    child: Child,
    pub portal: SocketAddr,
}

impl Running {
    pub fn start(args: &[&str], env: &[(&str, &Path)]) -> Running {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let portal: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new(BINARY)
            .args(["--portal", &portal.to_string(), "--target", IQN])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(match std::env::var_os("E2E_TARGET_LOG") {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::piped(),
            })
            .spawn()
            .expect("start glfs-iscsi");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("glfs-iscsi exited early ({status}): {err}");
            }
            if TcpStream::connect_timeout(&portal, Duration::from_millis(100)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "glfs-iscsi did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Running { child, portal }
    }

    pub fn portal(&self) -> String {
        self.portal.to_string()
    }

    pub fn connect(&self) -> Initiator {
        Initiator::connect(&self.portal(), IQN, 0).expect("login to the target")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn fake_library() -> PathBuf {
    testkit::fake::fake_library_path()
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
