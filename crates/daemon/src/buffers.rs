//! The socket buffers of one connection and the one vectored write per batch.
//!
//! Per connection the daemon keeps an input buffer (bytes read, PDUs not yet complete)
//! and a [`Transmit`] (PDUs ready to send: headers and short segments copied, Data-In
//! segments sent from the store's own read buffers). After every batch is written both
//! go back to at most [`SocketBuffers::KEEP`] bytes, so a burst (a 1 MiB write's PDUs, a
//! thousand responses) does not stay resident for the life of the connection. With the
//! commands' own data, which `iscsi::Limits` bounds (CmdSN window, maximum transfer,
//! solicited-data budget), that is what one session holds.

use bytes::BytesMut;
use iscsi::Transmit;
use std::io::IoSlice;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Chunks handed to one `writev` (a QD32 batch of reads is 64 + 1 chunks).
const MAX_IOV: usize = 128;

/// Input and output buffers of one connection.
///
/// The iSCSI core takes each complete PDU out of `input` as a slice of it (no copy), and
/// a write's data segment stays such a slice until its store has written it. Before each
/// socket read, [`SocketBuffers::prepare_input`] makes room without allocating in steady
/// state: the input's own allocation is taken back when no slice of it is alive any more
/// (`BytesMut::try_reclaim`), else one of at most [`SocketBuffers::SPARES`] earlier input
/// buffers whose slices are all gone, so a connection whose writes are still at the store
/// (glfs) reads on into a buffer it already has instead of a fresh one per batch.
#[derive(Debug)]
pub struct SocketBuffers {
    /// Bytes read and not yet taken by `iscsi::Connection::handle_input`.
    pub input: BytesMut,
    /// Earlier input buffers, still (partly) held by slices when they were set aside.
    spare: Vec<BytesMut>,
    /// Input buffers of [`SocketBuffers::LARGE_INPUT`] bytes for PDUs that do not fit
    /// [`SocketBuffers::INPUT_KEEP`] (a 1 MiB write's 256 KiB Data-Out), set aside while
    /// slices of them live, reused once they are gone.
    large: Vec<BytesMut>,
    /// `input` is one of the large buffers.
    input_is_large: bool,
    /// Room the next socket read has (what `prepare_input` made).
    room: usize,
    /// The last socket read took all the room it had: more was likely waiting.
    filled: bool,
    /// Bytes read since [`SocketBuffers::begin_round`].
    round: usize,
    /// Whether answers went out since [`SocketBuffers::begin_round`] before the round's
    /// input was worked through ([`SocketBuffers::send_now`]).
    sent_early: bool,
    /// PDUs waiting for the socket.
    pub output: Transmit,
}

impl Default for SocketBuffers {
    fn default() -> Self {
        SocketBuffers {
            input: BytesMut::with_capacity(Self::INPUT_KEEP),
            spare: Vec::with_capacity(Self::SPARES),
            large: Vec::with_capacity(Self::LARGE_SPARES),
            input_is_large: false,
            room: 0,
            filled: false,
            round: 0,
            sent_early: false,
            output: Transmit::new(),
        }
    }
}

impl SocketBuffers {
    /// The largest PDU of a write whose data is all immediate at the default
    /// FirstBurstLength (64 KiB, what libiscsi and Linux send for writes up to 64 KiB):
    /// the 48-byte header, 64 KiB of data and both digests.
    pub const BURST_PDU: usize = 48 + 4 + 64 * 1024 + 4;
    /// The input buffer's size (what it keeps between batches): room for a whole
    /// [`Self::BURST_PDU`] behind [`Self::MIN_READ`], rounded up to 4 KiB, so a stream
    /// of 64 KiB writes is read into buffers the connection has and never makes one
    /// grow (a 64 KiB buffer grew, and was given back, for nearly every such write).
    pub const INPUT_KEEP: usize = (Self::BURST_PDU + Self::MIN_READ).next_multiple_of(4096);
    /// Room one socket read gets at least.
    pub const MIN_READ: usize = 16 * 1024;
    /// Earlier input buffers kept for reuse while slices of them are alive.
    pub const SPARES: usize = 4;
    /// The largest PDU at the MaxRecvDataSegmentLength we declare by default (256 KiB,
    /// what a 1 MiB write's Data-Out PDUs carry from libiscsi and Linux): header, data,
    /// both digests.
    pub const LARGE_PDU: usize = 48 + 4 + 256 * 1024 + 4;
    /// A large input buffer: room for a whole [`Self::LARGE_PDU`] behind
    /// [`Self::MIN_READ`], rounded up to 4 KiB. A PDU that does not fit
    /// [`Self::INPUT_KEEP`] is read into one of these instead of making the input grow
    /// (a reallocation and fresh pages per PDU) and giving it back after the batch.
    pub const LARGE_INPUT: usize = (Self::LARGE_PDU + Self::MIN_READ).next_multiple_of(4096);
    /// Large input buffers a connection keeps while slices of them live (the PDUs of
    /// writes at their store); one that is free is kept between batches.
    pub const LARGE_SPARES: usize = 8;
    /// What the output header buffer keeps between batches.
    pub const OUTPUT_KEEP: usize = 16 * 1024;
    /// Read data ready to answer (of two reads at least) after which a batch is sent
    /// before the rest of its input is worked on (64 KiB reads: every fourth; 1 MiB
    /// reads: every second).
    pub const FLUSH_AT: usize = 256 * 1024;
    /// Reads whose answers are ready after which a round sends them, however small, if
    /// it has sent nothing yet ([`SocketBuffers::send_now`]).
    pub const FIRST_SEND_READS: usize = 4;
    /// Answers of any kind (writes: a status each) whose being ready makes a round that
    /// has sent nothing yet send them ([`SocketBuffers::send_now`]). Eight of a round of
    /// 32 writes measured best (4: +8-18% on 4k writes QD32, 8: +40-50%, 16: +10%).
    pub const FIRST_SEND_ANSWERS: usize = 8;
    /// The most one round of the connection's loop reads (then some: the read that
    /// crosses it finishes): after a read that took all the room it had, the connection
    /// reads on, without waiting, what the socket already holds
    /// ([`SocketBuffers::read_on`]), so one round starts every write that has arrived,
    /// up to sixteen 64 KiB writes, instead of about four.
    pub const ROUND_INPUT: usize = 1024 * 1024;
    /// The most an idle connection keeps in socket buffers.
    pub const KEEP: usize = Self::INPUT_KEEP * (1 + Self::SPARES) + Self::OUTPUT_KEEP;

    /// After a socket read of `read` bytes onto `partial` bytes of an unfinished PDU and
    /// the iSCSI core's pass over them (`left`: the input's length after it): true when
    /// the read began a PDU and brought only part of it (the pass took nothing), so its
    /// sender is in the middle of sending it. Once per PDU: the later reads of a large
    /// PDU (a 1 MiB write's 256 KiB Data-Out) that still do not complete it do not count.
    pub fn read_only_part_of_a_pdu(partial: usize, read: usize, left: usize) -> bool {
        partial == 0 && read > 0 && left == read
    }

    /// Before a socket read: at least [`Self::MIN_READ`] bytes of room after the bytes of
    /// a partial PDU, from an allocation the connection already has whenever one is free.
    /// After a read that took all the room it had (more was waiting in the socket: a
    /// stream of 64 KiB writes), the room of a large input buffer, so that one read takes
    /// in several PDUs and their answers leave together (an input buffer holds one such
    /// PDU; a read each, and often an answer each, cost a syscall per write on both ends).
    pub fn prepare_input(&mut self) {
        self.make_room();
        self.room = self.input.capacity() - self.input.len();
    }

    /// After a socket read into the room `prepare_input` made: it took `n` bytes.
    pub fn read_done(&mut self, n: usize) {
        self.filled = n >= self.room;
        self.round += n;
    }

    /// A round of the connection's loop begins: nothing read in it yet.
    pub fn begin_round(&mut self) {
        self.round = 0;
        self.sent_early = false;
    }

    /// While a round works through its input, after each event: whether the answers
    /// ready now (`answers` of them, `reads` of those with read data, `bytes` of it) go
    /// out before the next command is worked on. True once a large batch of data is
    /// ready (two reads and [`Self::FLUSH_AT`] bytes: 64 KiB reads every fourth), so the
    /// initiator takes in the first responses while the next are read, instead of both
    /// ends taking turns over the whole batch; and once in a round for the first
    /// [`Self::FIRST_SEND_READS`] small reads, so the initiator wakes and starts its next
    /// commands while this round answers the rest. A round of 4 KiB reads from a store that answers inline
    /// (the memory store) holds a dozen or more; sent together at its end, the initiator
    /// slept through the round and woke only then, on a core that had gone idle, and
    /// both ends ended up idle a third of the time (docs/performance.md, fourteenth
    /// round). Answers without data (writes the memory store took inline) go out early
    /// likewise once [`Self::FIRST_SEND_ANSWERS`] are ready: a round of 32 writes
    /// answered at its end left both ends idle 30% of the time (twenty-sixth round).
    pub fn send_now(&mut self, reads: usize, bytes: usize, answers: usize) -> bool {
        let large = reads >= 2 && bytes >= Self::FLUSH_AT;
        let first = !self.sent_early
            && (reads >= Self::FIRST_SEND_READS || answers >= Self::FIRST_SEND_ANSWERS);
        self.sent_early |= large || first;
        large || first
    }

    /// After a read and the pass over its input: whether to read again in this round,
    /// without waiting (a non-blocking read into the room the next `prepare_input`
    /// makes). True while the last read took all the room it had (more was likely
    /// waiting in the socket), the round has read less than
    /// [`SocketBuffers::ROUND_INPUT`], and the round has nothing to send (`to_send`: the
    /// iSCSI core has PDUs for the socket, such as the R2T for a large write's next
    /// burst, or a store's answers are ready): those go out first, since on a fast store
    /// their round trips pace the initiator (reading on past them cost the memory store's
    /// 1 MiB writes 10-18%). A read that did not fill its room found the socket empty;
    /// one that would block ends the round's reading too.
    pub fn read_on(&self, to_send: bool) -> bool {
        !to_send && self.filled && self.round < Self::ROUND_INPUT
    }

    fn make_room(&mut self) {
        let min = if self.filled {
            (Self::LARGE_INPUT - self.input.len().min(Self::LARGE_INPUT)).max(Self::MIN_READ)
        } else {
            Self::MIN_READ
        };
        if self.input.capacity() - self.input.len() >= min || self.input.try_reclaim(min) {
            return;
        }
        // Still shared with slices (writes at their store), a large PDU in progress, or
        // more waiting than the input holds.
        let want = self.input.len() + min;
        if want > Self::LARGE_INPUT {
            // Larger than any buffer we keep (a MaxRecvDataSegmentLength above the
            // default): let it grow (given back by `settle`).
            self.input.reserve(Self::MIN_READ);
            return;
        }
        let large = want > Self::INPUT_KEEP;
        let (list, size) = if large {
            (&mut self.large, Self::LARGE_INPUT)
        } else {
            (&mut self.spare, Self::INPUT_KEEP)
        };
        let next = match list.iter_mut().position(|b| b.try_reclaim(size)) {
            Some(i) => list.swap_remove(i),
            None => BytesMut::with_capacity(size),
        };
        self.switch_input(next, large);
    }

    /// Moves the partial PDU into `next`, which becomes the input; the old input buffer
    /// is set aside among the spares of its size while there is room (else it is freed
    /// once its slices are gone).
    fn switch_input(&mut self, mut next: BytesMut, large: bool) {
        next.extend_from_slice(&self.input);
        let mut old = std::mem::replace(&mut self.input, next);
        old.clear();
        let (list, room) = if self.input_is_large {
            (&mut self.large, Self::LARGE_SPARES)
        } else {
            (&mut self.spare, Self::SPARES)
        };
        if list.len() < room {
            list.push(old);
        }
        self.input_is_large = large;
    }

    /// After a batch is written: gives back what a burst grew beyond the keep sizes.
    /// A partial PDU in the input stays where it is.
    pub fn settle(&mut self) {
        self.output.shrink_to(Self::OUTPUT_KEEP);
        // A buffer whose slices are all gone shows its whole allocation once reclaimed;
        // one a burst grew is given back. (One still shared is held by its slices anyway,
        // and is looked at again after the next batch.)
        let grown = |b: &mut BytesMut, keep: usize| {
            b.is_empty() && b.try_reclaim(keep) && b.capacity() > keep
        };
        let keep = if self.input_is_large {
            Self::LARGE_INPUT
        } else {
            Self::INPUT_KEEP
        };
        if grown(&mut self.input, keep) {
            self.input = BytesMut::with_capacity(Self::INPUT_KEEP);
            self.input_is_large = false;
        }
        // A free large input stays the input: it is the one free large buffer kept.
        let large_input_free = self.input_is_large
            && self.input.is_empty()
            && self.input.try_reclaim(Self::LARGE_INPUT);
        self.spare.retain_mut(|b| !grown(b, Self::INPUT_KEEP));
        // Spares whose slices are all gone are kept only one deep: while nothing holds
        // the input (memory store, reads), a connection goes back to one input buffer
        // and one spare, however many a burst of held writes needed; of the large
        // buffers, at most one free is kept (it may be the input).
        for (list, size, mut free_kept) in [
            (&mut self.spare, Self::INPUT_KEEP, false),
            (&mut self.large, Self::LARGE_INPUT, large_input_free),
        ] {
            list.retain_mut(|b| {
                let free = b.try_reclaim(size);
                let kept = !free || !free_kept;
                free_kept |= free;
                kept
            });
        }
    }

    /// Bytes the buffers hold allocated (their capacity; a spare counts whole, as it
    /// keeps its allocation).
    pub fn capacity(&self) -> usize {
        self.input.capacity()
            + self.spare.len() * Self::INPUT_KEEP
            + self.large.len() * Self::LARGE_INPUT
            + self.output.capacity()
    }
}

/// Writes everything `tx` holds with vectored writes, resuming after short writes.
pub async fn write_transmit<W: AsyncWrite + Unpin>(
    writer: &mut W,
    tx: &mut Transmit,
) -> std::io::Result<()> {
    while !tx.is_empty() {
        let written = {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = tx.io_slices(&mut iov);
            writer.write_vectored(&iov[..n]).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        tx.advance(written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes};
    use iscsi::pdu::TargetOpcode;
    use iscsi::{Bhs, Digests, PduSink};

    fn pdu(tx: &mut Transmit, len: usize, fill: u8) -> Bytes {
        let data = Bytes::from(vec![fill; len]);
        tx.put_pdu(
            &Bhs::target(TargetOpcode::DataIn),
            &data,
            Digests::default(),
        );
        data
    }

    /// The accounting behind the per-session bound: whatever a burst made the buffers
    /// grow to, a settled connection holds at most `KEEP` bytes of them.
    #[test]
    fn a_settled_connection_keeps_at_most_keep_bytes_of_socket_buffers() {
        let mut b = SocketBuffers::default();
        assert!(b.capacity() <= SocketBuffers::KEEP);
        // A burst: 4 MiB of input (sixteen 256 KiB Data-Out PDUs) taken by the iSCSI
        // layer, and a thousand short responses plus big Data-In waiting to go out.
        b.input.reserve(4 << 20);
        b.input.put_bytes(7, 4 << 20);
        let taken = b.input.split().freeze();
        for n in 0..1000 {
            pdu(&mut b.output, 96, n as u8);
        }
        pdu(&mut b.output, 1 << 20, 1);
        assert!(
            b.output.len() > (1 << 20) + 1000 * 48,
            "the burst is waiting"
        );
        assert_eq!(taken.len(), 4 << 20);
        // Not written yet: nothing is given back.
        b.settle();
        assert!(!b.output.is_empty());
        let all = b.output.len();
        b.output.advance(all);
        b.settle();
        assert!(
            b.capacity() <= SocketBuffers::KEEP,
            "{} bytes kept after the burst",
            b.capacity()
        );
        // Once the iSCSI layer lets go of the input it took, the input buffer still
        // holds no more than its keep size.
        drop(taken);
        b.settle();
        assert!(b.capacity() <= SocketBuffers::KEEP);
    }

    /// A round that answers `n` commands inline, one after the other (reads of `size`
    /// bytes each, or writes for `None`): after which of them (1-based) it sends what is
    /// ready.
    fn sends_in_a_round(b: &mut SocketBuffers, n: usize, size: Option<usize>) -> Vec<usize> {
        b.begin_round();
        let mut ready = 0;
        let mut sent = Vec::new();
        for i in 1..=n {
            ready += 1;
            let (reads, bytes) = match size {
                Some(size) => (ready, ready * size),
                None => (0, 0),
            };
            if b.send_now(reads, bytes, ready) {
                sent.push(i);
                ready = 0;
            }
        }
        sent
    }

    /// Small reads: the first four go out early, once per round, the rest at the round's
    /// end; large reads: whenever 256 KiB of two reads or more is ready.
    #[test]
    fn a_round_sends_its_first_small_reads_early_and_large_batches_as_they_fill() {
        let mut b = SocketBuffers::default();
        assert_eq!(sends_in_a_round(&mut b, 13, Some(4096)), [4]);
        // A new round sends early again.
        assert_eq!(sends_in_a_round(&mut b, 13, Some(4096)), [4]);
        // A round of three small reads sends them all at its end.
        assert_eq!(sends_in_a_round(&mut b, 3, Some(4096)), Vec::<usize>::new());
        assert_eq!(
            sends_in_a_round(&mut b, 16, Some(64 * 1024)),
            [4, 8, 12, 16]
        );
        assert_eq!(sends_in_a_round(&mut b, 6, Some(1024 * 1024)), [2, 4, 6]);
        // After a large batch went out, small answers wait for the round's end.
        b.begin_round();
        assert!(b.send_now(4, 256 * 1024, 4));
        assert!(!b.send_now(4, 4 * 4096, 4));
    }

    /// Writes answered inline: the first eight of a round go out early, once per round,
    /// the rest at the round's end; a round of seven sends them all at its end.
    #[test]
    fn a_round_sends_its_first_eight_write_answers_early() {
        let mut b = SocketBuffers::default();
        assert_eq!(sends_in_a_round(&mut b, 32, None), [8]);
        assert_eq!(sends_in_a_round(&mut b, 32, None), [8], "every round");
        assert_eq!(sends_in_a_round(&mut b, 7, None), Vec::<usize>::new());
        // A round that already sent its first reads early sends no write answers early.
        b.begin_round();
        assert!(b.send_now(4, 4 * 4096, 4));
        assert!(!b.send_now(0, 0, 8));
    }

    /// Held slices make the connection read into spare input buffers; once they are all
    /// gone, a settled connection keeps its input buffer and one spare.
    #[test]
    fn spare_input_buffers_are_given_back_once_free() {
        let mut b = SocketBuffers::default();
        let mut held = Vec::new();
        for _ in 0..8 {
            b.prepare_input();
            let room = b.input.capacity() - b.input.len();
            b.input.put_bytes(3, room);
            held.push(b.input.split().freeze());
        }
        assert_eq!(
            b.spare.len(),
            SocketBuffers::SPARES,
            "reads went into spares"
        );
        b.settle();
        assert_eq!(b.spare.len(), SocketBuffers::SPARES, "still held: kept");
        drop(held);
        b.settle();
        assert_eq!(b.spare.len(), 1);
        assert!(
            b.capacity() <= 2 * SocketBuffers::INPUT_KEEP + SocketBuffers::OUTPUT_KEEP,
            "{}",
            b.capacity()
        );
    }

    /// The condition under which the connection gives up the CPU after a read, worked
    /// through the input as the daemon does: a 4 KiB WRITE's PDU (48-byte header, 4096
    /// bytes of immediate data, RFC 7143 11.3) arriving as libiscsi sends it, header
    /// first; the iSCSI core stands in as "takes every whole PDU off the front".
    #[test]
    fn only_a_read_that_completes_no_pdu_means_the_sender_is_mid_pdu() {
        /// One socket read of `bytes` into a stream of `pdu`-byte PDUs, then the pass.
        fn feed(input: &mut BytesMut, pdu: usize, bytes: usize) -> bool {
            let partial = input.len();
            input.put_bytes(0, bytes);
            let whole = input.len() / pdu * pdu;
            let _ = input.split_to(whole);
            SocketBuffers::read_only_part_of_a_pdu(partial, bytes, input.len())
        }
        const PDU: usize = 48 + 4096;
        let mut input = BytesMut::new();
        let read = |input: &mut BytesMut, bytes: usize| feed(input, PDU, bytes);
        // The header alone: the initiator is between its two sends.
        assert!(read(&mut input, 48));
        // The data completes it: a command to answer.
        assert!(!read(&mut input, 4096));
        // Three whole PDUs and the header of a fourth: commands to answer.
        assert!(!read(&mut input, 3 * PDU + 48));
        // Part of the fourth's data: mid-PDU, but the PDU began in an earlier read
        // (the sender was given its turn then).
        assert!(!read(&mut input, 1000));
        assert!(!read(&mut input, 3096));
        assert!(input.is_empty());
        // A large PDU read in pieces counts at its first piece only.
        const LARGE: usize = 48 + 262_144;
        let large = |input: &mut BytesMut, bytes: usize| feed(input, LARGE, bytes);
        assert!(large(&mut input, 65_536));
        assert!(!large(&mut input, 65_536));
        assert!(!large(&mut input, LARGE - 2 * 65_536));
        assert!(input.is_empty());
        // Nothing read (end of stream) is not a PDU in progress.
        assert!(!read(&mut input, 0));
    }

    #[test]
    fn a_partial_pdu_in_the_input_stays() {
        let mut b = SocketBuffers::default();
        b.input.put_bytes(1, 200_000);
        let _ = b.input.split_to(199_990);
        b.settle();
        assert_eq!(&b.input[..], &[1u8; 10][..]);
    }

    #[tokio::test]
    async fn vectored_writes_send_every_byte_in_order_through_short_writes() {
        let mut tx = Transmit::new();
        let mut want = BytesMut::new();
        for (n, len) in [5000usize, 10, 70_000, 0, 4096, 300]
            .into_iter()
            .enumerate()
        {
            let data = Bytes::from(vec![n as u8 + 1; len]);
            let bhs = Bhs::target(TargetOpcode::DataIn);
            tx.put_pdu(&bhs, &data, Digests::default());
            want.put_pdu(&bhs, &data, Digests::default());
        }
        // A pipe smaller than the batch: writes come back short and resume.
        let (mut a, mut b) = tokio::io::duplex(1500);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        write_transmit(&mut a, &mut tx).await.unwrap();
        drop(a);
        assert!(tx.is_empty());
        assert_eq!(reader.await.unwrap(), want.to_vec());
    }
}
