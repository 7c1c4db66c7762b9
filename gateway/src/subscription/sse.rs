//! GraphQL over server-sent events (graphql-sse, "distinct connections" mode): a request with
//! `Accept: text/event-stream` gets its results as `next` events, then one `complete` event.
//! Errors of a running operation arrive as a `next` event holding `errors`, as the protocol
//! asks. The client going away ends the operation and closes its upstream.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use junction_schema::Identity;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Event, OperationId, Outgoing, client_key, too_many};
use crate::router::{GraphRouter, Prepared, Rejection};

static STREAMS: AtomicU64 = AtomicU64::new(0);

pub fn respond(
    router: Arc<GraphRouter>,
    prepared: Prepared,
    identity: Option<Identity>,
    traceparent: Option<String>,
) -> Response {
    let settings = router.subscription_config().clone();
    let number = STREAMS.fetch_add(1, Ordering::Relaxed);
    let client = client_key(identity.as_ref(), &format!("sse-{number}"));
    let Some(slot) = router
        .client_limits()
        .acquire(&client, settings.max_per_client)
    else {
        return Rejection {
            status: StatusCode::TOO_MANY_REQUESTS,
            errors: too_many(settings.max_per_client),
        }
        .into_response();
    };
    let (out, events) = mpsc::channel::<Outgoing>(16);
    let watcher = out.clone();
    tokio::spawn(super::run(
        router,
        prepared,
        identity,
        traceparent,
        OperationId {
            id: String::new(),
            serial: number,
        },
        out,
        // The response stream holds the receiver: it is dropped when the client goes away.
        async move { watcher.closed().await },
        slot,
    ));
    Sse::new(event_stream(events))
        .keep_alive(KeepAlive::new().interval(settings.keepalive))
        .into_response()
}

fn event_stream(
    events: mpsc::Receiver<Outgoing>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(Some(events), |events| async move {
        let mut events = events?;
        let (out, last) = match events.recv().await.map(|o| o.event) {
            Some(Event::Next(body)) => (vec![next(&body)], false),
            Some(Event::Error(errors)) => {
                (vec![next(&json!({ "errors": errors })), complete()], true)
            }
            Some(Event::Complete) | None => (vec![complete()], true),
        };
        Some((stream::iter(out), (!last).then_some(events)))
    })
    .flatten()
    .map(Ok)
}

fn next(body: &serde_json::Value) -> SseEvent {
    SseEvent::default().event("next").data(body.to_string())
}

fn complete() -> SseEvent {
    SseEvent::default().event("complete").data("")
}
