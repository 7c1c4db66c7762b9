//! Replay: putting deliveries back on the queue, keeping their ids, so the receiver sees the
//! same `webhook-id` it saw before.

use chrono::{DateTime, Utc};
use junction_schema::entities::delivery;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::queue::{Queue, QueueError, Task};

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
    db: &impl ConnectionTrait,
    queue: &dyn Queue,
    tenant_id: &str,
    message_id: &str,
) -> Result<usize, ReplayError> {
    let rows = delivery::Entity::find()
        .filter(delivery::Column::TenantId.eq(tenant_id))
        .filter(delivery::Column::MessageId.eq(message_id))
        .filter(delivery::Column::Status.ne(delivery::PENDING))
        .all(db)
        .await?;
    requeue(db, queue, rows).await
}

/// Re-queues an endpoint's dead-lettered deliveries created in `[since, until)`.
pub async fn replay_endpoint(
    db: &impl ConnectionTrait,
    queue: &dyn Queue,
    tenant_id: &str,
    endpoint_id: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<usize, ReplayError> {
    let rows = delivery::Entity::find()
        .filter(delivery::Column::TenantId.eq(tenant_id))
        .filter(delivery::Column::EndpointId.eq(endpoint_id))
        .filter(delivery::Column::Status.eq(delivery::DEAD))
        .filter(delivery::Column::CreatedAt.gte(since))
        .filter(delivery::Column::CreatedAt.lt(until))
        .all(db)
        .await?;
    requeue(db, queue, rows).await
}

/// Re-queues a tenant's dead-lettered deliveries, optionally of one endpoint and within
/// `[since, until)` of their creation.
pub async fn replay_dead_letters(
    db: &impl ConnectionTrait,
    queue: &dyn Queue,
    tenant_id: &str,
    endpoint_id: Option<&str>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<usize, ReplayError> {
    let mut query = delivery::Entity::find()
        .filter(delivery::Column::TenantId.eq(tenant_id))
        .filter(delivery::Column::Status.eq(delivery::DEAD));
    if let Some(endpoint_id) = endpoint_id {
        query = query.filter(delivery::Column::EndpointId.eq(endpoint_id));
    }
    if let Some(since) = since {
        query = query.filter(delivery::Column::CreatedAt.gte(since));
    }
    if let Some(until) = until {
        query = query.filter(delivery::Column::CreatedAt.lt(until));
    }
    let rows = query.all(db).await?;
    requeue(db, queue, rows).await
}

async fn requeue(
    db: &impl ConnectionTrait,
    queue: &dyn Queue,
    rows: Vec<delivery::Model>,
) -> Result<usize, ReplayError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
    // A replay starts a fresh retry schedule; earlier attempts stay on record.
    delivery::Entity::update_many()
        .col_expr(delivery::Column::Attempts, Expr::value(0))
        .col_expr(
            delivery::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .filter(delivery::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    let tasks: Vec<Task> = rows
        .into_iter()
        .map(|row| Task {
            delivery_id: row.id,
            tenant_id: row.tenant_id,
            message_id: row.message_id,
            endpoint_id: row.endpoint_id,
            attempts: 0,
        })
        .collect();
    queue.publish(&tasks).await?;
    Ok(tasks.len())
}
