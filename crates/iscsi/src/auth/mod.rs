//! Authentication and authorization at login (RFC 7143 sections 6.3, 9.2 and 12).
//!
//! * [`access`]: the access configuration (ACLs, CHAP credentials) and its decisions;
//! * [`chap`]: the target's side of a CHAP exchange, sans-IO;
//! * [`Secret`]: credential bytes that never show in logs or `Debug` output.

pub mod access;
pub mod chap;
mod secret;

pub use access::{
    Access, AccessPolicy, AclEntry, ChapCredentials, Credential, PolicyError, TargetAccess,
};
pub use chap::{Algorithm, ChapError, ChapExchange};
pub use secret::Secret;

#[cfg(test)]
mod tests;
