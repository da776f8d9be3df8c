//! The node's only door to the KeyViz sampler.
//!
//! Dispatch and the state machines call these methods; nothing else in the crate names
//! `keyviz::Sampler`. When sampling is disabled (`--keyviz-disabled`, used to measure its
//! overhead) every method is a no-op.
//!
//! Every observation carries the time it belongs to: a read the time it was served, a write the
//! `now_unix_ms` its proposer stamped in the log entry, so the sampler files it in that step
//! window however late it is observed. Closing a step ([`Sampling::close_step`]) seals and
//! publishes on the caller's task (no I/O) and hands the records to be stored to a
//! [`Persister`] thread, so Raft apply and queries never wait on the history store.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use keyviz::{ColumnRecord, HistoryStore, Published, ReadRole, Sampler};

use crate::routing::Route;

/// Optional shared sampler; cheap to clone.
#[derive(Clone, Default)]
pub struct Sampling {
    sampler: Option<Arc<Sampler>>,
    /// Where published columns are persisted (by a [`Persister`]), if anywhere.
    store: Option<Arc<dyn HistoryStore>>,
}

impl Sampling {
    /// Sampling into `sampler`, with in-memory history only.
    pub fn enabled(sampler: Arc<Sampler>) -> Self {
        Self {
            sampler: Some(sampler),
            store: None,
        }
    }

    /// Sampling into `sampler`, persisting its published columns into `store`
    /// (from a dedicated thread; see [`Sampling::persister`]).
    pub fn persisted(sampler: Arc<Sampler>, store: Arc<dyn HistoryStore>) -> Self {
        Self {
            sampler: Some(sampler),
            store: Some(store),
        }
    }

    /// No sampling at all.
    pub fn disabled() -> Self {
        Self {
            sampler: None,
            store: None,
        }
    }

    /// The sampler, if enabled.
    pub fn sampler(&self) -> Option<&Arc<Sampler>> {
        self.sampler.as_ref()
    }

    pub(crate) fn register(&self, route: &Route) {
        if let Some(s) = &self.sampler
            && let Err(e) = s.register_route(route.spec())
        {
            tracing::warn!(route = route.id, error = %e, "keyviz: route registration refused");
        }
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Some(s) = &self.sampler {
            // Removing an unknown route is harmless here (it happens on first registration).
            let _ = s.remove_route(id);
        }
    }

    pub(crate) fn split(&self, id: u64, at: &[u8], right_id: u64) {
        if let Some(s) = &self.sampler
            && let Err(e) = s.split_route(id, at, right_id)
        {
            tracing::warn!(route = id, right_id, error = %e, "keyviz: split refused");
        }
    }

    /// One committed write with the term of the log entry that carried it, counted in the step
    /// window of `at_unix_ms`, the proposer's timestamp in that entry.
    #[inline]
    pub(crate) fn observe_write(
        &self,
        route: u64,
        key: &[u8],
        value_len: usize,
        group: u64,
        term: u64,
        at_unix_ms: i64,
    ) {
        if let Some(s) = &self.sampler {
            s.observe_write(route, key, value_len, group, term, at_unix_ms);
        }
    }

    /// One read served by this node at `at_unix_ms`.
    #[inline]
    pub(crate) fn observe_read(
        &self,
        route: u64,
        key: &[u8],
        value_len: usize,
        leader: bool,
        at_unix_ms: i64,
    ) {
        if let Some(s) = &self.sampler {
            let role = if leader {
                ReadRole::Leader
            } else {
                ReadRole::Follower
            };
            s.observe_read(route, key, value_len, role, at_unix_ms);
        }
    }

    /// A persistence thread for this sampling's store, or `None` when there is nothing to
    /// persist (sampling disabled or in-memory history).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub(crate) fn persister(&self) -> std::io::Result<Option<Persister>> {
        match (&self.sampler, &self.store) {
            (Some(_), Some(store)) => Persister::start(Arc::clone(store)).map(Some),
            _ => Ok(None),
        }
    }

    /// Closes the step(s) ended by `now_unix_ms`: seals and publishes into the in-memory
    /// history on the calling task, and queues the records for `persister`. No I/O here; the
    /// history write lock is taken for the publish only (it waits for running matrix queries).
    /// Called at each step boundary and once at shutdown.
    pub(crate) fn close_step(&self, now_unix_ms: i64, persister: Option<&Persister>) {
        let Some(s) = &self.sampler else {
            return;
        };
        let published = s.publish(s.seal(now_unix_ms));
        if let Some(p) = persister {
            p.queue(published);
        }
    }

    /// The next step boundary after `now_unix_ms`, or `None` when disabled.
    pub(crate) fn next_flush_unix_ms(&self, now_unix_ms: i64) -> Option<i64> {
        self.sampler
            .as_ref()
            .map(|s| s.next_flush_unix_ms(now_unix_ms))
    }
}

/// What the persistence thread has still to write.
#[derive(Default)]
struct Backlog {
    /// The newest record of each window not yet written. Records replace by window, so a newer
    /// one supersedes an older one: the backlog holds at most one record per retained window.
    records: BTreeMap<i64, ColumnRecord>,
    /// The newest prune cutoff not yet applied.
    prune_before: Option<i64>,
    closed: bool,
}

struct Shared {
    backlog: Mutex<Backlog>,
    wake: Condvar,
}

/// A dedicated thread that writes published columns to the history store, in order: each batch
/// appends the newest record of every pending window, then applies the newest prune cutoff.
/// Queueing never blocks on I/O (a short mutex); a slow store only makes the backlog coalesce.
pub(crate) struct Persister {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Persister {
    fn start(store: Arc<dyn HistoryStore>) -> std::io::Result<Persister> {
        let shared = Arc::new(Shared {
            backlog: Mutex::new(Backlog::default()),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("keyviz-persist".into())
            .spawn(move || persist_loop(&worker, store.as_ref()))?;
        Ok(Persister {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `published` for writing.
    pub(crate) fn queue(&self, published: Published) {
        let mut backlog = self
            .shared
            .backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for record in published.records {
            backlog.records.insert(record.unix_ms, record);
        }
        backlog.prune_before = Some(
            backlog
                .prune_before
                .map_or(published.prune_before_unix_ms, |p| {
                    p.max(published.prune_before_unix_ms)
                }),
        );
        drop(backlog);
        self.shared.wake.notify_one();
    }

    /// Writes what is queued and stops the thread; blocks until it is done (call it from a
    /// blocking context, e.g. `spawn_blocking`).
    pub(crate) fn finish(mut self) {
        self.close();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("keyviz: history persistence thread panicked");
        }
    }

    fn close(&self) {
        self.shared
            .backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        // Not joined here (drop may run on an async worker): the thread drains and exits.
        self.close();
    }
}

fn persist_loop(shared: &Shared, store: &dyn HistoryStore) {
    loop {
        let (records, prune_before, closed) = {
            let mut backlog = shared
                .backlog
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while backlog.records.is_empty() && backlog.prune_before.is_none() && !backlog.closed {
                backlog = shared
                    .wake
                    .wait(backlog)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            (
                std::mem::take(&mut backlog.records),
                backlog.prune_before.take(),
                backlog.closed,
            )
        };
        for record in records.values() {
            if let Err(e) = store.append(record) {
                tracing::warn!(error = %e, column = record.unix_ms, "keyviz: history persistence failed");
            }
        }
        if let Some(before) = prune_before
            && let Err(e) = store.prune(before)
        {
            tracing::warn!(error = %e, "keyviz: history prune failed");
        }
        if closed {
            // `closed` was read with this batch: everything queued before `finish` is written.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::{PersistError, SamplerConfig};

    #[derive(Default)]
    struct MemStore {
        columns: Mutex<BTreeMap<i64, ColumnRecord>>,
    }

    impl HistoryStore for MemStore {
        fn append(&self, record: &ColumnRecord) -> Result<(), PersistError> {
            self.columns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(record.unix_ms, record.clone());
            Ok(())
        }
        fn load(&self, since: i64) -> Result<Vec<ColumnRecord>, PersistError> {
            let columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(columns.range(since..).map(|(_, r)| r.clone()).collect())
        }
        fn prune(&self, before: i64) -> Result<(), PersistError> {
            let mut columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
            *columns = columns.split_off(&before);
            Ok(())
        }
    }

    fn writes(store: &MemStore, unix_ms: i64) -> u64 {
        store
            .columns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&unix_ms)
            .map_or(0, |r| {
                r.cells
                    .iter()
                    .flat_map(|c| c.writes.iter())
                    .map(|w| w.writes)
                    .sum()
            })
    }

    #[test]
    fn closed_steps_are_persisted_in_order_and_a_late_write_rewrites_its_column() {
        let t0 = 1_700_000_040_000;
        let config = SamplerConfig {
            step_ms: 1_000,
            ..SamplerConfig::default()
        };
        let store = Arc::new(MemStore::default());
        let sampler = Arc::new(Sampler::new(config, t0).expect("sampler"));
        sampler
            .register_route(keyviz::RouteSpec {
                id: 1,
                start: Vec::new(),
                end: None,
                group: 1,
            })
            .expect("route");
        let sampling = Sampling::persisted(Arc::clone(&sampler), store.clone());
        let persister = sampling.persister().expect("thread").expect("persisting");
        sampling.observe_write(1, b"k", 1, 1, 3, t0 + 10);
        sampling.close_step(t0 + 1_000, Some(&persister));
        // A follower applies an entry its proposer stamped in the first window, late.
        sampling.observe_write(1, b"k", 1, 1, 3, t0 + 900);
        sampling.observe_write(1, b"k", 1, 1, 3, t0 + 1_100);
        sampling.close_step(t0 + 2_000, Some(&persister));
        persister.finish();
        assert_eq!(
            writes(&store, t0),
            2,
            "the merged column replaced the first record"
        );
        assert_eq!(writes(&store, t0 + 1_000), 1);
    }
}
