//! `junction migrate up|down|status`.

use anyhow::Context;

use crate::cli::MigrateAction;
use crate::commands::{Failure, connect};
use crate::config::Config;

pub async fn run(config: &Config, action: &MigrateAction) -> Result<(), Failure> {
    let db = connect(config).await?;
    match action {
        MigrateAction::Up => {
            let applied = junction_migrations::up(&db).await.context("migrating up")?;
            if applied.is_empty() {
                println!("nothing to apply: {} is up to date", config.database.url);
            }
            for name in applied {
                println!("applied     {name}");
            }
        }
        MigrateAction::Down { steps } => {
            let reverted = junction_migrations::down(&db, *steps)
                .await
                .context("migrating down")?;
            if reverted.is_empty() {
                println!("nothing to roll back");
            }
            for name in reverted {
                println!("rolled back {name}");
            }
        }
        MigrateAction::Status => {
            let states = junction_migrations::status(&db)
                .await
                .context("reading migration status")?;
            for state in states {
                let word = if state.applied { "applied" } else { "pending" };
                println!("{word:<11} {}", state.name);
            }
        }
    }
    db.close().await.context("closing the database")?;
    Ok(())
}
