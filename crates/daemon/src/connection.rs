//! Drives one iSCSI connection: socket bytes in, PDUs out, commands to the SCSI layer,
//! storage requests to the stores, completions back.
//!
//! One tokio task per connection; no task or thread per command. Store completions arrive
//! on whatever thread the store finishes on and are sent to this task over a channel.

use crate::buffers::{write_transmit, SocketBuffers};
use crate::completions::{Completions, IoDone, Outcome};
use crate::handover::Lane;
use crate::metrics::{self, LunMetrics};
use crate::sessions::Control;
use crate::targets::{Target, Targets};
use iscsi::{
    CommandResponse, Event, ScsiCommand, SessionType, TaskAttr, TaskFunction, TaskScope,
    TmfResponse,
};
use scsi::{Command, NexusId, Pending, Response, Start};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store_api::{ErrorKind, Op, StoreError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Numbers I_T nexuses (one per session for now).
static NEXUS_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A command handed to the SCSI layer and not yet answered.
struct InFlightCommand {
    /// Wire LUN, for task management by LUN.
    lun: u64,
    /// Distinguishes this command from a later one that reuses its task tag: unique on
    /// the connection, carried by its storage completions.
    seq: u64,
    /// The storage operation it waits on, if any (for the time-out answer).
    op: Option<Op>,
    /// Its LUN's metrics, with what they count (when metrics are on; taken when the
    /// command is answered, else it counts as dropped).
    metrics: Option<CommandMetrics>,
}

/// What the metrics of a command need at its answer.
struct CommandMetrics {
    lun: Arc<LunMetrics>,
    kind: metrics::Kind,
    started: Instant,
}

impl InFlightCommand {
    /// Counts the command's answer in its LUN's metrics.
    fn answered(&mut self, response: &Response) {
        if let Some(m) = self.metrics.take() {
            m.lun.answered(
                m.kind,
                m.started.elapsed(),
                response.status as u8,
                u64::from(response.transfer_len),
                response.sense.as_deref().and_then(sense_key),
            );
        }
    }
}

impl Drop for InFlightCommand {
    /// A command that leaves without an answer (aborted, connection closed) is no longer
    /// in flight.
    fn drop(&mut self) {
        if let Some(m) = self.metrics.take() {
            m.lun.dropped();
        }
    }
}

/// The sense key of fixed-format (response codes 70h/71h: byte 2) or descriptor-format
/// (72h/73h: byte 1) sense data (SPC-4 4.5).
fn sense_key(sense: &[u8]) -> Option<u8> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 => sense.get(2).map(|b| b & 0x0f),
        0x72 | 0x73 => sense.get(1).map(|b| b & 0x0f),
        _ => None,
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A command whose storage request has not finished by then is answered with CHECK
    /// CONDITION, ABORTED COMMAND / LOGICAL UNIT COMMUNICATION TIME-OUT; the store keeps
    /// the request's buffers until it finishes. `None`: no limit.
    pub command_timeout: Option<Duration>,
    /// Login time limit and NOP-In keepalive, kept by the iSCSI connection.
    pub timers: iscsi::Timers,
    /// Bounds a login is admitted against.
    pub bounds: crate::sessions::Bounds,
    /// The TCP congestion control the connection's socket gets (`--tcp-congestion`);
    /// `None`: the kernel's default.
    pub tcp_congestion: Option<crate::tcp::Congestion>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        // Below the 30 s a Linux initiator waits before it aborts the command itself, so the
        // initiator gets a retryable answer rather than an abort and a session recovery.
        ConnectionLimits {
            command_timeout: Some(Duration::from_secs(25)),
            timers: iscsi::Timers::default(),
            bounds: crate::sessions::Bounds::default(),
            tcp_congestion: None,
        }
    }
}

/// Serves one connection until logout, error or EOF; its events are logged in its
/// session span ([`crate::logging::session_span`]).
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    targets: Arc<Targets>,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    use tracing::Instrument;
    serve_in_span(stream, peer, targets, limits)
        .instrument(crate::logging::session_span(peer))
        .await
}

async fn serve_in_span(
    stream: TcpStream,
    peer: SocketAddr,
    targets: Arc<Targets>,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(cc) = limits.tcp_congestion {
        // Checked when it was configured; a module unloaded since costs only this.
        if let Err(err) = cc.apply(&stream) {
            tracing::warn!(%err, tcp_congestion = %cc, "the connection keeps the kernel's default TCP congestion control");
        }
    }
    let local = stream.local_addr().ok();
    let config = match local {
        Some(local) => targets.iscsi_config_for(local),
        None => targets.iscsi_config(),
    };
    let (mut reader, mut writer) = stream.into_split();
    let admission = crate::sessions::Admit::new(targets.clone(), limits.bounds, &config.limits);
    let mut conn = iscsi::Connection::new(config);
    conn.set_peer_address(peer.ip().to_canonical());
    conn.set_timers(limits.timers);
    conn.set_admission(Arc::new(admission));
    // Arms the login time limit.
    conn.handle_timeout(Instant::now().into_std())
        .expect("no limit has passed at the start");
    let done_tx = Completions::new();
    // Closes the completions however this function returns: late ones are then dropped.
    let _closing = CloseOnDrop(done_tx.clone());
    let mut ready = Vec::new();
    // Messages from the portal's session registry (reinstatement).
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Control>();
    let mut _registration = None;
    let mut buffers = SocketBuffers::default();
    let mut session = Session {
        target: None,
        lun_metrics: HashMap::new(),
        counted: None,
        nexus: 0,
        control: control_tx.clone(),
        in_flight: foldhash::HashMap::default(),
        next_seq: 0,
        deadlines: Deadlines::default(),
        limits,
        registration: None,
        local,
        batch: crate::batch::Batch::default(),
        order: crate::task_order::TaskOrder::default(),
    };

    // One timer for the connection's time limits (login, NOP-In) and the commands'
    // (`Deadlines`), kept across the rounds of the loop (`Alarm`).
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut alarm = Alarm::default();

    loop {
        let due = [
            conn.poll_timeout().map(Instant::from_std),
            session.deadlines.next(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = alarm.due(due) {
            timer.as_mut().reset(at);
        }
        let registered = session.registration.as_ref().map(|r| r.entry.clone());
        buffers.begin_round();
        buffers.prepare_input();
        let partial = buffers.input.len();
        let mut sender_mid_pdu = false;
        // The round read from the socket: it may read on below what is waiting.
        let mut reading = false;
        tokio::select! {
            _ = ended_by_admin(registered.as_deref()) => {
                tracing::info!(%peer, "session ended by the administrator");
                break;
            }
            () = &mut timer, if alarm.is_armed() => {
                alarm.fired();
                // Both kinds of limit look at the time themselves: one that is not due
                // yet (the timer was set for the other, or for a limit that moved
                // later) does nothing.
                let now = Instant::now();
                if let Err(err) = conn.handle_timeout(now.into_std()) {
                    tracing::warn!(%peer, %err, "closing connection");
                    break;
                }
                session.expire(&mut conn, now);
            }
            read = reader.read_buf(&mut buffers.input) => {
                match read {
                    Ok(0) => {
                        tracing::debug!(%peer, "connection closed by initiator");
                        break;
                    }
                    Ok(n) => {
                        buffers.read_done(n);
                        let others = &mut control_rx;
                        if !input_read(&mut conn, &mut session, others, &mut buffers, peer) {
                            break;
                        }
                        sender_mid_pdu = SocketBuffers::read_only_part_of_a_pdu(
                            partial,
                            n,
                            buffers.input.len(),
                        );
                        reading = true;
                    }
                    Err(err) => {
                        tracing::debug!(%peer, %err, "connection read failed");
                        break;
                    }
                }
            }
            Some(control) = control_rx.recv() => {
                if session.control(&mut conn, peer, control) {
                    break;
                }
            }
            () = done_tx.ready() => {
                // Every completion that is already there, so their responses go out in
                // one socket write.
                done_tx.take(&mut ready);
                for done in ready.drain(..) {
                    session.io_done(&mut conn, &done_tx, done);
                }
            }
        }
        let mut closing = false;
        loop {
            while let Some(event) = conn.poll_event() {
                if let Event::LoggedIn {
                    initiator,
                    isid,
                    tsih,
                    target,
                    ..
                } = &event
                {
                    crate::logging::record_login(initiator, *isid, *tsih, target);
                    let (registration, reinstated) =
                        targets
                            .sessions
                            .register(initiator, *isid, *tsih, control_tx.clone());
                    if reinstated {
                        tracing::info!(%peer, %initiator, isid = ?isid,
                            "login reinstates an existing session");
                    }
                    _registration = Some(registration);
                }
                session.handle_event(&mut conn, &done_tx, &targets, peer, event);
                let (reads, bytes) = done_tx.ready_data();
                if buffers.send_now(reads, bytes, done_tx.ready_count()) {
                    // Answers are ready (a store that answers inline, the memory store,
                    // reads and writes while the commands start): a large batch of read
                    // data, or the first few answers of the round. Sent before the next
                    // command is worked on, so the initiator takes in the first responses
                    // and sends its next commands while the rest are worked on, instead
                    // of both ends taking turns over the whole batch.
                    done_tx.take(&mut ready);
                    for done in ready.drain(..) {
                        session.io_done(&mut conn, &done_tx, done);
                    }
                    session.batch.send();
                    conn.poll_transmit(&mut buffers.output);
                    write_transmit(&mut writer, &mut buffers.output).await?;
                }
            }
            // Commands an ORDERED one held back whose turn came with this round's
            // completions, aborts or time-outs.
            session.start_held(&mut conn, &done_tx);
            // Not once this round has something to send (the R2T for a large write's
            // next burst, or answers a store gave inline): see `SocketBuffers::read_on`.
            if !reading || !buffers.read_on(conn.has_transmit() || done_tx.any_ready()) {
                break;
            }
            // The read took all the room it had, so more was likely waiting (a stream of
            // 64 KiB writes arriving faster than they are answered): read on what the
            // socket already holds, without waiting, so this round starts every write that
            // has arrived (up to `SocketBuffers::ROUND_INPUT`) and its batch joins them,
            // rather than a round per large input buffer (about four such writes) taking
            // turns with the rounds of completions. The end of the stream or an error is
            // left to the next round's read, after this round's answers are sent.
            buffers.prepare_input();
            let partial = buffers.input.len();
            match reader.try_read_buf(&mut buffers.input) {
                Ok(n) if n > 0 => {
                    buffers.read_done(n);
                    if !input_read(&mut conn, &mut session, &mut control_rx, &mut buffers, peer) {
                        closing = true;
                        break;
                    }
                    sender_mid_pdu =
                        SocketBuffers::read_only_part_of_a_pdu(partial, n, buffers.input.len());
                }
                // Nothing waiting after all (would block), the end, or an error.
                _ => break,
            }
        }
        if closing {
            break;
        }
        // The batch is worked through: its writes go to their stores, together.
        session.batch.send();
        if let Some(registration) = &session.registration {
            registration
                .entry
                .set_in_flight(session.in_flight.len() + session.order.held());
        }
        conn.poll_transmit(&mut buffers.output);
        if !buffers.output.is_empty() {
            write_transmit(&mut writer, &mut buffers.output).await?;
            buffers.settle();
        }
        if conn.is_finished() {
            break;
        }
        if sender_mid_pdu {
            // The read began a PDU and brought only part of it: the initiator is between
            // the sends of one PDU (libiscsi sends a write's header, then its data). Give
            // it the CPU to finish instead of sleeping until the rest wakes this thread:
            // where both share a core, that wake-up preempts the initiator again before
            // it sends anything more, so every write cost two wake-ups; the next poll
            // then finds the rest already there. Where the initiator runs on another
            // core this returns at once (nothing else is runnable here).
            std::thread::yield_now();
        }
    }
    if let (Some(m), Some((status, asked))) = (metrics::global(), conn.login_failure()) {
        // Only configured names become labels: initiators cannot add series.
        let known = if targets.get(asked).is_some() {
            asked
        } else {
            ""
        };
        m.login_failed(known, status);
    }
    if !session.in_flight.is_empty() {
        tracing::debug!(%peer, count = session.in_flight.len(),
            "connection ends with commands in flight; their stores still own the buffers");
    }
    Ok(())
}

/// After a socket read brought input: what other sessions did to this one first (a
/// PREEMPT AND ABORT answered before the commands sent after it), then the iSCSI core's
/// pass over the input. False when the connection must close (ended by another session,
/// or a protocol error).
fn input_read(
    conn: &mut iscsi::Connection,
    session: &mut Session,
    control_rx: &mut mpsc::UnboundedReceiver<Control>,
    buffers: &mut SocketBuffers,
    peer: SocketAddr,
) -> bool {
    let mut ended = false;
    while let Ok(control) = control_rx.try_recv() {
        ended |= session.control(conn, peer, control);
    }
    if ended {
        return false;
    }
    if let Err(err) = conn.handle_input(&mut buffers.input) {
        tracing::warn!(%peer, %err, "closing connection: protocol error");
        return false;
    }
    true
}

/// When a connection's one timer is set for: the earliest of its time limits, moved only
/// when it has fired or a limit comes due before it.
///
/// A `sleep_until` made anew in every round of the connection's `select!` registered a
/// timer each round, and tokio wakes its driver (an eventfd write and one more epoll
/// round) when a new timer is earlier than the one the driver sleeps for: about every
/// other 64 KiB write (docs/performance.md, sixth round). Kept instead, the timer is
/// moved once per fire: a limit that moved later (the NOP-In ping after more traffic, the
/// oldest command answered) lets it fire early, find nothing due, and be set again.
#[derive(Debug, Default)]
struct Alarm {
    /// What the timer is set for; `None` while it is not (never set, or fired).
    armed: Option<Instant>,
}

impl Alarm {
    /// Given the earliest limit now, the instant to set the timer to, if it must move.
    fn due(&mut self, earliest: Option<Instant>) -> Option<Instant> {
        let at = earliest.filter(|at| self.armed.is_none_or(|armed| *at < armed))?;
        self.armed = Some(at);
        Some(at)
    }

    /// Whether the timer is set (a fired one stays ready until it is set again).
    fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// The timer fired.
    fn fired(&mut self) {
        self.armed = None;
    }
}

/// Closes a connection's completions when its task ends.
struct CloseOnDrop(Arc<Completions>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Session {
    target: Option<Arc<Target>>,
    /// Metrics of the LUNs this session has used, by wire LUN (when metrics are on).
    lun_metrics: HashMap<u64, Arc<LunMetrics>>,
    /// Counts the session in its target's metrics while it lives.
    counted: Option<metrics::SessionGuard>,
    nexus: NexusId,
    /// This connection's control channel, registered with the target under `nexus`.
    control: mpsc::UnboundedSender<Control>,
    /// By task tag (foldhash, not SipHash: a few lookups per command; bounded by the
    /// command window, so flooding it buys an initiator nothing).
    in_flight: foldhash::HashMap<u32, InFlightCommand>,
    next_seq: u64,
    /// Time limits of the commands waiting on a store.
    deadlines: Deadlines,
    limits: ConnectionLimits,
    /// The session's entry in the list `admin session list` shows.
    registration: Option<crate::registry::Registration>,
    /// The address the initiator connected to.
    local: Option<SocketAddr>,
    /// Writes waiting for the end of the batch.
    batch: crate::batch::Batch,
    /// Commands an ORDERED one holds back, per LU (task attributes: `crate::task_order`).
    order: crate::task_order::TaskOrder<ScsiCommand>,
}

/// Completes when the administrator ends the session; never without a registration.
async fn ended_by_admin(entry: Option<&crate::registry::SessionEntry>) {
    match entry {
        Some(entry) => entry.ended().await,
        None => std::future::pending().await,
    }
}

impl Drop for Session {
    /// However the connection ends, its nexus's unit attentions go with it.
    fn drop(&mut self) {
        if let Some(target) = &self.target {
            target.scsi.close_nexus(self.nexus);
            target
                .nexuses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.nexus);
        }
    }
}

impl Session {
    fn handle_event(
        &mut self,
        conn: &mut iscsi::Connection,
        done_tx: &Arc<Completions>,
        targets: &Arc<Targets>,
        peer: SocketAddr,
        event: Event,
    ) {
        match event {
            Event::LoggedIn {
                initiator,
                target,
                session_type,
                isid,
                tsih,
            } => {
                self.nexus = NEXUS_COUNTER.fetch_add(1, Ordering::Relaxed);
                if session_type == SessionType::Normal {
                    self.target = targets.get(&target);
                    self.registration = Some(crate::registry::Registry::register(
                        targets,
                        &initiator,
                        &target,
                        (peer, self.local),
                        isid,
                        tsih,
                    ));
                    if let Some(t) = &self.target {
                        let port = scsi::InitiatorPort {
                            name: initiator.clone(),
                            isid,
                        };
                        t.scsi.open_nexus(self.nexus, port);
                        t.nexuses
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(self.nexus, self.control.clone());
                        self.counted = metrics::global().map(|m| m.session(&t.name));
                    }
                }
                let digests = conn.params().map(|p| p.digests).unwrap_or_default();
                let max_recv_data_segment_length =
                    conn.params().map(|p| p.target_max_recv_data_segment_length);
                let immediate_data = conn.params().map(|p| p.immediate_data);
                let initial_r2t = conn.params().map(|p| p.initial_r2t);
                let max_outstanding_r2t = conn.params().map(|p| p.max_outstanding_r2t);
                tracing::info!(
                    %peer,
                    %initiator,
                    %target,
                    ?session_type,
                    header_digest = digests.header,
                    data_digest = digests.data,
                    max_recv_data_segment_length,
                    immediate_data,
                    initial_r2t,
                    max_outstanding_r2t,
                    "login"
                );
            }
            Event::Command(cmd) => {
                if self.target.as_ref().is_some_and(|t| t.is_stale()) {
                    // The administrator changed the target: continue on its new version
                    // (none if it was removed; the removal ends the session).
                    let old = self.target.take().expect("checked above");
                    self.target = targets.get(&old.name);
                    let successor = self
                        .target
                        .as_ref()
                        .is_some_and(|new| new.scsi.shares_nexuses_with(&old.scsi));
                    if !successor {
                        // Not a version of the same target: a nexus of its own.
                        old.scsi.close_nexus(self.nexus);
                        old.nexuses
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&self.nexus);
                    }
                    if let (false, Some(new), Some(r)) =
                        (successor, &self.target, &self.registration)
                    {
                        let port = scsi::InitiatorPort {
                            name: r.entry.initiator.clone(),
                            isid: r.entry.isid,
                        };
                        new.scsi.open_nexus(self.nexus, port);
                        new.nexuses
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(self.nexus, self.control.clone());
                    }
                }
                self.start_command(conn, done_tx, cmd)
            }
            Event::TaskManagement(tmf) => {
                let response = self.task_management(conn, &tmf);
                conn.complete_task_management(tmf.itt, response);
            }
            Event::LoggedOut => tracing::info!(%peer, "logout"),
        }
    }

    fn start_command(
        &mut self,
        conn: &mut iscsi::Connection,
        done_tx: &Arc<Completions>,
        cmd: ScsiCommand,
    ) {
        let Some(target) = self.target.clone() else {
            // The iSCSI core only delivers commands on normal sessions, which have a target.
            tracing::error!(itt = cmd.itt, "SCSI command without a target; dropping it");
            return;
        };
        let itt = cmd.itt;
        if let Some(sense) = crate::task_order::refusal(cmd.attr) {
            tracing::debug!(itt, attr = ?cmd.attr, "task attribute refused");
            conn.complete_command(itt, to_iscsi(Response::check_condition(sense)));
            return;
        }
        if cmd.data_out_discarded {
            // A write over the iSCSI per-command data limit arrives without its data: fail
            // it as the SCSI layer fails a transfer above its maximum, never run it as a
            // write of nothing.
            tracing::warn!(
                itt,
                expected_len = cmd.expected_len,
                "write over the data limit"
            );
            let sense = scsi::sense::Sense::new(
                scsi::sense::SenseKey::IllegalRequest,
                scsi::sense::Asc::INVALID_FIELD_IN_CDB,
            );
            conn.complete_command(itt, to_iscsi(Response::check_condition(sense)));
            return;
        }
        // SIMPLE commands while nothing ORDERED runs or waits (the usual case) start at
        // once; otherwise the task attributes decide (`crate::task_order`).
        let cmd = if self.order.is_idle() && cmd.attr != TaskAttr::Ordered {
            cmd
        } else {
            let (lun, attr) = (cmd.lun, cmd.attr);
            let in_flight = &self.in_flight;
            match self
                .order
                .admit(lun, itt, attr, cmd, || running_on(in_flight, lun))
            {
                Some(cmd) => cmd,
                None => return,
            }
        };
        self.run_command(conn, done_tx, &target, cmd);
    }

    /// Starts the commands ORDERED ones held back whose turn has come (after commands
    /// ended), in the order received.
    fn start_held(&mut self, conn: &mut iscsi::Connection, done_tx: &Arc<Completions>) {
        while !self.order.is_idle() {
            let in_flight = &self.in_flight;
            let Some(cmd) = self.order.next_ready(|lun| running_on(in_flight, lun)) else {
                break;
            };
            let Some(target) = self.target.clone() else {
                return;
            };
            self.run_command(conn, done_tx, &target, cmd);
        }
    }

    /// Hands a command whose turn it is to the SCSI layer.
    fn run_command(
        &mut self,
        conn: &mut iscsi::Connection,
        done_tx: &Arc<Completions>,
        target: &Arc<Target>,
        cmd: ScsiCommand,
    ) {
        let itt = cmd.itt;
        let seq = self.next_seq;
        self.next_seq += 1;
        let metrics = self.lun_metrics(target, cmd.lun).map(|lun| {
            lun.started();
            CommandMetrics {
                lun,
                kind: metrics::Kind::of(&cmd.cdb),
                started: Instant::now(),
            }
        });
        self.in_flight.insert(
            itt,
            InFlightCommand {
                lun: cmd.lun,
                seq,
                op: None,
                metrics,
            },
        );
        let start = target.scsi.start(Command {
            nexus: self.nexus,
            lun: cmd.lun,
            cdb: cmd.cdb,
            data_out: cmd.data_out,
            expected_len: cmd.expected_len,
        });
        self.advance(conn, done_tx, target, itt, seq, start);
    }

    fn io_done(&mut self, conn: &mut iscsi::Connection, done_tx: &Arc<Completions>, done: IoDone) {
        let Some(target) = self.target.clone() else {
            return;
        };
        if self.in_flight.get(&done.itt).map(|cmd| cmd.seq) != Some(done.seq) {
            // Aborted or timed out while the store held it (its tag may belong to a newer
            // command by now); the store has now let go of the buffers.
            return;
        }
        match done.outcome {
            Outcome::Finished { pending, result } => {
                if matches!(&result, Err(e) if e.kind == store_api::ErrorKind::Fenced) {
                    crate::failover::note_fenced(&target.name);
                }
                let next = pending.finish(result);
                self.advance(conn, done_tx, &target, done.itt, done.seq, next);
            }
            // The start of a large read, sent while the store reads the rest.
            Outcome::Part(data) => conn.send_data_in(done.itt, data),
        }
    }

    /// Runs a command forward until it waits on a store or is done.
    fn advance(
        &mut self,
        conn: &mut iscsi::Connection,
        done_tx: &Arc<Completions>,
        target: &Target,
        itt: u32,
        seq: u64,
        start: Start,
    ) {
        match start {
            Start::Done(response) => {
                if let Some(mut cmd) = self.forget(itt) {
                    cmd.answered(&response);
                }
                conn.complete_command(itt, to_iscsi(response));
                self.dispatch_aborts(conn, target);
            }
            Start::SaveReservations { lun, pending } => {
                self.save_metadata(done_tx, itt, seq, lun, pending, Saved::Reservations);
            }
            Start::SaveModePages { lun, pending } => {
                self.save_metadata(done_tx, itt, seq, lun, pending, Saved::ModePages);
            }
            Start::SharedReservations(shared) => {
                let (run, pending) = shared.into_parts();
                let Some(target) = self.target.clone() else {
                    return;
                };
                let done = done_tx.park(itt, seq, pending);
                tokio::task::spawn_blocking(move || match crate::gateways::gateway() {
                    Some(owner) => crate::gateways::run_shared(&target, owner, run, done),
                    // The core shares reservations only when a gateway is named.
                    None => done.complete(Err(StoreError::new(Op::Lock, ErrorKind::Io))),
                });
            }
            Start::Copy(step) => {
                // The source store's copy handle; the step becomes a copy request on the
                // destination's store, or reads and writes without one. The source may be
                // another target's LU (a copy between targets).
                let owner = step
                    .source_peer
                    .as_ref()
                    .map_or(target, crate::targets::peer_target);
                let source = owner
                    .store(step.source_lun)
                    .and_then(|store| store.copy_source());
                let next = step.with_source(source);
                self.advance(conn, done_tx, target, itt, seq, next);
            }
            Start::Io {
                lun,
                request,
                pending,
                peer,
            } => {
                if let Some(cmd) = self.in_flight.get_mut(&itt) {
                    if cmd.op.is_none() {
                        if let Some(limit) = self.limits.command_timeout {
                            self.deadlines.push(Instant::now() + limit, itt, cmd.seq);
                        }
                    }
                    cmd.op = Some(request.op());
                }
                // Another target's LU for a copy between targets: its store and lane.
                let owner = peer.as_ref().map_or(target, crate::targets::peer_target);
                let Some(store) = owner.store(lun) else {
                    // The SCSI layer only asks for I/O on LUNs it knows, which all have stores.
                    tracing::error!(lun, "storage request for a LUN without a store");
                    let next = pending.finish(Err(store_api::StoreError::new(
                        request.op(),
                        store_api::ErrorKind::Io,
                    )));
                    return self.advance(conn, done_tx, target, itt, seq, next);
                };
                // Counted in flight on the LUN's lane (the ticket parks with the
                // continuation); a store that took over from another serves only once that
                // one is idle and flushed (`crate::handover`). No allocation: the
                // continuation waits in a slot of `done_tx`. A plain READ's completion
                // takes its data in parts, which go out as Data-In as they come.
                // Writes (and reads, for a store that joins them) wait for the end of
                // the batch and go to their store together (`crate::batch`).
                let lane = owner.lane(lun).cloned().unwrap_or_else(Lane::open);
                let ticket = lane.enter();
                if let Some((lane, store)) = ticket.moved_to() {
                    // This target version's store was handed over since it was looked up.
                    let (lane, store) = (lane.clone(), store.clone());
                    let done = done_tx.park_counted(itt, seq, pending, Some(ticket));
                    self.batch.submit(&lane, &store, request, done);
                } else {
                    let done = done_tx.park_counted(itt, seq, pending, Some(ticket));
                    self.batch.submit(&lane, store, request, done);
                }
            }
        }
    }

    /// Saves LUN `lun`'s reservations (APTPL) or mode pages (MODE SELECT with SP) on a
    /// blocking thread, then continues the command with the outcome, as a store
    /// completion would.
    fn save_metadata(
        &self,
        done_tx: &Arc<Completions>,
        itt: u32,
        seq: u64,
        lun: u64,
        pending: Pending,
        what: Saved,
    ) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let done = done_tx.park(itt, seq, pending);
        tokio::task::spawn_blocking(move || {
            let result = match target.store(lun) {
                Some(store) => {
                    // One save at a time, so the last one written holds the latest state.
                    let _one_at_a_time = target
                        .reservation_saves
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let (name, state) = match what {
                        Saved::Reservations => (
                            scsi::RESERVATIONS_METADATA,
                            target.scsi.reservation_metadata(lun as u16),
                        ),
                        Saved::ModePages => (
                            scsi::MODE_PAGES_METADATA,
                            target.scsi.mode_pages_metadata(lun as u16),
                        ),
                    };
                    let state = state.unwrap_or_default();
                    let written = store.write_metadata(name, &state);
                    if written.is_ok() && matches!(what, Saved::ModePages) {
                        target.scsi.mode_pages_written(lun as u16, &state);
                    }
                    written
                }
                None => Err(StoreError::new(Op::Write, ErrorKind::Io)),
            };
            if let Err(err) = &result {
                tracing::error!(target = %target.name, lun, %err, "cannot save {}", what.name());
            }
            done.complete(result.map(|()| store_api::IoReply::Done));
        });
    }

    /// Carries out a task management function and returns its iSCSI response code.
    fn task_management(
        &mut self,
        conn: &mut iscsi::Connection,
        tmf: &iscsi::TaskManagementRequest,
    ) -> TmfResponse {
        // The iSCSI layer already dropped the tasks still collecting data in the scope;
        // one session per I_T nexus, so no other nexus's tasks are visible here.
        match tmf.function.scope() {
            TaskScope::Task(referenced_itt) => {
                if self.forget(referenced_itt).is_some()
                    || self.order.remove(referenced_itt).is_some()
                {
                    conn.abort_command(referenced_itt);
                    TmfResponse::FunctionComplete
                } else {
                    TmfResponse::TaskDoesNotExist
                }
            }
            TaskScope::Lun => {
                let lun = tmf.lun;
                if tmf.function == TaskFunction::LogicalUnitReset {
                    // Every nexus, this one included, learns of the reset, and every other
                    // nexus's tasks on the LU are aborted too (SAM-5 7.8).
                    if let (Some(target), Some(n)) = (self.target.clone(), scsi::decode_lun(lun)) {
                        target.scsi.logical_unit_reset_by(n, self.nexus);
                        self.aborts_after_reset(conn, &target, Some(n));
                    }
                }
                let doomed: Vec<u32> = self
                    .in_flight
                    .iter()
                    .filter(|(_, cmd)| cmd.lun == lun)
                    .map(|(itt, _)| *itt)
                    .collect();
                for itt in doomed {
                    self.forget(itt);
                    conn.abort_command(itt);
                }
                for (itt, _) in self.order.remove_on(|wire| wire == lun) {
                    conn.abort_command(itt);
                }
                TmfResponse::FunctionComplete
            }
            TaskScope::Session => {
                self.abort_all(conn);
                if let Some(target) = self.target.clone() {
                    target.scsi.target_reset_by(self.nexus);
                    self.aborts_after_reset(conn, &target, None);
                }
                TmfResponse::FunctionComplete
            }
            // CLEAR ACA, the one function that ends no task: we report NormACA=0 and never
            // establish an ACA condition, so nothing is cleared. RFC 7143 11.6.1 lets a
            // target answer a function it does not implement with "Task management function
            // not supported"; that tells the initiator plainly that ACA is absent (as Linux
            // LIO does), where "function complete" would claim a clear that never happened.
            TaskScope::None => TmfResponse::NotSupported,
        }
    }
}

impl Session {
    /// Handles a message from outside the connection; true when the connection must end.
    fn control(
        &mut self,
        conn: &mut iscsi::Connection,
        peer: SocketAddr,
        control: Control,
    ) -> bool {
        match control {
            Control::Reinstated => {
                // RFC 7143 6.3.5: the new login ends this session and its tasks; their
                // store requests finish in the background.
                tracing::info!(%peer, aborted = self.in_flight.len(),
                    "session reinstated by a new login; closing the old connection");
                self.abort_all(conn);
                true
            }
            Control::LogoutRequested(secs) => {
                if conn.request_logout(secs) {
                    tracing::info!(%peer, "shutting down: asked the initiator to log out");
                }
                false
            }
            Control::AbortTasks(lun) => {
                let aborted = self.abort_lun(conn, lun);
                tracing::info!(%peer, lun, aborted,
                    "this nexus's tasks on the LUN aborted by another nexus's command or \
                     function (PREEMPT AND ABORT, LOGICAL UNIT RESET, target reset)");
                false
            }
        }
    }

    /// Aborts this nexus's commands on logical unit `lun` (plain number), without status:
    /// those in flight (their stores keep the buffers until they finish), those the
    /// connection still collects data for, and those it holds out of CmdSN order (dropped
    /// at their turn). Returns how many.
    fn abort_lun(&mut self, conn: &mut iscsi::Connection, lun: u16) -> usize {
        let collecting = conn.abort_collecting(|wire| scsi::decode_lun(wire) == Some(lun));
        let doomed: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, cmd)| scsi::decode_lun(cmd.lun) == Some(lun))
            .map(|(itt, _)| *itt)
            .collect();
        for &itt in &doomed {
            self.forget(itt);
            conn.abort_command(itt);
        }
        let held = self
            .order
            .remove_on(|wire| scsi::decode_lun(wire) == Some(lun));
        for &(itt, _) in &held {
            conn.abort_command(itt);
        }
        collecting + doomed.len() + held.len()
    }

    /// Sends the task aborts a reset from this nexus queued (and any other) to the
    /// connections of the other nexuses, at once; this nexus's own on `covered` (the
    /// reset's LUN; `None`: every LUN, a target reset) the reset has ended already, and
    /// are not carried out again (later they could end commands received after it).
    fn aborts_after_reset(
        &mut self,
        conn: &mut iscsi::Connection,
        target: &Target,
        covered: Option<u16>,
    ) {
        for abort in target.scsi.take_task_aborts() {
            if abort.nexus != self.nexus {
                send_task_abort(target, abort);
            } else if covered.is_some_and(|lun| lun != abort.lun) {
                self.abort_lun(conn, abort.lun);
            }
        }
    }

    /// Sends the task aborts the SCSI layer queued (PREEMPT AND ABORT) to the connections
    /// of the nexuses concerned; this one's own are carried out at once.
    fn dispatch_aborts(&mut self, conn: &mut iscsi::Connection, target: &Target) {
        for abort in target.scsi.take_task_aborts() {
            if abort.nexus == self.nexus {
                self.abort_lun(conn, abort.lun);
                continue;
            }
            send_task_abort(target, abort);
        }
    }

    /// The metrics of the LUN at `wire` of `target`, when metrics are on and the target
    /// has that LUN (looked up once per session and LUN; a map lookup after that).
    fn lun_metrics(&mut self, target: &Target, wire: u64) -> Option<Arc<LunMetrics>> {
        let m = metrics::global()?;
        if let Some(found) = self.lun_metrics.get(&wire) {
            if !found.is_removed() {
                return Some(found.clone());
            }
            // The LUN left the configuration (perhaps to come back): look it up afresh.
            self.lun_metrics.remove(&wire);
        }
        let lun = u64::from(scsi::decode_lun(wire)?);
        target.store(lun)?;
        let found = m.lun(&target.name, lun);
        self.lun_metrics.insert(wire, found.clone());
        Some(found)
    }

    /// Aborts every command in flight; their stores keep the buffers until they finish.
    fn abort_all(&mut self, conn: &mut iscsi::Connection) {
        for (itt, cmd) in self.in_flight.drain() {
            self.deadlines.finish(cmd.seq);
            conn.abort_command(itt);
        }
        for (itt, _) in self.order.remove_on(|_| true) {
            conn.abort_command(itt);
        }
        self.order = crate::task_order::TaskOrder::default();
    }

    /// Takes a command out of flight (answered or aborted), with its time limit.
    fn forget(&mut self, itt: u32) -> Option<InFlightCommand> {
        let cmd = self.in_flight.remove(&itt)?;
        self.deadlines.finish(cmd.seq);
        if !self.order.is_idle() {
            self.order.left(cmd.lun, itt);
        }
        Some(cmd)
    }

    /// Answers every command whose storage request outlived the time limit.
    fn expire(&mut self, conn: &mut iscsi::Connection, now: Instant) {
        while let Some((itt, seq)) = self.deadlines.pop_expired(now) {
            if self.in_flight.get(&itt).map(|cmd| cmd.seq) != Some(seq) {
                // Cannot happen: finished commands leave the deadlines with in_flight.
                continue;
            }
            let mut cmd = self.in_flight.remove(&itt).expect("checked above");
            if !self.order.is_idle() {
                self.order.left(cmd.lun, itt);
            }
            let op = cmd.op.unwrap_or(Op::Read);
            tracing::warn!(itt, lun = cmd.lun, %op, limit = ?self.limits.command_timeout,
                "storage request exceeded the command time limit; answering ABORTED COMMAND");
            let sense = scsi::sense::from_store_error(&StoreError::new(op, ErrorKind::TimedOut));
            let response = Response::check_condition(sense);
            cmd.answered(&response);
            conn.complete_command(itt, to_iscsi(response));
        }
    }
}

/// Time limits of the commands waiting on a store, earliest first.
///
/// Every command gets the same limit when it starts waiting, so appending keeps the queue
/// sorted. A finished command leaves `live` at once; its queue entry goes at once when it
/// is at the front, else lazily: whenever dead entries outnumber the live ones (plus some
/// slack) the queue is compacted. So the queue never holds more than `2 * outstanding +
/// COMPACT_SLACK` entries, whatever the command rate, at amortised O(1) per command.
#[derive(Default)]
struct Deadlines {
    /// (deadline, command sequence number); the front entry is always live.
    queue: VecDeque<(Instant, u64)>,
    /// Commands with a pending time limit: sequence number to task tag.
    live: foldhash::HashMap<u64, u32>,
}

/// Dead entries tolerated beyond the live count before a compaction.
const COMPACT_SLACK: usize = 64;

impl Deadlines {
    fn push(&mut self, at: Instant, itt: u32, seq: u64) {
        debug_assert!(self.queue.back().is_none_or(|(last, _)| *last <= at));
        if self.live.insert(seq, itt).is_none() {
            self.queue.push_back((at, seq));
        }
    }

    /// The command `seq` no longer needs its time limit (answered or aborted).
    fn finish(&mut self, seq: u64) {
        if self.live.remove(&seq).is_none() {
            return;
        }
        self.drop_dead_front();
        if self.queue.len() > 2 * self.live.len() + COMPACT_SLACK {
            let live = &self.live;
            self.queue.retain(|(_, seq)| live.contains_key(seq));
        }
    }

    /// The earliest pending deadline.
    fn next(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    /// Takes the earliest command whose deadline is at or before `now`: (task tag, seq).
    fn pop_expired(&mut self, now: Instant) -> Option<(u32, u64)> {
        let &(at, seq) = self.queue.front()?;
        if at > now {
            return None;
        }
        self.queue.pop_front();
        let itt = self.live.remove(&seq).expect("the front entry is live");
        self.drop_dead_front();
        Some((itt, seq))
    }

    fn drop_dead_front(&mut self) {
        while let Some((_, seq)) = self.queue.front() {
            if self.live.contains_key(seq) {
                break;
            }
            self.queue.pop_front();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

/// How many of the nexus's commands on wire LUN `lun` have started and not ended.
fn running_on(in_flight: &foldhash::HashMap<u32, InFlightCommand>, lun: u64) -> usize {
    in_flight.values().filter(|cmd| cmd.lun == lun).count()
}

fn to_iscsi(response: Response) -> CommandResponse {
    CommandResponse {
        status: response.status as u8,
        data_in: response.data_in,
        sense: response.sense,
        transfer_len: response.transfer_len,
    }
}

/// Sends every task abort `target`'s SCSI layer queued (a PREEMPT AND ABORT run through
/// another gateway, loaded by `crate::gateways::refresh_target`) to the connection of
/// its nexus; a connection that is gone has no tasks left to abort.
pub fn send_task_aborts(target: &Target) {
    for abort in target.scsi.take_task_aborts() {
        send_task_abort(target, abort);
    }
}

/// Sends one task abort to the connection of its nexus.
fn send_task_abort(target: &Target, abort: scsi::TaskAbort) {
    let to = target
        .nexuses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&abort.nexus)
        .cloned();
    if let Some(to) = to {
        // A connection that is gone has no tasks left to abort.
        let _ = to.send(Control::AbortTasks(abort.lun));
    }
}

/// What a command saves on its LU's store beside the data.
#[derive(Debug, Clone, Copy)]
enum Saved {
    /// Persistent reservations (APTPL).
    Reservations,
    /// Mode pages (MODE SELECT with SP).
    ModePages,
}

impl Saved {
    fn name(self) -> &'static str {
        match self {
            Saved::Reservations => "persistent reservations (APTPL)",
            Saved::ModePages => "mode pages (MODE SELECT with SP)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_moves_once_per_fire_while_commands_come_and_go() {
        // A connection in full feature phase under load: its NOP-In check due 5 s after
        // the last quiet period began, and commands with a 25 s limit starting and
        // finishing every 10 us, so the earliest command limit moves later every round.
        let t0 = Instant::now();
        let nop = t0 + Duration::from_secs(5);
        let mut alarm = Alarm::default();
        let mut moves = Vec::new();
        for round in 0..100_000u64 {
            let now = t0 + Duration::from_micros(10 * round);
            let oldest_command = (round % 3 != 0).then(|| now + Duration::from_secs(25));
            let earliest = [Some(nop), oldest_command].into_iter().flatten().min();
            moves.extend(alarm.due(earliest));
        }
        assert_eq!(moves, [nop], "set once, then left alone");
        assert!(alarm.is_armed());

        // It fires: set again for what is due next, once.
        alarm.fired();
        assert!(!alarm.is_armed());
        let next = nop + Duration::from_secs(5);
        assert_eq!(alarm.due(Some(next)), Some(next));
        assert_eq!(alarm.due(Some(next + Duration::from_secs(20))), None);
        // A limit that comes due before it (a NOP-In ping's answer) moves it earlier.
        let ping = nop + Duration::from_secs(1);
        assert_eq!(alarm.due(Some(ping)), Some(ping));
        assert_eq!(alarm.due(Some(ping)), None);
        // Nothing due: left as it is (it fires early and finds nothing).
        assert_eq!(alarm.due(None), None);
        assert!(alarm.is_armed());
        alarm.fired();
        assert_eq!(alarm.due(None), None);
        assert!(!alarm.is_armed());
    }

    #[test]
    fn deadline_queue_stays_bounded_by_outstanding_commands() {
        let mut q = Deadlines::default();
        let start = Instant::now();
        let limit = Duration::from_secs(25);
        // One slow command stays outstanding at the front while 100 000 others come and go
        // (at 100k IOPS and a 25 s limit the old queue held every one of them).
        q.push(start + limit, 0, 0);
        let mut outstanding: VecDeque<u64> = VecDeque::new();
        for seq in 1..=100_000u64 {
            q.push(start + limit, seq as u32, seq);
            outstanding.push_back(seq);
            // Up to 8 in flight besides the slow one; they finish in varying order.
            if outstanding.len() > 8 {
                let i = (seq as usize * 7) % outstanding.len();
                let done = outstanding.remove(i).unwrap();
                q.finish(done);
            }
            assert!(
                q.len() <= 2 * (outstanding.len() + 1) + COMPACT_SLACK,
                "{} entries for {} outstanding commands",
                q.len(),
                outstanding.len() + 1
            );
        }
        while let Some(seq) = outstanding.pop_front() {
            q.finish(seq);
        }
        assert!(
            q.len() <= 2 + COMPACT_SLACK,
            "{} entries for 1 command",
            q.len()
        );
        assert_eq!(q.pop_expired(start), None, "not due yet");
        assert_eq!(q.pop_expired(start + limit), Some((0, 0)));
        assert_eq!(q.pop_expired(start + limit), None, "the others finished");
        assert_eq!(q.len(), 0);
        assert_eq!(q.next(), None);
    }

    #[test]
    fn deadline_queue_expires_live_commands_in_order_and_skips_finished_ones() {
        let mut q = Deadlines::default();
        let t0 = Instant::now();
        for seq in 0..5u64 {
            q.push(t0 + Duration::from_millis(seq * 10), 100 + seq as u32, seq);
        }
        q.finish(0);
        q.finish(2);
        assert_eq!(q.next(), Some(t0 + Duration::from_millis(10)));
        let now = t0 + Duration::from_millis(30);
        assert_eq!(q.pop_expired(now), Some((101, 1)));
        assert_eq!(q.pop_expired(now), Some((103, 3)));
        assert_eq!(q.pop_expired(now), None);
        assert_eq!(q.next(), Some(t0 + Duration::from_millis(40)));
        q.finish(3); // already expired: no effect
        assert_eq!(q.len(), 1);
    }
}
