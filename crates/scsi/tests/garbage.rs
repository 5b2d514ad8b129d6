//! Bad input never takes the target down: a deterministic fuzz of CDBs and data-out through
//! the whole Start/Pending protocol, checking the invariants every answer must keep.

mod common;

use bytes::Bytes;
use common::*;
use scsi::{Command, Start, Status};
use store_api::{Capabilities, IoRequest};

/// xorshift32: a fixed sequence, so a failure reproduces.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Operation codes the target implements or is likely to be sent (SPC-4/SBC-3), so that most
/// rounds get past the opcode check and into field decoding.
const OPCODES: &[u8] = &[
    0x00, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x16, 0x17, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2A, 0x2E, 0x2F,
    0x34, 0x35, 0x41, 0x42, 0x55, 0x5A, 0x5E, 0x5F, 0x83, 0x88, 0x89, 0x8A, 0x8B, 0x8E, 0x8F, 0x90,
    0x91, 0x93, 0x9E, 0xA0, 0xA3, 0xA8, 0xAA, 0xAE, 0xAF,
];

/// Byte range of a store request, if it has one.
fn range(req: &IoRequest) -> Option<(u64, u64)> {
    match req {
        IoRequest::Read { offset, len } => Some((*offset, u64::from(*len))),
        IoRequest::Write { offset, data, .. } => Some((*offset, data.len() as u64)),
        IoRequest::Discard { offset, len }
        | IoRequest::WriteZeroes { offset, len }
        | IoRequest::Allocation { offset, len }
        | IoRequest::Copy { offset, len, .. } => Some((*offset, *len)),
        IoRequest::Flush => None,
    }
}

#[test]
fn random_cdbs_and_data_never_panic_and_keep_the_answer_invariants() {
    let caps = Capabilities {
        discard: true,
        write_zeroes: true,
        discard_zeroes: true,
    };
    let mut rig = Rig::new(caps);
    let lun_bytes = u64::from(BS) * BLOCKS;
    let mut rng = Rng(0x9E37_79B9);
    let mut answered = [0u32; 2]; // GOOD, CHECK CONDITION
    let mut reached_store = 0u32;
    for _ in 0..20_000 {
        let op = OPCODES[rng.below(OPCODES.len() as u32) as usize];
        let (cdb, data_out, expected_len) = if rng.below(2) == 0 {
            // Well formed in its layout (SBC-3/SPC-4 group lengths, reserved bytes zero),
            // with a small LBA and transfer length in the usual places and a matching
            // data-out: these reach the store.
            let len = match op {
                0x00..=0x1F => 6,
                0x20..=0x5F => 10,
                0x80..=0x9F => 16,
                _ => 12,
            };
            let mut cdb = vec![0u8; len];
            cdb[0] = op;
            let (lba_at, len_at) = match len {
                6 => (3, 4),
                10 => (5, 8),
                12 => (5, 9),
                _ => (9, 13),
            };
            cdb[lba_at] = rng.below(256) as u8;
            let blocks = rng.below(9);
            cdb[len_at] = blocks as u8;
            if rng.below(8) == 0 {
                cdb[1] = rng.next() as u8; // flags, protection, service action
            }
            let data_len = if rng.below(2) == 0 {
                (blocks * BS) as usize
            } else {
                rng.below(16) as usize * 8
            };
            let data = rng.bytes(data_len);
            let expected = data.len() as u32;
            (cdb, data, expected)
        } else {
            // Anything at all.
            let len = [6usize, 10, 12, 16, 32][rng.below(5) as usize];
            let mut cdb = rng.bytes(len);
            cdb[0] = op;
            let data_len = rng.below(3) as usize * rng.below(4097) as usize;
            let data = rng.bytes(data_len);
            let expected = match rng.below(3) {
                0 => data.len() as u32,
                1 => rng.below(1 << 20),
                _ => rng.next(),
            };
            (cdb, data, expected)
        };
        let cmd = Command {
            nexus: 1,
            lun: if rng.below(50) == 0 {
                rng.next().into()
            } else {
                0
            },
            cdb: Bytes::from(cdb.clone()),
            data_out: Bytes::from(data_out).into(),
            expected_len,
        };
        let mut step = rig.target.start(cmd);
        let mut ios = 0;
        let response = loop {
            match step {
                Start::Done(r) => break r,
                Start::Io {
                    request, pending, ..
                } => {
                    ios += 1;
                    assert!(ios < 10_000, "runaway command {cdb:02x?}");
                    if let Some((offset, len)) = range(&request) {
                        assert!(
                            offset.checked_add(len).is_some_and(|end| end <= lun_bytes),
                            "request {request:?} outside the LUN for {cdb:02x?}"
                        );
                    }
                    step = pending.finish(rig.mem.exec(request));
                }
                Start::SaveReservations { pending, .. } | Start::SaveModePages { pending, .. } => {
                    step = pending.finish(Ok(store_api::IoReply::Done));
                }
                Start::SharedReservations(shared) => {
                    // Run on an empty volume, as the daemon would after reading it.
                    let (mut run, pending) = shared.into_parts();
                    let result = run
                        .run(&rig.target, None)
                        .map(|_| store_api::IoReply::Done)
                        .map_err(|_| {
                            store_api::StoreError::new(
                                store_api::Op::Read,
                                store_api::ErrorKind::Io,
                            )
                        });
                    step = pending.finish(result);
                }
                Start::Copy(copy) => step = copy.with_source(None),
            }
        };
        if ios > 0 {
            reached_store += 1;
        }
        match response.status {
            Status::Good => {
                answered[0] += 1;
                assert!(response.sense.is_none(), "{cdb:02x?}");
            }
            Status::CheckCondition => {
                answered[1] += 1;
                let sense = response.sense.as_ref().expect("CHECK CONDITION has sense");
                // SPC-4 4.5: response code 70h/71h (fixed) or 72h/73h (descriptor).
                assert!(matches!(sense[0] & 0x7F, 0x70..=0x73), "{sense:02x?}");
                assert!(sense.len() >= 8, "{sense:02x?}");
                assert_eq!(response.transfer_len, 0, "{cdb:02x?}");
                assert!(response.data_in.is_empty(), "{cdb:02x?}");
            }
            Status::ReservationConflict => {
                // A random PERSISTENT RESERVE OUT with a key that does not match.
                assert!(response.sense.is_none(), "{cdb:02x?}");
                assert!(response.data_in.is_empty(), "{cdb:02x?}");
            }
            other => panic!("unexpected status {other:?} for {cdb:02x?}"),
        }
    }
    // The generator must exercise both outcomes, or it tests little.
    assert!(answered[0] > 1_000, "GOOD answers: {}", answered[0]);
    assert!(
        answered[1] > 1_000,
        "CHECK CONDITION answers: {}",
        answered[1]
    );
    assert!(
        reached_store > 1_000,
        "commands that reached the store: {reached_store}"
    );
}
