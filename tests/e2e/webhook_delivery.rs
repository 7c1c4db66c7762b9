//! The webhook pipeline on embedded defaults, against real HTTP receivers on loopback:
//! publishing through the outbox, signed delivery, retries with back-off, 410, dead letters,
//! replay, a crashed worker, idempotency, secret rotation, SSRF and tenant isolation.
//! Every test runs on SQLite and on PostgreSQL.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use junction_queue::EmbeddedQueue;
use junction_queue::replay;
use junction_schema::entities::{delivery, delivery_attempt, endpoint, replay_job};
use junction_schema::tenants;
use junction_schema::webhook_url::AddressPolicy;
use junction_webhooks::WebhookError;
use junction_webhooks::endpoints::{self, NewEndpoint};
use junction_webhooks::event_types::{self, NewEventType};
use junction_webhooks::publish::{self, DEFAULT_MAX_PAYLOAD_BYTES, PublishEvent, Published};
use junction_worker::{Dispatcher, DispatcherConfig};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use support::TestDatabase;
use support::receiver::{Answer, Receiver, verify_v1};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);

fn loopback() -> AddressPolicy {
    AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()])
}

/// Fast schedules for tests; production defaults span 75 hours.
fn config(schedule_ms: &[u64]) -> DispatcherConfig {
    DispatcherConfig {
        poll_interval: Duration::from_millis(10),
        lease: Duration::from_secs(3),
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        retry_schedule: schedule_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        retry_jitter: 0.0,
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..DispatcherConfig::default()
    }
}

struct Running {
    dispatcher: Dispatcher,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(db: &DatabaseConnection, config: DispatcherConfig) -> Self {
        let queue = Arc::new(
            EmbeddedQueue::new(db.clone(), config.lease)
                .with_per_endpoint_limit(config.per_endpoint_concurrency),
        );
        let dispatcher = Dispatcher::new(db.clone(), queue, config).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let runner = dispatcher.clone();
        let task = tokio::spawn(async move {
            runner
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            dispatcher,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

struct Tenant {
    db: DatabaseConnection,
    id: String,
}

async fn tenant(db: &DatabaseConnection, name: &str) -> Tenant {
    let tenant = tenants::create(db, name).await.unwrap();
    event_types::create(
        db,
        &tenant.id,
        NewEventType {
            name: "invoice.paid".into(),
            description: "An invoice was paid".into(),
            schema: None,
        },
    )
    .await
    .unwrap();
    Tenant {
        db: db.clone(),
        id: tenant.id,
    }
}

impl Tenant {
    async fn endpoint(&self, url: &str) -> endpoints::CreatedEndpoint {
        endpoints::create(&self.db, &loopback(), &self.id, NewEndpoint::new(url))
            .await
            .unwrap()
    }

    async fn publish(&self, payload: serde_json::Value) -> Published {
        self.publish_keyed(payload, None).await.unwrap()
    }

    async fn publish_keyed(
        &self,
        payload: serde_json::Value,
        key: Option<&str>,
    ) -> Result<Published, WebhookError> {
        publish::publish(
            &self.db,
            &self.id,
            PublishEvent {
                event_type: "invoice.paid".into(),
                payload,
                channels: vec![],
                idempotency_key: key.map(str::to_owned),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            },
            DEFAULT_MAX_PAYLOAD_BYTES,
        )
        .await
    }
}

async fn attempts(db: &DatabaseConnection, delivery_id: &str) -> Vec<delivery_attempt::Model> {
    delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::DeliveryId.eq(delivery_id))
        .order_by_asc(delivery_attempt::Column::CreatedAt)
        .all(db)
        .await
        .unwrap()
}

async fn delivery_of(db: &DatabaseConnection, message_id: &str) -> delivery::Model {
    delivery::Entity::find()
        .filter(delivery::Column::MessageId.eq(message_id))
        .one(db)
        .await
        .unwrap()
        .expect("a delivery")
}

async fn wait_for_status(
    db: &DatabaseConnection,
    message_id: &str,
    status: &str,
) -> delivery::Model {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let row = delivery_of(db, message_id).await;
        if row.status == status {
            return row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivery stayed {} (wanted {status})",
            row.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_databases!(
    a_published_event_arrives_signed,
    failures_are_retried_with_growing_delays_and_one_webhook_id,
    gone_disables_the_endpoint,
    exhausted_deliveries_are_dead_lettered_and_replay_delivers_them,
    a_crashed_worker_loses_nothing,
    idempotency_keys_make_publishing_safe_to_retry,
    bad_input_is_refused_and_stores_nothing,
    rotated_secrets_both_sign_during_the_grace_period,
    private_addresses_are_refused_at_creation_and_at_delivery,
    tenants_cannot_reach_each_others_endpoints,
    serve_runs_the_dispatcher_in_process,
    a_killed_dispatcher_process_loses_nothing,
    rate_limited_endpoints_are_paced,
    an_endpoint_asking_to_slow_down_is_paused,
    endpoints_failing_too_long_are_disabled,
    a_dead_endpoint_does_not_hold_up_the_others,
    ed25519_signatures_verify_with_the_public_key_alone,
    stats_match_a_scripted_history_exactly,
    bulk_replays_run_in_batches_and_a_crashed_one_is_taken_over,
    retention_removes_old_history_but_keeps_what_is_still_delivering,
    deleting_an_endpoint_deletes_its_deliveries_and_attempts_only,
    a_message_to_more_endpoints_than_one_statement_takes_is_stored_whole,
);

async fn ed25519_signatures_verify_with_the_public_key_alone(db: TestDatabase) {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    let mut endpoint = NewEndpoint::new(receiver.url());
    endpoint.scheme = junction_schema::webhook_signature::Scheme::Ed25519;
    let created = endpoints::create(&db, &loopback(), &acme.id, endpoint)
        .await
        .unwrap();
    let public = created
        .verification_key
        .strip_prefix("whpk_")
        .expect("a whpk_ public key");
    let public: [u8; 32] = STANDARD.decode(public).unwrap().try_into().unwrap();
    acme.publish(serde_json::json!({"signed": "ed25519"})).await;

    let running = Running::start(&db, config(&[100]));
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    let header = request.header("webhook-signature");
    let signature = header
        .strip_prefix("v1a,")
        .unwrap_or_else(|| panic!("a v1a signature: {header}"));
    let signature: [u8; 64] = STANDARD.decode(signature).unwrap().try_into().unwrap();
    let signed = format!(
        "{}.{}.{}",
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        String::from_utf8_lossy(&request.body)
    );
    VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify(signed.as_bytes(), &Signature::from_bytes(&signature))
        .expect("the signature verifies with the public key");
    running.stop().await;
}

async fn rate_limited_endpoints_are_paced(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    let mut endpoint = NewEndpoint::new(receiver.url());
    endpoint.rate_limit_per_second = Some(5);
    endpoints::create(&db, &loopback(), &acme.id, endpoint)
        .await
        .unwrap();
    for n in 0..6 {
        acme.publish(serde_json::json!({"n": n})).await;
    }
    let running = Running::start(&db, config(&[100]));
    let requests = receiver.wait_for(6, WAIT).await;
    // Five a second: the sixth cannot start before a second has passed since the first.
    let spread = requests[5].at - requests[0].at;
    assert!(
        spread >= Duration::from_millis(900),
        "6 deliveries at 5/s took only {spread:?}"
    );
    running.stop().await;
}

async fn an_endpoint_asking_to_slow_down_is_paused(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::start(&[Answer::RetryAfter(429, 1)], Answer::Status(200)).await;
    let mut endpoint = NewEndpoint::new(receiver.url());
    endpoint.rate_limit_per_second = Some(1000);
    endpoints::create(&db, &loopback(), &acme.id, endpoint)
        .await
        .unwrap();
    acme.publish(serde_json::json!({"n": 1})).await;
    let running = Running::start(&db, config(&[50, 50]));
    receiver.wait_for(1, WAIT).await;
    // Published after the 429: it waits out the pause too, though nothing failed for it.
    acme.publish(serde_json::json!({"n": 2})).await;
    let requests = receiver.wait_for(3, WAIT).await;
    let first_after = requests[1].at - requests[0].at;
    assert!(
        first_after >= Duration::from_millis(900),
        "Retry-After: 1 honoured, got {first_after:?}"
    );
    running.stop().await;
}

async fn endpoints_failing_too_long_are_disabled(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::start(&[], Answer::Status(500)).await;
    let mut endpoint = NewEndpoint::new(receiver.url());
    // The endpoint's own schedule wins over the global one.
    endpoint.retry_schedule = Some(vec![Duration::from_millis(100); 20]);
    let created = endpoints::create(&db, &loopback(), &acme.id, endpoint)
        .await
        .unwrap();
    let published = acme.publish(serde_json::json!({})).await;
    let running = Running::start(
        &db,
        DispatcherConfig {
            disable_failing_endpoint_after: Duration::from_millis(400),
            ..config(&[3_600_000])
        },
    );
    let dead = wait_for_status(&db, &published.message.id, delivery::DEAD).await;
    let endpoint = endpoints::get(&db, &acme.id, &created.endpoint.id)
        .await
        .unwrap();
    assert!(!endpoint.enabled);
    assert!(
        endpoint
            .disabled_reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("failing without a success since"),
        "{:?}",
        endpoint.disabled_reason
    );
    assert!(
        dead.attempts >= 4,
        "retried on the endpoint's 100 ms schedule: {}",
        dead.attempts
    );
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("endpoint disabled"),
        "{:?}",
        dead.last_error
    );
    running.stop().await;
}

async fn a_dead_endpoint_does_not_hold_up_the_others(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let stuck = Receiver::start(&[], Answer::Hang).await;
    let healthy = Receiver::ok().await;
    acme.endpoint(&stuck.url()).await;
    acme.endpoint(&healthy.url()).await;
    for n in 0..10 {
        acme.publish(serde_json::json!({"n": n})).await;
    }
    let running = Running::start(
        &db,
        DispatcherConfig {
            concurrency: 4,
            per_endpoint_concurrency: 2,
            request_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            ..config(&[100])
        },
    );
    // With 4 slots in all, 2 at most go to the endpoint that never answers.
    healthy.wait_for(10, WAIT).await;
    assert_eq!(stuck.requests().len(), 2);
    running.task.abort();
}

/// Settings that let a `junction` process deliver to receivers on loopback, quickly.
const LOOPBACK_DISPATCH: &[(&str, &str)] = &[
    ("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", "[\"127.0.0.0/8\"]"),
    ("JUNCTION_DISPATCHER_POLL_INTERVAL", "20ms"),
    ("JUNCTION_DISPATCHER_RETRY_SCHEDULE", "[\"100ms\"]"),
];

async fn serve_runs_the_dispatcher_in_process(db: TestDatabase) {
    let junction = support::Junction::serve_with(db.dir.path(), Some(&db.url), LOOPBACK_DISPATCH);
    let conn = db.connect().await;
    let acme = tenant(&conn, "acme").await;
    let receiver = Receiver::ok().await;
    let created = acme.endpoint(&receiver.url()).await;
    let published = acme.publish(serde_json::json!({"via": "serve"})).await;

    let request = receiver.wait_for(1, WAIT).await.remove(0);
    assert!(verify_v1(&created.verification_key, &request));
    wait_for_status(&conn, &published.message.id, delivery::SUCCEEDED).await;
    let (status, _) = junction.stop_with("TERM");
    assert!(status.success(), "{status}");
}

async fn a_killed_dispatcher_process_loses_nothing(db: TestDatabase) {
    let conn = db.migrated().await;
    let acme = tenant(&conn, "acme").await;
    // The first request hangs; the dispatcher process is killed while waiting for it.
    let receiver = Receiver::start(&[Answer::Hang], Answer::Status(200)).await;
    acme.endpoint(&receiver.url()).await;
    let published = acme.publish(serde_json::json!({"kill": 9})).await;

    let mut settings = LOOPBACK_DISPATCH.to_vec();
    settings.extend([
        ("JUNCTION_DISPATCHER_LEASE", "2s"),
        ("JUNCTION_DISPATCHER_REQUEST_TIMEOUT", "1s"),
    ]);
    let first = support::Junction::dispatcher(db.dir.path(), &db.url, &settings);
    receiver.wait_for(1, WAIT).await;
    first.kill();

    // A new process takes the task once the dead one's lease runs out.
    let second = support::Junction::dispatcher(db.dir.path(), &db.url, &settings);
    let delivered = wait_for_status(&conn, &published.message.id, delivery::SUCCEEDED).await;
    let ids: Vec<String> = receiver.webhook_ids();
    assert_eq!(
        ids,
        [delivered.id.clone(), delivered.id.clone()],
        "a repeat, never a loss"
    );
    let (status, _) = second.stop_with("TERM");
    assert!(status.success(), "{status}");
}

async fn a_published_event_arrives_signed(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    let created = acme.endpoint(&receiver.url()).await;
    assert!(created.verification_key.starts_with("whsec_"));
    let published = acme
        .publish(serde_json::json!({"invoice": "in_1", "amount": 4200}))
        .await;
    assert_eq!(published.deliveries, 1);

    let running = Running::start(&db, config(&[100]));
    let requests = receiver.wait_for(1, WAIT).await;
    let request = &requests[0];
    assert!(
        verify_v1(&created.verification_key, request),
        "signature verifies"
    );
    let delivery = wait_for_status(&db, &published.message.id, delivery::SUCCEEDED).await;
    assert_eq!(request.header("webhook-id"), delivery.id);
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(
        request.header("traceparent"),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    let body = request.json();
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(
        body["data"],
        serde_json::json!({"invoice": "in_1", "amount": 4200})
    );
    assert_eq!(body["message_id"], published.message.id.as_str());
    assert_eq!(body["delivery_id"], delivery.id.as_str());

    let recorded = attempts(&db, &delivery.id).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].status_code, Some(200));
    assert_eq!(recorded[0].error_kind, None);
    assert_eq!(
        recorded[0].trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    running.stop().await;
}

async fn failures_are_retried_with_growing_delays_and_one_webhook_id(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::start(
        &[
            Answer::Status(500),
            Answer::Status(500),
            Answer::Status(500),
        ],
        Answer::Status(200),
    )
    .await;
    acme.endpoint(&receiver.url()).await;
    let published = acme.publish(serde_json::json!({"n": 1})).await;

    let running = Running::start(&db, config(&[100, 300, 600, 1000]));
    let mut events = running.dispatcher.subscribe();
    let requests = receiver.wait_for(4, WAIT).await;
    let delivery = wait_for_status(&db, &published.message.id, delivery::SUCCEEDED).await;

    let ids: Vec<String> = requests.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == delivery.id),
        "one webhook-id: {ids:?}"
    );
    let gaps: Vec<Duration> = requests.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(300), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(600), "{gaps:?}");
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "growing delays: {gaps:?}"
    );

    let recorded = attempts(&db, &delivery.id).await;
    let codes: Vec<Option<i32>> = recorded.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(500), Some(200)]);
    let numbers: Vec<i32> = recorded.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(delivery.attempts, 4);

    // Every recorded attempt is announced (waited for: the event may trail the row by a
    // moment).
    let mut outcomes = Vec::new();
    while outcomes.len() < 4 {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event per attempt")
            .unwrap();
        outcomes.push(event.outcome);
    }
    use junction_schema::envelope::AttemptOutcome::*;
    assert_eq!(outcomes, [Retrying, Retrying, Retrying, Succeeded]);
    // A success ends the endpoint's failure streak.
    let endpoint = endpoint::Entity::find().one(&db).await.unwrap().unwrap();
    assert_eq!(endpoint.failing_since, None);
    running.stop().await;
}

async fn gone_disables_the_endpoint(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::start(&[], Answer::Status(410)).await;
    let created = acme.endpoint(&receiver.url()).await;
    let published = acme.publish(serde_json::json!({})).await;

    let running = Running::start(&db, config(&[50, 50, 50]));
    let dead = wait_for_status(&db, &published.message.id, delivery::DEAD).await;
    assert_eq!(dead.attempts, 1, "410 is not retried");
    let endpoint = endpoints::get(&db, &acme.id, &created.endpoint.id)
        .await
        .unwrap();
    assert!(!endpoint.enabled);
    assert_eq!(
        endpoint.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );

    // A disabled endpoint receives nothing new.
    let next = acme.publish(serde_json::json!({})).await;
    assert_eq!(next.deliveries, 0);
    running.stop().await;
    assert_eq!(receiver.requests().len(), 1);
}

async fn exhausted_deliveries_are_dead_lettered_and_replay_delivers_them(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::start(&[], Answer::Status(503)).await;
    let created = acme.endpoint(&receiver.url()).await;
    let published = acme.publish(serde_json::json!({"x": 1})).await;

    let running = Running::start(&db, config(&[50, 50]));
    let dead = wait_for_status(&db, &published.message.id, delivery::DEAD).await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("retries exhausted after 3 attempts")
    );
    assert!(dead.dead_at.is_some());
    let failed_id = receiver.requests()[0].header("webhook-id");

    // The endpoint recovers; replaying its dead letters delivers them, under the same id.
    receiver.answer_from_now_on(Answer::Status(200));
    let since = published.message.created_at - chrono::Duration::minutes(1);
    let until = chrono::Utc::now() + chrono::Duration::minutes(1);
    let endpoint_filter = replay::DeadLetterFilter {
        endpoint_id: Some(created.endpoint.id.clone()),
        since: Some(since),
        until: Some(until),
    };
    let replayed = replay::replay_dead_letters(&db, &acme.id, &endpoint_filter)
        .await
        .unwrap();
    assert_eq!((replayed.total, replayed.requeued), (1, 1));
    assert_eq!(replayed.status, replay_job::SUCCEEDED);
    let delivered = wait_for_status(&db, &published.message.id, delivery::SUCCEEDED).await;
    let last = receiver.requests().last().cloned().unwrap();
    assert_eq!(last.header("webhook-id"), failed_id);
    assert_eq!(delivered.id, failed_id);
    assert_eq!(
        attempts(&db, &delivered.id).await.len(),
        4,
        "history kept: 3 failures, 1 success"
    );

    // Dead letters can be replayed in bulk too: two more die, one call brings both back.
    receiver.answer_from_now_on(Answer::Status(503));
    let second = acme.publish(serde_json::json!({"x": 2})).await;
    let third = acme.publish(serde_json::json!({"x": 3})).await;
    wait_for_status(&db, &second.message.id, delivery::DEAD).await;
    wait_for_status(&db, &third.message.id, delivery::DEAD).await;
    receiver.answer_from_now_on(Answer::Status(200));
    let bulk = replay::replay_dead_letters(
        &db,
        &acme.id,
        &replay::DeadLetterFilter {
            endpoint_id: Some(created.endpoint.id.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(bulk.requeued, 2);
    wait_for_status(&db, &second.message.id, delivery::SUCCEEDED).await;
    wait_for_status(&db, &third.message.id, delivery::SUCCEEDED).await;
    let seen = receiver.requests().len();

    // Replaying one message sends it again, still under its id.
    let again = replay::replay_message(&db, &acme.id, &published.message.id)
        .await
        .unwrap();
    assert_eq!(again, 1);
    let requests = receiver.wait_for(seen + 1, WAIT).await;
    assert_eq!(requests[seen].header("webhook-id"), failed_id);
    running.stop().await;
}

async fn a_crashed_worker_loses_nothing(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    // The first request never gets an answer: the worker is killed while it waits.
    let receiver = Receiver::start(&[Answer::Hang], Answer::Status(200)).await;
    acme.endpoint(&receiver.url()).await;
    let published = acme.publish(serde_json::json!({"crash": true})).await;

    let crashing = Running::start(
        &db,
        DispatcherConfig {
            request_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            ..config(&[50])
        },
    );
    receiver.wait_for(1, WAIT).await;
    crashing.task.abort(); // no graceful stop: the task is dropped mid-request
    let _ = crashing.task.await;
    assert_eq!(
        delivery_of(&db, &published.message.id).await.status,
        delivery::PENDING
    );

    // The lease taken by the dead worker runs out; move it to now rather than wait a minute.
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
    let mut row = delivery_of(&db, &published.message.id)
        .await
        .into_active_model();
    row.next_attempt_at = Set(chrono::Utc::now());
    row.update(&db).await.unwrap();

    let running = Running::start(&db, config(&[50]));
    let delivered = wait_for_status(&db, &published.message.id, delivery::SUCCEEDED).await;
    let ids: Vec<String> = receiver.webhook_ids();
    assert_eq!(
        ids,
        [delivered.id.clone(), delivered.id.clone()],
        "a repeat, never a loss"
    );
    running.stop().await;
}

async fn idempotency_keys_make_publishing_safe_to_retry(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    acme.endpoint(&receiver.url()).await;

    let first = acme
        .publish_keyed(serde_json::json!({"a": 1}), Some("order-1"))
        .await
        .unwrap();
    let second = acme
        .publish_keyed(serde_json::json!({"a": 1}), Some("order-1"))
        .await
        .unwrap();
    assert!(!first.repeated && second.repeated);
    // What the first publish returned is what was stored, to the microsecond.
    assert_eq!(first.message, second.message);
    assert_eq!(second.deliveries, 0);

    let conflict = acme
        .publish_keyed(serde_json::json!({"a": 2}), Some("order-1"))
        .await;
    assert!(
        matches!(conflict, Err(WebhookError::Conflict(_))),
        "{conflict:?}"
    );
    let rows = delivery::Entity::find().all(&db).await.unwrap();
    assert_eq!(rows.len(), 1, "one message, one delivery");

    // Retries racing each other: one stores the message, the others get it back.
    let racing = futures_util::future::join_all(
        (0..8).map(|_| acme.publish_keyed(serde_json::json!({"b": 1}), Some("order-2"))),
    )
    .await;
    let racing: Vec<Published> = racing.into_iter().map(Result::unwrap).collect();
    assert_eq!(racing.iter().filter(|p| !p.repeated).count(), 1);
    assert!(racing.iter().all(|p| p.message.id == racing[0].message.id));
    let rows = delivery::Entity::find().all(&db).await.unwrap();
    assert_eq!(rows.len(), 2, "the racing retries made one delivery");
}

async fn bad_input_is_refused_and_stores_nothing(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    acme.endpoint(&receiver.url()).await;

    let unknown = publish::publish(
        &db,
        &acme.id,
        PublishEvent {
            event_type: "invoice.unknown".into(),
            payload: serde_json::json!({}),
            channels: vec![],
            idempotency_key: None,
            traceparent: None,
        },
        DEFAULT_MAX_PAYLOAD_BYTES,
    )
    .await;
    assert!(
        matches!(&unknown, Err(WebhookError::BadInput(m)) if m.contains("unknown event type")),
        "{unknown:?}"
    );

    let big = serde_json::json!({"blob": "x".repeat(300 * 1024)});
    let oversized = acme.publish_keyed(big, None).await;
    assert!(
        matches!(&oversized, Err(WebhookError::BadInput(m)) if m.contains("limit")),
        "{oversized:?}"
    );

    let bad_url =
        endpoints::create(&db, &loopback(), &acme.id, NewEndpoint::new("not a url")).await;
    assert!(matches!(bad_url, Err(WebhookError::BadInput(_))));
    let mut reserved = NewEndpoint::new(receiver.url());
    reserved
        .headers
        .insert("webhook-signature".into(), "forged".into());
    assert!(matches!(
        endpoints::create(&db, &loopback(), &acme.id, reserved).await,
        Err(WebhookError::BadInput(_))
    ));

    assert!(
        junction_schema::entities::message::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(delivery::Entity::find().all(&db).await.unwrap().is_empty());
    assert_eq!(endpoint::Entity::find().all(&db).await.unwrap().len(), 1);
}

async fn rotated_secrets_both_sign_during_the_grace_period(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    let created = acme.endpoint(&receiver.url()).await;
    let rotated = endpoints::rotate_secret(
        &db,
        &acme.id,
        &created.endpoint.id,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_ne!(rotated.verification_key, created.verification_key);
    acme.publish(serde_json::json!({})).await;

    let running = Running::start(&db, config(&[50]));
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    assert!(
        verify_v1(&created.verification_key, &request),
        "old secret still verifies"
    );
    assert!(
        verify_v1(&rotated.verification_key, &request),
        "new secret verifies"
    );

    // A rotation with no grace period drops the previous secret at once; the first secret
    // keeps the hour of grace it was given.
    let newest = endpoints::rotate_secret(&db, &acme.id, &created.endpoint.id, Duration::ZERO)
        .await
        .unwrap();
    acme.publish(serde_json::json!({})).await;
    let request = receiver.wait_for(2, WAIT).await.remove(1);
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    assert!(verify_v1(&newest.verification_key, &request));
    assert!(verify_v1(&created.verification_key, &request));
    assert!(!verify_v1(&rotated.verification_key, &request));
    running.stop().await;
}

async fn private_addresses_are_refused_at_creation_and_at_delivery(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    let strict = AddressPolicy::default();
    for url in [
        receiver.url(),
        "http://localhost/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]/".to_owned(),
        // IPv4 inside IPv6 (compatible, NAT64, 6to4) and the registries' other rows.
        "http://[::127.0.0.1]/".to_owned(),
        "http://[::7f00:1]/".to_owned(),
        "http://[64:ff9b::7f00:1]/".to_owned(),
        "http://[2002:7f00:1::1]/".to_owned(),
        "http://[fec0::1]/".to_owned(),
        "http://192.0.0.8/".to_owned(),
        "http://198.18.0.1/".to_owned(),
    ] {
        let refused =
            endpoints::create(&db, &strict, &acme.id, NewEndpoint::new(url.clone())).await;
        assert!(
            matches!(&refused, Err(WebhookError::BadInput(m)) if m.contains("may not reach")),
            "{url}: {refused:?}"
        );
    }

    // Endpoints allowed when created (say, the allow-list changed since) are still refused
    // by a dispatcher whose policy forbids them, and nothing reaches the receiver: one named
    // by its address, checked before any request, and one by a host name, checked on what
    // the name resolves to as the connection is made.
    acme.endpoint(&receiver.url()).await;
    let by_name = receiver.url().replace("127.0.0.1", "localhost");
    acme.endpoint(&by_name).await;
    // The receiver's address as NAT64 writes it: refused when connecting too.
    let nat64 = receiver.url().replace("127.0.0.1", "[64:ff9b::7f00:1]");
    let translators = AddressPolicy::new(vec!["64:ff9b::/96".parse().unwrap()]);
    endpoints::create(&db, &translators, &acme.id, NewEndpoint::new(nat64))
        .await
        .unwrap();
    let published = acme.publish(serde_json::json!({})).await;
    let running = Running::start(
        &db,
        DispatcherConfig {
            allowed_networks: vec![],
            ..config(&[])
        },
    );
    let deadline = std::time::Instant::now() + WAIT;
    let deliveries = loop {
        let deliveries = delivery::Entity::find()
            .filter(delivery::Column::MessageId.eq(published.message.id.as_str()))
            .all(&db)
            .await
            .unwrap();
        if deliveries.iter().all(|d| d.status == delivery::DEAD) {
            break deliveries;
        }
        assert!(std::time::Instant::now() < deadline, "{deliveries:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(deliveries.len(), 3);
    for delivery in deliveries {
        let recorded = attempts(&db, &delivery.id).await;
        assert_eq!(
            recorded[0].error_kind.as_deref(),
            Some("ssrf"),
            "{recorded:?}"
        );
    }
    assert!(receiver.requests().is_empty());
    running.stop().await;
}

async fn tenants_cannot_reach_each_others_endpoints(db: TestDatabase) {
    let db = db.migrated().await;
    let a = tenant(&db, "tenant-a").await;
    let b = tenant(&db, "tenant-b").await;
    let receiver = Receiver::ok().await;
    let a_endpoint = a.endpoint(&receiver.url()).await;

    // B publishing reaches none of A's endpoints.
    let published = b.publish(serde_json::json!({"from": "b"})).await;
    assert_eq!(published.deliveries, 0);
    // B can neither read, rotate nor disable A's endpoint.
    let id = &a_endpoint.endpoint.id;
    assert!(matches!(
        endpoints::get(&db, &b.id, id).await,
        Err(WebhookError::NotFound(_))
    ));
    assert!(matches!(
        endpoints::rotate_secret(&db, &b.id, id, Duration::ZERO).await,
        Err(WebhookError::NotFound(_))
    ));
    assert!(matches!(
        endpoints::set_enabled(&db, &b.id, id, false, None).await,
        Err(WebhookError::NotFound(_))
    ));
    // B cannot replay A's message.
    let a_message = a.publish(serde_json::json!({})).await;
    assert_eq!(
        replay::replay_message(&db, &b.id, &a_message.message.id)
            .await
            .unwrap(),
        0
    );
    assert!(endpoints::get(&db, &a.id, id).await.unwrap().enabled);
}

async fn stats_match_a_scripted_history_exactly(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    let created = acme.endpoint(&receiver.url()).await;
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let running = Running::start(&db, config(&[50]));

    // First message: delivered at once.
    let first = acme.publish(serde_json::json!({"n": 1})).await;
    wait_for_status(&db, &first.message.id, delivery::SUCCEEDED).await;
    // Second: one failure, then delivered.
    receiver.answer_from_now_on(Answer::Status(500));
    let second = acme.publish(serde_json::json!({"n": 2})).await;
    receiver.wait_for(2, WAIT).await;
    receiver.answer_from_now_on(Answer::Status(200));
    wait_for_status(&db, &second.message.id, delivery::SUCCEEDED).await;
    // Third: fails twice and is dead-lettered.
    receiver.answer_from_now_on(Answer::Status(503));
    let third = acme.publish(serde_json::json!({"n": 3})).await;
    wait_for_status(&db, &third.message.id, delivery::DEAD).await;
    running.stop().await;

    let stats = junction_deliveries::stats::delivery_stats(
        &db,
        &acme.id,
        Some(&created.endpoint.id),
        since,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            stats.deliveries,
            stats.delivered,
            stats.dead_lettered,
            stats.attempts,
            stats.failed_attempts
        ),
        (3, 2, 1, 5, 3)
    );
    assert_eq!(
        stats.retry_depth,
        [1, 1],
        "one delivered at the first attempt, one at the second"
    );
    assert!((stats.success_rate() - 2.0 / 3.0).abs() < 1e-9);
    // The percentiles are those of the five recorded durations, read one by one.
    let mut durations: Vec<i64> = delivery_attempt::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|attempt| attempt.duration_ms)
        .collect();
    durations.sort_unstable();
    let rank = |p: f64| durations[(4.0 * p).round() as usize];
    assert_eq!(stats.latency_ms, Some([rank(0.5), rank(0.95), rank(0.99)]));
    // Another tenant's view of the same endpoint id is empty.
    let other = tenant(&db, "other").await;
    let none = junction_deliveries::stats::delivery_stats(
        &db,
        &other.id,
        Some(&created.endpoint.id),
        since,
    )
    .await
    .unwrap();
    assert_eq!(none.deliveries, 0);
}

async fn retention_removes_old_history_but_keeps_what_is_still_delivering(db: TestDatabase) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel, PaginatorTrait};

    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    acme.endpoint(&receiver.url()).await;
    let mut old = Vec::new();
    for n in 0..5 {
        old.push(acme.publish(serde_json::json!({"old": n})).await.message.id);
    }
    let running = Running::start(&db, config(&[50]));
    for id in &old {
        wait_for_status(&db, id, delivery::SUCCEEDED).await;
    }
    running.stop().await;
    // A second message, never delivered (no dispatcher runs now): still pending.
    let pending = acme.publish(serde_json::json!({"pending": true})).await;

    // All are made 40 days old.
    let long_ago = chrono::Utc::now() - chrono::Duration::days(40);
    for id in old.iter().chain([&pending.message.id]) {
        let mut row = junction_schema::entities::message::Entity::find_by_id(id.clone())
            .one(&db)
            .await
            .unwrap()
            .unwrap()
            .into_active_model();
        row.created_at = Set(long_ago);
        row.update(&db).await.unwrap();
    }
    // All attempts but the first message's are made old too; that one is recent, as a
    // retry's would be, and goes with its old message.
    let first_delivery = delivery_of(&db, &old[0]).await.id;
    for attempt in delivery_attempt::Entity::find().all(&db).await.unwrap() {
        if attempt.delivery_id == first_delivery {
            continue;
        }
        let mut row = attempt.into_active_model();
        row.created_at = Set(long_ago);
        row.update(&db).await.unwrap();
    }

    let before = chrono::Utc::now() - chrono::Duration::days(30);
    // Two rows per statement: four old attempts and five messages take three rounds each.
    let removed = junction_deliveries::retention::cleanup(&db, before, 2)
        .await
        .unwrap();
    assert_eq!((removed.attempts, removed.messages), (5, 5));
    assert_eq!(
        delivery_attempt::Entity::find().count(&db).await.unwrap(),
        0,
        "no attempt outlives its message"
    );
    let left: Vec<String> = junction_schema::entities::message::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, vec![pending.message.id], "the pending message stays");
    assert_eq!(
        delivery::Entity::find().count(&db).await.unwrap(),
        1,
        "its delivery stays too"
    );
}

/// Deleting an endpoint takes its deliveries and their attempts with it, and leaves the
/// other endpoints' history as it was.
async fn deleting_an_endpoint_deletes_its_deliveries_and_attempts_only(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let receiver = Receiver::ok().await;
    let gone = acme.endpoint(&receiver.url()).await;
    let kept = acme.endpoint(&receiver.url()).await;
    for n in 0..3 {
        acme.publish(serde_json::json!({"n": n})).await;
    }
    let running = Running::start(&db, config(&[50]));
    let deadline = std::time::Instant::now() + WAIT;
    while delivery_attempt::Entity::find().count(&db).await.unwrap() < 6 {
        assert!(std::time::Instant::now() < deadline, "attempts missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;

    endpoints::delete(&db, &acme.id, &gone.endpoint.id)
        .await
        .unwrap();
    let of = |endpoint: &str| {
        let (db, endpoint) = (db.clone(), endpoint.to_owned());
        async move {
            let deliveries = delivery::Entity::find()
                .filter(delivery::Column::EndpointId.eq(endpoint.as_str()))
                .count(&db)
                .await
                .unwrap();
            let attempts = delivery_attempt::Entity::find()
                .filter(delivery_attempt::Column::EndpointId.eq(endpoint.as_str()))
                .count(&db)
                .await
                .unwrap();
            (deliveries, attempts)
        }
    };
    assert_eq!(of(&gone.endpoint.id).await, (0, 0));
    assert_eq!(of(&kept.endpoint.id).await, (3, 3));
    assert_eq!(
        junction_schema::entities::message::Entity::find()
            .count(&db)
            .await
            .unwrap(),
        3,
        "the messages stay for the other endpoint"
    );
}

/// A message for 1,100 endpoints is past what publishing writes in one statement (1,000
/// deliveries): it is written in several, in one transaction, and nothing is lost.
async fn a_message_to_more_endpoints_than_one_statement_takes_is_stored_whole(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    for n in 0..1_100 {
        acme.endpoint(&format!("http://127.0.0.1:9/hook/{n}")).await;
    }
    let published = acme.publish(serde_json::json!({"to": "everyone"})).await;
    assert_eq!(published.deliveries, 1_100);
    let stored = delivery::Entity::find()
        .filter(delivery::Column::MessageId.eq(published.message.id.as_str()))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(stored, 1_100);
    assert_eq!(
        junction_schema::entities::outbox::Entity::find()
            .count(&db)
            .await
            .unwrap(),
        1,
        "one outbox row names them all"
    );
}

/// A bulk replay is a job: it counts what it will do, re-queues in batches with its progress
/// recorded, and a job whose process died (its heartbeat stopped) is taken over and finished
/// by another, once.
async fn bulk_replays_run_in_batches_and_a_crashed_one_is_taken_over(db: TestDatabase) {
    let db = db.migrated().await;
    let acme = tenant(&db, "acme").await;
    let other = tenant(&db, "other").await;
    let receiver = Receiver::ok().await;
    acme.endpoint(&receiver.url()).await;
    other.endpoint(&receiver.url()).await;
    // Seven dead letters for acme, one for the other tenant (no dispatcher runs here).
    for n in 0..7 {
        acme.publish(serde_json::json!({"n": n})).await;
    }
    other.publish(serde_json::json!({"n": 0})).await;
    let bury = || async {
        delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(delivery::DEAD))
            .exec(&db)
            .await
            .unwrap();
    };
    bury().await;
    let all = replay::DeadLetterFilter::default();

    let job = replay::start_replay(&db, &acme.id, &all).await.unwrap();
    assert_eq!((job.total, job.requeued), (7, 0));
    assert_eq!(job.status, replay_job::RUNNING);
    let done = replay::run_replay(&db, job, 3).await.unwrap();
    assert_eq!((done.total, done.requeued), (7, 7));
    assert_eq!(done.status, replay_job::SUCCEEDED);
    assert!(done.finished_at.is_some());
    let pending = |tenant: String| {
        let db = db.clone();
        async move {
            delivery::Entity::find()
                .filter(delivery::Column::TenantId.eq(tenant))
                .filter(delivery::Column::Status.eq(delivery::PENDING))
                .count(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(pending(acme.id.clone()).await, 7);
    assert_eq!(
        pending(other.id.clone()).await,
        0,
        "only the caller's tenant"
    );

    // A job whose process died right after starting it: its heartbeat is old.
    bury().await;
    let abandoned = replay::start_replay(&db, &acme.id, &all).await.unwrap();
    let mut stale = abandoned.clone().into_active_model();
    stale.heartbeat_at = Set(chrono::Utc::now() - chrono::Duration::minutes(5));
    stale.update(&db).await.unwrap();
    // A fresh job is nobody's to take.
    let fresh = replay::start_replay(&db, &other.id, &all).await.unwrap();
    let resumed = replay::resume_abandoned(&db, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(resumed, 1);
    let finished = replay_job::Entity::find_by_id(abandoned.id.clone())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (finished.requeued, finished.status.as_str()),
        (7, replay_job::SUCCEEDED)
    );
    let untouched = replay_job::Entity::find_by_id(fresh.id.clone())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.status, replay_job::RUNNING);
    // Finished jobs are not taken again.
    assert_eq!(
        replay::resume_abandoned(&db, Duration::from_secs(60))
            .await
            .unwrap(),
        0
    );
}
