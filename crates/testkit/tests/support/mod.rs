//! Shared helpers for testkit's integration tests.

pub mod tgtd;
