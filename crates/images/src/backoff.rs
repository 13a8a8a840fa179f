use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exponential backoff with full jitter between `min` and the current ceiling.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            ceiling: min,
        }
    }

    /// The next delay; doubles the ceiling up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let span = self.ceiling.saturating_sub(self.min).as_millis() as u64;
        // jitter from the clock's sub-second noise: no need for a random number generator here
        let noise = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
        let delay =
            self.min + Duration::from_millis(if span == 0 { 0 } else { noise % (span + 1) });
        self.ceiling = (self.ceiling * 2).min(self.max);
        delay
    }

    /// Back to the shortest delay after a healthy session.
    pub(crate) fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(800));
        }
        assert_eq!(b.ceiling, Duration::from_millis(800));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
