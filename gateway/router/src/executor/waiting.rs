//! The time a request spends waiting on subgraphs: the union of its fetches' time in flight
//! (two parallel fetches of 10 ms are 10 ms of waiting, not 20), so that its latency less
//! this is the router's own time, the overhead the service objective bounds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use junction_federation::supergraph::Graph;
use serde_json::Value;

use super::{RequestContext, SubgraphError, SubgraphExecutor};

/// A [`SubgraphExecutor`] that measures the waiting of the fetches it passes on.
pub struct Waiting<'c> {
    inner: &'c dyn SubgraphExecutor,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    in_flight: u32,
    /// When the fetches in flight began to be (none before).
    since: Option<Instant>,
    total: Duration,
}

impl<'c> Waiting<'c> {
    pub fn new(inner: &'c dyn SubgraphExecutor) -> Self {
        Self {
            inner,
            state: Mutex::default(),
        }
    }

    /// The time at least one fetch was in flight, so far.
    pub fn total(&self) -> Duration {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.total + state.since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn begin(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.in_flight == 0 {
            state.since = Some(Instant::now());
        }
        state.in_flight += 1;
    }

    fn end(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0
            && let Some(since) = state.since.take()
        {
            state.total += since.elapsed();
        }
    }
}

impl SubgraphExecutor for Waiting<'_> {
    fn execute<'a>(
        &'a self,
        graph: &'a Graph,
        body: String,
        request: &'a RequestContext<'a>,
    ) -> BoxFuture<'a, Result<Value, SubgraphError>> {
        async move {
            self.begin();
            let answer = self.inner.execute(graph, body, request).await;
            self.end();
            answer
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two overlapping fetches are one stretch of waiting: it ends with the last of them.
    #[test]
    fn overlapping_fetches_count_once() {
        let never = NeverCalled;
        let waiting = Waiting::new(&never);
        let stretch = |w: &Waiting<'_>| {
            let state = w.state.lock().unwrap();
            (state.since.is_some(), state.total)
        };
        waiting.begin();
        waiting.begin();
        waiting.end();
        assert_eq!(
            stretch(&waiting),
            (true, Duration::ZERO),
            "one still in flight"
        );
        std::thread::sleep(Duration::from_millis(2));
        waiting.end();
        let (open, total) = stretch(&waiting);
        assert!(!open && total >= Duration::from_millis(2), "{total:?}");
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(waiting.total(), total, "nothing in flight, nothing added");
    }

    struct NeverCalled;

    impl SubgraphExecutor for NeverCalled {
        fn execute<'a>(
            &'a self,
            _: &'a Graph,
            _: String,
            _: &'a RequestContext<'a>,
        ) -> BoxFuture<'a, Result<Value, SubgraphError>> {
            unreachable!("the test calls begin and end itself")
        }
    }
}
