//! Manifest connectors against a real local HTTP source, one per pagination style and kind of
//! authentication, each through the conformance kit; then the failures an engine must be able
//! to tell apart.

mod source;

use std::time::Duration;

use futures_util::StreamExt;
use junction_connector_sdk::conformance::{Case, RateCheck, run};
use junction_connector_sdk::http::{AddressPolicy, HttpClient, HttpOptions, RateLimit};
use junction_connector_sdk::{
    Connection, Connector, Credentials, ErrorKind, Manifest, ManifestConnector, Message, State,
};
use serde_json::{Value, json};
use source::{Chaos, Source};

/// The parts every test manifest shares: the source, its schema, quick retries, a rate cap.
fn manifest(auth: &str, stream: &str) -> Manifest {
    let text = format!(
        r#"
name: test-source
version: 0.1.0
description: The tests' local source.
config_schema:
  type: object
  required: [base_url]
  properties:
    base_url: {{type: string}}
    page_size: {{type: integer, default: 10}}
base_url: "{{{{ config.base_url }}}}/v1"
headers:
  Accept: application/json
{auth}
rate_limit:
  requests_per_second: 40
  burst: 4
retry:
  max_retries: 6
  initial_backoff: 10ms
  max_backoff: 100ms
streams:
  - name: items
    primary_key: id
    schema:
      type: object
      required: [id, created, name, amount]
      additionalProperties: false
      properties:
        id: {{type: string}}
        created: {{type: integer}}
        name: {{type: string}}
        amount: {{type: integer, minimum: 0}}
{stream}
"#
    );
    Manifest::parse("test-source.yaml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const BEARER: &str = r#"auth:
  bearer:
    token: "{{ credentials.token }}""#;

const INCREMENTAL: &str = r#"    incremental:
      cursor_field: created
      param: since
      format: unix_seconds"#;

fn client() -> HttpClient {
    HttpClient::new(HttpOptions {
        policy: AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
        ..HttpOptions::default()
    })
    .unwrap()
}

fn connection(source: &Source, credentials: &[(&str, &str)]) -> Connection {
    Connection::new(
        json!({"base_url": source.base_url()}),
        credentials.iter().copied().collect::<Credentials>(),
    )
}

/// The kit on one style, with 500s and 429s now and then.
async fn conformance(auth: &str, stream: &str, good: &[(&str, &str)], bad: &[(&str, &str)]) {
    let source = Source::start(Chaos {
        error_every: 7,
        limit_every: 10,
    })
    .await;
    let connector = ManifestConnector::new(manifest(auth, stream), &client());
    let report = run(&Case::new(&connector, connection(&source, good))
        .bad_credentials(connection(&source, bad))
        .expect("items", source::RECORDS)
        .rate_limit(RateCheck {
            limit: RateLimit::new(40.0, 4).unwrap(),
            requests: source.request_log(),
        }))
    .await;
    println!("{report}");
    report.assert_passed();
    // The chaos happened, and was lived through.
    let seen = source.seen();
    assert!(seen.iter().all(|s| s.route == seen[0].route));
    assert!(seen.iter().any(|s| s.status == 500), "no 500 was served");
    assert!(seen.iter().any(|s| s.status == 429), "no 429 was served");
    honoured_retry_after(&seen);
}

/// After each 429, the next request came no sooner than the source asked.
fn honoured_retry_after(seen: &[source::Seen]) {
    for (i, answer) in seen.iter().enumerate() {
        let (Some(wait), Some(next)) = (answer.retry_after, seen.get(i + 1)) else {
            continue;
        };
        let waited = next.at.duration_since(answer.at);
        // The kit reads one stream at a time, so the next request is the retry.
        assert!(
            waited + Duration::from_millis(50) >= wait,
            "retried {waited:?} after a 429 that asked for {wait:?}"
        );
    }
}

#[tokio::test]
async fn cursor_in_the_body_with_bearer_auth() {
    let stream = format!(
        r#"    path: /cursor/items
    records: $.data
    pagination:
      cursor:
        param: starting_after
        from: {{last_record: id}}
        has_more: $.has_more
        limit_param: limit
        limit: 10
{INCREMENTAL}"#
    );
    conformance(
        BEARER,
        &stream,
        &[("token", source::BEARER)],
        &[("token", "revoked")],
    )
    .await;
}

#[tokio::test]
async fn link_header_with_an_api_key_header() {
    let auth = r#"auth:
  api_key:
    in: header
    name: X-Api-Key
    value: "{{ credentials.api_key }}""#;
    let stream = format!(
        r#"    path: /link/items
    params:
      per_page: "{{{{ config.page_size }}}}"
    pagination: link_header
{INCREMENTAL}"#
    );
    conformance(
        auth,
        &stream,
        &[("api_key", source::API_KEY)],
        &[("api_key", "nope")],
    )
    .await;
}

#[tokio::test]
async fn offset_and_limit_with_basic_auth_filtering_what_the_source_does_not() {
    let auth = r#"auth:
  basic:
    username: "{{ credentials.username }}"
    password: "{{ credentials.password }}""#;
    let stream = format!(
        r#"    path: /offset/items
    records: $.results
    pagination:
      offset:
        offset_param: offset
        limit_param: limit
        limit: 10
{INCREMENTAL}"#
    );
    conformance(
        auth,
        &stream,
        &[
            ("username", source::BASIC_USER),
            ("password", source::BASIC_PASSWORD),
        ],
        &[("username", source::BASIC_USER), ("password", "wrong")],
    )
    .await;
}

#[tokio::test]
async fn page_numbers_with_an_api_key_in_the_query() {
    let auth = r#"auth:
  api_key:
    in: query
    name: api_key
    value: "{{ credentials.api_key }}""#;
    let stream = format!(
        r#"    path: /page/items
    records: $.items
    pagination:
      page_number:
        page_param: page
        size_param: size
        size: 10
{INCREMENTAL}"#
    );
    conformance(
        auth,
        &stream,
        &[("api_key", source::API_KEY)],
        &[("api_key", "nope")],
    )
    .await;
}

#[tokio::test]
async fn next_url_in_the_body() {
    let stream = format!(
        r#"    path: /next/items
    records: $.records
    pagination:
      next_url:
        path: $.links.next
{INCREMENTAL}"#
    );
    conformance(
        BEARER,
        &stream,
        &[("token", source::BEARER)],
        &[("token", "revoked")],
    )
    .await;
}

async fn read_all(
    connector: &dyn Connector,
    connection: &Connection,
    state: Option<State>,
) -> (Vec<Value>, State) {
    let mut records = Vec::new();
    let mut last = None;
    let mut messages = connector.read(connection, "items", state);
    while let Some(message) = messages.next().await {
        match message.unwrap() {
            Message::Record(record) => records.push(record.data),
            Message::Checkpoint(state) => last = Some(state),
        }
    }
    (records, last.expect("a read ends with a checkpoint"))
}

#[tokio::test]
async fn the_next_sync_reads_only_what_was_added_once_even_on_the_boundary_second() {
    let source = Source::start(Chaos::default()).await;
    let stream = format!(
        r#"    path: /cursor/items
    records: $.data
    pagination:
      cursor:
        param: starting_after
        from: {{last_record: id}}
        has_more: $.has_more
        limit_param: limit
        limit: 10
{INCREMENTAL}"#
    );
    let connector = ManifestConnector::new(manifest(BEARER, &stream), &client());
    let connection = connection(&source, &[("token", source::BEARER)]);
    let (first, state) = read_all(&connector, &connection, None).await;
    assert_eq!(first.len(), source::RECORDS);
    let (nothing, same) = read_all(&connector, &connection, Some(state.clone())).await;
    assert!(nothing.is_empty(), "{nothing:?}");
    assert_eq!(same, state);

    // The first added record is created in the same second as the newest one read: the
    // inclusive filter sends that second's records again, and only the new one comes out.
    let added = source.add(4);
    let (second, _) = read_all(&connector, &connection, Some(state)).await;
    assert_eq!(second, added);
    // The filter reached the source: the second sync did not page through everything.
    let cursor_requests = source.seen().len();
    assert!(
        cursor_requests <= 6 + 1 + 1 + 1,
        "{cursor_requests} requests"
    );
}

#[tokio::test]
async fn the_lookback_window_reads_the_recent_past_again() {
    let source = Source::start(Chaos::default()).await;
    let stream = r#"    path: /next/items
    records: $.records
    pagination:
      next_url:
        path: $.links.next
    incremental:
      cursor_field: created
      param: since
      format: unix_seconds
      lookback: 2s"#;
    let connector = ManifestConnector::new(manifest(BEARER, stream), &client());
    let connection = connection(&source, &[("token", source::BEARER)]);
    let (_, state) = read_all(&connector, &connection, None).await;
    let (again, _) = read_all(&connector, &connection, Some(state)).await;
    // The newest second holds records 51 and 52; two seconds back adds 45 to 50. Those at the
    // newest second were read at its end already and are not sent again.
    let ids: Vec<&str> = again.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "it_0045", "it_0046", "it_0047", "it_0048", "it_0049", "it_0050"
        ]
    );
}

#[tokio::test]
async fn classified_failures() {
    let source = Source::start(Chaos::default()).await;

    // A host Junction may not reach: refused before anything is sent.
    let strict = HttpClient::new(HttpOptions::default()).unwrap();
    let stream = "    path: /cursor/items\n    records: $.data";
    let guarded = ManifestConnector::new(manifest(BEARER, stream), &strict);
    let good = connection(&source, &[("token", source::BEARER)]);
    let refused = guarded.check(&good).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
    assert!(refused.message().contains("loopback"), "{refused}");
    let by_name = Connection::new(
        json!({"base_url": format!("http://localhost:{}", source.addr.port())}),
        good.credentials.clone(),
    );
    let refused = guarded.check(&by_name).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
    assert!(refused.message().contains("ssrf"), "{refused}");
    assert!(source.seen().is_empty());

    // Missing configuration, a missing credential, an unknown stream.
    let connector = ManifestConnector::new(manifest(BEARER, stream), &client());
    let error = connector
        .check(&Connection::new(json!({}), good.credentials.clone()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("base_url"), "{error}");
    let error = connector
        .check(&connection(&source, &[]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Credentials, "{error}");
    assert!(error.message().contains("credentials.token"), "{error}");
    let mut unknown = connector.read(&good, "nope", None);
    let error = unknown.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(unknown.next().await.is_none());

    // Not JSON: the source's bug, with what it sent.
    let garbage = ManifestConnector::new(manifest("", "    path: /garbage"), &client());
    let error = garbage.check(&good).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Source, "{error}");
    assert!(error.message().contains("surprise"), "{error}");

    // A source that fails every time: retried, then transient.
    let broken = Source::start(Chaos {
        error_every: 1,
        limit_every: 0,
    })
    .await;
    let error = connector
        .check(&connection(&broken, &[("token", source::BEARER)]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient, "{error}");
    assert_eq!(broken.seen().len(), 7, "one try and six retries");

    // A state from somewhere else is refused, not misread.
    let mut foreign = connector.read(&good, "items", Some(State(json!({"bookmark": 3}))));
    let error = foreign.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
}

#[tokio::test]
async fn a_rate_limit_longer_than_a_read_waits_pauses_the_connection() {
    let source = Source::start(Chaos {
        error_every: 0,
        limit_every: 1,
    })
    .await;
    let text = manifest(BEARER, "    path: /cursor/items\n    records: $.data");
    let mut short = text.clone();
    short.retry.max_retry_after = Duration::from_millis(500);
    let connector = ManifestConnector::new(short, &client());
    let error = connector
        .check(&connection(&source, &[("token", source::BEARER)]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited, "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(source.seen().len(), 1);
}
