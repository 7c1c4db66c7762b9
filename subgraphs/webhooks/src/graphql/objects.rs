//! The GraphQL types, each a thin view of a stored row.

use async_graphql::{Context, Enum, ID, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use junction_schema::entities::{endpoint, endpoint_secret, event_type, message};
use junction_schema::webhook_signature::Scheme;

use super::access::{ApiResult, reader};
use crate::endpoints::{self, json_strings};

/// Where a tenant's webhooks go.
pub struct Endpoint(pub endpoint::Model);

#[Object]
impl Endpoint {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn url(&self) -> &str {
        &self.0.url
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    /// Event types delivered here; empty means all.
    async fn event_types(&self) -> Vec<String> {
        json_strings(&self.0.event_types)
    }

    /// Channels delivered here; empty means every message.
    async fn channels(&self) -> Vec<String> {
        json_strings(&self.0.channels)
    }

    /// Extra headers sent with every delivery.
    async fn headers(&self) -> Vec<Header> {
        self.0
            .headers
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(name, value)| Header {
                        name: name.clone(),
                        value: value.as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// Why the endpoint was disabled, by its owner or by Junction (410 Gone, failing too long).
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }

    /// Seconds between attempts, when this endpoint overrides the global schedule.
    async fn retry_schedule(&self) -> Option<Vec<f64>> {
        self.0.retry_schedule.as_ref().and_then(|v| {
            v.as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        })
    }

    async fn rate_limit_per_second(&self) -> Option<i32> {
        self.0.rate_limit_per_second
    }

    async fn signing_algorithm(&self) -> SigningAlgorithm {
        match Scheme::parse(&self.0.signing_algorithm) {
            Some(Scheme::Ed25519) => SigningAlgorithm::Ed25519,
            _ => SigningAlgorithm::HmacSha256,
        }
    }

    /// Since when every attempt has failed; null while deliveries succeed.
    async fn failing_since(&self) -> Option<DateTime<Utc>> {
        self.0.failing_since
    }

    /// The signing secrets (metadata only: a secret is shown once, when it is made).
    async fn secrets(&self, ctx: &Context<'_>) -> Result<Vec<EndpointSecret>> {
        let access = reader(ctx)?;
        let rows = endpoints::secrets(&access.state.db, access.tenant(), &self.0.id)
            .await
            .api()?;
        Ok(rows.into_iter().map(EndpointSecret).collect())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(SimpleObject)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum SigningAlgorithm {
    /// Standard Webhooks `v1`: HMAC-SHA256 with a shared `whsec_` secret.
    #[graphql(name = "HMAC_SHA256")]
    HmacSha256,
    /// Standard Webhooks `v1a`: ed25519; receivers hold only the `whpk_` public key.
    #[graphql(name = "ED25519")]
    Ed25519,
}

impl From<SigningAlgorithm> for Scheme {
    fn from(algorithm: SigningAlgorithm) -> Self {
        match algorithm {
            SigningAlgorithm::HmacSha256 => Scheme::HmacSha256,
            SigningAlgorithm::Ed25519 => Scheme::Ed25519,
        }
    }
}

pub struct EndpointSecret(pub endpoint_secret::Model);

#[Object]
impl EndpointSecret {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When a rotated-out secret stops signing; null for the current one.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
}

/// A kind of event a tenant publishes.
pub struct EventType(pub event_type::Model);

#[Object]
impl EventType {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// Dot-separated, such as `invoice.payment.succeeded`.
    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    /// The JSON Schema payloads must satisfy, if any.
    async fn schema(&self) -> Option<Json<serde_json::Value>> {
        self.0.schema.clone().map(Json)
    }

    async fn deprecated(&self) -> bool {
        self.0.deprecated
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A published event.
pub struct Message(pub message::Model);

#[Object]
impl Message {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    async fn payload(&self) -> Json<serde_json::Value> {
        Json(self.0.payload.clone())
    }

    async fn channels(&self) -> Vec<String> {
        json_strings(&self.0.channels)
    }

    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}
