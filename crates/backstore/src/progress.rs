//! Progress of long store work (a fully provisioned file's allocation) to whoever asked
//! for it on this thread: the daemon's control socket shows it to `admin` while the
//! request runs ([`with_sink`]). Work runs on the thread that asked (opening a store,
//! resizing it), so the sink is the calling thread's own; without one, reports go nowhere
//! (the log has its own lines).

use std::cell::RefCell;

/// How far one piece of work is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What is being done, for people ("file /srv/a.img: allocating").
    pub what: String,
    /// Bytes done so far.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
}

type Sink = Box<dyn Fn(&Progress)>;

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// Runs `work` with `sink` told of the progress this thread reports meanwhile; the sink
/// that was there before comes back after.
pub fn with_sink<R>(sink: impl Fn(&Progress) + 'static, work: impl FnOnce() -> R) -> R {
    struct Restore(Option<Sink>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SINK.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SINK.with(|s| s.borrow_mut().replace(Box::new(sink)));
    let _restore = Restore(previous);
    work()
}

/// Tells this thread's sink, if any.
pub(crate) fn report(progress: &Progress) {
    SINK.with(|s| {
        if let Some(sink) = s.borrow().as_ref() {
            sink(progress);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn reports_reach_the_sink_of_this_thread_while_the_work_runs() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let p = |done| Progress {
            what: "w".into(),
            done,
            total: 2,
        };
        report(&p(0)); // no sink: nowhere
        let s = seen.clone();
        let out = with_sink(
            move |p: &Progress| s.borrow_mut().push(p.done),
            || {
                report(&p(1));
                // Another thread's reports are not this sink's.
                std::thread::spawn(move || {
                    report(&Progress {
                        what: "x".into(),
                        done: 9,
                        total: 9,
                    })
                })
                .join()
                .unwrap();
                report(&p(2));
                7
            },
        );
        assert_eq!(out, 7);
        report(&p(3)); // after: nowhere again
        assert_eq!(*seen.borrow(), [1, 2]);
    }

    #[test]
    fn nested_sinks_restore_the_outer_one() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let (a, b) = (seen.clone(), seen.clone());
        let p = |done| Progress {
            what: "w".into(),
            done,
            total: 9,
        };
        with_sink(
            move |p: &Progress| a.borrow_mut().push(("outer", p.done)),
            || {
                with_sink(
                    move |p: &Progress| b.borrow_mut().push(("inner", p.done)),
                    || report(&p(1)),
                );
                report(&p(2));
            },
        );
        assert_eq!(*seen.borrow(), [("inner", 1), ("outer", 2)]);
    }
}
