//! Step 3: parsed and validated against the API schema, once per distinct query text (the
//! documents cache is bounded by bytes, each document weighed by its text's size).

use std::sync::Arc;

use apollo_compiler::ExecutableDocument;
use apollo_compiler::validation::Valid;
use junction_federation::operation;

use super::persisted::Text;
use crate::error::Rejection;
use crate::router::GraphRouter;

pub struct Parsed {
    pub text: Text,
    pub document: Arc<Valid<ExecutableDocument>>,
}

pub fn parse(router: &GraphRouter, text: Text) -> Result<Parsed, Rejection> {
    let query = text.resolved.query.as_str();
    if let Some(document) = router.documents.get(query) {
        return Ok(Parsed { text, document });
    }
    let document = Arc::new(operation::parse(
        &router.supergraph.api,
        query,
        &router.limits,
    )?);
    router.documents.insert(
        Arc::from(query),
        Arc::clone(&document),
        operation::document_weight(query),
    );
    Ok(Parsed { text, document })
}
