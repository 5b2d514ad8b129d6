//! The configuration file (`--config FILE`): many targets and LUNs, kept across restarts.
//!
//! ```toml
//! portal = "0.0.0.0:3260"        # optional; else --portal
//! command_timeout = 25           # optional; else --command-timeout
//! require_header_digest = true   # optional; or --require-header-digest (likewise data)
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
//! ```
//!
//! Access control (`allow_any_initiator`, `[discovery_chap]`, `[target.chap]`,
//! `[[target.acl]]`) is described in [`crate::auth`].

use crate::cli::{check_iscsi_name, parse_size};
use crate::targets::{LunSpec, TargetSpec};
use anyhow::{bail, Context, Result};
use backstore::StoreOptions;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub portal: Option<SocketAddr>,
    pub command_timeout: Option<u64>,
    /// Normal sessions must negotiate HeaderDigest=CRC32C.
    #[serde(default)]
    pub require_header_digest: bool,
    /// Normal sessions must negotiate DataDigest=CRC32C.
    #[serde(default)]
    pub require_data_digest: bool,
    pub gfapi_library: Option<PathBuf>,
    /// Serve targets without ACL or CHAP on a non-loopback portal.
    #[serde(default)]
    pub allow_any_initiator: bool,
    /// CHAP for discovery sessions.
    pub discovery_chap: Option<crate::auth::ChapEntry>,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    pub name: String,
    #[serde(default, rename = "lun")]
    pub luns: Vec<LunEntry>,
    /// CHAP every initiator of the target must pass.
    pub chap: Option<crate::auth::ChapEntry>,
    /// Initiators admitted (none: all).
    #[serde(default)]
    pub acl: Vec<crate::auth::AclToml>,
    /// Serve this target to any initiator on a non-loopback portal without ACL or CHAP.
    #[serde(default)]
    pub allow_any_initiator: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LunEntry {
    pub lun: u16,
    pub bstype: String,
    #[serde(default)]
    pub backing_store: String,
    #[serde(default)]
    pub bsopts: String,
    pub size: Option<String>,
    pub block_size: Option<u32>,
    #[serde(default)]
    pub read_only: bool,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let config: ConfigFile = toml::from_str(text).map_err(|e| {
            // toml's Display spans several lines with a snippet; keep it to one line.
            let line = e
                .span()
                .map_or(0, |span| text[..span.start].lines().count().max(1));
            anyhow::anyhow!("line {line}: {}", e.message().trim())
        })?;
        if config.targets.is_empty() {
            bail!("no [[target]] defined");
        }
        Ok(config)
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
            if target.luns.is_empty() {
                bail!("target {} has no [[target.lun]]", target.name);
            }
            let mut luns = HashSet::new();
            let mut lun_specs = Vec::new();
            for lun in &target.luns {
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
                    if !matches!(bs, 512 | 1024 | 2048 | 4096) {
                        bail!(
                            "target {} LUN {}: block_size {bs} is not one of 512, 1024, 2048, 4096",
                            target.name,
                            lun.lun
                        );
                    }
                }
                lun_specs.push(LunSpec {
                    lun: lun.lun,
                    read_only: lun.read_only,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(specs[1].luns[0].store.backing_store, "/srv/b.img");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("", "no [[target]] defined"),
            ("[[target]]\nname = \"iqn.2026-11.x.y\"\n", "has no [[target.lun]]"),
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
        ];
        for (text, expected) in cases {
            let err = ConfigFile::parse(text)
                .and_then(|c| c.target_specs(None))
                .unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(expected), "{text:?}: {msg}");
        }
    }
}
