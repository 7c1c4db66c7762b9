//! The router's credentials check for `junction serve`: Junction API keys, looked up in the
//! database; the same keys are the client credentials of the OAuth2 token endpoint (client id:
//! the key's id; secret: the whole key).

use futures_util::future::{BoxFuture, FutureExt};
use junction_gateway::oauth::ClientCredentials;
use junction_gateway::router::{Authenticator, bearer};
use junction_schema::Identity;
use junction_schema::apikeys;
use sea_orm::DatabaseConnection;

pub struct ApiKeys {
    pub db: DatabaseConnection,
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
    ) -> BoxFuture<'a, Result<Option<Identity>, String>> {
        async move {
            let Some(key) = presented(headers) else {
                return Ok(None);
            };
            match apikeys::authenticate(&self.db, &key).await {
                Ok(identity) => Ok(Some(identity)),
                Err(apikeys::AuthError::Database(error)) => {
                    tracing::error!(%error, "cannot check an API key");
                    Err("credentials cannot be checked right now".to_owned())
                }
                Err(reason) => {
                    // One answer for every refusal: no hints about which keys exist.
                    tracing::debug!(%reason, "refused API key");
                    Err("invalid API key".to_owned())
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
            match apikeys::authenticate(&self.db, secret).await {
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
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::presented;

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
