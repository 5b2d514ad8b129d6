//! `cargo xtask demo`: the target on an embedded default — a 1 GiB glfs LUN on a fake
//! gfapi volume in a local directory — in the foreground until Ctrl-C.

use crate::{fake, util};
use anyhow::{Context, Result};
use std::process::Command;

pub const DEMO_IQN: &str = "iqn.2026-11.io.glfs-iscsi:demo";

pub fn run(portal: &str, size: &str) -> Result<()> {
    let fake_lib = fake::build()?;
    let binary = util::build_target_binary()?;
    let root = util::project_root().join("demo-volumes");
    let volume = root.join("demo");
    std::fs::create_dir_all(&volume)
        .with_context(|| format!("cannot create the demo volume {}", volume.display()))?;
    eprintln!(
        "demo: fake gfapi volume `demo` is the directory {}\n\
         demo: its LUN file is {}\n\
         demo: connect with  iscsi-ls iscsi://{portal}   or   iscsi-inq iscsi://{portal}/{DEMO_IQN}/0\n\
         demo: or from Linux: iscsiadm -m discovery -t st -p {portal} && iscsiadm -m node -l\n\
         demo: stop with Ctrl-C",
        volume.display(),
        volume.join("disk0.img").display()
    );
    let status = Command::new(&binary)
        .args(["--portal", portal, "--target", DEMO_IQN, "--bstype", "glfs"])
        .args([
            "--backing-store",
            "demo@127.0.0.2:disk0.img",
            "--size",
            size,
        ])
        .arg("--bsopts")
        .arg(format!(
            "logfile={};loglevel=5",
            root.join("gfapi.log").display()
        ))
        .arg("--gfapi-library")
        .arg(&fake_lib)
        .env("GFAPI_FAKE_ROOT", &root)
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    anyhow::ensure!(status.success(), "glfs-iscsi exited with {status}");
    Ok(())
}
