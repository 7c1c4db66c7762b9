//! The router's credentials check for `junction serve`: Junction API keys, looked up in the
//! database; the same keys are the client credentials of the OAuth2 token endpoint (client id:
//! the key's id; secret: the whole key).
//!
//! A key verified once is remembered for `cache_ttl` (never past its expiry), so a busy
//! client costs one database read per period instead of one per request; revoking a key
//! therefore takes effect within that period. While the database cannot be reached, a key it
//! accepted before keeps naming its caller (see [`ApiKeys::verify`]). Tokens minted from a key are checked against
//! the same memory by the key's id, so they stop within the same period as the key.

use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use junction_schema::Identity;
use junction_schema::apikeys::{self, AuthError as KeyError};
use junction_schema::database::is_unavailable;

use super::oauth::{ClientCredentials, ClientRefused};
use super::{AuthError, Authenticator, bearer};
use crate::cache::BoundedCache;
use sea_orm::DatabaseConnection;
use sha2::{Digest, Sha256};

/// A key the database said was valid, until `until`.
#[derive(Clone)]
struct Remembered {
    identity: Identity,
    /// The SHA-256 of the whole key, when it was presented; a key checked by id alone (for
    /// a token) has none, and its secret is checked in the database when it comes.
    digest: Option<[u8; 32]>,
    until: Instant,
}

pub struct ApiKeys {
    db: DatabaseConnection,
    cache_ttl: Duration,
    /// By key id; only keys the database accepted, within `[gateway.caches] api_keys_bytes`
    /// (when full, the keys not used recently go first and are read again when they come).
    verified: BoundedCache<String, Remembered>,
}

/// Equal digests, compared without an early exit.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiKeys {
    pub fn new(db: DatabaseConnection, cache_ttl: Duration, cache_bytes: u64) -> Self {
        Self {
            db,
            cache_ttl,
            verified: BoundedCache::new(cache_bytes, 256),
        }
    }

    /// The remembered identity of key `id`, while its time lasts and `accept` likes it.
    fn remembered(&self, id: &str, accept: impl Fn(&Remembered) -> bool) -> Option<Identity> {
        self.verified
            .get(id)
            .filter(|entry| entry.until > Instant::now() && accept(entry))
            .map(|entry| entry.identity)
    }

    /// Remembers what the database just said of key `identity.subject`.
    fn remember(&self, identity: &Identity, digest: Option<[u8; 32]>) {
        let now = Instant::now();
        let mut until = now + self.cache_ttl;
        if let Some(expires_at) = identity.expires_at {
            let left = (expires_at - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            until = until.min(now + left);
        }
        if until <= now {
            return;
        }
        // A digest known from before stays: the id names one key, whose secret never changes.
        let digest = digest.or_else(|| {
            self.verified
                .get(identity.subject.as_str())
                .and_then(|e| e.digest)
        });
        let bytes = 2 * identity.subject.len()
            + identity.tenant.len()
            + identity.scopes.to_string().len()
            + std::mem::size_of::<Remembered>();
        self.verified.insert(
            identity.subject.clone(),
            Remembered {
                identity: identity.clone(),
                digest,
                until,
            },
            bytes as u64,
        );
    }

    /// The identity of `key`: remembered, or checked in the database (and then remembered).
    /// Refusals are never remembered: a key created a moment ago works at once.
    async fn verify(&self, key: &str) -> Result<Identity, KeyError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(id) = apikeys::key_id(key)
            && let Some(identity) = self.remembered(id, |entry| {
                entry
                    .digest
                    .is_some_and(|known| same_digest(&known, &digest))
            })
        {
            return Ok(identity);
        }
        let identity = match apikeys::authenticate(&self.db, key).await {
            Err(KeyError::Database(error)) if is_unavailable(&error) => {
                // The database cannot be reached: a key it accepted before (and that has not
                // expired since) still names its caller, so the request goes on to meet the
                // same outage downstream and is answered there with a retryable UNAVAILABLE,
                // not with a refusal of valid credentials. Nothing can be revoked meanwhile:
                // revoking needs the database too.
                return self.stale(key, &digest).ok_or(KeyError::Database(error));
            }
            checked => checked?,
        };
        self.remember(&identity, Some(digest));
        Ok(identity)
    }

    /// The identity the database gave `key` last, however long ago, unless it has expired.
    fn stale(&self, key: &str, digest: &[u8; 32]) -> Option<Identity> {
        let id = apikeys::key_id(key)?;
        let entry = self.verified.get(id)?;
        let known = entry.digest?;
        let unexpired = entry
            .identity
            .expires_at
            .is_none_or(|at| at > chrono::Utc::now());
        (same_digest(&known, digest) && unexpired).then_some(entry.identity)
    }

    /// Whether key `id` is still valid (not revoked, not expired): remembered the same way.
    async fn check_id(&self, id: &str) -> Result<Identity, KeyError> {
        if let Some(identity) = self.remembered(id, |_| true) {
            return Ok(identity);
        }
        let identity = apikeys::check_id(&self.db, id).await?;
        self.remember(&identity, None);
        Ok(identity)
    }
}

/// The key from `Authorization: Bearer <key>` or `X-Api-Key: <key>`.
fn presented(headers: &axum::http::HeaderMap) -> Option<String> {
    if headers.contains_key("authorization") {
        return bearer(headers).map(str::to_owned);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

impl Authenticator for ApiKeys {
    fn authenticate<'a>(
        &'a self,
        headers: &'a axum::http::HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        async move {
            let Some(key) = presented(headers) else {
                return Ok(None);
            };
            match self.verify(&key).await {
                Ok(identity) => Ok(Some(identity)),
                Err(KeyError::Database(error)) => {
                    tracing::error!(%error, "cannot check an API key");
                    Err(AuthError::Unavailable(
                        "credentials cannot be checked right now".to_owned(),
                    ))
                }
                Err(reason) => {
                    // One answer for every refusal: no hints about which keys exist.
                    tracing::debug!(%reason, "refused API key");
                    Err(AuthError::Refused("invalid API key".to_owned()))
                }
            }
        }
        .boxed()
    }
}

impl ClientCredentials for ApiKeys {
    fn verify<'a>(
        &'a self,
        client_id: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Option<Identity>> {
        async move {
            match self.verify(secret).await {
                Ok(identity) if identity.subject == client_id => Some(identity),
                Ok(_) => None,
                Err(error) => {
                    tracing::debug!(%error, "refused client credentials");
                    None
                }
            }
        }
        .boxed()
    }

    fn check<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<(), ClientRefused>> {
        async move {
            match self.check_id(client_id).await {
                Ok(_) => Ok(()),
                Err(KeyError::Database(error)) => {
                    tracing::error!(%error, "cannot check a token's API key");
                    Err(ClientRefused::Unavailable)
                }
                Err(reason) => {
                    tracing::debug!(%reason, "refused a token whose API key is no longer valid");
                    Err(ClientRefused::Revoked)
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};
    use junction_schema::tenants;

    use super::*;

    async fn database() -> DatabaseConnection {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        junction_migrations::up(&db).await.unwrap();
        db
    }

    #[tokio::test]
    async fn verified_keys_are_remembered_until_the_ttl_then_checked_again() {
        let db = database().await;
        let bootstrap = tenants::bootstrap(&db).await.unwrap().unwrap();
        let key = bootstrap.admin_key.reveal().to_owned();
        let id = bootstrap.admin_key.model.id.clone();
        let keys = ApiKeys::new(db.clone(), Duration::from_millis(300), 1 << 20);
        assert!(keys.verify("jk_live_nonsense").await.is_err());
        let identity = keys.verify(&key).await.unwrap();
        assert_eq!(identity.tenant, bootstrap.tenant.id);

        apikeys::revoke(&db, &bootstrap.tenant.id, &id)
            .await
            .unwrap();
        assert_eq!(
            keys.verify(&key).await.unwrap().subject,
            id,
            "remembered within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(matches!(keys.verify(&key).await, Err(KeyError::Revoked)));
        // A refusal is not remembered either way; with no TTL nothing is.
        let fresh = apikeys::create(&db, &bootstrap.tenant.id, "new", &identity.scopes, None)
            .await
            .unwrap();
        let uncached = ApiKeys::new(db.clone(), Duration::ZERO, 1 << 20);
        assert!(uncached.verify(fresh.reveal()).await.is_ok());
        apikeys::revoke(&db, &bootstrap.tenant.id, &fresh.model.id)
            .await
            .unwrap();
        assert!(matches!(
            uncached.verify(fresh.reveal()).await,
            Err(KeyError::Revoked)
        ));
    }

    /// A token's key is checked by id through the same memory: revoked, it stops within
    /// the TTL; a key checked by id alone still needs its secret checked when presented.
    #[tokio::test]
    async fn keys_checked_by_id_stop_within_the_ttl_too() {
        let db = database().await;
        let bootstrap = tenants::bootstrap(&db).await.unwrap().unwrap();
        let key = bootstrap.admin_key.reveal().to_owned();
        let id = bootstrap.admin_key.model.id.clone();
        let keys = ApiKeys::new(db.clone(), Duration::from_millis(300), 1 << 20);
        assert!(ClientCredentials::check(&keys, &id).await.is_ok());
        assert_eq!(
            ClientCredentials::check(&keys, "nosuchkey123").await,
            Err(ClientRefused::Revoked)
        );
        let forged = format!("{}{id}_{}", apikeys::KEY_PREFIX, "A".repeat(40));
        assert!(matches!(keys.verify(&forged).await, Err(KeyError::Unknown)));
        assert!(keys.verify(&key).await.is_ok());

        apikeys::revoke(&db, &bootstrap.tenant.id, &id)
            .await
            .unwrap();
        assert!(
            ClientCredentials::check(&keys, &id).await.is_ok(),
            "remembered within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            ClientCredentials::check(&keys, &id).await,
            Err(ClientRefused::Revoked)
        );
        assert!(matches!(keys.verify(&key).await, Err(KeyError::Revoked)));
    }

    #[tokio::test]
    async fn a_key_is_never_remembered_past_its_expiry() {
        let db = database().await;
        let bootstrap = tenants::bootstrap(&db).await.unwrap().unwrap();
        let scopes = "admin".parse().unwrap();
        let expiry = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
        let short = apikeys::create(&db, &bootstrap.tenant.id, "short", &scopes, Some(expiry))
            .await
            .unwrap();
        let keys = ApiKeys::new(db, Duration::from_secs(3600), 1 << 20);
        assert!(keys.verify(short.reveal()).await.is_ok());
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert!(matches!(
            keys.verify(short.reveal()).await,
            Err(KeyError::Expired)
        ));
    }

    #[test]
    fn keys_come_from_bearer_or_x_api_key() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers), None);
        headers.insert("x-api-key", HeaderValue::from_static("jk_live_a_b"));
        assert_eq!(presented(&headers).as_deref(), Some("jk_live_a_b"));
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer jk_live_c_d"),
        );
        assert_eq!(presented(&headers).as_deref(), Some("jk_live_c_d"));
        headers.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(presented(&headers), None);
    }
}
