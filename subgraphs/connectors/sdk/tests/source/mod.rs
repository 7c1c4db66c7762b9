//! A real HTTP source for the tests, on 127.0.0.1 and a port the system picks: paginated JSON
//! in each pagination style, each route behind another kind of authentication, a `since`
//! filter, and (when asked) 429s with `Retry-After` and 500s now and then.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub const BEARER: &str = "good-token";
pub const API_KEY: &str = "good-key";
pub const BASIC_USER: &str = "good-user";
pub const BASIC_PASSWORD: &str = "good-password";
/// Records the source starts with.
pub const RECORDS: usize = 53;
/// Every third record shares its `created` second with the two before it: the boundary an
/// inclusive filter sends again.
pub const FIRST_CREATED: i64 = 1_700_000_000;

/// What the source does besides answering.
#[derive(Clone, Copy, Default)]
pub struct Chaos {
    /// Request numbers divisible by this answer 500 (0: never).
    pub error_every: usize,
    /// Request numbers divisible by this answer 429 with a `Retry-After` (0: never), in
    /// seconds and as an HTTP-date by turns.
    pub limit_every: usize,
}

/// One request as the source saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    /// Which route (`cursor`, `link`, ...).
    pub route: String,
    pub status: u16,
    /// The `Retry-After` the source answered with.
    pub retry_after: Option<Duration>,
}

#[derive(Clone)]
struct Shared {
    records: Arc<Mutex<Vec<Value>>>,
    requests: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    chaos: Chaos,
    base: String,
}

/// A running source; stops when dropped.
pub struct Source {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn record(id: usize) -> Value {
    let created = FIRST_CREATED + i64::try_from(id / 3).unwrap_or(0);
    json!({"id": format!("it_{id:04}"), "created": created, "name": format!("item {id}"), "amount": id * 100})
}

impl Source {
    pub async fn start(chaos: Chaos) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            records: Arc::new(Mutex::new((0..RECORDS).map(record).collect())),
            requests: Arc::default(),
            seen: Arc::default(),
            chaos,
            base: format!("http://{addr}"),
        };
        let app = Router::new()
            .route("/v1/cursor/items", get(cursor))
            .route("/v1/link/items", get(link))
            .route("/v1/offset/items", get(offset))
            .route("/v1/page/items", get(page))
            .route("/v1/next/items", get(next_url))
            .route("/v1/garbage", get(garbage))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, shared, task }
    }

    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// When each request arrived, for the conformance kit's rate check.
    pub fn request_log(&self) -> Arc<dyn Fn() -> Vec<Instant> + Send + Sync> {
        let seen = self.shared.seen.clone();
        Arc::new(move || seen.lock().unwrap().iter().map(|s| s.at).collect())
    }

    /// Adds `count` records created after every record so far, the first in the same second
    /// as the newest (so it falls on the last sync's boundary).
    pub fn add(&self, count: usize) -> Vec<Value> {
        let mut records = self.shared.records.lock().unwrap();
        let newest = records
            .iter()
            .map(|r| r["created"].as_i64().unwrap())
            .max()
            .unwrap();
        let added: Vec<Value> = (0..count)
            .map(|i| {
                let id = records.len() + i;
                let created = newest + i64::try_from(i).unwrap();
                json!({"id": format!("it_{id:04}"), "created": created, "name": format!("item {id}"), "amount": id * 100})
            })
            .collect();
        records.extend(added.iter().cloned());
        added
    }
}

type Params = Query<HashMap<String, String>>;

/// Counts the request; the answer to send instead (chaos or an auth refusal), when due.
fn gate(shared: &Shared, route: &str, authorized: bool) -> Option<Response> {
    let number = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let chaos = shared.chaos;
    let mut seen = Seen {
        at: Instant::now(),
        route: route.to_owned(),
        status: 200,
        retry_after: None,
    };
    let refusal = if !authorized {
        seen.status = 401;
        Some((
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            r#"{"error":"invalid credentials"}"#,
        ))
    } else if chaos.limit_every > 0 && number.is_multiple_of(chaos.limit_every) {
        let mut headers = HeaderMap::new();
        let value = if (number / chaos.limit_every) % 2 == 1 {
            seen.retry_after = Some(Duration::from_secs(1));
            "1".to_owned()
        } else {
            // An HTTP-date two seconds on: at least one second away once truncated.
            seen.retry_after = Some(Duration::from_secs(1));
            httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2))
        };
        headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&value).unwrap());
        seen.status = 429;
        Some((
            StatusCode::TOO_MANY_REQUESTS,
            headers,
            r#"{"error":"slow down"}"#,
        ))
    } else if chaos.error_every > 0 && number.is_multiple_of(chaos.error_every) {
        seen.status = 500;
        Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            HeaderMap::new(),
            r#"{"error":"oops"}"#,
        ))
    } else {
        None
    };
    shared.seen.lock().unwrap().push(seen);
    refusal.map(|(status, headers, body)| (status, headers, body).into_response())
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, expected: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()) == Some(expected)
}

/// The records from `since` on (inclusive), oldest first, as the source keeps them.
fn filtered(shared: &Shared, params: &HashMap<String, String>) -> Vec<Value> {
    let since: Option<i64> = params.get("since").and_then(|s| s.parse().ok());
    let mut records: Vec<Value> = shared
        .records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| since.is_none_or(|since| r["created"].as_i64().unwrap() >= since))
        .cloned()
        .collect();
    records.sort_by_key(|r| {
        (
            r["created"].as_i64().unwrap(),
            r["id"].as_str().unwrap().to_owned(),
        )
    });
    records
}

fn number(params: &HashMap<String, String>, name: &str, default: usize) -> usize {
    params
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bearer auth; `starting_after` cursor from the last record; `has_more` in the body.
async fn cursor(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let authorized = header_is(&headers, header::AUTHORIZATION, &format!("Bearer {BEARER}"));
    if let Some(refusal) = gate(&shared, "cursor", authorized) {
        return refusal;
    }
    let records = filtered(&shared, &params);
    let limit = number(&params, "limit", 10).min(100);
    let start = match params.get("starting_after") {
        Some(after) => match records.iter().position(|r| r["id"] == after.as_str()) {
            Some(i) => i + 1,
            None => return (StatusCode::BAD_REQUEST, "unknown starting_after").into_response(),
        },
        None => 0,
    };
    let page: Vec<Value> = records.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < records.len();
    axum::Json(json!({"object": "list", "data": page, "has_more": has_more})).into_response()
}

/// API key header; GitHub-style `Link` header; a bare array body.
async fn link(State(shared): State<Shared>, headers: HeaderMap, Query(params): Params) -> Response {
    let authorized = headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(API_KEY);
    if let Some(refusal) = gate(&shared, "link", authorized) {
        return refusal;
    }
    let records = filtered(&shared, &params);
    let per_page = number(&params, "per_page", 10);
    let page = number(&params, "page", 1);
    let items: Vec<Value> = records
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let mut response = axum::Json(Value::Array(items)).into_response();
    if page * per_page < records.len() {
        let mut next = format!(
            "{}/v1/link/items?page={}&per_page={per_page}",
            shared.base,
            page + 1
        );
        if let Some(since) = params.get("since") {
            next.push_str(&format!("&since={since}"));
        }
        let value = format!(
            r#"<{next}>; rel="next", <{}/v1/link/items?page=1>; rel="first""#,
            shared.base
        );
        response
            .headers_mut()
            .insert(header::LINK, HeaderValue::from_str(&value).unwrap());
    }
    response
}

/// Basic auth; offset and limit; ignores `since` (the connector filters what comes back).
async fn offset(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    use base64::Engine as _;
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"));
    let authorized = header_is(
        &headers,
        header::AUTHORIZATION,
        &format!("Basic {expected}"),
    );
    if let Some(refusal) = gate(&shared, "offset", authorized) {
        return refusal;
    }
    let mut all = params.clone();
    all.remove("since");
    let records = filtered(&shared, &all);
    let offset = number(&params, "offset", 0);
    let limit = number(&params, "limit", 10);
    let items: Vec<Value> = records.iter().skip(offset).take(limit).cloned().collect();
    axum::Json(json!({"results": items, "total": records.len()})).into_response()
}

/// API key in the query; page numbers; records under `items`.
async fn page(State(shared): State<Shared>, headers: HeaderMap, Query(params): Params) -> Response {
    let _ = headers;
    let authorized = params.get("api_key").map(String::as_str) == Some(API_KEY);
    if let Some(refusal) = gate(&shared, "page", authorized) {
        return refusal;
    }
    let records = filtered(&shared, &params);
    let size = number(&params, "size", 10);
    let page = number(&params, "page", 1);
    let items: Vec<Value> = records
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    axum::Json(json!({"items": items, "page": page})).into_response()
}

/// Bearer auth; the next page's URL (relative) in the body; an opaque `after` cursor.
async fn next_url(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let authorized = header_is(&headers, header::AUTHORIZATION, &format!("Bearer {BEARER}"));
    if let Some(refusal) = gate(&shared, "next", authorized) {
        return refusal;
    }
    let records = filtered(&shared, &params);
    let after = number(&params, "after", 0);
    let items: Vec<Value> = records.iter().skip(after).take(7).cloned().collect();
    let next = (after + items.len() < records.len()).then(|| {
        let mut next = format!("/v1/next/items?after={}", after + items.len());
        if let Some(since) = params.get("since") {
            next.push_str(&format!("&since={since}"));
        }
        next
    });
    axum::Json(json!({"records": items, "links": {"next": next}})).into_response()
}

/// Not JSON at all.
async fn garbage(State(shared): State<Shared>) -> Response {
    if let Some(refusal) = gate(&shared, "garbage", true) {
        return refusal;
    }
    (StatusCode::OK, "<html>surprise</html>").into_response()
}
