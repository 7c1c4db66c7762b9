//! Errors of webhook operations, each mapping to one API error code.

use junction_schema::database::is_unavailable;
use junction_schema::error_code::ErrorCode;
use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

pub use junction_subgraph_kit::RETRY_AFTER_SECS;

impl WebhookError {
    pub fn code(&self) -> ErrorCode {
        match self {
            WebhookError::BadInput(_) => ErrorCode::BadUserInput,
            WebhookError::NotFound(_) => ErrorCode::NotFound,
            WebhookError::Conflict(_) => ErrorCode::Conflict,
            WebhookError::Database(error) if is_unavailable(error) => ErrorCode::Unavailable,
            WebhookError::Database(_) => ErrorCode::Internal,
        }
    }

    /// What a client may be told: the message of a client's mistake, or a fixed text for a
    /// database failure (whose details stay in the logs).
    pub fn public_message(&self) -> String {
        match self.code() {
            ErrorCode::Unavailable => "the database cannot be reached right now and nothing was \
                stored; send the same request again (with the same idempotency keys) after \
                retryAfter seconds"
                .to_owned(),
            ErrorCode::Internal => "internal error".to_owned(),
            _ => self.to_string(),
        }
    }

    /// A copy for another result that failed the same way (database errors are not copied:
    /// they end the whole request).
    pub(crate) fn same_again(&self) -> Self {
        match self {
            WebhookError::BadInput(m) => WebhookError::BadInput(m.clone()),
            WebhookError::NotFound(m) => WebhookError::NotFound(m.clone()),
            WebhookError::Conflict(m) => WebhookError::Conflict(m.clone()),
            WebhookError::Database(e) => WebhookError::Database(e.clone()),
        }
    }
}

/// Event type names are `service.resource.verb`-like: dot-separated lowercase words.
pub(crate) fn check_event_type_name(name: &str) -> Result<(), WebhookError> {
    let valid = (1..=256).contains(&name.len())
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(WebhookError::BadInput(format!(
            "invalid event type name {name:?}: use dot-separated lowercase words, such as invoice.payment.succeeded"
        )))
    }
}

/// Channels are short labels that route messages to the endpoints that asked for them.
pub(crate) fn check_channel(channel: &str) -> Result<(), WebhookError> {
    let valid = (1..=128).contains(&channel.len())
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if valid {
        Ok(())
    } else {
        Err(WebhookError::BadInput(format!(
            "invalid channel {channel:?}: use up to 128 letters, digits, '_', '-', '.' or ':'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names() {
        for good in ["invoice.paid", "a", "user.profile-photo.updated", "v2.x_y"] {
            assert!(check_event_type_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Invoice.paid", "a..b", ".a", "a b", &"a".repeat(257)] {
            assert!(check_event_type_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channels() {
        assert!(check_channel("project:123").is_ok());
        assert!(check_channel("").is_err());
        assert!(check_channel("with space").is_err());
    }
}
