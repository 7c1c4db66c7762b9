//! `[queue.kafka]`: where the cluster is, how Junction's topics are named and made, and any
//! client property passed through to librdkafka (SASL, TLS, ... for managed Kafka).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port,host:port`.
    pub bootstrap_servers: String,
    /// Topics are `<prefix>.dispatch`, `<prefix>.retry.<delay>`, `<prefix>.dead-letter` and
    /// `<prefix>.delivery-events`.
    pub topic_prefix: String,
    /// Partitions of each topic Junction creates (existing topics are left as they are). More
    /// partitions, more dispatchers working at once.
    pub partitions: i32,
    pub replication_factor: i32,
    /// The consumer group the dispatchers share; the retry scheduler uses `<group>.retry`.
    pub group: String,
    /// The retry tiers: a retry waits in the tier of the longest delay not longer than its
    /// wait, so nothing is attempted early.
    #[serde(deserialize_with = "crate::config::durations")]
    pub retry_tiers: Vec<Duration>,
    /// How long to keep trying to reach the cluster at start before giving up with an error.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How often the outbox relay looks for deliveries not yet on Kafka, when idle.
    #[serde(with = "humantime_serde")]
    pub relay_interval: Duration,
    /// Static group membership (KIP-345): this process's `group.instance.id`, unique among
    /// the group's members and the same at every restart (a pod or host name, say). A
    /// dispatcher restarted within the session timeout then takes its partitions back with no
    /// rebalance; one that stops for good hands them over only when the session times out
    /// (10 s), since a static member does not leave the group. Unset (the default): dynamic
    /// membership, as several dispatchers on one host would otherwise fence each other.
    pub instance_id: Option<String>,
    /// librdkafka properties set on every client, e.g. `"security.protocol" = "SASL_SSL"`.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic_prefix: "junction".into(),
            partitions: 12,
            replication_factor: 1,
            group: "junction-dispatchers".into(),
            retry_tiers: [5, 60, 600, 3600, 6 * 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            connect_timeout: Duration::from_secs(30),
            relay_interval: Duration::from_millis(50),
            instance_id: None,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("queue.kafka.bootstrap_servers is empty".into());
        }
        if self.partitions < 1 || self.replication_factor < 1 {
            return Err("queue.kafka.partitions and replication_factor must be at least 1".into());
        }
        if self.retry_tiers.is_empty() || self.retry_tiers.iter().any(Duration::is_zero) {
            return Err("queue.kafka.retry_tiers needs at least one delay, none zero".into());
        }
        if self.topic_prefix.is_empty()
            || !self
                .topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(format!(
                "queue.kafka.topic_prefix {:?} may hold only letters, digits, '.', '_' and '-'",
                self.topic_prefix
            ));
        }
        if let Some(id) = &self.instance_id
            && (id.is_empty()
                || id.len() > 200
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            return Err(format!(
                "queue.kafka.instance_id {id:?} must be 1 to 200 letters, digits, '.', '_' or '-'"
            ));
        }
        Ok(())
    }
}
