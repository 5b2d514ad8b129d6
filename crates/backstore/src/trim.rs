//! Giving memory libgfapi has freed back to the system.
//!
//! libgfapi allocates per request (call frames, RPC requests, write-behind requests, ...)
//! from glibc's malloc, on its own threads and so in several malloc arenas. The most of it
//! in use at once follows the requests in flight, which rise when the bricks are slow. Once
//! they are answered that memory is free again, but glibc keeps free pages inside its
//! arenas: the process's resident size stays at the highest it reached. Measured on a
//! replica-3 soak (docs/reliability.md): 80 MiB in use, 78 MiB free but resident.
//!
//! So while a glfs mount exists, a thread (`malloc-trim`) calls glibc's `malloc_trim(0)`
//! every [`TRIM_EVERY`], which returns the free pages of every arena to the system. It
//! frees nothing in use and changes no data; it briefly locks each arena in turn.

use std::sync::OnceLock;
use std::time::Duration;

/// How often the free memory is given back.
pub(crate) const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Returns glibc's free memory to the system now; whether any was returned (always
/// `false` where the C library is not glibc).
pub(crate) fn trim_now() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and only rearranges glibc's free lists
        // under the arenas' own locks; it is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Starts the `malloc-trim` thread, once per process (later calls do nothing); whether it
/// runs.
pub(crate) fn start() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                trim_now();
            })
            .is_ok()
    })
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_inside_the_heap_is_given_back() {
        // 32 MiB in 4 KiB blocks (below glibc's mmap threshold, so from an arena), all
        // freed but the last, which keeps the free space from being the arena's top.
        let mut blocks: Vec<Box<[u8; 4096]>> = (0..8192).map(|_| Box::new([1u8; 4096])).collect();
        let last = blocks.pop();
        drop(blocks);
        assert!(trim_now(), "nothing was returned");
        drop(last);
    }

    #[test]
    fn the_thread_starts_once() {
        assert!(start());
        assert!(start());
        let count = || {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter(|t| {
                    let comm = t.as_ref().unwrap().path().join("comm");
                    std::fs::read_to_string(comm).unwrap_or_default().trim() == "malloc-trim"
                })
                .count()
        };
        // The thread names itself once it runs.
        let mut seen = count();
        for _ in 0..200 {
            if seen > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            seen = count();
        }
        assert_eq!(seen, 1);
    }
}
