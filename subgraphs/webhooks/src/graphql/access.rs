//! Who may do what, and how domain errors become GraphQL errors.

use std::sync::Arc;

use async_graphql::{Context, Error, ErrorExtensions};
use junction_schema::Identity;
use junction_schema::error_code::ErrorCode;

use super::WebhooksState;
use crate::WebhookError;

pub const READ_SCOPE: &str = "webhooks:read";
pub const WRITE_SCOPE: &str = "webhooks:write";

pub use junction_subgraph_kit::error;

/// Domain errors as API errors, with their `extensions.code`. (async-graphql converts any
/// error with `?`, without a code; resolvers call `.api()` instead.)
pub trait ApiResult<T> {
    fn api(self) -> Result<T, Error>;
}

impl<T> ApiResult<T> for Result<T, WebhookError> {
    fn api(self) -> Result<T, Error> {
        self.map_err(|error| api_error(&error))
    }
}

/// One domain error as an API error. A database that cannot be reached right now is
/// `UNAVAILABLE` with `retryAfter` (seconds): the request did nothing and may be sent again;
/// any other database failure is `INTERNAL`, details in the logs only.
pub fn api_error(error: &WebhookError) -> Error {
    let code = error.code();
    match (error, code) {
        (WebhookError::Database(db), ErrorCode::Unavailable) => {
            tracing::warn!(error = %db, "webhooks subgraph: the database is unavailable");
            self::error(code, error.public_message()).extend_with(|_, extensions| {
                extensions.set("retryAfter", crate::error::RETRY_AFTER_SECS)
            })
        }
        (WebhookError::Database(db), _) => {
            tracing::error!(error = %db, "webhooks subgraph database error");
            self::error(code, error.public_message())
        }
        _ => self::error(code, error.public_message()),
    }
}

pub struct Access<'a> {
    pub identity: &'a Identity,
    pub state: &'a WebhooksState,
}

impl Access<'_> {
    pub fn tenant(&self) -> &str {
        &self.identity.tenant
    }
}

fn access<'a>(ctx: &'a Context<'_>, allowed: &[&str]) -> Result<Access<'a>, Error> {
    let identity = junction_subgraph_kit::caller(ctx, allowed)?;
    let state = ctx.data::<Arc<WebhooksState>>()?;
    Ok(Access { identity, state })
}

pub fn reader<'a>(ctx: &'a Context<'_>) -> Result<Access<'a>, Error> {
    access(ctx, &[READ_SCOPE, WRITE_SCOPE])
}

pub fn writer<'a>(ctx: &'a Context<'_>) -> Result<Access<'a>, Error> {
    access(ctx, &[WRITE_SCOPE])
}

/// `admin` only: managing the tenant's credentials.
pub fn admin<'a>(ctx: &'a Context<'_>) -> Result<Access<'a>, Error> {
    access(ctx, &[])
}
