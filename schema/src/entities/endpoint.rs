//! A webhook endpoint: where a tenant wants events delivered, and how.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub description: String,
    /// JSON array of event type names; empty means every event type.
    pub event_types: Json,
    /// JSON array of channels; empty means every message, whatever its channels.
    pub channels: Json,
    /// JSON object of extra headers sent with every delivery.
    pub headers: Json,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// JSON array of delays in seconds between attempts; null means the global schedule.
    pub retry_schedule: Option<Json>,
    pub rate_limit_per_second: Option<i32>,
    /// `hmac-sha256` (Standard Webhooks `v1`) or `ed25519` (`v1a`).
    pub signing_algorithm: String,
    /// When the current run of consecutive failures began; cleared by any success.
    pub failing_since: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
