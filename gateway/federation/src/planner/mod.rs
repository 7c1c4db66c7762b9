//! The query planner: splits a normalized operation into fetches against the subgraphs that
//! can resolve each field, joined by entity lookups (`_entities`) through `@key`s.
//!
//! Planning walks the operation once. Each field goes to the fetch in progress when that
//! fetch's subgraph resolves it (or a `@provides` above it makes it available there);
//! otherwise the fetch in progress also selects `__typename`, a key the target subgraph can
//! look the entity up by, and anything the field `@requires`, and a dependent entity fetch at
//! that response path resolves the field. Dependent fetches of one fetch run in parallel,
//! after it. Root fields of a query group by subgraph and run in parallel; mutation root
//! fields run in order.

pub mod hive;

use apollo_compiler::ast::{OperationType, Type};
use apollo_compiler::{Name, Node, name};

use crate::operation::Operation;
use crate::plan::{Fetch, PathElement, PlanNode, QueryPlan};
use crate::selection::{self, Field, Fragment, Selection};
use crate::supergraph::{Labels, Supergraph};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("no subgraph resolves {0}.{1}")]
    Unresolvable(Name, Name),
    #[error(
        "cannot reach {type_name}.{field} from subgraph {from}: no key of {type_name} leads there"
    )]
    Unreachable {
        type_name: Name,
        field: Name,
        from: String,
    },
    #[error("{type_name}.{field} requires fields subgraph {from} cannot provide")]
    UnsatisfiableRequires {
        type_name: Name,
        field: Name,
        from: String,
    },
    #[error("unknown field {0}.{1}")]
    UnknownField(Name, Name),
    /// The Hive planner failed (or panicked): its reason.
    #[error("{0}")]
    Hive(String),
}

/// Which planner plans operations (`[gateway] planner`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlannerKind {
    /// Hive Router's planner ([`hive`]): a search over a query graph.
    #[default]
    Hive,
    /// Junction's own greedy planner (this module).
    Junction,
}

/// Plans `operation` with the planner `kind` names, `labels` active.
pub fn plan_using(
    kind: PlannerKind,
    supergraph: &Supergraph,
    operation: &Operation,
    labels: &Labels,
) -> Result<QueryPlan, PlanError> {
    match kind {
        PlannerKind::Hive => hive::plan_with(supergraph, operation, labels),
        PlannerKind::Junction => plan_with(supergraph, operation, labels),
    }
}

struct Group {
    graph: Name,
    /// The entity type of an entity fetch; `None` for a root fetch.
    entity_type: Option<Name>,
    path: Vec<PathElement>,
    requires: Vec<Selection>,
    selections: Vec<Selection>,
    children: Vec<usize>,
}

pub struct Planner<'a> {
    supergraph: &'a Supergraph,
    labels: &'a Labels,
    groups: Vec<Group>,
}

pub fn plan(supergraph: &Supergraph, operation: &Operation) -> Result<QueryPlan, PlanError> {
    plan_with(supergraph, operation, &Labels::new())
}

/// Plans with the given progressive-override labels active.
pub fn plan_with(
    supergraph: &Supergraph,
    operation: &Operation,
    labels: &Labels,
) -> Result<QueryPlan, PlanError> {
    let mut planner = Planner {
        supergraph,
        labels,
        groups: Vec::new(),
    };
    let roots = planner.plan_roots(operation)?;
    let nodes: Vec<PlanNode> = roots
        .iter()
        .map(|gid| planner.node(*gid, operation))
        .collect();
    let root = match (operation.kind, nodes.len()) {
        (_, 0) => None,
        (_, 1) => nodes.into_iter().next(),
        (OperationType::Mutation, _) => Some(PlanNode::Sequence(nodes)),
        _ => Some(PlanNode::Parallel(nodes)),
    };
    Ok(QueryPlan { root })
}

impl Planner<'_> {
    fn plan_roots(&mut self, operation: &Operation) -> Result<Vec<usize>, PlanError> {
        let root_type = &operation.root_type;
        let mut roots: Vec<usize> = Vec::new();
        for selection in &operation.selections {
            let Selection::Field(field) = selection else {
                continue;
            };
            if field.name.starts_with("__") {
                continue; // __typename is answered by the router, introspection before planning
            }
            let candidates = self
                .supergraph
                .field_graphs_with(root_type, &field.name, self.labels);
            if candidates.is_empty() {
                return Err(PlanError::Unresolvable(
                    root_type.clone(),
                    field.name.clone(),
                ));
            }
            let reuse = match operation.kind {
                // Mutations run in order: only the group just before may take this field.
                OperationType::Mutation => roots
                    .last()
                    .copied()
                    .filter(|gid| candidates.contains(&self.groups[*gid].graph)),
                _ => roots
                    .iter()
                    .copied()
                    .find(|gid| candidates.contains(&self.groups[*gid].graph)),
            };
            let gid = match reuse {
                Some(gid) => gid,
                None => {
                    let graph = self
                        .best_graph(root_type, &operation.selections, &candidates)
                        .ok_or_else(|| {
                            PlanError::Unresolvable(root_type.clone(), field.name.clone())
                        })?;
                    let gid = self.new_group(graph, None, Vec::new());
                    roots.push(gid);
                    gid
                }
            };
            let planned =
                self.plan_in(gid, root_type, std::slice::from_ref(selection), &[], None)?;
            selection::merge_all(&mut self.groups[gid].selections, planned);
        }
        Ok(roots)
    }

    /// Of `candidates`, the subgraph that resolves the most root fields: fewer fetches.
    fn best_graph(
        &self,
        root_type: &Name,
        selections: &[Selection],
        candidates: &[Name],
    ) -> Option<Name> {
        let mut best = candidates.first()?.clone();
        let mut best_count = 0;
        for graph in candidates {
            let count = selections
                .iter()
                .filter(|s| matches!(s, Selection::Field(f) if self.supergraph.resolves_with(root_type, &f.name, graph, self.labels)))
                .count();
            if count > best_count {
                best = graph.clone();
                best_count = count;
            }
        }
        Some(best)
    }

    fn new_group(
        &mut self,
        graph: Name,
        entity_type: Option<Name>,
        path: Vec<PathElement>,
    ) -> usize {
        self.groups.push(Group {
            graph,
            entity_type,
            path,
            requires: Vec::new(),
            selections: Vec::new(),
            children: Vec::new(),
        });
        self.groups.len() - 1
    }

    /// The selections group `gid` makes at `path` for `selections` on `parent`; anything its
    /// subgraph cannot resolve goes to dependent groups.
    fn plan_in(
        &mut self,
        gid: usize,
        parent: &Name,
        selections: &[Selection],
        path: &[PathElement],
        provided: Option<&[Selection]>,
    ) -> Result<Vec<Selection>, PlanError> {
        let graph = self.groups[gid].graph.clone();
        let mut out = Vec::new();
        for selection in selections {
            match selection {
                Selection::Fragment(fragment) => {
                    let condition = &fragment.type_condition;
                    let known = self.supergraph.is_abstract(condition)
                        || self.supergraph.type_in_graph(condition, &graph).is_some();
                    if !known {
                        // This subgraph never returns that type here; but it may still be
                        // reachable as an entity of the enclosing abstract type.
                        if !self.supergraph.is_abstract(parent) {
                            continue;
                        }
                    }
                    let inner_path = if self.supergraph.is_abstract(parent) {
                        let mut p = path.to_vec();
                        p.push(PathElement::TypeCondition(vec![condition.clone()]));
                        p
                    } else {
                        path.to_vec()
                    };
                    let inner = if known {
                        let narrowed = provided.map(|p| narrow(p, condition));
                        self.plan_in(
                            gid,
                            condition,
                            &fragment.selections,
                            &inner_path,
                            narrowed.as_deref(),
                        )?
                    } else {
                        Vec::new()
                    };
                    if self.supergraph.is_abstract(parent) {
                        selection::merge(&mut out, typename());
                    }
                    if !inner.is_empty() {
                        selection::merge(
                            &mut out,
                            Selection::Fragment(Fragment {
                                type_condition: condition.clone(),
                                selections: inner,
                            }),
                        );
                    }
                }
                Selection::Field(field) => {
                    if field.name == "__typename" {
                        selection::merge(&mut out, selection.clone());
                        continue;
                    }
                    let provided_here = provided.and_then(|p| find_field(p, &field.name));
                    if provided_here.is_some()
                        || self
                            .supergraph
                            .resolves_with(parent, &field.name, &graph, self.labels)
                    {
                        let planned = self.plan_local(gid, parent, field, path, provided_here)?;
                        selection::merge(&mut out, Selection::Field(planned));
                    } else if self.supergraph.is_abstract(parent) {
                        // Ask each possible type on its own: its field may live elsewhere.
                        let exploded: Vec<Selection> = self
                            .supergraph
                            .possible_types(parent)
                            .into_iter()
                            .map(|ty| {
                                Selection::Fragment(Fragment {
                                    type_condition: ty,
                                    selections: vec![selection.clone()],
                                })
                            })
                            .collect();
                        let planned = self.plan_in(gid, parent, &exploded, path, provided)?;
                        selection::merge_all(&mut out, planned);
                    } else {
                        let local = self.jump(gid, parent, field, path)?;
                        selection::merge_all(&mut out, local);
                    }
                }
            }
        }
        Ok(out)
    }

    /// A field the group's subgraph resolves, with its sub-selections planned.
    fn plan_local(
        &mut self,
        gid: usize,
        parent: &Name,
        field: &Field,
        path: &[PathElement],
        provided_here: Option<&Field>,
    ) -> Result<Field, PlanError> {
        let graph = self.groups[gid].graph.clone();
        let mut planned = Field {
            selections: Vec::new(),
            ..field.clone()
        };
        let definition = self
            .supergraph
            .schema
            .type_field(parent, &field.name)
            .map_err(|_| PlanError::UnknownField(parent.clone(), field.name.clone()))?;
        let return_type = definition.ty.inner_named_type().clone();
        if field.selections.is_empty() {
            // Every sub-selection of an object field was skipped: the subgraph still needs
            // one to answer whether the object is there (the client gets `{}` or null).
            if self
                .supergraph
                .schema
                .types
                .get(&return_type)
                .is_some_and(|ty| !ty.is_leaf())
            {
                planned.selections.push(typename());
            }
            return Ok(planned);
        }
        let mut child_path = path.to_vec();
        child_path.push(PathElement::Key(field.response_key().clone()));
        push_lists(&definition.ty, &mut child_path);
        let provides = match provided_here {
            Some(provided) => Some(provided.selections.clone()),
            None => self
                .supergraph
                .field_source(parent, &field.name, &graph)
                .map(|source| source.provides.clone())
                .filter(|p| !p.is_empty()),
        };
        planned.selections = self.plan_in(
            gid,
            &return_type,
            &field.selections,
            &child_path,
            provides.as_deref(),
        )?;
        Ok(planned)
    }

    /// `field` lives in another subgraph: returns what this group must select so a dependent
    /// entity fetch can resolve it, and plans that fetch.
    fn jump(
        &mut self,
        gid: usize,
        parent: &Name,
        field: &Field,
        path: &[PathElement],
    ) -> Result<Vec<Selection>, PlanError> {
        let graph = self.groups[gid].graph.clone();
        let targets = self
            .supergraph
            .field_graphs_with(parent, &field.name, self.labels);
        if targets.is_empty() {
            return Err(PlanError::Unresolvable(parent.clone(), field.name.clone()));
        }
        // Prefer a subgraph this group already jumps to at this path: one fetch, not two.
        let mut ordered: Vec<Name> = targets.clone();
        ordered.sort_by_key(|target| {
            !self.groups[gid].children.iter().any(|c| {
                let child = &self.groups[*c];
                &child.graph == target && child.path == untyped(path)
            })
        });
        let requires_of = |target: &Name| {
            self.supergraph
                .field_source(parent, &field.name, target)
                .map(|s| s.requires.clone())
                .unwrap_or_default()
        };
        // Directly: this group can provide a key of the target and what the field requires.
        for target in &ordered {
            let requires = requires_of(target);
            let Some(key) = self.usable_key(parent, target, &graph) else {
                continue;
            };
            if !self.can_provide(parent, &requires, &graph) {
                continue;
            }
            let mut local = vec![typename()];
            selection::merge_all(&mut local, key.clone());
            selection::merge_all(&mut local, requires.clone());
            self.entity_fetch(
                gid,
                target,
                parent,
                path,
                selection::union(key, requires),
                field,
            )?;
            return Ok(local);
        }
        // Through an @interfaceObject: the target knows the entity only as one of its
        // interfaces, by that interface's key.
        for target in &ordered {
            for interface in self.interfaces_of(parent) {
                let Some(in_target) = self.supergraph.type_in_graph(&interface, target) else {
                    continue;
                };
                if !in_target.interface_object {
                    continue;
                }
                let requires = self
                    .supergraph
                    .field_source(&interface, &field.name, target)
                    .map(|s| s.requires.clone())
                    .unwrap_or_default();
                let key = in_target
                    .keys
                    .iter()
                    .filter(|k| k.resolvable)
                    .find(|k| self.can_provide(parent, &k.selections, &graph))
                    .map(|k| k.selections.clone());
                let Some(key) = key else { continue };
                if !self.can_provide(parent, &requires, &graph) {
                    continue;
                }
                let mut local = vec![typename()];
                selection::merge_all(&mut local, key.clone());
                selection::merge_all(&mut local, requires.clone());
                self.entity_fetch(
                    gid,
                    target,
                    &interface,
                    path,
                    selection::union(key, requires),
                    field,
                )?;
                return Ok(local);
            }
        }
        // Through one other subgraph: reachable from here, it provides the target's key and
        // the requirements (another key of the entity, or fields that live there).
        for target in &ordered {
            let requires = requires_of(target);
            let Some(in_target) = self.supergraph.type_in_graph(parent, target) else {
                continue;
            };
            let target_keys: Vec<Vec<Selection>> = in_target
                .keys
                .iter()
                .filter(|k| k.resolvable)
                .map(|k| k.selections.clone())
                .collect();
            let middles: Vec<Name> = self
                .supergraph
                .type_graphs(parent)
                .map(|(g, _)| g.clone())
                .collect();
            for middle in middles {
                if &middle == target || middle == graph {
                    continue;
                }
                let Some(middle_key) = self.usable_key(parent, &middle, &graph) else {
                    continue;
                };
                let Some(target_key) = target_keys
                    .iter()
                    .find(|key| self.can_provide(parent, key, &middle))
                    .cloned()
                else {
                    continue;
                };
                if !self.can_provide(parent, &requires, &middle) {
                    continue;
                }
                // The middle fetch brings the target's key and the requirements, and may
                // itself require fields from here (requires on requires)...
                let mut needed = target_key.clone();
                selection::merge_all(&mut needed, requires.clone());
                let mut middle_requires = Vec::new();
                for selection in &needed {
                    if let Selection::Field(needed_field) = selection
                        && let Some(source) =
                            self.supergraph
                                .field_source(parent, &needed_field.name, &middle)
                    {
                        selection::merge_all(&mut middle_requires, source.requires.clone());
                    }
                }
                if !self.can_provide(parent, &middle_requires, &graph) {
                    continue;
                }
                let middle_group = self.child_group(gid, &middle, parent, path);
                let mut representation = vec![typename()];
                selection::merge_all(&mut representation, middle_key.clone());
                selection::merge_all(&mut representation, middle_requires.clone());
                selection::merge(
                    &mut self.groups[middle_group].requires,
                    Selection::Fragment(Fragment {
                        type_condition: parent.clone(),
                        selections: representation,
                    }),
                );
                let mut brought = vec![typename()];
                let planned = self.plan_in(middle_group, parent, &needed, path, None)?;
                selection::merge_all(&mut brought, planned);
                selection::merge(
                    &mut self.groups[middle_group].selections,
                    Selection::Fragment(Fragment {
                        type_condition: parent.clone(),
                        selections: brought,
                    }),
                );
                // ...and the target fetch runs after it.
                self.entity_fetch(
                    middle_group,
                    target,
                    parent,
                    path,
                    selection::union(target_key, requires),
                    field,
                )?;
                let mut local = vec![typename()];
                selection::merge_all(&mut local, middle_key);
                selection::merge_all(&mut local, middle_requires);
                return Ok(local);
            }
        }
        if ordered.iter().any(|target| {
            self.usable_key(parent, target, &graph).is_some()
                && !self.can_provide(parent, &requires_of(target), &graph)
        }) {
            return Err(PlanError::UnsatisfiableRequires {
                type_name: parent.clone(),
                field: field.name.clone(),
                from: self.supergraph.graph_name(&graph).to_owned(),
            });
        }
        Err(PlanError::Unreachable {
            type_name: parent.clone(),
            field: field.name.clone(),
            from: self.supergraph.graph_name(&graph).to_owned(),
        })
    }

    /// Adds `field` to the entity fetch of `target` that runs after group `after`, whose
    /// representations carry `carried` (a key and what the field requires).
    fn entity_fetch(
        &mut self,
        after: usize,
        target: &Name,
        parent: &Name,
        path: &[PathElement],
        carried: Vec<Selection>,
        field: &Field,
    ) -> Result<(), PlanError> {
        let child = self.child_group(after, target, parent, path);
        let mut representation = vec![typename()];
        selection::merge_all(&mut representation, carried);
        selection::merge(
            &mut self.groups[child].requires,
            Selection::Fragment(Fragment {
                type_condition: parent.clone(),
                selections: representation,
            }),
        );
        let planned = self.plan_in(
            child,
            parent,
            &[Selection::Field(field.clone())],
            path,
            None,
        )?;
        selection::merge(
            &mut self.groups[child].selections,
            Selection::Fragment(Fragment {
                type_condition: parent.clone(),
                selections: planned,
            }),
        );
        Ok(())
    }

    fn child_group(
        &mut self,
        gid: usize,
        graph: &Name,
        entity_type: &Name,
        path: &[PathElement],
    ) -> usize {
        // Entities of several types at one place go to one subgraph in one fetch: the
        // representations' fragments tell the types apart.
        let base = untyped(path);
        let existing = self.groups[gid].children.iter().copied().find(|c| {
            let child = &self.groups[*c];
            &child.graph == graph && child.path == base
        });
        if let Some(child) = existing {
            return child;
        }
        let child = self.new_group(graph.clone(), Some(entity_type.clone()), base.to_vec());
        self.groups[gid].children.push(child);
        child
    }

    /// The interfaces an object type implements.
    fn interfaces_of(&self, type_name: &Name) -> Vec<Name> {
        self.supergraph
            .schema
            .get_object(type_name)
            .map(|object| {
                object
                    .implements_interfaces
                    .iter()
                    .map(|i| i.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A key of `entity` that `target` can look it up by and `from` can provide.
    fn usable_key(&self, entity: &Name, target: &Name, from: &Name) -> Option<Vec<Selection>> {
        let in_target = self.supergraph.type_in_graph(entity, target)?;
        in_target
            .keys
            .iter()
            .filter(|key| key.resolvable)
            .find(|key| self.can_provide(entity, &key.selections, from))
            .map(|key| key.selections.clone())
    }

    /// Whether `graph` resolves every field of `selections` on `parent`.
    fn can_provide(&self, parent: &Name, selections: &[Selection], graph: &Name) -> bool {
        selections.iter().all(|selection| match selection {
            Selection::Field(field) => {
                self.supergraph
                    .resolves_with(parent, &field.name, graph, self.labels)
                    && (field.selections.is_empty()
                        || self
                            .supergraph
                            .field_type(parent, &field.name)
                            .is_some_and(|ty| self.can_provide(ty, &field.selections, graph)))
            }
            Selection::Fragment(fragment) => {
                self.can_provide(&fragment.type_condition, &fragment.selections, graph)
            }
        })
    }

    fn node(&self, gid: usize, operation: &Operation) -> PlanNode {
        let group = &self.groups[gid];
        let fetch = PlanNode::Fetch(self.fetch(gid, operation));
        let fetch = match &group.entity_type {
            Some(_) => PlanNode::Flatten {
                path: group.path.clone(),
                node: Box::new(fetch),
            },
            None => fetch,
        };
        let mut children: Vec<PlanNode> = group
            .children
            .iter()
            .map(|c| self.node(*c, operation))
            .collect();
        let next = match children.len() {
            0 => return fetch,
            1 => children.remove(0),
            _ => PlanNode::Parallel(children),
        };
        // A sequence inside a sequence reads better flat.
        let mut steps = vec![fetch];
        match next {
            PlanNode::Sequence(more) => steps.extend(more),
            other => steps.push(other),
        }
        PlanNode::Sequence(steps)
    }

    fn fetch(&self, gid: usize, operation: &Operation) -> Fetch {
        let group = &self.groups[gid];
        let mut variables = Vec::new();
        selection::variables(&group.selections, &mut variables);
        let declarations: Vec<String> = variables
            .iter()
            .filter_map(|name| {
                operation
                    .variable_definitions
                    .iter()
                    .find(|d| &d.name == name)
            })
            .map(|definition| {
                let mut text = format!("${}: {}", definition.name, definition.ty);
                if let Some(default) = &definition.default_value {
                    text.push_str(&format!(" = {default}"));
                }
                text
            })
            .collect();
        let service = self.supergraph.graph_name(&group.graph).to_owned();
        let (kind, document) = match &group.entity_type {
            Some(_) => {
                let mut all = vec!["$representations: [_Any!]!".to_owned()];
                all.extend(declarations);
                let entities = Selection::Field(Field {
                    arguments: vec![(
                        name!("representations"),
                        Node::new(apollo_compiler::ast::Value::Variable(name!(
                            "representations"
                        ))),
                    )],
                    selections: group.selections.clone(),
                    ..Field::new(name!("_entities"))
                });
                (
                    OperationType::Query,
                    format!(
                        "query({}) {}",
                        all.join(", "),
                        selection::print(&[entities])
                    ),
                )
            }
            None => {
                let keyword = match operation.kind {
                    OperationType::Mutation => "mutation",
                    OperationType::Subscription => "subscription",
                    OperationType::Query => "query",
                };
                let name = operation
                    .name
                    .as_ref()
                    .map(|n| format!(" {n}__{service}__{gid}"))
                    .unwrap_or_default();
                let variables = if declarations.is_empty() {
                    String::new()
                } else {
                    format!("({})", declarations.join(", "))
                };
                (
                    operation.kind,
                    format!(
                        "{keyword}{name}{variables} {}",
                        selection::print(&group.selections)
                    ),
                )
            }
        };
        Fetch {
            graph: group.graph.clone(),
            service,
            kind,
            requires: group.requires.clone(),
            selections: group.selections.clone(),
            variables,
            operation_json: serde_json::to_string(&document).expect("strings encode"),
            operation: document,
            input_rewrites: Vec::new(),
            output_rewrites: Vec::new(),
        }
    }
}

/// What a `@provides` selection provides on objects of `condition`: its fields, and those of
/// its fragments on that type.
fn narrow(provided: &[Selection], condition: &Name) -> Vec<Selection> {
    let mut out = Vec::new();
    for selection in provided {
        match selection {
            Selection::Field(_) => selection::merge(&mut out, selection.clone()),
            Selection::Fragment(fragment) if &fragment.type_condition == condition => {
                selection::merge_all(&mut out, fragment.selections.clone());
            }
            Selection::Fragment(_) => {}
        }
    }
    out
}

/// `path` without a final type condition.
fn untyped(path: &[PathElement]) -> &[PathElement] {
    match path.split_last() {
        Some((PathElement::TypeCondition(_), rest)) => rest,
        _ => path,
    }
}

fn typename() -> Selection {
    Selection::Field(Field::new(name!("__typename")))
}

fn find_field<'s>(selections: &'s [Selection], name: &Name) -> Option<&'s Field> {
    selections.iter().find_map(|s| match s {
        Selection::Field(f) if &f.name == name => Some(f),
        _ => None,
    })
}

/// One `@` per list level of `ty`.
fn push_lists(ty: &Type, path: &mut Vec<PathElement>) {
    match ty {
        Type::List(inner) | Type::NonNullList(inner) => {
            path.push(PathElement::List);
            push_lists(inner, path);
        }
        Type::Named(_) | Type::NonNullNamed(_) => {}
    }
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
            printed.contains("{ products { name __typename id } }"),
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
            printed.contains("{ ... on Item { __typename id base } }"),
            "b gets base: {printed}"
        );
        assert!(
            printed.contains("{ ... on Item { __typename id doubled } }"),
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
