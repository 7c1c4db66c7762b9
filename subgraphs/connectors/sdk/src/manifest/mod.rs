//! Declarative connectors: a connector as one YAML file ([`Manifest`], documented in
//! `MANIFEST.md`), run by [`ManifestConnector`], which implements [`Connector`] so an engine
//! cannot tell it from one written in Rust.

mod cursor;
mod load;
mod model;
mod pages;
mod read;
mod select;
mod template;

use std::path::Path;
use std::sync::Arc;

pub use load::ManifestError;
pub use model::{
    Action, Auth, Check, CursorFormat, CursorFrom, ErrorRule, Incremental, JsonSchema, KeyPlace,
    Manifest, Pagination, StatusMatch, StreamDef, StrftimePattern,
};
pub use select::{FieldPath, KeyFields, Selector};
pub use template::Template;

use crate::connector::{
    AuthKind, BoxFuture, Connection, Connector, MessageStream, Spec, State, StreamSpec, SyncMode,
};
use crate::error::ConnectorError;
use crate::http::{HttpClient, Retry, StatusPolicy};

/// A [`Connector`] that does what its [`Manifest`] says.
#[derive(Debug, Clone)]
pub struct ManifestConnector {
    manifest: Arc<Manifest>,
    /// `client` with the manifest's retry policy and its say on which statuses are retried.
    http: HttpClient,
}

impl ManifestConnector {
    /// Runs `manifest`, sending through `client` (share one client between connectors: it
    /// holds the connection pool and the address policy).
    pub fn new(manifest: Manifest, client: &HttpClient) -> Self {
        let http = client
            .with_retry(manifest.retry)
            .with_statuses(status_policy(&manifest));
        Self {
            manifest: Arc::new(manifest),
            http,
        }
    }

    /// Reads the manifest at `path` and runs it.
    pub fn from_file(path: impl AsRef<Path>, client: &HttpClient) -> Result<Self, ManifestError> {
        Ok(Self::new(Manifest::from_file(path)?, client))
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn stream_spec(def: &StreamDef) -> StreamSpec {
        let mut sync_modes = vec![SyncMode::FullRefresh];
        if def.incremental.is_some() {
            sync_modes.push(SyncMode::Incremental);
        }
        StreamSpec {
            name: def.name.clone(),
            schema: def.schema.0.clone(),
            primary_key: def.primary_key.0.iter().map(|f| f.0.clone()).collect(),
            cursor_field: def
                .incremental
                .as_ref()
                .map(|inc| inc.cursor_field.0.clone()),
            sync_modes,
        }
    }
}

/// The manifest's error rules as the HTTP client's retry decisions; the first rule that
/// matches a status wins, as it does when the answer is judged.
fn status_policy(manifest: &Manifest) -> StatusPolicy {
    let mut policy = StatusPolicy::default();
    for rule in manifest.errors.iter().rev() {
        let retry = match rule.action {
            Action::Retry => Retry::Transient,
            Action::RateLimited => Retry::RateLimited,
            _ => Retry::Never,
        };
        for code in 100..600 {
            if rule.status.matches(code)
                && let Ok(status) = reqwest::StatusCode::from_u16(code)
            {
                policy = policy.with(status, retry);
            }
        }
    }
    policy
}

impl Connector for ManifestConnector {
    fn spec(&self) -> Spec {
        let auth_kind = match &self.manifest.auth {
            Auth::None => AuthKind::None,
            Auth::ApiKey { .. } => AuthKind::ApiKey,
            Auth::Bearer { .. } => AuthKind::Bearer,
            Auth::Basic { .. } => AuthKind::Basic,
        };
        Spec {
            name: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            description: self.manifest.description.clone(),
            auth_kinds: vec![auth_kind],
            config_schema: self.manifest.config_schema.0.clone(),
        }
    }

    fn check<'a>(
        &'a self,
        connection: &'a Connection,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            self.spec().validate_config(&connection.config)?;
            let stream = match &self.manifest.check {
                Some(check) => check.stream.as_str(),
                None => self.manifest.streams[0].name.as_str(),
            };
            let mut reader = read::Reader::start(self, connection, stream, None)?;
            reader.read_page().await
        })
    }

    fn discover<'a>(
        &'a self,
        _connection: &'a Connection,
    ) -> BoxFuture<'a, Result<Vec<StreamSpec>, ConnectorError>> {
        let streams = self
            .manifest
            .streams
            .iter()
            .map(Self::stream_spec)
            .collect();
        Box::pin(async move { Ok(streams) })
    }

    fn read<'a>(
        &'a self,
        connection: &'a Connection,
        stream: &'a str,
        state: Option<State>,
    ) -> MessageStream<'a> {
        read::read(self, connection, stream, state)
    }
}
