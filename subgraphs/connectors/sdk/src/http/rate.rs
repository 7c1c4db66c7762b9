//! A per-connection request rate cap: a token bucket that holds `burst` tokens and refills at
//! `requests_per_second`. Each request takes a token; when none is left, it waits its turn.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::error::ConnectorError;

/// How many requests a connection may send: `requests_per_second` on average, and at most
/// `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawRateLimit")]
pub struct RateLimit {
    requests_per_second: f64,
    burst: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests_per_second: f64,
    #[serde(default = "one")]
    burst: u32,
}

fn one() -> u32 {
    1
}

impl TryFrom<RawRateLimit> for RateLimit {
    type Error = ConnectorError;

    fn try_from(raw: RawRateLimit) -> Result<Self, Self::Error> {
        Self::new(raw.requests_per_second, raw.burst)
    }
}

impl RateLimit {
    /// Refuses a rate that is not a positive number, and a burst of zero (nothing could go).
    pub fn new(requests_per_second: f64, burst: u32) -> Result<Self, ConnectorError> {
        if !(requests_per_second.is_finite() && requests_per_second > 0.0) {
            return Err(ConnectorError::config(format!(
                "requests_per_second must be a positive number, not {requests_per_second}"
            )));
        }
        if burst == 0 {
            return Err(ConnectorError::config("burst must be at least 1"));
        }
        Ok(Self {
            requests_per_second,
            burst,
        })
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests_per_second
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The most requests this limit lets through in any window of `window`.
    pub fn allows_in(&self, window: Duration) -> f64 {
        f64::from(self.burst) + self.requests_per_second * window.as_secs_f64()
    }
}

/// A token bucket shared by every request of one connection.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Negative when requests are queued: each waits until its token has been refilled.
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A full bucket: the first `burst` requests go at once.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limit.burst),
                updated: Instant::now(),
            }),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Waits until a request may be sent. Callers are served in the order they asked: a token
    /// is reserved at once and the wait is the time until it is refilled.
    pub async fn acquire(&self) {
        let wait = {
            // A poisoned lock only means another request panicked mid-update; the numbers in
            // it are still usable.
            let mut bucket = self
                .bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let refilled =
                now.duration_since(bucket.updated).as_secs_f64() * self.limit.requests_per_second;
            bucket.tokens = (bucket.tokens + refilled).min(f64::from(self.limit.burst));
            bucket.updated = now;
            bucket.tokens -= 1.0;
            if bucket.tokens >= 0.0 {
                None
            } else {
                Some(Duration::from_secs_f64(
                    -bucket.tokens / self.limit.requests_per_second,
                ))
            }
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_limits_are_refused() {
        assert!(RateLimit::new(0.0, 1).is_err());
        assert!(RateLimit::new(f64::NAN, 1).is_err());
        assert!(RateLimit::new(1.0, 0).is_err());
        assert!(RateLimit::new(0.5, 1).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_requests_follow_the_rate() {
        let limiter = RateLimiter::new(RateLimit::new(10.0, 3).unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        for _ in 0..10 {
            limiter.acquire().await;
        }
        // Ten more at ten a second: one second, give or take rounding.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((0.99..1.01).contains(&elapsed), "{elapsed}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_cap() {
        let limiter = std::sync::Arc::new(RateLimiter::new(RateLimit::new(5.0, 1).unwrap()));
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        limiter.acquire().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 20 requests, 1 at once and 19 at five a second.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((3.79..3.81).contains(&elapsed), "{elapsed}");
    }
}
