//! The connector sync runner, assembled one way for `junction serve` and `junction
//! dispatcher`: the catalog (built-in manifests and the configured folder's), sending through
//! one HTTP client under the same address policy as webhooks.

use std::sync::Arc;

use junction_connector_sdk::http::{AddressPolicy, HttpClient, HttpOptions};
use junction_connector_sync::{Catalog, SyncRunner};
use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::failure::Failure;

/// The catalog this process runs connectors from. A bad manifest in the folder stops the
/// start, named with its file, line and key.
pub fn catalog(config: &Config) -> Result<Catalog, Failure> {
    let client = HttpClient::new(HttpOptions {
        // Connectors reach the same networks webhooks may reach, and no others.
        policy: AddressPolicy::new(config.dispatcher.allowed_networks.clone()),
        ..HttpOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("building the connectors' HTTP client: {e}"))?;
    let mut catalog = Catalog::built_in(&client)
        .map_err(|e| anyhow::anyhow!("loading the built-in connectors: {e}"))?;
    if let Some(folder) = &config.connectors.manifests {
        let added = catalog
            .load_folder(folder, &client)
            .map_err(|e| Failure::Usage(format!("connectors.manifests: {e}")))?;
        tracing::info!(folder = %folder.display(), connectors = ?added, "loaded connector manifests");
    }
    Ok(catalog)
}

/// The sync runner on `db`; run it with [`SyncRunner::run`].
pub fn sync_runner(config: &Config, db: &DatabaseConnection) -> Result<SyncRunner, Failure> {
    Ok(SyncRunner::new(
        db.clone(),
        Arc::new(catalog(config)?),
        config.connectors.clone(),
    ))
}
