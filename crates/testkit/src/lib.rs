//! Test helpers shared across crates: fake volumes, fault rules, a running target
