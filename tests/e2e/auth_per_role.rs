//! Every documented credential setting honoured by every role that serves the router, the
//! same way on each way in: GraphQL over HTTP, GraphQL over a WebSocket, and a REST route with
//! the `auth` plugin. A setting read by one role and ignored by another once let
//! `junction gateway` configured with `[gateway.introspection]` alone serve every caller
//! unauthenticated.

use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

use crate::support::federation::Subgraphs;
use crate::support::graphql_ws::{Received, TRANSPORT_WS, WsClient};
use crate::support::upstream::Upstream;
use crate::support::{Junction, TestDatabase};

const CLIENT_ID: &str = "router";
const CLIENT_SECRET: &str = "introspection secret";
const GOOD_TOKEN: &str = "opaque-token-good";

/// An RFC 7662 token introspection endpoint on loopback: `GOOD_TOKEN` is active for tenant
/// `acme`; every other token is not. It answers only the router's client credentials.
async fn introspection_server() -> String {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let app = Router::new().route(
        "/introspect",
        post(move |headers: HeaderMap, body: String| {
            let expected = expected.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some(expected.as_str())
                {
                    return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({})));
                }
                let token = body
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("token="))
                    .unwrap_or_default();
                let answer = if token == GOOD_TOKEN {
                    json!({"active": true, "tenant": "acme", "sub": "svc-1",
                           "scope": "webhooks:read", "exp": chrono::Utc::now().timestamp() + 300})
                } else {
                    json!({"active": false})
                };
                (axum::http::StatusCode::OK, axum::Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/introspect")
}

/// A REST route to `upstream` behind the `auth` plugin.
fn auth_route(upstream: &Upstream) -> String {
    format!(
        r#"
        [[gateway.routes]]
        name = "legacy"
        path = "/legacy"
        upstreams = ["{}"]
        plugins = [{{ name = "auth" }}]
        "#,
        upstream.url()
    )
}

/// One GraphQL request over HTTP: status and body.
async fn over_http(router: &Junction, credential: Option<&str>, query: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(router.url("/graphql"))
        .json(&json!({"query": query}));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The same request over graphql-transport-ws, credentials in `connection_init`: the result
/// payload, or the close code when the router refuses the connection.
async fn over_websocket(
    router: &Junction,
    credential: Option<&str>,
    query: &str,
) -> Result<Value, u16> {
    let mut client = WsClient::open(&router.url("/graphql"), TRANSPORT_WS).await;
    let payload = match credential {
        Some(credential) => json!({"Authorization": format!("Bearer {credential}")}),
        None => json!({}),
    };
    client
        .send(json!({"type": "connection_init", "payload": payload}))
        .await;
    match client.receive().await {
        Received::Message(m) if m["type"] == "connection_ack" => {}
        Received::Closed(code, _) => return Err(code),
        other => panic!("expected an acknowledgement or a close, got {other:?}"),
    }
    client.subscribe("1", query, json!({})).await;
    match client.receive().await {
        Received::Message(m) if m["type"] == "next" => Ok(m["payload"].clone()),
        other => panic!("expected a result, got {other:?}"),
    }
}

/// A REST request through the auth plugin: its status.
async fn over_rest(router: &Junction, credential: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(router.url("/legacy/x"));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    request.send().await.unwrap().status().as_u16()
}

/// What each way in says to no credentials, a wrong one and `good`: the wrong ones refused
/// alike (401, WebSocket close 4403, nothing upstream); `good` gets over the WebSocket the very
/// answer it gets over HTTP, and through the REST route.
async fn assert_honoured_everywhere(
    router: &Junction,
    upstream: &Upstream,
    good: &str,
    query: &str,
) {
    for refused in [None, Some("not-a-credential")] {
        let (status, body) = over_http(router, refused, query).await;
        assert_eq!(status, 401, "{refused:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        assert_eq!(
            over_websocket(router, refused, query).await,
            Err(4403),
            "{refused:?} over a WebSocket"
        );
        assert_eq!(
            over_rest(router, refused).await,
            401,
            "{refused:?} over REST"
        );
    }
    assert_eq!(
        upstream.hits("GET", "/legacy"),
        0,
        "refused before the upstream"
    );

    let (status, body) = over_http(router, Some(good), query).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        over_websocket(router, Some(good), query).await,
        Ok(body),
        "the same answer over a WebSocket"
    );
    assert_eq!(over_rest(router, Some(good)).await, 200);
    assert_eq!(upstream.hits("GET", "/legacy"), 1);
}

/// `junction gateway` with `[gateway.introspection]` alone: every way in asks the
/// authorization server, and a caller without an active token gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_with_introspection_alone_refuses_anonymous_callers() {
    let subgraphs = Subgraphs::start().await;
    let upstream = Upstream::start("legacy").await;
    let introspection = introspection_server().await;
    let dir = tempfile::TempDir::new().unwrap();
    let supergraph = dir.path().join("supergraph.graphql");
    std::fs::write(&supergraph, subgraphs.supergraph()).unwrap();
    std::fs::write(
        dir.path().join("junction.toml"),
        format!(
            "[gateway.introspection]\nurl = \"{introspection}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{CLIENT_SECRET}\"\n{}",
            auth_route(&upstream)
        ),
    )
    .unwrap();
    let router = Junction::gateway_in(dir.path(), &supergraph, &[]);
    assert_honoured_everywhere(&router, &upstream, GOOD_TOKEN, "{ topProducts { name } }").await;
}

/// `junction serve`: API keys and the router's OAuth2 tokens, on every way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_honours_api_keys_and_its_tokens_on_every_way_in() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDatabase::sqlite().await;
    let upstream = Upstream::start("legacy").await;
    std::fs::write(db.dir.path().join("junction.toml"), auth_route(&upstream)).unwrap();
    let router = Junction::serve(db.dir.path(), Some(&db.url));
    let api_key = router
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("jk_live_"))
        .unwrap()
        .to_owned();
    let query = "{ endpoints { edges { node { id } } } }";
    assert_honoured_everywhere(&router, &upstream, &api_key, query).await;

    // A token traded for the key at the router's OAuth2 endpoint: the same answers.
    let client_id = api_key.split('_').nth(2).unwrap();
    let token: Value = reqwest::Client::new()
        .post(router.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret={api_key}"
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("a token").to_owned();
    let (status, by_key) = over_http(&router, Some(&api_key), query).await;
    assert_eq!(status, 200);
    assert_eq!(
        over_http(&router, Some(&token), query).await,
        (200, by_key.clone())
    );
    assert_eq!(
        over_websocket(&router, Some(&token), query).await,
        Ok(by_key)
    );
    assert_eq!(over_rest(&router, Some(&token)).await, 200);
}
