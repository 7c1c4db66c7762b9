//! `[metrics]`: whether metrics are recorded, where `/metrics` is served and to whom, and the
//! bound on the values of labels that come from outside.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// The distinct values a bounded label takes (operation names, endpoint ids) unless
/// `max_label_values` says otherwise.
pub const DEFAULT_MAX_LABEL_VALUES: usize = 100;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Off: nothing is recorded and no role serves `/metrics`.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// An address of its own for `/metrics` (say `127.0.0.1:9464`). Unset: `serve` and
    /// `gateway` serve it on the router's port, `junction dispatcher` serves none.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A bearer token every scrape must send. Unset: on the router's port, only loopback
    /// peers may scrape (the port is the public door, and the metrics name operations); on
    /// an address of its own, anyone who reaches it.
    #[serde(default)]
    pub token: Option<String>,
    /// The distinct values a label from outside takes (operation names, webhook endpoints);
    /// values seen after that many are counted together as `other`.
    #[serde(default = "max_label_values")]
    pub max_label_values: usize,
    /// How often a dispatcher reads the queue's state (depth, lag, retries, dead letters)
    /// from the database for its gauges.
    #[serde(default = "queue_refresh", with = "humantime_serde")]
    pub queue_refresh: Duration,
}

fn queue_refresh() -> Duration {
    Duration::from_secs(10)
}

fn enabled() -> bool {
    true
}

fn max_label_values() -> usize {
    DEFAULT_MAX_LABEL_VALUES
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: enabled(),
            listen: None,
            token: None,
            max_label_values: max_label_values(),
            queue_refresh: queue_refresh(),
        }
    }
}

impl MetricsConfig {
    /// Values that parse but cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_label_values == 0 {
            return Err("metrics.max_label_values must be at least 1".to_owned());
        }
        if self.queue_refresh.is_zero() {
            return Err("metrics.queue_refresh must be longer than 0s".to_owned());
        }
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err("metrics.token is empty: remove it or set a token".to_owned());
        }
        Ok(())
    }
}
