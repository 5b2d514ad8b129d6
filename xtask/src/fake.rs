//! `cargo xtask build-fake`: links the fake libgfapi.so.0 with gfapi's symbol versions.

use anyhow::Result;
use std::path::PathBuf;

/// Builds the fake library and returns the path of `libgfapi.so.0`.
pub fn build() -> Result<PathBuf> {
    anyhow::bail!("not yet implemented")
}

/// Runs tgtd with `--bstype glfs` on the fake library and reads/writes through it.
pub fn check_tgt(fake_dir: &std::path::Path) -> Result<()> {
    let _ = fake_dir;
    anyhow::bail!("not yet implemented")
}

/// Runs fio's gfapi and gfapi_async engines on the fake library.
pub fn check_fio(fake_dir: &std::path::Path) -> Result<()> {
    let _ = fake_dir;
    anyhow::bail!("not yet implemented")
}
