//! The Kafka backend: the queue on any Kafka-protocol cluster (Apache Kafka, Redpanda, a
//! managed service), through librdkafka.
//!
//! - `<prefix>.dispatch`, keyed by endpoint id: one endpoint's tasks keep their order on one
//!   partition; partitions spread over the dispatchers of the consumer group.
//! - `<prefix>.retry.<delay>`: a retry waits in a tier topic, released by the retry scheduler
//!   (`scheduler.rs`) when due, without blocking any other partition.
//! - `<prefix>.dead-letter`: exhausted deliveries, for audit; the database row (what replay
//!   reads) is marked dead as well.
//!
//! A record is leased to one worker at a time (a lease that runs out hands it out again), and
//! a partition's offset is committed only up to the oldest record not yet settled, and only
//! after the worker recorded the attempt: a crash repeats deliveries, never skips one. The
//! database mirrors every settlement, so a stale duplicate (an outbox relay or a rebalance
//! repeat) of a delivery already settled is dropped before it is attempted again.

mod config;
pub mod events;
mod leases;
mod records;
mod relay;
mod scheduler;
mod stalled_group;
mod tiers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use junction_schema::entities::{delivery, message};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
};

pub use config::KafkaConfig;
use leases::{Leases, Partition};
use records::{DUE_AT, QUEUED_AT, REASON};
pub use tiers::Tiers;

use super::{Queue, QueueError, Received, Task};
use crate::background::AbortOnDrop;
use crate::statement_shapes::{begin_key_lookups, padded};

/// How long a send may wait in the producer's queue before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends tasks to the dispatch topic, each with its message's trace context, and waits until
/// the cluster has them all.
pub(crate) async fn send_tasks(
    db: &impl ConnectionTrait,
    producer: &FutureProducer,
    topic: &str,
    tasks: &[Task],
) -> Result<(), QueueError> {
    let mut message_ids: Vec<&str> = tasks.iter().map(|t| t.message_id.as_str()).collect();
    message_ids.sort_unstable();
    message_ids.dedup();
    let traceparents: HashMap<String, Option<String>> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::Traceparent)
        .filter(message::Column::Id.is_in(padded(message_ids)))
        .into_tuple::<(String, Option<String>)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let payloads: Vec<Vec<u8>> = tasks.iter().map(records::encode).collect();
    let sends = tasks.iter().zip(&payloads).map(|(task, payload)| {
        let traceparent = traceparents.get(&task.message_id).cloned().flatten();
        let record = FutureRecord::to(topic)
            .key(&task.endpoint_id)
            .payload(payload)
            .headers(records::headers(task, traceparent.as_deref()));
        producer.send(record, SEND_TIMEOUT)
    });
    for sent in futures_util::future::join_all(sends).await {
        sent.map_err(|(e, _)| backend("cannot send a task to Kafka", e))?;
    }
    Ok(())
}

/// The names of Junction's topics under one prefix.
#[derive(Clone, Debug)]
pub struct Topics {
    pub dispatch: String,
    /// One per retry tier, in the tiers' order.
    pub retry: Vec<String>,
    pub dead_letter: String,
    pub events: String,
}

impl Topics {
    pub fn new(prefix: &str, tiers: &Tiers) -> Self {
        Self {
            dispatch: format!("{prefix}.dispatch"),
            retry: tiers
                .delays()
                .iter()
                .map(|d| format!("{prefix}.retry.{}", tiers::topic_suffix(*d)))
                .collect(),
            dead_letter: format!("{prefix}.dead-letter"),
            events: format!("{prefix}.delivery-events"),
        }
    }

    /// Every topic, dispatch first.
    pub fn all(&self) -> Vec<&str> {
        let mut all = vec![self.dispatch.as_str()];
        all.extend(self.retry.iter().map(String::as_str));
        all.push(&self.dead_letter);
        all.push(&self.events);
        all
    }
}

/// A client configuration: the cluster address, Junction's `settings`, then the operator's
/// pass-through properties, which win.
pub(crate) fn client_config(config: &KafkaConfig, settings: &[(&str, &str)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap_servers);
    for (key, value) in settings {
        client.set(*key, *value);
    }
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// The consumers that commit as they settle (dispatch, retry scheduler).
pub(crate) const COMMITTING_CONSUMER: &[(&str, &str)] = &[
    ("enable.auto.commit", "true"),
    ("auto.commit.interval.ms", "500"),
    // Offsets are stored by hand, only up to what is settled.
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
    // A fetch is answered within 50 ms even when little is there: latency over request
    // count (some brokers hold a fetch for the whole wait however much arrives).
    ("fetch.wait.max.ms", "50"),
    // Incremental rebalancing (KIP-429): a member joining or leaving moves only the
    // partitions that change hands; the others keep being consumed throughout, instead of the
    // whole group stopping for every change.
    ("partition.assignment.strategy", "cooperative-sticky"),
];

/// A committing consumer's settings for `group`, with static membership when the operator
/// named this process (`[queue.kafka] instance_id`): `<instance id><suffix>`, one per group.
pub(crate) fn membership(config: &KafkaConfig, group: &str, suffix: &str) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = COMMITTING_CONSUMER
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    settings.push(("group.id".into(), group.to_owned()));
    if let Some(id) = &config.instance_id {
        settings.push(("group.instance.id".into(), format!("{id}{suffix}")));
    }
    settings
}

fn backend(what: &str, error: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(format!("{what}: {error}"))
}

/// Makes sure the cluster answers and every topic exists: created when missing, with the
/// configured partitions and replication. Gives up with a clear error after
/// `connect_timeout`.
pub async fn prepare_topics(config: &KafkaConfig, topics: &Topics) -> Result<(), QueueError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config, &[])
        .create()
        .map_err(|e| backend("cannot create a Kafka admin client", e))?;
    let deadline = Instant::now() + config.connect_timeout;
    let mut tries = 0;
    loop {
        tries += 1;
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(5))
            .max(Duration::from_millis(100));
        let metadata = admin.inner().fetch_metadata(None, wait);
        match metadata {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(QueueError::Backend(format!(
                    "Kafka at {} is unreachable after {tries} tries over {:?}: {e}",
                    config.bootstrap_servers, config.connect_timeout
                )));
            }
            Err(e) => {
                tracing::warn!(servers = %config.bootstrap_servers, error = %e, "Kafka is not answering yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let new: Vec<NewTopic<'_>> = topics
        .all()
        .into_iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(config.connect_timeout));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| backend("cannot create Kafka topics", e))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(QueueError::Backend(format!(
                    "cannot create Kafka topic {topic}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Forgets the records of partitions a rebalance takes away: their new owner reads them from
/// the last committed offset, so nothing settled late by this process is lost.
struct Rebalances {
    leases: Arc<Mutex<Leases<Task>>>,
}

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked: Vec<Partition> = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(
                group = "dispatch",
                partitions = revoked.len(),
                "Kafka partitions revoked"
            );
            lock(&self.leases).revoke(&revoked);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        log_rebalance("dispatch", rebalance);
    }
}

/// Logs what a rebalance gave `group`'s consumer, or why it failed.
fn log_rebalance(group: &str, rebalance: &Rebalance<'_>) {
    match rebalance {
        Rebalance::Assign(list) => {
            tracing::info!(
                group,
                partitions = list.count(),
                "Kafka partitions assigned"
            );
        }
        Rebalance::Error(error) => tracing::warn!(group, %error, "Kafka rebalance failed"),
        Rebalance::Revoke(_) => {}
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A consumer closed on a thread of its own when dropped. Closing leaves the group and makes
/// the final commit, which waits on the broker (indefinitely, if a group join is under way on
/// some brokers); no async worker may wait on that. Offsets are committed every half second
/// anyway, so a close cut short by the process exiting repeats at most that much.
pub(crate) struct Closing<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Closing<T> {
    pub(crate) fn new(consumer: T) -> Self {
        Self(Some(consumer))
    }
}

impl<T: Send + 'static> std::ops::Deref for Closing<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for Closing<T> {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("kafka-close".into())
                .spawn(move || drop(consumer));
        }
    }
}

pub struct KafkaQueue {
    db: DatabaseConnection,
    producer: FutureProducer,
    consumer: Arc<Closing<StreamConsumer<Rebalances>>>,
    leases: Arc<Mutex<Leases<Task>>>,
    topics: Topics,
    tiers: Tiers,
    lease: Duration,
    poll_wait: Duration,
    relay_interval: Duration,
    scheduler: Arc<scheduler::Scheduler>,
    _scheduler_task: AbortOnDrop,
    relay: Mutex<Option<AbortOnDrop>>,
    /// Both groups' stall guards (see `stalled_group.rs`), stopped before leaving.
    stall_guards: Mutex<Vec<AbortOnDrop>>,
}

impl KafkaQueue {
    /// Connects, creates missing topics, joins the consumer group and starts the retry
    /// scheduler. `lease` is how long a worker holds a record; `poll_wait` how long
    /// `receive` waits for a first record.
    pub async fn connect(
        db: DatabaseConnection,
        config: &KafkaConfig,
        lease: Duration,
        poll_wait: Duration,
    ) -> Result<Self, QueueError> {
        config.validate().map_err(QueueError::Backend)?;
        let tiers = Tiers::new(config.retry_tiers.clone());
        let topics = Topics::new(&config.topic_prefix, &tiers);
        prepare_topics(config, &topics).await?;
        let producer = producer(config)?;
        let leases = Arc::new(Mutex::new(Leases::default()));
        let settings = membership(config, &config.group, "");
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let consumer: StreamConsumer<Rebalances> = client_config(config, &settings)
            .create_with_context(Rebalances {
                leases: Arc::clone(&leases),
            })
            .map_err(|e| backend("cannot create the Kafka consumer", e))?;
        consumer
            .subscribe(&[&topics.dispatch])
            .map_err(|e| backend("cannot subscribe to the dispatch topic", e))?;
        let scheduler = Arc::new(scheduler::Scheduler::new(
            config,
            &topics,
            &tiers,
            producer.clone(),
        )?);
        let scheduler_task = AbortOnDrop(tokio::spawn(Arc::clone(&scheduler).run()));
        let consumer = Arc::new(Closing::new(consumer));
        let stall_guards = vec![
            AbortOnDrop(tokio::spawn(stalled_group::watch(
                Arc::clone(&consumer),
                // A held record is settled, or handed out again, within its lease.
                vec![(topics.dispatch.clone(), lease)],
                "dispatch",
            ))),
            AbortOnDrop(tokio::spawn(stalled_group::watch(
                scheduler.consumer(),
                topics
                    .retry
                    .iter()
                    .cloned()
                    .zip(tiers.delays().iter().copied())
                    .collect(),
                "retry",
            ))),
        ];
        Ok(Self {
            db,
            producer,
            consumer,
            leases,
            topics,
            tiers,
            lease,
            poll_wait,
            relay_interval: config.relay_interval,
            scheduler,
            _scheduler_task: scheduler_task,
            relay: Mutex::new(None),
            stall_guards: Mutex::new(stall_guards),
        })
    }

    /// Also runs the outbox relay, which sends deliveries written to the database (by
    /// `publishEvent`, or a replay) to Kafka. Every dispatcher runs one.
    pub fn with_relay(self) -> Self {
        let relay = relay::Relay {
            db: self.db.clone(),
            producer: self.producer.clone(),
            topic: self.topics.dispatch.clone(),
            interval: self.relay_interval,
        };
        *lock(&self.relay) = Some(AbortOnDrop(tokio::spawn(relay.run())));
        self
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Publishes the dispatcher's delivery events to the events topic; run it as a task.
    pub fn publish_events(
        &self,
        events: tokio::sync::mpsc::Receiver<junction_schema::envelope::DeliveryEvent>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        events::publish(events, self.producer.clone(), self.topics.events.clone())
    }

    /// The receipt of a record: partition, offset and lease generation.
    fn receipt(partition: i32, offset: i64, generation: u32) -> String {
        format!("{partition}:{offset}:{generation}")
    }

    fn parse_receipt(receipt: &str) -> Result<(i32, i64, u32), QueueError> {
        let mut parts = receipt.split(':');
        let parsed = (|| {
            Some((
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
            ))
        })();
        parsed.ok_or_else(|| QueueError::Backend(format!("not a Kafka receipt: {receipt:?}")))
    }

    /// Whether `received` still holds its record: a stale receipt (its lease ran out and the
    /// record went to another worker, or its partition to another dispatcher) settles nothing.
    fn holds(&self, received: &Received) -> Result<bool, QueueError> {
        let (partition, offset, generation) = Self::parse_receipt(&received.receipt)?;
        let key = (self.topics.dispatch.clone(), partition);
        Ok(lock(&self.leases).is_current(&key, offset, generation))
    }

    /// Settles the record behind `received`, committing as far as its partition allows.
    fn settle(&self, received: &Received) -> Result<(), QueueError> {
        let (partition, offset, generation) = Self::parse_receipt(&received.receipt)?;
        let key = (self.topics.dispatch.clone(), partition);
        let commit = lock(&self.leases).settle(&key, offset, generation);
        if let Ok(Some(next)) = commit {
            // librdkafka commits the stored offset + 1.
            if let Err(e) = self
                .consumer
                .store_offset(&self.topics.dispatch, partition, next - 1)
            {
                // The partition moved to another dispatcher; it re-reads from its commit.
                tracing::debug!(partition, error = %e, "cannot store an offset");
            }
        }
        Ok(())
    }

    /// Reads records for at most `wait`, then what is ready at once, up to `max`; held under
    /// fresh leases.
    async fn read(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let mut fresh = Vec::new();
        let first = tokio::time::timeout(wait, self.consumer.recv()).await;
        let mut next = match first {
            Err(_) => return Ok(fresh),
            Ok(next) => Some(next),
        };
        while let Some(message) = next.take() {
            let message = message.map_err(|e| backend("cannot read from Kafka", e))?;
            let (partition, offset) = (message.partition(), message.offset());
            let key = (message.topic().to_owned(), partition);
            let until = Instant::now() + self.lease;
            match records::decode(&message) {
                Ok(decoded) => {
                    let generation =
                        lock(&self.leases).hold(key, offset, decoded.task.clone(), until);
                    fresh.push(Received::new(
                        decoded.task,
                        Self::receipt(partition, offset, generation),
                    ));
                }
                Err(why) => {
                    // Not ours to deliver: skip it rather than block the partition.
                    tracing::error!(partition, offset, %why, "skipping a record that is not a task");
                    let generation = lock(&self.leases).hold(key, offset, Task::default(), until);
                    let skipped = Received::new(
                        Task::default(),
                        Self::receipt(partition, offset, generation),
                    );
                    drop(message);
                    self.settle(&skipped)?;
                }
            }
            if fresh.len() >= max {
                break;
            }
            next = self.consumer.recv().now_or_never();
        }
        Ok(fresh)
    }

    /// Drops records whose delivery is settled already (or gone) and refreshes the attempt
    /// count of the others from the database.
    async fn current(&self, received: Vec<Received>) -> Result<Vec<Received>, QueueError> {
        if received.is_empty() {
            return Ok(received);
        }
        let ids: Vec<&str> = received
            .iter()
            .map(|r| r.task.delivery_id.as_str())
            .collect();
        let txn = begin_key_lookups(&self.db).await?;
        let rows: Vec<(String, String, i32)> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::Id)
            .column(delivery::Column::Status)
            .column(delivery::Column::Attempts)
            .filter(delivery::Column::Id.is_in(padded(ids)))
            .into_tuple()
            .all(&txn)
            .await?;
        txn.commit().await?;
        let rows: std::collections::HashMap<String, (String, i32)> = rows
            .into_iter()
            .map(|(id, status, attempts)| (id, (status, attempts)))
            .collect();
        let mut current = Vec::with_capacity(received.len());
        let mut taken = std::collections::HashSet::new();
        for mut one in received {
            if !taken.insert(one.task.delivery_id.clone()) {
                // The same delivery twice in one batch (a hand-back and a repeat after a
                // crash, say): one copy is enough.
                self.settle(&one)?;
                continue;
            }
            match rows.get(&one.task.delivery_id) {
                Some((status, attempts)) if status == delivery::PENDING => {
                    one.task.attempts = *attempts;
                    current.push(one);
                }
                _ => {
                    tracing::debug!(delivery = %one.task.delivery_id, "dropping a record of a settled delivery");
                    self.settle(&one)?;
                }
            }
        }
        Ok(current)
    }

    /// Writes a settlement to the delivery's row, unless the worker already did with the
    /// attempt.
    async fn mirror(
        &self,
        received: &Received,
        changes: Vec<(delivery::Column, Expr)>,
    ) -> Result<(), QueueError> {
        if received.state_recorded {
            return Ok(());
        }
        let mut update = delivery::Entity::update_many();
        for (column, value) in changes {
            update = update.col_expr(column, value);
        }
        update
            .col_expr(delivery::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(delivery::Column::Id.eq(&received.task.delivery_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

fn producer(config: &KafkaConfig) -> Result<FutureProducer, QueueError> {
    client_config(
        config,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "2"),
            ("message.timeout.ms", "30000"),
        ],
    )
    .create()
    .map_err(|e| backend("cannot create the Kafka producer", e))
}

#[async_trait]
impl Queue for KafkaQueue {
    /// Marks the deliveries due in the database mirror, then sends them, with their
    /// messages' trace context, to the dispatch topic.
    async fn publish(&self, tasks: &[Task]) -> Result<(), QueueError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let ids: Vec<&str> = tasks.iter().map(|t| t.delivery_id.as_str()).collect();
        delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(delivery::PENDING))
            .col_expr(delivery::Column::NextAttemptAt, Expr::value(now))
            .col_expr(
                delivery::Column::DeadAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
            .filter(delivery::Column::Id.is_in(ids))
            .exec(&self.db)
            .await?;
        send_tasks(&self.db, &self.producer, &self.topics.dispatch, tasks).await
    }

    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        let now = Instant::now();
        let mut out: Vec<Received> = lock(&self.leases)
            .expired(now, now + self.lease, max)
            .into_iter()
            .map(|((_, partition), offset, generation, task)| {
                Received::new(task, Self::receipt(partition, offset, generation))
            })
            .collect();
        if out.len() < max {
            let wait = if out.is_empty() {
                self.poll_wait
            } else {
                Duration::ZERO
            };
            let fresh = self.read(max - out.len(), wait).await?;
            out.extend(self.current(fresh).await?);
        }
        Ok(out)
    }

    async fn ack(&self, received: &Received) -> Result<(), QueueError> {
        if !self.holds(received)? {
            return Ok(());
        }
        self.mirror(
            received,
            vec![
                (delivery::Column::Status, Expr::value(delivery::SUCCEEDED)),
                (
                    delivery::Column::DeliveredAt,
                    Expr::col(delivery::Column::DeliveredAt).if_null(Utc::now()),
                ),
            ],
        )
        .await?;
        self.settle(received)
    }

    async fn retry_at(&self, received: &Received, at: DateTime<Utc>) -> Result<(), QueueError> {
        if !self.holds(received)? {
            return Ok(());
        }
        let task = &received.task;
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        let tier = self.tiers.for_wait(wait);
        let payload = records::encode(task);
        let due = records::millis(at);
        let queued = records::millis(Utc::now());
        let headers = records::headers(task, None)
            .insert(records::header(DUE_AT, &due))
            .insert(records::header(QUEUED_AT, &queued));
        let record = FutureRecord::to(&self.topics.retry[tier])
            .key(&task.endpoint_id)
            .payload(&payload)
            .headers(headers);
        self.producer
            .send(record, SEND_TIMEOUT)
            .await
            .map_err(|(e, _)| backend("cannot send a retry to Kafka", e))?;
        self.mirror(
            received,
            vec![(delivery::Column::NextAttemptAt, Expr::value(at))],
        )
        .await?;
        self.settle(received)
    }

    async fn dead_letter(&self, received: &Received, reason: &str) -> Result<(), QueueError> {
        if !self.holds(received)? {
            return Ok(());
        }
        let task = &received.task;
        let payload = records::encode(task);
        let headers = records::headers(task, None).insert(records::header(REASON, reason));
        let record = FutureRecord::to(&self.topics.dead_letter)
            .key(&task.endpoint_id)
            .payload(&payload)
            .headers(headers);
        self.producer
            .send(record, SEND_TIMEOUT)
            .await
            .map_err(|(e, _)| backend("cannot send a dead letter to Kafka", e))?;
        self.mirror(
            received,
            vec![
                (delivery::Column::Status, Expr::value(delivery::DEAD)),
                (delivery::Column::DeadAt, Expr::value(Utc::now())),
                (delivery::Column::LastError, Expr::value(reason.to_owned())),
            ],
        )
        .await?;
        self.settle(received)
    }

    /// Stops relaying and leaves both consumer groups, so the other dispatchers take over
    /// this one's partitions at once. Records read and not settled are read again by them.
    async fn close(&self) {
        drop(lock(&self.relay).take());
        // A guard must not rejoin a group this consumer is leaving.
        lock(&self.stall_guards).clear();
        if let Err(e) = leave_group(&self.consumer, Polled::Here, LEAVE_TIMEOUT).await {
            tracing::warn!(error = %e, "cannot leave the dispatch consumer group cleanly");
        }
        if let Err(e) = self.scheduler.leave(LEAVE_TIMEOUT).await {
            tracing::warn!(error = %e, "cannot leave the retry consumer group cleanly");
        }
    }
}

/// How long a stopping dispatcher waits to leave its consumer groups.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who polls a consumer while it leaves its group: one that is not polled cannot give its
/// partitions up.
pub(crate) enum Polled {
    /// Nobody else: leaving reads on (and discards: nothing read now is stored).
    Here,
    /// A task of its own goes on polling it.
    Elsewhere,
}

/// Leaves a consumer group: unsubscribes, then waits until the assignment is empty.
pub(crate) async fn leave_group<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    polled: Polled,
    limit: Duration,
) -> Result<(), String> {
    consumer.unsubscribe();
    let deadline = Instant::now() + limit;
    loop {
        // The list is dropped at once: librdkafka hangs on close while one is alive.
        let assigned = consumer.assignment().map(|list| list.count()).unwrap_or(0);
        if assigned == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{assigned} partition(s) still assigned after {limit:?}"
            ));
        }
        match polled {
            Polled::Here => {
                let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
            }
            Polled::Elsewhere => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_garbage_is_refused() {
        let receipt = KafkaQueue::receipt(3, 42, 1);
        assert_eq!(KafkaQueue::parse_receipt(&receipt).unwrap(), (3, 42, 1));
        assert!(KafkaQueue::parse_receipt("lease-token").is_err());
    }

    #[test]
    fn topics_are_named_under_the_prefix() {
        let tiers = Tiers::new(vec![Duration::from_secs(5), Duration::from_secs(60)]);
        let topics = Topics::new("acme", &tiers);
        assert_eq!(
            topics.all(),
            [
                "acme.dispatch",
                "acme.retry.5s",
                "acme.retry.1m",
                "acme.dead-letter",
                "acme.delivery-events"
            ]
        );
    }
}
