//! The GraphQL face of the webhooks subgraph (Apollo Federation v2): `Endpoint` and `Message`
//! are entities other subgraphs extend; every operation is scoped to the caller's tenant.

pub(crate) mod access;
mod api_keys;
mod mutation;
mod objects;
mod query;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{EmptySubscription, SDLExportOptions, Schema};
use junction_schema::webhook_url::AddressPolicy;
use sea_orm::DatabaseConnection;

pub use mutation::{Mutation, Traceparent};
pub use query::Query;

pub type WebhooksSchema = Schema<Query, Mutation, EmptySubscription>;

/// What resolvers need besides the caller's identity.
#[derive(Clone)]
pub struct WebhooksState {
    pub db: DatabaseConnection,
    pub policy: AddressPolicy,
    pub max_payload_bytes: usize,
    /// How long a rotated-out secret keeps signing when the caller names no grace period.
    pub rotation_grace: Duration,
}

pub fn schema(state: WebhooksState) -> WebhooksSchema {
    schema_sharing(Arc::new(state))
}

/// The schema over `state`, shared with the REST routes.
pub fn schema_sharing(state: Arc<WebhooksState>) -> WebhooksSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(state)
        .limit_depth(16)
        .limit_complexity(2_000)
        .finish()
}

/// The subgraph's SDL as the router composes it.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .finish()
        .sdl_with_options(SDLExportOptions::new().federation().compose_directive())
}

#[cfg(test)]
mod tests {
    /// The SDL under `schema/graphql/` is what the code generates.
    #[test]
    fn checked_in_sdl_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../schema/graphql/webhooks.graphql");
        junction_subgraph_kit::assert_sdl_checked_in(&super::sdl(), &path);
    }
}
