//! The axum layer every subgraph puts in front of its routes, and the `Identity` extractor.
//!
//! The layer verifies the router's signature and refuses the request with a GraphQL-shaped 401
//! before the inner service sees it. Handlers then take `Identity` as an extractor.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::{Identity, IdentityVerifier};
use crate::error_code::{ErrorCode, RequestError};

#[derive(Clone, Debug)]
pub struct RequireIdentityLayer {
    verifier: Arc<IdentityVerifier>,
}

impl RequireIdentityLayer {
    pub fn new(verifier: Arc<IdentityVerifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for RequireIdentityLayer {
    type Service = RequireIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireIdentity {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequireIdentity<S> {
    inner: S,
    verifier: Arc<IdentityVerifier>,
}

impl<S> Service<Request> for RequireIdentity<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.verifier.verify(request.headers()) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                futures_util::future::Either::Right(self.inner.call(request))
            }
            Err(error) => {
                tracing::debug!(%error, "refused request without a valid identity");
                let response = RequestError::new(ErrorCode::Unauthenticated, error.to_string())
                    .into_response();
                futures_util::future::Either::Left(std::future::ready(Ok(response)))
            }
        }
    }
}

/// Handlers take the verified identity as an argument. Without the layer in front, every
/// request is refused: identity is never read from unverified headers.
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Identity>().cloned().ok_or_else(|| {
            RequestError::new(
                ErrorCode::Unauthenticated,
                "no verified identity on this request",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use chrono::Utc;
    use tower::ServiceExt;

    use super::*;
    use crate::identity::{
        IDENTITY_HEADER, IDENTITY_SIGNATURE_HEADER, IdentityKey, IdentitySigner,
    };

    fn app(key: &IdentityKey, calls: Arc<std::sync::atomic::AtomicUsize>) -> Router {
        let verifier = Arc::new(IdentityVerifier::new(
            vec![key.clone()],
            Duration::from_secs(60),
        ));
        Router::new()
            .route(
                "/graphql",
                post(move |identity: Identity| async move {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    identity.tenant
                }),
            )
            .layer(RequireIdentityLayer::new(verifier))
    }

    fn request(headers: HeaderMap) -> Request {
        let mut request = Request::post("/graphql").body(Body::empty()).unwrap();
        *request.headers_mut() = headers;
        request
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn identity() -> Identity {
        Identity {
            tenant: "tenant-a".into(),
            subject: "key_1".into(),
            scopes: "admin".parse().unwrap(),
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn signed_request_reaches_the_handler_with_its_identity() {
        let key = IdentityKey::generate();
        let calls = Arc::default();
        let (payload, signature) = IdentitySigner::new(key.clone()).sign(&identity(), Utc::now());
        let mut headers = HeaderMap::new();
        headers.insert(IDENTITY_HEADER, payload);
        headers.insert(IDENTITY_SIGNATURE_HEADER, signature);
        let response = app(&key, Arc::clone(&calls))
            .oneshot(request(headers))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"tenant-a");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unsigned_and_forged_requests_get_a_graphql_401_and_run_nothing() {
        let key = IdentityKey::generate();
        let calls: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (payload, signature) =
            IdentitySigner::new(IdentityKey::generate()).sign(&identity(), Utc::now());
        let mut forged = HeaderMap::new();
        forged.insert(IDENTITY_HEADER, payload);
        forged.insert(IDENTITY_SIGNATURE_HEADER, signature);

        for headers in [HeaderMap::new(), forged] {
            let response = app(&key, Arc::clone(&calls))
                .oneshot(request(headers))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let body = body_json(response).await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
            assert!(body["errors"][0]["message"].as_str().unwrap().len() > 10);
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn extractor_without_the_layer_refuses() {
        let router = Router::new().route("/graphql", post(|_: Identity| async { "ran" }));
        let response = router.oneshot(request(HeaderMap::new())).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
