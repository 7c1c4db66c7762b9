//! The deliveries subgraph: delivery attempts, stats, dead-letter inspection and replay, and the
//! live subscription of delivery events.
//!
//! Empty until the delivery logs issue lands; `junction subgraph deliveries` says so.
