//! The `outbox` table (see `junction_schema::entities::outbox`), whose only writer this is:
//! messages stored with their deliveries and a row naming them ([`store`], what publishing
//! calls), rows for deliveries made due again (replay), reading what rows name, and deleting
//! them.
//! The Kafka relay sends what they name; the embedded queue, which reads the deliveries
//! table itself, sweeps away the rows that no longer name anything pending.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery, message, outbox};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    FromQueryResult, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionTrait, Value,
};

use super::{QueueError, Task};
use crate::statement_shapes::{padded, placeholders, power_of_two_runs};

/// Signalled whenever this process stores a message with deliveries: a dispatcher in the same
/// process (`junction serve`) that found nothing due looks again at once instead of waiting
/// out its poll interval. Dispatchers elsewhere poll.
static PUBLISHED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Resolves when this process next stores a message with deliveries.
pub async fn published_here() {
    PUBLISHED.notified().await;
}

/// Tells dispatchers in this process that deliveries were committed (what [`store`] and
/// [`store_many`] do themselves; a caller of [`store_many_in`] does it after its commit).
pub fn wake_local_dispatchers() {
    PUBLISHED.notify_waiters();
}

/// The hex SHA-256 of a message's event type and encoded payload: what tells a retried
/// publish (same key, same hash) from a conflicting one. Every publisher computes it here so
/// that the stored hashes agree.
pub fn payload_hash(event_type: &str, encoded_payload: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(event_type.as_bytes());
    hasher.update(b"\n");
    hasher.update(encoded_payload);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deliveries per INSERT. A statement takes at most 65,535 parameters on PostgreSQL, which a
/// message for some 5,000 endpoints used to pass; one for more than this is written in
/// several INSERTs.
const DELIVERIES_PER_STATEMENT: usize = 1_000;

/// Stores a newly published `message`, a pending delivery for each of `endpoints` and the
/// outbox row naming them, in one transaction: the only way messages enter the queue. Nothing
/// is stored, and `false` returned, when the message's idempotency key is taken.
pub async fn store(
    db: &DatabaseConnection,
    message: &message::Model,
    endpoints: &[String],
) -> Result<bool, sea_orm::DbErr> {
    let stored = match db.get_database_backend() {
        DbBackend::Postgres if endpoints.len() <= DELIVERIES_PER_STATEMENT => {
            store_in_one_statement(db, message, endpoints).await
        }
        _ => store_in_transaction(db, message, endpoints).await,
    }?;
    if stored && !endpoints.is_empty() {
        wake_local_dispatchers();
    }
    Ok(stored)
}

/// Stores the message, a delivery per endpoint and the outbox row in one statement, so in one
/// round trip and one implicit transaction (PostgreSQL's data-modifying `WITH`). Nothing is
/// stored, and `false` returned, when the idempotency key is taken.
async fn store_in_one_statement(
    db: &DatabaseConnection,
    message: &message::Model,
    endpoints: &[String],
) -> Result<bool, sea_orm::DbErr> {
    let mut values: Vec<Value> = vec![
        message.id.clone().into(),
        message.tenant_id.clone().into(),
        message.event_type.clone().into(),
        message.payload.clone().into(),
        message.payload_hash.clone().into(),
        message.channels.clone().into(),
        message.idempotency_key.clone().into(),
        message.traceparent.clone().into(),
        message.created_at.into(),
    ];
    let insert_message = "INSERT INTO messages (id, tenant_id, event_type, payload, payload_hash, \
         channels, idempotency_key, traceparent, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id";
    let sql = if endpoints.is_empty() {
        insert_message.to_owned()
    } else {
        let mut rows = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            // Time-ordered, so the primary key grows at its end rather than everywhere.
            values.push(uuid::Uuid::now_v7().to_string().into());
            values.push(endpoint.clone().into());
            rows.push(format!("(${}, ${})", values.len() - 1, values.len()));
        }
        format!(
            "WITH m AS ({insert_message}), \
             d AS (INSERT INTO deliveries (id, tenant_id, message_id, endpoint_id, status, \
             attempts, next_attempt_at, created_at, updated_at) \
             SELECT v.id, $2, $1, v.endpoint_id, '{pending}', 0, $9, $9, $9 \
             FROM (VALUES {rows}) AS v(id, endpoint_id) WHERE EXISTS (SELECT 1 FROM m)) \
             INSERT INTO outbox (message_id, created_at) SELECT id, $9 FROM m RETURNING message_id",
            pending = delivery::PENDING,
            rows = rows.join(", ")
        )
    };
    let stored = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    Ok(stored.is_some())
}

/// The same in a transaction of separate statements: for SQLite, which has no data-modifying
/// `WITH` (and, in process, no round trips to save), and for a message to more endpoints
/// than one statement takes.
async fn store_in_transaction(
    db: &DatabaseConnection,
    message: &message::Model,
    endpoints: &[String],
) -> Result<bool, sea_orm::DbErr> {
    let txn = db.begin().await?;
    let inserted = message::Entity::insert(message.clone().into_active_model())
        .on_conflict(
            OnConflict::columns([message::Column::TenantId, message::Column::IdempotencyKey])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let now = message.created_at;
    for chunk in endpoints.chunks(DELIVERIES_PER_STATEMENT) {
        delivery::Entity::insert_many(chunk.iter().map(|endpoint| pending(message, endpoint)))
            .exec_without_returning(&txn)
            .await?;
    }
    if !endpoints.is_empty() {
        // For the Kafka relay: one row names all of the message's deliveries.
        outbox::Entity::insert(outbox::ActiveModel {
            message_id: Set(message.id.clone()),
            delivery_id: Set(None),
            created_at: Set(now),
            ..Default::default()
        })
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Stores many newly published messages, each with a pending delivery for each of its
/// endpoints and the outbox row naming them, all in one transaction: what a bulk publish
/// calls. A message whose idempotency key is taken (by an earlier publish, or one committed
/// meanwhile) is not stored; the answer says, message by message, whether it was. The
/// messages' idempotency keys must differ from each other.
///
/// Multi-row INSERTs in runs of power-of-two lengths, so a busy publisher runs on a few
/// statement texts whatever its batch sizes (see [`crate::statement_shapes`]).
pub async fn store_many(
    db: &DatabaseConnection,
    batch: &[(message::Model, Vec<String>)],
) -> Result<Vec<bool>, sea_orm::DbErr> {
    let txn = db.begin().await?;
    let stored = store_many_in(&txn, batch).await?;
    txn.commit().await?;
    if stored.deliveries > 0 {
        wake_local_dispatchers();
    }
    Ok(stored.stored)
}

/// What [`store_many_in`] stored.
#[derive(Debug, Default)]
pub struct StoredBatch {
    /// Message by message, whether it was stored (`false`: its idempotency key was taken).
    pub stored: Vec<bool>,
    /// Deliveries created.
    pub deliveries: usize,
}

/// [`store_many`] in the caller's transaction, for a caller whose messages must commit with
/// its own writes (a connector sync stores records, their events and its checkpoint at
/// once). Call [`wake_local_dispatchers`] after committing when deliveries were created.
pub async fn store_many_in(
    txn: &impl ConnectionTrait,
    batch: &[(message::Model, Vec<String>)],
) -> Result<StoredBatch, sea_orm::DbErr> {
    let backend = txn.get_database_backend();
    let mut stored: HashSet<String> = HashSet::with_capacity(batch.len());
    for run in power_of_two_runs(batch) {
        let mut values: Vec<Value> = Vec::with_capacity(run.len() * 9);
        let mut rows = Vec::with_capacity(run.len());
        for (message, _) in run {
            let first = values.len();
            values.extend([
                message.id.clone().into(),
                message.tenant_id.clone().into(),
                message.event_type.clone().into(),
                message.payload.clone().into(),
                message.payload_hash.clone().into(),
                message.channels.clone().into(),
                message.idempotency_key.clone().into(),
                message.traceparent.clone().into(),
                message.created_at.into(),
            ]);
            let row: Vec<String> = (first + 1..=first + 9).map(|n| format!("${n}")).collect();
            rows.push(format!("({})", row.join(", ")));
        }
        let sql = format!(
            "INSERT INTO messages (id, tenant_id, event_type, payload, payload_hash, channels, \
             idempotency_key, traceparent, created_at) VALUES {} \
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id",
            rows.join(", ")
        );
        let inserted = txn
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                placeholders(backend, &sql),
                values,
            ))
            .await?;
        for row in inserted {
            stored.insert(row.try_get::<String>("", "id")?);
        }
    }
    let mut deliveries = Vec::new();
    let mut named = Vec::new();
    for (message, endpoints) in batch {
        if !stored.contains(&message.id) || endpoints.is_empty() {
            continue;
        }
        let now = message.created_at;
        deliveries.extend(endpoints.iter().map(|endpoint| pending(message, endpoint)));
        // For the Kafka relay: one row names all of the message's deliveries.
        named.push(outbox::ActiveModel {
            message_id: Set(message.id.clone()),
            delivery_id: Set(None),
            created_at: Set(now),
            ..Default::default()
        });
    }
    for chunk in deliveries.chunks(DELIVERIES_PER_STATEMENT) {
        for run in power_of_two_runs(chunk) {
            delivery::Entity::insert_many(run.iter().cloned())
                .exec_without_returning(txn)
                .await?;
        }
    }
    for run in power_of_two_runs(&named) {
        outbox::Entity::insert_many(run.iter().cloned())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(StoredBatch {
        stored: batch
            .iter()
            .map(|(message, _)| stored.contains(&message.id))
            .collect(),
        deliveries: deliveries.len(),
    })
}

/// A new delivery of `message` to `endpoint`, due at once.
fn pending(message: &message::Model, endpoint: &str) -> delivery::ActiveModel {
    let now = message.created_at;
    delivery::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: Set(message.tenant_id.clone()),
        message_id: Set(message.id.clone()),
        endpoint_id: Set(endpoint.to_owned()),
        status: Set(delivery::PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_token: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        delivered_at: Set(None),
        dead_at: Set(None),
        earlier_attempts: Set(0),
    }
}

/// Makes settled deliveries due again (a replay), keeping their ids, each named in an outbox
/// row: the embedded queue takes them as due rows, the Kafka relay sends what the rows name,
/// so a replay reaches whichever backend runs without knowing it. Run it in the caller's
/// transaction. Returns the tasks made due (a delivery gone, or of another tenant, is not).
pub async fn requeue(db: &impl ConnectionTrait, tasks: &[Task]) -> Result<Vec<Task>, QueueError> {
    let now = Utc::now();
    let backend = db.get_database_backend();
    let sql = placeholders(
        backend,
        "UPDATE deliveries SET status = $1, next_attempt_at = $2, lease_token = NULL, \
         dead_at = NULL, updated_at = $2 WHERE id = $3 AND tenant_id = $4",
    );
    let mut due = Vec::with_capacity(tasks.len());
    for task in tasks {
        let values: Vec<Value> = vec![
            delivery::PENDING.into(),
            now.into(),
            task.delivery_id.clone().into(),
            task.tenant_id.clone().into(),
        ];
        let changed = db
            .execute_raw(Statement::from_sql_and_values(backend, &sql, values))
            .await?
            .rows_affected();
        if changed > 0 {
            due.push(task.clone());
        }
    }
    add(db, &due).await?;
    Ok(due)
}

/// Names each task's delivery, for the relay to send again.
pub(crate) async fn add(db: &impl ConnectionTrait, tasks: &[Task]) -> Result<(), QueueError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    outbox::Entity::insert_many(tasks.iter().map(|task| outbox::ActiveModel {
        id: NotSet,
        message_id: Set(task.message_id.clone()),
        delivery_id: Set(Some(task.delivery_id.clone())),
        created_at: Set(now),
    }))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// A delivery an outbox row names: what a task needs, and what picks and orders them.
#[derive(FromQueryResult)]
struct Named {
    id: String,
    tenant_id: String,
    message_id: String,
    endpoint_id: String,
    attempts: i32,
    status: String,
    created_at: DateTime<Utc>,
}

/// The pending deliveries `rows` name, oldest first, as tasks.
pub(crate) async fn pending_deliveries(
    db: &impl ConnectionTrait,
    rows: &[outbox::Model],
) -> Result<Vec<Task>, QueueError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (single, whole): (Vec<_>, Vec<_>) = rows.iter().partition(|row| row.delivery_id.is_some());
    let mut named = Condition::any();
    if !whole.is_empty() {
        named = named
            .add(delivery::Column::MessageId.is_in(padded(whole.iter().map(|r| &r.message_id))));
    }
    if !single.is_empty() {
        named = named.add(
            delivery::Column::Id
                .is_in(padded(single.iter().filter_map(|r| r.delivery_id.as_ref()))),
        );
    }
    // Pending is kept in Rust, not in SQL: given the status there, the planner walks every
    // pending delivery by the queue's partial index instead of these few by message and id.
    let mut named: Vec<Named> = delivery::Entity::find()
        .select_only()
        .columns([
            delivery::Column::Id,
            delivery::Column::TenantId,
            delivery::Column::MessageId,
            delivery::Column::EndpointId,
            delivery::Column::Attempts,
            delivery::Column::Status,
            delivery::Column::CreatedAt,
        ])
        .filter(named)
        .into_model()
        .all(db)
        .await?;
    named.retain(|d| d.status == delivery::PENDING);
    named.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(named
        .into_iter()
        .map(|d| Task {
            delivery_id: d.id,
            tenant_id: d.tenant_id,
            message_id: d.message_id,
            endpoint_id: d.endpoint_id,
            attempts: d.attempts,
        })
        .collect())
}

pub(crate) async fn delete(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = i64>,
) -> Result<(), QueueError> {
    outbox::Entity::delete_many()
        .filter(outbox::Column::Id.is_in(padded(ids)))
        .exec(db)
        .await?;
    Ok(())
}

/// Rows looked at per sweep round.
const SWEEP_BATCH: u64 = 500;

/// With the embedded queue nothing relays, so rows would pile up. The sweep deletes those
/// whose deliveries are all settled, and keeps the others: should the deployment move to
/// Kafka, its relay sends what is still pending.
pub(crate) struct Sweep {
    pub db: DatabaseConnection,
    pub interval: Duration,
}

impl Sweep {
    /// Sweeps until the task is dropped.
    pub async fn run(self) {
        let mut after = 0;
        loop {
            match self.once(after).await {
                // A full round: go on after it at once; otherwise start again from the oldest.
                Ok(Some(last)) => {
                    after = last;
                    continue;
                }
                Ok(None) => after = 0,
                Err(error) => {
                    tracing::warn!(%error, "the outbox sweep failed a round; trying again")
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Looks at up to a batch of rows after id `after`, deletes those naming nothing pending;
    /// returns the last id looked at when the batch was full.
    pub async fn once(&self, after: i64) -> Result<Option<i64>, QueueError> {
        let rows = outbox::Entity::find()
            .filter(outbox::Column::Id.gt(after))
            .order_by_asc(outbox::Column::Id)
            .limit(SWEEP_BATCH)
            .all(&self.db)
            .await?;
        let pending = pending_deliveries(&self.db, &rows).await?;
        let pending_ids: HashSet<&str> = pending.iter().map(|t| t.delivery_id.as_str()).collect();
        let pending_messages: HashSet<&str> =
            pending.iter().map(|t| t.message_id.as_str()).collect();
        let settled = rows.iter().filter(|row| match &row.delivery_id {
            Some(id) => !pending_ids.contains(id.as_str()),
            None => !pending_messages.contains(row.message_id.as_str()),
        });
        delete(&self.db, settled.map(|row| row.id)).await?;
        Ok(match rows.last() {
            Some(last) if rows.len() as u64 == SWEEP_BATCH => Some(last.id),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveModelTrait, IntoActiveModel, QueryOrder};

    use super::*;

    /// Two endpoints and `messages` published to both.
    async fn published(dir: &tempfile::TempDir, messages: usize) -> DatabaseConnection {
        let endpoints = ["http://127.0.0.1:9/hook", "http://127.0.0.1:10/hook"];
        crate::test_database::published(dir, &endpoints, messages).await
    }

    async fn outbox_rows(db: &DatabaseConnection) -> Vec<outbox::Model> {
        outbox::Entity::find()
            .order_by_asc(outbox::Column::Id)
            .all(db)
            .await
            .unwrap()
    }

    /// Every delivery, grouped by message in publish order.
    async fn deliveries_by_message(db: &DatabaseConnection) -> Vec<Vec<delivery::Model>> {
        let mut groups: Vec<Vec<delivery::Model>> = Vec::new();
        for row in delivery::Entity::find()
            .order_by_asc(delivery::Column::MessageId)
            .all(db)
            .await
            .unwrap()
        {
            match groups.last_mut() {
                Some(group) if group[0].message_id == row.message_id => group.push(row),
                _ => groups.push(vec![row]),
            }
        }
        groups
    }

    async fn set_status(db: &DatabaseConnection, row: &delivery::Model, status: &str) {
        let mut active = row.clone().into_active_model();
        active.status = Set(status.to_owned());
        active.update(db).await.unwrap();
    }

    #[tokio::test]
    async fn a_publish_writes_one_row_naming_all_its_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let db = published(&dir, 2).await;
        let rows = outbox_rows(&db).await;
        assert_eq!(rows.len(), 2, "one row per message, not per delivery");
        assert!(rows.iter().all(|row| row.delivery_id.is_none()));
        let named = pending_deliveries(&db, &rows[..1]).await.unwrap();
        assert_eq!(named.len(), 2, "both endpoints' deliveries");
        assert!(named.iter().all(|t| t.message_id == rows[0].message_id));
        assert!(pending_deliveries(&db, &[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_sweep_deletes_rows_naming_nothing_pending_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let db = published(&dir, 3).await;
        let messages = deliveries_by_message(&db).await;
        // A replay names one delivery of the first message.
        let replayed = Task::from(messages[0][0].clone());
        add(&db, std::slice::from_ref(&replayed)).await.unwrap();
        // The first message is settled everywhere; the second only at one endpoint.
        set_status(&db, &messages[0][0], delivery::SUCCEEDED).await;
        set_status(&db, &messages[0][1], delivery::DEAD).await;
        set_status(&db, &messages[1][0], delivery::SUCCEEDED).await;

        let sweep = Sweep {
            db: db.clone(),
            interval: Duration::from_secs(30),
        };
        assert_eq!(sweep.once(0).await.unwrap(), None, "less than a full batch");
        let left: Vec<(String, Option<String>)> = outbox_rows(&db)
            .await
            .into_iter()
            .map(|row| (row.message_id, row.delivery_id))
            .collect();
        assert_eq!(
            left,
            vec![
                (messages[1][0].message_id.clone(), None),
                (messages[2][0].message_id.clone(), None),
            ]
        );
        // What is kept still names exactly the pending deliveries.
        let named = pending_deliveries(&db, &outbox_rows(&db).await)
            .await
            .unwrap();
        let mut named: Vec<String> = named.into_iter().map(|t| t.delivery_id).collect();
        named.sort();
        let mut expected = vec![
            messages[1][1].id.clone(),
            messages[2][0].id.clone(),
            messages[2][1].id.clone(),
        ];
        expected.sort();
        assert_eq!(named, expected);
    }

    #[tokio::test]
    async fn relay_marks_carry_over_to_the_outbox_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = published(&dir, 2).await;
        let messages = deliveries_by_message(&db).await;
        // Back to `relayed_at` (before migration 6, and any after it): the deliveries the
        // outbox names are the unrelayed ones.
        let names = junction_migrations::names();
        let outbox_table = names
            .iter()
            .position(|name| name.ends_with("_outbox_table"))
            .expect("the outbox migration");
        let steps = u32::try_from(names.len() - outbox_table).unwrap();
        junction_migrations::down(&db, steps).await.unwrap();
        let unrelayed = |db: DatabaseConnection| async move {
            let rows = db
                .query_all_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT id FROM deliveries WHERE relayed_at IS NULL ORDER BY id",
                ))
                .await
                .unwrap();
            rows.iter()
                .map(|row| row.try_get::<String>("", "id").unwrap())
                .collect::<Vec<_>>()
        };
        let mut all: Vec<String> = messages.concat().into_iter().map(|d| d.id).collect();
        all.sort();
        assert_eq!(unrelayed(db.clone()).await, all);
        // One is relayed, one settled; the other two still to be sent, one row each.
        db.execute_unprepared(&format!(
            "UPDATE deliveries SET relayed_at = updated_at WHERE id = '{}'",
            messages[0][0].id
        ))
        .await
        .unwrap();
        db.execute_unprepared(&format!(
            "UPDATE deliveries SET status = 'succeeded' WHERE id = '{}'",
            messages[0][1].id
        ))
        .await
        .unwrap();
        junction_migrations::up(&db).await.unwrap();
        let mut named: Vec<Option<String>> = outbox_rows(&db)
            .await
            .into_iter()
            .map(|row| row.delivery_id)
            .collect();
        named.sort();
        let mut expected = vec![
            Some(messages[1][0].id.clone()),
            Some(messages[1][1].id.clone()),
        ];
        expected.sort();
        assert_eq!(named, expected);
    }
}
