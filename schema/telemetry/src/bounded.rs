//! Labels whose values come from outside: operation names that clients choose, endpoint ids
//! that customers create. Each distinct value is a series of its own in every metric it
//! labels, so a client sending random operation names could otherwise grow the router's
//! memory and every scrape without limit. A [`BoundedLabel`] admits the first `bound` values
//! it sees and counts every later one as [`OTHER`] (until the process restarts); the values
//! admitted stay admitted, so a series never changes meaning mid-life.
//!
//! [`Handles`] keeps the registered counters and histograms by a small copyable key, so
//! that recording on a request path looks a handle up instead of building a label set.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::DEFAULT_MAX_LABEL_VALUES;

/// The value every value past the bound is counted as.
pub const OTHER: &str = "other";

static LABEL_BOUND: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_LABEL_VALUES);

/// Sets the bound of the labels created after this call (`[metrics] max_label_values`): the
/// binary calls it once at start, before anything records.
pub fn set_label_bound(bound: usize) {
    LABEL_BOUND.store(bound.max(1), Ordering::Relaxed);
}

/// The configured bound on a label's distinct values.
pub fn label_bound() -> usize {
    LABEL_BOUND.load(Ordering::Relaxed)
}

/// One admitted value of a [`BoundedLabel`] (or [`OTHER`]): copyable, so a key of handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LabelId(u32);

impl LabelId {
    pub const OTHER: LabelId = LabelId(0);
}

/// A label taking at most `bound` distinct values besides [`OTHER`].
pub struct BoundedLabel {
    bound: usize,
    admitted: RwLock<Admitted>,
}

struct Admitted {
    ids: HashMap<Box<str>, LabelId>,
    /// By id; the first is [`OTHER`].
    values: Vec<Arc<str>>,
}

impl BoundedLabel {
    pub fn new(bound: usize) -> Self {
        Self {
            bound: bound.max(1),
            admitted: RwLock::new(Admitted {
                ids: HashMap::new(),
                values: vec![Arc::from(OTHER)],
            }),
        }
    }

    /// The id `value` is counted under: its own while fewer than `bound` values were seen,
    /// [`LabelId::OTHER`] after. A value seen before costs a read lock and a hash.
    pub fn id(&self, value: &str) -> LabelId {
        {
            let admitted = self.admitted.read().unwrap_or_else(|p| p.into_inner());
            if let Some(id) = admitted.ids.get(value) {
                return *id;
            }
            if admitted.ids.len() >= self.bound {
                return LabelId::OTHER;
            }
        }
        let mut admitted = self.admitted.write().unwrap_or_else(|p| p.into_inner());
        // Another request may have admitted it, or filled the last place, meanwhile.
        if let Some(id) = admitted.ids.get(value) {
            return *id;
        }
        if admitted.ids.len() >= self.bound {
            return LabelId::OTHER;
        }
        let Ok(index) = u32::try_from(admitted.values.len()) else {
            return LabelId::OTHER;
        };
        let id = LabelId(index);
        admitted.values.push(Arc::from(value));
        admitted.ids.insert(Box::from(value), id);
        id
    }

    /// The value an id stands for.
    pub fn value(&self, id: LabelId) -> Arc<str> {
        let admitted = self.admitted.read().unwrap_or_else(|p| p.into_inner());
        admitted
            .values
            .get(id.0 as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(OTHER))
    }

    /// Values admitted so far (not counting [`OTHER`]).
    pub fn len(&self) -> usize {
        self.admitted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Registered metric handles by key: a handle is registered (its label set built, once) the
/// first time its key is seen; after that, recording is a read lock, a hash and an atomic
/// add. The keys' count is what the caller bounds (with [`BoundedLabel`] ids, enums, or
/// names from the configuration).
pub struct Handles<K, V> {
    map: RwLock<HashMap<K, V>>,
}

impl<K, V> Default for Handles<K, V> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Handles<K, V> {
    /// The handle for `key`, registered by `register` (which gives the owned key too) the
    /// first time.
    pub fn get<Q>(&self, key: &Q, register: impl FnOnce() -> (K, V)) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(handle) = self.map.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return handle.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = map.get(key) {
            return handle.clone();
        }
        let (owned, handle) = register();
        map.insert(owned, handle.clone());
        handle
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use metrics_exporter_prometheus::PrometheusBuilder;
    use rand::Rng;
    use rand::distr::Alphanumeric;

    use super::*;

    fn random_name(rng: &mut impl Rng) -> String {
        (0..12)
            .map(|_| char::from(rng.sample(Alphanumeric)))
            .collect()
    }

    #[test]
    fn the_first_values_are_admitted_and_the_rest_are_other() {
        let label = BoundedLabel::new(2);
        let a = label.id("a");
        let b = label.id("b");
        assert_ne!(a, b);
        assert_eq!(label.id("c"), LabelId::OTHER);
        assert_eq!(label.id("a"), a, "an admitted value keeps its id");
        assert_eq!(&*label.value(b), "b");
        assert_eq!(&*label.value(LabelId::OTHER), OTHER);
        assert_eq!(label.len(), 2);
    }

    /// Ten thousand random names, as a client could send them, recorded through a real
    /// Prometheus recorder: the scrape holds at most the bound of them, plus `other`, and
    /// no count is lost.
    #[test]
    fn ten_thousand_random_values_stay_within_the_bound() {
        let bound = 100;
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let label = BoundedLabel::new(bound);
        let counters: Handles<LabelId, metrics::Counter> = Handles::default();
        let mut rng = rand::rng();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..10_000 {
                let id = label.id(&random_name(&mut rng));
                counters
                    .get(&id, || {
                        let value = label.value(id).to_string();
                        (
                            id,
                            metrics::counter!("test_requests_total", "name" => value),
                        )
                    })
                    .increment(1);
            }
        });
        let text = handle.render();
        let series: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("test_requests_total{"))
            .collect();
        assert!(series.len() <= bound + 1, "{} series", series.len());
        let values: HashSet<&str> = series
            .iter()
            .filter_map(|line| line.split('"').nth(1))
            .collect();
        assert!(values.contains(OTHER), "{text}");
        let total: u64 = series
            .iter()
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total, 10_000, "every request is counted somewhere");
        assert_eq!(label.len(), bound);
    }

    #[test]
    fn racing_threads_admit_no_more_than_the_bound() {
        let label = Arc::new(BoundedLabel::new(50));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let label = Arc::clone(&label);
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        label.id(&format!("{t}-{i}"));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(label.len(), 50);
    }
}
