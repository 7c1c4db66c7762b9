//! The server's signal to stop, and its wait for the connections to finish. A connection
//! looks at the signal between requests and waits on it while idle, on every request: so
//! neither takes a lock (a `watch` channel's wait takes one per poll).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;

#[derive(Default)]
struct Signal {
    stopping: AtomicBool,
    /// One waker per open connection (closed ones are forgotten now and then).
    watchers: Mutex<Vec<Weak<AtomicWaker>>>,
}

/// Held by the server.
pub struct Stop {
    signal: Arc<Signal>,
    /// Every watcher holds a sender: when the last is gone, every connection is.
    open: Option<mpsc::Sender<()>>,
    finished: mpsc::Receiver<()>,
}

/// Held by one connection.
pub struct StopWatch {
    signal: Arc<Signal>,
    waker: Arc<AtomicWaker>,
    _open: mpsc::Sender<()>,
}

impl Stop {
    pub fn new() -> Self {
        let (open, finished) = mpsc::channel(1);
        Self {
            signal: Arc::default(),
            open: Some(open),
            finished,
        }
    }

    /// A watch for a new connection.
    pub fn watch(&self) -> Option<StopWatch> {
        let open = self.open.clone()?;
        let waker = Arc::new(AtomicWaker::new());
        let mut watchers = self
            .signal
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Before the list grows, it drops closed connections: it stays near the number open.
        if watchers.len() == watchers.capacity() {
            watchers.retain(|watcher| watcher.strong_count() > 0);
        }
        watchers.push(Arc::downgrade(&waker));
        Some(StopWatch {
            signal: Arc::clone(&self.signal),
            waker,
            _open: open,
        })
    }

    /// Tells every connection to stop; `finished` then waits for them.
    pub fn stop(&mut self) {
        self.signal.stopping.store(true, Ordering::SeqCst);
        self.open = None;
        let watchers = std::mem::take(
            &mut *self
                .signal
                .watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for watcher in watchers.iter().filter_map(Weak::upgrade) {
            watcher.wake();
        }
    }

    /// Resolves when every connection watching has ended.
    pub async fn finished(&mut self) {
        while self.finished.recv().await.is_some() {}
    }
}

impl StopWatch {
    pub fn is_stopping(&self) -> bool {
        self.signal.stopping.load(Ordering::SeqCst)
    }

    /// Resolves once the server stops.
    pub async fn stopped(&self) {
        poll_fn(|cx| {
            // Registered before the look: a stop after it wakes this waker.
            self.waker.register(cx.waker());
            if self.is_stopping() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiting_connections_wake_and_the_server_waits_for_them_to_end() {
        let mut stop = Stop::new();
        let watches: Vec<StopWatch> = (0..3).map(|_| stop.watch().unwrap()).collect();
        let ended: Vec<_> = watches
            .into_iter()
            .map(|watch| {
                tokio::spawn(async move {
                    assert!(!watch.is_stopping());
                    watch.stopped().await;
                    assert!(watch.is_stopping());
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.stop();
        tokio::time::timeout(Duration::from_secs(5), stop.finished())
            .await
            .expect("every watcher ended");
        for task in ended {
            task.await.unwrap();
        }
        assert!(stop.watch().is_none(), "no new connection once stopping");
    }

    #[tokio::test]
    async fn closed_connections_are_forgotten() {
        let stop = Stop::new();
        for _ in 0..1000 {
            drop(stop.watch());
        }
        let kept = stop.signal.watchers.lock().unwrap().len();
        assert!(kept <= 64, "{kept} watchers kept for no open connection");
    }
}
