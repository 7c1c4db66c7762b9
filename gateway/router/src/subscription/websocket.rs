//! GraphQL over WebSocket at `GET /graphql`: graphql-transport-ws (the `graphql-ws` library's
//! protocol) and the legacy graphql-ws protocol (subscriptions-transport-ws), chosen by
//! `Sec-WebSocket-Protocol`.
//!
//! The client authenticates in `connection_init` (its payload's `Authorization`, or a
//! `headers` object, or else the upgrade request's own headers); nothing runs before the
//! router acknowledges it. Any operation may run over the socket; each one is a task of its
//! own, stopped when the client completes it or the socket closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep};

use super::{Event, OperationId, Outgoing};
use crate::executor::Forwarded;
use crate::metrics::{OperationLabel, Outcome};
use crate::operation_slots::{client_key, too_many_operations};
use crate::pipeline::{self, Caller, GraphQLRequest};
use crate::router::GraphRouter;

const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";

/// Close codes of graphql-transport-ws.
const BAD_REQUEST: u16 = 4400;
const UNAUTHORIZED: u16 = 4401;
const FORBIDDEN: u16 = 4403;
const INIT_TIMEOUT: u16 = 4408;
const DUPLICATE_ID: u16 = 4409;
const TOO_MANY_INITS: u16 = 4429;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    TransportWs,
    /// subscriptions-transport-ws, still spoken by older Apollo clients.
    Legacy,
}

impl Protocol {
    fn encode(self, id: &str, event: &Event) -> Value {
        let kind = match (self, event) {
            (Protocol::TransportWs, Event::Next(_)) => "next",
            (Protocol::Legacy, Event::Next(_)) => "data",
            (_, Event::Error(_)) => "error",
            (_, Event::Complete) => "complete",
        };
        match event {
            Event::Next(body) => json!({"id": id, "type": kind, "payload": body}),
            Event::Error(errors) => json!({"id": id, "type": kind, "payload": errors}),
            Event::Complete => json!({"id": id, "type": kind}),
        }
    }

    fn keepalive(self) -> Value {
        match self {
            Protocol::TransportWs => json!({"type": "ping"}),
            Protocol::Legacy => json!({"type": "ka"}),
        }
    }
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Accepts the upgrade; `headers` are the upgrade request's.
pub fn upgrade(
    router: Arc<GraphRouter>,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    peer: Option<IpAddr>,
) -> Response {
    let upgrade = upgrade.protocols([TRANSPORT_WS, LEGACY_WS]);
    let protocol = match upgrade.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(LEGACY_WS) => Protocol::Legacy,
        _ => Protocol::TransportWs,
    };
    upgrade.on_upgrade(move |socket| {
        let connection = Connection {
            router,
            protocol,
            headers,
            peer,
            number: CONNECTIONS.fetch_add(1, Ordering::Relaxed),
            caller: None,
            operations: HashMap::new(),
            serial: 0,
        };
        connection.serve(socket)
    })
}

struct Connection {
    router: Arc<GraphRouter>,
    protocol: Protocol,
    headers: HeaderMap,
    peer: Option<IpAddr>,
    /// Tells anonymous connections apart for per-client limits.
    number: u64,
    /// Set by `connection_init`, once the caller authenticated.
    caller: Option<Caller>,
    /// Running operations by client id: their serial, and dropping the sender stops them.
    operations: HashMap<String, (u64, oneshot::Sender<()>)>,
    serial: u64,
}

/// What to do after a client message.
enum Next {
    Continue,
    Send(Value),
    Close(u16, String),
}

impl Connection {
    async fn serve(mut self, mut socket: WebSocket) {
        let settings = self.router.subscriptions.clone();
        let (out, mut events) = mpsc::channel::<Outgoing>(64);
        let init_deadline = sleep(settings.init_timeout);
        tokio::pin!(init_deadline);
        let mut keepalive = interval_at(Instant::now() + settings.keepalive, settings.keepalive);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                () = &mut init_deadline, if self.caller.is_none() => {
                    Next::Close(INIT_TIMEOUT, "Connection initialisation timeout".into())
                }
                _ = keepalive.tick(), if self.caller.is_some() => Next::Send(self.protocol.keepalive()),
                Some(outgoing) = events.recv() => self.outgoing(outgoing),
                message = socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => self.incoming(text.as_str(), &out).await,
                    Some(Ok(Message::Binary(_))) => {
                        Next::Close(BAD_REQUEST, "Binary messages are not GraphQL".into())
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Next::Continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                },
            };
            match next {
                Next::Continue => {}
                Next::Send(message) => {
                    if socket
                        .send(Message::text(message.to_string()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Next::Close(code, reason) => {
                    tracing::debug!(code, %reason, "closing a GraphQL WebSocket");
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
            }
        }
        // Dropping the stop senders ends every operation, and with it its upstream.
        self.operations.clear();
    }

    /// An event of a running operation; stale ones (of a stopped operation) are dropped.
    fn outgoing(&mut self, outgoing: Outgoing) -> Next {
        let OperationId { id, serial } = &outgoing.operation;
        let current = self.operations.get(id).is_some_and(|(s, _)| s == serial);
        if !current {
            return Next::Continue;
        }
        if matches!(outgoing.event, Event::Error(_) | Event::Complete) {
            self.operations.remove(id);
        }
        Next::Send(self.protocol.encode(id, &outgoing.event))
    }

    async fn incoming(&mut self, text: &str, out: &mpsc::Sender<Outgoing>) -> Next {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return Next::Close(BAD_REQUEST, "Invalid message received".into());
        };
        let kind = message
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
        let payload = message.remove("payload");
        match (self.protocol, kind.as_str()) {
            (_, "connection_init") => self.init(payload).await,
            (Protocol::TransportWs, "subscribe") | (Protocol::Legacy, "start") => {
                let Some(id) = id else {
                    return Next::Close(BAD_REQUEST, "An operation needs an id".into());
                };
                self.start(id, payload, out).await
            }
            (Protocol::TransportWs, "complete") | (Protocol::Legacy, "stop") => {
                if let Some(id) = id {
                    let stopped = self.operations.remove(&id).is_some();
                    // The legacy protocol confirms a stop; graphql-transport-ws does not.
                    if stopped && self.protocol == Protocol::Legacy {
                        return Next::Send(self.protocol.encode(&id, &Event::Complete));
                    }
                }
                Next::Continue
            }
            (Protocol::TransportWs, "ping") => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = payload {
                    pong["payload"] = payload;
                }
                Next::Send(pong)
            }
            (Protocol::TransportWs, "pong") => Next::Continue,
            (Protocol::Legacy, "connection_terminate") => {
                Next::Close(1000, "Terminated by the client".into())
            }
            (_, other) => Next::Close(BAD_REQUEST, format!("Unknown message type {other:?}")),
        }
    }

    async fn init(&mut self, payload: Option<Value>) -> Next {
        if self.caller.is_some() {
            return Next::Close(TOO_MANY_INITS, "Too many initialisation requests".into());
        }
        let headers = credentials(&self.headers, payload.as_ref());
        let forwarded = Forwarded::from_headers(&self.headers);
        match pipeline::authenticate::authenticate(&self.router, &headers, self.peer, forwarded)
            .await
        {
            Ok(caller) => {
                self.caller = Some(caller);
                Next::Send(json!({"type": "connection_ack"}))
            }
            Err(rejection) => {
                let message = rejection.errors.first().and_then(|e| e["message"].as_str());
                tracing::debug!(reason = ?message, "a WebSocket client failed to authenticate");
                Next::Close(FORBIDDEN, "Forbidden".into())
            }
        }
    }

    async fn start(
        &mut self,
        id: String,
        payload: Option<Value>,
        out: &mpsc::Sender<Outgoing>,
    ) -> Next {
        let Some(caller) = self.caller.clone() else {
            return Next::Close(UNAUTHORIZED, "Unauthorized".into());
        };
        if self.operations.contains_key(&id) {
            return match self.protocol {
                Protocol::TransportWs => {
                    Next::Close(DUPLICATE_ID, format!("Subscriber for {id} already exists"))
                }
                Protocol::Legacy => self.refuse(
                    &id,
                    vec![json!({
                        "message": format!("an operation with id {id} is already running"),
                        "extensions": {"code": "BAD_USER_INPUT"},
                    })],
                ),
            };
        }
        let request = match payload.map(serde_json::from_value::<GraphQLRequest>) {
            Some(Ok(request)) => request,
            _ => {
                return self.refuse(
                    &id,
                    vec![json!({
                        "message": "the payload is not a GraphQL request",
                        "extensions": {"code": "BAD_USER_INPUT"},
                    })],
                );
            }
        };
        let prepared = match pipeline::prepare(&self.router, request, &caller).await {
            Ok(prepared) => prepared,
            Err(rejection) => {
                crate::metrics::global().request(
                    OperationLabel::UNKNOWN,
                    Outcome::Refused,
                    None,
                    None,
                );
                return self.refuse(&id, rejection.errors);
            }
        };
        let max = self.router.subscriptions.max_per_client;
        let client = client_key(caller.identity.as_ref(), &self.number.to_string());
        let Some(slot) = self.router.slots.acquire(&client, max) else {
            super::refused_operation(&prepared);
            return self.refuse(&id, too_many_operations(max));
        };
        self.serial += 1;
        let serial = self.serial;
        let (stop, stopped) = oneshot::channel::<()>();
        self.operations.insert(id.clone(), (serial, stop));
        let router = Arc::clone(&self.router);
        let operation = OperationId { id, serial };
        let out = out.clone();
        tokio::spawn(async move {
            if let Some(errors) = super::over_rate_limits(&router, &caller, &prepared).await {
                let _ = out
                    .send(Outgoing {
                        operation,
                        event: Event::Error(errors),
                    })
                    .await;
                return;
            }
            let stop = async move {
                let _ = stopped.await;
            };
            super::run(router, prepared, caller, operation, out, stop, slot).await;
        });
        Next::Continue
    }

    fn refuse(&self, id: &str, errors: Vec<Value>) -> Next {
        Next::Send(self.protocol.encode(id, &Event::Error(errors)))
    }
}

/// The headers to authenticate with: the upgrade request's, overridden by what the
/// `connection_init` payload carries (browsers cannot set headers on a WebSocket), either at
/// its top level (`{"Authorization": "Bearer ..."}`) or in a `headers` object.
fn credentials(upgrade: &HeaderMap, payload: Option<&Value>) -> HeaderMap {
    let mut headers = upgrade.clone();
    let Some(Value::Object(payload)) = payload else {
        return headers;
    };
    let mut apply = |map: &Map<String, Value>| {
        for (name, value) in map {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) else {
                continue;
            };
            headers.insert(name, value);
        }
    };
    apply(payload);
    if let Some(Value::Object(nested)) = payload.get("headers") {
        apply(nested);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_init_payload_first() {
        let mut upgrade = HeaderMap::new();
        upgrade.insert(
            "authorization",
            HeaderValue::from_static("Bearer from-upgrade"),
        );
        upgrade.insert("traceparent", HeaderValue::from_static("00-a-b-01"));
        let top = credentials(&upgrade, Some(&json!({"Authorization": "Bearer top"})));
        assert_eq!(top["authorization"], "Bearer top");
        assert_eq!(top["traceparent"], "00-a-b-01");
        let nested = credentials(
            &upgrade,
            Some(&json!({"headers": {"authorization": "Bearer nested"}})),
        );
        assert_eq!(nested["authorization"], "Bearer nested");
        let none = credentials(&upgrade, None);
        assert_eq!(none["authorization"], "Bearer from-upgrade");
        // Non-string values and bad names are ignored, not fatal.
        let odd = credentials(&upgrade, Some(&json!({"n": 1, "bad name": "x"})));
        assert_eq!(odd["authorization"], "Bearer from-upgrade");
    }

    #[test]
    fn both_protocols_encode_their_own_message_types() {
        let next = Event::Next(json!({"data": {}}));
        assert_eq!(Protocol::TransportWs.encode("1", &next)["type"], "next");
        assert_eq!(Protocol::Legacy.encode("1", &next)["type"], "data");
        assert_eq!(Protocol::Legacy.keepalive()["type"], "ka");
        assert_eq!(
            Protocol::TransportWs.encode("7", &Event::Complete),
            json!({"id": "7", "type": "complete"})
        );
    }
}
