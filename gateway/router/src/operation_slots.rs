//! How many operations each client runs at once over WebSocket and server-sent events, over
//! all its connections: a slot per running operation, given back when it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use junction_schema::Identity;
use serde_json::{Value, json};

/// Counts the operations each client runs, over all its connections.
#[derive(Default)]
pub struct OperationSlots {
    running: Mutex<HashMap<String, usize>>,
}

/// One operation counted against its client until dropped.
pub struct Slot {
    limits: Arc<OperationSlots>,
    client: String,
}

impl OperationSlots {
    /// A slot for `client`, or `None` when it already runs `max`.
    pub fn acquire(self: &Arc<Self>, client: &str, max: usize) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let count = running.entry(client.to_owned()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            limits: Arc::clone(self),
            client: client.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self
            .limits
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = running.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.client);
            }
        }
    }
}

/// Who counts as one client: an identity (tenant and subject), else the connection itself.
pub fn client_key(identity: Option<&Identity>, connection: &str) -> String {
    match identity {
        Some(identity) => format!("{}/{}", identity.tenant, identity.subject),
        None => format!("anonymous/{connection}"),
    }
}

/// The errors refusing an operation over the per-client maximum.
pub fn too_many_operations(max: usize) -> Vec<Value> {
    vec![json!({
        "message": format!("this client already runs {max} operations at once; stop one first"),
        "extensions": {"code": "RATE_LIMITED"},
    })]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_given_back() {
        let limits = Arc::new(OperationSlots::default());
        let first = limits.acquire("t/a", 2).expect("first");
        let _second = limits.acquire("t/a", 2).expect("second");
        assert!(limits.acquire("t/a", 2).is_none(), "a third is refused");
        assert!(limits.acquire("t/b", 2).is_some(), "another client is not");
        drop(first);
        assert!(
            limits.acquire("t/a", 2).is_some(),
            "a slot given back is free"
        );
    }
}
