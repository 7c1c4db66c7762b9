//! When to try again: the configured schedule, jitter, and the receiver's `Retry-After`.

use std::time::{Duration, SystemTime};

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

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
