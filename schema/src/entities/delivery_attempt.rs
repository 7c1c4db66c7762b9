//! One HTTP attempt of a delivery, recorded before the task is acknowledged.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub delivery_id: String,
    pub message_id: String,
    pub endpoint_id: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub duration_ms: i64,
    /// The start of the response body, truncated.
    pub response_excerpt: Option<String>,
    /// Why no 2xx: `timeout`, `connect`, `status`, `ssrf`, ...; `None` on success.
    pub error_kind: Option<String>,
    pub trace_id: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
