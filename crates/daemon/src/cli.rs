//! Command line: one target with one LUN, tgt-style (`--bstype`, `--backing-store`,
//! `--bsopts`).

use crate::config::{
    check_block_size, check_command_timeout, check_iscsi_name, check_lun, ConfigFile, LunEntry,
    TargetEntry,
};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
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
    #[arg(long, default_value_t = 0, value_parser = parse_lun)]
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
    #[arg(long, value_parser = units::parse_size)]
    pub size: Option<u64>,
    /// Logical block size in bytes.
    #[arg(long, default_value_t = 512, value_parser = parse_block_size)]
    pub block_size: u32,
    /// Export the LUN read-only.
    #[arg(long)]
    pub read_only: bool,
    /// thin (default): the file may be sparse and hosts may UNMAP; full: every block is
    /// allocated on the storage before the LUN is served (refused where there is no room),
    /// and no UNMAP.
    #[arg(long, value_name = "thin|full")]
    pub provisioning: Option<backstore::Provisioning>,
    /// A thin LUN's soft threshold: when the free space of its storage falls to it, the
    /// hosts are told (THIN PROVISIONING SOFT THRESHOLD REACHED; ESXi warns of the
    /// datastore running out of space): a percentage of the LUN's size, a size, or off.
    #[arg(long, value_name = "PERCENT%|SIZE|off", default_value = "10%")]
    pub soft_threshold: crate::space::SoftThreshold,
    /// Seconds a command may wait on its backing store before it is answered with ABORTED
    /// COMMAND (the store keeps its buffers until it finishes); 0 disables the limit.
    #[arg(long, default_value_t = 25, value_parser = parse_command_timeout)]
    pub command_timeout: u64,
    /// Seconds of silence after which the target pings a connection with a NOP-In; 0 never
    /// pings.
    #[arg(long, default_value_t = 5, value_parser = parse_nop_in_interval)]
    pub nop_in_interval: u64,
    /// Seconds an initiator has to answer a NOP-In ping before its connection is closed.
    #[arg(long, default_value_t = 5, value_parser = parse_nop_in_timeout)]
    pub nop_in_timeout: u64,
    /// Seconds a login may take, from connect to full feature phase; 0: no limit.
    #[arg(long, default_value_t = 15, value_parser = parse_login_timeout)]
    pub login_timeout: u64,
    /// Seconds shutdown (SIGTERM) gives sessions to log out after asking them to, before
    /// their connections are closed.
    #[arg(long, default_value_t = 10, value_parser = parse_shutdown_grace)]
    pub shutdown_grace: u64,
    /// Normal sessions one target accepts; a login over it is refused (out of resources).
    #[arg(long, default_value_t = 256, value_parser = parse_max_sessions_per_target)]
    pub max_sessions_per_target: u64,
    /// Connections one initiator (InitiatorName) may have; a login over it is refused (too
    /// many connections).
    #[arg(long, default_value_t = 64, value_parser = parse_max_connections_per_initiator)]
    pub max_connections_per_initiator: u64,
    /// Unsolicited and immediate data all sessions together may hold, e.g. 2G: each session
    /// reserves at login FirstBurstLength (less with InitialR2T=Yes) for each command it may
    /// have outstanding, and a login that does not fit is refused (out of resources).
    #[arg(long, value_parser = units::parse_size)]
    pub unsolicited_data_budget: Option<u64>,
    /// Refuse normal sessions that do not negotiate HeaderDigest=CRC32C (a login offering
    /// only None gets Initiator error, and the log says why).
    #[arg(long)]
    pub require_header_digest: bool,
    /// Refuse normal sessions that do not negotiate DataDigest=CRC32C.
    #[arg(long)]
    pub require_data_digest: bool,
    /// Threads serving connections, each a single-threaded event loop that keeps its
    /// connections for their life (default: one per CPU; 0: one shared multi-threaded
    /// runtime).
    #[arg(long, default_value_t = crate::server::default_io_threads(), value_parser = parse_io_threads)]
    pub io_threads: usize,
    /// TCP congestion control of the iSCSI connections (the target's sends: Data-In, R2T,
    /// responses), e.g. cubic; default: the kernel's
    /// (net.ipv4.tcp_congestion_control). Checked against the kernel at start.
    #[arg(long, value_name = "NAME", value_parser = crate::tcp::parse_congestion)]
    pub tcp_congestion: Option<crate::tcp::Congestion>,
    /// Load libgfapi from this path instead of the system's libgfapi.so.0.
    #[arg(long, env = "GFAPI_LIBRARY")]
    pub gfapi_library: Option<PathBuf>,
    /// Read targets and LUNs (and optionally portal and limits) from this TOML file instead
    /// of the single-LUN options above. See the config module docs for the format.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log filter (tracing's env-filter syntax), e.g. info or daemon=debug.
    #[arg(long, env = "GLFS_ISCSI_LOG", default_value = "info", value_parser = parse_log_filter)]
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
    /// Listen for `glfs-iscsi admin` on this Unix socket (created owner-only).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// This gateway's name among several exporting the same LUN files (1 to 64 of
    /// letters, digits and . _ - : @): persistent reservations are then kept on the
    /// storage for all of them, changed under its lock, and other gateways' changes are
    /// loaded every second (ARCHITECTURE.md, "Several gateways").
    #[arg(long, value_name = "NAME", value_parser = parse_gateway_id)]
    pub gateway_id: Option<store_api::LockOwner>,
    /// Report implicit ALUA: this gateway's target port is in this target port group
    /// (1 to 65535, also its relative target port identifier).
    #[arg(long, value_name = "ID", value_parser = crate::gateways::parse_group_id)]
    pub alua_group: Option<u16>,
    /// The asymmetric access state of --alua-group: active-optimized (default),
    /// active-non-optimized, standby, unavailable, offline or transitioning (all but the
    /// active states refuse media access with NOT READY, SPC-4 5.16.2.4). Changed live
    /// with `admin alua set`.
    #[arg(long, value_name = "STATE", requires = "alua_group",
          value_parser = crate::gateways::parse_access_state)]
    pub alua_state: Option<scsi::AccessState>,
    /// Another gateway's target port group and state, as ID:STATE (repeat for each).
    #[arg(long = "alua-peer", value_name = "ID:STATE", requires = "alua_group",
          value_parser = crate::gateways::parse_port_group)]
    pub alua_peers: Vec<scsi::PortGroup>,
    /// Active/passive failover: the gateway that holds the LUNs' data fence (a Gluster
    /// mandatory lock, glfs LUNs only) is active/optimized, every other standby; the
    /// states are kept on the volume for every gateway and follow the fence when the
    /// active gateway dies. Needs --gateway-id and --alua-group (or the file's); --alua-state and the
    /// peers' states are then not used.
    #[arg(long, conflicts_with = "alua_state")]
    pub alua_failover: bool,
    /// With --alua-failover: how long (whole seconds, 2 to 3600; default 8) a standby
    /// waits for the active gateway's heartbeat before it takes the LUN over from it as
    /// stalled (docs/fencing.md). Longer rides out longer volume hiccups; shorter fails
    /// over sooner. Read at start.
    #[arg(long, value_name = "SECS", value_parser = crate::stall::parse_stall_after)]
    pub alua_stall_after: Option<std::time::Duration>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

fn parse_gateway_id(s: &str) -> Result<store_api::LockOwner, String> {
    store_api::LockOwner::new(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Administer a running glfs-iscsi: `admin <noun> <verb>` (targets, LUNs, portals,
    /// sessions; apply and export).
    Admin(crate::admin::AdminArgs),
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
    /// The main portal: the file's `portal`, else `--portal`.
    pub portal: SocketAddr,
    /// `--portal` (or its default): the main portal of a file without `portal`.
    pub cli_portal: SocketAddr,
    /// The targets and LUNs, handed to [`crate::State`].
    pub config: ConfigFile,
    /// The file `config` came from (changes are written back to it).
    pub config_path: Option<PathBuf>,
    pub server: crate::Server,
    /// Access settings of the command line that hold beside the config file's (and are
    /// never written to it).
    pub access: crate::auth::CliAccess,
}

impl Args {
    /// Everything to serve: the config file when given, else the single-LUN options.
    pub fn plan(&self) -> Result<Plan> {
        let server = self.server();
        let discovery_chap = match &self.discovery_chap_user {
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
        let access = crate::auth::CliAccess {
            allow_any_initiator: self.allow_any_initiator,
            discovery_chap,
        };
        let Some(path) = &self.config else {
            let config = self.single_lun_config()?;
            // Check access control now, so a bad command line fails before anything starts.
            let specs = config.target_specs(self.gfapi_library.as_ref())?;
            access.policy(&config, &specs, self.portal)?;
            return Ok(Plan {
                portal: self.portal,
                cli_portal: self.portal,
                config,
                config_path: None,
                server,
                access,
            });
        };
        if !self.backing_store.is_empty() {
            bail!("--config and --backing-store both given: put the LUN in the config file");
        }
        if !self.acl.is_empty() || self.chap_user.is_some() {
            bail!("--config with --acl or --chap-user: put them in the config file");
        }
        let config = ConfigFile::load(path)?;
        // The file's settings win over the command line's.
        let server = with_file_settings(server, &config)?;
        let portal = config.portal.unwrap_or(self.portal);
        // Check every target, LUN and access rule before anything starts.
        let specs = config
            .target_specs(self.gfapi_library.as_ref())
            .with_context(|| format!("config file {}", path.display()))?;
        access
            .policy(
                &config,
                &specs,
                crate::config::exposed_portal(portal, &config.portals),
            )
            .with_context(|| format!("config file {}", path.display()))?;
        Ok(Plan {
            portal,
            cli_portal: self.portal,
            config,
            config_path: Some(path.clone()),
            server,
            access,
        })
    }

    /// The single target the command line describes, after checking its names.
    pub fn single_lun_config(&self) -> Result<ConfigFile> {
        check_iscsi_name(&self.target).context("--target")?;
        let acl = self
            .acl
            .iter()
            .map(|spec| {
                crate::auth::AclToml::from_spec(spec).with_context(|| format!("--acl {spec}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let chap = match &self.chap_user {
            Some(user) => {
                let (secret_env, secret_file) = match &self.chap_secret_file {
                    Some(file) => (None, Some(file.clone())),
                    None => (Some(CHAP_SECRET_ENV.to_string()), None),
                };
                let (mutual_secret_env, mutual_secret_file) =
                    match (&self.mutual_chap_user, &self.mutual_chap_secret_file) {
                        (None, _) => (None, None),
                        (Some(_), Some(file)) => (None, Some(file.clone())),
                        (Some(_), None) => (Some(MUTUAL_CHAP_SECRET_ENV.to_string()), None),
                    };
                let entry = crate::auth::ChapEntry {
                    user: user.clone(),
                    secret_env,
                    secret_file,
                    mutual_user: self.mutual_chap_user.clone(),
                    mutual_secret_env,
                    mutual_secret_file,
                    ..Default::default()
                };
                // Read and check the secrets now, naming the option.
                entry.credentials("--chap-user")?;
                Some(entry)
            }
            None => None,
        };
        let config = ConfigFile {
            gfapi_library: self.gfapi_library.clone(),
            targets: vec![TargetEntry {
                name: self.target.clone(),
                luns: vec![LunEntry {
                    lun: self.lun,
                    bstype: self.bstype.clone(),
                    backing_store: self.backing_store.clone(),
                    bsopts: self.bsopts.clone(),
                    size: self.size.map(units::format_size),
                    block_size: Some(self.block_size),
                    read_only: self.read_only,
                    provisioning: self
                        .provisioning
                        .filter(|p| *p == backstore::Provisioning::Full)
                        .map(|p| p.to_string()),
                    soft_threshold: (self.soft_threshold != Default::default())
                        .then(|| self.soft_threshold.to_string()),
                    alua_preferred: None,
                }],
                chap,
                acl,
                allow_any_initiator: false,
            }],
            ..Default::default()
        };
        Ok(config)
    }

    /// Server limits from the command line.
    pub fn server(&self) -> crate::Server {
        let nop_in_interval = self.nop_in_interval;
        let nop_in_timeout = self.nop_in_timeout;
        let login_timeout = self.login_timeout;
        let shutdown_grace = self.shutdown_grace;
        let max_sessions = self.max_sessions_per_target;
        let max_connections = self.max_connections_per_initiator;
        let budget = self.unsolicited_data_budget;
        let mut server = crate::Server::default();
        server.connection.command_timeout = (self.command_timeout > 0)
            .then(|| std::time::Duration::from_secs(self.command_timeout));
        server.io_threads = self.io_threads;
        server.connection.tcp_congestion = self.tcp_congestion;
        server.drain_timeout = std::time::Duration::from_secs(shutdown_grace);
        server.require_digests = iscsi::Digests {
            header: self.require_header_digest,
            data: self.require_data_digest,
        };
        let bounds = &mut server.connection.bounds;
        // At most 65535 each (checked): they fit any usize.
        bounds.max_sessions_per_target = max_sessions as usize;
        bounds.max_connections_per_initiator = max_connections as usize;
        if let Some(budget) = budget {
            bounds.unsolicited_data_budget = budget;
        }
        let secs = std::time::Duration::from_secs;
        server.connection.timers = iscsi::Timers {
            nop_in_interval: (nop_in_interval > 0).then(|| secs(nop_in_interval)),
            nop_in_timeout: secs(nop_in_timeout),
            login_timeout: (login_timeout > 0).then(|| secs(login_timeout)),
        };
        server
    }
}

/// `server` (the command line's limits) with the settings `config` gives instead, as
/// checked when it was parsed; digests are required when either requires them. At start
/// and at every change of the configuration ([`crate::State`]): a change applies to the
/// next logins.
pub fn with_file_settings(mut server: crate::Server, config: &ConfigFile) -> Result<crate::Server> {
    let secs = std::time::Duration::from_secs;
    let file = |key: &str| config.settings().into_iter().find(|(k, _)| *k == key)?.1;
    if let Some(s) = config.command_timeout {
        server.connection.command_timeout = (s > 0).then(|| secs(s));
    }
    let timers = &mut server.connection.timers;
    if let Some(s) = file("nop_in_interval") {
        timers.nop_in_interval = (s > 0).then(|| secs(s));
    }
    if let Some(s) = file("nop_in_timeout") {
        timers.nop_in_timeout = secs(s);
    }
    if let Some(s) = file("login_timeout") {
        timers.login_timeout = (s > 0).then(|| secs(s));
    }
    if let Some(s) = file("shutdown_grace") {
        server.drain_timeout = secs(s);
    }
    let bounds = &mut server.connection.bounds;
    // At most 65535 each (checked): they fit any usize.
    if let Some(n) = file("max_sessions_per_target") {
        bounds.max_sessions_per_target = n as usize;
    }
    if let Some(n) = file("max_connections_per_initiator") {
        bounds.max_connections_per_initiator = n as usize;
    }
    if let Some(size) = &config.unsolicited_data_budget {
        bounds.unsolicited_data_budget =
            units::parse_size(size).map_err(|e| anyhow::anyhow!("unsolicited_data_budget: {e}"))?;
    }
    if let Some(name) = &config.tcp_congestion {
        let cc = crate::tcp::parse_congestion(name)
            .map_err(|e| anyhow::anyhow!("tcp_congestion: {e}"))?;
        server.connection.tcp_congestion = Some(cc);
    }
    server.require_digests.header |= config.require_header_digest;
    server.require_digests.data |= config.require_data_digest;
    Ok(server)
}

/// `--lun`: a LUN number in flat space addressing's range.
pub(crate) fn parse_lun(text: &str) -> Result<u16, String> {
    let lun: u16 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a LUN number (0..={})", scsi::MAX_LUN))?;
    check_lun(lun).map_err(|e| e.to_string())?;
    Ok(lun)
}

/// `--block-size`: 512, 1024, 2048 or 4096.
pub(crate) fn parse_block_size(text: &str) -> Result<u32, String> {
    let size: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    check_block_size(size).map_err(|e| e.to_string())?;
    Ok(size)
}

/// A setting of [`crate::config::SETTINGS`] given as `--KEY`.
fn parse_setting(key: &str, text: &str) -> Result<u64, String> {
    let value: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    crate::config::check_setting(key, value).map_err(|e| e.to_string())?;
    Ok(value)
}

macro_rules! setting_parsers {
    ($($name:ident => $key:literal),* $(,)?) => {
        $(
            #[doc = concat!("`--", $key, "` (see [`crate::config::SETTINGS`]).")]
            fn $name(text: &str) -> Result<u64, String> {
                parse_setting($key, text)
            }
        )*
    };
}

setting_parsers! {
    parse_nop_in_interval => "nop_in_interval",
    parse_nop_in_timeout => "nop_in_timeout",
    parse_login_timeout => "login_timeout",
    parse_shutdown_grace => "shutdown_grace",
    parse_max_sessions_per_target => "max_sessions_per_target",
    parse_max_connections_per_initiator => "max_connections_per_initiator",
}

/// `--command-timeout`: seconds, 0 for no limit, at most a day.
fn parse_command_timeout(text: &str) -> Result<u64, String> {
    let secs: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    check_command_timeout(secs).map_err(|e| e.to_string())?;
    Ok(secs)
}

/// The most `--io-threads` we start.
pub const MAX_IO_THREADS: usize = 1024;

/// `--io-threads`: 0 (the shared runtime) up to [`MAX_IO_THREADS`].
fn parse_io_threads(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= MAX_IO_THREADS => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of threads from 0 to {MAX_IO_THREADS}"
        )),
    }
}

/// `--log`: tracing's env-filter syntax, checked here rather than silently replaced.
fn parse_log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("invalid log filter {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_checked_with_one_line_naming_it() {
        let cases: [(&[&str], &str); 17] = [
            (&["--login-timeout", "99999"], "--login-timeout"),
            (&["--nop-in-interval", "4000"], "--nop-in-interval"),
            (&["--nop-in-timeout", "0"], "--nop-in-timeout"),
            (&["--shutdown-grace", "86400"], "--shutdown-grace"),
            (
                &["--max-sessions-per-target", "0"],
                "--max-sessions-per-target",
            ),
            (
                &["--max-connections-per-initiator", "70000"],
                "--max-connections-per-initiator",
            ),
            (&["--lun", "20000"], "--lun"),
            (&["--lun", "x"], "--lun"),
            (&["--block-size", "1000"], "--block-size"),
            (&["--size", "12Q"], "--size"),
            (&["--size", "0"], "--size"),
            (
                &["--command-timeout", "18446744073709551615"],
                "--command-timeout",
            ),
            (&["--io-threads", "100000"], "--io-threads"),
            (&["--log", "daemon=[bad"], "--log"),
            (&["--provisioning", "thick"], "--provisioning"),
            (&["--soft-threshold", "0%"], "--soft-threshold"),
            (&["--soft-threshold", "lots"], "--soft-threshold"),
        ];
        for (args, name) in cases {
            let argv = std::iter::once("glfs-iscsi").chain(args.iter().copied());
            let err = Args::try_parse_from(argv).unwrap_err().to_string();
            let first = err.lines().next().unwrap();
            assert!(first.contains(name), "{args:?}: {err}");
            assert!(first.contains(args[1]), "{args:?} names the value: {err}");
        }
        let ok = Args::try_parse_from(["glfs-iscsi", "--lun", "16383", "--size", "1G"]).unwrap();
        assert_eq!((ok.lun, ok.size), (16383, Some(1 << 30)));
        let full = Args::try_parse_from(["glfs-iscsi", "--provisioning", "full"]).unwrap();
        assert_eq!(full.provisioning, Some(backstore::Provisioning::Full));
        let config = full.single_lun_config().unwrap();
        assert_eq!(
            config.targets[0].luns[0].provisioning.as_deref(),
            Some("full")
        );
        // The default soft threshold is not written; another is.
        assert_eq!(config.targets[0].luns[0].soft_threshold, None);
        let low = Args::try_parse_from(["glfs-iscsi", "--soft-threshold", "2G"]).unwrap();
        let config = low.single_lun_config().unwrap();
        assert_eq!(
            config.targets[0].luns[0].soft_threshold.as_deref(),
            Some("2G")
        );
    }
}
