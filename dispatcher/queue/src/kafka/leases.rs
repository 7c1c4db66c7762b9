//! What a Kafka consumer holds between taking a record and settling it, per partition: each
//! record's lease, and the commit watermark: the offset below which every record is settled.
//! Only the watermark is ever committed, so a crash repeats unsettled records and never skips
//! one (at-least-once), however out of order the workers settle them.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A topic partition.
pub type Partition = (String, i32);

#[derive(Debug)]
struct Held<T> {
    item: T,
    /// Bumped each time the record is handed out; a receipt of an older generation settles
    /// nothing (its holder's lease ran out and someone else has it now).
    generation: u32,
    leased_until: Instant,
    settled: bool,
}

#[derive(Debug)]
struct PartitionLeases<T> {
    /// Held records by offset.
    held: BTreeMap<i64, Held<T>>,
}

/// Leases and watermarks of every partition this consumer owns.
#[derive(Debug)]
pub struct Leases<T> {
    partitions: HashMap<Partition, PartitionLeases<T>>,
}

impl<T> Default for Leases<T> {
    fn default() -> Self {
        Self {
            partitions: HashMap::new(),
        }
    }
}

/// Where a settled record leaves its partition: the offset to commit (the next one to read),
/// when the watermark moved.
pub type Commit = Option<i64>;

impl<T: Clone> Leases<T> {
    /// Holds a freshly read record until `until`; returns its generation (0).
    pub fn hold(&mut self, partition: Partition, offset: i64, item: T, until: Instant) -> u32 {
        let leases = self
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionLeases {
                held: BTreeMap::new(),
            });
        leases.held.insert(
            offset,
            Held {
                item,
                generation: 0,
                leased_until: until,
                settled: false,
            },
        );
        0
    }

    /// Records whose lease ran out by `now`, at most `max`, leased again until `until`: each
    /// with its partition, offset and new generation.
    pub fn expired(
        &mut self,
        now: Instant,
        until: Instant,
        max: usize,
    ) -> Vec<(Partition, i64, u32, T)> {
        let mut out = Vec::new();
        for (partition, leases) in &mut self.partitions {
            for (offset, held) in &mut leases.held {
                if out.len() >= max {
                    return out;
                }
                if !held.settled && held.leased_until <= now {
                    held.generation += 1;
                    held.leased_until = until;
                    out.push((
                        partition.clone(),
                        *offset,
                        held.generation,
                        held.item.clone(),
                    ));
                }
            }
        }
        out
    }

    /// Settles a record if `generation` is its current one. Returns `Err(())` for a stale or
    /// unknown receipt (its partition was revoked, or its lease went to someone else), else the
    /// commit the partition may now make.
    pub fn settle(
        &mut self,
        partition: &Partition,
        offset: i64,
        generation: u32,
    ) -> Result<Commit, ()> {
        let leases = self.partitions.get_mut(partition).ok_or(())?;
        let held = leases.held.get_mut(&offset).ok_or(())?;
        if held.generation != generation || held.settled {
            return Err(());
        }
        held.settled = true;
        let mut next = None;
        while let Some(entry) = leases.held.first_entry() {
            if !entry.get().settled {
                break;
            }
            next = Some(*entry.key() + 1);
            entry.remove();
        }
        Ok(next)
    }

    /// Forgets partitions taken away by a rebalance: their records go to the new owner.
    pub fn revoke(&mut self, partitions: &[Partition]) {
        for partition in partitions {
            self.partitions.remove(partition);
        }
    }

    /// Whether `generation` is the current lease of a held, unsettled record.
    pub fn is_current(&self, partition: &Partition, offset: i64, generation: u32) -> bool {
        self.partitions
            .get(partition)
            .and_then(|p| p.held.get(&offset))
            .is_some_and(|h| h.generation == generation && !h.settled)
    }

    /// Records held and not yet settled.
    #[cfg(test)]
    pub fn unsettled(&self) -> usize {
        self.partitions
            .values()
            .map(|p| p.held.values().filter(|h| !h.settled).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn p(n: i32) -> Partition {
        ("dispatch".to_owned(), n)
    }

    #[test]
    fn the_watermark_waits_for_the_oldest_unsettled_record() {
        let mut leases = Leases::default();
        let until = Instant::now() + Duration::from_secs(60);
        for offset in 10..13 {
            leases.hold(p(0), offset, offset, until);
        }
        assert_eq!(leases.settle(&p(0), 12, 0), Ok(None), "11 and 10 still out");
        assert_eq!(leases.settle(&p(0), 10, 0), Ok(Some(11)));
        assert_eq!(
            leases.settle(&p(0), 11, 0),
            Ok(Some(13)),
            "12 was settled already"
        );
        assert_eq!(leases.unsettled(), 0);
        assert_eq!(leases.settle(&p(0), 11, 0), Err(()), "settled once only");
    }

    #[test]
    fn partitions_move_independently() {
        let mut leases = Leases::default();
        let until = Instant::now() + Duration::from_secs(60);
        leases.hold(p(0), 5, "a", until);
        leases.hold(p(1), 7, "b", until);
        assert_eq!(leases.settle(&p(1), 7, 0), Ok(Some(8)));
        assert_eq!(leases.unsettled(), 1);
    }

    #[test]
    fn an_expired_lease_is_handed_out_again_and_the_old_receipt_is_void() {
        let mut leases = Leases::default();
        let now = Instant::now();
        leases.hold(p(0), 1, "a", now);
        leases.hold(p(0), 2, "b", now + Duration::from_secs(60));
        assert!(leases.is_current(&p(0), 1, 0));
        let again = leases.expired(now, now + Duration::from_secs(60), 10);
        assert!(!leases.is_current(&p(0), 1, 0));
        assert!(leases.is_current(&p(0), 1, 1));
        assert_eq!(again.len(), 1);
        let (partition, offset, generation, item) = &again[0];
        assert_eq!((partition, *offset, *generation, *item), (&p(0), 1, 1, "a"));
        assert_eq!(
            leases.settle(&p(0), 1, 0),
            Err(()),
            "the old holder's receipt"
        );
        assert_eq!(leases.settle(&p(0), 1, 1), Ok(Some(2)));
    }

    #[test]
    fn revoked_partitions_settle_nothing() {
        let mut leases = Leases::default();
        leases.hold(p(3), 1, "a", Instant::now());
        leases.revoke(&[p(3)]);
        assert_eq!(leases.settle(&p(3), 1, 0), Err(()));
        assert_eq!(leases.unsettled(), 0);
    }
}
