//! Step 8: the plan run against the subgraphs, the answer shaped to what the client asked,
//! and the fields authorization took out put back as nulls with errors.

use std::time::Duration;

use serde_json::Value;

use super::{Caller, Planned};
use crate::executor::waiting::Waiting;
use crate::executor::{self, RequestContext};
use crate::router::GraphRouter;

/// A response body, and how long the request waited on subgraphs for it.
pub struct Executed {
    pub body: Value,
    pub waiting: Duration,
}

/// Runs a planned query or mutation to its response body.
pub async fn execute(router: &GraphRouter, planned: Planned, caller: &Caller) -> Executed {
    let context = RequestContext {
        supergraph: &router.supergraph,
        operation: &planned.operation,
        variables: &planned.variables,
        identity: caller.identity.as_ref(),
        forwarded: &caller.forwarded,
    };
    let client = Waiting::new(&router.client);
    let mut body = executor::execute(&client, &planned.plan, &context, planned.introspection).await;
    planned.denial.complete(&mut body);
    Executed {
        body,
        waiting: client.total(),
    }
}
