//! Numbers over delivery history, for one tenant's endpoint.

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery, delivery_attempt};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter};

/// What happened to an endpoint's deliveries created since `since`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointStats {
    /// Deliveries created in the window.
    pub deliveries: u64,
    /// Of those, delivered.
    pub delivered: u64,
    /// Of those, dead-lettered.
    pub dead_lettered: u64,
    /// Attempts made in the window, and how many of them failed.
    pub attempts: u64,
    pub failed_attempts: u64,
    /// `retry_depth[n]`: delivered deliveries that needed n + 1 attempts.
    pub retry_depth: Vec<u64>,
}

impl EndpointStats {
    /// Delivered over deliveries; 1 when there were none.
    pub fn success_rate(&self) -> f64 {
        if self.deliveries == 0 {
            1.0
        } else {
            self.delivered as f64 / self.deliveries as f64
        }
    }
}

pub async fn endpoint_stats(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    endpoint_id: &str,
    since: DateTime<Utc>,
) -> Result<EndpointStats, DbErr> {
    let deliveries = delivery::Entity::find()
        .filter(delivery::Column::TenantId.eq(tenant_id))
        .filter(delivery::Column::EndpointId.eq(endpoint_id))
        .filter(delivery::Column::CreatedAt.gte(since))
        .all(db)
        .await?;
    let mut stats = EndpointStats {
        deliveries: deliveries.len() as u64,
        ..EndpointStats::default()
    };
    for row in &deliveries {
        match row.status.as_str() {
            delivery::SUCCEEDED => {
                stats.delivered += 1;
                let depth = row.attempts.max(1) as usize;
                if stats.retry_depth.len() < depth {
                    stats.retry_depth.resize(depth, 0);
                }
                stats.retry_depth[depth - 1] += 1;
            }
            delivery::DEAD => stats.dead_lettered += 1,
            _ => {}
        }
    }
    let attempts = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::TenantId.eq(tenant_id))
        .filter(delivery_attempt::Column::EndpointId.eq(endpoint_id))
        .filter(delivery_attempt::Column::CreatedAt.gte(since));
    stats.attempts = attempts.clone().count(db).await?;
    stats.failed_attempts = attempts
        .filter(delivery_attempt::Column::ErrorKind.is_not_null())
        .count(db)
        .await?;
    Ok(stats)
}
