//! The axum layer every subgraph puts in front of its routes, and the `Identity` extractor.
//!
//! The layer verifies the router's signature for this subgraph's audience and for the request
//! as received (method, path and query, request id), then reads the body, up to
//! `[identity] max_body_bytes`, to check its digest, and refuses with a GraphQL-shaped 401
//! (413 for a body over the limit) before the inner service sees anything. Handlers then
//! take `Identity` as an extractor.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::{Layer, Service};

use super::{Audience, Binding, Identity, IdentityVerifier, REQUEST_ID_HEADER};
use crate::error_code::{ErrorCode, RequestError};

#[derive(Clone, Debug)]
pub struct RequireIdentityLayer {
    verifier: Arc<IdentityVerifier>,
    audience: Arc<Audience>,
}

impl RequireIdentityLayer {
    /// Admits requests signed for `audience` (the subgraph's own name in the supergraph).
    pub fn new(verifier: Arc<IdentityVerifier>, audience: Audience) -> Self {
        Self {
            verifier,
            audience: Arc::new(audience),
        }
    }
}

impl<S> Layer<S> for RequireIdentityLayer {
    type Service = RequireIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireIdentity {
            inner,
            verifier: self.verifier.clone(),
            audience: self.audience.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequireIdentity<S> {
    inner: S,
    verifier: Arc<IdentityVerifier>,
    audience: Arc<Audience>,
}

fn refusal(error: impl ToString) -> Response {
    let error = error.to_string();
    tracing::debug!(%error, "refused request without a valid identity");
    RequestError::new(ErrorCode::Unauthenticated, error).into_response()
}

fn too_large(limit: usize) -> Response {
    let mut response = RequestError::new(
        ErrorCode::BadUserInput,
        format!("request body over {limit} bytes: too large to check its signature"),
    )
    .into_response();
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response
}

impl<S> Service<Request> for RequireIdentity<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was polled ready serves this request; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = Arc::clone(&self.verifier);
        let audience = Arc::clone(&self.audience);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // Behind `Router::nest` the URI is shortened; the router signed the whole one.
            let uri = parts
                .extensions
                .get::<OriginalUri>()
                .map_or(&parts.uri, |original| &original.0);
            let received = Binding {
                audience: &audience,
                method: Some(parts.method.as_str()),
                target: Some(uri.path_and_query().map_or("/", |pq| pq.as_str())),
                body: None,
                request_id: parts
                    .headers
                    .get(REQUEST_ID_HEADER)
                    .and_then(|v| v.to_str().ok()),
            };
            // The head first: a body is read only for a caller the router signed for.
            let pending = match verifier.verify_head_at(&parts.headers, &received, Utc::now()) {
                Ok(pending) => pending,
                Err(error) => return Ok(refusal(error)),
            };
            let limit = verifier.max_body_bytes();
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit as u64) {
                return Ok(too_large(limit));
            }
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) if error.is::<LengthLimitError>() => return Ok(too_large(limit)),
                Err(error) => {
                    tracing::debug!(%error, "request body cut short");
                    let response = RequestError::new(
                        ErrorCode::BadUserInput,
                        "the request body could not be read",
                    )
                    .into_response();
                    return Ok(response);
                }
            };
            match pending.check(Binding::digest(&bytes)) {
                Ok(identity) => {
                    parts.extensions.insert(identity);
                    inner
                        .call(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(error) => Ok(refusal(error)),
            }
        })
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;
    use crate::identity::{
        IDENTITY_HEADER, IDENTITY_SIGNATURE_HEADER, IdentityKey, IdentitySigner,
    };

    const BODY: &str = r#"{"query":"{ __typename }"}"#;

    fn app(key: &IdentityKey, calls: Arc<AtomicUsize>) -> Router {
        let verifier = Arc::new(
            IdentityVerifier::new(vec![key.clone()], Duration::from_secs(60))
                .with_max_body_bytes(1024),
        );
        let handler = move |identity: Identity, body: String| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            format!("{} {body}", identity.tenant)
        };
        Router::new()
            .route("/graphql", post(handler.clone()).get(handler))
            .layer(RequireIdentityLayer::new(
                verifier,
                Audience::subgraph("webhooks"),
            ))
    }

    /// The identity headers the router would send with `body` to the webhooks subgraph.
    fn signed(key: &IdentityKey, audience: &Audience, method: &str, body: &[u8]) -> HeaderMap {
        let request = Binding {
            audience,
            method: Some(method),
            target: Some("/graphql"),
            body: Some(Binding::digest(body)),
            request_id: Some("req-1"),
        };
        let (payload, signature) =
            IdentitySigner::new(key.clone()).sign(&identity(), &request, Utc::now());
        let mut headers = HeaderMap::new();
        headers.insert(IDENTITY_HEADER, payload);
        headers.insert(IDENTITY_SIGNATURE_HEADER, signature);
        headers.insert(REQUEST_ID_HEADER, "req-1".parse().unwrap());
        headers
    }

    fn request(method: &str, headers: HeaderMap, body: impl Into<Body>) -> Request {
        let mut request = Request::builder()
            .method(method)
            .uri("/graphql")
            .body(body.into())
            .unwrap();
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

    fn webhooks() -> Audience {
        Audience::subgraph("webhooks")
    }

    #[tokio::test]
    async fn signed_request_reaches_the_handler_with_its_identity_and_body() {
        let key = IdentityKey::generate();
        let calls = Arc::default();
        let headers = signed(&key, &webhooks(), "POST", BODY.as_bytes());
        let response = app(&key, Arc::clone(&calls))
            .oneshot(request("POST", headers, BODY))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], format!("tenant-a {BODY}").as_bytes());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A WebSocket handshake is a GET without a body: the empty body's digest.
        let headers = signed(&key, &webhooks(), "GET", b"");
        let response = app(&key, Arc::clone(&calls))
            .oneshot(request("GET", headers, Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unsigned_forged_and_misdirected_requests_get_a_graphql_401_and_run_nothing() {
        let key = IdentityKey::generate();
        let calls: Arc<AtomicUsize> = Arc::default();
        let forged = signed(
            &IdentityKey::generate(),
            &webhooks(),
            "POST",
            BODY.as_bytes(),
        );
        let for_a_route = signed(&key, &Audience::route("webhooks"), "POST", BODY.as_bytes());
        let for_another_subgraph = signed(
            &key,
            &Audience::subgraph("deliveries"),
            "POST",
            BODY.as_bytes(),
        );
        let other_body = signed(&key, &webhooks(), "POST", b"{}");
        let other_method = signed(&key, &webhooks(), "GET", BODY.as_bytes());
        for (headers, why) in [
            (HeaderMap::new(), "missing identity"),
            (forged, "does not verify"),
            (for_a_route, "made for route:webhooks"),
            (for_another_subgraph, "made for subgraph:deliveries"),
            (other_body, "its body differs"),
            (other_method, "its method differs"),
        ] {
            let response = app(&key, Arc::clone(&calls))
                .oneshot(request("POST", headers, BODY))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
            let body = body_json(response).await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(why), "{message:?} should say {why:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_a_413_declared_or_streamed() {
        let key = IdentityKey::generate();
        let calls: Arc<AtomicUsize> = Arc::default();
        let big = vec![b'x'; 2048];
        let headers = signed(&key, &webhooks(), "POST", &big);
        let mut declared = headers.clone();
        declared.insert(header::CONTENT_LENGTH, "2048".parse().unwrap());
        let chunks = futures_util::stream::iter(
            big.chunks(256)
                .map(|c| Ok::<_, std::io::Error>(axum::body::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        for request in [
            request("POST", declared, big.clone()),
            request("POST", headers, Body::from_stream(chunks)),
        ] {
            let response = app(&key, Arc::clone(&calls))
                .oneshot(request)
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
            let body = body_json(response).await;
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains("over 1024 bytes"), "{message}");
        }
        // An unsigned request is refused before its body is read, whatever its size.
        let response = app(&key, Arc::clone(&calls))
            .oneshot(request("POST", HeaderMap::new(), big))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn extractor_without_the_layer_refuses() {
        let router = Router::new().route("/graphql", get(|_: Identity| async { "ran" }));
        let response = router
            .oneshot(request("GET", HeaderMap::new(), Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
