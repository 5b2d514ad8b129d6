//! Parsing of backing-store strings and `--bsopts`.

use crate::OpenError;

/// A parsed glfs backing store: `volume@host[,host...]:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlfsSpec {
    /// Volume name.
    pub volume: String,
    /// Volfile server hosts, in order (IPv6 addresses without their brackets).
    pub hosts: Vec<String>,
    /// Path of the file inside the volume.
    pub path: String,
}

fn bad_spec(spec: &str, reason: impl Into<String>) -> OpenError {
    OpenError::BadSpec {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

fn bad_opts(opts: &str, reason: impl Into<String>) -> OpenError {
    OpenError::BadOptions {
        opts: opts.to_string(),
        reason: reason.into(),
    }
}

impl GlfsSpec {
    /// The spec of file `path` on the same volume through the same servers, written as
    /// [`GlfsSpec::parse`] reads it (IPv6 hosts in brackets).
    pub fn with_path(&self, path: &str) -> String {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| match h.contains(':') {
                true => format!("[{h}]"),
                false => h.clone(),
            })
            .collect();
        format!("{}@{}:{path}", self.volume, hosts.join(","))
    }

    /// Parses `volume@host[,host...]:path`. Hosts are separated by `,`; an IPv6 address is
    /// written in brackets (`vol@[fe80::1]:disk`). Everything after the `:` that ends the
    /// host list is the path, which may itself contain `:`.
    pub fn parse(spec: &str) -> Result<GlfsSpec, OpenError> {
        let Some((volume, rest)) = spec.split_once('@') else {
            return Err(bad_spec(
                spec,
                "missing '@' between volume and host (expected volume@host:path)",
            ));
        };
        if volume.is_empty() {
            return Err(bad_spec(spec, "empty volume name before '@'"));
        }
        if let Some(c) = volume
            .chars()
            .find(|c| matches!(c, '/' | ':' | ',' | '[' | ']') || c.is_whitespace())
        {
            return Err(bad_spec(
                spec,
                format!("volume name {volume:?} contains {c:?}"),
            ));
        }
        let mut hosts = Vec::new();
        let mut rest = rest;
        loop {
            let (host, after) = if let Some(inner) = rest.strip_prefix('[') {
                let Some(end) = inner.find(']') else {
                    return Err(bad_spec(spec, "unterminated '[' in host"));
                };
                let host = &inner[..end];
                if host.is_empty() {
                    return Err(bad_spec(spec, "empty host name in '[]'"));
                }
                if !host.contains(':') {
                    return Err(bad_spec(
                        spec,
                        format!("{host:?} in brackets is not an IPv6 address"),
                    ));
                }
                let after = &inner[end + 1..];
                if !(after.starts_with(',') || after.starts_with(':') || after.is_empty()) {
                    return Err(bad_spec(
                        spec,
                        format!("unexpected text after ']' in host [{host}]"),
                    ));
                }
                (host, after)
            } else {
                let end = rest.find([',', ':']).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            if host.is_empty() {
                return Err(bad_spec(spec, "empty host name"));
            }
            if let Some(c) = host
                .chars()
                .find(|c| c.is_whitespace() || matches!(c, '/' | '@' | '[' | ']'))
            {
                return Err(bad_spec(spec, format!("host name {host:?} contains {c:?}")));
            }
            hosts.push(host.to_string());
            if let Some(next) = after.strip_prefix(',') {
                rest = next;
                continue;
            }
            let Some(path) = after.strip_prefix(':') else {
                return Err(bad_spec(
                    spec,
                    "missing ':' before the file path (expected volume@host:path)",
                ));
            };
            if path.is_empty() || path.chars().all(|c| c == '/') {
                return Err(bad_spec(spec, "empty file path after ':'"));
            }
            return Ok(GlfsSpec {
                volume: volume.to_string(),
                hosts,
                path: path.to_string(),
            });
        }
    }
}

/// glfs `--bsopts`: `logfile=...;loglevel=N;transport=tcp;port=N;timeout=S;client-io-threads=on|off;hold=S;linger=S;copy-offload=on|off;coherent=on|off;read-part=SIZE|off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlfsOptions {
    /// gfapi log file (default: gfapi's own default location).
    pub logfile: Option<String>,
    /// gfapi log level 0..=9 (0 none, 5 warning, 7 info, 9 trace); default 5 (warning).
    pub loglevel: i32,
    /// Volfile server transport: `tcp` (default) or `rdma`.
    pub transport: String,
    /// Volfile server port; 0 (default) means 24007.
    pub port: u16,
    /// Seconds to wait for the volume mount (`glfs_init`) before giving up; default 60.
    /// glfs_init has been seen to hang forever (glusterfs#956).
    pub timeout_secs: u64,
    /// Keep the io-threads translator of the client graph queueing requests to its own
    /// threads (`client-io-threads=on`). Default off: it is set to pass-through, because the
    /// store already keeps many requests in flight with gfapi's async calls, and the hand-off
    /// to an io-threads worker costs a thread wake-up per request (volumes with one brick
    /// get the translator by default; replicated ones do not).
    pub client_io_threads: bool,
    /// Seconds a request waits for the store to reconnect when the volume's connection is
    /// lost (`hold=SECS`, 0 = fail at once with `NotConnected`); default
    /// [`DEFAULT_HOLD_SECS`], below the 30 s after which initiators give up on a command,
    /// so a short outage costs latency, not errors.
    pub hold_secs: u64,
    /// Seconds the volume's mount stays up, idle, once the last store on it is closed
    /// (`linger=SECS`, 0 = unmount at once); default [`DEFAULT_LINGER_SECS`]. A store
    /// opened on the same volume, servers and options meanwhile reuses it, so removing a
    /// volume's only LUN and adding it again does not cycle `glfs_new`/`glfs_fini`, which
    /// leaks memory in libgfapi (field failure #8; see the `linger` module).
    pub linger_secs: u64,
    /// EXTENDED COPY between files of the volume with `glfs_copy_file_range`
    /// (`copy-offload=on`). Default off: Gluster 10.3 copies from the start of the source
    /// file whatever source offset it is given (seen by the differential test in
    /// `crates/gfapi-fake/tests/c_program.rs`), so the copy is read and written through
    /// the target instead. Turn it on only for a Gluster that copies from the offset.
    pub copy_offload: bool,
    /// Coherent mode (`coherent=on|off`; unset: off, unless the LUN is shared by
    /// gateways): the image is opened `O_DIRECT` so that no client-side cache of this
    /// mount holds its writes or serves stale reads, and other gateways' mounts read
    /// what this one acknowledged (see the `coherent` module). Costs write-behind's
    /// aggregation.
    pub coherent: Option<bool>,
    /// The piece a large plain READ is cut into (`read-part=SIZE`, a multiple of 4 KiB
    /// from [`MIN_READ_PART`] to [`MAX_READ_PART`], or `off`): each piece is its own gfapi
    /// read, handed to the initiator as Data-In as soon as it and those before it are
    /// in; the brick's read overlaps the transfer to the initiator, for a request per
    /// piece (each costs the brick CPU). `None` (`off`, the default): every read is one
    /// gfapi read, sent on when all of it is in; a 1 MiB read then asks for the page past
    /// it (`gfapi::read_room`), so neither gfapi's reply buffer nor the brick's comes
    /// from libglusterfs's 1 MiB arenas, which pieces of 256 KiB (and whole 1 MiB reads
    /// before) made map and fault in afresh (docs/performance.md, fifteenth round).
    pub read_part: Option<u32>,
    /// gfapi's threads of this mount (the event threads that read the bricks' replies and
    /// run the completions, its timer and syncop threads) run under `SCHED_BATCH`
    /// (`batch-sched=on`, the default): a reply arriving does not preempt the thread that
    /// is passing a batch of commands to gfapi, so the batch reaches the brick together
    /// and the replies are answered together (docs/performance.md, seventh round).
    /// `batch-sched=off`: gfapi's threads keep the daemon's policy, and a completion
    /// preempts whatever runs on its CPU. LUNs of one volume share gfapi's mount, whose
    /// threads keep the policy of the first LUN's mount.
    pub batch_sched: bool,
    /// gfapi's event threads of this mount run on the CPUs its requests come from
    /// (`follow-cpu=on`, the default; `gfapi::follow`): with one connection thread on one
    /// CPU, its completions are run on that CPU instead of crossing to the other one
    /// (docs/performance.md, eighth round). `follow-cpu=off`: they run wherever the
    /// scheduler puts them. LUNs of one volume share gfapi's mount: on once one of them
    /// asked for it.
    pub follow_cpu: bool,
}

/// Smallest `read-part` (a piece is one gfapi request: smaller ones only add requests).
pub const MIN_READ_PART: u32 = 64 << 10;
/// Largest `read-part` (the SCSI layer's largest transfer is below it anyway).
pub const MAX_READ_PART: u32 = 64 << 20;

/// Default of [`GlfsOptions::hold_secs`].
pub const DEFAULT_HOLD_SECS: u64 = 15;

/// Default of [`GlfsOptions::linger_secs`].
pub const DEFAULT_LINGER_SECS: u64 = 60;

impl Default for GlfsOptions {
    fn default() -> Self {
        GlfsOptions {
            logfile: None,
            loglevel: 5,
            transport: "tcp".into(),
            port: 0,
            timeout_secs: 60,
            client_io_threads: false,
            hold_secs: DEFAULT_HOLD_SECS,
            linger_secs: DEFAULT_LINGER_SECS,
            copy_offload: false,
            coherent: None,
            read_part: None,
            batch_sched: true,
            follow_cpu: true,
        }
    }
}

/// Splits `key=value;key=value` (empty items ignored) into pairs.
pub(crate) fn split_options(opts: &str) -> Result<Vec<(&str, &str)>, OpenError> {
    let mut out = Vec::new();
    for item in opts.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(bad_opts(opts, format!("{item:?} is not key=value")));
        };
        out.push((key.trim(), value.trim()));
    }
    Ok(out)
}

impl GlfsOptions {
    /// Parses glfs `--bsopts`; unknown keys and bad values are errors.
    pub fn parse(opts: &str) -> Result<GlfsOptions, OpenError> {
        let mut o = GlfsOptions::default();
        for (key, value) in split_options(opts)? {
            match key {
                "logfile" => {
                    if value.is_empty() {
                        return Err(bad_opts(opts, "empty logfile"));
                    }
                    o.logfile = Some(value.to_string());
                }
                "loglevel" => {
                    o.loglevel = match value.parse::<i32>() {
                        Ok(n @ 0..=9) => n,
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("loglevel {value:?} is not a number from 0 to 9"),
                            ))
                        }
                    }
                }
                "transport" => {
                    if !matches!(value, "tcp" | "rdma") {
                        return Err(bad_opts(
                            opts,
                            format!("transport {value:?} is not tcp or rdma"),
                        ));
                    }
                    o.transport = value.to_string();
                }
                "port" => {
                    o.port = value.parse().map_err(|_| {
                        bad_opts(
                            opts,
                            format!("port {value:?} is not a number from 0 to 65535"),
                        )
                    })?;
                }
                "timeout" => {
                    o.timeout_secs = match value.parse::<u64>() {
                        Ok(n @ 1..=86400) => n,
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("timeout {value:?} is not a number of seconds from 1 to 86400"),
                            ))
                        }
                    }
                }
                "client-io-threads" => {
                    o.client_io_threads = match value {
                        "on" => true,
                        "off" => false,
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("client-io-threads {value:?} is not on or off"),
                            ))
                        }
                    }
                }
                "copy-offload" => {
                    o.copy_offload = match value {
                        "on" => true,
                        "off" => false,
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("copy-offload {value:?} is not on or off"),
                            ))
                        }
                    }
                }
                "coherent" => {
                    o.coherent = match value {
                        "on" => Some(true),
                        "off" => Some(false),
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("coherent {value:?} is not on or off"),
                            ))
                        }
                    }
                }
                "hold" => {
                    o.hold_secs = match value.parse::<u64>() {
                        Ok(n @ 0..=3600) => n,
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("hold {value:?} is not a number of seconds from 0 to 3600"),
                            ))
                        }
                    }
                }
                "linger" => {
                    o.linger_secs = match value.parse::<u64>() {
                        Ok(n @ 0..=86400) => n,
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("linger {value:?} is not a number of seconds from 0 to 86400"),
                            ))
                        }
                    }
                }
                "read-part" => {
                    o.read_part = match value {
                        "off" => None,
                        _ => match parse_size(value) {
                            Ok(n)
                                if (u64::from(MIN_READ_PART)..=u64::from(MAX_READ_PART))
                                    .contains(&n)
                                    && n % 4096 == 0 =>
                            {
                                Some(n as u32)
                            }
                            _ => {
                                return Err(bad_opts(
                                    opts,
                                    format!(
                                        "read-part {value:?} is not off or a size from 64k to 64M in multiples of 4k"
                                    ),
                                ))
                            }
                        },
                    }
                }
                "batch-sched" => {
                    o.batch_sched = match value {
                        "on" => true,
                        "off" => false,
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("batch-sched {value:?} is not on or off"),
                            ))
                        }
                    }
                }
                "follow-cpu" => {
                    o.follow_cpu = match value {
                        "on" => true,
                        "off" => false,
                        _ => {
                            return Err(bad_opts(
                                opts,
                                format!("follow-cpu {value:?} is not on or off"),
                            ))
                        }
                    }
                }
                other => {
                    return Err(bad_opts(
                        opts,
                        format!(
                            "unknown key {other:?} (expected logfile, loglevel, transport, port, timeout, client-io-threads, hold, linger, copy-offload, coherent, read-part, batch-sched or follow-cpu)"
                        ),
                    ))
                }
            }
        }
        Ok(o)
    }
}

/// The size grammar is the workspace's one: [`units::parse_size`].
pub use units::parse_size;
