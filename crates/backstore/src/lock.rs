//! What the stores share to implement [`store_api::BlockStore::lock_metadata`]: the
//! bounded wait (try, back off, try again until the deadline; never a blocking lock call
//! that could hang on a stuck holder or a stuck volume) and the in-process lock table of
//! the memory store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store_api::{LockError, LockMode, LockWait, StoreError};

/// The first pause between two tries; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Runs `attempt` until it takes the lock (`Ok(Some)`), fails (`Err`), or `wait` is over
/// (`Contended`). `Ok(None)` from `attempt` means a conflicting holder has it.
pub(crate) fn acquire<T>(
    name: &str,
    wait: LockWait,
    mut attempt: impl FnMut() -> Result<Option<T>, StoreError>,
) -> Result<T, LockError> {
    let start = Instant::now();
    let limit = match wait {
        LockWait::NoWait => Duration::ZERO,
        LockWait::AtMost(d) => d,
    };
    let mut pause = FIRST_PAUSE;
    loop {
        match attempt() {
            Ok(Some(held)) => return Ok(held),
            Ok(None) => {}
            Err(source) => return Err(LockError::store(name, source)),
        }
        let waited = start.elapsed();
        if waited >= limit {
            return Err(LockError::Contended {
                name: name.to_string(),
                waited,
            });
        }
        std::thread::sleep(pause.min(limit - waited));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Holders per metadata name, in one process: `Some(n)` shared holders, or `None` for one
/// exclusive holder.
#[derive(Debug, Default)]
pub(crate) struct LockTable(Arc<Mutex<HashMap<String, Option<usize>>>>);

/// One holder's entry in a [`LockTable`], given back on drop.
#[derive(Debug)]
pub(crate) struct TableHold {
    table: Arc<Mutex<HashMap<String, Option<usize>>>>,
    name: String,
}

impl LockTable {
    /// Takes `name` in `mode` if no conflicting holder has it.
    pub(crate) fn try_take(&self, name: &str, mode: LockMode) -> Option<TableHold> {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match (table.get_mut(name), mode) {
            (None, LockMode::Shared) => {
                table.insert(name.to_string(), Some(1));
            }
            (None, LockMode::Exclusive) => {
                table.insert(name.to_string(), None);
            }
            (Some(Some(n)), LockMode::Shared) => *n += 1,
            (Some(_), _) => return None,
        }
        Some(TableHold {
            table: self.0.clone(),
            name: name.to_string(),
        })
    }
}

impl Drop for TableHold {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(n)) = table.get_mut(&self.name) {
            if *n > 1 {
                *n -= 1;
                return;
            }
        }
        table.remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store_api::{ErrorKind, Op};

    #[test]
    fn shared_holders_exclude_only_an_exclusive_one() {
        let t = LockTable::default();
        let a = t.try_take("pr", LockMode::Shared).unwrap();
        let b = t.try_take("pr", LockMode::Shared).unwrap();
        assert!(t.try_take("pr", LockMode::Exclusive).is_none());
        assert!(t.try_take("other", LockMode::Exclusive).is_some());
        drop(a);
        assert!(t.try_take("pr", LockMode::Exclusive).is_none());
        drop(b);
        let x = t.try_take("pr", LockMode::Exclusive).unwrap();
        assert!(t.try_take("pr", LockMode::Shared).is_none());
        assert!(t.try_take("pr", LockMode::Exclusive).is_none());
        drop(x);
        assert!(t.try_take("pr", LockMode::Shared).is_some());
    }

    #[test]
    fn no_wait_tries_exactly_once() {
        let mut tries = 0;
        let r: Result<(), _> = acquire("pr", LockWait::NoWait, || {
            tries += 1;
            Ok(None)
        });
        assert!(matches!(r, Err(LockError::Contended { .. })), "{r:?}");
        assert_eq!(tries, 1);
    }

    #[test]
    fn a_bounded_wait_retries_until_the_holder_lets_go() {
        let mut tries = 0;
        let r = acquire("pr", LockWait::AtMost(Duration::from_secs(600)), || {
            tries += 1;
            Ok((tries == 4).then_some(tries))
        });
        assert_eq!(r, Ok(4));
    }

    #[test]
    fn a_store_error_ends_the_wait_with_that_error() {
        let r: Result<(), _> = acquire("pr", LockWait::AtMost(Duration::from_secs(600)), || {
            Err(StoreError::from_errno(Op::Lock, libc::ENOTCONN))
        });
        match r {
            Err(LockError::Store { name, source }) => {
                assert_eq!(name, "pr");
                assert_eq!(source.kind, ErrorKind::NotConnected);
            }
            other => panic!("{other:?}"),
        }
    }
}
