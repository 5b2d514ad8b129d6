//! Data-In and SCSI Response (RFC 7143 11.4 and 11.7): a completed command's data split by
//! the initiator's MaxRecvDataSegmentLength and MaxBurstLength, with the status in the last
//! Data-In when it can ride there.

use super::session::Task;
use super::Connection;
use crate::header::{DataInHeader, Residual, ScsiResponseHeader};
use crate::pdu::off;
use crate::CommandResponse;
use bytes::Bytes;

impl Connection {
    pub(super) fn respond(&mut self, itt: u32, task: &Task, response: CommandResponse) {
        let s = self.session();
        let tx_max = s
            .info
            .params
            .initiator_max_recv_data_segment_length
            .max(512) as usize;
        let burst = s.info.params.max_burst_length.max(512) as usize;
        let residual = Residual::of(task.edtl, response.transfer_len);
        let mut data = if task.read {
            response.data_in
        } else {
            Bytes::new()
        };
        data.truncate(task.edtl as usize);
        let status_in_data = !data.is_empty() && response.status == 0 && response.sense.is_none();
        let mut data_sn = 0u32;
        let mut pos = 0usize;
        while pos < data.len() {
            let burst_end = (pos / burst + 1) * burst;
            let end = (pos + tx_max).min(data.len()).min(burst_end);
            let last = end == data.len();
            let with_status = last && status_in_data;
            let mut b = DataInHeader {
                final_bit: last || end == burst_end,
                status: with_status.then_some((response.status, residual)),
                itt,
                data_sn,
                buffer_offset: pos as u32,
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
            data_sn += 1;
            pos = end;
        }
        if status_in_data {
            return;
        }
        let mut b = ScsiResponseHeader {
            response: 0, // command completed at target
            status: response.status,
            itt,
            exp_data_sn: if task.read { data_sn } else { task.r2tsn },
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
}
