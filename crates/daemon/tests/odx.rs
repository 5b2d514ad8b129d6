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

/// The NAA designator (SPC-4 7.8.6.6: designator type 3, association 0) of the LU in the
/// Device Identification VPD page (83h) it answers.
fn naa_designator(host: &mut Initiator) -> Vec<u8> {
    let out = host
        .raw_command(&[0x12, 0x01, 0x83, 0x01, 0x00, 0x00], &[], 256)
        .unwrap();
    assert!(out.is_good(), "INQUIRY: {out:?}");
    let page = out.data;
    let mut at = 4;
    while at + 4 <= page.len() {
        let len = usize::from(page[at + 3]);
        if page[at + 1] & 0x3F == 0x03 {
            return page[at + 4..at + 4 + len].to_vec();
        }
        at += 4 + len;
    }
    panic!("no NAA designator in {page:02x?}");
}

/// EXTENDED COPY(LID1) (SPC-4 6.4): two identification CSCD descriptors (E4h, the NAA
/// designators, DISK BLOCK LENGTH 512) and one block-to-block segment (02h) of `blocks`
/// from descriptor 0's `src_lba` to descriptor 1's `dst_lba`.
fn xcopy_list(src: &[u8], dst: &[u8], blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let cscd = |naa: &[u8]| {
        let mut d = vec![0xE4, 0x00, 0, 0, 0x01, 0x03, 0, naa.len() as u8];
        d.extend(naa);
        d.resize(29, 0);
        d.extend(&(BLOCK as u32).to_be_bytes()[1..]);
        d
    };
    let mut p = vec![0x01, 0b10 << 3, 0, 64, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 0];
    p.extend(cscd(src));
    p.extend(cscd(dst));
    p.extend([0x02, 0x00, 0x00, 0x18, 0, 0, 0, 1, 0, 0]);
    p.extend(blocks.to_be_bytes());
    p.extend(src_lba.to_be_bytes());
    p.extend(dst_lba.to_be_bytes());
    p
}

/// One target per disk (as gluster-block lays them out): a token made through one target
/// writes into the other's LU, and EXTENDED COPY sent to one copies from the other, the
/// second target added live.
#[test]
fn copies_go_between_the_luns_of_two_targets_one_added_live() {
    const OTHER: &str = "iqn.2026-11.io.glfs-iscsi:odx-other";
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    std::fs::write(&a, image(|i| (i % 253) as u8)).unwrap();
    std::fs::write(&b, image(|_| 0xEE)).unwrap();
    let socket = dir.path().join("control.sock");
    let config = dir.path().join("glfs-iscsi.toml");
    std::fs::write(
        &config,
        format!(
            "[[target]]\nname = \"{TARGET}\"\n[[target.lun]]\nlun = 0\nbstype = \"file\"\n\
             backing_store = \"{}\"\n",
            a.display()
        ),
    )
    .unwrap();
    let daemon = Running::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--control-socket",
            socket.to_str().unwrap(),
        ],
        &[],
    );
    ok(&socket, &["target", "add", OTHER]);
    let b_path = b.to_str().unwrap();
    ok(
        &socket,
        &[
            "lun",
            "add",
            OTHER,
            "0",
            "--bstype",
            "file",
            "--backing-store",
            b_path,
        ],
    );
    let opts = |name: &str| login_opts(&format!("iqn.2026-11.test:{name}"), None);
    let mut host_a = Initiator::connect_with(&daemon.portal(), TARGET, 0, &opts("a")).unwrap();
    let mut host_b = Initiator::connect_with(&daemon.portal(), OTHER, 0, &opts("b")).unwrap();
    let blocks = |img: &[u8], lba: usize, n: usize| img[lba * BLOCK..(lba + n) * BLOCK].to_vec();

    // A token of the first target's blocks 40..72, written through the other at 700.
    let p = populate_list(&[(40, 32)]);
    let out = host_a
        .raw_command(&token_cdb(0x10, 3, p.len()), &p, 0)
        .unwrap();
    assert!(out.is_good(), "POPULATE TOKEN: {out:?}");
    let token = rrti(&mut host_a, 3).3.expect("a ROD token");
    let p = write_list(&token, 0, &[(700, 32)]);
    let out = host_b
        .raw_command(&token_cdb(0x11, 4, p.len()), &p, 0)
        .unwrap();
    assert!(
        out.is_good(),
        "WRITE USING TOKEN on the other target: {out:?}"
    );
    let (sa, status, count, _) = rrti(&mut host_b, 4);
    assert_eq!((sa, status, count), (0x11, 0x01, 32));
    let (img_a, img_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(blocks(&img_b, 700, 32), blocks(&img_a, 40, 32));

    // EXTENDED COPY sent to the other target: the first target's blocks 1000..1016 to 20.
    let (naa_a, naa_b) = (naa_designator(&mut host_a), naa_designator(&mut host_b));
    assert_ne!(naa_a, naa_b);
    let p = xcopy_list(&naa_a, &naa_b, 16, 1000, 20);
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[10..14].copy_from_slice(&(p.len() as u32).to_be_bytes());
    let out = host_b.raw_command(&cdb, &p, 0).unwrap();
    assert!(out.is_good(), "EXTENDED COPY across targets: {out:?}");
    let img_b = std::fs::read(&b).unwrap();
    assert_eq!(blocks(&img_b, 20, 16), blocks(&img_a, 1000, 16));
    assert!(
        blocks(&img_b, 36, 600).iter().all(|&x| x == 0xEE),
        "nothing else"
    );
}
