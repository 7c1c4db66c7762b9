//! Incremental cursors: comparing cursor values as the times (or numbers) they are, writing them
//! into a request, stepping back by the lookback window, and the state a stream's read leaves.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::CursorFormat;
use super::pages::PageToken;

/// What a manifest stream keeps in its [`State`](crate::State).
///
/// `cursor` is the highest cursor value of a finished read, `at_cursor` the primary keys of
/// the records holding exactly that value (an inclusive filter such as `created[gte]` sends
/// them again, and they are dropped). `run` is a read in progress: resuming it continues from
/// its next page with the same filter, so nothing is lost or repeated even when the source
/// sorts newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at_cursor: Vec<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
}

/// A read in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Run {
    /// The filter's value for this read: records from it on.
    pub from: Option<Value>,
    /// The next page to read.
    pub page: PageToken,
    /// The highest cursor value read so far, and the keys of the records holding it.
    pub max: Option<Value>,
    #[serde(default)]
    pub at_max: Vec<Vec<Value>>,
}

impl Run {
    /// Counts `record`'s cursor value towards the highest seen.
    pub fn saw(&mut self, cursor: &Value, key: Vec<Value>, format: &CursorFormat) {
        match self.max.as_ref().map(|max| compare(cursor, max, format)) {
            None | Some(Ordering::Greater) => {
                self.max = Some(cursor.clone());
                self.at_max = vec![key];
            }
            Some(Ordering::Equal) => {
                if !self.at_max.contains(&key) {
                    self.at_max.push(key);
                }
            }
            Some(Ordering::Less) => {}
        }
    }
}

/// The time a cursor value stands for: numbers are seconds since 1970 (milliseconds under
/// `unix_millis`); strings are RFC 3339, an ISO date-time without zone (UTC), a date, or
/// digits.
pub(crate) fn to_time(value: &Value, format: &CursorFormat) -> Option<DateTime<Utc>> {
    let from_number = |number: f64| {
        let seconds = if matches!(format, CursorFormat::UnixMillis) {
            number / 1000.0
        } else {
            number
        };
        // `as` saturates; times that far out are refused by `from_timestamp` anyway.
        let whole = seconds.floor() as i64;
        let nanos = ((seconds - seconds.floor()) * 1e9) as u32;
        DateTime::from_timestamp(whole, nanos)
    };
    match value {
        Value::Number(number) => number.as_f64().and_then(from_number),
        Value::String(text) => {
            let text = text.trim();
            if let Ok(time) = DateTime::parse_from_rfc3339(text) {
                return Some(time.with_timezone(&Utc));
            }
            for pattern in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(time) = NaiveDateTime::parse_from_str(text, pattern) {
                    return Some(time.and_utc());
                }
            }
            if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                return date.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
            }
            text.parse::<f64>().ok().and_then(from_number)
        }
        _ => None,
    }
}

/// Orders two cursor values: as times when both are, as numbers when both are, else as text.
pub(crate) fn compare(a: &Value, b: &Value, format: &CursorFormat) -> Ordering {
    if let (Some(a), Some(b)) = (to_time(a, format), to_time(b, format)) {
        return a.cmp(&b);
    }
    if let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) {
        return a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    }
    text(a).cmp(&text(b))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `value` moved back by `lookback`, in the shape it came in (a number stays a number).
pub(crate) fn minus(
    value: &Value,
    lookback: Duration,
    format: &CursorFormat,
) -> Result<Value, String> {
    if lookback.is_zero() {
        return Ok(value.clone());
    }
    let time = to_time(value, format)
        .ok_or_else(|| format!("cursor value {value} is not a time, so no lookback applies"))?;
    let lookback = chrono::Duration::from_std(lookback)
        .map_err(|_| format!("lookback {lookback:?} is too long"))?;
    let earlier = time - lookback;
    Ok(match value {
        Value::Number(_) if matches!(format, CursorFormat::UnixMillis) => {
            Value::from(earlier.timestamp_millis())
        }
        Value::Number(_) => Value::from(earlier.timestamp()),
        _ => Value::from(earlier.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    })
}

/// `value` as the request parameter's text.
pub(crate) fn format_param(value: &Value, format: &CursorFormat) -> Result<String, String> {
    if let CursorFormat::Raw = format {
        return Ok(text(value));
    }
    let time =
        to_time(value, format).ok_or_else(|| format!("cursor value {value} is not a time"))?;
    Ok(match format {
        CursorFormat::Raw => text(value),
        CursorFormat::UnixSeconds => time.timestamp().to_string(),
        CursorFormat::UnixMillis => time.timestamp_millis().to_string(),
        CursorFormat::Rfc3339 => time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        CursorFormat::Date => time.format("%Y-%m-%d").to_string(),
        CursorFormat::Strftime(pattern) => time.format(&pattern.0).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::model::StrftimePattern;

    #[test]
    fn values_compare_as_times_numbers_or_text() {
        let raw = CursorFormat::Raw;
        assert_eq!(
            compare(
                &json!("2024-01-02T00:00:00+01:00"),
                &json!("2024-01-01T23:30:00Z"),
                &raw
            ),
            Ordering::Less
        );
        assert_eq!(
            compare(&json!(1_700_000_001), &json!(1_700_000_000), &raw),
            Ordering::Greater
        );
        assert_eq!(
            compare(&json!("2024-01-02"), &json!("2024-01-02T00:00:00Z"), &raw),
            Ordering::Equal
        );
        assert_eq!(compare(&json!("b"), &json!("a"), &raw), Ordering::Greater);
    }

    #[test]
    fn lookback_keeps_the_shape_of_the_value() {
        let raw = CursorFormat::Raw;
        let hour = Duration::from_secs(3600);
        assert_eq!(
            minus(&json!(1_700_003_600), hour, &raw).unwrap(),
            json!(1_700_000_000)
        );
        assert_eq!(
            minus(
                &json!(1_700_003_600_000_u64),
                hour,
                &CursorFormat::UnixMillis
            )
            .unwrap(),
            json!(1_700_000_000_000_u64)
        );
        assert_eq!(
            minus(&json!("2024-01-01T01:00:00Z"), hour, &raw).unwrap(),
            json!("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            minus(&json!("abc"), Duration::ZERO, &raw).unwrap(),
            json!("abc")
        );
        assert!(minus(&json!("abc"), hour, &raw).is_err());
    }

    #[test]
    fn parameters_are_written_in_the_asked_format() {
        let value = json!("2024-01-31T12:00:00Z");
        let cases = [
            (CursorFormat::Raw, "2024-01-31T12:00:00Z"),
            (CursorFormat::UnixSeconds, "1706702400"),
            (CursorFormat::UnixMillis, "1706702400000"),
            (CursorFormat::Rfc3339, "2024-01-31T12:00:00Z"),
            (CursorFormat::Date, "2024-01-31"),
            (
                CursorFormat::Strftime(StrftimePattern("%d/%m/%Y".into())),
                "31/01/2024",
            ),
        ];
        for (format, expected) in cases {
            assert_eq!(
                format_param(&value, &format).unwrap(),
                expected,
                "{format:?}"
            );
        }
        assert_eq!(
            format_param(&json!(1_706_702_400), &CursorFormat::Date).unwrap(),
            "2024-01-31"
        );
        assert!(format_param(&json!("soon"), &CursorFormat::UnixSeconds).is_err());
    }

    #[test]
    fn the_highest_value_and_every_record_holding_it_are_kept() {
        let mut run = Run {
            from: None,
            page: PageToken::First,
            max: None,
            at_max: Vec::new(),
        };
        let raw = CursorFormat::Raw;
        run.saw(&json!(5), vec![json!("a")], &raw);
        run.saw(&json!(7), vec![json!("b")], &raw);
        run.saw(&json!(7), vec![json!("c")], &raw);
        run.saw(&json!(7), vec![json!("c")], &raw);
        run.saw(&json!(6), vec![json!("d")], &raw);
        assert_eq!(run.max, Some(json!(7)));
        assert_eq!(run.at_max, vec![vec![json!("b")], vec![json!("c")]]);
    }
}
