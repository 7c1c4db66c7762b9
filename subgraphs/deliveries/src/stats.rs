//! Numbers over delivery history: for one endpoint of a tenant, or for the whole tenant.

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery, delivery_attempt};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

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
    /// `retry_depth[n]`: delivered deliveries that needed n + 1 attempts, counting those
    /// made before a replay.
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
    // Counted by the database, grouped small: a window can hold millions of rows.
    // A replayed delivery's attempts before its replay count too (`earlier_attempts`): its
    // depth is every attempt it needed, not only those since the replay.
    let depth = || {
        Expr::col((delivery::Entity, delivery::Column::Attempts)).add(Expr::col((
            delivery::Entity,
            delivery::Column::EarlierAttempts,
        )))
    };
    let groups: Vec<(String, i32, i64)> = deliveries
        .select_only()
        .column(delivery::Column::Status)
        .column_as(depth(), "depth")
        .column_as(
            Expr::from(Func::count(Expr::col(delivery::Column::Id))),
            "deliveries",
        )
        .group_by(delivery::Column::Status)
        .group_by(depth())
        .into_tuple()
        .all(db)
        .await?;
    let mut stats = DeliveryStats::default();
    for (status, attempts, count) in groups {
        let count = count as u64;
        stats.deliveries += count;
        match status.as_str() {
            delivery::SUCCEEDED => {
                stats.delivered += count;
                let depth = Ord::max(attempts, 1) as usize;
                if stats.retry_depth.len() < depth {
                    stats.retry_depth.resize(depth, 0);
                }
                stats.retry_depth[depth - 1] += count;
            }
            delivery::DEAD => stats.dead_lettered += count,
            _ => {}
        }
    }
    // Attempts by duration, fastest first (whole milliseconds: no more groups than the
    // attempt timeout has milliseconds); the counts and the percentiles come from this.
    let histogram: Vec<(i64, i64, i64)> = attempts
        .select_only()
        .column(delivery_attempt::Column::DurationMs)
        .column_as(
            Expr::from(Func::count(Expr::col(delivery_attempt::Column::Id))),
            "attempts",
        )
        .column_as(
            Expr::from(Func::count(Expr::col(delivery_attempt::Column::ErrorKind))),
            "failed",
        )
        .group_by(delivery_attempt::Column::DurationMs)
        .order_by_asc(delivery_attempt::Column::DurationMs)
        .into_tuple()
        .all(db)
        .await?;
    stats.attempts = histogram.iter().map(|(_, n, _)| *n as u64).sum();
    stats.failed_attempts = histogram.iter().map(|(_, _, failed)| *failed as u64).sum();
    if stats.attempts > 0 {
        let last = stats.attempts - 1;
        let at = |p: f64| percentile(&histogram, (last as f64 * p).round() as u64);
        stats.latency_ms = Some([at(0.5), at(0.95), at(0.99)]);
    }
    Ok(stats)
}

/// The duration of the attempt at `rank` (from 0, fastest first) in a histogram of
/// `(duration, attempts, _)` sorted by duration.
fn percentile(histogram: &[(i64, i64, i64)], rank: u64) -> i64 {
    let mut seen = 0;
    for (duration, count, _) in histogram {
        seen += *count as u64;
        if rank < seen {
            return *duration;
        }
    }
    histogram.last().map_or(0, |(duration, _, _)| *duration)
}

#[cfg(test)]
mod tests {
    use super::{DeliveryStats, percentile};

    /// Ranks count from the fastest attempt; each duration covers as many ranks as it has
    /// attempts.
    #[test]
    fn percentiles_are_read_from_the_histogram() {
        let histogram = [(5, 2, 0), (9, 1, 1), (40, 3, 0)];
        let ranks: Vec<i64> = (0..6).map(|rank| percentile(&histogram, rank)).collect();
        assert_eq!(ranks, [5, 5, 9, 40, 40, 40]);
        assert_eq!(percentile(&histogram, 99), 40);
        assert_eq!(percentile(&[], 0), 0);
    }

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
