//! Links libiscsi and compiles the C layout probe used by the unit tests.
//!
//! libiscsi is found through pkg-config (`libiscsi.pc`, shipped by Debian's
//! `libiscsi-dev`). When pkg-config cannot answer but the header is in the
//! default include path we fall back to a plain `-liscsi`. When neither works
//! the build stops with a message naming the package to install.

use std::path::{Path, PathBuf};

const HELP: &str = "libiscsi development files not found.\n\
     libiscsi-sys needs the libiscsi headers (iscsi/iscsi.h, iscsi/scsi-lowlevel.h) and \
     the shared library.\n\
     On Debian/Ubuntu install them with:  apt-get install libiscsi-dev\n\
     (set LIBISCSI_INCLUDE_DIR / LIBISCSI_LIB_DIR to use a copy installed elsewhere)";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/layout_probe.c");
    println!("cargo:rerun-if-env-changed=LIBISCSI_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=LIBISCSI_LIB_DIR");

    let include_dirs = link_libiscsi();

    let mut build = cc::Build::new();
    build.file("csrc/layout_probe.c").warnings(true);
    for dir in &include_dirs {
        build.include(dir);
    }
    build.compile("libiscsi_sys_layout_probe");

    if let Some(dir) = include_dirs.first() {
        println!("cargo:include={}", dir.display());
    }
}

/// Emits the link directives for libiscsi and returns the include directories
/// the C probe must be compiled with (empty means "the compiler's defaults").
fn link_libiscsi() -> Vec<PathBuf> {
    // Explicit override first.
    if let Ok(inc) = std::env::var("LIBISCSI_INCLUDE_DIR") {
        let inc = PathBuf::from(inc);
        if !inc.join("iscsi/iscsi.h").exists() {
            panic!(
                "LIBISCSI_INCLUDE_DIR={} has no iscsi/iscsi.h\n{HELP}",
                inc.display()
            );
        }
        if let Ok(lib) = std::env::var("LIBISCSI_LIB_DIR") {
            println!("cargo:rustc-link-search=native={lib}");
        }
        println!("cargo:rustc-link-lib=iscsi");
        return vec![inc];
    }

    match pkg_config::Config::new()
        .cargo_metadata(true)
        .probe("libiscsi")
    {
        Ok(lib) => {
            let dirs = lib.include_paths;
            let has_header = dirs.iter().any(|d| d.join("iscsi/iscsi.h").exists())
                || default_include_dirs().any(|d| d.join("iscsi/iscsi.h").exists());
            if !has_header {
                panic!("pkg-config found libiscsi but not iscsi/iscsi.h\n{HELP}");
            }
            dirs
        }
        Err(err) => {
            if default_include_dirs().any(|d| d.join("iscsi/iscsi.h").exists()) {
                println!(
                    "cargo:warning=pkg-config could not find libiscsi ({}); falling back to -liscsi",
                    first_line(&err.to_string())
                );
                println!("cargo:rustc-link-lib=iscsi");
                Vec::new()
            } else {
                panic!("{HELP}\n(pkg-config said: {err})");
            }
        }
    }
}

fn default_include_dirs() -> impl Iterator<Item = &'static Path> {
    [
        "/usr/include",
        "/usr/local/include",
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/aarch64-linux-gnu",
    ]
    .into_iter()
    .map(Path::new)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
