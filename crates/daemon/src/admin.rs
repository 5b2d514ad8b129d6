//! `glfs-iscsi admin <noun> <verb>`: the control socket's client, in the same binary.

use crate::auth::{AclToml, ChapEntry, ConfigSecret};
use crate::config::LunEntry;
use crate::control::{Answer, LunChanges, Progress, Reply, Request};
use crate::state::ApplyOptions;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Where the daemon's control socket is unless told otherwise (the systemd unit's).
pub const DEFAULT_SOCKET: &str = "/run/glfs-iscsi/control.sock";

/// Administer a running glfs-iscsi through its control socket.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The daemon's control socket (its `--control-socket`).
    #[arg(long, env = "GLFS_ISCSI_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up on a daemon that has not answered within SECS (stopped, or stuck on a
    /// volume that does not answer), saying so; 0 waits for ever.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(0..=86400), global = true)]
    pub timeout: u64,
    #[command(subcommand)]
    pub noun: Noun,
}

/// How long `admin` waits for the daemon's answer by default: longer than a glfs LUN's
/// default mount time limit (`timeout=60`), so a slow volume is not taken for a stuck
/// daemon.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;

#[derive(Debug, Subcommand)]
pub enum Noun {
    /// Targets (iSCSI names).
    Target {
        #[command(subcommand)]
        verb: TargetVerb,
    },
    /// LUNs of a target.
    Lun {
        #[command(subcommand)]
        verb: LunVerb,
    },
    /// ACL entries of a target: the initiators it admits (none: all). Changes apply to
    /// the next logins; sessions logged in keep running.
    Acl {
        #[command(subcommand)]
        verb: AclVerb,
    },
    /// CHAP credentials of a target, or of discovery (target `discovery`). Secrets are
    /// never shown, and never taken from the command line: from a file, an environment
    /// variable or standard input.
    Chap {
        #[command(subcommand)]
        verb: ChapVerb,
    },
    /// The portals the daemon listens on: the main one, and those added live.
    Portal {
        #[command(subcommand)]
        verb: PortalVerb,
    },
    /// Sessions logged in.
    Session {
        #[command(subcommand)]
        verb: SessionVerb,
    },
    /// ALUA target port groups (`--alua-group`/`alua_group` and peers): list them, or
    /// change a group's state at once (hosts get ASYMMETRIC ACCESS STATE CHANGED).
    Alua {
        #[command(subcommand)]
        verb: AluaVerb,
    },
    /// Make the running configuration match FILE, printing what changed.
    Apply {
        file: PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
        /// Remove targets and LUNs even while sessions use them.
        #[arg(long)]
        force: bool,
    },
    /// Print the running configuration (the config file's format).
    Export,
}

#[derive(Debug, Subcommand)]
pub enum TargetVerb {
    Add {
        name: String,
        /// Admit only initiators matching SPEC (an initiator name, a network, or
        /// NAME@NETWORK; repeat for more): what a target on a public portal needs unless
        /// it has CHAP (add it next with `chap add`) or --allow-any-initiator.
        #[arg(long = "acl", value_name = "SPEC")]
        acl: Vec<String>,
        /// Serve it to any initiator even on a public portal.
        #[arg(long)]
        allow_any_initiator: bool,
    },
    Remove {
        name: String,
        /// Remove it even while sessions use it (they end).
        #[arg(long)]
        force: bool,
    },
    List,
    Show {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LunVerb {
    Add {
        target: String,
        #[arg(value_parser = crate::cli::parse_lun)]
        lun: u16,
        /// glfs, file or memory.
        #[arg(long, default_value = "glfs")]
        bstype: String,
        /// glfs: volume@host[,host...]:path; file: a path; memory: empty.
        #[arg(long, default_value = "")]
        backing_store: String,
        #[arg(long, default_value = "")]
        bsopts: String,
        /// Create a missing backing file with this size (memory: its size).
        #[arg(long, value_parser = units::parse_size)]
        size: Option<u64>,
        #[arg(long, value_parser = crate::cli::parse_block_size)]
        block_size: Option<u32>,
        #[arg(long)]
        read_only: bool,
        /// thin (default) or full: every block allocated before the LUN is served, no UNMAP.
        #[arg(long, value_name = "thin|full")]
        provisioning: Option<backstore::Provisioning>,
        /// A thin LUN's soft threshold: the free space of its storage at which its hosts
        /// are told (10% of its size unless set; a size, or off).
        #[arg(long, value_name = "PERCENT%|SIZE|off")]
        soft_threshold: Option<crate::space::SoftThreshold>,
        /// With alua failover: the target port group this LUN goes to when gateways start
        /// together (else the groups in turn by LUN number); the config file's
        /// `alua_preferred`.
        #[arg(long, value_name = "GROUP", value_parser = crate::gateways::parse_group_id)]
        alua_preferred: Option<u16>,
    },
    Remove {
        target: String,
        #[arg(value_parser = crate::cli::parse_lun)]
        lun: u16,
        /// Remove it even while sessions use it (their commands on it end).
        #[arg(long)]
        force: bool,
    },
    Modify {
        target: String,
        #[arg(value_parser = crate::cli::parse_lun)]
        lun: u16,
        #[arg(long)]
        read_only: Option<bool>,
        #[arg(long)]
        bsopts: Option<String>,
        #[arg(long)]
        backing_store: Option<String>,
        /// thin or full: the LUN's store is opened again with it (full allocates every
        /// block first); hosts are told the LU's inquiry data changed.
        #[arg(long, value_name = "thin|full")]
        provisioning: Option<backstore::Provisioning>,
        /// The soft threshold (PERCENT%, SIZE or off): the hosts' mode page gets it, armed,
        /// and they are told the mode parameters changed.
        #[arg(long, value_name = "PERCENT%|SIZE|off")]
        soft_threshold: Option<crate::space::SoftThreshold>,
        /// Change it even while sessions use it.
        #[arg(long)]
        force: bool,
    },
    /// Grow the LUN's backing store to SIZE (e.g. 20G); the hosts are told the capacity
    /// changed. Shrinking is refused.
    Resize {
        target: String,
        #[arg(value_parser = crate::cli::parse_lun)]
        lun: u16,
        #[arg(value_parser = units::parse_size)]
        size: u64,
    },
    /// Copy the LUN as it is now into a new file while it keeps serving (a point-in-time,
    /// crash-consistent copy: a write over data not yet copied waits for that data's
    /// copy). The file must not exist; it is made sparse. Serve it with `lun add`.
    Clone {
        target: String,
        #[arg(value_parser = crate::cli::parse_lun)]
        lun: u16,
        /// The new file: a path (for a glfs LUN, on the LUN's volume), or for a glfs LUN
        /// a whole volume@host:path.
        #[arg(long, required_unless_present = "cancel")]
        to: Option<String>,
        /// Stop the copy being made instead (its file is removed).
        #[arg(long, conflicts_with = "to")]
        cancel: bool,
    },
    List {
        /// Only this target's LUNs.
        #[arg(long)]
        target: Option<String>,
    },
    Show {
        target: String,
        #[arg(value_parser = crate::cli::parse_lun)]
        lun: u16,
    },
}

/// What an ACL entry matches, and its own CHAP credentials.
#[derive(Debug, Clone, Args)]
pub struct AclEntryArgs {
    /// The initiator's iSCSI name (none: any initiator from the networks).
    #[arg(long)]
    pub initiator: Option<String>,
    /// A network the initiator must connect from (192.0.2.0/24, 2001:db8::/48, one
    /// address); repeat for more.
    #[arg(long = "network")]
    pub networks: Vec<String>,
    /// CHAP user of this entry (wins over the target's).
    #[arg(long)]
    pub chap_user: Option<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// Where a secret comes from: never the command line itself.
#[derive(Debug, Clone, Default, Args)]
pub struct SecretArgs {
    /// A file holding the secret; the daemon reads it (now and at each restart).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable of this command holding the secret; it is stored in the
    /// config file (owner-only).
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// Read the secret from the first line of standard input; stored like --secret-env.
    #[arg(long)]
    pub secret_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum AclVerb {
    /// Add an entry.
    Add {
        target: String,
        #[command(flatten)]
        entry: AclEntryArgs,
    },
    /// Remove entry INDEX, or every entry naming --initiator.
    Remove {
        target: String,
        index: Option<usize>,
        #[arg(long, conflicts_with = "index")]
        initiator: Option<String>,
    },
    /// Replace entry INDEX with the one these options describe.
    Modify {
        target: String,
        index: usize,
        #[command(flatten)]
        entry: AclEntryArgs,
    },
    List {
        /// Only this target's entries.
        #[arg(long)]
        target: Option<String>,
    },
    Show {
        target: String,
        index: usize,
    },
}

/// CHAP credentials as `chap add` and `chap modify` take them.
#[derive(Debug, Clone, Args)]
pub struct ChapArgs {
    /// The user initiators log in as.
    #[arg(long)]
    pub user: String,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Mutual CHAP: the user the target answers as.
    #[arg(long)]
    pub mutual_user: Option<String>,
    /// File holding the mutual secret (the daemon reads it).
    #[arg(long, value_name = "PATH", requires = "mutual_user")]
    pub mutual_secret_file: Option<PathBuf>,
    /// Environment variable of this command holding the mutual secret.
    #[arg(long, value_name = "VAR", requires = "mutual_user")]
    pub mutual_secret_env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChapVerb {
    /// Set credentials where none are.
    Add {
        /// A target's name, or `discovery`.
        target: String,
        #[command(flatten)]
        chap: ChapArgs,
    },
    /// Replace the credentials set.
    Modify {
        target: String,
        #[command(flatten)]
        chap: ChapArgs,
    },
    Remove {
        target: String,
    },
    List,
    Show {
        target: String,
    },
}

/// Where a secret comes from, as the config file writes it: `(inline, file)`.
fn secret_from(
    what: &str,
    file: Option<&PathBuf>,
    env: Option<&str>,
    stdin: bool,
) -> Result<(Option<ConfigSecret>, Option<PathBuf>)> {
    let given = usize::from(file.is_some()) + usize::from(env.is_some()) + usize::from(stdin);
    anyhow::ensure!(
        given == 1,
        "{what}: give the secret with exactly one of --secret-file, --secret-env and --secret-stdin"
    );
    if let Some(path) = file {
        // The daemon reads it from its own working directory: make the path absolute.
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("{what}: cannot read {}", path.display()))?;
        return Ok((None, Some(path)));
    }
    let text = match env {
        Some(var) => std::env::var(var)
            .map_err(|_| anyhow::anyhow!("{what}: environment variable {var} is not set"))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .with_context(|| format!("{what}: cannot read standard input"))?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    Ok((Some(ConfigSecret(iscsi::auth::Secret::new(text))), None))
}

impl AclEntryArgs {
    fn entry(&self) -> Result<AclToml> {
        let s = &self.secret;
        let given = s.secret_file.is_some() || s.secret_env.is_some() || s.secret_stdin;
        let chap = match &self.chap_user {
            Some(user) => {
                let (secret, secret_file) = secret_from(
                    "--chap-user",
                    s.secret_file.as_ref(),
                    s.secret_env.as_deref(),
                    s.secret_stdin,
                )?;
                Some(ChapEntry {
                    user: user.clone(),
                    secret,
                    secret_file,
                    ..Default::default()
                })
            }
            None if given => anyhow::bail!("a secret without --chap-user"),
            None => None,
        };
        Ok(AclToml {
            initiator: self.initiator.clone(),
            networks: self.networks.clone(),
            chap,
        })
    }
}

impl ChapArgs {
    fn entry(&self) -> Result<ChapEntry> {
        let s = &self.secret;
        let (secret, secret_file) = secret_from(
            "--user",
            s.secret_file.as_ref(),
            s.secret_env.as_deref(),
            s.secret_stdin,
        )?;
        let (mutual_secret, mutual_secret_file) = match &self.mutual_user {
            Some(_) => secret_from(
                "--mutual-user",
                self.mutual_secret_file.as_ref(),
                self.mutual_secret_env.as_deref(),
                false,
            )?,
            None => (None, None),
        };
        Ok(ChapEntry {
            user: self.user.clone(),
            secret,
            secret_file,
            mutual_user: self.mutual_user.clone(),
            mutual_secret,
            mutual_secret_file,
            ..Default::default()
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum PortalVerb {
    List,
    /// Listen on ADDR too (IP:PORT; IPv6 in brackets), at once and after restarts.
    Add {
        addr: String,
    },
    /// Stop listening on ADDR: new connections are refused, other portals untouched.
    Remove {
        addr: String,
        /// Remove it even while sessions came through it (they end).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AluaVerb {
    List,
    /// Put target port group GROUP (this gateway's or a peer's) in STATE:
    /// active-optimized, active-non-optimized, standby, unavailable, offline or
    /// transitioning. Written to the config file when the groups come from it.
    Set {
        group: u16,
        state: String,
    },
    /// With --alua-failover, on an active gateway: a planned switchover. This gateway
    /// steps down on every LUN it is active for (or those of --target, or LUN --lun of
    /// --target) and lets go of their data fences, and target port group GROUP's gateway
    /// takes them at its next round (the others leave them to that one for 10 s).
    Handover {
        group: u16,
        /// Only the LUNs of this target.
        #[arg(long)]
        target: Option<String>,
        /// Only this LUN of --target.
        #[arg(long)]
        lun: Option<u16>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionVerb {
    List,
    /// End session ID (its connection closes).
    End {
        id: u64,
    },
}

impl AdminArgs {
    /// The request this command line makes.
    pub fn request(&self) -> Result<Request> {
        Ok(match &self.noun {
            Noun::Target { verb } => match verb {
                TargetVerb::Add {
                    name,
                    acl,
                    allow_any_initiator,
                } => Request::TargetAdd {
                    name: name.clone(),
                    acl: acl
                        .iter()
                        .map(|spec| {
                            AclToml::from_spec(spec).with_context(|| format!("--acl {spec}"))
                        })
                        .collect::<Result<_>>()?,
                    allow_any_initiator: *allow_any_initiator,
                },
                TargetVerb::Remove { name, force } => Request::TargetRemove {
                    name: name.clone(),
                    force: *force,
                },
                TargetVerb::List => Request::TargetList,
                TargetVerb::Show { name } => Request::TargetShow { name: name.clone() },
            },
            Noun::Lun { verb } => match verb {
                LunVerb::Add {
                    target,
                    lun,
                    bstype,
                    backing_store,
                    bsopts,
                    size,
                    block_size,
                    read_only,
                    provisioning,
                    soft_threshold,
                    alua_preferred,
                } => Request::LunAdd {
                    target: target.clone(),
                    entry: LunEntry {
                        lun: *lun,
                        bstype: bstype.clone(),
                        backing_store: backing_store.clone(),
                        bsopts: bsopts.clone(),
                        size: size.map(units::format_size),
                        block_size: *block_size,
                        read_only: *read_only,
                        provisioning: provisioning
                            .filter(|p| *p == backstore::Provisioning::Full)
                            .map(|p| p.to_string()),
                        soft_threshold: soft_threshold.map(|t| t.to_string()),
                        alua_preferred: *alua_preferred,
                    },
                },
                LunVerb::Remove { target, lun, force } => Request::LunRemove {
                    target: target.clone(),
                    lun: *lun,
                    force: *force,
                },
                LunVerb::Modify {
                    target,
                    lun,
                    read_only,
                    bsopts,
                    backing_store,
                    provisioning,
                    soft_threshold,
                    force,
                } => Request::LunModify {
                    target: target.clone(),
                    lun: *lun,
                    changes: LunChanges {
                        read_only: *read_only,
                        bsopts: bsopts.clone(),
                        backing_store: backing_store.clone(),
                        provisioning: provisioning.map(|p| p.to_string()),
                        soft_threshold: soft_threshold.map(|t| t.to_string()),
                        force: *force,
                    },
                },
                LunVerb::Resize { target, lun, size } => Request::LunResize {
                    target: target.clone(),
                    lun: *lun,
                    size: *size,
                },
                LunVerb::Clone {
                    target,
                    lun,
                    cancel: true,
                    ..
                } => Request::LunCloneCancel {
                    target: target.clone(),
                    lun: *lun,
                },
                LunVerb::Clone {
                    target, lun, to, ..
                } => Request::LunClone {
                    target: target.clone(),
                    lun: *lun,
                    to: to.clone().unwrap_or_default(),
                },
                LunVerb::List { target } => Request::LunList {
                    target: target.clone(),
                },
                LunVerb::Show { target, lun } => Request::LunShow {
                    target: target.clone(),
                    lun: *lun,
                },
            },
            Noun::Acl { verb } => match verb {
                AclVerb::Add { target, entry } => Request::AclAdd {
                    target: target.clone(),
                    entry: entry.entry()?,
                },
                AclVerb::Remove {
                    target,
                    index,
                    initiator,
                } => Request::AclRemove {
                    target: target.clone(),
                    index: *index,
                    initiator: initiator.clone(),
                },
                AclVerb::Modify {
                    target,
                    index,
                    entry,
                } => Request::AclModify {
                    target: target.clone(),
                    index: *index,
                    entry: entry.entry()?,
                },
                AclVerb::List { target } => Request::AclList {
                    target: target.clone(),
                },
                AclVerb::Show { target, index } => Request::AclShow {
                    target: target.clone(),
                    index: *index,
                },
            },
            Noun::Chap { verb } => match verb {
                ChapVerb::Add { target, chap } => Request::ChapAdd {
                    target: target.clone(),
                    entry: chap.entry()?,
                },
                ChapVerb::Modify { target, chap } => Request::ChapModify {
                    target: target.clone(),
                    entry: chap.entry()?,
                },
                ChapVerb::Remove { target } => Request::ChapRemove {
                    target: target.clone(),
                },
                ChapVerb::List => Request::ChapList,
                ChapVerb::Show { target } => Request::ChapShow {
                    target: target.clone(),
                },
            },
            Noun::Portal { verb } => match verb {
                PortalVerb::List => Request::PortalList,
                PortalVerb::Add { addr } => Request::PortalAdd { addr: addr.clone() },
                PortalVerb::Remove { addr, force } => Request::PortalRemove {
                    addr: addr.clone(),
                    force: *force,
                },
            },
            Noun::Session { verb } => match verb {
                SessionVerb::List => Request::SessionList,
                SessionVerb::End { id } => Request::SessionEnd { id: *id },
            },
            Noun::Alua { verb } => match verb {
                AluaVerb::List => Request::AluaList,
                AluaVerb::Set { group, state } => Request::AluaSet {
                    group: *group,
                    state: state.clone(),
                },
                AluaVerb::Handover { group, target, lun } => {
                    if lun.is_some() && target.is_none() {
                        anyhow::bail!(
                            "alua handover --lun needs --target (LUN numbers are per target)"
                        );
                    }
                    Request::AluaHandover {
                        group: *group,
                        target: target.clone(),
                        lun: *lun,
                    }
                }
            },
            Noun::Apply {
                file,
                dry_run,
                force,
            } => Request::Apply {
                text: std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
                options: ApplyOptions {
                    dry_run: *dry_run,
                    force: *force,
                },
            },
            Noun::Export => Request::Export,
        })
    }
}

/// Sends `request` to the daemon at `socket` and returns its reply, giving up after
/// `timeout` (`None`: never) of silence: progress reports (each given to `progress`) keep
/// a long request going.
pub fn call(
    socket: &std::path::Path,
    request: &Request,
    timeout: Option<std::time::Duration>,
    mut progress: impl FnMut(&Progress),
) -> Result<Reply> {
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the daemon's control socket {} (is glfs-iscsi running with \
             --control-socket there?)",
            socket.display()
        )
    })?;
    // A stopped daemon's socket still takes the connection (the kernel's backlog) and the
    // request: only the reply never comes.
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| silent(e, socket, timeout))?;
    let mut answers = BufReader::new(&stream);
    loop {
        let mut line = String::new();
        answers
            .read_line(&mut line)
            .map_err(|e| silent(e, socket, timeout))?;
        anyhow::ensure!(!line.is_empty(), "the daemon closed the control socket");
        match serde_json::from_str(&line)? {
            Answer::Progress { progress: p } => progress(&p),
            Answer::Reply(reply) => return Ok(reply),
        }
    }
}

/// What a failed exchange with the daemon tells the operator: a time-out says what to do.
fn silent(
    e: std::io::Error,
    socket: &std::path::Path,
    timeout: Option<std::time::Duration>,
) -> anyhow::Error {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        anyhow::anyhow!(
            "the daemon at {} did not answer within {} s (stopped, or stuck on a volume \
             that does not answer?); a change it was sent is applied whole or not at \
             all: see what runs with `glfs-iscsi admin export`; --timeout SECS waits \
             longer",
            socket.display(),
            timeout.map_or(0, |t| t.as_secs())
        )
    } else {
        e.into()
    }
}

/// A progress bar on the terminal (none when standard error is not one) for the reports
/// of a long request.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn show(&mut self, p: &Progress) {
        let bar = self.0.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(p.total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        bar.set_length(p.total);
        bar.set_position(p.done);
        bar.set_message(p.what.clone());
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

/// Runs one admin command: prints its output; an error reply is an error.
pub fn run(args: &AdminArgs) -> Result<()> {
    let timeout = (args.timeout > 0).then(|| std::time::Duration::from_secs(args.timeout));
    let mut bar = Bar(None);
    let reply = call(&args.socket, &args.request()?, timeout, |p| bar.show(p))?;
    drop(bar);
    if !reply.ok {
        anyhow::bail!("{}", reply.error);
    }
    let out = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&reply.data)?)
    } else if !reply.text.is_empty() {
        reply.text
    } else {
        render_table(&reply.table)
    };
    print!("{out}");
    Ok(())
}

/// Aligned columns, two spaces apart; the first row is the header.
pub fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned_under_their_header() {
        let rows = vec![
            vec!["target".into(), "luns".into()],
            vec!["iqn.2026-11.x.y:long-name".into(), "0,1".into()],
            vec!["iqn.2026-11.x.y:a".into(), "-".into()],
        ];
        assert_eq!(
            render_table(&rows),
            "target                     luns\n\
             iqn.2026-11.x.y:long-name  0,1\n\
             iqn.2026-11.x.y:a          -\n"
        );
    }
}
