//! Data-Out and R2T (RFC 7143 sections 11.7 and 11.8): collecting a write's immediate,
//! unsolicited and R2T-solicited data, and the per-connection solicited-data budget
//! ([`crate::Limits::max_solicited_data`]).

use super::session::{take_tag, Session};
use super::{is_command, proto, Connection};
use crate::header::{DataOutHeader, R2tHeader};
use crate::pdu::{Pdu, RESERVED_TAG};
use crate::{CommandResponse, ProtocolError, SessionType};
use bufpool::{BufferPool, Segments};
use bytes::Bytes;

/// Fixed-format sense for the iSCSI condition "protocol service CRC error" (RFC 7143
/// 11.4.7.2): ABORTED COMMAND, ASC/ASCQ 47h/05h CRC ERROR DETECTED.
const SENSE_PROTOCOL_SERVICE_CRC_ERROR: [u8; 18] = [
    0x70, 0, 0x0b, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x47, 0x05, 0, 0, 0, 0,
];

/// One outstanding R2T.
#[derive(Debug, Clone, Copy)]
struct R2tState {
    ttt: u32,
    offset: u32,
    len: u32,
    received: u32,
    /// DataSN expected on the next Data-Out of this sequence.
    data_sn: u32,
}

/// A SCSI command collecting its data-out.
#[derive(Debug)]
pub(super) struct Collecting {
    /// End offset of the unsolicited burst; `None` once it is over.
    unsolicited_limit: Option<u32>,
    unsolicited_next: u32,
    /// DataSN expected on the next unsolicited Data-Out.
    unsolicited_data_sn: u32,
    next_r2t_offset: u32,
    r2ts: Vec<R2tState>,
    /// The data so far while it arrives in offset order (immediate data, then each
    /// Data-Out's segment): slices of the PDUs it came in, never copied. A store writes
    /// them with one vectored call.
    segments: Segments,
    /// Once a PDU arrives out of offset order (possible only with several R2Ts open),
    /// the data is reassembled here instead, in a buffer of the process-wide pool.
    gathered: Vec<u8>,
    received: u32,
    /// Data arrived with an unexpected DataSN or a bad data digest: its payload and all
    /// after it are discarded, and the task ends with CHECK CONDITION once all its data
    /// has arrived (RFC 7143 7.8, 7.9; ERL 0).
    failed: bool,
}

impl Collecting {
    /// A write that carried `imm` as immediate data; `unsolicited_limit` is the end of its
    /// unsolicited burst when unsolicited Data-Out follows. When the immediate data failed
    /// its digest (`imm_corrupt`), it counts as received and the task is failed.
    pub(super) fn new(imm: Bytes, unsolicited_limit: Option<u32>, imm_corrupt: bool) -> Self {
        let imm_len = imm.len() as u32;
        let imm = if imm_corrupt { Bytes::new() } else { imm };
        Collecting {
            unsolicited_limit,
            unsolicited_next: imm_len,
            unsolicited_data_sn: 0,
            next_r2t_offset: imm_len,
            r2ts: Vec::new(),
            segments: Segments::from(imm),
            gathered: Vec::new(),
            received: imm_len,
            failed: imm_corrupt,
        }
    }
}

impl Session {
    /// Reserves the rest of a write's solicited data in the budget when it fits, or when no
    /// other write holds any of it; otherwise the write (re)joins the queue of waiting
    /// writes. A write may only pass writes that waited before it once they are admitted.
    pub(super) fn admit(&mut self, itt: u32, budget: u32) -> bool {
        let Some(task) = self.tasks.get_mut(&itt) else {
            return false;
        };
        let Some(c) = task.collecting.as_ref() else {
            return false;
        };
        let need = task.edtl.saturating_sub(c.next_r2t_offset);
        if task.reserved == 0 && need > 0 {
            let first = self.waiting.front().is_none_or(|&w| w == itt);
            let fits = self.solicited == 0 || self.solicited + u64::from(need) <= u64::from(budget);
            if !(first && fits) {
                if !self.waiting.contains(&itt) {
                    self.waiting.push_back(itt);
                }
                return false;
            }
            task.reserved = need;
            self.solicited += u64::from(need);
        }
        if self.waiting.front() == Some(&itt) {
            self.waiting.pop_front();
        }
        true
    }
}

impl Connection {
    /// Sends R2Ts for the rest of a write while fewer than MaxOutstandingR2T are open, once
    /// the write has its reservation in the solicited-data budget.
    pub(super) fn issue_r2ts(&mut self, itt: u32) {
        let budget = self.config.limits.max_solicited_data;
        let mut r2ts = Vec::new();
        {
            let s = self.session();
            if !s.admit(itt, budget) {
                tracing::debug!(itt, "write waits for room in the solicited-data budget");
                return;
            }
            let max_out = s.info.params.max_outstanding_r2t.max(1) as usize;
            let burst = s.info.params.max_burst_length.max(512);
            let Some(task) = s.tasks.get_mut(&itt) else {
                return;
            };
            let next_ttt = &mut s.next_ttt;
            let edtl = task.edtl;
            let lun = task.lun;
            let Some(c) = task.collecting.as_mut() else {
                return;
            };
            while c.r2ts.len() < max_out && c.next_r2t_offset < edtl {
                let len = burst.min(edtl - c.next_r2t_offset);
                let ttt = take_tag(next_ttt);
                let r2t = R2tHeader {
                    lun,
                    itt,
                    ttt,
                    r2t_sn: task.r2tsn,
                    buffer_offset: c.next_r2t_offset,
                    desired_length: len,
                };
                c.r2ts.push(R2tState {
                    ttt,
                    offset: c.next_r2t_offset,
                    len,
                    received: 0,
                    data_sn: 0,
                });
                task.r2tsn = task.r2tsn.wrapping_add(1);
                c.next_r2t_offset += len;
                r2ts.push(r2t.bhs());
            }
        }
        for mut b in r2ts {
            self.stamp(&mut b, false);
            self.push(b, Bytes::new());
        }
    }

    pub(super) fn handle_data_out(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let DataOutHeader {
            final_bit: fin,
            itt,
            ttt,
            data_sn,
            buffer_offset: offset,
        } = DataOutHeader::parse(&pdu.bhs);
        let len = pdu.data.len() as u32;
        let s = self.session();
        if s.info.session_type == SessionType::Discovery {
            return Err(proto("Data-Out in a discovery session"));
        }
        let Some(task) = s.tasks.get_mut(&itt) else {
            if let Some(cmd) = s
                .stash
                .values()
                .find(|p| p.bhs.itt() == itt && is_command(p))
            {
                // Unsolicited data for a command still waiting its CmdSN turn. Immediate plus
                // unsolicited data may not exceed FirstBurstLength (RFC 7143 13.14), so more
                // than that is a protocol error rather than something to buffer; so is a
                // flood of PDUs (counted as if each carried at least 512 bytes).
                let fbl = s.info.params.first_burst_length as usize;
                let imm = cmd.data.len();
                let early = s.early_data.entry(itt).or_default();
                let bytes =
                    imm + early.iter().map(|p| p.data.len()).sum::<usize>() + pdu.data.len();
                if bytes > fbl || early.len() > fbl / 512 {
                    return Err(proto(format!(
                        "unsolicited data for held task {itt:#x} exceeds FirstBurstLength {fbl} \
                         ({bytes} bytes in {} PDUs)",
                        early.len() + 1
                    )));
                }
                early.push(pdu);
            } else {
                tracing::debug!(itt, "Data-Out for an unknown or aborted task; ignored");
            }
            return Ok(());
        };
        if task.discard_data {
            tracing::debug!(itt, "Data-Out for a write over the data limit; discarded");
            return Ok(());
        }
        let edtl = task.edtl;
        let Some(c) = task.collecting.as_mut() else {
            return Err(proto(format!(
                "Data-Out for task {itt:#x} that expects no more data"
            )));
        };
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= edtl)
            .ok_or_else(|| {
                proto(format!(
                    "Data-Out at offset {offset} length {len} beyond expected length {edtl}"
                ))
            })?;
        let mut r2t_done = false;
        if ttt == RESERVED_TAG {
            let Some(limit) = c.unsolicited_limit else {
                return Err(proto("unsolicited Data-Out outside the unsolicited burst"));
            };
            if offset != c.unsolicited_next || end > limit {
                return Err(proto(format!(
                    "unsolicited Data-Out at {offset}+{len}, expected offset {} limit {limit}",
                    c.unsolicited_next
                )));
            }
            if data_sn != c.unsolicited_data_sn && !c.failed {
                tracing::warn!(
                    itt,
                    data_sn,
                    expected = c.unsolicited_data_sn,
                    "unsolicited Data-Out with an unexpected DataSN; task will fail"
                );
                c.failed = true;
            }
            c.unsolicited_data_sn = c.unsolicited_data_sn.wrapping_add(1);
            c.unsolicited_next = end;
            if fin {
                c.unsolicited_limit = None;
                c.next_r2t_offset = end;
                r2t_done = true;
            }
        } else {
            let Some(idx) = c.r2ts.iter().position(|r| r.ttt == ttt) else {
                return Err(proto(format!(
                    "Data-Out with unknown target transfer tag {ttt:#x}"
                )));
            };
            let r = &mut c.r2ts[idx];
            if offset != r.offset + r.received || end > r.offset + r.len {
                return Err(proto(format!(
                    "Data-Out at {offset}+{len} outside R2T {}+{} (received {})",
                    r.offset, r.len, r.received
                )));
            }
            if data_sn != r.data_sn && !c.failed {
                tracing::warn!(
                    itt,
                    data_sn,
                    expected = r.data_sn,
                    ttt,
                    "Data-Out with an unexpected DataSN; task will fail"
                );
                c.failed = true;
            }
            r.data_sn = r.data_sn.wrapping_add(1);
            r.received += len;
            if r.received == r.len {
                c.r2ts.remove(idx);
                r2t_done = true;
            }
        }
        if pdu.data_digest_error && !c.failed {
            tracing::warn!(
                itt,
                offset,
                "Data-Out with a bad data digest; task will fail"
            );
            c.failed = true;
        }
        if c.failed {
            // The payload of a PDU out of DataSN order or with a bad digest is discarded,
            // and so is everything after it: the task fails once the initiator has sent all
            // it announced.
            c.segments = Segments::new();
            c.gathered = Vec::new();
            c.received += len;
            if c.received == edtl {
                task.collecting = None;
                self.fail_with_crc_error(itt);
            } else if r2t_done {
                self.issue_r2ts(itt);
            }
            return Ok(());
        }
        let (o, e) = (offset as usize, end as usize);
        if c.gathered.capacity() == 0 && o == c.segments.len() {
            // In order: keep the PDU's data segment as it is.
            c.segments.push(pdu.data);
        } else {
            // Out of order: reassemble by offset in a pooled buffer from here on.
            if c.gathered.capacity() == 0 {
                c.gathered = BufferPool::global().take(edtl.min(16 << 20) as usize);
                for part in std::mem::take(&mut c.segments).parts() {
                    c.gathered.extend_from_slice(part);
                }
            }
            if e > c.gathered.len() {
                c.gathered.resize(e, 0);
            }
            c.gathered[o..e].copy_from_slice(&pdu.data);
        }
        c.received += len;
        if c.received == edtl {
            let data = if c.gathered.capacity() == 0 {
                std::mem::take(&mut c.segments)
            } else {
                Segments::from(BufferPool::global().bytes(std::mem::take(&mut c.gathered)))
            };
            self.deliver(itt, data);
        } else if r2t_done {
            self.issue_r2ts(itt);
        }
        Ok(())
    }

    /// Ends a task whose data was lost to a digest or sequence error with CHECK CONDITION,
    /// "protocol service CRC error" (RFC 7143 11.4.7.2).
    pub(super) fn fail_with_crc_error(&mut self, itt: u32) {
        self.complete_command(
            itt,
            CommandResponse {
                status: 0x02,
                data_in: Bytes::new(),
                sense: Some(Bytes::from_static(&SENSE_PROTOCOL_SERVICE_CRC_ERROR)),
                transfer_len: 0,
            },
        );
    }

    /// Issues the R2Ts of the waiting writes that fit in the solicited-data budget now, in
    /// the order they arrived.
    pub(super) fn solicit_waiting(&mut self) {
        let budget = self.config.limits.max_solicited_data;
        while let Some(&itt) = self.session().waiting.front() {
            let s = self.session();
            if s.tasks.get(&itt).is_none_or(|t| t.collecting.is_none()) {
                s.waiting.pop_front();
                continue;
            }
            if !s.admit(itt, budget) {
                break;
            }
            self.issue_r2ts(itt);
        }
    }
}
