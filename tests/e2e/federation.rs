//! The router against subgraphs it did not write: the classic four-subgraph shape, served by
//! `junction gateway --supergraph FILE`, with answers derived by hand from the Federation
//! semantics, and plans kept as snapshots so regressions in plan quality show.

use crate::support;

use junction_federation::operation::{self, Limits};
use junction_federation::planner;
use junction_federation::supergraph::Supergraph;
use serde_json::{Value, json};
use support::Junction;
use support::federation::Subgraphs;

/// `junction gateway` on `supergraph`, as an operator runs it.
fn gateway(supergraph: &str) -> (Junction, tempfile::TempDir) {
    Junction::gateway(supergraph, &[])
}

fn gateway_with(supergraph: &str, env: &[(&str, &str)]) -> (Junction, tempfile::TempDir) {
    Junction::gateway(supergraph, env)
}

/// A token issuer the router trusts through `[gateway.jwt]` with a shared HS256 secret.
const ISSUER_SECRET: &str = "a shared secret for the federation tests, long enough";

/// The `[gateway.jwt]` settings that trust [`token`]s.
fn trusted_issuer() -> Vec<(&'static str, String)> {
    vec![
        (
            "JUNCTION_GATEWAY__JWT__ISSUER",
            "https://issuer.test".into(),
        ),
        ("JUNCTION_GATEWAY__JWT__AUDIENCES", "[\"junction\"]".into()),
        ("JUNCTION_GATEWAY__JWT__ALGORITHMS", "[\"HS256\"]".into()),
        (
            "JUNCTION_GATEWAY__JWT__KEYS",
            format!("[{{algorithm = \"HS256\", secret = \"{ISSUER_SECRET}\"}}]"),
        ),
    ]
}

/// A token of that issuer for `subject` of `tenant` with `scope`, valid five minutes.
fn token(tenant: &str, subject: &str, scope: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "https://issuer.test", "aud": "junction", "sub": subject,
                "tenant": tenant, "scope": scope, "exp": now + 300}),
        &jsonwebtoken::EncodingKey::from_secret(ISSUER_SECRET.as_bytes()),
    )
    .unwrap()
}

struct Router {
    process: Junction,
    subgraphs: Subgraphs,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Router {
    /// The router on the checked-in supergraph.
    async fn start() -> Self {
        let subgraphs = Subgraphs::start().await;
        let supergraph = subgraphs.supergraph();
        Self::start_on(subgraphs, &supergraph)
    }

    fn start_on(subgraphs: Subgraphs, supergraph: &str) -> Self {
        let (process, dir) = gateway(supergraph);
        Self {
            process,
            subgraphs,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn post(&self, query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.process.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }
}

/// The plan for `query` against the checked-in classic supergraph, printed.
fn plan(query: &str) -> (String, usize) {
    let sdl = include_str!("../../gateway/federation/tests/supergraphs/classic.graphql");
    let supergraph = Supergraph::parse(sdl).unwrap();
    let document = operation::parse(&supergraph.api, query, &Limits::default()).unwrap();
    let (normalized, _) =
        operation::normalize(&document, None, &Default::default(), &Limits::default()).unwrap();
    let plan = planner::plan(&supergraph, &normalized).unwrap();
    (plan.to_string(), plan.fetch_count())
}

/// Compares with `gateway/federation/tests/plans/NAME.plan`, where the planner's own snapshots
/// are; `UPDATE_SNAPSHOTS=1` rewrites it.
fn assert_plan_snapshot(name: &str, printed: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("gateway/federation/tests/plans/{name}.plan"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, printed).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        printed, expected,
        "plan {name} changed; if on purpose, run with UPDATE_SNAPSHOTS=1 and review"
    );
}

/// The plan for `operation` against its snapshot `NAME.plan`.
fn assert_plan_snapshot_of(
    supergraph: &Supergraph,
    operation: &junction_federation::operation::Operation,
    name: &str,
) {
    let plan = planner::plan(supergraph, operation).unwrap();
    assert_plan_snapshot(name, &plan.to_string());
}

/// Composes `sources`, checks the plan for `query` against its snapshot `name`, serves the
/// supergraph with `junction gateway`, and returns the answer's data (asserting no errors).
async fn compose_plan_and_answer(
    sources: &[junction_federation::compose::SubgraphSource],
    query: &str,
    name: &str,
) -> Value {
    let supergraph = junction_federation::compose::compose(sources).unwrap();
    let parsed = Supergraph::parse(&supergraph).unwrap();
    let document = operation::parse(&parsed.api, query, &Limits::default()).unwrap();
    let (normalized, _) =
        operation::normalize(&document, None, &Default::default(), &Limits::default()).unwrap();
    assert_plan_snapshot_of(&parsed, &normalized, name);

    let (process, _dir) = gateway(&supergraph);
    let body: Value = reqwest::Client::new()
        .post(process.url("/graphql"))
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

const DEEP: &str =
    "{ topProducts { name reviews { body author { name reviews { product { name } } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deep_query_walks_four_subgraphs() {
    let router = Router::start().await;
    let data = router.data(DEEP, json!({})).await;
    let review = |body: &str, author: &str, products: &[&str]| {
        json!({
            "body": body,
            "author": {
                "name": author,
                "reviews": products.iter().map(|p| json!({"product": {"name": p}})).collect::<Vec<_>>(),
            }
        })
    };
    assert_eq!(
        data,
        json!({"topProducts": [
            {"name": "Table", "reviews": [
                review("Love it!", "Ada Lovelace", &["Table", "Couch"]),
                review("Prefer something else.", "Alan Turing", &["Chair", "Table"]),
            ]},
            {"name": "Couch", "reviews": [review("Too expensive.", "Ada Lovelace", &["Table", "Couch"])]},
            {"name": "Chair", "reviews": [review("Could be better.", "Alan Turing", &["Chair", "Table"])]},
        ]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requires_provides_aliases_fragments_and_variables() {
    let router = Router::start().await;
    // @requires: inventory computes the estimate from price and weight fetched from products.
    let data = router
        .data(
            "query($n: Int) { topProducts(first: $n) { upc shippingEstimate inStock } }",
            json!({"n": 2}),
        )
        .await;
    assert_eq!(
        data,
        json!({"topProducts": [
            {"upc": "1", "shippingEstimate": 50, "inStock": true},
            {"upc": "2", "shippingEstimate": 0, "inStock": false},
        ]})
    );

    // @provides: usernames come with the reviews; accounts is never asked.
    let before = router.subgraphs.accounts.requests();
    let data = router
        .data(
            "{ topProducts(first: 1) { reviews { author { username } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data,
        json!({"topProducts": [{"reviews": [{"author": {"username": "@ada"}}, {"author": {"username": "@complete"}}]}]})
    );
    assert_eq!(router.subgraphs.accounts.requests(), before);

    // Aliases, named and inline fragments, __typename, @skip/@include.
    let data = router
        .data(
            "query($withPrice: Boolean!) {
                first: topProducts(first: 1) { ...Names kind: __typename price @include(if: $withPrice) }
                me { ... on User { handle: name } reviews @skip(if: true) { body } }
                __typename
            }
            fragment Names on Product { title: name upc }",
            json!({"withPrice": false}),
        )
        .await;
    assert_eq!(
        data,
        json!({
            "first": [{"title": "Table", "upc": "1", "kind": "Product"}],
            "me": {"handle": "Ada Lovelace"},
            "__typename": "Query",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_operations_are_refused_before_any_subgraph_is_called() {
    let router = Router::start().await;
    let cases = [
        ("{ topProducts { name", "syntax"),
        ("{ topProducts { nope } }", "unknown field"),
        ("{ topProducts { internalSku } }", "inaccessible field"),
        (
            "query($n: Int) { topProducts(first: $n) { name } }",
            "wrong variable type",
        ),
    ];
    for (query, why) in cases {
        let variables = if why == "wrong variable type" {
            json!({"n": "many"})
        } else {
            json!({})
        };
        let (status, body) = router.post(query, variables).await;
        assert_eq!(status, 400, "{why}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{why}: {body}"
        );
    }
    // Over the limits: depth, aliases, size.
    let deep = format!(
        "{{ me {}{{ name }}{} }}",
        "{ reviews { author ".repeat(12),
        " } }".repeat(12)
    );
    let (status, body) = router.post(&deep, json!({})).await;
    assert_eq!(status, 400, "{body}");
    let aliases: String = (0..101).map(|i| format!("a{i}: me {{ name }} ")).collect();
    let (status, body) = router.post(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("aliases"),
        "{body}"
    );
    let huge = format!("{{ me {{ name }} }} # {}", "x".repeat(70 * 1024));
    let (status, _) = router.post(&huge, json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(
        router.subgraphs.total_requests(),
        0,
        "no subgraph was called"
    );
    let _ = cases;
}

/// Operations written to make the router work hard: fragments spreading the next one twice,
/// forty deep (1.6 KB; 2^40 spreads once expanded naively), are answered as the one small
/// selection they mean, while the router keeps answering others; a selection tree that
/// grows past `max_selections` is refused with a code before any subgraph is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_fan_out_is_answered_or_refused_and_blocks_nothing() {
    let subgraphs = Subgraphs::start().await;
    let (process, _dir) = gateway_with(
        &subgraphs.supergraph(),
        &[("JUNCTION_GATEWAY__LIMITS__MAX_SELECTIONS", "1000")],
    );
    let client = reqwest::Client::new();
    let post = |query: String| {
        client
            .post(process.url("/graphql"))
            .json(&json!({ "query": query }))
            .send()
    };
    let mut doubling = String::from("{ topProducts { ...F0 } }\n");
    for i in 0..40 {
        doubling.push_str(&format!(
            "fragment F{i} on Product {{ ...F{j} ...F{j} }}\n",
            j = i + 1
        ));
    }
    doubling.push_str("fragment F40 on Product { upc }\n");
    assert!(doubling.len() < 2_000);
    let attack = tokio::spawn(post(doubling));
    // Meanwhile the router answers its health checks.
    let live = client
        .get(process.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let answered: Value = attack.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(
        answered["data"]["topProducts"][0],
        json!({"upc": "1"}),
        "{answered}"
    );

    // Reviews' authors' reviews' products' reviews...: two branches per level, 2^10 leaves.
    let mut growing = String::from("{ topProducts { reviews { ...R0 } } }\n");
    for i in 0..9 {
        growing.push_str(&format!(
            "fragment R{i} on Review {{ author {{ reviews {{ ...R{j} }} }} product {{ reviews {{ ...R{j} }} }} }}\n",
            j = i + 1
        ));
    }
    growing.push_str("fragment R9 on Review { id }\n");
    let refused = post(growing).await.unwrap();
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("more than 1000 fields"),
        "{refused}"
    );
    assert_eq!(subgraphs.total_requests(), 1, "only the first was fetched");
}

/// Every field of a selection skipped: the object answers `{}` (as the spec collects fields)
/// and the subgraph is asked a valid query (its `__typename`), not an empty selection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_whose_fields_are_all_skipped_answers_an_empty_object() {
    let router = Router::start().await;
    let data = router
        .data(
            "query($no: Boolean!) { me { name @include(if: $no) ... on User { id @skip(if: true) } } topProducts(first: 1) { upc } }",
            json!({"no": false}),
        )
        .await;
    assert_eq!(data, json!({"me": {}, "topProducts": [{"upc": "1"}]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_answers_from_the_api_schema() {
    let router = Router::start().await;
    let data = router
        .data(
            "{ __type(name: \"Product\") { fields { name } } __schema { types { name } } }",
            json!({}),
        )
        .await;
    let fields: Vec<&str> = data["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "upc",
            "weight",
            "price",
            "inStock",
            "stockLevel",
            "restockEstimate",
            "shippingEstimate",
            "name",
            "reviews"
        ]
    );
    let types: Vec<&str> = data["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"Review"));
    assert!(
        !types
            .iter()
            .any(|t| t.starts_with("join__") || t.starts_with("link__")),
        "{types:?}"
    );
    assert_eq!(router.subgraphs.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_requests_need_a_preflight_header_and_run_queries_only() {
    let router = Router::start().await;
    let url = router
        .process
        .url("/graphql?query=%7B%20me%20%7B%20name%20%7D%20%7D");
    let plain = router.client.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), 400);
    let preflighted = router
        .client
        .get(&url)
        .header("apollo-require-preflight", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(preflighted.status(), 200);
    let body: Value = preflighted.json().await.unwrap();
    assert_eq!(body["data"]["me"]["name"], "Ada Lovelace");

    // The stand-alone router stops promptly and cleanly on SIGTERM.
    let stopping = std::time::Instant::now();
    let (status, _) = router.process.stop_with("TERM");
    assert!(status.success(), "{status}");
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        stopping.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junction_compose_builds_a_supergraph_from_running_subgraphs() {
    let subgraphs = Subgraphs::start().await;
    let dir = tempfile::TempDir::new().unwrap();
    let output = support::process::command(dir.path())
        .arg("compose")
        .args([
            "--subgraph",
            &format!("accounts={}", subgraphs.accounts.url),
        ])
        .args([
            "--subgraph",
            &format!("products={}", subgraphs.products.url),
        ])
        .args([
            "--subgraph",
            &format!("inventory={}", subgraphs.inventory.url),
        ])
        .args(["--subgraph", &format!("reviews={}", subgraphs.reviews.url)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let supergraph = String::from_utf8(output.stdout).unwrap();

    let router = Router::start_on(subgraphs, &supergraph);
    let checked_in = Router::start().await;
    for query in [
        DEEP,
        "{ topProducts { upc shippingEstimate reviews { author { username } } } }",
    ] {
        let composed = router.data(query, json!({})).await;
        let expected = checked_in.data(query, json!({})).await;
        assert_eq!(composed, expected, "{query}");
    }

    // A subgraph that is not one is refused with a clear message.
    let output = support::process::command(dir.path())
        .args([
            "compose",
            "--subgraph",
            "nothing=http://127.0.0.1:9/graphql",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("subgraph nothing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutation_root_fields_run_in_order_across_subgraphs() {
    let router = Router::start().await;
    let query = "mutation { a: tickAccounts b: tickReviews c: tickAccounts d: tickAccounts e: tickReviews }";
    let (printed, fetches) = plan(query);
    assert_eq!(
        fetches, 4,
        "consecutive fields of one subgraph share a fetch:\n{printed}"
    );
    let data = router.data(query, json!({})).await;
    let ticks: Vec<i64> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|k| data[k].as_i64().unwrap())
        .collect();
    let mut sorted = ticks.clone();
    sorted.sort();
    assert_eq!(ticks, sorted, "executed in the order written: {ticks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subgraph_errors_keep_their_paths_and_nulls_propagate() {
    let router = Router::start().await;
    // A nullable field fails for one entity: null there, an error with the response path.
    let (status, body) = router
        .post("{ topProducts { upc inStock } }", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({"topProducts": [
            {"upc": "1", "inStock": true},
            {"upc": "2", "inStock": false},
            {"upc": "3", "inStock": null},
        ]})
    );
    assert_eq!(body["errors"][0]["message"], "warehouse offline");
    assert_eq!(
        body["errors"][0]["path"],
        json!(["topProducts", 2, "inStock"]),
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["service"], "inventory");

    // A non-null field fails: the null propagates to the nearest nullable parent, the product.
    let (_, body) = router
        .post("{ topProducts { upc stockLevel } }", json!({}))
        .await;
    assert_eq!(
        body["data"],
        json!({"topProducts": [{"upc": "1", "stockLevel": 12}, {"upc": "2", "stockLevel": 0}, null]})
    );
    assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(
        body["errors"][0]["path"],
        json!(["topProducts", 2, "stockLevel"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_subgraph_leaves_the_rest_of_the_answer() {
    let subgraphs = Subgraphs::start().await;
    // The inventory subgraph's address now has nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/graphql", closed.local_addr().unwrap());
    drop(closed);
    let supergraph = subgraphs
        .supergraph()
        .replace(&subgraphs.inventory.url, &dead_url);
    let router = Router::start_on(subgraphs, &supergraph);
    let (status, body) = router
        .post("{ topProducts { name inStock } }", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["topProducts"][0],
        json!({"name": "Table", "inStock": null})
    );
    assert_eq!(
        body["errors"][0]["message"],
        "the inventory service is unreachable"
    );
    assert_eq!(
        body["errors"][0]["extensions"],
        json!({"code": "SUBREQUEST_HTTP_ERROR", "service": "inventory"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unions_composite_and_multiple_keys_across_subgraphs() {
    let catalog = support::catalog::Catalog::start().await;
    let data = compose_plan_and_answer(
        &catalog.sources(),
        "{ search { __typename ... on Book { title rating } ... on Movie { title director } } }",
        "union_keys",
    )
    .await;
    assert_eq!(
        data,
        json!({"search": [
            {"__typename": "Book", "title": "Dune", "rating": 5},
            {"__typename": "Movie", "title": "Spirited Away", "director": "Hayao Miyazaki"},
            {"__typename": "Book", "title": "Solaris", "rating": 4},
        ]})
    );
    // search, then books and movies side by side, then ratings after books.
    assert_eq!(catalog.total_requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subgraph_times_out_and_the_rest_still_answers() {
    let subgraphs = Subgraphs::start().await;
    // The inventory subgraph's own timeout, under the 30 s every other subgraph gets.
    let (process, _dir) = gateway_with(
        &subgraphs.supergraph(),
        &[("JUNCTION_GATEWAY__SUBGRAPHS__INVENTORY__TIMEOUT", "300ms")],
    );
    let started = std::time::Instant::now();
    let body: Value = reqwest::Client::new()
        .post(process.url("/graphql"))
        .json(&json!({"query": "{ topProducts(first: 1) { name restockEstimate } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "did not wait for the slow subgraph"
    );
    assert_eq!(
        body["data"],
        json!({"topProducts": [{"name": "Table", "restockEstimate": null}]})
    );
    assert_eq!(
        body["errors"][0]["message"],
        "the inventory service timed out"
    );

    // A name the supergraph does not have is a mistake, said at start.
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("supergraph.graphql");
    std::fs::write(&file, subgraphs.supergraph()).unwrap();
    let output = support::process::command(dir.path())
        .args([
            "gateway",
            "--supergraph",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("JUNCTION_GATEWAY__SUBGRAPHS__INVENTROY__TIMEOUT", "1s")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gateway.subgraphs.inventroy: the supergraph has no subgraph of that name"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_fields_that_live_in_other_subgraphs_are_asked_per_implementation() {
    let media = support::media::Media::start().await;
    let data = compose_plan_and_answer(
        &media.sources(),
        "{ media { __typename title reviewCount } }",
        "interface",
    )
    .await;
    assert_eq!(
        data,
        json!({"media": [
            {"__typename": "Book", "title": "Dune", "reviewCount": 12},
            {"__typename": "Movie", "title": "Alien", "reviewCount": 3},
        ]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_objects_resolve_fields_for_every_implementation() {
    let media = support::media::Media::start().await;
    let data = compose_plan_and_answer(
        &media.sources(),
        "{ media { title playCount ... on Book { reviewCount } } }",
        "interface_object",
    )
    .await;
    assert_eq!(
        data,
        json!({"media": [
            {"title": "Dune", "playCount": 100, "reviewCount": 12},
            {"title": "Alien", "playCount": 40},
        ]})
    );
}

/// `[gateway.rate_limit]`: a burst, then 429 in GraphQL's shape with `Retry-After`, and
/// nothing sent to a subgraph for the refused request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_over_their_rate_are_refused_with_the_headers_to_slow_down() {
    let subgraphs = Subgraphs::start().await;
    let (process, _dir) = gateway_with(
        &subgraphs.supergraph(),
        &[
            ("JUNCTION_GATEWAY__RATE_LIMIT__REQUESTS_PER_SECOND", "0.2"),
            ("JUNCTION_GATEWAY__RATE_LIMIT__BURST", "2"),
        ],
    );
    let client = reqwest::Client::new();
    let ask = || {
        client
            .post(process.url("/graphql"))
            .json(&json!({"query": "{ topProducts { upc } }"}))
            .send()
    };
    for remaining in ["1", "0"] {
        let response = ask().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "2");
        assert_eq!(response.headers()["ratelimit-remaining"], remaining);
    }
    let before = subgraphs.total_requests();
    let refused = ask().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(subgraphs.total_requests(), before, "no subgraph was called");
}

/// Anonymous callers spend their own address's allowance, not one shared by everybody: behind
/// a trusted proxy, the address its `X-Forwarded-For` names (as REST routes count them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_are_limited_by_their_address() {
    let subgraphs = Subgraphs::start().await;
    let (process, _dir) = gateway_with(
        &subgraphs.supergraph(),
        &[
            ("JUNCTION_GATEWAY__RATE_LIMIT__REQUESTS_PER_SECOND", "0.01"),
            ("JUNCTION_GATEWAY__RATE_LIMIT__BURST", "1"),
            (
                "JUNCTION_GATEWAY__HTTP__TRUSTED_PROXIES",
                "[\"127.0.0.0/8\"]",
            ),
        ],
    );
    let client = reqwest::Client::new();
    let ask = |from: &'static str| {
        client
            .post(process.url("/graphql"))
            .header("x-forwarded-for", from)
            .json(&json!({"query": "{ topProducts { upc } }"}))
            .send()
    };
    assert_eq!(ask("198.51.100.1").await.unwrap().status(), 200);
    assert_eq!(
        ask("198.51.100.1").await.unwrap().status(),
        429,
        "its allowance is spent"
    );
    assert_eq!(
        ask("198.51.100.2").await.unwrap().status(),
        200,
        "another client's allowance is its own"
    );
}

/// Automatic persisted queries: a hash alone is unknown until sent with its query; then a GET
/// with the hash alone runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_queries_run_by_hash() {
    use sha2::Digest;
    let router = Router::start().await;
    let query = "{ topProducts { upc } }";
    let hash: String = sha2::Sha256::digest(query.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let extensions = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let url = reqwest::Url::parse_with_params(
        &router.process.url("/graphql"),
        &[("extensions", extensions.to_string())],
    )
    .unwrap();
    let by_hash = || {
        router
            .client
            .get(url.clone())
            .header("apollo-require-preflight", "true")
            .send()
    };
    let unknown: Value = by_hash().await.unwrap().json().await.unwrap();
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    let registered: Value = router
        .client
        .post(router.process.url("/graphql"))
        .json(&json!({"query": query, "extensions": extensions}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(registered["data"]["topProducts"].is_array(), "{registered}");
    let cached: Value = by_hash().await.unwrap().json().await.unwrap();
    assert_eq!(cached["data"], registered["data"]);

    // A query refused (here: a field that does not exist) is not kept for its hash.
    let invalid = "{ topProducts { nope } }";
    let hash: String = sha2::Sha256::digest(invalid.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let extensions = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let refused = router
        .client
        .post(router.process.url("/graphql"))
        .json(&json!({"query": invalid, "extensions": extensions}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let again: Value = router
        .client
        .post(router.process.url("/graphql"))
        .json(&json!({ "extensions": extensions }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND",
        "{again}"
    );
}

/// The router's edge: request ids (kept or made, echoed, passed to subgraphs), a body size
/// limit, CORS for the configured origins only, gzip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_ids_limits_cors_and_compression() {
    let subgraphs = Subgraphs::start().await;
    let (process, _dir) = gateway_with(
        &subgraphs.supergraph(),
        &[
            (
                "JUNCTION_GATEWAY__HTTP__CORS_ORIGINS",
                "[\"https://app.example\"]",
            ),
            ("JUNCTION_GATEWAY__HTTP__MAX_BODY_BYTES", "65536"),
        ],
    );
    let client = reqwest::Client::new();
    let url = process.url("/graphql");
    let query = json!({"query": "{ topProducts { upc } }"});

    let made = client.post(&url).json(&query).send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(subgraphs.products.last_request_id(), Some(id));
    let kept = client
        .post(&url)
        .header("x-request-id", "client-chosen-42")
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "client-chosen-42");
    assert_eq!(
        subgraphs.products.last_request_id().as_deref(),
        Some("client-chosen-42")
    );

    let big = format!(
        "{{\"query\": \"{{ topProducts {{ upc }} }}\", \"pad\": \"{}\"}}",
        "x".repeat(100_000)
    );
    let refused = client
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    assert_eq!(refused.headers()["connection"], "close");
    let refused: Value = refused.json().await.expect("a GraphQL error, in JSON");
    assert_eq!(refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(
        refused["errors"][0]["message"],
        "the request body is larger than the limit of 65536 bytes"
    );

    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let bundle = client
        .get(process.url("/playground/assets/vendor/graphiql.min.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.headers()["content-encoding"], "gzip");
    let compressed = bundle.bytes().await.unwrap().len();
    assert!(
        compressed < 1_500_000,
        "3.5 MB gzipped to {compressed} bytes"
    );
}

/// SIGHUP reloads the configuration (and the supergraph): requests in flight finish, new ones
/// see the new limits, and a broken file keeps the running configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_on_sighup_changes_limits_and_no_request_fails() {
    let subgraphs = Subgraphs::start().await;
    let dir = tempfile::TempDir::new().unwrap();
    let supergraph = dir.path().join("supergraph.graphql");
    std::fs::write(&supergraph, subgraphs.supergraph()).unwrap();
    let config = dir.path().join("junction.toml");
    // SIGHUP alone: no watching of files here.
    let watch_off = "[gateway]\nwatch_interval = \"0s\"\n";
    std::fs::write(
        &config,
        format!("{watch_off}[gateway.limits]\nmax_depth = 20\n"),
    )
    .unwrap();
    let process = Junction::gateway_in(dir.path(), &supergraph, &[]);
    let client = reqwest::Client::new();
    let url = process.url("/graphql");
    let deep =
        json!({"query": "{ topProducts { reviews { author { reviews { product { name } } } } } }"});
    let status = |body: Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(&url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(deep.clone()).await, 200);

    // Steady traffic throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, url, stop) = (client.clone(), url.clone(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let sent = client
                    .post(&url)
                    .json(&json!({"query": "{ topProducts { upc } }"}))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &process.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };

    std::fs::write(
        &config,
        format!("{watch_off}[gateway.limits]\nmax_depth = 3\n"),
    )
    .unwrap();
    hangup();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while status(deep.clone()).await != 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new limit never applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A broken file: the running configuration stays.
    std::fs::write(
        &config,
        format!("{watch_off}[gateway.limits]\nmax_depth = \"deep\"\n"),
    )
    .unwrap();
    hangup();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(status(deep.clone()).await, 400, "still the reloaded limit");
    assert_eq!(
        status(json!({"query": "{ topProducts { upc } }"})).await,
        200
    );

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 10, "traffic flowed: {ok}");
    assert_eq!(failed, 0, "no request failed across reloads");
}

/// With `redis_url`, two router instances share each consumer's allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_across_routers_through_redis() {
    let redis = support::redis::Redis::start();
    let subgraphs = Subgraphs::start().await;
    let url = redis.url();
    let env = [
        ("JUNCTION_GATEWAY__RATE_LIMIT__REQUESTS_PER_SECOND", "0.2"),
        ("JUNCTION_GATEWAY__RATE_LIMIT__BURST", "2"),
        ("JUNCTION_GATEWAY__RATE_LIMIT__REDIS_URL", url.as_str()),
    ];
    let (one, _one_dir) = gateway_with(&subgraphs.supergraph(), &env);
    let (two, _two_dir) = gateway_with(&subgraphs.supergraph(), &env);
    let client = reqwest::Client::new();
    let ask = |process: &Junction| {
        client
            .post(process.url("/graphql"))
            .json(&json!({"query": "{ topProducts { upc } }"}))
            .send()
    };
    let first = ask(&one).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit-remaining"], "1");
    let second = ask(&two).await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.headers()["ratelimit-remaining"],
        "0",
        "the other router counted"
    );
    let refused = ask(&one).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));

    // Redis gone: requests go through rather than fail.
    drop(redis);
    assert_eq!(ask(&two).await.unwrap().status(), 200);
}

/// The classic supergraph with Apollo's authorization directives, as Apollo's composition
/// writes them: `me` needs a signed-in caller, `inStock` a scope, `stockLevel` (non-null) one
/// of two scopes, and the `Review` type a scope of its own.
fn supergraph_with_authorization(subgraphs: &Subgraphs) -> String {
    let mut sdl = subgraphs.supergraph();
    for (from, to) in [
        (
            "  @link(url: \"https://specs.apollo.dev/join/v0.3\", for: EXECUTION)\n",
            "  @link(url: \"https://specs.apollo.dev/join/v0.3\", for: EXECUTION)\n  @link(url: \"https://specs.apollo.dev/authenticated/v0.1\", for: SECURITY)\n  @link(url: \"https://specs.apollo.dev/requiresScopes/v0.1\", for: SECURITY)\n",
        ),
        (
            "scalar join__FieldSet\n",
            "directive @authenticated on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n\ndirective @requiresScopes(scopes: [[requiresScopes__Scope!]!]!) on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n\nscalar requiresScopes__Scope\n\nscalar join__FieldSet\n",
        ),
        (
            "me: User @join__field(graph: ACCOUNTS)",
            "me: User @join__field(graph: ACCOUNTS) @authenticated",
        ),
        (
            "inStock: Boolean @join__field(graph: INVENTORY)",
            "inStock: Boolean @join__field(graph: INVENTORY) @requiresScopes(scopes: [[\"inventory:read\"]])",
        ),
        (
            "stockLevel: Int! @join__field(graph: INVENTORY)",
            "stockLevel: Int! @join__field(graph: INVENTORY) @requiresScopes(scopes: [[\"inventory:read\"], [\"admin\"]])",
        ),
        (
            "type Review\n  @join__type(graph: REVIEWS, key: \"id\")\n",
            "type Review\n  @join__type(graph: REVIEWS, key: \"id\")\n  @requiresScopes(scopes: [[\"reviews:read\"]])\n",
        ),
    ] {
        assert!(sdl.contains(from), "{from}");
        sdl = sdl.replace(from, to);
    }
    sdl
}

/// `@authenticated` and `@requiresScopes` are enforced by the router: a field the caller may
/// not see is nulled with an `UNAUTHORIZED_FIELD_OR_TYPE` error and never asked of a
/// subgraph; a non-null one nulls its parent; callers with the scopes see everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_directives_null_what_the_caller_may_not_see() {
    let subgraphs = Subgraphs::start().await;
    let supergraph = supergraph_with_authorization(&subgraphs);
    let (anonymous, _dir) = gateway(&supergraph);
    let client = reqwest::Client::new();
    let ask = |url: String, token: Option<String>, query: &'static str| {
        let client = client.clone();
        async move {
            let mut request = client.post(url).json(&json!({"query": query}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let url = anonymous.url("/graphql");

    let body = ask(url.clone(), None, "{ me { name } }").await;
    assert_eq!(body["data"], json!({"me": null}), "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["me"]));
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "UNAUTHORIZED_FIELD_OR_TYPE"
    );
    assert_eq!(subgraphs.accounts.requests(), 0, "never asked");

    let body = ask(url.clone(), None, "{ topProducts { upc inStock } }").await;
    let products = body["data"]["topProducts"].as_array().unwrap();
    assert!(!products.is_empty());
    assert!(
        products
            .iter()
            .all(|p| p["inStock"].is_null() && p["upc"].is_string()),
        "{body}"
    );
    assert_eq!(body["errors"].as_array().unwrap().len(), 1);
    assert_eq!(subgraphs.inventory.requests(), 0, "inventory never asked");

    // A non-null field the caller may not see nulls the object holding it.
    let body = ask(url.clone(), None, "{ topProducts { upc stockLevel } }").await;
    assert!(
        body["data"]["topProducts"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_null),
        "{body}"
    );
    // A field of a protected type; and every sub-field taken leaves the parent as {}.
    let body = ask(
        url.clone(),
        None,
        "{ topProducts { name reviews { body } } }",
    )
    .await;
    assert!(body["data"]["topProducts"][0]["name"].is_string(), "{body}");
    assert!(
        body["data"]["topProducts"][0]["reviews"].is_null(),
        "{body}"
    );
    assert_eq!(subgraphs.reviews.requests(), 0);
    // The API schema shows no authorization directives.
    let body = ask(
        url.clone(),
        None,
        "{ __schema { types { name } directives { name } } }",
    )
    .await;
    let text = body.to_string();
    assert!(
        !text.contains("requiresScopes") && !text.contains("authenticated"),
        "{text}"
    );

    // With tokens: what the scopes allow, and nothing more.
    let issuer = trusted_issuer();
    let env: Vec<(&str, &str)> = issuer.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (signed, _signed_dir) = gateway_with(&supergraph, &env);
    let token = |scope: &str| token("acme", "client-1", scope);
    let url = signed.url("/graphql");
    let query = "{ me { name } topProducts { upc inStock stockLevel reviews { body } } }";
    let unauthorized = |body: &Value| -> Vec<Value> {
        body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["extensions"]["code"] == "UNAUTHORIZED_FIELD_OR_TYPE")
            .map(|e| e["path"].clone())
            .collect()
    };
    let body = ask(
        url.clone(),
        Some(token("inventory:read reviews:read")),
        query,
    )
    .await;
    assert!(unauthorized(&body).is_empty(), "{body}");
    assert!(body["data"]["me"]["name"].is_string(), "{body}");
    assert!(
        body["data"]["topProducts"][0]["inStock"].is_boolean(),
        "{body}"
    );
    assert!(
        body["data"]["topProducts"][0]["reviews"].is_array(),
        "{body}"
    );
    // `admin` opens stockLevel (the second alternative) but not inStock or reviews.
    let body = ask(url.clone(), Some(token("admin")), query).await;
    assert!(body["data"]["me"]["name"].is_string(), "signed in: {body}");
    assert!(
        body["data"]["topProducts"][0]["stockLevel"].is_number(),
        "{body}"
    );
    assert!(
        body["data"]["topProducts"][0]["inStock"].is_null(),
        "{body}"
    );
    assert_eq!(
        unauthorized(&body),
        [
            json!(["topProducts", "inStock"]),
            json!(["topProducts", "reviews"])
        ]
    );
}

/// `[gateway.cost]`: an operation estimated above the maximum is refused before any subgraph
/// is called; with `unit = "cost"` the rate limit spends each operation's cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_operations_are_refused_and_rate_limits_can_count_cost() {
    let subgraphs = Subgraphs::start().await;
    let (router, _dir) = gateway_with(
        &subgraphs.supergraph(),
        &[
            ("JUNCTION_GATEWAY__COST__MAX", "500"),
            ("JUNCTION_GATEWAY__RATE_LIMIT__UNIT", "cost"),
            ("JUNCTION_GATEWAY__RATE_LIMIT__REQUESTS_PER_SECOND", "0.5"),
            ("JUNCTION_GATEWAY__RATE_LIMIT__BURST", "30"),
        ],
    );
    let client = reqwest::Client::new();
    let ask = |query: &str| {
        client
            .post(router.url("/graphql"))
            .json(&json!({"query": query}))
            .send()
    };
    // Ten assumed products, each with ten reviews whose authors have ten reviews: 2,210.
    let deep = ask("{ topProducts { reviews { author { reviews { product { name } } } } } }")
        .await
        .unwrap();
    assert_eq!(deep.status(), 400);
    let body: Value = deep.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "COST_ESTIMATED_TOO_EXPENSIVE"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("estimated cost is 2210, above the maximum of 500"),
        "{body}"
    );
    assert_eq!(subgraphs.total_requests(), 0, "refused before any subgraph");

    // `{ topProducts { upc } }` costs 10: three fit a burst of 30 units, the fourth waits.
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = ask("{ topProducts { upc } }").await.unwrap();
        assert_eq!(response.status(), 200);
        remaining.push(
            response.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["20", "10", "0"]);
    let refused = ask("{ topProducts { upc } }").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["retry-after"],
        "20",
        "10 units at 0.5 a second"
    );
}

/// `per = "tenant"`: a tenant's keys and tokens share one allowance; a named operation can
/// have a limit of its own on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_tenant_and_per_operation() {
    let subgraphs = Subgraphs::start().await;
    let issuer = trusted_issuer();
    let mut env: Vec<(&str, &str)> = issuer.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("JUNCTION_GATEWAY__RATE_LIMIT__REQUESTS_PER_SECOND", "0.01"),
        ("JUNCTION_GATEWAY__RATE_LIMIT__BURST", "3"),
        ("JUNCTION_GATEWAY__RATE_LIMIT__PER", "tenant"),
        (
            "JUNCTION_GATEWAY__RATE_LIMIT__OPERATIONS",
            "{ Expensive = { requests_per_second = 0.01, burst = 1 } }",
        ),
    ]);
    let (router, _dir) = gateway_with(&subgraphs.supergraph(), &env);
    let token = |tenant: &str, subject: &str| token(tenant, subject, "");
    let client = reqwest::Client::new();
    let ask = |token: String, query: &'static str| {
        client
            .post(router.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({"query": query}))
            .send()
    };
    let cheap = "query Cheap { topProducts { upc } }";
    let expensive = "query Expensive { topProducts { name } }";

    let first = ask(token("acme", "key-1"), expensive).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["ratelimit-remaining"],
        "0",
        "the operation's own limit"
    );
    let again = ask(token("acme", "key-2"), expensive).await.unwrap();
    assert_eq!(
        again.status(),
        429,
        "another key of the tenant shares the operation's limit"
    );
    // Other operations draw on the tenant's allowance: 3 in all, and both requests above
    // spent from it (the limit of every request is counted before the operation's).
    let statuses: Vec<u16> = futures_util::future::join_all(
        ["key-1", "key-2", "key-3"].map(|subject| ask(token("acme", subject), cheap)),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap().status().as_u16())
    .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 429, 429], "{statuses:?}");
    // Another tenant has its own allowance.
    let other = ask(token("globex", "key-1"), cheap).await.unwrap();
    assert_eq!(other.status(), 200);
}

/// #22, @requires: a required field computed through @requires itself (`total` needs
/// `shippingCost`, which needs `price weight`), and required fields fetched from their owner
/// for an entity the requiring subgraph returned itself (`cheapest`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requires_chained_and_from_the_requiring_subgraph() {
    let shop = support::scenarios::Shop::start().await;
    // Lamp: 30 + twice its weight of 4; Desk: 250, shipped free from 100 up.
    let data = compose_plan_and_answer(
        &shop.sources(),
        "{ products { name total } }",
        "requires_chained",
    )
    .await;
    assert_eq!(
        data,
        json!({"products": [{"name": "Lamp", "total": 38}, {"name": "Desk", "total": 250}]})
    );
    let data = compose_plan_and_answer(
        &shop.sources(),
        "{ cheapest { id name shippingCost } }",
        "requires_same_subgraph",
    )
    .await;
    assert_eq!(
        data,
        json!({"cheapest": {"id": "p1", "name": "Lamp", "shippingCost": 8}})
    );
}

/// #22, choosing where to go: `Category.details` lives only in a subgraph that reaches
/// categories through `Product`'s key, so the plan hops through the parent entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_type_field_is_reached_through_its_parent_entity() {
    let parts = support::scenarios::Parts::start().await;
    let data = compose_plan_and_answer(
        &parts.sources(),
        "{ parts { name category { id details } } }",
        "parent_entity_hop",
    )
    .await;
    assert_eq!(
        data,
        json!({"parts": [
            {"name": "Bolt", "category": {"id": "c1", "details": "fasteners, steel"}},
            {"name": "Gear", "category": {"id": "c2", "details": "transmission, brass"}},
        ]})
    );
}

/// #22, `@requires` with arguments: `author` needs `comments(limit: 3) { authorId }` while the
/// client selects `comments(limit: 1)` (written out, through a variable, and through two
/// fragments); the subgraph gets the three it requires, the client its one. And an
/// `@inaccessible` enum value answers null: the API has no such value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requires_with_arguments_and_inaccessible_enum_values() {
    let feed = support::scenarios::Feed::start().await;
    let expected = json!({"feed": [
        {"author": {"id": "a2"}, "comments": [{"id": "c1"}]},
        {"author": {"id": "a1"}, "comments": [{"id": "c5"}]},
    ]});
    let data = compose_plan_and_answer(
        &feed.sources(),
        "{ feed { author { id } comments(limit: 1) { id } } }",
        "requires_with_arguments",
    )
    .await;
    assert_eq!(data, expected);
    let supergraph = junction_federation::compose::compose(&feed.sources()).unwrap();
    let (process, _dir) = gateway(&supergraph);
    let client = reqwest::Client::new();
    let answer = |query: &'static str, variables: Value| {
        let request = client
            .post(process.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let through_variable = answer(
        "query($limit: Int = 1) { feed { author { id } comments(limit: $limit) { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(through_variable, json!({"data": expected}));
    let through_fragments = answer(
        "query($limit: Int = 1) { feed { author { id } ...Foo ...Bar } } \
         fragment Foo on Post { comments(limit: $limit) { id } } \
         fragment Bar on Post { comments(limit: $limit) { id } }",
        json!({}),
    )
    .await;
    assert_eq!(through_fragments, json!({"data": expected}));
    let visibility = answer("{ feed { id visibility } }", json!({})).await;
    assert_eq!(
        visibility,
        json!({"data": {"feed": [
            {"id": "p1", "visibility": "PUBLIC"},
            {"id": "p2", "visibility": null},
        ]}})
    );
}

/// The response map is ordered by the selection set (GraphQL spec, "Serialization Format"):
/// fields answer in the order selected, through fragments, aliases and nested selections,
/// whichever subgraph answered each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_answer_in_the_order_they_were_selected() {
    let router = Router::start().await;
    let query = "query { topProducts(first: 1) { upc ...Card reviews { id body author { username id } } \
                 price name } me { name id } } fragment Card on Product { title: name ... on Product { weight } }";
    let response = router
        .client
        .post(router.process.url("/graphql"))
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&response).unwrap();
    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }
    let data = &body["data"];
    assert_eq!(keys(data), ["topProducts", "me"], "{response}");
    let product = &data["topProducts"][0];
    assert_eq!(
        keys(product),
        ["upc", "title", "weight", "reviews", "price", "name"],
        "{response}"
    );
    let review = &product["reviews"][0];
    assert_eq!(keys(review), ["id", "body", "author"], "{response}");
    assert_eq!(keys(&review["author"]), ["username", "id"], "{response}");
    assert_eq!(keys(&data["me"]), ["name", "id"], "{response}");
}
