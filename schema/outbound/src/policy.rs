//! Which addresses Junction may reach: the server-side request forgery (SSRF) rule shared by
//! everything that sends requests to a URL a customer chose. The webhooks subgraph checks it at
//! `createEndpoint`, the dispatcher again at every delivery, and connectors on every request
//! to a source.
//!
//! A customer chooses the URL, so without a guard Junction would send requests into its own
//! network (databases, admin ports, the cloud metadata service). Every address in IANA's IPv4
//! and IPv6 special-purpose address registries (RFC 6890) is refused, with multicast, IPv6
//! site-local and the IPv6 space outside global unicast, unless the allow-list (`[dispatcher]
//! allowed_networks`) names it. An IPv6 address that carries an IPv4 one (IPv4-mapped,
//! IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by the IPv4 address it
//! carries, since that is where a translator or a dual-stack socket delivers it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::Url;

/// The addresses outbound requests may not reach, less an allow-list. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    allowed: Arc<Vec<IpNet>>,
}

/// Why a URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("not a valid URL: {0}")]
    Invalid(String),
    #[error("URLs must use http or https, not {0}")]
    Scheme(String),
    #[error("URLs must not carry credentials; send them in headers instead")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("cannot resolve {0}")]
    Unresolvable(String),
    #[error(
        "{host} resolves to {address}, a {kind} address ({reference}), which Junction may not reach; to allow it, add it to `allowed_networks` in `[dispatcher]` (for example `allowed_networks = [\"{address}\"]`, or a range such as \"127.0.0.0/8\")"
    )]
    Forbidden {
        host: String,
        address: IpAddr,
        kind: &'static str,
        /// Where that kind of address is set aside.
        reference: &'static str,
    },
}

impl AddressPolicy {
    /// The default refusals, less the networks in `allowed`.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self {
            allowed: Arc::new(allowed),
        }
    }

    /// `Err(kind)` when the address is off limits and not allow-listed.
    pub fn check(&self, address: IpAddr) -> Result<(), &'static str> {
        self.refusal(address)
            .map(|(kind, _)| kind)
            .map_or(Ok(()), Err)
    }

    /// The kind of address and where it is set aside, when it is off limits.
    fn refusal(&self, address: IpAddr) -> Option<(&'static str, &'static str)> {
        // `::ffff:a.b.c.d` is the same host as `a.b.c.d`, so the IPv4 allow-list holds it.
        let allowed = |ip: IpAddr| self.allowed.iter().any(|net| net.contains(&ip));
        if allowed(address) || mapped_v4(address).is_some_and(allowed) {
            return None;
        }
        forbidden(address)
    }

    /// Refuses a URL whose host is an IP address the policy forbids. Such a host never reaches
    /// a resolver (so [`GuardedResolver`](crate::GuardedResolver) cannot see it): a client
    /// checks it before each request. Host names pass here and are judged when resolved.
    pub fn check_literal_host(&self, url: &Url) -> Result<(), UrlError> {
        let Some(host) = url.host_str() else {
            return Err(UrlError::NoHost);
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(address) => match self.refusal(address) {
                Some((kind, reference)) => Err(UrlError::Forbidden {
                    host: host.to_owned(),
                    address,
                    kind,
                    reference,
                }),
                None => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }

    /// Parses and checks a URL (scheme, no credentials, a host), resolving its host: every
    /// address it resolves to must be allowed.
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
            if let Some((kind, reference)) = self.refusal(address.ip()) {
                return Err(UrlError::Forbidden {
                    host: host.clone(),
                    address: address.ip(),
                    kind,
                    reference,
                });
            }
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

/// What a registry row means for an outbound request.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    Refused,
    /// The row's addresses carry an IPv4 address, which decides.
    CarriesIpv4(fn(Ipv6Addr) -> Ipv4Addr),
}

/// One row of an address registry: a network, its purpose, where it is defined.
#[derive(Clone, Copy, Debug)]
struct Row<A> {
    network: A,
    prefix: u8,
    purpose: &'static str,
    rfc: &'static str,
    verdict: Verdict,
}

const fn v4(
    network: [u8; 4],
    prefix: u8,
    purpose: &'static str,
    rfc: &'static str,
) -> Row<Ipv4Addr> {
    let [a, b, c, d] = network;
    Row {
        network: Ipv4Addr::new(a, b, c, d),
        prefix,
        purpose,
        rfc,
        verdict: Verdict::Refused,
    }
}

const fn v6(
    network: [u16; 8],
    prefix: u8,
    purpose: &'static str,
    rfc: &'static str,
) -> Row<Ipv6Addr> {
    let [a, b, c, d, e, f, g, h] = network;
    Row {
        network: Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix,
        purpose,
        rfc,
        verdict: Verdict::Refused,
    }
}

const fn carrying(row: Row<Ipv6Addr>, embedded: fn(Ipv6Addr) -> Ipv4Addr) -> Row<Ipv6Addr> {
    Row {
        verdict: Verdict::CarriesIpv4(embedded),
        ..row
    }
}

/// IANA IPv4 Special-Purpose Address Registry (RFC 6890), every row, plus multicast (IANA
/// IPv4 Multicast Address Space) and the cloud metadata address, named for the message.
const IPV4_SPECIAL: &[Row<Ipv4Addr>] = &[
    v4([0, 0, 0, 0], 8, "\"this network\"", "RFC 791, section 3.2"),
    v4([0, 0, 0, 0], 32, "unspecified", "RFC 1122, section 3.2.1.3"),
    v4([10, 0, 0, 0], 8, "private", "RFC 1918"),
    v4(
        [100, 64, 0, 0],
        10,
        "shared (carrier-grade NAT)",
        "RFC 6598",
    ),
    v4([127, 0, 0, 0], 8, "loopback", "RFC 1122, section 3.2.1.3"),
    v4([169, 254, 0, 0], 16, "link-local", "RFC 3927"),
    v4(
        [169, 254, 169, 254],
        32,
        "cloud metadata",
        "link-local (RFC 3927), the metadata service of cloud providers",
    ),
    v4([172, 16, 0, 0], 12, "private", "RFC 1918"),
    v4(
        [192, 0, 0, 0],
        24,
        "IETF protocol assignment",
        "RFC 6890, section 2.1",
    ),
    v4([192, 0, 0, 0], 29, "IPv4 service continuity", "RFC 7335"),
    v4([192, 0, 0, 8], 32, "IPv4 dummy", "RFC 7600"),
    v4(
        [192, 0, 0, 9],
        32,
        "port control protocol anycast",
        "RFC 7723",
    ),
    v4([192, 0, 0, 10], 32, "TURN anycast", "RFC 8155"),
    v4(
        [192, 0, 0, 170],
        32,
        "NAT64/DNS64 discovery",
        "RFC 8880, RFC 7050 section 2.2",
    ),
    v4(
        [192, 0, 0, 171],
        32,
        "NAT64/DNS64 discovery",
        "RFC 8880, RFC 7050 section 2.2",
    ),
    v4([192, 0, 2, 0], 24, "documentation (TEST-NET-1)", "RFC 5737"),
    v4([192, 31, 196, 0], 24, "AS112", "RFC 7535"),
    v4([192, 52, 193, 0], 24, "AMT", "RFC 7450"),
    v4(
        [192, 88, 99, 0],
        24,
        "6to4 relay anycast (deprecated)",
        "RFC 7526",
    ),
    v4([192, 168, 0, 0], 16, "private", "RFC 1918"),
    v4([192, 175, 48, 0], 24, "AS112 direct delegation", "RFC 7534"),
    v4([198, 18, 0, 0], 15, "benchmarking", "RFC 2544"),
    v4(
        [198, 51, 100, 0],
        24,
        "documentation (TEST-NET-2)",
        "RFC 5737",
    ),
    v4(
        [203, 0, 113, 0],
        24,
        "documentation (TEST-NET-3)",
        "RFC 5737",
    ),
    v4([224, 0, 0, 0], 4, "multicast", "RFC 5771"),
    v4([240, 0, 0, 0], 4, "reserved", "RFC 1112, section 4"),
    v4(
        [255, 255, 255, 255],
        32,
        "limited broadcast",
        "RFC 8190, RFC 919 section 7",
    ),
];

/// `::ffff:a.b.c.d`, `::a.b.c.d`, `64:ff9b::a.b.c.d`: the last 32 bits.
fn last_32_bits(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32)
}

/// `2002:AABB:CCDD::/48` carries `AA.BB.CC.DD` in bits 16 to 47.
fn six_to_four(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) >> 80) as u32)
}

/// IANA IPv6 Special-Purpose Address Registry (RFC 6890), every row, plus the deprecated
/// IPv4-compatible form, site-local and multicast (IANA IPv6 Address Space).
const IPV6_SPECIAL: &[Row<Ipv6Addr>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291"),
    carrying(
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped", "RFC 4291"),
        last_32_bits,
    ),
    carrying(
        v6(
            [0, 0, 0, 0, 0, 0, 0, 0],
            96,
            "IPv4-compatible (deprecated)",
            "RFC 4291, section 2.5.5.1",
        ),
        last_32_bits,
    ),
    carrying(
        v6(
            [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
            96,
            "IPv4-IPv6 translation",
            "RFC 6052",
        ),
        last_32_bits,
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use IPv4-IPv6 translation",
        "RFC 8215",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666"),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignment",
        "RFC 2928",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        "Teredo",
        "RFC 4380, RFC 8190",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 1],
        128,
        "port control protocol anycast",
        "RFC 7723",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        "TURN anycast",
        "RFC 8155",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        "DNS-SD service registration anycast",
        "RFC 9665",
    ),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        "benchmarking",
        "RFC 5180",
    ),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT", "RFC 7450"),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112", "RFC 7535"),
    v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        "ORCHID (deprecated)",
        "RFC 4843",
    ),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "RFC 7343"),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        "drone remote ID entity tags",
        "RFC 9374",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation",
        "RFC 3849",
    ),
    carrying(
        v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056"),
        six_to_four,
    ),
    v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "AS112 direct delegation",
        "RFC 7534",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation",
        "RFC 9637",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing (SRv6) SID",
        "RFC 9602",
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "private (unique local)",
        "RFC 4193, RFC 8190",
    ),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", "RFC 4291"),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local (deprecated)",
        "RFC 3879",
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        "multicast",
        "RFC 4291, section 2.7",
    ),
];

/// The most specific row holding `ip`.
fn lookup<A: Copy>(rows: &[Row<A>], ip: A, bits: impl Fn(A) -> u128, width: u8) -> Option<&Row<A>> {
    rows.iter()
        .filter(|row| {
            let shift = u32::from(width - row.prefix);
            // Checked: a /0 row (there is none) would shift by the whole width.
            bits(row.network).checked_shr(shift) == bits(ip).checked_shr(shift)
        })
        .max_by_key(|row| row.prefix)
}

/// The kind of `address` and where it is set aside, when it is off limits: the most specific
/// row holding it, or holding the IPv4 address it carries.
fn forbidden(address: IpAddr) -> Option<(&'static str, &'static str)> {
    match address {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => forbidden_v6(ip),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<(&'static str, &'static str)> {
    lookup(IPV4_SPECIAL, ip, |a| u128::from(u32::from(a)), 32).map(|row| (row.purpose, row.rfc))
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<(&'static str, &'static str)> {
    match lookup(IPV6_SPECIAL, ip, u128::from, 128) {
        Some(Row {
            verdict: Verdict::CarriesIpv4(embedded),
            ..
        }) => forbidden_v4(embedded(ip)),
        Some(row) => Some((row.purpose, row.rfc)),
        // Only 2000::/3 is allocated for global unicast (IANA IPv6 Address Space).
        None if u128::from(ip) >> 125 != 0b001 => Some(("reserved", "RFC 4291, section 2.4")),
        None => None,
    }
}

/// The IPv4 address a mapped IPv6 address stands for: a dual-stack socket reaches exactly it.
fn mapped_v4(address: IpAddr) -> Option<IpAddr> {
    match address {
        IpAddr::V6(ip) => ip.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
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

    /// One address in every row of both IANA special-purpose registries, and each form that
    /// embeds an IPv4 address (mapped, compatible, NAT64, 6to4) around a forbidden one.
    #[test]
    fn every_special_purpose_address_and_embedded_form_is_refused() {
        let policy = AddressPolicy::default();
        let let_through = [
            // IPv4 (RFC 6890 registry), one per row.
            "0.1.2.3",
            "0.0.0.0",
            "10.9.8.7",
            "100.127.255.254",
            "127.5.5.5",
            "169.254.3.4",
            "169.254.169.254",
            "172.31.255.255",
            "192.0.0.77",
            "192.0.0.5",
            "192.0.0.8",
            "192.0.0.9",
            "192.0.0.10",
            "192.0.0.170",
            "192.0.0.171",
            "192.0.2.44",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.255.1",
            "192.175.48.6",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.9",
            "203.0.113.200",
            "240.1.2.3",
            "255.255.255.255",
            "224.0.0.251",
            "239.255.255.250",
            // IPv6 (RFC 6890 registry), one per row.
            "::1",
            "::",
            "64:ff9b:1::a00:1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:1::1",
            "2001:1::2",
            "2001:1::3",
            "2001:2::9",
            "2001:3::9",
            "2001:4:112::9",
            "2001:10::9",
            "2001:20::9",
            "2001:30::9",
            "2001:1ff:ffff::1",
            "2001:db8::1",
            "2620:4f:8000::1",
            "3fff:fff::1",
            "5f00::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "4000::1",
            // IPv4 inside IPv6: mapped, compatible, NAT64 and 6to4 forms.
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::7f00:1",
            "::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::c612:1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c000:22a::1",
        ]
        .into_iter()
        .filter(|address| policy.check(ip(address)).is_ok())
        .collect::<Vec<_>>();
        assert!(let_through.is_empty(), "let through: {let_through:?}");
        // What the same forms embed around a public address is that address: allowed.
        for public in [
            "93.184.216.34",
            "192.0.1.1",
            "198.20.0.1",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    /// Every row of both tables: its first and last address are refused, unless the row's
    /// addresses carry an IPv4 address (those forms are checked above, both ways).
    #[test]
    fn every_registry_row_is_refused_from_end_to_end() {
        let policy = AddressPolicy::default();
        for row in IPV4_SPECIAL {
            assert!(
                row.rfc.starts_with("RFC") || row.rfc.contains("RFC"),
                "{row:?}"
            );
            let first = u32::from(row.network);
            let last = first | (u32::MAX.checked_shr(u32::from(row.prefix)).unwrap_or(0));
            for address in [first, last] {
                let ip = IpAddr::V4(Ipv4Addr::from(address));
                assert!(policy.check(ip).is_err(), "{ip} in {row:?}");
            }
        }
        for row in IPV6_SPECIAL {
            assert!(row.rfc.contains("RFC"), "{row:?}");
            if !matches!(row.verdict, Verdict::Refused) {
                continue;
            }
            let first = u128::from(row.network);
            let last = first | (u128::MAX.checked_shr(u32::from(row.prefix)).unwrap_or(0));
            for address in [first, last] {
                let ip = IpAddr::V6(Ipv6Addr::from(address));
                assert!(policy.check(ip).is_err(), "{ip} in {row:?}");
            }
        }
        // Every address names the most specific row it is in.
        assert_eq!(
            policy.check(ip("192.0.0.9")),
            Err("port control protocol anycast")
        );
        assert_eq!(
            policy.check(ip("192.0.0.77")),
            Err("IETF protocol assignment")
        );
        assert_eq!(policy.check(ip("2001::1")), Err("Teredo"));
        assert_eq!(
            policy.check(ip("2001:1ff::1")),
            Err("IETF protocol assignment")
        );
        assert_eq!(policy.check(ip("::127.0.0.1")), Err("loopback"));
        assert_eq!(policy.check(ip("2002:c612:1::")), Err("benchmarking"));
        assert_eq!(policy.check(ip("fec0::1")), Err("site-local (deprecated)"));
        assert_eq!(policy.check(ip("4000::1")), Err("reserved"));
    }

    #[test]
    fn the_allow_list_holds_the_mapped_form_of_its_ipv4_networks_only() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        // A translator's address is not the allow-listed host: still refused.
        assert_eq!(policy.check(ip("64:ff9b::7f00:1")), Err("loopback"));
        assert_eq!(policy.check(ip("2002:7f00:1::1")), Err("loopback"));
        assert_eq!(policy.check(ip("::ffff:10.0.0.1")), Err("private"));
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
        // The refusal says what the address is, where that is set aside, and how to allow it.
        let refused = policy.check_url("http://[::7f00:1]/").await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "[::7f00:1] resolves to ::7f00:1, a loopback address (RFC 1122, section 3.2.1.3), \
             which Junction may not reach; to allow it, add it to `allowed_networks` in \
             `[dispatcher]` (for example `allowed_networks = [\"::7f00:1\"]`, or a range such \
             as \"127.0.0.0/8\")"
        );
        let allowed = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(allowed.check_url("http://127.0.0.1:9/hook").await.is_ok());
    }

    #[test]
    fn literal_hosts_are_judged_without_resolving_and_names_are_left_to_the_resolver() {
        let policy = AddressPolicy::default();
        let url = |text: &str| Url::parse(text).unwrap();
        assert!(matches!(
            policy.check_literal_host(&url("http://[::ffff:10.0.0.1]/")),
            Err(UrlError::Forbidden {
                kind: "private",
                ..
            })
        ));
        assert!(matches!(
            policy.check_literal_host(&url("http://127.0.0.1:8080/")),
            Err(UrlError::Forbidden {
                kind: "loopback",
                ..
            })
        ));
        assert_eq!(
            policy.check_literal_host(&url("http://93.184.216.34/")),
            Ok(())
        );
        assert_eq!(policy.check_literal_host(&url("http://localhost/")), Ok(()));
        let allowed = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(
            allowed.check_literal_host(&url("http://127.0.0.1/")),
            Ok(())
        );
    }
}
