//! Composition: subgraph SDLs in, a supergraph SDL out (`join` v0.3), with the errors that
//! make a set of subgraphs unservable reported clearly: conflicting field types, fields
//! resolved by several subgraphs without `@shareable`, key fields that do not exist, and
//! `@requires` that nothing can satisfy.
//!
//! Federation 2 subgraphs (`@link` to the federation spec) and Federation 1 subgraphs (no
//! `@link`: every field is shareable, `extend type` marks entity extensions) are both read.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;

use apollo_compiler::ast::{
    Definition, Directive, DirectiveList, Document, FieldDefinition, InputValueDefinition, Type,
    Value,
};
use apollo_compiler::{Name, Node};
use indexmap::IndexMap;

use crate::authorization::Requirement;
use crate::spec::unprefixed;

/// One subgraph to compose.
#[derive(Clone, Debug)]
pub struct SubgraphSource {
    pub name: String,
    pub url: String,
    pub sdl: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("composition failed:\n  {}", .0.join("\n  "))]
pub struct CompositionErrors(pub Vec<String>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Object,
    Interface,
    Union,
    Enum,
    Input,
    Scalar,
}

#[derive(Default)]
struct GraphType {
    keys: Vec<(String, bool)>,
    extension: bool,
    interface_object: bool,
    shareable: bool,
}

struct FieldInGraph {
    ty: Type,
    external: bool,
    requires: Option<String>,
    provides: Option<String>,
    shareable: bool,
    override_from: Option<String>,
    override_label: Option<String>,
}

struct MergedField {
    description: Option<Node<str>>,
    arguments: Vec<Node<InputValueDefinition>>,
    inaccessible: bool,
    /// `@authenticated`/`@requiresScopes`: every subgraph's, all required.
    access: Requirement,
    /// `@cost`/`@listSize`, from the first subgraph giving them.
    cost: Vec<Directive>,
    sources: IndexMap<String, FieldInGraph>,
}

struct MergedType {
    kind: Kind,
    description: Option<Node<str>>,
    inaccessible: bool,
    access: Requirement,
    cost: Vec<Directive>,
    graphs: IndexMap<String, GraphType>,
    fields: IndexMap<Name, MergedField>,
    implements: IndexMap<Name, Vec<String>>,
    members: IndexMap<Name, Vec<String>>,
    values: IndexMap<Name, (bool, Vec<String>)>,
    input_fields: IndexMap<Name, (Node<InputValueDefinition>, Vec<String>)>,
}

impl MergedType {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            description: None,
            inaccessible: false,
            access: Requirement::default(),
            cost: Vec::new(),
            graphs: IndexMap::new(),
            fields: IndexMap::new(),
            implements: IndexMap::new(),
            members: IndexMap::new(),
            values: IndexMap::new(),
            input_fields: IndexMap::new(),
        }
    }
}

const SKIPPED_TYPES: &[&str] = &[
    "_Service",
    "_Entity",
    "_Any",
    "_FieldSet",
    "FieldSet",
    "link__Import",
    "link__Purpose",
];
const BUILT_IN_SCALARS: &[&str] = &["String", "Int", "Float", "Boolean", "ID"];

/// The graph enum value for a subgraph name: `inventory-v2` -> `INVENTORY_V2`.
pub fn graph_enum_value(name: &str) -> String {
    let mut value: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if value.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        value.insert(0, '_');
    }
    value
}

fn directive<'a>(directives: &'a DirectiveList, name: &str) -> Option<&'a Node<Directive>> {
    directives
        .iter()
        .find(|d| d.name == name || d.name.strip_prefix("federation__") == Some(name))
}

/// `@cost` and `@listSize` (IBM's cost directives, as Apollo imports them), named without a
/// `federation__` prefix as the supergraph defines them.
fn cost_directives(directives: &DirectiveList) -> Vec<Directive> {
    directives
        .iter()
        .filter_map(|d| {
            let name = unprefixed(&d.name);
            matches!(name, "cost" | "listSize").then(|| {
                let mut directive = (**d).clone();
                directive.name = Name::new_unchecked(name);
                directive
            })
        })
        .collect()
}

fn has(directives: &DirectiveList, name: &str) -> bool {
    directive(directives, name).is_some()
}

fn string_arg(directive: &Directive, name: &str) -> Option<String> {
    match directive
        .specified_argument_by_name(name)
        .map(|v| v.as_ref())
    {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn bool_arg(directive: &Directive, name: &str) -> Option<bool> {
    match directive
        .specified_argument_by_name(name)
        .map(|v| v.as_ref())
    {
        Some(Value::Boolean(b)) => Some(*b),
        _ => None,
    }
}

/// The top-level field names of a field set (`"id sku"`, `"upc variation { id }"`,
/// `"weight(unit: \"kg\")"`): arguments, strings and nested selections are skipped.
fn field_set_names(set: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut braces, mut parens) = (0usize, 0usize);
    let mut chars = set.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, names: &mut Vec<String>, top: bool| {
        if top && !word.is_empty() && word != "on" {
            names.push(std::mem::take(word));
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        let top = braces == 0 && parens == 0;
        match c {
            '"' => {
                flush(&mut word, &mut names, top);
                // Skip the string, escapes included.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' => {
                flush(&mut word, &mut names, top);
                braces += 1;
            }
            // A word just inside the closing bracket is nested, never top-level.
            '}' => {
                word.clear();
                braces = braces.saturating_sub(1);
            }
            '(' => {
                flush(&mut word, &mut names, top);
                parens += 1;
            }
            ')' => {
                word.clear();
                parens = parens.saturating_sub(1);
            }
            ':' if top => word.clear(), // an alias: the field name follows
            c if c.is_alphanumeric() || c == '_' => word.push(c),
            _ => flush(&mut word, &mut names, top),
        }
    }
    flush(&mut word, &mut names, braces == 0 && parens == 0);
    names
}

pub fn compose(subgraphs: &[SubgraphSource]) -> Result<String, CompositionErrors> {
    let mut errors = Vec::new();
    let mut types: IndexMap<Name, MergedType> = IndexMap::new();
    let mut graphs: Vec<(String, &SubgraphSource)> = Vec::new();
    let mut seen = HashSet::new();
    for subgraph in subgraphs {
        let value = graph_enum_value(&subgraph.name);
        if !seen.insert(value.clone()) {
            errors.push(format!("subgraph name {:?} is used twice", subgraph.name));
            continue;
        }
        graphs.push((value, subgraph));
    }
    // Which fields each subgraph declares on each type, to check keys and requires.
    let mut declared: IndexMap<(String, Name), BTreeSet<String>> = IndexMap::new();
    for (graph, subgraph) in &graphs {
        let document = match Document::parse(&subgraph.sdl, format!("{}.graphql", subgraph.name)) {
            Ok(document) => document,
            Err(e) => {
                errors.push(format!(
                    "subgraph {:?} is not valid GraphQL: {}",
                    subgraph.name,
                    e.errors.to_string().lines().next().unwrap_or("")
                ));
                continue;
            }
        };
        let fed2 = document.definitions.iter().any(|d| match d {
            Definition::SchemaDefinition(s) => links_federation(&s.directives),
            Definition::SchemaExtension(s) => links_federation(&s.directives),
            _ => false,
        });
        for definition in &document.definitions {
            read_definition(definition, graph, fed2, &mut types, &mut declared);
        }
    }

    add_interface_object_fields(&mut types);
    check(&types, &graphs, &declared, &mut errors);
    if !errors.is_empty() {
        return Err(CompositionErrors(errors));
    }
    Ok(print(&types, &graphs))
}

/// Fields an @interfaceObject subgraph adds to an interface belong to every implementation
/// too, resolved by that subgraph.
fn add_interface_object_fields(types: &mut IndexMap<Name, MergedType>) {
    let mut additions: Vec<(Name, Name, MergedField)> = Vec::new();
    for (interface_name, interface) in types.iter() {
        if interface.kind != Kind::Interface {
            continue;
        }
        let object_graphs: Vec<&String> = interface
            .graphs
            .iter()
            .filter(|(_, g)| g.interface_object)
            .map(|(graph, _)| graph)
            .collect();
        if object_graphs.is_empty() {
            continue;
        }
        for (type_name, ty) in types.iter() {
            if ty.kind != Kind::Object || !ty.implements.contains_key(interface_name) {
                continue;
            }
            for (field_name, field) in &interface.fields {
                let sources: IndexMap<String, FieldInGraph> = field
                    .sources
                    .iter()
                    .filter(|(graph, source)| object_graphs.contains(graph) && !source.external)
                    .map(|(graph, source)| {
                        (
                            graph.clone(),
                            FieldInGraph {
                                ty: source.ty.clone(),
                                external: false,
                                requires: source.requires.clone(),
                                provides: source.provides.clone(),
                                shareable: true,
                                override_from: None,
                                override_label: None,
                            },
                        )
                    })
                    .collect();
                if sources.is_empty() || ty.fields.contains_key(field_name) {
                    continue;
                }
                additions.push((
                    type_name.clone(),
                    field_name.clone(),
                    MergedField {
                        description: field.description.clone(),
                        arguments: field.arguments.clone(),
                        inaccessible: field.inaccessible,
                        access: field.access.clone(),
                        cost: field.cost.clone(),
                        sources,
                    },
                ));
            }
        }
    }
    for (type_name, field_name, field) in additions {
        if let Some(ty) = types.get_mut(&type_name) {
            ty.fields.insert(field_name, field);
        }
    }
}

fn links_federation(directives: &DirectiveList) -> bool {
    directives.iter().filter(|d| d.name == "link").any(|d| {
        string_arg(d, "url").is_some_and(|url| url.contains("specs.apollo.dev/federation/v2"))
    })
}

/// The merged type `name` of `kind`, noted as defined in `graph` (with its description and
/// `@inaccessible`); `None` for the types composition leaves out.
fn merged_in<'t>(
    types: &'t mut IndexMap<Name, MergedType>,
    name: &Name,
    kind: Kind,
    graph: &str,
    description: Option<&Node<str>>,
    directives: &DirectiveList,
) -> Option<&'t mut MergedType> {
    if skipped(name) || (kind == Kind::Scalar && BUILT_IN_SCALARS.contains(&name.as_str())) {
        return None;
    }
    let merged = types
        .entry(name.clone())
        .or_insert_with(|| MergedType::new(kind));
    // An interface is an interface, also where a subgraph sees it as an @interfaceObject.
    if kind == Kind::Interface {
        merged.kind = Kind::Interface;
    }
    if merged.description.is_none() {
        merged.description = description.cloned();
    }
    merged.inaccessible |= has(directives, "inaccessible");
    merged
        .access
        .and(&Requirement::read(directives.iter().map(|d| &**d)));
    if merged.cost.is_empty() {
        merged.cost = cost_directives(directives);
    }
    merged.graphs.entry(graph.to_owned()).or_default();
    Some(merged)
}

/// An object or interface definition or extension, read uniformly.
struct Composite<'a> {
    kind: Kind,
    name: &'a Name,
    description: Option<&'a Node<str>>,
    directives: &'a DirectiveList,
    fields: &'a [Node<FieldDefinition>],
    implements: &'a [Name],
    extension: bool,
}

fn read_definition(
    definition: &Definition,
    graph: &str,
    fed2: bool,
    types: &mut IndexMap<Name, MergedType>,
    declared: &mut IndexMap<(String, Name), BTreeSet<String>>,
) {
    let composite: Composite<'_> = match definition {
        Definition::ObjectTypeDefinition(d) => Composite {
            kind: Kind::Object,
            name: &d.name,
            description: d.description.as_ref(),
            directives: &d.directives,
            fields: &d.fields,
            implements: &d.implements_interfaces,
            extension: false,
        },
        Definition::ObjectTypeExtension(d) => Composite {
            kind: Kind::Object,
            name: &d.name,
            description: None,
            directives: &d.directives,
            fields: &d.fields,
            implements: &d.implements_interfaces,
            extension: true,
        },
        Definition::InterfaceTypeDefinition(d) => Composite {
            kind: Kind::Interface,
            name: &d.name,
            description: d.description.as_ref(),
            directives: &d.directives,
            fields: &d.fields,
            implements: &d.implements_interfaces,
            extension: false,
        },
        Definition::InterfaceTypeExtension(d) => Composite {
            kind: Kind::Interface,
            name: &d.name,
            description: None,
            directives: &d.directives,
            fields: &d.fields,
            implements: &d.implements_interfaces,
            extension: true,
        },
        Definition::UnionTypeDefinition(d) => {
            let Some(merged) = merged_in(
                types,
                &d.name,
                Kind::Union,
                graph,
                d.description.as_ref(),
                &d.directives,
            ) else {
                return;
            };
            for member in &d.members {
                merged
                    .members
                    .entry(member.clone())
                    .or_default()
                    .push(graph.to_owned());
            }
            return;
        }
        Definition::EnumTypeDefinition(d) => {
            let Some(merged) = merged_in(
                types,
                &d.name,
                Kind::Enum,
                graph,
                d.description.as_ref(),
                &d.directives,
            ) else {
                return;
            };
            for value in &d.values {
                let entry = merged
                    .values
                    .entry(value.value.clone())
                    .or_insert((false, Vec::new()));
                entry.0 |= has(&value.directives, "inaccessible");
                entry.1.push(graph.to_owned());
            }
            return;
        }
        Definition::InputObjectTypeDefinition(d) => {
            let Some(merged) = merged_in(
                types,
                &d.name,
                Kind::Input,
                graph,
                d.description.as_ref(),
                &d.directives,
            ) else {
                return;
            };
            for field in &d.fields {
                merged
                    .input_fields
                    .entry(field.name.clone())
                    .or_insert_with(|| (field.clone(), Vec::new()))
                    .1
                    .push(graph.to_owned());
            }
            return;
        }
        Definition::ScalarTypeDefinition(d) => {
            merged_in(
                types,
                &d.name,
                Kind::Scalar,
                graph,
                d.description.as_ref(),
                &d.directives,
            );
            return;
        }
        _ => return,
    };
    let Composite {
        kind,
        name,
        description,
        directives,
        fields,
        implements,
        extension,
    } = composite;
    let Some(merged) = merged_in(types, name, kind, graph, description, directives) else {
        return;
    };
    let in_graph = merged.graphs.entry(graph.to_owned()).or_default();
    in_graph.extension |= extension || has(directives, "extends");
    in_graph.interface_object |= has(directives, "interfaceObject");
    // Federation 1 subgraphs have no @shareable: everything may be resolved twice.
    in_graph.shareable |= has(directives, "shareable") || !fed2;
    for key in directives
        .iter()
        .filter(|d| d.name == "key" || d.name == "federation__key")
    {
        if let Some(fields) = string_arg(key, "fields") {
            in_graph
                .keys
                .push((fields, bool_arg(key, "resolvable").unwrap_or(true)));
        }
    }
    let key_fields: BTreeSet<String> = in_graph
        .keys
        .iter()
        .flat_map(|(k, _)| field_set_names(k))
        .collect();
    let type_shareable = in_graph.shareable;
    for interface in implements {
        merged
            .implements
            .entry(interface.clone())
            .or_default()
            .push(graph.to_owned());
    }
    let names = declared
        .entry((graph.to_owned(), name.clone()))
        .or_default();
    for field in fields {
        if field.name.starts_with("_") && (field.name == "_service" || field.name == "_entities") {
            continue;
        }
        names.insert(field.name.to_string());
        let external = has(&field.directives, "external");
        let merged_field = merged
            .fields
            .entry(field.name.clone())
            .or_insert_with(|| MergedField {
                description: field.description.clone(),
                arguments: field.arguments.clone(),
                inaccessible: false,
                access: Requirement::default(),
                cost: Vec::new(),
                sources: IndexMap::new(),
            });
        if merged_field.cost.is_empty() {
            merged_field.cost = cost_directives(&field.directives);
        }
        merged_field.inaccessible |= has(&field.directives, "inaccessible");
        merged_field
            .access
            .and(&Requirement::read(field.directives.iter().map(|d| &**d)));
        if merged_field.description.is_none() {
            merged_field.description = field.description.clone();
        }
        merged_field.sources.insert(
            graph.to_owned(),
            FieldInGraph {
                ty: field.ty.clone(),
                external,
                requires: directive(&field.directives, "requires")
                    .and_then(|d| string_arg(d, "fields")),
                provides: directive(&field.directives, "provides")
                    .and_then(|d| string_arg(d, "fields")),
                shareable: type_shareable
                    || has(&field.directives, "shareable")
                    || key_fields.contains(field.name.as_str()),
                override_from: directive(&field.directives, "override")
                    .and_then(|d| string_arg(d, "from")),
                override_label: directive(&field.directives, "override")
                    .and_then(|d| string_arg(d, "label")),
            },
        );
    }
}

fn skipped(name: &str) -> bool {
    SKIPPED_TYPES.contains(&name)
        || name.starts_with("link__")
        || name.starts_with("federation__")
        || name.starts_with("join__")
}

fn check(
    types: &IndexMap<Name, MergedType>,
    graphs: &[(String, &SubgraphSource)],
    declared: &IndexMap<(String, Name), BTreeSet<String>>,
    errors: &mut Vec<String>,
) {
    let subgraph_name = |graph: &str| {
        graphs
            .iter()
            .find(|(g, _)| g == graph)
            .map_or(graph.to_owned(), |(_, s)| s.name.clone())
    };
    for (type_name, ty) in types {
        for (graph, in_graph) in &ty.graphs {
            for (key, _) in &in_graph.keys {
                let fields = declared.get(&(graph.clone(), type_name.clone()));
                for name in field_set_names(key) {
                    if !fields.is_some_and(|f| f.contains(&name)) {
                        errors.push(format!(
                            "[{}] On type \"{type_name}\", for @key(fields: \"{key}\"): cannot query field \"{name}\" on type \"{type_name}\"",
                            subgraph_name(graph)
                        ));
                    }
                }
            }
        }
        for (field_name, field) in &ty.fields {
            let resolving: Vec<&String> = field
                .sources
                .iter()
                .filter(|(graph, source)| {
                    !source.external
                        && !field.sources.values().any(|other| {
                            other
                                .override_from
                                .as_deref()
                                .map(graph_enum_value)
                                .as_deref()
                                == Some(graph.as_str())
                        })
                })
                .map(|(graph, _)| graph)
                .collect();
            // One named type, and the same list shape, everywhere.
            let mut shapes = field
                .sources
                .iter()
                .map(|(graph, s)| (graph, strip_non_null(&s.ty)));
            if let Some((first_graph, first)) = shapes.next() {
                for (graph, shape) in shapes {
                    if shape != first {
                        errors.push(format!(
                            "Type of field \"{type_name}.{field_name}\" is incompatible across subgraphs: \"{}\" in subgraph \"{}\" but \"{}\" in subgraph \"{}\"",
                            field.sources[first_graph].ty,
                            subgraph_name(first_graph),
                            field.sources[graph].ty,
                            subgraph_name(graph)
                        ));
                        break;
                    }
                }
            }
            if ty.kind == Kind::Object && resolving.len() > 1 {
                let unshareable: Vec<String> = resolving
                    .iter()
                    .filter(|graph| !field.sources[graph.as_str()].shareable)
                    .map(|graph| format!("\"{}\"", subgraph_name(graph)))
                    .collect();
                if !unshareable.is_empty() {
                    let all: Vec<String> = resolving
                        .iter()
                        .map(|g| format!("\"{}\"", subgraph_name(g)))
                        .collect();
                    errors.push(format!(
                        "Non-shareable field \"{type_name}.{field_name}\" is resolved from multiple subgraphs: it is resolved from subgraphs {} and defined as non-shareable in {}",
                        all.join(" and "),
                        unshareable.join(" and ")
                    ));
                }
            }
            for (graph, source) in &field.sources {
                let Some(requires) = &source.requires else {
                    continue;
                };
                for name in field_set_names(requires) {
                    let here = declared.get(&(graph.clone(), type_name.clone()));
                    let elsewhere = ty
                        .fields
                        .get(name.as_str())
                        .is_some_and(|f| f.sources.iter().any(|(g, s)| g != graph && !s.external));
                    if !here.is_some_and(|f| f.contains(&name)) || !elsewhere {
                        errors.push(format!(
                            "[{}] On field \"{type_name}.{field_name}\", for @requires(fields: \"{requires}\"): field \"{name}\" is not resolvable by any other subgraph, so the requirement cannot be satisfied",
                            subgraph_name(graph)
                        ));
                    }
                }
            }
        }
    }
}

fn strip_non_null(ty: &Type) -> String {
    match ty {
        Type::Named(n) | Type::NonNullNamed(n) => n.to_string(),
        Type::List(inner) | Type::NonNullList(inner) => format!("[{}]", strip_non_null(inner)),
    }
}

/// The supergraph type of a field: nullable wherever any subgraph says nullable.
fn merged_type(sources: &IndexMap<String, FieldInGraph>) -> Type {
    fn loosest(a: &Type, b: &Type) -> Type {
        match (a, b) {
            (Type::NonNullNamed(n), Type::NonNullNamed(_)) => Type::NonNullNamed(n.clone()),
            (Type::Named(n) | Type::NonNullNamed(n), _) => Type::Named(n.clone()),
            (Type::NonNullList(x), Type::NonNullList(y)) => {
                Type::NonNullList(Box::new(loosest(x, y)))
            }
            (Type::List(x) | Type::NonNullList(x), Type::List(y) | Type::NonNullList(y)) => {
                Type::List(Box::new(loosest(x, y)))
            }
            (a, _) => a.clone(),
        }
    }
    let mut types = sources.values().filter(|s| !s.external).map(|s| &s.ty);
    let first = types
        .next()
        .or_else(|| sources.values().next().map(|s| &s.ty))
        .cloned()
        .expect("a field has a source");
    types.fold(first, |acc, ty| loosest(&acc, ty))
}

fn description(out: &mut String, indent: &str, description: Option<&Node<str>>) {
    if let Some(text) = description {
        let _ = writeln!(
            out,
            "{indent}\"\"\"{}\"\"\"",
            text.replace("\"\"\"", "\\\"\"\"")
        );
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

fn print(types: &IndexMap<Name, MergedType>, graphs: &[(String, &SubgraphSource)]) -> String {
    let mut out = String::new();
    let root = |name: &str| types.get(name).is_some_and(|t| t.kind == Kind::Object);
    let uses_inaccessible = types.values().any(|t| {
        t.inaccessible
            || t.fields.values().any(|f| f.inaccessible)
            || t.values.values().any(|(i, _)| *i)
    });
    // join v0.5 brings progressive override labels; v0.3 says everything else.
    let labelled = types.values().any(|t| {
        t.fields
            .values()
            .any(|f| f.sources.values().any(|s| s.override_label.is_some()))
    });
    let join = if labelled { "v0.5" } else { "v0.3" };
    let _ = write!(
        out,
        "schema\n  @link(url: \"https://specs.apollo.dev/link/v1.0\")\n  @link(url: \"https://specs.apollo.dev/join/{join}\", for: EXECUTION)\n"
    );
    if uses_inaccessible {
        out.push_str(
            "  @link(url: \"https://specs.apollo.dev/inaccessible/v0.2\", for: SECURITY)\n",
        );
    }
    let requirements = || {
        types
            .values()
            .flat_map(|t| std::iter::once(&t.access).chain(t.fields.values().map(|f| &f.access)))
    };
    let uses_cost = types.values().any(|t| {
        !t.cost.is_empty()
            || t.fields.values().any(|f| {
                !f.cost.is_empty()
                    || f.arguments
                        .iter()
                        .any(|a| !cost_directives(&a.directives).is_empty())
            })
    });
    if uses_cost {
        out.push_str(
            "  @link(url: \"https://specs.apollo.dev/cost/v0.1\", import: [\"@cost\", \"@listSize\"])\n",
        );
    }
    let uses_authenticated = requirements().any(|r| r.authenticated);
    let uses_scopes = requirements().any(|r| !r.scopes.is_empty());
    if uses_authenticated {
        out.push_str(
            "  @link(url: \"https://specs.apollo.dev/authenticated/v0.1\", for: SECURITY)\n",
        );
    }
    if uses_scopes {
        out.push_str(
            "  @link(url: \"https://specs.apollo.dev/requiresScopes/v0.1\", for: SECURITY)\n",
        );
    }
    out.push_str("{\n");
    for (operation, name) in [
        ("query", "Query"),
        ("mutation", "Mutation"),
        ("subscription", "Subscription"),
    ] {
        if root(name) {
            let _ = writeln!(out, "  {operation}: {name}");
        }
    }
    out.push_str("}\n\n");
    out.push_str(concat!(
        "directive @join__enumValue(graph: join__Graph!) repeatable on ENUM_VALUE\n\n",
        "directive @join__field(graph: join__Graph, requires: join__FieldSet, provides: join__FieldSet, type: String, external: Boolean, override: String, usedOverridden: Boolean, overrideLabel: String) repeatable on FIELD_DEFINITION | INPUT_FIELD_DEFINITION\n\n",
        "directive @join__graph(name: String!, url: String!) on ENUM_VALUE\n\n",
        "directive @join__implements(graph: join__Graph!, interface: String!) repeatable on OBJECT | INTERFACE\n\n",
        "directive @join__type(graph: join__Graph!, key: join__FieldSet, extension: Boolean! = false, resolvable: Boolean! = true, isInterfaceObject: Boolean! = false) repeatable on OBJECT | INTERFACE | UNION | ENUM | INPUT_OBJECT | SCALAR\n\n",
        "directive @join__unionMember(graph: join__Graph!, member: String!) repeatable on UNION\n\n",
        "directive @link(url: String, as: String, for: link__Purpose, import: [link__Import]) repeatable on SCHEMA\n\n",
    ));
    if uses_inaccessible {
        out.push_str("directive @inaccessible on FIELD_DEFINITION | OBJECT | INTERFACE | UNION | ARGUMENT_DEFINITION | SCALAR | ENUM | ENUM_VALUE | INPUT_OBJECT | INPUT_FIELD_DEFINITION\n\n");
    }
    if uses_cost {
        out.push_str("directive @cost(weight: Int!) on ARGUMENT_DEFINITION | ENUM | FIELD_DEFINITION | INPUT_FIELD_DEFINITION | OBJECT | SCALAR\n\ndirective @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!], requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION\n\n");
    }
    if uses_authenticated {
        out.push_str(
            "directive @authenticated on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n\n",
        );
    }
    if uses_scopes {
        out.push_str("directive @requiresScopes(scopes: [[requiresScopes__Scope!]!]!) on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n\nscalar requiresScopes__Scope\n\n");
    }
    out.push_str("scalar join__FieldSet\n\nenum join__Graph {\n");
    for (value, subgraph) in graphs {
        let _ = writeln!(
            out,
            "  {value} @join__graph(name: {}, url: {})",
            quote(&subgraph.name),
            quote(&subgraph.url)
        );
    }
    out.push_str("}\n\nscalar link__Import\n\nenum link__Purpose {\n  SECURITY\n  EXECUTION\n}\n");

    for (name, ty) in types {
        out.push('\n');
        description(&mut out, "", ty.description.as_ref());
        let mut type_directives = String::from(if ty.inaccessible {
            " @inaccessible"
        } else {
            ""
        });
        // Unions and inputs take no authorization directives.
        if !matches!(ty.kind, Kind::Union | Kind::Input) {
            ty.access.print(&mut type_directives);
            for directive in &ty.cost {
                let _ = write!(type_directives, " {directive}");
            }
        }
        let join_types = |out: &mut String| {
            for (graph, in_graph) in &ty.graphs {
                if in_graph.keys.is_empty() {
                    let extra = if in_graph.interface_object {
                        ", isInterfaceObject: true"
                    } else {
                        ""
                    };
                    let _ = write!(out, "\n  @join__type(graph: {graph}{extra})");
                }
                for (key, resolvable) in &in_graph.keys {
                    let mut extra = String::new();
                    if in_graph.extension {
                        extra.push_str(", extension: true");
                    }
                    if !resolvable {
                        extra.push_str(", resolvable: false");
                    }
                    if in_graph.interface_object {
                        extra.push_str(", isInterfaceObject: true");
                    }
                    let _ = write!(
                        out,
                        "\n  @join__type(graph: {graph}, key: {}{extra})",
                        quote(key)
                    );
                }
            }
        };
        match ty.kind {
            Kind::Scalar => {
                let _ = write!(out, "scalar {name}{type_directives}");
                join_types(&mut out);
                out.push('\n');
            }
            Kind::Union => {
                let _ = write!(out, "union {name}{type_directives}");
                join_types(&mut out);
                for (member, in_graphs) in &ty.members {
                    for graph in in_graphs {
                        let _ = write!(
                            out,
                            "\n  @join__unionMember(graph: {graph}, member: {})",
                            quote(member)
                        );
                    }
                }
                let members: Vec<&str> = ty.members.keys().map(Name::as_str).collect();
                let _ = writeln!(out, "\n = {}", members.join(" | "));
            }
            Kind::Enum => {
                let _ = write!(out, "enum {name}{type_directives}");
                join_types(&mut out);
                out.push_str("\n{\n");
                for (value, (value_inaccessible, in_graphs)) in &ty.values {
                    let _ = write!(out, "  {value}");
                    for graph in in_graphs {
                        let _ = write!(out, " @join__enumValue(graph: {graph})");
                    }
                    if *value_inaccessible {
                        out.push_str(" @inaccessible");
                    }
                    out.push('\n');
                }
                out.push_str("}\n");
            }
            Kind::Input => {
                let _ = write!(out, "input {name}{type_directives}");
                join_types(&mut out);
                out.push_str("\n{\n");
                let all = ty.graphs.len();
                // Input types merge by intersection: only fields every subgraph accepts.
                for (definition, in_graphs) in
                    ty.input_fields.values().filter(|(_, g)| g.len() == all)
                {
                    let mut field = definition.as_ref().clone();
                    field.directives = DirectiveList::default();
                    field.description = None;
                    let _ = writeln!(out, "  {}", field);
                    let _ = in_graphs;
                }
                out.push_str("}\n");
            }
            Kind::Object | Kind::Interface => {
                let keyword = if ty.kind == Kind::Object {
                    "type"
                } else {
                    "interface"
                };
                let implements: Vec<&str> = ty.implements.keys().map(Name::as_str).collect();
                let implements = if implements.is_empty() {
                    String::new()
                } else {
                    format!(" implements {}", implements.join(" & "))
                };
                let _ = write!(out, "{keyword} {name}{implements}{type_directives}");
                join_types(&mut out);
                for (interface, in_graphs) in &ty.implements {
                    for graph in in_graphs {
                        let _ = write!(
                            out,
                            "\n  @join__implements(graph: {graph}, interface: {})",
                            quote(interface)
                        );
                    }
                }
                out.push_str("\n{\n");
                let type_graphs: Vec<&String> = ty.graphs.keys().collect();
                for (field_name, field) in &ty.fields {
                    description(&mut out, "  ", field.description.as_ref());
                    let arguments = if field.arguments.is_empty() {
                        String::new()
                    } else {
                        let printed: Vec<String> = field
                            .arguments
                            .iter()
                            .map(|a| {
                                let mut a = a.as_ref().clone();
                                a.directives = DirectiveList(
                                    cost_directives(&a.directives)
                                        .into_iter()
                                        .map(Node::new)
                                        .collect(),
                                );
                                a.description = None;
                                a.to_string()
                            })
                            .collect();
                        format!("({})", printed.join(", "))
                    };
                    let _ = write!(
                        out,
                        "  {field_name}{arguments}: {}",
                        merged_type(&field.sources)
                    );
                    // A progressive override (with a label) keeps the original subgraph: it
                    // serves the field while the label is off.
                    let overridden: Vec<String> = field
                        .sources
                        .values()
                        .filter(|s| s.override_label.is_none())
                        .filter_map(|s| s.override_from.as_deref().map(graph_enum_value))
                        .collect();
                    let plain = field.sources.len() == type_graphs.len()
                        && field.sources.values().all(|s| {
                            !s.external
                                && s.requires.is_none()
                                && s.provides.is_none()
                                && s.override_from.is_none()
                        });
                    if !plain {
                        for (graph, source) in &field.sources {
                            if overridden.contains(graph) {
                                continue;
                            }
                            let mut args = format!("graph: {graph}");
                            if let Some(requires) = &source.requires {
                                let _ = write!(args, ", requires: {}", quote(requires));
                            }
                            if let Some(provides) = &source.provides {
                                let _ = write!(args, ", provides: {}", quote(provides));
                            }
                            if source.external {
                                args.push_str(", external: true");
                            }
                            if let Some(from) = &source.override_from {
                                let _ = write!(args, ", override: {}", quote(from));
                            }
                            if let Some(label) = &source.override_label {
                                let _ = write!(args, ", overrideLabel: {}", quote(label));
                            }
                            let _ = write!(out, " @join__field({args})");
                        }
                    }
                    if field.inaccessible {
                        out.push_str(" @inaccessible");
                    }
                    field.access.print(&mut out);
                    for directive in &field.cost {
                        let _ = write!(out, " {directive}");
                    }
                    out.push('\n');
                }
                out.push_str("}\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subgraph(name: &str, sdl: &str) -> SubgraphSource {
        SubgraphSource {
            name: name.into(),
            url: format!("http://{name}.local/graphql"),
            sdl: format!(
                "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.5\", import: [\"@key\", \"@shareable\", \"@external\", \"@requires\", \"@provides\"])\n{sdl}"
            ),
        }
    }

    #[test]
    fn field_set_names_skip_arguments_strings_and_nesting() {
        assert_eq!(field_set_names("id sku"), ["id", "sku"]);
        assert_eq!(
            field_set_names("upc variation { id }"),
            ["upc", "variation"]
        );
        assert_eq!(
            field_set_names("weight(unit: \"kg, lb\") price"),
            ["weight", "price"]
        );
        assert_eq!(field_set_names("a: id"), ["id"]);
        // The last word inside brackets is nested too (was taken for a top-level field).
        assert_eq!(
            field_set_names("comments(limit: 3) { authorId }"),
            ["comments"]
        );
        assert_eq!(field_set_names("variation{id} upc"), ["variation", "upc"]);
    }

    #[test]
    fn composes_entities_across_subgraphs_into_a_servable_supergraph() {
        let supergraph = compose(&[
            subgraph("products", "type Query { top: [Product] } type Product @key(fields: \"upc\") { upc: String! name: String price: Int }"),
            subgraph("inventory", "type Product @key(fields: \"upc\") { upc: String! price: Int @external stock: Int @requires(fields: \"price\") }"),
        ])
        .unwrap();
        let parsed = crate::supergraph::Supergraph::parse(&supergraph).unwrap();
        let product = apollo_compiler::name!("Product");
        assert_eq!(
            parsed.field_graphs(&product, &apollo_compiler::name!("name")),
            ["PRODUCTS"]
        );
        assert_eq!(
            parsed.field_graphs(&product, &apollo_compiler::name!("stock")),
            ["INVENTORY"]
        );
        assert_eq!(
            parsed
                .field_graphs(&product, &apollo_compiler::name!("upc"))
                .len(),
            2
        );
    }

    #[test]
    fn authorization_directives_reach_the_supergraph_combined_across_subgraphs() {
        let supergraph = compose(&[
            subgraph(
                "accounts",
                "type Query { me: User @authenticated } \
                 type User @key(fields: \"id\") { id: ID! email: String @shareable @requiresScopes(scopes: [[\"users:read\"], [\"admin\"]]) }",
            ),
            subgraph(
                "billing",
                "type User @key(fields: \"id\") { id: ID! email: String @shareable @requiresScopes(scopes: [[\"pii\"]]) \
                 invoices: [Invoice] } type Invoice @requiresScopes(scopes: [[\"billing\"]]) { total: Int }",
            ),
        ])
        .unwrap();
        assert!(
            supergraph.contains(
                "@link(url: \"https://specs.apollo.dev/authenticated/v0.1\", for: SECURITY)"
            ),
            "{supergraph}"
        );
        assert!(
            supergraph.contains("me: User @authenticated"),
            "{supergraph}"
        );
        assert!(
            supergraph
                .contains(r#"@requiresScopes(scopes: [["pii", "users:read"], ["admin", "pii"]])"#),
            "both subgraphs' scopes are required: {supergraph}"
        );
        let parsed = crate::supergraph::Supergraph::parse(&supergraph).unwrap();
        let api = parsed.api.to_string();
        assert!(
            !api.contains("requiresScopes") && !api.contains("authenticated"),
            "{api}"
        );
        // The type's requirement applies to the field returning it.
        let mut operation = crate::operation::normalize(
            &crate::operation::parse(
                &parsed.api,
                "{ me { invoices { total } } }",
                &Default::default(),
            )
            .unwrap(),
            None,
            &Default::default(),
            &Default::default(),
        )
        .unwrap()
        .0;
        let signed_in = |scope: &str| scope == "users:read";
        let denial = parsed
            .access
            .filter(&parsed.api, &mut operation, Some(&signed_in));
        assert!(!denial.is_empty());
        assert_eq!(
            crate::selection::print(&operation.selections),
            "{ me { __junction_unauthorized: __typename } }"
        );
    }

    #[test]
    fn cost_directives_reach_the_supergraph_and_its_cost_model() {
        let supergraph = compose(&[subgraph(
            "products",
            "type Query { top(first: Int @federation__cost(weight: 2)): [Product] @federation__listSize(assumedSize: 50, slicingArguments: [\"first\"]) } \
             type Product @key(fields: \"upc\") @federation__cost(weight: 3) { upc: String! price: Int @federation__cost(weight: 7) }",
        )])
        .unwrap();
        for expected in [
            "top(first: Int @cost(weight: 2)): [Product] @listSize(assumedSize: 50, slicingArguments: [\"first\"])",
            "price: Int @cost(weight: 7)",
            "@cost(weight: 3)",
        ] {
            assert!(supergraph.contains(expected), "{expected}: {supergraph}");
        }
        let parsed = crate::supergraph::Supergraph::parse(&supergraph).unwrap();
        assert!(!parsed.api.to_string().contains("@cost"));
        let variables = Default::default();
        let document = crate::operation::parse(
            &parsed.api,
            "{ top(first: 4) { price } }",
            &Default::default(),
        )
        .unwrap();
        let (operation, _) =
            crate::operation::normalize(&document, None, &variables, &Default::default()).unwrap();
        let cost = parsed
            .cost
            .estimate(&parsed.api, &operation, &variables, &Default::default());
        assert_eq!(cost, 2 + 4 * (3 + 7));
    }

    #[test]
    fn reports_what_makes_subgraphs_unservable() {
        let error = compose(&[
            subgraph("a", "type Query { a: Thing } type Thing { id: ID! size: Int } type Product @key(fields: \"sku\") { upc: String! }"),
            subgraph("b", "type Query { b: Thing } type Thing { id: ID! size: String } type Other @key(fields: \"id\") { id: ID! x: Int @requires(fields: \"missing\") }"),
        ])
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("Type of field \"Thing.size\" is incompatible across subgraphs"),
            "{text}"
        );
        assert!(
            text.contains("Non-shareable field \"Thing.id\" is resolved from multiple subgraphs"),
            "{text}"
        );
        assert!(
            text.contains(
                "[a] On type \"Product\", for @key(fields: \"sku\"): cannot query field \"sku\""
            ),
            "{text}"
        );
        assert!(
            text.contains("for @requires(fields: \"missing\")"),
            "{text}"
        );
    }

    #[test]
    fn override_moves_a_field_to_the_overriding_subgraph() {
        let supergraph = compose(&[
            subgraph("old", "type Query { item: Item } type Item @key(fields: \"id\") { id: ID! price: Int }"),
            subgraph(
                "new",
                "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.5\", import: [\"@override\"])\ntype Item @key(fields: \"id\") { id: ID! price: Int @override(from: \"old\") }",
            ),
        ])
        .unwrap();
        let parsed = crate::supergraph::Supergraph::parse(&supergraph).unwrap();
        let item = apollo_compiler::name!("Item");
        assert_eq!(
            parsed.field_graphs(&item, &apollo_compiler::name!("price")),
            ["NEW"]
        );
        // And the planner follows: `price` comes from the new subgraph.
        let document =
            crate::operation::parse(&parsed.api, "{ item { price } }", &Default::default())
                .unwrap();
        let (operation, _) =
            crate::operation::normalize(&document, None, &Default::default(), &Default::default())
                .unwrap();
        let plan = crate::planner::plan(&parsed, &operation)
            .unwrap()
            .to_string();
        assert!(plan.contains("Fetch(service: \"new\")"), "{plan}");
        assert!(plan.contains("{ ... on Item { price } }"), "{plan}");
    }

    #[test]
    fn progressive_override_follows_its_label() {
        let supergraph = compose(&[
            subgraph("old", "type Query { item: Item } type Item @key(fields: \"id\") { id: ID! price: Int }"),
            subgraph(
                "new",
                "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.7\", import: [\"@override\"])\ntype Item @key(fields: \"id\") { id: ID! price: Int @override(from: \"old\", label: \"percent(25)\") }",
            ),
        ])
        .unwrap();
        assert!(
            supergraph.contains("overrideLabel: \"percent(25)\""),
            "{supergraph}"
        );
        let parsed = crate::supergraph::Supergraph::parse(&supergraph).unwrap();
        let item = apollo_compiler::name!("Item");
        let price = apollo_compiler::name!("price");
        let on: crate::supergraph::Labels = ["percent(25)".to_owned()].into();
        assert_eq!(
            parsed.field_graphs_with(&item, &price, &Default::default()),
            ["OLD"]
        );
        assert_eq!(parsed.field_graphs_with(&item, &price, &on), ["NEW"]);
        assert_eq!(parsed.override_labels(), on);
    }

    #[test]
    fn shareable_fields_may_be_resolved_twice() {
        compose(&[
            subgraph(
                "a",
                "type Query { a: Thing } type Thing @shareable { id: ID! }",
            ),
            subgraph(
                "b",
                "type Query { b: Thing } type Thing @shareable { id: ID! }",
            ),
        ])
        .unwrap();
    }
}
