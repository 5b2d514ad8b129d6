//! `glfs`: a file on a Gluster volume through libgfapi's async calls (real or the fake).
//! Completions run on gfapi's callback thread.
//!
//! # Lost connections (field failure #11)
//!
//! A request that fails with a connection-class errno (ENOTCONN, ECONNRESET, ...: whatever
//! [`StoreError::from_errno`] calls [`ErrorKind::NotConnected`]) is reported as
//! `NotConnected` (the SCSI layer turns that into NOT READY, which initiators retry) and
//! starts one background reconnect of the volume:
//!
//! * Stores on one volume (same library, volume and servers) share a [`Mount`]: one
//!   `glfs_t` for all of them. A reconnect replaces that `glfs_t` for every store on it, so
//!   one lost connection gives one reconnect loop, not one per store or per request.
//! * The loop runs on a thread of its own (`glfs-reconnect`): a fresh `glfs_t`
//!   (`glfs_new`, the servers, those that answer a TCP probe first (`probe`), logging,
//!   `glfs_init` on a helper thread, given up after the mount timeout), then every
//!   store's file is opened again. Attempts back off from
//!   100 ms, doubling to 5 s, and each one is logged. A `glfs_init` that hangs is
//!   abandoned after the timeout and left to finish on its helper thread; at most two such
//!   attempts run at once.
//! * While a store has no file, its requests are *held* (bsopt `hold=SECS`, default 15 s,
//!   below the 30 s after which initiators give up on a command): they wait in a bounded
//!   queue ([`MAX_HELD`] requests, [`MAX_HELD_BYTES`] of write data) and go to the new file
//!   as soon as the reconnect publishes it, so an outage shorter than the hold costs
//!   latency, not errors. A request that fails with a connection-class errno on the lost
//!   handle is held the same way (its buffer is still owned by the request). A request
//!   still held when its hold (counted from its first submission) runs out, or that finds
//!   the queue full, fails with `NotConnected`, which initiators retry; with `hold=0`
//!   every request fails at once, as before. While requests are held the reconnect loop
//!   backs off at most [`HOLD_BACKOFF_MAX`], so recovery follows the outage closely.
//!   When the new file is ready it is swapped in under a lock held only to clone an `Arc`
//!   on the I/O path.
//! * A store that took the data fence (`BlockStore::fence_data`: active/passive failover)
//!   sends requests that change the medium only to the file of the mount it took the fence
//!   on. Gluster drops the fence with the old mount's connection, so a write held across a
//!   reconnect (or submitted after it) fails with `ErrorKind::Fenced` (NOT READY 04h/0Ah,
//!   retryable) instead of being resent unfenced; the gateway steps down and writes again
//!   once it has taken the fence on the new mount. Reads and flushes are resent.
//! * Requests already in flight on the old handle finish normally; their buffers and the
//!   old file stay owned by the request until its callback. The old `glfs_t` is dropped
//!   (`glfs_close`, `glfs_fini`, which can take seconds) on a thread of its own, never on
//!   gfapi's callback thread.
//! * Writes gfapi acknowledged (write-behind) but no flush covered when the connection
//!   went may never reach the volume, and the old fd that would report it is dropped
//!   with the old mount: the store's next flush fails with a medium error instead
//!   (`crate::unflushed`), so a host's SYNCHRONIZE CACHE never vouches for them.
//! * [`GlfsStore::connection_state`], [`GlfsStore::generation`] and
//!   [`GlfsStore::reconnect_attempts`] show where a store stands.

use crate::unflushed::Unflushed;
use bytes::Bytes;
use gfapi::{File, Gfapi, IoError, Server, Volume};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};
use store_api::{
    check_range, BlockStore, BufferPool, Capabilities, Completion, CopySource, ErrorKind, Geometry,
    IoReply, IoRequest, LockError, LockMode, LockOwner, LockWait, MetadataLock, Op, StoreError,
};

/// Zeroes written where gfapi cannot zerofill or discard (static, so never copied or freed).
static ZEROES: [u8; 4 << 20] = [0; 4 << 20];

/// First wait between reconnect attempts.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most abandoned (hung) `glfs_init` attempts of one mount alive at once.
const MAX_HUNG_ATTEMPTS: usize = 2;
/// Longest wait between reconnect attempts while requests are held.
pub const HOLD_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Most requests one store holds during an outage (64 sessions at queue depth 32 fit).
pub const MAX_HELD: usize = 4096;
/// Most write data one store holds during an outage.
pub const MAX_HELD_BYTES: usize = 256 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drops `what` on a short-lived thread of its own: `glfs_close`/`glfs_fini` can take
/// seconds and must not run on gfapi's callback thread or an I/O submitter.
pub(crate) fn retire<T: Send + 'static>(what: T) {
    let spawned = std::thread::Builder::new()
        .name("glfs-retire".into())
        .spawn(move || drop(what));
    if let Err(e) = spawned {
        tracing::error!("cannot start a thread to close a gfapi mount: {e}");
    }
}

/// Drops a reference, retiring the value on its own thread if this was the last one.
fn let_go<T: Send + Sync + 'static>(a: Arc<T>) {
    if let Some(inner) = Arc::into_inner(a) {
        retire(inner);
    }
}

fn is_connection_errno(errno: i32) -> bool {
    StoreError::from_errno(Op::Open, errno).kind == ErrorKind::NotConnected
}

/// Whether a store currently has a usable connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Requests go to gfapi.
    Connected,
    /// The connection was lost; requests fail with `NotConnected` until a background
    /// reconnect succeeds.
    Reconnecting,
}

/// Everything needed to make (or remake) a mount of a volume.
#[derive(Debug, Clone)]
pub(crate) struct MountParams {
    pub lib: Arc<Gfapi>,
    pub volume: String,
    pub servers: Vec<Server>,
    pub logfile: Option<PathBuf>,
    pub loglevel: i32,
    /// Client translator options set before every mount.
    pub xlator_options: Vec<gfapi::XlatorOption>,
    /// gfapi's threads of the mount run under `SCHED_BATCH` (bsopt `batch-sched`, on by
    /// default; see the `sched` module).
    pub batch_sched: bool,
    /// The mount's event threads follow the CPUs requests are submitted from (bsopt
    /// `follow-cpu`, on by default; `gfapi::follow`).
    pub follow_cpu: bool,
    /// How long one `glfs_init` may take before the attempt is given up.
    pub timeout: Duration,
}

/// Connects on a helper thread and waits at most `params.timeout`; `Err(None)` is a
/// timeout. `shared` uses gfapi's mount registry (first mount); otherwise a fresh `glfs_t`
/// is made (reconnect: the registry would hand back the broken one). An abandoned attempt
/// keeps its thread, counted in `hung` until it finishes; its mount, if it ever succeeds,
/// is dropped again on that thread.
fn connect_with_timeout(
    params: &MountParams,
    shared: bool,
    hung: &Arc<AtomicUsize>,
) -> Result<Arc<Volume>, Option<gfapi::Error>> {
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let p = params.clone();
    let (helper_tx, helper_hung) = (tx.clone(), hung.clone());
    std::thread::Builder::new()
        .name("glfs-mount".into())
        .spawn(move || {
            if p.batch_sched {
                // gfapi starts its threads (event threads, timer, syncop) from the thread
                // that calls glfs_new/glfs_init, and they inherit its policy.
                if let Err(e) = crate::sched::batch_current_thread() {
                    tracing::warn!("cannot put gfapi's threads under SCHED_BATCH: {e}");
                }
            }
            let logfile = p.logfile.as_deref();
            // A silent first server would hold glfs_init for minutes (see `probe`).
            let servers = crate::probe::reachable_first(&p.servers, crate::probe::PROBE_TIMEOUT);
            let r = if shared {
                Volume::shared_with(
                    &p.lib,
                    &p.volume,
                    &servers,
                    logfile,
                    p.loglevel,
                    &p.xlator_options,
                )
            } else {
                Volume::connect_with(
                    &p.lib,
                    &p.volume,
                    &servers,
                    logfile,
                    p.loglevel,
                    &p.xlator_options,
                )
                .map(Arc::new)
            };
            if let (Ok(vol), true) = (&r, p.follow_cpu) {
                vol.follow_submitters();
            }
            match lock(&helper_tx).take() {
                Some(tx) => {
                    let _ = tx.send(r);
                }
                None => {
                    // The caller gave up; dropping the volume here unmounts it again.
                    drop(r);
                    helper_hung.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })
        .map_err(|e| {
            Some(gfapi::Error::Call {
                call: "glfs_init",
                errno: e.raw_os_error().unwrap_or(libc::EAGAIN),
            })
        })?;
    match rx.recv_timeout(params.timeout) {
        Ok(r) => r.map_err(Some),
        Err(_) => {
            // Decide under the sender's lock whether the helper already answered.
            let mut tx = lock(&tx);
            if tx.take().is_none() {
                drop(tx);
                if let Ok(r) = rx.try_recv() {
                    return r.map_err(Some);
                }
                return Err(None);
            }
            hung.fetch_add(1, Ordering::SeqCst);
            Err(None)
        }
    }
}

/// A mount of one volume shared by every store on it, and its reconnect state.
pub(crate) struct Mount {
    params: MountParams,
    state: Mutex<MountState>,
    changed: Condvar,
    /// Abandoned `glfs_init` attempts still running.
    hung: Arc<AtomicUsize>,
    /// Requests held by the stores on this mount (the reconnect loop hurries while any is).
    held: AtomicUsize,
    /// Stores on this mount ([`Link`]s not yet dropped). When the last one goes, a mount
    /// of the registry lingers (`crate::linger`) instead of being finished at once.
    stores: AtomicUsize,
    /// `glfs_volume{volume}`: the context of the mount's own events (loss, reconnect). A
    /// root span: many LUNs and sessions share one mount.
    span: tracing::Span,
}

struct MountState {
    /// The live volume; `None` while the connection is lost and not yet replaced.
    vol: Option<Arc<Volume>>,
    /// 0 for the first mount, one more for each volume a reconnect put in its place.
    generation: u64,
    /// A reconnect loop is running.
    reconnecting: bool,
    /// The volume the running loop published was lost again; the loop must start over.
    broken: bool,
    /// When the connection was found lost, until the reconnect brings the volume back.
    lost_at: Option<Instant>,
    /// `glfs_init` attempts made by reconnect loops.
    attempts: u64,
    /// Openers waiting in [`Mount::volume`] (a loop keeps going for them even when no
    /// store is left on the mount).
    waiters: usize,
    /// The stores on this mount.
    links: Vec<Weak<Link>>,
}

/// The open file of a store, and the mount generation it was opened on.
#[derive(Clone)]
struct Handle {
    file: Arc<File>,
    generation: u64,
}

/// One store's place on a mount.
struct Link {
    mount: Arc<Mount>,
    path: String,
    /// The flags the file is opened with (and reopened with after a reconnect):
    /// `O_RDWR`, plus `O_DIRECT` in coherent mode (`crate::coherent`).
    open_flags: i32,
    /// `None` while disconnected. The lock is held only to clone or replace the handle.
    current: RwLock<Option<Handle>>,
    /// Acknowledged writes not yet covered by a flush (`crate::unflushed`); `None` in
    /// coherent mode, where gfapi caches no write.
    unflushed: Option<Arc<Unflushed>>,
    /// How long a request may wait for a reconnect (zero: not at all).
    hold: Duration,
    /// How long the mount stays up, idle, when this store was the last on it (bsopt
    /// `linger`; zero: it is finished as soon as the last store goes, see `crate::linger`).
    linger: Duration,
    /// The mount generation this store last took the data fence on
    /// ([`BlockStore::fence_data`]), [`NEVER_FENCED`] until it first does. Once fenced, a
    /// request that changes the medium goes only to the file of that generation: one held
    /// across a reconnect (or sent after it) fails as [`ErrorKind::Fenced`] instead of
    /// landing on a new mount where this gateway does not hold the fence, until the fence
    /// is taken again there.
    fenced_on: AtomicU64,
    /// Requests waiting for a reconnect. Lock order: `held`, then `current`.
    held: Mutex<Held>,
    /// Wakes the expiry thread when the queue changes.
    held_changed: Condvar,
    /// `glfs_store{volume, path}`, a child of the span current when the store was opened
    /// (the daemon's `lun{target, lun}`): the context of the store's events on threads
    /// that serve no single session (reconnect, hold expiry).
    span: tracing::Span,
}

/// A request waiting for the store's file to come back.
struct HeldRequest {
    req: IoRequest,
    done: Completion,
    /// When it stops waiting and fails with `NotConnected`.
    deadline: Instant,
    /// The span current when it was submitted (the daemon's session span).
    span: tracing::Span,
}

#[derive(Default)]
struct Held {
    queue: VecDeque<HeldRequest>,
    /// Write data in `queue`.
    bytes: usize,
    /// An expiry thread is watching `queue`.
    watched: bool,
}

fn request_bytes(req: &IoRequest) -> usize {
    match req {
        IoRequest::Write { data, .. } => data.len(),
        _ => 0,
    }
}

fn not_connected(req: &IoRequest) -> StoreError {
    StoreError::from_errno(req.op(), libc::ENOTCONN)
}

/// `Link::fenced_on` of a store that never took the data fence (no failover: every
/// request goes to whichever file the store has).
const NEVER_FENCED: u64 = u64::MAX;

/// Whether `req` changes the medium (what a data fence is there to keep out).
fn changes_medium(req: &IoRequest) -> bool {
    matches!(
        req,
        IoRequest::Write { .. }
            | IoRequest::Discard { .. }
            | IoRequest::WriteZeroes { .. }
            | IoRequest::Copy { .. }
    )
}

impl Link {
    fn new(
        mount: &Arc<Mount>,
        path: String,
        open_flags: i32,
        hold: Duration,
        linger: Duration,
    ) -> Link {
        mount.stores.fetch_add(1, Ordering::SeqCst);
        let span = tracing::info_span!(
            "glfs_store",
            volume = %mount.params.volume,
            path = %path,
        );
        Link {
            span,
            mount: mount.clone(),
            path,
            open_flags,
            current: RwLock::new(None),
            unflushed: (open_flags & libc::O_DIRECT == 0).then(Default::default),
            hold,
            linger,
            fenced_on: AtomicU64::new(NEVER_FENCED),
            held: Mutex::new(Held::default()),
            held_changed: Condvar::new(),
        }
    }

    /// Makes `h` the store's file and sends every held request to it.
    fn publish(self: &Arc<Self>, h: Handle) {
        let waiting = {
            let mut held = lock(&self.held);
            self.set(Some(h.clone()));
            held.bytes = 0;
            let waiting = std::mem::take(&mut held.queue);
            self.mount.held.fetch_sub(waiting.len(), Ordering::SeqCst);
            self.held_changed.notify_all();
            waiting
        };
        if !waiting.is_empty() {
            self.span.in_scope(|| {
                tracing::info!(
                    requests = waiting.len(),
                    "reconnected: resuming held requests"
                )
            });
        }
        for w in waiting {
            start_io(self, h.clone(), w.req, w.done, w.deadline, w.span);
        }
    }

    /// Holds `req` until the file is back or `deadline`; sends it at once when the file is
    /// already back, fails it when the hold is over or the queue is full.
    fn hold(
        self: &Arc<Self>,
        req: IoRequest,
        done: Completion,
        deadline: Instant,
        span: tracing::Span,
    ) {
        let mut held = lock(&self.held);
        if let Some(h) = self.handle() {
            drop(held);
            return start_io(self, h, req, done, deadline, span);
        }
        let bytes = request_bytes(&req);
        if Instant::now() >= deadline
            || held.queue.len() >= MAX_HELD
            || held.bytes + bytes > MAX_HELD_BYTES
        {
            drop(held);
            span.in_scope(|| {
                tracing::debug!(volume = %self.mount.params.volume, path = %self.path,
                "volume not connected and the hold is over or full: request failed")
            });
            return done.complete(Err(not_connected(&req)));
        }
        held.queue.push_back(HeldRequest {
            req,
            done,
            deadline,
            span,
        });
        held.bytes += bytes;
        self.mount.held.fetch_add(1, Ordering::SeqCst);
        if held.watched {
            self.held_changed.notify_all();
            return;
        }
        held.watched = true;
        drop(held);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("glfs-hold".into())
            .spawn(move || me.expire_loop());
        if let Err(e) = spawned {
            self.span.in_scope(|| {
                tracing::error!("cannot start the thread that ends held requests: {e}")
            });
            // Without it nothing would end them on time: fail them now.
            let mut held = lock(&self.held);
            held.watched = false;
            let failed = self.take_expired(&mut held, None);
            drop(held);
            self.finish_expired(failed);
        }
    }

    /// Removes the held requests whose deadline is before `now` (all of them for `None`).
    fn take_expired(&self, held: &mut Held, now: Option<Instant>) -> Vec<HeldRequest> {
        let (expired, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut held.queue)
            .into_iter()
            .partition(|w| now.is_none_or(|now| w.deadline <= now));
        held.queue = kept;
        held.bytes = held.queue.iter().map(|w| request_bytes(&w.req)).sum();
        self.mount.held.fetch_sub(expired.len(), Ordering::SeqCst);
        expired.into()
    }

    /// Fails held requests as their holds run out; ends when none is left.
    fn expire_loop(self: Arc<Self>) {
        let _in_store = self.span.clone().entered();
        let mut held = lock(&self.held);
        loop {
            let failed = self.take_expired(&mut held, Some(Instant::now()));
            if !failed.is_empty() {
                drop(held);
                tracing::warn!(
                    requests = failed.len(),
                    "still not reconnected after the hold time: failing held requests"
                );
                self.finish_expired(failed);
                held = lock(&self.held);
                continue;
            }
            let Some(next) = held.queue.iter().map(|w| w.deadline).min() else {
                held.watched = false;
                return;
            };
            let wait = next.saturating_duration_since(Instant::now());
            held = self
                .held_changed
                .wait_timeout(held, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Fails held requests, each with a line in its own command's span.
    fn finish_expired(&self, failed: Vec<HeldRequest>) {
        for w in failed {
            w.span.in_scope(|| {
                tracing::debug!(volume = %self.mount.params.volume, path = %self.path,
                "held request failed: the volume was not back within the hold time")
            });
            let e = not_connected(&w.req);
            w.done.complete(Err(e));
        }
    }

    fn handle(&self) -> Option<Handle> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, h: Option<Handle>) -> Option<Handle> {
        std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            h,
        )
    }
}

/// `mount`, which a failed open leaves, lingers for `linger` if no store is on it.
pub(crate) fn idle(mount: Arc<Mount>, linger: Duration) {
    if mount.stores.load(Ordering::SeqCst) == 0 && !linger.is_zero() {
        crate::linger::park(mount, linger);
    }
}

impl Drop for Link {
    /// The last store leaving a mount lets it linger (field failure #8). Only the count of
    /// stores is touched here, never the mount's state lock: a `Link` may be dropped
    /// under it (the reconnect loop upgrades and drops links while holding it).
    fn drop(&mut self) {
        if self.mount.stores.fetch_sub(1, Ordering::SeqCst) == 1 && !self.linger.is_zero() {
            crate::linger::park(self.mount.clone(), self.linger);
        }
    }
}

/// Library, volume, servers, translator options (in one order), `batch_sched` and
/// `follow_cpu`: stores asking for other client options get a mount of their own (gfapi's
/// own registry, `Volume::shared_with`, still hands them one `glfs_t` when only the policy
/// differs).
type RegistryKey = (
    String,
    String,
    Vec<Server>,
    Vec<gfapi::XlatorOption>,
    bool,
    bool,
);
type Slot = Arc<Mutex<Weak<Mount>>>;

/// The mount of `params`' volume: the one already shared by other stores (or left idle
/// by the last store on it and lingering, `crate::linger`), else a new one (connected
/// with the timeout; `Err(None)` is a timeout).
pub(crate) fn mount(params: MountParams) -> Result<Arc<Mount>, Option<gfapi::Error>> {
    static REGISTRY: OnceLock<Mutex<HashMap<RegistryKey, Slot>>> = OnceLock::new();
    let key = (
        params.lib.name().to_string(),
        params.volume.clone(),
        params.servers.clone(),
        gfapi::options_key(&params.xlator_options),
        params.batch_sched,
        params.follow_cpu,
    );
    // The registry lock only finds the slot; the slot's lock is held across the first
    // mount so two openers of one volume do not both mount it.
    let slot: Slot = {
        let mut reg = lock(REGISTRY.get_or_init(Default::default));
        reg.retain(|k, v| {
            k == &key
                || Arc::strong_count(v) > 1
                || v.try_lock().map_or(true, |w| w.strong_count() > 0)
        });
        reg.entry(key).or_default().clone()
    };
    let mut slot = lock(&slot);
    if let Some(m) = slot.upgrade() {
        return Ok(m);
    }
    let hung = Arc::new(AtomicUsize::new(0));
    let vol = connect_with_timeout(&params, true, &hung)?;
    // What gfapi frees goes back to the system (see the `trim` module).
    crate::trim::start();
    let m = Arc::new(Mount::new(params, vol, hung));
    *slot = Arc::downgrade(&m);
    Ok(m)
}

impl Mount {
    fn new(params: MountParams, vol: Arc<Volume>, hung: Arc<AtomicUsize>) -> Mount {
        let span = tracing::info_span!(parent: None, "glfs_volume", volume = %params.volume);
        Mount {
            span,
            params,
            state: Mutex::new(MountState {
                vol: Some(vol),
                generation: 0,
                reconnecting: false,
                broken: false,
                lost_at: None,
                attempts: 0,
                waiters: 0,
                links: Vec::new(),
            }),
            changed: Condvar::new(),
            hung,
            held: AtomicUsize::new(0),
            stores: AtomicUsize::new(0),
        }
    }

    /// `glfs_volume{volume}`, the span of the mount's own events.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The live volume and its generation, waiting up to the mount timeout while a
    /// reconnect runs; `None` on timeout.
    pub(crate) fn volume(self: &Arc<Self>) -> Option<(Arc<Volume>, u64)> {
        let deadline = Instant::now() + self.params.timeout;
        let mut st = lock(&self.state);
        st.waiters += 1;
        let found = loop {
            if let Some(v) = &st.vol {
                break Some((v.clone(), st.generation));
            }
            if !st.reconnecting {
                self.start_reconnect(&mut st);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break None;
            };
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        st.waiters -= 1;
        found
    }

    fn start_reconnect(self: &Arc<Self>, st: &mut MountState) {
        st.reconnecting = true;
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("glfs-reconnect".into())
            .spawn(move || me.reconnect_loop());
        if let Err(e) = spawned {
            self.span
                .in_scope(|| tracing::error!("cannot start the reconnect thread: {e}"));
            st.reconnecting = false;
        }
    }

    /// Reports that a request on the volume of `generation` found the connection lost.
    /// The first report of a generation detaches every store from it and starts (or
    /// restarts) the reconnect; later ones, and reports about replaced volumes, do nothing.
    /// `found_by` is the span of the command that found it (its session), if any.
    pub(crate) fn lost(
        self: &Arc<Self>,
        generation: u64,
        found_by: Option<(&tracing::Span, &str)>,
    ) {
        let mut st = lock(&self.state);
        if generation != st.generation || st.vol.is_none() {
            return;
        }
        let message = "gfapi connection lost; reconnecting in the background";
        match found_by {
            Some((span, path)) => span.in_scope(|| {
                tracing::warn!(volume = %self.params.volume,
                    path,
                    generation,
                    "{message}"
                )
            }),
            None => self
                .span
                .in_scope(|| tracing::warn!(generation, "{message}")),
        }
        let mut old: Vec<Handle> = Vec::new();
        let mut links = Vec::new();
        for l in st.links.iter().filter_map(Weak::upgrade) {
            if l.handle().is_some_and(|h| h.generation == generation) {
                old.extend(l.set(None));
                if l.unflushed
                    .as_ref()
                    .is_some_and(|u| u.connection_lost(generation))
                {
                    if let Some(observer) = crate::observer::volume_observer() {
                        observer.unflushed_writes_at_risk(&self.params.volume);
                    }
                    l.span.in_scope(|| {
                        tracing::error!(
                            generation,
                            "writes acknowledged since the last cache flush may not have \
                             reached the volume (gfapi's write-behind held them when the \
                             connection went): the next SYNCHRONIZE CACHE fails with a \
                             medium error"
                        )
                    });
                }
            }
            links.push(l);
        }
        let vol = st.vol.take();
        st.lost_at.get_or_insert_with(Instant::now);
        if st.reconnecting {
            st.broken = true;
        } else {
            self.start_reconnect(&mut st);
        }
        drop(st);
        if let Some(observer) = crate::observer::volume_observer() {
            observer.connection_lost(&self.params.volume);
        }
        // Off this thread (possibly gfapi's callback thread) the last references may
        // close files and finish the old mount.
        for l in links {
            let_go(l);
        }
        retire((old, vol));
    }

    fn attempts(&self) -> u64 {
        lock(&self.state).attempts
    }

    fn reconnect_loop(self: Arc<Self>) {
        let _in_volume = self.span.clone().entered();
        let mut delay = BACKOFF_START;
        let me = self.clone();
        let mut backoff = |what: &dyn std::fmt::Display| {
            if me.held.load(Ordering::SeqCst) > 0 {
                delay = delay.min(HOLD_BACKOFF_MAX);
            }
            tracing::warn!("reconnect: {what}; next try in {delay:?}");
            std::thread::sleep(delay);
            delay = (delay * 2).min(BACKOFF_MAX);
        };
        // The new volume, once connected (published or not).
        let mut vol: Option<Arc<Volume>> = None;
        loop {
            let pending: Vec<Arc<Link>> = {
                let mut st = lock(&self.state);
                if st.broken {
                    st.broken = false;
                    if let Some(v) = vol.take() {
                        retire(v);
                    }
                }
                st.links.retain(|l| l.strong_count() > 0);
                let pending: Vec<Arc<Link>> = st
                    .links
                    .iter()
                    .filter_map(Weak::upgrade)
                    .filter(|l| l.handle().is_none())
                    .collect();
                let unwanted = st.links.is_empty() && st.waiters == 0;
                if pending.is_empty() && (st.vol.is_some() || unwanted) {
                    st.reconnecting = false;
                    self.changed.notify_all();
                    if st.vol.is_some() {
                        tracing::info!(generation = st.generation, "reconnected");
                        let lost_at = st.lost_at.take();
                        drop(st);
                        if let (Some(at), Some(observer)) =
                            (lost_at, crate::observer::volume_observer())
                        {
                            observer.reconnected(&self.params.volume, at.elapsed());
                        }
                    }
                    return;
                }
                pending
            };
            let v = match &vol {
                Some(v) => v.clone(),
                None => {
                    if self.hung.load(Ordering::SeqCst) >= MAX_HUNG_ATTEMPTS {
                        backoff(&"earlier glfs_init attempts still hang");
                        continue;
                    }
                    let attempt = {
                        let mut st = lock(&self.state);
                        st.attempts += 1;
                        st.attempts
                    };
                    tracing::info!(attempt, "reconnect: mounting the volume again");
                    match connect_with_timeout(&self.params, false, &self.hung) {
                        Ok(v) => {
                            vol = Some(v.clone());
                            v
                        }
                        Err(Some(e)) => {
                            backoff(&e);
                            continue;
                        }
                        Err(None) => {
                            backoff(&format_args!(
                                "glfs_init did not finish within {:?}",
                                self.params.timeout
                            ));
                            continue;
                        }
                    }
                }
            };
            let mut opened = Vec::new();
            let mut failure = None;
            for link in &pending {
                match File::open(&v, &link.path, link.open_flags) {
                    Ok(f) => opened.push((link.clone(), f)),
                    Err(e) => {
                        let conn = e.errno().is_some_and(is_connection_errno);
                        failure = Some(format!("reopening {}: {e}", link.path));
                        if conn {
                            // The new volume is no good either: start over.
                            if let Some(v) = vol.take() {
                                retire(v);
                            }
                            break;
                        }
                    }
                }
            }
            drop(pending);
            {
                let mut st = lock(&self.state);
                if st.broken || vol.is_none() {
                    drop(st);
                    retire(opened);
                    if let Some(f) = failure {
                        backoff(&f);
                    }
                    continue;
                }
                if st.vol.is_none() {
                    st.generation += 1;
                    st.vol = vol.clone();
                }
                let generation = st.generation;
                for (link, file) in opened {
                    link.publish(Handle { file, generation });
                    let_go(link);
                }
                self.changed.notify_all();
            }
            if let Some(f) = failure {
                backoff(&f);
            }
        }
    }
}

/// Sends `req` to `h`'s file. A connection-class failure reports the lost connection (and
/// so starts the reconnect) and, while `deadline` is ahead, holds the request again instead
/// of failing it.
/// `span` is the submitter's (the daemon's session span): events that belong to this one
/// request are logged in it.
fn start_io(
    link: &Arc<Link>,
    h: Handle,
    req: IoRequest,
    done: Completion,
    deadline: Instant,
    span: tracing::Span,
) {
    let generation = h.generation;
    let fenced_on = link.fenced_on.load(Ordering::Acquire);
    if fenced_on != NEVER_FENCED && fenced_on != generation && changes_medium(&req) {
        // Fenced by failover, and the fence is on an older mount (Gluster let it go with
        // that mount's connection): nothing stops this write landing behind a newer
        // active gateway's, or with nobody holding the fence. Refused, retryably; the
        // gateway steps down (`daemon::failover`) and sends again once it holds the
        // fence on this mount.
        span.in_scope(|| {
            tracing::debug!(volume = %link.mount.params.volume, path = %link.path,
                generation, fenced_on,
                "write not sent: the data fence is not held on this mount")
        });
        return done.complete(Err(StoreError::new(req.op(), ErrorKind::Fenced)));
    }
    let done = match (&req, &link.unflushed) {
        (IoRequest::Flush, Some(unflushed)) => match unflushed.begin_flush() {
            Ok(start) => {
                let unflushed = unflushed.clone();
                Completion::new(move |r| {
                    if r.is_ok() {
                        unflushed.flushed(start);
                    }
                    done.complete(r)
                })
            }
            Err(()) => {
                span.in_scope(|| {
                    tracing::warn!(volume = %link.mount.params.volume, path = %link.path,
                        "cache flush failed: writes acknowledged before the connection to \
                         the volume was lost may not have reached it")
                });
                return done.complete(Err(StoreError::new(Op::Flush, ErrorKind::Io)));
            }
        },
        _ => done,
    };
    let finish = Finish::new(link, generation, &req, done, deadline, span);
    submit_to(h.file, req, finish);
}

/// The most bytes one write joined from several ([`GlfsStore::submit_batch`]) carries:
/// as much as gfapi's write-behind window holds (1 MB by default), so a joined write is
/// still cached as the writes it joins would be.
pub const MAX_JOINED_WRITE: usize = 1 << 20;

/// A plain write as the joining of a batch sees it.
struct WriteShape {
    offset: u64,
    fua: bool,
    data: store_api::Segments,
}

impl WriteShape {
    /// `req` if it is a write inside the store (one outside fails in `submit`, alone).
    fn of(geometry: Geometry, req: &IoRequest) -> Option<WriteShape> {
        match req {
            IoRequest::Write { offset, data, fua } if check_range(geometry, req).is_ok() => {
                Some(WriteShape {
                    offset: *offset,
                    fua: *fua,
                    // reference counts of the segments, not a copy
                    data: data.clone(),
                })
            }
            _ => None,
        }
    }
}

/// Writes of one batch being joined into one `glfs_pwritev_async`.
struct Joined {
    offset: u64,
    fua: bool,
    /// The writes' data, in order (reference counts of their segments).
    data: store_api::Segments,
    /// How each joined write ends.
    parts: Vec<Finish>,
}

impl Joined {
    fn start(first: WriteShape) -> Joined {
        Joined {
            offset: first.offset,
            fua: first.fua,
            data: first.data,
            parts: Vec::new(),
        }
    }

    /// Whether `next` can be joined at the end: it begins where the joined writes end,
    /// has the same `fua`, and the whole stays within [`MAX_JOINED_WRITE`] bytes and
    /// one gfapi call's iovec ([`gfapi::MAX_IOV`]).
    fn takes(&self, next: &WriteShape) -> bool {
        next.fua == self.fua
            && next.offset == self.offset + self.data.len() as u64
            && self.data.len() + next.data.len() <= MAX_JOINED_WRITE
            && self.data.parts().len() + next.data.parts().len() <= gfapi::MAX_IOV
    }

    /// Appends `next`'s data (which [`Joined::takes`]).
    fn grow(&mut self, next: &WriteShape) {
        for part in next.data.parts() {
            self.data.push(part.clone());
        }
    }

    /// Adds the ending of one joined write.
    fn add(&mut self, part: Finish) {
        self.parts.push(part);
    }

    /// Sends the joined writes to `file` as one write (and one fdatasync after it for
    /// FUA writes); each joined write gets the result.
    fn send(self, file: Arc<File>) {
        let Joined {
            offset,
            fua,
            data,
            parts,
        } = self;
        let all = move |r: Result<(), IoError>| {
            let r = r
                .map(|()| IoReply::Done)
                .map_err(|e| store_error(Op::Write, e));
            for part in parts {
                part.complete(r.clone());
            }
        };
        let f = file.clone();
        file.pwritev_async(offset, data, move |r| match r {
            Ok(()) if fua => f.fdatasync_async(all),
            r => all(r),
        });
    }
}

/// The most bytes one read joined from several ([`GlfsStore::submit_batch`]) carries:
/// 256 KiB, the initiator's usual MaxRecvDataSegmentLength (libiscsi and Linux offer it)
/// and the largest of gfapi's reply buffer classes that an arena holds eight of (a
/// larger class, two to an arena, is mapped afresh with a few replies in flight and its
/// pages fault in: docs/performance.md, seventh and fifteenth rounds).
pub const MAX_JOINED_READ: u32 = 256 << 10;

/// A plain read as the joining of a batch sees it.
struct ReadShape {
    offset: u64,
    len: u32,
}

impl ReadShape {
    /// `req` if it is a read inside the store that [`GlfsStore::submit`] would send as
    /// one gfapi read: not one cut into parts (its completion takes parts and it is
    /// longer than `read_part`).
    fn of(
        geometry: Geometry,
        req: &IoRequest,
        done: &Completion,
        read_part: Option<u32>,
    ) -> Option<ReadShape> {
        match req {
            IoRequest::Read { offset, len }
                if check_range(geometry, req).is_ok()
                    && !(read_part.is_some_and(|p| *len > p) && done.takes_parts()) =>
            {
                Some(ReadShape {
                    offset: *offset,
                    len: *len,
                })
            }
            _ => None,
        }
    }
}

/// Reads of one batch being joined into one `glfs_pread_async`.
struct JoinedRead {
    offset: u64,
    len: u32,
    /// How each joined read ends, with its length (in order from `offset`).
    parts: Vec<(Finish, u32)>,
}

impl JoinedRead {
    /// Whether `next` can be joined at the end: it begins where the joined reads end,
    /// and the whole stays within [`MAX_JOINED_READ`] bytes.
    fn takes(&self, next: &ReadShape) -> bool {
        next.offset == self.offset + u64::from(self.len)
            && u64::from(self.len) + u64::from(next.len) <= u64::from(MAX_JOINED_READ)
    }

    /// Reads the joined range with one gfapi read into one pooled buffer; each joined
    /// read gets its own slice of it (no copy), or the read's error.
    fn send(self, file: Arc<File>) {
        let JoinedRead { offset, len, parts } = self;
        let pool = BufferPool::global();
        let buf = pool.take(len as usize);
        file.pread_async_into(offset, len as usize, buf, move |r| match r {
            Ok(buf) => {
                let all = pool.bytes(buf);
                let mut at = 0usize;
                for (finish, n) in parts {
                    let end = at + n as usize;
                    let r = match all.get(at..end) {
                        Some(_) => Ok(IoReply::Data(all.slice(at..end))),
                        None => Err(StoreError::new(Op::Read, ErrorKind::Io)),
                    };
                    at = end;
                    finish.complete(r);
                }
            }
            Err(e) => {
                let e = store_error(Op::Read, e);
                for (finish, _) in parts {
                    finish.complete(Err(e.clone()));
                }
            }
        });
    }
}

/// How a request sent to gfapi ends: its completion, or held again after a lost
/// connection. Carried inside gfapi's callback, which lives inline in gfapi's reused
/// request context: a read or write allocates nothing here (reads: but the pooled
/// buffer's `Bytes` header).
struct Finish {
    link: Weak<Link>,
    retry: Option<IoRequest>,
    /// For a write without FUA on a store that counts them: told when it is acknowledged.
    unflushed: Option<Arc<Unflushed>>,
    generation: u64,
    deadline: Instant,
    done: Completion,
    /// The submitter's span: events that belong to this one request are logged in it.
    span: tracing::Span,
}

impl Finish {
    /// How `req`, sent on `link`'s file of `generation`, ends: `done`, or held again
    /// after a lost connection while `deadline` is ahead.
    fn new(
        link: &Arc<Link>,
        generation: u64,
        req: &IoRequest,
        done: Completion,
        deadline: Instant,
        span: tracing::Span,
    ) -> Finish {
        Finish {
            link: Arc::downgrade(link),
            // A second owner of the request's buffer (a reference count, not a copy) so
            // that it can be sent again after a reconnect; only kept when holding is on.
            retry: (!link.hold.is_zero()).then(|| req.clone()),
            unflushed: match req {
                IoRequest::Write { fua: false, .. } => link.unflushed.clone(),
                _ => None,
            },
            generation,
            deadline,
            done,
            span,
        }
    }

    fn complete(self, r: store_api::IoResult) {
        let Finish {
            link,
            retry,
            unflushed,
            generation,
            deadline,
            done,
            span,
        } = self;
        if let (Ok(_), Some(unflushed)) = (&r, unflushed) {
            unflushed.acknowledged(generation);
        }
        if matches!(&r, Err(e) if e.kind == ErrorKind::NotConnected) {
            if let Some(link) = link.upgrade() {
                link.mount.lost(generation, Some((&span, &link.path)));
                match retry {
                    Some(req) if Instant::now() < deadline => {
                        link.hold(req, done, deadline, span);
                    }
                    _ => done.complete(r),
                }
                // Never close files or finish mounts on gfapi's callback thread.
                let_go(link);
                return;
            }
        }
        done.complete(r)
    }

    /// As a `Completion`, for the requests off the hot path (one box).
    fn boxed(self) -> Completion {
        Completion::new(move |r| self.complete(r))
    }
}

/// Reads `len` bytes at `offset` as pieces of `part` bytes, all sent to gfapi at
/// once (each its own request, held and resent after a lost connection as any other),
/// and hands them to `done` in order as they come back: every piece but the last as a
/// part once those before it are handed over, the last as the completion's data. So the
/// caller can send the start of a large read on while gfapi still reads the rest. A
/// failed piece stops the handing over, and `done` gets its error once every piece is
/// back (none of the pieces' buffers is in use by then).
fn read_in_parts(
    link: &Arc<Link>,
    offset: u64,
    len: u32,
    part: u32,
    done: Completion,
    deadline: Instant,
    span: tracing::Span,
) {
    let pieces = len.div_ceil(part) as usize;
    let parted = Arc::new(Mutex::new(PartedRead {
        done: Some(done),
        ready: vec![None; pieces],
        next: 0,
        left: pieces,
        failed: None,
    }));
    for (i, at) in (0..len).step_by(part as usize).enumerate() {
        let req = IoRequest::Read {
            offset: offset + u64::from(at),
            len: part.min(len - at),
        };
        let parted = parted.clone();
        let piece = Completion::new(move |r| PartedRead::back(&parted, i, r));
        match link.handle() {
            Some(h) => start_io(link, h, req, piece, deadline, span.clone()),
            None => link.hold(req, piece, deadline, span.clone()),
        }
    }
}

/// A read on its way in pieces ([`read_in_parts`]).
struct PartedRead {
    /// The read's completion, until it is called.
    done: Option<Completion>,
    /// Pieces back and not yet handed over, by index.
    ready: Vec<Option<Bytes>>,
    /// The next piece to hand over.
    next: usize,
    /// Pieces not back yet.
    left: usize,
    /// The first error of a piece.
    failed: Option<StoreError>,
}

impl PartedRead {
    /// Piece `i` came back with `r`.
    fn back(me: &Mutex<PartedRead>, i: usize, r: store_api::IoResult) {
        let mut guard = lock(me);
        let st = &mut *guard;
        st.left -= 1;
        match r {
            Ok(IoReply::Data(data)) => st.ready[i] = Some(data),
            Ok(_) => {
                st.failed
                    .get_or_insert(StoreError::new(Op::Read, ErrorKind::Io));
            }
            Err(e) => {
                st.failed.get_or_insert(e);
            }
        }
        let last = st.ready.len() - 1;
        if st.failed.is_none() {
            // Handed over in order and under the lock, so two callback threads never
            // reorder parts.
            while st.next < last {
                let Some(data) = st.ready[st.next].take() else {
                    break;
                };
                st.next += 1;
                if let Some(done) = &st.done {
                    done.part(data);
                }
            }
        }
        if st.left > 0 {
            return;
        }
        let done = st.done.take();
        let result = match st.failed.take() {
            Some(e) => Err(e),
            None => match st.ready[last].take() {
                Some(data) => Ok(IoReply::Data(data)),
                None => Err(StoreError::new(Op::Read, ErrorKind::Io)),
            },
        };
        drop(guard);
        if let Some(done) = done {
            done.complete(result);
        }
    }
}

/// Sends `req` to `file`; `finish` gets the result.
fn submit_to(file: Arc<File>, req: IoRequest, finish: Finish) {
    match req {
        IoRequest::Read { offset, len } => {
            let pool = BufferPool::global();
            let buf = pool.take(gfapi::read_room(len as usize));
            file.pread_async_into(offset, len as usize, buf, move |r| {
                finish.complete(
                    r.map(|buf| IoReply::Data(pool.bytes(buf)))
                        .map_err(|e| store_error(Op::Read, e)),
                )
            })
        }
        IoRequest::Write { offset, data, fua } => {
            let f = file.clone();
            file.pwritev_async(offset, data, move |r| match r {
                Ok(()) if fua => f.fdatasync_async(move |r| {
                    finish.complete(
                        r.map(|()| IoReply::Done)
                            .map_err(|e| store_error(Op::Write, e)),
                    )
                }),
                r => finish.complete(
                    r.map(|()| IoReply::Done)
                        .map_err(|e| store_error(Op::Write, e)),
                ),
            })
        }
        req => submit_other(file, req, finish.boxed()),
    }
}

/// The requests other than reads and writes.
fn submit_other(file: Arc<File>, req: IoRequest, done: Completion) {
    match req {
        IoRequest::Read { .. } | IoRequest::Write { .. } => {
            unreachable!("reads and writes go through submit_to")
        }
        IoRequest::Flush => file.fdatasync_async(move |r| {
            done.complete(
                r.map(|()| IoReply::Done)
                    .map_err(|e| store_error(Op::Flush, e)),
            )
        }),
        IoRequest::Discard { offset, len } => {
            if len == 0 {
                return done.complete(Ok(IoReply::Done));
            }
            let cb = zero_fallback(file.clone(), Op::Discard, offset, len, done);
            file.discard_async(offset, len, cb)
        }
        IoRequest::WriteZeroes { offset, len } => {
            if len == 0 {
                return done.complete(Ok(IoReply::Done));
            }
            let cb = zero_fallback(file.clone(), Op::WriteZeroes, offset, len, done);
            file.zerofill_async(offset, len, cb)
        }
        // gfapi has no asynchronous SEEK_DATA/SEEK_HOLE and submit must not block: the
        // glfs_lseek calls run on a blocking-call thread.
        IoRequest::Allocation { offset, len } => {
            blocking(move || done.complete(allocation(&file, offset, len)))
        }
        IoRequest::Copy {
            source,
            source_offset,
            offset,
            len,
        } => {
            let unsupported = || StoreError::new(Op::Copy, ErrorKind::Unsupported);
            // Only between files of one mount (one glfs_t): glfs_copy_file_range refuses
            // others (EXDEV), and the caller then reads and writes.
            let Some(from) = source
                .downcast::<Link>()
                .and_then(|link| link.handle())
                .map(|h| h.file)
                .filter(|f| Arc::ptr_eq(f.volume(), file.volume()))
            else {
                return done.complete(Err(unsupported()));
            };
            // glfs_copy_file_range has no asynchronous form: a blocking-call thread.
            blocking(move || {
                // Gluster's write-behind does not order copy_file_range after the writes it
                // still caches: sync both files first, so the copy reads what was written
                // and no cached write lands on the copy afterwards.
                let r = from
                    .fdatasync()
                    .and_then(|()| file.fdatasync())
                    .and_then(|()| from.copy_range(source_offset, &file, offset, len));
                done.complete(match r {
                    Ok(()) => Ok(IoReply::Done),
                    Err(e)
                        if matches!(
                            e.errno(),
                            Some(libc::EXDEV | libc::EOPNOTSUPP | libc::ENOSYS)
                        ) =>
                    {
                        Err(unsupported())
                    }
                    // The source ended before `len` bytes.
                    Err(gfapi::Error::Short { .. }) => {
                        Err(StoreError::new(Op::Copy, ErrorKind::ShortTransfer))
                    }
                    Err(e) => Err(gfapi_error(Op::Copy, &e)),
                })
            });
        }
    }
}

/// The first extent from `offset` (at most `len` bytes) that is all data or all hole, from
/// glfs_fdatasync, then glfs_lseek SEEK_HOLE then SEEK_DATA (as the file store does with lseek(2)). A volume
/// whose graph cannot seek (EINVAL, EOPNOTSUPP, ENOSYS) answers `Unsupported`.
fn allocation(file: &File, offset: u64, len: u64) -> store_api::IoResult {
    let err = |e: gfapi::Error| match e.errno() {
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS) => {
            StoreError::new(Op::Allocation, ErrorKind::Unsupported)
        }
        _ => gfapi_error(Op::Allocation, &e),
    };
    if len == 0 {
        return Err(StoreError::new(Op::Allocation, ErrorKind::OutOfRange));
    }
    // Writes write-behind still caches are not yet allocated on the brick, and Gluster
    // does not order the seek after them: sync first.
    file.fdatasync()
        .map_err(|e| gfapi_error(Op::Allocation, &e))?;
    let end = offset + len;
    // The next hole at or after offset (the end of the file counts as one; ENXIO: at or
    // beyond the end, all hole).
    let hole = file.seek(offset, false).map_err(err)?.unwrap_or(offset);
    if hole > offset {
        return Ok(IoReply::Allocation {
            mapped: true,
            len: hole.min(end) - offset,
        });
    }
    let data = file.seek(offset, true).map_err(err)?.unwrap_or(end);
    Ok(IoReply::Allocation {
        mapped: false,
        len: data.clamp(offset + 1, end) - offset,
    })
}

type BlockingJob = Box<dyn FnOnce() + Send + 'static>;

/// Threads for the gfapi calls that have no asynchronous form (copy_file_range,
/// SEEK_DATA/SEEK_HOLE), shared by every glfs store, so neither a submitter nor gfapi's
/// callback thread ever blocks on one.
const BLOCKING_THREADS: usize = 2;

fn blocking(job: impl FnOnce() + Send + 'static) {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<BlockingJob>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<BlockingJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..BLOCKING_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("glfs-blocking-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = lock(&rx).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a gfapi blocking-call thread: {e}");
            }
        }
        Mutex::new(tx)
    });
    // The receivers live as long as the process (the threads never exit while the
    // sender, a static, exists).
    let _ = lock(queue).send(Box::new(job));
}

/// One volume's identity in this process ([`store_api::Space::storage`]): its name and
/// volfile servers, in any order.
fn volume_identity(name: &str, servers: &[gfapi::Server]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut sorted: Vec<&gfapi::Server> = servers.iter().collect();
    sorted.sort_by(|a, b| (&a.host, a.port, &a.transport).cmp(&(&b.host, b.port, &b.transport)));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    sorted.hash(&mut h);
    h.finish()
}

/// A store on a gfapi file. Holds its place on the (shared) mount, which holds the file.
pub struct GlfsStore {
    link: Arc<Link>,
    /// Hands out a copy source (see [`crate::spec::GlfsOptions::copy_offload`]).
    copy_offload: bool,
    /// The piece a large read is cut into when its completion takes parts; `None`: one
    /// gfapi read per request (see [`crate::spec::GlfsOptions::read_part`]).
    read_part: Option<u32>,
    /// Full provisioning ([`crate::Provisioning`]): no discard, and a resize allocates
    /// the blocks it adds.
    full: bool,
    geometry: store_api::GrowableGeometry,
    description: String,
}

impl GlfsStore {
    /// Serves `file` with `geometry`; `description` is what [`BlockStore::describe`] says.
    ///
    /// The store gets a mount of its own around `file`'s volume (not shared with stores
    /// opened through [`crate::open_store`]); a reconnect uses the volume's library and
    /// servers, gfapi's default logging at level 5 and a 60 s mount timeout.
    pub fn new(file: Arc<File>, geometry: Geometry, description: String) -> GlfsStore {
        let vol = file.volume().clone();
        let params = MountParams {
            lib: vol.library().clone(),
            volume: vol.name().to_string(),
            servers: vol.servers().to_vec(),
            logfile: None,
            loglevel: 5,
            xlator_options: Vec::new(),
            batch_sched: false,
            follow_cpu: false,
            timeout: Duration::from_secs(60),
        };
        let mount = Arc::new(Mount::new(params, vol, Arc::new(AtomicUsize::new(0))));
        let hold = Duration::from_secs(crate::spec::DEFAULT_HOLD_SECS);
        GlfsStore::attach(
            &mount,
            file,
            0,
            geometry,
            description,
            (hold, Duration::ZERO),
            libc::O_RDWR,
        )
    }

    /// Serves `file`, opened on generation `generation` of `mount` with `open_flags`
    /// (which a reconnect opens it with again); requests wait up to `hold` for a
    /// reconnect, and the mount stays up for `linger` once this store was the last on it.
    pub(crate) fn attach(
        mount: &Arc<Mount>,
        file: Arc<File>,
        generation: u64,
        geometry: Geometry,
        description: String,
        (hold, linger): (Duration, Duration),
        open_flags: i32,
    ) -> GlfsStore {
        let link = Arc::new(Link::new(
            mount,
            file.path().to_string(),
            open_flags,
            hold,
            linger,
        ));
        let mut st = lock(&mount.state);
        st.links.push(Arc::downgrade(&link));
        if st.vol.is_some() && st.generation == generation {
            link.publish(Handle { file, generation });
        } else {
            // The mount was replaced while the file was being opened: the reconnect
            // opens it again on the new volume.
            retire(file);
            if !st.reconnecting {
                mount.start_reconnect(&mut st);
            }
        }
        drop(st);
        GlfsStore {
            link,
            copy_offload: false,
            read_part: None,
            full: false,
            geometry: store_api::GrowableGeometry::new(geometry),
            description,
        }
    }

    /// Copies inside the volume with glfs_copy_file_range, as the source of EXTENDED COPY
    /// (off by default: see [`crate::spec::GlfsOptions::copy_offload`]).
    pub fn with_copy_offload(mut self, on: bool) -> GlfsStore {
        self.copy_offload = on;
        self
    }

    /// Full provisioning: the store reports no discard (the LU is fully provisioned, no
    /// UNMAP) and a resize allocates the blocks it adds before they are served; the open
    /// allocated what was there (`crate::open_store`).
    pub fn with_provisioning(mut self, provisioning: crate::Provisioning) -> GlfsStore {
        self.full = provisioning == crate::Provisioning::Full;
        self
    }

    /// Cuts large reads whose completion takes parts into pieces of `part` bytes (a
    /// multiple of 4 KiB, at least [`crate::spec::MIN_READ_PART`]), or with `None` (the
    /// default) reads every request with one gfapi read (bsopt `read-part`).
    pub fn with_read_part(mut self, part: Option<u32>) -> GlfsStore {
        self.read_part = part.map(|p| p.max(crate::spec::MIN_READ_PART));
        self
    }

    /// Whether requests currently reach gfapi.
    pub fn connection_state(&self) -> ConnectionState {
        match self.link.handle() {
            Some(_) => ConnectionState::Connected,
            None => ConnectionState::Reconnecting,
        }
    }

    /// The mount generation: 0 for the first mount, one more for each successful
    /// reconnect of the volume (shared by all stores on it).
    pub fn generation(&self) -> u64 {
        lock(&self.link.mount.state).generation
    }

    /// How many times a reconnect has tried to mount the volume again (all stores on the
    /// volume together).
    pub fn reconnect_attempts(&self) -> u64 {
        self.link.mount.attempts()
    }

    /// Requests waiting for a reconnect right now.
    pub fn held_requests(&self) -> usize {
        lock(&self.link.held).queue.len()
    }

    /// Whether the store is in coherent mode (its file opened `O_DIRECT` on a mount
    /// whose write-behind lets `O_DIRECT` writes through: see `crate::coherent`).
    pub fn is_coherent(&self) -> bool {
        self.link.open_flags & libc::O_DIRECT != 0
    }
}

fn store_error(op: Op, e: IoError) -> StoreError {
    match e {
        IoError::Errno(errno) => StoreError::from_errno(op, errno),
        IoError::Short { .. } => StoreError::new(op, ErrorKind::ShortTransfer),
    }
}

/// Writes `len` zero bytes at `offset`, one chunk after another, then calls `done`.
fn write_zero_chain(file: Arc<File>, op: Op, offset: u64, len: u64, done: Completion) {
    if len == 0 {
        return done.complete(Ok(IoReply::Done));
    }
    let n = len.min(ZEROES.len() as u64);
    let next = file.clone();
    file.pwrite_async(
        offset,
        Bytes::from_static(&ZEROES[..n as usize]),
        move |r| match r {
            Ok(()) => write_zero_chain(next, op, offset + n, len - n, done),
            Err(e) => done.complete(Err(store_error(op, e))),
        },
    );
}

/// Completes `done` from a zerofill/discard result, falling back to writing zeroes when gfapi
/// says the operation is unsupported.
fn zero_fallback(
    file: Arc<File>,
    op: Op,
    offset: u64,
    len: u64,
    done: Completion,
) -> impl FnOnce(Result<(), IoError>) + Send + 'static {
    move |r| match r {
        Ok(()) => done.complete(Ok(IoReply::Done)),
        Err(IoError::Errno(e)) if e == libc::EOPNOTSUPP || e == libc::ENOSYS => {
            write_zero_chain(file, op, offset, len, done)
        }
        Err(e) => done.complete(Err(store_error(op, e))),
    }
}

impl BlockStore for GlfsStore {
    fn geometry(&self) -> Geometry {
        self.geometry.get()
    }

    fn capabilities(&self) -> Capabilities {
        if self.full {
            Capabilities::FULLY_PROVISIONED
        } else {
            Capabilities::ALL
        }
    }

    fn submit(&self, req: IoRequest, done: Completion) {
        if let Err(e) = check_range(self.geometry.get(), &req) {
            return done.complete(Err(e));
        }
        let deadline = Instant::now() + self.link.hold;
        // The submitter's span (the daemon's session), for events about this request on
        // gfapi's and the store's threads: a reference count, no allocation.
        let span = tracing::Span::current();
        if let (IoRequest::Read { offset, len }, Some(part)) = (&req, self.read_part) {
            if *len > part && done.takes_parts() {
                return read_in_parts(&self.link, *offset, *len, part, done, deadline, span);
            }
        }
        match self.link.handle() {
            Some(h) => start_io(&self.link, h, req, done, deadline, span),
            // Reconnecting: wait for it (or, with no hold time, fail at once).
            None => self.link.hold(req, done, deadline, span),
        }
    }

    /// Joins the batch's runs of adjacent plain writes (each beginning where the one
    /// before ends, the same `fua`) into one `glfs_pwritev_async` of their segments, up
    /// to [`MAX_JOINED_WRITE`] bytes and [`gfapi::MAX_IOV`] segments, as a block layer's
    /// elevator does: gfapi's write-behind and the brick then see one write instead of
    /// several (docs/performance.md, seventh round). Every other request, and a write
    /// that cannot join, goes as [`BlockStore::submit`] sends it, in the batch's order;
    /// a run is sent before whatever follows it. Each joined write keeps its own
    /// completion (and its own copy of its request for a resend): the joined write's
    /// result is each one's, and after a lost connection each is held and sent again on
    /// its own. Runs of adjacent plain reads are joined likewise, up to
    /// [`MAX_JOINED_READ`] bytes, into one `glfs_pread_async` into one pooled buffer;
    /// each read gets its own slice of it (docs/performance.md, eighth round). A read
    /// that [`BlockStore::submit`] would cut into `read-part` pieces is not joined.
    fn submit_batch(&self, batch: &mut Vec<(IoRequest, Completion)>) {
        let Some(h) = self.link.handle() else {
            // Reconnecting: each is held (or failed) on its own.
            for (req, done) in batch.drain(..) {
                self.submit(req, done);
            }
            return;
        };
        let fenced_on = self.link.fenced_on.load(Ordering::Acquire);
        if fenced_on != NEVER_FENCED && fenced_on != h.generation {
            // Fenced by failover on an older mount: `start_io` refuses every write on
            // this one, so nothing is joined; each goes its own way.
            for (req, done) in batch.drain(..) {
                self.submit(req, done);
            }
            return;
        }
        let geometry = self.geometry.get();
        let span = tracing::Span::current();
        let mut requests = batch.drain(..).peekable();
        while let Some((req, done)) = requests.next() {
            if let Some(first) = ReadShape::of(geometry, &req, &done, self.read_part) {
                let read_part = self.read_part;
                let mut joined = JoinedRead {
                    offset: first.offset,
                    len: first.len,
                    parts: Vec::new(),
                };
                let joins = |joined: &JoinedRead, (next, done): &(IoRequest, Completion)| {
                    ReadShape::of(geometry, next, done, read_part)
                        .is_some_and(|next| joined.takes(&next))
                };
                if !requests.peek().is_some_and(|next| joins(&joined, next)) {
                    // Nothing to join it with: as `submit` sends it.
                    self.submit(req, done);
                    continue;
                }
                let deadline = Instant::now() + self.link.hold;
                joined.parts.push((
                    Finish::new(&self.link, h.generation, &req, done, deadline, span.clone()),
                    first.len,
                ));
                while let Some((next, done)) = requests.next_if(|next| joins(&joined, next)) {
                    let IoRequest::Read { len, .. } = next else {
                        unreachable!("only reads join reads")
                    };
                    joined.len += len;
                    joined.parts.push((
                        Finish::new(
                            &self.link,
                            h.generation,
                            &next,
                            done,
                            deadline,
                            span.clone(),
                        ),
                        len,
                    ));
                }
                joined.send(h.file.clone());
                continue;
            }
            let Some(first) = WriteShape::of(geometry, &req) else {
                self.submit(req, done);
                continue;
            };
            let deadline = Instant::now() + self.link.hold;
            let mut joined = Joined::start(first);
            if !requests
                .peek()
                .and_then(|(next, _)| WriteShape::of(geometry, next))
                .is_some_and(|next| joined.takes(&next))
            {
                // Nothing to join it with: as `submit` sends it.
                start_io(&self.link, h.clone(), req, done, deadline, span.clone());
                continue;
            }
            joined.add(Finish::new(
                &self.link,
                h.generation,
                &req,
                done,
                deadline,
                span.clone(),
            ));
            while let Some((next, _)) = requests.peek() {
                match WriteShape::of(geometry, next) {
                    Some(shape) if joined.takes(&shape) => joined.grow(&shape),
                    _ => break,
                }
                let (next, done) = requests.next().expect("peeked");
                joined.add(Finish::new(
                    &self.link,
                    h.generation,
                    &next,
                    done,
                    deadline,
                    span.clone(),
                ));
            }
            joined.send(h.file.clone());
        }
    }

    fn joins_writes(&self) -> bool {
        true
    }

    fn joins_reads(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn copy_source(&self) -> Option<CopySource> {
        self.copy_offload
            .then(|| CopySource::new(self.link.clone()))
    }

    /// `glfs_ftruncate` to the new size, then fsync: on the volume, so every gateway on it
    /// sees the new size. Fully provisioned, the added blocks are allocated first; where
    /// they cannot be, the file goes back to its size and the resize fails.
    fn resize(&self, size_bytes: u64) -> Result<Geometry, StoreError> {
        let old = self.geometry().size_bytes();
        let blocks = store_api::check_resize(self.geometry(), size_bytes)?;
        let Some(Handle { file, .. }) = self.link.handle() else {
            return Err(StoreError::from_errno(Op::Write, libc::ENOTCONN));
        };
        let err = |e: gfapi::Error| gfapi_error(Op::Write, &e);
        file.truncate(size_bytes).map_err(err)?;
        if self.full {
            let allocated =
                crate::provision::allocate_logged(&self.description, old, size_bytes, |o, l| {
                    file.allocate(o, l).map_err(|e| e.errno())
                });
            if let Err(e) = allocated {
                tracing::warn!("{}: resize to {size_bytes} refused: {e}", self.description);
                file.truncate(old).map_err(err)?;
                return Err(StoreError::from_errno(
                    Op::Write,
                    e.errno.unwrap_or(libc::EIO),
                ));
            }
        }
        file.fsync().map_err(err)?;
        self.geometry.set_blocks(blocks);
        Ok(self.geometry())
    }

    /// `glfs_fstat`'s blocks of the image and `glfs_statvfs` of the volume where it is.
    fn space(&self) -> Result<store_api::Space, StoreError> {
        let Some(Handle { file, .. }) = self.link.handle() else {
            return Err(StoreError::from_errno(Op::Allocation, libc::ENOTCONN));
        };
        let err = |e: gfapi::Error| gfapi_error(Op::Allocation, &e);
        let vol = file.volume();
        Ok(store_api::Space {
            allocated: file.allocated().map_err(err)?,
            available: Some(vol.available_bytes(file.path()).map_err(err)?),
            storage: Some(volume_identity(vol.name(), vol.servers())),
        })
    }

    /// Another gateway's write replaces the object by rename. Lookups are not cached
    /// (`coherent::fresh_lookups`), so the path resolves to the object as it is; a read
    /// that still meets a replaced one (ESTALE, or ENOENT from the open of a name the
    /// lookup had found: a rename between the two) is tried again, for up to 2 s, and
    /// ENOENT means "no object" only when the name is not there either.
    fn read_metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (vol, path) = self.metadata_path(name, Op::Read)?;
        let read = || -> Result<Option<Vec<u8>>, gfapi::Error> {
            let file = match File::open(&vol, &path, libc::O_RDONLY) {
                Ok(file) => file,
                Err(e) if e.errno() == Some(libc::ENOENT) => {
                    return match vol.lstat_size(&path) {
                        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
                        // There after all: the open met a replaced object.
                        Ok(_) => Err(e),
                        Err(other) => Err(other),
                    };
                }
                Err(e) => return Err(e),
            };
            let size = file.size()?;
            let mut data = vec![0u8; size.min(MAX_METADATA + 1) as usize];
            file.pread(&mut data, 0)?;
            Ok(Some(data))
        };
        let mut tries = 0;
        loop {
            tries += 1;
            match read() {
                Err(e) if matches!(e.errno(), Some(libc::ESTALE | libc::ENOENT)) && tries < 20 => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(gfapi_error(Op::Read, &e)),
                Ok(Some(data)) if data.len() as u64 > MAX_METADATA => {
                    return Err(StoreError::new(Op::Read, ErrorKind::OutOfRange))
                }
                Ok(data) => return Ok(data),
            }
        }
    }

    /// A temporary file of this write's own (`crate::metadata`) created on the volume,
    /// written and fsynced, then renamed over `<file>.<name>`: on Gluster, so every
    /// gateway on the volume reads the same object. Removed again if the write fails.
    fn write_metadata(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let (vol, path) = self.metadata_path(name, Op::Write)?;
        let err = |e: gfapi::Error| gfapi_error(Op::Write, &e);
        let tmp = crate::metadata::temporary_name(&path);
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        let file = File::create(&vol, &tmp, flags, 0o600).map_err(err)?;
        let written = file
            .pwrite(data, 0)
            .and_then(|()| file.fsync())
            .and_then(|()| {
                drop(file);
                vol.rename(&tmp, &path)
            });
        if written.is_err() {
            let _ = vol.unlink(&tmp);
        }
        written.map_err(err)
    }

    /// A POSIX lock (`glfs_posix_lock`) on [`store_api::metadata_lock_range`] of the LUN
    /// file, through an fd of its own that the guard keeps open, under a Gluster lock
    /// owner of its own (`glfs-iscsi:<owner>:<pid>:<n>`): the bricks' locks translator
    /// keeps it, so every gateway on the volume sees it, and releases it when the fd
    /// closes or the mount's connection to the brick goes (a dead gateway does not keep
    /// it). A lock does not move to the new mount of a reconnect: the guard's fd stays on
    /// the old one.
    fn lock_metadata(
        &self,
        name: &str,
        owner: &LockOwner,
        mode: LockMode,
        wait: LockWait,
    ) -> Result<MetadataLock, LockError> {
        static GUARDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let failed = |source| LockError::store(name, source);
        let err = |e: gfapi::Error| gfapi_error(Op::Lock, &e);
        let (vol, _) = self.metadata_path(name, Op::Lock).map_err(failed)?;
        let (flags, kind) = match mode {
            LockMode::Shared => (libc::O_RDONLY, gfapi::LockKind::Read),
            LockMode::Exclusive => (libc::O_RDWR, gfapi::LockKind::Write),
        };
        let file = File::open(&vol, &self.link.path, flags).map_err(|e| failed(err(e)))?;
        let n = GUARDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lk_owner = format!("glfs-iscsi:{owner}:{}:{n}", std::process::id());
        file.set_lock_owner(lk_owner.as_bytes())
            .map_err(|e| failed(err(e)))?;
        let (start, len) = store_api::metadata_lock_range(name);
        crate::lock::acquire(name, wait, || {
            file.try_lock(kind, start, len)
                .map(|taken| taken.then_some(()))
                .map_err(err)
        })?;
        Ok(MetadataLock::new(name, owner, mode, file))
    }

    /// A Gluster mandatory write lock (`glfs_file_lock`, GLFS_LK_MANDATORY) on
    /// [`store_api::DATA_FENCE_RANGE`] of the image, taken through the store's own image
    /// fd: the brick refuses other clients' reads and writes there while this store's go
    /// through (its lock owner is that fd's). Released when the guard drops or the
    /// mount's connection goes; a reconnect does not carry it over (the guard keeps the
    /// old fd).
    fn fence_data(&self, owner: &LockOwner, wait: LockWait) -> Result<MetadataLock, LockError> {
        let name = store_api::DATA_FENCE;
        let Some(Handle { file, generation }) = self.link.handle() else {
            let source = StoreError::from_errno(Op::Lock, libc::ENOTCONN);
            return Err(LockError::store(name, source));
        };
        let (start, len) = store_api::DATA_FENCE_RANGE;
        // On a thread of its own: gfapi takes a lock under the calling thread's lock
        // owner once any fd with a lock owner was locked on that thread (glfs_posix_lock
        // sets the thread's owner to the fd's and leaves it), and the brick lets through
        // only requests of the lock's owner. The data path's threads never lock, so their
        // requests carry the empty owner; a fresh thread takes the fence under that same
        // empty owner, so this store's own requests pass (measured live: taken on a
        // thread that had taken a metadata lock, the holder's own writes got EAGAIN).
        std::thread::scope(|s| {
            s.spawn(|| {
                crate::lock::acquire(name, wait, || {
                    file.try_lock_mandatory(gfapi::LockKind::Write, start, len)
                        .map(|taken| taken.then_some(()))
                        .map_err(|e| gfapi_error(Op::Lock, &e))
                })
            })
            .join()
            .unwrap_or_else(|_| {
                let source = StoreError::new(Op::Lock, ErrorKind::Io);
                Err(LockError::store(name, source))
            })
        })?;
        Ok(self.fence_guard(owner, file, generation))
    }

    /// Takes the data fence or metadata lock `name` over from whoever holds it, with a
    /// lock request that waits at the bricks (`gfapi::File::lock_wait`, on a thread of its
    /// own: for the fence the image fd under the empty lock owner, as `fence_data`; for a
    /// metadata lock an fd of its own with its lock owner, as `lock_metadata`), queued
    /// before the holder's lock is cleared: Gluster's locks translator grants it in the
    /// same step as it clears (`clrlk_clear_posixlk` calls `grant_blocked_locks`;
    /// measured on 10.3, docs/fencing.md), so no request that reaches the brick after the
    /// clearing finds the range free. Not granted within `wait`: withdrawn
    /// (`clear_blocked_locks`) and `Contended`; granted after this gave up, the waiting
    /// thread lets go of it.
    fn take_lock_over(
        &self,
        name: &str,
        owner: &LockOwner,
        wait: Duration,
    ) -> Result<MetadataLock, LockError> {
        static GUARDS: AtomicU64 = AtomicU64::new(0);
        let started = Instant::now();
        let failed = |source| LockError::store(name, source);
        let err = |e: gfapi::Error| gfapi_error(Op::Lock, &e);
        let fence = name == store_api::DATA_FENCE;
        let (start, len) = if fence {
            store_api::DATA_FENCE_RANGE
        } else {
            store_api::metadata_lock_range(name)
        };
        let (vol, _) = self.metadata_path(name, Op::Lock).map_err(failed)?;
        let (file, generation) = if fence {
            let Some(Handle { file, generation }) = self.link.handle() else {
                return Err(failed(StoreError::from_errno(Op::Lock, libc::ENOTCONN)));
            };
            (file, Some(generation))
        } else {
            let file =
                File::open(&vol, &self.link.path, libc::O_RDWR).map_err(|e| failed(err(e)))?;
            let n = GUARDS.fetch_add(1, Ordering::Relaxed);
            let lk_owner = format!("glfs-iscsi:{owner}:{}:takeover{n}", std::process::id());
            file.set_lock_owner(lk_owner.as_bytes())
                .map_err(|e| failed(err(e)))?;
            (file, None)
        };
        let (tx, rx) = mpsc::channel::<Result<(), gfapi::Error>>();
        let waiter = file.clone();
        std::thread::Builder::new()
            .name("glfs-takeover".into())
            .spawn(move || {
                let granted = waiter.lock_wait(gfapi::LockKind::Write, start, len, fence);
                if let Err(mpsc::SendError(Ok(()))) = tx.send(granted) {
                    // Given up on: let go (a metadata lock's fd closes with `waiter`).
                    if fence {
                        let _ = waiter.unlock_mandatory(start, len);
                    }
                }
            })
            .map_err(|_| failed(StoreError::new(Op::Lock, ErrorKind::Io)))?;
        let clearer = |what: &(dyn Fn(&File) -> Result<u32, gfapi::Error> + Sync)| {
            self.clear_through_own_fd(&vol, what).map_err(err)
        };
        let withdraw = || {
            let _ = clearer(&|f| f.clear_blocked_locks(start, len));
            // Withdrawn (EINTR), or granted just then.
            rx.recv_timeout(TAKEOVER_WITHDRAW_WAIT)
        };
        let answer = match rx.recv_timeout(TAKEOVER_QUEUE_SETTLE) {
            // Granted at once (nobody held it), or refused.
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(failed(StoreError::new(Op::Lock, ErrorKind::Io)))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Queued at the bricks by now: clear the holder's lock; the bricks grant
                // the queued request as they clear it.
                if let Err(e) = clearer(&|f| f.clear_granted_locks(start, len)) {
                    if let Ok(Ok(())) = withdraw() {
                        return Ok(self.taken_over(name, owner, file, generation));
                    }
                    return Err(failed(e));
                }
                match rx.recv_timeout(wait.saturating_sub(started.elapsed())) {
                    Ok(answer) => answer,
                    Err(_) => match withdraw() {
                        Ok(Ok(())) => Ok(()),
                        _ => {
                            return Err(LockError::Contended {
                                name: name.to_string(),
                                waited: started.elapsed(),
                            })
                        }
                    },
                }
            }
        };
        match answer {
            Ok(()) => Ok(self.taken_over(name, owner, file, generation)),
            // Withdrawn by another's clear-locks of waiting requests.
            Err(gfapi::Error::Call { errno, .. }) if errno == libc::EINTR => {
                Err(LockError::Contended {
                    name: name.to_string(),
                    waited: started.elapsed(),
                })
            }
            Err(e) => Err(failed(err(e))),
        }
    }

    /// Gluster's clear-locks of whole-file inode locks, granted and waiting, on the image
    /// (through the store's own image fd: opening the image by its path looks it up, and
    /// AFR's lookup of a file a stopped writer left marked waits for that writer's lock
    /// to heal it) and on each `<file>.<name>` that exists, and of entry locks on the name
    /// `<file>.<name>` in its directory: AFR's, which a stopped writer keeps (its eager
    /// lock on the image under load, its lock on the record it was writing, its rename's
    /// lock on the record's name; measured on a replica 3 volume of 10.3,
    /// docs/fencing.md). Only whole-file inode locks (`WHOLE_FILE`): AFR's transactions
    /// lock the whole file, a self-heal copying the image locks the chunk it copies, and
    /// that lock stays, so no write lands in a chunk while the heal copies it.
    fn clear_write_locks(&self, names: &[&'static str]) -> Result<u32, StoreError> {
        let err = |e: gfapi::Error| gfapi_error(Op::Lock, &e);
        let Some(Handle { file, .. }) = self.link.handle() else {
            return Err(StoreError::from_errno(Op::Lock, libc::ENOTCONN));
        };
        // Exactly the range AFR's transactions lock: from 0 to the end of the file.
        const WHOLE_FILE: (u64, u64) = (0, 0);
        let mut cleared = file
            .clear_inode_locks(WHOLE_FILE.0, WHOLE_FILE.1)
            .map_err(err)?;
        for name in names {
            let (vol, path) = self.metadata_path(name, Op::Lock)?;
            match File::open(&vol, &path, libc::O_RDONLY) {
                Ok(object) => {
                    cleared += object
                        .clear_inode_locks(WHOLE_FILE.0, WHOLE_FILE.1)
                        .map_err(err)?
                }
                Err(e) if e.errno() == Some(libc::ENOENT) => {}
                Err(e) => return Err(err(e)),
            }
            let (dir, base) = match path.rsplit_once('/') {
                Some((dir, base)) if !dir.is_empty() => (dir, base),
                Some((_, base)) => ("/", base),
                None => ("/", path.as_str()),
            };
            cleared += vol.clear_entry_locks(dir, base).map_err(err)?;
        }
        Ok(cleared)
    }

    /// Gluster's clear-locks on the LUN file (`gfapi::File::clear_granted_locks`, through
    /// an fd of its own): every client's granted lock on exactly the range of `name`
    /// goes, a stalled holder's too (measured on 10.3, docs/fencing.md).
    fn clear_lock(&self, name: &str) -> Result<bool, StoreError> {
        let (start, len) = if name == store_api::DATA_FENCE {
            store_api::DATA_FENCE_RANGE
        } else {
            store_api::metadata_lock_range(name)
        };
        let (vol, _) = self.metadata_path(name, Op::Lock)?;
        let err = |e: gfapi::Error| gfapi_error(Op::Lock, &e);
        let cleared = self
            .clear_through_own_fd(&vol, &|f| f.clear_granted_locks(start, len))
            .map_err(err)?;
        Ok(cleared > 0)
    }
}

/// How long [`GlfsStore::take_lock_over`]'s waiting request is given to reach the bricks
/// before the holder's lock is cleared (one round trip: 0.3 to 1 ms on the development
/// machine).
const TAKEOVER_QUEUE_SETTLE: Duration = Duration::from_millis(50);

/// How long [`GlfsStore::take_lock_over`] waits for the answer to its waiting request once
/// it withdrew it.
const TAKEOVER_WITHDRAW_WAIT: Duration = Duration::from_secs(1);

impl GlfsStore {
    /// Runs a clear-locks request `what` through an fd of the image of its own, under a
    /// lock owner of its own, on a thread of its own: closing an fd flushes it under the
    /// closing thread's lock owner (the fd's, when it has one), and the bricks then drop
    /// every lock of that owner on the file from this mount; closed under the empty owner
    /// it would let go of this store's data fence (measured live, docs/fencing.md), and
    /// the calling thread keeps the lock owner it had.
    fn clear_through_own_fd(
        &self,
        vol: &Arc<Volume>,
        what: &(dyn Fn(&File) -> Result<u32, gfapi::Error> + Sync),
    ) -> Result<u32, gfapi::Error> {
        static CLEARS: AtomicU64 = AtomicU64::new(0);
        let n = CLEARS.fetch_add(1, Ordering::Relaxed);
        let lk_owner = format!("glfs-iscsi:clear:{}:{n}", std::process::id());
        std::thread::scope(|t| {
            t.spawn(|| {
                let f = File::open(vol, &self.link.path, libc::O_RDONLY)?;
                f.set_lock_owner(lk_owner.as_bytes())?;
                what(&f)
            })
            .join()
            .unwrap_or(Err(gfapi::Error::Call {
                call: "glfs_fgetxattr",
                errno: libc::EIO,
            }))
        })
    }

    /// The guard of the data fence taken through `file`, the image fd of mount
    /// `generation`.
    fn fence_guard(&self, owner: &LockOwner, file: Arc<File>, generation: u64) -> MetadataLock {
        let name = store_api::DATA_FENCE;
        // From now on this store's writes go only to the file of this generation.
        self.link.fenced_on.store(generation, Ordering::Release);
        // Held while the store still uses the fd it was taken through: a lost connection
        // or a reconnect (a new mount, a new fd) leaves it behind, and Gluster drops the
        // lock with the old connection.
        let link = Arc::downgrade(&self.link);
        MetadataLock::new(name, owner, LockMode::Exclusive, DataFence(file)).with_check(move || {
            link.upgrade()
                .and_then(|l| l.handle())
                .is_some_and(|h| h.generation == generation)
        })
    }

    /// The guard of lock `name` taken over through `file` (`generation`: the image fd of
    /// that mount, for the data fence).
    fn taken_over(
        &self,
        name: &str,
        owner: &LockOwner,
        file: Arc<File>,
        generation: Option<u64>,
    ) -> MetadataLock {
        match generation {
            Some(generation) => self.fence_guard(owner, file, generation),
            None => MetadataLock::new(name, owner, LockMode::Exclusive, file),
        }
    }
}

/// A held data fence: the mandatory lock on the image fd, released when dropped.
struct DataFence(Arc<File>);

impl Drop for DataFence {
    fn drop(&mut self) {
        let (start, len) = store_api::DATA_FENCE_RANGE;
        // Under the empty lock owner it was taken with (see `fence_data`).
        let file = &self.0;
        let released = std::thread::scope(|s| {
            s.spawn(|| file.unlock_mandatory(start, len))
                .join()
                .unwrap_or(Ok(()))
        });
        if let Err(e) = released {
            // the fd's mount is gone, and with it the lock
            tracing::debug!("data fence release: {e}");
        }
    }
}

/// The largest metadata object read back (a corrupt size must not allocate gigabytes).
const MAX_METADATA: u64 = 1 << 20;

fn gfapi_error(op: Op, e: &gfapi::Error) -> StoreError {
    match e.errno() {
        Some(errno) => StoreError::from_errno(op, errno),
        None => StoreError::new(op, ErrorKind::Io),
    }
}

impl GlfsStore {
    /// The volume and the path of metadata object `name`: `<file>.<name>`.
    fn metadata_path(&self, name: &str, op: Op) -> Result<(Arc<Volume>, String), StoreError> {
        if !store_api::valid_metadata_name(name) {
            return Err(StoreError::new(op, ErrorKind::OutOfRange));
        }
        let Some(Handle { file, .. }) = self.link.handle() else {
            return Err(StoreError::from_errno(op, libc::ENOTCONN));
        };
        Ok((file.volume().clone(), format!("{}.{name}", self.link.path)))
    }
}
