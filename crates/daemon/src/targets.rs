//! Targets and their LUNs, as configured at start-up.

use anyhow::{bail, Context, Result};
use backstore::{open_store, StoreOptions};
use scsi::{LuConfig, ScsiTarget};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use store_api::BlockStore;

/// One LUN to export.
#[derive(Debug, Clone)]
pub struct LunSpec {
    pub lun: u16,
    pub store: StoreOptions,
    pub read_only: bool,
}

/// One target (IQN) and its LUNs.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub name: String,
    pub luns: Vec<LunSpec>,
}

/// A target ready to serve: the SCSI emulation and a store per LUN.
pub struct Target {
    pub name: String,
    pub scsi: ScsiTarget,
    /// Stores by plain LUN number.
    pub stores: HashMap<u64, Arc<dyn BlockStore>>,
}

impl Target {
    pub fn store(&self, lun: u64) -> Option<&Arc<dyn BlockStore>> {
        self.stores.get(&lun)
    }
}

/// Every target of one portal, and the iSCSI configuration derived from them.
pub struct Targets {
    pub iscsi: Arc<iscsi::Config>,
    targets: HashMap<String, Arc<Target>>,
}

impl Targets {
    /// Opens every LUN's store and builds the targets. Fails on the first store that cannot
    /// be opened, naming the target and LUN.
    pub fn open(specs: &[TargetSpec], portal: SocketAddr, limits: iscsi::Limits) -> Result<Self> {
        let mut opened = Vec::new();
        for spec in specs {
            let mut luns = Vec::new();
            for lun in &spec.luns {
                let store = open_store(&lun.store).with_context(|| {
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
        targets: Vec<(String, Vec<(LunSpec, Arc<dyn BlockStore>)>)>,
        portal: SocketAddr,
        limits: iscsi::Limits,
    ) -> Result<Self> {
        let mut by_name = HashMap::new();
        let mut infos = Vec::new();
        for (name, luns) in targets {
            if by_name.contains_key(&name) {
                bail!("target {name} is configured twice");
            }
            let mut scsi = ScsiTarget::new();
            let mut stores = HashMap::new();
            for (lun, store) in luns {
                if stores.contains_key(&u64::from(lun.lun)) {
                    bail!("target {name} has LUN {} twice", lun.lun);
                }
                let config = lu_config(&name, &lun, store.as_ref());
                tracing::info!(target = %name, lun = lun.lun, store = %store.describe(),
                    blocks = config.geometry.num_blocks, block_size = config.geometry.block_size,
                    "LUN ready");
                scsi.add_lun(lun.lun, config);
                stores.insert(u64::from(lun.lun), store);
            }
            infos.push(iscsi::TargetInfo {
                name: name.clone(),
                alias: None,
                addresses: vec![format!("{portal},1")],
            });
            by_name.insert(name.clone(), Arc::new(Target { name, scsi, stores }));
        }
        let iscsi = Arc::new(iscsi::Config {
            targets: infos,
            limits,
            portal_group_tag: 1,
        });
        Ok(Targets {
            iscsi,
            targets: by_name,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Target>> {
        self.targets.get(name).cloned()
    }
}

/// Identity of a LUN, stable across restarts: derived from the target name and LUN number.
fn lu_config(target: &str, lun: &LunSpec, store: &dyn BlockStore) -> LuConfig {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    target.hash(&mut hasher);
    lun.lun.hash(&mut hasher);
    let h1 = hasher.finish();
    lun.store.backing_store.hash(&mut hasher);
    let h2 = hasher.finish();
    // NAA 6 (IEEE Registered Extended): NAA nibble, 24-bit OUI (locally administered
    // placeholder), then 100 bits of vendor-specific identifier.
    let mut naa_id = [0u8; 16];
    naa_id[..8].copy_from_slice(&h1.to_be_bytes());
    naa_id[8..].copy_from_slice(&h2.to_be_bytes());
    naa_id[0] = 0x60 | (naa_id[0] & 0x0f);
    let product = match lun.store.bstype.as_str() {
        "glfs" => "GLFS DISK",
        "memory" => "MEMORY DISK",
        _ => "FILE DISK",
    };
    LuConfig {
        vendor: "GFISCSI".into(),
        product: product.into(),
        revision: "0001".into(),
        serial: format!("{:016x}", h1),
        naa_id,
        geometry: store.geometry(),
        capabilities: store.capabilities(),
        write_cache: true,
        read_only: lun.read_only,
    }
}
