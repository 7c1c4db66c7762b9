//! When to try a request again: exponential back-off with jitter, and the source's own
//! `Retry-After` when it gives one.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

/// How often and how patiently a failed request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Tries after the first; 0 sends each request once.
    pub max_retries: u32,
    /// The wait before the first retry; each later wait doubles, up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for inside a read. A longer one ends the read with a
    /// rate-limit error that carries it, so the engine pauses the connection instead of
    /// holding a worker.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first): half the exponential step plus
    /// a random part of the other half, so that many clients failing together do not come back
    /// together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_growing_at_the_cap() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..100 {
            let first = policy.backoff(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(2);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }
}
