//! Counting the engine's rotations of each followed json-file log as they happen.
//!
//! json-file records carry no sequence numbers, so once the engine deletes a rotated file
//! nothing in the files left says how many went. The kernel does: every rotation creates the
//! log file anew, and an inotify watch on the container's directory queues one `IN_CREATE` for
//! it, also while capstan is busy or stopped by a signal (the queue is the kernel's). Each file
//! then gets a *generation* (how many creations came before it), and the files between two
//! generations are exactly the ones rotated away unread.
//!
//! One inotify instance serves every followed container (the kernel allows few instances per
//! user, and many watches). When the kernel's queue overflowed, counting begins anew (a new
//! epoch): a loss spanning the overflow, like one with no watch at all, is estimated from
//! engine times by the tailer.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tracing::debug;

/// The shared inotify instance and what each watch counted.
#[derive(Debug)]
pub struct Rotations {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    inotify: Inotify,
    watched: HashMap<WatchDescriptor, Watched>,
    buf: Vec<u8>,
    /// Tells a watch from a later one the kernel gave the same descriptor.
    next_key: u64,
}

#[derive(Debug)]
struct Watched {
    /// The log file's name in the directory.
    file: OsString,
    /// Times it was created since the epoch began.
    created: u64,
    /// Begins anew, counting from 0, each time the kernel dropped events (its queue
    /// overflowed): counts of two epochs say nothing of what came between.
    epoch: u64,
    /// Handles sharing the watch (the kernel gives one per directory).
    users: usize,
    key: u64,
}

impl Rotations {
    /// A new inotify instance, or `None` when the kernel refuses one (the tailers then
    /// estimate what rotation took away).
    pub fn new() -> Option<Arc<Self>> {
        match Inotify::init() {
            Ok(inotify) => Some(Arc::new(Self {
                inner: Mutex::new(Inner {
                    inotify,
                    watched: HashMap::new(),
                    buf: vec![0; 64 * 1024],
                    next_key: 0,
                }),
            })),
            Err(e) => {
                debug!(error = %e, "no inotify instance: rotated-away files are estimated");
                None
            }
        }
    }

    /// Starts counting the creations of `log` (a container's json-file log).
    pub fn watch(self: &Arc<Self>, log: &Path) -> Option<Watch> {
        let (dir, file) = (log.parent()?, log.file_name()?);
        let mut inner = self.lock();
        // what was queued before belongs to earlier watches
        inner.drain();
        // renames are watched too, though not counted: the kernel merges an event into the
        // one queued last when they are alike, and the engine's rename of the log to `.1`
        // keeps two creations apart
        match inner
            .inotify
            .watches()
            .add(dir, WatchMask::CREATE | WatchMask::MOVED_TO)
        {
            Ok(wd) => {
                inner.next_key += 1;
                let next_key = inner.next_key;
                let key = inner
                    .watched
                    .entry(wd.clone())
                    .and_modify(|w| w.users += 1)
                    .or_insert_with(|| Watched {
                        file: file.to_owned(),
                        created: 0,
                        epoch: 0,
                        users: 1,
                        key: next_key,
                    })
                    .key;
                Some(Watch {
                    rotations: Arc::clone(self),
                    wd,
                    key,
                })
            }
            Err(e) => {
                debug!(dir = %dir.display(), error = %e, "cannot watch a log directory: rotated-away files are estimated");
                None
            }
        }
    }
}

impl Rotations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Counts every queued event.
    fn drain(&mut self) {
        loop {
            let events = match self.inotify.read_events(&mut self.buf) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(error = %e, "cannot read inotify events: counting begins anew");
                    self.new_epoch();
                    return;
                }
            };
            let mut overflow = false;
            let mut created: Vec<WatchDescriptor> = Vec::new();
            for event in events {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    overflow = true;
                } else if event
                    .mask
                    .intersects(EventMask::CREATE | EventMask::MOVED_TO)
                {
                    if let Some(name) = event.name
                        && self
                            .watched
                            .get(&event.wd)
                            .is_some_and(|w| w.file.as_os_str() == name)
                    {
                        created.push(event.wd.clone());
                    }
                } else if event.mask.contains(EventMask::IGNORED) {
                    // the directory is gone (the container was removed): so is the watch
                    self.watched.remove(&event.wd);
                }
            }
            for wd in created {
                if let Some(w) = self.watched.get_mut(&wd) {
                    w.created += 1;
                }
            }
            if overflow {
                debug!("the inotify queue overflowed: counting begins anew");
                self.new_epoch();
            }
        }
    }
}

impl Inner {
    /// Every count begins anew.
    fn new_epoch(&mut self) {
        for w in self.watched.values_mut() {
            w.epoch += 1;
            w.created = 0;
        }
    }
}

/// A log file's place in the order of its creations, as a watch counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// Generations of different epochs cannot be compared.
    pub epoch: u64,
    /// Creations counted before it (relative: may be negative for files older than the watch).
    pub n: i64,
}

impl Generation {
    /// The generation `back` files older.
    #[must_use]
    pub fn older(self, back: usize) -> Self {
        Self {
            epoch: self.epoch,
            n: self.n - i64::try_from(back).unwrap_or(i64::MAX),
        }
    }

    /// How many files were created after `self` and before `later`, when the two can be
    /// compared.
    pub fn between(self, later: Self) -> Option<u64> {
        (self.epoch == later.epoch).then(|| u64::try_from(later.n - self.n - 1).unwrap_or(0))
    }
}

/// One followed log's watch; removed when dropped.
#[derive(Debug)]
pub struct Watch {
    rotations: Arc<Rotations>,
    wd: WatchDescriptor,
    key: u64,
}

impl Watch {
    /// The generation of the newest log file (the live one, or the one just renamed to `.1`
    /// before the engine creates the next), with everything the kernel queued until now
    /// counted; `None` once the watch is gone (its directory removed).
    pub fn newest(&self) -> Option<Generation> {
        let mut inner = self.rotations.lock();
        inner.drain();
        inner
            .watched
            .get(&self.wd)
            .filter(|w| w.key == self.key)
            .map(|w| Generation {
                epoch: w.epoch,
                n: i64::try_from(w.created).unwrap_or(i64::MAX),
            })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut inner = self.rotations.lock();
        inner.drain();
        let last = match inner.watched.get_mut(&self.wd) {
            Some(w) if w.key == self.key => {
                w.users = w.users.saturating_sub(1);
                w.users == 0
            }
            _ => false,
        };
        if last {
            inner.watched.remove(&self.wd);
            // fails when the kernel already dropped it (directory removed): nothing to do
            let _ = inner.inotify.watches().remove(self.wd.clone());
        }
    }
}
