//! Writes gfapi acknowledged that a lost connection may have lost (the glfs store).
//!
//! Gluster's write-behind acknowledges a write before the brick has it and winds it
//! afterwards; when the connection goes before the brick has it, the client fails it
//! (ENOTCONN) and write-behind keeps that failure for the next sync of the fd
//! (`wb_fulfill_err`). The glfs store answers a lost connection with a fresh `glfs_t`
//! and the files opened again, so that failure stays with the old fd, and a SYNCHRONIZE
//! CACHE sent to the new one would succeed although writes the host was told were done
//! are nowhere (docs/reliability.md). A store keeps a [`Unflushed`] for its file:
//!
//! * every write acknowledged without FUA counts ([`Unflushed::acknowledged`]), and a
//!   flush that succeeds covers what was counted when it began ([`Unflushed::flushed`]);
//! * when the connection of a mount generation is lost with acknowledged writes not
//!   covered by a flush ([`Unflushed::connection_lost`]), or a write of a lost
//!   generation is acknowledged afterwards, they are *at risk*;
//! * the next flush ([`Unflushed::begin_flush`]) then fails instead of reaching gfapi,
//!   and the store answers it with a medium error, so the host learns that what it
//!   wrote since its last good flush may be gone; the flush after that goes on as
//!   usual (as Linux reports a failed writeback to the next fsync, once). That failure
//!   reports every write acknowledged before it, so another loss before the host's
//!   next good flush puts only the writes acknowledged since at risk.
//!
//! Not kept by stores whose writes gfapi does not cache: coherent mode (`O_DIRECT` past
//! write-behind, `crate::coherent`) and FUA writes, which are synced before they are
//! acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

/// What one store's file knows of its writes not yet covered by a flush (see the module).
#[derive(Debug, Default)]
pub(crate) struct Unflushed {
    /// Writes acknowledged without FUA, ever.
    acknowledged: AtomicU64,
    /// `acknowledged` as it was when the newest successful flush began.
    flushed: AtomicU64,
    /// One more than the newest mount generation whose connection was lost (0: none).
    lost_upto: AtomicU64,
    /// Acknowledged writes may have been lost: the next flush fails.
    at_risk: AtomicBool,
}

/// A flush allowed to go on: what it covers if it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlushStart(u64);

impl Unflushed {
    /// A write sent on the file of mount `generation` was acknowledged without FUA.
    pub(crate) fn acknowledged(&self, generation: u64) {
        self.acknowledged.fetch_add(1, SeqCst);
        // Acknowledged by a mount whose loss was already seen: it stayed with that mount.
        // (Counted first, checked second; `connection_lost` does the opposite, so one of
        // the two sees the other.)
        if self.lost_upto.load(SeqCst) > generation {
            self.at_risk.store(true, SeqCst);
        }
    }

    /// The connection of mount `generation` (the file's current one) was lost. True when
    /// this puts acknowledged writes at risk (the first time only).
    pub(crate) fn connection_lost(&self, generation: u64) -> bool {
        self.lost_upto.fetch_max(generation + 1, SeqCst);
        if self.acknowledged.load(SeqCst) > self.flushed.load(SeqCst) {
            return !self.at_risk.swap(true, SeqCst);
        }
        false
    }

    /// A flush is about to be sent. `Err(())` when acknowledged writes were put at risk
    /// since the last flush that began: this flush must fail (and the next may go on).
    ///
    /// The failure is the host's report of every write acknowledged before the flush
    /// began, as a failed fsync is of the writes before it: they count as covered, so a
    /// second loss before the host's next good flush reports only writes acknowledged
    /// after this one began (one of a lost mount acknowledged later still puts itself at
    /// risk, [`Unflushed::acknowledged`]).
    pub(crate) fn begin_flush(&self) -> Result<FlushStart, ()> {
        // Read before the check: a write acknowledged while this flush fails is not
        // among those it reports.
        let before = self.acknowledged.load(SeqCst);
        if self.at_risk.swap(false, SeqCst) {
            self.flushed.fetch_max(before, SeqCst);
            return Err(());
        }
        Ok(FlushStart(self.acknowledged.load(SeqCst)))
    }

    /// The flush begun at `start` succeeded: what was acknowledged before it is on the
    /// volume.
    pub(crate) fn flushed(&self, start: FlushStart) {
        self.flushed.fetch_max(start.0, SeqCst);
    }

    /// Whether the next flush would fail.
    #[cfg(test)]
    fn is_at_risk(&self) -> bool {
        self.at_risk.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_with_nothing_acknowledged_since_the_last_flush_puts_nothing_at_risk() {
        let u = Unflushed::default();
        assert!(!u.connection_lost(0), "nothing was ever written");
        u.acknowledged(1);
        let f = u.begin_flush().unwrap();
        u.flushed(f);
        assert!(!u.connection_lost(1));
        assert!(u.begin_flush().is_ok());
    }

    #[test]
    fn a_loss_after_unflushed_writes_fails_the_next_flush_once() {
        let u = Unflushed::default();
        u.acknowledged(0);
        u.acknowledged(0);
        assert!(u.connection_lost(0));
        assert!(!u.connection_lost(0), "said once");
        assert!(u.is_at_risk());
        assert_eq!(u.begin_flush(), Err(()));
        // The host has been told; writes on the new mount are flushed as usual.
        u.acknowledged(1);
        let f = u.begin_flush().unwrap();
        u.flushed(f);
        assert!(!u.connection_lost(1));
    }

    #[test]
    fn a_second_loss_before_a_good_flush_reports_only_writes_since_the_failed_one() {
        let u = Unflushed::default();
        u.acknowledged(0);
        assert!(u.connection_lost(0));
        assert_eq!(u.begin_flush(), Err(()), "the host is told of the write");
        // The mount of generation 1 goes too before the host flushes again: the write
        // was reported, nothing was acknowledged since.
        assert!(!u.connection_lost(1), "reported once, not again");
        assert!(u.begin_flush().is_ok());

        // A write acknowledged after the report is at risk when its mount goes.
        let u = Unflushed::default();
        u.acknowledged(0);
        assert!(u.connection_lost(0));
        assert_eq!(u.begin_flush(), Err(()));
        u.acknowledged(1);
        assert!(u.connection_lost(1));
        assert_eq!(u.begin_flush(), Err(()));
    }

    #[test]
    fn a_write_of_a_lost_mount_acknowledged_after_the_report_is_reported_again() {
        let u = Unflushed::default();
        u.acknowledged(0);
        assert!(u.connection_lost(0));
        assert_eq!(u.begin_flush(), Err(()));
        // Write-behind of the lost mount acknowledges one more write it held.
        u.acknowledged(0);
        assert!(u.is_at_risk());
        assert_eq!(u.begin_flush(), Err(()));
        assert!(u.begin_flush().is_ok());
    }

    #[test]
    fn a_flush_covers_only_what_was_acknowledged_before_it_began() {
        let u = Unflushed::default();
        u.acknowledged(0);
        let f = u.begin_flush().unwrap();
        u.acknowledged(0); // during the flush: not covered by it
        u.flushed(f);
        assert!(u.connection_lost(0));
        assert_eq!(u.begin_flush(), Err(()));
    }

    #[test]
    fn a_flush_that_failed_covers_nothing() {
        let u = Unflushed::default();
        u.acknowledged(0);
        let _failed = u.begin_flush().unwrap(); // never `flushed`
        assert!(u.connection_lost(0));
        assert_eq!(u.begin_flush(), Err(()));
    }

    #[test]
    fn a_write_acknowledged_by_a_mount_already_lost_is_at_risk() {
        let u = Unflushed::default();
        let f = u.begin_flush().unwrap();
        u.flushed(f);
        assert!(!u.connection_lost(0), "nothing unflushed when it went");
        // Write-behind of the old mount acknowledges a write sent just before the loss.
        u.acknowledged(0);
        assert!(u.is_at_risk());
        assert_eq!(u.begin_flush(), Err(()));
        // One of the new mount is not.
        u.acknowledged(1);
        assert!(!u.is_at_risk());
    }

    #[test]
    fn flushes_that_overlap_cover_the_older_start_only_once_both_are_done() {
        let u = Unflushed::default();
        u.acknowledged(0);
        let first = u.begin_flush().unwrap();
        u.acknowledged(0);
        let second = u.begin_flush().unwrap();
        u.flushed(second);
        u.flushed(first); // finishing late does not take coverage back
        assert!(!u.connection_lost(0));
    }

    #[test]
    fn a_loss_and_an_acknowledgement_racing_never_both_miss_each_other() {
        // One thread acknowledges a write of generation 0 while another reports the loss
        // of generation 0, over and over: the write is at risk whichever goes first.
        for _ in 0..2000 {
            let u = std::sync::Arc::new(Unflushed::default());
            let a = {
                let u = u.clone();
                std::thread::spawn(move || u.acknowledged(0))
            };
            u.connection_lost(0);
            a.join().unwrap();
            assert!(u.is_at_risk());
        }
    }
}
