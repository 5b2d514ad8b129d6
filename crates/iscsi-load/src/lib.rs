//! `iscsi-load`: an initiator-side load generator for iSCSI targets.
//!
//! Logs in to one LUN with libiscsi and keeps `queue_depth` READ(16)/WRITE(16)
//! commands of `block_size` bytes in flight at random aligned offsets of an LBA
//! range for a fixed time, from one thread: libiscsi's asynchronous API
//! (`iscsi_*_task` + `iscsi_service`) driven by `poll()`. Every command's status
//! and residual is checked; the result is one JSON line:
//! `{"iops":..,"mib_per_s":..,"lat_us_p50":..,"lat_us_p99":..,"errors":..,...}`.
//!
//! With `--verify` ([`run_verified`], [`verify`]) every block written carries its LBA and
//! a generation and every read answered GOOD is checked against what the run wrote:
//! stale, misplaced, foreign or torn bytes count as wrong blocks (a second JSON line
//! `{"verify": {...}}`; exit status 1 on any).
//!
//! Debian's fio has no libiscsi engine, so this is how `cargo xtask bench` loads
//! both tgtd and our target the same way.
//!
//! ```no_run
//! use iscsi_load::{run, Session, Workload, Rw};
//! let session = Session::connect("iscsi://127.0.0.1:3260/iqn.2026-11.io.example:disk/0",
//!                                "iqn.2026-11.io.example:load").unwrap();
//! let outcome = run(&session, &Workload { rw: Rw::RandWrite, ..Workload::default() }).unwrap();
//! println!("{}", outcome.report.to_json());
//! ```

#![warn(missing_docs)]

mod engine;
mod session;
mod sessions;
mod stats;
pub mod verify;
mod workload;

pub use engine::{run, run_verified, Outcome};
pub use session::{Session, Url, COMMAND_TIMEOUT_SECS};
pub use sessions::{combine, run_sessions};
pub use stats::{Histogram, Report, PERCENTILES};
pub use verify::{Verifier, VerifyReport};
pub use workload::{Picker, Range, Rw, Workload};
