//! One message on its way to one endpoint. Its id is the `webhook-id` the receiver sees, the
//! same on every attempt and replay. On embedded defaults this table is also the queue:
//! `next_attempt_at` is when the row may next be taken, and taking it pushes that time out by
//! the lease (visibility timeout), so a task held by a crashed worker comes back by itself.

use sea_orm::entity::prelude::*;

pub const PENDING: &str = "pending";
pub const SUCCEEDED: &str = "succeeded";
pub const DEAD: &str = "dead";

/// `status = 'dead'` with the status written out, not bound: a prepared plan may use an index
/// whose condition names it (the dead-letter indexes of migration 9) only then.
pub fn is_dead() -> sea_orm::sea_query::SimpleExpr {
    Expr::cust(format!("deliveries.status = '{DEAD}'"))
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub message_id: String,
    pub endpoint_id: String,
    /// [`PENDING`], [`SUCCEEDED`] or [`DEAD`].
    pub status: String,
    /// Attempts made since the delivery was created or last replayed (a replay starts a
    /// fresh retry schedule).
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    /// Set while a worker holds the row; only that worker may settle it.
    pub lease_token: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
    pub dead_at: Option<DateTimeUtc>,
    /// Attempts made before the last replay, added up over every replay: `attempts +
    /// earlier_attempts` is the delivery's whole history.
    pub earlier_attempts: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
