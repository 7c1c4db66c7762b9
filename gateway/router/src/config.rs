//! The router's sections of `[gateway]` in `junction.toml`.

use std::time::Duration;

use serde::Deserialize;

/// `[gateway.subgraphs.NAME]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubgraphSettings {
    /// This subgraph's request timeout, instead of `subgraph_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// `[gateway.subscriptions]`: live operations over WebSocket and server-sent events.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionConfig {
    /// How often the router pings an idle client (WebSocket pings, SSE comments).
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// How long a WebSocket client may take to send `connection_init`.
    #[serde(with = "humantime_serde")]
    pub init_timeout: Duration,
    /// The most operations one client (one identity, or one anonymous connection) runs at
    /// once, over all its connections.
    pub max_per_client: usize,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(15),
            init_timeout: Duration::from_secs(10),
            max_per_client: 100,
        }
    }
}
