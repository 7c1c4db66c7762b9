//! Rate limits per consumer (`[gateway.rate_limit]`), by GCRA: each consumer has a
//! theoretical arrival time that every request pushes one emission interval further; a
//! request that would push it more than the burst ahead of now is refused, with how long to
//! wait. One instant per consumer is all the state, and answers carry the IETF `RateLimit-*`
//! headers.
//!
//! The state lives in this process, or in Redis (`redis_url`) so that every router instance
//! shares it: one Lua script does the arithmetic atomically on Redis's clock. Redis being
//! unreachable lets requests through (logged): an outage of the limiter is not an outage of
//! the API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[gateway.rate_limit]`: the same limit for every consumer (an API key, a token's subject,
/// or a tenant).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub requests_per_second: f64,
    /// Requests allowed at once on top of the sustained rate (at least 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Share the limits of every router through this Redis (`redis://host:6379`).
    #[serde(default)]
    pub redis_url: Option<String>,
    /// What is counted: `requests`, or `cost` (GraphQL operations weigh their estimated cost,
    /// `[gateway.cost]`; `requests_per_second` and `burst` are then cost units).
    #[serde(default)]
    pub unit: RateUnit,
    /// Who has an allowance of their own: each `subject` (an API key, a token's subject), or
    /// each `tenant` (all its keys and tokens together).
    #[serde(default)]
    pub per: RateKey,
    /// Named GraphQL operations with a limit of their own, on top of this one
    /// (`[gateway.rate_limit.operations.CreateOrder]`).
    #[serde(default)]
    pub operations: std::collections::BTreeMap<String, OperationLimit>,
}

/// A limit for one named operation, counted per consumer like the limit it sits under.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OperationLimit {
    pub requests_per_second: f64,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    #[default]
    Subject,
    Tenant,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RateUnit {
    #[default]
    Requests,
    Cost,
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

impl Decision {
    /// `RateLimit-Limit/Remaining/Reset`, and `Retry-After` on a refusal (whole seconds,
    /// rounded up).
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let seconds = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        [
            ("ratelimit-limit", u64::from(self.limit)),
            ("ratelimit-remaining", u64::from(self.remaining)),
            ("ratelimit-reset", seconds(self.reset)),
        ]
        .into_iter()
        .chain((!self.allowed).then(|| ("retry-after", seconds(self.retry_after))))
    }

    pub fn set_headers(&self, headers: &mut axum::http::HeaderMap) {
        for (name, value) in self.headers() {
            headers.insert(name, value.into());
        }
    }
}

/// Forget consumers idle long enough once this many are tracked.
const SWEEP_AT: usize = 100_000;

pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    unit: RateUnit,
    per: RateKey,
    /// Keeps this limiter's consumers apart from other limiters' in a shared Redis.
    namespace: String,
    arrivals: Mutex<HashMap<String, Instant>>,
    shared: Option<Shared>,
}

/// The Redis side: a client, a connection made on first use (and again after a failure).
struct Shared {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    script: redis::Script,
}

/// GCRA on Redis's clock, in milliseconds, for a request of `ARGV[3]` units:
/// `{allowed, reset, retry_after, remaining}`.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local window = interval * burst
local weight = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval * weight
local ahead = nxt - now
if ahead > window then
  return {0, tat - now, ahead - window, 0}
end
redis.call('SET', KEYS[1], nxt, 'PX', window + interval)
return {1, ahead, 0, math.floor((window - ahead) / interval)}
";

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Result<Self, String> {
        let shared = match &config.redis_url {
            None => None,
            Some(url) => Some(Shared {
                client: redis::Client::open(url.as_str())
                    .map_err(|e| format!("gateway.rate_limit.redis_url: {e}"))?,
                connection: tokio::sync::Mutex::new(None),
                script: redis::Script::new(GCRA),
            }),
        };
        Ok(Self {
            shared,
            ..Self::local(config)
        })
    }

    fn local(config: &RateLimitConfig) -> Self {
        let rate = if config.requests_per_second > 0.0 {
            config.requests_per_second
        } else {
            f64::MIN_POSITIVE
        };
        Self {
            interval: Duration::from_secs_f64((1.0 / rate).min(86_400.0)),
            burst: config.burst.max(1),
            unit: config.unit,
            per: config.per,
            namespace: String::new(),
            arrivals: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Requests weigh their estimated cost.
    pub fn by_cost(&self) -> bool {
        self.unit == RateUnit::Cost
    }

    /// The limiters of `config.operations`, by operation name: the same store, unit and
    /// consumers as `config`, each with its own rate.
    pub fn for_operations(
        config: &RateLimitConfig,
    ) -> Result<HashMap<String, RateLimiter>, String> {
        config
            .operations
            .iter()
            .map(|(name, limit)| {
                let mut limiter = Self::new(&RateLimitConfig {
                    requests_per_second: limit.requests_per_second,
                    burst: limit.burst,
                    operations: Default::default(),
                    ..config.clone()
                })?;
                limiter.namespace = format!("op:{name}:");
                Ok((name.clone(), limiter))
            })
            .collect()
    }

    /// Whose allowance a caller spends; `None` for a caller without an identity.
    pub fn consumer(&self, identity: Option<&junction_schema::Identity>) -> Option<String> {
        let identity = identity?;
        Some(match self.per {
            RateKey::Subject => format!("{}/{}", identity.tenant, identity.subject),
            RateKey::Tenant => identity.tenant.clone(),
        })
    }

    /// Whose allowance a caller spends, the same on every way in: the identity's (as `per`
    /// says), else the client's address (`layers::client_ip`), else one shared allowance.
    pub fn consumer_of(
        &self,
        identity: Option<&junction_schema::Identity>,
        client: Option<std::net::IpAddr>,
    ) -> String {
        match (self.consumer(identity), client) {
            (Some(consumer), _) => consumer,
            (None, Some(ip)) => ip.to_string(),
            (None, None) => "unknown".to_owned(),
        }
    }

    /// Counts a request of `consumer` weighing `weight` at `now` (at most the burst: a
    /// request costlier than the whole allowance waits for all of it).
    pub fn check_at(&self, consumer: &str, now: Instant, weight: u32) -> Decision {
        let window = self.interval * self.burst;
        let step = self.interval * weight.clamp(1, self.burst);
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        if arrivals.len() >= SWEEP_AT {
            arrivals.retain(|_, tat| *tat > now);
        }
        let tat = arrivals.get(consumer).copied().unwrap_or(now).max(now);
        let next = tat + step;
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

    /// Counts a request of `consumer` weighing `weight`: in Redis when shared, else here.
    pub async fn check(&self, consumer: &str, weight: u32) -> Decision {
        match &self.shared {
            None => self.check_at(consumer, Instant::now(), weight),
            Some(shared) => match self.check_shared(shared, consumer, weight).await {
                Ok(decision) => decision,
                Err(e) => {
                    tracing::warn!(error = %e, "the shared rate limiter is unreachable; letting the request through");
                    *shared.connection.lock().await = None;
                    Decision {
                        allowed: true,
                        limit: self.burst,
                        remaining: self.burst,
                        reset: Duration::ZERO,
                        retry_after: Duration::ZERO,
                    }
                }
            },
        }
    }

    async fn check_shared(
        &self,
        shared: &Shared,
        consumer: &str,
        weight: u32,
    ) -> redis::RedisResult<Decision> {
        let mut slot = shared.connection.lock().await;
        if slot.is_none() {
            *slot = Some(shared.client.get_multiplexed_async_connection().await?);
        }
        let mut connection = slot.clone().expect("connected just above");
        drop(slot);
        let interval = (self.interval.as_millis() as u64).max(1);
        let (allowed, reset, retry, remaining): (i64, i64, i64, i64) = shared
            .script
            .key(format!("junction:ratelimit:{}{consumer}", self.namespace))
            .arg(interval)
            .arg(self.burst)
            .arg(weight.clamp(1, self.burst))
            .invoke_async(&mut connection)
            .await?;
        let millis = |n: i64| Duration::from_millis(n.max(0) as u64);
        Ok(Decision {
            allowed: allowed == 1,
            limit: self.burst,
            remaining: remaining.max(0) as u32,
            reset: millis(reset),
            retry_after: millis(retry),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter::local(&RateLimitConfig {
            requests_per_second: rate,
            burst,
            redis_url: None,
            unit: RateUnit::Requests,
            per: RateKey::Subject,
            operations: Default::default(),
        })
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = limiter(2.0, 3);
        let start = Instant::now();
        let remaining: Vec<(bool, u32)> = (0..4)
            .map(|_| limiter.check_at("a", start, 1))
            .map(|d| (d.allowed, d.remaining))
            .collect();
        assert_eq!(remaining, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        let refused = limiter.check_at("a", start, 1);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        // Half a second later one more request fits, and only one.
        let later = start + Duration::from_millis(500);
        assert!(limiter.check_at("a", later, 1).allowed);
        assert!(!limiter.check_at("a", later, 1).allowed);
        // After a quiet spell the whole burst is back.
        let quiet = start + Duration::from_secs(10);
        let decision = limiter.check_at("a", quiet, 1);
        assert_eq!((decision.allowed, decision.remaining), (true, 2));
    }

    #[test]
    fn weighted_requests_take_their_weight_of_the_allowance() {
        let limiter = limiter(10.0, 100);
        let now = Instant::now();
        let first = limiter.check_at("a", now, 60);
        assert_eq!((first.allowed, first.remaining), (true, 40));
        let second = limiter.check_at("a", now, 60);
        assert!(!second.allowed);
        // 60 units at 10 per second: 2 seconds until 60 fit again.
        assert_eq!(second.retry_after, Duration::from_secs(2));
        // A request weighing more than the burst waits for the whole burst, not forever.
        let later = now + Duration::from_secs(20);
        assert!(limiter.check_at("a", later, 1_000).allowed);
    }

    #[test]
    fn consumers_are_limited_apart() {
        let limiter = limiter(1.0, 1);
        let now = Instant::now();
        assert!(limiter.check_at("a", now, 1).allowed);
        assert!(!limiter.check_at("a", now, 1).allowed);
        assert!(limiter.check_at("b", now, 1).allowed);
    }
}
