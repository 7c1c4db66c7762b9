//! Running one leased sync run to its end: each chosen stream read from its stored
//! checkpoint, committed page by page, and the run's end decided by what went wrong:
//!
//! - a temporary failure: the stream is read again from its last checkpoint after a back-off,
//!   a bounded number of times; then the run fails, naming the failure;
//! - a rate limit: the run goes back to the queue until the time the source gave, holding the
//!   connection (no other run of it starts) while other connections go on;
//! - refused credentials, a wrong configuration, a source's bug: the run fails with the
//!   connector's message.
//!
//! What was committed stays in every case: a stream's state only moves with the records its
//! checkpoint covers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use junction_connector_sdk::{
    Connection, Connector, ConnectorError, ErrorKind, Message, State, StreamSpec,
};
use junction_schema::entities::{connection, sync_run};
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::connections::{stream_names, to_connection};
use crate::lease::{self, Lease, LeaseError};
use crate::store::{self, Batch, CommitError, Counts, StreamPosition, Target};
use crate::{Catalog, ConnectorsConfig};

/// What a run needs from its worker.
pub(crate) struct Context {
    pub db: DatabaseConnection,
    pub catalog: Arc<Catalog>,
    pub config: ConnectorsConfig,
}

/// Why reading a stream stopped early.
enum Stop {
    Connector(ConnectorError),
    Commit(CommitError),
}

impl From<CommitError> for Stop {
    fn from(error: CommitError) -> Self {
        match error {
            CommitError::Record(error) => Self::Connector(error),
            other => Self::Commit(other),
        }
    }
}

impl From<LeaseError> for Stop {
    fn from(error: LeaseError) -> Self {
        Self::Commit(CommitError::Lease(error))
    }
}

/// Runs `lease`'s run until it ends, is deferred, or the lease is lost.
pub(crate) async fn run(context: &Context, lease: Lease) {
    let run_id = lease.run.id.clone();
    if let Err(error) = run_leased(context, &lease).await {
        match error {
            LeaseError::Lost(_) => {
                tracing::warn!(run = %run_id, "stopped a sync run: {error}")
            }
            LeaseError::Database(error) => {
                // The lease runs out and another worker resumes the run from its checkpoint.
                tracing::error!(run = %run_id, %error, "a sync run stopped on a database error; it is resumed once its lease runs out")
            }
        }
    }
}

async fn run_leased(context: &Context, lease: &Lease) -> Result<(), LeaseError> {
    let db = &context.db;
    let mut counts: Counts = serde_json::from_value(lease.run.counts.clone()).unwrap_or_default();
    let fail = |message: String, counts: &Counts| {
        let counts = serde_json::to_value(counts).unwrap_or_default();
        async move {
            tracing::warn!(run = %lease.run.id, connection = %lease.run.connection_id, error = %message, "sync run failed");
            lease::finish(db, lease, sync_run::FAILED, Some(message), &counts).await
        }
    };
    if lease.run.cancel_requested {
        return finish(context, lease, sync_run::CANCELLED, &counts).await;
    }
    let Some(row) = connection::Entity::find_by_id(lease.run.connection_id.as_str())
        .one(db)
        .await?
    else {
        return fail("the connection was deleted".into(), &counts).await;
    };
    let Some(connector) = context.catalog.get(&row.connector) else {
        return fail(
            format!(
                "connector {:?} is not in this worker's catalog (is its manifest in every worker's connectors.manifests folder?)",
                row.connector
            ),
            &counts,
        )
        .await;
    };
    let connection = to_connection(&row);
    let discovered = match connector.discover(&connection).await {
        Ok(streams) => streams,
        Err(error) => return ended_by(context, lease, error, &counts).await,
    };
    for name in stream_names(&row) {
        if counts.get(&name).is_some_and(|c| c.done) {
            // Read to its end before this run was taken over.
            continue;
        }
        let Some(spec) = discovered.iter().find(|s| s.name == name) else {
            return fail(
                format!(
                    "connector {} no longer has a stream {name:?}",
                    row.connector
                ),
                &counts,
            )
            .await;
        };
        let mut failures: u32 = 0;
        loop {
            let counts_json = serde_json::to_value(&counts).unwrap_or_default();
            lease::progress(db, lease, &name, failures as i32, &counts_json).await?;
            let read = read_stream(
                context,
                lease,
                connector.as_ref(),
                &row,
                &connection,
                spec,
                &mut counts,
            )
            .await;
            match read {
                Ok(()) => break,
                Err(Stop::Commit(CommitError::Cancelled)) => {
                    return finish(context, lease, sync_run::CANCELLED, &counts).await;
                }
                Err(Stop::Commit(CommitError::Lease(error))) => return Err(error),
                Err(Stop::Commit(CommitError::Database(error))) => {
                    return Err(LeaseError::Database(error));
                }
                Err(Stop::Commit(CommitError::Record(error))) | Err(Stop::Connector(error)) => {
                    let error = error.context(format!("stream {name}"));
                    if error.kind() == ErrorKind::Transient
                        && failures < context.config.transient_retries
                    {
                        failures += 1;
                        let wait = backoff(context.config.retry_backoff, failures);
                        tracing::info!(run = %lease.run.id, stream = %name, %error, ?wait, "a temporary failure; reading the stream again from its checkpoint");
                        if wait_holding(context, lease, wait).await? {
                            return finish(context, lease, sync_run::CANCELLED, &counts).await;
                        }
                        continue;
                    }
                    let error = if error.kind() == ErrorKind::Transient {
                        ConnectorError::transient(format!(
                            "{} (gave up after {} tries)",
                            error.message(),
                            failures + 1
                        ))
                    } else {
                        error
                    };
                    return ended_by(context, lease, error, &counts).await;
                }
            }
        }
    }
    finish(context, lease, sync_run::SUCCEEDED, &counts).await
}

async fn finish(
    context: &Context,
    lease: &Lease,
    status: &str,
    counts: &Counts,
) -> Result<(), LeaseError> {
    let counts = serde_json::to_value(counts).unwrap_or_default();
    lease::finish(&context.db, lease, status, None, &counts).await?;
    tracing::info!(run = %lease.run.id, connection = %lease.run.connection_id, status, "sync run ended");
    Ok(())
}

/// Ends the run as `error` says: deferred for a rate limit, failed otherwise.
async fn ended_by(
    context: &Context,
    lease: &Lease,
    error: ConnectorError,
    counts: &Counts,
) -> Result<(), LeaseError> {
    let counts_json = serde_json::to_value(counts).unwrap_or_default();
    if error.kind() == ErrorKind::RateLimited {
        let wait = error
            .retry_after()
            .unwrap_or(context.config.rate_limit_wait);
        let until = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        tracing::info!(run = %lease.run.id, connection = %lease.run.connection_id, %until, "rate limited; the connection waits");
        let reason = format!("{error}; waiting until {}", until.to_rfc3339());
        return lease::defer(&context.db, lease, until, reason, &counts_json).await;
    }
    tracing::warn!(run = %lease.run.id, connection = %lease.run.connection_id, %error, "sync run failed");
    lease::finish(
        &context.db,
        lease,
        sync_run::FAILED,
        Some(error.to_string()),
        &counts_json,
    )
    .await
}

/// `initial`, doubled for each failure after the first.
fn backoff(initial: Duration, failures: u32) -> Duration {
    initial.saturating_mul(1 << failures.saturating_sub(1).min(16))
}

/// Waits `wait`, renewing the lease meanwhile; true when the run was cancelled.
async fn wait_holding(
    context: &Context,
    lease: &Lease,
    wait: Duration,
) -> Result<bool, LeaseError> {
    let deadline = tokio::time::Instant::now() + wait;
    let every = heartbeat(lease);
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep((deadline - now).min(every)).await;
        if lease::renew(&context.db, lease).await? {
            return Ok(true);
        }
    }
}

/// How often a lease is renewed while nothing is committed: a third of it, so two renewals
/// can be late before it runs out.
fn heartbeat(lease: &Lease) -> Duration {
    (lease.length / 3).max(Duration::from_millis(100))
}

/// Reads one stream from its stored checkpoint to its end, committing at each checkpoint.
async fn read_stream(
    context: &Context,
    lease: &Lease,
    connector: &dyn Connector,
    row: &connection::Model,
    connection: &Connection,
    spec: &StreamSpec,
    counts: &mut Counts,
) -> Result<(), Stop> {
    let db = &context.db;
    let mut position = StreamPosition::load(db, &row.id, &spec.name)
        .await
        .map_err(CommitError::Database)?;
    let target = Target {
        lease,
        connector: &row.connector,
        stream: spec,
    };
    let mut messages = connector.read(connection, &spec.name, position.state.clone().map(State));
    let mut records = Vec::new();
    let mut beat = tokio::time::interval(heartbeat(lease));
    beat.reset();
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = beat.tick() => {
                // A slow page: keep the run, and notice a cancellation.
                if lease::renew(db, lease).await? {
                    return Err(Stop::Commit(CommitError::Cancelled));
                }
                continue;
            }
        };
        let batch = match message {
            Some(Ok(Message::Record(record))) => {
                records.push(record.data);
                if records.len() < context.config.batch {
                    continue;
                }
                Batch {
                    records: std::mem::take(&mut records),
                    checkpoint: None,
                    finished: false,
                }
            }
            Some(Ok(Message::Checkpoint(State(state)))) => Batch {
                records: std::mem::take(&mut records),
                checkpoint: Some(state),
                finished: false,
            },
            Some(Err(error)) => return Err(Stop::Connector(error)),
            None => Batch {
                records: std::mem::take(&mut records),
                checkpoint: None,
                finished: true,
            },
        };
        let finished = batch.finished;
        store::commit(db, &target, batch, &mut position, counts).await?;
        beat.reset();
        if finished {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 1), Duration::from_secs(5));
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 4), Duration::from_secs(40));
    }
}
