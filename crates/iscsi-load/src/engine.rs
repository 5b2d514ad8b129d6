//! The load loop: one thread, `queue_depth` commands in flight, libiscsi's async
//! API driven by `poll()`.

use crate::session::{last_error, Session};
use crate::stats::{Histogram, Report};
use crate::verify::Verifier;
use crate::workload::{Picker, Range, Workload};
use anyhow::{bail, Result};
use libc::{c_int, c_void};
use libiscsi_sys as sys;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// How often the loop wakes up without socket events (to see the clock and let
/// libiscsi scan for timed-out PDUs).
const TICK: Duration = Duration::from_millis(100);

/// How many error descriptions are kept (the count is always exact).
const KEPT_ERRORS: usize = 5;

/// The outcome of one command, recorded by the completion callback.
#[derive(Debug, Clone, Copy)]
struct Done {
    slot: usize,
    status: c_int,
    residual_status: c_int,
    residual: usize,
    sense_key: c_int,
    ascq: c_int,
}

/// What the callback gets as `private_data`: where to record and for which slot.
struct Cookie {
    done: *const RefCell<Vec<Done>>,
    slot: usize,
}

/// Per command slot state (the buffers live in separate stable allocations).
#[derive(Clone, Copy)]
struct Slot {
    busy: bool,
    write: bool,
    /// A SYNCHRONIZE CACHE (verified runs only).
    sync: bool,
    lba: u64,
    started: Instant,
}

/// Completion callback for every command we queue.
///
/// # Safety
/// `private_data` is a `Cookie` of the running [`run`] call and `command_data` the
/// `scsi_task` libiscsi hands over (freed here).
unsafe extern "C" fn on_complete(
    _ctx: *mut sys::iscsi_context,
    status: c_int,
    command_data: *mut c_void,
    private_data: *mut c_void,
) {
    let cookie = &*(private_data as *const Cookie);
    let mut done = Done {
        slot: cookie.slot,
        status,
        residual_status: sys::SCSI_RESIDUAL_NO_RESIDUAL,
        residual: 0,
        sense_key: 0,
        ascq: 0,
    };
    let task = command_data as *mut sys::scsi_task;
    if !task.is_null() {
        done.residual_status = (*task).residual_status;
        done.residual = (*task).residual;
        if status == sys::SCSI_STATUS_CHECK_CONDITION {
            done.sense_key = (*task).sense.key;
            done.ascq = (*task).sense.ascq;
        }
        sys::scsi_free_scsi_task(task);
    }
    // Callbacks only run inside iscsi_service / cancel calls, never while the loop
    // holds the borrow; try_borrow_mut keeps a bug from unwinding into C.
    if let Ok(mut list) = (*cookie.done).try_borrow_mut() {
        list.push(done);
    }
}

/// Describes a failed command for the error log.
fn describe(d: &Done, slot: &Slot) -> String {
    let what = if slot.sync {
        "SYNCHRONIZE CACHE(10)".to_string()
    } else {
        format!(
            "{} lba {}",
            if slot.write { "WRITE(16)" } else { "READ(16)" },
            slot.lba
        )
    };
    match d.status {
        sys::SCSI_STATUS_GOOD => format!(
            "{what}: GOOD but residual {} ({})",
            d.residual,
            if d.residual_status == sys::SCSI_RESIDUAL_UNDERFLOW {
                "underflow"
            } else {
                "overflow"
            }
        ),
        sys::SCSI_STATUS_CHECK_CONDITION => format!(
            "{what}: CHECK CONDITION, sense key {:#x}, ASC/ASCQ {:#06x}",
            d.sense_key, d.ascq
        ),
        sys::SCSI_STATUS_CANCELLED => format!("{what}: cancelled (no response in time)"),
        sys::SCSI_STATUS_TIMEOUT => format!("{what}: timed out"),
        sys::SCSI_STATUS_ERROR => format!("{what}: transport error"),
        other => format!("{what}: SCSI status {other:#x}"),
    }
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// TCP segments carrying data sent so far on `fd` (the kernel's `tcpi_data_segs_out`,
/// a 32-bit counter: a run sends far fewer), or `None` where the kernel does not say.
fn data_segments_out(fd: c_int) -> Option<u32> {
    // SAFETY: an all-zero tcp_info is valid; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_data_segs_out) + 4;
    (rc == 0 && len as usize >= end).then_some(info.tcpi_data_segs_out)
}

/// Sets or clears `TCP_CORK` on `fd`: while set, what is sent waits to fill a segment;
/// clearing it sends what waits.
fn cork(fd: c_int, on: bool) -> std::io::Result<()> {
    let value = c_int::from(on);
    // SAFETY: a valid int option of its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&value as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends what libiscsi has queued now, as few segments as it fits in (see
/// [`Workload::split_writes`]): corked, written, uncorked.
///
/// # Safety
/// `ctx` is a live, logged-in context, used by this thread only.
unsafe fn send_corked(ctx: *mut sys::iscsi_context) -> Result<(), String> {
    let fd = sys::iscsi_get_fd(ctx);
    cork(fd, true).map_err(|e| format!("cannot cork the socket: {e}"))?;
    // Only POLLOUT: libiscsi writes its queue and reads nothing; the one callback it may
    // run, a timed-out command's, records into `done`, which nobody holds borrowed here.
    let written = sys::iscsi_service(ctx, c_int::from(libc::POLLOUT));
    let uncorked = cork(fd, false);
    if written < 0 {
        return Err(format!("connection failed: {}", last_error(ctx)));
    }
    uncorked.map_err(|e| format!("cannot uncork the socket: {e}"))
}

/// Counters of the measured window.
#[derive(Default)]
struct Tally {
    reads: u64,
    writes: u64,
    errors: u64,
    hist: Histogram,
    messages: Vec<String>,
}

impl Tally {
    fn error(&mut self, text: String) {
        self.errors += 1;
        if self.messages.len() < KEPT_ERRORS {
            self.messages.push(text);
        }
    }
}

/// The result of [`run`]: the report, and the first few error descriptions.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The measurements.
    pub report: Report,
    /// Up to five descriptions of failed commands or of the failure that ended
    /// the run early.
    pub error_messages: Vec<String>,
    /// The latencies of the measured window (merged over sessions by
    /// [`crate::run_sessions`]).
    pub latency: Histogram,
}

/// Runs `workload` on `session` and reports what it measured. Fails before
/// issuing anything when the workload does not fit the LUN; a connection lost
/// midway ends the run with the commands it lost counted as errors.
pub fn run(session: &Session, workload: &Workload) -> Result<Outcome> {
    run_verified(session, workload, None)
}

/// [`run`] with data verification: `verifier` (made for this session's range, see
/// [`Verifier::for_session`]) stamps every write and checks every read answered GOOD;
/// its report then holds the wrong blocks. Commands never overlap while verifying.
pub fn run_verified(
    session: &Session,
    workload: &Workload,
    mut verifier: Option<&mut Verifier>,
) -> Result<Outcome> {
    let range = Range::resolve(workload, session.block_size(), session.num_blocks())
        .map_err(anyhow::Error::msg)?;
    if workload.queue_depth == 0 {
        bail!("queue depth must be at least 1");
    }
    if verifier.is_some() && range.slots < 4 * u64::from(workload.queue_depth) {
        bail!(
            "verification needs at least four command slots per queued command: {} slots for queue depth {}",
            range.slots,
            workload.queue_depth
        );
    }
    let qd = workload.queue_depth as usize;
    let bs = workload.block_size as usize;
    let ctx = session.context();
    let lun = session.lun();
    let lun_bs = session.block_size() as c_int;
    let mut picker = Picker::new(workload, range);

    // Stable allocations handed to libiscsi by pointer for the whole run.
    let done = Box::new(RefCell::new(Vec::<Done>::with_capacity(qd)));
    let cookies: Box<[Cookie]> = (0..qd).map(|slot| Cookie { done: &*done, slot }).collect();
    let mut buffers: Vec<Box<[u8]>> = (0..qd)
        .map(|i| {
            // Non-zero, non-repeating write payload (stores may treat zeroes specially).
            let mut b = vec![0u8; bs].into_boxed_slice();
            let mut x = 0x9e37_79b9_u32 ^ (i as u32).wrapping_mul(0x85eb_ca6b);
            for byte in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *byte = x as u8;
            }
            b
        })
        .collect();
    // Raw pointers taken once: from here on only libiscsi touches the buffers.
    let buf_ptrs: Vec<*mut u8> = buffers.iter_mut().map(|b| b.as_mut_ptr()).collect();
    let mut iovs: Box<[sys::scsi_iovec]> = buf_ptrs
        .iter()
        .map(|&p| sys::scsi_iovec {
            iov_base: p as *mut c_void,
            iov_len: bs,
        })
        .collect();
    let iov_ptr = iovs.as_mut_ptr();
    let t0 = Instant::now();
    let mut slots = vec![
        Slot {
            busy: false,
            write: false,
            sync: false,
            lba: 0,
            started: t0,
        };
        qd
    ];

    let fua = verifier.as_deref().is_some_and(Verifier::fua);
    let submit = |slot: usize,
                  slots: &mut [Slot],
                  picker: &mut Picker,
                  verifier: &mut Option<&mut Verifier>|
     -> bool {
        if let Some(v) = verifier.as_deref_mut().filter(|v| v.sync_due()) {
            let cookie = &cookies[slot] as *const Cookie as *mut c_void;
            // SAFETY: ctx is logged in; the cookie lives until the end of `run`.
            let task = unsafe {
                sys::iscsi_synchronizecache10_task(ctx, lun, 0, 0, 0, 0, Some(on_complete), cookie)
            };
            if !task.is_null() {
                v.begin_sync();
            }
            slots[slot] = Slot {
                busy: !task.is_null(),
                write: false,
                sync: true,
                lba: 0,
                started: Instant::now(),
            };
            return !task.is_null();
        }
        let (lba, write) = match verifier.as_deref_mut() {
            Some(v) => match v.pick(picker) {
                Some(next) => next,
                None => return false,
            },
            None => picker.next_io(),
        };
        if let Some(v) = verifier.as_deref_mut() {
            if write {
                // SAFETY: the slot has no command in flight, so libiscsi does not touch
                // its buffer now.
                let buf = unsafe { std::slice::from_raw_parts_mut(buf_ptrs[slot], bs) };
                v.begin_write(lba, buf);
            } else {
                v.begin_read(lba);
            }
        }
        let cookie = &cookies[slot] as *const Cookie as *mut c_void;
        // SAFETY: ctx is logged in; buffer, iovec and cookie live until the end of
        // `run`, which drains or cancels every command before returning.
        let task = unsafe {
            if write {
                sys::iscsi_write16_task(
                    ctx,
                    lun,
                    lba,
                    buf_ptrs[slot],
                    bs as u32,
                    lun_bs,
                    0,
                    0,
                    c_int::from(fua),
                    0,
                    0,
                    Some(on_complete),
                    cookie,
                )
            } else {
                sys::iscsi_read16_iov_task(
                    ctx,
                    lun,
                    lba,
                    bs as u32,
                    lun_bs,
                    0,
                    0,
                    0,
                    0,
                    0,
                    Some(on_complete),
                    cookie,
                    iov_ptr.add(slot),
                    1,
                )
            }
        };
        slots[slot] = Slot {
            busy: !task.is_null(),
            write,
            sync: false,
            lba,
            started: Instant::now(),
        };
        if task.is_null() {
            if let Some(v) = verifier.as_deref_mut() {
                v.abandon(lba, write);
            }
        }
        !task.is_null()
    };

    let mut tally = Tally::default();
    let ramp_end = t0 + workload.ramp;
    let stop_at = ramp_end + workload.duration;
    let give_up_at = stop_at + workload.drain_timeout;
    let mut measuring = workload.ramp.is_zero();
    let mut window_start = t0;
    let mut window_cpu = cpu_time();
    // SAFETY: ctx is live.
    let fd = || unsafe { sys::iscsi_get_fd(ctx) };
    // The socket and its count at the window's start (a reconnect opens another).
    let mut window_segments = (fd(), data_segments_out(fd()));
    let mut last_completion = t0;
    let mut in_flight = 0usize;
    let mut fatal: Option<String> = None;
    let mut batch: Vec<Done> = Vec::with_capacity(qd);

    let send_now = |slots: &[Slot], slot: usize| -> Result<(), String> {
        if workload.split_writes || !slots[slot].write {
            return Ok(());
        }
        // SAFETY: ctx is live and logged in; this thread is its only user.
        unsafe { send_corked(ctx) }
    };
    for slot in 0..qd {
        if submit(slot, &mut slots, &mut picker, &mut verifier) {
            in_flight += 1;
            if let Err(e) = send_now(&slots, slot) {
                // Commands are in flight: the loop below cancels them and ends.
                fatal = Some(e);
                break;
            }
        } else {
            tally.error(format!("cannot queue a command: {}", last_error(ctx)));
        }
    }
    if in_flight == 0 {
        bail!("no command could be queued: {}", last_error(ctx));
    }

    loop {
        let mut last_round = false;
        let now = Instant::now();
        if !measuring && now >= ramp_end {
            measuring = true;
            window_start = now;
            window_cpu = cpu_time();
            window_segments = (fd(), data_segments_out(fd()));
            tally = Tally::default();
        }
        if now >= stop_at && in_flight == 0 {
            break;
        }
        if now >= give_up_at || fatal.is_some() {
            if fatal.is_none() {
                fatal = Some(format!(
                    "{in_flight} command(s) still in flight {:?} after the end; cancelled",
                    workload.drain_timeout
                ));
            }
            // Every callback runs now with SCSI_STATUS_CANCELLED.
            // SAFETY: ctx is live; the callbacks record into `done`.
            unsafe { sys::iscsi_scsi_cancel_all_tasks(ctx) };
            last_round = true;
        } else {
            let next_deadline = if now < ramp_end {
                ramp_end
            } else if now < stop_at {
                stop_at
            } else {
                give_up_at
            };
            let wait = TICK.min(next_deadline.saturating_duration_since(now));
            // SAFETY: ctx is live.
            let events = unsafe { sys::iscsi_which_events(ctx) };
            let revents = if events == 0 {
                std::thread::sleep(wait);
                0
            } else {
                let mut pfd = libc::pollfd {
                    // SAFETY: ctx is live.
                    fd: unsafe { sys::iscsi_get_fd(ctx) },
                    events: events as libc::c_short,
                    revents: 0,
                };
                let ms = wait.as_millis().max(1) as c_int;
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut pfd, 1, ms) };
                if n < 0 {
                    let err = std::io::Error::last_os_error();
                    if err.kind() != std::io::ErrorKind::Interrupted {
                        bail!("poll failed: {err}");
                    }
                    0
                } else if n == 0 {
                    0
                } else {
                    c_int::from(pfd.revents)
                }
            };
            // SAFETY: ctx is live; callbacks record into `done`.
            if unsafe { sys::iscsi_service(ctx, revents) } < 0 {
                fatal = Some(format!("connection failed: {}", last_error(ctx)));
            }
        }

        std::mem::swap(&mut *done.borrow_mut(), &mut batch);
        let now = Instant::now();
        // Writes queued again in this round and not sent yet: while the round has queued
        // no read they wait, to go out together, corked, once the round's completions
        // are worked through (one flush instead of one per write, as a kernel initiator
        // under load coalesces its sends). A read sends them with itself at once, and
        // the rest of that round's writes go one by one: a read held back to the end of
        // the round would make the two ends take turns (twenty-fourth round).
        let mut deferred = false;
        let mut read_seen = false;
        for d in batch.drain(..) {
            let slot = slots[d.slot];
            if !slot.busy {
                continue;
            }
            slots[d.slot].busy = false;
            in_flight -= 1;
            last_completion = now;
            let ok = d.status == sys::SCSI_STATUS_GOOD
                && (d.residual_status == sys::SCSI_RESIDUAL_NO_RESIDUAL || d.residual == 0);
            if let Some(v) = verifier.as_deref_mut() {
                if slot.sync {
                    v.end_sync(ok);
                } else if slot.write {
                    v.end_write(slot.lba, ok);
                } else {
                    // SAFETY: the command completed; libiscsi is done with the buffer.
                    let data = unsafe { std::slice::from_raw_parts(buf_ptrs[d.slot], bs) };
                    v.end_read(slot.lba, ok, data);
                }
            }
            if measuring {
                tally
                    .hist
                    .record(now.saturating_duration_since(slot.started));
                if slot.sync {
                    // Neither a read nor a write; its latency and errors count.
                } else if slot.write {
                    tally.writes += 1;
                } else {
                    tally.reads += 1;
                }
                if !ok {
                    tally.error(describe(&d, &slot));
                }
            }
            if now < stop_at && fatal.is_none() {
                if submit(d.slot, &mut slots, &mut picker, &mut verifier) {
                    in_flight += 1;
                    let write = slots[d.slot].write;
                    let r = if workload.split_writes || read_seen {
                        send_now(&slots, d.slot)
                    } else if write {
                        deferred = true;
                        Ok(())
                    } else {
                        read_seen = true;
                        if std::mem::take(&mut deferred) {
                            // SAFETY: ctx is live and logged in; this thread is its only user.
                            unsafe { send_corked(ctx) }
                        } else {
                            Ok(())
                        }
                    };
                    if let Err(e) = r {
                        fatal = Some(e);
                    }
                } else {
                    tally.error(format!("cannot queue a command: {}", last_error(ctx)));
                }
            }
        }
        if deferred {
            // SAFETY: ctx is live and logged in; this thread is its only user.
            if let Err(e) = unsafe { send_corked(ctx) } {
                fatal = Some(e);
            }
        }
        if last_round {
            break;
        }
        if in_flight == 0 && Instant::now() < stop_at && fatal.is_none() {
            // Commands went out before this (writes may have landed): the run ends with
            // its report, so that a verified one still says what each slot may hold.
            fatal = Some(format!(
                "every command slot failed to queue: {}",
                tally.messages.last().cloned().unwrap_or_default()
            ));
        }
    }

    let elapsed = if measuring {
        last_completion.max(window_start) - window_start
    } else {
        Duration::ZERO
    };
    if let Some(v) = verifier {
        // Writes never answered may or may not have landed.
        for s in slots.iter().filter(|s| s.busy) {
            if s.sync {
                v.end_sync(false);
            } else {
                v.abandon(s.lba, s.write);
            }
        }
    }
    let mut messages = std::mem::take(&mut tally.messages);
    if let Some(f) = fatal {
        // The failure itself, and any command it swallowed without a callback.
        tally.errors += 1 + in_flight as u64;
        messages.insert(0, f);
        messages.truncate(KEPT_ERRORS);
    }
    let report = Report::new(
        workload.rw,
        workload.block_size,
        workload.queue_depth,
        tally.reads,
        tally.writes,
        tally.errors,
        elapsed,
        &tally.hist,
    )
    .with_cpu(cpu_time().saturating_sub(window_cpu), elapsed)
    .with_segments_out(match window_segments {
        (start_fd, Some(start)) if start_fd == fd() => {
            // Fewer than at the start: another socket got the same number.
            data_segments_out(start_fd)
                .and_then(|end| end.checked_sub(start))
                .map(u64::from)
        }
        _ => None,
    });
    if in_flight == 0 {
        // Nothing is in flight: libiscsi holds no pointer into these any more.
        drop(iovs);
        drop(buffers);
        drop(cookies);
        drop(done);
    } else {
        // libiscsi may still call back into these (at the latest when the context
        // is destroyed): keep them alive for the rest of the process.
        std::mem::forget((iovs, buffers, cookies, done));
    }
    Ok(Outcome {
        report,
        error_messages: messages,
        latency: tally.hist,
    })
}
