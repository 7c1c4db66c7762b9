//! The signed identity between the router and what stands behind it, as the processes meet
//! it: an identity is bound to the subgraph or route it was made for and to its request, so a
//! captured one opens nothing else; the router's credential checks are the only ones (its JWT
//! leeway decides, and an OAuth token dies with its API key).

use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use junction_schema::identity::{Audience, Binding, IdentityKey, IdentityVerifier};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use support::graphql_ws::{Received, TRANSPORT_WS, WsClient};
use support::upstream::Upstream;
use support::{Junction, TestDatabase, cli};

const IDENTITY: &str = "junction-identity";
const SIGNATURE: &str = "junction-identity-signature";
const REQUEST_ID: &str = "x-request-id";
const JWT_SECRET: &str = "a shared secret for the identity tests, long enough";

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn printed_key(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("jk_live_"))
        .unwrap_or_else(|| panic!("no key in {text}"))
        .to_owned()
}

/// `junction subgraph NAME` on its own port, trusting identities signed with `key`.
fn subgraph(db: &TestDatabase, name: &str, key: &str) -> Junction {
    let mut command = support::process::command(db.dir.path());
    command
        .args([
            "subgraph",
            name,
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("JUNCTION_DATABASE_URL", &db.url)
        .env("JUNCTION_IDENTITY_SIGNING_KEY", key);
    Junction::start(command, "Junction is serving")
}

/// A fresh identity key, as `[identity] signing_key` takes it.
fn signing_key() -> String {
    IdentityKey::generate().to_base64()
}

/// POSTs `body` to `url` with `headers` (the identity pair and a request id, say).
async fn post_graphql(url: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut request = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn jwt_settings() -> Vec<(&'static str, String)> {
    vec![
        (
            "JUNCTION_GATEWAY__JWT__ISSUER",
            "https://issuer.test".into(),
        ),
        ("JUNCTION_GATEWAY__JWT__AUDIENCES", "[\"junction\"]".into()),
        ("JUNCTION_GATEWAY__JWT__ALGORITHMS", "[\"HS256\"]".into()),
        (
            "JUNCTION_GATEWAY__JWT__KEYS",
            format!("[{{algorithm = \"HS256\", secret = \"{JWT_SECRET}\"}}]"),
        ),
    ]
}

fn borrowed<'a>(settings: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

on_both_databases!(
    an_identity_made_for_a_route_is_refused_by_every_subgraph,
    a_captured_identity_opens_no_other_request,
    a_jwt_within_the_routers_leeway_answers_data,
    an_oauth_token_stops_with_its_revoked_key,
);

/// The auth plugin signs the caller's identity into a REST upstream's request; that upstream
/// replaying it to a subgraph (which shares the key) gets a 401 from each of them.
async fn an_identity_made_for_a_route_is_refused_by_every_subgraph(db: TestDatabase) {
    let upstream = Upstream::start("legacy").await;
    let key = signing_key();
    std::fs::write(
        db.dir.path().join("junction.toml"),
        format!(
            "[[gateway.routes]]\nname = \"legacy\"\npath = \"/legacy\"\nupstreams = [\"{}\"]\nplugins = [{{ name = \"auth\" }}]\n",
            upstream.url()
        ),
    )
    .unwrap();
    let router = Junction::serve_with(
        db.dir.path(),
        Some(&db.url),
        &[("JUNCTION_IDENTITY_SIGNING_KEY", &key)],
    );
    let api_key = printed_key(&router.stdout);
    let body = r#"{"query":"{ __typename }"}"#;
    let echo: Value = http()
        .post(router.url("/legacy/graphql"))
        .bearer_auth(&api_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = |name: &str| -> String {
        echo["headers"][name][0]
            .as_str()
            .unwrap_or_else(|| panic!("the upstream got no {name}: {echo}"))
            .to_owned()
    };
    let captured = [
        (IDENTITY, header(IDENTITY)),
        (SIGNATURE, header(SIGNATURE)),
        (REQUEST_ID, header(REQUEST_ID)),
    ];
    // What the route's upstream can check: made for this route and this request id.
    let mut headers = HeaderMap::new();
    for (name, value) in &captured {
        headers.insert(*name, value.parse().unwrap());
    }
    let route = Audience::route("legacy");
    let request_id = header(REQUEST_ID);
    let made_for = Binding {
        audience: &route,
        method: None,
        target: None,
        body: None,
        request_id: Some(&request_id),
    };
    let verifier = IdentityVerifier::new(
        vec![IdentityKey::from_base64(&key).unwrap()],
        Duration::from_secs(10),
    );
    let identity = verifier
        .verify(&headers, &made_for)
        .expect("the route's identity");
    assert!(identity.subject.len() > 3, "{identity:?}");
    for name in ["webhooks", "deliveries"] {
        let subgraph = subgraph(&db, name, &key);
        let (status, answer) = post_graphql(&subgraph.url("/graphql"), &captured, body).await;
        assert_eq!(status, 401, "{name}: {answer}");
        assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("route:legacy"), "{name}: {message}");
    }
}

/// What a recording subgraph saw: each request's headers and body.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

impl Recorder {
    /// Answers every GraphQL request with no endpoints, as the webhooks subgraph would for a
    /// new tenant.
    async fn start(&self) -> SocketAddr {
        async fn answer(State(seen): State<Recorder>, headers: HeaderMap, body: Bytes) -> String {
            seen.0.lock().unwrap().push((headers, body));
            json!({"data": {"endpoints": {"edges": []}}}).to_string()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/graphql", post(answer))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }
}

/// The router's request to the webhooks subgraph, captured on the wire (a recorder stands
/// where the subgraph is, under its name), replayed to the real webhooks subgraph: the very
/// same request is the only one it opens. The same identity with another body (a mutation),
/// another request id or another path is refused.
async fn a_captured_identity_opens_no_other_request(db: TestDatabase) {
    let conn = db.migrated().await;
    let tenant = junction_schema::tenants::create(&conn, "acme")
        .await
        .unwrap();
    let key = signing_key();
    let recorder = Recorder::default();
    let address = recorder.start().await;
    let sdl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/graphql/webhooks.graphql"
    );
    let supergraph = db.dir.path().join("supergraph.graphql");
    let composed = cli(
        db.dir.path(),
        None,
        &[
            "compose",
            "--subgraph",
            &format!("webhooks=http://{address}/graphql@{sdl}"),
            "-o",
            supergraph.to_str().unwrap(),
        ],
    );
    assert!(
        composed.status.success(),
        "{}",
        String::from_utf8_lossy(&composed.stderr)
    );
    let mut settings = jwt_settings();
    settings.push(("JUNCTION_IDENTITY_SIGNING_KEY", key.clone()));
    let gateway = Junction::gateway_in(db.dir.path(), &supergraph, &borrowed(&settings));
    // Up before the capture: the replays below come well within the signature's window.
    let webhooks = subgraph(&db, "webhooks", &key);
    let url = webhooks.url("/graphql");
    let now = chrono::Utc::now().timestamp();
    let token = hs256(&json!({
        "iss": "https://issuer.test", "aud": "junction", "sub": "machine-1",
        "tenant": tenant.id, "scope": "admin", "nbf": now, "exp": now + 300,
    }));
    let (status, answer) = post_graphql(
        &gateway.url("/graphql"),
        &[("authorization", format!("Bearer {token}"))],
        r#"{"query":"{ endpoints { edges { cursor } } }"}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (headers, body) = recorder
        .0
        .lock()
        .unwrap()
        .pop()
        .expect("a subgraph request");
    let header = |name: &str| -> String {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("the subgraph got no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let captured = [
        (IDENTITY, header(IDENTITY)),
        (SIGNATURE, header(SIGNATURE)),
        (REQUEST_ID, header(REQUEST_ID)),
    ];
    let body = String::from_utf8(body.to_vec()).unwrap();

    let (status, answer) = post_graphql(&url, &captured, &body).await;
    assert_eq!(status, 200, "the request as the router made it: {answer}");
    assert!(answer.get("errors").is_none(), "{answer}");

    let mutation = json!({
        "query": "mutation { createEventType(input: {name: \"order.replayed\"}) { eventType { name } } }",
    })
    .to_string();
    let (status, answer) = post_graphql(&url, &captured, &mutation).await;
    assert_eq!(status, 401, "another body: {answer}");
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("body"),
        "{answer}"
    );
    let mut other_id = captured.clone();
    other_id[2].1 = "another-request".into();
    let (status, answer) = post_graphql(&url, &other_id, &body).await;
    assert_eq!(status, 401, "another request id: {answer}");
    let (status, answer) = post_graphql(&webhooks.url("/graphql?x=1"), &captured, &body).await;
    assert_eq!(status, 401, "another path: {answer}");
    let listed = junction_schema::entities::event_type::Entity::find()
        .all(&conn)
        .await
        .unwrap();
    assert!(listed.is_empty(), "the replayed mutation ran: {listed:?}");
}

/// A JWT a few seconds past its `exp` but inside the router's leeway (30 s by default) is
/// accepted by the router, and the subgraph takes the router's word for it: data, no errors.
async fn a_jwt_within_the_routers_leeway_answers_data(db: TestDatabase) {
    let settings = jwt_settings();
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), &borrowed(&settings));
    let listed = cli(db.dir.path(), Some(&db.url), &["tenant", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let tenant = listed.split_whitespace().next().unwrap().to_owned();
    let now = chrono::Utc::now().timestamp();
    let token = hs256(&json!({
        "iss": "https://issuer.test", "aud": "junction", "sub": "machine-1",
        "tenant": tenant, "scope": "webhooks:read", "nbf": now - 60, "exp": now - 10,
    }));
    let (status, answer) = post_graphql(
        &junction.url("/graphql"),
        &[("authorization", format!("Bearer {token}"))],
        r#"{"query":"{ endpoints { edges { cursor } } }"}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(answer["data"]["endpoints"]["edges"], json!([]), "{answer}");
    // A subscription opened with it, its subgraph now taking the router's word, still ends
    // with its credential: at once, as `exp` is already past.
    let mut socket = WsClient::connect(
        &junction.url("/graphql"),
        TRANSPORT_WS,
        json!({"Authorization": format!("Bearer {token}")}),
    )
    .await;
    socket
        .subscribe("dead", "subscription { deadLetters { id } }", json!({}))
        .await;
    match socket.receive_within(Duration::from_secs(10)).await {
        Some(Received::Message(message)) => {
            assert_eq!(message["type"], "error", "{message}");
            assert_eq!(
                message["payload"][0]["message"],
                "the credentials of this subscription expired"
            );
        }
        other => panic!("the subscription outlived its credential: {other:?}"),
    }
    // Past the leeway the router refuses it, before any subgraph.
    let token = hs256(&json!({
        "iss": "https://issuer.test", "aud": "junction", "sub": "machine-1",
        "tenant": tenant, "scope": "webhooks:read", "nbf": now - 600, "exp": now - 300,
    }));
    let (status, answer) = post_graphql(
        &junction.url("/graphql"),
        &[("authorization", format!("Bearer {token}"))],
        r#"{"query":"{ endpoints { edges { cursor } } }"}"#,
    )
    .await;
    assert_eq!(status, 401, "{answer}");
}

/// A token minted from an API key (client credentials) stops working once its key is
/// revoked, within the same `api_key_cache_ttl` as the key itself.
async fn an_oauth_token_stops_with_its_revoked_key(db: TestDatabase) {
    const TTL: Duration = Duration::from_secs(1);
    let junction = Junction::serve_with(
        db.dir.path(),
        Some(&db.url),
        &[("JUNCTION_GATEWAY__API_KEY_CACHE_TTL", "1s")],
    );
    let listed = cli(db.dir.path(), Some(&db.url), &["tenant", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let tenant = listed.split_whitespace().nth(1).unwrap().to_owned();
    let issued = cli(
        db.dir.path(),
        Some(&db.url),
        &[
            "apikey",
            "create",
            "--tenant",
            &tenant,
            "--scopes",
            "webhooks:read",
        ],
    );
    assert!(issued.status.success());
    let key = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let client_id = key.split('_').nth(2).unwrap().to_owned();
    let granted: Value = http()
        .post(junction.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret={key}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = granted["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {granted}"))
        .to_owned();
    let query = r#"{"query":"{ endpoints { edges { cursor } } }"}"#;
    let bearer = |credential: &str| [("authorization", format!("Bearer {credential}"))];
    let (status, answer) = post_graphql(&junction.url("/graphql"), &bearer(&token), query).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");

    let revoked = cli(
        db.dir.path(),
        Some(&db.url),
        &["apikey", "revoke", "--tenant", &tenant, &client_id],
    );
    assert!(revoked.status.success());
    // Whatever the router remembered of the key is forgotten after one TTL.
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    let (status, answer) = post_graphql(&junction.url("/graphql"), &bearer(&key), query).await;
    assert_eq!(status, 401, "the key: {answer}");
    let (status, answer) = post_graphql(&junction.url("/graphql"), &bearer(&token), query).await;
    assert_eq!(status, 401, "the token: {answer}");
    assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    // A revoked key mints nothing either.
    let refused = http()
        .post(junction.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret={key}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
