//! Sign-in attempts: how often one address or one user name may fail before the next attempt
//! waits, and how many passwords are hashed at once. A wrong password costs an argon2 hash on
//! the blocking pool SQLite shares: unbounded, a guessing client slows everything else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures allowed in a window before attempts wait.
const FREE_FAILURES: u32 = 5;
/// How long failures are remembered.
const WINDOW: Duration = Duration::from_mins(15);
/// The first wait, after the free failures.
const FIRST_WAIT: Duration = Duration::from_secs(30);
/// The longest wait asked.
const LONGEST_WAIT: Duration = Duration::from_mins(15);
/// Addresses and names remembered at most (the oldest are forgotten first).
const REMEMBERED: usize = 10_000;
/// Passwords hashed at once.
pub(crate) const HASHING: usize = 2;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// When the last one was.
    last: Instant,
}

impl Failures {
    /// When the next attempt may be made: none while the free failures last, then a wait that
    /// doubles with each failure.
    fn next_allowed(&self) -> Option<Instant> {
        let over = self.count.checked_sub(FREE_FAILURES)?;
        let wait = FIRST_WAIT
            .saturating_mul(1 << over.min(10))
            .min(LONGEST_WAIT);
        Some(self.last + wait)
    }
}

/// What the daemon remembers of failed sign-ins.
#[derive(Debug)]
pub(crate) struct SignIns {
    failures: Mutex<HashMap<Key, Failures>>,
    /// Bounds the argon2 hashes running at once.
    pub(crate) hashing: tokio::sync::Semaphore,
}

impl Default for SignIns {
    fn default() -> Self {
        Self {
            failures: Mutex::default(),
            hashing: tokio::sync::Semaphore::new(HASHING),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Name(String),
}

impl SignIns {
    /// How long a sign-in from `address` as `name` must wait, if it must.
    pub(crate) fn wait(&self, address: Option<IpAddr>, name: Option<&str>) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        keys(address, name)
            .filter_map(|k| failures.get(&k)?.next_allowed())
            .max()
            .and_then(|at| at.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Counts a failed sign-in from `address` as `name`.
    pub(crate) fn failed(&self, address: Option<IpAddr>, name: Option<&str>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= REMEMBERED {
            failures.retain(|_, f| now.duration_since(f.last) < WINDOW);
        }
        if failures.len() >= REMEMBERED {
            // still full of recent ones: the oldest go
            if let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
            {
                failures.remove(&oldest);
            }
        }
        for k in keys(address, name) {
            let f = failures.entry(k).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(f.last) >= WINDOW {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
    }

    /// A sign-in succeeded: the address and the name start afresh.
    pub(crate) fn succeeded(&self, address: Option<IpAddr>, name: Option<&str>) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        for k in keys(address, name) {
            failures.remove(&k);
        }
    }
}

fn keys(address: Option<IpAddr>, name: Option<&str>) -> impl Iterator<Item = Key> {
    address
        .map(Key::Address)
        .into_iter()
        .chain(name.map(|n| Key::Name(n.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_free_ones_wait_longer_each_time_and_memory_is_bounded() {
        let guard = SignIns::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..FREE_FAILURES - 1 {
            guard.failed(Some(a), Some("dana"));
            assert_eq!(guard.wait(Some(a), Some("dana")), None);
        }
        guard.failed(Some(a), Some("dana"));
        let first = guard.wait(Some(a), None).unwrap();
        assert!(first <= FIRST_WAIT && first > FIRST_WAIT / 2, "{first:?}");
        // the name waits from any address; another name from another address does not
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(guard.wait(Some(b), Some("dana")).is_some());
        assert_eq!(guard.wait(Some(b), Some("erin")), None);
        // each further failure doubles the wait, up to the longest
        for _ in 0..20 {
            guard.failed(Some(a), None);
        }
        let long = guard.wait(Some(a), None).unwrap();
        assert!(
            long > Duration::from_mins(14) && long <= LONGEST_WAIT,
            "{long:?}"
        );
        // a success forgets them
        guard.succeeded(Some(a), Some("dana"));
        assert_eq!(guard.wait(Some(a), Some("dana")), None);
        // no more than REMEMBERED addresses are kept, however many fail
        for i in 0..(REMEMBERED as u32 + 50) {
            guard.failed(Some(IpAddr::from(i.to_be_bytes())), None);
        }
        let kept = guard.failures.lock().unwrap().len();
        assert!(kept <= REMEMBERED, "{kept}");
    }
}
