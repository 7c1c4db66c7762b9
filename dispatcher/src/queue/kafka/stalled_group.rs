//! A guard against a consumer group left stuck after a member died. A broker can finish the
//! rebalance that follows a crash with the dead member still holding every partition and the
//! live one holding none, and not rebalance again once the dead member's session ends (seen
//! with Tansu 0.6.0, the broker the tests run on). Nothing would be delivered, for good.
//!
//! So a consumer that holds no partition watches its group's committed offsets. While records
//! wait (a committed offset below its partition's end) and none of those offsets moves for
//! [`PATIENCE`] checks in a row, it leaves and rejoins the group, and the broker assigns
//! again. A working group moves its offsets (they are committed every half second), so it is
//! left alone. The cost where there are more consumers than partitions: an idle member
//! rejoins, once a minute, while the owners make no progress at all (a retry tier whose
//! records all wait for hours, for example).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::Closing;

/// How often an idle consumer looks at its group.
const EVERY: Duration = Duration::from_secs(10);
/// Checks without progress before rejoining.
const PATIENCE: u32 = 6;
/// For each metadata and offset request to the broker.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Watches until the task is dropped; `group` names the group in logs.
pub(crate) async fn watch<C: ConsumerContext + 'static>(
    consumer: Arc<Closing<StreamConsumer<C>>>,
    topics: Vec<String>,
    group: &'static str,
) {
    let mut last: Option<Vec<i64>> = None;
    let mut unchanged = 0;
    loop {
        tokio::time::sleep(EVERY).await;
        let (watched, wanted) = (Arc::clone(&consumer), topics.clone());
        let waiting = tokio::task::spawn_blocking(move || waiting(&watched, &wanted)).await;
        let offsets = match waiting {
            Ok(Ok(Some(offsets))) => offsets,
            Ok(Ok(None)) => {
                (last, unchanged) = (None, 0);
                continue;
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, group, "cannot read the group's offsets");
                continue;
            }
            Err(_) => continue,
        };
        if last.as_ref() == Some(&offsets) {
            unchanged += 1;
        } else {
            (last, unchanged) = (Some(offsets), 0);
        }
        if unchanged >= PATIENCE {
            tracing::warn!(
                group,
                waited = ?EVERY * PATIENCE,
                "records wait, this consumer holds no partition and the group makes no progress; rejoining"
            );
            consumer.unsubscribe();
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            if let Err(error) = consumer.subscribe(&names) {
                tracing::warn!(%error, group, "cannot rejoin the group");
            }
            (last, unchanged) = (None, 0);
        }
    }
}

/// The group's committed offsets over `topics` when this consumer holds no partition and
/// records wait; `None` otherwise. Every list is dropped before returning: librdkafka hangs
/// closing a consumer while one is alive.
fn waiting<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topics: &[String],
) -> KafkaResult<Option<Vec<i64>>> {
    if consumer.assignment()?.count() > 0 {
        return Ok(None);
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
    let mut offsets = Vec::with_capacity(committed.count());
    let mut waits = false;
    for element in committed.elements() {
        let (low, high) =
            consumer.fetch_watermarks(element.topic(), element.partition(), REQUEST_TIMEOUT)?;
        let at = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        waits |= at < high;
        offsets.push(at);
    }
    drop(committed);
    Ok(waits.then_some(offsets))
}
