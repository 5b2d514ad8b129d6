//! Data-In and SCSI Response (RFC 7143 11.4 and 11.7): a completed command's data split by
//! the initiator's MaxRecvDataSegmentLength and MaxBurstLength, with the status in the last
//! Data-In when it can ride there. A read's data may also go out in parts before the
//! command completes ([`Connection::send_data_in`]); the completion then sends the rest.

use super::session::{DataInSent, Task};
use super::{Connection, Phase};
use crate::header::{DataInHeader, Residual, ScsiResponseHeader};
use crate::pdu::off;
use crate::CommandResponse;
use bytes::Bytes;

impl Connection {
    /// Sends `data`, the next bytes of the read data of command `itt` (the first part at
    /// buffer offset 0, each later one where the last ended), as Data-In PDUs without
    /// status, before the command completes: so the initiator takes in the start of a
    /// large read while the store still reads the rest. [`Connection::complete_command`]
    /// then gives the data that follows (the response's `data_in` is the rest) and the
    /// status. Bytes beyond the initiator's expected length are dropped; a part for an
    /// unknown, aborted or non-read task is ignored.
    pub fn send_data_in(&mut self, itt: u32, data: Bytes) {
        let Phase::FullFeature(s) = &self.phase else {
            return;
        };
        let Some(task) = s.tasks.get(&itt) else {
            tracing::debug!(itt, "read data for an unknown or aborted task; ignored");
            return;
        };
        if !task.read || task.collecting.is_some() {
            tracing::warn!(itt, "read data for a task that is not a read; ignored");
            return;
        }
        let (edtl, sent) = (task.edtl, task.data_in);
        let sent = self.push_data_in(itt, edtl, sent, data, None);
        if let Phase::FullFeature(s) = &mut self.phase {
            if let Some(task) = s.tasks.get_mut(&itt) {
                task.data_in = sent;
            }
        }
    }

    pub(super) fn respond(&mut self, itt: u32, task: &Task, response: CommandResponse) {
        let residual = Residual::of(task.edtl, response.transfer_len);
        let mut data = if task.read {
            response.data_in
        } else {
            Bytes::new()
        };
        data.truncate(task.edtl.saturating_sub(task.data_in.offset) as usize);
        let status_in_data = !data.is_empty() && response.status == 0 && response.sense.is_none();
        let last = Last {
            status: status_in_data.then_some((response.status, residual)),
        };
        let sent = self.push_data_in(itt, task.edtl, task.data_in, data, Some(last));
        if status_in_data {
            return;
        }
        let mut b = ScsiResponseHeader {
            response: 0, // command completed at target
            status: response.status,
            itt,
            exp_data_sn: if task.read { sent.data_sn } else { task.r2tsn },
            residual,
        }
        .bhs();
        self.stamp(&mut b, true);
        let payload = match response.sense {
            Some(sense) if !sense.is_empty() => {
                let n = sense.len().min(0xffff - 2);
                let mut v = Vec::with_capacity(n + 2);
                v.extend_from_slice(&(n as u16).to_be_bytes());
                v.extend_from_slice(&sense[..n]);
                Bytes::from(v)
            }
            _ => Bytes::new(),
        };
        self.push(b, payload);
    }

    /// Pushes Data-In PDUs for `data`, which continues the command's data at `sent`
    /// (cut at the expected length `edtl`), and returns how far the data has gone after
    /// them. `last`: these are the command's last data (the F bit on the last PDU), with
    /// the status in it when `last.status` is given.
    fn push_data_in(
        &mut self,
        itt: u32,
        edtl: u32,
        mut sent: DataInSent,
        mut data: Bytes,
        last: Option<Last>,
    ) -> DataInSent {
        let Phase::FullFeature(s) = &self.phase else {
            return sent;
        };
        let tx_max = s
            .info
            .params
            .initiator_max_recv_data_segment_length
            .max(512) as usize;
        let burst = s.info.params.max_burst_length.max(512) as usize;
        let base = sent.offset as usize;
        data.truncate((edtl as usize).saturating_sub(base));
        let mut pos = 0usize;
        while pos < data.len() {
            let at = base + pos;
            let burst_end = (at / burst + 1) * burst;
            let end = (at + tx_max).min(base + data.len()).min(burst_end) - base;
            let at_end = end == data.len();
            let with_status = at_end && last.is_some_and(|l| l.status.is_some());
            // F: the last PDU of a burst, of the command's data (its last call, or a part
            // that reaches the expected length).
            let final_bit = base + end == burst_end
                || (at_end && (last.is_some() || base + end == edtl as usize));
            let mut b = DataInHeader {
                final_bit,
                status: last.and_then(|l| l.status).filter(|_| with_status),
                itt,
                data_sn: sent.data_sn,
                buffer_offset: at as u32,
            }
            .bhs();
            if with_status {
                self.stamp(&mut b, true);
            } else {
                // StatSN is reserved without the S bit; Exp/MaxCmdSN still reported.
                self.stamp(&mut b, false);
                b.set_u32(off::STATSN, 0);
            }
            self.push(b, data.slice(pos..end));
            sent.data_sn = sent.data_sn.wrapping_add(1);
            pos = end;
        }
        sent.offset = (base + data.len()) as u32;
        sent
    }
}

/// The command's last Data-In: with its status (GOOD, and the residual) when it rides
/// in the last PDU.
#[derive(Clone, Copy)]
struct Last {
    status: Option<(u8, Residual)>,
}
