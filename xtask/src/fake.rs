//! `cargo xtask build-fake`: links the fake libgfapi.so.0 with gfapi's symbol versions.

use anyhow::Result;
use std::path::PathBuf;

/// Builds the fake library and returns the path of `libgfapi.so.0`.
pub fn build() -> Result<PathBuf> {
    anyhow::bail!("not yet implemented")
}
