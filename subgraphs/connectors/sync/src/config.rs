//! The `[connectors]` section of `junction.toml`: where community manifests are, and how the
//! sync runner of each process paces itself.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// A folder of manifests (`*.yaml`, `*.yml`) loaded at start beside the built-in ones.
    #[serde(default)]
    pub manifests: Option<PathBuf>,
    /// How often the runner looks for due connections and runs to lease. A sync triggered in
    /// this process starts at once.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Runs one process syncs at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long a worker holds a run without renewing it; a run whose worker died is taken
    /// over after this. Renewed with every commit and every third of it while a page loads.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// Tries of a stream that ends in a temporary failure (after the connector's own retries
    /// of each request) before the run fails.
    #[serde(default = "default_transient_retries")]
    pub transient_retries: u32,
    /// The wait before the first try again; it doubles each time.
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How long a rate-limited connection waits when the source does not say.
    #[serde(default = "default_rate_limit_wait", with = "humantime_serde")]
    pub rate_limit_wait: Duration,
    /// The most records stored in one transaction; a checkpoint commits sooner.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_concurrency() -> usize {
    4
}

fn default_lease() -> Duration {
    Duration::from_secs(60)
}

fn default_transient_retries() -> u32 {
    3
}

fn default_retry_backoff() -> Duration {
    Duration::from_secs(5)
}

fn default_rate_limit_wait() -> Duration {
    Duration::from_secs(60)
}

fn default_batch() -> usize {
    1_000
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        Self {
            manifests: None,
            poll_interval: default_poll_interval(),
            concurrency: default_concurrency(),
            lease: default_lease(),
            transient_retries: default_transient_retries(),
            retry_backoff: default_retry_backoff(),
            rate_limit_wait: default_rate_limit_wait(),
            batch: default_batch(),
        }
    }
}

impl ConnectorsConfig {
    /// Values that parse but cannot work, named by their keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("connectors.concurrency must be at least 1".into());
        }
        if self.batch == 0 {
            return Err("connectors.batch must be at least 1".into());
        }
        if self.poll_interval.is_zero() {
            return Err("connectors.poll_interval must be longer than 0s".into());
        }
        if self.lease < Duration::from_secs(1) {
            return Err(format!(
                "connectors.lease ({:?}) must be at least 1s",
                self.lease
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_concurrency_is_not() {
        ConnectorsConfig::default().validate().unwrap();
        let none = ConnectorsConfig {
            concurrency: 0,
            ..ConnectorsConfig::default()
        };
        assert!(none.validate().unwrap_err().contains("concurrency"));
    }
}
