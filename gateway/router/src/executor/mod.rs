//! Running a query plan: fetches in parallel where the plan allows, entity representations
//! deduplicated per fetch, results merged by path, then the response shaped to exactly what the
//! client asked, with GraphQL's null propagation and error paths.

pub mod http;
pub mod waiting;
pub mod websocket;

use std::sync::Mutex;

use apollo_compiler::Name;
use apollo_compiler::ast::Type;
use axum::http::HeaderValue;
use futures_util::future::{BoxFuture, FutureExt, join_all};
use junction_schema::Identity;
use serde_json::{Map, Value, json};

use junction_federation::operation::Operation;
use junction_federation::plan::{
    BatchFetch, Fetch, PathElement, PlanNode, QueryPlan, Rewrite, RewriteStep,
};
use junction_federation::selection::Selection;
use junction_federation::supergraph::{Graph, Supergraph};

/// Sends one GraphQL request to one subgraph and returns its answer: how a plan's fetches
/// reach subgraphs ([`http::SubgraphClient`] over HTTP; subscriptions open a
/// [`websocket::Upstream`] instead).
pub trait SubgraphExecutor: Send + Sync {
    fn execute<'a>(
        &'a self,
        graph: &'a Graph,
        body: String,
        request: &'a RequestContext<'a>,
    ) -> BoxFuture<'a, Result<Value, SubgraphError>>;
}

/// The code of an error that says a subgraph gave no GraphQL answer at all (Apollo Router's
/// name for it), apart from `DOWNSTREAM_SERVICE_ERROR`, an error the subgraph itself answered.
pub const SUBREQUEST_HTTP_ERROR: &str = "SUBREQUEST_HTTP_ERROR";

/// Why a subgraph gave no GraphQL answer, as the client is told it (after the service name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubgraphError {
    #[error("has a bad URL")]
    BadUrl,
    #[error("timed out")]
    TimedOut,
    #[error("is unreachable")]
    Unreachable,
    #[error("cut its answer short")]
    CutShort,
    #[error("answered HTTP {0} without GraphQL")]
    NotGraphQL(u16),
}

/// The request to a subgraph that an identity is signed for: the request line as sent (path
/// and query), and the body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Downstream<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub body: &'a [u8],
}

/// What the router passes on from the client's request to every subgraph request: the
/// header values as they came (cloning one shares its bytes).
#[derive(Clone, Debug, Default)]
pub struct Forwarded {
    pub traceparent: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
}

impl Forwarded {
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Self {
        Self {
            traceparent: headers.get("traceparent").cloned(),
            request_id: headers.get(junction_edge::layers::REQUEST_ID).cloned(),
        }
    }
}

/// What one client request brings to execution.
pub struct RequestContext<'a> {
    pub supergraph: &'a Supergraph,
    pub operation: &'a Operation,
    pub variables: &'a Map<String, Value>,
    pub identity: Option<&'a Identity>,
    pub forwarded: &'a Forwarded,
}

#[derive(Default)]
struct State {
    data: Value,
    errors: Vec<Value>,
}

/// Runs `plan` and returns the GraphQL response body.
pub async fn execute(
    client: &dyn SubgraphExecutor,
    plan: &QueryPlan,
    request: &RequestContext<'_>,
    initial: Option<Value>,
) -> Value {
    execute_from(client, plan, request, initial, Vec::new()).await
}

/// Runs `plan` on top of data already fetched (a subscription event), keeping its errors.
pub async fn execute_from(
    client: &dyn SubgraphExecutor,
    plan: &QueryPlan,
    request: &RequestContext<'_>,
    data: Option<Value>,
    errors: Vec<Value>,
) -> Value {
    let state = Mutex::new(State {
        data: data
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Map::new())),
        errors,
    });
    if let Some(root) = &plan.root {
        run(client, root, request, &state).await;
    }
    let State { data, mut errors } = state.into_inner().unwrap_or_else(|p| p.into_inner());
    let supergraph = request.supergraph;
    let root_type = &request.operation.root_type;
    let data = match shape_object(
        supergraph,
        &request.operation.selections,
        &data,
        root_type,
        &mut Vec::new(),
        &mut errors,
    ) {
        Ok(object) => Value::Object(object),
        Err(()) => Value::Null,
    };
    let mut response = Map::new();
    if !errors.is_empty() {
        response.insert("errors".into(), Value::Array(errors));
    }
    response.insert("data".into(), data);
    Value::Object(response)
}

fn run<'a>(
    client: &'a dyn SubgraphExecutor,
    node: &'a PlanNode,
    request: &'a RequestContext<'a>,
    state: &'a Mutex<State>,
) -> BoxFuture<'a, ()> {
    async move {
        match node {
            PlanNode::Sequence(nodes) => {
                for node in nodes {
                    run(client, node, request, state).await;
                }
            }
            PlanNode::Parallel(nodes) => {
                join_all(nodes.iter().map(|node| run(client, node, request, state))).await;
            }
            PlanNode::Fetch(fetch) => root_fetch(client, fetch, request, state).await,
            PlanNode::BatchFetch(batch) => batch_fetch(client, batch, request, state).await,
            PlanNode::Flatten { path, node } => {
                if let PlanNode::Fetch(fetch) = node.as_ref() {
                    entity_fetch(client, fetch, path, request, state).await;
                } else {
                    run(client, node, request, state).await;
                }
            }
        }
    }
    .boxed()
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fetch_variables(names: &[Name], request: &RequestContext<'_>) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|name| {
            request
                .variables
                .get(name.as_str())
                .map(|v| (name.to_string(), v.clone()))
        })
        .collect()
}

/// `{"query": ..., "variables": ...}`, with the query already JSON-encoded at planning.
fn request_body(operation_json: &str, variables: &Map<String, Value>) -> String {
    let variables = serde_json::to_string(variables).unwrap_or_else(|_| "{}".to_owned());
    let mut body = String::with_capacity(operation_json.len() + variables.len() + 32);
    body.push_str("{\"query\":");
    body.push_str(operation_json);
    body.push_str(",\"variables\":");
    body.push_str(&variables);
    body.push('}');
    body
}

fn unavailable(service: &str, why: &SubgraphError) -> Value {
    json!({
        "message": format!("the {service} service {why}"),
        "extensions": {"code": SUBREQUEST_HTTP_ERROR, "service": service},
    })
}

async fn root_fetch(
    client: &dyn SubgraphExecutor,
    fetch: &Fetch,
    request: &RequestContext<'_>,
    state: &Mutex<State>,
) {
    let Some(graph) = request.supergraph.graphs.get(&fetch.graph) else {
        return;
    };
    let body = request_body(
        &fetch.operation_json,
        &fetch_variables(&fetch.variables, request),
    );
    match client.execute(graph, body, request).await {
        Ok(mut response) => {
            let mut state = lock(state);
            if let Some(Value::Array(errors)) = response.get_mut("errors").map(Value::take) {
                state
                    .errors
                    .extend(errors.into_iter().map(|e| tag_service(e, &fetch.service)));
            }
            if let Some(mut data) = response.get_mut("data").map(Value::take) {
                for rewrite in &fetch.output_rewrites {
                    apply_rewrite(request.supergraph, rewrite, &mut data);
                }
                deep_merge(&mut state.data, data);
            }
        }
        Err(why) => lock(state).errors.push(unavailable(&fetch.service, &why)),
    }
}

/// Where the objects at `paths` are, and their representations for `requires` (each distinct
/// one once): `(location, index into representations)` per object.
type Targets = Vec<(Vec<Value>, usize)>;

fn representations(
    supergraph: &Supergraph,
    graph: &Name,
    requires: &[Selection],
    input_rewrites: &[Rewrite],
    paths: &[&[PathElement]],
    data: &Value,
) -> (Targets, Vec<Value>) {
    let mut found = Vec::new();
    for path in paths {
        collect(supergraph, data, path, &mut Vec::new(), &mut found);
    }
    let mut representations: Vec<Value> = Vec::new();
    let mut targets = Vec::new();
    for (location, object) in found {
        let Some(mut representation) = represent(supergraph, graph, requires, object) else {
            continue;
        };
        for rewrite in input_rewrites {
            apply_rewrite(supergraph, rewrite, &mut representation);
        }
        let index = match representations.iter().position(|r| r == &representation) {
            Some(index) => index,
            None => {
                representations.push(representation);
                representations.len() - 1
            }
        };
        targets.push((location, index));
    }
    (targets, representations)
}

/// Merges each entity into every object that had its representation; the last one takes it.
fn merge_entities(
    supergraph: &Supergraph,
    data: &mut Value,
    targets: &Targets,
    mut entities: Vec<Value>,
    output_rewrites: &[Rewrite],
) {
    for entity in &mut entities {
        for rewrite in output_rewrites {
            apply_rewrite(supergraph, rewrite, entity);
        }
    }
    let mut uses = vec![0usize; entities.len()];
    for (_, index) in targets {
        if let Some(count) = uses.get_mut(*index) {
            *count += 1;
        }
    }
    for (location, index) in targets {
        let Some(entity) = entities.get_mut(*index).filter(|e| e.is_object()) else {
            continue;
        };
        uses[*index] -= 1;
        let mut entity = if uses[*index] == 0 {
            entity.take()
        } else {
            entity.clone()
        };
        // The object keeps its own type when an @interfaceObject answers with the
        // interface's name; a concrete type's name (the owner of the interface telling what
        // the object is) is taken.
        if let Some(map) = entity.as_object_mut()
            && map
                .get("__typename")
                .and_then(Value::as_str)
                .is_none_or(|name| {
                    supergraph.is_abstract(name) || is_interface_object(supergraph, name)
                })
        {
            map.remove("__typename");
        }
        if let Some(object) = at_mut(data, location) {
            deep_merge(object, entity);
        }
    }
}

/// Whether some subgraph knows `type_name` as an @interfaceObject (an interface elsewhere).
fn is_interface_object(supergraph: &Supergraph, type_name: &str) -> bool {
    supergraph
        .type_graphs(type_name)
        .any(|(_, in_graph)| in_graph.interface_object)
}

async fn entity_fetch(
    client: &dyn SubgraphExecutor,
    fetch: &Fetch,
    path: &[PathElement],
    request: &RequestContext<'_>,
    state: &Mutex<State>,
) {
    let (targets, representations) = representations(
        request.supergraph,
        &fetch.graph,
        &fetch.requires,
        &fetch.input_rewrites,
        &[path],
        &lock(state).data,
    );
    if representations.is_empty() {
        return;
    }
    let Some(graph) = request.supergraph.graphs.get(&fetch.graph) else {
        return;
    };
    let mut variables = fetch_variables(&fetch.variables, request);
    variables.insert("representations".into(), Value::Array(representations));
    let body = request_body(&fetch.operation_json, &variables);
    let response = client.execute(graph, body, request).await;
    let mut state = lock(state);
    let mut response = match response {
        Ok(response) => response,
        Err(why) => {
            state.errors.push(unavailable(&fetch.service, &why));
            return;
        }
    };
    let entities = match response.pointer_mut("/data/_entities").map(Value::take) {
        Some(Value::Array(entities)) => entities,
        _ => Vec::new(),
    };
    if let Some(Value::Array(errors)) = response.get_mut("errors").map(Value::take) {
        for error in errors {
            let error = relocate(error, "_entities", &targets, &entities);
            state.errors.push(tag_service(error, &fetch.service));
        }
    }
    let state = &mut *state;
    merge_entities(
        request.supergraph,
        &mut state.data,
        &targets,
        entities,
        &fetch.output_rewrites,
    );
}

/// Several entity fetches in one request, each under its `_entities` alias.
async fn batch_fetch(
    client: &dyn SubgraphExecutor,
    batch: &BatchFetch,
    request: &RequestContext<'_>,
    state: &Mutex<State>,
) {
    let mut variables = fetch_variables(&batch.variables, request);
    let mut all_targets = Vec::with_capacity(batch.entities.len());
    {
        let state = lock(state);
        for entity in &batch.entities {
            let paths: Vec<&[PathElement]> = entity.paths.iter().map(Vec::as_slice).collect();
            let (targets, representations) = representations(
                request.supergraph,
                &batch.graph,
                &entity.requires,
                &entity.input_rewrites,
                &paths,
                &state.data,
            );
            variables.insert(
                entity.representations.clone(),
                Value::Array(representations),
            );
            all_targets.push(targets);
        }
    }
    if all_targets.iter().all(Vec::is_empty) {
        return;
    }
    let Some(graph) = request.supergraph.graphs.get(&batch.graph) else {
        return;
    };
    let body = request_body(&batch.operation_json, &variables);
    let response = client.execute(graph, body, request).await;
    let mut state = lock(state);
    let mut response = match response {
        Ok(response) => response,
        Err(why) => {
            state.errors.push(unavailable(&batch.service, &why));
            return;
        }
    };
    let mut answers = Vec::with_capacity(batch.entities.len());
    for entity in &batch.entities {
        let pointer = format!("/data/{}", entity.alias);
        answers.push(match response.pointer_mut(&pointer).map(Value::take) {
            Some(Value::Array(entities)) => entities,
            _ => Vec::new(),
        });
    }
    if let Some(Value::Array(errors)) = response.get_mut("errors").map(Value::take) {
        for error in errors {
            let alias = error
                .pointer("/path/0")
                .and_then(Value::as_str)
                .and_then(|first| batch.entities.iter().position(|e| e.alias == first));
            let error = match alias {
                Some(i) => relocate(
                    error,
                    &batch.entities[i].alias,
                    &all_targets[i],
                    &answers[i],
                ),
                None => error,
            };
            state.errors.push(tag_service(error, &batch.service));
        }
    }
    let state = &mut *state;
    for ((entity, targets), entities) in batch.entities.iter().zip(&all_targets).zip(answers) {
        merge_entities(
            request.supergraph,
            &mut state.data,
            targets,
            entities,
            &entity.output_rewrites,
        );
    }
}

/// Applies one of the planner's rewrites to `value` (each item, for a list).
fn apply_rewrite(supergraph: &Supergraph, rewrite: &Rewrite, value: &mut Value) {
    let (path, action) = match rewrite {
        Rewrite::SetValue { path, value } => (path.as_slice(), Ok(value.as_str())),
        Rewrite::RenameKey { path, to } => (path.as_slice(), Err(to.as_str())),
    };
    rewrite_at(supergraph, path, action, value);
}

/// `action`: `Ok(v)` sets the value at the path to the string `v`; `Err(to)` renames the
/// path's last key to `to`.
fn rewrite_at(
    supergraph: &Supergraph,
    path: &[RewriteStep],
    action: Result<&str, &str>,
    value: &mut Value,
) {
    if let Value::Array(items) = value {
        for item in items {
            rewrite_at(supergraph, path, action, item);
        }
        return;
    }
    let Some((first, rest)) = path.split_first() else {
        if let Ok(set) = action {
            *value = Value::String(set.to_owned());
        }
        return;
    };
    let Value::Object(object) = value else {
        return;
    };
    match first {
        RewriteStep::TypeIn(types) => {
            let typename = object.get("__typename").and_then(Value::as_str);
            let applies = typename.is_none_or(|name| of_type(supergraph, name, types));
            if applies {
                rewrite_at(supergraph, rest, action, value);
            }
        }
        RewriteStep::Key(key) => match (rest.is_empty(), action) {
            (true, Err(to)) => {
                if key != to
                    && let Some(moved) = object.remove(key.as_str())
                {
                    object.insert(to.to_owned(), moved);
                }
            }
            _ => {
                if let Some(inner) = object.get_mut(key.as_str()) {
                    rewrite_at(supergraph, rest, action, inner);
                }
            }
        },
    }
}

/// Whether an object of type `typename` matches a condition on any of `types`.
fn of_type(supergraph: &Supergraph, typename: &str, types: &[Name]) -> bool {
    types.iter().any(|condition| {
        condition == typename
            || supergraph
                .possible_types(condition)
                .iter()
                .any(|t| t == typename)
    })
}

/// An `_entities` error's path (`_entities.3.reviews`) as the response path of the entity.
/// Some subgraph libraries leave the index out (`_entities.reviews`); then the one entity
/// that came back null, or null at that field, is the one the error is about.
fn relocate(
    mut error: Value,
    field: &str,
    targets: &[(Vec<Value>, usize)],
    entities: &[Value],
) -> Value {
    let path = error
        .get("path")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if path.first().and_then(Value::as_str) != Some(field) {
        return error;
    }
    let (index, rest) = match path.get(1).and_then(Value::as_u64) {
        Some(index) => (Some(index as usize), &path[2..]),
        None => {
            let rest = &path[1..];
            let nulls: Vec<usize> = (0..entities.len())
                .filter(|i| {
                    let entity = &entities[*i];
                    entity.is_null() || at(entity, rest).is_none_or(Value::is_null)
                })
                .collect();
            (
                if nulls.len() == 1 {
                    Some(nulls[0])
                } else {
                    None
                },
                rest,
            )
        }
    };
    match index.and_then(|index| targets.iter().find(|(_, i)| *i == index)) {
        Some((location, _)) => {
            let mut new_path = location.clone();
            new_path.extend(rest.iter().cloned());
            error["path"] = Value::Array(new_path);
        }
        None => {
            if let Some(map) = error.as_object_mut() {
                map.remove("path");
            }
        }
    }
    error
}

fn at<'v>(value: &'v Value, path: &[Value]) -> Option<&'v Value> {
    path.iter().try_fold(value, |current, step| match step {
        Value::String(key) => current.get(key.as_str()),
        Value::Number(index) => current.get(index.as_u64()? as usize),
        _ => None,
    })
}

/// A subgraph's error as the client sees it: naming the subgraph, and coded (as
/// `DOWNSTREAM_SERVICE_ERROR` when the subgraph gave no code of its own).
pub(crate) fn tag_service(mut error: Value, service: &str) -> Value {
    if let Some(map) = error.as_object_mut() {
        let extensions = map.entry("extensions").or_insert_with(|| json!({}));
        if !extensions.is_object() {
            *extensions = json!({});
        }
        if let Some(extensions) = extensions.as_object_mut() {
            extensions
                .entry("service")
                .or_insert_with(|| json!(service));
            extensions
                .entry("code")
                .or_insert_with(|| json!("DOWNSTREAM_SERVICE_ERROR"));
        }
    }
    error
}

/// Every object at `path`, with its location (keys and indexes) from the root.
fn collect<'v>(
    supergraph: &Supergraph,
    value: &'v Value,
    path: &[PathElement],
    location: &mut Vec<Value>,
    out: &mut Vec<(Vec<Value>, &'v Value)>,
) {
    let Some((first, rest)) = path.split_first() else {
        if value.is_object() {
            out.push((location.clone(), value));
        }
        return;
    };
    match first {
        PathElement::Key(key) => {
            if let Some(next) = value.get(key.as_str()) {
                location.push(json!(key.as_str()));
                collect(supergraph, next, rest, location, out);
                location.pop();
            }
        }
        PathElement::List => {
            if let Value::Array(items) = value {
                for (index, item) in items.iter().enumerate() {
                    location.push(json!(index));
                    collect(supergraph, item, rest, location, out);
                    location.pop();
                }
            }
        }
        PathElement::TypeCondition(conditions) => {
            let typename = value
                .get("__typename")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if of_type(supergraph, typename, conditions) {
                collect(supergraph, value, rest, location, out);
            }
        }
    }
}

fn at_mut<'v>(value: &'v mut Value, location: &[Value]) -> Option<&'v mut Value> {
    let mut current = value;
    for step in location {
        current = match step {
            Value::String(key) => current.get_mut(key.as_str())?,
            Value::Number(index) => current.get_mut(index.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The representation of `object` for `requires` (`... on T { __typename key... }`), or
/// `None` when the object is not of a type this fetch is for, or when it holds nothing to
/// look it up by (its key is null: sending it would fail the whole batch).
fn represent(
    supergraph: &Supergraph,
    graph: &Name,
    requires: &[Selection],
    object: &Value,
) -> Option<Value> {
    let typename = object.get("__typename")?.as_str()?;
    for selection in requires {
        if let Selection::Fragment(fragment) = selection {
            if !of_type(
                supergraph,
                typename,
                std::slice::from_ref(&fragment.type_condition),
            ) {
                continue;
            }
            let mut representation = project(&fragment.selections, object);
            let Value::Object(fields) = &representation else {
                return None;
            };
            if !fields.keys().any(|key| key != "__typename") {
                return None;
            }
            representation["__typename"] = Value::String(typename.to_owned());
            // A subgraph that knows the entity only as an @interfaceObject expects the
            // interface's name.
            if supergraph
                .type_in_graph(&fragment.type_condition, graph)
                .is_some_and(|t| t.interface_object)
            {
                representation["__typename"] = Value::String(fragment.type_condition.to_string());
            }
            return Some(representation);
        }
    }
    None
}

/// What `selections` pick of `value`, nulls left out (a representation holds only what is
/// known). A field is read under its name and written under its response key: the planner
/// writes a required field it fetched under an internal alias as `comments:
/// _internal_qp_alias_0`, so that the client's own `comments` (other arguments) is not taken
/// for it.
fn project(selections: &[Selection], value: &Value) -> Value {
    match value {
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| project(selections, item)).collect())
        }
        Value::Object(object) => {
            let mut out = Map::new();
            for selection in selections {
                match selection {
                    Selection::Field(field) => {
                        let key = field.response_key().as_str();
                        let Some(inner) = object.get(field.name.as_str()).filter(|v| !v.is_null())
                        else {
                            continue;
                        };
                        let projected = if field.selections.is_empty() {
                            inner.clone()
                        } else {
                            project(&field.selections, inner)
                        };
                        out.insert(key.to_owned(), projected);
                    }
                    Selection::Fragment(fragment) => {
                        if let Value::Object(more) = project(&fragment.selections, value) {
                            out.extend(more);
                        }
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn deep_merge(target: &mut Value, source: Value) {
    match (target, source) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                match target.get_mut(&key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(source)) => {
            for (existing, value) in target.iter_mut().zip(source) {
                deep_merge(existing, value);
            }
        }
        (target, source) => {
            if !source.is_null() || target.is_null() {
                *target = source;
            }
        }
    }
}

/// The client's selections over the merged data, in its order, with its aliases; `Err` means
/// this object became null (a non-null field inside was null).
fn shape_object(
    supergraph: &Supergraph,
    selections: &[Selection],
    value: &Value,
    type_name: &str,
    path: &mut Vec<Value>,
    errors: &mut Vec<Value>,
) -> Result<Map<String, Value>, ()> {
    let mut out = Map::new();
    let runtime_type = value
        .get("__typename")
        .and_then(Value::as_str)
        .unwrap_or(type_name)
        .to_owned();
    shape_into(
        supergraph,
        selections,
        value,
        &runtime_type,
        path,
        errors,
        &mut out,
    )?;
    Ok(out)
}

fn shape_into(
    supergraph: &Supergraph,
    selections: &[Selection],
    value: &Value,
    runtime_type: &str,
    path: &mut Vec<Value>,
    errors: &mut Vec<Value>,
    out: &mut Map<String, Value>,
) -> Result<(), ()> {
    for selection in selections {
        match selection {
            Selection::Fragment(fragment) => {
                let applies = fragment.type_condition == runtime_type
                    || supergraph
                        .possible_types(&fragment.type_condition)
                        .iter()
                        .any(|t| t == runtime_type);
                if applies {
                    shape_into(
                        supergraph,
                        &fragment.selections,
                        value,
                        runtime_type,
                        path,
                        errors,
                        out,
                    )?;
                }
            }
            Selection::Field(field) => {
                let key = field.response_key().as_str();
                if field.name == "__typename" {
                    out.insert(key.to_owned(), json!(runtime_type));
                    continue;
                }
                let Ok(definition) = supergraph.api.type_field(runtime_type, &field.name) else {
                    continue;
                };
                let raw = value.get(key).unwrap_or(&Value::Null);
                path.push(json!(key));
                let completed = complete(
                    supergraph,
                    &definition.ty,
                    raw,
                    &field.selections,
                    path,
                    errors,
                );
                path.pop();
                match completed {
                    // A field selected twice (on an interface and in a fragment on an
                    // implementation) answers what both selected.
                    Ok(completed) => match out.get_mut(key) {
                        Some(existing) => merge_shaped(existing, completed),
                        None => {
                            out.insert(key.to_owned(), completed);
                        }
                    },
                    Err(()) => return Err(()),
                }
            }
        }
    }
    Ok(())
}

fn complete(
    supergraph: &Supergraph,
    ty: &Type,
    raw: &Value,
    selections: &[Selection],
    path: &mut Vec<Value>,
    errors: &mut Vec<Value>,
) -> Result<Value, ()> {
    if raw.is_null() {
        if ty.is_non_null() {
            if !errors.iter().any(|e| error_at_or_below(e, path)) {
                errors.push(json!({
                    "message": "Cannot return null for non-nullable field",
                    "path": path.clone(),
                    "extensions": {"code": "INTERNAL"},
                }));
            }
            return Err(());
        }
        return Ok(Value::Null);
    }
    let nullable_result = |result: Result<Value, ()>| -> Result<Value, ()> {
        match result {
            Ok(value) => Ok(value),
            Err(()) if ty.is_non_null() => Err(()),
            Err(()) => Ok(Value::Null),
        }
    };
    match ty {
        Type::List(inner) | Type::NonNullList(inner) => {
            let Value::Array(items) = raw else {
                return nullable_result(Err(()));
            };
            let mut out = Vec::with_capacity(items.len());
            let mut failed = false;
            for (index, item) in items.iter().enumerate() {
                path.push(json!(index));
                match complete(supergraph, inner, item, selections, path, errors) {
                    Ok(value) => out.push(value),
                    Err(()) => failed = true,
                }
                path.pop();
                if failed {
                    break;
                }
            }
            nullable_result(if failed {
                Err(())
            } else {
                Ok(Value::Array(out))
            })
        }
        Type::Named(name) | Type::NonNullNamed(name) => {
            // What the API schema hides (`@inaccessible` enum values, and objects of
            // `@inaccessible` types behind an abstract field) is answered as null, as Apollo
            // Gateway and Hive Router answer it: for the client it does not exist.
            if hidden_from_api(supergraph, name, raw) {
                return complete(supergraph, ty, &Value::Null, selections, path, errors);
            }
            if selections.is_empty() {
                // An object whose every field was skipped is `{}`, as the spec collects it.
                return Ok(
                    if supergraph.api.get_object(name).is_some()
                        || supergraph.api.get_interface(name).is_some()
                        || supergraph.api.get_union(name).is_some()
                    {
                        json!({})
                    } else {
                        raw.clone()
                    },
                );
            }
            let result =
                shape_object(supergraph, selections, raw, name, path, errors).map(Value::Object);
            nullable_result(result)
        }
    }
}

/// Whether `raw`, a value of the type `name`, is one the API schema does not have: a value of
/// an enum that is not among the API's values, or an object whose `__typename` the API lacks.
fn hidden_from_api(supergraph: &Supergraph, name: &Name, raw: &Value) -> bool {
    if let Some(values) = supergraph.api.get_enum(name) {
        return raw
            .as_str()
            .is_some_and(|value| !values.values.keys().any(|known| known.as_str() == value));
    }
    raw.get("__typename")
        .and_then(Value::as_str)
        .is_some_and(|typename| !supergraph.api.types.contains_key(typename))
}

/// `more` shaped for the same response key as `existing`, joined into it (the first
/// selection's order kept).
fn merge_shaped(existing: &mut Value, more: Value) {
    match (existing, more) {
        (Value::Object(existing), Value::Object(more)) => {
            for (key, value) in more {
                match existing.get_mut(&key) {
                    Some(inner) => merge_shaped(inner, value),
                    None => {
                        existing.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(existing), Value::Array(more)) => {
            for (inner, value) in existing.iter_mut().zip(more) {
                merge_shaped(inner, value);
            }
        }
        (existing, more) => *existing = more,
    }
}

fn error_at_or_below(error: &Value, path: &[Value]) -> bool {
    let Some(error_path) = error.get("path").and_then(Value::as_array) else {
        return false;
    };
    error_path.len() >= path.len() && error_path.iter().zip(path).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use apollo_compiler::name;
    use junction_federation::compose::{SubgraphSource, compose};
    use junction_federation::selection::{Field, Selection};
    use junction_federation::supergraph::Supergraph;
    use serde_json::json;

    use super::{hidden_from_api, project};

    /// `comments: _internal_qp_alias_0 { authorId }`: the planner's form of a required field
    /// fetched under an internal alias beside the client's own `comments` (other arguments).
    #[test]
    fn a_required_field_is_read_under_its_name_and_sent_under_its_alias() {
        let author_id = Field::new(name!("authorId"));
        let mut comments = Field::new(name!("_internal_qp_alias_0"));
        comments.alias = Some(name!("comments"));
        comments.selections = vec![Selection::Field(author_id)];
        let post = json!({
            "id": "p1",
            "comments": [{"id": "c1"}],
            "_internal_qp_alias_0": [
                {"id": "c1", "authorId": "a2"},
                {"id": "c2", "authorId": "a1"},
                {"id": "c3", "authorId": "a2"},
            ],
        });
        assert_eq!(
            project(&[Selection::Field(comments)], &post),
            json!({"comments": [{"authorId": "a2"}, {"authorId": "a1"}, {"authorId": "a2"}]})
        );
    }

    #[test]
    fn inaccessible_enum_values_and_types_are_hidden() {
        let sdl = "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.5\", import: [\"@key\", \"@inaccessible\"])\n\
            type Query { pet: Pet animal: Animal }\n\
            enum Pet { CAT DOG ROBOT @inaccessible }\n\
            interface Animal { id: ID! }\n\
            type Cat implements Animal { id: ID! }\n\
            type Ghost implements Animal @inaccessible { id: ID! }\n";
        let composed = compose(&[SubgraphSource {
            name: "a".into(),
            url: "http://a.local/graphql".into(),
            sdl: sdl.into(),
        }])
        .unwrap();
        let supergraph = Supergraph::parse(&composed).unwrap();
        assert!(!hidden_from_api(&supergraph, &name!("Pet"), &json!("CAT")));
        assert!(hidden_from_api(&supergraph, &name!("Pet"), &json!("ROBOT")));
        let cat = json!({"__typename": "Cat", "id": "1"});
        let ghost = json!({"__typename": "Ghost", "id": "2"});
        assert!(!hidden_from_api(&supergraph, &name!("Animal"), &cat));
        assert!(hidden_from_api(&supergraph, &name!("Animal"), &ghost));
    }
}
