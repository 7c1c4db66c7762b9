//! The GraphQL endpoint: `POST /graphql` and `GET /graphql` (queries only, with CSRF
//! prevention). Authenticates, parses and validates against the API schema, checks limits,
//! plans (plans cached by operation text, name, `@skip`/`@include` values and schema), runs the
//! plan, and answers in GraphQL's shape. Nothing reaches a subgraph before all checks pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apollo_compiler::ExecutableDocument;
use apollo_compiler::validation::Valid;
use axum::Json;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::BoxFuture;
use junction_schema::Identity;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::execute::{RequestContext, SubgraphClient, execute};
use crate::operation::{self, Limits, OperationError};
use crate::plan::QueryPlan;
use crate::planner;
use crate::supergraph::{Labels, Supergraph};

const PLAN_CACHE_CAPACITY: usize = 10_000;
/// Documents are larger than plans: fewer are kept.
const DOCUMENT_CACHE_CAPACITY: usize = 1_000;

/// Turns request credentials into an identity. `Ok(None)`: no credentials were presented.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, String>>;
}

pub struct GraphRouter {
    pub supergraph: Arc<Supergraph>,
    client: SubgraphClient,
    limits: Limits,
    authenticator: Option<Arc<dyn Authenticator>>,
    plans: Mutex<HashMap<[u8; 32], Arc<QueryPlan>>>,
    /// Validated documents by query text: parsing and validation run once per distinct query.
    documents: Mutex<HashMap<String, Arc<Valid<ExecutableDocument>>>>,
    /// Every progressive-override label of the supergraph.
    override_labels: Labels,
    active_labels: Labels,
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
            plans: Mutex::new(HashMap::new()),
            documents: Mutex::new(HashMap::new()),
        }
    }

    pub fn routes(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/graphql", get(graphql_get).post(graphql_post))
            .with_state(self)
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
        if let Some(document) = self
            .documents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(query)
        {
            return Ok(Arc::clone(document));
        }
        let document = Arc::new(operation::parse(&self.supergraph.api, query, &self.limits)?);
        let mut documents = self.documents.lock().unwrap_or_else(|p| p.into_inner());
        if documents.len() >= DOCUMENT_CACHE_CAPACITY {
            documents.clear();
        }
        documents.insert(query.to_owned(), Arc::clone(&document));
        Ok(document)
    }

    /// The plan for a normalized operation, from the cache when it was planned before.
    pub fn plan(
        &self,
        query: &str,
        operation: &operation::Operation,
        conditions: &[bool],
        labels: &Labels,
    ) -> Result<Arc<QueryPlan>, planner::PlanError> {
        let mut hasher = Sha256::new();
        for label in labels {
            hasher.update(label.as_bytes());
            hasher.update([0]);
        }
        hasher.update(self.supergraph.hash.as_bytes());
        hasher.update([0]);
        hasher.update(query.as_bytes());
        hasher.update([0]);
        hasher.update(operation.name.as_deref().unwrap_or("").as_bytes());
        hasher.update(
            conditions
                .iter()
                .map(|c| if *c { b'1' } else { b'0' })
                .collect::<Vec<u8>>(),
        );
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(plan) = self
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(plan));
        }
        let plan = Arc::new(planner::plan_with(&self.supergraph, operation, labels)?);
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if plans.len() >= PLAN_CACHE_CAPACITY {
            plans.clear();
        }
        plans.insert(key, Arc::clone(&plan));
        Ok(plan)
    }

    async fn handle(
        &self,
        headers: &HeaderMap,
        request: GraphQLRequest,
        method: &Method,
    ) -> Response {
        let identity = match &self.authenticator {
            None => None,
            Some(authenticator) => match authenticator.authenticate(headers).await {
                Ok(Some(identity)) => Some(identity),
                Ok(None) => {
                    return error(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHENTICATED",
                        "credentials required: send an API key as `Authorization: Bearer <key>`",
                    );
                }
                Err(why) => return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &why),
            },
        };
        let Some(query) = request.query.filter(|q| !q.trim().is_empty()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "the request has no `query`",
            );
        };
        let variables = match request.variables {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BAD_USER_INPUT",
                    "`variables` must be an object",
                );
            }
        };
        let api = &self.supergraph.api;
        let document = match self.document(&query) {
            Ok(document) => document,
            Err(e) => return operation_error(e),
        };
        let (operation, conditions) = match operation::normalize(
            &document,
            request.operation_name.as_deref(),
            &variables,
            &self.limits,
        ) {
            Ok(normalized) => normalized,
            Err(e) => return operation_error(e),
        };
        if method == Method::GET && operation.kind != apollo_compiler::ast::OperationType::Query {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_USER_INPUT",
                "only queries may be sent with GET; use POST",
            );
        }
        let Ok(selected) = document.operations.get(request.operation_name.as_deref()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "no such operation in the document",
            );
        };
        let coerced = match apollo_compiler::request::coerce_variable_values(
            api,
            selected,
            &to_bytes_map(&variables),
        ) {
            Ok(coerced) => coerced,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BAD_USER_INPUT",
                    &e.message().to_string(),
                );
            }
        };
        let introspection = introspect(&self.supergraph, &document, selected, &coerced);
        let labels = self.labels_for_request();
        let plan = match self.plan(&query, &operation, &conditions, &labels) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(error = %e, "cannot plan an operation");
                return error(
                    StatusCode::OK,
                    "INTERNAL",
                    &format!("cannot plan this operation: {e}"),
                );
            }
        };
        let context = RequestContext {
            supergraph: &self.supergraph,
            operation: &operation,
            variables: &variables,
            identity: identity.as_ref(),
            traceparent: headers.get("traceparent").and_then(|v| v.to_str().ok()),
        };
        let body = execute(&self.client, &plan, &context, introspection).await;
        (StatusCode::OK, Json(body)).into_response()
    }
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
struct GraphQLRequest {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
}

async fn graphql_post(
    State(router): State<Arc<GraphRouter>>,
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
    router.handle(&headers, request, &Method::POST).await
}

async fn graphql_get(
    State(router): State<Arc<GraphRouter>>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<GetParams>,
) -> Response {
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
    let variables = match params
        .variables
        .as_deref()
        .map(serde_json::from_str::<Value>)
    {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "`variables` is not JSON",
            );
        }
    };
    let request = GraphQLRequest {
        query: params.query,
        operation_name: params.operation_name,
        variables,
    };
    router.handle(&headers, request, &Method::GET).await
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"message": message, "extensions": {"code": code}}]})),
    )
        .into_response()
}

fn operation_error(failure: OperationError) -> Response {
    match failure {
        OperationError::Invalid(errors) => {
            let errors: Vec<Value> = errors
                .into_iter()
                .map(|e| {
                    let mut value =
                        serde_json::to_value(&e).unwrap_or_else(|_| json!({"message": e.message}));
                    value["extensions"] = json!({"code": "BAD_USER_INPUT"});
                    value
                })
                .collect();
            (StatusCode::BAD_REQUEST, Json(json!({"errors": errors}))).into_response()
        }
        OperationError::UnknownOperation(message) | OperationError::OverLimit(message) => {
            error(StatusCode::BAD_REQUEST, "BAD_USER_INPUT", &message)
        }
    }
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
