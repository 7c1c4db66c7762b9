//! The outbox relay: `publishEvent` writes the message, its deliveries and an `outbox` row
//! naming them in one database transaction; a replay writes an outbox row per delivery. The
//! relay sends the pending deliveries the rows name to the dispatch topic, then deletes the
//! rows. A crash between the two sends them again: a duplicate, which the queue drops once
//! the first is settled, never a loss.
//!
//! On PostgreSQL the rows are locked (`SKIP LOCKED`) while they are sent, so the relays of
//! several dispatchers share the work instead of repeating it.

use std::time::Duration;

use junction_schema::entities::outbox;
use rdkafka::producer::FutureProducer;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryOrder, QuerySelect,
};

use super::send_tasks;
use crate::statement_shapes::begin_key_lookups;
use crate::{QueueError, outbox as rows};

/// Outbox rows taken per round (each names one delivery or all of a message's).
const BATCH: u64 = 200;

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
                Ok(taken) if taken as u64 == BATCH => continue,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "the outbox relay failed a round; trying again");
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// One round: sends what up to a batch of outbox rows name; returns how many rows.
    pub async fn once(&self) -> Result<usize, QueueError> {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            let txn = begin_key_lookups(&self.db).await?;
            let taken = self.relay(&txn, true).await?;
            txn.commit().await?;
            Ok(taken)
        } else {
            // SQLite has one writer; a transaction held while sending would stall it.
            self.relay(&self.db, false).await
        }
    }

    async fn relay(&self, db: &impl ConnectionTrait, lock: bool) -> Result<usize, QueueError> {
        let mut query = outbox::Entity::find()
            .order_by_asc(outbox::Column::Id)
            .limit(BATCH);
        if lock {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let taken = query.all(db).await?;
        if taken.is_empty() {
            return Ok(0);
        }
        let tasks = rows::pending_deliveries(db, &taken).await?;
        send_tasks(db, &self.producer, &self.topic, &tasks).await?;
        rows::delete(db, taken.iter().map(|row| row.id)).await?;
        tracing::debug!(deliveries = tasks.len(), "relayed deliveries to Kafka");
        Ok(taken.len())
    }
}
