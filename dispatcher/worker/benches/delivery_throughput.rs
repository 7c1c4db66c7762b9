//! Publish-to-delivered throughput and latency, on the embedded queue or on Kafka.
//!
//! Publishes MESSAGES events (PUBLISHERS in parallel, 4 by default) to ENDPOINTS endpoints on a local
//! receiver that answers 200 at once, with the dispatcher running, and reports deliveries
//! per second and publish-to-first-attempt latency percentiles.
//!
//!   cargo bench -p junction-worker --bench delivery_throughput                 # SQLite
//!   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench -p junction-worker --bench delivery_throughput               # PostgreSQL
//!
//! MESSAGES (default 2000) and ENDPOINTS (default 5) size the run; RATE (messages per second,
//! default unlimited) paces the publishers, to read latency below saturation. CONCURRENCY
//! (512) and BATCH (256) set the dispatcher's attempts in flight and tasks taken at once.
//!
//! On the Kafka backend (a broker on loopback, e.g. Tansu from `tests/run`):
//!
//!   BENCH_KAFKA=127.0.0.1:9092 cargo bench -p junction-worker --bench delivery_throughput
//!
//! WAITING=N first parks N failed deliveries in the 1-hour retry tier, to measure what records
//! waiting in a tier cost the throughput of fresh deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use junction_queue::Queue;
use junction_queue::{EmbeddedQueue, KafkaConfig, KafkaQueue};
use junction_schema::database::{DatabaseConfig, DatabaseUrl};
use junction_schema::webhook_url::AddressPolicy;
use junction_webhooks::endpoints::{self, NewEndpoint};
use junction_webhooks::event_types::{self, NewEventType};
use junction_webhooks::publish::{self, DEFAULT_MAX_PAYLOAD_BYTES, PublishEvent};
use junction_worker::{Dispatcher, DispatcherConfig};
use sea_orm::ConnectionTrait;

// The allocator the `junction` binary runs on, so the figures are the shipped ones.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What is left to remove once the run's runtime, and every Kafka client with it, is gone.
struct Leftovers {
    /// Bootstrap servers and the run's topics.
    topics: Option<(String, Vec<String>)>,
    /// The admin URL and the run's own database.
    database: Option<(String, String)>,
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let leftovers = runtime.block_on(run());
    // Dropping the runtime drops its tasks, and the Kafka clients they hold, before their topics
    // go: librdkafka has crashed here refreshing metadata of a topic deleted under a live client.
    drop(runtime);
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(clean_up(leftovers));
}

async fn clean_up(leftovers: Leftovers) {
    // The run's topics go too: a broker keeping every run's records in memory slows later runs.
    if let Some((servers, topics)) = leftovers.topics {
        use rdkafka::admin::{AdminClient, AdminOptions};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .create()
                .expect("Kafka admin client");
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(error) = admin.delete_topics(&names, &AdminOptions::new()).await {
            eprintln!("could not delete the run's topics: {error}");
        }
    }
    if let Some((admin_url, name)) = leftovers.database {
        let admin_db = sea_orm::Database::connect(&admin_url)
            .await
            .expect("PostgreSQL");
        admin_db
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .expect("drop database");
    }
}

async fn run() -> Leftovers {
    let messages = env_usize("MESSAGES", 2000);
    let endpoint_count = env_usize("ENDPOINTS", 5);
    let rate = env_usize("RATE", 0);
    let scratch = tempfile::TempDir::new().expect("temp dir");
    // A PostgreSQL database of the run's own, dropped at the end.
    let mut scratch_database = None;
    let (label, url) = match std::env::var("BENCH_POSTGRES_URL") {
        Ok(admin) => {
            let admin_db = sea_orm::Database::connect(&admin)
                .await
                .expect("PostgreSQL");
            let name = format!("junction_bench_{}", uuid::Uuid::new_v4().simple());
            admin_db
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            let (base, _) = admin.rsplit_once('/').expect("URL ends with /DB");
            let url = format!("{base}/{name}");
            admin_db.close().await.expect("close");
            scratch_database = Some((admin, name));
            ("PostgreSQL", url)
        }
        Err(_) => (
            "SQLite",
            format!("sqlite://{}/bench.db", scratch.path().display()),
        ),
    };
    let db = junction_schema::database::connect(&DatabaseConfig {
        url: DatabaseUrl::parse(&url).expect("URL"),
        max_connections: 20,
        ..DatabaseConfig::default()
    })
    .await
    .expect("connect");
    junction_migrations::up(&db).await.expect("migrate");

    // The receiver: records when each (message, endpoint) first arrived.
    let arrivals: Arrivals = Arc::default();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = Router::new()
        .route("/hook/{n}", post(receive))
        .with_state(Arc::clone(&arrivals))
        .route(
            "/fail",
            post({
                let failures = Arc::clone(&failures);
                move || async move {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let tenant = junction_schema::tenants::create(&db, "bench")
        .await
        .unwrap();
    event_types::create(
        &db,
        &tenant.id,
        NewEventType {
            name: "bench.event".into(),
            description: String::new(),
            schema: None,
        },
    )
    .await
    .unwrap();
    let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    for n in 0..endpoint_count {
        let mut endpoint = NewEndpoint::new(format!("http://{address}/hook/{n}"));
        endpoint.event_types = vec!["bench.event".into()];
        endpoints::create(&db, &policy, &tenant.id, endpoint)
            .await
            .unwrap();
    }

    let config = DispatcherConfig {
        concurrency: env_usize("CONCURRENCY", 512),
        // Above CONCURRENCY / ENDPOINTS: a busy endpoint's tasks would be deferred (on Kafka,
        // into a retry tier), which is what the cap is for, but not what this measures.
        per_endpoint_concurrency: 128,
        batch_size: env_usize("BATCH", 256),
        poll_interval: Duration::from_millis(5),
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..DispatcherConfig::default()
    };
    let kafka = std::env::var("BENCH_KAFKA").ok();
    // On Kafka the dispatcher also publishes its delivery events, as `junction dispatcher` does.
    let mut kafka_queue: Option<Arc<KafkaQueue>> = None;
    let queue: Arc<dyn Queue> = match &kafka {
        None => Arc::new(
            EmbeddedQueue::new(db.clone(), config.lease)
                .with_per_endpoint_limit(config.per_endpoint_concurrency)
                .with_outbox_sweep(std::time::Duration::from_secs(30)),
        ),
        Some(servers) => {
            let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
            let kafka = KafkaConfig {
                bootstrap_servers: servers.clone(),
                topic_prefix: prefix.clone(),
                group: prefix,
                relay_interval: Duration::from_millis(5),
                properties: std::env::var("BENCH_KAFKA_PROPERTIES")
                    .ok()
                    .map(|text| {
                        text.split(',')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                ..KafkaConfig::default()
            };
            let queue = KafkaQueue::connect(db.clone(), &kafka, config.lease, config.poll_interval)
                .await
                .expect("Kafka");
            let queue = Arc::new(queue.with_relay());
            kafka_queue = Some(Arc::clone(&queue));
            queue
        }
    };
    let backend = if kafka.is_some() { "Kafka" } else { "embedded" };
    let dispatcher = Dispatcher::new(db.clone(), queue, config).unwrap();
    if let Some(queue) = &kafka_queue {
        tokio::spawn(queue.publish_events(dispatcher.forward()));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move {
            dispatcher
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        }
    });

    // Records waiting in a tier: deliveries to an endpoint that fails, retried in an hour.
    let waiting = env_usize("WAITING", 0);
    if waiting > 0 {
        event_types::create(
            &db,
            &tenant.id,
            NewEventType {
                name: "bench.parked".into(),
                description: String::new(),
                schema: None,
            },
        )
        .await
        .unwrap();
        let mut failing = NewEndpoint::new(format!("http://{address}/fail"));
        failing.retry_schedule = Some(vec![Duration::from_secs(3600)]);
        failing.event_types = vec!["bench.parked".into()];
        endpoints::create(&db, &policy, &tenant.id, failing)
            .await
            .unwrap();
        for i in 0..waiting {
            publish_one(&db, &tenant.id, "bench.parked", serde_json::json!({"n": i})).await;
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while failures.load(std::sync::atomic::Ordering::Relaxed) < waiting {
            assert!(Instant::now() < deadline, "parking stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Warm up: the first message through opens connections (and, on Kafka, waits for the
    // consumer group to form); the run measures what follows.
    publish_one(
        &db,
        &tenant.id,
        "bench.event",
        serde_json::json!({"warm": "up"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().unwrap().len() < endpoint_count {
        assert!(Instant::now() < deadline, "warm-up stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    arrivals.lock().unwrap().clear();

    let published: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let mut publishers = Vec::new();
    let publisher_count = env_usize("PUBLISHERS", 4).max(1);
    for worker_index in 0..publisher_count {
        let db = db.clone();
        let tenant_id = tenant.id.clone();
        let published = Arc::clone(&published);
        publishers.push(tokio::spawn(async move {
            for i in (worker_index..messages).step_by(publisher_count) {
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let at = Instant::now();
                let result = publish_one(
                    &db,
                    &tenant_id,
                    "bench.event",
                    serde_json::json!({"n": i, "text": "a small webhook payload"}),
                )
                .await;
                published.lock().unwrap().insert(result.message.id, at);
            }
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let publish_elapsed = started.elapsed();
    let expected = messages * endpoint_count;
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrivals.lock().unwrap().len() < expected {
        assert!(Instant::now() < deadline, "deliveries stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = started.elapsed();
    let _ = stop.send(());
    worker.await.unwrap();

    let mut latencies: Vec<Duration> = {
        let published = published.lock().unwrap();
        let arrivals = arrivals.lock().unwrap();
        arrivals
            .iter()
            .filter_map(|(key, at)| {
                let message = key.split_once('/').map(|(m, _)| m)?;
                published
                    .get(message)
                    .map(|sent| at.saturating_duration_since(*sent))
            })
            .collect()
    };
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!("queue                   {backend}");
    println!("database                {label}");
    if waiting > 0 {
        println!("waiting in a retry tier {waiting}");
    }
    println!("messages x endpoints    {messages} x {endpoint_count} = {expected} deliveries");
    if rate > 0 {
        println!("paced at                {rate} messages/s");
    }
    println!(
        "publish rate            {:.0} messages/s",
        messages as f64 / publish_elapsed.as_secs_f64()
    );
    println!(
        "delivered               {:.0} deliveries/s (publish start to last arrival: {total:.2?})",
        expected as f64 / total.as_secs_f64()
    );
    println!(
        "publish -> 1st attempt  p50 {:.1?}  p99 {:.1?}  max {:.1?}",
        percentile(0.5),
        percentile(0.99),
        percentile(1.0)
    );
    // Both are set together, on Kafka runs.
    let topics = kafka.zip(kafka_queue).map(|(servers, queue)| {
        let names = queue
            .topics()
            .all()
            .into_iter()
            .map(str::to_owned)
            .collect();
        (servers, names)
    });
    db.close().await.expect("close");
    Leftovers {
        topics,
        database: scratch_database,
    }
}

/// Publishes one event of `event_type`, as `publishEvent` does.
async fn publish_one(
    db: &sea_orm::DatabaseConnection,
    tenant_id: &str,
    event_type: &str,
    payload: serde_json::Value,
) -> publish::Published {
    publish::publish(
        db,
        tenant_id,
        PublishEvent {
            event_type: event_type.into(),
            payload,
            channels: vec![],
            idempotency_key: None,
            traceparent: None,
        },
        DEFAULT_MAX_PAYLOAD_BYTES,
    )
    .await
    .expect("publish")
}

async fn receive(
    State(arrivals): State<Arrivals>,
    axum::extract::Path(n): axum::extract::Path<String>,
    body: Bytes,
) -> &'static str {
    let at = Instant::now();
    // Only the message id is read; the rest of the envelope is skipped, not built.
    let message = serde_json::from_slice::<Envelope>(&body)
        .map(|envelope| envelope.message_id)
        .unwrap_or_default();
    arrivals
        .lock()
        .unwrap()
        .entry(format!("{message}/{n}"))
        .or_insert(at);
    "ok"
}

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    message_id: &'a str,
}
