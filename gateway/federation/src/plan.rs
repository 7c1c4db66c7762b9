//! A query plan: plain data between the planner and the executor. It can be printed,
//! snapshot-tested and cached without running anything.

use std::fmt;

use apollo_compiler::Name;
use apollo_compiler::ast::OperationType;

use crate::selection::{Selection, print};

#[derive(Clone, Debug)]
pub struct QueryPlan {
    /// `None` when nothing needs a subgraph (only `__typename` at the root).
    pub root: Option<PlanNode>,
}

#[derive(Clone, Debug)]
pub enum PlanNode {
    Fetch(Fetch),
    /// Children run one after another.
    Sequence(Vec<PlanNode>),
    /// Children run at the same time.
    Parallel(Vec<PlanNode>),
    /// Runs an entity fetch for every object found at `path`.
    Flatten {
        path: Vec<PathElement>,
        node: Box<PlanNode>,
    },
    /// Entity fetches for objects at several places, sent to one subgraph in one request
    /// (each under an alias of `_entities`).
    BatchFetch(BatchFetch),
}

/// One request to one subgraph answering several entity fetches (`e0: _entities(...) e1:
/// _entities(...)`).
#[derive(Clone, Debug)]
pub struct BatchFetch {
    pub graph: Name,
    pub service: String,
    /// The client's variables this fetch passes on.
    pub variables: Vec<Name>,
    pub entities: Vec<EntityBatch>,
    pub operation: String,
    pub operation_json: String,
}

/// One `_entities` alias of a [`BatchFetch`]: the objects it is for, what their
/// representations hold, and what it asks.
#[derive(Clone, Debug)]
pub struct EntityBatch {
    pub alias: String,
    /// The variable carrying this alias's representations.
    pub representations: String,
    pub paths: Vec<Vec<PathElement>>,
    pub requires: Vec<Selection>,
    pub selections: Vec<Selection>,
    pub input_rewrites: Vec<Rewrite>,
    pub output_rewrites: Vec<Rewrite>,
}

/// A change the executor makes to a representation before sending it (input) or to a
/// subgraph's answer before merging it (output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Sets the value at `path` (an @interfaceObject's representation names the interface).
    SetValue {
        path: Vec<RewriteStep>,
        value: String,
    },
    /// Renames the last key of `path` (a field fetched under an alias the planner chose).
    RenameKey { path: Vec<RewriteStep>, to: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RewriteStep {
    Key(String),
    /// Only objects whose `__typename` is one of these types (or implements one).
    TypeIn(Vec<Name>),
}

/// One request to one subgraph.
#[derive(Clone, Debug)]
pub struct Fetch {
    /// The `join__Graph` value.
    pub graph: Name,
    /// The subgraph's name, for people.
    pub service: String,
    pub kind: OperationType,
    /// For entity fetches: what each representation holds (`__typename`, key, requires).
    pub requires: Vec<Selection>,
    /// What is asked of the subgraph: root fields, or `... on T { }` for `_entities`.
    pub selections: Vec<Selection>,
    /// The client's variables this fetch passes on.
    pub variables: Vec<Name>,
    /// The document sent.
    pub operation: String,
    /// `operation` as a JSON string literal, encoded once.
    pub operation_json: String,
    /// Applied to each representation before it is sent.
    pub input_rewrites: Vec<Rewrite>,
    /// Applied to the subgraph's data (each entity, or the root data) before it is merged.
    pub output_rewrites: Vec<Rewrite>,
}

impl Fetch {
    pub fn is_entity_fetch(&self) -> bool {
        !self.requires.is_empty()
    }
}

/// A step in a response path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathElement {
    Key(Name),
    /// Every element of a list.
    List,
    /// Only objects whose `__typename` is one of these types (or implements one).
    TypeCondition(Vec<Name>),
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Key(key) => f.write_str(key),
            PathElement::List => f.write_str("@"),
            PathElement::TypeCondition(types) => {
                f.write_str("|[")?;
                for (i, ty) in types.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    f.write_str(ty)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl PlanNode {
    pub fn fetch_count(&self) -> usize {
        match self {
            PlanNode::Fetch(_) => 1,
            PlanNode::Sequence(nodes) | PlanNode::Parallel(nodes) => {
                nodes.iter().map(PlanNode::fetch_count).sum()
            }
            PlanNode::Flatten { node, .. } => node.fetch_count(),
            PlanNode::BatchFetch(_) => 1,
        }
    }

    fn heap_bytes(&self) -> u64 {
        let own = std::mem::size_of::<PlanNode>() as u64;
        own + match self {
            PlanNode::Fetch(fetch) => {
                (fetch.service.len()
                    + fetch.operation.capacity()
                    + fetch.operation_json.capacity()
                    + fetch.variables.len() * std::mem::size_of::<Name>()) as u64
                    + crate::selection::heap_bytes(&fetch.requires)
                    + crate::selection::heap_bytes(&fetch.selections)
            }
            PlanNode::Sequence(nodes) | PlanNode::Parallel(nodes) => {
                nodes.iter().map(PlanNode::heap_bytes).sum()
            }
            PlanNode::Flatten { path, node } => {
                (path.len() * std::mem::size_of::<PathElement>()) as u64 + node.heap_bytes()
            }
            PlanNode::BatchFetch(batch) => {
                (batch.service.len()
                    + batch.operation.capacity()
                    + batch.operation_json.capacity()
                    + batch.variables.len() * std::mem::size_of::<Name>()) as u64
                    + batch
                        .entities
                        .iter()
                        .map(|entity| {
                            (std::mem::size_of::<EntityBatch>()
                                + entity.paths.iter().map(|p| p.len() * 32).sum::<usize>()
                                + (entity.input_rewrites.len() + entity.output_rewrites.len()) * 64)
                                as u64
                                + crate::selection::heap_bytes(&entity.requires)
                                + crate::selection::heap_bytes(&entity.selections)
                        })
                        .sum::<u64>()
            }
        }
    }

    fn write(&self, out: &mut String, indent: usize) {
        let pad = "  ".repeat(indent);
        match self {
            PlanNode::Fetch(fetch) => {
                out.push_str(&format!("{pad}Fetch(service: {:?}) {{\n", fetch.service));
                write_rewrites(out, &pad, "input", &fetch.input_rewrites);
                if fetch.is_entity_fetch() {
                    out.push_str(&format!("{pad}  {}\n{pad}  =>\n", print(&fetch.requires)));
                }
                out.push_str(&format!("{pad}  {}\n", print(&fetch.selections)));
                write_rewrites(out, &pad, "output", &fetch.output_rewrites);
                out.push_str(&format!("{pad}}},\n"));
            }
            PlanNode::BatchFetch(batch) => {
                out.push_str(&format!(
                    "{pad}BatchFetch(service: {:?}) {{\n",
                    batch.service
                ));
                for entity in &batch.entities {
                    let paths: Vec<String> = entity.paths.iter().map(|p| print_path(p)).collect();
                    out.push_str(&format!("{pad}  {}(paths: {:?}) {{\n", entity.alias, paths));
                    let inner = format!("{pad}  ");
                    write_rewrites(out, &inner, "input", &entity.input_rewrites);
                    out.push_str(&format!(
                        "{pad}    {}\n{pad}    =>\n{pad}    {}\n",
                        print(&entity.requires),
                        print(&entity.selections)
                    ));
                    write_rewrites(out, &inner, "output", &entity.output_rewrites);
                    out.push_str(&format!("{pad}  }},\n"));
                }
                out.push_str(&format!("{pad}}},\n"));
            }
            PlanNode::Sequence(nodes) | PlanNode::Parallel(nodes) => {
                let word = if matches!(self, PlanNode::Sequence(_)) {
                    "Sequence"
                } else {
                    "Parallel"
                };
                out.push_str(&format!("{pad}{word} {{\n"));
                for node in nodes {
                    node.write(out, indent + 1);
                }
                out.push_str(&format!("{pad}}},\n"));
            }
            PlanNode::Flatten { path, node } => {
                let printed = print_path(path);
                out.push_str(&format!("{pad}Flatten(path: \"{printed}\") {{\n"));
                node.write(out, indent + 1);
                out.push_str(&format!("{pad}}},\n"));
            }
        }
    }
}

/// `a.@.b|[T]`: type conditions attach to the step before them.
fn print_path(path: &[PathElement]) -> String {
    let mut printed = String::new();
    for (i, element) in path.iter().enumerate() {
        if i > 0 && !matches!(element, PathElement::TypeCondition(_)) {
            printed.push('.');
        }
        printed.push_str(&element.to_string());
    }
    printed
}

fn write_rewrites(out: &mut String, pad: &str, side: &str, rewrites: &[Rewrite]) {
    for rewrite in rewrites {
        let (path, what) = match rewrite {
            Rewrite::SetValue { path, value } => (path, format!("= {value:?}")),
            Rewrite::RenameKey { path, to } => (path, format!("-> {to}")),
        };
        let path: Vec<String> = path
            .iter()
            .map(|step| match step {
                RewriteStep::Key(key) => key.clone(),
                RewriteStep::TypeIn(types) => format!("|[{}]", types.join("|")),
            })
            .collect();
        out.push_str(&format!(
            "{pad}  {side} rewrite: {} {what}\n",
            path.join(".")
        ));
    }
}

impl QueryPlan {
    pub fn fetch_count(&self) -> usize {
        self.root.as_ref().map_or(0, PlanNode::fetch_count)
    }

    /// About what the plan holds on the heap, for a cache bounded by bytes.
    pub fn heap_bytes(&self) -> u64 {
        self.root.as_ref().map_or(0, PlanNode::heap_bytes)
    }

    /// A subscription's plan in its two parts: the subscription opened on one subgraph, and
    /// what runs for every event it sends (fetches of fields other subgraphs own).
    pub fn split_subscription(&self) -> Option<(&Fetch, QueryPlan)> {
        match self.root.as_ref()? {
            PlanNode::Fetch(fetch) if fetch.kind == OperationType::Subscription => {
                Some((fetch, QueryPlan { root: None }))
            }
            PlanNode::Sequence(nodes) => match nodes.split_first()? {
                (PlanNode::Fetch(fetch), rest) if fetch.kind == OperationType::Subscription => {
                    let root = match rest {
                        [] => None,
                        [one] => Some(one.clone()),
                        more => Some(PlanNode::Sequence(more.to_vec())),
                    };
                    Some((fetch, QueryPlan { root }))
                }
                _ => None,
            },
            _ => None,
        }
    }
}

impl fmt::Display for QueryPlan {
    /// In the shape of Apollo's query plans, so they read familiarly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::from("QueryPlan {\n");
        if let Some(root) = &self.root {
            root.write(&mut out, 1);
        }
        out.push('}');
        f.write_str(&out)
    }
}
