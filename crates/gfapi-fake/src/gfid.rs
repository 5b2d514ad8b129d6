//! GFIDs: Gluster names every inode with a 16-byte id that is the same for every client
//! and outlives renames. The fake derives it from the backing inode (inode number, birth
//! time, device), so every process on one fake root computes the same id for the same
//! file, and finds the file again from the id by looking through the volume (the result
//! is remembered per process and checked before use).

use crate::fs::{lock, Res};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// A GFID.
pub type Gfid = [u8; 16];

/// The GFID of every volume's root directory in Gluster.
pub const ROOT: Gfid = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// `statx(2)` of `p` without following a final symlink.
pub fn statx(p: &Path) -> Res<libc::statx> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    // SAFETY: zeroed statx is a valid out-buffer; c is a valid C string.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            &mut stx,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(stx)
}

fn same_inode(a: &libc::statx, b: &libc::statx) -> bool {
    a.stx_ino == b.stx_ino
        && a.stx_dev_major == b.stx_dev_major
        && a.stx_dev_minor == b.stx_dev_minor
}

/// The GFID of an inode given its statx and the volume directory's.
pub fn from_statx(vol: &libc::statx, stx: &libc::statx) -> Gfid {
    if same_inode(vol, stx) {
        return ROOT;
    }
    let mut g = [0u8; 16];
    g[..8].copy_from_slice(&stx.stx_ino.to_be_bytes());
    let birth = if stx.stx_mask & libc::STATX_BTIME != 0 {
        (stx.stx_btime.tv_sec as u32) ^ stx.stx_btime.tv_nsec.rotate_left(7)
    } else {
        0
    };
    g[8..12].copy_from_slice(&birth.to_be_bytes());
    let dev = (stx.stx_dev_major << 20) ^ stx.stx_dev_minor ^ 0x6766_6964; // "gfid"
    g[12..].copy_from_slice(&dev.to_be_bytes());
    g
}

/// The GFID of the file at `host` (not following a final symlink) in `vol_dir`.
pub fn of_path(vol_dir: &Path, host: &Path) -> Res<Gfid> {
    Ok(from_statx(&statx(vol_dir)?, &statx(host)?))
}

/// The canonical text form, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn to_string(g: &Gfid) -> String {
    let h: Vec<String> = g.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..].concat()
    )
}

type Cache = Mutex<HashMap<(PathBuf, Gfid), String>>;

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The volume path (`/a/b`) of the inode named `g` in `vol_dir`, or ESTALE when no file
/// of the volume has it (Gluster's answer for a handle whose inode is gone).
pub fn find(vol_dir: &Path, g: &Gfid) -> Res<String> {
    if *g == ROOT {
        return Ok("/".into());
    }
    let vol = statx(vol_dir)?;
    let key = (vol_dir.to_path_buf(), *g);
    if let Some(rel) = lock(cache()).get(&key).cloned() {
        let host = vol_dir.join(rel.trim_start_matches('/'));
        if statx(&host).is_ok_and(|s| from_statx(&vol, &s) == *g) {
            return Ok(rel);
        }
    }
    let mut stack = vec![(vol_dir.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let child_rel = format!("{rel}/{}", name.to_string_lossy());
            let host = e.path();
            let Ok(s) = statx(&host) else { continue };
            if from_statx(&vol, &s) == *g {
                lock(cache()).insert(key, child_rel.clone());
                return Ok(child_rel);
            }
            if u32::from(s.stx_mode) & libc::S_IFMT == libc::S_IFDIR {
                stack.push((host, child_rel));
            }
        }
    }
    Err(libc::ESTALE)
}

/// Whether this process has met `g` in `vol_dir` (looked it up, created or found it).
pub fn known(vol_dir: &Path, g: &Gfid) -> bool {
    lock(cache()).contains_key(&(vol_dir.to_path_buf(), *g))
}

/// Remembers where `g` lives (after a lookup or create), sparing [`find`] a search.
pub fn remember(vol_dir: &Path, g: &Gfid, rel: &str) {
    lock(cache()).insert((vol_dir.to_path_buf(), *g), rel.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfids_are_stable_follow_renames_and_root_is_one() {
        let d = tempfile::tempdir().unwrap();
        let vol = d.path();
        std::fs::create_dir(vol.join("a")).unwrap();
        std::fs::write(vol.join("a/f"), b"x").unwrap();
        assert_eq!(of_path(vol, vol).unwrap(), ROOT);
        assert_eq!(to_string(&ROOT), "00000000-0000-0000-0000-000000000001");
        let g = of_path(vol, &vol.join("a/f")).unwrap();
        assert_ne!(g, of_path(vol, &vol.join("a")).unwrap());
        assert_eq!(find(vol, &g).unwrap(), "/a/f");
        std::fs::rename(vol.join("a/f"), vol.join("g")).unwrap();
        assert_eq!(of_path(vol, &vol.join("g")).unwrap(), g);
        assert_eq!(find(vol, &g).unwrap(), "/g");
        std::fs::remove_file(vol.join("g")).unwrap();
        assert_eq!(find(vol, &g), Err(libc::ESTALE));
    }
}
