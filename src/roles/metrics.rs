//! Metrics for every role that serves something: the recorder installed once per process
//! with every crate's histograms and descriptions, `/metrics` on the router's port or on
//! `[metrics] listen`, and the queue gauges where a dispatcher runs.

use std::sync::Arc;

use anyhow::Context;
use junction_telemetry::Exporter;
use junction_telemetry::endpoint::{self, Access};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::failure::Failure;
use crate::shutdown::Shutdown;

/// Installs the recorder (when `[metrics] enabled`) and describes every metric. Once per
/// process, before anything records.
pub fn install(config: &Config) -> Result<Option<Arc<Exporter>>, Failure> {
    let histograms: Vec<junction_telemetry::Buckets> = [
        junction_router::metrics::HISTOGRAMS,
        junction_passthrough::metrics::HISTOGRAMS,
        junction_worker::metrics::HISTOGRAMS,
    ]
    .concat();
    let exporter = Exporter::install(&config.metrics, &histograms, env!("CARGO_PKG_VERSION"))
        .context("metrics")?;
    if exporter.is_some() {
        junction_edge::metrics::describe();
        junction_router::metrics::describe();
        junction_passthrough::metrics::describe();
        junction_worker::metrics::describe();
    }
    Ok(exporter)
}

/// `/metrics` for the router's port (or a subgraph's), unless `[metrics] listen` gives it an
/// address of its own.
pub fn on_main_port(config: &Config, exporter: Option<&Arc<Exporter>>) -> Option<axum::Router> {
    let exporter = exporter?;
    if config.metrics.listen.is_some() {
        return None;
    }
    Some(endpoint::routes(
        Arc::clone(exporter),
        Access::from_config(&config.metrics, true),
    ))
}

/// Serves `/metrics` on `[metrics] listen`, when set, until `shutdown`.
pub async fn serve_own(
    config: &Config,
    exporter: Option<&Arc<Exporter>>,
    shutdown: Shutdown,
) -> Result<Option<JoinHandle<std::io::Result<()>>>, Failure> {
    let (Some(exporter), Some(listen)) = (exporter, config.metrics.listen) else {
        return Ok(None);
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics.listen: cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr().context("metrics address")?, "serving /metrics");
    let app = endpoint::routes(
        Arc::clone(exporter),
        Access::from_config(&config.metrics, false),
    );
    Ok(Some(tokio::spawn(junction_edge::server::serve(
        listener,
        app,
        shutdown.wait(),
        config.gateway.shutdown_grace,
    ))))
}

/// Keeps the queue gauges current where a dispatcher runs (nothing when metrics are off),
/// read every `[metrics] queue_refresh`.
pub fn queue_gauges(config: &Config, exporter: Option<&Arc<Exporter>>, db: &DatabaseConnection) {
    if exporter.is_some() {
        tokio::spawn(junction_worker::gauges::refresh(
            db.clone(),
            config.metrics.queue_refresh,
        ));
    }
}
