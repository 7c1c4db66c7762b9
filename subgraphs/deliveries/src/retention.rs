//! Retention: delivery attempts, and messages whose deliveries are all settled, are deleted
//! once older than the configured period (`[deliveries] retention`). Messages still being
//! delivered are kept, whatever their age.

use std::time::Duration;

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery, delivery_attempt, message};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, TransactionSession,
    TransactionTrait,
};
use serde::Deserialize;

/// The `[deliveries]` section of `junction.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveriesConfig {
    /// How long payloads and attempts are kept.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the cleanup runs.
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Duration,
}

impl Default for DeliveriesConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            cleanup_interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub attempts: u64,
    pub messages: u64,
}

/// Rows deleted per statement. A first cleanup on a long history can find millions; in
/// batches, each transaction stays short, locks little, and what is done stays done if the
/// process stops midway.
pub const CLEANUP_BATCH: u64 = 5_000;

/// Deletes what is older than `before` and no longer needed, `batch` rows per statement.
pub async fn cleanup(
    db: &(impl ConnectionTrait + TransactionTrait),
    before: DateTime<Utc>,
    batch: u64,
) -> Result<Removed, DbErr> {
    let mut removed = Removed::default();
    loop {
        let old = Query::select()
            .column(delivery_attempt::Column::Id)
            .from(delivery_attempt::Entity)
            .and_where(delivery_attempt::Column::CreatedAt.lt(before))
            .limit(batch)
            .to_owned();
        let deleted = delivery_attempt::Entity::delete_many()
            .filter(delivery_attempt::Column::Id.in_subquery(old))
            .exec(db)
            .await?
            .rows_affected;
        removed.attempts += deleted;
        if deleted < batch {
            break;
        }
    }
    loop {
        // Messages with a delivery still pending stay; their deliveries go with them otherwise.
        let still_pending = Query::select()
            .column(delivery::Column::MessageId)
            .from(delivery::Entity)
            .and_where(delivery::Column::Status.eq(delivery::PENDING))
            .to_owned();
        let txn = db.begin().await?;
        let old: Vec<String> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::CreatedAt.lt(before))
            .filter(message::Column::Id.not_in_subquery(still_pending))
            .limit(batch)
            .into_tuple()
            .all(&txn)
            .await?;
        if old.is_empty() {
            break;
        }
        // Their deliveries' later attempts too: the attempt log has no foreign key on
        // PostgreSQL (migration 10) to take them with the deliveries.
        removed.attempts += delivery_attempt::Entity::delete_many()
            .filter(delivery_attempt::Column::MessageId.is_in(old.iter().map(String::as_str)))
            .exec(&txn)
            .await?
            .rows_affected;
        let deleted = message::Entity::delete_many()
            .filter(message::Column::Id.is_in(old.iter().map(String::as_str)))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        removed.messages += deleted;
        if (old.len() as u64) < batch {
            break;
        }
    }
    Ok(removed)
}

/// Runs `cleanup` every `cleanup_interval` until `shutdown` resolves.
pub async fn run(
    db: sea_orm::DatabaseConnection,
    config: DeliveriesConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let before = Utc::now()
            - chrono::Duration::from_std(config.retention).unwrap_or(chrono::Duration::MAX);
        match cleanup(&db, before, CLEANUP_BATCH).await {
            Ok(removed) if removed != Removed::default() => {
                tracing::info!(
                    attempts = removed.attempts,
                    messages = removed.messages,
                    "retention cleanup"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "retention cleanup failed; trying again later"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(config.cleanup_interval) => {}
        }
    }
}
