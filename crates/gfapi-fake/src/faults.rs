//! Fault injection: a TOML rules file, reread whenever it changes on disk.
//!
//! The format is documented in `docs/fake-gfapi.md`. In short:
//!
//! ```toml
//! seed = 7            # seed of the per-rule random generators (probability)
//! reconnect = 0       # any value; change it to force a reload with identical rules
//!
//! [[rule]]
//! op = ["read", "write"]   # operation name(s); omitted or "*" = every operation
//! volume = "vol"           # optional volume name
//! path = "*.img"           # optional glob over the volume-relative path ("/lun.img")
//! offset = [0, 4096]       # optional byte range [start, end) the I/O must overlap
//! nth = 3                  # optional: fire only on the 3rd matching call
//! after = 2                # optional: skip the first 2 matching calls
//! count = 1                # optional: fire at most once
//! probability = 0.5        # optional: fire with this probability (seeded)
//! errno = "EIO"            # effect: fail with this errno (name or number)
//! delay_ms = 100           # effect: add latency
//! hang = true              # effect: block until the rules file changes
//! short = 512              # effect: transfer at most 512 bytes (read/write)
//! disconnect = true        # effect: the instance loses its connection (ENOTCONN)
//! write_behind = true      # behaviour: writes it matches are kept in the mount's
//!                          # write-behind cache (see `crate::fs::Glfs::write_behind`)
//! sector_size = 4096       # behaviour: the brick disk's logical sector size for the
//!                          # reads and writes it matches on an `O_DIRECT` fd (offset
//!                          # and length must be multiples, else EINVAL; default 512)
//! md_cache = true          # behaviour: the path calls it matches (open, stat, lstat)
//!                          # resolve through the mount's cached lookup (md-cache, see
//!                          # `crate::fs::Glfs::md_cache_get`)
//! md_cache_timeout = 60    # the volume's performance.md-cache-timeout for them, in
//!                          # seconds (0 to 600, default 1; implies md_cache); a mount's
//!                          # `*-md-cache` `md-cache-timeout` xlator option wins
//! shard = true             # behaviour: the file is on a sharded volume (features.shard):
//!                          # glfs_fallocate takes only modes 0, ZERO_RANGE and
//!                          # KEEP_SIZE|PUNCH_HOLE, others fail ENOTSUP (shard_fallocate)
//! ```

use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Operation names known to the rules file.
pub const OP_NAMES: &[&str] = &[
    "init",
    "fini",
    "open",
    "creat",
    "close",
    "read",
    "write",
    "fsync",
    "fdatasync",
    "ftruncate",
    "truncate",
    "discard",
    "zerofill",
    "fallocate",
    "stat",
    "lstat",
    "fstat",
    "access",
    "lseek",
    "unlink",
    "mkdir",
    "rmdir",
    "rename",
    "opendir",
    "readdir",
    "statvfs",
    // attributes and names (attrs.rs)
    "chmod",
    "chown",
    "utimens",
    "setattr",
    "link",
    "symlink",
    "readlink",
    "realpath",
    "mknod",
    "dup",
    "chdir",
    "getcwd",
    // extended attributes (xattr.rs; the handle API's too)
    "getxattr",
    "setxattr",
    "listxattr",
    "removexattr",
    // handles (handles.rs): glfs_h_lookupat, glfs_h_create_from_handle
    "lookup",
    // locks.rs, upcall.rs
    "lock",
    "lease",
    "upcall",
    // copy.rs
    "copy_file_range",
];

/// One operation as seen by the fault engine.
#[derive(Debug, Clone)]
pub struct OpCtx<'a> {
    /// Operation name (one of [`OP_NAMES`]).
    pub op: &'a str,
    /// Volume name.
    pub volume: &'a str,
    /// Volume-relative path with a leading `/` (empty for `init`).
    pub path: &'a str,
    /// Byte offset of the I/O, when the operation has one.
    pub offset: Option<u64>,
    /// Length of the I/O in bytes (0 when not applicable).
    pub len: u64,
}

/// What the matching rules ask for. Effects combine: delays add up, the first errno,
/// short length and disconnect win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Added latency.
    pub delay: Duration,
    /// Block until the rules file changes.
    pub hang: bool,
    /// Fail with this errno.
    pub errno: Option<i32>,
    /// Transfer at most this many bytes.
    pub short: Option<u64>,
    /// Drop the connection of the instance (all further ops fail with ENOTCONN).
    pub disconnect: bool,
    /// Not a fault but a behaviour: a write it matches is acknowledged from the mount's
    /// write-behind cache and reaches the backing file (so other mounts) only when the
    /// cache is flushed (see `crate::fs::Glfs::write_behind`).
    pub write_behind: bool,
    /// Not a fault but a behaviour: the logical sector size of the brick's disk that an
    /// `O_DIRECT` read or write it matches must be aligned to (default
    /// `crate::fs::DIRECT_ALIGN`).
    pub sector_size: Option<u64>,
    /// Not a fault but a behaviour: a path call it matches resolves the name through the
    /// mount's cached lookup (Gluster's md-cache) while the cached entry is younger than
    /// the timeout; this is the volume's `performance.md-cache-timeout` in seconds, which
    /// the mount's own xlator option overrides (see `crate::fs::Glfs::md_cache_get`).
    pub md_cache: Option<u64>,
    /// Not a fault but a behaviour: the file is on a sharded volume (`features.shard on`),
    /// whose shard translator refuses `glfs_fallocate` modes other than 0, ZERO_RANGE and
    /// KEEP_SIZE|PUNCH_HOLE with ENOTSUP (Gluster 10.3, `shard_fallocate`).
    pub shard: bool,
}

impl Decision {
    /// Adds what another matching rule asks for: delays add up, the first errno, short
    /// length, sector size and md-cache timeout win, the rest accumulate.
    fn add(&mut self, e: &Decision) {
        self.delay += e.delay;
        self.hang |= e.hang;
        self.errno = self.errno.or(e.errno);
        self.short = self.short.or(e.short);
        self.disconnect |= e.disconnect;
        self.write_behind |= e.write_behind;
        self.sector_size = self.sector_size.or(e.sector_size);
        self.md_cache = self.md_cache.or(e.md_cache);
        self.shard |= e.shard;
    }

    /// True when no rule fired.
    pub fn is_none(&self) -> bool {
        *self == Decision::default()
    }

    /// True when no fault fired (behaviours alone, write-behind and a sector size, are
    /// no fault).
    pub fn is_no_fault(&self) -> bool {
        Decision {
            write_behind: false,
            sector_size: None,
            md_cache: None,
            shard: false,
            ..self.clone()
        }
        .is_none()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ErrnoSpec {
    Num(i32),
    Name(String),
}

/// One `[[rule]]` table of the rules file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    op: Option<OneOrMany>,
    volume: Option<String>,
    path: Option<String>,
    offset: Option<[u64; 2]>,
    nth: Option<u64>,
    after: Option<u64>,
    count: Option<u64>,
    probability: Option<f64>,
    errno: Option<ErrnoSpec>,
    delay_ms: Option<u64>,
    hang: Option<bool>,
    short: Option<u64>,
    disconnect: Option<bool>,
    write_behind: Option<bool>,
    sector_size: Option<u64>,
    md_cache: Option<bool>,
    md_cache_timeout: Option<u64>,
    shard: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    #[allow(dead_code)]
    reconnect: Option<toml::Value>,
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

/// A parsed, validated rule with its counters.
#[derive(Debug, Clone)]
struct Rule {
    ops: Option<Vec<String>>,
    volume: Option<String>,
    path: Option<String>,
    offset: Option<(u64, u64)>,
    nth: Option<u64>,
    after: Option<u64>,
    count: Option<u64>,
    probability: Option<f64>,
    effect: Decision,
    hits: u64,
    fired: u64,
    rng: u64,
}

/// Maps an errno name such as `"EIO"` to its number.
pub fn errno_from_name(name: &str) -> Option<i32> {
    use libc::*;
    Some(match name.to_ascii_uppercase().as_str() {
        "EPERM" => EPERM,
        "ENOENT" => ENOENT,
        "EINTR" => EINTR,
        "EIO" => EIO,
        "ENXIO" => ENXIO,
        "EBADF" => EBADF,
        "EAGAIN" | "EWOULDBLOCK" => EAGAIN,
        "ENOMEM" => ENOMEM,
        "EACCES" => EACCES,
        "EFAULT" => EFAULT,
        "EBUSY" => EBUSY,
        "EEXIST" => EEXIST,
        "ENOTDIR" => ENOTDIR,
        "EISDIR" => EISDIR,
        "EINVAL" => EINVAL,
        "EFBIG" => EFBIG,
        "ENOSPC" => ENOSPC,
        "EROFS" => EROFS,
        "ENOTEMPTY" => ENOTEMPTY,
        "ENODATA" => ENODATA,
        "ENOTSUP" | "EOPNOTSUPP" => EOPNOTSUPP,
        "ENOTCONN" => ENOTCONN,
        "ETIMEDOUT" => ETIMEDOUT,
        "ECONNREFUSED" => ECONNREFUSED,
        "ECONNRESET" => ECONNRESET,
        "EHOSTUNREACH" => EHOSTUNREACH,
        "ESTALE" => ESTALE,
        "EDQUOT" => EDQUOT,
        "ECANCELED" => ECANCELED,
        "ERANGE" => ERANGE,
        "ENAMETOOLONG" => ENAMETOOLONG,
        "ELOOP" => ELOOP,
        "EXDEV" => EXDEV,
        "EMFILE" => EMFILE,
        "ENFILE" => ENFILE,
        "ESPIPE" => ESPIPE,
        "EPIPE" => EPIPE,
        _ => return None,
    })
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Glob match: `*` any run of characters (including `/`), `?` one character,
/// `[abc]`/`[a-z]`/`[!a]` a character class. A pattern without a leading `/` is
/// matched as if it had one.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<char> = pattern.trim_start_matches('/').chars().collect();
    let text: Vec<char> = path.trim_start_matches('/').chars().collect();
    glob_rec(&pat, &text)
}

fn glob_rec(p: &[char], t: &[char]) -> bool {
    // Iterative matcher with single-star backtracking.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(&p[pi..], t[ti]) {
                        if matched {
                            pi += next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class at the start of `p` (which begins with `[`).
/// Returns (matched, length of the class) or None when the class is unterminated.
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = i < p.len() && (p[i] == '!' || p[i] == '^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

impl Rule {
    fn from_spec(spec: RuleSpec, index: usize, seed: u64) -> Result<Rule, String> {
        let ops = match spec.op {
            None => None,
            Some(OneOrMany::One(s)) => Some(vec![s]),
            Some(OneOrMany::Many(v)) => Some(v),
        };
        let ops = match ops {
            Some(v) if v.iter().any(|s| s == "*" || s == "any") => None,
            Some(v) => {
                for s in &v {
                    if !OP_NAMES.contains(&s.as_str()) {
                        return Err(format!("rule {}: unknown op {s:?}", index + 1));
                    }
                }
                Some(v)
            }
            None => None,
        };
        let errno = match spec.errno {
            None => None,
            Some(ErrnoSpec::Num(n)) if n > 0 => Some(n),
            Some(ErrnoSpec::Num(n)) => {
                return Err(format!("rule {}: errno {n} must be positive", index + 1))
            }
            Some(ErrnoSpec::Name(s)) => Some(
                errno_from_name(&s)
                    .ok_or_else(|| format!("rule {}: unknown errno {s:?}", index + 1))?,
            ),
        };
        if let Some(p) = spec.probability {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("rule {}: probability must be in [0, 1]", index + 1));
            }
        }
        if let Some([a, b]) = spec.offset {
            if a >= b {
                return Err(format!("rule {}: offset range is empty", index + 1));
            }
        }
        if let Some(n) = spec.sector_size {
            if !n.is_power_of_two() || !(512..=65536).contains(&n) {
                return Err(format!(
                    "rule {}: sector_size {n} is not a power of two from 512 to 65536",
                    index + 1
                ));
            }
        }
        if let Some(n) = spec.md_cache_timeout {
            if n > 600 {
                return Err(format!(
                    "rule {}: md_cache_timeout {n} is above 600 (md-cache's maximum)",
                    index + 1
                ));
            }
        }
        let md_cache = match (spec.md_cache, spec.md_cache_timeout) {
            (Some(false), Some(_)) => {
                return Err(format!(
                    "rule {}: md_cache_timeout with md_cache = false",
                    index + 1
                ))
            }
            (Some(false), None) | (None, None) => None,
            // Gluster's default performance.md-cache-timeout is 1 s.
            (_, timeout) => Some(timeout.unwrap_or(1)),
        };
        let effect = Decision {
            delay: Duration::from_millis(spec.delay_ms.unwrap_or(0)),
            hang: spec.hang.unwrap_or(false),
            errno,
            short: spec.short,
            disconnect: spec.disconnect.unwrap_or(false),
            write_behind: spec.write_behind.unwrap_or(false),
            sector_size: spec.sector_size,
            md_cache,
            shard: spec.shard.unwrap_or(false),
        };
        if effect.is_none() {
            return Err(format!(
                "rule {}: no effect (errno, delay_ms, hang, short, disconnect, write_behind, \
                 sector_size, md_cache or shard)",
                index + 1
            ));
        }
        let mut rng = seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
        splitmix(&mut rng);
        Ok(Rule {
            ops,
            volume: spec.volume,
            path: spec.path,
            offset: spec.offset.map(|[a, b]| (a, b)),
            nth: spec.nth,
            after: spec.after,
            count: spec.count,
            probability: spec.probability,
            effect,
            hits: 0,
            fired: 0,
            rng,
        })
    }

    fn matches(&self, ctx: &OpCtx<'_>) -> bool {
        if let Some(ops) = &self.ops {
            if !ops.iter().any(|o| o == ctx.op) {
                return false;
            }
        }
        if let Some(v) = &self.volume {
            if v != ctx.volume {
                return false;
            }
        }
        if let Some(p) = &self.path {
            if !glob_match(p, ctx.path) {
                return false;
            }
        }
        if let Some((a, b)) = self.offset {
            let Some(off) = ctx.offset else { return false };
            let end = off.saturating_add(ctx.len.max(1));
            if !(off < b && end > a) {
                return false;
            }
        }
        true
    }

    /// Counts a matching call and decides whether the rule fires on it.
    fn fire(&mut self) -> bool {
        self.hits += 1;
        if let Some(n) = self.nth {
            if self.hits != n {
                return false;
            }
        }
        if let Some(a) = self.after {
            if self.hits <= a {
                return false;
            }
        }
        if let Some(c) = self.count {
            if self.fired >= c {
                return false;
            }
        }
        if let Some(p) = self.probability {
            let x = (splitmix(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
            if x >= p {
                return false;
            }
        }
        self.fired += 1;
        true
    }
}

/// Parses a rules file. Errors name the offending rule.
fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    file.rule
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Rule::from_spec(spec, i, file.seed))
        .collect()
}

/// Validates rules-file text; returns the number of rules or the parse error.
pub fn validate(text: &str) -> Result<usize, String> {
    parse_rules(text).map(|r| r.len())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: i64,
}

fn file_key(path: &Path) -> Option<FileKey> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).ok()?;
    Some(FileKey {
        dev: md.dev(),
        ino: md.ino(),
        mtime: md.mtime(),
        mtime_nsec: md.mtime_nsec(),
        size: md.size() as i64,
    })
}

#[derive(Debug, Default)]
struct Loaded {
    key: Option<FileKey>,
    rules: Vec<Rule>,
    generation: u64,
    error: Option<String>,
}

/// The rules of one rules file, reloaded when the file's identity, size or mtime changes.
#[derive(Debug)]
pub struct FaultSource {
    path: PathBuf,
    state: Mutex<Loaded>,
    changed: Condvar,
}

/// Returns the shared source for a rules file path (one per path per process).
pub fn source_for(path: &Path) -> Arc<FaultSource> {
    static SOURCES: OnceLock<Mutex<HashMap<PathBuf, Arc<FaultSource>>>> = OnceLock::new();
    let map = SOURCES.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(path.to_path_buf())
        .or_insert_with(|| {
            let src = Arc::new(FaultSource {
                path: path.to_path_buf(),
                state: Mutex::new(Loaded::default()),
                changed: Condvar::new(),
            });
            src.refresh();
            src
        })
        .clone()
}

impl FaultSource {
    /// The rules file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rereads the file if it changed; returns the current generation.
    /// The generation increases on every change (including removal).
    pub fn refresh(&self) -> u64 {
        let key = file_key(&self.path);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.key == key && st.generation > 0 {
            return st.generation;
        }
        st.key = key.clone();
        st.generation += 1;
        st.rules.clear();
        st.error = None;
        if key.is_some() {
            match std::fs::read_to_string(&self.path) {
                Ok(text) => match parse_rules(&text) {
                    Ok(rules) => st.rules = rules,
                    Err(e) => {
                        eprintln!(
                            "gfapi-fake: ignoring invalid rules file {}: {e}",
                            self.path.display()
                        );
                        st.error = Some(e);
                    }
                },
                Err(e) => st.error = Some(e.to_string()),
            }
        }
        self.changed.notify_all();
        st.generation
    }

    /// The error of the last load, if the file was invalid.
    pub fn error(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
    }

    /// Number of rules currently loaded.
    pub fn rule_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rules
            .len()
    }

    /// Evaluates the rules against one operation (refreshing first) and returns the
    /// combined decision together with the generation it was taken under.
    pub fn decide(&self, ctx: &OpCtx<'_>) -> (Decision, u64) {
        self.refresh();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = Decision::default();
        for rule in st.rules.iter_mut() {
            if !rule.matches(ctx) || !rule.fire() {
                continue;
            }
            d.add(&rule.effect);
        }
        (d, st.generation)
    }

    /// Blocks until the generation differs from `generation` (the file was rewritten or
    /// removed). Polls the file every few milliseconds.
    pub fn wait_change(&self, generation: u64) {
        loop {
            if self.refresh() != generation {
                return;
            }
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.generation != generation {
                return;
            }
            let _ = self
                .changed
                .wait_timeout(st, Duration::from_millis(5))
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Applies the delay and hang parts of a decision (outside any lock).
    pub fn apply_wait(&self, d: &Decision, generation: u64) {
        if !d.delay.is_zero() {
            let until = Instant::now() + d.delay;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                std::thread::sleep(left);
            }
        }
        if d.hang {
            self.wait_change(generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ctx<'a>(op: &'a str, path: &'a str, offset: Option<u64>, len: u64) -> OpCtx<'a> {
        OpCtx {
            op,
            volume: "vol",
            path,
            offset,
            len,
        }
    }

    fn decide_all(text: &str, calls: &[OpCtx<'_>]) -> Vec<Decision> {
        let mut rules = parse_rules(text).unwrap();
        calls
            .iter()
            .map(|c| {
                let mut d = Decision::default();
                for r in rules.iter_mut() {
                    if r.matches(c) && r.fire() {
                        d.add(&r.effect);
                    }
                }
                d
            })
            .collect()
    }

    #[rstest]
    #[case("*.img", "/lun.img", true)]
    #[case("/lun.img", "/lun.img", true)]
    #[case("lun.img", "/lun.img", true)]
    #[case("*.img", "/dir/lun.img", true)]
    #[case("/dir/*", "/dir/a", true)]
    #[case("/dir/*", "/other/a", false)]
    #[case("lun?.img", "/lun1.img", true)]
    #[case("lun?.img", "/lun12.img", false)]
    #[case("lun[0-3].img", "/lun2.img", true)]
    #[case("lun[!0-3].img", "/lun2.img", false)]
    #[case("*", "/anything/at/all", true)]
    #[case("a*b*c", "/axxbyyc", true)]
    #[case("a*b*c", "/axxbyy", false)]
    fn globs(#[case] pat: &str, #[case] path: &str, #[case] expect: bool) {
        assert_eq!(glob_match(pat, path), expect, "{pat} vs {path}");
    }

    #[test]
    fn errno_by_name_and_number() {
        let d = decide_all(
            "[[rule]]\nop = \"read\"\nerrno = \"EIO\"\n[[rule]]\nop = \"write\"\nerrno = 28\n",
            &[
                ctx("read", "/f", Some(0), 1),
                ctx("write", "/f", Some(0), 1),
            ],
        );
        assert_eq!(d[0].errno, Some(5));
        assert_eq!(d[1].errno, Some(28));
    }

    #[test]
    fn nth_after_count() {
        let calls: Vec<_> = (0..5).map(|_| ctx("write", "/f", Some(0), 1)).collect();
        let nth = decide_all("[[rule]]\nop='write'\nnth=3\nerrno='EIO'", &calls);
        let fired: Vec<bool> = nth.iter().map(|d| d.errno.is_some()).collect();
        assert_eq!(fired, [false, false, true, false, false]);
        let after = decide_all(
            "[[rule]]\nop='write'\nafter=2\ncount=2\nerrno='EIO'",
            &calls,
        );
        let fired: Vec<bool> = after.iter().map(|d| d.errno.is_some()).collect();
        assert_eq!(fired, [false, false, true, true, false]);
    }

    #[test]
    fn offset_range_overlap() {
        let text = "[[rule]]\nop='read'\noffset=[4096, 8192]\nerrno='EIO'";
        let d = decide_all(
            text,
            &[
                ctx("read", "/f", Some(0), 4096),
                ctx("read", "/f", Some(0), 4097),
                ctx("read", "/f", Some(8192), 512),
                ctx("read", "/f", Some(8191), 1),
                ctx("read", "/f", None, 0),
            ],
        );
        let fired: Vec<bool> = d.iter().map(|d| d.errno.is_some()).collect();
        assert_eq!(fired, [false, true, false, true, false]);
    }

    #[test]
    fn op_list_volume_and_path_filters() {
        let text = "[[rule]]\nop=['read','fsync']\nvolume='vol'\npath='/a*'\ndelay_ms=5";
        let d = decide_all(
            text,
            &[
                ctx("read", "/abc", None, 0),
                ctx("fsync", "/abc", None, 0),
                ctx("write", "/abc", None, 0),
                ctx("read", "/b", None, 0),
            ],
        );
        let fired: Vec<bool> = d.iter().map(|d| !d.delay.is_zero()).collect();
        assert_eq!(fired, [true, true, false, false]);
        let other_vol = OpCtx {
            volume: "other",
            ..ctx("read", "/abc", None, 0)
        };
        assert!(decide_all(text, &[other_vol])[0].is_none());
    }

    #[test]
    fn probability_is_seeded_and_reproducible() {
        let text = "seed = 42\n[[rule]]\nop='read'\nprobability=0.5\nerrno='EIO'";
        let calls: Vec<_> = (0..200).map(|_| ctx("read", "/f", None, 0)).collect();
        let a: Vec<bool> = decide_all(text, &calls)
            .iter()
            .map(|d| d.errno.is_some())
            .collect();
        let b: Vec<bool> = decide_all(text, &calls)
            .iter()
            .map(|d| d.errno.is_some())
            .collect();
        assert_eq!(a, b);
        let n = a.iter().filter(|x| **x).count();
        assert!((60..140).contains(&n), "fired {n} of 200");
        let other: Vec<bool> = decide_all(&text.replace("42", "43"), &calls)
            .iter()
            .map(|d| d.errno.is_some())
            .collect();
        assert_ne!(a, other);
    }

    #[test]
    fn effects_combine() {
        let text = "[[rule]]\ndelay_ms=3\n[[rule]]\ndelay_ms=4\nshort=10\n[[rule]]\nerrno='ENOSPC'\n[[rule]]\nerrno='EIO'\ndisconnect=true";
        let d = decide_all(text, &[ctx("write", "/f", Some(0), 100)]);
        assert_eq!(
            d[0],
            Decision {
                delay: Duration::from_millis(7),
                hang: false,
                errno: Some(libc::ENOSPC),
                short: Some(10),
                disconnect: true,
                write_behind: false,
                sector_size: None,
                md_cache: None,
                shard: false,
            }
        );
    }

    #[test]
    fn a_sector_size_is_a_behaviour_and_must_be_a_power_of_two() {
        let text = "[[rule]]\nop=['read','write']\nvolume='vol'\nsector_size=4096";
        let d = decide_all(text, &[ctx("read", "/lun", Some(0), 512)]);
        assert_eq!(d[0].sector_size, Some(4096));
        assert!(d[0].is_no_fault() && !d[0].is_none());
        for bad in ["sector_size=1000", "sector_size=256", "sector_size=131072"] {
            let err = parse_rules(&format!("[[rule]]\n{bad}")).unwrap_err();
            assert!(
                err.contains("not a power of two from 512 to 65536"),
                "{err}"
            );
        }
    }

    #[test]
    fn write_behind_is_a_behaviour_of_its_own_not_a_fault() {
        let text = "[[rule]]\nop='write'\npath='/wb-*'\nwrite_behind=true";
        assert_eq!(validate(text), Ok(1));
        let d = decide_all(
            text,
            &[
                ctx("write", "/wb-lun", Some(0), 512),
                ctx("write", "/lun", Some(0), 512),
            ],
        );
        assert!(d[0].write_behind && d[0].is_no_fault() && !d[0].is_none());
        assert!(d[1].is_none());
    }

    #[test]
    fn md_cache_is_a_behaviour_with_the_volume_timeout() {
        let text = "[[rule]]\nop=['open','stat']\npath='/m-*'\nmd_cache=true\n\
                    [[rule]]\nop='lstat'\nmd_cache_timeout=60";
        assert_eq!(validate(text), Ok(2));
        let d = decide_all(
            text,
            &[
                ctx("open", "/m-lun.pr", None, 0),
                ctx("open", "/lun.pr", None, 0),
                ctx("lstat", "/lun.pr", None, 0),
            ],
        );
        // md_cache alone: Gluster's default timeout, 1 s.
        assert_eq!(d[0].md_cache, Some(1));
        assert!(d[0].is_no_fault() && !d[0].is_none());
        assert!(d[1].is_none());
        assert_eq!(d[2].md_cache, Some(60));
        let err = parse_rules("[[rule]]\nmd_cache_timeout=601").unwrap_err();
        assert!(err.contains("above 600"), "{err}");
        let err = parse_rules("[[rule]]\nmd_cache=false\nmd_cache_timeout=5").unwrap_err();
        assert!(err.contains("md_cache = false"), "{err}");
        let err = parse_rules("[[rule]]\nmd_cache=false").unwrap_err();
        assert!(err.contains("no effect"), "{err}");
    }

    #[rstest]
    #[case("[[rule]]\nop='reed'\nerrno='EIO'", "unknown op")]
    #[case("[[rule]]\nerrno='EWHAT'", "unknown errno")]
    #[case("[[rule]]\nop='read'", "no effect")]
    #[case("[[rule]]\nprobability=2.0\nerrno=5", "probability")]
    #[case("[[rule]]\noffset=[5,5]\nerrno=5", "empty")]
    #[case("[[rule]]\nbogus=1\nerrno=5", "unknown field")]
    fn invalid_files_are_rejected(#[case] text: &str, #[case] needle: &str) {
        let err = validate(text).unwrap_err();
        assert!(err.contains(needle), "{err}");
    }

    #[test]
    fn source_reloads_on_change_and_wait_change_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.toml");
        let src = source_for(&path);
        let g0 = src.refresh();
        assert_eq!(src.rule_count(), 0);
        std::fs::write(&path, "[[rule]]\nop='read'\nerrno='EIO'\n").unwrap();
        let g1 = src.refresh();
        assert_ne!(g0, g1);
        assert_eq!(src.rule_count(), 1);
        let (d, g) = src.decide(&ctx("read", "/f", None, 0));
        assert_eq!(d.errno, Some(libc::EIO));
        assert_eq!(g, g1);
        let src2 = src.clone();
        let t = std::thread::spawn(move || src2.wait_change(g1));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished());
        std::fs::remove_file(&path).unwrap();
        t.join().unwrap();
        assert_eq!(src.rule_count(), 0);
    }
}
