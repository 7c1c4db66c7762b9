//! Relay cursor connections: opaque cursors over each list's sort key.

use async_graphql::Error;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use junction_schema::error_code::ErrorCode;

use super::access::error;

pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

pub fn encode(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// The sort key inside a cursor from `encode`.
pub fn decode(cursor: Option<String>) -> Result<Option<String>, Error> {
    cursor
        .map(|cursor| {
            URL_SAFE_NO_PAD
                .decode(cursor.as_bytes())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| error(ErrorCode::BadUserInput, "invalid cursor in `after`"))
        })
        .transpose()
}

/// How many rows to fetch for `first`: one more than the page, to learn whether more follow.
pub fn limit(first: Option<i32>) -> Result<u64, Error> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(error(
            ErrorCode::BadUserInput,
            format!("`first` must be between 0 and {MAX_PAGE}"),
        ));
    }
    Ok(first as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode(Some(encode("abc"))).unwrap(), Some("abc".into()));
        assert!(decode(Some("!!".into())).is_err());
        assert_eq!(limit(None).unwrap(), 21);
        assert!(limit(Some(101)).is_err());
        assert!(limit(Some(-1)).is_err());
    }
}
