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

use keyviz::{ColumnRecord, PersistError, Published, ReadRole, Sampler};

use crate::counting::{CountFence, Watermarks};
use crate::leaders::TermLeaders;
use crate::routing::Route;

/// Where the [`Persister`] writes published columns.
///
/// `write` must store `records` (replace by window) and, when given, the log watermarks they
/// cover, all or nothing: a crash must never leave a watermark that claims counts whose
/// column was not written (they would be lost), nor a column without its watermark (a
/// restart would count its entries again).
pub(crate) trait ColumnSink: Send + Sync {
    /// Stores `records` and `marks` atomically. Blocks on I/O.
    ///
    /// # Errors
    /// The store's error; nothing was written.
    fn write(
        &self,
        records: &[ColumnRecord],
        marks: Option<&Watermarks>,
    ) -> Result<(), PersistError>;

    /// Drops stored columns of the finest tier older than `before_unix_ms`. Blocks on I/O.
    ///
    /// # Errors
    /// The store's error.
    fn prune(&self, before_unix_ms: i64) -> Result<(), PersistError>;

    /// Drops stored columns of the coarser tier of `step_ms` older than `before_unix_ms`.
    /// Blocks on I/O.
    ///
    /// # Errors
    /// The store's error.
    fn prune_tier(&self, step_ms: u64, before_unix_ms: i64) -> Result<(), PersistError>;
}

/// Optional shared sampler; cheap to clone.
#[derive(Clone, Default)]
pub struct Sampling {
    sampler: Option<Arc<Sampler>>,
    /// Where published columns are persisted (by a [`Persister`]), if anywhere.
    store: Option<Arc<dyn ColumnSink>>,
    /// Which node led each (group, term), as the applied log says (the admin matrix names
    /// them; kept even with sampling off, it costs one map entry per term).
    leaders: Arc<TermLeaders>,
}

impl Sampling {
    /// Sampling into `sampler`, with in-memory history only.
    pub fn enabled(sampler: Arc<Sampler>) -> Self {
        Self {
            sampler: Some(sampler),
            store: None,
            leaders: Arc::default(),
        }
    }

    /// Sampling into `sampler`, persisting its published columns into `store`
    /// (from a dedicated thread; see [`Sampling::persister`]).
    pub(crate) fn persisted(sampler: Arc<Sampler>, store: Arc<dyn ColumnSink>) -> Self {
        Self {
            sampler: Some(sampler),
            store: Some(store),
            leaders: Arc::default(),
        }
    }

    /// No sampling at all.
    pub fn disabled() -> Self {
        Self {
            sampler: None,
            store: None,
            leaders: Arc::default(),
        }
    }

    /// The sampler, if enabled.
    pub fn sampler(&self) -> Option<&Arc<Sampler>> {
        self.sampler.as_ref()
    }

    /// Which node led each (group, term) this node has applied entries of.
    pub fn leaders(&self) -> &Arc<TermLeaders> {
        &self.leaders
    }

    /// Records that raft node `node` led `group` in `term` (from a log id). Takes the
    /// registry's short lock; call it once per new term, not per entry.
    pub(crate) fn observe_leader(&self, group: u64, term: u64, node: u64) {
        self.leaders.record(group, term, node);
    }

    pub(crate) fn register(&self, route: &Route) {
        if let Some(s) = &self.sampler
            && let Err(e) = s.register_route(route.spec())
        {
            tracing::warn!(route = route.id, error = %e, "keyviz: route registration refused");
        }
    }

    /// Registers `routes` with one route-table rebuild (a catalog load or a snapshot
    /// install: one call per route rebuilds the table per route, 2.4 s for 10 000 routes).
    /// When the batch is refused as a whole (one route overlaps or is taken), falls back to
    /// one call per route so every acceptable route is still counted, and logs the refusals.
    pub(crate) fn register_all<'a>(&self, routes: impl IntoIterator<Item = &'a Route>) {
        let Some(s) = &self.sampler else {
            return;
        };
        let routes: Vec<&Route> = routes.into_iter().collect();
        if let Err(e) = s.register_routes(routes.iter().map(|r| r.spec())) {
            tracing::debug!(error = %e, "keyviz: batch registration refused; one by one");
            for r in routes {
                self.register(r);
            }
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

    /// Closes the step(s) ended by `now_unix_ms`: seals under every group's count fence (apply
    /// waits only for the drain of the counters), publishes into the in-memory history on the
    /// calling task, and queues the records, with the log watermarks the seal covered, for
    /// `persister`. No I/O here; the history write lock is taken for the publish only (it waits
    /// for running matrix queries, with no fence held). Called at each step boundary and once
    /// at shutdown.
    pub(crate) fn close_step(
        &self,
        now_unix_ms: i64,
        fence: &CountFence,
        persister: Option<&Persister>,
    ) {
        let Some(s) = &self.sampler else {
            return;
        };
        let (sealed, marks) =
            fence.with_groups_locked(|marks| (s.seal(now_unix_ms), marks.clone()));
        let published = s.publish(sealed);
        if let Some(p) = persister {
            p.queue(published, marks);
        }
    }

    /// The next step boundary after `now_unix_ms`, or `None` when disabled.
    pub(crate) fn next_flush_unix_ms(&self, now_unix_ms: i64) -> Option<i64> {
        self.sampler
            .as_ref()
            .map(|s| s.next_flush_unix_ms(now_unix_ms))
    }
}

/// Pause before the persistence thread retries a failed write.
const PERSIST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Retries of a failed write after shutdown began, before the thread gives up (and logs).
const CLOSING_RETRIES: u32 = 3;

/// What the persistence thread has still to write.
#[derive(Default)]
struct Backlog {
    /// The newest record of each (tier step, window) not yet written. Records replace by
    /// column, so a newer one supersedes an older one: the backlog holds at most one record per
    /// retained column.
    records: BTreeMap<(u64, i64), ColumnRecord>,
    /// The newest prune cutoff not yet applied.
    prune_before: Option<i64>,
    /// The newest prune cutoff of each coarser tier (by step) not yet applied.
    prune_tiers: BTreeMap<u64, i64>,
    /// The watermarks covered by everything queued so far (those of the newest seal).
    marks: Option<Watermarks>,
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
    fn start(store: Arc<dyn ColumnSink>) -> std::io::Result<Persister> {
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

    /// Queues `published` for writing, with the log watermarks its seal covered.
    pub(crate) fn queue(&self, published: Published, marks: Watermarks) {
        let mut backlog = self
            .shared
            .backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for record in published.records {
            backlog
                .records
                .insert((record.step_ms, record.unix_ms), record);
        }
        for (step, before) in published.prune_tiers {
            let cutoff = backlog.prune_tiers.entry(step).or_insert(before);
            *cutoff = (*cutoff).max(before);
        }
        // Seals are queued in order, so the newest watermarks cover every queued record.
        backlog.marks = Some(marks);
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

fn persist_loop(shared: &Shared, store: &dyn ColumnSink) {
    // Retries left once shutdown began: the node is stopping, so give up after a few.
    let mut closing_retries = CLOSING_RETRIES;
    loop {
        let (records, marks, prune_before, closed) = {
            let mut backlog = shared
                .backlog
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while backlog.records.is_empty()
                && backlog.marks.is_none()
                && backlog.prune_before.is_none()
                && backlog.prune_tiers.is_empty()
                && !backlog.closed
            {
                backlog = shared
                    .wake
                    .wait(backlog)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            (
                std::mem::take(&mut backlog.records),
                backlog.marks.take(),
                (
                    backlog.prune_before.take(),
                    std::mem::take(&mut backlog.prune_tiers),
                ),
                backlog.closed,
            )
        };
        let (prune_before, prune_tiers) = prune_before;
        let list: Vec<ColumnRecord> = records.values().cloned().collect();
        if (!list.is_empty() || marks.is_some())
            && let Err(e) = store.write(&list, marks.as_ref())
        {
            tracing::warn!(error = %e, columns = list.len(), "keyviz: history persistence failed; retrying");
            if closed {
                closing_retries = closing_retries.saturating_sub(1);
            }
            if !closed || closing_retries > 0 {
                // Nothing was written: put it back under anything queued since (newer records
                // of a window replace older ones; the newest watermarks cover them all), and
                // retry after a pause rather than spin on a failing disk.
                let mut backlog = shared
                    .backlog
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for (w, r) in records {
                    backlog.records.entry(w).or_insert(r);
                }
                if backlog.marks.is_none() {
                    backlog.marks = marks;
                }
                drop(backlog);
                std::thread::sleep(PERSIST_RETRY);
                continue;
            }
        }
        if let Some(before) = prune_before
            && let Err(e) = store.prune(before)
        {
            tracing::warn!(error = %e, "keyviz: history prune failed");
        }
        for (step, before) in prune_tiers {
            if let Err(e) = store.prune_tier(step, before) {
                tracing::warn!(error = %e, step_ms = step, "keyviz: history tier prune failed");
            }
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
    use keyviz::SamplerConfig;

    #[derive(Default)]
    struct MemStore {
        columns: Mutex<BTreeMap<i64, ColumnRecord>>,
        marks: Mutex<Option<Watermarks>>,
        /// Writes still to refuse (a failing disk).
        fail: Mutex<usize>,
    }

    impl ColumnSink for MemStore {
        fn write(
            &self,
            records: &[ColumnRecord],
            marks: Option<&Watermarks>,
        ) -> Result<(), PersistError> {
            let mut fail = self.fail.lock().unwrap_or_else(PoisonError::into_inner);
            if *fail > 0 {
                *fail -= 1;
                return Err(PersistError(Box::new(std::io::Error::other("disk full"))));
            }
            let mut columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
            for r in records {
                columns.insert(r.unix_ms, r.clone());
            }
            if let Some(m) = marks {
                *self.marks.lock().unwrap_or_else(PoisonError::into_inner) = Some(m.clone());
            }
            Ok(())
        }
        fn prune(&self, before: i64) -> Result<(), PersistError> {
            let mut columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
            *columns = columns.split_off(&before);
            Ok(())
        }
        fn prune_tier(&self, _step_ms: u64, _before: i64) -> Result<(), PersistError> {
            // These samplers have one tier.
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

    const T0: i64 = 1_700_000_040_000;

    /// A 1 s-step sampler with one route of group 1, persisting into `store` through a
    /// [`Persister`], and the count fence of group 1.
    fn persisted(store: &Arc<MemStore>) -> (Sampling, Persister, CountFence) {
        let config = SamplerConfig {
            step_ms: 1_000,
            ..SamplerConfig::default()
        };
        let sampler = Arc::new(Sampler::new(config, T0).expect("sampler"));
        sampler
            .register_route(keyviz::RouteSpec {
                id: 1,
                start: Vec::new(),
                end: None,
                group: 1,
            })
            .expect("route");
        let sampling = Sampling::persisted(sampler, store.clone());
        let persister = sampling.persister().expect("thread").expect("persisting");
        (sampling, persister, CountFence::new([1]))
    }

    #[test]
    fn closed_steps_are_persisted_in_order_and_a_late_write_rewrites_its_column() {
        let store = Arc::new(MemStore::default());
        let (sampling, persister, fence) = persisted(&store);
        fence.observe_applied(1, 1, || sampling.observe_write(1, b"k", 1, 1, 3, T0 + 10));
        sampling.close_step(T0 + 1_000, &fence, Some(&persister));
        // A follower applies an entry its proposer stamped in the first window, late.
        fence.observe_applied(1, 3, || {
            sampling.observe_write(1, b"k", 1, 1, 3, T0 + 900);
            sampling.observe_write(1, b"k", 1, 1, 3, T0 + 1_100);
        });
        sampling.close_step(T0 + 2_000, &fence, Some(&persister));
        persister.finish();
        assert_eq!(
            *store.marks.lock().unwrap_or_else(PoisonError::into_inner),
            Some(BTreeMap::from([(1, 3)])),
            "the watermarks of the last seal were written with its records"
        );
        assert_eq!(
            writes(&store, T0),
            2,
            "the merged column replaced the first record"
        );
        assert_eq!(writes(&store, T0 + 1_000), 1);
    }

    #[test]
    fn a_failed_write_is_retried_with_its_watermarks_and_nothing_is_lost() {
        let store = Arc::new(MemStore::default());
        *store.fail.lock().unwrap_or_else(PoisonError::into_inner) = 1;
        let (sampling, persister, fence) = persisted(&store);
        fence.observe_applied(1, 7, || sampling.observe_write(1, b"k", 1, 1, 3, T0 + 10));
        sampling.close_step(T0 + 1_000, &fence, Some(&persister));
        // Progress gate: the first (failing) write happened once the failure budget is spent.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while *store.fail.lock().unwrap_or_else(PoisonError::into_inner) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the persister never wrote"
            );
            std::thread::yield_now();
        }
        persister.finish();
        assert_eq!(writes(&store, T0), 1, "the column was written on the retry");
        assert_eq!(
            *store.marks.lock().unwrap_or_else(PoisonError::into_inner),
            Some(BTreeMap::from([(1, 7)]))
        );
    }
}
