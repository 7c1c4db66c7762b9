//! A GraphQL-over-WebSocket client for the tests, speaking either graphql-transport-ws or the
//! legacy graphql-ws protocol, as browsers and Apollo clients do.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

/// What the server sent next.
#[derive(Debug)]
pub enum Received {
    Message(Value),
    /// The server closed the socket with this code and reason.
    Closed(u16, String),
}

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub protocol: &'static str,
}

impl WsClient {
    /// Opens the socket; no `connection_init` yet. `url` is `http://...` or `ws://...`.
    pub async fn open(url: &str, protocol: &'static str) -> Self {
        Self::open_with(url, protocol, &[]).await
    }

    /// Opens the socket with extra headers on the upgrade request.
    pub async fn open_with(url: &str, protocol: &'static str, headers: &[(&str, String)]) -> Self {
        let url = url.replacen("http://", "ws://", 1);
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket upgrade succeeds");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocol,
            "the server speaks the protocol asked for"
        );
        Self { socket, protocol }
    }

    /// Opens the socket and initializes it with `payload`; expects the acknowledgement.
    pub async fn connect(url: &str, protocol: &'static str, payload: Value) -> Self {
        let mut client = Self::open(url, protocol).await;
        client
            .send(json!({"type": "connection_init", "payload": payload}))
            .await;
        match client.receive().await {
            Received::Message(m) if m["type"] == "connection_ack" => client,
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("the socket takes a message");
    }

    /// Starts an operation as `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == LEGACY_WS {
            "start"
        } else {
            "subscribe"
        };
        self.send(json!({
            "id": id,
            "type": kind,
            "payload": {"query": query, "variables": variables},
        }))
        .await;
    }

    /// Stops the operation `id`.
    pub async fn complete(&mut self, id: &str) {
        let kind = if self.protocol == LEGACY_WS {
            "stop"
        } else {
            "complete"
        };
        self.send(json!({"id": id, "type": kind})).await;
    }

    /// The next message other than keep-alives, within 20 s.
    pub async fn receive(&mut self) -> Received {
        self.receive_within(Duration::from_secs(20))
            .await
            .expect("the server said something within 20 s")
    }

    /// The next message other than keep-alives, if one comes within `wait`.
    pub async fn receive_within(&mut self, wait: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        Some(loop {
            let Ok(message) = tokio::time::timeout_at(deadline, self.socket.next()).await else {
                return None;
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON messages");
                    if matches!(value["type"].as_str(), Some("ka" | "ping" | "pong")) {
                        continue;
                    }
                    break Received::Message(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    break Received::Closed(code, reason);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the socket failed: {e}"),
                None => break Received::Closed(1006, String::new()),
            }
        })
    }

    /// The next message, which must be one.
    pub async fn message(&mut self) -> Value {
        match self.receive().await {
            Received::Message(message) => message,
            closed => panic!("expected a message, the socket closed: {closed:?}"),
        }
    }

    /// Closes the socket as a client that goes away does.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
