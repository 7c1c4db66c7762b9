//! Retention: delivery attempts, and messages whose deliveries are all settled, are deleted
//! once older than the configured period (`[deliveries] retention`). Messages still being
//! delivered are kept, whatever their age.

use std::time::Duration;

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery, delivery_attempt, message};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
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

/// Deletes what is older than `before` and no longer needed.
pub async fn cleanup(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<Removed, DbErr> {
    let attempts = delivery_attempt::Entity::delete_many()
        .filter(delivery_attempt::Column::CreatedAt.lt(before))
        .exec(db)
        .await?
        .rows_affected;
    // Messages with a delivery still pending stay; their deliveries go with them otherwise.
    let still_pending = Query::select()
        .column(delivery::Column::MessageId)
        .from(delivery::Entity)
        .and_where(delivery::Column::Status.eq(delivery::PENDING))
        .to_owned();
    let messages = message::Entity::delete_many()
        .filter(message::Column::CreatedAt.lt(before))
        .filter(message::Column::Id.not_in_subquery(still_pending))
        .exec(db)
        .await?
        .rows_affected;
    Ok(Removed { attempts, messages })
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
        match cleanup(&db, before).await {
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
