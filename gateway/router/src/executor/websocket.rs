//! One subscription opened on a subgraph: a WebSocket speaking graphql-transport-ws to the
//! subgraph's GraphQL URL (`http` becomes `ws`, `https` becomes `wss`), carrying the caller's
//! signed identity in the upgrade request. One connection per client operation, so a client
//! going away closes exactly its own upstream.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// Connecting and the `connection_ack` together may take this long.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A polite close may take this long before the connection is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The one operation each upstream connection carries.
const OPERATION_ID: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("bad subgraph URL {0:?}")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("refused the WebSocket upgrade with HTTP {0}")]
    Refused(u16),
    #[error("closed the connection before acknowledging it")]
    NoAck,
    #[error("did not acknowledge the connection in time")]
    Timeout,
}

impl OpenError {
    /// What a client may be told: no addresses, no internals.
    pub fn for_client(&self) -> &'static str {
        match self {
            OpenError::Url(_) | OpenError::Connect(_) => "is unreachable",
            OpenError::Refused(_) | OpenError::NoAck => "refused the subscription",
            OpenError::Timeout => "timed out",
        }
    }
}

/// What the subgraph said next.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// An execution result: `{data, errors?}`.
    Next(Value),
    /// The operation failed.
    Error(Vec<Value>),
    Complete,
    /// The connection broke or the subgraph spoke out of protocol.
    Lost(String),
}

pub struct Upstream {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pings: Interval,
}

fn tls() -> Option<Arc<rustls::ClientConfig>> {
    static TLS: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    TLS.get_or_init(|| junction_edge::clients::tls_config().ok().map(Arc::new))
        .clone()
}

/// `http://host/graphql` -> `ws://host/graphql`.
fn websocket_url(url: &str) -> Result<String, OpenError> {
    if let Some(rest) = url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = url.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else if url.starts_with("ws://") || url.starts_with("wss://") {
        Ok(url.to_owned())
    } else {
        Err(OpenError::Url(url.to_owned()))
    }
}

impl Upstream {
    /// Connects, initializes and subscribes; `keepalive` paces the pings sent upstream.
    /// `headers` makes the upgrade request's headers for its path and query (the identity
    /// is signed for exactly that handshake).
    pub async fn open(
        url: &str,
        headers: impl FnOnce(&str) -> HeaderMap,
        query: &str,
        variables: Map<String, Value>,
        keepalive: Duration,
    ) -> Result<Self, OpenError> {
        let url = websocket_url(url)?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|_| OpenError::Url(url.clone()))?;
        // What tungstenite writes on the request line.
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        request.headers_mut().extend(headers(&target));
        request.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let opening = async {
            let connector = tls().map(Connector::Rustls);
            let (mut socket, _) =
                tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
                    .await
                    .map_err(|e| match e {
                        tokio_tungstenite::tungstenite::Error::Http(response) => {
                            OpenError::Refused(response.status().as_u16())
                        }
                        other => OpenError::Connect(other.to_string()),
                    })?;
            send(&mut socket, json!({"type": "connection_init"}))
                .await
                .map_err(|_| OpenError::NoAck)?;
            loop {
                let message = match socket.next().await {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return Err(OpenError::NoAck),
                };
                let message: Value = serde_json::from_str(&message).unwrap_or_default();
                match message["type"].as_str() {
                    Some("connection_ack") => break,
                    Some("ping") => {
                        let _ = send(&mut socket, json!({"type": "pong"})).await;
                    }
                    _ => return Err(OpenError::NoAck),
                }
            }
            send(
                &mut socket,
                json!({
                    "id": OPERATION_ID,
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables},
                }),
            )
            .await
            .map_err(|_| OpenError::NoAck)?;
            Ok(socket)
        };
        let socket = timeout(OPEN_TIMEOUT, opening)
            .await
            .map_err(|_| OpenError::Timeout)??;
        let mut pings = interval_at(Instant::now() + keepalive, keepalive);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self { socket, pings })
    }

    /// The next thing the subgraph says about the operation; pings are answered on the way.
    pub async fn next(&mut self) -> UpstreamEvent {
        loop {
            let message = tokio::select! {
                message = self.socket.next() => message,
                _ = self.pings.tick() => {
                    if let Err(e) = send(&mut self.socket, json!({"type": "ping"})).await {
                        return UpstreamEvent::Lost(e.to_string());
                    }
                    continue;
                }
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return UpstreamEvent::Lost("sent a binary message".into());
                }
                Some(Ok(Message::Close(frame))) => {
                    return UpstreamEvent::Lost(format!("closed the connection: {frame:?}"));
                }
                Some(Err(e)) => return UpstreamEvent::Lost(e.to_string()),
                None => return UpstreamEvent::Lost("closed the connection".into()),
            };
            let mut message: Value = match serde_json::from_str(&text) {
                Ok(message) => message,
                Err(_) => return UpstreamEvent::Lost("sent a message that is not JSON".into()),
            };
            let payload = message.get_mut("payload").map(Value::take);
            match message["type"].as_str() {
                Some("next") => match payload {
                    Some(payload @ Value::Object(_)) => return UpstreamEvent::Next(payload),
                    _ => return UpstreamEvent::Lost("sent `next` without a result".into()),
                },
                Some("error") => {
                    return UpstreamEvent::Error(match payload {
                        Some(Value::Array(errors)) => errors,
                        Some(error) => vec![error],
                        None => Vec::new(),
                    });
                }
                Some("complete") => return UpstreamEvent::Complete,
                Some("ping") => {
                    if let Err(e) = send(&mut self.socket, json!({"type": "pong"})).await {
                        return UpstreamEvent::Lost(e.to_string());
                    }
                }
                Some("pong") => {}
                other => {
                    return UpstreamEvent::Lost(format!("sent an unknown message type {other:?}"));
                }
            }
        }
    }

    /// Stops the operation and closes the connection, politely if the subgraph is quick.
    pub async fn close(mut self) {
        let polite = async {
            let _ = send(
                &mut self.socket,
                json!({"id": OPERATION_ID, "type": "complete"}),
            )
            .await;
            let _ = self.socket.close(None).await;
            // Read until the subgraph's close frame, so the TCP connection ends cleanly.
            while let Some(Ok(_)) = self.socket.next().await {}
        };
        let _ = timeout(CLOSE_TIMEOUT, polite).await;
    }
}

async fn send(
    socket: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
    message: Value,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    socket.send(Message::text(message.to_string())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgraph_urls_become_websocket_urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:4001/graphql").unwrap(),
            "ws://127.0.0.1:4001/graphql"
        );
        assert_eq!(
            websocket_url("https://reviews.internal/graphql").unwrap(),
            "wss://reviews.internal/graphql"
        );
        assert!(websocket_url("ftp://x").is_err());
    }
}
