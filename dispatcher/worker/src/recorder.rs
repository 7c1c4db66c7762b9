//! Recording attempts with group commit: every attempt in flight hands its record to one task,
//! which writes all that are waiting in one transaction (multi-row INSERTs of attempts, one
//! UPDATE of their deliveries from a VALUES list, one commit) and answers each. Under load
//! the cost of a commit, and of a statement round trip, is shared by hundreds of attempts;
//! when idle an attempt is written alone at once, so nothing waits for a batch to fill.
//!
//! A batch that fails is written again one attempt per transaction, so one bad row cannot
//! hold back the others; an attempt whose write fails stays unsettled and is repeated.

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery, delivery_attempt};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Statement, Value,
};
use tokio::sync::{mpsc, oneshot};

use junction_queue::statement_shapes::{begin_key_lookups, padded, power_of_two_runs};

/// The most attempts in one transaction (PostgreSQL takes at most 65,535 parameters in a
/// statement; the UPDATE takes 7 per attempt, its list padded to 1,024).
const MAX_BATCH: usize = 1_000;

/// How the delivery stands once this attempt is recorded.
#[derive(Clone, Debug, PartialEq)]
pub enum Settlement {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Dead(String),
}

/// One attempt and the delivery state it leads to.
pub struct Attempt {
    pub record: delivery_attempt::Model,
    pub last_error: Option<String>,
    pub settlement: Settlement,
}

struct Pending {
    attempt: Attempt,
    done: oneshot::Sender<Result<(), DbErr>>,
}

/// The handle attempts are recorded through. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
}

impl Recorder {
    /// Starts the writing task on `db`.
    pub fn start(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(write_batches(db, rx));
        Self { tx }
    }

    /// Records `attempt`; returns once it is committed.
    pub async fn record(&self, attempt: Attempt) -> Result<(), DbErr> {
        let (done, written) = oneshot::channel();
        self.tx
            .send(Pending { attempt, done })
            .await
            .map_err(|_| DbErr::Custom("the attempt recorder has stopped".into()))?;
        written
            .await
            .map_err(|_| DbErr::Custom("the attempt recorder has stopped".into()))?
    }
}

async fn write_batches(db: DatabaseConnection, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let pending = std::mem::take(&mut batch);
        let attempts: Vec<&Attempt> = pending.iter().map(|p| &p.attempt).collect();
        match write(&db, &attempts).await {
            Ok(()) => {
                for p in pending {
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(error) if pending.len() > 1 => {
                tracing::warn!(%error, attempts = pending.len(), "recording a batch of attempts failed; recording them one by one");
                for p in pending {
                    let result = write(&db, &[&p.attempt]).await;
                    let _ = p.done.send(result);
                }
            }
            Err(error) => {
                for p in pending {
                    let _ = p.done.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Writes `attempts` in one transaction.
async fn write(db: &DatabaseConnection, attempts: &[&Attempt]) -> Result<(), DbErr> {
    let txn = begin_key_lookups(db).await?;
    for run in power_of_two_runs(attempts) {
        insert_attempts(&txn, run).await?;
    }
    txn.execute_raw(update_deliveries(
        db.get_database_backend(),
        padded(attempts.iter().copied()),
    ))
    .await?;
    txn.commit().await
}

async fn insert_attempts(db: &impl ConnectionTrait, attempts: &[&Attempt]) -> Result<(), DbErr> {
    delivery_attempt::Entity::insert_many(attempts.iter().map(|a| {
        let r = &a.record;
        delivery_attempt::ActiveModel {
            id: Set(r.id.clone()),
            tenant_id: Set(r.tenant_id.clone()),
            delivery_id: Set(r.delivery_id.clone()),
            message_id: Set(r.message_id.clone()),
            endpoint_id: Set(r.endpoint_id.clone()),
            attempt: Set(r.attempt),
            status_code: Set(r.status_code),
            duration_ms: Set(r.duration_ms),
            response_excerpt: Set(r.response_excerpt.clone()),
            error_kind: Set(r.error_kind.clone()),
            trace_id: Set(r.trace_id.clone()),
            created_at: Set(r.created_at),
        }
    }))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// One UPDATE for every delivery in the batch, from a VALUES list (a CTE, which both
/// PostgreSQL and SQLite take). A delivery listed twice with the same values is updated once.
///
/// It settles the delivery for the queue too (the lease is released: the embedded queue
/// counts rows with a lease token as in flight), so the queue's own settlement has nothing
/// left to write and a delivery is written twice in its life: leased, then this.
fn update_deliveries(backend: sea_orm::DbBackend, attempts: Vec<&Attempt>) -> Statement {
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    for attempt in attempts {
        let (status, delivered_at, next_attempt_at, dead_at, last_error) = match &attempt.settlement
        {
            Settlement::Succeeded => (
                Some(delivery::SUCCEEDED),
                Some(now),
                None,
                None,
                attempt.last_error.clone(),
            ),
            Settlement::RetryAt(at) => (None, None, Some(*at), None, attempt.last_error.clone()),
            Settlement::Dead(reason) => (
                Some(delivery::DEAD),
                None,
                None,
                Some(now),
                Some(reason.clone()),
            ),
        };
        let first = values.len();
        rows.push(format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            first + 1,
            first + 2,
            first + 3,
            first + 4,
            first + 5,
            first + 6,
            first + 7
        ));
        values.extend([
            Value::from(attempt.record.delivery_id.clone()),
            Value::from(attempt.record.attempt),
            Value::from(last_error),
            Value::from(status.map(str::to_owned)),
            Value::from(delivered_at),
            Value::from(next_attempt_at),
            Value::from(dead_at),
        ]);
    }
    values.push(Value::from(now));
    let now_parameter = values.len();
    let sql = format!(
        "WITH v(id, attempts, last_error, status, delivered_at, next_attempt_at, dead_at) AS \
         (VALUES {}) \
         UPDATE deliveries SET attempts = v.attempts, last_error = v.last_error, \
         status = COALESCE(v.status, deliveries.status), lease_token = NULL, \
         delivered_at = COALESCE(deliveries.delivered_at, v.delivered_at), \
         next_attempt_at = COALESCE(v.next_attempt_at, deliveries.next_attempt_at), \
         dead_at = COALESCE(v.dead_at, deliveries.dead_at), \
         updated_at = ${now_parameter} \
         FROM v WHERE deliveries.id = v.id",
        rows.join(", ")
    );
    Statement::from_sql_and_values(backend, sql, values)
}

#[cfg(test)]
mod tests {
    use sea_orm::{
        ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, TransactionTrait,
    };

    use super::*;
    use crate::test_database::{published, published_on_postgres};
    use junction_queue::statement_shapes::prefer_key_lookups;

    /// A database with one endpoint and `count` deliveries to it.
    async fn deliveries(
        dir: &tempfile::TempDir,
        count: usize,
    ) -> (DatabaseConnection, Vec<delivery::Model>) {
        let db = published(dir, &["http://127.0.0.1:9/hook"], count).await;
        let rows = delivery::Entity::find().all(&db).await.unwrap();
        (db, rows)
    }

    fn attempt(delivery: &delivery::Model, settlement: Settlement) -> Attempt {
        Attempt {
            record: delivery_attempt::Model {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: delivery.tenant_id.clone(),
                delivery_id: delivery.id.clone(),
                message_id: delivery.message_id.clone(),
                endpoint_id: delivery.endpoint_id.clone(),
                attempt: 1,
                status_code: Some(500),
                duration_ms: 3,
                response_excerpt: None,
                error_kind: None,
                trace_id: None,
                created_at: Utc::now(),
            },
            last_error: Some("HTTP 500".into()),
            settlement,
        }
    }

    /// Four attempts finishing together go to the writer as one batch; one of them repeats
    /// another's id, so the batch fails and is written one by one: the three good attempts
    /// are recorded with their deliveries' new state, the bad one is refused.
    #[tokio::test]
    async fn a_batch_records_each_settlement_and_a_bad_attempt_holds_back_none() {
        let dir = tempfile::TempDir::new().unwrap();
        let (db, rows) = deliveries(&dir, 3).await;
        let recorder = Recorder::start(db.clone());
        let retry_at = Utc::now() + chrono::Duration::minutes(5);
        let first = attempt(&rows[0], Settlement::Succeeded);
        let mut repeated = attempt(&rows[1], Settlement::Succeeded);
        repeated.record.id = first.record.id.clone();
        let (succeeded, retried, dead, refused) = tokio::join!(
            recorder.record(first),
            recorder.record(attempt(&rows[1], Settlement::RetryAt(retry_at))),
            recorder.record(attempt(
                &rows[2],
                Settlement::Dead("retries exhausted".into())
            )),
            recorder.record(repeated),
        );
        for result in [succeeded, retried, dead] {
            result.unwrap();
        }
        assert!(refused.is_err(), "the attempt repeating an id is refused");

        let after = |id: &str| {
            let db = db.clone();
            let id = id.to_owned();
            async move {
                delivery::Entity::find_by_id(id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        let first = after(&rows[0].id).await;
        assert_eq!(
            (first.status.as_str(), first.attempts),
            (delivery::SUCCEEDED, 1)
        );
        assert!(first.delivered_at.is_some());
        let second = after(&rows[1].id).await;
        assert_eq!(second.status, delivery::PENDING);
        assert_eq!(second.next_attempt_at.timestamp(), retry_at.timestamp());
        assert_eq!(second.last_error.as_deref(), Some("HTTP 500"));
        let third = after(&rows[2].id).await;
        assert_eq!(third.status, delivery::DEAD);
        assert_eq!(third.last_error.as_deref(), Some("retries exhausted"));
        assert!(third.dead_at.is_some());
        let recorded = delivery_attempt::Entity::find().all(&db).await.unwrap();
        assert_eq!(recorded.len(), 3);
    }

    /// The settling UPDATE's plan, as EXPLAIN prints it, inside `txn`.
    async fn plan(txn: &DatabaseTransaction, attempts: &[Attempt]) -> String {
        let update = update_deliveries(DbBackend::Postgres, padded(attempts.iter()));
        let explain = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN {}", update.sql),
            update.values.map(|v| v.0).unwrap_or_default(),
        );
        let rows = txn.query_all_raw(explain).await.unwrap();
        rows.iter()
            .map(|row| row.try_get::<String>("", "QUERY PLAN").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// On PostgreSQL a batch of 256 settlements among 2,000 deliveries is planned as a scan
    /// of the whole table when left to the planner, and as 256 primary-key lookups the way
    /// the recorder writes it; the batch is then recorded.
    #[tokio::test]
    async fn settling_on_postgres_finds_deliveries_by_key_not_by_scanning_the_table() {
        let urls: Vec<String> = (0..8)
            .map(|n| format!("http://127.0.0.1:9/hook/{n}"))
            .collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let db = published_on_postgres(&urls, 250).await;
        db.execute_unprepared("ANALYZE deliveries").await.unwrap();
        let rows = delivery::Entity::find().all(&db).await.unwrap();
        assert_eq!(rows.len(), 2_000);
        let attempts: Vec<Attempt> = rows[..256]
            .iter()
            .map(|row| attempt(row, Settlement::Succeeded))
            .collect();

        let txn = db.begin().await.unwrap();
        let unguided = plan(&txn, &attempts).await;
        assert!(
            unguided.contains("Seq Scan on deliveries"),
            "the planner left alone was expected to scan the table:\n{unguided}"
        );
        prefer_key_lookups(&txn).await.unwrap();
        let guided = plan(&txn, &attempts).await;
        assert!(
            guided.contains("Index Scan using deliveries_pkey on deliveries")
                && !guided.contains("Seq Scan on deliveries"),
            "{guided}"
        );
        txn.rollback().await.unwrap();

        let batch: Vec<&Attempt> = attempts.iter().collect();
        write(&db, &batch).await.unwrap();
        let settled = delivery::Entity::find()
            .filter(delivery::Column::Status.eq(delivery::SUCCEEDED))
            .all(&db)
            .await
            .unwrap();
        assert_eq!(settled.len(), 256);
    }
}
