//! `publishEvent`: validate, then store the message and its deliveries in one transaction.
//!
//! The deliveries are written with the message, and an `outbox` row naming them for the Kafka
//! relay: whatever queue backend runs, a committed message has every delivery it needs, and
//! an uncommitted one has none. An idempotency key makes retried
//! publishes safe: the same key and payload return the first message; the same key with a
//! different payload is a conflict.

use chrono::Utc;
use junction_schema::entities::{delivery, message, outbox};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    TransactionTrait,
};
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

    let txn = db.begin().await?;
    if let Some(key) = &input.idempotency_key
        && let Some(earlier) = message::Entity::find()
            .filter(message::Column::TenantId.eq(tenant_id))
            .filter(message::Column::IdempotencyKey.eq(key))
            .one(&txn)
            .await?
    {
        if earlier.payload_hash != payload_hash {
            return Err(WebhookError::Conflict(format!(
                "idempotency key {key:?} was already used for a different event"
            )));
        }
        return Ok(Published {
            message: earlier,
            deliveries: 0,
            repeated: true,
        });
    }
    let Some(event_type) = event_types::find(&txn, tenant_id, &input.event_type).await? else {
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
    let now = Utc::now();
    let message = message::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: Set(tenant_id.to_owned()),
        event_type: Set(input.event_type.clone()),
        payload: Set(input.payload),
        payload_hash: Set(payload_hash),
        channels: Set(serde_json::json!(input.channels)),
        idempotency_key: Set(input.idempotency_key),
        traceparent: Set(input.traceparent),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;

    let targets: Vec<delivery::ActiveModel> = subscribers(&txn, tenant_id)
        .await?
        .iter()
        .filter(|e| e.wants(&input.event_type, &input.channels))
        .map(|e| delivery::ActiveModel {
            // Time-ordered, so the primary key grows at its end rather than everywhere.
            id: Set(uuid::Uuid::now_v7().to_string()),
            tenant_id: Set(tenant_id.to_owned()),
            message_id: Set(message.id.clone()),
            endpoint_id: Set(e.id.clone()),
            status: Set(delivery::PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            lease_token: Set(None),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            delivered_at: Set(None),
            dead_at: Set(None),
        })
        .collect();
    let deliveries = targets.len();
    if !targets.is_empty() {
        // Nothing is read back: the rows are as written.
        delivery::Entity::insert_many(targets)
            .exec_without_returning(&txn)
            .await?;
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
    Ok(Published {
        message,
        deliveries,
        repeated: false,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
