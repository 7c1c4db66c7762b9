//! `[queue]`: which backend carries delivery tasks, and how durations are written in it.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::KafkaConfig;

/// `[queue]`: which backend carries delivery tasks.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default)]
    pub backend: QueueBackend,
    #[serde(default)]
    pub kafka: KafkaConfig,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// The deliveries table is the queue (SKIP LOCKED on PostgreSQL).
    #[default]
    Embedded,
    /// Apache Kafka or any Kafka-protocol cluster, configured in `[queue.kafka]`.
    Kafka,
}

/// `["5s", "5m", "2h"]`
pub fn durations<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            humantime::parse_duration(text)
                .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
        })
        .collect()
}
