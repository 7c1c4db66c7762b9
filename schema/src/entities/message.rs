//! A published event: stored once, delivered to every matching endpoint.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub payload: Json,
    /// Hex SHA-256 of the payload as published, to tell a retried publish from a conflicting one.
    pub payload_hash: String,
    pub channels: Json,
    pub idempotency_key: Option<String>,
    /// The W3C trace context of the publishing request, carried to every delivery.
    pub traceparent: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
