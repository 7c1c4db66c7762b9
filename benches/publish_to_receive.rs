//! What a user gets: `junction serve` as shipped (default settings; only loopback receivers
//! allowed), publishers that are HTTP clients of its router (`POST /v1/events` with an API
//! key, one request per batch), and a real HTTP receiver on loopback per endpoint.
//!
//!   cargo bench -p junction --bench publish_to_receive                       # SQLite
//!   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench -p junction --bench publish_to_receive                     # PostgreSQL
//!
//! Each phase runs on a fresh database and a fresh `junction serve`:
//! - `saturated`: SATURATE events (default 20,000) published as fast as 4 publishers can,
//!   deliveries per second from the first publish to the last arrival;
//! - `paced`: RATES events per second (default 100,500,1000) for BENCH_SECONDS (default 20) each,
//!   publish-to-receive latency per delivery (from just before the publish request was sent
//!   to the receiver's arrival), p50/p99/max, and how long the backlog took to drain after the
//!   last publish.
//!
//! ENDPOINTS (default 4) endpoints receive every event. On PostgreSQL each phase also counts
//! the rows written per delivery (`n_tup_upd`, `n_tup_ins`, `n_tup_del` of `pg_stat_user_tables`
//! for `deliveries` and `outbox`, read after `serve` has stopped so every backend has flushed
//! its counts). Any `JUNCTION_*` variable set when running the benchmark reaches `serve`, to
//! compare settings (`JUNCTION_DISPATCHER_PER_ENDPOINT_CONCURRENCY=32`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

/// Arrival of (event number, endpoint index).
type Arrivals = Arc<Mutex<HashMap<(u64, usize), Instant>>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let postgres = std::env::var("BENCH_POSTGRES_URL").ok();
    let label = if postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let endpoints = env_usize("ENDPOINTS", 4);
    let saturate = env_usize("SATURATE", 20_000);
    let seconds = env_usize("BENCH_SECONDS", 20);
    let rates: Vec<usize> = std::env::var("RATES")
        .unwrap_or_else(|_| "100,500,1000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    println!(
        "junction serve on {label}, {endpoints} endpoints, receivers on loopback; settings: \
         defaults{}",
        overrides()
    );
    if saturate > 0 {
        let phase = Phase::start(postgres.as_deref(), endpoints).await;
        let started = Instant::now();
        let sent = phase.publish_as_fast_as_possible(saturate).await;
        let published_in = started.elapsed();
        let drained = phase.wait_for_all(saturate, Duration::from_secs(600)).await;
        let last = phase.last_arrival();
        let deliveries = saturate * endpoints;
        let span = last.map_or(published_in, |at| at - sent.first);
        println!(
            "saturated: {saturate} events ({deliveries} deliveries) published in {:.1} s \
             ({:.0} events/s accepted), all delivered: {drained}; {:.0} deliveries/s",
            published_in.as_secs_f64(),
            saturate as f64 / published_in.as_secs_f64(),
            deliveries as f64 / span.as_secs_f64()
        );
        phase.finish(deliveries).await;
    }
    for rate in rates {
        let phase = Phase::start(postgres.as_deref(), endpoints).await;
        let events = rate * seconds;
        let sent = phase.publish_paced(rate, events).await;
        let drained = phase.wait_for_all(events, Duration::from_secs(600)).await;
        let drain = phase
            .last_arrival()
            .map(|at| at.saturating_duration_since(sent.last))
            .unwrap_or_default();
        let mut latencies = phase.latencies(&sent.at);
        latencies.sort_unstable();
        let pick = |p: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{rate} events/s for {seconds} s ({} deliveries): publish-to-receive p50 {} ms, \
             p99 {} ms, max {} ms; last delivery {} ms after the last publish; all delivered: \
             {drained}",
            latencies.len(),
            pick(0.5),
            pick(0.99),
            pick(1.0),
            drain.as_millis()
        );
        phase.finish(events * endpoints).await;
    }
}

/// The `JUNCTION_*` settings passed on to `serve`, for the report.
fn overrides() -> String {
    let set: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("JUNCTION_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" with {}", set.join(" "))
    }
}

/// When each event's publish request was sent.
struct Sent {
    at: HashMap<u64, Instant>,
    first: Instant,
    last: Instant,
}

struct Phase {
    serve: Child,
    _dir: tempfile::TempDir,
    /// The admin connection and the phase's database, on PostgreSQL.
    postgres: Option<(String, String)>,
    base: String,
    key: String,
    http: reqwest::Client,
    arrivals: Arrivals,
    endpoints: usize,
}

impl Phase {
    async fn start(postgres: Option<&str>, endpoints: usize) -> Self {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (url, postgres) = match postgres {
            Some(admin) => {
                let name = format!("junction_bench_{}", uuid::Uuid::new_v4().simple());
                let db = Database::connect(admin).await.expect("PostgreSQL");
                db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create database");
                db.close().await.ok();
                let (server, _) = admin.rsplit_once('/').expect("URL ends with /DB");
                (
                    format!("{server}/{name}"),
                    Some((admin.to_owned(), name.clone())),
                )
            }
            None => (
                format!("sqlite://{}/junction.db", dir.path().display()),
                None,
            ),
        };
        let (serve, address, key) = start_serve(dir.path(), &url);
        let arrivals: Arrivals = Arc::default();
        let receiver = receiver(Arc::clone(&arrivals)).await;
        let phase = Self {
            serve,
            _dir: dir,
            postgres,
            base: format!("http://{address}"),
            key,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
            arrivals,
            endpoints,
        };
        phase
            .graphql(
                "mutation { createEventType(input: {name: \"order.created\"}) { eventType { name } } }",
                json!({}),
            )
            .await;
        for n in 0..endpoints {
            phase
                .graphql(
                    "mutation($url: String!) { createEndpoint(input: {url: $url}) { endpoint { id } } }",
                    json!({"url": format!("http://{receiver}/hook/{n}")}),
                )
                .await;
        }
        phase
    }

    async fn graphql(&self, query: &str, variables: Value) -> Value {
        let body: Value = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("graphql")
            .json()
            .await
            .expect("JSON");
        assert!(body.get("errors").is_none(), "{body}");
        body
    }

    /// Publishes events `numbers` in one `POST /v1/events`.
    async fn publish(&self, numbers: std::ops::Range<u64>) {
        let events: Vec<Value> = numbers
            .clone()
            .map(|n| {
                json!({"eventType": "order.created", "payload": {"n": n}, "idempotencyKey": format!("bench-{n}")})
            })
            .collect();
        let mut tries = 0;
        loop {
            tries += 1;
            let response = self
                .http
                .post(format!("{}/v1/events", self.base))
                .bearer_auth(&self.key)
                .json(&json!({ "events": events }))
                .send()
                .await
                .expect("publish");
            let status = response.status().as_u16();
            if status == 200 {
                let answer: Value = response.json().await.expect("JSON");
                assert_eq!(answer["failed"], 0, "{answer}");
                return;
            }
            let text = response.text().await.unwrap_or_default();
            assert!(
                status == 503 && tries < 20,
                "publish answered {status}: {text}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn publish_as_fast_as_possible(&self, events: usize) -> Sent {
        const PUBLISHERS: u64 = 4;
        const BATCH: u64 = 100;
        let first = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let at = Arc::new(Mutex::new(HashMap::new()));
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|_| {
                let next = Arc::clone(&next);
                let at = Arc::clone(&at);
                async move {
                    loop {
                        let start = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                        if start >= events as u64 {
                            break;
                        }
                        let end = (start + BATCH).min(events as u64);
                        let now = Instant::now();
                        at.lock().unwrap().extend((start..end).map(|n| (n, now)));
                        self.publish(start..end).await;
                    }
                }
            })
            .collect();
        futures_util::future::join_all(publishers).await;
        let at = std::mem::take(&mut *at.lock().unwrap());
        Sent {
            at,
            first,
            last: Instant::now(),
        }
    }

    /// `rate` events a second in batches of a twentieth of a second; a batch is sent on its
    /// schedule even while an earlier one is still being answered.
    async fn publish_paced(&self, rate: usize, events: usize) -> Sent {
        let batch = (rate / 20).max(1) as u64;
        let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
        let first = Instant::now();
        let mut at = HashMap::new();
        let mut requests = futures_util::stream::FuturesUnordered::new();
        let mut start = 0u64;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        use futures_util::StreamExt;
        while start < events as u64 {
            tokio::select! {
                _ = tick.tick() => {
                    let end = (start + batch).min(events as u64);
                    let now = Instant::now();
                    at.extend((start..end).map(|n| (n, now)));
                    requests.push(self.publish(start..end));
                    start = end;
                }
                Some(()) = requests.next(), if !requests.is_empty() => {}
            }
        }
        while requests.next().await.is_some() {}
        Sent {
            at,
            first,
            last: Instant::now(),
        }
    }

    async fn wait_for_all(&self, events: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.arrivals.lock().unwrap().len() >= events * self.endpoints {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn last_arrival(&self) -> Option<Instant> {
        self.arrivals.lock().unwrap().values().max().copied()
    }

    /// Milliseconds from publish to arrival, per delivery (first arrival of each).
    fn latencies(&self, sent: &HashMap<u64, Instant>) -> Vec<u128> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter_map(|((n, _), arrived)| {
                sent.get(n)
                    .map(|at| arrived.saturating_duration_since(*at).as_millis())
            })
            .collect()
    }

    /// Stops `serve`, then (PostgreSQL) reports the rows written per delivery and drops the
    /// phase's database.
    async fn finish(mut self, deliveries: usize) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.serve.id().to_string()])
            .status();
        let _ = self.serve.wait();
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        let (server, _) = admin.rsplit_once('/').expect("URL ends with /DB");
        let db: DatabaseConnection = Database::connect(format!("{server}/{name}"))
            .await
            .expect("the phase's database");
        // Counts reach the statistics when a backend flushes them; serve's backends did so
        // as they closed, and the collector publishes them within moments.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables \
                 WHERE relname IN ('deliveries', 'outbox') ORDER BY relname",
            ))
            .await
            .expect("statistics");
        let mut report = Vec::new();
        let mut written = 0i64;
        for row in rows {
            let table: String = row.try_get("", "relname").unwrap();
            let ins: i64 = row.try_get("", "n_tup_ins").unwrap();
            let upd: i64 = row.try_get("", "n_tup_upd").unwrap();
            let del: i64 = row.try_get("", "n_tup_del").unwrap();
            written += ins + upd + del;
            report.push(format!(
                "{table}: {:.2} updated, {:.2} inserted, {:.2} deleted",
                upd as f64 / deliveries as f64,
                ins as f64 / deliveries as f64,
                del as f64 / deliveries as f64
            ));
        }
        println!(
            "  rows per delivery (pg_stat_user_tables): {}; {:.2} rows written in all",
            report.join("; "),
            written as f64 / deliveries as f64
        );
        db.close().await.ok();
        let admin_db = Database::connect(&admin).await.expect("PostgreSQL");
        admin_db
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .expect("drop database");
    }
}

/// Starts the release `junction serve` in `dir` on `url`; its address and the admin key it
/// printed.
fn start_serve(dir: &std::path::Path, url: &str) -> (Child, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_junction"));
    command
        .current_dir(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("JUNCTION_DATABASE_URL", url)
        // Receivers on loopback: the one setting changed from the shipped defaults.
        .env("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", "[\"127.0.0.0/8\"]")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run junction serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok);
    let key = stdout
        .by_ref()
        .find_map(|line| {
            line.split_whitespace()
                .find(|w| w.starts_with("jk_live_"))
                .map(str::to_owned)
        })
        .expect("serve printed an admin key");
    std::thread::spawn(move || stdout.for_each(drop));
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut lines = stderr.lines().map_while(Result::ok);
    let address = lines
        .by_ref()
        .find_map(|line| {
            let value: Value = serde_json::from_str(&line).ok()?;
            (value["message"] == "Junction is serving")
                .then(|| value["address"].as_str().unwrap_or_default().to_owned())
        })
        .expect("serve started");
    // Keep reading its logs, so a full pipe never blocks it; warnings are shown.
    std::thread::spawn(move || {
        for line in lines {
            if line.contains("\"WARN\"") || line.contains("\"ERROR\"") {
                eprintln!("serve: {line}");
            }
        }
    });
    (child, address, key)
}

/// One receiver for every endpoint (`/hook/{endpoint}`), answering 200 at once.
async fn receiver(arrivals: Arrivals) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/hook/{endpoint}", post(receive))
        .with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("receiver port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

async fn receive(
    State(arrivals): State<Arrivals>,
    Path(endpoint): Path<usize>,
    body: Bytes,
) -> &'static str {
    let now = Instant::now();
    if let Ok(envelope) = serde_json::from_slice::<Value>(&body)
        && let Some(n) = envelope["data"]["n"].as_u64()
    {
        arrivals.lock().unwrap().entry((n, endpoint)).or_insert(now);
    }
    ""
}
