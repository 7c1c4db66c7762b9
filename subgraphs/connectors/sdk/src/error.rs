//! What can go wrong in a connector, classified by what the engine should do about it.
//!
//! Every variant carries a message written for the person who set up the connection: it is
//! shown to them as it is, so it names the problem in their terms and holds no secrets.

use std::time::Duration;

/// A connector's failure, classified so that an engine can act on it without reading the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// The source refused the credentials (wrong, revoked, expired, or missing a permission).
    /// Retrying will not help; the user must fix the connection.
    #[error("credentials rejected: {message}")]
    Credentials { message: String },
    /// The source asked us to slow down. Retry after `retry_after` when the source said when.
    #[error("rate limited: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// A failure that may pass by itself (a timeout, a refused connection, a 5xx): retry later.
    #[error("temporary failure: {message}")]
    Transient { message: String },
    /// The connection's configuration is wrong (a missing or invalid value, an unknown stream,
    /// an address Junction may not reach). Retrying will not help; the user must fix it.
    #[error("configuration: {message}")]
    Config { message: String },
    /// The source answered something the connector cannot use (not JSON, a record without its
    /// primary key, a status nobody expected): a bug in the source or in the connector.
    #[error("the source answered something unexpected: {message}")]
    Source { message: String },
}

/// The class of a [`ConnectorError`], for matching and for metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Credentials,
    RateLimited,
    Transient,
    Config,
    Source,
}

impl ErrorKind {
    /// A stable lower-case name (`credentials`, `rate_limited`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credentials => "credentials",
            Self::RateLimited => "rate_limited",
            Self::Transient => "transient",
            Self::Config => "config",
            Self::Source => "source",
        }
    }
}

impl ConnectorError {
    pub fn credentials(message: impl Into<String>) -> Self {
        Self::Credentials {
            message: message.into(),
        }
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::RateLimited {
            message: message.into(),
            retry_after,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::Config {
            message: message.into(),
        }
    }

    pub fn source_bug(message: impl Into<String>) -> Self {
        Self::Source {
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Credentials { .. } => ErrorKind::Credentials,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Transient { .. } => ErrorKind::Transient,
            Self::Config { .. } => ErrorKind::Config,
            Self::Source { .. } => ErrorKind::Source,
        }
    }

    /// The message for the user, without the class prefix that `Display` adds.
    pub fn message(&self) -> &str {
        match self {
            Self::Credentials { message }
            | Self::RateLimited { message, .. }
            | Self::Transient { message }
            | Self::Config { message }
            | Self::Source { message } => message,
        }
    }

    /// Whether trying the same thing again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }

    /// When the source said to come back, for a rate limit.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The same error with `context` in front of its message (`"stream customers: ..."`).
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        let prefix = |message: String| format!("{context}: {message}");
        match self {
            Self::Credentials { message } => Self::Credentials {
                message: prefix(message),
            },
            Self::RateLimited {
                message,
                retry_after,
            } => Self::RateLimited {
                message: prefix(message),
                retry_after,
            },
            Self::Transient { message } => Self::Transient {
                message: prefix(message),
            },
            Self::Config { message } => Self::Config {
                message: prefix(message),
            },
            Self::Source { message } => Self::Source {
                message: prefix(message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_says_what_to_do() {
        let limited = ConnectorError::rate_limited("slow down", Some(Duration::from_secs(3)));
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(limited.kind().as_str(), "rate_limited");
        assert!(ConnectorError::transient("timeout").is_retryable());
        for permanent in [
            ConnectorError::credentials("401"),
            ConnectorError::config("no base_url"),
            ConnectorError::source_bug("not JSON"),
        ] {
            assert!(!permanent.is_retryable(), "{permanent}");
        }
    }

    #[test]
    fn context_keeps_the_class_and_prefixes_the_message() {
        let error = ConnectorError::credentials("the key was revoked").context("stream charges");
        assert_eq!(error.kind(), ErrorKind::Credentials);
        assert_eq!(error.message(), "stream charges: the key was revoked");
        assert_eq!(
            error.to_string(),
            "credentials rejected: stream charges: the key was revoked"
        );
    }
}
