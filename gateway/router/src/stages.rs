//! The router's stages for a GraphQL request over HTTP, each a tower service wrapping the
//! next: auth -> limits -> plan -> operation limits -> execute (which fetches from
//! subgraphs). The `http` stage, the axum handlers in [`crate::router`], turns a request
//! into a [`Call`]; every stage adds what it learns (the identity, the prepared operation)
//! or answers early, so nothing reaches a subgraph before every check passed. A plugin is
//! one more layer at a stage.

use std::convert::Infallible;
use std::sync::Arc;

use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use junction_schema::Identity;
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

use crate::router::{GraphQLRequest, GraphRouter, Prepared};
use junction_edge::rate_limit::{Decision, RateLimiter};

/// One GraphQL request on its way through the stages.
pub(crate) struct Call {
    headers: HeaderMap,
    method: Method,
    /// Taken by the plan stage.
    request: Option<GraphQLRequest>,
    /// Set by the auth stage (`None`: the router runs without authentication).
    identity: Option<Identity>,
    /// Set by the plan stage.
    prepared: Option<Prepared>,
}

impl Call {
    pub(crate) fn new(headers: HeaderMap, method: Method, request: GraphQLRequest) -> Self {
        Self {
            headers,
            method,
            request: Some(request),
            identity: None,
            prepared: None,
        }
    }
}

pub(crate) type Stage = BoxCloneSyncService<Call, Response, Infallible>;

/// The stages in order, over `router`.
pub(crate) fn pipeline(router: &Arc<GraphRouter>) -> Stage {
    let execute = execute(Arc::clone(router));
    let operation_limits = operation_limits(Arc::clone(router), execute);
    let plan = plan(Arc::clone(router), operation_limits);
    let limits = request_limits(Arc::clone(router), plan);
    auth(Arc::clone(router), limits)
}

/// A stage from an async function of the router, the call and the next stage.
fn stage<F, Fut>(router: Arc<GraphRouter>, next: Stage, run: F) -> Stage
where
    F: Fn(Arc<GraphRouter>, Call, Stage) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    Stage::new(service_fn(move |call: Call| {
        let (router, next, run) = (Arc::clone(&router), next.clone(), run.clone());
        async move { Ok::<_, Infallible>(run(router, call, next).await) }
    }))
}

async fn call_next(next: Stage, call: Call) -> Response {
    match next.oneshot(call).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A stage found the call without what an earlier stage puts there: a wiring mistake.
fn out_of_order() -> Response {
    tracing::error!("a GraphQL stage ran out of order");
    axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// Who is calling: credentials checked, or a 401 before anything else runs.
fn auth(router: Arc<GraphRouter>, next: Stage) -> Stage {
    stage(router, next, |router, mut call, next| async move {
        match router.authenticate(&call.headers).await {
            Ok(identity) => call.identity = identity,
            Err(rejection) => return rejection.into_response(),
        }
        call_next(next, call).await
    })
}

/// The consumer's allowance, counted per request before any work (limits counted by cost
/// wait for the plan).
fn request_limits(router: Arc<GraphRouter>, next: Stage) -> Stage {
    stage(router, next, |router, call, next| async move {
        let Some(limiter) = router.rate_limiter().filter(|l| !l.by_cost()) else {
            return call_next(next, call).await;
        };
        let decision = limiter
            .check(&consumer(limiter, call.identity.as_ref()), 1)
            .await;
        spend(decision, call_next(next, call)).await
    })
}

/// Persisted queries resolved, parsed, validated, limits checked, authorization applied,
/// cost estimated, planned.
fn plan(router: Arc<GraphRouter>, next: Stage) -> Stage {
    stage(router, next, |router, mut call, next| async move {
        let Some(request) = call.request.take() else {
            return out_of_order();
        };
        match router.prepare(request, call.identity.as_ref()) {
            Ok(prepared) => call.prepared = Some(prepared),
            Err(rejection) => return rejection.into_response(),
        }
        call_next(next, call).await
    })
}

/// Limits that need the operation: counted by cost, or of a named operation.
fn operation_limits(router: Arc<GraphRouter>, next: Stage) -> Stage {
    stage(router, next, |router, call, next| async move {
        let Some(prepared) = &call.prepared else {
            return out_of_order();
        };
        match spend_allowance(&router, call.identity.as_ref(), prepared, false).await {
            None => call_next(next, call).await,
            Some(decision) => spend(decision, call_next(next, call)).await,
        }
    })
}

/// Spends the caller's allowance for `prepared` on every limiter that applies (the
/// per-request one too when `per_request`), stopping at a refusal. The decision to show:
/// the refusal, else the narrowest limit's; `None` when no limiter applies.
pub(crate) async fn spend_allowance(
    router: &GraphRouter,
    identity: Option<&Identity>,
    prepared: &Prepared,
    per_request: bool,
) -> Option<Decision> {
    let weight = u32::try_from(prepared.cost.max(1)).unwrap_or(u32::MAX);
    let general = router.rate_limiter().filter(|l| l.by_cost() || per_request);
    let by_operation = prepared
        .operation
        .name
        .as_ref()
        .and_then(|name| router.operation_limiter(name));
    let mut decision = None;
    for limiter in general.into_iter().chain(by_operation) {
        let weight = if limiter.by_cost() { weight } else { 1 };
        let checked = limiter.check(&consumer(limiter, identity), weight).await;
        decision = Some(checked);
        if !checked.allowed {
            break;
        }
    }
    decision
}

/// Runs the plan against the subgraphs and answers.
fn execute(router: Arc<GraphRouter>) -> Stage {
    Stage::new(service_fn(move |mut call: Call| {
        let router = Arc::clone(&router);
        async move {
            let Some(prepared) = call.prepared.take() else {
                return Ok(out_of_order());
            };
            Ok(router
                .respond(&call.headers, prepared, &call.method, call.identity)
                .await)
        }
    }))
}

/// Whose allowance a caller spends.
fn consumer(limiter: &RateLimiter, identity: Option<&Identity>) -> String {
    limiter
        .consumer(identity)
        .unwrap_or_else(|| "anonymous".to_owned())
}

/// A refusal, or the answer of `rest` with the allowance's headers (unless a narrower limit
/// inside already set them).
async fn spend(decision: Decision, rest: impl std::future::Future<Output = Response>) -> Response {
    if !decision.allowed {
        return crate::router::too_many(&decision);
    }
    let mut response = rest.await;
    if !response.headers().contains_key("ratelimit-limit") {
        decision.set_headers(response.headers_mut());
    }
    response
}
