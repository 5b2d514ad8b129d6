//! The control socket: a Unix socket (owner-only) on which `glfs-iscsi admin` asks the
//! running daemon to list and change what it serves. One JSON request per line, one JSON
//! reply per line, after it, for long work (allocating a fully provisioned LUN), lines
//! reporting its progress ([`Answer`]). Every change goes through [`State`], the one owner of the running state.

use crate::auth::{AclToml, ChapEntry};
use crate::config::{check_iscsi_name, check_lun, ConfigFile, LunEntry, TargetEntry};
use crate::registry::{Registry, SessionView};
use crate::state::{ApplyOptions, Change, State};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// What `admin` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    TargetList,
    TargetShow {
        name: String,
    },
    TargetAdd {
        name: String,
        /// Its first ACL entries (on a public portal a target needs an ACL or CHAP).
        #[serde(default)]
        acl: Vec<AclToml>,
        #[serde(default)]
        allow_any_initiator: bool,
    },
    TargetRemove {
        name: String,
        force: bool,
    },
    LunList {
        target: Option<String>,
    },
    LunShow {
        target: String,
        lun: u16,
    },
    LunAdd {
        target: String,
        entry: LunEntry,
    },
    LunRemove {
        target: String,
        lun: u16,
        force: bool,
    },
    LunModify {
        target: String,
        lun: u16,
        changes: LunChanges,
    },
    /// Grows the LUN's store to `size` bytes; the hosts get CAPACITY DATA HAS CHANGED.
    LunResize {
        target: String,
        lun: u16,
        size: u64,
    },
    /// Copies the LUN as it is now into the new backing file `to` while it keeps serving
    /// (`State::clone_lun`).
    LunClone {
        target: String,
        lun: u16,
        to: String,
    },
    /// Stops the copy being made of the LUN; its clone request fails and removes the file.
    LunCloneCancel {
        target: String,
        lun: u16,
    },
    /// ACL entries of one target or all.
    AclList {
        target: Option<String>,
    },
    /// ACL entry `index` (from 1) of `target`.
    AclShow {
        target: String,
        index: usize,
    },
    AclAdd {
        target: String,
        entry: AclToml,
    },
    /// Removes entry `index` (from 1), or every entry naming `initiator`.
    AclRemove {
        target: String,
        index: Option<usize>,
        initiator: Option<String>,
    },
    /// Replaces entry `index` (from 1).
    AclModify {
        target: String,
        index: usize,
        entry: AclToml,
    },
    /// CHAP credentials of every target and discovery.
    ChapList,
    /// One target's CHAP credentials (`discovery`: discovery's).
    ChapShow {
        target: String,
    },
    /// Sets credentials where none are; `ChapModify` replaces existing ones.
    ChapAdd {
        target: String,
        entry: ChapEntry,
    },
    ChapModify {
        target: String,
        entry: ChapEntry,
    },
    ChapRemove {
        target: String,
    },
    PortalList,
    /// Listens on `addr` too (an address as `IP:PORT`, IPv6 in brackets).
    PortalAdd {
        addr: String,
    },
    /// Stops listening on `addr`; with sessions on it only when forced (they end).
    PortalRemove {
        addr: String,
        force: bool,
    },
    SessionList,
    SessionEnd {
        id: u64,
    },
    /// The ALUA target port groups every target reports, and their states.
    AluaList,
    /// Puts ALUA target port group `group` in `state` (a name, `standby` ...) at once.
    AluaSet {
        group: u16,
        state: String,
    },
    /// With `--alua-failover`: hands this gateway's active role over to group `group`,
    /// for every LUN it is active for, or those of `target`, or LUN `lun` of `target`.
    AluaHandover {
        group: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lun: Option<u16>,
    },
    /// Make the running state match this configuration text.
    Apply {
        text: String,
        options: ApplyOptions,
    },
    Export,
}

/// The settings `admin lun modify` may change; `None` keeps a setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LunChanges {
    pub read_only: Option<bool>,
    pub bsopts: Option<String>,
    pub backing_store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_threshold: Option<String>,
    pub force: bool,
}

/// How far a long request is (a fully provisioned LUN's allocation): lines
/// `{"progress": {...}}` may come before a request's [`Reply`], as the work goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// What is being done.
    pub what: String,
    /// Bytes done so far.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
}

/// One line the daemon sends: a [`Progress`] report, or the [`Reply`] that ends the
/// request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Progress { progress: Progress },
    Reply(Reply),
}

/// The daemon's answer: `ok` with a table (header first) and the same data as JSON, or
/// an error of one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default)]
    pub table: Vec<Vec<String>>,
    #[serde(default)]
    pub data: Value,
    /// Plain text to print as is (`export`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl Reply {
    fn error(err: &anyhow::Error) -> Reply {
        Reply {
            ok: false,
            error: format!("{err:#}").replace('\n', " "),
            table: Vec::new(),
            data: Value::Null,
            text: String::new(),
        }
    }

    fn table(table: Vec<Vec<String>>, data: Value) -> Reply {
        Reply {
            ok: true,
            error: String::new(),
            table,
            data,
            text: String::new(),
        }
    }

    fn changes(changes: Vec<Change>) -> Reply {
        let mut table = vec![vec!["change".to_string()]];
        if changes.is_empty() {
            table.push(vec!["(nothing to change)".into()]);
        }
        table.extend(changes.iter().map(|c| vec![c.to_string()]));
        Reply::table(table, json!({ "changes": changes }))
    }
}

/// Creates the control socket at `path` (its directory made if missing), readable and
/// writable by the owner only.
pub fn bind(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    // A socket left by a daemon that died is in the way; a live daemon answers a connect.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "control socket {}: another glfs-iscsi is listening there",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot create control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket {}", path.display()))?;
    Ok(listener)
}

/// Answers requests on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_client(stream, state.clone()));
            }
            Err(err) => {
                tracing::warn!(%err, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_client(stream: UnixStream, state: Arc<State>) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request = match serde_json::from_str::<Request>(&line) {
            Ok(request) => request,
            Err(err) => {
                let reply = Reply::error(&anyhow::anyhow!("bad request: {err}"));
                if send(&mut writer, &Answer::Reply(reply)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let state = state.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Opening a store may block (glfs_init): keep it off the runtime's threads. What
        // it reports of its progress there comes here, and goes out as it comes.
        let mut job = tokio::task::spawn_blocking(move || {
            let sink = move |p: &backstore::progress::Progress| {
                let _ = tx.send(Progress {
                    what: p.what.clone(),
                    done: p.done,
                    total: p.total,
                });
            };
            backstore::progress::with_sink(sink, || handle(&state, request))
        });
        let reply = loop {
            tokio::select! {
                Some(progress) = rx.recv() => {
                    // A client gone mid-request: the request still finishes.
                    let _ = send(&mut writer, &Answer::Progress { progress }).await;
                }
                done = &mut job => {
                    break done.unwrap_or_else(|err| {
                        Reply::error(&anyhow::anyhow!("request failed: {err}"))
                    });
                }
            }
        };
        while let Ok(progress) = rx.try_recv() {
            let _ = send(&mut writer, &Answer::Progress { progress }).await;
        }
        if send(&mut writer, &Answer::Reply(reply)).await.is_err() {
            break;
        }
    }
}

/// Writes one line of `answer`.
async fn send(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    answer: &Answer,
) -> std::io::Result<()> {
    let mut text = serde_json::to_string(answer).expect("answers serialize");
    text.push('\n');
    writer.write_all(text.as_bytes()).await
}

/// Carries out one request.
pub fn handle(state: &State, request: Request) -> Reply {
    match run(state, request) {
        Ok(reply) => reply,
        Err(err) => Reply::error(&err),
    }
}

fn run(state: &State, request: Request) -> Result<Reply> {
    let forced = |force| ApplyOptions {
        dry_run: false,
        force,
    };
    Ok(match request {
        Request::TargetList => target_table(state, None)?,
        Request::TargetShow { name } => target_table(state, Some(&name))?,
        Request::TargetAdd {
            name,
            acl,
            allow_any_initiator,
        } => {
            check_iscsi_name(&name)?;
            for (i, entry) in acl.iter().enumerate() {
                entry.entry(&format!("target {name} ACL entry {}", i + 1))?;
            }
            Reply::changes(state.edit(forced(false), |config| {
                if config.targets.iter().any(|t| t.name == name) {
                    bail!("target {name}: already exists");
                }
                config.targets.push(TargetEntry {
                    name: name.clone(),
                    acl: acl.clone(),
                    allow_any_initiator,
                    ..Default::default()
                });
                Ok(())
            })?)
        }
        Request::TargetRemove { name, force } => {
            Reply::changes(state.edit(forced(force), |config| {
                let before = config.targets.len();
                config.targets.retain(|t| t.name != name);
                if config.targets.len() == before {
                    bail!("target {name}: no such target");
                }
                Ok(())
            })?)
        }
        Request::LunList { target } => lun_table(state, target.as_deref(), None)?,
        Request::LunShow { target, lun } => lun_table(state, Some(&target), Some(lun))?,
        Request::LunAdd { target, entry } => {
            check_lun(entry.lun).with_context(|| format!("target {target}"))?;
            Reply::changes(state.edit(forced(false), |config| {
                let t = find_target(config, &target)?;
                if t.luns.iter().any(|l| l.lun == entry.lun) {
                    bail!("lun {target}/{}: already exists", entry.lun);
                }
                t.luns.push(entry.clone());
                t.luns.sort_by_key(|l| l.lun);
                Ok(())
            })?)
        }
        Request::LunRemove { target, lun, force } => {
            Reply::changes(state.edit(forced(force), |config| {
                let t = find_target(config, &target)?;
                let before = t.luns.len();
                t.luns.retain(|l| l.lun != lun);
                if t.luns.len() == before {
                    bail!("lun {target}/{lun}: no such LUN");
                }
                Ok(())
            })?)
        }
        Request::LunModify {
            target,
            lun,
            changes,
        } => Reply::changes(state.edit(forced(changes.force), |config| {
            let t = find_target(config, &target)?;
            let Some(entry) = t.luns.iter_mut().find(|l| l.lun == lun) else {
                bail!("lun {target}/{lun}: no such LUN");
            };
            if let Some(read_only) = changes.read_only {
                entry.read_only = read_only;
            }
            if let Some(bsopts) = &changes.bsopts {
                entry.bsopts = bsopts.clone();
            }
            if let Some(backing_store) = &changes.backing_store {
                entry.backing_store = backing_store.clone();
            }
            if let Some(provisioning) = &changes.provisioning {
                // Thin is the default: written only when full (checked with the rest of
                // the configuration, naming the LUN).
                entry.provisioning = (provisioning != "thin").then(|| provisioning.clone());
            }
            if let Some(threshold) = &changes.soft_threshold {
                entry.soft_threshold = Some(threshold.clone());
            }
            Ok(())
        })?),
        Request::LunResize { target, lun, size } => {
            check_lun(lun).with_context(|| format!("target {target}"))?;
            Reply::changes(state.resize(&target, lun, size)?)
        }
        Request::LunClone { target, lun, to } => {
            check_lun(lun).with_context(|| format!("target {target}"))?;
            let cloned = state.clone_lun(&target, lun, &to)?;
            let c = &cloned.copied;
            let table = vec![
                ["clone", "size", "read", "written", "writes held", "took"]
                    .map(String::from)
                    .to_vec(),
                vec![
                    cloned.to.clone(),
                    units::format_human(c.bytes),
                    units::format_human(c.read),
                    units::format_human(c.written),
                    c.held.to_string(),
                    format!("{:.1} s", c.took.as_secs_f64()),
                ],
            ];
            let data = json!({
                "to": cloned.to,
                "bytes": c.bytes,
                "read": c.read,
                "written": c.written,
                "held": c.held,
                "took_secs": c.took.as_secs_f64(),
            });
            Reply::table(table, data)
        }
        Request::LunCloneCancel { target, lun } => {
            let to = state.cancel_clone(&target, lun)?;
            let table = vec![
                vec!["cancelled".to_string()],
                vec![format!("clone to {to}")],
            ];
            Reply::table(table, json!({ "cancelled": to }))
        }
        Request::AclList { target } => acl_table(state, target.as_deref(), None)?,
        Request::AclShow { target, index } => acl_table(state, Some(&target), Some(index))?,
        Request::AclAdd { target, entry } => {
            entry.entry(&format!("target {target} ACL entry"))?;
            Reply::changes(state.edit(forced(false), |config| {
                let t = find_target(config, &target)?;
                if t.acl.contains(&entry) {
                    bail!("target {target}: the same ACL entry exists already");
                }
                t.acl.push(entry.clone());
                Ok(())
            })?)
        }
        Request::AclRemove {
            target,
            index,
            initiator,
        } => Reply::changes(state.edit(forced(false), |config| {
            let t = find_target(config, &target)?;
            match (index, &initiator) {
                (Some(i), None) => {
                    acl_index(t, i)?;
                    t.acl.remove(i - 1);
                }
                (None, Some(name)) => {
                    let before = t.acl.len();
                    t.acl.retain(|e| {
                        !e.initiator
                            .as_deref()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    });
                    if t.acl.len() == before {
                        bail!("target {target}: no ACL entry names initiator {name}");
                    }
                }
                _ => bail!("target {target}: name the ACL entry by its index or its initiator"),
            }
            Ok(())
        })?),
        Request::AclModify {
            target,
            index,
            entry,
        } => {
            entry.entry(&format!("target {target} ACL entry {index}"))?;
            Reply::changes(state.edit(forced(false), |config| {
                let t = find_target(config, &target)?;
                acl_index(t, index)?;
                t.acl[index - 1] = entry.clone();
                Ok(())
            })?)
        }
        Request::ChapList => chap_table(state, None)?,
        Request::ChapShow { target } => chap_table(state, Some(&target))?,
        Request::ChapAdd { target, entry } => set_chap(state, &target, Some(entry), false)?,
        Request::ChapModify { target, entry } => set_chap(state, &target, Some(entry), true)?,
        Request::ChapRemove { target } => set_chap(state, &target, None, true)?,
        Request::PortalList => portal_table(state),
        Request::PortalAdd { addr } => {
            let addr = parse_portal(&addr)?;
            Reply::changes(state.edit(forced(false), |config| {
                if config.portals.contains(&addr) {
                    bail!("portal {addr}: already listening");
                }
                config.portals.push(addr);
                Ok(())
            })?)
        }
        Request::PortalRemove { addr, force } => {
            let addr = parse_portal(&addr)?;
            Reply::changes(state.edit(forced(force), |config| {
                if addr == state.targets().portal() {
                    bail!(
                        "portal {addr}: the main portal; move it with `portal = \"IP:PORT\"` \
                         in the config file (SIGHUP or admin apply)"
                    );
                }
                let before = config.portals.len();
                config.portals.retain(|p| *p != addr);
                if config.portals.len() == before {
                    bail!("portal {addr}: no such portal");
                }
                Ok(())
            })?)
        }
        Request::SessionList => {
            let views = session_views(state);
            let mut table = vec![[
                "id",
                "initiator",
                "target",
                "peer",
                "isid",
                "tsih",
                "luns",
                "in flight",
            ]
            .map(String::from)
            .to_vec()];
            for v in &views {
                table.push(vec![
                    v.id.to_string(),
                    v.initiator.clone(),
                    v.target.clone(),
                    v.peer.clone(),
                    v.isid.clone(),
                    v.tsih.to_string(),
                    join(&v.luns),
                    v.in_flight.to_string(),
                ]);
            }
            Reply::table(table, serde_json::to_value(&views)?)
        }
        Request::SessionEnd { id } => {
            if !state.targets().registry.end(id) {
                bail!("session {id}: no such session");
            }
            Reply::table(
                vec![vec!["ended".into()], vec![format!("session {id}")]],
                json!({ "ended": id }),
            )
        }
        Request::AluaList => alua_table(state)?,
        Request::AluaSet { group, state: name } => {
            let access = crate::gateways::parse_access_state(&name).map_err(anyhow::Error::msg)?;
            Reply::changes(state.set_alua_state(group, access)?)
        }
        Request::AluaHandover { group, target, lun } => {
            let luns = crate::failover::request_handover(
                state.targets().alua().as_ref(),
                group,
                target.as_deref(),
                lun,
            )?;
            let mut table = vec![vec!["change".into()]];
            for (target, lun) in &luns {
                table.push(vec![format!(
                    "handing LUN {lun} of {target} over to target port group {group}"
                )]);
            }
            let luns: Vec<Value> = luns
                .iter()
                .map(|(target, lun)| json!({ "target": target, "lun": lun }))
                .collect();
            Reply::table(table, json!({ "handover": group, "luns": luns }))
        }
        Request::Apply { text, options } => {
            let wanted = ConfigFile::parse(&text)?;
            Reply::changes(state.apply(wanted, options)?)
        }
        Request::Export => {
            // Secrets written in the config file stay there: export shows them redacted.
            let text = state.config().redacted().to_toml()?;
            Reply {
                text: text.clone(),
                ..Reply::table(Vec::new(), json!({ "config": text }))
            }
        }
    })
}

/// `admin alua list`: every group, this gateway's first, and its state now; with
/// `--alua-failover`, per LUN of each target (each LUN's states follow its own data
/// fence), with the group each LUN prefers (`failover::preferred`).
fn alua_table(state: &State) -> Result<Reply> {
    let Some(alua) = state.targets().alua() else {
        bail!("{}", scsi::BadAlua::Off);
    };
    if crate::failover::enabled() {
        let targets = state.targets();
        let mut table = vec![["target", "lun", "group", "state", "port", "preferred"]
            .map(String::from)
            .to_vec()];
        let mut data = Vec::new();
        for name in targets.names() {
            let Some(target) = targets.get(&name) else {
                continue;
            };
            for lun in target.luns() {
                let Some(alua) = target.scsi.lu_alua(lun) else {
                    continue;
                };
                let preferred = crate::failover::preferred_of(&alua, &name, lun);
                for (i, g) in alua.groups().enumerate() {
                    let port = if i == 0 {
                        "this gateway"
                    } else {
                        "another gateway"
                    };
                    let is_preferred = g.id == preferred;
                    table.push(vec![
                        name.clone(),
                        lun.to_string(),
                        g.id.to_string(),
                        g.state.to_string(),
                        port.into(),
                        if is_preferred { "yes" } else { "" }.into(),
                    ]);
                    data.push(json!({
                        "target": name, "lun": lun, "group": g.id, "state": g.state.name(),
                        "own": i == 0, "preferred": is_preferred,
                    }));
                }
            }
        }
        return Ok(Reply::table(table, Value::Array(data)));
    }
    let mut table = vec![["group", "state", "port"].map(String::from).to_vec()];
    let mut data = Vec::new();
    for (i, g) in alua.groups().enumerate() {
        let port = if i == 0 {
            "this gateway"
        } else {
            "another gateway"
        };
        table.push(vec![g.id.to_string(), g.state.to_string(), port.into()]);
        data.push(json!({ "group": g.id, "state": g.state.name(), "own": i == 0 }));
    }
    Ok(Reply::table(table, Value::Array(data)))
}

/// A portal address given to `admin portal`; the error names it.
fn parse_portal(text: &str) -> Result<std::net::SocketAddr> {
    let addr: std::net::SocketAddr = text.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "portal {text:?}: not an address (IP:PORT, an IPv6 address in brackets: [::1]:3260)"
        )
    })?;
    crate::config::check_portal(addr)?;
    Ok(addr)
}

/// Every portal with the sessions that came through it.
fn portal_table(state: &State) -> Reply {
    let targets = state.targets();
    let main = targets.portal();
    let mut listing = Listing::new(&["portal", "kind", "sessions"]);
    for portal in targets.portals() {
        let kind = if portal == main { "main" } else { "added" };
        let sessions = targets.registry.on_portal(portal).len();
        listing.push(
            vec![portal.to_string(), kind.into(), sessions.to_string()],
            json!({ "portal": portal.to_string(), "kind": kind, "sessions": sessions }),
        );
    }
    Reply::table(listing.table, Value::Array(listing.data))
}

/// Checks that ACL entry `index` (from 1) exists.
fn acl_index(t: &TargetEntry, index: usize) -> Result<()> {
    if index == 0 || index > t.acl.len() {
        bail!(
            "target {}: no ACL entry {index} (it has {})",
            t.name,
            t.acl.len()
        );
    }
    Ok(())
}

/// The name CHAP verbs give discovery's credentials instead of a target's.
pub const DISCOVERY: &str = "discovery";

/// Adds (`replace` false: none may be set), replaces or (`entry` None) removes the CHAP
/// credentials of `target` or of discovery.
fn set_chap(state: &State, target: &str, entry: Option<ChapEntry>, replace: bool) -> Result<Reply> {
    let what = if target == DISCOVERY {
        "[discovery_chap]".to_string()
    } else {
        format!("target {target} [target.chap]")
    };
    if let Some(entry) = &entry {
        // Read and check the secret before the change, naming the entry.
        entry.credentials(&what)?;
    }
    let changes = state.edit(forced_none(), |config| {
        let slot = if target == DISCOVERY {
            &mut config.discovery_chap
        } else {
            &mut find_target(config, target)?.chap
        };
        match (&slot, &entry, replace) {
            (Some(_), Some(_), false) => {
                bail!("{what}: CHAP credentials are set already (use chap modify)")
            }
            (None, _, true) => bail!("{what}: no CHAP credentials are set"),
            _ => {}
        }
        *slot = entry.clone();
        Ok(())
    })?;
    Ok(Reply::changes(changes))
}

fn forced_none() -> ApplyOptions {
    ApplyOptions::default()
}

/// Where a secret comes from, as `chap list` shows it: never the secret itself.
fn secret_source(inline: bool, env: &Option<String>, file: &Option<std::path::PathBuf>) -> String {
    match (inline, env, file) {
        (true, _, _) => "set".into(),
        (_, Some(var), _) => format!("env {var}"),
        (_, _, Some(path)) => format!("file {}", path.display()),
        _ => "-".into(),
    }
}

fn chap_row(name: &str, c: &ChapEntry) -> (Vec<String>, Value) {
    let secret = secret_source(c.secret.is_some(), &c.secret_env, &c.secret_file);
    let mutual = c.mutual_user.as_ref().map(|_| {
        secret_source(
            c.mutual_secret.is_some(),
            &c.mutual_secret_env,
            &c.mutual_secret_file,
        )
    });
    let row = vec![
        name.to_string(),
        c.user.clone(),
        secret.clone(),
        c.mutual_user.clone().unwrap_or_else(|| "-".into()),
        mutual.clone().unwrap_or_else(|| "-".into()),
    ];
    let data = json!({
        "target": name,
        "user": c.user,
        "secret": secret,
        "mutual_user": c.mutual_user,
        "mutual_secret": mutual,
    });
    (row, data)
}

fn chap_table(state: &State, only: Option<&str>) -> Result<Reply> {
    let config = state.config();
    let mut table = vec![["target", "user", "secret", "mutual user", "mutual secret"]
        .map(String::from)
        .to_vec()];
    let mut data = Vec::new();
    let mut found = false;
    let mut add = |name: &str, chap: Option<&ChapEntry>| {
        if only.is_some_and(|o| o != name) {
            return;
        }
        found = true;
        if let Some(c) = chap {
            let (row, value) = chap_row(name, c);
            table.push(row);
            data.push(value);
        }
    };
    add(DISCOVERY, config.discovery_chap.as_ref());
    for t in &config.targets {
        add(&t.name, t.chap.as_ref());
    }
    if let Some(name) = only {
        if !found {
            bail!("target {name}: no such target");
        }
        return Ok(Reply::table(table, data.pop().unwrap_or(Value::Null)));
    }
    Ok(Reply::table(table, Value::Array(data)))
}

/// A listing being built: the table's header and rows, and the same rows as JSON.
struct Listing {
    table: Vec<Vec<String>>,
    data: Vec<Value>,
}

impl Listing {
    fn new(header: &[&str]) -> Listing {
        Listing {
            table: vec![header.iter().map(|h| h.to_string()).collect()],
            data: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>, value: Value) {
        self.table.push(row);
        self.data.push(value);
    }

    /// The reply: every row for a `list`; for a `show` (`missing` is what to say when
    /// there is no row) the one row, its JSON an object rather than an array.
    fn reply(mut self, missing: Option<String>) -> Result<Reply> {
        let Some(missing) = missing else {
            return Ok(Reply::table(self.table, Value::Array(self.data)));
        };
        if self.data.is_empty() {
            bail!("{missing}");
        }
        let one = self.data.remove(0);
        Ok(Reply::table(self.table, one))
    }
}

/// The configured targets `target` selects (all for `None`); fails, naming it, when
/// `target` is given and not configured.
fn selected<'a>(
    config: &'a ConfigFile,
    target: Option<&'a str>,
) -> Result<impl Iterator<Item = &'a TargetEntry>> {
    if let Some(name) = target {
        if !config.targets.iter().any(|t| t.name == name) {
            bail!("target {name}: no such target");
        }
    }
    Ok(config
        .targets
        .iter()
        .filter(move |t| target.is_none_or(|name| name == t.name)))
}
fn acl_table(state: &State, target: Option<&str>, only: Option<usize>) -> Result<Reply> {
    let config = state.config();
    let header = [
        "target",
        "entry",
        "initiator",
        "networks",
        "chap user",
        "secret",
    ];
    let mut listing = Listing::new(&header);
    for t in selected(&config, target)? {
        for (i, e) in t.acl.iter().enumerate() {
            if only.is_some_and(|n| n != i + 1) {
                continue;
            }
            let secret = e
                .chap
                .as_ref()
                .map(|c| secret_source(c.secret.is_some(), &c.secret_env, &c.secret_file));
            let row = vec![
                t.name.clone(),
                (i + 1).to_string(),
                e.initiator.clone().unwrap_or_else(|| "*".into()),
                if e.networks.is_empty() {
                    "*".into()
                } else {
                    e.networks.join(",")
                },
                e.chap.as_ref().map_or("-".into(), |c| c.user.clone()),
                secret.clone().unwrap_or_else(|| "-".into()),
            ];
            let value = json!({
                "target": t.name,
                "entry": i + 1,
                "initiator": e.initiator,
                "networks": e.networks,
                "chap_user": e.chap.as_ref().map(|c| c.user.clone()),
                "chap_secret": secret,
            });
            listing.push(row, value);
        }
    }
    let missing = match (target, only) {
        (Some(target), Some(index)) => Some(format!("target {target}: no ACL entry {index}")),
        _ => None,
    };
    listing.reply(missing)
}

fn find_target<'a>(config: &'a mut ConfigFile, name: &str) -> Result<&'a mut TargetEntry> {
    config
        .targets
        .iter_mut()
        .find(|t| t.name == name)
        .with_context(|| format!("target {name}: no such target"))
}

fn join(luns: &[u16]) -> String {
    let text: Vec<String> = luns.iter().map(u16::to_string).collect();
    if text.is_empty() {
        "-".into()
    } else {
        text.join(",")
    }
}

fn session_views(state: &State) -> Vec<SessionView> {
    state
        .targets()
        .registry
        .list()
        .iter()
        .map(|entry| {
            let luns = state
                .targets()
                .get(&entry.target)
                .map(|t| t.luns())
                .unwrap_or_default();
            Registry::view(entry, luns)
        })
        .collect()
}

fn target_table(state: &State, only: Option<&str>) -> Result<Reply> {
    let config = state.config();
    let sessions = state.targets().registry.list();
    let mut listing = Listing::new(&["target", "luns", "sessions"]);
    for t in selected(&config, only)? {
        let luns: Vec<u16> = t.luns.iter().map(|l| l.lun).collect();
        let count = sessions.iter().filter(|s| s.target == t.name).count();
        listing.push(
            vec![t.name.clone(), join(&luns), count.to_string()],
            json!({ "name": t.name, "luns": luns, "sessions": count }),
        );
    }
    listing.reply(only.map(|name| format!("target {name}: no such target")))
}

fn lun_table(state: &State, target: Option<&str>, only: Option<u16>) -> Result<Reply> {
    let config = state.config();
    let header = [
        "target",
        "lun",
        "bstype",
        "backing store",
        "size",
        "block size",
        "read only",
        "provisioning",
        "soft threshold",
        "allocated",
        "free on storage",
        "write cache",
        "clone",
    ];
    let mut listing = Listing::new(&header);
    for t in selected(&config, target)? {
        let live = state.targets().get(&t.name);
        for l in &t.luns {
            if only.is_some_and(|n| n != l.lun) {
                continue;
            }
            let geometry = live
                .as_ref()
                .and_then(|t| t.store(u64::from(l.lun)))
                .map(|s| s.geometry());
            let bytes = geometry.map(|g| g.size_bytes());
            // As the last sample of its storage found it (`crate::space`, every 15 s).
            let (allocated, available) = live
                .as_ref()
                .and_then(|t| t.scsi.space(l.lun))
                .unwrap_or((None, None));
            let shown = |b: Option<u64>| b.map_or("-".into(), units::format_human);
            // A fully provisioned LUN never runs short: it has none. Reached: its storage
            // has no more free than the threshold (the hosts were told).
            let threshold_now = live.as_ref().and_then(|t| t.scsi.soft_threshold(l.lun));
            let reached = threshold_now.map(|(_, reached)| reached);
            let configured = l
                .soft_threshold
                .clone()
                .unwrap_or_else(|| crate::space::SoftThreshold::default().to_string());
            let soft_threshold = match (l.provisioning.as_deref(), reached) {
                (Some("full"), _) => "-".to_string(),
                (_, Some(true)) => format!("{configured} (reached)"),
                _ => configured.clone(),
            };
            let block_size = geometry.map(|g| g.block_size);
            // As the hosts set it (MODE SELECT): off, every write is durable before its
            // status, which costs a flush per write.
            let write_cache = live.as_ref().and_then(|t| t.scsi.write_cache(l.lun));
            // A copy `lun clone` is making of it.
            let clone = state.clone_progress(&t.name, l.lun);
            let clone_shown = clone.as_ref().map_or("-".into(), |(to, done, total)| {
                format!("to {to}: {}%", done * 100 / (*total).max(1))
            });
            let row = vec![
                t.name.clone(),
                l.lun.to_string(),
                l.bstype.clone(),
                l.backing_store.clone(),
                bytes.map_or("-".into(), units::format_size),
                block_size.map_or("-".into(), |b| b.to_string()),
                if l.read_only { "yes" } else { "no" }.into(),
                l.provisioning.clone().unwrap_or_else(|| "thin".into()),
                soft_threshold.clone(),
                shown(allocated),
                shown(available),
                write_cache
                    .map_or("-", |on| if on { "on" } else { "off" })
                    .into(),
                clone_shown,
            ];
            let value = json!({
                "target": t.name,
                "lun": l.lun,
                "bstype": l.bstype,
                "backing_store": l.backing_store,
                "bsopts": l.bsopts,
                "size_bytes": bytes,
                "block_size": block_size,
                "read_only": l.read_only,
                "provisioning": l.provisioning.as_deref().unwrap_or("thin"),
                "soft_threshold": configured,
                "soft_threshold_bytes": threshold_now.map(|(bytes, _)| bytes),
                "soft_threshold_reached": reached,
                "allocated_bytes": allocated,
                "storage_available_bytes": available,
                "write_cache": write_cache,
                "clone": clone.map(|(to, done, total)| json!({
                    "to": to, "done_bytes": done, "total_bytes": total,
                })),
            });
            listing.push(row, value);
        }
    }
    let missing = match (target, only) {
        (Some(target), Some(lun)) => Some(format!("lun {target}/{lun}: no such LUN")),
        _ => None,
    };
    listing.reply(missing)
}
