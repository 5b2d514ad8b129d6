//! Drives one iSCSI connection: socket bytes in, PDUs out, commands to the SCSI layer,
//! storage requests to the stores, completions back.
//!
//! One tokio task per connection; no task or thread per command. Store completions arrive
//! on whatever thread the store finishes on and are sent to this task over a channel.

use crate::targets::{Target, Targets};
use bytes::BytesMut;
use iscsi::{CommandResponse, Event, ScsiCommand, SessionType};
use scsi::{Command, NexusId, Pending, Response, Start};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store_api::{Completion, ErrorKind, IoResult, Op, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Numbers I_T nexuses (one per session for now).
static NEXUS_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A storage request finished.
struct IoDone {
    itt: u32,
    pending: Pending,
    result: IoResult,
}

/// A command handed to the SCSI layer and not yet answered.
struct InFlightCommand {
    /// Wire LUN, for task management by LUN.
    lun: u64,
    /// Distinguishes this command from a later one that reuses its task tag.
    seq: u64,
    /// The storage operation it waits on, if any (for the time-out answer).
    op: Option<Op>,
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A command whose storage request has not finished by then is answered with CHECK
    /// CONDITION, ABORTED COMMAND / LOGICAL UNIT COMMUNICATION TIME-OUT; the store keeps
    /// the request's buffers until it finishes. `None`: no limit.
    pub command_timeout: Option<Duration>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        // Below the 30 s a Linux initiator waits before it aborts the command itself, so the
        // initiator gets a retryable answer rather than an abort and a session recovery.
        ConnectionLimits {
            command_timeout: Some(Duration::from_secs(25)),
        }
    }
}

/// Serves one connection until logout, error or EOF.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    targets: Arc<Targets>,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let mut conn = iscsi::Connection::new(targets.iscsi.clone());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<IoDone>();
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut output = BytesMut::with_capacity(64 * 1024);
    let mut session = Session {
        target: None,
        nexus: 0,
        in_flight: HashMap::new(),
        next_seq: 0,
        deadlines: VecDeque::new(),
        limits,
    };

    loop {
        let next_deadline = session.deadlines.front().map(|(at, _, _)| *at);
        tokio::select! {
            _ = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)),
                if next_deadline.is_some() => {
                session.expire(&mut conn, Instant::now());
            }
            read = reader.read_buf(&mut input) => {
                match read {
                    Ok(0) => {
                        tracing::debug!(%peer, "connection closed by initiator");
                        break;
                    }
                    Ok(_) => {
                        if let Err(err) = conn.handle_input(&mut input) {
                            tracing::warn!(%peer, %err, "closing connection: protocol error");
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::debug!(%peer, %err, "connection read failed");
                        break;
                    }
                }
            }
            Some(done) = done_rx.recv() => {
                session.io_done(&mut conn, &done_tx, done);
                // Take every completion that is already there, so their responses go out
                // in one socket write.
                while let Ok(done) = done_rx.try_recv() {
                    session.io_done(&mut conn, &done_tx, done);
                }
            }
        }
        while let Some(event) = conn.poll_event() {
            session.handle_event(&mut conn, &done_tx, &targets, peer, event);
        }
        conn.poll_transmit(&mut output);
        if !output.is_empty() {
            writer.write_all(&output).await?;
            output.clear();
        }
        if conn.is_finished() {
            break;
        }
    }
    if !session.in_flight.is_empty() {
        tracing::debug!(%peer, count = session.in_flight.len(),
            "connection ends with commands in flight; their stores still own the buffers");
    }
    Ok(())
}

struct Session {
    target: Option<Arc<Target>>,
    nexus: NexusId,
    in_flight: HashMap<u32, InFlightCommand>,
    next_seq: u64,
    /// Time limits of commands in start order (all share one limit, so this is sorted).
    deadlines: VecDeque<(Instant, u32, u64)>,
    limits: ConnectionLimits,
}

impl Session {
    fn handle_event(
        &mut self,
        conn: &mut iscsi::Connection,
        done_tx: &mpsc::UnboundedSender<IoDone>,
        targets: &Targets,
        peer: SocketAddr,
        event: Event,
    ) {
        match event {
            Event::LoggedIn {
                initiator,
                target,
                session_type,
                ..
            } => {
                self.nexus = NEXUS_COUNTER.fetch_add(1, Ordering::Relaxed);
                if session_type == SessionType::Normal {
                    self.target = targets.get(&target);
                }
                tracing::info!(%peer, %initiator, %target, ?session_type, "login");
            }
            Event::Command(cmd) => self.start_command(conn, done_tx, cmd),
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
        done_tx: &mpsc::UnboundedSender<IoDone>,
        cmd: ScsiCommand,
    ) {
        let Some(target) = self.target.clone() else {
            // The iSCSI core only delivers commands on normal sessions, which have a target.
            tracing::error!(itt = cmd.itt, "SCSI command without a target; dropping it");
            return;
        };
        let itt = cmd.itt;
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
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.insert(
            itt,
            InFlightCommand {
                lun: cmd.lun,
                seq,
                op: None,
            },
        );
        let start = target.scsi.start(Command {
            nexus: self.nexus,
            lun: cmd.lun,
            cdb: cmd.cdb,
            data_out: cmd.data_out,
            expected_len: cmd.expected_len,
        });
        self.advance(conn, done_tx, &target, itt, start);
    }

    fn io_done(
        &mut self,
        conn: &mut iscsi::Connection,
        done_tx: &mpsc::UnboundedSender<IoDone>,
        done: IoDone,
    ) {
        let Some(target) = self.target.clone() else {
            return;
        };
        if !self.in_flight.contains_key(&done.itt) {
            // Aborted while the store held it; the store has now let go of the buffers.
            return;
        }
        let next = done.pending.finish(done.result);
        self.advance(conn, done_tx, &target, done.itt, next);
    }

    /// Runs a command forward until it waits on a store or is done.
    fn advance(
        &mut self,
        conn: &mut iscsi::Connection,
        done_tx: &mpsc::UnboundedSender<IoDone>,
        target: &Target,
        itt: u32,
        start: Start,
    ) {
        match start {
            Start::Done(response) => {
                self.in_flight.remove(&itt);
                conn.complete_command(itt, to_iscsi(response));
            }
            Start::Io {
                lun,
                request,
                pending,
            } => {
                if let Some(cmd) = self.in_flight.get_mut(&itt) {
                    if cmd.op.is_none() {
                        if let Some(limit) = self.limits.command_timeout {
                            self.deadlines
                                .push_back((Instant::now() + limit, itt, cmd.seq));
                        }
                    }
                    cmd.op = Some(request.op());
                }
                let Some(store) = target.store(lun) else {
                    // The SCSI layer only asks for I/O on LUNs it knows, which all have stores.
                    tracing::error!(lun, "storage request for a LUN without a store");
                    let next = pending.finish(Err(store_api::StoreError::new(
                        request.op(),
                        store_api::ErrorKind::Io,
                    )));
                    return self.advance(conn, done_tx, target, itt, next);
                };
                let tx = done_tx.clone();
                store.submit(
                    request,
                    Completion::new(move |result| {
                        // The receiver is gone only if the connection ended; then nobody
                        // waits for this answer.
                        let _ = tx.send(IoDone {
                            itt,
                            pending,
                            result,
                        });
                    }),
                );
            }
        }
    }

    /// Carries out a task management function and returns its iSCSI response code.
    fn task_management(
        &mut self,
        conn: &mut iscsi::Connection,
        tmf: &iscsi::TaskManagementRequest,
    ) -> u8 {
        const FUNCTION_COMPLETE: u8 = 0;
        const TASK_DOES_NOT_EXIST: u8 = 1;
        const NOT_SUPPORTED: u8 = 5;
        match tmf.function {
            // ABORT TASK
            1 => {
                if self.in_flight.remove(&tmf.referenced_itt).is_some() {
                    conn.abort_command(tmf.referenced_itt);
                    FUNCTION_COMPLETE
                } else {
                    TASK_DOES_NOT_EXIST
                }
            }
            // ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET: every task on the LUN.
            2 | 3 | 5 => {
                let lun = tmf.lun;
                let doomed: Vec<u32> = self
                    .in_flight
                    .iter()
                    .filter(|(_, cmd)| cmd.lun == lun)
                    .map(|(itt, _)| *itt)
                    .collect();
                for itt in doomed {
                    self.in_flight.remove(&itt);
                    conn.abort_command(itt);
                }
                FUNCTION_COMPLETE
            }
            // TARGET WARM RESET, TARGET COLD RESET: everything on this session.
            6 | 7 => {
                for (itt, _) in self.in_flight.drain() {
                    conn.abort_command(itt);
                }
                FUNCTION_COMPLETE
            }
            _ => NOT_SUPPORTED,
        }
    }
}

impl Session {
    /// Answers every command whose storage request outlived the time limit.
    fn expire(&mut self, conn: &mut iscsi::Connection, now: Instant) {
        while let Some(&(at, itt, seq)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            let expired = self.in_flight.get(&itt).map_or(false, |cmd| cmd.seq == seq);
            if !expired {
                continue; // finished in time, or its tag now belongs to a newer command
            }
            let cmd = self.in_flight.remove(&itt).expect("checked above");
            let op = cmd.op.unwrap_or(Op::Read);
            tracing::warn!(itt, lun = cmd.lun, %op, limit = ?self.limits.command_timeout,
                "storage request exceeded the command time limit; answering ABORTED COMMAND");
            let sense = scsi::sense::from_store_error(&StoreError::new(op, ErrorKind::TimedOut));
            conn.complete_command(itt, to_iscsi(Response::check_condition(sense)));
        }
    }
}

fn to_iscsi(response: Response) -> CommandResponse {
    CommandResponse {
        status: response.status as u8,
        data_in: response.data_in,
        sense: response.sense,
        transfer_len: response.transfer_len,
    }
}
