//! The contract between a connector and the engine that runs it: [`Connector`], and the values
//! that cross it (the connector's [`Spec`], a [`Connection`], the [`StreamSpec`]s it discovers,
//! the [`Message`]s it reads).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ConnectorError;
use crate::http::{RateLimit, RateLimiter};

/// A boxed future, so that [`Connector`] stays object-safe (`Arc<dyn Connector>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Connector::read`] returns: records and checkpoints, pulled one at a time, so memory
/// stays flat however large the source. The stream ends after an error.
pub type MessageStream<'a> =
    Pin<Box<dyn Stream<Item = Result<Message, ConnectorError>> + Send + 'a>>;

/// A source of records: a SaaS API, a database, a file.
///
/// An engine holds connectors as `Arc<dyn Connector>` and cannot tell a Rust connector from a
/// [manifest](crate::manifest::ManifestConnector) one. The contract:
///
/// - [`spec`](Self::spec) describes the connector without contacting anything.
/// - [`check`](Self::check) answers whether a connection's configuration and credentials work,
///   with a [`ConnectorError`] whose class and message say what is wrong.
/// - [`discover`](Self::discover) lists the streams a connection can read.
/// - [`read`](Self::read) reads one stream from a [`State`] (none for the first read). It
///   yields [`Message::Record`]s and, between them, [`Message::Checkpoint`]s. A checkpoint
///   covers every record yielded before it: reading again from that state yields the records
///   after it, none lost and none repeated. The last message of a complete read is a
///   checkpoint; the engine stores it with the records it covers, atomically.
///
/// See `examples/hello_connector.rs` for a connector written by hand.
pub trait Connector: Send + Sync {
    /// Name, version, accepted authentication kinds and the JSON Schema of the configuration.
    fn spec(&self) -> Spec;

    /// Whether `connection` works: `Ok(())`, or the reason it does not.
    fn check<'a>(&'a self, connection: &'a Connection)
    -> BoxFuture<'a, Result<(), ConnectorError>>;

    /// The streams `connection` can read.
    fn discover<'a>(
        &'a self,
        connection: &'a Connection,
    ) -> BoxFuture<'a, Result<Vec<StreamSpec>, ConnectorError>>;

    /// Reads `stream`, resuming from `state` (the last checkpoint stored), or from the start
    /// when `state` is `None`.
    fn read<'a>(
        &'a self,
        connection: &'a Connection,
        stream: &'a str,
        state: Option<State>,
    ) -> MessageStream<'a>;
}

/// How a connector describes itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// A short lower-case identifier (`stripe`), unique in a catalog.
    pub name: String,
    pub version: String,
    /// What the connector is for, in a sentence.
    #[serde(default)]
    pub description: String,
    /// The ways of authenticating the connector accepts.
    pub auth_kinds: Vec<AuthKind>,
    /// JSON Schema of the connection's configuration (not its credentials).
    pub config_schema: Value,
}

impl Spec {
    /// Checks `config` against [`config_schema`](Self::config_schema), naming every problem.
    pub fn validate_config(&self, config: &Value) -> Result<(), ConnectorError> {
        let validator = jsonschema::validator_for(&self.config_schema).map_err(|e| {
            ConnectorError::source_bug(format!(
                "connector {} has an invalid configuration schema: {e}",
                self.name
            ))
        })?;
        let problems: Vec<String> = validator
            .iter_errors(config)
            .map(|error| {
                let at = error.instance_path().to_string();
                if at.is_empty() {
                    error.to_string()
                } else {
                    format!("{at}: {error}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::config(problems.join("; ")))
        }
    }
}

/// A way of authenticating to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthKind {
    /// A key sent in a header or a query parameter.
    ApiKey,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic` with a user name and password.
    Basic,
    /// A database user name and password.
    Database,
    /// No authentication.
    None,
}

/// One connection's configuration and credentials, as the engine hands them to a connector.
///
/// Build one per connection and reuse it for every call: it owns the connection's request rate
/// limiter, so that streams read at once share one cap.
#[derive(Clone)]
pub struct Connection {
    /// The configuration, valid against the connector's [`Spec::config_schema`].
    pub config: Value,
    pub credentials: Credentials,
    limiter: Arc<OnceLock<Arc<RateLimiter>>>,
}

impl Connection {
    pub fn new(config: Value, credentials: Credentials) -> Self {
        Self {
            config,
            credentials,
            limiter: Arc::default(),
        }
    }

    /// The connection's request rate limiter. The first caller's `limit` sets it; later calls
    /// (another stream of the same connection, read at once) share that limiter.
    pub fn rate_limiter(&self, limit: RateLimit) -> Arc<RateLimiter> {
        Arc::clone(
            self.limiter
                .get_or_init(|| Arc::new(RateLimiter::new(limit))),
        )
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Secret values by name (`token`, `api_key`, `username`, `password`). `Debug` prints the
/// names only, so credentials never reach a log.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Credentials(BTreeMap<String, String>);

impl Credentials {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same credentials with `name` set to `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, "<redacted>")))
            .finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Credentials {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// One stream a connection can read: a kind of record (customers, charges, a table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSpec {
    pub name: String,
    /// JSON Schema every record of the stream satisfies.
    pub schema: Value,
    /// The fields that identify a record, each a path of keys (`[["id"]]`). Empty when the
    /// records have no identity, in which case the engine can only append them.
    pub primary_key: Vec<Vec<String>>,
    /// The field incremental reads follow (`["created"]`), when the stream supports them.
    pub cursor_field: Option<Vec<String>>,
    pub sync_modes: Vec<SyncMode>,
}

impl StreamSpec {
    /// The primary key of `record`, as the values of its key fields; `None` if one is missing.
    pub fn key_of(&self, record: &Value) -> Option<Vec<Value>> {
        self.primary_key
            .iter()
            .map(|path| lookup(record, path).filter(|v| !v.is_null()).cloned())
            .collect()
    }

    /// The cursor value of `record`, if the stream has a cursor and the record holds it.
    pub fn cursor_of<'r>(&self, record: &'r Value) -> Option<&'r Value> {
        self.cursor_field
            .as_ref()
            .and_then(|path| lookup(record, path))
            .filter(|v| !v.is_null())
    }
}

/// The value at `path` (a list of object keys) inside `value`.
pub(crate) fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// How a stream can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Every record, every time.
    FullRefresh,
    /// Only what changed since the last checkpoint, following the cursor field.
    Incremental,
}

/// Where a read got to, opaque to the engine: it stores it and hands it back to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct State(pub Value);

/// One record of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub data: Value,
}

/// What [`Connector::read`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Record(Record),
    /// Every record yielded before this is covered: resuming from this state yields the rest.
    Checkpoint(State),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_never_show_their_values() {
        let credentials = Credentials::new().with("token", "sk_live_secret");
        let printed = format!("{:?}", Connection::new(json!({}), credentials));
        assert!(!printed.contains("sk_live_secret"), "{printed}");
        assert!(printed.contains("token"), "{printed}");
    }

    #[test]
    fn config_is_checked_against_the_schema_with_every_problem_named() {
        let spec = Spec {
            name: "x".into(),
            version: "1".into(),
            description: String::new(),
            auth_kinds: vec![AuthKind::Bearer],
            config_schema: json!({
                "type": "object",
                "required": ["base_url"],
                "properties": {"base_url": {"type": "string"}, "page_size": {"type": "integer"}},
            }),
        };
        assert_eq!(
            spec.validate_config(&json!({"base_url": "http://x"})),
            Ok(())
        );
        let error = spec
            .validate_config(&json!({"page_size": "ten"}))
            .unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Config);
        assert!(error.message().contains("base_url"), "{error}");
        assert!(error.message().contains("/page_size"), "{error}");
    }

    #[test]
    fn keys_and_cursors_are_read_from_nested_fields() {
        let stream = StreamSpec {
            name: "s".into(),
            schema: json!({}),
            primary_key: vec![vec!["id".into()], vec!["org".into(), "id".into()]],
            cursor_field: Some(vec!["updated".into()]),
            sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
        };
        let record = json!({"id": 1, "org": {"id": "o"}, "updated": 5});
        assert_eq!(stream.key_of(&record), Some(vec![json!(1), json!("o")]));
        assert_eq!(stream.cursor_of(&record), Some(&json!(5)));
        assert_eq!(stream.key_of(&json!({"id": 1})), None);
    }
}
