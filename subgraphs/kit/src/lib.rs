//! What every Junction subgraph's GraphQL layer shares: errors with their `extensions.code`,
//! the scope check on the caller's verified identity, and Relay cursors and page sizes.

use async_graphql::{Context, Error, ErrorExtensions, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use junction_schema::Identity;
use junction_schema::database::is_unavailable;
use junction_schema::error_code::ErrorCode;
use junction_schema::identity::Scopes;
use junction_schema::tenants::ADMIN_SCOPE;

/// What a client is told to wait before sending a request again that met an unavailable
/// database: about what a PostgreSQL restart or failover takes.
pub const RETRY_AFTER_SECS: u64 = 2;

pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

/// A GraphQL error with one of the API's codes.
pub fn error(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, extensions| extensions.set("code", code.as_str()))
}

/// A database failure as an API error. One that could not reach the database is
/// `UNAVAILABLE` with `retryAfter` (seconds): the request changed nothing and may be sent
/// again; any other is `INTERNAL`. The details go to the log (naming `subgraph`), never to the
/// client.
pub fn database_error(subgraph: &str, failure: &sea_orm::DbErr) -> Error {
    if is_unavailable(failure) {
        tracing::warn!(error = %failure, subgraph, "the database is unavailable");
        error(
            ErrorCode::Unavailable,
            "the database cannot be reached right now and nothing was changed; send the same \
             request again after retryAfter seconds",
        )
        .extend_with(|_, extensions| extensions.set("retryAfter", RETRY_AFTER_SECS))
    } else {
        tracing::error!(error = %failure, subgraph, "database error");
        error(ErrorCode::Internal, "internal error")
    }
}

/// The caller, if it holds one of `allowed` or a scope that grants it (`admin` grants every
/// tenant scope, not `platform:admin`); with `allowed` empty, if it holds `admin`.
pub fn caller<'a>(ctx: &'a Context<'_>, allowed: &[&str]) -> Result<&'a Identity> {
    let identity = ctx
        .data::<Identity>()
        .map_err(|_| error(ErrorCode::Unauthenticated, "no verified identity"))?;
    let permitted = if allowed.is_empty() {
        identity.scopes.contains(ADMIN_SCOPE)
    } else {
        allowed.iter().any(|s| identity.scopes.grants(s))
    };
    if !permitted {
        let admin = Scopes::new([ADMIN_SCOPE]).expect("a valid scope");
        let mut needed: Vec<&str> = allowed.to_vec();
        if allowed.iter().all(|s| admin.grants(s)) {
            needed.push(ADMIN_SCOPE);
        }
        let needed = match needed.as_slice() {
            [one] => format!("this needs the scope {one}"),
            many => format!("this needs one of the scopes: {}", many.join(", ")),
        };
        return Err(error(ErrorCode::Forbidden, needed));
    }
    Ok(identity)
}

/// An opaque cursor over a list's sort key.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// The sort key inside a cursor from `encode_cursor`.
pub fn decode_cursor(cursor: Option<String>) -> Result<Option<String>> {
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
pub fn page_limit(first: Option<i32>) -> Result<u64> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(error(
            ErrorCode::BadUserInput,
            format!("`first` must be between 0 and {MAX_PAGE}"),
        ));
    }
    Ok(first as u64 + 1)
}

/// For a subgraph's tests: `generated` must equal the checked-in SDL at `path`. With
/// `UPDATE_SDL=1` in the environment the file is rewritten first (review the diff).
pub fn assert_sdl_checked_in(generated: &str, path: &std::path::Path) {
    if std::env::var_os("UPDATE_SDL").is_some() {
        std::fs::write(path, generated).expect("write the SDL");
    }
    let checked_in = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if checked_in != generated {
        let (line, (was, is)) = checked_in
            .lines()
            .chain(std::iter::repeat(""))
            .zip(generated.lines().chain(std::iter::repeat("")))
            .take(checked_in.lines().count().max(generated.lines().count()))
            .enumerate()
            .find(|(_, (was, is))| was != is)
            .unwrap_or((0, ("", "")));
        panic!(
            "{} is out of date: run the test with UPDATE_SDL=1 and review the diff \
             (first difference at line {}: checked in {was:?}, generated {is:?})",
            path.display(),
            line + 1
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(
            decode_cursor(Some(encode_cursor("abc"))).unwrap(),
            Some("abc".into())
        );
        assert!(decode_cursor(Some("!!".into())).is_err());
        assert_eq!(page_limit(None).unwrap(), 21);
        assert!(page_limit(Some(101)).is_err());
        assert!(page_limit(Some(-1)).is_err());
    }
}
