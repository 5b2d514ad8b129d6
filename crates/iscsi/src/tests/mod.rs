//! In-crate tests: known-answer PDUs, snapshots, and full sessions driven by an in-memory
//! initiator.

mod admission;
mod alloc;
mod chap_login;
mod digests;
mod errors;
mod full_feature;
mod initiator;
mod kat;
mod keepalive;
mod login;
mod logout_request;
mod negotiation;
mod transmit;
mod write_budget;
