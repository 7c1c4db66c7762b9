//! What the REST routes record: requests forwarded by route, upstream and status class, and
//! their latency to the head of the answer (a body streams on after). Requests refused
//! before an upstream is tried (credentials, an unknown path) are not counted here; rate-limit
//! refusals are, in `junction_edge::metrics`. Routes and upstreams come from the
//! configuration, so their labels are bounded by it; each route registers its handles when
//! it is built, and a request records with an index.

use std::time::Duration;

use axum::http::StatusCode;
use junction_telemetry::Buckets;
use metrics::{Counter, Histogram};

pub const REQUESTS: &str = "junction_router_rest_requests_total";
pub const DURATION: &str = "junction_router_rest_request_duration_seconds";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The histograms above, for the recorder.
pub const HISTOGRAMS: &[Buckets] = &[(DURATION, LATENCY_BUCKETS)];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        metrics::Unit::Count,
        "REST requests forwarded by route, upstream (host:port) and status class of the answer \
         (a 502 or 504 when no upstream answered)."
    );
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "REST request latency to the head of the answer, by route and upstream."
    );
}

/// One route's handles, by upstream in the route's order.
pub(crate) struct RouteMetrics {
    upstreams: Vec<UpstreamMetrics>,
}

struct UpstreamMetrics {
    /// By status class, in [`CLASSES`]' order.
    by_class: [Counter; 5],
    latency: Histogram,
}

impl RouteMetrics {
    /// The handles of route `route` with upstreams at `addresses` (`host:port`).
    pub fn new<'a>(route: &str, addresses: impl Iterator<Item = &'a str>) -> Self {
        let upstreams = addresses
            .map(|address| UpstreamMetrics {
                by_class: CLASSES.map(|class| {
                    metrics::counter!(
                        REQUESTS,
                        "route" => route.to_owned(),
                        "upstream" => address.to_owned(),
                        "status_class" => class,
                    )
                }),
                latency: metrics::histogram!(
                    DURATION,
                    "route" => route.to_owned(),
                    "upstream" => address.to_owned(),
                ),
            })
            .collect();
        Self { upstreams }
    }

    /// One request, last tried at upstream `index`, answered `status` after `latency`.
    pub fn record(&self, index: usize, status: StatusCode, latency: Duration) {
        let Some(upstream) = self.upstreams.get(index) else {
            return;
        };
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        upstream.by_class[class].increment(1);
        upstream.latency.record(latency.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    #[test]
    fn requests_are_counted_by_upstream_and_status_class() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let route = RouteMetrics::new("orders", ["10.0.0.1:80", "10.0.0.2:80"].into_iter());
            route.record(1, StatusCode::OK, Duration::from_millis(4));
            route.record(1, StatusCode::NO_CONTENT, Duration::from_millis(4));
            route.record(0, StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(30));
            route.record(7, StatusCode::OK, Duration::ZERO);
        });
        let text = handle.render();
        for line in [
            "junction_router_rest_requests_total{route=\"orders\",upstream=\"10.0.0.2:80\",status_class=\"2xx\"} 2",
            "junction_router_rest_requests_total{route=\"orders\",upstream=\"10.0.0.1:80\",status_class=\"5xx\"} 1",
            "junction_router_rest_requests_total{route=\"orders\",upstream=\"10.0.0.1:80\",status_class=\"2xx\"} 0",
            "junction_router_rest_request_duration_seconds_count{route=\"orders\",upstream=\"10.0.0.2:80\"} 2",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
