//! Test-only driver: an in-memory store behind the Start/Pending protocol, and CDB builders
//! written from the T10 layouts (not from the crate's decoder).
#![allow(dead_code)]

use bytes::Bytes;
use scsi::{Command, LuConfig, Response, ScsiTarget, Start, Status};
use store_api::{Capabilities, ErrorKind, Geometry, IoReply, IoRequest, IoResult, StoreError};

pub const BS: u32 = 512;
pub const BLOCKS: u64 = 2048;

/// An LU config with the given capabilities.
pub fn config(caps: Capabilities) -> LuConfig {
    LuConfig {
        vendor: "GLUSTER".into(),
        product: "gluster-iscsi".into(),
        revision: "0.1".into(),
        serial: "SN0001".into(),
        naa_id: [
            0x60, 0x01, 0x40, 0x5f, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22,
            0x33, 0x44,
        ],
        geometry: Geometry {
            block_size: BS,
            num_blocks: BLOCKS,
        },
        capabilities: caps,
        write_cache: true,
        read_only: false,
        soft_threshold: None,
    }
}

/// An in-memory block store that records every request.
pub struct Mem {
    pub data: Vec<u8>,
    /// The last reservation state saved for APTPL (`Start::SaveReservations`).
    pub saved_reservations: Option<Vec<u8>>,
    /// The mode pages last saved (`Start::SaveModePages`).
    pub saved_mode_pages: Option<Vec<u8>>,
    pub log: Vec<IoRequest>,
    /// Fail requests of this kind of operation with this error kind.
    pub fail: Option<(store_api::Op, ErrorKind)>,
    /// Byte ranges `(start, end)` that allocation queries report as deallocated.
    pub holes: Vec<(u64, u64)>,
}

impl Mem {
    pub fn new(size: usize) -> Self {
        Mem {
            data: vec![0; size],
            saved_reservations: None,
            saved_mode_pages: None,
            log: Vec::new(),
            fail: None,
            holes: Vec::new(),
        }
    }

    pub fn exec(&mut self, req: IoRequest) -> IoResult {
        self.log.push(req.clone());
        if let Some((op, kind)) = self.fail {
            if op == req.op() {
                return Err(StoreError::new(op, kind));
            }
        }
        match req {
            IoRequest::Read { offset, len } => {
                let o = offset as usize;
                Ok(IoReply::Data(Bytes::copy_from_slice(
                    &self.data[o..o + len as usize],
                )))
            }
            IoRequest::Write { offset, data, .. } => {
                let o = offset as usize;
                self.data[o..o + data.len()].copy_from_slice(&data.to_bytes());
                Ok(IoReply::Done)
            }
            IoRequest::Flush => Ok(IoReply::Done),
            // Only copies between the LUNs of one Rig, which it does itself (`Rig::offload`).
            IoRequest::Copy { .. } => {
                Err(StoreError::new(store_api::Op::Copy, ErrorKind::Unsupported))
            }
            IoRequest::Discard { offset, len } | IoRequest::WriteZeroes { offset, len } => {
                let o = offset as usize;
                self.data[o..o + len as usize].fill(0);
                Ok(IoReply::Done)
            }
            // Allocation as a sparse file with holes exactly where `holes` says.
            IoRequest::Allocation { offset, len } => {
                let end = offset + len;
                let hole_here = self.holes.iter().find(|&&(s, e)| s <= offset && offset < e);
                let (mapped, stop) = match hole_here {
                    Some(&(_, e)) => (false, e),
                    None => (
                        true,
                        self.holes
                            .iter()
                            .map(|h| h.0)
                            .filter(|&s| s > offset)
                            .min()
                            .unwrap_or(end),
                    ),
                };
                Ok(IoReply::Allocation {
                    mapped,
                    len: stop.min(end) - offset,
                })
            }
        }
    }
}

/// A target with LUN 0 and a memory store sized to its geometry (and more LUNs, each with
/// its own store, through [`Rig::add_lun`]).
pub struct Rig {
    pub target: ScsiTarget,
    pub mem: Mem,
    /// The stores of LUNs other than 0.
    pub others: Vec<(u64, Mem)>,
    /// Copies between stores are done by the stores (as file and glfs stores do); when
    /// false the stores have no copy handle and the SCSI layer reads and writes.
    pub offload: bool,
    /// Copy steps the stores did.
    pub offloaded: usize,
}

impl Rig {
    pub fn new(caps: Capabilities) -> Self {
        Self::with(config(caps))
    }

    pub fn with(cfg: LuConfig) -> Self {
        let size = cfg.geometry.size_bytes() as usize;
        let mut target = ScsiTarget::new();
        target.add_lun(0, cfg);
        Rig {
            target,
            mem: Mem::new(size),
            others: Vec::new(),
            offload: true,
            offloaded: 0,
        }
    }

    /// Adds LUN `lun` with `cfg` and a store of its own.
    pub fn add_lun(&mut self, lun: u16, cfg: LuConfig) {
        let size = cfg.geometry.size_bytes() as usize;
        self.target.add_lun(lun, cfg);
        self.others.push((u64::from(lun), Mem::new(size)));
    }

    /// The store of plain LUN `lun`.
    pub fn store(&mut self, lun: u64) -> &mut Mem {
        if lun == 0 {
            return &mut self.mem;
        }
        &mut self
            .others
            .iter_mut()
            .find(|(n, _)| *n == lun)
            .expect("a request for a LUN with a store")
            .1
    }

    /// Runs a command on LUN 0 through to its response.
    pub fn run(&mut self, cdb: &[u8], data_out: &[u8]) -> Response {
        self.run_lun(0, cdb, data_out)
    }

    /// Runs a command on a wire LUN through to its response.
    pub fn run_lun(&mut self, wire_lun: u64, cdb: &[u8], data_out: &[u8]) -> Response {
        self.run_on(1, wire_lun, cdb, data_out)
    }

    /// Runs a command from I_T nexus `nexus` on a wire LUN through to its response.
    pub fn run_on(&mut self, nexus: u64, wire_lun: u64, cdb: &[u8], data_out: &[u8]) -> Response {
        let cmd = Command {
            nexus,
            lun: wire_lun,
            cdb: Bytes::copy_from_slice(cdb),
            data_out: Bytes::copy_from_slice(data_out).into(),
            expected_len: data_out.len() as u32,
        };
        let mut step = self.target.start(cmd);
        let mut steps = 0;
        loop {
            match step {
                Start::Done(r) => return r,
                Start::Io {
                    lun,
                    request,
                    pending,
                    peer,
                } => {
                    assert!(peer.is_none(), "one target here");
                    steps += 1;
                    assert!(steps < 10_000, "runaway command");
                    step = pending.finish(self.store(lun).exec(request));
                }
                Start::Copy(copy) if self.offload => {
                    // What a store does with IoRequest::Copy: the bytes move between the
                    // stores without the SCSI layer seeing them.
                    self.offloaded += 1;
                    let (from, to, len) = (
                        copy.source_offset as usize,
                        copy.offset as usize,
                        copy.len as usize,
                    );
                    let bytes = self.store(copy.source_lun).data[from..from + len].to_vec();
                    self.store(copy.lun).data[to..to + len].copy_from_slice(&bytes);
                    step = copy.finish(Ok(IoReply::Done));
                }
                Start::Copy(copy) => step = copy.with_source(None),
                Start::SaveReservations { lun, pending } => {
                    self.mem.saved_reservations = self.target.reservation_metadata(lun as u16);
                    step = pending.finish(Ok(IoReply::Done));
                }
                Start::SaveModePages { lun, pending } => {
                    let form = self.target.mode_pages_metadata(lun as u16);
                    if let Some(form) = &form {
                        self.target.mode_pages_written(lun as u16, form);
                    }
                    self.store(lun).saved_mode_pages = form;
                    step = pending.finish(Ok(IoReply::Done));
                }
                Start::SharedReservations(shared) => {
                    // What the daemon does under the metadata lock: read the state kept
                    // on the volume (here the store's saved copy), run, write back.
                    let (mut run, pending) = shared.into_parts();
                    let saved = self.mem.saved_reservations.clone();
                    match run.run(&self.target, saved.as_deref()) {
                        Ok(changed) => {
                            if changed.is_some() {
                                self.mem.saved_reservations = changed;
                            }
                            step = pending.finish(Ok(IoReply::Done));
                        }
                        Err(_) => {
                            step = pending.finish(Err(store_api::StoreError::new(
                                store_api::Op::Read,
                                store_api::ErrorKind::Io,
                            )))
                        }
                    }
                }
            }
        }
    }
}

/// The NAA designator of a second logical unit: [`config`]'s with the last byte flipped.
pub fn naa1() -> [u8; 16] {
    let mut n = config(Capabilities::default()).naa_id;
    n[15] ^= 0xFF;
    n
}

/// A rig with LUN 0 and LUN 1 (its own NAA designator, serial number and store).
pub fn two_luns() -> Rig {
    let mut rig = Rig::new(Capabilities::default());
    let mut cfg = config(Capabilities::default());
    cfg.naa_id = naa1();
    cfg.serial = "SN0002".into();
    rig.add_lun(1, cfg);
    rig
}

/// One target of a [`Gateway`]: LUN 0 and its memory store.
pub struct Node {
    pub target: ScsiTarget,
    pub mem: std::sync::Mutex<Mem>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

impl scsi::PeerTarget for Node {
    fn scsi(&self) -> &ScsiTarget {
        &self.target
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// The targets a gateway serves, as its copy managers reach them (weak: they hold it).
#[derive(Debug)]
struct Directory(Vec<std::sync::Weak<Node>>);

impl scsi::CopyPeers for Directory {
    fn peers(&self) -> Vec<scsi::Peer> {
        self.0
            .iter()
            .filter_map(|n| n.upgrade().map(|n| n as scsi::Peer))
            .collect()
    }
}

/// Several targets of one gateway, a LUN 0 each (NAA designators [`naa_of`]), whose copy
/// managers reach each other's logical units, as the daemon's targets do.
pub struct Gateway {
    pub nodes: Vec<std::sync::Arc<Node>>,
    /// Copies between stores are done by the stores (see [`Rig::offload`]).
    pub offload: bool,
}

/// The NAA designator of target `i`'s LUN 0 in a [`Gateway`].
pub fn naa_of(i: usize) -> [u8; 16] {
    let mut n = config(Capabilities::default()).naa_id;
    n[15] = 0xA0 + i as u8;
    n
}

impl Gateway {
    /// `n` targets; their copy managers reach each other when `peers`.
    pub fn new(n: usize, peers: bool) -> Self {
        let nodes: Vec<_> = (0..n)
            .map(|i| {
                let mut cfg = config(Capabilities::default());
                cfg.naa_id = naa_of(i);
                cfg.serial = format!("SN1{i:03}");
                let size = cfg.geometry.size_bytes() as usize;
                let mut target = ScsiTarget::new();
                target.add_lun(0, cfg);
                std::sync::Arc::new(Node {
                    target,
                    mem: std::sync::Mutex::new(Mem::new(size)),
                })
            })
            .collect();
        if peers {
            for node in &nodes {
                let all = nodes.iter().map(std::sync::Arc::downgrade).collect();
                node.target
                    .set_copy_peers(std::sync::Arc::new(Directory(all)));
            }
        }
        Gateway {
            nodes,
            offload: true,
        }
    }

    /// Target `i`'s store.
    pub fn mem(&self, i: usize) -> std::sync::MutexGuard<'_, Mem> {
        self.nodes[i].mem.lock().unwrap()
    }

    /// Runs a command from I_T nexus 1 on target `i`'s LUN 0 through to its response; a
    /// request for another target's LU goes to that target's store.
    pub fn run(&self, i: usize, cdb: &[u8], data_out: &[u8]) -> Response {
        let own: &Node = &self.nodes[i];
        fn node<'a>(own: &'a Node, peer: &'a Option<scsi::Peer>) -> &'a Node {
            match peer {
                Some(p) => p.as_any().downcast_ref::<Node>().expect("a node"),
                None => own,
            }
        }
        let cmd = Command {
            nexus: 1,
            lun: 0,
            cdb: Bytes::copy_from_slice(cdb),
            data_out: Bytes::copy_from_slice(data_out).into(),
            expected_len: data_out.len() as u32,
        };
        let mut step = own.target.start(cmd);
        for _ in 0..10_000 {
            step = match step {
                Start::Done(r) => return r,
                Start::Io {
                    lun,
                    request,
                    pending,
                    peer,
                } => {
                    assert_eq!(lun, 0, "one LUN per target here");
                    let result = node(own, &peer).mem.lock().unwrap().exec(request);
                    pending.finish(result)
                }
                Start::Copy(copy) if self.offload => {
                    let (from, to, len) = (
                        copy.source_offset as usize,
                        copy.offset as usize,
                        copy.len as usize,
                    );
                    let bytes = node(own, &copy.source_peer).mem.lock().unwrap().data
                        [from..from + len]
                        .to_vec();
                    node(own, &copy.peer).mem.lock().unwrap().data[to..to + len]
                        .copy_from_slice(&bytes);
                    copy.finish(Ok(IoReply::Done))
                }
                Start::Copy(copy) => copy.with_source(None),
                other => panic!("no reservations are saved here: {other:?}"),
            };
        }
        panic!("runaway command");
    }
}

/// Status, sense key, ASC, ASCQ of a response (sense fields 0 when GOOD).
pub fn outcome(r: &Response) -> (Status, u8, u8, u8) {
    match &r.sense {
        Some(s) => (r.status, s[2] & 0x0F, s[12], s[13]),
        None => (r.status, 0, 0, 0),
    }
}

pub const GOOD: (Status, u8, u8, u8) = (Status::Good, 0, 0, 0);
pub const LBA_OOB: (Status, u8, u8, u8) = (Status::CheckCondition, 0x05, 0x21, 0x00);
pub const INVALID_FIELD: (Status, u8, u8, u8) = (Status::CheckCondition, 0x05, 0x24, 0x00);
pub const INVALID_OPCODE: (Status, u8, u8, u8) = (Status::CheckCondition, 0x05, 0x20, 0x00);
pub const LU_NOT_SUPPORTED: (Status, u8, u8, u8) = (Status::CheckCondition, 0x05, 0x25, 0x00);
pub const WRITE_PROTECTED: (Status, u8, u8, u8) = (Status::CheckCondition, 0x07, 0x27, 0x00);
pub const MISCOMPARE: (Status, u8, u8, u8) = (Status::CheckCondition, 0x0E, 0x1D, 0x00);

/// READ/WRITE/VERIFY(10) layout (SBC-3 table 39): op, flags, LBA[2..6], group, len[7..9].
pub fn cdb10(op: u8, flags: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [op, flags, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

/// (12) layout: op, flags, LBA[2..6], len[6..10], group, control.
pub fn cdb12(op: u8, flags: u8, lba: u32, blocks: u32) -> [u8; 12] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [
        op, flags, l[0], l[1], l[2], l[3], n[0], n[1], n[2], n[3], 0, 0,
    ]
}

/// (16) layout: op, flags, LBA[2..10], len[10..14], group, control.
pub fn cdb16(op: u8, flags: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// INQUIRY (SPC-4 table 142).
pub fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let a = alloc.to_be_bytes();
    [0x12, u8::from(evpd), page, a[0], a[1], 0]
}

/// MODE SENSE(6) (SPC-4 table 98).
pub fn mode_sense6(dbd: bool, pc: u8, page: u8, subpage: u8, alloc: u8) -> [u8; 6] {
    [
        0x1A,
        if dbd { 0x08 } else { 0 },
        (pc << 6) | page,
        subpage,
        alloc,
        0,
    ]
}

/// READ CAPACITY(16) (SBC-3 table 66).
pub fn read_capacity16(alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x10;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// REPORT SUPPORTED OPERATION CODES (SPC-4 table 248).
pub fn rsoc(rctd: bool, options: u8, opcode: u8, sa: u16, alloc: u32) -> [u8; 12] {
    let s = sa.to_be_bytes();
    let a = alloc.to_be_bytes();
    [
        0xA3,
        0x0C,
        (u8::from(rctd) << 7) | options,
        opcode,
        s[0],
        s[1],
        a[0],
        a[1],
        a[2],
        a[3],
        0,
        0,
    ]
}

pub fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|row| {
            row.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn discard_caps() -> Capabilities {
    Capabilities {
        discard: true,
        write_zeroes: true,
        discard_zeroes: true,
    }
}

/// A pattern that differs at every byte position and between seeds.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}
