//! Delivery events on Kafka: every dispatcher publishes each recorded attempt to
//! `<prefix>.delivery-events`, and any deliveries subgraph replica streams them to its live
//! subscribers, wherever the attempt was made.
//!
//! Events are for watching, not for bookkeeping (the database has every attempt): a replica
//! reads from the end of each partition without a consumer group, and a publisher that falls
//! behind skips events rather than slow delivery down.

use std::time::Duration;

use junction_schema::envelope::DeliveryEvent;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::broadcast;

use super::{Closing, KafkaConfig, SEND_TIMEOUT, Tiers, Topics, backend, client_config};
use crate::queue::QueueError;

/// Events kept for subscribers that are a little behind.
const FEED_BUFFER: usize = 4096;

/// Publishes every event `events` carries until its sender is gone.
pub async fn publish(
    mut events: broadcast::Receiver<DeliveryEvent>,
    producer: FutureProducer,
    topic: String,
) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "delivery events skipped on their way to Kafka");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Ok(payload) = serde_json::to_vec(&event) else {
            continue;
        };
        let record = FutureRecord::to(&topic)
            .key(&event.tenant_id)
            .payload(&payload);
        if let Err((e, _)) = producer.send(record, SEND_TIMEOUT).await {
            tracing::warn!(error = %e, "cannot publish a delivery event to Kafka");
        }
    }
}

/// A channel fed by the events topic from now on, for live subscriptions.
pub async fn feed(config: &KafkaConfig) -> Result<broadcast::Sender<DeliveryEvent>, QueueError> {
    config.validate().map_err(QueueError::Backend)?;
    let topics = Topics::new(
        &config.topic_prefix,
        &Tiers::new(config.retry_tiers.clone()),
    );
    super::prepare_topics(config, &topics).await?;
    let group = format!("{}.events", config.group);
    // Never joined nor committed: each replica reads every partition from its end.
    let consumer: StreamConsumer = client_config(
        config,
        &[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("fetch.wait.max.ms", "50"),
        ],
    )
    .create()
    .map_err(|e| backend("cannot create the delivery events consumer", e))?;
    let metadata = consumer
        .fetch_metadata(Some(&topics.events), Duration::from_secs(10))
        .map_err(|e| backend("cannot read the delivery events topic", e))?;
    let mut assignment = TopicPartitionList::new();
    for topic in metadata.topics() {
        for partition in topic.partitions() {
            assignment
                .add_partition_offset(&topics.events, partition.id(), Offset::End)
                .map_err(|e| backend("cannot assign the delivery events topic", e))?;
        }
    }
    drop(metadata);
    consumer
        .assign(&assignment)
        .map_err(|e| backend("cannot assign the delivery events topic", e))?;
    drop(assignment);
    let (sender, _) = broadcast::channel(FEED_BUFFER);
    let feeding = sender.clone();
    let consumer = Closing::new(consumer);
    tokio::spawn(async move {
        loop {
            match consumer.recv().await {
                Ok(message) => {
                    let event = message
                        .payload()
                        .and_then(|p| serde_json::from_slice::<DeliveryEvent>(p).ok());
                    if let Some(event) = event {
                        // Nobody listening is fine.
                        let _ = feeding.send(event);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read delivery events; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(sender)
}
