//! Fake gfapi volumes and fault rules.
//!
//! A [`FakeRoot`] is a temporary directory laid out the way the fake `libgfapi.so.0`
//! (crate `gfapi-fake`, built by `cargo xtask build-fake`) expects: one directory per
//! volume, plus the fault rules file `.faults.toml`. Point a process at it with
//! [`FakeRoot::env`] (`GFAPI_FAKE_ROOT` and `LD_LIBRARY_PATH`).
//!
//! ```no_run
//! use testkit::fake::{FakeRoot, FaultRule};
//! let root = FakeRoot::new();
//! root.create_volume("vol");
//! root.create_file("vol", "lun.img", 1 << 20);
//! root.set_rules(&[FaultRule::on(&["write"]).path("/lun.img").nth(3).errno("EIO")]);
//! // ... run the target with `root.env()` ...
//! root.clear();
//! ```

use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Environment variable naming the root directory of the fake volumes.
pub const ENV_ROOT: &str = "GFAPI_FAKE_ROOT";
/// Environment variable naming another fault rules file.
pub const ENV_FAULTS: &str = "GFAPI_FAKE_FAULTS";
/// Environment variable overriding the path of the built fake library.
pub const ENV_LIB: &str = "GFAPI_FAKE_LIB";
/// The rules file name inside the root.
pub const FAULTS_FILE: &str = ".faults.toml";

/// Path of the built fake `libgfapi.so.0`: `$GFAPI_FAKE_LIB`, else
/// `<target dir>/gfapi-fake/libgfapi.so.0` (target dir from `$CARGO_TARGET_DIR`, the
/// running test binary's location, or `<workspace>/target`).
///
/// # Panics
/// When the library does not exist, with a message telling to run `cargo xtask build-fake`.
pub fn fake_library_path() -> PathBuf {
    if let Some(p) = std::env::var_os(ENV_LIB).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "{ENV_LIB}={} does not exist; run `cargo xtask build-fake` (it prints the path)",
            p.display()
        );
        return p;
    }
    let candidates = candidate_paths();
    for c in &candidates {
        if c.exists() {
            return c.clone();
        }
    }
    panic!(
        "the fake libgfapi.so.0 is not built: run `cargo xtask build-fake` (with the same \
         CARGO_TARGET_DIR as the tests), or set {ENV_LIB}. Looked in: {}",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The directory holding the fake library (for `LD_LIBRARY_PATH`).
pub fn fake_library_dir() -> PathBuf {
    fake_library_path()
        .parent()
        .expect("library path has a parent")
        .to_path_buf()
}

fn candidate_paths() -> Vec<PathBuf> {
    let rel = Path::new("gfapi-fake").join("libgfapi.so.0");
    let mut out = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        out.push(PathBuf::from(t).join(&rel));
    }
    // Test binaries live in <target>/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            let c = dir.join(&rel);
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(|p| p.join("target").join(&rel));
    if let Some(c) = ws {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// One fault rule of the rules file (see `docs/fake-gfapi.md`). Build with
/// [`FaultRule::on`] or [`FaultRule::any`] and the chained setters.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FaultRule {
    /// Operation names (`read`, `write`, `fsync`, `fdatasync`, `open`, `init`, ...);
    /// empty = every operation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub op: Vec<String>,
    /// Volume name filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Glob over the volume path (`/lun.img`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Byte range `[start, end)` the I/O must overlap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<[u64; 2]>,
    /// Fire only on the n-th matching call (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nth: Option<u64>,
    /// Skip the first n matching calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Fire at most n times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Fire with this probability (seeded by the file's `seed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Fail with this errno: a name (`"EIO"`) or a number (`5`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<Errno>,
    /// Added latency in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Block until the rules file changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang: Option<bool>,
    /// Transfer at most this many bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short: Option<u64>,
    /// Drop the connection: this and every later op fail with ENOTCONN until the rules
    /// file changes or glfs_init is called again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<bool>,
    /// A behaviour, not a fault: matching writes stay in the writing mount's
    /// write-behind cache, unseen by other mounts until flushed (fsync, close, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_behind: Option<bool>,
    /// A behaviour, not a fault: the brick disk's logical sector size for matching
    /// reads and writes on an `O_DIRECT` fd (EINVAL unless aligned to it; default 512).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector_size: Option<u64>,
    /// A behaviour, not a fault: matching path calls (open, stat, lstat) resolve names
    /// through the mount's cached lookup (Gluster's md-cache) for the volume's
    /// md-cache timeout (1 s unless [`FaultRule::md_cache_timeout`] says otherwise); a
    /// mount's own `*-md-cache` `md-cache-timeout` xlator option wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md_cache: Option<bool>,
    /// The volume's `performance.md-cache-timeout` in seconds (0 to 600) for the md-cache
    /// model; implies [`FaultRule::md_cache`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md_cache_timeout: Option<u64>,
    /// A behaviour, not a fault: matching files are on a sharded volume, whose shard
    /// translator refuses `glfs_fallocate` modes other than 0, ZERO_RANGE and
    /// KEEP_SIZE|PUNCH_HOLE with ENOTSUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<bool>,
}

/// The `errno` of a [`FaultRule`]: written to the rules file as a name (`errno = "EIO"`)
/// or a number (`errno = 5`), both of which the fake accepts.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Errno {
    /// An errno name such as `"EIO"`.
    Name(String),
    /// An errno number such as `5`.
    Number(i32),
}

impl From<&str> for Errno {
    fn from(name: &str) -> Self {
        Errno::Name(name.to_string())
    }
}

impl From<String> for Errno {
    fn from(name: String) -> Self {
        Errno::Name(name)
    }
}

impl From<&String> for Errno {
    fn from(name: &String) -> Self {
        Errno::Name(name.clone())
    }
}

impl From<i32> for Errno {
    fn from(n: i32) -> Self {
        Errno::Number(n)
    }
}

impl FaultRule {
    /// A rule for the given operations.
    pub fn on(ops: &[&str]) -> FaultRule {
        FaultRule {
            op: ops.iter().map(|s| s.to_string()).collect(),
            ..FaultRule::default()
        }
    }

    /// A rule for every operation.
    pub fn any() -> FaultRule {
        FaultRule::default()
    }

    /// Restricts to one volume.
    pub fn volume(mut self, v: &str) -> Self {
        self.volume = Some(v.into());
        self
    }

    /// Restricts to paths matching a glob.
    pub fn path(mut self, glob: &str) -> Self {
        self.path = Some(glob.into());
        self
    }

    /// Restricts to I/O overlapping `[start, end)`.
    pub fn offset(mut self, start: u64, end: u64) -> Self {
        self.offset = Some([start, end]);
        self
    }

    /// Fires only on the n-th matching call.
    pub fn nth(mut self, n: u64) -> Self {
        self.nth = Some(n);
        self
    }

    /// Skips the first n matching calls.
    pub fn after(mut self, n: u64) -> Self {
        self.after = Some(n);
        self
    }

    /// Fires at most n times.
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// Fires with probability p.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    /// Fails with an errno: a name such as `"EIO"` or a number such as `libc::EIO`.
    pub fn errno(mut self, errno: impl Into<Errno>) -> Self {
        self.errno = Some(errno.into());
        self
    }

    /// Adds latency.
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }

    /// Hangs until the rules change.
    pub fn hang(mut self) -> Self {
        self.hang = Some(true);
        self
    }

    /// Short read/write of at most `bytes`.
    pub fn short(mut self, bytes: u64) -> Self {
        self.short = Some(bytes);
        self
    }

    /// Connection loss.
    pub fn disconnect(mut self) -> Self {
        self.disconnect = Some(true);
        self
    }

    /// Gluster's client-side write-behind, modelled per mount: give it `on(&["write"])`.
    pub fn write_behind(mut self) -> Self {
        self.write_behind = Some(true);
        self
    }

    /// A brick disk of `bytes`-byte logical sectors: give it `on(&["read", "write"])`.
    pub fn sector_size(mut self, bytes: u64) -> Self {
        self.sector_size = Some(bytes);
        self
    }

    /// Gluster's client-side md-cache lookup caching, modelled per mount, with the
    /// volume's timeout of `secs` seconds: give it `on(&["open", "stat", "lstat"])`.
    pub fn md_cache_timeout(mut self, secs: u64) -> Self {
        self.md_cache = Some(true);
        self.md_cache_timeout = Some(secs);
        self
    }

    /// A sharded volume (`features.shard on`) under the files it matches: give it
    /// `on(&["fallocate"])`.
    pub fn shard(mut self) -> Self {
        self.shard = Some(true);
        self
    }
}

#[derive(Serialize)]
struct RulesFile<'a> {
    seed: u64,
    reconnect: u64,
    rule: &'a [FaultRule],
}

/// Renders a rules file.
pub fn render_rules(seed: u64, reconnect: u64, rules: &[FaultRule]) -> String {
    toml::to_string(&RulesFile {
        seed,
        reconnect,
        rule: rules,
    })
    .expect("fault rules serialise")
}

/// A temporary root of fake volumes (removed on drop).
#[derive(Debug)]
pub struct FakeRoot {
    dir: tempfile::TempDir,
    generation: AtomicU64,
}

impl Default for FakeRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRoot {
    /// A new empty root.
    pub fn new() -> FakeRoot {
        FakeRoot {
            dir: tempfile::Builder::new()
                .prefix("gfapi-fake-")
                .tempdir()
                .expect("create temporary fake root"),
            generation: AtomicU64::new(0),
        }
    }

    /// The root directory (`GFAPI_FAKE_ROOT`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates volume `name` (a directory) and returns its path.
    pub fn create_volume(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).expect("create volume directory");
        p
    }

    /// Host path of `path` inside volume `vol` (leading `/` optional).
    pub fn file_path(&self, vol: &str, path: &str) -> PathBuf {
        self.path().join(vol).join(path.trim_start_matches('/'))
    }

    /// Creates a sparse file of `size` bytes (and its volume and parent directories).
    pub fn create_file(&self, vol: &str, path: &str, size: u64) -> PathBuf {
        let p = self.file_path(vol, path);
        std::fs::create_dir_all(p.parent().expect("file has a parent"))
            .expect("create parent directories");
        let f = std::fs::File::create(&p).expect("create fake file");
        f.set_len(size).expect("size fake file");
        p
    }

    /// Environment for a process using the fake: `LD_LIBRARY_PATH` (the fake library's
    /// directory first) and `GFAPI_FAKE_ROOT`.
    ///
    /// # Panics
    /// When the fake library is not built (see [`fake_library_path`]).
    pub fn env(&self) -> Vec<(String, OsString)> {
        let mut ld = OsString::from(fake_library_dir());
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
            ld.push(":");
            ld.push(old);
        }
        vec![
            ("LD_LIBRARY_PATH".to_string(), ld),
            (ENV_ROOT.to_string(), self.path().as_os_str().to_owned()),
        ]
    }

    /// The rules file path (`<root>/.faults.toml`).
    pub fn rules_path(&self) -> PathBuf {
        self.path().join(FAULTS_FILE)
    }

    /// Replaces the fault rules (seed 0). The file is replaced atomically, so the fake
    /// sees either the old or the new rules; a change releases hung operations and
    /// reconnects disconnected instances.
    pub fn set_rules(&self, rules: &[FaultRule]) {
        self.set_rules_seeded(0, rules)
    }

    /// Replaces the fault rules with an explicit probability seed.
    pub fn set_rules_seeded(&self, seed: u64, rules: &[FaultRule]) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.write_rules(&render_rules(seed, generation, rules));
    }

    /// Writes raw rules-file text atomically.
    pub fn write_rules(&self, text: &str) {
        let tmp = self.path().join(format!(
            ".faults.toml.tmp{}",
            self.generation.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&tmp, text).expect("write fault rules");
        std::fs::rename(&tmp, self.rules_path()).expect("install fault rules");
    }

    /// Removes all fault rules (releases hangs, reconnects).
    pub fn clear(&self) {
        match std::fs::remove_file(self.rules_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove fault rules: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_sparse_files() {
        let root = FakeRoot::new();
        let vol = root.create_volume("vol");
        assert!(vol.is_dir());
        let f = root.create_file("vol", "/dir/lun.img", 1 << 30);
        assert_eq!(f, root.path().join("vol/dir/lun.img"));
        assert_eq!(root.file_path("vol", "dir/lun.img"), f);
        let md = std::fs::metadata(&f).unwrap();
        assert_eq!(md.len(), 1 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(md.blocks() < 16, "file is sparse");
    }

    #[test]
    fn rules_render_as_documented_toml() {
        let text = render_rules(
            7,
            1,
            &[
                FaultRule::on(&["write"])
                    .path("/lun.img")
                    .nth(3)
                    .errno("EIO"),
                FaultRule::any().offset(0, 4096).delay_ms(50).hang(),
                FaultRule::on(&["read", "fsync"]).short(512).disconnect(),
            ],
        );
        assert_eq!(
            text,
            "seed = 7\nreconnect = 1\n\n\
             [[rule]]\nop = [\"write\"]\npath = \"/lun.img\"\nnth = 3\nerrno = \"EIO\"\n\n\
             [[rule]]\noffset = [0, 4096]\ndelay_ms = 50\nhang = true\n\n\
             [[rule]]\nop = [\"read\", \"fsync\"]\nshort = 512\ndisconnect = true\n"
        );
    }

    #[test]
    fn errno_takes_names_and_numbers() {
        let text = render_rules(
            0,
            0,
            &[
                FaultRule::on(&["write"]).errno("ENOSPC"),
                FaultRule::on(&["read"]).errno(libc::EIO),
                FaultRule::on(&["fsync"]).errno(String::from("EROFS")),
            ],
        );
        assert!(text.contains("errno = \"ENOSPC\"\n"), "{text}");
        assert!(text.contains("errno = 5\n"), "{text}");
        assert!(text.contains("errno = \"EROFS\"\n"), "{text}");
        assert_eq!(gfapi_fake::validate_rules(&text), Ok(3));
    }

    #[test]
    fn set_rules_replaces_and_clear_removes() {
        let root = FakeRoot::new();
        root.set_rules(&[FaultRule::on(&["read"]).errno("EIO")]);
        let a = std::fs::read_to_string(root.rules_path()).unwrap();
        assert!(a.contains("errno = \"EIO\""));
        root.set_rules(&[FaultRule::on(&["read"]).errno("EIO")]);
        let b = std::fs::read_to_string(root.rules_path()).unwrap();
        assert_ne!(
            a, b,
            "identical rules still change the file (reconnect counter)"
        );
        root.clear();
        assert!(!root.rules_path().exists());
        root.clear();
    }

    #[test]
    fn library_path_honours_env_override() {
        // Only checks the override branch when the variable points at an existing file.
        if let Some(p) = std::env::var_os(ENV_LIB) {
            assert_eq!(fake_library_path(), PathBuf::from(p));
        } else {
            let c = candidate_paths();
            assert!(c.iter().all(|p| p.ends_with("gfapi-fake/libgfapi.so.0")));
        }
    }

    #[test]
    fn rendered_rules_are_accepted_by_the_fake() {
        let every_field = FaultRule {
            op: vec!["read".into(), "write".into()],
            volume: Some("vol".into()),
            path: Some("/lun*.img".into()),
            offset: Some([0, 4096]),
            nth: Some(2),
            after: Some(1),
            count: Some(3),
            probability: Some(0.5),
            errno: Some("ENOSPC".into()),
            delay_ms: Some(10),
            hang: Some(true),
            short: Some(512),
            disconnect: Some(true),
            write_behind: Some(true),
            sector_size: Some(4096),
            md_cache: Some(true),
            md_cache_timeout: Some(600),
            shard: Some(true),
        };
        let text = render_rules(
            9,
            4,
            &[
                every_field,
                FaultRule::any().errno("EIO"),
                FaultRule::on(&["init"]).hang(),
            ],
        );
        assert_eq!(gfapi_fake::validate_rules(&text), Ok(3));
        assert_eq!(gfapi_fake::validate_rules(&render_rules(0, 0, &[])), Ok(0));
        let bad = render_rules(0, 0, &[FaultRule::on(&["reed"]).errno("EIO")]);
        assert!(gfapi_fake::validate_rules(&bad).is_err());
    }
}
