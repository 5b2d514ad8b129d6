//! Coherent mode of the `glfs` store: what a LUN shared by several gateways needs.
//!
//! Each gateway reaches the volume through a gfapi mount of its own, and Gluster's
//! client-side performance translators are per mount, not coherent across mounts:
//! write-behind acknowledges a write before it reaches the brick (another gateway then
//! reads the old data), io-cache and read-ahead may answer a read from pages cached before
//! another gateway's write. SCSI wants the LU's cache coherent across all its ports, so a
//! host that writes through one gateway and reads through another (active/active
//! multipath, a path switch) must read what it wrote.
//!
//! In coherent mode (bsopt `coherent=on`, and always when the LUN is shared:
//! [`crate::StoreOptions::shared`], which the daemon sets with `--gateway-id`) the image
//! is opened with `O_DIRECT`, and every mount the store factory makes sets write-behind's
//! `strict-O_DIRECT` on, which is what Gluster reads those for (checked in its sources,
//! `xlators/performance`): write-behind passes writes of an `O_DIRECT` fd straight to the
//! brick when `strict-O_DIRECT` is on (`wb_writev`; without it the flag is ignored),
//! io-cache does not cache an fd opened `O_DIRECT` (`ioc_open_cbk`, `ioc_readv`), and
//! read-ahead does not read ahead on one (`ra_open_cbk`). `strict-O_DIRECT` changes nothing
//! for fds opened without `O_DIRECT`: the single-gateway store (and the metadata and lock
//! fds of every store) keep write-behind as before, so the option is set on every mount
//! (gfapi's mounts are shared per volume, and the first opener's options win).
//!
//! What `O_DIRECT` costs: gfapi copies the caller's buffers into its own, so their
//! alignment does not matter; the brick opens the file `O_DIRECT` too (unless the volume
//! has `network.remote-dio` on, which filters the flag out in the client translator, below
//! the caches: still coherent, the brick's page cache being one for all clients), so
//! offsets and lengths must be multiples of the brick device's logical sector size: a
//! LUN block size of 512 on a 4Kn brick disk fails its writes with EINVAL. A brick file
//! system without `O_DIRECT` (tmpfs before Linux 6.6) refuses the open with EINVAL: the
//! store then fails to open with a message saying so, never falls back to cached I/O.
//!
//! gfapi tells nothing of the brick disk's sector size (`glfs_statvfs` and `glfs_fstat`
//! give the file system's block size, 4096 on either kind of disk), so the store finds a
//! block size below it by trying ([`check_block_size`]): when it opens, it reads one
//! logical block `O_DIRECT` where the image has data (`glfs_lseek` `SEEK_DATA`: a read
//! of a hole never reaches the disk, so it is checked by nobody), and EINVAL fails the
//! open, naming the block size and the sector size found by reading larger powers of
//! two. An image with no data yet (field failure #16: its first write failed) has
//! nothing to read, so the store writes one block `O_DIRECT` to a scratch file of its
//! own on the image's bricks and removes it (`check_on_scratch`; measured on a 4Kn
//! brick, below). Not caught: in a replicated volume a brick other than the one that
//! answers reads (the image check), and a volume that refuses the scratch file or
//! places it on other bricks (then nothing is decided and the store opens).
//!
//! Measured on Gluster 10.3 (volume `fieldfix`, one brick on XFS over a loop device of
//! 4096-byte logical sectors), an `O_DIRECT` fd of a 1 MiB image made by `ftruncate`:
//! reads of 512 bytes at 0 and at 512 return 512 (a hole), at and past the end 0 (end
//! of file), after `fallocate` of 64 KiB (unwritten extents) 512; `SEEK_DATA` ENXIO;
//! a write of 0 bytes returns 0; `glfs_statvfs` gives `f_bsize` and `f_frsize` 4096. None
//! of that tells a 4Kn disk from a 512-byte one. A scratch file next to it
//! (`.<image>.<suffix>`, placed on the same brick, `trusted.glusterfs.pathinfo`): with
//! `strict-O_DIRECT` on, `O_DIRECT` writes of 512, 1024 and 2048 bytes fail EINVAL and
//! 4096 succeeds; without it all four return their length (write-behind), and a 512-byte
//! read of the 4096 bytes then written fails EINVAL.

//!
//! The metadata objects gateways share the reservations through (`<file>.pr`,
//! `<file>.pr-acks`) are replaced by rename, a new file (a new gfid) each time. md-cache
//! keeps a lookup for `md-cache-timeout` (1 s by default), so a mount that looked the name
//! up just before another gateway's rename goes on resolving it to the replaced file:
//! opened by that gfid it is gone (ESTALE, or ENOENT: read as "no object", which on the
//! live volume made a gateway load "nothing registered" right after a PREEMPT, and would
//! make a change written back over it drop every registration). Every mount therefore
//! sets md-cache's timeout to 0 ([`fresh_lookups`]): a lookup always reaches the brick,
//! which costs one round trip per metadata read and nothing on the data path (reads and
//! writes of an open fd never look up). quick-read and open-behind then never see the
//! replaced inode either: the new file is a new inode, its content read afresh.
//! The fake models md-cache when a rule asks (docs/fake-gfapi.md): the store suite's
//! metadata-across-mounts check runs so and fails on the fake without this option.

use crate::OpenError;

/// The translator option that makes write-behind honour `O_DIRECT`.
pub(crate) fn strict_o_direct() -> gfapi::XlatorOption {
    gfapi::XlatorOption {
        xlator: "*-write-behind".into(),
        key: "strict-O_DIRECT".into(),
        value: "on".into(),
    }
}

/// The translator option that makes md-cache answer no lookup from its cache, so a path
/// resolves to the file another gateway's mount has just renamed over it.
pub(crate) fn fresh_lookups() -> gfapi::XlatorOption {
    gfapi::XlatorOption {
        xlator: "*-md-cache".into(),
        key: "md-cache-timeout".into(),
        value: "0".into(),
    }
}

/// The flags the image is opened with. A coherent (shared) image is also opened
/// `O_NONBLOCK`: a Gluster brick then refuses a read or write into a range that another
/// client holds a mandatory lock on with EAGAIN (`ErrorKind::Fenced`) instead of queueing
/// it until the lock goes and then letting it land (docs/fencing.md); for a regular file
/// the flag changes nothing else.
pub(crate) fn open_flags(coherent: bool) -> i32 {
    if coherent {
        libc::O_RDWR | libc::O_DIRECT | libc::O_NONBLOCK
    } else {
        libc::O_RDWR
    }
}

/// Whether coherent mode is on: asked for by `coherent=on`, or required by a shared
/// LUN, which `coherent=off` cannot turn off.
pub(crate) fn wanted(shared: bool, bsopt: Option<bool>, bsopts: &str) -> Result<bool, OpenError> {
    match (shared, bsopt) {
        (true, Some(false)) => Err(OpenError::BadOptions {
            opts: bsopts.to_string(),
            reason: "coherent=off, but this LUN is shared by gateways (--gateway-id), \
                     which must see each other's writes: coherent mode stays on"
                .into(),
        }),
        (shared, bsopt) => Ok(shared || bsopt.unwrap_or(false)),
    }
}

/// The open error of a coherent store whose `O_DIRECT` open failed with `e`.
pub(crate) fn open_failed(e: &gfapi::Error) -> String {
    if e.errno() == Some(libc::EINVAL) {
        format!(
            "{e}: coherent mode (a LUN shared by gateways, or coherent=on) opens the image \
             with O_DIRECT, and the volume refused it; the brick's file system may lack \
             O_DIRECT (tmpfs before Linux 6.6): put the bricks on one that has it, or set \
             the volume's network.remote-dio on (the client then keeps O_DIRECT from the \
             brick, still coherent)"
        )
    } else {
        e.to_string()
    }
}

/// Largest brick sector size [`check_block_size`] looks for.
const MAX_SECTOR_SIZE: u64 = 65536;

/// Checks that a coherent image's brick takes `O_DIRECT` I/O of one `block_size` block
/// (see the module documentation): an `Err` names the block size and, when found, the
/// brick disk's logical sector size. Only EINVAL is decisive; any other error (the range
/// fenced by another gateway's mandatory lock: EAGAIN) leaves the question open, and the
/// store opens.
pub(crate) fn check_block_size(
    file: &gfapi::File,
    block_size: u32,
    size: u64,
) -> Result<(), String> {
    let block = u64::from(block_size);
    if size < block {
        return Ok(());
    }
    let data = match file.seek(0, true) {
        Ok(Some(data)) => data,
        // Nothing written yet: no block on the disk to read; write one of our own.
        Ok(None) => return check_on_scratch(file, block_size),
        // A volume without SEEK_DATA: the first block.
        Err(_) => 0,
    };
    // `len` bytes at a multiple of `len`, at the data or the last that fits before the end.
    let read = |len: u64| {
        let at = (data / len * len).min((size - len) / len * len);
        let mut buf = vec![0u8; len as usize];
        file.pread(&mut buf, at)
    };
    match read(block).map_err(|e| e.errno()) {
        Ok(()) => return Ok(()),
        Err(Some(libc::EINVAL)) => {}
        Err(_) => {
            tracing::debug!(
                "could not check the brick's sector size against the block size {block_size}"
            );
            return Ok(());
        }
    }
    let sector = std::iter::successors(Some(block * 2), |s| Some(s * 2))
        .take_while(|&s| s <= MAX_SECTOR_SIZE && s <= size)
        .find(|&s| read(s).is_ok());
    Err(refused(block_size, sector))
}

/// The open error of a block size below the brick disk's sector size (`sector`, when a
/// larger power of two was found to pass).
fn refused(block_size: u32, sector: Option<u64>) -> String {
    let found = match sector {
        Some(s) => format!("the brick disk's logical sector size, {s} bytes"),
        None => "the brick disk's logical sector size (no O_DIRECT I/O of a larger power \
                 of two up to 64 KiB succeeded either)"
            .to_string(),
    };
    let fix = match sector {
        Some(s) if s <= 4096 => format!("give the LUN block_size {s}, or "),
        _ => String::new(),
    };
    format!(
        "logical block size {block_size} is smaller than {found}: coherent mode (a LUN \
         shared by gateways, or coherent=on) reads and writes the image O_DIRECT, which the \
         brick refuses (EINVAL) for I/O that is not in whole sectors; {fix}set the volume's \
         network.remote-dio on (the client then keeps O_DIRECT from the brick, still \
         coherent)"
    )
}

/// The name of the scratch file that probes the sector size next to `path`: in its
/// directory, `.<name>.sector-probe-<pid>-<n>` (unique per opener). Gluster's
/// distribute translator places a name of the form `.<name>.<suffix>` by `<name>` (its
/// default `rsync-hash-regex`), so the scratch file goes to the image's bricks unless
/// the volume's layout changed since the image was made; [`check_on_scratch`] checks
/// that it did.
pub(crate) fn scratch_name(path: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (dir, name) = match path.rfind('/') {
        Some(at) => path.split_at(at + 1),
        None => ("", path),
    };
    format!("{dir}.{name}.sector-probe-{}-{n}", std::process::id())
}

/// The bricks (`host:brick directory`) a `trusted.glusterfs.pathinfo` value names, in
/// one order: `<POSIX(/b):host:/b/file>` on a distribute volume, several of them inside
/// `(<REPLICATE:...> ...)` on a replicated one.
pub(crate) fn bricks(pathinfo: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(pathinfo);
    let mut found: Vec<String> = text
        .split("<POSIX(")
        .skip(1)
        .filter_map(|rest| {
            let (brick, after) = rest.split_once("):")?;
            let (host, _) = after.split_once(':')?;
            Some(format!("{host}:{brick}"))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The sector size check of an image with no data yet (field failure #16): a read of a
/// hole, or past the end, never reaches the disk, so nothing of the image can be read
/// to check it (measured on Gluster 10.3 over a 4Kn brick: O_DIRECT reads of 512 bytes
/// of an empty image, of a fallocated range and past its end all succeed). Writing to
/// the image could overwrite what another gateway writes meanwhile, so the store writes
/// one block `O_DIRECT` to a scratch file of its own ([`scratch_name`]) on the image's
/// bricks (both files' `trusted.glusterfs.pathinfo` name the same bricks; else nothing
/// is decided), then removes it. The mount has write-behind's `strict-O_DIRECT` on
/// ([`strict_o_direct`]), so the write reaches the brick within the call (without it
/// write-behind acknowledges an unaligned write and fails it later, or merges it into
/// an aligned one). EINVAL refuses the open, as the read check does; anything else
/// (a volume refusing new files: read-only, quota, permissions) decides nothing.
fn check_on_scratch(file: &gfapi::File, block_size: u32) -> Result<(), String> {
    let vol = file.volume();
    let scratch = scratch_name(file.path());
    let undecided = |why: &dyn std::fmt::Display| {
        tracing::debug!(
            "could not check the brick's sector size against the block size {block_size} \
             (the image has no data yet): {why}"
        );
        Ok(())
    };
    let probe = match gfapi::File::create(
        vol,
        &scratch,
        libc::O_RDWR | libc::O_DIRECT | libc::O_EXCL,
        0o600,
    ) {
        Ok(probe) => probe,
        Err(e) => return undecided(&format_args!("creating {scratch}: {e}")),
    };
    let decided = (|| {
        let pathinfo = |path: &str| {
            vol.getxattr(path, "trusted.glusterfs.pathinfo")
                .map(|v| bricks(&v))
        };
        match (pathinfo(file.path()), pathinfo(&scratch)) {
            (Ok(image), Ok(probe)) if !image.is_empty() && image == probe => {}
            (Ok(image), Ok(probe)) => {
                return undecided(&format_args!(
                    "{scratch} is on {probe:?}, the image on {image:?}"
                ))
            }
            (Err(e), _) | (_, Err(e)) => return undecided(&format_args!("pathinfo: {e}")),
        }
        let write = |len: u64| probe.pwrite(&vec![0u8; len as usize], 0);
        match write(u64::from(block_size)).map_err(|e| e.errno()) {
            Ok(()) => Ok(()),
            Err(Some(libc::EINVAL)) => {
                let sector =
                    std::iter::successors(Some(u64::from(block_size) * 2), |s| Some(s * 2))
                        .take_while(|&s| s <= MAX_SECTOR_SIZE)
                        .find(|&s| write(s).is_ok());
                Err(refused(block_size, sector))
            }
            Err(e) => undecided(&format_args!("writing {scratch}: errno {e:?}")),
        }
    })();
    drop(probe);
    if let Err(e) = vol.unlink(&scratch) {
        tracing::warn!("cannot remove the sector size probe {scratch}: {e}");
    }
    decided
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_named_after_the_image_in_its_directory() {
        let pid = std::process::id();
        let a = scratch_name("/lun.img");
        assert!(
            a.starts_with(&format!("/.lun.img.sector-probe-{pid}-")),
            "{a}"
        );
        let b = scratch_name("images/vm1.raw");
        assert!(b.starts_with("images/.vm1.raw.sector-probe-"), "{b}");
        assert!(scratch_name("disk").starts_with(".disk.sector-probe-"));
        assert_ne!(
            scratch_name("disk"),
            scratch_name("disk"),
            "unique per opener"
        );
    }

    #[test]
    fn pathinfo_names_the_bricks_in_one_order() {
        // As Gluster 10.3 answered on the fieldfix volume (one brick on a 4Kn disk) and
        // as the replicate translator joins its bricks' answers.
        assert_eq!(
            bricks(b"<POSIX(/srv/fieldfix-4kn/b):vm:/srv/fieldfix-4kn/b/ff-probe-empty.img>\0"),
            vec!["vm:/srv/fieldfix-4kn/b".to_string()]
        );
        let replica = b"(<REPLICATE:v-replicate-0> <POSIX(/b2):n2:/b2/x> <POSIX(/b1):n1:/b1/x>)";
        assert_eq!(
            bricks(replica),
            vec!["n1:/b1".to_string(), "n2:/b2".to_string()]
        );
        assert!(bricks(b"").is_empty());
    }
}
