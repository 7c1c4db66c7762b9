//! The `[dispatcher]` section of `junction.toml`.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherConfig {
    /// Deliveries in flight at once, across all endpoints.
    pub concurrency: usize,
    /// Deliveries in flight at once to any one endpoint, so a slow endpoint cannot hold the
    /// worker's whole capacity.
    pub per_endpoint_concurrency: usize,
    /// Tasks taken from the queue per poll.
    pub batch_size: usize,
    /// How long a taken task stays invisible to other workers. If the worker dies, the task is
    /// taken again after this; it must exceed `request_timeout`.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How long an idle worker waits before polling the queue again.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The whole request, response body included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Delays between attempts: attempt n+1 waits `retry_schedule[n-1]` (plus jitter) after
    /// attempt n fails. When the schedule is exhausted, the delivery is dead-lettered.
    #[serde(deserialize_with = "junction_queue::config::durations")]
    pub retry_schedule: Vec<Duration>,
    /// Each delay is spread by up to this fraction either way, so retries do not stampede.
    pub retry_jitter: f64,
    /// An endpoint failing without a single success for this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_failing_endpoint_after: Duration,
    /// How much of a response body an attempt keeps.
    pub response_excerpt_bytes: usize,
    /// Networks webhooks may reach although they are private, loopback or link-local:
    /// ranges or single addresses (for example `["10.1.0.0/16", "127.0.0.1"]`). Empty by
    /// default: only public addresses.
    #[serde(deserialize_with = "junction_outbound::deserialize_networks")]
    pub allowed_networks: Vec<IpNet>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let hours = |h: u64| Duration::from_secs(3600 * h);
        Self {
            concurrency: 64,
            per_endpoint_concurrency: 8,
            batch_size: 64,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            // About 75 hours in all: longer than the 72-hour success window.
            retry_schedule: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                hours(2),
                hours(5),
                hours(10),
                hours(14),
                hours(20),
                hours(24),
            ],
            retry_jitter: 0.2,
            disable_failing_endpoint_after: hours(24 * 5),
            response_excerpt_bytes: 4096,
            allowed_networks: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidDispatcherConfig {
    #[error(
        "dispatcher.lease ({lease:?}) must be longer than dispatcher.request_timeout ({timeout:?})"
    )]
    LeaseTooShort { lease: Duration, timeout: Duration },
    #[error("dispatcher.{0} must be at least 1")]
    Zero(&'static str),
    #[error("dispatcher.retry_jitter must be between 0 and 1")]
    Jitter,
}

impl DispatcherConfig {
    pub fn validate(&self) -> Result<(), InvalidDispatcherConfig> {
        if self.lease <= self.request_timeout {
            return Err(InvalidDispatcherConfig::LeaseTooShort {
                lease: self.lease,
                timeout: self.request_timeout,
            });
        }
        for (name, value) in [
            ("concurrency", self.concurrency),
            ("per_endpoint_concurrency", self.per_endpoint_concurrency),
            ("batch_size", self.batch_size),
        ] {
            if value == 0 {
                return Err(InvalidDispatcherConfig::Zero(name));
            }
        }
        if !(0.0..=1.0).contains(&self.retry_jitter) {
            return Err(InvalidDispatcherConfig::Jitter);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_networks_take_addresses_and_ranges() {
        let config: DispatcherConfig = serde_json::from_value(serde_json::json!({
            "allowed_networks": ["127.0.0.1", "10.1.0.0/16", "::1"]
        }))
        .unwrap();
        let listed: Vec<String> = config
            .allowed_networks
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(listed, ["127.0.0.1/32", "10.1.0.0/16", "::1/128"]);
        let refused = serde_json::from_value::<DispatcherConfig>(serde_json::json!({
            "allowed_networks": ["localhost"]
        }))
        .unwrap_err();
        assert!(
            refused.to_string().contains("neither an IP address"),
            "{refused}"
        );
    }

    #[test]
    fn the_default_schedule_outlasts_the_72_hour_window() {
        let total: Duration = DispatcherConfig::default().retry_schedule.iter().sum();
        assert!(total > Duration::from_secs(72 * 3600), "{total:?}");
        assert_eq!(DispatcherConfig::default().validate(), Ok(()));
    }

    #[test]
    fn a_lease_shorter_than_a_request_is_refused() {
        let config = DispatcherConfig {
            lease: Duration::from_secs(10),
            ..DispatcherConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(InvalidDispatcherConfig::LeaseTooShort { .. })
        ));
    }
}
