//! The subgraph's HTTP surface: `POST /graphql`, behind the signed-identity layer, and the
//! REST routes of [`crate::rest`] (`POST /v1/events`, checked for their route's identity).

use std::sync::Arc;

use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use junction_schema::Identity;
use junction_schema::identity::{Audience, IdentityVerifier, RequireIdentityLayer};

use crate::graphql::{Traceparent, WebhooksSchema, WebhooksState};

pub fn router(
    schema: WebhooksSchema,
    state: Arc<WebhooksState>,
    verifier: Arc<IdentityVerifier>,
) -> Router {
    Router::new()
        .route("/graphql", post(graphql))
        .with_state(schema)
        .layer(RequireIdentityLayer::new(
            Arc::clone(&verifier),
            Audience::subgraph(crate::SUBGRAPH_NAME),
        ))
        .merge(crate::rest::routes(state, verifier))
}

async fn graphql(
    State(schema): State<WebhooksSchema>,
    identity: Identity,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let mut request = request.into_inner().data(identity);
    if let Some(traceparent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        request = request.data(Traceparent(traceparent.to_owned()));
    }
    schema.execute(request).await.into()
}
