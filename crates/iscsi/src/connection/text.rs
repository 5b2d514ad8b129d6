//! Text requests in full feature phase (RFC 7143 11.10 and 11.11): SendTargets, and long
//! requests and responses split across PDUs with the C bit.

use super::{proto, Connection, Phase};
use crate::header::{TextRequestHeader, TextResponseHeader};
use crate::pdu::{Pdu, RESERVED_TAG};
use crate::{text, ProtocolError, SessionType};
use bytes::Bytes;

/// The rest of a text response that did not fit in one PDU.
#[derive(Debug)]
pub(super) struct TextContinuation {
    itt: u32,
    ttt: u32,
    rest: Bytes,
}

impl Connection {
    pub(super) fn handle_text(&mut self, pdu: Pdu) -> Result<(), ProtocolError> {
        let TextRequestHeader {
            continues: cont,
            itt,
            ttt,
        } = TextRequestHeader::parse(&pdu.bhs);
        let s = self.session();
        let tx_max = s
            .info
            .params
            .initiator_max_recv_data_segment_length
            .max(512) as usize;
        let rest = if ttt != RESERVED_TAG && s.text_partial_ttt != Some(ttt) {
            match s.text_cont.take() {
                Some(tc) if tc.ttt == ttt && tc.itt == itt => tc.rest,
                _ => return Err(proto(format!("Text request with unknown TTT {ttt:#x}"))),
            }
        } else {
            if ttt == RESERVED_TAG {
                // A new request: resets any unfinished exchange.
                s.text_cont = None;
                s.text_partial.clear();
            }
            s.text_partial_ttt = None;
            s.text_partial.extend_from_slice(&pdu.data);
            if s.text_partial.len() > 64 * 1024 {
                return Err(proto("text request exceeds 64 KiB"));
            }
            if cont {
                // Acknowledge the partial request with an empty response (F=0, C=0); the
                // initiator sends the rest with this TTT.
                let t = s.take_ttt();
                s.text_partial_ttt = Some(t);
                let mut b = TextResponseHeader {
                    final_bit: false,
                    continues: false,
                    itt,
                    ttt: t,
                }
                .bhs();
                self.stamp(&mut b, true);
                self.push(b, Bytes::new());
                return Ok(());
            }
            let req = std::mem::take(&mut s.text_partial);
            let keys = text::parse(&req)?;
            Bytes::from(self.text_answer(&keys))
        };
        let (chunk, more) = if rest.len() > tx_max {
            // Split on the byte budget; the initiator reassembles across PDUs.
            (rest.slice(..tx_max), Some(rest.slice(tx_max..)))
        } else {
            (rest, None)
        };
        let s = self.session();
        let header = match more {
            Some(more) => {
                let t = s.take_ttt();
                s.text_cont = Some(TextContinuation {
                    itt,
                    ttt: t,
                    rest: more,
                });
                TextResponseHeader {
                    final_bit: false,
                    continues: true,
                    itt,
                    ttt: t,
                }
            }
            None => TextResponseHeader {
                final_bit: true,
                continues: false,
                itt,
                ttt: RESERVED_TAG,
            },
        };
        let mut b = header.bhs();
        self.stamp(&mut b, true);
        self.push(b, chunk);
        Ok(())
    }

    fn text_answer(&mut self, keys: &[(String, String)]) -> Vec<u8> {
        let s = match &self.phase {
            Phase::FullFeature(s) => s,
            _ => unreachable!(),
        };
        let mut out = Vec::new();
        for (k, v) in keys {
            match k.as_str() {
                "SendTargets" => {
                    let discovery = s.info.session_type == SessionType::Discovery;
                    for t in &self.config.targets {
                        let wanted = match v.as_str() {
                            "All" if discovery => true,
                            "All" | "" => t.name == s.info.target,
                            name => t.name == name && (discovery || t.name == s.info.target),
                        };
                        if wanted {
                            text::push(&mut out, "TargetName", &t.name);
                            for a in &t.addresses {
                                text::push(&mut out, "TargetAddress", a);
                            }
                        }
                    }
                }
                _ if matches!(v.as_str(), "NotUnderstood" | "Irrelevant" | "Reject") => {}
                "MaxRecvDataSegmentLength" => text::push(&mut out, k, "Reject"),
                _ => text::push(&mut out, k, "NotUnderstood"),
            }
        }
        out
    }
}
