//! A record synced from a connection's stream, upserted by its primary key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connector_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub stream: String,
    /// The record's primary key as text: the value itself for a one-field string key, else
    /// the key's values as a JSON array (a stream without a key: the record's hash).
    #[sea_orm(primary_key, auto_increment = false)]
    pub record_key: String,
    pub tenant_id: String,
    pub data: Json,
    pub first_seen_at: DateTimeUtc,
    /// When `data` last changed.
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
