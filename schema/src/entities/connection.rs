//! A connection: one tenant's configured connector (its configuration, credentials, the
//! streams it syncs) and its schedule.

use sea_orm::entity::prelude::*;

/// Syncs on its schedule.
pub const ACTIVE: &str = "active";
/// Syncs only when nobody asks: no scheduled runs until resumed.
pub const PAUSED: &str = "paused";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// The connector's name in the catalog (`stripe`).
    pub connector: String,
    /// Valid against the connector's configuration schema.
    pub config: Json,
    /// Secret values by name, stored as endpoint signing secrets are (in the database as
    /// they are: Junction has no encryption at rest of its own yet).
    pub credentials: Json,
    /// Seconds between scheduled syncs; at least 30.
    pub schedule_seconds: i64,
    /// The names of the streams synced, a JSON array.
    pub streams: Json,
    /// [`ACTIVE`] or [`PAUSED`].
    pub status: String,
    /// When the scheduler next queues a run.
    pub next_sync_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
