//! Step 6: the operation's estimated cost (`[gateway.cost]`), refused over the maximum;
//! estimated only when something reads it (a maximum, or a rate limit counted in cost).

use axum::http::StatusCode;

use super::authorize::Authorized;
use crate::error::Rejection;
use crate::router::GraphRouter;

pub struct Costed {
    pub authorized: Authorized,
    /// 0 when nothing uses it.
    pub cost: u64,
}

pub fn estimate(router: &GraphRouter, authorized: Authorized) -> Result<Costed, Rejection> {
    let cost = if router.cost_counts() {
        let normalized = &authorized.normalized;
        router.supergraph.cost.estimate(
            &router.supergraph.api,
            &normalized.operation,
            &normalized.variables,
            &router.cost,
        )
    } else {
        0
    };
    if let Some(max) = router.cost.max
        && cost > max
    {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "COST_ESTIMATED_TOO_EXPENSIVE",
            &format!(
                "the operation's estimated cost is {cost}, above the maximum of {max}: \
                 ask for fewer items (`first`) or fewer nested lists"
            ),
        ));
    }
    Ok(Costed { authorized, cost })
}
