//! `junction listen`: a webhook receiver for development. It serves an endpoint on loopback,
//! registers it with a running Junction (through the router, with the API key given), and
//! prints every webhook that arrives: its event type, its `webhook-id`, whether its signature
//! verifies with the endpoint's secret, and its body. On Ctrl-C it deletes the endpoint again.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use junction_schema::webhook_signature::{Scheme, SigningSecret};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::commands::Failure;
use crate::shutdown::Shutdown;

/// How far a `webhook-timestamp` may be from now (Standard Webhooks' tolerance), so a
/// replayed old delivery does not verify.
const TOLERANCE_SECS: i64 = 5 * 60;

pub struct Listen {
    pub router: String,
    pub key: String,
    pub port: u16,
    pub event_types: Vec<String>,
}

struct Receiver {
    secret: SigningSecret,
}

pub async fn run(listen: Listen) -> Result<(), Failure> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port)))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", listen.port))?;
    let address = listener.local_addr().context("listener address")?;
    let url = format!("http://{address}/webhooks");
    let api = Api::new(&listen.router, &listen.key)?;
    let created = api
        .call(
            "mutation($input: CreateEndpointInput!) { createEndpoint(input: $input) { secret endpoint { id } } }",
            json!({"input": {
                "url": url,
                "description": "junction listen",
                "eventTypes": listen.event_types,
            }}),
        )
        .await?;
    let endpoint = created["createEndpoint"]["endpoint"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let secret = created["createEndpoint"]["secret"]
        .as_str()
        .unwrap_or_default();
    let secret = SigningSecret::parse(Scheme::HmacSha256, secret)
        .map_err(|e| anyhow::anyhow!("the endpoint's secret: {e}"))?;
    println!(
        "Listening on {url} (endpoint {endpoint}). Publish an event to see it here; Ctrl-C \
         stops and deletes the endpoint.\n"
    );
    tracing::info!(address = %address, endpoint = %endpoint, "listening for webhooks");

    let app = axum::Router::new()
        .route("/webhooks", post(receive))
        .with_state(Arc::new(Receiver { secret }));
    let shutdown = Shutdown::on_signal();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.wait())
        .await
        .context("serving the receiver")?;
    api.call(
        "mutation($id: ID!) { deleteEndpoint(input: {id: $id}) { deletedId } }",
        json!({"id": endpoint}),
    )
    .await?;
    println!("Deleted the endpoint {endpoint}.");
    Ok(())
}

/// One webhook: verified, printed, and answered 204 (400 when its signature does not verify,
/// so the delivery's attempts show it).
async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let verdict = verify(&receiver.secret, &id, &timestamp, &signatures, &body);
    let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let event_type = envelope["type"].as_str().unwrap_or("(no type)");
    println!(
        "{event_type}  webhook-id {id}  signature {}\n{}\n",
        verdict
            .as_ref()
            .map_or_else(|why| format!("INVALID: {why}"), |()| "valid".to_owned()),
        String::from_utf8_lossy(&body)
    );
    if verdict.is_ok() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// Standard Webhooks verification: one of the signatures is ours over
/// `{id}.{timestamp}.{body}`, and the timestamp is recent.
fn verify(
    secret: &SigningSecret,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
) -> Result<(), String> {
    let at: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not a number"))?;
    if (chrono::Utc::now().timestamp() - at).abs() > TOLERANCE_SECS {
        return Err(format!(
            "webhook-timestamp {at} is more than 5 minutes away"
        ));
    }
    let expected = secret.sign(id, at, body);
    let matches = signatures.split(' ').any(|signature| {
        subtle::ConstantTimeEq::ct_eq(signature.as_bytes(), expected.as_bytes()).into()
    });
    if matches {
        Ok(())
    } else {
        Err("no signature matches the endpoint's secret".to_owned())
    }
}

/// The router's GraphQL endpoint, with the key.
struct Api {
    client: reqwest::Client,
    url: String,
    key: String,
}

impl Api {
    fn new(router: &str, key: &str) -> Result<Self, Failure> {
        let client = junction_edge::clients::plain_client(Duration::from_secs(15))
            .map_err(|e| anyhow::anyhow!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            url: format!("{}/graphql", router.trim_end_matches('/')),
            key: key.to_owned(),
        })
    }

    /// The answer's data; a refusal as a usage failure carrying the router's messages (an
    /// endpoint on loopback refused names the setting that allows it).
    async fn call(&self, query: &str, variables: Value) -> Result<Value, Failure> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|e| Failure::Usage(format!("cannot reach Junction at {}: {e}", self.url)))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            Failure::Usage(format!(
                "{} answered HTTP {status} without JSON: {e}",
                self.url
            ))
        })?;
        if let Some(errors) = body["errors"].as_array() {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect();
            return Err(Failure::Usage(format!(
                "Junction refused: {}",
                messages.join("; ")
            )));
        }
        Ok(body["data"].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_secret_and_only_recent_ones() {
        let secret =
            SigningSecret::parse(Scheme::HmacSha256, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap();
        let now = chrono::Utc::now().timestamp();
        let body = br#"{"type":"order.created"}"#;
        let signed = secret.sign("msg_1", now, body);
        let header = format!("v1,bm9wZQ== {signed}");
        assert_eq!(
            verify(&secret, "msg_1", &now.to_string(), &header, body),
            Ok(())
        );
        assert!(verify(&secret, "msg_2", &now.to_string(), &header, body).is_err());
        assert!(verify(&secret, "msg_1", &now.to_string(), &header, b"{}").is_err());
        let old = now - 600;
        let stale = secret.sign("msg_1", old, body);
        assert!(verify(&secret, "msg_1", &old.to_string(), &stale, body).is_err());
    }
}
