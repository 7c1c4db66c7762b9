//! Live operations: subscriptions from clients over WebSocket ([`websocket`]:
//! graphql-transport-ws and the legacy graphql-ws) and server-sent events ([`sse`]:
//! graphql-sse), passed through to the subgraph that owns the subscription field
//! ([`upstream`]), with every event completed by the rest of the plan (fields other subgraphs
//! own) before it reaches the client.
//!
//! One operation runs as one task, which ends, closing its upstream connection, when the
//! client stops it, goes away, or its credentials expire.

pub mod sse;
pub mod upstream;
pub mod websocket;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use apollo_compiler::ast::OperationType;
use chrono::Utc;
use junction_schema::Identity;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::execute::{Downstream, Forwarded, RequestContext, execute_from, tag_service};
use crate::router::{GraphRouter, Prepared};
use upstream::{Upstream, UpstreamEvent};

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

/// Counts the operations each client runs, over all its connections.
#[derive(Default)]
pub struct ClientLimits {
    running: Mutex<HashMap<String, usize>>,
}

/// One operation counted against its client until dropped.
pub struct Slot {
    limits: Arc<ClientLimits>,
    client: String,
}

impl ClientLimits {
    /// A slot for `client`, or `None` when it already runs `max`.
    pub fn acquire(self: &Arc<Self>, client: &str, max: usize) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let count = running.entry(client.to_owned()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            limits: Arc::clone(self),
            client: client.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self
            .limits
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = running.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.client);
            }
        }
    }
}

/// Who counts as one client: an identity (tenant and subject), else the connection itself.
pub fn client_key(identity: Option<&Identity>, connection: &str) -> String {
    match identity {
        Some(identity) => format!("{}/{}", identity.tenant, identity.subject),
        None => format!("anonymous/{connection}"),
    }
}

/// The errors refusing an operation over the caller's rate limits, if it is over them.
/// (Over HTTP the stages spend the allowance; over a WebSocket every operation does.)
pub async fn over_rate_limits(
    router: &GraphRouter,
    identity: Option<&Identity>,
    prepared: &Prepared,
) -> Option<Vec<Value>> {
    let refused = crate::stages::spend_allowance(router, identity, prepared, true)
        .await
        .filter(|d| !d.allowed)?;
    let wait = refused.retry_after;
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Some(vec![json!({
        "message": format!("too many requests: slow down and try again in {seconds} s"),
        "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds},
    })])
}

pub fn too_many(max: usize) -> Vec<Value> {
    vec![json!({
        "message": format!("this client already runs {max} operations at once; stop one first"),
        "extensions": {"code": "RATE_LIMITED"},
    })]
}

/// Who runs an operation: their identity, and what their request passes on downstream.
pub struct Caller {
    pub identity: Option<Identity>,
    pub forwarded: Forwarded,
}

/// Runs one prepared operation, sending its events to `out` as `operation`, until it ends or
/// `stop` resolves. A query or mutation sends one result; a subscription one per upstream event.
pub async fn run(
    router: Arc<GraphRouter>,
    prepared: Prepared,
    Caller {
        identity,
        forwarded,
    }: Caller,
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
    tokio::pin!(stop);
    if prepared.operation.kind != OperationType::Subscription {
        let body = tokio::select! {
            body = router.execute(prepared, identity.as_ref(), &forwarded) => body,
            () = &mut stop => return,
        };
        if send(Event::Next(body)).await {
            send(Event::Complete).await;
        }
        return;
    }
    let Some((primary, rest)) = prepared.plan.split_subscription() else {
        send(Event::Error(vec![json!({
            "message": "this subscription cannot be planned",
            "extensions": {"code": "INTERNAL"},
        })]))
        .await;
        return;
    };
    let Some(graph) = router.supergraph.graphs.get(&primary.graph) else {
        return;
    };
    let url = &graph.url;
    // The upgrade request is what the identity is signed for: a GET without a body.
    let headers = |target: &str| {
        router.client().downstream_headers(
            identity.as_ref(),
            &forwarded,
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
        opened = Upstream::open(url, headers, &primary.operation, variables, router.subscription_config().keepalive) => opened,
        () = &mut stop => return,
    };
    let mut upstream = match opened {
        Ok(upstream) => upstream,
        Err(why) => {
            tracing::warn!(service = %primary.service, error = %why, "cannot open a subscription upstream");
            send(Event::Error(vec![json!({
                "message": format!("the {} service {}", primary.service, why.for_client()),
                "extensions": {"code": "INTERNAL", "service": primary.service},
            })]))
            .await;
            return;
        }
    };
    // A credential the router took within its leeway is already past `exp`: that ends the
    // subscription at once rather than never.
    let expiry = identity
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
                    identity: identity.as_ref(),
                    forwarded: &forwarded,
                };
                let mut body = execute_from(router.client(), &rest, &context, data, errors).await;
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
                    "extensions": {"code": "INTERNAL", "service": primary.service},
                })]))
                .await;
                break;
            }
        }
    }
    upstream.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_given_back() {
        let limits = Arc::new(ClientLimits::default());
        let first = limits.acquire("t/a", 2).expect("first");
        let _second = limits.acquire("t/a", 2).expect("second");
        assert!(limits.acquire("t/a", 2).is_none(), "a third is refused");
        assert!(limits.acquire("t/b", 2).is_some(), "another client is not");
        drop(first);
        assert!(
            limits.acquire("t/a", 2).is_some(),
            "a slot given back is free"
        );
    }
}
