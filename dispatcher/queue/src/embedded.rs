//! The embedded queue: the `deliveries` table itself, on SQLite or PostgreSQL.
//!
//! A row is due when it is `pending` and `next_attempt_at` has passed. Taking a row moves
//! `next_attempt_at` out by the lease and stamps a lease token, in one statement; so a row
//! whose worker died becomes due again when the lease ends, with no sweeper.
//!
//! The lease statement takes only what can start: at most `per_endpoint_concurrency`
//! deliveries of one endpoint are leased at any time, counting those other workers hold. A
//! task leased beyond that would wait in the worker, or go back to the queue, and every such
//! hand-back is two more writes of the row; with the limit applied here a delivery is written
//! twice in its life, leased and settled (the worker's recorder writes the settlement with
//! the attempt, so `ack` has nothing left to write).
//!
//! The statement walks the queue endpoint by endpoint (migration 11's index on `(endpoint_id,
//! next_attempt_at)` for pending rows): it skips through the endpoints that have pending
//! deliveries, takes each one's oldest due deliveries up to its room (the limit less its
//! deliveries in flight, counted on the index of leased rows), then the oldest of those up to
//! the batch size. An endpoint with a backlog of a million costs the same as one with ten, and
//! its backlog does not hide the others' work. On PostgreSQL the lease runs under a
//! transaction-scoped advisory lock, so two workers leasing at once cannot both fill the same
//! endpoint's room; SQLite serialises writers, so the single statement is enough there.

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

/// The advisory lock (an arbitrary constant: "junction" in ASCII) that lease statements take
/// on PostgreSQL, so each one counts the leases committed before it.
const LEASE_LOCK: i64 = 0x6a75_6e63_7469_6f6e;

/// Deliveries of one endpoint leased at once unless [`EmbeddedQueue::with_per_endpoint_limit`]
/// says otherwise: the dispatcher's default `per_endpoint_concurrency`.
pub const DEFAULT_PER_ENDPOINT_LIMIT: usize = 8;

#[derive(Clone)]
pub struct EmbeddedQueue {
    db: DatabaseConnection,
    lease: Duration,
    per_endpoint: usize,
    _sweep: Option<Arc<AbortOnDrop>>,
}

impl EmbeddedQueue {
    pub fn new(db: DatabaseConnection, lease: Duration) -> Self {
        Self {
            db,
            lease,
            per_endpoint: DEFAULT_PER_ENDPOINT_LIMIT,
            _sweep: None,
        }
    }

    /// At most `limit` deliveries of one endpoint leased at once, across every worker on this
    /// database (the dispatcher's `per_endpoint_concurrency`).
    pub fn with_per_endpoint_limit(mut self, limit: usize) -> Self {
        self.per_endpoint = limit.max(1);
        self
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

/// The lease statement: `$1` the lease's end, `$2` its token, `$3` now, `$4` the batch size,
/// `$5` the per-endpoint limit. The status is written out, not bound: only then may a
/// prepared plan use the partial indexes (migration 11), whose conditions name it.
fn lease_statement(backend: DatabaseBackend) -> String {
    let pending = delivery::PENDING;
    // The endpoints with pending deliveries, one index probe each (a loose index scan).
    let endpoints = format!(
        "endpoints_pending(endpoint_id) AS ( \
           SELECT (SELECT endpoint_id FROM deliveries WHERE status = '{pending}' \
                   ORDER BY endpoint_id LIMIT 1) \
           UNION ALL \
           SELECT (SELECT d.endpoint_id FROM deliveries d WHERE d.status = '{pending}' \
                   AND d.endpoint_id > e.endpoint_id ORDER BY d.endpoint_id LIMIT 1) \
           FROM endpoints_pending e WHERE e.endpoint_id IS NOT NULL)"
    );
    // Each endpoint's oldest due deliveries, at most the limit: what could start if nothing
    // were in flight. PostgreSQL reads them per endpoint (LATERAL) and skips rows another
    // statement holds; SQLite, which has no LATERAL, with a correlated IN.
    let candidates = match backend {
        DatabaseBackend::Postgres => format!(
            "candidates AS ( \
               SELECT c.id, c.endpoint_id, c.next_attempt_at FROM endpoints_pending e \
               CROSS JOIN LATERAL (SELECT x.id, x.endpoint_id, x.next_attempt_at \
                 FROM deliveries x WHERE x.endpoint_id = e.endpoint_id \
                 AND x.status = '{pending}' AND x.next_attempt_at <= $3 \
                 ORDER BY x.next_attempt_at LIMIT $5 FOR UPDATE SKIP LOCKED) c \
               WHERE e.endpoint_id IS NOT NULL)"
        ),
        _ => format!(
            "candidates AS ( \
               SELECT c.id, c.endpoint_id, c.next_attempt_at FROM endpoints_pending e \
               JOIN deliveries c ON c.id IN (SELECT x.id FROM deliveries x \
                 WHERE x.endpoint_id = e.endpoint_id AND x.status = '{pending}' \
                 AND x.next_attempt_at <= $3 ORDER BY x.next_attempt_at LIMIT $5))"
        ),
    };
    format!(
        "WITH RECURSIVE {endpoints}, {candidates}, \
         ranked AS (SELECT id, endpoint_id, next_attempt_at, \
           ROW_NUMBER() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at, id) AS place \
           FROM candidates), \
         in_flight AS (SELECT endpoint_id, COUNT(*) AS leased FROM deliveries \
           WHERE status = '{pending}' AND lease_token IS NOT NULL AND next_attempt_at > $3 \
           GROUP BY endpoint_id), \
         taken AS (SELECT r.id FROM ranked r LEFT JOIN in_flight f ON f.endpoint_id = r.endpoint_id \
           WHERE r.place + COALESCE(f.leased, 0) <= $5 ORDER BY r.next_attempt_at LIMIT $4) \
         UPDATE deliveries SET next_attempt_at = $1, lease_token = $2, updated_at = $3 \
         WHERE id IN (SELECT id FROM taken) \
         RETURNING id, tenant_id, message_id, endpoint_id, attempts"
    )
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
        let values: Vec<Value> = vec![
            (now + lease_length(self.lease)).into(),
            token.clone().into(),
            now.into(),
            (max as i64).into(),
            (self.per_endpoint as i64).into(),
        ];
        let statement = Statement::from_sql_and_values(
            self.backend(),
            placeholders(self.backend(), &lease_statement(self.backend())),
            values,
        );
        let rows = match self.backend() {
            DatabaseBackend::Postgres => {
                let txn = self.db.begin().await?;
                // Taken before the statement, so the statement's snapshot holds every lease
                // committed by the worker that had the lock before. (Turning sorts and bitmap
                // scans off for the statement, to keep the planner on the partial indexes
                // while statistics lag, made a saturated run 20 times slower: measured, and
                // left out.)
                txn.execute_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    format!("SELECT pg_advisory_xact_lock({LEASE_LOCK})"),
                ))
                .await?;
                let rows = txn.query_all_raw(statement).await?;
                txn.commit().await?;
                rows
            }
            _ => self.db.query_all_raw(statement).await?,
        };
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

    fn limits_endpoints(&self) -> bool {
        true
    }

    async fn ack(&self, received: &Received) -> Result<(), QueueError> {
        if received.state_recorded {
            // The recorder wrote the settlement, lease released, with the attempt.
            return Ok(());
        }
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
        if received.state_recorded {
            return Ok(());
        }
        self.settle(
            received,
            "UPDATE deliveries SET next_attempt_at = $1, lease_token = NULL, updated_at = $2 \
             WHERE id = $3 AND lease_token = $4",
            vec![at.into(), Utc::now().into()],
        )
        .await
    }

    async fn dead_letter(&self, received: &Received, reason: &str) -> Result<(), QueueError> {
        if received.state_recorded {
            return Ok(());
        }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sea_orm::{DatabaseConnection, DbBackend};

    use super::*;
    use crate::test_database::{published, published_on_postgres};

    const LIMIT: usize = 3;

    /// Deliveries leased right now (a lease that ran out holds nothing), by endpoint, as the
    /// database holds them.
    async fn leased(db: &DatabaseConnection) -> HashMap<String, i64> {
        let backend = db.get_database_backend();
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                placeholders(
                    backend,
                    &format!(
                        "SELECT endpoint_id, COUNT(*) AS n FROM deliveries WHERE status = '{}' \
                         AND lease_token IS NOT NULL AND next_attempt_at > $1 GROUP BY endpoint_id",
                        delivery::PENDING
                    ),
                ),
                [Utc::now().into()],
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                (
                    row.try_get::<String>("", "endpoint_id").unwrap(),
                    row.try_get::<i64>("", "n").unwrap(),
                )
            })
            .collect()
    }

    /// Three endpoints with 20 due deliveries each. Batches far larger than the limit take
    /// only `LIMIT` per endpoint; settling some makes exactly that much room again; a lease
    /// that ran out frees its place; and no batch ever holds more than the limit of one
    /// endpoint, nor does the table.
    async fn never_leases_beyond_the_per_endpoint_limit(db: DatabaseConnection) {
        let queue =
            EmbeddedQueue::new(db.clone(), Duration::from_secs(60)).with_per_endpoint_limit(LIMIT);
        let first = queue.receive(64).await.unwrap();
        assert_eq!(first.len(), 3 * LIMIT, "the limit of each of 3 endpoints");
        let mut per_endpoint: HashMap<&str, usize> = HashMap::new();
        for received in &first {
            *per_endpoint.entry(&received.task.endpoint_id).or_default() += 1;
        }
        assert!(
            per_endpoint.values().all(|n| *n == LIMIT),
            "{per_endpoint:?}"
        );
        assert!(queue.receive(64).await.unwrap().is_empty(), "no room left");
        assert!(leased(&db).await.values().all(|n| *n == LIMIT as i64));

        // Two of the first endpoint's deliveries settle: two of its deliveries can start.
        let endpoint = first[0].task.endpoint_id.clone();
        let settled: Vec<&Received> = first
            .iter()
            .filter(|r| r.task.endpoint_id == endpoint)
            .take(2)
            .collect();
        queue.ack(settled[0]).await.unwrap();
        queue
            .retry_at(settled[1], Utc::now() + chrono::Duration::minutes(5))
            .await
            .unwrap();
        let next = queue.receive(64).await.unwrap();
        assert_eq!(next.len(), 2);
        assert!(next.iter().all(|r| r.task.endpoint_id == endpoint));
        assert!(leased(&db).await.values().all(|n| *n <= LIMIT as i64));

        // A worker that died: its leases run out, and their places are free again.
        db.execute_unprepared(&format!(
            "UPDATE deliveries SET next_attempt_at = updated_at WHERE endpoint_id = '{endpoint}' \
             AND lease_token IS NOT NULL"
        ))
        .await
        .unwrap();
        let again = queue.receive(64).await.unwrap();
        assert_eq!(again.len(), LIMIT);
        assert!(again.iter().all(|r| r.task.endpoint_id == endpoint));
        assert!(leased(&db).await.values().all(|n| *n <= LIMIT as i64));

        // Several workers leasing at once take no more than one would.
        let others: Vec<EmbeddedQueue> = (0..4).map(|_| queue.clone()).collect();
        let batches = futures_util::future::join_all(others.iter().map(|q| q.receive(64))).await;
        for batch in batches {
            assert!(batch.unwrap().is_empty());
        }
        assert!(leased(&db).await.values().all(|n| *n <= LIMIT as i64));
    }

    #[tokio::test]
    async fn never_leases_beyond_the_per_endpoint_limit_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let urls = [
            "http://127.0.0.1:9/a",
            "http://127.0.0.1:9/b",
            "http://127.0.0.1:9/c",
        ];
        let db = published(&dir, &urls, 20).await;
        never_leases_beyond_the_per_endpoint_limit(db).await;
    }

    #[tokio::test]
    async fn never_leases_beyond_the_per_endpoint_limit_on_postgres() {
        let urls = [
            "http://127.0.0.1:9/a",
            "http://127.0.0.1:9/b",
            "http://127.0.0.1:9/c",
        ];
        let db = published_on_postgres(&urls, 20).await;
        assert_eq!(db.get_database_backend(), DbBackend::Postgres);
        never_leases_beyond_the_per_endpoint_limit(db).await;
    }

    /// Workers on PostgreSQL racing for one endpoint's room: concurrent leases, from
    /// separate connections, never hold more than the limit between them.
    #[tokio::test]
    async fn racing_workers_on_postgres_share_one_limit() {
        let db = published_on_postgres(&["http://127.0.0.1:9/only"], 200).await;
        let queue =
            EmbeddedQueue::new(db.clone(), Duration::from_secs(60)).with_per_endpoint_limit(LIMIT);
        for _ in 0..10 {
            let batches = futures_util::future::join_all((0..8).map(|_| queue.receive(16))).await;
            let taken: Vec<Received> = batches.into_iter().flat_map(Result::unwrap).collect();
            assert!(taken.len() <= LIMIT, "{} leased at once", taken.len());
            assert!(leased(&db).await.values().all(|n| *n <= LIMIT as i64));
            for received in &taken {
                queue.ack(received).await.unwrap();
            }
        }
    }
}
