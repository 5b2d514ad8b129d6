//! SCSI Command PDUs (RFC 7143 11.3): checks, task creation, and the hand-off to the layer
//! above once the data-out is complete; the answer comes back through
//! [`Connection::complete_command`].

use super::data_out::Collecting;
use super::session::Task;
use super::{command_ahs, proto, reject, Connection, Phase};
use crate::header::ScsiCommandHeader;
use crate::pdu::{Pdu, RESERVED_TAG};
use crate::{CommandResponse, Event, ProtocolError, ScsiCommand, SessionType};
use bufpool::Segments;
use bytes::Bytes;

/// Fixed-format sense: ILLEGAL REQUEST, INVALID FIELD IN CDB (SPC-4 4.5.3).
const SENSE_INVALID_FIELD_IN_CDB: [u8; 18] = [
    0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0,
];

impl Connection {
    pub(super) fn handle_command(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let bhs = pdu.bhs;
        let h = ScsiCommandHeader::parse(&bhs);
        let ScsiCommandHeader {
            itt,
            read,
            write,
            edtl,
            lun,
            attr,
            ..
        } = h;
        let windowed = !h.immediate;
        let max_immediate = self.config.limits.max_immediate_tasks as usize;
        let max_data = self.config.limits.max_command_data_out;
        let s = self.session();
        if s.info.session_type == SessionType::Discovery {
            return Err(proto("SCSI command in a discovery session"));
        }
        if s.tasks.contains_key(&itt) || itt == RESERVED_TAG {
            return Err(proto(format!("SCSI command reuses task tag {itt:#x}")));
        }
        if !windowed && s.tasks.values().filter(|t| !t.windowed).count() >= max_immediate {
            // Immediate commands are outside the CmdSN window, so this is their only bound.
            tracing::warn!(itt, "too many immediate commands outstanding; rejected");
            self.send_reject(reject::TOO_MANY_IMMEDIATE_COMMANDS, &bhs);
            return Ok(());
        }
        let (cdb_ext, bidi) = command_ahs(&pdu.ahs)?;
        let cdb = match cdb_ext {
            None => pdu.raw_bhs.slice(ScsiCommandHeader::CDB),
            Some(ext) => {
                let mut v = Vec::with_capacity(16 + ext.len());
                v.extend_from_slice(&bhs.0[ScsiCommandHeader::CDB]);
                v.extend_from_slice(&ext);
                Bytes::from(v)
            }
        };
        let params = s.info.params.clone();
        let imm_len = pdu.data.len() as u32;
        if imm_len > 0 && !write {
            return Err(proto("immediate data on a command without the W bit"));
        }
        if imm_len > 0 && !params.immediate_data {
            return Err(proto("immediate data sent but ImmediateData=No"));
        }
        if imm_len > edtl {
            return Err(proto(format!(
                "immediate data of {imm_len} bytes exceeds the expected length {edtl}"
            )));
        }
        if imm_len > params.first_burst_length {
            return Err(proto(format!(
                "immediate data of {imm_len} bytes exceeds FirstBurstLength {}",
                params.first_burst_length
            )));
        }
        let mut unsolicited_follows = write && !h.final_bit;
        if unsolicited_follows && params.initial_r2t {
            return Err(proto("unsolicited Data-Out announced but InitialR2T=Yes"));
        }
        if unsolicited_follows && imm_len >= edtl.min(params.first_burst_length) {
            // F=0 although the immediate data already used the whole unsolicited allowance:
            // nothing more can come unsolicited, so go on with R2Ts.
            unsolicited_follows = false;
        }
        if windowed {
            s.outstanding += 1;
        }
        let mut task = Task {
            lun,
            cdb,
            attr,
            edtl,
            read,
            write,
            windowed,
            r2tsn: 0,
            collecting: None,
            discard_data: false,
            reserved: 0,
            data_in: Default::default(),
        };
        if (read && write) || bidi {
            // Bidirectional commands are not supported: fail the task with CHECK CONDITION
            // (kept as neither a read nor a write).
            task.read = false;
            task.write = false;
            s.tasks.insert(itt, task);
            self.complete_command(
                itt,
                CommandResponse {
                    status: 0x02,
                    data_in: Bytes::new(),
                    sense: Some(Bytes::from_static(&SENSE_INVALID_FIELD_IN_CDB)),
                    transfer_len: 0,
                },
            );
            return Ok(());
        }
        if write && edtl > max_data {
            // Too large to collect: nothing is solicited or buffered (not even the immediate
            // data), and the layer above fails the command at once.
            tracing::warn!(
                itt,
                edtl,
                max_data,
                "write larger than the per-command limit"
            );
            task.discard_data = true;
            s.tasks.insert(itt, task);
            self.deliver(itt, Segments::new());
            return Ok(());
        }
        if write && imm_len < edtl {
            let unsolicited_limit = if unsolicited_follows {
                Some(edtl.min(params.first_burst_length))
            } else {
                None
            };
            task.collecting = Some(Collecting::new(
                pdu.data.clone(),
                unsolicited_limit,
                pdu.data_digest_error,
            ));
            s.tasks.insert(itt, task);
            if !unsolicited_follows {
                self.issue_r2ts(itt);
            }
            return Ok(());
        }
        s.tasks.insert(itt, task);
        if pdu.data_digest_error {
            // All of the write's data came as immediate data, and it failed its digest.
            self.fail_with_crc_error(itt);
            return Ok(());
        }
        let data_out = if write {
            Segments::from(pdu.data)
        } else {
            Segments::new()
        };
        self.deliver(itt, data_out);
        Ok(())
    }

    pub(super) fn deliver(&mut self, itt: u32, data_out: Segments) {
        let s = self.session();
        let Some(task) = s.tasks.get_mut(&itt) else {
            return;
        };
        task.collecting = None;
        let cmd = ScsiCommand {
            itt,
            lun: task.lun,
            cdb: task.cdb.clone(),
            attr: task.attr,
            expected_len: task.edtl,
            read: task.read,
            write: task.write,
            data_out,
            data_out_discarded: task.discard_data,
        };
        self.events.push_back(Event::Command(cmd));
    }

    /// Answers the command with initiator task tag `itt`. The solicited data it held goes
    /// to waiting writes, whose R2Ts are then among the PDUs `poll_transmit` gives.
    pub fn complete_command(&mut self, itt: u32, response: CommandResponse) {
        let Phase::FullFeature(s) = &mut self.phase else {
            return;
        };
        let Some(task) = s.tasks.get(&itt) else {
            tracing::debug!(itt, "completion for an unknown or aborted task; ignored");
            return;
        };
        if task.collecting.is_some() {
            tracing::warn!(itt, "completion for a task still receiving data; ignored");
            return;
        }
        let task = s.forget_task(itt).expect("present");
        self.respond(itt, &task, response);
        self.solicit_waiting();
    }
}
