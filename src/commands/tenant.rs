//! `junction tenant create|list`.

use anyhow::Context;
use junction_schema::tenants::{self, TenantError};

use crate::cli::TenantAction;
use crate::commands::{Failure, connect_migrated};
use crate::config::Config;

impl From<TenantError> for Failure {
    fn from(error: TenantError) -> Self {
        match error {
            TenantError::Database(_) | TenantError::ApiKey(_) => {
                Failure::Runtime(anyhow::Error::new(error))
            }
            TenantError::InvalidName(_) | TenantError::NameTaken(_) | TenantError::NotFound(_) => {
                Failure::Usage(error.to_string())
            }
        }
    }
}

pub async fn run(config: &Config, action: &TenantAction) -> Result<(), Failure> {
    let db = connect_migrated(config).await?;
    match action {
        TenantAction::Create { name } => {
            let tenant = tenants::create(&db, name).await?;
            println!("{}\t{}", tenant.id, tenant.name);
        }
        TenantAction::List => {
            for tenant in tenants::list(&db).await.context("listing tenants")? {
                println!("{}\t{}", tenant.id, tenant.name);
            }
        }
    }
    Ok(())
}
