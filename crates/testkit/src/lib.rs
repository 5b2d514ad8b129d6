//! Test helpers shared across crates.
//!
//! * [`fake`]: fake gfapi volumes under a temporary root, and fault-injection rules.
//! * [`initiator`]: a small synchronous iSCSI initiator over libiscsi.

pub mod fake;
pub mod initiator;
