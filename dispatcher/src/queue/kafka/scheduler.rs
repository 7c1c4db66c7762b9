//! The retry scheduler: reads the retry tier topics and hands each record back to the
//! dispatch topic when it is due (or on to a shorter tier when it has longer to wait).
//!
//! Each partition is released in order from its head, which is always the next one due (see
//! [`super::tiers`]). Records wait in memory per partition; a partition with many waiting is
//! paused at the broker until it drains, so memory stays bounded and other partitions keep
//! moving. Offsets are stored only after the record is safely on its next topic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message, TopicPartitionList};
use tokio::time::Instant;

use super::config::KafkaConfig;
use super::leases::Partition;
use super::records::{self, DUE_AT, QUEUED_AT};
use super::tiers::Tiers;
use super::{Closing, SEND_TIMEOUT, Topics, backend, client_config, lock};
use crate::queue::{QueueError, Task};

/// A partition holding this many waiting records is paused until it is down to half.
const PAUSE_AT: usize = 2_000;
/// A failed hand-back is tried again after this.
const RETRY_SEND_AFTER: Duration = Duration::from_secs(1);

struct Waiting {
    offset: i64,
    release_at: Instant,
    due_at: DateTime<Utc>,
    task: Task,
    traceparent: Option<String>,
}

/// Partitions taken away by a rebalance, for the loop to forget.
#[derive(Default)]
struct Revoked {
    partitions: Arc<Mutex<Vec<Partition>>>,
}

impl ClientContext for Revoked {}

impl ConsumerContext for Revoked {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            lock(&self.partitions).extend(
                list.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition())),
            );
        }
    }
}

pub struct Scheduler {
    consumer: Closing<StreamConsumer<Revoked>>,
    revoked: Arc<Mutex<Vec<Partition>>>,
    producer: FutureProducer,
    topics: Topics,
    tiers: Tiers,
}

impl Scheduler {
    pub fn new(
        config: &KafkaConfig,
        topics: &Topics,
        tiers: &Tiers,
        producer: FutureProducer,
    ) -> Result<Self, QueueError> {
        let revoked = Revoked::default();
        let shared = Arc::clone(&revoked.partitions);
        let consumer: StreamConsumer<Revoked> = client_config(config)
            .set("group.id", format!("{}.retry", config.group))
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(revoked)
            .map_err(|e| backend("cannot create the retry scheduler's consumer", e))?;
        let retry: Vec<&str> = topics.retry.iter().map(String::as_str).collect();
        consumer
            .subscribe(&retry)
            .map_err(|e| backend("cannot subscribe to the retry topics", e))?;
        Ok(Self {
            consumer: Closing::new(consumer),
            revoked: shared,
            producer,
            topics: topics.clone(),
            tiers: tiers.clone(),
        })
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let mut waiting: HashMap<Partition, VecDeque<Waiting>> = HashMap::new();
        let mut paused: Vec<Partition> = Vec::new();
        loop {
            for gone in lock(&self.revoked).drain(..) {
                waiting.remove(&gone);
                paused.retain(|p| p != &gone);
            }
            let next = waiting
                .values()
                .filter_map(|queue| queue.front().map(|w| w.release_at))
                .min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        let partition = (message.topic().to_owned(), message.partition());
                        let offset = message.offset();
                        match self.waiting(&message) {
                            Ok(entry) => {
                                let queue = waiting.entry(partition.clone()).or_default();
                                queue.push_back(entry);
                                if queue.len() >= PAUSE_AT && !paused.contains(&partition) {
                                    self.pause(&partition, true);
                                    paused.push(partition);
                                }
                            }
                            Err(why) => {
                                tracing::error!(topic = %partition.0, offset, %why, "skipping a retry record that is not a task");
                                self.store(&partition, offset);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the retry topics; retrying");
                        tokio::time::sleep(RETRY_SEND_AFTER).await;
                    }
                },
                () = sleep => {
                    let now = Instant::now();
                    for (partition, queue) in &mut waiting {
                        while queue.front().is_some_and(|w| w.release_at <= now) {
                            let Some(head) = queue.front_mut() else { break };
                            if self.hand_back(head).await {
                                self.store(partition, head.offset);
                                queue.pop_front();
                            } else {
                                head.release_at = Instant::now() + RETRY_SEND_AFTER;
                                break;
                            }
                        }
                        if queue.len() <= PAUSE_AT / 2 && paused.contains(partition) {
                            self.pause(partition, false);
                            paused.retain(|p| p != partition);
                        }
                    }
                    waiting.retain(|_, queue| !queue.is_empty());
                }
            }
        }
    }

    /// When `message` may leave its tier: its due time, or its tier's delay after it was
    /// queued, whichever is first.
    fn waiting(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> Result<Waiting, String> {
        let decoded = records::decode(message)?;
        let due_at = decoded.due_at.ok_or("a retry without a due time")?;
        let tier = self
            .topics
            .retry
            .iter()
            .position(|t| t == message.topic())
            .unwrap_or(0);
        let queued_at = decoded.queued_at.unwrap_or(due_at);
        let tier_end =
            queued_at + chrono::Duration::from_std(self.tiers.delay(tier)).unwrap_or_default();
        let release = due_at.min(tier_end);
        let wait = (release - Utc::now()).to_std().unwrap_or_default();
        Ok(Waiting {
            offset: message.offset(),
            release_at: Instant::now() + wait,
            due_at,
            task: decoded.task,
            traceparent: decoded.traceparent,
        })
    }

    /// Sends a released record on: to dispatch when due, else to the tier for what is left.
    async fn hand_back(&self, waiting: &Waiting) -> bool {
        let task = &waiting.task;
        let payload = records::encode(task);
        let now = Utc::now();
        let headers = records::headers(task, waiting.traceparent.as_deref());
        let sent = if waiting.due_at <= now {
            let record = FutureRecord::to(&self.topics.dispatch)
                .key(&task.endpoint_id)
                .payload(&payload)
                .headers(headers);
            self.producer.send(record, SEND_TIMEOUT).await
        } else {
            let left = (waiting.due_at - now).to_std().unwrap_or_default();
            let tier = self.tiers.for_wait(left);
            let due = records::millis(waiting.due_at);
            let queued = records::millis(now);
            let record = FutureRecord::to(&self.topics.retry[tier])
                .key(&task.endpoint_id)
                .payload(&payload)
                .headers(
                    headers
                        .insert(records::header(DUE_AT, &due))
                        .insert(records::header(QUEUED_AT, &queued)),
                );
            self.producer.send(record, SEND_TIMEOUT).await
        };
        match sent {
            Ok(_) => true,
            Err((e, _)) => {
                tracing::warn!(delivery = %task.delivery_id, error = %e, "cannot hand a retry back; trying again");
                false
            }
        }
    }

    /// Marks `offset` done (librdkafka commits the stored offset + 1).
    fn store(&self, partition: &Partition, offset: i64) {
        if let Err(e) = self
            .consumer
            .store_offset(&partition.0, partition.1, offset)
        {
            tracing::debug!(topic = %partition.0, partition = partition.1, error = %e, "cannot store a retry offset");
        }
    }

    fn pause(&self, partition: &Partition, pause: bool) {
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.0, partition.1);
        let result = if pause {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        if let Err(e) = result {
            tracing::warn!(topic = %partition.0, partition = partition.1, pause, error = %e, "cannot pause or resume a retry partition");
        }
    }
}
