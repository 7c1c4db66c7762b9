//! Step 5: what the caller may not see taken out of the operation (`@authenticated`,
//! `@requiresScopes`), to come back as nulls with errors; the rest runs.

use junction_federation::authorization::{Caller as Scopes, Denial};
use junction_schema::Identity;

use super::normalize::Normalized;
use crate::router::GraphRouter;

pub struct Authorized {
    pub normalized: Normalized,
    /// Fields taken out for the caller, put back as nulls with errors.
    pub denial: Denial,
}

pub fn authorize(
    router: &GraphRouter,
    mut normalized: Normalized,
    identity: Option<&Identity>,
) -> Authorized {
    let scopes = identity.map(|identity| move |scope: &str| identity.scopes.contains(scope));
    let denial = router.supergraph.access.filter(
        &router.supergraph.api,
        &mut normalized.operation,
        scopes.as_ref().map(|c| c as &dyn Scopes),
    );
    Authorized { normalized, denial }
}
