//! The machine's TCP congestion control for the bench's run.
//!
//! Every side of the bench talks TCP over loopback: the initiator to the target, gfapi to
//! the brick. Ours crosses two such hops per command where the ceiling (fio in gfapi)
//! crosses one. A congestion control that paces (BBR: with no `fq` qdisc on `lo` the
//! kernel paces each socket itself, with a timer per burst) makes every loopback send
//! cost timers and softirqs and holds large sends back; measured on this project's
//! machines (docs/performance.md, twenty-second round) it cut ours' 64 KiB writes to
//! about 40% and the ceiling's far less, so the ratios would measure the loopback's
//! pacing, not the target. A real initiator sends over a network from a host of its own.
//! So the bench sets the network namespace's default (`net.ipv4.tcp_congestion_control`,
//! which a connection takes when it is made, accepted ones included) for its run, `cubic`
//! unless told otherwise (`--tcp-congestion keep` measures with the machine's), puts it
//! back at the end, and says in the report which one ran. A bench killed in between
//! leaves a journal, and the next bench puts the setting back first.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where the kernel keeps the default for new connections.
pub const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_congestion_control";
/// The congestion controls the kernel can give a connection now.
pub const AVAILABLE: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";
/// `--tcp-congestion` for "the machine's own, unchanged".
pub const KEEP: &str = "keep";
/// The run's congestion control when none is asked for: not pacing, in every kernel
/// the project has met (where it is not, the machine's is kept and the report says so).
pub const DEFAULT: &str = "cubic";

/// Where a set default's old value is kept while it is set (the journal).
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Journal {
    sysctl: PathBuf,
    old: String,
}

/// The files the setting lives in: the kernel's, or a test's.
#[derive(Debug, Clone)]
pub struct Files {
    pub sysctl: PathBuf,
    pub available: PathBuf,
    pub journal: PathBuf,
}

impl Files {
    /// The kernel's files, with the journal at `journal`.
    pub fn kernel(journal: PathBuf) -> Files {
        Files {
            sysctl: SYSCTL.into(),
            available: AVAILABLE.into(),
            journal,
        }
    }
}

fn read_trimmed(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("{}", path.display()))?
        .trim()
        .to_string())
}

/// Puts back a default a bench killed while it was set left in `journal`, and says
/// what it did; `None` when there was nothing to do.
pub fn restore_interrupted(journal: &Path) -> Result<Option<String>> {
    let Some(j) = super::read_journal::<Journal>(journal, "TCP")? else {
        return Ok(None);
    };
    std::fs::write(&j.sysctl, &j.old).with_context(|| {
        format!(
            "a bench interrupted earlier left {} changed; putting back {} failed",
            j.sysctl.display(),
            j.old
        )
    })?;
    std::fs::remove_file(journal)?;
    Ok(Some(format!(
        "a bench interrupted earlier left the TCP congestion control changed: put back to {}",
        j.old
    )))
}

/// The congestion control of the run: set for it (and put back on drop) or the machine's.
#[derive(Debug)]
pub struct Congestion {
    /// The one the run's connections get.
    pub running: String,
    /// The machine's, when the run set another (put back on drop).
    set_over: Option<String>,
    /// Why the wanted one could not be set (the run then has the machine's).
    pub not_set: Option<String>,
    files: Files,
}

impl Congestion {
    /// Makes `wanted` (a name, or [`KEEP`]) the default for the run's connections. A
    /// name the kernel does not offer is an error (bad input, said before anything
    /// runs); a default that cannot be written (not root, a read-only /proc) leaves the
    /// machine's, and says why.
    pub fn set(wanted: &str, files: Files) -> Result<Congestion> {
        Congestion::set_or(wanted, files, true)
    }

    /// [`Congestion::set`] for the bench's own choice ([`DEFAULT`], no option given): a
    /// kernel that does not offer it leaves the machine's, and the report says so.
    pub fn set_default(files: Files) -> Result<Congestion> {
        Congestion::set_or(DEFAULT, files, false)
    }

    fn set_or(wanted: &str, files: Files, asked: bool) -> Result<Congestion> {
        let machine = read_trimmed(&files.sysctl)?;
        let keep = |not_set| Congestion {
            running: machine.clone(),
            set_over: None,
            not_set,
            files: files.clone(),
        };
        if wanted == KEEP || wanted == machine {
            return Ok(keep(None));
        }
        let available = read_trimmed(&files.available)?;
        if !available.split_whitespace().any(|n| n == wanted) {
            if !asked {
                return Ok(keep(Some(format!(
                    "this kernel does not offer {wanted}, only {available}"
                ))));
            }
            bail!(
                "--tcp-congestion {wanted}: this kernel offers {available} (or `{KEEP}` for the machine's own)"
            );
        }
        let journal = Journal {
            sysctl: files.sysctl.clone(),
            old: machine.clone(),
        };
        if let Err(e) = std::fs::write(&files.journal, serde_json::to_string(&journal)?) {
            return Ok(keep(Some(format!("{}: {e}", files.journal.display()))));
        }
        if let Err(e) = std::fs::write(&files.sysctl, wanted) {
            let _ = std::fs::remove_file(&files.journal);
            return Ok(keep(Some(format!("{}: {e}", files.sysctl.display()))));
        }
        // From here on the value returned puts the machine's back when dropped, so no
        // early return: what the kernel reads back names the run's, else what was written.
        let now = read_trimmed(&files.sysctl).unwrap_or_else(|_| wanted.to_string());
        Ok(Congestion {
            running: now,
            set_over: Some(machine),
            not_set: None,
            files,
        })
    }

    /// What the report says of it.
    pub fn describe(&self) -> String {
        match (&self.set_over, &self.not_set) {
            (Some(machine), _) => format!(
                "{} for every connection of the run (the machine's default {machine} set aside for it and put back after; a pacing one such as bbr costs loopback sends timers and holds them back, and ours crosses two loopback hops to the ceiling's one)",
                self.running
            ),
            (None, Some(why)) => format!(
                "{}, the machine's (another could not be set: {why})",
                self.running
            ),
            (None, None) => format!("{}, the machine's", self.running),
        }
    }
}

impl Drop for Congestion {
    fn drop(&mut self) {
        if let Some(machine) = self.set_over.take() {
            match std::fs::write(&self.files.sysctl, &machine) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.files.journal);
                }
                Err(e) => eprintln!(
                    "[bench] putting the TCP congestion control back to {machine} failed ({e}); {} keeps it for the next bench",
                    self.files.journal.display()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, now: &str) -> Files {
        let f = Files {
            sysctl: dir.join("tcp_congestion_control"),
            available: dir.join("tcp_available_congestion_control"),
            journal: dir.join("journal.json"),
        };
        std::fs::write(&f.sysctl, format!("{now}\n")).unwrap();
        std::fs::write(&f.available, "reno bbr cubic\n").unwrap();
        f
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap().trim().to_string()
    }

    #[test]
    fn the_run_gets_the_wanted_one_and_the_machine_gets_its_own_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path(), "bbr");
        let c = Congestion::set("cubic", f.clone()).unwrap();
        assert_eq!(c.running, "cubic");
        assert_eq!(read(&f.sysctl), "cubic");
        assert!(f.journal.exists(), "kept while set");
        assert!(c.describe().starts_with("cubic for every connection"));
        assert!(c.describe().contains("default bbr"));
        drop(c);
        assert_eq!(read(&f.sysctl), "bbr");
        assert!(!f.journal.exists());
    }

    #[test]
    fn keep_and_the_machine_s_own_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path(), "cubic");
        for wanted in [KEEP, "cubic"] {
            let c = Congestion::set(wanted, f.clone()).unwrap();
            assert_eq!(c.running, "cubic");
            assert_eq!(c.describe(), "cubic, the machine's");
            assert!(!f.journal.exists());
        }
        let f = files(dir.path(), "bbr");
        let c = Congestion::set(KEEP, f.clone()).unwrap();
        assert_eq!(
            (c.running.as_str(), read(&f.sysctl).as_str()),
            ("bbr", "bbr")
        );
    }

    #[test]
    fn a_name_the_kernel_does_not_offer_is_refused_before_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path(), "bbr");
        let e = Congestion::set("vegas", f.clone()).unwrap_err().to_string();
        assert!(e.contains("--tcp-congestion vegas"), "{e}");
        assert!(e.contains("reno bbr cubic"), "{e}");
        assert_eq!(read(&f.sysctl), "bbr");
        assert!(!f.journal.exists());
    }

    #[test]
    fn without_the_option_a_kernel_without_cubic_keeps_the_machine_s_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path(), "bbr");
        std::fs::write(&f.available, "reno bbr\n").unwrap();
        let c = Congestion::set_default(f.clone()).unwrap();
        assert_eq!(c.running, "bbr");
        assert_eq!(
            c.describe(),
            "bbr, the machine's (another could not be set: this kernel does not offer cubic, \
             only reno bbr)"
        );
        assert_eq!(read(&f.sysctl), "bbr");
        assert!(!f.journal.exists());
        // Asked for by name, the same is an error.
        assert!(Congestion::set(DEFAULT, f.clone()).is_err());
        // Where it is offered, the default sets it like the option.
        std::fs::write(&f.available, "reno bbr cubic\n").unwrap();
        let c = Congestion::set_default(f.clone()).unwrap();
        assert_eq!(c.running, "cubic");
        drop(c);
        assert_eq!(read(&f.sysctl), "bbr");
    }

    #[test]
    fn a_default_that_cannot_be_written_leaves_the_machine_s_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = files(dir.path(), "bbr");
        // Readable, and not writable even by root.
        f.sysctl = "/proc/version".into();
        let machine = read(&f.sysctl);
        let c = Congestion::set("cubic", f.clone()).unwrap();
        let why = c.not_set.clone().expect("not set");
        assert!(why.starts_with("/proc/version: "), "{why}");
        assert_eq!(c.running, machine);
        assert!(c
            .describe()
            .contains("the machine's (another could not be set"));
        assert!(!f.journal.exists(), "nothing to put back");
        assert_eq!(read(&f.sysctl), machine);
    }

    #[test]
    fn a_bench_killed_while_it_was_set_is_put_back_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path(), "bbr");
        let c = Congestion::set("cubic", f.clone()).unwrap();
        std::mem::forget(c); // killed: no drop
        assert_eq!(read(&f.sysctl), "cubic");
        let said = restore_interrupted(&f.journal).unwrap().unwrap();
        assert!(said.ends_with("put back to bbr"), "{said}");
        assert_eq!(read(&f.sysctl), "bbr");
        assert!(!f.journal.exists());
        assert_eq!(
            restore_interrupted(&f.journal).unwrap(),
            None,
            "nothing left"
        );
    }

    #[test]
    fn a_journal_that_is_not_one_is_an_error_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("journal.json");
        std::fs::write(&j, "not json").unwrap();
        assert!(restore_interrupted(&j).is_err());
        assert!(j.exists());
    }
}
