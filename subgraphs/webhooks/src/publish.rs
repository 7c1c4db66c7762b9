//! `publishEvent`: validate, then store the message and its deliveries in one transaction
//! (on PostgreSQL, one statement).
//!
//! The deliveries are written with the message, and an `outbox` row naming them for the Kafka
//! relay: whatever queue backend runs, a committed message has every delivery it needs, and
//! an uncommitted one has none. An idempotency key makes retried
//! publishes safe: the same key and payload return the first message; the same key with a
//! different payload is a conflict.

use chrono::{SubsecRound, Utc};
use junction_schema::entities::{delivery, message, outbox};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, Statement, TransactionTrait, Value,
};
use sha2::{Digest, Sha256};

use crate::endpoints::subscribers;
use crate::error::check_channel;
use crate::{WebhookError, compiled_schemas, event_types};

pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Deliveries per INSERT. A statement takes at most 65,535 parameters on PostgreSQL, which a
/// message for some 5,000 endpoints used to pass; one for more than this is written in
/// several INSERTs.
const DELIVERIES_PER_STATEMENT: usize = 1_000;

pub struct PublishEvent {
    pub event_type: String,
    pub payload: serde_json::Value,
    pub channels: Vec<String>,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
}

#[derive(Debug)]
pub struct Published {
    pub message: message::Model,
    /// Deliveries created (zero when no endpoint wants it, or when this was a repeat).
    pub deliveries: usize,
    /// True when the idempotency key matched an earlier publish.
    pub repeated: bool,
}

pub async fn publish(
    db: &DatabaseConnection,
    tenant_id: &str,
    input: PublishEvent,
    max_payload_bytes: usize,
) -> Result<Published, WebhookError> {
    let encoded = serde_json::to_vec(&input.payload)
        .map_err(|e| WebhookError::BadInput(format!("payload is not JSON: {e}")))?;
    if encoded.len() > max_payload_bytes {
        return Err(WebhookError::BadInput(format!(
            "payload is {} bytes; the limit is {max_payload_bytes}",
            encoded.len()
        )));
    }
    for channel in &input.channels {
        check_channel(channel)?;
    }
    if let Some(key) = &input.idempotency_key
        && (key.is_empty() || key.len() > 256)
    {
        return Err(WebhookError::BadInput(
            "idempotencyKey must be 1 to 256 characters".into(),
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update(input.event_type.as_bytes());
    hasher.update(b"\n");
    hasher.update(&encoded);
    let payload_hash = hex(&hasher.finalize());

    if let Some(key) = &input.idempotency_key
        && let Some(earlier) = earlier_with_key(db, tenant_id, key).await?
    {
        return repeat_of(earlier, &payload_hash, key);
    }
    let Some(event_type) = event_types::find(db, tenant_id, &input.event_type).await? else {
        return Err(WebhookError::BadInput(format!(
            "unknown event type {:?}: create it first",
            input.event_type
        )));
    };
    if let Some(schema) = &event_type.schema {
        let validator = compiled_schemas::validator(schema)?;
        let problems: Vec<String> = validator
            .iter_errors(&input.payload)
            .take(5)
            .map(|error| {
                let at = error.instance_path().to_string();
                format!("{}: {error}", if at.is_empty() { "/" } else { &at })
            })
            .collect();
        if !problems.is_empty() {
            return Err(WebhookError::BadInput(format!(
                "payload does not match the schema of {}: {}",
                input.event_type,
                problems.join("; ")
            )));
        }
    }
    // As the database keeps it (microseconds), so what is returned now reads the same later.
    let now = Utc::now().trunc_subsecs(6);
    let message = message::Model {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant_id.to_owned(),
        event_type: input.event_type,
        payload: input.payload,
        payload_hash,
        channels: serde_json::json!(input.channels),
        idempotency_key: input.idempotency_key,
        traceparent: input.traceparent,
        created_at: now,
    };
    let endpoints: Vec<String> = subscribers(db, tenant_id)
        .await?
        .into_iter()
        .filter(|e| e.wants(&message.event_type, &input.channels))
        .map(|e| e.id)
        .collect();
    let stored = match db.get_database_backend() {
        DbBackend::Postgres if endpoints.len() <= DELIVERIES_PER_STATEMENT => {
            store_in_one_statement(db, &message, &endpoints).await?
        }
        _ => store_in_transaction(db, &message, &endpoints).await?,
    };
    if !stored {
        // A publish with the same idempotency key committed first.
        let key = message.idempotency_key.as_deref().unwrap_or_default();
        let earlier = earlier_with_key(db, tenant_id, key).await?.ok_or_else(|| {
            WebhookError::Conflict(format!("idempotency key {key:?} is being used right now"))
        })?;
        return repeat_of(earlier, &message.payload_hash, key);
    }
    Ok(Published {
        message,
        deliveries: endpoints.len(),
        repeated: false,
    })
}

async fn earlier_with_key(
    db: &DatabaseConnection,
    tenant_id: &str,
    key: &str,
) -> Result<Option<message::Model>, WebhookError> {
    Ok(message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant_id))
        .filter(message::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?)
}

/// The answer to a publish whose idempotency key was used before: the earlier message if the
/// payload is the same, a conflict if not.
fn repeat_of(
    earlier: message::Model,
    payload_hash: &str,
    key: &str,
) -> Result<Published, WebhookError> {
    if earlier.payload_hash != payload_hash {
        return Err(WebhookError::Conflict(format!(
            "idempotency key {key:?} was already used for a different event"
        )));
    }
    Ok(Published {
        message: earlier,
        deliveries: 0,
        repeated: true,
    })
}

/// Stores the message, a delivery per endpoint and the outbox row in one statement, so in one
/// round trip and one implicit transaction (PostgreSQL's data-modifying `WITH`). Nothing is
/// stored, and `false` returned, when the idempotency key is taken.
async fn store_in_one_statement(
    db: &DatabaseConnection,
    message: &message::Model,
    endpoints: &[String],
) -> Result<bool, WebhookError> {
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
) -> Result<bool, WebhookError> {
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
        delivery::Entity::insert_many(chunk.iter().map(|endpoint| delivery::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            tenant_id: Set(message.tenant_id.clone()),
            message_id: Set(message.id.clone()),
            endpoint_id: Set(endpoint.clone()),
            status: Set(delivery::PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            lease_token: Set(None),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            delivered_at: Set(None),
            dead_at: Set(None),
        }))
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
