//! `junction gateway --supergraph FILE`: the federation router alone, in front of any
//! Federation v2 subgraphs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use junction_edge::server::{CurrentSite, Site};
use junction_federation::supergraph::Supergraph;
use junction_passthrough::Passthrough;
use junction_schema::identity::IdentitySigner;
use junction_telemetry::Exporter;
use tokio::net::TcpListener;

use crate::commands::Failure;
use crate::commands::reload::{Watch, reload_when_asked};
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
    let metrics = crate::roles::metrics::install(&config)?;
    let (site, subgraphs) = build(&config, supergraph.as_deref(), metrics.as_ref())?;
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
        config.gateway.listen,
        Watch {
            files: watched,
            every: config.gateway.watch_interval,
        },
        reload,
        {
            let metrics = metrics.clone();
            move |config| {
                let (site, subgraphs) = build(config, supergraph.as_deref(), metrics.as_ref())?;
                Ok((site, format!("subgraphs {}", subgraphs.join(", "))))
            }
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
    let shutdown = Shutdown::on_signal();
    let own_metrics =
        crate::roles::metrics::serve_own(&config, metrics.as_ref(), shutdown.clone()).await?;
    junction_edge::server::serve(
        listener,
        current,
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
    tracing::info!("stopped");
    Ok(())
}

/// Everything the router serves, from a configuration and the supergraph file; and the
/// subgraphs it found, for the log.
fn build(
    config: &Config,
    supergraph: Option<&Path>,
    metrics: Option<&Arc<Exporter>>,
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
    let site = site(
        config,
        supergraph,
        signer,
        &authentication,
        Vec::new(),
        metrics,
    )?;
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
