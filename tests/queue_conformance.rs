//! What every `Queue` backend must do, as one suite: a backend passes it or is not a queue
//! Junction can deliver from. Runs against the embedded queue on SQLite and PostgreSQL; the
//! Kafka backend runs the same functions.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use junction_dispatcher::queue::{EmbeddedQueue, Queue, Task};
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
        .map(|row| Task {
            delivery_id: row.id,
            tenant_id: row.tenant_id,
            message_id: row.message_id,
            endpoint_id: row.endpoint_id,
            attempts: row.attempts,
        })
        .collect()
}

fn ids(received: &[junction_dispatcher::Received]) -> Vec<String> {
    let mut ids: Vec<String> = received
        .iter()
        .map(|r| r.task.delivery_id.clone())
        .collect();
    ids.sort();
    ids
}

/// A received task is hidden from other receivers until settled or until its lease ends.
async fn leases_hide_tasks_until_they_expire(queue: Arc<dyn Queue>, tasks: Vec<Task>) {
    let first = queue.receive(10).await.unwrap();
    assert_eq!(first.len(), tasks.len());
    assert!(
        queue.receive(10).await.unwrap().is_empty(),
        "leased tasks are invisible"
    );
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    let again = queue.receive(10).await.unwrap();
    assert_eq!(
        ids(&again),
        ids(&first),
        "an expired lease hands the task out again"
    );
    // The old receipt no longer settles it: the new holder owns it.
    queue.ack(&first[0]).await.unwrap();
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    assert_eq!(queue.receive(10).await.unwrap().len(), tasks.len());
}

/// `receive(max)` hands out at most `max`, and every task exactly once per lease.
async fn batches_respect_their_size(queue: Arc<dyn Queue>, tasks: Vec<Task>) {
    let first = queue.receive(2).await.unwrap();
    let second = queue.receive(2).await.unwrap();
    let rest = queue.receive(10).await.unwrap();
    assert_eq!(
        (first.len(), second.len(), rest.len()),
        (2, 2, tasks.len() - 4)
    );
    let mut all = ids(&first);
    all.extend(ids(&second));
    all.extend(ids(&rest));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), tasks.len(), "no task handed out twice");
}

/// Acknowledged tasks never come back; dead-lettered ones come back only when replayed.
async fn settled_tasks_stay_settled(queue: Arc<dyn Queue>, tasks: Vec<Task>) {
    let received = queue.receive(10).await.unwrap();
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
    let due = queue.receive(10).await.unwrap();
    assert_eq!(
        due.len(),
        tasks.len() - 3,
        "acked, dead-lettered and later-retried tasks wait"
    );

    // Replaying the dead letter makes it due again, under the same id.
    queue
        .publish(std::slice::from_ref(&received[1].task))
        .await
        .unwrap();
    let replayed = queue.receive(10).await.unwrap();
    assert_eq!(ids(&replayed), vec![received[1].task.delivery_id.clone()]);
}

/// A task retried for a later time is not handed out before it.
async fn retries_wait_for_their_time(queue: Arc<dyn Queue>, _tasks: Vec<Task>) {
    let received = queue.receive(1).await.unwrap();
    let at = Utc::now() + chrono::Duration::milliseconds(700);
    queue.retry_at(&received[0], at).await.unwrap();
    loop {
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
