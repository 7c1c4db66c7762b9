//! What the dispatcher records: every attempt by what it did to its delivery and the status
//! class of the answer, its latency, and per endpoint whether it succeeded. Endpoint ids are
//! created by customers, so the endpoint label is a [`BoundedLabel`]: past
//! `[metrics] max_label_values` endpoints, the rest count as `other`. The state of the queue
//! (depth, lag, retries, dead letters) is read from the database by [`crate::gauges`].

use std::sync::LazyLock;
use std::time::Duration;

use junction_schema::envelope::AttemptOutcome;
use junction_telemetry::{BoundedLabel, Buckets, Handles, LabelId};
use metrics::{Counter, Histogram};

pub const ATTEMPTS: &str = "junction_dispatcher_attempts_total";
pub const ATTEMPT_DURATION: &str = "junction_dispatcher_attempt_duration_seconds";
pub const ENDPOINT_ATTEMPTS: &str = "junction_dispatcher_endpoint_attempts_total";
pub const QUEUE_DEPTH: &str = "junction_dispatcher_queue_depth";
pub const QUEUE_OLDEST_AGE: &str = "junction_dispatcher_queue_oldest_age_seconds";
pub const RETRYING: &str = "junction_dispatcher_retrying";
pub const DEAD_LETTERS: &str = "junction_dispatcher_dead_letters";

/// A receiver's answer: from a fast one on the same network to the request timeout.
const ATTEMPT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The histograms above, for the recorder.
pub const HISTOGRAMS: &[Buckets] = &[(ATTEMPT_DURATION, ATTEMPT_BUCKETS)];

pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "Delivery attempts by what they did to their delivery (succeeded, retrying, \
         dead_lettered) and the status class of the answer (none: no answer; also a delivery \
         dead-lettered unsent, its endpoint disabled or gone)."
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Delivery attempt latency, from the request to the receiver's answer, by outcome."
    );
    describe_counter!(
        ENDPOINT_ATTEMPTS,
        Unit::Count,
        "Delivery attempts by endpoint (bounded; `other` past the bound) and result \
         (succeeded, failed)."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Deliveries pending: due, leased or waiting for a retry (read from the database)."
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "How long the longest-waiting due delivery has been due and not taken (0: none)."
    );
    describe_gauge!(
        RETRYING,
        Unit::Count,
        "Pending deliveries that failed at least once (the retry depth)."
    );
    describe_gauge!(
        DEAD_LETTERS,
        Unit::Count,
        "Dead-lettered deliveries waiting for a replay (until retention removes them)."
    );
}

const OUTCOMES: [AttemptOutcome; 3] = [
    AttemptOutcome::Succeeded,
    AttemptOutcome::Retrying,
    AttemptOutcome::DeadLettered,
];
const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

fn outcome_index(outcome: AttemptOutcome) -> usize {
    match outcome {
        AttemptOutcome::Succeeded => 0,
        AttemptOutcome::Retrying => 1,
        AttemptOutcome::DeadLettered => 2,
    }
}

fn outcome_label(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::Retrying => "retrying",
        AttemptOutcome::DeadLettered => "dead_lettered",
    }
}

/// The dispatcher's metrics; one per process ([`global`]), or one per test.
pub struct DispatcherMetrics {
    endpoints: BoundedLabel,
    by_endpoint: Handles<LabelId, [Counter; 2]>,
    /// By outcome, then status class, in [`OUTCOMES`]' and [`CLASSES`]' order.
    attempts: LazyLock<[[Counter; 6]; 3]>,
    durations: LazyLock<[Histogram; 3]>,
}

static GLOBAL: LazyLock<DispatcherMetrics> =
    LazyLock::new(|| DispatcherMetrics::new(junction_telemetry::label_bound()));

/// The process's dispatcher metrics, recording to the installed recorder (none: no-ops).
pub fn global() -> &'static DispatcherMetrics {
    &GLOBAL
}

impl DispatcherMetrics {
    /// Metrics whose endpoint label takes at most `bound` values.
    pub fn new(bound: usize) -> Self {
        Self {
            endpoints: BoundedLabel::new(bound),
            by_endpoint: Handles::default(),
            attempts: LazyLock::new(|| {
                OUTCOMES.map(|outcome| {
                    CLASSES.map(|class| {
                        metrics::counter!(
                            ATTEMPTS,
                            "outcome" => outcome_label(outcome),
                            "status_class" => class,
                        )
                    })
                })
            }),
            durations: LazyLock::new(|| {
                OUTCOMES.map(|outcome| {
                    metrics::histogram!(ATTEMPT_DURATION, "outcome" => outcome_label(outcome))
                })
            }),
        }
    }

    /// One attempt at `endpoint`, answered `status` (none: no answer) after `latency`.
    pub fn attempt(
        &self,
        endpoint: &str,
        outcome: AttemptOutcome,
        status: Option<u16>,
        latency: Duration,
    ) {
        let class = status.map_or(0, |s| usize::from(s / 100).clamp(1, 5));
        self.attempts[outcome_index(outcome)][class].increment(1);
        self.durations[outcome_index(outcome)].record(latency.as_secs_f64());
        let id = self.endpoints.id(endpoint);
        let [succeeded, failed] = self.by_endpoint.get(&id, || {
            let endpoint = self.endpoints.value(id).to_string();
            let handles = ["succeeded", "failed"].map(|result| {
                metrics::counter!(
                    ENDPOINT_ATTEMPTS,
                    "endpoint" => endpoint.clone(),
                    "result" => result,
                )
            });
            (id, handles)
        });
        match outcome {
            AttemptOutcome::Succeeded => succeeded.increment(1),
            _ => failed.increment(1),
        }
    }

    /// A delivery dead-lettered without an attempt (its endpoint disabled or gone).
    pub fn dead_lettered_unsent(&self) {
        self.attempts[outcome_index(AttemptOutcome::DeadLettered)][0].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    /// Ten thousand endpoints with random ids keep `bound` endpoint series of each result,
    /// and `other`.
    #[test]
    fn random_endpoints_stay_within_the_bound() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let bound = 30;
        let dispatcher = DispatcherMetrics::new(bound);
        metrics::with_local_recorder(&recorder, || {
            for i in 0..10_000u64 {
                let endpoint = format!("ep_{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let (outcome, status) = match i % 3 {
                    0 => (AttemptOutcome::Retrying, Some(503)),
                    1 => (AttemptOutcome::DeadLettered, None),
                    _ => (AttemptOutcome::Succeeded, Some(204)),
                };
                dispatcher.attempt(&endpoint, outcome, status, Duration::from_millis(20));
            }
            dispatcher.dead_lettered_unsent();
        });
        let text = handle.render();
        let endpoint_series = text
            .lines()
            .filter(|l| l.starts_with(&format!("{ENDPOINT_ATTEMPTS}{{")))
            .count();
        assert!(
            endpoint_series <= 2 * (bound + 1),
            "{endpoint_series} series"
        );
        for line in [
            "junction_dispatcher_attempts_total{outcome=\"succeeded\",status_class=\"2xx\"} 3333",
            "junction_dispatcher_attempts_total{outcome=\"retrying\",status_class=\"5xx\"} 3334",
            "junction_dispatcher_attempts_total{outcome=\"dead_lettered\",status_class=\"none\"} 3334",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(text.contains(
            "junction_dispatcher_endpoint_attempts_total{endpoint=\"other\",result=\"succeeded\"}"
        ));
    }
}
