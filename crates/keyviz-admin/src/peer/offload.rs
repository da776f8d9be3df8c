//! Keeping big bodies' CPU and disk work off the tokio workers.
//!
//! A 16 MiB Raft entry or peer body takes a noticeable time to encode, hash, sign, verify,
//! decode, append or apply (up to seconds in a debug build on a loaded 2-core machine). Run
//! directly on a worker thread, that time is stolen from every other task scheduled on it —
//! on a node hosting several Raft groups, the heartbeats and election timers of the *other*
//! groups, which then re-elect although nothing failed. [`off_worker`] runs such work under
//! [`tokio::task::block_in_place`]: the calling worker hands its queue of tasks to another
//! thread first, so the rest of the runtime keeps running while this thread is busy.

use std::time::Instant;

/// Bodies (or entries) of at least this many bytes are worked on off the worker
/// ([`off_worker`]); smaller ones inline. 256 KiB costs a few milliseconds at most even in a
/// debug build, well below the 250 ms heartbeat, while handing a worker's queue to another
/// thread costs tens of microseconds: not worth it for the many small bodies (heartbeats,
/// votes, small writes).
pub const OFF_WORKER_BYTES: usize = 256 * 1024;

/// Runs `f`, whose work grows with `bytes` (a body's or entry's size), without stalling the
/// other tasks of a multi-thread tokio runtime, and returns its result.
///
/// - `bytes < OFF_WORKER_BYTES`: `f` runs inline.
/// - `bytes >= OFF_WORKER_BYTES` on a worker of a multi-thread runtime: `f` runs under
///   [`tokio::task::block_in_place`], so the worker's other tasks move to another thread
///   before `f` starts (tokio starts one if needed, up to its blocking-thread limit).
/// - On a current-thread runtime, or outside any runtime, `f` runs inline (`block_in_place`
///   would panic there, and a current-thread runtime has no other thread to hand tasks to).
///
/// Blocks the calling thread — and the task (and any future joined with it in the same task)
/// that called it — until `f` returns; never an executor's other tasks on a multi-thread
/// runtime. Takes no lock itself (`f` may). `f` must not block on the runtime it was called
/// from (no `Handle::block_on`). A panic in `f` propagates to the caller.
#[track_caller]
pub fn off_worker<R>(bytes: usize, f: impl FnOnce() -> R) -> R {
    if bytes < OFF_WORKER_BYTES || !on_multi_thread_runtime() {
        return f();
    }
    // The call site, for the trace event below (which site's work took how long).
    let site = std::panic::Location::caller();
    tokio::task::block_in_place(|| {
        let started = Instant::now();
        let r = f();
        tracing::trace!(
            bytes,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            %site,
            "big body worked on off the tokio workers"
        );
        r
    })
}

/// Whether the calling thread runs inside a multi-thread tokio runtime (where
/// `block_in_place` is allowed). Lock-free.
fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn big_bodies_run_inline_outside_a_runtime() {
        assert_eq!(off_worker(OFF_WORKER_BYTES * 4, || 7), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn big_bodies_run_inline_on_a_current_thread_runtime() {
        // block_in_place would panic here.
        assert_eq!(off_worker(OFF_WORKER_BYTES * 4, || 7), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_big_body_does_not_stall_the_only_worker() {
        // On the only worker (a spawned task: the test body itself runs on the test thread),
        // the big body's work waits until a task spawned just before it has run, which can
        // only happen if the worker's queue moved to another thread. The bound only keeps a
        // regression from hanging the suite.
        let waited = tokio::spawn(async {
            let ticked = Arc::new(AtomicBool::new(false));
            let t2 = ticked.clone();
            let other = tokio::spawn(async move { t2.store(true, Ordering::SeqCst) });
            let waited = off_worker(OFF_WORKER_BYTES, || {
                let bound = Instant::now() + Duration::from_secs(20);
                while !ticked.load(Ordering::SeqCst) && Instant::now() < bound {
                    std::thread::yield_now();
                }
                ticked.load(Ordering::SeqCst)
            });
            other.await.expect("other task");
            waited
        })
        .await
        .expect("worker task");
        assert!(waited, "another task ran while the big body was worked on");
    }
}
