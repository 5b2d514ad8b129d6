//! Fake gfapi volumes and fault rules.
