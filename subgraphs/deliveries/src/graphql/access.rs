//! Who may do what: the scopes each operation needs, and the error codes every operation
//! shares.

use std::sync::Arc;

use async_graphql::{Context, Result};
use junction_schema::Identity;
use junction_subgraph_kit::{caller, database_error};
use sea_orm::DbErr;

use super::DeliveriesState;

pub const READ: &[&str] = &[
    "deliveries:read",
    "deliveries:write",
    "webhooks:read",
    "webhooks:write",
];
pub const WRITE: &[&str] = &["deliveries:write", "webhooks:write"];

/// Database errors as API errors: `UNAVAILABLE` (with `retryAfter`) when the database
/// cannot be reached, else `INTERNAL`; the details in the logs only.
pub fn api<T>(result: Result<T, DbErr>) -> Result<T> {
    result.map_err(|db| database_error(crate::SUBGRAPH_NAME, &db))
}

pub struct Access<'a> {
    pub identity: &'a Identity,
    pub state: &'a DeliveriesState,
}

impl Access<'_> {
    pub fn tenant(&self) -> &str {
        &self.identity.tenant
    }
}

pub fn allowed<'a>(ctx: &'a Context<'_>, scopes: &[&str]) -> Result<Access<'a>> {
    let identity = caller(ctx, scopes)?;
    let state = ctx.data::<Arc<DeliveriesState>>()?;
    Ok(Access { identity, state })
}

pub fn access<'a>(ctx: &'a Context<'_>) -> Result<Access<'a>> {
    allowed(ctx, READ)
}
