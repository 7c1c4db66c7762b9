//! Endpoints: where a tenant's events go, filtered by event type and channel, signed with the
//! endpoint's secrets.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use junction_schema::entities::{delivery_attempt, endpoint, endpoint_secret};
use junction_schema::webhook_signature::{Scheme, SigningSecret};
use junction_schema::webhook_url::AddressPolicy;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, TransactionTrait,
};

use crate::WebhookError;
use crate::error::{check_channel, check_event_type_name};

/// Headers an endpoint may not set: the webhook protocol's own, and transport headers.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "connection",
    "transfer-encoding",
    "user-agent",
    "traceparent",
    "tracestate",
];

#[derive(Clone, Debug)]
pub struct NewEndpoint {
    pub url: String,
    pub description: String,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// Empty: every message.
    pub channels: Vec<String>,
    pub headers: BTreeMap<String, String>,
    /// Delays between attempts; `None` follows the dispatcher's schedule.
    pub retry_schedule: Option<Vec<Duration>>,
    pub rate_limit_per_second: Option<u32>,
    pub scheme: Scheme,
}

impl NewEndpoint {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            description: String::new(),
            event_types: Vec::new(),
            channels: Vec::new(),
            headers: BTreeMap::new(),
            retry_schedule: None,
            rate_limit_per_second: None,
            scheme: Scheme::HmacSha256,
        }
    }
}

/// An endpoint with the one-time view of its secret: the `whsec_` secret for HMAC, the
/// `whpk_` public key for ed25519.
pub struct CreatedEndpoint {
    pub endpoint: endpoint::Model,
    pub verification_key: String,
}

impl std::fmt::Debug for CreatedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedEndpoint")
            .field("endpoint", &self.endpoint.id)
            .field("verification_key", &"<redacted>")
            .finish()
    }
}

pub async fn create(
    db: &DatabaseConnection,
    policy: &AddressPolicy,
    tenant_id: &str,
    input: NewEndpoint,
) -> Result<CreatedEndpoint, WebhookError> {
    let url = policy
        .check_url(&input.url)
        .await
        .map_err(|e| WebhookError::BadInput(format!("url: {e}")))?;
    for name in &input.event_types {
        check_event_type_name(name)?;
    }
    for channel in &input.channels {
        check_channel(channel)?;
    }
    check_headers(&input.headers)?;
    let rate_limit_per_second = check_rate(input.rate_limit_per_second)?;
    let now = Utc::now();
    let secret = input.scheme.generate_secret();
    let verification_key = SigningSecret::parse(input.scheme, &secret)
        .map_err(|e| WebhookError::BadInput(e.to_string()))?
        .verification_key();
    let txn = db.begin().await?;
    let endpoint = endpoint::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: Set(tenant_id.to_owned()),
        url: Set(url.to_string()),
        description: Set(input.description),
        event_types: Set(serde_json::json!(input.event_types)),
        channels: Set(serde_json::json!(input.channels)),
        headers: Set(serde_json::json!(input.headers)),
        enabled: Set(true),
        disabled_reason: Set(None),
        retry_schedule: Set(input.retry_schedule.as_deref().map(schedule_json)),
        rate_limit_per_second: Set(rate_limit_per_second),
        signing_algorithm: Set(input.scheme.as_str().to_owned()),
        failing_since: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    insert_secret(&txn, &endpoint, secret).await?;
    txn.commit().await?;
    Ok(CreatedEndpoint {
        endpoint,
        verification_key,
    })
}

async fn insert_secret(
    db: &impl ConnectionTrait,
    endpoint: &endpoint::Model,
    secret: String,
) -> Result<(), WebhookError> {
    endpoint_secret::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: Set(endpoint.tenant_id.clone()),
        endpoint_id: Set(endpoint.id.clone()),
        secret: Set(secret),
        created_at: Set(Utc::now()),
        expires_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn get(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    id: &str,
) -> Result<endpoint::Model, WebhookError> {
    endpoint::Entity::find_by_id(id)
        .filter(endpoint::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?
        .ok_or_else(|| WebhookError::NotFound(format!("no endpoint {id:?}")))
}

/// Issues a new secret. Current secrets stay valid for `grace`, and until then every delivery
/// carries a signature by each, so receivers can switch without dropping a webhook.
pub async fn rotate_secret(
    db: &DatabaseConnection,
    tenant_id: &str,
    id: &str,
    grace: Duration,
) -> Result<CreatedEndpoint, WebhookError> {
    let txn = db.begin().await?;
    let endpoint = get(&txn, tenant_id, id).await?;
    let scheme = Scheme::parse(&endpoint.signing_algorithm).unwrap_or(Scheme::HmacSha256);
    let now = Utc::now();
    let grace_end = now + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    endpoint_secret::Entity::update_many()
        .col_expr(endpoint_secret::Column::ExpiresAt, Expr::value(grace_end))
        .filter(endpoint_secret::Column::EndpointId.eq(&endpoint.id))
        .filter(endpoint_secret::Column::ExpiresAt.is_null())
        .exec(&txn)
        .await?;
    let secret = scheme.generate_secret();
    let verification_key = SigningSecret::parse(scheme, &secret)
        .map_err(|e| WebhookError::BadInput(e.to_string()))?
        .verification_key();
    insert_secret(&txn, &endpoint, secret).await?;
    txn.commit().await?;
    Ok(CreatedEndpoint {
        endpoint,
        verification_key,
    })
}

/// Turns an endpoint on or off. Turning it on clears the reason it was turned off.
pub async fn set_enabled(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    id: &str,
    enabled: bool,
    reason: Option<String>,
) -> Result<endpoint::Model, WebhookError> {
    let endpoint = get(db, tenant_id, id).await?;
    let mut active: endpoint::ActiveModel = endpoint.into();
    active.enabled = Set(enabled);
    active.disabled_reason = Set(if enabled { None } else { reason });
    active.failing_since = Set(None);
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

// Which endpoints a message goes to is the outbox's choice (connector syncs publish through
// it too); the endpoints module keeps the names its callers know.
pub use junction_queue::subscribers::{Subscriber, json_strings, subscribers};

/// A partial update: `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    /// `Some(None)` returns to the dispatcher's schedule.
    pub retry_schedule: Option<Option<Vec<Duration>>>,
    /// `Some(None)` removes the limit.
    pub rate_limit_per_second: Option<Option<u32>>,
}

pub async fn update(
    db: &DatabaseConnection,
    policy: &AddressPolicy,
    tenant_id: &str,
    id: &str,
    patch: EndpointPatch,
) -> Result<endpoint::Model, WebhookError> {
    let current = get(db, tenant_id, id).await?;
    let mut active: endpoint::ActiveModel = current.into();
    if let Some(url) = patch.url {
        let url = policy
            .check_url(&url)
            .await
            .map_err(|e| WebhookError::BadInput(format!("url: {e}")))?;
        active.url = Set(url.to_string());
    }
    if let Some(description) = patch.description {
        active.description = Set(description);
    }
    if let Some(types) = patch.event_types {
        for name in &types {
            check_event_type_name(name)?;
        }
        active.event_types = Set(serde_json::json!(types));
    }
    if let Some(channels) = patch.channels {
        for channel in &channels {
            check_channel(channel)?;
        }
        active.channels = Set(serde_json::json!(channels));
    }
    if let Some(headers) = patch.headers {
        check_headers(&headers)?;
        active.headers = Set(serde_json::json!(headers));
    }
    if let Some(schedule) = patch.retry_schedule {
        active.retry_schedule = Set(schedule.map(|s| schedule_json(&s)));
    }
    if let Some(rate) = patch.rate_limit_per_second {
        active.rate_limit_per_second = Set(check_rate(rate)?);
    }
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

/// Deletes an endpoint with its secrets, deliveries and attempts. The attempt log has no
/// foreign key on PostgreSQL (migration 10), so its rows are deleted here; the rest go by
/// cascade.
pub async fn delete(
    db: &DatabaseConnection,
    tenant_id: &str,
    id: &str,
) -> Result<(), WebhookError> {
    let endpoint = get(db, tenant_id, id).await?;
    let txn = db.begin().await?;
    delivery_attempt::Entity::delete_many()
        .filter(delivery_attempt::Column::EndpointId.eq(endpoint.id.as_str()))
        .exec(&txn)
        .await?;
    endpoint::Entity::delete_by_id(endpoint.id)
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// One page of a tenant's endpoints in creation order, after the endpoint `after`.
pub async fn list(
    db: &DatabaseConnection,
    tenant_id: &str,
    after: Option<&str>,
    limit: u64,
    enabled: Option<bool>,
) -> Result<Vec<endpoint::Model>, WebhookError> {
    use sea_orm::{QueryOrder, QuerySelect};
    let mut query = endpoint::Entity::find().filter(endpoint::Column::TenantId.eq(tenant_id));
    if let Some(after) = after {
        query = query.filter(endpoint::Column::Id.gt(after));
    }
    if let Some(enabled) = enabled {
        query = query.filter(endpoint::Column::Enabled.eq(enabled));
    }
    Ok(query
        .order_by_asc(endpoint::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// The endpoint's secrets, newest first: metadata for display, never shown again in clear.
pub async fn secrets(
    db: &DatabaseConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Vec<endpoint_secret::Model>, WebhookError> {
    use sea_orm::QueryOrder;
    Ok(endpoint_secret::Entity::find()
        .filter(endpoint_secret::Column::TenantId.eq(tenant_id))
        .filter(endpoint_secret::Column::EndpointId.eq(id))
        .order_by_desc(endpoint_secret::Column::CreatedAt)
        .all(db)
        .await?)
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), WebhookError> {
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let token =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !token || lower.starts_with("webhook-") || RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(WebhookError::BadInput(format!(
                "header {name:?} cannot be set on an endpoint"
            )));
        }
        if value.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(WebhookError::BadInput(format!(
                "header {name:?} has control characters in its value"
            )));
        }
    }
    Ok(())
}

fn check_rate(rate: Option<u32>) -> Result<Option<i32>, WebhookError> {
    match rate {
        Some(0) => Err(WebhookError::BadInput(
            "rateLimitPerSecond must be at least 1".into(),
        )),
        Some(rate) => Ok(Some(rate.min(i32::MAX as u32) as i32)),
        None => Ok(None),
    }
}

fn schedule_json(schedule: &[Duration]) -> serde_json::Value {
    serde_json::json!(
        schedule
            .iter()
            .map(Duration::as_secs_f64)
            .collect::<Vec<_>>()
    )
}
