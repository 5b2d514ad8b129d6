//! Data-In through the vectored sink: the store's read buffer goes out as it is, and what
//! a connection copies per batch is its headers, whatever the size of the reads.

use super::initiator::*;
use crate::{CommandResponse, Event, Limits, Transmit};
use bytes::Bytes;

/// READ(10) of 128 blocks of 512 bytes: 64 KiB.
const READ10_64K: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 128, 0];

#[test]
fn a_batch_of_64k_reads_copies_only_headers_and_sends_the_store_buffers() {
    let mut i = Initiator::new(config_with(Limits::default()));
    i.login_normal();
    i.take_events();
    const QD: u32 = 32;
    for n in 0..QD {
        i.send(&scsi_cmd(
            false,
            true,
            true,
            false,
            100 + n,
            65536,
            1 + n,
            &READ10_64K,
            &[],
        ));
    }
    let commands = i.take_events();
    assert_eq!(commands.len(), QD as usize);
    assert!(commands
        .iter()
        .all(|e| matches!(e, Event::Command(c) if c.read)));
    // The "store" fills one buffer per command; the connection answers them all, and the
    // driver takes the batch in one go.
    let buffers: Vec<Bytes> = (0..QD).map(|n| Bytes::from(vec![n as u8; 65536])).collect();
    for (n, data) in buffers.iter().enumerate() {
        i.conn.complete_command(
            100 + n as u32,
            CommandResponse {
                status: 0,
                data_in: data.clone(),
                sense: None,
                transfer_len: 65536,
            },
        );
    }
    let mut tx = Transmit::new();
    i.conn.poll_transmit(&mut tx);
    // libiscsi's MaxRecvDataSegmentLength (262144) takes 64 KiB in one Data-In PDU with
    // the status in it: one 48-byte header copied per command, no data.
    assert_eq!(tx.counters(), (QD as usize * 48, QD as usize));
    assert_eq!(tx.len(), QD as usize * (48 + 65536));
    let sent: Vec<*const u8> = tx
        .chunks()
        .filter(|c| c.len() == 65536)
        .map(|c| c.as_ptr())
        .collect();
    let ours: Vec<*const u8> = buffers.iter().map(|b| b.as_ptr()).collect();
    assert_eq!(
        sent, ours,
        "Data-In segments are the store's buffers, in order"
    );
    // And the bytes are the PDUs an initiator expects.
    let pdus = parse_target_pdus_with(&tx.take_all(), (false, false));
    assert_eq!(pdus.len(), QD as usize);
    for (n, p) in pdus.iter().enumerate() {
        assert_eq!(p.opcode(), 0x25, "Data-In");
        assert_eq!(p.itt(), 100 + n as u32);
        assert_eq!(p.flags() & 0x81, 0x81, "F and S");
        assert!(p.data.iter().all(|&b| b == n as u8));
    }
}
