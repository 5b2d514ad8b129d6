//! A logged-in libiscsi session to one LUN.

use anyhow::{bail, Context, Result};
use libiscsi_sys as sys;
use std::ffi::{CStr, CString};

/// Seconds after which libiscsi gives up on a PDU (login, logout, commands).
pub const COMMAND_TIMEOUT_SECS: i32 = 15;

/// A normal session logged in to one LUN, with the LUN's geometry. Logs out and
/// frees the context on drop.
pub struct Session {
    ctx: *mut sys::iscsi_context,
    lun: i32,
    block_size: u32,
    num_blocks: u64,
}

/// The parts of an `iscsi://host[:port]/target-iqn/lun` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host[:port]`.
    pub portal: String,
    /// Target name.
    pub target: String,
    /// LUN.
    pub lun: i32,
}

fn field(buf: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The context's last error text.
pub(crate) fn last_error(ctx: *mut sys::iscsi_context) -> String {
    // SAFETY: ctx is a live context; the text is owned by it and copied at once.
    unsafe {
        let p = sys::iscsi_get_error(ctx);
        if p.is_null() {
            "unknown error".into()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

impl Session {
    /// Parses `url`, logs in as `initiator` (no header digest) and reads the LUN's
    /// capacity.
    pub fn connect(url: &str, initiator: &str) -> Result<Session> {
        Self::connect_with_digest(url, initiator, false)
    }

    /// [`Session::connect`], offering only HeaderDigest=CRC32C when `header_digest`.
    pub fn connect_with_digest(url: &str, initiator: &str, header_digest: bool) -> Result<Session> {
        let name = CString::new(initiator).context("initiator name contains NUL")?;
        // SAFETY: plain constructor; checked for NULL.
        let ctx = unsafe { sys::iscsi_create_context(name.as_ptr()) };
        if ctx.is_null() {
            bail!("libiscsi could not create a context");
        }
        // From here on `session` owns ctx and frees it on every error path.
        let mut session = Session {
            ctx,
            lun: 0,
            block_size: 0,
            num_blocks: 0,
        };
        let parsed = session.parse_url(url)?;
        session.lun = parsed.lun;
        let target = CString::new(parsed.target.clone())?;
        let portal = CString::new(parsed.portal.clone())?;
        // SAFETY: ctx is live; strings outlive the calls (libiscsi copies them).
        unsafe {
            sys::iscsi_set_targetname(ctx, target.as_ptr());
            sys::iscsi_set_session_type(ctx, sys::ISCSI_SESSION_NORMAL);
            let digest = if header_digest {
                sys::ISCSI_HEADER_DIGEST_CRC32C
            } else {
                sys::ISCSI_HEADER_DIGEST_NONE
            };
            sys::iscsi_set_header_digest(ctx, digest);
            // A lost connection must end the run, not stall it in reconnects.
            sys::iscsi_set_noautoreconnect(ctx, 1);
            // Bounds login, logout and every command (libiscsi checks it while
            // servicing the context): a hung target cannot hang the run.
            sys::iscsi_set_timeout(ctx, COMMAND_TIMEOUT_SECS);
            if sys::iscsi_full_connect_sync(ctx, portal.as_ptr(), parsed.lun) != 0 {
                bail!(
                    "login to {} at {} failed: {}",
                    parsed.target,
                    parsed.portal,
                    last_error(ctx)
                );
            }
        }
        session.read_capacity()?;
        Ok(session)
    }

    fn parse_url(&self, url: &str) -> Result<Url> {
        let c_url = CString::new(url).context("URL contains NUL")?;
        // SAFETY: ctx is live; the returned struct is read and freed here.
        unsafe {
            let u = sys::iscsi_parse_full_url(self.ctx, c_url.as_ptr());
            if u.is_null() {
                bail!(
                    "bad URL {url:?} (want iscsi://host[:port]/target-iqn/lun): {}",
                    last_error(self.ctx)
                );
            }
            let parsed = Url {
                portal: field(&(*u).portal),
                target: field(&(*u).target),
                lun: (*u).lun,
            };
            sys::iscsi_destroy_url(u);
            Ok(parsed)
        }
    }

    fn read_capacity(&mut self) -> Result<()> {
        // SAFETY: ctx is logged in; the task is checked and freed here.
        unsafe {
            let task = sys::iscsi_readcapacity16_sync(self.ctx, self.lun);
            if task.is_null() {
                bail!("READ CAPACITY(16) failed: {}", last_error(self.ctx));
            }
            if (*task).status != sys::SCSI_STATUS_GOOD {
                let status = (*task).status;
                sys::scsi_free_scsi_task(task);
                bail!(
                    "READ CAPACITY(16) ended with status {status:#x}: {}",
                    last_error(self.ctx)
                );
            }
            let rc = sys::scsi_datain_unmarshall(task) as *const sys::scsi_readcapacity16;
            if rc.is_null() {
                sys::scsi_free_scsi_task(task);
                bail!("READ CAPACITY(16) returned unreadable data");
            }
            self.block_size = (*rc).block_length;
            self.num_blocks = (*rc).returned_lba + 1;
            sys::scsi_free_scsi_task(task);
        }
        if self.block_size == 0 {
            bail!("the LUN reports a block size of 0");
        }
        Ok(())
    }

    /// The libiscsi context (valid while `self` lives).
    pub fn context(&self) -> *mut sys::iscsi_context {
        self.ctx
    }

    /// The LUN commands go to.
    pub fn lun(&self) -> i32 {
        self.lun
    }

    /// The LUN's logical block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The LUN's capacity in logical blocks.
    pub fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: ctx is live and owned by us; nothing uses it after this.
        unsafe {
            if sys::iscsi_is_logged_in(self.ctx) != 0 {
                sys::iscsi_logout_sync(self.ctx);
            }
            sys::iscsi_destroy_context(self.ctx);
        }
    }
}
