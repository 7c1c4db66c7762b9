//! A real Kafka-protocol broker for the tests: Tansu 0.6.0 on a loopback port, installed by
//! `tests/run` (Apache Kafka itself cannot be installed on these machines). In memory by
//! default; on SQLite storage when a test restarts it and expects its data back.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use junction_queue::KafkaConfig;

/// `tests/run` installs it here; `JUNCTION_TEST_TANSU` overrides.
const TANSU: &str = "/var/tmp/tansu-0.6.0/bin/tansu";

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    storage: String,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    std::env::var("JUNCTION_TEST_TANSU")
        .unwrap_or_else(|_| TANSU.to_owned())
        .into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// A broker keeping everything in memory.
    pub fn start() -> Self {
        Self::start_on(
            "memory://tansu/".to_owned(),
            tempfile::TempDir::new().unwrap(),
        )
    }

    /// A broker on SQLite storage: what it holds survives [`Broker::restart`].
    pub fn persistent() -> Self {
        // Tansu reads the path relative to its working directory, the test's folder.
        Self::start_on(
            "sqlite://tansu.db".to_owned(),
            tempfile::TempDir::new().unwrap(),
        )
    }

    fn start_on(storage: String, dir: tempfile::TempDir) -> Self {
        let mut broker = Self {
            child: None,
            port: free_port(),
            storage,
            _dir: dir,
        };
        // The free port may be taken by another test's process between our check and the
        // broker's bind: then the broker exits, and we try again on another port.
        for _ in 0..5 {
            broker.spawn();
            std::thread::sleep(Duration::from_millis(50));
            let exited = broker
                .child
                .as_mut()
                .is_some_and(|child| child.try_wait().ok().flatten().is_some());
            if !exited {
                return broker;
            }
            broker.child = None;
            broker.port = free_port();
        }
        panic!("the broker would not stay up on a free port");
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &self.storage,
            ])
            .env("RUST_LOG", "warn")
            .current_dir(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the Tansu broker {} ({e}); tests/run installs it",
                    binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the broker did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Junction's Kafka settings for this broker, with topics and group of a test's own
    /// (so tests share a broker without sharing anything else) and short retry tiers.
    pub fn config(&self, name: &str) -> KafkaConfig {
        let unique = format!("{name}-{}", uuid::Uuid::new_v4().simple());
        KafkaConfig {
            bootstrap_servers: self.bootstrap(),
            topic_prefix: unique.clone(),
            partitions: 3,
            replication_factor: 1,
            group: unique,
            retry_tiers: vec![Duration::from_millis(500), Duration::from_secs(2)],
            connect_timeout: Duration::from_secs(20),
            properties: tansu_workarounds(),
            ..KafkaConfig::default()
        }
    }

    /// `config` as the `JUNCTION_QUEUE_*` environment of a `junction` process (the
    /// workarounds included).
    pub fn env(&self, config: &KafkaConfig) -> Vec<(String, String)> {
        let tiers: Vec<String> = config
            .retry_tiers
            .iter()
            .map(|d| format!("\"{}ms\"", d.as_millis()))
            .collect();
        [
            ("JUNCTION_QUEUE_BACKEND", "kafka".to_owned()),
            (
                "JUNCTION_QUEUE__KAFKA__BOOTSTRAP_SERVERS",
                config.bootstrap_servers.clone(),
            ),
            (
                "JUNCTION_QUEUE__KAFKA__TOPIC_PREFIX",
                config.topic_prefix.clone(),
            ),
            ("JUNCTION_QUEUE__KAFKA__GROUP", config.group.clone()),
            (
                "JUNCTION_QUEUE__KAFKA__PARTITIONS",
                config.partitions.to_string(),
            ),
            (
                "JUNCTION_QUEUE__KAFKA__RETRY_TIERS",
                format!("[{}]", tiers.join(",")),
            ),
            ("JUNCTION_QUEUE__KAFKA__RELAY_INTERVAL", "20ms".to_owned()),
            (
                "JUNCTION_QUEUE__KAFKA__PROPERTIES",
                format!(
                    "{{{}}}",
                    config
                        .properties
                        .iter()
                        .map(|(k, v)| format!("{k:?} = {v:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Stops the broker hard (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Tansu 0.6.0 answers a fetch from an offset inside a record batch with the *next* batch
/// (Kafka returns the batch holding the offset), so a consumer resuming from a commit that
/// falls mid-batch silently skips the rest of that batch: seen here as lost deliveries after
/// a rebalance. One record per batch keeps every offset on a batch boundary. Apache Kafka and
/// Redpanda need nothing of the kind.
pub fn tansu_workarounds() -> std::collections::BTreeMap<String, String> {
    [("batch.num.messages".to_owned(), "1".to_owned())].into()
}
