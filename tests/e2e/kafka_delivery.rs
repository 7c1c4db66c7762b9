//! Webhook delivery on the Kafka backend, against a real Kafka-protocol broker (Tansu), with
//! `junction serve` and `junction dispatcher` processes as an operator runs them, counting at
//! a real receiver by `webhook-id`: the outbox relay, retry tiers, record headers, and the
//! crash cases: a dispatcher killed mid-batch, two dispatchers in one group with one stopped,
//! and a broker restart. Every published delivery arrives at least once; none is missing.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use junction_queue::KafkaConfig;
use junction_schema::entities::{delivery, outbox};
use junction_schema::tenants;
use junction_schema::webhook_url::AddressPolicy;
use junction_webhooks::endpoints::{self, NewEndpoint};
use junction_webhooks::event_types::{self, NewEventType};
use junction_webhooks::publish::{self, DEFAULT_MAX_PAYLOAD_BYTES, PublishEvent};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
};
use support::kafka::Broker;
use support::receiver::{Answer, Receiver};
use support::{Junction, TestDatabase};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Setup {
    db: DatabaseConnection,
    tenant: String,
}

impl Setup {
    async fn new(db: &TestDatabase) -> Self {
        let db = db.migrated().await;
        let tenant = tenants::create(&db, "acme").await.unwrap();
        event_types::create(
            &db,
            &tenant.id,
            NewEventType {
                name: "order.created".into(),
                description: String::new(),
                schema: None,
            },
        )
        .await
        .unwrap();
        Self {
            db,
            tenant: tenant.id,
        }
    }

    async fn endpoint(&self, url: &str) {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        endpoints::create(&self.db, &policy, &self.tenant, NewEndpoint::new(url))
            .await
            .unwrap();
    }

    async fn publish(&self, n: usize) {
        publish::publish(
            &self.db,
            &self.tenant,
            PublishEvent {
                event_type: "order.created".into(),
                payload: serde_json::json!({"n": n}),
                channels: vec![],
                idempotency_key: None,
                traceparent: Some(TRACEPARENT.into()),
            },
            DEFAULT_MAX_PAYLOAD_BYTES,
        )
        .await
        .unwrap();
    }

    async fn deliveries(&self) -> HashSet<String> {
        delivery::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    }

    /// Where the database has each delivery: its state, attempts, and whether an outbox row
    /// still names it (for a test's failure message).
    async fn describe(&self, ids: impl Iterator<Item = &String>) -> Vec<String> {
        let mut out = Vec::new();
        for id in ids {
            let Some(row) = delivery::Entity::find_by_id(id.as_str())
                .one(&self.db)
                .await
                .unwrap()
            else {
                out.push(format!("{id}: not in the database"));
                continue;
            };
            let outbox = outbox::Entity::find()
                .filter(
                    Condition::any()
                        .add(outbox::Column::DeliveryId.eq(id.as_str()))
                        .add(
                            Condition::all()
                                .add(outbox::Column::DeliveryId.is_null())
                                .add(outbox::Column::MessageId.eq(row.message_id.as_str())),
                        ),
                )
                .count(&self.db)
                .await
                .unwrap();
            out.push(format!(
                "{id}: {}, {} attempt(s), {outbox} outbox row(s), next attempt {}, updated {}",
                row.status, row.attempts, row.next_attempt_at, row.updated_at
            ));
        }
        out
    }

    async fn succeeded(&self) -> u64 {
        delivery::Entity::find()
            .filter(delivery::Column::Status.eq(delivery::SUCCEEDED))
            .count(&self.db)
            .await
            .unwrap()
    }
}

/// The settings a `junction` process needs for this broker and these tests.
fn settings(broker: &Broker, config: &KafkaConfig) -> Vec<(String, String)> {
    let mut env = broker.env(config);
    env.extend(
        [
            ("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", "[\"127.0.0.1/32\"]"),
            ("JUNCTION_DISPATCHER_RETRY_SCHEDULE", "[\"1s\"]"),
            // Exactly 1 s, so "not early" means something.
            ("JUNCTION_DISPATCHER_RETRY_JITTER", "0"),
            ("JUNCTION_DISPATCHER_LEASE", "5s"),
            ("JUNCTION_DISPATCHER_REQUEST_TIMEOUT", "2s"),
            ("JUNCTION_DISPATCHER_POLL_INTERVAL", "50ms"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Waits until the receiver has seen every one of `expected` (by `webhook-id`).
async fn all_arrive(
    setup: &Setup,
    receiver: &Receiver,
    expected: &HashSet<String>,
    wait: Duration,
) {
    if let Err(missing) = arrivals(setup, receiver, expected, wait).await {
        panic!("{missing}");
    }
}

/// Like [`all_arrive`], but says what is missing instead of failing, so that a test can show
/// the dispatchers' logs with it: how many, and where the database has each of them.
async fn arrivals(
    setup: &Setup,
    receiver: &Receiver,
    expected: &HashSet<String>,
    wait: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        let seen: HashSet<String> = receiver.webhook_ids().into_iter().collect();
        let missing: Vec<&String> = expected.difference(&seen).collect();
        if missing.is_empty() {
            assert!(seen.is_subset(expected), "a delivery nobody published");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} of {} deliveries never arrived; the first of them: {}",
                missing.len(),
                expected.len(),
                setup.describe(missing.into_iter().take(5)).await.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_kafka_relays_delivers_and_retries_through_a_tier() {
    let broker = Broker::start();
    let db = TestDatabase::sqlite().await;
    let setup = Setup::new(&db).await;
    // The first request fails: its retry goes through a tier topic and must not come early.
    let receiver = Receiver::start(&[Answer::Status(500)], Answer::Status(200)).await;
    setup.endpoint(&receiver.url()).await;
    let config = broker.config("serve");
    let env = settings(&broker, &config);
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), &borrowed(&env));
    for n in 0..20 {
        setup.publish(n).await;
    }
    let expected = setup.deliveries().await;
    all_arrive(&setup, &receiver, &expected, Duration::from_secs(60)).await;
    let failed = receiver.requests()[0].header("webhook-id");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (requests, retried) = loop {
        let requests = receiver.requests();
        if let Some(retried) = requests
            .iter()
            .skip(1)
            .find(|r| r.header("webhook-id") == failed)
            .cloned()
        {
            break (requests, retried);
        }
        assert!(
            Instant::now() < deadline,
            "the failed delivery was never retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        retried.at - requests[0].at >= Duration::from_secs(1),
        "the retry came after its 1 s back-off, not before"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.succeeded().await < 20 {
        assert!(Instant::now() < deadline, "not every delivery is recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The dispatch records carry the trace context and the ids in their headers.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", format!("{}-inspect", config.group))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer
        .subscribe(&[&format!("{}.dispatch", config.topic_prefix)])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        assert!(Instant::now() < deadline, "no dispatch record read back");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            break message.detach();
        }
    };
    let headers = record.headers().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("traceparent").as_deref(), Some(TRACEPARENT));
    assert_eq!(header("junction-tenant"), Some(setup.tenant.clone()));
    let delivery_id = header("junction-delivery").expect("a delivery id");
    assert!(expected.contains(&delivery_id));
    assert!(header("junction-message").is_some());
    drop(consumer);

    let (status, _) = junction.stop_with("TERM");
    assert!(status.success(), "{status}");
}

/// A dead letter replayed as the deliveries subgraph does it (the database marks it due and
/// names it in the outbox; no Kafka client in that process) goes back through the relay of a
/// running dispatcher, under the same `webhook-id`; the relay leaves no outbox row behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_goes_through_the_relay_again() {
    let broker = Broker::start();
    let db = TestDatabase::postgres().await;
    let setup = Setup::new(&db).await;
    // Two failures use up the schedule (one retry); the replay then succeeds.
    let receiver = Receiver::start(
        &[Answer::Status(500), Answer::Status(500)],
        Answer::Status(200),
    )
    .await;
    setup.endpoint(&receiver.url()).await;
    let config = broker.config("replay");
    let env = settings(&broker, &config);
    let dispatcher = Junction::dispatcher(db.dir.path(), &db.url, &borrowed(&env));
    setup.publish(0).await;
    let row = || async {
        delivery::Entity::find()
            .one(&setup.db)
            .await
            .unwrap()
            .expect("the delivery")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while row().await.status != delivery::DEAD {
        assert!(Instant::now() < deadline, "the delivery never died");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outbox_rows(&setup.db).await, 0, "the relay deleted its row");

    let dead = row().await;
    let replayed =
        junction_queue::replay::replay_message(&setup.db, &setup.tenant, &dead.message_id)
            .await
            .unwrap();
    assert_eq!(replayed, 1);
    receiver.wait_for(3, Duration::from_secs(60)).await;
    let ids: Vec<String> = receiver.webhook_ids();
    assert_eq!(
        ids,
        vec![dead.id.clone(); 3],
        "the same webhook-id each time"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while row().await.status != delivery::SUCCEEDED {
        assert!(Instant::now() < deadline, "the replay is not recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outbox_rows(&setup.db).await, 0);
    let (status, _) = dispatcher.stop_with("TERM");
    assert!(status.success(), "{status}");
}

async fn outbox_rows(db: &DatabaseConnection) -> u64 {
    outbox::Entity::find().count(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_batch_loses_nothing() {
    let broker = Broker::start();
    let db = TestDatabase::postgres().await;
    let setup = Setup::new(&db).await;
    let receiver = Receiver::ok().await;
    setup.endpoint(&receiver.url()).await;
    let config = broker.config("kill");
    let env = settings(&broker, &config);
    let first = Junction::dispatcher(db.dir.path(), &db.url, &borrowed(&env));
    for n in 0..300 {
        setup.publish(n).await;
    }
    let expected = setup.deliveries().await;
    receiver.wait_for(30, Duration::from_secs(60)).await;
    first.kill();
    let before = receiver.requests().len();
    assert!(before < 300, "killed before the end ({before} delivered)");

    let second = Junction::dispatcher(db.dir.path(), &db.url, &borrowed(&env));
    // Generous: under a loaded machine the group waits out the killed member first.
    let arrived = arrivals(&setup, &receiver, &expected, Duration::from_secs(180)).await;
    let (status, logs) = second.stop_with("TERM");
    if let Err(missing) = arrived {
        panic!(
            "{missing} ({before} had arrived when the first dispatcher was killed, {} by the \
             end); the second dispatcher logged:\n{}",
            receiver.requests().len(),
            logs.join("\n")
        );
    }
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_share_the_partitions_and_one_stopping_loses_nothing() {
    let broker = Broker::start();
    let db = TestDatabase::postgres().await;
    let setup = Setup::new(&db).await;
    let receiver = Receiver::ok().await;
    // Six endpoints: their tasks spread over the partitions (records are keyed by endpoint).
    for n in 0..6 {
        setup
            .endpoint(&format!("{}?endpoint={n}", receiver.url()))
            .await;
    }
    let config = broker.config("group");
    let env = settings(&broker, &config);
    let one = Junction::dispatcher(db.dir.path(), &db.url, &borrowed(&env));
    let two = Junction::dispatcher(db.dir.path(), &db.url, &borrowed(&env));
    for n in 0..50 {
        setup.publish(n).await;
    }
    let expected = setup.deliveries().await;
    assert_eq!(expected.len(), 300);
    receiver.wait_for(60, Duration::from_secs(60)).await;
    let (status, one_logs) = one.stop_with("TERM");
    assert!(status.success(), "{status}");
    for n in 50..60 {
        setup.publish(n).await;
    }
    let expected = setup.deliveries().await;
    let arrived = arrivals(&setup, &receiver, &expected, Duration::from_secs(90)).await;
    let (status, two_logs) = two.stop_with("TERM");
    if let Err(missing) = arrived {
        panic!(
            "{missing}; the stopped dispatcher logged:\n{}\nthe other one:\n{}",
            one_logs.join("\n"),
            two_logs.join("\n")
        );
    }
    assert!(status.success(), "{status}");
}

/// Member churn: two dispatchers with static membership (`instance_id`) and cooperative
/// rebalancing, one of them killed (SIGKILL) and started again under the same id every few
/// seconds while events flow. Every delivery arrives; how long it took is printed, for the
/// README, not asserted. CHURN_EVENTS (default 2,000) sizes the run.
///
/// Ignored in the suite for now: it passed once in 112 s and once ran past nextest's 240 s
/// limit, both while release builds took the machine's 2 cores; run it alone with
/// `cargo nextest run -p junction --test kafka_delivery --run-ignored only killed_every`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow and not yet reliable under CPU contention on Tansu 0.6.0; see the comment"]
async fn dispatchers_killed_every_few_seconds_lose_nothing() {
    let events: usize = std::env::var("CHURN_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let broker = Broker::start();
    let db = TestDatabase::postgres().await;
    let setup = Setup::new(&db).await;
    let receiver = Receiver::ok().await;
    for n in 0..4 {
        setup
            .endpoint(&format!("{}?endpoint={n}", receiver.url()))
            .await;
    }
    let config = broker.config("churn");
    let env = settings(&broker, &config);
    let with_id = |id: &str| {
        let mut env = env.clone();
        env.push(("JUNCTION_QUEUE__KAFKA__INSTANCE_ID".into(), id.into()));
        env
    };
    let (one_env, two_env) = (with_id("dispatcher-1"), with_id("dispatcher-2"));
    let mut one = Some(Junction::dispatcher(
        db.dir.path(),
        &db.url,
        &borrowed(&one_env),
    ));
    let mut two = Some(Junction::dispatcher(
        db.dir.path(),
        &db.url,
        &borrowed(&two_env),
    ));
    let started = Instant::now();
    let mut published = 0;
    let mut kills = 0;
    let mut last_kill = Instant::now();
    while published < events {
        let upto = (published + 100).min(events);
        for n in published..upto {
            setup.publish(n).await;
        }
        published = upto;
        if last_kill.elapsed() >= Duration::from_secs(3) {
            // Alternately, one dispatcher dies and comes back under its own id.
            let (slot, env) = if kills % 2 == 0 {
                (&mut one, &one_env)
            } else {
                (&mut two, &two_env)
            };
            if let Some(process) = slot.take() {
                process.kill();
            }
            *slot = Some(Junction::dispatcher(db.dir.path(), &db.url, &borrowed(env)));
            kills += 1;
            last_kill = Instant::now();
        }
    }
    let publishing = started.elapsed();
    let delivered_then = receiver.webhook_ids().len();
    let expected = setup.deliveries().await;
    assert_eq!(expected.len(), events * 4);
    let arrived = arrivals(&setup, &receiver, &expected, Duration::from_secs(300)).await;
    let total = started.elapsed();
    eprintln!(
        "churn: {events} events x 4 endpoints, {kills} kills; {delivered_then} deliveries had          arrived when publishing ended after {:.1} s; all {} by {:.1} s ({:.0} deliveries/s)",
        publishing.as_secs_f64(),
        expected.len(),
        total.as_secs_f64(),
        expected.len() as f64 / total.as_secs_f64()
    );
    let mut logs = Vec::new();
    for process in [one, two].into_iter().flatten() {
        let (_, lines) = process.stop_with("TERM");
        logs.extend(lines);
    }
    if let Err(missing) = arrived {
        panic!("{missing}; the dispatchers logged:\n{}", logs.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() {
    let mut broker = Broker::persistent();
    let db = TestDatabase::postgres().await;
    let setup = Setup::new(&db).await;
    let receiver = Receiver::ok().await;
    setup.endpoint(&receiver.url()).await;
    let config = broker.config("restart");
    let env = settings(&broker, &config);
    let dispatcher = Junction::dispatcher(db.dir.path(), &db.url, &borrowed(&env));
    for n in 0..100 {
        setup.publish(n).await;
    }
    receiver.wait_for(20, Duration::from_secs(60)).await;
    broker.restart();
    for n in 100..200 {
        setup.publish(n).await;
    }
    let expected = setup.deliveries().await;
    all_arrive(&setup, &receiver, &expected, Duration::from_secs(120)).await;
    let (status, _) = dispatcher.stop_with("TERM");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_clear_error_not_a_hang() {
    let db = TestDatabase::sqlite().await;
    db.migrated().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let started = Instant::now();
    let output = support::process::command(db.dir.path())
        .args(["dispatcher", "--log-format", "json"])
        .env("JUNCTION_DATABASE_URL", &db.url)
        .env("JUNCTION_QUEUE_BACKEND", "kafka")
        .env("JUNCTION_QUEUE__KAFKA__BOOTSTRAP_SERVERS", &address)
        .env("JUNCTION_QUEUE__KAFKA__CONNECT_TIMEOUT", "2s")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up in bounded time"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("Kafka at {address} is unreachable after")),
        "{stderr}"
    );
}

/// A deliveries subgraph replica of its own, on the Kafka backend, streams the attempts a
/// separate dispatcher process makes: the events travel through the events topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subgraph_replica_streams_attempts_made_by_another_process() {
    use junction_schema::Identity;
    use junction_schema::identity::{
        Audience, Binding, IDENTITY_HEADER, IDENTITY_SIGNATURE_HEADER, IdentityKey, IdentitySigner,
    };
    use support::graphql_ws::{TRANSPORT_WS, WsClient};

    let broker = Broker::start();
    let db = TestDatabase::postgres().await;
    let setup = Setup::new(&db).await;
    let receiver = Receiver::ok().await;
    setup.endpoint(&receiver.url()).await;
    let config = broker.config("events");
    let env = settings(&broker, &config);
    let key = IdentityKey::generate();
    let mut command = support::process::command(db.dir.path());
    command
        .args([
            "subgraph",
            "deliveries",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("JUNCTION_DATABASE_URL", &db.url)
        .env("JUNCTION_IDENTITY_SIGNING_KEY", key.to_base64())
        .envs(borrowed(&env));
    let subgraph = Junction::start(command, "Junction is serving");
    let dispatcher = Junction::dispatcher(db.dir.path(), &db.url, &borrowed(&env));

    let identity = Identity {
        tenant: setup.tenant.clone(),
        subject: "test".into(),
        scopes: "deliveries:read".parse().unwrap(),
        expires_at: None,
    };
    // Signed for the WebSocket handshake, as the router signs it: a GET without a body.
    let audience = Audience::subgraph("deliveries");
    let handshake = Binding {
        audience: &audience,
        method: Some("GET"),
        target: Some("/graphql"),
        body: Some(Binding::digest(b"")),
        request_id: None,
    };
    let (payload, signature) =
        IdentitySigner::new(key).sign(&identity, &handshake, chrono::Utc::now());
    let mut socket = WsClient::open_with(
        &subgraph.url("/graphql"),
        TRANSPORT_WS,
        &[
            (IDENTITY_HEADER, payload.to_str().unwrap().to_owned()),
            (
                IDENTITY_SIGNATURE_HEADER,
                signature.to_str().unwrap().to_owned(),
            ),
        ],
    )
    .await;
    socket
        .send(serde_json::json!({"type": "connection_init"}))
        .await;
    assert_eq!(socket.message().await["type"], "connection_ack");
    socket
        .subscribe(
            "1",
            "subscription { deliveryAttempts { status attempt { deliveryId statusCode } } }",
            serde_json::json!({}),
        )
        .await;
    // Live from now on: publish until an event comes through.
    let mut event = None;
    for n in 0..30 {
        setup.publish(n).await;
        if let Some(support::graphql_ws::Received::Message(message)) =
            socket.receive_within(Duration::from_secs(1)).await
        {
            event = Some(message);
            break;
        }
    }
    let event = event.expect("an attempt event from the other process");
    assert_eq!(event["type"], "next", "{event}");
    let attempt = &event["payload"]["data"]["deliveryAttempts"];
    assert_eq!(attempt["status"], "SUCCEEDED", "{event}");
    assert_eq!(attempt["attempt"]["statusCode"], 200);
    let id = attempt["attempt"]["deliveryId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(setup.deliveries().await.contains(&id));
    socket.close().await;
    let (status, _) = dispatcher.stop_with("TERM");
    assert!(status.success(), "{status}");
    drop(subgraph);
}
