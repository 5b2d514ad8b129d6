//! Command line: one target with one LUN, tgt-style (`--bstype`, `--backing-store`,
//! `--bsopts`).

use crate::targets::{LunSpec, TargetSpec};
use anyhow::{bail, Context, Result};
use backstore::StoreOptions;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Export a file on a GlusterFS volume (or a plain file, or memory) as an iSCSI disk.
#[derive(Debug, Parser)]
#[command(name = "glfs-iscsi", version)]
pub struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:3260")]
    pub portal: SocketAddr,
    /// The target's iSCSI name (iqn., eui. or naa. form).
    #[arg(long, default_value = "iqn.2026-11.io.glfs-iscsi:disk0")]
    pub target: String,
    /// The LUN number the disk appears as.
    #[arg(long, default_value_t = 0)]
    pub lun: u16,
    /// Backing store type: glfs, file or memory.
    #[arg(long, default_value = "glfs")]
    pub bstype: String,
    /// glfs: volume@host[,host...]:path; file: a path; memory: empty.
    #[arg(long, default_value = "")]
    pub backing_store: String,
    /// Backing store options, `key=value` separated by `;` (glfs: logfile=...;loglevel=N).
    #[arg(long, default_value = "")]
    pub bsopts: String,
    /// Create a missing backing file with this size (memory: the store's size), e.g. 1G.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Logical block size in bytes.
    #[arg(long, default_value_t = 512)]
    pub block_size: u32,
    /// Export the LUN read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Seconds a command may wait on its backing store before it is answered with ABORTED
    /// COMMAND (the store keeps its buffers until it finishes); 0 disables the limit.
    #[arg(long, default_value_t = 25)]
    pub command_timeout: u64,
    /// Seconds of silence after which the target pings a connection with a NOP-In; 0 never
    /// pings.
    #[arg(long, default_value_t = 5)]
    pub nop_in_interval: u64,
    /// Seconds an initiator has to answer a NOP-In ping before its connection is closed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub nop_in_timeout: u64,
    /// Seconds a login may take, from connect to full feature phase; 0: no limit.
    #[arg(long, default_value_t = 15)]
    pub login_timeout: u64,
    /// Seconds shutdown (SIGTERM) gives sessions to log out after asking them to, before
    /// their connections are closed.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Normal sessions one target accepts; a login over it is refused (out of resources).
    #[arg(long, default_value_t = 256)]
    pub max_sessions_per_target: usize,
    /// Connections one initiator (InitiatorName) may have; a login over it is refused (too
    /// many connections).
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_initiator: usize,
    /// Unsolicited and immediate data all sessions together may hold, e.g. 2G: each session
    /// reserves FirstBurstLength for each command it may have outstanding at login, and a
    /// login that does not fit is refused (out of resources).
    #[arg(long, value_parser = parse_size)]
    pub unsolicited_data_budget: Option<u64>,
    /// Threads serving connections, each a single-threaded event loop that keeps its
    /// connections for their life (default: one per CPU; 0: one shared multi-threaded
    /// runtime).
    #[arg(long, default_value_t = crate::server::default_io_threads())]
    pub io_threads: usize,
    /// Load libgfapi from this path instead of the system's libgfapi.so.0.
    #[arg(long, env = "GFAPI_LIBRARY")]
    pub gfapi_library: Option<PathBuf>,
    /// Read targets and LUNs (and optionally portal and limits) from this TOML file instead
    /// of the single-LUN options above. See the config module docs for the format.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log filter (tracing's env-filter syntax), e.g. info or daemon=debug.
    #[arg(long, env = "GLFS_ISCSI_LOG", default_value = "info")]
    pub log: String,
    /// Log line format: text, or json (one object per line, with the session span).
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    /// Serve metrics in the Prometheus text format on this address (HTTP, GET /metrics);
    /// off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Admit only initiators matching SPEC: an initiator name, a network (192.0.2.0/24,
    /// 2001:db8::/48, or one address), or NAME@NETWORK. Repeat for more entries.
    #[arg(long = "acl", value_name = "SPEC")]
    pub acl: Vec<String>,
    /// CHAP user initiators must log in as; the secret comes from --chap-secret-file or
    /// the environment variable GLFS_ISCSI_CHAP_SECRET (at least 12 bytes).
    #[arg(long, value_name = "USER")]
    pub chap_user: Option<String>,
    /// File holding the CHAP secret of --chap-user (one trailing newline ignored).
    #[arg(long, value_name = "PATH")]
    pub chap_secret_file: Option<PathBuf>,
    /// Mutual CHAP: the user the target answers as; the secret comes from
    /// --mutual-chap-secret-file or GLFS_ISCSI_MUTUAL_CHAP_SECRET.
    #[arg(long, value_name = "USER", requires = "chap_user")]
    pub mutual_chap_user: Option<String>,
    /// File holding the secret of --mutual-chap-user.
    #[arg(long, value_name = "PATH")]
    pub mutual_chap_secret_file: Option<PathBuf>,
    /// CHAP user discovery sessions must log in as; the secret comes from
    /// --discovery-chap-secret-file or GLFS_ISCSI_DISCOVERY_CHAP_SECRET.
    #[arg(long, value_name = "USER")]
    pub discovery_chap_user: Option<String>,
    /// File holding the secret of --discovery-chap-user.
    #[arg(long, value_name = "PATH")]
    pub discovery_chap_secret_file: Option<PathBuf>,
    /// Serve targets that have neither ACL nor CHAP to any initiator on a non-loopback
    /// portal (otherwise the program refuses to start).
    #[arg(long)]
    pub allow_any_initiator: bool,
}

/// Environment variables the command line's CHAP secrets may come from.
pub const CHAP_SECRET_ENV: &str = "GLFS_ISCSI_CHAP_SECRET";
/// See [`CHAP_SECRET_ENV`].
pub const MUTUAL_CHAP_SECRET_ENV: &str = "GLFS_ISCSI_MUTUAL_CHAP_SECRET";
/// See [`CHAP_SECRET_ENV`].
pub const DISCOVERY_CHAP_SECRET_ENV: &str = "GLFS_ISCSI_DISCOVERY_CHAP_SECRET";

/// A command-line CHAP user's credential: its secret from `file`, else from `env`.
fn cli_credential(
    option: &str,
    user: &str,
    file: Option<&PathBuf>,
    env: &str,
) -> Result<iscsi::auth::Credential> {
    use crate::auth::SecretSource;
    let source = match file {
        Some(path) => SecretSource::File(path.clone()),
        None => SecretSource::Env(env.to_string()),
    };
    crate::auth::credential(option, user, Some(source))
}

/// What to serve, from the command line or the config file.
pub struct Plan {
    pub portal: SocketAddr,
    pub targets: Vec<TargetSpec>,
    pub server: crate::Server,
    /// ACLs and CHAP credentials of every target, and discovery's.
    pub access: iscsi::auth::AccessPolicy,
}

impl Args {
    /// Everything to serve: the config file when given, else the single-LUN options.
    pub fn plan(&self) -> Result<Plan> {
        let mut server = self.server();
        let discovery = match &self.discovery_chap_user {
            Some(user) => Some(iscsi::auth::ChapCredentials {
                initiator: cli_credential(
                    "--discovery-chap-user",
                    user,
                    self.discovery_chap_secret_file.as_ref(),
                    DISCOVERY_CHAP_SECRET_ENV,
                )?,
                target: None,
            }),
            None => None,
        };
        let Some(path) = &self.config else {
            let targets = vec![self.target_spec()?];
            crate::auth::check_open_targets(&targets, self.portal)?;
            return Ok(Plan {
                portal: self.portal,
                access: crate::auth::policy(&targets, discovery)?,
                targets,
                server,
            });
        };
        if !self.backing_store.is_empty() {
            bail!("--config and --backing-store both given: put the LUN in the config file");
        }
        if !self.acl.is_empty() || self.chap_user.is_some() {
            bail!("--config with --acl or --chap-user: put them in the config file");
        }
        let config = crate::config::ConfigFile::load(path)?;
        if let Some(secs) = config.command_timeout {
            server.connection.command_timeout =
                (secs > 0).then(|| std::time::Duration::from_secs(secs));
        }
        let portal = config.portal.unwrap_or(self.portal);
        let mut targets = config
            .target_specs(self.gfapi_library.as_ref())
            .with_context(|| format!("config file {}", path.display()))?;
        for t in &mut targets {
            t.allow_any_initiator |= self.allow_any_initiator;
        }
        crate::auth::check_open_targets(&targets, portal)?;
        let discovery = match (&config.discovery_chap, discovery) {
            (Some(_), Some(_)) => {
                bail!("discovery CHAP both in the config file and on the command line")
            }
            (Some(entry), None) => Some(
                entry
                    .credentials("[discovery_chap]")
                    .with_context(|| format!("config file {}", path.display()))?,
            ),
            (None, cli) => cli,
        };
        Ok(Plan {
            portal,
            access: crate::auth::policy(&targets, discovery)?,
            targets,
            server,
        })
    }

    /// The single target the command line describes, after checking its names.
    pub fn target_spec(&self) -> Result<TargetSpec> {
        check_iscsi_name(&self.target)?;
        if !matches!(self.block_size, 512 | 1024 | 2048 | 4096) {
            bail!(
                "--block-size {} is not one of 512, 1024, 2048, 4096",
                self.block_size
            );
        }
        let acl = self
            .acl
            .iter()
            .map(|spec| crate::auth::parse_acl_spec(spec).with_context(|| format!("--acl {spec}")))
            .collect::<Result<Vec<_>>>()?;
        let chap = match &self.chap_user {
            Some(user) => Some(iscsi::auth::ChapCredentials {
                initiator: cli_credential(
                    "--chap-user",
                    user,
                    self.chap_secret_file.as_ref(),
                    CHAP_SECRET_ENV,
                )?,
                target: match &self.mutual_chap_user {
                    Some(user) => Some(cli_credential(
                        "--mutual-chap-user",
                        user,
                        self.mutual_chap_secret_file.as_ref(),
                        MUTUAL_CHAP_SECRET_ENV,
                    )?),
                    None => None,
                },
            }),
            None => None,
        };
        Ok(TargetSpec {
            name: self.target.clone(),
            access: iscsi::auth::TargetAccess { acl, chap },
            allow_any_initiator: self.allow_any_initiator,
            luns: vec![LunSpec {
                lun: self.lun,
                read_only: self.read_only,
                store: StoreOptions {
                    bstype: self.bstype.clone(),
                    backing_store: self.backing_store.clone(),
                    bsopts: self.bsopts.clone(),
                    create_size: self.size,
                    block_size: Some(self.block_size),
                    gfapi_library: self.gfapi_library.clone(),
                },
            }],
        })
    }

    /// Server limits from the command line.
    pub fn server(&self) -> crate::Server {
        let mut server = crate::Server::default();
        server.connection.command_timeout = (self.command_timeout > 0)
            .then(|| std::time::Duration::from_secs(self.command_timeout));
        server.io_threads = self.io_threads;
        server.drain_timeout = std::time::Duration::from_secs(self.shutdown_grace);
        let bounds = &mut server.connection.bounds;
        bounds.max_sessions_per_target = self.max_sessions_per_target;
        bounds.max_connections_per_initiator = self.max_connections_per_initiator;
        if let Some(budget) = self.unsolicited_data_budget {
            bounds.unsolicited_data_budget = budget;
        }
        let secs = std::time::Duration::from_secs;
        server.connection.timers = iscsi::Timers {
            nop_in_interval: (self.nop_in_interval > 0).then(|| secs(self.nop_in_interval)),
            nop_in_timeout: secs(self.nop_in_timeout),
            login_timeout: (self.login_timeout > 0).then(|| secs(self.login_timeout)),
        };
        server
    }
}

/// Checks an initiator name's form, as [`check_iscsi_name`] does a target's.
pub fn check_initiator_name(name: &str) -> Result<()> {
    if !iscsi_name_ok(name) {
        bail!(
            "invalid initiator name {name:?}: expected iqn.YYYY-MM.reversed.domain[:id], \
             eui.<16 hex digits> or naa.<16 or 32 hex digits>"
        );
    }
    Ok(())
}

/// Checks an iSCSI name's form (RFC 7143 section 4.2.7).
pub fn check_iscsi_name(name: &str) -> Result<()> {
    if !iscsi_name_ok(name) {
        bail!(
            "invalid target name {name:?}: expected iqn.YYYY-MM.reversed.domain[:id], \
             eui.<16 hex digits> or naa.<16 or 32 hex digits>, at most 223 characters of \
             a-z, 0-9, '-', '.', ':'"
        );
    }
    Ok(())
}

fn iscsi_name_ok(name: &str) -> bool {
    let ok = if let Some(rest) = name.strip_prefix("iqn.") {
        // iqn.yyyy-mm.reversed.domain[:anything]
        let date = rest.get(..7).unwrap_or("");
        date.len() == 7
            && date[..4].bytes().all(|b| b.is_ascii_digit())
            && date.as_bytes()[4] == b'-'
            && date[5..].bytes().all(|b| b.is_ascii_digit())
            && rest.len() > 8
            && rest.as_bytes()[7] == b'.'
    } else if let Some(hex) = name.strip_prefix("eui.") {
        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    } else if let Some(hex) = name.strip_prefix("naa.") {
        matches!(hex.len(), 16 | 32) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    } else {
        false
    };
    let allowed = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    ok && allowed && name.len() <= 223
}

/// Parses a size such as `4096`, `64M`, `1G`, `2T` (binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let number: u64 = digits.parse().map_err(|_| {
        format!("invalid size {text:?}: expected a number with an optional K/M/G/T")
    })?;
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("invalid size {text:?}: unknown unit {unit:?}")),
    };
    number
        .checked_mul(1u64 << shift)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {text:?}: must be above zero and below 16 EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("12Q").unwrap_err().contains("unknown unit"));
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999T").is_err());
    }

    #[test]
    fn iscsi_names_are_checked() {
        assert!(check_iscsi_name("iqn.2026-11.io.example:disk1").is_ok());
        assert!(check_iscsi_name("eui.02004567A425678D").is_ok());
        assert!(check_iscsi_name("naa.52004567BA64678D").is_ok());
        for bad in [
            "disk1",
            "iqn.26-11.io.x",
            "iqn.2026-11",
            "eui.123",
            "iqn.2026-11.io.x y",
        ] {
            let err = check_iscsi_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid target name"), "{bad}: {err}");
        }
    }
}
