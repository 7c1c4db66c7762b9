//! Delivery events on Kafka: every dispatcher publishes each recorded attempt to
//! `<prefix>.delivery-events`, and any deliveries subgraph replica streams them to its live
//! subscribers, wherever the attempt was made.
//!
//! Events are for watching, not for bookkeeping (the database has every attempt): a replica
//! reads from the end of each partition without a consumer group. But what a dispatcher
//! recorded reaches the topic: the dispatcher hands each event over a bounded channel (a
//! publisher that falls behind slows the dispatcher down rather than lose events), and a send
//! the cluster refuses, or that times out while a broker is away, is sent again until it is
//! acknowledged. Only a dispatcher killed with events still unsent loses those.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use junction_schema::envelope::DeliveryEvent;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{broadcast, mpsc};

use super::{Closing, KafkaConfig, Tiers, Topics, backend, client_config};
use crate::QueueError;

/// Events kept for subscribers that are a little behind.
const FEED_BUFFER: usize = 4096;

/// Sends awaiting the cluster's acknowledgement at once. One at a time, a dispatcher busy
/// with thousands of attempts a second would fall behind by a round trip each.
const IN_FLIGHT: usize = 1024;

/// How long to wait before trying again when the producer's own queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// How long to wait before sending again an event the cluster did not take.
const RESEND_PAUSE: Duration = Duration::from_millis(500);

/// Publishes every event `events` carries until its sender is gone, with up to `IN_FLIGHT`
/// sends unacknowledged; an event whose send fails is sent again (after a pause) until the
/// cluster takes it. Then waits for the sends in flight.
pub async fn publish(
    mut events: mpsc::Receiver<DeliveryEvent>,
    producer: FutureProducer,
    topic: String,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            Some(failed) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(event) = failed {
                    in_flight.push(send(producer.clone(), topic.clone(), event, RESEND_PAUSE));
                }
            }
            event = events.recv(), if open && in_flight.len() < IN_FLIGHT => match event {
                Some(event) => in_flight.push(send(producer.clone(), topic.clone(), event, Duration::ZERO)),
                None => open = false,
            },
        }
    }
}

/// Sends `event` after `pause`; `Some(event)` back when the cluster did not take it.
async fn send(
    producer: FutureProducer,
    topic: String,
    event: DeliveryEvent,
    pause: Duration,
) -> Option<DeliveryEvent> {
    tokio::time::sleep(pause).await;
    let Ok(payload) = serde_json::to_vec(&event) else {
        tracing::error!(attempt = %event.attempt_id, "a delivery event cannot be encoded");
        return None;
    };
    let mut record = FutureRecord::to(&topic)
        .key(&event.tenant_id)
        .payload(&payload);
    let delivery = loop {
        match producer.send_result(record) {
            Ok(delivery) => break delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(QUEUE_FULL_PAUSE).await;
            }
            Err((error, _)) => {
                tracing::warn!(%error, "cannot publish a delivery event to Kafka; will send it again");
                return Some(event);
            }
        }
    };
    match delivery.await {
        Ok(Ok(_)) => None,
        Ok(Err((error, _))) => {
            tracing::warn!(%error, "Kafka did not take a delivery event; will send it again");
            Some(event)
        }
        Err(_) => {
            tracing::warn!("a delivery event was dropped with its producer; will send it again");
            Some(event)
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

#[cfg(test)]
mod tests {
    use junction_schema::envelope::AttemptOutcome;
    use rdkafka::mocking::MockCluster;

    use super::*;

    fn event(n: usize) -> DeliveryEvent {
        DeliveryEvent {
            attempt_id: format!("attempt-{n}"),
            delivery_id: format!("delivery-{n}"),
            tenant_id: "tenant".into(),
            message_id: format!("message-{n}"),
            endpoint_id: "endpoint".into(),
            attempt: 1,
            outcome: AttemptOutcome::Succeeded,
            status_code: Some(200),
            error_kind: None,
            duration_ms: 1,
            response_excerpt: None,
            trace_id: None,
            next_attempt_at: None,
            at: chrono::Utc::now(),
        }
    }

    /// With 100 ms to the cluster and back, 1,000 events one send at a time would take 100 s;
    /// kept in flight together they are all published within seconds, and the publisher
    /// returns once its channel is closed and every send is acknowledged.
    #[tokio::test]
    async fn events_are_sent_together_not_one_round_trip_each() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("events", 1, 1).unwrap();
        cluster
            .broker_round_trip_time(1, Duration::from_millis(100))
            .unwrap();
        let config = KafkaConfig {
            bootstrap_servers: cluster.bootstrap_servers(),
            ..KafkaConfig::default()
        };
        let (events, receiver) = mpsc::channel(2_000);
        for n in 0..1_000 {
            events.send(event(n)).await.unwrap();
        }
        drop(events);
        let producer = super::super::producer(&config).unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            publish(receiver, producer, "events".into()),
        )
        .await
        .expect("every event acknowledged well before one round trip each would allow");

        let consumer: rdkafka::consumer::BaseConsumer =
            client_config(&config, &[("group.id", "count")])
                .create()
                .unwrap();
        let (low, high) = consumer
            .fetch_watermarks("events", 0, Duration::from_secs(10))
            .unwrap();
        assert_eq!(high - low, 1_000);
    }
}
