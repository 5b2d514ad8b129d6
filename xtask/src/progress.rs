//! Progress of long tasks (conformance, fixtures, bench, fuzz, soak): a progress bar (indicatif) when
//! stderr is a terminal, else one plain line per step, so CI logs and redirected output stay
//! readable and free of control codes.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Progress through `total` steps of the task named `task`.
pub struct Progress {
    task: String,
    total: u64,
    /// Steps done (the bar keeps its own; plain lines number from this).
    done: AtomicU64,
    bar: ProgressBar,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise.
    pub fn new(task: &str, total: u64) -> Progress {
        Progress::with_bar(task, total, std::io::stderr().is_terminal())
    }

    fn with_bar(task: &str, total: u64, bar: bool) -> Progress {
        let bar = if bar {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "[{task}] {{bar:30}} {{pos}}/{{len}} {{elapsed_precise}} (~{{eta}} left) {{msg}}"
                ))
                .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress {
            task: task.to_string(),
            total,
            done: AtomicU64::new(0),
            bar,
        }
    }

    /// A step named `label` begins.
    pub fn start(&self, label: &str) {
        if self.bar.is_hidden() {
            let step = self.done.load(Ordering::Relaxed) + 1;
            eprintln!("{}", plain_line(&self.task, step, self.total, label));
        } else {
            self.bar.set_message(label.to_string());
        }
    }

    /// The current step is done.
    pub fn done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.bar.inc(1);
    }

    /// Runs `f` as the step named `label`: started, then done if it succeeds (a failed
    /// step is not counted; its error is the caller's).
    pub fn step<T>(&self, label: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.start(label);
        let out = f()?;
        self.done();
        Ok(out)
    }

    /// Prints a line (above the bar, when there is one).
    pub fn line(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    /// A task that fails half-way leaves no bar behind its error.
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The plain line announcing step `step` of `total`.
fn plain_line(task: &str, step: u64, total: u64, label: &str) -> String {
    format!("[{task} {step}/{total}] {label}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_number_the_steps() {
        assert_eq!(
            plain_line("conformance", 3, 12, "memory SCSI.Read10"),
            "[conformance 3/12] memory SCSI.Read10"
        );
        let p = Progress::with_bar("fixture", 2, false);
        assert!(p.bar.is_hidden(), "no bar off a terminal");
        p.start("engine");
        p.done();
        assert_eq!(p.done.load(Ordering::Relaxed), 1);
        p.finish();
    }

    #[test]
    fn a_step_counts_only_when_it_succeeds() {
        let p = Progress::with_bar("fixture", 3, false);
        assert_eq!(p.step("glusterd", || Ok(7)).unwrap(), 7);
        let err = p
            .step("volume", || -> anyhow::Result<()> {
                anyhow::bail!("no brick")
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "no brick");
        assert_eq!(p.done.load(Ordering::Relaxed), 1);
        let bar = Progress::with_bar("fixture", 3, true);
        bar.step("engine", || Ok(())).unwrap();
        assert_eq!(bar.bar.position(), 1);
        bar.finish();
    }

    #[test]
    fn a_bar_counts_its_steps() {
        let p = Progress::with_bar("bench", 3, true);
        p.start("a");
        p.done();
        p.start("b");
        p.done();
        assert_eq!(p.bar.position(), 2);
        assert_eq!(p.bar.length(), Some(3));
        p.finish();
    }
}
