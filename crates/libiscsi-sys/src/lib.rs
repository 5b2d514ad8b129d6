//! FFI to libiscsi (the initiator library) for driving the target from Rust tests.
//!
//! Hand-written declarations for a subset of the libiscsi 1.19 API (Debian 12
//! `libiscsi-dev`, headers `iscsi/iscsi.h` and `iscsi/scsi-lowlevel.h`): the
//! synchronous calls, and the asynchronous ones a `poll()` loop needs
//! ([`iscsi_get_fd`], [`iscsi_which_events`], [`iscsi_service`], the
//! `iscsi_*_task` calls and their [`iscsi_command_cb`] callback).
//! Only the structs whose fields Rust code reads are defined; everything else is
//! opaque. The `#[repr(C)]` structs are checked against the C compiler's view of the
//! real headers by a probe compiled in `build.rs` (see the `layout_tests` module).
//!
//! Conventions of the C API worth knowing:
//! * every `*_sync` SCSI call returns a `scsi_task` (free it with
//!   [`scsi_free_scsi_task`]) or NULL when the command could not be sent or the
//!   connection failed; the task's `status` is then the SCSI status byte, or one of
//!   the libiscsi pseudo statuses [`SCSI_STATUS_CANCELLED`], [`SCSI_STATUS_ERROR`],
//!   [`SCSI_STATUS_TIMEOUT`];
//! * on CHECK CONDITION `task.datain` holds the raw iSCSI sense data segment
//!   (2-byte big-endian SenseLength, then the sense bytes) and `task.sense` the
//!   parsed key and ASC/ASCQ (`ascq` = ASC << 8 | ASCQ);
//! * [`iscsi_get_error`] describes the last failure on a context;
//! * the asynchronous `iscsi_*_task` calls return the task (or NULL when nothing
//!   was queued) and later hand it to the callback exactly once, from inside
//!   [`iscsi_service`]; the callback frees it. Data-out buffers and caller iovecs
//!   are referenced, not copied, so they must outlive the callback. The library
//!   uses `task.ptr` itself for asynchronous tasks: keep per-command state behind
//!   `private_data` instead.

#![allow(non_camel_case_types)]
#![warn(missing_docs)]

use libc::{c_char, c_int, c_uchar, c_void, size_t};

/// Maximum CDB length libiscsi stores in a task (`SCSI_CDB_MAX_SIZE`).
pub const SCSI_CDB_MAX_SIZE: usize = 16;
/// Size of the string buffers in [`iscsi_url`], without the NUL (`MAX_STRING_SIZE`).
pub const MAX_STRING_SIZE: usize = 255;

/// An iSCSI context (session + connection). Opaque.
#[repr(C)]
pub struct iscsi_context {
    _private: [u8; 0],
}

/// Allocation list node hanging off a [`scsi_task`]. Opaque.
#[repr(C)]
pub struct scsi_allocated_memory {
    _private: [u8; 0],
}

/// A mode page as used by MODE SELECT marshalling. Opaque here.
#[repr(C)]
pub struct scsi_mode_page {
    _private: [u8; 0],
}

// ---------------------------------------------------------------------------
// enums (all C enums are int-sized on the supported ABIs; checked by the probe)
// ---------------------------------------------------------------------------

/// `enum iscsi_session_type`: discovery session.
pub const ISCSI_SESSION_DISCOVERY: c_int = 1;
/// `enum iscsi_session_type`: normal session.
pub const ISCSI_SESSION_NORMAL: c_int = 2;

/// `enum iscsi_header_digest`: no header digest.
pub const ISCSI_HEADER_DIGEST_NONE: c_int = 0;
/// `enum iscsi_header_digest`: offer None,CRC32C.
pub const ISCSI_HEADER_DIGEST_NONE_CRC32C: c_int = 1;
/// `enum iscsi_header_digest`: offer CRC32C,None.
pub const ISCSI_HEADER_DIGEST_CRC32C_NONE: c_int = 2;
/// `enum iscsi_header_digest`: require CRC32C.
pub const ISCSI_HEADER_DIGEST_CRC32C: c_int = 3;

/// `enum iscsi_immediate_data`: negotiate ImmediateData=No.
pub const ISCSI_IMMEDIATE_DATA_NO: c_int = 0;
/// `enum iscsi_immediate_data`: negotiate ImmediateData=Yes (libiscsi default).
pub const ISCSI_IMMEDIATE_DATA_YES: c_int = 1;
/// `enum iscsi_initial_r2t`: negotiate InitialR2T=No (libiscsi default).
pub const ISCSI_INITIAL_R2T_NO: c_int = 0;
/// `enum iscsi_initial_r2t`: negotiate InitialR2T=Yes.
pub const ISCSI_INITIAL_R2T_YES: c_int = 1;

/// `enum iscsi_transport_type`: TCP.
pub const TCP_TRANSPORT: c_int = 0;
/// `enum iscsi_transport_type`: iSER.
pub const ISER_TRANSPORT: c_int = 1;

/// `enum scsi_status`: GOOD.
pub const SCSI_STATUS_GOOD: c_int = 0;
/// `enum scsi_status`: CHECK CONDITION.
pub const SCSI_STATUS_CHECK_CONDITION: c_int = 2;
/// `enum scsi_status`: CONDITION MET.
pub const SCSI_STATUS_CONDITION_MET: c_int = 4;
/// `enum scsi_status`: BUSY.
pub const SCSI_STATUS_BUSY: c_int = 8;
/// `enum scsi_status`: RESERVATION CONFLICT.
pub const SCSI_STATUS_RESERVATION_CONFLICT: c_int = 0x18;
/// `enum scsi_status`: TASK SET FULL.
pub const SCSI_STATUS_TASK_SET_FULL: c_int = 0x28;
/// `enum scsi_status`: ACA ACTIVE.
pub const SCSI_STATUS_ACA_ACTIVE: c_int = 0x30;
/// `enum scsi_status`: TASK ABORTED.
pub const SCSI_STATUS_TASK_ABORTED: c_int = 0x40;
/// `enum scsi_status`: libiscsi pseudo status, login redirect.
pub const SCSI_STATUS_REDIRECT: c_int = 0x101;
/// `enum scsi_status`: libiscsi pseudo status, command cancelled.
pub const SCSI_STATUS_CANCELLED: c_int = 0x0f00_0000;
/// `enum scsi_status`: libiscsi pseudo status, transport/protocol error.
pub const SCSI_STATUS_ERROR: c_int = 0x0f00_0001;
/// `enum scsi_status`: libiscsi pseudo status, command timed out.
pub const SCSI_STATUS_TIMEOUT: c_int = 0x0f00_0002;

/// `enum scsi_xfer_dir`: no data.
pub const SCSI_XFER_NONE: c_int = 0;
/// `enum scsi_xfer_dir`: data-in (target to initiator).
pub const SCSI_XFER_READ: c_int = 1;
/// `enum scsi_xfer_dir`: data-out (initiator to target).
pub const SCSI_XFER_WRITE: c_int = 2;

/// `enum scsi_residual`: no residual.
pub const SCSI_RESIDUAL_NO_RESIDUAL: c_int = 0;
/// `enum scsi_residual`: underflow (target moved less than expected).
pub const SCSI_RESIDUAL_UNDERFLOW: c_int = 1;
/// `enum scsi_residual`: overflow (target had more than expected).
pub const SCSI_RESIDUAL_OVERFLOW: c_int = 2;

/// `enum scsi_sense_key`: NO SENSE.
pub const SCSI_SENSE_NO_SENSE: c_int = 0x00;
/// `enum scsi_sense_key`: RECOVERED ERROR.
pub const SCSI_SENSE_RECOVERED_ERROR: c_int = 0x01;
/// `enum scsi_sense_key`: NOT READY.
pub const SCSI_SENSE_NOT_READY: c_int = 0x02;
/// `enum scsi_sense_key`: MEDIUM ERROR.
pub const SCSI_SENSE_MEDIUM_ERROR: c_int = 0x03;
/// `enum scsi_sense_key`: HARDWARE ERROR.
pub const SCSI_SENSE_HARDWARE_ERROR: c_int = 0x04;
/// `enum scsi_sense_key`: ILLEGAL REQUEST.
pub const SCSI_SENSE_ILLEGAL_REQUEST: c_int = 0x05;
/// `enum scsi_sense_key`: UNIT ATTENTION.
pub const SCSI_SENSE_UNIT_ATTENTION: c_int = 0x06;
/// `enum scsi_sense_key`: DATA PROTECT.
pub const SCSI_SENSE_DATA_PROTECTION: c_int = 0x07;
/// `enum scsi_sense_key`: ABORTED COMMAND.
pub const SCSI_SENSE_COMMAND_ABORTED: c_int = 0x0b;
/// `enum scsi_sense_key`: MISCOMPARE.
pub const SCSI_SENSE_MISCOMPARE: c_int = 0x0e;

/// `SCSI_REPORTLUNS_REPORT_ALL_LUNS` select report.
pub const SCSI_REPORTLUNS_REPORT_ALL_LUNS: c_int = 0x00;

/// `enum scsi_modesense_page_control`: current values.
pub const SCSI_MODESENSE_PC_CURRENT: c_int = 0x00;
/// `enum scsi_modesense_page_code`: return all pages.
pub const SCSI_MODEPAGE_RETURN_ALL_PAGES: c_int = 0x3f;

// ---------------------------------------------------------------------------
// structs
// ---------------------------------------------------------------------------

/// `struct scsi_sense`: sense data as parsed by libiscsi.
///
/// The C struct has three one-bit bitfields (`sense_specific`, `ill_param_in_cdb`,
/// `bit_pointer_valid`) packed into the low bits of the byte at offset 12; they are
/// exposed here as the `bitfields` byte with accessor methods.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct scsi_sense {
    /// Response code (0x70/0x71 fixed, 0x72/0x73 descriptor).
    pub error_type: c_uchar,
    /// Sense key (`enum scsi_sense_key`).
    pub key: c_int,
    /// ASC in bits 15..8, ASCQ in bits 7..0.
    pub ascq: c_int,
    /// Bit 0 `sense_specific` (SKSV), bit 1 `ill_param_in_cdb` (C/D), bit 2
    /// `bit_pointer_valid` (BPV).
    pub bitfields: u8,
    /// Bit pointer of the sense-key-specific field pointer descriptor.
    pub bit_pointer: c_uchar,
    /// Field pointer of the sense-key-specific field pointer descriptor.
    pub field_pointer: u16,
}

impl scsi_sense {
    /// The sense-key-specific information is valid (SKSV).
    pub fn sense_specific(&self) -> bool {
        self.bitfields & 0x1 != 0
    }
    /// The field pointer refers to the CDB (C/D = 1) rather than the parameter list.
    pub fn ill_param_in_cdb(&self) -> bool {
        self.bitfields & 0x2 != 0
    }
    /// `bit_pointer` is valid (BPV).
    pub fn bit_pointer_valid(&self) -> bool {
        self.bitfields & 0x4 != 0
    }
}

/// `struct scsi_data`: a buffer owned by libiscsi.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct scsi_data {
    /// Number of valid bytes at `data`.
    pub size: c_int,
    /// The bytes (malloc'ed; freed by [`scsi_free_scsi_task`] for `task.datain`).
    pub data: *mut c_uchar,
}

/// `struct scsi_iovec`, identical to POSIX `struct iovec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct scsi_iovec {
    /// Start of the buffer.
    pub iov_base: *mut c_void,
    /// Length of the buffer.
    pub iov_len: size_t,
}

/// `struct scsi_iovector`: scatter/gather list of a task.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct scsi_iovector {
    /// The iovecs.
    pub iov: *mut scsi_iovec,
    /// Number of iovecs in use.
    pub niov: c_int,
    /// Number of iovecs allocated.
    pub nalloc: c_int,
    /// Current offset.
    pub offset: size_t,
    /// Number of iovecs consumed.
    pub consumed: c_int,
}

/// `struct scsi_task`: one SCSI command and its outcome.
#[repr(C)]
#[derive(Debug)]
pub struct scsi_task {
    /// SCSI status byte, or a libiscsi pseudo status (`SCSI_STATUS_*`).
    pub status: c_int,
    /// Length of the CDB.
    pub cdb_size: c_int,
    /// Transfer direction (`SCSI_XFER_*`).
    pub xfer_dir: c_int,
    /// Expected data transfer length.
    pub expxferlen: c_int,
    /// The CDB.
    pub cdb: [c_uchar; SCSI_CDB_MAX_SIZE],
    /// Residual kind (`SCSI_RESIDUAL_*`).
    pub residual_status: c_int,
    /// Residual count from the SCSI Response.
    pub residual: size_t,
    /// Parsed sense data (valid when `status` is CHECK CONDITION).
    pub sense: scsi_sense,
    /// Data-in (or, on CHECK CONDITION, the raw sense data segment).
    pub datain: scsi_data,
    /// libiscsi-internal allocation list.
    pub mem: *mut scsi_allocated_memory,
    /// Private pointer of the application.
    pub ptr: *mut c_void,
    /// Initiator task tag.
    pub itt: u32,
    /// CmdSN the command was sent with.
    pub cmdsn: u32,
    /// LUN.
    pub lun: u32,
    /// Data-in scatter/gather list.
    pub iovector_in: scsi_iovector,
    /// Data-out scatter/gather list.
    pub iovector_out: scsi_iovector,
}

/// `struct iscsi_data`: a data-out buffer passed to [`iscsi_scsi_command_sync`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct iscsi_data {
    /// Length of `data`.
    pub size: size_t,
    /// The bytes (borrowed for the duration of the call).
    pub data: *mut c_uchar,
}

/// `struct iscsi_url`: the result of [`iscsi_parse_full_url`].
#[repr(C)]
pub struct iscsi_url {
    /// `host[:port]`.
    pub portal: [c_char; MAX_STRING_SIZE + 1],
    /// Target IQN (percent-decoded).
    pub target: [c_char; MAX_STRING_SIZE + 1],
    /// CHAP user name.
    pub user: [c_char; MAX_STRING_SIZE + 1],
    /// CHAP secret.
    pub passwd: [c_char; MAX_STRING_SIZE + 1],
    /// Mutual CHAP user name.
    pub target_user: [c_char; MAX_STRING_SIZE + 1],
    /// Mutual CHAP secret.
    pub target_passwd: [c_char; MAX_STRING_SIZE + 1],
    /// LUN.
    pub lun: c_int,
    /// The context the URL was parsed with.
    pub iscsi: *mut iscsi_context,
    /// Transport (`TCP_TRANSPORT` / `ISER_TRANSPORT`).
    pub transport: c_int,
}

/// `struct iscsi_target_portal`: one TargetAddress of a discovered target.
#[repr(C)]
#[derive(Debug)]
pub struct iscsi_target_portal {
    /// Next portal or NULL.
    pub next: *mut iscsi_target_portal,
    /// `address[:port],tpgt` as sent by the target.
    pub portal: *const c_char,
}

/// `struct iscsi_discovery_address`: one target returned by SendTargets.
#[repr(C)]
#[derive(Debug)]
pub struct iscsi_discovery_address {
    /// Next target or NULL.
    pub next: *mut iscsi_discovery_address,
    /// TargetName.
    pub target_name: *const c_char,
    /// List of TargetAddress values.
    pub portals: *mut iscsi_target_portal,
}

/// `struct scsi_readcapacity10`: unmarshalled READ CAPACITY(10) data.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct scsi_readcapacity10 {
    /// Last LBA.
    pub lba: u32,
    /// Block length in bytes.
    pub block_size: u32,
}

/// `struct scsi_readcapacity16`: unmarshalled READ CAPACITY(16) data.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct scsi_readcapacity16 {
    /// Last LBA.
    pub returned_lba: u64,
    /// Block length in bytes.
    pub block_length: u32,
    /// Protection type.
    pub p_type: u8,
    /// PROT_EN.
    pub prot_en: u8,
    /// P_I_EXPONENT.
    pub p_i_exp: u8,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    pub lbppbe: u8,
    /// LBPME.
    pub lbpme: u8,
    /// LBPRZ.
    pub lbprz: u8,
    /// LOWEST ALIGNED LBA.
    pub lalba: u16,
}

// ---------------------------------------------------------------------------
// callbacks and event-loop constants
// ---------------------------------------------------------------------------

/// `iscsi_command_cb`: completion callback of every `*_async` / `*_task` call.
///
/// For SCSI commands (`iscsi_*_task`) `command_data` is the `scsi_task` the call
/// returned, passed with every status, the pseudo statuses
/// [`SCSI_STATUS_CANCELLED`], [`SCSI_STATUS_ERROR`] and [`SCSI_STATUS_TIMEOUT`]
/// included; the callback owns the task from then on and must free it with
/// [`scsi_free_scsi_task`]. `private_data` is the pointer given to the call.
/// The callback runs inside [`iscsi_service`] (or inside a cancel call) on the
/// caller's thread.
pub type iscsi_command_cb = Option<
    unsafe extern "C" fn(
        iscsi: *mut iscsi_context,
        status: c_int,
        command_data: *mut c_void,
        private_data: *mut c_void,
    ),
>;

/// Another name for [`iscsi_command_cb`] (the callback type of SCSI task calls).
pub type scsi_command_cb = iscsi_command_cb;

/// Event bit [`iscsi_which_events`] returns and [`iscsi_service`] takes: readable
/// (the same value as `POLLIN`, which libiscsi uses directly).
pub const ISCSI_POLLIN: c_int = libc::POLLIN as c_int;
/// Event bit: writable (`POLLOUT`).
pub const ISCSI_POLLOUT: c_int = libc::POLLOUT as c_int;
/// Event bit: error (`POLLERR`), passed on to [`iscsi_service`] from `poll()`.
pub const ISCSI_POLLERR: c_int = libc::POLLERR as c_int;
/// Event bit: hang-up (`POLLHUP`), passed on to [`iscsi_service`] from `poll()`.
pub const ISCSI_POLLHUP: c_int = libc::POLLHUP as c_int;

// ---------------------------------------------------------------------------
// functions
// ---------------------------------------------------------------------------

extern "C" {
    // --- context ---------------------------------------------------------
    /// Creates a context that identifies itself as `initiator_name`; NULL on error.
    pub fn iscsi_create_context(initiator_name: *const c_char) -> *mut iscsi_context;
    /// Tears down the connection (if any) and frees the context.
    pub fn iscsi_destroy_context(iscsi: *mut iscsi_context) -> c_int;
    /// Text describing the last error on the context (owned by the context).
    pub fn iscsi_get_error(iscsi: *mut iscsi_context) -> *const c_char;
    /// Sets InitiatorAlias.
    pub fn iscsi_set_alias(iscsi: *mut iscsi_context, alias: *const c_char) -> c_int;
    /// Sets the TargetName for a normal session login.
    pub fn iscsi_set_targetname(iscsi: *mut iscsi_context, targetname: *const c_char) -> c_int;
    /// Sets the ISID to one of the random type (RFC 7143 10.12.5: T 10b, B and C the low
    /// 24 bits of `rnd`, D the low 16 bits of `qualifier`), before login; a context has a
    /// random one of its own otherwise.
    pub fn iscsi_set_isid_random(iscsi: *mut iscsi_context, rnd: u32, qualifier: u32) -> c_int;
    /// Sets the session type (`ISCSI_SESSION_*`), before login.
    pub fn iscsi_set_session_type(iscsi: *mut iscsi_context, session_type: c_int) -> c_int;
    /// Sets the header digest to offer (`ISCSI_HEADER_DIGEST_*`), before login.
    pub fn iscsi_set_header_digest(iscsi: *mut iscsi_context, header_digest: c_int) -> c_int;
    /// Sets the CHAP user name and secret the initiator authenticates with.
    pub fn iscsi_set_initiator_username_pwd(
        iscsi: *mut iscsi_context,
        user: *const c_char,
        passwd: *const c_char,
    ) -> c_int;
    /// Sets the user name and secret the target must present (mutual CHAP).
    pub fn iscsi_set_target_username_pwd(
        iscsi: *mut iscsi_context,
        user: *const c_char,
        passwd: *const c_char,
    ) -> c_int;
    /// Sets the ImmediateData value to offer (`ISCSI_IMMEDIATE_DATA_*`).
    pub fn iscsi_set_immediate_data(iscsi: *mut iscsi_context, immediate_data: c_int) -> c_int;
    /// Sets the InitialR2T value to offer (`ISCSI_INITIAL_R2T_*`).
    pub fn iscsi_set_initial_r2t(iscsi: *mut iscsi_context, initial_r2t: c_int) -> c_int;
    /// Timeout in seconds for PDUs created after the call (0 = none).
    pub fn iscsi_set_timeout(iscsi: *mut iscsi_context, timeout: c_int) -> c_int;
    /// `state != 0` disables automatic reconnection after a connection failure.
    pub fn iscsi_set_noautoreconnect(iscsi: *mut iscsi_context, state: c_int);
    /// Maximum number of reconnect attempts (-1 = unlimited).
    pub fn iscsi_set_reconnect_max_retries(iscsi: *mut iscsi_context, count: c_int);
    /// Non-zero when the context is logged in.
    pub fn iscsi_is_logged_in(iscsi: *mut iscsi_context) -> c_int;

    // --- URLs ------------------------------------------------------------
    /// Parses `iscsi://[user[%pass]@]host[:port]/target-iqn/lun`; NULL on error.
    pub fn iscsi_parse_full_url(iscsi: *mut iscsi_context, url: *const c_char) -> *mut iscsi_url;
    /// Parses `iscsi://[user[%pass]@]host[:port]`; NULL on error.
    pub fn iscsi_parse_portal_url(iscsi: *mut iscsi_context, url: *const c_char) -> *mut iscsi_url;
    /// Frees a URL returned by the parse functions.
    pub fn iscsi_destroy_url(iscsi_url: *mut iscsi_url);

    // --- connection / session ---------------------------------------------
    /// TCP connect to `host[:port]`; 0 on success.
    pub fn iscsi_connect_sync(iscsi: *mut iscsi_context, portal: *const c_char) -> c_int;
    /// Connect, login and TEST UNIT READY `lun` (clearing unit attentions); 0 on success.
    pub fn iscsi_full_connect_sync(
        iscsi: *mut iscsi_context,
        portal: *const c_char,
        lun: c_int,
    ) -> c_int;
    /// Login on a connected context; 0 on success.
    pub fn iscsi_login_sync(iscsi: *mut iscsi_context) -> c_int;
    /// Logout; 0 on success.
    pub fn iscsi_logout_sync(iscsi: *mut iscsi_context) -> c_int;
    /// Closes the TCP connection.
    pub fn iscsi_disconnect(iscsi: *mut iscsi_context) -> c_int;
    /// SendTargets=All on a logged-in discovery session; NULL on error.
    pub fn iscsi_discovery_sync(iscsi: *mut iscsi_context) -> *mut iscsi_discovery_address;
    /// Frees the list returned by [`iscsi_discovery_sync`].
    pub fn iscsi_free_discovery_data(iscsi: *mut iscsi_context, da: *mut iscsi_discovery_address);

    // --- SCSI commands (synchronous) -----------------------------------------
    /// Sends a task built with [`scsi_create_task`]; `data` is the data-out buffer
    /// (may be NULL). Returns `task` when the command completed, NULL otherwise (the
    /// caller still owns `task` then).
    pub fn iscsi_scsi_command_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        task: *mut scsi_task,
        data: *mut iscsi_data,
    ) -> *mut scsi_task;
    /// TEST UNIT READY.
    pub fn iscsi_testunitready_sync(iscsi: *mut iscsi_context, lun: c_int) -> *mut scsi_task;
    /// INQUIRY.
    pub fn iscsi_inquiry_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        evpd: c_int,
        page_code: c_int,
        maxsize: c_int,
    ) -> *mut scsi_task;
    /// READ CAPACITY(10).
    pub fn iscsi_readcapacity10_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: c_int,
        pmi: c_int,
    ) -> *mut scsi_task;
    /// READ CAPACITY(16).
    pub fn iscsi_readcapacity16_sync(iscsi: *mut iscsi_context, lun: c_int) -> *mut scsi_task;
    /// READ(10) of `datalen` bytes (a multiple of `blocksize`).
    pub fn iscsi_read10_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u32,
        datalen: u32,
        blocksize: c_int,
        rdprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
    ) -> *mut scsi_task;
    /// WRITE(10) of `datalen` bytes from `data`.
    pub fn iscsi_write10_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u32,
        data: *mut c_uchar,
        datalen: u32,
        blocksize: c_int,
        wrprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
    ) -> *mut scsi_task;
    /// READ(16) of `datalen` bytes.
    pub fn iscsi_read16_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u64,
        datalen: u32,
        blocksize: c_int,
        rdprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
    ) -> *mut scsi_task;
    /// WRITE(16) of `datalen` bytes from `data`.
    pub fn iscsi_write16_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u64,
        data: *mut c_uchar,
        datalen: u32,
        blocksize: c_int,
        wrprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
    ) -> *mut scsi_task;
    /// SYNCHRONIZE CACHE(10).
    pub fn iscsi_synchronizecache10_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: c_int,
        num_blocks: c_int,
        syncnv: c_int,
        immed: c_int,
    ) -> *mut scsi_task;
    /// SYNCHRONIZE CACHE(16).
    pub fn iscsi_synchronizecache16_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u64,
        num_blocks: u32,
        syncnv: c_int,
        immed: c_int,
    ) -> *mut scsi_task;
    /// REPORT LUNS (sent to LUN 0).
    pub fn iscsi_reportluns_sync(
        iscsi: *mut iscsi_context,
        report_type: c_int,
        alloc_len: c_int,
    ) -> *mut scsi_task;
    /// MODE SENSE(6).
    pub fn iscsi_modesense6_sync(
        iscsi: *mut iscsi_context,
        lun: c_int,
        dbd: c_int,
        pc: c_int,
        page_code: c_int,
        sub_page_code: c_int,
        alloc_len: c_uchar,
    ) -> *mut scsi_task;

    // --- event loop (asynchronous use) ----------------------------------------
    /// The socket the context uses (for `poll()`); -1 when not connected.
    pub fn iscsi_get_fd(iscsi: *mut iscsi_context) -> c_int;
    /// The `poll()` events to wait for on [`iscsi_get_fd`] (`POLLIN`, plus `POLLOUT`
    /// while PDUs wait to be written). 0 means "nothing to poll now" (e.g. while a
    /// reconnect is pending): wait at least 100 ms and ask again.
    pub fn iscsi_which_events(iscsi: *mut iscsi_context) -> c_int;
    /// Processes the `revents` `poll()` reported: reads and writes PDUs and runs the
    /// completion callbacks. Call it with 0 about once a second to run timeouts.
    /// 0 on success, a negative value when the connection failed.
    pub fn iscsi_service(iscsi: *mut iscsi_context, revents: c_int) -> c_int;
    /// Number of PDUs queued or sent and waiting for their response, plus one while
    /// the context is not connected.
    pub fn iscsi_queue_length(iscsi: *mut iscsi_context) -> c_int;
    /// Number of PDUs queued and not yet written to the socket.
    pub fn iscsi_out_queue_length(iscsi: *mut iscsi_context) -> c_int;
    /// Cancels one task locally: its callback runs at once with
    /// [`SCSI_STATUS_CANCELLED`] (the target is not told). 0 if it was found.
    /// libiscsi 1.19 does not take back the CmdSN of a command not yet sent, so
    /// the target may never run commands queued after it on this session (it
    /// waits for the missing CmdSN): cancel when tearing down.
    pub fn iscsi_scsi_cancel_task(iscsi: *mut iscsi_context, task: *mut scsi_task) -> c_int;
    /// Cancels every task locally; each callback runs with [`SCSI_STATUS_CANCELLED`].
    /// Like [`iscsi_scsi_cancel_task`] it leaves CmdSN gaps: a teardown step.
    pub fn iscsi_scsi_cancel_all_tasks(iscsi: *mut iscsi_context);

    // --- SCSI commands (asynchronous) -----------------------------------------
    /// Queues `task` (built with [`scsi_create_task`]); `d` is the data-out buffer
    /// (may be NULL; referenced, not copied, until the callback). 0 when queued, in
    /// which case `cb` will be called exactly once; -1 otherwise.
    pub fn iscsi_scsi_command_async(
        iscsi: *mut iscsi_context,
        lun: c_int,
        task: *mut scsi_task,
        cb: iscsi_command_cb,
        d: *mut iscsi_data,
        private_data: *mut c_void,
    ) -> c_int;
    /// Queues READ(10) of `datalen` bytes; the data arrives in `task.datain`. Returns
    /// the task (owned by the callback from then on) or NULL when it could not be
    /// queued (then `cb` is never called).
    pub fn iscsi_read10_task(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u32,
        datalen: u32,
        blocksize: c_int,
        rdprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
        cb: iscsi_command_cb,
        private_data: *mut c_void,
    ) -> *mut scsi_task;
    /// Queues WRITE(10) of `datalen` bytes from `data`, which must stay valid until
    /// the callback. NULL when it could not be queued.
    pub fn iscsi_write10_task(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u32,
        data: *mut c_uchar,
        datalen: u32,
        blocksize: c_int,
        wrprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
        cb: iscsi_command_cb,
        private_data: *mut c_void,
    ) -> *mut scsi_task;
    /// Queues READ(16) of `datalen` bytes; the data arrives in `task.datain`. NULL
    /// when it could not be queued.
    pub fn iscsi_read16_task(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u64,
        datalen: u32,
        blocksize: c_int,
        rdprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
        cb: iscsi_command_cb,
        private_data: *mut c_void,
    ) -> *mut scsi_task;
    /// Queues READ(16) that lands its data directly in the caller's `iov` (which,
    /// like the buffers it points to, must stay valid until the callback);
    /// `task.datain` stays empty. NULL when it could not be queued.
    pub fn iscsi_read16_iov_task(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u64,
        datalen: u32,
        blocksize: c_int,
        rdprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
        cb: iscsi_command_cb,
        private_data: *mut c_void,
        iov: *mut scsi_iovec,
        niov: c_int,
    ) -> *mut scsi_task;
    /// Queues SYNCHRONIZE CACHE(10). NULL when it could not be queued.
    pub fn iscsi_synchronizecache10_task(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: c_int,
        num_blocks: c_int,
        syncnv: c_int,
        immed: c_int,
        cb: iscsi_command_cb,
        private_data: *mut c_void,
    ) -> *mut scsi_task;
    /// Queues WRITE(16) of `datalen` bytes from `data`, which must stay valid until
    /// the callback. NULL when it could not be queued.
    pub fn iscsi_write16_task(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u64,
        data: *mut c_uchar,
        datalen: u32,
        blocksize: c_int,
        wrprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
        cb: iscsi_command_cb,
        private_data: *mut c_void,
    ) -> *mut scsi_task;
    /// Queues WRITE(16) sending its data from the caller's `iov` (`data` is then
    /// NULL). NULL when it could not be queued.
    pub fn iscsi_write16_iov_task(
        iscsi: *mut iscsi_context,
        lun: c_int,
        lba: u64,
        data: *mut c_uchar,
        datalen: u32,
        blocksize: c_int,
        wrprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
        cb: iscsi_command_cb,
        private_data: *mut c_void,
        iov: *mut scsi_iovec,
        niov: c_int,
    ) -> *mut scsi_task;
    /// Queues TEST UNIT READY. NULL when it could not be queued.
    pub fn iscsi_testunitready_task(
        iscsi: *mut iscsi_context,
        lun: c_int,
        cb: iscsi_command_cb,
        private_data: *mut c_void,
    ) -> *mut scsi_task;

    // --- tasks -------------------------------------------------------------
    /// Allocates a task carrying a caller-built CDB (`cdb_size` <= 16).
    pub fn scsi_create_task(
        cdb_size: c_int,
        cdb: *mut c_uchar,
        xfer_dir: c_int,
        expxferlen: c_int,
    ) -> *mut scsi_task;
    /// Frees a task, its datain buffer and everything unmarshalled from it.
    pub fn scsi_free_scsi_task(task: *mut scsi_task);
    /// Unmarshalls `task.datain` according to the CDB opcode into a struct owned by
    /// the task (e.g. [`scsi_readcapacity16`] for SERVICE ACTION IN/READ CAPACITY(16)).
    pub fn scsi_datain_unmarshall(task: *mut scsi_task) -> *mut c_void;
    /// Parses fixed or descriptor format sense bytes into `sense`.
    pub fn scsi_parse_sense_data(sense: *mut scsi_sense, sb: *const u8);
    /// Name of a sense key (static string).
    pub fn scsi_sense_key_str(key: c_int) -> *const c_char;
    /// Name of an ASC/ASCQ pair (`asc << 8 | ascq`, static string).
    pub fn scsi_sense_ascq_str(ascq: c_int) -> *const c_char;
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    extern "C" {
        fn libiscsi_sys_layout_len() -> size_t;
        fn libiscsi_sys_layout_entry(i: size_t) -> size_t;
    }

    /// `sizeof(T)` then `T.field`'s offset for each field, as the probe names them, for
    /// each struct `T { field, ... }` in turn.
    macro_rules! layout {
        ($($ty:ident { $($field:ident),* $(,)? })*) => {
            [$(
                vec![(concat!("sizeof(", stringify!($ty), ")"), size_of::<$ty>())],
                vec![$(
                    (concat!(stringify!($ty), ".", stringify!($field)), offset_of!($ty, $field))
                ),*],
            )*]
            .concat()
        };
    }

    /// The Rust view of every entry of `csrc/layout_probe.c`'s table, same order.
    fn rust_layout() -> Vec<(&'static str, usize)> {
        let mut table = layout! {
            scsi_task {
                status, cdb_size, xfer_dir, expxferlen, cdb, residual_status, residual, sense,
                datain, mem, ptr, itt, cmdsn, lun, iovector_in, iovector_out,
            }
            scsi_sense { error_type, key, ascq, bit_pointer, field_pointer }
            scsi_data { size, data }
            scsi_iovector { iov, niov, nalloc, offset, consumed }
            scsi_iovec { iov_base, iov_len }
            iscsi_data { size, data }
            iscsi_url {
                portal, target, user, passwd, target_user, target_passwd, lun, iscsi, transport,
            }
            iscsi_target_portal { next, portal }
            iscsi_discovery_address { next, target_name, portals }
            scsi_readcapacity10 { lba, block_size }
            scsi_readcapacity16 {
                returned_lba, block_length, p_type, prot_en, p_i_exp, lbppbe, lbpme, lbprz, lalba,
            }
        };
        table.extend([
            ("sizeof(enum scsi_residual)", size_of::<c_int>()),
            ("sizeof(enum scsi_sense_key)", size_of::<c_int>()),
            ("sizeof(enum iscsi_session_type)", size_of::<c_int>()),
            ("sizeof(enum iscsi_header_digest)", size_of::<c_int>()),
            ("sizeof(enum iscsi_transport_type)", size_of::<c_int>()),
            ("SCSI_CDB_MAX_SIZE", SCSI_CDB_MAX_SIZE),
            ("MAX_STRING_SIZE", MAX_STRING_SIZE),
            ("sizeof(iscsi_command_cb)", size_of::<iscsi_command_cb>()),
            ("POLLIN", ISCSI_POLLIN as usize),
            ("POLLOUT", ISCSI_POLLOUT as usize),
            ("POLLERR", ISCSI_POLLERR as usize),
            ("POLLHUP", ISCSI_POLLHUP as usize),
        ]);
        table
    }

    #[test]
    fn struct_layouts_match_the_c_header() {
        let rust = rust_layout();
        let c_len = unsafe { libiscsi_sys_layout_len() };
        assert_eq!(
            c_len,
            rust.len(),
            "probe table and Rust table differ in length"
        );
        let mismatches: Vec<String> = rust
            .iter()
            .enumerate()
            .filter_map(|(i, (name, r))| {
                let c = unsafe { libiscsi_sys_layout_entry(i) };
                (c != *r).then(|| format!("{name}: C says {c}, Rust says {r}"))
            })
            .collect();
        assert!(
            mismatches.is_empty(),
            "layout mismatches:\n{}",
            mismatches.join("\n")
        );
    }

    /// Independent of the probe: Linux's poll bits (asm-generic/poll.h) and a
    /// nullable function pointer the size of a pointer.
    #[cfg(target_os = "linux")]
    #[test]
    fn event_bits_and_callback_size_match_linux() {
        assert_eq!(ISCSI_POLLIN, 0x001);
        assert_eq!(ISCSI_POLLOUT, 0x004);
        assert_eq!(ISCSI_POLLERR, 0x008);
        assert_eq!(ISCSI_POLLHUP, 0x010);
        assert_eq!(size_of::<iscsi_command_cb>(), size_of::<*const c_void>());
    }

    /// Independent of the probe: the x86_64/aarch64 SysV layout worked out by hand
    /// from the header, so a broken probe cannot hide a broken struct.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn scsi_task_layout_matches_hand_computed_lp64_offsets() {
        assert_eq!(offset_of!(scsi_task, cdb), 16);
        assert_eq!(offset_of!(scsi_task, residual_status), 32);
        assert_eq!(offset_of!(scsi_task, residual), 40);
        assert_eq!(offset_of!(scsi_task, sense), 48);
        assert_eq!(size_of::<scsi_sense>(), 16);
        assert_eq!(offset_of!(scsi_task, datain), 64);
        assert_eq!(offset_of!(scsi_task, lun), 104);
        assert_eq!(offset_of!(scsi_task, iovector_in), 112);
        assert_eq!(size_of::<scsi_task>(), 176);
    }
}

#[cfg(test)]
mod ffi_tests {
    //! Calls into the real library that need no network.
    use super::*;
    use std::ffi::{CStr, CString};

    fn cstr(p: *const c_char) -> String {
        assert!(!p.is_null());
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn field(buf: &[c_char]) -> String {
        let bytes: Vec<u8> = buf
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn parse_full_url_fills_the_url_struct() {
        let name = CString::new("iqn.2026-01.test:init").unwrap();
        let ctx = unsafe { iscsi_create_context(name.as_ptr()) };
        assert!(!ctx.is_null());
        // `%3A` is the URL-encoded ':' that libiscsi decodes in target names.
        let url = CString::new("iscsi://127.0.0.1:3261/iqn.2026-01.test%3Adisk1/3").unwrap();
        let u = unsafe { iscsi_parse_full_url(ctx, url.as_ptr()) };
        assert!(!u.is_null(), "{}", cstr(unsafe { iscsi_get_error(ctx) }));
        let (portal, target, lun, back) = unsafe {
            (
                field(&(*u).portal),
                field(&(*u).target),
                (*u).lun,
                (*u).iscsi,
            )
        };
        assert_eq!(portal, "127.0.0.1:3261");
        assert_eq!(target, "iqn.2026-01.test:disk1");
        assert_eq!(lun, 3);
        assert_eq!(back, ctx);
        unsafe {
            iscsi_destroy_url(u);
            iscsi_destroy_context(ctx);
        }
    }

    #[test]
    fn parse_full_url_rejects_garbage_with_an_error_text() {
        let name = CString::new("iqn.2026-01.test:init").unwrap();
        let ctx = unsafe { iscsi_create_context(name.as_ptr()) };
        let url = CString::new("http://nope").unwrap();
        let u = unsafe { iscsi_parse_full_url(ctx, url.as_ptr()) };
        assert!(u.is_null());
        let err = cstr(unsafe { iscsi_get_error(ctx) });
        assert!(!err.is_empty());
        unsafe { iscsi_destroy_context(ctx) };
    }

    /// A context that never connected has no socket and nothing queued, and
    /// refuses commands without running their callback.
    #[test]
    fn event_loop_calls_on_an_unconnected_context() {
        let name = CString::new("iqn.2026-01.test:init").unwrap();
        let ctx = unsafe { iscsi_create_context(name.as_ptr()) };
        assert!(!ctx.is_null());
        unsafe {
            assert_eq!(iscsi_get_fd(ctx), -1);
            // libiscsi counts the missing connection as one pending item.
            assert_eq!(iscsi_queue_length(ctx), 1);
            assert_eq!(iscsi_out_queue_length(ctx), 0);
            // A new context is a discovery session: SCSI commands are refused up
            // front (NULL), and the callback must never run.
            let read = |ctx| {
                iscsi_read16_task(
                    ctx,
                    0,
                    0,
                    512,
                    512,
                    0,
                    0,
                    0,
                    0,
                    0,
                    Some(must_not_run),
                    std::ptr::null_mut(),
                )
            };
            assert!(read(ctx).is_null());
            let err = cstr(iscsi_get_error(ctx));
            assert!(err.contains("discovery session"), "{err}");
            // A normal session that is not logged in refuses them too.
            assert_eq!(iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL), 0);
            assert!(read(ctx).is_null());
            let err = cstr(iscsi_get_error(ctx));
            assert!(err.contains("not logged in"), "{err}");
            assert_eq!(iscsi_queue_length(ctx), 1);
            assert_eq!(iscsi_out_queue_length(ctx), 0);
            iscsi_destroy_context(ctx);
        }
    }

    unsafe extern "C" fn must_not_run(
        _: *mut iscsi_context,
        _: c_int,
        _: *mut c_void,
        _: *mut c_void,
    ) {
        panic!("callback of a command that was never queued ran");
    }

    /// Fixed format sense (SPC-4 4.5.3): response code 0x70, sense key in byte 2,
    /// ASC/ASCQ in bytes 12/13, SKSV + C/D + BPV in byte 15, field pointer 16..17.
    #[test]
    fn parse_fixed_sense_fills_scsi_sense() {
        let sb: [u8; 18] = [
            0x70, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00,
            0x00, 0xcb, 0x00, 0x02,
        ];
        let mut sense: scsi_sense = unsafe { std::mem::zeroed() };
        unsafe { scsi_parse_sense_data(&mut sense, sb.as_ptr()) };
        assert_eq!(sense.error_type, 0x70);
        assert_eq!(sense.key, SCSI_SENSE_ILLEGAL_REQUEST);
        assert_eq!(sense.ascq, 0x2400);
        assert!(sense.sense_specific());
        assert!(sense.ill_param_in_cdb());
        assert!(sense.bit_pointer_valid());
        assert_eq!(sense.bit_pointer, 3);
        assert_eq!(sense.field_pointer, 2);
        assert_eq!(
            cstr(unsafe { scsi_sense_key_str(sense.key) }),
            "ILLEGAL_REQUEST"
        );
    }

    /// Descriptor format sense (SPC-4 4.5.2): response code 0x72, key in byte 1,
    /// ASC/ASCQ in bytes 2/3.
    #[test]
    fn parse_descriptor_sense_fills_scsi_sense() {
        let sb: [u8; 8] = [0x72, 0x06, 0x29, 0x01, 0x00, 0x00, 0x00, 0x00];
        let mut sense: scsi_sense = unsafe { std::mem::zeroed() };
        unsafe { scsi_parse_sense_data(&mut sense, sb.as_ptr()) };
        assert_eq!(sense.error_type, 0x72);
        assert_eq!(sense.key, SCSI_SENSE_UNIT_ATTENTION);
        assert_eq!(sense.ascq, 0x2901);
        assert!(!sense.sense_specific());
    }

    /// Builds a READ CAPACITY(16) task by hand, attaches parameter data written out
    /// from SBC-3 table 65 and lets libiscsi unmarshall it: exercises the
    /// `cdb`/`datain` offsets of `scsi_task` and the `scsi_readcapacity16` layout.
    #[test]
    fn create_task_and_unmarshall_readcapacity16() {
        // SERVICE ACTION IN(16), service action 0x10, allocation length 32.
        let mut cdb: [u8; 16] = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0];
        let task = unsafe { scsi_create_task(16, cdb.as_mut_ptr(), SCSI_XFER_READ, 32) };
        assert!(!task.is_null());
        unsafe {
            assert_eq!((*task).cdb, cdb);
            assert_eq!((*task).cdb_size, 16);
            assert_eq!((*task).xfer_dir, SCSI_XFER_READ);
            assert_eq!((*task).expxferlen, 32);
        }
        // Last LBA 0x0000_0001_0000_00ff, block length 4096, LBPPBE 3, LBPME+LBPRZ,
        // lowest aligned LBA 5.
        let param: [u8; 32] = [
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x10, 0x00, 0x00, 0x03,
            0xc0, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        unsafe {
            // scsi_free_scsi_task() free()s datain.data, so it must come from malloc.
            let buf = libc::malloc(param.len()) as *mut u8;
            assert!(!buf.is_null());
            std::ptr::copy_nonoverlapping(param.as_ptr(), buf, param.len());
            (*task).datain = scsi_data {
                size: param.len() as c_int,
                data: buf,
            };
            let rc16 = scsi_datain_unmarshall(task) as *const scsi_readcapacity16;
            assert!(!rc16.is_null());
            let rc16 = *rc16;
            assert_eq!(rc16.returned_lba, 0x1_0000_00ff);
            assert_eq!(rc16.block_length, 4096);
            assert_eq!(rc16.lbppbe, 3);
            assert_eq!(rc16.lbpme, 1);
            assert_eq!(rc16.lbprz, 1);
            assert_eq!(rc16.lalba, 5);
            scsi_free_scsi_task(task);
        }
    }
}
