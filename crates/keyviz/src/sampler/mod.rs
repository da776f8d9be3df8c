//! The per-node sampler: counts every operation, per route and sub-range, in
//! the step window of the operation's own timestamp.
//!
//! ```text
//!  observe_*(…, at) ──► thread-local cached RouteTable (arc-swap) ──► slot
//!        │ at in the open window ─► lock-free sub-range counters
//!        └ any other window ──────► side buffer (mutex, bounded, by window)
//!  seal(now)    ──► drain counters (live + retired) + closed side windows ──► Sealed
//!                   (seal lock only: no history lock, no I/O, never waits for a query)
//!  publish(s)   ──► history write lock: insert / merge columns ──► Published records
//!  register / remove / split / merge ──► Catalog (mutex) ──► new RouteTable ──► swap
//!                   retired slots ──► retire queue (its own small lock)
//! ```

mod capture;
mod counters;
mod retire;
mod route_table;
mod shard;
mod subrange;
mod window;

use std::cell::Cell;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};
use parking_lot::{Mutex, RwLock};

use crate::bucket::{route_bucket_id, virtual_bucket_name};
use crate::config::SamplerConfig;
use crate::error::{ConfigError, RouteError};
use crate::history::{
    CellInput, ColumnRecord, History, HistoryStore, Lanes, PersistError, RowCatalog, RowMeta,
    WriteLane,
};
use crate::matrix::query::{self, MatrixQuery};
use crate::matrix::wire::Matrix;
use crate::sync::{Arc as SlotArc, Ordering};
use crate::time::{align_down, format_rfc3339_ms};

use counters::{UNKNOWN_LANE, WRITE_LANES};
use retire::{RetireQueue, Retired, sweep};
use route_table::{
    Catalog, CatalogLimits, Change, Leased, NO_ROW, Planner, RouteTable, Slot, SlotKind,
};
pub use route_table::{RouteId, RouteSpec};
pub use window::{MAX_FUTURE_STEPS, MAX_SIDE_CELLS, MAX_SIDE_WINDOWS};
use window::{Op, SideCell, Windows};

/// Which replica served a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadRole {
    /// The Raft leader of the route's group.
    Leader,
    /// A follower (follower read).
    Follower,
}

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

/// What one [`Sampler::flush`] did.
#[derive(Debug)]
#[must_use = "a persistence failure is reported here and nowhere else"]
pub struct FlushReport {
    /// Window start of the column the open window's counts went into.
    pub column_unix_ms: i64,
    /// Non-zero cells sealed, over every window this flush filed counts in.
    pub cells: usize,
    /// The history store's error, if appending a column or pruning failed.
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
    /// Observations stamped outside the open window (the side-buffer path).
    pub out_of_window_observations: u64,
    /// Observations counted in a nearer window than their own because the side
    /// buffer was at [`MAX_SIDE_WINDOWS`] or [`MAX_SIDE_CELLS`].
    pub folded_observations: u64,
    /// Observations stamped older than retention when observed, counted in the
    /// oldest retained window.
    pub aged_observations: u64,
    /// Operations stamped more than [`MAX_FUTURE_STEPS`] steps ahead of the
    /// sealing clock, counted in the open window.
    pub clock_ahead_observations: u64,
    /// Windows waiting in the side buffer.
    pub pending_windows: usize,
    /// Cells waiting in the side buffer.
    pub pending_cells: usize,
    /// Approximate heap bytes of the history's hot-key summaries (part of
    /// `history_bytes`).
    pub history_hot_key_bytes: usize,
    /// Hot-key capture sketches alive (at most
    /// [`SamplerConfig::hot_key_sketches`](crate::SamplerConfig::hot_key_sketches)).
    pub hot_key_sketches: usize,
    /// Captured observations not recorded in a sketch because the sketch
    /// budget was spent (still counted exactly; their keys' bounds widen).
    pub uncaptured_observations: u64,
}

/// One cell drained by a seal, before it has a row.
struct SealedCell {
    slot: SlotArc<Slot>,
    sub: u32,
    cell: CellInput,
}

/// The counts of one window, as sealed.
struct SealedColumn {
    unix_ms: i64,
    cells: Vec<SealedCell>,
}

/// Counts drained by [`Sampler::seal`], waiting for [`Sampler::publish`].
///
/// `Send`; hand it to the thread that publishes. Dropping it unpublished loses
/// its counts (and is flagged by `#[must_use]`).
#[must_use = "sealed counts are lost unless published"]
pub struct Sealed {
    column_unix_ms: i64,
    columns: Vec<SealedColumn>,
    released: Vec<SlotArc<Slot>>,
    cells: usize,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("column_unix_ms", &self.column_unix_ms)
            .field("windows", &self.windows().collect::<Vec<_>>())
            .field("cells", &self.cells)
            .finish_non_exhaustive()
    }
}

impl Sealed {
    /// Window start of the window that was open when sealed (its live counters).
    pub fn column_unix_ms(&self) -> i64 {
        self.column_unix_ms
    }

    /// Window starts this seal filed counts in, oldest first (always includes
    /// [`column_unix_ms`](Sealed::column_unix_ms), even when it is empty).
    pub fn windows(&self) -> impl Iterator<Item = i64> + '_ {
        self.columns.iter().map(|c| c.unix_ms)
    }

    /// Non-zero cells sealed.
    pub fn cells(&self) -> usize {
        self.cells
    }
}

/// What [`Sampler::publish`] put in the in-memory history, for the host to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the records are what the host must persist"]
pub struct Published {
    /// Window start of the sealed open window.
    pub column_unix_ms: i64,
    /// Non-zero cells published.
    pub cells: usize,
    /// The whole, merged column of every window this publish touched, in
    /// every tier (a record's `step_ms` names its tier): store each with [`HistoryStore::append`] (replace by window), in
    /// publish order. Empty when built for a sampler that persists nothing.
    pub records: Vec<ColumnRecord>,
    /// Every column older than this has left the in-memory history (by age or
    /// by count): pass it to [`HistoryStore::prune`].
    pub prune_before_unix_ms: i64,
    /// Per coarser history tier, (step, cutoff): every column of that step
    /// older than the cutoff has left the history; pass each to
    /// [`HistoryStore::prune_tier`]. Empty without coarser tiers.
    pub prune_tiers: Vec<(u64, i64)>,
}

impl Published {
    /// Appends every record to `store`, then prunes it. Blocks on the store's I/O.
    ///
    /// # Errors
    /// The first store error; later records are not attempted.
    pub fn persist_to(&self, store: &dyn HistoryStore) -> Result<(), PersistError> {
        for record in &self.records {
            store.append(record)?;
        }
        for &(step_ms, before) in &self.prune_tiers {
            store.prune_tier(step_ms, before)?;
        }
        store.prune(self.prune_before_unix_ms)
    }
}

/// State owned by the seal side; guarded by the seal lock.
struct SealState {
    retired: Vec<Retired>,
}

type TableCache = Cache<Arc<ArcSwap<RouteTable>>, Arc<RouteTable>>;

/// What a thread keeps for its observations: its shard index and the last
/// route table it observed into, with that table's stamp (one load and
/// compare per observe against [`Sampler::stamp`] instead of an
/// `ArcSwap::load`).
///
/// No destructor (the table sits in a `ManuallyDrop`), so the thread-local
/// is a plain `%fs`-relative static: no "initialised yet?" check and no
/// destructor-registration call on the observe path, which is then a leaf
/// that needs no callee-saved registers. What a destructor would do is
/// [`LocalOwner`]'s job: the slow path creates it with the lease, and at
/// thread exit it empties this (drops the cached table, forgets the shard
/// index) before it gives the lease back.
///
/// `Cell`s, not a `RefCell`: the fast path reads the stamp and moves the
/// `Arc` out and back (a load and two stores), where a `RefCell` borrow
/// would increment and decrement its flag, a chain of two store-to-load
/// forwards from one observe to the next. While an observe holds the table
/// the cell is empty, so a re-entered observe takes the slow path and
/// installs its own.
struct Local {
    /// The stamp `table` was loaded under (0: none, and again once the
    /// thread's [`LocalOwner`] is gone).
    stamp: Cell<u64>,
    /// This thread's lease index ([`shard::UNSET`] until the slow path asks
    /// [`LocalOwner`] for it; [`shard::NO_SHARD`] when none was free or the
    /// owner is gone). Valid whenever `stamp` is non-zero.
    shard: Cell<usize>,
    /// `stamp` when `shard` is a lease index, else 0: the fast path's one
    /// compare says both "the cached table is current" and "this thread
    /// holds a lease" (a thread without one takes the general path).
    fast_stamp: Cell<u64>,
    /// `shard` as a [`shard::ShardIx`]; valid whenever `fast_stamp` is non-zero.
    fast_shard: Cell<shard::ShardIx>,
    /// Dropped by [`LocalOwner`]'s destructor, never by this one.
    table: std::mem::ManuallyDrop<Cell<Option<Arc<RouteTable>>>>,
}

impl Local {
    /// Records that the cached table is the one of `stamp` and this thread's
    /// lease index is `shard`; the fast path's `fast_stamp` becomes `stamp`
    /// only when `shard` is a lease index (a thread without one, or one
    /// exiting, takes the general path through the shared counters).
    fn set_cached(&self, stamp: u64, shard: usize) {
        self.shard.set(shard);
        self.stamp.set(stamp);
        match shard::ShardIx::new(shard) {
            Some(ix) => {
                self.fast_shard.set(ix);
                self.fast_stamp.set(stamp);
            }
            None => self.fast_stamp.set(0),
        }
    }

    /// Puts the table an observe took back (the cell is empty unless a
    /// re-entered observe installed one meanwhile, which is dropped).
    #[inline(always)]
    fn put_back(&self, table: Arc<RouteTable>) {
        drop(self.table.replace(Some(table)));
    }

    /// [`put_back`](Local::put_back) for the fast path, which calls nothing
    /// between taking the table and this: no observe can have refilled the
    /// cell, so the value replaced is `None` and is forgotten rather than
    /// dropped (a drop is a call the fast path would keep registers alive
    /// across). Were it ever a table (an observe from a signal handler),
    /// forgetting it leaks that one table; it never frees a table in use.
    #[inline(always)]
    fn put_back_unchecked(&self, table: Arc<RouteTable>) {
        std::mem::forget(self.table.replace(Some(table)));
    }
}

/// The destructor-carrying half of a thread's observe state: its shard
/// lease. Created by the slow path on the thread's first observe (which
/// registers its destructor); at thread exit it clears [`LOCAL`] first (no
/// cached table, stamp 0, no shard index), then the lease's own drop gives
/// the index back, so nothing on this thread can write a shard after the
/// index is released.
struct LocalOwner {
    lease: shard::Lease,
}

impl Drop for LocalOwner {
    fn drop(&mut self) {
        // `LOCAL` has no destructor: it is reachable for the thread's whole life.
        LOCAL.with(|l| {
            l.stamp.set(0);
            l.fast_stamp.set(0);
            l.shard.set(shard::NO_SHARD);
            drop(l.table.take());
        });
    }
}

/// How the fast path finds the thread's shard block and the operation's
/// sub-range in it.
trait SubKey: Copy {
    /// Counts one operation of `bytes` on the counter `counter_of` names in
    /// lease `lease`'s shard block of the slot of `route` in `table`, in the
    /// sub-range this key falls in: [`FAST_DONE`] or [`FAST_DUE`] as
    /// [`ShardBlock::count`](counters::ShardBlock::count), [`FAST_UNKNOWN`]
    /// (no such route; nothing counted) or [`FAST_SLOW`] (nothing counted).
    fn count(
        self,
        table: &RouteTable,
        lease: shard::ShardIx,
        route: RouteId,
        counter_of: impl Fn(&counters::ShardBlock) -> Option<counters::Counter>,
        bytes: u64,
    ) -> u8;
}

/// The key itself: searched in the slot's sub-range layout. The slot is read
/// for its layout anyway, so its own lease pointer leads to the block (the
/// table's lease arrays would only add loads).
impl SubKey for &[u8] {
    #[inline(always)]
    fn count(
        self,
        table: &RouteTable,
        lease: shard::ShardIx,
        route: RouteId,
        counter_of: impl Fn(&counters::ShardBlock) -> Option<counters::Counter>,
        bytes: u64,
    ) -> u8 {
        match table.dense_slot(route) {
            Ok(Some(slot)) => match slot.counters.lease_block(lease) {
                Some(block) => match counter_of(block) {
                    Some(counter) => block.count(slot.layout.index(self), counter, bytes),
                    None => FAST_SLOW,
                },
                None => FAST_SLOW,
            },
            Ok(None) => FAST_UNKNOWN,
            Err(()) => FAST_SLOW,
        }
    }
}

/// A sampler whose slots all have one sub-range ([`Sampler::one_sub`]: the
/// catalog lays out every route slot with `key_buckets_per_route` = 1, and a
/// virtual slot always has one): no key to pass, sub-range 0, and the block
/// comes from the table's lease array, so the slot is not read at all.
#[derive(Clone, Copy)]
struct OneSub;

impl SubKey for OneSub {
    #[inline(always)]
    fn count(
        self,
        table: &RouteTable,
        lease: shard::ShardIx,
        route: RouteId,
        counter_of: impl Fn(&counters::ShardBlock) -> Option<counters::Counter>,
        bytes: u64,
    ) -> u8 {
        match table.lease_block(lease, route) {
            Leased::Block(block) => {
                debug_assert!(
                    matches!(table.dense_slot(route), Ok(Some(s)) if s.layout.is_single())
                );
                match counter_of(block) {
                    Some(counter) => block.count_first(counter, bytes),
                    None => FAST_SLOW,
                }
            }
            Leased::Unknown => FAST_UNKNOWN,
            Leased::Slow => FAST_SLOW,
        }
    }
}

/// [`SubKey::count`]: no such route (the fast path counts it as unknown).
const FAST_UNKNOWN: u8 = 3;

/// [`Sampler::fast`]: counted (or counted as an unregistered route).
const FAST_DONE: u8 = counters::COUNTED;
/// [`Sampler::fast`]: counted, and a hot-key capture is due.
const FAST_DUE: u8 = counters::DUE;
/// [`Sampler::fast`]: nothing counted; the general path counts it.
const FAST_SLOW: u8 = counters::NO_BLOCK;

/// The bytes one observation counts: key plus value, at most
/// [`MAX_OP_BYTES`](counters::MAX_OP_BYTES). (A key is a slice in memory, so
/// its length is below `2^63`, and the sum of it and a clamped value length
/// cannot overflow.)
#[inline(always)]
fn op_bytes(key: &[u8], value_len: usize) -> u64 {
    let cap = counters::MAX_OP_BYTES;
    (key.len() as u64 + (value_len as u64).min(cap)).min(cap)
}

/// Key and value lengths below this each take the fast path.
const SMALL_OP: usize = 1 << 47;

/// [`op_bytes`] for the fast path: the sum when both lengths are below
/// [`SMALL_OP`] (so the sum is below [`MAX_OP_BYTES`](counters::MAX_OP_BYTES)
/// and needs no cap: an or, a compare and an add), else `None` (the general
/// path counts the operation, capped).
#[inline(always)]
fn small_op_bytes(key: &[u8], value_len: usize) -> Option<u64> {
    const { assert!(2 * (SMALL_OP as u64) <= counters::MAX_OP_BYTES) };
    if (key.len() | value_len) < SMALL_OP {
        Some(key.len() as u64 + value_len as u64)
    } else {
        None
    }
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            stamp: Cell::new(0),
            shard: Cell::new(shard::UNSET),
            fast_stamp: Cell::new(0),
            fast_shard: Cell::new(shard::ShardIx::S0),
            table: std::mem::ManuallyDrop::new(Cell::new(None)),
        }
    };
    static OWNER: LocalOwner = const {
        LocalOwner {
            lease: shard::Lease::new(),
        }
    };
}

/// This thread's shard index ([`shard::NO_SHARD`] while exiting or when all
/// leases are taken). One thread-local load once known.
#[inline]
fn thread_shard() -> usize {
    let i = LOCAL.try_with(|l| l.shard.get()).unwrap_or(shard::UNSET);
    if i != shard::UNSET {
        return i;
    }
    claim_thread_shard()
}

/// [`thread_shard`] on the thread's first observe: claims the lease through
/// [`OWNER`] (registering its destructor) and records the index in [`LOCAL`];
/// [`shard::NO_SHARD`] when the owner is already gone (thread exit).
#[cold]
#[inline(never)]
fn claim_thread_shard() -> usize {
    let i = OWNER
        .try_with(|o| o.lease.index())
        .unwrap_or(shard::NO_SHARD);
    LOCAL.with(|l| l.shard.set(i));
    i
}

/// Route table stamps, unique in the process (0 is never used): a stamp
/// names one table of one sampler, so a thread's cached table is current
/// exactly when its stamp is the sampler's.
static NEXT_STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_stamp() -> u64 {
    // Ordering: Relaxed — a unique number; nothing is published through it.
    NEXT_STAMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Counts a write in `table`; false when `route` is not registered.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the observe signature, passed through
fn count_write(
    windows: &Windows,
    table: &RouteTable,
    shard: usize,
    route: RouteId,
    key: &[u8],
    value_len: usize,
    group: u64,
    term: u64,
    at_unix_ms: i64,
) -> bool {
    let Some(slot) = table.slot(route) else {
        windows.note_unknown(shard);
        return false;
    };
    let bytes = op_bytes(key, value_len);
    let sub = slot.layout.index(key);
    if windows.is_open(at_unix_ms) {
        let lane = slot.lanes.lane_for(group, term);
        let on = windows.capture_on;
        let stride = slot.counters.add_write(shard, sub, lane, bytes, on);
        // A block promoted since the table was built: the fast path's from now
        // on, and the lane the slot gave this identity with it.
        table.link(route, shard, slot);
        if let Some(block) = slot.counters.shard_block(shard) {
            block.remember_lane(lane, group, term, &slot.lanes);
        }
        // A stride is 0 when capture is off.
        if stride != 0 {
            capture::capture(
                &windows.capture,
                slot,
                sub,
                capture::writes_family(lane),
                key,
                bytes,
                stride,
            );
        }
        return true;
    }
    windows.record(slot, sub, bytes, Op::Write { group, term }, at_unix_ms);
    true
}

/// Counts a read in `table`; false when `route` is not registered.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the observe signature, passed through
fn count_read(
    windows: &Windows,
    table: &RouteTable,
    shard: usize,
    route: RouteId,
    key: &[u8],
    value_len: usize,
    role: ReadRole,
    at_unix_ms: i64,
) -> bool {
    let Some(slot) = table.slot(route) else {
        windows.note_unknown(shard);
        return false;
    };
    let bytes = op_bytes(key, value_len);
    let sub = slot.layout.index(key);
    let leader = role == ReadRole::Leader;
    if windows.is_open(at_unix_ms) {
        let on = windows.capture_on;
        let stride = slot.counters.add_read(shard, sub, leader, bytes, on);
        // A block promoted since the table was built: the fast path's from now on.
        table.link(route, shard, slot);
        // A stride is 0 when capture is off.
        if stride != 0 {
            capture::capture(
                &windows.capture,
                slot,
                sub,
                capture::READS,
                key,
                bytes,
                stride,
            );
        }
        return true;
    }
    windows.record(slot, sub, bytes, Op::Read { leader }, at_unix_ms);
    true
}

/// A per-task recording handle; see [`Sampler::recorder`]. `Send` and
/// `'static`, so a connection task can own one.
pub struct Recorder {
    cache: TableCache,
    windows: Arc<Windows>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// As [`Sampler::observe_write`].
    #[inline]
    #[allow(clippy::too_many_arguments)] // the observe signature
    pub fn observe_write(
        &mut self,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        group: u64,
        term: u64,
        at_unix_ms: i64,
    ) {
        let shard = thread_shard();
        let table = self.cache.load();
        count_write(
            &self.windows,
            table,
            shard,
            route,
            key,
            value_len,
            group,
            term,
            at_unix_ms,
        );
    }

    /// As [`Sampler::observe_read`].
    #[inline]
    pub fn observe_read(
        &mut self,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        role: ReadRole,
        at_unix_ms: i64,
    ) {
        let shard = thread_shard();
        let table = self.cache.load();
        count_read(
            &self.windows,
            table,
            shard,
            route,
            key,
            value_len,
            role,
            at_unix_ms,
        );
    }
}

/// The per-node sampler and its history.
///
/// `Send + Sync`; share it as `Arc<Sampler>`. Counts are exact: no sampling;
/// no lock and no allocation on the counting path once warm (an observation
/// stamped in the open window): a busy slot is counted in the observing
/// thread's own shard with a plain load and store, any other with one relaxed
/// `fetch_add` (see `sampler/counters.rs`). Hot keys are captured on the side:
/// the counter's count in the window picks the captured operations (every
/// one while a counter is young in a row that was busy last window, else the
/// first 32 and then 1 in 64; 1 in 2^j as it gets busy); only a picked
/// operation tries its slot's capture mutex. See the crate docs and
/// `docs/CORE_API.md`.
///
/// Locks, and who takes them: the *control* mutex (catalog changes), the
/// *retire queue* mutex (catalog changes push, seal takes), the *side buffer*
/// mutex (observations outside the open window, seal), the per-slot *slot
/// capture* mutexes (a captured observation; seal, one slot at a time), the
/// *seal* mutex (seal), the *history* read-write lock (publish writes; matrix,
/// hot keys and stats read) and the *flush order* mutex
/// ([`flush`](Sampler::flush) only). Nesting is fixed and shallow: a catalog
/// change holds control, then briefly the retire queue; seal holds seal, then
/// briefly each slot capture mutex, the retire queue and the side buffer (one
/// at a time); an observation holds at most one slot capture mutex or the
/// side buffer, never both; flush holds flush order around a seal and a
/// publish. So a catalog change never waits for a seal, a publish, a query or
/// I/O, and a seal never waits for a query.
pub struct Sampler {
    /// The stamp of the table in `table`, stored (`Release`) after each swap.
    /// A `std` atomic even under loom, as `table` is an `ArcSwap`: the thread
    /// caches it guards are outside the modelled protocol.
    stamp: std::sync::atomic::AtomicU64,
    /// `key_buckets_per_route` is 1: every slot has one sub-range, so the
    /// observe path takes the fast-path instance without the sub-range search.
    one_sub: bool,
    config: SamplerConfig,
    table: Arc<ArcSwap<RouteTable>>,
    control: Mutex<Catalog>,
    retire: RetireQueue,
    seal: Mutex<SealState>,
    flush_order: Mutex<()>,
    history: RwLock<History>,
    store: Option<Arc<dyn HistoryStore>>,
    /// The open window, the side buffer and the statistics; shared with every [`Recorder`].
    windows: Arc<Windows>,
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
    /// A sampler with no routes and empty history; the window containing
    /// `now_unix_ms` is the first open window.
    ///
    /// # Errors
    /// [`ConfigError`] when a field is out of its documented range.
    pub fn new(config: SamplerConfig, now_unix_ms: i64) -> Result<Sampler, ConfigError> {
        config.validate()?;
        let windows = Arc::new(Windows::new(
            now_unix_ms,
            config.step_ms,
            config.retention_ms,
            capture::Capture::new(config.hot_keys.clone(), config.hot_key_sketches),
        ));
        // Every table the sampler publishes shares its unknown-route counts.
        let table = RouteTable::new(Vec::new(), windows.unknown_counts());
        Ok(Sampler {
            stamp: std::sync::atomic::AtomicU64::new(next_stamp()),
            one_sub: config.key_buckets_per_route == 1,
            history: RwLock::new(History::with_tiers(&config.tiers(), config.max_columns)),
            windows,
            config,
            table: Arc::new(ArcSwap::from_pointee(table)),
            control: Mutex::new(Catalog::default()),
            retire: RetireQueue::default(),
            seal: Mutex::new(SealState {
                retired: Vec::new(),
            }),
            flush_order: Mutex::new(()),
            store: None,
        })
    }

    /// Like [`Sampler::new`], with durable history: the retained columns are
    /// loaded from `store` (blocking on its I/O, under the history write lock
    /// of the sampler being built, so nothing else waits), one record at a
    /// time ([`HistoryStore::load`]: peak memory is the rebuilt history plus
    /// the record in hand), and every [`flush`](Sampler::flush) appends to
    /// it. A host that calls [`seal`](Sampler::seal) and
    /// [`publish`](Sampler::publish) itself persists [`Published::records`] instead.
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
            .saturating_sub(i64::try_from(sampler.config.longest_keep_ms()).unwrap_or(i64::MAX));
        // One stored record at a time: a restart holds the history being
        // rebuilt plus the record in hand, never the whole store.
        let rebuilt = {
            let mut history = sampler.history.write();
            let mut restore = history.restore_begin();
            store.load(since, &mut |record| {
                history.restore_one(&mut restore, record);
                Ok(())
            })?;
            history.take_touched()
        };
        // Coarser tiers rebuilt from finer records (a data dir from before
        // tiers, or a tier added since) are stored now, so the next start
        // loads them as they are.
        for record in &rebuilt {
            store.append(record)?;
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
        // Ordering: Release, after the swap: a thread that loads this stamp
        // with `Acquire` and then the table gets this table or a newer one,
        // so the pair it caches never names an older table than it holds.
        // A thread still matching the previous stamp uses the previous table,
        // as an observe that loaded it just before the swap would.
        self.stamp
            .store(next_stamp(), std::sync::atomic::Ordering::Release);
        // Only the retire queue's own lock: a change never waits for a seal.
        self.retire.push(change.retired);
        Ok(())
    }

    /// Starts counting `spec`. Traffic is counted from the next observe on.
    /// Past `max_tracked_routes`, the least active adjacent slots coarsen into a
    /// virtual bucket. Takes the control mutex and the retire queue mutex only.
    ///
    /// # Errors
    /// The id is taken, the range is empty, or it overlaps a registered route.
    pub fn register_route(&self, spec: RouteSpec) -> Result<(), RouteError> {
        self.change(|p| p.register(spec))
    }

    /// Starts counting every route of `specs` with one new route table: for
    /// bulk loads (a node's catalog at start-up, a snapshot install), where
    /// [`register_route`](Sampler::register_route) per route would rebuild
    /// the table once per route (quadratic in the route count). All or
    /// nothing: when one spec is refused, none is registered. Coarsens past
    /// `max_tracked_routes` as `register_route` does. Takes the control mutex
    /// and the retire queue mutex only.
    ///
    /// # Errors
    /// The first refused spec's error: its id is taken (also by an earlier
    /// spec of the batch), its range is empty, or it overlaps a registered
    /// route or an earlier spec of the batch.
    pub fn register_routes(
        &self,
        specs: impl IntoIterator<Item = RouteSpec>,
    ) -> Result<(), RouteError> {
        let specs: Vec<RouteSpec> = specs.into_iter().collect();
        if specs.is_empty() {
            return Ok(());
        }
        self.change(|p| p.register_batch(specs))
    }

    /// Stops counting route `id`. Counts it already took are still sealed.
    /// Locks as [`register_route`](Sampler::register_route).
    ///
    /// # Errors
    /// The route is not registered.
    pub fn remove_route(&self, id: RouteId) -> Result<(), RouteError> {
        self.change(|p| p.remove(id))
    }

    /// Splits route `id` at key `at`: `id` keeps `[start, at)`, `right_id`
    /// gets `[at, end)` in the same group. Counts in flight are kept.
    /// Locks as [`register_route`](Sampler::register_route).
    ///
    /// # Errors
    /// Unknown `id`, taken `right_id`, or `at` not strictly inside the range.
    pub fn split_route(&self, id: RouteId, at: &[u8], right_id: RouteId) -> Result<(), RouteError> {
        self.change(|p| p.split(id, at, right_id))
    }

    /// Merges `right` into its left neighbour `left` (`left.end == right.start`).
    /// Locks as [`register_route`](Sampler::register_route).
    ///
    /// # Errors
    /// Either route is unknown, or they are not adjacent.
    pub fn merge_routes(&self, left: RouteId, right: RouteId) -> Result<(), RouteError> {
        self.change(|p| p.merge(left, right))
    }

    /// Runs `f` with the current route table and this thread's shard index.
    /// `f` is `Fn` and borrowed, never moved: the observe path's arguments
    /// stay in registers (moving a closure through `Option::take` cost a
    /// store-forwarding stall per observe).
    #[inline(always)]
    fn with_table<R>(&self, f: impl Fn(&RouteTable, usize) -> R) -> R {
        LOCAL.with(|local| {
            // Ordering: Acquire — see `change`.
            let stamp = self.stamp.load(std::sync::atomic::Ordering::Acquire);
            let table = match local.table.take() {
                Some(table) if local.stamp.get() == stamp => table,
                old => match self.install_table(local, old, stamp) {
                    Some(table) => table,
                    // Thread exit (the owner is gone): no lease, nothing
                    // cached; the shared counters.
                    None => return f(&self.table.load(), shard::NO_SHARD),
                },
            };
            let r = f(&table, local.shard.get());
            local.put_back(table);
            r
        })
    }

    /// The fast path's thread-local state: this thread's cached table of
    /// this sampler, taken out of its cell (give it back with
    /// [`Local::put_back`]) if it is the current one, and the thread's shard
    /// index; `None` when the slow path must set them up (no lease asked for
    /// yet, a table of another sampler or an older one, no lease, a
    /// re-entered observe).
    #[inline(always)]
    fn fast_table(&self, local: &Local) -> Option<(Arc<RouteTable>, shard::ShardIx)> {
        // Ordering: Relaxed — the cached `Arc` was loaded on the slow path
        // (after an `Acquire` of its stamp); equal stamps mean it is still the
        // sampler's table, and a stale read only means the table swapped an
        // instant ago, as an `ArcSwap` load racing the swap would see.
        if local.fast_stamp.get() != self.stamp.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        // `fast_stamp` is set only together with a lease index (`install_table`).
        Some((local.table.take()?, local.fast_shard.get()))
    }

    /// The thread-local fast path of one observation stamped in the open
    /// window (the caller checked): counts it on this thread's own shard of
    /// the slot, through the thread's cached table (current by its stamp).
    /// `bytes` is [`op_bytes`]; `counter_of` names the counter from the
    /// thread's shard block (a write: by the block's copy of the slot's
    /// lanes; `None`: the general path must find or claim the lane first). Returns [`FAST_DONE`]
    /// (counted, or counted as an unregistered route), [`FAST_DUE`] (counted,
    /// and a hot-key capture is due) or [`FAST_SLOW`] (nothing counted: the
    /// thread's first observe of this table, a route id past the dense
    /// array, a slot not busy enough for a shard, a lane to claim, a
    /// re-entered observe).
    ///
    /// `sub` finds the key's sub-range: the key itself ([`SubKey`] for
    /// `&[u8]`: the sampler's slots may have several sub-ranges, searched)
    /// or [`OneSub`] (every slot has one: no key is passed at all, and the
    /// sub-range search, with the registers it needs, stays out of the
    /// function).
    ///
    /// Calls nothing, so nothing can refill the cell before the table is put
    /// back, and the observe function this inlines into is a leaf.
    #[inline(always)]
    fn fast(
        &self,
        route: RouteId,
        sub: impl SubKey,
        bytes: u64,
        counter_of: impl Fn(&counters::ShardBlock) -> Option<counters::Counter>,
    ) -> u8 {
        // `try_with`, not `with` (which is not inlined); `LOCAL` has no
        // destructor, so it never fails.
        LOCAL
            .try_with(|local| {
                let Some((table, shard)) = self.fast_table(local) else {
                    return FAST_SLOW;
                };
                let mut done = sub.count(&table, shard, route, counter_of, bytes);
                if done == FAST_UNKNOWN {
                    table.note_unknown(shard);
                    done = FAST_DONE;
                }
                local.put_back_unchecked(table);
                done
            })
            .unwrap_or(FAST_SLOW)
    }

    /// The capture of an observation the fast path counted and found due:
    /// `family_of` names the slot's (counter, capture family). The thread's
    /// table is the one the fast path used unless the stamp moved since (a
    /// catalog change in between): then the capture is skipped and counted
    /// as uncaptured, so no other slot's sketch gets an operation its
    /// counters do not have.
    #[inline(always)]
    fn capture_due(
        &self,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        family_of: impl Fn(&Slot) -> Option<(usize, usize)>,
    ) {
        let w = &self.windows;
        let done = LOCAL.try_with(|local| {
            let Some((table, shard)) = self.fast_table(local) else {
                return false;
            };
            if let Ok(Some(slot)) = table.dense_slot(route)
                && let Some((counter, family)) = family_of(slot)
            {
                let sub = slot.layout.index(key);
                let stride = slot.counters.due_stride(shard, sub, counter);
                if stride != 0 {
                    let bytes = op_bytes(key, value_len);
                    capture::capture(&w.capture, slot, sub, family, key, bytes, stride);
                }
            }
            local.put_back(table);
            true
        });
        if done != Ok(true) {
            // A std atomic even under loom: a statistic outside the modelled protocol.
            w.capture
                .uncaptured
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// This sampler's current table, loaded after `stamp`, for this thread's
    /// cache (its first observe, another sampler observed last, or the table
    /// changed since); drops the table it replaces. Claims the thread's lease
    /// on its first observe (creating [`OWNER`], which registers its
    /// destructor). `None` once the owner is gone (thread exit): then nothing
    /// is cached, so nothing outlives the thread.
    #[cold]
    #[inline(never)]
    fn install_table(
        &self,
        local: &Local,
        old: Option<Arc<RouteTable>>,
        stamp: u64,
    ) -> Option<Arc<RouteTable>> {
        drop(old);
        let shard = OWNER.try_with(|o| o.lease.index()).ok()?;
        local.set_cached(stamp, shard);
        Some(self.table.load_full())
    }

    /// Counts one write of `key` (plus `value_len` value bytes) on `route`,
    /// by raft `group` in leader `term`, in the step window of `at_unix_ms`.
    ///
    /// `at_unix_ms` is when the write happened (the proposer's timestamp in the
    /// log entry), not when it is observed, so a replica applying late, a
    /// replay or a stalled node files it where it belongs. Stamped inside the
    /// open window: counted lock-free and allocation-free once warm (a busy
    /// slot allocates this thread's shard once). Hot keys: unless capture is
    /// off, the operations the count picks (in a row busy last window all of
    /// a counter's first 1 024 in a window, else its first 32 and then 1 in
    /// 64; then 512 per doubling) try the slot's capture mutex with the key,
    /// never waiting for it (a busy mutex leaves the op uncaptured, which the
    /// bounds absorb); they allocate only while the slot's sketches warm up.
    /// Hashed mode hashes at seal, per kept key. Any other window: the side buffer (a short mutex, bounded; see
    /// [`MAX_SIDE_WINDOWS`]), not captured.
    /// Writes of different terms in one window stay apart; `group` or `term` 0
    /// means "unknown identity". An unregistered route is counted in
    /// [`SamplerStats::unknown_route_observations`].
    #[inline]
    pub fn observe_write(
        &self,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        group: u64,
        term: u64,
        at_unix_ms: i64,
    ) {
        // Inlined into the caller: the window check, the byte count and one
        // call to a leaf that counts; the caller keeps its own arguments for
        // the cold rest.
        let fast = match small_op_bytes(key, value_len) {
            Some(bytes) if self.windows.is_open(at_unix_ms) => {
                if self.one_sub {
                    self.observe_write_fast(route, OneSub, bytes, group, term)
                } else {
                    self.observe_write_fast(route, key, bytes, group, term)
                }
            }
            _ => FAST_SLOW,
        };
        if fast != FAST_DONE {
            self.observe_write_rest(fast, route, key, value_len, group, term, at_unix_ms);
        }
    }

    /// The fast path of [`observe_write`](Sampler::observe_write) for an
    /// operation in the open window, out of line and a leaf: it calls
    /// nothing (the thread-local has no destructor to register; a slot of
    /// several sub-ranges is a jump to [`fast_many`]), so it needs no stack
    /// frame and no callee-saved register, and may clobber its arguments.
    /// Returns as [`fast`](Sampler::fast) does; `sub` as there (one
    /// instance per sub-range setting, so the one-sub-range instance takes
    /// five register arguments and keeps to scratch registers). Generic,
    /// also, so that it is instantiated and optimised in the calling crate,
    /// as an `#[inline]` function is (the thread-local is then a plain
    /// `%fs`-relative access there).
    #[inline(never)]
    fn observe_write_fast(
        &self,
        route: RouteId,
        sub: impl SubKey,
        bytes: u64,
        group: u64,
        term: u64,
    ) -> u8 {
        self.fast(route, sub, bytes, |block| block.lane(group, term))
    }

    /// [`observe_write`](Sampler::observe_write) when the fast path did not
    /// finish it: `fast` is [`FAST_DUE`] (counted; a hot-key capture is
    /// due: the stride and the capture) or [`FAST_SLOW`] (nothing counted:
    /// the general path, through [`with_table`](Sampler::with_table), which
    /// sets up the thread's cache on its first observe). Out of line and cold.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)] // the observe signature, plus the fast path's outcome
    fn observe_write_rest(
        &self,
        fast: u8,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        group: u64,
        term: u64,
        at_unix_ms: i64,
    ) {
        if fast == FAST_DUE {
            self.capture_due(route, key, value_len, |slot| {
                let lane = slot.lanes.find(group, term)?;
                Some((counters::write_counter(lane), capture::writes_family(lane)))
            });
            return;
        }
        self.with_table(|table, shard| {
            count_write(
                &self.windows,
                table,
                shard,
                route,
                key,
                value_len,
                group,
                term,
                at_unix_ms,
            )
        });
    }

    /// Counts one read of `key` (plus `value_len` value bytes returned) on
    /// `route`, served by this node in `role` at `at_unix_ms`. Same guarantees
    /// as [`observe_write`](Sampler::observe_write).
    #[inline]
    pub fn observe_read(
        &self,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        role: ReadRole,
        at_unix_ms: i64,
    ) {
        // See `observe_write`.
        let fast = match small_op_bytes(key, value_len) {
            Some(bytes) if self.windows.is_open(at_unix_ms) => {
                let counter = counters::Counter::read(role == ReadRole::Leader);
                if self.one_sub {
                    self.observe_read_fast(route, OneSub, bytes, counter)
                } else {
                    self.observe_read_fast(route, key, bytes, counter)
                }
            }
            _ => FAST_SLOW,
        };
        if fast != FAST_DONE {
            self.observe_read_rest(fast, route, key, value_len, role, at_unix_ms);
        }
    }

    /// The fast path of [`observe_read`](Sampler::observe_read): `bytes` is
    /// [`op_bytes`], `counter` the role's read counter (computed by the
    /// caller, where a constant role folds it; five arguments, all in
    /// registers). See [`observe_write_fast`](Sampler::observe_write_fast).
    #[inline(never)]
    fn observe_read_fast(
        &self,
        route: RouteId,
        sub: impl SubKey,
        bytes: u64,
        counter: counters::Counter,
    ) -> u8 {
        self.fast(route, sub, bytes, |_| Some(counter))
    }

    /// [`observe_read`](Sampler::observe_read) when the fast path did not
    /// finish it; see [`observe_write_rest`](Sampler::observe_write_rest).
    #[cold]
    #[inline(never)]
    fn observe_read_rest(
        &self,
        fast: u8,
        route: RouteId,
        key: &[u8],
        value_len: usize,
        role: ReadRole,
        at_unix_ms: i64,
    ) {
        if fast == FAST_DUE {
            let counter = counters::read_counter(role == ReadRole::Leader);
            self.capture_due(route, key, value_len, |_| Some((counter, capture::READS)));
            return;
        }
        self.with_table(|table, shard| {
            count_read(
                &self.windows,
                table,
                shard,
                route,
                key,
                value_len,
                role,
                at_unix_ms,
            )
        });
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
            windows: Arc::clone(&self.windows),
        }
    }

    /// The next step boundary strictly after `now_unix_ms`: when to seal next.
    pub fn next_flush_unix_ms(&self, now_unix_ms: i64) -> i64 {
        align_down(now_unix_ms, self.config.step_ms).saturating_add(self.config.step_ms as i64)
    }

    /// Start of the window observations are counted in on the fast path.
    pub fn open_window_unix_ms(&self) -> i64 {
        self.windows.open()
    }

    /// Closes the open window and every buffered window that has ended by
    /// `now_unix_ms`, and makes the window containing `now_unix_ms` the open one.
    ///
    /// Drains the live and retired slots' counters (the counts of the window
    /// that was open, wherever `now` is: a seal that runs ten steps late still
    /// files them in their own window) and every buffered window (open ones as
    /// partial columns, so a seal covers every observation made before it).
    /// Call it at least once per step (at each boundary) and at shutdown, then
    /// hand the result to [`publish`](Sampler::publish), in seal order.
    ///
    /// Blocks only on the seal mutex (another seal) and, briefly, the retire
    /// queue and side-buffer mutexes; never on the history lock, a query, a
    /// catalog change or I/O, so a host may call it under its own short locks.
    /// An observation racing the seal is counted in the window being sealed or
    /// in the next one: never lost, never twice.
    pub fn seal(&self, now_unix_ms: i64) -> Sealed {
        let mut state = self.seal.lock();
        let new_open = align_down(now_unix_ms, self.config.step_ms);
        let column_unix_ms = self.windows.advance(new_open);
        let table = self.table.load_full();
        let (cells, released) = drain_slots(
            &self.windows,
            &table.slots,
            &self.retire,
            &mut state.retired,
        );
        drop(state);
        drop(table);
        let (columns, total) = sealed_columns(&self.windows, column_unix_ms, cells, new_open);
        Sealed {
            column_unix_ms,
            columns,
            released,
            cells: total,
        }
    }

    /// Files `sealed` in the in-memory history and returns the merged records
    /// the host must persist ([`Published::records`], replace by window, in
    /// publish order) and the prune cutoff.
    ///
    /// A window that already has a column (a late observation, a second seal
    /// in one window, a restart that reloaded it) is merged into it by summing
    /// cells of one row, write lanes per identical (group, term); a cell keeps
    /// at most 16 identified lanes, further identities join its identity-less
    /// lane. Takes the history write lock (waits for running queries) and
    /// nothing else; does no I/O. Publish in seal order.
    pub fn publish(&self, sealed: Sealed) -> Published {
        self.publish_inner(sealed, true)
    }

    fn publish_inner(&self, sealed: Sealed, records: bool) -> Published {
        let Sealed {
            column_unix_ms,
            columns,
            released,
            cells,
        } = sealed;
        let mut history = self.history.write();
        for column in columns {
            let inputs: Vec<CellInput> = column
                .cells
                .into_iter()
                .map(|c| {
                    let row = self.row_of(&c.slot, c.sub as usize, &mut history.catalog);
                    CellInput { row, ..c.cell }
                })
                .collect();
            history.push(column.unix_ms, inputs);
        }
        for slot in &released {
            for row in slot.rows.iter() {
                // Ordering: Relaxed — rows are touched under the history write lock only.
                let id = row.swap(NO_ROW, Ordering::Relaxed);
                if id != NO_ROW {
                    history.catalog.release(id);
                }
            }
        }
        // Every tier's changed columns (the coarser tiers' windows containing
        // the touched ones included).
        let records = if records {
            history.take_touched()
        } else {
            history.clear_touched();
            Vec::new()
        };
        let prune_before_unix_ms = history.oldest().unwrap_or(column_unix_ms);
        let prune_tiers = history.coarser_cutoffs();
        drop(history);
        drop(released);
        Published {
            column_unix_ms,
            cells,
            records,
            prune_before_unix_ms,
            prune_tiers,
        }
    }

    /// [`seal`](Sampler::seal) + [`publish`](Sampler::publish) + append the
    /// records to the history store (if any) and prune it.
    ///
    /// A convenience for hosts without their own persistence thread: it
    /// **blocks on the store's I/O** and on the history write lock (running
    /// queries), under the flush-order mutex (so two flushes persist in order).
    /// It never blocks catalog changes or observations.
    pub fn flush(&self, now_unix_ms: i64) -> FlushReport {
        let _order = self.flush_order.lock();
        let sealed = self.seal(now_unix_ms);
        let published = self.publish_inner(sealed, self.store.is_some());
        let persist_error = self
            .store
            .as_ref()
            .and_then(|store| published.persist_to(store.as_ref()).err());
        FlushReport {
            column_unix_ms: published.column_unix_ms,
            cells: published.cells,
            persist_error,
        }
    }

    /// The row of `slot`'s sub-range `sub`, interned on first use, with one
    /// reference taken for the column it is pushed into. Under the history write lock.
    fn row_of(&self, slot: &Slot, sub: usize, catalog: &mut RowCatalog) -> u32 {
        // A slot has one row per sub-range and at least one sub-range.
        let sub = sub.min(slot.rows.len().saturating_sub(1));
        let Some(row_slot) = slot.rows.get(sub) else {
            return catalog.acquire(self.row_meta(slot, 0));
        };
        // Ordering: Relaxed — rows are touched under the history write lock only.
        let mut row = row_slot.load(Ordering::Relaxed);
        if row == NO_ROW {
            // The slot's own reference, released when the slot is released.
            row = catalog.acquire(self.row_meta(slot, sub));
            row_slot.store(row, Ordering::Relaxed);
        }
        catalog.retain(row);
        row
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
                    labels: None,
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
                labels: None,
            },
        }
    }

    /// The local matrix of `query`, built from published columns only.
    /// `now_unix_ms` stamps `generated_at`. Takes the history read lock.
    pub fn matrix(&self, query: &MatrixQuery, now_unix_ms: i64) -> Matrix {
        let history = self.history.read();
        // Loaded after the history lock: every slot of this table still holds
        // its rows (a retired slot's rows are released only once no table has it).
        let table = self.table.load();
        query::build(
            &history,
            query,
            format_rfc3339_ms(now_unix_ms),
            self.config.max_member_routes,
            &|row, meta| row_is_current(&table, row, meta),
        )
    }

    /// This node's hot keys for `query`, one part per write identity (reads:
    /// one part), built from published columns only. Takes the history read lock.
    ///
    /// # Errors
    /// The query is out of its documented ranges.
    pub fn hot_keys(
        &self,
        query: &crate::hotkeys::HotKeyQuery,
        _now_unix_ms: i64,
    ) -> Result<crate::hotkeys::NodeHotKeys, crate::hotkeys::HotKeyQueryError> {
        query.validate()?;
        let history = self.history.read();
        Ok(crate::matrix::hot::build(
            &history,
            query,
            self.config.hot_keys.mode(),
        ))
    }

    /// Sizes and counters, for metrics. Takes the history read lock and the
    /// side-buffer mutex, one after the other.
    pub fn stats(&self) -> SamplerStats {
        let table = self.table.load();
        let (pending_windows, pending_cells) = self.windows.pending();
        let history = self.history.read();
        let w = &self.windows;
        // Ordering: Relaxed — statistics.
        let load = |a: &crate::sync::AtomicU64| a.load(Ordering::Relaxed);
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
            unknown_route_observations: w.unknown_routes(),
            out_of_window_observations: load(&w.out_of_window),
            folded_observations: load(&w.folded),
            aged_observations: load(&w.aged),
            clock_ahead_observations: load(&w.clock_ahead),
            pending_windows,
            pending_cells,
            history_hot_key_bytes: history.hot_heap_bytes(),
            hot_key_sketches: w.capture.live(),
            // A std atomic even under loom: a statistic outside the modelled protocol.
            uncaptured_observations: w
                .capture
                .uncaptured
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Bench hook: files `records` into the history tier of their `step_ms`,
    /// as stored columns a restart loads (no coarser tier is rebuilt from
    /// them, nothing is persisted), so a bench can build 30 days of history
    /// without simulating 43 200 flushes. Takes the history write lock. Not
    /// for production use.
    #[doc(hidden)]
    pub fn load_records_for_benches(&self, records: Vec<ColumnRecord>) {
        self.history.write().restore_exact(records);
    }

    /// Test hook: holds the history write lock until the guard drops, so a
    /// test can show what does and does not wait for it (seal and catalog
    /// changes do not; publish, matrix and stats do). Not for production use.
    #[doc(hidden)]
    pub fn hold_history_lock_for_tests(&self) -> impl Drop + '_ {
        self.history.write()
    }
}

/// The drain part of a seal, after [`Windows::advance`] and the load of the
/// live table: drains every live slot and every retired one (taking the
/// retire queue first), and returns the cells and the retired slots now
/// released. Caller holds the seal lock (the owner of `retired`). Takes each
/// slot capture mutex and the retire queue mutex, one at a time.
fn drain_slots(
    windows: &Windows,
    live: &[SlotArc<Slot>],
    queue: &RetireQueue,
    retired: &mut Vec<Retired>,
) -> (Vec<SealedCell>, Vec<SlotArc<Slot>>) {
    let mut cells = Vec::new();
    let evict = windows.capture.evict_below();
    for slot in live {
        drain_slot(slot, &mut cells, evict);
    }
    retired.extend(queue.take().into_iter().map(Retired::new));
    let mut released = Vec::new();
    sweep(
        retired,
        |slot| drain_slot(slot, &mut cells, evict),
        |slot| released.push(slot),
    );
    (cells, released)
}

/// The columns of a seal, oldest first: the drained `cells` filed in
/// `column_unix_ms` (the window that was open), then every buffered window
/// the side buffer gives up at `new_open`; and their cell count. Takes the
/// side-buffer mutex.
fn sealed_columns(
    windows: &Windows,
    column_unix_ms: i64,
    cells: Vec<SealedCell>,
    new_open: i64,
) -> (Vec<SealedColumn>, usize) {
    let mut total = cells.len();
    let mut columns = vec![SealedColumn {
        unix_ms: column_unix_ms,
        cells,
    }];
    for (unix_ms, side) in windows.take_buffered(new_open) {
        total += side.len();
        let cells = side.into_iter().map(side_cell).collect();
        match columns.iter_mut().find(|c| c.unix_ms == unix_ms) {
            Some(c) => c.cells.extend(cells),
            None => columns.push(SealedColumn { unix_ms, cells }),
        }
    }
    columns.sort_by_key(|c| c.unix_ms);
    (columns, total)
}

/// Drains one slot's counters into sealed cells (caller holds the seal lock,
/// which owns the lanes' ageing and the activity heuristic).
fn drain_slot(slot: &SlotArc<Slot>, cells: &mut Vec<SealedCell>, evict_below: u64) {
    let mut active = [false; WRITE_LANES];
    let mut operations = 0u64;
    // The slot capture mutex, once per slot, after the drain of each
    // sub-range: a capture racing it lands in this window's or the next
    // window's sketch (its count likewise), and the bounds absorb the skew.
    let mut capture = slot.capture.lock();
    for i in 0..slot.counters.len() {
        let drained = slot.counters.drain(i);
        let harvest = capture.harvest(
            i,
            &drained,
            |lane| slot.lanes.identity(lane),
            evict_below,
            &slot.capture_held,
        );
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
        cells.push(SealedCell {
            slot: SlotArc::clone(slot),
            sub: i as u32,
            cell: CellInput {
                row: NO_ROW,
                reads_leader: drained.reads_leader,
                reads_follower: drained.reads_follower,
                read_bytes: drained.read_bytes,
                lanes,
                hot: harvest.hot,
                labels: harvest.labels,
            },
        });
    }
    drop(capture);
    slot.lanes.age(&active);
    slot.counters.forget_idle_lanes(&active);
    // Ordering: Relaxed — heuristic, read only by the control plane.
    let old = slot.activity.load(Ordering::Relaxed);
    slot.activity.store(old / 2 + operations, Ordering::Relaxed);
}

fn side_cell(c: SideCell) -> SealedCell {
    let lanes = c.lanes();
    SealedCell {
        cell: CellInput {
            row: NO_ROW,
            reads_leader: c.reads_leader,
            reads_follower: c.reads_follower,
            read_bytes: c.read_bytes,
            lanes,
            // Not captured: off the open window's counters (see `capture`).
            hot: Vec::new(),
            labels: None,
        },
        slot: c.slot,
        sub: c.sub,
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The fast path counts through the table's lease arrays: every count
    /// lands in the slot's own block (the one seal drains), before and after
    /// a catalog change rebuilds the table, and a write of a new term (a
    /// lane the block's copy does not name yet) is counted in its own lane.
    #[test]
    fn counts_through_the_tables_lease_arrays_reach_the_slots_blocks() {
        let s = Sampler::new(SamplerConfig::default(), 1_700_000_040_000).expect("config");
        s.register_route(RouteSpec {
            id: 1,
            start: Vec::new(),
            end: Some(b"m".to_vec()),
            group: 1,
        })
        .expect("register");
        let t = s.open_window_unix_ms();
        let n = 2 * counters::PROMOTE_AT;
        let writes = |term: u64| {
            for _ in 0..n {
                s.observe_write(1, b"a", 1, 1, term, t);
                s.observe_read(1, b"a", 1, ReadRole::Leader, t);
            }
        };
        writes(5);
        // Without a lease (other test threads hold all eight) the counts
        // below still hold; only the links are not there to check.
        let linked = |s: &Sampler| {
            let table = s.table.load_full();
            let slot = table.dense_slot(1).ok().flatten().expect("slot");
            let Some(ix) = shard::ShardIx::new(thread_shard()) else {
                return true;
            };
            let via_slot = slot.counters.lease_block(ix).expect("promoted");
            matches!(table.lease_block(ix, 1), Leased::Block(b) if std::ptr::eq(b, via_slot))
        };
        assert!(linked(&s), "the busy route's block is linked");
        // A catalog change: the new table links the block at build.
        s.register_route(RouteSpec {
            id: 2,
            start: b"m".to_vec(),
            end: None,
            group: 1,
        })
        .expect("register");
        assert!(linked(&s), "linked in the rebuilt table");
        writes(5);
        writes(6);
        let sealed = s.seal(t + s.step_ms() as i64);
        let mut reads = 0;
        let mut by_term = std::collections::BTreeMap::new();
        for col in &sealed.columns {
            for cell in &col.cells {
                reads += cell.cell.reads_leader;
                for lane in cell.cell.lanes.iter() {
                    *by_term.entry(lane.term).or_insert(0) += lane.writes;
                }
            }
        }
        assert_eq!(reads, 3 * n);
        assert_eq!(by_term.get(&5), Some(&(2 * n)));
        assert_eq!(by_term.get(&6), Some(&n));
    }

    /// `LOCAL` has no destructor: `LocalOwner`'s must empty it at thread
    /// exit, or every exited thread would keep its last route table (and
    /// so every slot of it) alive for the life of the process.
    #[test]
    fn an_exiting_thread_drops_its_cached_route_table() {
        let s =
            Arc::new(Sampler::new(SamplerConfig::default(), 1_700_000_000_000).expect("sampler"));
        s.register_route(RouteSpec {
            id: 1,
            start: Vec::new(),
            end: None,
            group: 1,
        })
        .expect("register");
        let t = s.open_window_unix_ms();
        let observer = Arc::clone(&s);
        let (cached, shard) = std::thread::spawn(move || {
            for _ in 0..1_000 {
                observer.observe_read(1, b"k", 1, ReadRole::Leader, t);
            }
            LOCAL.with(|l| {
                let table = l.table.take();
                let cached = table.is_some();
                l.table.set(table);
                (cached, l.shard.get())
            })
        })
        .join()
        .expect("observer");
        assert!(cached, "the observing thread cached the table");
        assert_ne!(
            shard,
            shard::UNSET,
            "the observing thread asked for a lease"
        );
        // The sampler's reference and this one: the exited thread's is gone.
        let table = s.table.load_full();
        assert_eq!(Arc::strong_count(&table), 2);
    }

    #[test]
    fn the_fast_paths_stamp_is_set_only_with_a_lease_index() {
        let local = Local {
            stamp: Cell::new(0),
            shard: Cell::new(shard::UNSET),
            fast_stamp: Cell::new(0),
            fast_shard: Cell::new(shard::ShardIx::S0),
            table: std::mem::ManuallyDrop::new(Cell::new(None)),
        };
        local.set_cached(7, 3);
        assert_eq!((local.stamp.get(), local.shard.get()), (7, 3));
        assert_eq!(local.fast_stamp.get(), 7);
        assert_eq!(local.fast_shard.get(), shard::ShardIx::S3);
        // No lease (all taken, or the thread exiting): the general path
        // keeps its cache, the fast path's compare never matches.
        local.set_cached(8, shard::NO_SHARD);
        assert_eq!((local.stamp.get(), local.shard.get()), (8, shard::NO_SHARD));
        assert_eq!(local.fast_stamp.get(), 0, "no sampler stamp is 0");
        assert_ne!(next_stamp(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::hotkeys::KeyRedactor;

    const STEP: u64 = 1_000;
    const W0: i64 = 1_700_000_000_000;
    const W1: i64 = W0 + STEP as i64;

    /// Reads counted per window by one seal's columns.
    fn reads_by_window(columns: &[SealedColumn], out: &mut Vec<(i64, u64)>) {
        for c in columns {
            let n: u64 = c.cells.iter().map(|x| x.cell.reads_leader).sum();
            if n > 0 {
                out.push((c.unix_ms, n));
            }
        }
    }

    /// The observe path kvnode takes (`count_read` on the thread's cached
    /// table, through the thread's own shard: relaxed load + store, capture
    /// on) racing a seal that rolls the open window over, and a catalog
    /// change that swaps the slot out of the published table into the retire
    /// queue. Every operation is counted exactly once, in the window being
    /// sealed or the next (as `Sampler::seal` documents: the one stamped in
    /// the next window lands in the sealed column when it is counted between
    /// the seal's advance and its drain), and the slot is released only
    /// after its last count was taken.
    #[test]
    fn loom_observe_seal_rollover_and_table_swap_count_every_op_once() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            let windows = Arc::new(Windows::new(
                W0,
                STEP,
                10 * STEP,
                capture::Capture::new(KeyRedactor::raw(), 64),
            ));
            let slot = SlotArc::new(Slot::for_test(1));
            slot.counters.promote(0, true);
            let table = Arc::new(RouteTable::new(vec![slot], Default::default()));
            let published = Arc::new(loom::sync::Mutex::new(Some(Arc::clone(&table))));
            let queue = Arc::new(RetireQueue::default());

            // The observer's thread-local cache holds the table it loaded.
            let w = Arc::clone(&windows);
            let observer = loom::thread::spawn(move || {
                for at in [W0 + 10, W1 + 10] {
                    assert!(count_read(&w, &table, 0, 1, b"k", 1, ReadRole::Leader, at));
                }
                drop(table);
            });
            let (p2, q2) = (Arc::clone(&published), Arc::clone(&queue));
            let changer = loom::thread::spawn(move || {
                // `Sampler::change`: publish a table without the slot, then
                // queue the slot for retirement.
                let old = p2.lock().expect("table lock").take().expect("published");
                q2.push(old.slots.clone());
                drop(old);
            });

            let mut retired = Vec::new();
            let mut counted = Vec::new();
            let mut released = 0;
            let mut seal = |new_open: i64| {
                // `Sampler::seal`, step by step.
                let column = windows.advance(new_open);
                let table = published.lock().expect("table lock").clone();
                let live: &[SlotArc<Slot>] = table.as_ref().map_or(&[], |t| &t.slots);
                let (cells, freed) = drain_slots(&windows, live, &queue, &mut retired);
                drop(table);
                let (columns, _) = sealed_columns(&windows, column, cells, new_open);
                reads_by_window(&columns, &mut counted);
                if !freed.is_empty() {
                    released += freed.len();
                    let total: u64 = counted.iter().map(|(_, n)| n).sum();
                    assert_eq!(total, 2, "released before every count was taken");
                }
            };
            seal(W1);
            observer.join().expect("observer");
            changer.join().expect("changer");
            for k in 2..6 {
                seal(W0 + k * STEP as i64);
            }
            let total: u64 = counted.iter().map(|(_, n)| n).sum();
            assert_eq!(total, 2, "every operation exactly once: {counted:?}");
            // The window being sealed or the next one (`Sampler::seal`): an
            // operation of the new window counted between the seal's advance
            // and its drain lands in the sealed column.
            assert!(
                counted.iter().all(|(w, _)| *w == W0 || *w == W1),
                "filed in the window being sealed or the next: {counted:?}"
            );
            assert_eq!(
                released, 1,
                "the retired slot is released once nobody holds it"
            );
        });
    }
}
