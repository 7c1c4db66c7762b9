//! When to try again: the configured schedule, jitter, and the receiver's `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// The delay before attempt `attempts + 1`, or `None` when the schedule is exhausted.
/// `attempts` counts the attempts made so far (at least 1 here).
pub fn next_delay(schedule: &[Duration], attempts: i32, jitter: f64) -> Option<Duration> {
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    let base = *schedule.get(index)?;
    Some(spread(base, jitter))
}

/// `base` moved by a random fraction in `[-jitter, +jitter]`.
fn spread(base: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 || base.is_zero() {
        return base;
    }
    let factor = 1.0 + rand::rng().random_range(-jitter..=jitter);
    base.mul_f64(factor.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_then_gives_up() {
        let schedule = [Duration::from_secs(1), Duration::from_secs(10)];
        assert_eq!(next_delay(&schedule, 1, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(next_delay(&schedule, 2, 0.0), Some(Duration::from_secs(10)));
        assert_eq!(next_delay(&schedule, 3, 0.0), None);
        assert_eq!(next_delay(&schedule, 0, 0.0), None);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let schedule = [Duration::from_secs(100)];
        for _ in 0..200 {
            let delay = next_delay(&schedule, 1, 0.2).unwrap();
            assert!(
                delay >= Duration::from_secs(80) && delay <= Duration::from_secs(120),
                "{delay:?}"
            );
        }
    }
}
