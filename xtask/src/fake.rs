//! `cargo xtask build-fake`: links the fake libgfapi.so.0 with gfapi's symbol versions,
//! and the drop-in checks against tgt (bs_glfs) and fio.

use crate::gluster::LiveVolume;
use crate::util;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::tgtd::{StartError, Tgtd};

/// gfapi's version nodes, oldest first; each inherits from the previous one.
pub const NODES: &[&str] = &[
    "GFAPI_PRIVATE_3.4.0",
    "GFAPI_3.4.0",
    "GFAPI_3.4.2",
    "GFAPI_3.5.0",
    "GFAPI_3.5.1",
    "GFAPI_3.6.0",
    "GFAPI_3.7.0",
    "GFAPI_PRIVATE_3.7.0",
    "GFAPI_3.7.4",
    "GFAPI_3.7.15",
    "GFAPI_3.7.16",
    "GFAPI_3.7.17",
    "GFAPI_3.10.0",
    "GFAPI_3.10.7",
    "GFAPI_3.11.0",
    "GFAPI_PRIVATE_3.12.0",
    "GFAPI_3.13.0",
    "GFAPI_4.0.0",
    "GFAPI_4.1.6",
    "GFAPI_PRIVATE_6.0",
    "GFAPI_6.0",
    "GFAPI_PRIVATE_6.1",
    "GFAPI_6.6",
    "GFAPI_7.0",
];

/// Exported functions per version node: the node real consumers bind (read off the real
/// libgfapi.so.0 10.3 with `objdump -T`).
pub const SYMBOLS: &[(&str, &[&str])] = &[
    (
        "GFAPI_3.4.0",
        &[
            "glfs_new",
            "glfs_set_volfile",
            "glfs_set_volfile_server",
            "glfs_set_logging",
            "glfs_set_xlator_option",
            "glfs_init",
            "glfs_fini",
            "glfs_open",
            "glfs_creat",
            "glfs_close",
            "glfs_from_glfd",
            "glfs_read",
            "glfs_write",
            "glfs_readv",
            "glfs_writev",
            "glfs_preadv",
            "glfs_pwritev",
            "glfs_lseek",
            "glfs_lstat",
            "glfs_stat",
            "glfs_fstat",
            "glfs_access",
            "glfs_mkdir",
            "glfs_unlink",
            "glfs_rmdir",
            "glfs_rename",
            "glfs_statvfs",
            "glfs_opendir",
            "glfs_readdir_r",
            "glfs_telldir",
            "glfs_seekdir",
            "glfs_closedir",
        ],
    ),
    (
        "GFAPI_3.5.0",
        &[
            "glfs_get_volumeid",
            "glfs_readdir",
            "glfs_fallocate",
            "glfs_discard",
            "glfs_zerofill",
        ],
    ),
    ("GFAPI_3.5.1", &["glfs_unset_volfile_server"]),
    ("GFAPI_3.7.15", &["glfs_truncate"]),
    (
        "GFAPI_6.0",
        &[
            "glfs_pread",
            "glfs_pwrite",
            "glfs_read_async",
            "glfs_write_async",
            "glfs_readv_async",
            "glfs_writev_async",
            "glfs_pread_async",
            "glfs_pwrite_async",
            "glfs_preadv_async",
            "glfs_pwritev_async",
            "glfs_fsync",
            "glfs_fsync_async",
            "glfs_fdatasync",
            "glfs_fdatasync_async",
            "glfs_ftruncate",
            "glfs_ftruncate_async",
            "glfs_discard_async",
            "glfs_zerofill_async",
        ],
    ),
];

/// The rest of gfapi 10.3's functions (attributes, xattrs, directories, locks, handles,
/// upcalls, leases and the private entry points), each under the node the real
/// library exports it at (testdata/gfapi/libgfapi-10.3.symbols). The pre-6.0 variants
/// under older nodes come from `.symver` in `crates/gfapi-fake/src/compat.rs`.
pub const MORE_SYMBOLS: &[(&str, &[&str])] = &[
    (
        "GFAPI_PRIVATE_3.4.0",
        &[
            "glfs_active_subvol",
            "glfs_init_done",
            "glfs_loc_touchup",
            "glfs_resolve_at",
            "glfs_subvol_done",
        ],
    ),
    (
        "GFAPI_3.4.0",
        &[
            "glfs_chdir",
            "glfs_chmod",
            "glfs_chown",
            "glfs_dup",
            "glfs_fchdir",
            "glfs_fchmod",
            "glfs_fchown",
            "glfs_fgetxattr",
            "glfs_flistxattr",
            "glfs_fremovexattr",
            "glfs_fsetxattr",
            "glfs_futimens",
            "glfs_getcwd",
            "glfs_getxattr",
            "glfs_lchown",
            "glfs_lgetxattr",
            "glfs_link",
            "glfs_listxattr",
            "glfs_llistxattr",
            "glfs_lremovexattr",
            "glfs_lsetxattr",
            "glfs_lutimens",
            "glfs_mknod",
            "glfs_posix_lock",
            "glfs_readdirplus_r",
            "glfs_readlink",
            "glfs_removexattr",
            "glfs_setxattr",
            "glfs_symlink",
            "glfs_utimens",
        ],
    ),
    (
        "GFAPI_3.4.2",
        &[
            "glfs_h_close",
            "glfs_h_creat",
            "glfs_h_create_from_handle",
            "glfs_h_extract_handle",
            "glfs_h_getattrs",
            "glfs_h_link",
            "glfs_h_mkdir",
            "glfs_h_mknod",
            "glfs_h_open",
            "glfs_h_opendir",
            "glfs_h_readlink",
            "glfs_h_rename",
            "glfs_h_setattrs",
            "glfs_h_stat",
            "glfs_h_symlink",
            "glfs_h_truncate",
            "glfs_h_unlink",
            "glfs_setfsgid",
            "glfs_setfsgroups",
            "glfs_setfsuid",
        ],
    ),
    ("GFAPI_3.5.0", &["glfs_h_setxattrs", "glfs_readdirplus"]),
    ("GFAPI_3.5.1", &["glfs_h_getxattrs", "glfs_h_removexattrs"]),
    ("GFAPI_3.6.0", &["glfs_get_volfile", "glfs_h_access"]),
    (
        "GFAPI_3.7.0",
        &[
            "glfs_h_acl_get",
            "glfs_h_acl_set",
            "glfs_h_anonymous_read",
            "glfs_h_anonymous_write",
            "glfs_h_statfs",
        ],
    ),
    (
        "GFAPI_PRIVATE_3.7.0",
        &[
            "glfs_free_from_ctx",
            "glfs_new_from_ctx",
            "glfs_process_upcall_event",
            "glfs_resolve",
        ],
    ),
    ("GFAPI_3.7.4", &["glfs_h_lookupat"]),
    (
        "GFAPI_3.7.16",
        &[
            "glfs_free",
            "glfs_h_poll_upcall",
            "glfs_upcall_get_event",
            "glfs_upcall_get_fs",
            "glfs_upcall_get_reason",
            "glfs_upcall_inode_get_expire",
            "glfs_upcall_inode_get_flags",
            "glfs_upcall_inode_get_object",
            "glfs_upcall_inode_get_oldpobject",
            "glfs_upcall_inode_get_oldpstat",
            "glfs_upcall_inode_get_pobject",
            "glfs_upcall_inode_get_pstat",
            "glfs_upcall_inode_get_stat",
        ],
    ),
    ("GFAPI_3.7.17", &["glfs_realpath"]),
    ("GFAPI_3.10.0", &["glfs_sysrq"]),
    ("GFAPI_3.10.7", &["glfs_fd_set_lkowner"]),
    (
        "GFAPI_3.11.0",
        &[
            "glfs_object_copy",
            "glfs_xreaddirplus_get_object",
            "glfs_xreaddirplus_get_stat",
            "glfs_xreaddirplus_r",
        ],
    ),
    ("GFAPI_PRIVATE_3.12.0", &["glfs_ipc"]),
    (
        "GFAPI_3.13.0",
        &["glfs_upcall_register", "glfs_upcall_unregister"],
    ),
    (
        "GFAPI_4.0.0",
        &[
            "glfs_file_lock",
            "glfs_h_lease",
            "glfs_lease",
            "glfs_setfsleaseid",
        ],
    ),
    (
        "GFAPI_4.1.6",
        &[
            "glfs_upcall_lease_get_lease_type",
            "glfs_upcall_lease_get_object",
        ],
    ),
    ("GFAPI_PRIVATE_6.0", &["glfs_iatt_from_statx", "glfs_statx"]),
    (
        "GFAPI_6.0",
        &["glfs_copy_file_range", "glfs_fsetattr", "glfs_setattr"],
    ),
    ("GFAPI_PRIVATE_6.1", &["glfs_setfspid"]),
    ("GFAPI_6.6", &["glfs_h_creat_open"]),
    ("GFAPI_7.0", &["glfs_set_statedump_path"]),
];

/// Our own node for the marker and test hooks (not part of gfapi).
pub const FAKE_NODE: (&str, &[&str]) = (
    "GFAPI_FAKE_1.0",
    &[
        "gfapi_fake_version",
        "gfapi_fake_set_root",
        "gfapi_fake_inflight",
    ],
);

/// The GNU ld version script: every gfapi node (chained), our symbols under the node
/// consumers bind, everything else local.
pub fn version_script() -> String {
    let mut s = String::new();
    let mut prev: Option<&str> = None;
    for node in NODES {
        let syms: Vec<&str> = SYMBOLS
            .iter()
            .chain(MORE_SYMBOLS)
            .filter(|(n, _)| n == node)
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        let _ = writeln!(s, "{node} {{");
        if !syms.is_empty() {
            s.push_str("  global:\n");
            for sym in &syms {
                let _ = writeln!(s, "    {sym};");
            }
        }
        if prev.is_none() {
            s.push_str("  local:\n    *;\n");
        }
        match prev {
            Some(p) => {
                let _ = writeln!(s, "}} {p};");
            }
            None => s.push_str("};\n"),
        }
        prev = Some(node);
    }
    let _ = writeln!(s, "{} {{\n  global:", FAKE_NODE.0);
    for sym in FAKE_NODE.1 {
        let _ = writeln!(s, "    {sym};");
    }
    s.push_str("};\n");
    s
}

/// Directory holding the built library: `<target dir>/gfapi-fake`.
pub fn out_dir() -> PathBuf {
    util::target_dir().join("gfapi-fake")
}

/// Builds the fake library (dev profile) and returns the path of `libgfapi.so.0`
/// (`<target dir>/gfapi-fake/libgfapi.so.0`).
pub fn build() -> Result<PathBuf> {
    build_profile(false)
}

/// Builds an optimised fake into `<target dir>/gfapi-fake/release/libgfapi.so.0` (for
/// benchmarks; the dev build is the default everywhere else).
#[allow(dead_code)] // for the lead to wire into a task (e.g. bench)
pub fn build_release() -> Result<PathBuf> {
    build_profile(true)
}

fn build_profile(release: bool) -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.args(["build", "--quiet", "-p", "gfapi-fake", "--lib"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    let staticlib = util::target_dir().join(profile).join("libgfapi_fake.a");
    if !staticlib.exists() {
        bail!("{} was not produced", staticlib.display());
    }
    let out = if release {
        out_dir().join("release")
    } else {
        out_dir()
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let script = out.join("gfapi.map");
    std::fs::write(&script, version_script())?;
    let so = out.join("libgfapi.so.0");
    let tmp = out.join("libgfapi.so.0.tmp");
    util::run(
        Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
            .arg("-shared")
            .arg("-o")
            .arg(&tmp)
            .arg("-Wl,--whole-archive")
            .arg(&staticlib)
            .arg("-Wl,--no-whole-archive")
            .arg(format!("-Wl,--version-script={}", script.display()))
            .arg("-Wl,-soname,libgfapi.so.0")
            .args(["-lpthread", "-ldl", "-lm", "-lgcc_s", "-lc"]),
    )?;
    std::fs::rename(&tmp, &so)?;
    let link = out.join("libgfapi.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("libgfapi.so.0", &link)?;
    Ok(so)
}

fn which(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.exists())
}

/// Finds `bin` or fails with [`util::Skipped`] ("skipped: <bin> not installed").
fn need(bin: &str) -> Result<PathBuf> {
    which(bin).ok_or_else(|| util::Skipped(format!("{bin} not installed")).into())
}

/// A temporary fake root with one volume; removed on drop.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(tag: &str) -> Result<TempRoot> {
        let dir = std::env::temp_dir().join(format!("gfapi-fake-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("vol"))?;
        Ok(TempRoot(dir))
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Checks that `consumer` resolves every gfapi symbol against the fake (`ldd -r`).
fn check_linkage(fake_lib_dir: &Path, consumer: &Path) -> Result<()> {
    let o = Command::new("ldd")
        .arg("-r")
        .arg(consumer)
        .env("LD_LIBRARY_PATH", fake_lib_dir)
        .output()
        .context("running ldd")?;
    let text = output_text(&o);
    let missing: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("GFAPI") || (l.contains("undefined symbol: glfs_")))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} lacks gfapi symbols in the fake:\n{}",
            consumer.display(),
            missing.join("\n")
        );
    }
    let wanted = fake_lib_dir.join("libgfapi.so.0");
    if consumer.ends_with("fio")
        && !text
            .lines()
            .any(|l| l.contains("libgfapi.so.0") && l.contains(&*wanted.to_string_lossy()))
    {
        bail!(
            "{} does not resolve libgfapi.so.0 to {}:\n{text}",
            consumer.display(),
            wanted.display()
        );
    }
    Ok(())
}

/// Where a drop-in check's gfapi volume is.
#[derive(Clone, Copy)]
enum Volume<'a> {
    /// The fake libgfapi in this directory; its root is the directory given beside it.
    Fake { lib_dir: &'a Path, root: &'a Path },
    /// A live volume through the system's libgfapi.
    Live(&'a LiveVolume),
}

impl Volume<'_> {
    /// Volume name and volfile server.
    fn name_and_host(&self) -> (&str, &str) {
        match self {
            Volume::Fake { .. } => ("vol", "127.0.0.2"),
            Volume::Live(v) => (&v.name, &v.host),
        }
    }

    /// The environment that makes a consumer load this volume's libgfapi.
    fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        match self {
            Volume::Fake { lib_dir, root } => vec![
                ("LD_LIBRARY_PATH", lib_dir.as_os_str().to_owned()),
                ("GFAPI_FAKE_ROOT", root.as_os_str().to_owned()),
            ],
            Volume::Live(_) => Vec::new(),
        }
    }

    /// Where the volume's file `name` can be read on this machine (the fake's file, or
    /// the live volume's first brick).
    fn local_file(&self, name: &str) -> PathBuf {
        match self {
            Volume::Fake { root, .. } => root.join("vol").join(name),
            Volume::Live(v) => v.brick.join(name),
        }
    }
}

/// Drop-in proof with fio: runs the `gfapi` and `gfapi_async` engines (randrw with crc32c
/// verification) against a fake volume and checks the data landed in the fake file.
pub fn check_fio(fake_lib_dir: &Path) -> Result<()> {
    let fake_lib_dir = &std::path::absolute(fake_lib_dir)?;
    let fio = need("fio")?;
    check_linkage(fake_lib_dir, &fio)?;
    let root = TempRoot::new("fio")?;
    fio_engines(
        &fio,
        Volume::Fake {
            lib_dir: fake_lib_dir,
            root: &root.0,
        },
        &root.0,
        "",
    )
}

/// [`check_fio`] on a live volume through the system's libgfapi (new files each run, read
/// back on the volume's first brick).
pub fn check_fio_live(volume: &LiveVolume) -> Result<()> {
    let fio = need("fio")?;
    let work = TempRoot::new("fio-live")?;
    let prefix = format!("fio-{}-", std::process::id());
    let _remove = crate::gluster::RemoveOnDrop::new(
        &volume.spec(),
        FIO_ENGINES.map(|engine| format!("{prefix}{engine}.dat")),
    );
    fio_engines(&fio, Volume::Live(volume), &work.0, &prefix)
}

/// fio's two gfapi engines.
const FIO_ENGINES: [&str; 2] = ["gfapi", "gfapi_async"];

/// Runs fio's two gfapi engines on `volume` (files `<prefix><engine>.dat`, fio's state in
/// `work`) and checks that each file has its 1 MiB of data.
fn fio_engines(fio: &Path, volume: Volume, work: &Path, prefix: &str) -> Result<()> {
    let (vol, host) = volume.name_and_host();
    for engine in FIO_ENGINES {
        let name = format!("{prefix}{engine}.dat");
        let o = Command::new(fio)
            // fio drops verify state files in its working directory
            .current_dir(work)
            .envs(volume.env())
            .args([
                "--name=dropin",
                &format!("--ioengine={engine}"),
                &format!("--volume={vol}"),
                &format!("--brick={host}"),
                &format!("--filename={name}"),
                "--size=1m",
                "--bs=4k",
                "--rw=randrw",
                "--verify=crc32c",
                "--do_verify=1",
                "--iodepth=4",
                "--randrepeat=1",
                "--verify_state_save=0",
                "--output-format=terse",
            ])
            .output()?;
        let text = output_text(&o);
        if !o.status.success() {
            bail!("fio --ioengine={engine} failed ({}):\n{text}", o.status);
        }
        let file = volume.local_file(&name);
        let data = std::fs::read(&file)
            .with_context(|| format!("fio wrote no {} on the volume", file.display()))?;
        if data.len() != 1 << 20 {
            bail!(
                "{} has {} bytes, expected 1 MiB",
                file.display(),
                data.len()
            );
        }
        if data.iter().all(|&b| b == 0) {
            bail!(
                "{} is all zeros: no data reached the volume",
                file.display()
            );
        }
    }
    Ok(())
}

/// The nextest test (crates/testkit/tests/tgt_roundtrip.rs) that writes distinct
/// patterns through tgtd's glfs store on the fake and compares them over iSCSI and in the
/// fake volume's file.
pub const TGT_GLFS_DATA_TEST: &str =
    "glfs_lun_on_the_fake_reads_back_and_stores_the_written_patterns";

/// Drop-in proof with tgt: tgtd loads bs_glfs.so, which binds our libgfapi.so.0; a LUN
/// backed by `vol@127.0.0.2:lun.img` is written and read through iSCSI with libiscsi's
/// iscsi-test-cu, and its file must change; then [`TGT_GLFS_DATA_TEST`] checks the data
/// itself (patterns at the first, a middle and the last block, over iSCSI and in the
/// file). [`util::Skipped`] when tgtd cannot run here (not installed, not root, refused
/// for lack of privileges) or a tool is missing.
pub fn check_tgt(fake_lib_dir: &Path) -> Result<()> {
    let fake_lib_dir = &std::path::absolute(fake_lib_dir)?;
    if let Some(why) = testkit::tgtd::glfs_unavailable_reason() {
        return Err(util::Skipped(why).into());
    }
    check_linkage(fake_lib_dir, Path::new(testkit::tgtd::BS_GLFS))?;
    let root = TempRoot::new("tgt")?;
    std::fs::write(root.0.join("vol").join("lun.img"), vec![0u8; 8 << 20])?;
    tgt_writes_through(
        Volume::Fake {
            lib_dir: fake_lib_dir,
            root: &root.0,
        },
        "lun.img",
    )?;
    run_tgt_glfs_data_test(&fake_lib_dir.join("libgfapi.so.0"))
}

/// [`check_tgt`] on a live volume: tgtd's bs_glfs.so on the system's libgfapi serves a
/// file that fio made through gfapi (a new one each run); libiscsi writes and reads it,
/// and the file on the volume's first brick must change.
pub fn check_tgt_live(volume: &LiveVolume) -> Result<()> {
    if let Some(why) = testkit::tgtd::glfs_unavailable_reason() {
        return Err(util::Skipped(why).into());
    }
    let fio = need("fio")?;
    let name = format!("tgt-{}.img", std::process::id());
    let _remove = crate::gluster::RemoveOnDrop::new(&volume.spec(), [name.clone()]);
    let work = TempRoot::new("tgt-live")?;
    let o = Command::new(&fio)
        .current_dir(&work.0)
        .args(["--name=lun", "--ioengine=gfapi", "--rw=write", "--bs=1m"])
        .args(["--size=8m", "--end_fsync=1", "--output-format=terse"])
        .arg(format!("--volume={}", volume.name))
        .arg(format!("--brick={}", volume.host))
        .arg(format!("--filename={name}"))
        .output()?;
    if !o.status.success() {
        bail!(
            "fio could not make {name} on the volume ({}):\n{}",
            o.status,
            output_text(&o)
        );
    }
    tgt_writes_through(Volume::Live(volume), &name)
}

/// A private tgtd whose bs_glfs.so binds `volume`'s libgfapi serves the volume's existing
/// file `name`; iscsi-test-cu writes and reads it, and the file must have changed.
fn tgt_writes_through(volume: Volume, name: &str) -> Result<()> {
    let test_cu = need("iscsi-test-cu")?;
    let lun = volume.local_file(name);
    let before = std::fs::read(&lun).with_context(|| format!("reading {}", lun.display()))?;
    // A private tgtd (own port and management socket, killed on drop).
    let tgtd = match Tgtd::start_with_env(volume.env()) {
        Ok(t) => t,
        Err(StartError::Unavailable(why)) => return Err(util::Skipped(why).into()),
        Err(e) => return Err(anyhow::Error::new(e).context("starting tgtd")),
    };
    let (vol, host) = volume.name_and_host();
    let url = tgtd
        .add_lun(
            "iqn.2024-01.org.example:gfapi-dropin",
            "glfs",
            &format!("{vol}@{host}:{name}"),
        )
        .map_err(anyhow::Error::msg)?;
    // One test per run (iscsi-test-cu honours only the last --test); writes need --dataloss.
    for test in ["SCSI.Write10.Simple", "SCSI.Read10.Simple"] {
        let o = Command::new(&test_cu)
            .arg("--dataloss")
            .arg(format!("--test={test}"))
            .arg(&url)
            .output()?;
        let text = output_text(&o);
        if !o.status.success() || text.contains("FAILED") || !text.contains("passed") {
            bail!("iscsi-test-cu {test} failed ({}):\n{text}", o.status);
        }
    }
    let after = std::fs::read(&lun)?;
    drop(tgtd);
    if after == before {
        bail!(
            "iscsi-test-cu passed but {} did not change: tgtd did not write through gfapi",
            lun.display()
        );
    }
    Ok(())
}

/// Runs [`TGT_GLFS_DATA_TEST`] on `fake_lib`, requiring tgtd (no skip: the caller has
/// checked that it can run).
fn run_tgt_glfs_data_test(fake_lib: &Path) -> Result<()> {
    let mut cmd = util::cargo();
    if util::has_nextest() {
        // --workspace: the features of the workspace test run, so nothing is rebuilt.
        cmd.args(["nextest", "run", "--workspace", "--no-tests=fail", "-E"])
            .arg(format!(
                "binary_id(testkit::tgt_roundtrip) & test(={TGT_GLFS_DATA_TEST})"
            ));
    } else {
        cmd.args(["test", "-p", "testkit", "--test", "tgt_roundtrip", "--"])
            .args(["--exact", TGT_GLFS_DATA_TEST]);
    }
    cmd.env(testkit::fake::ENV_LIB, fake_lib)
        .env(testkit::tgtd::ENV_REQUIRE, "1");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", util::display(&cmd)))?;
    let text = output_text(&out);
    if !out.status.success()
        || !(text.contains("1 passed") || text.contains("1 test run: 1 passed"))
    {
        bail!("{} failed ({}):\n{text}", util::display(&cmd), out.status);
    }
    Ok(())
}

/// Runs a drop-in check from a unit test: passes when it passes, returns after a
/// `[skip]` line when what it needs is missing (outside CI), panics otherwise.
#[cfg(test)]
fn drop_in_test(name: &str, outcome: Result<()>) {
    match outcome {
        Ok(()) => {}
        Err(e) if e.downcast_ref::<util::Skipped>().is_some() && !util::in_ci() => {
            eprintln!("[skip] {name}: {e}");
        }
        Err(e) => panic!("{name}: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_script_chains_nodes_and_places_symbols() {
        let s = version_script();
        assert!(s.starts_with("GFAPI_PRIVATE_3.4.0 {\n  global:\n    glfs_active_subvol;\n"));
        assert_eq!(s.matches("  local:\n    *;\n};\n").count(), 1);
        assert!(s.contains("GFAPI_3.4.2 {\n  global:\n    glfs_h_close;\n"));
        assert!(s.contains("    glfs_setfsuid;\n} GFAPI_3.4.0;\n"));
        assert!(s.contains("GFAPI_6.0 {\n  global:\n    glfs_pread;\n"));
        assert!(s.contains("} GFAPI_PRIVATE_6.0;\n"));
        assert!(s.ends_with("GFAPI_FAKE_1.0 {\n  global:\n    gfapi_fake_version;\n    gfapi_fake_set_root;\n    gfapi_fake_inflight;\n};\n"));
    }

    #[test]
    #[ignore = "needs `cargo xtask build-fake` and fio"]
    fn fio_drop_in() {
        drop_in_test("fio_drop_in", check_fio(&out_dir()));
    }

    #[test]
    #[ignore = "needs `cargo xtask build-fake`, tgt, tgt-glusterfs and libiscsi-bin"]
    fn tgt_drop_in() {
        drop_in_test("tgt_drop_in", check_tgt(&out_dir()));
    }
}
