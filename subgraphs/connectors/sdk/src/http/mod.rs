//! The HTTP toolkit connectors share: one [`HttpClient`] with timeouts, retries with back-off
//! and `Retry-After`, a per-connection rate cap ([`RateLimiter`]), and the SSRF guard
//! (`junction-outbound`) the dispatcher uses, so a connector cannot be pointed at Junction's
//! own network.

mod rate;
mod retry;

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use junction_outbound::{GuardedResolver, Refused};
use reqwest::header::RETRY_AFTER;
use reqwest::{Request, Response, StatusCode, redirect};
use tracing::{debug, warn};

pub use junction_outbound::AddressPolicy;
pub use junction_outbound::parse_retry_after;
pub use rate::{RateLimit, RateLimiter};
pub use retry::RetryPolicy;

use crate::error::ConnectorError;

/// How an [`HttpClient`] is built.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// The whole request, headers to last body byte.
    pub request_timeout: Duration,
    /// Which addresses requests may reach. The default refuses every private, loopback and
    /// special-purpose address; tests allow `127.0.0.0/8`.
    pub policy: AddressPolicy,
    pub retry: RetryPolicy,
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            policy: AddressPolicy::default(),
            retry: RetryPolicy::default(),
            user_agent: concat!("Junction-Connectors/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Whether an answer with some status is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The source is overloaded or limiting us: wait (its `Retry-After`, else back-off).
    RateLimited,
    /// A failure that may pass: back off and try again.
    Transient,
    /// Hand the answer to the caller as it is.
    Never,
}

/// Which statuses are retried: by default 429 as a rate limit, 408 and every 5xx as
/// transient; a connector can say otherwise for any status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusPolicy {
    overrides: BTreeMap<u16, Retry>,
}

impl StatusPolicy {
    /// The same policy with `status` answered by `retry`.
    pub fn with(mut self, status: StatusCode, retry: Retry) -> Self {
        self.overrides.insert(status.as_u16(), retry);
        self
    }

    pub fn retry(&self, status: StatusCode) -> Retry {
        if let Some(retry) = self.overrides.get(&status.as_u16()) {
            return *retry;
        }
        match status {
            StatusCode::TOO_MANY_REQUESTS => Retry::RateLimited,
            StatusCode::REQUEST_TIMEOUT => Retry::Transient,
            status if status.is_server_error() => Retry::Transient,
            _ => Retry::Never,
        }
    }
}

/// A reqwest client for connectors. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: AddressPolicy,
    retry: RetryPolicy,
    statuses: StatusPolicy,
    limiter: Option<Arc<RateLimiter>>,
}

impl HttpClient {
    pub fn new(options: HttpOptions) -> Result<Self, ConnectorError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectorError::config(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Host names are judged by the resolver; an IP address in a redirect never reaches
        // it, so each redirect's address is judged here.
        let redirects = {
            let policy = options.policy.clone();
            redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("more than 5 redirects")
                } else if let Err(refused) = policy.check_literal_host(attempt.url()) {
                    attempt.error(refused)
                } else {
                    attempt.follow()
                }
            })
        };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(GuardedResolver::new(options.policy.clone())))
            .redirect(redirects)
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(options.user_agent)
            .build()
            .map_err(|e| ConnectorError::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            policy: options.policy,
            retry: options.retry,
            statuses: StatusPolicy::default(),
            limiter: None,
        })
    }

    /// The same client with another retry policy.
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        Self {
            retry,
            ..self.clone()
        }
    }

    /// The same client with another say on which statuses are retried.
    pub fn with_statuses(&self, statuses: StatusPolicy) -> Self {
        Self {
            statuses,
            ..self.clone()
        }
    }

    /// The same client, every request of which (retries included) waits for `limiter`.
    pub fn with_rate_limiter(&self, limiter: Arc<RateLimiter>) -> Self {
        Self {
            limiter: Some(limiter),
            ..self.clone()
        }
    }

    /// The underlying client, to build requests with (`client.reqwest().get(url)`).
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request`, retrying rate limits, transient statuses and transport errors as the
    /// policies say. Returns the answer for any status not retried (a 404 is the caller's to
    /// judge); a classified error once retries are spent.
    pub async fn send(&self, request: Request) -> Result<Response, ConnectorError> {
        self.policy
            .check_literal_host(request.url())
            .map_err(|refused| ConnectorError::config(refused.to_string()))?;
        let target = format!("{} {}", request.method(), redacted(request.url()));
        let mut retry = 0;
        loop {
            // A request whose body is a stream cannot be sent twice: it gets one try.
            let Some(copy) = request.try_clone() else {
                return self.attempt(request, &target).await.map_err(|(e, _)| e);
            };
            let (error, retry_after) = match self.attempt(copy, &target).await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            if !error.is_retryable() || retry >= self.retry.max_retries {
                return Err(error);
            }
            let wait = match retry_after {
                Some(after) if after > self.retry.max_retry_after => {
                    warn!(%target, ?after, "the source asks for a longer pause than a read waits");
                    return Err(error);
                }
                // A source that says "now" (0) still gets a short pause.
                Some(after) => after.max(self.retry.backoff(retry) / 4),
                None => self.retry.backoff(retry),
            };
            debug!(%target, retry, ?wait, %error, "retrying");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    /// One try: waits for the rate limiter, sends, and classifies the outcome; a failure
    /// comes with the `Retry-After` the source gave.
    async fn attempt(
        &self,
        request: Request,
        target: &str,
    ) -> Result<Response, (ConnectorError, Option<Duration>)> {
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        let response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(error) if Refused::is_cause_of(&error) => {
                let message = format!("{target}: {}", describe(&error));
                return Err((ConnectorError::config(message), None));
            }
            Err(error) => {
                let message = format!("{target}: {}", describe(&error));
                return Err((ConnectorError::transient(message), None));
            }
        };
        let status = response.status();
        let kind = self.statuses.retry(status);
        if kind == Retry::Never {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let message = format!("{target} answered {status}");
        let error = match kind {
            Retry::RateLimited => ConnectorError::rate_limited(message, retry_after),
            _ => ConnectorError::transient(message),
        };
        Err((error, retry_after))
    }
}

/// The URL without its query, which may hold an API key.
fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A transport error and its causes in one line, without the URL (its query may hold a key).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
