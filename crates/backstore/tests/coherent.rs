//! Coherent mode (`O_DIRECT`) and the brick disk's sector size: a logical block size
//! below it is refused when the store opens, naming both sizes, instead of every request
//! failing with EINVAL later (also for an image with no data yet). On the fake libgfapi (`cargo xtask build-fake`), whose
//! `sector_size` rule gives the brick disk larger sectors.

use backstore::{open_store, StoreOptions};
use std::io::{Seek, SeekFrom, Write};
use testkit::fake::{fake_library_path, FakeRoot, FaultRule};

const SIZE: u64 = 1 << 20;

/// A glfs store of `vol@localhost:/lun.img` with `block_size`, coherent or not.
fn options(block_size: u32, coherent: bool) -> StoreOptions {
    StoreOptions {
        bstype: "glfs".into(),
        backing_store: "vol@localhost:/lun.img".into(),
        bsopts: if coherent { "coherent=on" } else { "" }.into(),
        block_size: Some(block_size),
        gfapi_library: Some(fake_library_path()),
        ..Default::default()
    }
}

/// A fake root with `/lun.img`, data written at `data_at` (none: all a hole).
fn fake_root(data_at: Option<u64>) -> FakeRoot {
    let root = FakeRoot::new();
    let path = root.create_file("vol", "/lun.img", SIZE);
    if let Some(at) = data_at {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[0x5a; 4096]).unwrap();
    }
    std::env::set_var(testkit::fake::ENV_ROOT, root.path());
    root
}

fn open_error(o: &StoreOptions) -> String {
    match open_store(o) {
        Ok(_) => panic!("opened with block size {:?}", o.block_size),
        Err(e) => e.to_string(),
    }
}

// One test: the fake's root is named by a process-wide variable.
/// Opening with block sizes 512, 1024 and 2048 in coherent mode fails, naming the brick's
/// 4096-byte sectors and the block size to give instead.
fn below_4096_is_refused_in_coherent_mode() {
    for block_size in [512, 1024, 2048] {
        let err = open_error(&options(block_size, true));
        assert!(
            err.contains(&format!(
                "logical block size {block_size} is smaller than the brick disk's logical \
                 sector size, 4096 bytes"
            )) && err.contains("give the LUN block_size 4096"),
            "{err}"
        );
    }
}

#[test]
fn a_block_size_below_the_brick_sector_size_is_refused_in_coherent_mode() {
    let root = fake_root(Some(64 << 10));
    root.set_rules(&[FaultRule::on(&["read", "write"])
        .path("/lun.img")
        .sector_size(4096)]);
    below_4096_is_refused_in_coherent_mode();
    // A block of whole sectors opens; without O_DIRECT the sector size does not matter.
    open_store(&options(4096, true)).unwrap();
    open_store(&options(512, false)).unwrap();
    // On 512-byte sectors (the fake's default) 512 opens.
    root.clear();
    open_store(&options(512, true)).unwrap();

    // A probe the brick refuses for another reason (the range fenced by another
    // gateway's mandatory lock: EAGAIN) decides nothing: the store opens.
    root.set_rules(&[
        FaultRule::on(&["read", "write"]).sector_size(4096),
        FaultRule::on(&["read"]).errno("EAGAIN"),
    ]);
    open_store(&options(512, true)).unwrap();
    drop(root);
    // The idle mount of that root lingers: not reused for the next root's volume of the
    // same name.
    backstore::close_idle_mounts();

    // An image with no data yet has no sector to read (field failure #16: its first
    // write failed with EINVAL): a block written O_DIRECT to a scratch file of the store's
    // own next to it, on the same brick, decides, and the scratch file is removed.
    let root = fake_root(None);
    root.set_rules(&[FaultRule::on(&["read", "write"]).sector_size(4096)]);
    below_4096_is_refused_in_coherent_mode();
    open_store(&options(4096, true)).unwrap();
    assert_eq!(volume_files(&root), ["lun.img"], "no scratch file is left");
    assert!(
        std::fs::read(root.path().join("vol/lun.img"))
            .unwrap()
            .iter()
            .all(|&b| b == 0),
        "the image itself is never written"
    );
    // On 512-byte sectors an empty image opens with 512.
    root.clear();
    open_store(&options(512, true)).unwrap();
    assert_eq!(volume_files(&root), ["lun.img"]);
}

/// The names in the fake volume `vol`, sorted.
fn volume_files(root: &FakeRoot) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.path().join("vol"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
