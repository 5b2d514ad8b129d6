//! The iSCSI target daemon: the thin async layer that drives the sans-IO cores.
//!
//! Data path: a TCP connection's bytes go into [`iscsi::Connection`]; each complete SCSI
//! command goes to the target's [`scsi::ScsiTarget`]; storage requests go to the LUN's
//! [`store_api::BlockStore`], whose completion (on whatever thread the store uses) is sent
//! back to the connection's task over a channel. Responses are encoded by the iSCSI core
//! into one [`iscsi::Transmit`] per batch (headers copied, Data-In sent from the store's
//! read buffers) and written with one vectored socket write per batch ([`buffers`]).

#![forbid(unsafe_code)]
pub mod admin;
pub mod auth;
pub mod batch;
pub mod buffers;
pub mod cli;
pub mod completions;
pub mod config;
pub mod connection;
pub mod control;
pub mod failover;
pub mod gateways;
pub mod handover;
pub mod logging;
pub mod metrics;
pub mod portals;
pub mod registry;
pub mod server;
pub mod service;
pub mod sessions;
pub mod shutdown;
pub mod space;
pub mod stall;
pub mod state;
pub mod targets;
pub mod task_order;
pub mod tcp;

pub use connection::ConnectionLimits;
pub use server::{serve, Server};
pub use state::State;
pub use targets::{LunSpec, TargetSpec, Targets};
