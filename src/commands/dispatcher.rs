//! `junction dispatcher`: the webhook delivery worker alone, for scale-out. Any number of
//! them can share one database queue (PostgreSQL hands each a disjoint batch).

use std::sync::Arc;

use anyhow::Context;
use junction_dispatcher::Dispatcher;
use junction_dispatcher::queue::EmbeddedQueue;
use sea_orm::DatabaseConnection;

use crate::commands::{Failure, connect_migrated};
use crate::config::Config;
use crate::shutdown::Shutdown;

pub async fn run(config: Config) -> Result<(), Failure> {
    let db = connect_migrated(&config).await?;
    let dispatcher = start(&config, &db)?;
    let shutdown = Shutdown::on_signal();
    // Every dispatcher runs the retention cleanup too: its deletes are idempotent.
    let cleanup = tokio::spawn(junction_deliveries::retention::run(
        db.clone(),
        config.deliveries.clone(),
        shutdown.clone().wait(),
    ));
    dispatcher.run(shutdown.wait()).await;
    cleanup.await.context("the retention task failed")?;
    db.close().await.context("closing the database")?;
    tracing::info!("stopped");
    Ok(())
}

/// The worker on the configured queue (the embedded one, for now).
pub fn start(config: &Config, db: &DatabaseConnection) -> Result<Dispatcher, Failure> {
    let queue = Arc::new(EmbeddedQueue::new(db.clone(), config.dispatcher.lease));
    let dispatcher = Dispatcher::new(db.clone(), queue, config.dispatcher.clone())
        .context("starting the dispatcher")?;
    Ok(dispatcher)
}
