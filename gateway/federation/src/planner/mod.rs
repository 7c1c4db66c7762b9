//! The query planner: Hive Router's (`hive-router-query-planner`, MIT) behind Junction's plan
//! type. It searches a query graph of every subgraph's types and fields (keys, requires, root
//! fields and interface objects as edges) for the cheapest covering plan; [`hive`] feeds it
//! our normalized operation and converts its plan into a [`QueryPlan`], which the router's
//! executor runs, prints and caches. (Junction's first planner, greedy from one subgraph, was
//! removed once this one planned every case of the compliance suite it failed: issue #22.)

pub mod hive;

use crate::operation::Operation;
use crate::plan::QueryPlan;
use crate::supergraph::{Labels, Supergraph};

/// Why an operation cannot be planned: the planner's reason (it names subgraphs and types,
/// so it is for the logs, not for clients).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct PlanError(pub String);

/// Plans `operation` with no progressive-override label active.
pub fn plan(supergraph: &Supergraph, operation: &Operation) -> Result<QueryPlan, PlanError> {
    plan_with(supergraph, operation, &Labels::new())
}

/// Plans `operation` with the given progressive-override labels active.
pub fn plan_with(
    supergraph: &Supergraph,
    operation: &Operation,
    labels: &Labels,
) -> Result<QueryPlan, PlanError> {
    hive::plan_with(supergraph, operation, labels)
}

#[cfg(test)]
mod tests {
    use crate::compose::{SubgraphSource, compose};
    use crate::operation::{self, Limits};
    use crate::supergraph::Supergraph;

    const LINK: &str = "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.5\", import: [\"@key\", \"@shareable\", \"@external\", \"@requires\", \"@provides\"])\n";

    /// The printed plan for `query` over subgraphs given as (name, SDL).
    fn plan(subgraphs: &[(&str, &str)], query: &str) -> (String, usize) {
        let sources: Vec<SubgraphSource> = subgraphs
            .iter()
            .map(|(name, sdl)| SubgraphSource {
                name: (*name).into(),
                url: format!("http://{name}.local/graphql"),
                sdl: format!("{LINK}{sdl}"),
            })
            .collect();
        let supergraph = Supergraph::parse(&compose(&sources).unwrap()).unwrap();
        let document = operation::parse(&supergraph.api, query, &Limits::default()).unwrap();
        let (normalized, _) =
            operation::normalize(&document, None, &Default::default(), &Limits::default()).unwrap();
        let plan = super::plan(&supergraph, &normalized).unwrap();
        (plan.to_string(), plan.fetch_count())
    }

    #[test]
    fn shareable_fields_come_from_the_fetch_already_under_way() {
        let (printed, fetches) = plan(
            &[
                (
                    "a",
                    "type Query { products: [Product] } type Product @key(fields: \"id\") { id: ID! name: String @shareable }",
                ),
                (
                    "b",
                    "type Product @key(fields: \"id\") { id: ID! name: String @shareable price: Int }",
                ),
            ],
            "{ products { name price } }",
        );
        assert_eq!(fetches, 2, "{printed}");
        assert!(
            printed.contains("{ products { __typename name id } }"),
            "{printed}"
        );
        assert!(
            printed.contains("{ ... on Product { price } }"),
            "{printed}"
        );
    }

    #[test]
    fn root_fields_group_by_subgraph_and_run_in_parallel() {
        let (printed, fetches) = plan(
            &[
                ("a", "type Query { one: Int two: Int }"),
                ("b", "type Query { three: Int }"),
            ],
            "{ one three two }",
        );
        assert_eq!(fetches, 2, "{printed}");
        assert!(printed.contains("Parallel"), "{printed}");
        assert!(printed.contains("{ one two }"), "{printed}");
    }

    #[test]
    fn provides_through_a_union_saves_the_jump() {
        let (printed, fetches) = plan(
            &[
                (
                    "feed",
                    "type Query { feed: [FeedItem] @provides(fields: \"... on Post { title }\") } union FeedItem = Post | Ad type Post @key(fields: \"id\") { id: ID! title: String @external } type Ad { id: ID! }",
                ),
                (
                    "posts",
                    "type Post @key(fields: \"id\") { id: ID! title: String body: String }",
                ),
            ],
            "{ feed { ... on Post { title } } }",
        );
        assert_eq!(fetches, 1, "{printed}");
        // Without the provided field, the body needs the posts subgraph.
        let (printed, fetches) = plan(
            &[
                (
                    "feed",
                    "type Query { feed: [FeedItem] @provides(fields: \"... on Post { title }\") } union FeedItem = Post | Ad type Post @key(fields: \"id\") { id: ID! title: String @external } type Ad { id: ID! }",
                ),
                (
                    "posts",
                    "type Post @key(fields: \"id\") { id: ID! title: String body: String }",
                ),
            ],
            "{ feed { ... on Post { title body } } }",
        );
        assert_eq!(fetches, 2, "{printed}");
    }

    #[test]
    fn requires_on_requires_chain_through_the_subgraphs() {
        let (printed, fetches) = plan(
            &[
                (
                    "a",
                    "type Query { item: Item } type Item @key(fields: \"id\") { id: ID! base: Int }",
                ),
                (
                    "b",
                    "type Item @key(fields: \"id\") { id: ID! base: Int @external doubled: Int @requires(fields: \"base\") }",
                ),
                (
                    "c",
                    "type Item @key(fields: \"id\") { id: ID! doubled: Int @external quadrupled: Int @requires(fields: \"doubled\") }",
                ),
            ],
            "{ item { quadrupled } }",
        );
        assert_eq!(fetches, 3, "{printed}");
        assert!(
            printed.contains("{ item { __typename id base } }"),
            "{printed}"
        );
        assert!(
            printed.contains("{ ... on Item { __typename base id } }"),
            "b gets base: {printed}"
        );
        assert!(
            printed.contains("{ ... on Item { __typename doubled id } }"),
            "c gets doubled: {printed}"
        );
    }

    #[test]
    fn requires_with_arguments_are_fetched_with_their_arguments() {
        let (printed, fetches) = plan(
            &[
                (
                    "catalog",
                    "type Query { item: Item } type Item @key(fields: \"id\") { id: ID! weight(unit: String): Float }",
                ),
                (
                    "shipping",
                    "type Item @key(fields: \"id\") { id: ID! weight(unit: String): Float @external cost: Float @requires(fields: \"weight(unit: \\\"kg\\\")\") }",
                ),
            ],
            "{ item { cost } }",
        );
        assert_eq!(fetches, 2, "{printed}");
        assert!(printed.contains("weight(unit: \"kg\")"), "{printed}");
    }
}
