//! Replay: putting deliveries back on the queue through the outbox (so whichever backend
//! runs takes them), keeping their ids, so the receiver sees the same `webhook-id` it saw
//! before. One message is replayed at once; dead letters in bulk
//! are replayed by a job that records its progress (see [`start_replay`]).

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery, replay_job};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set, TransactionSession,
    TransactionTrait,
};
use uuid::Uuid;

use crate::{QueueError, Task, outbox};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Sends one message again to every endpoint it went to (delivered or dead-lettered;
/// deliveries still under way are left alone). Returns how many deliveries were re-queued.
pub async fn replay_message(
    db: &(impl ConnectionTrait + TransactionTrait),
    tenant_id: &str,
    message_id: &str,
) -> Result<usize, ReplayError> {
    let rows = delivery::Entity::find()
        .filter(delivery::Column::TenantId.eq(tenant_id))
        .filter(delivery::Column::MessageId.eq(message_id))
        .filter(delivery::Column::Status.ne(delivery::PENDING))
        .all(db)
        .await?;
    requeue(db, rows).await
}

/// Which dead letters a bulk replay takes: of one endpoint (or all the tenant's), created in
/// `[since, until)` (either end open).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub endpoint_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl DeadLetterFilter {
    fn query(&self, tenant_id: &str) -> Select<delivery::Entity> {
        let mut query = delivery::Entity::find()
            .filter(delivery::Column::TenantId.eq(tenant_id))
            .filter(delivery::is_dead());
        if let Some(endpoint_id) = &self.endpoint_id {
            query = query.filter(delivery::Column::EndpointId.eq(endpoint_id.as_str()));
        }
        if let Some(since) = self.since {
            query = query.filter(delivery::Column::CreatedAt.gte(since));
        }
        if let Some(until) = self.until {
            query = query.filter(delivery::Column::CreatedAt.lt(until));
        }
        query
    }

    fn of(job: &replay_job::Model) -> Self {
        Self {
            endpoint_id: job.endpoint_id.clone(),
            since: job.since,
            until: job.until,
        }
    }
}

/// Records a bulk replay of the dead letters `filter` matches, counted now; nothing is
/// re-queued until [`run_replay`] runs it.
pub async fn start_replay(
    db: &(impl ConnectionTrait + TransactionTrait),
    tenant_id: &str,
    filter: &DeadLetterFilter,
) -> Result<replay_job::Model, ReplayError> {
    let total = filter.query(tenant_id).count(db).await?;
    let now = Utc::now();
    let job = replay_job::ActiveModel {
        id: Set(Uuid::now_v7().to_string()),
        tenant_id: Set(tenant_id.to_owned()),
        endpoint_id: Set(filter.endpoint_id.clone()),
        since: Set(filter.since),
        until: Set(filter.until),
        status: Set(replay_job::RUNNING.to_owned()),
        total: Set(i64::try_from(total).unwrap_or(i64::MAX)),
        requeued: Set(0),
        cursor: Set(None),
        error: Set(None),
        heartbeat_at: Set(now),
        created_at: Set(now),
        finished_at: Set(None),
    };
    Ok(job.insert(db).await?)
}

/// Runs a replay job to its end, `batch` dead letters at a time, recording progress and a
/// heartbeat after each batch. A failure is recorded on the job as well as returned.
pub async fn run_replay(
    db: &(impl ConnectionTrait + TransactionTrait),
    mut job: replay_job::Model,
    batch: u64,
) -> Result<replay_job::Model, ReplayError> {
    let filter = DeadLetterFilter::of(&job);
    loop {
        let step = async {
            let mut query = filter.query(&job.tenant_id);
            if let Some(cursor) = &job.cursor {
                query = query.filter(delivery::Column::Id.gt(cursor.as_str()));
            }
            let rows = query
                .order_by_asc(delivery::Column::Id)
                .limit(batch)
                .all(db)
                .await?;
            let last = rows.last().map(|row| row.id.clone());
            let count = requeue(db, rows).await?;
            Ok::<_, ReplayError>((last, count))
        };
        let (last, count) = match step.await {
            Ok(step) => step,
            Err(error) => {
                let mut failed = job.clone().into_active_model();
                failed.status = Set(replay_job::FAILED.to_owned());
                failed.error = Set(Some(error.to_string()));
                failed.finished_at = Set(Some(Utc::now()));
                failed.update(db).await?;
                return Err(error);
            }
        };
        let requeued = job
            .requeued
            .saturating_add(i64::try_from(count).unwrap_or(i64::MAX));
        let mut progress = job.into_active_model();
        progress.heartbeat_at = Set(Utc::now());
        match last {
            Some(last) => {
                progress.cursor = Set(Some(last));
                progress.requeued = Set(requeued);
                job = progress.update(db).await?;
            }
            None => {
                progress.status = Set(replay_job::SUCCEEDED.to_owned());
                progress.finished_at = Set(Some(Utc::now()));
                return Ok(progress.update(db).await?);
            }
        }
    }
}

/// Starts and runs a bulk replay in one call; returns the finished job.
pub async fn replay_dead_letters(
    db: &(impl ConnectionTrait + TransactionTrait),
    tenant_id: &str,
    filter: &DeadLetterFilter,
) -> Result<replay_job::Model, ReplayError> {
    let job = start_replay(db, tenant_id, filter).await?;
    run_replay(db, job, REPLAY_BATCH).await
}

/// Dead letters re-queued per step of a replay job.
pub const REPLAY_BATCH: u64 = 500;
/// A running job whose heartbeat is older than this is taken to be abandoned. A batch takes
/// well under a second, so this is generous.
pub const REPLAY_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Looks for abandoned replay jobs every `every` and finishes them, until dropped. Every
/// dispatcher runs it.
pub async fn take_over_abandoned(db: sea_orm::DatabaseConnection, every: std::time::Duration) {
    loop {
        if let Err(error) = resume_abandoned(&db, REPLAY_STALE_AFTER).await {
            tracing::warn!(%error, "cannot take over abandoned replay jobs; trying again later");
        }
        tokio::time::sleep(every).await;
    }
}

/// Takes over running jobs whose heartbeat is older than `stale_after` (their process died)
/// and runs them to the end. Each is claimed by moving its heartbeat only if nobody else did,
/// so of several processes doing this, one runs each job. Returns how many it finished.
pub async fn resume_abandoned(
    db: &(impl ConnectionTrait + TransactionTrait),
    stale_after: std::time::Duration,
) -> Result<usize, ReplayError> {
    let stale = Utc::now() - chrono::Duration::from_std(stale_after).unwrap_or_default();
    let abandoned = replay_job::Entity::find()
        .filter(replay_job::Column::Status.eq(replay_job::RUNNING))
        .filter(replay_job::Column::HeartbeatAt.lt(stale))
        .all(db)
        .await?;
    let mut finished = 0;
    for job in abandoned {
        let claimed = replay_job::Entity::update_many()
            .col_expr(replay_job::Column::HeartbeatAt, Expr::value(Utc::now()))
            .filter(replay_job::Column::Id.eq(job.id.as_str()))
            .filter(replay_job::Column::HeartbeatAt.eq(job.heartbeat_at))
            .exec(db)
            .await?;
        if claimed.rows_affected == 1 {
            tracing::info!(job = %job.id, requeued = job.requeued, "resuming an abandoned replay job");
            run_replay(db, job, REPLAY_BATCH).await?;
            finished += 1;
        }
    }
    Ok(finished)
}

async fn requeue(
    db: &(impl ConnectionTrait + TransactionTrait),
    rows: Vec<delivery::Model>,
) -> Result<usize, ReplayError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
    let txn = db.begin().await?;
    // A replay starts a fresh retry schedule; earlier attempts stay on record, and are
    // counted in `earlier_attempts` so the statistics see the delivery's whole history.
    delivery::Entity::update_many()
        .col_expr(
            delivery::Column::EarlierAttempts,
            Expr::col(delivery::Column::EarlierAttempts).add(Expr::col(delivery::Column::Attempts)),
        )
        .col_expr(delivery::Column::Attempts, Expr::value(0))
        .col_expr(
            delivery::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .filter(delivery::Column::Id.is_in(ids))
        .exec(&txn)
        .await?;
    // A fresh retry schedule: the rows' attempt counts were just reset.
    let tasks: Vec<Task> = rows
        .into_iter()
        .map(|row| Task {
            attempts: 0,
            ..Task::from(row)
        })
        .collect();
    let due = outbox::requeue(&txn, &tasks).await?;
    txn.commit().await?;
    Ok(due.len())
}
