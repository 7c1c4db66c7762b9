//! One HTTP attempt: POST with timeouts, no redirects, and only to addresses the SSRF policy
//! allows; the outcome classified for the worker.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, StatusCode, redirect};
use url::Url;

use crate::config::DispatcherConfig;
use junction_outbound::{AddressPolicy, GuardedResolver, Refused, parse_retry_after};

/// Why an attempt did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The endpoint answered with a non-2xx status.
    Status,
    Timeout,
    Connect,
    /// The URL now points somewhere webhooks may not go.
    Forbidden,
    /// Anything else on the wire (reset connection, malformed response).
    Request,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Status => "status",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Forbidden => "ssrf",
            ErrorKind::Request => "request",
        }
    }
}

#[derive(Debug)]
pub struct AttemptResult {
    pub status: Option<StatusCode>,
    pub duration: Duration,
    pub excerpt: Option<String>,
    pub error: Option<(ErrorKind, String)>,
    pub retry_after: Option<Duration>,
}

impl AttemptResult {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

#[derive(Clone, Debug)]
pub struct Sender {
    client: Client,
    policy: AddressPolicy,
    excerpt_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct ClientError(String);

impl Sender {
    pub fn new(config: &DispatcherConfig, policy: AddressPolicy) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone())))
            .redirect(redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("Junction-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError(e.to_string()))?;
        Ok(Self {
            client,
            policy,
            excerpt_bytes: config.response_excerpt_bytes,
        })
    }

    pub async fn send(&self, url: &str, headers: HeaderMap, body: Vec<u8>) -> AttemptResult {
        let started = Instant::now();
        let failed = |kind, message: String| AttemptResult {
            status: None,
            duration: started.elapsed(),
            excerpt: None,
            error: Some((kind, message)),
            retry_after: None,
        };
        let url = match Url::parse(url) {
            Ok(url) => url,
            Err(e) => return failed(ErrorKind::Request, format!("invalid URL: {e}")),
        };
        // IP literals never reach the resolver, so they are checked here.
        if let Some(host) = url.host_str() {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse()
                && let Err(kind) = self.policy.check(ip)
            {
                return failed(ErrorKind::Forbidden, format!("{ip} is a {kind} address"));
            }
        }
        let response = match self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                let kind = if error.is_timeout() {
                    ErrorKind::Timeout
                } else if Refused::is_cause_of(&error) {
                    ErrorKind::Forbidden
                } else if error.is_connect() {
                    ErrorKind::Connect
                } else {
                    ErrorKind::Request
                };
                return failed(kind, error_chain(&error));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let (excerpt, body_error) = self.read_excerpt(response).await;
        let error = if !status.is_success() {
            Some((ErrorKind::Status, format!("HTTP {}", status.as_u16())))
        } else {
            body_error
        };
        AttemptResult {
            status: Some(status),
            duration: started.elapsed(),
            excerpt: Some(excerpt),
            error,
            retry_after,
        }
    }

    /// The first `excerpt_bytes` of the body; the rest is not read.
    async fn read_excerpt(
        &self,
        mut response: reqwest::Response,
    ) -> (String, Option<(ErrorKind, String)>) {
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.excerpt_bytes.saturating_sub(bytes.len());
                    bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if bytes.len() >= self.excerpt_bytes {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let kind = if error.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Request
                    };
                    return (
                        String::from_utf8_lossy(&bytes).into_owned(),
                        Some((kind, error_chain(&error))),
                    );
                }
            }
        }
        (String::from_utf8_lossy(&bytes).into_owned(), None)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
