//! Request coalescing: identical concurrent requests share one computation, and a finished
//! result is reused for a short window.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

/// How a caller got its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// This caller started the computation.
    Leader,
    /// The computation was already running; this caller waited for it.
    Shared,
    /// A finished result younger than the reuse window was returned.
    Reused,
}

type Slot<V> = Shared<BoxFuture<'static, (V, Instant)>>;

/// Keyed single-flight with result reuse. The computation runs in its own tokio task, so
/// a caller that goes away does not cancel it for the others. Entries are dropped once
/// their result is older than the reuse window (checked on every call).
pub struct SingleFlight<K, V> {
    reuse: Duration,
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone + Send + Sync + 'static,
{
    /// Reuses finished results for `reuse` (zero: only concurrent callers share).
    #[must_use]
    pub fn new(reuse: Duration) -> Self {
        SingleFlight {
            reuse,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the value for `key`: joins a running computation, reuses a fresh result, or
    /// starts `make()` in a new task. `on_panic` supplies the value if that task panics.
    pub async fn run<F>(&self, key: K, make: impl FnOnce() -> F, on_panic: fn() -> V) -> (V, Joined)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (slot, joined) = {
            let mut slots = self.slots.lock();
            let now = Instant::now();
            let reuse = self.reuse;
            slots.retain(|_, s| match s.peek() {
                Some((_, done)) => now.saturating_duration_since(*done) < reuse,
                None => true,
            });
            match slots.get(&key) {
                Some(s) => {
                    let joined = if s.peek().is_some() {
                        Joined::Reused
                    } else {
                        Joined::Shared
                    };
                    (s.clone(), joined)
                }
                None => {
                    let fut = make();
                    let handle = tokio::spawn(async move {
                        let v = fut.await;
                        (v, Instant::now())
                    });
                    let slot: Slot<V> = async move {
                        match handle.await {
                            Ok(out) => out,
                            Err(_) => (on_panic(), Instant::now()),
                        }
                    }
                    .boxed()
                    .shared();
                    slots.insert(key, slot.clone());
                    (slot, Joined::Leader)
                }
            }
        };
        (slot.await.0, joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_computation() {
        let sf = Arc::new(SingleFlight::<u32, usize>::new(Duration::ZERO));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let sf = sf.clone();
            let runs = runs.clone();
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                sf.run(
                    1,
                    move || async move {
                        gate.notified().await;
                        // Ordering: only a counter; the join below synchronises.
                        runs.fetch_add(1, Ordering::Relaxed) + 1
                    },
                    || 0,
                )
                .await
            }));
        }
        // Let every caller register before releasing the single computation.
        tokio::task::yield_now().await;
        for _ in 0..50 {
            if sf.slots.lock().len() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        let mut leaders = 0;
        for t in tasks {
            let (v, joined) = t.await.unwrap_or((0, Joined::Leader));
            assert_eq!(v, 1);
            if joined == Joined::Leader {
                leaders += 1;
            }
        }
        assert_eq!(leaders, 1);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn finished_result_is_reused_within_window_only() {
        let sf = SingleFlight::<u32, u32>::new(Duration::from_millis(200));
        let (v, j) = sf.run(7, || async { 1 }, || 0).await;
        assert_eq!((v, j), (1, Joined::Leader));
        let (v, j) = sf.run(7, || async { 2 }, || 0).await;
        assert_eq!((v, j), (1, Joined::Reused));
        let (v, j) = sf.run(8, || async { 3 }, || 0).await;
        assert_eq!((v, j), (3, Joined::Leader));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (v, j) = sf.run(7, || async { 4 }, || 0).await;
        assert_eq!((v, j), (4, Joined::Leader));
    }

    #[tokio::test]
    async fn panicking_computation_yields_fallback() {
        let sf = SingleFlight::<u32, u32>::new(Duration::ZERO);
        let (v, _) = sf.run(1, || async { panic!("boom") }, || 42).await;
        assert_eq!(v, 42);
    }
}
