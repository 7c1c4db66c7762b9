//! `junction subgraph NAME`: one subgraph alone, behind the router's signed identity.

use std::sync::Arc;

use anyhow::Context;
use junction_edge::health;
use junction_queue::QueueBackend;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::cli::SubgraphName;
use crate::commands::{Failure, connect_migrated};
use crate::config::Config;
use crate::roles::subgraphs::{database_probe, deliveries_router, verifier, webhooks_router};
use crate::shutdown::Shutdown;

pub async fn run(
    config: Config,
    name: SubgraphName,
    listen: Option<std::net::SocketAddr>,
) -> Result<(), Failure> {
    if let SubgraphName::Connectors = name {
        return Err(Failure::not_built(
            &format!("subgraph {name}"),
            "the connectors subgraph arrives with its own issue",
        ));
    }
    let Some(key) = config.identity.signing_key.clone() else {
        return Err(Failure::Usage(
            "identity.signing_key must be set (the same on the router and every subgraph) when a subgraph runs alone"
                .into(),
        ));
    };
    let metrics = crate::roles::metrics::install(&config)?;
    let db = connect_migrated(&config).await?;
    let verifier = Arc::new(verifier(key, &config));
    let app = match name {
        SubgraphName::Deliveries => {
            // Live events: from the Kafka events topic, else none (no dispatcher in reach).
            let events = match config.queue.backend {
                QueueBackend::Kafka => Some(
                    junction_queue::kafka::events::feed(&config.queue.kafka)
                        .await
                        .context("following delivery events on Kafka")?,
                ),
                QueueBackend::Embedded => None,
            };
            deliveries_router(&db, verifier, events)
        }
        _ => webhooks_router(&config, &db, verifier),
    }
    .merge(health::routes(vec![database_probe(db.clone())]))
    .merge(crate::roles::metrics::on_main_port(&config, metrics.as_ref()).unwrap_or_default())
    .layer(TraceLayer::new_for_http());
    let listen = listen.unwrap_or(match name {
        SubgraphName::Deliveries => std::net::SocketAddr::from(([127, 0, 0, 1], 4002)),
        _ => config.webhooks.listen,
    });
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr().context("listener address")?,
        subgraph = %name,
        "Junction is serving"
    );
    let shutdown = Shutdown::on_signal();
    let own_metrics =
        crate::roles::metrics::serve_own(&config, metrics.as_ref(), shutdown.clone()).await?;
    junction_edge::server::serve(
        listener,
        app,
        shutdown.wait(),
        config.gateway.shutdown_grace,
    )
    .await
    .context("serving HTTP")?;
    if let Some(server) = own_metrics {
        server
            .await
            .context("the metrics task failed")?
            .context("serving metrics")?;
    }
    db.close().await.context("closing the database")?;
    tracing::info!("stopped");
    Ok(())
}
