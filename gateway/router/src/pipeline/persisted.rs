//! Step 2: the query text to run. Refused over the size limit before its hash is computed or
//! anything of it is kept; then trusted documents, automatic persisted queries or the text
//! sent (`crate::persisted`).

use serde_json::{Map, Value};

use super::GraphQLRequest;
use crate::error::Rejection;
use crate::persisted::Resolved;
use crate::router::GraphRouter;

/// The request with its query text resolved and its variables an object.
pub struct Text {
    pub resolved: Resolved,
    pub operation_name: Option<String>,
    pub variables: Map<String, Value>,
}

pub fn resolve(router: &GraphRouter, request: GraphQLRequest) -> Result<Text, Rejection> {
    if let Some(query) = &request.query {
        junction_federation::operation::check_size(query, &router.limits)?;
    }
    let resolved = router
        .persisted
        .resolve(request.query, request.extensions.as_ref())?;
    let variables = match request.variables {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(Rejection::bad_input("`variables` must be an object")),
    };
    Ok(Text {
        resolved,
        operation_name: request.operation_name,
        variables,
    })
}
