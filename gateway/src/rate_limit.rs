//! Rate limits per consumer (`[gateway.rate_limit]`), by GCRA: each consumer has a
//! theoretical arrival time that every request pushes one emission interval further; a
//! request that would push it more than the burst ahead of now is refused, with how long to
//! wait. One instant per consumer is all the state, and answers carry the IETF `RateLimit-*`
//! headers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[gateway.rate_limit]`: the same limit for every consumer (an API key, a token's subject).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub requests_per_second: f64,
    /// Requests allowed at once on top of the sustained rate (at least 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    10
}

/// What the limiter decided, with what the headers say.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Until the consumer's allowance is whole again.
    pub reset: Duration,
    /// For a refused request: when to try again.
    pub retry_after: Duration,
}

/// Forget consumers idle long enough once this many are tracked.
const SWEEP_AT: usize = 100_000;

pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    arrivals: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        let rate = if config.requests_per_second > 0.0 {
            config.requests_per_second
        } else {
            f64::MIN_POSITIVE
        };
        Self {
            interval: Duration::from_secs_f64((1.0 / rate).min(86_400.0)),
            burst: config.burst.max(1),
            arrivals: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `consumer` at `now`.
    pub fn check_at(&self, consumer: &str, now: Instant) -> Decision {
        let window = self.interval * self.burst;
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        if arrivals.len() >= SWEEP_AT {
            arrivals.retain(|_, tat| *tat > now);
        }
        let tat = arrivals.get(consumer).copied().unwrap_or(now).max(now);
        let next = tat + self.interval;
        let ahead = next - now;
        if ahead > window {
            return Decision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset: tat - now,
                retry_after: ahead - window,
            };
        }
        arrivals.insert(consumer.to_owned(), next);
        let left = window - ahead;
        Decision {
            allowed: true,
            limit: self.burst,
            remaining: (left.as_secs_f64() / self.interval.as_secs_f64()).floor() as u32,
            reset: ahead,
            retry_after: Duration::ZERO,
        }
    }

    pub fn check(&self, consumer: &str) -> Decision {
        self.check_at(consumer, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests_per_second: rate,
            burst,
        })
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = limiter(2.0, 3);
        let start = Instant::now();
        let remaining: Vec<(bool, u32)> = (0..4)
            .map(|_| limiter.check_at("a", start))
            .map(|d| (d.allowed, d.remaining))
            .collect();
        assert_eq!(remaining, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        let refused = limiter.check_at("a", start);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        // Half a second later one more request fits, and only one.
        let later = start + Duration::from_millis(500);
        assert!(limiter.check_at("a", later).allowed);
        assert!(!limiter.check_at("a", later).allowed);
        // After a quiet spell the whole burst is back.
        let quiet = start + Duration::from_secs(10);
        let decision = limiter.check_at("a", quiet);
        assert_eq!((decision.allowed, decision.remaining), (true, 2));
    }

    #[test]
    fn consumers_are_limited_apart() {
        let limiter = limiter(1.0, 1);
        let now = Instant::now();
        assert!(limiter.check_at("a", now).allowed);
        assert!(!limiter.check_at("a", now).allowed);
        assert!(limiter.check_at("b", now).allowed);
    }
}
