//! NOP-Out and NOP-In (RFC 7143 11.18 and 11.19).

use super::{Connection, Phase, LOGIN_MAX_DATA};
use crate::header::{NopInHeader, NopOutHeader};
use crate::pdu::{Pdu, RESERVED_TAG};

impl Connection {
    pub(super) fn handle_nop_out(&mut self, pdu: Pdu) {
        let req = NopOutHeader::parse(&pdu.bhs);
        if req.itt == RESERVED_TAG {
            // No answer expected (either a reply to our NOP-In or a CmdSN update).
            return;
        }
        let tx_max = match &self.phase {
            Phase::FullFeature(s) => s.info.params.initiator_max_recv_data_segment_length,
            _ => LOGIN_MAX_DATA,
        } as usize;
        let mut b = NopInHeader {
            lun: req.lun,
            itt: req.itt,
            ttt: RESERVED_TAG,
        }
        .bhs();
        self.stamp(&mut b, true);
        let mut data = pdu.data;
        data.truncate(tx_max);
        self.push(b, data);
    }
}
