//! Signing an [`Identity`] into headers at the router, bound to one request for one
//! audience, and verifying it downstream.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use super::{Identity, Scopes};

pub const IDENTITY_HEADER: &str = "junction-identity";
pub const IDENTITY_SIGNATURE_HEADER: &str = "junction-identity-signature";
/// The request id header the router sends downstream; a signature covers its value.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The header format; bumped whenever a field is added, so mixed versions fail clearly.
const VERSION: &str = "v2";
/// Field for "not covered" (never base64url: no encoding is one character long).
const NOT_COVERED: &str = "-";
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
    /// The largest request body a subgraph buffers to check the signature's body digest;
    /// a larger one is refused with a 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

/// The router signs each request just before sending it, so a signature only has to live
/// through transit and the subgraph's accept queue: well under a second normally. Ten
/// seconds leaves room for a stalled proxy or a paused process, and is how long a captured
/// request could be sent again as it was (it opens nothing else).
fn default_max_age() -> Duration {
    Duration::from_secs(10)
}

/// Far above any request the router builds for Junction's subgraphs (event payloads stop at
/// 256 KiB), and a bound on what one request can make a subgraph hold.
fn default_max_body_bytes() -> usize {
    8 << 20
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            previous_signing_keys: Vec::new(),
            max_age: default_max_age(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// Who a signature is for: one subgraph, or one REST route's upstreams. The two kinds never
/// equal each other, so an identity made for a route opens no subgraph, whatever the names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Audience(String);

impl Audience {
    /// A subgraph, by its name in the supergraph.
    pub fn subgraph(name: &str) -> Self {
        Self(format!("subgraph:{name}"))
    }

    /// A REST route's upstreams, by the route's name.
    pub fn route(name: &str) -> Self {
        Self(format!("route:{name}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request a signature is made for (at the router) or was received with (downstream).
/// `None` means "not covered": a REST route's identity covers neither method, target nor
/// body (its body streams through unread), and a subgraph refuses such an identity.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub audience: &'a Audience,
    pub method: Option<&'a str>,
    /// Path and query, as on the request line.
    pub target: Option<&'a str>,
    /// SHA-256 of the body, see [`Binding::digest`].
    pub body: Option<[u8; 32]>,
    /// The `x-request-id` value.
    pub request_id: Option<&'a str>,
}

impl Binding<'_> {
    pub fn digest(body: &[u8]) -> [u8; 32] {
        Sha256::digest(body).into()
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
    #[error(
        "identity header format {found}, but this service reads {VERSION}: the router and this service run different Junction versions"
    )]
    Version { found: String },
    #[error("identity signature does not verify")]
    BadSignature,
    #[error("identity signature is too old ({age_secs} s; at most {max_age_secs} s): replayed?")]
    Stale { age_secs: i64, max_age_secs: u64 },
    #[error("identity signed in the future: clocks disagree")]
    FromTheFuture,
    #[error("identity was made for {found}, not for {expected}")]
    Audience { expected: String, found: String },
    #[error("identity does not cover the request's {0}")]
    NotCovered(&'static str),
    #[error("identity was made for another request: its {0} differs")]
    OtherRequest(&'static str),
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

    /// Returns the two header values: the canonical identity, bound to `request`, and its
    /// signature.
    pub fn sign(
        &self,
        identity: &Identity,
        request: &Binding<'_>,
        now: DateTime<Utc>,
    ) -> (HeaderValue, HeaderValue) {
        let payload = encode(identity, request, now);
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
    pub fn apply(&self, identity: &Identity, request: &Binding<'_>, headers: &mut HeaderMap) {
        let (payload, signature) = self.sign(identity, request, Utc::now());
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
    max_body_bytes: usize,
}

/// An identity whose signature, age and request head were checked; its body digest is next.
#[derive(Debug)]
#[must_use = "the body is not checked yet"]
pub struct BodyToCheck {
    identity: Identity,
    body: Option<[u8; 32]>,
}

impl BodyToCheck {
    /// The identity, when `digest` (of the body received) is the one signed.
    pub fn check(self, digest: [u8; 32]) -> Result<Identity, IdentityError> {
        match self.body {
            None => Err(IdentityError::NotCovered("body")),
            Some(signed) if signed == digest => Ok(self.identity),
            Some(_) => Err(IdentityError::OtherRequest("body")),
        }
    }
}

impl IdentityVerifier {
    /// `keys[0]` is the current key; the rest are accepted during a rotation.
    pub fn new(keys: Vec<IdentityKey>, max_age: Duration) -> Self {
        Self {
            keys,
            max_age,
            max_body_bytes: default_max_body_bytes(),
        }
    }

    /// Bodies over `bytes` are not buffered to be checked (see [`IdentityConfig`]).
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The identity in `headers`, when its signature holds and it was made for exactly
    /// `request`, everything covered included.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        request: &Binding<'_>,
    ) -> Result<Identity, IdentityError> {
        self.verify_at(headers, request, Utc::now())
    }

    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        request: &Binding<'_>,
        now: DateTime<Utc>,
    ) -> Result<Identity, IdentityError> {
        let pending = self.verify_head_at(headers, request, now)?;
        match request.body {
            Some(digest) => pending.check(digest),
            // Nothing of the body was received to check: only an identity covering none fits.
            None if pending.body.is_none() => Ok(pending.identity),
            None => Err(IdentityError::OtherRequest("body")),
        }
    }

    /// Everything but the body (`request.body` is not looked at), so a service reads a body
    /// only for a caller the router signed for.
    pub fn verify_head_at(
        &self,
        headers: &HeaderMap,
        request: &Binding<'_>,
        now: DateTime<Utc>,
    ) -> Result<BodyToCheck, IdentityError> {
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
        // The version first: another format's signature may be fine and its fields not ours.
        let version = payload.split(|b| *b == b'.').next().unwrap_or_default();
        if version != VERSION.as_bytes() {
            let found = match version {
                [b'v', digits @ ..]
                    if (1..=3).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) =>
                {
                    String::from_utf8_lossy(version).into_owned()
                }
                _ => "unknown".to_owned(),
            };
            return Err(IdentityError::Version { found });
        }
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
        let signed = decode(payload)?;
        let age = now.timestamp() - signed.issued_at;
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
        // The credential's own expiry is not checked here: the router's authenticators
        // decided it was valid when they signed (with their leeway), moments ago.
        if signed.audience != request.audience.as_str() {
            return Err(IdentityError::Audience {
                expected: request.audience.to_string(),
                found: signed.audience,
            });
        }
        for (part, signed, received) in [
            ("method", signed.method.as_deref(), request.method),
            ("path", signed.target.as_deref(), request.target),
            (
                "request id",
                signed.request_id.as_deref(),
                request.request_id,
            ),
        ] {
            match (signed, received) {
                (None, Some(_)) => return Err(IdentityError::NotCovered(part)),
                (signed, received) if signed != received => {
                    return Err(IdentityError::OtherRequest(part));
                }
                _ => {}
            }
        }
        Ok(BodyToCheck {
            identity: signed.identity,
            body: signed.body,
        })
    }
}

fn encode(identity: &Identity, request: &Binding<'_>, now: DateTime<Utc>) -> String {
    let expires = identity
        .expires_at
        .map_or_else(|| NOT_COVERED.to_owned(), |t| t.timestamp().to_string());
    let optional = |text: Option<&[u8]>| {
        text.map_or_else(|| NOT_COVERED.to_owned(), |t| URL_SAFE_NO_PAD.encode(t))
    };
    format!(
        "{VERSION}.{}.{}.{}.{expires}.{}.{}.{}.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(&identity.tenant),
        URL_SAFE_NO_PAD.encode(&identity.subject),
        URL_SAFE_NO_PAD.encode(identity.scopes.to_string()),
        now.timestamp(),
        URL_SAFE_NO_PAD.encode(request.audience.as_str()),
        optional(request.method.map(str::as_bytes)),
        optional(request.target.map(str::as_bytes)),
        optional(request.body.as_ref().map(|d| &d[..])),
        optional(request.request_id.map(str::as_bytes)),
    )
}

/// A verified payload's fields.
struct Signed {
    identity: Identity,
    issued_at: i64,
    audience: String,
    method: Option<String>,
    target: Option<String>,
    body: Option<[u8; 32]>,
    request_id: Option<String>,
}

fn decode(payload: &[u8]) -> Result<Signed, IdentityError> {
    let payload =
        std::str::from_utf8(payload).map_err(|_| IdentityError::Malformed("not ASCII"))?;
    let parts: Vec<&str> = payload.split('.').collect();
    let [
        _version,
        tenant,
        subject,
        scopes,
        expires,
        issued,
        audience,
        method,
        target,
        body,
        request_id,
    ] = parts[..]
    else {
        return Err(IdentityError::Malformed(
            "expected eleven dot-separated fields",
        ));
    };
    let bytes = |field: &str| -> Result<Vec<u8>, IdentityError> {
        URL_SAFE_NO_PAD
            .decode(field)
            .map_err(|_| IdentityError::Malformed("field is not base64url"))
    };
    let text = |field: &str| -> Result<String, IdentityError> {
        String::from_utf8(bytes(field)?).map_err(|_| IdentityError::Malformed("field is not UTF-8"))
    };
    let optional = |field: &str| match field {
        NOT_COVERED => Ok(None),
        field => text(field).map(Some),
    };
    let tenant = text(tenant)?;
    if tenant.is_empty() {
        return Err(IdentityError::Malformed("empty tenant"));
    }
    let scopes: Scopes = text(scopes)?
        .parse()
        .map_err(|_| IdentityError::Malformed("invalid scope"))?;
    let expires_at = match expires {
        NOT_COVERED => None,
        secs => Some(timestamp(secs)?),
    };
    let body = match body {
        NOT_COVERED => None,
        digest => Some(
            <[u8; 32]>::try_from(bytes(digest)?)
                .map_err(|_| IdentityError::Malformed("body digest is not SHA-256"))?,
        ),
    };
    Ok(Signed {
        identity: Identity {
            tenant,
            subject: text(subject)?,
            scopes,
            expires_at,
        },
        issued_at: timestamp(issued)?.timestamp(),
        audience: text(audience)?,
        method: optional(method)?,
        target: optional(target)?,
        body,
        request_id: optional(request_id)?,
    })
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

    fn webhooks() -> Audience {
        Audience::subgraph("webhooks")
    }

    const BODY: &[u8] = br#"{"query":"{ endpoints { edges { cursor } } }","variables":{}}"#;

    /// The request the router makes to the webhooks subgraph in these tests.
    fn request(audience: &Audience) -> Binding<'_> {
        Binding {
            audience,
            method: Some("POST"),
            target: Some("/graphql"),
            body: Some(Binding::digest(BODY)),
            request_id: Some("0191b6a2-7d4e-7c1a-9f00-5c3a2b1d0e9f"),
        }
    }

    fn signed_for(
        key: &IdentityKey,
        identity: &Identity,
        request: &Binding<'_>,
        at: DateTime<Utc>,
    ) -> HeaderMap {
        let (payload, signature) = IdentitySigner::new(key.clone()).sign(identity, request, at);
        let mut headers = HeaderMap::new();
        headers.insert(IDENTITY_HEADER, payload);
        headers.insert(IDENTITY_SIGNATURE_HEADER, signature);
        headers
    }

    fn signed(key: &IdentityKey, identity: &Identity, at: DateTime<Utc>) -> HeaderMap {
        signed_for(key, identity, &request(&webhooks()), at)
    }

    fn verifier(key: &IdentityKey) -> IdentityVerifier {
        IdentityVerifier::new(vec![key.clone()], Duration::from_secs(60))
    }

    fn verify(
        verifier: &IdentityVerifier,
        headers: &HeaderMap,
        at: DateTime<Utc>,
    ) -> Result<Identity, IdentityError> {
        verifier.verify_at(headers, &request(&webhooks()), at)
    }

    #[test]
    fn round_trips() {
        let key = IdentityKey::generate();
        let headers = signed(&key, &identity(), now());
        assert_eq!(verify(&verifier(&key), &headers, now()), Ok(identity()));
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
        assert_eq!(verify(&verifier(&key), &headers, now()), Ok(identity));
    }

    /// The header as documented in the module: eleven dot-separated fields after `v2`.
    #[test]
    fn the_header_reads_as_documented() {
        let key = IdentityKey::generate();
        let headers = signed(&key, &identity(), now());
        let payload = headers[IDENTITY_HEADER].to_str().unwrap();
        let fields: Vec<&str> = payload.split('.').collect();
        let text = |field: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(field).unwrap()).unwrap();
        assert_eq!(fields.len(), 11, "{payload}");
        assert_eq!(fields[0], "v2");
        assert_eq!(text(fields[1]), "tenant-a");
        assert_eq!(text(fields[2]), "key_123");
        assert_eq!(text(fields[3]), "admin webhooks:write");
        assert_eq!(fields[4], "2000000000");
        assert_eq!(fields[5], "1800000000");
        assert_eq!(text(fields[6]), "subgraph:webhooks");
        assert_eq!(text(fields[7]), "POST");
        assert_eq!(text(fields[8]), "/graphql");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(fields[9]).unwrap(),
            Binding::digest(BODY)
        );
        assert_eq!(text(fields[10]), "0191b6a2-7d4e-7c1a-9f00-5c3a2b1d0e9f");
    }

    #[test]
    fn missing_headers_are_refused() {
        let key = IdentityKey::generate();
        assert_eq!(
            verify(&verifier(&key), &HeaderMap::new(), now()),
            Err(IdentityError::Missing)
        );
        let mut only_payload = signed(&key, &identity(), now());
        only_payload.remove(IDENTITY_SIGNATURE_HEADER);
        assert!(matches!(
            verify(&verifier(&key), &only_payload, now()),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn forged_with_another_key_is_refused() {
        let forged = signed(&IdentityKey::generate(), &identity(), now());
        assert_eq!(
            verify(&verifier(&IdentityKey::generate()), &forged, now()),
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
            verify(&verifier(&key), &headers, now()),
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
            verify(&verifier(&key), &headers, now()),
            Err(IdentityError::BadSignature)
        );
    }

    /// One leeway decides, the router's: it signed the identity, so its credential was
    /// valid then, even a few seconds past its `exp`.
    #[test]
    fn the_credentials_expiry_is_the_routers_to_judge() {
        let key = IdentityKey::generate();
        let mut within_leeway = identity();
        within_leeway.expires_at = Some(now() - Span::seconds(10));
        let headers = signed(&key, &within_leeway, now());
        assert_eq!(verify(&verifier(&key), &headers, now()), Ok(within_leeway));
    }

    #[test]
    fn replayed_old_signature_is_refused() {
        let key = IdentityKey::generate();
        let headers = signed(&key, &identity(), now());
        let later = now() + Span::seconds(60 + CLOCK_SKEW_SECS + 1);
        assert_eq!(
            verify(&verifier(&key), &headers, later),
            Err(IdentityError::Stale {
                age_secs: 66,
                max_age_secs: 60
            })
        );
        // Still valid just inside the window.
        let inside = now() + Span::seconds(60);
        assert!(verify(&verifier(&key), &headers, inside).is_ok());
    }

    #[test]
    fn the_default_window_is_ten_seconds() {
        let config: IdentityConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.max_age, Duration::from_secs(10));
        let key = IdentityKey::generate();
        let verifier = IdentityVerifier::new(vec![key.clone()], config.max_age);
        let headers = signed(&key, &identity(), now());
        let at = |secs| now() + Span::seconds(secs);
        assert!(verify(&verifier, &headers, at(10 + CLOCK_SKEW_SECS)).is_ok());
        assert!(matches!(
            verify(&verifier, &headers, at(11 + CLOCK_SKEW_SECS)),
            Err(IdentityError::Stale { .. })
        ));
    }

    #[test]
    fn signature_from_the_future_is_refused() {
        let key = IdentityKey::generate();
        let headers = signed(&key, &identity(), now() + Span::seconds(60));
        assert_eq!(
            verify(&verifier(&key), &headers, now()),
            Err(IdentityError::FromTheFuture)
        );
    }

    #[test]
    fn an_identity_for_another_audience_is_refused() {
        let key = IdentityKey::generate();
        let deliveries = Audience::subgraph("deliveries");
        let route = Audience::route("webhooks");
        for audience in [&deliveries, &route] {
            let headers = signed_for(&key, &identity(), &request(audience), now());
            assert_eq!(
                verify(&verifier(&key), &headers, now()),
                Err(IdentityError::Audience {
                    expected: "subgraph:webhooks".into(),
                    found: audience.to_string(),
                })
            );
        }
    }

    /// Each part of the request is covered: the same identity sent with any other part
    /// is refused, naming the part.
    #[test]
    fn an_identity_opens_only_the_request_it_was_made_for() {
        let key = IdentityKey::generate();
        let headers = signed(&key, &identity(), now());
        let audience = webhooks();
        let made_for = request(&audience);
        let other_body = Binding::digest(br#"{"query":"mutation { deleteEndpoint }"}"#);
        for (received, part) in [
            (
                Binding {
                    method: Some("GET"),
                    ..made_for
                },
                "method",
            ),
            (
                Binding {
                    target: Some("/graphql?x=1"),
                    ..made_for
                },
                "path",
            ),
            (
                Binding {
                    request_id: Some("another"),
                    ..made_for
                },
                "request id",
            ),
            (
                Binding {
                    request_id: None,
                    ..made_for
                },
                "request id",
            ),
            (
                Binding {
                    body: Some(other_body),
                    ..made_for
                },
                "body",
            ),
            (
                Binding {
                    body: None,
                    ..made_for
                },
                "body",
            ),
        ] {
            assert_eq!(
                verifier(&key).verify_at(&headers, &received, now()),
                Err(IdentityError::OtherRequest(part)),
                "{part}"
            );
        }
    }

    /// A REST route's identity covers the route and request id only; a service that
    /// checks more refuses it.
    #[test]
    fn what_an_identity_does_not_cover_is_refused_where_it_is_checked() {
        let key = IdentityKey::generate();
        let route = Audience::route("legacy");
        let made_for = Binding {
            audience: &route,
            method: None,
            target: None,
            body: None,
            request_id: Some("r-1"),
        };
        let headers = signed_for(&key, &identity(), &made_for, now());
        assert_eq!(
            verifier(&key).verify_at(&headers, &made_for, now()),
            Ok(identity()),
            "the route's upstream checks what it covers"
        );
        let checking = Binding {
            method: Some("GET"),
            ..made_for
        };
        assert_eq!(
            verifier(&key).verify_at(&headers, &checking, now()),
            Err(IdentityError::NotCovered("method"))
        );
        let pending = verifier(&key)
            .verify_head_at(&headers, &made_for, now())
            .unwrap();
        assert_eq!(
            pending.check(Binding::digest(b"")),
            Err(IdentityError::NotCovered("body"))
        );
    }

    #[test]
    fn another_format_version_is_a_clear_error() {
        let key = IdentityKey::generate();
        let mut headers = HeaderMap::new();
        // A v1 header as the previous release signed it, with a valid signature.
        let v1 = "v1.dGVuYW50LWE.a2V5XzEyMw.YWRtaW4.-.1800000000";
        let mut mac = key.mac();
        mac.update(v1.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        headers.insert(IDENTITY_HEADER, HeaderValue::from_static(v1));
        headers.insert(
            IDENTITY_SIGNATURE_HEADER,
            HeaderValue::from_str(&signature).unwrap(),
        );
        let refused = verify(&verifier(&key), &headers, now()).unwrap_err();
        assert_eq!(refused, IdentityError::Version { found: "v1".into() });
        assert!(refused.to_string().contains("different Junction versions"));
        headers.insert(IDENTITY_HEADER, HeaderValue::from_static("<script>.x"));
        assert_eq!(
            verify(&verifier(&key), &headers, now()),
            Err(IdentityError::Version {
                found: "unknown".into()
            })
        );
    }

    #[test]
    fn previous_key_verifies_during_rotation() {
        let old = IdentityKey::generate();
        let new = IdentityKey::generate();
        let headers = signed(&old, &identity(), now());
        let rotating = IdentityVerifier::new(vec![new, old], Duration::from_secs(60));
        assert_eq!(verify(&rotating, &headers, now()), Ok(identity()));
    }

    #[test]
    fn garbage_headers_are_malformed_not_panics() {
        let key = IdentityKey::generate();
        let mut headers = HeaderMap::new();
        headers.insert(IDENTITY_HEADER, HeaderValue::from_static("v2.x"));
        headers.insert(IDENTITY_SIGNATURE_HEADER, HeaderValue::from_static("!!"));
        assert!(matches!(
            verify(&verifier(&key), &headers, now()),
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
