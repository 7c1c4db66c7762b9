//! Retry tiers: one topic per delay. A record waits in the tier of the longest delay no longer
//! than its wait, so it is never released early; within a tier every record waits the same
//! delay, so each partition releases in the order it was written and the record at its head
//! is the next one due: waiting never means scanning, and one partition's wait holds back no
//! other partition.

use std::time::Duration;

/// The delays, shortest first.
#[derive(Clone, Debug)]
pub struct Tiers(Vec<Duration>);

impl Tiers {
    pub fn new(mut delays: Vec<Duration>) -> Self {
        delays.sort();
        delays.dedup();
        Self(delays)
    }

    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// The tier for a record due in `wait`: the longest delay not longer than it, or the
    /// shortest when the wait is shorter than every delay (it is then held until due).
    pub fn for_wait(&self, wait: Duration) -> usize {
        self.0.iter().rposition(|delay| *delay <= wait).unwrap_or(0)
    }

    pub fn delay(&self, tier: usize) -> Duration {
        self.0.get(tier).copied().unwrap_or_default()
    }
}

/// A delay as a topic name part: `500ms`, `5s`, `10m`, `6h`.
pub fn topic_suffix(delay: Duration) -> String {
    let millis = delay.as_millis();
    if millis.is_multiple_of(3_600_000) {
        format!("{}h", millis / 3_600_000)
    } else if millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers() -> Tiers {
        Tiers::new(
            [3600, 5, 60, 600, 6 * 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }

    #[test]
    fn a_wait_goes_to_the_longest_tier_not_longer_than_it() {
        let tiers = tiers();
        let secs = Duration::from_secs;
        assert_eq!(
            tiers.for_wait(Duration::from_millis(700)),
            0,
            "shorter than all"
        );
        assert_eq!(tiers.for_wait(secs(5)), 0);
        assert_eq!(tiers.for_wait(secs(59)), 0);
        assert_eq!(tiers.for_wait(secs(60)), 1);
        assert_eq!(tiers.for_wait(secs(3 * 3600)), 3);
        assert_eq!(tiers.for_wait(secs(80 * 3600)), 4);
        assert_eq!(tiers.delay(1), secs(60));
    }

    #[test]
    fn topic_names_read_like_durations() {
        let names: Vec<String> = tiers().delays().iter().map(|d| topic_suffix(*d)).collect();
        assert_eq!(names, ["5s", "1m", "10m", "1h", "6h"]);
        assert_eq!(topic_suffix(Duration::from_millis(500)), "500ms");
    }
}
