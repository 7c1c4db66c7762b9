//! One commit of a sync: a batch of records upserted by primary key, an event for each record
//! created or changed, the checkpoint that covers them, and the run's counts, in one
//! transaction that first renews the worker's lease. A crash before the commit leaves none of
//! it; after, all of it: resuming from the stored checkpoint loses and repeats nothing.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use junction_connector_sdk::{ConnectorError, StreamSpec};
use junction_queue::statement_shapes::{padded, power_of_two_runs};
use junction_schema::entities::{connection_stream, connector_record};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cursor_time;
use crate::events::{self, Change, Origin};
use crate::lease::{self, Lease, LeaseError};

/// Keys looked up, and rows written, per statement.
const PER_STATEMENT: usize = 256;

/// A stream's counts in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounts {
    /// Records the connector yielded and the engine stored (repeats included).
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    /// The stream was read to its end in this run (a resumed run skips it).
    #[serde(default)]
    pub done: bool,
}

/// A run's counts, by stream; stored on the run as JSON.
pub type Counts = BTreeMap<String, StreamCounts>;

/// Where a stream is, as this worker knows it: the stored row, kept in step with each
/// commit (only the worker holding the run writes it).
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamPosition {
    pub state: Option<Value>,
    pub cursor: Option<Value>,
    pub last_synced_at: Option<DateTime<Utc>>,
}

impl StreamPosition {
    pub async fn load(
        db: &DatabaseConnection,
        connection_id: &str,
        stream: &str,
    ) -> Result<Self, sea_orm::DbErr> {
        let row =
            connection_stream::Entity::find_by_id((connection_id.to_owned(), stream.to_owned()))
                .one(db)
                .await?;
        Ok(row.map_or_else(Self::default, |row| Self {
            state: row.state,
            cursor: row.cursor,
            last_synced_at: row.last_synced_at,
        }))
    }
}

/// What one commit writes.
pub(crate) struct Batch {
    pub records: Vec<Value>,
    /// The checkpoint covering every record so far; `None` stores the records alone (a long
    /// stretch without checkpoints, stored to bound memory: upserts make it safe to read
    /// them again).
    pub checkpoint: Option<Value>,
    /// The stream was read to its end.
    pub finished: bool,
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    #[error("the run was cancelled")]
    Cancelled,
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// A record the engine cannot store (no primary key).
    #[error(transparent)]
    Record(#[from] ConnectorError),
}

/// The run and stream a commit belongs to.
pub(crate) struct Target<'a> {
    pub lease: &'a Lease,
    pub connector: &'a str,
    pub stream: &'a StreamSpec,
}

/// Commits `batch`; on success `position` and `counts` describe what is stored.
pub(crate) async fn commit(
    db: &DatabaseConnection,
    target: &Target<'_>,
    batch: Batch,
    position: &mut StreamPosition,
    counts: &mut Counts,
) -> Result<(), CommitError> {
    let run = &target.lease.run;
    let stream = target.stream;
    let now = Utc::now();
    // Keyed, a key's last record winning (a page can repeat a record that changed).
    let mut keyed: Vec<(String, Value)> = Vec::with_capacity(batch.records.len());
    let mut at: HashMap<String, usize> = HashMap::with_capacity(batch.records.len());
    let mut cursor = position.cursor.clone();
    let read = batch.records.len() as u64;
    for record in batch.records {
        if let Some(value) = stream.cursor_of(&record) {
            cursor = cursor_time::newest(cursor, value);
        }
        let key = record_key(stream, &record)?;
        match at.get(&key) {
            Some(&i) => keyed[i].1 = record,
            None => {
                at.insert(key.clone(), keyed.len());
                keyed.push((key, record));
            }
        }
    }

    let txn = db.begin().await?;
    // First: nothing is written by a worker that lost the run, or for a cancelled one.
    if lease::renew(&txn, target.lease).await? {
        return Err(CommitError::Cancelled);
    }
    let mut stored: HashMap<String, Value> = HashMap::with_capacity(keyed.len());
    for chunk in keyed.chunks(PER_STATEMENT) {
        let rows: Vec<(String, Value)> = connector_record::Entity::find()
            .select_only()
            .columns([
                connector_record::Column::RecordKey,
                connector_record::Column::Data,
            ])
            .filter(connector_record::Column::ConnectionId.eq(run.connection_id.as_str()))
            .filter(connector_record::Column::Stream.eq(stream.name.as_str()))
            .filter(
                connector_record::Column::RecordKey
                    .is_in(padded(chunk.iter().map(|(key, _)| key.as_str()))),
            )
            .into_tuple()
            .all(&txn)
            .await?;
        stored.extend(rows);
    }
    let origin = Origin {
        tenant_id: &run.tenant_id,
        connection_id: &run.connection_id,
        connector: target.connector,
        stream: &stream.name,
    };
    let mut writes = Vec::new();
    let mut messages = Vec::new();
    let stream_counts = counts.entry(stream.name.clone()).or_default();
    stream_counts.read += read;
    for (key, record) in keyed {
        let change = match stored.get(&key) {
            None => Change::Created,
            Some(data) if *data != record => Change::Updated,
            Some(_) => continue,
        };
        match change {
            Change::Created => stream_counts.created += 1,
            Change::Updated => stream_counts.updated += 1,
        }
        messages.push(events::message(&origin, change, &key, &record, now));
        writes.push(connector_record::ActiveModel {
            connection_id: Set(run.connection_id.clone()),
            stream: Set(stream.name.clone()),
            record_key: Set(key),
            tenant_id: Set(run.tenant_id.clone()),
            data: Set(record),
            first_seen_at: Set(now),
            updated_at: Set(now),
        });
    }
    for chunk in writes.chunks(PER_STATEMENT) {
        for rows in power_of_two_runs(chunk) {
            connector_record::Entity::insert_many(rows.iter().cloned())
                .on_conflict(
                    OnConflict::columns([
                        connector_record::Column::ConnectionId,
                        connector_record::Column::Stream,
                        connector_record::Column::RecordKey,
                    ])
                    .update_columns([
                        connector_record::Column::Data,
                        connector_record::Column::UpdatedAt,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
    }
    let mut deliveries = 0;
    if !messages.is_empty() {
        // The same choice of endpoints and the same outbox as `publishEvent`.
        let subscribers = junction_queue::subscribers::subscribers(&txn, &run.tenant_id).await?;
        let channels = vec![run.connection_id.clone()];
        let batch: Vec<_> = messages
            .into_iter()
            .map(|message| {
                let endpoints = subscribers
                    .iter()
                    .filter(|s| s.wants(&message.event_type, &channels))
                    .map(|s| s.id.clone())
                    .collect();
                (message, endpoints)
            })
            .collect();
        deliveries = junction_queue::outbox::store_many_in(&txn, &batch)
            .await?
            .deliveries;
    }
    let mut next = StreamPosition {
        state: position.state.clone(),
        cursor,
        last_synced_at: position.last_synced_at,
    };
    if let Some(checkpoint) = batch.checkpoint {
        next.state = Some(checkpoint);
    }
    if batch.finished {
        next.last_synced_at = Some(now);
        stream_counts.done = true;
    }
    let cursor_at = next.cursor.as_ref().and_then(cursor_time::as_time);
    connection_stream::Entity::insert(connection_stream::ActiveModel {
        connection_id: Set(run.connection_id.clone()),
        stream: Set(stream.name.clone()),
        tenant_id: Set(run.tenant_id.clone()),
        state: Set(next.state.clone()),
        cursor: Set(next.cursor.clone()),
        cursor_at: Set(cursor_at),
        last_synced_at: Set(next.last_synced_at),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            connection_stream::Column::ConnectionId,
            connection_stream::Column::Stream,
        ])
        .update_columns([
            connection_stream::Column::State,
            connection_stream::Column::Cursor,
            connection_stream::Column::CursorAt,
            connection_stream::Column::LastSyncedAt,
            connection_stream::Column::UpdatedAt,
        ])
        .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let counts_json = serde_json::to_value(&*counts).unwrap_or_default();
    lease::progress(&txn, target.lease, &stream.name, 0, &counts_json).await?;
    txn.commit().await?;
    if deliveries > 0 {
        junction_queue::outbox::wake_local_dispatchers();
    }
    *position = next;
    Ok(())
}

/// A record's primary key as stored: a one-field string key as it is, any other key as the
/// JSON array of its values; for a stream without a key, the hash of the record (so the same
/// record read twice is stored once).
pub(crate) fn record_key(stream: &StreamSpec, record: &Value) -> Result<String, ConnectorError> {
    if stream.primary_key.is_empty() {
        let digest = Sha256::digest(record.to_string().as_bytes());
        return Ok(digest.iter().map(|b| format!("{b:02x}")).collect());
    }
    let values = stream.key_of(record).ok_or_else(|| {
        ConnectorError::source_bug(format!(
            "a record of stream {} has no primary key ({})",
            stream.name,
            stream
                .primary_key
                .iter()
                .map(|path| path.join("."))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok(match values.as_slice() {
        [Value::String(key)] => key.clone(),
        _ => Value::Array(values).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use junction_connector_sdk::SyncMode;
    use serde_json::json;

    use super::*;

    fn stream(primary_key: &[&[&str]]) -> StreamSpec {
        StreamSpec {
            name: "items".into(),
            schema: json!({}),
            primary_key: primary_key
                .iter()
                .map(|path| path.iter().map(|s| s.to_string()).collect())
                .collect(),
            cursor_field: None,
            sync_modes: vec![SyncMode::FullRefresh],
        }
    }

    #[test]
    fn keys_are_text_a_string_key_as_it_is() {
        let record = json!({"id": "it_1", "n": 7, "org": {"id": 3}});
        assert_eq!(record_key(&stream(&[&["id"]]), &record).unwrap(), "it_1");
        assert_eq!(record_key(&stream(&[&["n"]]), &record).unwrap(), "[7]");
        assert_eq!(
            record_key(&stream(&[&["id"], &["org", "id"]]), &record).unwrap(),
            r#"["it_1",3]"#
        );
        let error = record_key(&stream(&[&["missing"]]), &record).unwrap_err();
        assert!(
            error.message().contains("no primary key (missing)"),
            "{error}"
        );
        // Without a key, the same record is the same row.
        let unkeyed = stream(&[]);
        assert_eq!(
            record_key(&unkeyed, &record).unwrap(),
            record_key(&unkeyed, &record.clone()).unwrap()
        );
    }
}
