//! The connect-time half of the SSRF guard: an HTTP client resolver that resolves, then keeps
//! only the addresses the policy allows. The client connects to what this returns, so the
//! address checked is the address used: a DNS answer that changes between the check and the
//! connection (rebinding) cannot slip through.

use std::error::Error;
use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::AddressPolicy;

/// A [`reqwest`] resolver that drops every address the [`AddressPolicy`] refuses.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: AddressPolicy,
}

/// A host name that resolved only to refused addresses. Its text starts with `ssrf:`, which
/// is how it stays recognisable once an HTTP client has turned it into a string.
#[derive(Debug, thiserror::Error)]
#[error("ssrf: {host} resolves only to addresses Junction may not reach")]
pub struct Refused {
    /// The host name as the client asked for it.
    pub host: String,
}

impl Refused {
    /// Whether `error`, or any error it was caused by, is a [`Refused`]: an HTTP client's
    /// connect error wraps the resolver's.
    pub fn is_cause_of(error: &(dyn Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(error) = current {
            if error.is::<Refused>() {
                return true;
            }
            current = error.source();
        }
        false
    }
}

impl GuardedResolver {
    pub fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|address| policy.check(address.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused { host }) as Box<dyn Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolving_only_to_refused_addresses_is_refused() {
        let strict = GuardedResolver::new(AddressPolicy::default());
        let refused = match strict.resolve("localhost".parse().unwrap()).await {
            Err(error) => error,
            Ok(_) => panic!("localhost resolved under the default policy"),
        };
        assert!(Refused::is_cause_of(refused.as_ref()));
        assert!(refused.to_string().starts_with("ssrf: localhost"));

        let loopback = GuardedResolver::new(AddressPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]));
        let addresses: Vec<SocketAddr> = loopback
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(
            addresses.iter().all(|a| a.ip().is_loopback()),
            "{addresses:?}"
        );
    }
}
