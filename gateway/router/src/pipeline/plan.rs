//! Step 7: the query plan, from the cache when this operation was planned before for the same
//! supergraph, the same override labels, the same `@skip`/`@include` values and the same
//! authorization outcome. A planner failure reaches the client as `QUERY_PLANNING_FAILED`
//! without its reason (which names subgraphs and types); the log has it, with the request id.

use std::sync::Arc;

use axum::http::StatusCode;
use junction_federation::authorization::Denial;
use junction_federation::operation::Operation;
use junction_federation::plan::QueryPlan;
use junction_federation::planner::{self, PlanError};
use junction_federation::supergraph::Labels;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Caller;
use super::cost::Costed;
use crate::error::Rejection;
use crate::router::GraphRouter;

/// An operation ready to run.
pub struct Planned {
    pub operation: Operation,
    pub variables: Map<String, Value>,
    pub plan: Arc<QueryPlan>,
    /// Answers to `__schema`/`__type`, merged into the data.
    pub introspection: Option<Value>,
    /// Fields taken out for the caller, put back as nulls with errors.
    pub denial: Denial,
    /// The estimated cost (`[gateway.cost]`); 0 when nothing uses it.
    pub cost: u64,
}

pub async fn plan(
    router: &GraphRouter,
    costed: Costed,
    caller: &Caller,
) -> Result<Planned, Rejection> {
    let Costed { authorized, cost } = costed;
    let normalized = authorized.normalized;
    let labels = router.labels_for_request();
    let mut hasher = Sha256::new();
    // Callers denied different fields run different operations from one query text.
    hasher.update(authorized.denial.fingerprint().as_bytes());
    hasher.update([0]);
    for label in &labels {
        hasher.update(label.as_bytes());
        hasher.update([0]);
    }
    hasher.update(router.supergraph.hash.as_bytes());
    hasher.update([0]);
    hasher.update(normalized.query.as_bytes());
    hasher.update([0]);
    hasher.update(
        normalized
            .operation
            .name
            .as_deref()
            .unwrap_or("")
            .as_bytes(),
    );
    hasher.update([0]);
    normalized
        .conditions
        .write_key(&mut |bytes| hasher.update(bytes));
    let key: [u8; 32] = hasher.finalize().into();
    let cached = router.plans.get(&key);
    crate::metrics::global().plan_cache(cached.is_some());
    let (plan, operation) = match cached {
        Some(plan) => (plan, normalized.operation),
        None => {
            let name = normalized.operation.name.clone();
            let (plan, operation) = plan_apart(router, normalized.operation, labels)
                .await
                .map_err(|error| {
                    let request_id = caller
                        .forwarded
                        .request_id
                        .as_ref()
                        .and_then(|v| v.to_str().ok());
                    tracing::warn!(%error, operation = ?name, ?request_id, "cannot plan an operation");
                    Rejection::new(
                        StatusCode::OK,
                        "QUERY_PLANNING_FAILED",
                        "the router cannot plan this operation over its subgraphs",
                    )
                })?;
            let plan = Arc::new(plan);
            router
                .plans
                .insert(key, Arc::clone(&plan), plan.heap_bytes());
            (plan, operation)
        }
    };
    Ok(Planned {
        operation,
        variables: normalized.variables,
        plan,
        introspection: normalized.introspection,
        denial: authorized.denial,
        cost,
    })
}

/// Plans `operation` on the blocking pool, once a planning slot is free; gives the operation
/// back with its plan.
async fn plan_apart(
    router: &GraphRouter,
    operation: Operation,
    labels: Labels,
) -> Result<(QueryPlan, Operation), PlanError> {
    // The semaphore is never closed, so a permit always comes.
    let _slot = router.planning.acquire().await;
    let supergraph = Arc::clone(&router.supergraph);
    tokio::task::spawn_blocking(move || {
        planner::plan_with(&supergraph, &operation, &labels).map(|plan| (plan, operation))
    })
    .await
    .unwrap_or_else(|failed| Err(PlanError(format!("the planning task failed: {failed}"))))
}
