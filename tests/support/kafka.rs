//! A real Kafka-protocol broker for the tests: Tansu 0.6.0 on a loopback port, installed by
//! `tests/run` (Apache Kafka itself cannot be installed on these machines). In memory by
//! default; on SQLite storage when a test restarts it and expects its data back.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use junction_dispatcher::queue::KafkaConfig;

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
        let dir = tempfile::TempDir::new().unwrap();
        let storage = format!("sqlite://{}/tansu.db", dir.path().display());
        Self::start_on(storage, dir)
    }

    fn start_on(storage: String, dir: tempfile::TempDir) -> Self {
        let mut broker = Self {
            child: None,
            port: free_port(),
            storage,
            _dir: dir,
        };
        broker.spawn();
        broker
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
            ..KafkaConfig::default()
        }
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
