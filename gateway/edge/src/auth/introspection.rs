//! Opaque tokens checked with an external authorization server (`[gateway.introspection]`,
//! RFC 7662): the router posts the token to the introspection endpoint with its own client
//! credentials and trusts the answer while it is fresh (a short cache, never past the
//! token's `exp`). Junction API keys (`jk_...`) are left to the API-key check.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use junction_schema::{Identity, Scopes};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{AuthError, Authenticator, bearer};
use crate::cache::BoundedCache;

/// `[gateway.introspection]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// How long an answer is trusted.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(30)
}

type Answer = Result<Identity, AuthError>;

pub struct Introspection {
    config: IntrospectionConfig,
    http: reqwest::Client,
    /// Answers by token digest, until they expire; bounded by bytes, so tokens sprayed at
    /// the router push out only each other and the answers least used.
    cache: BoundedCache<[u8; 32], (Instant, Answer)>,
}

impl Introspection {
    /// Answers cached in at most `cache_bytes`.
    pub fn new(config: IntrospectionConfig, cache_bytes: u64) -> Result<Self, String> {
        Ok(Self {
            http: crate::clients::plain_client(Duration::from_secs(5))?,
            config,
            cache: BoundedCache::new(cache_bytes, 256),
        })
    }

    async fn introspect(&self, token: &str) -> Answer {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((until, answer)) = self.cache.get(&key)
            && until > Instant::now()
        {
            return answer;
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let response = self
            .http
            .post(&self.config.url)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        // The authorization server being unreachable is not the client's fault, and not
        // cached: the next request asks again.
        let unavailable = || AuthError::Unavailable("the token cannot be checked right now".into());
        let response = response.map_err(|_| unavailable())?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "the introspection endpoint refused the router");
            return Err(unavailable());
        }
        let claims: Value = response.json().await.map_err(|_| unavailable())?;
        let answer = self.identity(&claims);
        let expires = claims["exp"]
            .as_i64()
            .and_then(|exp| DateTime::<Utc>::from_timestamp(exp, 0))
            .and_then(|exp| (exp - Utc::now()).to_std().ok())
            .unwrap_or(self.config.cache_ttl);
        let bytes = match &answer {
            Ok(identity) => {
                identity.tenant.len() + identity.subject.len() + identity.scopes.to_string().len()
            }
            Err(why) => why.to_string().len(),
        };
        self.cache.insert(
            key,
            (
                Instant::now() + self.config.cache_ttl.min(expires),
                answer.clone(),
            ),
            (32 + std::mem::size_of::<(Instant, Answer)>() + bytes) as u64,
        );
        answer
    }

    fn identity(&self, claims: &Value) -> Answer {
        if claims["active"] != Value::Bool(true) {
            return Err(AuthError::Refused("the token is not active".into()));
        }
        let tenant = claims[&self.config.tenant_claim].as_str().ok_or_else(|| {
            AuthError::Refused(format!(
                "the token has no `{}` claim",
                self.config.tenant_claim
            ))
        })?;
        let scopes: Vec<&str> = claims["scope"]
            .as_str()
            .map(|s| s.split_whitespace().collect())
            .unwrap_or_default();
        Ok(Identity {
            tenant: tenant.to_owned(),
            subject: claims["sub"]
                .as_str()
                .or_else(|| claims["client_id"].as_str())
                .unwrap_or_default()
                .to_owned(),
            scopes: Scopes::new(scopes).map_err(|e| AuthError::Refused(e.to_string()))?,
            expires_at: claims["exp"]
                .as_i64()
                .and_then(|exp| DateTime::from_timestamp(exp, 0)),
        })
    }
}

impl Authenticator for Introspection {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            let token = bearer(headers).filter(|t| !t.starts_with("jk_"));
            match token {
                None => Ok(None),
                Some(token) => self.introspect(token).await.map(Some),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::routing::post;
    use serde_json::json;

    use super::*;

    async fn server(calls: Arc<AtomicUsize>) -> String {
        async fn answer(
            State(calls): State<Arc<AtomicUsize>>,
            headers: HeaderMap,
            body: String,
        ) -> axum::Json<Value> {
            calls.fetch_add(1, Ordering::SeqCst);
            let authorized = headers
                .get("authorization")
                .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("Basic "));
            let active = authorized && body.contains("token=good");
            axum::Json(if active {
                json!({"active": true, "sub": "svc-1", "tenant": "acme", "scope": "webhooks:read",
                       "exp": Utc::now().timestamp() + 600})
            } else {
                json!({"active": false})
            })
        }
        let app = axum::Router::new()
            .route("/introspect", post(answer))
            .with_state(calls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn active_tokens_become_identities_and_answers_are_cached() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let calls = Arc::new(AtomicUsize::new(0));
        let introspection = Introspection::new(
            IntrospectionConfig {
                url: server(Arc::clone(&calls)).await,
                client_id: "router".into(),
                client_secret: "s3cret".into(),
                tenant_claim: "tenant".into(),
                cache_ttl: Duration::from_secs(60),
            },
            1 << 20,
        )
        .unwrap();
        let identity = introspection
            .authenticate(&bearer("good"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (identity.tenant.as_str(), identity.subject.as_str()),
            ("acme", "svc-1")
        );
        assert!(identity.scopes.contains("webhooks:read"));
        assert!(introspection.authenticate(&bearer("good")).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the answer was cached");
        assert_eq!(
            introspection.authenticate(&bearer("revoked")).await,
            Err(AuthError::Refused("the token is not active".to_owned()))
        );
        // API keys are not sent out.
        assert_eq!(
            introspection.authenticate(&bearer("jk_live_a_b")).await,
            Ok(None)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_not_a_refusal_of_the_token() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/introspect", closed.local_addr().unwrap());
        drop(closed);
        let introspection = Introspection::new(
            IntrospectionConfig {
                url,
                client_id: "router".into(),
                client_secret: "s3cret".into(),
                tenant_claim: "tenant".into(),
                cache_ttl: Duration::from_secs(60),
            },
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            introspection.authenticate(&bearer("good")).await,
            Err(AuthError::Unavailable(
                "the token cannot be checked right now".to_owned()
            ))
        );
    }
}
