//! The GraphQL endpoint: `POST /graphql`, `GET /graphql` (queries only, with CSRF
//! prevention; a WebSocket upgrade for subscriptions), and event streams for clients that
//! accept them. These handlers are the http stage; the stages after it (`crate::stages`)
//! authenticate, rate-limit, and prepare with [`GraphRouter`]: persisted queries resolved,
//! parsed and validated against the API schema, limits and authorization checked, cost
//! estimated, planned (plans cached by operation text, name, `@skip`/`@include` values,
//! authorization outcome and schema); then the plan runs and the answer takes GraphQL's
//! shape. Nothing reaches a subgraph before all checks pass.

use std::collections::HashMap;
use std::sync::Arc;

use apollo_compiler::ExecutableDocument;
use apollo_compiler::ast::OperationType;
use apollo_compiler::validation::Valid;
use axum::Json;
use axum::extract::{FromRequestParts, Query as UrlQuery, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use junction_schema::Identity;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::SubscriptionConfig;
use junction_edge::auth::{self, Authenticator};
use junction_edge::cache::{BoundedCache, CacheConfig};

use crate::execute::{Forwarded, RequestContext, SubgraphClient, execute};
use crate::persisted::PersistedQueries;
use crate::stages::{self, Call, Stage};
use crate::subscription::{ClientLimits, sse, websocket};
use junction_edge::rate_limit::RateLimiter;
use junction_federation::authorization::{Caller, Denial};
use junction_federation::operation::{self, Limits, OperationError};
use junction_federation::plan::QueryPlan;
use junction_federation::planner;
use junction_federation::supergraph::{Labels, Supergraph};
use tower::ServiceExt;

pub struct GraphRouter {
    pub supergraph: Arc<Supergraph>,
    client: SubgraphClient,
    limits: Limits,
    authenticator: Option<Arc<dyn Authenticator>>,
    plans: BoundedCache<[u8; 32], Arc<QueryPlan>>,
    /// Validated documents by query text: parsing and validation run once per distinct query.
    documents: BoundedCache<Arc<str>, Arc<Valid<ExecutableDocument>>>,
    /// Every progressive-override label of the supergraph.
    override_labels: Labels,
    active_labels: Labels,
    subscriptions: SubscriptionConfig,
    client_limits: Arc<ClientLimits>,
    rate_limiter: Option<RateLimiter>,
    operation_limiters: HashMap<String, RateLimiter>,
    persisted: PersistedQueries,
    cost: junction_federation::cost::CostConfig,
}

/// `percent(25)` -> 25.0
fn percent(label: &str) -> Option<f64> {
    label
        .strip_prefix("percent(")?
        .strip_suffix(')')?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
}

impl GraphRouter {
    pub fn new(
        supergraph: Arc<Supergraph>,
        client: SubgraphClient,
        limits: Limits,
        authenticator: Option<Arc<dyn Authenticator>>,
    ) -> Self {
        Self {
            override_labels: supergraph.override_labels(),
            active_labels: Labels::new(),
            supergraph,
            client,
            limits,
            authenticator,
            plans: BoundedCache::new(CacheConfig::default().plans_bytes, 8 * 1024),
            documents: BoundedCache::new(CacheConfig::default().documents_bytes, 32 * 1024),
            subscriptions: SubscriptionConfig::default(),
            client_limits: Arc::default(),
            rate_limiter: None,
            operation_limiters: HashMap::new(),
            persisted: PersistedQueries::default(),
            cost: junction_federation::cost::CostConfig::default(),
        }
    }

    /// Caches bounded as `config` says (the persisted queries' with their own constructor).
    pub fn with_caches(mut self, config: &CacheConfig) -> Self {
        self.plans = BoundedCache::new(config.plans_bytes, 8 * 1024);
        self.documents = BoundedCache::new(config.documents_bytes, 32 * 1024);
        self
    }

    /// Trusted documents only, when the configuration names a manifest.
    pub fn with_persisted_queries(mut self, persisted: PersistedQueries) -> Self {
        self.persisted = persisted;
        self
    }

    pub fn with_cost(mut self, cost: junction_federation::cost::CostConfig) -> Self {
        self.cost = cost;
        self
    }

    pub fn with_rate_limit(mut self, limiter: Option<RateLimiter>) -> Self {
        self.rate_limiter = limiter;
        self
    }

    /// Limits of their own for named operations.
    pub fn with_operation_limits(mut self, limiters: HashMap<String, RateLimiter>) -> Self {
        self.operation_limiters = limiters;
        self
    }

    pub fn with_subscriptions(mut self, config: SubscriptionConfig) -> Self {
        self.subscriptions = config;
        self
    }

    pub(crate) fn subscription_config(&self) -> &SubscriptionConfig {
        &self.subscriptions
    }

    pub(crate) fn client_limits(&self) -> &Arc<ClientLimits> {
        &self.client_limits
    }

    pub(crate) fn client(&self) -> &SubgraphClient {
        &self.client
    }

    pub fn routes(self: Arc<Self>) -> axum::Router {
        let pipeline = stages::pipeline(&self);
        axum::Router::new()
            .route("/graphql", get(graphql_get).post(graphql_post))
            .with_state(Http {
                router: self,
                pipeline,
            })
    }

    pub(crate) fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.rate_limiter.as_ref()
    }

    pub(crate) fn operation_limiter(&self, operation: &str) -> Option<&RateLimiter> {
        self.operation_limiters.get(operation)
    }

    /// Whether an operation's cost is used: a maximum, or a rate limit counted in cost.
    fn cost_counts(&self) -> bool {
        self.cost.max.is_some()
            || self
                .rate_limiter
                .iter()
                .chain(self.operation_limiters.values())
                .any(RateLimiter::by_cost)
    }

    /// Progressive-override labels always on (besides `percent(N)` labels, drawn per request).
    pub fn with_active_labels(mut self, labels: Labels) -> Self {
        self.active_labels = labels;
        self
    }

    /// The labels on for one request: configured ones, and `percent(N)` ones N% of the time.
    fn labels_for_request(&self) -> Labels {
        self.override_labels
            .iter()
            .filter(|label| {
                self.active_labels.contains(*label)
                    || percent(label).is_some_and(|p| rand::random::<f64>() * 100.0 < p)
            })
            .cloned()
            .collect()
    }

    /// The parsed and validated document for `query`, from the cache when seen before.
    fn document(&self, query: &str) -> Result<Arc<Valid<ExecutableDocument>>, OperationError> {
        if let Some(document) = self.documents.get(query) {
            return Ok(document);
        }
        let document = Arc::new(operation::parse(&self.supergraph.api, query, &self.limits)?);
        self.documents.insert(
            Arc::from(query),
            Arc::clone(&document),
            operation::document_weight(query),
        );
        Ok(document)
    }

    /// The plan for a normalized operation, from the cache when it was planned before.
    pub fn plan(
        &self,
        query: &str,
        operation: &operation::Operation,
        conditions: &operation::Conditions,
        labels: &Labels,
        denial: &Denial,
    ) -> Result<Arc<QueryPlan>, planner::PlanError> {
        let mut hasher = Sha256::new();
        // Callers denied different fields run different operations from one query text.
        hasher.update(denial.fingerprint().as_bytes());
        hasher.update([0]);
        for label in labels {
            hasher.update(label.as_bytes());
            hasher.update([0]);
        }
        hasher.update(self.supergraph.hash.as_bytes());
        hasher.update([0]);
        hasher.update(query.as_bytes());
        hasher.update([0]);
        hasher.update(operation.name.as_deref().unwrap_or("").as_bytes());
        hasher.update([0]);
        conditions.write_key(&mut |bytes| hasher.update(bytes));
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan);
        }
        let plan = Arc::new(planner::plan_with(&self.supergraph, operation, labels)?);
        self.plans.insert(key, Arc::clone(&plan), plan.heap_bytes());
        Ok(plan)
    }

    /// The caller's identity from request headers (or a WebSocket's `connection_init`);
    /// `Ok(None)` when the router runs without authentication.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Identity>, Rejection> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(None);
        };
        auth::require(authenticator.as_ref(), headers)
            .await
            .map(Some)
            .map_err(|refusal| {
                Rejection::new(refusal.status(), refusal.code(), &refusal.to_string())
            })
    }

    /// Everything before execution: parsed, validated, limits checked, variables coerced,
    /// what `identity` may not see taken out, cost estimated (and refused over the maximum),
    /// planned. Nothing reaches a subgraph before this succeeds.
    pub(crate) fn prepare(
        &self,
        request: GraphQLRequest,
        identity: Option<&Identity>,
    ) -> Result<Prepared, Rejection> {
        // Refused before its hash is computed or anything of it is kept.
        if let Some(query) = &request.query {
            operation::check_size(query, &self.limits).map_err(Rejection::from)?;
        }
        let resolved = self
            .persisted
            .resolve(request.query, request.extensions.as_ref())?;
        let query = &resolved.query;
        let variables = match request.variables {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "BAD_USER_INPUT",
                    "`variables` must be an object",
                ));
            }
        };
        let api = &self.supergraph.api;
        let document = self.document(query).map_err(Rejection::from)?;
        let (mut operation, conditions) = operation::normalize(
            &document,
            request.operation_name.as_deref(),
            &variables,
            &self.limits,
        )
        .map_err(Rejection::from)?;
        resolved.remember(&self.persisted);
        let Ok(selected) = document.operations.get(request.operation_name.as_deref()) else {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "no such operation in the document",
            ));
        };
        let coerced = apollo_compiler::request::coerce_variable_values(
            api,
            selected,
            &to_bytes_map(&variables),
        )
        .map_err(|e| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                &e.message().to_string(),
            )
        })?;
        let introspection = introspect(&self.supergraph, &document, selected, &coerced);
        let caller = identity.map(|identity| move |scope: &str| identity.scopes.contains(scope));
        let denial = self.supergraph.access.filter(
            &self.supergraph.api,
            &mut operation,
            caller.as_ref().map(|c| c as &dyn Caller),
        );
        // Only estimated when something reads it: a maximum, or a limit counted in cost.
        let cost = if self.cost_counts() {
            self.supergraph
                .cost
                .estimate(&self.supergraph.api, &operation, &variables, &self.cost)
        } else {
            0
        };
        if let Some(max) = self.cost.max
            && cost > max
        {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "COST_ESTIMATED_TOO_EXPENSIVE",
                &format!(
                    "the operation's estimated cost is {cost}, above the maximum of {max}: \
                     ask for fewer items (`first`) or fewer nested lists"
                ),
            ));
        }
        let labels = self.labels_for_request();
        let plan = self
            .plan(query, &operation, &conditions, &labels, &denial)
            .map_err(|e| {
                // The reason names subgraphs and types the client need not know of.
                tracing::warn!(error = %e, operation = ?operation.name, "cannot plan an operation");
                Rejection::new(
                    StatusCode::OK,
                    "QUERY_PLANNING_FAILED",
                    "the router cannot plan this operation over its subgraphs",
                )
            })?;
        Ok(Prepared {
            operation,
            variables,
            plan,
            introspection,
            denial,
            cost,
        })
    }

    /// Runs a prepared query or mutation to its response body.
    pub(crate) async fn execute(
        &self,
        prepared: Prepared,
        identity: Option<&Identity>,
        forwarded: &Forwarded,
    ) -> Value {
        let context = RequestContext {
            supergraph: &self.supergraph,
            operation: &prepared.operation,
            variables: &prepared.variables,
            identity,
            forwarded,
        };
        let mut body = execute(
            &self.client,
            &prepared.plan,
            &context,
            prepared.introspection,
        )
        .await;
        prepared.denial.complete(&mut body);
        body
    }

    /// The execute stage: runs a prepared operation (or opens its event stream) and answers.
    pub(crate) async fn respond(
        self: &Arc<Self>,
        headers: &HeaderMap,
        prepared: Prepared,
        method: &Method,
        identity: Option<Identity>,
    ) -> Response {
        if method == Method::GET && prepared.operation.kind != OperationType::Query {
            return Rejection::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_USER_INPUT",
                "only queries may be sent with GET; use POST",
            )
            .into_response();
        }
        let forwarded = Forwarded::from_headers(headers);
        if accepts_event_stream(headers) {
            return sse::respond(Arc::clone(self), prepared, identity, forwarded);
        }
        if prepared.operation.kind == OperationType::Subscription {
            return Rejection::new(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "subscriptions need a WebSocket (graphql-transport-ws, graphql-ws) or \
                 `Accept: text/event-stream`",
            )
            .into_response();
        }
        let body = self.execute(prepared, identity.as_ref(), &forwarded).await;
        (StatusCode::OK, Json(body)).into_response()
    }
}

/// A 429 in GraphQL's shape, with the limiter's headers.
pub(crate) fn too_many(decision: &junction_edge::rate_limit::Decision) -> Response {
    let mut response = Rejection::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "too many requests: slow down and try again after `Retry-After` seconds",
    )
    .into_response();
    decision.set_headers(response.headers_mut());
    response
}

/// An operation ready to run.
pub(crate) struct Prepared {
    pub operation: operation::Operation,
    pub variables: Map<String, Value>,
    pub plan: Arc<QueryPlan>,
    /// Answers to `__schema`/`__type`, merged into the data.
    pub introspection: Option<Value>,
    /// Fields taken out for the caller, put back as nulls with errors.
    pub denial: Denial,
    /// The estimated cost (`[gateway.cost]`); 0 when nothing uses it.
    pub cost: u64,
}

/// A request refused before execution: an HTTP status and GraphQL errors.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub status: StatusCode,
    pub errors: Vec<Value>,
}

impl Rejection {
    pub fn new(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            errors: vec![json!({"message": message, "extensions": {"code": code}})],
        }
    }
}

impl From<OperationError> for Rejection {
    fn from(failure: OperationError) -> Self {
        match failure {
            OperationError::Invalid(errors) => Self {
                status: StatusCode::BAD_REQUEST,
                errors: errors
                    .into_iter()
                    .map(|e| {
                        let mut value = serde_json::to_value(&e)
                            .unwrap_or_else(|_| json!({"message": e.message}));
                        value["extensions"] = json!({"code": "BAD_USER_INPUT"});
                        value
                    })
                    .collect(),
            },
            OperationError::UnknownOperation(_)
            | OperationError::OverLimit(_)
            | OperationError::OutOfRange(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                &failure.to_string(),
            ),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"errors": self.errors}))).into_response()
    }
}

/// The IETF `RateLimit-*` fields, and `Retry-After` on a refusal.
/// graphql-sse: the client asks for a stream of results.
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

fn to_bytes_map(variables: &Map<String, Value>) -> apollo_compiler::response::JsonMap {
    variables
        .iter()
        .map(|(k, v)| (k.as_str().into(), serde_json_bytes::Value::from(v.clone())))
        .collect()
}

/// Answers `__schema` and `__type` from the API schema.
fn introspect(
    supergraph: &Supergraph,
    document: &Valid<ExecutableDocument>,
    operation: &apollo_compiler::executable::Operation,
    variables: &Valid<apollo_compiler::response::JsonMap>,
) -> Option<Value> {
    let wants = operation.selection_set.selections.iter().any(|s| {
        matches!(s, apollo_compiler::executable::Selection::Field(f) if f.name == "__schema" || f.name == "__type")
    });
    if !wants {
        return None;
    }
    let implementers = supergraph.api.implementers_map();
    let response = apollo_compiler::introspection::partial_execute(
        &supergraph.api,
        &implementers,
        document,
        operation,
        variables,
    )
    .ok()?;
    serde_json::to_value(response.data?).ok()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GraphQLRequest {
    pub query: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Option<Value>,
    #[serde(default)]
    pub extensions: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// The http stage's state: the router, and the stages after it.
#[derive(Clone)]
struct Http {
    router: Arc<GraphRouter>,
    pipeline: Stage,
}

impl Http {
    async fn run(&self, headers: HeaderMap, method: Method, request: GraphQLRequest) -> Response {
        match self
            .pipeline
            .clone()
            .oneshot(Call::new(headers, method, request))
            .await
        {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

async fn graphql_post(
    State(http): State<Http>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: GraphQLRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                &format!("the body is not a GraphQL request: {e}"),
            );
        }
    };
    http.run(headers, Method::POST, request).await
}

async fn graphql_get(State(http): State<Http>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let upgrading = parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrading {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => websocket::upgrade(Arc::clone(&http.router), upgrade, parts.headers),
            Err(rejection) => rejection.into_response(),
        };
    }
    let params = match UrlQuery::<GetParams>::from_request_parts(&mut parts, &()).await {
        Ok(UrlQuery(params)) => params,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                &rejection.body_text(),
            );
        }
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
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "GET requests need a `content-type: application/json` or `apollo-require-preflight` header (CSRF prevention)",
        );
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
    http.run(headers, Method::GET, request).await
}

/// A JSON-encoded query-string parameter of a GET request.
fn json_param(name: &str, text: Option<&str>) -> Result<Option<Value>, Rejection> {
    text.map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|_| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                &format!("`{name}` is not JSON"),
            )
        })
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    Rejection::new(status, code, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::percent;

    #[test]
    fn percent_labels() {
        assert_eq!(percent("percent(25)"), Some(25.0));
        assert_eq!(percent("percent( 2.5 )"), Some(2.5));
        assert_eq!(percent("percent(120)"), None);
        assert_eq!(percent("canary"), None);
    }
}
