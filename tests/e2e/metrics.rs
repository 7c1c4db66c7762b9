//! Prometheus metrics as an operator scrapes them: `junction serve` runs named GraphQL
//! operations (some refused, one answered with errors) and delivers webhooks to a receiver
//! that takes them and one that fails; `/metrics` on the router's port then holds the counts
//! that run implies, and `promtool check metrics` passes on it. A `junction dispatcher` serves
//! its metrics on an address of its own, behind a bearer token. On SQLite and PostgreSQL.
//! `junction gateway` in front of subgraphs it did not write counts every fetch they saw.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::graphql_ws::{Received, TRANSPORT_WS, WsClient};
use support::receiver::{Answer, Receiver};
use support::{Junction, TestDatabase, cli};

const SETTINGS: &[(&str, &str)] = &[
    ("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", "[\"127.0.0.1/32\"]"),
    ("JUNCTION_DISPATCHER_POLL_INTERVAL", "20ms"),
    // A failed attempt waits a minute for its retry: the delivery stays pending meanwhile.
    ("JUNCTION_DISPATCHER_RETRY_SCHEDULE", "[\"60s\"]"),
    ("JUNCTION_METRICS_QUEUE_REFRESH", "100ms"),
];

on_both_databases!(
    a_scripted_run_shows_in_the_router_and_dispatcher_metrics,
    the_dispatcher_serves_metrics_on_its_own_address_behind_a_token,
);

/// The stand-alone router counts each fetch the subgraphs received, by subgraph, and the
/// request its rate limit refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_counts_every_subgraph_fetch_and_rate_limit_refusal() {
    let subgraphs = support::federation::Subgraphs::start().await;
    let (gateway, _dir) = Junction::gateway(
        &subgraphs.supergraph(),
        &[
            ("JUNCTION_GATEWAY__RATE_LIMIT__REQUESTS_PER_SECOND", "0.01"),
            ("JUNCTION_GATEWAY__RATE_LIMIT__BURST", "2"),
        ],
    );
    let query = "query Deep { topProducts { name reviews { body author { name } } } }";
    for _ in 0..2 {
        let (status, body) = graphql(&gateway, None, query, json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
    }
    let (status, body) = graphql(&gateway, None, query, json!({})).await;
    assert_eq!(status, 429, "{body}");
    let text = scrape(&gateway.url("/metrics"), None).await;
    expect(
        &text,
        "junction_router_requests_total{operation_name=\"Deep\",operation_type=\"query\",outcome=\"ok\"}",
        2.0,
    );
    // Refused before its operation was read.
    expect(
        &text,
        "junction_router_requests_total{operation_name=\"\",operation_type=\"unknown\",outcome=\"refused\"}",
        1.0,
    );
    expect(
        &text,
        "junction_router_rate_limited_total{door=\"graphql\"}",
        1.0,
    );
    expect(&text, "junction_router_overhead_seconds_count", 2.0);
    let fetched: f64 = ["accounts", "products", "inventory", "reviews"]
        .iter()
        .filter_map(|name| {
            value(
                &text,
                &format!(
                    "junction_router_subgraph_requests_total{{subgraph=\"{name}\",outcome=\"ok\"}}"
                ),
            )
        })
        .sum();
    assert_eq!(fetched, subgraphs.total_requests() as f64, "{text}");
    assert!(fetched >= 6.0, "three fetches a request: {text}");
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn graphql(
    junction: &Junction,
    key: Option<&str>,
    query: &str,
    variables: Value,
) -> (u16, Value) {
    let mut request = http()
        .post(junction.url("/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn ok(junction: &Junction, key: &str, query: &str, variables: Value) -> Value {
    let (status, body) = graphql(junction, Some(key), query, variables).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

/// `/metrics` at `url`, checked by promtool.
async fn scrape(url: &str, token: Option<&str>) -> String {
    let mut request = http().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    promtool_check(&text);
    text
}

/// `promtool check metrics` on `text`: the Prometheus project's own linter for the format.
/// Missing, the test fails: `tests/run` installs it (Debian's `prometheus` package).
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed (apt-get install prometheus; tests/run installs it): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The value of the series `series` (`name{labels}` as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn expect(text: &str, series: &str, expected: f64) {
    assert_eq!(value(text, series), Some(expected), "{series} in:\n{text}");
}

/// Scrapes until `ready` holds of the text, for up to 20 s.
async fn scrape_until(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(url, None).await;
        if ready(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never ready:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn printed_key(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("jk_live_"))
        .unwrap_or_else(|| panic!("no key in {text}"))
        .to_owned()
}

async fn a_scripted_run_shows_in_the_router_and_dispatcher_metrics(db: TestDatabase) {
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), SETTINGS);
    let key = printed_key(&junction.stdout);
    let metrics = junction.url("/metrics");
    let taking = Receiver::ok().await;
    let failing = Receiver::start(&[], Answer::Status(500)).await;

    ok(
        &junction,
        &key,
        "mutation CreateType { createEventType(input: {name: \"order.created\"}) { eventType { name } } }",
        json!({}),
    )
    .await;
    let add = "mutation AddEndpoint($url: String!) { createEndpoint(input: {url: $url}) { endpoint { id } } }";
    let taking_id = ok(&junction, &key, add, json!({"url": taking.url()})).await["createEndpoint"]
        ["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Publishing goes to both endpoints: only after this one is created.
    let publish = "mutation Publish($type: String!) { publishEvent(input: {eventType: $type, payload: {n: 1}}) { deliveryCount } }";
    let published = ok(&junction, &key, publish, json!({"type": "order.created"})).await;
    assert_eq!(published["publishEvent"]["deliveryCount"], 1);
    let failing_id =
        ok(&junction, &key, add, json!({"url": failing.url()})).await["createEndpoint"]["endpoint"]
            ["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let published = ok(&junction, &key, publish, json!({"type": "order.created"})).await;
    assert_eq!(published["publishEvent"]["deliveryCount"], 2);
    // The subgraph answers an unknown event type with an error.
    let (status, body) = graphql(&junction, Some(&key), publish, json!({"type": "nope"})).await;
    assert_eq!(status, 200);
    assert!(body["errors"].is_array(), "{body}");
    for _ in 0..3 {
        ok(
            &junction,
            &key,
            "query Endpoints { endpoints(first: 1) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    }
    // A REST route: the description of the events API, passed through to the webhooks
    // subgraph.
    let openapi = http()
        .get(junction.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(openapi.status(), 200);
    // Refused before parsing: no credentials, and not GraphQL.
    let (status, _) = graphql(
        &junction,
        None,
        "query Endpoints { endpoints { edges { node { id } } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = graphql(&junction, Some(&key), "query Broken {", json!({})).await;
    assert_eq!(status, 400);

    taking.wait_for(2, Duration::from_secs(20)).await;
    failing.wait_for(1, Duration::from_secs(20)).await;

    // Over a WebSocket: a query, a subscription left open, and an operation that is not GraphQL.
    let auth = json!({"Authorization": format!("Bearer {key}")});
    let mut socket = WsClient::connect(&junction.url("/graphql"), TRANSPORT_WS, auth).await;
    socket
        .subscribe(
            "q",
            "query Ws { endpoints(first: 1) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    match socket.receive().await {
        Received::Message(m) => assert_eq!(m["type"], "next", "{m}"),
        other => panic!("expected the query's result, got {other:?}"),
    }
    socket
        .subscribe(
            "s",
            "subscription Live { deliveryAttempts { status } }",
            json!({}),
        )
        .await;
    socket.subscribe("bad", "query Broken {", json!({})).await;

    let text = scrape_until(&metrics, |text| {
        value(text, "junction_router_subscriptions_open") == Some(1.0)
            && value(text, "junction_router_requests_total{operation_name=\"Live\",operation_type=\"subscription\",outcome=\"ok\"}") == Some(1.0)
            && value(text, "junction_router_requests_total{operation_name=\"\",operation_type=\"unknown\",outcome=\"refused\"}") == Some(3.0)
            &&
        value(
            text,
            "junction_dispatcher_attempts_total{outcome=\"retrying\",status_class=\"5xx\"}",
        ) == Some(1.0)
            && value(
                text,
                "junction_dispatcher_attempts_total{outcome=\"succeeded\",status_class=\"2xx\"}",
            ) == Some(2.0)
            && value(text, "junction_dispatcher_retrying") == Some(1.0)
    })
    .await;

    // Requests by operation, type and outcome.
    let requests = |name: &str, kind: &str, outcome: &str| {
        format!(
            "junction_router_requests_total{{operation_name=\"{name}\",operation_type=\"{kind}\",outcome=\"{outcome}\"}}"
        )
    };
    expect(&text, &requests("CreateType", "mutation", "ok"), 1.0);
    expect(&text, &requests("AddEndpoint", "mutation", "ok"), 2.0);
    expect(&text, &requests("Publish", "mutation", "ok"), 2.0);
    expect(&text, &requests("Publish", "mutation", "errors"), 1.0);
    expect(&text, &requests("Endpoints", "query", "ok"), 3.0);
    expect(&text, &requests("Ws", "query", "ok"), 1.0);
    expect(&text, &requests("", "unknown", "refused"), 3.0);
    expect(
        &text,
        "junction_router_request_duration_seconds_count{operation_name=\"Publish\",operation_type=\"mutation\"}",
        3.0,
    );
    // The overhead of every query and mutation that ran: 1 + 2 + 3 + 3 + 1.
    expect(&text, "junction_router_overhead_seconds_count", 10.0);
    let overhead = value(&text, "junction_router_overhead_seconds_sum").unwrap();
    let latency: f64 = text
        .lines()
        .filter(|l| l.starts_with("junction_router_request_duration_seconds_sum{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        overhead > 0.0 && overhead < latency,
        "{overhead} of {latency}"
    );
    // Each query and mutation that ran fetched once from the webhooks subgraph; the failed
    // publish came back with an error. (The subscription's upstream is a WebSocket.)
    expect(
        &text,
        "junction_router_subgraph_requests_total{subgraph=\"webhooks\",outcome=\"ok\"}",
        9.0,
    );
    expect(
        &text,
        "junction_router_subgraph_requests_total{subgraph=\"webhooks\",outcome=\"errors\"}",
        1.0,
    );
    expect(
        &text,
        "junction_router_subgraph_request_duration_seconds_count{subgraph=\"webhooks\"}",
        10.0,
    );
    // One plan per distinct operation; every repeat from the cache.
    expect(
        &text,
        "junction_router_plan_cache_lookups_total{result=\"miss\"}",
        6.0,
    );
    expect(
        &text,
        "junction_router_plan_cache_lookups_total{result=\"hit\"}",
        5.0,
    );

    // Deliveries: two taken, one failed and pending for its retry, per endpoint too.
    expect(
        &text,
        &format!(
            "junction_dispatcher_endpoint_attempts_total{{endpoint=\"{taking_id}\",result=\"succeeded\"}}"
        ),
        2.0,
    );
    expect(
        &text,
        &format!(
            "junction_dispatcher_endpoint_attempts_total{{endpoint=\"{failing_id}\",result=\"failed\"}}"
        ),
        1.0,
    );
    expect(
        &text,
        "junction_dispatcher_attempt_duration_seconds_count{outcome=\"succeeded\"}",
        2.0,
    );
    expect(&text, "junction_dispatcher_queue_depth", 1.0);
    expect(&text, "junction_dispatcher_dead_letters", 0.0);
    // Its retry is a minute away: not due, so nothing is late.
    expect(&text, "junction_dispatcher_queue_oldest_age_seconds", 0.0);

    // Closing the socket ends its subscription.
    socket.close().await;
    scrape_until(&metrics, |text| {
        value(text, "junction_router_subscriptions_open") == Some(0.0)
    })
    .await;

    // The REST request, by route, upstream (the subgraph's loopback port) and status class.
    let rest: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("junction_router_rest_requests_total{route=\"junction-openapi\",upstream=\"127.0.0.1:"))
        .filter(|l| l.ends_with(",status_class=\"2xx\"} 1"))
        .collect();
    assert_eq!(rest.len(), 1, "{text}");

    // The process and the build.
    expect(&text, "junction_build_info{version=\"0.1.0\"}", 1.0);
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            value(&text, name).is_some_and(|v| v > 0.0),
            "{name}:\n{text}"
        );
    }
}

/// `junction dispatcher` with `[metrics] listen` and a token: its own address, which refuses a
/// scrape without the token.
async fn the_dispatcher_serves_metrics_on_its_own_address_behind_a_token(db: TestDatabase) {
    let migrated = cli(db.dir.path(), Some(&db.url), &["migrate", "up"]);
    assert!(migrated.status.success(), "{migrated:?}");
    let mut command = support::process::command(db.dir.path());
    command
        .args(["dispatcher", "--log-format", "json"])
        .env("JUNCTION_DATABASE_URL", &db.url)
        .env("JUNCTION_METRICS_LISTEN", "127.0.0.1:0")
        .env("JUNCTION_METRICS_TOKEN", "scrape-me")
        .env("JUNCTION_METRICS_QUEUE_REFRESH", "100ms");
    let dispatcher = Junction::start(command, "serving /metrics");
    let url = dispatcher.url("/metrics");

    let refused = http().get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer realm=\"metrics\""
    );
    let wrong = http().get(&url).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = scrape(&url, Some("scrape-me")).await;
        if value(&text, "junction_dispatcher_queue_depth").is_some() {
            break text;
        }
        assert!(Instant::now() < deadline, "no queue gauges:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    expect(&text, "junction_dispatcher_queue_depth", 0.0);
    expect(&text, "junction_dispatcher_retrying", 0.0);
    expect(&text, "junction_build_info{version=\"0.1.0\"}", 1.0);
    // A dispatcher runs no router: none of its series.
    assert!(!text.contains("junction_router_requests_total{"), "{text}");
}
