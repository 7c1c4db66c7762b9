//! Tenants, and the bootstrap that makes a new installation usable at once.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use uuid::Uuid;

use crate::apikeys::{self, ApiKeyError, IssuedApiKey};
use crate::entities::tenant;
pub use crate::identity::ADMIN_SCOPE;
use crate::identity::Scopes;

pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(
        "invalid tenant name {0:?}: use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("a tenant named {0:?} already exists")]
    NameTaken(String),
    #[error("no tenant with id or name {0:?}")]
    NotFound(String),
    #[error(transparent)]
    ApiKey(#[from] ApiKeyError),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

pub async fn create(db: &impl ConnectionTrait, name: &str) -> Result<tenant::Model, TenantError> {
    if !valid_name(name) {
        return Err(TenantError::InvalidName(name.to_owned()));
    }
    if find_by_name(db, name).await?.is_some() {
        return Err(TenantError::NameTaken(name.to_owned()));
    }
    let now = Utc::now();
    let model = tenant::ActiveModel {
        id: Set(Uuid::now_v7().to_string()),
        name: Set(name.to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(model)
}

async fn find_by_name(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<tenant::Model>, DbErr> {
    tenant::Entity::find()
        .filter(tenant::Column::Name.eq(name))
        .one(db)
        .await
}

/// Finds a tenant by id or, failing that, by name.
pub async fn find(
    db: &impl ConnectionTrait,
    id_or_name: &str,
) -> Result<tenant::Model, TenantError> {
    if let Some(found) = tenant::Entity::find_by_id(id_or_name).one(db).await? {
        return Ok(found);
    }
    find_by_name(db, id_or_name)
        .await?
        .ok_or_else(|| TenantError::NotFound(id_or_name.to_owned()))
}

/// Renames a tenant (its id stays).
pub async fn rename(
    db: &impl ConnectionTrait,
    id: &str,
    name: &str,
) -> Result<tenant::Model, TenantError> {
    if !valid_name(name) {
        return Err(TenantError::InvalidName(name.to_owned()));
    }
    let found = tenant::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| TenantError::NotFound(id.to_owned()))?;
    if found.name == name {
        return Ok(found);
    }
    if find_by_name(db, name).await?.is_some() {
        return Err(TenantError::NameTaken(name.to_owned()));
    }
    let mut changed: tenant::ActiveModel = found.into();
    changed.name = Set(name.to_owned());
    changed.updated_at = Set(Utc::now());
    Ok(changed.update(db).await?)
}

/// Rows deleted per statement when a tenant goes: a tenant's history may be millions of rows,
/// which one statement would hold locked (and in one transaction's memory) all at once.
const DELETE_BATCH: u64 = 1_000;

/// Deletes a tenant and everything of it: its keys first (so nothing new arrives), then its
/// delivery history and messages in batches, then the tenant row, whose foreign keys take
/// the rest (endpoints and their secrets, event types, replay jobs).
pub async fn delete(db: &DatabaseConnection, id: &str) -> Result<tenant::Model, TenantError> {
    use crate::entities::{api_key, delivery, delivery_attempt, message};
    use sea_orm::sea_query::Query;

    let found = tenant::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| TenantError::NotFound(id.to_owned()))?;
    api_key::Entity::delete_many()
        .filter(api_key::Column::TenantId.eq(id))
        .exec(db)
        .await?;
    macro_rules! delete_in_batches {
        ($entity:ident) => {
            loop {
                let batch = Query::select()
                    .column($entity::Column::Id)
                    .from($entity::Entity)
                    .and_where($entity::Column::TenantId.eq(id))
                    .limit(DELETE_BATCH)
                    .to_owned();
                let deleted = $entity::Entity::delete_many()
                    .filter($entity::Column::Id.in_subquery(batch))
                    .exec(db)
                    .await?
                    .rows_affected;
                if deleted == 0 {
                    break;
                }
            }
        };
    }
    delete_in_batches!(delivery_attempt);
    delete_in_batches!(delivery);
    delete_in_batches!(message);
    tenant::Entity::delete_by_id(id).exec(db).await?;
    Ok(found)
}

pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<tenant::Model>, DbErr> {
    tenant::Entity::find()
        .order_by_asc(tenant::Column::Name)
        .all(db)
        .await
}

/// What the first start of an empty installation created.
pub struct Bootstrap {
    pub tenant: tenant::Model,
    pub admin_key: IssuedApiKey,
}

/// On an installation with no tenants, creates the default tenant and an admin API key, in one
/// transaction, and returns them so the key can be shown once. Otherwise does nothing.
pub async fn bootstrap(db: &DatabaseConnection) -> Result<Option<Bootstrap>, TenantError> {
    if tenant::Entity::find().count(db).await? > 0 {
        return Ok(None);
    }
    let txn = db.begin().await?;
    let tenant = create(&txn, DEFAULT_TENANT).await?;
    let scopes = Scopes::new([ADMIN_SCOPE]).expect("a valid scope");
    let admin_key = apikeys::create(&txn, &tenant.id, "bootstrap admin", &scopes, None).await?;
    txn.commit().await?;
    Ok(Some(Bootstrap { tenant, admin_key }))
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn tenant_names() {
        for good in ["default", "acme-corp", "t1", "a_b"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-x", "Acme", "with space", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
