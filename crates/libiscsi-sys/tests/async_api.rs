//! The asynchronous API against Debian's tgtd: commands queued with the
//! `iscsi_*_task` calls complete through `poll()` + `iscsi_service`, hand their
//! task to the callback, move the right bytes, and can be cancelled locally.
//!
//! Skips (with a `[skip]` line) when tgtd cannot run here (tgt not installed, or not
//! root); under CI (`CI=true`) that fails instead.

use libc::{c_int, c_void};
use libiscsi_sys::*;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};
use testkit::tgtd;

/// What one callback saw.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: c_int,
    /// `task.datain` copied out (reads without caller buffers).
    datain: Vec<u8>,
    residual_status: c_int,
}

type Log = RefCell<Vec<(usize, Seen)>>;

/// `private_data` = a `(*const Log, tag)` pair boxed by the test.
unsafe extern "C" fn record(
    _ctx: *mut iscsi_context,
    status: c_int,
    command_data: *mut c_void,
    private_data: *mut c_void,
) {
    let (log, tag) = &*(private_data as *const (*const Log, usize));
    let task = command_data as *mut scsi_task;
    assert!(!task.is_null(), "SCSI callbacks always get their task");
    assert_eq!((*task).status, status);
    let d = (*task).datain;
    let datain = if d.data.is_null() {
        Vec::new()
    } else {
        std::slice::from_raw_parts(d.data, d.size as usize).to_vec()
    };
    (**log).borrow_mut().push((
        *tag,
        Seen {
            status,
            datain,
            residual_status: (*task).residual_status,
        },
    ));
    scsi_free_scsi_task(task);
}

fn error(ctx: *mut iscsi_context) -> String {
    unsafe { CStr::from_ptr(iscsi_get_error(ctx)) }
        .to_string_lossy()
        .into_owned()
}

/// Polls and services the context until `log` holds `n` entries (or 10 s pass).
fn wait_for(ctx: *mut iscsi_context, log: &Log, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.borrow().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} callbacks",
            log.borrow().len()
        );
        let mut pfd = libc::pollfd {
            fd: unsafe { iscsi_get_fd(ctx) },
            events: unsafe { iscsi_which_events(ctx) } as libc::c_short,
            revents: 0,
        };
        assert!(pfd.fd >= 0);
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        assert!(r >= 0);
        let revents = if r == 0 { 0 } else { pfd.revents as c_int };
        assert_eq!(unsafe { iscsi_service(ctx, revents) }, 0, "{}", error(ctx));
    }
}

#[test]
fn async_tasks_round_trip_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lun.img");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let Some(tgtd) = tgtd::Tgtd::start_or_skip("async_tasks_round_trip_and_cancel") else {
        return;
    };
    let iqn = "iqn.2026-11.io.glfs-iscsi:async";
    tgtd.add_lun(iqn, "rdwr", file.to_str().unwrap()).unwrap();

    let name = CString::new("iqn.2026-11.io.glfs-iscsi:async-test").unwrap();
    let target = CString::new(iqn).unwrap();
    let portal = CString::new(tgtd.portal()).unwrap();
    let ctx = unsafe { iscsi_create_context(name.as_ptr()) };
    assert!(!ctx.is_null());
    unsafe {
        iscsi_set_targetname(ctx, target.as_ptr());
        iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
        iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE);
        assert_eq!(
            iscsi_full_connect_sync(ctx, portal.as_ptr(), 1),
            0,
            "{}",
            error(ctx)
        );
        assert!(iscsi_get_fd(ctx) >= 0);
        // Logged in and idle: nothing queued, nothing to write.
        assert_eq!(iscsi_queue_length(ctx), 0);
        assert_eq!(iscsi_out_queue_length(ctx), 0);
        assert_eq!(iscsi_which_events(ctx) & ISCSI_POLLOUT, 0);
    }

    let log: Log = RefCell::new(Vec::new());
    let cookies: Vec<Box<(*const Log, usize)>> = (0..8)
        .map(|tag| Box::new((&log as *const Log, tag)))
        .collect();
    let cookie = |cookies: &Vec<Box<(*const Log, usize)>>, tag: usize| {
        &*cookies[tag] as *const (*const Log, usize) as *mut c_void
    };

    // WRITE(16) of one 4 KiB block at LBA 8 (byte offset 4096).
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut wbuf = pattern.clone();
    let task = unsafe {
        iscsi_write16_task(
            ctx,
            1,
            8,
            wbuf.as_mut_ptr(),
            4096,
            512,
            0,
            0,
            0,
            0,
            0,
            Some(record),
            cookie(&cookies, 0),
        )
    };
    assert!(!task.is_null(), "{}", error(ctx));
    unsafe {
        // Queued, not yet written: the context now wants POLLOUT.
        assert_eq!(iscsi_queue_length(ctx), 1);
        assert_eq!(iscsi_out_queue_length(ctx), 1);
        assert_ne!(iscsi_which_events(ctx) & ISCSI_POLLOUT, 0);
    }
    assert!(
        log.borrow().is_empty(),
        "callbacks run only inside iscsi_service"
    );
    wait_for(ctx, &log, 1);
    assert_eq!(log.borrow()[0].0, 0);
    assert_eq!(log.borrow()[0].1.status, SCSI_STATUS_GOOD);
    assert_eq!(log.borrow()[0].1.residual_status, SCSI_RESIDUAL_NO_RESIDUAL);
    unsafe { assert_eq!(iscsi_queue_length(ctx), 0) };
    let on_disk = std::fs::read(&file).unwrap();
    assert_eq!(&on_disk[4096..8192], &pattern[..]);
    assert!(on_disk[..4096].iter().all(|&b| b == 0));

    // READ(16) into libiscsi's buffer, and READ(16) into ours, both in flight at once.
    let mut rbuf = vec![0u8; 4096];
    let mut iov = scsi_iovec {
        iov_base: rbuf.as_mut_ptr() as *mut c_void,
        iov_len: 4096,
    };
    unsafe {
        let t1 = iscsi_read16_task(
            ctx,
            1,
            8,
            4096,
            512,
            0,
            0,
            0,
            0,
            0,
            Some(record),
            cookie(&cookies, 1),
        );
        let t2 = iscsi_read16_iov_task(
            ctx,
            1,
            8,
            4096,
            512,
            0,
            0,
            0,
            0,
            0,
            Some(record),
            cookie(&cookies, 2),
            &mut iov,
            1,
        );
        assert!(!t1.is_null() && !t2.is_null(), "{}", error(ctx));
        assert_eq!(iscsi_queue_length(ctx), 2);
    }
    wait_for(ctx, &log, 3);
    let mut reads: Vec<_> = log.borrow()[1..].to_vec();
    reads.sort_by_key(|(tag, _)| *tag);
    assert_eq!(reads[0].1.status, SCSI_STATUS_GOOD);
    assert_eq!(reads[0].1.datain, pattern, "task.datain holds the block");
    assert_eq!(reads[1].1.status, SCSI_STATUS_GOOD);
    assert!(reads[1].1.datain.is_empty(), "iov reads leave datain empty");
    assert_eq!(rbuf, pattern, "the iov read landed in our buffer");

    // Local cancellation of a queued command: its callback runs at once, with
    // CANCELLED and the task. (libiscsi 1.19 does not take the CmdSN back, so
    // the target would wait for it forever: cancelling is a teardown step.)
    log.borrow_mut().clear();
    unsafe {
        let t = iscsi_testunitready_task(ctx, 1, Some(record), cookie(&cookies, 3));
        assert!(!t.is_null());
        assert_eq!(iscsi_scsi_cancel_task(ctx, t), 0);
        assert_eq!(log.borrow().len(), 1);
        assert_eq!(
            log.borrow()[0],
            (
                3,
                Seen {
                    status: SCSI_STATUS_CANCELLED,
                    datain: vec![],
                    residual_status: 0
                }
            )
        );
        assert_eq!(iscsi_queue_length(ctx), 0);
    }

    // Cancelling everything runs every pending callback at once with CANCELLED.
    log.borrow_mut().clear();
    unsafe {
        for tag in [5, 6] {
            let t = iscsi_read16_task(
                ctx,
                1,
                0,
                512,
                512,
                0,
                0,
                0,
                0,
                0,
                Some(record),
                cookie(&cookies, tag),
            );
            assert!(!t.is_null());
        }
        assert_eq!(iscsi_queue_length(ctx), 2);
        iscsi_scsi_cancel_all_tasks(ctx);
        let mut tags: Vec<_> = log.borrow().iter().map(|(t, s)| (*t, s.status)).collect();
        tags.sort();
        assert_eq!(
            tags,
            [(5, SCSI_STATUS_CANCELLED), (6, SCSI_STATUS_CANCELLED)]
        );
        assert_eq!(iscsi_queue_length(ctx), 0);
    }

    unsafe {
        iscsi_logout_sync(ctx);
        iscsi_destroy_context(ctx);
    }
    drop(wbuf);
}
