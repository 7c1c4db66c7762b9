//! Automatic persisted queries (Apollo's `extensions.persistedQuery` protocol): a client sends
//! the SHA-256 of its query instead of the text; the first time, the router answers
//! `PERSISTED_QUERY_NOT_FOUND` and the client sends both, which the router checks and keeps.
//! Small requests, and GET requests a CDN can cache.
//!
//! A text is kept only once the router has parsed and validated it ([`Resolved::remember`]),
//! in a cache bounded by bytes: refused queries, however large, leave nothing behind.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Rejection;
use junction_edge::cache::{BoundedCache, CacheConfig};

pub struct PersistedQueries {
    /// Texts by hash; when full, those not used recently go first (clients send them again).
    queries: BoundedCache<String, Arc<str>>,
    /// Trusted documents: when set, only these run (by id, or by the same text).
    safelist: Option<HashMap<String, String>>,
}

/// `[gateway.persisted_queries]`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedQueriesConfig {
    /// An Apollo persisted-query manifest (`{"format": "apollo-persisted-query-manifest",
    /// "operations": [{"id", "body", ...}]}`): with it, only its documents run.
    #[serde(default)]
    pub safelist: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}: cannot read the persisted-query manifest: {1}")]
    Read(String, String),
    #[error("{0}: not a persisted-query manifest: {1}")]
    Format(String, String),
}

impl Default for PersistedQueries {
    fn default() -> Self {
        Self::with_cache(CacheConfig::default().persisted_queries_bytes)
    }
}

/// The query text a request runs, and what to keep once the text has been validated.
#[derive(Debug)]
pub struct Resolved {
    pub query: String,
    /// The hash the text came with, to keep it under once it proves valid.
    remember: Option<String>,
}

impl Resolved {
    fn text(query: String) -> Self {
        Self {
            query,
            remember: None,
        }
    }

    /// Keeps the text for its hash: called once the text parsed and validated, never before.
    pub fn remember(&self, persisted: &PersistedQueries) {
        if let Some(hash) = &self.remember {
            let bytes = (hash.len() + self.query.len()) as u64;
            persisted
                .queries
                .insert(hash.clone(), Arc::from(self.query.as_str()), bytes);
        }
    }
}

impl PersistedQueries {
    /// No safelist, texts kept in at most `bytes`.
    pub fn with_cache(bytes: u64) -> Self {
        Self {
            queries: BoundedCache::new(bytes, 2048),
            safelist: None,
        }
    }

    /// With a safelist from `config`, when it names one; texts kept in at most `bytes`.
    pub fn new(config: &PersistedQueriesConfig, bytes: u64) -> Result<Self, ManifestError> {
        let Some(path) = &config.safelist else {
            return Ok(Self::with_cache(bytes));
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ManifestError::Read(shown.clone(), e.to_string()))?;
        let manifest: Value = serde_json::from_str(&text)
            .map_err(|e| ManifestError::Format(shown.clone(), e.to_string()))?;
        let operations = manifest["operations"]
            .as_array()
            .ok_or_else(|| ManifestError::Format(shown.clone(), "no `operations` list".into()))?;
        let mut safelist = HashMap::new();
        for operation in operations {
            let (Some(id), Some(body)) = (operation["id"].as_str(), operation["body"].as_str())
            else {
                return Err(ManifestError::Format(
                    shown,
                    "an operation without `id` or `body`".into(),
                ));
            };
            safelist.insert(id.to_owned(), body.to_owned());
        }
        Ok(Self {
            safelist: Some(safelist),
            ..Self::with_cache(bytes)
        })
    }

    /// In safelist mode, the trusted document for `query` or `hash`, or a refusal.
    fn trusted(
        &self,
        query: Option<&str>,
        hash: Option<&str>,
    ) -> Option<Result<Resolved, Rejection>> {
        let safelist = self.safelist.as_ref()?;
        let found = hash
            .and_then(|h| safelist.get(h))
            .or_else(|| query.and_then(|q| safelist.values().find(|body| *body == q)));
        Some(found.cloned().map(Resolved::text).ok_or_else(|| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "PERSISTED_QUERY_NOT_IN_LIST",
                "this router runs trusted documents only, and this is not one of them",
            )
        }))
    }

    /// The query to run: the text sent (checked against its hash, when a hash came with it,
    /// and kept once valid: see [`Resolved::remember`]), or the text kept for the hash sent
    /// alone.
    pub fn resolve(
        &self,
        query: Option<String>,
        extensions: Option<&Value>,
    ) -> Result<Resolved, Rejection> {
        let query = query.filter(|q| !q.trim().is_empty());
        let persisted = extensions.and_then(|e| e.get("persistedQuery"));
        let hash = persisted.and_then(|p| p["sha256Hash"].as_str());
        if let Some(trusted) = self.trusted(query.as_deref(), hash) {
            return trusted;
        }
        let Some(persisted) = persisted else {
            return query.map(Resolved::text).ok_or_else(|| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "BAD_USER_INPUT",
                    "the request has no `query`",
                )
            });
        };
        if persisted.get("version").and_then(Value::as_i64) != Some(1) {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "PERSISTED_QUERY_NOT_SUPPORTED",
                "only version 1 of persisted queries is supported",
            ));
        }
        let Some(hash) = persisted
            .get("sha256Hash")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
        else {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "`persistedQuery` has no `sha256Hash`",
            ));
        };
        match query {
            Some(query) => {
                if format!("{:x}", Sha256::digest(query.as_bytes())) != hash {
                    return Err(Rejection::new(
                        StatusCode::BAD_REQUEST,
                        "BAD_USER_INPUT",
                        "provided sha does not match query",
                    ));
                }
                Ok(Resolved {
                    query,
                    remember: Some(hash),
                })
            }
            None => self
                .queries
                .get(&hash)
                .map(|query| Resolved::text(query.to_string()))
                .ok_or_else(|| {
                    // As Apollo's clients expect it: status 200, this message and code.
                    Rejection::new(
                        StatusCode::OK,
                        "PERSISTED_QUERY_NOT_FOUND",
                        "PersistedQueryNotFound",
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const QUERY: &str = "{ topProducts { upc } }";

    fn extensions(hash: &str) -> Value {
        json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
    }

    #[test]
    fn a_hash_alone_is_unknown_until_sent_with_its_query() {
        let cache = PersistedQueries::default();
        let hash = format!("{:x}", Sha256::digest(QUERY.as_bytes()));
        let missing = cache.resolve(None, Some(&extensions(&hash))).unwrap_err();
        assert_eq!(missing.status, StatusCode::OK);
        assert_eq!(missing.errors[0]["message"], "PersistedQueryNotFound");
        assert_eq!(
            missing.errors[0]["extensions"]["code"],
            "PERSISTED_QUERY_NOT_FOUND"
        );
        let sent = cache
            .resolve(Some(QUERY.into()), Some(&extensions(&hash)))
            .unwrap();
        assert_eq!(sent.query, QUERY);
        // Not kept until the router found it valid.
        assert!(cache.resolve(None, Some(&extensions(&hash))).is_err());
        sent.remember(&cache);
        assert_eq!(
            cache.resolve(None, Some(&extensions(&hash))).unwrap().query,
            QUERY
        );
    }

    #[test]
    fn kept_texts_stay_within_their_bytes() {
        let cache = PersistedQueries::with_cache(1 << 20);
        for i in 0..1_000 {
            let query = format!("{{ f{i} {} }}", "x ".repeat(5_000));
            let hash = format!("{:x}", Sha256::digest(query.as_bytes()));
            cache
                .resolve(Some(query), Some(&extensions(&hash)))
                .unwrap()
                .remember(&cache);
            assert!(cache.queries.weight() <= 1 << 20);
        }
        assert!(cache.queries.len() < 150, "{}", cache.queries.len());
    }

    #[test]
    fn a_query_that_does_not_match_its_hash_is_refused_and_not_kept() {
        let cache = PersistedQueries::default();
        let wrong = "0".repeat(64);
        let refused = cache
            .resolve(Some(QUERY.into()), Some(&extensions(&wrong)))
            .unwrap_err();
        assert_eq!(
            refused.errors[0]["message"],
            "provided sha does not match query"
        );
        assert!(cache.resolve(None, Some(&extensions(&wrong))).is_err());
        let old = cache
            .resolve(
                None,
                Some(&json!({"persistedQuery": {"version": 2, "sha256Hash": wrong}})),
            )
            .unwrap_err();
        assert_eq!(
            old.errors[0]["extensions"]["code"],
            "PERSISTED_QUERY_NOT_SUPPORTED"
        );
    }

    #[test]
    fn a_safelist_runs_its_documents_only() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("manifest.json");
        std::fs::write(
            &path,
            json!({"format": "apollo-persisted-query-manifest", "version": 1,
                   "operations": [{"id": "abc", "name": "Top", "type": "query", "body": QUERY}]})
            .to_string(),
        )
        .unwrap();
        let cache = PersistedQueries::new(
            &PersistedQueriesConfig {
                safelist: Some(path),
            },
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            cache.resolve(None, Some(&extensions("abc"))).unwrap().query,
            QUERY
        );
        assert_eq!(
            cache.resolve(Some(QUERY.into()), None).unwrap().query,
            QUERY
        );
        let refused = cache.resolve(Some("{ other }".into()), None).unwrap_err();
        assert_eq!(
            refused.errors[0]["extensions"]["code"],
            "PERSISTED_QUERY_NOT_IN_LIST"
        );
        let missing = PersistedQueries::new(
            &PersistedQueriesConfig {
                safelist: Some(dir.path().join("nope.json")),
            },
            1 << 20,
        );
        assert!(missing.is_err());
    }

    #[test]
    fn plain_requests_need_a_query() {
        let cache = PersistedQueries::default();
        assert_eq!(
            cache.resolve(Some(QUERY.into()), None).unwrap().query,
            QUERY
        );
        assert!(cache.resolve(Some("  ".into()), None).is_err());
    }
}
