//! `junction gateway --supergraph FILE`: the federation router alone, in front of any
//! Federation v2 subgraphs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use junction_edge::server::{CurrentSite, Site};
use junction_federation::supergraph::Supergraph;
use junction_passthrough::Passthrough;
use junction_schema::identity::IdentitySigner;
use tokio::net::TcpListener;

use crate::commands::Failure;
use crate::config::Config;
use crate::roles::router::{Authentication, site};
use crate::shutdown::Shutdown;

pub async fn run(
    config: Config,
    supergraph: Option<PathBuf>,
    config_file: PathBuf,
    reload: impl Fn() -> Result<Config, Failure> + Send + Sync + 'static,
) -> Result<(), Failure> {
    warn_of_serve_only_settings(&config_file);
    let (site, subgraphs) = build(&config, supergraph.as_deref())?;
    // Requests take the site current when they arrive and finish on it; a reload swaps in a
    // new one for the requests after.
    let current = CurrentSite::new(site);
    let mut watched = vec![config_file];
    watched.extend(
        supergraph
            .clone()
            .or_else(|| config.gateway.supergraph.clone()),
    );
    tokio::spawn(reload_when_asked(
        current.clone(),
        supergraph,
        config.gateway.listen,
        reload,
        Watch {
            files: watched,
            every: config.gateway.watch_interval,
        },
    ));
    let listen = config.gateway.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr().context("listener address")?,
        subgraphs = %subgraphs.join(", "),
        "Junction is serving"
    );
    junction_edge::server::serve(
        listener,
        current,
        Shutdown::on_signal().wait(),
        config.gateway.shutdown_grace,
    )
    .await
    .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// Everything the router serves, from a configuration and the supergraph file; and the
/// subgraphs it found, for the log.
fn build(
    config: &Config,
    supergraph: Option<&Path>,
) -> Result<(Site<Passthrough>, Vec<String>), Failure> {
    let Some(path) = supergraph
        .map(Path::to_path_buf)
        .or_else(|| config.gateway.supergraph.clone())
    else {
        return Err(Failure::Usage(
            "a supergraph is needed: --supergraph FILE (or gateway.supergraph)".into(),
        ));
    };
    let sdl = std::fs::read_to_string(&path)
        .map_err(|e| Failure::Usage(format!("{}: cannot read: {e}", path.display())))?;
    let supergraph =
        Supergraph::parse(&sdl).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let subgraphs: Vec<String> = supergraph
        .graphs
        .values()
        .map(|g| format!("{} ({})", g.name, g.url))
        .collect();
    // Without a shared key there is nobody to sign for: third-party subgraphs do not check.
    let signer = config.identity.signing_key.clone().map(IdentitySigner::new);
    // No database: JWT and introspection, when configured; else the router is open.
    let authentication = Authentication::from_config(config, None)?;
    let site = site(config, supergraph, signer, &authentication, Vec::new())?;
    Ok((site, subgraphs))
}

/// Settings the stand-alone router has nothing to apply to are said so at start, not ignored
/// in silence (`junction config check` names them too).
fn warn_of_serve_only_settings(config_file: &Path) {
    let Ok(keys) = crate::commands::config_check::flat(config_file) else {
        return;
    };
    for (key, role) in crate::commands::config_check::read_by_one_role(&keys) {
        if role != "gateway" {
            tracing::warn!(
                setting = %key,
                "read by `junction {role}` only: the stand-alone router has no database, so no API keys and no tokens of its own"
            );
        }
    }
}

/// Files whose change reloads the router, looked at every `every` (never when zero).
struct Watch {
    files: Vec<PathBuf>,
    every: std::time::Duration,
}

/// What identifies a file's content cheaply: its length and modification time.
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(u64, std::time::SystemTime)>> {
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

/// On SIGHUP, or when a watched file changes: the configuration and the supergraph read
/// again, and the router rebuilt from them; anything wrong keeps the running router. (The
/// listening address stays as started.)
async fn reload_when_asked(
    current: CurrentSite<Passthrough>,
    supergraph: Option<PathBuf>,
    listen: std::net::SocketAddr,
    reload: impl Fn() -> Result<Config, Failure>,
    watch: Watch,
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
            build(&config, supergraph.as_deref())
        }) {
            Ok((site, subgraphs)) => {
                current.replace(site);
                tracing::info!(subgraphs = %subgraphs.join(", "), trigger = why, "configuration reloaded");
            }
            Err(failure) => {
                tracing::warn!(error = %failure, trigger = why, "configuration reload failed; the running configuration stays");
            }
        }
    }
}
