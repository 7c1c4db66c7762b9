//! Plans kept as snapshots (`plans/NAME.plan`), so a change in plan quality shows in review:
//! the classic four-subgraph supergraph planned as the router plans it. (Plans of supergraphs
//! composed from running subgraphs are checked against the same folder by the end-to-end
//! tests.)

use std::time::Instant;

use junction_federation::operation::{self, Limits, Operation};
use junction_federation::planner;
use junction_federation::supergraph::{Labels, Supergraph};

fn classic() -> Supergraph {
    Supergraph::parse(include_str!("supergraphs/classic.graphql")).unwrap()
}

fn normalize(supergraph: &Supergraph, query: &str) -> Operation {
    let document = operation::parse(&supergraph.api, query, &Limits::default()).unwrap();
    operation::normalize(&document, None, &Default::default(), &Limits::default())
        .unwrap()
        .0
}

/// The plan for `query` against the checked-in supergraph, printed, and its fetch count.
fn plan(query: &str) -> (String, usize) {
    let supergraph = classic();
    let normalized = normalize(&supergraph, query);
    let plan = planner::plan(&supergraph, &normalized).unwrap();
    (plan.to_string(), plan.fetch_count())
}

/// Compares with `plans/NAME.plan`; `UPDATE_SNAPSHOTS=1` rewrites it.
fn assert_plan_snapshot(name: &str, printed: &str) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/plans/{name}.plan"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, printed).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        printed, expected,
        "plan {name} changed; if on purpose, run with UPDATE_SNAPSHOTS=1 and review"
    );
}

const DEEP: &str =
    "{ topProducts { name reviews { body author { name reviews { product { name } } } } } }";

/// Heavier than `DEEP`: the reviews' authors' reviews' products with inventory's `@requires`
/// field (`shippingEstimate` needs `price` and `weight` from products), through named and
/// inline fragments and aliases.
const HEAVY: &str = r#"
query Heavy {
  top: topProducts(first: 5) {
    ...ProductCard
    reviews {
      body
      author {
        handle: username
        name
        reviews {
          product {
            ...ProductCard
            ... on Product { inStock stockLevel }
          }
        }
      }
    }
  }
  me { id name }
}
fragment ProductCard on Product {
  upc
  title: name
  price
  shippingEstimate
  cost: price
}
"#;

#[test]
fn deep_query_plan_snapshot() {
    let (printed, fetches) = plan(DEEP);
    assert_plan_snapshot("deep", &printed);
    assert_eq!(fetches, 4, "{printed}");
}

#[test]
fn heavy_query_plan_snapshot() {
    let (printed, fetches) = plan(HEAVY);
    assert_plan_snapshot("heavy", &printed);
    // Junction's first planner took 8.
    assert!(fetches <= 7, "{printed}");
}

#[test]
fn requires_and_provides_plan_snapshot() {
    let (printed, _) =
        plan("{ topProducts { name shippingEstimate reviews { author { username } } } }");
    assert_plan_snapshot("requires_provides", &printed);
    assert!(
        !printed.contains("\"accounts\""),
        "@provides saves the accounts fetch:\n{printed}"
    );
}

/// Planning time on the classic supergraph's queries (printed, never
/// asserted: `cargo test -p junction-federation --release --test plans -- --nocapture
/// planning_time`). Plans are cached by the router, so this is paid once per operation.
#[test]
fn planning_time() {
    let supergraph = classic();
    // Build the planner's state before timing: the router does it once per supergraph.
    let started = Instant::now();
    planner::hive::state(&supergraph).unwrap();
    println!("planner state built in {:?}", started.elapsed());
    let queries = [
        ("one fetch", "{ topProducts { upc name } }"),
        ("deep", DEEP),
        (
            "requires+provides",
            "{ topProducts { name shippingEstimate reviews { author { username } } } }",
        ),
        ("heavy", HEAVY),
        (
            "me",
            "{ me { id name reviews { body product { upc name inStock } } } }",
        ),
    ];
    let rounds = if cfg!(debug_assertions) { 20 } else { 500 };
    for (name, query) in queries {
        let operation = normalize(&supergraph, query);
        let started = Instant::now();
        let mut fetches = 0;
        for _ in 0..rounds {
            fetches = planner::plan_with(&supergraph, &operation, &Labels::new())
                .unwrap()
                .fetch_count();
        }
        let each = started.elapsed() / rounds;
        println!("{name:>18}: {each:>10.1?} ({fetches} fetches)");
    }
}
