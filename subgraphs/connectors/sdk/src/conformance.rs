//! The conformance kit: the checks every connector's tests run against a test source, Rust or
//! manifest alike. A connector that passes them keeps the promises an engine relies on.
//!
//! - `check` accepts the good connection, and refuses a bad credential with
//!   [`ErrorKind::Credentials`] (from `read` too).
//! - `discover` gives streams whose schemas are valid JSON Schema.
//! - A full read of each stream ends with a checkpoint, reads every page (as many records as
//!   the case expects), repeats no record, and every record matches its stream's schema.
//! - Resumed from a checkpoint in the middle, a read yields exactly the records the full read
//!   had after that checkpoint: none lost, none repeated.
//! - Read again from the final checkpoint, an incremental stream yields nothing already read
//!   (the test source does not change between reads; a manifest's `lookback` would re-read on
//!   purpose, so run the kit with none).
//! - The requests the source saw stay under the connection's rate cap.
//!
//! ```no_run
//! # async fn example(connector: &dyn junction_connector_sdk::Connector,
//! #                  good: junction_connector_sdk::Connection,
//! #                  bad: junction_connector_sdk::Connection) {
//! use junction_connector_sdk::conformance::{Case, run};
//! let report = run(&Case::new(connector, good).bad_credentials(bad).expect("items", 53)).await;
//! report.assert_passed();
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::connector::{Connection, Connector, Message, State, StreamSpec, SyncMode};
use crate::error::{ConnectorError, ErrorKind};
use crate::http::RateLimit;

/// The longest a single read may take before the kit calls it stuck.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The most messages a single read may yield before the kit calls it endless.
const MAX_MESSAGES: usize = 1_000_000;

/// What to check a connector against.
pub struct Case<'a> {
    connector: &'a dyn Connector,
    connection: Connection,
    bad_credentials: Option<Connection>,
    expected: BTreeMap<String, usize>,
    streams: Option<Vec<String>>,
    rate: Option<RateCheck>,
}

/// The requests a test source saw, to check them against a rate cap.
pub struct RateCheck {
    pub limit: RateLimit,
    /// When each request reached the source, read after the kit's reads.
    pub requests: Arc<dyn Fn() -> Vec<Instant> + Send + Sync>,
}

impl<'a> Case<'a> {
    /// `connection` must work against the test source.
    pub fn new(connector: &'a dyn Connector, connection: Connection) -> Self {
        Self {
            connector,
            connection,
            bad_credentials: None,
            expected: BTreeMap::new(),
            streams: None,
            rate: None,
        }
    }

    /// A connection the test source refuses for its credentials.
    pub fn bad_credentials(mut self, connection: Connection) -> Self {
        self.bad_credentials = Some(connection);
        self
    }

    /// A full read of `stream` yields `records` records.
    pub fn expect(mut self, stream: &str, records: usize) -> Self {
        self.expected.insert(stream.to_owned(), records);
        self
    }

    /// Reads only these streams (all discovered streams by default).
    pub fn streams(mut self, streams: &[&str]) -> Self {
        self.streams = Some(streams.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Checks the source's request log against `limit`.
    pub fn rate_limit(mut self, check: RateCheck) -> Self {
        self.rate = Some(check);
        self
    }
}

/// What the kit found: the checks that passed and the failures, each in a sentence.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: Vec<String>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics listing every failure: for tests.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.is_ok(), "conformance failures:\n{self}");
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if ok {
            self.passed.push(what.into());
        } else {
            self.failures.push(what.into());
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in &self.failures {
            writeln!(f, "FAILED {failure}")?;
        }
        for passed in &self.passed {
            writeln!(f, "ok     {passed}")?;
        }
        Ok(())
    }
}

/// Runs every check of the kit on `case`.
pub async fn run(case: &Case<'_>) -> Report {
    let mut report = Report::default();
    let connector = case.connector;
    let spec = connector.spec();
    report.check(
        jsonschema::validator_for(&spec.config_schema).is_ok(),
        format!("spec: {} has a valid configuration schema", spec.name),
    );
    match spec.validate_config(&case.connection.config) {
        Ok(()) => report.check(true, "spec: the test configuration matches the schema"),
        Err(e) => report.check(
            false,
            format!("spec: the test configuration does not match: {e}"),
        ),
    }

    // The bad connection goes first: it is another connection with a rate cap of its own, and
    // the requests counted against the good connection's cap are those sent after it.
    if let Some(bad) = &case.bad_credentials {
        let checked = connector.check(bad).await;
        report.check(
            matches!(&checked, Err(e) if e.kind() == ErrorKind::Credentials),
            format!("check: a bad credential gives the credential error (got {checked:?})"),
        );
        if let Ok(streams) = connector.discover(bad).await
            && let Some(stream) = streams.first()
        {
            let read = collect(connector, bad, &stream.name, None).await;
            report.check(
                matches!(&read, Err(e) if e.kind() == ErrorKind::Credentials),
                format!(
                    "read {}: a bad credential gives the credential error (got {:?})",
                    stream.name,
                    read.as_ref().map(|r| r.records.len())
                ),
            );
        }
    }
    let good_from = Instant::now();

    match connector.check(&case.connection).await {
        Ok(()) => report.check(true, "check: the good connection works"),
        Err(e) => report.check(
            false,
            format!("check: the good connection was refused: {e}"),
        ),
    }

    let streams = match connector.discover(&case.connection).await {
        Ok(streams) => streams,
        Err(e) => {
            report.check(false, format!("discover failed: {e}"));
            return report;
        }
    };
    report.check(!streams.is_empty(), "discover: at least one stream");
    for stream in &streams {
        if case
            .streams
            .as_ref()
            .is_some_and(|wanted| !wanted.contains(&stream.name))
        {
            continue;
        }
        check_stream(case, stream, &mut report).await;
    }
    if let Some(wanted) = &case.streams {
        for name in wanted {
            report.check(
                streams.iter().any(|s| &s.name == name),
                format!("discover: stream {name} is listed"),
            );
        }
    }

    if let Some(rate) = &case.rate {
        let requests: Vec<Instant> = (rate.requests)()
            .into_iter()
            .filter(|at| *at >= good_from)
            .collect();
        match busiest_window(&requests, rate.limit) {
            None => report.check(
                true,
                format!("rate: {} requests within the cap", requests.len()),
            ),
            Some(excess) => report.check(false, format!("rate: {excess}")),
        }
    }
    report
}

async fn check_stream(case: &Case<'_>, stream: &StreamSpec, report: &mut Report) {
    let name = &stream.name;
    let validator = match jsonschema::validator_for(&stream.schema) {
        Ok(validator) => validator,
        Err(e) => {
            report.check(
                false,
                format!("discover {name}: its schema is not valid: {e}"),
            );
            return;
        }
    };
    if stream.sync_modes.contains(&SyncMode::Incremental) {
        report.check(
            stream.cursor_field.is_some(),
            format!("discover {name}: an incremental stream names its cursor field"),
        );
    }

    let full = match collect(case.connector, &case.connection, name, None).await {
        Ok(full) => full,
        Err(e) => {
            report.check(false, format!("read {name}: a full read failed: {e}"));
            return;
        }
    };
    report.check(
        full.ends_with_checkpoint,
        format!("read {name}: a complete read ends with a checkpoint"),
    );
    if let Some(expected) = case.expected.get(name) {
        report.check(
            full.records.len() == *expected,
            format!(
                "read {name}: every page read ({} records, {expected} expected)",
                full.records.len()
            ),
        );
    }
    let invalid: Vec<String> = full
        .records
        .iter()
        .filter_map(|record| {
            let problems: Vec<String> = validator
                .iter_errors(record)
                .map(|e| e.to_string())
                .collect();
            (!problems.is_empty()).then(|| format!("{record}: {}", problems.join("; ")))
        })
        .take(3)
        .collect();
    report.check(
        invalid.is_empty(),
        format!("read {name}: records match the discovered schema {invalid:?}"),
    );
    let counts = identities(stream, &full.records);
    let repeated: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .take(5)
        .collect();
    report.check(
        repeated.is_empty(),
        format!("read {name}: no record read twice in one read {repeated:?}"),
    );

    // Resume from the checkpoint nearest the middle that is not the last.
    let middle = full
        .checkpoints
        .iter()
        .take(full.checkpoints.len().saturating_sub(1))
        .min_by_key(|(before, _)| before.abs_diff(full.records.len() / 2));
    match middle {
        None => report.check(
            true,
            format!("read {name}: one page only, no checkpoint in the middle to resume from"),
        ),
        Some((before, state)) => {
            match collect(case.connector, &case.connection, name, Some(state.clone())).await {
                Err(e) => report.check(false, format!("read {name}: resuming failed: {e}")),
                Ok(rest) => {
                    let mut resumed = full.records[..*before].to_vec();
                    resumed.extend(rest.records);
                    let (lost, repeated) = compare(stream, &full.records, &resumed);
                    report.check(
                        lost.is_empty() && repeated.is_empty(),
                        format!(
                            "read {name}: resumed after record {before} of {}: lost {lost:?}, \
                             repeated {repeated:?}",
                            full.records.len()
                        ),
                    );
                }
            }
        }
    }

    if stream.sync_modes.contains(&SyncMode::Incremental)
        && let Some((_, last)) = full.checkpoints.last()
    {
        match collect(case.connector, &case.connection, name, Some(last.clone())).await {
            Err(e) => report.check(
                false,
                format!("read {name}: reading from the final state failed: {e}"),
            ),
            Ok(again) => {
                let seen = identities(stream, &full.records);
                let reread: Vec<String> = identities(stream, &again.records)
                    .into_keys()
                    .filter(|k| seen.contains_key(k))
                    .take(5)
                    .collect();
                report.check(
                    reread.is_empty(),
                    format!("read {name}: from the final state, nothing already read comes again {reread:?}"),
                );
            }
        }
    }
}

/// What one read yielded.
struct Collected {
    records: Vec<Value>,
    /// Each checkpoint with the number of records before it.
    checkpoints: Vec<(usize, State)>,
    ends_with_checkpoint: bool,
}

async fn collect(
    connector: &dyn Connector,
    connection: &Connection,
    stream: &str,
    state: Option<State>,
) -> Result<Collected, ConnectorError> {
    let read = async {
        let mut messages = connector.read(connection, stream, state);
        let mut collected = Collected {
            records: Vec::new(),
            checkpoints: Vec::new(),
            ends_with_checkpoint: false,
        };
        let mut count = 0;
        while let Some(message) = messages.next().await {
            count += 1;
            if count > MAX_MESSAGES {
                return Err(ConnectorError::source_bug(format!(
                    "more than {MAX_MESSAGES} messages: the read does not end"
                )));
            }
            match message? {
                Message::Record(record) => {
                    collected.records.push(record.data);
                    collected.ends_with_checkpoint = false;
                }
                Message::Checkpoint(state) => {
                    collected.checkpoints.push((collected.records.len(), state));
                    collected.ends_with_checkpoint = true;
                }
            }
        }
        Ok(collected)
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| {
            ConnectorError::transient(format!("reading {stream} took over {READ_TIMEOUT:?}"))
        })?
}

/// How often each record identity occurs: its primary key, or the whole record without one.
fn identities(stream: &StreamSpec, records: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for record in records {
        let identity = match stream.key_of(record) {
            Some(key) if !key.is_empty() => Value::Array(key).to_string(),
            _ => record.to_string(),
        };
        *counts.entry(identity).or_insert(0) += 1;
    }
    counts
}

/// Identities in `expected` missing from `actual`, and those `actual` has more often.
fn compare(
    stream: &StreamSpec,
    expected: &[Value],
    actual: &[Value],
) -> (Vec<String>, Vec<String>) {
    let expected = identities(stream, expected);
    let actual = identities(stream, actual);
    let lost = expected
        .iter()
        .filter(|(k, n)| actual.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, _)| k.clone())
        .take(5)
        .collect();
    let repeated = actual
        .iter()
        .filter(|(k, n)| expected.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, _)| k.clone())
        .take(5)
        .collect();
    (lost, repeated)
}

/// A window in which the requests went over `limit`, described; `None` when none did. One
/// request of slack covers the source timing requests a little apart from the client.
fn busiest_window(requests: &[Instant], limit: RateLimit) -> Option<String> {
    let mut times = requests.to_vec();
    times.sort();
    for (i, start) in times.iter().enumerate() {
        for (j, end) in times.iter().enumerate().skip(i + 1) {
            let window = end.duration_since(*start);
            let count = j - i + 1;
            let allowed = limit.allows_in(window) + 1.0;
            if f64::from(u32::try_from(count).unwrap_or(u32::MAX)) > allowed {
                return Some(format!(
                    "{count} requests in {window:?}, where {} requests/s with a burst of {} allow {allowed:.1}",
                    limit.requests_per_second(),
                    limit.burst()
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_check_finds_a_burst_over_the_cap() {
        let limit = RateLimit::new(10.0, 2).unwrap();
        let start = Instant::now();
        let paced: Vec<Instant> = (0..20)
            .map(|i| start + Duration::from_millis(100 * i))
            .collect();
        assert_eq!(busiest_window(&paced, limit), None);
        let burst: Vec<Instant> = (0..6).map(|i| start + Duration::from_millis(i)).collect();
        assert!(busiest_window(&burst, limit).is_some());
    }
}
