//! Offloaded data transfer (ODX) through the real binary: one host makes a ROD token of a
//! file LUN's blocks (POPULATE TOKEN, then RECEIVE ROD TOKEN INFORMATION), another host
//! writes them into another LUN with WRITE USING TOKEN, and the bytes move inside the
//! gateway. CDBs and parameter lists are written out from SBC-3 (tables 12, 13, 16, 105,
//! 106) and SPC-4 (tables 129 to 131).

mod support;

use support::*;
use testkit::initiator::Initiator;

const TARGET: &str = "iqn.2026-11.io.glfs-iscsi:odx";
const BLOCK: usize = 512;
const SIZE: u64 = 4 << 20;

fn token_cdb(sa: u8, list_id: u32, param_len: usize) -> [u8; 16] {
    let (id, l) = (list_id.to_be_bytes(), (param_len as u32).to_be_bytes());
    [
        0x83, sa, 0, 0, 0, 0, id[0], id[1], id[2], id[3], l[0], l[1], l[2], l[3], 0, 0,
    ]
}

fn ranges(list: &[(u64, u32)]) -> Vec<u8> {
    let mut d = Vec::new();
    for &(lba, blocks) in list {
        d.extend(lba.to_be_bytes());
        d.extend(blocks.to_be_bytes());
        d.extend([0; 4]);
    }
    d
}

fn populate_list(list: &[(u64, u32)]) -> Vec<u8> {
    let r = ranges(list);
    let mut p = vec![0u8; 16];
    p[0..2].copy_from_slice(&((14 + r.len()) as u16).to_be_bytes());
    p[14..16].copy_from_slice(&(r.len() as u16).to_be_bytes());
    p.extend(r);
    p
}

fn write_list(token: &[u8], offset: u64, list: &[(u64, u32)]) -> Vec<u8> {
    let r = ranges(list);
    let mut p = vec![0u8; 536];
    p[0..2].copy_from_slice(&((534 + r.len()) as u16).to_be_bytes());
    p[8..16].copy_from_slice(&offset.to_be_bytes());
    p[16..528].copy_from_slice(token);
    p[534..536].copy_from_slice(&(r.len() as u16).to_be_bytes());
    p.extend(r);
    p
}

/// RECEIVE ROD TOKEN INFORMATION: (RESPONSE TO SERVICE ACTION, COPY OPERATION STATUS,
/// TRANSFER COUNT, the ROD token if any).
fn rrti(host: &mut Initiator, list_id: u32) -> (u8, u8, u64, Option<Vec<u8>>) {
    let id = list_id.to_be_bytes();
    let cdb = [
        0x84, 0x07, id[0], id[1], id[2], id[3], 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0,
    ];
    let out = host.raw_command(&cdb, &[], 4096).unwrap();
    assert!(out.is_good(), "{out:?}");
    let d = out.data;
    let at = 32 + usize::from(d[13]);
    let tokens = u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
    let token = (tokens == 514).then(|| d[at + 6..at + 6 + 512].to_vec());
    let count = u64::from_be_bytes(d[16..24].try_into().unwrap());
    (d[4] & 0x1F, d[5] & 0x7F, count, token)
}

fn lun_file(dir: &std::path::Path, name: &str, fill: impl Fn(usize) -> u8) -> String {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..SIZE as usize).map(fill).collect();
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_token_made_by_one_host_copies_blocks_into_another_hosts_lun() {
    let dir = tempfile::tempdir().unwrap();
    let a = lun_file(dir.path(), "a.img", |i| (i % 251) as u8);
    let b = lun_file(dir.path(), "b.img", |_| 0xEE);
    let config = dir.path().join("glfs-iscsi.toml");
    std::fs::write(
        &config,
        format!(
            "[[target]]\nname = \"{TARGET}\"\n\
             [[target.lun]]\nlun = 0\nbstype = \"file\"\nbacking_store = \"{a}\"\n\
             [[target.lun]]\nlun = 1\nbstype = \"file\"\nbacking_store = \"{b}\"\n"
        ),
    )
    .unwrap();
    let daemon = Running::start(&["--config", config.to_str().unwrap()], &[]);
    let opts = |name: &str| login_opts(&format!("iqn.2026-11.test:{name}"), None);
    let mut source_host = Initiator::connect_with(&daemon.portal(), TARGET, 0, &opts("a")).unwrap();
    let mut dest_host = Initiator::connect_with(&daemon.portal(), TARGET, 1, &opts("b")).unwrap();

    // Host A: a token of LUN 0's blocks 100..164 and 300..332.
    let p = populate_list(&[(100, 64), (300, 32)]);
    let out = source_host
        .raw_command(&token_cdb(0x10, 1, p.len()), &p, 0)
        .unwrap();
    assert!(out.is_good(), "POPULATE TOKEN: {out:?}");
    let (sa, status, count, token) = rrti(&mut source_host, 1);
    assert_eq!((sa, status, count), (0x10, 0x01, 96));
    let token = token.expect("a ROD token");

    // Host B: the ROD from its block 16 on, into LUN 1 at 2000 (48 blocks) and 3000 (32).
    let p = write_list(&token, 16, &[(2000, 48), (3000, 32)]);
    let out = dest_host
        .raw_command(&token_cdb(0x11, 9, p.len()), &p, 0)
        .unwrap();
    assert!(out.is_good(), "WRITE USING TOKEN: {out:?}");
    let (sa, status, count, _) = rrti(&mut dest_host, 9);
    assert_eq!((sa, status, count), (0x11, 0x01, 80));

    // The ROD is LUN 0's blocks 100..164 then 300..332; from its block 16 on that is
    // 116..164 (48 blocks) then 300..332.
    let a = std::fs::read(dir.path().join("a.img")).unwrap();
    let b = std::fs::read(dir.path().join("b.img")).unwrap();
    let blocks = |img: &[u8], lba: usize, n: usize| img[lba * BLOCK..(lba + n) * BLOCK].to_vec();
    assert_eq!(blocks(&b, 2000, 48), blocks(&a, 116, 48));
    assert_eq!(blocks(&b, 3000, 32), blocks(&a, 300, 32));
    assert!(
        blocks(&b, 2048, 952).iter().all(|&x| x == 0xEE),
        "nothing between"
    );
    // Host B reads what was written through the gateway too.
    let read = dest_host
        .raw_command(&[0x28, 0, 0, 0, 0x07, 0xD0, 0, 0, 48, 0], &[], 48 * BLOCK)
        .unwrap();
    assert_eq!(read.data, blocks(&a, 116, 48));

    // The block device zero ROD token (ROD TYPE FFFF0001h) zeroes LUN 1's blocks 10..20.
    let mut zero = vec![0u8; 512];
    zero[0..4].copy_from_slice(&0xFFFF_0001u32.to_be_bytes());
    zero[6..8].copy_from_slice(&0x01F8u16.to_be_bytes());
    let p = write_list(&zero, 0, &[(10, 10)]);
    let out = dest_host
        .raw_command(&token_cdb(0x11, 10, p.len()), &p, 0)
        .unwrap();
    assert!(out.is_good(), "WRITE USING TOKEN (zero): {out:?}");
    let b = std::fs::read(dir.path().join("b.img")).unwrap();
    assert!(blocks(&b, 10, 10).iter().all(|&x| x == 0));
    assert!(blocks(&b, 20, 1).iter().all(|&x| x == 0xEE));
}
