//! The per-node sampler: counts every operation, per route and sub-range.
//!
//! ```text
//!  observe_*  ──► thread-local cached RouteTable (arc-swap) ──► slot ──► sub-range counters
//!                                                                          │ swap(0)
//!  flush(now) ──► drain live + retired slots ──► column (window start) ──► History
//!  register / remove / split / merge ──► Catalog (mutex) ──► new RouteTable ──► publish
//! ```

mod counters;
mod route_table;
mod subrange;

use std::cell::RefCell;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};
use parking_lot::{Mutex, RwLock};

use crate::bucket::{route_bucket_id, virtual_bucket_name};
use crate::config::SamplerConfig;
use crate::error::{ConfigError, RouteError};
use crate::history::{
    CellInput, History, HistoryStore, Lanes, PersistError, RowCatalog, RowMeta, WriteLane,
};
use crate::matrix::query::{self, MatrixQuery};
use crate::matrix::wire::Matrix;
use crate::sync::{AtomicU64, Ordering};
use crate::time::{align_down, format_rfc3339_ms};

use counters::{UNKNOWN_LANE, WRITE_LANES};
use route_table::{Catalog, CatalogLimits, Change, NO_ROW, Planner, RouteTable, Slot, SlotKind};
pub use route_table::{RouteId, RouteSpec};

/// Which replica served a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadRole {
    /// The Raft leader of the route's group.
    Leader,
    /// A follower (follower read).
    Follower,
}

/// Flushes a retired slot is at least drained after it left the table; it is
/// kept longer while any thread may still hold it (see `flush`).
const RETIRED_DRAINS: u8 = 2;

/// The sampler failed to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Stored history could not be loaded.
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// What one flush did.
#[derive(Debug)]
#[must_use = "a persistence failure is reported here and nowhere else"]
pub struct FlushReport {
    /// Window start of the column the counts went into.
    pub column_unix_ms: i64,
    /// Non-zero cells drained.
    pub cells: usize,
    /// The history store's error, if appending the column failed.
    pub persist_error: Option<PersistError>,
}

/// Counters and sizes, for metrics and the admin UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerStats {
    /// Registered routes.
    pub routes: usize,
    /// Slots counted separately (routes plus virtual buckets).
    pub slots: usize,
    /// Virtual buckets among the slots.
    pub virtual_slots: usize,
    /// Retained columns.
    pub columns: usize,
    /// Live interned rows.
    pub rows: usize,
    /// Approximate heap bytes of the history.
    pub history_bytes: usize,
    /// Observations for routes that were not registered (dropped, not lost silently).
    pub unknown_route_observations: u64,
}

struct Retired {
    slot: Arc<Slot>,
    drains_left: u8,
}

struct FlushState {
    last_flush_unix_ms: i64,
    retired: Vec<Retired>,
}

type TableCache = Cache<Arc<ArcSwap<RouteTable>>, Arc<RouteTable>>;

thread_local! {
    /// The last sampler this thread observed into, with its cached table: one
    /// pointer compare per observe instead of an `ArcSwap::load` (≈20 ns here).
    static TABLE_CACHE: RefCell<Option<(u64, TableCache)>> = const { RefCell::new(None) };
}

static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Counts a write in `table`; false when `route` is not registered.
#[inline]
fn count_write(
    table: &RouteTable,
    route: RouteId,
    key: &[u8],
    value_len: usize,
    group: u64,
    term: u64,
) -> bool {
    let Some(slot) = table.slot(route) else {
        return false;
    };
    let bytes = (key.len() as u64).saturating_add(value_len as u64);
    slot.counters.add_write(
        slot.layout.index(key),
        slot.lanes.lane_for(group, term),
        bytes,
    )
}

/// Counts a read in `table`; false when `route` is not registered.
#[inline]
fn count_read(
    table: &RouteTable,
    route: RouteId,
    key: &[u8],
    value_len: usize,
    role: ReadRole,
) -> bool {
    let Some(slot) = table.slot(route) else {
        return false;
    };
    let bytes = (key.len() as u64).saturating_add(value_len as u64);
    slot.counters
        .add_read(slot.layout.index(key), role == ReadRole::Leader, bytes)
}

/// A per-task recording handle; see [`Sampler::recorder`]. `Send` and
/// `'static`, so a connection task can own one.
pub struct Recorder {
    cache: TableCache,
    unknown_route: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    fn note_unknown(&self) {
        // Ordering: Relaxed — a statistic.
        self.unknown_route.fetch_add(1, Ordering::Relaxed);
    }

    /// As [`Sampler::observe_write`].
    #[inline]
    pub fn observe_write(
        &mut self,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        group: u64,
        term: u64,
    ) {
        if !count_write(self.cache.load(), route, key, value_len, group, term) {
            self.note_unknown();
        }
    }

    /// As [`Sampler::observe_read`].
    #[inline]
    pub fn observe_read(&mut self, route: RouteId, key: &[u8], value_len: usize, role: ReadRole) {
        if !count_read(self.cache.load(), route, key, value_len, role) {
            self.note_unknown();
        }
    }
}

/// The per-node sampler and its history.
///
/// `Send + Sync`; share it as `Arc<Sampler>`. Observations are exact: no
/// sampling, no locks, no allocation on the hot path. See the crate docs.
pub struct Sampler {
    uid: u64,
    config: SamplerConfig,
    table: Arc<ArcSwap<RouteTable>>,
    control: Mutex<Catalog>,
    flush: Mutex<FlushState>,
    history: RwLock<History>,
    store: Option<Arc<dyn HistoryStore>>,
    /// Shared with every [`Recorder`].
    unknown_route: Arc<AtomicU64>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler with no routes and empty history; `now_unix_ms` starts the
    /// first window.
    ///
    /// # Errors
    /// [`ConfigError`] when a field is out of its documented range.
    pub fn new(config: SamplerConfig, now_unix_ms: i64) -> Result<Sampler, ConfigError> {
        config.validate()?;
        Ok(Sampler {
            uid: NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            history: RwLock::new(History::new(config.retention_ms, config.max_columns)),
            config,
            table: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            control: Mutex::new(Catalog::default()),
            flush: Mutex::new(FlushState {
                last_flush_unix_ms: now_unix_ms,
                retired: Vec::new(),
            }),
            store: None,
            unknown_route: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Like [`Sampler::new`], with durable history: the retained columns are
    /// loaded from `store`, and every flush appends its column to it.
    ///
    /// # Errors
    /// An invalid configuration, or the store's error while loading.
    pub fn with_store(
        config: SamplerConfig,
        now_unix_ms: i64,
        store: Arc<dyn HistoryStore>,
    ) -> Result<Sampler, SamplerError> {
        let mut sampler = Sampler::new(config, now_unix_ms)?;
        let since = now_unix_ms
            .saturating_sub(i64::try_from(sampler.config.retention_ms).unwrap_or(i64::MAX));
        let records = store.load(since)?;
        {
            let mut history = sampler.history.write();
            for record in records {
                history.restore(record);
            }
        }
        sampler.store = Some(store);
        Ok(sampler)
    }

    /// The configuration in force.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Column width in milliseconds.
    pub fn step_ms(&self) -> u64 {
        self.config.step_ms
    }

    fn limits(&self) -> CatalogLimits {
        CatalogLimits {
            max_slots: self.config.max_tracked_routes,
            key_buckets: self.config.key_buckets_per_route,
        }
    }

    fn change(
        &self,
        f: impl FnOnce(Planner<'_>) -> Result<Change, RouteError>,
    ) -> Result<(), RouteError> {
        let mut catalog = self.control.lock();
        let current = self.table.load_full();
        let change = f(Planner {
            catalog: &mut catalog,
            current: &current,
            limits: self.limits(),
        })?;
        self.table.store(Arc::new(change.table));
        let mut flush = self.flush.lock();
        flush
            .retired
            .extend(change.retired.into_iter().map(|slot| Retired {
                slot,
                drains_left: RETIRED_DRAINS,
            }));
        Ok(())
    }

    /// Starts counting `spec`. Traffic is counted from the next observe on.
    /// Past `max_tracked_routes`, the least active adjacent slots coarsen into a
    /// virtual bucket.
    ///
    /// # Errors
    /// The id is taken, the range is empty, or it overlaps a registered route.
    pub fn register_route(&self, spec: RouteSpec) -> Result<(), RouteError> {
        self.change(|p| p.register(spec))
    }

    /// Stops counting route `id`. Counts it already took are still flushed.
    ///
    /// # Errors
    /// The route is not registered.
    pub fn remove_route(&self, id: RouteId) -> Result<(), RouteError> {
        self.change(|p| p.remove(id))
    }

    /// Splits route `id` at key `at`: `id` keeps `[start, at)`, `right_id`
    /// gets `[at, end)` in the same group. Counts in flight are kept.
    ///
    /// # Errors
    /// Unknown `id`, taken `right_id`, or `at` not strictly inside the range.
    pub fn split_route(&self, id: RouteId, at: &[u8], right_id: RouteId) -> Result<(), RouteError> {
        self.change(|p| p.split(id, at, right_id))
    }

    /// Merges `right` into its left neighbour `left` (`left.end == right.start`).
    ///
    /// # Errors
    /// Either route is unknown, or they are not adjacent.
    pub fn merge_routes(&self, left: RouteId, right: RouteId) -> Result<(), RouteError> {
        self.change(|p| p.merge(left, right))
    }

    #[inline]
    fn with_table<R>(&self, f: impl FnOnce(&RouteTable) -> R) -> R {
        let mut f = Some(f);
        let cached = TABLE_CACHE.try_with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            match slot.as_mut() {
                Some((uid, cache)) if *uid == self.uid => f.take().map(|f| f(cache.load())),
                _ => {
                    let mut cache = Cache::new(Arc::clone(&self.table));
                    let r = f.take().map(|f| f(cache.load()));
                    *slot = Some((self.uid, cache));
                    r
                }
            }
        });
        if let Ok(Some(r)) = cached {
            return r;
        }
        // Thread-local storage unavailable (thread teardown) or re-entered:
        // the closure has not run, so it is still here.
        match f.take() {
            Some(f) => f(&self.table.load()),
            None => unreachable!("with_table: closure consumed without a result"),
        }
    }

    fn note_unknown(&self) {
        // Ordering: Relaxed — a statistic.
        self.unknown_route.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one write of `key` (plus `value_len` value bytes) on `route`,
    /// proposed by the leader of raft `group` in leader `term`.
    ///
    /// Call it on the leader only, once per operation. Lock-free, allocation-free,
    /// no hashing of the key. Writes of different terms in one window stay apart;
    /// `group` or `term` 0 means "unknown identity". An unregistered route is
    /// counted in [`SamplerStats::unknown_route_observations`].
    #[inline]
    pub fn observe_write(
        &self,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        group: u64,
        term: u64,
    ) {
        let counted =
            self.with_table(|table| count_write(table, route, key, value_len, group, term));
        if !counted {
            self.note_unknown();
        }
    }

    /// Counts one read of `key` (plus `value_len` value bytes returned) on
    /// `route`, served by this node in `role`. Same guarantees as
    /// [`observe_write`](Sampler::observe_write).
    #[inline]
    pub fn observe_read(&self, route: RouteId, key: &[u8], value_len: usize, role: ReadRole) {
        let counted = self.with_table(|table| count_read(table, route, key, value_len, role));
        if !counted {
            self.note_unknown();
        }
    }

    /// A recording handle for one task or thread: the same observations as
    /// [`observe_write`](Sampler::observe_write) / [`observe_read`](Sampler::observe_read),
    /// through a table cache the handle owns instead of a thread-local one
    /// (a connection task that moves between threads keeps its cache).
    ///
    /// A handle keeps the route table it last saw alive until its next observe,
    /// so keep handles that record, not idle ones.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            cache: Cache::new(Arc::clone(&self.table)),
            unknown_route: Arc::clone(&self.unknown_route),
        }
    }

    /// The next step boundary strictly after `now_unix_ms`: when to flush next.
    pub fn next_flush_unix_ms(&self, now_unix_ms: i64) -> i64 {
        align_down(now_unix_ms, self.config.step_ms).saturating_add(self.config.step_ms as i64)
    }

    /// Drains every counter into the column of the window being closed and
    /// stores it in the history (and the history store, if any).
    ///
    /// Call it at each step boundary and once at shutdown. The column's window
    /// is the step window containing the midpoint of the previous flush and
    /// this one, so flushes a little early or late land in the right window;
    /// two flushes in one window add into one column. Counts that race with
    /// the drain land in this column or the next, never nowhere and never twice.
    pub fn flush(&self, now_unix_ms: i64) -> FlushReport {
        let mut state = self.flush.lock();
        let last = state.last_flush_unix_ms;
        let midpoint = last + (now_unix_ms.saturating_sub(last)) / 2;
        let column_unix_ms = align_down(midpoint, self.config.step_ms);
        state.last_flush_unix_ms = now_unix_ms;
        let table = self.table.load_full();
        let mut cells = Vec::new();
        let record = {
            let mut history = self.history.write();
            for slot in &table.slots {
                self.drain_slot(slot, &mut history.catalog, &mut cells);
            }
            state.retired.retain_mut(|r| {
                // A retired slot may be dropped only when nothing else can still
                // add to it: no published table and no thread's cached table
                // holds it (an observer descheduled mid-call holds its table).
                // Ordering: the Acquire fence pairs with the Release decrement
                // of the last other `Arc`, so that holder's increments are
                // visible to the drain below.
                let sole = Arc::strong_count(&r.slot) == 1;
                std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
                self.drain_slot(&r.slot, &mut history.catalog, &mut cells);
                r.drains_left = r.drains_left.saturating_sub(1);
                if r.drains_left == 0 && sole {
                    for row in r.slot.rows.iter() {
                        // Ordering: Relaxed — rows are touched under the flush lock only.
                        let row = row.load(Ordering::Relaxed);
                        if row != NO_ROW {
                            history.catalog.release(row);
                        }
                    }
                    false
                } else {
                    true
                }
            });
            let n = cells.len();
            history.push(column_unix_ms, cells);
            let record = self.store.as_ref().and_then(|_| {
                history
                    .column_at(column_unix_ms)
                    .map(|c| history.record_of(c, self.config.step_ms))
            });
            (n, record)
        };
        // The store is written under the flush lock (but not the history lock,
        // so queries go on): two flushes of one window append in order.
        let (cells, record) = record;
        let persist_error = match (&self.store, record) {
            (Some(store), Some(record)) => {
                let horizon = column_unix_ms
                    .saturating_sub(i64::try_from(self.config.retention_ms).unwrap_or(i64::MAX));
                store
                    .append(&record)
                    .and_then(|()| store.prune(horizon))
                    .err()
            }
            _ => None,
        };
        drop(state);
        FlushReport {
            column_unix_ms,
            cells,
            persist_error,
        }
    }

    fn drain_slot(&self, slot: &Slot, catalog: &mut RowCatalog, cells: &mut Vec<CellInput>) {
        let mut active = [false; WRITE_LANES];
        let mut operations = 0u64;
        for i in 0..slot.counters.len() {
            let drained = slot.counters.drain(i);
            if drained.is_zero() {
                continue;
            }
            operations = operations.saturating_add(drained.operations());
            let mut lanes = Lanes::default();
            #[allow(clippy::needless_range_loop)] // lanes index three arrays
            for lane in 0..=UNKNOWN_LANE {
                let (writes, write_bytes) = (drained.writes[lane], drained.write_bytes[lane]);
                if writes == 0 && write_bytes == 0 {
                    continue;
                }
                if let Some(a) = active.get_mut(lane) {
                    *a = true;
                }
                let (group, term) = slot.lanes.identity(lane);
                lanes.add(WriteLane {
                    group,
                    term,
                    writes,
                    write_bytes,
                });
            }
            let Some(row_slot) = slot.rows.get(i) else {
                continue;
            };
            // Ordering: Relaxed — rows are touched under the flush lock only.
            let mut row = row_slot.load(Ordering::Relaxed);
            if row == NO_ROW {
                // The slot's own reference, released when the slot retires.
                row = catalog.acquire(self.row_meta(slot, i));
                row_slot.store(row, Ordering::Relaxed);
            }
            catalog.retain(row);
            cells.push(CellInput {
                row,
                reads_leader: drained.reads_leader,
                reads_follower: drained.reads_follower,
                read_bytes: drained.read_bytes,
                lanes,
            });
        }
        slot.lanes.age(&active);
        // Ordering: Relaxed — heuristic, read only by the control plane.
        let old = slot.activity.load(Ordering::Relaxed);
        slot.activity.store(old / 2 + operations, Ordering::Relaxed);
    }

    /// The interned metadata of sub-range `sub` of `slot`. A route row's key
    /// range is the sub-range's own (the whole route when it has one), so
    /// history keeps every range a bucket was counted under apart: a later
    /// split, merge or re-registration builds new slots and new rows, and
    /// never changes the range of a row already counted.
    fn row_meta(&self, slot: &Slot, sub: usize) -> RowMeta {
        let meta = &slot.meta;
        match meta.kind {
            SlotKind::Route(id) => {
                let count = slot.layout.count();
                let (start, end) = if count > 1 {
                    slot.layout.bounds_of(sub, &meta.start, meta.end.as_deref())
                } else {
                    (meta.start.clone(), meta.end.clone())
                };
                RowMeta {
                    bucket_id: route_bucket_id(id, sub as u32, count as u32).into(),
                    start,
                    end,
                    aggregate: false,
                    // Kept for coarsened query rows; not emitted for a plain route row.
                    route_ids: vec![id],
                    route_count: 1,
                    group: slot.meta.group,
                    generation: slot.generation,
                }
            }
            SlotKind::Virtual => RowMeta {
                bucket_id: virtual_bucket_name(&meta.start, meta.end.as_deref()).into(),
                start: meta.start.clone(),
                end: meta.end.clone(),
                aggregate: true,
                route_ids: meta
                    .members
                    .iter()
                    .copied()
                    .take(self.config.max_member_routes)
                    .collect(),
                route_count: meta.members.len() as u64,
                group: slot.meta.group,
                generation: slot.generation,
            },
        }
    }

    /// The local matrix of `query`, built from flushed columns only.
    /// `now_unix_ms` stamps `generated_at`.
    pub fn matrix(&self, query: &MatrixQuery, now_unix_ms: i64) -> Matrix {
        let history = self.history.read();
        // Loaded after the history lock: every slot of this table still holds
        // its rows (a retired slot's rows are released only once no table has it).
        let table = self.table.load();
        query::build(
            &history,
            query,
            self.config.step_ms,
            format_rfc3339_ms(now_unix_ms),
            self.config.max_member_routes,
            &|row, meta| row_is_current(&table, row, meta),
        )
    }

    /// Sizes and counters, for metrics.
    pub fn stats(&self) -> SamplerStats {
        let table = self.table.load();
        let history = self.history.read();
        SamplerStats {
            routes: table.by_route.len(),
            slots: table.slots.len(),
            virtual_slots: table
                .slots
                .iter()
                .filter(|s| s.meta.kind == SlotKind::Virtual)
                .count(),
            columns: history.len(),
            rows: history.catalog.live(),
            history_bytes: history.heap_bytes(),
            // Ordering: Relaxed — a statistic.
            unknown_route_observations: self.unknown_route.load(Ordering::Relaxed),
        }
    }
}

/// Whether route row `meta` is the incarnation `table` still counts into: the
/// row's route is an individually tracked slot of `table` whose sub-range named
/// by the row has exactly the row's range. Such rows keep their plain bucket
/// id on the wire; every older range of the bucket gets a range suffix (see
/// `bucket::incarnation_bucket_id`). Nodes that applied the same catalog
/// changes therefore name every incarnation alike. Allocation-free when the
/// slot interned this very row; otherwise one sub-range bound computation.
fn row_is_current(table: &RouteTable, row: u32, meta: &RowMeta) -> bool {
    let Some((route, sub)) = crate::bucket::parse_route_bucket_id(&meta.bucket_id) else {
        return false;
    };
    let Some(slot) = table.slot(route) else {
        return false;
    };
    if slot.meta.kind != SlotKind::Route(route) {
        return false; // coarsened into a virtual bucket since
    }
    let count = slot.layout.count();
    let sub = match (sub, count) {
        (None, 1) => 0,
        (Some(s), c) if c > 1 && (s as usize) < c => s as usize,
        _ => return false, // the sub-range layout changed (config or range)
    };
    // Ordering: Relaxed — row ids are stored by flush under the history write
    // lock, and the caller holds the read lock; the slot keeps a reference to
    // its row while it is in any table, so an equal id is this very row.
    if slot.rows.get(sub).map(|r| r.load(Ordering::Relaxed)) == Some(row) {
        return true;
    }
    let (start, end) = if count > 1 {
        slot.layout
            .bounds_of(sub, &slot.meta.start, slot.meta.end.as_deref())
    } else {
        (slot.meta.start.clone(), slot.meta.end.clone())
    };
    start == meta.start && end == meta.end
}
