//! Offloaded data transfer (ODX) through the real binary: one host makes a ROD token of a
//! file LUN's blocks (POPULATE TOKEN, then RECEIVE ROD TOKEN INFORMATION), another host
//! writes them into another LUN with WRITE USING TOKEN, and the bytes move inside the
//! gateway. CDBs and parameter lists are written out from SBC-3 (tables 12, 13, 16, 105,
//! 106) and SPC-4 (tables 129 to 131).

mod support;

use support::*;
use testkit::fake::FakeRoot;
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

fn image(fill: impl Fn(usize) -> u8) -> Vec<u8> {
    (0..SIZE as usize).map(fill).collect()
}

/// Where the two LUNs' images live, and the daemon serving them as LUN 0 and 1.
struct Luns {
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    daemon: Running,
    _dir: tempfile::TempDir,
    _root: Option<FakeRoot>,
}

/// Two file LUNs: copies between them go through `copy_file_range`.
fn file_luns() -> Luns {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    std::fs::write(&a, image(|i| (i % 251) as u8)).unwrap();
    std::fs::write(&b, image(|_| 0xEE)).unwrap();
    let luns = format!(
        "[[target.lun]]\nlun = 0\nbstype = \"file\"\nbacking_store = \"{}\"\n\
         [[target.lun]]\nlun = 1\nbstype = \"file\"\nbacking_store = \"{}\"\n",
        a.display(),
        b.display()
    );
    let daemon = start(dir.path(), "", &luns, &[]);
    Luns {
        a,
        b,
        daemon,
        _dir: dir,
        _root: None,
    }
}

/// Two glfs LUNs on the fake volume: the glfs store copies by reads and writes inside the
/// gateway (`copy-offload` is off by default).
fn glfs_luns() -> Luns {
    let dir = tempfile::tempdir().unwrap();
    let root = FakeRoot::new();
    root.create_volume("vol");
    let (a, b) = (root.path().join("vol/a.img"), root.path().join("vol/b.img"));
    std::fs::write(&a, image(|i| (i % 251) as u8)).unwrap();
    std::fs::write(&b, image(|_| 0xEE)).unwrap();
    let top = format!("gfapi_library = \"{}\"\n", fake_library().display());
    let luns = "[[target.lun]]\nlun = 0\nbstype = \"glfs\"\nbacking_store = \"vol@127.0.0.2:a.img\"\n\
                [[target.lun]]\nlun = 1\nbstype = \"glfs\"\nbacking_store = \"vol@127.0.0.2:b.img\"\n";
    let daemon = start(dir.path(), &top, luns, &[("GFAPI_FAKE_ROOT", root.path())]);
    Luns {
        a,
        b,
        daemon,
        _dir: dir,
        _root: Some(root),
    }
}

fn start(
    dir: &std::path::Path,
    top: &str,
    luns: &str,
    env: &[(&str, &std::path::Path)],
) -> Running {
    let config = dir.join("glfs-iscsi.toml");
    std::fs::write(
        &config,
        format!("{top}[[target]]\nname = \"{TARGET}\"\n{luns}"),
    )
    .unwrap();
    Running::start(&["--config", config.to_str().unwrap()], env)
}

#[test]
fn a_token_made_by_one_host_copies_blocks_into_another_hosts_file_lun() {
    a_token_made_by_one_host_copies_blocks_into_another_hosts_lun(file_luns());
}

#[test]
fn a_token_made_by_one_host_copies_blocks_into_another_hosts_glfs_lun() {
    a_token_made_by_one_host_copies_blocks_into_another_hosts_lun(glfs_luns());
}

fn a_token_made_by_one_host_copies_blocks_into_another_hosts_lun(luns: Luns) {
    let daemon = &luns.daemon;
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
    let a = std::fs::read(&luns.a).unwrap();
    let b = std::fs::read(&luns.b).unwrap();
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
    let b = std::fs::read(&luns.b).unwrap();
    assert!(blocks(&b, 10, 10).iter().all(|&x| x == 0));
    assert!(blocks(&b, 20, 1).iter().all(|&x| x == 0xEE));
}
