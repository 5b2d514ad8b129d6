//! A file-backed `libgfapi.so.0` drop-in with fault injection.
//!
//! A volume `V` is the directory `$GFAPI_FAKE_ROOT/V/`; files inside it are plain host
//! files. The crate is built as a static library and linked by `cargo xtask build-fake`
//! into `libgfapi.so.0` with gfapi's symbol versions (GFAPI_3.4.0 ... GFAPI_6.0), so tgt's
//! `bs_glfs.so`, fio's gfapi engines and our own gfapi crate load it in place of the real
//! library. Faults are injected at run time from a TOML rules file (see [`faults`] and
//! `docs/fake-gfapi.md`).
//!
//! The rlib exposes the same `extern "C"` functions (module [`ffi`]) for unit tests.

pub mod attrs;
pub mod compat;
pub mod copy;
pub mod dirplus;
pub mod faults;
pub mod ffi;
pub mod fs;
pub mod gfid;
pub mod handles;
pub mod locks;
pub mod misc;
mod pool;
pub mod upcall;
pub mod xattr;

pub use faults::{errno_from_name, validate as validate_rules};
pub use fs::{ENV_FAULTS, ENV_ROOT, FAULTS_FILE};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_copy;
#[cfg(test)]
mod tests_families;
#[cfg(test)]
mod tests_md_cache;
#[cfg(test)]
mod tests_shard;
#[cfg(test)]
mod tests_write_behind;
