//! Cursor values as the engine reads them, without knowing the connector: which of two is
//! newer, and when one is a time, which time (for sync lag).

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

/// Numbers above this are milliseconds since 1970, not seconds (it is the year 5138 in
/// seconds, and 1973 in milliseconds).
const MILLIS_FROM: f64 = 1e11;

/// `value` as a time: numbers as seconds (or milliseconds) since 1970, strings as RFC 3339,
/// ISO date-times without a zone (taken as UTC) or dates.
pub(crate) fn as_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => {
            let n = n.as_f64()?;
            let millis = if n.abs() >= MILLIS_FROM {
                n
            } else {
                n * 1000.0
            };
            DateTime::from_timestamp_millis(millis as i64)
        }
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|t| t.and_utc())
            })
            .or_else(|| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            }),
        _ => None,
    }
}

/// Orders two cursor values: as times when both are, else as numbers, else as text.
pub(crate) fn compare(a: &Value, b: &Value) -> Ordering {
    if let (Some(a), Some(b)) = (as_time(a), as_time(b)) {
        return a.cmp(&b);
    }
    if let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) {
        return a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    }
    text(a).cmp(&text(b))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The newer of `current` and `candidate`.
pub(crate) fn newest(current: Option<Value>, candidate: &Value) -> Option<Value> {
    match current {
        Some(current) if compare(&current, candidate) != Ordering::Less => Some(current),
        _ => Some(candidate.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_and_strings_read_as_times() {
        let t = as_time(&json!(1_700_000_000)).unwrap();
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20+00:00");
        assert_eq!(as_time(&json!(1_700_000_000_000_i64)), Some(t));
        assert_eq!(as_time(&json!("2023-11-14T22:13:20Z")), Some(t));
        assert_eq!(as_time(&json!("2023-11-14T22:13:20")), Some(t));
        assert!(as_time(&json!("2023-11-14")).is_some());
        assert_eq!(as_time(&json!("v12")), None);
    }

    #[test]
    fn the_newest_value_wins_whatever_its_form() {
        assert_eq!(newest(Some(json!(5)), &json!(3)), Some(json!(5)));
        assert_eq!(newest(Some(json!(3)), &json!(5)), Some(json!(5)));
        assert_eq!(
            newest(Some(json!("2024-01-02")), &json!("2024-01-10T00:00:00Z")),
            Some(json!("2024-01-10T00:00:00Z"))
        );
        assert_eq!(newest(None, &json!("b")), Some(json!("b")));
        assert_eq!(newest(Some(json!("b")), &json!("a")), Some(json!("b")));
    }
}
