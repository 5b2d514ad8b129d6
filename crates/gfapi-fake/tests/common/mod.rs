//! Helpers shared by the integration tests of the built library.

use std::path::{Path, PathBuf};

/// `$GFAPI_FAKE_LIB`, else `<target dir>/gfapi-fake/libgfapi.so.0`.
pub fn library_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GFAPI_FAKE_LIB") {
        return PathBuf::from(p);
    }
    let rel = Path::new("gfapi-fake/libgfapi.so.0");
    let mut tried = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        tried.push(PathBuf::from(t).join(rel));
    }
    let exe = std::env::current_exe().unwrap();
    tried.extend(exe.ancestors().skip(1).take(4).map(|d| d.join(rel)));
    tried.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(rel),
    );
    tried
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the fake libgfapi.so.0 is not built: run `cargo xtask build-fake` (same \
             CARGO_TARGET_DIR) or set GFAPI_FAKE_LIB; looked in {tried:?}"
            )
        })
}
