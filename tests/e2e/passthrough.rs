//! REST passthrough end to end: `junction gateway` (and `junction serve` for API keys) with
//! `[[gateway.routes]]` in front of real HTTP services on loopback, spoken to over HTTP and
//! WebSocket as a legacy client would.

use crate::support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use junction_schema::identity::{Audience, Binding, IdentityKey, IdentityVerifier};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::upstream::{Upstream, pattern_byte};
use support::{Junction, TestDatabase};

/// Every route in these tests sits next to a supergraph whose subgraphs are never called.
fn supergraph() -> String {
    include_str!("../../gateway/federation/tests/supergraphs/classic.graphql")
        .replace("{{accounts}}", "http://127.0.0.1:9/graphql")
        .replace("{{products}}", "http://127.0.0.1:9/graphql")
        .replace("{{inventory}}", "http://127.0.0.1:9/graphql")
        .replace("{{reviews}}", "http://127.0.0.1:9/graphql")
}

/// `junction gateway` with `config` as its `junction.toml`.
fn gateway(config: &str) -> (Junction, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(dir.path().join("junction.toml"), config).unwrap();
    let file = dir.path().join("supergraph.graphql");
    std::fs::write(&file, supergraph()).unwrap();
    (Junction::gateway_in(dir.path(), &file, &[]), dir)
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Sends `request` as written (no client normalizing the path) and returns the status line.
async fn raw_status_line(address: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The VmHWM (peak resident memory) of a process, in KiB.
fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn values(echo: &Value, header: &str) -> Vec<String> {
    echo["headers"][header]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_rewrites_transforms_headers_and_sets_forwarded_headers() {
    let upstream = Upstream::start("orders").await;
    let (router, _dir) = gateway(&format!(
        r#"
        [[gateway.routes]]
        name = "orders"
        path = "/legacy/shops/{{shop}}"
        upstreams = ["{}/base/"]
        rewrite = "/v2/{{shop}}/orders"
        request_headers = {{ add = {{ x-api-version = "2" }}, remove = ["x-debug"], rename = {{ x-old-token = "x-token" }} }}
        response_headers = {{ remove = ["x-upstream-secret"], rename = {{ x-upstream-version = "x-version" }}, add = {{ cache-control = "no-store" }} }}
        "#,
        upstream.url()
    ));
    let response = client()
        .get(router.url("/legacy/shops/acme/42/lines?page=2&sort=asc"))
        .header("x-debug", "1")
        .header("x-old-token", "t0k")
        .header("x-api-version", "1")
        .header("x-request-id", "trace-me-1")
        .header("junction-identity", "v1.forged")
        .header("junction-identity-signature", "forged")
        .header("connection", "x-session")
        .header("x-session", "hop")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-me-1");
    assert_eq!(response.headers()["x-version"], "7");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(!response.headers().contains_key("x-upstream-secret"));
    assert!(!response.headers().contains_key("x-upstream-version"));
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["uri"], "/base/v2/acme/orders/42/lines?page=2&sort=asc");
    assert_eq!(values(&echo, "x-api-version"), ["2"]);
    assert_eq!(values(&echo, "x-token"), ["t0k"]);
    assert!(values(&echo, "x-old-token").is_empty());
    assert!(values(&echo, "x-debug").is_empty());
    assert_eq!(values(&echo, "x-request-id"), ["trace-me-1"]);
    // Client-sent identity and hop-by-hop headers stop at the router.
    assert!(values(&echo, "junction-identity").is_empty());
    assert!(values(&echo, "junction-identity-signature").is_empty());
    assert!(values(&echo, "x-session").is_empty());
    // An untrusted client cannot claim another address or host.
    assert_eq!(values(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&echo, "x-forwarded-host"), [router.address.as_str()]);
    assert_eq!(values(&echo, "host"), [upstream.address.to_string()]);

    // Routing errors are problem documents with the request id.
    let client = client();
    let missing = client.get(router.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let id = missing.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
    for path in [
        "/legacy/shops/acme/../admin",
        "/legacy/shops/acme/%2E%2e/admin",
    ] {
        let status = raw_status_line(
            &router.address,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{path}");
    }
    assert_eq!(upstream.hits("GET", "/base/v2/admin"), 0);
    // The router's own endpoints are still its own.
    let health = client.get(router.url("/health/live")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_on_methods_hosts_and_the_most_specific_path() {
    let general = Upstream::start("general").await;
    let special = Upstream::start("special").await;
    let (router, _dir) = gateway(&format!(
        r#"
        [[gateway.routes]]
        name = "api"
        path = "/api"
        methods = ["GET", "POST"]
        upstreams = ["{general}"]

        [[gateway.routes]]
        name = "api-users"
        path = "/api/users/{{id}}"
        methods = ["GET"]
        upstreams = ["{special}"]

        [[gateway.routes]]
        name = "small"
        path = "/small"
        max_body_bytes = 1024
        upstreams = ["{general}"]

        [[gateway.routes]]
        name = "tenants"
        path = "/site"
        hosts = ["*.tenants.test"]
        upstreams = ["{special}"]
        "#,
        general = general.url(),
        special = special.url(),
    ));
    let client = client();
    let who = |response: reqwest::Response| async move {
        let echo: Value = response.json().await.unwrap();
        echo["upstream"].as_str().unwrap().to_owned()
    };
    let users = client.get(router.url("/api/users/7")).send().await.unwrap();
    assert_eq!(who(users).await, "special");
    let list = client.get(router.url("/api/users")).send().await.unwrap();
    assert_eq!(who(list).await, "general");
    let post = client
        .post(router.url("/api/users/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        who(post).await,
        "general",
        "the specific route takes GET only"
    );

    let delete = client
        .delete(router.url("/api/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 405);
    assert_eq!(delete.headers()["allow"], "GET, POST");

    // Over a route's body limit: refused whether the length is declared or streamed.
    let declared = client
        .post(router.url("/small"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    assert_eq!(
        general.hits("POST", "/small"),
        0,
        "refused before the upstream"
    );
    let chunked = raw_status_line(
        &router.address,
        &format!(
            "POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
            "x".repeat(2048)
        ),
    )
    .await;
    assert_eq!(chunked, "HTTP/1.1 413 Payload Too Large");
    let fits = client
        .post(router.url("/small"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);

    let site = client
        .get(router.url("/site/home"))
        .header("host", "acme.tenants.test:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(who(site).await, "special");
    let other = client
        .get(router.url("/site/home"))
        .header("host", "acme.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// 64 MiB up and 64 MiB down through the router: both digests intact, and the router's
/// peak memory grows by less than one body (the bodies stream, nothing holds them whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_in_both_directions() {
    const SIZE: usize = 64 * 1024 * 1024;
    let upstream = Upstream::start("files").await;
    let (router, _dir) = gateway(&format!(
        "[[gateway.routes]]\nname = \"files\"\npath = \"/files\"\nrewrite = \"/\"\nupstreams = [\"{}\"]\n",
        upstream.url()
    ));
    // The upstream's pattern, built by copying one period of it.
    let period: Vec<u8> = (0..251 * 4096).map(pattern_byte).collect();
    let mut body = Vec::with_capacity(SIZE);
    while body.len() < SIZE {
        let take = period.len().min(SIZE - body.len());
        body.extend_from_slice(&period[..take]);
    }
    let digest = format!("{:x}", Sha256::digest(&body));
    let client = client();
    // Warm up, then measure the peak from here.
    let warm = client
        .get(router.url("/files/bytes/1024"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.bytes().await.unwrap().len(), 1024);
    let before = peak_memory_kib(router.pid());

    let mut download = client
        .get(router.url(&format!("/files/bytes/{SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let (mut length, mut received) = (0, Sha256::new());
    while let Some(chunk) = download.chunk().await.unwrap() {
        length += chunk.len();
        received.update(&chunk);
    }
    assert_eq!(length, SIZE);
    assert_eq!(format!("{:x}", received.finalize()), digest);

    let upload = client
        .post(router.url("/files/upload"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200, "no body limit on a route without one");
    let received: Value = upload.json().await.unwrap();
    assert_eq!(received["length"], SIZE);
    assert_eq!(received["sha256"], digest.as_str());

    // Holding either body whole would take 64 MiB; buffers and allocator caches under a
    // busy test run take some, far less.
    let grown_mib = (peak_memory_kib(router.pid()) - before) / 1024;
    assert!(
        grown_mib < 40,
        "the router's peak memory grew by {grown_mib} MiB for 128 MiB of bodies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_slow_upstream_is_a_clean_502_or_504_with_the_request_id() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let slow = Upstream::start("slow").await;
    let (router, _dir) = gateway(&format!(
        r#"
        [[gateway.routes]]
        name = "down"
        path = "/down"
        upstreams = ["{closed_url}"]

        [[gateway.routes]]
        name = "slow"
        path = "/slow"
        rewrite = "/"
        timeout = "300ms"
        retries = 0
        upstreams = ["{}"]
        "#,
        slow.url()
    ));
    let client = client();
    let down = client
        .get(router.url("/down/anything"))
        .header("x-request-id", "req-502")
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 502);
    assert_eq!(down.headers()["x-request-id"], "req-502");
    assert_eq!(down.headers()["content-type"], "application/problem+json");
    let problem: Value = down.json().await.unwrap();
    assert_eq!(problem["status"], 502);
    assert_eq!(problem["request_id"], "req-502");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{problem}"
    );

    let started = Instant::now();
    let late = client.get(router.url("/slow/stall")).send().await.unwrap();
    assert_eq!(late.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    let problem: Value = late.json().await.unwrap();
    assert!(problem["request_id"].is_string(), "{problem}");
}

/// Two upstreams, one answering 503: GETs are retried on the other and always succeed; POSTs
/// are sent once, so the 503s reach the client and the failing upstream saw each POST once.
/// After `failures` in a row the failing upstream is skipped altogether.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_for_idempotent_methods_and_failing_upstreams_are_skipped() {
    let failing = Upstream::start("failing").await;
    let healthy = Upstream::start("healthy").await;
    // Both serve `/status/{code}`: the failing one is reached with 503, the healthy with 200.
    let (router, _dir) = gateway(&format!(
        r#"
        [[gateway.routes]]
        name = "flaky"
        path = "/flaky"
        rewrite = "/"
        retries = 1
        upstreams = ["{failing}/status/503", "{healthy}/status/200"]
        passive_health = {{ failures = 1000, cooldown = "1m" }}

        [[gateway.routes]]
        name = "ejecting"
        path = "/ejecting"
        rewrite = "/"
        retries = 1
        upstreams = ["{failing}/status/503", "{healthy}/status/200"]
        passive_health = {{ failures = 2, cooldown = "1m" }}
        "#,
        failing = failing.url(),
        healthy = healthy.url(),
    ));
    let client = client();
    for _ in 0..6 {
        let response = client.get(router.url("/flaky")).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "a GET is retried on the other upstream"
        );
    }
    let mut refused = 0;
    for _ in 0..6 {
        let response = client.post(router.url("/flaky")).send().await.unwrap();
        match response.status().as_u16() {
            200 => {}
            503 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        refused, 3,
        "round robin sent half the POSTs to the failing upstream"
    );
    assert_eq!(
        failing.hits("POST", "/status/503"),
        3,
        "each POST sent once"
    );
    assert_eq!(healthy.hits("POST", "/status/200"), 3);

    let before = failing.hits("GET", "/status/503");
    for _ in 0..10 {
        let response = client.get(router.url("/ejecting")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        failing.hits("GET", "/status/503") - before,
        2,
        "skipped after two failures in a row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_pass_through() {
    let upstream = Upstream::start("sockets").await;
    let (router, _dir) = gateway(&format!(
        "[[gateway.routes]]\nname = \"live\"\npath = \"/live\"\nrewrite = \"/\"\nupstreams = [\"{}\"]\n",
        upstream.url()
    ));
    let url = format!("ws://{}/live/ws", router.address);
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "again"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo: {text}"));
    }
    let binary = vec![0u8, 1, 2, 255];
    socket
        .send(tokio_tungstenite::tungstenite::Message::binary(
            binary.clone(),
        ))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply.into_data().to_vec(), binary);
    socket.close(None).await.unwrap();
}

/// A reload that moves a route to another upstream while requests stream through it: every
/// request succeeds, on the old upstream or the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_a_route_with_requests_in_flight_and_none_fail() {
    let blue = Upstream::start("blue").await;
    let green = Upstream::start("green").await;
    // SIGHUP alone: no watching of files here.
    let route = |upstream: &Upstream| {
        format!(
            "[gateway]\nwatch_interval = \"0s\"\n\n[[gateway.routes]]\nname = \"app\"\npath = \"/app\"\nupstreams = [\"{}\"]\n",
            upstream.url()
        )
    };
    let (router, dir) = gateway(&route(&blue));
    let url = router.url("/app/who");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url, stop) = (client(), url.clone(), std::sync::Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let (mut answers, mut failures) = (Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => {
                        let echo: Value = response.json().await.unwrap();
                        answers.push(echo["upstream"].as_str().unwrap().to_owned());
                    }
                    Ok(response) => failures.push(response.status().to_string()),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            (answers, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(dir.path().join("junction.toml"), route(&green)).unwrap();
    let hangup = std::process::Command::new("kill")
        .args(["-HUP", &router.pid().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while green.hits("GET", "/app/who") < 20 {
        assert!(Instant::now() < deadline, "the route never moved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut answers, mut failures) = (Vec::new(), Vec::new());
    for worker in workers {
        let (a, f) = worker.await.unwrap();
        answers.extend(a);
        failures.extend(f);
    }
    assert!(failures.is_empty(), "failed: {failures:?}");
    let first_green = answers.iter().position(|a| a == "green").unwrap();
    assert!(first_green > 0, "blue answered before the reload");
    assert!(answers.len() > 40, "traffic flowed: {}", answers.len());
}

/// With `watch_interval`, a changed configuration file is picked up without a signal; a
/// broken one keeps the running routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_reloads_the_routes_without_a_signal() {
    let blue = Upstream::start("blue").await;
    let green = Upstream::start("green").await;
    let config = |upstream: &Upstream| {
        format!(
            "[gateway]\nwatch_interval = \"100ms\"\n\n[[gateway.routes]]\nname = \"app\"\npath = \"/app\"\nupstreams = [\"{}\"]\n",
            upstream.url()
        )
    };
    let (router, dir) = gateway(&config(&blue));
    let client = client();
    let who = || async {
        let response = client.get(router.url("/app/who")).send().await.unwrap();
        let echo: Value = response.json().await.unwrap();
        echo["upstream"].as_str().unwrap().to_owned()
    };
    assert_eq!(who().await, "blue");
    std::fs::write(dir.path().join("junction.toml"), config(&green)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while who().await != "green" {
        assert!(Instant::now() < deadline, "the change was never picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(
        dir.path().join("junction.toml"),
        "[gateway]\nwatch_interval = \"100ms\"\n\n[[gateway.routes]]\nname = \"app\"\npath = \"app\"\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        who().await,
        "green",
        "a broken file keeps the running routes"
    );
}

/// On `junction serve`: the auth plugin takes API keys, hides them from the upstream and
/// signs the verified identity in; the rate-limit plugin counts per consumer; CORS answers
/// preflights for its origins only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_authenticate_sign_the_identity_limit_and_answer_cors() {
    let db = TestDatabase::sqlite().await;
    let upstream = Upstream::start("legacy").await;
    let key = IdentityKey::generate();
    std::fs::write(
        db.dir.path().join("junction.toml"),
        format!(
            r#"
            [[gateway.routes]]
            name = "legacy"
            path = "/legacy"
            upstreams = ["{}"]
            plugins = [
              {{ name = "cors", origins = ["https://app.example.com"] }},
              {{ name = "auth" }},
              {{ name = "rate_limit", requests_per_second = 0.01, burst = 2 }},
            ]
            "#,
            upstream.url()
        ),
    )
    .unwrap();
    let router = Junction::serve_with(
        db.dir.path(),
        Some(&db.url),
        &[("JUNCTION_IDENTITY_SIGNING_KEY", &key.to_base64())],
    );
    let api_key = router
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("jk_live_"))
        .unwrap()
        .to_owned();
    let client = client();

    let anonymous = client.get(router.url("/legacy/x")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let wrong = client
        .get(router.url("/legacy/x"))
        .bearer_auth("jk_live_not_a_key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        upstream.hits("GET", "/legacy"),
        0,
        "refused before the upstream"
    );

    let allowed = client
        .get(router.url("/legacy/x"))
        .bearer_auth(&api_key)
        .header("junction-identity", "v1.forged")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["ratelimit-remaining"], "1");
    let echo: Value = allowed.json().await.unwrap();
    assert!(
        values(&echo, "authorization").is_empty(),
        "credentials hidden"
    );
    let mut headers = axum::http::HeaderMap::new();
    for name in ["junction-identity", "junction-identity-signature"] {
        let value = values(&echo, name);
        assert_eq!(value.len(), 1, "{name}: {value:?}");
        headers.insert(name, value[0].parse().unwrap());
    }
    // Signed for this route and this request id; the body streams through unread.
    let request_id = values(&echo, "x-request-id");
    let route = Audience::route("legacy");
    let request = Binding {
        audience: &route,
        method: None,
        target: None,
        body: None,
        request_id: request_id.first().map(String::as_str),
    };
    let identity = IdentityVerifier::new(vec![key], Duration::from_secs(60))
        .verify(&headers, &request)
        .expect("the router's signature");
    assert!(
        uuid::Uuid::parse_str(&identity.tenant).is_ok(),
        "{identity:?}"
    );
    assert!(!identity.subject.is_empty(), "{identity:?}");

    let second = client
        .get(router.url("/legacy/x"))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let limited = client
        .get(router.url("/legacy/x"))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert_eq!(upstream.hits("GET", "/legacy"), 2);

    let preflight = client
        .request(reqwest::Method::OPTIONS, router.url("/legacy/x"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let stranger = client
        .request(reqwest::Method::OPTIONS, router.url("/legacy/x"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert!(
        !stranger
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_names_a_bad_route() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("junction.toml"),
        "[[gateway.routes]]\nname = \"bad\"\npath = \"/graphql/v1\"\nupstreams = [\"http://127.0.0.1:1\"]\n",
    )
    .unwrap();
    let output = support::cli(dir.path(), None, &["config", "check"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("gateway.routes[bad]: path /graphql/v1: the router answers /graphql itself"),
        "{stderr}"
    );
}

/// One HTTP/1.1 connection driven by hand, for what clients built on a library never send:
/// pipelined requests, `Expect`, odd framing.
struct Wire {
    stream: tokio::net::TcpStream,
    read: Vec<u8>,
}

/// A response as read off the wire: status, headers (names lower-case), body (unchunked).
struct WireResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl WireResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Wire {
    async fn connect(router: &Junction) -> Self {
        let address = router.url("").trim_start_matches("http://").to_owned();
        Self {
            stream: tokio::net::TcpStream::connect(address).await.unwrap(),
            read: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }

    /// More bytes; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap_or(0);
        self.read.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, count: usize) -> Vec<u8> {
        while self.read.len() < count {
            assert!(self.fill().await, "the connection ended inside a body");
        }
        self.read.drain(..count).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.read.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.read.drain(..end + 2).collect()).unwrap();
                return line.trim_end().to_owned();
            }
            assert!(self.fill().await, "the connection ended inside a head");
        }
    }

    /// The next response; `bodiless` for an answer to HEAD.
    async fn response(&mut self, bodiless: bool) -> WireResponse {
        let status_line = self.line().await;
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = WireResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if bodiless || matches!(status, 100..=199 | 204 | 304) {
            return response;
        }
        if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).unwrap();
                if size == 0 {
                    assert_eq!(self.line().await, "", "no trailers");
                    break;
                }
                let data = self.take(size).await;
                response.body.extend_from_slice(&data);
                assert_eq!(self.take(2).await, b"\r\n");
            }
        } else if let Some(length) = response.header("content-length") {
            response.body = self.take(length.parse().unwrap()).await;
        } else {
            while self.fill().await {}
            response.body = std::mem::take(&mut self.read);
        }
        response
    }

    /// Whether the router closed the connection (reads its end).
    async fn closed(&mut self) -> bool {
        self.read.is_empty() && !self.fill().await
    }
}

fn api_route(upstream: &Upstream, extra: &str) -> String {
    format!(
        "[[gateway.routes]]\nname = \"api\"\npath = \"/api\"\nrewrite = \"/\"\nupstreams = [\"{}\"]\n{extra}\n",
        upstream.url()
    )
}

/// One keep-alive connection: REST requests (one with a chunked body, two pipelined), then
/// the router's own health endpoint (the connection passes to the general server), then
/// REST again on it. Every answer is framed right, and the router's request id reaches the
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_rest_requests_and_the_routers_own_endpoints() {
    let upstream = Upstream::start("api").await;
    let (router, _dir) = gateway(&api_route(&upstream, ""));
    let mut wire = Wire::connect(&router).await;

    wire.send(b"GET /api/first?x=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .await;
    let first = wire.response(false).await;
    assert_eq!(first.status, 200);
    let echo = first.json();
    assert_eq!(echo["uri"], "/first?x=1");
    let id = first
        .header("x-request-id")
        .expect("a request id")
        .to_owned();
    assert_eq!(values(&echo, "x-request-id"), vec![id.clone()]);
    assert_eq!(values(&echo, "x-forwarded-host"), vec!["shop.example"]);
    assert_eq!(first.header("x-upstream-version"), Some("7"));

    wire.send(
        b"POST /api/upload HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: dropped\r\n\r\n",
    )
    .await;
    let upload = wire.response(false).await;
    assert_eq!(upload.status, 200);
    let expected = format!("{:x}", Sha256::digest(b"hello world"));
    assert_eq!(upload.json()["length"], 11);
    assert_eq!(upload.json()["sha256"], expected.as_str());

    // Two requests in one write: two answers, in order.
    wire.send(b"GET /api/one HTTP/1.1\r\nHost: a\r\n\r\nGET /api/two HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert_eq!(wire.response(false).await.json()["uri"], "/one");
    assert_eq!(wire.response(false).await.json()["uri"], "/two");

    wire.send(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let health = wire.response(false).await;
    assert_eq!(
        health.status, 200,
        "the router's own endpoint on the same connection"
    );
    assert_eq!(health.json()["status"], "live");

    wire.send(b"GET /api/after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    let after = wire.response(false).await;
    assert_eq!(after.json()["uri"], "/after");
    assert!(wire.closed().await, "closed as the client asked");
    assert_eq!(upstream.hits("GET", "/"), 4);
}

/// `Expect: 100-continue`: the router says go on before the client sends the body (and
/// the upstream sees no `Expect`); HEAD and 204 answers carry no body, so the next request
/// on the connection is read right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expectations_and_bodiless_answers_keep_the_connection_in_step() {
    let upstream = Upstream::start("api").await;
    let (router, _dir) = gateway(&api_route(&upstream, ""));
    let mut wire = Wire::connect(&router).await;

    wire.send(
        b"PUT /api/upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .await;
    let go_on = wire.response(false).await;
    assert_eq!(go_on.status, 100);
    wire.send(b"data").await;
    let stored = wire.response(false).await;
    assert_eq!(stored.status, 200);
    assert_eq!(stored.json()["length"], 4);

    wire.send(
        b"PUT /api/echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .await;
    assert_eq!(wire.response(false).await.status, 100);
    wire.send(b"{}").await;
    let echo = wire.response(false).await.json();
    assert!(values(&echo, "expect").is_empty(), "{echo}");
    assert_eq!(echo["body_bytes"], 2);

    wire.send(b"HEAD /api/echo HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let head = wire.response(true).await;
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-length").is_some(),
        "HEAD keeps the length"
    );
    wire.send(b"DELETE /api/status/204 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert_eq!(wire.response(false).await.status, 204);
    wire.send(b"GET /api/last HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert_eq!(wire.response(false).await.json()["uri"], "/last");
}

/// An upstream that closes each connection shortly after answering on it. The router
/// keeps connections to reuse; one the upstream closed is never used again, so no request
/// fails for it, not even a POST (which is never sent twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_upstream_closed_while_idle_cost_no_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut chunk = [0u8; 4096];
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                // Kept alive as far as the router can tell, then closed.
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    let (router, _dir) = gateway(&format!(
        "[[gateway.routes]]\nname = \"flaky\"\npath = \"/flaky\"\nupstreams = [\"http://{address}\"]\n"
    ));
    let client = client();
    for method in ["GET", "POST", "GET", "POST"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = client
            .request(method.clone(), router.url("/flaky/x"))
            .body(if method == reqwest::Method::POST {
                "{}"
            } else {
                ""
            })
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{method}");
        assert_eq!(answer.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
}

/// Requests the fast path leaves to the general server still get the right answer: an
/// HTTP/1.0 request is forwarded; one framed both by length and chunked (a smuggling
/// shape) is read by its chunked framing alone (RFC 9112 section 6.3), forwarded without the
/// length, and the connection closes after it, so what hid behind it is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_or_ambiguous_requests_are_answered_by_the_general_server() {
    let upstream = Upstream::start("api").await;
    let (router, _dir) = gateway(&api_route(&upstream, ""));
    let address = router.url("").trim_start_matches("http://").to_owned();
    let old = raw_status_line(&address, "GET /api/old HTTP/1.0\r\nHost: a\r\n\r\n").await;
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );

    let mut wire = Wire::connect(&router).await;
    wire.send(
        b"POST /api/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/hidden HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let answer = wire.response(false).await;
    assert_eq!(answer.status, 200);
    let echo = answer.json();
    assert_eq!(echo["body_bytes"], 0);
    assert!(values(&echo, "content-length").is_empty(), "{echo}");
    assert!(
        wire.closed().await,
        "the connection closes after an ambiguous request"
    );
    assert_eq!(upstream.hits("GET", "/old"), 1);
    assert_eq!(upstream.hits("POST", "/echo"), 1);
    assert_eq!(upstream.hits("GET", "/hidden"), 0);
}

/// What the router cannot pass on: an upstream answering garbage is a 502 problem with the
/// request id; a chunked body running past the route's limit is a 413, and the connection
/// closes (the rest of the body is unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_and_overlong_streamed_bodies_are_refused_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                let _ = stream.read(&mut chunk).await;
                let _ = stream.write_all(b"SMTP ready\r\n\r\n").await;
            });
        }
    });
    let upstream = Upstream::start("api").await;
    let (router, _dir) = gateway(&format!(
        "[[gateway.routes]]\nname = \"garbage\"\npath = \"/garbage\"\nretries = 0\n\
         upstreams = [\"http://{address}\"]\n\n{}",
        api_route(&upstream, "max_body_bytes = 10")
    ));
    let mut wire = Wire::connect(&router).await;
    wire.send(b"GET /garbage/x HTTP/1.1\r\nHost: a\r\nX-Request-Id: req-garbage\r\n\r\n")
        .await;
    let bad = wire.response(false).await;
    assert_eq!(bad.status, 502);
    assert_eq!(bad.header("x-request-id"), Some("req-garbage"));
    assert_eq!(bad.json()["request_id"], "req-garbage");
    assert!(
        bad.json()["detail"].as_str().unwrap().contains("malformed"),
        "{}",
        bad.json()
    );

    let mut wire = Wire::connect(&router).await;
    wire.send(
        b"POST /api/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n",
    )
    .await;
    let refused = wire.response(false).await;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(wire.closed().await);
}

/// `[gateway.http] header_read_timeout`: a connection waiting longer for a request head,
/// idle or sending one too slowly, is closed, on REST routes and after the hand-off to the
/// router's own endpoints alike; a connection busy with requests all along is not, however
/// long it lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_waiting_too_long_for_a_request_head_are_closed() {
    let upstream = Upstream::start("api").await;
    let (router, _dir) = gateway(&format!(
        "[gateway.http]\nheader_read_timeout = \"300ms\"\n\n{}",
        api_route(&upstream, "")
    ));
    let started = Instant::now();
    let mut idle = Wire::connect(&router).await;
    idle.send(b"GET /api/idle HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert_eq!(idle.response(false).await.status, 200);
    assert!(idle.closed().await, "an idle REST connection closes");
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut slow = Wire::connect(&router).await;
    slow.send(b"GET /api/slow HTTP/1.1\r\nHost: a\r\n").await;
    assert!(
        slow.closed().await,
        "a head sent too slowly is not waited for"
    );
    assert_eq!(upstream.hits("GET", "/slow"), 0);

    let mut own = Wire::connect(&router).await;
    own.send(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(own.response(false).await.status, 200);
    assert!(
        own.closed().await,
        "an idle connection closes after the hand-off too"
    );

    let mut busy = Wire::connect(&router).await;
    let lived = Instant::now();
    while lived.elapsed() < Duration::from_millis(1200) {
        busy.send(b"GET /api/busy HTTP/1.1\r\nHost: a\r\n\r\n")
            .await;
        assert_eq!(busy.response(false).await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first response on a new connection that sends `request` as written.
async fn exchange(router: &Junction, request: &[u8]) -> WireResponse {
    let mut wire = Wire::connect(router).await;
    wire.send(request).await;
    wire.response(request.starts_with(b"HEAD ")).await
}

/// Traversal through an encoded slash or backslash: `..%2f` inside a segment is no dot
/// segment to the matcher, but an upstream decoding it walks out of the rewritten prefix.
/// Such paths (and raw backslashes, `..;` segments, encoded NULs) are refused with a 400 on
/// the fast path (HTTP/1.1) and on the general server (HTTP/1.0) alike, captures included,
/// and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_and_backslashes_in_a_path_are_refused() {
    let upstream = Upstream::start("files").await;
    let (router, _dir) = gateway(&format!(
        "[[gateway.routes]]\nname = \"files\"\npath = \"/files/{{shop}}\"\n\
         rewrite = \"/public/{{shop}}\"\nupstreams = [\"{}\"]\n",
        upstream.url()
    ));
    for path in [
        "/files/..%2fsecret.txt",
        "/files/..%2Fsecret.txt",
        "/files/..%5csecret.txt",
        "/files/..%5Csecret.txt",
        "/files/acme/..%2f..%2fsecret.txt",
        "/files/a%2f..%2f..%2fetc/passwd",
        "/files/acme/x%2F..%2F..%2F..%2Fsecret.txt?page=1",
        "/files/..\\secret.txt",
        "/files/..;/secret.txt",
        "/files/acme/report.txt%00.png",
    ] {
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            let request = format!("GET {path} {version}\r\nHost: x\r\nConnection: close\r\n\r\n");
            let status = raw_status_line(&router.address, &request).await;
            assert!(
                status.ends_with(" 400 Bad Request"),
                "{path} {version}: {status}"
            );
        }
    }
    assert_eq!(upstream.hits("GET", "/"), 0, "nothing reached the upstream");
    let fine = exchange(
        &router,
        b"GET /files/acme/report%20v2.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.json()["uri"], "/public/acme/report%20v2.txt");
}

/// RFC 9112 section 3.2: an HTTP/1.1 request without `Host`, any request with two, or with
/// one that is no `host[:port]`, is a 400 before a route is chosen, on both servers and for
/// the router's own endpoints too; nothing reaches the upstream. Two `Host` lines would
/// otherwise pick the route by the first and send both on with `preserve_host`. As nginx
/// does, an HTTP/1.0 request may leave `Host` out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_exactly_one_valid_host_are_refused() {
    let public = Upstream::start("public").await;
    let internal = Upstream::start("internal").await;
    let (router, _dir) = gateway(&format!(
        r#"
        [[gateway.routes]]
        name = "public"
        path = "/site"
        hosts = ["public.test"]
        preserve_host = true
        upstreams = ["{}"]

        [[gateway.routes]]
        name = "internal"
        path = "/site"
        hosts = ["internal.test"]
        preserve_host = true
        upstreams = ["{}"]

        [[gateway.routes]]
        name = "any"
        path = "/any"
        upstreams = ["{}"]
        "#,
        public.url(),
        internal.url(),
        public.url(),
    ));
    for request in [
        "GET /site/x HTTP/1.1\r\nHost: public.test\r\nHost: internal.test\r\n\r\n",
        "GET /site/x HTTP/1.0\r\nHost: public.test\r\nHost: internal.test\r\n\r\n",
        "GET /any/x HTTP/1.1\r\n\r\n",
        "GET /any/x HTTP/1.1\r\nHost:\r\n\r\n",
        "GET /any/x HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET /any/x HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET /any/x HTTP/1.1\r\nHost: user@public.test\r\n\r\n",
        "GET /any/x HTTP/1.1\r\nHost: public.test:80x\r\n\r\n",
        "GET /health HTTP/1.1\r\n\r\n",
    ] {
        let answer = exchange(&router, request.as_bytes()).await;
        assert_eq!(answer.status, 400, "{request:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{request:?}");
    }
    assert_eq!(public.hits("GET", "/"), 0, "nothing reached an upstream");
    assert_eq!(internal.hits("GET", "/"), 0, "nothing reached an upstream");

    let old = exchange(&router, b"GET /any/old HTTP/1.0\r\n\r\n").await;
    assert_eq!(old.status, 200, "HTTP/1.0 may leave Host out");
    let one = exchange(
        &router,
        b"GET /site/x HTTP/1.1\r\nHost: internal.test:4000\r\n\r\n",
    )
    .await;
    assert_eq!(one.json()["upstream"], "internal");
    assert_eq!(values(&one.json(), "host"), ["internal.test:4000"]);
}

/// An upstream speaking raw HTTP/1.1 that records each request head it gets; it switches
/// to `h2c` when asked to (or, on `/switch`, unasked) and then echoes whatever the tunnel
/// carries; otherwise it answers 200 with the head it got as the body.
async fn switching_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&heads);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = std::sync::Arc::clone(&seen);
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&read[..end + 4]).to_ascii_lowercase();
                    read.drain(..end + 4);
                    seen.lock().unwrap().push(head.clone());
                    if head.contains("upgrade: h2c") || head.starts_with("get /switch") {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                                  Upgrade: h2c\r\n\r\n",
                            )
                            .await;
                        // The tunnel: everything echoed, with what came before.
                        let _ = stream.write_all(&read).await;
                        while let Ok(n) = stream.read(&mut chunk).await {
                            if n == 0 || stream.write_all(&chunk[..n]).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                        head.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{address}"), heads)
}

/// `Upgrade: h2c` is never a tunnel: after an upstream's 101 the connection would carry
/// HTTP/2 requests past the route's prefix, methods, header rules and plugins. The upstream
/// gets a plain request without `Upgrade` or `HTTP2-Settings`; an upstream switching
/// protocols unasked is a 502, and nothing reaches it through the router afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrades_are_not_tunnelled() {
    let (url, heads) = switching_upstream().await;
    let (router, _dir) = gateway(&format!(
        "[[gateway.routes]]\nname = \"h2\"\npath = \"/h2\"\nrewrite = \"/\"\nupstreams = [\"{url}\"]\n"
    ));
    let mut wire = Wire::connect(&router).await;
    wire.send(
        b"GET /h2/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    let answer = wire.response(false).await;
    assert_eq!(answer.status, 200, "no switch of protocols");
    let head = String::from_utf8(answer.body.clone()).unwrap();
    assert!(head.starts_with("get /x http/1.1"), "{head}");
    assert!(!head.contains("upgrade"), "{head}");
    assert!(!head.contains("http2-settings"), "{head}");
    // The connection still speaks HTTP/1.1 through the route.
    wire.send(b"GET /h2/next HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(wire.response(false).await.status, 200);

    // An upstream switching anyway: on the fast path (a plain request) and on the general
    // server (the client asked for h2c, the upstream was not asked), a 502.
    for request in [
        &b"GET /h2/switch HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /h2/switch HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    ] {
        let mut wire = Wire::connect(&router).await;
        wire.send(request).await;
        let unasked = wire.response(false).await;
        assert_eq!(unasked.status, 502, "a switch nobody asked for");
        // Still HTTP between the client and the router: no tunnel to the upstream opened.
        wire.send(b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(wire.response(false).await.status, 404);
    }
    let heads = heads.lock().unwrap();
    assert!(heads.iter().all(|h| !h.contains("admin")), "{heads:?}");
    assert!(heads.iter().all(|h| !h.contains("upgrade")), "{heads:?}");
}

/// A client whose body stalls is no upstream failure: it gets a 408 once the route's
/// `body_read_timeout` passes without a byte, and the upstream's health does not count it,
/// so three such clients do not take a healthy upstream out. A client sending its body
/// slowly but steadily, for longer than the route's `timeout`, is served: the upstream's
/// time runs only while the router waits on the upstream. Both servers: HTTP/1.1 takes the
/// fast path, HTTP/1.0 the general one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_a_408_and_never_the_upstreams_failure() {
    let first = Upstream::start("first").await;
    let second = Upstream::start("second").await;
    let route = |name: &str| {
        format!(
            "[[gateway.routes]]\nname = \"{name}\"\npath = \"/{name}\"\nrewrite = \"/\"\n\
             upstreams = [\"{}\", \"{}\"]\ntimeout = \"300ms\"\nbody_read_timeout = \"600ms\"\n\
             retries = 0\npassive_health = {{ failures = 3, cooldown = \"1m\" }}\n",
            first.url(),
            second.url()
        )
    };
    let (router, _dir) = gateway(&format!("{}\n{}", route("fast"), route("general")));
    for (name, version) in [("fast", "HTTP/1.1"), ("general", "HTTP/1.0")] {
        let who = |answer: WireResponse| answer.json()["upstream"].as_str().unwrap().to_owned();
        // In turn: each stalled upload goes to the first upstream, each GET to the second.
        for _ in 0..3 {
            let mut stalled = Wire::connect(&router).await;
            stalled
                .send(
                    format!(
                        "POST /{name}/upload {version}\r\nHost: a\r\nContent-Length: 10\r\n\r\nab"
                    )
                    .as_bytes(),
                )
                .await;
            let started = Instant::now();
            let answer = stalled.response(false).await;
            assert_eq!(answer.status, 408, "{version}");
            assert!(started.elapsed() >= Duration::from_millis(500), "{version}");
            assert_eq!(answer.header("connection"), Some("close"), "{version}");
            let get = format!("GET /{name}/x {version}\r\nHost: a\r\n\r\n");
            assert_eq!(who(exchange(&router, get.as_bytes()).await), "second");
        }
        // Neither upstream was taken out: both still answer in turn.
        let mut answered = Vec::new();
        for _ in 0..4 {
            let get = format!("GET /{name}/x {version}\r\nHost: a\r\n\r\n");
            answered.push(who(exchange(&router, get.as_bytes()).await));
        }
        answered.sort();
        assert_eq!(
            answered,
            ["first", "first", "second", "second"],
            "{version}"
        );

        // Six bytes, one every 150 ms: longer than the route's timeout, never a stall.
        let mut steady = Wire::connect(&router).await;
        steady
            .send(
                format!("POST /{name}/upload {version}\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        for byte in b"steady" {
            tokio::time::sleep(Duration::from_millis(150)).await;
            steady.send(&[*byte]).await;
        }
        let answer = steady.response(false).await;
        assert_eq!(answer.status, 200, "{version}");
        assert_eq!(answer.json()["length"], 6, "{version}");
    }
}

/// Chunked request bodies are read as strictly as hyper's server and nginx read them: a
/// malformed chunk size or line end is a 400 (the connection then closes), never a silent
/// close, nor a body forwarded; a transfer coding other than `chunked` alone is a 501, as
/// nginx answers, rather than a body forwarded with its coding dropped. Nothing reaches the
/// upstream. The same on a route the general server runs (here one with CORS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_and_unknown_codings_are_refused() {
    let upstream = Upstream::start("api").await;
    let (router, _dir) = gateway(&format!(
        "{}\n[[gateway.routes]]\nname = \"cors\"\npath = \"/cors\"\nrewrite = \"/\"\n\
         upstreams = [\"{}\"]\nplugins = [{{ name = \"cors\", origins = [\"*\"] }}]\n",
        api_route(&upstream, ""),
        upstream.url()
    ));
    let head = "POST /api/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "+5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "-1\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "10000000000000005\r\nhello\r\n0\r\n\r\n",
        "5;a\rb\r\nhello\r\n0\r\n\r\n",
        "5\nhello\n0\n\n",
        "5\r\nhello\r\n0\n\r\n",
        "5\r\nhel\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nno colon\r\n\r\n",
        "5\r\nhello\r\n0\r\nx-t: 1\n\r\n",
    ] {
        let answer = exchange(&router, format!("{head}{body}").as_bytes()).await;
        assert_eq!(answer.status, 400, "{body:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{body:?}");
    }
    for coding in ["gzip, chunked", "chunked, gzip", "gzip", "identity"] {
        let request = format!(
            "POST /api/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {coding}\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n"
        );
        let answer = exchange(&router, request.as_bytes()).await;
        assert_eq!(answer.status, 501, "{coding}");
        assert_eq!(answer.header("connection"), Some("close"), "{coding}");
    }
    assert_eq!(
        upstream.hits("POST", "/"),
        0,
        "nothing reached the upstream"
    );

    // The general server (hyper's decoder): a bad chunk is a 400 as well, not a 502 counted
    // against the upstream.
    for body in ["+5\r\nhello\r\n0\r\n\r\n", "5\nhello\n0\n\n"] {
        let request = format!(
            "POST /cors/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let answer = exchange(&router, request.as_bytes()).await;
        assert_eq!(answer.status, 400, "{body:?}");
    }
    let request = "POST /cors/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                   5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(exchange(&router, request.as_bytes()).await.status, 501);
    // Good bodies still pass, with extensions, trailers and white space after the size.
    let good = exchange(
        &router,
        format!("{head}5 ;name=\"v\"\r\nhello\r\n0\r\nx-t: 1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(good.status, 200);
    assert_eq!(good.json()["length"], 5);
}
