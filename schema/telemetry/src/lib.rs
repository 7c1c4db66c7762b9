//! Junction's metrics, shared by every role: the `[metrics]` settings ([`MetricsConfig`]),
//! labels whose values come from outside kept to a bounded number of series
//! ([`BoundedLabel`], [`Handles`]), the process-wide Prometheus recorder ([`Exporter`]), the
//! process metrics read from /proc at each scrape, and `GET /metrics` ([`endpoint`]).
//!
//! Crates record through the `metrics` facade and own the names of what they record (each has
//! a `metrics` module with its names, help texts and histogram buckets); nothing is recorded,
//! and recording costs next to nothing, until the binary installs the recorder.

mod bounded;
mod config;
pub mod endpoint;
mod exporter;
mod process;

pub use bounded::{BoundedLabel, Handles, LabelId, OTHER, label_bound, set_label_bound};
pub use config::{DEFAULT_MAX_LABEL_VALUES, MetricsConfig};
pub use exporter::{Buckets, Exporter, MetricsError};

/// `2xx` for 204: the status class label every HTTP metric uses; `none` without a status.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}
