//! What the Federation specifications name, shared by composition and by the policies read
//! from a supergraph.

/// A directive's name without the `federation__` prefix subgraphs may write it with.
pub fn unprefixed(name: &str) -> &str {
    name.strip_prefix("federation__").unwrap_or(name)
}
