//! A synchronous iSCSI initiator over libiscsi.
//!
//! [`Initiator`] owns one libiscsi context logged in to one target and addresses
//! one LUN at a time (see [`Initiator::set_lun`]). Every call blocks until the
//! target answers or the per-PDU timeout of [`ConnectOptions::timeout_secs`]
//! expires.
//!
//! Errors come in three kinds (see [`Error`]):
//! * [`Error::Iscsi`]: libiscsi could not do the job (TCP connect refused, login
//!   rejected, connection dropped, timeout, ...); the message is libiscsi's own
//!   `iscsi_get_error` text;
//! * [`Error::Scsi`]: the command completed with a status other than GOOD; the
//!   [`ScsiError`] carries the status byte and the sense data, so tests can assert
//!   on sense key / ASC / ASCQ;
//! * [`Error::InvalidArgument`]: the request cannot be expressed (LBA too large for
//!   a 10-byte CDB, data not a multiple of the block size, ...).
//!
//! [`Initiator::raw_command`] sends any CDB and returns a [`CommandOutcome`] for
//! every completed command, whatever its status.
//!
//! ```no_run
//! use testkit::initiator::Initiator;
//! # fn main() -> Result<(), testkit::initiator::Error> {
//! let mut ini = Initiator::connect("127.0.0.1:3260", "iqn.2026-01.example:disk", 0)?;
//! let (blocks, block_size) = ini.read_capacity16()?;
//! ini.write10(0, &vec![0xa5; block_size as usize], block_size)?;
//! assert_eq!(ini.read10(0, 1, block_size)?, vec![0xa5; block_size as usize]);
//! # let _ = blocks;
//! ini.logout()?;
//! # Ok(()) }
//! ```

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

use libiscsi_sys as ffi;

/// Initiator name used when [`ConnectOptions::initiator_name`] is not set.
pub const DEFAULT_INITIATOR_NAME: &str = "iqn.2026-01.dev.testkit:initiator";

/// Largest LUN libiscsi can address (it encodes LUNs with the single level
/// peripheral or flat space addressing methods, 14 bits).
pub const MAX_LUN: u64 = 0x3fff;

/// Result type of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong with an initiator call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// libiscsi failed: connection, login, logout, transport or timeout.
    Iscsi {
        /// The operation that failed (e.g. `"connect"`, `"READ(10)"`).
        op: String,
        /// libiscsi's `iscsi_get_error()` text, possibly prefixed with detail.
        message: String,
    },
    /// The command completed with a SCSI status other than GOOD/CONDITION MET.
    Scsi(ScsiError),
    /// The arguments cannot be turned into the requested command.
    InvalidArgument(String),
}

impl Error {
    /// The SCSI error, if this is one.
    pub fn scsi(&self) -> Option<&ScsiError> {
        match self {
            Error::Scsi(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Iscsi { op, message } => write!(f, "iscsi {op} failed: {message}"),
            Error::Scsi(e) => e.fmt(f),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ScsiError> for Error {
    fn from(e: ScsiError) -> Self {
        Error::Scsi(e)
    }
}

/// A SCSI command that completed with a non-GOOD status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiError {
    /// The command (e.g. `"WRITE(10)"`).
    pub op: String,
    /// SCSI status byte (0x02 CHECK CONDITION, 0x08 BUSY, 0x18 RESERVATION CONFLICT, ...).
    pub status: u8,
    /// Sense key (0 when there is no sense data).
    pub sense_key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// The raw sense bytes as sent by the target (without the 2-byte SenseLength).
    pub sense: Vec<u8>,
}

impl fmt::Display for ScsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: status {}", self.op, status_name(self.status))?;
        if self.status == 0x02 {
            write!(
                f,
                ", sense key {} (0x{:x}), ASC/ASCQ 0x{:02x}/0x{:02x} ({})",
                sense_key_name(self.sense_key),
                self.sense_key,
                self.asc,
                self.ascq,
                ascq_name(self.asc, self.ascq)
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ScsiError {}

/// How the target's residual count is to be read (RFC 7143 11.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidualKind {
    /// Neither U nor O was set.
    None,
    /// U bit: the target transferred `residual` bytes less than expected.
    Underflow,
    /// O bit: the target had `residual` more bytes than expected.
    Overflow,
}

/// Everything a completed command returned, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// SCSI status byte.
    pub status: u8,
    /// Sense key (0 without sense data).
    pub sense_key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// Raw sense bytes (empty unless status is CHECK CONDITION).
    pub sense: Vec<u8>,
    /// Data-in received (empty on CHECK CONDITION).
    pub data: Vec<u8>,
    /// Residual count from the SCSI Response / final Data-In.
    pub residual: u64,
    /// Whether `residual` is an underflow or an overflow.
    pub residual_kind: ResidualKind,
}

impl CommandOutcome {
    /// Status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == 0x00
    }

    /// Turns a non-GOOD outcome into a [`ScsiError`] named `op`.
    pub fn into_result(self, op: &str) -> Result<CommandOutcome> {
        if self.status == 0x00 || self.status == 0x04 {
            Ok(self)
        } else {
            Err(Error::Scsi(ScsiError {
                op: op.to_string(),
                status: self.status,
                sense_key: self.sense_key,
                asc: self.asc,
                ascq: self.ascq,
                sense: self.sense,
            }))
        }
    }
}

/// The data direction of a [`Initiator::raw_command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    None,
    Read,
    Write,
}

/// Header digest to negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderDigest {
    /// Offer `None` only (libiscsi default).
    #[default]
    None,
    /// Offer `None,CRC32C`.
    NoneCrc32c,
    /// Offer `CRC32C,None`.
    Crc32cNone,
    /// Offer `CRC32C` only.
    Crc32c,
}

/// Login options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// InitiatorName; [`DEFAULT_INITIATOR_NAME`] when `None`.
    pub initiator_name: Option<String>,
    /// HeaderDigest to offer.
    pub header_digest: HeaderDigest,
    /// CHAP user name and secret the initiator answers with.
    pub chap: Option<(String, String)>,
    /// Name and secret the target must answer with (mutual CHAP; needs `chap`).
    pub mutual_chap: Option<(String, String)>,
    /// ImmediateData to offer (`None` keeps libiscsi's default, Yes).
    pub immediate_data: Option<bool>,
    /// InitialR2T to offer (`None` keeps libiscsi's default, No).
    pub initial_r2t: Option<bool>,
    /// libiscsi per-PDU timeout in seconds (0 disables it).
    pub timeout_secs: u32,
    /// Send TEST UNIT READY after login until unit attentions are consumed (what
    /// `iscsi_full_connect_sync` does). Turn off to log in without touching the LUN.
    pub test_unit_ready_on_connect: bool,
    /// The ISID, of the random type (RFC 7143 10.12.5: 80h, then the low 24 bits of the
    /// first number and the low 16 bits of the second, the qualifier); `None` lets
    /// libiscsi draw one. Two logins with one name and ISID are one initiator port.
    pub isid: Option<(u32, u32)>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            initiator_name: None,
            header_digest: HeaderDigest::None,
            chap: None,
            mutual_chap: None,
            immediate_data: None,
            initial_r2t: None,
            timeout_secs: 30,
            test_unit_ready_on_connect: true,
            isid: None,
        }
    }
}

/// A target found by SendTargets discovery: its name and TargetAddress values
/// (`address:port,tpgt`).
pub type DiscoveredTarget = (String, Vec<String>);

/// An owned libiscsi context; destroyed on drop unless poisoned.
///
/// libiscsi 1.19's synchronous calls keep a pointer to a stack-allocated state in
/// the PDUs they queue. When such a call gives up early (the event loop failed),
/// the PDU stays queued, and `iscsi_destroy_context` would later run its callback
/// against that dead stack frame. A context in that state is *poisoned*: on drop
/// its socket is closed but the context itself is leaked.
struct Context {
    ptr: NonNull<ffi::iscsi_context>,
    poisoned: bool,
}

impl Context {
    fn new(opts: &ConnectOptions) -> Result<Context> {
        let name = opts
            .initiator_name
            .as_deref()
            .unwrap_or(DEFAULT_INITIATOR_NAME);
        let cname = cstring("initiator name", name)?;
        let raw = unsafe { ffi::iscsi_create_context(cname.as_ptr()) };
        let ptr = NonNull::new(raw).ok_or_else(|| Error::Iscsi {
            op: "create context".into(),
            message: "iscsi_create_context returned NULL".into(),
        })?;
        let ctx = Context {
            ptr,
            poisoned: false,
        };
        ctx.apply(opts)?;
        Ok(ctx)
    }

    fn ptr(&self) -> *mut ffi::iscsi_context {
        self.ptr.as_ptr()
    }

    /// Marks the context as possibly holding PDUs that point at dead stack state.
    fn poison(&mut self) {
        self.poisoned = true;
    }

    fn last_error(&self) -> String {
        let p = unsafe { ffi::iscsi_get_error(self.ptr()) };
        if p.is_null() {
            return "(no error text from libiscsi)".into();
        }
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        if s.is_empty() {
            "(no error text from libiscsi)".into()
        } else {
            s
        }
    }

    /// Turns a libiscsi `int` return code into a `Result`.
    fn check(&self, op: &str, rc: c_int) -> Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::Iscsi {
                op: op.into(),
                message: self.last_error(),
            })
        }
    }

    fn apply(&self, opts: &ConnectOptions) -> Result<()> {
        let digest = match opts.header_digest {
            HeaderDigest::None => ffi::ISCSI_HEADER_DIGEST_NONE,
            HeaderDigest::NoneCrc32c => ffi::ISCSI_HEADER_DIGEST_NONE_CRC32C,
            HeaderDigest::Crc32cNone => ffi::ISCSI_HEADER_DIGEST_CRC32C_NONE,
            HeaderDigest::Crc32c => ffi::ISCSI_HEADER_DIGEST_CRC32C,
        };
        let p = self.ptr();
        self.check("set header digest", unsafe {
            ffi::iscsi_set_header_digest(p, digest)
        })?;
        if let Some((user, secret)) = &opts.chap {
            let (u, s) = (cstring("CHAP user", user)?, cstring("CHAP secret", secret)?);
            self.check("set CHAP credentials", unsafe {
                ffi::iscsi_set_initiator_username_pwd(p, u.as_ptr(), s.as_ptr())
            })?;
        }
        if let Some((user, secret)) = &opts.mutual_chap {
            let (u, s) = (
                cstring("mutual CHAP user", user)?,
                cstring("mutual CHAP secret", secret)?,
            );
            self.check("set mutual CHAP credentials", unsafe {
                ffi::iscsi_set_target_username_pwd(p, u.as_ptr(), s.as_ptr())
            })?;
        }
        if let Some(yes) = opts.immediate_data {
            let v = if yes {
                ffi::ISCSI_IMMEDIATE_DATA_YES
            } else {
                ffi::ISCSI_IMMEDIATE_DATA_NO
            };
            self.check("set ImmediateData", unsafe {
                ffi::iscsi_set_immediate_data(p, v)
            })?;
        }
        if let Some(yes) = opts.initial_r2t {
            let v = if yes {
                ffi::ISCSI_INITIAL_R2T_YES
            } else {
                ffi::ISCSI_INITIAL_R2T_NO
            };
            self.check("set InitialR2T", unsafe {
                ffi::iscsi_set_initial_r2t(p, v)
            })?;
        }
        if let Some((rnd, qualifier)) = opts.isid {
            self.check("set ISID", unsafe {
                ffi::iscsi_set_isid_random(p, rnd, qualifier)
            })?;
        }
        let timeout = c_int::try_from(opts.timeout_secs)
            .map_err(|_| Error::InvalidArgument("timeout_secs too large".into()))?;
        self.check("set timeout", unsafe { ffi::iscsi_set_timeout(p, timeout) })?;
        // A target under test that drops the connection must surface as an error,
        // not be papered over by a silent reconnect + relogin.
        unsafe { ffi::iscsi_set_noautoreconnect(p, 1) };
        Ok(())
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if self.poisoned {
            // Close the socket (a no-op error if already closed), leak the rest.
            unsafe { ffi::iscsi_disconnect(self.ptr()) };
        } else {
            unsafe { ffi::iscsi_destroy_context(self.ptr()) };
        }
    }
}

/// An owned `scsi_task`; freed on drop.
struct Task(NonNull<ffi::scsi_task>);

impl Task {
    fn get(&self) -> &ffi::scsi_task {
        unsafe { self.0.as_ref() }
    }

    /// The raw datain bytes.
    fn datain(&self) -> &[u8] {
        let d = self.get().datain;
        if d.data.is_null() || d.size <= 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(d.data, d.size as usize) }
        }
    }

    fn outcome(&self) -> CommandOutcome {
        let t = self.get();
        let status = (t.status & 0xff) as u8;
        let (data, sense, sense_key, asc, ascq) = if t.status == ffi::SCSI_STATUS_CHECK_CONDITION {
            // On CHECK CONDITION libiscsi leaves the iSCSI sense data segment in
            // datain: a 2-byte big-endian SenseLength followed by the sense bytes.
            let seg = self.datain();
            let sense = if seg.len() >= 2 {
                let len = u16::from_be_bytes([seg[0], seg[1]]) as usize;
                seg[2..].iter().take(len).copied().collect()
            } else {
                Vec::new()
            };
            let s = t.sense;
            (
                Vec::new(),
                sense,
                (s.key & 0x0f) as u8,
                ((s.ascq >> 8) & 0xff) as u8,
                (s.ascq & 0xff) as u8,
            )
        } else {
            (self.datain().to_vec(), Vec::new(), 0, 0, 0)
        };
        let residual_kind = match t.residual_status {
            ffi::SCSI_RESIDUAL_UNDERFLOW => ResidualKind::Underflow,
            ffi::SCSI_RESIDUAL_OVERFLOW => ResidualKind::Overflow,
            _ => ResidualKind::None,
        };
        CommandOutcome {
            status,
            sense_key,
            asc,
            ascq,
            sense,
            data,
            residual: t.residual as u64,
            residual_kind,
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        unsafe { ffi::scsi_free_scsi_task(self.0.as_ptr()) };
    }
}

/// A logged-in iSCSI session to one target, addressing one LUN at a time.
pub struct Initiator {
    ctx: Context,
    lun: c_int,
    portal: String,
    target: String,
    logged_in: bool,
    /// Set by the first transport failure; the session is not used after it.
    broken: Option<String>,
}

// SAFETY: a libiscsi context (built without its optional service thread) is plain
// heap state driven only by the thread that calls into it; `Initiator` has no
// shared references to it, so moving it to another thread is fine. It is not Sync.
unsafe impl Send for Initiator {}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("portal", &self.portal)
            .field("target", &self.target)
            .field("lun", &self.lun)
            .field("logged_in", &self.logged_in)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Initiator {
    /// Connects to `portal` (`"host:port"`), logs in to `target_iqn` and clears
    /// unit attentions on `lun` with TEST UNIT READY, using default options.
    pub fn connect(portal: &str, target_iqn: &str, lun: u64) -> Result<Self> {
        Self::connect_with(portal, target_iqn, lun, &ConnectOptions::default())
    }

    /// [`Initiator::connect`] with explicit options.
    pub fn connect_with(
        portal: &str,
        target_iqn: &str,
        lun: u64,
        opts: &ConnectOptions,
    ) -> Result<Self> {
        let lun = lun_arg(lun)?;
        let ctx = Context::new(opts)?;
        let target = cstring("target name", target_iqn)?;
        let cportal = cstring("portal", portal)?;
        let p = ctx.ptr();
        ctx.check("set target name", unsafe {
            ffi::iscsi_set_targetname(p, target.as_ptr())
        })?;
        ctx.check("set session type", unsafe {
            ffi::iscsi_set_session_type(p, ffi::ISCSI_SESSION_NORMAL)
        })?;
        let tur_lun = if opts.test_unit_ready_on_connect {
            lun
        } else {
            -1
        };
        let rc = unsafe { ffi::iscsi_full_connect_sync(p, cportal.as_ptr(), tur_lun) };
        if rc != 0 {
            return Err(Error::Iscsi {
                op: format!("connect to {portal} target {target_iqn} lun {lun}"),
                message: format!("{}{}", ctx.last_error(), tcp_diagnosis(portal)),
            });
        }
        Ok(Initiator {
            ctx,
            lun,
            portal: portal.to_string(),
            target: target_iqn.to_string(),
            logged_in: true,
            broken: None,
        })
    }

    /// Runs a SendTargets=All discovery session against `portal` and returns every
    /// target with its TargetAddress values (`"address:port,tpgt"`).
    pub fn discover(portal: &str) -> Result<Vec<DiscoveredTarget>> {
        Self::discover_with(portal, &ConnectOptions::default())
    }

    /// [`Initiator::discover`] with explicit options (e.g. CHAP for discovery).
    pub fn discover_with(portal: &str, opts: &ConnectOptions) -> Result<Vec<DiscoveredTarget>> {
        let ctx = Context::new(opts)?;
        let p = ctx.ptr();
        let cportal = cstring("portal", portal)?;
        ctx.check("set session type", unsafe {
            ffi::iscsi_set_session_type(p, ffi::ISCSI_SESSION_DISCOVERY)
        })?;
        if unsafe { ffi::iscsi_connect_sync(p, cportal.as_ptr()) } != 0 {
            return Err(Error::Iscsi {
                op: format!("connect to {portal}"),
                message: format!("{}{}", ctx.last_error(), tcp_diagnosis(portal)),
            });
        }
        ctx.check(&format!("discovery login to {portal}"), unsafe {
            ffi::iscsi_login_sync(p)
        })?;
        let list = unsafe { ffi::iscsi_discovery_sync(p) };
        if list.is_null() && no_error_text(unsafe { ffi::iscsi_get_error(p) }) {
            // libiscsi returns NULL, without an error, for a SendTargets answer that lists
            // no target (e.g. an initiator no ACL admits).
            if unsafe { ffi::iscsi_logout_sync(p) } != 0 {
                let mut ctx = ctx;
                ctx.poison();
            }
            return Ok(Vec::new());
        }
        if list.is_null() {
            let mut ctx = ctx;
            ctx.poison();
            return Err(Error::Iscsi {
                op: format!("SendTargets on {portal}"),
                message: ctx.last_error(),
            });
        }
        let mut out = Vec::new();
        let mut cur = list;
        while !cur.is_null() {
            // SAFETY: libiscsi built this list; it stays valid until freed below.
            let entry = unsafe { &*cur };
            let name = lossy(entry.target_name);
            let mut addrs = Vec::new();
            let mut portal_ptr = entry.portals;
            while !portal_ptr.is_null() {
                let tp = unsafe { &*portal_ptr };
                addrs.push(lossy(tp.portal));
                portal_ptr = tp.next;
            }
            out.push((name, addrs));
            cur = entry.next;
        }
        unsafe { ffi::iscsi_free_discovery_data(p, list) };
        // Best effort: the result is what matters, the context is torn down anyway.
        if unsafe { ffi::iscsi_logout_sync(p) } != 0 {
            let mut ctx = ctx;
            ctx.poison();
        }
        Ok(out)
    }

    /// The portal this session was opened to.
    pub fn portal(&self) -> &str {
        &self.portal
    }

    /// The target IQN this session is logged in to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The LUN commands are sent to.
    pub fn lun(&self) -> u64 {
        self.lun as u64
    }

    /// Sends later commands to `lun`.
    pub fn set_lun(&mut self, lun: u64) -> Result<()> {
        self.lun = lun_arg(lun)?;
        Ok(())
    }

    /// libiscsi's text for the last error on this session.
    pub fn last_error(&self) -> String {
        self.ctx.last_error()
    }

    /// The raw libiscsi context, for calls this wrapper does not cover. It stays
    /// owned by `self` (do not destroy it).
    pub fn as_raw(&self) -> *mut ffi::iscsi_context {
        self.ctx.ptr()
    }

    /// Fails when the session can no longer carry commands.
    fn usable(&self, op: &str) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(Error::Iscsi {
                op: op.to_string(),
                message: format!("session unusable after an earlier failure: {why}"),
            });
        }
        if !self.logged_in {
            return Err(Error::Iscsi {
                op: op.to_string(),
                message: "this session was logged out".into(),
            });
        }
        Ok(())
    }

    /// Runs one synchronous libiscsi SCSI call and returns its task; only
    /// transport failures (no task back, or a libiscsi pseudo status) are errors.
    /// The first such failure marks the session broken: later calls fail at once
    /// instead of driving a dead connection.
    fn run(
        &mut self,
        op: &str,
        call: impl FnOnce(*mut ffi::iscsi_context, c_int) -> *mut ffi::scsi_task,
    ) -> Result<Task> {
        self.usable(op)?;
        // libiscsi keeps its last error text around; only text set by this call
        // says anything about this call.
        let before = self.ctx.last_error();
        let raw = call(self.ctx.ptr(), self.lun);
        let fresh_error = || {
            let now = self.ctx.last_error();
            if now == before {
                "no error text from libiscsi".to_string()
            } else {
                now
            }
        };
        let Some(task) = NonNull::new(raw).map(Task) else {
            let message = fresh_error();
            self.ctx.poison();
            self.broken = Some(format!("{op}: {message}"));
            return Err(Error::Iscsi {
                op: op.to_string(),
                message,
            });
        };
        let status = task.get().status;
        let pseudo = match status {
            ffi::SCSI_STATUS_CANCELLED => {
                Some("command cancelled (connection lost or session reset)")
            }
            ffi::SCSI_STATUS_ERROR => Some("transport error"),
            ffi::SCSI_STATUS_TIMEOUT => Some("command timed out"),
            s if !(0..=0xff).contains(&s) => Some("unexpected libiscsi status"),
            _ => None,
        };
        match pseudo {
            Some(what) => {
                let message = format!("{what} (0x{status:x}): {}", fresh_error());
                self.broken = Some(format!("{op}: {message}"));
                Err(Error::Iscsi {
                    op: op.to_string(),
                    message,
                })
            }
            None => Ok(task),
        }
    }

    /// [`Initiator::run`], with statuses other than GOOD/CONDITION MET turned into
    /// [`Error::Scsi`].
    fn run_ok(
        &mut self,
        op: &str,
        call: impl FnOnce(*mut ffi::iscsi_context, c_int) -> *mut ffi::scsi_task,
    ) -> Result<Task> {
        let task = self.run(op, call)?;
        let status = task.get().status;
        if status == ffi::SCSI_STATUS_GOOD || status == ffi::SCSI_STATUS_CONDITION_MET {
            return Ok(task);
        }
        let o = task.outcome();
        Err(Error::Scsi(ScsiError {
            op: op.to_string(),
            status: o.status,
            sense_key: o.sense_key,
            asc: o.asc,
            ascq: o.ascq,
            sense: o.sense,
        }))
    }

    /// TEST UNIT READY.
    pub fn test_unit_ready(&mut self) -> Result<()> {
        self.run_ok("TEST UNIT READY", |c, lun| unsafe {
            ffi::iscsi_testunitready_sync(c, lun)
        })
        .map(drop)
    }

    /// INQUIRY with the given EVPD bit, page code and allocation length; returns the
    /// data-in bytes.
    pub fn inquiry(&mut self, evpd: bool, page: u8, alloc_len: u16) -> Result<Vec<u8>> {
        let task = self.run_ok("INQUIRY", |c, lun| unsafe {
            ffi::iscsi_inquiry_sync(
                c,
                lun,
                c_int::from(evpd),
                c_int::from(page),
                c_int::from(alloc_len),
            )
        })?;
        Ok(task.datain().to_vec())
    }

    /// READ CAPACITY(10): `(number of blocks, block size)`.
    pub fn read_capacity10(&mut self) -> Result<(u64, u32)> {
        let task = self.run_ok("READ CAPACITY(10)", |c, lun| unsafe {
            ffi::iscsi_readcapacity10_sync(c, lun, 0, 0)
        })?;
        let d = task.datain();
        if d.len() < 8 {
            return Err(short_data("READ CAPACITY(10)", 8, d.len()));
        }
        let last = u32::from_be_bytes(d[0..4].try_into().unwrap());
        let bs = u32::from_be_bytes(d[4..8].try_into().unwrap());
        Ok((u64::from(last) + 1, bs))
    }

    /// READ CAPACITY(16): `(number of blocks, block size)`.
    pub fn read_capacity16(&mut self) -> Result<(u64, u32)> {
        let d = self.read_capacity16_raw()?;
        if d.len() < 12 {
            return Err(short_data("READ CAPACITY(16)", 12, d.len()));
        }
        let last = u64::from_be_bytes(d[0..8].try_into().unwrap());
        let bs = u32::from_be_bytes(d[8..12].try_into().unwrap());
        Ok((last + 1, bs))
    }

    /// READ CAPACITY(16) parameter data as received (32 bytes requested).
    pub fn read_capacity16_raw(&mut self) -> Result<Vec<u8>> {
        let task = self.run_ok("READ CAPACITY(16)", |c, lun| unsafe {
            ffi::iscsi_readcapacity16_sync(c, lun)
        })?;
        Ok(task.datain().to_vec())
    }

    /// READ(10) of `blocks` blocks of `block_size` bytes at `lba`.
    pub fn read10(&mut self, lba: u64, blocks: u32, block_size: u32) -> Result<Vec<u8>> {
        let lba = u32::try_from(lba)
            .map_err(|_| Error::InvalidArgument(format!("LBA {lba} does not fit READ(10)")))?;
        if blocks > 0xffff {
            return Err(Error::InvalidArgument(format!(
                "{blocks} blocks do not fit READ(10)"
            )));
        }
        let (len, bs) = xfer_len(blocks, block_size)?;
        let task = self.run_ok("READ(10)", |c, lun| unsafe {
            ffi::iscsi_read10_sync(c, lun, lba, len, bs, 0, 0, 0, 0, 0)
        })?;
        Ok(task.datain().to_vec())
    }

    /// READ(16) of `blocks` blocks of `block_size` bytes at `lba`.
    pub fn read16(&mut self, lba: u64, blocks: u32, block_size: u32) -> Result<Vec<u8>> {
        let (len, bs) = xfer_len(blocks, block_size)?;
        let task = self.run_ok("READ(16)", |c, lun| unsafe {
            ffi::iscsi_read16_sync(c, lun, lba, len, bs, 0, 0, 0, 0, 0)
        })?;
        Ok(task.datain().to_vec())
    }

    /// WRITE(10) of `data` (a whole number of `block_size` blocks) at `lba`.
    pub fn write10(&mut self, lba: u64, data: &[u8], block_size: u32) -> Result<()> {
        let lba = u32::try_from(lba)
            .map_err(|_| Error::InvalidArgument(format!("LBA {lba} does not fit WRITE(10)")))?;
        let (len, bs) = data_len(data, block_size)?;
        if len / block_size > 0xffff {
            return Err(Error::InvalidArgument(
                "transfer too long for WRITE(10)".into(),
            ));
        }
        // libiscsi's prototype takes `unsigned char *` but only reads the buffer.
        let ptr = data.as_ptr() as *mut u8;
        self.run_ok("WRITE(10)", |c, lun| unsafe {
            ffi::iscsi_write10_sync(c, lun, lba, ptr, len, bs, 0, 0, 0, 0, 0)
        })
        .map(drop)
    }

    /// WRITE(16) of `data` (a whole number of `block_size` blocks) at `lba`.
    pub fn write16(&mut self, lba: u64, data: &[u8], block_size: u32) -> Result<()> {
        let (len, bs) = data_len(data, block_size)?;
        let ptr = data.as_ptr() as *mut u8;
        self.run_ok("WRITE(16)", |c, lun| unsafe {
            ffi::iscsi_write16_sync(c, lun, lba, ptr, len, bs, 0, 0, 0, 0, 0)
        })
        .map(drop)
    }

    /// SYNCHRONIZE CACHE(10) over the whole LUN.
    pub fn synchronize_cache(&mut self) -> Result<()> {
        self.run_ok("SYNCHRONIZE CACHE(10)", |c, lun| unsafe {
            ffi::iscsi_synchronizecache10_sync(c, lun, 0, 0, 0, 0)
        })
        .map(drop)
    }

    /// REPORT LUNS (select report 0, sent to LUN 0 whatever [`Initiator::lun`] is):
    /// the 8-byte LUN entries decoded as single-level peripheral/flat LUN numbers.
    pub fn report_luns(&mut self) -> Result<Vec<u64>> {
        let task = self.run_ok("REPORT LUNS", |c, _lun| unsafe {
            ffi::iscsi_reportluns_sync(c, ffi::SCSI_REPORTLUNS_REPORT_ALL_LUNS, 16 * 1024)
        })?;
        let d = task.datain();
        if d.len() < 8 {
            return Err(short_data("REPORT LUNS", 8, d.len()));
        }
        let list_len = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
        let luns = d[8..]
            .chunks_exact(8)
            .take(list_len / 8)
            .map(|l| u64::from(u16::from_be_bytes([l[0] & 0x3f, l[1]])))
            .collect();
        Ok(luns)
    }

    /// MODE SENSE(6) of current values for `page`/`subpage`; returns the data-in.
    pub fn mode_sense6(
        &mut self,
        dbd: bool,
        page: u8,
        subpage: u8,
        alloc_len: u8,
    ) -> Result<Vec<u8>> {
        let task = self.run_ok("MODE SENSE(6)", |c, lun| unsafe {
            ffi::iscsi_modesense6_sync(
                c,
                lun,
                c_int::from(dbd),
                ffi::SCSI_MODESENSE_PC_CURRENT,
                c_int::from(page),
                c_int::from(subpage),
                alloc_len,
            )
        })?;
        Ok(task.datain().to_vec())
    }

    /// Sends `cdb` (1..=16 bytes). A non-empty `data_out` is sent as data-out;
    /// otherwise `expected_in_len` bytes of data-in are expected (0: no data).
    /// Every completed command returns `Ok`, whatever its SCSI status; only
    /// transport failures are errors.
    pub fn raw_command(
        &mut self,
        cdb: &[u8],
        data_out: &[u8],
        expected_in_len: usize,
    ) -> Result<CommandOutcome> {
        if cdb.is_empty() || cdb.len() > ffi::SCSI_CDB_MAX_SIZE {
            return Err(Error::InvalidArgument(format!(
                "CDB length {} not in 1..=16",
                cdb.len()
            )));
        }
        let dir = match (data_out.is_empty(), expected_in_len) {
            (true, 0) => Direction::None,
            (true, _) => Direction::Read,
            (false, 0) => Direction::Write,
            (false, _) => {
                return Err(Error::InvalidArgument(
                    "bidirectional commands are not supported".into(),
                ))
            }
        };
        let (xfer_dir, xfer_len) = match dir {
            Direction::None => (ffi::SCSI_XFER_NONE, 0),
            Direction::Read => (ffi::SCSI_XFER_READ, expected_in_len),
            Direction::Write => (ffi::SCSI_XFER_WRITE, data_out.len()),
        };
        let xfer_len = c_int::try_from(xfer_len)
            .map_err(|_| Error::InvalidArgument("transfer length too large".into()))?;
        let op = format!("SCSI command 0x{:02x}", cdb[0]);
        self.usable(&op)?;
        let mut cdb_buf = [0u8; ffi::SCSI_CDB_MAX_SIZE];
        cdb_buf[..cdb.len()].copy_from_slice(cdb);
        let raw = unsafe {
            ffi::scsi_create_task(cdb.len() as c_int, cdb_buf.as_mut_ptr(), xfer_dir, xfer_len)
        };
        if raw.is_null() {
            return Err(Error::Iscsi {
                op,
                message: "scsi_create_task returned NULL".into(),
            });
        }
        let mut out = ffi::iscsi_data {
            size: data_out.len(),
            // Only read by libiscsi.
            data: data_out.as_ptr() as *mut u8,
        };
        let data_ptr = if dir == Direction::Write {
            &mut out as *mut ffi::iscsi_data
        } else {
            std::ptr::null_mut()
        };
        // On success libiscsi hands `raw` back and `run` owns it. When it returns
        // NULL the task may still hang off a queued PDU, so it is leaked.
        let task = self.run(&op, |c, lun| unsafe {
            ffi::iscsi_scsi_command_sync(c, lun, raw, data_ptr)
        })?;
        Ok(task.outcome())
    }

    /// Logs out (and closes the connection). Later commands fail with
    /// [`Error::Iscsi`]. Dropping the initiator without logging out just closes
    /// the connection.
    pub fn logout(&mut self) -> Result<()> {
        if !self.logged_in {
            return Ok(());
        }
        self.logged_in = false;
        if self.broken.is_some() {
            // Nothing sensible can be sent on a broken session.
            unsafe { ffi::iscsi_disconnect(self.ctx.ptr()) };
            return Ok(());
        }
        let rc = unsafe { ffi::iscsi_logout_sync(self.ctx.ptr()) };
        if rc != 0 {
            self.ctx.poison();
        }
        let res = self.ctx.check("logout", rc);
        unsafe { ffi::iscsi_disconnect(self.ctx.ptr()) };
        res
    }
}

/// libiscsi often replaces the socket error of a failed connect with a generic
/// "Can not reconnect right now"; a plain TCP connect tells what really happened.
fn tcp_diagnosis(portal: &str) -> String {
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;
    let with_port = if portal.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':')
    }) {
        portal.to_string()
    } else {
        format!("{portal}:3260")
    };
    let addrs = match with_port.to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return format!(" [cannot resolve {with_port}: {e}]"),
    };
    let Some(addr) = addrs.first() else {
        return format!(" [{with_port} resolves to no address]");
    };
    match TcpStream::connect_timeout(addr, Duration::from_secs(2)) {
        Ok(_) => format!(" [TCP connect to {addr} works, so the failure is in iSCSI login]"),
        Err(e) => format!(" [TCP connect to {addr}: {e}]"),
    }
}

fn lun_arg(lun: u64) -> Result<c_int> {
    if lun > MAX_LUN {
        return Err(Error::InvalidArgument(format!(
            "LUN {lun} is above {MAX_LUN}, which libiscsi cannot address"
        )));
    }
    Ok(lun as c_int)
}

fn xfer_len(blocks: u32, block_size: u32) -> Result<(u32, c_int)> {
    let bs = c_int::try_from(block_size)
        .ok()
        .filter(|&b| b > 0)
        .ok_or_else(|| Error::InvalidArgument(format!("bad block size {block_size}")))?;
    let len = blocks
        .checked_mul(block_size)
        .ok_or_else(|| Error::InvalidArgument("transfer length overflows u32".into()))?;
    Ok((len, bs))
}

// `usize::is_multiple_of` needs Rust 1.87; the workspace supports 1.80.
#[allow(unknown_lints, clippy::manual_is_multiple_of)]
fn data_len(data: &[u8], block_size: u32) -> Result<(u32, c_int)> {
    if block_size == 0 || data.len() % block_size as usize != 0 {
        return Err(Error::InvalidArgument(format!(
            "{} bytes is not a whole number of {block_size}-byte blocks",
            data.len()
        )));
    }
    let blocks = u32::try_from(data.len() / block_size as usize)
        .map_err(|_| Error::InvalidArgument("transfer too long".into()))?;
    xfer_len(blocks, block_size)
}

fn short_data(op: &str, want: usize, got: usize) -> Error {
    Error::Iscsi {
        op: op.to_string(),
        message: format!("target returned {got} bytes of data-in, need at least {want}"),
    }
}

fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidArgument(format!("{what} contains a NUL byte")))
}

/// True for a NULL or empty libiscsi error string.
fn no_error_text(p: *const c_char) -> bool {
    // SAFETY: libiscsi's error text is NULL or a NUL-terminated string in the context.
    p.is_null() || unsafe { CStr::from_ptr(p) }.to_bytes().is_empty()
}

fn lossy(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

fn status_name(status: u8) -> String {
    let name = match status {
        0x00 => "GOOD",
        0x02 => "CHECK CONDITION",
        0x04 => "CONDITION MET",
        0x08 => "BUSY",
        0x18 => "RESERVATION CONFLICT",
        0x28 => "TASK SET FULL",
        0x30 => "ACA ACTIVE",
        0x40 => "TASK ABORTED",
        _ => return format!("0x{status:02x}"),
    };
    format!("{name} (0x{status:02x})")
}

fn sense_key_name(key: u8) -> &'static str {
    match key {
        0x0 => "NO SENSE",
        0x1 => "RECOVERED ERROR",
        0x2 => "NOT READY",
        0x3 => "MEDIUM ERROR",
        0x4 => "HARDWARE ERROR",
        0x5 => "ILLEGAL REQUEST",
        0x6 => "UNIT ATTENTION",
        0x7 => "DATA PROTECT",
        0x8 => "BLANK CHECK",
        0x9 => "VENDOR SPECIFIC",
        0xa => "COPY ABORTED",
        0xb => "ABORTED COMMAND",
        0xd => "VOLUME OVERFLOW",
        0xe => "MISCOMPARE",
        _ => "RESERVED",
    }
}

fn ascq_name(asc: u8, ascq: u8) -> String {
    let code = (c_int::from(asc) << 8) | c_int::from(ascq);
    lossy(unsafe { ffi::scsi_sense_ascq_str(code) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_refused_reports_libiscsi_error_text() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = Initiator::connect(&format!("127.0.0.1:{port}"), "iqn.2026-01.test:none", 0)
            .unwrap_err();
        let Error::Iscsi { op, message } = &err else {
            panic!("expected an iscsi error, got {err:?}");
        };
        assert!(op.contains(&format!("127.0.0.1:{port}")), "{op}");
        assert!(
            message.contains("Connection refused"),
            "TCP diagnosis missing: {message}"
        );
        assert!(err.to_string().starts_with("iscsi connect to 127.0.0.1:"));
    }

    #[test]
    fn discover_refused_reports_libiscsi_error_text() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = Initiator::discover(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(matches!(err, Error::Iscsi { .. }), "{err:?}");
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[test]
    fn silent_target_login_times_out() {
        // Accepts the TCP connection and never answers the Login Request.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            // Hold the connection open until the test is finished with it.
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(30));
            drop(conn);
        });
        let opts = ConnectOptions {
            timeout_secs: 2,
            ..ConnectOptions::default()
        };
        let started = std::time::Instant::now();
        let err =
            Initiator::connect_with(&format!("127.0.0.1:{port}"), "iqn.x:y", 0, &opts).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, Error::Iscsi { .. }), "{err:?}");
        assert!(
            took < std::time::Duration::from_secs(7),
            "took {took:?}: {err}"
        );
        eprintln!("silent target after {took:?}: {err}");
        drop(done_tx);
        holder.join().unwrap();
    }

    #[test]
    fn lun_above_libiscsi_range_is_rejected_before_connecting() {
        let err = Initiator::connect("127.0.0.1:1", "iqn.x", MAX_LUN + 1).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidArgument(
                "LUN 16384 is above 16383, which libiscsi cannot address".into()
            )
        );
    }

    #[test]
    fn data_len_requires_whole_blocks() {
        assert_eq!(data_len(&[0; 1024], 512).unwrap(), (1024, 512));
        assert!(matches!(
            data_len(&[0; 1000], 512),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            data_len(&[0; 512], 0),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn scsi_error_display_names_status_and_sense() {
        // LOGICAL BLOCK ADDRESS OUT OF RANGE is ASC 0x21 ASCQ 0x00 (SPC-4 table D.1).
        let e = ScsiError {
            op: "READ(10)".into(),
            status: 0x02,
            sense_key: 0x5,
            asc: 0x21,
            ascq: 0x00,
            sense: vec![],
        };
        let text = e.to_string();
        assert!(
            text.starts_with(
                "READ(10): status CHECK CONDITION (0x02), sense key ILLEGAL REQUEST (0x5), ASC/ASCQ 0x21/0x00 ("
            ),
            "{text}"
        );
        let busy = ScsiError {
            op: "WRITE(10)".into(),
            status: 0x08,
            sense_key: 0,
            asc: 0,
            ascq: 0,
            sense: vec![],
        };
        assert_eq!(busy.to_string(), "WRITE(10): status BUSY (0x08)");
    }

    #[test]
    fn outcome_into_result_keeps_good_and_converts_check_condition() {
        let good = CommandOutcome {
            status: 0,
            sense_key: 0,
            asc: 0,
            ascq: 0,
            sense: vec![],
            data: vec![1, 2, 3],
            residual: 0,
            residual_kind: ResidualKind::None,
        };
        assert_eq!(good.clone().into_result("X").unwrap(), good);
        let cc = CommandOutcome {
            status: 2,
            sense_key: 6,
            asc: 0x29,
            ascq: 0x00,
            sense: vec![0x70, 0, 6],
            ..good
        };
        let err = cc.into_result("TEST UNIT READY").unwrap_err();
        let s = err.scsi().unwrap();
        assert_eq!((s.status, s.sense_key, s.asc, s.ascq), (2, 6, 0x29, 0));
        assert_eq!(s.sense, vec![0x70, 0, 6]);
    }
}
