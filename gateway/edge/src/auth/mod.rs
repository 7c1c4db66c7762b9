//! Who is calling: the one chain of credential checks every way into the router shares
//! (GraphQL over HTTP, WebSocket `connection_init`, REST routes with the auth plugin).
//! Each [`Authenticator`] recognizes its own kind of credential and says nothing of the
//! others; [`AnyOf`] asks each in turn.

pub mod api_keys;
pub mod introspection;
pub mod jwt;
pub mod oauth;

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use futures_util::future::BoxFuture;
use junction_schema::Identity;

/// Why a caller has no identity. Every text is written for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Credentials are required and none were presented.
    #[error("credentials required: send an API key or a token as `Authorization: Bearer ...`")]
    Missing,
    /// The credentials are wrong: unknown, expired, revoked, badly signed.
    #[error("{0}")]
    Refused(String),
    /// The credentials could not be checked now (the database, a key set or an
    /// authorization server did not answer); the same request may pass later.
    #[error("{0}")]
    Unavailable(String),
}

impl AuthError {
    /// 401, or 503 when the same credentials may pass later.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing | Self::Refused(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The GraphQL error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing | Self::Refused(_) => "UNAUTHENTICATED",
            Self::Unavailable(_) => "UNAVAILABLE",
        }
    }
}

/// The caller's identity where credentials are required: every way into the router (GraphQL
/// over HTTP and WebSocket, REST routes with the auth plugin) asks this one question.
pub async fn require(
    authenticator: &dyn Authenticator,
    headers: &HeaderMap,
) -> Result<Identity, AuthError> {
    authenticator
        .authenticate(headers)
        .await?
        .ok_or(AuthError::Missing)
}

/// Turns request credentials into an identity. `Ok(None)`: no credentials of this kind were
/// presented.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>>;
}

/// The credential of `Authorization: Bearer <credential>` (the scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// Tries each authenticator in turn: the first that recognizes the credential decides.
pub struct AnyOf(pub Vec<Arc<dyn Authenticator>>);

impl Authenticator for AnyOf {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            for authenticator in &self.0 {
                if let Some(identity) = authenticator.authenticate(headers).await? {
                    return Ok(Some(identity));
                }
            }
            Ok(None)
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn bearer_takes_the_scheme_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("bEaReR  abc "));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }
}
