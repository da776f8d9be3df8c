//! The bounded pool that runs credential checks (argon2 is slow and memory-hard on purpose).
//!
//! At most `workers` checks run at once, each on one of `workers` dedicated threads, and at
//! most `queue` more wait for a worker; any further attempt is refused at once. Dedicated
//! threads matter as much as the count: the allocator keeps a freed argon2 block in the
//! arena of the thread that used it, so checks spread over a growing set of blocking threads
//! keep one block per thread ever used (measured: 400 MB after 20 checks on tokio's blocking
//! pool). With fixed threads the memory of checks stays about `workers` times the argon2
//! memory cost of the stored hashes, however many logins arrive.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, oneshot};

/// Workers used when the configuration asks for the default: the number of cores, at most
/// this many (legitimate logins are rare; more workers only buy an attacker memory).
pub const MAX_DEFAULT_LOGIN_WORKERS: usize = 4;

/// Why a check did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Every worker is busy and the queue is full.
    Busy,
    /// The check panicked or the workers are gone.
    Failed,
}

type Job = Box<dyn FnOnce() + Send>;

/// The pool. Cheap to share; all methods take `&self`. Its threads exit when it is dropped.
pub struct LoginPool {
    /// One permit per worker thread; a job is sent only with a permit, so the channel never
    /// holds more than `workers` jobs.
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    jobs: mpsc::Sender<Job>,
}

/// Gives back a queue place when dropped (also when the waiting request is cancelled).
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LoginPool {
    /// Starts the worker threads. `workers == 0` means the default: cores, capped at
    /// [`MAX_DEFAULT_LOGIN_WORKERS`].
    ///
    /// # Errors
    /// When the OS refuses to start a thread.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Self> {
        let workers = if workers == 0 {
            default_workers()
        } else {
            workers
        };
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("keyviz-login-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = rx.lock().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(LoginPool {
            slots: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            queue,
            jobs,
        })
    }

    /// Runs `check` on a worker thread once one is free. Waits only if fewer than `queue`
    /// others wait already; otherwise returns [`PoolError::Busy`] without waiting. The
    /// worker stays taken until `check` returns, even if the caller is dropped.
    pub async fn run<R, F>(&self, check: F) -> Result<R, PoolError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(PoolError::Busy);
                }
                let _place = QueuePlace(&self.waiting);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| PoolError::Failed)?
            }
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(check));
            drop(permit);
            let _ = tx.send(result);
        });
        self.jobs.send(job).map_err(|_| PoolError::Failed)?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            _ => Err(PoolError::Failed),
        }
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
        let pool = match LoginPool::new(1, 1) {
            Ok(p) => Arc::new(p),
            Err(e) => panic!("{e}"),
        };
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
        let boom: Result<u8, _> = pool.run(|| panic!("check panicked")).await;
        assert_eq!(boom, Err(PoolError::Failed));
        assert_eq!(
            pool.run(|| 5).await,
            Ok(5),
            "a panic does not lose the worker"
        );
    }

    #[test]
    fn default_is_cores_capped() {
        let w = default_workers();
        assert!((1..=MAX_DEFAULT_LOGIN_WORKERS).contains(&w));
        let p = match LoginPool::new(0, 0) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p.slots.available_permits(), w);
    }
}
