//! Block stores behind [`store_api::BlockStore`]: `memory`, `file` (plain files) and `glfs`
//! (libgfapi, real or the fake), chosen by one factory, [`open_store`].
//!
//! | bstype            | backing store                         | bsopts                                    |
//! |-------------------|---------------------------------------|-------------------------------------------|
//! | `memory`          | empty, or a size (`64M`, `1G`, bytes) | none                                      |
//! | `file` / `rdwr`   | path of a file or block device        | `threads=N` (workers, default 4)          |
//! | `glfs`            | `volume@host[,host...]:path`          | `logfile=..;loglevel=N;transport=..;port=N;client-io-threads=on\|off;hold=S;linger=S;copy-offload=on\|off;coherent=on\|off;read-part=SIZE\|off;batch-sched=on\|off;follow-cpu=on\|off` |
//!
//! * `memory`: the size is `create_size` if given, else the backing-store string parsed as a
//!   size (binary suffixes K, M, G, T).
//! * `file`, `glfs`: a missing file is created with `create_size` bytes when that is given,
//!   else opening fails. An existing file keeps its size. A size that is not a multiple of
//!   the block size is rounded down to whole blocks, with a warning (a LUN must never reach
//!   past the end of its file: field failures #2 and #16).
//! * [`StoreOptions::provisioning`]: thin (sparse, discard) or full (every block allocated
//!   before the store is returned, no discard): see [`Provisioning`].
//! * `glfs`: IPv6 hosts go in brackets (`vol@[fe80::1],host2:disk`). libgfapi is loaded from
//!   [`StoreOptions::gfapi_library`], else from the path in the environment variable
//!   `GFAPI_LIBRARY`, else as `libgfapi.so.0` through the dynamic loader. Of several volfile
//!   servers, those that accept a TCP connection within 2 s are given to gfapi first (a
//!   silent first server would hold `glfs_init` for minutes). Mounts are shared:
//!   LUNs on the same volume and servers use one `glfs_t`. A lost connection holds requests
//!   (up to `hold=S` seconds, default 15; then they fail with `NotConnected`) while one
//!   background loop mounts the volume again for all its LUNs and reopens their files (see
//!   [`GlfsStore`] and [`open_glfs_store`]). When a volume's last LUN goes, its mount stays
//!   up, idle, for `linger=S` seconds (default 60; 0: unmount at once), and a LUN on the
//!   same volume, servers and options in that time reuses it: no `glfs_new`/`glfs_fini`
//!   cycle per LUN removed and added (libgfapi leaks with each); [`close_idle_mounts`]
//!   unmounts the idle ones at shutdown.

mod coherent;
mod file;
mod glfs;
mod linger;
mod lock;
mod memory;
mod metadata;
mod observer;
mod probe;
pub mod progress;
mod provision;
mod sched;
pub mod snapshot;
pub mod spec;
mod trim;
mod unflushed;

pub use file::FileStore;
pub use glfs::{
    ConnectionState, GlfsStore, HOLD_BACKOFF_MAX, MAX_HELD, MAX_HELD_BYTES, MAX_JOINED_READ,
    MAX_JOINED_WRITE,
};
pub use linger::close_idle_mounts;
pub use memory::MemoryStore;
pub use observer::{set_volume_observer, VolumeObserver};
pub use provision::Provisioning;

use spec::{parse_size, split_options, GlfsOptions, GlfsSpec};
use std::path::PathBuf;
use std::sync::Arc;
use store_api::{BlockStore, Geometry};

/// Environment variable naming the libgfapi to load when [`StoreOptions::gfapi_library`] is
/// not set.
pub const GFAPI_LIBRARY_ENV: &str = "GFAPI_LIBRARY";

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
    /// Several gateways export this LUN (the daemon's `--gateway-id`): the store must be
    /// cache-coherent across them (glfs: coherent mode, see the `coherent` module, which
    /// `coherent=off` then cannot turn off; file and memory stores are coherent anyway).
    pub shared: bool,
    /// Thin (sparse, UNMAP) or full (every block allocated before the LU is served): see
    /// [`Provisioning`].
    pub provisioning: Provisioning,
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
    open_with(opts, Existing::Open)
}

/// Creates the backing file `opts` names, of `opts.create_size` bytes (sparse), and opens
/// it as [`open_store`] does; a file that is already there is refused, never opened or
/// overwritten (the destination of a copy, `snapshot`). Memory stores are always new.
pub fn create_store(opts: &StoreOptions) -> Result<Arc<dyn BlockStore>, OpenError> {
    if opts.create_size.is_none() {
        return Err(OpenError::BadOptions {
            opts: String::new(),
            reason: "a new store needs a create size".into(),
        });
    }
    open_with(opts, Existing::Refuse)
}

/// Removes the backing file of a file or glfs store (one [`create_store`] made and that
/// is no longer wanted: an unfinished copy). Nothing to do for memory.
pub fn remove_store_file(opts: &StoreOptions) -> Result<(), OpenError> {
    match opts.bstype.as_str() {
        "memory" => Ok(()),
        "file" | "rdwr" => std::fs::remove_file(&opts.backing_store).map_err(|e| OpenError::Open {
            what: format!("file {}", opts.backing_store),
            reason: format!("cannot remove it: {e}"),
        }),
        "glfs" => {
            let spec = GlfsSpec::parse(&opts.backing_store)?;
            let gopts = GlfsOptions::parse(&opts.bsopts)?;
            let what = format!("glfs {}", opts.backing_store);
            let mount = mount_glfs(opts, &spec, &gopts, &what)?;
            let removed = match mount.volume() {
                Some((vol, _)) => vol.unlink(&spec.path).map_err(|e| OpenError::Open {
                    what: what.clone(),
                    reason: format!("cannot remove it: {e}"),
                }),
                None => Err(OpenError::Open {
                    what: what.clone(),
                    reason: "cannot remove it: the volume is not mounted".into(),
                }),
            };
            glfs::idle(mount, std::time::Duration::from_secs(gopts.linger_secs));
            removed
        }
        other => Err(OpenError::UnknownType(other.to_string())),
    }
}

/// What opening does with a backing file that is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Opens it (a missing one is created when there is a create size).
    Open,
    /// Refuses it: the file is created, or nothing is.
    Refuse,
}

impl Existing {
    fn refused(self, what: &str) -> OpenError {
        OpenError::Open {
            what: what.to_string(),
            reason: "it already exists (a new file is made, never one overwritten)".into(),
        }
    }
}

fn open_with(opts: &StoreOptions, existing: Existing) -> Result<Arc<dyn BlockStore>, OpenError> {
    let block_size = block_size(opts)?;
    match opts.bstype.as_str() {
        "memory" => open_memory(opts, block_size),
        "file" | "rdwr" => open_file(opts, block_size, existing),
        "glfs" => Ok(open_glfs(opts, block_size, existing)?),
        other => Err(OpenError::UnknownType(other.to_string())),
    }
}

fn block_size(opts: &StoreOptions) -> Result<u32, OpenError> {
    let bs = opts.block_size.unwrap_or(512);
    if !(512..=65536).contains(&bs) || !bs.is_power_of_two() {
        return Err(OpenError::BadOptions {
            opts: format!("block_size={bs}"),
            reason: "block size must be a power of two from 512 to 65536".into(),
        });
    }
    Ok(bs)
}

/// Whole blocks in `size` bytes; warns when a partial block is dropped.
fn geometry(what: &str, size: u64, block_size: u32) -> Result<Geometry, OpenError> {
    let num_blocks = size / u64::from(block_size);
    if num_blocks == 0 {
        return Err(OpenError::Open {
            what: what.to_string(),
            reason: format!("size {size} is smaller than one {block_size}-byte block"),
        });
    }
    if num_blocks * u64::from(block_size) != size {
        tracing::warn!(
            "{what}: size {size} is not a multiple of the block size {block_size}; using {} bytes",
            num_blocks * u64::from(block_size)
        );
    }
    Ok(Geometry {
        block_size,
        num_blocks,
    })
}

fn no_options(opts: &StoreOptions) -> Result<(), OpenError> {
    if let Some((key, _)) = split_options(&opts.bsopts)?.first() {
        return Err(OpenError::BadOptions {
            opts: opts.bsopts.clone(),
            reason: format!("unknown key {key:?} ({} takes no options)", opts.bstype),
        });
    }
    Ok(())
}

fn open_memory(opts: &StoreOptions, block_size: u32) -> Result<Arc<dyn BlockStore>, OpenError> {
    no_options(opts)?;
    let size = match opts.create_size {
        Some(size) => size,
        None if opts.backing_store.trim().is_empty() => {
            return Err(OpenError::BadSpec {
                spec: opts.backing_store.clone(),
                reason: "memory store needs a size: give a create size or a backing store like 64M"
                    .into(),
            })
        }
        None => parse_size(&opts.backing_store).map_err(|e| OpenError::BadSpec {
            spec: opts.backing_store.clone(),
            reason: e.to_string(),
        })?,
    };
    let geometry = geometry("memory store", size, block_size)?;
    Ok(Arc::new(
        MemoryStore::new(geometry).with_provisioning(opts.provisioning),
    ))
}

fn open_file(
    opts: &StoreOptions,
    block_size: u32,
    existing: Existing,
) -> Result<Arc<dyn BlockStore>, OpenError> {
    let mut threads = file::DEFAULT_THREADS;
    for (key, value) in split_options(&opts.bsopts)? {
        match key {
            "threads" => {
                threads = match value.parse::<usize>() {
                    Ok(n @ 1..=256) => n,
                    _ => {
                        return Err(OpenError::BadOptions {
                            opts: opts.bsopts.clone(),
                            reason: format!("threads {value:?} is not a number from 1 to 256"),
                        })
                    }
                }
            }
            other => {
                return Err(OpenError::BadOptions {
                    opts: opts.bsopts.clone(),
                    reason: format!("unknown key {other:?} (expected threads)"),
                })
            }
        }
    }
    let path = &opts.backing_store;
    if path.is_empty() {
        return Err(OpenError::BadSpec {
            spec: path.clone(),
            reason: "empty file path".into(),
        });
    }
    let open_err = |e: std::io::Error| OpenError::Open {
        what: format!("file {path}"),
        reason: e.to_string(),
    };
    // Whether this open created the file (it is removed again if it cannot be served).
    let mut created = false;
    let opened = match existing {
        Existing::Open => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path),
        Existing::Refuse => Err(std::io::ErrorKind::NotFound.into()),
    };
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match opts.create_size {
            Some(size) => {
                // A size that cannot be served creates nothing.
                geometry(&format!("file {path}"), size, block_size)?;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists if existing == Existing::Refuse => {
                            existing.refused(&format!("file {path}"))
                        }
                        _ => open_err(e),
                    })?;
                // A file that cannot be given its size (the disk is full) is not left
                // behind empty for the next open to fail on: it was created here.
                if let Err(e) = f.set_len(size) {
                    drop(f);
                    let _ = std::fs::remove_file(path);
                    return Err(open_err(e));
                }
                created = true;
                f
            }
            None => {
                return Err(OpenError::Open {
                    what: format!("file {path}"),
                    reason: format!("{e} (give a create size to create it)"),
                })
            }
        },
        Err(e) => return Err(open_err(e)),
    };
    // Block devices report length 0 in their metadata; seeking to the end works for both.
    let size = {
        use std::io::Seek;
        (&file).seek(std::io::SeekFrom::End(0)).map_err(open_err)?
    };
    let geometry = geometry(&format!("file {path}"), size, block_size)?;
    let store =
        FileStore::with_provisioning(file, path.clone(), geometry, threads, opts.provisioning)
            .map_err(open_err)?;
    if let Err(reason) = store.allocate_all() {
        drop(store);
        if created {
            let _ = std::fs::remove_file(path);
        }
        return Err(OpenError::Open {
            what: format!("file {path}"),
            reason,
        });
    }
    Ok(Arc::new(store))
}

/// Opens a `glfs` store like [`open_store`] (whatever `opts.bstype` says), returning the
/// concrete [`GlfsStore`] so its connection state can be watched.
pub fn open_glfs_store(opts: &StoreOptions) -> Result<Arc<GlfsStore>, OpenError> {
    open_glfs(opts, block_size(opts)?, Existing::Open)
}

/// A volume mount that did not finish in time, for `what`.
fn mount_timed_out(what: &str, gopts: &GlfsOptions) -> OpenError {
    OpenError::Open {
        what: what.to_string(),
        reason: format!(
            "volume mount (glfs_init) did not finish within {} s",
            gopts.timeout_secs
        ),
    }
}

/// The shared mount of the volume `spec` names (mounted now, or one already up).
fn mount_glfs(
    opts: &StoreOptions,
    spec: &GlfsSpec,
    gopts: &GlfsOptions,
    what: &str,
) -> Result<Arc<glfs::Mount>, OpenError> {
    let library = opts.gfapi_library.clone().or_else(|| {
        std::env::var_os(GFAPI_LIBRARY_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let lib =
        gfapi::Gfapi::load(library.as_deref()).map_err(|e| OpenError::Library(e.to_string()))?;
    let servers: Vec<gfapi::Server> = spec
        .hosts
        .iter()
        .map(|h| gfapi::Server {
            transport: gopts.transport.clone(),
            host: h.clone(),
            port: gopts.port,
        })
        .collect();
    let open_err = |e: gfapi::Error| OpenError::Open {
        what: what.to_string(),
        reason: e.to_string(),
    };
    let timed_out = || mount_timed_out(what, gopts);
    glfs::mount(glfs::MountParams {
        lib,
        volume: spec.volume.clone(),
        servers,
        logfile: gopts.logfile.as_ref().map(PathBuf::from),
        loglevel: gopts.loglevel,
        xlator_options: if gopts.client_io_threads {
            vec![coherent::strict_o_direct(), coherent::fresh_lookups()]
        } else {
            vec![
                gfapi::XlatorOption {
                    xlator: "*-io-threads".into(),
                    key: "pass-through".into(),
                    value: "true".into(),
                },
                coherent::strict_o_direct(),
                coherent::fresh_lookups(),
            ]
        },
        batch_sched: gopts.batch_sched,
        follow_cpu: gopts.follow_cpu,
        timeout: std::time::Duration::from_secs(gopts.timeout_secs),
    })
    .map_err(|e| match e {
        Some(e) => open_err(e),
        None => timed_out(),
    })
}

fn open_glfs(
    opts: &StoreOptions,
    block_size: u32,
    existing: Existing,
) -> Result<Arc<GlfsStore>, OpenError> {
    let spec = GlfsSpec::parse(&opts.backing_store)?;
    let gopts = GlfsOptions::parse(&opts.bsopts)?;
    let coherent = coherent::wanted(opts.shared, gopts.coherent, &opts.bsopts)?;
    let what = format!("glfs {}", opts.backing_store);
    let mount = mount_glfs(opts, &spec, &gopts, &what)?;
    let open_err = |e: gfapi::Error| OpenError::Open {
        what: what.clone(),
        reason: e.to_string(),
    };
    let timed_out = || mount_timed_out(&what, &gopts);
    let linger = std::time::Duration::from_secs(gopts.linger_secs);
    let opened = (|| -> Result<Arc<GlfsStore>, OpenError> {
        let lost = |e: &gfapi::Error| {
            e.errno().is_some_and(|n| {
                store_api::StoreError::from_errno(store_api::Op::Open, n).kind
                    == store_api::ErrorKind::NotConnected
            })
        };
        let flags = coherent::open_flags(coherent);
        // Waits (up to the timeout) if the shared mount is being reconnected.
        let (mut vol, mut generation) = mount.volume().ok_or_else(timed_out)?;
        // Refused, an existing file is not opened: it is found by the create (O_EXCL).
        let open = |vol: &Arc<gfapi::Volume>| match existing {
            Existing::Open => gfapi::File::open(vol, &spec.path, flags),
            Existing::Refuse => Err(gfapi::Error::Call {
                call: "glfs_open",
                errno: libc::ENOENT,
            }),
        };
        let mut opened = open(&vol);
        if opened.as_ref().is_err_and(lost) {
            // A mount nobody used for a while (one left idle by its last LUN, lingering) may
            // have lost its connection unnoticed: reconnect it and try once more.
            mount.lost(generation, None);
            (vol, generation) = mount.volume().ok_or_else(timed_out)?;
            opened = open(&vol);
        }
        // A file operation that finds the connection lost starts the mount's reconnect.
        let fail = |e: gfapi::Error| {
            if lost(&e) {
                mount.lost(generation, None);
            }
            open_err(e)
        };
        // Whether this open created the file (it is removed again if it cannot be served).
        let mut created = false;
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.errno() == Some(libc::ENOENT) => match opts.create_size {
                Some(size) => {
                    // A size that cannot be served creates nothing.
                    geometry(&what, size, block_size)?;
                    let f = gfapi::File::create(&vol, &spec.path, flags | libc::O_EXCL, 0o600)
                        .map_err(|e| match e.errno() {
                            Some(libc::EEXIST) if existing == Existing::Refuse => {
                                existing.refused(&what)
                            }
                            _ => fail(e),
                        })?;
                    // A file that cannot be given its size (the volume is full, a quota) is not
                    // left behind empty for the next open to fail on: it was created here
                    // (O_EXCL), and no gateway can have served it at size 0.
                    if let Err(e) = f.truncate(size) {
                        drop(f);
                        if let Err(u) = vol.unlink(&spec.path) {
                            tracing::warn!("{what}: cannot remove the file left unsized: {u}");
                        }
                        return Err(fail(e));
                    }
                    created = true;
                    f
                }
                None => {
                    return Err(OpenError::Open {
                        what: what.clone(),
                        reason: format!("{e} (give a create size to create it)"),
                    })
                }
            },
            Err(e) if coherent && e.errno() == Some(libc::EINVAL) => {
                return Err(OpenError::Open {
                    what: what.clone(),
                    reason: coherent::open_failed(&e),
                })
            }
            Err(e) => return Err(fail(e)),
        };
        let size = file.size().map_err(fail)?;
        let geometry = geometry(&what, size, block_size)?;
        if opts.provisioning == Provisioning::Full {
            let allocated = provision::allocate_logged(&what, 0, geometry.size_bytes(), |o, l| {
                file.allocate(o, l).map_err(|e| e.errno())
            });
            if let Err(e) = allocated {
                drop(file);
                if created {
                    if let Err(u) = vol.unlink(&spec.path) {
                        tracing::warn!("{what}: cannot remove the file it created: {u}");
                    }
                }
                return Err(OpenError::Open {
                    what: what.clone(),
                    reason: e.to_string(),
                });
            }
        }
        drop(vol);
        if coherent {
            coherent::check_block_size(&file, block_size, size).map_err(|reason| {
                OpenError::Open {
                    what: what.clone(),
                    reason,
                }
            })?;
        }
        Ok(Arc::new(
            GlfsStore::attach(
                &mount,
                file,
                generation,
                geometry,
                what.clone(),
                (std::time::Duration::from_secs(gopts.hold_secs), linger),
                flags,
            )
            .with_copy_offload(gopts.copy_offload)
            .with_read_part(gopts.read_part)
            .with_provisioning(opts.provisioning),
        ))
    })();
    if opened.is_err() {
        // A mount left with no store by a failed open (a block size refused, a missing
        // file) lingers as one its last LUN left does: the error is not held up by
        // glfs_fini (10 s on Gluster 10.3 here), and a second try reuses the mount.
        glfs::idle(mount, linger);
    }
    opened
}
