//! A route's upstreams: taken in turn, skipping one that keeps failing (passive health).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::Uri;
use axum::http::uri::{Authority, Scheme};
use serde::Deserialize;

pub(crate) mod pool;

pub use self::pool::Pool;

/// One upstream base URL and how it has been doing.
#[derive(Debug)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Prefixed to every forwarded path (`""` or `/v1`, never ending in '/').
    pub base_path: String,
    /// `host:port`, to connect to.
    pub address: String,
    /// Kept-alive connections of the HTTP/1 fast path.
    pub idle: Pool,
    /// Failures in a row.
    failures: AtomicU32,
    /// Skipped until this many milliseconds after the pool's epoch (0: not skipped).
    skipped_until: AtomicU64,
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .filter(|s| **s == Scheme::HTTP || **s == Scheme::HTTPS)
            .ok_or_else(|| format!("{url:?}: only http:// and https:// upstreams"))?
            .clone();
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty() && !a.as_str().contains('@'))
            .ok_or_else(|| format!("{url:?}: a host is needed (and no user info)"))?
            .clone();
        if uri.query().is_some() {
            return Err(format!("{url:?}: an upstream URL has no query"));
        }
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == Scheme::HTTPS { 443 } else { 80 });
        Ok(Self {
            address: format!("{}:{port}", authority.host()),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            idle: Pool::default(),
            failures: AtomicU32::new(0),
            skipped_until: AtomicU64::new(0),
        })
    }

    /// The upstream URI for `path_and_query` (empty, or starting with '/' or '?'), below
    /// the base path.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, axum::http::Error> {
        let mut full = format!("{}{path_and_query}", self.base_path);
        if !full.starts_with('/') {
            full.insert(0, '/');
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(full)
            .build()
    }
}

/// The upstreams of one route.
#[derive(Debug)]
pub struct Upstreams {
    upstreams: Vec<Upstream>,
    next: AtomicUsize,
    health: PassiveHealth,
    epoch: Instant,
}

impl Upstreams {
    pub fn new(urls: &[String], health: PassiveHealth) -> Result<Self, String> {
        Ok(Self {
            upstreams: urls
                .iter()
                .map(|url| Upstream::parse(url))
                .collect::<Result<_, _>>()?,
            next: AtomicUsize::new(0),
            health,
            epoch: Instant::now(),
        })
    }

    fn ms_at(&self, now: Instant) -> u64 {
        duration_ms(now.saturating_duration_since(self.epoch))
    }

    /// The next upstream in turn, preferring one not in `tried` and not skipped; when
    /// every one is skipped or tried, the next in turn anyway (trying beats refusing).
    pub fn pick(&self, tried: &[usize], now: Instant) -> usize {
        let count = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let now = self.ms_at(now);
        let in_turn = (0..count).map(|offset| (start + offset) % count);
        let mut untried_but_skipped = None;
        for index in in_turn.filter(|index| !tried.contains(index)) {
            if self.upstreams[index].skipped_until.load(Ordering::Relaxed) <= now {
                return index;
            }
            untried_but_skipped.get_or_insert(index);
        }
        untried_but_skipped.unwrap_or(start)
    }

    pub fn all_plain_http(&self) -> bool {
        self.upstreams.iter().all(|u| u.scheme == Scheme::HTTP)
    }

    pub fn get(&self, index: usize) -> &Upstream {
        &self.upstreams[index]
    }

    pub fn succeeded(&self, index: usize) {
        let upstream = &self.upstreams[index];
        // Reads first: the common case writes nothing shared.
        if upstream.failures.load(Ordering::Relaxed) != 0 {
            upstream.failures.store(0, Ordering::Relaxed);
            upstream.skipped_until.store(0, Ordering::Relaxed);
        }
    }

    pub fn failed(&self, index: usize) {
        let upstream = &self.upstreams[index];
        let failures = upstream.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.health.failures.max(1) {
            let until = self
                .ms_at(Instant::now())
                .saturating_add(duration_ms(self.health.cooldown));
            upstream.skipped_until.store(until, Ordering::Relaxed);
            tracing::warn!(
                upstream = %upstream.authority,
                failures,
                cooldown = ?self.health.cooldown,
                "upstream failing; skipped for the cooldown"
            );
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// An upstream failing `failures` times in a row (refused, reset, timed out, 502/503/504)
/// is skipped for `cooldown`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealth {
    pub failures: u32,
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            failures: 3,
            cooldown: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(count: usize, failures: u32, cooldown: Duration) -> Upstreams {
        let urls: Vec<String> = (0..count)
            .map(|i| format!("http://10.0.0.{i}:80"))
            .collect();
        Upstreams::new(&urls, PassiveHealth { failures, cooldown }).unwrap()
    }

    #[test]
    fn urls_parse_into_scheme_authority_and_base_path() {
        let upstream = Upstream::parse("https://orders.internal:8443/v1/").unwrap();
        assert_eq!(upstream.base_path, "/v1");
        assert_eq!(upstream.address, "orders.internal:8443");
        assert_eq!(Upstream::parse("http://[::1]").unwrap().address, "[::1]:80");
        assert_eq!(
            upstream.uri("/items?x=1").unwrap().to_string(),
            "https://orders.internal:8443/v1/items?x=1"
        );
        assert_eq!(upstream.uri("").unwrap().path(), "/v1");
        let root = Upstream::parse("http://10.0.0.1").unwrap();
        assert_eq!(
            root.uri("?q=1").unwrap().to_string(),
            "http://10.0.0.1/?q=1"
        );
        for bad in [
            "orders.internal",
            "ftp://x",
            "http://u:p@x",
            "http://x/?q=1",
            "/relative",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstreams_are_taken_in_turn() {
        let pool = pool(3, 3, Duration::from_secs(10));
        let picks: Vec<usize> = (0..6).map(|_| pool.pick(&[], Instant::now())).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_failing_upstream_is_skipped_for_the_cooldown_then_tried_again() {
        let pool = pool(2, 2, Duration::from_millis(50));
        pool.failed(0);
        // One failure is below the threshold: still in turn.
        assert!((0..4).any(|_| pool.pick(&[], Instant::now()) == 0));
        pool.failed(0);
        assert!((0..4).all(|_| pool.pick(&[], Instant::now()) == 1));
        std::thread::sleep(Duration::from_millis(60));
        assert!((0..4).any(|_| pool.pick(&[], Instant::now()) == 0));
        // A success forgets the failures.
        pool.failed(1);
        pool.succeeded(1);
        pool.failed(1);
        assert!((0..4).any(|_| pool.pick(&[], Instant::now()) == 1));
    }

    #[test]
    fn retries_go_elsewhere_and_all_skipped_still_gives_one() {
        let pool = pool(2, 1, Duration::from_secs(60));
        let first = pool.pick(&[], Instant::now());
        assert_eq!(pool.pick(&[first], Instant::now()), 1 - first);
        // All tried: the next in turn again (one upstream is retried on itself).
        assert!(pool.pick(&[0, 1], Instant::now()) < 2);
        pool.failed(0);
        // An untried skipped upstream comes before a tried healthy one.
        assert_eq!(pool.pick(&[1], Instant::now()), 0);
        pool.failed(1);
        assert!(pool.pick(&[], Instant::now()) < 2);
    }
}
