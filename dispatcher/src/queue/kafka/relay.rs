//! The outbox relay: `publishEvent` writes the message and one delivery row per endpoint in
//! one database transaction (the outbox); the relay sends due deliveries not yet on Kafka to
//! the dispatch topic, then marks them relayed. A crash between the two sends them again: a
//! duplicate, which the queue drops once the first is settled, never a loss.
//!
//! On PostgreSQL the rows are locked (`SKIP LOCKED`) while they are sent, so the relays of
//! several dispatchers share the work instead of repeating it.

use std::time::Duration;

use chrono::Utc;
use junction_schema::entities::delivery;
use rdkafka::producer::FutureProducer;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use super::send_tasks;
use crate::queue::{QueueError, Task};

/// Deliveries sent per round.
const BATCH: u64 = 500;

pub struct Relay {
    pub db: DatabaseConnection,
    pub producer: FutureProducer,
    pub topic: String,
    /// How long to wait after a round that found less than a full batch.
    pub interval: Duration,
}

impl Relay {
    /// Relays until the task is dropped.
    pub async fn run(self) {
        loop {
            match self.once().await {
                Ok(sent) if sent as u64 == BATCH => continue,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "the outbox relay failed a round; trying again");
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// One round: sends up to a batch of unrelayed due deliveries; returns how many.
    pub async fn once(&self) -> Result<usize, QueueError> {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            let txn = self.db.begin().await?;
            let sent = self.relay(&txn, true).await?;
            txn.commit().await?;
            Ok(sent)
        } else {
            // SQLite has one writer; a transaction held while sending would stall it.
            self.relay(&self.db, false).await
        }
    }

    async fn relay(&self, db: &impl ConnectionTrait, lock: bool) -> Result<usize, QueueError> {
        let mut query = delivery::Entity::find()
            .filter(delivery::Column::Status.eq(delivery::PENDING))
            .filter(delivery::Column::RelayedAt.is_null())
            .order_by_asc(delivery::Column::CreatedAt)
            .limit(BATCH);
        if lock {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = query.all(db).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let tasks: Vec<Task> = rows.into_iter().map(Task::from).collect();
        send_tasks(db, &self.producer, &self.topic, &tasks).await?;
        let ids: Vec<String> = tasks.into_iter().map(|t| t.delivery_id).collect();
        let count = ids.len();
        delivery::Entity::update_many()
            .col_expr(delivery::Column::RelayedAt, Expr::value(Utc::now()))
            .filter(delivery::Column::Id.is_in(ids))
            .exec(db)
            .await?;
        tracing::debug!(count, "relayed deliveries to Kafka");
        Ok(count)
    }
}
