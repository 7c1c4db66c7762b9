//! Numbers over delivery history: for one endpoint of a tenant, or for the whole tenant.

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery, delivery_attempt};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

/// What happened to deliveries created since a time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliveryStats {
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
    /// Attempt durations in milliseconds: median, 95th and 99th percentiles.
    pub latency_ms: Option<[i64; 3]>,
}

impl DeliveryStats {
    /// Delivered over deliveries; 1 when there were none.
    pub fn success_rate(&self) -> f64 {
        if self.deliveries == 0 {
            1.0
        } else {
            self.delivered as f64 / self.deliveries as f64
        }
    }
}

/// Stats of `tenant_id`'s deliveries since `since`, to `endpoint_id` only when given.
pub async fn delivery_stats(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    endpoint_id: Option<&str>,
    since: DateTime<Utc>,
) -> Result<DeliveryStats, DbErr> {
    let mut deliveries = delivery::Entity::find()
        .filter(delivery::Column::TenantId.eq(tenant_id))
        .filter(delivery::Column::CreatedAt.gte(since));
    let mut attempts = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::TenantId.eq(tenant_id))
        .filter(delivery_attempt::Column::CreatedAt.gte(since));
    if let Some(endpoint_id) = endpoint_id {
        deliveries = deliveries.filter(delivery::Column::EndpointId.eq(endpoint_id));
        attempts = attempts.filter(delivery_attempt::Column::EndpointId.eq(endpoint_id));
    }
    let deliveries = deliveries.all(db).await?;
    let mut stats = DeliveryStats {
        deliveries: deliveries.len() as u64,
        ..DeliveryStats::default()
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
    let outcomes: Vec<(i64, Option<String>)> = attempts
        .select_only()
        .column(delivery_attempt::Column::DurationMs)
        .column(delivery_attempt::Column::ErrorKind)
        .into_tuple()
        .all(db)
        .await?;
    stats.attempts = outcomes.len() as u64;
    stats.failed_attempts = outcomes.iter().filter(|(_, error)| error.is_some()).count() as u64;
    let mut durations: Vec<i64> = outcomes.into_iter().map(|(ms, _)| ms).collect();
    durations.sort_unstable();
    if !durations.is_empty() {
        let at = |p: f64| durations[((durations.len() - 1) as f64 * p).round() as usize];
        stats.latency_ms = Some([at(0.5), at(0.95), at(0.99)]);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::DeliveryStats;

    #[test]
    fn success_rate_of_nothing_is_one() {
        assert_eq!(DeliveryStats::default().success_rate(), 1.0);
        let half = DeliveryStats {
            deliveries: 4,
            delivered: 2,
            ..DeliveryStats::default()
        };
        assert_eq!(half.success_rate(), 0.5);
    }
}
