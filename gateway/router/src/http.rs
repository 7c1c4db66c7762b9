//! The GraphQL endpoint: `POST /graphql`, `GET /graphql` (queries only, with CSRF
//! prevention; a WebSocket upgrade for subscriptions), and event streams for clients that
//! accept them. Each request runs the [`crate::pipeline`] in order.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apollo_compiler::ast::OperationType;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, FromRequestParts, Query as UrlQuery, Request, State, WebSocketUpgrade,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use crate::error::Rejection;
use crate::executor::Forwarded;
use crate::metrics::{self, OperationLabel, Outcome};
use crate::pipeline::{self, Caller, GraphQLRequest, Planned, limits};
use crate::router::GraphRouter;
use crate::subscription::{sse, websocket};

/// `/graphql` over `router`.
pub fn routes(router: Arc<GraphRouter>) -> axum::Router {
    axum::Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .with_state(router)
}

/// The peer's address, which the server puts on every request.
fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// What a request's metrics say of it, filled in as the pipeline goes.
struct Observed {
    operation: OperationLabel,
    outcome: Outcome,
    /// Time spent waiting on subgraphs, when the operation ran.
    waiting: Option<Duration>,
    /// An event stream opened: the operation is counted where it runs.
    streamed: bool,
}

/// One HTTP request through [`pipeline`], counted and timed.
async fn run(
    router: &Arc<GraphRouter>,
    headers: HeaderMap,
    peer: Option<IpAddr>,
    method: Method,
    request: GraphQLRequest,
) -> Response {
    let started = Instant::now();
    let mut observed = Observed {
        operation: OperationLabel::UNKNOWN,
        outcome: Outcome::Refused,
        waiting: None,
        streamed: false,
    };
    let response = steps(router, headers, peer, method, request, &mut observed).await;
    if !observed.streamed {
        metrics::global().request(
            observed.operation,
            observed.outcome,
            Some(started.elapsed()),
            observed.waiting,
        );
    }
    response
}

/// The pipeline for one HTTP request: authenticate, the per-request allowance, every step to
/// the plan, the operation's allowances, then the answer.
async fn steps(
    router: &Arc<GraphRouter>,
    headers: HeaderMap,
    peer: Option<IpAddr>,
    method: Method,
    request: GraphQLRequest,
    observed: &mut Observed,
) -> Response {
    let forwarded = Forwarded::from_headers(&headers);
    let caller = match pipeline::authenticate::authenticate(router, &headers, peer, forwarded).await
    {
        Ok(caller) => caller,
        Err(rejection) => return rejection.into_response(),
    };
    let allowance = limits::per_request(router, &caller).await;
    limits::spend(allowance, async {
        let planned = match pipeline::prepare(router, request, &caller).await {
            Ok(planned) => planned,
            Err(rejection) => return rejection.into_response(),
        };
        observed.operation = metrics::global().operation(
            planned.operation.name.as_deref(),
            planned.operation.kind.into(),
        );
        let allowance = limits::per_operation(router, &caller, &planned, false).await;
        limits::spend(
            allowance,
            respond(router, &headers, planned, &method, caller, observed),
        )
        .await
    })
    .await
}

/// Runs a planned operation (or opens its event stream) and answers.
async fn respond(
    router: &Arc<GraphRouter>,
    headers: &HeaderMap,
    planned: Planned,
    method: &Method,
    caller: Caller,
    observed: &mut Observed,
) -> Response {
    if method == Method::GET && planned.operation.kind != OperationType::Query {
        return Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "BAD_USER_INPUT",
            "only queries may be sent with GET; use POST",
        )
        .into_response();
    }
    if accepts_event_stream(headers) {
        let response = sse::respond(Arc::clone(router), planned, caller);
        // Refused for the client's operations running at once, or counted where it runs.
        observed.streamed = response.status().is_success();
        return response;
    }
    if planned.operation.kind == OperationType::Subscription {
        return Rejection::bad_input(
            "subscriptions need a WebSocket (graphql-transport-ws, graphql-ws) or \
             `Accept: text/event-stream`",
        )
        .into_response();
    }
    let executed = pipeline::execute::execute(router, planned, &caller).await;
    observed.outcome = Outcome::of(&executed.body);
    observed.waiting = Some(executed.waiting);
    (StatusCode::OK, Json(executed.body)).into_response()
}

/// graphql-sse: the client asks for a stream of results.
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

async fn graphql_post(
    State(router): State<Arc<GraphRouter>>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let peer = peer(&parts.extensions);
    let request: GraphQLRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return Rejection::bad_input(&format!("the body is not a GraphQL request: {e}"))
                .into_response();
        }
    };
    run(&router, parts.headers, peer, Method::POST, request).await
}

async fn graphql_get(State(router): State<Arc<GraphRouter>>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let peer = peer(&parts.extensions);
    let upgrading = parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrading {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => websocket::upgrade(router, upgrade, parts.headers, peer),
            Err(rejection) => rejection.into_response(),
        };
    }
    let params = match UrlQuery::<GetParams>::from_request_parts(&mut parts, &()).await {
        Ok(UrlQuery(params)) => params,
        Err(rejection) => return Rejection::bad_input(&rejection.body_text()).into_response(),
    };
    let headers = parts.headers;
    // CSRF prevention: a browser cannot send these from a plain form or image tag.
    let preflighted = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            !v.starts_with("text/plain")
                && !v.starts_with("multipart/form-data")
                && !v.starts_with("application/x-www-form-urlencoded")
        })
        || headers.contains_key("apollo-require-preflight")
        || headers.contains_key("x-apollo-operation-name");
    if !preflighted {
        return Rejection::bad_input(
            "GET requests need a `content-type: application/json` or `apollo-require-preflight` header (CSRF prevention)",
        )
        .into_response();
    }
    let (variables, extensions) = match (
        json_param("variables", params.variables.as_deref()),
        json_param("extensions", params.extensions.as_deref()),
    ) {
        (Ok(variables), Ok(extensions)) => (variables, extensions),
        (Err(refused), _) | (_, Err(refused)) => return refused.into_response(),
    };
    let request = GraphQLRequest {
        query: params.query,
        operation_name: params.operation_name,
        variables,
        extensions,
    };
    run(&router, headers, peer, Method::GET, request).await
}

/// A JSON-encoded query-string parameter of a GET request.
fn json_param(name: &str, text: Option<&str>) -> Result<Option<Value>, Rejection> {
    text.map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|_| Rejection::bad_input(&format!("`{name}` is not JSON")))
}
