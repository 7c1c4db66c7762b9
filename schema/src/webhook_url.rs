//! Which addresses a webhook may reach: the server-side request forgery (SSRF) rule shared by
//! the webhooks subgraph (checked at `createEndpoint`) and the dispatcher (checked again at
//! every delivery, at connect time).
//!
//! A customer chooses the URL, so without a guard Junction would POST into its own network
//! (databases, admin ports, the cloud metadata service). Loopback, private, link-local,
//! multicast, reserved and metadata addresses are refused unless allow-listed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::Url;

#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    allowed: Arc<Vec<IpNet>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("not a valid URL: {0}")]
    Invalid(String),
    #[error("webhook URLs must use http or https, not {0}")]
    Scheme(String),
    #[error("webhook URLs must not carry credentials; use custom headers instead")]
    Credentials,
    #[error("webhook URL has no host")]
    NoHost,
    #[error("cannot resolve {0}")]
    Unresolvable(String),
    #[error("{host} resolves to {address}, a {kind} address, which webhooks may not reach")]
    Forbidden {
        host: String,
        address: IpAddr,
        kind: &'static str,
    },
}

impl AddressPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self {
            allowed: Arc::new(allowed),
        }
    }

    /// `Err(kind)` when the address is off limits and not allow-listed.
    pub fn check(&self, address: IpAddr) -> Result<(), &'static str> {
        if self.allowed.iter().any(|net| net.contains(&address)) {
            return Ok(());
        }
        match forbidden_kind(address) {
            Some(kind) => Err(kind),
            None => Ok(()),
        }
    }

    /// Parses and checks a webhook URL, resolving its host.
    pub async fn check_url(&self, text: &str) -> Result<Url, UrlError> {
        let url = Url::parse(text).map_err(|e| UrlError::Invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        let host = url.host_str().ok_or(UrlError::NoHost)?.to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        for address in self.resolve_all(&host, port).await? {
            self.check(address.ip())
                .map_err(|kind| UrlError::Forbidden {
                    host: host.clone(),
                    address: address.ip(),
                    kind,
                })?;
        }
        Ok(url)
    }

    async fn resolve_all(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, UrlError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| UrlError::Unresolvable(host.to_owned()))?
            .collect();
        if addresses.is_empty() {
            return Err(UrlError::Unresolvable(host.to_owned()));
        }
        Ok(addresses)
    }
}

fn forbidden_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() || ip.is_broadcast() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused() {
        let policy = AddressPolicy::default();
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("224.0.0.1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("::1", "loopback"),
            ("fd00:ec2::254", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
        ] {
            assert_eq!(policy.check(ip(address)), Err(kind), "{address}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_its_networks() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("10.0.0.1")), Err("private"));
    }

    #[tokio::test]
    async fn urls_are_checked_before_anything_is_sent() {
        let policy = AddressPolicy::default();
        assert!(matches!(
            policy.check_url("http://127.0.0.1:9/hook").await,
            Err(UrlError::Forbidden {
                kind: "loopback",
                ..
            })
        ));
        assert!(matches!(
            policy.check_url("http://localhost:9/hook").await,
            Err(UrlError::Forbidden {
                kind: "loopback",
                ..
            })
        ));
        assert!(matches!(
            policy.check_url("http://[::1]/").await,
            Err(UrlError::Forbidden {
                kind: "loopback",
                ..
            })
        ));
        assert!(matches!(
            policy
                .check_url("http://169.254.169.254/latest/meta-data")
                .await,
            Err(UrlError::Forbidden {
                kind: "cloud metadata",
                ..
            })
        ));
        assert_eq!(
            policy.check_url("ftp://example.com/").await.err(),
            Some(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(
            policy.check_url("https://user:pw@example.com/").await.err(),
            Some(UrlError::Credentials)
        );
        assert!(matches!(
            policy.check_url("not a url").await,
            Err(UrlError::Invalid(_))
        ));
        let allowed = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(allowed.check_url("http://127.0.0.1:9/hook").await.is_ok());
    }
}
