//! Caches bounded by bytes. Every cache the router keeps for what clients send (documents,
//! plans, persisted queries, token answers, keys) is one of these (a JWKS document is one
//! value, bounded in size where it is fetched), so memory stays under the
//! configured bound whatever arrives; when full, entries not used recently go first
//! (`quick_cache`'s CLOCK-Pro policy, which also keeps one scan of new entries from
//! flushing the ones in use).

use std::hash::Hash;

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, Equivalent, OptionsBuilder, Weighter};

/// The `[gateway.caches]` section: each cache's bound in bytes (`0` turns that cache off).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Parsed and validated operations, by query text.
    pub documents_bytes: u64,
    /// Query plans.
    pub plans_bytes: u64,
    /// Automatic persisted queries' texts, by hash.
    pub persisted_queries_bytes: u64,
    /// Token introspection answers (`[gateway.introspection]`).
    pub introspection_bytes: u64,
    /// Verified API keys, each kept for `api_key_cache_ttl`.
    pub api_keys_bytes: u64,
}

const MIB: u64 = 1024 * 1024;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            documents_bytes: 64 * MIB,
            plans_bytes: 64 * MIB,
            persisted_queries_bytes: 16 * MIB,
            introspection_bytes: 8 * MIB,
            api_keys_bytes: 8 * MIB,
        }
    }
}

/// A concurrent cache holding at most `bytes` of values, as each value's weight says.
/// Values are cloned out: hold large ones in an `Arc`.
pub struct BoundedCache<K, V> {
    entries: Option<Cache<K, Weighed<V>, ByWeight>>,
}

#[derive(Clone)]
struct Weighed<V> {
    value: V,
    bytes: u64,
}

#[derive(Clone)]
struct ByWeight;

impl<K, V> Weighter<K, Weighed<V>> for ByWeight {
    fn weight(&self, _key: &K, value: &Weighed<V>) -> u64 {
        value.bytes
    }
}

const SHARDS: usize = 4;

/// What an entry costs beyond its own bytes: the table's slot, hashes, bookkeeping.
const ENTRY_OVERHEAD: u64 = 64;

impl<K: Eq + Hash, V: Clone> BoundedCache<K, V> {
    /// `bytes` in all; `typical_entry` sizes the table up front (no behaviour rides on it).
    pub fn new(bytes: u64, typical_entry: u64) -> Self {
        let entries = (bytes > 0).then(|| {
            let items = (bytes / typical_entry.max(1)).clamp(16, 1 << 16) as usize;
            // A few shards, whatever the machine: each shard holds its share of `bytes`, and
            // one per core times four (the crate's default) would leave a 64-core router
            // too small a share for one large document.
            let options = OptionsBuilder::new()
                .shards(SHARDS)
                .estimated_items_capacity(items)
                .weight_capacity(bytes)
                .build()
                .expect("both capacities are set");
            Cache::with_options(
                options,
                ByWeight,
                DefaultHashBuilder::default(),
                DefaultLifecycle::default(),
            )
        });
        Self { entries }
    }

    pub fn get<Q: Hash + Equivalent<K> + ?Sized>(&self, key: &Q) -> Option<V> {
        self.entries.as_ref()?.get(key).map(|entry| entry.value)
    }

    /// Keeps `value`, which with its key takes about `bytes`; an entry larger than the
    /// cache's share for it is not kept.
    pub fn insert(&self, key: K, value: V, bytes: u64) {
        if let Some(entries) = &self.entries {
            entries.insert(
                key,
                Weighed {
                    value,
                    bytes: bytes + ENTRY_OVERHEAD,
                },
            );
        }
    }

    pub fn remove<Q: Hash + Equivalent<K> + ?Sized>(&self, key: &Q) {
        if let Some(entries) = &self.entries {
            entries.remove(key);
        }
    }

    /// The bytes held now, as weighed.
    pub fn weight(&self) -> u64 {
        self.entries.as_ref().map_or(0, Cache::weight)
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_bytes_and_keeps_what_is_used() {
        let cache = BoundedCache::new(100_000, 1_000);
        cache.insert("hot".to_owned(), 1, 1_000);
        for i in 0..1_000 {
            cache.insert(format!("cold {i}"), i, 1_000);
            // Used all along: it stays while the one-off entries pass through.
            assert_eq!(cache.get(&"hot".to_owned()), Some(1));
            assert!(cache.weight() <= 100_000, "{}", cache.weight());
        }
        assert!(cache.len() < 100, "{}", cache.len());
        assert!(cache.len() > 10, "{}", cache.len());
    }

    #[test]
    fn an_entry_larger_than_the_cache_is_not_kept() {
        let cache = BoundedCache::new(10_000, 1_000);
        cache.insert(1, "small", 100);
        cache.insert(2, "huge", 1_000_000);
        assert_eq!(cache.get(&1), Some("small"));
        assert_eq!(cache.get(&2), None);
        assert!(cache.weight() <= 10_000);
    }

    #[test]
    fn zero_bytes_turns_it_off() {
        let cache = BoundedCache::new(0, 1_000);
        cache.insert(1, 1, 1);
        assert_eq!(cache.get(&1), None);
        assert!(cache.is_empty());
    }
}
