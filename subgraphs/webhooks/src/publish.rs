//! `publishEvent`: validate, pick the endpoints that want the event, then hand the message
//! and its deliveries to the queue's outbox, which stores them in one transaction (on
//! PostgreSQL, one statement): whatever queue backend runs, a committed message has every
//! delivery it needs, and an uncommitted one has none. An idempotency key makes retried
//! publishes safe: the same key and payload return the first message; the same key with a
//! different payload is a conflict.
//!
//! `publishEvents` ([`publish_many`]) takes up to [`MAX_BATCH`] events in one transaction and
//! answers each: accepted, repeated (its key was used before, for the same event), or its own
//! error. One bad event fails alone; a database that cannot be reached fails the whole call,
//! with nothing stored, so a caller never has to guess what committed.

use std::collections::HashMap;

use chrono::{SubsecRound, Utc};
use junction_queue::statement_shapes::padded;
use junction_schema::entities::{event_type, message};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::endpoints::subscribers;
use crate::error::check_channel;
use crate::{WebhookError, compiled_schemas, event_types};

pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// The most events one `publishEvents` call (or `POST /v1/events`) takes.
pub const MAX_BATCH: usize = 1_000;

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

/// What is checked before anything is read: the payload's size, channels, key; and the hash
/// that tells a repeat from a conflict.
fn checked(input: &PublishEvent, max_payload_bytes: usize) -> Result<String, WebhookError> {
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
    Ok(junction_queue::outbox::payload_hash(
        &input.event_type,
        &encoded,
    ))
}

/// The payload against the event type's schema, if it has one.
fn matches_schema(
    event_type: &event_type::Model,
    payload: &serde_json::Value,
) -> Result<(), WebhookError> {
    let Some(schema) = &event_type.schema else {
        return Ok(());
    };
    let validator = compiled_schemas::validator(schema)?;
    let problems: Vec<String> = validator
        .iter_errors(payload)
        .take(5)
        .map(|error| {
            let at = error.instance_path().to_string();
            format!("{}: {error}", if at.is_empty() { "/" } else { &at })
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(WebhookError::BadInput(format!(
        "payload does not match the schema of {}: {}",
        event_type.name,
        problems.join("; ")
    )))
}

fn unknown_event_type(name: &str) -> WebhookError {
    WebhookError::BadInput(format!("unknown event type {name:?}: create it first"))
}

/// The message to store, stamped now.
fn new_message(tenant_id: &str, input: PublishEvent, payload_hash: String) -> message::Model {
    // As the database keeps it (microseconds), so what is returned now reads the same later.
    let now = Utc::now().trunc_subsecs(6);
    message::Model {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant_id.to_owned(),
        event_type: input.event_type,
        payload: input.payload,
        payload_hash,
        channels: serde_json::json!(input.channels),
        idempotency_key: input.idempotency_key,
        traceparent: input.traceparent,
        created_at: now,
    }
}

pub async fn publish(
    db: &DatabaseConnection,
    tenant_id: &str,
    input: PublishEvent,
    max_payload_bytes: usize,
) -> Result<Published, WebhookError> {
    let payload_hash = checked(&input, max_payload_bytes)?;
    if let Some(key) = &input.idempotency_key
        && let Some(earlier) = earlier_with_key(db, tenant_id, key).await?
    {
        return repeat_of(earlier, &payload_hash, key);
    }
    let Some(event_type) = event_types::find(db, tenant_id, &input.event_type).await? else {
        return Err(unknown_event_type(&input.event_type));
    };
    matches_schema(&event_type, &input.payload)?;
    let channels = input.channels.clone();
    let message = new_message(tenant_id, input, payload_hash);
    let endpoints: Vec<String> = subscribers(db, tenant_id)
        .await?
        .into_iter()
        .filter(|e| e.wants(&message.event_type, &channels))
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

/// One event of a bulk publish, as it ended.
pub type Outcome = Result<Published, WebhookError>;

/// Where an event of a bulk publish stands while the batch is worked through.
enum Step {
    Done(Outcome),
    /// The same key as the earlier event at this index, with the same payload: it ends as
    /// that one does, as a repeat.
    SameAs(usize),
    ToStore(message::Model, Vec<String>),
    /// Handed to the transaction, at this position of its batch.
    Stored(usize),
}

/// Publishes `inputs` (1 to [`MAX_BATCH`]) in one transaction and answers each, in order.
///
/// Each event is checked alone (payload, channels, key, event type, schema); one that fails
/// is answered with its error and the others go on. An idempotency key used before answers
/// the earlier message (or a conflict, for another payload); two events of the batch with
/// one key are one event, published once. `Err` only when the batch is not acceptable as a
/// whole (empty, too long) or the database fails: then nothing was stored.
pub async fn publish_many(
    db: &DatabaseConnection,
    tenant_id: &str,
    inputs: Vec<PublishEvent>,
    max_payload_bytes: usize,
) -> Result<Vec<Outcome>, WebhookError> {
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(WebhookError::BadInput(format!(
            "events holds {} events; send 1 to {MAX_BATCH}",
            inputs.len()
        )));
    }
    // Checks that need no database, and keys repeated within the batch.
    let mut first_with_key: HashMap<String, (usize, String)> = HashMap::new();
    let mut checked_inputs: Vec<Option<(PublishEvent, String)>> = Vec::with_capacity(inputs.len());
    let mut steps: Vec<Option<Step>> = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        let hash = match checked(&input, max_payload_bytes) {
            Ok(hash) => hash,
            Err(error) => {
                steps.push(Some(Step::Done(Err(error))));
                checked_inputs.push(None);
                continue;
            }
        };
        if let Some(key) = &input.idempotency_key {
            match first_with_key.get(key) {
                Some((first, first_hash)) if *first_hash == hash => {
                    steps.push(Some(Step::SameAs(*first)));
                    checked_inputs.push(None);
                    continue;
                }
                Some((first, _)) => {
                    steps.push(Some(Step::Done(Err(WebhookError::Conflict(format!(
                        "idempotency key {key:?} is used by event {first} of this batch for a different event"
                    ))))));
                    checked_inputs.push(None);
                    continue;
                }
                None => {
                    first_with_key.insert(key.clone(), (index, hash.clone()));
                }
            }
        }
        steps.push(None);
        checked_inputs.push(Some((input, hash)));
    }
    // Keys used before: one query.
    let keys: Vec<&str> = first_with_key.keys().map(String::as_str).collect();
    let mut earlier: HashMap<String, message::Model> = HashMap::new();
    for chunk in keys.chunks(500) {
        for row in message::Entity::find()
            .filter(message::Column::TenantId.eq(tenant_id))
            .filter(message::Column::IdempotencyKey.is_in(padded(chunk.iter().copied())))
            .all(db)
            .await?
        {
            if let Some(key) = row.idempotency_key.clone() {
                earlier.insert(key, row);
            }
        }
    }
    // Event types, each looked up once; endpoints, once.
    let mut types: HashMap<String, Option<event_type::Model>> = HashMap::new();
    for (input, _) in checked_inputs.iter().flatten() {
        if !types.contains_key(&input.event_type) {
            let found = event_types::find(db, tenant_id, &input.event_type).await?;
            types.insert(input.event_type.clone(), found);
        }
    }
    let subscribers = subscribers(db, tenant_id).await?;
    for (index, slot) in checked_inputs.into_iter().enumerate() {
        let Some((input, hash)) = slot else { continue };
        let step = if let Some(key) = &input.idempotency_key
            && let Some(row) = earlier.get(key)
        {
            Step::Done(repeat_of(row.clone(), &hash, key))
        } else {
            match types.get(&input.event_type) {
                Some(Some(event_type)) => match matches_schema(event_type, &input.payload) {
                    Ok(()) => {
                        let endpoints: Vec<String> = subscribers
                            .iter()
                            .filter(|e| e.wants(&input.event_type, &input.channels))
                            .map(|e| e.id.clone())
                            .collect();
                        Step::ToStore(new_message(tenant_id, input, hash), endpoints)
                    }
                    Err(error) => Step::Done(Err(error)),
                },
                _ => Step::Done(Err(unknown_event_type(&input.event_type))),
            }
        };
        steps[index] = Some(step);
    }
    // Everything acceptable, in one transaction.
    let mut batch = Vec::new();
    let steps: Vec<Step> = steps
        .into_iter()
        .map(|step| match step {
            Some(Step::ToStore(message, endpoints)) => {
                batch.push((message, endpoints));
                Step::Stored(batch.len() - 1)
            }
            Some(step) => step,
            None => Step::Done(Err(WebhookError::BadInput("event not checked".into()))),
        })
        .collect();
    let stored = if batch.is_empty() {
        Vec::new()
    } else {
        junction_queue::outbox::store_many(db, &batch).await?
    };
    // In order: a repeat within the batch refers to an earlier event, answered by then.
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(steps.len());
    for step in steps {
        let outcome = match step {
            Step::Done(outcome) => outcome,
            Step::SameAs(first) => match &outcomes[first] {
                Ok(published) => Ok(Published {
                    message: published.message.clone(),
                    deliveries: 0,
                    repeated: true,
                }),
                Err(error) => Err(error.same_again()),
            },
            Step::Stored(position) => {
                let (message, endpoints) = &batch[position];
                if stored.get(position) == Some(&true) {
                    Ok(Published {
                        message: message.clone(),
                        deliveries: endpoints.len(),
                        repeated: false,
                    })
                } else {
                    // Another publish with the same key committed meanwhile.
                    let key = message.idempotency_key.as_deref().unwrap_or_default();
                    match earlier_with_key(db, tenant_id, key).await? {
                        Some(row) => repeat_of(row, &message.payload_hash, key),
                        None => Err(WebhookError::Conflict(format!(
                            "idempotency key {key:?} is being used right now"
                        ))),
                    }
                }
            }
            Step::ToStore(..) => Err(WebhookError::BadInput("event not stored".into())),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
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
