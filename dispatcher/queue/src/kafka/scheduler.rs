//! The retry scheduler: reads the retry tier topics and hands each record back to the
//! dispatch topic when it is due (or on to a shorter tier when it has longer to wait).
//!
//! Each partition is released in order from its head, which is always the next one due (see
//! `tiers.rs`). Records wait in memory per partition; a partition with many waiting is
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
use super::{
    Closing, Polled, SEND_TIMEOUT, Topics, backend, client_config, leave_group, lock, membership,
};
use crate::{QueueError, Task};

/// A partition holding this many waiting records is paused until it is down to half.
const PAUSE_AT: usize = 2_000;
/// A failed hand-back is tried again after this.
const RETRY_SEND_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Waiting {
    offset: i64,
    release_at: Instant,
    due_at: DateTime<Utc>,
    task: Task,
    traceparent: Option<String>,
}

/// What waits, per partition, and which partitions are paused. Shared with the rebalance
/// callback, which forgets a revoked partition at once: records read after it comes back
/// (from its last committed offset) must not be mixed with, or dropped along with, the old.
#[derive(Default)]
struct Buffers {
    waiting: HashMap<Partition, VecDeque<Waiting>>,
    paused: Vec<Partition>,
}

pub(super) struct Revoked {
    buffers: Arc<Mutex<Buffers>>,
}

impl ClientContext for Revoked {}

impl ConsumerContext for Revoked {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            tracing::info!(
                group = "retry",
                partitions = list.count(),
                "Kafka partitions revoked"
            );
            let mut buffers = lock(&self.buffers);
            for element in list.elements() {
                let partition = (element.topic().to_owned(), element.partition());
                buffers.waiting.remove(&partition);
                buffers.paused.retain(|p| p != &partition);
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        super::log_rebalance("retry", rebalance);
    }
}

pub struct Scheduler {
    consumer: Arc<Closing<StreamConsumer<Revoked>>>,
    buffers: Arc<Mutex<Buffers>>,
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
        let buffers = Arc::new(Mutex::new(Buffers::default()));
        let group = format!("{}.retry", config.group);
        let settings = membership(config, &group, ".retry");
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let consumer: StreamConsumer<Revoked> = client_config(config, &settings)
            .create_with_context(Revoked {
                buffers: Arc::clone(&buffers),
            })
            .map_err(|e| backend("cannot create the retry scheduler's consumer", e))?;
        let retry: Vec<&str> = topics.retry.iter().map(String::as_str).collect();
        consumer
            .subscribe(&retry)
            .map_err(|e| backend("cannot subscribe to the retry topics", e))?;
        Ok(Self {
            consumer: Arc::new(Closing::new(consumer)),
            buffers,
            producer,
            topics: topics.clone(),
            tiers: tiers.clone(),
        })
    }

    /// The retry group's consumer, for its stall guard.
    pub(super) fn consumer(&self) -> Arc<Closing<StreamConsumer<Revoked>>> {
        Arc::clone(&self.consumer)
    }

    /// Leaves the retry consumer group; the run loop goes on polling meanwhile, which serves
    /// the rebalance.
    pub async fn leave(&self, limit: Duration) -> Result<(), String> {
        leave_group(&self.consumer, Polled::Elsewhere, limit).await
    }

    /// Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next = lock(&self.buffers)
                .waiting
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
                    Ok(message) => self.take(&message),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the retry topics; retrying");
                        tokio::time::sleep(RETRY_SEND_AFTER).await;
                    }
                },
                () = sleep => self.release().await,
            }
        }
    }

    /// Buffers a record read from a tier; pauses its partition when too many wait.
    fn take(&self, message: &rdkafka::message::BorrowedMessage<'_>) {
        let partition = (message.topic().to_owned(), message.partition());
        let offset = message.offset();
        match self.waiting(message) {
            Ok(entry) => {
                let mut buffers = lock(&self.buffers);
                let queue = buffers.waiting.entry(partition.clone()).or_default();
                queue.push_back(entry);
                if queue.len() >= PAUSE_AT && !buffers.paused.contains(&partition) {
                    self.pause(&partition, true);
                    buffers.paused.push(partition);
                }
            }
            Err(why) => {
                tracing::error!(topic = %partition.0, offset, %why, "skipping a retry record that is not a task");
                self.store(&partition, offset);
            }
        }
    }

    /// Hands back every record whose time has come, each partition in order.
    async fn release(&self) {
        loop {
            let now = Instant::now();
            let due: Vec<(Partition, Waiting)> = lock(&self.buffers)
                .waiting
                .iter()
                .filter_map(|(partition, queue)| {
                    queue
                        .front()
                        .filter(|w| w.release_at <= now)
                        .map(|w| (partition.clone(), w.clone()))
                })
                .collect();
            if due.is_empty() {
                return;
            }
            for (partition, head) in due {
                let sent = self.hand_back(&head).await;
                let mut buffers = lock(&self.buffers);
                let Some(queue) = buffers.waiting.get_mut(&partition) else {
                    continue; // revoked meanwhile: its new owner reads it again
                };
                if queue.front().map(|w| w.offset) != Some(head.offset) {
                    continue;
                }
                if sent {
                    queue.pop_front();
                    self.store(&partition, head.offset);
                } else if let Some(front) = queue.front_mut() {
                    front.release_at = Instant::now() + RETRY_SEND_AFTER;
                }
                let drained = queue.is_empty();
                let low = queue.len() <= PAUSE_AT / 2;
                if drained {
                    buffers.waiting.remove(&partition);
                }
                if low && buffers.paused.contains(&partition) {
                    self.pause(&partition, false);
                    buffers.paused.retain(|p| p != &partition);
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
