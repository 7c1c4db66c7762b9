//! `junction.toml`: loading, environment overrides, and errors that name the bad key and line.
//!
//! Precedence, lowest first: built-in defaults, the file, `JUNCTION_*` environment variables,
//! command-line flags. Each crate owns the type of its own section; this module only assembles
//! them and reports problems.
//!
//! Environment variables: `JUNCTION_<SECTION>_<KEY>` sets `section.key`
//! (`JUNCTION_DATABASE_URL` -> `database.url`); `__` separates every level when a key is deeper
//! (`JUNCTION_GATEWAY__LIMITS__MAX_DEPTH`). Values are read as TOML (`10`, `true`, `["a"]`)
//! and fall back to a plain string.

mod gateway;

use std::fmt;
use std::path::{Path, PathBuf};

pub use gateway::GatewayConfig;
use junction_connector_sync::ConnectorsConfig;
use junction_deliveries::retention::DeliveriesConfig;
use junction_queue::{QueueBackend, QueueConfig};
use junction_schema::database::DatabaseConfig;
use junction_schema::identity::IdentityConfig;
use junction_telemetry::MetricsConfig;
use junction_webhooks::WebhooksConfig;
use junction_worker::DispatcherConfig;
use serde::Deserialize;

pub const DEFAULT_FILE: &str = "junction.toml";
const ENV_PREFIX: &str = "JUNCTION_";
/// Environment variables with the prefix that are not config keys.
const ENV_RESERVED: &[&str] = &["JUNCTION_CONFIG"];

/// The whole configuration, one field per section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub deliveries: DeliveriesConfig,
    #[serde(default)]
    pub dispatcher: DispatcherConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub connectors: ConnectorsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `junction=debug,sqlx=warn`; `RUST_LOG` wins.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Where a configuration came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Defaults,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Defaults => f.write_str("built-in defaults"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A problem in the file; `key` is empty for syntax errors.
    #[error("{origin}:{line}:{column}: {}{message}", key_prefix(.key))]
    File {
        origin: Origin,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    /// Every key is well-formed, but the values contradict each other.
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
    #[error("environment variable {var}: {}{message}", key_prefix(.key))]
    Env {
        var: String,
        key: String,
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}

/// The file to read: an explicit path, else `./junction.toml` when present, else none.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_owned()),
        None => {
            let default = Path::new(DEFAULT_FILE);
            default.exists().then(|| default.to_owned())
        }
    }
}

/// Reads and validates the configuration from `file` (or defaults) and the environment.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let (origin, text) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            (Origin::File(path.to_owned()), text)
        }
        None => (Origin::Defaults, String::new()),
    };
    parse(origin, &text, env)
}

pub fn parse(
    origin: Origin,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    // The file alone first, so its errors carry a line number.
    let from_file = parse_file(&origin, text)?;
    let overrides = env_overrides(env);
    let config = if overrides.is_empty() {
        from_file
    } else {
        with_overrides(&origin, text, &overrides)?
    };
    config
        .dispatcher
        .validate()
        .map_err(|error| ConfigError::Invalid {
            origin: origin.clone(),
            message: error.to_string(),
        })?;
    config
        .connectors
        .validate()
        .map_err(|message| ConfigError::Invalid {
            origin: origin.clone(),
            message,
        })?;
    config
        .gateway
        .validate()
        .map_err(|message| ConfigError::Invalid {
            origin: origin.clone(),
            message,
        })?;
    config
        .metrics
        .validate()
        .map_err(|message| ConfigError::Invalid {
            origin: origin.clone(),
            message,
        })?;
    if config.queue.backend == QueueBackend::Kafka {
        config
            .queue
            .kafka
            .validate()
            .map_err(|message| ConfigError::Invalid { origin, message })?;
    }
    Ok(config)
}

type Override = (String, Vec<String>, toml::Value);

fn with_overrides(
    origin: &Origin,
    text: &str,
    overrides: &[Override],
) -> Result<Config, ConfigError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| file_error(origin, text, "", &e))?;
    for (var, path, value) in overrides {
        insert(&mut table, path, value.clone()).map_err(|message| ConfigError::Env {
            var: var.clone(),
            key: path.join("."),
            message,
        })?;
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
        let key = error.path().to_string();
        // Blame the variable whose key is the failing one, or the closest enclosing one.
        let var = overrides
            .iter()
            .filter(|(_, path, _)| {
                key.starts_with(&path.join(".")) || path.join(".").starts_with(&key)
            })
            .map(|(var, _, _)| var.clone())
            .next()
            .unwrap_or_else(|| "JUNCTION_*".to_owned());
        ConfigError::Env {
            var,
            key,
            message: error.inner().message().to_owned(),
        }
    })
}

fn parse_file(origin: &Origin, text: &str) -> Result<Config, ConfigError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| file_error(origin, text, "", &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        file_error(origin, text, &key, error.inner())
    })
}

fn file_error(origin: &Origin, text: &str, key: &str, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start);
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    ConfigError::File {
        origin: origin.clone(),
        line,
        column,
        key: key.to_owned(),
        message: error.message().trim_end().to_owned(),
    }
}

/// `JUNCTION_*` variables as (variable, key path, value).
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut overrides: Vec<_> = env
        .into_iter()
        .filter(|(var, _)| var.starts_with(ENV_PREFIX) && !ENV_RESERVED.contains(&var.as_str()))
        .filter_map(|(var, raw)| {
            let name = var[ENV_PREFIX.len()..].to_ascii_lowercase();
            let path: Vec<String> = if name.contains("__") {
                name.split("__").map(str::to_owned).collect()
            } else {
                let (section, key) = name.split_once('_')?;
                vec![section.to_owned(), key.to_owned()]
            };
            if path.iter().any(String::is_empty) {
                return None;
            }
            Some((var, path, env_value(&raw)))
        })
        .collect();
    overrides.sort_by(|a, b| a.0.cmp(&b.0));
    overrides
}

fn env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a table"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Config, ConfigError> {
        parse(Origin::File("junction.toml".into()), text, [])
    }

    fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        parse(
            Origin::File("junction.toml".into()),
            text,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn empty_file_is_the_embedded_defaults() {
        let config = file("").unwrap();
        assert_eq!(config.gateway.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(
            config.database.url.to_string(),
            junction_schema::database::DEFAULT_DATABASE_URL
        );
        assert_eq!(config.log.format, LogFormat::Human);
    }

    #[test]
    fn the_annotated_example_is_valid_and_says_what_it_claims() {
        let text = include_str!("../../junction.example.toml");
        let config = parse(Origin::File("junction.example.toml".into()), text, []).unwrap();
        assert_eq!(config.gateway.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(config.database.max_connections, 10);
        assert_eq!(config.identity.max_age, std::time::Duration::from_secs(10));
        assert_eq!(config.identity.max_body_bytes, 8 << 20);
        let defaults = junction_worker::DispatcherConfig::default();
        assert_eq!(config.dispatcher.retry_schedule, defaults.retry_schedule);
        assert_eq!(
            config.dispatcher.disable_failing_endpoint_after,
            defaults.disable_failing_endpoint_after
        );
        assert_eq!(config.dispatcher.lease, defaults.lease);
        let limits = junction_federation::operation::Limits::default();
        assert_eq!(config.gateway.limits.max_depth, limits.max_depth);
        assert_eq!(
            config.gateway.limits.max_query_bytes,
            limits.max_query_bytes
        );
        assert_eq!(
            config.gateway.subgraph_timeout,
            std::time::Duration::from_secs(30)
        );
        let deliveries = DeliveriesConfig::default();
        assert_eq!(config.deliveries.retention, deliveries.retention);
        assert_eq!(
            config.deliveries.cleanup_interval,
            deliveries.cleanup_interval
        );
        let connectors = junction_connector_sync::ConnectorsConfig::default();
        assert_eq!(config.connectors.manifests, None);
        assert_eq!(config.connectors.poll_interval, connectors.poll_interval);
        assert_eq!(config.connectors.concurrency, connectors.concurrency);
        assert_eq!(config.connectors.lease, connectors.lease);
        let webhooks = junction_webhooks::WebhooksConfig::default();
        assert_eq!(config.webhooks.listen, webhooks.listen);
        assert_eq!(
            config.webhooks.max_payload_bytes,
            webhooks.max_payload_bytes
        );
        assert_eq!(
            config.webhooks.secret_rotation_grace,
            webhooks.secret_rotation_grace
        );
        let metrics = MetricsConfig::default();
        assert_eq!(config.metrics.enabled, metrics.enabled);
        assert_eq!(config.metrics.listen, metrics.listen);
        assert_eq!(config.metrics.max_label_values, metrics.max_label_values);
    }

    #[test]
    fn metrics_settings_are_checked() {
        let config = file("[metrics]\nlisten = \"127.0.0.1:9464\"\ntoken = \"t\"\n").unwrap();
        assert_eq!(config.metrics.listen.map(|a| a.port()), Some(9464));
        let error = file("[metrics]\nmax_label_values = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("metrics.max_label_values must be at least 1"),
            "{error}"
        );
        let error = file("[metrics]\nlistn = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("junction.toml:2:1: key `metrics.listn`: unknown field"),
            "{error}"
        );
    }

    #[test]
    fn a_typo_names_the_key_and_its_line() {
        let error =
            file("[gateway]\nlisten = \"127.0.0.1:4000\"\n\n[database]\nulr = \"sqlite://x.db\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            error.starts_with("junction.toml:5:1: key `database.ulr`: unknown field `ulr`"),
            "{error}"
        );
        assert!(error.contains("expected one of"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn a_wrong_type_names_the_key_line_and_expectation() {
        let error = file("[database]\nurl = \"sqlite://x.db\"\nmax_connections = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("junction.toml:3:19: key `database.max_connections`: invalid type: string \"ten\", expected u32"),
            "{error}"
        );
    }

    #[test]
    fn an_invalid_value_says_what_was_expected() {
        let error = file("[gateway]\nlisten = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("junction.toml:2:10: key `gateway.listen`: invalid socket address"),
            "{error}"
        );
        let error = file("[database]\nurl = \"mysql://h/db\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("key `database.url`: unsupported database URL"),
            "{error}"
        );
        assert!(error.contains("expected sqlite://PATH"), "{error}");
    }

    #[test]
    fn an_unknown_section_is_refused() {
        let error = file("[gatewy]\nlisten = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("junction.toml:1:2: key `gatewy`: unknown field `gatewy`"),
            "{error}"
        );
    }

    #[test]
    fn a_syntax_error_gives_its_line() {
        let error = file("[gateway]\nlisten = \n").unwrap_err().to_string();
        assert!(error.starts_with("junction.toml:2:"), "{error}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = with_env(
            "[database]\nurl = \"sqlite://a.db\"\n",
            &[
                ("JUNCTION_DATABASE_URL", "postgres://u:p@127.0.0.1/j"),
                ("JUNCTION_DATABASE_MAX_CONNECTIONS", "3"),
                ("JUNCTION_GATEWAY__LISTEN", "127.0.0.1:9"),
                ("JUNCTION_CONFIG", "ignored.toml"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(config.database.url.expose(), "postgres://u:p@127.0.0.1/j");
        assert_eq!(config.database.max_connections, 3);
        assert_eq!(config.gateway.listen.port(), 9);
    }

    #[test]
    fn contradictory_values_are_refused() {
        let error = file("[dispatcher]\nlease = \"5s\"\nrequest_timeout = \"10s\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("junction.toml: dispatcher.lease (5s) must be longer than dispatcher.request_timeout (10s)"), "{error}");
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let error = with_env("", &[("JUNCTION_DATABASE_MAX_CONNECTIONS", "many")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("environment variable JUNCTION_DATABASE_MAX_CONNECTIONS: key `database.max_connections`: invalid type"),
            "{error}"
        );
        let error = with_env("", &[("JUNCTION_DATABSE_URL", "x")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `databse`"), "{error}");
    }
}
