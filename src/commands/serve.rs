//! `junction serve`: every part of Junction in one process, on the configured backends
//! (embedded SQLite by default).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use junction_edge::auth::api_keys::ApiKeys;
use junction_edge::server::{CurrentSite, Site};
use junction_federation::compose::{self, SubgraphSource};
use junction_federation::supergraph::Supergraph;
use junction_passthrough::{Passthrough, RouteConfig};
use junction_schema::identity::{IdentityKey, IdentitySigner, IdentityVerifier};
use junction_schema::tenants;
use tokio::net::TcpListener;

use crate::commands::reload::{Watch, reload_when_asked};
use crate::commands::{Failure, connect, dispatcher};
use crate::config::Config;
use crate::roles::router::Authentication;
use crate::roles::subgraphs::{database_probe, deliveries_router, webhooks_router};
use crate::shutdown::Shutdown;

pub async fn run(
    config: Config,
    config_file: PathBuf,
    reload: impl Fn() -> Result<Config, Failure> + Send + Sync + 'static,
) -> Result<(), Failure> {
    // The router's port first: a start that cannot listen stops here, before it migrates,
    // creates the default tenant or prints (and so spends) the admin key, which the next,
    // successful start prints instead. Connections made meanwhile wait in the backlog.
    let listen = config.gateway.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let metrics = crate::roles::metrics::install(&config)?;
    // `[metrics] listen` too, for the same reason.
    let shutdown = Shutdown::on_signal();
    let own_metrics =
        crate::roles::metrics::serve_own(&config, metrics.as_ref(), shutdown.clone()).await?;
    let db = connect(&config).await?;
    let applied = junction_migrations::up(&db)
        .await
        .context("applying migrations")?;
    if !applied.is_empty() {
        tracing::info!(count = applied.len(), "applied migrations");
    }
    if let Some(bootstrap) = tenants::bootstrap(&db)
        .await
        .context("creating the default tenant")?
    {
        print_bootstrap(&bootstrap);
    }

    // Before anything starts: a bad manifest in the connectors folder stops the start here.
    let syncs = crate::roles::connectors::sync_runner(&config, &db)?;
    crate::roles::metrics::queue_gauges(&config, metrics.as_ref(), &db);
    let worker = dispatcher::start(&config, &db).await?;
    let worker_events = worker.events();
    let cleanup = tokio::spawn(junction_deliveries::retention::run(
        db.clone(),
        config.deliveries.clone(),
        shutdown.clone().wait(),
    ));
    let worker = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { worker.run(shutdown.wait()).await }
    });
    let syncs = tokio::spawn(syncs.run(shutdown.clone().wait()));

    // The subgraphs run in this process, each on a loopback port of its own, and the router
    // in front of them signs every caller's identity with a key only this process knows
    // (unless one is configured).
    let key = config
        .identity
        .signing_key
        .clone()
        .unwrap_or_else(IdentityKey::generate);
    let mut keys = vec![key.clone()];
    keys.extend(config.identity.previous_signing_keys.iter().cloned());
    let verifier = Arc::new(
        IdentityVerifier::new(keys, config.identity.max_age)
            .with_max_body_bytes(config.identity.max_body_bytes),
    );
    let mut sources = Vec::new();
    let mut subgraph_servers = Vec::new();
    let mut webhooks_base = None;
    for (name, router, sdl) in [
        (
            junction_webhooks::SUBGRAPH_NAME,
            webhooks_router(&config, &db, Arc::clone(&verifier)),
            junction_webhooks::graphql::sdl(),
        ),
        (
            junction_deliveries::SUBGRAPH_NAME,
            deliveries_router(&db, Arc::clone(&verifier), Some(worker_events.clone())),
            junction_deliveries::graphql::sdl(),
        ),
    ] {
        let subgraph_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("cannot open a loopback port for the {name} subgraph"))?;
        let address = subgraph_listener.local_addr().context("subgraph address")?;
        let url = format!("http://{address}/graphql");
        if name == junction_webhooks::SUBGRAPH_NAME {
            webhooks_base = Some(format!("http://{address}"));
        }
        subgraph_servers.push(tokio::spawn(junction_edge::server::serve(
            subgraph_listener,
            router,
            shutdown.clone().wait(),
            config.gateway.shutdown_grace,
        )));
        sources.push(SubgraphSource {
            name: name.into(),
            url,
            sdl,
        });
    }
    // Composed once: the subgraphs are this process's own. A reload rebuilds the router from
    // the new configuration over the same supergraph.
    let supergraph_sdl = compose::compose(&sources)
        .map_err(|e| anyhow::anyhow!("composing Junction's own subgraphs: {e}"))?;
    let api_keys = Arc::new(ApiKeys::new(
        db.clone(),
        config.gateway.api_key_cache_ttl,
        config.gateway.caches.api_keys_bytes,
    ));
    let build = {
        let db = db.clone();
        move |config: &Config| -> Result<Site<Passthrough>, Failure> {
            let supergraph = Supergraph::parse(&supergraph_sdl)
                .map_err(|e| anyhow::anyhow!("loading the composed supergraph: {e}"))?;
            let authentication = Authentication::from_config(config, Some(Arc::clone(&api_keys)))?;
            // The webhooks subgraph's REST routes, on the router's address like everything else.
            let mut with_routes = config.clone();
            if let Some(base) = &webhooks_base {
                with_routes
                    .gateway
                    .routes
                    .extend(webhooks_rest_routes(base, config)?);
            }
            crate::roles::router::site(
                &with_routes,
                supergraph,
                Some(IdentitySigner::new(key.clone())),
                &authentication,
                vec![database_probe(db.clone())],
                metrics.as_ref(),
            )
        }
    };
    let current = CurrentSite::new(build(&config)?);
    tokio::spawn(reload_when_asked(
        current.clone(),
        listen,
        Watch {
            files: vec![config_file],
            every: config.gateway.watch_interval,
        },
        reload,
        move |config| {
            Ok((
                build(config)?,
                "routes, authentication and limits".to_owned(),
            ))
        },
    ));
    let address = listener.local_addr().context("listener address")?;
    print_playground(address);
    tracing::info!(
        address = %address,
        database = %config.database.url,
        "Junction is serving"
    );
    junction_edge::server::serve(
        listener,
        current,
        shutdown.wait(),
        config.gateway.shutdown_grace,
    )
    .await
    .context("serving HTTP")?;
    worker.await.context("the dispatcher task failed")?;
    syncs.await.context("the connector sync task failed")?;
    cleanup.await.context("the retention task failed")?;
    if let Some(server) = own_metrics {
        server
            .await
            .context("the metrics task failed")?
            .context("serving metrics")?;
    }
    for server in subgraph_servers {
        server
            .await
            .context("a subgraph task failed")?
            .context("serving a subgraph")?;
    }
    db.close().await.context("closing the database")?;
    tracing::info!("stopped");
    Ok(())
}

/// The REST routes `junction serve` declares besides the configured ones: `POST /v1/events`
/// (bulk publishing, with the router's credentials, signed for the route
/// [`junction_webhooks::rest::EVENTS_ROUTE`]) and `GET /v1/openapi.json` (its description,
/// open to anyone), both to the webhooks subgraph at `base`. A configured route on either
/// path takes precedence, and the built-in one is left out.
fn webhooks_rest_routes(base: &str, config: &Config) -> Result<Vec<RouteConfig>, Failure> {
    use junction_webhooks::rest::{EVENTS_PATH, EVENTS_ROUTE, OPENAPI_PATH, OPENAPI_ROUTE};
    let declared = |path: &str| config.gateway.routes.iter().any(|r| r.path == path);
    let mut routes = Vec::new();
    if !declared(EVENTS_PATH) {
        routes.push(route(&format!(
            "name = \"{EVENTS_ROUTE}\"\npath = \"{EVENTS_PATH}\"\nmethods = [\"POST\"]\n\
             upstreams = [\"{base}\"]\nupgrades = []\nmax_body_bytes = {}\n\
             plugins = [{{ name = \"auth\" }}]\n",
            config.identity.max_body_bytes
        ))?);
    }
    if !declared(OPENAPI_PATH) {
        routes.push(route(&format!(
            "name = \"{OPENAPI_ROUTE}\"\npath = \"{OPENAPI_PATH}\"\nmethods = [\"GET\"]\n\
             upstreams = [\"{base}\"]\nupgrades = []\nmax_body_bytes = 1024\n"
        ))?);
    }
    Ok(routes)
}

fn route(toml_text: &str) -> Result<RouteConfig, Failure> {
    toml::from_str(toml_text)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("a built-in REST route is invalid: {e}")))
}

/// Where to try the API, on every start: the first thing a newcomer looks for.
fn print_playground(address: std::net::SocketAddr) {
    let host = if address.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        address.ip().to_string()
    };
    let host = if address.is_ipv6() && host != "localhost" {
        format!("[{host}]")
    } else {
        host
    };
    println!(
        "Playground: http://{host}:{port}/playground (it asks for your API key)\n",
        port = address.port(),
    );
}

fn print_bootstrap(bootstrap: &tenants::Bootstrap) {
    // Printed, never logged: logs are kept and shipped, this key must not be.
    println!(
        "\nJunction created the tenant {:?} and its first admin API key.\n\
         It is shown only this once; store it now:\n\n    {}\n\n\
         Send it as `Authorization: Bearer <key>`. More keys: `junction apikey create --tenant {} --scopes admin`.\n",
        bootstrap.tenant.name,
        bootstrap.admin_key.reveal(),
        bootstrap.tenant.name,
    );
}
