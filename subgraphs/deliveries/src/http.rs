//! The subgraph's HTTP surface: `POST /graphql`, behind the signed-identity layer.

use std::sync::Arc;

use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use junction_schema::Identity;
use junction_schema::identity::{IdentityVerifier, RequireIdentityLayer};

use crate::graphql::DeliveriesSchema;

pub fn router(schema: DeliveriesSchema, verifier: Arc<IdentityVerifier>) -> Router {
    Router::new()
        .route("/graphql", post(graphql))
        .with_state(schema)
        .layer(RequireIdentityLayer::new(verifier))
}

async fn graphql(
    State(schema): State<DeliveriesSchema>,
    identity: Identity,
    request: GraphQLRequest,
) -> GraphQLResponse {
    schema
        .execute(request.into_inner().data(identity))
        .await
        .into()
}
