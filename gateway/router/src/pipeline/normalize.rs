//! Step 4: the operation chosen and normalized (fragments expanded once, `@skip`/`@include`
//! applied, selections counted against the limits), the text kept for its persisted-query
//! hash now that it proved valid, the variables coerced, and `__schema`/`__type` answered.

use std::sync::Arc;

use apollo_compiler::ExecutableDocument;
use apollo_compiler::validation::Valid;
use junction_federation::operation::{self, Conditions, Operation};
use junction_federation::supergraph::Supergraph;
use serde_json::{Map, Value};

use super::parse::Parsed;
use crate::error::Rejection;
use crate::router::GraphRouter;

pub struct Normalized {
    /// The query text: with the operation's name and conditions, the plan cache's key.
    pub query: String,
    pub operation: Operation,
    pub conditions: Conditions,
    pub variables: Map<String, Value>,
    /// Answers to `__schema` and `__type`, merged into the data.
    pub introspection: Option<Value>,
}

pub fn normalize(router: &GraphRouter, parsed: Parsed) -> Result<Normalized, Rejection> {
    let Parsed { text, document } = parsed;
    let (operation, conditions) = operation::normalize(
        &document,
        text.operation_name.as_deref(),
        &text.variables,
        &router.limits,
    )?;
    text.resolved.remember(&router.persisted);
    let Ok(selected) = document.operations.get(text.operation_name.as_deref()) else {
        return Err(Rejection::bad_input("no such operation in the document"));
    };
    let api = &router.supergraph.api;
    let coerced = apollo_compiler::request::coerce_variable_values(
        api,
        selected,
        &to_bytes_map(&text.variables),
    )
    .map_err(|e| Rejection::bad_input(&e.message().to_string()))?;
    let introspection = introspect(&router.supergraph, &document, selected, &coerced);
    Ok(Normalized {
        query: text.resolved.query,
        operation,
        conditions,
        variables: text.variables,
        introspection,
    })
}

fn to_bytes_map(variables: &Map<String, Value>) -> apollo_compiler::response::JsonMap {
    variables
        .iter()
        .map(|(k, v)| (k.as_str().into(), serde_json_bytes::Value::from(v.clone())))
        .collect()
}

/// Answers `__schema` and `__type` from the API schema.
fn introspect(
    supergraph: &Supergraph,
    document: &Arc<Valid<ExecutableDocument>>,
    operation: &apollo_compiler::executable::Operation,
    variables: &Valid<apollo_compiler::response::JsonMap>,
) -> Option<Value> {
    let wants = operation.selection_set.selections.iter().any(|s| {
        matches!(s, apollo_compiler::executable::Selection::Field(f) if f.name == "__schema" || f.name == "__type")
    });
    if !wants {
        return None;
    }
    let implementers = supergraph.api.implementers_map();
    let response = apollo_compiler::introspection::partial_execute(
        &supergraph.api,
        &implementers,
        document,
        operation,
        variables,
    )
    .ok()?;
    serde_json::to_value(response.data?).ok()
}
