//! From a client's request to a normalized operation: parsed and validated against the API
//! schema, checked against limits, named fragments expanded, `@skip`/`@include` applied.

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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_query_bytes: 64 * 1024,
            max_tokens: 15_000,
            max_depth: 20,
            max_aliases: 100,
            max_root_fields: 50,
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
}

pub struct Operation {
    pub kind: OperationType,
    pub name: Option<Name>,
    pub root_type: Name,
    pub selections: Vec<Selection>,
    pub variable_definitions: Vec<Node<VariableDefinition>>,
}

/// Parses and validates `query`; refuses what exceeds `limits`.
pub fn parse(
    api: &Valid<Schema>,
    query: &str,
    limits: &Limits,
) -> Result<Valid<ExecutableDocument>, OperationError> {
    if query.len() > limits.max_query_bytes {
        return Err(OperationError::OverLimit(format!(
            "the query is {} bytes; the limit is {}",
            query.len(),
            limits.max_query_bytes
        )));
    }
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

/// Picks the operation to run and normalizes it for `variables`.
pub fn normalize(
    document: &Valid<ExecutableDocument>,
    operation_name: Option<&str>,
    variables: &Map<String, serde_json::Value>,
    limits: &Limits,
) -> Result<(Operation, Vec<bool>), OperationError> {
    let operation = document.operations.get(operation_name).map_err(|_| {
        OperationError::UnknownOperation(match operation_name {
            Some(name) => format!("no operation named {name:?} in the document"),
            None => "the document has several operations: name one with operationName".to_owned(),
        })
    })?;
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
        conditions: Vec::new(),
        aliases: 0,
    };
    let selections = context.selections(&operation.selection_set, 1, limits)?;
    if context.aliases > limits.max_aliases {
        return Err(OperationError::OverLimit(format!(
            "the operation uses {} aliases; the limit is {}",
            context.aliases, limits.max_aliases
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

struct Normalizer<'a> {
    document: &'a Valid<ExecutableDocument>,
    variables: &'a Map<String, serde_json::Value>,
    defaults: Vec<(Name, Node<Value>)>,
    /// The value of every `@skip`/`@include` condition met, in order: part of the plan key.
    conditions: Vec<bool>,
    aliases: usize,
}

impl Normalizer<'_> {
    fn selections(
        &mut self,
        set: &SelectionSet,
        depth: usize,
        limits: &Limits,
    ) -> Result<Vec<Selection>, OperationError> {
        if depth > limits.max_depth {
            return Err(OperationError::OverLimit(format!(
                "the operation is nested deeper than {} levels",
                limits.max_depth
            )));
        }
        let mut out: Vec<Selection> = Vec::new();
        for selection in &set.selections {
            if !self.included(selection.directives()) {
                continue;
            }
            match selection {
                AstSelection::Field(field) => {
                    if field.alias.is_some() {
                        self.aliases += 1;
                    }
                    let children = self.selections(&field.selection_set, depth + 1, limits)?;
                    crate::selection::merge(
                        &mut out,
                        Selection::Field(Field {
                            alias: field.alias.clone(),
                            name: field.name.clone(),
                            arguments: field
                                .arguments
                                .iter()
                                .map(|a| (a.name.clone(), a.value.clone()))
                                .collect(),
                            selections: children,
                        }),
                    );
                }
                AstSelection::InlineFragment(fragment) => {
                    let inner = self.selections(&fragment.selection_set, depth, limits)?;
                    self.add_fragment(&mut out, &set.ty, fragment.selection_set.ty.clone(), inner);
                }
                AstSelection::FragmentSpread(spread) => {
                    let Some(definition) = self.document.fragments.get(&spread.fragment_name)
                    else {
                        continue;
                    };
                    let inner = self.selections(&definition.selection_set, depth, limits)?;
                    self.add_fragment(
                        &mut out,
                        &set.ty,
                        definition.selection_set.ty.clone(),
                        inner,
                    );
                }
            }
        }
        Ok(out)
    }

    /// A fragment on the enclosing type itself is just its selections.
    fn add_fragment(
        &self,
        out: &mut Vec<Selection>,
        parent: &Name,
        condition: Name,
        inner: Vec<Selection>,
    ) {
        if &condition == parent {
            crate::selection::merge_all(out, inner);
        } else {
            crate::selection::merge(
                out,
                Selection::Fragment(Fragment {
                    type_condition: condition,
                    selections: inner,
                }),
            );
        }
    }

    fn included(&mut self, directives: &apollo_compiler::executable::DirectiveList) -> bool {
        let mut included = true;
        for (name, keep_when) in [("skip", false), ("include", true)] {
            if let Some(directive) = directives.get(name) {
                let value = directive
                    .specified_argument_by_name("if")
                    .map(|v| self.boolean(v))
                    .unwrap_or(false);
                self.conditions.push(value);
                if value != keep_when {
                    included = false;
                }
            }
        }
        included
    }

    fn boolean(&self, value: &Value) -> bool {
        match value {
            Value::Boolean(b) => *b,
            Value::Variable(name) => match self.variables.get(name.as_str()) {
                Some(serde_json::Value::Bool(b)) => *b,
                _ => self
                    .defaults
                    .iter()
                    .find(|(n, _)| n == name)
                    .is_some_and(|(_, d)| matches!(d.as_ref(), Value::Boolean(true))),
            },
            _ => false,
        }
    }
}
