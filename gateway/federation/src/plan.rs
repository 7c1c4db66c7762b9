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
    /// Only objects whose `__typename` is this type.
    TypeCondition(Name),
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Key(key) => f.write_str(key),
            PathElement::List => f.write_str("@"),
            PathElement::TypeCondition(ty) => write!(f, "|[{ty}]"),
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
        }
    }

    fn write(&self, out: &mut String, indent: usize) {
        let pad = "  ".repeat(indent);
        match self {
            PlanNode::Fetch(fetch) => {
                out.push_str(&format!("{pad}Fetch(service: {:?}) {{\n", fetch.service));
                if fetch.is_entity_fetch() {
                    out.push_str(&format!("{pad}  {}\n{pad}  =>\n", print(&fetch.requires)));
                }
                out.push_str(&format!("{pad}  {}\n{pad}}},\n", print(&fetch.selections)));
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
                // `a.@.b|[T]`: type conditions attach to the step before them.
                let mut printed = String::new();
                for (i, element) in path.iter().enumerate() {
                    if i > 0 && !matches!(element, PathElement::TypeCondition(_)) {
                        printed.push('.');
                    }
                    printed.push_str(&element.to_string());
                }
                out.push_str(&format!("{pad}Flatten(path: \"{printed}\") {{\n"));
                node.write(out, indent + 1);
                out.push_str(&format!("{pad}}},\n"));
            }
        }
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
