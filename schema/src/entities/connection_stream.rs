//! Where a connection's stream got to: the connector's last checkpoint, and the newest cursor
//! value it covers (for sync lag). Written in the same transaction as the records the
//! checkpoint covers.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connection_streams")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub stream: String,
    pub tenant_id: String,
    /// The connector's last checkpoint, opaque here; `None` reads from the start.
    pub state: Option<Json>,
    /// The highest cursor value of the records stored, as the source wrote it.
    pub cursor: Option<Json>,
    /// [`cursor`](Self::cursor) read as a time, when it is one.
    pub cursor_at: Option<DateTimeUtc>,
    /// When a read of the stream last ran to its end.
    pub last_synced_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
