//! Symbol parity: the fake `libgfapi.so.0` must export every symbol, at every version,
//! that Gluster 10.3's libgfapi.so.0 exports (run `cargo xtask build-fake` first).
//!
//! Offline, the fake is compared with `testdata/gfapi/libgfapi-10.3.symbols` (read off
//! Debian 12's library). `live_*` (run by `cargo xtask test-gluster`, where the real
//! library is installed) compares the fake with the installed library itself, and the
//! checked-in list with it.
//!
//! `testdata/gfapi/fake-not-yet.symbols` names what the fake does not export yet; a
//! symbol missing from the fake and not named there fails, and so does one named there
//! that the fake now exports (the list only shrinks).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const REAL_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/libgfapi.so.0";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/gfapi")
        .join(name)
}

/// `name@@VERSION` / `name@VERSION` lines of a list file (comments and blanks skipped).
fn read_list(name: &str) -> BTreeSet<String> {
    let p = testdata(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The defined dynamic symbols of `lib` whose version is a `GFAPI_*` node, as
/// `name@@VERSION` (the default version) or `name@VERSION` (a non-default one), read
/// with `objdump -T`.
fn exported(lib: &Path) -> BTreeSet<String> {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(lib)
        .output()
        .expect("objdump (binutils) runs");
    assert!(
        out.status.success(),
        "objdump -T {}: {}",
        lib.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_objdump(&String::from_utf8_lossy(&out.stdout))
}

fn parse_objdump(text: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || line.contains("*UND*") {
            continue;
        }
        let (version, name) = (f[f.len() - 2], f[f.len() - 1]);
        if let Some(hidden) = version.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
            if hidden.starts_with("GFAPI_") {
                set.insert(format!("{name}@{hidden}"));
            }
        } else if version.starts_with("GFAPI_") {
            set.insert(format!("{name}@@{version}"));
        }
    }
    set
}

/// Fails on any symbol of `want` the fake lacks that is not excused by the not-yet list,
/// and on any not-yet entry the fake exports by now.
fn check_parity(want: &BTreeSet<String>, what: &str) {
    let fake = exported(&common::library_path());
    let not_yet = read_list("fake-not-yet.symbols");
    let missing: Vec<&String> = want
        .iter()
        .filter(|s| !fake.contains(*s) && !not_yet.contains(*s))
        .collect();
    let done: Vec<&String> = not_yet.iter().filter(|s| fake.contains(*s)).collect();
    let stray: Vec<&String> = not_yet.iter().filter(|s| !want.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "the fake lacks {} symbol(s) that {what} exports:\n{}",
        missing.len(),
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        done.is_empty(),
        "the fake exports these now: remove them from testdata/gfapi/fake-not-yet.symbols:\n{}",
        done.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        stray.is_empty(),
        "fake-not-yet.symbols names symbols {what} does not export:\n{}",
        stray
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn objdump_lines_are_read_with_their_default_or_hidden_version() {
    let text = "\
/x/libgfapi.so.0:     file format elf64-x86-64

DYNAMIC SYMBOL TABLE:
0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.2.5) free
0000000000018d40 g    DF .text\t00000000000000b5  GFAPI_6.0   glfs_pread
0000000000017a10 g    DF .text\t00000000000000a3 (GFAPI_3.4.0) glfs_pread
0000000000000000 g    DO *ABS*\t0000000000000000  GFAPI_6.0   GFAPI_6.0
0000000000001000 g    DF .text\t0000000000000010  GFAPI_FAKE_1.0 gfapi_fake_version
0000000000001000 g    DF .text\t0000000000000010  Base        other
";
    let got: Vec<String> = parse_objdump(text).into_iter().collect();
    assert_eq!(
        got,
        [
            "GFAPI_6.0@@GFAPI_6.0",
            "gfapi_fake_version@@GFAPI_FAKE_1.0",
            "glfs_pread@@GFAPI_6.0",
            "glfs_pread@GFAPI_3.4.0",
        ]
    );
}

#[test]
fn the_checked_in_list_is_gluster_10_3s() {
    let want = read_list("libgfapi-10.3.symbols");
    // Counted on Debian 12's libgfapi0 10.3-5: 24 version nodes, 165 functions of which
    // 21 also have an older variant.
    let nodes = want.iter().filter(|s| s.starts_with("GFAPI_")).count();
    let default = want
        .iter()
        .filter(|s| s.starts_with("glfs_") && s.contains("@@"))
        .count();
    let hidden = want.iter().filter(|s| !s.contains("@@")).count();
    assert_eq!((nodes, default, hidden), (24, 165, 21));
    assert!(want.contains("glfs_pread@GFAPI_3.4.0"));
    assert!(want.contains("glfs_pread@@GFAPI_6.0"));
    assert!(want.contains("glfs_file_lock@@GFAPI_4.0.0"));
}

#[test]
fn fake_exports_every_symbol_of_gluster_10_3() {
    check_parity(&read_list("libgfapi-10.3.symbols"), "gfapi 10.3 (testdata)");
}

#[test]
#[ignore = "live: needs the real libgfapi.so.0 (cargo xtask test-gluster installs it)"]
fn live_fake_exports_every_symbol_of_the_installed_libgfapi() {
    let real = exported(Path::new(REAL_LIBRARY));
    assert!(!real.is_empty(), "{REAL_LIBRARY} exports no GFAPI symbol");
    let listed = read_list("libgfapi-10.3.symbols");
    assert_eq!(
        real.symmetric_difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{REAL_LIBRARY} differs from testdata/gfapi/libgfapi-10.3.symbols"
    );
    check_parity(&real, REAL_LIBRARY);
}
