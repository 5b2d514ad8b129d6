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

const HEADER: &str = "/usr/include/glusterfs/api/glfs.h";

/// Builds `tests/c/<name>.c` against Debian's glfs.h, linked with `-lgfapi` from the
/// fake's directory; None (after a `[skip]` line) when glfs.h is missing outside CI.
#[allow(dead_code)] // not every test binary builds C
pub fn build_c(name: &str) -> Option<PathBuf> {
    if !Path::new(HEADER).exists() {
        assert!(
            std::env::var("CI").is_err(),
            "{HEADER} is missing: ci/install-deps.sh installs libglusterfs-dev"
        );
        eprintln!("[skip] {name}.c: {HEADER} missing (apt-get install libglusterfs-dev)");
        return None;
    }
    let lib = library_path();
    let dir = lib.parent().unwrap().to_path_buf();
    let out = dir.join(format!("{name}-{}", std::process::id()));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let o = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-Wall", "-Werror", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .arg(format!("-L{}", dir.display()))
        .arg("-lgfapi")
        .output()
        .expect("cc runs");
    assert!(
        o.status.success(),
        "building {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    Some(out)
}
