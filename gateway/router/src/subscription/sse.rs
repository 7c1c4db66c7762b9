//! GraphQL over server-sent events (graphql-sse, "distinct connections" mode): a request with
//! `Accept: text/event-stream` gets its results as `next` events, then one `complete` event.
//! Errors of a running operation arrive as a `next` event holding `errors`, as the protocol
//! asks. The client going away ends the operation and closes its upstream.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::{Event, OperationId, Outgoing};
use crate::error::Rejection;
use crate::operation_slots::{client_key, too_many_operations};
use crate::pipeline::{Caller, Planned};
use crate::router::GraphRouter;

static STREAMS: AtomicU64 = AtomicU64::new(0);

pub fn respond(router: Arc<GraphRouter>, planned: Planned, caller: Caller) -> Response {
    let settings = router.subscriptions.clone();
    let number = STREAMS.fetch_add(1, Ordering::Relaxed);
    let client = client_key(caller.identity.as_ref(), &format!("sse-{number}"));
    let Some(slot) = router.slots.acquire(&client, settings.max_per_client) else {
        // The HTTP request is counted as refused: its status says so.
        return Rejection {
            status: StatusCode::TOO_MANY_REQUESTS,
            errors: too_many_operations(settings.max_per_client),
        }
        .into_response();
    };
    let (out, events) = mpsc::channel::<Outgoing>(16);
    let watcher = out.clone();
    tokio::spawn(super::run(
        router,
        planned,
        caller,
        OperationId {
            id: String::new(),
            serial: number,
        },
        out,
        // The response stream holds the receiver: it is dropped when the client goes away.
        async move { watcher.closed().await },
        slot,
    ));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(event_stream(events, settings.keepalive)),
    )
        .into_response()
}

/// The operation's events as SSE text, with a comment line as keep-alive when idle.
fn event_stream(
    events: mpsc::Receiver<Outgoing>,
    keepalive: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let mut ticks = interval_at(Instant::now() + keepalive, keepalive);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    stream::unfold(Some((events, ticks)), |state| async move {
        let (mut events, mut ticks) = state?;
        let (text, last) = tokio::select! {
            event = events.recv() => match event.map(|o| o.event) {
                Some(Event::Next(body)) => (next(&body), false),
                Some(Event::Error(errors)) => {
                    (next(&json!({ "errors": errors })) + COMPLETE, true)
                }
                Some(Event::Complete) | None => (COMPLETE.to_owned(), true),
            },
            _ = ticks.tick() => (":\n\n".to_owned(), false),
        };
        Some((Ok(Bytes::from(text)), (!last).then_some((events, ticks))))
    })
}

/// JSON has no raw newlines, so one `data:` line carries it.
fn next(body: &serde_json::Value) -> String {
    format!("event: next\ndata: {body}\n\n")
}

const COMPLETE: &str = "event: complete\ndata:\n\n";
