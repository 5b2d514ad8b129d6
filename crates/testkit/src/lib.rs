//! Test helpers shared across crates.
//!
//! * [`daemon`]: the one process harness that starts `glfs-iscsi`, waits for its portal and
//!   stops it.
//! * [`fake`]: fake gfapi volumes under a temporary root, and fault-injection rules.
//! * `initiator`: a small synchronous iSCSI initiator over libiscsi (feature
//!   `initiator`, on by default).
//! * [`tgtd`]: a private Debian tgtd as a reference iSCSI target.

pub mod daemon;
pub mod fake;
#[cfg(feature = "initiator")]
pub mod initiator;
pub mod tgtd;
