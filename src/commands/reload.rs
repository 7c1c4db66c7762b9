//! Reloading a running router without a restart, for `junction gateway` and `junction serve`:
//! on SIGHUP, or when a watched file changes, the configuration is read again and the router
//! rebuilt from it. Requests take the site current when they arrive and finish on it; anything
//! wrong with the new configuration keeps the running one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use junction_edge::server::{CurrentSite, Site};
use junction_passthrough::Passthrough;

use crate::commands::Failure;
use crate::config::Config;

/// Files whose change reloads the router, looked at every `every` (never when zero).
pub struct Watch {
    pub files: Vec<PathBuf>,
    pub every: Duration,
}

/// A rebuilt router and what to log of it.
pub type Rebuilt = (Site<Passthrough>, String);

/// Rebuilds the router from each configuration `reload` reads, when asked. The listening
/// address stays as started; a new one is said to need a restart.
pub async fn reload_when_asked(
    current: CurrentSite<Passthrough>,
    listen: SocketAddr,
    watch: Watch,
    reload: impl Fn() -> Result<Config, Failure>,
    rebuild: impl Fn(&Config) -> Result<Rebuilt, Failure>,
) {
    let (asked, mut asks) = tokio::sync::mpsc::channel::<&'static str>(1);
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            let asked = asked.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let _ = asked.try_send("SIGHUP");
                }
            });
        }
        Err(_) => tracing::warn!("cannot listen for SIGHUP; reloads come from file changes only"),
    }
    if !watch.every.is_zero() {
        tokio::spawn(async move {
            let mut last = fingerprint(&watch.files);
            loop {
                tokio::time::sleep(watch.every).await;
                let now = fingerprint(&watch.files);
                if now != last {
                    last = now;
                    if asked.send("a file changed").await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    while let Some(why) = asks.recv().await {
        match reload().and_then(|config| {
            if config.gateway.listen != listen {
                tracing::warn!(listen = %config.gateway.listen, "a new listening address needs a restart");
            }
            rebuild(&config)
        }) {
            Ok((site, summary)) => {
                current.replace(site);
                tracing::info!(router = %summary, trigger = why, "configuration reloaded");
            }
            Err(failure) => {
                tracing::warn!(error = %failure, trigger = why, "configuration reload failed; the running configuration stays");
            }
        }
    }
}

/// What identifies a file's content cheaply: its length and modification time.
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(u64, SystemTime)>> {
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}
