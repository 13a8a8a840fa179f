//! [`Looks`]: what an orchestrating target last saw of each app, shared by the health gates that
//! ask at once. Each gate asks every 100 ms; ten services rolling at once each asked a Swarm's
//! manager for the same services, tasks and nodes, 250 requests a second to a manager that
//! shares the machine with its nodes, about 33 with a look shared for [`FRESH`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::TargetError;

/// How long a look serves every gate that asks.
pub const FRESH: Duration = Duration::from_millis(90);

/// A look: the changes made when it was taken, when, and what it saw.
type Taken<T> = (u64, Instant, Arc<T>);

/// App → the last look at it, taken when, and the count of changes made through the target
/// then: a look taken before a change is never used after it.
#[derive(Debug)]
pub struct Looks<T> {
    taken: Mutex<BTreeMap<String, Taken<T>>>,
    changes: AtomicU64,
}

impl<T> Default for Looks<T> {
    fn default() -> Self {
        Self {
            taken: Mutex::default(),
            changes: AtomicU64::new(0),
        }
    }
}

impl<T> Looks<T> {
    /// Something changed through the target (applied, removed): no earlier look is used again.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The look at `app` another caller took within [`FRESH`] when nothing changed through the
    /// target since, else a new one `take` makes.
    ///
    /// # Errors
    /// What `take` fails with.
    pub async fn of<F, Fut>(&self, app: &str, take: F) -> Result<Arc<T>, TargetError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, TargetError>>,
    {
        let changes = self.changes.load(Ordering::SeqCst);
        let cached = self.taken.lock().ok().and_then(|l| l.get(app).cloned());
        if let Some((c, at, look)) = cached
            && c == changes
            && at.elapsed() < FRESH
        {
            return Ok(look);
        }
        let look = Arc::new(take().await?);
        if let Ok(mut taken) = self.taken.lock()
            && self.changes.load(Ordering::SeqCst) == changes
        {
            taken.insert(app.to_owned(), (changes, Instant::now(), Arc::clone(&look)));
        }
        Ok(look)
    }
}
