//! The bounded pool that runs credential checks (argon2 is slow and memory-hard on purpose).
//!
//! At most `workers` checks run at once, each on a blocking thread, and at most `queue` more
//! wait for a worker; any further attempt is refused at once. Memory used by checks is
//! therefore bounded by `workers` times the argon2 memory cost of the stored hashes, however
//! many logins arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// Workers used when the configuration asks for the default: the number of cores, at most
/// this many (legitimate logins are rare; more workers only buy an attacker memory).
pub const MAX_DEFAULT_LOGIN_WORKERS: usize = 4;

/// Why a check did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolError {
    /// Every worker is busy and the queue is full.
    Busy,
    /// The blocking task panicked or the runtime is shutting down.
    Failed,
}

/// The pool. Cheap to share; all methods take `&self`.
pub(crate) struct LoginPool {
    workers: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

/// Gives back a queue place when dropped (also when the waiting request is cancelled).
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LoginPool {
    /// `workers == 0` means the default: cores, capped at [`MAX_DEFAULT_LOGIN_WORKERS`].
    pub(crate) fn new(workers: usize, queue: usize) -> Self {
        let workers = if workers == 0 {
            default_workers()
        } else {
            workers
        };
        LoginPool {
            workers: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            queue,
        }
    }

    /// Runs `check` on a blocking thread once a worker is free. Waits only if fewer than
    /// `queue` others wait already; otherwise returns [`PoolError::Busy`] without waiting.
    /// The worker stays taken until `check` returns, even if the caller is dropped.
    pub(crate) async fn run<R, F>(&self, check: F) -> Result<R, PoolError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let permit = match self.workers.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(PoolError::Busy);
                }
                let _place = QueuePlace(&self.waiting);
                self.workers
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| PoolError::Failed)?
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check()
        })
        .await
        .map_err(|_| PoolError::Failed)
    }
}

/// Cores (as the OS reports them to this process), at least 1, at most
/// [`MAX_DEFAULT_LOGIN_WORKERS`].
#[must_use]
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .clamp(1, MAX_DEFAULT_LOGIN_WORKERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn excess_checks_are_refused_at_once_and_the_queue_drains() {
        let pool = Arc::new(LoginPool::new(1, 1));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let p = pool.clone();
        let first = tokio::spawn(async move {
            p.run(move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(10));
                1
            })
            .await
        });
        // The worker is taken once the check runs.
        assert!(
            tokio::task::spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(10)))
                .await
                .is_ok_and(|r| r.is_ok())
        );
        let p = pool.clone();
        let queued = tokio::spawn(async move { p.run(|| 2).await });
        // Wait until the second call holds the only queue place.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.waiting.load(Ordering::Acquire) == 0 {
            assert!(std::time::Instant::now() < deadline, "never queued");
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 3).await, Err(PoolError::Busy));
        let _ = release_tx.send(());
        assert_eq!(first.await.ok(), Some(Ok(1)));
        assert_eq!(queued.await.ok(), Some(Ok(2)));
        assert_eq!(pool.waiting.load(Ordering::Acquire), 0);
        assert_eq!(pool.run(|| 4).await, Ok(4));
    }

    #[test]
    fn default_is_cores_capped() {
        let w = default_workers();
        assert!((1..=MAX_DEFAULT_LOGIN_WORKERS).contains(&w));
        let p = LoginPool::new(0, 0);
        assert_eq!(p.workers.available_permits(), w);
    }
}
