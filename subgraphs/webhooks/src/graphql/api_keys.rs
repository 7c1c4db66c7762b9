//! The tenant's API keys: listed, created (the secret shown once, in the creation payload)
//! and revoked, by callers holding `admin`. Keys are stored as digests (see
//! `junction_schema::apikeys`); nothing here can show a secret again.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use junction_schema::apikeys::{self, ApiKeyError};
use junction_schema::entities::api_key;
use junction_schema::error_code::ErrorCode;
use junction_schema::identity::{PLATFORM_ADMIN_SCOPE, Scopes};
use junction_schema::tenants;

use super::access::{Access, admin, error};

/// A credential for the API. The secret is not here: it is shown once, when created.
pub struct ApiKey(pub api_key::Model);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn scopes(&self) -> Vec<String> {
        self.0
            .scopes
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }

    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }

    /// Recorded at most once a minute.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// For people: 1 to 100 characters.
    pub name: String,
    /// What the key may do, e.g. `["webhooks:read"]`; `admin` may do everything.
    pub scopes: Vec<String>,
    /// When the key stops working; never when absent.
    pub expires_at: Option<DateTime<Utc>>,
    /// The tenant the key is for: the caller's own when absent; another one only for a caller
    /// holding `platform:admin`.
    pub tenant: Option<ID>,
}

#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    pub api_key: ApiKey,
    /// The whole key (`jk_live_...`), shown this once: store it now.
    pub secret: String,
}

#[derive(SimpleObject)]
pub struct RevokeApiKeyPayload {
    pub api_key: ApiKey,
}

pub async fn list(ctx: &Context<'_>) -> Result<Vec<ApiKey>> {
    let access = admin(ctx)?;
    let keys = apikeys::list(&access.state.db, access.tenant())
        .await
        .map_err(|e| database(&ApiKeyError::from(e)))?;
    Ok(keys.into_iter().map(ApiKey).collect())
}

pub async fn create(ctx: &Context<'_>, input: CreateApiKeyInput) -> Result<CreateApiKeyPayload> {
    // A platform admin issues keys for any tenant (and platform keys); a tenant's admin, for
    // its own tenant only and never a platform key.
    let platform = input.tenant.is_some() || input.scopes.iter().any(|s| s == PLATFORM_ADMIN_SCOPE);
    let (identity, state) = if platform {
        super::tenants::platform_admin(ctx)?
    } else {
        let access: Access<'_> = admin(ctx)?;
        (access.identity, access.state)
    };
    let tenant = match &input.tenant {
        Some(id) => {
            tenants::find(&state.db, id)
                .await
                .map_err(|e| super::tenants::tenant_error(&e))?
                .id
        }
        None => identity.tenant.clone(),
    };
    if input.scopes.is_empty() {
        return Err(error(
            ErrorCode::BadUserInput,
            "`scopes` needs at least one scope",
        ));
    }
    let scopes = Scopes::new(input.scopes.iter().map(String::as_str))
        .map_err(|e| error(ErrorCode::BadUserInput, e.to_string()))?;
    if input.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(error(
            ErrorCode::BadUserInput,
            "`expiresAt` must be in the future",
        ));
    }
    let issued = apikeys::create(&state.db, &tenant, &input.name, &scopes, input.expires_at)
        .await
        .map_err(|e| api_error(&e))?;
    tracing::info!(
        tenant = %tenant,
        key = %issued.model.id,
        by = %identity.subject,
        "API key created"
    );
    Ok(CreateApiKeyPayload {
        secret: issued.reveal().to_owned(),
        api_key: ApiKey(issued.model),
    })
}

pub async fn revoke(ctx: &Context<'_>, id: ID) -> Result<RevokeApiKeyPayload> {
    let access = admin(ctx)?;
    let revoked = apikeys::revoke(&access.state.db, access.tenant(), &id)
        .await
        .map_err(|e| api_error(&e))?;
    tracing::info!(
        tenant = %access.tenant(),
        key = %revoked.id,
        by = %access.identity.subject,
        "API key revoked"
    );
    Ok(RevokeApiKeyPayload {
        api_key: ApiKey(revoked),
    })
}

fn api_error(failure: &ApiKeyError) -> async_graphql::Error {
    match failure {
        ApiKeyError::InvalidName | ApiKeyError::UnknownScope(_) => {
            error(ErrorCode::BadUserInput, failure.to_string())
        }
        ApiKeyError::NotFound(_) => error(ErrorCode::NotFound, failure.to_string()),
        ApiKeyError::Database(_) => database(failure),
    }
}

fn database(failure: &ApiKeyError) -> async_graphql::Error {
    // Details stay in the logs: INTERNAL never leaks them.
    tracing::error!(error = %failure, "API key storage error");
    error(ErrorCode::Internal, "internal error")
}
