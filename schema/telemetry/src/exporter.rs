//! The process-wide Prometheus recorder: installed once by the binary, before anything
//! records, with the buckets each histogram is declared with; rendered in the text format at
//! every scrape, with the process metrics read at that moment.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::MetricsConfig;

/// A histogram's name and the upper bounds of its buckets, in seconds (or its unit).
pub type Buckets = (&'static str, &'static [f64]);

/// How often histogram samples are folded into their buckets between scrapes, so that
/// memory stays flat when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot set up the Prometheus recorder: {0}")]
    Build(#[from] BuildError),
}

/// The installed recorder.
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// Installs the recorder for this process, with `histograms` as true Prometheus
    /// histograms, and starts its upkeep on the current Tokio runtime. `None` when metrics are
    /// off, and then every `metrics` call in the process stays a no-op.
    pub fn install(
        config: &MetricsConfig,
        histograms: &[Buckets],
        version: &'static str,
    ) -> Result<Option<Arc<Exporter>>, MetricsError> {
        if !config.enabled {
            return Ok(None);
        }
        crate::set_label_bound(config.max_label_values);
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in histograms {
            builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)?;
        }
        let handle = builder.install_recorder()?;
        metrics::describe_gauge!(
            "junction_build_info",
            "Always 1; its labels say which build of Junction is running."
        );
        metrics::gauge!("junction_build_info", "version" => version).set(1.0);
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        Ok(Some(Arc::new(Exporter { handle })))
    }

    /// Every metric in the Prometheus text format (0.0.4), the process's own last.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        crate::process::render(&mut text);
        text
    }
}
