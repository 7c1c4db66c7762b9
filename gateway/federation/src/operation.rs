//! From a client's request to a normalized operation: parsed and validated against the API
//! schema, checked against limits, named fragments expanded, `@skip`/`@include` applied.

use std::collections::HashMap;

use apollo_compiler::ast::{OperationType, Value, VariableDefinition};
use apollo_compiler::executable::{Selection as AstSelection, SelectionSet};
use apollo_compiler::response::GraphQLError;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Name, Node, Schema};
use serde_json::Map;

use crate::selection::{Field, Fragment, Selection};

/// Limits checked before any planning or subgraph call (`[gateway.limits]`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The longest query text accepted, in bytes.
    pub max_query_bytes: usize,
    /// The most lexical tokens in a query.
    pub max_tokens: usize,
    /// The deepest nesting of selections.
    pub max_depth: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    /// The most fields and fragments an operation holds once its fragments are expanded:
    /// what bounds the router's work on one operation, however its text is written.
    pub max_selections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_query_bytes: 64 * 1024,
            max_tokens: 15_000,
            max_depth: 20,
            max_aliases: 100,
            max_root_fields: 50,
            max_selections: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// Parse and validation errors, with their locations in the query.
    #[error("invalid operation: {}", .0.first().map_or("", |e| e.message.as_str()))]
    Invalid(Vec<GraphQLError>),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{0}")]
    OverLimit(String),
    #[error("the number {0} is out of range")]
    OutOfRange(String),
}

pub struct Operation {
    pub kind: OperationType,
    pub name: Option<Name>,
    pub root_type: Name,
    pub selections: Vec<Selection>,
    pub variable_definitions: Vec<Node<VariableDefinition>>,
}

/// What a validated document takes in memory per byte of its query text, at most, as
/// measured over queries of every shape (`gateway/tests/document_weight.rs`).
const DOCUMENT_BYTES_PER_QUERY_BYTE: u64 = 64;

/// What the parsed and validated document of `query` may take in memory (its cache weighs
/// documents by this).
pub fn document_weight(query: &str) -> u64 {
    query.len() as u64 * DOCUMENT_BYTES_PER_QUERY_BYTE + 4096
}

/// Refuses a query text longer than `limits.max_query_bytes`.
pub fn check_size(query: &str, limits: &Limits) -> Result<(), OperationError> {
    if query.len() > limits.max_query_bytes {
        return Err(OperationError::OverLimit(format!(
            "the query is {} bytes; the limit is {}",
            query.len(),
            limits.max_query_bytes
        )));
    }
    Ok(())
}

/// Parses and validates `query`; refuses what exceeds `limits`.
pub fn parse(
    api: &Valid<Schema>,
    query: &str,
    limits: &Limits,
) -> Result<Valid<ExecutableDocument>, OperationError> {
    check_size(query, limits)?;
    let parsed = apollo_compiler::parser::Parser::new()
        .token_limit(limits.max_tokens)
        .recursion_limit(limits.max_depth * 4 + 32)
        .parse_executable(api, query, "operation.graphql")
        .map_err(|e| diagnostics(&e.errors))?;
    parsed.validate(api).map_err(|e| diagnostics(&e.errors))
}

fn diagnostics(errors: &apollo_compiler::validation::DiagnosticList) -> OperationError {
    OperationError::Invalid(errors.iter().take(20).map(|d| d.to_json()).collect())
}

/// The values of the variables that `@skip`/`@include` read, by name: with the query text and
/// the operation name, they decide what normalization gives, so they are part of the plan key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions(std::collections::BTreeMap<Name, bool>);

impl Conditions {
    /// `name=1,other=0,` in name order.
    pub fn write_key(&self, out: &mut impl FnMut(&[u8])) {
        for (name, value) in &self.0 {
            out(name.as_bytes());
            out(if *value { b"=1," } else { b"=0," });
        }
    }
}

/// Picks the operation to run and normalizes it for `variables`.
///
/// The work is bounded whatever the document: each named fragment is expanded once and
/// reused at every spread (so fragments spreading each other twice, forty deep, cost forty
/// expansions, not 2^40), and every selection the normalized tree holds is counted against
/// `limits.max_selections` as it is made, so an operation refused for its size is refused
/// before it is built.
pub fn normalize(
    document: &Valid<ExecutableDocument>,
    operation_name: Option<&str>,
    variables: &Map<String, serde_json::Value>,
    limits: &Limits,
) -> Result<(Operation, Conditions), OperationError> {
    let operation = document.operations.get(operation_name).map_err(|_| {
        OperationError::UnknownOperation(match operation_name {
            Some(name) => format!("no operation named {name:?} in the document"),
            None => "the document has several operations: name one with operationName".to_owned(),
        })
    })?;
    for definition in &operation.variables {
        if let Some(default) = &definition.default_value {
            check_numbers(default)?;
        }
    }
    let mut context = Normalizer {
        document,
        variables,
        defaults: operation
            .variables
            .iter()
            .filter_map(|v| {
                v.default_value
                    .as_ref()
                    .map(|d| (v.name.clone(), d.clone()))
            })
            .collect(),
        conditions: Conditions::default(),
        fragments: HashMap::new(),
        limits,
        selections_left: limits.max_selections,
    };
    let selections = context.selections(&operation.selection_set, 1)?.selections;
    let aliases = aliases(&selections);
    if aliases > limits.max_aliases {
        return Err(OperationError::OverLimit(format!(
            "the operation uses {aliases} aliases; the limit is {}",
            limits.max_aliases
        )));
    }
    let root_fields = selections
        .iter()
        .filter(|s| matches!(s, Selection::Field(_)))
        .count();
    if root_fields > limits.max_root_fields {
        return Err(OperationError::OverLimit(format!(
            "the operation selects {root_fields} root fields; the limit is {}",
            limits.max_root_fields
        )));
    }
    Ok((
        Operation {
            kind: operation.operation_type,
            name: operation.name.clone(),
            root_type: operation.selection_set.ty.clone(),
            selections,
            variable_definitions: operation.variables.clone(),
        },
        context.conditions,
    ))
}

/// A selection set normalized: what it holds, and what reusing it costs.
#[derive(Clone)]
struct Expanded {
    selections: Vec<Selection>,
    /// Selection sets from this one down to its deepest leaf, itself included.
    height: usize,
    /// Fields and fragments in `selections`, at every level.
    size: usize,
}

struct Normalizer<'a> {
    document: &'a Valid<ExecutableDocument>,
    variables: &'a Map<String, serde_json::Value>,
    defaults: Vec<(Name, Node<Value>)>,
    conditions: Conditions,
    /// Named fragments already expanded: what they give does not depend on where they are
    /// spread, only on the variables, which are fixed for the whole operation.
    fragments: HashMap<Name, Expanded>,
    limits: &'a Limits,
    /// Selections the normalized tree may still take (`max_selections` minus those made).
    selections_left: usize,
}

impl Normalizer<'_> {
    /// `set`, found `depth` selection sets below the operation's (1 for the operation's own,
    /// or, inside a named fragment, below the fragment's).
    fn selections(&mut self, set: &SelectionSet, depth: usize) -> Result<Expanded, OperationError> {
        if depth > self.limits.max_depth {
            return Err(self.too_deep());
        }
        let mut out = Expanded {
            selections: Vec::new(),
            height: 1,
            size: 0,
        };
        for selection in &set.selections {
            if !self.included(selection.directives()) {
                continue;
            }
            match selection {
                AstSelection::Field(field) => {
                    self.spend(1)?;
                    for argument in &field.arguments {
                        check_numbers(&argument.value)?;
                    }
                    let children = self.selections(&field.selection_set, depth + 1)?;
                    if !field.selection_set.selections.is_empty() {
                        out.height = out.height.max(children.height + 1);
                    }
                    crate::selection::merge(
                        &mut out.selections,
                        Selection::Field(Field {
                            alias: field.alias.clone(),
                            name: field.name.clone(),
                            arguments: field
                                .arguments
                                .iter()
                                .map(|a| (a.name.clone(), a.value.clone()))
                                .collect(),
                            selections: children.selections,
                        }),
                    );
                }
                AstSelection::InlineFragment(fragment) => {
                    let inner = self.selections(&fragment.selection_set, depth)?;
                    self.add_fragment(&mut out, &set.ty, &fragment.selection_set.ty, inner)?;
                }
                AstSelection::FragmentSpread(spread) => {
                    let inner = self.fragment(&spread.fragment_name, depth)?;
                    let Some(inner) = inner else { continue };
                    self.add_fragment(&mut out, &set.ty, &inner.0, inner.1)?;
                }
            }
        }
        // Counted once merged: what a copy of this set really holds.
        out.size = size(&out.selections);
        Ok(out)
    }

    /// The named fragment expanded (once per operation), spread into a set at `depth`;
    /// with its type condition. `None`: no such fragment (validation refuses that first).
    fn fragment(
        &mut self,
        name: &Name,
        depth: usize,
    ) -> Result<Option<(Name, Expanded)>, OperationError> {
        let Some(definition) = self.document.fragments.get(name) else {
            return Ok(None);
        };
        let expanded = match self.fragments.get(name) {
            Some(expanded) => {
                // Reusing it copies it: the copy counts as much as making it did.
                let expanded = expanded.clone();
                self.spend(expanded.size)?;
                expanded
            }
            None => {
                let expanded = self.selections(&definition.selection_set, 1)?;
                self.fragments.insert(name.clone(), expanded.clone());
                expanded
            }
        };
        if depth + expanded.height - 1 > self.limits.max_depth {
            return Err(self.too_deep());
        }
        Ok(Some((definition.selection_set.ty.clone(), expanded)))
    }

    /// A fragment on the enclosing type itself is just its selections.
    fn add_fragment(
        &mut self,
        out: &mut Expanded,
        parent: &Name,
        condition: &Name,
        inner: Expanded,
    ) -> Result<(), OperationError> {
        out.height = out.height.max(inner.height);
        if inner.selections.is_empty() {
            // Everything in it was skipped: `... on T { }` would be invalid downstream.
            return Ok(());
        }
        if condition == parent {
            crate::selection::merge_all(&mut out.selections, inner.selections);
        } else {
            self.spend(1)?;
            crate::selection::merge(
                &mut out.selections,
                Selection::Fragment(Fragment {
                    type_condition: condition.clone(),
                    selections: inner.selections,
                }),
            );
        }
        Ok(())
    }

    fn spend(&mut self, selections: usize) -> Result<(), OperationError> {
        self.selections_left = self
            .selections_left
            .checked_sub(selections)
            .ok_or_else(|| {
                OperationError::OverLimit(format!(
                    "the operation selects more than {} fields and fragments once its fragments \
                 are expanded",
                    self.limits.max_selections
                ))
            })?;
        Ok(())
    }

    fn too_deep(&self) -> OperationError {
        OperationError::OverLimit(format!(
            "the operation is nested deeper than {} levels",
            self.limits.max_depth
        ))
    }

    fn included(&mut self, directives: &apollo_compiler::executable::DirectiveList) -> bool {
        let mut included = true;
        for (name, keep_when) in [("skip", false), ("include", true)] {
            if let Some(directive) = directives.get(name) {
                let value = directive
                    .specified_argument_by_name("if")
                    .map(|v| self.boolean(v))
                    .unwrap_or(false);
                if value != keep_when {
                    included = false;
                }
            }
        }
        included
    }

    fn boolean(&mut self, value: &Value) -> bool {
        match value {
            Value::Boolean(b) => *b,
            Value::Variable(name) => {
                let value = match self.variables.get(name.as_str()) {
                    Some(serde_json::Value::Bool(b)) => *b,
                    _ => self
                        .defaults
                        .iter()
                        .find(|(n, _)| n == name)
                        .is_some_and(|(_, d)| matches!(d.as_ref(), Value::Boolean(true))),
                };
                self.conditions.0.insert(name.clone(), value);
                value
            }
            _ => false,
        }
    }
}

/// Refuses number literals no JSON number holds (`1e400`): passed on, they would fail
/// downstream, where the client's error would be a subgraph's parse error.
fn check_numbers(value: &Value) -> Result<(), OperationError> {
    let finite = |text: &str| text.parse::<f64>().is_ok_and(f64::is_finite);
    match value {
        Value::Float(number) if !finite(number.as_str()) => {
            Err(OperationError::OutOfRange(number.as_str().to_owned()))
        }
        Value::Int(number) if !finite(number.as_str()) => {
            Err(OperationError::OutOfRange(number.as_str().to_owned()))
        }
        Value::List(items) => items.iter().try_for_each(|item| check_numbers(item)),
        Value::Object(fields) => fields.iter().try_for_each(|(_, v)| check_numbers(v)),
        _ => Ok(()),
    }
}

/// Fields and fragments in `selections`, at every level.
fn size(selections: &[Selection]) -> usize {
    selections
        .iter()
        .map(|s| {
            1 + match s {
                Selection::Field(f) => size(&f.selections),
                Selection::Fragment(f) => size(&f.selections),
            }
        })
        .sum()
}

/// Aliased fields in `selections`, at every level.
fn aliases(selections: &[Selection]) -> usize {
    selections
        .iter()
        .map(|s| match s {
            Selection::Field(f) => usize::from(f.alias.is_some()) + aliases(&f.selections),
            Selection::Fragment(f) => aliases(&f.selections),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "type Query { t: T, other: T }
        type T { a: T, b: T, id: ID, name: String }";

    fn schema() -> Valid<Schema> {
        Schema::parse_and_validate(SCHEMA, "schema.graphql").unwrap()
    }

    fn normalized(query: &str, limits: &Limits) -> Result<Operation, OperationError> {
        let schema = schema();
        let document = parse(&schema, query, limits)?;
        normalize(&document, None, &Map::new(), limits).map(|(operation, _)| operation)
    }

    /// `fragment F0 on T { ...F1 ...F1 } ... fragment F{n} on T { id }`: 2^n spreads.
    fn doubling(n: usize) -> String {
        let mut query = String::from("{ t { ...F0 } }\n");
        for i in 0..n {
            query.push_str(&format!(
                "fragment F{i} on T {{ ...F{j} ...F{j} }}\n",
                j = i + 1
            ));
        }
        query.push_str(&format!("fragment F{n} on T {{ id }}\n"));
        query
    }

    #[test]
    fn fragments_spread_twice_forty_deep_expand_once_each() {
        // 1.6 KB that spread 2^40 times before each fragment was expanded once: the test
        // did not finish. Now it is forty expansions and one `id`.
        let query = doubling(40);
        assert!(query.len() < 2_000);
        let operation = normalized(&query, &Limits::default()).unwrap();
        assert_eq!(
            crate::selection::print(&operation.selections),
            "{ t { id } }"
        );
    }

    #[test]
    fn a_tree_that_grows_past_max_selections_is_refused_while_it_grows() {
        // Each fragment holds two fields spreading the next: 2^19 fields once expanded,
        // within the depth limit; refused when the count passes the limit, not after.
        let mut query = String::from("{ t { ...F0 } }\n");
        for i in 0..19 {
            query.push_str(&format!(
                "fragment F{i} on T {{ a {{ ...F{j} }} b {{ ...F{j} }} }}\n",
                j = i + 1
            ));
        }
        query.push_str("fragment F19 on T { id }\n");
        let refused = normalized(&query, &Limits::default()).err().unwrap();
        assert!(
            matches!(&refused, OperationError::OverLimit(m) if m.contains("more than 10000 fields")),
            "{refused}"
        );
        // The same shape, small enough, is answered.
        let limits = Limits {
            max_selections: 100_000,
            ..Limits::default()
        };
        let mut small = String::from("{ t { ...F0 } }\n");
        for i in 0..3 {
            small.push_str(&format!(
                "fragment F{i} on T {{ a {{ ...F{j} }} b {{ ...F{j} }} }}\n",
                j = i + 1
            ));
        }
        small.push_str("fragment F3 on T { id }\n");
        let operation = normalized(&small, &limits).unwrap();
        assert_eq!(size(&operation.selections), 1 + 2 + 4 + 8 + 8);
    }

    #[test]
    fn depth_counts_through_reused_fragments() {
        let limits = Limits {
            max_depth: 4,
            ..Limits::default()
        };
        // `F` is three sets tall; spread at depth 2 it reaches 4, at depth 3 it reaches 5.
        let fragment = "fragment F on T { a { b { id } } }";
        assert!(normalized(&format!("{{ t {{ ...F }} }} {fragment}"), &limits).is_ok());
        let refused = normalized(
            &format!("{{ t {{ ...F a {{ ...F }} }} }} {fragment}"),
            &limits,
        )
        .err()
        .unwrap();
        assert!(
            matches!(&refused, OperationError::OverLimit(m) if m.contains("deeper than 4")),
            "{refused}"
        );
    }

    #[test]
    fn aliases_are_counted_in_the_expanded_operation() {
        let limits = Limits {
            max_aliases: 3,
            ..Limits::default()
        };
        let fragment = "fragment F on T { x: id y: name }";
        assert!(normalized(&format!("{{ t {{ ...F }} }} {fragment}"), &limits).is_ok());
        let refused = normalized(
            &format!("{{ t {{ ...F }} other {{ ...F }} }} {fragment}"),
            &limits,
        )
        .err()
        .unwrap();
        assert!(
            matches!(&refused, OperationError::OverLimit(m) if m.contains("4 aliases")),
            "{refused}"
        );
    }

    #[test]
    fn fragments_left_empty_by_skips_are_dropped() {
        let operation = normalized(
            "{ t { id ... on T { name @skip(if: true) } } }",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            crate::selection::print(&operation.selections),
            "{ t { id } }"
        );
    }

    #[test]
    fn numbers_no_json_holds_are_refused() {
        let schema = Schema::parse_and_validate(
            "scalar JSON type Query { f(x: JSON, y: Float): Int }",
            "schema.graphql",
        )
        .unwrap();
        for query in [
            "{ f(x: {a: [1, 1e400]}) }",
            "{ f(x: -1e309) }",
            "query($v: JSON = {a: 1e400}) { f(x: $v) }",
        ] {
            let document = parse(&schema, query, &Limits::default()).unwrap();
            let refused = normalize(&document, None, &Map::new(), &Limits::default())
                .err()
                .unwrap();
            assert!(matches!(refused, OperationError::OutOfRange(_)), "{query}");
        }
        let document = parse(
            &schema,
            "{ f(x: {a: 1e300, b: 12}, y: 2.5) }",
            &Limits::default(),
        )
        .unwrap();
        assert!(normalize(&document, None, &Map::new(), &Limits::default()).is_ok());
    }

    #[test]
    fn conditions_record_the_variables_they_read() {
        let schema = schema();
        let query = "query($a: Boolean!, $b: Boolean = true) {
            t { id @skip(if: $a) name @include(if: $b) ...F }
        }
        fragment F on T { a @include(if: $a) { id } b @skip(if: true) { id } }";
        let document = parse(&schema, query, &Limits::default()).unwrap();
        let variables = serde_json::json!({"a": true});
        let (operation, conditions) = normalize(
            &document,
            None,
            variables.as_object().unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            crate::selection::print(&operation.selections),
            "{ t { name a { id } } }"
        );
        let mut key = Vec::new();
        conditions.write_key(&mut |bytes| key.extend_from_slice(bytes));
        assert_eq!(String::from_utf8(key).unwrap(), "a=1,b=1,");
    }
}
