//! The caller's identity, as the router signs it into every downstream request.
//!
//! Downstream services trust the router, not whoever can reach them: the router verifies the
//! client's credentials, then signs `{tenant, subject, scopes, expires_at}` with HMAC-SHA256 into
//! two headers. Every subgraph verifies them with [`RequireIdentityLayer`] before anything runs.
//!
//! A signature opens one request only. It names its audience (`subgraph:NAME`, the subgraph's
//! name in the supergraph, or `route:NAME` for a REST route's upstreams: the two never match,
//! so what an upstream receives opens no subgraph) and the request (method, path and query,
//! the SHA-256 of the body, the `x-request-id`), and carries its issue time: a captured header
//! pair is refused for any other request, and for the same one after `max_age` (10 s by
//! default, plus 5 s of clock skew). A REST route's identity covers neither method, path nor
//! body (bodies stream through the router unread; upstreams see rewritten paths), marked `-`,
//! and a subgraph refuses anything that does not cover all of them.
//!
//! The credential's own expiry (`expires_at`) travels for information: the router's
//! authenticators judged the credential, with their leeway, when they signed, and a service
//! does not judge it again by another rule.
//!
//! Wire format (all ASCII, so it fits in a header; `b64` is base64url without padding, `-`
//! stands for "none" or "not covered"):
//! `JUNCTION-IDENTITY: v2.<b64 tenant>.<b64 subject>.<b64 scopes>.<exp unix|->.<iat unix>.<b64
//! audience>.<b64 method|->.<b64 path and query|->.<b64 SHA-256(body)|->.<b64 request id|->`
//! `JUNCTION-IDENTITY-SIGNATURE: <b64 HMAC-SHA256(key, identity header value)>`
//! A service reading another version refuses it, naming both.

mod layer;
mod scopes;
mod signing;

pub use layer::{RequireIdentity, RequireIdentityLayer};
pub use scopes::{
    ADMIN_SCOPE, InvalidScope, KNOWN_SCOPES, PLATFORM_ADMIN_SCOPE, Scopes, known_scopes,
};
pub use signing::{
    Audience, Binding, BodyToCheck, IDENTITY_HEADER, IDENTITY_SIGNATURE_HEADER, IdentityConfig,
    IdentityError, IdentityKey, IdentitySigner, IdentityVerifier, InvalidIdentityKey,
    REQUEST_ID_HEADER, strip_identity_headers,
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
