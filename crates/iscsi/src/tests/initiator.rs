//! A minimal in-memory initiator for driving a [`Connection`] in tests. Its PDU builder and
//! parser are written independently of the target's codec, straight from RFC 7143 section 11.

use crate::{Config, Connection, Event, Limits, TargetInfo};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

pub const TARGET: &str = "iqn.2026-11.com.example:disk1";
pub const TARGET2: &str = "iqn.2026-11.com.example:disk2";
pub const INITIATOR: &str = "iqn.2026-11.com.example:client";

pub fn config_with(limits: Limits) -> Arc<Config> {
    Arc::new(Config {
        targets: vec![
            TargetInfo {
                name: TARGET.into(),
                alias: None,
                addresses: vec!["192.0.2.10:3260,1".into()],
            },
            TargetInfo {
                name: TARGET2.into(),
                alias: Some("second".into()),
                addresses: vec!["192.0.2.10:3260,1".into(), "[2001:db8::10]:3260,1".into()],
            },
        ],
        limits,
        portal_group_tag: 1,
    })
}

pub fn config() -> Arc<Config> {
    config_with(Limits::default())
}

/// A target PDU as parsed by the test initiator.
#[derive(Debug, Clone)]
pub struct Rx {
    pub bhs: [u8; 48],
    pub data: Bytes,
}

impl Rx {
    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    pub fn flags(&self) -> u8 {
        self.bhs[1]
    }
    pub fn u32(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.bhs[off..off + 4].try_into().unwrap())
    }
    pub fn itt(&self) -> u32 {
        self.u32(16)
    }
    pub fn ttt(&self) -> u32 {
        self.u32(20)
    }
    pub fn stat_sn(&self) -> u32 {
        self.u32(24)
    }
    pub fn exp_cmd_sn(&self) -> u32 {
        self.u32(28)
    }
    pub fn max_cmd_sn(&self) -> u32 {
        self.u32(32)
    }
    pub fn status_class(&self) -> u16 {
        u16::from_be_bytes([self.bhs[36], self.bhs[37]])
    }
    pub fn text(&self) -> Vec<(String, String)> {
        parse_text(&self.data)
    }
}

pub fn parse_text(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = std::str::from_utf8(s).unwrap();
            let (k, v) = s.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn kv(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        v.extend_from_slice(k.as_bytes());
        v.push(b'=');
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// Builds one initiator PDU: header bytes given, data appended with padding.
pub fn pdu(mut bhs: [u8; 48], data: &[u8]) -> Vec<u8> {
    let len = data.len() as u32;
    bhs[5] = (len >> 16) as u8;
    bhs[6] = (len >> 8) as u8;
    bhs[7] = len as u8;
    let mut v = bhs.to_vec();
    v.extend_from_slice(data);
    while v.len() & 3 != 0 {
        v.push(0);
    }
    v
}

fn put32(b: &mut [u8; 48], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

pub const ISID: [u8; 6] = [0x80, 0x12, 0x34, 0x56, 0x00, 0x01];

/// Login Request (RFC 7143 11.12).
pub fn login_req(transit: bool, csg: u8, nsg: u8, itt: u32, cmd_sn: u32, data: &[u8]) -> Vec<u8> {
    let mut b = [0u8; 48];
    b[0] = 0x43;
    b[1] = if transit { 0x80 } else { 0 } | (csg << 2) | nsg;
    b[8..14].copy_from_slice(&ISID);
    put32(&mut b, 16, itt);
    put32(&mut b, 24, cmd_sn);
    pdu(b, data)
}

/// Text Request (RFC 7143 11.10).
pub fn text_req(fin: bool, cont: bool, itt: u32, ttt: u32, cmd_sn: u32, data: &[u8]) -> Vec<u8> {
    let mut b = [0u8; 48];
    b[0] = 0x04;
    b[1] = if fin { 0x80 } else { 0 } | if cont { 0x40 } else { 0 };
    put32(&mut b, 16, itt);
    put32(&mut b, 20, ttt);
    put32(&mut b, 24, cmd_sn);
    pdu(b, data)
}

/// SCSI Command (RFC 7143 11.3).
#[allow(clippy::too_many_arguments)]
pub fn scsi_cmd(
    immediate: bool,
    fin: bool,
    read: bool,
    write: bool,
    itt: u32,
    edtl: u32,
    cmd_sn: u32,
    cdb: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let mut b = [0u8; 48];
    b[0] = 0x01 | if immediate { 0x40 } else { 0 };
    b[1] =
        if fin { 0x80 } else { 0 } | if read { 0x40 } else { 0 } | if write { 0x20 } else { 0 } | 1; // SIMPLE
    put32(&mut b, 16, itt);
    put32(&mut b, 20, edtl);
    put32(&mut b, 24, cmd_sn);
    b[32..32 + cdb.len()].copy_from_slice(cdb);
    pdu(b, data)
}

/// SCSI Data-Out (RFC 7143 11.7).
pub fn data_out(fin: bool, itt: u32, ttt: u32, data_sn: u32, offset: u32, data: &[u8]) -> Vec<u8> {
    let mut b = [0u8; 48];
    b[0] = 0x05;
    b[1] = if fin { 0x80 } else { 0 };
    put32(&mut b, 16, itt);
    put32(&mut b, 20, ttt);
    put32(&mut b, 36, data_sn);
    put32(&mut b, 40, offset);
    pdu(b, data)
}

/// NOP-Out (RFC 7143 11.18).
pub fn nop_out(immediate: bool, itt: u32, cmd_sn: u32, data: &[u8]) -> Vec<u8> {
    let mut b = [0u8; 48];
    b[0] = if immediate { 0x40 } else { 0 };
    b[1] = 0x80;
    put32(&mut b, 16, itt);
    put32(&mut b, 20, 0xffff_ffff);
    put32(&mut b, 24, cmd_sn);
    pdu(b, data)
}

/// Logout Request (RFC 7143 11.14).
pub fn logout_req(reason: u8, itt: u32, cmd_sn: u32) -> Vec<u8> {
    let mut b = [0u8; 48];
    b[0] = 0x06;
    b[1] = 0x80 | reason;
    put32(&mut b, 16, itt);
    put32(&mut b, 24, cmd_sn);
    pdu(b, &[])
}

/// Task Management Function Request (RFC 7143 11.5).
pub fn tmf_req(function: u8, itt: u32, rtt: u32, cmd_sn: u32) -> Vec<u8> {
    let mut b = [0u8; 48];
    b[0] = 0x42;
    b[1] = 0x80 | function;
    put32(&mut b, 16, itt);
    put32(&mut b, 20, rtt);
    put32(&mut b, 24, cmd_sn);
    pdu(b, &[])
}

/// CRC32C as RFC 7143 13.1 puts it on the wire (complemented register, least significant
/// byte first); `tests::digests` checks it against the RFC's examples.
pub fn wire_crc(bytes: &[u8]) -> [u8; 4] {
    crc32c::crc32c(bytes).to_le_bytes()
}

/// Inserts a header digest after the 48-byte header and a data digest after the padded
/// data (when there is data) of a PDU built without them.
pub fn with_digests(pdu: &[u8], header: bool, data: bool) -> Vec<u8> {
    let mut v = pdu[..48].to_vec();
    if header {
        v.extend_from_slice(&wire_crc(&pdu[..48]));
    }
    v.extend_from_slice(&pdu[48..]);
    if data && pdu.len() > 48 {
        v.extend_from_slice(&wire_crc(&pdu[48..]));
    }
    v
}

/// Drives a connection like a socket would.
pub struct Initiator {
    pub conn: Connection,
    pub events: Vec<Event>,
    pub cmd_sn: u32,
    /// (HeaderDigest, DataDigest) expected on target PDUs, once the login has ended.
    pub digests: (bool, bool),
}

impl Initiator {
    pub fn new(config: Arc<Config>) -> Self {
        Initiator {
            conn: Connection::with_tsih(config, 0x1234),
            events: Vec::new(),
            cmd_sn: 1,
            digests: (false, false),
        }
    }

    /// Feeds bytes, collects events, returns the PDUs the target sent.
    pub fn send(&mut self, bytes: &[u8]) -> Vec<Rx> {
        self.try_send(bytes).expect("no protocol error")
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> Result<Vec<Rx>, crate::ProtocolError> {
        let mut input = BytesMut::from(bytes);
        self.conn.handle_input(&mut input)?;
        Ok(self.drain())
    }

    pub fn drain(&mut self) -> Vec<Rx> {
        while let Some(e) = self.conn.poll_event() {
            self.events.push(e);
        }
        let mut out = BytesMut::new();
        self.conn.poll_transmit(&mut out);
        parse_target_pdus_with(&out, self.digests)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Logs in a normal session with libiscsi's key set (security stage with
    /// AuthMethod=None, then operational stage).
    pub fn login_normal(&mut self) -> (Rx, Rx) {
        let sec = kv_owned(&libiscsi_security_keys(TARGET));
        let r1 = self.send(&login_req(true, 0, 1, 1, self.cmd_sn, &sec));
        assert_eq!(r1.len(), 1);
        assert_eq!(r1[0].status_class(), 0, "{:?}", r1[0].text());
        let op = kv_owned(&libiscsi_operational_keys());
        let r2 = self.send(&login_req(true, 1, 3, 1, self.cmd_sn, &op));
        assert_eq!(r2.len(), 1);
        assert_eq!(r2[0].status_class(), 0, "{:?}", r2[0].text());
        assert_eq!(r2[0].flags(), 0x87);
        (r1[0].clone(), r2[0].clone())
    }

    pub fn login_discovery(&mut self) -> Rx {
        let keys = kv(&[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("AuthMethod", "None"),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxRecvDataSegmentLength", "262144"),
        ]);
        let r = self.send(&login_req(true, 0, 3, 1, self.cmd_sn, &keys));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status_class(), 0);
        r[0].clone()
    }
}

/// Security-stage keys in the order libiscsi's login code sends them.
pub fn libiscsi_security_keys(target: &str) -> Vec<(&'static str, String)> {
    vec![
        ("InitiatorName", INITIATOR.to_string()),
        ("TargetName", target.to_string()),
        ("SessionType", "Normal".to_string()),
        ("HeaderDigest", "None,CRC32C".to_string()),
        ("DataDigest", "None".to_string()),
        ("AuthMethod", "None".to_string()),
    ]
}

/// Operational-stage keys libiscsi offers (its defaults).
pub fn libiscsi_operational_keys() -> Vec<(&'static str, String)> {
    [
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("MaxConnections", "1"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
    ]
    .iter()
    .map(|(k, v)| (*k, v.to_string()))
    .collect()
}

pub fn kv_owned(pairs: &[(&str, String)]) -> Vec<u8> {
    let v: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    kv(&v)
}

/// Splits a target byte stream into PDUs, checking (header, data) digests where expected.
pub fn parse_target_pdus_with(mut b: &[u8], (hd, dd): (bool, bool)) -> Vec<Rx> {
    let mut v = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 48, "truncated target PDU");
        let mut bhs = [0u8; 48];
        bhs.copy_from_slice(&b[..48]);
        assert_eq!(bhs[4], 0, "targets send no AHS");
        let dsl = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
        let padded = dsl.div_ceil(4) * 4;
        let mut pos = 48;
        if hd {
            assert_eq!(b[48..52], wire_crc(&bhs), "header digest");
            pos += 4;
        }
        assert!(b.len() >= pos + padded);
        assert!(
            b[pos + dsl..pos + padded].iter().all(|&x| x == 0),
            "padding"
        );
        v.push(Rx {
            bhs,
            data: Bytes::copy_from_slice(&b[pos..pos + dsl]),
        });
        pos += padded;
        if dd && dsl > 0 {
            assert_eq!(
                b[pos..pos + 4],
                wire_crc(&b[pos - padded..pos]),
                "data digest"
            );
            pos += 4;
        }
        b = &b[pos..];
    }
    v
}
