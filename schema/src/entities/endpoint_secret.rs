//! A signing secret of an endpoint. Rotation adds a new one and gives the old one an expiry, so
//! during the grace period deliveries carry a signature by each.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "endpoint_secrets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    /// `whsec_<base64>` for HMAC, `whsk_<base64 seed>` for ed25519.
    pub secret: String,
    pub created_at: DateTimeUtc,
    /// `None` for the current secret; the end of the grace period for a rotated one.
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
