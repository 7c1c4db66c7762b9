//! Publishing as a user's publisher meets it, through `junction serve`'s router: bulk
//! publishing (`publishEvents`, and `POST /v1/events` for clients without GraphQL) answering
//! each event; a database outage answered `UNAVAILABLE` (503 with `Retry-After` on REST) and
//! retries with the same idempotency keys delivering every event once; and a first start that
//! cannot listen spending nothing.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::postgres::PostgresServer;
use support::receiver::Receiver;
use support::{Junction, TestDatabase, cli};

const SETTINGS: &[(&str, &str)] = &[
    ("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", "[\"127.0.0.1/32\"]"),
    ("JUNCTION_DISPATCHER_POLL_INTERVAL", "20ms"),
    (
        "JUNCTION_DISPATCHER_RETRY_SCHEDULE",
        "[\"200ms\", \"200ms\", \"200ms\"]",
    ),
];
const WAIT: Duration = Duration::from_secs(60);

const PUBLISH_EVENTS: &str = "mutation($events: [PublishEventInput!]!) { \
    publishEvents(input: {events: $events}) { accepted repeated failed \
    results { index idempotencyKey status deliveryCount message { id } error { code message } } } }";

struct Publisher {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Publisher {
    fn new(junction: &Junction, key: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            base: junction.url(""),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn graphql(&self, query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.graphql(query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    /// `POST /v1/events`: the status, the `Retry-After` header, the body.
    async fn rest(&self, key: Option<&str>, body: &str) -> (u16, Option<String>, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/events", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            status,
            retry_after,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// Sends batch `number` once, GraphQL for even numbers and REST for odd ones: `Ok` when
    /// answered (every event accepted or repeated), `Err` when the database was unavailable
    /// (after checking the error says so, retryably).
    async fn send(&self, number: usize) -> Result<(), ()> {
        if number.is_multiple_of(2) {
            let (status, body) = self
                .graphql(PUBLISH_EVENTS, json!({"events": batch(number)}))
                .await;
            assert_eq!(status, 200, "{body}");
            if let Some(error) = body["errors"].get(0) {
                assert_eq!(error["extensions"]["code"], "UNAVAILABLE", "{body}");
                assert!(error["extensions"]["retryAfter"].as_u64().unwrap() >= 1);
                assert!(body["data"].is_null(), "{body}");
                return Err(());
            }
            assert_eq!(body["data"]["publishEvents"]["failed"], 0, "{body}");
        } else {
            let (status, retry_after, answer) = self
                .rest(
                    Some(&self.key),
                    &json!({"events": batch(number)}).to_string(),
                )
                .await;
            if status == 503 {
                assert_eq!(answer["error"]["code"], "UNAVAILABLE", "{answer}");
                assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
                return Err(());
            }
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["failed"], 0, "{answer}");
        }
        Ok(())
    }

    /// Sends batch `number` until it is answered, waiting between tries as told.
    async fn send_until_answered(&self, number: usize) {
        for _ in 0..30 {
            if self.send(number).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        panic!("batch {number} was never answered");
    }

    async fn setup(&self, receivers: &[&Receiver]) {
        self.data(
            "mutation { createEventType(input: {name: \"order.created\", \
             schema: {type: \"object\", required: [\"id\"]}}) { eventType { name } } }",
            json!({}),
        )
        .await;
        for receiver in receivers {
            self.data(
                "mutation($url: String!) { createEndpoint(input: {url: $url}) { endpoint { id } } }",
                json!({"url": receiver.url()}),
            )
            .await;
        }
    }
}

fn printed_key(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("jk_live_"))
        .unwrap_or_else(|| panic!("no key in {text}"))
        .to_owned()
}

fn statuses(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

on_both_databases!(a_mixed_bulk_publish_answers_each_event);

/// One request holding good events, an unknown event type, a payload against the type's
/// schema, an invalid key, a repeat and a conflict within the batch: each is answered on its
/// own, `data` is never null, and exactly the accepted events are delivered. The REST route
/// answers the same way, sees earlier keys as repeats, and refuses what it must.
async fn a_mixed_bulk_publish_answers_each_event(db: TestDatabase) {
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), SETTINGS);
    let publisher = Publisher::new(&junction, &printed_key(&junction.stdout));
    let receiver = Receiver::ok().await;
    publisher.setup(&[&receiver]).await;

    let events = json!([
        {"eventType": "order.created", "payload": {"id": 1}, "idempotencyKey": "k1"},
        {"eventType": "no.such.type", "payload": {"id": 2}, "idempotencyKey": "k2"},
        {"eventType": "order.created", "payload": {"id": 3}},
        {"eventType": "order.created", "payload": {"no_id": 4}, "idempotencyKey": "k4"},
        {"eventType": "order.created", "payload": {"id": 5}, "idempotencyKey": ""},
        {"eventType": "order.created", "payload": {"id": 1}, "idempotencyKey": "k1"},
        {"eventType": "order.created", "payload": {"id": 99}, "idempotencyKey": "k1"},
        {"eventType": "order.created", "payload": {"id": 8}, "idempotencyKey": "k8"},
    ]);
    let (status, body) = publisher
        .graphql(PUBLISH_EVENTS, json!({"events": events}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let payload = &body["data"]["publishEvents"];
    assert_eq!(
        statuses(&payload["results"]),
        [
            "ACCEPTED", "FAILED", "ACCEPTED", "FAILED", "FAILED", "REPEATED", "FAILED", "ACCEPTED"
        ],
        "{payload}"
    );
    assert_eq!(
        (
            &payload["accepted"],
            &payload["repeated"],
            &payload["failed"]
        ),
        (&json!(3), &json!(1), &json!(4))
    );
    let results = payload["results"].as_array().unwrap();
    let code = |i: usize| results[i]["error"]["code"].as_str().unwrap().to_owned();
    assert_eq!(code(1), "BAD_USER_INPUT");
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no.such.type")
    );
    assert_eq!(code(3), "BAD_USER_INPUT");
    assert_eq!(code(4), "BAD_USER_INPUT");
    assert_eq!(code(6), "CONFLICT");
    assert_eq!(results[5]["message"]["id"], results[0]["message"]["id"]);
    assert_eq!(results[0]["deliveryCount"], 1);
    assert_eq!(results[5]["deliveryCount"], 0);
    assert!(results[1]["message"].is_null());
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i);
    }

    // The same through REST: earlier keys are repeats, new ones accepted, bad ones failed.
    let (status, retry_after, answer) = publisher
        .rest(
            Some(&publisher.key),
            &json!({"events": [
                {"eventType": "order.created", "payload": {"id": 1}, "idempotencyKey": "k1"},
                {"eventType": "order.created", "payload": {"id": 9}, "idempotencyKey": "k9"},
                {"eventType": "order.created", "payload": {"id": 88}, "idempotencyKey": "k8"},
                {"eventType": "nope", "payload": {}},
            ]})
            .to_string(),
        )
        .await;
    assert_eq!((status, retry_after), (200, None), "{answer}");
    assert_eq!(
        statuses(&answer["results"]),
        ["repeated", "accepted", "failed", "failed"],
        "{answer}"
    );
    assert_eq!(
        answer["results"][2]["error"]["code"], "CONFLICT",
        "another payload, same key"
    );
    assert_eq!(
        answer["results"][0]["message"]["id"],
        results[0]["message"]["id"]
    );

    // Exactly the accepted events arrive: ids 1, 3, 8 and 9, once each.
    let arrived = receiver.wait_for(4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<i64> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["data"]["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 3, 8, 9], "{} requests", arrived.len());

    // What the REST route refuses, and how.
    let (status, _, answer) = publisher.rest(None, r#"{"events": []}"#).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _, answer) = publisher.rest(Some(&publisher.key), "{not json").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "BAD_USER_INPUT");
    let (status, _, answer) = publisher
        .rest(Some(&publisher.key), r#"{"events": []}"#)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 to 1000")
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|n| json!({"eventType": "order.created", "payload": {"id": n}}))
        .collect();
    let (status, _, _) = publisher
        .rest(
            Some(&publisher.key),
            &json!({"events": too_many}).to_string(),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = publisher
        .graphql(PUBLISH_EVENTS, json!({"events": []}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );

    // The route is described, to anyone.
    let document: Value = support::http_get(junction.url("/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/v1/events"]["post"].is_object());
}

/// Events `batch * 50 .. batch * 50 + 50`, each with its own idempotency key.
fn batch(number: usize) -> Value {
    let events: Vec<Value> = (number * 50..number * 50 + 50)
        .map(|n| {
            json!({"eventType": "order.created", "payload": {"id": n}, "idempotencyKey": format!("order-{n}")})
        })
        .collect();
    Value::Array(events)
}

/// PostgreSQL, a server of the test's own, stops (at once, as a crash) while a publisher sends
/// batches through GraphQL and REST. Requests meeting the outage are answered `UNAVAILABLE`
/// with `retryAfter` (503 and `Retry-After` on REST), never a bare internal error; the
/// publisher sends each failed batch again with the same keys until it is answered, as the
/// README tells publishers to. Every event then reaches each endpoint, as one delivery: one
/// `webhook-id` per event and endpoint, whatever was committed before a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_publish_is_unavailable_and_retries_deliver_each_event_once() {
    let server = Arc::new(PostgresServer::start());
    let mut settings = SETTINGS.to_vec();
    // A publish waits this long for a connection before it is answered UNAVAILABLE.
    settings.push(("JUNCTION_DATABASE_CONNECT_TIMEOUT", "2s"));
    // A delivery leased when the database stopped cannot be settled; it is sent again when its
    // lease runs out, so the lease is made short enough to end within the wait below.
    settings.push(("JUNCTION_DISPATCHER_REQUEST_TIMEOUT", "2s"));
    settings.push(("JUNCTION_DISPATCHER_LEASE", "5s"));
    let dir = tempfile::TempDir::new().unwrap();
    let url = server.url();
    let junction = Junction::serve_with(dir.path(), Some(&url), &settings);
    let publisher = Publisher::new(&junction, &printed_key(&junction.stdout));
    let first = Receiver::ok().await;
    let second = Receiver::ok().await;
    publisher.setup(&[&first, &second]).await;

    const BATCHES: usize = 8;
    for number in 0..3 {
        publisher.send_until_answered(number).await;
    }
    // The server stops while a batch is on its way: that batch is answered, or UNAVAILABLE.
    let halting = {
        let server = Arc::clone(&server);
        tokio::task::spawn_blocking(move || server.halt())
    };
    let during = publisher.send(3).await;
    halting.await.unwrap();
    let mut unavailable_rest = usize::from(during.is_err());
    // Now down: both doors answer UNAVAILABLE, retryable.
    let unavailable_graphql = usize::from(publisher.send(4).await.is_err());
    if publisher.send(5).await.is_err() {
        unavailable_rest += 1;
    }
    server.resume();
    // The publisher sends every batch not answered again, with the same keys.
    for number in 3..BATCHES {
        publisher.send_until_answered(number).await;
    }
    assert_eq!(unavailable_graphql, 1, "GraphQL publishes met the outage");
    assert!(unavailable_rest >= 1, "REST publishes met the outage");
    // Everything committed before the outage is a repeat when sent again.
    let (status, _, answer) = publisher
        .rest(
            Some(&publisher.key),
            &json!({"events": batch(0)}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["repeated"], 50, "{answer}");

    let events = BATCHES * 50;
    for receiver in [&first, &second] {
        // At least once: a delivery sent again (its lease ran out while the database was
        // down) arrives twice under one webhook-id, so distinct events are counted.
        let deadline = std::time::Instant::now() + WAIT;
        let mut deliveries: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        loop {
            deliveries.clear();
            for request in receiver.requests() {
                deliveries
                    .entry(request.json()["data"]["id"].as_i64().unwrap())
                    .or_default()
                    .insert(request.header("webhook-id"));
            }
            if deliveries.len() >= events || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(deliveries.len(), events, "every event arrived");
        assert!(
            deliveries.values().all(|ids| ids.len() == 1),
            "one delivery (one webhook-id) per event and endpoint"
        );
    }
    let (status, _) = junction.stop_with("TERM");
    assert!(status.success(), "{status}");
}

/// The first start finds its port taken: it exits with an error before touching the
/// database, so no tenant is created and no key printed; the next start prints the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_that_cannot_listen_spends_nothing() {
    let db = TestDatabase::sqlite().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let failed = cli(
        db.dir.path(),
        Some(&db.url),
        &["serve", "--listen", &address],
    );
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!stdout.contains("jk_live_"), "no key printed: {stdout}");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    let listed = cli(db.dir.path(), Some(&db.url), &["tenant", "list"]);
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains("default"),
        "no tenant created: {listed:?}"
    );
    drop(taken);

    let junction = Junction::serve(db.dir.path(), Some(&db.url));
    let key = printed_key(&junction.stdout);
    Publisher::new(&junction, &key).setup(&[]).await;
}
