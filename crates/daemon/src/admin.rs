//! `glfs-iscsi admin <noun> <verb>`: the control socket's client, in the same binary.

use crate::config::LunEntry;
use crate::control::{LunChanges, Reply, Request};
use crate::state::ApplyOptions;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::{BufRead, BufReader, Write};
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
    #[command(subcommand)]
    pub noun: Noun,
}

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
    /// The portal the daemon listens on.
    Portal {
        #[command(subcommand)]
        verb: PortalVerb,
    },
    /// Sessions logged in.
    Session {
        #[command(subcommand)]
        verb: SessionVerb,
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
        /// Change it even while sessions use it.
        #[arg(long)]
        force: bool,
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

#[derive(Debug, Subcommand)]
pub enum PortalVerb {
    List,
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
                TargetVerb::Add { name } => Request::TargetAdd { name: name.clone() },
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
                    force,
                } => Request::LunModify {
                    target: target.clone(),
                    lun: *lun,
                    changes: LunChanges {
                        read_only: *read_only,
                        bsopts: bsopts.clone(),
                        backing_store: backing_store.clone(),
                        force: *force,
                    },
                },
                LunVerb::List { target } => Request::LunList {
                    target: target.clone(),
                },
                LunVerb::Show { target, lun } => Request::LunShow {
                    target: target.clone(),
                    lun: *lun,
                },
            },
            Noun::Portal {
                verb: PortalVerb::List,
            } => Request::PortalList,
            Noun::Session { verb } => match verb {
                SessionVerb::List => Request::SessionList,
                SessionVerb::End { id } => Request::SessionEnd { id: *id },
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

/// Sends `request` to the daemon at `socket` and returns its reply.
pub fn call(socket: &std::path::Path, request: &Request) -> Result<Reply> {
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the daemon's control socket {} (is glfs-iscsi running with \
             --control-socket there?)",
            socket.display()
        )
    })?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    anyhow::ensure!(!reply.is_empty(), "the daemon closed the control socket");
    Ok(serde_json::from_str(&reply)?)
}

/// Runs one admin command: prints its output; an error reply is an error.
pub fn run(args: &AdminArgs) -> Result<()> {
    let reply = call(&args.socket, &args.request()?)?;
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
