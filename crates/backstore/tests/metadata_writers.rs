//! Two gateways writing one metadata object at once, on the fake libgfapi: the first
//! writer held inside its write (the fake's `hang` on the fsync of its temporary file, as
//! a gateway stopped there would be) does not touch what the second writes, both writes
//! succeed, and the object is always one of them whole (docs/fencing.md, "A stalled
//! writer's volume locks"; `backstore::metadata`).
//!
//! On Gluster a writer stopped there also keeps AFR's lock on its temporary file, which
//! made the second writer's create wait until it resumed when both used one temporary
//! name; the fake does not model AFR, so that half is measured live (docs/fencing.md).
//! Here, with one shared name, the second writer truncated and renamed the first one's
//! file and the first one's rename failed.
//!
//! A file of its own: the fake's rules file is changed to let the held write go, which
//! must not release another test's held call.

use backstore::{open_store, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use store_api::BlockStore;
use testkit::fake::fake_library_path;

const VOLUME: &str = "race";
const LUN: &str = "race-lun.img";

/// The first fsync of a file of the race LUN hangs until the rules file changes.
const FAULTS: &str = r#"
[[rule]]
path = "/race-*"
op = "fsync"
count = 1
hang = true
"#;

fn store(server: &str) -> std::sync::Arc<dyn BlockStore> {
    open_store(&StoreOptions {
        bstype: "glfs".into(),
        backing_store: format!("{VOLUME}@{server}:{LUN}"),
        create_size: Some(1 << 20),
        gfapi_library: Some(fake_library_path()),
        ..Default::default()
    })
    .unwrap()
}

/// The temporary files of the LUN's `alua` object on the volume, with their lengths.
fn temporaries(volume: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(volume)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            (name.starts_with(&format!("{LUN}.alua.")) && name.ends_with(".tmp"))
                .then(|| (name, e.metadata().map_or(0, |m| m.len())))
        })
        .collect()
}

#[test]
fn a_metadata_writer_held_in_its_write_leaves_another_writers_object_whole() {
    let root: PathBuf = tempfile::Builder::new()
        .prefix("gfapi-fake-root")
        .tempdir()
        .unwrap()
        .keep();
    let volume = root.join(VOLUME);
    std::fs::create_dir_all(&volume).unwrap();
    let rules = root.join(".faults.toml");
    std::fs::write(&rules, FAULTS).unwrap();
    std::env::set_var("GFAPI_FAKE_ROOT", &root);

    // Two gateways: mounts of their own (another server name, another glfs_t).
    let x = store("localhost");
    let y = store("127.0.0.1");
    let from_x = b"version 12 active gateway-x".to_vec();
    let from_y = b"version 13 active gateway-y, after a takeover".to_vec();

    let (x_done, x_result) = mpsc::channel();
    let x_writer = x.clone();
    let x_bytes = from_x.clone();
    std::thread::spawn(move || {
        let _ = x_done.send(x_writer.write_metadata("alua", &x_bytes));
    });
    // X has written its temporary file and is held in its fsync.
    let since = Instant::now();
    while !temporaries(&volume)
        .iter()
        .any(|(_, len)| *len == from_x.len() as u64)
    {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "X's temporary file never appeared: {:?}",
            temporaries(&volume)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(x_result.try_recv().is_err(), "X's write is held");

    // Y writes the same object meanwhile, and is not held by X.
    let (y_done, y_result) = mpsc::channel();
    let y_writer = y.clone();
    let y_bytes = from_y.clone();
    std::thread::spawn(move || {
        let _ = y_done.send(y_writer.write_metadata("alua", &y_bytes));
    });
    let written = y_result
        .recv_timeout(Duration::from_secs(20))
        .expect("Y's write finished while X was held");
    assert_eq!(written, Ok(()));
    assert_eq!(y.read_metadata("alua").unwrap(), Some(from_y.clone()));
    // X's temporary file is X's alone, untouched.
    let held = temporaries(&volume);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        std::fs::read(volume.join(&held[0].0)).unwrap(),
        from_x,
        "X's temporary file holds X's bytes"
    );

    // X resumes: its write finishes too, and the object is X's (renamed last), whole.
    std::fs::write(&rules, format!("{FAULTS}\n# X resumes\n")).unwrap();
    let written = x_result
        .recv_timeout(Duration::from_secs(20))
        .expect("X's write finished once released");
    assert_eq!(written, Ok(()));
    assert_eq!(x.read_metadata("alua").unwrap(), Some(from_x.clone()));
    assert_eq!(
        std::fs::read(volume.join(format!("{LUN}.alua"))).unwrap(),
        from_x
    );
    assert_eq!(temporaries(&volume), vec![], "no temporary file left");
    let _ = std::fs::remove_dir_all(&root);
}
