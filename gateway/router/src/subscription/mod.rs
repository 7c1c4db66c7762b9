//! Live operations: subscriptions from clients over WebSocket ([`websocket`]:
//! graphql-transport-ws and the legacy graphql-ws) and server-sent events ([`sse`]:
//! graphql-sse), passed through to the subgraph that owns the subscription field
//! ([`upstream`]), with every event completed by the rest of the plan (fields other subgraphs
//! own) before it reaches the client.
//!
//! One operation runs as one task, which ends, closing its upstream connection, when the
//! client stops it, goes away, or its credentials expire.

pub mod sse;
pub mod websocket;

use std::future::Future;
use std::sync::Arc;

use apollo_compiler::ast::OperationType;
use chrono::Utc;
use junction_edge::metrics::Door;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::executor::websocket::{Upstream, UpstreamEvent};
use crate::executor::{
    Downstream, RequestContext, SUBREQUEST_HTTP_ERROR, execute_from, tag_service,
};
use crate::metrics::Outcome;
use crate::operation_slots::Slot;
use crate::pipeline::{Caller, Planned, limits};
use crate::router::GraphRouter;

/// What one running operation sends its client.
#[derive(Debug)]
pub enum Event {
    /// A response body: `{data, errors?}`.
    Next(Value),
    /// The operation failed; nothing follows.
    Error(Vec<Value>),
    /// The operation ended normally; nothing follows.
    Complete,
}

/// Which operation an event belongs to: the id its client gave it, and a serial number the
/// router gave it, so that the late events of a stopped operation are told from those of a
/// new one under the same id.
#[derive(Clone, Debug)]
pub struct OperationId {
    pub id: String,
    pub serial: u64,
}

#[derive(Debug)]
pub struct Outgoing {
    pub operation: OperationId,
    pub event: Event,
}

/// The errors refusing an operation over the caller's rate limits, if it is over them.
/// (Over HTTP the request's allowance is spent before the plan; here every operation spends
/// all of them.)
pub async fn over_rate_limits(
    router: &GraphRouter,
    caller: &Caller,
    planned: &Planned,
) -> Option<Vec<Value>> {
    let refused = limits::per_operation(router, caller, planned, true)
        .await
        .filter(|d| !d.allowed)?;
    junction_edge::metrics::rate_limited(Door::Graphql);
    refused_operation(planned);
    let wait = refused.retry_after;
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Some(vec![json!({
        "message": format!("too many requests: slow down and try again in {seconds} s"),
        "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds},
    })])
}

/// Counts an operation over WebSocket or SSE refused after it was planned.
pub(crate) fn refused_operation(planned: &Planned) {
    let metrics = crate::metrics::global();
    let label = metrics.operation(
        planned.operation.name.as_deref(),
        planned.operation.kind.into(),
    );
    metrics.request(label, Outcome::Refused, None, None);
}

/// Runs one prepared operation, sending its events to `out` as `operation`, until it ends or
/// `stop` resolves. A query or mutation sends one result; a subscription one per upstream event.
pub async fn run(
    router: Arc<GraphRouter>,
    prepared: Planned,
    caller: Caller,
    operation: OperationId,
    out: mpsc::Sender<Outgoing>,
    stop: impl Future<Output = ()> + Send,
    _slot: Slot,
) {
    let send = |event: Event| {
        let out = out.clone();
        let operation = operation.clone();
        async move { out.send(Outgoing { operation, event }).await.is_ok() }
    };
    // Counted once it answers (or its upstream opens); not when the client left first.
    let started = std::time::Instant::now();
    let metrics = crate::metrics::global();
    let label = metrics.operation(
        prepared.operation.name.as_deref(),
        prepared.operation.kind.into(),
    );
    let count = |outcome: Outcome, waiting: Option<std::time::Duration>| {
        metrics.request(label, outcome, Some(started.elapsed()), waiting);
    };
    tokio::pin!(stop);
    if prepared.operation.kind != OperationType::Subscription {
        let executed = tokio::select! {
            executed = crate::pipeline::execute::execute(&router, prepared, &caller) => executed,
            () = &mut stop => return,
        };
        count(Outcome::of(&executed.body), Some(executed.waiting));
        let body = executed.body;
        if send(Event::Next(body)).await {
            send(Event::Complete).await;
        }
        return;
    }
    let _open = crate::metrics::global().subscription_opened();
    let Some((primary, rest)) = prepared.plan.split_subscription() else {
        count(Outcome::Errors, None);
        send(Event::Error(vec![json!({
            "message": "this subscription cannot be planned",
            "extensions": {"code": "QUERY_PLANNING_FAILED"},
        })]))
        .await;
        return;
    };
    let Some(graph) = router.supergraph.graphs.get(&primary.graph) else {
        count(Outcome::Errors, None);
        return;
    };
    let url = &graph.url;
    // The upgrade request is what the identity is signed for: a GET without a body.
    let headers = |target: &str| {
        router.client.downstream_headers(
            caller.identity.as_ref(),
            &caller.forwarded,
            &graph.name,
            Downstream {
                method: "GET",
                target,
                body: b"",
            },
        )
    };
    let variables: serde_json::Map<String, Value> = primary
        .variables
        .iter()
        .filter_map(|name| {
            prepared
                .variables
                .get(name.as_str())
                .map(|v| (name.to_string(), v.clone()))
        })
        .collect();
    let opened = tokio::select! {
        opened = Upstream::open(url, headers, &primary.operation, variables, router.subscriptions.keepalive) => opened,
        () = &mut stop => return,
    };
    let mut upstream = match opened {
        Ok(upstream) => {
            count(Outcome::Ok, None);
            upstream
        }
        Err(why) => {
            count(Outcome::Errors, None);
            tracing::warn!(service = %primary.service, error = %why, "cannot open a subscription upstream");
            send(Event::Error(vec![json!({
                "message": format!("the {} service {}", primary.service, why.for_client()),
                "extensions": {"code": SUBREQUEST_HTTP_ERROR, "service": primary.service},
            })]))
            .await;
            return;
        }
    };
    // A credential the router took within its leeway is already past `exp`: that ends the
    // subscription at once rather than never.
    let expiry = caller
        .identity
        .as_ref()
        .and_then(|i| i.expires_at)
        .map(|at| (at - Utc::now()).to_std().unwrap_or_default());
    let expired = async {
        match expiry {
            Some(left) => tokio::time::sleep(left).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        let event = tokio::select! {
            event = upstream.next() => event,
            () = &mut stop => break,
            () = &mut expired => {
                send(Event::Error(vec![json!({
                    "message": "the credentials of this subscription expired",
                    "extensions": {"code": "UNAUTHENTICATED"},
                })])).await;
                break;
            }
        };
        match event {
            UpstreamEvent::Next(mut payload) => {
                let errors = match payload.get_mut("errors").map(Value::take) {
                    Some(Value::Array(errors)) => errors
                        .into_iter()
                        .map(|e| tag_service(e, &primary.service))
                        .collect(),
                    _ => Vec::new(),
                };
                let data = payload.get_mut("data").map(Value::take);
                let context = RequestContext {
                    supergraph: &router.supergraph,
                    operation: &prepared.operation,
                    variables: &prepared.variables,
                    identity: caller.identity.as_ref(),
                    forwarded: &caller.forwarded,
                };
                let mut body = execute_from(&router.client, &rest, &context, data, errors).await;
                prepared.denial.complete(&mut body);
                if !send(Event::Next(body)).await {
                    break;
                }
            }
            UpstreamEvent::Error(errors) => {
                let errors = errors
                    .into_iter()
                    .map(|e| tag_service(e, &primary.service))
                    .collect();
                send(Event::Error(errors)).await;
                break;
            }
            UpstreamEvent::Complete => {
                send(Event::Complete).await;
                break;
            }
            UpstreamEvent::Lost(why) => {
                tracing::warn!(service = %primary.service, error = %why, "a subscription upstream was lost");
                send(Event::Error(vec![json!({
                    "message": format!("the {} service ended the subscription", primary.service),
                    "extensions": {"code": SUBREQUEST_HTTP_ERROR, "service": primary.service},
                })]))
                .await;
                break;
            }
        }
    }
    upstream.close().await;
}
