//! The test source's connector, wrapped: to stall for ever after some checkpoints (a worker
//! that hangs, then is killed), to wait at a gate after its first checkpoint, to watch how
//! many reads of each connection run at once, or to answer a rate limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::ready;
use futures_util::stream;
use junction_connector_sdk::{
    BoxFuture, Connection, Connector, ConnectorError, Message, MessageStream, Spec, State,
    StreamSpec,
};

#[derive(Clone)]
pub enum Behaviour {
    /// Yields up to this many checkpoints, then nothing more, never ending.
    StallAfter(usize),
    /// After the first checkpoint, waits for the gate to open.
    GateAfterFirst(Arc<tokio::sync::Semaphore>),
    /// Counts reads at once per `config.tag`, keeping the highest; each message a little late.
    Watch(Arc<Watch>),
    /// Connections with `config.tag` equal to this are rate limited for two minutes.
    RateLimit(String),
}

#[derive(Default)]
pub struct Watch {
    now: Mutex<HashMap<String, usize>>,
    pub most: AtomicUsize,
    pub reads: AtomicUsize,
}

struct Reading {
    watch: Arc<Watch>,
    tag: String,
}

impl Drop for Reading {
    fn drop(&mut self) {
        if let Ok(mut now) = self.watch.now.lock()
            && let Some(n) = now.get_mut(&self.tag)
        {
            *n -= 1;
        }
    }
}

pub struct Wrapped {
    pub inner: Arc<dyn Connector>,
    pub behaviour: Behaviour,
}

impl Wrapped {
    pub fn wrap(inner: Arc<dyn Connector>, behaviour: Behaviour) -> Arc<dyn Connector> {
        Arc::new(Self { inner, behaviour })
    }
}

fn tag(connection: &Connection) -> String {
    connection.config["tag"].as_str().unwrap_or("").to_owned()
}

impl Connector for Wrapped {
    fn spec(&self) -> Spec {
        self.inner.spec()
    }

    fn check<'a>(
        &'a self,
        connection: &'a Connection,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        self.inner.check(connection)
    }

    fn discover<'a>(
        &'a self,
        connection: &'a Connection,
    ) -> BoxFuture<'a, Result<Vec<StreamSpec>, ConnectorError>> {
        self.inner.discover(connection)
    }

    fn read<'a>(
        &'a self,
        connection: &'a Connection,
        stream: &'a str,
        state: Option<State>,
    ) -> MessageStream<'a> {
        let inner = self.inner.read(connection, stream, state);
        match &self.behaviour {
            Behaviour::StallAfter(limit) => {
                let limit = *limit;
                let head = inner.scan(0usize, move |seen, message| {
                    if *seen >= limit {
                        return ready(None);
                    }
                    if matches!(message, Ok(Message::Checkpoint(_))) {
                        *seen += 1;
                    }
                    ready(Some(message))
                });
                Box::pin(head.chain(stream::pending()))
            }
            Behaviour::GateAfterFirst(gate) => {
                let gate = Arc::clone(gate);
                let seen = Arc::new(AtomicUsize::new(0));
                Box::pin(inner.then(move |message| {
                    let gate = Arc::clone(&gate);
                    let seen = Arc::clone(&seen);
                    async move {
                        if seen.load(Ordering::SeqCst) > 0 {
                            drop(gate.acquire().await);
                        }
                        if matches!(message, Ok(Message::Checkpoint(_))) {
                            seen.fetch_add(1, Ordering::SeqCst);
                        }
                        message
                    }
                }))
            }
            Behaviour::Watch(watch) => {
                let tag = tag(connection);
                {
                    let mut now = watch.now.lock().unwrap();
                    let n = now.entry(tag.clone()).or_default();
                    *n += 1;
                    watch.most.fetch_max(*n, Ordering::SeqCst);
                }
                watch.reads.fetch_add(1, Ordering::SeqCst);
                let reading = Reading {
                    watch: Arc::clone(watch),
                    tag,
                };
                Box::pin(inner.then(move |message| {
                    let _held = &reading;
                    async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        message
                    }
                }))
            }
            Behaviour::RateLimit(limited) => {
                if tag(connection) == *limited {
                    Box::pin(stream::once(ready(Err(ConnectorError::rate_limited(
                        "429: slow down",
                        Some(Duration::from_secs(120)),
                    )))))
                } else {
                    inner
                }
            }
        }
    }
}
