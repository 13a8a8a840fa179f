use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff with jitter: each wait is drawn from the upper half of the current
/// step, so that sinks failing together do not retry together.
#[derive(Debug)]
pub struct Backoff {
    current: Duration,
    min: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    /// A backoff from `min` up to `max`, its jitter seeded by `name` (and the process).
    pub fn new(name: &str, min: Duration, max: Duration) -> Self {
        let seed = name.bytes().fold(u64::from(std::process::id()), |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self {
            current: min,
            min,
            max,
            seed,
        }
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// Waits (at least `at_least`, as a server's `Retry-After` asks); false on shutdown.
    pub async fn wait(&mut self, shutdown: &CancellationToken, at_least: Option<Duration>) -> bool {
        // xorshift: enough randomness for jitter, no dependency
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = self.current / 2;
        let jitter = half.mul_f64((self.seed % 1000) as f64 / 1000.0);
        let wait = (half + jitter).max(at_least.unwrap_or_default());
        self.current = (self.current * 2).min(self.max);
        sleep(shutdown, wait).await
    }

    /// The step the next wait is drawn from.
    pub fn current(&self) -> Duration {
        self.current
    }
}

/// Sleeps; false when shutdown came first.
pub async fn sleep(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_with_jitter_and_honours_retry_after() {
        let mut b = Backoff::new("x", MIN, MAX);
        let token = CancellationToken::new();
        let t = tokio::time::Instant::now();
        assert!(b.wait(&token, None).await);
        let first = t.elapsed();
        assert!(first >= MIN / 2 && first <= MIN, "{first:?}");
        assert_eq!(b.current(), MIN * 2);
        for _ in 0..20 {
            assert!(b.wait(&token, None).await);
        }
        assert_eq!(b.current(), MAX);
        b.reset();
        let t = tokio::time::Instant::now();
        assert!(b.wait(&token, Some(Duration::from_secs(7))).await);
        assert_eq!(t.elapsed(), Duration::from_secs(7));
        token.cancel();
        assert!(!b.wait(&token, None).await);
    }
}
