//! The job loop each worker process runs (`junction serve`, `junction dispatcher`): queue the
//! runs of due connections, lease runs up to the configured concurrency, run each in a task
//! of its own. Any number of runners share one database.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use sea_orm::DatabaseConnection;
use tokio::task::JoinSet;

use crate::execute::{self, Context};
use crate::lease::{self, Lease};
use crate::{Catalog, ConnectorsConfig, runs, schedule};

/// Runs syncs until stopped. Cheap to clone; clones share nothing but the database.
#[derive(Clone)]
pub struct SyncRunner {
    context: Arc<Context>,
}

impl SyncRunner {
    pub fn new(db: DatabaseConnection, catalog: Arc<Catalog>, config: ConnectorsConfig) -> Self {
        Self {
            context: Arc::new(Context {
                db,
                catalog,
                config,
            }),
        }
    }

    /// Queues due runs and leases one, without running it: what a round of [`run`](Self::run)
    /// starts with, for tests that drive runs one at a time.
    pub async fn lease_one(&self) -> Result<Option<Lease>, sea_orm::DbErr> {
        let context = &self.context;
        schedule::queue_due(&context.db, Utc::now()).await?;
        lease::next(&context.db, Utc::now(), context.config.lease).await
    }

    /// Runs a leased run to its end (or until it is deferred, or the lease is lost).
    pub async fn execute(&self, lease: Lease) {
        execute::run(&self.context, lease).await;
    }

    /// Leases and runs one run after another until none is due; returns how many ran.
    pub async fn run_until_idle(&self) -> Result<usize, sea_orm::DbErr> {
        let mut ran = 0;
        while let Some(lease) = self.lease_one().await? {
            self.execute(lease).await;
            ran += 1;
        }
        Ok(ran)
    }

    /// Runs syncs until `stop` resolves. Runs in flight then are stopped and handed back to
    /// the queue, so another worker resumes them from their last checkpoints at once.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let context = &self.context;
        let concurrency = context.config.concurrency;
        tracing::info!(concurrency, poll_interval = ?context.config.poll_interval, "the connector sync runner is running");
        let mut tasks = JoinSet::new();
        // Run id to lease token, for handing runs back when stopping.
        let held: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        tokio::pin!(stop);
        loop {
            if let Err(error) = schedule::queue_due(&context.db, Utc::now()).await {
                tracing::warn!(%error, "cannot queue scheduled syncs; trying again");
            }
            while tasks.len() < concurrency {
                match lease::next(&context.db, Utc::now(), context.config.lease).await {
                    Ok(Some(lease)) => {
                        let (run_id, token) = (lease.run.id.clone(), lease.token.clone());
                        lock(&held).insert(run_id.clone(), token);
                        let context = Arc::clone(context);
                        let held = Arc::clone(&held);
                        tasks.spawn(async move {
                            execute::run(&context, lease).await;
                            lock(&held).remove(&run_id);
                        });
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "cannot lease sync runs; trying again");
                        break;
                    }
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(context.config.poll_interval) => {}
                () = runs::queued_here() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let held: Vec<(String, String)> = lock(&held).drain().collect();
        for (run_id, token) in held {
            if let Err(error) = lease::release(&context.db, &run_id, &token).await {
                tracing::warn!(run = %run_id, %error, "cannot hand a sync run back; it is resumed once its lease runs out");
            }
        }
        tracing::info!("the connector sync runner stopped");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
