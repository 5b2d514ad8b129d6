//! Architecture invariants from ARCHITECTURE.md, checked as tests (`cargo test -p xtask`).
//! Unsafe code is kept out of the protocol cores by `#![forbid(unsafe_code)]` in their
//! lib.rs; these tests check what the compiler cannot.

#[cfg(test)]
mod tests {
    use crate::util::project_root;
    use std::path::Path;

    fn sources(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(sources(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
        out
    }

    /// Lines of non-test code (everything before a `#[cfg(test)]` module, outside tests/).
    fn production_code(text: &str) -> &str {
        text.split("#[cfg(test)]").next().unwrap_or(text)
    }

    #[test]
    fn protocol_cores_do_no_io_and_know_no_runtime() {
        for krate in ["iscsi", "scsi"] {
            let root = project_root().join("crates").join(krate);
            let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
            let deps = manifest.split("[dev-dependencies]").next().unwrap();
            for banned in ["tokio", "libc", "libloading", "mio", "async-std"] {
                assert!(
                    !deps.lines().any(|l| l.trim_start().starts_with(banned)),
                    "crates/{krate} must not depend on {banned}"
                );
            }
            for (path, text) in sources(&root.join("src")) {
                if path.contains("/tests/") || path.ends_with("tests.rs") {
                    continue;
                }
                for banned in [
                    "std::net",
                    "std::fs",
                    "std::thread",
                    "Instant::now",
                    "SystemTime",
                ] {
                    assert!(
                        !production_code(&text).contains(banned),
                        "{path} uses {banned}: the sans-IO cores do no I/O and read no clock"
                    );
                }
            }
        }
    }

    #[test]
    fn scsi_knows_nothing_of_iscsi_and_store_api_nothing_of_either() {
        let scsi = std::fs::read_to_string(project_root().join("crates/scsi/Cargo.toml")).unwrap();
        assert!(!scsi.lines().any(|l| l.trim_start().starts_with("iscsi")));
        let store =
            std::fs::read_to_string(project_root().join("crates/store-api/Cargo.toml")).unwrap();
        for banned in ["scsi", "iscsi"] {
            assert!(!store.lines().any(|l| l.trim_start().starts_with(banned)));
        }
    }

    #[test]
    fn alua_states_live_in_the_scsi_core_not_in_process_globals() {
        // ARCHITECTURE.md, "ALUA": the groups and their states are per target (the SCSI
        // core's, changeable live), so no static of the daemon may hold them.
        for (path, text) in sources(&project_root().join("crates/daemon/src")) {
            for line in production_code(&text).lines() {
                let line = line.trim_start();
                let is_static = line.starts_with("static ") || line.starts_with("pub static ");
                assert!(
                    !(is_static && (line.contains("Alua") || line.contains("AccessState"))),
                    "{path}: a process-wide ALUA setting: {line}"
                );
            }
        }
    }

    #[test]
    fn only_the_daemon_knows_the_metrics_crate() {
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(project_root())
            .output()
            .expect("run cargo metadata");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let users: Vec<&str> = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["name"] == "prometheus-client")
            })
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            users,
            ["daemon"],
            "metrics stay in the daemon (stores report through backstore::VolumeObserver)"
        );
    }

    #[test]
    fn one_process_harness_starts_the_daemon_and_waits_for_its_portal() {
        // ARCHITECTURE.md: testkit::daemon is the one harness that starts glfs-iscsi,
        // waits for its port and stops it; tests and tasks go through it.
        let harness = Path::new("crates/testkit/src/daemon.rs");
        let mut files = sources(&project_root().join("crates"));
        files.extend(sources(&project_root().join("xtask")));
        for (path, text) in files {
            if Path::new(&path).ends_with(harness) {
                assert!(text.contains("\"--portal\"") && text.contains("connect_timeout"));
                continue;
            }
            assert!(
                !(text.contains("\"--portal\"") && text.contains("connect_timeout")),
                "{path} starts glfs-iscsi and waits for its portal itself: use testkit::daemon"
            );
        }
    }

    #[test]
    fn sizes_have_one_parser() {
        // ARCHITECTURE.md: crates/units holds the one size grammar; nobody else writes one.
        let mut dirs: Vec<_> = std::fs::read_dir(project_root().join("crates"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with("units"))
            .collect();
        dirs.push(project_root().join("xtask"));
        for dir in dirs {
            for (path, text) in sources(&dir) {
                for name in ["parse_size", "parse_bytes"] {
                    let banned = format!("fn {name}(");
                    assert!(
                        !text.contains(&banned),
                        "{path} defines {name}: use units::parse_size"
                    );
                }
            }
        }
    }

    #[test]
    fn the_daemon_opens_lun_stores_through_the_gateway_aware_opener() {
        // ARCHITECTURE.md: a LUN shared by gateways is cache-coherent across them; the
        // daemon opens every LUN's store through gateways::open_lun_store, which marks
        // it shared (glfs: coherent mode) when the daemon is one gateway among several.
        let mut opener = false;
        for (path, text) in sources(&project_root().join("crates/daemon/src")) {
            let code = production_code(&text);
            if path.ends_with("gateways.rs") {
                opener = code.contains("pub fn open_lun_store(") && code.contains("gateway()");
                continue;
            }
            for banned in ["open_store(", "open_glfs_store("] {
                assert!(
                    !code.contains(banned),
                    "{path} calls {banned}..): open LUN stores with gateways::open_lun_store"
                );
            }
        }
        assert!(opener, "daemon/src/gateways.rs has no open_lun_store");
    }

    #[test]
    fn only_the_failover_takes_the_data_fence_and_only_after_the_election_lock() {
        // ARCHITECTURE.md, "Active/passive failover": a gateway reports itself active for
        // a LUN only while it holds the LUN's data fence, and only the holder of the LUN's
        // `alua-lun-active` lock, who also holds the target's `alua-active` lock shared
        // (which gateways of the former, per-target layout take exclusive), asks for it
        // (a refused mandatory-lock request breaks the holder's writes on Gluster 10.3).
        // So no other daemon code takes the fence, and failover.rs takes the target's
        // mark, then the election lock, before it.
        let mut taken = false;
        for (path, text) in sources(&project_root().join("crates/daemon/src")) {
            let code = production_code(&text);
            if path.ends_with("failover.rs") {
                let mark = code.find("lock_metadata(TARGET_MARK, &self.owner, LockMode::Shared");
                let election = code
                    .find("lock_metadata(ELECTION")
                    .or_else(|| code.find("lock_metadata(\n            ELECTION"));
                let fence = code.find(".fence_data(");
                taken = matches!((mark, election, fence),
                    (Some(m), Some(e), Some(f)) if m < e && e < f);
                continue;
            }
            assert!(
                !code.contains(".fence_data("),
                "{path} takes the data fence: only daemon::failover does"
            );
            // Taking a lock away from its holder (a stalled active gateway's) is the
            // failover's alone too (daemon::stall, called from failover.rs).
            assert!(
                path.ends_with("stall.rs") || !code.contains(".clear_lock("),
                "{path} clears locks: only daemon::failover and daemon::stall do"
            );
        }
        assert!(
            taken,
            "daemon/src/failover.rs does not take the target's mark (shared) and the election \
             lock before the fence"
        );
    }

    #[test]
    fn nothing_links_libgfapi_at_build_time() {
        for entry in std::fs::read_dir(project_root().join("crates")).unwrap() {
            let dir = entry.unwrap().path();
            let build = dir.join("build.rs");
            if let Ok(text) = std::fs::read_to_string(&build) {
                assert!(
                    !text.contains("rustc-link-lib=gfapi")
                        && !text.contains("rustc-link-lib=dylib=gfapi"),
                    "{} links libgfapi at build time; load it at run time instead",
                    build.display()
                );
            }
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            assert!(
                !manifest.contains("links = \"gfapi\""),
                "{} links gfapi",
                dir.display()
            );
        }
    }
}
