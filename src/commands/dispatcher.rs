//! `junction dispatcher`: the webhook delivery worker and the connector sync runner alone, for
//! scale-out. Any number of them can share one database queue (PostgreSQL hands each a
//! disjoint batch) and the sync runs (leased from the database).

use std::sync::Arc;

use anyhow::Context;
use junction_queue::Queue;
use junction_queue::{EmbeddedQueue, KafkaQueue, QueueBackend};
use junction_worker::Dispatcher;
use sea_orm::DatabaseConnection;

use crate::commands::{Failure, connect_migrated};
use crate::config::Config;
use crate::shutdown::Shutdown;

pub async fn run(config: Config) -> Result<(), Failure> {
    let metrics = crate::roles::metrics::install(&config)?;
    let db = connect_migrated(&config).await?;
    // The connector sync runner too: runs are leased from the database, so every dispatcher
    // shares them. Built first: a bad manifest in its folder stops the start here.
    let syncs = crate::roles::connectors::sync_runner(&config, &db)?;
    let dispatcher = start(&config, &db).await?;
    let shutdown = Shutdown::on_signal();
    // Its only address: unset, a dispatcher serves no metrics.
    let own_metrics =
        crate::roles::metrics::serve_own(&config, metrics.as_ref(), shutdown.clone()).await?;
    crate::roles::metrics::queue_gauges(&config, metrics.as_ref(), &db);
    // Every dispatcher runs the retention cleanup too: its deletes are idempotent.
    let cleanup = tokio::spawn(junction_deliveries::retention::run(
        db.clone(),
        config.deliveries.clone(),
        shutdown.clone().wait(),
    ));
    let syncs = tokio::spawn(syncs.run(shutdown.clone().wait()));
    dispatcher.run(shutdown.wait()).await;
    cleanup.await.context("the retention task failed")?;
    syncs.await.context("the connector sync task failed")?;
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

/// How often the embedded queue clears outbox rows naming nothing pending (with Kafka, the
/// relay deletes them as it sends).
const OUTBOX_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// The worker on the configured queue: the database itself, or Kafka (with the outbox relay
/// that feeds it, and its delivery events published for every subgraph replica).
pub async fn start(config: &Config, db: &DatabaseConnection) -> Result<Dispatcher, Failure> {
    let settings = config.dispatcher.clone();
    let dispatcher = match config.queue.backend {
        QueueBackend::Embedded => {
            let queue = Arc::new(
                EmbeddedQueue::new(db.clone(), settings.lease)
                    .with_per_endpoint_limit(settings.per_endpoint_concurrency)
                    .with_outbox_sweep(OUTBOX_SWEEP_INTERVAL),
            );
            Dispatcher::new(db.clone(), queue, settings)
        }
        QueueBackend::Kafka => {
            let kafka = &config.queue.kafka;
            let queue =
                KafkaQueue::connect(db.clone(), kafka, settings.lease, settings.poll_interval)
                    .await
                    .context("connecting to Kafka")?;
            tracing::info!(servers = %kafka.bootstrap_servers, topic = %queue.topics().dispatch, group = %kafka.group, "dispatching from Kafka");
            let queue = Arc::new(queue.with_relay());
            let dispatcher =
                Dispatcher::new(db.clone(), Arc::clone(&queue) as Arc<dyn Queue>, settings);
            if let Ok(dispatcher) = &dispatcher {
                tokio::spawn(queue.publish_events(dispatcher.forward()));
            }
            dispatcher
        }
    };
    Ok(dispatcher.context("starting the dispatcher")?)
}
