//! Queuing scheduled runs: every active connection whose `next_sync_at` has come gets a run,
//! once per tick however many workers look. A worker claims the tick by moving
//! `next_sync_at` on from the value it read, and queues the run in the same transaction; a
//! connection whose last run is still live skips the tick (the unique index over live runs).

use std::time::Duration;

use chrono::{DateTime, Utc};
use junction_schema::entities::{connection, sync_run};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionSession, TransactionTrait,
};

use crate::runs;

/// Connections looked at per round.
const ROUND: u64 = 100;

/// Queues the runs of connections due at `now`; returns how many were queued.
pub async fn queue_due(
    db: &(impl ConnectionTrait + TransactionTrait),
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    let due = connection::Entity::find()
        .filter(connection::Column::Status.eq(connection::ACTIVE))
        .filter(connection::Column::NextSyncAt.lte(now))
        .order_by_asc(connection::Column::NextSyncAt)
        .limit(ROUND)
        .all(db)
        .await?;
    let mut queued = 0;
    for row in due {
        let txn = db.begin().await?;
        let claimed = connection::Entity::update_many()
            .col_expr(
                connection::Column::NextSyncAt,
                Expr::value(next_tick(&row, now)),
            )
            .filter(connection::Column::Id.eq(row.id.as_str()))
            .filter(connection::Column::Status.eq(connection::ACTIVE))
            .filter(connection::Column::NextSyncAt.eq(row.next_sync_at))
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            // Another worker took this tick.
            continue;
        }
        let run = runs::queue(&txn, &row.tenant_id, &row.id, sync_run::SCHEDULED, now).await?;
        txn.commit().await?;
        match run {
            Some(run) => {
                tracing::debug!(connection = %row.id, run = %run, "queued a scheduled sync");
                queued += 1;
            }
            None => {
                tracing::info!(connection = %row.id, "a sync is still running at the next tick; skipping the tick")
            }
        }
    }
    Ok(queued)
}

/// The tick after the one due now: one schedule on, or, when ticks were missed (nothing ran
/// for a while), one schedule from now rather than a burst of catching up.
fn next_tick(row: &connection::Model, now: DateTime<Utc>) -> DateTime<Utc> {
    let every = Duration::from_secs(u64::try_from(row.schedule_seconds).unwrap_or(30).max(1));
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::seconds(30));
    let next = row.next_sync_at + every;
    if next > now { next } else { now + every }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_tick_keeps_the_rhythm_unless_ticks_were_missed() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let row = connection::Model {
            id: "c".into(),
            tenant_id: "t".into(),
            connector: "x".into(),
            config: serde_json::json!({}),
            credentials: serde_json::json!({}),
            schedule_seconds: 30,
            streams: serde_json::json!([]),
            status: connection::ACTIVE.into(),
            next_sync_at: start,
            created_at: start,
            updated_at: start,
        };
        let seconds = |s| chrono::Duration::seconds(s);
        assert_eq!(next_tick(&row, start + seconds(2)), start + seconds(30));
        assert_eq!(
            next_tick(&row, start + seconds(95)),
            start + seconds(125),
            "missed ticks are not caught up"
        );
    }
}
