//! The Hive planner (`hive-router-query-planner`, MIT, the planner of Hive Router) behind our
//! plan type.
//!
//! Its state is built once per supergraph (on first use, kept in [`Supergraph`]). An
//! operation reaches it as our normalized [`Operation`] printed back to GraphQL: fragments
//! already expanded, `@skip`/`@include` already applied and the fields the caller may not see
//! already taken out, so what it plans is what we would. Its plan is converted node by node
//! into [`QueryPlan`]; its input and output rewrites and batched entity fetches become ours.
//!
//! The crate panics on some inputs (`unwrap`s in its planning code); every call into it runs
//! under `catch_unwind`, and a panic is a [`PlanError`] like any other planning failure.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use apollo_compiler::ast::{FloatValue, IntValue, OperationType, Value};
use apollo_compiler::{Name, Node};
use hive_router_query_planner::ast::normalization::normalize_operation;
use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::ast::value::Value as HiveValue;
use hive_router_query_planner::graph::PlannerOverrideContext;
use hive_router_query_planner::planner::plan_nodes::{
    FetchNode, FetchNodePathSegment, FetchRewrite, FlattenNodePath, FlattenNodePathSegment,
    PlanNode as HiveNode,
};
use hive_router_query_planner::planner::{Planner, QueryPlannerOptions};
use hive_router_query_planner::state::supergraph_state::OperationKind;
use hive_router_query_planner::utils::cancellation::CancellationToken;
use hive_router_query_planner::utils::parsing::{safe_parse_operation, safe_parse_schema};

use super::PlanError;
use crate::operation::Operation;
use crate::plan::{
    BatchFetch, EntityBatch, Fetch, PathElement, PlanNode, QueryPlan, Rewrite, RewriteStep,
};
use crate::selection::{Field, Fragment, Selection, write_selections};
use crate::supergraph::{Labels, Supergraph};

/// Percentage labels are drawn by the router per request (each label on its own), and reach
/// the planner as plain labels: in the SDL the planner reads, `percent(N)` is renamed so.
const PERCENT_PREFIX: &str = "junction:";

/// The longest one operation may plan for before it is refused. The slowest operation the
/// default `[gateway.limits]` let through planned in 0.56 s (50 aliases of a four-hop chain
/// over the classic supergraph); this is the backstop for shapes nobody measured.
const PLANNING_TIMEOUT: Duration = Duration::from_secs(5);

/// The Hive planner's state for one supergraph.
pub struct HivePlanner {
    planner: Planner,
}

impl HivePlanner {
    /// Builds the query graph of `sdl` (the supergraph's SDL).
    pub fn new(sdl: &str) -> Result<Self, String> {
        let sdl = rename_percent_labels(sdl);
        let built = catch_unwind(AssertUnwindSafe(|| {
            let document = safe_parse_schema(&sdl).map_err(|e| e.to_string())?;
            Planner::new_from_supergraph(&document, QueryPlannerOptions::default())
                .map_err(|e| e.to_string())
        }));
        match built {
            Ok(Ok(planner)) => Ok(Self { planner }),
            Ok(Err(error)) => Err(error),
            Err(panic) => Err(panic_message(&panic)),
        }
    }
}

/// The Hive planner's state for `supergraph`, built once and kept with it.
pub fn state(supergraph: &Supergraph) -> Result<&HivePlanner, String> {
    supergraph.planner_state(HivePlanner::new)
}

/// Plans `operation` with the Hive planner, the given progressive-override labels active.
pub fn plan_with(
    supergraph: &Supergraph,
    operation: &Operation,
    labels: &Labels,
) -> Result<QueryPlan, PlanError> {
    if !operation.selections.iter().any(needs_subgraph) {
        return Ok(QueryPlan { root: None });
    }
    let hive = state(supergraph).map_err(PlanError)?;
    let text = operation_text(operation);
    let flags = labels
        .iter()
        .map(|label| {
            if label.starts_with("percent(") {
                format!("{PERCENT_PREFIX}{label}")
            } else {
                label.clone()
            }
        })
        .collect();
    let planned = catch_unwind(AssertUnwindSafe(|| {
        let document = safe_parse_operation(&text).map_err(|e| e.to_string())?;
        let normalized = normalize_operation(&hive.planner.supergraph, &document, None)
            .map_err(|e| e.to_string())?;
        hive.planner
            .plan_from_normalized_operation(
                &normalized.operation,
                PlannerOverrideContext::new(flags, 0),
                &CancellationToken::with_timeout(PLANNING_TIMEOUT),
            )
            .map_err(|e| e.to_string())
    }));
    let plan = match planned {
        Ok(Ok(plan)) => plan,
        Ok(Err(error)) => return Err(PlanError(error)),
        Err(panic) => return Err(PlanError(panic_message(&panic))),
    };
    let root = match plan.node {
        Some(node) => Some(convert_node(supergraph, node)?),
        None => None,
    };
    Ok(QueryPlan { root })
}

/// Whether a root selection needs a subgraph (`__typename` and introspection do not).
fn needs_subgraph(selection: &Selection) -> bool {
    match selection {
        Selection::Field(field) => !field.name.starts_with("__"),
        Selection::Fragment(fragment) => fragment.selections.iter().any(needs_subgraph),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("the planner panicked: {message}")
}

/// `overrideLabel: "percent(5)"` as `overrideLabel: "junction:percent(5)"`.
fn rename_percent_labels(sdl: &str) -> String {
    let mut out = String::with_capacity(sdl.len());
    let mut rest = sdl;
    while let Some(at) = rest.find("overrideLabel") {
        let (before, after) = rest.split_at(at + "overrideLabel".len());
        out.push_str(before);
        let value_at = after
            .find(|c: char| !(c.is_whitespace() || c == ':'))
            .unwrap_or(after.len());
        out.push_str(&after[..value_at]);
        rest = &after[value_at..];
        if rest.starts_with("\"percent(") {
            out.push('"');
            out.push_str(PERCENT_PREFIX);
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The normalized operation as GraphQL text, with its variable definitions.
fn operation_text(operation: &Operation) -> String {
    let mut out = String::from(match operation.kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    });
    if !operation.variable_definitions.is_empty() {
        out.push('(');
        for (i, definition) in operation.variable_definitions.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&definition.name);
            out.push_str(": ");
            out.push_str(&definition.ty.to_string());
            if let Some(default) = &definition.default_value {
                out.push_str(" = ");
                out.push_str(&default.to_string());
            }
        }
        out.push(')');
    }
    out.push(' ');
    write_selections(&mut out, &operation.selections);
    out
}

fn graph_of(supergraph: &Supergraph, service: &str) -> Result<Name, PlanError> {
    supergraph
        .graphs
        .iter()
        .find(|(value, graph)| graph.name == service || value.as_str() == service)
        .map(|(value, _)| value.clone())
        .ok_or_else(|| PlanError(format!("the plan names an unknown subgraph {service}")))
}

fn convert_node(supergraph: &Supergraph, node: HiveNode) -> Result<PlanNode, PlanError> {
    Ok(match node {
        HiveNode::Fetch(fetch) => PlanNode::Fetch(convert_fetch(supergraph, fetch)?),
        HiveNode::Subscription(subscription) => {
            PlanNode::Fetch(convert_fetch(supergraph, subscription.primary)?)
        }
        HiveNode::Sequence(sequence) => PlanNode::Sequence(
            sequence
                .nodes
                .into_iter()
                .map(|n| convert_node(supergraph, n))
                .collect::<Result<_, _>>()?,
        ),
        HiveNode::Parallel(parallel) => PlanNode::Parallel(
            parallel
                .nodes
                .into_iter()
                .map(|n| convert_node(supergraph, n))
                .collect::<Result<_, _>>()?,
        ),
        HiveNode::Flatten(flatten) => PlanNode::Flatten {
            path: convert_path(&flatten.path),
            node: Box::new(convert_node(supergraph, *flatten.node)?),
        },
        HiveNode::BatchFetch(batch) => {
            let graph = graph_of(supergraph, &batch.service_name)?;
            let document = &batch.operation.document;
            let mut entities = Vec::new();
            for alias in batch.entity_batch.aliases {
                let selections = document
                    .operation
                    .selection_set
                    .items
                    .iter()
                    .find_map(|item| match item {
                        SelectionItem::Field(field)
                            if field.selection_identifier() == alias.alias =>
                        {
                            Some(convert_selections(&field.selections, &document.fragments))
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                entities.push(EntityBatch {
                    paths: alias.merge_paths.iter().map(convert_path).collect(),
                    requires: convert_selections(&alias.requires, &[]),
                    selections,
                    input_rewrites: convert_rewrites(alias.input_rewrites.as_deref()),
                    output_rewrites: convert_rewrites(alias.output_rewrites.as_deref()),
                    representations: alias.representations_variable_name,
                    alias: alias.alias,
                });
            }
            let operation = batch.operation.document_str;
            PlanNode::BatchFetch(BatchFetch {
                graph,
                service: batch.service_name,
                variables: variables(batch.variable_usages.as_ref()),
                entities,
                operation_json: serde_json::to_string(&operation).expect("strings encode"),
                operation,
            })
        }
        HiveNode::Condition(_) => {
            return Err(PlanError(
                "a condition node in a plan of an operation without conditions".into(),
            ));
        }
        HiveNode::Defer(_) => return Err(PlanError("@defer is not supported".into())),
    })
}

fn variables(usages: Option<&BTreeSet<String>>) -> Vec<Name> {
    usages
        .into_iter()
        .flatten()
        .filter_map(|name| Name::new(name).ok())
        .collect()
}

fn convert_fetch(supergraph: &Supergraph, fetch: FetchNode) -> Result<Fetch, PlanError> {
    let graph = graph_of(supergraph, &fetch.service_name)?;
    let kind = match fetch.operation_kind {
        Some(OperationKind::Mutation) => OperationType::Mutation,
        Some(OperationKind::Subscription) => OperationType::Subscription,
        _ => OperationType::Query,
    };
    let document = &fetch.operation.document;
    let top = &document.operation.selection_set;
    // An entity fetch's selections are what it asks of `_entities`.
    let inner = match (&fetch.requires, top.items.as_slice()) {
        (Some(_), [SelectionItem::Field(field)]) if field.name == "_entities" => &field.selections,
        _ => top,
    };
    let selections = convert_selections(inner, &document.fragments);
    let requires = fetch
        .requires
        .as_ref()
        .map(|r| convert_selections(r, &[]))
        .unwrap_or_default();
    let operation = fetch.operation.document_str;
    Ok(Fetch {
        graph,
        service: fetch.service_name,
        kind,
        requires,
        selections,
        variables: variables(fetch.variable_usages.as_ref()),
        operation_json: serde_json::to_string(&operation).expect("strings encode"),
        operation,
        input_rewrites: convert_rewrites(fetch.input_rewrites.as_deref()),
        output_rewrites: convert_rewrites(fetch.output_rewrites.as_deref()),
    })
}

fn convert_path(path: &FlattenNodePath) -> Vec<PathElement> {
    path.as_slice()
        .iter()
        .filter_map(|segment| match segment {
            FlattenNodePathSegment::Field(key) => Name::new(key).ok().map(PathElement::Key),
            FlattenNodePathSegment::List => Some(PathElement::List),
            FlattenNodePathSegment::TypeCondition(types) => Some(PathElement::TypeCondition(
                types.iter().filter_map(|t| Name::new(t).ok()).collect(),
            )),
        })
        .collect()
}

fn convert_rewrites(rewrites: Option<&[FetchRewrite]>) -> Vec<Rewrite> {
    let steps = |path: &[FetchNodePathSegment]| -> Vec<RewriteStep> {
        path.iter()
            .map(|segment| match segment {
                FetchNodePathSegment::Key(key) => RewriteStep::Key(key.clone()),
                FetchNodePathSegment::TypenameEquals(types) => {
                    RewriteStep::TypeIn(types.iter().filter_map(|t| Name::new(t).ok()).collect())
                }
            })
            .collect()
    };
    rewrites
        .unwrap_or_default()
        .iter()
        .map(|rewrite| match rewrite {
            FetchRewrite::ValueSetter(setter) => Rewrite::SetValue {
                path: steps(&setter.path),
                value: setter.set_value_to.clone(),
            },
            FetchRewrite::KeyRenamer(renamer) => Rewrite::RenameKey {
                path: steps(&renamer.path),
                to: renamer.rename_key_to.clone(),
            },
        })
        .collect()
}

/// Their selection set as ours, named fragments expanded.
fn convert_selections(
    set: &SelectionSet,
    fragments: &[hive_router_query_planner::ast::fragment::FragmentDefinition],
) -> Vec<Selection> {
    let mut out = Vec::new();
    for item in &set.items {
        match item {
            SelectionItem::Field(field) => {
                let Ok(name) = Name::new(&field.name) else {
                    continue;
                };
                out.push(Selection::Field(Field {
                    alias: field.alias.as_deref().and_then(|a| Name::new(a).ok()),
                    name,
                    arguments: field
                        .arguments
                        .iter()
                        .flatten()
                        .filter_map(|(name, value)| {
                            Some((Name::new(name).ok()?, Node::new(convert_value(value))))
                        })
                        .collect(),
                    selections: convert_selections(&field.selections, fragments),
                }));
            }
            SelectionItem::InlineFragment(fragment) => {
                if let Ok(type_condition) = Name::new(&fragment.type_condition) {
                    out.push(Selection::Fragment(Fragment {
                        type_condition,
                        selections: convert_selections(&fragment.selections, fragments),
                    }));
                }
            }
            SelectionItem::FragmentSpread(spread) => {
                let definition = fragments.iter().find(|f| &f.name == spread);
                if let Some((definition, type_condition)) =
                    definition.and_then(|d| Some((d, Name::new(&d.type_condition).ok()?)))
                {
                    out.push(Selection::Fragment(Fragment {
                        type_condition,
                        selections: convert_selections(&definition.selection_set, fragments),
                    }));
                }
            }
        }
    }
    out
}

fn convert_value(value: &HiveValue) -> Value {
    match value {
        HiveValue::Variable(name) => match Name::new(name) {
            Ok(name) => Value::Variable(name),
            Err(_) => Value::Null,
        },
        HiveValue::Int(i) => Value::Int(IntValue::new_parsed(&i.to_string())),
        HiveValue::Float(f) => Value::Float(FloatValue::from(*f)),
        HiveValue::String(s) => Value::String(s.clone()),
        HiveValue::Boolean(b) => Value::Boolean(*b),
        HiveValue::Null => Value::Null,
        HiveValue::Enum(e) => match Name::new(e) {
            Ok(name) => Value::Enum(name),
            Err(_) => Value::Null,
        },
        HiveValue::List(items) => {
            Value::List(items.iter().map(|v| Node::new(convert_value(v))).collect())
        }
        HiveValue::Object(fields) => Value::Object(
            fields
                .iter()
                .filter_map(|(k, v)| Some((Name::new(k).ok()?, Node::new(convert_value(v)))))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::rename_percent_labels;

    #[test]
    fn percent_labels_become_plain_labels() {
        assert_eq!(
            rename_percent_labels(
                r#"a @join__field(graph: B, override: "a", overrideLabel: "percent(5)") b @join__field(overrideLabel:"canary")"#
            ),
            r#"a @join__field(graph: B, override: "a", overrideLabel: "junction:percent(5)") b @join__field(overrideLabel:"canary")"#
        );
    }
}
