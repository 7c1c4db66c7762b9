//! The queue's state as gauges, read from the `deliveries` table (the record of every
//! delivery on either queue backend) every so often: how many are pending, how many of
//! those failed before, how late the longest-waiting due one is, and how many dead letters
//! wait. Three statements, each over one partial index (pending rows, dead rows), so the cost
//! follows the backlog, not the history. Every dispatcher reads the same table, so each
//! reports the same values: aggregate them with `max`, not `sum`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use junction_schema::entities::delivery;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::metrics::{DEAD_LETTERS, QUEUE_DEPTH, QUEUE_OLDEST_AGE, RETRYING};

/// The queue's state at one moment.
#[derive(Debug, PartialEq)]
pub struct QueueState {
    pub pending: i64,
    pub retrying: i64,
    /// How long the longest-waiting due delivery has been due.
    pub oldest_due: Duration,
    pub dead: i64,
}

/// Reads the queue's state.
pub async fn read(db: &DatabaseConnection) -> Result<QueueState, DbErr> {
    let now = Utc::now();
    let pending = Expr::cust(format!("deliveries.status = '{}'", delivery::PENDING));
    let (pending_count, retrying): (i64, i64) = delivery::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "pending")
        .column_as(
            Expr::cust("COUNT(CASE WHEN deliveries.attempts > 0 THEN 1 END)"),
            "retrying",
        )
        .filter(pending.clone())
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or((0, 0));
    // Only due rows: a leased row's time is its lease's end, a retry's its turn.
    let oldest: Option<DateTime<Utc>> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::NextAttemptAt)
        .filter(pending)
        .filter(delivery::Column::NextAttemptAt.lte(now))
        .order_by_asc(delivery::Column::NextAttemptAt)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    let dead: i64 = delivery::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "dead")
        .filter(delivery::is_dead())
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or(0);
    let oldest_due = oldest
        .and_then(|at| (now - at).to_std().ok())
        .unwrap_or_default();
    Ok(QueueState {
        pending: pending_count,
        retrying,
        oldest_due,
        dead,
    })
}

/// Sets the queue gauges from the database every `every`, for as long as the task runs.
pub async fn refresh(db: DatabaseConnection, every: Duration) {
    let depth = metrics::gauge!(QUEUE_DEPTH);
    let oldest = metrics::gauge!(QUEUE_OLDEST_AGE);
    let retrying = metrics::gauge!(RETRYING);
    let dead = metrics::gauge!(DEAD_LETTERS);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match read(&db).await {
            Ok(state) => {
                depth.set(state.pending as f64);
                retrying.set(state.retrying as f64);
                oldest.set(state.oldest_due.as_secs_f64());
                dead.set(state.dead as f64);
            }
            Err(error) => tracing::warn!(%error, "cannot read the queue's state for metrics"),
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseConnection;

    use super::*;
    use crate::test_database::{published, published_on_postgres};

    /// Four deliveries pending (two endpoints, two messages); one failed once and is due
    /// again, one is dead.
    async fn check(db: DatabaseConnection) {
        let empty = read(&db).await.unwrap();
        assert_eq!((empty.pending, empty.retrying, empty.dead), (4, 0, 0));
        let past = Utc::now() - chrono::Duration::seconds(120);
        let ids: Vec<String> = delivery::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        delivery::Entity::update_many()
            .col_expr(delivery::Column::Attempts, Expr::value(1))
            .col_expr(delivery::Column::NextAttemptAt, Expr::value(past))
            .filter(delivery::Column::Id.eq(ids[0].as_str()))
            .exec(&db)
            .await
            .unwrap();
        delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(delivery::DEAD))
            .filter(delivery::Column::Id.eq(ids[1].as_str()))
            .exec(&db)
            .await
            .unwrap();
        let state = read(&db).await.unwrap();
        assert_eq!((state.pending, state.retrying, state.dead), (3, 1, 1));
        assert!(
            state.oldest_due >= Duration::from_secs(119),
            "{:?}",
            state.oldest_due
        );
    }

    #[tokio::test]
    async fn the_queue_state_is_read_on_sqlite() {
        let dir = tempfile::TempDir::new().unwrap();
        check(published(&dir, &["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], 2).await).await;
    }

    #[tokio::test]
    async fn the_queue_state_is_read_on_postgres() {
        check(published_on_postgres(&["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], 2).await)
            .await;
    }
}
