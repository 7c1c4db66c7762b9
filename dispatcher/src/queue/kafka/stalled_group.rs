//! A guard against a consumer group left stuck after a member died. A broker can finish the
//! rebalance that follows a crash with the dead member still holding every partition and the
//! live one holding none, and not rebalance again once the dead member's session ends (seen
//! with Tansu 0.6.0, the broker the tests run on). Nothing would be delivered, for good.
//!
//! So a consumer that holds no partition watches its group's committed offsets. When a
//! partition has records waiting (its committed offset is below its end) and that offset has
//! not moved for longer than any working owner could take, the consumer leaves and rejoins
//! the group, and the broker assigns again. How long an owner may take is the topic's
//! patience: a dispatch record is taken at once; a retry tier's head record is handed back
//! within the tier's delay of becoming the head. A working group therefore never trips it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::Closing;
use super::leases::Partition;

/// How often an idle consumer looks at its group.
const EVERY: Duration = Duration::from_secs(10);
/// Added to every topic's patience: time to notice, commit and rebalance.
pub(crate) const MARGIN: Duration = Duration::from_secs(60);
/// For each metadata and offset request to the broker.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Watches until the task is dropped. `topics` are the group's topics, each with how long
/// its head record may stay put in a working group; `group` names the group in logs.
pub(crate) async fn watch<C: ConsumerContext + 'static>(
    consumer: Arc<Closing<StreamConsumer<C>>>,
    topics: Vec<(String, Duration)>,
    group: &'static str,
) {
    let patience: HashMap<String, Duration> = topics
        .iter()
        .map(|(topic, patience)| (topic.clone(), *patience + MARGIN))
        .collect();
    let names: Vec<String> = topics.into_iter().map(|(topic, _)| topic).collect();
    // Each waiting partition's committed offset, and since when it has stood there.
    let mut standing: HashMap<Partition, (i64, Instant)> = HashMap::new();
    loop {
        tokio::time::sleep(EVERY).await;
        let (watched, wanted) = (Arc::clone(&consumer), names.clone());
        let waiting = match tokio::task::spawn_blocking(move || waiting(&watched, &wanted)).await {
            Ok(Ok(waiting)) => waiting,
            Ok(Err(error)) => {
                tracing::debug!(%error, group, "cannot read the group's offsets");
                continue;
            }
            Err(_) => continue,
        };
        let now = Instant::now();
        standing.retain(|partition, _| waiting.contains_key(partition));
        for (partition, offset) in waiting {
            match standing.get(&partition) {
                Some((at, _)) if *at == offset => {}
                _ => {
                    standing.insert(partition, (offset, now));
                }
            }
        }
        let stuck = standing.iter().find(|((topic, _), (_, since))| {
            now.duration_since(*since) > patience.get(topic).copied().unwrap_or(MARGIN)
        });
        if let Some(((topic, partition), (offset, since))) = stuck {
            tracing::warn!(
                group,
                topic,
                partition,
                offset,
                standing = ?now.duration_since(*since),
                "records wait on a partition that no one moves and this consumer holds none; rejoining the group"
            );
            consumer.unsubscribe();
            let topics: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Err(error) = consumer.subscribe(&topics) {
                tracing::warn!(%error, group, "cannot rejoin the group");
            }
            standing.clear();
        }
    }
}

/// The group's committed offset of every partition of `topics` with records waiting, when
/// this consumer holds no partition (else none). Every list is dropped before returning:
/// librdkafka hangs closing a consumer while one is alive.
fn waiting<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topics: &[String],
) -> KafkaResult<HashMap<Partition, i64>> {
    let mut out = HashMap::new();
    if consumer.assignment()?.count() > 0 {
        return Ok(out);
    }
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                partitions.add_partition(topic, partition.id());
            }
        }
    }
    let committed = consumer.committed_offsets(partitions, REQUEST_TIMEOUT)?;
    for element in committed.elements() {
        let (low, high) =
            consumer.fetch_watermarks(element.topic(), element.partition(), REQUEST_TIMEOUT)?;
        let at = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        if at < high {
            out.insert((element.topic().to_owned(), element.partition()), at);
        }
    }
    drop(committed);
    Ok(out)
}
