//! JWT bearer tokens (`[gateway.jwt]`): signatures checked with keys from the configuration
//! or a JWKS URL (cached; fetched again on an unknown `kid`, at most once per cool-down; the
//! cached keys keep working while the JWKS endpoint is down), `iss`, `aud`, `exp` and `nbf`
//! checked with a small leeway, and claims mapped to the caller's identity.
//!
//! Only the algorithms configured are accepted, and each key verifies only its own algorithm:
//! `alg: none` and algorithm confusion (an HMAC token "signed" with a public key) are refused.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use junction_schema::{Identity, Scopes};
use serde::Deserialize;
use serde_json::Value;

use super::{AuthError, Authenticator, bearer};

/// `[gateway.jwt]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// Tokens must name one of these in `aud`.
    pub audiences: Vec<String>,
    /// Accepted algorithms, e.g. `["RS256", "ES256", "EdDSA"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Where the issuer publishes its public keys.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Keys given here: shared HMAC secrets (`secret`) or PEM public keys (`pem`).
    #[serde(default)]
    pub keys: Vec<StaticKey>,
    /// Allowed clock skew for `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// The claim that names the tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Fetched again no sooner than this after the last fetch, even for an unknown `kid`.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub jwks_cooldown: Duration,
    /// A JWKS document larger than this is refused (and the keys known kept).
    #[serde(default = "default_jwks_max_bytes")]
    pub jwks_max_bytes: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKey {
    /// Matched against the token's `kid`; a key without one matches any.
    #[serde(default)]
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub pem: Option<String>,
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_max_bytes() -> usize {
    1024 * 1024
}

#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("gateway.jwt: key {0}: give exactly one of `secret` or `pem`")]
    KeyMaterial(usize),
    #[error("gateway.jwt: key {0}: {1}")]
    BadKey(usize, String),
    #[error("gateway.jwt: no keys and no jwks_url: no token could ever verify")]
    NoKeys,
    #[error("gateway.jwt: cannot build the JWKS client: {0}")]
    Client(String),
}

/// A response's body, refused past `limit` bytes (read as it arrives, so a huge or endless
/// body costs at most `limit`).
async fn read_at_most(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("the document is larger than {limit} bytes");
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A verification key and the one algorithm it verifies.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

pub struct JwtAuthenticator {
    config: JwtConfig,
    configured: Vec<Key>,
    fetched: RwLock<Vec<Key>>,
    last_fetch: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl JwtAuthenticator {
    pub fn new(config: JwtConfig) -> Result<Self, JwtConfigError> {
        let mut configured = Vec::new();
        for (i, key) in config.keys.iter().enumerate() {
            let decoding = match (&key.secret, &key.pem) {
                (Some(secret), None) => DecodingKey::from_secret(secret.as_bytes()),
                (None, Some(pem)) => match key.algorithm {
                    Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                        DecodingKey::from_rsa_pem(pem.as_bytes())
                    }
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                    other => {
                        return Err(JwtConfigError::BadKey(
                            i,
                            format!("{other:?} takes a `secret`, not a `pem`"),
                        ));
                    }
                }
                .map_err(|e| JwtConfigError::BadKey(i, e.to_string()))?,
                _ => return Err(JwtConfigError::KeyMaterial(i)),
            };
            configured.push(Key {
                kid: key.kid.clone(),
                algorithm: key.algorithm,
                key: decoding,
            });
        }
        if configured.is_empty() && config.jwks_url.is_none() {
            return Err(JwtConfigError::NoKeys);
        }
        let http =
            crate::clients::plain_client(Duration::from_secs(5)).map_err(JwtConfigError::Client)?;
        Ok(Self {
            config,
            configured,
            fetched: RwLock::new(Vec::new()),
            last_fetch: Mutex::new(None),
            http,
        })
    }

    /// Fetches the JWKS unless it was fetched within the cool-down; keeps the old keys when
    /// the endpoint fails.
    async fn refresh(&self) {
        let Some(url) = &self.config.jwks_url else {
            return;
        };
        {
            let mut last = self.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.config.jwks_cooldown) {
                return;
            }
            *last = Some(Instant::now());
        }
        let fetched = async {
            let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status().as_u16()));
            }
            let body = read_at_most(response, self.config.jwks_max_bytes).await?;
            let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            Ok::<_, String>(set)
        }
        .await;
        match fetched {
            Ok(set) => {
                let keys: Vec<Key> = set
                    .keys
                    .iter()
                    .filter_map(|jwk| {
                        let algorithm = jwk
                            .common
                            .key_algorithm
                            .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                            .or_else(|| implied_algorithm(jwk))?;
                        Some(Key {
                            kid: jwk.common.key_id.clone(),
                            algorithm,
                            key: DecodingKey::from_jwk(jwk).ok()?,
                        })
                    })
                    .collect();
                tracing::info!(url = %url, keys = keys.len(), "fetched the JWKS");
                *self.fetched.write().unwrap_or_else(|p| p.into_inner()) = keys;
            }
            Err(why) => {
                tracing::warn!(url = %url, error = %why, "cannot fetch the JWKS; keeping the keys already known");
            }
        }
    }

    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<Key> {
        let matches = |key: &&Key| {
            key.algorithm == algorithm
                && match (&key.kid, kid) {
                    (Some(mine), Some(theirs)) => mine == theirs,
                    (None, _) => true,
                    (Some(_), None) => false,
                }
        };
        self.configured.iter().find(matches).cloned().or_else(|| {
            self.fetched
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(matches)
                .cloned()
        })
    }

    /// The identity in `token`, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Identity, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            ));
        }
        let kid = header.kid.as_deref();
        let key = match self.find(kid, header.alg) {
            Some(key) => key,
            None => {
                self.refresh().await;
                self.find(kid, header.alg)
                    .ok_or("the token's signing key is unknown")?
            }
        };
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<HashMap<String, Value>>(token, &key.key, &validation)
            .map_err(|e| refusal(&e))?
            .claims;
        let tenant = claims
            .get(&self.config.tenant_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the token has no `{}` claim", self.config.tenant_claim))?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let scope = |name: &str| claims.get(name).filter(|v| !v.is_null());
        let scopes: Vec<String> = match scope("scope").or_else(|| scope("scp")) {
            Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|exp| DateTime::<Utc>::from_timestamp(exp, 0));
        Ok(Identity {
            tenant: tenant.to_owned(),
            subject: subject.to_owned(),
            scopes: Scopes::new(scopes).map_err(|e| e.to_string())?,
            expires_at,
        })
    }
}

/// The algorithm a JWK without `alg` can only mean.
fn implied_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        _ => None,
    }
}

/// What a client is told about a refused token: enough to fix it, nothing more.
fn refusal(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        _ => "the token is invalid".into(),
    }
}

/// A bearer credential that looks like a JWT (three dot-separated parts).
fn bearer_jwt(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).filter(|token| token.split('.').count() == 3)
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            match bearer_jwt(headers) {
                None => Ok(None),
                Some(token) => self
                    .verify(token)
                    .await
                    .map(Some)
                    .map_err(AuthError::Refused),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::get;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "a shared secret of the test, long enough";

    fn config() -> JwtConfig {
        JwtConfig {
            issuer: "https://issuer.test".into(),
            audiences: vec!["junction".into()],
            algorithms: vec![Algorithm::HS256, Algorithm::EdDSA],
            jwks_url: None,
            keys: vec![StaticKey {
                kid: None,
                algorithm: Algorithm::HS256,
                secret: Some(SECRET.into()),
                pem: None,
            }],
            leeway: Duration::from_secs(30),
            tenant_claim: "tenant".into(),
            jwks_cooldown: Duration::ZERO,
            jwks_max_bytes: 1024 * 1024,
        }
    }

    fn claims(changes: Value) -> Value {
        let now = Utc::now().timestamp();
        let mut claims = json!({
            "iss": "https://issuer.test", "aud": "junction", "sub": "client-7",
            "tenant": "acme", "scope": "webhooks:read deliveries:read",
            "iat": now, "nbf": now, "exp": now + 300,
        });
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    fn hs256(claims: &Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// An Ed25519 key: the PKCS#8 document to sign with, and its public JWK.
    fn ed25519(seed: u8, kid: &str) -> (EncodingKey, Value) {
        let seed = [seed; 32];
        let mut pkcs8 = super::super::oauth::PKCS8_ED25519.to_vec();
        pkcs8.extend_from_slice(&seed);
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public), "kid": kid, "alg": "EdDSA", "use": "sig"});
        (EncodingKey::from_ed_der(&pkcs8), jwk)
    }

    fn eddsa(claims: &Value, key: &EncodingKey, kid: &str) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[derive(Clone, Default)]
    struct Jwks {
        set: Arc<Mutex<Value>>,
        down: Arc<std::sync::atomic::AtomicBool>,
        fetches: Arc<AtomicUsize>,
    }

    async fn serve_jwks(jwks: Jwks) -> String {
        async fn answer(State(jwks): State<Jwks>) -> Result<Json<Value>, StatusCode> {
            jwks.fetches.fetch_add(1, Ordering::SeqCst);
            if jwks.down.load(Ordering::SeqCst) {
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
            Ok(Json(jwks.set.lock().unwrap().clone()))
        }
        let app = axum::Router::new()
            .route("/jwks.json", get(answer))
            .with_state(jwks);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn a_valid_token_maps_to_an_identity() {
        let jwt = JwtAuthenticator::new(config()).unwrap();
        let identity = jwt
            .verify(&hs256(&claims(json!({})), SECRET))
            .await
            .unwrap();
        assert_eq!(identity.tenant, "acme");
        assert_eq!(identity.subject, "client-7");
        assert!(identity.scopes.contains("deliveries:read"));
        assert!(identity.expires_at.is_some());
        // Scopes as an array work too.
        let identity = jwt
            .verify(&hs256(
                &claims(json!({"scope": null, "scp": ["a:b"]})),
                SECRET,
            ))
            .await
            .unwrap();
        assert!(identity.scopes.contains("a:b"));
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_with_their_reason() {
        let jwt = JwtAuthenticator::new(config()).unwrap();
        let now = Utc::now().timestamp();
        for (changes, why) in [
            (json!({"exp": now - 120}), "the token has expired"),
            (json!({"nbf": now + 120}), "the token is not valid yet"),
            (
                json!({"aud": "someone-else"}),
                "the token is for another audience",
            ),
            (
                json!({"iss": "https://evil.test"}),
                "the token is from another issuer",
            ),
            (json!({"tenant": null}), "the token has no `tenant` claim"),
        ] {
            let refused = jwt.verify(&hs256(&claims(changes.clone()), SECRET)).await;
            assert_eq!(refused.unwrap_err(), why, "{changes}");
        }
        // Within the leeway is fine.
        assert!(
            jwt.verify(&hs256(&claims(json!({"exp": now - 10})), SECRET))
                .await
                .is_ok()
        );
        let forged = hs256(&claims(json!({})), "another secret entirely, also long");
        assert_eq!(
            jwt.verify(&forged).await.unwrap_err(),
            "the token's signature does not verify"
        );
        // alg: none, unsigned.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
        assert!(jwt.verify(&format!("{header}.{body}.")).await.is_err());
        assert!(jwt.verify("not a token").await.is_err());
    }

    #[tokio::test]
    async fn algorithm_confusion_is_refused() {
        // Only EdDSA is accepted, with keys from a JWKS: an HMAC token "signed" with the
        // public key's bytes is refused before any key is used.
        let (_, public) = ed25519(1, "k1");
        let jwks = Jwks::default();
        *jwks.set.lock().unwrap() = json!({"keys": [public.clone()]});
        let config = JwtConfig {
            algorithms: vec![Algorithm::EdDSA],
            keys: vec![],
            jwks_url: Some(serve_jwks(jwks).await),
            ..config()
        };
        let jwt = JwtAuthenticator::new(config).unwrap();
        let x = public["x"].as_str().unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let confused = jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(x.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            jwt.verify(&confused).await.unwrap_err(),
            "tokens signed with HS256 are not accepted"
        );
    }

    #[tokio::test]
    async fn jwks_keys_rotate_and_survive_the_endpoint_going_down() {
        let (k1, public1) = ed25519(1, "k1");
        let (k2, public2) = ed25519(2, "k2");
        let (k3, _) = ed25519(3, "k3");
        let jwks = Jwks::default();
        *jwks.set.lock().unwrap() = json!({"keys": [public1]});
        let config = JwtConfig {
            keys: vec![],
            jwks_url: Some(serve_jwks(jwks.clone()).await),
            ..config()
        };
        let jwt = JwtAuthenticator::new(config).unwrap();
        let token = |key: &EncodingKey, kid: &str| eddsa(&claims(json!({})), key, kid);

        assert!(
            jwt.verify(&token(&k1, "k1")).await.is_ok(),
            "fetched on first use"
        );
        assert!(jwt.verify(&token(&k1, "k1")).await.is_ok());
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "cached");

        // The issuer rotates: an unknown kid makes the router fetch again.
        *jwks.set.lock().unwrap() = json!({"keys": [public2]});
        assert!(jwt.verify(&token(&k2, "k2")).await.is_ok());
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);

        // The endpoint goes down: known keys keep working; unknown ones are refused.
        jwks.down.store(true, Ordering::SeqCst);
        assert!(jwt.verify(&token(&k2, "k2")).await.is_ok());
        assert_eq!(
            jwt.verify(&token(&k3, "k3")).await.unwrap_err(),
            "the token's signing key is unknown"
        );
        // A token signed by k3 but claiming k2 does not verify.
        assert_eq!(
            jwt.verify(&token(&k3, "k2")).await.unwrap_err(),
            "the token's signature does not verify"
        );
    }

    #[tokio::test]
    async fn a_jwks_document_over_its_limit_is_refused_and_the_known_keys_kept() {
        let (k1, public1) = ed25519(1, "k1");
        let (k2, public2) = ed25519(2, "k2");
        let jwks = Jwks::default();
        *jwks.set.lock().unwrap() = json!({"keys": [public1]});
        let jwt = JwtAuthenticator::new(JwtConfig {
            keys: vec![],
            jwks_url: Some(serve_jwks(jwks.clone()).await),
            jwks_max_bytes: 4096,
            ..config()
        })
        .unwrap();
        let token = |key: &EncodingKey, kid: &str| eddsa(&claims(json!({})), key, kid);
        assert!(jwt.verify(&token(&k1, "k1")).await.is_ok());
        // The next document holds the new key among 10,000 junk ones: refused whole.
        let junk: Vec<Value> = (0..10_000)
            .map(|i| json!({"kty": "oct", "kid": format!("junk-{i}"), "k": "AAAA"}))
            .collect();
        let mut keys = vec![public2];
        keys.extend(junk);
        *jwks.set.lock().unwrap() = json!({ "keys": keys });
        assert_eq!(
            jwt.verify(&token(&k2, "k2")).await.unwrap_err(),
            "the token's signing key is unknown"
        );
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
        assert!(jwt.verify(&token(&k1, "k1")).await.is_ok(), "kept");
    }

    #[tokio::test]
    async fn unknown_kids_do_not_hammer_the_jwks_endpoint() {
        let (k1, public1) = ed25519(1, "k1");
        let (k9, _) = ed25519(9, "k9");
        let jwks = Jwks::default();
        *jwks.set.lock().unwrap() = json!({"keys": [public1]});
        let config = JwtConfig {
            keys: vec![],
            jwks_url: Some(serve_jwks(jwks.clone()).await),
            jwks_cooldown: Duration::from_secs(3600),
            jwks_max_bytes: 1024 * 1024,
            ..config()
        };
        let jwt = JwtAuthenticator::new(config).unwrap();
        assert!(
            jwt.verify(&eddsa(&claims(json!({})), &k1, "k1"))
                .await
                .is_ok()
        );
        for _ in 0..5 {
            assert!(
                jwt.verify(&eddsa(&claims(json!({})), &k9, "k9"))
                    .await
                    .is_err()
            );
        }
        assert_eq!(
            jwks.fetches.load(Ordering::SeqCst),
            1,
            "one fetch per cool-down"
        );
    }

    #[tokio::test]
    async fn only_jwt_shaped_bearers_are_claimed() {
        let jwt = JwtAuthenticator::new(config()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer jk_live_abc_def".parse().unwrap());
        assert_eq!(
            jwt.authenticate(&headers).await,
            Ok(None),
            "an API key is not ours"
        );
        headers.insert(
            "authorization",
            format!("Bearer {}", hs256(&claims(json!({})), SECRET))
                .parse()
                .unwrap(),
        );
        assert!(jwt.authenticate(&headers).await.unwrap().is_some());
    }
}
