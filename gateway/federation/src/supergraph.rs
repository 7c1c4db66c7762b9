//! A supergraph: the Apollo Federation v2 supergraph SDL (`@link` v1.0, `join` v0.2 to v0.5),
//! read into what the planner asks: which subgraphs serve a type or a field, by which keys an
//! entity is reached, what a field requires or provides. Also the API schema clients see:
//! the supergraph without federation machinery and without `@inaccessible` elements.

use std::collections::HashMap;

use apollo_compiler::ast::{OperationType, Value};
use apollo_compiler::executable::{FieldSet, Selection as AstSelection, SelectionSet};
use apollo_compiler::schema::{ExtendedType, Implementers};
use apollo_compiler::validation::Valid;
use apollo_compiler::{Name, Schema};
use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use crate::selection::{Field, Fragment, Selection};

#[derive(Debug, thiserror::Error)]
pub enum SupergraphError {
    #[error("the supergraph is not valid GraphQL: {0}")]
    Invalid(String),
    #[error("the supergraph declares no subgraphs (no join__Graph enum)")]
    NoGraphs,
    #[error("subgraph {0}: {1}")]
    Graph(String, String),
    #[error("{0}: invalid field set {1:?}: {2}")]
    FieldSet(String, String, String),
    #[error("the API schema derived from the supergraph is invalid: {0}")]
    ApiSchema(String),
}

/// A subgraph, as the supergraph names it.
#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub url: String,
}

/// How a subgraph knows a type.
#[derive(Clone, Debug, Default)]
pub struct TypeInGraph {
    pub keys: Vec<Key>,
    pub interface_object: bool,
}

#[derive(Clone, Debug)]
pub struct Key {
    pub selections: Vec<Selection>,
    /// `false` for `@key(resolvable: false)`: the subgraph refers to the entity but cannot
    /// look it up.
    pub resolvable: bool,
}

/// One subgraph's claim on a field (`@join__field`).
#[derive(Clone, Debug)]
pub struct FieldSource {
    pub graph: Name,
    pub requires: Vec<Selection>,
    pub provides: Vec<Selection>,
    pub external: bool,
    pub used_overridden: bool,
    /// `@override(from: ...)`: the subgraph (by name) this definition takes the field from.
    pub override_from: Option<String>,
    /// Progressive override: the override applies only while this label is active.
    pub override_label: Option<String>,
}

/// The progressive-override labels active for one request.
pub type Labels = std::collections::BTreeSet<String>;

pub struct Supergraph {
    pub schema: Valid<Schema>,
    pub api: Valid<Schema>,
    /// By `join__Graph` enum value.
    pub graphs: IndexMap<Name, Graph>,
    types: HashMap<Name, IndexMap<Name, TypeInGraph>>,
    fields: HashMap<(Name, Name), Vec<FieldSource>>,
    implementers: apollo_compiler::collections::HashMap<Name, Implementers>,
    /// Identifies this supergraph in plan cache keys.
    pub hash: String,
    /// `@authenticated` and `@requiresScopes`, enforced before planning.
    pub access: crate::authorization::Access,
    /// `@cost` and `@listSize`, for the operation cost estimate.
    pub cost: crate::cost::CostModel,
    /// The SDL this was read from (a planner may build its own state from it).
    sdl: String,
    /// What a planner builds once per supergraph (Hive's query graph), on first use. Kept
    /// here, untyped, so that the supergraph knows no planner.
    planner_state: std::sync::OnceLock<Result<Box<dyn std::any::Any + Send + Sync>, String>>,
}

const FEDERATION_PREFIXES: &[&str] = &["join__", "link__", "requiresScopes__", "policy__"];

impl Supergraph {
    pub fn parse(sdl: &str) -> Result<Self, SupergraphError> {
        let schema = Schema::parse_and_validate(sdl, "supergraph.graphql")
            .map_err(|e| SupergraphError::Invalid(e.errors.to_string()))?;
        let graphs = read_graphs(&schema)?;
        let mut types = HashMap::new();
        let mut fields = HashMap::new();
        for (type_name, ty) in &schema.types {
            if is_federation_name(type_name) || ty.is_built_in() {
                continue;
            }
            let mut in_graphs = IndexMap::new();
            for directive in ty.directives().get_all("join__type") {
                let Some(graph) = enum_argument(directive, "graph") else {
                    continue;
                };
                let entry: &mut TypeInGraph = in_graphs.entry(graph).or_default();
                if let Some(key) = string_argument(directive, "key") {
                    entry.keys.push(Key {
                        selections: field_set(&schema, type_name, &key)?,
                        resolvable: bool_argument(directive, "resolvable").unwrap_or(true),
                    });
                }
                entry.interface_object |=
                    bool_argument(directive, "isInterfaceObject").unwrap_or(false);
            }
            types.insert(type_name.clone(), in_graphs);
            let field_definitions: Vec<_> = match ty {
                ExtendedType::Object(object) => object.fields.values().collect(),
                ExtendedType::Interface(interface) => interface.fields.values().collect(),
                _ => continue,
            };
            for field in field_definitions {
                let mut sources = Vec::new();
                for directive in field.directives.get_all("join__field") {
                    let Some(graph) = enum_argument(directive, "graph") else {
                        continue;
                    };
                    let return_type = field.ty.inner_named_type();
                    let parse =
                        |argument: &str, on: &Name| -> Result<Vec<Selection>, SupergraphError> {
                            match string_argument(directive, argument) {
                                Some(set) => field_set(&schema, on, &set),
                                None => Ok(Vec::new()),
                            }
                        };
                    sources.push(FieldSource {
                        graph,
                        requires: parse("requires", type_name)?,
                        provides: parse("provides", return_type)?,
                        external: bool_argument(directive, "external").unwrap_or(false),
                        used_overridden: bool_argument(directive, "usedOverridden")
                            .unwrap_or(false),
                        override_from: string_argument(directive, "override"),
                        override_label: string_argument(directive, "overrideLabel"),
                    });
                }
                if !sources.is_empty() {
                    fields.insert((type_name.clone(), field.name.clone()), sources);
                }
            }
        }
        let implementers = schema.implementers_map();
        let api = api_schema(&schema)?;
        let hash = Sha256::digest(sdl.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let access = crate::authorization::Access::read(&schema);
        let cost = crate::cost::CostModel::read(&schema);
        Ok(Self {
            schema,
            api,
            graphs,
            types,
            fields,
            implementers,
            hash,
            access,
            cost,
            sdl: sdl.to_owned(),
            planner_state: std::sync::OnceLock::new(),
        })
    }

    /// A planner's state for this supergraph, built from its SDL by `build` the first time
    /// it is asked for. One planner's state per supergraph: another type is an error.
    pub fn planner_state<T: std::any::Any + Send + Sync>(
        &self,
        build: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<&T, String> {
        let state = self.planner_state.get_or_init(|| {
            build(&self.sdl).map(|state| Box::new(state) as Box<dyn std::any::Any + Send + Sync>)
        });
        match state {
            Ok(state) => state
                .downcast_ref::<T>()
                .ok_or_else(|| "this supergraph holds another planner's state".to_owned()),
            Err(why) => Err(why.clone()),
        }
    }

    pub fn graph_name<'a>(&'a self, graph: &'a Name) -> &'a str {
        self.graphs
            .get(graph)
            .map_or(graph.as_str(), |g| g.name.as_str())
    }

    pub fn root_type(&self, kind: OperationType) -> Option<&Name> {
        self.schema.root_operation(kind).map(|n| n as &Name)
    }

    /// The subgraphs that know `type_name`.
    pub fn type_graphs(&self, type_name: &str) -> impl Iterator<Item = (&Name, &TypeInGraph)> {
        self.types
            .get(type_name)
            .into_iter()
            .flat_map(|graphs| graphs.iter())
    }

    pub fn type_in_graph(&self, type_name: &str, graph: &Name) -> Option<&TypeInGraph> {
        self.types.get(type_name)?.get(graph)
    }

    /// The subgraphs that resolve `type_name.field`: those named by `@join__field` (unless
    /// external or overridden), else every subgraph that knows the type. No progressive
    /// override label is active.
    pub fn field_graphs(&self, type_name: &Name, field: &Name) -> Vec<Name> {
        self.field_graphs_with(type_name, field, &Labels::new())
    }

    pub fn field_graphs_with(&self, type_name: &Name, field: &Name, labels: &Labels) -> Vec<Name> {
        match self.fields.get(&(type_name.clone(), field.clone())) {
            Some(sources) => sources
                .iter()
                .filter(|s| self.source_active(sources, s, labels))
                .map(|s| s.graph.clone())
                .collect(),
            None => self
                .type_graphs(type_name)
                .map(|(graph, _)| graph.clone())
                .collect(),
        }
    }

    pub fn resolves(&self, type_name: &Name, field: &Name, graph: &Name) -> bool {
        self.resolves_with(type_name, field, graph, &Labels::new())
    }

    pub fn resolves_with(
        &self,
        type_name: &Name,
        field: &Name,
        graph: &Name,
        labels: &Labels,
    ) -> bool {
        if field.starts_with("__") {
            return true;
        }
        match self.fields.get(&(type_name.clone(), field.clone())) {
            Some(sources) => sources
                .iter()
                .any(|s| &s.graph == graph && self.source_active(sources, s, labels)),
            None => self.type_in_graph(type_name, graph).is_some(),
        }
    }

    /// Whether `source` resolves its field: not external, not overridden, and for progressive
    /// override, the overriding side while its label is active, the original side otherwise.
    fn source_active(
        &self,
        sources: &[FieldSource],
        source: &FieldSource,
        labels: &Labels,
    ) -> bool {
        if source.external || source.used_overridden {
            return false;
        }
        if let Some(label) = &source.override_label {
            return labels.contains(label);
        }
        let name = self.graph_name(&source.graph);
        !sources.iter().any(|other| {
            other.override_from.as_deref() == Some(name)
                && other
                    .override_label
                    .as_ref()
                    .is_some_and(|label| labels.contains(label))
        })
    }

    /// Every progressive-override label the supergraph uses.
    pub fn override_labels(&self) -> Labels {
        self.fields
            .values()
            .flatten()
            .filter_map(|source| source.override_label.clone())
            .collect()
    }

    pub fn field_source(
        &self,
        type_name: &Name,
        field: &Name,
        graph: &Name,
    ) -> Option<&FieldSource> {
        self.fields
            .get(&(type_name.clone(), field.clone()))?
            .iter()
            .find(|s| &s.graph == graph && !s.external)
    }

    /// The named type a field returns (`__typename` returns `String`).
    pub fn field_type(&self, type_name: &str, field: &str) -> Option<&Name> {
        if field == "__typename" {
            return None;
        }
        self.schema
            .type_field(type_name, field)
            .ok()
            .map(|definition| definition.ty.inner_named_type())
    }

    pub fn is_list_field(&self, type_name: &str, field: &str) -> bool {
        self.schema
            .type_field(type_name, field)
            .is_ok_and(|definition| definition.ty.is_list())
    }

    pub fn is_abstract(&self, type_name: &str) -> bool {
        matches!(
            self.schema.types.get(type_name),
            Some(ExtendedType::Interface(_) | ExtendedType::Union(_))
        )
    }

    /// The object types a value of `type_name` can be.
    pub fn possible_types(&self, type_name: &str) -> Vec<Name> {
        match self.schema.types.get(type_name) {
            Some(ExtendedType::Object(object)) => vec![object.name.clone()],
            Some(ExtendedType::Interface(_)) => self
                .implementers
                .get(type_name)
                .map(|i| i.objects.iter().cloned().collect())
                .unwrap_or_default(),
            Some(ExtendedType::Union(union)) => {
                union.members.iter().map(|m| m.name.clone()).collect()
            }
            _ => Vec::new(),
        }
    }
}

fn is_federation_name(name: &str) -> bool {
    FEDERATION_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

fn read_graphs(schema: &Schema) -> Result<IndexMap<Name, Graph>, SupergraphError> {
    let Some(ExtendedType::Enum(graphs)) = schema.types.get("join__Graph") else {
        return Err(SupergraphError::NoGraphs);
    };
    let mut out = IndexMap::new();
    for (value, definition) in &graphs.values {
        let directive = definition
            .directives
            .get("join__graph")
            .ok_or_else(|| SupergraphError::Graph(value.to_string(), "no @join__graph".into()))?;
        let name =
            string_argument(directive, "name").unwrap_or_else(|| value.to_string().to_lowercase());
        let url = string_argument(directive, "url").unwrap_or_default();
        out.insert(value.clone(), Graph { name, url });
    }
    if out.is_empty() {
        return Err(SupergraphError::NoGraphs);
    }
    Ok(out)
}

fn argument<'a>(directive: &'a apollo_compiler::ast::Directive, name: &str) -> Option<&'a Value> {
    directive
        .specified_argument_by_name(name)
        .map(|v| v.as_ref())
}

fn enum_argument(directive: &apollo_compiler::ast::Directive, name: &str) -> Option<Name> {
    match argument(directive, name)? {
        Value::Enum(value) => Some(value.clone()),
        _ => None,
    }
}

fn string_argument(directive: &apollo_compiler::ast::Directive, name: &str) -> Option<String> {
    match argument(directive, name)? {
        Value::String(value) => Some(value.clone()),
        _ => None,
    }
}

fn bool_argument(directive: &apollo_compiler::ast::Directive, name: &str) -> Option<bool> {
    match argument(directive, name)? {
        Value::Boolean(value) => Some(*value),
        _ => None,
    }
}

/// Parses a `@key`/`@requires`/`@provides` field set on `type_name`.
fn field_set(
    schema: &Valid<Schema>,
    type_name: &Name,
    set: &str,
) -> Result<Vec<Selection>, SupergraphError> {
    let parsed =
        FieldSet::parse(schema, type_name.clone(), set, "field-set.graphql").map_err(|e| {
            SupergraphError::FieldSet(type_name.to_string(), set.to_owned(), e.errors.to_string())
        })?;
    Ok(convert(&parsed.selection_set))
}

/// apollo-compiler's selection set as the router's own (field sets have no fragment spreads).
fn convert(set: &SelectionSet) -> Vec<Selection> {
    let mut out = Vec::new();
    for selection in &set.selections {
        match selection {
            AstSelection::Field(field) => out.push(Selection::Field(Field {
                alias: field.alias.clone(),
                name: field.name.clone(),
                arguments: field
                    .arguments
                    .iter()
                    .map(|a| (a.name.clone(), a.value.clone()))
                    .collect(),
                selections: convert(&field.selection_set),
            })),
            AstSelection::InlineFragment(fragment) => out.push(Selection::Fragment(Fragment {
                type_condition: fragment
                    .type_condition
                    .clone()
                    .unwrap_or_else(|| fragment.selection_set.ty.clone()),
                selections: convert(&fragment.selection_set),
            })),
            AstSelection::FragmentSpread(_) => {}
        }
    }
    out
}

/// The schema clients see: no `join__`/`link__` types or directives, no `@link`, no
/// authorization directives (the router enforces them), and nothing marked `@inaccessible`.
fn api_schema(supergraph: &Valid<Schema>) -> Result<Valid<Schema>, SupergraphError> {
    let mut schema: Schema = supergraph.clone().into_inner();
    let removed_directive = |name: &str| {
        is_federation_name(name)
            || matches!(
                name,
                "link"
                    | "inaccessible"
                    | "tag"
                    | "authenticated"
                    | "requiresScopes"
                    | "policy"
                    | "cost"
                    | "listSize"
            )
    };
    let inaccessible =
        |directives: &apollo_compiler::ast::DirectiveList| directives.get("inaccessible").is_some();
    schema
        .directive_definitions
        .retain(|name, _| !removed_directive(name));
    schema
        .schema_definition
        .make_mut()
        .directives
        .0
        .retain(|d| !removed_directive(&d.name));
    schema.types.retain(|name, ty| {
        !is_federation_name(name) && ty.directives().get_all("inaccessible").next().is_none()
    });
    let removed_types: Vec<Name> = supergraph
        .types
        .iter()
        .filter(|(name, ty)| {
            is_federation_name(name) || ty.directives().get("inaccessible").is_some()
        })
        .map(|(name, _)| name.clone())
        .collect();
    for ty in schema.types.values_mut() {
        match ty {
            ExtendedType::Object(object) => {
                let object = object.make_mut();
                object.directives.0.retain(|d| !removed_directive(&d.name));
                object
                    .implements_interfaces
                    .retain(|i| !removed_types.contains(i));
                object.fields.retain(|_, f| {
                    !inaccessible(&f.directives) && !removed_types.contains(f.ty.inner_named_type())
                });
                for field in object.fields.values_mut() {
                    let field = field.make_mut();
                    field.directives.0.retain(|d| !removed_directive(&d.name));
                    field.arguments.retain(|a| !inaccessible(&a.directives));
                    for argument in field.arguments.iter_mut() {
                        argument
                            .make_mut()
                            .directives
                            .0
                            .retain(|d| !removed_directive(&d.name));
                    }
                }
            }
            ExtendedType::Interface(interface) => {
                let interface = interface.make_mut();
                interface
                    .directives
                    .0
                    .retain(|d| !removed_directive(&d.name));
                interface
                    .implements_interfaces
                    .retain(|i| !removed_types.contains(i));
                interface.fields.retain(|_, f| {
                    !inaccessible(&f.directives) && !removed_types.contains(f.ty.inner_named_type())
                });
                for field in interface.fields.values_mut() {
                    let field = field.make_mut();
                    field.directives.0.retain(|d| !removed_directive(&d.name));
                    field.arguments.retain(|a| !inaccessible(&a.directives));
                }
            }
            ExtendedType::Union(union) => {
                let union = union.make_mut();
                union.directives.0.retain(|d| !removed_directive(&d.name));
                union.members.retain(|m| !removed_types.contains(&m.name));
            }
            ExtendedType::Enum(enumeration) => {
                let enumeration = enumeration.make_mut();
                enumeration
                    .directives
                    .0
                    .retain(|d| !removed_directive(&d.name));
                enumeration
                    .values
                    .retain(|_, v| !inaccessible(&v.directives));
                for value in enumeration.values.values_mut() {
                    value
                        .make_mut()
                        .directives
                        .0
                        .retain(|d| !removed_directive(&d.name));
                }
            }
            ExtendedType::InputObject(input) => {
                let input = input.make_mut();
                input.directives.0.retain(|d| !removed_directive(&d.name));
                input.fields.retain(|_, f| !inaccessible(&f.directives));
                for field in input.fields.values_mut() {
                    field
                        .make_mut()
                        .directives
                        .0
                        .retain(|d| !removed_directive(&d.name));
                }
            }
            ExtendedType::Scalar(scalar) => {
                scalar
                    .make_mut()
                    .directives
                    .0
                    .retain(|d| !removed_directive(&d.name));
            }
        }
    }
    schema
        .validate()
        .map_err(|e| SupergraphError::ApiSchema(e.errors.to_string()))
}
