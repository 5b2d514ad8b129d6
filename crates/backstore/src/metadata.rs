//! The temporary files metadata writes go through (`BlockStore::write_metadata`: written,
//! synced, then renamed over `<file>.<name>`).
//!
//! Each write has a temporary file of its own, `<file>.<name>.<tag><count>.tmp`: `tag`
//! drawn at random once per process (32 bits from the OS), `count` this process's
//! metadata writes so far. No two writers, in one process or in gateways on different
//! hosts, ever open the same temporary file. With one shared name (`<file>.<name>.tmp`,
//! as before) they did, and on Gluster that cost two things (docs/fencing.md, "A
//! stalled writer's volume locks"):
//!
//! * a writer that stopped (SIGSTOP, a hung process) while its temporary file was open
//!   kept AFR's lock on that file, and the next writer's create (`O_TRUNC`) waited for
//!   it until the stopped one resumed: the standby taking over from a stalled active
//!   gateway hung writing the record that makes it active;
//! * two writers at once wrote into one file, so what one renamed could hold the other's
//!   bytes, or a write landed in the object the other had just renamed into place.
//!
//! The files are created with `O_EXCL`: a name already there is never opened. A write
//! that fails after the create removes its file; a process killed between create and
//! rename leaves it behind (a few hundred bytes; nothing reads it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The temporary file the next metadata write of object `path` goes through.
pub(crate) fn temporary_name(path: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("{path}.{:08x}{n:x}.tmp", process_tag())
}

/// This process's random tag: drawn once; should the OS refuse randomness, the process
/// id and the clock stand in (unique on one host, and across hosts as likely as not).
fn process_tag() -> u32 {
    static TAG: OnceLock<u32> = OnceLock::new();
    *TAG.get_or_init(|| {
        getrandom::u32().unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            std::process::id().rotate_left(16) ^ nanos
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_write_has_a_temporary_name_of_its_own_beside_the_object() {
        let names: Vec<String> = (0..1000)
            .map(|_| temporary_name("/d/lun.img.alua"))
            .collect();
        let distinct: HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        for name in &names {
            let middle = name
                .strip_prefix("/d/lun.img.alua.")
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .unwrap_or_else(|| panic!("{name}"));
            // The tag (8 hex digits) and the count, hex: nothing else in the name.
            assert!(middle.len() > 8, "{name}");
            assert!(middle.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
            assert_eq!(&middle[..8], format!("{:08x}", process_tag()), "{name}");
        }
    }

    #[test]
    fn temporary_names_from_threads_at_once_never_meet() {
        let names: Vec<String> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..500).map(|_| temporary_name("x.pr")).collect::<Vec<_>>()))
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        let distinct: HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), 2000);
    }
}
