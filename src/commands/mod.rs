//! One module per subcommand, and how a failed command reports itself.

pub mod apikey;
pub mod compose;
pub mod config_check;

pub mod dispatcher;

pub mod gateway;

pub mod listen;
pub mod migrate;
pub mod reload;
pub mod serve;
pub mod subgraph;
pub mod tenant;

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::config::Config;
pub use crate::failure::Failure;

pub async fn connect(config: &Config) -> Result<DatabaseConnection, Failure> {
    let db = junction_schema::database::connect(&config.database)
        .await
        .context("database")?;
    Ok(db)
}

/// Connects and refuses to go on against a database that is not fully migrated.
pub async fn connect_migrated(config: &Config) -> Result<DatabaseConnection, Failure> {
    let db = connect(config).await?;
    let pending = junction_migrations::status(&db)
        .await
        .context("reading migration status")?
        .into_iter()
        .filter(|m| !m.applied)
        .count();
    if pending > 0 {
        return Err(Failure::Usage(format!(
            "the database at {} has {pending} pending migration(s): run `junction migrate up` first",
            config.database.url
        )));
    }
    Ok(db)
}
