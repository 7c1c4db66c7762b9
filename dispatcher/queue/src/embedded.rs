//! The embedded queue: the `deliveries` table itself, on SQLite or PostgreSQL.
//!
//! A row is due when it is `pending` and `next_attempt_at` has passed. Taking a row moves
//! `next_attempt_at` out by the lease and stamps a lease token, in one statement; so a row
//! whose worker died becomes due again when the lease ends, with no sweeper. On PostgreSQL
//! `FOR UPDATE SKIP LOCKED` lets many workers take disjoint batches without waiting on each
//! other; SQLite serialises writers, so the single statement is enough.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use junction_schema::entities::delivery;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait, Value,
};

use super::{Queue, QueueError, Received, Task, outbox};
use crate::background::AbortOnDrop;
use crate::statement_shapes::placeholders;

#[derive(Clone)]
pub struct EmbeddedQueue {
    db: DatabaseConnection,
    lease: Duration,
    _sweep: Option<Arc<AbortOnDrop>>,
}

impl EmbeddedQueue {
    pub fn new(db: DatabaseConnection, lease: Duration) -> Self {
        Self {
            db,
            lease,
            _sweep: None,
        }
    }

    /// Also sweeps the outbox every `interval`: rows that only the Kafka relay reads, which
    /// would otherwise pile up. The dispatcher's queue runs it; a queue used only to publish
    /// (the deliveries subgraph's replays) does not.
    pub fn with_outbox_sweep(mut self, interval: Duration) -> Self {
        let sweep = outbox::Sweep {
            db: self.db.clone(),
            interval,
        };
        self._sweep = Some(Arc::new(AbortOnDrop(tokio::spawn(sweep.run()))));
        self
    }

    fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// Runs `sql` written with `$n` placeholders on either backend.
    async fn execute(
        &self,
        db: &impl ConnectionTrait,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<u64, QueueError> {
        let statement = Statement::from_sql_and_values(
            self.backend(),
            placeholders(self.backend(), sql),
            values,
        );
        Ok(db.execute_raw(statement).await?.rows_affected())
    }

    /// Updates a row the caller still holds; a lost lease means another worker has it now.
    async fn settle(
        &self,
        received: &Received,
        sql: &str,
        mut values: Vec<Value>,
    ) -> Result<(), QueueError> {
        values.push(received.task.delivery_id.clone().into());
        values.push(received.receipt.clone().into());
        let changed = self.execute(&self.db, sql, values).await?;
        if changed == 0 {
            tracing::debug!(delivery = %received.task.delivery_id, "lease lost before settling; another worker owns the task now");
        }
        Ok(())
    }
}

fn lease_length(lease: Duration) -> chrono::Duration {
    chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn publish(&self, tasks: &[Task]) -> Result<(), QueueError> {
        let txn = self.db.begin().await?;
        outbox::requeue(&txn, tasks).await?;
        txn.commit().await?;
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        let now = Utc::now();
        let token = uuid::Uuid::new_v4().to_string();
        let lock = match self.backend() {
            DatabaseBackend::Postgres => "FOR UPDATE SKIP LOCKED",
            _ => "",
        };
        // The status is written out, not bound: only then may a prepared plan use the index
        // of pending deliveries (migration 7), whose condition names it.
        let pending = delivery::PENDING;
        let sql = format!(
            "UPDATE deliveries SET next_attempt_at = $1, lease_token = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM deliveries WHERE status = '{pending}' \
             AND next_attempt_at <= $3 ORDER BY next_attempt_at LIMIT $4 {lock}) \
             RETURNING id, tenant_id, message_id, endpoint_id, attempts"
        );
        let values: Vec<Value> = vec![
            (now + lease_length(self.lease)).into(),
            token.clone().into(),
            now.into(),
            (max as i64).into(),
        ];
        let statement = Statement::from_sql_and_values(
            self.backend(),
            placeholders(self.backend(), &sql),
            values,
        );
        let rows = self.db.query_all_raw(statement).await?;
        rows.iter()
            .map(|row| {
                Ok(Received::new(
                    Task {
                        delivery_id: row.try_get("", "id")?,
                        tenant_id: row.try_get("", "tenant_id")?,
                        message_id: row.try_get("", "message_id")?,
                        endpoint_id: row.try_get("", "endpoint_id")?,
                        attempts: row.try_get("", "attempts")?,
                    },
                    token.clone(),
                ))
            })
            .collect()
    }

    async fn ack(&self, received: &Received) -> Result<(), QueueError> {
        let now = Utc::now();
        self.settle(
            received,
            "UPDATE deliveries SET status = $1, lease_token = NULL, delivered_at = COALESCE(delivered_at, $2), \
             updated_at = $2 WHERE id = $3 AND lease_token = $4",
            vec![delivery::SUCCEEDED.into(), now.into()],
        )
        .await
    }

    async fn retry_at(&self, received: &Received, at: DateTime<Utc>) -> Result<(), QueueError> {
        self.settle(
            received,
            "UPDATE deliveries SET next_attempt_at = $1, lease_token = NULL, updated_at = $2 \
             WHERE id = $3 AND lease_token = $4",
            vec![at.into(), Utc::now().into()],
        )
        .await
    }

    async fn dead_letter(&self, received: &Received, reason: &str) -> Result<(), QueueError> {
        let now = Utc::now();
        self.settle(
            received,
            "UPDATE deliveries SET status = $1, lease_token = NULL, dead_at = $2, last_error = $3, \
             updated_at = $2 WHERE id = $4 AND lease_token = $5",
            vec![delivery::DEAD.into(), now.into(), reason.to_owned().into()],
        )
        .await
    }
}
