//! What keeps one client from taking every connection a long-running capstan process can hold:
//! the open-file limit raised as far as the system allows, and a cap on the connections a
//! listener keeps open, in all and from one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Raises this process's soft limit on open files to its hard limit; answers the limit now in
/// force. Each connection a proxy forwards costs two descriptors.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current != Some(hard)
    {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return hard;
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds as many connections as it may.
    Full,
    /// This address holds as many connections as one address may.
    PerAddress,
}

/// Caps on the connections one listener keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnCaps {
    /// In all.
    pub total: usize,
    /// From one client address.
    pub per_address: usize,
}

impl ConnCaps {
    /// The caps a listener of this process gets under its open-file limit now: a quarter of
    /// the descriptors for one listener (a forwarded connection costs two, and other listeners
    /// and files need theirs), an eighth of that for one address.
    pub fn from_fd_limit() -> Self {
        let fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let total = usize::try_from(fds / 4)
            .unwrap_or(usize::MAX)
            .clamp(64, 16_384);
        Self {
            total,
            per_address: (total / 8).max(16),
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Counts a listener's open connections against its [`ConnCaps`].
#[derive(Debug, Clone)]
pub struct ConnLimiter {
    caps: ConnCaps,
    open: Arc<Mutex<Open>>,
}

/// One admitted connection, counted until it is dropped.
#[derive(Debug)]
pub struct Admitted {
    address: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

impl ConnLimiter {
    pub fn new(caps: ConnCaps) -> Self {
        Self {
            caps,
            open: Arc::default(),
        }
    }

    /// Admits a connection from `address`, unless a cap is reached.
    ///
    /// # Errors
    /// The [`Refusal`]: the connection is to be closed at once.
    pub fn admit(&self, address: IpAddr) -> Result<Admitted, Refusal> {
        self.admit_under(address, self.caps)
    }

    /// [`Self::admit`] under `caps` (the limiter's own ignored): caps that follow the
    /// open-file limit as it is now.
    ///
    /// # Errors
    /// The [`Refusal`]: the connection is to be closed at once.
    pub fn admit_under(&self, address: IpAddr, caps: ConnCaps) -> Result<Admitted, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= caps.total {
            return Err(Refusal::Full);
        }
        let from = open.by_address.entry(address).or_default();
        if *from >= caps.per_address {
            return Err(Refusal::PerAddress);
        }
        *from += 1;
        open.total += 1;
        Ok(Admitted {
            address,
            open: Arc::clone(&self.open),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_connection() {
        let limiter = ConnLimiter::new(ConnCaps {
            total: 5,
            per_address: 2,
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let held: Vec<_> = (0..2).map(|_| limiter.admit(a).unwrap()).collect();
        assert_eq!(limiter.admit(a).unwrap_err(), Refusal::PerAddress);
        // another address still gets in, up to the total
        let more: Vec<_> = (0..2).map(|_| limiter.admit(b).unwrap()).collect();
        let c: IpAddr = "127.0.0.4".parse().unwrap();
        let last = limiter.admit(c).unwrap();
        assert_eq!(limiter.admit(c).unwrap_err(), Refusal::Full);
        assert_eq!(limiter.open(), 5);
        // a connection that ends frees its place
        drop(held);
        assert_eq!(limiter.open(), 3);
        assert!(limiter.admit(a).is_ok());
        drop((more, last));
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let limit = raise_fd_limit();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current, now.maximum.or(Some(limit)));
    }
}
