//! A bulk replay of dead letters: its filter, its progress, and a heartbeat while it runs.

use sea_orm::entity::prelude::*;

pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "replay_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// The filter: dead letters of this endpoint (or all), created in `[since, until)`.
    pub endpoint_id: Option<String>,
    pub since: Option<DateTimeUtc>,
    pub until: Option<DateTimeUtc>,
    /// [`RUNNING`], [`SUCCEEDED`] or [`FAILED`].
    pub status: String,
    /// Dead letters matching the filter when the job started.
    pub total: i64,
    /// Re-queued so far.
    pub requeued: i64,
    /// The last delivery id re-queued: the job goes on after it.
    pub cursor: Option<String>,
    pub error: Option<String>,
    /// Renewed after every batch; a running job whose heartbeat stops is taken over.
    pub heartbeat_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
