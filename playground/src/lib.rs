//! Web pages the router serves, offline: GraphiQL at `/playground` (and the site icon). Every asset is in the
//! binary (vendored under `assets/vendor/` by `vendor.sh`, with its licence), and the page's
//! Content-Security-Policy lets it talk to this origin only, so it works with no internet
//! access and leaks nothing to a CDN.

mod assets;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use assets::Asset;

/// Scripts and styles from this origin only; the API on this origin (HTTP and WebSocket);
/// fonts and icons inline. No frames, no forms, no plugins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/playground` and its assets.
pub fn routes() -> Router {
    Router::new()
        .route("/playground", get(page))
        .route("/playground/", get(page))
        .route("/playground/assets/{*path}", get(asset))
        // Browsers ask every origin for one; an answer keeps their consoles clean.
        .route("/favicon.ico", get(icon))
}

async fn icon(request: HeaderMap) -> Response {
    serve(&assets::ICON, &request)
}

async fn page(request: HeaderMap) -> Response {
    let mut response = serve(&assets::PAGE, &request);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn asset(Path(path): Path<String>, request: HeaderMap) -> Response {
    match assets::find(&path) {
        Some(asset) => serve(asset, &request),
        None => (StatusCode::NOT_FOUND, "no such playground asset").into_response(),
    }
}

/// The asset, or 304 when the client has this version already.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let headers = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    let etag = [(header::ETAG, etag.to_owned())];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers, etag).into_response()
    } else {
        (StatusCode::OK, headers, etag, asset.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        routes()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types() {
        let page = get("/playground", &[]).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'")
        );
        for (path, kind) in [
            ("vendor/graphiql.min.js", "text/javascript; charset=utf-8"),
            ("vendor/graphiql.min.css", "text/css; charset=utf-8"),
            (
                "vendor/react.production.min.js",
                "text/javascript; charset=utf-8",
            ),
            (
                "vendor/react-dom.production.min.js",
                "text/javascript; charset=utf-8",
            ),
            (
                "vendor/licenses/graphiql.LICENSE",
                "text/plain; charset=utf-8",
            ),
            ("playground.js", "text/javascript; charset=utf-8"),
        ] {
            let response = get(&format!("/playground/assets/{path}"), &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()["content-type"], kind, "{path}");
        }
        let missing = get("/playground/assets/../../etc/passwd", &[]).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn an_unchanged_asset_is_not_sent_again() {
        let first = get("/playground/assets/playground.js", &[]).await;
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        let again = get(
            "/playground/assets/playground.js",
            &[("if-none-match", etag.as_str())],
        )
        .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = get(
            "/playground/assets/playground.js",
            &[("if-none-match", "\"something-else\"")],
        )
        .await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    /// Nothing on the page points outside this origin.
    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let page = std::str::from_utf8(assets::PAGE.body).unwrap();
        for attribute in ["src=\"", "href=\""] {
            for (_, rest) in page
                .match_indices(attribute)
                .map(|(i, _)| page.split_at(i + attribute.len()))
            {
                assert!(
                    rest.starts_with('/') || rest.starts_with("data:"),
                    "{attribute}{}",
                    &rest[..rest.find('"').unwrap_or(rest.len())]
                );
            }
        }
    }
}
