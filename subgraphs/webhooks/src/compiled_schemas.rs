//! Compiled JSON Schemas of event types, kept across publishes. Compiling a schema costs far
//! more than validating a payload against it, and an event type's schema rarely changes; the
//! cache is keyed by the schema's own text, so a changed schema is simply another entry.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use sha2::{Digest, Sha256};

use crate::WebhookError;
use crate::event_types::compile_schema;

/// Schemas kept at most; past that the cache starts over (a process sees few event types).
const CAPACITY: usize = 1024;

static COMPILED: LazyLock<Mutex<HashMap<[u8; 32], Arc<jsonschema::Validator>>>> =
    LazyLock::new(Mutex::default);

/// The validator for `schema`, compiled once per process.
pub(crate) fn validator(
    schema: &serde_json::Value,
) -> Result<Arc<jsonschema::Validator>, WebhookError> {
    let key: [u8; 32] = Sha256::digest(schema.to_string().as_bytes()).into();
    if let Some(found) = lock().get(&key) {
        return Ok(Arc::clone(found));
    }
    // Compiled outside the lock: publishes of other event types need not wait for it.
    let compiled = Arc::new(compile_schema(schema)?);
    let mut cache = lock();
    if cache.len() >= CAPACITY {
        cache.clear();
    }
    cache.insert(key, Arc::clone(&compiled));
    Ok(compiled)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<[u8; 32], Arc<jsonschema::Validator>>> {
    // A panic elsewhere while holding the lock leaves the map whole: keep using it.
    COMPILED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_schema_is_compiled_once_and_a_changed_one_anew() {
        let schema = json!({"type": "object", "required": ["compiled-once"]});
        let first = validator(&schema).unwrap();
        let again = validator(&schema).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!first.is_valid(&json!({})));

        let changed = json!({"type": "object", "required": ["compiled-anew"]});
        let other = validator(&changed).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert!(other.is_valid(&json!({"compiled-anew": 1})));
        assert!(validator(&json!({"type": 12})).is_err());
    }
}
