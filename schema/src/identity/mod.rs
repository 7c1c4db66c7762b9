//! The caller's identity, as the router signs it into every downstream request.
//!
//! Downstream services trust the router, not whoever can reach them: the router verifies the
//! client's credentials, then signs `{tenant, subject, scopes, expires_at}` with HMAC-SHA256 into
//! two headers. Every subgraph verifies them with [`RequireIdentityLayer`] before anything runs.
//! Each signature also carries its issue time, so a captured header pair is useless after
//! `max_age` (replay protection), whatever the credential's own expiry.
//!
//! Wire format (all ASCII, so it fits in a header):
//! `JUNCTION-IDENTITY: v1.<b64url tenant>.<b64url subject>.<b64url scopes>.<exp unix|->.<iat unix>`
//! `JUNCTION-IDENTITY-SIGNATURE: <b64url HMAC-SHA256(key, identity header value)>`

mod layer;
mod scopes;
mod signing;

pub use layer::{RequireIdentity, RequireIdentityLayer};
pub use scopes::{InvalidScope, Scopes};
pub use signing::{
    IDENTITY_HEADER, IDENTITY_SIGNATURE_HEADER, IdentityConfig, IdentityError, IdentityKey,
    IdentitySigner, IdentityVerifier, InvalidIdentityKey, strip_identity_headers,
};

use chrono::{DateTime, Utc};

/// Who is calling, as verified at the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Every query a service runs for this caller is scoped to this tenant.
    pub tenant: String,
    /// The API key id, JWT subject or OAuth2 client id.
    pub subject: String,
    pub scopes: Scopes,
    /// When the credential behind this identity stops being valid; `None` if it never does.
    pub expires_at: Option<DateTime<Utc>>,
}
