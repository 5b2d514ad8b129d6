//! Targets and their LUNs as they are served now.
//!
//! The set changes while the daemon runs (see `state.rs`, its one owner): a changed target
//! is built anew over the stores it keeps and swapped in; the one it replaces is marked
//! stale, and its sessions move to the new one at their next command (one relaxed atomic
//! load per command, no lock).

use crate::handover::Lane;
use anyhow::{bail, Context, Result};
use backstore::StoreOptions;
use iscsi::auth::{AccessPolicy, PolicyError};
use scsi::{LuConfig, ScsiTarget};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use store_api::BlockStore;

/// One LUN to export.
#[derive(Debug, Clone)]
pub struct LunSpec {
    pub lun: u16,
    pub store: StoreOptions,
    pub read_only: bool,
    /// What its hosts are told of its storage running low (a thin LUN).
    pub soft_threshold: crate::space::SoftThreshold,
}

/// One target (IQN), its LUNs and who may log in to it.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub name: String,
    pub luns: Vec<LunSpec>,
    /// ACL entries and CHAP credentials.
    pub access: iscsi::auth::TargetAccess,
    /// Serve the target to any initiator even on a non-loopback portal when it has
    /// neither ACL nor CHAP.
    pub allow_any_initiator: bool,
}

/// A target name and its LUNs over stores that are already open.
pub type OpenTarget = (String, Vec<(LunSpec, Arc<dyn BlockStore>)>);

/// A target ready to serve: the SCSI emulation and a store per LUN.
pub struct Target {
    pub name: String,
    pub scsi: ScsiTarget,
    /// Stores by plain LUN number.
    pub stores: HashMap<u64, Arc<dyn BlockStore>>,
    /// Held while a LUN's reservations are saved (APTPL), so saves never overlap and the
    /// last one written holds the latest state.
    /// Shared with the versions that follow this one.
    pub reservation_saves: Arc<std::sync::Mutex<()>>,
    /// The connection of each open I_T nexus, for what one session's command does to
    /// another's tasks (PREEMPT AND ABORT). Shared with the versions that follow this one,
    /// as the nexuses are.
    pub nexuses: Nexuses,
    /// Set when a newer version of this target (or its removal) has replaced it.
    stale: AtomicBool,
    /// Each LUN's requests in flight on its store, by plain LUN number; shared with the
    /// versions that keep the store (see `crate::handover`).
    lanes: HashMap<u64, Arc<Lane>>,
    /// Stores this version took over from the one it replaces, whose lanes open once the
    /// old stores are idle and flushed: started when this version is served.
    handovers: std::sync::Mutex<Vec<Handover>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("luns", &self.luns())
            .finish_non_exhaustive()
    }
}

/// A target as another target's copy manager sees it (copies between targets).
impl scsi::PeerTarget for Target {
    fn scsi(&self) -> &ScsiTarget {
        &self.scsi
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// The driver's side of a [`scsi::Peer`]: the target it stands for.
pub fn peer_target(peer: &scsi::Peer) -> &Target {
    peer.as_any()
        .downcast_ref::<Target>()
        .expect("the daemon's peers are its targets")
}

/// Every target served, as a target's copy manager reaches them (`scsi::CopyPeers`).
/// Weak: the targets hold it.
#[derive(Debug)]
struct Directory(std::sync::Weak<RwLock<HashMap<String, Arc<Target>>>>);

impl scsi::CopyPeers for Directory {
    fn peers(&self) -> Vec<scsi::Peer> {
        let Some(targets) = self.0.upgrade() else {
            return Vec::new();
        };
        let targets = targets.read().expect("targets lock");
        targets
            .values()
            .map(|t| Arc::clone(t) as scsi::Peer)
            .collect()
    }
}

/// A LUN's old lane and store, and the new lane that waits for them.
struct Handover {
    old: Arc<Lane>,
    old_store: Arc<dyn BlockStore>,
    new: Arc<Lane>,
    new_store: Arc<dyn BlockStore>,
    what: String,
}

/// Where a connection takes messages from outside its own task.
pub type ControlSender = tokio::sync::mpsc::UnboundedSender<crate::sessions::Control>;

/// The connection of each open I_T nexus of a target, shared by its versions.
pub type Nexuses = Arc<std::sync::Mutex<HashMap<scsi::NexusId, ControlSender>>>;

impl Target {
    pub fn store(&self, lun: u64) -> Option<&Arc<dyn BlockStore>> {
        self.stores.get(&lun)
    }

    /// The lane LUN `lun`'s requests go through to its store.
    pub fn lane(&self, lun: u64) -> Option<&Arc<Lane>> {
        self.lanes.get(&lun)
    }

    /// Starts handing over the LUNs whose store this version replaced (once served).
    fn start_handovers(&self) {
        let handovers =
            std::mem::take(&mut *self.handovers.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handovers {
            crate::handover::hand_over(h.old, h.old_store, h.new, h.new_store, h.what);
        }
    }

    /// Whether this version has been replaced: sessions then look the target up again.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Builds a target over open stores, restoring the persistent reservations they keep;
    /// fails on a LUN given twice or out of range, or saved reservations it cannot read.
    pub fn build(name: String, luns: Vec<(LunSpec, Arc<dyn BlockStore>)>) -> Result<Target> {
        Self::assemble(
            name,
            scsi::ScsiTarget::new(),
            luns,
            &HashSet::new(),
            Default::default(),
            Default::default(),
        )
    }

    /// The next version of `previous`, serving `luns`: those in `kept` keep their logical
    /// unit (reservations, mode parameters, capacity; over a new store or with other
    /// settings, see [`ScsiTarget::replace_lun_config`]), the others are built afresh; its
    /// sessions keep their nexuses and queued conditions, and get REPORTED LUNS DATA HAS
    /// CHANGED when LUNs came or went.
    pub fn rebuild(
        previous: &Target,
        luns: Vec<(LunSpec, Arc<dyn BlockStore>)>,
        kept: &HashSet<u16>,
    ) -> Result<Target> {
        let mut scsi = previous.scsi.successor();
        let wanted: HashSet<u16> = luns.iter().map(|(l, _)| l.lun).collect();
        for lun in previous.luns() {
            if !wanted.contains(&lun) || !kept.contains(&lun) {
                scsi.remove_lun(lun);
            }
        }
        let target = Self::assemble(
            previous.name.clone(),
            scsi,
            luns,
            kept,
            previous.reservation_saves.clone(),
            previous.nexuses.clone(),
        )?;
        if target.luns() != previous.luns() {
            target.scsi.luns_changed();
        }
        // A kept store keeps its lane (and the count of requests in flight on it); a new
        // store under a kept LUN waits until the old one is idle and flushed.
        let mut target = target;
        let mut handovers = Vec::new();
        for (&lun, store) in &target.stores {
            let (Some(old_store), Some(old_lane)) = (previous.store(lun), previous.lane(lun))
            else {
                continue;
            };
            if Arc::as_ptr(old_store) as *const () == Arc::as_ptr(store) as *const () {
                target.lanes.insert(lun, old_lane.clone());
            } else if kept.contains(&(lun as u16)) {
                let new = Lane::closed();
                target.lanes.insert(lun, new.clone());
                handovers.push(Handover {
                    old: old_lane.clone(),
                    old_store: old_store.clone(),
                    new,
                    new_store: store.clone(),
                    what: format!("{} LUN {lun}", target.name),
                });
            }
        }
        target.handovers = std::sync::Mutex::new(handovers);
        Ok(target)
    }

    /// `scsi` with a logical unit for each of `luns` it lacks (or that is not `kept`).
    fn assemble(
        name: String,
        mut scsi: ScsiTarget,
        luns: Vec<(LunSpec, Arc<dyn BlockStore>)>,
        kept: &HashSet<u16>,
        reservation_saves: Arc<std::sync::Mutex<()>>,
        nexuses: Nexuses,
    ) -> Result<Target> {
        // VPD 83h names the target port `<name>,t,0x<portal group tag>` from now on.
        scsi.set_target_name(&name);
        let mut stores = HashMap::new();
        for (lun, store) in luns {
            if stores.contains_key(&u64::from(lun.lun)) {
                bail!("target {name} has LUN {} twice", lun.lun);
            }
            crate::config::check_lun(lun.lun).with_context(|| format!("target {name}"))?;
            if kept.contains(&lun.lun) && scsi.lun(lun.lun).is_some() {
                // The same logical unit, perhaps over another store or with other
                // settings: it keeps its state and the hosts are told what changed.
                let config = lu_config(&name, &lun, store.as_ref());
                if scsi.lun(lun.lun) != Some(&config) {
                    carry_reservations(&scsi, &name, lun.lun, store.as_ref())?;
                    carry_mode_pages(&scsi, &name, lun.lun, store.as_ref())?;
                    if let (true, Some(owner)) = (
                        scsi.reservations_shared(lun.lun),
                        crate::gateways::gateway(),
                    ) {
                        crate::gateways::hold_live(&name, lun.lun, &store, owner).with_context(
                            || {
                                format!(
                                    "target {name} LUN {}: the gateways' liveness lock",
                                    lun.lun
                                )
                            },
                        )?;
                    }
                    tracing::info!(target = %name, lun = lun.lun, store = %store.describe(),
                        "LUN changed in place");
                    scsi.replace_lun_config(lun.lun, config);
                }
            } else {
                let config = lu_config(&name, &lun, store.as_ref());
                tracing::info!(target = %name, lun = lun.lun, store = %store.describe(),
                    blocks = config.geometry.num_blocks, block_size = config.geometry.block_size,
                    "LUN ready");
                scsi.add_lun(lun.lun, config);
                if let Some(owner) = crate::gateways::gateway() {
                    // Kept on the volume for every gateway (`crate::gateways`); the
                    // first gateway to open it after all had stopped powers it on.
                    crate::gateways::join(&name, lun.lun, &store, owner)?;
                    scsi.share_reservations(lun.lun, owner.as_str());
                }
                restore_reservations(&scsi, &name, lun.lun, store.as_ref())?;
                load_mode_pages(&scsi, &name, lun.lun, store.as_ref())?;
                if let Some(owner) = crate::gateways::gateway() {
                    // Listed among the gateways and given a lease before it serves.
                    crate::gateways::refresh_lun(
                        &scsi,
                        &name,
                        lun.lun,
                        store.as_ref(),
                        owner,
                        std::time::Instant::now(),
                        store_api::LockWait::AtMost(crate::gateways::LOCK_WAIT),
                    );
                }
            }
            stores.insert(u64::from(lun.lun), store);
        }
        let lanes = stores.keys().map(|&lun| (lun, Lane::open())).collect();
        Ok(Target {
            name,
            scsi,
            stores,
            reservation_saves,
            nexuses,
            stale: AtomicBool::new(false),
            lanes,
            handovers: Default::default(),
        })
    }

    /// The LUN numbers, ascending.
    pub fn luns(&self) -> Vec<u16> {
        self.scsi.luns().collect()
    }
}

/// Every target of one portal, and the iSCSI configuration derived from them.
pub struct Targets {
    /// The iSCSI configuration; its SendTargets addresses name the portal, which is a
    /// wildcard for `0.0.0.0` or `[::]` (see [`Targets::iscsi_config_for`]). Rebuilt
    /// when the set of targets changes; a connection takes a copy when it starts.
    iscsi: RwLock<Arc<iscsi::Config>>,
    /// What logins offer and require; changed live for the next logins
    /// ([`Targets::set_limits`]).
    limits: RwLock<iscsi::Limits>,
    /// Time limits and login bounds for the next connections, when changed since start
    /// ([`Targets::set_connection_limits`]); else the server's.
    connection_limits: RwLock<Option<crate::ConnectionLimits>>,
    /// The main portal's address (moved live by [`Targets::set_portal`]).
    portal: RwLock<SocketAddr>,
    /// The portals added beside `portal` (`crate::portals`), sorted.
    added_portals: RwLock<Vec<SocketAddr>>,
    /// Looked up at login and when a session's target has gone stale, never per command
    /// (but by a copy between targets, `Directory`).
    targets: Arc<RwLock<HashMap<String, Arc<Target>>>>,
    /// The access policy new connections get; replaceable while serving
    /// ([`Targets::replace_access`]).
    access: RwLock<Arc<AccessPolicy>>,
    /// The sessions logged in through this portal.
    pub sessions: crate::sessions::Sessions,
    /// The sessions as `admin session list` shows them.
    pub registry: crate::registry::Registry,
    /// The ALUA target port groups every target reports, and their states now
    /// ([`Targets::set_alua`]); each target keeps its own copy in its SCSI core.
    alua: RwLock<Option<scsi::Alua>>,
}

impl Targets {
    /// Opens every LUN's store and builds the targets. Fails on the first store that cannot
    /// be opened, naming the target and LUN.
    pub fn open(specs: &[TargetSpec], portal: SocketAddr, limits: iscsi::Limits) -> Result<Self> {
        let mut opened = Vec::new();
        for spec in specs {
            let mut luns = Vec::new();
            for lun in &spec.luns {
                let store = crate::logging::lun_span(&spec.name, lun.lun)
                    .in_scope(|| crate::gateways::open_lun_store(&lun.store))
                    .with_context(|| {
                        format!(
                            "target {} LUN {}: cannot open backing store",
                            spec.name, lun.lun
                        )
                    })?;
                luns.push((lun.clone(), store));
            }
            opened.push((spec.name.clone(), luns));
        }
        Self::with_stores(opened, portal, limits)
    }

    /// Builds the targets over stores that are already open (tests use this to put a mock
    /// or an in-memory store behind a LUN).
    pub fn with_stores(
        targets: Vec<OpenTarget>,
        portal: SocketAddr,
        limits: iscsi::Limits,
    ) -> Result<Self> {
        let mut by_name = HashMap::new();
        for (name, luns) in targets {
            if by_name.contains_key(&name) {
                bail!("target {name} is configured twice");
            }
            let target = Target::build(name.clone(), luns)?;
            by_name.insert(name, Arc::new(target));
        }
        let iscsi = Arc::new(iscsi_config(
            by_name.keys(),
            &[portal],
            limits.clone(),
            PORTAL_GROUP_TAG,
        ));
        let access = RwLock::new(iscsi.access.clone());
        let by_name = Arc::new(RwLock::new(by_name));
        for target in by_name.read().expect("targets lock").values() {
            target
                .scsi
                .set_copy_peers(Arc::new(Directory(Arc::downgrade(&by_name))));
        }
        Ok(Targets {
            iscsi: RwLock::new(iscsi),
            limits: RwLock::new(limits),
            connection_limits: RwLock::new(None),
            portal: RwLock::new(portal),
            added_portals: RwLock::new(Vec::new()),
            targets: by_name,
            access,
            sessions: Default::default(),
            registry: Default::default(),
            alua: RwLock::new(None),
        })
    }

    /// The ALUA target port groups reported now, when set.
    pub fn alua(&self) -> Option<scsi::Alua> {
        self.alua.read().expect("targets lock").clone()
    }

    /// Reports ALUA with `alua` on every target from now on (and on those added later).
    /// A target that reported other groups or states before tells every nexus of its LUs
    /// (ASYMMETRIC ACCESS STATE CHANGED, `scsi::ScsiTarget::set_alua`). The next logins
    /// and SendTargets answers give this gateway's group as the portal group tag.
    pub fn set_alua(&self, alua: scsi::Alua) {
        let targets = self.targets.read().expect("targets lock");
        *self.alua.write().expect("targets lock") = Some(alua.clone());
        for target in targets.values() {
            target.scsi.set_alua(alua.clone());
        }
        self.rebuild_iscsi(&targets);
    }

    /// This gateway's target portal group tag (RFC 7143 13.9, TargetPortalGroupTag; the
    /// `,tpgt` of SendTargets addresses): its ALUA target port group's id, else 1. Its
    /// iSCSI target port name is then `<target>,t,0x<tag>` (RFC 7143 4.2.7.1), one target
    /// port per group, as the relative target port identifier of VPD page 83h says.
    pub fn portal_group_tag(&self) -> u16 {
        self.alua
            .read()
            .expect("targets lock")
            .as_ref()
            .map_or(PORTAL_GROUP_TAG, |alua| alua.own.id)
    }

    /// Rebuilds the iSCSI configuration of the next connections from `targets` (the
    /// locked map) and the portals, limits and portal group tag now.
    fn rebuild_iscsi(&self, targets: &HashMap<String, Arc<Target>>) {
        let config = iscsi_config(
            targets.keys(),
            &self.portals(),
            self.limits(),
            self.portal_group_tag(),
        );
        *self.iscsi.write().expect("targets lock") = Arc::new(config);
    }

    /// Puts target port group `group` in `state` on every target (see
    /// [`Targets::set_alua`]); whether it was in another state.
    pub fn set_alua_state(&self, group: u16, state: scsi::AccessState) -> Result<bool> {
        let targets = self.targets.read().expect("targets lock");
        let mut alua = self.alua.write().expect("targets lock");
        let groups = alua.as_mut().ok_or(scsi::BadAlua::Off)?;
        let entry = std::iter::once(&mut groups.own)
            .chain(groups.others.iter_mut())
            .find(|g| g.id == group)
            .ok_or(scsi::BadAlua::UnknownGroup(group))?;
        let changed = entry.state != state;
        entry.state = state;
        for target in targets.values() {
            target.scsi.set_alua(groups.clone());
        }
        Ok(changed)
    }

    /// The iSCSI configuration connections start with now: the targets served and the
    /// current access policy, addresses as configured.
    pub fn iscsi_config(&self) -> Arc<iscsi::Config> {
        let current = self.iscsi.read().expect("targets lock").clone();
        let access = self.access();
        if Arc::ptr_eq(&access, &current.access) {
            return current;
        }
        let mut config = (*current).clone();
        config.access = access;
        Arc::new(config)
    }

    /// Serves `target` under its name from now on (replacing a target of that name), or
    /// stops serving `name` when `target` is `None`. Sessions of a replaced target move to
    /// the new one at their next command.
    pub fn replace(&self, name: &str, target: Option<Target>) {
        let mut targets = self.targets.write().expect("targets lock");
        let new = target.map(Arc::new);
        if let (Some(new), Some(alua)) = (&new, self.alua()) {
            // A new target starts with the groups; a successor shares them already (and
            // with `--alua-failover` their states are the fence's, not these).
            if !new.scsi.has_alua() {
                new.scsi.set_alua(alua);
            }
        }
        if let Some(new) = &new {
            // A successor has them already.
            new.scsi
                .set_copy_peers(Arc::new(Directory(Arc::downgrade(&self.targets))));
        }
        let old = match &new {
            Some(target) => targets.insert(name.to_string(), target.clone()),
            None => targets.remove(name),
        };
        if let Some(old) = old {
            old.stale.store(true, Ordering::Relaxed);
        }
        // The old version's sessions move on at their next command; what they still have
        // at the replaced stores finishes there before the new stores serve.
        if let Some(new) = new {
            new.start_handovers();
        }
        self.rebuild_iscsi(&targets);
    }

    /// Offers the targets at `portal` as the main portal from now on (SendTargets lists it
    /// first).
    pub fn set_portal(&self, portal: SocketAddr) {
        let targets = self.targets.read().expect("targets lock");
        *self.portal.write().expect("targets lock") = portal;
        self.rebuild_iscsi(&targets);
    }

    /// Offers the targets at `added` beside the main portal from now on (SendTargets).
    pub fn set_added_portals(&self, added: Vec<SocketAddr>) {
        let targets = self.targets.read().expect("targets lock");
        *self.added_portals.write().expect("targets lock") = added;
        self.rebuild_iscsi(&targets);
    }

    /// What the next logins negotiate with.
    pub fn limits(&self) -> iscsi::Limits {
        self.limits.read().expect("targets lock").clone()
    }

    /// What the next logins negotiate with (digests required, MaxRecvDataSegmentLength,
    /// burst lengths); sessions logged in keep what they negotiated (RFC 7143: keys are
    /// negotiated once, at login).
    pub fn set_limits(&self, limits: iscsi::Limits) {
        let targets = self.targets.read().expect("targets lock");
        *self.limits.write().expect("targets lock") = limits;
        self.rebuild_iscsi(&targets);
    }

    /// The time limits and login bounds of the next connections (`None`: the server's).
    pub fn connection_limits(&self) -> Option<crate::ConnectionLimits> {
        *self.connection_limits.read().expect("targets lock")
    }

    /// Gives the next connections `limits`; connections open now keep theirs.
    pub fn set_connection_limits(&self, limits: crate::ConnectionLimits) {
        *self.connection_limits.write().expect("targets lock") = Some(limits);
    }

    /// Every portal: the main one first, then those added.
    pub fn portals(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.portal()];
        all.extend(self.added_portals.read().expect("targets lock").iter());
        all
    }

    /// The names of the targets served, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .targets
            .read()
            .expect("targets lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The address the main portal listens on (`--portal`, or `portal` in the file).
    pub fn portal(&self) -> SocketAddr {
        *self.portal.read().expect("targets lock")
    }

    /// The iSCSI configuration for a connection accepted on `local`. On a wildcard portal
    /// (`0.0.0.0`, `[::]`) SendTargets must not tell initiators to connect to the wildcard,
    /// so its address becomes the one the initiator reached us on (at that portal's port).
    pub fn iscsi_config_for(&self, local: SocketAddr) -> Arc<iscsi::Config> {
        let current = self.iscsi_config();
        let portals = self.portals();
        if !portals.iter().any(|p| p.ip().is_unspecified()) {
            return current;
        }
        let mut config = (*current).clone();
        let addresses = portal_addresses(&portals, Some(local), current.portal_group_tag);
        for target in &mut config.targets {
            target.addresses = addresses.clone();
        }
        Arc::new(config)
    }

    /// The access policy (ACLs and CHAP credentials) logins are checked against.
    pub fn access(&self) -> Arc<AccessPolicy> {
        self.access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts the targets under `policy` for the logins from now on (sessions already logged
    /// in keep running). Refused, keeping the old policy, if `policy` breaks a rule.
    pub fn replace_access(&self, policy: AccessPolicy) -> Result<(), PolicyError> {
        policy.validate()?;
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        Ok(())
    }

    /// Tells every target's copy manager the time, every `scsi::ROD_TOKEN_TICK`, for as
    /// long as the daemon runs: ROD tokens left unused for their inactivity timeout expire
    /// (`scsi::ScsiTarget::expire_rod_tokens`).
    pub async fn expire_rod_tokens(self: Arc<Self>) {
        let mut tick = tokio::time::interval(scsi::ROD_TOKEN_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = std::time::Instant::now();
            for name in self.names() {
                if let Some(target) = self.get(&name) {
                    target.scsi.expire_rod_tokens(now);
                }
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Target>> {
        self.targets
            .read()
            .expect("targets lock")
            .get(name)
            .cloned()
    }

    /// Every LUN's store, as (target name, LUN, store), sorted by target and LUN.
    pub fn stores(&self) -> Vec<(String, u64, Arc<dyn BlockStore>)> {
        let mut all: Vec<_> = self
            .targets
            .read()
            .expect("targets lock")
            .values()
            .flat_map(|t| {
                t.stores
                    .iter()
                    .map(|(lun, store)| (t.name.clone(), *lun, store.clone()))
            })
            .collect();
        all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        all
    }
}

/// The SendTargets addresses of `portals`; a wildcard one becomes `local`'s address at
/// its port when the connection's local address is known.
fn portal_addresses(portals: &[SocketAddr], local: Option<SocketAddr>, tpgt: u16) -> Vec<String> {
    let mut addresses: Vec<String> = Vec::new();
    for portal in portals {
        let addr = match local {
            Some(local) if portal.ip().is_unspecified() => {
                SocketAddr::new(local.ip(), portal.port())
            }
            _ => *portal,
        };
        let address = target_address(addr, tpgt);
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    addresses
}

/// The iSCSI configuration offering `names` (sorted, so SendTargets answers in a stable
/// order) at `portals`, all of them in portal group `tpgt`.
fn iscsi_config<'a>(
    names: impl Iterator<Item = &'a String>,
    portals: &[SocketAddr],
    limits: iscsi::Limits,
    tpgt: u16,
) -> iscsi::Config {
    let mut names: Vec<&String> = names.collect();
    names.sort();
    let addresses = portal_addresses(portals, None, tpgt);
    let targets = names
        .into_iter()
        .map(|name| iscsi::TargetInfo {
            name: name.clone(),
            alias: None,
            addresses: addresses.clone(),
        })
        .collect();
    iscsi::Config {
        targets,
        limits,
        portal_group_tag: tpgt,
        access: Default::default(),
    }
}

/// Restores the persistent reservations a LUN's store keeps (APTPL). A store that keeps no
/// metadata has none; one that cannot be read, or holds something else, stops the LUN
/// from opening: serving it without its reservations would drop the fencing.
fn restore_reservations(
    scsi: &ScsiTarget,
    target: &str,
    lun: u16,
    store: &dyn BlockStore,
) -> Result<()> {
    // A shared LU's state is kept in two objects (`crate::gateways::read_state`).
    let saved = if scsi.reservations_shared(lun) {
        crate::gateways::read_state(store)
    } else {
        store.read_metadata(scsi::RESERVATIONS_METADATA)
    };
    match saved {
        Ok(Some(saved)) => {
            scsi.restore_reservations(lun, &saved).with_context(|| {
                format!("target {target} LUN {lun}: saved persistent reservations")
            })?;
            tracing::info!(target = %target, lun, "persistent reservations restored (APTPL)");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) if e.kind == store_api::ErrorKind::Unsupported => Ok(()),
        Err(e) => Err(e).with_context(|| {
            format!("target {target} LUN {lun}: cannot read saved persistent reservations")
        }),
    }
}

/// Makes a new LUN's caching and control mode pages saveable on a store that keeps
/// metadata, with the values it keeps ([`scsi::MODE_PAGES_METADATA`], saved by a MODE
/// SELECT with SP here or through another gateway), which are the LUN's from the start. A
/// store without metadata (memory) saves none; one that cannot be read, or holds something
/// else, stops the LUN from opening: serving it with the defaults could turn a write cache
/// a host switched off back on.
fn load_mode_pages(
    scsi: &ScsiTarget,
    target: &str,
    lun: u16,
    store: &dyn BlockStore,
) -> Result<()> {
    let what = || format!("target {target} LUN {lun}: saved mode pages");
    let kept = match store.read_metadata(scsi::MODE_PAGES_METADATA) {
        Ok(kept) => kept,
        Err(e) if e.kind == store_api::ErrorKind::Unsupported => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read them", what())),
    };
    scsi.load_mode_pages(lun, kept.as_deref())
        .with_context(what)?;
    if kept.is_some() {
        tracing::info!(target = %target, lun, "saved mode pages loaded");
    }
    Ok(())
}

/// Writes a kept logical unit's saved mode pages to the store it moves to, unless that
/// store holds them already.
fn carry_mode_pages(
    scsi: &ScsiTarget,
    target: &str,
    lun: u16,
    store: &dyn BlockStore,
) -> Result<()> {
    let Some(saved) = scsi.mode_pages_metadata(lun) else {
        return Ok(());
    };
    let what = || format!("target {target} LUN {lun}: saved mode pages");
    match store.read_metadata(scsi::MODE_PAGES_METADATA) {
        Ok(existing) if existing.as_deref() == Some(&saved[..]) => Ok(()),
        Ok(_) => store
            .write_metadata(scsi::MODE_PAGES_METADATA, &saved)
            .with_context(|| format!("{}: cannot write them to the new store", what())),
        Err(e) if e.kind == store_api::ErrorKind::Unsupported => Ok(()),
        Err(e) => Err(e).with_context(what),
    }
}

/// Writes a kept logical unit's persistent reservations (APTPL) to the store it moves to,
/// unless that store holds them already, so a restart restores what runs now.
fn carry_reservations(
    scsi: &ScsiTarget,
    target: &str,
    lun: u16,
    store: &dyn BlockStore,
) -> Result<()> {
    if let (true, Some(owner)) = (scsi.reservations_shared(lun), crate::gateways::gateway()) {
        return crate::gateways::carry_shared(scsi, target, lun, store, owner);
    }
    let Some(saved) = scsi.reservation_metadata(lun) else {
        return Ok(());
    };
    let what = || format!("target {target} LUN {lun}: persistent reservations (APTPL)");
    let existing = match store.read_metadata(scsi::RESERVATIONS_METADATA) {
        Ok(existing) => existing,
        Err(e) if e.kind == store_api::ErrorKind::Unsupported => return Ok(()),
        Err(e) => return Err(e).with_context(what),
    };
    let wanted = existing.is_some() || scsi.reservations_persist(lun);
    if wanted && existing.as_deref() != Some(&saved[..]) {
        store
            .write_metadata(scsi::RESERVATIONS_METADATA, &saved)
            .with_context(|| format!("{}: cannot write them to the new store", what()))?;
    }
    Ok(())
}

/// The portal group tag without ALUA: every gateway one portal group, one target port.
const PORTAL_GROUP_TAG: u16 = 1;

/// A SendTargets TargetAddress value (RFC 7143 13.8, 6.3): `ip:port,tpgt`, an IPv6 address
/// in brackets. An IPv4-mapped IPv6 address (a v4 client on a dual-stack socket) is written
/// as IPv4; an IPv6 zone index means nothing to the initiator and is left out.
fn target_address(addr: SocketAddr, tpgt: u16) -> String {
    let port = addr.port();
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => format!("{ip}:{port},{tpgt}"),
        IpAddr::V6(ip) => format!("[{ip}]:{port},{tpgt}"),
    }
}

/// Identity of a LUN, stable across restarts and rebuilds: see [`lu_identity`].
fn lu_config(target: &str, lun: &LunSpec, store: &dyn BlockStore) -> LuConfig {
    let (serial, naa_id) = lu_identity(target, lun.lun, &lun.store.backing_store);
    let product = match lun.store.bstype.as_str() {
        "glfs" => "GLFS DISK",
        "memory" => "MEMORY DISK",
        _ => "FILE DISK",
    };
    LuConfig {
        vendor: "GFISCSI".into(),
        product: product.into(),
        revision: "0001".into(),
        serial,
        naa_id,
        geometry: store.geometry(),
        capabilities: store.capabilities(),
        write_cache: true,
        read_only: lun.read_only,
        soft_threshold: lun.soft_threshold.scsi(),
    }
}

/// Unit serial number and NAA designator of a LUN.
///
/// Multipath and `/dev/disk/by-id` key on these, so they must not change when the daemon is
/// rebuilt: they come from FNV-1a 64 (a fixed, published function), not from std's
/// `DefaultHasher`, whose algorithm may change between Rust releases.
///
/// * `h1` = FNV-1a 64 over the target name's bytes, a 0 byte, and the LUN as 2 big-endian
///   bytes; the serial number is `h1` as 16 lower-case hex digits.
/// * `h2` continues the same FNV state over a 0 byte and the backing store spec's bytes.
/// * The NAA designator is `h1` then `h2`, big-endian, with the top nibble set to 6 (NAA
///   IEEE Registered Extended; the 24-bit OUI is a locally chosen placeholder).
fn lu_identity(target: &str, lun: u16, backing_store: &str) -> (String, [u8; 16]) {
    let mut fnv = Fnv1a64::new();
    fnv.write(target.as_bytes());
    fnv.write(&[0]);
    fnv.write(&lun.to_be_bytes());
    let h1 = fnv.value();
    fnv.write(&[0]);
    fnv.write(backing_store.as_bytes());
    let h2 = fnv.value();
    let mut naa_id = [0u8; 16];
    naa_id[..8].copy_from_slice(&h1.to_be_bytes());
    naa_id[8..].copy_from_slice(&h2.to_be_bytes());
    naa_id[0] = 0x60 | (naa_id[0] & 0x0f);
    (format!("{h1:016x}"), naa_id)
}

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn value(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_addresses_follow_rfc_7143_syntax() {
        let cases = [
            ("127.0.0.1:3260", "127.0.0.1:3260,1"),
            ("[::1]:3260", "[::1]:3260,1"),
            ("[fe80::1%2]:860", "[fe80::1]:860,1"),
            ("[::ffff:192.0.2.7]:3260", "192.0.2.7:3260,1"),
        ];
        for (addr, expected) in cases {
            assert_eq!(target_address(addr.parse().unwrap(), 1), expected, "{addr}");
        }
    }

    fn addresses(config: &iscsi::Config) -> Vec<String> {
        config.targets[0].addresses.clone()
    }

    #[test]
    fn a_wildcard_portal_advertises_the_connections_local_address() {
        let no_luns = || vec![("iqn.2026-11.io.glfs-iscsi:t".to_string(), vec![])];
        for wildcard in ["0.0.0.0:3260", "[::]:3260"] {
            let targets =
                Targets::with_stores(no_luns(), wildcard.parse().unwrap(), Default::default())
                    .unwrap();
            let v4 = targets.iscsi_config_for("192.0.2.7:3260".parse().unwrap());
            assert_eq!(addresses(&v4), ["192.0.2.7:3260,1"], "{wildcard}");
            let v6 = targets.iscsi_config_for("[2001:db8::5]:3260".parse().unwrap());
            assert_eq!(addresses(&v6), ["[2001:db8::5]:3260,1"], "{wildcard}");
        }
        let specific = Targets::with_stores(
            no_luns(),
            "192.0.2.9:3260".parse().unwrap(),
            Default::default(),
        )
        .unwrap();
        let config = specific.iscsi_config_for("192.0.2.9:3260".parse().unwrap());
        assert_eq!(addresses(&config), ["192.0.2.9:3260,1"]);
    }

    #[test]
    fn send_targets_offers_every_portal_added() {
        let targets = Targets::with_stores(
            vec![("iqn.2026-11.io.glfs-iscsi:t".to_string(), vec![])],
            "0.0.0.0:3260".parse().unwrap(),
            Default::default(),
        )
        .unwrap();
        targets.set_added_portals(vec!["192.0.2.9:3261".parse().unwrap()]);
        let config = targets.iscsi_config_for("192.0.2.7:3260".parse().unwrap());
        // RFC 7143 13.8: one TargetAddress per portal, `address:port,tpgt`.
        assert_eq!(addresses(&config), ["192.0.2.7:3260,1", "192.0.2.9:3261,1"]);
        targets.set_added_portals(vec![]);
        let config = targets.iscsi_config_for("192.0.2.7:3260".parse().unwrap());
        assert_eq!(addresses(&config), ["192.0.2.7:3260,1"]);
    }

    #[test]
    fn a_replaced_access_policy_applies_to_the_next_connections() {
        use iscsi::auth::{Access, AclEntry, TargetAccess};
        let name = "iqn.2026-11.io.glfs-iscsi:t";
        let initiator = "iqn.2026-11.io.example:host";
        for portal in ["127.0.0.1:3260", "0.0.0.0:3260"] {
            let targets = Targets::with_stores(
                vec![(name.into(), vec![])],
                portal.parse().unwrap(),
                Default::default(),
            )
            .unwrap();
            let local = "127.0.0.1:3260".parse().unwrap();
            let before = targets.iscsi_config_for(local);
            assert_eq!(
                before.access.check(name, initiator, None),
                Access::Granted(None)
            );
            let mut policy = AccessPolicy::new();
            let acl = vec![AclEntry {
                initiator: Some("iqn.2026-11.io.example:other".into()),
                ..Default::default()
            }];
            policy
                .set_target(name, TargetAccess { acl, chap: None })
                .unwrap();
            targets.replace_access(policy).unwrap();
            let after = targets.iscsi_config_for(local);
            assert_eq!(
                after.access.check(name, initiator, None),
                Access::Denied,
                "{portal}"
            );
            assert_eq!(
                targets.iscsi_config().access.check(name, initiator, None),
                Access::Denied
            );
            assert_eq!(
                before.access.check(name, initiator, None),
                Access::Granted(None)
            );
        }
    }

    #[test]
    fn fnv1a64_known_answers() {
        // Test vectors of the FNV reference (draft-eastlake-fnv): "", "a", "foobar".
        for (input, expected) in [
            ("", 0xcbf2_9ce4_8422_2325u64),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ] {
            let mut h = Fnv1a64::new();
            h.write(input.as_bytes());
            assert_eq!(h.value(), expected, "{input:?}");
        }
    }

    #[test]
    fn lun_identity_is_pinned() {
        // Changing these changes every exported disk's identity (multipath WWIDs,
        // /dev/disk/by-id): do not, unless that is the point.
        let (serial, naa) = lu_identity("iqn.2026-11.io.glfs-iscsi:disk1", 0, "vol@host:lun0.img");
        assert_eq!(serial, "0c7ae9a975775998");
        assert_eq!(
            naa,
            [
                0x6c, 0x7a, 0xe9, 0xa9, 0x75, 0x77, 0x59, 0x98, 0x19, 0x83, 0xdf, 0xe1, 0x09, 0x3b,
                0x06, 0x55
            ]
        );
        let (serial, _) = lu_identity("iqn.2026-11.io.glfs-iscsi:disk1", 1, "vol@host:lun0.img");
        assert_ne!(
            serial, "0c7ae9a975775998",
            "the LUN number is part of the identity"
        );
    }
}

#[cfg(test)]
mod shared_reservations_tests {
    use super::*;
    use bytes::Bytes;
    use store_api::LockOwner;

    /// A target with LUN 0 on `store`, its reservations shared.
    fn shared_target(store: &dyn BlockStore) -> ScsiTarget {
        let mut scsi = ScsiTarget::new();
        let spec = LunSpec {
            lun: 0,
            store: StoreOptions::default(),
            read_only: false,
            soft_threshold: Default::default(),
        };
        scsi.add_lun(0, lu_config("iqn.2026-11.test:t", &spec, store));
        scsi.share_reservations(0, "gw-test");
        scsi
    }

    fn memory() -> Arc<dyn BlockStore> {
        Arc::new(backstore::MemoryStore::new(store_api::Geometry {
            block_size: 512,
            num_blocks: 64,
        }))
    }

    /// A state with one registration, as a gateway's REGISTER leaves it.
    fn registered(scsi: &ScsiTarget) -> Vec<u8> {
        scsi.open_nexus(
            1,
            scsi::InitiatorPort {
                name: "iqn.2026-11.test:host".into(),
                isid: [0x80, 0, 0, 0, 0, 1],
            },
        );
        // TEST UNIT READY takes the POWER ON unit attention of the new nexus.
        let tur = scsi::Command {
            nexus: 1,
            lun: 0,
            cdb: Bytes::from_static(&[0; 6]),
            data_out: Default::default(),
            expected_len: 0,
        };
        assert!(matches!(scsi.start(tur), scsi::Start::Done(_)));
        let mut params = vec![0u8; 24];
        params[8..16].copy_from_slice(&7u64.to_be_bytes());
        let cmd = scsi::Command {
            nexus: 1,
            lun: 0,
            cdb: Bytes::from_static(&[0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0]),
            data_out: Bytes::from(params).into(),
            expected_len: 24,
        };
        let scsi::Start::SharedReservations(shared) = scsi.start(cmd) else {
            panic!("a shared LU hands PERSISTENT RESERVE OUT out");
        };
        let (mut run, _pending) = shared.into_parts();
        run.run(scsi, None)
            .unwrap()
            .expect("a change to write back")
    }

    #[test]
    fn a_shared_lu_moving_store_loads_the_state_there_or_brings_its_own() {
        let owner = LockOwner::new("gw").unwrap();
        let old = memory();
        let ours = shared_target(old.as_ref());
        let state = registered(&ours);
        assert_eq!(ours.reservation_metadata(0), Some(state.clone()));

        // The new store has no state yet: it gets ours.
        let empty = memory();
        // (`carry_reservations` takes this path once a gateway is named.)
        crate::gateways::carry_shared(&ours, "t", 0, empty.as_ref(), &owner).unwrap();
        assert_eq!(empty.read_metadata("pr").unwrap(), Some(state.clone()));

        // The new store holds another gateway's state: that is loaded, never overwritten.
        let fresh = shared_target(old.as_ref());
        let theirs = memory();
        theirs.write_metadata("pr", &state).unwrap();
        crate::gateways::carry_shared(&fresh, "t", 0, theirs.as_ref(), &owner).unwrap();
        assert_eq!(fresh.reservation_metadata(0), Some(state.clone()));
        assert_eq!(theirs.read_metadata("pr").unwrap(), Some(state));

        // Something else there is an error, not a silent reset.
        let bad = memory();
        bad.write_metadata("pr", b"not ours").unwrap();
        assert!(crate::gateways::carry_shared(&fresh, "t", 0, bad.as_ref(), &owner).is_err());
    }
}

#[cfg(test)]
mod alua_tests {
    use super::*;
    use scsi::{AccessState, Alua, PortGroup};

    const T: &str = "iqn.2026-11.io.glfs-iscsi:t";

    /// LUN 0 on a small memory store.
    fn lun() -> (LunSpec, Arc<dyn BlockStore>) {
        let spec = LunSpec {
            lun: 0,
            store: StoreOptions::default(),
            read_only: false,
            soft_threshold: Default::default(),
        };
        let store: Arc<dyn BlockStore> =
            Arc::new(backstore::MemoryStore::new(store_api::Geometry {
                block_size: 512,
                num_blocks: 64,
            }));
        (spec, store)
    }

    fn targets() -> Targets {
        let open = vec![(T.to_string(), vec![lun()])];
        Targets::with_stores(open, "127.0.0.1:3260".parse().unwrap(), Default::default()).unwrap()
    }

    fn alua(own: u16, state: AccessState, peer: u16) -> Alua {
        let peer = PortGroup {
            id: peer,
            state: AccessState::ActiveOptimized,
        };
        Alua::new(PortGroup { id: own, state }, vec![peer]).unwrap()
    }

    fn own_state(targets: &Targets) -> AccessState {
        targets.get(T).unwrap().scsi.alua().unwrap().own.state
    }

    #[test]
    fn two_configurations_in_one_process_keep_their_own_states() {
        let (a, b) = (targets(), targets());
        a.set_alua(alua(1, AccessState::ActiveOptimized, 2));
        b.set_alua(alua(2, AccessState::Standby, 1));
        assert!(a.set_alua_state(1, AccessState::Transitioning).unwrap());
        assert_eq!(own_state(&a), AccessState::Transitioning);
        assert_eq!(own_state(&b), AccessState::Standby);
        assert!(!a.set_alua_state(1, AccessState::Transitioning).unwrap());
        assert!(a.set_alua_state(7, AccessState::Standby).is_err());
        // A target built later starts with the states in force now.
        let rebuilt = Target::build(T.to_string(), vec![lun()]).unwrap();
        assert!(rebuilt.scsi.alua().is_none());
        a.replace(T, Some(rebuilt));
        assert_eq!(own_state(&a), AccessState::Transitioning);
        // Without ALUA there is nothing to change.
        assert!(targets().set_alua_state(1, AccessState::Standby).is_err());
    }

    #[test]
    fn the_portal_group_tag_is_the_alua_group() {
        let targets = targets();
        // Without ALUA: portal group 1 (RFC 7143 13.8: `address:port,tpgt`).
        assert_eq!(targets.portal_group_tag(), 1);
        assert_eq!(targets.iscsi_config().portal_group_tag, 1);
        assert_eq!(
            targets.iscsi_config().targets[0].addresses,
            ["127.0.0.1:3260,1"]
        );
        // In group 7: tag 7 in logins and SendTargets, also for portals added later and
        // for the address a wildcard portal answers with; a state change keeps it.
        targets.set_alua(alua(7, AccessState::ActiveOptimized, 1));
        assert_eq!(targets.portal_group_tag(), 7);
        assert_eq!(targets.iscsi_config().portal_group_tag, 7);
        assert_eq!(
            targets.iscsi_config().targets[0].addresses,
            ["127.0.0.1:3260,7"]
        );
        targets.set_alua_state(7, AccessState::Standby).unwrap();
        targets.set_added_portals(vec!["192.0.2.9:3261".parse().unwrap()]);
        let config = targets.iscsi_config();
        assert_eq!(config.portal_group_tag, 7);
        assert_eq!(
            config.targets[0].addresses,
            ["127.0.0.1:3260,7", "192.0.2.9:3261,7"]
        );
        let wildcard = Targets::with_stores(
            vec![(T.to_string(), vec![lun()])],
            "0.0.0.0:3260".parse().unwrap(),
            Default::default(),
        )
        .unwrap();
        wildcard.set_alua(alua(3, AccessState::ActiveOptimized, 1));
        let config = wildcard.iscsi_config_for("192.0.2.7:3260".parse().unwrap());
        assert_eq!(config.portal_group_tag, 3);
        assert_eq!(config.targets[0].addresses, ["192.0.2.7:3260,3"]);
    }
}
