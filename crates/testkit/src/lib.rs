//! Test helpers shared across crates.
//!
//! * [`fake`]: fake gfapi volumes under a temporary root, and fault-injection rules.
//! * `initiator`: a small synchronous iSCSI initiator over libiscsi (feature
//!   `initiator`, on by default).
//! * [`tgtd`]: a private Debian tgtd as a reference iSCSI target.

pub mod fake;
#[cfg(feature = "initiator")]
pub mod initiator;
pub mod tgtd;
