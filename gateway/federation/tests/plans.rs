//! Plans kept as snapshots, so a change in plan quality shows in review: the classic
//! four-subgraph supergraph planned as the router plans it. (Plans of supergraphs composed
//! from running subgraphs are checked against the same folder by the end-to-end tests.)

use junction_federation::operation::{self, Limits};
use junction_federation::planner;
use junction_federation::supergraph::Supergraph;

/// The plan for `query` against the checked-in supergraph, printed, and its fetch count.
fn plan(query: &str) -> (String, usize) {
    let sdl = include_str!("supergraphs/classic.graphql");
    let supergraph = Supergraph::parse(sdl).unwrap();
    let document = operation::parse(&supergraph.api, query, &Limits::default()).unwrap();
    let (normalized, _) =
        operation::normalize(&document, None, &Default::default(), &Limits::default()).unwrap();
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

#[test]
fn deep_query_plan_snapshot() {
    let (printed, fetches) = plan(DEEP);
    assert_plan_snapshot("deep", &printed);
    // Hive Router plans this shape in 7 fetches, Apollo Router in 16.
    assert_eq!(fetches, 4, "{printed}");
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
