//! One module per subcommand, and how a failed command reports itself.

pub mod apikey;
pub mod compose;
pub mod config_check;

pub mod dispatcher;

pub mod gateway;

pub mod migrate;
pub mod serve;
pub mod subgraph;
pub mod tenant;

use std::process::ExitCode;

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::config::{Config, ConfigError};

/// Why a command failed, and so its exit code: 2 for what the user must fix (configuration,
/// input, a part not built yet), 1 for everything else.
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl Failure {
    pub fn not_built(command: &str, why: &str) -> Self {
        Failure::Usage(format!("`junction {command}` is not built yet: {why}"))
    }

    pub fn report(self) -> ExitCode {
        match self {
            Failure::Usage(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
            Failure::Runtime(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(message) => f.write_str(message),
            Failure::Runtime(error) => write!(f, "{error:#}"),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Failure::Usage(error.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Runtime(error)
    }
}

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
