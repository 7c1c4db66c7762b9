//! The `[webhooks]` section of `junction.toml`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::publish::DEFAULT_MAX_PAYLOAD_BYTES;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Where `junction subgraph webhooks` listens.
    pub listen: SocketAddr,
    /// The largest event payload `publishEvent` accepts, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// How long a rotated-out secret keeps signing when `rotateEndpointSecret` names no
    /// grace period.
    #[serde(with = "humantime_serde")]
    pub secret_rotation_grace: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4001)),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            secret_rotation_grace: Duration::from_secs(24 * 3600),
        }
    }
}
