//! REST passthrough end to end: `junction gateway` (and `junction serve` for API keys) with
//! `[[gateway.routes]]` in front of real HTTP services on loopback, spoken to over HTTP and
//! WebSocket as a legacy client would.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use junction_schema::identity::{IdentityKey, IdentityVerifier};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::upstream::{Upstream, pattern_byte};
use support::{Junction, TestDatabase};

/// Every route in these tests sits next to a supergraph whose subgraphs are never called.
fn supergraph() -> String {
    include_str!("federation/classic.graphql")
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
    let identity = IdentityVerifier::new(vec![key], Duration::from_secs(60))
        .verify(&headers)
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
