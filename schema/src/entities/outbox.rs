//! What the outbox relay still has to hand to Kafka: a published message (every pending
//! delivery of it), or one delivery made due again (a replay). A row is written in the
//! transaction that makes its deliveries due, and deleted once the relay has sent them; so a
//! committed publish is always either on Kafka or still named here.
//!
//! One row per message, not per delivery: a message fanned out to many endpoints costs the
//! relay one row to find and delete, and the wide delivery rows are never rewritten to mark
//! them sent. The embedded queue reads the deliveries table itself; it only sweeps away rows
//! that no longer name a pending delivery.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Increasing: the relay sends in this order.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub message_id: String,
    /// One delivery of the message; `None` for all of them.
    pub delivery_id: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
