//! Sync runs as users see them: trigger one, cancel one, read the history.

use chrono::{DateTime, Utc};
use junction_queue::statement_shapes::placeholders;
use junction_schema::entities::sync_run;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};

use crate::{SyncError, connections};

/// Signalled when this process queues a run: its runner leases it at once instead of at its
/// next poll. Runners elsewhere poll.
static QUEUED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Resolves when this process next queues a run.
pub async fn queued_here() {
    QUEUED.notified().await;
}

pub(crate) fn wake_local_runners() {
    QUEUED.notify_waiters();
}

/// Queues a run of `connection_id` unless it has a live (queued or running) one: the unique
/// index over live runs refuses a second, so of two callers at once only one queues. Returns
/// the run queued. Run it in the caller's transaction.
pub(crate) async fn queue(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    connection_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, sea_orm::DbErr> {
    let id = uuid::Uuid::now_v7().to_string();
    let backend = db.get_database_backend();
    let sql = placeholders(
        backend,
        "INSERT INTO sync_runs (id, tenant_id, connection_id, status, reason, counts, attempts, \
         run_after, cancel_requested, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $7, $7) ON CONFLICT DO NOTHING",
    );
    let values: Vec<sea_orm::Value> = vec![
        id.clone().into(),
        tenant_id.into(),
        connection_id.into(),
        sync_run::QUEUED.into(),
        reason.into(),
        serde_json::json!({}).into(),
        now.into(),
        false.into(),
    ];
    let inserted = db
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .rows_affected();
    Ok((inserted == 1).then_some(id))
}

/// What [`trigger`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct Triggered {
    pub run: sync_run::Model,
    /// False when the connection already had a live run: that run is answered.
    pub queued: bool,
}

/// Queues a sync of the connection now (paused or not), or answers the live run it already
/// has: a connection never syncs twice at once.
pub async fn trigger(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    connection_id: &str,
) -> Result<Triggered, SyncError> {
    connections::get(db, tenant_id, connection_id).await?;
    // A live run that blocks the insert may end before it is read: then try again.
    for _ in 0..3 {
        if let Some(id) = queue(db, tenant_id, connection_id, sync_run::MANUAL, Utc::now()).await? {
            wake_local_runners();
            return Ok(Triggered {
                run: get(db, tenant_id, &id).await?,
                queued: true,
            });
        }
        if let Some(run) = live(db, connection_id).await? {
            return Ok(Triggered { run, queued: false });
        }
    }
    Err(SyncError::Conflict(
        "the connection's runs are changing too fast to queue another; try again".into(),
    ))
}

/// The connection's queued or running run.
pub async fn live(
    db: &impl ConnectionTrait,
    connection_id: &str,
) -> Result<Option<sync_run::Model>, SyncError> {
    Ok(sync_run::Entity::find()
        .filter(sync_run::Column::ConnectionId.eq(connection_id))
        .filter(sync_run::Column::Status.is_in([sync_run::QUEUED, sync_run::RUNNING]))
        .one(db)
        .await?)
}

pub async fn get(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    id: &str,
) -> Result<sync_run::Model, SyncError> {
    sync_run::Entity::find_by_id(id)
        .filter(sync_run::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("no sync run {id:?}")))
}

/// Cancels a run: a queued one at once; a running one is asked to stop, which its worker
/// notices between pages (what it committed stays). A finished run is a conflict.
pub async fn cancel(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    id: &str,
) -> Result<sync_run::Model, SyncError> {
    let now = Utc::now();
    let run = get(db, tenant_id, id).await?;
    if !run.is_live() {
        return Err(SyncError::Conflict(format!(
            "sync run {id:?} already finished ({})",
            run.status
        )));
    }
    // Each update applies only to the state it expects, so a run that moved on meanwhile
    // (leased, finished) is judged again below.
    sync_run::Entity::update_many()
        .col_expr(
            sync_run::Column::Status,
            sea_orm::sea_query::Expr::value(sync_run::CANCELLED),
        )
        .col_expr(
            sync_run::Column::FinishedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .col_expr(
            sync_run::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(sync_run::Column::Id.eq(id))
        .filter(sync_run::Column::Status.eq(sync_run::QUEUED))
        .exec(db)
        .await?;
    sync_run::Entity::update_many()
        .col_expr(
            sync_run::Column::CancelRequested,
            sea_orm::sea_query::Expr::value(true),
        )
        .col_expr(
            sync_run::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(sync_run::Column::Id.eq(id))
        .filter(sync_run::Column::Status.eq(sync_run::RUNNING))
        .exec(db)
        .await?;
    get(db, tenant_id, id).await
}

/// One page of a connection's runs, newest first, before the run `before`.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    connection_id: &str,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<sync_run::Model>, SyncError> {
    let mut query = sync_run::Entity::find()
        .filter(sync_run::Column::TenantId.eq(tenant_id))
        .filter(sync_run::Column::ConnectionId.eq(connection_id));
    // Ids are UUIDv7: their order is creation order.
    if let Some(before) = before {
        query = query.filter(sync_run::Column::Id.lt(before));
    }
    Ok(query
        .order_by_desc(sync_run::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}
