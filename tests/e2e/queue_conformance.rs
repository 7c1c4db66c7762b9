//! What every `Queue` backend must do, as one suite: a backend passes it or is not a queue
//! Junction can deliver from. The same functions run against the embedded queue on SQLite and
//! PostgreSQL, and against the Kafka backend on a real Kafka-protocol broker (Tansu).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use junction_queue::Received;
use junction_queue::{EmbeddedQueue, KafkaQueue, Queue, Task};
use junction_schema::entities::delivery;
use junction_schema::tenants;
use junction_schema::webhook_url::AddressPolicy;
use junction_webhooks::endpoints::{self, NewEndpoint};
use junction_webhooks::event_types::{self, NewEventType};
use junction_webhooks::publish::{self, PublishEvent};
use sea_orm::{DatabaseConnection, EntityTrait};
use support::TestDatabase;

const LEASE: Duration = Duration::from_millis(600);

/// Publishes `count` messages to one endpoint; returns their delivery tasks.
async fn tasks(db: &DatabaseConnection, count: usize) -> Vec<Task> {
    let tenant = tenants::create(db, "queue").await.unwrap();
    event_types::create(
        db,
        &tenant.id,
        NewEventType {
            name: "queue.test".into(),
            description: String::new(),
            schema: None,
        },
    )
    .await
    .unwrap();
    let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    endpoints::create(
        db,
        &policy,
        &tenant.id,
        NewEndpoint::new("http://127.0.0.1:9/hook"),
    )
    .await
    .unwrap();
    for n in 0..count {
        publish::publish(
            db,
            &tenant.id,
            PublishEvent {
                event_type: "queue.test".into(),
                payload: serde_json::json!({"n": n}),
                channels: vec![],
                idempotency_key: None,
                traceparent: None,
            },
            1 << 20,
        )
        .await
        .unwrap();
    }
    delivery::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(Task::from)
        .collect()
}

fn ids(received: &[Received]) -> Vec<String> {
    let mut ids: Vec<String> = received
        .iter()
        .map(|r| r.task.delivery_id.clone())
        .collect();
    ids.sort();
    ids
}

/// Receives until `n` tasks are in hand (a backend may hand them out over several calls,
/// as a Kafka consumer does while it joins its group and fetches partition by partition).
async fn take(queue: &Arc<dyn Queue>, n: usize) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut taken: Vec<Received> = Vec::new();
    while taken.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} tasks received",
            taken.len()
        );
        let batch = queue.receive(n - taken.len()).await.unwrap();
        assert!(batch.len() <= n - taken.len(), "more than asked for");
        taken.extend(batch);
    }
    taken
}

/// Nothing is handed out for a while (longer than any backend's first wait).
async fn nothing_due(queue: &Arc<dyn Queue>) {
    for _ in 0..3 {
        let batch = queue.receive(10).await.unwrap();
        assert!(batch.is_empty(), "unexpected: {:?}", ids(&batch));
    }
}

/// A received task is hidden from other receivers until settled or until its lease ends.
async fn leases_hide_tasks_until_they_expire(queue: Arc<dyn Queue>, tasks: Vec<Task>) {
    let first = take(&queue, tasks.len()).await;
    nothing_due(&queue).await;
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    let again = take(&queue, tasks.len()).await;
    assert_eq!(
        ids(&again),
        ids(&first),
        "an expired lease hands the task out again"
    );
    // The old receipt no longer settles it: the new holder owns it.
    queue.ack(&first[0]).await.unwrap();
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    assert_eq!(take(&queue, tasks.len()).await.len(), tasks.len());
}

/// `receive(max)` hands out at most `max`, and every task exactly once per lease.
async fn batches_respect_their_size(queue: Arc<dyn Queue>, tasks: Vec<Task>) {
    let mut all: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while all.len() < tasks.len() {
        assert!(tokio::time::Instant::now() < deadline, "tasks missing");
        let batch = queue.receive(2).await.unwrap();
        assert!(batch.len() <= 2, "a batch of {} for max 2", batch.len());
        all.extend(ids(&batch));
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), tasks.len(), "no task handed out twice");
    nothing_due(&queue).await;
}

/// Acknowledged tasks never come back; dead-lettered ones come back only when replayed.
async fn settled_tasks_stay_settled(queue: Arc<dyn Queue>, tasks: Vec<Task>) {
    let received = take(&queue, tasks.len()).await;
    queue.ack(&received[0]).await.unwrap();
    queue
        .dead_letter(&received[1], "retries exhausted")
        .await
        .unwrap();
    queue
        .retry_at(&received[2], Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    for rest in &received[3..] {
        queue.retry_at(rest, Utc::now()).await.unwrap();
    }
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    let due = take(&queue, tasks.len() - 3).await;
    let mut expected: Vec<String> = received[3..]
        .iter()
        .map(|r| r.task.delivery_id.clone())
        .collect();
    expected.sort();
    assert_eq!(
        ids(&due),
        expected,
        "acked, dead-lettered and later-retried tasks wait"
    );
    for one in &due {
        queue.ack(one).await.unwrap();
    }
    nothing_due(&queue).await;

    // Replaying the dead letter makes it due again, under the same id.
    queue
        .publish(std::slice::from_ref(&received[1].task))
        .await
        .unwrap();
    let replayed = take(&queue, 1).await;
    assert_eq!(ids(&replayed), vec![received[1].task.delivery_id.clone()]);
}

/// A task retried for a later time is not handed out before it.
async fn retries_wait_for_their_time(queue: Arc<dyn Queue>, _tasks: Vec<Task>) {
    let received = take(&queue, 1).await;
    let at = Utc::now() + chrono::Duration::milliseconds(700);
    queue.retry_at(&received[0], at).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry never came"
        );
        let due = queue.receive(10).await.unwrap();
        if due
            .iter()
            .any(|r| r.task.delivery_id == received[0].task.delivery_id)
        {
            assert!(Utc::now() >= at, "handed out before its time");
            break;
        }
        for other in &due {
            queue.ack(other).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

macro_rules! embedded_conformance {
    ($($case:ident),* $(,)?) => {
        $(
            async fn $case(db: TestDatabase) {
                let db = db.migrated().await;
                let tasks = tasks(&db, 6).await;
                let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::new(db.clone(), LEASE));
                super::$case(queue, tasks).await;
            }
        )*
        on_both_databases!($($case),*);
    };
}

mod embedded {
    use super::*;

    embedded_conformance!(
        leases_hide_tasks_until_they_expire,
        batches_respect_their_size,
        settled_tasks_stay_settled,
        retries_wait_for_their_time,
    );
}

/// The Kafka backend: topics and a consumer group of the test's own on one broker per test,
/// the database mirror on SQLite.
macro_rules! kafka_conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let broker = support::kafka::Broker::start();
                let db = TestDatabase::sqlite().await;
                let db = db.migrated().await;
                let tasks = tasks(&db, 6).await;
                let config = broker.config(stringify!($case));
                let queue = KafkaQueue::connect(db.clone(), &config, LEASE, Duration::from_millis(200))
                    .await
                    .expect("connects to the broker");
                queue.publish(&tasks).await.unwrap();
                let queue: Arc<dyn Queue> = Arc::new(queue);
                super::$case(queue, tasks).await;
            }
        )*
    };
}

mod kafka {
    use super::*;

    kafka_conformance!(
        leases_hide_tasks_until_they_expire,
        batches_respect_their_size,
        settled_tasks_stay_settled,
        retries_wait_for_their_time,
    );
}
