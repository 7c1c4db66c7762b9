//! Reading the records a connection synced, page by page.

use chrono::{DateTime, Utc};
use junction_schema::entities::connector_record;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::SyncError;

/// One page of a stream's records in key order, after the key `after`, changed at or after
/// `updated_since` when given.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    connection_id: &str,
    stream: &str,
    after: Option<&str>,
    updated_since: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<connector_record::Model>, SyncError> {
    let mut query = connector_record::Entity::find()
        .filter(connector_record::Column::TenantId.eq(tenant_id))
        .filter(connector_record::Column::ConnectionId.eq(connection_id))
        .filter(connector_record::Column::Stream.eq(stream));
    if let Some(after) = after {
        query = query.filter(connector_record::Column::RecordKey.gt(after));
    }
    if let Some(since) = updated_since {
        query = query.filter(connector_record::Column::UpdatedAt.gte(since));
    }
    Ok(query
        .order_by_asc(connector_record::Column::RecordKey)
        .limit(limit)
        .all(db)
        .await?)
}
