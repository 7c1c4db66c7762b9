//! What the router records, and the names it records under: requests by operation and
//! outcome with their latency, the router's own share of that latency (its overhead),
//! subgraph fetches, plan cache lookups and open subscriptions.
//!
//! Operation names come from clients, so they are a [`BoundedLabel`]: past
//! `[metrics] max_label_values` names, the rest count as `other`. Handles are kept by small
//! keys ([`Handles`]), so a request records without building a label set.

use std::sync::LazyLock;
use std::time::Duration;

use apollo_compiler::ast::OperationType;
use junction_telemetry::{BoundedLabel, Buckets, Handles, LabelId};
use metrics::{Counter, Gauge, Histogram};

pub const REQUESTS: &str = "junction_router_requests_total";
pub const REQUEST_DURATION: &str = "junction_router_request_duration_seconds";
pub const OVERHEAD: &str = "junction_router_overhead_seconds";
pub const SUBGRAPH_REQUESTS: &str = "junction_router_subgraph_requests_total";
pub const SUBGRAPH_DURATION: &str = "junction_router_subgraph_request_duration_seconds";
pub const PLAN_CACHE: &str = "junction_router_plan_cache_lookups_total";
pub const SUBSCRIPTIONS_OPEN: &str = "junction_router_subscriptions_open";

/// Requests and subgraph fetches: from a cached query's millisecond to a subgraph's timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The router's own time is tens of microseconds for a cached plan: sub-millisecond buckets,
/// up to the 100 ms the service objective allows and a little past it.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,
];

/// The histograms above, for the recorder.
pub const HISTOGRAMS: &[Buckets] = &[
    (REQUEST_DURATION, LATENCY_BUCKETS),
    (OVERHEAD, OVERHEAD_BUCKETS),
    (SUBGRAPH_DURATION, LATENCY_BUCKETS),
];

pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "GraphQL operations over HTTP, SSE and WebSocket by operation name (bounded; `other` \
         past the bound, empty when anonymous or refused before parsing), operation type and \
         outcome (ok, errors, refused)."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "GraphQL operation latency, by operation name and type: over HTTP from the request to \
         its answer; over SSE and WebSocket from the start of execution (a subscription: until \
         its upstream opened)."
    );
    describe_histogram!(
        OVERHEAD,
        Unit::Seconds,
        "The router's own time in a GraphQL request: its latency less the time at least one \
         subgraph fetch was in flight."
    );
    describe_counter!(
        SUBGRAPH_REQUESTS,
        Unit::Count,
        "Fetches from subgraphs by subgraph and outcome (ok, errors, timeout, unreachable, \
         invalid)."
    );
    describe_histogram!(
        SUBGRAPH_DURATION,
        Unit::Seconds,
        "Subgraph fetch latency by subgraph."
    );
    describe_counter!(
        PLAN_CACHE,
        Unit::Count,
        "Query plan cache lookups by result (hit, miss)."
    );
    describe_gauge!(
        SUBSCRIPTIONS_OPEN,
        Unit::Count,
        "Subscriptions running now, over WebSocket and server-sent events."
    );
}

/// An operation's type as labelled; `Unknown` for a request refused before it was parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Query,
    Mutation,
    Subscription,
    Unknown,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Mutation => "mutation",
            Kind::Subscription => "subscription",
            Kind::Unknown => "unknown",
        }
    }
}

impl From<OperationType> for Kind {
    fn from(kind: OperationType) -> Self {
        match kind {
            OperationType::Query => Kind::Query,
            OperationType::Mutation => Kind::Mutation,
            OperationType::Subscription => Kind::Subscription,
        }
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answered without errors (a subscription: its upstream opened).
    Ok,
    /// Answered with GraphQL errors (partial data or none; a subscription: its upstream did
    /// not open).
    Errors,
    /// Refused before execution: credentials, limits, an invalid operation, no plan.
    Refused,
}

impl Outcome {
    /// How an executed operation's response body went.
    pub fn of(body: &serde_json::Value) -> Self {
        match body.get("errors") {
            Some(serde_json::Value::Array(errors)) if !errors.is_empty() => Outcome::Errors,
            _ => Outcome::Ok,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Errors => "errors",
            Outcome::Refused => "refused",
        }
    }
}

/// The operation a request ran, as labelled: its name's id (`None`: anonymous, or not known
/// yet) and its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OperationLabel {
    pub name: Option<LabelId>,
    pub kind: Kind,
}

impl OperationLabel {
    /// A request refused before its operation was known.
    pub const UNKNOWN: OperationLabel = OperationLabel {
        name: None,
        kind: Kind::Unknown,
    };
}

/// How a subgraph fetch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    Ok,
    /// The subgraph answered with GraphQL errors.
    Errors,
    TimedOut,
    Unreachable,
    /// An answer that is not GraphQL, cut short, or a bad URL.
    Invalid,
}

const FETCH_OUTCOMES: [FetchOutcome; 5] = [
    FetchOutcome::Ok,
    FetchOutcome::Errors,
    FetchOutcome::TimedOut,
    FetchOutcome::Unreachable,
    FetchOutcome::Invalid,
];

impl FetchOutcome {
    fn label(self) -> &'static str {
        match self {
            FetchOutcome::Ok => "ok",
            FetchOutcome::Errors => "errors",
            FetchOutcome::TimedOut => "timeout",
            FetchOutcome::Unreachable => "unreachable",
            FetchOutcome::Invalid => "invalid",
        }
    }
}

/// One subgraph's handles.
#[derive(Clone)]
struct Subgraph {
    /// By [`FetchOutcome`], in [`FETCH_OUTCOMES`]' order.
    fetches: [Counter; 5],
    duration: Histogram,
}

/// The router's metrics; one per process ([`global`]), or one per test.
pub struct RouterMetrics {
    operations: BoundedLabel,
    requests: Handles<(OperationLabel, Outcome), Counter>,
    durations: Handles<OperationLabel, Histogram>,
    overhead: LazyLock<Histogram>,
    subgraphs: Handles<Box<str>, Subgraph>,
    plan_hits: LazyLock<Counter>,
    plan_misses: LazyLock<Counter>,
    subscriptions: LazyLock<Gauge>,
}

static GLOBAL: LazyLock<RouterMetrics> =
    LazyLock::new(|| RouterMetrics::new(junction_telemetry::label_bound()));

/// The process's router metrics, recording to the installed recorder (none: no-ops).
pub fn global() -> &'static RouterMetrics {
    &GLOBAL
}

impl RouterMetrics {
    /// Metrics whose operation names take at most `bound` values. Handles register with the
    /// recorder current when they are first used.
    pub fn new(bound: usize) -> Self {
        Self {
            operations: BoundedLabel::new(bound),
            requests: Handles::default(),
            durations: Handles::default(),
            overhead: LazyLock::new(|| metrics::histogram!(OVERHEAD)),
            subgraphs: Handles::default(),
            plan_hits: LazyLock::new(|| metrics::counter!(PLAN_CACHE, "result" => "hit")),
            plan_misses: LazyLock::new(|| metrics::counter!(PLAN_CACHE, "result" => "miss")),
            subscriptions: LazyLock::new(|| metrics::gauge!(SUBSCRIPTIONS_OPEN)),
        }
    }

    /// The label of an operation named `name` (`None`: anonymous) of type `kind`.
    pub fn operation(&self, name: Option<&str>, kind: Kind) -> OperationLabel {
        OperationLabel {
            name: name.map(|name| self.operations.id(name)),
            kind,
        }
    }

    fn name(&self, operation: OperationLabel) -> String {
        operation
            .name
            .map(|id| self.operations.value(id).to_string())
            .unwrap_or_default()
    }

    /// One request: its operation, outcome and latency (`None`: not timed, as for an
    /// operation refused over a WebSocket, whose zero would skew the operation's latency);
    /// and the router's overhead when it ran (`waiting`: the time subgraph fetches were in
    /// flight).
    pub fn request(
        &self,
        operation: OperationLabel,
        outcome: Outcome,
        latency: Option<Duration>,
        waiting: Option<Duration>,
    ) {
        self.requests
            .get(&(operation, outcome), || {
                let counter = metrics::counter!(
                    REQUESTS,
                    "operation_name" => self.name(operation),
                    "operation_type" => operation.kind.label(),
                    "outcome" => outcome.label(),
                );
                ((operation, outcome), counter)
            })
            .increment(1);
        let Some(latency) = latency else {
            return;
        };
        self.durations
            .get(&operation, || {
                let histogram = metrics::histogram!(
                    REQUEST_DURATION,
                    "operation_name" => self.name(operation),
                    "operation_type" => operation.kind.label(),
                );
                (operation, histogram)
            })
            .record(latency.as_secs_f64());
        if let Some(waiting) = waiting {
            self.overhead
                .record(latency.saturating_sub(waiting).as_secs_f64());
        }
    }

    /// One fetch from the subgraph `name`.
    pub fn subgraph_fetch(&self, name: &str, outcome: FetchOutcome, latency: Duration) {
        let handles = self.subgraphs.get(name, || {
            let fetches = FETCH_OUTCOMES.map(|outcome| {
                metrics::counter!(
                    SUBGRAPH_REQUESTS,
                    "subgraph" => name.to_owned(),
                    "outcome" => outcome.label(),
                )
            });
            let duration = metrics::histogram!(SUBGRAPH_DURATION, "subgraph" => name.to_owned());
            (Box::from(name), Subgraph { fetches, duration })
        });
        handles.fetches[outcome as usize].increment(1);
        handles.duration.record(latency.as_secs_f64());
    }

    pub fn plan_cache(&self, hit: bool) {
        match hit {
            true => self.plan_hits.increment(1),
            false => self.plan_misses.increment(1),
        }
    }

    /// Counts a subscription open until the guard drops.
    pub fn subscription_opened(&self) -> OpenSubscription<'_> {
        self.subscriptions.increment(1.0);
        OpenSubscription(&self.subscriptions)
    }
}

/// A running subscription, counted in [`SUBSCRIPTIONS_OPEN`] until dropped.
pub struct OpenSubscription<'a>(&'a Gauge);

impl Drop for OpenSubscription<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    fn series<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .collect()
    }

    /// Ten thousand random operation names, each counted, keep `bound` names and `other`.
    #[test]
    fn random_operation_names_stay_within_the_bound() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(REQUEST_DURATION.into()),
                LATENCY_BUCKETS,
            )
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        let bound = 20;
        let router = RouterMetrics::new(bound);
        metrics::with_local_recorder(&recorder, || {
            for i in 0..10_000u32 {
                let name = format!("op{:08x}", i.wrapping_mul(2_654_435_761));
                let operation = router.operation(Some(&name), Kind::Query);
                router.request(operation, Outcome::Ok, Some(Duration::from_millis(3)), None);
            }
            router.request(
                OperationLabel::UNKNOWN,
                Outcome::Refused,
                Some(Duration::ZERO),
                None,
            );
        });
        let text = handle.render();
        let requests = series(&text, REQUESTS);
        assert_eq!(requests.len(), bound + 2, "{requests:#?}");
        assert!(
            requests.contains(
                &"junction_router_requests_total{operation_name=\"other\",operation_type=\"query\",outcome=\"ok\"} 9980"
            ),
            "{requests:#?}"
        );
        assert!(requests.contains(
            &"junction_router_requests_total{operation_name=\"\",operation_type=\"unknown\",outcome=\"refused\"} 1"
        ));
        let counts = series(&text, &format!("{REQUEST_DURATION}_count"));
        assert_eq!(counts.len(), bound + 2, "{counts:#?}");
    }

    #[test]
    fn overhead_is_latency_less_waiting_and_subscriptions_close() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let router = RouterMetrics::new(5);
        let still_open = metrics::with_local_recorder(&recorder, || {
            let operation = router.operation(None, Kind::Mutation);
            router.request(
                operation,
                Outcome::Errors,
                Some(Duration::from_millis(30)),
                Some(Duration::from_millis(29)),
            );
            router.subgraph_fetch("webhooks", FetchOutcome::TimedOut, Duration::from_secs(1));
            router.plan_cache(false);
            router.plan_cache(true);
            router.plan_cache(true);
            let open = router.subscription_opened();
            let second = router.subscription_opened();
            drop(open);
            second
        });
        let text = handle.render();
        assert!(text.contains(&format!("{OVERHEAD}_sum 0.001")), "{text}");
        assert!(text.contains(
            "junction_router_subgraph_requests_total{subgraph=\"webhooks\",outcome=\"timeout\"} 1"
        ));
        assert!(text.contains(
            "junction_router_subgraph_requests_total{subgraph=\"webhooks\",outcome=\"ok\"} 0"
        ));
        assert!(text.contains("junction_router_plan_cache_lookups_total{result=\"hit\"} 2"));
        assert!(
            text.contains("junction_router_subscriptions_open 1"),
            "{text}"
        );
        drop(still_open);
        assert!(
            handle
                .render()
                .contains("junction_router_subscriptions_open 0")
        );
    }
}
