//! Sans-IO SCSI block emulation (SPC-4 / SBC-3).
//!
//! [`ScsiTarget::start`] takes one command (CDB plus any data-out bytes) and answers either
//! at once ([`Start::Done`]) or with a storage request to carry out ([`Start::Io`]). The caller
//! runs the request on the LUN's [`store_api::BlockStore`] and hands the result to
//! [`Pending::finish`], which may ask for another request (multi-step commands) or finish.
//!
//! Architecture invariant: this crate does no I/O, spawns nothing, reads no clock and knows
//! nothing of iSCSI. Only transport-level failures are Rust errors; every SCSI failure is a
//! [`Response`] with CHECK CONDITION and sense data.
//!
//! Residuals: [`Response::transfer_len`] is the number of bytes the command moves as the CDB
//! defines it (for READ/WRITE the transfer length times the block size, for commands with an
//! ALLOCATION LENGTH the bytes actually returned, at most that length). The transport compares
//! it with the initiator's expected length to set overflow/underflow residuals, and sends at
//! most the expected length of `data_in`. A WRITE whose data-out is shorter than the CDB asks
//! for writes the whole blocks it received and nothing else and still completes with GOOD
//! (libiscsi's write residual tests expect exactly that); extra data-out bytes are ignored.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cdb;
mod commands;
pub mod nexus;
mod reservations;
pub mod sense;

use bytes::Bytes;
use std::sync::Arc;
// Told the time by the driver (never read here): `Instant` is a value passed in.
use std::time::{Duration, Instant};
use store_api::{Capabilities, Geometry, IoRequest, IoResult, Segments};

pub use crate::commands::alua::{AccessState, Alua, BadAlua, PortGroup};
use crate::commands::exec;
pub use crate::commands::threshold::{SoftThreshold, ThresholdNews};
use crate::nexus::Nexuses;
pub use crate::nexus::{InitiatorPort, UaScope, UnitAttention};
pub use crate::reservations::PrType;
use crate::reservations::Reservations;
use crate::sense::Sense;

pub use crate::commands::exec::{
    MAX_COMPARE_AND_WRITE_BLOCKS, MAX_TRANSFER_BYTES, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
};

/// Identifies an I_T nexus (initiator port + target port), for per-nexus state such as
/// UNIT ATTENTION conditions and reservations.
pub type NexusId = u64;

/// SCSI status codes (SAM-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// GOOD.
    Good = 0x00,
    /// CHECK CONDITION: sense data describes the error.
    CheckCondition = 0x02,
    /// CONDITION MET.
    ConditionMet = 0x04,
    /// BUSY.
    Busy = 0x08,
    /// RESERVATION CONFLICT.
    ReservationConflict = 0x18,
    /// TASK SET FULL.
    TaskSetFull = 0x28,
    /// ACA ACTIVE.
    AcaActive = 0x30,
    /// TASK ABORTED.
    TaskAborted = 0x40,
}

/// Static identity and shape of one logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuConfig {
    /// T10 vendor identification (INQUIRY, 8 bytes, space padded).
    pub vendor: String,
    /// Product identification (16 bytes, space padded).
    pub product: String,
    /// Product revision level (4 bytes, space padded).
    pub revision: String,
    /// Unit serial number (VPD 0x80).
    pub serial: String,
    /// NAA IEEE Registered Extended designator body (16 bytes, VPD 0x83).
    pub naa_id: [u8; 16],
    /// Block size and capacity reported by READ CAPACITY.
    pub geometry: Geometry,
    /// What the store can do; `discard` turns on logical block provisioning (UNMAP, LBPME).
    pub capabilities: Capabilities,
    /// Whether the write cache is reported enabled (MODE SENSE caching page, WCE bit).
    pub write_cache: bool,
    /// Reject every command that would change the medium with DATA PROTECT.
    pub read_only: bool,
    /// On a thin provisioned LU (`capabilities.discard`): the free space of its storage at
    /// or below which its hosts are told THIN PROVISIONING SOFT THRESHOLD REACHED (the
    /// default of the Logical Block Provisioning mode page's threshold; `None`: the
    /// threshold is disabled until a host enables it).
    pub soft_threshold: Option<SoftThreshold>,
}

/// One SCSI command as the transport delivers it.
#[derive(Debug, Clone)]
pub struct Command {
    /// The I_T nexus the command arrived on.
    pub nexus: NexusId,
    /// The 64-bit LUN as it appears on the wire (SAM-5 format).
    pub lun: u64,
    /// The CDB, 6 to 16 bytes (more with additional CDB AHS).
    pub cdb: Bytes,
    /// Data-out bytes received for this command (empty for non-write commands), as the
    /// segments they arrived in.
    pub data_out: Segments,
    /// The initiator's expected data transfer length in bytes.
    pub expected_len: u32,
}

/// The final answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The SCSI status.
    pub status: Status,
    /// Data-in bytes as the CDB asked for them (the transport trims to the expected length);
    /// after a read passed on in parts ([`Pending::part`]), the bytes that follow them.
    pub data_in: Bytes,
    /// Fixed-format sense data (SPC-4 4.5.3) when `status` is CHECK CONDITION.
    pub sense: Option<Bytes>,
    /// Bytes the CDB asked to move in either direction, for residual computation (see the
    /// crate docs). 0 for CHECK CONDITION.
    pub transfer_len: u32,
}

impl Response {
    /// GOOD with `data_in`; `transfer_len` as described on the field.
    pub fn good(data_in: Bytes, transfer_len: u32) -> Self {
        Response {
            status: Status::Good,
            data_in,
            sense: None,
            transfer_len,
        }
    }

    /// GOOD carrying parameter data, trimmed to the CDB's allocation length.
    pub(crate) fn data(mut data: Vec<u8>, alloc: u32) -> Self {
        data.truncate(alloc as usize);
        let len = data.len() as u32;
        Response::good(Bytes::from(data), len)
    }

    /// CHECK CONDITION with fixed-format `sense`.
    pub fn check_condition(sense: Sense) -> Self {
        Response {
            status: Status::CheckCondition,
            data_in: Bytes::new(),
            sense: Some(Bytes::copy_from_slice(&sense.to_fixed())),
            transfer_len: 0,
        }
    }
}

/// What [`ScsiTarget::start`] or [`Pending::finish`] asks the caller to do next.
#[derive(Debug)]
pub enum Start {
    /// The command is finished.
    Done(Response),
    /// Run `request` on LUN `lun`'s store, then call `pending.finish(result)`. `lun` is the
    /// plain LUN number given to [`ScsiTarget::add_lun`] (not the wire encoding).
    Io {
        /// The LUN whose store runs the request.
        lun: u64,
        /// The storage request.
        request: IoRequest,
        /// The command, to be continued with the request's result.
        pending: Pending,
        /// Set when the LUN is another target's (a copy between targets,
        /// [`ScsiTarget::set_copy_peers`]): `lun` is that target's LUN, and its store runs
        /// the request.
        peer: Option<Peer>,
    },
    /// A PERSISTENT RESERVE OUT changed reservations that persist through power loss
    /// (APTPL): take [`ScsiTarget::reservation_metadata`] for `lun` and write it with LUN
    /// `lun`'s store as metadata object [`RESERVATIONS_METADATA`], off the I/O path and one
    /// save at a time per LUN (so the last save holds the latest state), then call
    /// `pending.finish` with `Ok(IoReply::Done)` or the store's error.
    SaveReservations {
        /// The LUN whose reservations changed (plain LUN number).
        lun: u64,
        /// The command, answered GOOD once the state is saved.
        pending: Pending,
    },
    /// A MODE SELECT with SP saved the mode pages of logical unit `lun`
    /// ([`ScsiTarget::load_mode_pages`] made them saveable): take
    /// [`ScsiTarget::mode_pages_metadata`] for `lun` and write it with LUN `lun`'s store
    /// as metadata object [`MODE_PAGES_METADATA`], off the I/O path and one save at a time
    /// per LUN, then call `pending.finish` with `Ok(IoReply::Done)` or the store's error.
    SaveModePages {
        /// The LUN whose pages are saved (plain LUN number).
        lun: u64,
        /// The command, answered GOOD once they are written.
        pending: Pending,
    },
    /// Copy bytes from one LUN's store to another's (or within one), inside the storage if
    /// the stores can: see [`CopyStep`].
    Copy(CopyStep),
    /// A PERSISTENT RESERVE IN/OUT on a logical unit whose reservations every gateway
    /// keeps on the volume ([`ScsiTarget::share_reservations`]): run it on the state read
    /// under the store's metadata lock, see [`SharedReservations`].
    SharedReservations(SharedReservations),
}

/// A PERSISTENT RESERVE IN/OUT to run on the reservation state kept on the volume, which
/// other gateways exporting the same LU change too. The caller, off the I/O path:
///
/// 1. parks the command's continuation ([`SharedReservations::into_parts`]);
/// 2. takes LUN `lun`'s store metadata lock [`RESERVATIONS_METADATA`], exclusive, with a
///    bounded wait;
/// 3. reads the metadata object and hands it to [`ReservationRun::run`], which loads it
///    into the LU, carries out the command on it and returns the state to write back when
///    the command changed it;
/// 4. writes that as the metadata object (on failure, [`ReservationRun::undo`]), lets go
///    of the lock, and continues the command with `Ok(IoReply::Done)`, or with the store's
///    error (a lock not had within the wait is `TimedOut`), as after any store request.
#[derive(Debug)]
pub struct SharedReservations {
    run: ReservationRun,
    pending: Pending,
}

/// The part of a [`SharedReservations`] carried out beside the core, under the lock.
#[derive(Debug)]
pub struct ReservationRun {
    lun: u16,
    nexus: NexusId,
    cdb: Vec<u8>,
    data_out: Bytes,
    /// What the volume held when the command ran (for [`ReservationRun::undo`]).
    loaded: Option<Vec<u8>>,
    answer: Arc<std::sync::Mutex<Option<Response>>>,
    /// No command: the release of a RESERVE(6/10) this gateway owes
    /// ([`ScsiTarget::reservation_chores`]).
    chore: bool,
}

impl SharedReservations {
    pub(crate) fn new(lun: u16, nexus: NexusId, cdb: Vec<u8>, data_out: Bytes) -> Self {
        let answer = Arc::new(std::sync::Mutex::new(None));
        SharedReservations {
            pending: Pending {
                lun,
                state: exec::State::Answer(answer.clone()),
                descriptor_sense: false,
                flush_before_good: false,
                range: None,
            },
            run: ReservationRun {
                lun,
                nexus,
                cdb,
                data_out,
                loaded: None,
                answer,
                chore: false,
            },
        }
    }

    /// The LUN (plain number) whose store keeps the state.
    pub fn lun(&self) -> u64 {
        u64::from(self.run.lun)
    }

    /// The work to do under the lock, and the command's continuation.
    pub fn into_parts(self) -> (ReservationRun, Pending) {
        (self.run, self.pending)
    }
}

impl ReservationRun {
    /// The LUN (plain number) whose store keeps the state.
    pub fn lun(&self) -> u64 {
        u64::from(self.lun)
    }

    /// Whether this is no host's command but a release of a RESERVE(6/10) this gateway
    /// owes ([`ScsiTarget::reservation_chores`]): nothing answers it, and a release takes
    /// no host's access away, so its write needs no fence.
    pub fn is_chore(&self) -> bool {
        self.chore
    }

    /// Loads `saved` (the metadata object as read under the lock; `None`: there is none,
    /// so nothing is registered) into the logical unit, writes in it the release of a
    /// RESERVE(6/10) this gateway owes, carries out the command on it, and returns the
    /// state to write back, if any of that changed it. The command's answer waits for its
    /// continuation. Fails, running nothing, when `saved` is not a saved state or the LU
    /// is gone.
    pub fn run(
        &mut self,
        target: &ScsiTarget,
        saved: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, BadMetadata> {
        let lu = target.lu(self.lun).ok_or(BadMetadata)?;
        let ports = target.reservation_ports();
        lu.reservations
            .load_shared(saved, &target.nexuses, self.lun, ports.own)
            .ok_or(BadMetadata)?;
        self.loaded = saved.map(<[u8]>::to_vec);
        let released = lu.reservations.settle_release();
        let reset = lu.reservations.settle_reset();
        let mut persist = released || reset;
        if !self.chore {
            let (response, changed) = lu.reservations.execute(
                self.nexus,
                &target.nexuses,
                &ports,
                self.lun,
                &self.cdb,
                &self.data_out,
            );
            persist |= changed.is_some_and(|c| c.persist);
            *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(response);
        }
        // Writes admitted from now on were checked against the new version.
        lu.interlock.set_epoch(lu.reservations.version());
        Ok(persist.then(|| lu.reservations.saved_state()))
    }

    /// The state could not be written back: the LU goes back to what the volume holds.
    pub fn undo(&self, target: &ScsiTarget) {
        if let Some(lu) = target.lu(self.lun) {
            lu.reservations.load(self.loaded.as_deref());
            lu.interlock.set_epoch(lu.reservations.version());
        }
        self.answer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// One copy of an EXTENDED COPY: `len` bytes at `source_offset` of LUN `source_lun` to
/// `offset` of LUN `lun` (plain LUN numbers). The caller takes LUN `source_lun`'s
/// [`store_api::BlockStore::copy_source`] and calls [`CopyStep::with_source`]: the step
/// becomes a [`Start::Io`] of an [`IoRequest::Copy`] on LUN `lun`'s store, or, without a
/// source (or when that store replies `Unsupported`), reads and writes.
#[derive(Debug)]
pub struct CopyStep {
    /// The LUN copied to.
    pub lun: u64,
    /// The LUN copied from.
    pub source_lun: u64,
    /// The target of `lun` when it is another target's ([`Peer`]).
    pub peer: Option<Peer>,
    /// The target of `source_lun` when it is another target's.
    pub source_peer: Option<Peer>,
    /// Byte offset in the source.
    pub source_offset: u64,
    /// Byte offset in the destination.
    pub offset: u64,
    /// Bytes to copy.
    pub len: u64,
    pending: Pending,
}

impl CopyStep {
    /// Goes on with the outcome of the copy, for a caller that carried it out itself.
    pub fn finish(self, result: IoResult) -> Start {
        self.pending.finish(result)
    }

    /// Goes on with the source store's copy handle (`None`: the store has none).
    pub fn with_source(self, source: Option<store_api::CopySource>) -> Start {
        match source {
            Some(source) => Start::Io {
                lun: self.lun,
                request: IoRequest::Copy {
                    source,
                    source_offset: self.source_offset,
                    offset: self.offset,
                    len: self.len,
                },
                pending: self.pending,
                peer: self.peer,
            },
            None => self.pending.finish(Err(store_api::StoreError::new(
                store_api::Op::Copy,
                store_api::ErrorKind::Unsupported,
            ))),
        }
    }
}

/// Every task of I_T nexus `nexus` on logical unit `lun` (plain number) is to be aborted
/// ([`ScsiTarget::take_task_aborts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskAbort {
    /// The nexus whose tasks go.
    pub nexus: NexusId,
    /// The logical unit.
    pub lun: u16,
}

/// The name of the store metadata object that keeps a logical unit's persistent
/// reservations when the initiator asked for APTPL (see
/// `store_api::BlockStore::write_metadata`).
pub const RESERVATIONS_METADATA: &str = "pr";

/// Name of the metadata object holding a logical unit's saved mode pages (MODE SELECT
/// with SP): the caching page's WCE, the control page's SWP and D_SENSE
/// ([`ScsiTarget::mode_pages_metadata`], [`ScsiTarget::load_mode_pages`]).
pub const MODE_PAGES_METADATA: &str = "mode";

/// How often a gateway loads the reservations other gateways keep on the volume for a
/// shared logical unit ([`ScsiTarget::reservations_due`]).
pub const RESERVATIONS_REFRESH: Duration = Duration::from_secs(1);

/// How soon a gateway loads the shared state again while it owes the other gateways the
/// acknowledgement of a version ([`ScsiTarget::reservations_drained`]).
pub const RESERVATIONS_ACK_REFRESH: Duration = Duration::from_millis(50);

/// How long a gateway trusts a copy of the shared reservations for writes, from the
/// moment it began to read it ([`ScsiTarget::renew_reservations_lease`]): past that,
/// nothing that changes the medium is admitted on the LU (BUSY) until a newer copy is
/// loaded. The gateway that changes the state waits at most a little more than this for
/// the others' acknowledgement.
pub const RESERVATIONS_LEASE: Duration = Duration::from_secs(4);

/// What a shared logical unit's reservations (`saved`, the metadata object
/// [`RESERVATIONS_METADATA`]) are at its power on: when a gateway opens the LU and finds
/// that every other gateway exporting it has stopped (the whole cluster lost power or
/// was restarted), registrations and the persistent reservation made without APTPL are
/// gone (SPC-4 5.14.5), as is a RESERVE(6/10) (SPC-2 5.5.1). Returns the state to write
/// back, or `None` when nothing in `saved` is to go. A gateway restarting while another
/// still runs finds the LU powered and keeps everything.
pub fn reservations_at_power_on(saved: &[u8]) -> Result<Option<Vec<u8>>, BadMetadata> {
    let state = reservations::PrState::decode(saved).ok_or(BadMetadata)?;
    Ok(state.at_power_on().map(|st| st.encode()))
}

/// The metadata object beside [`RESERVATIONS_METADATA`] that keeps the lines of a shared
/// logical unit's state that gateways of earlier releases cannot read (their parser
/// refuses a line it does not know): the RESERVE(6/10) holder and the count of resets.
/// Written after `<lun>.pr`, under the same lock; read with it.
pub const RESERVATIONS_LU_METADATA: &str = "pr-lu";

/// Splits a shared logical unit's state, as [`ReservationRun::run`] and
/// [`reservations_at_power_on`] give it, into the bytes of [`RESERVATIONS_METADATA`]
/// (what a gateway of an earlier release reads) and of [`RESERVATIONS_LU_METADATA`]
/// (empty when the state has none of its lines).
pub fn split_reservation_state(state: &[u8]) -> (Vec<u8>, Vec<u8>) {
    reservations::split_for_old_readers(state)
}

/// The state to load from the two objects of [`split_reservation_state`] as read (`None`:
/// absent); `Ok(None)` when neither is there. Lines of the second that this release does
/// not know are skipped; a second object of another kind is [`BadMetadata`].
pub fn join_reservation_state(
    pr: Option<&[u8]>,
    lu: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, BadMetadata> {
    reservations::join_for_reading(pr, lu).ok_or(BadMetadata)
}

/// Saved reservation state that is not in the form [`ScsiTarget::reservation_metadata`]
/// writes, or for a LUN that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a saved state of this target (glfs-iscsi-pr 1 or 2, glfs-iscsi-mode 1)")]
pub struct BadMetadata;

/// A command waiting for a storage request.
#[derive(Debug)]
pub struct Pending {
    lun: u16,
    state: exec::State,
    /// Sense in descriptor format (D_SENSE was set when the command started).
    descriptor_sense: bool,
    /// Flush the store before reporting GOOD (a medium change with the write cache off).
    flush_before_good: bool,
    /// The command's range in the LU's interlock, held until it ends.
    range: Option<commands::RangeGuard>,
}

impl Pending {
    /// The continuation of a command whose last step is saving reservations.
    pub(crate) fn after_save(lun: u16) -> Pending {
        Self::after_save_with(lun, 0)
    }

    /// The continuation of a command whose last step is saving metadata, answered GOOD
    /// with `transfer_len` once it is written.
    pub(crate) fn after_save_with(lun: u16, transfer_len: u32) -> Pending {
        Pending {
            lun,
            state: exec::State::Final { transfer_len },
            descriptor_sense: false,
            flush_before_good: false,
            range: None,
        }
    }

    /// Whether the command can pass its read's data on in parts, as the store reads them
    /// (a plain READ, whose data goes to the initiator as it is; not a command that
    /// compares or changes what it read): then the caller may give the store a completion
    /// that takes parts (`store_api::Completion::to_sink_in_parts`), send each part on
    /// and tell this continuation with [`Pending::part`].
    pub fn takes_parts(&self) -> bool {
        matches!(self.state, exec::State::Read { .. })
    }

    /// `len` more bytes of the read were passed on (sent to the initiator) ahead of the
    /// command's status; the store's reply then carries only the rest. Ignored for a
    /// command that does not [take parts](Pending::takes_parts).
    pub fn part(&mut self, len: usize) {
        if let exec::State::Read { parts, .. } = &mut self.state {
            *parts = parts.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
        }
    }

    /// Continues the command with the outcome of its storage request.
    pub fn finish(self, result: IoResult) -> Start {
        let mut next = exec::finish(self.lun, self.state, result);
        if self.flush_before_good {
            next = exec::flush_before_good(self.lun, next);
        }
        // Dropped here (released) unless the command goes on.
        let next = exec::hold(next, self.range);
        with_sense_format(next, self.descriptor_sense)
    }
}

/// Puts the sense data of a finished command in descriptor format when `descriptor` (the
/// control mode page's D_SENSE), and carries the choice on to a command still waiting.
fn with_sense_format(start: Start, descriptor: bool) -> Start {
    if !descriptor {
        return start;
    }
    match start {
        Start::Done(mut r) => {
            if let Some(fixed) = r.sense.take() {
                r.sense = Some(Bytes::from(sense::fixed_to_descriptor(&fixed)));
            }
            Start::Done(r)
        }
        io @ Start::Io { .. } => {
            commands::exec::with_io_pending(io, |pending| pending.descriptor_sense = true)
        }
        Start::SaveReservations { lun, mut pending } => {
            pending.descriptor_sense = true;
            Start::SaveReservations { lun, pending }
        }
        Start::SaveModePages { lun, mut pending } => {
            pending.descriptor_sense = true;
            Start::SaveModePages { lun, pending }
        }
        Start::Copy(mut step) => {
            step.pending.descriptor_sense = true;
            Start::Copy(step)
        }
        Start::SharedReservations(mut shared) => {
            shared.pending.descriptor_sense = true;
            Start::SharedReservations(shared)
        }
    }
}

/// The logical units behind one SCSI target port, and the dispatch over them.
#[derive(Debug, Default)]
pub struct ScsiTarget {
    /// Indexed by LUN number.
    luns: Vec<Option<Lu>>,
    /// Per-I_T-nexus state: initiator ports and unit attention queues. Shared with the
    /// target's successors ([`ScsiTarget::successor`]).
    nexuses: Arc<Nexuses>,
    /// The target port groups of the gateways exporting these LUs (ALUA), when set, and
    /// their states now. Shared with the target's successors.
    alua: Arc<commands::alua::AluaCell>,
    /// The target's iSCSI name, once told ([`ScsiTarget::set_target_name`]): the Device
    /// Identification page then names this target port. Shared with the successors.
    name: Arc<std::sync::OnceLock<String>>,
    /// The ROD tokens POPULATE TOKEN made (`commands::token`). Shared with the successors.
    rod_tokens: Arc<commands::RodTokens>,
    /// The other targets copies reach, once told ([`ScsiTarget::set_copy_peers`]).
    /// Shared with the successors.
    peers: Arc<std::sync::OnceLock<Arc<dyn CopyPeers>>>,
}

/// Another target whose logical units a copy may read and write (EXTENDED COPY, WRITE
/// USING TOKEN): the driver's handle on one of its targets, which it gets back in
/// [`Start::Io`] and [`CopyStep`] to find that target's stores.
pub trait PeerTarget: Send + Sync + std::fmt::Debug {
    /// Its SCSI core now.
    fn scsi(&self) -> &ScsiTarget;
    /// The handle as the driver's own type.
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync);
}

/// A handle on another target ([`PeerTarget`]).
pub type Peer = Arc<dyn PeerTarget>;

/// The targets a copy manager reaches besides its own (the driver's other targets): a
/// third-party copy command names logical units by their NAA designators, which are
/// looked for in its own target first, then in these.
pub trait CopyPeers: Send + Sync + std::fmt::Debug {
    /// Every target served now (the asking one may be among them; it is skipped).
    fn peers(&self) -> Vec<Peer>;
}

/// One logical unit: its configuration and the little state commands share.
#[derive(Debug, Clone)]
struct Lu {
    config: LuConfig,
    /// The byte ranges commands in flight are changing (see `commands::interlock`).
    interlock: Arc<commands::Interlock>,
    /// Stopped by START STOP UNIT: medium access is NOT READY until started again.
    stopped: Arc<std::sync::atomic::AtomicBool>,
    /// The mode parameters MODE SELECT changes (WCE, SWP, D_SENSE).
    mode: Arc<commands::ModeState>,
    /// Persistent and RESERVE(6/10) reservations.
    reservations: Arc<Reservations>,
    /// Results of EXTENDED COPY commands kept for RECEIVE COPY RESULTS.
    copies: Arc<commands::CopyResults>,
    /// Results of POPULATE TOKEN and WRITE USING TOKEN for RECEIVE ROD TOKEN INFORMATION.
    token_results: Arc<commands::TokenResults>,
    /// A SANITIZE in progress, or failed.
    sanitize: Arc<commands::SanitizeState>,
    /// This LU's own asymmetric access states, once set ([`ScsiTarget::set_lu_alua`]:
    /// failover per LU); unset, the LU reports and enforces the target's.
    alua: Arc<commands::alua::AluaCell>,
    /// The capacity in blocks now: `config.geometry`'s until a resize
    /// ([`ScsiTarget::set_capacity`]).
    blocks: Arc<std::sync::atomic::AtomicU64>,
    /// What its storage holds and has free, as the driver last said
    /// ([`ScsiTarget::set_space`]; LOG SENSE's Logical Block Provisioning page).
    space: Arc<commands::SpaceCell>,
}

impl Lu {
    /// Block size and capacity now.
    fn geometry(&self) -> store_api::Geometry {
        store_api::Geometry {
            block_size: self.config.geometry.block_size,
            num_blocks: self.blocks.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// How often the driver should call [`ScsiTarget::expire_rod_tokens`].
pub const ROD_TOKEN_TICK: Duration = Duration::from_secs(1);

/// The highest LUN number this target addresses (flat space addressing, 14 bits).
pub const MAX_LUN: u16 = 16383;

/// Decodes a SAM-5 8-byte LUN (as a big-endian `u64`) into a LUN number: peripheral device
/// addressing with bus 0 for 0..=255, flat space addressing (01b) for up to 16383. Anything
/// else (other address methods, second-level LUNs) is `None`.
pub fn decode_lun(wire: u64) -> Option<u16> {
    let b = wire.to_be_bytes();
    if b[2..].iter().any(|&x| x != 0) {
        return None;
    }
    match b[0] >> 6 {
        0b00 if b[0] == 0 => Some(u16::from(b[1])),
        0b01 => Some(u16::from_be_bytes([b[0] & 0x3F, b[1]])),
        _ => None,
    }
}

/// Encodes a LUN number as REPORT LUNS lists it: peripheral device addressing for 0..=255,
/// flat space addressing for 256..=16383.
pub fn encode_lun(lun: u16) -> u64 {
    let first = if lun < 256 {
        [0, lun as u8]
    } else {
        (0x4000 | (lun & 0x3FFF)).to_be_bytes()
    };
    u64::from_be_bytes([first[0], first[1], 0, 0, 0, 0, 0, 0])
}

impl ScsiTarget {
    /// A target with no logical units.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new version of this target for a live change of its logical units: the same
    /// logical units with their state (reservations, mode parameters, capacity) and the
    /// same nexuses with their queued conditions, shared with this one. Change it with
    /// [`ScsiTarget::add_lun`] and [`ScsiTarget::remove_lun`], then
    /// [`ScsiTarget::luns_changed`]; sessions continue on it without a new nexus.
    pub fn successor(&self) -> ScsiTarget {
        ScsiTarget {
            luns: self.luns.clone(),
            nexuses: self.nexuses.clone(),
            alua: self.alua.clone(),
            name: self.name.clone(),
            rod_tokens: self.rod_tokens.clone(),
            peers: self.peers.clone(),
        }
    }

    /// Tells the target, once, which other targets its copy manager reaches: EXTENDED
    /// COPY and WRITE USING TOKEN then copy from and to their logical units too (a ROD
    /// token made through one target is good on every other). A second call changes
    /// nothing; successors share the first.
    pub fn set_copy_peers(&self, peers: Arc<dyn CopyPeers>) {
        let _ = self.peers.set(peers);
    }

    /// The other targets copies reach now, without this one.
    pub(crate) fn copy_peers(&self) -> Vec<Peer> {
        let Some(peers) = self.peers.get() else {
            return Vec::new();
        };
        let mut all = peers.peers();
        all.retain(|p| !p.scsi().shares_nexuses_with(self));
        all
    }

    /// Tells the target its iSCSI name (`iqn.…`), once: the Device Identification VPD
    /// page then carries this target port's SCSI name string designator (SPC-4
    /// 7.8.6.11), `<name>,t,0x<portal group tag>` (RFC 7143 4.2.7.1), the tag being the
    /// relative target port identifier (the ALUA group id, else 1). A second call changes
    /// nothing.
    pub fn set_target_name(&self, name: &str) {
        let _ = self.name.set(name.to_string());
    }

    /// This target port's iSCSI name, `<target name>,t,0x<tag as 4 hex digits>`, when
    /// the target name was told.
    pub fn target_port_name(&self) -> Option<String> {
        let name = self.name.get()?;
        Some(format!("{name},t,0x{:04x}", self.alua.port_id()))
    }

    /// Whether `other` is this target or a successor of it (they share their nexuses).
    pub fn shares_nexuses_with(&self, other: &ScsiTarget) -> bool {
        Arc::ptr_eq(&self.nexuses, &other.nexuses)
    }

    /// The set of logical units changed: every nexus gets REPORTED LUNS DATA HAS CHANGED
    /// on every logical unit (SPC-4 annex D: 3Fh/0Eh), so initiators rescan.
    pub fn luns_changed(&self) {
        for lun in self.luns() {
            self.nexuses
                .raise(lun, UnitAttention::ReportedLunsDataChanged, UaScope::All);
        }
    }

    /// Adds (or replaces) the logical unit at `lun` (a plain LUN number, 0..=16383).
    ///
    /// # Panics
    /// If `lun` is above [`MAX_LUN`].
    pub fn add_lun(&mut self, lun: u16, config: LuConfig) {
        assert!(lun <= MAX_LUN, "LUN {lun} is beyond the 14-bit flat space");
        let idx = usize::from(lun);
        if self.luns.len() <= idx {
            self.luns.resize(idx + 1, None);
        }
        self.rod_tokens.revoke_lun(lun);
        self.luns[idx] = Some(Lu {
            mode: Arc::new(commands::ModeState::new(&config)),
            interlock: Arc::default(),
            stopped: Arc::default(),
            reservations: Arc::default(),
            copies: Arc::default(),
            token_results: Arc::default(),
            sanitize: Arc::default(),
            alua: Arc::default(),
            blocks: Arc::new(config.geometry.num_blocks.into()),
            space: Arc::default(),
            config,
        });
    }

    /// Removes the logical unit at `lun`, returning its configuration.
    pub fn remove_lun(&mut self, lun: u16) -> Option<LuConfig> {
        self.rod_tokens.revoke_lun(lun);
        self.luns
            .get_mut(usize::from(lun))
            .and_then(Option::take)
            .map(|lu| lu.config)
    }

    /// Puts the logical unit at `lun` over a store described by `config` (a live change
    /// of its backing store or settings) while keeping everything the LU holds: its
    /// persistent reservations and registrations (and their APTPL state), RESERVE(6/10)
    /// holder, mode parameters, stopped state, the byte ranges commands in flight hold,
    /// and every nexus's queued conditions. The nexuses are told what their next command
    /// must learn (SPC-4 annex D): CAPACITY DATA HAS CHANGED (2Ah/09h) when the block size
    /// or capacity differ, INQUIRY DATA HAS CHANGED (3Fh/03h) when the identity, the
    /// product or what the store can do (VPD pages) differ, MODE PARAMETERS CHANGED
    /// (2Ah/01h) when write protection does. Returns `false`, changing
    /// nothing, when there is no LU at `lun`.
    pub fn replace_lun_config(&mut self, lun: u16, config: LuConfig) -> bool {
        let Some(lu) = self.luns.get_mut(usize::from(lun)).and_then(Option::as_mut) else {
            return false;
        };
        // What the LU's tokens stood for may be another store's blocks now.
        self.rod_tokens.revoke_lun(lun);
        let before = lu.geometry();
        let old = std::mem::replace(&mut lu.config, config);
        let new = &lu.config;
        // The capacity is per LU, not per version: a fresh counter keeps an older
        // version's sessions from reading this one's until they move to it.
        lu.blocks = Arc::new(new.geometry.num_blocks.into());
        if before != new.geometry {
            self.nexuses
                .raise(lun, UnitAttention::CapacityDataChanged, UaScope::All);
        }
        let inquiry_changed = old.vendor != new.vendor
            || old.product != new.product
            || old.revision != new.revision
            || old.serial != new.serial
            || old.naa_id != new.naa_id
            || old.capabilities != new.capabilities;
        if inquiry_changed {
            self.nexuses
                .raise(lun, UnitAttention::InquiryDataChanged, UaScope::All);
        }
        // The operator's soft threshold replaces the mode page's (a host's MODE SELECT
        // included), armed.
        let threshold_changed = old.soft_threshold != new.soft_threshold
            && lu
                .mode
                .threshold
                .set(commands::Threshold::of(new, new.geometry));
        // Write protection shows in the mode parameter header (WP), the threshold in the
        // Logical Block Provisioning mode page.
        if old.read_only != new.read_only || threshold_changed {
            self.nexuses
                .raise(lun, UnitAttention::ModeParametersChanged, UaScope::All);
        }
        true
    }

    /// The configuration of the logical unit at `lun`, if there is one.
    pub fn lun(&self, lun: u16) -> Option<&LuConfig> {
        self.luns
            .get(usize::from(lun))
            .and_then(Option::as_ref)
            .map(|lu| &lu.config)
    }

    /// The LUN numbers present, ascending.
    pub fn luns(&self) -> impl Iterator<Item = u16> + '_ {
        self.luns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i as u16)
    }

    /// Starts one command (dispatched through the command table, `commands`).
    ///
    /// Before the table sees the command: a pending UNIT ATTENTION for the nexus (SAM-5
    /// 5.14: whatever the command, its CDB unchecked; INQUIRY, REPORT LUNS and REQUEST SENSE
    /// are exempt), then the refusal of a target port in standby or unavailable (ALUA,
    /// `commands::alua`), then a RESERVATION CONFLICT.
    pub fn start(&self, cmd: Command) -> Start {
        let lu = decode_lun(cmd.lun).and_then(|n| {
            self.luns
                .get(usize::from(n))
                .and_then(Option::as_ref)
                .map(|lu| (n, lu))
        });
        let descriptor = lu.is_some_and(|(_, lu)| lu.mode.descriptor_sense());
        if let Some((lun, lu)) = lu {
            let op = cmd.cdb.first().copied();
            if let Some(sense) = self.nexuses.check(cmd.nexus, lun, op) {
                let start = Start::Done(Response::check_condition(sense));
                return with_sense_format(start, descriptor);
            }
            if let Some(sense) = self.alua_refusal(lu, &cmd.cdb) {
                let start = Start::Done(Response::check_condition(sense));
                return with_sense_format(start, descriptor);
            }
            let own_port = self.alua.port_id();
            if lu
                .reservations
                .conflict(cmd.nexus, &self.nexuses, own_port, &cmd.cdb)
            {
                // A shared state loaded between the unit attention check above and this
                // one raises its unit attentions before it is seen (both under the
                // reservations' lock): the host is told the cause first (the UA), and
                // the conflict at its next command.
                if let Some(sense) = self.nexuses.check(cmd.nexus, lun, op) {
                    let start = Start::Done(Response::check_condition(sense));
                    return with_sense_format(start, descriptor);
                }
                return Start::Done(reservations::conflict_response());
            }
        }
        let start = commands::dispatch(self, lu, cmd.nexus, &cmd.cdb, cmd.data_out);
        with_sense_format(start, descriptor)
    }

    /// A session logged in on `nexus` from `port`: every logical unit queues POWER ON,
    /// RESET, OR BUS DEVICE RESET OCCURRED for it (reported by its first command there).
    /// On a thin LU whose soft threshold is reached now, THIN PROVISIONING SOFT THRESHOLD
    /// REACHED follows: a host logging in after the space fell learns of it too.
    pub fn open_nexus(&self, nexus: NexusId, port: InitiatorPort) {
        let luns: Vec<u16> = self.luns().collect();
        self.nexuses.open(nexus, port, &luns);
        for lun in luns {
            if self
                .lu(lun)
                .is_some_and(|lu| lu.config.capabilities.discard && lu.mode.threshold.reached())
            {
                self.nexuses.raise(
                    lun,
                    UnitAttention::ThinProvisioningSoftThresholdReached,
                    UaScope::Only(nexus),
                );
            }
        }
    }

    /// The session on `nexus` ended: its unit attentions are dropped and a RESERVE(6/10) it
    /// held is released. (Registrations and persistent reservations belong to the initiator
    /// port and target port, and outlive the session.)
    pub fn close_nexus(&self, nexus: NexusId) {
        self.nexuses.close(nexus);
        for lu in self.luns.iter().flatten() {
            lu.reservations.nexus_lost(nexus);
        }
    }

    /// The logical unit at `lun` now has `num_blocks` blocks (its store has grown to
    /// that): commands from now on see the new capacity, and every nexus gets CAPACITY DATA
    /// HAS CHANGED (SBC-3 4.6, SPC-4 annex D: 2Ah/09h); a soft threshold that is a
    /// percentage of the capacity moves with it (MODE PARAMETERS CHANGED, 2Ah/01h), unless
    /// a host set its own. `false` if there is no such LU.
    pub fn set_capacity(&self, lun: u16, num_blocks: u64) -> bool {
        let Some(lu) = self.luns.get(usize::from(lun)).and_then(Option::as_ref) else {
            return false;
        };
        let old = commands::Threshold::of(&lu.config, lu.geometry());
        lu.blocks
            .store(num_blocks, std::sync::atomic::Ordering::Relaxed);
        self.nexuses
            .raise(lun, UnitAttention::CapacityDataChanged, UaScope::All);
        // A threshold that is a percentage of the capacity follows it, unless a host set
        // its own; the new count is a mode page change.
        let new = commands::Threshold::of(&lu.config, lu.geometry());
        if lu.mode.threshold.follow(old, new) {
            self.nexuses
                .raise(lun, UnitAttention::ModeParametersChanged, UaScope::All);
        }
        true
    }

    /// What the storage of the logical unit at `lun` holds for it and has free now (the
    /// driver samples its store, off the I/O path): LOG SENSE's Logical Block
    /// Provisioning page reports it to hosts. `false` if there is no such LU.
    /// On a thin provisioned LU whose soft threshold is enabled, free space at or below it
    /// raises THIN PROVISIONING SOFT THRESHOLD REACHED (38h/07h) on every nexus, once until
    /// the space is well above it again (`commands::threshold`). What became of the
    /// threshold; `None` if there is no such LU.
    pub fn set_space(&self, lun: u16, space: store_api::Space) -> Option<ThresholdNews> {
        let lu = self.luns.get(usize::from(lun)).and_then(Option::as_ref)?;
        lu.space.set(Some(space.allocated), space.available);
        let news = match space.available {
            Some(free) if lu.config.capabilities.discard => {
                lu.mode.threshold.sample(&lu.config, free)
            }
            _ => ThresholdNews::Unchanged,
        };
        if let ThresholdNews::Reached { .. } = news {
            self.nexuses.raise(
                lun,
                UnitAttention::ThinProvisioningSoftThresholdReached,
                UaScope::All,
            );
        }
        Some(news)
    }

    /// The soft threshold of the thin LU at `lun` now, in bytes of free space, and whether
    /// it is reached (its hosts were told and the space has not risen above it since);
    /// `None` without such an LU or an enabled threshold.
    pub fn soft_threshold(&self, lun: u16) -> Option<(u64, bool)> {
        let lu = self.lu(lun).filter(|lu| lu.config.capabilities.discard)?;
        let t = lu.mode.threshold.get();
        t.enabled.then(|| {
            let bytes =
                u64::from(t.count).saturating_mul(commands::threshold::set_bytes(&lu.config));
            (bytes, lu.mode.threshold.reached())
        })
    }

    /// What [`ScsiTarget::set_space`] last said of the logical unit at `lun`: the bytes
    /// its storage holds for it and has free (each `None` until known). `None` if there is
    /// no such LU.
    pub fn space(&self, lun: u16) -> Option<(Option<u64>, Option<u64>)> {
        self.luns
            .get(usize::from(lun))
            .and_then(Option::as_ref)
            .map(|lu| lu.space.get())
    }

    /// The block size and capacity of the logical unit at `lun` now.
    pub fn geometry(&self, lun: u16) -> Option<store_api::Geometry> {
        self.luns
            .get(usize::from(lun))
            .and_then(Option::as_ref)
            .map(Lu::geometry)
    }

    /// Queues the unit attention `ua` on logical unit `lun` for the nexuses in `scope`:
    /// e.g. CAPACITY DATA HAS CHANGED for [`UaScope::All`] after a resize, MODE PARAMETERS
    /// CHANGED for [`UaScope::AllBut`] the nexus whose MODE SELECT changed them.
    pub fn raise_unit_attention(&self, lun: u16, ua: UnitAttention, scope: UaScope) {
        self.nexuses.raise(lun, ua, scope);
    }

    /// A LOGICAL UNIT RESET was carried out on `lun` (the transport has aborted the tasks):
    /// every nexus gets BUS DEVICE RESET FUNCTION OCCURRED there (SAM-5 7.8; the nexus that
    /// asked for it too), and a RESERVE(6/10) reservation ends.
    pub fn logical_unit_reset(&self, lun: u16) {
        if let Some(lu) = self.luns.get(usize::from(lun)).and_then(Option::as_ref) {
            lu.reservations.reset(UnitAttention::LogicalUnitReset);
            self.nexuses
                .raise(lun, UnitAttention::LogicalUnitReset, UaScope::All);
        }
    }

    /// A LOGICAL UNIT RESET on `lun` from nexus `by`: [`Self::logical_unit_reset`], and
    /// the tasks of every other nexus on the LU are to be aborted too (SAM-5 7.8: all
    /// tasks in all task sets; without status, TAS being 0), queued for the transport
    /// ([`Self::take_task_aborts`]). The transport aborts `by`'s own tasks itself, at
    /// the function's place in its command order. On a shared LU the other gateways'
    /// nexuses are reached through the shared state: this gateway owes the reset
    /// ([`Self::reservation_chores`]), and a gateway loading it raises the unit attention
    /// on its nexuses and queues their task aborts.
    pub fn logical_unit_reset_by(&self, lun: u16, by: NexusId) {
        if self.lu(lun).is_none() {
            return;
        }
        self.logical_unit_reset(lun);
        for n in self.nexuses.ids().into_iter().filter(|&n| n != by) {
            self.nexuses.queue_abort(n, lun);
        }
    }

    /// A TARGET WARM/COLD RESET from nexus `by`: [`Self::target_reset`], and every other
    /// nexus's tasks on every logical unit are to be aborted (SAM-5 7.10), queued as for
    /// [`Self::logical_unit_reset_by`].
    pub fn target_reset_by(&self, by: NexusId) {
        self.target_reset();
        let others: Vec<NexusId> = self
            .nexuses
            .ids()
            .into_iter()
            .filter(|&n| n != by)
            .collect();
        for lun in self.luns() {
            for &n in &others {
                self.nexuses.queue_abort(n, lun);
            }
        }
    }

    /// The task sets the transport must abort, queued since the last call: a PERSISTENT
    /// RESERVE OUT PREEMPT AND ABORT aborts every task of the preempted registrants'
    /// nexuses on its logical unit (SPC-4 5.13.11.2.4, SAM-5 task abort without status, as
    /// TAS is 0), a LOGICAL UNIT RESET or target reset every other nexus's
    /// ([`Self::logical_unit_reset_by`]). The caller drains this after each command it
    /// finishes.
    pub fn take_task_aborts(&self) -> Vec<TaskAbort> {
        self.nexuses
            .take_aborts()
            .into_iter()
            .map(|(nexus, lun)| TaskAbort { nexus, lun })
            .collect()
    }

    /// The saved form of logical unit `lun`'s persistent reservations: the registrations and
    /// reservation while APTPL is set, an empty state otherwise (so a restart restores
    /// nothing). `None` for an absent LUN.
    pub fn reservation_metadata(&self, lun: u16) -> Option<Vec<u8>> {
        let lu = self.luns.get(usize::from(lun))?.as_ref()?;
        Some(lu.reservations.saved_state())
    }

    /// Whether logical unit `lun`'s persistent reservations are to persist (APTPL set).
    pub fn reservations_persist(&self, lun: u16) -> bool {
        self.luns
            .get(usize::from(lun))
            .and_then(Option::as_ref)
            .is_some_and(|lu| lu.reservations.persists())
    }

    /// Makes logical unit `lun`'s caching and control mode pages saveable (MODE SENSE
    /// reports PS, MODE SELECT takes SP and asks for [`Start::SaveModePages`]), as its
    /// store opens, with what the store keeps as [`MODE_PAGES_METADATA`] (`None`: nothing
    /// saved yet), which becomes the current values. Call it for stores that keep
    /// metadata, when the LU is added (not for a kept one: its current values stay).
    pub fn load_mode_pages(&self, lun: u16, kept: Option<&[u8]>) -> Result<(), BadMetadata> {
        let lu = self.lu(lun).ok_or(BadMetadata)?;
        lu.mode.load(kept)?;
        Ok(())
    }

    /// Loads what another gateway exporting logical unit `lun` may have saved since
    /// (`kept`, read from the store): when it is not what this gateway last loaded or
    /// saved, it becomes the saved and current values, and every nexus gets MODE
    /// PARAMETERS CHANGED when a current value changed. Returns whether one did.
    pub fn refresh_mode_pages(&self, lun: u16, kept: &[u8]) -> Result<bool, BadMetadata> {
        let lu = self.lu(lun).ok_or(BadMetadata)?;
        let changed = lu.mode.refresh(kept)?;
        if changed {
            self.nexuses
                .raise(lun, UnitAttention::ModeParametersChanged, UaScope::All);
        }
        Ok(changed)
    }

    /// Logical unit `lun`'s saved mode pages, as the store keeps them
    /// ([`MODE_PAGES_METADATA`]), once they are saveable.
    pub fn mode_pages_metadata(&self, lun: u16) -> Option<Vec<u8>> {
        self.lu(lun)?.mode.saved_form()
    }

    /// Whether logical unit `lun`'s write cache is on now (the caching page's WCE, as
    /// hosts set it with MODE SELECT).
    pub fn write_cache(&self, lun: u16) -> Option<bool> {
        Some(self.lu(lun)?.mode.write_cache())
    }

    /// The driver wrote `form` (what [`ScsiTarget::mode_pages_metadata`] gave) as logical
    /// unit `lun`'s saved mode pages: [`ScsiTarget::refresh_mode_pages`] compares with it
    /// from now on (until then a read of the former form is no news).
    pub fn mode_pages_written(&self, lun: u16, form: &[u8]) {
        if let Some(lu) = self.lu(lun) {
            lu.mode.written(form);
        }
    }

    /// Restores logical unit `lun`'s persistent reservations from `saved` (what
    /// [`ScsiTarget::reservation_metadata`] gave before a restart), as the LUN opens.
    pub fn restore_reservations(&self, lun: u16, saved: &[u8]) -> Result<(), BadMetadata> {
        let lu = self
            .luns
            .get(usize::from(lun))
            .and_then(Option::as_ref)
            .ok_or(BadMetadata)?;
        let state = reservations::PrState::decode(saved).ok_or(BadMetadata)?;
        lu.reservations.restore(state);
        Ok(())
    }

    /// Reports asymmetric logical unit access (implicit ALUA) with these target port
    /// groups, this gateway's first (see `commands::alua`), and enforces this gateway's
    /// state (what is not active refuses what SPC-4 5.16.2.4 says it refuses). Successors
    /// share the setting. When it replaces groups set before with others (a state or a
    /// group changed), every nexus of every LU gets ASYMMETRIC ACCESS STATE CHANGED
    /// (2Ah/06h); returns whether it did.
    pub fn set_alua(&self, alua: Alua) -> bool {
        let changed = self.alua.set(alua);
        if changed {
            self.alua_changed();
        }
        changed
    }

    /// Puts target port group `group` (this gateway's or another's) in `state` while the
    /// target serves: REPORT TARGET PORT GROUPS reports it from now on, this port enforces
    /// it from the next command, and every nexus of every LU gets ASYMMETRIC ACCESS STATE
    /// CHANGED (SPC-4 5.16.2.7, annex D: 2Ah/06h) when the state is a new one. Returns
    /// whether it was.
    pub fn set_alua_state(&self, group: u16, state: AccessState) -> Result<bool, BadAlua> {
        let changed = self.alua.set_state(group, state)?;
        if changed {
            self.alua_changed();
        }
        Ok(changed)
    }

    /// Gives logical unit `lun` asymmetric access states of its own (failover per LU:
    /// each LU's active gateway is the one holding that LU's data fence): REPORT TARGET
    /// PORT GROUPS sent to it reports them, this port enforces its own group's state for
    /// commands to it, and when they differ from what it reported before (the target's
    /// groups until the first call) every nexus gets ASYMMETRIC ACCESS STATE CHANGED
    /// (2Ah/06h) on this LU only; returns whether they did. The groups must be the
    /// target's ([`ScsiTarget::set_alua`]), in other states: refused otherwise (and
    /// without ALUA, or for an absent LUN, [`BadAlua::Off`] / [`BadAlua::UnknownLun`]).
    /// A target-wide change ([`ScsiTarget::set_alua`], [`ScsiTarget::set_alua_state`])
    /// no longer reaches an LU with states of its own.
    pub fn set_lu_alua(&self, lun: u16, alua: Alua) -> Result<bool, BadAlua> {
        let lu = self.lu(lun).ok_or(BadAlua::UnknownLun(lun))?;
        let base = self.alua.report().ok_or(BadAlua::Off)?;
        let ids = |a: &Alua| {
            let mut v: Vec<u16> = a.groups().map(|g| g.id).collect();
            v[1..].sort_unstable();
            v
        };
        let (want, have) = (ids(&alua), ids(&base.alua));
        if want != have {
            let odd = want
                .iter()
                .find(|id| !have.contains(id))
                .or_else(|| have.iter().find(|id| !want.contains(id)))
                .copied()
                .unwrap_or(alua.own.id);
            return Err(BadAlua::UnknownGroup(odd));
        }
        let changed = lu.alua.set_over(Some(base), alua);
        if changed {
            self.nexuses.raise(
                lun,
                UnitAttention::AsymmetricAccessStateChanged,
                UaScope::All,
            );
        }
        Ok(changed)
    }

    /// Why this gateway's target port refuses `cdb` on `lu` in the asymmetric access
    /// state it has there now (the LU's own, else the target's), or `None`.
    pub(crate) fn alua_refusal(&self, lu: &Lu, cdb: &[u8]) -> Option<sense::Sense> {
        if lu.alua.is_set() {
            lu.alua.refusal(cdb)
        } else {
            self.alua.refusal(cdb)
        }
    }

    /// The target port groups logical unit `lun` reports now: its own
    /// ([`ScsiTarget::set_lu_alua`]) or else the target's.
    pub fn lu_alua(&self, lun: u16) -> Option<Alua> {
        let lu = self.lu(lun)?;
        lu.alua.get().or_else(|| self.alua.get())
    }

    fn alua_changed(&self) {
        for lun in self.luns() {
            if self.lu(lun).is_some_and(|lu| lu.alua.is_set()) {
                continue; // states of its own: a target-wide change does not reach it
            }
            self.nexuses.raise(
                lun,
                UnitAttention::AsymmetricAccessStateChanged,
                UaScope::All,
            );
        }
    }

    /// The target ports reservations know: this gateway's (its ALUA group, else 1) and
    /// every other gateway's group.
    pub(crate) fn reservation_ports(&self) -> reservations::Ports {
        reservations::Ports {
            own: self.alua.port_id(),
            all: self.alua.port_ids(),
        }
    }

    /// The target port groups reported now, when ALUA is set.
    pub fn alua(&self) -> Option<Alua> {
        self.alua.get()
    }

    /// The groups and which were altered live, for REPORT TARGET PORT GROUPS.
    pub(crate) fn alua_report(&self, lu: &Lu) -> Option<commands::alua::Reported> {
        lu.alua.report().or_else(|| self.alua.report())
    }

    /// Whether ALUA is set (one atomic load).
    pub fn has_alua(&self) -> bool {
        self.alua.is_set()
    }

    /// Logical unit `lun`'s reservations are kept on the volume for every gateway that
    /// exports it, this one being named `gateway` among them: PERSISTENT RESERVE IN/OUT
    /// and RESERVE/RELEASE(6/10) become [`Start::SharedReservations`], every change is
    /// saved (APTPL or not), and the caller loads what other gateways changed with
    /// [`ScsiTarget::refresh_reservations`] within its refresh bound. A RESERVE(6/10) is
    /// recorded as its I_T nexus and `gateway`; when its session ends here or a reset
    /// ends it, the release is written by the next [`ScsiTarget::reservation_chores`] (or
    /// the next reservation command here).
    pub fn share_reservations(&self, lun: u16, gateway: &str) {
        if let Some(lu) = self.lu(lun) {
            lu.reservations.share(gateway);
            // No copy of the shared state yet: writes wait for the first lease.
            lu.interlock.set_fenced(true);
        }
    }

    /// The caller loaded logical unit `lun`'s shared state ([`Self::refresh_reservations`],
    /// or a PERSISTENT RESERVE command) from a read it began at `read_started`, and this
    /// gateway is among those the others wait for: writes are admitted until
    /// [`RESERVATIONS_LEASE`] after `read_started`.
    pub fn renew_reservations_lease(&self, lun: u16, read_started: Instant) {
        if let Some(lu) = self.lu(lun).filter(|lu| lu.reservations.is_shared()) {
            lu.reservations
                .renew_lease(read_started, RESERVATIONS_LEASE);
            lu.interlock.set_fenced(false);
        }
    }

    /// Tells the copy manager the time: ROD tokens left unused for their inactivity
    /// timeout expire (`commands::token`). A token's timeout starts at the first call
    /// that finds it idle, so the driver calls this about every second
    /// ([`ROD_TOKEN_TICK`]); a token lives its timeout plus up to one tick.
    pub fn expire_rod_tokens(&self, now: Instant) {
        self.rod_tokens.expire(now);
    }

    /// ROD tokens of this target (and its successors) that may still be used.
    pub fn rod_tokens_valid(&self) -> usize {
        self.rod_tokens.valid()
    }

    /// Told the time: every shared logical unit whose lease has run out at `now` admits
    /// nothing that changes the medium (BUSY) until its lease is renewed. The driver calls
    /// this on a timer of its own, independent of the reads of the shared state.
    pub fn expire_reservation_leases(&self, now: Instant) {
        for lu in self.luns.iter().flatten() {
            if lu.reservations.is_shared() && lu.reservations.lease_expired(now) {
                lu.interlock.set_fenced(true);
            }
        }
    }

    /// Whether logical unit `lun` refuses writes now because its lease ran out.
    pub fn reservations_fenced(&self, lun: u16) -> bool {
        self.lu(lun).is_some_and(|lu| lu.interlock.fenced())
    }

    /// The version of logical unit `lun`'s shared state loaded here.
    pub fn reservations_version(&self, lun: u16) -> Option<u64> {
        self.lu(lun).map(|lu| lu.reservations.version())
    }

    /// The newest version `v` of logical unit `lun`'s shared state such that this gateway
    /// has loaded it and no write admitted against an older version is still in flight:
    /// what this gateway acknowledges to the others.
    pub fn reservations_drained(&self, lun: u16) -> Option<u64> {
        self.lu(lun)
            .map(|lu| lu.reservations.version().min(lu.interlock.drained_to()))
    }

    /// The caller told the other gateways it adopted `version` of logical unit `lun`'s
    /// shared state (so the refresh goes back to its normal pace).
    pub fn reservations_acked(&self, lun: u16, version: u64) {
        if let Some(lu) = self.lu(lun) {
            lu.reservations.set_acked(version);
        }
    }

    /// Whether logical unit `lun`'s reservations are kept for several gateways.
    pub fn reservations_shared(&self, lun: u16) -> bool {
        self.lu(lun).is_some_and(|lu| lu.reservations.is_shared())
    }

    /// Loads logical unit `lun`'s persistent reservations as another gateway left them on
    /// the volume (`None`: nothing saved). The caller reads them under the shared metadata
    /// lock, so never in the middle of a change of its own.
    /// The unit attentions of the changes made since the version loaded before are raised
    /// on this gateway's nexuses of the ports concerned, and PREEMPT AND ABORT queues
    /// their task aborts ([`Self::take_task_aborts`]); writes admitted from now on belong
    /// to the new version's fence epoch.
    pub fn refresh_reservations(&self, lun: u16, saved: Option<&[u8]>) -> Result<(), BadMetadata> {
        let lu = self.lu(lun).ok_or(BadMetadata)?;
        let version = lu
            .reservations
            .load_shared(saved, &self.nexuses, lun, self.alua.port_id())
            .ok_or(BadMetadata)?;
        lu.interlock.set_epoch(version);
        Ok(())
    }

    /// The shared logical units whose reservations are due to be loaded again at `now`
    /// (each at most once per [`RESERVATIONS_REFRESH`]): the caller reads each one's
    /// state under the shared metadata lock and hands it to
    /// [`ScsiTarget::refresh_reservations`]. This bounds how long the data path may check
    /// against a state another gateway has since changed.
    pub fn reservations_due(&self, now: Instant) -> Vec<u16> {
        self.luns()
            .filter(|&lun| {
                self.lu(lun).is_some_and(|lu| {
                    lu.reservations.is_shared()
                        && lu.reservations.refresh_due(
                            now,
                            RESERVATIONS_REFRESH,
                            RESERVATIONS_ACK_REFRESH,
                        )
                })
            })
            .collect()
    }

    /// The releases of RESERVE(6/10) reservations of shared logical units that this
    /// gateway owes (a holding session here ended, a reset, a hold of this gateway's
    /// former process), and the resets made here that the other gateways are still to
    /// be told of: one run per LU, carried out like a [`SharedReservations`] command
    /// (under the exclusive lock: read, [`ReservationRun::run`], write) but answering no
    /// one. The caller runs them with its refresh; one not carried out stays owed.
    pub fn reservation_chores(&self) -> Vec<ReservationRun> {
        self.luns()
            .filter(|&lun| {
                self.lu(lun).is_some_and(|lu| {
                    lu.reservations.is_shared()
                        && (lu.reservations.owes_release() || lu.reservations.owes_reset())
                })
            })
            .map(|lun| ReservationRun {
                lun,
                nexus: 0,
                cdb: Vec::new(),
                data_out: Bytes::new(),
                loaded: None,
                answer: Arc::default(),
                chore: true,
            })
            .collect()
    }

    /// The name of the other gateway through which a session holds the RESERVE(6/10)
    /// of shared logical unit `lun`, as last loaded (`None`: none, or this gateway's).
    pub fn reserve_held_through(&self, lun: u16) -> Option<String> {
        self.lu(lun)?.reservations.reserve_held_through()
    }

    /// The caller found gateway `gateway` gone (the storage let go of its locks): the
    /// RESERVE(6/10) one of its sessions holds on shared logical unit `lun` ends with
    /// those sessions (SPC-2 5.5.1), and this gateway writes its release with its next
    /// [`ScsiTarget::reservation_chores`]. Whether there was one.
    pub fn reserve_holder_gone(&self, lun: u16, gateway: &str) -> bool {
        self.lu(lun)
            .is_some_and(|lu| lu.reservations.gateway_gone(gateway))
    }

    /// When [`ScsiTarget::reservations_due`] next has something to say: `None` without
    /// shared logical units, a time already past for one never loaded.
    pub fn next_reservations_refresh(&self, now: Instant) -> Option<Instant> {
        self.luns()
            .filter_map(|lun| self.lu(lun))
            .filter(|lu| lu.reservations.is_shared())
            .map(|lu| lu.reservations.next_refresh().unwrap_or(now))
            .min()
    }

    fn lu(&self, lun: u16) -> Option<&Lu> {
        self.luns.get(usize::from(lun)).and_then(Option::as_ref)
    }

    /// A TARGET WARM/COLD RESET was carried out: every nexus gets POWER ON, RESET, OR BUS
    /// DEVICE RESET OCCURRED on every logical unit (SAM-5 7.10).
    pub fn target_reset(&self) {
        for (lun, lu) in self.luns.iter().enumerate() {
            if let Some(lu) = lu {
                lu.reservations.reset(UnitAttention::PowerOnReset);
                self.nexuses
                    .raise(lun as u16, UnitAttention::PowerOnReset, UaScope::All);
            }
        }
    }
}
