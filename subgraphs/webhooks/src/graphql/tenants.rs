//! Tenants, for a platform that embeds Junction for its own customers and creates them from
//! its code: listed, created, renamed and deleted (everything of the tenant with it) by a
//! caller holding `platform:admin`, which a tenant's `admin` does not imply. Such a caller
//! also issues keys for any tenant (`createApiKey(input: {tenant: ...})`).

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use junction_schema::Identity;
use junction_schema::entities::tenant;
use junction_schema::error_code::ErrorCode;
use junction_schema::identity::PLATFORM_ADMIN_SCOPE;
use junction_schema::tenants::{self, TenantError};
use junction_subgraph_kit::database_error;

use super::WebhooksState;
use super::access::error;

/// A customer of the platform: every endpoint, message, delivery and key belongs to one.
pub struct Tenant(pub tenant::Model);

#[Object]
impl Tenant {
    /// Opaque, never reused.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// 1 to 64 lowercase letters, digits, `-` or `_`; unique.
    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(InputObject)]
pub struct CreateTenantInput {
    pub name: String,
}

#[derive(InputObject)]
pub struct UpdateTenantInput {
    pub id: ID,
    pub name: String,
}

#[derive(InputObject)]
pub struct DeleteTenantInput {
    pub id: ID,
}

#[derive(SimpleObject)]
pub struct TenantPayload {
    pub tenant: Tenant,
}

#[derive(SimpleObject)]
pub struct DeleteTenantPayload {
    pub deleted_id: ID,
}

/// The caller, when it holds `platform:admin`.
pub fn platform_admin<'a>(ctx: &'a Context<'_>) -> Result<(&'a Identity, &'a WebhooksState)> {
    let identity = junction_subgraph_kit::caller(ctx, &[PLATFORM_ADMIN_SCOPE])?;
    let state = ctx.data::<std::sync::Arc<WebhooksState>>()?;
    Ok((identity, state))
}

pub async fn list(ctx: &Context<'_>) -> Result<Vec<Tenant>> {
    let (_, state) = platform_admin(ctx)?;
    let all = tenants::list(&state.db)
        .await
        .map_err(|e| database_error(crate::SUBGRAPH_NAME, &e))?;
    Ok(all.into_iter().map(Tenant).collect())
}

pub async fn create(ctx: &Context<'_>, input: CreateTenantInput) -> Result<TenantPayload> {
    let (identity, state) = platform_admin(ctx)?;
    let created = tenants::create(&state.db, &input.name)
        .await
        .map_err(|e| tenant_error(&e))?;
    tracing::info!(tenant = %created.id, name = %created.name, by = %identity.subject, "tenant created");
    Ok(TenantPayload {
        tenant: Tenant(created),
    })
}

pub async fn update(ctx: &Context<'_>, input: UpdateTenantInput) -> Result<TenantPayload> {
    let (identity, state) = platform_admin(ctx)?;
    let renamed = tenants::rename(&state.db, &input.id, &input.name)
        .await
        .map_err(|e| tenant_error(&e))?;
    tracing::info!(tenant = %renamed.id, name = %renamed.name, by = %identity.subject, "tenant renamed");
    Ok(TenantPayload {
        tenant: Tenant(renamed),
    })
}

pub async fn delete(ctx: &Context<'_>, input: DeleteTenantInput) -> Result<DeleteTenantPayload> {
    let (identity, state) = platform_admin(ctx)?;
    if identity.tenant == input.id.as_str() {
        return Err(error(
            ErrorCode::BadUserInput,
            "a credential cannot delete its own tenant: use one of another tenant",
        ));
    }
    let deleted = tenants::delete(&state.db, &input.id)
        .await
        .map_err(|e| tenant_error(&e))?;
    tracing::info!(tenant = %deleted.id, name = %deleted.name, by = %identity.subject, "tenant deleted");
    Ok(DeleteTenantPayload {
        deleted_id: input.id,
    })
}

pub(super) fn tenant_error(failure: &TenantError) -> async_graphql::Error {
    match failure {
        TenantError::InvalidName(_) | TenantError::ApiKey(_) => {
            error(ErrorCode::BadUserInput, failure.to_string())
        }
        TenantError::NameTaken(_) => error(ErrorCode::Conflict, failure.to_string()),
        TenantError::NotFound(_) => error(ErrorCode::NotFound, failure.to_string()),
        TenantError::Database(db) => database_error(crate::SUBGRAPH_NAME, db),
    }
}
