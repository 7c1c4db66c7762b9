//! Step 8: the plan run against the subgraphs, the answer shaped to what the client asked,
//! and the fields authorization took out put back as nulls with errors.

use serde_json::Value;

use super::{Caller, Planned};
use crate::executor::{self, RequestContext};
use crate::router::GraphRouter;

/// Runs a planned query or mutation to its response body.
pub async fn execute(router: &GraphRouter, planned: Planned, caller: &Caller) -> Value {
    let context = RequestContext {
        supergraph: &router.supergraph,
        operation: &planned.operation,
        variables: &planned.variables,
        identity: caller.identity.as_ref(),
        forwarded: &caller.forwarded,
    };
    let mut body = executor::execute(
        &router.client,
        &planned.plan,
        &context,
        planned.introspection,
    )
    .await;
    planned.denial.complete(&mut body);
    body
}
