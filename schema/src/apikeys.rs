//! API keys: issued once in clear, stored as a SHA-256 digest, and turned back into an
//! [`Identity`] when presented.
//!
//! Format: `jk_live_<id>_<secret>`. The prefix makes leaked keys easy to grep for; the id is
//! public and finds the row; the 40-character secret carries 238 bits of entropy, so a fast
//! hash is safe. Digests are compared in constant time, and an unknown id costs the same
//! comparison as a known one.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::entities::api_key;
use crate::identity::{Identity, Scopes};

pub const KEY_PREFIX: &str = "jk_live_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 40;
/// `last_used_at` is written at most this often per key, to keep writes off the hot path.
const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

/// A key as shown to its owner, exactly once. `Debug` hides the secret.
pub struct IssuedApiKey {
    pub model: api_key::Model,
    secret: String,
}

impl IssuedApiKey {
    /// The whole key, to print once and never store.
    pub fn reveal(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for IssuedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedApiKey")
            .field("id", &self.model.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("invalid API key name: use 1 to 100 characters")]
    InvalidName,
    #[error("unknown scope {0:?}; the scopes are:\n{list}", list = crate::identity::known_scopes())]
    UnknownScope(String),
    #[error("no API key {0:?}")]
    NotFound(String),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

/// Why a presented key does not authenticate. The router shows clients one message for all of
/// them; the distinction is for logs and tests.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("not a Junction API key")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("API key revoked")]
    Revoked,
    #[error("API key expired")]
    Expired,
    #[error("stored API key has invalid scopes")]
    CorruptScopes,
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

fn random_alphanumeric(len: usize, lowercase: bool) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .map(char::from)
        .map(|c| if lowercase { c.to_ascii_lowercase() } else { c })
        .take(len)
        .collect()
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Splits `jk_live_<id>_<secret>` into its id, refusing anything else.
fn parse(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    (id.len() == ID_LEN && secret.len() == SECRET_LEN && alnum(id) && alnum(secret)).then_some(id)
}

pub async fn create(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    name: &str,
    scopes: &Scopes,
    expires_at: Option<DateTime<Utc>>,
) -> Result<IssuedApiKey, ApiKeyError> {
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiKeyError::InvalidName);
    }
    if let Some(unknown) = scopes.unknown() {
        return Err(ApiKeyError::UnknownScope(unknown.to_owned()));
    }
    let id = random_alphanumeric(ID_LEN, true);
    let secret = format!(
        "{KEY_PREFIX}{id}_{}",
        random_alphanumeric(SECRET_LEN, false)
    );
    let now = Utc::now();
    let model = api_key::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id.to_owned()),
        name: Set(name.to_owned()),
        scopes: Set(scopes.to_string()),
        key_hash: Set(hex(&digest(&secret))),
        created_at: Set(now),
        updated_at: Set(now),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(IssuedApiKey { model, secret })
}

/// Revokes a key of `tenant_id`. Revoking twice keeps the first revocation time.
pub async fn revoke(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    id: &str,
) -> Result<api_key::Model, ApiKeyError> {
    let key = api_key::Entity::find_by_id(id)
        .filter(api_key::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?
        .ok_or_else(|| ApiKeyError::NotFound(id.to_owned()))?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let now = Utc::now();
    let mut active = key.into_active_model();
    active.revoked_at = Set(Some(now));
    active.updated_at = Set(now);
    Ok(active.update(db).await?)
}

pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: &str,
) -> Result<Vec<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .filter(api_key::Column::TenantId.eq(tenant_id))
        .order_by_asc(api_key::Column::CreatedAt)
        .all(db)
        .await
}

/// The id in a presented key (`jk_live_<id>_<secret>`), when it has the shape of one.
pub fn key_id(presented: &str) -> Option<&str> {
    parse(presented)
}

/// The identity of key `id` as it stands now, without its secret: for credentials traded
/// for a key (OAuth tokens) to stop when the key is revoked or expires.
pub async fn check_id(db: &impl ConnectionTrait, id: &str) -> Result<Identity, AuthError> {
    let now = Utc::now();
    let key = api_key::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AuthError::Unknown)?;
    if key.revoked_at.is_some_and(|at| at <= now) {
        return Err(AuthError::Revoked);
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::Expired);
    }
    Ok(Identity {
        tenant: key.tenant_id,
        subject: key.id,
        scopes: key.scopes.parse().map_err(|_| AuthError::CorruptScopes)?,
        expires_at: key.expires_at,
    })
}

/// Turns a presented key into the caller's identity.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    presented: &str,
) -> Result<Identity, AuthError> {
    authenticate_at(db, presented, Utc::now()).await
}

pub async fn authenticate_at(
    db: &impl ConnectionTrait,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<Identity, AuthError> {
    let id = parse(presented).ok_or(AuthError::Malformed)?;
    let presented_digest = digest(presented);
    let found = api_key::Entity::find_by_id(id).one(db).await?;
    // Compare against a stand-in when the id is unknown, so both paths cost the same.
    let stored = found
        .as_ref()
        .and_then(|key| unhex(&key.key_hash))
        .unwrap_or([0u8; 32]);
    let matches: bool = presented_digest.ct_eq(&stored).into();
    let key = match found {
        Some(key) if matches => key,
        _ => return Err(AuthError::Unknown),
    };
    if key.revoked_at.is_some_and(|at| at <= now) {
        return Err(AuthError::Revoked);
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::Expired);
    }
    let scopes: Scopes = key.scopes.parse().map_err(|_| AuthError::CorruptScopes)?;
    let identity = Identity {
        tenant: key.tenant_id.clone(),
        subject: key.id.clone(),
        scopes,
        expires_at: key.expires_at,
    };
    if key
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_RESOLUTION)
    {
        let mut active = key.into_active_model();
        active.last_used_at = Set(Some(now));
        if let Err(error) = active.update(db).await {
            // Bookkeeping only: the caller is authenticated either way.
            tracing::warn!(%error, "could not record API key use");
        }
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_the_exact_shape() {
        let key = format!("{KEY_PREFIX}abcdefghij12_{}", "A".repeat(SECRET_LEN));
        assert_eq!(parse(&key), Some("abcdefghij12"));
        for bad in [
            "",
            "jk_live_",
            "jk_test_abcdefghij12_AAAA",
            &format!("{KEY_PREFIX}abcdefghij12_{}", "A".repeat(SECRET_LEN - 1)),
            &format!("{KEY_PREFIX}abcdefghij1!_{}", "A".repeat(SECRET_LEN)),
            &format!("{KEY_PREFIX}abcdefghij12_{}_", "A".repeat(SECRET_LEN)),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn digest_round_trips_through_hex() {
        let d = digest("jk_live_x");
        assert_eq!(unhex(&hex(&d)), Some(d));
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn issued_key_debug_hides_the_secret() {
        let now = Utc::now();
        let issued = IssuedApiKey {
            model: api_key::Model {
                id: "abc".into(),
                tenant_id: "t".into(),
                name: "n".into(),
                scopes: String::new(),
                key_hash: String::new(),
                created_at: now,
                updated_at: now,
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
            },
            secret: "jk_live_abc_supersecret".into(),
        };
        assert!(!format!("{issued:?}").contains("supersecret"));
    }
}
