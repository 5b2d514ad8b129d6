//! Test helpers shared across crates.
//!
//! * [`daemon`]: the one process harness that starts `glfs-iscsi`, waits for its portal and
//!   stops it.
//! * [`fake`]: fake gfapi volumes under a temporary root, and fault-injection rules.
//! * [`gluster`]: removing what a test made on a live Gluster volume.
//! * [`metrics`]: scraping `glfs-iscsi --metrics` and reading its samples.
//! * `initiator`: a small synchronous iSCSI initiator over libiscsi (feature
//!   `initiator`, on by default).
//! * [`tgtd`]: a private Debian tgtd as a reference iSCSI target.

pub mod daemon;
pub mod fake;
pub mod gluster;
#[cfg(feature = "initiator")]
pub mod initiator;
pub mod metrics;
pub mod tgtd;
