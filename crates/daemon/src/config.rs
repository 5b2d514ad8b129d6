//! The configuration file (`--config FILE`): many targets and LUNs, kept across restarts.
//!
//! ```toml
//! portal = "0.0.0.0:3260"        # optional; else --portal (a change moves it live)
//! portals = ["192.0.2.7:3260"]    # more portals (`admin portal add/remove` changes them live)
//! command_timeout = 25           # optional; else --command-timeout
//! require_header_digest = true   # optional; or --require-header-digest (likewise data)
//! max_recv_data_segment_length = 262144  # optional login keys, bytes (also
//!                                         # max_burst_length, first_burst_length)
//! max_outstanding_r2t = 4        # optional login keys: 1 to 65535,
//! immediate_data = true          # Yes/No offered (ANDed with the initiator's),
//! initial_r2t = false            # Yes/No asked for (ORed with the initiator's)
//! tcp_congestion = "cubic"       # optional; else --tcp-congestion, else the kernel's
//!                                # (checked against the kernel; new connections)
//! gateway_id = "gateway-a"       # optional; else --gateway-id (read at start only)
//! alua_group = 1                 # optional; else --alua-group, with alua_state and
//! alua_state = "standby"         # alua_peer as --alua-state, --alua-peer (states live)
//! alua_peer = ["2:active-optimized"]
//! alua_failover = true           # optional; or --alua-failover: the data fence's holder is
//!                                # active, the others standby (read at start only)
//! alua_stall_after = 8           # optional, with alua_failover; or --alua-stall-after:
//!                                # seconds without the active gateway's heartbeat before
//!                                # a standby takes over (2 to 3600; read at start only)
//!
//! [[target]]
//! name = "iqn.2026-11.com.example:disk1"
//!
//! [[target.lun]]
//! lun = 0
//! bstype = "glfs"
//! backing_store = "vol1@gluster1,gluster2:disks/disk1.img"
//! bsopts = "logfile=/var/log/glfs-iscsi/gfapi.log;loglevel=3"
//! size = "100G"                  # create the file with this size when missing
//! block_size = 512
//! read_only = false
//! provisioning = "full"          # optional: "thin" (default: sparse file, UNMAP) or "full"
//!                                # (every block allocated before it is served; no UNMAP)
//! soft_threshold = "10%"         # optional, thin: the storage's free space at which the
//!                                # hosts are told (THIN PROVISIONING SOFT THRESHOLD
//!                                # REACHED): "10%" of the LUN's size (default), "50G", "off"
//! alua_preferred = 2             # optional, with alua_failover: the group this LUN goes to
//!                                # when gateways start together (else the groups in turn)
//! ```
//!
//! Access control (`allow_any_initiator`, `[discovery_chap]`, `[target.chap]`,
//! `[[target.acl]]`) is described in [`crate::auth`].

use crate::targets::{LunSpec, TargetSpec};
use anyhow::{bail, Context, Result};
use backstore::StoreOptions;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use units::parse_size;

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub portal: Option<SocketAddr>,
    /// Portals served beside `portal`; added and removed live (`admin portal`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub portals: Vec<SocketAddr>,
    pub command_timeout: Option<u64>,
    /// Seconds; see `--nop-in-interval` and the others of [`SETTINGS`].
    pub nop_in_interval: Option<u64>,
    pub nop_in_timeout: Option<u64>,
    pub login_timeout: Option<u64>,
    pub shutdown_grace: Option<u64>,
    pub max_sessions_per_target: Option<u64>,
    pub max_connections_per_initiator: Option<u64>,
    /// A size, e.g. "2G"; see `--unsolicited-data-budget`.
    pub unsolicited_data_budget: Option<String>,
    /// MaxRecvDataSegmentLength the target declares (bytes, 512..=16777215).
    pub max_recv_data_segment_length: Option<u32>,
    /// MaxBurstLength the target accepts at most (bytes, 512..=16777215).
    pub max_burst_length: Option<u32>,
    /// FirstBurstLength the target accepts at most (bytes, 512..=16777215, at most
    /// MaxBurstLength).
    pub first_burst_length: Option<u32>,
    /// MaxOutstandingR2T the target accepts at most (1..=65535, RFC 7143 13.17).
    pub max_outstanding_r2t: Option<u32>,
    /// ImmediateData the target offers (the result is the AND with the initiator's).
    pub immediate_data: Option<bool>,
    /// InitialR2T the target asks for (the result is the OR with the initiator's).
    pub initial_r2t: Option<bool>,
    /// Normal sessions must negotiate HeaderDigest=CRC32C (`--require-header-digest`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_header_digest: bool,
    /// Normal sessions must negotiate DataDigest=CRC32C (`--require-data-digest`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_data_digest: bool,
    /// TCP congestion control of the iSCSI connections (`--tcp-congestion`), e.g.
    /// "cubic"; checked against the kernel at start and at a reload.
    pub tcp_congestion: Option<String>,
    pub gfapi_library: Option<PathBuf>,
    /// This gateway's name among several exporting the same LUNs (`--gateway-id`); read
    /// at start only, the command line's wins.
    pub gateway_id: Option<String>,
    /// Implicit ALUA (`--alua-group`, `--alua-state`, `--alua-peer` as `ID:STATE`); the
    /// command line's `--alua-group` wins with its state and peers. The states change
    /// live (`admin alua set`, a reload); the groups at the next start.
    pub alua_group: Option<u64>,
    pub alua_state: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alua_peer: Vec<String>,
    /// Active/passive failover through the data fence (`--alua-failover`); read at start
    /// only. Needs `gateway_id` (or `--gateway-id`) and `alua_group`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alua_failover: bool,
    /// With `alua_failover`: the stall bound in seconds (`--alua-stall-after`,
    /// `daemon::stall`); read at start only.
    pub alua_stall_after: Option<u64>,
    /// Serve targets without ACL or CHAP on a non-loopback portal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_any_initiator: bool,
    /// CHAP for discovery sessions.
    pub discovery_chap: Option<crate::auth::ChapEntry>,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    pub name: String,
    #[serde(default, rename = "lun")]
    pub luns: Vec<LunEntry>,
    /// CHAP every initiator of the target must pass.
    pub chap: Option<crate::auth::ChapEntry>,
    /// Initiators admitted (none: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<crate::auth::AclToml>,
    /// Serve this target to any initiator on a non-loopback portal without ACL or CHAP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_any_initiator: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LunEntry {
    pub lun: u16,
    pub bstype: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backing_store: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bsopts: String,
    pub size: Option<String>,
    pub block_size: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// `thin` or `full` (see [`backstore::Provisioning`]); unset is thin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<String>,
    /// A thin LUN's soft threshold (see [`crate::space::SoftThreshold`]); unset is 10%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_threshold: Option<String>,
    /// With alua failover: the target port group this LUN goes to when gateways start
    /// together (`daemon::failover::preferred`); unset, the groups take the LUNs in turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alua_preferred: Option<u16>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// The file's text for this configuration; [`ConfigFile::parse`] reads it back.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).context("cannot write the configuration as TOML")
    }

    /// This configuration with every secret written in it replaced by
    /// [`crate::auth::REDACTED`]: what `admin export` prints.
    pub fn redacted(&self) -> ConfigFile {
        let mut config = self.clone();
        config.discovery_chap = config.discovery_chap.map(|c| c.redacted());
        for t in &mut config.targets {
            t.chap = t.chap.as_ref().map(|c| c.redacted());
            for e in &mut t.acl {
                e.chap = e.chap.as_ref().map(|c| c.redacted());
            }
        }
        config
    }

    /// Whether a secret is written in the configuration itself (rather than named by a
    /// file or an environment variable).
    pub fn has_inline_secrets(&self) -> bool {
        let inline = |c: &crate::auth::ChapEntry| c.secret.is_some() || c.mutual_secret.is_some();
        self.discovery_chap.as_ref().is_some_and(inline)
            || self.targets.iter().any(|t| {
                t.chap.as_ref().is_some_and(inline)
                    || t.acl.iter().filter_map(|e| e.chap.as_ref()).any(inline)
            })
    }

    /// Puts back the secrets [`ConfigFile::redacted`] hid, from `current`: the secret of
    /// the same CHAP entry (discovery, a target's, or the ACL entry of the same target
    /// with the same initiator and networks).
    pub fn unredact(&mut self, current: &ConfigFile) -> Result<()> {
        if let Some(chap) = &mut self.discovery_chap {
            chap.unredact(current.discovery_chap.as_ref(), "[discovery_chap]")?;
        }
        for t in &mut self.targets {
            let old = current.targets.iter().find(|o| o.name == t.name);
            if let Some(chap) = &mut t.chap {
                let what = format!("target {} [target.chap]", t.name);
                chap.unredact(old.and_then(|o| o.chap.as_ref()), &what)?;
            }
            for (i, e) in t.acl.iter_mut().enumerate() {
                let Some(chap) = &mut e.chap else { continue };
                let same = old.and_then(|o| {
                    o.acl
                        .iter()
                        .find(|a| a.initiator == e.initiator && a.networks == e.networks)
                });
                let what = format!("target {} ACL entry {}", t.name, i + 1);
                chap.unredact(same.and_then(|a| a.chap.as_ref()), &what)?;
            }
        }
        Ok(())
    }

    pub fn parse(text: &str) -> Result<Self> {
        let config: ConfigFile = toml::from_str(text).map_err(|e| {
            // toml's Display spans several lines with a snippet; keep it to one line.
            let line = e.span().map_or(1, |span| line_of(text, span.start));
            anyhow::anyhow!("line {line}: {}", e.message().trim())
        })?;
        if let Some(secs) = config.command_timeout {
            check_command_timeout(secs).context("command_timeout")?;
        }
        check_portals(&config.portals)?;
        config.iscsi_limits(iscsi::Limits::default())?;
        for (key, value) in config.settings() {
            if let Some(value) = value {
                check_setting(key, value)?;
            }
        }
        if let Some(size) = &config.unsolicited_data_budget {
            parse_size(size).map_err(|e| anyhow::anyhow!("unsolicited_data_budget: {e}"))?;
        }
        if let Some(name) = &config.tcp_congestion {
            name.parse::<crate::tcp::Congestion>()
                .map_err(|e| anyhow::anyhow!("tcp_congestion: {e}"))?;
        }
        config.gateway()?;
        Ok(config)
    }

    /// The stall bound the file sets (`alua_stall_after`), checked as its flag is; only
    /// with `alua_failover`.
    pub fn stall_after(&self) -> Result<Option<std::time::Duration>> {
        let Some(secs) = self.alua_stall_after else {
            return Ok(None);
        };
        if !self.alua_failover {
            bail!("alua_stall_after needs alua_failover");
        }
        crate::stall::parse_stall_after(&secs.to_string())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("alua_stall_after: {e}"))
    }

    /// The gateway name and the ALUA target port groups the file sets (`gateway_id`,
    /// `alua_group`, `alua_state`, `alua_peer`), checked as their flags are.
    pub fn gateway(&self) -> Result<(Option<store_api::LockOwner>, Option<scsi::Alua>)> {
        use crate::gateways::{parse_access_state, parse_group_id, parse_port_group};
        let owner = match &self.gateway_id {
            Some(id) => Some(
                store_api::LockOwner::new(id).map_err(|e| anyhow::anyhow!("gateway_id: {e}"))?,
            ),
            None => None,
        };
        let Some(group) = self.alua_group else {
            if self.alua_state.is_some() || !self.alua_peer.is_empty() {
                bail!("alua_state and alua_peer need alua_group");
            }
            if self.alua_failover {
                bail!("alua_failover needs alua_group");
            }
            self.stall_after()?;
            return Ok((owner, None));
        };
        self.stall_after()?;
        let id =
            parse_group_id(&group.to_string()).map_err(|e| anyhow::anyhow!("alua_group: {e}"))?;
        if self.alua_failover && self.alua_state.is_some() {
            bail!(
                "alua_state cannot be set with alua_failover (the data fence decides the states)"
            );
        }
        let state = match &self.alua_state {
            Some(s) => parse_access_state(s).map_err(|e| anyhow::anyhow!("alua_state: {e}"))?,
            None => scsi::AccessState::ActiveOptimized,
        };
        let peers = self
            .alua_peer
            .iter()
            .map(|p| parse_port_group(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("alua_peer: {e}"))?;
        let alua = scsi::Alua::new(scsi::PortGroup { id, state }, peers).context("alua_peer")?;
        Ok((owner, Some(alua)))
    }

    /// The targets, checked: valid names, no duplicate target or LUN, at least one LUN each.
    pub fn target_specs(&self, gfapi_library: Option<&PathBuf>) -> Result<Vec<TargetSpec>> {
        let mut names = HashSet::new();
        let mut specs = Vec::new();
        for target in &self.targets {
            check_iscsi_name(&target.name)?;
            if !names.insert(target.name.as_str()) {
                bail!("target {} is defined twice", target.name);
            }
            let mut luns = HashSet::new();
            let mut lun_specs = Vec::new();
            for lun in &target.luns {
                check_lun(lun.lun).with_context(|| format!("target {}", target.name))?;
                if !luns.insert(lun.lun) {
                    bail!("target {} defines LUN {} twice", target.name, lun.lun);
                }
                let create_size = lun
                    .size
                    .as_deref()
                    .map(parse_size)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("target {} LUN {}: {e}", target.name, lun.lun))?;
                if let Some(bs) = lun.block_size {
                    check_block_size(bs).map_err(|e| {
                        anyhow::anyhow!("target {} LUN {}: block_size: {e}", target.name, lun.lun)
                    })?;
                }
                let provisioning = lun
                    .provisioning
                    .as_deref()
                    .map(str::parse::<backstore::Provisioning>)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("target {} LUN {}: {e}", target.name, lun.lun))?
                    .unwrap_or_default();
                let soft_threshold = lun
                    .soft_threshold
                    .as_deref()
                    .map(str::parse::<crate::space::SoftThreshold>)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("target {} LUN {}: {e}", target.name, lun.lun))?
                    .unwrap_or_default();
                lun_specs.push(LunSpec {
                    lun: lun.lun,
                    read_only: lun.read_only,
                    soft_threshold,
                    store: StoreOptions {
                        bstype: lun.bstype.clone(),
                        backing_store: lun.backing_store.clone(),
                        bsopts: lun.bsopts.clone(),
                        create_size,
                        block_size: lun.block_size,
                        gfapi_library: self
                            .gfapi_library
                            .clone()
                            .or_else(|| gfapi_library.cloned()),
                        // Set where the store opens (`gateways::open_lun_store`).
                        shared: false,
                        provisioning,
                    },
                });
            }
            let chap = target
                .chap
                .as_ref()
                .map(|c| c.credentials(&format!("target {} [target.chap]", target.name)))
                .transpose()?;
            let acl = target
                .acl
                .iter()
                .enumerate()
                .map(|(i, e)| e.entry(&format!("target {} ACL entry {}", target.name, i + 1)))
                .collect::<Result<Vec<_>>>()?;
            specs.push(TargetSpec {
                name: target.name.clone(),
                luns: lun_specs,
                access: iscsi::auth::TargetAccess { acl, chap },
                allow_any_initiator: target.allow_any_initiator || self.allow_any_initiator,
            });
        }
        Ok(specs)
    }
}

impl ConfigFile {
    /// `base` with the login keys this file sets (RFC 7143 13.10-13.14 and 13.17: lengths
    /// 512 to 2^24-1 bytes, FirstBurstLength not above MaxBurstLength, MaxOutstandingR2T 1
    /// to 65535; ImmediateData and InitialR2T as offered); the error names the key.
    pub fn iscsi_limits(&self, mut base: iscsi::Limits) -> Result<iscsi::Limits> {
        let keys = [
            (
                "max_recv_data_segment_length",
                self.max_recv_data_segment_length,
                &mut base.max_recv_data_segment_length,
            ),
            (
                "max_burst_length",
                self.max_burst_length,
                &mut base.max_burst_length,
            ),
            (
                "first_burst_length",
                self.first_burst_length,
                &mut base.first_burst_length,
            ),
        ];
        for (key, value, slot) in keys {
            if let Some(value) = value {
                if !(512..=16_777_215).contains(&value) {
                    bail!("{key}: {value} is out of range 512..=16777215 (bytes)");
                }
                *slot = value;
            }
        }
        if let Some(value) = self.max_outstanding_r2t {
            if !(1..=65_535).contains(&value) {
                bail!("max_outstanding_r2t: {value} is out of range 1..=65535");
            }
            base.max_outstanding_r2t = value;
        }
        if let Some(value) = self.immediate_data {
            base.immediate_data = value;
        }
        if let Some(value) = self.initial_r2t {
            base.initial_r2t = value;
        }
        if base.first_burst_length > base.max_burst_length {
            bail!(
                "first_burst_length: {} is above max_burst_length {}",
                base.first_burst_length,
                base.max_burst_length
            );
        }
        Ok(base)
    }
}

/// The numeric daemon settings, checked the same way on the command line (`--KEY` with
/// `-` for `_`), in the config file (`KEY = N`) and in a file applied through the control
/// socket: `(key, lowest, highest, unit and meaning of the bounds)`.
pub const SETTINGS: &[(&str, u64, u64, &str)] = &[
    ("nop_in_interval", 0, 3600, "seconds; 0: never ping"),
    ("nop_in_timeout", 1, 3600, "seconds"),
    ("login_timeout", 0, 3600, "seconds; 0: no limit"),
    ("shutdown_grace", 0, 3600, "seconds"),
    ("max_sessions_per_target", 1, 65535, "sessions"),
    ("max_connections_per_initiator", 1, 65535, "connections"),
];

/// Checks setting `key` of [`SETTINGS`]; the error is one line naming it.
pub fn check_setting(key: &str, value: u64) -> Result<()> {
    let Some((_, low, high, note)) = SETTINGS.iter().find(|(k, ..)| *k == key) else {
        bail!("{key}: no such setting");
    };
    if !(*low..=*high).contains(&value) {
        bail!("{key}: {value} is out of range {low}..={high} ({note})");
    }
    Ok(())
}

impl ConfigFile {
    /// The numeric settings of [`SETTINGS`] the file gives, by key.
    pub fn settings(&self) -> [(&'static str, Option<u64>); 6] {
        [
            ("nop_in_interval", self.nop_in_interval),
            ("nop_in_timeout", self.nop_in_timeout),
            ("login_timeout", self.login_timeout),
            ("shutdown_grace", self.shutdown_grace),
            ("max_sessions_per_target", self.max_sessions_per_target),
            (
                "max_connections_per_initiator",
                self.max_connections_per_initiator,
            ),
        ]
    }
}

/// The line (from 1) that byte `offset` of `text` is on.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Checks the added portals: a port each (0 would listen somewhere else at each start),
/// none twice. The error names the value.
pub fn check_portals(portals: &[SocketAddr]) -> Result<()> {
    for (i, portal) in portals.iter().enumerate() {
        check_portal(*portal)?;
        if portals[..i].contains(portal) {
            bail!("portals: {portal} is given twice");
        }
    }
    Ok(())
}

/// The portal access control is checked against: the first of `main` and `added` that is
/// not loopback (a target without ACL or CHAP must not be reachable from the network).
pub fn exposed_portal(main: SocketAddr, added: &[SocketAddr]) -> SocketAddr {
    std::iter::once(main)
        .chain(added.iter().copied())
        .find(|p| !p.ip().to_canonical().is_loopback())
        .unwrap_or(main)
}

/// Checks one portal address given to be kept: it must name its port.
pub fn check_portal(portal: SocketAddr) -> Result<()> {
    if portal.port() == 0 {
        bail!("portal {portal}: port 0 is not a port to keep; name one (e.g. 3260)");
    }
    Ok(())
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

/// Checks a LUN number: flat space addressing reaches 0 to 16383 (SAM-5 4.7.7).
pub fn check_lun(lun: u16) -> Result<()> {
    if lun > scsi::MAX_LUN {
        bail!("LUN {lun} is out of range 0..={}", scsi::MAX_LUN);
    }
    Ok(())
}

/// Checks a logical block size.
pub fn check_block_size(block_size: u32) -> Result<()> {
    if !matches!(block_size, 512 | 1024 | 2048 | 4096) {
        bail!("block size {block_size} is not one of 512, 1024, 2048, 4096");
    }
    Ok(())
}

/// The longest command time limit, in seconds: a day (a deadline further out could
/// overflow the clock, and no initiator waits that long).
pub const MAX_COMMAND_TIMEOUT: u64 = 86_400;

/// Checks a command time limit in seconds (0: none).
pub fn check_command_timeout(secs: u64) -> Result<()> {
    if secs > MAX_COMMAND_TIMEOUT {
        bail!("{secs} seconds is out of range 0..={MAX_COMMAND_TIMEOUT} (0: no limit)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_settings_parse_as_their_flags() {
        let text = "gateway_id = \"gateway-b\"\nalua_group = 2\nalua_state = \"standby\"\n\
                    alua_peer = [\"1:active-optimized\", \"3:unavailable\"]\n";
        let config = ConfigFile::parse(text).unwrap();
        let (owner, alua) = config.gateway().unwrap();
        assert_eq!(owner.unwrap().as_str(), "gateway-b");
        let alua = alua.unwrap();
        assert_eq!(
            alua.own,
            scsi::PortGroup {
                id: 2,
                state: scsi::AccessState::Standby
            }
        );
        assert_eq!(alua.others.len(), 2);
        assert_eq!(alua.others[1].state, scsi::AccessState::Unavailable);
        // Written back as read (admin export, save).
        assert_eq!(
            ConfigFile::parse(&config.to_toml().unwrap()).unwrap(),
            config
        );
        // Without alua_state: active/optimized, as --alua-state's default.
        let (_, alua) = ConfigFile::parse("alua_group = 5\n")
            .unwrap()
            .gateway()
            .unwrap();
        assert_eq!(alua.unwrap().own.state, scsi::AccessState::ActiveOptimized);
    }

    const GOOD: &str = r#"
portal = "127.0.0.1:3261"
command_timeout = 10
require_data_digest = true

[[target]]
name = "iqn.2026-11.com.example:a"
[[target.lun]]
lun = 0
bstype = "glfs"
backing_store = "vol@h1,h2:a.img"
bsopts = "loglevel=3"
size = "1G"
[[target.lun]]
lun = 1
bstype = "memory"
size = "64M"
block_size = 4096
read_only = true
provisioning = "full"
soft_threshold = "20G"

[[target]]
name = "iqn.2026-11.com.example:b"
[[target.lun]]
lun = 0
bstype = "file"
backing_store = "/srv/b.img"
"#;

    #[test]
    fn a_full_config_gives_every_target_and_lun() {
        let config = ConfigFile::parse(GOOD).unwrap();
        assert_eq!(config.portal, Some("127.0.0.1:3261".parse().unwrap()));
        assert_eq!(config.command_timeout, Some(10));
        assert!(config.require_data_digest && !config.require_header_digest);
        let specs = config.target_specs(None).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "iqn.2026-11.com.example:a");
        let luns = &specs[0].luns;
        assert_eq!((luns[0].lun, luns[0].store.bstype.as_str()), (0, "glfs"));
        assert_eq!(luns[0].store.create_size, Some(1 << 30));
        assert_eq!(luns[1].store.block_size, Some(4096));
        assert!(luns[1].read_only);
        assert_eq!(luns[0].store.provisioning, backstore::Provisioning::Thin);
        assert_eq!(luns[1].store.provisioning, backstore::Provisioning::Full);
        assert_eq!(
            luns[0].soft_threshold,
            crate::space::SoftThreshold::Percent(10)
        );
        assert_eq!(
            luns[1].soft_threshold,
            crate::space::SoftThreshold::Bytes(20 << 30)
        );
        assert_eq!(specs[1].luns[0].store.backing_store, "/srv/b.img");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("login_timeout = 99999\n", "login_timeout: 99999 is out of range 0..=3600"),
            ("nop_in_timeout = 0\n", "nop_in_timeout: 0 is out of range 1..=3600"),
            ("max_sessions_per_target = 0\n", "max_sessions_per_target: 0 is out of range"),
            ("unsolicited_data_budget = \"2Q\"\n", "unsolicited_data_budget: invalid size \"2Q\""),
            ("[[target]]\nname = \"disk\"\n[[target.lun]]\nlun = 0\nbstype = \"memory\"\n", "invalid target name"),
            ("prtal = 1\n", "unknown field `prtal`"),
            (
                "[[target]]\nname = \"iqn.2026-11.x.y\"\n[[target.lun]]\nlun = 0\nbstype = \"memory\"\n[[target.lun]]\nlun = 0\nbstype = \"memory\"\n",
                "defines LUN 0 twice",
            ),
            (
                "[[target]]\nname = \"iqn.2026-11.x.y\"\n[[target.lun]]\nlun = 0\nbstype = \"memory\"\nsize = \"12Q\"\n",
                "unknown unit",
            ),
            (
                "[[target]]\nname = \"iqn.2026-11.x.y\"\n[[target.lun]]\nlun = 20000\nbstype = \"memory\"\n",
                "target iqn.2026-11.x.y: LUN 20000 is out of range 0..=16383",
            ),
            (
                "[[target]]\nname = \"iqn.2026-11.x.y\"\n[[target.lun]]\nlun = 70000\nbstype = \"memory\"\n",
                "line 4: invalid value",
            ),
            (
                "[[target]]\nname = \"iqn.2026-11.x.y\"\n[[target.lun]]\nlun = 1\nbstype = \"memory\"\nblock_size = 100\n",
                "LUN 1: block_size: block size 100 is not one of",
            ),
            ("command_timeout = 99999999\n[[target]]\nname = \"iqn.2026-11.x.y\"\n", "command_timeout: 99999999 seconds is out of range"),
            ("alua_group = 0\n", "alua_group: target port group \"0\" is not a number from 1 to 65535"),
            ("alua_group = 70000\n", "alua_group: target port group \"70000\" is not a number"),
            ("alua_group = 1\nalua_state = \"sleepy\"\n", "alua_state: unknown ALUA state \"sleepy\""),
            ("alua_group = 1\nalua_peer = [\"2\"]\n", "alua_peer: \"2\" is not ID:STATE"),
            ("alua_group = 1\nalua_peer = [\"1:standby\"]\n", "alua_peer: target port group 1 is given twice"),
            ("alua_state = \"standby\"\n", "alua_state and alua_peer need alua_group"),
            ("alua_failover = true\n", "alua_failover needs alua_group"),
            ("alua_group = 1\nalua_failover = true\nalua_state = \"standby\"\n", "alua_state cannot be set with alua_failover"),
            ("alua_group = 1\nalua_stall_after = 8\n", "alua_stall_after needs alua_failover"),
            ("alua_group = 1\nalua_failover = true\nalua_stall_after = 1\n", "alua_stall_after: \"1\" is not a number of seconds from 2 to 3600"),
            ("alua_group = 1\nalua_failover = true\nalua_stall_after = 7200\n", "alua_stall_after: \"7200\" is not a number of seconds from 2 to 3600"),
            ("gateway_id = \"\"\n", "gateway_id: "),
            (
                "[[target]]\nname = \"iqn.2026-11.x.y\"\n[[target.lun]]\nlun = 2\nbstype = \"memory\"\nprovisioning = \"thick\"\n",
                "target iqn.2026-11.x.y LUN 2: provisioning \"thick\" is not thin or full",
            ),
            (
                "[[target]]\nname = \"iqn.2026-11.x.y\"\n[[target.lun]]\nlun = 3\nbstype = \"memory\"\nsoft_threshold = \"0%\"\n",
                "target iqn.2026-11.x.y LUN 3: soft threshold \"0%\": a percentage is a whole number from 1% to 100%",
            ),
        ];
        for (text, expected) in cases {
            let err = ConfigFile::parse(text)
                .and_then(|c| c.target_specs(None))
                .unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(expected), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }

    #[test]
    fn a_config_without_targets_or_luns_is_served_empty_and_writes_back_the_same() {
        let config = ConfigFile::parse("").unwrap();
        assert!(config.target_specs(None).unwrap().is_empty());
        let config = ConfigFile::parse("[[target]]\nname = \"iqn.2026-11.x.y\"\n").unwrap();
        assert!(config.target_specs(None).unwrap()[0].luns.is_empty());
        let full = ConfigFile::parse(GOOD).unwrap();
        assert_eq!(ConfigFile::parse(&full.to_toml().unwrap()).unwrap(), full);
    }

    #[test]
    fn a_mistake_is_reported_on_its_own_line() {
        // Seven lines; the unknown key is on line 7, the first of a table's keys, where a
        // count of the lines *before* the key used to say 6.
        let text = "portal = \"127.0.0.1:3260\"\n\n[[target]]\nname = \"iqn.2026-11.x.y\"\n\n[[target.lun]]\nlnu = 0\n";
        assert_eq!(text.lines().nth(6), Some("lnu = 0"));
        let msg = ConfigFile::parse(text).unwrap_err().to_string();
        assert!(msg.starts_with("line 7: unknown field `lnu`"), "{msg}");
        // A mistake on the first line, and one at the very end of the text.
        let msg = ConfigFile::parse("prtal = 1\n").unwrap_err().to_string();
        assert!(msg.starts_with("line 1:"), "{msg}");
        assert_eq!(line_of("a\nb\n", 4), 3);
        assert_eq!(line_of("a\nb", 99), 2);
    }

    #[test]
    fn names_luns_and_block_sizes_are_checked() {
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
        assert!(check_lun(16383).is_ok());
        assert!(check_lun(16384).is_err());
        assert!(check_block_size(4096).is_ok());
        assert!(check_block_size(4097).is_err());
        assert!(check_command_timeout(0).is_ok());
        assert!(check_command_timeout(86_401).is_err());
    }

    #[test]
    fn r2t_login_keys_override_the_defaults_and_are_range_checked() {
        let limits = ConfigFile::parse(
            "max_outstanding_r2t = 8\nimmediate_data = false\ninitial_r2t = true\n",
        )
        .unwrap()
        .iscsi_limits(iscsi::Limits::default())
        .unwrap();
        assert_eq!(limits.max_outstanding_r2t, 8);
        assert!(!limits.immediate_data);
        assert!(limits.initial_r2t);
        // Unset keys keep what the target offers by default.
        let defaults = iscsi::Limits::default();
        let unset = ConfigFile::parse("")
            .unwrap()
            .iscsi_limits(defaults.clone())
            .unwrap();
        assert_eq!(unset, defaults);
        for (value, ok) in [(0, false), (1, true), (65_535, true), (65_536, false)] {
            let parsed = ConfigFile::parse(&format!("max_outstanding_r2t = {value}\n"));
            assert_eq!(parsed.is_ok(), ok, "{value}");
            if let Err(err) = parsed {
                assert!(
                    format!("{err:#}").contains(&format!(
                        "max_outstanding_r2t: {value} is out of range 1..=65535"
                    )),
                    "{err:#}"
                );
            }
        }
        let err = format!(
            "{:#}",
            ConfigFile::parse("immediate_data = 1\n").unwrap_err()
        );
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn added_portals_are_checked_and_the_exposed_one_is_the_first_public() {
        let text = "portals = [\"127.0.0.2:3261\", \"127.0.0.2:3261\"]\n";
        let err = format!("{:#}", ConfigFile::parse(text).unwrap_err());
        assert!(
            err.contains("portals: 127.0.0.2:3261 is given twice"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            ConfigFile::parse("portals = [\"[::1]:0\"]\n").unwrap_err()
        );
        assert!(err.contains("portal [::1]:0: port 0"), "{err}");
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let main = a("127.0.0.1:3260");
        assert_eq!(exposed_portal(main, &[a("127.0.0.2:3261")]), main);
        assert_eq!(
            exposed_portal(main, &[a("[::1]:3261"), a("192.0.2.7:3260")]),
            a("192.0.2.7:3260")
        );
        let err = format!(
            "{:#}",
            ConfigFile::parse("first_burst_length = 1048576\nmax_burst_length = 65536\n")
                .unwrap_err()
        );
        assert!(err.contains("first_burst_length: 1048576 is above max_burst_length 65536"));
    }
}
