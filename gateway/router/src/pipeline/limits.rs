//! The caller's allowances: one path for every way in. [`per_request`] before any work over
//! HTTP; [`per_operation`] once the operation is planned (limits counted in cost, and limits
//! of named operations; over a WebSocket, every limit, once per operation). A caller spends
//! its identity's allowance, else its address's (`RateLimiter::consumer_of`).

use axum::response::Response;
use junction_edge::metrics::Door;
use junction_edge::rate_limit::{Decision, RateLimiter};

use super::{Caller, Planned};
use crate::error::too_many;
use crate::router::GraphRouter;

fn consumer(limiter: &RateLimiter, caller: &Caller) -> String {
    limiter.consumer_of(caller.identity.as_ref(), caller.client_ip)
}

/// The per-request limit (not one counted in cost, which waits for the plan); `None` when
/// there is none.
pub async fn per_request(router: &GraphRouter, caller: &Caller) -> Option<Decision> {
    let limiter = router.rate_limiter.as_ref().filter(|l| !l.by_cost())?;
    Some(limiter.check(&consumer(limiter, caller), 1).await)
}

/// Spends the caller's allowance for `planned` on every limiter that applies (the
/// per-request one too when `with_request`), stopping at a refusal. The decision to show: the
/// refusal, else the narrowest limit's; `None` when no limiter applies.
pub async fn per_operation(
    router: &GraphRouter,
    caller: &Caller,
    planned: &Planned,
    with_request: bool,
) -> Option<Decision> {
    let weight = u32::try_from(planned.cost.max(1)).unwrap_or(u32::MAX);
    let general = router
        .rate_limiter
        .as_ref()
        .filter(|l| l.by_cost() || with_request);
    let by_operation = planned
        .operation
        .name
        .as_ref()
        .and_then(|name| router.operation_limiters.get(name.as_str()));
    let mut decision = None;
    for limiter in general.into_iter().chain(by_operation) {
        let weight = if limiter.by_cost() { weight } else { 1 };
        let checked = limiter.check(&consumer(limiter, caller), weight).await;
        decision = Some(checked);
        if !checked.allowed {
            break;
        }
    }
    decision
}

/// A refusal, or the answer of `rest` with the allowance's headers (unless a narrower limit
/// inside already set them).
pub async fn spend(
    decision: Option<Decision>,
    rest: impl std::future::Future<Output = Response>,
) -> Response {
    let Some(decision) = decision else {
        return rest.await;
    };
    if !decision.allowed {
        junction_edge::metrics::rate_limited(Door::Graphql);
        return too_many(&decision);
    }
    let mut response = rest.await;
    if !response.headers().contains_key("ratelimit-limit") {
        decision.set_headers(response.headers_mut());
    }
    response
}
