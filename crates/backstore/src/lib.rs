//! Block stores behind [`store_api::BlockStore`]: `memory`, `file` (plain files) and `glfs`
//! (libgfapi, real or the fake), chosen by one factory, [`open_store`].

use std::path::PathBuf;
use std::sync::Arc;
use store_api::BlockStore;

/// How to open a store, as given on the command line (tgt's `--bstype`, `--backing-store`,
/// `--bsopts`) plus our own sizing options.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// `memory`, `file` (alias `rdwr`) or `glfs`.
    pub bstype: String,
    /// `memory`: ignored (may be empty). `file`: a path. `glfs`: `volume@host[,host...]:path`.
    pub backing_store: String,
    /// `key=value` pairs separated by `;` (glfs: `logfile=...;loglevel=N`).
    pub bsopts: String,
    /// Size in bytes to create a missing backing file with (memory: the size of the store).
    pub create_size: Option<u64>,
    /// Logical block size (default 512).
    pub block_size: Option<u32>,
    /// Overrides where libgfapi is loaded from (default: `libgfapi.so.0` via the loader).
    pub gfapi_library: Option<PathBuf>,
}

/// Why a store could not be opened; every message names the offending input.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unknown backing store type {0:?} (expected memory, file or glfs)")]
    UnknownType(String),
    #[error("invalid backing store {spec:?}: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("invalid backing store options {opts:?}: {reason}")]
    BadOptions { opts: String, reason: String },
    #[error("cannot load libgfapi: {0}")]
    Library(String),
    #[error("cannot open {what}: {reason}")]
    Open { what: String, reason: String },
}

/// Opens the store described by `opts`.
pub fn open_store(opts: &StoreOptions) -> Result<Arc<dyn BlockStore>, OpenError> {
    let _ = opts;
    todo!()
}
