//! `publishEvent`: validate, pick the endpoints that want the event, then hand the message
//! and its deliveries to the queue's outbox, which stores them in one transaction (on
//! PostgreSQL, one statement): whatever queue backend runs, a committed message has every
//! delivery it needs, and an uncommitted one has none. An idempotency key makes retried
//! publishes safe: the same key and payload return the first message; the same key with a
//! different payload is a conflict.

use chrono::{SubsecRound, Utc};
use junction_schema::entities::message;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

use crate::endpoints::subscribers;
use crate::error::check_channel;
use crate::{WebhookError, compiled_schemas, event_types};

pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;

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
    let stored = junction_queue::outbox::store(db, &message, &endpoints).await?;
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
