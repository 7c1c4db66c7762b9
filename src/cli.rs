//! The command line: subcommands and the flags that override `junction.toml`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use junction_schema::database::DatabaseUrl;

use crate::config::{self, Config, LogFormat};
use crate::failure::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "junction",
    version,
    about = "Junction: a GraphQL-first integration platform"
)]
pub struct Cli {
    /// Configuration file [default: ./junction.toml when present, else built-in defaults]
    #[arg(
        long,
        short,
        global = true,
        env = "JUNCTION_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Database URL (sqlite://PATH or postgres://...), overriding `database.url`
    #[arg(long, global = true, value_name = "URL", value_parser = parse_database_url)]
    pub database_url: Option<DatabaseUrl>,
    /// Log format, overriding `log.format`
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter such as `info` or `junction=debug`, overriding `log.level`
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_database_url(text: &str) -> Result<DatabaseUrl, String> {
    DatabaseUrl::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process on the configured (by default embedded) backends
    Serve {
        /// Router address, overriding `gateway.listen`
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Run the federation router alone
    Gateway {
        /// Supergraph SDL to serve
        #[arg(long, value_name = "FILE")]
        supergraph: Option<PathBuf>,
        /// Router address, overriding `gateway.listen`
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Compose subgraphs into a supergraph SDL for `junction gateway`
    Compose {
        /// NAME=URL (SDL fetched from the running subgraph) or NAME=URL@FILE; repeat per subgraph
        #[arg(long = "subgraph", value_name = "NAME=URL[@FILE]")]
        subgraphs: Vec<String>,
        /// Write here instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Run one subgraph alone (it trusts only identity signed with `identity.signing_key`)
    Subgraph {
        name: SubgraphName,
        /// Address, overriding the subgraph's `listen`
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Run the webhook delivery worker alone
    Dispatcher,
    /// Receive webhooks on this machine while developing: registers an endpoint on loopback
    /// with a running Junction, verifies and prints every delivery, deletes it on Ctrl-C
    Listen {
        /// An API key with `webhooks:write` (or `admin`)
        #[arg(long, env = "JUNCTION_API_KEY", hide_env_values = true)]
        key: String,
        /// The running Junction's router
        #[arg(long, default_value = "http://127.0.0.1:4000")]
        router: String,
        /// Port on 127.0.0.1 [default: any free port]
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Event types to receive, comma-separated [default: all]
        #[arg(long, value_delimiter = ',')]
        event_types: Vec<String>,
    },
    /// Apply, roll back or list database migrations
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Validate configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Issue, list and revoke API keys
    Apikey {
        #[command(subcommand)]
        action: ApikeyAction,
    },
    /// Create and list tenants
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SubgraphName {
    Webhooks,
    Connectors,
    Deliveries,
}

impl fmt::Display for SubgraphName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().expect("no skipped variants");
        f.write_str(name.get_name())
    }
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration
    Up,
    /// Roll back the most recent migrations
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate a configuration file (and the JUNCTION_* environment); exit 2 when invalid
    Check {
        /// The file [default: --config, else ./junction.toml]
        file: Option<PathBuf>,
    },
    /// Show what would change going from OLD to NEW (both validated first); secrets masked
    Diff { old: PathBuf, new: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyAction {
    /// Issue a key and print it once
    Create {
        /// Tenant id or name
        #[arg(long)]
        tenant: String,
        /// Scopes, space- or comma-separated (for example "admin")
        #[arg(long, default_value = "", long_help = scopes_help())]
        scopes: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime such as 90d or 12h [default: never expires]
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Also `platform:admin`: the key manages tenants (createTenant, tenants, updateTenant,
        /// deleteTenant) and issues keys for any of them
        #[arg(long)]
        platform: bool,
    },
    /// List a tenant's keys (never their secrets)
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key at once
    Revoke {
        #[arg(long)]
        tenant: String,
        /// The key id (the part after `jk_live_` and before the next `_`)
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Create a tenant
    Create { name: String },
    /// List tenants
    List,
}

impl Cli {
    /// The effective configuration: file, then environment, then flags.
    pub fn load_config(&self) -> Result<Config, Failure> {
        let file = config::locate(self.config.as_deref());
        let mut config = config::load(file.as_deref(), std::env::vars())?;
        if let Some(url) = &self.database_url {
            config.database.url = url.clone();
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if let Some(level) = &self.log_level {
            config.log.level = level.clone();
        }
        if let Command::Serve {
            listen: Some(listen),
        }
        | Command::Gateway {
            listen: Some(listen),
            ..
        } = &self.command
        {
            config.gateway.listen = *listen;
        }
        Ok(config)
    }
}

/// `--scopes`'s long help: every scope a key may hold and what it allows.
fn scopes_help() -> String {
    format!(
        "Scopes, space- or comma-separated; one of:\n{}",
        junction_schema::identity::known_scopes()
    )
}
