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
const MARGIN: Duration = Duration::from_secs(30);
/// For each metadata and offset request to the broker.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Watches until the task is dropped. `topics` are the group's topics, each with how long
/// its head record may stay put in a working group; `group` names the group in logs.
pub(crate) async fn watch<C: ConsumerContext + 'static>(
    consumer: Arc<Closing<StreamConsumer<C>>>,
    topics: Vec<(String, Duration)>,
    group: &'static str,
) {
    let names: Vec<String> = topics.iter().map(|(topic, _)| topic.clone()).collect();
    let mut standing = Standing::new(&topics);
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
        if let Some(((topic, partition), offset, stood)) = standing.observe(waiting, Instant::now())
        {
            tracing::warn!(
                group,
                topic,
                partition,
                offset,
                ?stood,
                "records wait on a partition that no one moves and this consumer holds none; rejoining the group"
            );
            consumer.unsubscribe();
            let topics: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Err(error) = consumer.subscribe(&topics) {
                tracing::warn!(%error, group, "cannot rejoin the group");
            }
        }
    }
}

/// Each waiting partition's committed offset and since when it has stood there.
struct Standing {
    patience: HashMap<String, Duration>,
    since: HashMap<Partition, (i64, Instant)>,
}

impl Standing {
    fn new(topics: &[(String, Duration)]) -> Self {
        Self {
            patience: topics
                .iter()
                .map(|(topic, patience)| (topic.clone(), *patience + MARGIN))
                .collect(),
            since: HashMap::new(),
        }
    }

    /// Takes the offsets of the partitions with records waiting now; returns one that has
    /// stood longer than its topic's patience (and forgets everything, as the group is
    /// about to be rejoined), with its offset and how long it stood.
    fn observe(
        &mut self,
        waiting: HashMap<Partition, i64>,
        now: Instant,
    ) -> Option<(Partition, i64, Duration)> {
        self.since
            .retain(|partition, _| waiting.contains_key(partition));
        for (partition, offset) in waiting {
            match self.since.get(&partition) {
                Some((at, _)) if *at == offset => {}
                _ => {
                    self.since.insert(partition, (offset, now));
                }
            }
        }
        let stuck = self
            .since
            .iter()
            .map(|(partition, (offset, since))| (partition, *offset, now.duration_since(*since)))
            .find(|((topic, _), _, stood)| {
                *stood > self.patience.get(topic).copied().unwrap_or(MARGIN)
            })
            .map(|(partition, offset, stood)| (partition.clone(), offset, stood));
        if stuck.is_some() {
            self.since.clear();
        }
        stuck
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64) -> HashMap<Partition, i64> {
        HashMap::from([(("dispatch".to_owned(), partition), offset)])
    }

    #[test]
    fn a_moving_offset_never_trips_it() {
        let start = Instant::now();
        let mut standing = Standing::new(&[("dispatch".into(), Duration::from_secs(30))]);
        for minute in 0..10 {
            let now = start + Duration::from_secs(60 * minute);
            assert_eq!(standing.observe(at(0, minute as i64), now), None);
        }
    }

    #[test]
    fn an_offset_standing_past_its_patience_trips_it_once() {
        let start = Instant::now();
        let lease = Duration::from_secs(30);
        let mut standing = Standing::new(&[("dispatch".into(), lease)]);
        assert_eq!(standing.observe(at(2, 7), start), None);
        let within = start + lease + MARGIN;
        assert_eq!(standing.observe(at(2, 7), within), None, "not before");
        let past = within + Duration::from_secs(1);
        let (partition, offset, stood) = standing.observe(at(2, 7), past).expect("stuck");
        assert_eq!((partition, offset), (("dispatch".to_owned(), 2), 7));
        assert!(stood > lease + MARGIN);
        // Rejoining starts the count again.
        assert_eq!(standing.observe(at(2, 7), past), None);
    }

    #[test]
    fn a_partition_with_nothing_waiting_is_forgotten() {
        let start = Instant::now();
        let mut standing = Standing::new(&[("dispatch".into(), Duration::ZERO)]);
        assert_eq!(standing.observe(at(0, 5), start), None);
        assert_eq!(standing.observe(HashMap::new(), start + MARGIN), None);
        // Waiting again at the same offset: its time starts over.
        let later = start + MARGIN * 2;
        assert_eq!(standing.observe(at(0, 5), later), None);
        assert_eq!(standing.observe(at(0, 5), later + MARGIN), None);
    }

    #[test]
    fn a_retry_tier_waits_its_delay_first() {
        let start = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut standing = Standing::new(&[("retry.1h".into(), hour)]);
        let waiting = HashMap::from([(("retry.1h".to_owned(), 0), 3)]);
        assert_eq!(standing.observe(waiting.clone(), start), None);
        let twice_the_margin = start + MARGIN * 2;
        assert_eq!(standing.observe(waiting.clone(), twice_the_margin), None);
        assert!(
            standing
                .observe(waiting, start + hour + MARGIN * 2)
                .is_some()
        );
    }
}
