//! Networks as an operator writes them in configuration: a range (`10.1.0.0/16`) or a single
//! address (`127.0.0.1`, `::1`), which is its own one-address range.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is neither an IP address (127.0.0.1, ::1) nor a range (10.0.0.0/8, fd00::/8)")]
pub struct InvalidNetwork(pub String);

/// `10.1.0.0/16` or `127.0.0.1` (as `127.0.0.1/32`).
pub fn parse_network(text: &str) -> Result<IpNet, InvalidNetwork> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| InvalidNetwork(text.to_owned()))
}

/// A list of [`parse_network`]s, for `#[serde(deserialize_with = ...)]`.
pub fn deserialize_networks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| parse_network(text).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ranges_both_parse() {
        assert_eq!(
            parse_network("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_network("10.1.0.0/16").unwrap().to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(
            parse_network("localhost").unwrap_err().to_string(),
            "\"localhost\" is neither an IP address (127.0.0.1, ::1) nor a range (10.0.0.0/8, fd00::/8)"
        );
        assert!(parse_network("10.0.0.0/33").is_err());
    }
}
