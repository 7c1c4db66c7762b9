//! Rate-limit refusals, counted by the door they were refused at: the GraphQL router and the
//! REST routes each call [`rate_limited`] where they answer 429 (or refuse an operation over
//! a WebSocket), so one metric covers every limiter however it is configured.

use std::sync::LazyLock;

use metrics::Counter;

pub const RATE_LIMITED: &str = "junction_router_rate_limited_total";

/// Where a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Graphql,
    Rest,
}

struct Refusals {
    graphql: Counter,
    rest: Counter,
}

static REFUSALS: LazyLock<Refusals> = LazyLock::new(|| Refusals {
    graphql: metrics::counter!(RATE_LIMITED, "door" => "graphql"),
    rest: metrics::counter!(RATE_LIMITED, "door" => "rest"),
});

/// Counts one request (or operation) refused for a rate limit.
pub fn rate_limited(door: Door) {
    match door {
        Door::Graphql => REFUSALS.graphql.increment(1),
        Door::Rest => REFUSALS.rest.increment(1),
    }
}

pub fn describe() {
    metrics::describe_counter!(
        RATE_LIMITED,
        metrics::Unit::Count,
        "Requests and operations refused for a rate limit, by door (graphql, rest)."
    );
}
