//! Metrics in the Prometheus text format (`--metrics ADDR`), built with `prometheus-client`.
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `glfs_iscsi_lun_commands_total` | target, lun, kind | SCSI commands answered (kind: read, write, copy: the third-party copy commands EXTENDED COPY, POPULATE TOKEN and WRITE USING TOKEN, whose data moves inside the gateway; other) |
//! | `glfs_iscsi_lun_bytes_total` | target, lun, direction | bytes of good READ/WRITE commands (direction: read, write) |
//! | `glfs_iscsi_lun_command_duration_seconds` | target, lun, kind | histogram: from command start to its answer |
//! | `glfs_iscsi_lun_errors_total` | target, lun, sense_key | CHECK CONDITION answers by sense key |
//! | `glfs_iscsi_lun_responses_total` | target, lun, status | commands answered, by SCSI status (good, check_condition, busy, reservation_conflict, task_set_full, ...) |
//! | `glfs_iscsi_lun_commands_in_flight` | target, lun | commands started and not yet answered or aborted |
//! | `glfs_iscsi_lun_clone_copied_bytes` | target, lun | while `admin lun clone` copies the LUN: bytes copied so far |
//! | `glfs_iscsi_lun_clone_total_bytes` | target, lun | while `admin lun clone` copies the LUN: bytes to copy in all |
//! | `glfs_iscsi_target_sessions` | target | normal sessions logged in now |
//! | `glfs_iscsi_target_logins_total` | target | normal logins that reached full feature phase |
//! | `glfs_iscsi_login_failures_total` | target, reason | failed logins by login status (target "" if not a configured one) |
//! | `glfs_iscsi_gluster_connection_losses_total` | volume | connections to a volume found lost |
//! | `glfs_iscsi_gluster_reconnects_total` | volume | reconnects that brought a volume back |
//! | `glfs_iscsi_gluster_reconnect_duration_seconds` | volume | histogram: from the loss to the volume's return |
//! | `glfs_iscsi_gluster_unflushed_write_losses_total` | volume | LUNs that had writes gfapi acknowledged and no flush covered when a connection went (they may be lost; each such LUN's next SYNCHRONIZE CACHE fails) |
//! | `glfs_iscsi_alua_active` | target, lun | 1 while this gateway is the LUN's active gateway, else 0 (`--alua-failover`) |
//! | `glfs_iscsi_alua_takeovers_total` | target, lun, reason | times this gateway became the LUN's active gateway ([`TAKEOVER_REASONS`]) |
//! | `glfs_iscsi_alua_stepdowns_total` | target, lun, reason | times it stopped being it ([`STEPDOWN_REASONS`]) |
//! | `glfs_iscsi_alua_heartbeat_age_seconds` | target, lun | on a standby: how long the active gateway's record has stood still as this gateway sees it (0 when it moves) |
//! | `glfs_iscsi_alua_takeover_blocked` | target, lun | 1 while this standby finds the LUN's takeovers blocked by a stalled standby ([`crate::stall::blocked_after`]) |
//! | `glfs_iscsi_alua_write_locks_cleared_total` | target, lun | locks the volume held for a stalled active gateway's writes, cleared when this gateway took the LUN over from it ([`crate::stall::clear_write_locks`]) |
//!
//! Metrics are optional: without `--metrics` none of this exists ([`global`] is `None`) and
//! a command costs one relaxed load more. With it, a session looks its LUNs' metrics up once
//! (a lock and the label strings, on first use), then each command does a few relaxed
//! atomic additions: no lock and no allocation per command. Label values come only from the
//! configuration (targets, LUNs, volumes) and fixed tables, so initiators cannot grow the
//! number of series, and a target or LUN removed from the running configuration takes
//! its series with it ([`Metrics::remove_lun`], [`Metrics::remove_target`]): re-added, it
//! starts from zero. The `alua_` series are set by the failover round
//! ([`crate::failover`], its own thread, every half second at most), never by a command.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The process's metrics, when `--metrics` asked for them.
static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics, if enabled.
#[inline]
pub fn global() -> Option<&'static Metrics> {
    GLOBAL.get()
}

/// Enables metrics for the process (once; later calls return the first) and has the glfs
/// stores report their volumes' reconnects to them.
pub fn enable() -> &'static Metrics {
    let metrics = GLOBAL.get_or_init(Metrics::new);
    backstore::set_volume_observer(Arc::new(VolumeObserver));
    metrics
}

struct VolumeObserver;

impl backstore::VolumeObserver for VolumeObserver {
    fn connection_lost(&self, volume: &str) {
        if let Some(m) = global() {
            m.volume_losses.get_or_create(&volume_labels(volume)).inc();
        }
    }

    fn unflushed_writes_at_risk(&self, volume: &str) {
        if let Some(m) = global() {
            m.volume_unflushed_losses
                .get_or_create(&volume_labels(volume))
                .inc();
        }
    }

    fn reconnected(&self, volume: &str, took: Duration) {
        if let Some(m) = global() {
            let labels = volume_labels(volume);
            m.volume_reconnects.get_or_create(&labels).inc();
            m.volume_reconnect_seconds
                .get_or_create(&labels)
                .observe(took);
        }
    }
}

fn reason_labels(target: &str, lun: u64, reason: &'static str) -> LunReasonLabels {
    LunReasonLabels {
        target: target.to_string(),
        lun,
        reason,
    }
}

fn volume_labels(volume: &str) -> VolumeLabels {
    VolumeLabels {
        volume: volume.to_string(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LunKindLabels {
    target: String,
    lun: u64,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LunDirectionLabels {
    target: String,
    lun: u64,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LunSenseLabels {
    target: String,
    lun: u64,
    sense_key: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LunStatusLabels {
    target: String,
    lun: u64,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LunLabels {
    target: String,
    lun: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginFailureLabels {
    target: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    volume: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LunReasonLabels {
    target: String,
    lun: u64,
    reason: &'static str,
}

/// The `reason` labels of `glfs_iscsi_alua_takeovers_total`: how this gateway became a
/// LUN's active gateway.
///
/// * `unheld`: nobody held the LUN (the gateways' first start, or the former active
///   gateway's connection to the volume ended, or it stepped down);
/// * `handover`: the former active gateway handed it to this one (`admin alua handover`);
/// * `stalled`: the active gateway's heartbeat stood still for the stall bound and this
///   standby took its locks over (`crate::stall`).
pub const TAKEOVER_REASONS: [&str; 3] = ["unheld", "handover", "stalled"];

/// The `reason` labels of `glfs_iscsi_alua_stepdowns_total`: why this gateway stopped
/// being a LUN's active gateway (`crate::failover::StepDown`).
pub const STEPDOWN_REASONS: [&str; 8] = [
    "handover",
    "superseded",
    "fence_taken",
    "fenced",
    "connection_lost",
    "store_replaced",
    "target_changed",
    "target_lock_lost",
];

type HistogramFamily<L> = Family<L, AtomicHistogram, fn() -> AtomicHistogram>;

/// Every metric family, registered in one registry.
pub struct Metrics {
    registry: Registry,
    commands: Family<LunKindLabels, Counter>,
    bytes: Family<LunDirectionLabels, Counter>,
    latency: HistogramFamily<LunKindLabels>,
    errors: Family<LunSenseLabels, Counter>,
    statuses: Family<LunStatusLabels, Counter>,
    in_flight: Family<LunLabels, Gauge>,
    allocated: Family<LunLabels, Gauge>,
    available: Family<LunLabels, Gauge>,
    soft_threshold_reached: Family<LunLabels, Gauge>,
    clone_copied: Family<LunLabels, Gauge>,
    clone_total: Family<LunLabels, Gauge>,
    sessions: Family<TargetLabels, Gauge>,
    logins: Family<TargetLabels, Counter>,
    login_failures: Family<LoginFailureLabels, Counter>,
    volume_losses: Family<VolumeLabels, Counter>,
    volume_unflushed_losses: Family<VolumeLabels, Counter>,
    volume_reconnects: Family<VolumeLabels, Counter>,
    volume_reconnect_seconds: HistogramFamily<VolumeLabels>,
    alua_active: Family<LunLabels, Gauge>,
    alua_takeovers: Family<LunReasonLabels, Counter>,
    alua_stepdowns: Family<LunReasonLabels, Counter>,
    alua_heartbeat_age: Family<LunLabels, Gauge<f64, AtomicU64>>,
    alua_blocked: Family<LunLabels, Gauge>,
    alua_write_locks_cleared: Family<LunLabels, Counter>,
    /// The LUNs with `alua_` series, so a target removed takes them all.
    alua_luns: Mutex<HashSet<(String, u64)>>,
    /// Handles already made, so sessions of one LUN share them.
    luns: Mutex<HashMap<(String, u64), Arc<LunMetrics>>>,
}

/// Upper bounds of the command latency buckets, in seconds: 50 µs to 30 s (the command
/// time limit is 25 s by default).
const COMMAND_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the reconnect time buckets, in seconds.
const RECONNECT_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

fn command_histogram() -> AtomicHistogram {
    AtomicHistogram::new(COMMAND_BUCKETS)
}

fn reconnect_histogram() -> AtomicHistogram {
    AtomicHistogram::new(RECONNECT_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("glfs_iscsi");
        let commands = Family::default();
        let bytes = Family::default();
        let latency: HistogramFamily<LunKindLabels> =
            Family::new_with_constructor(command_histogram);
        let errors = Family::default();
        let statuses = Family::default();
        let in_flight = Family::default();
        let allocated = Family::default();
        let soft_threshold_reached = Family::default();
        let clone_copied = Family::default();
        let clone_total = Family::default();
        let available = Family::default();
        let sessions = Family::default();
        let logins = Family::default();
        let login_failures = Family::default();
        let volume_losses = Family::default();
        let volume_unflushed_losses = Family::default();
        let volume_reconnects = Family::default();
        let volume_reconnect_seconds: HistogramFamily<VolumeLabels> =
            Family::new_with_constructor(reconnect_histogram);
        let alua_active = Family::default();
        let alua_takeovers = Family::default();
        let alua_stepdowns = Family::default();
        let alua_heartbeat_age = Family::default();
        let alua_blocked = Family::default();
        let alua_write_locks_cleared = Family::default();
        registry.register(
            "lun_commands",
            "SCSI commands answered, by kind (read, write, other)",
            commands.clone(),
        );
        registry.register(
            "lun_bytes",
            "Bytes moved by good READ and WRITE commands",
            bytes.clone(),
        );
        registry.register_with_unit(
            "lun_command_duration",
            "Time from a command's start to its answer",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "lun_errors",
            "Commands answered with CHECK CONDITION, by sense key",
            errors.clone(),
        );
        registry.register(
            "lun_responses",
            "Commands answered, by SCSI status (BUSY and RESERVATION CONFLICT among them)",
            statuses.clone(),
        );
        registry.register(
            "lun_commands_in_flight",
            "Commands started and not yet answered",
            in_flight.clone(),
        );
        registry.register_with_unit(
            "lun_allocated",
            "What the LUN's blocks take on its storage (below its size where a thin LUN \
             was never written or was unmapped); sampled every 15 s",
            prometheus_client::registry::Unit::Bytes,
            allocated.clone(),
        );
        registry.register_with_unit(
            "lun_storage_available",
            "What is still free on the LUN's storage (its volume, or the file system of \
             its file), shared with everything else there; sampled every 15 s",
            prometheus_client::registry::Unit::Bytes,
            available.clone(),
        );
        registry.register(
            "lun_soft_threshold_reached",
            "1 while a thin LUN's storage has no more free than its soft threshold (its \
             hosts were told THIN PROVISIONING SOFT THRESHOLD REACHED), else 0; a LUN \
             without one has no series",
            soft_threshold_reached.clone(),
        );
        registry.register_with_unit(
            "lun_clone_copied",
            "While admin lun clone copies the LUN: what it has copied so far",
            prometheus_client::registry::Unit::Bytes,
            clone_copied.clone(),
        );
        registry.register_with_unit(
            "lun_clone_total",
            "While admin lun clone copies the LUN: what it copies in all",
            prometheus_client::registry::Unit::Bytes,
            clone_total.clone(),
        );
        registry.register(
            "target_sessions",
            "Normal sessions logged in",
            sessions.clone(),
        );
        registry.register(
            "target_logins",
            "Normal logins that reached full feature phase",
            logins.clone(),
        );
        registry.register(
            "login_failures",
            "Failed logins, by login status",
            login_failures.clone(),
        );
        registry.register(
            "gluster_connection_losses",
            "Connections to a Gluster volume found lost",
            volume_losses.clone(),
        );
        registry.register(
            "gluster_unflushed_write_losses",
            "LUNs with writes acknowledged and not flushed when a connection to the volume went",
            volume_unflushed_losses.clone(),
        );
        registry.register(
            "gluster_reconnects",
            "Reconnects that brought a Gluster volume back",
            volume_reconnects.clone(),
        );
        registry.register_with_unit(
            "gluster_reconnect_duration",
            "Time from a lost connection to the volume's return",
            prometheus_client::registry::Unit::Seconds,
            volume_reconnect_seconds.clone(),
        );
        registry.register(
            "alua_active",
            "1 while this gateway is the LUN's active gateway (holds its data fence, reports \
             itself active/optimized), 0 while standby (--alua-failover)",
            alua_active.clone(),
        );
        registry.register(
            "alua_takeovers",
            "Times this gateway became the LUN's active gateway, by reason (unheld, \
             handover, stalled)",
            alua_takeovers.clone(),
        );
        registry.register(
            "alua_stepdowns",
            "Times this gateway stopped being the LUN's active gateway, by reason",
            alua_stepdowns.clone(),
        );
        registry.register_with_unit(
            "alua_heartbeat_age",
            "On a standby: how long the active gateway's record has stood still as this \
             gateway sees it (0 when it moves, when nobody is recorded active or on the active \
             gateway)",
            prometheus_client::registry::Unit::Seconds,
            alua_heartbeat_age.clone(),
        );
        registry.register(
            "alua_takeover_blocked",
            "1 while this standby finds the LUN's takeovers blocked by another standby that \
             holds the takeover-breaking lock and stalled, else 0",
            alua_blocked.clone(),
        );
        registry.register(
            "alua_write_locks_cleared",
            "Locks the volume held for a stalled active gateway's writes (Gluster \
             replication's, which a stopped writer keeps) that this gateway cleared when it \
             took the LUN over from it",
            alua_write_locks_cleared.clone(),
        );
        Metrics {
            registry,
            commands,
            bytes,
            latency,
            errors,
            statuses,
            in_flight,
            allocated,
            available,
            soft_threshold_reached,
            clone_copied,
            clone_total,
            sessions,
            logins,
            login_failures,
            volume_losses,
            volume_unflushed_losses,
            volume_reconnects,
            volume_reconnect_seconds,
            alua_active,
            alua_takeovers,
            alua_stepdowns,
            alua_heartbeat_age,
            alua_blocked,
            alua_write_locks_cleared,
            alua_luns: Mutex::new(HashSet::new()),
            luns: Mutex::new(HashMap::new()),
        }
    }

    /// Sets LUN `lun` of `target`'s failover gauges as the failover round found them:
    /// whether this gateway is its active gateway, how long the active gateway's record
    /// has stood still (`heartbeat_age`, zero on the active gateway) and whether its
    /// takeovers are blocked. The first call for a LUN also shows every takeover and
    /// step-down reason at zero (a counter that exists from the start, so `rate()` and
    /// `increase()` see its first rise). Called by the failover round only.
    pub fn alua_lun(
        &self,
        target: &str,
        lun: u64,
        active: bool,
        heartbeat_age: Duration,
        blocked: bool,
    ) {
        let labels = LunLabels {
            target: target.to_string(),
            lun,
        };
        let first = self
            .alua_luns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((target.to_string(), lun));
        if first {
            for reason in TAKEOVER_REASONS {
                self.alua_takeovers
                    .get_or_create_owned(&reason_labels(target, lun, reason));
            }
            for reason in STEPDOWN_REASONS {
                self.alua_stepdowns
                    .get_or_create_owned(&reason_labels(target, lun, reason));
            }
            self.alua_write_locks_cleared.get_or_create_owned(&labels);
        }
        self.alua_active
            .get_or_create(&labels)
            .set(i64::from(active));
        self.alua_heartbeat_age
            .get_or_create(&labels)
            .set(heartbeat_age.as_secs_f64());
        self.alua_blocked
            .get_or_create(&labels)
            .set(i64::from(blocked));
    }

    /// This gateway became LUN `lun` of `target`'s active gateway; `reason` is one of
    /// [`TAKEOVER_REASONS`].
    pub fn alua_took(&self, target: &str, lun: u64, reason: &'static str) {
        debug_assert!(TAKEOVER_REASONS.contains(&reason), "{reason}");
        self.alua_takeovers
            .get_or_create(&reason_labels(target, lun, reason))
            .inc();
    }

    /// This gateway stopped being LUN `lun` of `target`'s active gateway; `reason` is one
    /// of [`STEPDOWN_REASONS`].
    pub fn alua_stepped_down(&self, target: &str, lun: u64, reason: &'static str) {
        debug_assert!(STEPDOWN_REASONS.contains(&reason), "{reason}");
        self.alua_stepdowns
            .get_or_create(&reason_labels(target, lun, reason))
            .inc();
    }

    /// Taking LUN `lun` of `target` over from a stalled active gateway, this gateway
    /// cleared `cleared` locks the volume held for that gateway's writes.
    pub fn alua_cleared_write_locks(&self, target: &str, lun: u64, cleared: u32) {
        let labels = LunLabels {
            target: target.to_string(),
            lun,
        };
        self.alua_write_locks_cleared
            .get_or_create(&labels)
            .inc_by(u64::from(cleared));
    }

    /// LUN `lun` of `target` left this gateway's failover (its target or itself left the
    /// configuration): its `alua_` series leave the output.
    pub fn remove_alua(&self, target: &str, lun: u64) {
        self.alua_luns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(target.to_string(), lun));
        for reason in TAKEOVER_REASONS {
            self.alua_takeovers
                .remove(&reason_labels(target, lun, reason));
        }
        for reason in STEPDOWN_REASONS {
            self.alua_stepdowns
                .remove(&reason_labels(target, lun, reason));
        }
        let labels = LunLabels {
            target: target.to_string(),
            lun,
        };
        self.alua_active.remove(&labels);
        self.alua_heartbeat_age.remove(&labels);
        self.alua_blocked.remove(&labels);
        self.alua_write_locks_cleared.remove(&labels);
    }

    /// The metrics of LUN `lun` of `target` (made on first use; shared afterwards).
    pub fn lun(&self, target: &str, lun: u64) -> Arc<LunMetrics> {
        let mut luns = self.luns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = luns.get(&(target.to_string(), lun)) {
            return m.clone();
        }
        let kind = |kind| LunKindLabels {
            target: target.to_string(),
            lun,
            kind,
        };
        let direction = |direction| LunDirectionLabels {
            target: target.to_string(),
            lun,
            direction,
        };
        // One statement per handle: a family's read guard must be gone before the next
        // get_or_create on it, which may take its write lock.
        let bytes_read = self.bytes.get_or_create(&direction("read")).clone();
        let bytes_written = self.bytes.get_or_create(&direction("write")).clone();
        let in_flight = self
            .in_flight
            .get_or_create(&LunLabels {
                target: target.to_string(),
                lun,
            })
            .clone();
        let good = self
            .statuses
            .get_or_create(&LunStatusLabels {
                target: target.to_string(),
                lun,
                status: status_label(0),
            })
            .clone();
        let m = Arc::new(LunMetrics {
            commands: Kind::ALL.map(|k| self.commands.get_or_create(&kind(k.label())).clone()),
            latency: Kind::ALL.map(|k| self.latency.get_or_create(&kind(k.label())).clone()),
            bytes_read,
            bytes_written,
            in_flight,
            good,
            errors: self.errors.clone(),
            statuses: self.statuses.clone(),
            removed: AtomicBool::new(false),
            target: target.to_string(),
            lun,
        });
        luns.insert((target.to_string(), lun), m.clone());
        m
    }

    /// LUN `lun` of `target` left the running configuration: its series leave the output.
    /// Sessions still holding its handles see them marked removed (they look the LUN up
    /// again) and create no series for it any more.
    pub fn remove_lun(&self, target: &str, lun: u64) {
        let mut luns = self.luns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = luns.remove(&(target.to_string(), lun)) {
            m.removed.store(true, Ordering::Relaxed);
        }
        drop(luns);
        let target = target.to_string();
        for kind in Kind::ALL {
            let labels = LunKindLabels {
                target: target.clone(),
                lun,
                kind: kind.label(),
            };
            self.commands.remove(&labels);
            self.latency.remove(&labels);
        }
        for direction in ["read", "write"] {
            self.bytes.remove(&LunDirectionLabels {
                target: target.clone(),
                lun,
                direction,
            });
        }
        for key in 0..=0x0f {
            self.errors.remove(&LunSenseLabels {
                target: target.clone(),
                lun,
                sense_key: sense_key_label(key),
            });
        }
        for status in SCSI_STATUSES {
            self.statuses.remove(&LunStatusLabels {
                target: target.clone(),
                lun,
                status: status_label(status),
            });
        }
        for family in [
            &self.in_flight,
            &self.allocated,
            &self.available,
            &self.soft_threshold_reached,
            &self.clone_copied,
            &self.clone_total,
        ] {
            family.remove(&LunLabels {
                target: target.clone(),
                lun,
            });
        }
        self.remove_alua(&target, lun);
    }

    /// `target` left the running configuration: its series and its LUNs' leave the output.
    pub fn remove_target(&self, target: &str) {
        let mut luns: Vec<u64> = {
            let luns = self.luns.lock().unwrap_or_else(|e| e.into_inner());
            luns.keys()
                .filter(|(t, _)| t == target)
                .map(|(_, lun)| *lun)
                .collect()
        };
        luns.extend(
            self.alua_luns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(t, _)| t == target)
                .map(|(_, lun)| *lun),
        );
        luns.sort_unstable();
        luns.dedup();
        for lun in luns {
            self.remove_lun(target, lun);
        }
        let labels = TargetLabels {
            target: target.to_string(),
        };
        self.sessions.remove(&labels);
        self.logins.remove(&labels);
        for status in LOGIN_STATUSES {
            self.login_failures.remove(&LoginFailureLabels {
                target: target.to_string(),
                reason: login_failure_reason(status),
            });
        }
    }

    /// LUN `lun` of `target`'s storage as [`crate::space`] sampled it.
    pub fn lun_space(&self, target: &str, lun: u64, space: store_api::Space) {
        let labels = LunLabels {
            target: target.to_string(),
            lun,
        };
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.allocated
            .get_or_create(&labels)
            .set(bytes(space.allocated));
        match space.available {
            Some(n) => {
                self.available.get_or_create(&labels).set(bytes(n));
            }
            None => {
                self.available.remove(&labels);
            }
        }
    }

    /// Whether LUN `lun` of `target` is at its soft threshold (`None`: it has none).
    pub fn lun_soft_threshold(&self, target: &str, lun: u64, reached: Option<bool>) {
        let labels = LunLabels {
            target: target.to_string(),
            lun,
        };
        match reached {
            Some(r) => {
                self.soft_threshold_reached
                    .get_or_create(&labels)
                    .set(i64::from(r));
            }
            None => {
                self.soft_threshold_reached.remove(&labels);
            }
        }
    }

    /// How far the copy `admin lun clone` makes of LUN `lun` of `target` is: bytes copied
    /// and in all; `None`: no copy (the series go).
    pub fn lun_clone(&self, target: &str, lun: u64, progress: Option<(u64, u64)>) {
        let labels = LunLabels {
            target: target.to_string(),
            lun,
        };
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match progress {
            Some((done, total)) => {
                self.clone_copied.get_or_create(&labels).set(bytes(done));
                self.clone_total.get_or_create(&labels).set(bytes(total));
            }
            None => {
                self.clone_copied.remove(&labels);
                self.clone_total.remove(&labels);
            }
        }
    }

    /// A normal session to `target` logged in; the returned guard counts it until dropped.
    pub fn session(&self, target: &str) -> SessionGuard {
        let labels = TargetLabels {
            target: target.to_string(),
        };
        self.logins.get_or_create(&labels).inc();
        let gauge = self.sessions.get_or_create(&labels).clone();
        gauge.inc();
        SessionGuard(gauge)
    }

    /// A login failed with `status` (RFC 7143 11.13.5); `target` is the configured target
    /// it asked for, or "".
    pub fn login_failed(&self, target: &str, status: u16) {
        self.login_failures
            .get_or_create(&LoginFailureLabels {
                target: target.to_string(),
                reason: login_failure_reason(status),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Counts a session in `glfs_iscsi_target_sessions` while it lives.
pub struct SessionGuard(Gauge);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every login status [`login_failure_reason`] names, and one it does not (for "other").
const LOGIN_STATUSES: [u16; 16] = [
    0x0200, 0x0201, 0x0202, 0x0203, 0x0204, 0x0205, 0x0206, 0x0207, 0x0208, 0x0209, 0x020a, 0x020b,
    0x0300, 0x0301, 0x0302, 0xffff,
];

/// The label of a login status (RFC 7143 11.13.5).
pub fn login_failure_reason(status: u16) -> &'static str {
    match status {
        0x0200 => "initiator_error",
        0x0201 => "authentication_failure",
        0x0202 => "authorization_failure",
        0x0203 => "not_found",
        0x0204 => "target_removed",
        0x0205 => "unsupported_version",
        0x0206 => "too_many_connections",
        0x0207 => "missing_parameter",
        0x0208 => "cannot_include_in_session",
        0x0209 => "session_type_not_supported",
        0x020a => "session_does_not_exist",
        0x020b => "invalid_during_login",
        0x0300 => "target_error",
        0x0301 => "service_unavailable",
        0x0302 => "out_of_resources",
        _ => "other",
    }
}

/// The label of a sense key (SPC-4 table 45).
fn sense_key_label(key: u8) -> &'static str {
    match key & 0x0f {
        0x0 => "no_sense",
        0x1 => "recovered_error",
        0x2 => "not_ready",
        0x3 => "medium_error",
        0x4 => "hardware_error",
        0x5 => "illegal_request",
        0x6 => "unit_attention",
        0x7 => "data_protect",
        0x8 => "blank_check",
        0x9 => "vendor_specific",
        0xa => "copy_aborted",
        0xb => "aborted_command",
        0xd => "volume_overflow",
        0xe => "miscompare",
        _ => "reserved",
    }
}

/// Every SCSI status [`status_label`] names, and one it does not (for "other").
const SCSI_STATUSES: [u8; 9] = [0x00, 0x02, 0x04, 0x08, 0x18, 0x28, 0x30, 0x40, 0xff];

/// The label of a SCSI status (SAM-5 table 41).
fn status_label(status: u8) -> &'static str {
    match status {
        0x00 => "good",
        0x02 => "check_condition",
        0x04 => "condition_met",
        0x08 => "busy",
        0x18 => "reservation_conflict",
        0x28 => "task_set_full",
        0x30 => "aca_active",
        0x40 => "task_aborted",
        _ => "other",
    }
}

/// What a command does, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Copy,
    Other,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Read, Kind::Write, Kind::Copy, Kind::Other];

    fn label(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Copy => "copy",
            Kind::Other => "other",
        }
    }

    /// READ (6, 10, 12, 16) are reads; WRITE and WRITE AND VERIFY (6, 10, 12, 16) writes;
    /// operation code 83h (EXTENDED COPY, POPULATE TOKEN, WRITE USING TOKEN) copies;
    /// everything else is other.
    pub fn of(cdb: &[u8]) -> Kind {
        use scsi::cdb::opcode::*;
        match cdb.first().copied() {
            Some(READ_6 | READ_10 | READ_12 | READ_16) => Kind::Read,
            Some(
                WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16 | WRITE_AND_VERIFY_10
                | WRITE_AND_VERIFY_12 | WRITE_AND_VERIFY_16,
            ) => Kind::Write,
            Some(EXTENDED_COPY) => Kind::Copy,
            _ => Kind::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One LUN's metric handles: atomics shared with the registry.
pub struct LunMetrics {
    commands: [Counter; 4],
    latency: [AtomicHistogram; 4],
    bytes_read: Counter,
    bytes_written: Counter,
    in_flight: Gauge,
    /// `lun_responses_total{status="good"}`: the one status counted on the hot path.
    good: Counter,
    errors: Family<LunSenseLabels, Counter>,
    statuses: Family<LunStatusLabels, Counter>,
    /// The LUN left the configuration: its series are gone and must not come back.
    removed: AtomicBool,
    target: String,
    lun: u64,
}

impl LunMetrics {
    /// A command started.
    #[inline]
    pub fn started(&self) {
        self.in_flight.inc();
    }

    /// Whether the LUN left the configuration (its handles count into nothing shown).
    #[inline]
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// A started command ended without an answer (aborted, or its connection closed).
    #[inline]
    pub fn dropped(&self) {
        self.in_flight.dec();
    }

    /// A started command was answered after `took`: `status` (SAM-5), `bytes` moved if
    /// GOOD, and the sense key of a CHECK CONDITION.
    #[inline]
    pub fn answered(
        &self,
        kind: Kind,
        took: Duration,
        status: u8,
        bytes: u64,
        sense_key: Option<u8>,
    ) {
        self.in_flight.dec();
        self.commands[kind.index()].inc();
        self.latency[kind.index()].observe(took);
        if status == 0 {
            self.good.inc();
            match kind {
                Kind::Read => self.bytes_read.inc_by(bytes),
                Kind::Write => self.bytes_written.inc_by(bytes),
                Kind::Copy | Kind::Other => 0,
            };
            return;
        }
        if self.is_removed() {
            // Its series are gone; making them again would bring them back.
            return;
        }
        // The error path only: a lock and the labels, on the families.
        self.statuses
            .get_or_create(&LunStatusLabels {
                target: self.target.clone(),
                lun: self.lun,
                status: status_label(status),
            })
            .inc();
        if let Some(key) = sense_key {
            self.errors
                .get_or_create(&LunSenseLabels {
                    target: self.target.clone(),
                    lun: self.lun,
                    sense_key: sense_key_label(key),
                })
                .inc();
        }
    }
}

/// A histogram of durations with fixed buckets, updated with relaxed atomic additions only
/// (prometheus-client's own histogram takes a lock per observation).
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds in seconds, ascending; one more bucket (+Inf) follows them.
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        AtomicHistogram {
            inner: Arc::new(HistogramInner {
                bounds,
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                count: AtomicU64::new(0),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    #[inline]
    pub fn observe(&self, took: Duration) {
        let i = &self.inner;
        let secs = took.as_secs_f64();
        let bucket = i
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(i.bounds.len());
        i.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        i.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        i.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let i = &self.inner;
        let buckets: Vec<(f64, u64)> = i
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(i.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count as the buckets' sum, so a scrape racing an observation stays consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = i.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Serves `GET /metrics` (and `/`) in the Prometheus text format on `listener` until the
/// task is dropped. A deliberately small HTTP/1.1 responder: one request per connection.
pub async fn serve(listener: tokio::net::TcpListener, metrics: &'static Metrics) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(err) = answer(stream, metrics).await {
                tracing::debug!(%peer, %err, "metrics: request failed");
            }
        });
    }
}

/// Reads one request head (up to 8 KiB, 10 s) and answers it.
async fn answer(
    mut stream: tokio::net::TcpStream,
    metrics: &'static Metrics,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if read.is_err() {
        return Ok(());
    }
    read.unwrap_or(Ok(()))?;
    let (status, content_type, body) = respond(&head, metrics);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The status line, content type and body answering a request head.
fn respond(head: &[u8], metrics: &Metrics) -> (&'static str, &'static str, String) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics" | "/") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name{labels}` in a text exposition.
    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(name_and_labels)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
    }

    #[test]
    fn commands_bytes_latency_and_errors_are_counted_per_lun() {
        let m = Metrics::new();
        let lun = m.lun("iqn.2026-11.x:t", 3);
        for _ in 0..3 {
            lun.started();
        }
        lun.answered(Kind::Read, Duration::from_micros(80), 0, 4096, None);
        lun.answered(Kind::Write, Duration::from_millis(3), 0, 512, None);
        // CHECK CONDITION (SAM-5 status 0x02), MEDIUM ERROR (sense key 3).
        lun.answered(Kind::Read, Duration::from_millis(40), 0x02, 0, Some(0x3));
        let text = m.render();
        let l = r#"target="iqn.2026-11.x:t",lun="3""#;
        assert_eq!(
            sample(
                &text,
                &format!("glfs_iscsi_lun_commands_total{{{l},kind=\"read\"}}")
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("glfs_iscsi_lun_commands_total{{{l},kind=\"write\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("glfs_iscsi_lun_bytes_total{{{l},direction=\"read\"}}")
            ),
            Some(4096.0),
            "a failed read moves nothing"
        );
        assert_eq!(
            sample(
                &text,
                &format!("glfs_iscsi_lun_errors_total{{{l},sense_key=\"medium_error\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("glfs_iscsi_lun_commands_in_flight{{{l}}}")),
            Some(0.0)
        );
        // Cumulative buckets: 80 µs is under 0.0001 s, 40 ms under 0.05 s.
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("glfs_iscsi_lun_command_duration_seconds_bucket{{le=\"{le}\",{l},kind=\"read\"}}"),
            )
        };
        assert_eq!(bucket("0.00005"), Some(0.0), "{text}");
        assert_eq!(bucket("0.0001"), Some(1.0));
        assert_eq!(bucket("0.025"), Some(1.0));
        assert_eq!(bucket("0.05"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        let count = format!("glfs_iscsi_lun_command_duration_seconds_count{{{l},kind=\"read\"}}");
        assert_eq!(sample(&text, &count), Some(2.0));
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn sessions_of_one_lun_share_its_counters() {
        let m = Metrics::new();
        let a = m.lun("iqn.2026-11.x:t", 0);
        let b = m.lun("iqn.2026-11.x:t", 0);
        a.started();
        b.started();
        a.answered(Kind::Other, Duration::ZERO, 0, 0, None);
        b.answered(Kind::Other, Duration::ZERO, 0, 0, None);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                r#"glfs_iscsi_lun_commands_total{target="iqn.2026-11.x:t",lun="0",kind="other"}"#
            ),
            Some(2.0)
        );
    }

    #[test]
    fn sessions_logins_and_failures_are_counted_per_target() {
        let m = Metrics::new();
        let s1 = m.session("iqn.2026-11.x:t");
        let s2 = m.session("iqn.2026-11.x:t");
        drop(s1);
        // RFC 7143 11.13.5: 0x0201 authentication failure, 0x0202 authorization failure.
        m.login_failed("iqn.2026-11.x:t", 0x0201);
        m.login_failed("", 0x0202);
        let text = m.render();
        let t = r#"target="iqn.2026-11.x:t""#;
        assert_eq!(
            sample(&text, &format!("glfs_iscsi_target_sessions{{{t}}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("glfs_iscsi_target_logins_total{{{t}}}")),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!(
                    "glfs_iscsi_login_failures_total{{{t},reason=\"authentication_failure\"}}"
                )
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"glfs_iscsi_login_failures_total{target="",reason="authorization_failure"}"#
            ),
            Some(1.0)
        );
        drop(s2);
    }

    #[test]
    fn every_status_is_counted_and_removed_luns_and_targets_leave_the_output() {
        let m = Metrics::new();
        let (t, u) = ("iqn.2026-11.x:t", "iqn.2026-11.x:u");
        let a = m.lun(t, 0);
        let b = m.lun(t, 1);
        let c = m.lun(u, 0);
        let _session = m.session(t);
        m.login_failed(t, 0x0201);
        // SAM-5 table 41: GOOD 00h, CHECK CONDITION 02h, BUSY 08h, RESERVATION CONFLICT 18h.
        for (lun, status, sense) in [
            (&a, 0x00, None),
            (&a, 0x02, Some(0x5)),
            (&a, 0x08, None),
            (&a, 0x18, None),
            (&a, 0x18, None),
            (&b, 0x00, None),
            (&c, 0x08, None),
        ] {
            lun.started();
            lun.answered(Kind::Other, Duration::ZERO, status, 0, sense);
        }
        let text = m.render();
        let status = |lun: &str, status: &str| {
            sample(
                &text,
                &format!("glfs_iscsi_lun_responses_total{{{lun},status=\"{status}\"}}"),
            )
        };
        let t0 = format!("target=\"{t}\",lun=\"0\"");
        assert_eq!(status(&t0, "good"), Some(1.0), "{text}");
        assert_eq!(status(&t0, "check_condition"), Some(1.0));
        assert_eq!(status(&t0, "busy"), Some(1.0));
        assert_eq!(status(&t0, "reservation_conflict"), Some(2.0));
        assert_eq!(
            sample(
                &text,
                &format!("glfs_iscsi_lun_errors_total{{{t0},sense_key=\"illegal_request\"}}")
            ),
            Some(1.0)
        );

        // LUN 0 of t goes: none of its series stay; LUN 1 and the other target's do.
        m.remove_lun(t, 0);
        assert!(a.is_removed() && !b.is_removed());
        // A session still holding the old handles makes no series again.
        a.started();
        a.answered(Kind::Read, Duration::ZERO, 0x02, 0, Some(0x5));
        let text = m.render();
        assert!(!text.contains(&t0), "{text}");
        assert!(
            text.contains(&format!("target=\"{t}\",lun=\"1\"")),
            "{text}"
        );
        assert!(
            text.contains(&format!("target=\"{u}\",lun=\"0\"")),
            "{text}"
        );

        // Target t goes: nothing names it any more; u is untouched.
        m.remove_target(t);
        let text = m.render();
        assert!(!text.contains(&format!("target=\"{t}\"")), "{text}");
        assert_eq!(
            sample(
                &text,
                &format!(
                    "glfs_iscsi_lun_responses_total{{target=\"{u}\",lun=\"0\",status=\"busy\"}}"
                )
            ),
            Some(1.0)
        );
        // Re-added, a LUN starts from zero.
        let again = m.lun(t, 0);
        again.started();
        again.answered(Kind::Other, Duration::ZERO, 0, 0, None);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                &format!("glfs_iscsi_lun_commands_total{{{t0},kind=\"other\"}}")
            ),
            Some(1.0)
        );
        assert!(!text.contains(&format!("{t0},status=\"busy\"")), "{text}");
    }

    #[test]
    fn failover_roles_takeovers_step_downs_heartbeat_age_and_blocking_per_lun() {
        let m = Metrics::new();
        let (t, u) = ("iqn.2026-11.x:t", "iqn.2026-11.x:u");
        // A standby of LUN 0 of t, the active gateway's record standing still for 9.5 s;
        // LUN 1 of t and LUN 0 of u, active here.
        m.alua_lun(t, 0, false, Duration::from_millis(9500), false);
        m.alua_lun(t, 1, true, Duration::ZERO, false);
        m.alua_lun(u, 0, true, Duration::ZERO, false);
        m.alua_took(t, 1, "unheld");
        let text = m.render();
        let l = |t: &str, lun: u16| format!("target=\"{t}\",lun=\"{lun}\"");
        let (t0, t1, u0) = (l(t, 0), l(t, 1), l(u, 0));
        let get = |text: &str, name: &str, labels: &str| {
            sample(text, &format!("glfs_iscsi_{name}{{{labels}}}"))
        };
        assert_eq!(get(&text, "alua_active", &t0), Some(0.0), "{text}");
        assert_eq!(get(&text, "alua_active", &t1), Some(1.0));
        assert_eq!(
            get(&text, "alua_heartbeat_age_seconds", &t0),
            Some(9.5),
            "{text}"
        );
        assert_eq!(get(&text, "alua_heartbeat_age_seconds", &t1), Some(0.0));
        assert_eq!(get(&text, "alua_takeover_blocked", &t0), Some(0.0));
        assert_eq!(
            get(&text, "alua_write_locks_cleared_total", &t0),
            Some(0.0),
            "{text}"
        );
        // Every reason is there from the first round, at zero but the one counted.
        let took = |text: &str, labels: &str, reason: &str| {
            get(
                text,
                "alua_takeovers_total",
                &format!("{labels},reason=\"{reason}\""),
            )
        };
        let stepped = |text: &str, labels: &str, reason: &str| {
            get(
                text,
                "alua_stepdowns_total",
                &format!("{labels},reason=\"{reason}\""),
            )
        };
        assert_eq!(took(&text, &t1, "unheld"), Some(1.0), "{text}");
        for reason in ["handover", "stalled"] {
            assert_eq!(took(&text, &t1, reason), Some(0.0), "{reason}");
        }
        for reason in STEPDOWN_REASONS {
            assert_eq!(stepped(&text, &t0, reason), Some(0.0), "{reason}");
        }
        assert!(
            text.contains("# TYPE glfs_iscsi_alua_active gauge"),
            "{text}"
        );
        assert!(text.contains("# TYPE glfs_iscsi_alua_takeovers counter"));
        assert!(text.contains("# TYPE glfs_iscsi_alua_heartbeat_age_seconds gauge"));
        assert!(text.contains("# UNIT glfs_iscsi_alua_heartbeat_age_seconds seconds"));

        // LUN 1 of t is taken over by another gateway; LUN 0 of t is taken over from a
        // stalled one after being blocked for a while; heartbeats move again.
        m.alua_stepped_down(t, 1, "fence_taken");
        m.alua_lun(t, 1, false, Duration::ZERO, false);
        m.alua_lun(t, 0, false, Duration::from_secs(40), true);
        let text = m.render();
        assert_eq!(
            get(&text, "alua_takeover_blocked", &t0),
            Some(1.0),
            "{text}"
        );
        assert_eq!(get(&text, "alua_heartbeat_age_seconds", &t0), Some(40.0));
        assert_eq!(get(&text, "alua_active", &t1), Some(0.0));
        assert_eq!(stepped(&text, &t1, "fence_taken"), Some(1.0));
        m.alua_cleared_write_locks(t, 0, 3);
        m.alua_took(t, 0, "stalled");
        m.alua_lun(t, 0, true, Duration::ZERO, false);
        let text = m.render();
        assert_eq!(get(&text, "alua_write_locks_cleared_total", &t0), Some(3.0));
        assert_eq!(get(&text, "alua_write_locks_cleared_total", &t1), Some(0.0));
        assert_eq!(get(&text, "alua_active", &t0), Some(1.0));
        assert_eq!(get(&text, "alua_takeover_blocked", &t0), Some(0.0));
        assert_eq!(took(&text, &t0, "stalled"), Some(1.0));

        // LUN 0 of t leaves with the LUN's other series; target u leaves though no session
        // ever made its LUN's command series.
        m.remove_lun(t, 0);
        m.remove_target(u);
        let text = m.render();
        assert!(!text.contains(&t0), "{text}");
        assert!(!text.contains(&u0), "{text}");
        assert_eq!(get(&text, "alua_active", &t1), Some(0.0));
        m.remove_alua(t, 1);
        assert!(!m.render().contains("lun=\""), "{}", m.render());
    }

    #[test]
    fn command_kinds_follow_the_opcode() {
        // Opcodes from SBC-4 table 17.
        assert_eq!(Kind::of(&[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), Kind::Read);
        assert_eq!(Kind::of(&[0x88]), Kind::Read);
        assert_eq!(Kind::of(&[0x2a]), Kind::Write);
        assert_eq!(Kind::of(&[0x8a]), Kind::Write);
        assert_eq!(Kind::of(&[0x2e]), Kind::Write);
        assert_eq!(Kind::of(&[0x00]), Kind::Other);
        assert_eq!(Kind::of(&[0x12]), Kind::Other);
        // EXTENDED COPY, POPULATE TOKEN, WRITE USING TOKEN (83h, SAs 00h, 10h, 11h).
        for sa in [0x00, 0x10, 0x11] {
            assert_eq!(Kind::of(&[0x83, sa]), Kind::Copy);
        }
        // RECEIVE COPY RESULTS / ROD TOKEN INFORMATION only report: other.
        assert_eq!(Kind::of(&[0x84, 0x07]), Kind::Other);
        assert_eq!(Kind::of(&[]), Kind::Other);
    }

    #[test]
    fn the_responder_serves_metrics_and_refuses_the_rest() {
        let m = Metrics::new();
        m.session("iqn.2026-11.x:t");
        let (status, kind, body) = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m);
        assert_eq!(status, "200 OK");
        assert!(kind.starts_with("application/openmetrics-text"));
        assert!(body.contains("glfs_iscsi_target_sessions"), "{body}");
        assert_eq!(
            respond(b"GET /nope HTTP/1.1\r\n\r\n", &m).0,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", &m).0,
            "405 Method Not Allowed"
        );
    }
}
