//! The webhooks subgraph's GraphQL API, run as its own process (`junction subgraph webhooks`)
//! and called with identities signed the way the router signs them; deliveries made by a
//! separate `junction dispatcher` process to a real receiver. On SQLite and PostgreSQL.

use crate::support;

use std::time::Duration;

use chrono::Utc;
use junction_schema::Identity;
use junction_schema::identity::{
    Audience, Binding, IDENTITY_HEADER, IDENTITY_SIGNATURE_HEADER, IdentityKey, IdentitySigner,
};
use junction_schema::tenants;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use support::receiver::Receiver;
use support::{Junction, TestDatabase};

const ALLOW_LOOPBACK: (&str, &str) = ("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", "[\"127.0.0.0/8\"]");

struct Subgraph {
    process: Junction,
    key: IdentityKey,
    client: reqwest::Client,
}

impl Subgraph {
    async fn start(db: &TestDatabase) -> Self {
        let key = IdentityKey::generate();
        let encoded = key.to_base64();
        let mut command = support::process::command(db.dir.path());
        command
            .args([
                "subgraph",
                "webhooks",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .env("JUNCTION_DATABASE_URL", &db.url)
            .env("JUNCTION_IDENTITY_SIGNING_KEY", &encoded)
            .env(ALLOW_LOOPBACK.0, ALLOW_LOOPBACK.1);
        let process = Junction::start(command, "Junction is serving");
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            process,
            key,
            client: reqwest::Client::new(),
        }
    }

    /// Sends `query` as `identity` (signed with the shared key), or with no identity at all.
    async fn call_as(
        &self,
        identity: Option<(&Identity, &IdentityKey)>,
        query: &str,
        variables: Value,
    ) -> (u16, Value) {
        let body = json!({"query": query, "variables": variables}).to_string();
        // Signed as the router signs: for this subgraph, this request, this body.
        let audience = Audience::subgraph("webhooks");
        let request_id = uuid::Uuid::new_v4().to_string();
        let binding = Binding {
            audience: &audience,
            method: Some("POST"),
            target: Some("/graphql"),
            body: Some(Binding::digest(body.as_bytes())),
            request_id: Some(&request_id),
        };
        let mut request = self
            .client
            .post(self.process.url("/graphql"))
            .header("content-type", "application/json")
            .header("x-request-id", &request_id)
            .body(body);
        if let Some((identity, key)) = identity {
            let (payload, signature) =
                IdentitySigner::new(key.clone()).sign(identity, &binding, Utc::now());
            request = request
                .header(IDENTITY_HEADER, payload)
                .header(IDENTITY_SIGNATURE_HEADER, signature);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    async fn call(&self, identity: &Identity, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .call_as(Some((identity, &self.key)), query, variables)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `data`, asserting there were no errors.
    async fn ok(&self, identity: &Identity, query: &str, variables: Value) -> Value {
        let body = self.call(identity, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// The first error's code, asserting there was one.
    async fn error_code(
        &self,
        identity: &Identity,
        query: &str,
        variables: Value,
    ) -> (String, String) {
        let body = self.call(identity, query, variables).await;
        let error = &body["errors"][0];
        assert!(error.is_object(), "expected an error: {body}");
        (
            error["extensions"]["code"]
                .as_str()
                .unwrap_or("<none>")
                .to_owned(),
            error["message"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

async fn caller(db: &TestDatabase, tenant: &str, scopes: &str) -> Identity {
    let conn = db.connect().await;
    let tenant = match tenants::find(&conn, tenant).await {
        Ok(found) => found,
        Err(_) => tenants::create(&conn, tenant).await.unwrap(),
    };
    Identity {
        tenant: tenant.id,
        subject: format!("test-{scopes}"),
        scopes: scopes.parse().unwrap(),
        expires_at: None,
    }
}

const CREATE_EVENT_TYPE: &str = "mutation($input: CreateEventTypeInput!) { createEventType(input: $input) { eventType { name schema deprecated } } }";
const CREATE_ENDPOINT: &str = "mutation($input: CreateEndpointInput!) { createEndpoint(input: $input) { secret endpoint { id url enabled eventTypes signingAlgorithm secrets { id expiresAt } } } }";
const PUBLISH: &str = "mutation($input: PublishEventInput!) { publishEvent(input: $input) { deliveryCount repeated message { id eventType payload channels } } }";

async fn invoice_type(subgraph: &Subgraph, who: &Identity) {
    let schema = json!({
        "type": "object",
        "required": ["invoice", "amount"],
        "properties": {"invoice": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}}
    });
    subgraph
        .ok(
            who,
            CREATE_EVENT_TYPE,
            json!({"input": {"name": "invoice.paid", "schema": schema}}),
        )
        .await;
}

on_both_databases!(
    publishing_through_graphql_reaches_the_receiver,
    bad_input_gets_coded_errors_and_changes_nothing,
    requests_without_a_valid_identity_are_refused,
    tenants_are_isolated_through_every_operation,
    lists_paginate_with_cursors,
    secrets_rotate_through_graphql,
);

async fn publishing_through_graphql_reaches_the_receiver(db: TestDatabase) {
    db.migrated().await;
    let subgraph = Subgraph::start(&db).await;
    let admin = caller(&db, "acme", "admin").await;
    let receiver = Receiver::ok().await;
    invoice_type(&subgraph, &admin).await;
    let created = subgraph
        .ok(
            &admin,
            CREATE_ENDPOINT,
            json!({"input": {"url": receiver.url(), "eventTypes": ["invoice.paid"]}}),
        )
        .await;
    let endpoint = &created["createEndpoint"]["endpoint"];
    assert_eq!(endpoint["enabled"], true);
    assert_eq!(endpoint["signingAlgorithm"], "HMAC_SHA256");
    assert_eq!(endpoint["secrets"].as_array().unwrap().len(), 1);
    let secret = created["createEndpoint"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("whsec_"));

    let published = subgraph
        .ok(
            &admin,
            PUBLISH,
            json!({"input": {"eventType": "invoice.paid", "payload": {"invoice": "in_1", "amount": 42}}}),
        )
        .await;
    assert_eq!(published["publishEvent"]["deliveryCount"], 1);
    let message_id = published["publishEvent"]["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let dispatcher = Junction::dispatcher(
        db.dir.path(),
        &db.url,
        &[
            ALLOW_LOOPBACK,
            ("JUNCTION_DISPATCHER_POLL_INTERVAL", "20ms"),
        ],
    );
    let request = receiver
        .wait_for(1, Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(
        request.json()["data"],
        json!({"invoice": "in_1", "amount": 42})
    );
    assert_eq!(request.json()["message_id"], message_id.as_str());
    assert!(request.header("webhook-signature").starts_with("v1,"));
    let (status, _) = dispatcher.stop_with("TERM");
    assert!(status.success());

    let message = subgraph
        .ok(
            &admin,
            "query($id: ID!) { message(id: $id) { id eventType payload } }",
            json!({"id": message_id}),
        )
        .await;
    assert_eq!(message["message"]["payload"]["invoice"], "in_1");
    // A read-only key can read.
    let reader = caller(&db, "acme", "webhooks:read").await;
    let listed = subgraph
        .ok(
            &reader,
            "{ endpoints { edges { node { url } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["endpoints"]["edges"][0]["node"]["url"],
        receiver.url()
    );
}

async fn bad_input_gets_coded_errors_and_changes_nothing(db: TestDatabase) {
    let conn = db.migrated().await;
    let subgraph = Subgraph::start(&db).await;
    let admin = caller(&db, "acme", "admin").await;
    invoice_type(&subgraph, &admin).await;
    let receiver = Receiver::ok().await;
    subgraph
        .ok(
            &admin,
            CREATE_ENDPOINT,
            json!({"input": {"url": receiver.url()}}),
        )
        .await;

    let publish = |payload: Value, event_type: &str| json!({"input": {"eventType": event_type, "payload": payload}});
    let cases = [
        (
            publish(json!({"invoice": "in_1", "amount": 1}), "invoice.unknown"),
            "unknown event type",
        ),
        (
            publish(json!({"invoice": "in_1"}), "invoice.paid"),
            "\"amount\" is a required property",
        ),
        (
            publish(json!({"invoice": "in_1", "amount": -5}), "invoice.paid"),
            "/amount",
        ),
        (
            publish(json!("just a string"), "invoice.paid"),
            "does not match the schema",
        ),
        (
            publish(
                json!({"invoice": "x".repeat(300 * 1024), "amount": 1}),
                "invoice.paid",
            ),
            "the limit is 262144",
        ),
    ];
    for (variables, expected) in cases {
        let (code, message) = subgraph.error_code(&admin, PUBLISH, variables).await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(
            message.contains(expected),
            "{message:?} should mention {expected:?}"
        );
    }
    for url in [
        "not a url",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/",
        "ftp://example.com/",
    ] {
        let (code, message) = subgraph
            .error_code(&admin, CREATE_ENDPOINT, json!({"input": {"url": url}}))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{url}: {message}");
    }
    let (code, _) = subgraph
        .error_code(
            &admin,
            CREATE_EVENT_TYPE,
            json!({"input": {"name": "Bad Name"}}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    let (code, _) = subgraph
        .error_code(
            &admin,
            CREATE_EVENT_TYPE,
            json!({"input": {"name": "invoice.paid"}}),
        )
        .await;
    assert_eq!(code, "CONFLICT");
    let (code, _) = subgraph
        .error_code(
            &admin,
            CREATE_EVENT_TYPE,
            json!({"input": {"name": "x.y", "schema": {"type": 12}}}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");

    // Idempotency: the same key and payload answer the same message; another payload conflicts.
    let keyed = |amount: i64| json!({"input": {"eventType": "invoice.paid", "payload": {"invoice": "in_9", "amount": amount}, "idempotencyKey": "k-1"}});
    let first = subgraph.ok(&admin, PUBLISH, keyed(1)).await;
    let again = subgraph.ok(&admin, PUBLISH, keyed(1)).await;
    assert_eq!(
        first["publishEvent"]["message"]["id"],
        again["publishEvent"]["message"]["id"]
    );
    assert_eq!(again["publishEvent"]["repeated"], true);
    let (code, _) = subgraph.error_code(&admin, PUBLISH, keyed(2)).await;
    assert_eq!(code, "CONFLICT");

    // A read-only caller cannot write.
    let reader = caller(&db, "acme", "webhooks:read").await;
    let (code, _) = subgraph.error_code(&reader, PUBLISH, keyed(3)).await;
    assert_eq!(code, "FORBIDDEN");
    // Malformed GraphQL is refused before anything runs.
    let body = subgraph
        .call(&admin, "mutation { publishEvent(input: {", json!({}))
        .await;
    assert!(
        body["errors"][0]["message"].as_str().unwrap().len() > 5,
        "{body}"
    );

    use junction_schema::entities::{delivery, endpoint, message};
    assert_eq!(message::Entity::find().count(&conn).await.unwrap(), 1);
    assert_eq!(delivery::Entity::find().count(&conn).await.unwrap(), 1);
    assert_eq!(endpoint::Entity::find().count(&conn).await.unwrap(), 1);
}

async fn requests_without_a_valid_identity_are_refused(db: TestDatabase) {
    db.migrated().await;
    let subgraph = Subgraph::start(&db).await;
    let admin = caller(&db, "acme", "admin").await;
    let query = "{ endpoints { edges { node { id } } } }";

    let (status, body) = subgraph.call_as(None, query, json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    let forger = IdentityKey::generate();
    let (status, body) = subgraph
        .call_as(Some((&admin, &forger)), query, json!({}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "identity signature does not verify"
    );

    // The credential's expiry is the router's to judge (with its leeway): a signature made
    // a moment ago for a credential just past `exp` stands.
    let mut just_expired = admin.clone();
    just_expired.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
    let (status, body) = subgraph
        .call_as(Some((&just_expired, &subgraph.key)), query, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
}

async fn tenants_are_isolated_through_every_operation(db: TestDatabase) {
    db.migrated().await;
    let subgraph = Subgraph::start(&db).await;
    let a = caller(&db, "tenant-a", "admin").await;
    let b = caller(&db, "tenant-b", "admin").await;
    let receiver = Receiver::ok().await;
    invoice_type(&subgraph, &a).await;
    invoice_type(&subgraph, &b).await;
    let created = subgraph
        .ok(
            &a,
            CREATE_ENDPOINT,
            json!({"input": {"url": receiver.url()}}),
        )
        .await;
    let id = created["createEndpoint"]["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_message = subgraph
        .ok(&a, PUBLISH, json!({"input": {"eventType": "invoice.paid", "payload": {"invoice": "a", "amount": 1}}}))
        .await;
    let a_message_id = a_message["publishEvent"]["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Reads: nothing of A's is visible to B.
    let seen = subgraph
        .ok(
            &b,
            "query($id: ID!) { endpoint(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(seen["endpoint"], Value::Null);
    let seen = subgraph
        .ok(
            &b,
            "{ endpoints { edges { node { id } } } messages { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(seen["endpoints"]["edges"], json!([]));
    assert_eq!(seen["messages"]["edges"], json!([]));
    let seen = subgraph
        .ok(
            &b,
            "query($id: ID!) { message(id: $id) { id } }",
            json!({"id": a_message_id}),
        )
        .await;
    assert_eq!(seen["message"], Value::Null);
    let entities = subgraph
        .ok(
            &b,
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Endpoint { id url } } }",
            json!({"r": [{"__typename": "Endpoint", "id": id}]}),
        )
        .await;
    assert_eq!(entities["_entities"], json!([null]));
    // ...while A's own lookup through the federation entry point works.
    let entities = subgraph
        .ok(
            &a,
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Endpoint { url } } }",
            json!({"r": [{"__typename": "Endpoint", "id": id}]}),
        )
        .await;
    assert_eq!(entities["_entities"][0]["url"], receiver.url());

    // Writes: every mutation on A's endpoint is NOT_FOUND for B, and changes nothing.
    for (mutation, input) in [
        (
            "mutation($i: UpdateEndpointInput!) { updateEndpoint(input: $i) { endpoint { id } } }",
            json!({"id": id, "description": "pwned"}),
        ),
        (
            "mutation($i: EndpointIdInput!) { deleteEndpoint(input: $i) { deletedId } }",
            json!({"id": id}),
        ),
        (
            "mutation($i: DisableEndpointInput!) { disableEndpoint(input: $i) { endpoint { id } } }",
            json!({"id": id}),
        ),
        (
            "mutation($i: EndpointIdInput!) { enableEndpoint(input: $i) { endpoint { id } } }",
            json!({"id": id}),
        ),
        (
            "mutation($i: RotateEndpointSecretInput!) { rotateEndpointSecret(input: $i) { secret } }",
            json!({"id": id}),
        ),
    ] {
        let (code, _) = subgraph.error_code(&b, mutation, json!({"i": input})).await;
        assert_eq!(code, "NOT_FOUND", "{mutation}");
    }
    // Publishing as B reaches none of A's endpoints.
    let published = subgraph
        .ok(&b, PUBLISH, json!({"input": {"eventType": "invoice.paid", "payload": {"invoice": "b", "amount": 1}}}))
        .await;
    assert_eq!(published["publishEvent"]["deliveryCount"], 0);

    let still = subgraph
        .ok(
            &a,
            "query($id: ID!) { endpoint(id: $id) { description enabled secrets { id } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(still["endpoint"]["description"], "");
    assert_eq!(still["endpoint"]["enabled"], true);
    assert_eq!(still["endpoint"]["secrets"].as_array().unwrap().len(), 1);
}

async fn lists_paginate_with_cursors(db: TestDatabase) {
    db.migrated().await;
    let subgraph = Subgraph::start(&db).await;
    let admin = caller(&db, "acme", "admin").await;
    let receiver = Receiver::ok().await;
    for n in 0..3 {
        subgraph
            .ok(
                &admin,
                CREATE_ENDPOINT,
                json!({"input": {"url": format!("{}?n={n}", receiver.url())}}),
            )
            .await;
    }
    let page = "query($after: String) { endpoints(first: 2, after: $after) { edges { cursor node { url } } pageInfo { hasNextPage endCursor } } }";
    let first = subgraph.ok(&admin, page, json!({})).await;
    let urls: Vec<&str> = first["endpoints"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            format!("{}?n=0", receiver.url()),
            format!("{}?n=1", receiver.url())
        ]
    );
    assert_eq!(first["endpoints"]["pageInfo"]["hasNextPage"], true);
    let cursor = first["endpoints"]["pageInfo"]["endCursor"].clone();
    let second = subgraph.ok(&admin, page, json!({"after": cursor})).await;
    assert_eq!(second["endpoints"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(
        second["endpoints"]["edges"][0]["node"]["url"],
        format!("{}?n=2", receiver.url())
    );
    assert_eq!(second["endpoints"]["pageInfo"]["hasNextPage"], false);

    let (code, _) = subgraph
        .error_code(&admin, page, json!({"after": "%%%"}))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    let (code, _) = subgraph
        .error_code(
            &admin,
            "{ endpoints(first: 1000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
}

async fn secrets_rotate_through_graphql(db: TestDatabase) {
    db.migrated().await;
    let subgraph = Subgraph::start(&db).await;
    let admin = caller(&db, "acme", "admin").await;
    let receiver = Receiver::ok().await;
    let created = subgraph
        .ok(
            &admin,
            CREATE_ENDPOINT,
            json!({"input": {"url": receiver.url(), "signingAlgorithm": "ED25519"}}),
        )
        .await;
    let id = created["createEndpoint"]["endpoint"]["id"].clone();
    assert!(
        created["createEndpoint"]["secret"]
            .as_str()
            .unwrap()
            .starts_with("whpk_"),
        "ed25519 shows the public key"
    );
    let rotated = subgraph
        .ok(
            &admin,
            "mutation($i: RotateEndpointSecretInput!) { rotateEndpointSecret(input: $i) { secret endpoint { secrets { expiresAt } } } }",
            json!({"i": {"id": id, "gracePeriodSeconds": 3600}}),
        )
        .await;
    let secrets = rotated["rotateEndpointSecret"]["endpoint"]["secrets"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(secrets.len(), 2);
    assert_eq!(
        secrets[0]["expiresAt"],
        Value::Null,
        "the new secret, newest first"
    );
    assert!(
        secrets[1]["expiresAt"].is_string(),
        "the old one has a grace period"
    );
    assert_ne!(
        rotated["rotateEndpointSecret"]["secret"],
        created["createEndpoint"]["secret"]
    );
    let (code, _) = subgraph
        .error_code(
            &admin,
            "mutation($i: RotateEndpointSecretInput!) { rotateEndpointSecret(input: $i) { secret } }",
            json!({"i": {"id": id, "gracePeriodSeconds": -1}}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
}
