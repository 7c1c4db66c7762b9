//! A set of OAuth2-style scope tokens (RFC 6749 section 3.3).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The scope that may do everything in its tenant.
pub const ADMIN_SCOPE: &str = "admin";
/// The scope that manages tenants (create, list, rename, delete, issue their keys): held by a
/// platform embedding Junction for its customers, never implied by `admin`.
pub const PLATFORM_ADMIN_SCOPE: &str = "platform:admin";

/// The scopes Junction's subgraphs check, with what each allows: the only ones an API key may
/// hold. (Tokens from an identity provider may carry others; they are ignored.)
pub const KNOWN_SCOPES: &[(&str, &str)] = &[
    (ADMIN_SCOPE, "everything in the tenant, API keys included"),
    ("webhooks:read", "read endpoints, event types and messages"),
    (
        "webhooks:write",
        "create, change and delete endpoints and event types; publish events",
    ),
    (
        "deliveries:read",
        "read delivery attempts, statistics and dead letters; watch deliveries live",
    ),
    ("deliveries:write", "replay deliveries and dead letters"),
    (
        PLATFORM_ADMIN_SCOPE,
        "create, list, rename and delete tenants, and issue keys for any of them (not implied by admin)",
    ),
];

/// Scope tokens, kept sorted so that their encoding is canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid scope {0:?}: a scope is one or more printable ASCII characters without spaces, quotes or backslashes"
)]
pub struct InvalidScope(pub String);

impl Scopes {
    pub fn new<I, S>(scopes: I) -> Result<Self, InvalidScope>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut set = BTreeSet::new();
        for scope in scopes {
            let scope = scope.into();
            if !is_scope_token(&scope) {
                return Err(InvalidScope(scope));
            }
            set.insert(scope);
        }
        Ok(Self(set))
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first scope that is not one of [`KNOWN_SCOPES`] (a typo such as `admn`), if any.
    pub fn unknown(&self) -> Option<&str> {
        self.iter()
            .find(|scope| !KNOWN_SCOPES.iter().any(|(known, _)| known == scope))
    }

    /// Whether a holder of these scopes may be given `scope`: it holds it, or it holds
    /// `admin` (which may do everything in its tenant) and `scope` is a known tenant scope.
    pub fn grants(&self, scope: &str) -> bool {
        self.contains(scope)
            || (self.contains(ADMIN_SCOPE)
                && scope != PLATFORM_ADMIN_SCOPE
                && KNOWN_SCOPES.iter().any(|(known, _)| *known == scope))
    }
}

/// The known scopes, one per line with what each allows: for help texts and error messages.
pub fn known_scopes() -> String {
    KNOWN_SCOPES
        .iter()
        .map(|(scope, allows)| format!("{scope}: {allows}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

impl FromStr for Scopes {
    type Err = InvalidScope;

    /// Parses space- or comma-separated scopes; empty items are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(
            s.split([' ', ','])
                .filter(|part| !part.is_empty())
                .map(str::to_owned),
        )
    }
}

impl fmt::Display for Scopes {
    /// Space-separated, sorted: the canonical form that is signed and stored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_grants_every_known_scope_and_nothing_else() {
        let admin: Scopes = "admin".parse().unwrap();
        assert!(
            KNOWN_SCOPES
                .iter()
                .filter(|(scope, _)| *scope != PLATFORM_ADMIN_SCOPE)
                .all(|(scope, _)| admin.grants(scope))
        );
        assert!(!admin.grants("billing:write"));
        assert!(!admin.grants(PLATFORM_ADMIN_SCOPE));
        let reader: Scopes = "webhooks:read".parse().unwrap();
        assert!(reader.grants("webhooks:read"));
        assert!(!reader.grants("webhooks:write"));
    }

    #[test]
    fn parses_sorted_and_deduplicated() {
        let scopes: Scopes = "webhooks:write admin,webhooks:write".parse().unwrap();
        assert_eq!(scopes.unknown(), None);
        let typo: Scopes = "admn webhooks:read".parse().unwrap();
        assert_eq!(typo.unknown(), Some("admn"));
        assert_eq!(scopes.to_string(), "admin webhooks:write");
        assert!(scopes.contains("admin"));
        assert!(!scopes.contains("webhooks"));
    }

    #[test]
    fn refuses_quotes_backslashes_and_control_characters() {
        for bad in ["a\"b", "a\\b", "tab\there", "é"] {
            assert_eq!(Scopes::new([bad]), Err(InvalidScope(bad.to_owned())));
        }
    }

    #[test]
    fn empty_input_is_no_scopes() {
        assert!(Scopes::from_str("  ").unwrap().is_empty());
    }
}
