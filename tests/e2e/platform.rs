//! The whole platform as a user meets it: `junction serve`, an API key, and GraphQL through
//! the router on one `/graphql` endpoint; webhooks delivered to a real receiver. On SQLite
//! and PostgreSQL.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::graphql_ws::{LEGACY_WS, Received, TRANSPORT_WS, WsClient};
use support::receiver::Receiver;
use support::{Junction, TestDatabase, cli};

const SETTINGS: &[(&str, &str)] = &[
    ("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", "[\"127.0.0.1/32\"]"),
    ("JUNCTION_DISPATCHER_POLL_INTERVAL", "20ms"),
];

struct Client {
    url: String,
    http: reqwest::Client,
}

impl Client {
    fn new(junction: &Junction) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            url: junction.url("/graphql"),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        key: Option<&str>,
        query: &str,
        variables: Value,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(&self.url)
            .json(&json!({"query": query, "variables": variables}));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Creates the event type `order.created`, as the tests' tenants publish it.
    async fn create_order_event_type(&self, key: &str) {
        self.data(
            key,
            "mutation { createEventType(input: {name: \"order.created\"}) { eventType { name } } }",
            json!({}),
        )
        .await;
    }

    /// Creates an endpoint for `url`; returns its id and its signing secret.
    async fn create_endpoint(&self, key: &str, url: &str) -> (Value, String) {
        let created = self
            .data(
                key,
                "mutation($url: String!) { createEndpoint(input: {url: $url}) { secret endpoint { id } } }",
                json!({"url": url}),
            )
            .await;
        let secret = created["createEndpoint"]["secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (created["createEndpoint"]["endpoint"]["id"].clone(), secret)
    }

    async fn data(&self, key: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.call(Some(key), query, variables, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }
}

fn printed_key(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("jk_live_"))
        .unwrap_or_else(|| panic!("no key in {text}"))
        .to_owned()
}

on_both_databases!(
    webhooks_through_the_router_end_to_end,
    tenants_are_isolated_through_the_router,
    delivery_history_dead_letters_and_replay_through_the_router,
    live_delivery_events_through_the_router,
    jwt_bearer_tokens_through_the_router,
    oauth2_client_credentials_through_the_router,
    api_keys_are_managed_through_graphql,
    tenants_are_managed_through_graphql_by_a_platform_key,
);

/// An admin creates a key with `createApiKey` (the secret shown once), lists keys without
/// secrets, and revokes one; the new key works at once with exactly its scopes, and stops
/// when revoked (the router checks every request here: `api_key_cache_ttl = "0s"`).
async fn api_keys_are_managed_through_graphql(db: TestDatabase) {
    let mut settings = SETTINGS.to_vec();
    settings.push(("JUNCTION_GATEWAY__API_KEY_CACHE_TTL", "0s"));
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), &settings);
    let admin = printed_key(&junction.stdout);
    let client = Client::new(&junction);
    let create = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id name scopes expiresAt revokedAt } } }";
    let created = client
        .data(
            &admin,
            create,
            json!({"input": {"name": "reporting", "scopes": ["webhooks:read"]}}),
        )
        .await;
    let secret = created["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = created["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with(&format!("jk_live_{id}_")), "{secret}");
    assert_eq!(
        created["createApiKey"]["apiKey"]["scopes"],
        json!(["webhooks:read"])
    );

    // The new key reads, cannot write, and cannot manage keys.
    client
        .data(
            &secret,
            "{ endpoints { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let (_, body) = client
        .call(
            Some(&secret),
            "mutation { createEventType(input: {name: \"x.y\"}) { eventType { name } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    let (_, body) = client
        .call(
            Some(&secret),
            create,
            json!({"input": {"name": "escalate", "scopes": ["admin"]}}),
            &[],
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    assert_eq!(body["errors"][0]["message"], "this needs the scope admin");

    // Bad input is refused with the reason, and creates nothing.
    for (input, reason) in [
        (json!({"name": "", "scopes": ["webhooks:read"]}), "name"),
        (json!({"name": "x", "scopes": []}), "at least one scope"),
        (
            json!({"name": "x", "scopes": ["admn"]}),
            "unknown scope \"admn\"",
        ),
        (
            json!({"name": "x", "scopes": ["has space"]}),
            "invalid scope",
        ),
        (
            json!({"name": "x", "scopes": ["admin"], "expiresAt": "2020-01-01T00:00:00Z"}),
            "in the future",
        ),
    ] {
        let (_, body) = client
            .call(Some(&admin), create, json!({"input": input}), &[])
            .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(reason),
            "{body}"
        );
    }

    // Listed without any secret.
    let listed = client
        .data(
            &admin,
            "{ apiKeys { id name scopes lastUsedAt } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = listed["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bootstrap admin", "reporting"]);
    assert!(!listed.to_string().contains(&secret[8..]));
    assert!(
        listed["apiKeys"][1]["lastUsedAt"].is_string(),
        "use recorded: {listed}"
    );

    let revoked = client
        .data(
            &admin,
            "mutation($id: ID!) { revokeApiKey(id: $id) { apiKey { revokedAt } } }",
            json!({"id": id}),
        )
        .await;
    assert!(revoked["revokeApiKey"]["apiKey"]["revokedAt"].is_string());
    let (status, body) = client
        .call(
            Some(&secret),
            "{ endpoints { edges { node { id } } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (_, body) = client
        .call(
            Some(&admin),
            "mutation { revokeApiKey(id: \"nope\") { apiKey { id } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
}

async fn webhooks_through_the_router_end_to_end(db: TestDatabase) {
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), SETTINGS);
    let key = printed_key(&junction.stdout);
    let client = Client::new(&junction);
    let receiver = Receiver::ok().await;

    client.create_order_event_type(&key).await;
    let (_, secret) = client.create_endpoint(&key, &receiver.url()).await;
    // The caller's trace context travels router -> subgraph -> message -> dispatcher -> endpoint.
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (status, published) = client
        .call(
            Some(&key),
            "mutation($p: JSON!) { publishEvent(input: {eventType: \"order.created\", payload: $p}) { deliveryCount message { id } } }",
            json!({"p": {"order": 7}}),
            &[("traceparent", traceparent)],
        )
        .await;
    assert_eq!(status, 200, "{published}");
    let published = published["data"].clone();
    assert_eq!(published["publishEvent"]["deliveryCount"], 1);

    let request = receiver
        .wait_for(1, Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(request.json()["data"], json!({"order": 7}));
    assert_eq!(request.header("traceparent"), traceparent);
    assert_eq!(
        request.json()["message_id"],
        published["publishEvent"]["message"]["id"]
    );
    assert!(
        support::receiver::verify_v1(&secret, &request),
        "signature verifies"
    );

    // Errors from the subgraph come through with their codes.
    let (status, body) = client
        .call(Some(&key), "mutation { publishEvent(input: {eventType: \"nope\", payload: {}}) { deliveryCount } }", json!({}), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );

    // A number no JSON holds is the router's to refuse, with a code, before any subgraph.
    let (status, body) = client
        .call(Some(&key), "mutation { publishEvent(input: {eventType: \"order.created\", payload: {a: 1e400}}) { deliveryCount } }", json!({}), &[])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["message"],
        "the number 1e400 is out of range"
    );
    // Every field of a selection skipped: `{}` for it, no error.
    let (status, body) = client
        .call(
            Some(&key),
            "{ endpoints(first: 1) { pageInfo { hasNextPage @skip(if: true) } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"data": {"endpoints": {"pageInfo": {}}}}));

    // No credentials, or bad ones: refused before anything runs.
    let (status, body) = client
        .call(None, "{ endpoints { edges { cursor } } }", json!({}), &[])
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (status, _) = client
        .call(
            Some("jk_live_aaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            "{ endpoints { edges { cursor } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = client
        .call(
            Some(&key),
            "{ endpoints { edges { nope } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 400);

    let (status, _) = junction.stop_with("TERM");
    assert!(status.success());
}

async fn tenants_are_isolated_through_the_router(db: TestDatabase) {
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), SETTINGS);
    let a_key = printed_key(&junction.stdout);
    let created = cli(db.dir.path(), Some(&db.url), &["tenant", "create", "other"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let issued = cli(
        db.dir.path(),
        Some(&db.url),
        &["apikey", "create", "--tenant", "other", "--scopes", "admin"],
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let b_key = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let client = Client::new(&junction);
    let receiver = Receiver::ok().await;

    for key in [&a_key, &b_key] {
        client.create_order_event_type(key).await;
    }
    let (id, _) = client.create_endpoint(&a_key, &receiver.url()).await;

    let seen = client
        .data(
            &b_key,
            "query($id: ID!) { endpoint(id: $id) { url } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(seen["endpoint"], Value::Null);
    let (_, body) = client
        .call(
            Some(&b_key),
            "mutation($id: ID!) { disableEndpoint(input: {id: $id}) { endpoint { id } } }",
            json!({"id": id}),
            &[],
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
    let published = client
        .data(&b_key, "mutation { publishEvent(input: {eventType: \"order.created\", payload: {}}) { deliveryCount } }", json!({}))
        .await;
    assert_eq!(published["publishEvent"]["deliveryCount"], 0);

    // Identity headers sent by a client are not trusted: the router replaces them.
    let (_, body) = client
        .call(
            Some(&b_key),
            "query($id: ID!) { endpoint(id: $id) { url } }",
            json!({"id": id}),
            &[
                ("junction-identity", "v1.forged"),
                ("junction-identity-signature", "forged"),
            ],
        )
        .await;
    assert_eq!(body["data"]["endpoint"], Value::Null, "{body}");

    let still = client
        .data(
            &a_key,
            "query($id: ID!) { endpoint(id: $id) { enabled } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(still["endpoint"]["enabled"], true);
}

async fn delivery_history_dead_letters_and_replay_through_the_router(db: TestDatabase) {
    let mut settings = SETTINGS.to_vec();
    settings.push(("JUNCTION_DISPATCHER_RETRY_SCHEDULE", "[\"50ms\"]"));
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), &settings);
    let key = printed_key(&junction.stdout);
    let client = Client::new(&junction);
    let receiver = Receiver::start(&[], support::receiver::Answer::Status(500)).await;

    client.create_order_event_type(&key).await;
    let (endpoint_id, _) = client.create_endpoint(&key, &receiver.url()).await;
    let published = client
        .data(&key, "mutation { publishEvent(input: {eventType: \"order.created\", payload: {n: 1}}) { message { id } } }", json!({}))
        .await;
    let message_id = published["publishEvent"]["message"]["id"].clone();
    receiver.wait_for(2, Duration::from_secs(20)).await;

    // One query, two subgraphs: the endpoint's url (webhooks), its history (deliveries).
    let history = "query($id: ID!) {
        endpoint(id: $id) {
            url
            stats(window: LAST_HOUR) { deliveries delivered deadLettered successRate attempts failedAttempts }
            attempts { edges { node { attempt statusCode succeeded errorKind } } }
        }
        deadLetters { id attempts reason message { id eventType deliveryStatus } }
    }";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let data = loop {
        let data = client.data(&key, history, json!({"id": endpoint_id})).await;
        if data["deadLetters"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            break data;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter: {data}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let endpoint = &data["endpoint"];
    assert_eq!(endpoint["url"], receiver.url());
    assert_eq!(
        endpoint["stats"],
        json!({"deliveries": 1, "delivered": 0, "deadLettered": 1, "successRate": 0.0, "attempts": 2, "failedAttempts": 2})
    );
    let attempts: Vec<i64> = endpoint["attempts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [2, 1], "newest first");
    assert_eq!(endpoint["attempts"]["edges"][0]["node"]["statusCode"], 500);
    // The same numbers for the whole tenant, and the attempts' latency.
    let tenant = client
        .data(
            &key,
            "query($id: ID!) { deliveryStats(window: LAST_HOUR) { deliveries deadLettered attempts } endpoint(id: $id) { stats { latencyP50Ms latencyP99Ms } } }",
            json!({"id": endpoint_id}),
        )
        .await;
    assert_eq!(
        tenant["deliveryStats"],
        json!({"deliveries": 1, "deadLettered": 1, "attempts": 2})
    );
    assert!(
        tenant["endpoint"]["stats"]["latencyP50Ms"].is_number(),
        "{tenant}"
    );
    assert!(
        tenant["endpoint"]["stats"]["latencyP99Ms"].is_number(),
        "{tenant}"
    );
    let dead = &data["deadLetters"][0];
    assert_eq!(dead["reason"], "retries exhausted after 2 attempts");
    assert_eq!(
        dead["message"],
        json!({"id": message_id, "eventType": "order.created", "deliveryStatus": "FAILED"})
    );
    let webhook_id = dead["id"].as_str().unwrap().to_owned();

    // The endpoint recovers; a replay delivers under the same webhook-id.
    receiver.answer_from_now_on(support::receiver::Answer::Status(200));
    let replayed = client
        .data(
            &key,
            "mutation($id: ID!) { replayMessage(input: {messageId: $id}) { requeued } }",
            json!({"id": message_id}),
        )
        .await;
    assert_eq!(replayed["replayMessage"]["requeued"], 1);
    let requests = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(requests[2].header("webhook-id"), webhook_id);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let data = client.data(&key, history, json!({"id": endpoint_id})).await;
        if data["endpoint"]["stats"]["delivered"] == 1 {
            assert_eq!(data["deadLetters"], json!([]));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replay not recorded: {data}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Dead letters in bulk: a replay job, whose progress is there to query.
    receiver.answer_from_now_on(support::receiver::Answer::Status(500));
    for n in 2..4 {
        client
            .data(&key, "mutation($p: JSON!) { publishEvent(input: {eventType: \"order.created\", payload: $p}) { deliveryCount } }", json!({"p": {"n": n}}))
            .await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.data(&key, history, json!({"id": endpoint_id})).await["deadLetters"]
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "no dead letters");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.answer_from_now_on(support::receiver::Answer::Status(200));
    let started = client
        .data(
            &key,
            "mutation($e: ID!) { replayDeadLetters(input: {filter: {endpointId: $e}}) { job { id total } } }",
            json!({"e": endpoint_id}),
        )
        .await;
    let job = &started["replayDeadLetters"]["job"];
    assert_eq!(job["total"], 2.0, "{started}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let job = loop {
        let data = client
            .data(
                &key,
                "query($id: ID!) { replayJob(id: $id) { status total requeued progress error endpoint { url } } }",
                json!({"id": job["id"]}),
            )
            .await;
        if data["replayJob"]["status"] != "RUNNING" {
            break data["replayJob"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{data}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        job,
        json!({"status": "SUCCEEDED", "total": 2.0, "requeued": 2.0, "progress": 1.0, "error": null, "endpoint": {"url": receiver.url()}})
    );
    receiver.wait_for(9, Duration::from_secs(20)).await;
    let bad = client
        .call(
            Some(&key),
            "mutation { replayDeadLetters(input: {filter: {since: \"2026-01-02T00:00:00Z\", until: \"2026-01-01T00:00:00Z\"}}) { job { id } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(
        bad.1["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{}",
        bad.1
    );
    // The log said so as it happened: a line per failed attempt, one per dead letter.
    let (_, logs) = junction.stop_with("TERM");
    let logged = |message: &str| {
        logs.iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["fields"]["message"] == message || line["message"] == message)
            .count()
    };
    assert!(logged("delivery attempt failed; retrying") >= 1, "{logs:?}");
    assert!(logged("delivery dead-lettered") >= 1, "{logs:?}");
}

/// Subscriptions through the router over WebSocket: refused without credentials at
/// `connection_init`; once in, attempt events arrive completed with the endpoint's url from the
/// webhooks subgraph, and dead letters on the legacy protocol.
async fn live_delivery_events_through_the_router(db: TestDatabase) {
    let mut settings = SETTINGS.to_vec();
    settings.push(("JUNCTION_DISPATCHER_RETRY_SCHEDULE", "[\"50ms\"]"));
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), &settings);
    let key = printed_key(&junction.stdout);
    let client = Client::new(&junction);
    let url = junction.url("/graphql");

    // No credentials, or bad ones: the socket is closed at connection_init with 4403.
    for payload in [
        json!({}),
        json!({"Authorization": "Bearer jk_live_aaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    ] {
        let mut socket = WsClient::open(&url, TRANSPORT_WS).await;
        socket
            .send(json!({"type": "connection_init", "payload": payload}))
            .await;
        match socket.receive().await {
            Received::Closed(code, _) => assert_eq!(code, 4403),
            other => panic!("expected the socket closed, got {other:?}"),
        }
    }

    let ok = Receiver::ok().await;
    let failing = Receiver::start(&[], support::receiver::Answer::Status(500)).await;
    client.create_order_event_type(&key).await;
    let (ok_endpoint, _) = client.create_endpoint(&key, &ok.url()).await;
    let (failing_endpoint, _) = client.create_endpoint(&key, &failing.url()).await;

    let auth = json!({"Authorization": format!("Bearer {key}")});
    let mut dead = WsClient::connect(&url, LEGACY_WS, auth.clone()).await;
    dead.subscribe(
        "dead",
        "subscription { deadLetters { id attempts reason endpoint { id url } message { id eventType } } }",
        json!({}),
    )
    .await;
    let mut live = WsClient::connect(&url, TRANSPORT_WS, json!({"headers": auth})).await;
    live.subscribe(
        "ok",
        "subscription($e: ID) { deliveryAttempts(endpointId: $e) { status attempt { attempt statusCode succeeded endpoint { id url } message { id } } } }",
        json!({"e": ok_endpoint}),
    )
    .await;

    // The subscription is live once the subgraph has it; publish until an event comes.
    let mut published = Vec::new();
    let event = loop {
        assert!(
            published.len() < 20,
            "no live event after {} messages",
            published.len()
        );
        let data = client
            .data(&key, "mutation { publishEvent(input: {eventType: \"order.created\", payload: {n: 1}}) { message { id } } }", json!({}))
            .await;
        published.push(data["publishEvent"]["message"]["id"].clone());
        if let Some(received) = live.receive_within(Duration::from_secs(1)).await {
            break received;
        }
    };
    let Received::Message(event) = event else {
        panic!("expected an event, got {event:?}");
    };
    assert_eq!(event["type"], "next", "{event}");
    assert_eq!(event["id"], "ok");
    let payload = &event["payload"];
    assert!(payload.get("errors").is_none(), "{payload}");
    let attempt = &payload["data"]["deliveryAttempts"];
    assert_eq!(attempt["status"], "SUCCEEDED");
    assert_eq!(attempt["attempt"]["attempt"], 1);
    assert_eq!(attempt["attempt"]["statusCode"], 200);
    assert_eq!(attempt["attempt"]["succeeded"], true);
    // Joined by the router from the webhooks subgraph, for this event.
    assert_eq!(
        attempt["attempt"]["endpoint"],
        json!({"id": ok_endpoint, "url": ok.url()})
    );
    assert!(
        published.contains(&attempt["attempt"]["message"]["id"]),
        "{event}"
    );

    // Only the filtered endpoint's attempts arrive: the failing one's never do.
    while let Some(Received::Message(next)) = live.receive_within(Duration::from_millis(500)).await
    {
        assert_eq!(
            next["payload"]["data"]["deliveryAttempts"]["attempt"]["endpoint"]["id"], ok_endpoint,
            "{next}"
        );
    }

    // Dead letters arrive on the legacy protocol as `data`.
    let letter = dead.message().await;
    assert_eq!(letter["type"], "data", "{letter}");
    assert_eq!(letter["id"], "dead");
    let letter = &letter["payload"]["data"]["deadLetters"];
    assert_eq!(letter["attempts"], 2, "{letter}");
    assert_eq!(
        letter["endpoint"],
        json!({"id": failing_endpoint, "url": failing.url()})
    );
    assert_eq!(letter["message"]["eventType"], "order.created");
    assert!(published.contains(&letter["message"]["id"]), "{letter}");

    // Stopping one operation leaves the connection usable.
    dead.complete("dead").await;
    assert_eq!(
        dead.message().await,
        json!({"id": "dead", "type": "complete"})
    );
    dead.subscribe("q", "{ endpoints { edges { node { id } } } }", json!({}))
        .await;
    let answer = dead.message().await;
    assert_eq!(answer["type"], "data", "{answer}");
    assert_eq!(
        answer["payload"]["data"]["endpoints"]["edges"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(dead.message().await, json!({"id": "q", "type": "complete"}));

    live.close().await;
    dead.close().await;
    let (status, _) = junction.stop_with("TERM");
    assert!(status.success());
}

/// With `[gateway.jwt]`, a signed token is a credential like an API key: its tenant claim
/// scopes what the caller sees, and every bad token is refused with its reason.
async fn jwt_bearer_tokens_through_the_router(db: TestDatabase) {
    const SECRET: &str = "a shared secret for the platform test, long enough";
    let keys = format!("[{{algorithm = \"HS256\", secret = \"{SECRET}\"}}]");
    let mut settings = SETTINGS.to_vec();
    settings.extend([
        ("JUNCTION_GATEWAY__JWT__ISSUER", "https://issuer.test"),
        ("JUNCTION_GATEWAY__JWT__AUDIENCES", "[\"junction\"]"),
        ("JUNCTION_GATEWAY__JWT__ALGORITHMS", "[\"HS256\"]"),
        ("JUNCTION_GATEWAY__JWT__KEYS", keys.as_str()),
    ]);
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), &settings);
    let key = printed_key(&junction.stdout);
    let client = Client::new(&junction);
    client.create_order_event_type(&key).await;
    let receiver = Receiver::ok().await;
    let (endpoint_id, _) = client.create_endpoint(&key, &receiver.url()).await;
    let listed = cli(db.dir.path(), Some(&db.url), &["tenant", "list"]);
    let tenant = String::from_utf8(listed.stdout).unwrap();
    let tenant = tenant.split_whitespace().next().unwrap().to_owned();

    let now = chrono::Utc::now().timestamp();
    let token = |changes: Value| {
        let mut claims = json!({
            "iss": "https://issuer.test", "aud": "junction", "sub": "machine-1",
            "tenant": tenant, "scope": "webhooks:read", "nbf": now, "exp": now + 300,
        });
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let query = "{ endpoints { edges { node { id } } } }";
    let (status, body) = client
        .call(Some(&token(json!({}))), query, json!({}), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["endpoints"]["edges"][0]["node"]["id"], endpoint_id,
        "the token's tenant sees its endpoint"
    );
    // Read scope only: writing is forbidden by the subgraph.
    let (_, body) = client
        .call(
            Some(&token(json!({}))),
            "mutation { createEventType(input: {name: \"x.y\"}) { eventType { name } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    // Another tenant's token sees nothing of this one's.
    let (_, body) = client
        .call(
            Some(&token(json!({"tenant": "someone-else"}))),
            query,
            json!({}),
            &[],
        )
        .await;
    assert_eq!(body["data"]["endpoints"]["edges"], json!([]), "{body}");
    for (changes, why) in [
        (json!({"exp": now - 600}), "the token has expired"),
        (json!({"aud": "other"}), "the token is for another audience"),
        (
            json!({"iss": "https://evil.test"}),
            "the token is from another issuer",
        ),
    ] {
        let (status, body) = client
            .call(Some(&token(changes)), query, json!({}), &[])
            .await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["errors"][0]["message"], why);
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
    // API keys keep working beside tokens.
    let (status, _) = client.call(Some(&key), query, json!({}), &[]).await;
    assert_eq!(status, 200);
    let (status, _) = junction.stop_with("TERM");
    assert!(status.success());
}

/// The router as an OAuth2 authorization server for machine clients: an API key trades for a
/// short-lived token (client credentials, RFC 6749 4.4) that the router then accepts.
async fn oauth2_client_credentials_through_the_router(db: TestDatabase) {
    use base64::Engine;
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), SETTINGS);
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
            "webhooks:read deliveries:read",
        ],
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let key = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let client_id = key.split('_').nth(2).unwrap().to_owned();
    let client = Client::new(&junction);
    let http = reqwest::Client::new();
    let token_url = junction.url("/oauth/token");
    let ask = |id: &str, secret: &str, form: &str| {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        http.post(&token_url)
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
    };

    let granted = ask(
        &client_id,
        &key,
        "grant_type=client_credentials&scope=webhooks%3Aread",
    )
    .await
    .unwrap();
    assert_eq!(granted.status(), 200);
    assert_eq!(granted.headers()["cache-control"], "no-store");
    let granted: Value = granted.json().await.unwrap();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["expires_in"], 900);
    assert_eq!(granted["scope"], "webhooks:read");
    let token = granted["access_token"].as_str().unwrap().to_owned();

    let (status, body) = client
        .call(
            Some(&token),
            "{ endpoints { edges { cursor } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let (_, body) = client
        .call(
            Some(&token),
            "mutation { createEventType(input: {name: \"a.b\"}) { eventType { name } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );

    // Its key is published for anyone who verifies the router's tokens.
    let jwks: Value = http
        .get(junction.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");

    // Refusals, as RFC 6749 spells them.
    for (id, secret, form, status, error) in [
        (
            client_id.as_str(),
            "jk_live_wrong",
            "grant_type=client_credentials",
            401,
            "invalid_client",
        ),
        (
            "someone-else",
            key.as_str(),
            "grant_type=client_credentials",
            401,
            "invalid_client",
        ),
        (
            client_id.as_str(),
            key.as_str(),
            "grant_type=password",
            400,
            "unsupported_grant_type",
        ),
        (
            client_id.as_str(),
            key.as_str(),
            "grant_type=client_credentials&scope=admin",
            400,
            "invalid_scope",
        ),
    ] {
        let refused = ask(id, secret, form).await.unwrap();
        assert_eq!(refused.status().as_u16(), status, "{form}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], error, "{form}");
    }

    // An admin key may ask for any narrower scope Junction knows, and for no unknown one.
    let admin = printed_key(&junction.stdout);
    let admin_id = admin.split('_').nth(2).unwrap().to_owned();
    let narrowed = ask(
        &admin_id,
        &admin,
        "grant_type=client_credentials&scope=webhooks%3Awrite",
    )
    .await
    .unwrap();
    assert_eq!(narrowed.status(), 200);
    let narrowed: Value = narrowed.json().await.unwrap();
    assert_eq!(narrowed["scope"], "webhooks:write");
    let refused = ask(
        &admin_id,
        &admin,
        "grant_type=client_credentials&scope=admn",
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_scope");

    // A key with a misspelt scope is not created: the CLI names the scopes there are.
    let typo = cli(
        db.dir.path(),
        Some(&db.url),
        &["apikey", "create", "--tenant", &tenant, "--scopes", "admn"],
    );
    assert_eq!(typo.status.code(), Some(2));
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(
        said.contains("unknown scope \"admn\"") && said.contains("webhooks:write"),
        "{said}"
    );
    let (status, _) = client
        .call(
            Some("eyJhbGciOiJFZERTQSJ9.e30.AAAA"),
            "{ endpoints { edges { cursor } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 401, "a forged token");
    let (status, _) = junction.stop_with("TERM");
    assert!(status.success());
}

/// `junction serve` reloads its `[gateway]` settings on SIGHUP, as `junction gateway` does: a
/// broken file keeps the running configuration (and the process), a good one applies to the
/// next request, and the same key keeps working throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_its_configuration_on_sighup() {
    let dir = tempfile::TempDir::new().unwrap();
    let config = dir.path().join("junction.toml");
    let settings = |max_depth: u32| {
        format!("[gateway]\nwatch_interval = \"0s\"\n\n[gateway.limits]\nmax_depth = {max_depth}\n")
    };
    std::fs::write(&config, settings(20)).unwrap();
    let junction = Junction::serve(dir.path(), None);
    let key = printed_key(&junction.stdout);
    let client = Client::new(&junction);
    let deep = "{ endpoints { edges { node { id url } } } }";
    let hangup = |junction: &Junction| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &junction.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let (status, _) = client.call(Some(&key), deep, json!({}), &[]).await;
    assert_eq!(status, 200);

    // A broken file: the running configuration stays, and so does the process.
    std::fs::write(&config, "[gateway.limits]\nmax_depth = \"deep\"\n").unwrap();
    hangup(&junction);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = client.call(Some(&key), deep, json!({}), &[]).await;
    assert_eq!(status, 200, "{body}");

    // A good one: the new depth limit refuses the same query, and the key still works.
    std::fs::write(&config, settings(4)).unwrap();
    hangup(&junction);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let (status, body) = client.call(Some(&key), deep, json!({}), &[]).await;
        if status == 400 || std::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    let (status, body) = client
        .call(
            Some(&key),
            "{ endpoints { edges { cursor } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (exit, _) = junction.stop_with("TERM");
    assert!(exit.success(), "{exit:?}");
}

/// `junction listen`, as a developer runs it beside `junction serve`: it registers an endpoint
/// on loopback with the key given, prints each delivery with its event type, `webhook-id`
/// and a verified signature, and deletes the endpoint on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junction_listen_receives_verifies_and_prints_webhooks() {
    let dir = tempfile::TempDir::new().unwrap();
    let junction = Junction::serve_with(dir.path(), None, SETTINGS);
    let key = printed_key(&junction.stdout);
    let client = Client::new(&junction);
    client.create_order_event_type(&key).await;

    let mut command = support::process::command(dir.path());
    command.args(["listen", "--key", &key, "--router", &junction.url("")]);
    command.args(["--log-format", "json"]);
    let mut listen = Junction::start(command, "listening for webhooks");
    listen.stdout_until("Listening on http://127.0.0.1:", Duration::from_secs(5));
    client
        .data(
            &key,
            "mutation { publishEvent(input: {eventType: \"order.created\", payload: {id: 7}}) { deliveryCount } }",
            json!({}),
        )
        .await;
    // The event's line, then its body.
    let printed = listen.stdout_until(r#""data":{"id":7}"#, Duration::from_secs(20));
    let line = printed
        .lines()
        .find(|line| line.starts_with("order.created"))
        .unwrap_or_default();
    assert!(
        line.contains("webhook-id ") && line.ends_with("signature valid"),
        "{printed}"
    );

    let (exit, _) = listen.stop_with("INT");
    assert!(exit.success(), "{exit:?}");
    let data = client
        .data(&key, "{ endpoints { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(
        data["endpoints"]["edges"],
        json!([]),
        "the endpoint is deleted"
    );
}

/// Without the allowance for loopback, `junction listen` stops at once with the router's
/// refusal, which names the setting to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junction_listen_names_the_setting_loopback_needs() {
    let dir = tempfile::TempDir::new().unwrap();
    let junction = Junction::serve(dir.path(), None);
    let key = printed_key(&junction.stdout);
    let refused = cli(
        dir.path(),
        None,
        &["listen", "--key", &key, "--router", &junction.url("")],
    );
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("allowed_networks") && said.contains("[dispatcher]"),
        "{said}"
    );
}

/// A platform embedding Junction manages its customers from code: a `platform:admin` key
/// (`apikey create --platform`) creates, lists, renames and deletes tenants and issues their
/// keys; a tenant's `admin` can do none of it; a deleted tenant's data and keys go with it.
async fn tenants_are_managed_through_graphql_by_a_platform_key(db: TestDatabase) {
    // Every request checks its key in the database, so a deleted tenant's key stops at once.
    let mut settings = SETTINGS.to_vec();
    settings.push(("JUNCTION_GATEWAY__API_KEY_CACHE_TTL", "0s"));
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), &settings);
    let admin = printed_key(&junction.stdout);
    let client = Client::new(&junction);
    let issued = cli(
        db.dir.path(),
        Some(&db.url),
        &["apikey", "create", "--tenant", "default", "--platform"],
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let platform = String::from_utf8(issued.stdout).unwrap().trim().to_owned();

    // A tenant's admin may not manage tenants, nor mint a platform key.
    for (query, variables) in [
        ("{ tenants { id } }", json!({})),
        (
            "mutation { createTenant(input: {name: \"acme\"}) { tenant { id } } }",
            json!({}),
        ),
        (
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
            json!({"i": {"name": "x", "scopes": ["platform:admin"]}}),
        ),
    ] {
        let (_, body) = client.call(Some(&admin), query, variables, &[]).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{query}: {body}"
        );
        assert_eq!(
            body["errors"][0]["message"],
            "this needs the scope platform:admin"
        );
    }

    let created = client
        .data(
            &platform,
            "mutation { createTenant(input: {name: \"acme\"}) { tenant { id name } } }",
            json!({}),
        )
        .await;
    let acme = created["createTenant"]["tenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created["createTenant"]["tenant"]["name"], "acme");
    // Names are validated and unique; ids are opaque.
    for (name, code) in [("Acme Corp", "BAD_USER_INPUT"), ("acme", "CONFLICT")] {
        let (_, body) = client
            .call(
                Some(&platform),
                "mutation($n: String!) { createTenant(input: {name: $n}) { tenant { id } } }",
                json!({"n": name}),
                &[],
            )
            .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], code,
            "{name}: {body}"
        );
    }
    let renamed = client
        .data(
            &platform,
            "mutation($id: ID!) { updateTenant(input: {id: $id, name: \"acme-corp\"}) { tenant { id name } } }",
            json!({"id": acme}),
        )
        .await;
    assert_eq!(
        renamed["updateTenant"]["tenant"],
        json!({"id": acme, "name": "acme-corp"})
    );
    let listed = client
        .data(&platform, "{ tenants { name } }", json!({}))
        .await;
    assert_eq!(
        listed["tenants"],
        json!([{"name": "acme-corp"}, {"name": "default"}])
    );

    // A key for the new tenant works there, and sees only that tenant.
    let key = client
        .data(
            &platform,
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
            json!({"i": {"name": "acme admin", "scopes": ["admin"], "tenant": acme}}),
        )
        .await["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    client.create_order_event_type(&key).await;
    client
        .create_endpoint(&key, "http://127.0.0.1:9/acme")
        .await;
    let theirs = client
        .data(&key, "{ endpoints { edges { node { url } } } }", json!({}))
        .await;
    assert_eq!(theirs["endpoints"]["edges"].as_array().unwrap().len(), 1);
    let ours = client
        .data(
            &admin,
            "{ endpoints { edges { node { url } } } }",
            json!({}),
        )
        .await;
    assert_eq!(ours["endpoints"]["edges"], json!([]));

    // Deleting it takes its endpoints, event types and keys; its own tenant it may not delete.
    let (_, body) = client
        .call(Some(&platform), "{ tenants { id name } }", json!({}), &[])
        .await;
    let default_id = body["data"]["tenants"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, refused) = client
        .call(
            Some(&platform),
            "mutation($id: ID!) { deleteTenant(input: {id: $id}) { deletedId } }",
            json!({"id": default_id}),
            &[],
        )
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    let deleted = client
        .data(
            &platform,
            "mutation($id: ID!) { deleteTenant(input: {id: $id}) { deletedId } }",
            json!({"id": acme}),
        )
        .await;
    assert_eq!(deleted["deleteTenant"]["deletedId"], json!(acme));
    let listed = client
        .data(&platform, "{ tenants { name } }", json!({}))
        .await;
    assert_eq!(listed["tenants"], json!([{"name": "default"}]));
    let (status, _) = client
        .call(
            Some(&key),
            "{ endpoints { edges { cursor } } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 401);
}
