//! The one owner of the running state.
//!
//! The command line, the config file (at start and on SIGHUP) and the control socket all
//! change what is served the same way: they describe the whole configuration they want (a
//! [`ConfigFile`]) and [`State::apply`] makes the running targets match it, then writes it
//! back to the config file atomically. A change touches only the targets it names: a
//! changed target is rebuilt over the stores it keeps and swapped in, and its sessions move
//! to it at their next command; other targets' sessions see nothing.

use crate::config::ConfigFile;
use crate::targets::{LunSpec, Target, Targets};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use store_api::BlockStore;

/// One change [`State::apply`] made (or would make, on a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `add`, `remove` or `modify`.
    pub action: String,
    /// `target NAME`, `lun NAME/N`, or a setting's name.
    pub object: String,
    /// What about it changed, for `modify`; a note otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.action.as_str() {
            "add" => '+',
            "remove" => '-',
            _ => '~',
        };
        write!(f, "{sign} {}", self.object)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// How to apply a configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOptions {
    /// Only report what would change.
    #[serde(default)]
    pub dry_run: bool,
    /// Remove targets and LUNs even when sessions use them (their sessions end).
    #[serde(default)]
    pub force: bool,
}

/// The main portal as configured, for a daemon that moves it live.
struct MainPortal {
    /// `--portal`: where the main portal is when the configuration names none.
    cli: SocketAddr,
    /// The address it listens on, as configured (port 0 where it was started so; the
    /// port it got is [`Targets::portal`]'s).
    served: SocketAddr,
}

/// The running configuration and the targets serving it.
pub struct State {
    targets: Arc<Targets>,
    /// The configuration served now. Held across a whole change, so changes never
    /// interleave.
    config: Mutex<ConfigFile>,
    /// Where changes are written back; `None` when started from command-line options.
    path: Option<PathBuf>,
    /// `--gfapi-library`, for LUNs whose file names none.
    gfapi_library: Option<PathBuf>,
    /// The command line's access settings, applied beside every configuration's.
    cli_access: crate::auth::CliAccess,
    /// The listeners of the added portals; `None` where nothing listens (then the
    /// configuration's `portals` cannot change).
    portals: Option<Arc<crate::portals::Portals>>,
    /// The main portal, where it moves live (a running daemon): see [`MainPortal`].
    main_portal: Option<Mutex<MainPortal>>,
    /// The command line's server limits, under the configuration's settings; `None`:
    /// the settings are not applied live (tests of the state alone).
    base_server: Option<crate::Server>,
    /// The ALUA groups come from the command line (`--alua-group`): the file's `alua_*`
    /// keys are then not in effect, and a state changes live only by
    /// [`State::set_alua_state`], until the next start.
    cli_alua: bool,
    /// The LUNs (target, LUN) being copied by [`State::clone_lun`]: a change to one of
    /// them (its store, size, removal) is refused until the copy is done.
    clones: Mutex<HashMap<(String, u16), Option<Copying>>>,
}

/// A copy [`State::clone_lun`] is making: where to, and the snapshot doing it.
#[derive(Clone)]
struct Copying {
    to: String,
    snapshot: Arc<backstore::snapshot::Snapshot>,
}

/// What [`State::clone_lun`] made.
#[derive(Debug, Clone)]
pub struct Cloned {
    /// The new backing store (as a LUN of the same type names it).
    pub to: String,
    pub copied: backstore::snapshot::Copied,
}

/// A LUN in [`State::clones`] for as long as this lives.
struct CloneBusy<'a> {
    state: &'a State,
    key: (String, u16),
}

impl Drop for CloneBusy<'_> {
    fn drop(&mut self) {
        let mut clones = self.state.clones.lock().unwrap_or_else(|e| e.into_inner());
        clones.remove(&self.key);
    }
}

impl State {
    /// A state serving nothing yet, over `targets` (which should be empty).
    pub fn new(
        targets: Arc<Targets>,
        path: Option<PathBuf>,
        gfapi_library: Option<PathBuf>,
    ) -> State {
        State {
            targets,
            config: Mutex::new(ConfigFile::default()),
            path,
            gfapi_library,
            cli_access: Default::default(),
            portals: None,
            main_portal: None,
            base_server: None,
            cli_alua: false,
            clones: Mutex::new(HashMap::new()),
        }
    }

    /// The ALUA groups are the command line's (`--alua-group`), not the file's.
    pub fn with_cli_alua(mut self, cli_alua: bool) -> State {
        self.cli_alua = cli_alua;
        self
    }

    /// Puts ALUA target port group `group` in `state` on every target, at once: hosts get
    /// ASYMMETRIC ACCESS STATE CHANGED and REPORT TARGET PORT GROUPS shows the new state.
    /// Where the groups come from the config file the change is written there (`alua_state`
    /// or the group's `alua_peer` entry) and applied as any change of the file is; where
    /// they come from the command line it holds until the next start.
    pub fn set_alua_state(&self, group: u16, state: scsi::AccessState) -> Result<Vec<Change>> {
        if crate::failover::enabled() {
            anyhow::bail!(
                "the ALUA states follow the data fence (alua failover): the gateway holding \
                 it is active/optimized; stop the active gateway to move it"
            );
        }
        if self.cli_alua || self.config().alua_group.is_none() {
            let changed = self.targets.set_alua_state(group, state)?;
            let what = if changed {
                "applied; until the next start (--alua-group)"
            } else {
                "unchanged"
            };
            return Ok(vec![change(
                "modify",
                format!("alua group {group}: {state}"),
                what,
            )]);
        }
        self.edit(ApplyOptions::default(), |config| {
            let Some(own) = config.alua_group else {
                return Err(scsi::BadAlua::Off.into());
            };
            if own == u64::from(group) {
                config.alua_state = Some(state.name().into());
                return Ok(());
            }
            for peer in &mut config.alua_peer {
                let parsed = crate::gateways::parse_port_group(peer).map_err(anyhow::Error::msg)?;
                if parsed.id == group {
                    *peer = format!("{group}:{state}");
                    return Ok(());
                }
            }
            Err(scsi::BadAlua::UnknownGroup(group).into())
        })
    }

    /// Applies the configuration's session and login settings over `base` (the command
    /// line's) to the next logins, at start and at every change.
    pub fn with_settings(mut self, base: crate::Server) -> State {
        self.base_server = Some(base);
        self
    }

    /// Listens on the configuration's added portals through `portals`.
    pub fn with_portals(mut self, portals: Arc<crate::portals::Portals>) -> State {
        self.portals = Some(portals);
        self
    }

    /// Moves the main portal live when the configuration's `portal` changes: `cli` is
    /// `--portal` (the main portal of a configuration without `portal`), `served` the
    /// address it was started on. Needs [`State::with_portals`], which listens on it.
    pub fn with_main_portal(mut self, cli: SocketAddr, served: SocketAddr) -> State {
        self.main_portal = Some(Mutex::new(MainPortal { cli, served }));
        self
    }

    /// Serves every configuration with the command line's access settings too.
    pub fn with_cli_access(mut self, access: crate::auth::CliAccess) -> State {
        self.cli_access = access;
        self
    }

    pub fn targets(&self) -> &Arc<Targets> {
        &self.targets
    }

    /// The config file changes are written to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The configuration served now.
    pub fn config(&self) -> ConfigFile {
        self.config.lock().expect("state lock").clone()
    }

    /// Makes the running targets match `wanted`, and writes it to the config file. Nothing
    /// changes when it fails: every check and every store open happens before the first
    /// target is swapped.
    pub fn apply(&self, wanted: ConfigFile, options: ApplyOptions) -> Result<Vec<Change>> {
        let mut current = self.config.lock().expect("state lock");
        let changes = self.apply_locked(&mut current, wanted, options, true)?;
        Ok(changes)
    }

    /// Edits the running configuration with `edit` and applies the result (the way every
    /// `admin` verb changes things).
    pub fn edit(
        &self,
        options: ApplyOptions,
        edit: impl FnOnce(&mut ConfigFile) -> Result<()>,
    ) -> Result<Vec<Change>> {
        let mut current = self.config.lock().expect("state lock");
        let mut wanted = current.clone();
        edit(&mut wanted)?;
        self.apply_locked(&mut current, wanted, options, true)
    }

    /// Applies `wanted` at start-up: like [`State::apply`] but without writing the file it
    /// came from.
    pub fn start(&self, wanted: ConfigFile) -> Result<Vec<Change>> {
        let mut current = self.config.lock().expect("state lock");
        self.apply_locked(&mut current, wanted, ApplyOptions::default(), false)
    }

    /// Rereads the config file (SIGHUP) and applies it.
    pub fn reload(&self) -> Result<Vec<Change>> {
        let Some(path) = &self.path else {
            bail!("no --config file to reread");
        };
        let wanted = ConfigFile::load(path)?;
        let mut current = self.config.lock().expect("state lock");
        self.apply_locked(&mut current, wanted, ApplyOptions::default(), false)
    }

    fn apply_locked(
        &self,
        current: &mut ConfigFile,
        wanted: ConfigFile,
        options: ApplyOptions,
        save: bool,
    ) -> Result<Vec<Change>> {
        let mut wanted = wanted;
        // A file from `admin export` names no secret: keep those set now.
        wanted.unredact(current)?;
        let specs = wanted.target_specs(self.gfapi_library.as_ref())?;
        // ACLs and CHAP: checked whole (secrets read, open targets refused on a public
        // portal) before anything changes; they apply to the next logins.
        let main_move = self.main_portal_move(&wanted)?;
        if let Some(to) = main_move.filter(|to| current.portals.contains(to)) {
            bail!(
                "portal {to}: listening as an added portal; remove it from `portals` first, \
                 then make it the main portal"
            );
        }
        let main_portal = main_move.unwrap_or(self.targets.portal());
        let exposed = crate::config::exposed_portal(main_portal, &wanted.portals);
        let policy = self.cli_access.policy(&wanted, &specs, exposed)?;
        policy.validate().context("access control")?;
        // Each LUN's preferred group (alua failover): checked against the groups now.
        let preferences = crate::failover::preferences(&wanted, self.targets.alua().as_ref())?;
        let old = luns_by_target(current);
        let new = luns_by_target(&wanted);
        // ALUA states change live where the file's groups are the ones in effect (not the
        // command line's) and stay the same groups; other ALUA changes wait for a start.
        let (_, file_alua) = wanted.gateway()?;
        let live_alua = match file_alua {
            Some(alua)
                if !self.cli_alua
                    && !crate::failover::enabled()
                    && current.alua_group.is_some()
                    && current.alua_group == wanted.alua_group =>
            {
                Some(alua)
            }
            _ => None,
        };
        let mut changes = settings_changes(
            current,
            &wanted,
            live_alua.is_some(),
            self.main_portal.is_some(),
        );
        let old_main = self.targets.portal();
        if let Some(to) = main_move {
            changes.push(change(
                "modify",
                "portal".into(),
                &format!(
                    "applied: listening on {to} instead of {old_main}; sessions that came \
                     through {old_main} {}",
                    if options.force { "end" } else { "keep running" }
                ),
            ));
        }
        let server = self
            .base_server
            .clone()
            .map(|base| crate::cli::with_file_settings(base, &wanted))
            .transpose()?;
        // The login keys: the file's over the defaults, with the digests required.
        let limits = server
            .as_ref()
            .map(|server| {
                wanted.iscsi_limits(iscsi::Limits {
                    require_digests: server.require_digests,
                    ..iscsi::Limits::default()
                })
            })
            .transpose()?;
        let (portals_added, portals_removed) = portal_changes(current, &wanted, main_portal)?;
        changes.extend(
            portals_added
                .iter()
                .map(|p| change("add", format!("portal {p}"), "")),
        );
        changes.extend(
            portals_removed
                .iter()
                .map(|p| change("remove", format!("portal {p}"), "")),
        );
        changes.extend(access_changes(current, &wanted));
        // Targets to rebuild (with their wanted LUNs) and to remove; LUNs to grow.
        let mut rebuild = Vec::new();
        let mut grow: Vec<(String, u16, u64)> = Vec::new();
        let mut remove = Vec::new();
        let mut removed_luns: Vec<(String, u16)> = Vec::new();
        for name in old.keys() {
            if !new.contains_key(name) {
                changes.push(change("remove", format!("target {name}"), ""));
                remove.push(name.clone());
            }
        }
        for spec in &specs {
            let name = &spec.name;
            let old_luns = old.get(name);
            let mut changed = old_luns.is_none();
            if old_luns.is_none() {
                changes.push(change("add", format!("target {name}"), ""));
            }
            let empty = BTreeMap::new();
            let old_luns = old_luns.unwrap_or(&empty);
            let new_luns = &new[name];
            for (lun, entry) in new_luns {
                match old_luns.get(lun) {
                    None => {
                        changes.push(change("add", format!("lun {name}/{lun}"), ""));
                        changed = true;
                    }
                    Some(old_entry) if old_entry != entry => {
                        let detail = lun_difference(old_entry, entry);
                        changes.push(change("modify", format!("lun {name}/{lun}"), &detail));
                        let only_size = crate::config::LunEntry {
                            size: entry.size.clone(),
                            ..old_entry.clone()
                        } == *entry;
                        // A larger size grows the store in place; nothing else changes.
                        if let Some(bytes) = self.growth(name, *lun, entry)? {
                            grow.push((name.clone(), *lun, bytes));
                        }
                        changed |= !only_size;
                    }
                    Some(_) => {}
                }
            }
            for lun in old_luns.keys() {
                if !new_luns.contains_key(lun) {
                    changes.push(change("remove", format!("lun {name}/{lun}"), ""));
                    removed_luns.push((name.clone(), *lun));
                    changed = true;
                }
            }
            if changed {
                rebuild.push(spec);
            }
        }
        // A LUN being copied keeps its store and size until the copy is done (forced too:
        // the copy would no longer be of what the LUN serves).
        {
            let clones = self.clones.lock().unwrap_or_else(|e| e.into_inner());
            for (target, lun) in clones.keys() {
                let lun_changed = changes.iter().any(|c| {
                    c.object == format!("lun {target}/{lun}")
                        || (c.action == "remove" && c.object == format!("target {target}"))
                });
                if lun_changed {
                    bail!(
                        "lun {target}/{lun}: it is being cloned (admin lun clone); change it \
                         once the copy is done"
                    );
                }
            }
        }
        // Refuse to pull LUNs or portals from under sessions unless forced.
        if !options.force {
            for change in &changes {
                if change.action != "remove" {
                    continue;
                }
                let registry = &self.targets.registry;
                let (sessions, what) = match change.object.split_once(' ') {
                    Some(("target", name)) => (registry.on_target(name), "their commands"),
                    Some(("lun", object)) => {
                        let name = object.rsplit_once('/').map_or(object, |(t, _)| t);
                        (registry.on_target(name), "their commands")
                    }
                    Some(("portal", addr)) => match addr.parse() {
                        Ok(portal) => (registry.on_portal(portal), "them"),
                        Err(_) => continue,
                    },
                    _ => continue,
                };
                if !sessions.is_empty() {
                    bail!(
                        "{}: in use by {} session(s); add --force to remove it and end {what}",
                        change.object,
                        sessions.len()
                    );
                }
            }
        }
        if options.dry_run {
            return Ok(changes);
        }
        // Listen on the added portals before anything changes: an address in use fails
        // the whole change (the sockets close again when it fails later).
        let listeners = match (
            &self.portals,
            portals_added.is_empty() && portals_removed.is_empty() && main_move.is_none(),
        ) {
            (_, true) => None,
            (Some(listeners), false) => Some(listeners),
            (None, false) => bail!("portals: they can only change on a running daemon"),
        };
        let bound = portals_added
            .iter()
            .map(|&addr| crate::portals::Portals::bind(addr))
            .collect::<Result<Vec<_>>>()?;
        // The main portal's new address likewise (`portal`, moved).
        let bound_main = main_move.map(crate::portals::Portals::bind).transpose()?;
        // Grow stores first: a target rebuilt below is built at the new size.
        for (name, lun, bytes) in &grow {
            let store = self
                .targets
                .get(name)
                .and_then(|t| t.store(u64::from(*lun)).cloned())
                .with_context(|| format!("lun {name}/{lun}: not served"))?;
            store
                .resize(*bytes)
                .map_err(|e| anyhow::anyhow!("lun {name}/{lun}: cannot grow the store: {e}"))?;
        }
        // Open every store a rebuilt target needs before anything is swapped.
        let mut built = Vec::new();
        for spec in rebuild {
            let old_luns = old.get(&spec.name);
            let current_target = self.targets.get(&spec.name);
            let mut luns: Vec<(LunSpec, Arc<dyn BlockStore>)> = Vec::new();
            // LUNs served before keep their logical unit's state (reservations, mode
            // parameters, unit attentions), whatever else changed: a new store or new
            // settings go in under the same logical unit.
            let mut kept = std::collections::HashSet::new();
            for lun in &spec.luns {
                if old_luns.is_some_and(|l| l.contains_key(&lun.lun)) {
                    kept.insert(lun.lun);
                }
                // The open store itself is reused when only export settings changed.
                let reused = match (old_luns.and_then(|l| l.get(&lun.lun)), &current_target) {
                    (Some(old_entry), Some(target))
                        if same_store(old_entry, &new[&spec.name][&lun.lun]) =>
                    {
                        target.store(u64::from(lun.lun)).cloned()
                    }
                    _ => None,
                };
                let store = match reused {
                    Some(store) => store,
                    None => crate::logging::lun_span(&spec.name, lun.lun)
                        .in_scope(|| crate::gateways::open_lun_store(&lun.store))
                        .with_context(|| {
                            format!(
                                "target {} LUN {}: cannot open backing store",
                                spec.name, lun.lun
                            )
                        })?,
                };
                luns.push((lun.clone(), store));
            }
            built.push(match &current_target {
                Some(previous) => Target::rebuild(previous, luns, &kept)?,
                None => Target::build(spec.name.clone(), luns)?,
            });
        }
        if save {
            if let Some(path) = &self.path {
                save_atomically(path, &wanted)?;
            }
        }
        // Swap: from here on nothing fails. A removed target goes before its access rules,
        // an added one comes after them, so neither is ever served without its rules.
        for name in &remove {
            self.targets.replace(name, None);
            for session in self.targets.registry.on_target(name) {
                self.targets.registry.end(session.id);
            }
        }
        self.targets
            .replace_access(policy)
            .context("access control")?;
        for target in built {
            let name = target.name.clone();
            self.targets.replace(&name, Some(target));
        }
        if let Some(alua) = live_alua {
            self.targets.set_alua(alua);
        }
        crate::failover::set_preferences(preferences);
        // Session and login settings: the next logins get them, sessions keep theirs.
        if let Some(server) = &server {
            self.targets.set_connection_limits(server.connection);
        }
        if let Some(limits) = limits {
            self.targets.set_limits(limits);
        }
        // Portals: new ones accept from now on; removed ones refuse new connections, then
        // the sessions that came through them end.
        if let Some(listeners) = listeners {
            if let Some(bound) = bound_main {
                // The new address first, so that the targets are never unreachable; then
                // the old one stops (its sessions keep running unless forced).
                let new_main = main_move.expect("bound only for a move");
                match listeners.start(bound) {
                    Ok(()) => {
                        self.targets.set_portal(new_main);
                        if let Err(err) = listeners.stop(old_main) {
                            tracing::warn!("{err:#}");
                        }
                        if options.force {
                            self.end_sessions_through(old_main);
                        }
                        if let Some(main) = &self.main_portal {
                            main.lock().expect("state lock").served = new_main;
                        }
                    }
                    Err(err) => tracing::error!("{err:#}"),
                }
            }
            for bound in bound {
                if let Err(err) = listeners.start(bound) {
                    tracing::error!("{err:#}");
                }
            }
            for &portal in &portals_removed {
                if let Err(err) = listeners.stop(portal) {
                    tracing::warn!("{err:#}");
                }
                self.end_sessions_through(portal);
            }
            self.targets.set_added_portals(wanted.portals.clone());
        }
        // The hosts learn of a new capacity from CAPACITY DATA HAS CHANGED.
        for (name, lun, _) in &grow {
            if let Some(t) = self.targets.get(name) {
                if let Some(store) = t.store(u64::from(*lun)) {
                    t.scsi.set_capacity(*lun, store.geometry().num_blocks);
                }
            }
        }
        // What left the configuration leaves the metrics too.
        if let Some(m) = crate::metrics::global() {
            for (name, lun) in &removed_luns {
                m.remove_lun(name, u64::from(*lun));
            }
            for name in &remove {
                m.remove_target(name);
            }
        }
        for change in &changes {
            tracing::info!(change = %change, "configuration changed");
        }
        *current = wanted;
        Ok(changes)
    }
}

impl State {
    /// Where the main portal moves to when `wanted` is applied: `None` where it stays (or
    /// cannot move: no running daemon, when the change is reported as taking effect at
    /// the next start).
    fn main_portal_move(&self, wanted: &ConfigFile) -> Result<Option<SocketAddr>> {
        let Some(main) = &self.main_portal else {
            return Ok(None);
        };
        let main = main.lock().expect("state lock");
        let to = wanted.portal.unwrap_or(main.cli);
        // Where it was started on port 0, naming the port it got is no move.
        if to == main.served || to == self.targets.portal() {
            return Ok(None);
        }
        crate::config::check_portal(to)?;
        Ok(Some(to))
    }

    /// Ends the sessions that came through `portal` and returns once they are gone (or
    /// after [`SESSIONS_END_WITHIN`]), so that the caller sees the portal unused.
    fn end_sessions_through(&self, portal: SocketAddr) {
        let ended: Vec<u64> = self
            .targets
            .registry
            .on_portal(portal)
            .iter()
            .map(|s| s.id)
            .collect();
        for &id in &ended {
            self.targets.registry.end(id);
        }
        if !self.targets.registry.wait_gone(&ended, SESSIONS_END_WITHIN) {
            tracing::warn!(portal = %portal, "sessions told to end are still open");
        }
    }

    /// The bytes LUN `name`/`lun` grows to when its entry becomes `entry`: `Some` when the
    /// entry's size is above what the store holds now. A size of no more than that changes
    /// nothing (for files it is the size to create a missing one with).
    fn growth(&self, name: &str, lun: u16, entry: &crate::config::LunEntry) -> Result<Option<u64>> {
        let Some(size) = &entry.size else {
            return Ok(None);
        };
        let bytes =
            units::parse_size(size).map_err(|e| anyhow::anyhow!("lun {name}/{lun}: {e}"))?;
        let Some(store) = self
            .targets
            .get(name)
            .and_then(|t| t.store(u64::from(lun)).cloned())
        else {
            return Ok(None);
        };
        let g = store.geometry();
        if bytes <= g.size_bytes() {
            return Ok(None);
        }
        // `u64::is_multiple_of` needs Rust 1.87; the workspace supports older.
        #[allow(unknown_lints, clippy::manual_is_multiple_of)]
        let whole = bytes % u64::from(g.block_size) == 0;
        if !whole {
            bail!(
                "lun {name}/{lun}: size {size} is not a whole number of {}-byte blocks",
                g.block_size
            );
        }
        Ok(Some(bytes))
    }

    /// `admin lun clone`: copies LUN `target`/`lun` as it is now into a new backing file
    /// `to`, while the LUN goes on serving (`backstore::snapshot`: a write over data not
    /// yet copied waits for that data's copy). For a glfs LUN `to` is a path on the LUN's
    /// volume, or a whole `volume@host:path`; for a file LUN a path. The file must not
    /// exist; it is created sparse, and where the copy fails it is removed again. The
    /// LUN cannot be changed, resized or removed meanwhile; the configuration does not
    /// change (the copy is not served: `admin lun add` serves it). Blocking, with
    /// progress through `backstore::progress`.
    pub fn clone_lun(&self, target: &str, lun: u16, to: &str) -> Result<Cloned> {
        let what = format!("lun {target}/{lun}");
        let (source, store, lane, busy, own_state) = {
            let config = self.config.lock().expect("state lock");
            let specs = config.target_specs(self.gfapi_library.as_ref())?;
            let spec = specs
                .iter()
                .find(|t| t.name == target)
                .and_then(|t| t.luns.iter().find(|l| l.lun == lun))
                .with_context(|| format!("{what}: no such LUN"))?;
            let running = self.targets.get(target);
            let at = |t: &Target| {
                let store = t.store(u64::from(lun))?.clone();
                Some((store, t.lane(u64::from(lun))?.clone()))
            };
            let (store, lane) = running
                .as_deref()
                .and_then(at)
                .with_context(|| format!("{what}: not served"))?;
            let key = (target.to_string(), lun);
            let mut clones = self.clones.lock().unwrap_or_else(|e| e.into_inner());
            if clones.contains_key(&key) {
                bail!("{what}: it is being cloned already");
            }
            clones.insert(key.clone(), None);
            let busy = CloneBusy { state: self, key };
            // This gateway's ALUA state for the LUN, where it reports one.
            let own_state = running
                .as_deref()
                .and_then(|t| t.scsi.lu_alua(lun))
                .map(|alua| alua.own.state);
            (spec.store.clone(), store, lane, busy, own_state)
        };
        let to = match source.bstype.as_str() {
            "memory" => {
                bail!("{what}: a memory LUN has no file to copy (file and glfs LUNs can be cloned)")
            }
            "glfs" if !to.contains('@') => {
                backstore::spec::GlfsSpec::parse(&source.backing_store)?.with_path(to)
            }
            _ => to.to_string(),
        };
        if to.is_empty() {
            bail!("{what}: the clone needs a file name");
        }
        // Among several gateways the copy is of one point in time only where no other
        // gateway can write: with --alua-failover, on the LUN's active gateway (it holds
        // the data fence, so the bricks refuse the others' writes; should it lose the
        // fence, the copy's own reads are refused and the copy fails).
        if let Some(gateway) = crate::gateways::gateway() {
            if !crate::failover::enabled() {
                bail!(
                    "{what}: this gateway ({gateway}) exports its LUNs with others \
                     (--gateway-id) and any of them may write; a copy made here would not \
                     hold back the writes that come through them, so it would not be of one \
                     point in time (with --alua-failover, clone on the LUN's active gateway)"
                );
            }
            if own_state != Some(scsi::AccessState::ActiveOptimized) {
                bail!(
                    "{what}: this gateway ({gateway}) is not the LUN's active gateway; clone \
                     it on the active one, which alone writes it"
                );
            }
        }
        let size = store.geometry().size_bytes();
        let dest_opts = backstore::StoreOptions {
            backing_store: to.clone(),
            create_size: Some(size),
            provisioning: backstore::Provisioning::Thin,
            shared: false,
            ..source
        };
        let dest = backstore::create_store(&dest_opts)
            .with_context(|| format!("{what}: cannot create the clone"))?;
        let what = format!("{what}: clone to {to}");
        tracing::info!("{what}: copying {}", units::format_human(size));
        let snapshot = backstore::snapshot::Snapshot::new(store, dest.clone());
        if let Some(entry) = self
            .clones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&busy.key)
        {
            *entry = Some(Copying {
                to: to.clone(),
                snapshot: snapshot.clone(),
            });
        }
        lane.divert(Some(snapshot.clone()));
        let metrics = crate::metrics::global();
        let series = (target, u64::from(lun));
        let observe = |done| {
            if let Some(m) = metrics {
                m.lun_clone(series.0, series.1, Some((done, size)));
            }
        };
        observe(0);
        let copied = snapshot.run_observed(&what, observe);
        lane.divert(None);
        if let Some(m) = metrics {
            m.lun_clone(target, u64::from(lun), None);
        }
        drop((snapshot, dest));
        drop(busy);
        match copied {
            Ok(copied) => {
                tracing::info!(
                    "{what}: done, {} copied ({} read, the rest holes; {} written, the rest \
                     left sparse) in {:.1} s; {} write(s) waited for their data's copy",
                    units::format_human(copied.bytes),
                    units::format_human(copied.read),
                    units::format_human(copied.written),
                    copied.took.as_secs_f64(),
                    copied.held
                );
                Ok(Cloned { to, copied })
            }
            Err(err) => {
                let removed = match backstore::remove_store_file(&dest_opts) {
                    Ok(()) => "the unfinished copy was removed".to_string(),
                    Err(e) => format!("the unfinished copy is still there: {e}"),
                };
                let how = match err {
                    backstore::snapshot::CopyError::Cancelled => "cancelled".to_string(),
                    err => format!("failed: {err}"),
                };
                tracing::error!("{what}: {how}; {removed}; the LUN is unchanged");
                bail!("{what}: {how}; {removed}; the LUN is unchanged")
            }
        }
    }

    /// `admin lun clone --cancel`: stops the copy being made of LUN `target`/`lun` at its
    /// next chunks; the clone request then fails and removes the unfinished file. Returns
    /// where the copy was going.
    pub fn cancel_clone(&self, target: &str, lun: u16) -> Result<String> {
        let clones = self.clones.lock().unwrap_or_else(|e| e.into_inner());
        match clones.get(&(target.to_string(), lun)) {
            Some(Some(copying)) => {
                copying.snapshot.cancel();
                Ok(copying.to.clone())
            }
            Some(None) => bail!("lun {target}/{lun}: its clone is being created; try again"),
            None => bail!("lun {target}/{lun}: no clone of it is being made"),
        }
    }

    /// Cancels every copy being made (the daemon is stopping): each stops at its next
    /// chunks and removes its unfinished file, so shutdown does not wait for whole copies.
    pub fn cancel_clones(&self) {
        let clones = self.clones.lock().unwrap_or_else(|e| e.into_inner());
        for copying in clones.values().flatten() {
            copying.snapshot.cancel();
        }
    }

    /// The copy `admin lun clone` is making of LUN `target`/`lun`: where to, bytes copied
    /// and bytes in all; `None` when none is being made.
    pub fn clone_progress(&self, target: &str, lun: u16) -> Option<(String, u64, u64)> {
        let clones = self.clones.lock().unwrap_or_else(|e| e.into_inner());
        let copying = clones.get(&(target.to_string(), lun))?.as_ref()?;
        let (done, total) = copying.snapshot.progress();
        Some((copying.to.clone(), done, total))
    }

    /// `admin lun resize`: grows LUN `target`/`lun` to `bytes` through its store, live;
    /// every session on it gets CAPACITY DATA HAS CHANGED. Shrinking is refused.
    pub fn resize(&self, target: &str, lun: u16, bytes: u64) -> Result<Vec<Change>> {
        let store = self
            .targets
            .get(target)
            .and_then(|t| t.store(u64::from(lun)).cloned())
            .with_context(|| format!("lun {target}/{lun}: no such LUN"))?;
        let now = store.geometry().size_bytes();
        if bytes < now {
            bail!(
                "lun {target}/{lun}: cannot shrink from {} to {} (data past the new end \
                 would be lost); only growing is supported",
                units::format_size(now),
                units::format_size(bytes)
            );
        }
        self.edit(ApplyOptions::default(), |config| {
            let entry = config
                .targets
                .iter_mut()
                .find(|t| t.name == target)
                .and_then(|t| t.luns.iter_mut().find(|l| l.lun == lun))
                .with_context(|| format!("lun {target}/{lun}: no such LUN"))?;
            entry.size = Some(units::format_size(bytes));
            Ok(())
        })
    }
}

/// How long removing a portal waits for the sessions it ends to close (they close at
/// their connection task's next wake-up, normally at once).
const SESSIONS_END_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

fn change(action: &str, object: String, detail: &str) -> Change {
    Change {
        action: action.into(),
        object,
        detail: detail.into(),
    }
}

type LunEntries = BTreeMap<u16, crate::config::LunEntry>;

fn luns_by_target(config: &ConfigFile) -> HashMap<String, LunEntries> {
    config
        .targets
        .iter()
        .map(|t| {
            let luns = t.luns.iter().map(|l| (l.lun, l.clone())).collect();
            (t.name.clone(), luns)
        })
        .collect()
}

/// Whether two versions of a LUN use the same open store (only the export settings
/// differ).
fn same_store(old: &crate::config::LunEntry, new: &crate::config::LunEntry) -> bool {
    old.bstype == new.bstype
        && old.backing_store == new.backing_store
        && old.bsopts == new.bsopts
        && old.block_size == new.block_size
        && old.provisioning == new.provisioning
}

/// The fields that differ, named.
fn lun_difference(old: &crate::config::LunEntry, new: &crate::config::LunEntry) -> String {
    differing(&[
        ("bstype", old.bstype != new.bstype),
        ("backing_store", old.backing_store != new.backing_store),
        ("bsopts", old.bsopts != new.bsopts),
        ("size", old.size != new.size),
        ("block_size", old.block_size != new.block_size),
        ("read_only", old.read_only != new.read_only),
        ("provisioning", old.provisioning != new.provisioning),
        ("soft_threshold", old.soft_threshold != new.soft_threshold),
        ("alua_preferred", old.alua_preferred != new.alua_preferred),
    ])
}

/// The names of the fields marked as differing, in order, joined by commas.
fn differing(fields: &[(&str, bool)]) -> String {
    let names: Vec<&str> = fields
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| *name)
        .collect();
    names.join(", ")
}

/// Changes of access control (never showing a secret): they apply to the next logins.
fn access_changes(old: &ConfigFile, new: &ConfigFile) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.allow_any_initiator != new.allow_any_initiator {
        changes.push(change("modify", "allow_any_initiator".into(), ""));
    }
    if old.discovery_chap != new.discovery_chap {
        changes.push(change("modify", "discovery_chap".into(), ""));
    }
    for t in &new.targets {
        let Some(o) = old.targets.iter().find(|o| o.name == t.name) else {
            continue;
        };
        let fields = differing(&[
            ("acl", o.acl != t.acl),
            ("chap", o.chap != t.chap),
            (
                "allow_any_initiator",
                o.allow_any_initiator != t.allow_any_initiator,
            ),
        ]);
        if !fields.is_empty() {
            changes.push(change("modify", format!("target {}", t.name), &fields));
        }
    }
    changes
}

/// The portals `new` adds to `old`'s and those it removes, each checked: none may be the
/// main portal.
fn portal_changes(
    old: &ConfigFile,
    new: &ConfigFile,
    main: std::net::SocketAddr,
) -> Result<(Vec<std::net::SocketAddr>, Vec<std::net::SocketAddr>)> {
    crate::config::check_portals(&new.portals)?;
    if new.portals.contains(&main) {
        bail!("portal {main}: it is the main portal (--portal or `portal` in the file)");
    }
    let added = new
        .portals
        .iter()
        .filter(|p| !old.portals.contains(p))
        .copied()
        .collect();
    let removed = old
        .portals
        .iter()
        .filter(|p| !new.portals.contains(p))
        .copied()
        .collect();
    Ok((added, removed))
}

/// Changes of the daemon's settings: the session and login settings apply to the next
/// logins (sessions logged in keep what they negotiated, RFC 7143), the others at the
/// next start.
fn settings_changes(
    old: &ConfigFile,
    new: &ConfigFile,
    live_alua: bool,
    live_portal: bool,
) -> Vec<Change> {
    let mut fields = vec![
        // A main portal that moves live is reported by the move itself.
        ("portal", !live_portal && old.portal != new.portal),
        (
            "command_timeout",
            old.command_timeout != new.command_timeout,
        ),
        ("gfapi_library", old.gfapi_library != new.gfapi_library),
        ("tcp_congestion", old.tcp_congestion != new.tcp_congestion),
        ("gateway_id", old.gateway_id != new.gateway_id),
        ("alua_group", old.alua_group != new.alua_group),
        ("alua_state", old.alua_state != new.alua_state),
        ("alua_peer", old.alua_peer != new.alua_peer),
        ("alua_failover", old.alua_failover != new.alua_failover),
        (
            "alua_stall_after",
            old.alua_stall_after != new.alua_stall_after,
        ),
    ];
    let numbers = old.settings().into_iter().zip(new.settings());
    fields.extend(numbers.map(|((key, a), (_, b))| (key, a != b)));
    fields.extend([
        (
            "unsolicited_data_budget",
            old.unsolicited_data_budget != new.unsolicited_data_budget,
        ),
        (
            "max_recv_data_segment_length",
            old.max_recv_data_segment_length != new.max_recv_data_segment_length,
        ),
        (
            "max_burst_length",
            old.max_burst_length != new.max_burst_length,
        ),
        (
            "first_burst_length",
            old.first_burst_length != new.first_burst_length,
        ),
        (
            "max_outstanding_r2t",
            old.max_outstanding_r2t != new.max_outstanding_r2t,
        ),
        ("immediate_data", old.immediate_data != new.immediate_data),
        ("initial_r2t", old.initial_r2t != new.initial_r2t),
        (
            "require_header_digest",
            old.require_header_digest != new.require_header_digest,
        ),
        (
            "require_data_digest",
            old.require_data_digest != new.require_data_digest,
        ),
    ]);
    fields
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| {
            let at_start = [
                "portal",
                "gfapi_library",
                "shutdown_grace",
                "gateway_id",
                "alua_group",
                "alua_state",
                "alua_peer",
                "alua_failover",
                "alua_stall_after",
            ];
            let when = if live_alua && ["alua_state", "alua_peer"].contains(&key) {
                "applied (hosts get ASYMMETRIC ACCESS STATE CHANGED)"
            } else if at_start.contains(&key) {
                "takes effect at the next start"
            } else if key == "tcp_congestion" {
                "applies to new connections"
            } else {
                "applies to new logins"
            };
            change("modify", key.into(), when)
        })
        .collect()
}

/// Writes `config` to `path` so that a crash leaves either the old file or the new one:
/// a temporary file beside it, fsync, rename over it, fsync of the directory.
pub fn save_atomically(path: &Path, config: &ConfigFile) -> Result<()> {
    let text = config.to_toml()?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("config file {} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // Owner-only unless the file it replaces says otherwise: it may hold secrets.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // Keep the permissions of the file it replaces, but never let others read secrets.
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            let mut mode = meta.permissions().mode();
            if config.has_inline_secrets() && mode & 0o077 != 0 {
                tracing::warn!(file = %path.display(),
                    "the config file holds secrets: making it readable by its owner only");
                mode &= !0o077;
            }
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|err| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write config file {}: {err}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LunEntry, TargetEntry};

    fn memory_lun(lun: u16) -> LunEntry {
        LunEntry {
            lun,
            bstype: "memory".into(),
            size: Some("1M".into()),
            ..Default::default()
        }
    }

    #[test]
    fn gateway_settings_change_at_the_next_start_but_alua_states_live() {
        let old = ConfigFile {
            alua_group: Some(1),
            ..Default::default()
        };
        let new = ConfigFile {
            gateway_id: Some("gateway-a".into()),
            alua_group: Some(1),
            alua_state: Some("standby".into()),
            alua_peer: vec!["2:active-optimized".into()],
            ..Default::default()
        };
        let changes: Vec<(String, String)> = settings_changes(&old, &new, false, false)
            .into_iter()
            .map(|c| (c.object, c.detail))
            .collect();
        let later = "takes effect at the next start".to_string();
        assert_eq!(
            changes,
            [
                ("gateway_id".to_string(), later.clone()),
                ("alua_state".to_string(), later.clone()),
                ("alua_peer".to_string(), later.clone()),
            ]
        );
        // Over the same file groups (not the command line's), the states apply at once.
        let changes: Vec<(String, String)> = settings_changes(&old, &new, true, false)
            .into_iter()
            .map(|c| (c.object, c.detail))
            .collect();
        let now = "applied (hosts get ASYMMETRIC ACCESS STATE CHANGED)".to_string();
        assert_eq!(
            changes,
            [
                ("gateway_id".to_string(), later),
                ("alua_state".to_string(), now.clone()),
                ("alua_peer".to_string(), now),
            ]
        );
    }

    fn state(path: Option<PathBuf>) -> State {
        let targets = Arc::new(
            Targets::with_stores(
                vec![],
                "127.0.0.1:3260".parse().unwrap(),
                Default::default(),
            )
            .unwrap(),
        );
        State::new(targets, path, None)
    }

    fn config(targets: &[(&str, &[u16])]) -> ConfigFile {
        ConfigFile {
            targets: targets
                .iter()
                .map(|(name, luns)| TargetEntry {
                    name: name.to_string(),
                    luns: luns.iter().map(|&l| memory_lun(l)).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    const A: &str = "iqn.2026-11.io.test:a";
    const B: &str = "iqn.2026-11.io.test:b";

    #[test]
    fn a_changed_main_portal_moves_live_only_where_the_daemon_listens() {
        let main: SocketAddr = "127.0.0.1:3260".parse().unwrap();
        let with_portal = |portal: &str| ConfigFile {
            portal: Some(portal.parse().unwrap()),
            ..config(&[(A, &[0])])
        };
        let dry = ApplyOptions {
            dry_run: true,
            force: false,
        };
        let shown = |changes: Vec<Change>| -> Vec<String> {
            changes.iter().map(|c| c.to_string()).collect()
        };
        // The state alone (no listeners): at the next start, as before.
        let alone = state(None);
        alone
            .apply(config(&[(A, &[0])]), Default::default())
            .unwrap();
        assert_eq!(
            shown(alone.apply(with_portal("127.0.0.1:3270"), dry).unwrap()),
            ["~ portal (takes effect at the next start)"]
        );
        // A daemon's state: the move itself, with what happens to the sessions.
        let live = state(None).with_main_portal(main, main);
        live.apply(config(&[(A, &[0])]), Default::default())
            .unwrap();
        assert_eq!(
            shown(live.apply(with_portal("127.0.0.1:3270"), dry).unwrap()),
            [
                "~ portal (applied: listening on 127.0.0.1:3270 instead of 127.0.0.1:3260; \
              sessions that came through 127.0.0.1:3260 keep running)"
            ]
        );
        let forced = ApplyOptions {
            dry_run: true,
            force: true,
        };
        assert!(
            shown(live.apply(with_portal("127.0.0.1:3270"), forced).unwrap())[0]
                .ends_with("sessions that came through 127.0.0.1:3260 end)")
        );
        // `portal` naming where it listens, or --portal's, is no change.
        assert!(live
            .apply(with_portal("127.0.0.1:3260"), dry)
            .unwrap()
            .is_empty());
        // Port 0, or the address of an added portal: refused, naming it.
        let err = live.apply(with_portal("127.0.0.1:0"), dry).unwrap_err();
        assert!(
            format!("{err:#}").contains("portal 127.0.0.1:0: port 0"),
            "{err:#}"
        );
        let mut both = with_portal("127.0.0.1:3270");
        both.portals = vec!["127.0.0.1:3270".parse().unwrap()];
        let err = live.apply(both, dry).unwrap_err();
        assert!(
            format!("{err:#}").contains("it is the main portal"),
            "{err:#}"
        );
        // Promoting an added portal in the same change: refused, even on a dry run.
        live.config.lock().unwrap().portals = vec!["127.0.0.1:3270".parse().unwrap()];
        let err = live.apply(with_portal("127.0.0.1:3270"), dry).unwrap_err();
        assert!(
            format!("{err:#}").contains("listening as an added portal"),
            "{err:#}"
        );
        live.config.lock().unwrap().portals.clear();
        // Without listeners to move it nothing changes.
        let err = live
            .apply(with_portal("127.0.0.1:3270"), Default::default())
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("only change on a running daemon"),
            "{err:#}"
        );
        assert_eq!(live.targets().portal(), main);
        assert_eq!(live.config().portal, None);
    }

    #[test]
    fn apply_reports_each_change_once_and_is_idempotent() {
        let state = state(None);
        let changes = state
            .apply(config(&[(A, &[0, 1])]), Default::default())
            .unwrap();
        let shown: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                format!("+ target {A}"),
                format!("+ lun {A}/0"),
                format!("+ lun {A}/1")
            ]
        );
        assert_eq!(state.targets().get(A).unwrap().luns(), [0, 1]);
        assert!(state
            .apply(config(&[(A, &[0, 1])]), Default::default())
            .unwrap()
            .is_empty());

        let mut wanted = config(&[(A, &[1]), (B, &[0])]);
        wanted.targets[0].luns[0].read_only = true;
        let dry = ApplyOptions {
            dry_run: true,
            force: false,
        };
        let planned = state.apply(wanted.clone(), dry).unwrap();
        assert_eq!(state.targets().get(A).unwrap().luns(), [0, 1], "dry run");
        let done = state.apply(wanted, Default::default()).unwrap();
        assert_eq!(planned, done);
        let shown: Vec<String> = done.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                format!("~ lun {A}/1 (read_only)"),
                format!("- lun {A}/0"),
                format!("+ target {B}"),
                format!("+ lun {B}/0"),
            ]
        );
        assert_eq!(state.targets().names(), [A, B]);
        assert_eq!(state.targets().get(A).unwrap().luns(), [1]);
    }

    #[test]
    fn a_kept_lun_keeps_its_store_and_the_old_target_goes_stale() {
        let state = state(None);
        state
            .apply(config(&[(A, &[0])]), Default::default())
            .unwrap();
        let before = state.targets().get(A).unwrap();
        state
            .apply(config(&[(A, &[0, 5])]), Default::default())
            .unwrap();
        let after = state.targets().get(A).unwrap();
        assert!(before.is_stale() && !after.is_stale());
        assert!(Arc::ptr_eq(
            before.store(0).unwrap(),
            after.store(0).unwrap()
        ));
    }

    #[test]
    fn a_new_store_under_a_kept_lun_serves_once_the_old_one_is_idle() {
        use store_api::{Completion, IoReply, IoRequest};
        let state = state(None);
        state
            .apply(config(&[(A, &[0])]), Default::default())
            .unwrap();
        let before = state.targets().get(A).unwrap();
        // A command still at the old store.
        let old_command = before.lane(0).unwrap().enter();
        let mut changed = config(&[(A, &[0])]);
        changed.targets[0].luns[0].block_size = Some(4096);
        state.apply(changed, Default::default()).unwrap();
        let after = state.targets().get(A).unwrap();
        assert!(!Arc::ptr_eq(
            before.store(0).unwrap(),
            after.store(0).unwrap()
        ));
        let lane = after.lane(0).unwrap().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let ticket = lane.enter();
        lane.submit(
            after.store(0).unwrap(),
            IoRequest::Read {
                offset: 0,
                len: 512,
            },
            Completion::new(move |result| {
                drop(ticket);
                let _ = tx.send(result);
            }),
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            rx.try_recv().is_err(),
            "served before the old store was idle"
        );
        drop(old_command);
        let Ok(IoReply::Data(data)) = rx.recv().unwrap() else {
            panic!("the read failed");
        };
        assert_eq!(data.len(), 512);
    }

    #[test]
    fn a_failed_change_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let state = state(Some(path.clone()));
        state
            .apply(config(&[(A, &[0])]), Default::default())
            .unwrap();
        let saved = std::fs::read_to_string(&path).unwrap();
        let mut bad = config(&[(A, &[0]), (B, &[0])]);
        bad.targets[1].luns[0].bstype = "floppy".into();
        let err = state.apply(bad, Default::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("target {B} LUN 0")),
            "{err:#}"
        );
        assert_eq!(state.targets().names(), [A]);
        assert_eq!(state.config(), config(&[(A, &[0])]));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), saved);
    }

    #[test]
    fn export_never_shows_a_secret_and_applying_it_keeps_the_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let secret = "chap-secret-0123456789";
        let text = format!(
            "[[target]]\nname = \"{A}\"\n[target.chap]\nuser = \"u\"\nsecret = \"{secret}\"\n\
             [[target.acl]]\ninitiator = \"iqn.2026-11.io.test:h\"\n\
             [target.acl.chap]\nuser = \"h\"\nsecret = \"acl-secret-0123456789\"\n"
        );
        let state = state(Some(path.clone()));
        state
            .apply(ConfigFile::parse(&text).unwrap(), Default::default())
            .unwrap();
        let exported = state.config().redacted().to_toml().unwrap();
        assert!(!exported.contains(secret) && !exported.contains("acl-secret"));
        assert_eq!(exported.matches(crate::auth::REDACTED).count(), 2);
        // Applying the export changes nothing, and the file keeps the secrets.
        let changes = state
            .apply(ConfigFile::parse(&exported).unwrap(), Default::default())
            .unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        assert!(std::fs::read_to_string(&path).unwrap().contains(secret));
        // A redacted secret where none is set is refused, naming the entry.
        let elsewhere = exported.replace(A, B);
        let err = state
            .apply(ConfigFile::parse(&elsewhere).unwrap(), Default::default())
            .unwrap_err();
        assert!(format!("{err:#}").contains(&format!("target {B} [target.chap]")));
    }

    #[test]
    fn the_config_file_is_rewritten_whole_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let state = state(Some(path.clone()));
        let wanted = config(&[(A, &[0, 3]), (B, &[7])]);
        state.apply(wanted.clone(), Default::default()).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), wanted);
        // Only the file itself is left in the directory: no temporary file remains.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c.toml"]);
    }
}
