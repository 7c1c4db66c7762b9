//! Reading published messages.

use chrono::{DateTime, Utc};
use junction_schema::entities::message;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::WebhookError;

pub async fn get(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    id: &str,
) -> Result<message::Model, WebhookError> {
    message::Entity::find_by_id(id)
        .filter(message::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?
        .ok_or_else(|| WebhookError::NotFound(format!("no message {id:?}")))
}

#[derive(Clone, Debug, Default)]
pub struct MessageFilter {
    pub event_type: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// One page of messages, newest first, after the message `after`.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    after: Option<&str>,
    limit: u64,
    filter: &MessageFilter,
) -> Result<Vec<message::Model>, WebhookError> {
    let mut query = message::Entity::find().filter(message::Column::TenantId.eq(tenant_id));
    // Ids are UUIDv7: their order is creation order.
    if let Some(after) = after {
        query = query.filter(message::Column::Id.lt(after));
    }
    if let Some(event_type) = &filter.event_type {
        query = query.filter(message::Column::EventType.eq(event_type));
    }
    if let Some(at) = filter.created_after {
        query = query.filter(message::Column::CreatedAt.gte(at));
    }
    if let Some(at) = filter.created_before {
        query = query.filter(message::Column::CreatedAt.lt(at));
    }
    Ok(query
        .order_by_desc(message::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}
