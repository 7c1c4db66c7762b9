//! Queries, including the entity lookups the router uses to join other subgraphs' fields.

use super::api_keys::{self, ApiKey};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};

use super::access::{ApiResult, reader};
use super::objects::{Endpoint, EventType, Message};
use crate::{WebhookError, endpoints, event_types, messages};
use junction_subgraph_kit::{
    decode_cursor as decode, encode_cursor as encode, page_limit as limit,
};

pub struct Query;

#[derive(InputObject, Default)]
pub struct MessageFilter {
    pub event_type: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Turns `limit` rows (one more than asked) into a page.
fn page<T, N>(
    rows: Vec<T>,
    limit: u64,
    key: impl Fn(&T) -> String,
    node: impl Fn(T) -> N,
) -> Connection<String, N>
where
    N: async_graphql::OutputType,
{
    let has_next = rows.len() as u64 >= limit;
    let mut connection = Connection::new(false, has_next);
    connection.edges.extend(
        rows.into_iter()
            .take(limit.saturating_sub(1) as usize)
            .map(|row| Edge::new(encode(&key(&row)), node(row))),
    );
    connection
}

fn not_found_is_none<T>(result: Result<T, WebhookError>) -> Result<Option<T>> {
    match result {
        Ok(found) => Ok(Some(found)),
        Err(WebhookError::NotFound(_)) => Ok(None),
        Err(error) => Err(error).api(),
    }
}

#[Object]
impl Query {
    async fn endpoint(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Endpoint>> {
        let access = reader(ctx)?;
        Ok(
            not_found_is_none(endpoints::get(&access.state.db, access.tenant(), &id).await)?
                .map(Endpoint),
        )
    }

    /// The tenant's endpoints, oldest first.
    async fn endpoints(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        enabled: Option<bool>,
    ) -> Result<Connection<String, Endpoint>> {
        let access = reader(ctx)?;
        let limit = limit(first)?;
        let after = decode(after)?;
        let rows = endpoints::list(
            &access.state.db,
            access.tenant(),
            after.as_deref(),
            limit,
            enabled,
        )
        .await
        .api()?;
        Ok(page(rows, limit, |row| row.id.clone(), Endpoint))
    }

    async fn event_type(&self, ctx: &Context<'_>, name: String) -> Result<Option<EventType>> {
        let access = reader(ctx)?;
        Ok(event_types::find(&access.state.db, access.tenant(), &name)
            .await
            .api()?
            .map(EventType))
    }

    /// The tenant's event types, by name.
    async fn event_types(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default = false)] include_deprecated: bool,
    ) -> Result<Connection<String, EventType>> {
        let access = reader(ctx)?;
        let limit = limit(first)?;
        let after = decode(after)?;
        let rows = event_types::list(
            &access.state.db,
            access.tenant(),
            after.as_deref(),
            limit,
            include_deprecated,
        )
        .await
        .api()?;
        Ok(page(rows, limit, |row| row.name.clone(), EventType))
    }

    async fn message(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Message>> {
        let access = reader(ctx)?;
        Ok(
            not_found_is_none(messages::get(&access.state.db, access.tenant(), &id).await)?
                .map(Message),
        )
    }

    /// The tenant's messages, newest first.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<MessageFilter>,
    ) -> Result<Connection<String, Message>> {
        let access = reader(ctx)?;
        let limit = limit(first)?;
        let after = decode(after)?;
        let filter = filter.unwrap_or_default();
        let filter = messages::MessageFilter {
            event_type: filter.event_type,
            created_after: filter.created_after,
            created_before: filter.created_before,
        };
        let rows = messages::list(
            &access.state.db,
            access.tenant(),
            after.as_deref(),
            limit,
            &filter,
        )
        .await
        .api()?;
        Ok(page(rows, limit, |row| row.id.clone(), Message))
    }

    /// Every tenant, by name (`platform:admin` only).
    async fn tenants(&self, ctx: &Context<'_>) -> Result<Vec<super::tenants::Tenant>> {
        super::tenants::list(ctx).await
    }

    /// The tenant's API keys, oldest first (`admin` only).
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKey>> {
        api_keys::list(ctx).await
    }

    #[graphql(entity)]
    async fn find_endpoint_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Endpoint>> {
        self.endpoint(ctx, id).await
    }

    #[graphql(entity)]
    async fn find_message_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Message>> {
        self.message(ctx, id).await
    }
}
