//! The router as an OAuth2 authorization server for machine clients: the client-credentials
//! grant (RFC 6749 section 4.4) at `POST /oauth/token`, issuing short-lived JWTs signed with
//! an Ed25519 key of this router, whose public half is at `/.well-known/jwks.json`. The
//! router accepts its own tokens like any other credential. Which clients exist, and what
//! they may do, is for a [`ClientCredentials`] to say.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Utc;
use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use junction_schema::{Identity, Scopes};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthError, Authenticator, bearer};

/// `[gateway.oauth]`: the client-credentials token endpoint of `junction serve`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// The `iss` of the tokens the router issues.
    pub issuer: String,
    /// How long an issued token lives.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            issuer: "junction".into(),
            token_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Checks a client's id and secret; the identity its tokens will carry, or `None`.
pub trait ClientCredentials: Send + Sync {
    fn verify<'a>(&'a self, client_id: &'a str, secret: &'a str)
    -> BoxFuture<'a, Option<Identity>>;

    /// Whether the client still holds valid credentials, asked each time one of its tokens
    /// is presented, so a token stops when its client is revoked (as promptly as the
    /// client's own credentials stop).
    fn check<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<(), ClientRefused>>;
}

/// Why a token's client is not honoured now.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientRefused {
    #[error("the token's client credentials were revoked or have expired")]
    Revoked,
    #[error("credentials cannot be checked right now")]
    Unavailable,
}

pub struct TokenIssuer {
    issuer: String,
    ttl: Duration,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
    clients: Arc<dyn ClientCredentials>,
}

/// PKCS#8 v1 for an Ed25519 private key, up to its 32-byte seed.
pub(crate) const PKCS8_ED25519: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The audience of the router's own tokens.
const AUDIENCE: &str = "junction";

impl TokenIssuer {
    /// An issuer with a fresh signing key: its tokens stop verifying when the process ends,
    /// which for tokens of minutes is what a restart should do.
    pub fn new(issuer: String, ttl: Duration, clients: Arc<dyn ClientCredentials>) -> Self {
        let seed: [u8; 32] = rand::random();
        let mut pkcs8 = PKCS8_ED25519.to_vec();
        pkcs8.extend_from_slice(&seed);
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let kid = URL_SAFE_NO_PAD.encode(&public[..12]);
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public),
            "kid": kid, "alg": "EdDSA", "use": "sig",
        });
        let parsed: Jwk = serde_json::from_value(jwk.clone()).expect("a well-formed JWK");
        Self {
            issuer,
            ttl,
            kid,
            encoding: EncodingKey::from_ed_der(&pkcs8),
            decoding: DecodingKey::from_jwk(&parsed).expect("an Ed25519 JWK"),
            jwk,
            clients,
        }
    }

    pub fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/oauth/token", post(token))
            .route("/.well-known/jwks.json", get(jwks))
            .with_state(self)
    }

    /// A token for `client_id` and its lifetime in seconds: the configured TTL, cut short
    /// by the client's own expiry.
    fn issue(
        &self,
        client_id: &str,
        identity: &Identity,
        scopes: &Scopes,
    ) -> Result<(String, i64), String> {
        let now = Utc::now().timestamp();
        let mut exp = now + self.ttl.as_secs() as i64;
        if let Some(client_expiry) = identity.expires_at {
            exp = exp.min(client_expiry.timestamp());
        }
        let claims = json!({
            "iss": self.issuer, "aud": AUDIENCE, "sub": identity.subject,
            "client_id": client_id,
            "tenant": identity.tenant, "scope": scopes.to_string(),
            "iat": now, "nbf": now, "exp": exp,
            "jti": random_id(),
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())?;
        Ok((token, exp - now))
    }

    /// The identity in one of this router's tokens and the client it was issued to (its
    /// signature and times checked, not the client); `Ok(None)` for a token it did not issue.
    fn verify(&self, token: &str) -> Result<Option<(Identity, String)>, String> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(None);
        };
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Ok(None);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<Value>(token, &self.decoding, &validation)
            .map_err(|_| "invalid or expired token".to_owned())?
            .claims;
        let text = |name: &str| claims[name].as_str().unwrap_or_default().to_owned();
        let client_id = claims["client_id"]
            .as_str()
            .ok_or("invalid or expired token")?
            .to_owned();
        let identity = Identity {
            tenant: text("tenant"),
            subject: text("sub"),
            scopes: text("scope").parse().map_err(|_| "invalid token scopes")?,
            expires_at: claims["exp"]
                .as_i64()
                .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0)),
        };
        Ok(Some((identity, client_id)))
    }
}

fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Authenticator for TokenIssuer {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            let Some(token) = bearer(headers) else {
                return Ok(None);
            };
            let Some((identity, client_id)) = self.verify(token).map_err(AuthError::Refused)?
            else {
                return Ok(None);
            };
            // The token lives no longer than the credentials it was traded for.
            self.clients
                .check(&client_id)
                .await
                .map_err(|refused| match refused {
                    ClientRefused::Revoked => AuthError::Refused(refused.to_string()),
                    ClientRefused::Unavailable => AuthError::Unavailable(refused.to_string()),
                })?;
            Ok(Some(identity))
        })
    }
}

/// An RFC 6749 error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"junction\""),
        );
    }
    response
}

/// Client id and secret from HTTP Basic (preferred by RFC 6749) or the form body.
fn client_of(headers: &HeaderMap, form: &[(String, String)]) -> Option<(String, String)> {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(basic.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        return Some((id.to_owned(), secret.to_owned()));
    }
    Some((field("client_id")?, field("client_secret")?))
}

async fn token(
    State(issuer): State<Arc<TokenIssuer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
    }
    let Some((client_id, secret)) = client_of(&headers, &form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client credentials are missing",
        );
    };
    let Some(identity) = issuer.clients.verify(&client_id, &secret).await else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    };
    // A subset of the client's scopes may be asked for (an admin client may ask for any
    // known scope: admin holds them all); none asked means all of them.
    let scopes = match field("scope").filter(|s| !s.trim().is_empty()) {
        None => identity.scopes.clone(),
        Some(asked) => {
            let asked: Scopes = match asked.parse() {
                Ok(scopes) => scopes,
                Err(_) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "malformed scope",
                    );
                }
            };
            if !asked.iter().all(|s| identity.scopes.grants(s)) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "the client does not hold every scope asked for",
                );
            }
            asked
        }
    };
    match issuer.issue(&client_id, &identity, &scopes) {
        Ok((token, expires_in)) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": scopes.to_string(),
            })),
        )
            .into_response(),
        Err(why) => {
            tracing::error!(error = %why, "cannot sign a token");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot issue a token",
            )
        }
    }
}

async fn jwks(State(issuer): State<Arc<TokenIssuer>>) -> Response {
    axum::Json(json!({"keys": [issuer.jwk]})).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::http::HeaderValue;
    use chrono::DateTime;

    use super::*;

    /// One client, `key_1` with secret `secret`, that can be revoked.
    struct OneClient {
        revoked: AtomicBool,
        expires_at: Option<DateTime<Utc>>,
    }

    impl ClientCredentials for OneClient {
        fn verify<'a>(
            &'a self,
            client_id: &'a str,
            secret: &'a str,
        ) -> BoxFuture<'a, Option<Identity>> {
            let valid = client_id == "key_1" && secret == "secret";
            Box::pin(async move {
                valid.then(|| Identity {
                    tenant: "tenant-a".into(),
                    subject: "key_1".into(),
                    scopes: "webhooks:read".parse().unwrap(),
                    expires_at: self.expires_at,
                })
            })
        }

        fn check<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<(), ClientRefused>> {
            let valid = client_id == "key_1" && !self.revoked.load(Ordering::SeqCst);
            Box::pin(async move { valid.then_some(()).ok_or(ClientRefused::Revoked) })
        }
    }

    fn issuer(client: Arc<OneClient>) -> TokenIssuer {
        TokenIssuer::new(
            "https://junction.test".into(),
            Duration::from_secs(900),
            client,
        )
    }

    fn bearing(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn a_token_stops_when_its_client_is_revoked() {
        let client = Arc::new(OneClient {
            revoked: AtomicBool::new(false),
            expires_at: None,
        });
        let issuer = issuer(Arc::clone(&client));
        let identity = client.verify("key_1", "secret").await.unwrap();
        let (token, expires_in) = issuer.issue("key_1", &identity, &identity.scopes).unwrap();
        assert_eq!(expires_in, 900);
        let accepted = issuer.authenticate(&bearing(&token)).await;
        assert_eq!(accepted.unwrap().unwrap().subject, "key_1");

        client.revoked.store(true, Ordering::SeqCst);
        let refused = issuer.authenticate(&bearing(&token)).await;
        assert_eq!(
            refused,
            Err(AuthError::Refused(
                "the token's client credentials were revoked or have expired".to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn a_token_never_outlives_its_clients_expiry() {
        let expiry = Utc::now() + chrono::Duration::seconds(60);
        let client = Arc::new(OneClient {
            revoked: AtomicBool::new(false),
            expires_at: Some(expiry),
        });
        let issuer = issuer(Arc::clone(&client));
        let identity = client.verify("key_1", "secret").await.unwrap();
        let (token, expires_in) = issuer.issue("key_1", &identity, &identity.scopes).unwrap();
        assert!((55..=60).contains(&expires_in), "{expires_in}");
        let (identity, client_id) = issuer.verify(&token).unwrap().unwrap();
        assert_eq!(client_id, "key_1");
        assert_eq!(
            identity.expires_at.map(|at| at.timestamp()),
            Some(expiry.timestamp())
        );
    }
}
