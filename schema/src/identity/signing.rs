//! Signing an [`Identity`] into headers at the router, and verifying it downstream.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer};
use sha2::Sha256;

use super::{Identity, Scopes};

pub const IDENTITY_HEADER: &str = "junction-identity";
pub const IDENTITY_SIGNATURE_HEADER: &str = "junction-identity-signature";

const VERSION: &str = "v1";
/// Tolerated difference between the router's clock and a subgraph's.
const CLOCK_SKEW_SECS: i64 = 5;
const MIN_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The `[identity]` section of `junction.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The HMAC key shared by the router and every subgraph. When absent, `junction serve`
    /// generates one per process (all parts run in it); split deployments must set it.
    #[serde(default)]
    pub signing_key: Option<IdentityKey>,
    /// Keys still accepted while a rotation rolls out; never used to sign.
    #[serde(default)]
    pub previous_signing_keys: Vec<IdentityKey>,
    /// How long a signed identity stays valid after the router signed it.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(60)
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            previous_signing_keys: Vec::new(),
            max_age: default_max_age(),
        }
    }
}

/// An HMAC key of at least 32 bytes. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityKey(Vec<u8>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidIdentityKey {
    #[error("identity signing key is not valid base64")]
    NotBase64,
    #[error("identity signing key is {0} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort(usize),
}

impl IdentityKey {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; MIN_KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, InvalidIdentityKey> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(InvalidIdentityKey::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// Accepts standard or URL-safe base64, padded or not.
    pub fn from_base64(text: &str) -> Result<Self, InvalidIdentityKey> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| InvalidIdentityKey::NotBase64)?;
        Self::from_bytes(bytes)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; ours are at least 32 bytes.
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKey(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for IdentityKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        IdentityKey::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a request's identity headers were refused. Every variant means 401 and nothing runs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("missing identity: requests must come through the Junction router")]
    Missing,
    #[error("malformed identity header: {0}")]
    Malformed(&'static str),
    #[error("identity signature does not verify")]
    BadSignature,
    #[error("the credential behind this identity expired")]
    Expired,
    #[error("identity signature is too old ({age_secs} s; at most {max_age_secs} s): replayed?")]
    Stale { age_secs: i64, max_age_secs: u64 },
    #[error("identity signed in the future: clocks disagree")]
    FromTheFuture,
}

/// Signs identities at the router.
#[derive(Clone, Debug)]
pub struct IdentitySigner {
    key: IdentityKey,
}

impl IdentitySigner {
    pub fn new(key: IdentityKey) -> Self {
        Self { key }
    }

    /// Returns the two header values: the canonical identity and its signature.
    pub fn sign(&self, identity: &Identity, now: DateTime<Utc>) -> (HeaderValue, HeaderValue) {
        let payload = encode(identity, now);
        let mut mac = self.key.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        // Both strings are base64url, digits, dots and '-': always valid header values.
        (
            HeaderValue::from_str(&payload).expect("ASCII payload"),
            HeaderValue::from_str(&signature).expect("ASCII signature"),
        )
    }

    /// Replaces any identity headers in `headers` (a client's included) with a fresh signature.
    pub fn apply(&self, identity: &Identity, headers: &mut HeaderMap) {
        let (payload, signature) = self.sign(identity, Utc::now());
        headers.insert(IDENTITY_HEADER, payload);
        headers.insert(IDENTITY_SIGNATURE_HEADER, signature);
    }
}

/// Removes identity headers a client may have sent; the router calls it on every request.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    headers.remove(IDENTITY_HEADER);
    headers.remove(IDENTITY_SIGNATURE_HEADER);
}

/// Verifies identities in subgraphs (and anything else behind the router).
#[derive(Clone, Debug)]
pub struct IdentityVerifier {
    keys: Vec<IdentityKey>,
    max_age: Duration,
}

impl IdentityVerifier {
    /// `keys[0]` is the current key; the rest are accepted during a rotation.
    pub fn new(keys: Vec<IdentityKey>, max_age: Duration) -> Self {
        Self { keys, max_age }
    }

    pub fn verify(&self, headers: &HeaderMap) -> Result<Identity, IdentityError> {
        self.verify_at(headers, Utc::now())
    }

    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<Identity, IdentityError> {
        let payload = headers.get(IDENTITY_HEADER);
        let signature = headers.get(IDENTITY_SIGNATURE_HEADER);
        let (payload, signature) = match (payload, signature) {
            (None, None) => return Err(IdentityError::Missing),
            (Some(p), Some(s)) => (p.as_bytes(), s.as_bytes()),
            _ => {
                return Err(IdentityError::Malformed(
                    "identity and signature come together",
                ));
            }
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| IdentityError::Malformed("signature is not base64url"))?;
        // Verify before parsing: nothing of an unsigned payload is looked at.
        let verified = self.keys.iter().any(|key| {
            let mut mac = key.mac();
            mac.update(payload);
            mac.verify_slice(&signature).is_ok() // constant-time comparison
        });
        if !verified {
            return Err(IdentityError::BadSignature);
        }
        let (identity, issued_at) = decode(payload)?;
        let age = now.timestamp() - issued_at;
        if age < -CLOCK_SKEW_SECS {
            return Err(IdentityError::FromTheFuture);
        }
        let max_age_secs = self.max_age.as_secs();
        if age > max_age_secs as i64 + CLOCK_SKEW_SECS {
            return Err(IdentityError::Stale {
                age_secs: age,
                max_age_secs,
            });
        }
        if identity.expires_at.is_some_and(|exp| exp <= now) {
            return Err(IdentityError::Expired);
        }
        Ok(identity)
    }
}

fn encode(identity: &Identity, now: DateTime<Utc>) -> String {
    let expires = identity
        .expires_at
        .map_or_else(|| "-".to_owned(), |t| t.timestamp().to_string());
    format!(
        "{VERSION}.{}.{}.{}.{expires}.{}",
        URL_SAFE_NO_PAD.encode(&identity.tenant),
        URL_SAFE_NO_PAD.encode(&identity.subject),
        URL_SAFE_NO_PAD.encode(identity.scopes.to_string()),
        now.timestamp()
    )
}

fn decode(payload: &[u8]) -> Result<(Identity, i64), IdentityError> {
    let payload =
        std::str::from_utf8(payload).map_err(|_| IdentityError::Malformed("not ASCII"))?;
    let parts: Vec<&str> = payload.split('.').collect();
    let [version, tenant, subject, scopes, expires, issued] = parts[..] else {
        return Err(IdentityError::Malformed(
            "expected six dot-separated fields",
        ));
    };
    if version != VERSION {
        return Err(IdentityError::Malformed("unknown version"));
    }
    let text = |field: &str| -> Result<String, IdentityError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(field)
            .map_err(|_| IdentityError::Malformed("field is not base64url"))?;
        String::from_utf8(bytes).map_err(|_| IdentityError::Malformed("field is not UTF-8"))
    };
    let tenant = text(tenant)?;
    if tenant.is_empty() {
        return Err(IdentityError::Malformed("empty tenant"));
    }
    let scopes: Scopes = text(scopes)?
        .parse()
        .map_err(|_| IdentityError::Malformed("invalid scope"))?;
    let expires_at = match expires {
        "-" => None,
        secs => Some(timestamp(secs)?),
    };
    let issued_at = timestamp(issued)?.timestamp();
    Ok((
        Identity {
            tenant,
            subject: text(subject)?,
            scopes,
            expires_at,
        },
        issued_at,
    ))
}

fn timestamp(secs: &str) -> Result<DateTime<Utc>, IdentityError> {
    secs.parse::<i64>()
        .ok()
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .ok_or(IdentityError::Malformed("invalid timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Span;

    fn identity() -> Identity {
        Identity {
            tenant: "tenant-a".into(),
            subject: "key_123".into(),
            scopes: "admin webhooks:write".parse().unwrap(),
            expires_at: Some(Utc.timestamp_opt(2_000_000_000, 0).unwrap()),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn signed(key: &IdentityKey, identity: &Identity, at: DateTime<Utc>) -> HeaderMap {
        let (payload, signature) = IdentitySigner::new(key.clone()).sign(identity, at);
        let mut headers = HeaderMap::new();
        headers.insert(IDENTITY_HEADER, payload);
        headers.insert(IDENTITY_SIGNATURE_HEADER, signature);
        headers
    }

    fn verifier(key: &IdentityKey) -> IdentityVerifier {
        IdentityVerifier::new(vec![key.clone()], Duration::from_secs(60))
    }

    #[test]
    fn round_trips() {
        let key = IdentityKey::generate();
        let headers = signed(&key, &identity(), now());
        assert_eq!(verifier(&key).verify_at(&headers, now()), Ok(identity()));
    }

    #[test]
    fn round_trips_awkward_subjects_and_no_expiry() {
        let key = IdentityKey::generate();
        let identity = Identity {
            tenant: "t.with.dots".into(),
            subject: "user@example.com|ünïcode.and.dots".into(),
            scopes: Scopes::default(),
            expires_at: None,
        };
        let headers = signed(&key, &identity, now());
        assert_eq!(verifier(&key).verify_at(&headers, now()), Ok(identity));
    }

    #[test]
    fn missing_headers_are_refused() {
        let key = IdentityKey::generate();
        assert_eq!(
            verifier(&key).verify_at(&HeaderMap::new(), now()),
            Err(IdentityError::Missing)
        );
        let mut only_payload = signed(&key, &identity(), now());
        only_payload.remove(IDENTITY_SIGNATURE_HEADER);
        assert!(matches!(
            verifier(&key).verify_at(&only_payload, now()),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn forged_with_another_key_is_refused() {
        let forged = signed(&IdentityKey::generate(), &identity(), now());
        assert_eq!(
            verifier(&IdentityKey::generate()).verify_at(&forged, now()),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn tampered_payload_is_refused() {
        let key = IdentityKey::generate();
        let mut headers = signed(&key, &identity(), now());
        // Swap in tenant B while keeping tenant A's signature.
        let payload = headers[IDENTITY_HEADER].to_str().unwrap().to_owned();
        let tampered = payload.replacen(
            &URL_SAFE_NO_PAD.encode("tenant-a"),
            &URL_SAFE_NO_PAD.encode("tenant-b"),
            1,
        );
        assert_ne!(payload, tampered);
        headers.insert(IDENTITY_HEADER, HeaderValue::from_str(&tampered).unwrap());
        assert_eq!(
            verifier(&key).verify_at(&headers, now()),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature_is_refused() {
        let key = IdentityKey::generate();
        let mut headers = signed(&key, &identity(), now());
        let mut signature = URL_SAFE_NO_PAD
            .decode(headers[IDENTITY_SIGNATURE_HEADER].as_bytes())
            .unwrap();
        signature[0] ^= 1;
        headers.insert(
            IDENTITY_SIGNATURE_HEADER,
            HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(signature)).unwrap(),
        );
        assert_eq!(
            verifier(&key).verify_at(&headers, now()),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn expired_credential_is_refused() {
        let key = IdentityKey::generate();
        let mut expired = identity();
        expired.expires_at = Some(now() - Span::seconds(1));
        let headers = signed(&key, &expired, now());
        assert_eq!(
            verifier(&key).verify_at(&headers, now()),
            Err(IdentityError::Expired)
        );
    }

    #[test]
    fn replayed_old_signature_is_refused() {
        let key = IdentityKey::generate();
        let headers = signed(&key, &identity(), now());
        let later = now() + Span::seconds(60 + CLOCK_SKEW_SECS + 1);
        assert_eq!(
            verifier(&key).verify_at(&headers, later),
            Err(IdentityError::Stale {
                age_secs: 66,
                max_age_secs: 60
            })
        );
        // Still valid just inside the window.
        let inside = now() + Span::seconds(60);
        assert!(verifier(&key).verify_at(&headers, inside).is_ok());
    }

    #[test]
    fn signature_from_the_future_is_refused() {
        let key = IdentityKey::generate();
        let headers = signed(&key, &identity(), now() + Span::seconds(60));
        assert_eq!(
            verifier(&key).verify_at(&headers, now()),
            Err(IdentityError::FromTheFuture)
        );
    }

    #[test]
    fn previous_key_verifies_during_rotation() {
        let old = IdentityKey::generate();
        let new = IdentityKey::generate();
        let headers = signed(&old, &identity(), now());
        let rotating = IdentityVerifier::new(vec![new, old], Duration::from_secs(60));
        assert_eq!(rotating.verify_at(&headers, now()), Ok(identity()));
    }

    #[test]
    fn garbage_headers_are_malformed_not_panics() {
        let key = IdentityKey::generate();
        let mut headers = HeaderMap::new();
        headers.insert(IDENTITY_HEADER, HeaderValue::from_static("v1.x"));
        headers.insert(IDENTITY_SIGNATURE_HEADER, HeaderValue::from_static("!!"));
        assert!(matches!(
            verifier(&key).verify_at(&headers, now()),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn strip_removes_client_supplied_headers() {
        let key = IdentityKey::generate();
        let mut headers = signed(&key, &identity(), now());
        strip_identity_headers(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn keys_must_be_long_base64() {
        assert_eq!(
            IdentityKey::from_base64("c2hvcnQ="),
            Err(InvalidIdentityKey::TooShort(5))
        );
        assert_eq!(
            IdentityKey::from_base64("not base64!"),
            Err(InvalidIdentityKey::NotBase64)
        );
        let key = IdentityKey::generate();
        assert_eq!(IdentityKey::from_base64(&key.to_base64()), Ok(key));
        assert_eq!(
            format!("{:?}", IdentityKey::generate()),
            "IdentityKey(<redacted>)"
        );
    }
}
