//! Runs leased from the database, as the embedded queue leases deliveries: a worker takes a
//! run by stamping its token and an expiry in one conditional UPDATE, renews the expiry as it
//! works, and writes the run's end only while the token is still its own. A run whose worker
//! died (its lease ran out) is leased again by another, so any number of workers share runs
//! and none is lost.
//!
//! Every write of a worker checks its token; the commit of records and state does it in its
//! own transaction ([`renew`]), so a worker that lost its run (it stalled past the lease and
//! another took over) can no longer store anything.

use std::time::Duration;

use chrono::{DateTime, Utc};
use junction_queue::statement_shapes::placeholders;
use junction_schema::entities::sync_run;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, FromQueryResult, Statement, Value as DbValue};

/// A run this worker holds.
#[derive(Clone, Debug)]
pub struct Lease {
    pub run: sync_run::Model,
    pub token: String,
    pub length: Duration,
}

/// Why a worker must stop writing.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease on sync run {0} was lost: another worker holds it, or it was deleted")]
    Lost(String),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

fn expiry(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::seconds(60))
}

/// What may be leased: queued and due, or running under a lease that ran out.
const LEASABLE: &str = "((status = 'queued' AND run_after <= $1) \
     OR (status = 'running' AND lease_expires_at < $1))";

/// Leases the run due longest, if any; `None` when there is nothing to do.
pub async fn next(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    length: Duration,
) -> Result<Option<Lease>, DbErr> {
    let backend = db.get_database_backend();
    // A few candidates, then a conditional UPDATE each: of two workers after one run, the
    // UPDATE of the second finds it no longer leasable (PostgreSQL re-reads the row it waited
    // for; SQLite writes one at a time).
    let candidates = sync_run::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            placeholders(
                backend,
                &format!(
                    "SELECT * FROM sync_runs WHERE status IN ('queued', 'running') \
                     AND run_after <= $1 AND {LEASABLE} ORDER BY run_after LIMIT 8"
                ),
            ),
            [now.into()],
        ))
        .all(db)
        .await?;
    for candidate in candidates {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let sql = placeholders(
            backend,
            &format!(
                "UPDATE sync_runs SET status = 'running', lease_token = $2, lease_expires_at = $3, \
                 started_at = COALESCE(started_at, $1), updated_at = $1 \
                 WHERE id = $4 AND {LEASABLE}"
            ),
        );
        let values: Vec<DbValue> = vec![
            now.into(),
            token.clone().into(),
            expiry(now, length).into(),
            candidate.id.clone().into(),
        ];
        let taken = db
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
            .rows_affected();
        if taken == 1
            && let Some(run) = sync_run::Entity::find_by_id(candidate.id.as_str())
                .one(db)
                .await?
        {
            if candidate.status == sync_run::RUNNING {
                tracing::info!(run = %run.id, connection = %run.connection_id, "taking over a sync run whose worker stopped");
            }
            return Ok(Some(Lease { run, token, length }));
        }
    }
    Ok(None)
}

#[derive(FromQueryResult)]
struct CancelRequested {
    cancel_requested: bool,
}

/// Extends the lease (the caller's transaction, or the database directly) and answers
/// whether the run was asked to stop. [`LeaseError::Lost`] when the token is no longer the
/// run's: the caller must stop and write nothing more.
pub async fn renew(db: &impl ConnectionTrait, lease: &Lease) -> Result<bool, LeaseError> {
    let backend = db.get_database_backend();
    let now = Utc::now();
    let sql = placeholders(
        backend,
        "UPDATE sync_runs SET lease_expires_at = $1, updated_at = $2 \
         WHERE id = $3 AND lease_token = $4 AND status = 'running'",
    );
    let values: Vec<DbValue> = vec![
        expiry(now, lease.length).into(),
        now.into(),
        lease.run.id.clone().into(),
        lease.token.clone().into(),
    ];
    let renewed = db
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .rows_affected();
    if renewed != 1 {
        return Err(LeaseError::Lost(lease.run.id.clone()));
    }
    let flag = CancelRequested::find_by_statement(Statement::from_sql_and_values(
        backend,
        placeholders(
            backend,
            "SELECT cancel_requested FROM sync_runs WHERE id = $1",
        ),
        [lease.run.id.clone().into()],
    ))
    .one(db)
    .await?;
    Ok(flag.is_some_and(|f| f.cancel_requested))
}

/// Records progress: the stream being read, its tries, the counts so far.
pub async fn progress(
    db: &impl ConnectionTrait,
    lease: &Lease,
    stream: &str,
    attempts: i32,
    counts: &serde_json::Value,
) -> Result<(), LeaseError> {
    write(
        db,
        lease,
        "current_stream = $3, attempts = $4, counts = $5, updated_at = $6",
        vec![
            stream.into(),
            attempts.into(),
            counts.clone().into(),
            Utc::now().into(),
        ],
    )
    .await
}

/// Ends the run (`succeeded`, `failed` or `cancelled`) and lets go of it.
pub async fn finish(
    db: &impl ConnectionTrait,
    lease: &Lease,
    status: &str,
    error: Option<String>,
    counts: &serde_json::Value,
) -> Result<(), LeaseError> {
    let now = Utc::now();
    write(
        db,
        lease,
        "status = $3, error = $4, counts = $5, finished_at = $6, updated_at = $6, \
         current_stream = NULL, lease_token = NULL, lease_expires_at = NULL",
        vec![
            status.into(),
            error.into(),
            counts.clone().into(),
            now.into(),
        ],
    )
    .await
}

/// Puts the run back in the queue until `until` (a rate limit), keeping what it committed;
/// `reason` says why, for the user.
pub async fn defer(
    db: &impl ConnectionTrait,
    lease: &Lease,
    until: DateTime<Utc>,
    reason: String,
    counts: &serde_json::Value,
) -> Result<(), LeaseError> {
    write(
        db,
        lease,
        "status = 'queued', run_after = $3, error = $4, counts = $5, updated_at = $6, \
         lease_token = NULL, lease_expires_at = NULL",
        vec![
            until.into(),
            reason.into(),
            counts.clone().into(),
            Utc::now().into(),
        ],
    )
    .await
}

/// Hands a run back to the queue at once (this worker is stopping): another worker resumes
/// it from its last checkpoint without waiting for the lease to run out.
pub async fn release(db: &impl ConnectionTrait, run_id: &str, token: &str) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let now = Utc::now();
    let sql = placeholders(
        backend,
        "UPDATE sync_runs SET status = 'queued', run_after = $1, updated_at = $1, \
         lease_token = NULL, lease_expires_at = NULL \
         WHERE id = $2 AND lease_token = $3 AND status = 'running'",
    );
    let values: Vec<DbValue> = vec![now.into(), run_id.into(), token.into()];
    db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// `UPDATE sync_runs SET <set> WHERE id = $1 AND lease_token = $2`, `values` from `$3` on.
async fn write(
    db: &impl ConnectionTrait,
    lease: &Lease,
    set: &str,
    values: Vec<DbValue>,
) -> Result<(), LeaseError> {
    let backend = db.get_database_backend();
    let sql = placeholders(
        backend,
        &format!("UPDATE sync_runs SET {set} WHERE id = $1 AND lease_token = $2"),
    );
    let mut all: Vec<DbValue> = vec![lease.run.id.clone().into(), lease.token.clone().into()];
    all.extend(values);
    let written = db
        .execute_raw(Statement::from_sql_and_values(backend, sql, all))
        .await?
        .rows_affected();
    if written != 1 {
        return Err(LeaseError::Lost(lease.run.id.clone()));
    }
    Ok(())
}
