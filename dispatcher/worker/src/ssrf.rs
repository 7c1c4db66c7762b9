//! The dispatcher's half of the SSRF guard: an HTTP client resolver that resolves, then keeps
//! only the addresses the policy allows. The client connects to what this returns, so the
//! address checked is the address used: a DNS answer that changes between the check and the
//! connection (rebinding) cannot slip through.

use std::net::SocketAddr;

use junction_schema::webhook_url::AddressPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: AddressPolicy,
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
                return Err(format!(
                    "ssrf: {host} resolves only to addresses webhooks may not reach"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}
