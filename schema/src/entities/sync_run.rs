//! One sync of a connection: queued, then leased by a worker that runs it, then finished.
//!
//! A worker holds a run by its `lease_token` until `lease_expires_at`, renewing the lease as
//! it commits; a run whose lease ran out (its worker died) is leased again by another worker,
//! and resumes from the streams' last checkpoints. A unique index over the connection of live
//! (queued or running) runs keeps a connection to one at a time.

use sea_orm::entity::prelude::*;

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";
pub const CANCELLED: &str = "cancelled";

/// Queued by the scheduler.
pub const SCHEDULED: &str = "schedule";
/// Queued on request (`triggerSync`).
pub const MANUAL: &str = "manual";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    /// [`QUEUED`], [`RUNNING`], [`SUCCEEDED`], [`FAILED`] or [`CANCELLED`].
    pub status: String,
    /// [`SCHEDULED`] or [`MANUAL`].
    pub reason: String,
    /// Per stream: `{"items": {"read": 53, "created": 50, "updated": 3}}`.
    pub counts: Json,
    /// The stream being read.
    pub current_stream: Option<String>,
    /// Tries of the current stream that ended in a temporary failure.
    pub attempts: i32,
    /// Not leased before this (a rate-limited run waits here).
    pub run_after: DateTimeUtc,
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<DateTimeUtc>,
    /// Asked to stop; the worker notices between pages.
    pub cancel_requested: bool,
    /// Why it failed, or why it waits (a rate limit), for the user.
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

impl Model {
    /// Still to run or running.
    pub fn is_live(&self) -> bool {
        self.status == QUEUED || self.status == RUNNING
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
