//! The playground in a real headless Chromium against `junction serve`, as a first visit: the
//! page loads from the binary alone, asks for an API key before it sends anything, fetches the
//! schema once it has one, runs its default document with one click, keeps a live
//! subscription's events as a list over WebSocket, and requests nothing from anywhere but this
//! router.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::browser::Browser;
use support::receiver::Receiver;
use support::{Junction, TestDatabase};

const SETTINGS: &[(&str, &str)] = &[
    ("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", "[\"127.0.0.1/32\"]"),
    ("JUNCTION_DISPATCHER_POLL_INTERVAL", "20ms"),
];

async fn graphql(junction: &Junction, key: &str, query: &str) -> Value {
    let body: Value = reqwest::Client::new()
        .post(junction.url("/graphql"))
        .bearer_auth(key)
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

/// The text GraphiQL shows in its result pane once it contains `needle`; "" until then.
fn result_containing(needle: &str) -> String {
    format!(
        "(() => {{ const pane = document.querySelector('.graphiql-response .CodeMirror'); \
         const text = pane && pane.CodeMirror ? pane.CodeMirror.getValue() : ''; \
         return text.includes({needle:?}) ? text : ''; }})()"
    )
}

/// The result pane's text once it lists at least `count` subscription events; "" until then.
fn events_shown(count: usize) -> String {
    format!(
        "(() => {{ const pane = document.querySelector('.graphiql-response .CodeMirror'); \
         const text = pane && pane.CodeMirror ? pane.CodeMirror.getValue() : ''; \
         try {{ return (JSON.parse(text).events || []).length >= {count} ? text : ''; }} \
         catch (e) {{ return ''; }} }})()"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_runs_queries_and_subscriptions_offline() {
    let db = TestDatabase::sqlite().await;
    let junction = Junction::serve_with(db.dir.path(), Some(&db.url), SETTINGS);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = junction
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("jk_live_"))
        .expect("the admin key is printed")
        .to_owned();
    let receiver = Receiver::ok().await;
    graphql(
        &junction,
        &key,
        "mutation { createEventType(input: {name: \"order.created\"}) { eventType { name } } }",
    )
    .await;
    graphql(
        &junction,
        &key,
        &format!(
            "mutation {{ createEndpoint(input: {{url: {:?}}}) {{ endpoint {{ id }} }} }}",
            receiver.url()
        ),
    )
    .await;

    let mut browser = Browser::launch().await;
    // A first visit: the page asks for a key and sends nothing before it has one.
    browser.navigate(&junction.url("/playground")).await;
    browser
        .wait_for("!!document.querySelector('.key-form input')")
        .await;
    let graphql_url = junction.url("/graphql");
    assert!(
        !browser
            .requested_urls()
            .iter()
            .any(|u| u.starts_with(&graphql_url)),
        "nothing is asked of the API without a key: {:?}",
        browser.requested_urls()
    );
    browser
        .evaluate(&format!(
            "document.querySelector('.key-form input').value = {key:?}; \
             document.querySelector('.key-form').requestSubmit(); true"
        ))
        .await;
    browser
        .wait_for("!!document.querySelector('.graphiql-execute-button')")
        .await;
    // The schema is fetched with the key as soon as it is entered: the docs explorer knows
    // the API's types.
    browser
        .wait_for(&format!(
            "performance.getEntriesByType('resource').some(e => e.name.startsWith({graphql_url:?}))"
        ))
        .await;
    // The default document is one operation: one click runs it.
    browser
        .evaluate("document.querySelector('.graphiql-execute-button').click(); true")
        .await;
    let shown = browser.wait_for(&result_containing(&receiver.url())).await;
    let shown: Value = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    assert!(shown.get("errors").is_none(), "{shown}");
    let edges = shown["data"]["endpoints"]["edges"]
        .as_array()
        .expect("edges");
    assert_eq!(edges.len(), 1, "{shown}");
    assert_eq!(edges[0]["node"]["url"], json!(receiver.url()));
    assert!(
        edges[0]["node"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );

    // A subscription from the page: attempt events stream in over the router's WebSocket.
    browser
        .evaluate(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(\
             'subscription { deliveryAttempts { status attempt { statusCode endpoint { url } } } }'); \
             document.querySelector('.graphiql-execute-button').click(); true",
        )
        .await;
    let mut shown = Value::Null;
    for _ in 0..20 {
        graphql(
            &junction,
            &key,
            "mutation { publishEvent(input: {eventType: \"order.created\", payload: {n: 1}}) { deliveryCount } }",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        shown = browser.evaluate(&events_shown(2)).await;
        if shown != json!("") {
            break;
        }
    }
    // Every event stays on screen, newest first, not only the latest.
    if shown == json!("") {
        let pane = browser.evaluate(&result_containing("")).await;
        panic!("no two events shown; the pane holds: {pane}");
    }
    let shown: Value = serde_json::from_str(shown.as_str().expect("live events shown"))
        .expect("the result pane holds JSON");
    let events = shown["events"].as_array().expect("a list of events");
    assert!(events.len() >= 2, "{shown}");
    for event in events {
        assert_eq!(
            event["data"]["deliveryAttempts"],
            json!({"status": "SUCCEEDED", "attempt": {"statusCode": 200, "endpoint": {"url": receiver.url()}}})
        );
    }

    // Nothing left the machine: every request went to this router.
    let origin = junction.url("");
    let socket_origin = origin.replacen("http://", "ws://", 1);
    let requested = browser.requested_urls();
    assert!(
        requested.iter().any(|u| u.starts_with(&socket_origin)),
        "the subscription used a WebSocket: {requested:?}"
    );
    for url in &requested {
        assert!(
            url.starts_with(&origin) || url.starts_with(&socket_origin) || url.starts_with("data:"),
            "the page requested {url}"
        );
    }
    assert_eq!(browser.page_errors(), Vec::<Value>::new());
}
