//! `junction apikey create|list|revoke`.

use anyhow::Context;
use chrono::Utc;
use junction_schema::Scopes;
use junction_schema::apikeys::{self, ApiKeyError};
use junction_schema::tenants;

use crate::cli::ApikeyAction;
use crate::commands::{Failure, connect_migrated};
use crate::config::Config;

impl From<ApiKeyError> for Failure {
    fn from(error: ApiKeyError) -> Self {
        match error {
            ApiKeyError::Database(_) => Failure::Runtime(anyhow::Error::new(error)),
            ApiKeyError::InvalidName | ApiKeyError::UnknownScope(_) | ApiKeyError::NotFound(_) => {
                Failure::Usage(error.to_string())
            }
        }
    }
}

pub async fn run(config: &Config, action: &ApikeyAction) -> Result<(), Failure> {
    let db = connect_migrated(config).await?;
    match action {
        ApikeyAction::Create {
            tenant,
            scopes,
            name,
            expires_in,
            platform,
        } => {
            let mut scopes = scopes.clone();
            if *platform {
                scopes.push(' ');
                scopes.push_str(junction_schema::identity::PLATFORM_ADMIN_SCOPE);
            }
            let scopes: Scopes =
                scopes
                    .parse()
                    .map_err(|e: junction_schema::identity::InvalidScope| {
                        Failure::Usage(e.to_string())
                    })?;
            let tenant = tenants::find(&db, tenant).await?;
            let expires_at = match expires_in {
                Some(lifetime) => Some(
                    Utc::now()
                        + chrono::Duration::from_std(*lifetime)
                            .map_err(|_| Failure::Usage("--expires-in is too long".into()))?,
                ),
                None => None,
            };
            let issued = apikeys::create(&db, &tenant.id, name, &scopes, expires_at).await?;
            // The key alone on stdout, so scripts can capture it; it is never shown again.
            println!("{}", issued.reveal());
            eprintln!(
                "API key {} for tenant {} (scopes: {}). Store it now: it cannot be shown again.",
                issued.model.id,
                tenant.name,
                if scopes.is_empty() {
                    "none".to_owned()
                } else {
                    scopes.to_string()
                },
            );
        }
        ApikeyAction::List { tenant } => {
            let tenant = tenants::find(&db, tenant).await?;
            let keys = apikeys::list(&db, &tenant.id)
                .await
                .context("listing API keys")?;
            for key in keys {
                let state = match (key.revoked_at, key.expires_at) {
                    (Some(at), _) => format!("revoked {}", at.to_rfc3339()),
                    (None, Some(at)) if at <= Utc::now() => format!("expired {}", at.to_rfc3339()),
                    _ => "active".to_owned(),
                };
                println!("{}\t{}\t{}\t{}", key.id, key.name, key.scopes, state);
            }
        }
        ApikeyAction::Revoke { tenant, id } => {
            let tenant = tenants::find(&db, tenant).await?;
            let key = apikeys::revoke(&db, &tenant.id, id).await?;
            println!("revoked {}", key.id);
        }
    }
    Ok(())
}
